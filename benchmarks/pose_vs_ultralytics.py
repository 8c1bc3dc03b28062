"""The workbook's pose figures against ultralytics' own: YOLO11n-pose trained from its YAML on the generated stick figures
(nothing downloaded), exported to ONNX by ultralytics (the stock head), run in ONNX Runtime on the val split, decoded by
helpers/tasks/pose/postprocess.py and scored by helpers/tasks/pose/metric.py (pycocotools keypoints, the data's sigmas),
printed next to ultralytics' `val()` of the same weights.

    .venv/bin/python benchmarks/pose_vs_ultralytics.py [--epochs 15] [--weights best.pt] [--out outputs/pose_vs_ultralytics]

Issue 24's must-show: workbook FP32 pose mAP50-95 within 1 pt of ultralytics' val(). Training time and the figures go to
<out>/result.json; a shared machine makes the times pessimistic.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from helpers.core.paths import OUTPUTS, write_json_atomic
from helpers.steps.export.detect_sample import offline
from helpers.steps.export.exporter import TOOLKIT_MAX_OPSET
from helpers.tasks.detect.images import load_letterboxed, onnx_runner
from helpers.tasks.pose.labels import read_pose_split
from helpers.tasks.pose.metric import evaluate_outputs
from helpers.tasks.pose.sample import write_pose_sample


def train(data_yaml: Path, out: Path, epochs: int, imgsz: int) -> tuple[Path, float]:
    """YOLO11n-pose from yolo11n-pose.yaml on CPU, offline, with the sample detector's small-data settings; returns the
    best weights and the training seconds."""
    from ultralytics import YOLO  # slow import: only when training
    from ultralytics.utils import SETTINGS

    SETTINGS.update({"sync": False})
    started = time.perf_counter()
    with offline() as attempts:
        YOLO("yolo11n-pose.yaml", task="pose").train(
            data=str(data_yaml), epochs=epochs, imgsz=imgsz, batch=8, nbs=8, device="cpu", workers=0, seed=0, deterministic=True,
            pretrained=False, amp=False, plots=False, verbose=False, val=False, mosaic=0.0, optimizer="AdamW", lr0=0.005,
            project=str(out / "train"), name="run", exist_ok=True)
    if attempts:
        raise RuntimeError(f"ultralytics tried the network while training: {attempts}")
    return out / "train" / "run" / "weights" / "best.pt", time.perf_counter() - started


def ultralytics_figures(weights: Path, data_yaml: Path, imgsz: int, out: Path, rect: bool = False) -> dict:
    """ultralytics' val() of the weights: pose and box mAP50-95 / mAP50 (conf 0.001, IoU 0.7, max_det 300). rect=False
    feeds the square imgsz input the exported model has, as the detection task's comparison does; its default rect
    batches pad a 160x120 image to 160x128 instead, another input to the model (shown beside it)."""
    from ultralytics import YOLO  # slow import

    with offline():
        res = YOLO(str(weights), task="pose").val(data=str(data_yaml), imgsz=imgsz, batch=16, device="cpu", workers=0,
                                                  plots=False, verbose=False, conf=0.001, iou=0.7, max_det=300, rect=rect,
                                                  project=str(out / "val"), name="val", exist_ok=True)
    return {"pose_map50_95": float(res.pose.map), "pose_map50": float(res.pose.map50), "box_map50_95": float(res.box.map),
            "box_map50": float(res.box.map50)}


def export_onnx(weights: Path, imgsz: int, out: Path) -> Path:
    """ultralytics' own ONNX export (the stock head [1, 4 + classes + K*3, anchors]) at the opset the toolkit reads, without
    the simplifier (it would be installed at run time)."""
    from ultralytics import YOLO  # slow import

    with offline():
        made = YOLO(str(weights), task="pose").export(format="onnx", imgsz=imgsz, opset=TOOLKIT_MAX_OPSET, simplify=False,
                                                      dynamic=False)
    target = out / "model.onnx"
    shutil.copyfile(made, target)
    return target


def workbook_figures(onnx_path: Path, data_yaml: Path, imgsz: int) -> dict:
    """ONNX Runtime on the letterboxed val images, the workbook's decode and pycocotools' keypoint and box mAP."""
    split = read_pose_split(data_yaml, "val")
    canvases, geoms = load_letterboxed(split.paths, imgsz)
    run = onnx_runner(onnx_path)
    started = time.perf_counter()
    outputs = [run(c) for c in canvases]
    ev = evaluate_outputs("FP32 ONNX Runtime", outputs, geoms, split)
    return {"pose_map50_95": ev.metric.map50_95, "pose_map50": ev.metric.map50, "box_map50_95": ev.metric.box.map50_95,
            "box_map50": ev.metric.box.map50, "images": len(split), "figures": split.instances, "sigmas": split.sigmas,
            "seconds": round(time.perf_counter() - started, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--weights", default="", help="trained pose weights to score instead of training")
    ap.add_argument("--out", default=str(OUTPUTS / "pose_vs_ultralytics"))
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data_yaml = write_pose_sample(imgsz=args.imgsz)
    sample_s = time.perf_counter() - started
    weights, train_s = (Path(args.weights), 0.0) if args.weights else train(data_yaml, out, args.epochs, args.imgsz)
    theirs = ultralytics_figures(weights, data_yaml, args.imgsz, out)
    rect = ultralytics_figures(weights, data_yaml, args.imgsz, out, rect=True)
    ours = workbook_figures(export_onnx(weights, args.imgsz, out), data_yaml, args.imgsz)
    result = {"epochs": args.epochs if not args.weights else None, "imgsz": args.imgsz, "sample_seconds": round(sample_s, 1),
              "train_seconds": round(train_s, 1), "workbook": ours, "ultralytics": theirs, "ultralytics_rect": rect,
              "pose_gap_pt": round(100 * (ours["pose_map50_95"] - theirs["pose_map50_95"]), 2)}
    write_json_atomic(out / "result.json", result)
    print(f"sample {sample_s:.1f} s, training {train_s:.0f} s ({args.epochs} epochs at {args.imgsz})")
    print(f"{'':34}{'pose mAP50-95':>15}{'pose mAP50':>12}{'box mAP50-95':>14}")
    for name, r in (("workbook (ONNX Runtime + numpy)", ours), ("ultralytics val(rect=False)", theirs),
                    ("ultralytics val() default rect", rect)):
        print(f"{name:34}{r['pose_map50_95']:>15.3f}{r['pose_map50']:>12.3f}{r['box_map50_95']:>14.3f}")
    gap = result["pose_gap_pt"]
    print(f"pose mAP50-95 gap {gap:+.2f} pt: {'within' if abs(gap) <= 1 else 'NOT within'} 1 pt of ultralytics val(rect=False)")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
