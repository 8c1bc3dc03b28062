"""helpers/tasks/detect/metric.py: pycocotools' COCO AP on hand-made cases whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from helpers.tasks.detect.metric import GroundTruth, coco_map
from helpers.tasks.detect.postprocess import Detections

NAMES = ["circle", "square", "triangle"]
TRUTH = [
    GroundTruth(np.array([[10, 10, 40, 40], [60, 20, 90, 60]], np.float32), np.array([0, 1]), 100, 120),
    GroundTruth(np.array([[5, 50, 35, 95]], np.float32), np.array([0]), 100, 120),
    GroundTruth(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), 100, 120),  # background image
]


def _dets(boxes, classes, scores=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Detections(boxes, np.asarray(scores if scores is not None else [0.9] * len(boxes), np.float32),
                      np.asarray(classes, np.int64))


def test_perfect_detections_score_one_and_unlabelled_classes_are_left_out():
    preds = [_dets(t.boxes, t.classes) for t in TRUTH]
    m = coco_map(TRUTH, preds, NAMES)
    assert m.map50_95 == pytest.approx(1.0) and m.map50 == pytest.approx(1.0)
    assert set(m.per_class) == {"circle", "square"}  # no triangle is labelled anywhere
    assert (m.images, m.instances, m.detections) == (3, 3, 3)


def test_wrong_class_and_loose_boxes_cost_what_coco_says():
    wrong_class = [_dets(TRUTH[0].boxes, [1, 1]), _dets(TRUTH[1].boxes, [0]), _dets([], [])]
    m = coco_map(TRUTH, wrong_class, NAMES)
    assert m.per_class["circle"] == pytest.approx(0.5, abs=0.01)  # one of two circles found, at precision 1
    # a box of IoU 0.577 with its truth: a hit at 0.50 and 0.55, a miss from 0.60 up (2 of 10 thresholds)
    loose = np.array([[10, 10, 40, 40 + 22]], np.float32)  # 30x52 around a 30x30 truth: IoU 900/1560
    m = coco_map([TRUTH[0]], [_dets(np.vstack([loose, TRUTH[0].boxes[1:]]), [0, 1])], NAMES)
    assert m.per_class50["circle"] == pytest.approx(1.0)
    assert m.per_class["circle"] == pytest.approx(0.2, abs=0.01)


def test_false_positives_below_true_ones_do_not_lower_ap_above_them():
    extra = [_dets(np.vstack([TRUTH[0].boxes, [[100, 80, 110, 95]]]), [0, 1, 0], [0.9, 0.9, 0.1]), _dets(TRUTH[1].boxes, [0]),
             _dets([], [])]
    assert coco_map(TRUTH, extra, NAMES).map50_95 == pytest.approx(1.0)


def test_mismatched_lengths_are_one_sentence():
    with pytest.raises(ValueError, match=r"^2 prediction sets for 3 labelled images; pass one Detections per image, in "
                                         r"the same order\.$"):
        coco_map(TRUTH, [_dets([], [])] * 2, NAMES)


def test_paired_map_judges_by_the_one_noise_rule_and_the_verdict_quotes_it():
    """mAP50-95 of one detector against another on the same images: a paired bootstrap (helpers.tasks.noise); the
    detect metrics.json's verdict sentence quotes its interval word for word."""
    from helpers.steps.detect_eval import verdict
    from helpers.tasks.detect.metric import paired_map

    truth = TRUTH[:2] * 10  # 20 labelled images
    perfect = [_dets(t.boxes, t.classes) for t in truth]
    same = paired_map(truth, perfect, perfect, NAMES, resamples=10)
    assert same.verdict == "within noise" and same.difference_pt == 0.0 and "10 resamples" in same.method
    missed = [_dets(np.zeros((0, 4)), []) for _ in truth]
    lost = paired_map(truth, perfect, missed, NAMES, resamples=10)
    assert lost.difference_pt == pytest.approx(-100.0) and lost.verdict == "worse"
    rows = [{"name": "FP32 split head", "head": "split", "precision": "FP32", "map50_95": 1.0, "map50": 1.0, "paired": None},
            {"name": "INT8 split head", "head": "split", "precision": "INT8", "map50_95": 0.0, "map50": 0.0,
             "paired": lost.to_dict()}]
    line = verdict({"head": "split", "backends": rows})
    assert line.startswith("INT8 RKNN simulator (split head): mAP50-95 0.000 vs FP32 1.000: ") and lost.text in line


def test_a_selection_of_images_scores_as_coco_map_on_those_images():
    """map_of_images (the bootstrap's fast path: match once, re-accumulate per resample) gives exactly coco_map's
    mAP50-95 on any selection, repeated images included."""
    from helpers.tasks.detect.metric import map_of_images

    rng = np.random.default_rng(0)
    truth = TRUTH * 4
    preds = [_dets(np.asarray(t.boxes) + rng.normal(0, 3, np.shape(t.boxes)), t.classes, rng.uniform(0.2, 1, len(t.classes)))
             for t in truth]
    preds[1] = _dets([[0, 0, 20, 20]], [2], [0.95])  # a false positive of a class labelled nowhere
    score = map_of_images(truth, preds, NAMES)
    for idx in (np.arange(len(truth)), np.array([0, 0, 1, 5, 5, 5, 2]), np.array([2, 2]), rng.integers(0, len(truth), 12)):
        want = coco_map([truth[i] for i in idx], [preds[i] for i in idx], NAMES, max_det=300).map50_95
        assert score(idx) == pytest.approx(want, abs=1e-12), idx
