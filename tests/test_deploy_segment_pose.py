"""Notebook 40's deployment for instance segmentation and pose: the C++ decode (helpers/deploy/cpp/yolo_segment.h,
yolo_pose.h) compiled into tests/cpp/instance_harness.cc and checked against the shipped Python decode on the SAME raw
outputs (float and INT8-dequantized), the bundle's content, its runner end to end with FakeRKNNLite (tests/fake_rknnlite.py:
a STAND-IN for the board's runtime library, here running a tiny ONNX model whose outputs are split-layout tensors,
tests/segment_pose_support.py) and the C++ demos built against tests/cpp/stand_in (a STAND-IN for librknnrt.so)."""
from __future__ import annotations

import json
import re
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from board_support import converted_run
from raw_outputs import GXX, build_harness
from segment_pose_support import parse_instances, run_instance_harness, split_model_onnx, split_outputs

from helpers.core.errors import WorkbookError
from helpers.deploy import bundle, codegen, meta
from helpers.tasks.detect.images import load_letterboxed
from helpers.tasks.detect.postprocess import letterbox_geometry
from helpers.tasks.feeds import fp32_runner
from helpers.tasks.pose.postprocess import postprocess as pose_postprocess
from helpers.tasks.segment.postprocess import postprocess as segment_postprocess
from helpers.toolkit.record import read_record

HERE = Path(__file__).resolve().parent
STB = Path("/usr/include/stb")
needs_gxx = pytest.mark.skipif(GXX is None, reason="needs g++ to compile the C++ decode")
SIZE = 64  # the synthetic models' input: strides 8, 16, 32 -> grids 8, 4, 2; prototypes 16 x 16
KPT = (5, 3)
SKELETON = [[0, 1, 2], [1, 3], [1, 4]]
ROW = re.compile(r"^  (\S+)\s+([0-9.]+)  box x1=(-?\d+) y1=(-?\d+) x2=(-?\d+) y2=(-?\d+)(?:  mask (\d+) px)?$")


# ---------------------------------------------------------------- the C++ decode against the Python decode

