"""Step caching: a step records a hash of what determines its result and reuses its artifacts when
nothing changed, so a warm re-run of the series is fast and a later parameter change re-runs only
what depends on it (inputs are hashed by content, so an unchanged upstream artifact stops the wave).

`cached(run, name, params, inputs=..., outputs=..., compute=..., load=...)` is the one call a
notebook cell makes. The key holds the parameters (minus location and timings), the inputs' contents
(JSON without keys ending in "seconds"; a calibration list together with every image it names) and
the installed toolkit version. A step's record is deleted the moment it starts recomputing, so an
interrupted run can never be mistaken for a finished one. The record also holds a content stamp of each
output that matters (models, JSON/CSV records: helpers.core.stamps), so an output rewritten in place, even with
its size and mtime kept, is recomputed.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Sequence, TypeVar

from helpers.core import stamps
from helpers.core.paths import Run, write_json_atomic
from helpers.core.versions import toolkit_version

T = TypeVar("T")

# Parameters that name where things go, not what is computed.
IGNORED_PARAMS = {"run_dir"}
# Reasons to recompute that are expected (a first run, a change): not announced.
QUIET = {"never ran", "its record is unreadable", "inputs or parameters changed"}
# Records cached() wrote in this process (by key): reading one back later in the same kernel is not a reuse of an
# earlier run's work, so it is not announced as one (a notebook may ask for the same step in two sections).
_MADE_HERE: set[str] = set()
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".npy"}


def without_timings(obj: Any) -> Any:
    """obj with every dict key ending in 'seconds' dropped (at any depth): timings never key a result."""
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if not str(k).endswith("seconds")}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj


def listed_images(list_path: Path) -> list[Path] | None:
    """The files a calibration list names (space-separated per line, relative to the list's folder as
    the toolkit reads them), or None when the text file is not such a list."""
    try:
        lines = [ln.split() for ln in Path(list_path).read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError):
        return None
    items = [Path(i) if Path(i).is_absolute() else Path(list_path).parent / i for ln in lines for i in ln]
    if not items or not all(p.suffix.lower() in IMAGE_SUFFIXES for p in items):
        return None
    return items


def _hash_file(h: Any, path: Path) -> None:
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)


def file_digest(path: Path) -> str:
    """sha256 of what a file means: JSON without timings, a calibration list with its images' bytes,
    a folder's files (relative names and bytes), else the raw bytes."""
    h = hashlib.sha256()
    path = Path(path)
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode())
            _hash_file(h, f)
        return h.hexdigest()
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            data = None
        if data is not None:
            h.update(json.dumps(without_timings(data), sort_keys=True).encode())
            return h.hexdigest()
    _hash_file(h, path)
    if path.suffix == ".txt":
        for img in listed_images(path) or []:
            h.update(str(img.name).encode())
            if img.is_file():
                _hash_file(h, img)
            else:
                h.update(b"<missing>")
    return h.hexdigest()


def fingerprint(params: dict[str, Any], inputs: Sequence[Path]) -> str:
    """One hash over the parameters (minus location-only ones and timings), the inputs' contents and
    the toolkit version."""
    h = hashlib.sha256()
    clean = without_timings({k: v for k, v in params.items() if k not in IGNORED_PARAMS})
    h.update(json.dumps(clean, sort_keys=True, default=str).encode())
    h.update(f"rknn-toolkit2 {toolkit_version()}".encode())
    for p in inputs:
        p = Path(p)
        h.update(file_digest(p).encode() if p.exists() else b"<missing>")
    return h.hexdigest()


def record_inputs(run: Run, dataset: Path | None = None) -> list[Path]:
    """What a step that rebuilds notebook 20's model depends on: rknn/convert.json, the source model,
    the ONNX file (the FP32 reference, also when load_path is pytorch) and the calibration list
    (`dataset` when a step uses another one, e.g. demo mode), whose images are hashed with it."""
    conv = run.root / "rknn" / "convert.json"
    out = [conv]
    try:
        data = json.loads(conv.read_text())
    except (OSError, ValueError):
        return out
    source, calib = (run.resolve(data[k]) if data.get(k) else None for k in ("source", "dataset"))
    onnx = run.root / "model" / "model.onnx"
    traced = onnx if data.get("load_path") == "pytorch" or source is None else None
    for p in (source, traced, Path(dataset) if dataset else calib):
        if p is not None and p not in out:
            out.append(p)
    return out


