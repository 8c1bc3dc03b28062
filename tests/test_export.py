"""helpers.steps.export.exporter: TorchScript/ONNX export, opset handling, sidecar checks, numeric check (real torch,
onnx, ORT)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, version_converter

from helpers.core.errors import RknnError, WorkbookError
from helpers.steps.export import exporter
from helpers.steps.export.check import check_export
from helpers.toolkit.options import ConvertConfig
from helpers.toolkit.session import RKNN


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
            torch.nn.Linear(8, 3),
        torch.nn.Softmax(dim=1),
    ).eval()


@pytest.fixture(scope="module")
def tiny_torchscript(tmp_path_factory) -> Path:
    """A plain TorchScript module (not ultralytics) traced at 16x16."""
    path = tmp_path_factory.mktemp("ts") / "tiny.torchscript"
    torch.jit.trace(_net(), torch.zeros(1, 3, 16, 16)).save(str(path))
    return path


def _gelu_opset20(path: Path) -> Path:
    """An ONNX whose only op (Gelu) exists from opset 20 on, so it cannot be lowered to 19."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 16, 16])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 16, 16])
    graph = helper.make_graph([helper.make_node("Gelu", ["images"], ["out"])], "gelu", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(path))
    return path


def test_torchscript_input_exports_onnx_sidecar_and_matches(tiny_torchscript, tmp_path, tiny_images):
    out = tmp_path / "model"
    res = exporter.export_model(tiny_torchscript, out, imgsz=16, opset=17)
    assert res.kind == "torchscript" and res.opset == 17
    io = exporter.onnx_io(res.onnx)
    assert io["opset"] == 17 and io["inputs"][0]["shape"] == [1, 3, 16, 16] and io["inputs"][0]["dtype"] == "float32"
    side = json.loads((out / "model.torchscript.json").read_text())
    assert side["torch_version"] == torch.__version__.split("+")[0] and side["input_size_list"] == [[1, 3, 16, 16]]
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.torchscript", "model.torchscript.json"]
    import cv2

    pixels = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in tiny_images])
    check = check_export(res.torchscript, res.onnx, pixels, [0, 0, 0], [255, 255, 255])
    assert check.images == len(tiny_images) and check.top1_agreement == 1.0
    assert check.max_abs_diff < 1e-5 and check.min_cosine > 0.99999
    assert exporter.op_counts(res.onnx)["Conv"] == 1


def test_onnx_input_is_checked_and_copied_without_torchscript(tiny_onnx, tmp_path):
    res = exporter.export_model(tiny_onnx, tmp_path, imgsz=16)
    assert res.kind == "onnx" and res.torchscript is None
    assert (tmp_path / "model.onnx").read_bytes() == tiny_onnx.read_bytes()
    assert not (tmp_path / "model.torchscript").exists()


def test_opset_above_toolkit_is_lowered(tiny_onnx, tmp_path):
    high = tmp_path / "opset20.onnx"
    onnx.save(version_converter.convert_version(onnx.load(str(tiny_onnx)), 20), str(high))
    res = exporter.export_model(high, tmp_path / "model", imgsz=16)
    assert res.opset == exporter.TOOLKIT_MAX_OPSET and "20 lowered to 19" in res.opset_note
    assert exporter.onnx_io(res.onnx)["opset"] == 19


def test_toolkit_really_refuses_the_opset_above_our_maximum(tiny_onnx, tmp_path):
    """TOOLKIT_MAX_OPSET is a fact about the installed toolkit: one more is refused, the maximum loads."""
    model = onnx.load(str(tiny_onnx))
    for opset, ok in ((exporter.TOOLKIT_MAX_OPSET, True), (exporter.TOOLKIT_MAX_OPSET + 1, False)):
        path = tmp_path / f"o{opset}.onnx"
        onnx.save(version_converter.convert_version(model, opset), str(path))
        try:
            with RKNN(tmp_path / f"load{opset}.log") as rk:
                rk.config(mean_values=[[0, 0, 0]], std_values=[[1, 1, 1]], target_platform="rk3588")
                rk.load_onnx(str(path))
            loaded = True
        except RknnError as err:
            loaded = False
            assert f"need <= {exporter.TOOLKIT_MAX_OPSET}" in err.reason
        assert loaded is ok


