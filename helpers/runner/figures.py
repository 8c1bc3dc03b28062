"""The run's key figures, read defensively from its JSON/CSV artifacts.

Every reader returns None when its artifact is missing or lacks the value, so a step that has not run
shows as "not run" and nothing is invented. Backends are picked by the "role" field of
eval/metrics.json (fp32, int8, hybrid, board, diagnostic), never by their display names.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from helpers.core.paths import Run
from helpers.runner.artifacts import file_size, number, pick, read_csv, read_json, size
from helpers.steps.analysis import best_row, row_paired
from helpers.steps.hybrid import choose_export, export_candidates
from helpers.steps.preflight import PREFLIGHT_JSON
from helpers.tasks.family import in_family, member
from helpers.tasks.measures import metric_in
from helpers.text.index import (
    DEMO_FIGURE,
    MAP,
    NO_PROFILE,
    TOP1,
    Metric,
    cpu_ops_figure,
    figure_value,
    memory_figure,
    metric_named,
    pct,
)
from helpers.toolkit.options import quantized_name

NOT_RUN = "not run"


@dataclass
class Figure:
    """One key figure: its label, the formatted value (None = not available) and where it came from."""

    label: str
    value: str | None
    source: str
    raw: float | None = None


# ----------------------------------------------------------------------------- the figures


def compare_rows(root: Path) -> list[dict[str, str]]:
    return read_csv(root / "hybrid" / "compare.csv") or []


def backend(metrics: Any, role: str) -> dict[str, Any] | None:
    """The first eval/metrics.json backend with this role; files written before roles existed fall back
    to their fixed order (FP32 first, INT8 second)."""
    rows = metrics.get("backends") if isinstance(metrics, dict) else None
    rows = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
    if any("role" in r for r in rows):
        return next((r for r in rows if r.get("role") == role), None)
    legacy = {"fp32": 0, "int8": 1}.get(role)
    return rows[legacy] if legacy is not None and len(rows) > legacy else None


def top1_of(row: dict[str, Any] | None) -> float | None:
    return number(row.get("top1")) if row else None


def demo_images(root: Path, notebook: str) -> int:
    """demo_calib_images a notebook ran with (params.json), 0 when it ran without demo mode or not at all."""
    params = read_json(Path(root) / "params.json")
    section = params.get(notebook) if isinstance(params, dict) else None
    value = section.get("demo_calib_images") if isinstance(section, dict) else 0
    return int(number(value) or 0)


def quant_name(root: Path) -> str:
    """What the page calls the run's quantized model (helpers.toolkit.options.quantized_name of rknn/convert.json's
    quantized_dtype): 'INT8' for w8a8, 'w4a16' for w4a16, ..."""
    convert = read_json(Path(root) / "rknn" / "convert.json")
    config = convert.get("config") if isinstance(convert, dict) else None
    return quantized_name(config.get("quantized_dtype") if isinstance(config, dict) else None)


def demo_hybrid(root: Path) -> int:
    """demo_calib_images notebook 60 ran with (also when only chosen.json or the table says demo): 0 = not a demo."""
    chosen = read_json(Path(root) / "hybrid" / "chosen.json")
    flagged = isinstance(chosen, dict) and (chosen.get("demo") is True or str(chosen.get("calibration", "")).startswith("demo"))
    return demo_images(root, "60_hybrid_quantization") or int(flagged)


def hybrid_choice(compare: list[dict[str, str]], search: list[dict[str, str]]) -> dict[str, Any] | None:
    """Notebook 60's own rule (hybrid.choose_export over hybrid.export_candidates), which reads the tables' metric column."""
    return choose_export(export_candidates(compare, search))


def exported_hybrid(root: Path, metric: Metric | None = None) -> dict[str, Any] | None:
    """What notebook 60 exported (hybrid/chosen.json), else the same rule applied to its tables."""
    key = (metric or run_metric(root)).key
    chosen = read_json(Path(root) / "hybrid" / "chosen.json")
    if isinstance(chosen, dict) and number(chosen.get(key)) is not None:
        return chosen
    return hybrid_choice(compare_rows(root), read_csv(Path(root) / "hybrid" / "search.csv") or [])


def int8_row(rows: list[dict[str, str]]) -> dict[str, str] | None:
    return next((r for r in rows if str(r.get("model", "")) == "INT8"), None)


def task_metric(task: Any) -> Metric | None:
    """The primary metric of a detector-family task (helpers.tasks.family: mAP50-95, mask or pose mAP50-95), None for a
    classifier's."""
    return metric_named(member(task).metric_key) if isinstance(task, str) and in_family(task) else None


