"""Notebook 40 for a detector, on the tiny trained detector of tests/detect_support.py converted by the real
toolkit: the C++ decode (helpers/deploy/cpp/yolo_detect.h) compiled into a harness and checked against
postprocess.py on the same raw outputs, the codegen project with the workbook's detector demo, the bundle's
runner end to end with FakeRKNNLite (tests/fake_rknnlite.py: a STAND-IN for the board's runtime library that
computes the same model's outputs with ONNX Runtime), and the detector's board-vs-simulator comparison (mAP50-95)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from board_support import BOARD_ID, needs_board
from detect_support import detect_series, tiny_detector  # noqa: F401  (session fixtures)
from raw_outputs import GXX, build_harness, dequantize, quantize, write_raw_outputs

from helpers.core.errors import WorkbookError
from helpers.core.paths import Run
from helpers.deploy import bundle, codegen
from helpers.steps import board
from helpers.steps.evaluate import simulator_from_record
from helpers.steps.judge import judge_for
from helpers.tasks import data
from helpers.tasks.detect.postprocess import letterbox_geometry, postprocess
from helpers.text import board as board_text
from helpers.toolkit.record import read_record

HERE = Path(__file__).resolve().parent
needs_gxx = pytest.mark.skipif(GXX is None, reason="needs g++ to compile the C++ decode")
DET = re.compile(r"^  (\S+)\s+([0-9.]+)  box x1=(-?\d+) y1=(-?\d+) x2=(-?\d+) y2=(-?\d+)$")


def printed(stdout: str) -> list[tuple[str, int, list[tuple[str, ...]]]]:
    """What the runner or the C++ demo printed, per image: (image, the count it said, its detection rows)."""
    blocks = re.split(r"^(images/\S+): (\d+) detection\(s\)$", stdout, flags=re.M)[1:]
    return [(path, int(count), [DET.match(ln).groups() for ln in body.splitlines() if DET.match(ln)])
            for path, count, body in zip(blocks[0::3], blocks[1::3], blocks[2::3])]


def assert_demo_rows(rows: list[tuple[str, ...]], want, labels: list[str]) -> None:  # noqa: ANN001 (Detections)
    """The C++ demo's rows are postprocess.py's detections: same class names, scores to 0.001, boxes to 1 px."""
    assert len(rows) == len(want)
    for (name, score, *box), cls, s, b in zip(rows, want.classes, want.scores, want.boxes):
        assert name == labels[cls] and abs(float(score) - s) <= 0.0011 and np.abs(np.array(box, float) - b).max() <= 1


@pytest.fixture(scope="module")
def det_run(detect_series, tmp_path_factory) -> Run:  # noqa: F811 (the imported fixture)
    """Notebooks 10 and 20's outputs for the tiny detector (split head, converted by the real toolkit for rk3588 on 16
    calibration images): copied from the session's detection series run (tests/detect_support.detect_series)."""
    run = Run.at(tmp_path_factory.mktemp("det40") / "run")
    for folder in ("model", "rknn"):
        shutil.copytree(detect_series / folder, run.root / folder, dirs_exist_ok=True)
    record = read_record(run)
    assert record.config.target_platform == "rk3588" and len(record.dataset.read_text().split()) == 16
    # notebook 30's record of how many val images it scored (the first 8): notebook 40's board section scores the same
    (run.eval / "metrics.json").write_text(json.dumps({"task": "detect", "head": "split", "images": 8, "backends": []}))
    return run


@pytest.fixture(scope="module")
def judged(det_run, tiny_detector):
    """The judge on 8 val images and the INT8 simulator's raw outputs on its letterboxed pixels."""
    record = read_record(det_run)
    judge = judge_for(det_run, record, tiny_detector.data_yaml, 8)
    with simulator_from_record(record, det_run.logs / "sim.log", batch=1) as sim:
        return judge, sim.outputs(judge.pixels)


