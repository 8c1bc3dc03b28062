"""The detector family: detect, segment and pose share the letterbox, a YOLO Detect head split per stride, COCO
scoring and a YOLO data.yaml. What differs per task is written here once (its labels reader, generated sample,
sample architecture, primary metric), so notebooks and steps look a task up instead of branching on its name."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from helpers.core.errors import WorkbookError
from helpers.tasks.detect.labels import IMAGE_SUFFIXES, label_path, read_data_yaml, read_split
from helpers.tasks.detect.sample import write_detect_sample
from helpers.tasks.pose.labels import read_pose_split, read_pose_yaml
from helpers.tasks.pose.sample import write_pose_sample
from helpers.tasks.segment.labels import read_segment_split
from helpers.tasks.segment.sample import write_segment_sample


@dataclass(frozen=True)
class Member:
    """One task of the family: how the workbook reads its data, makes its sample and names its metric."""

    task: str
    what: str                   # how sentences name such a model: "a detector"
    arch: str                   # the ultralytics YAML the sample model is trained from
    metric_key: str             # metrics.json / table column of the primary metric
    metric_label: str           # how sentences, tables and axes name it
    labels: str                 # what its label lines hold, for messages
    read_split: Callable[..., Any]      # (data_yaml, split, num_classes) -> a DetectionSplit (or subclass)
    write_sample: Callable[..., Any]    # (images=, imgsz=) -> the sample's data.yaml


FAMILY: dict[str, Member] = {
    "detect": Member("detect", "a detector", "yolo11n.yaml", "map50_95", "mAP50-95", "boxes",
                     read_split, write_detect_sample),
    "segment": Member("segment", "an instance-segmentation model", "yolo11n-seg.yaml", "mask_map50_95", "mask mAP50-95",
                      "polygons", read_segment_split, write_segment_sample),
    "pose": Member("pose", "a pose model", "yolo11n-pose.yaml", "pose_map50_95", "pose mAP50-95 (OKS)",
                   "boxes with keypoints", read_pose_split, write_pose_sample),
}


def in_family(task: str) -> bool:
    """Whether a task is one of the detector family (a letterboxed YOLO head scored by COCO mAP)."""
    return task in FAMILY


def member(task: str) -> Member:
    """The family member of a task; one sentence for any other task."""
    if task not in FAMILY:
        raise WorkbookError(f"task={task!r} is not one of the detector family ({', '.join(FAMILY)}); use one of them.")
    return FAMILY[task]


def check_keypoint_shape(data_yaml: Any, model_kpt_shape: Any, model: str = "The model") -> None:
    """Refuse a pose model whose keypoints ([K, ndim]) are not the data's kpt_shape, naming both."""
    if model_kpt_shape is None:
        return
    data = read_pose_yaml(data_yaml)
    theirs, ours = [int(v) for v in model_kpt_shape], [int(v) for v in data["kpt_shape"]]
    if theirs != ours:
        raise WorkbookError(f"{model} predicts {theirs[0]} keypoints of {theirs[1]} values (kpt_shape {theirs}) but {data_yaml} "
                            f"has kpt_shape {ours}; use the data.yaml the model was trained with, or a model trained on these "
                            "keypoints.")


def data_task(data_yaml: Any) -> str:
    """The family task a YOLO data set's labels are written for: pose when its data.yaml states kpt_shape, segment when
    its first label line is a polygon (more than 5 numbers), else detect (boxes)."""
    data = read_data_yaml(data_yaml)
    if data.get("kpt_shape") is not None:
        return "pose"
    for split in ("val", "train"):
        folder = data.get(split)
        images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder and folder.is_dir() else []
        for image in images[:50]:
            labels = label_path(image)
            lines = [x.split() for x in labels.read_text().splitlines() if x.strip()] if labels.exists() else []
            if lines:
                return "segment" if len(lines[0]) > 5 else "detect"
    return "detect"
