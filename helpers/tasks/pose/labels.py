"""YOLO pose data: a data.yaml with kpt_shape (flip_idx, kpt_oks_sigmas, skeleton optional) whose label lines are
`class cx cy w h  x1 y1 v1 ...` (normalised), and the check that a model's keypoints match it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from helpers.core.errors import WorkbookError
from helpers.tasks.detect.labels import DetectionSplit, image_size, label_path, read_data_yaml, split_images
from helpers.tasks.pose.metric import PoseTruth

# pycocotools' and ultralytics' sigmas of COCO's 17 person keypoints (nose, eyes, ears, shoulders, elbows, wrists, hips,
# knees, ankles)
COCO_SIGMAS = (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087,
               0.089, 0.089)


@dataclass
class PoseSplit(DetectionSplit):
    """The images of one split with their labelled figures (original pixels), the keypoint shape and the OKS sigmas
    every pose metric of it uses; subsets as DetectionSplit's (stratified), keeping kpt_shape and sigmas."""

    truth: list[PoseTruth]
    kpt_shape: tuple[int, int] = (0, 3)
    sigmas: list[float] = field(default_factory=list)


def read_pose_yaml(data_yaml: str | Path) -> dict:
    """The parsed data.yaml (as the detection task reads it) with kpt_shape as a (K, ndim) tuple, flip_idx and
    kpt_oks_sigmas checked against K, and `sigmas`: the ones pose mAP uses (oks_sigmas)."""
    data = read_data_yaml(data_yaml)
    shape = data.get("kpt_shape")
    if shape is None:
        raise WorkbookError(f"Pose data file {data_yaml} has no kpt_shape entry; add 'kpt_shape: [K, 3]' (K keypoints, each "
                            "x, y, visibility; [K, 2] without visibility).")
    if not (isinstance(shape, (list, tuple)) and len(shape) == 2 and all(isinstance(v, int) for v in shape)
            and shape[0] >= 1 and shape[1] in (2, 3)):
        raise WorkbookError(f"kpt_shape {shape!r} in {data_yaml} is not [K, 2] or [K, 3]; write e.g. 'kpt_shape: [17, 3]'.")
    k = shape[0]
    data["kpt_shape"] = (int(shape[0]), int(shape[1]))
    flip = data.get("flip_idx")
    if flip is not None and sorted(flip) != list(range(k)):
        raise WorkbookError(f"flip_idx {flip} in {data_yaml} is not a reordering of the {k} keypoints 0..{k - 1}; list, for each "
                            "keypoint, the one it becomes in a mirrored image (left and right swapped).")
    given = data.get("kpt_oks_sigmas")
    if given is not None and (len(np.ravel(given)) != k or not np.all(np.asarray(given, np.float64) > 0)):
        raise WorkbookError(f"kpt_oks_sigmas {given} in {data_yaml} must be {k} positive numbers, one per keypoint; fix it or "
                            "remove it (then the default applies).")
    data["sigmas"] = oks_sigmas(data)
    data["skeleton"] = skeleton_of(data, data_yaml)
    return data


def skeleton_of(data: dict, data_yaml: str | Path = "data.yaml") -> list[tuple[int, int]] | None:
    """The data.yaml's optional `skeleton` (pairs of keypoint indices, the lines pictures draw between keypoints) checked
    against kpt_shape; None when it gives none (pictures then draw the points alone)."""
    given, k = data.get("skeleton"), data["kpt_shape"][0]
    if given is None:
        return None
    pairs = given if isinstance(given, (list, tuple)) else [given]
    if not all(isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(i, int) and 0 <= i < k for i in p) for p in pairs):
        raise WorkbookError(f"skeleton {given!r} in {data_yaml} is not a list of keypoint index pairs within 0..{k - 1}; write "
                            "e.g. 'skeleton: [[0, 1], [1, 2]]' or remove it.")
    return [(int(a), int(b)) for a, b in pairs]


def oks_sigmas(data: dict) -> list[float]:
    """The OKS sigmas of a pose data set, by ultralytics' val rule so both score alike: its kpt_oks_sigmas, else COCO's
    for kpt_shape [17, 3], else 1/K for every keypoint."""
    k, ndim = data["kpt_shape"]
    if data.get("kpt_oks_sigmas") is not None:
        return [float(s) for s in np.ravel(data["kpt_oks_sigmas"])]
    return list(COCO_SIGMAS) if (k, ndim) == (17, 3) else [1.0 / k] * k


