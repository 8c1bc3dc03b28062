"""Notebook 10's export check: the TorchScript (what load_pytorch gets) against the ONNX under ONNX Runtime, image
by image on real images: largest difference, output cosine, same top-1."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from helpers.steps.export.exporter import read_sidecar
from helpers.tasks.classify.metric import scores_of
from helpers.tasks.feeds import fp32_runner, torchscript_runner
from helpers.tasks.measures import cosine
from helpers.toolkit.options import ConvertConfig


@dataclass
class ExportCheck:
    """PyTorch (TorchScript) vs ONNX Runtime on the same real images."""

    images: int
    max_abs_diff: float
    mean_cosine: float
    min_cosine: float
    top1_agreement: float
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def torchscript_scores(path: Path, images_uint8_nhwc: np.ndarray, mean, std) -> np.ndarray:
    """[N, K]: the first output of a TorchScript module on uint8 NHWC images, flattened per image."""
    channels = int((read_sidecar(path) or {}).get("channels", len(mean)))
    with torchscript_runner(path, mean, std, channels) as runner:
        out = runner.run([runner.prepare(images_uint8_nhwc)])[0]
    return out.reshape(len(images_uint8_nhwc), -1)


def check_export(torchscript: Path, onnx_path: Path, images_uint8_nhwc: np.ndarray, mean, std) -> ExportCheck:
    """Compare TorchScript (what load_pytorch gets) with the ONNX under ONNX Runtime, image by image."""
    channels = int((read_sidecar(torchscript) or {}).get("channels", images_uint8_nhwc.shape[-1]))
    ConvertConfig(mean_values=mean, std_values=std).validate(channels=channels)  # a sentence, not a broadcast error
    ref = torchscript_scores(torchscript, images_uint8_nhwc, mean, std)
    with fp32_runner(onnx_path, mean, std) as ort:
        got = scores_of(ort.outputs(images_uint8_nhwc))
    cos = cosine(ref, got)
    diff = np.abs(ref - got).max(axis=1)
    agree = ref.argmax(1) == got.argmax(1)
    rows = [{"image": i, "max_abs_diff": float(diff[i]), "cosine": float(cos[i]), "same_top1": bool(agree[i])}
            for i in range(len(ref))]
    return ExportCheck(len(ref), float(diff.max()), float(cos.mean()), float(cos.min()), float(agree.mean()), rows)
