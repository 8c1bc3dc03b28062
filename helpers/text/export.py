"""The sentences notebook 10 shows about an export: the FP32 check of a detector head split by graph surgery."""
from __future__ import annotations

from typing import Any


def split_check_note(check: dict[str, Any]) -> str:
    """Notebook 10's sentence on the graph surgery's FP32 check."""
    c = check["check"]
    return (f"**The split head computes what the original ONNX computes** (ONNX Runtime, FP32, {c['images']} images): decoded "
            "boxes "
            f"at most {c['max_box_diff_px']:.2g} px apart, class scores at most {c['max_score_diff']:.2g}; outputs "
            f"{', '.join(check['outputs'])}.")
