"""COCO mAP with pycocotools (what rknn_model_zoo's evaluation uses): mAP50-95, mAP50, per-class AP."""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from helpers.tasks.detect.postprocess import Detections, postprocess, top_score
from helpers.tasks.noise import Paired, bootstrap


@dataclass
class GroundTruth:
    """The labelled boxes (xyxy, original image pixels) and class ids of one image."""

    boxes: np.ndarray
    classes: np.ndarray
    height: int
    width: int


@dataclass
class DetectMetric:
    """COCO box AP over one image set; per-class values keyed by class name (classes without any
    labelled instance are left out, as pycocotools does)."""

    map50_95: float
    map50: float
    per_class: dict[str, float] = field(default_factory=dict)
    per_class50: dict[str, float] = field(default_factory=dict)
    images: int = 0
    instances: int = 0
    detections: int = 0

    def to_dict(self) -> dict:
        return {"map50_95": self.map50_95, "map50": self.map50, "per_class": self.per_class, "per_class50": self.per_class50,
                "images": self.images, "instances": self.instances, "detections": self.detections}


def _coco_xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def _evaluated(truth: Sequence[GroundTruth], predictions: Sequence[Detections], names: Sequence[str], max_det: int):
    """pycocotools' per-image matching of predictions to truth (COCOeval.evaluate) over all areas and at most max_det
    detections per image (the only slice the metrics read), and the counts; None for the evaluator when there is
    nothing to match (no labelled box or no detection)."""
    from pycocotools.coco import COCO  # pycocotools imports matplotlib: slow, needed only when a metric is computed
    from pycocotools.cocoeval import COCOeval

    if len(truth) != len(predictions):
        raise ValueError(f"{len(predictions)} prediction sets for {len(truth)} labelled images; pass one Detections per image, "
                         "in the same order.")
    images, annotations, results = [], [], []
    for i, (gt, det) in enumerate(zip(truth, predictions)):
        images.append({"id": i, "height": int(gt.height), "width": int(gt.width)})
        for box, cls in zip(_coco_xywh(gt.boxes), gt.classes):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(cls), "bbox": box.tolist(),
                                "area": float(box[2] * box[3]), "iscrowd": 0})
        for box, cls, score in zip(_coco_xywh(det.boxes), det.classes, det.scores):
            results.append({"image_id": i, "category_id": int(cls), "bbox": box.tolist(), "score": float(score)})
    metric = DetectMetric(0.0, 0.0, images=len(images), instances=len(annotations), detections=len(results))
    if not annotations or not results:
        return None, metric
    categories = [{"id": i, "name": str(n)} for i, n in enumerate(names)]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt_api = COCO()
        gt_api.dataset = {"images": images, "annotations": annotations, "categories": categories}
        gt_api.createIndex()
        dt_api = gt_api.loadRes(results)
        ev = COCOeval(gt_api, dt_api, "bbox")
        ev.params.areaRng, ev.params.areaRngLbl = [ev.params.areaRng[0]], ["all"]  # the metrics read area "all" only
        ev.params.maxDets = [max_det]
        ev.evaluate()
    return ev, metric


def _mean(p: np.ndarray) -> float:
    valid = p[p > -1]  # -1 marks "no data" (a class without a labelled box)
    return float(valid.mean()) if valid.size else 0.0


def _precision(ev: Any) -> np.ndarray:
    """COCOeval.accumulate's precision [iou, recall, class] at area "all" and max_det."""
    with contextlib.redirect_stdout(io.StringIO()):
        ev.accumulate()
    return ev.eval["precision"][:, :, :, 0, -1]


def coco_map(truth: Sequence[GroundTruth], predictions: Sequence[Detections], names: Sequence[str],
             max_det: int = 100) -> DetectMetric:
    """Evaluate predictions against truth (same image order) with pycocotools' COCOeval (bbox,
    101-point interpolated precision, IoU 0.50:0.05:0.95, at most max_det detections per image)."""
    ev, metric = _evaluated(truth, predictions, names, max_det)
    if ev is None:
        return metric
    precision = _precision(ev)
    iou50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
    for k, cat in enumerate(ev.params.catIds):
        if (precision[:, :, k] > -1).any():
            metric.per_class[str(names[cat])] = _mean(precision[:, :, k])
            metric.per_class50[str(names[cat])] = _mean(precision[iou50, :, k])
    metric.map50_95 = _mean(precision)
    metric.map50 = _mean(precision[iou50])
    return metric


def map_of_images(truth: Sequence[GroundTruth], predictions: Sequence[Detections], names: Sequence[str],
                  max_det: int = 300) -> Callable[[np.ndarray], float]:
    """mAP50-95 of any selection of these images (indices, repeats allowed), equal to coco_map on that selection: the
    per-image matching is computed once and each selection only re-accumulates it, so a bootstrap costs a fraction
    of a COCO evaluation per resample."""
    ev, _ = _evaluated(truth, predictions, names, max_det)
    if ev is None:
        return lambda idx: 0.0
    per_image = list(ev.evalImgs)  # [class][image] (one area), None where an image has neither box nor detection
    images, classes = len(truth), len(ev.params.catIds)

    def on(idx: np.ndarray) -> float:
        idx = [int(i) for i in idx]
        ev.evalImgs = [per_image[k * images + i] for k in range(classes) for i in idx]
        ev.params.imgIds = ev._paramsEval.imgIds = list(range(len(idx)))  # positions: a repeated image counts twice
        return _mean(_precision(ev))
    return on


def paired_map(truth: Sequence[GroundTruth], reference: Sequence[Detections], other: Sequence[Detections],
               names: Sequence[str], resamples: int = 50, seed: int = 0, max_det: int = 300) -> Paired:
    """other's mAP50-95 minus reference's on the same images, by the workbook's one noise rule: a paired bootstrap
    over the images (helpers.tasks.noise.bootstrap; each resample re-accumulates the matches of map_of_images)."""
    return bootstrap(map_of_images(truth, reference, names, max_det), map_of_images(truth, other, names, max_det), len(truth),
                     resamples=resamples, seed=seed)


@dataclass
class DetectEval:
    """Detections per image and their COCO metric for one backend."""

    name: str
    detections: list[Detections]
    metric: DetectMetric
    top_scores: list[float]


def evaluate_outputs(name: str, outputs: Sequence[Sequence[np.ndarray]], geoms: Sequence, split: Any,
                     conf: float = 0.001, iou: float = 0.7, max_det: int = 300, end2end: bool = False) -> DetectEval:
    """Post-process each image's raw outputs and score them with COCO mAP against split (a
    helpers.tasks.detect.labels.DetectionSplit; val-style defaults: conf 0.001, IoU 0.7, max_det 300, every
    class above conf per box; end2end: top-k, no NMS)."""
    dets = [postprocess(o, lb, conf=conf, iou=iou, max_det=max_det, multi_label=True, end2end=end2end)
            for o, lb in zip(outputs, geoms)]
    tops = [top_score(o, lb.size) for o, lb in zip(outputs, geoms)]
    return DetectEval(name, dets, coco_map(split.truth, dets, split.names, max_det=max_det), tops)
