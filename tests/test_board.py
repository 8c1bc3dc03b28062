"""helpers.steps.board against the real toolkit: discovery, device choice, target checks, the C++ demo,
the deployment bundle; board-only tests skip unless RKNN_DEVICE_ID is set."""
from __future__ import annotations

import json
import re
import shutil
import tarfile

import numpy as np
import pytest
from board_support import BOARD_ID, TINY_SIZE, converted_run, needs_board

from helpers.backends.board import Devices, choose_device
from helpers.core.errors import RknnError, WorkbookError
from helpers.core.paths import Run
from helpers.deploy import bundle, codegen
from helpers.steps import board
from helpers.tasks.classify.metric import EvalResult, compare
from helpers.text import board as board_text
from helpers.toolkit.record import read_record


@pytest.fixture(scope="module")
def run3588(tmp_path_factory, tiny_onnx, tiny_images) -> Run:
    return converted_run(tmp_path_factory.mktemp("run3588"), tiny_onnx, tiny_images, "rk3588")


@pytest.fixture(scope="module")
def run3566(tmp_path_factory, tiny_onnx, tiny_images) -> Run:
    return converted_run(tmp_path_factory.mktemp("run3566"), tiny_onnx, tiny_images, "rk3566")


# ---------------------------------------------------------------- devices

@pytest.mark.skipif(bool(BOARD_ID), reason="a board is attached (RKNN_DEVICE_ID set): the no-board path does not apply")
def test_discover_without_board_reports_none_found(tmp_path):
    devices = board.discover(tmp_path / "list.log")
    assert not devices.found and devices.ids == []
    assert list(devices.table().columns) == ["device_id", "transport"] and devices.table().empty
    line = devices.status_line()
    assert line.startswith("No board found") and "adb devices" in line and "rknn_server" in line and "\n" not in line
    run = Run.at(tmp_path / "run")
    saved = json.loads(board.save_devices(run, devices, None).read_text())
    assert saved["found"] is False and saved["adb"] == [] and saved["ntb"] == [] and saved["chosen"] is None


def test_choose_device_unknown_id_is_a_clear_error():
    with pytest.raises(WorkbookError, match=r"device_id='NOPE' is not connected \(connected: none \(no board found\)\)"):
        choose_device(Devices(), "NOPE")
    two = Devices(adb=["0123ABC", "4567DEF"])
    with pytest.raises(WorkbookError, match="connected: 0123ABC, 4567DEF"):
        choose_device(two, "0123ABD")
    assert choose_device(two, "") == "0123ABC"
    assert choose_device(two, " 4567DEF ") == "4567DEF"
    assert choose_device(Devices(), "") is None


# ---------------------------------------------------------------- target / platform

def test_platform_read_from_the_rknn_file(run3588, run3566):
    assert board.model_platform(run3588.rknn / "model.rknn") == "rk3588"
    assert board.model_platform(run3566.rknn / "model.rknn") == "rk3566"


def test_the_toolkit_enforces_the_same_platform_we_read(run3566, tmp_path):
    """Cross-check of our reading with the toolkit's own: init_runtime refuses a target that differs
    from the platform stored in the loaded .rknn, before looking for any device."""
    from helpers.toolkit.session import RKNN

    with RKNN(tmp_path / "t.log") as rk:
        rk.load_rknn(str(run3566.rknn / "model.rknn"))
        with pytest.raises(RknnError, match="target_platform is 'rk3566'"):
            rk.init_runtime(target="rk3588")


def test_target_mismatch_and_unknown_target(run3588):
    model = run3588.rknn / "model.rknn"
    record = read_record(run3588)
    assert board.resolve_target("", model, record) == "rk3588"
    assert board.resolve_target("RK3588", model, record) == "rk3588"
    with pytest.raises(WorkbookError, match=r"target='rk3566' does not match model.rknn, which was built for rk3588"):
        board.resolve_target("rk3566", model, record)
    with pytest.raises(WorkbookError, match="target='rk9999' is not a known Rockchip chip"):
        board.resolve_target("rk9999", model)