def family_metric(metrics: Any) -> Metric | None:
    """The primary metric eval/metrics.json was scored by when notebook 30 wrote it for the detector family (detect,
    segment, pose; its metric_key, else its task's); None for a classifier's."""
    if not isinstance(metrics, dict) or task_metric(metrics.get("task")) is None:
        return None
    return metric_named(metrics.get("metric_key")) or task_metric(metrics["task"])


def table_metric(columns: Any) -> Metric | None:
    """The metric of a table row or JSON record (helpers.tasks.measures.metric_in), as the page names it."""
    return metric_named(metric_in(columns))


def run_metric(root: Path) -> Metric:
    """The run's primary metric (top-1; mAP50-95, mask or pose mAP50-95 for the detector family): from
    eval/metrics.json, else the task notebook 10 recorded, else the metric column of notebook 50's / 60's tables."""
    root = Path(root)
    metrics = read_json(root / "eval" / "metrics.json")
    if isinstance(metrics, dict) and "backends" in metrics:
        return family_metric(metrics) or TOP1
    export = read_json(root / "model" / "export_check.json")
    if isinstance(export, dict) and export.get("task"):
        return task_metric(export["task"]) or TOP1
    for rows in (compare_rows(root), read_csv(root / "analysis" / "sweep.csv"), read_csv(root / "hybrid" / "search.csv")):
        found = table_metric(rows[0]) if rows else None
        if found:
            return found
    return TOP1


def map_of(row: dict[str, Any] | None) -> float | None:
    return number(row.get("map50_95")) if row else None


