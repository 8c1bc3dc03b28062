"""Notebook 50's quantization sweep: build the model once per (quantized_algorithm, quantized_method) in the simulator,
score each with the judge, compare it by the workbook's one noise rule (Judge.paired) with FP32 and with notebook 20's
setting, note which settings gave bit-identical outputs and what the toolkit's log says it ran, keep the table
(analysis/sweep.csv) and pick the best setting by one rule."""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from helpers.core.errors import RknnError, WorkbookError, strip_ansi
from helpers.core.isolate import ADVICE, native_cause
from helpers.steps.evaluate import simulator
from helpers.tasks.measures import METRIC_LABELS, Outputs, metric_in, metric_text
from helpers.tasks.noise import Paired
from helpers.toolkit.options import QUANTIZED_ALGORITHMS, QUANTIZED_METHODS, ConvertConfig
from helpers.toolkit.session import log_tail

# The paired comparisons a sweep row carries (prefix -> what it is measured against) and their columns.
PAIRED = {"vs_fp32": "FP32", "vs_current": "notebook 20's setting"}
PAIRED_COLUMNS = [f"{p}_{c}" for p in PAIRED for c in ("pt", "low_pt", "high_pt", "verdict")]
# What rknn-toolkit2 2.5.0 writes to its build log for an algorithm: only mmse shows itself (its MmseQuant2 progress
# bar); normal and kl_divergence write identical logs, so for them the log names no algorithm.
LOG_MARKERS = {"mmse": "MmseQuant2"}


def parse_grid(grid: Sequence[Sequence[str]] | Sequence[str]) -> list[tuple[str, str]]:
    """[[algorithm, method], ...] (or ["normal/channel", ...]) -> validated pairs."""
    pairs = []
    for cell in grid:
        parts = cell.split("/") if isinstance(cell, str) else list(cell)
        if len(parts) != 2:
            raise WorkbookError(f"Sweep cell {cell!r} must be an [algorithm, method] pair, e.g. ['mmse', 'channel'].")
        a, m = parts
        if a not in QUANTIZED_ALGORITHMS:
            raise WorkbookError(f"Sweep cell {cell!r} has quantized_algorithm {a!r}; "
                                f"use one of {', '.join(QUANTIZED_ALGORITHMS)}.")
        if m not in QUANTIZED_METHODS:
            raise WorkbookError(f"Sweep cell {cell!r} has quantized_method {m!r}; use one of {', '.join(QUANTIZED_METHODS)}.")
        pairs.append((a, m))
    if not pairs:
        raise WorkbookError("The sweep grid is empty; give at least one [algorithm, method] pair, e.g. [['normal', 'channel']].")
    return pairs


def sweep_metric(table: pd.DataFrame) -> str:
    """The metric column of a sweep (or any score) table: the first of METRIC_LABELS' keys present in it (a task's own
    mAP before the box one)."""
    key = metric_in(table.columns)
    if key:
        return key
    columns = ", ".join(map(str, table.columns))
    raise WorkbookError(f"The table has no metric column ({', '.join(METRIC_LABELS)}); its columns are {columns}. "
                        "Re-run notebook 50's sweep to rewrite analysis/sweep.csv.")


def sweep_figures(judge: Any) -> list[str]:
    """The sweep's numeric columns for the judge's metric, in table order (top1, top1_delta_pt, ... build_s)."""
    return [judge.key, judge.delta_key, "mean_cosine", "min_cosine", judge.agreement_key, "build_s"]


def sweep_cell(record: Any, cfg: Any, dataset: Path | None, judge: Any, log_path: Path, batch: int, name: str) -> dict[str, Any]:
    """One cell of the sweep, run in the sweep's worker process: build this setting in the simulator and
    score its raw outputs on the judge's images (helpers.tasks.scoring); the raw outputs come back too (`outputs`),
    for the paired comparisons. The worker's native output goes to <log>.out."""
    with open(Path(log_path).with_suffix(".out"), "ab", buffering=0) as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    t = time.perf_counter()
    with simulator(record.source, cfg, dataset, record.input_size, log_path, record.load_path, batch, name) as be:
        build_s = time.perf_counter() - t
        outputs = be.outputs(judge.pixels)
    return {**judge.score(outputs).row(judge), "build_s": round(build_s, 2), "why": "", "outputs": outputs}