def test_rknn_built_for_another_platform_than_recorded(run3588, run3566, tmp_path):
    """A .rknn swapped for one built for another chip: the file says rk3566, convert.json says rk3588."""
    record = read_record(run3588)
    with pytest.raises(WorkbookError, match="model.rknn was built for rk3566 but rknn/convert.json records rk3588"):
        board.resolve_target("", run3566.rknn / "model.rknn", record)
    not_rknn = tmp_path / "model.rknn"
    not_rknn.write_bytes(b"\x08\x01onnx-ish bytes")
    with pytest.raises(WorkbookError, match="is not an RKNN model"):
        board.model_platform(not_rknn)
    with pytest.raises(WorkbookError, match="does not exist; run notebooks/20_convert.ipynb"):
        board.model_platform(tmp_path / "missing.rknn")


def test_core_mask_names():
    assert board.core_mask_value("auto", "rk3566") == 0
    assert board.core_mask_value("0_1", "rk3588") == 3
    assert board.core_mask_value("0_1_2", "rk3588") == 7
    with pytest.raises(WorkbookError, match="core_mask=0_1_2 is not available on rk3576"):
        board.core_mask_value("0_1_2", "rk3576")
    with pytest.raises(WorkbookError, match="core_mask=1 is not available on rk3566; use one of auto"):
        board.core_mask_value("1", "rk3566")
    with pytest.raises(WorkbookError, match="core_mask='fast' is unknown"):
        board.core_mask_value("fast", "rk3588")


@pytest.mark.skipif(bool(BOARD_ID), reason="a board is attached: an unknown id would be a different case")
def test_board_backend_refuses_bad_input_before_touching_a_board(run3588, tmp_path):
    model = run3588.rknn / "model.rknn"
    with pytest.raises(WorkbookError, match="does not match model.rknn, which was built for rk3588"):
        board.open_board(model, "rk3568", tmp_path / "a.log")
    with pytest.raises(WorkbookError, match="device_id='NOPE' is not connected"):
        board.open_board(model, "rk3588", tmp_path / "b.log", device_id="NOPE")
    with pytest.raises(WorkbookError, match="No board found for target='rk3588'"):
        board.open_board(model, "", tmp_path / "c.log")


@pytest.mark.skipif(bool(BOARD_ID), reason="a board is attached: this checks the no-board failure")
def test_board_accuracy_analysis_without_a_board_fails_honestly(run3588, tiny_images, tmp_path):
    record = read_record(run3588)
    with pytest.raises(RknnError) as err:
        board.board_accuracy_analysis(record, tiny_images[:1], tmp_path / "snapshot", "rk3588", None, tmp_path / "aa.log")
    msg = str(err.value).splitlines()[0]  # the toolkit's own reason, not a bare 'RuntimeError'
    assert msg.startswith("rknn-toolkit2 accuracy_analysis failed: Get board target failed") and "no devices" in msg
    assert "adb devices" in msg
    assert not (tmp_path / "snapshot" / "error_analysis.txt").exists()


# ---------------------------------------------------------------- C++ demo + bundle

@pytest.fixture(scope="module")
def cpp_demo(run3588, tiny_images):
    record = read_record(run3588)
    return codegen.generate_cpp_demo(record, run3588.board / "cpp", run3588.logs / "codegen.log", image=tiny_images[0])


def test_codegen_writes_a_cpp_project_for_model_rknn(cpp_demo):
    folder = cpp_demo.folder
    for rel in ("CMakeLists.txt", "src/main.cc", "build_linux.sh", "run.sh", "README_EN.md"):
        assert (folder / rel).is_file(), rel
    assert "model.rknn" in (folder / "run.sh").read_text()  # the demo runs the bundle's model name
    golden = list((folder / "data").rglob("*.npy"))
    assert golden and np.load(golden[0]).size == 3  # the simulator's output for the sample image, 3 classes
    assert not folder.with_name("cpp.work").exists()


