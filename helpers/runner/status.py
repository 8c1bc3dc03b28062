"""What happened to each notebook of the series in a run folder: read from its executed notebook
(papermill's metadata, error outputs, the step cache's lines) and the runner's executed/status.json."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from helpers.core.errors import strip_ansi
from helpers.core.run_status import STOPPED, last_ran, read_status
from helpers.runner.execute import notebook_name
from helpers.runner.figures import number, read_json

_CACHE_LINE = re.compile(r"\[cache\] ([\w.-]+):")


# What the index says of a notebook the runner did not see finish (status.json's "how").
STOPPED_LABELS = {"failed": "failed", "interrupted": "interrupted", "running": "unfinished"}


@dataclass
class NotebookStatus:
    """What happened to one notebook of the series in a run folder."""

    name: str
    status: str  # "ok" | "failed" (failed, interrupted or unfinished: see how) | "not run"
    seconds: float | None = None
    error: str = ""
    full_html: str = ""
    report_html: str = ""
    how: str = ""  # "ran" | "reused" (the runner reused the executed notebook) | "failed" | "interrupted" | "running" | ""
    reused: list[str] = field(default_factory=list)  # cached steps inside the notebook that were reused
    skipped: str = ""  # parts that could not run here (e.g. the board cells without a board)
    last_ran: float | None = None  # seconds its last real execution took (shown for a reused notebook)

    @property
    def label(self) -> str:
        """'ok', 'ok (executed notebook reused)', 'ok, board parts skipped (no board found)', 'failed', 'interrupted',
        'unfinished', 'not run'."""
        if self.status == "failed":
            return STOPPED_LABELS.get(self.how, "failed")
        text = self.status + (" (executed notebook reused)" if self.status == "ok" and self.how == "reused" else "")
        return text + (f", {self.skipped}" if self.skipped and self.status == "ok" else "")

    @property
    def time_text(self) -> str:
        """The time, saying whether it was spent computing or mostly reusing cached results; a reused notebook
        shows what it took when it last ran (its cost), not the moment its reuse took."""
        if self.how == "reused":
            return (f"reused; took {self.last_ran:.0f} s when it last ran" if self.last_ran is not None
                    else "reused (the time of its last run is not recorded)")
        if self.seconds is None:
            return ""
        if self.status == "failed" and self.how in STOPPED_LABELS:
            until = {"failed": "it failed", "interrupted": "it was interrupted", "running": "the run stopped"}[self.how]
            return f"{self.seconds:.0f} s (until {until})"
        if self.reused:
            return f"{self.seconds:.0f} s (ran; reused from cache: {', '.join(self.reused)})"
        return f"{self.seconds:.0f} s (computed)"


def runner_status(run_root: Path) -> dict[str, Any]:
    """<run>/executed/status.json as the runner writes it (helpers.core.run_status), or {}."""
    return read_status(Path(run_root))


def skipped_parts(run_root: Path, name: str) -> str:
    """Parts of a notebook that could not run on this machine, from its artifacts ('' when none)."""
    if name.startswith("40_"):
        devices = read_json(Path(run_root) / "board" / "devices.json")
        found = [d for key in ("found", "adb", "ntb") for d in (devices.get(key) or [])] if isinstance(devices, dict) else []
        if isinstance(devices, dict) and not found:
            return "board parts skipped (no board found)"
    return ""


def status_of(run_root: Path, notebook: Path) -> NotebookStatus:
    """Read <run>/executed/<nb>.ipynb's papermill metadata and the runner's status.json (never raises;
    missing = not run)."""
    name = notebook_name(notebook)
    path = Path(run_root) / "executed" / f"{name}.ipynb"
    runner = runner_status(run_root).get(name)
    runner = runner if isinstance(runner, dict) else {}
    how, seconds = str(runner.get("how", "")), number(runner.get("seconds"))
    stopped = how in STOPPED  # the runner's word when the notebook itself cannot say it (or is an older run's)
    if not path.exists() and not stopped:
        return NotebookStatus(name, "not run")
    if not path.exists():
        return NotebookStatus(name, "failed", seconds, stopped_error(name, runner), how=how)
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # a half-written or corrupt file is reported, not raised
        return NotebookStatus(name, "failed", error=f"unreadable executed notebook ({type(exc).__name__})")
    meta = nb.metadata.get("papermill", {})
    error, reused = "", []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                error = f"{out.get('ename')}: {strip_ansi(str(out.get('evalue', '')))}"
            elif out.get("output_type") == "stream":
                reused += [m for m in _CACHE_LINE.findall(str(out.get("text", ""))) if m not in reused]
    if meta.get("exception") or error:
        return NotebookStatus(name, "failed", meta.get("duration"), error or "stopped with an exception", how="failed")
    if stopped:
        return NotebookStatus(name, "failed", seconds, stopped_error(name, runner), how=how)
    if not meta.get("end_time"):
        return NotebookStatus(name, "not run", error="started but did not finish")
    ran = last_ran(runner) or {}
    took = number(ran.get("seconds"))
    return NotebookStatus(name, "ok", seconds if seconds is not None else meta.get("duration"), how=how or "ran", reused=reused,
                          skipped=skipped_parts(run_root, name),
                          last_ran=took if took is not None else number(meta.get("duration")))


def stopped_error(name: str, entry: dict[str, Any]) -> str:
    """The line the index shows under a notebook the runner did not see finish."""
    if entry.get("how") == "running":
        return f"the run stopped during {name} (killed?) before it finished; re-run it"
    return str(entry.get("error") or entry.get("how"))