@dataclass
class Step:
    """A cached unit of work inside a run (prefer `cached`, which wraps check / start / done)."""

    run: Run
    name: str
    params: dict[str, Any]
    inputs: list[Path] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = fingerprint(self.params, self.inputs)
        self.record_path = self.run.sub(".cache") / f"{self.name}.json"
        self._started = time.perf_counter()

    @property
    def fresh(self) -> bool:
        """True when the recorded key matches, every output still exists and holds what was recorded."""
        return self.stale() is None

    def stale(self) -> str | None:
        """None when the step can be reused; else why not (no record, key changed, an output missing or
        changed in place). A record written before content stamps existed is checked as before."""
        if not self.record_path.exists():
            return "never ran"
        try:
            record = json.loads(self.record_path.read_text())
        except json.JSONDecodeError:
            return "its record is unreadable"
        if record.get("key") != self.key:
            return "inputs or parameters changed"
        missing = [Path(p).name for p in self.outputs if not Path(p).exists()]
        if missing:
            return f"{', '.join(missing)} is missing"
        for rel, recorded in (record.get("stamps") or {}).items():
            why = stamps.differs(self.run.resolve(rel), recorded)
            if why:
                return f"{rel} {why}"
        return None

    @property
    def record(self) -> dict[str, Any]:
        try:
            return json.loads(self.record_path.read_text()) if self.record_path.exists() else {}
        except json.JSONDecodeError:
            return {}

    def start(self) -> None:
        """About to recompute: forget the old record first, so an interruption from here on can
        never leave half-replaced outputs that a later run would take as finished."""
        self.record_path.unlink(missing_ok=True)
        self._started = time.perf_counter()

    def check(self, announce: bool = True) -> bool:
        """`fresh`, announced in one line (unless announce is False); when not fresh the step is started (its record
        deleted). An output changed in place is said too (it is not what this step wrote)."""
        why = self.stale()
        if why is None:
            rec = self.record
            if not announce:
                return True
            print(f"[cache] {self.name}: inputs and parameters unchanged since {rec.get('finished', '?')}; "
                  f"reusing {', '.join(Path(p).name for p in self.outputs) or 'its results'} "
                  f"(to recompute, delete .cache/{self.record_path.name} in the run folder).")
            return True
        if why not in QUIET:  # the key matched, yet an output is not what this step wrote
            print(f"[cache] {self.name} recomputes: {why}.")  # not "name:", which the index reads as a reuse
        self.start()
        return False

    def done(self, **summary: Any) -> None:
        """Record success (key, outputs, duration, any summary values) atomically."""
        missing = [str(p) for p in self.outputs if not Path(p).exists()]
        if missing:
            raise RuntimeError(f"Step {self.name} finished but did not write {missing}; nothing was recorded, so make "
                               "its code write them (it recomputes on the next run).")
        rec = {
            "key": self.key,
            "outputs": [str(p) for p in self.outputs],
            "stamps": {self.run.relative(f): stamps.stamp(f) for f in stamps.files_under(self.outputs)},
            "seconds": round(time.perf_counter() - self._started, 3),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            **summary,
        }
        write_json_atomic(self.record_path, rec)
        _MADE_HERE.add(f"{self.record_path}:{self.key}")


def cached(run: Run, name: str, params: dict[str, Any], *, compute: Callable[[], T],
           load: Callable[[], T] | None = None, inputs: Sequence[Path] = (), outputs: Sequence[Path] = ()) -> T:
    """compute() once, then reuse: when the key and outputs match the record, return load() (or, with
    no load, the JSON value compute returned last time) without computing; otherwise delete the record,
    compute, and record the result."""
    step = Step(run, name, dict(params), list(inputs), list(outputs))
    if load is None and step.fresh and "result" not in step.record:
        step.start()  # a record written by the older Step API holds no result to return: compute once more
    if step.check(announce=f"{step.record_path}:{step.key}" not in _MADE_HERE):
        return load() if load is not None else step.record.get("result")
    value = compute()
    step.done(**({} if load is not None else {"result": value}))
    return value


class Lazy(Generic[T]):
    """A value made on first use (e.g. a simulator model that a cached cell may not need at all)."""

    def __init__(self, make: Callable[[], T]):
        self._make, self._value, self.made = make, None, False

    def get(self) -> T:
        if not self.made:
            self._value, self.made = self._make(), True
        return self._value  # type: ignore[return-value]

    def close(self) -> None:
        """Close the value if it was ever made (objects without close() are left alone)."""
        if self.made and hasattr(self._value, "close"):
            self._value.close()
