"""The index page of an instance-segmentation and of a pose run: the verdict, the key figures (FP32, INT8 with its paired
interval, the stock head's INT8, the hybrid, the sweep's best setting) and the board clause name the task's primary
metric (mask / pose mAP50-95) with the box mAP beside it, and the page shows notebook 30's picture grid as masks or
skeletons; nothing on it reads as a classifier's. The run folders are written here, file by file, as notebooks 30, 50 and
60 write them for these tasks (each backend row's map50_95 is the task's metric, box_map50_95 beside it; the tables'
metric column is named after the task)."""
from __future__ import annotations

import csv
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.runner import figures as run_figures
from helpers.runner import index
from helpers.tasks.family import member

CALIB = "calibration.txt (50 images)"
LABEL = {"segment": "mask mAP50-95", "pose": "pose mAP50-95"}  # how every sentence and figure names the task's metric
DRAWN = {"segment": "masks", "pose": "skeletons"}  # what notebook 30's picture grid shows


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def paired(d: float, low: float, high: float, verdict: str) -> dict:
    """A Paired.to_dict() as notebook 30 stores it per INT8 row (paired bootstrap over the val images)."""
    return {"difference_pt": d, "low_pt": low, "high_pt": high, "verdict": verdict, "images": 50, "p_value": None,
            "discordant": None, "method": "paired bootstrap over 50 images (50 resamples, normal interval)",
            "text": f"{d:+.1f} pt (95 % CI {low:+.1f} to {high:+.1f}), {verdict}"}


INT8_VS_FP32 = paired(-1.2, -2.6, +0.2, "within noise")
STOCK_VS_FP32 = paired(-61.0, -64.1, -57.9, "worse")
HYBRID_VS_INT8, HYBRID_VS_FP32 = paired(+0.9, +0.1, +1.7, "better"), paired(-0.3, -1.2, +0.6, "within noise")


def family_run(root: Path, task: str) -> Path:
    """eval/metrics.json (with the stock head's and the BGR diagnostic rows), eval/detections.png, rknn/convert.json,
    model/model.onnx as notebooks 10-30 leave them for a segment or pose run."""
    kind = member(task)

    def row(name, role, head, precision, value, box, judged=None, cosine=None):
        return {"name": name, "role": role, "head": head, "precision": precision, "map50_95": value, "map50": value + 0.25,
                "box_map50_95": box, "box_map50": box + 0.2, "paired": judged,
                **({"cosine_mean": cosine, "cosine_min": cosine - 1e-4} if cosine else {})}

    rows = [row("FP32 split head", "fp32", "split", "FP32", 0.672, 0.780),
            row("INT8 split head", "int8", "split", "INT8", 0.660, 0.771, INT8_VS_FP32, 0.9997),
            row("INT8 split head, BGR input (bug)", "diagnostic", "split", "INT8 BGR", 0.650, 0.760,
                paired(-1.0, -2.0, -0.1, "worse")),
            row("FP32 stock head", "diagnostic", "stock", "FP32", 0.672, 0.780),
            row("INT8 stock head", "diagnostic", "stock", "INT8", 0.062, 0.101, STOCK_VS_FP32, 0.9999)]
    write_json(root / "eval" / "metrics.json", {
        "task": task, "metric_key": kind.metric_key, "metric_label": kind.metric_label, "head": "split", "imgsz": 160,
        "images": 50, "instances": 124, "backends": rows, "ultralytics_val": {"map50_95": 0.671, "box_map50_95": 0.781},
        "comparison": {"reference": "FP32 split head", "other": "INT8 split head", "metric": "map50_95", "paired": INT8_VS_FP32}})
    Image.fromarray(np.full((40, 120, 3), 200, np.uint8)).save(root / "eval" / "detections.png")
    write_json(root / "rknn" / "convert.json", {"load_path": "onnx", "source_bytes": 11_420_000, "rknn_bytes": 4_510_000,
                                                "seconds": 20.4, "config": {"target_platform": "rk3588"}})
    return root


