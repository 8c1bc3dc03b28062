"""Shared by test_board.py and test_deploy.py: a run folder holding a real converted tiny model."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers.core.paths import Run
from helpers.steps import convert
from helpers.tasks import data
from helpers.toolkit.options import ConvertConfig
from helpers.toolkit.record import write_record

BOARD_ID = os.environ.get("RKNN_DEVICE_ID", "")
needs_board = pytest.mark.skipif(not BOARD_ID, reason="needs a real Rockchip board: set RKNN_DEVICE_ID to its adb serial")
TINY_SIZE = 16


def converted_run(root: Path, onnx: Path, images: list[Path], platform: str = "rk3588") -> Run:
    """notebook 20's outputs for the tiny model, made by the real toolkit: rknn/model.rknn + convert.json."""
    run = Run.at(root)
    cfg = ConvertConfig(mean_values=[0, 0, 0], std_values=[255, 255, 255], target_platform=platform)
    dataset = data.write_calibration_list(images, run.rknn / "calibration.txt")
    result = convert.convert(onnx, cfg, dataset, run.rknn / "model.rknn", run.logs / "convert.log", TINY_SIZE)
    write_record(run, result, cfg, onnx, dataset, TINY_SIZE, "onnx")
    return run
