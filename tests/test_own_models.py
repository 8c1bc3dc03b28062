"""The models users bring, through the real series (00 -> 60) the way they arrive: only `model`, `data_dir` and
`imgsz` (plus the small image counts a notebook offers for speed). The task, the input size, the channels, the
class names and the head come from the model file. Built here, tiny: an ultralytics YOLOv8n detector (another
family than the sample's YOLO11n) as its .pt and as its ultralytics-exported ONNX (head split by graph surgery), the
tiny YOLO26n detector's ultralytics ONNX (default export: one-to-many branch, reg_max 1; and end to end, cut before its
top-k), and a YOLO26n classifier. (The grayscale ONNX classifier is tests/test_real_models.py.)"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from yolo26_support import tiny_yolo26  # noqa: F401  (session fixture: one training per session)

from helpers.core.paths import Run
from helpers.runner import series
from helpers.steps.export.detect_head import onnx_metadata
from helpers.steps.export.detect_sample import train_detect_sample
from helpers.tasks.detect.sample import write_detect_sample

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
    result = series.run_series(config, run_dir, only=only, progress=False, render=False)
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


@pytest.fixture(scope="module")
def yolo26n_onnx(tiny_yolo26, tmp_path_factory):  # noqa: F811
    """The tiny YOLO26n detector (tests/yolo26_support.py) as ultralytics' default ONNX export: its one-to-many branch
    (reg_max 1 boxes, NMS) in one [1, 4 + classes, anchors] tensor."""
    from ultralytics import YOLO

    from helpers.steps.export.detect_sample import offline

    pt = tmp_path_factory.mktemp("yolo26onnx") / "yolo26n_shapes.pt"
    shutil.copyfile(tiny_yolo26.train.weights, pt)
    with offline():
        exported = YOLO(str(pt)).export(format="onnx", imgsz=tiny_yolo26.imgsz, opset=19, device="cpu")
    return tiny_yolo26.data_yaml, None, exported


# family -> (fixture, the split head's reg_max, least FP32 mAP50-95 for the comparison to mean anything)
ONNX_DETECTORS = {"yolov8n": ("yolov8n", 16, 0.2), "yolo26n": ("yolo26n_onnx", 1, 0.05)}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(ONNX_DETECTORS))
def test_ultralytics_onnx_detector_is_split_by_graph_surgery_and_int8_stays_within_2_pt(family, request, tmp_path):
    fixture, reg_max, least = ONNX_DETECTORS[family]
    data, _, onnx_path = request.getfixturevalue(fixture)
    run = run_user_series(user_config(onnx_path, data, 0), tmp_path / "run", only="10,20,30")
    check = json.loads((run / "model" / "export_check.json").read_text())
    assert check["task"] == "detect" and check["imgsz"] == DETECT_IMGSZ  # task and size from the ONNX's metadata
    assert [o["name"] for o in check["io"]["outputs"]] == [f"{k}{s}" for s in (8, 16, 32) for k in ("box", "cls", "sum")]
    meta = onnx_metadata(run / "model" / "model_split.onnx")
    assert (meta["reg_max"], meta["end2end"]) == (str(reg_max), "false")  # YOLO26's default export: one-to-many, NMS
    rows = _rows(run)
    fp32, int8 = rows[("split", "FP32")]["map50_95"], rows[("split", "INT8")]["map50_95"]
    stock, stock_int8 = rows[("stock", "FP32")]["map50_95"], rows[("stock", "INT8")]
    print(f"\n{family} ONNX: FP32 original {stock:.4f} split {fp32:.4f}  INT8 split {int8:.4f}  "
          f"INT8 stock {stock_int8['map50_95']:.4f}")
    assert fp32 > least, "the tiny detector must detect something for the comparison to mean anything"
    assert abs(stock - fp32) < 1e-3  # the split graph decodes to what the ONNX as given computes
    assert abs(fp32 - int8) <= 0.02, (fp32, int8)  # the lesson: the split head keeps INT8 within 2 pt of FP32
    assert "INT8 stock head" in stock_int8["name"] and 0 <= stock_int8["map50_95"] <= 1  # shown next to it


def test_yolo26_onnx_exported_end_to_end_is_cut_before_its_topk(tiny_yolo26, tmp_path):  # noqa: F811
    """YOLO26 exported with nms=False ends in ultralytics' top-k ([1, max_det, 6]; the NPU has no TopK): the one-to-one
    branch's per-stride convolutions become the split outputs (end2end: top-k on the host) and the stock head is the
    graph cut before the top-k; both give the file's own rows in FP32."""
    import onnx
    from ultralytics import YOLO

    from helpers.steps.export.detect_sample import offline
    from helpers.steps.export.onnx_split import split_user_onnx
    from helpers.tasks.detect.labels import read_split

    pt = tmp_path / "yolo26n_e2e.pt"
    shutil.copyfile(tiny_yolo26.train.weights, pt)
    with offline():
        src = YOLO(str(pt)).export(format="onnx", imgsz=tiny_yolo26.imgsz, opset=19, device="cpu", nms=False)
    assert "TopK" in {n.op_type for n in onnx.load(src).graph.node}
    images = read_split(tiny_yolo26.data_yaml, "val").subset(8).paths
    info = split_user_onnx(Path(src), tmp_path / "model", images, tiny_yolo26.imgsz)  # raises when they disagree
    assert info["outputs"] == [f"{k}{s}" for s in (8, 16, 32) for k in ("box", "cls", "sum")]
    assert info["check"]["images"] == 8 and info["check"]["max_score_diff"] <= 1e-4
    meta = onnx_metadata(tmp_path / "model" / "model_split.onnx")
    assert (meta["reg_max"], meta["end2end"], meta["max_det"]) == ("1", "true", "300")
    stock = onnx.load(str(tmp_path / "model" / "model_stock.onnx"))
    assert not {"TopK", "GatherElements"} & {n.op_type for n in stock.graph.node}
    assert [d.dim_value for d in stock.graph.output[0].type.tensor_type.shape.dim][:2] == [1, 4 + info["classes"]]