def other_head(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The INT8 row of the head notebook 20 did not convert (the output-head pitfall), if notebook 30 measured it."""
    rows = metrics.get("backends") if isinstance(metrics.get("backends"), list) else []
    return next((r for r in rows if isinstance(r, dict) and r.get("role") == "diagnostic" and r.get("precision") == "INT8"),
                None)


def ultralytics_val(metrics: dict[str, Any]) -> float | None:
    """The task's mAP50-95 ultralytics' own val() gave the same weights (notebook 30's check of the decode), if it ran."""
    found = metrics.get("ultralytics_val")
    return number(found.get("map50_95")) if isinstance(found, dict) else None


def detect_figures(metrics: dict[str, Any], metric: Metric) -> list[Figure]:
    """A detector-family run's headline numbers in its metric (mAP50-95; mask or pose mAP50-95, the box mAP beside it):
    FP32 (with ultralytics' val() of the same weights when it ran), INT8 with the converted head and INT8 with the other
    head (the output-head pitfall), each INT8 with the paired comparison notebook 30 stored against its FP32 (the one
    noise rule), from eval/metrics.json."""
    figs = []
    head = metrics.get("head", "split")
    label = f"{metric.label} / {metric.at50}"
    other = other_head(metrics)
    rows = [(backend(metrics, "fp32"), f"FP32 {label} (ONNX Runtime)"),
            (backend(metrics, "int8"), f"INT8 {label} (RKNN simulator, {head} head)")]
    if other:
        rows.append((other, f"INT8 {label}, {other.get('head')} head (same images)"))
    for row, name in rows:
        raw = map_of(row)
        if raw is None:
            figs.append(Figure(name, None, "eval/metrics.json"))
            continue
        paired = row.get("paired") if isinstance(row.get("paired"), dict) else {}
        box = number(row.get("box_map50_95"))
        cos = number(row.get("cosine_mean")) if row is other else None  # the pitfall: the whole-tensor cosine does not warn
        notes = [f"vs FP32 {paired['text']}"] if paired.get("text") else []
        notes += [f"box {MAP.label} {box:.3f}"] if box is not None else []
        checked = ultralytics_val(metrics) if row.get("role") == "fp32" else None
        notes += [f"ultralytics val() {checked:.3f}"] if checked is not None else []
        notes += [f"whole-tensor cosine {cos:.4f}"] if cos is not None else []
        figs.append(Figure(name, figure_value(metric, raw, number(row.get("map50")), notes), "eval/metrics.json", raw))
    return figs


def sweep_best(root: Path, metric: Metric) -> tuple[dict[str, Any], int] | None:
    """Notebook 50's best setting in analysis/sweep.csv by its own rule (analysis.best_row) and how many settings
    built; None when the table is missing, scores another metric or has no built row."""
    path = Path(root) / "analysis" / "sweep.csv"
    rows = read_csv(path)
    if not rows or table_metric(rows[0]) is not metric or not any(number(r.get(metric.key)) is not None for r in rows):
        return None
    try:
        frame = pd.read_csv(path)
        best, _ = best_row(frame)
    except Exception:  # a table the rule cannot rank shows as not run, as every unreadable artifact does
        return None
    return best.to_dict(), int(frame[metric.key].notna().sum())


def sweep_figure(root: Path, metric: Metric) -> Figure:
    """The sweep's best quantized_algorithm / quantized_method in the run's metric, with its distance to FP32."""
    found = sweep_best(root, metric)
    label = f"Best quantization setting by {metric.label} (notebook 50 sweep)"
    if found is None:
        return Figure(label, None, "analysis/sweep.csv")
    row, built = found
    demo = demo_images(root, "50_accuracy_analysis") or int(str(row.get("calibration") or "").startswith("demo"))
    if demo:  # a demo's figures stay in their labelled section, never among the key figures
        return Figure(label, DEMO_FIGURE.format(nb=50, n=demo), "analysis/sweep.csv")
    value = float(row[metric.key])
    paired = row_paired(row, "vs_fp32")  # the one noise rule's comparison the sweep stored
    delta = number(row.get(f"{metric.key}_delta_pt"))
    fp32 = number(row.get(f"fp32_{metric.key}"))
    delta = delta if delta is not None else (100 * (value - fp32) if fp32 is not None else None)
    against = f"vs FP32 {paired.text}" if paired else f"{delta:+.1f} pt vs FP32" if delta is not None else ""
    notes = ([against] if against else []) + [f"best of {built} settings built"]
    text = f"{row.get('algorithm')} / {row.get('method')}: {metric.text(value)} {metric.label} ({'; '.join(notes)})"
    return Figure(label, text, "analysis/sweep.csv", value)


def key_figures(root: Path) -> list[Figure]:
    """The run's headline numbers, each from its artifact or None."""
    root = Path(root)
    metrics = read_json(root / "eval" / "metrics.json")
    convert = read_json(root / "rknn" / "convert.json")
    compare = compare_rows(root)
    figs: list[Figure] = []

    def add(label: str, raw: float | None, fmt: Callable[[float], str | None], source: str) -> None:
        figs.append(Figure(label, fmt(raw) if raw is not None else None, source, raw))

    comparison = metrics.get("comparison") if isinstance(metrics, dict) and isinstance(metrics.get("comparison"), dict) else {}
    metric = run_metric(root)
    family = metric is not TOP1  # the detector family (detect, segment, pose): one code path, named by the run's metric
    if family:
        figs += detect_figures(metrics if isinstance(metrics, dict) else {}, metric)
    else:
        add("FP32 top-1 (ONNX Runtime)", top1_of(backend(metrics, "fp32")), pct, "eval/metrics.json")
        add("INT8 top-1 (RKNN simulator)", top1_of(backend(metrics, "int8")), pct, "eval/metrics.json")
    base = int8_row(compare)
    demo, quant = demo_hybrid(root), quant_name(root)
    best = None if demo else exported_hybrid(root, metric)  # a demo's hybrid stays in its DEMO section

    def note(value: Any, fmt: Callable[[float], str | None], delta_of: float | None = None, bare: bool = True) -> str:
        base_txt = f"; {quant} baseline of notebook 60: {fmt(float(value))}" if number(value) is not None else ""
        paired = best.get("vs_int8") if best else None  # notebook 60's paired comparison with that baseline
        if base_txt and delta_of is not None and isinstance(paired, dict) and paired.get("text"):
            base_txt += f", hybrid {paired['text']}"
        elif base_txt and delta_of is not None and bare:  # a chosen.json from before the noise rule: the bare difference
            base_txt += f", hybrid {100 * (delta_of - float(value)):+.1f} pt"
        return f" ({best['model']}{base_txt})" if best else ""

    if family:
        add(f"Hybrid {metric.label}", number(best.get(metric.key)) if best else None,
            lambda x: f"{x:.3f}{note((base or {}).get(metric.key), metric.text, x)}", "hybrid/compare.csv")
        figs.append(sweep_figure(root, metric))
        head = metrics.get("head", "split") if isinstance(metrics, dict) else "split"
        add(f"Final-output cosine INT8 vs FP32 (mean, {head} head)", number((backend(metrics, "int8") or {}).get("cosine_mean")),
            lambda x: f"{x:.4f}", "eval/metrics.json")
    else:
        add("Hybrid top-1", number(best["top1"]) if best else None,
            lambda x: f"{pct(x)}{note((base or {}).get('top1'), pct, x, bare=False)}", "hybrid/compare.csv")
        add("Final-output cosine INT8 vs FP32 (mean)", number(comparison.get("mean_cosine")), lambda x: f"{x:.4f}",
            "eval/metrics.json")
    add("Final-output cosine hybrid vs FP32 (mean)", number(best.get("mean_cosine")) if best else None,
        lambda x: f"{x:.4f}{note((base or {}).get('mean_cosine'), lambda v: f'{v:.4f}')}", "hybrid/compare.csv")
    conv = convert if isinstance(convert, dict) else {}
    onnx = number(conv.get("source_bytes")) if conv.get("load_path", "onnx") == "onnx" else None
    add("ONNX model size", onnx if onnx is not None else file_size(root / "model" / "model.onnx"), size, "model/model.onnx")
    rknn = number(conv.get("rknn_bytes"))
    add("RKNN INT8 model size", rknn if rknn is not None else file_size(root / "rknn" / "model.rknn"), size, "rknn/model.rknn")
    hybrid_file = Run(root).resolve(str(best["file"])) if best and best.get("file") else None
    add("RKNN hybrid model size", file_size(hybrid_file) if hybrid_file else None, size,
        f"hybrid/{hybrid_file.name}" if hybrid_file else "hybrid/model_hybrid.rknn")
    if demo:
        hybrid_labels = (f"Hybrid {metric.label}", "Final-output cosine hybrid vs FP32 (mean)", "RKNN hybrid model size")
        figs = [Figure(f.label, DEMO_FIGURE.format(nb=60, n=demo), f.source) if f.label in hybrid_labels else f for f in figs]
    add("Conversion time (load + build + export)", number(conv.get("seconds")), lambda x: f"{x:.1f} s", "rknn/convert.json")
    figs += preflight_figures(root)
    figs.append(board_status(root))
    return figs


PREFLIGHT_LABELS = ("Ops on the CPU (pre-flight: the toolkit's placement)", "Model memory: weights + internal (pre-flight)")


def preflight_figures(root: Path) -> list[Figure]:
    """Notebook 20's pre-flight (rknn/preflight.json): the ops the toolkit put on the CPU, named, and weight + internal
    memory against the chip's in-package RAM. Never a time: no chip's cycle-model estimate proved useful
    (benchmarks/preflight_vs_zoo.md)."""
    data = read_json(Path(root) / PREFLIGHT_JSON)
    if not isinstance(data, dict) or not isinstance(data.get("profile"), bool):
        return [Figure(label, None, PREFLIGHT_JSON) for label in PREFLIGHT_LABELS]
    if not data["profile"]:
        return [Figure(label, NO_PROFILE, PREFLIGHT_JSON) for label in PREFLIGHT_LABELS]
    chip = str(data.get("chip") or "")
    ops = data.get("cpu_ops")
    ops = [o for o in ops if isinstance(o, dict)] if isinstance(ops, list) else None
    weight, internal = number(data.get("weight_mb")), number(data.get("internal_mb"))
    ram = data.get("ram_mb") if isinstance(data.get("ram_mb"), dict) else {}
    memory = memory_figure(chip, weight, internal, ram) if weight is not None and internal is not None else None
    return [Figure(PREFLIGHT_LABELS[0], cpu_ops_figure(chip, ops) if ops is not None else None, PREFLIGHT_JSON,
                   len(ops) if ops is not None else None),
            Figure(PREFLIGHT_LABELS[1], memory, PREFLIGHT_JSON, weight + internal if memory else None)]


def board_status(root: Path) -> Figure:
    """The status line of board/devices.json ('no board found ...'), plus FPS when a board ran; or not run."""
    devices = read_json(root / "board" / "devices.json")
    if not isinstance(devices, dict):
        return Figure("Board", None, "board/devices.json")
    found = [str(d.get("id", d) if isinstance(d, dict) else d) for key in ("found", "adb", "ntb")
             for d in (devices.get(key) or []) if isinstance(devices.get(key), list)]
    found = list(dict.fromkeys(found))
    listed = f"{len(found)} device(s): {', '.join(found[:3])}" if found else "no board found"
    text = str(devices.get("status") or "").strip() or listed
    perf = read_json(root / "board" / "perf.json")
    fps = pick(perf, r"(.*\.)?(total_)?fps") if perf else None
    if fps:
        text += f"; {fps[1]:.1f} FPS on the board"
    return Figure("Board", text, "board/devices.json", len(found))


def sensitive_layers(root: Path, n: int = 5) -> list[dict[str, Any]] | None:
    """The n layers with the lowest single-layer cosine in analysis/layers.csv (None if not there)."""
    rows = read_csv(Path(root) / "analysis" / "layers.csv")
    if not rows:
        return None
    cols = list(rows[0])
    single = next((c for c in cols if re.search(r"single.*cos", c, re.I)), None)
    entire = next((c for c in cols if re.search(r"entire.*cos", c, re.I)), None)
    name = next((c for c in cols if re.search(r"tensor|name|layer", c, re.I) and c not in {single, entire}), cols[0])
    op = next((c for c in cols if re.search(r"op", c, re.I) and c not in {name, single, entire}), None)
    key = single or entire
    if key is None:
        return None
    scored = [r for r in rows if number(r.get(key)) is not None]
    scored.sort(key=lambda r: float(r[key]))
    return [{"layer": r.get(name, ""), "op": r.get(op, "") if op else "",
             "single cosine": number(r.get(single)) if single else None,
             "entire cosine": number(r.get(entire)) if entire else None} for r in scored[:n]]


PLOT_DIRS = ("model", "rknn", "eval", "board", "analysis", "hybrid")
LESSON_ONLY = ("eval/colour_order.png",)  # one image drawn to teach a pitfall in its notebook, not a figure of the run


def plots(root: Path) -> list[tuple[str, Path]]:
    """Every PNG the notebooks saved in their artifact folders (but LESSON_ONLY), in series order; captions of
    plots made under demo calibration say so."""
    demo = {"analysis": demo_images(root, "50_accuracy_analysis"), "hybrid": demo_images(root, "60_hybrid_quantization")}
    found = []
    for sub in PLOT_DIRS:
        folder = Path(root) / sub
        label = f" (DEMO calibration: {demo[sub]} image{'s' * (demo[sub] != 1)})" if demo.get(sub) else ""
        if folder.is_dir():
            found += [(f"{sub}/{p.name}{label}", p) for p in sorted(folder.glob("*.png")) if f"{sub}/{p.name}" not in LESSON_ONLY]
    return found
