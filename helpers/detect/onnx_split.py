"""Split the head of an ultralytics-exported ONNX detector by graph surgery, for INT8.

`model.export(format="onnx")` of a YOLOv8/YOLO11 detector ends in one tensor [1, 4 + classes, anchors]: box
pixels next to 0..1 class scores, which INT8 crushes with one scale (helpers/detect/head.py explains). The
per-stride box and class convolutions before the final concatenation are still in the graph: they become the
outputs here, class scores through their sigmoid, plus the clamped score sum, in the layout and metadata
helpers.detect.head's split export writes (box{s}, cls{s}, sum{s} per stride), so helpers/detect/postprocess.py
decodes both. `check_split` compares the split graph with the original's own output in ONNX Runtime (FP32).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import WorkbookError

WAY_OUT = ("export the .pt instead (give model: the ultralytics .pt, whose head the workbook splits itself), "
           "or pass head: stock to go on with the stock head knowingly")


def ultralytics_meta(onnx_path: str | Path) -> dict[str, str]:
    """The metadata of an ONNX file when ultralytics wrote it (author Ultralytics), else {}."""
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    return meta if meta.get("author", "").lower().startswith("ultralytics") else {}


def is_stock_ultralytics_detector(onnx_path: str | Path) -> bool:
    """An ONNX ultralytics exported from a detector, not yet split by the workbook."""
    meta = ultralytics_meta(onnx_path)
    return meta.get("task") == "detect" and meta.get("head") not in ("split", "stock")


def _names(meta: dict[str, str]) -> list[str]:
    import ast

    raw = meta.get("names") or "{}"
    names = json.loads(raw) if raw.lstrip().startswith("[") else ast.literal_eval(raw)
    return [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]


def _cannot(path: Path, why: str) -> WorkbookError:
    return WorkbookError(f"The head of {path.name} cannot be split for INT8 ({why}); {WAY_OUT}.")


def _stop_convs(producer: dict, weights: dict, start: list[str]) -> dict[str, int]:
    """Walking back from the tensors in start: the first 1x1 Conv with more than one output channel on each path
    (its output -> channels); the DFL's 1-channel Conv is walked through."""
    stops, seen, todo = {}, set(), list(start)
    while todo:
        name = todo.pop()
        node = producer.get(name)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        dims = weights.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if dims and len(dims) == 4 and dims[2:] == [1, 1] and dims[0] > 1:
            stops[node.output[0]] = dims[0]
            continue
        if node.op_type == "Conv" and not dims:
            raise WorkbookError("a Conv without a constant weight sits in the head")
        todo.extend(i for i in node.input if i)
    return stops


