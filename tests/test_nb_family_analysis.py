"""Notebooks 50 and 60 for the detector family's other tasks: an instance-segmentation run and a pose run (the generated
samples of helpers.tasks.segment/pose, trained briefly by notebook 10 from the YOLO11n-seg/-pose YAMLs), 10 -> 20 -> 50
-> 60 under papermill with small parameters. The assertions read what the runs wrote: every table, sentence and
chosen.json names the task's own metric (mask mAP50-95 / pose mAP50-95, never top-1 or the box mAP), the sweep's rows
carry the paired bootstrap's verdict against FP32 consistent with its interval, and the accuracy analysis reads the
letterboxed images the deployed model sees."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import nbformat
import pandas as pd
import pytest
from family_support import SMALL, pose_series, segment_series, series_through  # noqa: F401  (session fixtures)

from helpers.core.paths import Run
from helpers.toolkit.record import read_record

pytestmark = pytest.mark.slow
GRID = [["normal", "channel"], ["normal", "layer"]]
# Small and fast: no toolkit proposal (most of step 1's time) and auto_layers 0 (no strategy (c), no two-build rules
# experiment: both are task-agnostic, measured by the detect and classify tests); your list (a) keeps the backbone's
# first activation (the same tensor name in YOLO11n-seg and -pose) in float16, so one hybrid is built, scored and exported.
FIRST = "/model.0/act/Mul_output_0"
HYBRID = {"analysis_images": 1, "val_images": 0, "auto_layers": 0, "user_layers": [FIRST], "search_budget": 2, "proposal": False}
ANALYSIS = {"analysis_images": 1, "val_images": 0, "sweep_grid": GRID, "batch": 8}
METRIC = {"segment": ("mask_map50_95", "mask mAP50-95"), "pose": ("pose_map50_95", "pose mAP50-95")}
VERDICTS = {"better", "worse", "within noise"}


@pytest.fixture(scope="module", params=["segment", "pose"])
def family_run(request) -> tuple[str, Path]:
    """(task, run folder): the session's series of the task (tests/family_support: trained, 10-40) continued with
    50 and 60 at small parameters in the same folder."""
    task = request.param
    root = request.getfixturevalue(f"{task}_series")
    return task, series_through(root, task, "50,60", {"50_accuracy_analysis": ANALYSIS, "60_hybrid_quantization": HYBRID})


def _square(task: str) -> tuple[int, int]:
    """The letterboxed input's height and width of the task's small series."""
    return SMALL[task]["imgsz"], SMALL[task]["imgsz"]


def _outputs(root: Path, notebook: str) -> tuple[str, str]:
    """(markdown, stdout) the executed notebook's code cells displayed."""
    nb = nbformat.read(root / "executed" / f"{notebook}.ipynb", 4)
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    return ("\n".join(o.get("data", {}).get("text/markdown", "") for o in outs),
            "\n".join(o.get("text", "") for o in outs if o.get("output_type") == "stream"))


def _consistent(row: pd.Series, prefix: str) -> bool:
    """A paired verdict agrees with its 95 % interval: worse when it lies below zero, better above, else within noise."""
    low, pt, high, verdict = (row[f"{prefix}_{c}"] for c in ("low_pt", "pt", "high_pt", "verdict"))
    expected = "worse" if high < 0 else "better" if low > 0 else "within noise"
    return low <= pt <= high and verdict == expected


def test_judge_scores_the_task_metric_on_letterboxed_images(family_run):
    """judge_for builds the task's own judge (mask or OKS mAP50-95, box mAP50-95 as agreement) on the letterboxed val
    split, it survives the trip to the sweep's worker process, and FP32 scores itself as it scores in the sweep."""
    from helpers.steps.judge import analysis_inputs, judge_for
    from helpers.tasks.data import resolve_data_dir

    task, root = family_run
    key, label = METRIC[task]
    run = Run.at(root)
    judge = judge_for(run, read_record(run), resolve_data_dir("", run))
    assert (judge.task, judge.key, judge.label, judge.agreement_key) == (task, key, label, "box_map50_95")
    assert judge.pixels.shape[1:] == (*_square(task), 3) and judge.step_pt() is None
    assert 0 < judge.fp32.value <= 1, f"FP32 {label} is 0: the small {task} model learned nothing to compare"
    sweep = pd.read_csv(root / "analysis" / "sweep.csv")
    assert (sweep["images"] == judge.images).all()
    assert sweep[f"fp32_{key}"].tolist() == pytest.approx([judge.fp32.value] * len(sweep), abs=1e-9)
    copy = pickle.loads(pickle.dumps(judge))
    assert copy.score(judge.fp32_outputs).value == judge.fp32.value
    same = copy.paired(judge.fp32_outputs)
    assert same.verdict == "within noise" and same.difference_pt == 0 and "bootstrap" in same.method
    files = analysis_inputs(judge, 1, root / "probe")  # like a detector's: letterboxed PNGs, never the originals
    assert files[0].suffix == ".png" and cv2.imread(str(files[0])).shape[:2] == _square(task)


