"""helpers.steps.convert against the real toolkit on tiny models: config validation, both load paths,
calibration checks, atomic export, the convert.json record, the toolkit's disable_rules hint acted on
(a real YOLO11n-cls at 64 px), a build that aborts the process."""
from __future__ import annotations

import inspect
import json
import re

import numpy as np
import pytest
import torch

from helpers.core.errors import RknnError, ToolkitCrash, WorkbookError
from helpers.core.isolate import run_isolated
from helpers.core.paths import Run
from helpers.steps import convert, quantize_demo
from helpers.steps.export import exporter
from helpers.tasks.data import write_calibration_list
from helpers.text import convert as convert_text
from helpers.toolkit.options import DTYPE_PLATFORMS_2_5_0, LEFT_OUT, QUANTIZED_DTYPES, TARGET_PLATFORMS, ConvertConfig
from helpers.toolkit.record import read_record, write_record
from helpers.toolkit.session import RKNN
from helpers.widgets import tooltips

SDPA_RULE = "fuse_exmatmul_add_mul_exsoftmax13_exmatmul_to_sdpa"

ULTRA = dict(mean_values=[0, 0, 0], std_values=[255, 255, 255])


@pytest.fixture(scope="module")
def tiny_ts(tmp_path_factory, tiny_onnx):
    """A TorchScript twin of the tiny model with its sidecar (same torch version)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 3)).eval()
    path = tmp_path_factory.mktemp("ts") / "model.torchscript"
    torch.jit.trace(net, torch.zeros(1, 3, 16, 16)).save(str(path))
    exporter.write_sidecar(path, 16)
    return path


@pytest.fixture(scope="module")
def calib(tmp_path_factory, tiny_images):
    return write_calibration_list(tiny_images, tmp_path_factory.mktemp("calib") / "calibration.txt")


@pytest.mark.parametrize("changes, message", [
    ({"mean_values": [0, 0]}, r"mean_values=\[0, 0\] has 2 value\(s\) but the model's input has 3 channel\(s\); give exactly 3"),
    ({"std_values": [255, 255, 255, 255]}, r"std_values=.* has 4 value\(s\) but the model's input has 3 channel"),
    ({"std_values": [255, 0, 255]}, r"contains 0; every std must be non-zero"),
    ({"target_platform": "rk9999"}, r"target_platform='rk9999' is not a known Rockchip chip; use one of rk3588"),
    ({"quantized_dtype": "asymmetric_quantized-8"}, r"not an rknn-toolkit2 2\.5 name; write quantized_dtype='w8a8'"),
    ({"quantized_dtype": "w16a16i"}, r"quantized_dtype='w16a16i' is not an rknn-toolkit2 2\.5 name; write "
                                     r"quantized_dtype='w16a16i_dfp'"),
    ({"quantized_dtype": "int8"}, r"quantized_dtype='int8' is unknown; use one of w8a8"),
    ({"quantized_dtype": "w4a16"}, r"quantized_dtype='w4a16' is not available on rk3588 \(rknn-toolkit2 2\.5\.0 builds "
                                   r"it only for rk3576, rv1126b\); use quantized_dtype='w8a8' or one of those chips"),
    ({"quantized_dtype": "w8a16", "target_platform": "rk3566"}, r"not available on rk3566 .*only for rk3562\)"),
    ({"quantized_algorithm": "minmax"}, r"quantized_algorithm='minmax' is unknown; use one of normal, mmse, kl_divergence"),
    ({"quantized_algorithm": "gdq"}, r"quantized_algorithm='gdq' works only with quantized_dtype 'w4a16' or 'w8a16'"),
    ({"quantized_method": "tensor"}, r"quantized_method='tensor' is unknown; use channel, layer or group32"),
    ({"quantized_method": "group64"}, r"quantized_method='group64' works only with quantized_dtype='w4a16'"),
    ({"disable_rules": ["fuse_exmatmul_add_mul_exsoftmax13_exmatmul_to_sdp"]},
     r"disable_rules names 'fuse_exmatmul_add_mul_exsoftmax13_exmatmul_to_sdp', a rule rknn-toolkit2 2\.5\.0 does not have "
     r"\(did you mean 'fuse_exmatmul_add_mul_exsoftmax13_exmatmul_to_sdpa'\?\); copy the name from the toolkit's hint"),
    ({"disable_rules": "seperate_conv_rs_split"}, r"disable_rules='seperate_conv_rs_split' must be a list of rule names"),
    ({"sparse_infer": True}, r"sparse_infer=True is not available on rk3588 \(rknn-toolkit2 2\.5\.0 has it for rk3576"),
    ({"auto_hybrid_cos_thresh": 1.5}, r"auto_hybrid_cos_thresh=1\.5 must be a number in \(0, 1\]"),
    ({"auto_hybrid_euc_thresh": -1}, r"auto_hybrid_euc_thresh=-1 must be None or a positive number"),
    ({"auto_hybrid": True, "do_quantization": False}, r"auto_hybrid=True needs do_quantization=True"),
    ({"remove_weight": "yes"}, r"remove_weight='yes' must be True or False"),
    ({"optimization_level": 5}, r"optimization_level=5 is out of range"),
    ({"float_dtype": "float32"}, r"float_dtype='float32' is not supported"),
    ({"single_core_mode": True, "target_platform": "rk3566"}, r"single_core_mode=True only applies to rk3588"),
    ({"rknn_batch_size": 0}, r"rknn_batch_size=0 must be None or a positive integer"),
])
def test_bad_config_values_are_refused_before_the_toolkit(changes, message, tiny_onnx, calib, tmp_path):
    cfg = ConvertConfig(**{**ULTRA, **changes})
    with pytest.raises(WorkbookError, match=message):
        convert.convert(tiny_onnx, cfg, calib, tmp_path / "m.rknn", tmp_path / "build.log", 16)
    assert not list(tmp_path.glob("*.rknn")), "nothing half-written"


def test_config_kwargs_are_accepted_by_the_toolkit(tmp_path):
    cfg = ConvertConfig(**ULTRA, quantized_algorithm="mmse", quantized_method="layer", custom_string="v1",
                                op_target=None, compress_weight=True, model_pruning=True, single_core_mode=True,
                                disable_rules=[SDPA_RULE], remove_weight=True, remove_reshape=True, enable_flash_attention=True,
                                mini_rknn=True, auto_hybrid=True, auto_hybrid_cos_thresh=0.95, auto_hybrid_euc_thresh=2.0)
    cfg.validate(3)
    with RKNN(tmp_path / "cfg.log") as rk:
        rk.config(**cfg.config_kwargs())
    kw = cfg.config_kwargs()
    assert kw["mean_values"] == [[0.0, 0.0, 0.0]] and kw["disable_rules"] == [SDPA_RULE] and kw["auto_hybrid_euc_thresh"] == 2.0
    assert cfg.build_kwargs(None)["auto_hybrid"] is True
    w4 = ConvertConfig(**ULTRA, target_platform="rk3576", quantized_dtype="w4a16", quantized_algorithm="gdq",
                               quantized_method="group32", sparse_infer=True)
    w4.validate(3)
    with RKNN(tmp_path / "cfg4.log") as rk:
        rk.config(**w4.config_kwargs())


def test_every_config_option_of_the_toolkit_is_a_parameter_or_explained():
    """Compare RKNN.config's signature with ConvertConfig: a new toolkit option cannot slip by unnoticed."""
    from rknn.api import RKNN

    toolkit_options = {n for n, p in inspect.signature(RKNN.config).parameters.items()
                       if n != "self" and p.kind is not p.VAR_KEYWORD}
    left_out = {name.strip() for key in LEFT_OUT for name in key.split(",")}
    fields = set(ConvertConfig.__dataclass_fields__)
    assert toolkit_options - fields - left_out == set()
    assert "disable_rules" in fields and left_out <= toolkit_options
    assert all(tooltips("20_convert").get(f) for f in fields), "every option has its meaning for the options table"


