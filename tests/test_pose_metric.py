"""helpers/tasks/pose/metric.py: pycocotools' OKS AP on hand-made cases whose answer is known, with the data's sigmas."""
from __future__ import annotations

import numpy as np
import pytest

from helpers.tasks.pose.metric import AREA_OF_BOX, PoseTruth, coco_pose_map
from helpers.tasks.pose.postprocess import Poses

NAMES = ["figure", "dog"]
SIGMAS = [0.05, 0.05, 0.05]


def _truth() -> list[PoseTruth]:
    k1 = np.array([[20, 15, 2], [25, 40, 2], [30, 70, 1]], np.float32)
    k2 = np.array([[80, 30, 2], [90, 50, 2], [0, 0, 0]], np.float32)  # third keypoint outside the frame
    k3 = np.array([[40, 60, 2], [50, 70, 2], [60, 80, 2]], np.float32)
    return [PoseTruth(np.array([[10, 10, 40, 80], [70, 20, 110, 60]], np.float32), np.array([0, 0]), np.stack([k1, k2]),
                      100, 120),
            PoseTruth(np.array([[30, 50, 70, 90]], np.float32), np.array([1]), k3[None], 100, 120),
            PoseTruth(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros((0, 3, 3), np.float32), 100, 120)]


def _perfect(truth: list[PoseTruth], shift: float = 0.0) -> list[Poses]:
    out = []
    for t in truth:
        kp = t.keypoints.copy()
        kp[..., 0] += shift
        kp[..., 2] = 0.9
        out.append(Poses(t.boxes.copy(), np.full(len(t.classes), 0.9, np.float32), t.classes.copy(), kp))
    return out


def _shift_for_oks(truth: list[PoseTruth], oks: float, sigmas=SIGMAS) -> list[float]:
    """The x shift of every keypoint that gives each figure exactly this OKS (pycocotools' formula, box area x 0.53)."""
    shifts = []
    for t in truth:
        for b in t.boxes:
            area = (b[2] - b[0]) * (b[3] - b[1]) * AREA_OF_BOX
            shifts.append(float(np.sqrt(-np.log(oks) * 2 * area * (2 * sigmas[0]) ** 2)))
    return shifts


def test_perfect_predictions_score_one():
    truth = _truth()
    m = coco_pose_map(truth, _perfect(truth), NAMES, SIGMAS)
    assert m.map50_95 == pytest.approx(1.0) and m.map50 == pytest.approx(1.0)
    assert m.box.map50_95 == pytest.approx(1.0)
    assert set(m.per_class) == {"figure", "dog"} and (m.images, m.instances, m.detections) == (3, 3, 3)


def test_moved_keypoints_cost_what_oks_says():
    """Keypoints moved so that every figure has OKS 0.72: a hit at thresholds 0.50..0.70, a miss from 0.75 up, so
    mAP50-95 = 5/10 and mAP50 = 1, while the boxes (not moved) keep box mAP 1."""
    truth = _truth()
    preds = _perfect(truth)
    shifts = iter(_shift_for_oks(truth, 0.72))
    for p in preds:
        for kp in p.keypoints:
            kp[:, 0] += next(shifts)
    m = coco_pose_map(truth, preds, NAMES, SIGMAS)
    assert m.map50_95 == pytest.approx(0.5, abs=1e-6) and m.map50 == pytest.approx(1.0)
    assert m.box.map50_95 == pytest.approx(1.0)


def test_sigmas_are_the_ones_given():
    """The same 3 px error scores higher with wider sigmas, and a keypoint's own sigma decides what its error costs."""
    truth = _truth()
    preds = _perfect(truth, shift=3.0)
    tight = coco_pose_map(truth, preds, NAMES, [0.03] * 3).map50_95
    loose = coco_pose_map(truth, preds, NAMES, [0.1] * 3).map50_95
    assert tight < loose < 1.0
    assert coco_pose_map(truth, preds, NAMES, [0.03] * 3).sigmas == [0.03] * 3
    # only the second keypoint moved: its sigma matters, the first's does not
    one = _perfect(truth)
    for p in one:
        p.keypoints[:, 1, 0] += 4.0
    its_own_tight = coco_pose_map(truth, one, NAMES, [0.2, 0.03, 0.2]).map50_95
    assert its_own_tight < coco_pose_map(truth, one, NAMES, [0.03, 0.2, 0.03]).map50_95