def family_tables(root: Path, task: str) -> None:
    """analysis/sweep.csv, hybrid/compare.csv and hybrid/chosen.json of notebooks 50 and 60, scored by the task's metric
    (its column; the box mAP beside it), each row against FP32 with its paired interval."""
    key = member(task).metric_key
    fp32 = 0.672

    def vs(prefix: str, p: dict) -> dict:
        return {f"{prefix}_{col}": p.get(field) for col, field in
                (("pt", "difference_pt"), ("low_pt", "low_pt"), ("high_pt", "high_pt"), ("verdict", "verdict"))}

    sweep = [("normal", "channel", 0.660, INT8_VS_FP32), ("mmse", "channel", 0.668, paired(-0.4, -1.5, +0.7, "within noise")),
             ("normal", "layer", 0.610, paired(-6.2, -8.0, -4.4, "worse"))]
    write_csv(root / "analysis" / "sweep.csv", [
        {"algorithm": a, "method": m, key: v, f"{key}_delta_pt": round(100 * (v - fp32), 2), "box_map50_95": v + 0.1,
         "mean_cosine": 0.9997, "min_cosine": 0.999, "build_s": 20.0, "why": "", f"fp32_{key}": fp32, "images": 50,
         "calibration": CALIB, **vs("vs_fp32", p)} for a, m, v, p in sweep])
    write_csv(root / "hybrid" / "compare.csv", [
        {"model": name, key: v, f"{key}_delta_pt": round(100 * (v - fp32), 2), "mean_cosine": c, "size_kb": kb,
         "float16_layers": n, "file": f, "vs_fp32": p["text"] if p else "", **vs("vs_fp32", p or {}), "calibration": CALIB}
        for name, v, c, kb, n, f, p in (
            ("FP32", fp32, 1.0, 11150.0, 0, "", None), ("INT8", 0.660, 0.9997, 4400.0, 0, "hybrid/model_int8.rknn", INT8_VS_FP32),
            ("hybrid (c) auto from ranking", 0.669, 0.9998, 4600.0, 8, "hybrid/model_hybrid.rknn", HYBRID_VS_FP32))])
    write_json(root / "hybrid" / "chosen.json", {"model": "hybrid (c) auto from ranking", key: 0.669, "metric": key,
                                                 "mean_cosine": 0.9998, "float16_layers": 8, "file": "hybrid/model_hybrid.rknn",
                                                 "calibration": CALIB, "vs_int8": HYBRID_VS_INT8, "vs_fp32": HYBRID_VS_FP32})
    (root / "hybrid" / "model_hybrid.rknn").write_bytes(b"\0" * 4_600_000)


def page(root: Path) -> str:
    return index.index_html(index.summarize(root))


def page_text(root: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page(root)))


@pytest.mark.parametrize("task", ["segment", "pose"])
def test_verdict_and_key_figures_name_the_tasks_metric_with_the_paired_interval(tmp_path, task):
    label = LABEL[task]
    family_run(tmp_path, task)
    line = index.verdict(tmp_path)
    # the lead's line: the task's metric against FP32 with notebook 30's paired interval, the box mAP beside it
    assert line.startswith(f"INT8 (split head) vs FP32, {label}: {INT8_VS_FP32['text']} (0.660 vs 0.672; "
                           "box mAP50-95 0.771 vs 0.780), 4.51 MB vs 11.42 MB"), line
    assert "with the stock head INT8 reaches 0.062" in line and line.endswith("not yet validated on a board.")
    figs = {f.label: f for f in run_figures.key_figures(tmp_path)}
    fp32 = figs[f"FP32 {label} / {label.replace('50-95', '50')} (ONNX Runtime)"]
    int8 = figs[f"INT8 {label} / {label.replace('50-95', '50')} (RKNN simulator, split head)"]
    stock = figs[f"INT8 {label} / {label.replace('50-95', '50')}, stock head (same images)"]
    # FP32 with the box mAP beside it and ultralytics' own val() of the same weights (the check that the decode is right)
    assert fp32.raw == 0.672 and fp32.value == "0.672 / 0.922 (box mAP50-95 0.780; ultralytics val() 0.671)"
    assert int8.raw == 0.660 and f"vs FP32 {INT8_VS_FP32['text']}" in int8.value and "box mAP50-95 0.771" in int8.value
    # the output-head pitfall: the stock head's collapse is beyond noise though its whole-tensor cosine does not warn
    assert f"vs FP32 {STOCK_VS_FP32['text']}" in stock.value and "whole-tensor cosine 0.9999" in stock.value
    assert "BGR" not in " ".join(figs), "the colour-order diagnostic is notebook 30's lesson, not a key figure"
    text = page_text(tmp_path)
    assert "top-1" not in text and "top1" not in text
    # every mAP among the key figures and the verdict is the task's, never a bare (box) mAP50-95 heading a figure
    assert not [lab for lab in figs if "mAP" in lab and label not in lab]


