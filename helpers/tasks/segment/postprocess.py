"""Instance-segmentation post-processing shared by ONNX Runtime, the simulator and the board runner.

Shipped in the deployment bundle beside the detector's postprocess.py (numpy + OpenCV, nothing else), so the board
decodes masks exactly as the workbook: the letterbox, DFL decode, NMS and top-k are the detector's own (imported from
helpers/tasks/detect/postprocess.py here, from the bundle's postprocess.py on the board); boxes, scores and the
selection follow it rule for rule.

Two output layouts, told apart by their number (nm = the prototype tensor's channels, 32 for YOLO11n-seg):
  stock  2 tensors: [1, 4 + classes + nm, anchors] (xywh boxes in input pixels, class scores, mask coefficients),
         then the prototypes [1, nm, H/4, W/4] (ultralytics' own ONNX export);
  split  4 tensors per stride, then the prototypes (the rknn_model_zoo yolov8-seg layout, each with its own INT8 scale):
         box [1, 4*reg_max, h, w] (DFL logits, or plain distances when reg_max == 1), cls [1, classes, h, w],
         sum [1, 1, h, w] (class scores summed, clamped to 0..1), coef [1, nm, h, w]; strides ascending.
Masks: coefficients x prototypes -> mask logits at H/4 x W/4, bilinear up to the letterboxed input, the padding cut
off, bilinear to the original image, sigmoid > mask_threshold, zeroed outside the box (ultralytics' native masks).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

try:  # the workbook: the detector's decode is the one definition of the letterbox, DFL, NMS and top-k
    from helpers.tasks.detect.postprocess import Letterbox, dfl_decode, nms, topk, unletterbox
except ImportError:  # the board bundle: this file ships beside the detector's postprocess.py
    from postprocess import Letterbox, dfl_decode, nms, topk, unletterbox  # type: ignore[no-redef]

CHUNK_PIXELS = 8_000_000  # mask pixels assembled at a time: a few hundred masks of a large image stay within ~100 MB


@dataclass
class Segmentation:
    """Boxes (xyxy, original pixels), scores, class ids and bool masks [n, height, width] of one image, best first."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def layout(outputs: Sequence[np.ndarray]) -> str:
    """'stock' (2 outputs) or 'split' (4 per stride + prototypes) for one image's raw outputs."""
    if len(outputs) == 2:
        return "stock"
    if len(outputs) > 1 and (len(outputs) - 1) % 4 == 0:
        return "split"
    raise ValueError(f"Segmentation model gave {len(outputs)} outputs; expected 2 (stock head: detections + prototypes) or "
                     "4 per stride + prototypes (split head: box, cls, sum, coef per stride).")