def test_unlabelled_keypoints_do_not_count_and_occluded_ones_do():
    truth = _truth()
    moved = _perfect(truth)
    moved[0].keypoints[1, 2, :2] = [5, 5]  # the second figure's third keypoint is unlabelled (v = 0): anywhere is fine
    assert coco_pose_map(truth, moved, NAMES, SIGMAS).map50_95 == pytest.approx(1.0)
    moved[0].keypoints[0, 2, :2] = [100, 5]  # the first figure's third keypoint is occluded (v = 1): it is scored
    assert coco_pose_map(truth, moved, NAMES, SIGMAS).map50_95 < 1.0


def test_bad_inputs_are_one_sentence():
    truth = _truth()
    with pytest.raises(ValueError, match=r"^2 prediction sets for 3 labelled images; pass one Poses per image, in the same "
                                         r"order\.$"):
        coco_pose_map(truth, _perfect(truth)[:2], NAMES, SIGMAS)
    with pytest.raises(ValueError, match=r"^Keypoints per figure \[3\] differ from the 17 OKS sigmas; pass one sigma per "
                                         r"keypoint \(the data\.yaml's kpt_oks_sigmas\)\.$"):
        coco_pose_map(truth, _perfect(truth), NAMES, [0.05] * 17)


def _noisy(truth: list[PoseTruth], seed: int = 0) -> list[Poses]:
    """Poses of mixed quality: keypoints moved by random pixels, scores random, one false positive."""
    rng = np.random.default_rng(seed)
    out = _perfect(truth)
    for p in out:
        p.keypoints[..., :2] += rng.normal(0, 2.5, p.keypoints[..., :2].shape)
        p.scores[:] = rng.uniform(0.2, 1, len(p))
    out[2] = Poses(np.array([[0, 0, 30, 30]], np.float32), np.array([0.95], np.float32), np.array([1]),
                   np.array([[[5, 5, 1], [10, 10, 1], [15, 15, 1]]], np.float32))
    return out


def test_a_selection_of_images_scores_as_coco_pose_map_on_those_images():
    """pose_map_of_images (match once, re-accumulate per selection) is coco_pose_map's OKS mAP50-95 exactly: on all
    images, and on a selection with repeats as on the duplicated lists."""
    from helpers.tasks.pose.metric import pose_map_of_images

    truth = _truth() * 3
    preds = _noisy(truth)
    score = pose_map_of_images(truth, preds, NAMES, SIGMAS, max_det=100)
    whole = coco_pose_map(truth, preds, NAMES, SIGMAS).map50_95
    assert 0.1 < whole < 0.95 and score(np.arange(len(truth))) == whole
    for idx in (np.array([0, 0, 1, 5, 5, 2]), np.array([4, 4]), np.random.default_rng(1).integers(0, len(truth), 10)):
        want = coco_pose_map([truth[i] for i in idx], [preds[i] for i in idx], NAMES, SIGMAS).map50_95
        assert score(idx) == pytest.approx(want, abs=1e-12), idx


def test_paired_pose_map_judges_keypoints_by_the_one_noise_rule():
    """Keypoints moved to OKS 0.72 on every figure are measurably worse (-50 pt); the same poses are within noise, 0."""
    from helpers.tasks.pose.metric import paired_pose_map

    truth = _truth() * 4
    moved = _perfect(truth)
    shifts = iter(_shift_for_oks(truth, 0.72))
    for p in moved:
        for kp in p.keypoints:
            kp[:, 0] += next(shifts)
    same = paired_pose_map(truth, _perfect(truth), _perfect(truth), NAMES, SIGMAS, resamples=10)
    assert same.difference_pt == 0.0 and same.verdict == "within noise"
    worse = paired_pose_map(truth, _perfect(truth), moved, NAMES, SIGMAS, resamples=10)
    assert worse.difference_pt == pytest.approx(-50.0, abs=1e-6) and worse.verdict == "worse"


def test_predictions_json_rounds_keypoints():
    import json

    from helpers.tasks.pose.metric import predictions_json

    preds = _noisy(_truth())
    saved = predictions_json(preds)
    assert json.loads(json.dumps(saved)) == saved
    assert np.asarray(saved[0]["keypoints"]).shape == (2, 3, 3)
    assert np.allclose(saved[0]["keypoints"], preds[0].keypoints, atol=0.01)
    assert np.asarray(saved[2]["keypoints"]).shape == (1, 3, 3) and saved[2]["classes"] == [1]
