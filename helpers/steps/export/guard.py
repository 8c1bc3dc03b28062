"""Notebook 10's guard: an export must predict what the ORIGINAL model predicts, so a wrong head rewrite or
decode stops the run in notebook 10 instead of scoring 0.000 three notebooks later.

Detector (and segmentation / pose model: their boxes): ultralytics' own predict() of the .pt on a few letterboxed
images against the workbook's decode (postprocess.py) of the exported ONNX run in ONNX Runtime, box by box (same
class, IoU, score), both ways.
Classifier: top-1 of the original (ultralytics' TorchScript of the .pt) against the ONNX, from notebook 10's
TorchScript-vs-ONNX check (one check, judged here).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from helpers.core.errors import WorkbookError
from helpers.core.paths import write_json_atomic
from helpers.steps.export.detect_head import decode_options, onnx_metadata
from helpers.steps.export.detect_sample import offline
from helpers.steps.export.heads import head_files
from helpers.tasks.detect.images import load_letterboxed, onnx_runner
from helpers.tasks.detect.postprocess import Detections, Letterbox, box_iou, postprocess
from helpers.tasks.family import in_family, member
from helpers.tasks.pose import postprocess as pose_postprocess
from helpers.tasks.segment import postprocess as segment_postprocess

MIN_IOU = 0.9          # a box found by both must overlap this much
MIN_AGREEMENT = 0.9    # share of the confident boxes of each side the other side must find
MAX_PER_IMAGE = 20     # confident boxes compared per image (the best ones)
Decode = Callable[..., Detections]


@dataclass
class GuardResult:
    """How the export's decoded boxes agree with the original model's predictions."""

    head: str
    structure: str
    images: int
    threshold: float          # score from which a box counts as confident (half the best score seen)
    theirs: int               # confident boxes of the original model
    ours: int                 # confident boxes of the export
    found_theirs: float       # share of the original's confident boxes the export also gives
    found_ours: float         # share of the export's confident boxes the original also gives
    mean_iou: float
    max_score_diff: float

    @property
    def ok(self) -> bool:
        return min(self.found_theirs, self.found_ours) >= MIN_AGREEMENT

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def structure_of(onnx_path: str | Path) -> str:
    """The head structure an exported detector records, in words (e.g. "end-to-end head, reg_max 1")."""
    meta = onnx_metadata(onnx_path)
    e2e = str(meta.get("end2end", "")).lower() in ("true", "1")
    kind = "end-to-end head (one-to-one, top-k, no NMS)" if e2e else "NMS head"
    return f"{kind}, reg_max {meta.get('reg_max', '?')}, {len(_names(meta))} classes"


def _names(meta: dict[str, str]) -> list:
    try:
        return list(json.loads(meta.get("names", "[]")))
    except ValueError:
        return []


def boxes_decode(task: str) -> Decode:
    """The task's decode reduced to its boxes, scores and classes (what the guard compares)."""
    if task == "detect":
        return postprocess
    full = segment_postprocess.postprocess if task == "segment" else pose_postprocess.postprocess

    def decode(outputs: Any, lb: Letterbox, **kwargs: Any) -> Detections:
        found = full(outputs, lb, **kwargs)
        return Detections(found.boxes, found.scores, found.classes)
    return decode


def original_predictions(weights: str | Path, canvases: Sequence[np.ndarray], imgsz: int, end2end: bool,
                         task: str = "detect") -> list[Detections]:
    """ultralytics' predict() of the original model on letterboxed RGB canvases (size x size, so its own
    letterbox leaves them alone), val-style thresholds; nms=False selects the end-to-end branch."""
    from ultralytics import YOLO  # optional and slow (seconds): only for a .pt original


    with offline():
        results = YOLO(str(weights), task=task).predict(
            [np.ascontiguousarray(c[..., ::-1]) for c in canvases], imgsz=imgsz, conf=0.001, iou=0.7, max_det=300,
            device="cpu", verbose=False, **({"nms": False} if end2end else {}))
    return [Detections(r.boxes.xyxy.numpy().astype(np.float32), r.boxes.conf.numpy().astype(np.float32),
                       r.boxes.cls.numpy().astype(np.int64)) for r in results]


def export_predictions(onnx_path: str | Path, canvases: Sequence[np.ndarray], decode: Decode = postprocess) -> list[Detections]:
    """The workbook's decode of the exported ONNX (ONNX Runtime) on the same canvases, same thresholds."""
    run = onnx_runner(onnx_path)
    opts = decode_options(onnx_path)
    out = []
    for c in canvases:
        size = int(c.shape[0])
        out.append(decode(run(c), Letterbox(size, size, size, 1.0, 0, 0), conf=0.001, iou=0.7, max_det=300, **opts))
    return out


def _confident(d: Detections, threshold: float) -> np.ndarray:
    """The indices of d's boxes scoring at least threshold, the best MAX_PER_IMAGE of them."""
    idx = np.nonzero(d.scores >= threshold)[0]
    return idx[np.argsort(-d.scores[idx], kind="stable")][:MAX_PER_IMAGE]


