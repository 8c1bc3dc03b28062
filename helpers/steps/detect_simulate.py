"""A detector's raw outputs from ONNX Runtime (FP32) and from the INT8 toolkit simulator, on
letterboxed uint8 RGB images; the evaluation loop (letterbox -> outputs -> postprocess -> COCO mAP)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from helpers.tasks.detect.labels import DetectionSplit
from helpers.tasks.detect.metric import DetectMetric, coco_map
from helpers.tasks.detect.postprocess import Detections, letterbox, postprocess

# YOLO input: RGB / 255, the normalisation the toolkit bakes in via mean/std.
MEAN, STD = [0.0, 0.0, 0.0], [255.0, 255.0, 255.0]
Runner = Callable[[np.ndarray], list[np.ndarray]]


@dataclass
class DetectEval:
    """Detections per image and their COCO metric for one backend."""

    name: str
    detections: list[Detections]
    metric: DetectMetric
    top_scores: list[float]


def load_letterboxed(paths: Sequence[Path], size: int) -> tuple[list[np.ndarray], list]:
    """Read images as RGB and letterbox them to size x size; returns canvases and geometries."""
    canvases, geoms = [], []
    for p in paths:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"Cannot read image {p}; check the file exists and is a valid image.")
        canvas, lb = letterbox(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)
        canvases.append(canvas)
        geoms.append(lb)
    return canvases, geoms


def onnx_runner(onnx_path: str | Path) -> Runner:
    """FP32 reference: one letterboxed uint8 RGB HxWx3 image -> the ONNX's raw outputs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(image: np.ndarray) -> list[np.ndarray]:
        x = (image.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        return session.run(None, {name: np.ascontiguousarray(x)})

    return run


def simulate_int8(onnx_path: str | Path, calibration: Sequence[np.ndarray], images: Sequence[np.ndarray], work_dir: str | Path,
                  target_platform: str = "rk3588", disable_rules: Sequence[str] | None = None) -> list[list[np.ndarray]]:
    """Quantize the ONNX to INT8 with the real toolkit (calibration = letterboxed RGB images, written as
    PNGs) through the workbook's own path (helpers.steps.convert options, helpers.steps.evaluate.SimulatorBackend,
    which retries without a graph rule the toolkit's log names), run `images` in its simulator and
    return each image's raw outputs. disable_rules: rules to skip from the start."""
    from helpers.steps.convert import ConvertConfig
    from helpers.steps.evaluate import SimulatorBackend

    work_dir = Path(work_dir).resolve()
    calib_dir = work_dir / "calibration"
    calib_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, img in enumerate(calibration):
        p = calib_dir / f"{i:04d}.png"
        cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        lines.append(f"{p}\n")
    dataset = work_dir / "calibration.txt"
    dataset.write_text("".join(lines))
    cfg = ConvertConfig.from_dict({"mean_values": MEAN, "std_values": STD, "target_platform": target_platform,
                                   "disable_rules": list(disable_rules or [])})
    size = int(images[0].shape[0]) if len(images) else int(calibration[0].shape[0])
    with SimulatorBackend(Path(onnx_path).resolve(), cfg, dataset, size, work_dir / "int8.log", "onnx", batch=1, auto_disable_rules=True) as sim:
        return sim.run_raw(np.stack(images)) if len(images) else []


def evaluate_outputs(name: str, outputs: Sequence[Sequence[np.ndarray]], geoms: Sequence, split: DetectionSplit,
                     conf: float = 0.001, iou: float = 0.7, max_det: int = 300, end2end: bool = False) -> DetectEval:
    """Post-process each image's raw outputs and score them with COCO mAP (val-style defaults:
    conf 0.001, IoU 0.7, max_det 300, every class above conf per box; end2end: top-k, no NMS)."""
    from helpers.tasks.detect.postprocess import top_score

    dets = [postprocess(o, lb, conf=conf, iou=iou, max_det=max_det, multi_label=True, end2end=end2end)
            for o, lb in zip(outputs, geoms)]
    tops = [top_score(o, lb.size) for o, lb in zip(outputs, geoms)]
    return DetectEval(name, dets, coco_map(split.truth, dets, split.names, max_det=max_det), tops)


def whole_tensor_cosine(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """Cosine similarity of all outputs of one image flattened together (what a per-tensor check reports)."""
    x = np.concatenate([np.ravel(o) for o in a]).astype(np.float64)
    y = np.concatenate([np.ravel(o) for o in b]).astype(np.float64)
    return float(x @ y / max(np.linalg.norm(x) * np.linalg.norm(y), 1e-12))
