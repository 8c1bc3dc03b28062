"""The sentences of the per-shape sections (notebook 30's scores, notebook 20's pre-flight by shape), computed from
helpers.steps.shapes results."""
from __future__ import annotations

import pandas as pd

from helpers.steps.shapes import Shape


def fixed_text(size: int, channels: int) -> str:
    """The one line shown when notebook 20 declared neither dynamic_input nor rknn_batch_size."""
    return (f"The model has one fixed input shape (1x{channels}x{size}x{size}, one image per call): nothing to score per "
            "shape. Set `dynamic_input` or `rknn_batch_size` in notebook 20 to declare several.")


def preflight_text(table: pd.DataFrame, shapes: list[Shape], above: str = "") -> str:
    """What the toolkit profiled per shape, which one the single pre-flight (above: its input shape) describes, and why
    the time column is empty."""
    missing = table.loc[table["profiled"] == "no table in the log", "shape"].tolist()
    if any(s.batch > 1 for s in shapes):
        what = (f"For `rknn_batch_size` {shapes[0].batch} the toolkit profiles the one-image graph only: the memory and "
                "cycles below are one image's, and the runtime's buffers for a whole batch are not in its table.")
    else:
        what = ("The toolkit wrote one per-op table per declared shape into `rknn/build.log` (in its own order, matched "
                "here by the input shape each table lists).")
    gap = f" No table for {', '.join(missing)}: rebuild with verbose on." if missing else ""
    time = ("" if "npu_ms" in table and table["npu_ms"].notna().any() else
            " No NPU time per shape, for the reason notebook 20's pre-flight gives for this chip; the cycles compare the "
            "shapes' work in the toolkit's cycle model, not their time on a board.")
    single = (f" The pre-flight above reads the log's last table, input {above}." if above and len(shapes) > 1 else "")
    return what + single + gap + time


def scores_text(table: pd.DataFrame) -> str:
    """The verdict over the shapes: the largest metric change and the lowest output cosine, each with its shape."""
    scored = table[table["note"].fillna("") == ""] if "note" in table else table
    if scored.empty:
        return "No shape could be scored: " + "; ".join(f"{r.shape}: {r.note}" for r in table.itertuples())
    worst = scored.loc[scored["delta_pt"].idxmin()]
    low = scored.loc[scored["min_cosine"].idxmin()]
    metric = worst["metric"]
    text = (f"**{len(scored)} shape(s) scored** on {int(worst['images'])} validation images each. Largest {metric} change "
            f"INT8 vs FP32: {worst['delta_pt']:+.1f} pt at {worst['shape']}; lowest per-image output cosine "
            f"{low['min_cosine']:.4f} at {low['shape']}.")
    if low["min_cosine"] < 0.99:
        text += " A cosine below 0.99 means the quantized model drifts at that shape: calibrate with images at that size too."
    skipped = table[table["note"].fillna("") != ""] if "note" in table else table.iloc[0:0]
    return text + "".join(f" {r.shape}: {r.note}." for r in skipped.itertuples())
