"""One score per model, whatever the run's task: top-1 for a classifier, COCO mAP50-95 for a detector, with
how closely its raw outputs follow FP32 (cosine). Notebook 50's sweep and notebook 60's hybrids rank models
through a `Judge`, so both tasks share one code path and the tables name the metric they hold."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from helpers.core.errors import WorkbookError

if TYPE_CHECKING:
    from helpers.core.paths import Run
    from helpers.toolkit.record import ConvertRecord

from helpers.tasks.measures import METRIC_LABELS, Outputs, binomial_noise_pt, metric_heading, metric_in, metric_text, output_cosines  # noqa: F401
@dataclass
class Score:
    """One model on the judge's images: the task metric (0..1) and its outputs' per-image cosine to FP32."""

    value: float
    mean_cosine: float
    min_cosine: float
    agreement: float  # classify: share of images with FP32's top-1 class; detect: mAP50

    def row(self, judge: "Judge") -> dict[str, Any]:
        """The columns a table stores for this score, named after the judge's metric."""
        return {judge.key: self.value, judge.delta_key: round(100 * (self.value - judge.fp32.value), 2),
                "mean_cosine": self.mean_cosine, "min_cosine": self.min_cosine, judge.agreement_key: self.agreement}


@dataclass
class Judge:
    """The images every model of a comparison is scored on (uint8 RGB NHWC `pixels`, letterboxed for a
    detector), the FP32 reference's raw outputs on them, and the task's metric."""

    task: str
    key: str  # table column of the metric: "top1" or "map50_95"
    label: str  # how sentences and axes name it: "top-1" or "mAP50-95"
    agreement_key: str  # "top1_agreement" or "map50"
    paths: list[Path]
    pixels: np.ndarray
    fp32_outputs: Outputs = field(repr=False)
    fp32: Score = field(init=False)

    def __post_init__(self) -> None:
        """The FP32 reference's own score: its metric, cosine 1 to itself."""
        value, agreement = self.metric(self.fp32_outputs)
        self.fp32 = Score(value, 1.0, 1.0, agreement)

    @property
    def images(self) -> int:
        """How many images every model is scored on."""
        return len(self.paths)

    @property
    def delta_key(self) -> str:
        """The table column of a score's change against FP32, in points."""
        return f"{self.key}_delta_pt"

    def text(self, value: float) -> str:
        """A value of this judge's metric as sentences show it (metric_text)."""
        return metric_text(self.key, value)

    def metric(self, outputs: Outputs) -> tuple[float, float]:
        """(metric, agreement) of raw outputs; implemented per task."""
        raise NotImplementedError

    def score(self, outputs: Outputs) -> Score:
        """Score a model's raw outputs on self.pixels (same images, same order as FP32)."""
        if len(outputs) != self.images:
            raise ValueError(f"{len(outputs)} output sets for {self.images} images; run the model on judge.pixels.")
        value, agreement = self.metric(outputs)
        cos = output_cosines(self.fp32_outputs, outputs)
        return Score(value, float(cos.mean()) if len(cos) else float("nan"), float(cos.min()) if len(cos) else float("nan"), agreement)

    def step_pt(self) -> float | None:
        """The metric's resolution in points (one image of top-1); None when it has no fixed step (mAP)."""
        return None

    def noise_pt(self) -> float:
        """About two standard deviations of FP32's metric on these images, in points: what a difference
        between two models must exceed before it means more than the choice of images."""
        raise NotImplementedError

    def scale_note(self) -> str:
        """How to read a difference of this metric on this many images, for axis labels and sentences."""
        step = self.step_pt()
        if step:
            return f"{self.images} val images, 1 image = {step:.2f} pt"
        return f"{self.images} val images, noise about ±{self.noise_pt():.1f} pt"


@dataclass
class ClassifyJudge(Judge):
    """Top-1 of a classifier against folder labels; agreement = same top-1 class as FP32."""

    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)

    def metric(self, outputs: Outputs) -> tuple[float, float]:
        """Top-1 against the folder labels, and the share of images whose top-1 class is FP32's."""
        from helpers.steps.evaluate import first_outputs, topk_accuracy

        scores = first_outputs(outputs)
        same = float((first_outputs(self.fp32_outputs).argmax(1) == scores.argmax(1)).mean()) if len(scores) else float("nan")
        return topk_accuracy(scores, np.asarray(self.labels), 1), same

    def step_pt(self) -> float | None:
        """One image of top-1, in points."""
        return 100.0 / self.images if self.images else None

    def noise_pt(self) -> float:
        """Two binomial standard deviations of FP32's top-1 on this many images, in points."""
        return binomial_noise_pt(self.fp32.value, self.images)


