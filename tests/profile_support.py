"""A tiny model with a YOLOv8-style DFL head and its real verbose INT8 builds, for the pre-flight tests.

rknn-toolkit2 2.5.0 keeps the head (reshape, softmax over 16 bins, 1x1 conv) on the NPU for rk3588, rk3562 and
rk3576 but puts its Softmax and Reshapes on the CPU for rk3566: the difference a user must see before choosing a chip."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from helpers.core.paths import write_text_atomic
from helpers.toolkit.session import RKNN

SIZE = 32


class DflHead(torch.nn.Module):
    """conv -> 64 channels -> (4 sides x 16 bins) softmax -> 1x1 conv: the distribution head of YOLOv8/11."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 16, 3, 2, 1)
        self.box = torch.nn.Conv2d(16, 64, 1)
        self.dfl = torch.nn.Conv2d(16, 1, 1, bias=False)

    def forward(self, x):
        b = self.box(torch.relu(self.stem(x)))
        n = b.shape[2] * b.shape[3]
        return self.dfl(b.view(1, 4, 16, n).transpose(2, 1).softmax(1)).view(1, 4, n)


def make_model(folder: Path) -> Path:
    """The ONNX and a one-image calibration list (a random .npy) in folder."""
    torch.manual_seed(0)
    torch.onnx.export(DflHead().eval(), torch.rand(1, 3, SIZE, SIZE), str(folder / "dfl.onnx"), opset_version=19,
                      input_names=["images"], output_names=["box"])
    np.save(folder / "calib.npy", np.random.default_rng(0).uniform(0, 255, (1, 3, SIZE, SIZE)).astype(np.float32))
    write_text_atomic(folder / "calib.txt", f"{folder / 'calib.npy'}\n")
    return folder / "dfl.onnx"


def build(folder: Path, chip: str, verbose: bool = True) -> Path:
    """Build folder's model for chip (INT8, the toolkit's verbose log or not); returns the log path."""
    log = folder / f"{chip}{'' if verbose else '-quiet'}.log"
    with RKNN(log, verbose=verbose) as rk:
        rk.config(mean_values=[[0, 0, 0]], std_values=[[255, 255, 255]], target_platform=chip)
        rk.load_onnx(model=str(folder / "dfl.onnx"))
        rk.build(do_quantization=True, dataset=str(folder / "calib.txt"))
    return log
