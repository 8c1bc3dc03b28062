"""Pose mAP with pycocotools: OKS mAP50-95 / mAP50 of the keypoints with the data set's sigmas (COCOeval `keypoints`),
and the box mAP of the same predictions (the detection task's coco_map); the paired bootstrap of OKS mAP50-95 and the
decode-and-score of raw outputs notebook 30 runs per backend."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from helpers.tasks.detect.metric import DetectMetric, GroundTruth, Matching, coco_map, match, paired_matchings
from helpers.tasks.detect.postprocess import Detections
from helpers.tasks.noise import Paired
from helpers.tasks.pose.postprocess import Poses, decode, postprocess

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


def keypoint_records(truth: Sequence[PoseTruth], predictions: Sequence[Poses], k: int) -> tuple[list, list, list]:
    """COCO images, keypoint annotations (area: AREA_OF_BOX of the box) and keypoint results of labelled images and
    their poses (same order); a count or a keypoint number other than k is refused in one sentence."""
    if len(truth) != len(predictions):
        raise ValueError(f"{len(predictions)} prediction sets for {len(truth)} labelled images; pass one Poses per image, "
                         "in the same order.")
    shapes = {t.keypoints.shape[1] for t in truth if len(t.keypoints)} | {p.keypoints.shape[1] for p in predictions if len(p)}
    if shapes - {k}:
        raise ValueError(f"Keypoints per figure {sorted(shapes)} differ from the {k} OKS sigmas; pass one sigma per keypoint "
                         "(the data.yaml's kpt_oks_sigmas).")
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
    return images, annotations, results


def keypoint_matching(truth: Sequence[PoseTruth], predictions: Sequence[Poses], names: Sequence[str],
                      sigmas: Sequence[float], max_det: int = 300) -> Matching:
    """pycocotools' keypoints (OKS) matching of the poses with these sigmas, once (helpers.tasks.detect.metric.match)."""
    sigmas = np.asarray(sigmas, np.float64).reshape(-1)
    return match(*keypoint_records(truth, predictions, len(sigmas)), names, "keypoints", max_det, sigmas)


def coco_pose_map(truth: Sequence[PoseTruth], predictions: Sequence[Poses], names: Sequence[str], sigmas: Sequence[float],
                  max_det: int = 100) -> PoseMetric:
    """Evaluate predictions against truth (same image order) with pycocotools' COCOeval: `keypoints` with
    params.kpt_oks_sigmas = sigmas (one per keypoint) for the pose figures, `bbox` for the box ones; at most max_det
    predictions per image, 101-point interpolated precision. A labelled figure without any labelled keypoint is ignored
    by pycocotools (ultralytics counts it as missed)."""
    return _metric(truth, predictions, names, sigmas, max_det, keypoint_matching(truth, predictions, names, sigmas, max_det))


def _metric(truth: Sequence[PoseTruth], predictions: Sequence[Poses], names: Sequence[str], sigmas: Sequence[float],
            max_det: int, keypoints: Matching) -> PoseMetric:
    """The OKS figures of a keypoints matching and the box figures of the same predictions."""
    kp = keypoints.metric(names)
    box = coco_map([GroundTruth(t.boxes, t.classes, t.height, t.width) for t in truth],
                   [Detections(p.boxes, p.scores, p.classes) for p in predictions], names, max_det=max_det)
    return PoseMetric(kp.map50_95, kp.map50, box, [float(s) for s in np.ravel(sigmas)], per_class=kp.per_class,
                      per_class50=kp.per_class50, images=kp.images, instances=kp.instances, detections=kp.detections)


def pose_map_of_images(truth: Sequence[PoseTruth], predictions: Sequence[Poses], names: Sequence[str],
                       sigmas: Sequence[float], max_det: int = 300) -> Callable[[np.ndarray], float]:
    """OKS mAP50-95 of any selection of these images (indices, repeats allowed), equal to coco_pose_map's on that
    selection: matched once, re-accumulated per selection."""
    return keypoint_matching(truth, predictions, names, sigmas, max_det).map_of


def paired_pose_map(truth: Sequence[PoseTruth], reference: Sequence[Poses], other: Sequence[Poses], names: Sequence[str],
                    sigmas: Sequence[float], resamples: int = 50, seed: int = 0, max_det: int = 300) -> Paired:
    """other's OKS mAP50-95 minus reference's on the same images, by the workbook's one noise rule (a paired bootstrap
    over the images, each resample re-accumulating one keypoints matching per model)."""
    return paired_matchings(keypoint_matching(truth, reference, names, sigmas, max_det),
                            keypoint_matching(truth, other, names, sigmas, max_det), resamples, seed)


@dataclass
class PoseEval:
    """Poses per image, their COCO metric and each image's top class score for one backend, with the keypoints matching
    a paired verdict against another backend re-accumulates (paired_matchings)."""

    name: str
    poses: list[Poses]
    metric: PoseMetric
    top_scores: list[float] = field(default_factory=list)
    matching: Matching | None = field(default=None, repr=False)


def top_score(outputs: Sequence[np.ndarray], input_size: int, kpt_shape: Sequence[int]) -> float:
    """The highest class score anywhere in one image's raw outputs (the number the INT8 pitfall wrecks)."""
    scores = decode(outputs, input_size, kpt_shape)[1]
    return float(scores.max()) if scores.size else 0.0


def evaluate_outputs(name: str, outputs: Sequence[Sequence[np.ndarray]], geoms: Sequence, split: Any,
                     conf: float = 0.001, iou: float = 0.7, max_det: int = 300, end2end: bool = False) -> PoseEval:
    """Post-process each image's raw outputs and score them against split (a helpers.tasks.pose.labels.PoseSplit: truth,
    names, kpt_shape, sigmas) with val-style defaults: conf 0.001, IoU 0.7, max_det 300, every class above conf."""
    poses = [postprocess(o, lb, split.kpt_shape, conf=conf, iou=iou, max_det=max_det, multi_label=True, end2end=end2end)
             for o, lb in zip(outputs, geoms)]
    tops = [top_score(o, lb.size, split.kpt_shape) for o, lb in zip(outputs, geoms)]
    kps = keypoint_matching(split.truth, poses, split.names, split.sigmas, max_det)
    return PoseEval(name, poses, _metric(split.truth, poses, split.names, split.sigmas, max_det, kps), tops, kps)


def predictions_json(poses: Sequence[Poses]) -> list[dict[str, list]]:
    """Each image's poses as eval/detections.json stores them: boxes (xyxy, 0.01 px), scores, classes, and keypoints
    [n, K, 3] (x, y to 0.01 px, visibility score to 0.001)."""
    out = []
    for p in poses:
        kp = np.asarray(p.keypoints, np.float64).reshape(len(p), -1, 3) if len(p) else np.zeros((0, 0, 3))  # none found
        kp = np.concatenate([np.round(kp[..., :2], 2), np.round(kp[..., 2:], 3)], axis=-1)
        out.append({"boxes": np.round(p.boxes, 2).tolist(), "scores": np.round(p.scores, 4).tolist(),
                    "classes": np.asarray(p.classes).tolist(), "keypoints": kp.tolist()})
    return out
