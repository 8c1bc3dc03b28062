"""Compatibility matrix: which real architectures build for which chips and dtypes with the installed
rknn-toolkit2, and whether the simulator agrees with ONNX Runtime on them.

Models are built from code (ultralytics YAMLs, torchvision with weights=None, a small grayscale CNN):
nothing is downloaded and random weights are fine, the question is "does it build and compute the
same". Every export and every cell runs in a child process (helpers.core.isolate.run_isolated), so a
build that aborts the process becomes a row with its reason. Cells run on any
concurrent.futures.Executor; results go to matrix.csv, matrix.md and matrix.html. Every built cell also carries
the pre-flight of its verbose build log (helpers.toolkit.profile): the ops the toolkit put on the CPU, the weight +
internal memory, and the NPU-time estimate's verdict (helpers.steps.preflight: no chip has a useful fit, so the
column says why there is no number instead of giving one).

    python benchmarks/compat_matrix.py --out outputs/matrix [--models a,b] [--chips rk3588,rv1106] [--jobs 2]
"""
from __future__ import annotations

import csv
import html
import io
import re
import shutil
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from helpers.backends.onnxrt import OnnxRunner
from helpers.core.errors import WorkbookError, strip_ansi
from helpers.core.isolate import run_isolated
from helpers.core.paths import atomic_path, write_json_atomic, write_text_atomic
from helpers.core.versions import toolkit_version
from helpers.steps.convert import build_on
from helpers.steps.export.models import gray_cnn
from helpers.steps.preflight import estimate
from helpers.tasks.data import load_split, write_calibration_list, write_gray_shapes, write_sample
from helpers.tasks.feeds import normalised
from helpers.tasks.measures import cosine
from helpers.tasks.preprocess import read_image
from helpers.toolkit.options import ConvertConfig
from helpers.toolkit.profile import read_profile
from helpers.toolkit.session import RKNN

CHIPS = ["rk3588", "rk3576", "rk3566", "rk3562", "rv1106", "rv1126b"]
# What rknn-toolkit2 2.5.0 accepts per chip besides w8a8 (probed: config+build on a tiny model).
EXTRA_DTYPES = {"w4a16": ["rk3576", "rv1126b"], "w16a16i_dfp": CHIPS}
IMAGENET_MEAN, IMAGENET_STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


@dataclass(frozen=True)
class ModelSpec:
    """One architecture at one size: how to build its ONNX and how it is preprocessed."""

    name: str
    builder: str  # 'ultralytics:<yaml>', 'torchvision:<function>' or 'graycnn'
    imgsz: int
    channels: int = 3
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (255.0, 255.0, 255.0)
    opset: int = 19
    legacy: bool = False  # initializers listed among the graph inputs, dynamic batch (older exporters)
    note: str = ""  # said in every row of the model (e.g. a task the workbook does not score yet)


UNSCORED = "{task}: the workbook does not support this task yet (no decode, no metric): build and output cosine only"


