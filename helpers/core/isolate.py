"""Run one function in a fresh child Python process, so a toolkit build that aborts the process
(e.g. rknn-toolkit2 2.5.0's `munmap_chunk(): invalid pointer`) costs one result, not the run.

`run_isolated("package.module:function", {...}, log_path)` returns the function's JSON-able result.
A Python exception in the child is raised again in the parent (WorkbookError and RknnError keep their
type); a child that dies raises ToolkitCrash: one line (what, exit code or signal, likely cause) plus
the last lines of log_path, which receives the child's stdout and stderr.
"""
from __future__ import annotations

import faulthandler
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from helpers.core.errors import RknnError, ToolkitCrash, WorkbookError, log_tail
from helpers.core.paths import write_text_atomic

PACKAGE_ROOT = Path(__file__).resolve().parents[2]

# Lines native code prints just before it aborts, and what they mean for the user.
_NATIVE_HINTS = {
    "munmap_chunk": "the toolkit's native code corrupted its memory and aborted",
    "double free": "the toolkit's native code corrupted its memory and aborted",
    "free(): invalid": "the toolkit's native code corrupted its memory and aborted",
    "corrupted size": "the toolkit's native code corrupted its memory and aborted",
    "buffer overflow": "the toolkit's native code overflowed a buffer and aborted",
    "Segmentation fault": "a segmentation fault in native code",
    "Killed": "the system killed the process, most often for lack of memory",
}
ADVICE = "this option combination crashes the toolkit: try another quantized_dtype, target_platform or optimization_level"


def native_cause(tail: str) -> str | None:
    """What a native abort message in the log's last lines means, with advice; None when there is none."""
    for needle, meaning in _NATIVE_HINTS.items():
        line = next((ln.strip() for ln in reversed(tail.splitlines()) if needle in ln), None)
        if line:
            return f"{meaning} ('{line[:120]}'); {ADVICE}"
    return None


def likely_cause(returncode: int | None, tail: str, timeout: float | None = None) -> tuple[str, str]:
    """(how it died, likely cause) from the child's return code (negative = signal) and the log's last lines."""
    if returncode is None:
        return f"no result within {timeout:g} s, stopped", ("the call hung or is far slower than expected; raise the "
                                                            "timeout or try a smaller input size")
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        how = f"killed by {name}"
        if name == "SIGKILL":
            return how, ("killed from outside, most often by the out-of-memory killer; free memory or use a smaller "
                         "model or input size")
    else:
        how = f"exit code {returncode}"
    native = native_cause(tail)
    if native:
        return how, native
    if returncode == -signal.SIGABRT:
        return how, f"native code aborted the process; {ADVICE}"
    if returncode == -signal.SIGSEGV:
        return how, f"a segmentation fault in native code; {ADVICE}"
    return how, "the child process ended without a result; read the log lines below"


def _child_env() -> dict[str, str]:
    """The parent's environment, with this helpers package first on the path and fault tracebacks on."""
    env = dict(os.environ)
    parts = [str(PACKAGE_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(PACKAGE_ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def _raise_child_error(err: dict[str, Any], log_path: Path) -> None:
    """Raise the child's exception again in the parent, with its type where it is one of ours."""
    kind, message = err.get("type", ""), err.get("message", "")
    if kind.endswith("RknnError"):
        raise RknnError(err.get("call", "?"), err.get("reason", message),
                        Path(err["log_path"]) if err.get("log_path") else log_path, err.get("log_tail", ""))
    if kind.endswith("ToolkitCrash"):
        raise ToolkitCrash(err.get("what", "?"), err.get("how", "?"), err.get("cause", message), log_path,
                           err.get("log_tail", ""))
    if kind.endswith("WorkbookError"):
        raise WorkbookError(message)
    raise RuntimeError(f"{kind}: {message} (traceback in {log_path})")


def run_isolated(func: str, kwargs: dict, log_path: Path, timeout: float | None = None, what: str | None = None) -> Any:
    """Call "package.module:function"(**kwargs) in a child Python and return its JSON-able result;
    a child that dies raises ToolkitCrash naming how, the likely cause and the log's last lines."""
    if ":" not in func:
        raise WorkbookError(f"func={func!r} must be 'package.module:function', e.g. 'helpers.steps.convert:build_isolated'.")
    log_path = Path(log_path).resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="isolate-") as tmp:
        request, result = Path(tmp) / "request.json", Path(tmp) / "result.json"
        request.write_text(json.dumps({"func": func, "kwargs": kwargs, "result": str(result)}, default=str))
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "helpers.core.isolate", str(request)], stdout=log, stderr=log,
                                    stdin=subprocess.DEVNULL, env=_child_env(), start_new_session=True)
            try:
                code: int | None = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                code = None
            except BaseException:  # KeyboardInterrupt: do not leave the child running
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
        if code == 0 and result.is_file():
            answer = json.loads(result.read_text())
            if "error" in answer:
                _raise_child_error(answer["error"], log_path)
            return answer["ok"]
    lines = [ln for ln in log_tail(log_path, 200).splitlines() if not ln.startswith("Extension modules:")]
    how, cause = likely_cause(code, "\n".join(lines), timeout)
    raise ToolkitCrash(what or func, how, cause, log_path, "\n".join(lines[-15:]))


def _error_record(exc: BaseException) -> dict[str, Any]:
    """A JSON description of an exception raised in the child."""
    record = {"type": f"{type(exc).__module__}.{type(exc).__qualname__}", "message": str(exc)}
    for attr in ("call", "reason", "log_path", "log_tail", "what", "how", "cause"):
        if hasattr(exc, attr):
            record[attr] = str(getattr(exc, attr)) if getattr(exc, attr) is not None else None
    return record


def _child(request_path: str) -> int:
    """Child side: import and call the function, write {"ok": result} or {"error": ...} atomically."""
    faulthandler.enable(all_threads=False)  # a crash prints this thread's Python stack into the log
    req = json.loads(Path(request_path).read_text())
    module, _, name = req["func"].partition(":")
    try:
        value = getattr(importlib.import_module(module), name)(**req["kwargs"])
        answer: dict[str, Any] = {"ok": value}
        text = json.dumps(answer, default=str)
    except Exception as exc:
        traceback.print_exc()
        text = json.dumps({"error": _error_record(exc)})
    write_text_atomic(req["result"], text)
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
