"""Pictures of a seg model's masks: val images with each backend's masks blended in per class colour and their boxes,
side by side (FP32 vs INT8), read from a run's eval/detections.json (masks as RLE: segment.metric.predictions_json)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from helpers.core.paths import Run
from helpers.tasks.detect.plots import colour, draw, picture_grid, read_detections
from helpers.tasks.segment.metric import decode_rle

ALPHA = 0.45  # how much of a mask's colour covers the image under it


def blend(image: np.ndarray, det: dict[str, list], min_score: float, alpha: float = ALPHA) -> np.ndarray:
    """The RGB image with the masks scoring at least min_score laid over it in their class colours (lowest score first,
    so the best mask is on top), each outlined in white so the mask reads apart from the object under it."""
    from matplotlib.colors import to_rgb  # optional and slow: only when a picture is drawn

    out = image.astype(np.float32)
    masks = det.get("masks") or [None] * len(det["scores"])
    for k in np.argsort(det["scores"], kind="stable"):
        rle, score = masks[k], det["scores"][k]
        if rle is None or score < min_score:
            continue
        m = decode_rle(rle)
        if m.shape != image.shape[:2]:
            continue  # a mask of another image size: not this picture's (left out rather than misplaced)
        out[m] = (1 - alpha) * out[m] + alpha * 255 * np.asarray(to_rgb(colour(det["classes"][k])), np.float32)
        edges, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, edges, -1, (255.0, 255.0, 255.0), 1)
    return out.round().astype(np.uint8)


def draw_masks(ax: Any, image: np.ndarray, det: dict[str, list], names: Sequence[str], title: str, min_score: float) -> None:
    """An image with its masks blended in and the boxes scoring at least min_score, labelled with class and score."""
    draw(ax, blend(image, det, min_score), det, names, title, min_score)


def plot_masks(run: Run, images: int = 4, min_score: float = 0.25, path: Path | None = None,
               backends: Sequence[str] | None = None, first: int = 0):
    """Val images (from index `first`) with each backend's masks and boxes (score >= min_score) side by side, from
    eval/detections.json; backends: the columns to draw (default: every backend but the BGR diagnostic)."""
    saved = read_detections(run)
    return picture_grid(saved, lambda ax, rgb, det, title: draw_masks(ax, rgb, det, saved["classes"], title, min_score),
                        images, path, backends, first)
