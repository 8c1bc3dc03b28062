"""Read the per-layer table accuracy_analysis writes (error_analysis.txt) into a DataFrame, and average several images' tables.

error_analysis.txt is a fixed-width text table. A header names column groups (`simulator_error`,
and `runtime_error` when a board is attached), their sub-columns (`entire`, `single`, `single_sim`)
and for each a `cos | euc` pair. Rows are `[OpType] tensor_name  cos | euc  cos | euc ...`; a layer
the compiler fused into its neighbour has a row with no values at all, and a row may stop early
(e.g. no runtime values for a fused layer on the board). The parser reads the column set from the
header it finds, keeps missing values as NaN and never drops a row.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from helpers.core.errors import WorkbookError

ERROR_FILE = "error_analysis.txt"
# Rows the toolkit adds around the graph itself (the input, dtype conversions); never hybrid candidates.
NON_LAYER_OPS = {"Input", "exDataConvert"}
_ROW = re.compile(r"^\[(?P<op>[^\]]+)\]\s+(?P<rest>.*?)\s*$")
_PAIR = re.compile(r"(?P<cos>[^\s|]+)\s*\|\s*(?P<euc>[^\s|]+)")
_GROUP = re.compile(r"\b(\w+)_error\b")
# The toolkit prints every value with 5 decimals in fixed-width columns; a value of 100 or more fills its column and
# runs into the next one ("862.109310.83862" = euc 862.10931, then cos 0.83862 of the next pair): split such tokens.
_RUN_ON = re.compile(r"(-?\d+\.\d{5})(?=-?\d+\.\d)")


@dataclass(frozen=True)
class Column:
    """One `cos | euc` pair of the table: its group (simulator/runtime) and kind (entire/single/...)."""

    group: str
    kind: str

    @property
    def prefix(self) -> str:
        # The simulator's columns get the short names the notebooks use (entire_cos, single_euc);
        # other groups are prefixed (runtime_entire_cos, runtime_single_sim_cos).
        return self.kind if self.group == "simulator" else f"{self.group}_{self.kind}"


def _value(token: str) -> tuple[float, str]:
    """A numeric cell -> (value, flag): numbers as-is; nan/inf markers (e.g. q_nan, rt_inf) -> NaN or inf plus the marker."""
    try:
        v = float(token)
        return v, ("nan" if math.isnan(v) else "inf" if math.isinf(v) else "")
    except ValueError:
        low = token.lower()
        if "inf" in low:
            return (-math.inf if low.startswith("-") else math.inf), token
        return math.nan, token


def parse_header(lines: Sequence[str]) -> tuple[list[Column], int]:
    """Find the header (the `layer_name` line and the two lines below it) -> columns and the index of
    the first data line. Groups are split evenly over the sub-columns, in order."""
    for i, line in enumerate(lines):
        if line.strip().startswith("layer_name"):
            groups = _GROUP.findall(line)
            kinds = lines[i + 1].split() if i + 1 < len(lines) else []
            metrics = lines[i + 2].split() if i + 2 < len(lines) else []
            if not groups or not kinds or metrics != ["cos", "euc"] * len(kinds) or len(kinds) % len(groups):
                raise WorkbookError(
                    f"The header of the error analysis table is not in the expected form (line {i + 1}: {line.strip()!r}); "
                    "pass an error_analysis.txt written by rknn-toolkit2 accuracy_analysis."
                )
            per = len(kinds) // len(groups)
            cols = [Column(groups[k // per], kind) for k, kind in enumerate(kinds)]
            start = i + 3
            while start < len(lines) and set(lines[start].strip()) <= {"-"} and lines[start].strip():
                start += 1
            return cols, start
    raise WorkbookError("No 'layer_name' header found; pass the error_analysis.txt that accuracy_analysis wrote "
                        "(in its output_dir).")


def parse_error_analysis(path: str | Path) -> pd.DataFrame:
    """error_analysis.txt -> one row per layer in file order: index, op, name, fused, and for each
    header column `<prefix>_cos` / `<prefix>_euc` (NaN where the file has no value), plus `flags`
    holding any non-numeric markers (nan/inf) found in the row."""
    path = Path(path)
    if path.is_dir():
        path = path / ERROR_FILE
    if not path.is_file():
        raise WorkbookError(f"Error analysis file {path} does not exist; run accuracy_analysis (notebook 50) first.")
    lines = path.read_text(errors="replace").splitlines()
    try:
        cols, start = parse_header(lines)
    except WorkbookError as err:  # the header's own message, with the file it is about
        raise WorkbookError(f"{path}: {err}") from None
    names = [f"{c.prefix}_{m}" for c in cols for m in ("cos", "euc")]
    records: list[dict[str, Any]] = []
    for line in lines[start:]:
        m = _ROW.match(line.strip())
        if not m:
            continue
        rest = _RUN_ON.sub(r"\1 ", m["rest"])
        pairs = list(_PAIR.finditer(rest))
        name = (rest[: pairs[0].start()] if pairs else rest).strip()
        rec: dict[str, Any] = {"index": len(records), "op": m["op"], "name": name}
        values = dict.fromkeys(names, math.nan)
        flags = []
        for k, p in enumerate(pairs[: len(cols)]):
            for metric in ("cos", "euc"):
                v, flag = _value(p[metric])
                values[f"{cols[k].prefix}_{metric}"] = v
                if flag:
                    flags.append(f"{cols[k].prefix}_{metric}={flag}")
        rec.update(values)
        rec["fused"] = not pairs
        rec["flags"] = ";".join(flags)
        records.append(rec)
    if not records:
        raise WorkbookError(f"{path} has a header but no layer rows; re-run accuracy_analysis and check its log for errors.")
    df = pd.DataFrame.from_records(records, columns=["index", "op", "name", *names, "fused", "flags"])
    return df


def value_columns(df: pd.DataFrame) -> list[str]:
    """The numeric cos/euc columns of a parsed table."""
    return [c for c in df.columns if c.endswith("_cos") or c.endswith("_euc")]


def combine(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Several images' tables of the same model -> one: mean of each value over the images where it
    exists (fused stays NaN), `min_single_cos` the worst image, `flags` joined, `images` the count."""
    if not frames:
        raise WorkbookError("No error analysis tables to combine; run accuracy_analysis on at least one image.")
    base = frames[0]
    for f in frames[1:]:
        if list(f["name"]) != list(base["name"]):
            raise WorkbookError("The error analysis tables list different layers; combine only tables of the same model.")
    out = base[["index", "op", "name", "fused"]].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows (fused layers) stay NaN
        for c in value_columns(base):
            out[c] = np.nanmean(np.vstack([f[c].to_numpy(float) for f in frames]), axis=0)
        if "single_cos" in base:
            out["min_single_cos"] = np.nanmin(np.vstack([f["single_cos"].to_numpy(float) for f in frames]), axis=0)
    out["flags"] = [";".join(sorted({x for f in frames for x in str(f["flags"].iloc[i]).split(";") if x}))
                    for i in range(len(base))]
    out["images"] = len(frames)
    return out


def excerpt(path: str | Path, rows: int = 6) -> str:
    """The header and the first rows of an error_analysis.txt, as the toolkit wrote them."""
    lines = Path(path).read_text(errors="replace").splitlines()
    try:
        _, first = parse_header(lines)
    except WorkbookError:
        return "\n".join(lines[: rows + 4])
    body = [ln for ln in lines[first:] if ln.strip()][:rows]
    return "\n".join([*lines[max(0, first - 4): first], *body])
