"""Detector pre- and post-processing shared by ONNX Runtime, the simulator and the board runner.

Self-contained on purpose (numpy only; OpenCV is imported inside `letterbox` alone, no helpers
imports): the deployment bundle ships this very file, so the board decodes exactly as the workbook.

Two output layouts are understood, told apart by their number:
  stock  1 tensor [1, 4 + classes, anchors]: xywh boxes in input pixels, then class scores;
  split  3 tensors per stride [1, 4*reg_max, h, w], [1, classes, h, w], [1, 1, h, w]: box regression,
         class scores, clamped score sum (the rknn_model_zoo layout). The box channels say how to read
         them: reg_max > 1 distribution logits (DFL, YOLOv8/11), reg_max == 1 plain distances (YOLO26).
Two selections: NMS heads (YOLOv5u/v8/11) keep scores above conf and run per-class NMS; end-to-end heads
(end2end=True: YOLO26, YOLOv10; one-to-one assignment, one box per object) take ultralytics' top-k over
anchors x classes instead, with no NMS (the NPU has no TopK, so it runs here on the host).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

PAD_VALUE = 114  # ultralytics' letterbox grey


@dataclass(frozen=True)
class Letterbox:
    """How an image of (height, width) was scaled by `scale` and padded (left, top) into size x size."""

    height: int
    width: int
    size: int
    scale: float
    left: int
    top: int


@dataclass
class Detections:
    """Boxes (xyxy, original image pixels), scores and class ids of one image, best first."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def letterbox_geometry(height: int, width: int, size: int) -> Letterbox:
    """Scale to fit size x size keeping the aspect ratio, padding split evenly (ultralytics' rounding)."""
    scale = min(size / height, size / width)
    new_w, new_h = int(round(width * scale)), int(round(height * scale))
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    return Letterbox(height, width, size, scale, int(round(dw - 0.1)), int(round(dh - 0.1)))


def letterbox(image: np.ndarray, size: int, pad_value: int = PAD_VALUE) -> tuple[np.ndarray, Letterbox]:
    """Resize an HxWx3 uint8 image into a size x size canvas (aspect kept, grey padding); returns the
    canvas and the geometry that `unletterbox` inverts."""
    import cv2  # the board may decode without OpenCV: only letterbox needs it (see the module docstring)

    h, w = image.shape[:2]
    lb = letterbox_geometry(h, w, size)
    new_w, new_h = int(round(w * lb.scale)), int(round(h * lb.scale))
    if (new_h, new_w) != (h, w):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((size, size, image.shape[2]), pad_value, np.uint8)
    canvas[lb.top : lb.top + new_h, lb.left : lb.left + new_w] = image
    return canvas, lb


