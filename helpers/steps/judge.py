"""A run's judge (helpers.tasks.scoring): its validation images, the FP32 reference's raw outputs on them and its
task's metric, built from the run's convert record; and those images as files accuracy_analysis can read."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from helpers.core.errors import WorkbookError
from helpers.core.paths import Run, atomic_path
from helpers.steps.export.detect_head import decode_options
from helpers.tasks.classify.judge import ClassifyJudge
from helpers.tasks.data import detect_yaml, load_split
from helpers.tasks.detect.images import load_letterboxed
from helpers.tasks.detect.judge import CocoJudge
from helpers.tasks.family import check_keypoint_shape, in_family, member
from helpers.tasks.feeds import fp32_runner, model_input_npy
from helpers.tasks.identify import class_names, run_task
from helpers.tasks.measures import METRIC_LABELS, Outputs
from helpers.tasks.scoring import Judge
from helpers.toolkit.record import ConvertRecord


def task_metric(task: str) -> tuple[str, str]:
    """The column and label of the metric a task's judge scores by, before any judge is built: top1 / top-1 for a
    classifier, the family's own (map50_95 / mAP50-95, mask_map50_95 / mask mAP50-95, pose_map50_95 / pose mAP50-95)."""
    key = member(task).metric_key if in_family(task) else "top1"
    return key, METRIC_LABELS[key]


def fp32_outputs(record: ConvertRecord, onnx_path: Path, pixels: np.ndarray) -> Outputs:
    """The exported ONNX's raw outputs under ONNX Runtime (the FP32 reference) on pixels."""
    with fp32_runner(onnx_path, record.config.mean_values, record.config.std_values) as runner:
        return runner.outputs(pixels)


def judge_for(run: Run, record: ConvertRecord, data_dir: Path, images: int = 0, onnx: Path | None = None) -> Judge:
    """The judge of a run's task on the first `images` validation images (0: all) at record.input_size: a classifier's
    val folder scored by top-1, or a detector family model's val split (notebook 10's data.yaml), letterboxed, scored by
    its task's COCO metric (detect: mAP50-95, segment: mask mAP50-95, pose: pose mAP50-95). onnx: the FP32 reference
    when not the run's model/model.onnx (e.g. a copy that runs at another input shape)."""
    onnx_path = Path(onnx) if onnx else run.need("model/model.onnx", "10_export.ipynb")
    task = run_task(run)
    if in_family(task):
        return family_judge(task, record, data_dir, images, onnx_path, run.root)
    val = load_split(data_dir, "val").subset(images or None)
    pixels = val.load(record.input_size)
    return ClassifyJudge("classify", "top1", "top-1", "top1_agreement", list(val.paths), pixels,
                         fp32_outputs(record, onnx_path, pixels), labels=np.asarray(val.labels))


def family_judge(task: str, record: ConvertRecord, data_dir: Path, images: int, onnx_path: Path, root: Path) -> CocoJudge:
    """A detect, segment or pose run's judge: its val split read as the task reads it, letterboxed like the deployed
    model's input, decoded with the ONNX's own options (end2end; a pose model's keypoint count, checked against the
    data's kpt_shape)."""
    fam = member(task)
    data_yaml = detect_yaml(data_dir)
    if data_yaml is None:
        raise WorkbookError(f"Run {root} holds {fam.what} but data_dir {data_dir} is not a YOLO data set (a data.yaml or "
                            "its folder); leave data_dir empty to use the one notebook 10 used, or pass your data.yaml.")
    decode = decode_options(onnx_path)
    check_keypoint_shape(data_yaml, decode.pop("kpt_shape", None), f"The model {onnx_path.name}")  # the judge reads the data's
    names = class_names(record.source)
    split = fam.read_split(data_yaml, "val", num_classes=len(names) if names else None).subset(images or None)
    canvases, geoms = load_letterboxed(split.paths, record.input_size)
    pixels = np.stack(canvases)
    return fam.judge.of(split.paths, pixels, fp32_outputs(record, onnx_path, pixels), split, geoms, decode=decode)


def analysis_inputs(judge: Judge, n: int, folder: Path, channels: int = 3) -> list[Path]:
    """The first n of the judge's images as files accuracy_analysis can read: a classifier's own files (for a model
    with other than 3 input channels: its input as an NCHW uint8 .npy, since the toolkit reads image files as 3
    channels); a detector's letterboxed pixels written as PNGs (the toolkit only resizes, so the layers see what
    the deployed model sees), as for every task of the detector family."""
    if n < 1:
        raise WorkbookError(f"analysis_images={n} gives accuracy_analysis no image; use 1 or more.")
    if not in_family(judge.task):
        if channels != 3:
            return [model_input_npy(judge.pixels[i], channels, folder / f"{i:02d}_{Path(p).stem}.npy")
                    for i, p in enumerate(judge.paths[:n])]
        return list(judge.paths[:n])
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (path, pixels) in enumerate(zip(judge.paths[:n], judge.pixels[:n])):
        target = folder / f"{i:02d}_{Path(path).stem}.png"  # numbered: two images with one stem never share a file
        with atomic_path(target, ".partial.png") as tmp:  # cv2 picks the format from the extension
            cv2.imwrite(str(tmp), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
        out.append(target)
    return out
