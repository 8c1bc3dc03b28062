"""COCO mAP with pycocotools (what rknn_model_zoo's evaluation uses): mAP50-95, mAP50, per-class AP; and the one COCO
evaluation core (match -> Matching) the segment (segm) and pose (keypoints) metrics share."""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from helpers.tasks.detect.postprocess import Detections, postprocess, top_score
from helpers.tasks.noise import Paired, bootstrap

IOU_TYPES = ("bbox", "segm", "keypoints")  # pycocotools' evaluations: boxes, RLE masks, keypoints (OKS)


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


@dataclass
class Matching:
    """pycocotools' per-image matching of one prediction set to the truth (COCOeval.evaluate over area "all", at most
    max_det predictions per image): computed once, then summarised for all images or any selection of them (the
    paired bootstrap re-accumulates it per resample). ev is None when nothing can match (no object or no prediction)."""

    ev: Any
    images: int
    instances: int
    detections: int
    per_image: list = field(default_factory=list, repr=False)  # ev.evalImgs as evaluate() left it: [class][image]

    def precision(self, idx: Sequence[int] | None = None) -> np.ndarray:
        """COCOeval.accumulate's precision [iou, recall, class] of the images idx (positions, repeats allowed; None:
        all), at area "all" and max_det; -1 marks a class without a labelled object among them."""
        idx = range(self.images) if idx is None else [int(i) for i in idx]
        classes = len(self.ev.params.catIds)
        self.ev.evalImgs = [self.per_image[k * self.images + i] for k in range(classes) for i in idx]
        self.ev.params.imgIds = self.ev._paramsEval.imgIds = list(range(len(idx)))  # positions: a repeat counts twice
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.ev.accumulate()
        return self.ev.eval["precision"][:, :, :, 0, -1]

    def map_of(self, idx: Sequence[int] | None = None) -> float:
        """mAP50-95 of the images idx (None: all): the primary figure, exactly what evaluating them alone gives."""
        return 0.0 if self.ev is None else _mean(self.precision(idx))

    def metric(self, names: Sequence[str]) -> DetectMetric:
        """The summary of all images: mAP50-95, mAP50, per-class AP (classes with a labelled object) and the counts."""
        metric = DetectMetric(0.0, 0.0, images=self.images, instances=self.instances, detections=self.detections)
        if self.ev is None:
            return metric
        precision = self.precision()
        iou50 = int(np.argmin(np.abs(self.ev.params.iouThrs - 0.5)))
        for k, cat in enumerate(self.ev.params.catIds):
            if (precision[:, :, k] > -1).any():
                metric.per_class[str(names[cat])] = _mean(precision[:, :, k])
                metric.per_class50[str(names[cat])] = _mean(precision[iou50, :, k])
        metric.map50_95, metric.map50 = _mean(precision), _mean(precision[iou50])
        return metric


def match(images: list[dict], annotations: list[dict], results: list[dict], names: Sequence[str], iou_type: str = "bbox",
          max_det: int = 100, sigmas: Sequence[float] | None = None) -> Matching:
    """The workbook's one COCO evaluation set-up: COCO records (images with ids 0..n-1 in order, annotations, results)
    matched by pycocotools' COCOeval for iou_type bbox, segm (RLE masks) or keypoints (OKS with these sigmas, one per
    keypoint); 101-point interpolated precision at IoU/OKS 0.50:0.05:0.95."""
    from pycocotools.coco import COCO  # pycocotools imports matplotlib: slow, needed only when a metric is computed
    from pycocotools.cocoeval import COCOeval

    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type {iou_type!r} is not one of {', '.join(IOU_TYPES)}; pass the task's COCO evaluation type.")
    found = Matching(None, len(images), len(annotations), len(results))
    if not annotations or not results:
        return found
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt_api = COCO()
        gt_api.dataset = {"images": images, "annotations": annotations,
                          "categories": [{"id": i, "name": str(n)} for i, n in enumerate(names)]}
        gt_api.createIndex()
        ev = COCOeval(gt_api, gt_api.loadRes(results), iou_type)
        if iou_type == "keypoints":
            ev.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
        ev.params.areaRng, ev.params.areaRngLbl = [ev.params.areaRng[0]], ["all"]  # the metrics read area "all" only
        ev.params.maxDets = [max_det]
        ev.evaluate()
    found.ev, found.per_image = ev, list(ev.evalImgs)
    return found


