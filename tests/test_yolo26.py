"""YOLO26 (an end-to-end head: one-to-one branch, reg_max 1, top-k instead of NMS) the way a user brings it: a .pt
trained from yolo26n.yaml (tests/yolo26_support.py) and its data.yaml. Notebook 10's guard against the original
model's own predict() (and a YOLO11-style decode it must stop), the C++ decode against postprocess.py on the
model's outputs, and the whole series 00 -> 60 with only model, data_dir and imgsz: FP32 against ultralytics'
val(), INT8 split within 2 pt of FP32, the stock head's INT8 next to it, the bundle's runner decoding it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_deploy_detect import assert_demo_rows, harness, needs_gxx, parsed, printed, run_harness  # noqa: F401  (harness: fixture)
from yolo26_support import tiny_yolo26  # noqa: F401  (session fixture: one training per session)

from helpers.core.errors import WorkbookError
from helpers.core.paths import Run
from helpers.steps.export import guard
from helpers.tasks.detect import postprocess as pp

pytestmark = pytest.mark.slow


def _canvases(tiny, n: int) -> tuple[list[np.ndarray], list]:
    from helpers.tasks.detect.images import load_letterboxed
    from helpers.tasks.detect.labels import read_split

    return load_letterboxed(read_split(tiny.data_yaml, "val").subset(n).paths, tiny.imgsz)


def softmax_dfl(box: np.ndarray, stride: int) -> np.ndarray:
    """The YOLOv8/11 decode the workbook applied to every model before: a softmax over reg_max bins, even for 1 bin."""
    c, h, w = box.shape
    dist = pp.softmax(box.reshape(4, c // 4, h * w).astype(np.float32), axis=1)
    ltrb = (dist * np.arange(c // 4, dtype=np.float32)[None, :, None]).sum(axis=1)
    gy, gx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    cx, cy = gx.ravel() + 0.5, gy.ravel() + 0.5
    return np.stack([cx - ltrb[0], cy - ltrb[1], cx + ltrb[2], cy + ltrb[3]], axis=1) * stride


def test_guard_passes_both_heads_and_stops_a_yolo11_style_decode(tiny_yolo26, tmp_path, monkeypatch):
    """Notebook 10's guard (guard.check_run, what its cell calls): both exports predict what ultralytics' predict() of
    the .pt predicts; with the families' decodes swapped (YOLO26 read as YOLO11: DFL bins and NMS) it stops in one
    sentence naming the head, the structure and what to do."""
    run = Run.at(tmp_path / "run")
    for head in ("split", "stock"):
        (run.model / f"model_{head}.onnx").write_bytes(getattr(tiny_yolo26, f"{head}_onnx").read_bytes())
    args = (run, "detect", tiny_yolo26.train.weights, tiny_yolo26.data_yaml, tiny_yolo26.imgsz)
    rows = guard.check_run(*args)
    print("\n" + "\n".join(f"{r['export']}: found {r['found_theirs']:.2f}/{r['found_ours']:.2f} of {r['theirs']}/{r['ours']} "
                           f"boxes, IoU {r['mean_iou']:.4f}" for r in rows))
    assert [r["export"] for r in rows] == ["model_split.onnx", "model_stock.onnx"] and all(r["ok"] for r in rows)
    assert all(r["theirs"] > 0 for r in rows), "the original model predicted nothing confident: the check would prove nothing"
    assert json.loads((run.model / "guard.json").read_text())["rows"][0]["structure"].startswith("end-to-end head")

    def yolo11_decode(outputs, lb, conf, iou, max_det, end2end=False):  # noqa: ANN001, ARG001 (reads every head as YOLO11's)
        with monkeypatch.context() as patched:
            patched.setattr(pp, "dfl_decode", softmax_dfl)
            return pp.postprocess(outputs, lb, conf=conf, iou=iou, max_det=max_det)

    with pytest.raises(WorkbookError) as err:
        guard.check_run(*args, decode=yolo11_decode)
    msg = str(err.value)
    print(msg)
    assert msg.count(". ") == 0 and msg.endswith(".")
    for text in ("split-head export model_split.onnx", "end-to-end head", "reg_max 1", "does not predict what the original model",
                 "do not convert it", "try head: stock"):
        assert text in msg, text


@needs_gxx
@pytest.mark.parametrize("conf", [0.05, 0.01])
def test_cpp_topk_matches_postprocess_on_yolo26_outputs(harness, tiny_yolo26, tmp_path, conf):  # noqa: F811
    """The model's split outputs (ONNX Runtime) on 8 val images, quantized to int8 per tensor as the board returns
    them: the C++ decode with --end2end (reg_max 1 distances, top-k, no NMS) gives postprocess.py's boxes."""
    from helpers.tasks.detect.images import onnx_runner

    canvases, _ = _canvases(tiny_yolo26, 8)
    run = onnx_runner(tiny_yolo26.split_onnx)
    total = 0
    for i, canvas in enumerate(canvases):
        lb = pp.letterbox_geometry(120, 160, tiny_yolo26.imgsz)  # as if the canvas came from a 160 x 120 image
        stdout, used = run_harness(harness, tmp_path / f"img{i}", run(canvas), (120, 160), lb.size, conf, 0.7, end2end=True)
        _, cls, scores, boxes = parsed(stdout)
        want = pp.postprocess(used, lb, conf=conf, iou=0.7, end2end=True)
        assert cls.tolist() == want.classes.tolist(), f"image {i}"
        if len(want):
            assert np.abs(boxes - want.boxes).max() <= 0.5 and np.abs(scores - want.scores).max() <= 1e-4
        total += len(want)
    assert total > 0, "no detection at all: the comparison would prove nothing"


