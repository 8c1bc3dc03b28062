"""Split the head of an ultralytics-exported ONNX detector by graph surgery, for INT8.

`model.export(format="onnx")` of a YOLOv8/YOLO11/YOLO26 detector ends in one tensor [1, 4 + classes, anchors]: box
pixels next to 0..1 class scores, which INT8 crushes with one scale (helpers/steps/export/detect_head.py explains). The
per-stride box and class convolutions before the final concatenation are still in the graph: they become the
outputs here, class scores through their sigmoid, plus the clamped score sum, in the layout and metadata
helpers.steps.export.detect_head's split export writes (box{s}, cls{s}, sum{s} per stride), so helpers/tasks/detect/postprocess.py
decodes both. The box convolutions' channels give reg_max (4 per stride: YOLO26's plain distances). YOLO26's default
export carries its one-to-many branch (end2end "false": NMS); an end-to-end export (nms=False, YOLOv10: top-k inside,
output [1, max_det, 6]) is cut before its TopK (end2end "true": the host takes the top-k). `check_split` compares the
split graph with the original's own output in ONNX Runtime (FP32).
"""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from helpers.core.errors import WorkbookError
from helpers.core.paths import atomic_path
from helpers.tasks.detect.images import load_letterboxed, onnx_runner
from helpers.tasks.detect.postprocess import decode, topk

WAY_OUT = ("export the .pt instead (give model: the ultralytics .pt, whose head the workbook splits itself), "
           "or pass head: stock to go on with the stock head knowingly")


def ultralytics_meta(onnx_path: str | Path) -> dict[str, str]:
    """The metadata of an ONNX file when ultralytics wrote it (author Ultralytics), else {}."""
    import onnx  # optional and slow: only where an ONNX file is read or written

    meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    return meta if meta.get("author", "").lower().startswith("ultralytics") else {}


def is_stock_ultralytics_detector(onnx_path: str | Path) -> bool:
    """An ONNX ultralytics exported from a detector, not yet split by the workbook."""
    meta = ultralytics_meta(onnx_path)
    return meta.get("task") == "detect" and meta.get("head") not in ("split", "stock")


def _names(meta: dict[str, str]) -> list[str]:
    raw = meta.get("names") or "{}"
    names = json.loads(raw) if raw.lstrip().startswith("[") else ast.literal_eval(raw)
    return [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]


def cannot_split(path: Path, why: str) -> WorkbookError:
    return WorkbookError(f"The head of {path.name} cannot be split for INT8 ({why}); {WAY_OUT}.")


def stop_convs(producer: dict, weights: dict, start: list[str]) -> dict[str, int]:
    """Walking back from the tensors in start: the first 1x1 Conv on each path (its output -> channels); the DFL's
    1-channel Conv (no bias, unlike a single-class model's class Conv) is walked through."""
    stops, seen, todo = {}, set(), list(start)
    while todo:
        name = todo.pop()
        node = producer.get(name)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        dims = weights.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if dims and len(dims) == 4 and dims[2:] == [1, 1] and (dims[0] > 1 or len(node.input) > 2 and node.input[2]):
            stops[node.output[0]] = dims[0]
            continue
        if node.op_type == "Conv" and not dims:
            raise WorkbookError("a Conv without a constant weight sits in the head")
        todo.extend(i for i in node.input if i)
    return stops


def _behind_sigmoid(model: Any, producer: dict, weights: dict, stops: set[str]) -> tuple[set[str], str]:
    """The head convolutions behind the class scores' Sigmoid and its output: the one feeding the output
    (YOLOv8/11/26's default export), else (an end-to-end export, top-k after it) any Sigmoid behind some of them only."""
    last = producer.get(model.graph.output[0].name)
    first = [producer[i] for i in (last.input if last is not None else []) if i in producer and producer[i].op_type == "Sigmoid"]
    for node in first + [n for n in model.graph.node if n.op_type == "Sigmoid"]:
        behind = set(stop_convs(producer, weights, list(node.input)))
        if behind and behind < stops:
            return behind, node.output[0]
    return set(), ""


def _pre_topk(model: Any) -> str:
    """In an end-to-end export: the [1, 4 + classes, anchors] tensor (xyxy boxes, sigmoid scores) its top-k reads,
    the Concat of the decoded boxes and the class scores' Sigmoid; "" when there is none."""
    producer = {o: n for n in model.graph.node for o in n.output}
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    stops = stop_convs(producer, weights, [o.name for o in model.graph.output])
    scores = _behind_sigmoid(model, producer, weights, set(stops))[1]
    cat = [n for n in model.graph.node if n.op_type == "Concat" and len(n.input) == 2 and n.input[1] == scores]
    return cat[0].output[0] if scores and cat else ""


