"""The offline pose sample: stick figures with 7 keypoints on the detection sample's textured backgrounds, in YOLO pose
label format (`class cx cy w h  x1 y1 v1 ...`, normalised), some keypoints occluded (v=1) or out of the frame (0 0 0)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from helpers.core.errors import WorkbookError
from helpers.core.paths import DATA, atomic_path
from helpers.tasks.detect.sample import _iou as box_iou
from helpers.tasks.detect.sample import _texture as texture  # one background generator for every generated sample

CLASSES = ("figure",)
# The figure faces the viewer: its left hand and foot are on the image's right. A horizontal flip turns a left limb
# into a right one, so ultralytics' flip augmentation swaps them through FLIP_IDX.
KEYPOINTS = ("head", "neck", "left_hand", "right_hand", "hip", "left_foot", "right_foot")
FLIP_IDX = (0, 1, 3, 2, 4, 6, 5)
SKELETON = ((0, 1), (1, 2), (1, 3), (1, 4), (4, 5), (4, 6))
# OKS sigmas: COCO's (pycocotools' per-keypoint values, ultralytics' OKS_SIGMA) for the matching body part, so an OKS
# on a figure tolerates what it tolerates on a person: head = nose, neck = shoulders, hands = wrists, hip = hips,
# feet = ankles. The generated labels are exact; the sigmas set how far a prediction may be, not annotator noise.
OKS_SIGMAS = (0.026, 0.079, 0.062, 0.062, 0.107, 0.089, 0.089)
SAMPLE_DIR = DATA / "pose_sample"
SAMPLE_VERSION = 2  # 2: data.yaml names the skeleton (the picture grid draws it)
MIN_LABELLED = 3  # keypoints inside the frame per figure: a figure with none would be ignored by pycocotools


def _figure(rng: np.random.Generator, height: float, hip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints [7, 2] (pixels) of one random pose of a figure `height` px tall, plus the elbow and knee
    points the drawing bends through [4, 2] (not labelled)."""
    tilt = rng.uniform(-0.25, 0.25)
    up = np.array([np.sin(tilt), -np.cos(tilt)])
    neck = hip + 0.3 * height * up
    head = neck + 0.14 * height * up
    pts = [head, neck]
    bends = []
    for side in (1, -1):  # left (image right), then right
        angle = rng.uniform(0.3, 2.8)  # from hanging down (0) to raised (pi)
        hand = neck + 0.3 * height * np.array([side * np.sin(angle), np.cos(angle)])
        bends.append((neck + hand) / 2 + rng.normal(0, 0.04 * height, 2))
        pts.append(hand)
    pts.append(hip)
    for side in (1, -1):
        angle = rng.uniform(0.08, 0.6)
        foot = hip + 0.42 * height * np.array([side * np.sin(angle), np.cos(angle)])
        bends.append((hip + foot) / 2 + np.array([side * rng.uniform(0, 0.05) * height, 0]))
        pts.append(foot)
    return np.array(pts, np.float32), np.array(bends, np.float32)


def _draw_figure(mask: np.ndarray, pts: np.ndarray, bends: np.ndarray, height: float) -> None:
    """Draw the head circle and the limbs (through their elbow/knee bends) into a uint8 mask."""
    thick = max(2, int(round(height / 28)))
    p = lambda v: tuple(int(round(c)) for c in v)  # noqa: E731
    cv2.circle(mask, p(pts[0]), max(3, int(round(0.08 * height))), 255, -1, cv2.LINE_AA)
    cv2.line(mask, p(pts[0]), p(pts[1]), 255, thick, cv2.LINE_AA)
    cv2.line(mask, p(pts[1]), p(pts[4]), 255, thick + 1, cv2.LINE_AA)
    for (a, b), bend in zip(((1, 2), (1, 3), (4, 5), (4, 6)), bends):
        cv2.line(mask, p(pts[a]), p(bend), 255, thick, cv2.LINE_AA)
        cv2.line(mask, p(bend), p(pts[b]), 255, thick, cv2.LINE_AA)