# ---------------------------------------------------------------- the whole series, 00 -> 60

@pytest.fixture(scope="module")
def series26(tiny_yolo26, tmp_path_factory) -> Path:  # noqa: F811
    """00 -> 60 given the .pt, its data.yaml and imgsz (plus small sizes for 20..60), as a user would."""
    from helpers.runner.series import run_series

    config = {"common": {"data_dir": str(tiny_yolo26.data_yaml), "imgsz": tiny_yolo26.imgsz},
              "10_export": {"model": str(tiny_yolo26.train.weights)},  # the task is read from the model
              "20_convert": {"calib_images": 16},
              "30_simulator_inference": {"batch": 4, "pictures": 1},
              "40_board_inference": {"sample_images": 2, "codegen": False},
              "50_accuracy_analysis": {"analysis_images": 1, "sweep_grid": [["normal", "layer"]], "demo_calib_images": 0,
                                       "batch": 4},
              "60_hybrid_quantization": {"analysis_images": 1, "auto_layers": 2, "search_budget": 2, "demo_calib_images": 0,
                                         "proposal": False}}
    root = tmp_path_factory.mktemp("yolo26_series") / "run"
    result = run_series(config, root, only="00,10,20,30,40,50,60", progress=False, render=False, log=lambda *_: None)
    assert result.failed is None, result.failure
    return root


def _row(m: dict, head: str, precision: str) -> dict:
    return next(r for r in m["backends"] if r["head"] == head and r["precision"] == precision)


def test_series_fp32_agrees_with_ultralytics_and_int8_split_keeps_it(series26):
    m = json.loads((series26 / "eval" / "metrics.json").read_text())
    fp32, int8 = _row(m, "split", "FP32"), _row(m, "split", "INT8")
    stock_fp32, stock_int8 = _row(m, "stock", "FP32"), _row(m, "stock", "INT8")
    uv = m["ultralytics_val"]
    print(f"\nYOLO26n: ultralytics val (nms=False) {uv['map50_95']:.4f}  FP32 {fp32['map50_95']:.4f}  INT8 split "
          f"{int8['map50_95']:.4f}  stock FP32 {stock_fp32['map50_95']:.4f} INT8 {stock_int8['map50_95']:.4f} "
          f"(cos {stock_int8['cosine_mean']:.4f})")
    assert m["end2end"] is True and m["reg_max"] == 1
    assert fp32["map50_95"] > 0.05, "the tiny YOLO26n learned too little for the comparison to mean anything"
    assert abs(fp32["map50_95"] - uv["map50_95"]) <= 0.01  # the decode and top-k agree with ultralytics' own
    assert stock_fp32["map50_95"] == pytest.approx(fp32["map50_95"], abs=1e-3)  # same branch, other output layout
    assert int8["map50_95"] >= fp32["map50_95"] - 0.02  # the split head keeps its INT8 within 2 pt
    assert "INT8 stock head" in stock_int8["name"]  # shown next to it, and it loses more than the split head does
    assert stock_fp32["map50_95"] - stock_int8["map50_95"] >= fp32["map50_95"] - int8["map50_95"]
    guard_rows = json.loads((series26 / "model" / "guard.json").read_text())["rows"]
    assert [r["ok"] for r in guard_rows] == [True, True]


def test_series_notebook_30_explains_the_end_to_end_head(series26):
    nb = json.loads((series26 / "executed" / "30_simulator_inference.ipynb").read_text())
    text = "".join("".join(o.get("data", {}).get("text/markdown", "")) for c in nb["cells"] if c["cell_type"] == "code"
                   for o in c.get("outputs", []))
    m = json.loads((series26 / "eval" / "metrics.json").read_text())
    assert "**End-to-end head.**" in text and "no non-maximum suppression" in text and "reg_max 1" in text
    assert f"{_row(m, 'split', 'FP32')['map50_95']:.3f}" in text and f"{m['ultralytics_val']['map50_95']:.3f}" in text


