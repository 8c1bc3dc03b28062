"""The detector family: detect, segment and pose share the letterbox, a YOLO Detect head split per stride, COCO
scoring and a YOLO data.yaml. What differs per task is written here once (its labels reader, generated sample,
sample architecture, primary metric, judge), so notebooks and steps look a task up instead of branching on its name."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from helpers.core.errors import WorkbookError
from helpers.tasks.detect import metric as detect_metric
from helpers.tasks.detect.judge import CocoJudge, DetectJudge
from helpers.tasks.detect.labels import IMAGE_SUFFIXES, label_path, read_data_yaml, read_split
from helpers.tasks.detect.sample import write_detect_sample
from helpers.tasks.pose import metric as pose_metric
from helpers.tasks.pose.judge import PoseJudge
from helpers.tasks.pose.labels import read_pose_split, read_pose_yaml
from helpers.tasks.pose.sample import write_pose_sample
from helpers.tasks.segment import metric as segment_metric
from helpers.tasks.segment.judge import SegmentJudge
from helpers.tasks.segment.labels import read_segment_split
from helpers.tasks.segment.sample import write_segment_sample


@dataclass(frozen=True)
class Member:
    """One task of the family: how the workbook reads its data, makes its sample, names its metric and judges its outputs."""

    task: str
    what: str                   # how sentences name such a model: "a detector"
    arch: str                   # the ultralytics YAML the sample model is trained from
    metric_key: str             # metrics.json / table column of the primary metric
    metric_label: str           # how sentences, tables and axes name it
    labels: str                 # what its label lines hold, for messages
    read_split: Callable[..., Any]      # (data_yaml, split, num_classes) -> a DetectionSplit (or subclass)
    write_sample: Callable[..., Any]    # (images=, imgsz=) -> the sample's data.yaml
    judge: type[CocoJudge]      # scores raw outputs against the FP32 reference (notebooks 50 and 60)
    val_metric: str             # ultralytics' name of its own metric on a val() result: box, seg, pose
    sample_words: tuple[str, str]       # how sentences name the sample model and what its generated images show


# The judges (tasks/<task>/judge.py) sit below this table and never import it, so holding their classes here makes no cycle.
FAMILY: dict[str, Member] = {
    "detect": Member("detect", "a detector", "yolo11n.yaml", "map50_95", "mAP50-95", "boxes", read_split, write_detect_sample,
                     judge=DetectJudge, val_metric="box", sample_words=("YOLO11n detector", "shapes")),
    "segment": Member("segment", "an instance-segmentation model", "yolo11n-seg.yaml", "mask_map50_95", "mask mAP50-95",
                      "polygons", read_segment_split, write_segment_sample,
                      judge=SegmentJudge, val_metric="seg", sample_words=("YOLO11n-seg model", "shapes with polygon masks")),
    "pose": Member("pose", "a pose model", "yolo11n-pose.yaml", "pose_map50_95", "pose mAP50-95 (OKS)",
                   "boxes with keypoints", read_pose_split, write_pose_sample,
                   judge=PoseJudge, val_metric="pose", sample_words=("YOLO11n-pose model", "stick figures")),
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


@dataclass
class Scored:
    """One backend's decoded predictions on a split, scored by the task: its metrics as a flat row (map50_95 / map50 the
    task's primary metric, box_map50_95 / box_map50 beside it for segment and pose), top class scores, the matching a
    paired verdict re-accumulates, and the predictions as eval/detections.json stores them."""

    name: str
    row: dict
    top_scores: list
    matching: Any
    stored: list


def evaluate(task: str, name: str, outputs: Any, geoms: Any, split: Any, **decode: Any) -> Scored:
    """Decode and score one backend's raw outputs (val-style thresholds) by the task's COCO metric; decode: the export's
    postprocess keywords (end2end; a pose model's kpt_shape, which the split states too)."""
    end2end = bool(decode.get("end2end"))
    if task == "segment":
        ev = segment_metric.evaluate_outputs(name, outputs, geoms, split, end2end=end2end)
        box = ev.metric.box
        row = {**ev.metric.mask.to_dict(), "box_map50_95": box.map50_95, "box_map50": box.map50}
        return Scored(name, row, ev.top_scores, ev.matching, segment_metric.predictions_json(ev.segmentations))
    if task == "pose":
        ev = pose_metric.evaluate_outputs(name, outputs, geoms, split, end2end=end2end)
        row = {k: v for k, v in ev.metric.to_dict().items() if k != "box"}
        row |= {"box_map50_95": ev.metric.box.map50_95, "box_map50": ev.metric.box.map50}
        return Scored(name, row, ev.top_scores, ev.matching, pose_metric.predictions_json(ev.poses))
    ev = detect_metric.evaluate_outputs(name, outputs, geoms, split, end2end=end2end)
    return Scored(name, ev.metric.to_dict(), ev.top_scores, ev.matching, detect_metric.predictions_json(ev.detections))
