"""Notebook 40's closing script (issue 21.8): the PC-to-board calls of rknn-toolkit2 with a run's values. It must
compile, name the run's chip and model, and run its control flow: here against FakeBoardRKNN (tests/fake_rknnlite.py,
a stand-in for rknn.api.RKNN driving a board, whose outputs come from ONNX Runtime on the same model), since no board
is attached. The stand-in has no board to time, so eval_perf / eval_memory give no figures; that they are called is
what is checked."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import fake_rknnlite
import numpy as np
import pytest
from board_support import TINY_SIZE, converted_run
from test_deploy import no_workbook

from helpers.deploy import bundle, pc_script
from helpers.tasks.classify.metric import scores_of
from helpers.tasks.feeds import fp32_runner
from helpers.tasks.preprocess import read_rgb
from helpers.toolkit.record import read_record

TESTS = Path(__file__).resolve().parent
CALLS = ("RKNN(verbose=False)", "rknn.list_devices()", "rknn.load_rknn(MODEL)", "rknn.init_runtime(", "rknn.inference(",
         "rknn.eval_perf(", "rknn.eval_memory(", "rknn.release()")


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_onnx, tiny_images):
    """A real converted run (rk3588, the tiny model) and its bundle, as notebook 40 has them when it prints the script."""
    run = converted_run(tmp_path_factory.mktemp("run"), tiny_onnx, tiny_images, "rk3588")
    made = bundle.build_bundle(run, read_record(run), ["a", "b", "c"], sample_images=tiny_images[:1])
    return run, made


def script_for(built, device_id=None, **params) -> pc_script.BoardScript:
    run, made = built
    params = {"core_mask": "auto", "perf_debug": True, "eval_mem": True, **params}
    return pc_script.for_bundle(made.config, made.folder, run.rknn / "model.rknn", "rk3588", device_id, params,
                                next((made.folder / "images").iterdir()))


def run_script(source: str, onnx: Path, tmp_path: Path, devices: str) -> subprocess.CompletedProcess:
    """The script as a user runs it (python3 script.py), with FakeBoardRKNN where rknn-toolkit2 would be, the board(s)
    `devices` attached, and no workbook importable."""
    path = tmp_path / "board_script.py"
    path.write_text(source)
    site = no_workbook(fake_rknnlite.install_toolkit(tmp_path / "site"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(TESTS)]), fake_rknnlite.ONNX_ENV: str(onnx),
           fake_rknnlite.DEVICES_ENV: devices, fake_rknnlite.LOG_ENV: str(tmp_path / "calls.jsonl")}
    return subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_the_script_compiles_and_names_this_runs_chip_model_and_board(built):
    run, _ = built
    source = pc_script.board_calls(script_for(built, "0123ABCD", core_mask="0_1_2"))
    compile(source, "board_script.py", "exec")
    assert f"MODEL = {str((run.rknn / 'model.rknn').resolve())!r}" in source
    assert "target='rk3588'" in source and "device_id = '0123ABCD'" in source and "core_mask=RKNN.NPU_CORE_0_1_2" in source
    assert "perf_debug=True" in source and "eval_mem=True" in source and "data_format=['nhwc']" in source
    at = [source.index(call) for call in CALLS]
    assert at == sorted(at)  # in the order the toolkit needs them
    assert "device_id = devices[0]" in pc_script.board_calls(script_for(built))  # none chosen: the first board found
    no_mem = pc_script.board_calls(script_for(built, eval_mem=False))
    assert "rknn.eval_memory(" not in no_mem and "eval_mem=False" in no_mem  # eval_memory needs eval_mem=True
    compile(no_mem, "board_script.py", "exec")
    detect = pc_script.board_calls(replace(script_for(built), task="detect", end2end=True))
    compile(detect, "board_script.py", "exec")
    assert "from postprocess import letterbox, postprocess" in detect and "end2end=True" in detect


def test_the_script_runs_on_a_stand_in_board_with_the_workbooks_input(built, tiny_onnx, tmp_path):
    res = run_script(pc_script.board_calls(script_for(built)), tiny_onnx, tmp_path, "fake-board-1")
    assert res.returncode == 0, res.stderr
    image = next((built[1].folder / "images").iterdir())
    want = read_rgb(image, TINY_SIZE)
    (fed,) = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert fed["shape"] == [1, TINY_SIZE, TINY_SIZE, 3] and fed["first_pixel"] == want[0, 0].tolist()
    scores = scores_of(fp32_runner(tiny_onnx, [0, 0, 0], [255, 255, 255]).outputs(want[None]))[0]
    printed = re.search(r"top-5 classes, best first: \[([0-9, ]+)\]", res.stdout)
    assert printed and [int(i) for i in printed[1].split(",")] == np.argsort(-scores)[:5].tolist()
    assert "FakeBoardRKNN.eval_perf" in res.stdout and "FakeBoardRKNN.eval_memory" in res.stdout


def test_without_a_board_the_script_stops_in_one_line(built, tiny_onnx, tmp_path):
    res = run_script(pc_script.board_calls(script_for(built)), tiny_onnx, tmp_path, "")
    assert res.returncode == 1 and res.stderr.strip() == pc_script.NO_BOARD and "Traceback" not in res.stderr
    assert not (tmp_path / "calls.jsonl").exists()
    res = run_script(pc_script.board_calls(script_for(built, "0123ABCD")), tiny_onnx, tmp_path, "other-board")
    assert res.returncode == 1 and "0123ABCD is not connected (connected: ['other-board'])" in res.stderr


def test_a_bgr_model_gets_bgr_and_a_wrong_chip_is_refused(built, tiny_onnx, tmp_path):
    script = replace(script_for(built), color_order="BGR")
    res = run_script(pc_script.board_calls(script), tiny_onnx, tmp_path, "b")
    assert res.returncode == 0, res.stderr
    fed = json.loads((tmp_path / "calls.jsonl").read_text().splitlines()[0])["first_pixel"]
    assert fed == read_rgb(script.image, TINY_SIZE)[0, 0, ::-1].tolist()
    res = run_script(pc_script.board_calls(replace(script, target="rk3566")), tiny_onnx, tmp_path, "b")
    assert res.returncode == 1 and "init_runtime failed" in res.stderr  # the stand-in refuses, as the toolkit does