@dataclass
class DetectJudge(Judge):
    """COCO mAP50-95 (pycocotools, val-style thresholds) of a detector's decoded outputs; agreement = mAP50."""

    split: Any = field(default=None, repr=False)  # helpers.tasks.detect.labels.DetectionSplit
    geoms: list = field(default_factory=list, repr=False)
    _noise: dict = field(default_factory=dict, init=False, repr=False)  # (resamples, seed) -> noise in points
    decode: dict = field(default_factory=dict, repr=False)  # postprocess keywords from the ONNX (end2end: top-k, no NMS)

    def detections(self, outputs: Outputs) -> list:
        """Each image's raw outputs decoded into boxes (val-style thresholds), in original image pixels."""
        from helpers.tasks.detect.postprocess import postprocess

        return [postprocess(o, lb, conf=0.001, iou=0.7, max_det=300, multi_label=True, **self.decode)
                for o, lb in zip(outputs, self.geoms)]

    def metric(self, outputs: Outputs) -> tuple[float, float]:
        """COCO mAP50-95 and mAP50 of the decoded outputs against the labels."""
        from helpers.tasks.detect.metric import coco_map

        m = coco_map(self.split.truth, self.detections(outputs), self.split.names, max_det=300)
        return m.map50_95, m.map50

    def noise_pt(self, resamples: int = 20, seed: int = 0) -> float:
        """Two standard deviations of FP32's mAP50-95 over bootstrap resamples of the images."""
        if (resamples, seed) not in self._noise:
            from helpers.tasks.detect.metric import coco_map

            dets = self.detections(self.fp32_outputs)
            rng = np.random.default_rng(seed)
            values = []
            for _ in range(resamples):
                idx = rng.integers(0, self.images, self.images)
                values.append(coco_map([self.split.truth[i] for i in idx], [dets[i] for i in idx], self.split.names, max_det=300).map50_95)
            self._noise[(resamples, seed)] = 100.0 * 2.0 * float(np.std(values))
        return self._noise[(resamples, seed)]


def fp32_outputs(record: "ConvertRecord", onnx_path: Path, pixels: np.ndarray) -> Outputs:
    """The exported ONNX's raw outputs under ONNX Runtime (the FP32 reference) on pixels."""
    from helpers.steps.evaluate import OnnxBackend

    backend = OnnxBackend(onnx_path, record.config.mean_values, record.config.std_values)
    try:
        return backend.run_raw(pixels)
    finally:
        backend.close()


def judge_for(run: "Run", record: "ConvertRecord", data_dir: Path, images: int = 0) -> Judge:
    """The judge of a run's task on the first `images` validation images (0: all): a classifier's val
    folder scored by top-1, or a detector's val split (notebook 10's data.yaml) scored by mAP50-95."""
    from helpers.tasks.identify import run_task

    onnx_path = run.need("model/model.onnx", "10_export.ipynb")
    if run_task(run) == "detect":
        from helpers.steps.detect_simulate import load_letterboxed
        from helpers.steps.export.detect_head import decode_options
        from helpers.tasks.data import detect_yaml
        from helpers.tasks.detect.labels import read_split
        from helpers.tasks.identify import class_names

        data_yaml = detect_yaml(data_dir)
        if data_yaml is None:
            raise WorkbookError(f"Run {run.root} holds a detector but data_dir {data_dir} is not a YOLO data set (a data.yaml or its "
                                "folder); leave data_dir empty to use the one notebook 10 used, or pass your data.yaml.")
        names = class_names(record.source)
        split = read_split(data_yaml, "val", num_classes=len(names) if names else None).subset(images or None)
        canvases, geoms = load_letterboxed(split.paths, record.input_size)
        pixels = np.stack(canvases)
        return DetectJudge("detect", "map50_95", "mAP50-95", "map50", list(split.paths), pixels,
                           fp32_outputs(record, onnx_path, pixels), split=split, geoms=geoms, decode=decode_options(onnx_path))
    from helpers.tasks.data import load_split

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
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (path, pixels) in enumerate(zip(judge.paths[:n], judge.pixels[:n])):
        target = folder / f"{i:02d}_{Path(path).stem}.png"  # numbered: two images with one stem never share a file
        tmp = target.with_name(target.stem + ".partial.png")
        cv2.imwrite(str(tmp), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
        tmp.replace(target)
        out.append(target)
    return out


def model_input_npy(pixels_hwc: np.ndarray, channels: int, target: Path) -> Path:
    """One uint8 HxWx3 image as the model's own input, 1 x C x H x W (what the toolkit's accuracy_analysis and
    codegen take for a .npy), written atomically to target."""
    from helpers.tasks.preprocess import match_channels

    arr = match_channels(np.asarray(pixels_hwc, np.uint8)[None], channels).transpose(0, 3, 1, 2)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.stem + ".partial.npy")
    np.save(tmp, np.ascontiguousarray(arr))
    tmp.replace(target)
    return target


def toolkit_outputs(rk: Any, pixels: np.ndarray, channels: int | None = None) -> Outputs:
    """Raw outputs of a toolkit already built and initialised in the simulator (e.g. by hybrid step 2,
    which builds for batch 1), one image per call."""
    from helpers.tasks.preprocess import match_channels

    def one(output: Any) -> np.ndarray:
        """One output with a batch dimension of 1."""
        a = np.asarray(output, np.float32)
        return a if a.ndim > 1 and a.shape[0] == 1 else a[None]

    batch = match_channels(pixels, channels) if channels else pixels
    return [[one(o) for o in rk.inference(inputs=[np.ascontiguousarray(x[None])], data_format="nhwc")] for x in batch]
