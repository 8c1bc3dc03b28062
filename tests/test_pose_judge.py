"""helpers.tasks.pose.judge on hand-made raw outputs: a pose model is judged by OKS mAP50-95 with the data's sigmas and
box mAP50-95 beside it, so keypoints that drift while the boxes hold show up as a drop in the metric."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers.tasks import measures
from helpers.tasks.detect.postprocess import letterbox_geometry
from helpers.tasks.pose.judge import PoseJudge
from helpers.tasks.pose.labels import PoseSplit
from helpers.tasks.pose.metric import PoseTruth

SIZE, ANCHORS, K, NAMES, SIGMAS = 64, 8, 3, ["figure"], [0.05, 0.05, 0.05]


def _case(images: int = 12, shift: float = 0.0) -> tuple[PoseSplit, list]:
    """images 64x64 with one figure each, and the stock outputs [1, 4 + 1 + 3K, anchors] that find it: one anchor with
    its box, score 0.9 and keypoints moved `shift` px to the right."""
    rng = np.random.default_rng(0)
    truth, outputs = [], []
    for _ in range(images):
        x1, y1 = (float(v) for v in rng.integers(2, 25, 2))
        x2, y2 = x1 + float(rng.integers(20, 35)), y1 + float(rng.integers(20, 35))
        kp = np.stack([rng.uniform(x1, x2, K), rng.uniform(y1, y2, K), np.full(K, 2.0)], 1).astype(np.float32)
        truth.append(PoseTruth(np.array([[x1, y1, x2, y2]], np.float32), np.array([0]), kp[None], SIZE, SIZE))
        pred = np.zeros((4 + len(NAMES) + 3 * K, ANCHORS), np.float32)
        pred[:4, 0] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
        pred[4, 0] = 0.9
        moved = kp.copy()
        moved[:, 0] += shift
        moved[:, 2] = 0.9
        pred[5:, 0] = moved.reshape(-1)
        outputs.append([pred[None]])
    split = PoseSplit([Path(f"{i}.png") for i in range(images)], truth, NAMES, kpt_shape=(K, 3), sigmas=SIGMAS)
    return split, outputs


def _judge(split: PoseSplit, outputs: list) -> PoseJudge:
    return PoseJudge.of(split.paths, np.zeros((len(split), SIZE, SIZE, 3), np.uint8), outputs, split,
                        [letterbox_geometry(SIZE, SIZE, SIZE)] * len(split))


def test_the_judge_names_pose_map_and_scores_fp32_as_the_labels_say():
    split, outputs = _case()
    judge = _judge(split, outputs)
    assert (judge.task, judge.key, judge.label, judge.agreement_key) == ("pose", "pose_map50_95", "pose mAP50-95",
                                                                         "box_map50_95")
    assert judge.fp32.value == pytest.approx(1.0) and judge.fp32.agreement == pytest.approx(1.0)
    assert judge.text(0.25) == "0.250" and measures.metric_heading(judge.label) == "Pose mAP50-95"
    assert judge.predictions(outputs)[0].keypoints.shape == (1, K, 3)  # kpt_shape comes from the split


def test_drifting_keypoints_cost_pose_map_not_box_map_and_the_verdict_says_worse():
    split, outputs = _case()
    judge = _judge(split, outputs)
    _, drifted = _case(shift=4.0)
    score = judge.score(drifted)
    assert score.value < 0.9 and score.agreement == pytest.approx(1.0)
    row = score.row(judge)
    assert row["pose_map50_95_delta_pt"] < -10 and measures.metric_in({**row, "map50_95": 1.0}) == "pose_map50_95"
    worse = judge.paired(drifted)
    assert worse.verdict == "worse" and worse.difference_pt == pytest.approx(row["pose_map50_95_delta_pt"], abs=0.01)
    assert judge.paired(outputs).verdict == "within noise"
    wide = PoseSplit(split.paths, split.truth, NAMES, kpt_shape=(K, 3), sigmas=[0.2] * K)  # the split's sigmas are used
    assert _judge(wide, outputs).score(drifted).value > score.value


def test_the_judge_scores_as_notebook_30s_evaluation():
    """The judge's FP32 figures are what pose.metric.evaluate_outputs (notebook 30's measurement) gives."""
    from helpers.tasks.pose.metric import evaluate_outputs

    split, drifted = _case(shift=3.0)
    judge = _judge(split, drifted)
    theirs = evaluate_outputs("FP32", drifted, judge.geoms, split)
    assert (judge.fp32.value, judge.fp32.agreement) == (theirs.metric.map50_95, theirs.metric.box.map50_95)
    assert theirs.top_scores == pytest.approx([0.9] * len(split))
