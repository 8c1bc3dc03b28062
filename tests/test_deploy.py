"""The on-board runner, run from an extracted bundle: arguments, preprocessing bit-exact with the
workbook's on real sample images, the missing-rknnlite message, and the whole inference loop end to end
against FakeRKNNLite (tests/fake_rknnlite.py: a stand-in for the board's runtime library whose outputs
come from ONNX Runtime on the same model)."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import fake_rknnlite
import numpy as np
import pytest
from board_support import TINY_SIZE, converted_run

from helpers.core.paths import SAMPLE_DATA
from helpers.deploy import bundle, run_rknn
from helpers.tasks import data
from helpers.tasks.classify.metric import scores_of
from helpers.tasks.feeds import fp32_runner
from helpers.tasks.preprocess import read_rgb, softmax
from helpers.toolkit.record import read_record


@pytest.fixture(scope="module")
def sample_val() -> data.LabelledImages:
    """Real images of the bundled sample (32x32 digits), a few per class."""
    return data.load_split(data.write_sample(SAMPLE_DATA), "val").subset(12)


@pytest.fixture(scope="module")
def bundle_tarball(tmp_path_factory, tiny_onnx, tiny_images, sample_val) -> Path:
    """board/deploy.tar.gz of a real bundle (tiny rk3588 model, input 16, classes a, b, c, three sample images)."""
    run = converted_run(tmp_path_factory.mktemp("run"), tiny_onnx, tiny_images, "rk3588")
    return bundle.build_bundle(run, read_record(run), ["a", "b", "c"], sample_images=sample_val.paths[:3]).tarball


def extracted(tarball: Path, folder: Path) -> Path:
    """The bundle unpacked as on the board: a fresh folder holding only the archive's files."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(folder)
    return folder / "deploy"


@pytest.fixture(scope="module")
def bundle_dir(bundle_tarball, tmp_path_factory) -> Path:
    """The bundle extracted from its tarball into a fresh folder (shared: tests that change it extract their own)."""
    return extracted(bundle_tarball, tmp_path_factory.mktemp("extracted"))


def no_workbook(folder: Path) -> Path:
    """A folder for PYTHONPATH holding a `helpers` package that refuses to import: a board has no workbook, so a
    runner that reaches for the workbook's helpers (which this venv's editable install would otherwise find) fails."""
    pkg = Path(folder) / "helpers"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text('raise ImportError("test: a board has no workbook helpers package")\n')
    return Path(folder)


_BOARD_SITE = tempfile.TemporaryDirectory(prefix="board_site_")  # removed when the test process ends