def test_bundle_contents_and_tarball(run3588, cpp_demo, tiny_images):
    record = read_record(run3588)
    b = bundle.build_bundle(run3588, record, ["cat", "dog", "bird"], cpp_demo=cpp_demo, sample_images=tiny_images[:2])
    names = set(b.files)
    example = f"images/{bundle.example_name(tiny_images[0])}"  # <class folder>_<file name>
    assert {"model.rknn", "labels.txt", "model.json", "run_rknn.py", "chips.py", "throughput.py", "preprocess.py", "README.md",
            example, "cpp/run.sh"} <= names
    assert "model_hybrid.rknn" not in names  # notebook 60 has not run here
    assert (b.folder / "preprocess.py").read_bytes() == bundle.PREPROCESS.read_bytes()
    assert (b.folder / "run_rknn.py").read_bytes() == bundle.RUNNER.read_bytes()
    assert (b.folder / "model.rknn").read_bytes() == (run3588.rknn / "model.rknn").read_bytes()
    cfg = json.loads((b.folder / "model.json").read_text())
    assert cfg["target_platform"] == "rk3588" and cfg["input_size"] == TINY_SIZE and cfg["color_order"] == "RGB"
    assert cfg["std_values"] == [255, 255, 255] and cfg["classes"] == 3 and cfg["hybrid_model"] is None
    readme = (b.folder / "README.md").read_text()
    assert "pip install rknn-toolkit-lite2==2.5.0" in readme and f"python3 run_rknn.py {example}" in readme
    with tarfile.open(b.tarball) as tar:
        members = {m.name for m in tar.getmembers() if m.isfile()}
    assert members == {f"deploy/{n}" for n in names}
    assert not list(run3588.board.glob("*.partial*"))


def test_bundle_includes_the_hybrid_model_only_when_present(run3588, tmp_path):
    run = Run.at(tmp_path / "run")
    shutil.copytree(run3588.rknn, run.rknn, dirs_exist_ok=True)
    (run.root / "hybrid").mkdir()
    shutil.copyfile(run.rknn / "model.rknn", run.root / "hybrid" / "model_hybrid.rknn")  # a stand-in made by the real toolkit
    record = read_record(run)
    b = bundle.build_bundle(run, record, ["a", "b", "c"])
    assert "model_hybrid.rknn" in b.files
    assert json.loads((b.folder / "model.json").read_text())["hybrid_model"] == "model_hybrid.rknn"
    assert "--model model_hybrid.rknn" in (b.folder / "README.md").read_text()


def test_bad_bundle_input_leaves_the_previous_bundle_untouched(run3588, run3566, tmp_path):
    run = Run.at(tmp_path / "run")
    shutil.copytree(run3588.rknn, run.rknn, dirs_exist_ok=True)
    record = read_record(run)
    good = bundle.build_bundle(run, record, ["a", "b", "c"])
    before = good.tarball.read_bytes()
    (run.root / "hybrid").mkdir()
    shutil.copyfile(run3566.rknn / "model.rknn", run.root / "hybrid" / "model_hybrid.rknn")
    with pytest.raises(WorkbookError, match="model_hybrid.rknn was built for rk3566 but model.rknn for rk3588"):
        bundle.build_bundle(run, record, ["a", "b", "c"])
    with pytest.raises(WorkbookError, match="labels is empty"):
        bundle.build_bundle(run, record, [], models={"model.rknn": run.rknn / "model.rknn"})
    assert good.tarball.read_bytes() == before and (run.board / "deploy" / "model.rknn").is_file()
    assert not list(run.board.glob("*.partial*"))


def test_hybrid_added_after_the_bundle_was_built(run3588, run3566, cpp_demo, tiny_images, tmp_path):
    """Notebook 60 runs after 40: its hybrid joins the existing bundle; one for another chip is refused."""
    run = Run.at(tmp_path / "run")
    shutil.copytree(run3588.rknn, run.rknn, dirs_exist_ok=True)
    record = read_record(run)
    assert bundle.add_hybrid_to_bundle(run, run.rknn / "model.rknn") is None  # no bundle yet: says to run 40
    first = bundle.build_bundle(run, record, ["a", "b", "c"], cpp_demo=cpp_demo, sample_images=tiny_images[:1])
    before = first.tarball.read_bytes()
    with pytest.raises(WorkbookError, match="model.rknn was built for rk3566 but the bundle's model.rknn for rk3588"):
        bundle.add_hybrid_to_bundle(run, run3566.rknn / "model.rknn")
    assert first.tarball.read_bytes() == before and not list(run.board.glob("*.partial*"))
    b = bundle.add_hybrid_to_bundle(run, run3588.rknn / "model.rknn")  # a stand-in made by the real toolkit
    assert set(first.files) | {"model_hybrid.rknn"} == set(b.files), "everything else stays, cpp demo and images included"
    assert json.loads((b.folder / "model.json").read_text())["hybrid_model"] == "model_hybrid.rknn"
    readme = (b.folder / "README.md").read_text()
    assert "--model model_hybrid.rknn" in readme and f"images/{bundle.example_name(tiny_images[0])}" in readme
    with tarfile.open(b.tarball) as tar:
        assert "deploy/model_hybrid.rknn" in tar.getnames()