MODELS: dict[str, ModelSpec] = {m.name: m for m in [
    ModelSpec("yolo11n-cls-224", "ultralytics:yolo11n-cls.yaml", 224),
    ModelSpec("yolo11n-cls-480", "ultralytics:yolo11n-cls.yaml", 480),
    ModelSpec("yolo11n-det-640", "ultralytics:yolo11n.yaml", 640),
    # the detector families a user may bring (ultralytics' own ONNX export; YOLO26 and YOLOv10 have end-to-end heads)
    ModelSpec("yolov5nu-det-640", "ultralytics:yolov5nu.yaml", 640),
    ModelSpec("yolov8n-det-640", "ultralytics:yolov8n.yaml", 640),
    ModelSpec("yolov10n-det-640", "ultralytics:yolov10n.yaml", 640),
    ModelSpec("yolo26n-det-640", "ultralytics:yolo26n.yaml", 640),
    # tasks the workbook does not score yet: does the architecture build, does the simulator agree with ONNX Runtime
    ModelSpec("yolo11n-seg-640", "ultralytics:yolo11n-seg.yaml", 640, note=UNSCORED.format(task="segment")),
    ModelSpec("yolo11n-pose-640", "ultralytics:yolo11n-pose.yaml", 640, note=UNSCORED.format(task="pose")),
    ModelSpec("resnet18-224", "torchvision:resnet18", 224, mean=tuple(IMAGENET_MEAN), std=tuple(IMAGENET_STD)),
    ModelSpec("mobilenetv3s-224", "torchvision:mobilenet_v3_small", 224, mean=tuple(IMAGENET_MEAN), std=tuple(IMAGENET_STD)),
    ModelSpec("gray-cnn-64", "graycnn", 64, channels=1, mean=(0.0,), std=(255.0,)),
    ModelSpec("resnet18-224-opset11", "torchvision:resnet18", 224, mean=tuple(IMAGENET_MEAN), std=tuple(IMAGENET_STD), opset=11,
              legacy=True),
]}


@dataclass
class Cell:
    """One (model, chip, dtype) combination and what happened to it."""

    model: str
    chip: str
    dtype: str
    built: bool = False
    rules_disabled: str = ""
    build_seconds: float | None = None
    rknn_mb: float | None = None
    cosine: float | None = None
    correlation: float | None = None
    reason: str = ""
    cell_seconds: float | None = None
    cpu_ops: int | None = None  # ops the toolkit placed on the CPU (its verbose per-op table)
    cpu_op_names: str = ""  # "OpType name; ..." of those ops
    weight_mb: float | None = None  # the toolkit's Total Weight Memory Size
    internal_mb: float | None = None  # the toolkit's Total Internal Memory Size (activations)
    npu_ms: float | None = None  # the estimated NPU time, only where the chip's fit is useful (none is today)
    npu_time: str = ""  # the estimate as a phrase, or why none is shown
    note: str = ""  # the model's note (ModelSpec.note)


# ---------------------------------------------------------------- children (run in their own process)

def export_onnx(spec: dict[str, Any], out: str) -> dict[str, Any]:
    """Build the architecture from code (random weights) and write its ONNX to out (atomic)."""
    import torch  # slow to import, needed only in the child process that exports

    s = ModelSpec(**{**spec, "mean": tuple(spec["mean"]), "std": tuple(spec["std"])})
    out_path = Path(out)
    torch.manual_seed(0)
    kind, _, arg = s.builder.partition(":")
    with atomic_path(out_path, ".partial.onnx") as tmp:
        if kind == "ultralytics":
            from ultralytics import YOLO  # slow to import, needed only for the ultralytics architectures
            from ultralytics.utils import SETTINGS

            SETTINGS.update({"sync": False})
            work = out_path.parent / f".{out_path.stem}.work"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            model = YOLO(arg)
            model.save(str(work / "model.pt"))  # exports land beside the weights file
            written = YOLO(str(work / "model.pt")).export(format="onnx", imgsz=s.imgsz, opset=s.opset, simplify=True,
                                                          dynamic=False, device="cpu")
            shutil.move(str(written), tmp)
            shutil.rmtree(work, ignore_errors=True)
        else:
            if kind == "torchvision":
                import torchvision  # slow to import, needed only for the torchvision architectures

                net = getattr(torchvision.models, arg)(weights=None)
            else:
                net = gray_cnn(classes=4, channels=s.channels)
            net.eval()
            x = torch.rand(1, s.channels, s.imgsz, s.imgsz)
            extra = {"dynamic_axes": {"images": {0: "batch"}, "output0": {0: "batch"}},
                     "keep_initializers_as_inputs": True} if s.legacy else {}
            with torch.no_grad():
                torch.onnx.export(net, x, str(tmp), opset_version=s.opset, input_names=["images"], output_names=["output0"],
                                  **extra)
    return {"onnx": str(out_path), "bytes": out_path.stat().st_size}


