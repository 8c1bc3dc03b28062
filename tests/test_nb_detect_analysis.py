"""Notebook 50 on a detection run: the per-layer analysis on letterboxed inputs and the algorithm x method sweep
scored by COCO mAP50-95 through the task's judge (helpers.steps.judge), on the small shapes detector of tests/detect_support
(trained once per session). Notebook 50 runs under papermill with small parameters on a copy of the session's
detection series run (10 -> 40, tests/detect_support.detect_series); the assertions read what the run wrote:
sweep.csv in mAP, FP32 equal to notebook 30's on the same images, layers.csv, the demo calibration list, and the
sentences naming mAP with the paired bootstrap's interval."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import nbformat
import pandas as pd
import pytest
from detect_support import SMALL, continue_series, detect_series, tiny_detector  # noqa: F401  (session fixtures)

from helpers.toolkit.record import read_record

pytestmark = pytest.mark.slow
VAL_IMAGES = 20  # the whole val split of the small sample (100 images, 20% val); 30 and 50 score the same images
GRID = [["normal", "channel"], ["mmse", "layer"]]
DEMO = 2  # demo mode: notebook 50 calibrates on the first 2 images of notebook 20's (letterboxed) list


@pytest.fixture(scope="module")
def detect_analysis_run(detect_series, tiny_detector, tmp_path_factory) -> Path:  # noqa: F811 (the imported fixtures)
    """Notebook 50 on a copy of the session's detection series run (10 -> 40, tests/detect_support)."""
    params = {"50_accuracy_analysis": {"analysis_images": 1, "val_images": VAL_IMAGES, "sweep_grid": GRID,
                                       "demo_calib_images": DEMO, "batch": 4}}
    root = continue_series(detect_series, tmp_path_factory.mktemp("detect_analysis") / "run", tiny_detector, "50", params)
    assert json.loads((root / "eval" / "metrics.json").read_text())["images"] == VAL_IMAGES  # 30 scored the whole val split
    return root


def _markdown(executed: Path) -> str:
    nb = nbformat.read(executed, 4)
    return "\n".join(o.get("data", {}).get("text/markdown", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []))


def _fp32(root: Path) -> dict:
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    return next(r for r in metrics["backends"] if r["role"] == "fp32")


def test_judges_score_like_the_task_evaluations(detect_analysis_run):
    """The DetectJudge's FP32 mAP is what notebook 30's evaluation gives on the same images, and it survives
    the trip to the sweep's spawned worker (pickle)."""
    import numpy as np

    from helpers.core.paths import Run
    from helpers.steps.judge import judge_for
    from helpers.tasks.data import resolve_data_dir
    from helpers.tasks.detect.metric import evaluate_outputs
    from helpers.tasks.feeds import fp32_runner

    run = Run.at(detect_analysis_run)
    record = read_record(run)
    judge = judge_for(run, record, resolve_data_dir("", run), VAL_IMAGES)
    assert (judge.task, judge.key, judge.label, judge.images) == ("detect", "map50_95", "mAP50-95", VAL_IMAGES)
    outputs = fp32_runner(run.model / "model.onnx", record.config.mean_values, record.config.std_values).outputs(judge.pixels)
    theirs = evaluate_outputs("FP32", outputs, judge.geoms, judge.split).metric
    assert judge.fp32.value == theirs.map50_95 and judge.fp32.agreement == theirs.map50
    assert judge.fp32.value == pytest.approx(_fp32(detect_analysis_run)["map50_95"], abs=1e-9)
    copy = pickle.loads(pickle.dumps(judge))
    assert copy.score([[np.copy(o) for o in img] for img in outputs]).value == judge.fp32.value
    assert judge.step_pt() is None