# ---------------------------------------------------------------- board only

@needs_board
def test_board_inference_agrees_with_the_simulator(run3588, tiny_images, tmp_path):
    from helpers.steps import evaluate
    from helpers.tasks.classify import metric
    from helpers.tasks.data import LabelledImages

    record = read_record(run3588)
    target = board.model_platform(run3588.rknn / "model.rknn")
    images = LabelledImages(list(tiny_images), np.zeros(len(tiny_images), np.int64), ["a", "b", "c"])
    with board.open_board(run3588.rknn / "model.rknn", target, tmp_path / "board.log", device_id=BOARD_ID) as b:
        on_board = metric.evaluate(b, images, TINY_SIZE, progress=False)
    sim = evaluate.simulator_from_record(record, tmp_path / "sim.log", batch=1)
    try:
        in_sim = metric.evaluate(sim, images, TINY_SIZE, progress=False)
    finally:
        sim.close()
    cmp = metric.compare(in_sim, on_board)
    assert cmp.mean_cosine > 0.99 and cmp.top1_agreement >= 0.875


@needs_board
def test_board_perf_and_memory(run3588, tmp_path):
    target = board.model_platform(run3588.rknn / "model.rknn")
    with board.open_board(run3588.rknn / "model.rknn", target, tmp_path / "perf.log", device_id=BOARD_ID,
                          perf_debug=True, eval_mem=True) as b:
        perf = b.perf()
        mem = b.memory()
    assert perf.raw and mem
    json.dumps(perf.summary(), default=str)


# ---------------------------------------------------------------- bundle: README facts, atomic swap, demo hybrids

def test_readme_states_toolkit_version_and_real_tensor_types(run3588):
    import dataclasses

    record = read_record(run3588)
    b = bundle.build_bundle(run3588, record, ["a", "b", "c"])
    readme = (b.folder / "README.md").read_text()
    version = record.toolkit_version
    assert version and f"rknn-toolkit2 {version}" in readme and re.search(rf"\*\*{re.escape(version)}\s+or newer\*\*", readme)
    assert "Invalid RKNN model version" in readme
    found = bundle.io_dtypes(record)
    assert found == json.loads((b.folder / "model.json").read_text())["io_dtypes"]
    for name, dtype in found.items():  # what the build log announced, e.g. input 'images' -> int8
        assert f"{name}: **{dtype}**" in readme
    floats = dataclasses.replace(record, dtype_notes=[])  # a model whose build announced no dtype change
    b = bundle.build_bundle(run3588, floats, ["a", "b", "c"])
    readme = (b.folder / "README.md").read_text()
    assert "keep their float type" in readme and not re.search(r"\bint8\b", readme, re.I)
    assert "lite.init_runtime(core_mask=RKNNLite.NPU_CORE_AUTO)" in readme and f"1 x {TINY_SIZE} x {TINY_SIZE} x 3" in readme
    assert "$" not in readme  # every template field was filled


def test_failed_tarball_keeps_the_previous_folder_and_tarball_together(run3588, tmp_path, monkeypatch):
    run = Run.at(tmp_path / "run")
    shutil.copytree(run3588.rknn, run.rknn, dirs_exist_ok=True)
    record = read_record(run)
    good = bundle.build_bundle(run, record, ["a", "b", "c"])
    before = good.tarball.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundle.tarfile, "open", disk_full)
    with pytest.raises(OSError, match="No space left"):
        bundle.build_bundle(run, record, ["x", "y", "z"])
    assert (run.board / "deploy" / "labels.txt").read_text().split() == ["a", "b", "c"]  # old folder ...
    assert good.tarball.read_bytes() == before  # ... beside its own old tarball
    assert sorted(p.name for p in run.board.iterdir()) == ["deploy", "deploy.tar.gz"]


