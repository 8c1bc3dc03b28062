"""The small detection sample the detect tests share: generated data, a YOLO11n trained briefly from its
YAML (cached on disk under the session's temp folder, so every test module reuses one training), and
its split- and stock-head ONNX exports."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.core.paths import Run
from helpers.steps.export.detect_head import export_detector
from helpers.steps.export.detect_sample import DetectTrainResult, train_detect_sample
from helpers.tasks.detect.sample import write_detect_sample

# The same functions as the full-size sample, with small parameters.
SMALL = {"images": 100, "imgsz": 128, "epochs": 20, "batch": 8}


@dataclass
class TinyDetector:
    data_yaml: Path
    run: Run
    train: DetectTrainResult
    split_onnx: Path
    stock_onnx: Path
    imgsz: int


def build_tiny_detector(base: Path, arch: str = "yolo11n.yaml", sizes: dict | None = None) -> TinyDetector:
    """Generate the shapes, train `arch` from its YAML on them (step-cached in base/run) and export both heads."""
    sizes = sizes or SMALL
    data = write_detect_sample(base / "shapes", images=sizes["images"], imgsz=sizes["imgsz"])
    run = Run.at(base / "run")
    res = train_detect_sample(run, data, imgsz=sizes["imgsz"], epochs=sizes["epochs"], batch=sizes["batch"], arch=arch)
    split = run.model / "model_split.onnx"
    stock = run.model / "model_stock.onnx"
    if not split.exists():
        export_detector(res.weights, split, sizes["imgsz"], head="split")
    if not stock.exists():
        export_detector(res.weights, stock, sizes["imgsz"], head="stock")
    return TinyDetector(data, run, res, split, stock, sizes["imgsz"])


@pytest.fixture(scope="session")
def tiny_detector(tmp_path_factory) -> TinyDetector:
    """DETECT_TEST_CACHE=<folder> keeps the training between sessions (the step cache reuses it)."""
    base = os.environ.get("DETECT_TEST_CACHE")
    return build_tiny_detector(Path(base) if base else tmp_path_factory.getbasetemp() / "detect_tiny")