def _topk_k(model: Any) -> int:
    """The k of the graph's TopK (ultralytics' max_det), 300 when it is not a constant."""
    from onnx import numpy_helper  # optional and slow: only where an ONNX graph is edited

    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    ks = [consts[n.input[1]] for n in model.graph.node if n.op_type == "TopK" and len(n.input) > 1 and n.input[1] in consts]
    return int(np.asarray(ks[0]).reshape(-1)[0]) if ks else 300


def _head_convs(model: Any, nc: int, skip: set[str]) -> tuple[list[str], list[str], int]:
    """The box and class convolutions the final output is computed from (those in skip left out: a segmentation or
    pose head's own); the class ones are those behind the output's Sigmoid (or, where boxes and classes are
    concatenated before it, those with `nc` channels)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    stops = {t: c for t, c in stop_convs(producer, weights, [model.graph.output[0].name]).items() if t not in skip}
    behind = _behind_sigmoid(model, producer, weights, set(stops))[0]
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
    logits or, reg_max 1, plain distances; cls{s}: sigmoid class scores, sum{s}: their clamped sum), the rest of the graph
    unchanged, and the metadata of helpers.steps.export.detect_head's split export (end2end "true" when the graph ends in
    ultralytics' top-k, which is cut off). Raise WorkbookError (one sentence with the way out) when the output is not
    computed from per-stride box and class convolutions (e.g. NMS inside the graph)."""
    import onnx  # optional and slow: only where an ONNX file is read or written

    src, out = Path(src), Path(out)
    model = onnx.load(str(src))
    if len(model.graph.output) != 1:
        raise cannot_split(src, f"{len(model.graph.output)} outputs instead of ultralytics' single [1, 4 + classes, anchors]")
    info, head_meta = split_graph(model, src, imgsz)
    save_split(model, head_meta, out)
    return info


def split_graph(model: Any, src: Path, imgsz: int | None, extra: int = 0, skip: set[str] | None = None,
                task: str = "detect") -> tuple[dict[str, Any], dict[str, str]]:
    """split_onnx's surgery on the loaded graph: box{s}, cls{s}, sum{s} become its outputs (not yet pruned); `extra`
    channels after the classes in output 0 come from the convolutions in skip (a segmentation or pose head's, which
    the caller cuts). Returns the split's figures (strides, shapes, ...) and its metadata."""
    import onnx  # optional and slow: only where an ONNX graph is edited
    from onnx import helper, shape_inference  # optional and slow: only where an ONNX graph is edited

    meta = {p.key: p.value for p in model.metadata_props}
    ops = {n.op_type for n in model.graph.node}
    if "NonMaxSuppression" in ops:
        raise cannot_split(src, "non-maximum suppression is inside the graph")
    dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    names = _names(meta)
    end2end = "TopK" in ops or meta.get("end2end", "").lower() == "true"
    max_det = _topk_k(model) if end2end else 300  # the k ultralytics' top-k used, kept for the host's
    nc = len(names) or (dims[1] - 4 - extra if len(dims) == 3 and dims[1] > 4 + extra and not end2end else 0)
    if end2end and not (nc and len(dims) == 3 and dims[2] == 6):
        raise cannot_split(src, f"an end-to-end head whose output has shape {dims}, not ultralytics' [1, max_det, 6] with "
                                "class names")
    if not end2end and (len(dims) != 3 or dims[1] != 4 + nc + extra):
        more = f" + {extra}" if extra else ""
        raise cannot_split(src, f"its output has shape {dims}, not [1, 4 + {nc} classes{more}, anchors]")
    try:
        box, cls, reg_max = _head_convs(model, nc, skip or set())
    except WorkbookError as exc:
        raise cannot_split(src, str(exc)) from exc
    inferred = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.output]}
    in_hw = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][2:]
    size = int(imgsz or in_hw[0])
    if any(not shapes.get(t) or len(shapes[t]) != 4 or not shapes[t][2] for t in box + cls):
        raise cannot_split(src, "the head's shapes are not fixed (export it with dynamic=False)")
    box.sort(key=lambda t: -shapes[t][2])
    cls.sort(key=lambda t: -shapes[t][2])
    if [shapes[t][2:] for t in box] != [shapes[t][2:] for t in cls]:
        raise cannot_split(src, "its box and class convolutions do not pair up by stride")
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
    head_meta = {"task": task, "head": "split", "imgsz": str(size), "names": json.dumps(names or [str(i) for i in range(nc)]),
                 "strides": json.dumps(strides), "reg_max": str(reg_max), "end2end": "true" if end2end else "false",
                 "max_det": str(max_det), "split_from": src.name}
    return {"strides": strides, "reg_max": reg_max, "classes": nc, "imgsz": size, "end2end": end2end,
            "max_det": int(head_meta["max_det"]), "outputs": [o.name for o in outputs], "shapes": shapes,
            "opset": opset}, head_meta


