"""Per-layer quantization error: run `accuracy_analysis`, parse its error_analysis.txt, flag and rank
the layers, plot them; and the quantization sweep (algorithm x method) of notebook 50.

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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from helpers.core.errors import WorkbookError
from helpers.tasks.scoring import METRIC_LABELS, binomial_noise_pt, metric_heading, metric_in, metric_text

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
    raise WorkbookError("No 'layer_name' header found; pass the error_analysis.txt that accuracy_analysis wrote (in its output_dir).")


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


# ---------------------------------------------------------------- running it

def run_accuracy_analysis(rk: Any, images: Sequence[Path], out_dir: str | Path, target: str | None = None,
                          device_id: str | None = None, progress: bool = True) -> list[Path]:
    """accuracy_analysis on a built toolkit, once per image (the call takes one sample per model input),
    each into out_dir/<NN>_<image stem>/ (out_dir is replaced); returns the error_analysis.txt paths. target=None: simulator only;
    a platform name adds the board's runtime columns (needs a connected board)."""
    import shutil

    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    if not images:
        raise WorkbookError("accuracy_analysis needs at least one image; set analysis_images >= 1.")
    shutil.rmtree(out_dir, ignore_errors=True)  # no stale snapshots of an earlier, larger image set
    paths = []
    for k, img in enumerate(tqdm(list(images), desc="accuracy_analysis", unit="img", disable=not progress)):
        folder = out_dir / f"{k:02d}_{Path(img).stem}"
        rk.accuracy_analysis(inputs=[str(img)], output_dir=str(folder), target=target, device_id=device_id)
        paths.append(folder / ERROR_FILE)
    return paths


def analysis_images(run: Any, record: Any, data_dir: Path, n: int, folder: Path) -> list[Path]:
    """The n validation images accuracy_analysis reads, the same n a judge on n images scores (helpers.tasks.scoring):
    a classifier's own files, a detector's letterboxed PNGs written to folder."""
    from helpers.steps.judge import analysis_inputs, judge_for

    if n < 1:
        raise WorkbookError(f"analysis_images={n} gives accuracy_analysis no image; use 1 or more.")
    return analysis_inputs(judge_for(run, record, data_dir, n), n, folder, len(record.config.mean_values or [0, 0, 0]))


def value_columns(df: pd.DataFrame) -> list[str]:
    """The numeric cos/euc columns of a parsed table."""
    return [c for c in df.columns if c.endswith("_cos") or c.endswith("_euc")]


