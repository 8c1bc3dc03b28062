"""Notebook 40 in the series (papermill, small parameters): what it leaves in board/ with and without a board."""
from __future__ import annotations

import json
import re
import tarfile

import nbformat
import numpy as np
import pytest
from board_support import BOARD_ID, needs_board

from helpers.core.paths import REPO, Run
from helpers.deploy import bundle
from helpers.steps import board

NB = "40_board_inference"


@pytest.fixture(scope="module")
def run_root(series):
    return series.ran(NB)


def _outputs(root) -> str:
    nb = nbformat.read(root / "executed" / f"{NB}.ipynb", as_version=4)
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


@pytest.mark.skipif(bool(BOARD_ID), reason="a board is attached (RKNN_DEVICE_ID set): the no-board path does not apply")
def test_without_a_board_it_says_so_and_skips_visibly(run_root):
    devices = json.loads((run_root / "board" / "devices.json").read_text())
    assert devices["found"] is False and devices["adb"] == [] and devices["ntb"] == [] and devices["chosen"] is None
    text = _outputs(run_root)
    no_board = [ln for ln in text.splitlines() if ln.startswith("No board found")]
    assert len(no_board) == 1 and "adb devices" in no_board[0] and "rknn_server" in no_board[0]
    assert text.count("[skipped: no board]") == 3
    for board_only in ("perf.json", "memory.json", "metrics.json"):  # nothing pretends a board answered
        assert not (run_root / "board" / board_only).exists()


def test_bundle_folder_and_tarball(run_root):
    deploy = run_root / "board" / "deploy"
    cfg = json.loads((deploy / "model.json").read_text())
    record = json.loads((run_root / "rknn" / "convert.json").read_text())
    assert cfg["target_platform"] == record["config"]["target_platform"] == board.model_platform(deploy / "model.rknn")
    assert cfg["input_size"] == record["input_size"] and cfg["mean_values"] == record["config"]["mean_values"]
    assert (deploy / "model.rknn").read_bytes() == (run_root / "rknn" / "model.rknn").read_bytes()
    hybrid = run_root / "hybrid" / "model_hybrid.rknn"
    kept_out = bundle.hybrid_kept_out(Run.at(run_root))  # demo, below INT8, or not measurably better than INT8
    assert (deploy / "model_hybrid.rknn").exists() == (hybrid.exists() and not kept_out)
    labels = (deploy / "labels.txt").read_text().split()
    assert labels == [str(i) for i in range(10)] and cfg["classes"] == 10  # the digits sample
    assert (deploy / "preprocess.py").read_bytes() == (REPO / "helpers" / "tasks" / "preprocess.py").read_bytes()
    assert (deploy / "run_rknn.py").read_bytes() == (REPO / "helpers" / "deploy" / "run_rknn.py").read_bytes()
    assert (deploy / "throughput.py").read_bytes() == (REPO / "helpers" / "deploy" / "throughput.py").read_bytes()
    assert len(list((deploy / "images").iterdir())) == 2  # sample_images in tests/small_params.yaml
    assert (deploy / "cpp" / "CMakeLists.txt").is_file() and "model.rknn" in (deploy / "cpp" / "run.sh").read_text()
    golden = next((deploy / "cpp" / "data").rglob("*.npy"))
    assert np.load(golden).size == 10
    readme = (deploy / "README.md").read_text()
    assert f"rknn-toolkit-lite2=={cfg['toolkit_version']}" in readme and "run_rknn.py images/" in readme
    with tarfile.open(run_root / "board" / "deploy.tar.gz") as tar:
        members = {m.name for m in tar.getmembers() if m.isfile()}
    assert members == {f"deploy/{p.relative_to(deploy)}" for p in deploy.rglob("*") if p.is_file()}
    assert not list((run_root / "board").glob("*.partial*"))


def _markdown_outputs(root) -> str:
    nb = nbformat.read(root / "executed" / f"{NB}.ipynb", as_version=4)
    return "\n".join(out.get("data", {}).get("text/markdown", "") for cell in nb.cells for out in cell.get("outputs", []))


def test_rknnlite_snippet_and_core_mask_words_use_this_runs_values(run_root, tmp_path):
    """The RKNNLite calls a learner can paste, with this run's model, size and colour order, in the
    notebook's output and its rendered report; 'core mask auto' reads the same in form, output and README."""
    from helpers.deploy import run_rknn
    from helpers.runner import render

    cfg = json.loads((run_root / "board" / "deploy" / "model.json").read_text())
    size, meaning = cfg["input_size"], run_rknn.core_mask_meaning("auto", cfg["target_platform"])
    snippet = _markdown_outputs(run_root)
    for call in ("lite = RKNNLite()", "lite.load_rknn('model.rknn')", "lite.init_runtime(core_mask=RKNNLite.NPU_CORE_AUTO)",
                 "lite.inference(inputs=[img[None]], data_format=['nhwc'])", f"cv2.resize(img, ({size}, {size}))",
                 f"1 x {size} x {size} x 3, NHWC", "cv2.COLOR_BGR2RGB", "lite.release()"):
        assert call in snippet, call
    _, page = render.render_notebook(run_root / "executed" / f"{NB}.ipynb", tmp_path)
    assert "NPU_CORE_AUTO" in page.read_text() and f"1 x {size} x {size} x 3" in page.read_text()
    assert f"core mask auto: {meaning} (toolkit value 0)" in _outputs(run_root)
    assert f"means {meaning}" in (run_root / "board" / "deploy" / "README.md").read_text()
    params = json.loads((REPO / "notebooks" / f"{NB}.ipynb").read_text())["cells"]
    assert any(f"auto ({meaning})" in "".join(c["source"]) for c in params)


