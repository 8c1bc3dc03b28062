"""The sentences notebook 10 shows about an export: the FP32 check of a head split by graph surgery (detect, segment, pose)."""
from __future__ import annotations

from typing import Any


def split_check_note(check: dict[str, Any]) -> str:
    """Notebook 10's sentence on the graph surgery's FP32 check."""
    c, task = check["check"], check.get("task", "detect")
    pixels = "boxes and keypoints" if task == "pose" else "boxes"
    rest = {"segment": "class scores, mask coefficients and prototypes", "pose": "class scores and keypoint visibility"}
    return (f"**The split head computes what the original ONNX computes** (ONNX Runtime, FP32, {c['images']} images): decoded "
            f"{pixels} at most {c['max_box_diff_px']:.2g} px apart, {rest.get(task, 'class scores')} at most "
            f"{c['max_score_diff']:.2g}; outputs {', '.join(check['outputs'])}.")