def run_runner(bundle: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The bundle's runner as a subprocess with neither the workbook nor rknn-toolkit-lite2 importable."""
    env = {**os.environ, "PYTHONPATH": str(no_workbook(Path(_BOARD_SITE.name)))}
    return subprocess.run([sys.executable, str(bundle / "run_rknn.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def one_line(text: str) -> str:
    """The only line of a message (a one-sentence error must not bring a traceback or a second line)."""
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def load_bundled_runner(bundle: Path):
    """Import run_rknn.py from the extracted bundle (as the board would), not from the repository."""
    spec = importlib.util.spec_from_file_location("bundled_run_rknn", bundle / "run_rknn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundled_runner_uses_the_bundled_preprocess(bundle_dir):
    mod = load_bundled_runner(bundle_dir)
    assert not mod.IN_REPOSITORY
    assert Path(mod.bundled("preprocess").__file__).resolve() == (bundle_dir / "preprocess.py").resolve()
    assert (bundle_dir / "preprocess.py").read_bytes() == bundle.PREPROCESS.read_bytes()


def test_arguments_default_from_model_json(bundle_dir):
    mod = load_bundled_runner(bundle_dir)
    args = mod.parse_args(["images/x.png"])
    assert args.model == bundle_dir / "model.rknn" and args.labels == bundle_dir / "labels.txt"
    assert args.size == TINY_SIZE and args.top_k == 5 and args.core_mask == "auto" and args.benchmark is None
    assert args.warmup == 5 and args.cores is None
    args = mod.parse_args(["a.png", "b/", "--top-k", "3", "--core-mask", "0_1_2", "--benchmark", "50", "--size", "24"])
    assert args.inputs == ["a.png", "b/"] and args.top_k == 3 and args.core_mask == "0_1_2" and args.size == 24
    assert args.benchmark == 50 and mod.parse_args(["a.png", "--loops", "7"]).benchmark == 7  # the older name still works


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: inputs"),
    (["x.png", "--top-k", "0"], "--top-k must be at least 1"),
    (["x.png", "--core-mask", "fast"], "invalid choice: 'fast'"),
    (["x.png", "--benchmark", "0"], "--benchmark 0: the number of timed inferences must be at least 1"),
])
def test_bad_arguments_exit_2_with_the_reason(bundle_dir, tmp_path, argv, message):
    res = run_runner(bundle_dir, *argv, cwd=tmp_path)
    assert res.returncode == 2 and message in res.stderr


def test_preprocessing_is_bit_exact_with_the_workbook(bundle_dir, sample_val, tmp_path):
    """The runner (subprocess, extracted bundle) writes the array it would feed the NPU; it must equal
    what the workbook's evaluate() feeds the simulator for the same files, at the bundle's input size."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sample_val.paths:
        (folder / f"{p.parent.name}_{p.name}").write_bytes(p.read_bytes())
    out = tmp_path / "inputs.npy"
    res = run_runner(bundle_dir, str(folder), "--preprocess-only", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    got = np.load(out)
    ordered = data.LabelledImages(sorted(folder.iterdir()), np.zeros(len(sample_val), np.int64), ["x"])
    want = ordered.load(TINY_SIZE)  # helpers.tasks.data -> helpers.tasks.preprocess.read_rgb, as evaluate() uses it
    assert got.dtype == np.uint8 and got.shape == (len(sample_val), TINY_SIZE, TINY_SIZE, 3)
    assert np.array_equal(got, want)
    # and it is RGB: the sample's navy background has more blue than red
    assert got[:, 0, 0, 2].mean() > got[:, 0, 0, 0].mean()


def test_without_rknnlite_it_says_how_to_install_it(bundle_dir, tmp_path):
    if importlib.util.find_spec("rknnlite") is not None:
        pytest.skip("rknn-toolkit-lite2 is installed here, so the missing-package path cannot be exercised")
    res = run_runner(bundle_dir, "images", cwd=bundle_dir)
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    msg = lines[0]
    assert "rknn-toolkit-lite2 is not installed" in msg and "pip install rknn-toolkit-lite2==2.5.0" in msg
    assert msg.count(". ") == 0 and msg.endswith(".")  # one sentence


def test_core_mask_checked_against_the_models_chip(bundle_dir, tmp_path):
    if importlib.util.find_spec("rknnlite") is not None:
        pytest.skip("rknn-toolkit-lite2 is installed here, so the run would go on to the NPU")
    res = run_runner(bundle_dir, "images", "--core-mask", "0_1_2", "--model", str(bundle_dir / "model.rknn"), cwd=bundle_dir)
    assert res.returncode == 2 and "core-mask" not in res.stderr  # rk3588 has three cores: accepted,
    assert "rknn-toolkit-lite2 is not installed" in res.stderr  # so the run got as far as this PC allows
    with pytest.raises(run_rknn.RunnerError, match="--core-mask 2 is not available on rk3576; use one of 0, 0_1, 1, all, auto"):
        run_rknn.check_core_mask("2", "rk3576")


def test_missing_image_and_non_rknn_model(bundle_dir, tmp_path):
    res = run_runner(bundle_dir, str(tmp_path / "nope.png"), cwd=tmp_path)
    assert res.returncode == 2 and "nope.png does not exist; pass an image file or a folder of images." in res.stderr
    fake = tmp_path / "fake.rknn"
    fake.write_bytes(b"not a model")
    res = run_runner(bundle_dir, str(bundle_dir / "images"), "--model", str(fake), cwd=tmp_path)
    assert res.returncode == 2 and "fake.rknn is not an RKNN model" in res.stderr


def test_board_chip_check_from_the_device_tree(bundle_dir, tmp_path):
    """The runner reads the board's chip from /proc/device-tree/compatible (a real file format:
    NUL-separated strings) and refuses a model built for another chip."""
    compat = tmp_path / "compatible"
    compat.write_bytes(b"radxa,rock-5b\0rockchip,rk3588s\0rockchip,rk3588\0")
    assert run_rknn.board_platform(compat) == "rk3588"
    compat.write_bytes(b"firefly,rk3566-roc-pc\0rockchip,rk3566\0")
    assert run_rknn.board_platform(compat) == "rk3566"
    assert run_rknn.board_platform(tmp_path / "absent") is None
    model = bundle_dir / "model.rknn"
    assert run_rknn.rknn_platform(model) == "rk3588"
    with pytest.raises(run_rknn.RunnerError, match="model.rknn was built for rk3588 but this board is rk3566; convert again"):
        run_rknn.check_platform("rk3588", "rk3566", model)
    run_rknn.check_platform("rk3588", None, model)  # off-board: nothing to compare


# ---------------------------------------------------------------- end to end with a stand-in runtime

TESTS = Path(__file__).resolve().parent
RANK = re.compile(r"^\s+(\d+)\. (.+?)\s+([0-9.]+)  \(class (\d+)\)$")


def run_on_stand_in(bundle: Path, onnx: Path, tmp_path: Path, *args: str, fail: str = "") -> subprocess.CompletedProcess:
    """The bundle's runner as a subprocess, with FakeRKNNLite (ONNX Runtime on the same model) where
    the board would have rknn-toolkit-lite2."""
    site = no_workbook(fake_rknnlite.install(tmp_path / "site"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(TESTS)]),
           fake_rknnlite.ONNX_ENV: str(onnx), fake_rknnlite.FAIL_ENV: fail, fake_rknnlite.LOG_ENV: str(tmp_path / "calls.jsonl")}
    return subprocess.run([sys.executable, str(bundle / "run_rknn.py"), *args], cwd=bundle, env=env,
                          capture_output=True, text=True, timeout=120)


def printed_ranks(stdout: str) -> dict[str, list[tuple[int, float]]]:
    """{image: [(class, score), ...]} from the runner's output."""
    ranks: dict[str, list[tuple[int, float]]] = {}
    current = None
    for line in stdout.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            current = line[:-1]
            ranks[current] = []
        elif (m := RANK.match(line)) and current:
            ranks[current].append((int(m[4]), float(m[3])))
    return ranks


def test_runner_end_to_end_matches_onnx_runtime(bundle_dir, tiny_onnx, tmp_path):
    """Preprocessing, the loop over a folder, top-k output and the benchmark, against a stand-in
    runtime: every printed class and probability equals ONNX Runtime on the workbook's own input."""
    res = run_on_stand_in(bundle_dir, tiny_onnx, tmp_path, "images", "--top-k", "3", "--benchmark", "4")
    assert res.returncode == 0, res.stderr
    assert f"input {TINY_SIZE}x{TINY_SIZE} RGB uint8 NHWC, core mask auto (one idle core, picked by the runtime)" in res.stdout
    ranks = printed_ranks(res.stdout)
    images = sorted((bundle_dir / "images").iterdir())
    assert [Path(k).name for k in ranks] == [p.name for p in images]
    ort = fp32_runner(tiny_onnx, [0, 0, 0], [255, 255, 255])
    labels = (bundle_dir / "labels.txt").read_text().split()
    for path, printed in zip(images, ranks.values()):
        probs = softmax(scores_of(ort.outputs(read_rgb(path, TINY_SIZE)[None]))[0])
        want = [(int(i), round(float(probs[i]), 4)) for i in np.argsort(-probs)[:3]]
        assert printed == want
    assert all(f"  1. {labels[r[0][0]]}" in res.stdout for r in ranks.values())
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert len(calls) == len(images) + 5 + 4  # one call per image, the default warm-up, then --benchmark
    assert "5 warm-up run(s), then 4 timed run(s)" in res.stdout


def test_runner_honours_the_models_colour_order(bundle_dir, tiny_onnx, tmp_path):
    """model.json says BGR (a model trained on BGR images): the runner feeds R and B swapped."""
    bgr = tmp_path / "deploy"
    shutil.copytree(bundle_dir, bgr)
    cfg = json.loads((bgr / "model.json").read_text())
    (bgr / "model.json").write_text(json.dumps({**cfg, "color_order": "BGR"}))
    image = sorted((bgr / "images").iterdir())[0]
    res = run_on_stand_in(bgr, tiny_onnx, tmp_path, str(image), "--top-k", "1")
    assert res.returncode == 0, res.stderr
    assert "BGR uint8 NHWC" in res.stdout
    fed = json.loads((tmp_path / "calls.jsonl").read_text().splitlines()[0])["first_pixel"]
    assert fed == read_rgb(image, TINY_SIZE)[0, 0, ::-1].tolist()
    out = tmp_path / "x.npy"
    run_on_stand_in(bgr, tiny_onnx, tmp_path, str(image), "--preprocess-only", str(out))
    assert np.array_equal(np.load(out)[0], read_rgb(image, TINY_SIZE)[..., ::-1])


@pytest.mark.parametrize("fail, message", [
    ("load", "RKNNLite.load_rknn("),
    ("init", "RKNNLite.init_runtime failed; check that /usr/lib/librknnrt.so"),
    ("inference", "returned nothing"),
])
def test_runtime_failures_exit_1_with_the_reason(bundle_dir, tiny_onnx, tmp_path, fail, message):
    res = run_on_stand_in(bundle_dir, tiny_onnx, tmp_path, "images", fail=fail)
    assert res.returncode == 1 and message in res.stderr and "Traceback" not in res.stderr


def test_bad_color_order_in_model_json(bundle_dir, tmp_path):
    bad = tmp_path / "deploy"
    shutil.copytree(bundle_dir, bad)
    cfg = json.loads((bad / "model.json").read_text())
    (bad / "model.json").write_text(json.dumps({**cfg, "color_order": "YUV"}))
    res = run_runner(bad, "images", cwd=bad)
    assert res.returncode == 2 and "color_order='YUV'; it must be RGB or BGR" in res.stderr


def test_as_probabilities():
    probs = np.array([0.1, 0.7, 0.2])
    assert np.array_equal(run_rknn.as_probabilities(probs), probs)  # already probabilities: unchanged
    logits = np.array([1.0, 3.0, 0.0])
    got = run_rknn.as_probabilities(logits)
    assert abs(got.sum() - 1) < 1e-9 and got.argmax() == 1 and np.allclose(got, np.exp(logits) / np.exp(logits).sum())


def test_chip_family_across_all_device_tree_entries(tmp_path):
    compat = tmp_path / "compatible"
    compat.write_bytes(b"rockchip,rk3588-evb1-v10\0rockchip,rk3588\0")
    assert run_rknn.board_platform(compat) == "rk3588"
    compat.write_bytes(b"rockchip,rk3568-evb1-ddr4-v10\0rockchip,rk3568\0")
    assert run_rknn.board_platform(compat) == "rk3568"
    model = Path("model.rknn")
    run_rknn.check_platform("rk3566", "rk3568", model)  # same NPU: accepted
    run_rknn.check_platform("rv1103", "rv1106", model)
    with pytest.raises(run_rknn.RunnerError, match="built for rk3566 but this board is rk3588"):
        run_rknn.check_platform("rk3566", "rk3588", model)
    assert run_rknn.core_mask_meaning("auto", "rk3588") == "one idle core, picked by the runtime"
    assert run_rknn.core_mask_meaning("auto", "rk3566") == "the chip's single NPU core"
    assert run_rknn.core_mask_meaning("0_1_2", "rk3588") == "cores 0, 1 and 2 together"


def test_unreadable_model_and_empty_folder(bundle_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run_runner(bundle_dir, str(empty), cwd=tmp_path)
    assert res.returncode == 2 and f"Folder {empty} has no images" in one_line(res.stderr)
    res = run_runner(bundle_dir, "images", "--model", str(tmp_path / "absent.rknn"), cwd=bundle_dir)
    assert res.returncode == 2 and "Cannot read model file" in one_line(res.stderr) and "pass --model" in res.stderr
    header_only = tmp_path / "cut.rknn"
    header_only.write_bytes((bundle_dir / "model.rknn").read_bytes()[:200])
    with pytest.raises(run_rknn.RunnerError, match="has an RKNN header but no readable model description"):
        run_rknn.chips.rknn_meta(header_only)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    res = run_runner(bundle_dir, str(broken), "--preprocess-only", str(tmp_path / "x.npy"), cwd=tmp_path)
    assert res.returncode == 2 and "Cannot read image" in res.stderr and "broken.png" in res.stderr


# ---------------------------------------------------------------- the runner stands alone (issue 22)
# Each case unpacks the real deploy.tar.gz into a fresh folder, takes away what a board user loses, and runs
# `python run_rknn.py` there as a subprocess: FakeRKNNLite (ONNX Runtime on the same model) stands in for
# rknn-toolkit-lite2, and the workbook's helpers cannot be imported.

def test_a_missing_chips_module_is_named(bundle_tarball, tiny_onnx, tmp_path):
    """chips.py (the chip and core-mask rules, the workbook's own helpers/deploy/chips.py) ships beside the runner."""
    board = extracted(bundle_tarball, tmp_path / "board")
    assert (board / "chips.py").read_bytes() == bundle.CHIPS.read_bytes()
    (board / "chips.py").unlink()
    res = run_on_stand_in(board, tiny_onnx, tmp_path, "images")
    msg = one_line(res.stderr)
    assert res.returncode == 2 and res.stdout == ""
    assert f"chips.py is missing from {board.resolve()}" in msg and "extract deploy.tar.gz again" in msg


def test_help_needs_nothing_and_a_missing_preprocess_is_named(bundle_tarball, tiny_onnx, tmp_path):
    board = extracted(bundle_tarball, tmp_path / "board")
    (board / "preprocess.py").unlink()
    res = run_on_stand_in(board, tiny_onnx, tmp_path, "--help")
    assert res.returncode == 0 and "usage: run_rknn.py" in res.stdout and res.stderr == ""
    res = run_on_stand_in(board, tiny_onnx, tmp_path, "images")
    msg = one_line(res.stderr)
    assert res.returncode == 2 and res.stdout == ""
    assert f"preprocess.py is missing from {board.resolve()}" in msg and "extract deploy.tar.gz again" in msg
    assert not (tmp_path / "calls.jsonl").exists()  # nothing ran on the NPU
    readme = (board / "README.md").read_text()
    assert "`python3 run_rknn.py --help`" in readme and "extract `deploy.tar.gz` again" in readme


@pytest.mark.parametrize("package, named", [("numpy", "numpy is not installed"),
                                            ("cv2", "needs the Python package OpenCV (cv2)")])
def test_a_missing_python_package_on_the_board_is_named(bundle_dir, tiny_onnx, tmp_path, package, named):
    """The board's Python without numpy or OpenCV (a package on PYTHONPATH that fails to import, as an absent one does)."""
    (tmp_path / "site" / package).mkdir(parents=True)
    blocker = f"raise ModuleNotFoundError('test: no {package}', name={package!r})\n"
    (tmp_path / "site" / package / "__init__.py").write_text(blocker)
    res = run_on_stand_in(bundle_dir, tiny_onnx, tmp_path, "images")
    msg = one_line(res.stderr)
    assert res.returncode == 2 and named in msg and "pip install numpy opencv-python-headless" in msg


def test_a_detector_bundle_without_postprocess_and_a_broken_model_json(bundle_tarball, tiny_onnx, tmp_path):
    board = extracted(bundle_tarball, tmp_path / "board")
    cfg = json.loads((board / "model.json").read_text())
    (board / "model.json").write_text(json.dumps({**cfg, "task": "detect", "head": "split"}))  # postprocess.py not there
    res = run_on_stand_in(board, tiny_onnx, tmp_path, "images")
    msg = one_line(res.stderr)
    assert res.returncode == 2 and "postprocess.py is missing from" in msg and "copy postprocess.py from the bundle" in msg
    (board / "model.json").write_text(json.dumps(cfg)[:-20])  # cut short, as by an interrupted copy
    res = run_on_stand_in(board, tiny_onnx, tmp_path, "images")
    assert res.returncode == 2 and "model.json cannot be read as JSON" in one_line(res.stderr)


def test_an_unreadable_image_is_one_line_and_the_rest_run(bundle_tarball, tiny_onnx, tmp_path):
    board = extracted(bundle_tarball, tmp_path / "board")
    good = sorted((board / "images").iterdir())
    (board / "images" / f"{good[1].stem}_broken.png").write_bytes(b"half a PNG")  # sorts between the good ones
    res = run_on_stand_in(board, tiny_onnx, tmp_path, "images", "--top-k", "1")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert [Path(k).name for k in printed_ranks(res.stdout)] == [p.name for p in good]  # before and after it
    image_line, summary = res.stderr.strip().splitlines()
    assert image_line.startswith("error: Cannot read image images/") and "_broken.png" in image_line
    assert "1 of 4 image(s) could not be read" in summary and "the other 3 ran" in summary


def test_a_missing_labels_file_warns_once_and_prints_indices(bundle_tarball, tiny_onnx, tmp_path):
    board = extracted(bundle_tarball, tmp_path / "board")
    (board / "labels.txt").unlink()
    res = run_on_stand_in(board, tiny_onnx, tmp_path, "images", "--top-k", "2")
    assert res.returncode == 0
    warning = one_line(res.stderr)
    assert warning.startswith("warning: labels file") and "labels.txt is missing, so class indices are printed" in warning
    ranks = printed_ranks(res.stdout)
    assert len(ranks) == 3 and all(len(r) == 2 for r in ranks.values())
    for line in res.stdout.splitlines():
        if m := RANK.match(line):
            assert m[2] == m[4]  # the name printed is the class index
