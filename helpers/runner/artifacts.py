"""Tolerant readers of a run folder's JSON/CSV artifacts for the index page: each returns None (or an empty result) for a
missing, unreadable or half-written file or value, so a step that has not run shows as "not run" and nothing is invented."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any


def read_json(path: Path) -> Any:
    """The parsed JSON file, None when it is missing or not (yet) whole JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_csv(path: Path) -> list[dict[str, str]] | None:
    """The CSV file's rows as dicts by header, None when it is missing or unreadable."""
    try:
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError):
        return None


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{'a.b.c': value} for nested dicts (lists are kept as values)."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict):
                out.update(flatten(v, key))
            else:
                out[key] = v
    return out


def number(value: Any) -> float | None:
    """A finite float from a JSON/CSV value, else None."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if x == x and abs(x) != float("inf") else None


def pick(obj: Any, *patterns: str) -> tuple[str, float] | None:
    """The first numeric leaf whose dotted key matches one of the regex patterns (tried in order)."""
    flat = flatten(obj) if isinstance(obj, dict) else {}
    for pattern in patterns:
        rx = re.compile(pattern, re.I)
        for key, value in flat.items():
            if rx.fullmatch(key) and number(value) is not None:
                return key, float(value)
    return None



def size(nbytes: float | None) -> str | None:
    if nbytes is None:
        return None
    return f"{nbytes / 1e6:.2f} MB" if nbytes >= 1e5 else f"{nbytes / 1e3:.1f} kB"


def file_size(path: Path) -> float | None:
    return float(path.stat().st_size) if path.is_file() else None
