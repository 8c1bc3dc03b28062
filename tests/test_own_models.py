"""The models users bring, through the real series (00 -> 60) the way they arrive: only `model`, `data_dir` and
`imgsz` (plus the small image counts a notebook offers for speed). The task, the input size, the channels, the
class names and the head come from the model file. Built here, tiny: an ultralytics YOLOv8n detector (another
family than the sample's YOLO11n) as its .pt and as its ultralytics-exported ONNX (head split by graph surgery),
and a YOLO26n classifier. (The grayscale ONNX classifier is tests/test_real_models.py.)"""
from __future__ import annotations

import json
import shutil

import pytest

from helpers import cli
from helpers.detect.sample import train_detect_sample, write_detect_sample
from helpers.paths import Run

# small image counts only: every other parameter is the notebooks' default
SPEED = {
    "10_export": {"check_images": 4},
    "20_convert": {"calib_images": 16},
    "30_simulator_inference": {"batch": 8, "pictures": 1},
    "40_board_inference": {"sample_images": 1},
    "50_accuracy_analysis": {"analysis_images": 1, "sweep_grid": [["normal", "channel"]], "batch": 8},
    "60_hybrid_quantization": {"analysis_images": 1, "auto_layers": 2, "search_budget": 2, "proposal": False},
}
DETECT_IMGSZ = 128  # below it a YOLOv8n trained for a minute detects next to nothing


def user_config(model, data_dir, imgsz: int) -> dict:
    return {"common": {"model": str(model), "data_dir": str(data_dir), "imgsz": imgsz}, **SPEED}


def run_user_series(config: dict, run_dir, only: str = "00,10,20,30,40,50,60"):
    result = cli.run_series(config, run_dir, only=only, progress=False, render=False)
    assert result.ok, f"the series stopped in {result.failed}:\n{result.failure}"
    return run_dir


@pytest.fixture(scope="module")
def yolov8n(tmp_path_factory):
    """A YOLOv8n detector trained briefly from yolov8n.yaml on the generated shapes, and its ultralytics ONNX export."""
    base = tmp_path_factory.mktemp("yolov8n")
    data = write_detect_sample(base / "shapes", images=100, imgsz=DETECT_IMGSZ)
    res = train_detect_sample(Run.at(base / "train"), data, imgsz=DETECT_IMGSZ, epochs=20, batch=8, arch="yolov8n.yaml")
    pt = base / "yolov8n_shapes.pt"
    shutil.copyfile(res.weights, pt)
    from ultralytics import YOLO

    exported = YOLO(str(pt)).export(format="onnx", imgsz=DETECT_IMGSZ, device="cpu")  # what most users have
    onnx_path = base / "yolov8n_shapes.onnx"
    shutil.move(exported, onnx_path)
    return data, pt, onnx_path


def _rows(run_dir) -> dict:
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    return {(r["head"], r["precision"]): r for r in metrics["backends"]}


@pytest.mark.slow
def test_yolov8n_pt_detector_runs_00_to_60_with_only_model_data_and_imgsz(yolov8n, tmp_path):
    data, pt, _ = yolov8n
    config = user_config(pt, data, DETECT_IMGSZ)
    for nb in ("30_simulator_inference", "50_accuracy_analysis", "60_hybrid_quantization"):
        config[nb] = {**config[nb], "val_images": 10}  # half the val split: the INT8 figures are the ONNX test's
    run = run_user_series(config, tmp_path / "run")
    check = json.loads((run / "model" / "export_check.json").read_text())
    assert check["task"] == "detect" and check["head"] == "split"  # read from the .pt, never given
    rows = _rows(run)
    assert rows[("split", "FP32")]["map50_95"] > 0.1, "the tiny detector must detect something on these 10 images"
    assert (run / "hybrid" / "compare.csv").is_file() and (run / "board" / "deploy" / "postprocess.py").is_file()


@pytest.mark.slow
def test_ultralytics_onnx_detector_is_split_by_graph_surgery_and_int8_stays_within_2_pt(yolov8n, tmp_path):
    data, _, onnx_path = yolov8n
    run = run_user_series(user_config(onnx_path, data, 0), tmp_path / "run", only="00,10,20,30")
    check = json.loads((run / "model" / "export_check.json").read_text())
    assert check["task"] == "detect" and check["imgsz"] == DETECT_IMGSZ  # task and size from the ONNX's metadata
    assert [o["name"] for o in check["io"]["outputs"]] == [f"{k}{s}" for s in (8, 16, 32) for k in ("box", "cls", "sum")]
    rows = _rows(run)
    fp32, int8 = rows[("split", "FP32")]["map50_95"], rows[("split", "INT8")]["map50_95"]
    assert fp32 > 0.2, "the tiny detector must detect something for the comparison to mean anything"
    assert abs(fp32 - int8) <= 0.02, (fp32, int8)  # the lesson: the split head keeps INT8 within 2 pt of FP32
    stock = rows[("stock", "FP32")]["map50_95"]
    assert abs(stock - fp32) < 1e-3  # the split graph decodes to what the ONNX as given computes