def test_demo_hybrid_never_enters_the_bundle(run3588, tmp_path):
    run = Run.at(tmp_path / "run")
    shutil.copytree(run3588.rknn, run.rknn, dirs_exist_ok=True)
    shutil.copyfile(run.rknn / "model.rknn", run.hybrid / "model_hybrid.rknn")
    (run.hybrid / "chosen.json").write_text(json.dumps({"model": "search", "demo": True}))
    assert "model_hybrid.rknn" not in bundle.bundle_models(run)
    record = read_record(run)
    b = bundle.build_bundle(run, record, ["a", "b", "c"])
    assert "model_hybrid.rknn" not in b.files
    assert bundle.add_hybrid_to_bundle(run, run.hybrid / "model_hybrid.rknn") is None
    (run.hybrid / "chosen.json").write_text(json.dumps({"model": "search", "demo": False}))
    assert "model_hybrid.rknn" in bundle.bundle_models(run)


def test_hybrid_below_int8_stays_out_and_an_earlier_one_is_taken_out(run3588, tmp_path, capsys):
    """A real-calibration hybrid that scores below plain INT8 (chosen.json "below_int8") is not shipped, and a
    hybrid an earlier run put into board/deploy/ leaves it, README and tarball rewritten."""
    import tarfile

    run = Run.at(tmp_path / "run")
    shutil.copytree(run3588.rknn, run.rknn, dirs_exist_ok=True)
    shutil.copyfile(run.rknn / "model.rknn", run.hybrid / "model_hybrid.rknn")
    (run.hybrid / "chosen.json").write_text(json.dumps({"model": "hybrid (c)", "demo": False, "below_int8": False}))
    bundle.build_bundle(run, read_record(run), ["a", "b", "c"])
    assert (run.board / "deploy" / "model_hybrid.rknn").is_file()  # an earlier run shipped it
    assert "model_hybrid.rknn" in (run.board / "deploy" / "README.md").read_text()
    (run.hybrid / "chosen.json").write_text(json.dumps({"model": "hybrid (c)", "demo": False, "below_int8": True}))
    assert "model_hybrid.rknn" not in bundle.bundle_models(run)
    b = bundle.add_hybrid_to_bundle(run, run.hybrid / "model_hybrid.rknn")
    assert "scores below plain INT8 with the same calibration" in capsys.readouterr().out
    assert b is not None and "model_hybrid.rknn" not in b.files and not (run.board / "deploy" / "model_hybrid.rknn").exists()
    assert "hybrid_model" not in json.loads((run.board / "deploy" / "model.json").read_text())
    assert "model_hybrid.rknn" not in (run.board / "deploy" / "README.md").read_text()
    with tarfile.open(b.tarball) as tar:
        assert not any(n.endswith("model_hybrid.rknn") for n in tar.getnames())
    assert bundle.add_hybrid_to_bundle(run, run.hybrid / "model_hybrid.rknn") is None  # nothing left to take out


def test_export_choice_records_whether_the_hybrid_is_below_int8(tmp_path):
    from helpers.steps import hybrid

    run = Run.at(tmp_path / "run")
    (run.hybrid / "strategy.rknn").write_bytes(b"rknn")
    choice = {"model": "hybrid (c)", "map50_95": 0.7594, "metric": "map50_95", "mean_cosine": 0.9999, "float16_layers": 15,
              "file": "hybrid/strategy.rknn"}
    hybrid.export_choice(run, choice, "notebook 20's list (50 images)", demo=False, int8_value=0.7644)
    assert json.loads((run.hybrid / "chosen.json").read_text())["below_int8"] is True
    hybrid.export_choice(run, {**choice, "map50_95": 0.7644}, "notebook 20's list (50 images)", demo=False, int8_value=0.7644)
    assert json.loads((run.hybrid / "chosen.json").read_text())["below_int8"] is False  # equal is not below


def test_same_npu_target_is_accepted(run3566, tmp_path):
    model = run3566.rknn / "model.rknn"
    assert board.resolve_target("rk3568", model, read_record(run3566)) == "rk3568"
    with pytest.raises(WorkbookError, match="target='rk3588' does not match model.rknn, which was built for rk3566"):
        board.resolve_target("rk3588", model)


