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
from pathlib import Path

import numpy as np
import pytest

import fake_rknnlite
from board_support import TINY_SIZE, converted_run
from helpers import convert, data
from helpers.deploy import bundle
from helpers.deploy import run_rknn
from helpers.evaluate import OnnxBackend
from helpers.paths import SAMPLE_DATA
from helpers.preprocess import read_rgb, softmax


@pytest.fixture(scope="module")
def sample_val() -> data.LabelledImages:
    """Real images of the bundled sample (32x32 digits), a few per class."""
    return data.load_split(data.write_sample(SAMPLE_DATA), "val").subset(12)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, tiny_onnx, tiny_images, sample_val) -> Path:
    """A real bundle (tiny rk3588 model, input 16) extracted from its tarball into a fresh folder."""
    run = converted_run(tmp_path_factory.mktemp("run"), tiny_onnx, tiny_images, "rk3588")
    b = bundle.build_bundle(run, convert.read_record(run), ["a", "b", "c"], sample_images=sample_val.paths[:3])
    out = tmp_path_factory.mktemp("extracted")
    with tarfile.open(b.tarball) as tar:
        tar.extractall(out)
    return out / "deploy"


def run_runner(bundle: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(bundle / "run_rknn.py"), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def load_bundled_runner(bundle: Path):
    """Import run_rknn.py from the extracted bundle (as the board would), not from the repository."""
    spec = importlib.util.spec_from_file_location("bundled_run_rknn", bundle / "run_rknn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundled_runner_uses_the_bundled_preprocess(bundle_dir):
    mod = load_bundled_runner(bundle_dir)
    assert Path(mod.preprocess.__file__).resolve() == (bundle_dir / "preprocess.py").resolve()
    assert (bundle_dir / "preprocess.py").read_bytes() == bundle.PREPROCESS.read_bytes()


def test_arguments_default_from_model_json(bundle_dir):
    mod = load_bundled_runner(bundle_dir)
    args = mod.parse_args(["images/x.png"])
    assert args.model == bundle_dir / "model.rknn" and args.labels == bundle_dir / "labels.txt"
    assert args.size == TINY_SIZE and args.top_k == 5 and args.core_mask == "auto" and args.loops == 0
    args = mod.parse_args(["a.png", "b/", "--top-k", "3", "--core-mask", "0_1_2", "--loops", "50", "--size", "24"])
    assert args.inputs == ["a.png", "b/"] and args.top_k == 3 and args.core_mask == "0_1_2" and args.loops == 50 and args.size == 24


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: inputs"),
    (["x.png", "--top-k", "0"], "--top-k must be at least 1"),
    (["x.png", "--core-mask", "fast"], "invalid choice: 'fast'"),
    (["x.png", "--loops", "-1"], "--loops must be 0 or more"),
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
    want = ordered.load(TINY_SIZE)  # helpers.data -> helpers.preprocess.read_rgb, as evaluate() uses it
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
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake_rknnlite.install(tmp_path / "site")), str(TESTS)]),
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
    """Preprocessing, the loop over a folder, top-k output and the timing loop, against a stand-in
    runtime: every printed class and probability equals ONNX Runtime on the workbook's own input."""
    res = run_on_stand_in(bundle_dir, tiny_onnx, tmp_path, "images", "--top-k", "3", "--loops", "4")
    assert res.returncode == 0, res.stderr
    assert f"input {TINY_SIZE}x{TINY_SIZE} RGB uint8 NHWC, core mask auto (one idle core, picked by the runtime)" in res.stdout
    ranks = printed_ranks(res.stdout)
    images = sorted((bundle_dir / "images").iterdir())
    assert [Path(k).name for k in ranks] == [p.name for p in images]
    ort = OnnxBackend(tiny_onnx, [0, 0, 0], [255, 255, 255])
    labels = (bundle_dir / "labels.txt").read_text().split()
    for path, printed in zip(images, ranks.values()):
        probs = softmax(ort.run(read_rgb(path, TINY_SIZE)[None])[0])
        want = [(int(i), round(float(probs[i]), 4)) for i in np.argsort(-probs)[:3]]
        assert printed == want
    assert all(f"  1. {labels[r[0][0]]}" in res.stdout for r in ranks.values())
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert len(calls) == len(images) + 1 + 4  # one call per image, a warm-up, then --loops
    assert "timing over 4 runs" in res.stdout


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
    assert res.returncode == 2 and f"Folder {empty} has no images" in res.stderr
    res = run_runner(bundle_dir, "images", "--model", str(tmp_path / "absent.rknn"), cwd=bundle_dir)
    assert res.returncode == 2 and "Cannot read model file" in res.stderr
    header_only = tmp_path / "cut.rknn"
    header_only.write_bytes((bundle_dir / "model.rknn").read_bytes()[:200])
    with pytest.raises(run_rknn.RunnerError, match="has an RKNN header but no readable model description"):
        run_rknn.rknn_meta(header_only)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    res = run_runner(bundle_dir, str(broken), "--preprocess-only", str(tmp_path / "x.npy"), cwd=tmp_path)
    assert res.returncode == 2 and "Cannot read image" in res.stderr and "broken.png" in res.stderr
