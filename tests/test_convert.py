"""helpers.convert against the real toolkit on tiny models: config validation, both load paths,
calibration checks, atomic export, the convert.json record, codegen."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import convert, export
from helpers.data import write_calibration_list
from helpers.errors import RknnError, WorkbookError
from helpers.paths import Run
from helpers.rknn import toolkit

ULTRA = dict(mean_values=[0, 0, 0], std_values=[255, 255, 255])


@pytest.fixture(scope="module")
def tiny_ts(tmp_path_factory, tiny_onnx):
    """A TorchScript twin of the tiny model with its sidecar (same torch version)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 3)).eval()
    path = tmp_path_factory.mktemp("ts") / "model.torchscript"
    torch.jit.trace(net, torch.zeros(1, 3, 16, 16)).save(str(path))
    export.write_sidecar(path, 16)
    return path


@pytest.fixture(scope="module")
def calib(tmp_path_factory, tiny_images):
    return write_calibration_list(tiny_images, tmp_path_factory.mktemp("calib") / "calibration.txt")


@pytest.mark.parametrize("changes, message", [
    ({"mean_values": [0, 0]}, r"mean_values=\[0, 0\] has 2 value\(s\) but the model's input has 3 channel\(s\); give exactly 3"),
    ({"std_values": [255, 255, 255, 255]}, r"std_values=.* has 4 value\(s\) but the model's input has 3 channel"),
    ({"std_values": [255, 0, 255]}, r"contains 0; every std must be non-zero"),
    ({"target_platform": "rk9999"}, r"target_platform='rk9999' is not a known Rockchip chip; use one of rk3588"),
    ({"quantized_dtype": "asymmetric_quantized-8"}, r"1\.x name; in rknn-toolkit2 2\.x write quantized_dtype='w8a8'"),
    ({"quantized_dtype": "int8"}, r"quantized_dtype='int8' is unknown; use one of w8a8"),
    ({"quantized_algorithm": "minmax"}, r"quantized_algorithm='minmax' is unknown; use one of normal, mmse, kl_divergence"),
    ({"quantized_method": "tensor"}, r"quantized_method='tensor' is unknown; use one of channel, layer"),
    ({"optimization_level": 5}, r"optimization_level=5 is out of range"),
    ({"float_dtype": "float32"}, r"float_dtype='float32' is not supported"),
    ({"single_core_mode": True, "target_platform": "rk3566"}, r"single_core_mode=True only applies to rk3588"),
    ({"rknn_batch_size": 0}, r"rknn_batch_size=0 must be None or a positive integer"),
])
def test_bad_config_values_are_refused_before_the_toolkit(changes, message, tiny_onnx, calib, tmp_path):
    cfg = convert.ConvertConfig(**{**ULTRA, **changes})
    with pytest.raises(WorkbookError, match=message):
        convert.convert(tiny_onnx, cfg, calib, tmp_path / "m.rknn", tmp_path / "build.log", 16)
    assert not list(tmp_path.glob("*.rknn")), "nothing half-written"


def test_config_kwargs_are_accepted_by_the_toolkit(tmp_path):
    cfg = convert.ConvertConfig(**ULTRA, quantized_algorithm="mmse", quantized_method="layer", custom_string="v1",
                                op_target=None, compress_weight=True, model_pruning=True, single_core_mode=True)
    cfg.validate(3)
    with toolkit(tmp_path / "cfg.log") as rk:
        rk.config(**cfg.config_kwargs())
    assert cfg.config_kwargs()["mean_values"] == [[0.0, 0.0, 0.0]]


@pytest.mark.parametrize("load_path", ["onnx", "pytorch"])
def test_convert_both_load_paths(load_path, tiny_onnx, tiny_ts, calib, tmp_path):
    source = tiny_onnx if load_path == "onnx" else tiny_ts
    cfg = convert.ConvertConfig(**ULTRA)
    res = convert.convert(source, cfg, calib, tmp_path / "model.rknn", tmp_path / "build.log", 16, load_path)
    assert res.rknn_path.read_bytes()[:4] == b"RKNN"
    assert res.rknn_bytes == (tmp_path / "model.rknn").stat().st_size and res.source_bytes == source.stat().st_size
    assert res.seconds > 0 and "float32 -> int8" in " ".join(res.dtype_notes), res.dtype_notes
    assert sorted(p.name for p in tmp_path.glob("*.rknn")) == ["model.rknn"], "the temporary name is gone"
    assert "rknn building" in res.log_path.read_text(), "the toolkit log is kept"