def decode(outputs: Sequence[np.ndarray], input_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Raw outputs of one image -> candidate boxes [anchors, 4] xyxy in input pixels, class scores [anchors, classes],
    mask coefficients [anchors, nm] and, for the split layout, each anchor's clamped score sum (None for stock)."""
    outs = [np.asarray(o, np.float32) for o in outputs]
    stock = layout(outs) == "stock"
    # drop the batch dimension: 4-D tensors, and the stock detections tensor when 3-D
    outs = [o[0] if o.ndim == 4 or (stock and i == 0 and o.ndim == 3) else o for i, o in enumerate(outs)]
    nm = outs[-1].shape[0]
    if stock:
        pred = outs[0]  # [4 + classes + nm, anchors]
        xy, wh = pred[:2].T, pred[2:4].T
        boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1)
        return boxes, np.ascontiguousarray(pred[4:-nm].T), np.ascontiguousarray(pred[-nm:].T), None
    boxes, scores, sums, coefs = [], [], [], []
    for box, cls, tot, coef in zip(outs[0:-1:4], outs[1:-1:4], outs[2:-1:4], outs[3:-1:4]):
        boxes.append(dfl_decode(box, input_size // box.shape[-1]))
        scores.append(cls.reshape(cls.shape[0], -1).T)
        sums.append(tot.reshape(-1))
        coefs.append(coef.reshape(coef.shape[0], -1).T)
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(coefs), np.concatenate(sums)


def select(scores: np.ndarray, boxes: np.ndarray, conf: float, iou: float, max_det: int, multi_label: bool,
           max_nms: int, end2end: bool, k: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The detection rule of helpers/tasks/detect/postprocess.postprocess: anchor rows, class ids and scores kept,
    best first; k: an end-to-end head's top-k, min(max_det, every anchor) as ultralytics takes it (counted before
    the split layout's score-sum filter, like the detector's)."""
    if end2end:
        rows, cls, conf_of = topk(scores, min(max_det, len(scores)) if k is None else k)
        keep = conf_of > conf
        return rows[keep], cls[keep], conf_of[keep]
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
    kept = [np.nonzero(cls == c)[0] for c in np.unique(cls)]
    kept = [idx[nms(boxes[rows[idx]], conf_of[idx], iou)] for idx in kept]
    keep = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    keep = keep[np.argsort(-conf_of[keep], kind="stable")][:max_det]
    return rows[keep], cls[keep].astype(np.int64), conf_of[keep].astype(np.float32)


def _resize(stack: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a float [n, h, w] stack to [n, height, width] (OpenCV takes at most 512 channels at a time)."""
    if not len(stack):
        return np.zeros((0, height, width), np.float32)
    parts = [cv2.resize(np.ascontiguousarray(c.transpose(1, 2, 0)), (width, height), interpolation=cv2.INTER_LINEAR)
             for c in np.array_split(stack, -(-len(stack) // 256))]
    return np.concatenate([p.reshape(height, width, -1).transpose(2, 0, 1) for p in parts])


def assemble_masks(coefs: np.ndarray, protos: np.ndarray, boxes: np.ndarray, lb: Letterbox,
                   threshold: float = 0.5) -> np.ndarray:
    """Mask coefficients [n, nm] x prototypes [nm, ph, pw] -> bool masks [n, height, width] in original image pixels:
    logits upsampled to the letterboxed input, padding cut, resized to the original, sigmoid > threshold, and zeroed
    outside each box (xyxy, original pixels)."""
    nm, ph, pw = protos.shape
    coefs = np.asarray(coefs, np.float32).reshape(-1, nm)
    b = np.asarray(boxes, np.float32).reshape(-1, 4)[:, :, None, None]
    new_w, new_h = int(round(lb.width * lb.scale)), int(round(lb.height * lb.scale))
    cols = np.arange(lb.width, dtype=np.float32)[None, None, :]
    rows = np.arange(lb.height, dtype=np.float32)[None, :, None]
    masks = np.zeros((len(coefs), lb.height, lb.width), bool)
    step = max(1, CHUNK_PIXELS // (lb.size * lb.size + lb.height * lb.width))  # bounds the float intermediates
    for i in range(0, len(coefs), step):
        logits = (coefs[i : i + step] @ protos.reshape(nm, -1).astype(np.float32)).reshape(-1, ph, pw)
        content = _resize(logits, lb.size, lb.size)[:, lb.top : lb.top + new_h, lb.left : lb.left + new_w]
        if content.shape[1:] != (lb.height, lb.width):
            content = _resize(content, lb.width, lb.height)
        c = b[i : i + step]
        masks[i : i + step] = ((content > np.log(threshold / (1 - threshold)))  # sigmoid(x) > t  <=>  x > logit(t)
                               & (cols >= c[:, 0]) & (cols < c[:, 2]) & (rows >= c[:, 1]) & (rows < c[:, 3]))
    return masks


def postprocess(outputs: Sequence[np.ndarray], lb: Letterbox, conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
                multi_label: bool = False, max_nms: int = 30000, end2end: bool = False,
                mask_threshold: float = 0.5) -> Segmentation:
    """Raw outputs of one image (stock or split layout) -> boxes, scores, classes and masks in original image pixels,
    selected exactly as the detector decode selects (conf, per-class NMS or end2end top-k, max_det)."""
    boxes, scores, coefs, sums = decode(outputs, lb.size)
    k = min(max_det, len(scores))  # the end-to-end top-k counts every anchor, as the detector's and ultralytics' do
    if sums is not None:  # split layout: no class score can pass where the clamped sum does not
        cand = sums >= conf
        boxes, scores, coefs = boxes[cand], scores[cand], coefs[cand]
    rows, cls, conf_of = select(scores, boxes, conf, iou, max_det, multi_label, max_nms, end2end, k)
    out_boxes = unletterbox(boxes[rows], lb)
    protos = np.asarray(outputs[-1], np.float32)
    protos = protos[0] if protos.ndim == 4 else protos
    return Segmentation(out_boxes, conf_of, cls, assemble_masks(coefs[rows], protos, out_boxes, lb, mask_threshold))