# ---------------------------------------------------------------- perf without a board: the parsing and the plot

def test_perf_from_result_reads_layers_and_total():
    raw = {"layers": [{"name": "conv1", "op_type": "Conv", "time(us)": 120}, {"name": "fc", "op_type": "Gemm", "time(us)": 30}],
           "total_time(us)": 200}
    perf = board.Perf.from_result(raw)
    assert perf.total_us == 200 and perf.fps == 5000 and list(perf.layers["name"]) == ["conv1", "fc"]
    printed = "...\nTotal Operator Elapsed Per Frame Time(us): 1000\nTotal Memory Read/Write Per Frame Size(KB): 3\n"
    perf = board.Perf.from_result("a table as text", printed)  # 2.x returns the printed table as a string
    assert perf.total_us == 1000 and perf.fps == 1000 and perf.layers is None
    assert board.Perf.from_result({}, "").fps is None
    assert board.Perf.from_result(raw).summary()["layers"] == 2


def test_plot_layer_times(tmp_path):
    raw = {"layers": [{"name": f"l{i}", "time(us)": t} for i, t in enumerate([5, 50, 20])], "total_time(us)": 75}
    fig = board.plot_layer_times(board.Perf.from_result(raw), tmp_path / "t.png", top=2)
    bars = fig.axes[0].patches
    assert [b.get_width() for b in bars] == [20, 50] and (tmp_path / "t.png").stat().st_size > 0
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["l2", "l1"]  # slowest at the top
    no_time = board.Perf.from_result({"layers": [{"name": "x", "op": "Conv"}]})
    assert board.plot_layer_times(no_time) is None and board.plot_layer_times(board.Perf.from_result({})) is None


# ---------------------------------------------------------------- remaining error paths of board / bundle / runner

def test_notebook30_set_needs_a_simulator_result(tmp_path, tiny_images):
    from helpers.steps import evaluate
    from helpers.tasks.data import LabelledImages

    run = Run.at(tmp_path / "run")
    with pytest.raises(WorkbookError, match=r"eval/predictions.npz is missing; run notebooks/30_simulator_inference.ipynb"):
        board.notebook30_set(run)
    images = LabelledImages(list(tiny_images[:2]), np.array([0, 1]), ["a", "b"])
    fp32 = EvalResult("FP32 ONNX Runtime", np.eye(2, dtype=np.float32), images.labels, 1.0, 1.0, 0.1, 20.0)
    evaluate.save_predictions(run.eval / "predictions.npz", images, fp32)
    evaluate.write_metrics(run.eval / "metrics.json", [fp32], None)
    with pytest.raises(WorkbookError, match="metrics.json has no INT8 simulator result; re-run "
                                            "notebooks/30_simulator_inference.ipynb"):
        board.notebook30_set(run)


def test_try_runner_failure_names_the_image(run3588, tiny_images, tmp_path):
    record = read_record(run3588)
    b = bundle.build_bundle(run3588, record, ["a", "b", "c"])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"no image")
    with pytest.raises(WorkbookError, match=r"The bundle's runner failed on this PC \(error: Cannot read image .*broken.png"):
        bundle.try_runner(b, [tiny_images[0], broken], TINY_SIZE)
    check = bundle.try_runner(b, tiny_images[:2], TINY_SIZE)
    assert check.identical and check.max_abs_diff == 0 and check.images == 2


def test_model_description_without_platform_and_missing_input_size(tmp_path, capsys):
    import struct

    from helpers.deploy import run_rknn

    meta = json.dumps({"version": "2.5.0"}).encode()
    fake = tmp_path / "m.rknn"
    fake.write_bytes(b"RKNN" + bytes(12) + struct.pack("<Q", 0) + bytes(40) + struct.pack("<Q", len(meta)) + meta)
    assert run_rknn.chips.rknn_meta(fake) == {"version": "2.5.0"}
    with pytest.raises(run_rknn.RunnerError, match="does not record its target platform; re-export it"):
        run_rknn.rknn_platform(fake)
    with pytest.raises(SystemExit):
        run_rknn.parse_args(["x.png", "--config", str(tmp_path / "absent.json")])  # no model.json: no input size
    assert "no input size: pass --size N or keep model.json beside the script" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_rknn.parse_args(["x.png", "--size", "0"])
    assert "--size must be a positive number of pixels, got 0" in capsys.readouterr().err