def unletterbox(boxes: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Map xyxy boxes from the letterboxed canvas back to the original image, clipped to it."""
    out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    out[:, [0, 2]] = (out[:, [0, 2]] - lb.left) / lb.scale
    out[:, [1, 3]] = (out[:, [1, 3]] - lb.top) / lb.scale
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, lb.width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, lb.height)
    return out


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """Numerically stable softmax along one axis."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def dfl_decode(box_logits: np.ndarray, stride: int) -> np.ndarray:
    """Box regression [4*reg_max, h, w] of one stride -> xyxy boxes [h*w, 4] in input pixels: each side's
    distance from the cell centre, in stride units, is the expectation of its softmax over reg_max bins
    (DFL), or with reg_max == 1 the value itself (YOLO26 regresses plain distances)."""
    c, h, w = box_logits.shape
    reg_max = c // 4
    if reg_max == 1:
        ltrb = box_logits.reshape(4, h * w).astype(np.float32)
    else:
        dist = softmax(box_logits.reshape(4, reg_max, h * w).astype(np.float32), axis=1)
        ltrb = (dist * np.arange(reg_max, dtype=np.float32)[None, :, None]).sum(axis=1)  # [4, h*w]
    gy, gx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    cx, cy = (gx.ravel() + 0.5), (gy.ravel() + 0.5)
    return np.stack([cx - ltrb[0], cy - ltrb[1], cx + ltrb[2], cy + ltrb[3]], axis=1) * stride


def decode(outputs: Sequence[np.ndarray], input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw outputs of one image (stock or split layout, batch dim 1 or none) -> candidate boxes
    [anchors, 4] xyxy in input pixels and class scores [anchors, classes]."""
    outs = [np.asarray(o, np.float32) for o in outputs]
    if len(outs) == 1:
        pred = outs[0][0] if outs[0].ndim == 3 else outs[0]  # [4 + classes, anchors]
        xy, wh = pred[:2].T, pred[2:4].T
        return np.concatenate([xy - wh / 2, xy + wh / 2], axis=1), np.ascontiguousarray(pred[4:].T)
    if len(outs) % 3:
        raise ValueError(f"Detector gave {len(outs)} outputs; expected 1 (stock head) or 3 per stride "
                         "(split head: box, class, sum).")
    outs = [o[0] if o.ndim == 4 else o for o in outs]
    boxes, scores = [], []
    for box, cls in zip(outs[0::3], outs[1::3]):
        boxes.append(dfl_decode(box, input_size // box.shape[-1]))
        scores.append(cls.reshape(cls.shape[0], -1).T)
    return np.concatenate(boxes), np.concatenate(scores)


def layout(outputs: Sequence[np.ndarray]) -> str:
    """'stock' (one output tensor) or 'split' (three per stride) for one image's raw outputs."""
    if len(outputs) == 1:
        return "stock"
    if len(outputs) % 3 == 0:
        return "split"
    raise ValueError(f"Detector gave {len(outputs)} outputs; expected 1 (stock head) or 3 per stride "
                     "(split head: box, class, sum).")


def require_split(outputs: Sequence[np.ndarray], model: str = "this model") -> None:
    """Refuse the stock layout on INT8 hardware: its class scores share the box coordinates' INT8 scale and collapse."""
    if layout(outputs) == "stock":
        raise ValueError(f"{model} has the stock detector head (one output mixing box pixels and class scores), whose INT8 "
                         "class scores collapse to 0 on the NPU; re-export it with head: split "
                         "(helpers.steps.export.detect_head.export_detector).")


def candidate_mask(outputs: Sequence[np.ndarray], conf: float) -> np.ndarray | None:
    """For the split layout: anchors whose clamped score sum reaches conf (no class score can pass
    where the sum does not); None for the stock layout."""
    if len(outputs) == 1:
        return None
    return np.concatenate([np.asarray(s, np.float32).reshape(-1) for s in outputs[2::3]]) >= conf


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each of boxes."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices of kept boxes, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        rest = order[1:]
        order = rest[box_iou(boxes[i], boxes[rest]) <= iou]
    return np.asarray(keep, np.int64)


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ultralytics' end-to-end selection: the k anchors with the best class score, then the k best
    (anchor, class) pairs among them; returns anchor rows, class ids and scores, best first (ties: lower
    index first)."""
    if not len(scores) or k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    nc = scores.shape[1]
    anchors = np.argsort(-scores.max(axis=1), kind="stable")[:k]
    flat = scores[anchors].reshape(-1)
    pick = np.argsort(-flat, kind="stable")[:k]
    return anchors[pick // nc], (pick % nc).astype(np.int64), flat[pick].astype(np.float32)


def postprocess(outputs: Sequence[np.ndarray], lb: Letterbox, conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
                multi_label: bool = False, max_nms: int = 30000, end2end: bool = False) -> Detections:
    """Raw outputs of one image -> detections in original image pixels: decode, keep class scores >=
    conf (every class above it with multi_label, else the best class), per-class NMS, best max_det.
    end2end (a one-to-one head): top-k of max_det over anchors x classes, then scores > conf; no NMS
    (iou and multi_label do not apply)."""
    boxes, scores = decode(outputs, lb.size)
    k = min(max_det, len(scores))
    mask = candidate_mask(outputs, conf)
    if mask is not None:
        boxes, scores = boxes[mask], scores[mask]
    if end2end:
        rows, cls, conf_of = topk(scores, k)
        keep = conf_of > conf
        return Detections(unletterbox(boxes[rows[keep]], lb), conf_of[keep], cls[keep])
    if multi_label:
        rows, cls = np.nonzero(scores > conf)
        conf_of = scores[rows, cls]
    else:
        cls = scores.argmax(axis=1) if len(scores) else np.zeros(0, np.int64)
        conf_of = scores[np.arange(len(scores)), cls] if len(scores) else np.zeros(0, np.float32)
        rows = np.nonzero(conf_of > conf)[0]
        cls, conf_of = cls[rows], conf_of[rows]
    cand_boxes = boxes[rows]
    if len(conf_of) > max_nms:
        top = np.argsort(-conf_of, kind="stable")[:max_nms]
        cand_boxes, conf_of, cls = cand_boxes[top], conf_of[top], cls[top]
    kept = []
    for c in np.unique(cls):
        idx = np.nonzero(cls == c)[0]
        kept.append(idx[nms(cand_boxes[idx], conf_of[idx], iou)])
    keep = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    keep = keep[np.argsort(-conf_of[keep], kind="stable")][:max_det]
    return Detections(unletterbox(cand_boxes[keep], lb), conf_of[keep].astype(np.float32), cls[keep].astype(np.int64))


def top_score(outputs: Sequence[np.ndarray], input_size: int) -> float:
    """The highest class score anywhere in one image's outputs (the number the INT8 pitfall wrecks)."""
    _, scores = decode(outputs, input_size)
    return float(scores.max()) if scores.size else 0.0
