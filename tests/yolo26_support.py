"""A tiny YOLO26n detector (end-to-end head: one-to-one branch, reg_max 1) trained from yolo26n.yaml on the generated
shapes, the way a user brings one (a .pt and its data.yaml); cached on disk under the session's temp folder (or
DETECT_TEST_CACHE), so every YOLO26 test reuses one training. Same helpers as tests/detect_support.py's YOLO11n."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from detect_support import TinyDetector, build_tiny_detector

# Sized for the test budget on 2 cores; YOLO26n learns the shapes more slowly than YOLO11n (tests/detect_support),
# hence more epochs.
SMALL26 = {"images": 100, "imgsz": 128, "epochs": 30, "batch": 8}
TinyYolo26 = TinyDetector


def build_tiny_yolo26(base: Path) -> TinyYolo26:
    return build_tiny_detector(base, "yolo26n.yaml", SMALL26)


@pytest.fixture(scope="session")
def tiny_yolo26(tmp_path_factory) -> TinyYolo26:
    """DETECT_TEST_CACHE=<folder> keeps the training between sessions (the step cache reuses it)."""
    base = os.environ.get("DETECT_TEST_CACHE")
    return build_tiny_yolo26(Path(base) / "yolo26" if base else tmp_path_factory.getbasetemp() / "detect_yolo26")