def save_split(model: Any, head_meta: dict[str, str], out: Path) -> None:
    """Prune the graph to its outputs, write head_meta over the metadata it came with, check it, save it atomically."""

    prune(model)
    write_metadata(model, {**{p.key: p.value for p in model.metadata_props}, **head_meta})
    save_checked(model, out)


def write_metadata(model: Any, meta: dict[str, str]) -> None:
    """Replace the graph's metadata with meta (the keys the workbook's later steps and the bundle read)."""
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def save_checked(model: Any, out: Path) -> None:
    """Check the graph with onnx's checker and save it under a temporary name, renamed when complete."""
    import onnx  # optional and slow: only where an ONNX file is read or written

    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, ".partial.onnx") as tmp:
        onnx.save(model, str(tmp))


def check_pixels(images: Sequence[Path], size: int) -> np.ndarray:
    """The letterboxed images a split's FP32 check runs on; with none to hand, a fixed random batch (every anchor runs)."""
    if images:
        return np.stack(load_letterboxed(list(images), size)[0])
    return np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)


def prune(model: Any) -> None:
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


def _topk_rows(outputs: Sequence[np.ndarray], size: int, k: int) -> np.ndarray:
    """One image's outputs as ultralytics' end-to-end rows [k, 6] (xyxy, score, class), best first: the rows
    themselves for an export with top-k inside, else postprocess.py's decode and top-k."""
    if len(outputs) == 1 and outputs[0].ndim == 3 and outputs[0].shape[-1] == 6:
        return np.asarray(outputs[0][0], np.float32)[:k]
    boxes, scores = decode(outputs, size)
    rows, cls, conf = topk(scores, k)
    return np.concatenate([boxes[rows], conf[:, None], cls[:, None].astype(np.float32)], axis=1)


def _rows_apart(a: np.ndarray, b: np.ndarray, tol_score: float) -> tuple[float, float]:
    """Largest box and score differences between two top-k row lists; rows whose scores tie (within tol_score) may come
    in either order, so each row of a is compared with the closest row of b of its class among its ties."""
    if a.shape != b.shape:
        return float("inf"), float("inf")
    worst_box, worst_score = 0.0, float(np.abs(a[:, 4] - b[:, 4]).max()) if len(a) else 0.0
    for row in a:
        ties = b[(np.abs(b[:, 4] - row[4]) <= tol_score) & (b[:, 5] == row[5])]
        worst_box = max(worst_box, float(np.abs(ties[:, :4] - row[:4]).max(axis=1).min()) if len(ties) else float("inf"))
    return worst_box, worst_score


def check_split(original: str | Path, split: str | Path, pixels: np.ndarray, tol_px: float = 0.05,
                tol_score: float = 1e-4, end2end_k: int = 0,
                decoder: Callable[[Sequence[np.ndarray], int], tuple[np.ndarray, np.ndarray]] = decode) -> dict[str, Any]:
    """Run both ONNX files in ONNX Runtime (FP32) on uint8 NHWC images (letterboxed, x / 255) and compare what
    postprocess.py decodes from each (decoder: pixels, then scores; a segmentation or pose model's own): every anchor's
    box and class scores, or, end2end_k > 0 (an original with top-k inside), its k rows against the split's decode and
    top-k. Raise WorkbookError when they differ; returns the largest differences."""
    runners = {"a": onnx_runner(original), "b": onnx_runner(split)}
    size = pixels.shape[1]
    worst_box = worst_score = 0.0
    for img in pixels:
        got = {k: run(img) for k, run in runners.items()}
        if end2end_k:
            box, score = _rows_apart(_topk_rows(got["a"], size, end2end_k), _topk_rows(got["b"], size, end2end_k), tol_score)
            worst_box, worst_score = max(worst_box, box), max(worst_score, score)
            continue
        (ba, sa), (bb, sb) = decoder(got["a"], size), decoder(got["b"], size)
        if ba.shape != bb.shape or sa.shape != sb.shape:
            raise WorkbookError(f"The split head of {Path(original).name} decodes boxes {list(bb.shape)} and scores "
                                f"{list(sb.shape)} but the original gives {list(ba.shape)} and {list(sa.shape)}; {WAY_OUT}.")
        worst_box = max(worst_box, float(np.abs(ba - bb).max()))
        worst_score = max(worst_score, float(np.abs(sa - sb).max()))
    result = {"images": int(len(pixels)), "max_box_diff_px": worst_box, "max_score_diff": worst_score}
    if worst_box > tol_px * max(1.0, size / 64) or worst_score > tol_score:
        raise WorkbookError(f"The split head of {Path(original).name} disagrees with the original ONNX in FP32 "
                            f"(boxes up to {worst_box:.3g} px, "
                            f"scores up to {worst_score:.3g} apart on {len(pixels)} images); {WAY_OUT}.")
    return result