def parse_label(text: str, width: int, height: int, kpt_shape: Sequence[int],
                where: Path | str = "label") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A pose label file's text -> class ids [N], xyxy boxes [N, 4] and keypoints [N, K, 3] in pixels (v = 0 for an
    unlabelled point; with ndim 2 a point is labelled unless negative, as ultralytics reads it)."""
    k, ndim = int(kpt_shape[0]), int(kpt_shape[1])
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if any(len(r) != 5 + k * ndim for r in rows):
        got = sorted({len(r) for r in rows if len(r) != 5 + k * ndim})
        kind = "detection labels (class cx cy w h)" if got == [5] else f"{got} numbers"
        raise WorkbookError(f"Label file {where} has {kind} where kpt_shape [{k}, {ndim}] needs {5 + k * ndim} numbers per line "
                            f"(class cx cy w h, then x y{' v' if ndim == 3 else ''} per keypoint); fix the labels or kpt_shape.")
    a = np.asarray(rows, np.float32).reshape(-1, 5 + k * ndim)
    cx, cy, bw, bh = a[:, 1] * width, a[:, 2] * height, a[:, 3] * width, a[:, 4] * height
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1).astype(np.float32)
    raw = a[:, 5:].reshape(-1, k, ndim)
    kpts = np.zeros((len(a), k, 3), np.float32)
    kpts[..., 0], kpts[..., 1] = raw[..., 0] * width, raw[..., 1] * height
    kpts[..., 2] = raw[..., 2] if ndim == 3 else np.where((raw[..., 0] < 0) | (raw[..., 1] < 0), 0.0, 2.0)
    return a[:, 0].astype(np.int64), boxes, kpts


def read_pose_split(data_yaml: str | Path, split: str = "val", num_classes: int | None = None) -> PoseSplit:
    """Images and pose labels of one split. Raises WorkbookError for class ids outside the data's (or the model's)
    classes or lines of the wrong length; an image without a label file counts as background (one note)."""
    data = read_pose_yaml(data_yaml)
    names, kpt_shape = data["names"], data["kpt_shape"]
    nc = len(names) if num_classes is None else int(num_classes)
    paths = split_images(data, split, data_yaml)
    truth, unlabelled, bad = [], [], []
    for p in paths:
        h, w = image_size(p)
        lp = label_path(p)
        if not lp.exists():
            unlabelled.append(p)
        classes, boxes, kpts = parse_label(lp.read_text() if lp.exists() else "", w, h, kpt_shape, lp)
        bad += [(lp, int(c)) for c in classes if c < 0 or c >= nc]
        truth.append(PoseTruth(boxes, classes, kpts, h, w))
    if bad:
        whose = "the model's" if num_classes is not None else f"{data_yaml}'s"
        raise WorkbookError(f"{len(bad)} labels in {len({p for p, _ in bad})} files (e.g. {bad[0][0]}) use class ids "
                            f"{sorted({c for _, c in bad})}, outside {whose} {nc} classes (0..{nc - 1}); fix the labels or use a "
                            "model trained on these classes.")
    notes = []
    if unlabelled:
        notes.append(f"{len(unlabelled)} of {len(paths)} {split} images have no label file (e.g. {unlabelled[0].name}); "
                     "they count as background (no figures).")
    return PoseSplit(paths, truth, names, notes, kpt_shape=kpt_shape, sigmas=data["sigmas"])


def check_keypoints(data_yaml: str | Path, channels: int, num_classes: int | None = None, model: str = "The model") -> None:
    """Refuse a pose model whose keypoints differ from the data's kpt_shape, given its stock output's channel count
    (4 box + classes + K*ndim) and its class count (default: the data's names)."""
    data = read_pose_yaml(data_yaml)
    k, ndim = data["kpt_shape"]
    nc = len(data["names"]) if num_classes is None else int(num_classes)
    want = 4 + nc + k * ndim
    if int(channels) == want:
        return
    rest = int(channels) - 4 - nc
    whole = rest > 0 and rest % ndim == 0
    theirs = f"{rest // ndim} keypoints" if whole else f"{rest} keypoint values (not a multiple of {ndim})"
    raise WorkbookError(f"{model} gives {channels} output channels, i.e. {theirs} besides 4 box and {nc} class channels, but "
                        f"{data_yaml} has kpt_shape [{k}, {ndim}] ({want} channels); use the data.yaml the model was trained "
                        "with, or a model trained on these keypoints.")
