"""Do two run folders hold the same results? For a change meant to leave behaviour alone (a refactor): run the
same parameters before and after into two folders, then

    .venv/bin/python tests/compare_runs.py outputs/before outputs/after      # exit 0: same results

Compared: eval/metrics.json, analysis/layers.csv, analysis/sweep.csv, hybrid/compare.csv, hybrid/search.csv,
hybrid/rules.csv, hybrid/chosen.json, rknn/convert.json and the index page's text (key figures, verdict, tables). Ignored:
what a re-run may change without being a different result: times, dates, durations, the run folder's own path, and
the index's model tags ("model 8be01d2": a hash of rknn/convert.json, which holds paths).
It reads files only (no workbook code), so it judges the code before and after alike.
"""
from __future__ import annotations

import csv
import html
import json
import re
import sys
from pathlib import Path

FILES = ["eval/metrics.json", "analysis/layers.csv", "analysis/sweep.csv", "hybrid/compare.csv", "hybrid/search.csv",
         "hybrid/rules.csv", "hybrid/chosen.json", "rknn/convert.json", "board/metrics.json"]
# keys and columns that hold a time, a duration or a throughput (images per second), not a result
TIMING = re.compile(r"(^|_|\b)(seconds?|secs?|build_s|time|times|elapsed|duration|finished|started|date|when|at|per_s)($|_|\b)",
                    re.I)
MODEL_TAG = re.compile(r"\bmodel [0-9a-f]{7}\b")  # the index's tag of the model a figure was computed from
SECONDS = re.compile(r"\b\d+(\.\d+)?\s?(s|ms|min)\b|\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d)?(\.\d+)?( UTC)?")


def _flat(obj, prefix: str = "") -> dict[str, object]:
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in _flat(val, f"{prefix}{key}.").items()}
    if isinstance(obj, list):
        return {k: v for i, val in enumerate(obj) for k, v in _flat(val, f"{prefix}{i}.").items()}
    return {prefix[:-1]: obj}


def _norm(value: object, root: Path) -> object:
    """A string with the run folder's path, then its bare name (the index's title), written as <run>."""
    if not isinstance(value, str):
        return value
    text = value.replace(str(root.resolve()), "<run>").replace(str(root), "<run>")
    return re.sub(rf"(?<![\w.-]){re.escape(root.resolve().name)}(?![\w.-])", "<run>", text)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def records(root: Path, name: str) -> dict[str, object] | None:
    """One file's results as {key: value} without timing, paths made relative to the run (None: file absent)."""
    path = root / name
    if not path.is_file():
        return None
    if name.endswith(".json"):
        flat = _flat(json.loads(path.read_text()))
    else:
        flat = {f"{i}.{col}": val for i, row in enumerate(_rows(path)) for col, val in row.items()}
    return {k: _norm(v, root) for k, v in flat.items() if not TIMING.search(k.rsplit(".", 1)[-1])}


def index_text(root: Path) -> list[str]:
    """The index page's visible lines, with times and dates masked."""
    page = root / "report" / "index.html"
    if not page.is_file():
        return []
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", page.read_text(), flags=re.S | re.I)
    text = html.unescape(re.sub(r"<[^>]+>", "\n", text))
    lines = [" ".join(ln.split()) for ln in text.splitlines()]
    return [MODEL_TAG.sub("model <hash>", SECONDS.sub("<time>", _norm(ln, root))) for ln in lines if ln]


def differences(a: Path, b: Path) -> list[str]:
    """Every result that differs between run folders a and b, one line each."""
    out = []
    for name in FILES:
        ra, rb = records(a, name), records(b, name)
        if ra is None and rb is None:
            continue
        if ra is None or rb is None:
            out.append(f"{name}: only in {'b' if ra is None else 'a'}")
            continue
        for key in sorted(set(ra) | set(rb)):
            if ra.get(key) != rb.get(key):
                out.append(f"{name} {key}: {ra.get(key)!r} != {rb.get(key)!r}")
    ia, ib = index_text(a), index_text(b)
    if ia != ib:
        only_a, only_b = [ln for ln in ia if ln not in ib], [ln for ln in ib if ln not in ia]
        out += [f"index.html only in a: {ln}" for ln in only_a] + [f"index.html only in b: {ln}" for ln in only_b]
        if not only_a and not only_b:
            out.append("index.html: same lines in another order")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: compare_runs.py RUN_A RUN_B")
    diffs = differences(Path(sys.argv[1]), Path(sys.argv[2]))
    for line in diffs:
        print(line)
    print(f"{len(diffs)} difference(s) between {sys.argv[1]} and {sys.argv[2]}" if diffs else "same results")
    sys.exit(1 if diffs else 0)
