"""The one entry point to rknn.api.RKNN: quiet notebooks, one log file per step, one exception type.

The toolkit reports some failures by returning -1 and others by raising (often a ValueError whose
text is a traceback). `RKNN` turns both into `RknnError` carrying the log tail, sends the toolkit's
chatter (Python logger, native stdout/stderr, its progress bars) to the step's log file, retries a
build the toolkit attributes to a graph rule, and releases exactly once (`release()` or leaving `with`).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.core.errors import RknnError, log_tail, strip_ansi

# Calls whose normal result is not a status code; None from them means failure.
_RETURNS_DATA = {"inference", "list_devices", "get_sdk_version", "eval_perf", "eval_memory"}


@contextlib.contextmanager
def into_log(log_path: Path, workdir: Path | None = None) -> Iterator[None]:
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


_HINT = re.compile(r"disable_rules=\[([^\]]*)\]")


def hinted_rules(log_text: str) -> list[str]:
    """Rule names the toolkit suggests in its hint 'You can add disable_rules=[...] in rknn.config()'."""
    found: list[str] = []
    for group in _HINT.findall(strip_ansi(log_text)):
        for name in re.findall(r"[\'\"]([^\'\"]+)[\'\"]", group):
            if name not in found:
                found.append(name)
    return found


@dataclass
class DisabledRule:
    """A graph rule switched off after the toolkit's own hint, and the failure that triggered it."""

    rule: str
    reason: str


class RKNN:
    """The workbook's checked stand-in for `rknn.api.RKNN`, with the same calls as the tutorial:
    `config`, `load_onnx` / `load_pytorch`, `build`, `export_rknn`, `release`, and any other method.

    Opens an RKNN object logging to verbose_file (truncated). Every call runs with the working directory
    set to workdir (default: the log's folder), because the toolkit writes intermediate files (check*.onnx,
    hybrid step1 output) into the current directory; pass absolute paths to the calls. Failures (-1, None
    from a data call, an exception) raise RknnError with the log tail. When `build` fails and the log says
    "You can add disable_rules=[...]", build replays config (with those rules added) and the load call, and
    builds again (auto_disable_rules=True), or stops naming the rules (False).
    """

    def __init__(self, verbose_file: str | Path, verbose: bool = True, workdir: str | Path | None = None,
                 auto_disable_rules: bool = True, max_retries: int = 4):
        log_path = Path(verbose_file).resolve()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("")
        workdir = Path(workdir).resolve() if workdir else log_path.parent
        workdir.mkdir(parents=True, exist_ok=True)
        _quiet_toolkit_logger()  # an earlier import may have left console handlers bound to the notebook's stderr
        with into_log(log_path, workdir):
            from rknn.api import RKNN as ToolkitRKNN  # optional and slow (seconds): only when a toolkit is opened

            self._rknn = ToolkitRKNN(verbose=verbose, verbose_file=str(log_path))
        _quiet_toolkit_logger()
        self.log_path = log_path
        self.workdir = workdir
        self.auto_disable_rules = auto_disable_rules
        self.max_retries = max_retries
        self.auto_disabled: list[DisabledRule] = []
        self.replay: dict[str, tuple[str, tuple, dict[str, Any]]] = {}
        self.released = False

    def _call(self, name: str, args: tuple, kwargs: dict[str, Any]) -> Any:
        """One toolkit call with its output in the log; -1 / None / an exception -> RknnError."""
        attr = getattr(self._rknn, name)
        try:
            with into_log(self.log_path, self.workdir):
                result = attr(*args, **kwargs)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # the toolkit raises ValueError, RuntimeError, even SystemExit
            raise RknnError(name, _reason(exc), self.log_path, log_tail(self.log_path)) from exc
        failed = result is None if name in _RETURNS_DATA else (isinstance(result, int) and result != 0)
        if failed:
            raise RknnError(name, f"returned {result!r}", self.log_path, log_tail(self.log_path))
        return result

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not set yet (the toolkit failed to open): no proxying of private names
            raise AttributeError(name)
        attr = getattr(self._rknn, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, args, kwargs)

        call.__name__ = name
        call.__doc__ = getattr(attr, "__doc__", None)
        return call

    @property
    def disable_rules(self) -> list[str]:
        """The rules in effect: those given to config plus those disabled after a hint."""
        given = list(self.replay.get("config", ("", (), {}))[2].get("disable_rules") or [])
        return given + [d.rule for d in self.auto_disabled if d.rule not in given]

    def config(self, *args: Any, **kwargs: Any) -> Any:
        self.replay["config"] = ("config", args, dict(kwargs))
        return self._call("config", args, kwargs)

    def load_onnx(self, *args: Any, **kwargs: Any) -> Any:
        self.replay["load"] = ("load_onnx", args, dict(kwargs))
        return self._call("load_onnx", args, kwargs)

    def load_pytorch(self, *args: Any, **kwargs: Any) -> Any:
        self.replay["load"] = ("load_pytorch", args, dict(kwargs))
        return self._call("load_pytorch", args, kwargs)

    def build(self, *args: Any, **kwargs: Any) -> Any:
        """rknn.build; on a failure the toolkit attributes to a graph rule, retry without that rule."""
        for attempt in range(self.max_retries + 1):
            start = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                return self._call("build", args, kwargs)
            except RknnError as err:
                with open(self.log_path, errors="replace") as fh:
                    fh.seek(start)
                    new = [r for r in hinted_rules(fh.read()) if r not in self.disable_rules]
                if not new or attempt == self.max_retries or "config" not in self.replay or "load" not in self.replay:
                    raise
                if not self.auto_disable_rules:
                    raise RknnError("build", f"{err.reason} in graph rule {new[0]!r}; the toolkit suggests switching it off: "
                                    f"add {new!r} to disable_rules (or set auto_disable_rules=True)",
                                    self.log_path, err.log_tail) from err
                self.auto_disabled += [DisabledRule(r, err.reason) for r in new]
                self._replay_with_rules()
        raise ValueError(f"max_retries={self.max_retries} leaves no build attempt; "
                         "pass max_retries >= 0 (0 = build once, no retry).")

    def _replay_with_rules(self) -> None:
        """config again with the extended disable_rules, then the same load call (same RKNN object)."""
        name, args, kwargs = self.replay["config"]
        self._call(name, args, {**kwargs, "disable_rules": self.disable_rules})
        name, args, kwargs = self.replay["load"]
        self._call(name, args, kwargs)

    def export_rknn(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("export_rknn", args, kwargs)

    def release(self) -> None:
        """rknn.release(), once (the one release path); detaches the toolkit's file handler from this log."""
        if self.released:
            return
        with into_log(self.log_path, self.workdir), contextlib.suppress(Exception):
            self._rknn.release()
        _detach_file_handlers(self.log_path)
        self.released = True

    def __enter__(self) -> "RKNN":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _reason(exc: BaseException) -> str:
    """The useful last line of a toolkit exception (its messages embed whole tracebacks)."""
    lines = [ln.strip() for ln in strip_ansi(str(exc)).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def _detach_file_handlers(log_path: Path) -> None:
    """Close the toolkit logger's handler for this log, so later RKNN objects do not write into it."""
    logger = logging.getLogger("rknnLogger")
    for handler in list(logger.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).resolve() == log_path:
            logger.removeHandler(handler)
            handler.close()