def _head_convs(model: Any, nc: int) -> tuple[list[str], list[str], int]:
    """The box and class convolutions the final output is computed from; the class ones are those behind the
    output's Sigmoid (or, where boxes and classes are concatenated before it, those with `nc` channels)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    stops = _stop_convs(producer, weights, [o.name for o in model.graph.output])
    last = producer.get(model.graph.output[0].name)
    sigmoid = [producer[i] for i in (last.input if last is not None else []) if i in producer and producer[i].op_type == "Sigmoid"]
    behind = set(_stop_convs(producer, weights, list(sigmoid[0].input))) if sigmoid else set()
    if behind and behind != set(stops):
        cls = [t for t in stops if t in behind]
    else:
        cls = [t for t, c in stops.items() if c == nc]
    box = [t for t in stops if t not in cls]
    channels = {stops[t] for t in box}
    if not cls or len(cls) != len(box) or len(channels) != 1 or next(iter(channels)) % 4:
        raise WorkbookError(f"the output is not computed from per-stride box and class convolutions (found {len(box)} box and "
                            f"{len(cls)} class convolutions)")
    return box, cls, next(iter(channels)) // 4


def split_onnx(src: str | Path, out: str | Path, imgsz: int | None = None) -> dict[str, Any]:
    """Write out (atomically): the ONNX detector src with its head split per stride (box{s}: the box distribution
    logits, cls{s}: sigmoid class scores, sum{s}: their clamped sum), the rest of the graph unchanged, and the
    metadata of helpers.detect.head's split export. Raise WorkbookError (one sentence with the way out) when the
    graph is not a YOLOv8/YOLO11-style head (e.g. an end-to-end YOLO26/YOLOv10 graph with TopK inside)."""
    import onnx
    from onnx import helper, shape_inference

    src, out = Path(src), Path(out)
    model = onnx.load(str(src))
    meta = {p.key: p.value for p in model.metadata_props}
    ops = {n.op_type for n in model.graph.node}
    if "TopK" in ops or meta.get("end2end", "").lower() == "true" or "NonMaxSuppression" in ops:
        raise _cannot(src, "an end-to-end head: top-k selection or NMS is inside the graph")
    if len(model.graph.output) != 1:
        raise _cannot(src, f"{len(model.graph.output)} outputs instead of ultralytics' single [1, 4 + classes, anchors]")
    dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    names = _names(meta)
    nc = len(names) or (dims[1] - 4 if len(dims) == 3 and dims[1] > 4 else 0)
    if len(dims) != 3 or dims[1] != 4 + nc:
        raise _cannot(src, f"its output has shape {dims}, not [1, 4 + {nc} classes, anchors]")
    try:
        box, cls, reg_max = _head_convs(model, nc)
    except WorkbookError as exc:
        raise _cannot(src, str(exc)) from exc
    if reg_max < 2:
        raise _cannot(src, "its boxes are plain regressions (reg_max 1, as in YOLO26), not the distributions postprocess.py decodes")
    inferred = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.output]}
    in_hw = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][2:]
    size = int(imgsz or in_hw[0])
    if any(not shapes.get(t) or len(shapes[t]) != 4 or not shapes[t][2] for t in box + cls):
        raise _cannot(src, "the head's shapes are not fixed (export it with dynamic=False)")
    box.sort(key=lambda t: -shapes[t][2])
    cls.sort(key=lambda t: -shapes[t][2])
    if [shapes[t][2:] for t in box] != [shapes[t][2:] for t in cls]:
        raise _cannot(src, "its box and class convolutions do not pair up by stride")
    strides = [size // shapes[t][2] for t in box]
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)

    nodes, outputs, inits = [], [], []
    for s, b, c in zip(strides, box, cls):
        h, w = shapes[b][2:]
        nodes.append(helper.make_node("Sigmoid", [c], [f"cls{s}"], name=f"split/cls{s}"))
        if opset >= 13:
            inits.append(helper.make_tensor(f"split/axes{s}", onnx.TensorProto.INT64, [1], [1]))
            nodes.append(helper.make_node("ReduceSum", [f"cls{s}", f"split/axes{s}"], [f"split/raw_sum{s}"], keepdims=1,
                                          name=f"split/sum{s}"))
        else:
            nodes.append(helper.make_node("ReduceSum", [f"cls{s}"], [f"split/raw_sum{s}"], axes=[1], keepdims=1,
                                          name=f"split/sum{s}"))
        if opset >= 11:
            inits += [helper.make_tensor(f"split/lo{s}", onnx.TensorProto.FLOAT, [], [0.0]),
                      helper.make_tensor(f"split/hi{s}", onnx.TensorProto.FLOAT, [], [1.0])]
            nodes.append(helper.make_node("Clip", [f"split/raw_sum{s}", f"split/lo{s}", f"split/hi{s}"], [f"sum{s}"],
                                          name=f"split/clip{s}"))
        else:
            nodes.append(helper.make_node("Clip", [f"split/raw_sum{s}"], [f"sum{s}"], min=0.0, max=1.0, name=f"split/clip{s}"))
        f32 = onnx.TensorProto.FLOAT
        outputs += [helper.make_tensor_value_info(f"box{s}", f32, [1, 4 * reg_max, h, w]),
                    helper.make_tensor_value_info(f"cls{s}", f32, [1, nc, h, w]),
                    helper.make_tensor_value_info(f"sum{s}", f32, [1, 1, h, w])]
    graph = model.graph
    renames = {b: f"box{s}" for s, b in zip(strides, box)}  # the box convolutions' outputs become box{s} themselves
    for node in graph.node:
        node.output[:] = [renames.get(o, o) for o in node.output]
        node.input[:] = [renames.get(i, i) for i in node.input]
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    del graph.output[:]
    graph.output.extend(outputs)
    _prune(model)
    head_meta = {"task": "detect", "head": "split", "imgsz": str(size), "names": json.dumps(names or [str(i) for i in range(nc)]),
                 "strides": json.dumps(strides), "reg_max": str(reg_max), "split_from": src.name}
    kept = {k: v for k, v in meta.items() if k not in head_meta}
    del model.metadata_props[:]
    for key, value in {**kept, **head_meta}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".partial.onnx")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    return {"strides": strides, "reg_max": reg_max, "classes": nc, "imgsz": size, "outputs": [o.name for o in outputs]}


def _prune(model: Any) -> None:
    """Drop the nodes (and initializers) the new outputs no longer need: the old decode and concatenation."""
    producer = {o: n for n in model.graph.node for o in n.output}
    needed, todo = set(), [o.name for o in model.graph.output]
    while todo:
        node = producer.get(todo.pop())
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        todo.extend(i for i in node.input if i)
    keep = [n for n in model.graph.node if id(n) in needed]
    used = {i for n in keep for i in n.input}
    inits = [i for i in model.graph.initializer if i.name in used]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)
    vis = [v for v in model.graph.value_info if v.name in used]
    del model.graph.value_info[:]
    model.graph.value_info.extend(vis)


def check_split(original: str | Path, split: str | Path, pixels: np.ndarray, tol_px: float = 0.05,
                tol_score: float = 1e-4) -> dict[str, Any]:
    """Run both ONNX files in ONNX Runtime (FP32) on uint8 NHWC images (letterboxed, x / 255) and compare what
    postprocess.py decodes from each: every anchor's box and class scores. Raise WorkbookError when they differ;
    returns the largest differences."""
    import onnxruntime as ort

    from .postprocess import decode

    sess = {k: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for k, p in (("a", original), ("b", split))}
    size = pixels.shape[1]
    worst_box = worst_score = 0.0
    for img in pixels:
        x = (img.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        got = {k: s.run(None, {s.get_inputs()[0].name: x}) for k, s in sess.items()}
        (ba, sa), (bb, sb) = decode(got["a"], size), decode(got["b"], size)
        if ba.shape != bb.shape or sa.shape != sb.shape:
            raise WorkbookError(f"The split head of {Path(original).name} decodes {len(bb)} anchors but the original "
                                f"gives {len(ba)}; "
                                f"{WAY_OUT}.")
        worst_box = max(worst_box, float(np.abs(ba - bb).max()))
        worst_score = max(worst_score, float(np.abs(sa - sb).max()))
    result = {"images": int(len(pixels)), "max_box_diff_px": worst_box, "max_score_diff": worst_score}
    if worst_box > tol_px * max(1.0, size / 64) or worst_score > tol_score:
        raise WorkbookError(f"The split head of {Path(original).name} disagrees with the original ONNX in FP32 "
                            f"(boxes up to {worst_box:.3g} px, "
                            f"scores up to {worst_score:.3g} apart on {len(pixels)} images); {WAY_OUT}.")
    return result


def split_user_onnx(src: Path, model_dir: Path, images: Sequence[Path], imgsz: int) -> dict[str, Any]:
    """Notebook 10 for an ultralytics ONNX detector: model_stock.onnx (the file as given), model_split.onnx (its head
    split) checked against it in FP32 on the images (letterboxed); returns the check's figures."""
    from .simulate import load_letterboxed

    import onnx

    stock, split = model_dir / "model_stock.onnx", model_dir / "model_split.onnx"
    info = split_onnx(src, split, imgsz)
    model = onnx.load(str(src))
    meta = {p.key: p.value for p in model.metadata_props}
    meta |= {"task": "detect", "head": "stock", "imgsz": str(info["imgsz"]), "names": json.dumps(_names(meta))}
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    tmp = stock.with_name("model_stock.partial.onnx")
    onnx.save(model, str(tmp))
    tmp.replace(stock)
    if images:
        pixels = np.stack(load_letterboxed(list(images), info["imgsz"])[0])
    else:  # no images to hand: a fixed random batch still exercises every anchor
        pixels = np.random.default_rng(0).integers(0, 256, (2, info["imgsz"], info["imgsz"], 3), dtype=np.uint8)
    return {**info, "check": check_split(stock, split, pixels)}
