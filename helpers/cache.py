"""Step caching: a step records a hash of its inputs and parameters and reuses its artifacts when
nothing changed, so a warm re-run of the series is fast and a later parameter change re-runs only
what depends on it (inputs are hashed by content, so an unchanged upstream artifact stops the wave).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .paths import Run, write_json_atomic

# Parameters that name where things go, not what is computed.
IGNORED_PARAMS = {"run_dir"}


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative names and bytes)."""
    h = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def fingerprint(params: dict[str, Any], inputs: list[Path]) -> str:
    """One hash over the parameters (minus location-only ones) and the inputs' contents."""
    h = hashlib.sha256()
    clean = {k: v for k, v in params.items() if k not in IGNORED_PARAMS}
    h.update(json.dumps(clean, sort_keys=True, default=str).encode())
    for p in inputs:
        p = Path(p)
        h.update(file_digest(p).encode() if p.exists() else b"<missing>")
    return h.hexdigest()


@dataclass
class Step:
    """A cached unit of work inside a run: `if step.fresh: reuse else: work; step.done()`."""

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
        """True when the recorded key matches and every output still exists."""
        if not self.record_path.exists():
            return False
        try:
            record = json.loads(self.record_path.read_text())
        except json.JSONDecodeError:
            return False
        return record.get("key") == self.key and all(Path(p).exists() for p in self.outputs)

    @property
    def record(self) -> dict[str, Any]:
        return json.loads(self.record_path.read_text()) if self.record_path.exists() else {}

    def check(self) -> bool:
        """`fresh`, announced in one line, so notebooks say when they reuse artifacts."""
        if self.fresh:
            rec = self.record
            print(f"[cache] {self.name}: inputs and parameters unchanged since {rec.get('finished', '?')}; "
                  f"reusing {', '.join(Path(p).name for p in self.outputs) or 'its results'} (delete {self.record_path} to force).")
            return True
        self._started = time.perf_counter()
        return False

    def done(self, **summary: Any) -> None:
        """Record success (key, outputs, duration, any summary values) atomically."""
        missing = [str(p) for p in self.outputs if not Path(p).exists()]
        if missing:
            raise RuntimeError(f"Step {self.name} finished but did not write {missing}.")
        rec = {
            "key": self.key,
            "outputs": [str(p) for p in self.outputs],
            "seconds": round(time.perf_counter() - self._started, 3),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            **summary,
        }
        write_json_atomic(self.record_path, rec)