def _mean(p: np.ndarray) -> float:
    valid = p[p > -1]  # -1 marks "no data" (a class without a labelled box)
    return float(valid.mean()) if valid.size else 0.0


def box_records(truth: Sequence[GroundTruth], predictions: Sequence[Detections]) -> tuple[list, list, list]:
    """COCO images, box annotations and box results of labelled images and their detections (same order)."""
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
    return images, annotations, results


def coco_map(truth: Sequence[GroundTruth], predictions: Sequence[Detections], names: Sequence[str],
             max_det: int = 100) -> DetectMetric:
    """Evaluate predictions against truth (same image order) with pycocotools' COCOeval (bbox,
    101-point interpolated precision, IoU 0.50:0.05:0.95, at most max_det detections per image)."""
    return match(*box_records(truth, predictions), names, "bbox", max_det).metric(names)


def map_of_images(truth: Sequence[GroundTruth], predictions: Sequence[Detections], names: Sequence[str],
                  max_det: int = 300) -> Callable[[np.ndarray], float]:
    """mAP50-95 of any selection of these images (indices, repeats allowed), equal to coco_map on that selection: the
    per-image matching is computed once and each selection only re-accumulates it, so a bootstrap costs a fraction
    of a COCO evaluation per resample."""
    return match(*box_records(truth, predictions), names, "bbox", max_det).map_of


def paired_matchings(reference: Matching, other: Matching, resamples: int = 50, seed: int = 0) -> Paired:
    """other's mAP50-95 minus reference's on the same images (any iou type), by the workbook's one noise rule: a paired
    bootstrap over the images (helpers.tasks.noise.bootstrap), each resample re-accumulating both matchings."""
    if reference.images != other.images:
        raise ValueError(f"{reference.images} and {other.images} images: score both models on the same images, in the same "
                         "order.")
    return bootstrap(reference.map_of, other.map_of, reference.images, resamples=resamples, seed=seed)


def paired_map(truth: Sequence[GroundTruth], reference: Sequence[Detections], other: Sequence[Detections],
               names: Sequence[str], resamples: int = 50, seed: int = 0, max_det: int = 300) -> Paired:
    """other's mAP50-95 minus reference's on the same images, by the workbook's one noise rule: a paired bootstrap
    over the images (helpers.tasks.noise.bootstrap; each resample re-accumulates the matches of map_of_images)."""
    return paired_matchings(match(*box_records(truth, reference), names, "bbox", max_det),
                            match(*box_records(truth, other), names, "bbox", max_det), resamples, seed)


def predictions_json(detections: Sequence[Detections]) -> list[dict[str, list]]:
    """Each image's detections as eval/detections.json stores them: boxes (xyxy, 0.01 px), scores, classes."""
    return [{"boxes": np.round(d.boxes, 2).tolist(), "scores": np.round(d.scores, 4).tolist(),
             "classes": np.asarray(d.classes).tolist()} for d in detections]


@dataclass
class DetectEval:
    """Detections per image, their COCO metric and top class scores for one backend, with the matching a paired verdict
    against another backend re-accumulates (paired_matchings)."""

    name: str
    detections: list[Detections]
    metric: DetectMetric
    top_scores: list[float]
    matching: Matching | None = field(default=None, repr=False)  # what a paired verdict needs (paired_matchings)


def evaluate_outputs(name: str, outputs: Sequence[Sequence[np.ndarray]], geoms: Sequence, split: Any,
                     conf: float = 0.001, iou: float = 0.7, max_det: int = 300, end2end: bool = False) -> DetectEval:
    """Post-process each image's raw outputs and score them with COCO mAP against split (a
    helpers.tasks.detect.labels.DetectionSplit; val-style defaults: conf 0.001, IoU 0.7, max_det 300, every
    class above conf per box; end2end: top-k, no NMS)."""
    dets = [postprocess(o, lb, conf=conf, iou=iou, max_det=max_det, multi_label=True, end2end=end2end)
            for o, lb in zip(outputs, geoms)]
    tops = [top_score(o, lb.size) for o, lb in zip(outputs, geoms)]
    matched = match(*box_records(split.truth, dets), split.names, "bbox", max_det)
    return DetectEval(name, dets, matched.metric(split.names), tops, matched)