def make_image(rng: np.random.Generator, width: int, height: int,
               max_figures: int) -> tuple[np.ndarray, list[tuple[int, np.ndarray, np.ndarray]]]:
    """One RGB image with 1..max_figures stick figures and their labels (class, xyxy pixel box of the figure's part
    inside the frame, keypoints [7, 3]: x, y in pixels and v = 2 visible, 1 occluded by a crate, 0 outside the frame
    with x = y = 0)."""
    img = texture(rng, height, width)
    figures: list[tuple[int, np.ndarray, np.ndarray, float]] = []
    for _ in range(int(rng.integers(1, max_figures + 1))):
        for _attempt in range(30):
            size = float(rng.uniform(0.4, 0.85) * height)
            margin = 0.1 * size if rng.random() < 0.8 else -0.25 * size  # now and then partly out of the frame
            lo, hi = margin + 0.55 * size, height - margin - 0.45 * size  # head top .. feet around the hip
            hip = np.array([rng.uniform(margin + 0.3 * size, width - margin - 0.3 * size),
                            rng.uniform(min(lo, hi), max(lo, hi))], np.float32)
            pts, bends = _figure(rng, size, hip)
            inside = (pts[:, 0] >= 0) & (pts[:, 0] < width) & (pts[:, 1] >= 0) & (pts[:, 1] < height)
            mask = np.zeros((height, width), np.uint8)
            _draw_figure(mask, pts, bends, size)
            ys, xs = np.nonzero(mask)
            if inside.sum() < MIN_LABELLED or not len(xs):
                continue
            box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
            if all(box_iou(box, b) < 0.1 for _, b, _, _ in figures):
                break
        else:
            continue
        colour = rng.integers(0, 256, 3).astype(np.float32)
        under = img[mask > 0].mean(axis=0)
        if np.abs(colour - under).sum() < 200:  # keep every figure visible against its background
            colour = 255 - under
        a = (mask.astype(np.float32) / 255)[..., None]
        img = img * (1 - a) + colour * a
        kpts = np.concatenate([pts, np.where(inside, 2.0, 0.0)[:, None]], axis=1).astype(np.float32)
        kpts[~inside, :2] = 0.0
        figures.append((0, box, kpts, size))
    for _cls, _box, kpts, size in figures:  # crates hide a hand or a foot of some figures: v = 1 (labelled, not seen)
        if rng.random() < 0.25:
            k = int(rng.choice([2, 3, 5, 6]))
            if kpts[k, 2] == 2:
                half = max(4, int(0.1 * size))
                cx, cy = (int(round(v)) for v in kpts[k, :2])
                grey = rng.integers(60, 200, 3).astype(np.float32)
                img[max(0, cy - half):cy + half, max(0, cx - half):cx + half] = grey
                for _c, _b, other, _s in figures:
                    hidden = (other[:, 2] == 2) & (np.abs(other[:, 0] - cx) < half) & (np.abs(other[:, 1] - cy) < half)
                    other[hidden, 2] = 1.0
    return np.round(img).astype(np.uint8), [(c, b, k) for c, b, k, _ in figures]


def pose_line(cls: int, box: np.ndarray, kpts: np.ndarray, width: int, height: int) -> str:
    """A YOLO pose label line: class cx cy w h, then x y v per keypoint, normalised to the image size."""
    x1, y1, x2, y2 = (float(v) for v in box)
    head = f"{cls} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"
    return head + "".join(f" {x / width:.6f} {y / height:.6f} {int(v)}" for x, y, v in kpts)


def data_yaml_text(train: str = "images/train", val: str = "images/val") -> str:
    """The pose data.yaml: ultralytics reads kpt_shape, flip_idx and kpt_oks_sigmas (its val and its keypoint loss use
    them), the workbook's OKS metric reads the same sigmas and its pictures the skeleton."""
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(CLASSES))
    listing = lambda v: "[" + ", ".join(str(x) for x in v) + "]"  # noqa: E731
    # `path` is left out on purpose: ultralytics resolves train/val against the yaml's own folder.
    return (f"train: {train}\nval: {val}\nkpt_shape: [{len(KEYPOINTS)}, 3]\nflip_idx: {listing(FLIP_IDX)}\n"
            "# OKS sigmas: COCO's for the matching body part (head = nose, neck = shoulders, hands = wrists, hip = hips,\n"
            "# feet = ankles), see helpers/tasks/pose/sample.py\n"
            f"kpt_oks_sigmas: {listing(OKS_SIGMAS)}\nnames:\n{names}kpt_names:\n  0: {listing(KEYPOINTS)}\n"
            "# the lines a picture draws between keypoints (index pairs; the workbook's pictures read it, training does not)\n"
            f"skeleton: {listing(listing(pair) for pair in SKELETON)}\n")


def write_pose_sample(out_dir: str | Path = SAMPLE_DIR, images: int = 250, imgsz: int = 160, val_fraction: float = 0.2,
                      max_figures: int = 3, seed: int = 0) -> Path:
    """Write images/{train,val}, labels/{train,val} and data.yaml (landscape imgsz x 3/4 imgsz images) as one folder
    renamed into place when whole; reuse a matching earlier copy (sample.json: the spec and its version). Returns the
    path of data.yaml."""
    out_dir = Path(out_dir)
    if images < 2:
        raise WorkbookError(f"images={images} is too few for a train and a val split; use images >= 2.")
    spec = {"version": SAMPLE_VERSION, "images": images, "imgsz": imgsz, "val_fraction": val_fraction,
            "max_figures": max_figures, "seed": seed, "classes": list(CLASSES), "keypoints": list(KEYPOINTS)}
    marker = out_dir / "sample.json"
    if marker.exists() and json.loads(marker.read_text()).get("spec") == spec and (out_dir / "data.yaml").exists():
        return out_dir / "data.yaml"
    rng = np.random.default_rng(seed)
    width, height = imgsz, int(round(imgsz * 0.75))
    n_val = max(1, int(round(images * val_fraction)))
    counts = {"train": 0, "val": 0, "figures": 0, "occluded": 0, "outside": 0}
    with atomic_path(out_dir) as tmp:
        for i in range(images):
            split = "val" if i >= images - n_val else "train"
            img, labels = make_image(rng, width, height, max_figures)
            for sub in ("images", "labels"):
                (tmp / sub / split).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp / "images" / split / f"{i:04d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            (tmp / "labels" / split / f"{i:04d}.txt").write_text("".join(pose_line(c, b, k, width, height) + "\n"
                                                                         for c, b, k in labels))
            counts[split] += 1
            counts["figures"] += len(labels)
            counts["occluded"] += int(sum((k[:, 2] == 1).sum() for _, _, k in labels))
            counts["outside"] += int(sum((k[:, 2] == 0).sum() for _, _, k in labels))
        (tmp / "data.yaml").write_text(data_yaml_text())
        (tmp / "sample.json").write_text(json.dumps({"spec": spec, "counts": counts, "size": [width, height]}, indent=2))
    return out_dir / "data.yaml"
