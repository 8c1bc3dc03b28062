"""Notebook 60's figures (the comparison of every model, the search curve) and its layer picker."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from helpers.core.errors import WorkbookError
from helpers.steps.analysis.plots import save_figure, top1_cosine_bars
from helpers.tasks.measures import metric_heading

if TYPE_CHECKING:
    from helpers.tasks.scoring import Judge


def axis_label(judge: "Judge") -> str:
    """The metric axis of notebook 60's plots, with how to read a difference on these images."""
    return f"{judge.label} (%)\n{judge.scale_note()}"


def plot_compare(table: Any, judge: "Judge", path: str | Path | None = None, note: str = ""):
    """The judge's metric (top-1 or mAP50-95) and mean output cosine vs FP32 for every row of the comparison table."""
    short = {"hybrid (a) your list": "(a) your list", "hybrid (b) toolkit proposal": "(b) proposal",
             "hybrid (c) auto from ranking": "(c) auto\nranking", "build(auto_hybrid=True)": "auto_hybrid"}
    labels = [short.get(m, m) + ("" if m == "FP32" else f"\n{n:g} float16" if pd.notna(t) else "\nnot built")
              for m, n, t in zip(table["model"], pd.to_numeric(table["float16_layers"]), table[judge.key])]
    n = len(table)
    fig, (a1, a2) = top1_cosine_bars(labels, table[judge.key], table["mean_cosine"], "model (float16 layers)",
                                     (metric_heading(judge.label), "Agreement with the float model"),
                                     colors=(["black"] + ["tab:blue"] * (n - 1), ["black"] + ["tab:orange"] * (n - 1)),
                                     cosine_margin=0.005, figsize=(12, 4))
    step = judge.step_pt()
    margin = max(2.0, 3 * step) if step else max(2.0, judge.noise_pt())  # one image or the noise must not fill the plot
    a1.set_ylim(max(0, 100 * table[judge.key].min() - margin), min(100.5, 100 * table[judge.key].max() + 1))
    a1.set_ylabel(axis_label(judge))
    if note:
        fig.suptitle(note, color="#a06000")
    return save_figure(fig, path)


def plot_search(points: Any, int8_value: float, judge: "Judge", target_pt: float, path: str | Path | None = None, note: str = ""):
    """The judge's metric against the number of float16 layers added in ranked order (search.csv or SearchPoints),
    with FP32, the target band and, for a metric without a fixed step (mAP), FP32's noise on these images."""
    import matplotlib.pyplot as plt  # slow to import, and only the figures need it

    if hasattr(points, "to_dict"):
        xs, ys = list(points["layers"]), [100 * v for v in points[judge.key]]
    else:
        xs, ys = [p.layers for p in points], [100 * p.value for p in points]
    fp32, step = 100 * judge.fp32.value, judge.step_pt()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    pos = np.arange(len(xs) + 1)  # evenly spaced: the counts double from one point to the next
    ax.plot(pos, [100 * int8_value, *ys], marker="o", color="tab:blue", label="hybrid (0 = plain INT8)")
    ax.axhline(fp32, color="black", ls="--", lw=1, label=f"FP32 {fp32:.2f}%")
    band = (f"target: equal to FP32 ({target_pt:g} pt < 1 image)" if step and target_pt < step else
            f"target: within {target_pt:g} pt")
    ax.axhspan(fp32 - target_pt, fp32, color="green", alpha=0.12, label=band)
    if not step:
        noise = judge.noise_pt()
        ax.axhspan(fp32 - noise, fp32 + noise, color="grey", alpha=0.1,
                   label=f"FP32 ± {noise:.1f} pt: noise of {judge.images} images")
    ax.set_xticks(pos, ["0", *(str(int(v)) for v in xs)])
    ax.set_xlabel("float16 layers (added in ranked order, with their inputs)")
    ax.set_ylabel(axis_label(judge))
    ax.set_title(f"Accuracy-driven hybrid search, scored by {judge.label}" + (f"\n{note}" if note else ""))
    # ys is empty when INT8 met the target
    lo, hi = min([100 * int8_value, *ys, fp32 - target_pt]), max([100 * int8_value, *ys, fp32])
    if not step:  # show the whole noise band: a curve that stays inside it has not shown any difference
        lo, hi = min(lo, fp32 - judge.noise_pt()), max(hi, fp32 + judge.noise_pt())
    pad = step if step else max(0.3, 0.15 * (hi - lo))  # one image (or a little) of room around the curve
    ax.set_ylim(max(0.0, lo - 2 * pad), min(100.5, hi + pad))
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
