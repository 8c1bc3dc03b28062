"""helpers.tasks.segment.judge on hand-made raw outputs: a seg model is judged by mask mAP50-95 with box mAP50-95 beside
it, so masks that INT8 spoils while the boxes hold show up as a drop in the metric, not in the agreement column."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers.tasks import measures
from helpers.tasks.detect.postprocess import letterbox_geometry
from helpers.tasks.segment.judge import SegmentJudge
from helpers.tasks.segment.labels import SegmentationSplit
from helpers.tasks.segment.metric import SegmentTruth

SIZE, ANCHORS, NAMES = 64, 8, ["disc", "star"]


def _case(images: int = 12) -> tuple[SegmentationSplit, list]:
    """images 64x64 with one rectangle each (its box and mask), and the stock outputs that find it exactly: one
    anchor with the box and class score 0.9, coefficient 1 on a prototype of +10 everywhere (the box crop is the mask)."""
    rng = np.random.default_rng(0)
    truth, outputs = [], []
    for i in range(images):
        x1, y1 = (int(v) for v in rng.integers(2, 30, 2))
        x2, y2 = x1 + int(rng.integers(12, 30)), y1 + int(rng.integers(12, 30))
        mask = np.zeros((1, SIZE, SIZE), bool)
        mask[0, y1:y2, x1:x2] = True
        cls = i % 2
        truth.append(SegmentTruth(np.array([[x1, y1, x2, y2]], np.float32), np.array([cls]), mask, SIZE, SIZE))
        pred = np.zeros((4 + len(NAMES) + 1, ANCHORS), np.float32)
        pred[:4, 0] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
        pred[4 + cls, 0], pred[-1, 0] = 0.9, 1.0
        outputs.append([pred[None], np.full((1, 1, SIZE // 4, SIZE // 4), 10.0, np.float32)])
    paths = [Path(f"{i}.png") for i in range(images)]
    return SegmentationSplit(paths, truth, NAMES), outputs


def _judge(split: SegmentationSplit, outputs: list, **decode) -> SegmentJudge:
    return SegmentJudge.of(split.paths, np.zeros((len(split), SIZE, SIZE, 3), np.uint8), outputs, split,
                           [letterbox_geometry(SIZE, SIZE, SIZE)] * len(split), decode)


def _holed(outputs: list) -> list:
    """The same boxes with prototypes negative over the right half of the image: the masks reaching into it lose pixels."""
    protos = np.full((1, 1, SIZE // 4, SIZE // 4), 10.0, np.float32)
    protos[..., SIZE // 8:] = -10.0
    return [[o[0].copy(), protos] for o in outputs]


def test_the_judge_names_mask_map_and_scores_fp32_as_the_labels_say():
    split, outputs = _case()
    judge = _judge(split, outputs)
    assert (judge.task, judge.key, judge.label, judge.agreement_key) == ("segment", "mask_map50_95", "mask mAP50-95",
                                                                         "box_map50_95")
    assert judge.fp32.value == pytest.approx(1.0) and judge.fp32.agreement == pytest.approx(1.0)
    assert judge.text(0.5) == "0.500" and measures.metric_heading(judge.label) == "Mask mAP50-95"
    assert judge.step_pt() is None and judge.matching(outputs) is judge.matching(outputs)  # matched once
    assert _judge(split, outputs, end2end=True).fp32.value == pytest.approx(1.0)  # the decode keywords reach postprocess


def test_spoilt_masks_cost_mask_map_not_box_map_and_the_verdict_says_worse():
    split, outputs = _case()
    judge = _judge(split, outputs)
    holed = _holed(outputs)
    score = judge.score(holed)
    assert score.value < 0.8 and score.agreement == pytest.approx(1.0) and score.mean_cosine < 1.0
    row = score.row(judge)
    assert row["mask_map50_95_delta_pt"] < -20 and row["box_map50_95"] == pytest.approx(1.0)
    assert measures.metric_in({**row, "map50_95": 1.0}) == "mask_map50_95"  # the task's own metric, not the box column
    worse = judge.paired(holed)
    assert worse.verdict == "worse" and worse.difference_pt == pytest.approx(row["mask_map50_95_delta_pt"], abs=0.01)
    same = judge.paired(outputs)
    assert same.difference_pt == 0.0 and same.verdict == "within noise"
    back = judge.paired(outputs, reference=holed)  # against another reference: the sign turns
    assert back.verdict == "better" and back.difference_pt == pytest.approx(-worse.difference_pt)


def test_the_judge_scores_as_notebook_30s_evaluation():
    """The judge's FP32 figures are what segment.metric.evaluate_outputs (notebook 30's measurement) gives, and the paired
    verdict from two evaluations' matchings is the judge's."""
    from helpers.tasks.detect.metric import paired_matchings
    from helpers.tasks.segment.metric import evaluate_outputs

    split, outputs = _case()
    judge = _judge(split, _holed(outputs))
    theirs = evaluate_outputs("FP32", _holed(outputs), judge.geoms, split)
    assert (judge.fp32.value, judge.fp32.agreement) == (theirs.metric.mask.map50_95, theirs.metric.box.map50_95)
    other = evaluate_outputs("other", outputs, judge.geoms, split)
    assert paired_matchings(theirs.matching, other.matching, resamples=10) == judge.paired(outputs, resamples=10)
    assert judge.score(outputs).value == pytest.approx(1.0) and judge.matching(outputs) is judge.matching(outputs)
