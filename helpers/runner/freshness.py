"""Which model each figure of the index was computed from, and whether that is still the run's model.

The model is named by helpers.toolkit.record.model_hash (a short hash of rknn/convert.json). The runner records,
per notebook, the model current when it finished (helpers.core.run_status); a notebook run by hand in JupyterLab
has no such record (or its artifact is newer than the record), and then file times decide: an artifact older
than rknn/convert.json was written before the current model. A figure is stale when it comes from another model,
from a notebook that failed, was interrupted or did not finish, or from a notebook after a conversion (20) that
did not finish; a stale figure carries the step to re-run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.core.run_status import STOPPED, last_ran, read_status
from helpers.runner.execute import notebooks
from helpers.text import index as text
from helpers.toolkit.record import RECORD, model_hash

# The folder each notebook writes its artifacts to (ARCHITECTURE.md "One run = one folder"), by number.
FOLDER_STEP = {"model": "10", "rknn": "20", "eval": "30", "board": "40", "analysis": "50", "hybrid": "60"}
MODEL_STEP = "20"  # the conversion: every later figure is computed from its model
# The artifact that stands for a notebook's figures in the notebook table.
MAIN_ARTIFACT = {"10": "model/model.onnx", "20": RECORD, "30": "eval/metrics.json", "40": "board/devices.json",
                 "50": "analysis/layers.csv", "60": "hybrid/compare.csv"}
SLACK_S = 2.0  # file times vs the runner's clock: coarse file-system times and the write-then-record order


@dataclass
class Tag:
    """The model one figure was computed from (None: unknown) and, when stale, why and the notebooks to re-run."""

    model: str | None
    why: str = ""  # '' = current
    rerun: list[str] = field(default_factory=list)
    by_time: bool = False  # judged by file times (no runner record for it)

    @property
    def stale(self) -> bool:
        return bool(self.why)

    @property
    def text(self) -> str:
        return text.model_tag(self.model, self.why, self.rerun, self.by_time)


def combine(tags: list[Tag]) -> Tag:
    """One tag for a figure read from several notebooks' artifacts (the verdict): stale when any is."""
    stale = [t for t in tags if t.stale]
    first = tags[0] if tags else Tag(None)
    if not stale:
        return first
    rerun = sorted({n for t in stale for n in t.rerun})
    return Tag(first.model, "; ".join(dict.fromkeys(t.why for t in stale)), rerun)


class Freshness:
    """The run folder's current model and the runner's records, read once per page."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.current = model_hash(self.root)
        record = self.root / RECORD
        self.model_time = record.stat().st_mtime if self.current and record.is_file() else None
        self.status = read_status(self.root)
        self.names = {nb.stem[:2]: nb.stem for nb in notebooks()}
        self.names.update({k[:2]: k for k in self.status if k[:2].isdigit()})

    def entry(self, step: str) -> dict[str, Any]:
        found = self.status.get(self.names.get(step, ""))
        return found if isinstance(found, dict) else {}

    def of(self, source: str) -> Tag:
        """The tag of a figure read from `source` (a path relative to the run folder, e.g. eval/metrics.json)."""
        step = FOLDER_STEP.get(Path(source).parts[0] if source else "")
        return self.of_step(step, self.root / source) if step else Tag(self.current)

    def of_notebook(self, name: str) -> Tag | None:
        """The tag of a notebook's main artifact (None for a notebook without one, or when it is missing)."""
        rel = MAIN_ARTIFACT.get(name[:2])
        return self.of_step(name[:2], self.root / rel) if rel and (self.root / rel).exists() else None

    def of_step(self, step: str, artifact: Path) -> Tag:
        entry = self.entry(step)
        how = entry.get("how")
        if how in STOPPED:  # the notebook itself did not finish: what is on disk is an earlier run's, or half of one
            return Tag(entry.get("model"), text.stopped_why(step, how), [step])
        if step < MODEL_STEP:  # the export feeds the model: tied to the model built from it
            return Tag(self.current)
        conversion = self.entry(MODEL_STEP).get("how")
        if step > MODEL_STEP and conversion in STOPPED:
            return Tag(entry.get("model") or self.current, text.conversion_stopped_why(MODEL_STEP, conversion, self.current),
                       [MODEL_STEP, step])
        if self.current is None:
            if step == MODEL_STEP:
                return Tag(None)
            return Tag(entry.get("model"), text.NO_MODEL_WHY, [MODEL_STEP, step])
        if step > MODEL_STEP:  # a conversion whose inputs changed since it ran: its model is not the one asked for
            conv = self.of_step(MODEL_STEP, self.root / RECORD)
            if conv.stale:
                return Tag(entry.get("model") or conv.model, conv.why, [MODEL_STEP, step])
        recorded = entry.get("model")
        ran = last_ran(entry) or {}
        at = ran.get("at") if isinstance(ran.get("at"), (int, float)) else None
        written = artifact.stat().st_mtime if artifact.exists() else None
        by_hand = written is not None and at is not None and written > at + SLACK_S
        if recorded and not by_hand:  # the runner's record describes what is on disk
            if recorded == self.current:
                return Tag(recorded)
            if step == MODEL_STEP:
                return Tag(recorded, text.inputs_changed_why(recorded, self.current), [step])
            return Tag(recorded, text.other_model_why(recorded, self.current), [step])
        if written is not None and self.model_time is not None and written + SLACK_S < self.model_time:
            return Tag(None, text.older_file_why(self.current), [step])
        return Tag(self.current, by_time=not recorded and written is not None)
