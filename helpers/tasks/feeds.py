"""How each runner is fed uint8 RGB NHWC images (helpers.tasks.preprocess.read_rgb): the FP32 ONNX and TorchScript
get float NCHW with mean/std applied in numpy; the toolkit (simulator, board) gets the raw uint8 images, since
mean/std are baked into the .rknn. Either way the images are first brought to the model's channel count."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from helpers.backends.onnxrt import OnnxRunner
from helpers.backends.torchscript import TorchScriptRunner
from helpers.core.errors import WorkbookError
from helpers.core.paths import atomic_path
from helpers.tasks.preprocess import match_channels, to_float_nchw

Prepare = Callable[[np.ndarray], np.ndarray]


def normalised(mean: Sequence[float], std: Sequence[float]) -> Prepare:
    """uint8 NHWC images -> float32 NCHW (x - mean) / std: the input of an FP32 model."""
    mean, std = list(mean), list(std)
    return lambda images: to_float_nchw(images, mean, std)


def fitted(channels: int | None) -> Prepare | None:
    """uint8 NHWC images with the model's channel count (RGB -> grayscale for a 1-channel model); None when unknown."""
    return (lambda images: match_channels(images, channels)) if channels else None


def check_channels(mean: Sequence[float], std: Sequence[float], channels: int, model: str) -> None:
    """Raise WorkbookError unless mean_values and std_values have one value per input channel of the model."""
    for key, vals in (("mean_values", mean), ("std_values", std)):
        if len(vals) != channels:
            raise WorkbookError(f"{key}={list(vals)} has {len(vals)} value(s) but model {model} has {channels} input "
                                f"channel(s); give exactly {channels} (e.g. {key}={list(vals)[:1] * channels}).")


def fp32_runner(onnx_path: str | Path, mean: Sequence[float], std: Sequence[float],
                name: str = "FP32 ONNX Runtime") -> OnnxRunner:
    """The FP32 reference: the exported ONNX under ONNX Runtime, fed images normalised with mean/std."""
    runner = OnnxRunner(onnx_path, normalised(mean, std), name)
    check_channels(mean, std, runner.channels or len(mean), str(onnx_path))
    return runner


def torchscript_runner(path: str | Path, mean: Sequence[float], std: Sequence[float], channels: int) -> TorchScriptRunner:
    """A TorchScript module fed images normalised with mean/std (one value per input channel, checked first)."""
    check_channels(mean, std, channels, str(path))
    return TorchScriptRunner(path, normalised(mean, std))


def model_input_npy(pixels_hwc: np.ndarray, channels: int, target: Path) -> Path:
    """One uint8 HxWx3 image as the model's own input, 1 x C x H x W (what the toolkit's accuracy_analysis and
    codegen take for a .npy), written atomically to target."""
    arr = match_channels(np.asarray(pixels_hwc, np.uint8)[None], channels).transpose(0, 3, 1, 2)
    with atomic_path(target, ".partial.npy") as tmp:  # np.save appends .npy to any other name
        np.save(tmp, np.ascontiguousarray(arr))
    return target
