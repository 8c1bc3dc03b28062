"""Notebook 30's measurement of a detector, segmentation or pose model: FP32 (ONNX Runtime) and INT8 (the simulator)
for the converted head and the other one notebook 10 exported, on the same val images, with the INT8 model fed BGR as
the colour-order diagnostic, scored by the task's COCO metric (box, mask or keypoint mAP; helpers.tasks.family);
eval/metrics.json and eval/detections.json, and the tables that read them."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.core.paths import Run, write_json_atomic
from helpers.core.step_cache import cached, record_inputs
from helpers.steps.evaluate import simulator, simulator_from_record
from helpers.steps.export.detect_head import HEADS, decode_options, onnx_metadata
from helpers.steps.export.detect_sample import ultralytics_val
from helpers.steps.export.exporter import data_marker, quiet
from helpers.steps.export.heads import HEAD_ONNX, head_files, head_of, source_model
from helpers.tasks.data import detect_yaml
from helpers.tasks.detect import plots as detect_plots
from helpers.tasks.detect.images import load_letterboxed
from helpers.tasks.detect.labels import read_data_yaml
from helpers.tasks.detect.metric import paired_matchings
from helpers.tasks.family import evaluate, member
from helpers.tasks.feeds import fp32_runner
from helpers.tasks.identify import class_names, run_task
from helpers.tasks.measures import output_cosines
from helpers.tasks.noise import Paired
from helpers.tasks.pose import plots as pose_plots
from helpers.tasks.pose.labels import read_pose_yaml
from helpers.tasks.segment import plots as segment_plots

BGR = "INT8 BGR"  # precision label of the diagnostic row: the INT8 model fed BGR images (the tutorial's colour bug)
RESAMPLES = 50  # bootstrap resamples of each paired mAP verdict (each re-accumulates the matches: about 10 ms on 20 images)


def evaluate_detector(run: Run, record: Any, data_yaml: Path, batch: int = 8, val_images: int = 0,
                      model: str = "", resamples: int = RESAMPLES) -> dict[str, Any]:
    """FP32 (ONNX Runtime) and INT8 (simulator, rebuilt from rknn/convert.json) for the converted head and,
    when notebook 10 exported it, the other head built with the same recorded options, on the same val
    images: the task's COCO mAP (box; mask or keypoint for segment and pose, with their box mAP beside it), top class
    score and whole-tensor cosine per backend, and each INT8 row's mAP50-95 against its FP32 (the BGR row: against
    INT8 fed RGB) by the one noise rule ("paired"; a bootstrap of `resamples`). Writes eval/metrics.json
    ("comparison" and "verdict": the converted head's INT8 vs FP32) and eval/detections.json; returns the metrics."""
    task = run_task(run)
    kind = member(task)
    data_yaml = detect_yaml(data_yaml) or Path(data_yaml)
    names = class_names(record.source) or read_data_yaml(data_yaml)["names"]
    val = kind.read_split(data_yaml, "val", num_classes=len(names)).subset(val_images or None)
    size, cfg = record.input_size, record.config
    canvases, geoms = load_letterboxed(val.paths, size)
    pixels = np.stack(canvases)
    chosen = head_of(record.source)
    heads = {chosen: record.source}
    for h in HEADS:
        if h != chosen and (run.model / HEAD_ONNX.format(head=h)).is_file():
            heads[h] = run.model / HEAD_ONNX.format(head=h)
    rows, dets, found = [], {}, {}  # found: (head, precision) -> its COCO matching, the references of the paired verdicts
    paired_seconds = 0.0
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
            ev = evaluate(task, name, outs, geoms, val, **decode_options(onnx_path))
            own = "fp32" if precision == "FP32" else "int8" if precision == "INT8" else "diagnostic"
            role = own if h == chosen else "diagnostic"
            found[(h, precision)] = ev.matching
            reference = found.get((h, "FP32") if precision == "INT8" else (h, "INT8"))
            started = time.perf_counter()
            judged = paired_matchings(reference, ev.matching, resamples) if precision != "FP32" else None
            paired_seconds += time.perf_counter() - started
            rows.append({"name": ev.name, "role": role, "head": h, "precision": precision, **ev.row,
                         "paired": judged.to_dict() if judged else None,
                         "top_score": max(ev.top_scores, default=0.0),
                         "rules_disabled_here": extra_rules if precision == "INT8" else [],
                         **({"cosine_mean": float(np.mean(cos)), "cosine_min": float(np.min(cos))}
                            if precision == "INT8" else {})})
            dets[ev.name] = ev.stored
    metrics = {"task": task, "metric_key": kind.metric_key, "metric_label": kind.metric_label,
               "head": chosen, "imgsz": size, "backends": rows, "images": len(val), "instances": val.instances,
               "classes": list(names), "notes": list(val.notes), "batch": batch, "ultralytics_val": None,
               "end2end": bool(decode_options(record.source).get("end2end")), "reg_max": _reg_max(record.source)}
    metrics["comparison"] = comparison(metrics)
    metrics["paired_seconds"] = round(paired_seconds, 1)  # what the bootstraps cost (their resamples: RESAMPLES)
    metrics["verdict"] = verdict(metrics)
    if str(model).endswith(".pt") and not val_images:
        with quiet(run.logs / "ultralytics_val.log"):
            # nms=False: ultralytics' own end-to-end mode, the branch an end-to-end export carries
            e2e = {"nms": False} if metrics["end2end"] else {}
            metrics["ultralytics_val"] = ultralytics_val(model, data_yaml, size, run.logs / "ultralytics_val", task=task,
                                                         rect=False, **e2e)
    extra = {"kpt_shape": list(val.kpt_shape), "skeleton": read_pose_yaml(data_yaml)["skeleton"]} if task == "pose" else {}
    write_json_atomic(run.eval / "detections.json",
                      {"task": task, "images": [str(p) for p in val.paths], "classes": list(names), "backends": dets, **extra})
    write_json_atomic(run.eval / "metrics.json", metrics, default=float)
    return metrics


def _reg_max(onnx_path: Path) -> int | None:
    value = onnx_metadata(onnx_path).get("reg_max")
    return int(value) if value and value.isdigit() else None


def comparison(metrics: dict[str, Any]) -> dict[str, Any]:
    """metrics.json's "comparison": the converted head's INT8 against its FP32, with the paired verdict."""
    head = metrics["head"]
    fp32, int8 = row(metrics, head, "FP32"), row(metrics, head, "INT8")
    return {"reference": fp32["name"], "other": int8["name"], "metric": "map50_95", "paired": int8["paired"]}


def verdict(metrics: dict[str, Any]) -> str:
    """The one line metrics.json keeps: the converted head's INT8 mAP50-95 against FP32 with its 95 % interval
    and what it means (the one noise rule), and mAP50 beside it."""
    head = metrics["head"]
    fp32, int8 = row(metrics, head, "FP32"), row(metrics, head, "INT8")
    label = metrics.get("metric_label", "mAP50-95")
    if fp32["map50_95"] < 0.01:  # the model finds (almost) nothing even in FP32: there is no loss to measure
        return (f"Nothing to judge: FP32 itself reaches {label} {fp32['map50_95']:.3f} on these {metrics['images']} images, "
                f"so INT8's {int8['map50_95']:.3f} says nothing about quantization; check the model was trained on this data "
                "(ultralytics' own val() below) and that data_dir is its data set.")
    judged = Paired.from_dict(int8["paired"])
    how = judged.method.replace(" (", ", ").replace(")", "")  # 'paired bootstrap over 50 images, 50 resamples, normal interval'
    short = label.replace("mAP50-95", "mAP50").split(" (")[0]  # "mask mAP50-95" -> "mask mAP50"
    return (f"INT8 RKNN simulator ({head} head): {label} {int8['map50_95']:.3f} vs FP32 {fp32['map50_95']:.3f}: "
            f"{judged.text} ({how}); {short} {int8['map50']:.3f} vs {fp32['map50']:.3f}.")


def read_metrics(run: Run) -> dict[str, Any]:
    """eval/metrics.json of a detection run."""
    return json.loads((run.eval / "metrics.json").read_text())


def table(metrics: dict[str, Any]):
    """One row per backend: the task's mAP50-95 and mAP50 (named after it: mask / pose for segment and pose, with the
    box mAP50-95 beside them), detections, top class score, whole-tensor cosine, and its mAP50-95 against its reference
    (an INT8 row: its FP32; the BGR row: INT8 fed RGB) by the one noise rule."""
    label = metrics.get("metric_label", "mAP50-95").split(" (")[0]
    key = metrics.get("metric_key", "map50_95")
    box = ["box_map50_95"] if metrics.get("task", "detect") != "detect" else []
    cols = ["name", "role", "map50_95", "map50", *box, "detections", "top_score", "cosine_mean", "cosine_min"]
    names = {"map50_95": key, "map50": key.replace("50_95", "50")}
    vs = f"{label} vs reference"
    return pd.DataFrame([{**{names.get(k, k): r.get(k) for k in cols}, vs: (r.get("paired") or {}).get("text", "")}
                         for r in metrics["backends"]]).set_index("name")


def per_class_table(metrics: dict[str, Any]):
    """Per-class AP50-95 of each backend (classes as rows)."""
    return pd.DataFrame({r["name"]: r["per_class"] for r in metrics["backends"]}).round(4)


def row(metrics: dict[str, Any], head: str, precision: str) -> dict[str, Any] | None:
    """The backend row of one head and precision ('FP32' or 'INT8'), if measured."""
    return next((r for r in metrics["backends"] if r["head"] == head and r["precision"] == precision), None)


def measured(run: Run, record: Any, data_dir: Path, batch: int, val_images: int) -> dict[str, Any]:
    """Notebook 30's detector measurement through the step cache: evaluate_detector, or its saved metrics."""
    key = {"batch": batch, "val_images": val_images, "data": str(data_dir), "rows": "with BGR diagnostic",
           "paired": f"bootstrap {RESAMPLES}", "order": "stratified"}
    return cached(run, "30_detect", key,
                  inputs=[*record_inputs(run), data_marker(data_dir), *head_files(run)],
                  outputs=[run.eval / "metrics.json", run.eval / "detections.json"],
                  compute=lambda: evaluate_detector(run, record, data_dir, batch, val_images, source_model(run)),
                  load=lambda: read_metrics(run))


def colour_columns(metrics: dict[str, Any]) -> list[str]:
    """The two backends the colour-order picture compares: the INT8 model fed RGB, and fed BGR."""
    return [r["name"] for r in metrics["backends"] if r["head"] == metrics["head"] and r["precision"] in ("INT8", BGR)]


def pictures(run: Run, task: str, **kwargs: Any):
    """The task's picture grid from eval/detections.json: boxes (detect), masks (segment) or skeletons (pose), each
    backend side by side (kwargs: images, first, path, backends, min_score)."""
    if task == "segment":
        return segment_plots.plot_masks(run, **kwargs)
    if task == "pose":
        return pose_plots.plot_poses(run, **kwargs)
    return detect_plots.plot_boxes(run, **kwargs)