def build_cell(onnx: str, chip: str, dtype: str, imgsz: int, mean: list[float], std: list[float],
               images: list[str], work: str) -> dict[str, Any]:
    """Build onnx for chip/dtype (helpers.toolkit.session.RKNN retries with the rules the toolkit's log names), export
    the .rknn, and compare the simulator with ONNX Runtime on the images (mean cosine of the outputs)."""
    work_dir = Path(work)
    work_dir.mkdir(parents=True, exist_ok=True)
    cfg = ConvertConfig(mean_values=list(mean), std_values=list(std), target_platform=chip, quantized_dtype=dtype)
    dataset = write_calibration_list([Path(p) for p in images], work_dir / "calib.txt")
    rknn = work_dir / "model.rknn"
    with RKNN(work_dir / "build.log", auto_disable_rules=True) as rk:  # retries on the toolkit's disable_rules hint
        t0 = time.perf_counter()
        build_on(rk, Path(onnx), cfg, dataset, imgsz, "onnx")
        seconds = time.perf_counter() - t0
        rules = [d.rule for d in rk.auto_disabled]
        rk.export_rknn(str(rknn))
        rk.init_runtime(target=None)
        pixels = np.stack([read_image(p, imgsz, len(mean)) for p in images])
        sim = [np.concatenate([np.ravel(o) for o in rk.inference(inputs=[pixels[i : i + 1]], data_format="nhwc")])
               for i in range(len(pixels))]
    with OnnxRunner(onnx, normalised(mean, std)) as ort:  # one image per call, as the simulator ran them
        ref = [np.concatenate([np.ravel(o) for o in ort.outputs(pixels[i : i + 1])[0]]) for i in range(len(pixels))]
    ref_a, sim_a = np.stack(ref), np.stack(sim)
    cos = cosine(ref_a, sim_a)
    # correlation = cosine of the outputs minus their mean: near-uniform softmax outputs (random weights)
    # have a cosine near 1 whatever the simulator computes, their correlation does not
    corr = cosine(ref_a - ref_a.mean(axis=1, keepdims=True), sim_a - sim_a.mean(axis=1, keepdims=True))
    return {"built": True, "rules_disabled": ",".join(rules), "build_seconds": round(seconds, 2),
            "rknn_mb": round(rknn.stat().st_size / 1e6, 3), "cosine": round(float(cos.mean()), 5),
            "correlation": round(float(corr.mean()), 4), **preflight_columns(work_dir / "build.log", chip)}


def preflight_columns(log: Path, chip: str) -> dict[str, Any]:
    """The pre-flight of a cell's verbose build log: CPU ops (count, names), memory (MB), the time estimate or why none."""
    profile = read_profile(log)  # the last complete build: after a retry without a graph rule, the one that was exported
    cpu = profile.cpu_ops
    est = estimate(profile, chip)
    time_text = (f"~{est.ms:.1f} ms (estimate, {est.low_ms:.1f}-{est.high_ms:.1f})" if est.ms is not None
                 else f"not shown: {est.reason}")
    return {"cpu_ops": len(cpu), "cpu_op_names": "; ".join(f"{r.op_type} {r.name.split(':', 1)[-1]}" for r in cpu.itertuples()),
            "weight_mb": round((profile.weight_kb or 0) / 1024, 3), "internal_mb": round((profile.internal_kb or 0) / 1024, 3),
            "npu_ms": round(est.ms, 2) if est.ms is not None else None, "npu_time": time_text}


# ---------------------------------------------------------------- parent side

def one_line(exc: BaseException) -> str:
    """The reason of a failed cell in one line: the error's first line plus the toolkit's last E line."""
    text = strip_ansi(str(exc)).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    first = re.sub(r" \(full log: [^)]*\)", "", first)
    errors = [ln.strip() for ln in text.splitlines()[1:]
              if re.match(r"^(E |.*Error:)", ln.strip()) and "rknn-toolkit2 version" not in ln and "Traceback" not in ln]
    detail = errors[-1] if errors and errors[-1] not in first else ""
    return (f"{first} | {detail}" if detail else first)[:300]


