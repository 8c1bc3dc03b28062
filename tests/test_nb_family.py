"""The segmentation and pose series (task: segment, task: pose): notebooks 10 -> 40 under papermill on the small
generated samples (tests/family_support.SMALL), asserting on what each run wrote: the task's own metric (mask or pose
mAP50-95, box mAP beside it) for FP32 vs INT8 with the split head, the stock head's INT8 collapse, the agreement with
ultralytics' own val(), the pictures, and the bundle that ships the task's decode byte for byte."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import onnx
import pytest
from family_support import SMALL, pose_series, segment_series  # noqa: F401  (session fixtures)

from helpers.tasks.family import member
from helpers.tasks.noise import Paired

pytestmark = pytest.mark.slow
TASKS = ["segment", "pose"]
FLOOR = {"segment": 0.1, "pose": 0.07}  # the small samples' models learn at least this much (seen: 0.23 / 0.14)


@pytest.fixture(params=TASKS)
def run(request) -> tuple[str, Path]:
    return request.param, request.getfixturevalue(f"{request.param}_series")


def _metrics(root: Path) -> dict:
    return json.loads((root / "eval" / "metrics.json").read_text())


def _row(metrics: dict, head: str, precision: str) -> dict:
    return next(r for r in metrics["backends"] if r["head"] == head and r["precision"] == precision)


def test_split_head_int8_keeps_the_tasks_metric_and_the_stock_head_collapses(run):
    task, root = run
    m = _metrics(root)
    assert m["task"] == task and m["metric_key"] == member(task).metric_key and m["head"] == "split"
    fp32, int8 = _row(m, "split", "FP32"), _row(m, "split", "INT8")
    stock_fp32, stock_int8 = _row(m, "stock", "FP32"), _row(m, "stock", "INT8")
    print(f"\n{task}: FP32 {fp32['map50_95']:.4f} (box {fp32['box_map50_95']:.4f})  INT8 split {int8['map50_95']:.4f} "
          f"cos {int8['cosine_mean']:.4f}  INT8 stock {stock_int8['map50_95']:.4f} cos {stock_int8['cosine_mean']:.4f}  "
          f"ultralytics val {m['ultralytics_val']['map50_95']:.4f}")
    assert fp32["map50_95"] > FLOOR[task], "the small sample model learned too little for the comparison to mean anything"
    assert int8["map50_95"] >= fp32["map50_95"] - 0.03  # the small model's honest bound (the issue's: within 2 pt)
    assert stock_fp32["map50_95"] == pytest.approx(fp32["map50_95"], abs=2e-3)  # same network, other output layout
    assert stock_int8["map50_95"] < 0.5 * stock_fp32["map50_95"]  # one INT8 scale for pixels and scores
    assert Paired.from_dict(stock_int8["paired"]).verdict == "worse"
    assert m["comparison"]["paired"] == int8["paired"]
    assert m["verdict"].startswith(f"INT8 RKNN simulator (split head): {member(task).metric_label} ")


def test_workbook_fp32_agrees_with_ultralytics_val(run):
    """Mask mAP at the input's full resolution and OKS keypoint mAP with the data set's sigmas, as ultralytics' val()
    scores them on the same weights: within 1 pt (the box mAP beside it: within 2 pt, seen 0.0-1.1 pt apart)."""
    task, root = run
    m = _metrics(root)
    fp32, theirs = _row(m, "split", "FP32"), m["ultralytics_val"]
    assert abs(fp32["map50_95"] - theirs["map50_95"]) <= 0.01
    assert abs(fp32["box_map50_95"] - theirs["box_map50_95"]) <= 0.02


def test_the_split_head_gives_each_part_its_own_output(run):
    task, root = run
    exported = json.loads((root / "model" / "export_check.json").read_text())
    assert exported["task"] == task and exported["head"] == "split"
    outputs = [o.name for o in onnx.load(str(root / "model" / "model.onnx")).graph.output]
    extra = "coef" if task == "segment" else "kpt"
    assert outputs[:4] == ["box8", "cls8", "sum8", f"{extra}8"] and (outputs[-1] == "protos") == (task == "segment")
    assert len(onnx.load(str(root / "model" / "model_stock.onnx")).graph.output) == (2 if task == "segment" else 1)


def test_notebook_30_names_the_tasks_metric_and_draws_its_pictures(run):
    task, root = run
    m = _metrics(root)
    nb = nbformat.read(root / "executed" / "30_simulator_inference.ipynb", 4)
    text = "".join(o.get("data", {}).get("text/markdown", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    label = member(task).metric_label.split(" (")[0]
    assert f"{label} {_row(m, 'stock', 'INT8')['map50_95']:.3f}" in text and "top-1" not in text
    assert (root / "eval" / "detections.png").stat().st_size > 0 and (root / "eval" / "colour_order.png").stat().st_size > 0
    saved = json.loads((root / "eval" / "detections.json").read_text())
    first = saved["backends"][_row(m, "split", "FP32")["name"]][0]
    if task == "segment":  # the confident instances keep their masks (RLE)
        assert any(mask and mask["size"] for mask in first["masks"])
    else:
        assert len(first["keypoints"][0]) == saved["kpt_shape"][0] and saved["skeleton"]


def test_the_bundle_ships_the_tasks_decode_byte_for_byte(run):
    task, root = run
    deploy = root / "board" / "deploy"
    ours = Path(__file__).resolve().parents[1] / "helpers" / "tasks" / task / "postprocess.py"
    assert (deploy / f"postprocess_{task}.py").read_bytes() == ours.read_bytes()
    assert (deploy / "postprocess.py").is_file()  # the detector's decode it imports
    config = json.loads((deploy / "model.json").read_text())
    assert config["task"] == task and config["head"] == "split"
    if task == "pose":  # the data set's skeleton travels in the export's metadata: run_rknn.py --draw joins it
        assert config["kpt_shape"] == [7, 3] and config["skeleton"] and all(len(chain) >= 2 for chain in config["skeleton"])


def test_ultralytics_onnx_of_the_same_model_is_split_and_scores_like_its_pt(pose_series, tmp_path):  # noqa: F811
    """The pose series' trained model exported the way users do (`YOLO(pt).export(format="onnx")`) and given with only
    model, data_dir and imgsz: notebook 10 splits its head by graph surgery, and notebooks 20-30 give the .pt's figures:
    the same FP32 metric (same weights), INT8 within the same bound, the stock head's INT8 collapse beside it. (Pose:
    its split appends the keypoint transform; test_onnx_split_instances shows both tasks' surgery equals the .pt's
    split bit for bit, on random weights.)"""
    from ultralytics import YOLO

    from helpers.runner.series import run_series
    from helpers.steps.export.detect_sample import offline

    task, root = "pose", pose_series
    params = json.loads((root / "params.json").read_text())
    onnx_path = tmp_path / f"{task}.onnx"
    with offline():
        exported = YOLO(str(root / "model" / "model.pt")).export(format="onnx", imgsz=SMALL[task]["imgsz"], device="cpu")
    Path(exported).replace(onnx_path)
    config = {"common": {"model": str(onnx_path), "data_dir": params["10_export"]["data_dir"], "imgsz": SMALL[task]["imgsz"]},
              "20_convert": {"calib_images": 16}, "30_simulator_inference": {"batch": 8, "pictures": 1}}
    result = run_series(config, tmp_path / "run", only="10,20,30", progress=False, render=False, log=lambda *_: None)
    assert result.failed is None, result.failure
    check = json.loads((tmp_path / "run" / "model" / "export_check.json").read_text())
    assert check["task"] == task and check["head"] == "split"  # read from the ONNX's metadata, split by surgery
    theirs, ours = _metrics(tmp_path / "run"), _metrics(root)
    fp32, int8 = _row(theirs, "split", "FP32"), _row(theirs, "split", "INT8")
    print(f"\n{task} ONNX: FP32 {fp32['map50_95']:.4f} (.pt {_row(ours, 'split', 'FP32')['map50_95']:.4f})  "
          f"INT8 split {int8['map50_95']:.4f}  INT8 stock {_row(theirs, 'stock', 'INT8')['map50_95']:.4f}")
    assert fp32["map50_95"] == pytest.approx(_row(ours, "split", "FP32")["map50_95"], abs=2e-3)
    assert int8["map50_95"] >= fp32["map50_95"] - 0.03  # as the .pt's split head: test above
    assert _row(theirs, "stock", "INT8")["map50_95"] < 0.5 * fp32["map50_95"]