def fingerprint(outputs: Outputs) -> str:
    """A hash of every raw output of every image: equal fingerprints = bit-identical models on these images."""
    h = hashlib.sha256()
    for image in outputs:
        for o in image:
            h.update(np.ascontiguousarray(o).tobytes())
    return h.hexdigest()


def algorithm_in_log(log_path: Path) -> str:
    """The quantization algorithm a cell's toolkit log (and its worker's native output) shows it ran: 'mmse' when
    the MmseQuant2 step appears, else 'none' (rknn-toolkit2 2.5.0 names neither normal nor kl_divergence)."""
    text = ""
    for path in (Path(log_path), Path(log_path).with_suffix(".out")):
        try:
            text += strip_ansi(path.read_text(errors="replace"))
        except OSError:
            pass
    return next((name for name, marker in LOG_MARKERS.items() if marker in text), "none")


def paired_columns(prefix: str, paired: Paired | None, label: str = "") -> dict[str, Any]:
    """A Paired as the table's four columns (difference, 95 % interval, verdict); `label` fills the verdict when
    there is no comparison (e.g. 'reference' on notebook 20's own row)."""
    if paired is None:
        return {f"{prefix}_pt": float("nan"), f"{prefix}_low_pt": float("nan"), f"{prefix}_high_pt": float("nan"),
                f"{prefix}_verdict": label}
    return {f"{prefix}_pt": paired.difference_pt, f"{prefix}_low_pt": paired.low_pt, f"{prefix}_high_pt": paired.high_pt,
            f"{prefix}_verdict": paired.verdict}


def row_paired(row: Any, prefix: str) -> Paired | None:
    """A table row's comparison back as a Paired (None when the row has none): what sentences print, so the text
    and analysis/sweep.csv carry the same numbers."""
    verdict = row.get(f"{prefix}_verdict", "")
    value = row.get(f"{prefix}_pt", float("nan"))
    if not isinstance(verdict, str) or verdict not in ("better", "worse", "within noise") or pd.isna(value):
        return None
    return Paired(float(value), float(row[f"{prefix}_low_pt"]), float(row[f"{prefix}_high_pt"]), verdict, "",
                  int(row.get("images", 0) or 0))


def crash_reason(log_path: Path) -> str:
    """One line for a sweep cell whose build killed its worker process, from the worker's last words."""
    tail = log_tail(Path(log_path).with_suffix(".out"), 8) + "\n" + log_tail(Path(log_path), 8)
    return f"the build crashed its process: {native_cause(tail) or ADVICE}"


