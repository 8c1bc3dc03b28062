"""Image preprocessing shared by ONNX Runtime, the simulator, the board and the on-board runner.

Self-contained on purpose (numpy + OpenCV only, no other helpers imports): the deployment bundle
ships this very file next to its runner, so the board preprocesses exactly as the workbook does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def read_rgb(path: str | Path, size: int) -> np.ndarray:
    """Read an image file as uint8 RGB HxWx3, resized (short side) and centre-cropped to size."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"Cannot read image {path}; check the file exists and is a valid image.")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # keep the result: cvtColor does not work in place
    return resize_crop(rgb, size)


def read_image(path: str | Path, size: int, channels: int = 3) -> np.ndarray:
    """Read an image as the model's input: uint8 HxWx3 RGB, or HxWx1 grayscale when channels is 1."""
    return match_channels(read_rgb(path, size)[None], channels)[0]


def match_channels(batch_nhwc: np.ndarray, channels: int) -> np.ndarray:
    """uint8 NHWC images with the model's channel count: RGB -> grayscale (OpenCV's weights) for a
    1-channel model, grayscale -> 3 equal channels for a 3-channel model, else unchanged."""
    have = batch_nhwc.shape[-1]
    if have == channels:
        return batch_nhwc
    if have == 3 and channels == 1:
        n, h, w, _ = batch_nhwc.shape
        gray = cv2.cvtColor(np.ascontiguousarray(batch_nhwc).reshape(n * h, w, 3), cv2.COLOR_RGB2GRAY)
        return gray.reshape(n, h, w, 1)
    if have == 1 and channels == 3:
        return np.ascontiguousarray(np.repeat(batch_nhwc, 3, axis=-1))
    raise ValueError(f"Images with {have} channel(s) cannot feed a model with {channels} input channel(s); "
                     "use 1 (grayscale) or 3 (RGB).")


def resize_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Scale the short side to size, then crop the centre square (the ultralytics classify eval transform)."""
    h, w = image.shape[:2]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (nw, nh), interpolation=interp)
        top, left = (nh - size) // 2, (nw - size) // 2
        image = image[top : top + size, left : left + size]
    return np.ascontiguousarray(image)


def to_float_nchw(batch_nhwc: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW with (x - mean) / std per channel: what the FP32 model expects.
    The images are first brought to len(mean) channels (match_channels)."""
    x = match_channels(batch_nhwc, len(mean)).astype(np.float32)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax that leaves rows that already are probabilities unchanged in ranking."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_k(scores: np.ndarray, k: int = 5) -> list[tuple[int, float]]:
    """Indices and scores of the k largest entries of a 1-D score vector, best first."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    idx = np.argsort(-scores)[:k]
    return [(int(i), float(scores[i])) for i in idx]


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside folder, sorted, by known suffix."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
