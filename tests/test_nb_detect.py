"""The detection series (task: detect): notebooks 10 -> 20 -> 30 -> 40 under papermill on the small generated
shapes sample (tests/detect_support.detect_series), asserting on what the run wrote: the mAP of FP32 vs INT8
with the split head, the stock head's INT8 collapse next to its whole-tensor cosine, the agreement with
ultralytics' own val(), and what notebook 20 recorded. Plus the task/data mismatches, one sentence each."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import nbformat
import onnx
import pytest
from detect_support import SMALL, detect_series, tiny_detector  # noqa: F401  (session fixtures)

from helpers.core.errors import WorkbookError


@pytest.fixture(scope="module")
def detect_run(detect_series) -> Path:  # noqa: F811 (the imported fixture)
    """Notebooks 10 -> 40 on the small sample (tests/detect_support.detect_series: run once per session, shared with the
    tests of notebooks 50 and 60)."""
    return detect_series


def _metrics(root: Path) -> dict:
    return json.loads((root / "eval" / "metrics.json").read_text())


def _row(metrics: dict, head: str, precision: str) -> dict:
    return next(r for r in metrics["backends"] if r["head"] == head and r["precision"] == precision)


@pytest.mark.slow
def test_split_head_int8_keeps_the_map_and_stock_head_collapses(detect_run):
    m = _metrics(detect_run)
    assert m["task"] == "detect" and m["head"] == "split"
    fp32, int8 = _row(m, "split", "FP32"), _row(m, "split", "INT8")
    stock_fp32, stock_int8 = _row(m, "stock", "FP32"), _row(m, "stock", "INT8")
    print(f"\nFP32 {fp32['map50_95']:.4f}/{fp32['map50']:.4f}  INT8 split {int8['map50_95']:.4f}/{int8['map50']:.4f} "
          f"cos {int8['cosine_mean']:.4f}  INT8 stock {stock_int8['map50_95']:.4f} top {stock_int8['top_score']:.3f} "
          f"cos {stock_int8['cosine_mean']:.4f}  ultralytics val {m['ultralytics_val']['map50_95']:.4f}")
    assert fp32["map50_95"] > 0.2, "the small sample detector learned too little for the comparison to mean anything"
    assert int8["map50_95"] >= fp32["map50_95"] - 0.03  # the small model's honest bound (full sample: within 2 pt)
    assert stock_fp32["map50_95"] == pytest.approx(fp32["map50_95"], abs=1e-3)  # same network, other output layout
    assert stock_int8["map50_95"] < 0.5 * stock_fp32["map50_95"]
    assert stock_int8["map50_95"] < int8["map50_95"] - 0.1
    assert stock_int8["cosine_mean"] > 0.95  # while the whole-tensor cosine did not warn
    assert set(fp32["per_class"]) == set(m["classes"])
    # judged by the one noise rule (paired bootstrap): the stock head's collapse is beyond noise, and the verdict
    # sentence quotes the split head's interval as metrics.json stores it
    from helpers.tasks.noise import Paired

    assert Paired.from_dict(stock_int8["paired"]).verdict == "worse"
    assert m["comparison"]["paired"] == int8["paired"] and m["comparison"]["reference"] == fp32["name"]
    assert m["verdict"].startswith("INT8 RKNN simulator (split head): mAP50-95 ") and int8["paired"]["text"] in m["verdict"]
    assert m["paired_seconds"] < 30, "the bootstraps stay affordable"


@pytest.mark.slow
def test_calibration_of_a_detector_holds_every_class(detect_run):
    """Notebook 20 draws the detector's calibration images spread over the classes of their boxes and says so."""
    nb = nbformat.read(detect_run / "executed" / "20_convert.ipynb", 4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    line = next(x for x in text.splitlines() if "calibration images, drawn stratified" in x)
    assert line.startswith("16 calibration images") and "each class has boxes in" in line
    assert int(line.split("each class has boxes in ")[1].split()[0].rstrip(".")) >= 1, "no class left out"


@pytest.mark.slow
def test_workbook_fp32_map_agrees_with_ultralytics_val(detect_run):
    m = _metrics(detect_run)
    fp32, theirs = _row(m, "split", "FP32"), m["ultralytics_val"]
    assert abs(fp32["map50_95"] - theirs["map50_95"]) <= 0.01
    assert abs(fp32["map50"] - theirs["map50"]) <= 0.01


@pytest.mark.slow
def test_export_and_conversion_records(detect_run):
    exported = json.loads((detect_run / "model" / "export_check.json").read_text())
    assert exported["task"] == "detect" and exported["head"] == "split"
    outputs = [o.name for o in onnx.load(str(detect_run / "model" / "model.onnx")).graph.output]
    assert len(outputs) == 9 and outputs[:3] == ["box8", "cls8", "sum8"]
    assert len(onnx.load(str(detect_run / "model" / "model_stock.onnx")).graph.output) == 1
    record = json.loads((detect_run / "rknn" / "convert.json").read_text())
    for rule in record.get("auto_disabled_rules", []):  # a rule the build had to skip is kept for every rebuild
        assert rule["rule"] in record["config"]["disable_rules"]
    calib = [Path(line) for line in (detect_run / "rknn" / "calibration.txt").read_text().split()]
    assert len(calib) == 16
    shape = cv2.imread(str(calib[0])).shape  # letterboxed to the model's input, not the 4:3 originals
    assert shape[:2] == (SMALL["imgsz"], SMALL["imgsz"])
    preflight = json.loads((detect_run / "rknn" / "preflight.json").read_text())  # notebook 20's pre-flight of this build
    assert preflight["profile"] is True and preflight["chip"] == record["config"]["target_platform"]
    assert preflight["model_mb"] > 0 and isinstance(preflight["cpu_ops"], list)
    executed = (detect_run / "executed" / "20_convert.ipynb").read_text()
    assert ("run on the CPU" in executed or "No op runs on the CPU" in executed) and "No time estimate for" in executed


@pytest.mark.slow
def test_notebook_30_states_this_runs_numbers(detect_run):
    m = _metrics(detect_run)
    nb = nbformat.read(detect_run / "executed" / "30_simulator_inference.ipynb", 4)
    text = "".join(o.get("data", {}).get("text/markdown",
                                         "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert f"{_row(m, 'split', 'INT8')['map50_95']:.3f}" in text and f"{_row(m, 'stock', 'INT8')['map50_95']:.3f}" in text
    assert (detect_run / "eval" / "detections.png").stat().st_size > 0
    saved = json.loads((detect_run / "eval" / "detections.json").read_text())
    assert len(saved["backends"]) == 5 and all(len(v) == m["images"] for v in saved["backends"].values())


@pytest.mark.slow
def test_notebook_30_measures_the_colour_order_bug_on_the_detector(detect_run):
    """The INT8 model fed BGR is a diagnostic row of its own, and the sentence reads this run's two numbers."""
    m = _metrics(detect_run)
    rgb, bgr = _row(m, "split", "INT8"), _row(m, "split", "INT8 BGR")
    assert bgr["role"] == "diagnostic" and bgr["name"] == "INT8 split head, BGR input (bug)"
    saved = json.loads((detect_run / "eval" / "detections.json").read_text())["backends"]
    assert saved[bgr["name"]] != saved[rgb["name"]]  # other inputs, other boxes: the row is measured, not copied
    nb = nbformat.read(detect_run / "executed" / "30_simulator_inference.ipynb", 4)
    text = "".join(o.get("data", {}).get("text/markdown",
                                         "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert f"**{bgr['map50_95']:.3f}** instead of {rgb['map50_95']:.3f}" in text
    assert (detect_run / "eval" / "colour_order.png").stat().st_size > 0
    from helpers.runner import figures

    shown = [caption for caption, _ in figures.plots(detect_run)]
    # the lesson's one picture stays in notebook 30
    assert "eval/detections.png" in shown and "eval/colour_order.png" not in shown


def _onnx_with_task(src: Path, dst: Path, task: str) -> Path:
    model = onnx.load(str(src))
    entry = model.metadata_props.add()
    entry.key, entry.value = "task", task
    onnx.save(model, str(dst))
    return dst


def test_detector_given_with_task_classify_is_one_sentence(tiny_onnx, tmp_path):
    from helpers.tasks.identify import resolve_task

    detector = _onnx_with_task(tiny_onnx, tmp_path / "det.onnx", "detect")
    with pytest.raises(WorkbookError, match=r"det.onnx is a detector \(task detect\) but task: classify was given; set "
                                            r"task: detect") as err:
        resolve_task(str(detector), "classify")
    assert "\n" not in str(err.value)


def test_classifier_given_with_task_detect_is_one_sentence(tiny_onnx):
    from helpers.tasks.identify import resolve_task

    with pytest.raises(WorkbookError, match=r"is a classifier \(task classify\) but task: detect was given; set task: "
                                            r"classify or pass a detector"):
        resolve_task(str(tiny_onnx), "detect")


def test_class_folders_given_with_task_detect_is_one_sentence(tmp_path):
    from helpers.steps.export.heads import resolve_data
    from helpers.tasks.data import write_gray_shapes

    folders = write_gray_shapes(tmp_path / "gray", size=16, train_per_class=1, val_per_class=1)
    with pytest.raises(WorkbookError, match=r"is not a YOLO data set \(a data.yaml with train:, val:, names:, or its folder\), "
                                            r"which task: detect needs; .* set task: classify for a class-folder layout"):
        resolve_data(str(folders))


def test_detect_params_file_runs_the_whole_series():
    from helpers.core.paths import REPO
    from helpers.runner import execute, series

    config = execute.load_params_file(REPO / "params" / "detect.yaml")
    planned = {nb.stem: p for nb, p in series.plan(config, config["only"])}
    assert list(planned) == ["00_environment_check", "10_export", "20_convert", "30_simulator_inference", "40_board_inference",
                             "50_accuracy_analysis", "60_hybrid_quantization"]
    assert planned["10_export"]["task"] == "detect" and planned["10_export"]["head"] == "split"
    assert set(config["common"]) <= {k for p in planned.values() for k in p}


def test_index_shows_map_for_a_detection_run(tmp_path):
    from helpers.runner import figures, index

    rows = [{"name": "FP32 split head", "role": "fp32", "head": "split", "precision": "FP32", "map50_95": 0.7, "map50": 0.9},
            {"name": "INT8 split head", "role": "int8", "head": "split", "precision": "INT8", "map50_95": 0.69, "map50": 0.89},
            {"name": "FP32 stock head", "role": "diagnostic", "head": "stock", "precision": "FP32", "map50_95": 0.7,
             "map50": 0.9},
            {"name": "INT8 stock head", "role": "diagnostic", "head": "stock", "precision": "INT8", "map50_95": 0.01,
             "map50": 0.02}]
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps({"task": "detect", "head": "split", "backends": rows}))
    figs = {f.label: f.value for f in figures.key_figures(tmp_path)}
    assert figs["FP32 mAP50-95 / mAP50 (ONNX Runtime)"] == "0.700 / 0.900"
    assert figs["INT8 mAP50-95 / mAP50 (RKNN simulator, split head)"] == "0.690 / 0.890"
    assert figs["INT8 mAP50-95 / mAP50, stock head (same images)"] == "0.010 / 0.020"
    assert "FP32 top-1 (ONNX Runtime)" not in figs and "INT8 top-1 (RKNN simulator)" not in figs
    line = index.verdict(tmp_path)
    assert "+1.0 pt mAP50-95 loss vs FP32 (0.690 vs 0.700)" in line and "stock head INT8 reaches 0.010" in line


# ----------------------------------------------------------------------------- notebook 40: the detector's board bundle


@pytest.mark.slow
def test_bundle_ships_the_decode_byte_identical_and_the_runner_detects(detect_run, tmp_path):
    """The runner on the bundle's sample images with FakeRKNNLite (tests/fake_rknnlite.py: a stand-in for
    the board's runtime library computing the same model's outputs with ONNX Runtime): it letterboxes,
    decodes with the shipped postprocess.py and prints exactly the workbook's detections, and draws them."""
    import numpy as np
    from test_deploy import run_on_stand_in

    from helpers.tasks.detect.images import load_letterboxed
    from helpers.tasks.detect.postprocess import postprocess
    from helpers.tasks.feeds import fp32_runner

    bundle = detect_run / "board" / "deploy"
    shipped = (bundle / "postprocess.py").read_bytes()
    assert shipped == (Path(__file__).resolve().parent.parent / "helpers" / "tasks" / "detect" / "postprocess.py").read_bytes()
    config = json.loads((bundle / "model.json").read_text())
    assert config["task"] == "detect" and config["head"] == "split"
    assert "| postprocess.py |" in (bundle / "README.md").read_text()
    images = sorted((bundle / "images").iterdir())
    assert images
    res = run_on_stand_in(bundle, detect_run / "model" / "model.onnx", tmp_path, "images", "--draw", str(tmp_path / "drawn"))
    assert res.returncode == 0, res.stderr
    canvases, geoms = load_letterboxed(images, config["input_size"])
    outs = fp32_runner(detect_run / "model" / "model.onnx", [0, 0, 0], [255, 255, 255]).outputs(np.stack(canvases))
    for path, o, lb in zip(images, outs, geoms):
        want = postprocess(o, lb, conf=0.25, iou=0.7)
        assert f"images/{path.name}: {len(want)} detection(s)" in res.stdout
        assert (tmp_path / "drawn" / path.name).is_file()
    assert sum(int(line.split(": ")[1].split()[0]) for line in res.stdout.splitlines() if "detection(s)" in line) > 0


@pytest.mark.slow
def test_notebook_40_on_a_detection_run(detect_run):
    """Without a board the detector's board-vs-simulator section says what it would do (mAP50-95), and the
    bundle's C++ project carries the workbook's detector demo beside the toolkit's codegen program."""
    from helpers.deploy.codegen import DETECT_SOURCES

    nb = nbformat.read(detect_run / "executed" / "40_board_inference.ipynb", 4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert ("[skipped: no board] Running the detector on the board over every val image (letterboxed, as notebook 30 "
            "scored them) and comparing its mAP50-95") in text
    cpp = detect_run / "board" / "deploy" / "cpp"
    assert all((cpp / "src" / s.name).read_bytes() == s.read_bytes() for s in DETECT_SOURCES)
    assert "add_executable(rknn_detect_demo" in (cpp / "CMakeLists.txt").read_text() and (cpp / "run_detect.sh").is_file()
    assert "## Why the split head" in (detect_run / "board" / "deploy" / "README.md").read_text()


def test_stock_head_bundle_is_refused_in_one_sentence():
    from helpers.deploy.instances import check_head  # shipped beside run_rknn.py: detect, segment and pose
    from helpers.deploy.run_rknn import RunnerError

    with pytest.raises(RunnerError,
                       match=r"model.rknn has the stock detector head .* export it with head: split in notebook 10") as err:
        check_head({"task": "detect", "head": "stock"}, Path("model.rknn"))
    assert "\n" not in str(err.value)
    check_head({"task": "detect", "head": "split"}, Path("model.rknn"))


def test_labels_beyond_the_models_classes_are_one_sentence(tiny_onnx, tmp_path):
    """A user's detector (an ONNX whose metadata names 2 classes) with labels using class id 3."""
    from helpers.core.paths import Run
    from helpers.steps.export.heads import prepare
    from helpers.tasks.detect.sample import write_detect_sample

    detector = _onnx_with_task(tiny_onnx, tmp_path / "det.onnx", "detect")
    model = onnx.load(str(detector))
    entry = model.metadata_props.add()
    entry.key, entry.value = "names", json.dumps(["a", "b"])
    onnx.save(model, str(detector))
    data = write_detect_sample(tmp_path / "shapes", images=6, imgsz=64, seed=1)
    with pytest.raises(WorkbookError,
                       match=r"use class ids \[.*3.*\], outside the model's 2 classes \(0..1\); fix the labels") as err:
        prepare(Run.at(tmp_path / "run"), str(detector), str(data), 64, 1)
    assert "\n" not in str(err.value)


def test_rknnlite_snippet_of_a_detector_decodes_with_the_shipped_module():
    from helpers.deploy.readme import rknnlite_snippet

    config = {"input_size": 160, "color_order": "RGB", "model": "model.rknn", "target_platform": "rk3588", "classes": 4,
              "task": "detect"}
    code = rknnlite_snippet(config, "images/x.png")
    assert "import postprocess" in code and "postprocess.letterbox(img, 160)" in code
    assert "postprocess.postprocess(outputs, lb" in code
    assert "argmax" not in code
    compile(code, "snippet", "exec")


@pytest.mark.parametrize("bgr_map,low,high,expect", [
    (0.40, -40.0, -32.0, "-36.0 pt (95 % CI -40.0 to -32.0), worse against the same model fed RGB. How much"),
    (0.765, -1.0, 2.0, "+0.5 pt (95 % CI -1.0 to +2.0), within noise against the same model fed RGB: on these images the "
                       "bug's effect is within noise"),
    (0.78, 0.5, 3.5, "+2.0 pt (95 % CI +0.5 to +3.5), better against the same model fed RGB: on these images the swapped "
                     "colours happen to score higher")])
def test_colour_pitfall_sentence_follows_the_numbers(bgr_map, low, high, expect):
    """The colour-order sentence quotes the paired verdict notebook 30 stored (the one noise rule), never a threshold."""
    from helpers.steps.detect_eval import BGR
    from helpers.tasks.noise import Paired
    from helpers.text.detect import colour_pitfall

    diff = 100 * (bgr_map - 0.76)
    verdict = "worse" if high < 0 else "better" if low > 0 else "within noise"
    judged = Paired(diff, low, high, verdict, "paired bootstrap over 50 images (50 resamples, normal interval)", 50)
    rows = [{"head": "split", "precision": "INT8", "map50_95": 0.76, "detections": 10},
            {"head": "split", "precision": BGR, "map50_95": bgr_map, "detections": 9, "paired": judged.to_dict()}]
    text = colour_pitfall({"head": "split", "images": 50, "backends": rows})
    assert expect in text and f"**{bgr_map:.3f}** instead of 0.760 on these 50 images" in text
    assert "re-run notebook 30" in colour_pitfall({"head": "split", "images": 50, "backends": rows[:1]})