def test_end_to_end_onnx_detector_is_refused_in_one_sentence_with_the_way_out(tmp_path):
    """A YOLO26 ONNX exported end to end (top-k inside the graph) cannot be split: one sentence, two ways out."""
    import onnx
    from onnx import TensorProto, helper

    from helpers.detect.onnx_split import split_onnx
    from helpers.errors import WorkbookError

    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1)]
    graph = helper.make_graph(nodes, "e2e", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8400])],
                              [helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 300])],
                              [helper.make_tensor("k", TensorProto.INT64, [1], [300])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    for k, v in {"author": "Ultralytics", "task": "detect", "end2end": "True", "names": "{0: 'a'}"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(tmp_path / "yolo26n.onnx"))
    with pytest.raises(WorkbookError, match=r"cannot be split for INT8 \(an end-to-end head.*export the \.pt instead.*head: stock"):
        split_onnx(tmp_path / "yolo26n.onnx", tmp_path / "split.onnx")


@pytest.fixture(scope="module")
def yolo26_cls(tmp_path_factory):
    """A YOLO26n classifier trained briefly from yolo26n-cls.yaml on a subset of the sample digits."""
    from helpers.data import load_split, write_sample
    from helpers.models import train_sample_model

    base = tmp_path_factory.mktemp("yolo26cls")
    digits = write_sample()
    data = base / "digits"
    for split, per_class in (("train", 30), ("val", 8)):
        images = load_split(digits, split)
        taken: dict[int, int] = {}
        for path, label in zip(images.paths, images.labels):
            if taken.get(label, 0) < per_class:
                taken[label] = taken.get(label, 0) + 1
                target = data / split / images.classes[label] / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
    res = train_sample_model(Run.at(base / "train"), data, imgsz=32, epochs=10, arch="yolo26n-cls.yaml", batch=32, warmup_epochs=0)
    pt = base / "yolo26n_cls_digits.pt"
    shutil.copyfile(res.weights, pt)
    return data, pt


@pytest.mark.slow
def test_yolo26n_classifier_runs_00_to_60_with_only_model_data_and_imgsz(yolo26_cls, tmp_path):
    data, pt = yolo26_cls
    run = run_user_series(user_config(pt, data, 32), tmp_path / "run")
    check = json.loads((run / "model" / "export_check.json").read_text())
    assert check["task"] == "classify" and check["kind"] == "ultralytics"
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    fp32, int8 = metrics["backends"][0], metrics["backends"][1]
    assert fp32["images"] == int8["images"] == 80  # the folder's whole val split
    assert fp32["top1"] > 0.5, "the tiny classifier must classify for the comparison to mean anything (chance: 0.1)"
    assert abs(metrics["comparison"]["top1_delta_pt"]) <= 5.0, metrics["comparison"]  # INT8 within 4 of 80 images
    assert (run / "hybrid" / "compare.csv").is_file() and (run / "board" / "deploy" / "model.rknn").is_file()


def test_task_and_imgsz_default_to_what_the_model_says_and_a_contradiction_is_one_sentence(tiny_onnx, tmp_path):
    import onnx

    from helpers.errors import WorkbookError
    from helpers.task import fit_norm, resolve_imgsz, resolve_task

    assert resolve_task("", "") == "classify" and resolve_imgsz("", 0) == 32  # no model: the sample classifier at 32 px
    assert resolve_task(str(tiny_onnx), "") == "classify" and resolve_imgsz(str(tiny_onnx), 0) == 16  # from the graph
    detector = onnx.load(str(tiny_onnx))
    entry = detector.metadata_props.add()
    entry.key, entry.value = "task", "detect"
    onnx.save(detector, str(tmp_path / "det.onnx"))
    assert resolve_task(str(tmp_path / "det.onnx"), "") == "detect"
    entry.value = "segment"  # a task the workbook does not run yet is named, never read as a detector
    onnx.save(detector, str(tmp_path / "seg.onnx"))
    for given in ("", "detect"):
        with pytest.raises(WorkbookError, match=r"^Model \S+seg.onnx is an ultralytics segment model; this workbook takes "
                                                r"classify and detect models so far: pass one of those\.$"):
            resolve_task(str(tmp_path / "seg.onnx"), given)
    with pytest.raises(WorkbookError, match=r"^imgsz=32 conflicts with model \S+tiny.onnx, whose input is fixed at 16x16; set imgsz: 16 or leave it 0\.$"):
        resolve_imgsz(str(tiny_onnx), 32)
    dynamic = onnx.load(str(tiny_onnx))
    for d in dynamic.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.dim_param = "size"
    onnx.save(dynamic, str(tmp_path / "dynamic.onnx"))
    assert resolve_imgsz(str(tmp_path / "dynamic.onnx"), 48) == 48
    with pytest.raises(WorkbookError, match=r"does not state its input size .*; set imgsz to the size it was trained at\.$"):
        resolve_imgsz(str(tmp_path / "dynamic.onnx"), 0)
    assert fit_norm([0.0, 0.0, 0.0], 1) == [0.0] and fit_norm([255.0], 3) == [255.0] * 3  # one value for all fits any model
    with pytest.raises(WorkbookError, match=r"^mean_values=\[1.0, 2.0, 3.0\] has 3 values but the model has 1 input channel"):
        fit_norm([1, 2, 3], 1)