@pytest.fixture(scope="module")
def det_bundle(det_run, tiny_detector, tmp_path_factory) -> Path:
    """The detector's bundle with the C++ demo, extracted from its tarball into a fresh folder."""
    record = read_record(det_run)
    val = data.load_detect_split(tiny_detector.data_yaml, "val")
    demo = codegen.generate_cpp_demo(record, det_run.board / "cpp", det_run.logs / "codegen.log", image=val.paths[0])
    b = bundle.build_bundle(det_run, record, list(val.classes), cpp_demo=demo, sample_images=val.paths[:3])
    out = tmp_path_factory.mktemp("det_extracted")
    with tarfile.open(b.tarball) as tar:
        tar.extractall(out)
    return out / "deploy"


# ---------------------------------------------------------------- the C++ decode against postprocess.py

@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    return build_harness(tmp_path_factory, "decode_harness")


def run_harness(exe: Path, folder: Path, outputs: list[np.ndarray], hw: tuple[int, int], size: int, conf: float, iou: float,
                int8: bool = True, end2end: bool = False) -> tuple[str, list[np.ndarray]]:
    """Dump one image's raw outputs (int8 with zp/scale, or float32) for the harness; returns its stdout and
    the float outputs the C++ side decodes (dequantized when int8), for postprocess.py. end2end: top-k, no NMS."""
    shaped = [np.asarray(o, np.float32).reshape(o.shape[-3:]) if np.asarray(o).ndim >= 3 else np.asarray(o, np.float32)
              for o in outputs]
    manifest, used = write_raw_outputs(folder, f"{hw[0]} {hw[1]} {size} {conf} {iou} {len(outputs)}", shaped, int8)
    res = subprocess.run([str(exe), str(manifest), *(["--end2end"] if end2end else [])], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout, used


def parsed(stdout: str) -> tuple[list[float], np.ndarray, np.ndarray, np.ndarray]:
    """(letterbox scale/left/top/new w/new h, classes, scores, boxes) from the harness's output."""
    geo = [float(v) for v in next(ln for ln in stdout.splitlines() if ln.startswith("letterbox")).split()[1:]]
    rows = [ln.split()[1:] for ln in stdout.splitlines() if ln.startswith("det ")]
    cls = np.array([int(r[0]) for r in rows], np.int64)
    return geo, cls, np.array([float(r[1]) for r in rows]), np.array([[float(v) for v in r[2:]] for r in rows]).reshape(-1, 4)


def agreement(harness: Path, judged, tmp_path: Path, conf: float, int8: bool = True) -> dict[str, float]:
    """C++ vs postprocess.py on every judged image: counts, classes, largest box and score difference."""
    judge, outs = judged
    worst_box, worst_score, total = 0.0, 0.0, 0
    for i, (o, lb) in enumerate(zip(outs, judge.geoms)):
        stdout, used = run_harness(harness, tmp_path / f"img{i}_{conf}", o, (lb.height, lb.width), lb.size, conf, 0.7, int8)
        geo, cls, scores, boxes = parsed(stdout)
        assert geo[1:3] == [lb.left, lb.top] and abs(geo[0] - lb.scale) < 1e-9
        want = postprocess(used, lb, conf=conf, iou=0.7)
        assert len(cls) == len(want) and cls.tolist() == want.classes.tolist(), f"image {i}: {cls} vs {want.classes}"
        if len(want):
            worst_box = max(worst_box, float(np.abs(boxes - want.boxes).max()))
            worst_score = max(worst_score, float(np.abs(scores - want.scores).max()))
        total += len(want)
    return {"detections": total, "max_box_px": worst_box, "max_score": worst_score}


@needs_gxx
@pytest.mark.parametrize("conf", [0.25, 0.05])
def test_cpp_decode_matches_postprocess_on_int8_outputs(harness, judged, tmp_path, conf):
    """The simulator's raw outputs of 8 val images, quantized to int8 per tensor as the board returns them:
    the C++ side dequantizes with zp/scale and decodes; postprocess.py decodes the same dequantized values.
    Same number of boxes, same classes in the same order, corners within 0.5 px."""
    found = agreement(harness, judged, tmp_path, conf)
    print(f"\nC++ vs postprocess.py at conf {conf}: {found}")
    assert found["detections"] > 0, "no detection at all: the comparison would prove nothing"
    assert found["max_box_px"] <= 0.5 and found["max_score"] <= 1e-4


@needs_gxx
def test_cpp_decode_matches_postprocess_on_float_outputs(harness, judged, tmp_path):
    found = agreement(harness, judged, tmp_path, 0.25, int8=False)
    assert found["detections"] > 0 and found["max_box_px"] <= 0.5 and found["max_score"] <= 1e-4


@needs_gxx
@pytest.mark.parametrize("hw, size", [((426, 640), 160), ((480, 640), 160), ((640, 427), 160), ((33, 97), 64), ((160, 160), 160),
                                      ((1080, 1920), 640), ((301, 299), 128)])
def test_cpp_letterbox_geometry_rounds_like_python(harness, tmp_path, hw, size):
    """Python's round() sends halves to the even side (426 x 0.25 = 106.5 -> 106); the C++ geometry must too."""
    (tmp_path / "m.txt").write_text(f"{hw[0]} {hw[1]} {size} 0.25 0.7 0\n")
    out = subprocess.run([str(harness), str(tmp_path / "m.txt")], capture_output=True, text=True, timeout=30).stdout
    scale, left, top, new_w, new_h = (float(v) for v in out.splitlines()[0].split()[1:])
    lb = letterbox_geometry(hw[0], hw[1], size)
    assert (left, top, new_w, new_h) == (lb.left, lb.top, round(hw[1] * lb.scale),
                                         round(hw[0] * lb.scale)) and abs(scale - lb.scale) < 1e-9


@needs_gxx
def test_cpp_decode_refuses_the_stock_layout(harness, tiny_detector, tmp_path):
    from helpers.tasks.detect.images import load_letterboxed, onnx_runner

    canvases, geoms = load_letterboxed(data.load_detect_split(tiny_detector.data_yaml, "val").paths[:1], tiny_detector.imgsz)
    stock = onnx_runner(tiny_detector.stock_onnx)(canvases[0])  # one [1, 4 + classes, anchors] tensor
    folder = tmp_path / "stock"
    folder.mkdir()
    a = np.asarray(stock[0], np.float32)[0]
    a.tofile(folder / "out0.bin")
    (folder / "m.txt").write_text(f"{geoms[0].height} {geoms[0].width} {geoms[0].size} 0.25 0.7 1\n{a.shape[0]} 1 "
                                  f"{a.shape[1]} f32 0 1.0 {folder / 'out0.bin'}\n")
    out = subprocess.run([str(harness), str(folder / "m.txt")], capture_output=True, text=True, timeout=30).stdout
    assert "refused the model has the stock detector head" in out and "export it with head: split in notebook 10" in out


# ---------------------------------------------------------------- the codegen project and the README

def test_codegen_project_carries_the_detector_demo(det_bundle):
    cpp = det_bundle / "cpp"
    for src in codegen.DETECT_SOURCES:
        assert (cpp / "src" / src.name).read_bytes() == src.read_bytes()
    cmake = (cpp / "CMakeLists.txt").read_text()
    assert cmake.count(f"add_executable({codegen.DETECT_PROGRAM} src/detect_demo.cc)") == 1
    assert "add_executable(rknn_app_demo" in cmake
    run_detect = cpp / "run_detect.sh"
    assert run_detect.stat().st_mode & 0o111 and "./rknn_detect_demo model.rknn labels.txt images/*" in run_detect.read_text()
    cfg = json.loads((det_bundle / "model.json").read_text())
    assert cfg["task"] == "detect" and cfg["head"] == "split" and "rknn_detect_demo" in cfg["cpp_demo"]


def test_readme_explains_the_detector(det_bundle):
    readme = (det_bundle / "README.md").read_text()
    sample = sorted((det_bundle / "images").iterdir())[0].name
    for text in ("python3 run_rknn.py images/", f"images/{sample}: 2 detection(s)", "What it means",
                 "the original image's pixels",
                 "--conf", "--iou", "non-maximum suppression", "**letterboxed** to", "## Why the split head", "round to 0",
                 "rknn_detect_demo", "./build_linux.sh rk3588", "./run_detect.sh", "dequantizes it with the zero point"):
        assert text in readme, text
    assert "centre-cropped" not in readme and "top-5" not in readme and "$" not in readme


STB = Path("/usr/include/stb")


@pytest.fixture(scope="module")
def detect_demo(det_bundle, tmp_path_factory) -> Path:
    """The bundle's detect_demo.cc built on this PC against tests/cpp/stand_in/: rknn_api.h and rknn_stand_in.cc, a
    STAND-IN for the SDK's header and librknnrt.so (the part of the C API the demo calls, serving outputs the test
    computed), and stb_image.h from the system (apt-get install libstb-dev)."""
    if GXX is None or not (STB / "stb_image.h").is_file():
        pytest.skip("needs g++ and stb_image.h (apt-get install libstb-dev) to build the C++ detector demo")
    exe = tmp_path_factory.mktemp("demo") / "rknn_detect_demo"
    src = det_bundle / "cpp" / "src"
    res = subprocess.run([GXX, "-std=c++11", "-O1", "-Wall", "-Wextra", f"-I{HERE / 'cpp' / 'stand_in'}", f"-I{STB}", f"-I{src}",
                          str(src / "detect_demo.cc"), str(HERE / "cpp" / "stand_in" / "rknn_stand_in.cc"), "-o", str(exe)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return exe


def serve_outputs(folder: Path, size: int, per_image: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """model.txt and out<k>_<i>.bin for the stand-in runtime: each output quantized to int8 with its own zero point
    and scale (the same for every image, as in a real model); returns the dequantized outputs the demo decodes."""
    folder.mkdir(parents=True, exist_ok=True)
    first = [np.asarray(o, np.float32)[0] for o in per_image[0]]
    params = [quantize(np.concatenate([np.ravel(img[i]) for img in per_image]))[1:] for i in range(len(first))]
    lines = [f"input {size} {size}", f"outputs {len(first)}"] + [f"{a.shape[0]} {a.shape[1]} {a.shape[2]} {zp} {scale!r}"
                                                                for a, (zp, scale) in zip(first, params)]
    (folder / "model.txt").write_text("\n".join(lines) + "\n")
    used = []
    for k, outs in enumerate(per_image):
        used.append([])
        for i, (o, (zp, scale)) in enumerate(zip(outs, params)):
            q = np.clip(np.round(np.asarray(o, np.float32) / np.float32(scale)) + zp, -128, 127).astype(np.int8)
            q.tofile(folder / f"out{k}_{i}.bin")
            used[-1].append(dequantize(q, zp, scale))
    return used


def test_detect_demo_runs_end_to_end_with_a_stand_in_runtime(detect_demo, det_bundle, det_run, tmp_path):
    """The C++ demo as built for the board, on the bundle's sample images: it feeds exactly the workbook's
    letterboxed pixels (uint8 NHWC), asks for int8 outputs, dequantizes them with the zero point and scale it
    queried, and prints postprocess.py's detections (class, score, box) in the Python runner's format."""
    from helpers.tasks.detect.images import load_letterboxed
    from helpers.tasks.feeds import fp32_runner

    size = json.loads((det_bundle / "model.json").read_text())["input_size"]
    images = sorted((det_bundle / "images").iterdir())
    canvases, geoms = load_letterboxed(images, size)
    used = serve_outputs(tmp_path, size, fp32_runner(det_run.model / "model.onnx", [0, 0, 0], [255, 255,
                                                                                               255]).outputs(np.stack(canvases)))
    env = {"WORKBOOK_RKNN_STAND_IN": str(tmp_path), "PATH": "/usr/bin:/bin"}
    res = subprocess.run([str(detect_demo), "model.rknn", "labels.txt", *[f"images/{p.name}" for p in images]], cwd=det_bundle,
                         env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    labels = (det_bundle / "labels.txt").read_text().split()
    per_image = printed(res.stdout)
    assert [path for path, _, _ in per_image] == [f"images/{p.name}" for p in images]
    total = 0
    for k, ((_, count, rows), outs, lb, canvas) in enumerate(zip(per_image, used, geoms, canvases)):
        fed = np.fromfile(tmp_path / f"input{k}.bin", np.uint8).reshape(size, size, 3)
        assert np.array_equal(fed, canvas), f"image {k}: the demo's letterbox differs from the workbook's"
        want = postprocess(outs, lb, conf=0.25, iou=0.7)
        assert count == len(want)
        assert_demo_rows(rows, want, labels)
        total += len(want)
    assert total > 0, "no detection: the comparison would prove nothing"


def test_detect_demo_refuses_a_stock_head_and_a_non_rknn_file(detect_demo, det_bundle, tmp_path):
    (tmp_path / "model.txt").write_text("input 128 128\noutputs 1\n8 1 336 0 0.1\n")
    env = {"WORKBOOK_RKNN_STAND_IN": str(tmp_path), "PATH": "/usr/bin:/bin"}
    res = subprocess.run([str(detect_demo), "model.rknn", "labels.txt", "images"], cwd=det_bundle, env=env, capture_output=True,
                         text=True)
    assert res.returncode == 1 and res.stdout == "" and res.stderr.count("\n") == 1
    assert res.stderr.startswith("error: model.rknn has the stock detector head") and ("export it with head: split in "
                                                                                       "notebook 10") in res.stderr
    not_rknn = tmp_path / "x.rknn"
    not_rknn.write_bytes(b"ONNX")
    res = subprocess.run([str(detect_demo), str(not_rknn), "labels.txt", "images"], cwd=det_bundle, env=env,
                         capture_output=True, text=True)
    assert res.returncode == 1 and "rknn_init failed; check that librknnrt.so is not older" in res.stderr
    res = subprocess.run([str(detect_demo), "model.rknn"], cwd=det_bundle, env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "usage: rknn_detect_demo model.rknn labels.txt image" in res.stderr


def test_detect_demo_compiles_against_the_real_sdk(det_bundle):
    """With the rknpu2 SDK at hand (RKNPU2=path to rknn-toolkit2/rknpu2), the demo compiles against its real rknn_api.h."""
    import os

    sdk = os.environ.get("RKNPU2")
    if not sdk or GXX is None:
        pytest.skip("set RKNPU2 to the rknpu2 SDK (and have g++) to compile the demo against the real rknn_api.h")
    res = subprocess.run([GXX, "-std=c++11", "-fsyntax-only", f"-I{sdk}/runtime/Linux/librknn_api/include",
                          f"-I{sdk}/examples/3rdparty/stb",
                          f"-I{det_bundle / 'cpp' / 'src'}", str(det_bundle / "cpp" / "src" / "detect_demo.cc")],
                              capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]


# ---------------------------------------------------------------- the Python runner end to end with the stand-in runtime

def test_runner_prints_and_draws_the_workbook_detections(det_bundle, det_run, tmp_path):
    """run_rknn.py on the bundled sample images with FakeRKNNLite (real outputs of the same model): every printed
    detection (class name, score, box) is postprocess.py's on those outputs, and each image is drawn with its boxes."""
    from test_deploy import run_on_stand_in

    from helpers.tasks.detect.images import load_letterboxed
    from helpers.tasks.feeds import fp32_runner

    onnx = det_run.model / "model.onnx"
    drawn = tmp_path / "drawn"
    res = run_on_stand_in(det_bundle, onnx, tmp_path, "images", "--draw", str(drawn))
    assert res.returncode == 0, res.stderr
    images = sorted((det_bundle / "images").iterdir())
    labels = (det_bundle / "labels.txt").read_text().split()
    canvases, geoms = load_letterboxed(images, json.loads((det_bundle / "model.json").read_text())["input_size"])
    outs = fp32_runner(onnx, [0, 0, 0], [255, 255, 255]).outputs(np.stack(canvases))
    per_image = printed(res.stdout)
    assert [path for path, _, _ in per_image] == [f"images/{p.name}" for p in images]
    total = 0
    for (path, count, rows), o, lb in zip(per_image, outs, geoms):
        want = postprocess(o, lb, conf=0.25, iou=0.7)
        assert count == len(want) == len(rows)
        for (name, score, *box), cls, s, b in zip(rows, want.classes, want.scores, want.boxes):
            assert name == labels[cls] and score == f"{s:.3f}" and [int(v) for v in box] == [int(f"{v:.0f}") for v in b]
        picture = cv2.imread(str(drawn / Path(path).name))
        assert picture is not None and picture.shape == cv2.imread(str(det_bundle / path)).shape
        if len(want):
            assert not np.array_equal(picture, cv2.imread(str(det_bundle / path)))  # boxes drawn on it
        total += len(want)
    assert total > 0, "the stand-in gave no detection at all on the sample images"


def test_runner_refuses_a_stock_head_in_one_sentence(det_bundle, det_run, tmp_path):
    """A bundle whose model has the stock head (model.json from the record's ONNX) is refused before loading; a
    model that gives one output anyway (the stand-in running the stock ONNX) is refused by postprocess.require_split."""
    from test_deploy import run_on_stand_in

    stock_run = Run.at(tmp_path / "stock_run")
    shutil.copytree(det_run.rknn, stock_run.rknn, dirs_exist_ok=True)
    record = replace(read_record(det_run), source=det_run.model / "model_stock.onnx")
    assert codegen.detector_head(record) == "stock"
    b = bundle.build_bundle(stock_run, record, ["a", "b", "c", "d"])
    res = run_on_stand_in(b.folder, det_run.model / "model_stock.onnx", tmp_path, str(det_bundle / "images"))
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "model.rknn has the stock detector head" in lines[0]
    assert "export it with head: split in notebook 10" in lines[0] and res.stdout == ""
    res = run_on_stand_in(det_bundle, det_run.model / "model_stock.onnx", tmp_path, "images")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "has the stock detector head (one output mixing box pixels" in lines[0]


# ---------------------------------------------------------------- board vs simulator in mAP50-95

def test_board_comparison_scores_both_in_map(judged):
    """compare_detector on real raw outputs: the simulator's, and FP32 ONNX Runtime's standing in for a board's
    (the function only sees two output lists on the judge's images)."""
    judge, sim = judged
    det = board.compare_detector(judge, sim, judge.fp32_outputs, sdk="stand-in: FP32 outputs")
    assert det.simulator.value == pytest.approx(judge.score(sim).value) and det.board.value == pytest.approx(judge.fp32.value)
    assert det.board.mean_cosine == pytest.approx(1.0) and 0.9 < det.cosines.mean() < 1.0
    table = det.table()
    assert list(table.index) == ["FP32 ONNX Runtime", "INT8 RKNN simulator", "INT8 board"] and "mAP50-95" in table.columns
    summary = det.summary()
    assert summary["task"] == "detect" and summary["images"] == 8 and summary["board"]["map50_95"] == judge.fp32.value
    assert summary["comparison"]["map50_95_delta_pt"] == round(100 * (judge.fp32.value - det.simulator.value), 2)
    json.dumps(summary, default=board.jsonable)
    line = board_text.detect_comparison(det)
    assert f"mAP50-95 {judge.fp32.value:.3f} on the board vs {det.simulator.value:.3f} in the simulator" in line
    assert det.paired.text in line and "paired bootstrap over 8 images" in line
    assert summary["comparison"]["paired"]["text"] == det.paired.text
    same = board.compare_detector(judge, sim, sim)
    assert same.summary()["comparison"]["map50_95_delta_pt"] == 0 and same.cosines.min() == pytest.approx(1.0)


@pytest.mark.skipif(bool(BOARD_ID), reason="a board is attached (RKNN_DEVICE_ID set): the no-board path does not apply")
def test_detector_on_board_without_a_board_stops_at_the_board(det_run, tiny_detector, capsys):
    """The real path runs up to the board (judge built, the toolkit asked for devices) and stops there in one sentence;
    the notebook's skip line says what it would do."""
    record = read_record(det_run)
    with pytest.raises(WorkbookError, match=r"No board found for target='rk3588'; connect the board by USB OTG"):
        board.detector_on_board(det_run, record, tiny_detector.data_yaml, 2, "", None)
    assert (det_run.logs / "40_board.log").is_file() and not (det_run.board / "metrics.json").exists()
    line = board_text.skip_board_comparison("detect", 0)
    assert capsys.readouterr().out == line + "\n" and "\n" not in line
    assert line.startswith("[skipped: no board] Running the detector on the board over every val image (letterboxed, "
                           "as notebook 30 scored them) and "
                           "comparing its mAP50-95 and raw outputs with the simulator's needs a connected board")
    assert "over the first 5 val images (" in board_text.skip_board_comparison("detect", 5)


class StandInBoard:
    """A STAND-IN for board.open_board's runner (no board here): same constructor and calls, its outputs are the same
    model's FP32 outputs under ONNX Runtime; it records what detector_on_board asked of it."""

    seen: dict = {}

    def __init__(self, rknn_path, target, log_path, device_id="", core_mask="auto", record=None, **_):
        from helpers.tasks.feeds import fp32_runner

        self.seen.update(rknn=Path(rknn_path), target=target, device_id=device_id, core_mask=core_mask)
        self.onnx = fp32_runner(record.source, record.config.mean_values, record.config.std_values)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.onnx.close()

    def outputs(self, pixels):
        self.seen["pixels"] = pixels
        return self.onnx.outputs(pixels)

    def sdk_version(self) -> str:
        return "stand-in (ONNX Runtime)"


def test_detector_on_board_runs_the_whole_section_with_a_stand_in_board(det_run, tiny_detector, monkeypatch):
    """detector_on_board end to end with StandInBoard in place of the board: it feeds the board the judge's
    letterboxed pixels with the run's model, target and core mask, rebuilds the simulator, and scores both."""
    monkeypatch.setattr(board, "open_board", StandInBoard)
    record = read_record(det_run)
    det = board.detector_on_board(det_run, record, tiny_detector.data_yaml, 4, "rk3588", "SERIAL", "0_1")
    seen = StandInBoard.seen
    assert seen["rknn"] == det_run.rknn / "model.rknn" and seen["target"] == "rk3588" and seen["device_id"] == "SERIAL"
    assert seen["core_mask"] == "0_1" and np.array_equal(seen["pixels"], det.judge.pixels) and det.judge.images == 4
    assert det.board.value == pytest.approx(det.judge.fp32.value) and det.sdk == "stand-in (ONNX Runtime)"
    assert 0 <= det.simulator.value <= 1 and 0.9 < det.cosines.mean() < 1.0
    assert (det_run.logs / "40_simulator.log").is_file()
    # 0: all 30 scored
    assert board.detector_on_board(det_run, record, tiny_detector.data_yaml, 0, "rk3588", "SERIAL").judge.images == 8
    # never more
    assert board.detector_on_board(det_run, record, tiny_detector.data_yaml, 50, "rk3588", "SERIAL").judge.images == 8


@needs_board
def test_detector_on_the_board_agrees_with_the_simulator(det_run, tiny_detector):
    record = read_record(det_run)
    det = board.detector_on_board(det_run, record, tiny_detector.data_yaml, 8, "", BOARD_ID)
    assert abs(det.board.value - det.simulator.value) < 0.02 and det.cosines.mean() > 0.99


def test_analysis_images_of_a_detector_are_letterboxed(det_run, tiny_detector):
    record = read_record(det_run)
    files = board.analysis_images(det_run, record, tiny_detector.data_yaml, 2)
    assert len(files) == 2 and all(f.parent == det_run.board / "analysis_inputs" for f in files)
    assert all(cv2.imread(str(f)).shape == (tiny_detector.imgsz, tiny_detector.imgsz, 3) for f in files)


@needs_gxx
def test_cpp_letterbox_matches_opencv(harness, tmp_path):
    """The C++ letterbox against postprocess.letterbox (cv2.resize INTER_LINEAR) on noise, the hardest case for a
    resize: identical when shrinking (any factor), at most 1 level apart on a few pixels when enlarging."""
    from helpers.tasks.detect.postprocess import letterbox

    rng = np.random.default_rng(0)
    for (h, w), size in (((426, 640), 160), ((240, 320), 160), ((1080, 1920), 640), ((301, 299), 128), ((96, 128), 128),
                         ((100, 60), 160)):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img.tofile(tmp_path / "in.rgb")
        subprocess.run([str(harness), "--letterbox", str(h), str(w), str(size), str(tmp_path / "in.rgb"),
                        str(tmp_path / "out.rgb")], check=True)
        got = np.fromfile(tmp_path / "out.rgb", np.uint8).reshape(size, size, 3)
        want, lb = letterbox(img, size)
        diff = np.abs(got.astype(int) - want.astype(int))
        if lb.scale <= 1:
            assert diff.max() == 0, (h, w, size)
        else:
            assert diff.max() <= 1 and diff.mean() < 0.01, (h, w, size)