def test_dtype_table_matches_what_the_toolkit_accepts(tmp_path):
    """DTYPE_PLATFORMS_2_5_0 (which chips have which dtype) against the real toolkit's config."""
    with RKNN(tmp_path / "dtypes.log") as rk:
        for dtype in QUANTIZED_DTYPES:
            for chip in TARGET_PLATFORMS:
                try:
                    rk.config(mean_values=[[0, 0, 0]], std_values=[[255, 255, 255]], target_platform=chip, quantized_dtype=dtype)
                    accepted = True
                except RknnError as err:
                    assert "not support in" in err.reason, err.reason
                    accepted = False
                assert accepted == (chip in DTYPE_PLATFORMS_2_5_0[dtype]), (dtype, chip)


@pytest.mark.parametrize("load_path", ["onnx", "pytorch"])
def test_convert_both_load_paths(load_path, tiny_onnx, tiny_ts, calib, tmp_path):
    source = tiny_onnx if load_path == "onnx" else tiny_ts
    cfg = ConvertConfig(**ULTRA)
    res = convert.convert(source, cfg, calib, tmp_path / "model.rknn", tmp_path / "build.log", 16, load_path)
    assert res.rknn_path.read_bytes()[:4] == b"RKNN"
    assert res.rknn_bytes == (tmp_path / "model.rknn").stat().st_size and res.source_bytes == source.stat().st_size
    assert res.seconds > 0 and "float32 -> int8" in " ".join(res.dtype_notes), res.dtype_notes
    assert sorted(p.name for p in tmp_path.glob("*.rknn")) == ["model.rknn"], "the temporary name is gone"
    assert "rknn building" in res.log_path.read_text(), "the toolkit log is kept"


