"""Export an ultralytics detector, instance-segmentation or pose model to ONNX with either its stock head or a head
split for the NPU.

The head's structure is read from the model (Detect layer): reg_max, number of classes, strides and
whether it has an end-to-end (one-to-one, NMS-free) branch, as YOLO26 and YOLOv10 do. Never from a
family name.

Stock: one tensor [1, 4 + classes, anchors] holding xywh box coordinates in pixels (0..imgsz) next to class
scores (0..1). INT8 gives a tensor one scale, chosen for the large coordinates, so every score
rounds to 0 or to one coarse step. For an end-to-end head the same tensor comes from its one-to-one
branch, before ultralytics' in-graph top-k (the NPU has no TopK); the top-k runs on the host.

Split (the layout rknn_model_zoo uses; graph surgery on ultralytics' ONNX writes the same), for each
stride s in ascending order, three outputs named:
  box{s}  [1, 4*reg_max, h, w]  reg_max > 1: box-distribution logits (DFL, 16 bins for YOLOv8/11);
                                reg_max == 1: plain left/top/right/bottom distances from the cell centre,
                                in stride units (YOLO26)
  cls{s}  [1, classes, h, w]    sigmoid class scores
  sum{s}  [1, 1, h, w]          their sum clamped to 0..1 (a cheap "anything here?" filter)
each with its own INT8 scale; the box decode moves to helpers/tasks/detect/postprocess.py.
A segmentation head adds, per stride, coef{s} [1, nm, h, w] (mask coefficients) and, after the last stride, protos
[1, nm, H/4, W/4]; a pose head adds kpt{s} [1, K*ndim, h, w]: keypoint offsets from the cell's top-left corner in
stride units and the sigmoid visibility (helpers/tasks/segment/postprocess.py and tasks/pose/postprocess.py decode
them). The stock layouts are ultralytics' own: [1, 4 + classes + nm, anchors] plus the prototypes, and
[1, 4 + classes + K*ndim, anchors] with keypoints in input pixels; each gets one INT8 scale, as for detection.

Metadata (both layouts): task (detect|segment|pose), head (split|stock), imgsz, names (JSON list), strides (JSON list),
reg_max, end2end ("true": one-to-one branch, decode with top-k and no NMS; "false" or absent: NMS) and
max_det (the top-k of an end-to-end head); nm (segment) and kpt_shape (pose, JSON [K, ndim]). postprocess.py needs
only the outputs plus end2end (and kpt_shape for pose).

Which branch: a head with a one-to-one branch (one2one_cv2/one2one_cv3) is exported through it. ultralytics
8.4.190 itself predicts, validates and exports through the one-to-many branch unless nms=False, so an ONNX it
exported by default carries that branch: split, that is reg_max 1 with end2end "false" (decoded with NMS);
the workbook's comparisons with ultralytics use nms=False whenever the export is end-to-end.
"""
from __future__ import annotations

import ast
import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.core.errors import WorkbookError
from helpers.core.paths import atomic_path
from helpers.steps.export.exporter import TOOLKIT_MAX_OPSET, check_onnx
from helpers.tasks.family import FAMILY

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
    end2end: bool = False
    max_det: int = 300
    task: str = "detect"
    kpt_shape: list[int] | None = None  # pose: [K, ndim]


def has_one2one(head: Any) -> bool:
    """Whether a Detect head carries an end-to-end (one-to-one, NMS-free) branch (YOLO26, YOLOv10)."""
    return getattr(head, "one2one_cv2", None) is not None and getattr(head, "one2one_cv3", None) is not None


def load_detector(weights: str | Path, task: str = "detect") -> Any:
    """The ultralytics model of `task` (detect, segment or pose) inside a .pt, in float32 eval mode with conv+bn fused.
    A head with an end-to-end branch is switched to it before fusing (fusing drops the branch not selected): that
    branch needs no NMS, so the host keeps only a top-k."""
    from ultralytics import YOLO  # optional and slow (seconds): only when a .pt detector is exported

    yolo = YOLO(str(weights))
    if yolo.task != task:
        what, arch = (FAMILY[task].what, FAMILY[task].arch) if task in FAMILY else (task, "")
        raise WorkbookError(f"Model {weights} is an ultralytics {yolo.task} model, not {what}; pass a {task} "
                            f".pt (e.g. trained from {arch}) or set task: {yolo.task} (or leave task empty).")
    model = copy.deepcopy(yolo.model).float()
    head = model.model[-1]
    if has_one2one(head) and hasattr(model, "end2end"):
        model.end2end = True
    return model.fuse(verbose=False).eval()


