"""Pictures of a pose model's keypoints: val images with each backend's boxes and skeletons (the data.yaml's keypoint
pairs joined by lines, else the points alone) side by side (FP32 vs INT8), read from a run's eval/detections.json."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from helpers.core.paths import Run
from helpers.tasks.detect.plots import colour, draw, picture_grid, read_detections

MIN_VISIBLE = 0.5  # a keypoint is drawn when its visibility score reaches this (ultralytics' pictures use the same)


def draw_poses(ax: Any, image: np.ndarray, det: dict[str, list], names: Sequence[str], title: str, min_score: float,
               skeleton: Sequence[Sequence[int]] | None = None) -> None:
    """An image with the poses scoring at least min_score: box, class and score, each keypoint seen (visibility >=
    MIN_VISIBLE) as a dot and, with a skeleton, a line for each pair whose two keypoints are seen."""
    draw(ax, image, det, names, title, min_score)
    for kp, score, cls in zip(det.get("keypoints", []), det["scores"], det["classes"]):
        if score < min_score:
            continue
        kp = np.asarray(kp, np.float64).reshape(-1, 3)
        seen = kp[:, 2] >= MIN_VISIBLE
        for a, b in skeleton or []:
            if a < len(kp) and b < len(kp) and seen[a] and seen[b]:
                ax.plot(kp[[a, b], 0], kp[[a, b], 1], color=colour(cls), lw=1.5)
        ax.scatter(kp[seen, 0], kp[seen, 1], s=8, c="white", edgecolors=colour(cls), linewidths=1, zorder=3)


def plot_poses(run: Run, images: int = 4, min_score: float = 0.25, path: Path | None = None,
               backends: Sequence[str] | None = None, first: int = 0, skeleton: Sequence[Sequence[int]] | None = None):
    """Val images (from index `first`) with each backend's poses (score >= min_score) side by side, from
    eval/detections.json; skeleton: keypoint index pairs to join (default: the record's "skeleton", e.g. the data.yaml's
    through pose.labels.read_pose_yaml; none: points only); backends: the columns (default: all but the BGR diagnostic)."""
    saved = read_detections(run)
    pairs = skeleton if skeleton is not None else saved.get("skeleton")
    return picture_grid(saved, lambda ax, rgb, det, title: draw_poses(ax, rgb, det, saved["classes"], title, min_score, pairs),
                        images, path, backends, first)