def _found(ref: Detections, idx: np.ndarray, other: Detections) -> tuple[int, list[float], list[float]]:
    """How many of ref's boxes idx the other side gives too (same class, IoU >= MIN_IOU, close score)."""
    hits, ious, diffs = 0, [], []
    for i in idx:
        same = np.nonzero(other.classes == ref.classes[i])[0]
        if not len(same):
            continue
        iou = box_iou(ref.boxes[i], other.boxes[same])
        j = same[int(iou.argmax())]
        diff = abs(float(other.scores[j]) - float(ref.scores[i]))
        if iou.max() >= MIN_IOU and diff <= 0.02 + 0.05 * float(ref.scores[i]):
            hits += 1
            ious.append(float(iou.max()))
            diffs.append(diff)
    return hits, ious, diffs


def _share(hits: int, n: int) -> float:
    """hits / n; 1.0 when nothing was confident on that side (nothing to miss)."""
    return hits / n if n else 1.0


def compare(theirs: Sequence[Detections], ours: Sequence[Detections], head: str = "split", structure: str = "") -> GuardResult:
    """Agreement of two sets of per-image detections on their confident boxes (score >= half the best)."""
    best = max([float(d.scores.max()) for d in [*theirs, *ours] if len(d)], default=0.0)
    threshold = max(best / 2, 0.001)
    counts = {"theirs": 0, "ours": 0, "found_theirs": 0, "found_ours": 0}
    ious: list[float] = []
    diffs: list[float] = []
    for t, o in zip(theirs, ours):
        ti, oi = _confident(t, threshold), _confident(o, threshold)
        ft, i1, d1 = _found(t, ti, o)
        fo, i2, d2 = _found(o, oi, t)
        counts["theirs"] += len(ti)
        counts["ours"] += len(oi)
        counts["found_theirs"] += ft
        counts["found_ours"] += fo
        ious += i1 + i2
        diffs += d1 + d2
    return GuardResult(head, structure, len(theirs), threshold, counts["theirs"], counts["ours"],
                       _share(counts["found_theirs"], counts["theirs"]), _share(counts["found_ours"], counts["ours"]),
                       float(np.mean(ious)) if ious else float("nan"), float(max(diffs)) if diffs else float("nan"))


def check_detector(weights: str | Path, onnx_path: str | Path, canvases: Sequence[np.ndarray], imgsz: int,
                   decode: Decode = postprocess, task: str = "detect") -> GuardResult:
    """Compare the export's decoded boxes with the original model's predict(); a disagreement raises
    WorkbookError in one sentence naming the head, its structure and what to do."""
    onnx_path = Path(onnx_path)
    meta = onnx_metadata(onnx_path)
    head = meta.get("head", "exported")
    structure = structure_of(onnx_path)
    end2end = bool(decode_options(onnx_path).get("end2end"))
    theirs = original_predictions(weights, canvases, imgsz, end2end, task)
    result = compare(theirs, export_predictions(onnx_path, canvases, decode), head, structure)
    if not result.ok:
        raise WorkbookError(
            f"The {head}-head export {onnx_path.name} of {Path(weights).name} ({structure}) does not predict what the original "
            f"model predicts on {result.images} images (the workbook's decode finds {100 * result.found_theirs:.0f}% of "
            f"ultralytics' {result.theirs} confident boxes, and ultralytics {100 * result.found_ours:.0f}% of its "
            f"{result.ours}), "
            f"so every mAP after this would be wrong: do not convert it; try head: stock, and report this head structure as "
            f"a workbook issue.")
    return result


def check_classifier(top1_agreement: float, images: int, model: str | Path) -> None:
    """A classifier's ONNX must give the original model's top-1 (TorchScript of the original vs ONNX Runtime)."""
    if top1_agreement < MIN_AGREEMENT:
        raise WorkbookError(f"The ONNX export of classifier {Path(model).name} gives the original model's top-1 class on only "
                            f"{100 * top1_agreement:.0f}% of {images} images, so every accuracy after this would be wrong: do "
                            "not "
                            f"convert it; check the export (opset, preprocessing) and report the model as a workbook issue.")


def check_run(run: Any, task: str, model_path: str | Path, data: str | Path, imgsz: int, export_check: Any = None,
              images: int = 4, decode: Decode | None = None) -> list[dict[str, Any]]:
    """Notebook 10's guard over what it exported into run.model: every detector head file against the original
    .pt's predict(); for a classifier, notebook 10's TorchScript-vs-ONNX check (export_check: check.check_export's
    result, the TorchScript being ultralytics' export of the original) judged by top-1. Writes model/guard.json and
    returns one row per export ([] when there is no original to compare with, e.g. an ONNX was given). Raises
    WorkbookError on a disagreement. decode: the decode under test (default: the task's, boxes_decode)."""
    rows: list[dict[str, Any]] = []
    if in_family(task) and Path(model_path).suffix.lower() == ".pt":
        canvases, _ = load_letterboxed(member(task).read_split(data, "val").subset(images).paths, imgsz)
        for onnx_path in head_files(run):
            found = check_detector(model_path, onnx_path, canvases, imgsz, decode or boxes_decode(task), task)
            rows.append({"export": onnx_path.name, **found.to_dict()})
    elif not in_family(task) and export_check is not None:
        check_classifier(export_check.top1_agreement, export_check.images, model_path)
        rows.append({"export": "model.onnx", "images": export_check.images, "top1_agreement": export_check.top1_agreement,
                     "min_cosine": export_check.min_cosine, "ok": True})
    write_json_atomic(run.model / "guard.json", {"task": task, "model": str(model_path), "rows": rows})
    return rows