@pytest.mark.parametrize("task", ["segment", "pose"])
def test_hybrid_sweep_and_board_are_read_in_the_tasks_metric(tmp_path, task):
    label, key = LABEL[task], member(task).metric_key
    family_run(tmp_path, task)
    family_tables(tmp_path, task)
    figs = {f.label: f for f in run_figures.key_figures(tmp_path)}
    hybrid = figs[f"Hybrid {label}"]
    assert hybrid.raw == 0.669 and hybrid.value.startswith("0.669 (hybrid (c) auto from ranking; INT8 baseline of notebook 60: "
                                                           "0.660, hybrid +0.9 pt (95 % CI +0.1 to +1.7), better)")
    best = figs[f"Best quantization setting by {label} (notebook 50 sweep)"]
    assert best.raw == 0.668 and best.value == (f"mmse / channel: 0.668 {label} (vs FP32 -0.4 pt (95 % CI -1.5 to +0.7), "
                                                "within noise; best of 3 settings built)")
    assert figs["RKNN hybrid model size"].value == "4.60 MB"
    line = index.verdict(tmp_path)
    assert (f"hybrid (c) auto from ranking: 0.669 {label}, vs INT8 +0.9 pt (95 % CI +0.1 to +1.7), better, vs FP32 -0.3 pt "
            "(95 % CI -1.2 to +0.6), within noise") in line
    # notebook 40 with a board scores it by the same judge: board/metrics.json keyed by the task's column
    write_json(tmp_path / "board" / "metrics.json", {"task": task, "board": {key: 0.6581, "box_map50_95": 0.77}})
    assert index.verdict(tmp_path).endswith(f"; validated on a board: 0.658 {label}.")
    hybrid = page(tmp_path).split('id="hybrid">')[1].split("</table>")[0]
    assert f"<th>{key}</th>" in hybrid.split("</tr>")[0]  # notebook 60's table in its own metric column
    assert HYBRID_VS_FP32["text"] in html.unescape(hybrid)  # each row against FP32 with its paired interval
    assert "top-1" not in page_text(tmp_path)


@pytest.mark.parametrize("task", ["segment", "pose"])
def test_the_page_shows_the_tasks_picture_grid(tmp_path, task):
    family_run(tmp_path, task)
    shown = page(tmp_path)
    grid = shown.split('id="pictures">')[1].split("</figure>")[0]
    assert "<img" in grid and 'style="max-width:100%"' in grid  # at the page's width: its score labels stay readable
    caption = html.unescape(re.sub(r"<[^>]+>", " ", grid.split("<figcaption>")[1]))
    assert "eval/detections.png" in caption and f"each backend's {DRAWN[task]}" in caption
    assert LABEL[task] in caption


@pytest.mark.parametrize("task", ["segment", "pose"])
def test_a_run_stopped_before_30_shows_the_tasks_rows_not_run(tmp_path, task):
    """Notebook 10 recorded the task (model/export_check.json): the rows are the task's, each "not run"."""
    label = LABEL[task]
    write_json(tmp_path / "model" / "export_check.json", {"task": task, "head": "split"})
    figs = {f.label: f for f in run_figures.key_figures(tmp_path)}
    assert figs[f"Hybrid {label}"].value is None
    assert figs[f"Best quantization setting by {label} (notebook 50 sweep)"].value is None
    assert not any("top-1" in lab for lab in figs)
    assert index.verdict(tmp_path) == index.text.NO_VERDICT


def test_a_model_that_finds_nothing_even_in_fp32_gets_no_quantization_verdict():
    """A YOLO26n-seg trained 8 epochs with ultralytics' defaults scored 0.000 in FP32 (ultralytics' val() too): 'INT8
    within noise' would read as 'no loss'. Both verdicts say there is nothing to judge, and why."""
    from helpers.steps.detect_eval import verdict
    from helpers.text.index import MAP, detect_verdict

    line = detect_verdict("split", 0.0, 0.0, ", 4.69 MB vs 10.86 MB", "stock", 0.0, [], metric=MAP)
    assert line.startswith("nothing to judge: the FP32 model itself scores mAP50-95 0.000") and "within noise (" not in line
    rows = [{"name": n, "head": "split", "precision": p, "map50_95": 0.0, "map50": 0.0, "paired": None}
            for n, p in (("FP32 split head", "FP32"), ("INT8 split head", "INT8"))]
    said = verdict({"head": "split", "images": 50, "backends": rows, "metric_label": "mask mAP50-95"})
    assert said.startswith("Nothing to judge: FP32 itself reaches mask mAP50-95 0.000 on these 50 images")
