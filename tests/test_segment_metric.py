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


def _noisy(truth: list[SegmentTruth], seed: int = 0) -> list[Segmentation]:
    """Predictions of mixed quality: masks rolled 0..4 px, some objects missed, one false positive of another class."""
    rng = np.random.default_rng(seed)
    out = []
    for t in truth:
        keep = rng.random(len(t.classes)) < 0.85
        masks = np.stack([np.roll(m, int(rng.integers(0, 5)), axis=1) for m in t.masks[keep]]) if keep.any() else t.masks[:0]
        out.append(Segmentation(t.boxes[keep], rng.uniform(0.2, 1, int(keep.sum())).astype(np.float32), t.classes[keep], masks))
    fp = np.zeros((1, 120, 160), bool)
    fp[0, 5:25, 5:25] = True
    out[1] = Segmentation(np.array([[5, 5, 25, 25]], np.float32), np.array([0.95], np.float32), np.array([1]), fp)
    return out


def test_a_selection_of_images_scores_as_coco_segment_map_on_those_images():
    """mask_map_of_images (the bootstrap's fast path: match once, re-accumulate per selection) is coco_segment_map's mask
    mAP50-95 exactly: on all images, and on a selection with repeats as on the duplicated lists."""
    from helpers.tasks.segment.metric import mask_map_of_images

    truth = _truth(8)
    preds = _noisy(truth)
    score = mask_map_of_images(truth, preds, CLASSES, max_det=100)
    whole = coco_segment_map(truth, preds, CLASSES).map50_95
    assert 0.2 < whole < 0.95 and score(np.arange(len(truth))) == whole
    for idx in (np.array([0, 0, 1, 5, 5, 5, 2]), np.array([3, 3]), np.random.default_rng(1).integers(0, len(truth), 10)):
        want = coco_segment_map([truth[i] for i in idx], [preds[i] for i in idx], CLASSES).map50_95
        assert score(idx) == pytest.approx(want, abs=1e-12), idx


def test_paired_segment_map_judges_masks_by_the_one_noise_rule():
    """Masks moved off their objects on every image are measurably worse; the same predictions are within noise, 0."""
    from helpers.tasks.segment.metric import paired_segment_map

    truth = _truth(12)
    same = paired_segment_map(truth, _predict(truth), _predict(truth), CLASSES, resamples=10)
    assert same.difference_pt == 0.0 and same.verdict == "within noise" and same.images == 12
    moved = paired_segment_map(truth, _predict(truth), _predict(truth, 5), CLASSES, resamples=10)
    assert moved.difference_pt < -20 and moved.verdict == "worse"


def test_predictions_json_keeps_rle_masks_of_the_drawn_detections():
    from helpers.tasks.segment.metric import decode_rle, predictions_json

    truth = _truth(2)
    preds = _predict(truth)
    preds[0].scores[0] = 0.1  # below the pictures' score: its mask is left out
    saved = predictions_json(preds)
    assert saved[0]["masks"][0] is None and len(saved[0]["boxes"]) == len(truth[0].classes)
    assert all(np.array_equal(decode_rle(r), m) for r, m in zip(saved[1]["masks"], truth[1].masks))
    import json
    assert json.loads(json.dumps(saved)) == saved
