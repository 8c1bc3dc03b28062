"""The offline segmentation sample: the detection sample's shapes and textures, labelled with one polygon per shape in
YOLO segment format (`class x1 y1 x2 y2 ...`, normalised), so a YOLO11n-seg trains on it on CPU with nothing downloaded."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from helpers.core.paths import DATA, atomic_path
from helpers.tasks.detect.sample import CLASSES, _draw, _texture, write_yolo_sample

SAMPLE_DIR = DATA / "shapes_seg"
SAMPLE_VERSION = 1
GAP = 2  # pixels kept free between shapes: no shape hides part of another, so every polygon is the shape's whole outline


def shape_polygon(mask: np.ndarray) -> np.ndarray:
    """The outline of the one shape in a uint8 mask (>= 128 inside) as an [n, 2] float polygon in pixel coordinates,
    through the centres of its boundary pixels: filled back with cv2.fillPoly on truncated coordinates (what
    ultralytics' polygon2mask does) it gives the same pixels."""
    contours, _ = cv2.findContours((mask >= 128).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outline = max(contours, key=cv2.contourArea).reshape(-1, 2)
    return outline.astype(np.float32) + 0.5


def polygon_mask(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """A polygon in pixel coordinates filled into a bool [height, width] mask (coordinates truncated like ultralytics)."""
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.asarray(polygon, np.float64).astype(np.int32).reshape(-1, 1, 2)], 1)
    return mask.astype(bool)


def make_image(rng: np.random.Generator, width: int, height: int,
               max_objects: int) -> tuple[np.ndarray, list[tuple[int, np.ndarray, np.ndarray]]]:
    """One RGB image with 1..max_objects shapes that do not touch, and their (class, polygon [n, 2] pixels, bool mask)."""
    img = _texture(rng, height, width)
    labels: list[tuple[int, np.ndarray, np.ndarray]] = []
    taken = np.zeros((height, width), bool)
    short = min(width, height)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            s = int(rng.integers(max(8, short // 8), max(10, short // 3)))
            x, y = int(rng.integers(0, width - s)), int(rng.integers(0, height - s))
            if not taken[max(0, y - GAP) : y + s + GAP, max(0, x - GAP) : x + s + GAP].any():
                break
        else:
            continue
        cls = int(rng.integers(len(CLASSES)))
        mask = np.zeros((height, width), np.uint8)
        _draw(CLASSES[cls], mask, x, y, s)
        taken |= mask > 0
        colour = rng.integers(0, 256, 3).astype(np.float32)
        under = img[mask > 0].mean(axis=0)
        if np.abs(colour - under).sum() < 150:  # keep every shape visible against its background
            colour = 255 - under
        a = (mask.astype(np.float32) / 255)[..., None]
        img = img * (1 - a) + colour * a
        labels.append((cls, shape_polygon(mask), mask >= 128))
    return np.round(img).astype(np.uint8), labels


def yolo_segment_line(cls: int, polygon: np.ndarray, width: int, height: int) -> str:
    """A YOLO segment label line: class, then the polygon's x y pairs normalised to the image size."""
    xy = np.asarray(polygon, np.float64).reshape(-1, 2) / np.array([width, height], np.float64)
    return f"{cls} " + " ".join(f"{v:.6f}" for v in xy.clip(0, 1).ravel())


def write_segment_sample(out_dir: str | Path = SAMPLE_DIR, images: int = 250, imgsz: int = 160, val_fraction: float = 0.2,
                         max_objects: int = 4, seed: int = 0) -> Path:
    """Write images/{train,val}, labels/{train,val} (polygons) and data.yaml (landscape imgsz x 3/4 imgsz images) into
    out_dir atomically; a copy written with the same settings and version is reused. Returns the path of data.yaml."""
    spec = {"version": SAMPLE_VERSION, "images": images, "imgsz": imgsz, "val_fraction": val_fraction,
            "max_objects": max_objects, "seed": seed, "classes": list(CLASSES), "task": "segment"}

    def draw(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, list[str]]:
        img, labels = make_image(rng, width, height, max_objects)
        return img, [yolo_segment_line(c, poly, width, height) for c, poly, _ in labels]
    return write_yolo_sample(out_dir, spec, draw, yaml_head="task: segment\n")
    rng = np.random.default_rng(seed)
    width, height = imgsz, int(round(imgsz * 0.75))
    n_val = max(1, int(round(images * val_fraction)))
    counts = {"train": 0, "val": 0}
    with atomic_path(out_dir) as tmp:
        for i in range(images):
            split = "val" if i >= images - n_val else "train"
            img, labels = make_image(rng, width, height, max_objects)
            for sub in ("images", "labels"):
                (tmp / sub / split).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp / "images" / split / f"{i:04d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            lines = "".join(yolo_segment_line(c, poly, width, height) + "\n" for c, poly, _ in labels)
            (tmp / "labels" / split / f"{i:04d}.txt").write_text(lines)
            counts[split] += 1
        names = "".join(f"  {i}: {n}\n" for i, n in enumerate(CLASSES))
        # `path` is left out on purpose: ultralytics resolves train/val against the yaml's own folder.
        (tmp / "data.yaml").write_text(f"task: segment\ntrain: images/train\nval: images/val\nnames:\n{names}")
        (tmp / "sample.json").write_text(json.dumps({"spec": spec, "counts": counts, "size": [width, height]}, indent=2))
    return out_dir / "data.yaml"
