"""<run>/executed/status.json: what happened to each notebook the runner touched, and which model its figures
were computed from, so the index can tell a current figure from a stale one.

One entry per notebook: {how: ran | reused | failed | interrupted | running, seconds, finished, at (epoch s),
model (short hash of rknn/convert.json its artifacts were computed from, None when unknown), ran: {seconds,
finished, at} of its last successful execution[, error]}. A reused, failed or interrupted notebook keeps the
model and the time of the run whose artifacts are still on disk; "running" is written when a notebook starts,
so a runner killed outright leaves "running" (the notebook did not finish) rather than an old "ran".
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from helpers.core.paths import write_json_atomic

STATUS = "status.json"
STOPPED = ("failed", "interrupted", "running")  # the notebook did not finish: its artifacts are not this run's


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def read_status(root: Path) -> dict[str, Any]:
    """{notebook: entry} from <run>/executed/status.json, or {} (missing or unreadable)."""
    try:
        data = json.loads((Path(root) / "executed" / STATUS).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def last_ran(entry: dict[str, Any]) -> dict[str, Any] | None:
    """{seconds, finished, at} of the last successful execution an entry knows (its own when it says "ran")."""
    if entry.get("how") == "ran":
        return {k: entry.get(k) for k in ("seconds", "finished", "at")}
    ran = entry.get("ran")
    return ran if isinstance(ran, dict) else None


def write_status(root: Path, name: str, how: str, seconds: float, error: str = "", model: str | None = None) -> None:
    """Record one notebook's outcome atomically (error: what failed, in one line; model: the short hash of the
    current rknn/convert.json). A notebook that ran is tied to `model`; any other outcome keeps the model and
    the last successful run of the entry before it (its artifacts are that run's), a reuse without an earlier
    model taking `model` (nothing changed since it ran)."""
    path = Path(root) / "executed" / STATUS
    data = read_status(root)
    before = data.get(name) if isinstance(data.get(name), dict) else {}
    entry: dict[str, Any] = {"how": how, "seconds": round(float(seconds), 3), "finished": stamp(), "at": round(time.time(), 3)}
    if error:
        entry["error"] = error
    if how == "ran":
        entry["model"] = model
    else:
        entry["model"] = before.get("model") or (model if how == "reused" else None)
        ran = last_ran(before)
        if ran:
            entry["ran"] = ran
    data[name] = entry
    write_json_atomic(path, data)
