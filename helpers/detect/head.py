"""Export an ultralytics detector to ONNX with either its stock head or a head split for the NPU.

Stock: one tensor [1, 4 + classes, anchors] holding box coordinates in pixels (0..imgsz) next to class
scores (0..1). INT8 gives a tensor one scale, chosen for the large coordinates, so every score
rounds to 0 or to one coarse step. Split (the layout rknn_model_zoo uses): for each stride, the raw
box-distribution logits [1, 4*reg_max, h, w], the sigmoid class scores [1, classes, h, w] and their
sum clamped to 0..1 [1, 1, h, w] (a cheap "anything here?" filter), each with its own scale; the
distribution-to-box decode moves to helpers/detect/postprocess.py.
"""
from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import WorkbookError
from ..export import TOOLKIT_MAX_OPSET, check_onnx

HEADS = ("split", "stock")


@dataclass
class DetectExport:
    """One exported detector: its ONNX, head layout and what post-processing needs to know."""

    onnx: Path
    head: str
    imgsz: int
    opset: int
    names: list[str]
    strides: list[int]
    reg_max: int
    outputs: list[str]


def load_detector(weights: str | Path) -> Any:
    """The ultralytics DetectionModel inside a .pt, in float32 eval mode with conv+bn fused."""
    from ultralytics import YOLO

    yolo = YOLO(str(weights))
    if yolo.task != "detect":
        raise WorkbookError(f"Model {weights} is an ultralytics {yolo.task} model, not a detector; pass a detect .pt (e.g. trained from yolo11n.yaml) or set task: {yolo.task}.")
    return copy.deepcopy(yolo.model).float().fuse().eval()


def _detect_layer(model: Any) -> Any:
    head = model.model[-1]
    if not hasattr(head, "cv2") or not hasattr(head, "cv3") or head.cv2 is None:
        raise WorkbookError(f"The last layer of this model is {type(head).__name__}, not a YOLO Detect head with box and class branches; only YOLOv8/11-style detectors can be exported here; pass a YOLOv8 or YOLO11 detect .pt.")
    return head


def _features(model: Any, x: Any) -> list[Any]:
    """Run every layer but the head, routing inputs by each layer's `f` like ultralytics does;
    return the feature maps the head reads."""
    saved: list[Any] = []
    for m in model.model[:-1]:
        if m.f != -1:
            x = saved[m.f] if isinstance(m.f, int) else [x if j == -1 else saved[j] for j in m.f]
        x = m(x)
        saved.append(x if m.i in model.save else None)
    head = model.model[-1]
    return [x if j == -1 else saved[j] for j in head.f]


def _wrapper(model: Any, head: str) -> Any:
    import torch

    detect = _detect_layer(model)

    class Split(torch.nn.Module):
        """Per stride: box distribution logits, sigmoid class scores, clamped score sum."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x):  # noqa: ANN001
            outs = []
            for i, f in enumerate(_features(self.model, x)):
                scores = detect.cv3[i](f).sigmoid()
                outs += [detect.cv2[i](f), scores, scores.sum(1, keepdim=True).clamp(0, 1)]
            return tuple(outs)

    class Stock(torch.nn.Module):
        """ultralytics' own export output: decoded xywh boxes and sigmoid scores in one tensor."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            detect.export, detect.format, detect.dynamic = True, "onnx", False

        def forward(self, x):  # noqa: ANN001
            return detect(_features(self.model, x))

    return Split() if head == "split" else Stock()


def export_detector(weights: str | Path, out_onnx: str | Path, imgsz: int, head: str = "split", opset: int = TOOLKIT_MAX_OPSET) -> DetectExport:
    """Export the detector in weights (.pt) to out_onnx (written atomically) with the chosen head; the
    task, head, class names, strides and reg_max are stored in the ONNX metadata."""
    import onnx
    import torch

    if head not in HEADS:
        raise WorkbookError(f"head={head!r} is not a detector head layout; use one of {', '.join(HEADS)}.")
    if opset > TOOLKIT_MAX_OPSET:
        raise WorkbookError(f"opset={opset} is above what rknn-toolkit2 accepts; use opset <= {TOOLKIT_MAX_OPSET}.")
    model = load_detector(weights)
    detect = _detect_layer(model)
    strides = [int(s) for s in detect.stride.tolist()]
    if imgsz % max(strides):
        raise WorkbookError(f"imgsz={imgsz} is not a multiple of the detector's largest stride {max(strides)}; use e.g. {max(strides) * round(imgsz / max(strides))}.")
    names = [model.names[i] for i in range(len(model.names))]
    net = _wrapper(model, head).eval()
    if head == "split":
        out_names = [f"{kind}{s}" for s in strides for kind in ("box", "cls", "sum")]
    else:
        out_names = ["output0"]
    out_onnx = Path(out_onnx)
    out_onnx.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_onnx.with_name(out_onnx.stem + ".partial.onnx")
    # ultralytics' head caches its anchors behind a Python shape comparison the tracer warns about; the
    # input size is fixed, so the traced constant is right.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(net, torch.zeros(1, 3, imgsz, imgsz), str(tmp), opset_version=opset,
                          input_names=["images"], output_names=out_names, do_constant_folding=True)
    proto = onnx.load(str(tmp))
    meta = {"task": "detect", "head": head, "imgsz": str(imgsz), "names": json.dumps(names),
            "strides": json.dumps(strides), "reg_max": str(int(detect.reg_max))}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(tmp))
    check_onnx(tmp, imgsz)
    tmp.replace(out_onnx)
    return DetectExport(out_onnx, head, imgsz, opset, names, strides, int(detect.reg_max), out_names)


def onnx_metadata(onnx_path: str | Path) -> dict[str, str]:
    """The key/value metadata of an ONNX file (ultralytics and export_detector both write some)."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
