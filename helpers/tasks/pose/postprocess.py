"""Pose post-processing shared by ONNX Runtime, the simulator and the board runner: boxes, scores, classes and keypoints.

Shipped in the deployment bundle beside the detector's postprocess.py (numpy only, nothing else), so the board decodes
exactly as the workbook: the image geometry `lb` comes from the detector's letterbox, and the DFL decode, NMS, top-k and
un-letterboxing are the detector's own (imported from helpers/tasks/detect/postprocess.py here, from the bundle's
postprocess.py on the board).

kpt_shape (K, ndim) is the model's (ultralytics' metadata and data.yaml both carry it): ndim 3 is x, y, visibility,
ndim 2 is x, y alone. Two output layouts are understood, told apart by their number:
  stock  1 tensor [1, 4 + classes + K*ndim, anchors] (ultralytics' export): xywh boxes in input pixels, sigmoid class
         scores, then per keypoint x, y in input pixels and (ndim 3) its sigmoid visibility, interleaved x1 y1 v1 x2 ...
  split  4 tensors per stride, strides ascending: box{s} [1, 4*reg_max, h, w], cls{s} [1, classes, h, w],
         sum{s} [1, 1, h, w] (the detection task's split head) and kpt{s} [1, K*ndim, h, w]: per keypoint dx, dy, the
         offset from its cell's top-left corner in stride units (input pixel x = (dx + column) * stride), then the
         sigmoid visibility. Small offsets instead of pixels keep a fine INT8 step; the export writes dx = 2 * raw for
         YOLOv8/11 Pose and raw + 0.5 for YOLO26 Pose, so one decode serves both.
Keypoints come back as [N, K, 3]: x, y in original image pixels (clipped to the image, as ultralytics does) and the
visibility score (1.0 for an ndim-2 model). end2end heads (YOLO26) take ultralytics' top-k instead of NMS.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

try:  # the workbook: the detector's decode is the one definition of the DFL decode, NMS, top-k and un-letterboxing
    from helpers.tasks.detect.postprocess import dfl_decode, nms, topk, unletterbox
except ImportError:  # the board bundle: this file ships beside the detector's postprocess.py
    from postprocess import dfl_decode, nms, topk, unletterbox  # type: ignore[no-redef]


@dataclass
class Poses:
    """Boxes (xyxy), scores, class ids and keypoints [N, K, 3] (x, y, visibility score) of one image, best first; boxes
    and keypoints in original image pixels."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    keypoints: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def layout(outputs: Sequence[np.ndarray]) -> str:
    """'stock' (one output tensor) or 'split' (four per stride: box, cls, sum, kpt) for one image's raw outputs."""
    if len(outputs) == 1:
        return "stock"
    if len(outputs) % 4 == 0:
        return "split"
    raise ValueError(f"Pose model gave {len(outputs)} outputs; expected 1 (stock head) or 4 per stride "
                     "(split head: box, cls, sum, kpt).")


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Column and row index of each cell of an h x w map, flattened row by row (ultralytics' anchor order)."""
    gy, gx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    return gx.ravel(), gy.ravel()


def kpt_decode(kpt: np.ndarray, stride: int, ndim: int) -> np.ndarray:
    """Keypoints [K*ndim, h, w] of one stride (cell offsets in stride units, visibility) -> [h*w, K, 3] in input
    pixels with the visibility score (1.0 when ndim is 2)."""
    c, h, w = kpt.shape
    k = c // ndim
    y = kpt.reshape(k, ndim, h * w).astype(np.float32)
    gx, gy = _grid(h, w)
    out = np.ones((h * w, k, 3), np.float32)
    out[:, :, 0] = ((y[:, 0] + gx) * stride).T
    out[:, :, 1] = ((y[:, 1] + gy) * stride).T
    if ndim == 3:
        out[:, :, 2] = y[:, 2].T
    return out


def decode(outputs: Sequence[np.ndarray], input_size: int,
           kpt_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw outputs of one image (stock or split layout, batch dim 1 or none) -> candidate boxes [anchors, 4] xyxy and
    keypoints [anchors, K, 3] in input pixels, and class scores [anchors, classes]."""
    k, ndim = int(kpt_shape[0]), int(kpt_shape[1])
    outs = [np.asarray(o, np.float32) for o in outputs]
    if layout(outs) == "stock":
        pred = outs[0][0] if outs[0].ndim == 3 else outs[0]  # [4 + classes + K*ndim, anchors]
        nc = pred.shape[0] - 4 - k * ndim
        if nc < 1:
            raise ValueError(f"Pose output has {pred.shape[0]} channels, too few for 4 box + classes + {k}x{ndim} keypoint "
                             f"channels; pass the model's own kpt_shape.")
        xy, wh = pred[:2].T, pred[2:4].T
        kpts = np.ones((pred.shape[1], k, 3), np.float32)
        kpts[:, :, :ndim] = pred[4 + nc:].T.reshape(-1, k, ndim)
        return np.concatenate([xy - wh / 2, xy + wh / 2], axis=1), np.ascontiguousarray(pred[4:4 + nc].T), kpts
    outs = [o[0] if o.ndim == 4 else o for o in outs]
    boxes, scores, kpts = [], [], []
    for box, cls, kpt in zip(outs[0::4], outs[1::4], outs[3::4]):
        if kpt.shape[0] != k * ndim:
            raise ValueError(f"Pose keypoint output has {kpt.shape[0]} channels, not {k}x{ndim} = {k * ndim}; pass the "
                             "model's own kpt_shape.")
        stride = input_size // box.shape[-1]
        boxes.append(dfl_decode(box, stride))
        scores.append(cls.reshape(cls.shape[0], -1).T)
        kpts.append(kpt_decode(kpt, stride, ndim))
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(kpts)


def candidate_mask(outputs: Sequence[np.ndarray], conf: float) -> np.ndarray | None:
    """For the split layout: anchors whose clamped score sum reaches conf; None for the stock layout."""
    if len(outputs) == 1:
        return None
    return np.concatenate([np.asarray(s, np.float32).reshape(-1) for s in outputs[2::4]]) >= conf


def unletterbox_keypoints(kpts: np.ndarray, lb: Any) -> np.ndarray:
    """Map keypoints [N, K, 3] from the letterboxed canvas back to the original image (x, y clipped to it, as
    ultralytics' scale_coords does); the visibility score is kept."""
    out = np.asarray(kpts, np.float32).copy()
    out[..., 0] = ((out[..., 0] - lb.left) / lb.scale).clip(0, lb.width)
    out[..., 1] = ((out[..., 1] - lb.top) / lb.scale).clip(0, lb.height)
    return out


def postprocess(outputs: Sequence[np.ndarray], lb: Any, kpt_shape: Sequence[int], conf: float = 0.25, iou: float = 0.7,
                max_det: int = 300, multi_label: bool = False, max_nms: int = 30000, end2end: bool = False) -> Poses:
    """Raw outputs of one image -> poses in original image pixels: decode, keep class scores > conf (every class above
    it with multi_label, else the best class), per-class NMS, best max_det; each pose keeps its anchor's keypoints.
    end2end (a one-to-one head): top-k of max_det over anchors x classes, then scores > conf; no NMS."""
    boxes, scores, kpts = decode(outputs, lb.size, kpt_shape)
    k = min(max_det, len(scores))
    mask = candidate_mask(outputs, conf)
    if mask is not None:
        boxes, scores, kpts = boxes[mask], scores[mask], kpts[mask]
    if end2end:
        rows, cls, conf_of = topk(scores, k)
        keep = conf_of > conf
        rows = rows[keep]
        return Poses(unletterbox(boxes[rows], lb), conf_of[keep], cls[keep], unletterbox_keypoints(kpts[rows], lb))
    if multi_label:
        rows, cls = np.nonzero(scores > conf)
        conf_of = scores[rows, cls]
    else:
        cls = scores.argmax(axis=1) if len(scores) else np.zeros(0, np.int64)
        conf_of = scores[np.arange(len(scores)), cls] if len(scores) else np.zeros(0, np.float32)
        rows = np.nonzero(conf_of > conf)[0]
        cls, conf_of = cls[rows], conf_of[rows]
    if len(conf_of) > max_nms:
        top = np.argsort(-conf_of, kind="stable")[:max_nms]
        rows, conf_of, cls = rows[top], conf_of[top], cls[top]
    cand_boxes = boxes[rows]
    kept = []
    for c in np.unique(cls):
        idx = np.nonzero(cls == c)[0]
        kept.append(idx[nms(cand_boxes[idx], conf_of[idx], iou)])
    keep = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    keep = keep[np.argsort(-conf_of[keep], kind="stable")][:max_det]
    return Poses(unletterbox(cand_boxes[keep], lb), conf_of[keep].astype(np.float32), cls[keep].astype(np.int64),
                 unletterbox_keypoints(kpts[rows[keep]], lb).reshape(-1, int(kpt_shape[0]), 3))
