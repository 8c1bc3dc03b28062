"""Fault injection: each bad input or fault of issue 22 that the workbook now handles ends in one sentence naming
the input (or the file and folder), and leaves nothing half-written; after a fault is fixed a plain re-run recovers.

Covered elsewhere (not repeated here): a data_dir with a space or non-ASCII characters, end to end with the real
toolkit (tests/test_paths_with_spaces.py); a model.rknn corrupted in place with its size and mtime kept is not
reused (tests/test_reuse.py); a notebook killed or interrupted mid-write (tests/test_interrupted_run.py).

The disk-full and read-only cases are real: a 8 MB tmpfs mounted for the test (the sandbox's root may mount;
where it may not, they skip and say so), and a read-only bind mount over rknn/ (chmod would not stop root).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_runner import write_notebook

from helpers import widgets
from helpers.core import leftovers
from helpers.core.errors import WorkbookError
from helpers.core.paths import REPO
from helpers.runner import params as params_check
from helpers.runner import series, variant_runs


def plan_error(config: dict, only: str | None = None, run_root: Path | None = None) -> str:
    with pytest.raises(WorkbookError) as err:
        series.plan(config, only, run_root)
    msg = str(err.value)
    assert "\n" not in msg and msg.endswith("."), f"one sentence: {msg!r}"
    return msg


def temporaries(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if leftovers.is_temporary(p.name))


# ----------------------------------------------------------------------------- bad parameters, before anything runs


def test_a_negative_count_is_refused_by_the_runner_before_any_notebook_starts(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("20_convert: {calib_images: -3}\n")
    proc = subprocess.run([sys.executable, "-m", "helpers", "run", "--params", str(params), "--run-dir", str(tmp_path / "run")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and "calib_images=-3 in 20_convert" in errors[0] and "at least 1" in errors[0], proc.stderr
    assert not (tmp_path / "run").exists(), "nothing may run (or be created) before the parameters are valid"


@pytest.mark.parametrize("section, value, said", [
    ({"20_convert": {"imgsz": "big"}}, "imgsz='big'", "not a whole number"),
    ({"20_convert": {"imgsz": -32}}, "imgsz=-32", "out of range"),
    ({"30_simulator_inference": {"batch": 0}}, "batch=0", "between 1 and 1024"),
    ({"20_convert": {"auto_disable_rules": "yes"}}, "auto_disable_rules='yes'", "True or False"),
    ({"20_convert": {"target_platform": "rk9999"}}, "target_platform='rk9999'", "rk3588"),
    ({"50_accuracy_analysis": {"threshold": 1.5}}, "threshold=1.5", "(0, 1]"),
    ({"common": {"data_dir": "/no/such/images"}}, "data_dir='/no/such/images'", "does not exist"),
])
def test_a_wrong_type_range_or_path_names_the_parameter_and_the_value(section, value, said):
    msg = plan_error(section)
    assert value in msg and said in msg


def test_the_form_refuses_the_same_values_in_the_notebook(tmp_path):
    """JupyterLab's front door: form.values() gives the runner's sentence."""
    cell = {**params_check.literals("20_convert"), "run_dir": str(tmp_path / "run"), "calib_images": -3}
    with pytest.raises(WorkbookError, match=r"calib_images=-3 in 20_convert is out of range"):
        widgets.form(cell, "20_convert").values(record=False)
    (tmp_path / "model.onnx").write_text("not a model")  # before notebook 10 hands it to onnx (its bare DecodeError)
    cell = {**params_check.literals("10_export"), "run_dir": str(tmp_path / "run"), "model": str(tmp_path / "model.onnx")}
    with pytest.raises(WorkbookError, match=r"model='.*model.onnx' in 10_export: Model file .* is not a valid ONNX model"):
        widgets.form(cell, "10_export").values(record=False)


def test_a_variants_grid_over_a_notebook_only_leaves_out_is_refused(tmp_path):
    variants_file = tmp_path / "variants.yaml"
    variants_file.write_text(f"base: {REPO / 'params' / 'sample.yaml'}\nonly: 00,10,20,30\n"
                     "grid:\n  60_hybrid_quantization.target_pt: [0.1, 0.5]\n")
    with pytest.raises(WorkbookError, match=r"varies '60_hybrid_quantization.target_pt' but only: 00,10,20,30 leaves "
                                            r"60_hybrid_quantization out"):
        variant_runs.run_variants(variants_file, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- model files: existence and kind


def ten_class_onnx(path: Path) -> Path:
    """A whole, valid ONNX classifier: 1x3x8x8 -> 10 scores (built with onnx.helper, no training)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((3, 10), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["scores"])], "ten",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 10])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)]), str(path))
    return path


