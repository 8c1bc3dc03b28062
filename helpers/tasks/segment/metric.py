"""COCO mask and box mAP with pycocotools (`segm` on RLE-encoded masks, `bbox` on the same detections): what
rknn_model_zoo's seg demos and ultralytics' COCO evaluation report."""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from helpers.tasks.detect.metric import DetectMetric
from helpers.tasks.segment.postprocess import Segmentation


@dataclass
class SegmentTruth:
    """The labelled objects of one image: boxes (xyxy, original pixels), class ids and bool masks [n, height, width]."""

    boxes: np.ndarray
    classes: np.ndarray
    masks: np.ndarray
    height: int
    width: int


@dataclass
class SegmentMetric:
    """Mask AP (the task's primary metric) and box AP over one image set, each a DetectMetric (mAP50-95, mAP50,
    per-class AP keyed by class name, counts)."""

    mask: DetectMetric
    box: DetectMetric

    @property
    def map50_95(self) -> float:
        """Mask mAP50-95: the number a segmentation model is judged by."""
        return self.mask.map50_95

    def to_dict(self) -> dict:
        return {"mask": self.mask.to_dict(), "box": self.box.to_dict()}


def encode(mask: np.ndarray) -> dict:
    """One bool [h, w] mask as pycocotools' compressed RLE (counts as str, so the record is JSON-serialisable)."""
    from pycocotools import mask as mask_utils  # pycocotools imports matplotlib: slow, needed only for a metric

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def _evaluate(images: list, annotations: list, results: list, names: Sequence[str], iou_type: str,
              max_det: int) -> DetectMetric:
    """One COCOeval run (101-point interpolated precision, IoU 0.50:0.05:0.95) -> DetectMetric."""
    from pycocotools.coco import COCO  # pycocotools imports matplotlib: slow, needed only for a metric
    from pycocotools.cocoeval import COCOeval

    metric = DetectMetric(0.0, 0.0, images=len(images), instances=len(annotations), detections=len(results))
    if not annotations or not results:
        return metric
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt_api = COCO()
        gt_api.dataset = {"images": images, "annotations": annotations,
                          "categories": [{"id": i, "name": str(n)} for i, n in enumerate(names)]}
        gt_api.createIndex()
        ev = COCOeval(gt_api, gt_api.loadRes(results), iou_type)
        ev.params.maxDets = [1, 10, max_det]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, :, 0, -1]  # [iou, recall, class]; area all, maxdets max_det; -1 = no data
    iou50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))

    def mean(p: np.ndarray) -> float:
        valid = p[p > -1]
        return float(valid.mean()) if valid.size else 0.0

    for k, cat in enumerate(ev.params.catIds):
        if (precision[:, :, k] > -1).any():
            metric.per_class[str(names[cat])] = mean(precision[:, :, k])
            metric.per_class50[str(names[cat])] = mean(precision[iou50, :, k])
    metric.map50_95, metric.map50 = mean(precision), mean(precision[iou50])
    return metric


def coco_segment_map(truth: Sequence[SegmentTruth], predictions: Sequence[Segmentation], names: Sequence[str],
                     max_det: int = 100) -> SegmentMetric:
    """Evaluate predictions against truth (same image order) with pycocotools' COCOeval: `segm` on RLE masks at the
    original image size, and `bbox` on the same detections (at most max_det per image)."""
    if len(truth) != len(predictions):
        raise ValueError(f"{len(predictions)} prediction sets for {len(truth)} labelled images; pass one Segmentation per "
                         "image, in the same order.")
    images, annotations, box_results, mask_results = [], [], [], []
    for i, (gt, det) in enumerate(zip(truth, predictions)):
        images.append({"id": i, "height": int(gt.height), "width": int(gt.width)})
        if len(det) and tuple(det.masks.shape[1:]) != (gt.height, gt.width):
            raise ValueError(f"Image {i}: masks of {det.masks.shape[1:]} pixels for a {gt.height}x{gt.width} image; map the "
                             "masks back to the original image (postprocess does).")
        for box, cls, mask in zip(_xywh(gt.boxes), gt.classes, gt.masks):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(cls), "bbox": box.tolist(),
                                "area": float(mask.sum()), "iscrowd": 0, "segmentation": encode(mask)})
        for box, cls, score, mask in zip(_xywh(det.boxes), det.classes, det.scores, det.masks):
            common = {"image_id": i, "category_id": int(cls), "score": float(score)}
            box_results.append({**common, "bbox": box.tolist()})
            mask_results.append({**common, "segmentation": encode(mask)})
    return SegmentMetric(mask=_evaluate(images, annotations, mask_results, names, "segm", max_det),
                         box=_evaluate(images, annotations, box_results, names, "bbox", max_det))
