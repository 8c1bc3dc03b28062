"""YOLO11n-seg on the generated segmentation sample: how long it trains from its YAML on this machine's CPU (offline),
then the workbook's FP32 path (ONNX Runtime + helpers.tasks.segment.postprocess + pycocotools segm) next to ultralytics'
own val() on the same weights (the issue's must-show: mask mAP50-95 within 1 pt).

    .venv/bin/python benchmarks/segment_vs_ultralytics.py [--images 250] [--imgsz 160] [--epochs 12] [--run-dir DIR]

Training is cached in the run folder (model.pt + train.json); a second call only re-exports and re-scores.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np

from helpers.core.paths import OUTPUTS, atomic_path, write_json_atomic
from helpers.steps.export.detect_sample import offline
from helpers.tasks.segment import postprocess as pp
from helpers.tasks.segment.labels import read_segment_split
from helpers.tasks.segment.metric import coco_segment_map
from helpers.tasks.segment.sample import write_segment_sample


def train(root: Path, data: Path, imgsz: int, epochs: int, batch: int) -> dict:
    """Train YOLO11n-seg from yolo11n-seg.yaml with the detection sample's CPU settings (AdamW, no mosaic, every batch a
    step); cached as root/model.pt with its record in root/train.json."""
    record = root / "train.json"
    params = {"imgsz": imgsz, "epochs": epochs, "batch": batch, "data": str(data)}
    if record.is_file() and json.loads(record.read_text()).get("params") == params and (root / "model.pt").is_file():
        return json.loads(record.read_text())
    from ultralytics import YOLO
    from ultralytics.utils import SETTINGS

    SETTINGS.update({"sync": False})
    started, cpu = time.perf_counter(), time.process_time()
    with offline() as attempts:
        metrics = YOLO("yolo11n-seg.yaml", task="segment").train(
            data=str(data), epochs=epochs, imgsz=imgsz, batch=batch, device="cpu", workers=0, seed=0, deterministic=True,
            pretrained=False, amp=False, plots=False, verbose=False, val=False, nbs=batch, mosaic=0.0, optimizer="AdamW",
            lr0=0.005, project=str(root / "train"), name="run", exist_ok=True)
    out = {"params": params, "train_seconds": round(time.perf_counter() - started, 1),
           "train_cpu_seconds": round(time.process_time() - cpu, 1), "cpus": os.cpu_count(),
           "load_1min_at_end": os.getloadavg()[0], "box_map50_95": round(float(metrics.box.map), 4),
           "mask_map50_95": round(float(metrics.seg.map), 4), "mask_map50": round(float(metrics.seg.map50), 4),
           "network_attempts": attempts}
    with atomic_path(root / "model.pt") as tmp:
        shutil.copy2(root / "train" / "run" / "weights" / "best.pt", tmp)
    write_json_atomic(record, out)
    return out


def export_onnx(root: Path, imgsz: int, opset: int) -> Path:
    """ultralytics' own ONNX export of the trained model (the stock layout: output0 + protos), no simplifier."""
    from ultralytics import YOLO

    with offline():
        path = YOLO(str(root / "model.pt"), task="segment").export(format="onnx", imgsz=imgsz, opset=opset, simplify=False,
                                                                     dynamic=False, device="cpu")
    return Path(path)


def workbook_fp32(onnx_path: Path, data: Path, imgsz: int) -> dict:
    """ONNX Runtime on each letterboxed val image, decoded by the workbook's numpy postprocess and scored by pycocotools."""
    import onnxruntime as ort

    split = read_segment_split(data, "val")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    preds = []
    for path in split.paths:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        canvas, lb = pp.letterbox(rgb, imgsz)
        x = (canvas.astype(np.float32) / 255).transpose(2, 0, 1)[None]
        preds.append(pp.postprocess(sess.run(None, {name: x}), lb, conf=0.001, iou=0.7, max_det=300, multi_label=True))
    metric = coco_segment_map(split.truth, preds, split.names, max_det=300)
    return {"mask_map50_95": metric.mask.map50_95, "mask_map50": metric.mask.map50, "box_map50_95": metric.box.map50_95,
            "box_map50": metric.box.map50, "images": metric.mask.images, "instances": metric.mask.instances}


def ultralytics_val(root: Path, data: Path, imgsz: int, full_resolution: bool = False) -> dict:
    """ultralytics' own val() of the same weights (conf 0.001, IoU 0.7, max_det 300). By default it scores masks at a
    quarter of the input resolution (40 x 40 at imgsz 160: predicted masks at the prototypes' size, labels rasterised at
    mask_ratio 4); full_resolution switches both to the input's pixels (save_txt selects its native masks, mask_ratio=1
    rasterises the labels at full size), which is what the workbook's pycocotools segm measures."""
    from ultralytics import YOLO

    extra = {"save_txt": True, "mask_ratio": 1} if full_resolution else {}
    with offline():
        res = YOLO(str(root / "model.pt"), task="segment").val(
            data=str(data), imgsz=imgsz, batch=16, device="cpu", workers=0, plots=False, verbose=False, conf=0.001, iou=0.7,
            max_det=300, project=str(root / "val"), name="val", exist_ok=True, **extra)
    return {"mask_map50_95": float(res.seg.map), "mask_map50": float(res.seg.map50), "box_map50_95": float(res.box.map),
            "box_map50": float(res.box.map50)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=250)
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--opset", type=int, default=19)
    ap.add_argument("--run-dir", default=str(OUTPUTS / "bench_segment"))
    ap.add_argument("--train-only", action="store_true")
    args = ap.parse_args()
    root = Path(args.run_dir)
    root.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    data = write_segment_sample(root / "data", images=args.images, imgsz=args.imgsz)
    out: dict = {"generate_seconds": round(time.perf_counter() - t, 1), "train": train(root, data, args.imgsz, args.epochs,
                                                                                         args.batch)}
    if not args.train_only:
        onnx_path = export_onnx(root, args.imgsz, args.opset)
        out["workbook_fp32"] = workbook_fp32(onnx_path, data, args.imgsz)
        out["ultralytics_val"] = ultralytics_val(root, data, args.imgsz)
        out["ultralytics_val_full_resolution"] = ultralytics_val(root, data, args.imgsz, full_resolution=True)
        for key in ("ultralytics_val", "ultralytics_val_full_resolution"):
            out[f"gap_pt_vs_{key}"] = {m: round(100 * (out["workbook_fp32"][m] - out[key][m]), 2)
                                       for m in ("mask_map50_95", "mask_map50", "box_map50_95", "box_map50")}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