@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    return build_harness(tmp_path_factory, "instance_harness")


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks; 1.0 when both are empty (a box whose mask is all below the threshold, on both sides)."""
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


@needs_gxx
@pytest.mark.parametrize("int8", [True, False], ids=["int8", "float"])
@pytest.mark.parametrize("hw, size, end2end", [((300, 417), 128, False), ((500, 200), 128, True), ((64, 64), 128, False),
                                               ((40, 90), 64, False)])
def test_cpp_segment_decode_matches_python(harness, tmp_path, int8, hw, size, end2end):
    """Synthetic split outputs (a few confident anchors, neighbours overlapping so NMS must choose), quantized to int8 per
    tensor as the board returns them or left float: the C++ side (dequantize, decode, masks) and postprocess_segment.py on
    the same values give the same instances: classes in order, boxes within 0.01 px, scores within 1e-5, every mask at
    IoU > 0.99 (here identical to the pixel but for a few at the threshold)."""
    outs = split_outputs("segment", size, seed=hw[0])
    stdout, used, masks_file = run_instance_harness(harness, tmp_path, "segment", outs, hw, size, end2end=end2end, int8=int8)
    cls, scores, boxes, areas, _ = parse_instances(stdout)
    want = segment_postprocess(used, letterbox_geometry(hw[0], hw[1], size), end2end=end2end)
    assert len(want) >= 5, "too few instances: the comparison would prove little"
    if not end2end:
        assert len(want) < 12, "NMS removed no overlapping box: the synthetic outputs do not exercise it"
    assert cls.tolist() == want.classes.tolist()
    assert np.abs(boxes - want.boxes).max() < 0.01 and np.abs(scores - want.scores).max() < 1e-5
    got = np.fromfile(masks_file, np.uint8).reshape(-1, hw[0], hw[1]).astype(bool)
    ious = [mask_iou(a, b) for a, b in zip(got, want.masks)]
    assert len(got) == len(want) and min(ious) > 0.99, ious
    assert areas.tolist() == got.sum(axis=(1, 2)).tolist() and want.masks.any(axis=(1, 2)).sum() >= 3


@needs_gxx
@pytest.mark.parametrize("int8", [True, False], ids=["int8", "float"])
@pytest.mark.parametrize("hw, kpt_shape, end2end", [((300, 417), (5, 3), False), ((500, 200), (5, 3), True),
                                                    ((128, 128), (4, 2), False)])
def test_cpp_pose_decode_matches_python(harness, tmp_path, int8, hw, kpt_shape, end2end):
    """The same for pose: every keypoint (x, y in the original image, visibility) within 0.01 px / 1e-5."""
    outs = split_outputs("pose", 128, kpt_shape=kpt_shape, seed=hw[1])
    stdout, used, _ = run_instance_harness(harness, tmp_path, "pose", outs, hw, 128, end2end=end2end, kpt_shape=kpt_shape,
                                           int8=int8)
    cls, scores, boxes, _, kpts = parse_instances(stdout)
    want = pose_postprocess(used, letterbox_geometry(hw[0], hw[1], 128), kpt_shape, end2end=end2end)
    assert len(want) >= 5 and cls.tolist() == want.classes.tolist()
    assert np.abs(boxes - want.boxes).max() < 0.01 and np.abs(scores - want.scores).max() < 1e-5
    got = np.array(kpts).reshape(-1, kpt_shape[0], 3)
    assert np.abs(got[..., :2] - want.keypoints[..., :2]).max() < 0.01
    assert np.abs(got[..., 2] - want.keypoints[..., 2]).max() < 1e-5
    assert (got[..., 0] <= hw[1]).all() and (got[..., 1] <= hw[0]).all()  # clipped to the image, as ultralytics does


@needs_gxx
def test_cpp_decode_refuses_stock_layouts(harness, tmp_path):
    """A stock head (segment: detections + prototypes; pose: one tensor) is refused with the way out."""
    stock_seg = [np.random.default_rng(0).random((1, 4 + 3 + 8, 84), np.float32)[..., None], split_outputs("segment", 64)[-1]]
    out = run_instance_harness(harness, tmp_path / "s", "segment", stock_seg, (64, 64), 64, int8=False)[0]
    assert out.startswith("refused the model has the stock segmentation head") and "head: split in notebook 10" in out
    stock_pose = [np.random.default_rng(0).random((1, 4 + 1 + 15, 84), np.float32)[..., None]]
    out = run_instance_harness(harness, tmp_path / "p", "pose", stock_pose, (64, 64), 64, kpt_shape=(5, 3), int8=False)[0]
    assert out.startswith("refused the model has the stock pose head") and "head: split in notebook 10" in out
    wrong = split_outputs("pose", 64, kpt_shape=(5, 3))
    out = run_instance_harness(harness, tmp_path / "k", "pose", wrong, (64, 64), 64, kpt_shape=(4, 3), int8=False)[0]
    assert "refused the keypoint output has 15 channels, not 4x3" in out


# ---------------------------------------------------------------- the bundle

@pytest.fixture(scope="module")
def rknn_run(tmp_path_factory, tiny_onnx, tiny_images):
    """A real rk3588 .rknn and convert.json (the tiny classifier, converted by the toolkit): the bundle copies it and reads
    its chip; the runner's stand-in runtime computes the outputs from the task's ONNX instead (see the module docstring)."""
    return converted_run(tmp_path_factory.mktemp("run"), tiny_onnx, tiny_images, "rk3588")


@pytest.fixture(scope="module")
def sample_images(tmp_path_factory) -> list[Path]:
    """Three images of different shapes (wide, tall, square): the letterbox and its inverse matter."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    paths = []
    for name, (h, w) in (("wide.png", (48, 100)), ("tall.png", (90, 40)), ("square.png", (64, 64))):
        cv2.imwrite(str(folder / name), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        paths.append(folder / name)
    return paths


def task_bundle(run, task: str, folder: Path, images: list[Path], head: str = "split", skeleton=None) -> tuple[Path, Path]:
    """The task's synthetic split ONNX (metadata as the export writes it) and its bundle, extracted from the tarball into
    a fresh folder as on the board."""
    onnx = split_model_onnx(folder / f"{task}_{head}.onnx", task, SIZE, kpt_shape=KPT, metadata={"head": head})
    record = replace(read_record(run), source=onnx, input_size=SIZE)
    b = bundle.build_bundle(run, record, ["c0", "c1", "c2"], sample_images=images, skeleton=skeleton)
    out = folder / f"extracted_{task}_{head}"
    with tarfile.open(b.tarball) as tar:
        tar.extractall(out)
    return out / "deploy", onnx


@pytest.fixture(scope="module")
def seg_bundle(rknn_run, sample_images, tmp_path_factory):
    return task_bundle(rknn_run, "segment", tmp_path_factory.mktemp("seg"), sample_images)


@pytest.fixture(scope="module")
def pose_bundle(rknn_run, sample_images, tmp_path_factory):
    return task_bundle(rknn_run, "pose", tmp_path_factory.mktemp("pose"), sample_images, skeleton=SKELETON)


@pytest.mark.parametrize("task", ["segment", "pose"])
def test_bundle_ships_the_task_decode_byte_for_byte(task, seg_bundle, pose_bundle):
    folder = (seg_bundle if task == "segment" else pose_bundle)[0]
    name, src = bundle.TASK_POSTPROCESS[task]
    assert (folder / name).read_bytes() == src.read_bytes() and name == f"postprocess_{task}.py"
    assert (folder / "postprocess.py").read_bytes() == bundle.POSTPROCESS.read_bytes()  # which it imports on the board
    assert (folder / "instances.py").read_bytes() == bundle.INSTANCES.read_bytes()
    cfg = json.loads((folder / "model.json").read_text())
    assert cfg["task"] == task and cfg["head"] == "split" and cfg["end2end"] is False and cfg["input_size"] == SIZE
    if task == "pose":
        assert cfg["kpt_shape"] == list(KPT) and cfg["skeleton"] == SKELETON
    else:
        assert cfg["mask_channels"] == 8 and "kpt_shape" not in cfg


def test_readme_explains_the_outputs_and_decode(seg_bundle, pose_bundle):
    seg = (seg_bundle[0] / "README.md").read_text()
    for text in ("## Outputs and decode (split segmentation head)", "coefficients times the prototypes", "`[1, 8, 16, 16]`",
                 "mask 1432 px", "postprocess_segment.py", "import postprocess_segment", "boxes and masks are mapped back"):
        assert text in seg, text
    pose = (pose_bundle[0] / "README.md").read_text()
    for text in ("## Outputs and decode (split pose head)", "`x = (dx + column) x stride`", "[5, 3]). The offsets are small",
                 "keypoints x,y,v:", "its 5 keypoints", "lines between consecutive keypoints", "postprocess_pose.py"):
        assert text in pose, text
    assert "$" not in seg + pose and "top-5" not in seg + pose and "## Why the split head" not in seg + pose


def test_model_meta_refuses_a_bad_kpt_shape_or_skeleton():
    assert meta.kpt_shape_of("[17, 3]") == [17, 3] and meta.kpt_shape_of([4, 2]) == [4, 2]
    with pytest.raises(WorkbookError, match=r"kpt_shape '\[17\]', not \[K, 2\] or \[K, 3\]; export the pose model again"):
        meta.kpt_shape_of("[17]", "model.onnx")
    assert meta.skeleton_of("[[0, 1], [1, 2]]", 3) == [[0, 1], [1, 2]] and meta.skeleton_of(None, 3) is None
    with pytest.raises(WorkbookError, match=r"names keypoints outside 0..2; the model has 3 keypoints"):
        meta.skeleton_of([[0, 3]], 3)


# ---------------------------------------------------------------- the Python runner with the stand-in runtime

def printed(stdout: str, noun: str) -> list[tuple[str, int, list[tuple[str, ...]], list[str]]]:
    """Per image: (image, the count printed, its instance rows, its keypoint lines)."""
    blocks = re.split(rf"^(images/\S+): (\d+) {re.escape(noun)}$", stdout, flags=re.M)[1:]
    return [(path, int(n), [ROW.match(ln).groups() for ln in body.splitlines() if ROW.match(ln)],
             [ln.split(": ", 1)[1] for ln in body.splitlines() if ln.startswith("    keypoints x,y,v: ")])
            for path, n, body in zip(blocks[0::3], blocks[1::3], blocks[2::3])]


def python_decode(folder: Path, onnx: Path, task: str) -> list:
    """The bundle's images letterboxed as the workbook does, through the same ONNX, decoded by the workbook's modules."""
    images = sorted((folder / "images").iterdir())
    canvases, geoms = load_letterboxed(images, SIZE)
    outs = fp32_runner(onnx, [0, 0, 0], [255, 255, 255]).outputs(np.stack(canvases))
    if task == "segment":
        return [segment_postprocess(o, lb) for o, lb in zip(outs, geoms)]
    return [pose_postprocess(o, lb, KPT) for o, lb in zip(outs, geoms)]


@pytest.mark.parametrize("task", ["segment", "pose"])
def test_runner_prints_and_draws_the_workbook_decode(task, seg_bundle, pose_bundle, tmp_path):
    """run_rknn.py from the extracted bundle (no workbook importable) on its sample images: every printed instance is the
    workbook's decode of the same outputs (class, score, box; segment: mask area; pose: every keypoint), and each image is
    drawn with its instances."""
    from test_deploy import run_on_stand_in

    folder, onnx = seg_bundle if task == "segment" else pose_bundle
    drawn = tmp_path / "drawn"
    res = run_on_stand_in(folder, onnx, tmp_path, "images", "--draw", str(drawn))
    assert res.returncode == 0, res.stderr
    per_image = printed(res.stdout, "instance(s)" if task == "segment" else "pose(s)")
    images = sorted((folder / "images").iterdir())
    assert [p for p, *_ in per_image] == [f"images/{p.name}" for p in images]
    total = 0
    for (path, count, rows, kpt_lines), want in zip(per_image, python_decode(folder, onnx, task)):
        assert count == len(want) == len(rows)
        for i, (name, score, *box, area) in enumerate(rows):
            assert name == f"c{want.classes[i]}" and score == f"{want.scores[i]:.3f}"
            assert [int(v) for v in box] == [int(f"{v:.0f}") for v in want.boxes[i]]
            if task == "segment":
                assert int(area) == int(want.masks[i].sum())
            else:
                assert kpt_lines[i] == " ".join(f"{x:.0f},{y:.0f},{v:.2f}" for x, y, v in want.keypoints[i])
        picture, original = cv2.imread(str(drawn / Path(path).name)), cv2.imread(str(folder / path))
        assert picture.shape == original.shape and (count == 0 or not np.array_equal(picture, original))
        total += count
    assert total >= 3, "the stand-in gave too few instances: the comparison would prove little"


@pytest.mark.parametrize("task, kind", [("segment", "segmentation"), ("pose", "pose")])
def test_runner_refuses_a_stock_head_in_one_sentence(task, kind, rknn_run, sample_images, tmp_path):
    from test_deploy import run_on_stand_in

    folder, onnx = task_bundle(rknn_run, task, tmp_path, sample_images[:1], head="stock")
    res = run_on_stand_in(folder, onnx, tmp_path, "images")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and res.stdout == ""
    assert f"model.rknn has the stock {kind} head" in lines[0] and "export it with head: split in notebook 10" in lines[0]


# ---------------------------------------------------------------- the C++ demos in the codegen project

def test_codegen_project_gets_the_tasks_demo(tmp_path):
    """add_task_demo on a codegen-style project: the task's sources, a second executable, run_<task>.sh with its options."""
    for task, meta_ in (("segment", {"task": "segment", "end2end": True}), ("pose", {"task": "pose", "kpt_shape": [17, 3]})):
        project = tmp_path / task
        project.mkdir()
        (project / "CMakeLists.txt").write_text("add_executable(rknn_app_demo src/main.cc)\n")
        codegen.add_task_demo(project, meta_)
        codegen.add_task_demo(project, meta_)  # twice: still one executable
        for src in codegen.TASK_SOURCES[task]:
            assert (project / "src" / src.name).read_bytes() == src.read_bytes()
        assert (project / "CMakeLists.txt").read_text().count(f"add_executable(rknn_{task}_demo src/{task}_demo.cc)") == 1
        script = (project / f"run_{task}.sh").read_text()
        want = "--end2end" if task == "segment" else "--kpt-shape 17,3"
        assert f"./rknn_{task}_demo model.rknn labels.txt images/* --conf 0.25 --iou 0.7 {want}" in script


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> dict[str, Path]:
    """segment_demo.cc and pose_demo.cc built on this PC against tests/cpp/stand_in (a STAND-IN for rknn_api.h and
    librknnrt.so serving outputs the test computed) and the system's stb_image.h."""
    if GXX is None or not (STB / "stb_image.h").is_file():
        pytest.skip("needs g++ and stb_image.h (apt-get install libstb-dev) to build the C++ demos")
    out = {}
    for task in ("segment", "pose"):
        exe = tmp_path_factory.mktemp("demo") / f"rknn_{task}_demo"
        res = subprocess.run([GXX, "-std=c++11", "-O1", "-Wall", "-Wextra", f"-I{HERE / 'cpp' / 'stand_in'}", f"-I{STB}",
                              f"-I{codegen.CPP_DIR}", str(codegen.CPP_DIR / f"{task}_demo.cc"),
                              str(HERE / "cpp" / "stand_in" / "rknn_stand_in.cc"), "-o", str(exe)],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        out[task] = exe
    return out


@pytest.mark.parametrize("task", ["segment", "pose"])
def test_cpp_demo_runs_end_to_end_with_a_stand_in_runtime(task, demos, seg_bundle, pose_bundle, tmp_path):
    """The demo on the bundle's images: it feeds the workbook's letterboxed pixels, takes int8 outputs, dequantizes them
    and prints what the Python decode gives on the same dequantized values (rows as run_rknn.py prints them)."""
    from test_deploy_detect import serve_outputs

    folder, onnx = seg_bundle if task == "segment" else pose_bundle
    images = sorted((folder / "images").iterdir())
    canvases, geoms = load_letterboxed(images, SIZE)
    used = serve_outputs(tmp_path, SIZE, fp32_runner(onnx, [0, 0, 0], [255, 255, 255]).outputs(np.stack(canvases)))
    extra = ["--kpt-shape", f"{KPT[0]},{KPT[1]}"] if task == "pose" else ["--masks", str(tmp_path)]
    res = subprocess.run([str(demos[task]), "model.rknn", "labels.txt", *[f"images/{p.name}" for p in images], *extra],
                         cwd=folder, env={"WORKBOOK_RKNN_STAND_IN": str(tmp_path), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    per_image = printed(res.stdout, "instance(s)" if task == "segment" else "pose(s)")
    total = 0
    for k, ((_, count, rows, kpt_lines), outs, lb, canvas) in enumerate(zip(per_image, used, geoms, canvases)):
        assert np.array_equal(np.fromfile(tmp_path / f"input{k}.bin", np.uint8).reshape(SIZE, SIZE, 3), canvas)
        want = (segment_postprocess(outs, lb) if task == "segment" else pose_postprocess(outs, lb, KPT))
        assert count == len(want) == len(rows)
        for i, (name, score, *box, area) in enumerate(rows):
            assert name == f"c{want.classes[i]}" and abs(float(score) - want.scores[i]) <= 0.0011
            assert np.abs(np.array(box, float) - want.boxes[i]).max() <= 1
            if task == "segment":
                assert abs(int(area) - int(want.masks[i].sum())) <= max(2, 0.01 * want.masks[i].sum())
            else:
                xyv = np.array([v.split(",") for v in kpt_lines[i].split()], float)
                assert np.abs(xyv[:, :2] - want.keypoints[i, :, :2]).max() <= 1
                assert np.abs(xyv[:, 2] - want.keypoints[i, :, 2]).max() <= 0.006
        total += count
    assert total >= 3
    if task == "segment":
        pgm = cv2.imread(str(tmp_path / f"{images[0].stem}.pgm"), cv2.IMREAD_UNCHANGED)
        assert pgm is not None and pgm.shape == cv2.imread(str(images[0])).shape[:2]


@pytest.mark.parametrize("task, outputs, message", [
    ("segment", "2\n24 1 84 0 0.1\n8 16 16 0 0.1", "model.rknn has the stock segmentation head"),
    ("pose", "1\n24 1 84 0 0.1", "model.rknn has the stock pose head"),
])
def test_cpp_demo_refuses_a_stock_head(task, outputs, message, demos, seg_bundle, tmp_path):
    (tmp_path / "model.txt").write_text(f"input {SIZE} {SIZE}\noutputs {outputs}\n")
    extra = ["--kpt-shape", "5,3"] if task == "pose" else []
    res = subprocess.run([str(demos[task]), "model.rknn", "labels.txt", "images", *extra], cwd=seg_bundle[0],
                         env={"WORKBOOK_RKNN_STAND_IN": str(tmp_path), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert res.returncode == 1 and res.stdout == "" and res.stderr.count("\n") == 1
    assert res.stderr.startswith(f"error: {message}") and "export it with head: split in notebook 10" in res.stderr


# ---------------------------------------------------------------- notebook 40's PC-to-board script

@pytest.mark.parametrize("task", ["segment", "pose"])
def test_pc_script_decodes_with_the_bundles_task_module(task, rknn_run, seg_bundle, pose_bundle, tmp_path):
    """The script notebook 40 prints, run as a user runs it with FakeBoardRKNN (a STAND-IN for rknn.api.RKNN on a board)
    and no workbook importable: it letterboxes, infers and decodes with the bundle's postprocess_<task>.py, printing the
    same instances as the workbook's decode of that image."""
    from test_deploy_pc_script import run_script

    from helpers.deploy import pc_script

    folder, onnx = seg_bundle if task == "segment" else pose_bundle
    cfg = json.loads((folder / "model.json").read_text())
    image = sorted((folder / "images").iterdir())[0]
    script = pc_script.for_bundle(cfg, folder, rknn_run.rknn / "model.rknn", "rk3588", None, {"core_mask": "auto"}, image)
    source = pc_script.board_calls(script)
    assert f"from postprocess_{task} import postprocess as postprocess_{task}" in source
    res = run_script(source, onnx, tmp_path, "SERIAL")
    assert res.returncode == 0, res.stderr
    want = python_decode(folder, onnx, task)[0]
    noun = "instance(s)" if task == "segment" else "pose(s)"
    assert f"{len(want)} {noun}: {want.classes.tolist()} {want.scores.round(3).tolist()}" in res.stdout and len(want)
