"""The judge of a classifier: top-1 against folder labels (helpers.tasks.scoring.Judge)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from helpers.tasks.classify.metric import scores_of, topk_accuracy
from helpers.tasks.measures import Outputs
from helpers.tasks.noise import Paired, mcnemar
from helpers.tasks.scoring import Judge


@dataclass
class ClassifyJudge(Judge):
    """Top-1 of a classifier against folder labels; agreement = same top-1 class as FP32."""

    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)

    def metric(self, outputs: Outputs) -> tuple[float, float]:
        """Top-1 against the folder labels, and the share of images whose top-1 class is FP32's."""
        scores = scores_of(outputs)
        same = float((scores_of(self.fp32_outputs).argmax(1) == scores.argmax(1)).mean()) if len(scores) else float("nan")
        return topk_accuracy(scores, np.asarray(self.labels), 1), same

    def correct(self, outputs: Outputs) -> np.ndarray:
        """Per image: is the top-1 class the folder label?"""
        return scores_of(outputs).argmax(1) == np.asarray(self.labels)

    def paired(self, outputs: Outputs, reference: Outputs | None = None) -> Paired:
        """Top-1 against the reference's (FP32 by default): exact McNemar on the images only one gets right."""
        return mcnemar(self.correct(self.fp32_outputs if reference is None else reference), self.correct(outputs))

    def step_pt(self) -> float | None:
        """One image of top-1, in points."""
        return 100.0 / self.images if self.images else None