def combine(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Several images' tables of the same model -> one: mean of each value over the images where it
    exists (fused stays NaN), `min_single_cos` the worst image, `flags` joined, `images` the count."""
    import warnings

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
    out["flags"] = [";".join(sorted({x for f in frames for x in str(f["flags"].iloc[i]).split(";") if x})) for i in range(len(base))]
    out["images"] = len(frames)
    return out


# ---------------------------------------------------------------- reading it

def candidates(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that are real layers with values (not the input, dtype conversions or fused rows)."""
    return df[~df["op"].isin(NON_LAYER_OPS) & ~df["fused"]]


def warning_signs(df: pd.DataFrame, threshold: float = 0.99) -> pd.DataFrame:
    """The two warning signs: a cosine below threshold (entire or single), and NaN/inf values
    (an all-zero or overflowing tensor). Fused rows have no values and are not flagged."""
    rows = []
    for _, r in df[~df["fused"]].iterrows():
        reasons = []
        if r.get("flags"):
            reasons.append(f"non-numeric values ({r['flags']}): all-zero or overflowing tensor")
        for col in ("entire_cos", "single_cos", "runtime_entire_cos"):
            v = r.get(col, np.nan)
            if col in df and pd.notna(v) and v < threshold:
                reasons.append(f"{col} {v:.5f} < {threshold}")
        if reasons:
            rows.append({"index": r["index"], "op": r["op"], "name": r["name"], "warning": "; ".join(reasons)})
    return pd.DataFrame(rows, columns=["index", "op", "name", "warning"])


def rank_layers(df: pd.DataFrame) -> pd.DataFrame:
    """Layers with two scores, sorted by the first:
    - single_drop = 1 - single_cos: the error this layer adds on its own, fed exact (float) inputs;
      large = the layer itself quantizes badly -> a hybrid (float16) candidate.
    - gap = single_cos - entire_cos: how much worse the layer looks with the quantized model's real
      inputs than with exact ones; large = error accumulated upstream reaches it (fix it earlier)."""
    c = candidates(df).copy()
    c["single_drop"] = 1.0 - c["single_cos"]
    c["gap"] = c["single_cos"] - c["entire_cos"]
    c = c.sort_values(["single_drop", "gap"], ascending=False, na_position="last")
    c["rank_drop"] = np.arange(1, len(c) + 1)
    c["rank_gap"] = c["gap"].rank(ascending=False, method="first", na_option="bottom").astype(int)
    return c[["index", "op", "name", "entire_cos", "single_cos", "single_drop", "gap", "rank_drop", "rank_gap"]].reset_index(drop=True)


def plot_layers(tables: dict[str, pd.DataFrame] | pd.DataFrame, threshold: float = 0.99, path: str | Path | None = None,
                title: str = "Per-layer cosine vs the float model"):
    """Entire and single cosine per layer (layer index on x; names in layers.csv), threshold line;
    several tables (e.g. INT8 vs hybrid) are overlaid. Saved to path if given."""
    import matplotlib.pyplot as plt

    if isinstance(tables, pd.DataFrame):
        tables = {"": tables}
    # Several models: place every row at the first table's index of the same tensor name (a hybrid
    # adds dtype-conversion rows, so raw row numbers would drift); names the first lacks are left out.
    first = next(iter(tables.values()))
    where = dict(zip(first["name"], first["index"]))
    tables = {k: (t if i == 0 else t[t["name"].isin(where)].assign(index=lambda d: d["name"].map(where)))
              for i, (k, t) in enumerate(tables.items())}
    fig, axes = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    for (label, df), color in zip(tables.items(), ["tab:blue", "tab:orange", "tab:green", "tab:red"]):
        for ax, col in zip(axes, ("entire_cos", "single_cos")):
            ax.plot(df["index"], df[col], marker=".", ms=4, lw=1, color=color, label=label or col)
            bad = df[df[col] < threshold]
            ax.scatter(bad["index"], bad[col], s=30, facecolors="none", edgecolors="red", zorder=3,
                       label=f"below {threshold} (flagged)" if color == "tab:blue" and len(bad) else None)
            nan = df[df["flags"].fillna("").astype(str).str.len() > 0] if "flags" in df else df.iloc[:0]
            if len(nan):
                ax.scatter(nan["index"], [threshold] * len(nan), marker="x", color="red", zorder=3, label="NaN/inf values")
    for ax, what in zip(axes, ("entire: accumulated error (whole quantized model)", "single: this layer alone (exact inputs)")):
        ax.axhline(threshold, color="red", ls="--", lw=1, label=f"threshold {threshold}")
        ax.set_ylabel("cosine vs float")
        ax.set_title(what, fontsize=10)
        lo = np.nanmin([np.nanmin(df[c]) for df in tables.values() for c in ("entire_cos", "single_cos")])
        ax.set_ylim(min(lo, threshold) - 0.005, 1.001)
        ax.legend(loc="lower left", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("layer index (row of error_analysis.txt; names in layers.csv)")
    fig.suptitle(title)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


# ---------------------------------------------------------------- the quantization sweep

def parse_grid(grid: Sequence[Sequence[str]] | Sequence[str]) -> list[tuple[str, str]]:
    """[[algorithm, method], ...] (or ["normal/channel", ...]) -> validated pairs."""
    from helpers.steps.convert import QUANTIZED_ALGORITHMS, QUANTIZED_METHODS

    pairs = []
    for cell in grid:
        parts = cell.split("/") if isinstance(cell, str) else list(cell)
        if len(parts) != 2:
            raise WorkbookError(f"Sweep cell {cell!r} must be an [algorithm, method] pair, e.g. ['mmse', 'channel'].")
        a, m = parts
        if a not in QUANTIZED_ALGORITHMS:
            raise WorkbookError(f"Sweep cell {cell!r} has quantized_algorithm {a!r}; use one of {', '.join(QUANTIZED_ALGORITHMS)}.")
        if m not in QUANTIZED_METHODS:
            raise WorkbookError(f"Sweep cell {cell!r} has quantized_method {m!r}; use one of {', '.join(QUANTIZED_METHODS)}.")
        pairs.append((a, m))
    if not pairs:
        raise WorkbookError("The sweep grid is empty; give at least one [algorithm, method] pair, e.g. [['normal', 'channel']].")
    return pairs




def table_metric(table: pd.DataFrame) -> str:
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
    import os

    from helpers.steps.evaluate import simulator

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
    from helpers.core.isolate import ADVICE, native_cause
    from helpers.toolkit.session import log_tail

    tail = log_tail(Path(log_path).with_suffix(".out"), 8) + "\n" + log_tail(Path(log_path), 8)
    return f"the build crashed its process: {native_cause(tail) or ADVICE}"


def run_sweep(record: Any, grid: Sequence[tuple[str, str]], judge: Any, log_dir: Path, dataset: Path | None = None,
              batch: int = 8) -> pd.DataFrame:
    """Build the recorded model once per (algorithm, method) in the simulator and score it with the judge
    (helpers.tasks.scoring: top-1 or mAP50-95) against FP32: the metric, its change in points, output cosine, build time.

    Each cell runs in a worker process (spawned once, replaced after a crash), so a setting that makes
    the toolkit abort costs its row (with the reason in `why`), not the notebook's kernel."""
    import concurrent.futures as cf
    import multiprocessing as mp

    from tqdm.auto import tqdm

    from helpers.core.errors import RknnError
    from helpers.steps.convert import ConvertConfig

    rows, pool = [], None
    try:
        for algorithm, method in tqdm(list(grid), desc="sweep", unit="build"):
            cfg = ConvertConfig.from_dict({**record.config.to_dict(), "quantized_algorithm": algorithm, "quantized_method": method})
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
    key = table_metric(sweep)
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
        why += f", and of the {len(tied)} settings with that {label} the highest mean output cosine vs FP32 ({best['mean_cosine']:.5f})"
    else:
        why += f"; mean output cosine vs FP32 {best['mean_cosine']:.5f}"
    why += f"; build {best['build_s']:.1f} s"
    return best, f"Best: quantized_algorithm={best['algorithm']!r}, quantized_method={best['method']!r}: {why}."


def _table_value(sweep: pd.DataFrame, column: str, given: Any) -> Any:
    """A value given by the caller, else the table's column of that name (first row), else None."""
    if given is not None:
        return given
    return sweep[column].iloc[0] if column in sweep and len(sweep) else None


def sweep_headline(sweep: pd.DataFrame, noise_pt: float | None = None) -> str:
    """FP32's metric on the sweep's images and how to read a difference: one image for top-1, the noise (pt) for mAP."""
    key = table_metric(sweep)
    images, fp32 = int(_table_value(sweep, "images", None)), float(_table_value(sweep, f"fp32_{key}", None))
    scale = (f"1 image = {100 / images:.2f} pt" if key == "top1" else
             f"noise about ±{noise_pt:.1f} pt, two standard deviations of a bootstrap over the images" if noise_pt is not None else "")
    return f"FP32 {METRIC_LABELS[key]} on the same {images} images: **{metric_text(key, fp32)}**" + (f" ({scale})." if scale else ".")


def plot_sweep(sweep: pd.DataFrame, fp32: float | None = None, path: str | Path | None = None, images: int = 0,
               note: str = "", noise_pt: float | None = None):
    """Bars of the table's metric (top-1 or mAP50-95, in %) and mean output cosine per setting, build time in
    the labels. FP32 and the image count default to the table's fp32_<metric> and images columns; the axis
    names one image in points (top-1) or the noise band around FP32 (mAP, noise_pt); note (e.g. demo) titles it."""
    key = table_metric(sweep)
    label = METRIC_LABELS[key]
    fp32, images = _table_value(sweep, f"fp32_{key}", fp32), int(_table_value(sweep, "images", images or None) or 0)
    short = {"kl_divergence": "kl_div"}
    labels = [f"{short.get(a, a)}\n{m}\n" + (f"{b:.1f} s" if b == b else "failed")
              for a, m, b in zip(sweep["algorithm"], sweep["method"], sweep["build_s"])]
    fig, (a1, a2) = top1_cosine_bars(labels, sweep[key], sweep["mean_cosine"], "algorithm / method / build time",
                                     (f"{metric_heading(label)} per quantization setting", "Output agreement with FP32"),
                                     colors=("tab:blue", "tab:orange"), cosine_margin=0.01, figsize=(11, 3.8))
    values = 100 * np.asarray(sweep[key], dtype=float)
    ref = 100 * float(fp32) if fp32 is not None else None
    if ref is not None:
        a1.axhline(ref, color="black", ls="--", lw=1, label=f"FP32 {ref:.1f}%")
        if key != "top1" and noise_pt:
            a1.axhspan(ref - noise_pt, ref + noise_pt, color="gray", alpha=0.15, label=f"FP32 ± noise ({noise_pt:.1f} pt)")
        a1.legend(loc="lower right" if key == "top1" else "best", fontsize=8)
    if key == "top1":
        margin = max(2.0, 3 * 100 / images) if images else 2.0  # a few images of range: one image must not fill the plot
        a1.set_ylim(max(0, min(np.nanmin(values), ref if ref is not None else 100) - margin), 100.5)
        if images:
            a1.set_ylabel(f"top-1 (%), {images} val images\n1 image = {100 / images:.2f} pt")
    else:
        margin = max(2.0, 1.5 * (noise_pt or 0))
        lo, hi = np.nanmin([*values, ref if ref is not None else np.nan]), np.nanmax([*values, ref if ref is not None else np.nan])
        a1.set_ylim(max(0, lo - margin), min(100.5, hi + margin))
        a1.set_ylabel(f"{label} (%), {images} val images" + (f"\nnoise about ±{noise_pt:.1f} pt" if noise_pt else ""))
    if note:
        fig.suptitle(note, color="#a06000")
    return save_figure(fig, path)


def top1_cosine_bars(labels: Sequence[str], top1: Any, cosine: Any, xlabel: str, titles: tuple[str, str],
                     colors: tuple[Any, Any], cosine_margin: float, figsize: tuple[float, float]):
    """Two bar panels shared by the sweep and the hybrid comparison: top-1 (%) and mean output cosine vs FP32."""
    import matplotlib.pyplot as plt

    x = np.arange(len(labels))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=figsize)
    a1.bar(x, 100 * np.asarray(top1, dtype=float), color=colors[0])
    a1.set_ylabel("top-1 on val (%)")
    a1.set_title(titles[0])
    cos = np.asarray(cosine, dtype=float)
    a2.bar(x, cos, color=colors[1])
    a2.set_ylim(max(0.0, np.nanmin(cos) - cosine_margin), 1.0005)
    a2.set_ylabel("mean output cosine vs FP32")
    a2.set_title(titles[1])
    for ax in (a1, a2):
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_xlabel(xlabel)
        ax.grid(axis="y", alpha=0.3)
    return fig, (a1, a2)


def save_figure(fig: Any, path: str | Path | None):
    """tight_layout, save when a path is given, return the figure."""
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


def small_calibration(dataset: Path, n: int, out_file: Path) -> Path:
    """Demo mode: a calibration list with only the first n images of dataset (a deliberately poor
    calibration, so the quantization error is large enough to see and to repair)."""
    from helpers.core.lists import read_image_list
    from helpers.tasks.data import write_calibration_list

    images = read_image_list(dataset)  # relative lines are from the list's folder, as the toolkit reads them
    if n < 1:
        raise WorkbookError(f"calib_images={n} would leave no calibration image; use 0 for the full list or n >= 1.")
    return write_calibration_list(images[:n], out_file)


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """DataFrame -> CSV written under a temporary name, then renamed."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


# ---------------------------------------------------------------- sentences computed from this run

def excerpt(path: str | Path, rows: int = 6) -> str:
    """The header and the first rows of an error_analysis.txt, as the toolkit wrote them."""
    lines = Path(path).read_text(errors="replace").splitlines()
    try:
        _, first = parse_header(lines)
    except WorkbookError:
        return "\n".join(lines[: rows + 4])
    body = [ln for ln in lines[first:] if ln.strip()][:rows]
    return "\n".join([*lines[max(0, first - 4): first], *body])


def flagged_summary(warnings: pd.DataFrame, layers: pd.DataFrame, threshold: float, top: int = 5) -> tuple[str, pd.DataFrame]:
    """'N of M layers flagged' and the `top` worst of them (lowest cosine first; rows without a number, e.g. q_zero,
    are named in the headline and listed after the numbers), instead of every row."""
    worst = layers.drop_duplicates("name").set_index("name")[["entire_cos", "single_cos"]].min(axis=1)
    ranked = warnings.assign(lowest_cos=warnings["name"].map(worst)).sort_values("lowest_cos", na_position="last")
    shown = ranked.head(top)
    total = int((~layers["fused"]).sum())
    which = f"the {len(shown)} with the lowest cosine" if len(shown) < len(warnings) else "all of them, lowest cosine first"
    blank = ranked.loc[ranked["lowest_cos"].isna(), "name"].tolist()
    nonum = (f", {len(blank)} of them without a number ({', '.join(f'`{n}`' for n in blank[:4])}{', ...' if len(blank) > 4 else ''}: "
             "all-zero or overflowing tensors)" if blank else "")
    return f"**{len(warnings)} of {total} layers flagged** (threshold {threshold}){nonum}; {which}:", shown


def outputs_line(layers: pd.DataFrame, outputs: Sequence[str]) -> str:
    """The rows of the model's own outputs (what the task's metric reads): their accumulated (entire) cosine."""
    rows = layers[layers["name"].isin(list(outputs))].drop_duplicates("name", keep="last")
    if rows.empty:
        return ""
    cos = rows["entire_cos"].dropna()
    blank = rows.loc[rows["entire_cos"].isna(), "name"].tolist()
    names = ", ".join(f"`{n}`" for n in rows["name"] if n not in blank)
    text = ""
    if len(cos):
        span = f"{cos.iloc[0]:.4f}" if len(cos) == 1 else f"{cos.min():.4f} to {cos.max():.4f}"
        text = (f"The model's output{'s' * (len(cos) != 1)} ({names}) end{'s' * (len(cos) == 1)} with an entire cosine of {span}: that is "
                "what the metric reads, so lower cosines inside the network matter only as far as they reach these rows.")
    if blank:
        zeros = rows.loc[rows["entire_cos"].isna(), "flags"].fillna("").astype(str).str.contains("zero").all()
        one = len(blank) == 1
        text += (f" {', '.join(f'`{n}`' for n in blank)} {'has' if one else 'have'} no number: in the quantized model "
                 f"{'it was' if one else 'they were'} all zeros{'' if zeros else ' or overflowed'} on these images. For a detector's "
                 "class scores that is typical of a stride where nothing scores above one INT8 step; the metric tells whether it "
                 "costs detections.")
    return text.strip()


def noise_images(images: int, top1: float) -> float:
    """Two binomial standard deviations of a top-1 measured on `images` images, in images."""
    return binomial_noise_pt(top1, images) * images / 100.0 if images else 0.0


def layers_conclusion(ranked: pd.DataFrame, threshold: float) -> str:
    """Whether the per-layer error is local (a few layers carry most of it) or spread, from the ranking."""
    drops = ranked["single_drop"].dropna().clip(lower=0)
    if drops.empty or drops.sum() == 0:
        return "No layer adds measurable error on its own."
    share = drops.head(3).sum() / drops.sum()
    top = ranked.iloc[0]
    below = int((ranked["single_cos"] < threshold).sum())
    if below == 0:
        return (f"No layer has a single cosine below {threshold} (the lowest is `{top['name']}`, {top['op']}, {top['single_cos']:.5f}): "
                "no layer stands out as a float16 candidate on its own.")
    kind = ("local: a few layers carry it, the case for hybrid quantization (notebook 60)" if share >= 0.5 else
            "spread over the network: a float16 layer here and there will not fix it; the calibration or the quantization settings are the lever")
    return (f"{below} of {len(ranked)} layers have a single cosine below {threshold}; the worst is `{top['name']}` ({top['op']}, single cosine "
            f"{top['single_cos']:.5f}). The three largest single drops make up {100 * share:.0f}% of the total, so the error is {kind}.")


def noise_pt_of(sweep: pd.DataFrame, value: float, images: int, given: float | None) -> float | None:
    """The noise of the table's metric in points: binomial (two standard deviations) of a top-1 `value` on
    `images` images; for mAP the judge's bootstrap value `given` (helpers.tasks.scoring.Judge.noise_pt)."""
    if table_metric(sweep) == "top1":
        return 100.0 * noise_images(images, value) / images if images else None
    return given


