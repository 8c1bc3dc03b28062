"""A classifier's pictures: confusion matrices side by side, and the per-image output cosine of two runners."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from helpers.tasks.classify.metric import Comparison, EvalResult, confusion_matrix


def plot_confusions(results: list[EvalResult], class_names: list[str], path: Path | None = None):
    """Side-by-side confusion matrices (rows = true class), titled with top-1; saved to path if given."""
    k = len(class_names)
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 4), squeeze=False)
    for ax, r in zip(axes[0], results):
        m = confusion_matrix(r.labels, r.predictions, k)
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > m.max() / 2 else "black")
        ax.set_title(f"{r.name}\ntop-1 {100 * r.top1:.1f}%")
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_xticks(range(k), class_names, fontsize=7)
        ax.set_yticks(range(k), class_names, fontsize=7)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


def plot_cosine_hist(cmp: Comparison, path: Path | None = None):
    """Histogram of per-image output cosine between the two backends; saved to path if given."""
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    cos = np.clip(cmp.cosine, -1.0, 1.0)
    lo = float(cos.min()) if len(cos) else 0.9
    lo = min(lo - 0.1 * (1.0 - lo), 0.999)  # zoom on the occupied range, keep 1.0 at the right edge
    ax.hist(cos, bins=np.linspace(lo, 1.0, 41), color="tab:orange", edgecolor="black", linewidth=0.3)
    ax.set_yscale("log")
    ax.set_title(f"Per-image output cosine\n{cmp.other} vs {cmp.reference} (mean {cmp.mean_cosine:.5f})")
    ax.set_xlabel("cosine similarity of the output vectors (1 = same direction)")
    ax.set_ylabel("images (log scale)")
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig
