"""A tiny YOLO26n detector (end-to-end head: one-to-one branch, reg_max 1) trained from yolo26n.yaml on the generated
shapes, the way a user brings one (a .pt and its data.yaml); cached on disk under the session's temp folder (or
DETECT_TEST_CACHE), so every YOLO26 test reuses one training. Same helpers as tests/detect_support.py's YOLO11n."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.detect.head import export_detector
from helpers.detect.sample import DetectTrainResult, train_detect_sample, write_detect_sample
from helpers.paths import Run

# Sized for the test budget on 2 cores; YOLO26n learns the shapes more slowly than YOLO11n (tests/detect_support), hence more epochs.
SMALL26 = {"images": 100, "imgsz": 128, "epochs": 30, "batch": 8, "lr0": 0.005}


@dataclass
class TinyYolo26:
    data_yaml: Path
    run: Run
    train: DetectTrainResult
    split_onnx: Path
    stock_onnx: Path
    imgsz: int


def build_tiny_yolo26(base: Path) -> TinyYolo26:
    data = write_detect_sample(base / "shapes", images=SMALL26["images"], imgsz=SMALL26["imgsz"])
    run = Run.at(base / "run")
    res = train_detect_sample(run, data, imgsz=SMALL26["imgsz"], epochs=SMALL26["epochs"], batch=SMALL26["batch"],
                              lr0=SMALL26["lr0"], arch="yolo26n.yaml")
    split, stock = run.model / "model_split.onnx", run.model / "model_stock.onnx"
    if not split.exists():
        export_detector(res.weights, split, SMALL26["imgsz"], head="split")
    if not stock.exists():
        export_detector(res.weights, stock, SMALL26["imgsz"], head="stock")
    return TinyYolo26(data, run, res, split, stock, SMALL26["imgsz"])


@pytest.fixture(scope="session")
def tiny_yolo26(tmp_path_factory) -> TinyYolo26:
    """DETECT_TEST_CACHE=<folder> keeps the training between sessions (the step cache reuses it)."""
    base = os.environ.get("DETECT_TEST_CACHE")
    return build_tiny_yolo26(Path(base) / "yolo26" if base else tmp_path_factory.getbasetemp() / "detect_yolo26")
