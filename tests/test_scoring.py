"""helpers.tasks.scoring without a model: which column a table's metric is, how values read, the per-image output
cosine, and a classifier judge's top-1, agreement and noise on hand-made outputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.steps import judge as judging
from helpers.tasks import measures
from helpers.tasks.classify.judge import ClassifyJudge


def test_metric_column_is_found_in_tables_rows_and_records():
    assert measures.metric_in(pd.DataFrame(columns=["model", "map50_95", "mean_cosine"]).columns) == "map50_95"
    assert measures.metric_in({"model": "INT8", "top1": 0.9, "map50_95": 0.5}) == "top1"  # the precedence of METRIC_LABELS
    assert measures.metric_in(["model", "mean_cosine"]) is None and measures.metric_in(None) is None
    assert measures.metric_text("top1", 0.98333) == "98.33%" and measures.metric_text("map50_95", 0.7123) == "0.712"


def test_output_cosine_flattens_every_output_of_an_image():
    a = [[np.ones((1, 2)), np.ones((1, 2))], [np.array([[1.0, 0.0]]), np.array([[0.0]])]]
    b = [[np.ones((1, 2)), -np.ones((1, 2))], [np.array([[0.0, 1.0]]), np.array([[0.0]])]]
    assert measures.output_cosines(a, b) == pytest.approx([0.0, 0.0])
    assert measures.output_cosines(a, a) == pytest.approx([1.0, 1.0])
    assert measures.output_cosines([[np.zeros((1, 3))]], [[np.ones((1, 3))]]) == pytest.approx([0.0])  # all zeros: 0, not NaN


def _judge(fp32_scores: np.ndarray, labels: list[int]) -> ClassifyJudge:
    outs = [[s[None].astype(np.float32)] for s in fp32_scores]
    return ClassifyJudge("classify", "top1", "top-1", "top1_agreement", [Path(f"{i}.png") for i in range(len(labels))],
                                 np.zeros((len(labels), 2, 2, 3), np.uint8), outs, labels=np.asarray(labels))


def test_classify_judge_scores_top1_agreement_and_noise():
    fp32 = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])
    judge = _judge(fp32, [0, 1, 1, 0])
    assert judge.fp32.value == 0.75 and judge.fp32.agreement == 1.0 and judge.fp32.mean_cosine == 1.0
    other = [[np.array([[0.1, 0.9]], np.float32)], [np.array([[0.2, 0.8]], np.float32)], [np.array([[0.3, 0.7]], np.float32)],
             [np.array([[0.6, 0.4]], np.float32)]]
    s = judge.score(other)
    assert s.value == 0.75 and s.agreement == 0.5  # images 0 and 2 changed class: one became right, one wrong
    row = s.row(judge)
    assert row == {"top1": 0.75, "top1_delta_pt": 0.0, "mean_cosine": pytest.approx(s.mean_cosine),
                   "min_cosine": pytest.approx(s.min_cosine),
                   "top1_agreement": 0.5}
    assert judge.step_pt() == 25.0
    assert judge.text(0.75) == "75.00%"
    with pytest.raises(ValueError, match="3 output sets for 4 images"):
        judge.score(other[:3])


def test_analysis_inputs_needs_an_image():
    judge = _judge(np.array([[0.9, 0.1]]), [0])
    with pytest.raises(Exception, match=r"analysis_images=0 gives accuracy_analysis no image; use 1 or more"):
        judging.analysis_inputs(judge, 0, Path("unused"))
    assert judging.analysis_inputs(judge, 3, Path("unused")) == [Path("0.png")]  # a classifier's own files, no copies