def run_sweep(record: Any, grid: Sequence[tuple[str, str]], judge: Any, log_dir: Path, dataset: Path | None = None,
              batch: int = 8) -> pd.DataFrame:
    """Build the recorded model once per (algorithm, method) in the simulator and score it with the judge
    (helpers.tasks.scoring: top-1, or the task's mAP50-95: box, mask, pose): the metric, output cosine, build time;
    against FP32 and against notebook 20's setting (record.config's, when in the grid) by Judge.paired
    (PAIRED_COLUMNS); `same_outputs_as`, the earlier row whose raw outputs are bit-identical; `log_names_algorithm`,
    what the toolkit's log says it ran. Notebook 20's setting is built first (its outputs are every other row's
    reference); the table keeps the grid's order. Each cell runs in a worker process (spawned once, replaced after a
    crash), so a setting that makes the toolkit abort costs its row (with the reason in `why`), not the notebook's
    kernel."""
    current = (record.config.quantized_algorithm, record.config.quantized_method)
    order = sorted(range(len(grid)), key=lambda i: tuple(grid[i]) != current)  # notebook 20's setting first (stable)
    rows: dict[int, dict[str, Any]] = {}
    seen: dict[str, str] = {}  # fingerprint -> the first setting that gave it, in grid order
    reference, pool = None, None
    try:
        for i in tqdm(order, desc="sweep", unit="build"):
            algorithm, method = grid[i]
            cfg = ConvertConfig.from_dict({**record.config.to_dict(), "quantized_algorithm": algorithm,
                                           "quantized_method": method})
            log_path = Path(log_dir) / f"sweep_{algorithm}_{method}.log"
            pool = pool or cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"))
            try:
                row = pool.submit(sweep_cell, record, cfg, dataset or record.dataset, judge, log_path, batch,
                                  f"{algorithm}/{method}").result()
            except cf.process.BrokenProcessPool:
                pool.shutdown(cancel_futures=True)
                pool, row = None, {"why": crash_reason(log_path)}
            except RknnError as err:
                row = {"why": f"{err.call} failed: {err.reason}"}
            outputs = row.pop("outputs", None)
            is_current = (algorithm, method) == current
            if is_current:
                reference = outputs
            extra = {**paired_columns("vs_fp32", judge.paired(outputs) if outputs is not None else None),
                     **paired_columns("vs_current", judge.paired(outputs, reference)
                                      if outputs is not None and reference is not None and not is_current else None,
                                      "reference" if is_current and outputs is not None else ""),
                     "fingerprint": fingerprint(outputs) if outputs is not None else "",
                     "log_names_algorithm": algorithm_in_log(log_path) if outputs is not None else ""}
            rows[i] = {"algorithm": algorithm, "method": method, **{k: row.get(k, float("nan")) for k in sweep_figures(judge)},
                       "why": row["why"], **extra}
    finally:
        if pool is not None:
            pool.shutdown()
    table = []
    for i in range(len(grid)):
        r = rows[i]
        mark = r.pop("fingerprint")
        r["same_outputs_as"] = seen.get(mark, "") if mark else ""
        if mark:
            seen.setdefault(mark, f"{r['algorithm']}/{r['method']}")
        table.append(r)
    return pd.DataFrame(table)


def sweep_table(sweep: pd.DataFrame, judge: Any, calibration: str) -> pd.DataFrame:
    """The sweep as analysis/sweep.csv stores it: plus fp32_<metric>, the number of images and the calibration."""
    return sweep.assign(**{f"fp32_{judge.key}": judge.fp32.value}, images=judge.images, calibration=calibration)


def best_row(sweep: pd.DataFrame) -> tuple[pd.Series, str]:
    """The best setting: highest metric (top-1 or the task's mAP50-95), then highest mean output cosine, then fastest
    build; with why."""
    key = sweep_metric(sweep)
    label = METRIC_LABELS[key]
    built = sweep.dropna(subset=[key])
    if built.empty:
        reasons = "; ".join(f"{r.algorithm}/{r.method}: {r.why}" for r in sweep.itertuples())
        raise WorkbookError(f"No setting of the sweep built ({reasons}); change sweep_grid or notebook 20's options.")
    sweep = built
    order = sweep.sort_values([key, "mean_cosine", "build_s"], ascending=[False, False, True])
    best = order.iloc[0]
    tied = sweep[sweep[key] == best[key]]
    why = f"highest {label} ({metric_text(key, best[key])})"
    if len(tied) > 1:
        why += (f", and of the {len(tied)} settings with that {label} the highest mean output cosine vs FP32 "
                f"({best['mean_cosine']:.5f})")
    else:
        why += f"; mean output cosine vs FP32 {best['mean_cosine']:.5f}"
    why += f"; build {best['build_s']:.1f} s"
    return best, f"Best: quantized_algorithm={best['algorithm']!r}, quantized_method={best['method']!r}: {why}."


def table_value(sweep: pd.DataFrame, column: str, given: Any) -> Any:
    """A value given by the caller, else the table's column of that name (first row), else None."""
    if given is not None:
        return given
    return sweep[column].iloc[0] if column in sweep and len(sweep) else None