def _detect_layer(model: Any) -> Any:
    head = model.model[-1]
    if not all(hasattr(head, a) for a in ("cv2", "cv3", "reg_max", "nc", "stride")) or branches(head)[0] is None:
        raise WorkbookError(f"The last layer of this model is {type(head).__name__}, not a YOLO Detect head with box and class "
                            "branches; only YOLOv5u/v8/10/11/26-style detectors can be exported here; pass such a detect .pt.")
    return head


def is_end2end(head: Any) -> bool:
    """Whether the head infers through its one-to-one branch (top-k, no NMS)."""
    return bool(getattr(head, "end2end", False)) and has_one2one(head)


def branches(head: Any) -> tuple[Any, Any]:
    """The (box, class) convolution lists the export uses: the one-to-one branch of an end-to-end head, else cv2/cv3."""
    if is_end2end(head):
        return head.one2one_cv2, head.one2one_cv3
    return head.cv2, head.cv3


def head_parts(head: Any) -> dict[str, Any]:
    """The branch's convolution lists by ultralytics' forward_head names (box_head, cls_head, and mask_head for
    segment, pose_head (+ kpts_head for YOLO26) for pose): its one-to-one branch when end-to-end."""
    parts = dict(head.one2one if is_end2end(head) else head.one2many)
    parts["box_head"], parts["cls_head"] = branches(head)
    return parts


def head_task(head: Any) -> str:
    """detect, segment or pose, from the head's own parts (prototypes: segment; keypoints: pose)."""
    return "segment" if hasattr(head, "proto") else "pose" if hasattr(head, "kpt_shape") else "detect"


def _protos(head: Any, feats: list[Any]) -> Any:
    """The mask prototypes [1, nm, H/4, W/4]: YOLO26's Proto26 reads every feature map, YOLOv8/11's the finest."""
    from ultralytics.nn.modules.head import Segment26  # optional and slow: only when a .pt is exported

    out = head.proto(feats) if isinstance(head, Segment26) else head.proto(feats[0])
    return out[0] if isinstance(out, (tuple, list)) else out


def _keypoint_offsets(head: Any, parts: dict[str, Any], i: int, f: Any) -> Any:
    """One stride's keypoints [1, K*ndim, h, w] as offsets from the cell's top-left corner in stride units, then the
    sigmoid visibility: ultralytics' own decode (x = (2 * raw + column) * stride for Pose, (raw + 0.5 + column) *
    stride for YOLO26's Pose26) without the grid, so the offsets stay small and INT8 keeps a fine step."""
    import torch  # optional and slow: only when a .pt is exported

    raw = parts["pose_head"][i](f)
    if parts.get("kpts_head") is not None:  # YOLO26: a shared trunk, then the keypoint convolution
        raw = parts["kpts_head"][i](raw)
        scale, shift = 1.0, 0.5
    else:
        scale, shift = 2.0, 0.0
    k, ndim = int(head.kpt_shape[0]), int(head.kpt_shape[1])
    y = raw.view(raw.shape[0], k, ndim, raw.shape[2], raw.shape[3])
    pieces = [y[:, :, :2] * scale + shift] + ([y[:, :, 2:3].sigmoid()] if ndim == 3 else [])
    return torch.cat(pieces, 2).view(raw.shape[0], k * ndim, raw.shape[2], raw.shape[3])


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
    import torch  # optional and slow: only when a .pt detector is exported

    detect = _detect_layer(model)
    parts = head_parts(detect)
    end2end = is_end2end(detect)
    task = head_task(detect)

    class Split(torch.nn.Module):
        """Per stride: box regression (DFL logits or plain distances), sigmoid class scores, clamped score sum, and
        the mask coefficients or keypoints; then a segmenter's prototypes."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x):  # noqa: ANN001
            outs = []
            feats = _features(self.model, x)
            for i, f in enumerate(feats):
                scores = parts["cls_head"][i](f).sigmoid()
                outs += [parts["box_head"][i](f), scores, scores.sum(1, keepdim=True).clamp(0, 1)]
                if task == "segment":
                    outs.append(parts["mask_head"][i](f))
                elif task == "pose":
                    outs.append(_keypoint_offsets(detect, parts, i, f))
            return tuple(outs + ([_protos(detect, feats)] if task == "segment" else []))

    class Stock(torch.nn.Module):
        """ultralytics' own export output: decoded xywh boxes and sigmoid scores in one tensor (with the mask
        coefficients and the prototypes, or the keypoints in input pixels)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            detect.export, detect.format, detect.dynamic = True, "onnx", False

        def forward(self, x):  # noqa: ANN001
            feats = _features(self.model, x)
            if not end2end:
                return detect(feats)
            # The one-to-one branch decoded like ultralytics (xyxy for end-to-end), written as xywh + scores; ultralytics'
            # own top-k that would follow is left to the host.
            preds = detect.forward_head(feats, **parts)
            xyxy = detect._get_decode_boxes(preds)
            xywh = torch.cat(((xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]), 1)
            cols = [xywh, preds["scores"].sigmoid()]
            if task == "segment":
                return torch.cat(cols + [preds["mask_coefficient"]], 1), _protos(detect, feats)
            if task == "pose":
                cols.append(detect.kpts_decode(preds["kpts"]))
            return torch.cat(cols, 1)

    return Split() if head == "split" else Stock()