def test_record_rebuilds_the_same_model_in_the_simulator(tiny_onnx, calib, tmp_path, tiny_images):
    run = Run.at(tmp_path / "run")
    cfg = ConvertConfig(**ULTRA, quantized_method="layer")
    res = convert.convert(tiny_onnx, cfg, calib, run.rknn / "model.rknn", run.rknn / "build.log", 16)
    write_record(run, res, cfg, tiny_onnx, calib, 16, "auto")
    rec = read_record(run)
    assert rec.config == cfg and rec.load_path == "onnx" and rec.input_size == 16 and rec.dataset == calib.resolve()
    data = json.loads((run.rknn / "convert.json").read_text())
    assert data["toolkit_version"] == "2.5.0" and data["imgsz"] == 16 and data["auto_disabled_rules"] == []
    assert data["rknn_path"] == "rknn/model.rknn", "paths inside the run folder are stored relative to it"
    assert data["source"] == str(tiny_onnx.resolve()), "paths outside stay absolute"
    x = np.random.default_rng(1).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    outs = []
    for i in range(2):
        with RKNN(tmp_path / f"sim{i}.log") as rk:
            convert.rebuild(rk, rec)
            rk.init_runtime(target=None)
            outs.append(rk.inference(inputs=[x], data_format="nhwc")[0])
    np.testing.assert_array_equal(outs[0], outs[1])


def test_read_record_names_the_notebook_to_run(tmp_path):
    with pytest.raises(WorkbookError, match=r"convert\.json is missing; run notebooks/20_convert\.ipynb"):
        read_record(Run.at(tmp_path))


def test_calibration_list_empty_or_missing_images(tiny_onnx, tiny_images, tmp_path):
    cfg = ConvertConfig(**ULTRA)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(WorkbookError, match=r"Calibration list .*empty.txt is empty"):
        convert.convert(tiny_onnx, cfg, empty, tmp_path / "m.rknn", tmp_path / "b.log", 16)
    gone = tmp_path / "gone.txt"
    gone.write_text(f"{tiny_images[0]}\n{tmp_path / 'missing.png'}\n")
    with pytest.raises(WorkbookError, match=r"names missing image .*missing.png"):
        convert.convert(tiny_onnx, cfg, gone, tmp_path / "m.rknn", tmp_path / "b.log", 16)
    with pytest.raises(WorkbookError, match=r"Calibration list .*nolist.txt does not exist"):
        convert.convert(tiny_onnx, cfg, tmp_path / "nolist.txt", tmp_path / "m.rknn", tmp_path / "b.log", 16)
    assert not list(tmp_path.glob("*.rknn"))


