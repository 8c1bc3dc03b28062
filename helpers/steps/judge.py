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
from helpers.tasks.detect.judge import DetectJudge
from helpers.tasks.detect.labels import read_split
from helpers.tasks.feeds import fp32_runner, model_input_npy
from helpers.tasks.identify import class_names, run_task
from helpers.tasks.measures import Outputs
from helpers.tasks.scoring import Judge
from helpers.toolkit.record import ConvertRecord


def fp32_outputs(record: ConvertRecord, onnx_path: Path, pixels: np.ndarray) -> Outputs:
    """The exported ONNX's raw outputs under ONNX Runtime (the FP32 reference) on pixels."""
    with fp32_runner(onnx_path, record.config.mean_values, record.config.std_values) as runner:
        return runner.outputs(pixels)


def judge_for(run: Run, record: ConvertRecord, data_dir: Path, images: int = 0, onnx: Path | None = None) -> Judge:
    """The judge of a run's task on the first `images` validation images (0: all) at record.input_size: a classifier's
    val folder scored by top-1, or a detector's val split (notebook 10's data.yaml) scored by mAP50-95. onnx: the FP32
    reference when not the run's model/model.onnx (e.g. a copy that runs at another input shape)."""
    onnx_path = Path(onnx) if onnx else run.need("model/model.onnx", "10_export.ipynb")
    if run_task(run) == "detect":
        data_yaml = detect_yaml(data_dir)
        if data_yaml is None:
            raise WorkbookError(f"Run {run.root} holds a detector but data_dir {data_dir} is not a YOLO data set (a data.yaml or "
                                "its folder); leave data_dir empty to use the one notebook 10 used, or pass your data.yaml.")
        names = class_names(record.source)
        split = read_split(data_yaml, "val", num_classes=len(names) if names else None).subset(images or None)
        canvases, geoms = load_letterboxed(split.paths, record.input_size)
        pixels = np.stack(canvases)
        return DetectJudge("detect", "map50_95", "mAP50-95", "map50", list(split.paths), pixels,
                           fp32_outputs(record, onnx_path, pixels), split=split, geoms=geoms, decode=decode_options(onnx_path))
    val = load_split(data_dir, "val").subset(images or None)
    pixels = val.load(record.input_size)
    return ClassifyJudge("classify", "top1", "top-1", "top1_agreement", list(val.paths), pixels,
                         fp32_outputs(record, onnx_path, pixels), labels=np.asarray(val.labels))


def analysis_inputs(judge: Judge, n: int, folder: Path, channels: int = 3) -> list[Path]:
    """The first n of the judge's images as files accuracy_analysis can read: a classifier's own files (for a model
    with other than 3 input channels: its input as an NCHW uint8 .npy, since the toolkit reads image files as 3
    channels); a detector's letterboxed pixels written as PNGs (the toolkit only resizes, so the layers see what
    the deployed model sees)."""
    if n < 1:
        raise WorkbookError(f"analysis_images={n} gives accuracy_analysis no image; use 1 or more.")
    if judge.task != "detect" and channels != 3:
        return [model_input_npy(judge.pixels[i], channels, folder / f"{i:02d}_{Path(p).stem}.npy")
                for i, p in enumerate(judge.paths[:n])]
    if judge.task != "detect":
        return list(judge.paths[:n])
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (path, pixels) in enumerate(zip(judge.paths[:n], judge.pixels[:n])):
        target = folder / f"{i:02d}_{Path(path).stem}.png"  # numbered: two images with one stem never share a file
        with atomic_path(target, ".partial.png") as tmp:  # cv2 picks the format from the extension
            cv2.imwrite(str(tmp), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
        out.append(target)
    return out