def test_runner_check_in_the_notebook(run_root):
    text = _outputs(run_root)
    assert "runner input vs workbook input on 2 images: identical (bit for bit)" in text
    assert "pip install rknn-toolkit-lite2==" in text


def test_board_cells_get_notebook_30s_images_and_simulator_scores(run_root):
    """What the board cells compare against, without a board: the same files, order and INT8 scores."""
    from helpers.core.paths import Run

    z = np.load(run_root / "eval" / "predictions.npz")
    images, sim = board.notebook30_set(Run.at(run_root), 5)
    assert [str(p) for p in images.paths] == [str(p) for p in z["paths"][:5]]
    assert "simulator" in sim.name.lower() and sim.scores.shape == (5, 10)
    int8 = [i for i in range(3) if "simulator" in str(z[f"name_{i}"]).lower() and "bgr" not in str(z[f"name_{i}"]).lower()][0]
    assert np.array_equal(sim.scores, z[f"scores_{int8}"][:5])


@needs_board
def test_with_a_board_it_measures(run_root):
    devices = json.loads((run_root / "board" / "devices.json").read_text())
    assert devices["found"] and devices["chosen"]
    metrics = json.loads((run_root / "board" / "metrics.json").read_text())
    assert metrics["comparison"]["top1_agreement"] > 0.95 and metrics["comparison"]["mean_cosine"] > 0.99
    perf = json.loads((run_root / "board" / "perf.json").read_text())
    assert perf["raw"]


def test_hybrid_from_notebook_60_joins_the_bundle(series):
    """40 runs before 60: after the whole series the bundle ships notebook 60's hybrid too, byte for byte, when it is
    measurably better than plain INT8 by the one noise rule; a hybrid built under demo calibration, or one within noise
    of INT8 (the small parameters' model loses nothing to INT8), never does, and the reason quotes the interval."""
    root = series.ran("60_hybrid_quantization")
    deploy = root / "board" / "deploy"
    chosen = json.loads((root / "hybrid" / "chosen.json").read_text())
    cfg = json.loads((deploy / "model.json").read_text())
    with tarfile.open(root / "board" / "deploy.tar.gz") as tar:
        names = tar.getnames()
    if chosen["demo"]:
        assert not (root / "hybrid" / "model_hybrid.rknn").exists() and (root / chosen["file"]).is_file()
        assert not (deploy / "model_hybrid.rknn").exists() and cfg.get("hybrid_model") is None
        assert "deploy/model_hybrid.rknn" not in names and "model_hybrid" not in (deploy / "README.md").read_text()
        return
    if chosen["vs_int8"]["verdict"] != "better":
        assert chosen["vs_int8"]["text"] in bundle.hybrid_kept_out(Run.at(root))
        assert not (deploy / "model_hybrid.rknn").exists() and cfg.get("hybrid_model") is None
        assert "deploy/model_hybrid.rknn" not in names
        return
    hybrid = root / "hybrid" / "model_hybrid.rknn"
    assert (deploy / "model_hybrid.rknn").read_bytes() == hybrid.read_bytes()
    assert cfg["hybrid_model"] == "model_hybrid.rknn"
    assert "--model model_hybrid.rknn" in (deploy / "README.md").read_text()
    assert "deploy/model_hybrid.rknn" in names


def _script(root) -> str:
    """The notebook's closing PC-to-board script, as its output shows it (the listing's plain-text form)."""
    nb = nbformat.read(root / "executed" / f"{NB}.ipynb", as_version=4)
    found = [out["data"]["text/plain"] for cell in nb.cells for out in cell.get("outputs", [])
             if out.get("data", {}).get("text/plain", "").startswith("# Notebook 40's board calls")]
    assert len(found) == 1
    return found[0]


def test_it_ends_with_the_board_calls_as_a_plain_script_with_this_runs_values(run_root):
    """Issue 21.8: like 20/30/50/60, the notebook ends with its toolkit calls as a script to copy (tests/
    test_deploy_pc_script.py runs that script's control flow against a stand-in board)."""
    script = _script(run_root)
    compile(script, "board_script.py", "exec")
    devices = json.loads((run_root / "board" / "devices.json").read_text())
    platform = board.model_platform(run_root / "rknn" / "model.rknn")
    assert f"MODEL = {str((run_root / 'rknn' / 'model.rknn').resolve())!r}" in script
    assert f"target={platform!r}" in script and "rknn.list_devices()" in script and "rknn.eval_perf(" in script
    chosen = devices["chosen"]
    assert (f"device_id = {chosen!r}" if chosen else "device_id = devices[0]") in script


@pytest.mark.skipif(bool(BOARD_ID), reason="a board is attached (RKNN_DEVICE_ID set): the no-board path does not apply")
def test_without_a_board_no_fps_is_shown_and_the_benchmark_is_for_the_board(run_root):
    note = _markdown_outputs(run_root)
    assert "No board here, so no FPS is shown: the benchmark is for the board" in note
    assert "--benchmark 200" in note and "README.md, section 5" in note
    assert not re.search(r"\d\s*FPS", _outputs(run_root) + note)  # no figure nobody measured
