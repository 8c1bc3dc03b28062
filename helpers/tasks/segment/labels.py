"""YOLO-format segmentation data: a data.yaml whose label files hold one polygon per object (`class x1 y1 x2 y2 ...`),
read into the masks pycocotools' segm evaluation needs; detection labels (plain boxes) are refused in one sentence."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from helpers.core.errors import WorkbookError
from helpers.tasks.detect.labels import DetectionSplit, image_size, label_path, read_data_yaml, split_images
from helpers.tasks.segment.metric import SegmentTruth


@dataclass
class SegmentationSplit(DetectionSplit):
    """The images of one split with their labelled masks (original pixels); subsets as DetectionSplit's (stratified)."""

    truth: list[SegmentTruth]


def parse_polygons(label_file: Path, data_yaml: str | Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """Class ids and normalised [n, 2] polygons of one label file; a box line ('class cx cy w h') or an odd coordinate
    count stops in one sentence naming the file and the fix."""
    classes, polygons = [], []
    for number, line in enumerate(label_file.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 5:
            raise WorkbookError(f"Label file {label_file} (of {data_yaml}) has a detection box on line {number} ('class cx cy "
                                "w h'), but task: segment needs one polygon per object ('class x1 y1 x2 y2 x3 y3 ...'); give "
                                "the data set's segment labels, or set task: detect for box labels.")
        if len(parts) < 7 or len(parts) % 2 == 0:
            raise WorkbookError(f"Label file {label_file} line {number} has {len(parts) - 1} coordinates, not an even number of "
                                "at least 6; write 'class x1 y1 x2 y2 x3 y3 ...' (normalised polygon points) per object.")
        classes.append(float(parts[0]))
        polygons.append(np.asarray(parts[1:], np.float64).reshape(-1, 2))
    return np.asarray(classes, np.float64), polygons


def rasterize(polygons: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """Normalised polygons -> bool masks [n, height, width] (cv2.fillPoly on truncated pixel coordinates, as ultralytics)."""
    masks = np.zeros((len(polygons), height, width), np.uint8)
    for m, poly in zip(masks, polygons):
        pts = (poly * np.array([width, height])).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(m, [pts], 1)
    return masks.astype(bool)


def read_segment_split(data_yaml: str | Path, split: str = "val", num_classes: int | None = None) -> SegmentationSplit:
    """Images, polygon labels and their masks of one split; class ids outside the data's (or the model's) classes and
    box-only labels stop in one sentence; an image without a label file counts as background (one note)."""
    data = read_data_yaml(data_yaml)
    names = data["names"]
    nc = len(names) if num_classes is None else int(num_classes)
    paths = split_images(data, split, data_yaml)
    truth, unlabelled = [], []
    for p in paths:
        h, w = image_size(p)
        lp = label_path(p)
        classes, polygons = (np.zeros(0), []) if not lp.exists() else parse_polygons(lp, data_yaml)
        if not lp.exists():
            unlabelled.append(p)
        bad = [int(c) for c in classes if c < 0 or c >= nc or c != int(c)]
        if bad:
            whose = "the model's" if num_classes is not None else f"{data_yaml}'s"
            raise WorkbookError(f"Label file {lp} uses class ids {sorted(set(bad))}, outside {whose} {nc} classes (0..{nc - 1}); "
                                "fix the labels or use a model trained on these classes.")
        boxes = np.array([[q[:, 0].min() * w, q[:, 1].min() * h, q[:, 0].max() * w, q[:, 1].max() * h] for q in polygons],
                         np.float32).reshape(-1, 4)
        truth.append(SegmentTruth(boxes, classes.astype(np.int64), rasterize(polygons, h, w), h, w))
    notes = []
    if unlabelled:
        notes.append(f"{len(unlabelled)} of {len(paths)} {split} images have no label file (e.g. {unlabelled[0].name}); "
                     "they count as background (no objects).")
    return SegmentationSplit(paths, truth, names, notes)