def test_notebook30_set_picks_the_int8_role(tmp_path, tiny_images):
    """metrics.json with a role per backend (contract with notebook 30): the board compares with role int8."""
    from helpers.steps import evaluate
    from helpers.tasks.data import LabelledImages

    run = Run.at(tmp_path / "run")
    images = LabelledImages(list(tiny_images[:2]), np.array([0, 1]), ["a", "b"])
    scores = {name: np.random.default_rng(i).random((2, 2)).astype(np.float32) for i, name in enumerate(("fp", "sim", "swap"))}
    results = [EvalResult(n, s, images.labels, 0.5, 1.0, 0.1, 20.0) for n, s in scores.items()]
    evaluate.save_predictions(run.eval / "predictions.npz", images, *results)
    evaluate.write_metrics(run.eval / "metrics.json", results, None)
    metrics = json.loads((run.eval / "metrics.json").read_text())
    for backend, role in zip(metrics["backends"], ("fp32", "int8", "int8-bgr")):
        backend["role"] = role
    (run.eval / "metrics.json").write_text(json.dumps(metrics))
    got, sim = board.notebook30_set(run)
    assert sim.name == "sim" and np.array_equal(sim.scores, scores["sim"]) and list(got.paths) == list(images.paths)


def test_notebook_40_sentences_come_from_its_text_module(capsys):
    """The skip line of a board-only cell (printed, so reports show it) and the classifier's board-vs-simulator
    line, computed from the comparison: 2 of 3 images agree on top-1."""
    line = board_text.skipped("eval_perf (per-layer times, FPS) and eval_memory")
    assert capsys.readouterr().out == line + "\n"
    assert line == ("[skipped: no board] eval_perf (per-layer times, FPS) and eval_memory needs a connected board; "
                    "see the 'No board found' line above.")
    assert board_text.skip_board_comparison("classify").startswith("[skipped: no board] Board inference and the board-vs")
    labels = np.array([0, 1, 0])
    sim = EvalResult("INT8 RKNN simulator", np.eye(3, 2, dtype=np.float32) + 0.1, labels, 1.0, 1.0, 0.1, 30.0)
    on_board = EvalResult("INT8 board", np.array([[1, 0.1], [0.1, 1], [0.1, 1]], np.float32), labels, 0.67, 1.0, 0.1, 30.0)
    text = board_text.classify_comparison(compare(sim, on_board), "librknnrt 2.5.0")
    assert text.startswith("**Board vs simulator:** top-1 agreement 66.7%, mean output cosine ")
    assert text.endswith("). Runtime: librknnrt 2.5.0")


def test_hybrid_within_noise_of_int8_stays_out_and_a_measurably_better_one_ships(run3588, tmp_path):
    """The bundle follows notebook 60's paired verdict: a hybrid not measurably better than plain INT8 (the one noise
    rule, chosen.json "vs_int8") would cost NPU time for nothing, so INT8 ships alone and the reason quotes the interval."""
    from helpers.tasks.noise import mcnemar

    run = Run.at(tmp_path / "run")
    shutil.copytree(run3588.rknn, run.rknn, dirs_exist_ok=True)
    shutil.copyfile(run.rknn / "model.rknn", run.hybrid / "model_hybrid.rknn")
    same = mcnemar([True] * 50 + [False] * 10, [True] * 51 + [False] * 9).to_dict()
    (run.hybrid / "chosen.json").write_text(json.dumps({"model": "hybrid (c)", "demo": False, "vs_int8": same}))
    assert "model_hybrid.rknn" not in bundle.bundle_models(run)
    assert same["text"] in bundle.hybrid_kept_out(run) and "INT8 is the model to deploy" in bundle.hybrid_kept_out(run)
    better = mcnemar([True] * 40 + [False] * 20, [True] * 60).to_dict()
    (run.hybrid / "chosen.json").write_text(json.dumps({"model": "hybrid (c)", "demo": False, "vs_int8": better}))
    assert "model_hybrid.rknn" in bundle.bundle_models(run)