@pytest.mark.parametrize("make, said", [
    (lambda p: p, "does not exist"),
    (lambda p: (p.write_text("this is not a model\n"), p)[1], "is not a valid ONNX model (it does not parse"),
    (lambda p: (p.write_bytes(ten_class_onnx(p).read_bytes()[:-90]), p)[1], "is not a valid ONNX model (it does not parse"),
])
def test_a_missing_text_or_truncated_onnx_is_named_with_its_path(tmp_path, make, said):
    model = make(tmp_path / "my model.onnx")
    msg = plan_error({"10_export": {"model": str(model)}})
    assert f"model={str(model)!r} in 10_export" in msg and str(model) in msg.split(": ", 1)[1] and said in msg


def test_a_pt_that_is_not_a_model_is_refused(tmp_path):
    import torch

    text = tmp_path / "notes.pt"
    text.write_text("weights: see the wiki\n")
    assert "is not a PyTorch file" in plan_error({"10_export": {"model": str(text)}})
    weights = tmp_path / "state_dict.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), weights)
    assert "holds only tensors (a state_dict or weights), not a model" in plan_error({"10_export": {"model": str(weights)}})


# ----------------------------------------------------------------------------- class folders vs model outputs


def image_folder(root: Path, classes: int) -> Path:
    import cv2
    import numpy as np

    for split in ("train", "val"):
        for c in range(classes):
            (root / split / f"c{c}").mkdir(parents=True)
            cv2.imwrite(str(root / split / f"c{c}" / "0.png"), np.full((8, 8, 3), 20 * c, np.uint8))
    return root


def test_class_folders_must_match_the_models_outputs_both_ways_before_20_converts(tmp_path):
    run = tmp_path / "run"
    ten_class_onnx((run / "model").mkdir(parents=True) or run / "model" / "model.onnx")
    for classes in (3, 12):  # fewer folders (died in 30 with IndexError) and more folders than outputs
        data = image_folder(tmp_path / f"d{classes}", classes)
        msg = plan_error({"20_convert": {"data_dir": str(data)}}, "20", run)
        assert f"data_dir={str(data)!r} in 20_convert has {classes} class folder(s)" in msg and "outputs 10 scores" in msg
        with pytest.raises(WorkbookError, match=f"has {classes} class folder"):  # the notebook's form says the same
            cell = {**params_check.literals("20_convert"), "run_dir": str(run), "data_dir": str(data)}
            widgets.form(cell, "20_convert").values(record=False)
    series.plan({"20_convert": {"data_dir": str(image_folder(tmp_path / "d10", 10))}}, "20", run)  # matching: accepted
    # Before notebook 10 has run: its model (the sample, trained on the 10 digits, or the ONNX given) is what 20 converts.
    msg = plan_error({"20_convert": {"data_dir": str(tmp_path / "d3")}}, "00,10,20", tmp_path / "fresh")
    assert "has 3 class folder(s)" in msg and "the sample model" in msg
    given = {"10_export": {"model": str(run / "model" / "model.onnx")}, "20_convert": {"data_dir": str(tmp_path / "d12")}}
    assert "has 12 class folder(s) in val/ but notebook 10's model" in plan_error(given, "10,20", tmp_path / "fresh")


# ----------------------------------------------------------------------------- a full disk, a read-only folder


@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MB file system (tmpfs) at tmp_path/disk, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip()}); the disk-full case needs one")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


STEP = "from pathlib import Path\nfrom helpers.core.paths import write_text_atomic\n"
WRITE_MODEL = (STEP + "out = Path(run_dir) / 'rknn'\nout.mkdir(exist_ok=True)\npartial = out / 'model.partial.rknn'\n"
               "with open(partial, 'wb') as fh:\n    fh.write(b'R' * megabytes * 1000 * 1000)\n"
               "partial.replace(out / 'model.rknn')\nwrite_text_atomic(out / 'convert.json', '{}')")


def toy_series(books: Path) -> Path:
    """00 writes a small record, 20 writes a model of `megabytes` through a temporary name, 30 prints `kilobytes`."""
    books.mkdir()
    write_notebook(books / "00_first.ipynb", [("params", "run_dir = 'x'  # run folder"),
                                              ("code", STEP + "write_text_atomic(Path(run_dir) / 'env.json', '{}')")])
    write_notebook(books / "20_model.ipynb", [("params", "run_dir = 'x'  # run folder\nmegabytes = 6  # model size"),
                                              ("code", WRITE_MODEL)])
    write_notebook(books / "30_chatty.ipynb", [("params", "run_dir = 'x'  # run folder\nkilobytes = 1  # printed"),
                                               ("code", "print('x' * kilobytes * 1000)")])
    return books


