"""Split the head of an ultralytics-exported ONNX segmentation or pose model by graph surgery, for INT8.

Their stock export ends like a detector's (helpers/steps/export/onnx_split.py) with mask coefficients, or keypoints in
input pixels, appended to the boxes and scores in one tensor: one INT8 scale for all, and the scores collapse. Here
the per-stride box, class and mask-coefficient (or keypoint) convolutions become the outputs, in the layout and
metadata of helpers.steps.export.detect_head's split export: box{s}, cls{s}, sum{s}, coef{s} per stride, then protos
(segment); box{s}, cls{s}, sum{s}, kpt{s} per stride (pose), the keypoints as offsets from their cell in stride units
(ultralytics' 2 * raw for YOLOv8/11, raw + 0.5 for YOLO26) with sigmoid visibility. So postprocess_segment/pose read
them unchanged. An export with top-k inside (nms=False, end-to-end) is refused.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from helpers.core.errors import WorkbookError
from helpers.steps.export.onnx_split import (
    cannot_split,
    check_pixels,
    check_split,
    save_checked,
    save_split,
    split_graph,
    stop_convs,
    ultralytics_meta,
    write_metadata,
)
from helpers.tasks.pose import postprocess as pose_pp
from helpers.tasks.segment import postprocess as seg_pp

EXTRA = {"segment": "coef", "pose": "kpt"}


def is_stock_ultralytics_instances(onnx_path: str | Path) -> bool:
    """An ONNX ultralytics exported from a segmentation or pose model, not yet split by the workbook."""
    meta = ultralytics_meta(onnx_path)
    return meta.get("task") in EXTRA and meta.get("head") not in ("split", "stock")


def _kpt_shape(meta: dict[str, str], src: Path) -> list[int]:
    try:
        return [int(v) for v in ast.literal_eval(meta.get("kpt_shape", ""))]
    except (ValueError, SyntaxError) as exc:
        raise cannot_split(src, "its metadata does not give kpt_shape") from exc


def _keypoint_nodes(raw: str, s: int, shape: list[int], kpt_shape: list[int], yolo26: bool) -> tuple[list, list]:
    """Nodes turning one stride's raw keypoint convolution [1, K*ndim, h, w] into kpt{s}: x, y * 2 (YOLOv8/11) or
    + 0.5 (YOLO26), visibility through a sigmoid, as detect_head._keypoint_offsets computes."""
    import onnx  # optional and slow: only where an ONNX graph is edited
    from onnx import helper  # optional and slow: only where an ONNX graph is edited

    k, ndim = kpt_shape
    h, w = shape[2:]
    i64, f32, p = onnx.TensorProto.INT64, onnx.TensorProto.FLOAT, f"split/kpt{s}"
    inits = [helper.make_tensor(f"{p}/shape5", i64, [5], [1, k, ndim, h, w]),
             helper.make_tensor(f"{p}/shape4", i64, [4], [1, k * ndim, h, w]),
             helper.make_tensor(f"{p}/s0", i64, [1], [0]), helper.make_tensor(f"{p}/s2", i64, [1], [2]),
             helper.make_tensor(f"{p}/s3", i64, [1], [3]), helper.make_tensor(f"{p}/ax", i64, [1], [2]),
             helper.make_tensor(f"{p}/k", f32, [], [2.0]), helper.make_tensor(f"{p}/b", f32, [], [0.5])]
    nodes = [helper.make_node("Reshape", [raw, f"{p}/shape5"], [f"{p}/y"], name=f"{p}/reshape"),
             helper.make_node("Slice", [f"{p}/y", f"{p}/s0", f"{p}/s2", f"{p}/ax"], [f"{p}/xy"], name=f"{p}/xy")]
    op, const = ("Add", f"{p}/b") if yolo26 else ("Mul", f"{p}/k")
    nodes.append(helper.make_node(op, [f"{p}/xy", const], [f"{p}/xy2"], name=f"{p}/offsets"))
    parts = [f"{p}/xy2"]
    if ndim == 3:
        nodes += [helper.make_node("Slice", [f"{p}/y", f"{p}/s2", f"{p}/s3", f"{p}/ax"], [f"{p}/v"], name=f"{p}/v"),
                  helper.make_node("Sigmoid", [f"{p}/v"], [f"{p}/vis"], name=f"{p}/vis")]
        parts.append(f"{p}/vis")
    nodes += [helper.make_node("Concat", parts, [f"{p}/cat"], axis=2, name=f"{p}/cat"),
              helper.make_node("Reshape", [f"{p}/cat", f"{p}/shape4"], [f"kpt{s}"], name=f"{p}/flat")]
    return nodes, inits


def split_instances_onnx(src: str | Path, out: str | Path, imgsz: int | None = None) -> dict[str, Any]:
    """Write out (atomically): the ultralytics ONNX segmentation or pose model src with its head split like
    detect_head's split export (outputs, order, names, metadata). Raise WorkbookError (one sentence with the way out)
    when its output is not ultralytics' [1, 4 + classes + nm or K*ndim, anchors] (+ protos) computed per stride."""
    import onnx  # optional and slow: only where an ONNX file is read or written
    from onnx import helper  # optional and slow: only where an ONNX graph is edited

    src, out = Path(src), Path(out)
    model = onnx.load(str(src))
    meta = {p.key: p.value for p in model.metadata_props}
    task = meta.get("task", "")
    if task not in EXTRA:
        raise cannot_split(src, f"its metadata gives task {task!r}, not segment or pose")
    if "TopK" in {n.op_type for n in model.graph.node}:
        raise cannot_split(src, "a top-k is inside the graph: an end-to-end export with nms=False")
    want = 2 if task == "segment" else 1
    if len(model.graph.output) != want:
        raise cannot_split(src, f"{len(model.graph.output)} outputs instead of ultralytics' {want}")
    producer = {o: n for n in model.graph.node for o in n.output}
    last = producer.get(model.graph.output[0].name)
    if last is None or last.op_type != "Concat" or len(last.input) != 3:
        raise cannot_split(src, "its first output is not the concatenation of boxes, scores and "
                                f"{'mask coefficients' if task == 'segment' else 'keypoints'}")
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    extras = stop_convs(producer, weights, [last.input[2]])
    kpt_shape = _kpt_shape(meta, src) if task == "pose" else []
    channels = set(extras.values())
    if len(channels) != 1 or (kpt_shape and channels != {kpt_shape[0] * kpt_shape[1]}):
        raise cannot_split(src, f"its {EXTRA[task]} convolutions give {sorted(channels)} channels, not one count"
                                f"{f' of {kpt_shape[0]}x{kpt_shape[1]} keypoints' if kpt_shape else ''}")
    extra = channels.pop()
    given = [(o.name, [d.dim_value for d in o.type.tensor_type.shape.dim]) for o in model.graph.output]
    info, head_meta = split_graph(model, src, imgsz, extra=extra, skip=set(extras), task=task)
    shapes, strides = info["shapes"], info["strides"]
    if any(len(shapes.get(t) or []) != 4 or not shapes[t][2] for t in extras):
        raise cannot_split(src, "the head's shapes are not fixed (export it with dynamic=False)")
    ordered = sorted(extras, key=lambda t: -shapes[t][2])
    if len(ordered) != len(strides) or any(info["imgsz"] // shapes[t][2] != s for t, s in zip(ordered, strides)):
        raise cannot_split(src, f"its {EXTRA[task]} convolutions do not pair up with the box ones by stride")
    graph, f32 = model.graph, onnx.TensorProto.FLOAT
    renames: dict[str, str] = {}
    for t, s in zip(ordered, strides):
        if task == "segment":
            renames[t] = f"coef{s}"  # the coefficients' convolutions are the outputs themselves, as in the .pt export
        else:
            nodes, inits = _keypoint_nodes(t, s, shapes[t], kpt_shape, meta.get("head", "").endswith("26"))
            graph.node.extend(nodes)
            graph.initializer.extend(inits)
    if task == "segment":
        renames[given[1][0]] = "protos"
    for node in graph.node:
        node.output[:] = [renames.get(o, o) for o in node.output]
        node.input[:] = [renames.get(i, i) for i in node.input]
    by_name = {o.name: o for o in graph.output}
    outputs = []
    for t, s in zip(ordered, strides):
        outputs += [by_name[f"{kind}{s}"] for kind in ("box", "cls", "sum")]
        outputs.append(helper.make_tensor_value_info(f"{EXTRA[task]}{s}", f32, [1, extra, *shapes[t][2:]]))
    if task == "segment":
        outputs.append(helper.make_tensor_value_info("protos", f32, given[1][1]))
    outputs = [helper.make_tensor_value_info(o.name, f32, [d.dim_value for d in o.type.tensor_type.shape.dim]) for o in outputs]
    del graph.output[:]
    graph.output.extend(outputs)
    head_meta |= {"nm": str(extra)} if task == "segment" else {"kpt_shape": json.dumps(kpt_shape)}
    save_split(model, head_meta, out)
    return {**info, "task": task, "outputs": [o.name for o in outputs], "kpt_shape": kpt_shape, "nm": extra}


def _decoder(task: str, kpt_shape: Sequence[int]) -> Any:
    """The task's decode as check_split reads it: pixels (boxes, keypoint x, y) anchor by anchor, and every other
    number (scores, mask coefficients and prototypes, keypoint visibility) in one column."""
    def seg(outs: Sequence[np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores, coefs, _ = seg_pp.decode(outs, size)
        return boxes, np.concatenate([scores.ravel(), coefs.ravel(), np.asarray(outs[-1], np.float32).ravel()])[:, None]

    def pose(outs: Sequence[np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores, kpts = pose_pp.decode(outs, size, kpt_shape)
        return np.concatenate([boxes, kpts[:, :, :2].reshape(len(kpts), -1)], 1), np.concatenate([scores, kpts[:, :, 2]], 1)

    return seg if task == "segment" else pose


def split_user_instances_onnx(src: Path, model_dir: Path, images: Sequence[Path], imgsz: int,
                              skeleton: Any = None) -> dict[str, Any]:
    """Notebook 10 for an ultralytics ONNX segmentation or pose model: model_split.onnx (its head split, with a pose
    data set's skeleton) and model_stock.onnx (the file as given, with the workbook's metadata), the split checked
    against the file as given in FP32 on the images (letterboxed); neither file stays behind when they disagree."""
    import onnx  # optional and slow: only where an ONNX file is read or written

    stock, split = model_dir / "model_stock.onnx", model_dir / "model_split.onnx"
    info = split_instances_onnx(src, split, imgsz)
    split_meta = {p.key: p.value for p in onnx.load(str(split), load_external_data=False).metadata_props}
    model = onnx.load(str(src))
    meta = {p.key: p.value for p in model.metadata_props} | {k: split_meta[k] for k in (
        "task", "imgsz", "names", "strides", "reg_max", "end2end", "max_det", "nm" if info["task"] == "segment" else "kpt_shape")}
    extra = {"skeleton": json.dumps([list(map(int, pair)) for pair in skeleton])} if skeleton else {}
    write_metadata(model, meta | {"head": "stock"} | extra)
    save_checked(model, stock)
    if extra:
        save_split(onnx.load(str(split)), extra, split)
    try:
        pixels = check_pixels(images, info["imgsz"])
        return {**info, "check": check_split(src, split, pixels, decoder=_decoder(info["task"], info["kpt_shape"]))}
    except WorkbookError:  # neither head file may stay behind looking valid
        stock.unlink(missing_ok=True)
        split.unlink(missing_ok=True)
        raise
