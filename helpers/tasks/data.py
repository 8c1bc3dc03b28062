"""The bundled sample (scikit-learn digits as PNGs), labelled image folders and calibration lists."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from helpers.core.errors import WorkbookError
from helpers.core.lists import write_image_list
from helpers.core.paths import REPO, SAMPLE_DATA, Run, atomic_path
from helpers.tasks import sampling
from helpers.tasks.detect.postprocess import letterbox
from helpers.tasks.family import data_task, in_family, member
from helpers.tasks.identify import recorded_data, run_task
from helpers.tasks.preprocess import IMAGE_SUFFIXES, list_images, match_channels, read_image

# The digits are drawn amber on navy rather than grey so that a red/blue channel swap is a real
# input change: notebook 30 uses it to show what the tutorial's discarded cvtColor costs.
FOREGROUND_RGB = np.array([255, 176, 32], np.float32)
BACKGROUND_RGB = np.array([16, 32, 96], np.float32)
SAMPLE_VERSION = 1


@dataclass
class LabelledImages:
    """Image paths with integer labels; classes[i] names label i (sorted sub-folder names)."""

    paths: list[Path]
    labels: np.ndarray
    classes: list[str]
    root: Path = field(default=Path("."))
    letterbox: bool = False  # detection images: fitted into size x size with grey padding, not centre-cropped
    objects: list | None = None  # detection images: per image, the class ids of its boxes (labels then count them)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def classes_of(self) -> list[list[int]]:
        """Per image, the class ids it holds: its label, or a detector's classes of its boxes."""
        return [list(o) for o in self.objects] if self.objects is not None else [[int(x)] for x in self.labels]

    def subset(self, n: int | None, seed: int = 0, stratified: bool = True) -> "LabelledImages":
        """n images drawn deterministically (all when n is None or too big). Stratified: spread over the classes and
        ordered round-robin across them, so the first k hold k different classes (helpers.tasks.sampling);
        otherwise the plain draw: a seeded random n in folder order (all: the folder order)."""
        if stratified:
            order = sampling.stratified(self.classes_of, n, seed, self.paths)
        elif n is None or n >= len(self):
            return self
        else:
            order = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        objects = [self.objects[i] for i in order] if self.objects is not None else None
        return LabelledImages([self.paths[i] for i in order], self.labels[order], self.classes, self.root, self.letterbox,
                              objects)

    def class_counts(self) -> dict[str, int]:
        """Per class name, how many of these images hold it (a detector's: images with a box of it)."""
        return sampling.class_counts(self.classes_of, self.classes)

    def load(self, size: int, channels: int = 3) -> np.ndarray:
        """All images as one uint8 NHWC array: RGB, or grayscale when channels is 1."""
        if not self.paths:
            return np.zeros((0, size, size, channels), np.uint8)
        if self.letterbox:
            return match_channels(np.stack([letterbox(read_rgb_full(p), size)[0] for p in self.paths]), channels)
        return np.stack([read_image(p, size, channels) for p in self.paths])


