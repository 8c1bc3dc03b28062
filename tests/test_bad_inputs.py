"""Bad inputs a user can reach in paths, data, export and the export check: each is one sentence
naming the input and the fix (WorkbookError), and nothing half-written is left behind."""
from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from helpers.core.errors import WorkbookError
from helpers.core.paths import Run
from helpers.steps.export import exporter
from helpers.steps.export.check import check_export
from helpers.tasks import data


def test_unwritable_run_dir_names_the_folder_and_the_fix(tmp_path):
    with pytest.raises(WorkbookError, match=r"Run folder /sys/rknn-workbook-run cannot be written \(.+\); pass "
                                            r"run_dir= a folder you can write to"):
        Run.at("/sys/rknn-workbook-run")  # sysfs: not writable even for root
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WorkbookError, match=r"Run folder .*file/run cannot be written \(Not a directory\)"):
        Run.at(blocker / "run")
    with pytest.raises(WorkbookError, match="is a file; pass run_dir= a folder path"):
        Run.at(blocker)
    assert not list(tmp_path.glob("**/.write-test-*"))


def test_run_folder_paths_are_recorded_relative_and_resolved_after_a_move(tmp_path):
    run = Run.at(tmp_path / "a")
    model = run.hybrid / "model_hybrid.rknn"
    model.write_bytes(b"RKNN")
    recorded = run.relative(model)
    assert recorded == "hybrid/model_hybrid.rknn"
    (tmp_path / "a").rename(tmp_path / "b")  # the folder is copied or moved to be shared
    moved = Run.at(tmp_path / "b")
    assert moved.resolve(recorded).read_bytes() == b"RKNN"
    outside = tmp_path / "elsewhere.txt"
    assert moved.relative(outside) == str(outside) and moved.resolve(str(outside)) == outside


def test_calibration_image_that_cannot_be_decoded_is_named(tmp_path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.zeros((8, 8, 3), np.uint8))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(WorkbookError, match=r"Calibration image .*broken.png cannot be decoded as an image \(1 such "
                                            r"file\(s\)\); replace or remove it"):
        data.write_calibration_list([good, broken], tmp_path / "calib.txt")
    assert not (tmp_path / "calib.txt").exists()


def test_data_folder_errors(tmp_path):
    with pytest.raises(WorkbookError, match=r"Data folder .*absent does not exist; pass data_dir= a folder with train/ and val/"):
        data.load_split(tmp_path / "absent", "val")
    (tmp_path / "f").write_text("x")
    with pytest.raises(WorkbookError, match=r"Image folder .*f is a file; pass a folder laid out as"):
        data.load_folder(tmp_path / "f")


def _torchscript_and_onnx(folder):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 2)).eval()
    ts, onnx_path = folder / "m.torchscript", folder / "m.onnx"
    torch.jit.trace(net, torch.zeros(1, 3, 8, 8)).save(str(ts))
    torch.onnx.export(net, torch.zeros(1, 3, 8, 8), str(onnx_path), opset_version=12, input_names=["images"])
    return ts, onnx_path


@pytest.mark.parametrize("mean, std, message", [
    ([0, 0], [255, 255, 255], r"mean_values=\[0, 0\] has 2 value\(s\) but the model's input has 3 channel\(s\); give exactly 3"),
    ([0, 0, 0], [255, 0, 255], r"std_values=\[255, 0, 255\] contains 0"),
    ([0, 0, 0], 255, r"std_values=255 must be a flat list of numbers"),
])
def test_export_check_validates_mean_and_std(tmp_path, mean, std, message):
    """Notebook 10's mean/std reach the export check first: a clear sentence, not a numpy broadcast error."""
    ts, onnx_path = _torchscript_and_onnx(tmp_path)
    pixels = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(WorkbookError, match=message):
        check_export(ts, onnx_path, pixels, mean, std)
    assert check_export(ts, onnx_path, pixels, [0, 0, 0], [255, 255, 255]).top1_agreement == 1.0


def _onnx(path, inputs, shape=(1, 3, 8, 8), nodes=True):
    ins = [helper.make_tensor_value_info(f"in{i}", TensorProto.FLOAT, list(shape)) for i in range(inputs)]
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, list(shape))
    node = [helper.make_node("Relu", ["in0"], ["out"])] if nodes else []
    onnx.save(helper.make_model(helper.make_graph(node, "g", ins, [out]), opset_imports=[helper.make_opsetid("", 12)]), str(path))
    return path


def test_onnx_shape_errors(tmp_path):
    with pytest.raises(WorkbookError, match="has 2 inputs; this workbook handles single-input image models only"):
        exporter.check_onnx(_onnx(tmp_path / "two.onnx", 2), 8)
    with pytest.raises(WorkbookError, match=r"ONNX input in0 of .* has shape \[1, 8\], not NCHW; pass a 4-D image model"):
        exporter.check_onnx(_onnx(tmp_path / "flat.onnx", 1, shape=(1, 8)), 8)
    with pytest.raises(WorkbookError, match=r"is not a valid ONNX model \(no graph nodes\)"):
        exporter.load_onnx_model(_onnx(tmp_path / "empty.onnx", 1, nodes=False))


def test_torchscript_file_errors(tmp_path):
    with pytest.raises(WorkbookError, match=r"TorchScript file .*absent.torchscript does not exist"):
        exporter.check_torchscript(tmp_path / "absent.torchscript")
    flat = tmp_path / "flat.torchscript"
    flat.write_bytes(b"not a zip")
    with pytest.raises(WorkbookError, match=r"is not a TorchScript archive; export it with torch.jit.trace"):
        exporter.check_torchscript(flat)


def test_a_pt_that_ultralytics_cannot_read(tmp_path):
    pt = tmp_path / "weights.pt"
    torch.save({"not": "a model"}, str(pt))  # a PyTorch archive, but no ultralytics model inside
    with pytest.raises(WorkbookError, match=r"ultralytics could not export .*weights.pt \(.+\); check it is an "
                                            r"ultralytics classification .pt"):
        exporter.export_model(pt, tmp_path / "out", imgsz=16)
    assert not (tmp_path / "out" / "model.onnx").exists()