def export_detector(weights: str | Path, out_onnx: str | Path, imgsz: int, head: str = "split",
                    opset: int = TOOLKIT_MAX_OPSET, task: str = "detect", skeleton: Any = None) -> DetectExport:
    """Export the detector (or segmentation / pose model: `task`) in weights (.pt) to out_onnx (written atomically)
    with the chosen head; the task, head, class names, strides, reg_max, end2end, max_det (and nm / kpt_shape, and a pose
    data set's skeleton: the lines pictures and the board runner draw) are stored in the ONNX metadata."""
    import onnx  # optional and slow: only where an ONNX file is read or written
    import torch  # optional and slow: only when a .pt detector is exported

    if head not in HEADS:
        raise WorkbookError(f"head={head!r} is not a detector head layout; use one of {', '.join(HEADS)}.")
    if opset > TOOLKIT_MAX_OPSET:
        raise WorkbookError(f"opset={opset} is above what rknn-toolkit2 accepts; use opset <= {TOOLKIT_MAX_OPSET}.")
    model = load_detector(weights, task)
    detect = _detect_layer(model)
    strides = [int(s) for s in detect.stride.tolist()]
    if imgsz % max(strides):
        raise WorkbookError(f"imgsz={imgsz} is not a multiple of the detector's largest stride {max(strides)}; use e.g. "
                            f"{max(strides) * round(imgsz / max(strides))}.")
    names = [model.names[i] for i in range(len(model.names))]
    net = _wrapper(model, head).eval()
    extra = {"segment": ("coef",), "pose": ("kpt",)}.get(task, ())
    if head == "split":
        out_names = [f"{kind}{s}" for s in strides for kind in ("box", "cls", "sum", *extra)]
        out_names += ["protos"] if task == "segment" else []
    else:
        out_names = ["output0", "output1"] if task == "segment" else ["output0"]
    kpt_shape = [int(v) for v in detect.kpt_shape] if task == "pose" else None
    out_onnx = Path(out_onnx)
    out_onnx.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_onnx, ".partial.onnx") as tmp:
        # ultralytics' head caches its anchors behind a Python shape comparison the tracer warns about; the
        # input size is fixed, so the traced constant is right.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(net, torch.zeros(1, 3, imgsz, imgsz), str(tmp), opset_version=opset,
                              input_names=["images"], output_names=out_names, do_constant_folding=True)
        proto = onnx.load(str(tmp))
        meta = {"task": task, "head": head, "imgsz": str(imgsz), "names": json.dumps(names),
                "strides": json.dumps(strides), "reg_max": str(int(detect.reg_max)),
                "end2end": "true" if is_end2end(detect) else "false", "max_det": str(int(detect.max_det))}
        if task == "segment":
            meta["nm"] = str(int(detect.nm))
        if task == "pose":
            meta["kpt_shape"] = json.dumps(kpt_shape)
            if skeleton:
                meta["skeleton"] = json.dumps([list(map(int, pair)) for pair in skeleton])
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(tmp))
        check_onnx(tmp, imgsz)
    return DetectExport(out_onnx, head, imgsz, opset, names, strides, int(detect.reg_max), out_names, is_end2end(detect),
                        int(detect.max_det), task, kpt_shape)


def onnx_metadata(onnx_path: str | Path) -> dict[str, str]:
    """The key/value metadata of an ONNX file (ultralytics and export_detector both write some)."""
    import onnx  # optional and slow: only where an ONNX file is read or written

    return {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}


def decode_options(onnx_path: str | Path) -> dict[str, Any]:
    """The postprocess() keywords an exported model needs from its metadata: {"end2end": True} for an end-to-end head
    (top-k, no NMS), and a pose model's kpt_shape; {} for an NMS detector or an ONNX that does not say."""
    meta = onnx_metadata(onnx_path)
    out: dict[str, Any] = {"end2end": True} if str(meta.get("end2end", "")).lower() in ("true", "1") else {}
    if meta.get("task") == "pose" and meta.get("kpt_shape"):
        out["kpt_shape"] = [int(v) for v in ast.literal_eval(meta["kpt_shape"])]
    return out