def test_toolkit_failure_leaves_no_rknn(tiny_onnx, tmp_path):
    """An image file the toolkit cannot decode fails inside build: RknnError, and no .rknn appears."""
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    dataset = tmp_path / "calib.txt"
    dataset.write_text(f"{bad}\n")
    with pytest.raises(RknnError):
        convert.convert(tiny_onnx, ConvertConfig(**ULTRA), dataset, tmp_path / "m.rknn", tmp_path / "b.log", 16)
    assert not list(tmp_path.glob("*.rknn"))


def test_bad_model_inputs(tiny_onnx, tiny_ts, calib, tmp_path):
    cfg = ConvertConfig(**ULTRA)
    with pytest.raises(WorkbookError, match="does not exist"):
        convert.convert(tmp_path / "none.onnx", cfg, calib, tmp_path / "m.rknn", tmp_path / "b.log", 16)
    odd = tmp_path / "model.tflite"
    odd.write_bytes(b"TFL3")
    with pytest.raises(WorkbookError, match=r"unknown type \.tflite"):
        convert.convert(odd, cfg, calib, tmp_path / "m.rknn", tmp_path / "b.log", 16)
    with pytest.raises(WorkbookError, match=r"Input size 24 does not match ONNX file"):
        convert.convert(tiny_onnx, cfg, calib, tmp_path / "m.rknn", tmp_path / "b.log", 24)
    with pytest.raises(WorkbookError, match=r"load_path='pytorch' does not fit tiny.onnx"):
        convert.convert(tiny_onnx, cfg, calib, tmp_path / "m.rknn", tmp_path / "b.log", 16, "pytorch")
    side = exporter.sidecar_path(tiny_ts)
    saved = side.read_text()
    try:
        side.write_text(json.dumps({**json.loads(saved), "torch_version": "1.13.1"}))
        with pytest.raises(WorkbookError, match=r"exported with torch 1\.13\.1 but this environment has torch 2\.4\.0"):
            convert.convert(tiny_ts, cfg, calib, tmp_path / "m.rknn", tmp_path / "b.log", 16, "pytorch")
    finally:
        side.write_text(saved)
    assert not list(tmp_path.glob("*.rknn"))


def test_float_model_needs_no_calibration(tiny_onnx, tmp_path):
    res = convert.convert(tiny_onnx, ConvertConfig(**ULTRA, do_quantization=False), None, tmp_path / "fp16.rknn",
                          tmp_path / "b.log", 16)
    assert res.rknn_path.exists() and not any("int8" in n for n in res.dtype_notes)


def test_quantization_demo_per_channel_beats_per_tensor(tiny_onnx):
    name, w = quantize_demo.pick_weight(tiny_onnx)
    table = quantize_demo.quantization_demo(w).set_index(["granularity", "scheme"])
    assert w.ndim == 4 and name
    per_tensor = table.loc[("per-tensor (layer)", "symmetric"), "SQNR dB"]
    per_channel = table.loc[("per-channel", "symmetric"), "SQNR dB"]
    assert per_channel >= per_tensor
    assert table.loc[("per-channel", "symmetric"), "scales"] == w.shape[0]
    deq, scale, zero = quantize_demo.quantize(w, symmetric=True)
    assert np.abs(deq - w).max() <= scale[0] / 2 + 1e-7 and zero[0] == 0


def test_onnx_with_dynamic_axes_is_fixed_to_the_input_size(tmp_path, calib):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    path = tmp_path / "dynamic.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 16, 16), str(path), opset_version=17, input_names=["images"], output_names=["out"],
                      dynamic_axes={"images": {0: "batch", 2: "h", 3: "w"}})
    assert exporter.onnx_io(path)["inputs"][0]["shape"] == ["batch", 3, "h", "w"]
    res = convert.convert(path, ConvertConfig(**ULTRA), calib, tmp_path / "m.rknn", tmp_path / "b.log", 16)
    assert res.rknn_path.exists()


