"""The detection steps of the notebook series (task: detect): notebook 10's export of both heads, notebook
30's FP32 vs INT8 measurement (chosen head and the other one, same images), the pictures and the
sentences that read the run's own numbers."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from helpers.core.errors import WorkbookError
from helpers.core.paths import REPO, Run, write_json_atomic
from helpers.steps.export.detect_head import HEADS, decode_options, export_detector, onnx_metadata
from helpers.tasks.detect.postprocess import Detections
from helpers.tasks.detect.sample import prepare_detect_model

HEAD_ONNX = "model_{head}.onnx"
BGR = "INT8 BGR"  # precision label of the diagnostic row: the INT8 model fed BGR images (the tutorial's colour bug)


def resolve_data(data: str | Path) -> str:
    """A data.yaml (or its folder) given relative to the repository root made absolute; "" stays "" (the sample)."""
    if not str(data).strip():
        return ""
    path = Path(data).expanduser()
    path = path if path.is_absolute() else REPO / path
    from helpers.tasks.data import detect_yaml

    found = detect_yaml(path)
    if found is None:
        raise WorkbookError(f"data_dir={str(data)!r} is not a YOLO detection data set (a data.yaml with train:, val:, names:, or its "
                            "folder), which task: detect needs; pass one, or set task: classify for a class-folder layout.")
    return str(found)


def prepare(run: Run, model: str, data: str, imgsz: int, epochs: int) -> tuple[Path, Path, str]:
    """The detector, its data.yaml and a one-line description (the user's, or the cached sample); a
    user's detector is checked against the labels (class ids beyond its classes: one sentence)."""
    from helpers.tasks.detect.labels import read_split
    from helpers.tasks.identify import class_names

    path, data_yaml, about = prepare_detect_model(run, model, resolve_data(data), imgsz=imgsz, epochs=epochs)
    names = class_names(path) if str(model).strip() else None
    if names:
        for split in ("train", "val"):
            read_split(data_yaml, split, num_classes=len(names))
    return path, data_yaml, about


def export_heads(model_path: Path, model_dir: Path, imgsz: int, head: str, opset: int, data: str | Path = "") -> dict[str, Any]:
    """Export a detector with both heads (model_split.onnx, model_stock.onnx) and the chosen one as model.onnx, which
    notebook 20 converts. An ultralytics .pt: helpers.steps.export.detect_head writes both. An ONNX ultralytics exported: it is the
    stock head, and its head is split by graph surgery (onnx_split), checked against it in FP32 on a few val images of
    `data`; a graph that cannot be split stops in one sentence unless head is stock. Any other ONNX is used as it is."""
    from helpers.steps.export.exporter import TOOLKIT_MAX_OPSET, downgrade_opset, onnx_io
    from helpers.steps.export.onnx_split import is_stock_ultralytics_detector, split_user_onnx

    if head not in HEADS:
        raise WorkbookError(f"head={head!r} is not a detector head layout; use one of {', '.join(HEADS)}.")
    model_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("model.torchscript", "model.torchscript.json", *(HEAD_ONNX.format(head=h) for h in HEADS)):
        (model_dir / stale).unlink(missing_ok=True)  # a classifier exported here earlier, or another model's heads
    note, check = "", None
    if model_path.suffix.lower() == ".onnx":
        source = model_path
        found = onnx_io(model_path)["opset"]
        if found > TOOLKIT_MAX_OPSET:
            source = downgrade_opset(model_path, model_dir / "model.lowered.onnx", TOOLKIT_MAX_OPSET)
            note = f"opset {found} lowered to {TOOLKIT_MAX_OPSET} with onnx's version converter; "
        if is_stock_ultralytics_detector(source) and head == "split":
            check = split_user_onnx(source, model_dir, _check_images(data), imgsz)
            note += (f"an ultralytics ONNX was given: its head was split by graph surgery (strides {check['strides']}), "
                     f"model_stock.onnx is the file as given{' cut before its top-k' if check['end2end'] else ''}")
        else:
            meta = onnx_metadata(source)
            head = meta.get("head") if meta.get("head") in HEADS else ("stock" if is_stock_ultralytics_detector(source) else head)
            check_decodable(source, onnx_io(source), meta)
            note += "an ONNX was given: used as it is, no second head to compare with"
        if check is None:
            shutil.copyfile(source, model_dir / "model.partial.onnx")
        else:
            shutil.copyfile(model_dir / HEAD_ONNX.format(head=head), model_dir / "model.partial.onnx")
        (model_dir / "model.lowered.onnx").unlink(missing_ok=True)
    else:
        for h in HEADS:
            export_detector(model_path, model_dir / HEAD_ONNX.format(head=h), imgsz, head=h, opset=opset)
        shutil.copyfile(model_dir / HEAD_ONNX.format(head=head), model_dir / "model.partial.onnx")
    (model_dir / "model.partial.onnx").replace(model_dir / "model.onnx")
    return {"kind": "ultralytics detect", "opset": opset, "torchscript": "", "opset_note": note, "head": head, "split_check": check}


def _check_images(data: str | Path, n: int = 8) -> list[Path]:
    """A few val images of a detection data set for the FP32 check of a split ONNX ([] when there is none)."""
    from helpers.tasks.data import detect_yaml
    from helpers.tasks.detect.labels import read_split

    found = detect_yaml(Path(data)) if str(data).strip() else None
    return list(read_split(found, "val").paths[:n]) if found else []


def split_check_note(check: dict[str, Any]) -> str:
    """Notebook 10's sentence on the graph surgery's FP32 check."""
    c = check["check"]
    return (f"**The split head computes what the original ONNX computes** (ONNX Runtime, FP32, {c['images']} images): decoded boxes "
            f"at most {c['max_box_diff_px']:.2g} px apart, class scores at most {c['max_score_diff']:.2g}; outputs "
            f"{', '.join(check['outputs'])}.")


def check_decodable(path: Path, io: dict[str, Any], meta: dict[str, str]) -> None:
    """An ONNX detector used as it is must give outputs postprocess.py reads: box/cls/sum per stride (the split head)
    or one [1, 4 + classes, anchors] tensor (the stock head); anything else (NMS or top-k inside the graph) would be
    misread and score 0 without a word, so it stops here in one sentence."""
    shapes = [o["shape"] for o in io["outputs"]]
    names = [o["name"] for o in io["outputs"]]
    if len(names) % 3 == 0 and all(n.startswith(("box", "cls", "sum")) for n in names):
        return
    raw = meta.get("strides") or ""  # the workbook's heads record theirs; ultralytics' P3-P5 heads use 8, 16, 32
    strides = json.loads(raw) if raw.startswith("[") else [8, 16, 32]
    size = int(io["inputs"][0]["shape"][-1]) if isinstance(io["inputs"][0]["shape"][-1], int) else 0
    anchors = sum((size // int(s)) ** 2 for s in strides) if size else None
    if len(shapes) == 1 and len(shapes[0]) == 3 and isinstance(shapes[0][1], int) and shapes[0][1] > 4 \
            and (anchors is None or shapes[0][2] == anchors):
        return
    raise WorkbookError(f"The detector {path.name} gives outputs {shapes}, a layout the workbook's decode cannot read (one "
                        f"[1, 4 + classes, {anchors or 'anchors'}] tensor, or box/cls/sum per stride): NMS or a top-k inside the "
                        "graph? Give the ultralytics .pt instead (model: the .pt), or an ONNX exported without them.")


def head_of(onnx_path: Path) -> str:
    """'split' or 'stock' for an exported detector (its metadata, else its number of outputs)."""
    import onnx

    head = onnx_metadata(onnx_path).get("head")
    if head in HEADS:
        return head
    return "stock" if len(onnx.load(str(onnx_path), load_external_data=False).graph.output) == 1 else "split"


def head_files(run: Run) -> list[Path]:
    """The per-head exports notebook 10 wrote (model_split.onnx, model_stock.onnx) that exist."""
    return [f for f in (run.model / HEAD_ONNX.format(head=h) for h in HEADS) if f.is_file()]


def source_model(run: Run) -> str:
    """The model file notebook 10 exported from (model/export_check.json), "" when unknown."""
    record = run.model / "export_check.json"
    return str(json.loads(record.read_text()).get("model") or "") if record.is_file() else ""


def _dets_json(dets: Sequence[Detections]) -> list[dict[str, list]]:
    return [{"boxes": np.round(d.boxes, 2).tolist(), "scores": np.round(d.scores, 4).tolist(), "classes": d.classes.tolist()} for d in dets]


def evaluate_detector(run: Run, record: Any, data_yaml: Path, batch: int = 8, val_images: int = 0, model: str = "") -> dict[str, Any]:
    """FP32 (ONNX Runtime) and INT8 (simulator, rebuilt from rknn/convert.json) for the converted head and,
    when notebook 10 exported it, the other head built with the same recorded options, on the same val
    images: COCO mAP, top class score and whole-tensor cosine per backend. Writes eval/metrics.json and
    eval/detections.json; returns the metrics."""
    from helpers.steps.evaluate import simulator, simulator_from_record
    from helpers.tasks.detect.images import load_letterboxed
    from helpers.tasks.detect.metric import evaluate_outputs
    from helpers.tasks.feeds import fp32_runner
    from helpers.tasks.measures import output_cosines
    from helpers.tasks.data import detect_yaml
    from helpers.tasks.detect.labels import read_data_yaml, read_split
    from helpers.tasks.identify import class_names

    data_yaml = detect_yaml(data_yaml) or Path(data_yaml)
    names = class_names(record.source) or read_data_yaml(data_yaml)["names"]
    val = read_split(data_yaml, "val", num_classes=len(names)).subset(val_images or None)
    size, cfg = record.input_size, record.config
    canvases, geoms = load_letterboxed(val.paths, size)
    pixels = np.stack(canvases)
    chosen = head_of(record.source)
    heads = {chosen: record.source}
    for h in HEADS:
        if h != chosen and (run.model / HEAD_ONNX.format(head=h)).is_file():
            heads[h] = run.model / HEAD_ONNX.format(head=h)
    rows, dets = [], {}
    for h, onnx_path in heads.items():
        fp32 = fp32_runner(onnx_path, cfg.mean_values, cfg.std_values).outputs(pixels)
        log = run.logs / f"simulator_{h}.log"
        sim = (simulator_from_record(record, log, batch=batch) if h == chosen else
               simulator(onnx_path, cfg, record.dataset, size, log, "onnx", batch, auto_disable_rules=True))
        with sim:
            int8 = sim.outputs(pixels)
            extra_rules = [d.rule for d in getattr(sim.rk, "auto_disabled", [])]  # the other head may trip other 2.5.0 rules
            bgr = sim.outputs(np.ascontiguousarray(pixels[..., ::-1])) if h == chosen else None  # the colour-order bug
        cos = output_cosines(fp32, int8)  # per image: all its outputs as one vector
        for precision, outs in (("FP32", fp32), ("INT8", int8), (BGR, bgr)):
            if outs is None:
                continue
            name = f"{precision} {h} head" if precision != BGR else f"INT8 {h} head, BGR input (bug)"
            ev = evaluate_outputs(name, outs, geoms, val, **decode_options(onnx_path))
            role = ("fp32" if precision == "FP32" else "int8" if precision == "INT8" else "diagnostic") if h == chosen else "diagnostic"
            rows.append({"name": ev.name, "role": role, "head": h, "precision": precision, **ev.metric.to_dict(),
                         "top_score": max(ev.top_scores, default=0.0), "rules_disabled_here": extra_rules if precision == "INT8" else [],
                         **({"cosine_mean": float(np.mean(cos)), "cosine_min": float(np.min(cos))} if precision == "INT8" else {})})
            dets[ev.name] = _dets_json(ev.detections)
    metrics = {"task": "detect", "head": chosen, "imgsz": size, "backends": rows, "images": len(val), "instances": val.instances,
               "classes": list(names), "notes": list(val.notes), "batch": batch, "ultralytics_val": None,
               "end2end": bool(decode_options(record.source).get("end2end")), "reg_max": _reg_max(record.source)}
    if str(model).endswith(".pt") and not val_images:
        from helpers.steps.export.exporter import quiet
        from helpers.tasks.detect.sample import ultralytics_val

        with quiet(run.logs / "ultralytics_val.log"):
            # nms=False: ultralytics' own end-to-end mode, the branch an end-to-end export carries
            e2e = {"nms": False} if metrics["end2end"] else {}
            metrics["ultralytics_val"] = ultralytics_val(model, data_yaml, size, run.logs / "ultralytics_val", rect=False, **e2e)
    write_json_atomic(run.eval / "detections.json", {"images": [str(p) for p in val.paths], "classes": list(names), "backends": dets})
    write_json_atomic(run.eval / "metrics.json", metrics, default=float)
    return metrics


def _reg_max(onnx_path: Path) -> int | None:
    value = onnx_metadata(onnx_path).get("reg_max")
    return int(value) if value and value.isdigit() else None


def read_metrics(run: Run) -> dict[str, Any]:
    """eval/metrics.json of a detection run."""
    return json.loads((run.eval / "metrics.json").read_text())


def table(metrics: dict[str, Any]):
    """One row per backend: mAP50-95, mAP50, detections, top class score, whole-tensor cosine."""
    import pandas as pd

    cols = ["name", "role", "map50_95", "map50", "detections", "top_score", "cosine_mean", "cosine_min"]
    return pd.DataFrame([{k: r.get(k) for k in cols} for r in metrics["backends"]]).set_index("name")


def per_class_table(metrics: dict[str, Any]):
    """Per-class AP50-95 of each backend (classes as rows)."""
    import pandas as pd

    return pd.DataFrame({r["name"]: r["per_class"] for r in metrics["backends"]}).round(4)


def row(metrics: dict[str, Any], head: str, precision: str) -> dict[str, Any] | None:
    """The backend row of one head and precision ('FP32' or 'INT8'), if measured."""
    return next((r for r in metrics["backends"] if r["head"] == head and r["precision"] == precision), None)


def verdict(metrics: dict[str, Any]) -> str:
    """What the run's numbers say about INT8 on this detector, in sentences computed from them."""
    head = metrics["head"]
    fp32, int8 = row(metrics, head, "FP32"), row(metrics, head, "INT8")
    drop = 100 * (fp32["map50_95"] - int8["map50_95"])
    size = "within 2 points of" if abs(drop) <= 2 else ("above" if drop < 0 else f"{drop:.1f} points below")
    text = (f"**Verdict ({head} head, {metrics['images']} images, {metrics['instances']} objects):** INT8 mAP50-95 "
            f"{int8['map50_95']:.3f} vs FP32 {fp32['map50_95']:.3f}, {size} FP32; mAP50 {int8['map50']:.3f} vs {fp32['map50']:.3f}.")
    uv = metrics.get("ultralytics_val")
    if uv:
        gap = 100 * abs(fp32["map50_95"] - uv["map50_95"])
        agree = "agrees with" if gap <= 1 else "differs from"
        text += (f" The workbook's FP32 mAP50-95 {agree} ultralytics' own val() of the same weights ({uv['map50_95']:.3f}, "
                 f"{gap:.1f} pt apart), which checks the decode and {'the top-k selection' if metrics.get('end2end') else 'NMS'}.")
    return text


def _moved(drop_pt: float) -> str:
    """'loses 1.2 pt' or 'gains 0.1 pt'."""
    return f"{'loses' if drop_pt >= 0 else 'gains'} {abs(drop_pt):.1f} pt"


def end_to_end(metrics: dict[str, Any]) -> str:
    """For an end-to-end head (YOLO26, YOLOv10): how it is decoded and what INT8 did to it, from this run's
    numbers; "" for an NMS head."""
    if not metrics.get("end2end"):
        return ""
    split_fp, split_q = row(metrics, "split", "FP32"), row(metrics, "split", "INT8")
    stock_fp, stock_q = row(metrics, "stock", "FP32"), row(metrics, "stock", "INT8")
    reg = metrics.get("reg_max")
    text = ("**End-to-end head.** This detector was trained with a one-to-one assignment (one prediction per object), so it "
            "needs no non-maximum suppression: the workbook exports that branch and keeps ultralytics' top-k on the host "
            "(the best anchors by class score, then the best box-and-class pairs; the NPU has no TopK). "
            + (f"Its boxes are regressed as plain distances (reg_max {reg}), not as 16-bin distributions. " if reg == 1 else ""))
    uv = metrics.get("ultralytics_val")
    if uv and split_fp:
        text += (f"ultralytics' own val() in its end-to-end mode (nms=False) gives mAP50-95 {uv['map50_95']:.3f}, the workbook's "
                 f"FP32 decode {split_fp['map50_95']:.3f} ({100 * abs(split_fp['map50_95'] - uv['map50_95']):.1f} pt apart). ")
    if split_fp and split_q and stock_fp and stock_q:
        split_drop = 100 * (split_fp["map50_95"] - split_q["map50_95"])
        stock_drop = 100 * (stock_fp["map50_95"] - stock_q["map50_95"])
        text += (f"In INT8 the split head {_moved(split_drop)} of mAP50-95 and the stock head {_moved(stock_drop)} on these "
                 f"{metrics['images']} images: ")
        text += ("the one-INT8-scale pitfall above is about the output layout, not the family, and the split head is the "
                 "fix for an end-to-end head too." if stock_drop > split_drop + 2 else
                 "here the two layouts end close together, so this model does not show the layout pitfall strongly.")
    return text


def pitfall(metrics: dict[str, Any]) -> str:
    """The stock-vs-split lesson with this run's numbers: mAP, top class score and whole-tensor cosine."""
    split_fp, split_q = row(metrics, "split", "FP32"), row(metrics, "split", "INT8")
    stock_fp, stock_q = row(metrics, "stock", "FP32"), row(metrics, "stock", "INT8")
    if not (split_q and stock_q):
        return "Only one head was exported (an ONNX was given), so there is no stock-vs-split comparison in this run."
    collapsed = stock_q["map50_95"] < 0.5 * stock_fp["map50_95"]
    text = (f"On the same {metrics['images']} images, INT8 with the **stock** head reaches mAP50-95 {stock_q['map50_95']:.3f} "
            f"(FP32 {stock_fp['map50_95']:.3f}, top class score {stock_q['top_score']:.3f} vs {stock_fp['top_score']:.3f}), "
            f"INT8 with the **split** head {split_q['map50_95']:.3f} (FP32 {split_fp['map50_95']:.3f}, top score "
            f"{split_q['top_score']:.3f}). ")
    text += (f"The whole-tensor cosine of the stock head's INT8 output to its FP32 output is {stock_q['cosine_mean']:.4f} on "
             f"average (lowest {stock_q['cosine_min']:.4f}); the split head's outputs, flattened together the same way, give "
             f"{split_q['cosine_mean']:.4f}. ")
    if collapsed and stock_q["cosine_mean"] > 0.99:
        text += ("So the cosine read almost 1 while the stock head's detections vanished: the box coordinates "
                 f"(0..{metrics.get('imgsz', 'imgsz')} px) carry nearly all of the tensor's length, the 0..1 class scores almost "
                 "none, so rounding every score to zero barely turns the vector. One INT8 scale for both is the bug; the "
                 "cosine cannot see it because it weighs values by size.")
    elif collapsed:
        text += "The stock head's detections collapsed under INT8; judge a detector by its mAP, not by one similarity number."
    else:
        text += ("Here the stock head kept most of its mAP under INT8, so this model does not show the pitfall strongly; "
                 "the split head is still the layout whose scores get a scale of their own.")
    return text


def draw(ax: Any, image: np.ndarray, det: dict[str, list], names: Sequence[str], title: str, min_score: float) -> None:
    """An image with the boxes scoring at least min_score, labelled with class and score."""
    from matplotlib.patches import Rectangle

    ax.imshow(image)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    for box, score, cls in zip(det["boxes"], det["scores"], det["classes"]):
        if score < min_score:
            continue
        x1, y1, x2, y2 = box
        colour = "C" + str(int(cls) % 10)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.5, edgecolor=colour))
        ax.text(x1, y1, f"{names[int(cls)]} {score:.2f}", fontsize=6, color="white", backgroundcolor=colour, va="bottom")


def plot_boxes(run: Run, images: int = 4, min_score: float = 0.25, path: Path | None = None, backends: Sequence[str] | None = None,
               first: int = 0):
    """Val images (from index `first`) with each backend's boxes (score >= min_score) side by side, from
    eval/detections.json; backends: the columns to draw (default: every backend but the BGR diagnostic)."""
    import cv2
    import matplotlib.pyplot as plt

    saved = json.loads((run.eval / "detections.json").read_text())
    backends = list(backends) if backends else [b for b in saved["backends"] if "BGR" not in b]
    order = [(first + k) % len(saved["images"]) for k in range(min(images, len(saved["images"])))]
    n = len(order)
    fig, axes = plt.subplots(n, len(backends), figsize=(2.6 * len(backends), 2.2 * n), squeeze=False)
    for i, k in enumerate(order):
        rgb = cv2.cvtColor(cv2.imread(saved["images"][k]), cv2.COLOR_BGR2RGB)
        for j, name in enumerate(backends):
            draw(axes[i][j], rgb, saved["backends"][name][k], saved["classes"], name if i == 0 else "", min_score)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


def colour_pitfall(metrics: dict[str, Any]) -> str:
    """The colour-order bug in this run's mAP: the INT8 model fed BGR images against the same model fed RGB."""
    head = metrics["head"]
    rgb, bgr = row(metrics, head, "INT8"), row(metrics, head, BGR)
    if bgr is None:
        return "This run's metrics predate the colour-order row; re-run notebook 30 to measure it."
    drop = 100 * (rgb["map50_95"] - bgr["map50_95"])
    text = (f"With the tutorial's colour bug the INT8 model ({head} head) reaches mAP50-95 **{bgr['map50_95']:.3f}** instead of "
            f"{rgb['map50_95']:.3f} on these {metrics['images']} images")
    if drop >= 1.0:
        return (text + f": {drop:.1f} pt lower. How much a detector loses depends on how much colour tells its classes apart; "
                "expect a different size on your own data, never zero risk.")
    what = ("the swapped colours happen to score higher" if drop <= -1.0 else "the bug moves mAP by less than a point")
    return (text + f" ({-drop:+.1f} pt): on these images {what}. That says something about these images and classes, not "
            "about the bug: a model whose classes differ by colour (traffic lights, ripe fruit) loses much more. Keep the conversion.")


def measured(run: Run, record: Any, data_dir: Path, batch: int, val_images: int) -> dict[str, Any]:
    """Notebook 30's detector measurement through the step cache: evaluate_detector, or its saved metrics."""
    from helpers.core.step_cache import cached, record_inputs
    from helpers.steps.export.exporter import data_marker

    return cached(run, "30_detect", {"batch": batch, "val_images": val_images, "data": str(data_dir), "rows": "with BGR diagnostic"},
                  inputs=[*record_inputs(run), data_marker(data_dir), *head_files(run)],
                  outputs=[run.eval / "metrics.json", run.eval / "detections.json"],
                  compute=lambda: evaluate_detector(run, record, data_dir, batch, val_images, source_model(run)),
                  load=lambda: read_metrics(run))


def colour_columns(metrics: dict[str, Any]) -> list[str]:
    """The two backends the colour-order picture compares: the INT8 model fed RGB, and fed BGR."""
    return [r["name"] for r in metrics["backends"] if r["head"] == metrics["head"] and r["precision"] in ("INT8", BGR)]