def test_opset_too_high_and_not_convertible(tmp_path):
    src = _gelu_opset20(tmp_path / "gelu.onnx")
    with pytest.raises(WorkbookError) as info:
        exporter.export_model(src, tmp_path / "model", imgsz=16)
    msg = str(info.value)
    assert "opset 20" in msg and "maximum 19" in msg and "opset=19" in msg and "Gelu" in msg
    assert not (tmp_path / "model" / "model.onnx").exists(), "no half-written artifact"
    with pytest.raises(WorkbookError, match="opset 20 but rknn-toolkit2 accepts at most 19"):
        exporter.check_onnx(src)


def test_file_that_is_not_onnx(tmp_path):
    fake = tmp_path / "model.onnx"
    fake.write_text("this is not a protobuf")
    with pytest.raises(WorkbookError, match=r"is not a valid ONNX model.*re-export"):
        exporter.export_model(fake, tmp_path / "out", imgsz=16)
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_missing_and_unknown_model_paths(tmp_path):
    with pytest.raises(WorkbookError, match="does not exist"):
        exporter.export_model(tmp_path / "nope.pt", tmp_path / "out", imgsz=16)
    weird = tmp_path / "model.h5"
    weird.write_bytes(b"\x89HDF")
    with pytest.raises(WorkbookError, match=r"unknown type \.h5"):
        exporter.export_model(weird, tmp_path / "out", imgsz=16)
    notzip = tmp_path / "model.pt"
    notzip.write_bytes(b"not a zip archive")
    with pytest.raises(WorkbookError, match=r"model.pt is not a PyTorch file \(torch.save and torch.jit.save write a "
                                            r"zip archive"):
        exporter.export_model(notzip, tmp_path / "out", imgsz=16)


def test_input_size_that_does_not_match(tiny_onnx, tiny_torchscript, tmp_path):
    with pytest.raises(WorkbookError, match=r"Input size 32 does not match ONNX file .* 16x16; set imgsz=16"):
        exporter.export_model(tiny_onnx, tmp_path / "a", imgsz=32)
    assert not (tmp_path / "a" / "model.onnx").exists()
    res = exporter.export_model(tiny_torchscript, tmp_path / "b", imgsz=16)
    with pytest.raises(WorkbookError, match=r"Input size 32 does not match TorchScript .* exported at 16 px"):
        exporter.check_torchscript(res.torchscript, input_size=32)


def test_torchscript_from_another_torch_version(tiny_torchscript, tmp_path):
    res = exporter.export_model(tiny_torchscript, tmp_path, imgsz=16)
    side = exporter.sidecar_path(res.torchscript)
    data = json.loads(side.read_text())
    data["torch_version"] = "2.1.0"
    side.write_text(json.dumps(data))
    here = torch.__version__.split("+")[0]
    with pytest.raises(WorkbookError) as info:
        exporter.check_torchscript(res.torchscript, input_size=16)
    assert "torch 2.1.0" in str(info.value) and f"torch {here}" in str(info.value)
    side.unlink()
    with pytest.warns(UserWarning, match="cannot be checked"):
        exporter.check_torchscript(res.torchscript, input_size=16)


def test_opset_parameter_out_of_range(tiny_onnx, tmp_path):
    with pytest.raises(WorkbookError, match="opset=20 is outside"):
        exporter.export_model(tiny_onnx, tmp_path, imgsz=16, opset=20)


# ---------------------------------------------------------------- older exporters and other input/output conventions

class _Scaled(torch.nn.Module):
    """A model that takes 0-255 floats and scales inside (preprocessing mean 0, std 1)."""

    def __init__(self):
        super().__init__()
        self.net = _net()

    def forward(self, x):
        return self.net(x / 255.0)


def _logits_net(channels: int = 3) -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, stride=2, padding=1),
            torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 3),
    ).eval()