def test_record_paths_are_relative_so_a_run_folder_can_move(tiny_onnx, calib, tmp_path):
    import shutil

    run = Run.at(tmp_path / "a")
    src = run.model / "model.onnx"
    shutil.copy(tiny_onnx, src)
    res = convert.convert(src, ConvertConfig(**ULTRA), calib, run.rknn / "model.rknn", run.rknn / "build.log", 16)
    write_record(run, res, ConvertConfig(**ULTRA), src, calib, 16, "onnx")
    shutil.move(str(run.root), str(tmp_path / "b"))
    rec = read_record(Run.at(tmp_path / "b"))
    assert rec.source == tmp_path / "b" / "model" / "model.onnx" and rec.source.is_file()
    assert rec.rknn_path == tmp_path / "b" / "rknn" / "model.rknn" and rec.rknn_path.is_file()


def test_a_rebuild_start_removes_the_old_record(tiny_onnx, calib, tmp_path):
    """Notebook 20's step: when it must recompute, convert.json goes first (nothing half-written looks valid)."""
    run = Run.at(tmp_path / "run")
    cfg = ConvertConfig(**ULTRA)
    params = {"load_path": "onnx", "imgsz": 16, "auto_disable_rules": True}
    step = convert.conversion_step(run, cfg, params, tiny_onnx, calib)
    assert not step.fresh
    res = convert.convert(tiny_onnx, cfg, calib, run.rknn / "model.rknn", run.rknn / "build.log", 16)
    write_record(run, res, cfg, tiny_onnx, calib, 16, "onnx")
    step.done()
    assert convert.conversion_step(run, cfg, params, tiny_onnx, calib).fresh
    assert (run.rknn / "convert.json").exists()
    changed = ConvertConfig(**ULTRA, quantized_method="layer")
    assert not convert.conversion_step(run, changed, params, tiny_onnx, calib).fresh
    assert not (run.rknn / "convert.json").exists(), "the record of the old model is gone once a rebuild starts"
    assert not (run.rknn / "model.rknn").exists(), "and so is the old model (a failed rebuild leaves no model that looks current)"
    with pytest.raises(WorkbookError, match="run notebooks/20_convert.ipynb"):
        read_record(run)


# ---------------------------------------------------------------- the toolkit's disable_rules hint

