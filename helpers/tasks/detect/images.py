"""A detector's input images: read as RGB and letterboxed (helpers.tasks.detect.postprocess.letterbox), the
YOLO normalisation the toolkit bakes in via mean/std (RGB / 255), and the FP32 ONNX fed one such image."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from helpers.backends.onnxrt import OnnxRunner
from helpers.tasks.detect.postprocess import letterbox
from helpers.tasks.feeds import normalised

# YOLO input: RGB / 255, the normalisation the toolkit bakes in via mean/std.
MEAN, STD = [0.0, 0.0, 0.0], [255.0, 255.0, 255.0]


def load_letterboxed(paths: Sequence[Path], size: int) -> tuple[list[np.ndarray], list]:
    """Read images as RGB and letterbox them to size x size; returns canvases and geometries."""
    canvases, geoms = [], []
    for p in paths:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"Cannot read image {p}; check the file exists and is a valid image.")
        canvas, lb = letterbox(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)
        canvases.append(canvas)
        geoms.append(lb)
    return canvases, geoms


def onnx_runner(onnx_path: str | Path) -> Callable[[np.ndarray], list[np.ndarray]]:
    """FP32 reference: one letterboxed uint8 RGB HxWx3 image -> the ONNX's raw outputs (ONNX Runtime, x / 255)."""
    runner = OnnxRunner(onnx_path, normalised(MEAN, STD))
    return lambda image: runner.run([runner.prepare(image[None])])
