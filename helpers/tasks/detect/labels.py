"""YOLO-format detection data: a data.yaml (train:, val:, names:) with images/ and labels/ folders."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import yaml

from helpers.core.errors import WorkbookError
from helpers.tasks import sampling
from helpers.tasks.detect.metric import GroundTruth

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class DetectionSplit:
    """The images of one split with their labelled boxes (original pixels); notes are one sentence
    each about what was tolerated (e.g. images without a label file, counted as background). The segment and pose
    splits extend it (their truth adds masks or keypoints to the boxes and classes)."""

    paths: list[Path]
    truth: list[GroundTruth]
    names: list[str]
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def instances(self) -> int:
        return int(sum(len(t.classes) for t in self.truth))

    def subset(self, n: int | None, seed: int = 0, stratified: bool = True) -> "DetectionSplit":
        """n images (all when n is None or larger). Stratified: spread over the classes of their boxes and ordered
        round-robin across them, so every class present comes early (helpers.tasks.sampling); otherwise the first n
        in file order."""
        if stratified:
            order = sampling.stratified([t.classes for t in self.truth], n, seed, self.paths)
            return replace(self, paths=[self.paths[i] for i in order], truth=[self.truth[i] for i in order])
        if n is None or n >= len(self):
            return self
        return replace(self, paths=self.paths[:n], truth=self.truth[:n])


def read_data_yaml(data_yaml: str | Path) -> dict:
    """The parsed data.yaml with `names` as a list and train/val resolved to absolute folders."""
    data_yaml = Path(data_yaml).expanduser()
    if not data_yaml.is_file():
        raise WorkbookError(f"Detection data file {data_yaml} does not exist; pass a data.yaml with train:, val: and names:.")
    data = yaml.safe_load(data_yaml.read_text()) or {}
    missing = [k for k in ("val", "names") if k not in data]
    if missing:
        raise WorkbookError(f"Detection data file {data_yaml} has no {' or '.join(missing)} entry; add e.g. 'val: images/val' "
                            "and 'names: {0: cat}'.")
    names = data["names"]
    data["names"] = [str(names[i]) for i in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]
    root = Path(data.get("path") or data_yaml.parent)
    root = root if root.is_absolute() else (data_yaml.parent / root)
    for key in ("train", "val"):
        if isinstance(data.get(key), str):
            folder = Path(data[key])
            data[key] = (folder if folder.is_absolute() else root / folder).resolve()
    return data


def label_path(image: Path) -> Path:
    """ultralytics' convention: the last /images/ folder of the path becomes /labels/, suffix .txt."""
    parts = list(image.parts)
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")


def split_images(data: dict, split: str, data_yaml: str | Path) -> list[Path]:
    """The image files of one split of a parsed YOLO data.yaml (its `split:` folder, searched recursively), sorted; a
    missing or empty folder stops in one sentence. Shared by the detect, segment and pose readers."""
    folder = data.get(split)
    if not isinstance(folder, Path) or not folder.is_dir():
        raise WorkbookError(f"The {split} images folder {folder} of {data_yaml} does not exist; fix '{split}:' in the data.yaml.")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise WorkbookError(f"The {split} images folder {folder} of {data_yaml} has no images ({', '.join(IMAGE_SUFFIXES)}); "
                            f"add images or fix '{split}:'.")
    return paths


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of a labelled image, which its normalised labels are scaled by; one sentence when unreadable."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise WorkbookError(f"Image {path} cannot be read; replace or remove it.")
    return img.shape[:2]


def read_split(data_yaml: str | Path, split: str = "val", num_classes: int | None = None) -> DetectionSplit:
    """Images and labels of one split. Raises WorkbookError for class ids outside the data's (or, when
    given, the model's) classes; an image without a label file counts as background (one note)."""
    data = read_data_yaml(data_yaml)
    names = data["names"]
    nc = len(names) if num_classes is None else int(num_classes)
    paths = split_images(data, split, data_yaml)
    truth, unlabelled, bad = [], [], []
    for p in paths:
        h, w = image_size(p)
        lp = label_path(p)
        rows = np.zeros((0, 5), np.float32)
        if not lp.exists():
            unlabelled.append(p)
        else:
            text = [line.split() for line in lp.read_text().splitlines() if line.strip()]
            if any(len(r) != 5 for r in text):
                raise WorkbookError(f"Label file {lp} has a line that is not 'class cx cy w h' (5 numbers); "
                                    "detection labels only (no segments).")
            rows = np.asarray(text, np.float32).reshape(-1, 5)
            for c in rows[:, 0]:
                if c < 0 or c >= nc or c != int(c):
                    bad.append((lp, int(c)))
        cx, cy, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1).astype(np.float32)
        truth.append(GroundTruth(boxes, rows[:, 0].astype(np.int64), h, w))
    if bad:
        ids = sorted({c for _, c in bad})
        whose = "the model's" if num_classes is not None else f"{data_yaml}'s"
        raise WorkbookError(
            f"{len(bad)} labels in {len({p for p, _ in bad})} files (e.g. {bad[0][0]}) use class ids {ids}, outside {whose} "
            f"{nc} classes (0..{nc - 1}); fix the labels or use a model trained on these classes."
        )
    notes = []
    if unlabelled:
        notes.append(f"{len(unlabelled)} of {len(paths)} {split} images have no label file (e.g. {unlabelled[0].name}); "
                     "they count as background (no objects).")
    return DetectionSplit(paths, truth, names, notes)
