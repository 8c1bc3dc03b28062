"""Instance-segmentation post-processing shared by ONNX Runtime, the simulator and the board runner.

Self-contained on purpose (numpy + OpenCV, no helpers imports): the deployment bundle ships this very file, so the
board decodes masks exactly as the workbook. Boxes, scores and the selection (conf, per-class NMS or an end-to-end
top-k, max_det) follow helpers/tasks/detect/postprocess.py rule for rule; tests/test_segment_postprocess.py holds the
two to the same detections on the same raw outputs.

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

PAD_VALUE = 114  # ultralytics' letterbox grey
CHUNK_PIXELS = 8_000_000  # mask pixels assembled at a time: a few hundred masks of a large image stay within ~100 MB


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
class Segmentation:
    """Boxes (xyxy, original pixels), scores, class ids and bool masks [n, height, width] of one image, best first."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def letterbox_geometry(height: int, width: int, size: int) -> Letterbox:
    """Scale to fit size x size keeping the aspect ratio, padding split evenly (ultralytics' rounding)."""
    scale = min(size / height, size / width)
    new_w, new_h = int(round(width * scale)), int(round(height * scale))
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    return Letterbox(height, width, size, scale, int(round(dw - 0.1)), int(round(dh - 0.1)))


def letterbox(image: np.ndarray, size: int, pad_value: int = PAD_VALUE) -> tuple[np.ndarray, Letterbox]:
    """Resize an HxWx3 uint8 image into a size x size canvas (aspect kept, grey padding) and return its geometry."""
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


def dfl_decode(box_logits: np.ndarray, stride: int) -> np.ndarray:
    """Box regression [4*reg_max, h, w] of one stride -> xyxy [h*w, 4] in input pixels (softmax expectation over the
    bins, or the plain distances when reg_max == 1), as helpers/tasks/detect/postprocess.dfl_decode."""
    c, h, w = box_logits.shape
    reg_max = c // 4
    if reg_max == 1:
        ltrb = box_logits.reshape(4, h * w).astype(np.float32)
    else:
        z = box_logits.reshape(4, reg_max, h * w).astype(np.float32)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        ltrb = ((e / e.sum(axis=1, keepdims=True)) * np.arange(reg_max, dtype=np.float32)[None, :, None]).sum(axis=1)
    gy, gx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    cx, cy = gx.ravel() + 0.5, gy.ravel() + 0.5
    return np.stack([cx - ltrb[0], cy - ltrb[1], cx + ltrb[2], cy + ltrb[3]], axis=1) * stride


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
        rest = order[1:]
        order = rest[box_iou(boxes[i], boxes[rest]) <= iou] if rest.size else rest
    return np.asarray(keep, np.int64)


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ultralytics' end-to-end selection: the k anchors with the best class score, then the k best (anchor, class)
    pairs among them; anchor rows, class ids and scores, best first."""
    if not len(scores) or k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    nc = scores.shape[1]
    anchors = np.argsort(-scores.max(axis=1), kind="stable")[:k]
    flat = scores[anchors].reshape(-1)
    pick = np.argsort(-flat, kind="stable")[:k]
    return anchors[pick // nc], (pick % nc).astype(np.int64), flat[pick].astype(np.float32)


def select(scores: np.ndarray, boxes: np.ndarray, conf: float, iou: float, max_det: int, multi_label: bool,
           max_nms: int, end2end: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The detection rule of helpers/tasks/detect/postprocess.postprocess: anchor rows, class ids and scores kept,
    best first."""
    if end2end:
        rows, cls, conf_of = topk(scores, min(max_det, len(scores)))
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
    if sums is not None:  # split layout: no class score can pass where the clamped sum does not
        cand = sums >= conf
        boxes, scores, coefs = boxes[cand], scores[cand], coefs[cand]
    rows, cls, conf_of = select(scores, boxes, conf, iou, max_det, multi_label, max_nms, end2end)
    out_boxes = unletterbox(boxes[rows], lb)
    protos = np.asarray(outputs[-1], np.float32)
    protos = protos[0] if protos.ndim == 4 else protos
    return Segmentation(out_boxes, conf_of, cls, assemble_masks(coefs[rows], protos, out_boxes, lb, mask_threshold))
