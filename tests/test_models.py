"""Model path validation and the sample model's accuracy target."""
from __future__ import annotations

import json

import pytest

from helpers.core.errors import WorkbookError
from helpers.tasks.model_file import check_model_path


def test_missing_model(tmp_path):
    with pytest.raises(WorkbookError, match=r"missing.pt does not exist; pass model= an existing .pt or .onnx path"):
        check_model_path(tmp_path / "missing.pt")


def test_folder_as_model(tmp_path):
    with pytest.raises(WorkbookError, match="is a folder, not a file"):
        check_model_path(tmp_path)


def test_unknown_model_type(tmp_path):
    f = tmp_path / "weights.h5"
    f.write_bytes(b"\x89HDF")
    with pytest.raises(WorkbookError, match=r"unknown type .h5; pass a .pt/.torchscript \(PyTorch\) or .onnx file"):
        check_model_path(f)


def test_empty_model_file(tmp_path):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"")
    with pytest.raises(WorkbookError, match="is empty"):
        check_model_path(f)


def test_unreadable_model_file(tmp_path):
    """A path that exists but cannot be opened for reading (a socket) is reported as unreadable."""
    import socket

    sock_path = tmp_path / "model.onnx"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock_path))
    try:
        with pytest.raises(WorkbookError, match=r"model.onnx cannot be read \(.+\); fix its permissions"):
            check_model_path(sock_path)
    finally:
        s.close()


@pytest.mark.slow
def test_sample_model_reaches_accuracy_target(series):
    root = series.ran("10_export")
    train = json.loads((root / "model" / "train.json").read_text())
    assert train["top1"] >= 0.9, f"sample YOLO11n-cls val top-1 {train['top1']:.3f}: too inaccurate for the lessons that follow"
