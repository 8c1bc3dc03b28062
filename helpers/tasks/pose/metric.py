"""Pose mAP with pycocotools: OKS mAP50-95 / mAP50 of the keypoints with the data set's sigmas (COCOeval `keypoints`),
and the box mAP of the same predictions (the detection task's coco_map)."""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from helpers.tasks.detect.metric import DetectMetric, GroundTruth, coco_map
from helpers.tasks.detect.postprocess import Detections
from helpers.tasks.pose.postprocess import Poses, postprocess

# The COCO convention ultralytics' pose val follows (from xtcocotools): a keypoint's OKS scale is the area of the
# object's segment, taken as 0.53 of its box when there is no segment.
AREA_OF_BOX = 0.53


@dataclass
class PoseTruth:
    """The labelled boxes (xyxy), class ids and keypoints [N, K, 3] (x, y, v; v = 0 unlabelled, 1 occluded, 2 visible)
    of one image, in original image pixels."""

    boxes: np.ndarray
    classes: np.ndarray
    keypoints: np.ndarray
    height: int
    width: int


@dataclass
class PoseMetric:
    """COCO keypoint AP (OKS thresholds 0.50:0.05:0.95) and box AP over one image set; per-class values keyed by class
    name (classes without a labelled instance left out, as pycocotools does)."""

    map50_95: float
    map50: float
    box: DetectMetric
    sigmas: list[float]
    per_class: dict[str, float] = field(default_factory=dict)
    per_class50: dict[str, float] = field(default_factory=dict)
    images: int = 0
    instances: int = 0
    detections: int = 0

    def to_dict(self) -> dict:
        return {"map50_95": self.map50_95, "map50": self.map50, "box": self.box.to_dict(), "sigmas": self.sigmas,
                "per_class": self.per_class, "per_class50": self.per_class50, "images": self.images,
                "instances": self.instances, "detections": self.detections}


def _xywh(box: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def coco_pose_map(truth: Sequence[PoseTruth], predictions: Sequence[Poses], names: Sequence[str], sigmas: Sequence[float],
                  max_det: int = 100) -> PoseMetric:
    """Evaluate predictions against truth (same image order) with pycocotools' COCOeval: `keypoints` with
    params.kpt_oks_sigmas = sigmas (one per keypoint) for the pose figures, `bbox` for the box ones; at most max_det
    predictions per image, 101-point interpolated precision. A labelled figure without any labelled keypoint is ignored
    by pycocotools (ultralytics counts it as missed)."""
    from pycocotools.coco import COCO  # pycocotools imports matplotlib: slow, needed only when a metric is computed
    from pycocotools.cocoeval import COCOeval

    if len(truth) != len(predictions):
        raise ValueError(f"{len(predictions)} prediction sets for {len(truth)} labelled images; pass one Poses per image, "
                         "in the same order.")
    sigmas = np.asarray(sigmas, np.float64).reshape(-1)
    k = len(sigmas)
    shapes = {t.keypoints.shape[1] for t in truth if len(t.keypoints)} | {p.keypoints.shape[1] for p in predictions if len(p)}
    if shapes - {k}:
        raise ValueError(f"Keypoints per figure {sorted(shapes)} differ from the {k} OKS sigmas; pass one sigma per keypoint "
                         "(the data.yaml's kpt_oks_sigmas).")
    box = coco_map([GroundTruth(t.boxes, t.classes, t.height, t.width) for t in truth],
                   [Detections(p.boxes, p.scores, p.classes) for p in predictions], names, max_det=max_det)
    images, annotations, results = [], [], []
    for i, (gt, pred) in enumerate(zip(truth, predictions)):
        images.append({"id": i, "height": int(gt.height), "width": int(gt.width)})
        for b, cls, kp in zip(gt.boxes, gt.classes, gt.keypoints):
            xywh = _xywh(b)
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(cls), "bbox": xywh,
                                "area": float(xywh[2] * xywh[3] * AREA_OF_BOX), "iscrowd": 0,
                                "keypoints": np.asarray(kp, np.float64).reshape(-1).tolist(),
                                "num_keypoints": int((np.asarray(kp)[:, 2] > 0).sum())})
        for cls, score, kp in zip(pred.classes, pred.scores, pred.keypoints):
            kp = np.asarray(kp, np.float64).copy()
            kp[:, 2] = 1.0  # pycocotools reads only x, y of a prediction
            results.append({"image_id": i, "category_id": int(cls), "keypoints": kp.reshape(-1).tolist(), "score": float(score)})
    metric = PoseMetric(0.0, 0.0, box, sigmas.tolist(), images=len(images), instances=len(annotations),
                        detections=len(results))
    if not annotations or not results:
        return metric
    categories = [{"id": i, "name": str(n), "keypoints": [str(j) for j in range(k)]} for i, n in enumerate(names)]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt_api = COCO()
        gt_api.dataset = {"images": images, "annotations": annotations, "categories": categories}
        gt_api.createIndex()
        dt_api = gt_api.loadRes(results)
        ev = COCOeval(gt_api, dt_api, "keypoints")
        ev.params.kpt_oks_sigmas = sigmas
        ev.params.maxDets = [max_det]
        ev.evaluate()
        ev.accumulate()
    # precision[oks, recall, class, area, maxdets]; area 0 = all, maxdets -1 = max_det; -1 marks "no data"
    precision = ev.eval["precision"][:, :, :, 0, -1]
    at50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))

    def mean(p: np.ndarray) -> float:
        valid = p[p > -1]
        return float(valid.mean()) if valid.size else 0.0

    for j, cat in enumerate(ev.params.catIds):
        if (precision[:, :, j] > -1).any():
            metric.per_class[str(names[cat])] = mean(precision[:, :, j])
            metric.per_class50[str(names[cat])] = mean(precision[at50, :, j])
    metric.map50_95, metric.map50 = mean(precision), mean(precision[at50])
    return metric


@dataclass
class PoseEval:
    """Poses per image and their COCO metric for one backend."""

    name: str
    poses: list[Poses]
    metric: PoseMetric


def evaluate_outputs(name: str, outputs: Sequence[Sequence[np.ndarray]], geoms: Sequence, split: Any,
                     conf: float = 0.001, iou: float = 0.7, max_det: int = 300, end2end: bool = False) -> PoseEval:
    """Post-process each image's raw outputs and score them against split (a helpers.tasks.pose.labels.PoseSplit: truth,
    names, kpt_shape, sigmas) with val-style defaults: conf 0.001, IoU 0.7, max_det 300, every class above conf."""
    poses = [postprocess(o, lb, split.kpt_shape, conf=conf, iou=iou, max_det=max_det, multi_label=True, end2end=end2end)
             for o, lb in zip(outputs, geoms)]
    return PoseEval(name, poses, coco_pose_map(split.truth, poses, split.names, split.sigmas, max_det=max_det))
