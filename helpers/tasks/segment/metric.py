"""COCO mask and box mAP with pycocotools (`segm` on RLE-encoded masks, `bbox` on the same detections): what
rknn_model_zoo's seg demos and ultralytics' COCO evaluation report; the paired bootstrap of mask mAP50-95 and the
decode-and-score of raw outputs notebook 30 runs per backend."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from helpers.tasks.detect.metric import DetectMetric, GroundTruth, Matching, coco_map, match, paired_matchings
from helpers.tasks.detect.postprocess import Detections
from helpers.tasks.noise import Paired
from helpers.tasks.segment.postprocess import Segmentation, decode, postprocess

MASK_SCORE = 0.25  # predictions_json keeps the masks of detections scoring at least this (the ones pictures draw)


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
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    """encode's record back to a bool [h, w] mask."""
    return mask_utils.decode({"size": list(rle["size"]), "counts": str(rle["counts"]).encode("ascii")}).astype(bool)


def _xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def mask_records(truth: Sequence[SegmentTruth], predictions: Sequence[Segmentation]) -> tuple[list, list, list]:
    """COCO images, mask annotations and mask results (RLE at the original image size) of labelled images and their
    segmentations (same order); masks of another size are refused in one sentence."""
    if len(truth) != len(predictions):
        raise ValueError(f"{len(predictions)} prediction sets for {len(truth)} labelled images; pass one Segmentation per "
                         "image, in the same order.")
    images, annotations, results = [], [], []
    for i, (gt, det) in enumerate(zip(truth, predictions)):
        images.append({"id": i, "height": int(gt.height), "width": int(gt.width)})
        if len(det) and tuple(det.masks.shape[1:]) != (gt.height, gt.width):
            raise ValueError(f"Image {i}: masks of {det.masks.shape[1:]} pixels for a {gt.height}x{gt.width} image; map the "
                             "masks back to the original image (postprocess does).")
        for box, cls, mask in zip(_xywh(gt.boxes), gt.classes, gt.masks):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(cls), "bbox": box.tolist(),
                                "area": float(mask.sum()), "iscrowd": 0, "segmentation": encode(mask)})
        for cls, score, mask in zip(det.classes, det.scores, det.masks):
            results.append({"image_id": i, "category_id": int(cls), "score": float(score), "segmentation": encode(mask)})
    return images, annotations, results


def mask_matching(truth: Sequence[SegmentTruth], predictions: Sequence[Segmentation], names: Sequence[str],
                  max_det: int = 300) -> Matching:
    """pycocotools' segm matching of the masks, once (helpers.tasks.detect.metric.match)."""
    return match(*mask_records(truth, predictions), names, "segm", max_det)


def coco_segment_map(truth: Sequence[SegmentTruth], predictions: Sequence[Segmentation], names: Sequence[str],
                     max_det: int = 100) -> SegmentMetric:
    """Evaluate predictions against truth (same image order) with pycocotools' COCOeval: `segm` on RLE masks at the
    original image size, and `bbox` on the same detections (at most max_det per image)."""
    return _metric(truth, predictions, names, max_det, mask_matching(truth, predictions, names, max_det))


def _metric(truth: Sequence[SegmentTruth], predictions: Sequence[Segmentation], names: Sequence[str], max_det: int,
            masks: Matching) -> SegmentMetric:
    """The mask figures of a segm matching and the box figures of the same predictions."""
    box = coco_map([GroundTruth(t.boxes, t.classes, t.height, t.width) for t in truth],
                   [Detections(p.boxes, p.scores, p.classes) for p in predictions], names, max_det=max_det)
    return SegmentMetric(mask=masks.metric(names), box=box)


def mask_map_of_images(truth: Sequence[SegmentTruth], predictions: Sequence[Segmentation], names: Sequence[str],
                       max_det: int = 300) -> Callable[[np.ndarray], float]:
    """Mask mAP50-95 of any selection of these images (indices, repeats allowed), equal to coco_segment_map's on that
    selection: matched once, re-accumulated per selection."""
    return mask_matching(truth, predictions, names, max_det).map_of


def paired_segment_map(truth: Sequence[SegmentTruth], reference: Sequence[Segmentation], other: Sequence[Segmentation],
                       names: Sequence[str], resamples: int = 50, seed: int = 0, max_det: int = 300) -> Paired:
    """other's mask mAP50-95 minus reference's on the same images, by the workbook's one noise rule (a paired bootstrap
    over the images, each resample re-accumulating one segm matching per model)."""
    return paired_matchings(mask_matching(truth, reference, names, max_det), mask_matching(truth, other, names, max_det),
                            resamples, seed)


@dataclass
class SegmentEval:
    """Segmentations per image, their COCO metric and each image's top class score for one backend, with the mask
    matching a paired verdict against another backend re-accumulates (keep it, not the full-size masks:
    paired_matchings)."""

    name: str
    segmentations: list[Segmentation]
    metric: SegmentMetric
    top_scores: list[float]
    matching: Matching | None = field(default=None, repr=False)


def top_score(outputs: Sequence[np.ndarray], input_size: int) -> float:
    """The highest class score anywhere in one image's raw outputs (the number the INT8 pitfall wrecks)."""
    scores = decode(outputs, input_size)[1]
    return float(scores.max()) if scores.size else 0.0


def evaluate_outputs(name: str, outputs: Sequence[Sequence[np.ndarray]], geoms: Sequence, split: Any, conf: float = 0.001,
                     iou: float = 0.7, max_det: int = 300, end2end: bool = False) -> SegmentEval:
    """Post-process each image's raw outputs and score them against split (a helpers.tasks.segment.labels
    .SegmentationSplit) with val-style defaults: conf 0.001, IoU 0.7, max_det 300, every class above conf per box."""
    segs = [postprocess(o, lb, conf=conf, iou=iou, max_det=max_det, multi_label=True, end2end=end2end)
            for o, lb in zip(outputs, geoms)]
    tops = [top_score(o, lb.size) for o, lb in zip(outputs, geoms)]
    masks = mask_matching(split.truth, segs, split.names, max_det)
    return SegmentEval(name, segs, _metric(split.truth, segs, split.names, max_det, masks), tops, masks)


def predictions_json(segmentations: Sequence[Segmentation], mask_score: float = MASK_SCORE) -> list[dict[str, list]]:
    """Each image's segmentations as eval/detections.json stores them: boxes (xyxy, 0.01 px), scores, classes, and
    masks as RLE (encode) for the detections scoring at least mask_score, None for the rest (val-style decoding keeps
    hundreds of faint ones per image that no picture draws)."""
    return [{"boxes": np.round(s.boxes, 2).tolist(), "scores": np.round(s.scores, 4).tolist(),
             "classes": np.asarray(s.classes).tolist(),
             "masks": [encode(m) if score >= mask_score else None for m, score in zip(s.masks, s.scores)]}
            for s in segmentations]
