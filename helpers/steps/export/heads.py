"""Notebook 10's export of a detector, segmentation or pose model: the run's model and data.yaml (the user's or the
task's sample), both head layouts (model_split.onnx, model_stock.onnx) and the chosen one as model.onnx, which
notebook 20 converts; an ONNX the workbook's decode cannot read stops here in one sentence."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from helpers.core.errors import WorkbookError
from helpers.core.paths import REPO, Run, atomic_path
from helpers.steps.export.detect_head import HEADS, export_detector, onnx_metadata
from helpers.steps.export.detect_sample import prepare_detect_model
from helpers.steps.export.exporter import TOOLKIT_MAX_OPSET, downgrade_opset, onnx_io
from helpers.steps.export.onnx_split import is_stock_ultralytics_detector, split_user_onnx
from helpers.steps.export.onnx_split_instances import is_stock_ultralytics_instances, split_user_instances_onnx
from helpers.tasks.data import detect_yaml
from helpers.tasks.family import check_keypoint_shape, member
from helpers.tasks.identify import class_names, model_kpt_shape
from helpers.tasks.pose.labels import read_pose_yaml

HEAD_ONNX = "model_{head}.onnx"


def resolve_data(data: str | Path, task: str = "detect") -> str:
    """A data.yaml (or its folder) given relative to the repository root made absolute; "" stays "" (the sample)."""
    if not str(data).strip():
        return ""
    path = Path(data).expanduser()
    path = path if path.is_absolute() else REPO / path
    found = detect_yaml(path)
    if found is None:
        raise WorkbookError(f"data_dir={str(data)!r} is not a YOLO data set (a data.yaml with train:, val:, names:, or its "
                            f"folder), which task: {task} needs; pass one, or set task: classify for a class-folder layout.")
    return str(found)


def prepare(run: Run, model: str, data: str, imgsz: int, epochs: int, task: str = "detect") -> tuple[Path, Path, str]:
    """The detect, segment or pose model, its data.yaml and a one-line description (the user's, or the task's cached
    sample); the labels are read as the task reads them, so a segmentation model given box-only labels, a pose data.yaml
    without kpt_shape, class ids beyond the model's classes or another keypoint count stop here in one sentence."""
    path, data_yaml, about = prepare_detect_model(run, model, resolve_data(data, task), imgsz=imgsz, epochs=epochs, task=task)
    names = class_names(path) if str(model).strip() else None
    for split in ("train", "val"):
        member(task).read_split(data_yaml, split, num_classes=len(names) if names else None)
    if task == "pose":
        check_keypoint_shape(data_yaml, model_kpt_shape(path), f"Model {path}")
    return path, data_yaml, about


def export_heads(model_path: Path, model_dir: Path, imgsz: int, head: str, opset: int, data: str | Path = "",
                 task: str = "detect") -> dict[str, Any]:
    """Export a detector with both heads (model_split.onnx, model_stock.onnx) and the chosen one as model.onnx, which
    notebook 20 converts. An ultralytics .pt: helpers.steps.export.detect_head writes both. An ONNX ultralytics exported
    (detect, segment or pose): it is the stock head, and its head is split by graph surgery (onnx_split,
    onnx_split_instances), checked against it in FP32 on a few val images of `data`; a graph that cannot be split stops
    in one sentence unless head is stock. Any other ONNX is used as it is."""
    if head not in HEADS:
        raise WorkbookError(f"head={head!r} is not a detector head layout; use one of {', '.join(HEADS)}.")
    model_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("model.torchscript", "model.torchscript.json", *(HEAD_ONNX.format(head=h) for h in HEADS)):
        (model_dir / stale).unlink(missing_ok=True)  # a classifier exported here earlier, or another model's heads
    note, check = "", None
    skeleton = read_pose_yaml(data)["skeleton"] if task == "pose" and str(data).strip() else None  # drawn on the board
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
        elif is_stock_ultralytics_instances(source) and onnx_metadata(source).get("task") == task and head == "split":
            check = split_user_instances_onnx(source, model_dir, _check_images(data, task), imgsz, skeleton)
            note += (f"an ultralytics {task} ONNX was given: its head was split by graph surgery (strides {check['strides']}), "
                     "model_stock.onnx is the file as given")
        else:
            meta = onnx_metadata(source)
            stock_outputs = 2 if task == "segment" else 1  # ultralytics' own layout: one tensor (+ the prototypes)
            head = meta.get("head") if meta.get("head") in HEADS else (
                "stock" if is_stock_ultralytics_detector(source) or len(onnx_io(source)["outputs"]) == stock_outputs else head)
            check_decodable(source, onnx_io(source), meta, task)
            note += "an ONNX was given: used as it is, no second head to compare with"
            if task != "detect" and head == "stock":
                note += ("; its stock head gives INT8 one scale for every output: give the .pt, or ultralytics' own ONNX "
                         "export with head: split, to split it")
        chosen = source if check is None else model_dir / HEAD_ONNX.format(head=head)
    else:
        for h in HEADS:
            export_detector(model_path, model_dir / HEAD_ONNX.format(head=h), imgsz, head=h, opset=opset, task=task,
                            skeleton=skeleton)
        chosen = model_dir / HEAD_ONNX.format(head=head)
    with atomic_path(model_dir / "model.onnx", ".partial.onnx") as partial:
        shutil.copyfile(chosen, partial)
    (model_dir / "model.lowered.onnx").unlink(missing_ok=True)
    return {"kind": f"ultralytics {task}", "opset": opset, "torchscript": "", "opset_note": note, "head": head,
            "split_check": check}


