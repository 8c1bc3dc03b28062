"""Shared by test_analysis.py and test_hybrid.py: a tiny model whose INT8 version is visibly wrong.

Its first conv has one output channel scaled x300 that the next conv ignores: with per-layer (one
scale per tensor) quantization the other seven channels are crushed to a few INT8 steps, so the
real signal is lost. Every file the tests read is then written by the real toolkit from it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 16
MEAN, STD = [0, 0, 0], [255, 255, 255]
# quantized_method="layer" is what makes the outlier channel hurt.
CONFIG = dict(mean_values=[MEAN], std_values=[STD], target_platform="rk3588", quantized_method="layer")


def outlier_onnx(folder: Path) -> Path:
    """The 3-class 16x16 conv net of conftest.tiny_onnx with the outlier channel added."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 3),
    ).eval()
    with torch.no_grad():
        net[0].weight[0] *= 300
        net[0].bias[0] += 50
        net[2].weight[:, 0] = 0
    path = Path(folder) / "outlier.onnx"
    torch.onnx.export(net, torch.randn(1, 3, SIZE, SIZE), str(path), opset_version=12, input_names=["images"],
                      output_names=["logits"])
    return path


def onnx_scores(onnx: Path, pixels: np.ndarray) -> np.ndarray:
    """FP32 reference scores for uint8 NHWC pixels."""
    from helpers.tasks.classify.metric import scores_of
    from helpers.tasks.feeds import fp32_runner

    return scores_of(fp32_runner(onnx, MEAN, STD).outputs(pixels))