def run_cell(model: str, onnx: str, chip: str, dtype: str, images: list[str], work: str, timeout: float = 900) -> Cell:
    """One cell in a child process; any failure (error, crash, timeout) becomes the row's reason."""
    spec = MODELS[model]
    cell = Cell(model, chip, dtype, note=spec.note)
    t0 = time.perf_counter()
    kwargs = {"onnx": onnx, "chip": chip, "dtype": dtype, "imgsz": spec.imgsz, "mean": list(spec.mean), "std": list(spec.std),
              "images": images, "work": work}
    try:
        res = run_isolated("helpers.steps.matrix:build_cell", kwargs, Path(work) / "child.log", timeout=timeout)
        for k, v in res.items():
            setattr(cell, k, v)
    except Exception as exc:  # WorkbookError, RknnError, ToolkitCrash, timeout: all are the cell's result
        cell.reason = one_line(exc)
    cell.cell_seconds = round(time.perf_counter() - t0, 1)
    return cell


def default_cells(models: list[str], chips: list[str], extra_dtypes: str = "some") -> list[tuple[str, str, str]]:
    """(model, chip, dtype) for w8a8 everywhere, plus w4a16 / w16a16i_dfp where the chip has them:
    for every model ('all'), for the two smallest models ('some') or none ('none')."""
    cells = [(m, c, "w8a8") for m in models for c in chips]
    smallest = [m for m in ("gray-cnn-64", "yolo11n-cls-224") if m in models]
    extra_models = models if extra_dtypes == "all" else smallest if extra_dtypes == "some" else []
    for m in extra_models:
        cells += [(m, c, "w4a16") for c in chips if c in EXTRA_DTYPES["w4a16"]]
        cells += [(m, c, "w16a16i_dfp") for c in chips[:2]]
    if extra_models and "rk3562" in chips:  # 2.5.0 aborts the whole process here: the row must say why
        cells.append((extra_models[0], "rk3562", "w8a16"))
    return cells


def sample_images(out: Path, count: int = 4) -> tuple[list[str], list[str]]:
    """A few local RGB (digits sample) and grayscale (shapes) images for calibration and the cosine check."""
    rgb = load_split(write_sample(), "val").subset(count).paths
    gray_dir = write_gray_shapes(out / "gray_images", size=64, train_per_class=2, val_per_class=count)
    gray = load_split(gray_dir, "val").subset(count).paths
    return [str(p) for p in rgb], [str(p) for p in gray]