@pytest.mark.parametrize("case", [
    # (label, module, opset, initializers among the graph inputs, dynamic batch, mean, std)
    ("opset 7, initializers as inputs", "logits", 7, True, False, [0, 0, 0], [255, 255, 255]),
    ("opset 9, initializers as inputs, dynamic batch", "logits", 9, True, True, [0, 0, 0], [255, 255, 255]),
    ("opset 11, dynamic batch", "logits", 11, False, True, [0, 0, 0], [255, 255, 255]),
    ("opset 12, probabilities out", "probs", 12, False, False, [0, 0, 0], [255, 255, 255]),
    ("0-255 float input", "scaled", 12, False, False, [0, 0, 0], [1, 1, 1]),
], ids=lambda c: c[0])
def test_older_and_other_onnx_conventions_convert_and_follow_onnx_runtime(case, tmp_path, tiny_images):
    from helpers.steps import evaluate
    from helpers.tasks.classify.metric import scores_of
    from helpers.tasks.data import write_calibration_list
    from helpers.tasks.feeds import fp32_runner
    from helpers.tasks.measures import cosine
    from helpers.tasks.preprocess import read_rgb

    _, kind, opset, inits_as_inputs, dynamic, mean, std = case
    net = {"logits": _logits_net, "probs": _net, "scaled": _Scaled}[kind]().eval()
    src = tmp_path / "model.onnx"
    extra = {"dynamic_axes": {"images": {0: "batch"}, "out": {0: "batch"}}} if dynamic else {}
    torch.onnx.export(net, torch.rand(1, 3, 16, 16), str(src), opset_version=opset, input_names=["images"], output_names=["out"],
                      keep_initializers_as_inputs=inits_as_inputs, **extra)
    model = onnx.load(str(src))
    assert exporter.onnx_opset(model) == opset
    assert (len(model.graph.input) > 1) == inits_as_inputs  # weights really listed among the graph inputs
    res = exporter.export_model(src, tmp_path / "out", 16)
    io = exporter.onnx_io(res.onnx)
    assert len(io["inputs"]) == 1 and io["inputs"][0]["name"] == "images"  # initializers are not taken for inputs

    pixels = np.stack([read_rgb(p, 16) for p in tiny_images])
    cfg = ConvertConfig(mean_values=mean, std_values=std)
    calib = write_calibration_list(tiny_images, tmp_path / "calib.txt")
    ref = scores_of(fp32_runner(res.onnx, mean, std).outputs(pixels))
    with evaluate.simulator(res.onnx, cfg, calib, 16, tmp_path / "sim.log", batch=1) as sim:
        got = scores_of(sim.outputs(pixels))
    assert got.shape == ref.shape == (len(pixels), 3)
    if kind == "probs":
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=0.02)  # the probabilities survive quantization
    assert cosine(ref, got).mean() > 0.98


def test_onnx_outputs_that_do_not_match_the_class_folders_stop_notebook_10(tmp_path, tiny_onnx):
    from helpers.tasks.data import write_gray_shapes

    data = write_gray_shapes(tmp_path / "shapes", size=16, train_per_class=1, val_per_class=1)  # 4 classes
    with pytest.raises(WorkbookError, match=r"tiny.onnx has 3 outputs but .*val has 4 class folders") as err:
        exporter.prepare_model(None, str(tiny_onnx), data, 16)
    assert "\n" not in str(err.value)


def test_torchscript_export_finds_a_grayscale_input_and_checks_mean_std(tmp_path, tiny_images):
    path = tmp_path / "gray.torchscript"
    torch.jit.trace(_logits_net(channels=1), torch.zeros(1, 1, 16, 16)).save(str(path))
    res = exporter.export_model(path, tmp_path / "out", 16)
    assert exporter.read_sidecar(res.torchscript)["input_size_list"] == [[1, 1, 16, 16]]
    assert exporter.onnx_io(res.onnx)["inputs"][0]["shape"] == [1, 1, 16, 16]
    from helpers.tasks.preprocess import read_rgb

    pixels = np.stack([read_rgb(p, 16) for p in tiny_images])
    check = check_export(res.torchscript, res.onnx, pixels, [0.0], [255.0])  # RGB images, gray model
    assert check.top1_agreement == 1.0 and check.min_cosine > 0.9999
    with pytest.raises(WorkbookError,
                       match=r"mean_values=\[0.0, 0.0, 0.0\] has 3 value\(s\) but the model's input has 1 channel"):
        check_export(res.torchscript, res.onnx, pixels, [0.0, 0.0, 0.0], [255.0, 255.0, 255.0])
