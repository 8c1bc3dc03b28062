"""The offline detection sample: coloured shapes on textured backgrounds in YOLO label format (the detector
trained on it lives in helpers.steps.export.detect_sample)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from helpers.core.errors import WorkbookError
from helpers.core.paths import DATA, atomic_path, write_text_atomic

CLASSES = ("circle", "square", "triangle", "cross")
SAMPLE_DIR = DATA / "shapes"
SAMPLE_VERSION = 1


# ---------------------------------------------------------------- the generated data set

def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random background: low-frequency colour blotches, a few stripes and pixel noise."""
    grid = rng.integers(40, 215, (rng.integers(3, 7), rng.integers(3, 7), 3)).astype(np.float32)
    img = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    period = rng.uniform(6, 20)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    img += (stripes * rng.uniform(8, 25))[..., None]
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255)


def _draw(shape: str, mask: np.ndarray, x: int, y: int, s: int) -> None:
    """Draw one filled shape of size s with its top-left corner at (x, y) into a uint8 mask."""
    if shape == "circle":
        cv2.circle(mask, (x + s // 2, y + s // 2), s // 2, 255, -1, cv2.LINE_AA)
    elif shape == "square":
        cv2.rectangle(mask, (x, y), (x + s - 1, y + s - 1), 255, -1)
    elif shape == "triangle":
        pts = np.array([[x + s // 2, y], [x, y + s - 1], [x + s - 1, y + s - 1]], np.int32)
        cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA)
    else:  # cross
        t = max(2, s // 4)
        c = s // 2
        cv2.rectangle(mask, (x, y + c - t // 2), (x + s - 1, y + c + (t - t // 2) - 1), 255, -1)
        cv2.rectangle(mask, (x + c - t // 2, y), (x + c + (t - t // 2) - 1, y + s - 1), 255, -1)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def make_image(rng: np.random.Generator, width: int, height: int,
               max_objects: int) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One RGB image with 1..max_objects shapes and their (class, xyxy pixel box) labels."""
    img = _texture(rng, height, width)
    labels: list[tuple[int, np.ndarray]] = []
    short = min(width, height)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            s = int(rng.integers(max(8, short // 8), max(10, short // 3)))
            x, y = int(rng.integers(0, width - s)), int(rng.integers(0, height - s))
            box = np.array([x, y, x + s, y + s], np.float32)
            if all(_iou(box, b) < 0.05 for _, b in labels):
                break
        else:
            continue
        cls = int(rng.integers(len(CLASSES)))
        mask = np.zeros((height, width), np.uint8)
        _draw(CLASSES[cls], mask, x, y, s)
        ys, xs = np.nonzero(mask)
        tight = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
        colour = rng.integers(0, 256, 3).astype(np.float32)
        under = img[mask > 0].mean(axis=0)
        if np.abs(colour - under).sum() < 150:  # keep every shape visible against its background
            colour = 255 - under
        a = (mask.astype(np.float32) / 255)[..., None]
        img = img * (1 - a) + colour * a
        labels.append((cls, tight))
    return np.round(img).astype(np.uint8), labels


def yolo_line(cls: int, box: np.ndarray, width: int, height: int) -> str:
    """A YOLO label line: class cx cy w h, normalised to the image size."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return f"{cls} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"


Draw = Callable[[np.random.Generator, int, int], tuple[np.ndarray, list[str]]]  # (rng, width, height) -> image, label lines


def write_yolo_sample(out_dir: str | Path, spec: dict, draw: Draw, yaml_head: str = "") -> Path:
    """Write a generated YOLO data set: images/{train,val}, labels/{train,val} and data.yaml (landscape imgsz x 3/4 imgsz
    images, the last val_fraction of them val), atomically; a copy written with the same spec is reused. `draw(rng, w, h)`
    makes one RGB image and its label lines, so detect, segment and pose samples share one writer. Returns data.yaml."""
    out_dir = Path(out_dir)
    images = int(spec["images"])
    if images < 2:
        raise WorkbookError(f"images={images} is too few for a train and a val split; use images >= 2.")
    marker = out_dir / "sample.json"
    if marker.exists() and json.loads(marker.read_text()).get("spec") == spec and (out_dir / "data.yaml").exists():
        return out_dir / "data.yaml"
    rng = np.random.default_rng(spec["seed"])
    width, height = spec["imgsz"], int(round(spec["imgsz"] * 0.75))
    n_val = max(1, int(round(images * spec["val_fraction"])))
    counts = {"train": 0, "val": 0}
    with atomic_path(out_dir) as tmp:
        for i in range(images):
            split = "val" if i >= images - n_val else "train"
            img, lines = draw(rng, width, height)
            for sub in ("images", "labels"):
                (tmp / sub / split).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp / "images" / split / f"{i:04d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            (tmp / "labels" / split / f"{i:04d}.txt").write_text("".join(line + "\n" for line in lines))
            counts[split] += 1
        names = "".join(f"  {i}: {n}\n" for i, n in enumerate(spec["classes"]))
        # `path` is left out on purpose: ultralytics resolves train/val against the yaml's own folder.
        (tmp / "data.yaml").write_text(f"{yaml_head}train: images/train\nval: images/val\nnames:\n{names}")
        (tmp / "sample.json").write_text(json.dumps({"spec": spec, "counts": counts, "size": [width, height]}, indent=2))
    return out_dir / "data.yaml"


def write_detect_sample(out_dir: str | Path = SAMPLE_DIR, images: int = 250, imgsz: int = 160, val_fraction: float = 0.2,
                        max_objects: int = 4, seed: int = 0) -> Path:
    """Write images/{train,val}, labels/{train,val} and data.yaml (landscape imgsz x 3/4 imgsz images);
    reuse a matching earlier copy. Returns the path of data.yaml."""
    spec = {"version": SAMPLE_VERSION, "images": images, "imgsz": imgsz, "val_fraction": val_fraction,
            "max_objects": max_objects, "seed": seed, "classes": list(CLASSES)}

    def draw(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, list[str]]:
        img, labels = make_image(rng, width, height, max_objects)
        return img, [yolo_line(c, b, width, height) for c, b in labels]
    return write_yolo_sample(out_dir, spec, draw)
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
            lines = "".join(yolo_line(c, b, width, height) + "\n" for c, b in labels)
            (tmp / "labels" / split / f"{i:04d}.txt").write_text(lines)
            counts[split] += 1
        names = "".join(f"  {i}: {n}\n" for i, n in enumerate(CLASSES))
        # `path` is left out on purpose: ultralytics resolves train/val against the yaml's own folder.
        (tmp / "data.yaml").write_text(f"train: images/train\nval: images/val\nnames:\n{names}")
        (tmp / "sample.json").write_text(json.dumps({"spec": spec, "counts": counts, "size": [width, height]}, indent=2))
    return out_dir / "data.yaml"


def write_data_yaml(path: Path, train: str, val: str, names: list[str]) -> Path:
    """A minimal ultralytics data.yaml with relative train/val folders."""
    body = "".join(f"  {i}: {n}\n" for i, n in enumerate(names))
    return write_text_atomic(path, f"train: {train}\nval: {val}\nnames:\n{body}")