def test_series_50_and_60_score_yolo26_by_map(series26):
    import pandas as pd

    sweep = pd.read_csv(series26 / "analysis" / "sweep.csv")
    compare = pd.read_csv(series26 / "hybrid" / "compare.csv").set_index("model")
    assert "map50_95" in sweep.columns and sweep["map50_95"].between(0, 1).all()
    m = json.loads((series26 / "eval" / "metrics.json").read_text())
    assert compare.loc["FP32", "map50_95"] == pytest.approx(_row(m, "split", "FP32")["map50_95"], abs=1e-6)


def test_series_bundle_runner_decodes_yolo26(series26, tmp_path):
    """The bundle notebook 40 built: model.json says end2end, and run_rknn.py (with the stand-in runtime computing the
    model's outputs) prints postprocess.py's end-to-end detections."""
    from test_deploy import run_on_stand_in

    from helpers.tasks.detect.images import load_letterboxed
    from helpers.tasks.feeds import fp32_runner

    bundle = series26 / "board" / "deploy"
    cfg = json.loads((bundle / "model.json").read_text())
    assert cfg["task"] == "detect" and cfg["head"] == "split" and cfg["end2end"] is True
    assert (bundle / "postprocess.py").read_bytes() == Path(pp.__file__).read_bytes()
    res = run_on_stand_in(bundle, series26 / "model" / "model.onnx", tmp_path, "images", "--conf", "0.05")
    assert res.returncode == 0, res.stderr
    images = sorted((bundle / "images").iterdir())
    canvases, geoms = load_letterboxed(images, cfg["input_size"])
    outs = fp32_runner(series26 / "model" / "model.onnx", [0, 0, 0], [255, 255, 255]).outputs(np.stack(canvases))
    total = 0
    for (_, count, rows), o, lb in zip(printed(res.stdout), outs, geoms):
        want = pp.postprocess(o, lb, conf=0.05, iou=0.7, end2end=True)
        assert count == len(want) == len(rows)
        assert [float(r[1]) for r in rows] == [float(f"{s:.3f}") for s in want.scores]
        total += len(want)
    assert total > 0, "the stand-in gave no detection at all on the sample images"


def test_series_cpp_demo_decodes_yolo26_with_a_stand_in_runtime(series26, tmp_path):
    """The workbook's C++ detector demo (the sources the bundle's cpp/src ships) built against the stand-in runtime
    (tests/cpp/stand_in: serves int8 outputs of this model computed by ONNX Runtime), run with --end2end on the
    bundle's images: it prints postprocess.py's end-to-end detections."""
    import subprocess

    from test_deploy_detect import GXX, HERE, STB, serve_outputs

    from helpers.deploy import codegen
    from helpers.tasks.detect.images import load_letterboxed
    from helpers.tasks.feeds import fp32_runner

    if GXX is None or not (STB / "stb_image.h").is_file():
        pytest.skip("needs g++ and stb_image.h (apt-get install libstb-dev) to build the C++ detector demo")
    exe = tmp_path / "rknn_detect_demo"
    stand_in = HERE / "cpp" / "stand_in"
    res = subprocess.run([GXX, "-std=c++11", "-O1", "-Wall", "-Wextra", f"-I{stand_in}", f"-I{STB}", f"-I{codegen.CPP_DIR}",
                          str(codegen.CPP_DIR / "detect_demo.cc"), str(stand_in / "rknn_stand_in.cc"), "-o", str(exe)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    bundle = series26 / "board" / "deploy"
    size = json.loads((bundle / "model.json").read_text())["input_size"]
    images = sorted((bundle / "images").iterdir())
    canvases, geoms = load_letterboxed(images, size)
    served = tmp_path / "served"
    used = serve_outputs(served, size, fp32_runner(series26 / "model" / "model.onnx", [0, 0, 0],
                                                   [255] * 3).outputs(np.stack(canvases)))
    res = subprocess.run([str(exe), "model.rknn", "labels.txt", *[f"images/{p.name}" for p in images], "--conf", "0.05",
                          "--end2end"],
                         cwd=bundle, env={"WORKBOOK_RKNN_STAND_IN": str(served), "PATH": "/usr/bin:/bin"}, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    labels = (bundle / "labels.txt").read_text().split()
    total = 0
    for (_, count, rows), outs, lb in zip(printed(res.stdout), used, geoms):
        want = pp.postprocess(outs, lb, conf=0.05, iou=0.7, end2end=True)
        assert count == len(want)
        assert_demo_rows(rows, want, labels)
        total += len(want)
    assert total > 0, "no detection: the comparison would prove nothing"
