"""The two exception types users see: bad input (WorkbookError) and toolkit failures (RknnError)."""
from __future__ import annotations

import re
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """Text without terminal colour/cursor escape codes (the toolkit colours its log lines)."""
    return _ANSI.sub("", text)


def log_tail(log_path: Path, lines: int = 25) -> str:
    """The last lines of a log file (the toolkit's, a crashed child's), colour codes stripped; '' when unreadable."""
    try:
        text = strip_ansi(Path(log_path).read_text(errors="replace"))
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


class WorkbookError(ValueError):
    """Bad input: the message is one sentence naming the input and the fix."""


class ToolkitCrash(WorkbookError):
    """A child process (helpers.core.isolate) died: abort, signal, non-zero exit or timeout.

    The message is one line (what, exit code or signal, likely cause) plus the last lines of the log."""

    def __init__(self, what: str, how: str, cause: str, log_path: Path | None = None, log_tail: str = ""):
        self.what = what
        self.how = how
        self.cause = cause
        self.log_path = log_path
        self.log_tail = log_tail
        tail = f"\n--- last lines of {log_path} ---\n{log_tail}" if log_tail else ""
        super().__init__(f"{what} crashed ({how}); likely cause: {cause}{tail}")

    def __reduce__(self):  # picklable across process pools (dask, concurrent.futures)
        return (type(self), (self.what, self.how, self.cause, self.log_path, self.log_tail))


class RknnError(RuntimeError):
    """A toolkit call failed (returned -1 or raised); carries the tail of the toolkit's log."""

    def __init__(self, call: str, reason: str, log_path: Path | None = None, log_tail: str = ""):
        self.call = call
        self.reason = reason
        self.log_path = log_path
        self.log_tail = log_tail
        where = f" (full log: {log_path})" if log_path else ""
        tail = f"\n--- last lines of the toolkit log ---\n{log_tail}" if log_tail else ""
        super().__init__(f"rknn-toolkit2 {call} failed: {reason}{where}{tail}")

    def __reduce__(self):  # picklable across process pools (dask, concurrent.futures)
        return (type(self), (self.call, self.reason, self.log_path, self.log_tail))
