"""The record of one conversion, rknn/convert.json: the source, every option in effect (with the graph rules
switched off automatically) and the calibration list, from which later notebooks rebuild the very same model.

start_record removes the old record and model before a rebuild; write_record writes it atomically after the
.rknn; read_record reads it back (paths relative to the run folder, so a run folder can move); model_hash names
the model a figure was computed from.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from helpers.core.paths import Run, write_json_atomic
from helpers.core.stamps import sha256
from helpers.core.versions import toolkit_version
from helpers.toolkit.options import ConvertConfig, source_kind
from helpers.toolkit.session import DisabledRule


@dataclass
class ConvertResult:
    """What one conversion produced and how long it took."""

    rknn_path: Path
    log_path: Path
    seconds: float
    source_bytes: int
    rknn_bytes: int
    dtype_notes: list[str] = field(default_factory=list)
    auto_disabled: list[DisabledRule] = field(default_factory=list)

    @property
    def size_ratio(self) -> float:
        return self.rknn_bytes / self.source_bytes if self.source_bytes else float("nan")


@dataclass
class ConvertRecord:
    """Contents of rknn/convert.json: everything needed to rebuild the same model in the simulator."""

    source: Path
    load_path: str
    input_size: int
    dataset: Path | None
    config: ConvertConfig
    rknn_path: Path
    seconds: float
    source_bytes: int
    rknn_bytes: int
    dtype_notes: list[str]
    toolkit_version: str
    auto_disabled: list[DisabledRule] = field(default_factory=list)


RECORD = "rknn/convert.json"
TIMING_FIELDS = ("seconds",)  # how long a conversion took, not what it made: left out of model_hash


def start_record(run: Run) -> None:
    """A rebuild starts: remove rknn/convert.json and the old model.rknn first, so an interrupted or failed
    conversion (a full disk) never leaves a record it did not finish, nor a model that is no longer this run's."""
    (run.root / RECORD).unlink(missing_ok=True)
    (run.root / RECORD).with_name("model.rknn").unlink(missing_ok=True)


def write_record(run: Run, result: ConvertResult, cfg: ConvertConfig, source: Path, dataset: Path | None,
                 input_size: int, load_path: str) -> Path:
    """Write rknn/convert.json atomically (after the .rknn): the options in effect, including the graph
    rules switched off automatically, so rebuild() reproduces this model."""
    auto = [asdict(d) for d in result.auto_disabled]
    in_effect = list(cfg.disable_rules) + [d["rule"] for d in auto if d["rule"] not in cfg.disable_rules]
    data = {
        "toolkit_version": toolkit_version(),
        "source": run.relative(source),
        "load_path": source_kind(Path(source), load_path),
        "imgsz": int(input_size),
        "input_size": int(input_size),
        "dataset": run.relative(dataset) if dataset else None,
        "config": {**cfg.to_dict(), "disable_rules": in_effect},
        "disable_rules_given": list(cfg.disable_rules),
        "auto_disabled_rules": auto,
        "rknn_path": run.relative(result.rknn_path),
        "seconds": result.seconds,
        "source_bytes": result.source_bytes,
        "rknn_bytes": result.rknn_bytes,
        "dtype_notes": result.dtype_notes,
    }
    return write_json_atomic(run.root / RECORD, data)


def read_record(run: Run) -> ConvertRecord:
    """Read rknn/convert.json (or say to run notebook 20 first)."""
    path = run.need(RECORD, "20_convert.ipynb")
    d = json.loads(path.read_text())
    return ConvertRecord(
        source=run.resolve(d["source"]), load_path=d["load_path"], input_size=int(d.get("imgsz", d.get("input_size"))),
        dataset=run.resolve(d["dataset"]) if d.get("dataset") else None, config=ConvertConfig.from_dict(d["config"]),
        rknn_path=run.resolve(d["rknn_path"]), seconds=float(d["seconds"]), source_bytes=int(d["source_bytes"]),
        rknn_bytes=int(d["rknn_bytes"]), dtype_notes=list(d.get("dtype_notes", [])), toolkit_version=d.get("toolkit_version", ""),
        auto_disabled=[DisabledRule(**r) for r in d.get("auto_disabled_rules", [])],
    )


def model_hash(run: Run | Path) -> str | None:
    """A short hash (7 hex digits) naming the model every later figure was computed from: rknn/convert.json's content
    minus its timing fields, with the content of the two files it names whose change makes another model under the
    same record (the source model and the calibration list). An identical re-conversion keeps it; another option,
    source, calibration set or toolkit changes it. None when there is no readable record (no model yet, or a
    conversion that did not finish)."""
    root = run.root if isinstance(run, Run) else Path(run)
    try:
        data = json.loads((root / RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    content = {k: v for k, v in data.items() if k not in TIMING_FIELDS}
    for key in ("source", "dataset"):  # paths relative to the run folder, or absolute
        path = root / str(data[key]) if isinstance(data.get(key), str) and data[key] else None
        try:
            content[f"{key} sha256"] = sha256(path) if path and path.is_file() else None
        except OSError:
            content[f"{key} sha256"] = None
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:7]