def _graph(kind: str):
    """An ultralytics-labelled detector ONNX whose head cannot be split: NMS inside the graph, or an end-to-end output
    computed from one convolution (no per-stride box and class convolutions to cut at)."""
    from onnx import TensorProto, helper

    f32 = TensorProto.FLOAT
    inits = [helper.make_tensor("w", f32, [6, 3, 1, 1], [0.1] * 18), helper.make_tensor("k", TensorProto.INT64, [1], [4])]
    nodes = [helper.make_node("Conv", ["images", "w"], ["c"]), helper.make_node("Sigmoid", ["c"], ["s"]),
             helper.make_node("Reshape", ["s", "shape"], ["r"])]
    inits.append(helper.make_tensor("shape", TensorProto.INT64, [3], [1, 6, 4]))
    if kind == "nms":
        nodes += [helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1]),
                  helper.make_node("NonMaxSuppression", ["t", "r"], ["out"])]
        out = helper.make_tensor_value_info("out", TensorProto.INT64, [4, 3])
    else:
        nodes += [helper.make_node("ReduceMax", ["r"], ["m"], axes=[1], keepdims=0),
                  helper.make_node("TopK", ["m", "k"], ["v", "i"], axis=1),
                  helper.make_node("Unsqueeze", ["v", "ax"], ["u"]), helper.make_node("Tile", ["u", "reps"], ["out"])]
        inits += [helper.make_tensor("ax", TensorProto.INT64, [1], [2]),
                  helper.make_tensor("reps", TensorProto.INT64, [3], [1, 1, 6])]
        out = helper.make_tensor_value_info("out", f32, [1, 4, 6])
    graph = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("images", f32, [1, 3, 2, 2])], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    meta = {"author": "Ultralytics", "task": "detect", "end2end": str(kind != "nms"), "names": "{0: 'a', 1: 'b'}"}
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    return model


@pytest.mark.parametrize("kind, why", [("nms", r"non-maximum suppression is inside the graph"),
                                       ("end2end", r"the output is not computed from per-stride box and class convolutions")])