def run(books: Path, root: Path, params: Path | None = None) -> subprocess.CompletedProcess:
    args = ["--params", str(params)] if params else []
    return subprocess.run([sys.executable, "-m", "helpers", "run", "--notebooks", str(books), "--run-dir", str(root),
                           "--progress", "lines", "--no-report", *args], cwd=REPO, capture_output=True, text=True, timeout=240)


def status(root: Path) -> dict:
    return json.loads((root / "executed" / "status.json").read_text())


def fault_sentence(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"one sentence on the terminal, not a traceback:\n{stderr}"
    return lines[0]


@pytest.mark.slow
def test_a_full_disk_ends_in_one_sentence_leaves_nothing_half_written_and_a_rerun_recovers(tmp_path, small_disk):
    books, root = toy_series(tmp_path / "books"), small_disk / "run"
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 3_000_000)  # 8 MB disk, 3 MB taken: the 6 MB model cannot fit
    proc = run(books, root)
    assert proc.returncode == 1
    said = fault_sentence(proc.stderr)
    assert said.startswith("20_model stopped: the disk is full (No space left on device) writing ")
    assert str(root / "rknn" / "model.partial.rknn") in said, said
    assert "MB free" in said and "executed/failure.log" in said
    assert "Traceback" in (root / "executed" / "failure.log").read_text(), "the details are in the log"
    assert temporaries(root) == [] and not (root / "rknn" / "model.rknn").exists()
    assert not (root / "executed" / "20_model.ipynb").exists() or leftovers.whole_notebook(root / "executed" / "20_model.ipynb")
    assert status(root)["20_model"]["how"] == "failed" and "disk is full" in status(root)["20_model"]["error"]
    assert status(root)["00_first"]["how"] == "ran"

    filler.unlink()  # space freed: a plain re-run (no --rerun) finishes, reusing what had finished
    proc = run(books, root)
    assert proc.returncode == 0, proc.stderr
    assert "00_first" in proc.stdout and "reused" in proc.stdout.split("00_first", 1)[1].splitlines()[0]
    assert (root / "rknn" / "model.rknn").stat().st_size == 6_000_000 and status(root)["30_chatty"]["how"] == "ran"
    assert not (root / "executed" / "failure.log").exists(), "an earlier run's fault is no longer this run's word"


@pytest.mark.slow
def test_a_disk_that_fills_while_the_runner_writes_the_executed_notebook(tmp_path, small_disk):
    books, root = toy_series(tmp_path / "books"), small_disk / "run"
    params = tmp_path / "p.yaml"
    params.write_text("20_model: {megabytes: 0}\n30_chatty: {kilobytes: 3000}\n")  # 3 MB of output into the notebook
    (small_disk / "filler").write_bytes(b"\0" * 5_500_000)
    proc = run(books, root, params)
    assert proc.returncode == 1
    said = fault_sentence(proc.stderr)
    assert said.startswith(f"30_chatty stopped: the disk is full (No space left on device) writing {root / 'executed'}")
    assert temporaries(root) == [] and not (root / "executed" / "30_chatty.ipynb").exists()
    assert status(root)["30_chatty"]["how"] == "failed" and status(root)["20_model"]["how"] == "ran"


@pytest.mark.slow
def test_a_read_only_rknn_folder_names_the_folder(tmp_path):
    books, root = toy_series(tmp_path / "books"), tmp_path / "run"
    params = tmp_path / "p.yaml"
    params.write_text("20_model: {megabytes: 1}\n")
    rknn = root / "rknn"
    rknn.mkdir(parents=True)
    # root ignores permission bits, so a read-only bind mount of the folder onto itself.
    if subprocess.run(["mount", "--bind", str(rknn), str(rknn)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here; the read-only case needs it (chmod does not stop root)")
    try:
        assert subprocess.run(["mount", "-o", "remount,bind,ro", str(rknn)], capture_output=True).returncode == 0
        proc = run(books, root, params)
        assert proc.returncode == 1
        said = fault_sentence(proc.stderr)
        assert said.startswith(f"20_model stopped: {rknn} is not writable (Read-only file system) "
                               f"writing {rknn / 'model.partial.rknn'}")
        assert "make that folder writable" in said
        assert status(root)["20_model"]["how"] == "failed" and temporaries(root) == []
    finally:
        subprocess.run(["umount", str(rknn)], check=False)
    proc = run(books, root, params)  # writable again: the plain re-run completes
    assert proc.returncode == 0, proc.stderr
    assert (rknn / "model.rknn").stat().st_size == 1_000_000 and status(root)["20_model"]["how"] == "ran"