def run_matrix(out_dir: str | Path, models: list[str] | None = None, chips: list[str] | None = None,
               executor: Executor | None = None, cells: list[tuple[str, str, str]] | None = None,
               extra_dtypes: str = "some", images: int = 4, timeout: float = 900, log=print) -> list[Cell]:
    """Export the models, run every cell on the executor (a local thread pool of 2 when None: each
    cell is its own child process) and write matrix.csv, matrix.md and matrix.html into out_dir."""
    models = models or list(MODELS)
    chips = chips or list(CHIPS)
    unknown = [m for m in models if m not in MODELS] + [c for c in chips if c not in CHIPS]
    if unknown:
        raise WorkbookError(f"Unknown matrix model or chip {', '.join(unknown)}; models: {', '.join(MODELS)}; "
                            f"chips: {', '.join(CHIPS)}.")
    out = Path(out_dir).resolve()
    (out / "models").mkdir(parents=True, exist_ok=True)
    cells = cells or default_cells(models, chips, extra_dtypes)
    rgb, gray = sample_images(out, images)
    started = time.perf_counter()
    own = executor is None
    pool = executor or ThreadPoolExecutor(max_workers=2, thread_name_prefix="matrix")
    try:
        def export(m: str) -> tuple[str, str]:
            onnx = out / "models" / f"{m}.onnx"
            if not onnx.exists():
                try:
                    run_isolated("helpers.steps.matrix:export_onnx", {"spec": asdict(MODELS[m]), "out": str(onnx)},
                                 out / "models" / f"{m}.log", timeout=timeout)
                except Exception as exc:
                    return m, "export failed: " + one_line(exc)
            return m, str(onnx)

        exported = dict(pool.map(export, models))
        futures = []
        for m, c, d in cells:
            if exported[m].startswith("export failed"):
                futures.append(Cell(m, c, d, reason=exported[m], note=MODELS[m].note))
                continue
            imgs = gray if MODELS[m].channels == 1 else rgb
            futures.append(pool.submit(run_cell, m, exported[m], c, d, imgs, str(out / "cells" / f"{m}_{c}_{d}"), timeout))
        results: list[Cell] = []
        for f in futures:
            cell = f if isinstance(f, Cell) else f.result()
            results.append(cell)
            result = f"ok  {cell.build_seconds:.1f} s  cos {cell.cosine}" if cell.built else f"FAIL {cell.reason[:100]}"
            log(f"{cell.model:<22} {cell.chip:<8} {cell.dtype:<12} " + result)
    finally:
        if own:
            pool.shutdown(wait=True)
    seconds = time.perf_counter() - started
    write_outputs(out, results, seconds, images)
    log(f"matrix: {len(results)} cells ({sum(c.built for c in results)} built) in {seconds / 60:.1f} min -> {out / 'matrix.csv'}")
    return results


# ---------------------------------------------------------------- outputs

def cpu_text(cell: Cell) -> str:
    """The CPU ops of a built cell: 'CPU ops: none' or their count and types (names in matrix.csv)."""
    if cell.cpu_ops is None:
        return ""
    if not cell.cpu_ops:
        return "CPU ops: none"
    kinds = [name.split(" ", 1)[0] for name in cell.cpu_op_names.split("; ")]
    counts = {k: kinds.count(k) for k in dict.fromkeys(kinds)}
    return f"CPU ops: {cell.cpu_ops} (" + ", ".join(f"{k} x{n}" if n > 1 else k for k, n in counts.items()) + ")"


def summary_text(cell: Cell, rule_marks: dict[str, str] | None = None) -> str:
    """One table cell: built (seconds, MB, cosine, rules disabled, CPU ops, memory, time) or the reason it failed."""
    if not cell.built:
        return f"✗ {cell.reason}"
    marks = rule_marks or {}
    off = f"; rules off: {cell.rules_disabled}" if cell.rules_disabled else ""
    rules = f" {marks.get(cell.rules_disabled, '')}" if cell.rules_disabled in marks else off
    text = f"✓ {cell.build_seconds:.1f} s, {cell.rknn_mb:.1f} MB, cos {cell.cosine:.4f}{rules}"
    if cell.cpu_ops is not None:
        npu = f"~{cell.npu_ms:.1f} ms est." if cell.npu_ms is not None else "time: not shown"
        text += f"; {cpu_text(cell)}; mem {cell.weight_mb:.1f} + {cell.internal_mb:.1f} MB; {npu}"
    return text