def _best_vs_current(sweep: pd.DataFrame, best: pd.Series, cur: pd.Series, images: int, noise: float | None) -> str:
    """The best setting's lead over notebook 20's: in images for top-1, in points for mAP; and against noise."""
    key = table_metric(sweep)
    a, m = cur["algorithm"], cur["method"]
    if key == "top1":
        diff = round((best["top1"] - cur["top1"]) * images)
        noise = noise_images(images, float(cur["top1"]))
        verdict = (f"beyond noise (about ±{noise:.1f} images on {images}), so it is worth trying in notebook 20" if diff > noise else
                   f"within noise (about ±{noise:.1f} images on {images}): no reason to change notebook 20's setting on this evidence")
        return f"notebook 20's {a}/{m} gets {100 * cur['top1']:.2f}%: {diff:+d} image(s), {verdict}"
    diff = 100 * (best[key] - cur[key])
    beyond = noise is not None and diff > noise
    scale = f" (about ±{noise:.1f} pt on {images} images)" if noise is not None else ""
    if noise is None:
        verdict = "with the noise of these images unknown (re-run notebook 50's sweep to estimate it), so no verdict"
    else:
        verdict = (f"beyond noise{scale}, so it is worth trying in notebook 20" if beyond else
                   f"within noise{scale}: no reason to change notebook 20's setting on this evidence")
    return f"notebook 20's {a}/{m} gets {metric_text(key, cur[key])}: {diff:+.1f} pt {METRIC_LABELS[key]}, {verdict}"


