"""Notebook 50's figures: the per-layer cosines (also notebook 60's before/after), the sweep's dots with their paired
intervals (paired_dots, for any comparison on the same images), the label every demo-mode figure carries, and the two
bar panels of notebook 60's comparison."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from helpers.steps.analysis.sweep import row_paired, sweep_metric, table_value
from helpers.tasks.measures import METRIC_LABELS, metric_heading
from helpers.tasks.noise import Paired


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
        ax.set_ylabel("cosine vs float\n(linear, not from 0)")
        ax.set_title(what, fontsize=10)
        lo = np.nanmin([np.nanmin(df[c]) for df in tables.values() for c in ("entire_cos", "single_cos")])
        ax.set_ylim(min(lo, threshold) - 0.005, 1.001)
        ax.legend(loc="lower left", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("layer index (row of error_analysis.txt; names in layers.csv)")
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_sweep(sweep: pd.DataFrame, path: str | Path | None = None, note: str = ""):
    """Two dot panels, one dot per setting: left, its change in the table's metric against FP32 in points with the
    paired 95 % interval as whiskers (analysis/sweep.csv's vs_fp32_* columns; 0 = FP32; colour = verdict); right,
    its mean output cosine vs FP32 with the lowest image's written under the dot. Notebook 20's setting is marked, and
    a row with bit-identical outputs to an earlier one says '= that row'; note (e.g. the demo label) titles the figure."""
    import matplotlib.pyplot as plt  # slow to import, and only the figures need it

    key = sweep_metric(sweep)
    label = METRIC_LABELS[key]
    fp32, images = table_value(sweep, f"fp32_{key}", None), int(table_value(sweep, "images", None) or 0)
    short = {"kl_divergence": "kl_div"}
    current = sweep.get("vs_current_verdict", pd.Series([""] * len(sweep))).eq("reference").to_numpy()
    same = sweep.get("same_outputs_as", pd.Series([""] * len(sweep))).fillna("").astype(str)
    labels = [f"{short.get(a, a)}\n{m}\n" + (f"{b:.1f} s" if b == b else "failed") + ("\n(notebook 20)" if c else "")
              + (f"\n= {short.get(s.split('/')[0], s.split('/')[0])}/{s.split('/')[-1]}" if s else "")
              for a, m, b, c, s in zip(sweep["algorithm"], sweep["method"], sweep["build_s"], current, same)]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2))
    paired_dots(a1, labels, [row_paired(r, "vs_fp32") for _, r in sweep.iterrows()], "FP32")
    scale = f"{images} val images" + (f", 1 image = {100 / images:.2f} pt" if key == "top1" and images else "")
    fp32_text = f"FP32 {100 * float(fp32):.2f}%" if fp32 is not None and key == "top1" else (
        f"FP32 {float(fp32):.3f}" if fp32 is not None else "FP32")
    a1.set_ylabel(f"{label} change vs FP32 (pt)\n{fp32_text}; {scale}")
    a1.set_title(f"{metric_heading(label)} vs FP32, with the paired 95 % interval", fontsize=10)
    x = np.arange(len(sweep))
    mean, low = np.asarray(sweep["mean_cosine"], float), np.asarray(sweep["min_cosine"], float)
    a2.plot(x, mean, "o", color="tab:orange", label="mean over the images")
    for xi, m, lo_ in zip(x, mean, low):
        if m == m:
            a2.annotate(f"lowest image\n{lo_:.3f}", (xi, m), textcoords="offset points", xytext=(0, -26), ha="center",
                        fontsize=7, color="dimgray")
    top = np.nanmax(mean) if np.isfinite(mean).any() else 1.0
    span = max(1.0 - np.nanmin(mean), 0.002) if np.isfinite(mean).any() else 0.01
    a2.set_ylim(1.0 - 2.2 * span, max(1.0, top) + 0.3 * span)
    a2.set_ylabel("mean output cosine vs FP32\n(linear axis, not from zero)")
    a2.set_title("Raw outputs' agreement with FP32 (lowest image written below)", fontsize=10)
    a2.legend(loc="lower right", fontsize=8)
    for ax in (a1, a2):
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_xlim(-0.6, len(sweep) - 0.4)
        ax.set_xlabel("quantized_algorithm / quantized_method / build time")
        ax.grid(axis="y", alpha=0.3)
    if note:
        fig.suptitle(note, color="#a06000", fontweight="bold")
    return save_figure(fig, path)


VERDICT_COLORS = {"worse": "tab:red", "better": "tab:green", "within noise": "tab:gray"}


def paired_dots(ax: Any, labels: Sequence[str], paired: Sequence[Paired | None], reference: str) -> None:
    """One dot per model at its difference to `reference` (points), whiskers = the paired 95 % interval, coloured by
    verdict (red worse, green better, grey within noise); a dashed line at 0 is the reference itself. A model without
    a comparison (not built) gets no dot."""
    x = np.arange(len(labels))
    shown = set()
    for xi, p in zip(x, paired):
        if p is None:
            continue
        color = VERDICT_COLORS.get(p.verdict, "black")
        ax.errorbar([xi], [p.difference_pt], yerr=[[p.difference_pt - p.low_pt], [p.high_pt - p.difference_pt]], fmt="o",
                    color=color, capsize=4, label=None if p.verdict in shown else p.verdict)
        shown.add(p.verdict)
    ax.axhline(0.0, color="black", ls="--", lw=1, label=f"{reference} (0)")
    lows = [p.low_pt for p in paired if p is not None] + [0.0]
    highs = [p.high_pt for p in paired if p is not None] + [0.0]
    pad = max(0.5, 0.1 * (max(highs) - min(lows)))
    ax.set_ylim(min(lows) - pad, max(highs) + pad)
    ax.set_xticks(x, labels, fontsize=8)
    ax.legend(loc="best", fontsize=8)


def top1_cosine_bars(labels: Sequence[str], top1: Any, cosine: Any, xlabel: str, titles: tuple[str, str],
                     colors: tuple[Any, Any], cosine_margin: float, figsize: tuple[float, float]):
    """Two bar panels of notebook 60's comparison: top-1 (%) and mean output cosine vs FP32."""
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
