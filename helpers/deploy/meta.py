"""What the bundle reads from the converted model's own ONNX metadata: its task (detect, segment, pose), its head
(split or stock), end2end (top-k instead of NMS) and, for pose, kpt_shape and an optional skeleton. The runner, the
README and the C++ demo decode by these, so they are written into model.json once, here."""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from helpers.core.errors import WorkbookError
from helpers.steps.export.detect_head import onnx_metadata
from helpers.toolkit.record import ConvertRecord

INSTANCE_TASKS = ("detect", "segment", "pose")  # letterboxed input, boxes decoded by the detector's postprocess.py


def _literal(raw: Any) -> Any:
    """A metadata value as Python data: JSON (the workbook's export) or a Python literal (ultralytics writes str(v))."""
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        try:
            return ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            return None


def kpt_shape_of(raw: Any, where: str = "the model") -> list[int]:
    """[K, ndim] from a metadata value ("[17, 3]"), checked: K >= 1 keypoints of 2 (x, y) or 3 (x, y, visibility)."""
    shape = _literal(raw)
    if not (isinstance(shape, (list, tuple)) and len(shape) == 2 and all(isinstance(v, int) for v in shape)
            and shape[0] >= 1 and shape[1] in (2, 3)):
        raise WorkbookError(f"{where} has kpt_shape {raw!r}, not [K, 2] or [K, 3]; export the pose model again in notebook 10 "
                            "(its metadata carries the keypoint shape the decode needs).")
    return [int(shape[0]), int(shape[1])]


def skeleton_of(raw: Any, keypoints: int) -> list[list[int]] | None:
    """A skeleton as chains of keypoint indices (a pair [a, b] is a chain of two; lines join consecutive entries), or
    None when there is none; an index outside 0..K-1 is refused in one sentence."""
    chains = _literal(raw)
    if chains is None or chains == [] or chains == ():
        return None
    if not (isinstance(chains, (list, tuple)) and all(isinstance(c, (list, tuple)) and len(c) >= 2 for c in chains)):
        raise WorkbookError(f"skeleton {raw!r} is not a list of keypoint chains such as [[0, 1], [1, 2]]; pass pairs (or "
                            "longer chains) of keypoint indices.")
    flat = [v for c in chains for v in c]
    if not all(isinstance(v, int) and 0 <= v < keypoints for v in flat):
        raise WorkbookError(f"skeleton {raw!r} names keypoints outside 0..{keypoints - 1}; the model has {keypoints} "
                            "keypoints, so use indices below that.")
    return [[int(v) for v in c] for c in chains]


def _output_channels(path: Path, index: int) -> int | None:
    """The channel count (dimension 1) of one of the ONNX's outputs, None when the graph leaves it unnamed."""
    import onnx  # optional and slow: only where an ONNX file is read

    dims = onnx.load(str(path), load_external_data=False).graph.output[index].type.tensor_type.shape.dim
    return int(dims[1].dim_value) if len(dims) > 1 and dims[1].dim_value else None


def model_meta(record: ConvertRecord, skeleton: Any = None) -> dict[str, Any]:
    """{task, head, end2end[, mask_channels | kpt_shape, skeleton]} of a detector, segmentation or pose model (its ONNX says so;
    head 'stock' when it does not say); {} for anything else (a classifier, a model converted from PyTorch).
    `skeleton` (chains of keypoint indices) overrides the one the metadata may carry."""
    source = Path(record.source)
    if source.suffix.lower() != ".onnx" or not source.is_file():
        return {}
    meta = onnx_metadata(source)
    task = meta.get("task")
    if task not in INSTANCE_TASKS:
        return {}
    found: dict[str, Any] = {"task": task, "head": meta.get("head") or "stock",
                             "end2end": str(meta.get("end2end", "")).lower() in ("true", "1")}
    if task == "segment":
        found["mask_channels"] = _output_channels(source, -1)  # nm: the prototypes' channels (the decode reads them itself)
    if task == "pose":
        found["kpt_shape"] = kpt_shape_of(meta.get("kpt_shape"), str(source))
        found["skeleton"] = skeleton_of(skeleton if skeleton is not None else meta.get("skeleton"), found["kpt_shape"][0])
    return found