def fp32_gap(sweep: pd.DataFrame, cur: pd.Series, images: int, noise: float | None, demo_images: int = 0) -> str:
    """How far notebook 20's setting, as the sweep built it, lands from FP32: in points of the table's metric, against noise."""
    key = table_metric(sweep)
    fp32 = _table_value(sweep, f"fp32_{key}", None)
    if fp32 is None or pd.isna(cur[key]):
        return ""
    loss = 100 * (float(fp32) - float(cur[key]))
    change = "the same score as FP32" if abs(loss) < 0.05 else f"{'a loss' if loss > 0 else 'a gain'} of {abs(loss):.1f} pt against FP32"
    under = " under the demo calibration" if demo_images else ""
    text = (f" INT8 with {cur['algorithm']}/{cur['method']}{under} scores {METRIC_LABELS[key]} {metric_text(key, cur[key])}, FP32 "
            f"{metric_text(key, float(fp32))} on the same {images} images: {change}")
    if noise is None:
        return text + "."
    if abs(loss) <= noise:
        return text + f", within noise (about ±{noise:.1f} pt): on these images INT8 is not measurably worse than FP32."
    if loss < 0:
        return text + f", more than the noise (about ±{noise:.1f} pt) in INT8's favour on these images."
    return text + (f", beyond noise (about ±{noise:.1f} pt): quantization costs measurable accuracy here; the layer ranking above "
                   "and notebook 60 show where and what float16 layers buy back.")