def test_record_rebuilds_the_same_model_in_the_simulator(tiny_onnx, calib, tmp_path, tiny_images):
    run = Run.at(tmp_path / "run")
    cfg = convert.ConvertConfig(**ULTRA, quantized_method="layer")
    res = convert.convert(tiny_onnx, cfg, calib, run.rknn / "model.rknn", run.rknn / "build.log", 16)
    convert.write_record(run, res, cfg, tiny_onnx, calib, 16, "auto")
    rec = convert.read_record(run)
    assert rec.config == cfg and rec.load_path == "onnx" and rec.input_size == 16 and rec.dataset == calib.resolve()
    assert json.loads((run.rknn / "convert.json").read_text())["toolkit_version"] == "2.5.0"
    x = np.random.default_rng(1).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    outs = []
    for i in range(2):
        with toolkit(tmp_path / f"sim{i}.log") as rk:
            convert.rebuild(rk, rec)
            rk.init_runtime(target=None)
            outs.append(rk.inference(inputs=[x], data_format="nhwc")[0])
    np.testing.assert_array_equal(outs[0], outs[1])


def test_read_record_names_the_notebook_to_run(tmp_path):
    with pytest.raises(WorkbookError, match=r"convert\.json is missing; run notebooks/20_convert\.ipynb"):
        convert.read_record(Run.at(tmp_path))


def test_calibration_list_empty_or_missing_images(tiny_onnx, tiny_images, tmp_path):
    cfg = convert.ConvertConfig(**ULTRA)
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
        convert.convert(tiny_onnx, convert.ConvertConfig(**ULTRA), dataset, tmp_path / "m.rknn", tmp_path / "b.log", 16)
    assert not list(tmp_path.glob("*.rknn"))


def test_bad_model_inputs(tiny_onnx, tiny_ts, calib, tmp_path):
    cfg = convert.ConvertConfig(**ULTRA)
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
    side = export.sidecar_path(tiny_ts)
    saved = side.read_text()
    try:
        side.write_text(json.dumps({**json.loads(saved), "torch_version": "1.13.1"}))
        with pytest.raises(WorkbookError, match=r"exported with torch 1\.13\.1 but this environment has torch 2\.4\.0"):
            convert.convert(tiny_ts, cfg, calib, tmp_path / "m.rknn", tmp_path / "b.log", 16, "pytorch")
    finally:
        side.write_text(saved)
    assert not list(tmp_path.glob("*.rknn"))


def test_float_model_needs_no_calibration(tiny_onnx, tmp_path):
    res = convert.convert(tiny_onnx, convert.ConvertConfig(**ULTRA, do_quantization=False), None, tmp_path / "fp16.rknn", tmp_path / "b.log", 16)
    assert res.rknn_path.exists() and not any("int8" in n for n in res.dtype_notes)


def test_codegen_writes_a_demo_with_the_model(tiny_onnx, calib, tiny_images, tmp_path):
    demo = convert.codegen(tiny_onnx, convert.ConvertConfig(**ULTRA), calib, tmp_path / "cpp_demo", tmp_path / "cg.log", 16,
                           image=tiny_images[0])
    assert (demo / "model.rknn").read_bytes()[:4] == b"RKNN"
    assert (demo / "CMakeLists.txt").exists() and "model.rknn" in (demo / "run.sh").read_text()
    assert not (tmp_path / "cpp_demo.partial").exists()


def test_quantization_demo_per_channel_beats_per_tensor(tiny_onnx):
    name, w = convert.pick_weight(tiny_onnx)
    table = convert.quantization_demo(w).set_index(["granularity", "scheme"])
    assert w.ndim == 4 and name
    per_tensor = table.loc[("per-tensor (layer)", "symmetric"), "SQNR dB"]
    per_channel = table.loc[("per-channel", "symmetric"), "SQNR dB"]
    assert per_channel >= per_tensor
    assert table.loc[("per-channel", "symmetric"), "scales"] == w.shape[0]
    deq, scale, zero = convert.quantize(w, symmetric=True)
    assert np.abs(deq - w).max() <= scale[0] / 2 + 1e-7 and zero[0] == 0


def test_onnx_with_dynamic_axes_is_fixed_to_the_input_size(tmp_path, calib):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    path = tmp_path / "dynamic.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 16, 16), str(path), opset_version=17, input_names=["images"], output_names=["out"],
                      dynamic_axes={"images": {0: "batch", 2: "h", 3: "w"}})
    assert export.onnx_io(path)["inputs"][0]["shape"] == ["batch", 3, "h", "w"]
    res = convert.convert(path, convert.ConvertConfig(**ULTRA), calib, tmp_path / "m.rknn", tmp_path / "b.log", 16)
    assert res.rknn_path.exists()
