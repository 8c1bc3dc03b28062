"""COCO segm + bbox mAP (pycocotools, RLE masks): perfect masks score 1, masks moved off their objects score less even
when the boxes stay perfect (segm judges the masks, not the boxes)."""
from __future__ import annotations

import numpy as np
import pytest

from helpers.tasks.segment.metric import SegmentTruth, coco_segment_map
from helpers.tasks.segment.postprocess import Segmentation
from helpers.tasks.segment.sample import CLASSES, make_image


def _truth(n: int = 6) -> list[SegmentTruth]:
    rng = np.random.default_rng(11)
    out = []
    for _ in range(n):
        _, labels = make_image(rng, 160, 120, 4)
        masks = np.stack([m for _, _, m in labels])
        boxes = np.array([[np.nonzero(m)[1].min(), np.nonzero(m)[0].min(), np.nonzero(m)[1].max() + 1,
                           np.nonzero(m)[0].max() + 1] for m in masks], np.float32)
        out.append(SegmentTruth(boxes, np.array([c for c, _, _ in labels], np.int64), masks, 120, 160))
    return out


def _predict(truth: list[SegmentTruth], shift: int = 0) -> list[Segmentation]:
    """The truth as predictions (score 0.9), masks rolled `shift` pixels to the right, boxes left where they are."""
    return [Segmentation(t.boxes.copy(), np.full(len(t.classes), 0.9, np.float32), t.classes.copy(),
                         np.roll(t.masks, shift, axis=2)) for t in truth]


def test_perfect_predictions_score_one():
    truth = _truth()
    m = coco_segment_map(truth, _predict(truth), CLASSES)
    assert m.mask.map50_95 == pytest.approx(1.0) and m.mask.map50 == pytest.approx(1.0)
    assert m.box.map50_95 == pytest.approx(1.0) and m.map50_95 == m.mask.map50_95
    assert m.mask.instances == sum(len(t.classes) for t in truth) == m.mask.detections


def test_shifted_masks_lose_mask_map_not_box_map():
    truth = _truth()
    scores = [coco_segment_map(truth, _predict(truth, shift), CLASSES) for shift in (0, 2, 5)]
    masks = [s.mask.map50_95 for s in scores]
    assert masks[0] > masks[1] > masks[2] and masks[2] < 0.8
    assert all(s.box.map50_95 == pytest.approx(1.0) for s in scores)


def test_no_predictions_scores_zero_and_mismatches_are_named():
    truth = _truth(2)
    empty = [Segmentation(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), np.zeros((0, 120, 160), bool))] * 2
    assert coco_segment_map(truth, empty, CLASSES).mask.map50_95 == 0.0
    with pytest.raises(ValueError, match="1 prediction sets for 2"):
        coco_segment_map(truth, empty[:1], CLASSES)
    small = [Segmentation(t.boxes, np.ones(len(t.classes)), t.classes, t.masks[:, ::2, ::2]) for t in truth]
    with pytest.raises(ValueError, match="original image"):
        coco_segment_map(truth, small, CLASSES)