def sweep_conclusion(sweep: pd.DataFrame, current: tuple[str, str], images: int = 0, demo_images: int = 0,
                     noise_pt: float | None = None) -> str:
    """The sweep's best setting against notebook 20's and INT8 against FP32, named in the table's metric (top-1:
    in images against binomial noise; mAP: in points against the judge's bootstrap noise_pt); with the demo caveat."""
    best, _ = best_row(sweep)
    key = table_metric(sweep)
    images = images or int(_table_value(sweep, "images", None) or 0)
    if key == "top1":
        step = 100.0 / images if images else float("nan")
        head = f"The sweep's best setting is {best['algorithm']}/{best['method']} ({100 * best['top1']:.2f}% top-1; 1 image = {step:.2f} pt)"
    else:
        scale = f"; {images} val images, noise about ±{noise_pt:.1f} pt" if noise_pt is not None else f"; {images} val images"
        head = f"The sweep's best setting is {best['algorithm']}/{best['method']} ({METRIC_LABELS[key]} {best[key]:.3f}{scale})"
    cur = sweep[(sweep["algorithm"] == current[0]) & (sweep["method"] == current[1])]
    if cur.empty:
        text = f"{head}; notebook 20's {current[0]}/{current[1]} was not in the grid, so there is nothing to compare it with."
    elif pd.isna(cur.iloc[0][key]):
        text = f"{head}; notebook 20's {current[0]}/{current[1]} did not build in the sweep ({cur.iloc[0].get('why', '')})."
    else:
        noise = noise_pt_of(sweep, float(cur.iloc[0][key]), images, noise_pt)
        text = (f"{head}, which is what notebook 20 already uses: keep it." if (best["algorithm"], best["method"]) == current else
                f"{head}; {_best_vs_current(sweep, best, cur.iloc[0], images, noise)}.")
        text += fp32_gap(sweep, cur.iloc[0], images, noise, demo_images)
    if demo_images:
        text += (f" Found under demo calibration ({demo_images} image{'s' * (demo_images != 1)}): it says which setting copes best with a "
                 "poor calibration, not which is best for notebook 20's list; re-run with demo_calib_images = 0 before changing notebook 20.")
    return text


def demo_note(demo_images: int) -> str:
    """The label every demo-mode figure carries ('' outside demo mode)."""
    return f"DEMO calibration: {demo_images} image{'s' * (demo_images != 1)}, not notebook 20's list" if demo_images else ""
