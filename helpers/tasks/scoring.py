"""One score per model, whatever the run's task: top-1 for a classifier, COCO mAP50-95 for a detector, mask mAP50-95
for a seg model, OKS mAP50-95 for a pose model, with how closely its raw outputs follow FP32 (cosine). Notebook 50's
sweep and notebook 60's hybrids rank models through a `Judge` (tasks/<task>/judge.py; helpers.steps.judge builds one
for a run), so every task shares one code path and the tables name the metric they hold."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from helpers.tasks.measures import Outputs, metric_text, output_cosines
from helpers.tasks.noise import Paired


@dataclass
class Score:
    """One model on the judge's images: the task metric (0..1) and its outputs' per-image cosine to FP32."""

    value: float
    mean_cosine: float
    min_cosine: float
    agreement: float  # classify: share of images with FP32's top-1 class; detect: mAP50; segment, pose: box mAP50-95

    def row(self, judge: "Judge") -> dict[str, Any]:
        """The columns a table stores for this score, named after the judge's metric."""
        return {judge.key: self.value, judge.delta_key: round(100 * (self.value - judge.fp32.value), 2),
                "mean_cosine": self.mean_cosine, "min_cosine": self.min_cosine, judge.agreement_key: self.agreement}


@dataclass
class Judge:
    """The images every model of a comparison is scored on (uint8 RGB NHWC `pixels`, letterboxed for a
    detector), the FP32 reference's raw outputs on them, and the task's metric."""

    task: str
    key: str  # table column of the metric: "top1", "map50_95", "mask_map50_95" or "pose_map50_95"
    label: str  # how sentences and axes name it: "top-1", "mAP50-95", "mask mAP50-95" or "pose mAP50-95"
    agreement_key: str  # "top1_agreement", "map50" or "box_map50_95"
    paths: list[Path]
    pixels: np.ndarray
    fp32_outputs: Outputs = field(repr=False)
    fp32: Score = field(init=False)

    def __post_init__(self) -> None:
        """The FP32 reference's own score: its metric, cosine 1 to itself."""
        value, agreement = self.metric(self.fp32_outputs)
        self.fp32 = Score(value, 1.0, 1.0, agreement)

    @property
    def images(self) -> int:
        """How many images every model is scored on."""
        return len(self.paths)

    @property
    def delta_key(self) -> str:
        """The table column of a score's change against FP32, in points."""
        return f"{self.key}_delta_pt"

    def text(self, value: float) -> str:
        """A value of this judge's metric as sentences show it (metric_text)."""
        return metric_text(self.key, value)

    def metric(self, outputs: Outputs) -> tuple[float, float]:
        """(metric, agreement) of raw outputs; implemented per task."""
        raise NotImplementedError

    def score(self, outputs: Outputs) -> Score:
        """Score a model's raw outputs on self.pixels (same images, same order as FP32)."""
        if len(outputs) != self.images:
            raise ValueError(f"{len(outputs)} output sets for {self.images} images; run the model on judge.pixels.")
        value, agreement = self.metric(outputs)
        cos = output_cosines(self.fp32_outputs, outputs)
        mean, low = (float(cos.mean()), float(cos.min())) if len(cos) else (float("nan"), float("nan"))
        return Score(value, mean, low, agreement)

    def paired(self, outputs: Outputs, reference: Outputs | None = None) -> Paired:
        """These outputs' metric against the reference's (FP32 by default) on the same images, by the workbook's
        one noise rule (helpers.tasks.noise): the difference in points, its 95 % interval and the verdict."""
        raise NotImplementedError

    def step_pt(self) -> float | None:
        """The metric's resolution in points (one image of top-1); None when it has no fixed step (mAP)."""
        return None