def markdown_table(cells: list[Cell]) -> str:
    """w8a8 as a grid (models x chips), the other dtypes as rows, the disabled rule sets as footnotes."""
    sets = list(dict.fromkeys(c.rules_disabled for c in cells if c.built and c.rules_disabled))
    marks = {rules: f"[{chr(ord('a') + i)}]" for i, rules in enumerate(sets)}
    grid = [c for c in cells if c.dtype == "w8a8"]
    chips = list(dict.fromkeys(c.chip for c in grid))
    models = list(dict.fromkeys(c.model for c in grid))
    by = {(c.model, c.chip): c for c in grid}
    lines = ["**w8a8**", "", "| model | " + " | ".join(chips) + " |", "|---|" + "---|" * len(chips)]
    for m in models:
        vals = [summary_text(by[(m, c)], marks).replace("|", "/") if (m, c) in by else "" for c in chips]
        lines.append(f"| {m} | " + " | ".join(vals) + " |")
    others = [c for c in cells if c.dtype != "w8a8"]
    if others:
        lines += ["", "**other dtypes** (where the chip has them)", "", "| model | chip | dtype | result |", "|---|---|---|---|"]
        lines += [f"| {c.model} | {c.chip} | {c.dtype} | {summary_text(c, marks).replace('|', '/')} |" for c in others]
    if marks:
        lines += ["", "Rules disabled after the toolkit's own hint (`You can add disable_rules=[...]`):", ""]
        lines += [f"- {mark} `{rules.replace(',', '`, `')}`" for rules, mark in marks.items()]
    return "\n".join(lines + notes_lines(cells)) + "\n"


def notes_lines(cells: list[Cell]) -> list[str]:
    """Below the tables: what the columns are, the models' notes, and per chip why no NPU time is shown."""
    built = [c for c in cells if c.built and c.cpu_ops is not None]
    lines = []
    if built:
        lines += ["", "CPU ops, memory (weights + internal, MB) and time come from each cell's verbose build log (the "
                  "toolkit's per-op table, helpers/toolkit/profile.py); the ops' names are in matrix.csv (cpu_op_names). "
                  "NPU time per inference, by chip:", ""]
        why = {c.chip: c.npu_time for c in built}
        lines += [f"- {chip}: {text}" for chip, text in why.items()]
    notes = {c.model: c.note for c in cells if c.note}
    if notes:
        lines += ["", "Models:", ""] + [f"- {m}: {note}" for m, note in notes.items()]
    return lines


def write_outputs(out: Path, cells: list[Cell], seconds: float, images: int = 4) -> None:
    """matrix.csv (one row per cell), matrix.md and matrix.html (the table), matrix.json (run facts)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[f.name for f in fields(Cell)])
    writer.writeheader()
    for c in cells:
        writer.writerow(asdict(c))
    write_text_atomic(out / "matrix.csv", buf.getvalue())
    head = (f"rknn-toolkit2 {toolkit_version()}: {len(cells)} cells, {sum(c.built for c in cells)} built, "
            f"{seconds / 60:.1f} min wall time. A cell: build seconds, .rknn size, mean cosine of simulator vs ONNX Runtime "
            f"outputs on {images} images (random weights: an agreement check, not accuracy; correlation in matrix.csv), "
            "the ops the toolkit put on the CPU, weight + internal memory, whether an NPU time is shown; or why it failed.\n\n")
    write_text_atomic(out / "matrix.md", head + markdown_table(cells))
    body = "".join(
        f"<tr><td>{html.escape(c.model)}</td><td>{c.chip}</td><td>{c.dtype}</td><td class={'ok' if c.built else 'fail'}>"
        f"{html.escape(summary_text(c))}</td><td>{html.escape(c.cpu_op_names)}</td><td>{html.escape(c.npu_time)}</td>"
        f"<td>{html.escape(c.note)}</td></tr>" for c in cells)
    write_text_atomic(out / "matrix.html", "<!doctype html><meta charset=utf-8><title>Compatibility matrix</title>"
                      "<style>td{border:1px solid #ccc;padding:2px 6px}.ok{background:#e6ffe6}.fail{background:#ffe6e6}</style>"
                      f"<p>{html.escape(head)}</p><table><tr><th>model</th><th>chip</th><th>dtype</th><th>result</th>"
                      f"<th>ops on the CPU</th><th>NPU time</th><th>note</th></tr>{body}</table>")
    write_json_atomic(out / "matrix.json", {"cells": len(cells), "built": sum(c.built for c in cells),
                                            "seconds": round(seconds, 1), "toolkit_version": toolkit_version()})