def read_rgb_full(path: str | Path) -> np.ndarray:
    """An image file as uint8 RGB at its own size (detection images are letterboxed, not cropped)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise WorkbookError(f"Image {path} cannot be read; check the file exists and is a valid image.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def detect_yaml(data_dir: str | Path) -> Path | None:
    """The data.yaml of a YOLO detection data set given as the file itself or its folder; None otherwise."""
    path = Path(data_dir).expanduser()
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return path
    return path / "data.yaml" if (path / "data.yaml").is_file() else None


def load_detect_split(data_yaml: Path, split: str) -> LabelledImages:
    """The images of one split of a YOLO detection, segmentation or pose data set (labels: objects per image, read as
    the data's task reads them), letterboxed when loaded."""
    s = member(data_task(data_yaml)).read_split(data_yaml, split)
    counts = np.asarray([len(t.classes) for t in s.truth], np.int64)
    return LabelledImages(list(s.paths), counts, list(s.names), data_yaml.parent, letterbox=True,
                          objects=[[int(c) for c in t.classes] for t in s.truth])


def write_sample(out_dir: str | Path = SAMPLE_DATA, size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> Path:
    """Write the digits as RGB PNGs in train/<class>/ and val/<class>/; reuse a matching earlier copy."""
    from sklearn.datasets import load_digits  # optional and slow: only when the digits sample is written
    from sklearn.model_selection import train_test_split

    out_dir = Path(out_dir)
    spec = {"version": SAMPLE_VERSION, "size": size, "val_fraction": val_fraction, "seed": seed}
    marker = out_dir / "sample.json"
    if marker.exists() and json.loads(marker.read_text()).get("spec") == spec:
        return out_dir

    digits = load_digits()
    idx = np.arange(len(digits.target))
    train_idx, val_idx = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=digits.target)
    with atomic_path(out_dir) as tmp:
        for split, ids in (("train", train_idx), ("val", val_idx)):
            for i in sorted(ids):
                label = int(digits.target[i])
                alpha = cv2.resize((digits.images[i] / 16.0).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
                alpha = np.clip(alpha, 0, 1)[..., None]
                rgb = BACKGROUND_RGB * (1 - alpha) + FOREGROUND_RGB * alpha
                folder = tmp / split / str(label)
                folder.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(np.round(rgb).astype(np.uint8), cv2.COLOR_RGB2BGR))
        (tmp / "labels.txt").write_text("\n".join(str(c) for c in range(10)) + "\n")
        counts = {"train": len(train_idx), "val": len(val_idx)}
        about = {"spec": spec, "counts": counts, "source": "sklearn.datasets.load_digits"}
        (tmp / "sample.json").write_text(json.dumps(about, indent=2))
    return out_dir


def load_folder(root: str | Path) -> LabelledImages:
    """Load a labelled folder laid out as <root>/<class>/<image>; classes sorted by name."""
    root = Path(root).expanduser()
    if not root.exists():
        raise WorkbookError(f"Image folder {root} does not exist; pass a folder laid out as <folder>/<class>/<image>.")
    if not root.is_dir():
        raise WorkbookError(f"Image folder {root} is a file; pass a folder laid out as <folder>/<class>/<image>.")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        loose = [p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        if loose:
            raise WorkbookError(
                f"Image folder {root} has images but no class sub-folders; move each image into <folder>/<class name>/."
            )
        raise WorkbookError(f"Image folder {root} is empty; put images in one sub-folder per class (<folder>/<class>/<image>).")
    paths, labels = [], []
    for label, cdir in enumerate(class_dirs):
        imgs = list_images(cdir)
        paths += imgs
        labels += [label] * len(imgs)
    if not paths:
        raise WorkbookError(
            f"Image folder {root} has class sub-folders but no images ({', '.join(IMAGE_SUFFIXES)}); add images to them."
        )
    return LabelledImages(paths, np.asarray(labels, np.int64), [c.name for c in class_dirs], root)


def load_split(data_dir: str | Path, split: str) -> LabelledImages:
    """Load data_dir/<split> (train or val) of an ultralytics-style classification folder, or of a YOLO
    detection data set (data_dir = its data.yaml or the folder holding it)."""
    data_dir = Path(data_dir).expanduser()
    if detect_yaml(data_dir) is not None:
        return load_detect_split(detect_yaml(data_dir), split)
    if not (data_dir / split).is_dir():
        if not data_dir.exists():
            raise WorkbookError(f"Data folder {data_dir} does not exist; pass data_dir= a folder with train/ and val/ "
                                "sub-folders.")
        raise WorkbookError(f"Data folder {data_dir} has no {split}/ sub-folder; lay it out as "
                            f"{data_dir}/{split}/<class>/<image>.")
    return load_folder(data_dir / split)


def read_labels(data_dir: str | Path, classes: list[str]) -> list[str]:
    """Human-readable labels: data_dir/labels.txt when present, else the class folder names."""
    f = Path(data_dir) / "labels.txt"
    if f.exists():
        names = [line.strip() for line in f.read_text().splitlines() if line.strip()]
        if len(names) == len(classes):
            return names
    return list(classes)


def write_calibration_list(images: list[Path] | LabelledImages, out_file: str | Path, size: int | None = None,
                           channels: int = 3) -> Path:
    """Write a toolkit dataset list with one image per line, atomically: the absolute path, or where a path
    has spaces or non-ASCII characters a plain name relative to the list's folder (helpers.core.lists).
    Detection images (letterbox) with a size are written letterboxed to <list>_images/ and listed from there,
    so calibration sees what inference sees (the toolkit would stretch them); for a 1-channel model (channels=1)
    with a size, the images are written there as the model's grayscale input."""
    paths = images.paths if isinstance(images, LabelledImages) else [Path(p) for p in images]
    out_file = Path(out_file)
    if isinstance(images, LabelledImages) and images.letterbox and size and paths:
        paths = write_letterboxed(images, out_file.with_name(out_file.stem + "_images"), size, channels)
    elif channels == 1 and size and paths:
        paths = write_letterboxed(LabelledImages(list(paths), np.zeros(len(paths), np.int64), []),
                                  out_file.with_name(out_file.stem + "_images"), size, channels)
    if not paths:
        raise WorkbookError(f"Calibration list {out_file} would be empty; give at least one image (calib_images >= 1).")
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise WorkbookError(f"Calibration image {missing[0]} does not exist ({len(missing)} missing); fix the image list or "
                            "data_dir.")
    broken = [p for p in paths if cv2.imread(str(p), cv2.IMREAD_REDUCED_GRAYSCALE_8) is None]
    if broken:
        raise WorkbookError(f"Calibration image {broken[0]} cannot be decoded as an image ({len(broken)} such file(s)); "
                            "replace or remove it from the calibration images.")
    return write_image_list(paths, out_file)


def write_letterboxed(images: LabelledImages, folder: Path, size: int, channels: int = 3) -> list[Path]:
    """The images as the model sees them (a detector's letterboxed to size x size, a classifier's resized and
    cropped; grayscale for channels=1) as PNGs in folder (replaced whole); returns their paths."""
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        for i, canvas in enumerate(images.load(size, channels)):
            cv2.imwrite(str(tmp / f"{i:04d}.png"), canvas if channels == 1 else cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    return sorted(folder.glob("*.png"))


GRAY_SHAPES = ("circle", "cross", "square", "triangle")


def write_gray_shapes(out_dir: str | Path, size: int = 32, train_per_class: int = 60, val_per_class: int = 50,
                      seed: int = 0) -> Path:
    """A grayscale labelled folder (single-channel PNGs of four shapes at random places, sizes and
    brightness, with noise) laid out <out_dir>/{train,val}/<shape>/; reused when its spec matches."""
    out_dir = Path(out_dir)
    spec = {"kind": "gray_shapes", "size": size, "train": train_per_class, "val": val_per_class, "seed": seed}
    marker = out_dir / "sample.json"
    if marker.exists() and json.loads(marker.read_text()).get("spec") == spec:
        return out_dir
    rng = np.random.default_rng(seed)
    with atomic_path(out_dir) as tmp:
        for split, count in (("train", train_per_class), ("val", val_per_class)):
            for shape in GRAY_SHAPES:
                folder = tmp / split / shape
                folder.mkdir(parents=True)
                for i in range(count):
                    cv2.imwrite(str(folder / f"{i:04d}.png"), draw_shape(shape, size, rng))
        (tmp / "sample.json").write_text(json.dumps({"spec": spec}, indent=2))
    return out_dir


def draw_shape(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One uint8 HxW grayscale image: a bright shape on a darker noisy background."""
    bg, fg = int(rng.integers(0, 80)), int(rng.integers(170, 256))
    img = np.full((size, size), bg, np.uint8)
    r = int(rng.integers(size // 5, size // 3))
    cx, cy = (int(v) for v in rng.integers(r + 1, size - r - 1, 2))
    thick = max(1, size // 12)
    if shape == "circle":
        cv2.circle(img, (cx, cy), r, fg, -1)
    elif shape == "square":
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), fg, -1)
    elif shape == "triangle":
        cv2.fillPoly(img, [np.array([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], np.int32)], fg)
    else:
        cv2.line(img, (cx - r, cy - r), (cx + r, cy + r), fg, thick)
        cv2.line(img, (cx - r, cy + r), (cx + r, cy - r), fg, thick)
    noise = rng.normal(0, 8, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def resolve_data_dir(data_dir: str | Path, run: Run | None = None) -> Path:
    """The labelled image folder of a run: "" = the bundled digits sample (written on first use), or for a
    detection run (notebook 10 recorded task: detect) the data.yaml notebook 10 used."""
    if not str(data_dir).strip():
        if run is not None and in_family(run_task(run)) and recorded_data(run) is not None:
            return recorded_data(run).resolve()
        return write_sample().resolve()
    path = Path(data_dir).expanduser()
    if not path.is_absolute():
        path = REPO / path
    load_split(path, "val")  # clear error when the layout is wrong
    return path.resolve()
