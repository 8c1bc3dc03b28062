"""Notebook 60's figures (the comparison of every model, the search curve) and its layer picker."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from helpers.core.errors import WorkbookError
from helpers.steps.analysis.plots import save_figure

if TYPE_CHECKING:
    from helpers.tasks.scoring import Judge

SHORT = {"hybrid (a) your list": "(a) your list", "hybrid (b) toolkit proposal": "(b) proposal",
         "hybrid (c) auto from ranking": "(c) auto\nranking", "build(auto_hybrid=True)": "auto_hybrid"}


def axis_label(judge: "Judge") -> str:
    """The metric axis of notebook 60's plots: the metric and the images every model is scored on."""
    return f"{judge.label} (%)\n{judge.images} val images"


def _whiskers(table: Any, prefix: str, centre: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's paired difference (centre + points) and the distances to its 95 % interval's ends (nan when none)."""
    def col(c: str) -> np.ndarray:
        return pd.to_numeric(table[c], errors="coerce").to_numpy(float) if c in table else np.full(len(table), np.nan)
    d, lo, hi = col(f"{prefix}_pt"), col(f"{prefix}_low_pt"), col(f"{prefix}_high_pt")
    return centre + d, d - lo, hi - d


def plot_compare(table: Any, judge: "Judge", path: str | Path | None = None, note: str = "", quant: str = "INT8"):
    """Every model against plain INT8 by the one noise rule: the paired difference in points with its 95 % interval
    (FP32 is INT8's loss, mirrored), and each model's output error 1 - mean cosine to FP32 on a log scale. quant: what
    the quantized model is called (helpers.toolkit.options.quantized_name: 'INT8', 'w4a16', ...)."""
    import matplotlib.pyplot as plt  # slow to import, and only the figures need it

    t = table.reset_index(drop=True)
    f16 = pd.to_numeric(t["float16_layers"], errors="coerce")
    labels = [(quant if m == "INT8" else SHORT.get(m, m))
              + ("" if m in ("FP32", "INT8") else f"\n{n:g} float16" if pd.notna(v) else "\nnot built")
              for m, n, v in zip(t["model"], f16, t[judge.key])]
    y, below, above = _whiskers(t, "vs_int8")
    int8 = t.index[t["model"] == "INT8"]
    fp32 = t.index[t["model"] == "FP32"]
    if len(int8) and len(fp32):  # FP32 minus INT8 = -(INT8 minus FP32): the same interval, mirrored
        d, lo, hi = (float(pd.to_numeric(t.loc[int8[0], f"vs_fp32{c}"], errors="coerce")) for c in ("_pt", "_low_pt", "_high_pt"))
        y[fp32[0]], below[fp32[0]], above[fp32[0]] = 0.0 - d, hi - d, d - lo  # 0.0 - d: no "-0.0"
        y[int8[0]], below[int8[0]], above[int8[0]] = 0.0, 0.0, 0.0
    x = np.arange(len(t))
    colors = ["black" if m == "FP32" else "tab:grey" if m == "INT8" else "tab:blue" for m in t["model"]]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for xi, yi, b, a, c in zip(x, y, below, above, colors):
        if np.isfinite(yi):
            a1.errorbar([xi], [yi], yerr=[[b if np.isfinite(b) else 0], [a if np.isfinite(a) else 0]], fmt="o", color=c,
                        capsize=4)
            a1.annotate(f"{yi:+.1f}", (xi, yi), textcoords="offset points", xytext=(6, 0), fontsize=8, va="center")
    a1.axhline(0, color="tab:grey", lw=1, ls="--", label=f"plain {quant} (same calibration)")
    a1.set_xticks(x, labels, fontsize=8)
    a1.set_ylabel(f"{judge.label} minus {quant}'s (pt)\npaired 95 % interval, {judge.images} val images")
    a1.set_title(f"{judge.label} against plain {quant} (FP32's point = {quant}'s loss)")
    a1.legend(fontsize=8, loc="best")
    a1.grid(alpha=0.3, axis="y")
    err = 1.0 - pd.to_numeric(t["mean_cosine"], errors="coerce").to_numpy(float)
    shown = np.isfinite(err) & (t["model"] != "FP32").to_numpy()
    floor = 1e-7  # FP32 is itself (error 0): drawn at the floor of the log axis, labelled
    a2.scatter(x[shown], np.maximum(err[shown], floor), color=[c for c, s in zip(colors, shown) if s], zorder=3)
    for xi, e in zip(x[shown], err[shown]):
        a2.annotate(f"{1 - e:.5f}", (xi, max(e, floor)), textcoords="offset points", xytext=(6, 0), fontsize=8, va="center")
    a2.set_yscale("log")
    if shown.any():  # whole decades, so the log axis reads as one
        span = np.log10(np.maximum(err[shown], floor))
        a2.set_ylim(10 ** np.floor(span.min() - 0.5), 10 ** np.ceil(span.max() + 0.5))
    a2.yaxis.set_minor_formatter(plt.NullFormatter())
    a2.set_xticks(x, labels, fontsize=8)
    a2.set_ylabel("1 - mean output cosine to FP32\n(log scale; lower = closer to FP32)")
    a2.set_title("Agreement with the float model (labels: mean cosine)")
    a2.grid(alpha=0.3, axis="y", which="both")
    fig.supxlabel("model (float16 layers in its build)")
    if note:
        fig.suptitle(note, color="#a06000")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_search(points: Any, int8: Any, judge: "Judge", target_pt: float, path: str | Path | None = None, note: str = "",
                quant: str = "INT8"):
    """The judge's metric against the float16 layers chosen in ranked order (search.csv), each point with its paired
    95 % interval against FP32 (plain INT8 at 0); the counts double from point to point, so they are evenly spaced
    and the axis says so. int8: the INT8 Variant (its value and vs_fp32) or just its metric value."""
    import matplotlib.pyplot as plt  # slow to import, and only the figures need it

    int8_value = float(getattr(int8, "value", int8))
    int8_fp32 = getattr(int8, "vs_fp32", None) or {}
    fp32, step = 100 * judge.fp32.value, judge.step_pt()
    t = pd.DataFrame(points) if not hasattr(points, "columns") else points
    xs = [int(v) for v in t["layers"]] if len(t) else []
    ys = [100 * v for v in t[judge.key]] if len(t) else []
    _, below, above = _whiskers(t, "vs_fp32") if len(t) else (None, np.array([]), np.array([]))
    d0 = int8_fp32.get("difference_pt")
    b0, a0 = ((d0 - int8_fp32["low_pt"], int8_fp32["high_pt"] - d0) if d0 is not None else (np.nan, np.nan))
    fig, ax = plt.subplots(figsize=(8, 4.8))
    pos = np.arange(len(xs) + 1)
    yy = np.array([100 * int8_value, *ys])
    lo, hi = np.array([b0, *below]), np.array([a0, *above])
    ax.plot(pos, yy, color="tab:blue", lw=1, alpha=0.6)
    ax.errorbar(pos, yy, yerr=[np.nan_to_num(lo), np.nan_to_num(hi)], fmt="o", color="tab:blue", capsize=4,
                label=f"hybrid (0 = plain {quant}), paired 95 % interval vs FP32")
    ax.axhline(fp32, color="black", ls="--", lw=1, label=f"FP32 {fp32:.2f}%")
    band = (f"target: equal to FP32 ({target_pt:g} pt < 1 image)" if step and target_pt < step else
            f"target: within {target_pt:g} pt")
    ax.axhspan(fp32 - target_pt, fp32, color="green", alpha=0.12, label=band)
    total = int(t["layers_total"].iloc[0]) if len(t) and "layers_total" in t and pd.notna(t["layers_total"].iloc[0]) else 0
    ticks = ["0"] + [f"all {v}" if total and v >= total else str(v) for v in xs]
    ax.set_xticks(pos, ticks)
    of = f" (of {total})" if total else ""
    ax.set_xlabel(f"float16 layers chosen{of}, in ranked order with their inputs\n"
                  "(the count doubles from point to point: evenly spaced, not to scale)")
    ax.set_ylabel(axis_label(judge))
    ax.set_title(f"Accuracy-driven hybrid search, scored by {judge.label}" + (f"\n{note}" if note else ""))
    ends = [v for v in [*(yy - np.nan_to_num(lo)), *(yy + np.nan_to_num(hi)), fp32 - target_pt, fp32] if np.isfinite(v)]
    pad = step if step else 0.3
    ax.set_ylim(max(0.0, min(ends) - pad), min(100.5, max(ends) + pad))
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def layer_picker(options: Sequence[str], selected: Sequence[str]):
    """A multi-select of tensor names (hold Ctrl/Shift); its .value is the user's list. Names not in
    options are refused first, with the closest match, so the widget never silently drops them."""
    unknown = [n for n in selected if n not in options]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(options), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise WorkbookError(f"user_layers names {unknown[0]!r}, which is not a layer of this model{hint}; "
                            "pick names from the step 1 cfg.")
    try:
        import ipywidgets as w  # optional: only the notebook's picker needs it
    except ImportError:  # no widgets: a stand-in with the same .value
        return type("Picker", (), {"value": tuple(selected)})()
    return w.SelectMultiple(options=list(options), value=tuple(selected), rows=12, description="float16 layers",
                            layout=w.Layout(width="700px"), style={"description_width": "120px"})