def test_sweep_is_scored_by_the_task_metric_with_paired_verdicts(family_run):
    from helpers.steps import analysis

    task, root = family_run
    key, _ = METRIC[task]
    sweep = pd.read_csv(root / "analysis" / "sweep.csv")
    assert list(sweep.columns) == ["algorithm", "method", key, f"{key}_delta_pt", "mean_cosine", "min_cosine", "box_map50_95",
                                   "build_s", "why", *analysis.PAIRED_COLUMNS, "log_names_algorithm", "same_outputs_as",
                                   f"fp32_{key}", "images", "calibration"]  # the box mAP is the agreement, not the metric
    assert analysis.sweep_metric(sweep) == key and [list(x) for x in zip(sweep["algorithm"], sweep["method"])] == GRID
    assert sweep[key].between(0, 1).all() and (sweep["why"].fillna("") == "").all()
    fp32 = sweep[f"fp32_{key}"].iloc[0]
    assert sweep["vs_fp32_pt"].tolist() == pytest.approx((100 * (sweep[key] - fp32)).tolist(), abs=1e-9)
    assert all(_consistent(r, "vs_fp32") for _, r in sweep.iterrows()) and set(sweep["vs_fp32_verdict"]) <= VERDICTS
    assert sweep["vs_current_verdict"].iloc[0] == "reference" and _consistent(sweep.iloc[1], "vs_current")
    layers = pd.read_csv(root / "analysis" / "layers.csv")
    heads = {"segment": {"box8", "cls8", "coef8", "protos"}, "pose": {"box8", "cls8", "kpt8"}}[task]
    assert heads <= set(layers["name"]), "the split head's outputs are rows of the per-layer table"
    inputs = sorted((root / "analysis" / "inputs").glob("*.png"))
    assert len(inputs) == 1 and cv2.imread(str(inputs[0])).shape[:2] == _square(task)


def test_notebook_50_names_the_task_metric(family_run):
    from helpers.steps import analysis

    task, root = family_run
    key, label = METRIC[task]
    text, printed = _outputs(root, "50_accuracy_analysis")
    sweep = pd.read_csv(root / "analysis" / "sweep.csv")
    best, why = analysis.best_row(sweep)
    assert f"({task}, scored by {label})" in printed
    assert f"FP32 {label} on the same {int(sweep['images'].iloc[0])} images: **{sweep[f'fp32_{key}'].iloc[0]:.3f}**" in text
    assert "by a paired bootstrap over the images" in text and why in text and f"highest {label}" in why
    assert f"The sweep's best setting is {best['algorithm']}/{best['method']} ({label} {best[key]:.3f})" in text
    current = sweep.iloc[0]
    assert f"scores {label} {current[key]:.3f}" in text and analysis.row_paired(current, "vs_fp32").text in text
    assert "top-1" not in text


def test_hybrids_are_scored_and_chosen_by_the_task_metric(family_run):
    from helpers.steps import hybrid

    task, root = family_run
    key, label = METRIC[task]
    h = root / "hybrid"
    table = pd.read_csv(h / "compare.csv").fillna({"note": "", "file": "", "layers": ""})
    assert key in table.columns and "top1" not in table.columns and "map50_95" not in table.columns
    rows = table.set_index("model")
    int8 = rows.loc["INT8"]
    assert "bootstrap" in hybrid.paired_of(int8, "vs_fp32").method and _consistent(int8, "vs_fp32")
    mine = rows.loc["hybrid (a) your list"]
    assert mine["layers"].split() == [FIRST] and hybrid.paired_of(mine, "vs_int8").verdict in VERDICTS
    search = pd.read_csv(h / "search.csv")
    assert list(search.columns) == hybrid.search_columns(key)
    assert all(_consistent(r, "vs_fp32") for _, r in search.iterrows())
    chosen = json.loads((h / "chosen.json").read_text())
    assert (chosen["metric"], chosen["metric_label"]) == (key, label) and "top1" not in chosen and "map50_95" not in chosen
    if not chosen["model"].startswith("hybrid search"):
        assert chosen[key] == pytest.approx(rows.loc[chosen["model"], key])
    assert chosen["vs_int8"]["verdict"] in VERDICTS and (root / chosen["file"]).is_file()
    text, printed = _outputs(root, "60_hybrid_quantization")
    assert f"({task})" in printed and f"scored by {label} on" in printed
    assert label in text and "top-1" not in text
    images = sorted((h / "analysis_inputs").glob("*.png"))
    assert len(images) == HYBRID["analysis_images"] and cv2.imread(str(images[0])).shape[:2] == _square(task)


def test_plots_name_the_task_metric(family_run, tmp_path):
    """Every plot of 50 and 60 names the task's metric on its axis: the sweep, the comparison and the search curve."""
    from helpers.steps import analysis, hybrid
    from helpers.steps.judge import judge_for
    from helpers.tasks.data import resolve_data_dir

    task, root = family_run
    _, label = METRIC[task]
    run = Run.at(root)
    judge = judge_for(run, read_record(run), resolve_data_dir("", run), images=4)
    int8, _, _ = hybrid.load_baseline(run)
    fig = hybrid.plot_search(pd.read_csv(root / "hybrid" / "search.csv").fillna({"layers_list": ""}), int8.value, judge, 0.2)
    assert fig.axes[0].get_ylabel().startswith(f"{label} (%)") and label in fig.axes[0].get_title()
    compare = pd.read_csv(root / "hybrid" / "compare.csv").fillna({"note": "", "file": "", "layers": "", "float16_list": ""})
    fig = hybrid.plot_compare(compare, judge, tmp_path / "compare.png")
    assert fig.axes[0].get_ylabel().startswith(f"{label} minus INT8's (pt)")
    fig = analysis.plot_sweep(pd.read_csv(root / "analysis" / "sweep.csv"), path=tmp_path / "sweep.png")
    assert fig.axes[0].get_ylabel().startswith(f"{label} change vs FP32 (pt)")
