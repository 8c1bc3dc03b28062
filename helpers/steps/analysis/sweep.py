"""Notebook 50's quantization sweep: build the model once per (quantized_algorithm, quantized_method) in the simulator,
score each with the judge, keep the table (analysis/sweep.csv) and pick the best setting by one rule."""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
from tqdm.auto import tqdm

from helpers.core.errors import RknnError, WorkbookError
from helpers.core.isolate import ADVICE, native_cause
from helpers.steps.evaluate import simulator
from helpers.tasks.measures import METRIC_LABELS, metric_in, metric_text
from helpers.toolkit.options import QUANTIZED_ALGORITHMS, QUANTIZED_METHODS, ConvertConfig
from helpers.toolkit.session import log_tail


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
    """The metric column of a sweep (or any score) table: the first of top1, map50_95 present in it."""
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
    score its raw outputs on the judge's images (helpers.tasks.scoring). The worker's native output goes to <log>.out."""
    with open(Path(log_path).with_suffix(".out"), "ab", buffering=0) as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    t = time.perf_counter()
    with simulator(record.source, cfg, dataset, record.input_size, log_path, record.load_path, batch, name) as be:
        build_s = time.perf_counter() - t
        outputs = be.outputs(judge.pixels)
    return {**judge.score(outputs).row(judge), "build_s": round(build_s, 2), "why": ""}


def crash_reason(log_path: Path) -> str:
    """One line for a sweep cell whose build killed its worker process, from the worker's last words."""
    tail = log_tail(Path(log_path).with_suffix(".out"), 8) + "\n" + log_tail(Path(log_path), 8)
    return f"the build crashed its process: {native_cause(tail) or ADVICE}"


def run_sweep(record: Any, grid: Sequence[tuple[str, str]], judge: Any, log_dir: Path, dataset: Path | None = None,
              batch: int = 8) -> pd.DataFrame:
    """Build the recorded model once per (algorithm, method) in the simulator and score it with the judge
    (helpers.tasks.scoring: top-1 or mAP50-95) against FP32: the metric, its change in points, output cosine, build time.

    Each cell runs in a worker process (spawned once, replaced after a crash), so a setting that makes
    the toolkit abort costs its row (with the reason in `why`), not the notebook's kernel."""
    rows, pool = [], None
    try:
        for algorithm, method in tqdm(list(grid), desc="sweep", unit="build"):
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
            rows.append({"algorithm": algorithm, "method": method, **{k: row.get(k, float("nan")) for k in sweep_figures(judge)},
                         "why": row["why"]})
    finally:
        if pool is not None:
            pool.shutdown()
    return pd.DataFrame(rows)


def sweep_table(sweep: pd.DataFrame, judge: Any, calibration: str) -> pd.DataFrame:
    """The sweep as analysis/sweep.csv stores it: plus fp32_<metric>, the number of images and the calibration."""
    return sweep.assign(**{f"fp32_{judge.key}": judge.fp32.value}, images=judge.images, calibration=calibration)


def best_row(sweep: pd.DataFrame) -> tuple[pd.Series, str]:
    """The best setting: highest metric (top-1 or mAP50-95), then highest mean output cosine, then fastest build; with why."""
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
