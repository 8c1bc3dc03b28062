"""The small detection sample the detect tests share: generated data, a YOLO11n trained briefly from its
YAML (cached on disk under the session's temp folder, so every test module reuses one training), its
split- and stock-head ONNX exports, and one detection series run (notebooks 10 -> 40) on them that the
tests of notebooks 50 and 60 continue from copies of."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.core.paths import Run
from helpers.steps.export.detect_head import export_detector
from helpers.steps.export.detect_sample import DetectTrainResult, train_detect_sample
from helpers.tasks.detect.sample import write_detect_sample

# The same functions as the full-size sample, with small parameters.
SMALL = {"images": 100, "imgsz": 128, "epochs": 20, "batch": 8}
SERIES = "10,20,30,40"
TRAINING = ("model/model.pt", "model/train.json", ".cache/detect_sample_model.json")  # the sample training and its record


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


def series_config(tiny: TinyDetector) -> dict:
    """The detection series on the tiny detector's data: notebook 10 trains the sample detector as a user's run does
    (no model given), with the training parameters tiny_detector used."""
    return {"common": {"data_dir": str(tiny.data_yaml), "imgsz": SMALL["imgsz"]},
            "10_export": {"task": "detect", "epochs": SMALL["epochs"]},
            "20_convert": {"calib_images": 16},
            "30_simulator_inference": {"batch": 4, "pictures": 2},
            "40_board_inference": {"sample_images": 2}}


def run_detect_series(config: dict, root: Path, only: str) -> Path:
    from helpers.runner.series import run_series

    result = run_series(config, root, only=only, progress=False, render=False, log=lambda *_: None)
    assert result.failed is None, result.failure
    return root


# The session's detection series run, by base folder: test modules import the fixture, and pytest makes one instance per
# module that does, so the run itself is kept here (once per session, whichever module asks first).
_SERIES: dict[Path, Path] = {}


@pytest.fixture(scope="session")
def detect_series(tiny_detector, tmp_path_factory) -> Path:
    """Notebooks 10 -> 40 once per session. The run folder starts with tiny_detector's training and its step-cache
    record, so notebook 10 reuses that training (same data, sizes and parameters: it says so) instead of training the
    same model again. Tests read this folder and never write into it; notebooks 50 and 60 run in copies
    (continue_series)."""
    base = tmp_path_factory.getbasetemp()
    if base not in _SERIES:
        root = base / "detect_series" / "run"
        for rel in TRAINING:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(tiny_detector.run.root / rel, root / rel)
        run_detect_series(series_config(tiny_detector), root, SERIES)
        text = (root / "executed" / "10_export.ipynb").read_text()
        assert "sample YOLO11n detector on the generated shapes, reused from the cache" in text, "notebook 10 trained again"
        _SERIES[base] = root
    return _SERIES[base]


def continue_series(detect_series: Path, dst: Path, tiny: TinyDetector, only: str, params: dict) -> Path:
    """A copy of the session's detection series run with the notebooks `only` run on it (params: theirs, by notebook)."""
    root = Path(shutil.copytree(detect_series, dst))
    return run_detect_series({**series_config(tiny), **params}, root, only)
