"""A context manager around rknn.api.RKNN: quiet notebooks, one log file per step, one exception type.

The toolkit reports some failures by returning -1 and others by raising (often a ValueError whose
text is a traceback). `toolkit()` turns both into `RknnError` carrying the log tail, sends the
toolkit's chatter (Python logger, native stdout/stderr, its progress bars) to the step's log file,
and always calls `release()`.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import RknnError, strip_ansi

# Calls whose normal result is not a status code; None from them means failure.
_RETURNS_DATA = {"inference", "list_devices", "get_sdk_version", "eval_perf", "eval_memory"}


def log_tail(log_path: Path, lines: int = 25) -> str:
    """The last lines of a toolkit log, colour codes stripped."""
    try:
        text = strip_ansi(Path(log_path).read_text(errors="replace"))
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


@contextlib.contextmanager
def _into_log(log_path: Path, workdir: Path | None = None) -> Iterator[None]:
    """Send Python-level and native stdout/stderr to the log file for the duration of one call,
    with the working directory set to workdir (the toolkit drops check*.onnx and other files there)."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    saved = [os.dup(1), os.dup(2)]
    stream = io.TextIOWrapper(io.FileIO(os.dup(fd), "w"), write_through=True)
    cwd = os.getcwd()
    try:
        if workdir is not None:
            os.chdir(workdir)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            yield
    finally:
        os.chdir(cwd)
        stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (*saved, fd):
            os.close(f)
        stream.close()


def _quiet_toolkit_logger() -> None:
    """Drop the toolkit logger's console handlers; its file handler keeps the full log."""
    logger = logging.getLogger("rknnLogger")
    for handler in list(logger.handlers):
        if type(handler) is logging.StreamHandler:
            logger.removeHandler(handler)


class Toolkit:
    """Proxy for an RKNN object: same methods, but failures raise RknnError."""

    def __init__(self, rknn: Any, log_path: Path, workdir: Path):
        self._rknn = rknn
        self.log_path = log_path
        self.workdir = workdir

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._rknn, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                with _into_log(self.log_path, self.workdir):
                    result = attr(*args, **kwargs)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # the toolkit raises ValueError, RuntimeError, even SystemExit
                raise RknnError(name, _reason(exc), self.log_path, log_tail(self.log_path)) from exc
            failed = result is None if name in _RETURNS_DATA else (isinstance(result, int) and result != 0)
            if failed:
                raise RknnError(name, f"returned {result!r}", self.log_path, log_tail(self.log_path))
            return result

        call.__name__ = name
        call.__doc__ = getattr(attr, "__doc__", None)
        return call


def _reason(exc: BaseException) -> str:
    """The useful last line of a toolkit exception (its messages embed whole tracebacks)."""
    lines = [ln.strip() for ln in strip_ansi(str(exc)).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


@contextlib.contextmanager
def toolkit(log_path: str | Path, verbose: bool = True, workdir: str | Path | None = None) -> Iterator[Toolkit]:
    """Open an RKNN object logging to log_path (truncated), yield its checked proxy, always release.

    Every call runs with the working directory set to workdir (default: the log's folder), because
    the toolkit writes intermediate files (check*.onnx, hybrid step1 output) into the current
    directory; pass absolute paths to the calls.
    """
    log_path = Path(log_path).resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")
    workdir = Path(workdir).resolve() if workdir else log_path.parent
    workdir.mkdir(parents=True, exist_ok=True)
    with _into_log(log_path, workdir):
        from rknn.api import RKNN

        rknn = RKNN(verbose=verbose, verbose_file=str(log_path))
    _quiet_toolkit_logger()
    try:
        yield Toolkit(rknn, log_path, workdir)
    finally:
        with _into_log(log_path, workdir), contextlib.suppress(Exception):
            rknn.release()
        _detach_file_handlers(log_path)


def _detach_file_handlers(log_path: Path) -> None:
    """Close the toolkit logger's handler for this log, so later RKNN objects do not write into it."""
    logger = logging.getLogger("rknnLogger")
    for handler in list(logger.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).resolve() == log_path:
            logger.removeHandler(handler)
            handler.close()


def toolkit_version() -> str:
    """The installed rknn-toolkit2 version, read from package metadata (no toolkit import)."""
    from importlib.metadata import version

    return version("rknn-toolkit2")
