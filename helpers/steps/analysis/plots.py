"""Notebook 50's figures: the per-layer cosines (also notebook 60's before/after), the sweep's bars, and the label
every demo-mode figure carries; the two bar panels the sweep and notebook 60's comparison share."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from helpers.steps.analysis.sweep import sweep_metric, table_value
from helpers.tasks.measures import METRIC_LABELS, metric_heading


def plot_layers(tables: dict[str, pd.DataFrame] | pd.DataFrame, threshold: float = 0.99, path: str | Path | None = None,
                title: str = "Per-layer cosine vs the float model"):
    """Entire and single cosine per layer (layer index on x; names in layers.csv), threshold line;
    several tables (e.g. INT8 vs hybrid) are overlaid. Saved to path if given."""
    import matplotlib.pyplot as plt  # slow to import, and only the figures need it

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
    return save_figure(fig, path)


def plot_sweep(sweep: pd.DataFrame, fp32: float | None = None, path: str | Path | None = None, images: int = 0,
               note: str = "", noise_pt: float | None = None):
    """Bars of the table's metric (top-1 or mAP50-95, in %) and mean output cosine per setting, build time in
    the labels. FP32 and the image count default to the table's fp32_<metric> and images columns; the axis
    names one image in points (top-1) or the noise band around FP32 (mAP, noise_pt); note (e.g. demo) titles it."""
    key = sweep_metric(sweep)
    label = METRIC_LABELS[key]
    fp32, images = table_value(sweep, f"fp32_{key}", fp32), int(table_value(sweep, "images", images or None) or 0)
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
        lo, hi = (np.nanmin([*values, ref if ref is not None else np.nan]),
                  np.nanmax([*values, ref if ref is not None else np.nan]))
        a1.set_ylim(max(0, lo - margin), min(100.5, hi + margin))
        a1.set_ylabel(f"{label} (%), {images} val images" + (f"\nnoise about ±{noise_pt:.1f} pt" if noise_pt else ""))
    if note:
        fig.suptitle(note, color="#a06000")
    return save_figure(fig, path)


def top1_cosine_bars(labels: Sequence[str], top1: Any, cosine: Any, xlabel: str, titles: tuple[str, str],
                     colors: tuple[Any, Any], cosine_margin: float, figsize: tuple[float, float]):
    """Two bar panels shared by the sweep and the hybrid comparison: top-1 (%) and mean output cosine vs FP32."""
    import matplotlib.pyplot as plt  # slow to import, and only the figures need it

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


def demo_note(demo_images: int) -> str:
    """The label every demo-mode figure carries ('' outside demo mode)."""
    return f"DEMO calibration: {demo_images} image{'s' * (demo_images != 1)}, not notebook 20's list" if demo_images else ""
