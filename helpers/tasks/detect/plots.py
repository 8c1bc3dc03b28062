"""Pictures of a detector's boxes: val images with each backend's detections side by side, read from a run's
eval/detections.json (notebook 30); the grid itself is shared with the segment (masks) and pose (skeletons) pictures."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from helpers.core.paths import Run


def colour(cls: int) -> str:
    """The matplotlib colour of a class ('C0'..'C9'): boxes, masks and skeletons of one class share it."""
    return "C" + str(int(cls) % 10)


def draw(ax: Any, image: np.ndarray, det: dict[str, list], names: Sequence[str], title: str, min_score: float) -> None:
    """An image with the boxes scoring at least min_score, labelled with class and score."""
    from matplotlib.patches import Rectangle  # optional and slow: only when a picture is drawn

    ax.imshow(image)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    for box, score, cls in zip(det["boxes"], det["scores"], det["classes"]):
        if score < min_score:
            continue
        x1, y1, x2, y2 = box
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.5, edgecolor=colour(cls)))
        ax.text(x1, y1, f"{names[int(cls)]} {score:.2f}", fontsize=6, color="white", backgroundcolor=colour(cls), va="bottom")


def picture_grid(saved: dict[str, Any], draw_one: Callable[[Any, np.ndarray, dict[str, list], str], None], images: int = 4,
                 path: Path | None = None, backends: Sequence[str] | None = None, first: int = 0):
    """Val images (rows, from index `first`) by backends (columns) of a detections.json record, each cell drawn by
    draw_one(ax, rgb image, that backend's predictions on it, title); backends default to all but the BGR diagnostic."""
    import matplotlib.pyplot as plt  # optional and slow: only when a picture is drawn

    backends = list(backends) if backends else [b for b in saved["backends"] if "BGR" not in b]
    order = [(first + k) % len(saved["images"]) for k in range(min(images, len(saved["images"])))]
    n = len(order)
    fig, axes = plt.subplots(n, len(backends), figsize=(2.6 * len(backends), 2.2 * n), squeeze=False)
    for i, k in enumerate(order):
        rgb = cv2.cvtColor(cv2.imread(saved["images"][k]), cv2.COLOR_BGR2RGB)
        for j, name in enumerate(backends):
            draw_one(axes[i][j], rgb, saved["backends"][name][k], name if i == 0 else "")
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


def read_detections(run: Run) -> dict[str, Any]:
    """A run's eval/detections.json: images, classes and each backend's predictions per image."""
    return json.loads((run.eval / "detections.json").read_text())


def plot_boxes(run: Run, images: int = 4, min_score: float = 0.25, path: Path | None = None,
               backends: Sequence[str] | None = None, first: int = 0):
    """Val images (from index `first`) with each backend's boxes (score >= min_score) side by side, from
    eval/detections.json; backends: the columns to draw (default: every backend but the BGR diagnostic)."""
    saved = read_detections(run)
    return picture_grid(saved, lambda ax, rgb, det, title: draw(ax, rgb, det, saved["classes"], title, min_score),
                        images, path, backends, first)