def _check_images(data: str | Path, task: str = "detect", n: int = 8) -> list[Path]:
    """A few val images of the task's data set for the FP32 check of a split ONNX ([] when there is none)."""
    found = detect_yaml(Path(data)) if str(data).strip() else None
    return list(member(task).read_split(found, "val").paths[:n]) if found else []


SPLIT_KINDS = {"detect": ("box", "cls", "sum"), "segment": ("box", "cls", "sum", "coef"), "pose": ("box", "cls", "sum", "kpt")}


def check_decodable(path: Path, io: dict[str, Any], meta: dict[str, str], task: str = "detect") -> None:
    """An ONNX used as it is must give outputs the task's decode reads: its split head (box/cls/sum per stride, plus
    coef and the prototypes for segment, kpt for pose) or ultralytics' stock layout (one [1, 4 + classes (+ nm or
    K*ndim), anchors] tensor, plus the prototypes for segment); anything else (NMS or top-k inside the graph) would be
    misread and score 0 without a word, so it stops here in one sentence."""
    shapes = [o["shape"] for o in io["outputs"]]
    names = [o["name"] for o in io["outputs"]]
    kinds = SPLIT_KINDS.get(task, SPLIT_KINDS["detect"])
    body = names[:-1] if task == "segment" else names
    if body and len(body) % len(kinds) == 0 and all(n.startswith(kinds) for n in body):
        return
    raw = meta.get("strides") or ""  # the workbook's heads record theirs; ultralytics' P3-P5 heads use 8, 16, 32
    strides = json.loads(raw) if raw.startswith("[") else [8, 16, 32]
    size = int(io["inputs"][0]["shape"][-1]) if isinstance(io["inputs"][0]["shape"][-1], int) else 0
    anchors = sum((size // int(s)) ** 2 for s in strides) if size else None
    first = shapes[0] if shapes else []
    count = 2 if task == "segment" else 1
    if len(shapes) == count and len(first) == 3 and isinstance(first[1], int) and first[1] > 4 \
            and (anchors is None or first[2] == anchors):
        return
    extra = {"segment": " + mask coefficients, and the prototypes", "pose": " + keypoints"}.get(task, "")
    what = member(task).what.split(" ", 1)[1]  # "detector", "pose model", ...
    raise WorkbookError(f"The {what} {path.name} gives outputs {shapes}, a layout the workbook's decode cannot read (one "
                        f"[1, 4 + classes{extra}, {anchors or 'anchors'}] tensor, or {'/'.join(kinds)} per stride): NMS or a "
                        "top-k inside the graph? Give the ultralytics .pt instead (model: the .pt), or an ONNX exported "
                        "without them.")


def head_of(onnx_path: Path) -> str:
    """'split' or 'stock' for an exported detector (its metadata, else its number of outputs)."""
    import onnx  # optional and slow: only when the metadata does not say

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