def test_sweep_is_scored_by_map_against_notebook_30s_fp32(detect_analysis_run):
    from helpers.steps import analysis

    sweep = pd.read_csv(detect_analysis_run / "analysis" / "sweep.csv")
    assert list(sweep.columns) == ["algorithm", "method", "map50_95", "map50_95_delta_pt", "mean_cosine", "min_cosine", "map50",
                                   "build_s", "why", *analysis.PAIRED_COLUMNS, "log_names_algorithm", "same_outputs_as",
                                   "fp32_map50_95", "images", "calibration"]
    assert [list(x) for x in zip(sweep["algorithm"], sweep["method"])] == GRID
    fp32 = _fp32(detect_analysis_run)["map50_95"]
    assert sweep["fp32_map50_95"].tolist() == pytest.approx([fp32] * len(sweep), abs=1e-9)
    assert (sweep["images"] == VAL_IMAGES).all()
    assert sweep["map50_95"].between(0.05, 1).all() and sweep["map50"].between(sweep["map50_95"], 1).all()
    assert sweep["map50_95_delta_pt"].tolist() == pytest.approx((100 * (sweep["map50_95"] - fp32)).tolist(), abs=0.006)
    assert sweep["mean_cosine"].between(0.9, 1).all() and (sweep["min_cosine"] <= sweep["mean_cosine"]).all()
    assert (sweep["build_s"] > 0).all() and set(sweep["calibration"]) == {f"demo: {DEMO} image(s)"}
    # the paired bootstrap's difference is the table's own mAP difference, inside its 95 % interval
    assert sweep["vs_fp32_pt"].tolist() == pytest.approx((100 * (sweep["map50_95"] - fp32)).tolist(), abs=1e-9)
    assert ((sweep["vs_fp32_low_pt"] <= sweep["vs_fp32_pt"]) & (sweep["vs_fp32_pt"] <= sweep["vs_fp32_high_pt"])).all()
    assert sweep["vs_current_verdict"].tolist()[0] == "reference" and sweep["vs_current_pt"].notna().tolist()[1:] == [True]


def test_accuracy_analysis_reads_letterboxed_inputs_and_writes_layers(detect_analysis_run):
    from helpers.steps import analysis

    a = detect_analysis_run / "analysis"
    inputs = sorted((a / "inputs").glob("*.png"))
    assert len(inputs) == 1 and cv2.imread(str(inputs[0])).shape[:2] == (SMALL["imgsz"], SMALL["imgsz"])
    snaps = sorted(a.glob("snapshot/*/error_analysis.txt"))
    assert len(snaps) == 1 and snaps[0].parent.name == f"00_{inputs[0].stem}"
    layers = pd.read_csv(a / "layers.csv")
    assert list(layers["name"]) == list(analysis.parse_error_analysis(snaps[0])["name"]) and len(layers) > 100
    assert {"box8", "cls8", "sum8"} <= set(layers["name"])  # the split head's outputs are rows of the table
    assert layers.loc[~layers["fused"], "single_cos"].dropna().between(-1, 1.0000001).all()
    assert len(analysis.rank_layers(layers)) > 50
    demo = (a / "calibration_demo.txt").read_text().split()
    assert demo == (detect_analysis_run / "rknn" / "calibration.txt").read_text().split()[:DEMO]
    assert all(cv2.imread(p).shape[:2] == (SMALL["imgsz"], SMALL["imgsz"]) for p in demo)
    assert (a / "layers.png").stat().st_size > 0 and (a / "sweep.png").stat().st_size > 0


def test_notebook_50_states_its_conclusion_in_map(detect_analysis_run):
    from helpers.steps import analysis

    text = _markdown(detect_analysis_run / "executed" / "50_accuracy_analysis.ipynb")
    sweep = pd.read_csv(detect_analysis_run / "analysis" / "sweep.csv")
    best, why = analysis.best_row(sweep)
    assert why in text and f"highest mAP50-95 ({best['map50_95']:.3f})" in why
    fp32 = _fp32(detect_analysis_run)["map50_95"]
    assert f"FP32 mAP50-95 on the same {VAL_IMAGES} images: **{fp32:.3f}**. " in text
    assert "by a paired bootstrap over the images" in text and "noise about" not in text
    assert f"The sweep's best setting is {best['algorithm']}/{best['method']} (mAP50-95 {best['map50_95']:.3f})" in text
    current = sweep[(sweep["algorithm"] == "normal") & (sweep["method"] == "channel")].iloc[0]
    assert (f"INT8 with normal/channel under the demo calibration scores mAP50-95 {current['map50_95']:.3f}, FP32 {fp32:.3f} "
            f"on the same {VAL_IMAGES} images: {analysis.row_paired(current, 'vs_fp32').text}") in text
    assert "Found under demo calibration (2 images)" in text
    assert "top-1" not in text and "image(s)," not in text  # no classifier wording in the sentences computed for a detector