def _cut_before_topk(model: Any, src: Path) -> None:
    """An end-to-end export made a stock head the NPU can run: the graph ends at the tensor its top-k reads, boxes
    turned from xyxy to postprocess.py's xywh: output0 [1, 4 + classes, anchors] (the top-k moves to the host)."""
    import onnx  # optional and slow: only where an ONNX file is read or written
    from onnx import helper  # optional and slow: only where an ONNX graph is edited

    cut = _pre_topk(model)
    if not cut:
        raise cannot_split(src, "its top-k does not read one [1, 4 + classes, anchors] tensor of boxes and sigmoid scores")
    ints = [("s0", 0), ("s2", 2), ("s4", 4), ("big", 1 << 30), ("ax", 1)]
    inits = [helper.make_tensor(f"stock/{n}", onnx.TensorProto.INT64, [1], [v]) for n, v in ints]
    inits.append(helper.make_tensor("stock/half", onnx.TensorProto.FLOAT, [], [0.5]))
    part = {"lo": ("s0", "s2"), "hi": ("s2", "s4"), "scores": ("s4", "big")}
    nodes = [helper.make_node("Slice", [cut, f"stock/{a}", f"stock/{b}", "stock/ax"], [f"stock/{k}"], name=f"stock/{k}")
             for k, (a, b) in part.items()]
    nodes += [helper.make_node("Add", ["stock/lo", "stock/hi"], ["stock/sum"], name="stock/add"),
              helper.make_node("Mul", ["stock/sum", "stock/half"], ["stock/xy"], name="stock/centre"),
              helper.make_node("Sub", ["stock/hi", "stock/lo"], ["stock/wh"], name="stock/size"),
              helper.make_node("Concat", ["stock/xy", "stock/wh", "stock/scores"], ["output0"], axis=1, name="stock/xywh")]
    inferred = onnx.shape_inference.infer_shapes(model)
    dims = next(([d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info if v.name == cut), None)
    old = model.graph.output[0]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("output0", old.type.tensor_type.elem_type, dims))
    prune(model)


def split_user_onnx(src: Path, model_dir: Path, images: Sequence[Path], imgsz: int) -> dict[str, Any]:
    """Notebook 10 for an ultralytics ONNX detector: model_stock.onnx (the file as given; an end-to-end export cut
    before its top-k), model_split.onnx (its head split), both checked against the file as given in FP32 on the images
    (letterboxed); returns the check's figures."""
    import onnx  # optional and slow: only where an ONNX file is read or written

    stock, split = model_dir / "model_stock.onnx", model_dir / "model_split.onnx"
    info = split_onnx(src, split, imgsz)
    model = onnx.load(str(src))
    if info["end2end"]:
        _cut_before_topk(model, src)
    meta = {p.key: p.value for p in model.metadata_props}
    meta |= {"task": "detect", "head": "stock", "imgsz": str(info["imgsz"]), "names": json.dumps(_names(meta)),
             "reg_max": str(info["reg_max"]), "end2end": "true" if info["end2end"] else "false", "max_det": str(info["max_det"])}
    write_metadata(model, meta)
    save_checked(model, stock)
    pixels = check_pixels(images, info["imgsz"])
    k = info["max_det"] if info["end2end"] else 0
    try:
        if k:
            check_split(src, stock, pixels, end2end_k=k)
        return {**info, "check": check_split(src if k else stock, split, pixels, end2end_k=k)}
    except WorkbookError:  # neither head file may stay behind looking valid
        stock.unlink(missing_ok=True)
        split.unlink(missing_ok=True)
        raise
