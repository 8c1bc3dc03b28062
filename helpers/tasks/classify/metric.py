"""A classifier's accuracy on a labelled image set with any runner (helpers.backends), and how closely a second
runner follows a reference: scores are each image's first output flattened, [N, classes]."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from helpers.backends.base import Outputs, Runner
from helpers.core.errors import WorkbookError
from helpers.tasks.data import LabelledImages
from helpers.tasks.measures import cosine
from helpers.tasks.noise import Paired, mcnemar
from helpers.tasks.preprocess import read_rgb


def scores_of(per_image: Outputs) -> np.ndarray:
    """[N, K]: each image's first output flattened (a classifier's scores)."""
    if not per_image:
        return np.zeros((0, 0), np.float32)
    return np.stack([np.ravel(outs[0]) for outs in per_image]).astype(np.float32)


@dataclass
class EvalResult:
    """Scores and accuracy of one backend on one labelled set."""

    name: str
    scores: np.ndarray
    labels: np.ndarray
    top1: float
    top5: float
    seconds: float
    images_per_s: float

    @property
    def predictions(self) -> np.ndarray:
        return self.scores.argmax(axis=1)

    @property
    def correct(self) -> np.ndarray:
        """Per image: is the top-1 class the label?"""
        return self.predictions == self.labels

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "images": int(len(self.labels)), "top1": self.top1, "top5": self.top5,
                "seconds": round(self.seconds, 3), "images_per_s": round(self.images_per_s, 1)}


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the k highest scores."""
    if len(labels) == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def evaluate(runner: Runner, images: LabelledImages, size: int, batch: int = 32, progress: bool = True,
             pixels: np.ndarray | None = None) -> EvalResult:
    """Score every image with the runner in batches (tqdm bar); only the runner's time counts as speed.
    Pass pixels (images.load(size)) to reuse already-decoded images."""
    n = len(images)
    outs, spent = [], 0.0
    bar = tqdm(total=n, desc=runner.name, unit="img", disable=not progress)
    for i in range(0, n, batch):
        x = pixels[i : i + batch] if pixels is not None else np.stack([read_rgb(p, size) for p in images.paths[i : i + batch]])
        t = time.perf_counter()
        outs.append(scores_of(runner.outputs(x)))
        spent += time.perf_counter() - t
        if i == 0:
            check_outputs(outs[0], images, runner.name)
        bar.update(len(x))
    bar.close()
    scores = np.concatenate(outs) if outs else np.zeros((0, len(images.classes)), np.float32)
    labels = np.asarray(images.labels)
    return EvalResult(runner.name, scores, labels, topk_accuracy(scores, labels, 1), topk_accuracy(scores, labels, 5),
                      spent, n / spent if spent > 0 else float("nan"))


def check_outputs(scores: np.ndarray, images: LabelledImages, backend: str) -> None:
    """Raise WorkbookError when the model scores a different number of classes than the folder has."""
    if scores.ndim == 2 and scores.shape[1] != len(images.classes):
        raise WorkbookError(f"The model ({backend}) has {scores.shape[1]} outputs but {images.root} has {len(images.classes)} "
                            "class folders; give a data_dir with one sub-folder per model output (in output order) or the "
                            "model trained on it.")


@dataclass
class Comparison:
    """How closely a second backend (e.g. INT8) follows a reference (e.g. FP32), image by image."""

    reference: str
    other: str
    top1_agreement: float
    cosine: np.ndarray = field(repr=False)
    top1_delta_pt: float = 0.0
    reference_top1: float = float("nan")
    other_top1: float = float("nan")
    paired: Paired | None = None  # other's top-1 against reference's by the one noise rule (exact McNemar)

    @property
    def mean_cosine(self) -> float:
        return float(self.cosine.mean()) if len(self.cosine) else float("nan")

    @property
    def min_cosine(self) -> float:
        return float(self.cosine.min()) if len(self.cosine) else float("nan")

    def summary(self) -> dict[str, Any]:
        return {"reference": self.reference, "other": self.other, "top1_agreement": self.top1_agreement,
                "mean_cosine": self.mean_cosine, "min_cosine": self.min_cosine, "top1_delta_pt": self.top1_delta_pt,
                "paired": self.paired.to_dict() if self.paired else None}


def paired(reference: EvalResult, other: EvalResult) -> Paired:
    """other's top-1 against reference's on the same images, by the workbook's one noise rule (exact McNemar)."""
    return mcnemar(reference.correct, other.correct)


def compare(fp32: EvalResult, int8: EvalResult) -> Comparison:
    """Top-1 agreement, per-sample output cosine and the paired top-1 verdict of int8 against fp32 (same images,
    same order)."""
    if fp32.scores.shape != int8.scores.shape:
        raise ValueError(f"Cannot compare {fp32.name} {fp32.scores.shape} with {int8.name} {int8.scores.shape}: "
                         "evaluate both on the same images.")
    agree = float((fp32.predictions == int8.predictions).mean()) if len(fp32.labels) else float("nan")
    return Comparison(fp32.name, int8.name, agree, cosine(fp32.scores, int8.scores), round(100 * (int8.top1 - fp32.top1), 2),
                      fp32.top1, int8.top1, paired(fp32, int8) if len(fp32.labels) else None)


def verdict(cmp: Comparison) -> str:
    """One line: the second model's top-1 against the reference's with its 95 % interval and what it means (the
    one noise rule), then how often the two agree and how closely their outputs follow each other."""
    judged = f": {cmp.paired.text}" if cmp.paired else ""
    return (f"{cmp.other}: top-1 {100 * cmp.other_top1:.2f}% vs {cmp.reference} {100 * cmp.reference_top1:.2f}%{judged}; "
            f"the two agree on {100 * cmp.top1_agreement:.1f}% of images, mean output cosine {cmp.mean_cosine:.4f}.")


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    """[true, predicted] counts."""
    m = np.zeros((classes, classes), np.int64)
    np.add.at(m, (np.asarray(labels), np.asarray(predictions)), 1)
    return m
