"""The rules every comparison in the workbook uses, one definition each: the metric a table holds and how
sentences name it, and the cosine of raw outputs to FP32 (whether a difference is noise: helpers.tasks.noise)."""
from __future__ import annotations

from typing import Any

import numpy as np

from helpers.backends.base import Outputs  # outputs[image][output] (defined with the runners that return them)

# metric column -> how sentences name it (in this order of precedence: a task's own mAP before the plain box one, so a
# segment or pose table that also carries a box column is read by its mask or keypoint figure)
METRIC_LABELS = {"top1": "top-1", "mask_map50_95": "mask mAP50-95", "pose_map50_95": "pose mAP50-95", "map50_95": "mAP50-95"}


def metric_text(key: str, value: float) -> str:
    """A metric value as sentences show it: top-1 as a percentage (98.33%), any mAP (box, mask, pose) as a fraction
    (0.712)."""
    return f"{100 * value:.2f}%" if key == "top1" else f"{value:.3f}"


def metric_heading(label: str) -> str:
    """A metric's label at the start of a title: 'top-1' -> 'Top-1', 'mAP50-95' stays."""
    return label if label[1:2].isupper() else label[:1].upper() + label[1:]


def metric_in(columns: Any) -> str | None:
    """The metric column of a table, row or record: the first of METRIC_LABELS' keys it has (None when none)."""
    cols = set(columns) if columns is not None else set()
    return next((k for k in METRIC_LABELS if k in cols), None)


def cosine(a: Any, b: Any) -> np.ndarray:
    """Per row: cosine similarity of a's row and b's row, each flattened (0 when either is all zeros). The one
    cosine of the workbook: rows are images' scores, or each image's outputs flattened together."""
    out = []
    for x, y in zip(a, b):
        u = np.ravel(x).astype(np.float64)
        v = np.ravel(y).astype(np.float64)
        den = np.linalg.norm(u) * np.linalg.norm(v)
        out.append(float(u @ v / den) if den > 0 else 0.0)
    return np.asarray(out)


def output_cosines(a: Outputs, b: Outputs) -> np.ndarray:
    """Per image: cosine of all its outputs flattened together, a against b (0 when either is all zeros)."""
    return cosine([np.concatenate([np.ravel(o) for o in x]) for x in a], [np.concatenate([np.ravel(o) for o in y]) for y in b])