def test_onnx_detector_whose_head_cannot_be_split_is_refused_in_one_sentence_with_the_way_out(kind, why, tmp_path):
    """A graph with NMS inside, or whose output no per-stride box and class convolutions compute: one sentence, two ways out."""
    import onnx

    from helpers.core.errors import WorkbookError
    from helpers.steps.export.onnx_split import split_onnx

    onnx.save(_graph(kind), str(tmp_path / "detector.onnx"))
    with pytest.raises(WorkbookError, match=rf"^The head of detector.onnx cannot be split for INT8 \({why}.*\); export the \.pt "
                                            r"instead .*or pass head: stock to go on with the stock head knowingly\.$"):
        split_onnx(tmp_path / "detector.onnx", tmp_path / "split.onnx")
    assert not (tmp_path / "split.onnx").exists()


@pytest.fixture(scope="module")
def yolo26_cls(tmp_path_factory):
    """A YOLO26n classifier trained briefly from yolo26n-cls.yaml on a subset of the sample digits."""
    from helpers.steps.export.models import train_sample_model
    from helpers.tasks.data import load_split, write_sample

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
    res = train_sample_model(Run.at(base / "train"), data, imgsz=32, epochs=10, arch="yolo26n-cls.yaml", batch=32,
                             warmup_epochs=0)
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

    from helpers.core.errors import WorkbookError
    from helpers.tasks.identify import fit_norm, resolve_imgsz, resolve_task

    assert resolve_task("", "") == "classify" and resolve_imgsz("", 0) == 32  # no model: the sample classifier at 32 px
    assert resolve_task(str(tiny_onnx), "") == "classify" and resolve_imgsz(str(tiny_onnx), 0) == 16  # from the graph
    detector = onnx.load(str(tiny_onnx))
    entry = detector.metadata_props.add()
    entry.key, entry.value = "task", "detect"
    onnx.save(detector, str(tmp_path / "det.onnx"))
    assert resolve_task(str(tmp_path / "det.onnx"), "") == "detect"
    entry.value = "obb"  # a task the workbook does not run yet is named, never read as a detector
    onnx.save(detector, str(tmp_path / "obb.onnx"))
    for given in ("", "detect"):
        with pytest.raises(WorkbookError, match=r"^Model \S+obb.onnx is an ultralytics obb model; this workbook takes "
                                                r"classify, detect, segment and pose models so far: pass one of those\.$"):
            resolve_task(str(tmp_path / "obb.onnx"), given)
    with pytest.raises(WorkbookError, match=r"^imgsz=32 conflicts with model \S+tiny.onnx, whose input is fixed at "
                                            r"16x16; set imgsz: 16 or leave it 0\.$"):
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


def test_an_onnx_used_as_it_is_must_give_a_layout_the_decode_reads(tmp_path):
    """head: stock (or an unknown detector ONNX) is used as it is: NMS or a top-k inside the graph ([1, 300, 6]) would be
    misread and score 0 without a word, so it stops in one sentence; ultralytics' raw [1, 4 + classes, anchors] goes on."""
    import onnx
    from onnx import TensorProto, helper

    from helpers.core.errors import WorkbookError
    from helpers.steps.export.exporter import onnx_io
    from helpers.steps.export.heads import check_decodable

    def graph(shape: list[int]):
        nodes = [helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=0),
                 helper.make_node("Expand", ["m", "shape"], ["output0"])]
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, shape)],
                              [helper.make_tensor("shape", TensorProto.INT64, [len(shape)], shape)])
        path = tmp_path / f"{'x'.join(map(str, shape))}.onnx"
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 12)]), str(path))
        return path

    raw = graph([1, 8, 64 + 16 + 4])  # 4 box rows + 4 classes over the 8/16/32-stride anchors of 64 px
    check_decodable(raw, onnx_io(raw), {})
    rows = graph([1, 300, 6])
    with pytest.raises(WorkbookError, match=r"^The detector 1x300x6.onnx gives outputs \[\[1, 300, 6\]\], a layout the "
                                            r"workbook's "
                                            r"decode cannot read .* Give the ultralytics .pt instead"):
        check_decodable(rows, onnx_io(rows), {})