@pytest.fixture(scope="module")
def yolo_cls_64(tmp_path_factory):
    """The sample architecture, YOLO11n-cls from its ultralytics YAML (3 classes, random weights), as ONNX at
    64 px: rknn-toolkit2 2.5.0's build fails on it in rule fuse_exmatmul_add_mul_exsoftmax13_exmatmul_to_sdpa."""
    import cv2
    from ultralytics.nn.tasks import ClassificationModel

    torch.manual_seed(0)
    net = ClassificationModel("yolo11n-cls.yaml", nc=3, verbose=False).eval()
    folder = tmp_path_factory.mktemp("yolo64")
    onnx = folder / "yolo11n-cls-64.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 64, 64), str(onnx), opset_version=12, input_names=["images"],
                      output_names=["output0"])
    rng = np.random.default_rng(0)
    images = []
    for i in range(2):
        images.append(folder / f"{i}.png")
        cv2.imwrite(str(images[-1]), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    return onnx, write_calibration_list(images, folder / "calibration.txt")


@pytest.mark.slow
def test_failing_rule_is_disabled_recorded_and_reused(yolo_cls_64, tmp_path):
    onnx, calib = yolo_cls_64
    run = Run.at(tmp_path / "run")
    cfg = ConvertConfig(**ULTRA, target_platform="rk3588")
    res = convert.convert(onnx, cfg, calib, run.rknn / "model.rknn", run.rknn / "build.log", 64)
    assert [d.rule for d in res.auto_disabled] == [SDPA_RULE]
    assert "IndexError" in res.auto_disabled[0].reason
    assert res.rknn_path.read_bytes()[:4] == b"RKNN"
    write_record(run, res, cfg, onnx, calib, 64, "onnx")
    data = json.loads((run.rknn / "convert.json").read_text())
    assert data["config"]["disable_rules"] == [SDPA_RULE] and data["disable_rules_given"] == []
    assert data["auto_disabled_rules"] == [{"rule": SDPA_RULE, "reason": res.auto_disabled[0].reason}]
    note = convert_text.disabled_rules_note(res.auto_disabled)
    assert SDPA_RULE in note and "every later rebuild" in note
    listing = convert.raw_calls(read_record(run))
    assert f"disable_rules=['{SDPA_RULE}']" in listing and "rknn.export_rknn(" in listing and "rknn.release()" in listing
    # a later step rebuilds through convert.rebuild on a plain toolkit (no retry): it builds only with the recorded rule
    with RKNN(tmp_path / "sim.log") as rk:
        convert.rebuild(rk, read_record(run))
        rk.init_runtime(target=None)
        out = rk.inference(inputs=[np.zeros((1, 64, 64, 3), np.uint8)], data_format="nhwc")[0]
    assert np.asarray(out).size == 3
    assert "You can add disable_rules" not in (tmp_path / "sim.log").read_text()


@pytest.mark.slow
def test_failing_rule_with_auto_off_names_the_rule_and_the_parameter(yolo_cls_64, tmp_path):
    onnx, calib = yolo_cls_64
    with pytest.raises(RknnError) as info:
        convert.convert(onnx, ConvertConfig(**ULTRA), calib, tmp_path / "m.rknn", tmp_path / "b.log", 64,
                        auto_disable_rules=False)
    assert info.value.reason == (f"IndexError: list index out of range in graph rule '{SDPA_RULE}'; the toolkit "
                                 "suggests switching it off: "
                                 f"add ['{SDPA_RULE}'] to disable_rules (or set auto_disable_rules=True)")
    assert not list(tmp_path.glob("*.rknn"))


@pytest.mark.slow
def test_a_build_that_aborts_the_process_becomes_one_sentence(tiny_onnx, calib, tmp_path):
    """rknn-toolkit2 2.5.0 aborts the whole process building w8a16 for rk3562 (measured: 'buffer overflow!!!'
    on this model, 'munmap_chunk(): invalid pointer' on others); in a child process that is one ToolkitCrash."""
    cfg = ConvertConfig(**ULTRA, target_platform="rk3562", quantized_dtype="w8a16")
    cfg.validate(3)
    kwargs = {"source": str(tiny_onnx), "config": cfg.to_dict(), "dataset": str(calib), "out_rknn": str(tmp_path / "m.rknn"),
              "log_path": str(tmp_path / "build.log"), "input_size": 16}
    try:
        run_isolated("helpers.steps.convert:convert_isolated", kwargs, tmp_path / "build.log", what="build of w8a16 for rk3562")
    except ToolkitCrash as crash:
        first = str(crash).splitlines()[0]
    else:
        pytest.skip("rknn-toolkit2 built w8a16 for rk3562 without aborting this time (native memory corruption is not "
                    "deterministic); tests/test_isolate.py covers the crash path")
    # the abort message varies between runs (native memory corruption): 'buffer overflow!!!', 'munmap_chunk(): ...'
    assert re.match(r"build of w8a16 for rk3562 crashed \(killed by SIG(ABRT|SEGV)\); likely cause: (the toolkit's "
                    r"native code|native code aborted|a segmentation fault)", first), first
    assert "try another quantized_dtype, target_platform or optimization_level" in first
    assert not list(tmp_path.glob("*.rknn"))
    ok = run_isolated("helpers.steps.convert:convert_isolated",
                      {**kwargs, "config": ConvertConfig(**ULTRA, target_platform="rk3562").to_dict()},
                      tmp_path / "child2.log")
    assert ok["rknn_bytes"] == (tmp_path / "m.rknn").stat().st_size and ok["auto_disabled"] == []


def test_every_option_is_a_parameter_of_notebook_20_with_a_tooltip():
    """Each ConvertConfig option reaches notebook 20 as a parameter whose comment is its widget tooltip."""
    from helpers import widgets
    from helpers.runner import execute

    declared = execute.declared_parameters(execute.NOTEBOOKS / "20_convert.ipynb")
    tips = widgets.tooltips("20_convert")
    assert set(ConvertConfig.__dataclass_fields__) <= set(declared)
    assert list(declared)[6:8] == ["auto_disable_rules", "disable_rules"], "disable_rules first among the options"
    assert all(tips.get(name) for name in declared), [n for n in declared if not tips.get(n)]
    assert "codegen" not in declared, "the C++ demo lives in notebook 40"
