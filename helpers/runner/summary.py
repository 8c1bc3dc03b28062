"""The run's key figures, read defensively from its JSON/CSV artifacts; the HTML reports of the executed
notebooks; and the index page built on both.

Every reader returns None when its artifact is missing or lacks the value, so a step that has not run
shows as "not run" and nothing is invented. Backends are picked by the "role" field of
eval/metrics.json (fp32, int8, hybrid, board, diagnostic), never by their display names.
"""
from __future__ import annotations

import base64
import csv
import html
import json
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from helpers.core.errors import strip_ansi
from helpers.core.paths import Run, write_text_atomic
from helpers.runner.execute import notebook_name, notebooks
from helpers.steps.hybrid import choose_export, export_candidates
from helpers.tasks.scoring import METRIC_LABELS

if TYPE_CHECKING:
    from nbconvert import HTMLExporter
    from nbformat import NotebookNode

NOT_RUN = "not run"


@dataclass
class Figure:
    """One key figure: its label, the formatted value (None = not available) and where it came from."""

    label: str
    value: str | None
    source: str
    raw: float | None = None


@dataclass
class Summary:
    """Everything the index page shows about one run folder."""

    root: Path
    steps: list["NotebookStatus"]
    figures: list[Figure]
    layers: list[dict[str, Any]] | None
    plots: list[tuple[str, Path]] = field(default_factory=list)
    verdict: str = ""


# ----------------------------------------------------------------------------- tolerant readers


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_csv(path: Path) -> list[dict[str, str]] | None:
    try:
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError):
        return None


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{'a.b.c': value} for nested dicts (lists are kept as values)."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict):
                out.update(flatten(v, key))
            else:
                out[key] = v
    return out


def number(value: Any) -> float | None:
    """A finite float from a JSON/CSV value, else None."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if x == x and abs(x) != float("inf") else None


def pick(obj: Any, *patterns: str) -> tuple[str, float] | None:
    """The first numeric leaf whose dotted key matches one of the regex patterns (tried in order)."""
    flat = flatten(obj) if isinstance(obj, dict) else {}
    for pattern in patterns:
        rx = re.compile(pattern, re.I)
        for key, value in flat.items():
            if rx.fullmatch(key) and number(value) is not None:
                return key, float(value)
    return None


def pct(x: float | None) -> str | None:
    """Top-1 as a percentage; accepts fractions (0.97) or percentages (97.0)."""
    if x is None:
        return None
    return f"{x * 100:.1f} %" if x <= 1.0 else f"{x:.1f} %"


def size(nbytes: float | None) -> str | None:
    if nbytes is None:
        return None
    return f"{nbytes / 1e6:.2f} MB" if nbytes >= 1e5 else f"{nbytes / 1e3:.1f} kB"


def file_size(path: Path) -> float | None:
    return float(path.stat().st_size) if path.is_file() else None


# ----------------------------------------------------------------------------- the figures


def _compare_rows(root: Path) -> list[dict[str, str]]:
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


def _top1(row: dict[str, Any] | None) -> float | None:
    return number(row.get("top1")) if row else None


def demo_images(root: Path, notebook: str) -> int:
    """demo_calib_images a notebook ran with (params.json), 0 when it ran without demo mode or not at all."""
    params = read_json(Path(root) / "params.json")
    value = params.get(notebook, {}).get("demo_calib_images") if isinstance(params, dict) and isinstance(params.get(notebook), dict) else 0
    return int(number(value) or 0)


def hybrid_choice(compare: list[dict[str, str]], search: list[dict[str, str]]) -> dict[str, Any] | None:
    """Notebook 60's own rule (hybrid.choose_export over hybrid.export_candidates), which reads the tables' metric column."""
    return choose_export(export_candidates(compare, search))


def exported_hybrid(root: Path, metric: Metric | None = None) -> dict[str, Any] | None:
    """What notebook 60 exported (hybrid/chosen.json), else the same rule applied to its tables."""
    key = (metric or run_metric(root)).key
    chosen = read_json(Path(root) / "hybrid" / "chosen.json")
    if isinstance(chosen, dict) and number(chosen.get(key)) is not None:
        return chosen
    return hybrid_choice(_compare_rows(root), read_csv(Path(root) / "hybrid" / "search.csv") or [])


def _int8_row(rows: list[dict[str, str]]) -> dict[str, str] | None:
    return next((r for r in rows if str(r.get("model", "")) == "INT8"), None)


def is_detect(metrics: Any) -> bool:
    """Whether eval/metrics.json was written for a detector (notebook 30, task: detect)."""
    return isinstance(metrics, dict) and metrics.get("task") == "detect"


@dataclass(frozen=True)
class Metric:
    """What a run is scored by: its column / JSON key in every artifact, and its label."""

    key: str
    label: str

    def text(self, x: float) -> str:
        """A value as the page shows it: top-1 as a percentage, mAP to 3 decimals."""
        return pct(x) if self.key == "top1" else f"{x:.3f}"


TOP1, MAP = (Metric(key, METRIC_LABELS[key]) for key in ("top1", "map50_95"))  # keys and labels: helpers.tasks.scoring
METRICS = (TOP1, MAP)  # a table's metric column is the first of these keys it has


def table_metric(columns: Any) -> Metric | None:
    """The metric of a table row or JSON record (helpers.tasks.scoring.metric_in), as the page names it."""
    from helpers.tasks.scoring import metric_in

    key = metric_in(columns)
    return next((m for m in METRICS if m.key == key), None)


def run_metric(root: Path) -> Metric:
    """mAP50-95 for a detection run, else top-1: from eval/metrics.json, else the task notebook 10 recorded,
    else the metric column of notebook 50's / 60's tables."""
    root = Path(root)
    metrics = read_json(root / "eval" / "metrics.json")
    if isinstance(metrics, dict) and "backends" in metrics:
        return MAP if is_detect(metrics) else TOP1
    export = read_json(root / "model" / "export_check.json")
    if isinstance(export, dict) and export.get("task"):
        return MAP if export["task"] == "detect" else TOP1
    for rows in (_compare_rows(root), read_csv(root / "analysis" / "sweep.csv"), read_csv(root / "hybrid" / "search.csv")):
        found = table_metric(rows[0]) if rows else None
        if found:
            return found
    return TOP1


def _map(row: dict[str, Any] | None) -> float | None:
    return number(row.get("map50_95")) if row else None


def detect_figures(metrics: dict[str, Any]) -> list[Figure]:
    """A detector's headline numbers: mAP50-95 (and mAP50) of FP32, INT8 with the converted head and INT8
    with the other head (the output-head pitfall), from eval/metrics.json."""
    figs = []
    head = metrics.get("head", "split")
    rows = [(backend(metrics, "fp32"), "FP32 mAP50-95 / mAP50 (ONNX Runtime)"),
            (backend(metrics, "int8"), f"INT8 mAP50-95 / mAP50 (RKNN simulator, {head} head)")]
    other = next((r for r in metrics.get("backends", []) if r.get("role") == "diagnostic" and r.get("precision") == "INT8"), None)
    if other:
        rows.append((other, f"INT8 mAP50-95 / mAP50, {other.get('head')} head (same images)"))
    for row, label in rows:
        raw = _map(row)
        text = f"{raw:.3f} / {number(row.get('map50')) or 0:.3f}" if raw is not None else None
        cos = number(row.get("cosine_mean")) if text and row is other else None
        if cos is not None:  # the pitfall: the whole-tensor cosine does not warn
            text += f" (whole-tensor cosine {cos:.4f})"
        figs.append(Figure(label, text, "eval/metrics.json", raw))
    return figs


def sweep_best(root: Path, metric: Metric) -> tuple[dict[str, Any], int] | None:
    """Notebook 50's best setting in analysis/sweep.csv by its own rule (analysis.best_row) and how many settings
    built; None when the table is missing, scores another metric or has no built row."""
    path = Path(root) / "analysis" / "sweep.csv"
    rows = read_csv(path)
    if not rows or table_metric(rows[0]) is not metric or not any(number(r.get(metric.key)) is not None for r in rows):
        return None
    import pandas as pd

    from helpers.steps.analysis import best_row

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
    value = float(row[metric.key])
    delta = number(row.get(f"{metric.key}_delta_pt"))
    fp32 = number(row.get(f"fp32_{metric.key}"))
    delta = delta if delta is not None else (100 * (value - fp32) if fp32 is not None else None)
    calib = str(row.get("calibration") or "")
    notes = ([f"{delta:+.1f} pt vs FP32"] if delta is not None else []) + \
        ([f"DEMO calibration ({calib.removeprefix('demo: ')})"] if calib.startswith("demo") else []) + [f"best of {built} settings built"]
    text = f"{row.get('algorithm')} / {row.get('method')}: {metric.text(value)} {metric.label} ({'; '.join(notes)})"
    return Figure(label, text, "analysis/sweep.csv", value)


def key_figures(root: Path) -> list[Figure]:
    """The run's headline numbers, each from its artifact or None."""
    root = Path(root)
    metrics = read_json(root / "eval" / "metrics.json")
    convert = read_json(root / "rknn" / "convert.json")
    compare = _compare_rows(root)
    figs: list[Figure] = []

    def add(label: str, raw: float | None, fmt: Callable[[float], str | None], source: str) -> None:
        figs.append(Figure(label, fmt(raw) if raw is not None else None, source, raw))

    comparison = metrics.get("comparison") if isinstance(metrics, dict) and isinstance(metrics.get("comparison"), dict) else {}
    metric = run_metric(root)
    if metric is MAP:
        figs += detect_figures(metrics if isinstance(metrics, dict) else {})
    else:
        add("FP32 top-1 (ONNX Runtime)", _top1(backend(metrics, "fp32")), pct, "eval/metrics.json")
        add("INT8 top-1 (RKNN simulator)", _top1(backend(metrics, "int8")), pct, "eval/metrics.json")
    base = _int8_row(compare)
    best = exported_hybrid(root, metric)
    calib = str(best.get("calibration") or (base or {}).get("calibration") or "") if best else ""
    demo = bool(best and (best.get("demo") is True or calib.startswith("demo")))

    def note(value: Any, fmt: Callable[[float], str | None], delta_of: float | None = None) -> str:
        label = f"DEMO calibration ({calib.removeprefix('demo: ')}); " if demo else ""
        base_txt = f"; INT8 baseline of notebook 60: {fmt(float(value))}" if number(value) is not None else ""
        if base_txt and delta_of is not None:  # the hybrid against the INT8 built with the same calibration
            base_txt += f", hybrid {100 * (delta_of - float(value)):+.1f} pt"
        return f" ({label}{best['model']}{base_txt})" if best else ""

    if metric is MAP:
        add("Hybrid mAP50-95", number(best.get(MAP.key)) if best else None,
            lambda x: f"{x:.3f}{note((base or {}).get(MAP.key), MAP.text, x)}", "hybrid/compare.csv")
        figs.append(sweep_figure(root, MAP))
        head = metrics.get("head", "split") if isinstance(metrics, dict) else "split"
        add(f"Final-output cosine INT8 vs FP32 (mean, {head} head)", number((backend(metrics, "int8") or {}).get("cosine_mean")),
            lambda x: f"{x:.4f}", "eval/metrics.json")
    else:
        add("Hybrid top-1", number(best["top1"]) if best else None, lambda x: f"{pct(x)}{note((base or {}).get('top1'), pct)}",
            "hybrid/compare.csv")
        add("Final-output cosine INT8 vs FP32 (mean)", number(comparison.get("mean_cosine")), lambda x: f"{x:.4f}", "eval/metrics.json")
    add("Final-output cosine hybrid vs FP32 (mean)", number(best.get("mean_cosine")) if best else None,
        lambda x: f"{x:.4f}{note((base or {}).get('mean_cosine'), lambda v: f'{v:.4f}')}", "hybrid/compare.csv")
    conv = convert if isinstance(convert, dict) else {}
    onnx = number(conv.get("source_bytes")) if conv.get("load_path", "onnx") == "onnx" else None
    add("ONNX model size", onnx if onnx is not None else file_size(root / "model" / "model.onnx"), size, "model/model.onnx")
    rknn = number(conv.get("rknn_bytes"))
    add("RKNN INT8 model size", rknn if rknn is not None else file_size(root / "rknn" / "model.rknn"), size, "rknn/model.rknn")
    hybrid_file = root / str(best["file"]) if best and best.get("file") else None
    add("RKNN hybrid model size", file_size(hybrid_file) if hybrid_file else None, lambda x: f"{size(x)}{' (demo)' if demo else ''}",
        f"hybrid/{hybrid_file.name}" if hybrid_file else "hybrid/model_hybrid.rknn")
    add("Conversion time (load + build + export)", number(conv.get("seconds")), lambda x: f"{x:.1f} s", "rknn/convert.json")
    figs.append(board_status(root))
    return figs


def detect_verdict(root: Path, metrics: dict[str, Any]) -> str:
    """One line for a detector: INT8's mAP50-95 loss and size against FP32 with the converted head, the other
    head's INT8, the hybrid (labelled when demo) and whether a board has validated the model."""
    fp32, int8 = _map(backend(metrics, "fp32")), _map(backend(metrics, "int8"))
    if fp32 is None or int8 is None:
        return "No verdict yet: notebook 30 has not measured INT8 against FP32 in this run folder."
    parts = [f"INT8 ({metrics.get('head', 'split')} head): {100 * (fp32 - int8):+.1f} pt mAP50-95 loss vs FP32 ({int8:.3f} vs {fp32:.3f})"
             f"{model_sizes(root)}"]
    other = next((r for r in metrics.get("backends", []) if r.get("role") == "diagnostic" and r.get("precision") == "INT8"), None)
    if other and _map(other) is not None:
        parts.append(f"with the {other.get('head')} head INT8 reaches {_map(other):.3f}")
    return "; ".join(parts + hybrid_and_board(root, MAP)) + "."


def model_sizes(root: Path) -> str:
    """', <rknn size> vs <onnx size>' as the key figures read them ('' when either is missing)."""
    figs = {f.label: f for f in key_figures(root)}
    onnx, rknn = figs["ONNX model size"].value, figs["RKNN INT8 model size"].value
    return f", {rknn} vs {onnx}" if onnx and rknn else ""


def hybrid_and_board(root: Path, metric: Metric) -> list[str]:
    """The verdict's last clauses: the exported hybrid against the INT8 with the same calibration (labelled when
    demo), then whether a board has validated the model, in the run's metric."""
    parts = []
    best = exported_hybrid(root, metric)
    if best and number(best.get(metric.key)) is not None:
        value = float(best[metric.key])
        base = number((_int8_row(_compare_rows(root)) or {}).get(metric.key))
        calib = str(best.get("calibration", ""))
        demo = best.get("demo") is True or calib.startswith("demo")
        delta = 100 * (value - base) if base is not None else None
        vs = ("" if delta is None else f", {delta:+.1f} pt vs the INT8 with the same calibration" if round(delta, 1)
              else f", the same {metric.label} as the INT8 with the same calibration")
        shown = metric.text(value) + ("" if metric is TOP1 else f" {metric.label}")
        if demo:
            parts.append(f"demo hybrid ({calib.removeprefix('demo: ')} calibration, not for deployment): {shown}{vs}")
        else:
            parts.append(f"hybrid: {shown}{vs}")
    on_board = read_json(root / "board" / "metrics.json")  # notebook 40 with a board: {"board": {<metric>: ...}, ...}
    board = number((on_board.get("board") or {}).get(metric.key)) if isinstance(on_board, dict) else None
    perf = read_json(root / "board" / "perf.json")
    if board is not None:
        parts.append(f"validated on a board: {metric.text(board)} {metric.label}")
    elif isinstance(perf, dict) and perf:
        parts.append("run on a board (speed measured), accuracy on the board not yet checked")
    else:
        parts.append("not yet validated on a board")
    return parts


def verdict(root: Path) -> str:
    """One line for a lead: INT8's top-1 loss and size against FP32, the hybrid (labelled when demo), and
    whether a board has validated the model (mAP50-95 for a detector)."""
    root = Path(root)
    metrics = read_json(root / "eval" / "metrics.json")
    if is_detect(metrics):
        return detect_verdict(root, metrics)
    fp32, int8 = _top1(backend(metrics, "fp32")), _top1(backend(metrics, "int8"))
    if fp32 is None or int8 is None:
        return "No verdict yet: notebook 30 has not measured INT8 against FP32 in this run folder."
    parts = [f"INT8: {100 * (fp32 - int8):.1f} pt top-1 loss vs FP32{model_sizes(root)}"]
    return "; ".join(parts + hybrid_and_board(root, TOP1)) + "."


def board_status(root: Path) -> Figure:
    """The status line of board/devices.json ('no board found ...'), plus FPS when a board ran; or not run."""
    devices = read_json(root / "board" / "devices.json")
    if not isinstance(devices, dict):
        return Figure("Board", None, "board/devices.json")
    found = [str(d.get("id", d) if isinstance(d, dict) else d) for key in ("found", "adb", "ntb") for d in (devices.get(key) or [])
             if isinstance(devices.get(key), list)]
    found = list(dict.fromkeys(found))
    text = str(devices.get("status") or "").strip() or (f"{len(found)} device(s): {', '.join(found[:3])}" if found else "no board found")
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


def summarize(root: Path) -> Summary:
    root = Path(root)
    return Summary(root, [status_of(root, nb) for nb in notebooks()], key_figures(root), sensitive_layers(root), plots(root),
                   verdict(root))


# ----------------------------------------------------------------------------- notebook status

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_CACHE_LINE = re.compile(r"\[cache\] ([\w.-]+):")


@dataclass
class NotebookStatus:
    """What happened to one notebook of the series in a run folder."""

    name: str
    status: str  # "ok" | "failed" | "not run"
    seconds: float | None = None
    error: str = ""
    full_html: str = ""
    report_html: str = ""
    how: str = ""  # "ran" | "reused" (the runner reused the executed notebook) | "failed" | "" (unknown)
    reused: list[str] = field(default_factory=list)  # cached steps inside the notebook that were reused
    skipped: str = ""  # parts that could not run here (e.g. the board cells without a board)

    @property
    def label(self) -> str:
        """'ok', 'ok (reused)', 'ok, board parts skipped (no board found)', 'failed', 'not run'."""
        text = self.status + (" (executed notebook reused)" if self.status == "ok" and self.how == "reused" else "")
        return text + (f", {self.skipped}" if self.skipped and self.status == "ok" else "")

    @property
    def time_text(self) -> str:
        """The time, saying whether it was spent computing or mostly reusing cached results."""
        if self.seconds is None:
            return ""
        if self.how == "reused":
            return f"{self.seconds:.0f} s (reused, nothing recomputed)"
        if self.reused:
            return f"{self.seconds:.0f} s (ran; reused from cache: {', '.join(self.reused)})"
        return f"{self.seconds:.0f} s (computed)"


def runner_status(run_root: Path) -> dict[str, Any]:
    """<run>/executed/status.json as the runner writes it ({stem: {how, seconds, finished}}), or {}."""
    data = read_json(Path(run_root) / "executed" / "status.json")
    return data if isinstance(data, dict) else {}


def skipped_parts(run_root: Path, name: str) -> str:
    """Parts of a notebook that could not run on this machine, from its artifacts ('' when none)."""
    if name.startswith("40_"):
        devices = read_json(Path(run_root) / "board" / "devices.json")
        found = [d for key in ("found", "adb", "ntb") for d in (devices.get(key) or [])] if isinstance(devices, dict) else []
        if isinstance(devices, dict) and not found:
            return "board parts skipped (no board found)"
    return ""


def status_of(run_root: Path, notebook: Path) -> NotebookStatus:
    """Read <run>/executed/<nb>.ipynb's papermill metadata and the runner's status.json (never raises;
    missing = not run)."""
    import nbformat

    name = notebook_name(notebook)
    path = Path(run_root) / "executed" / f"{name}.ipynb"
    runner = runner_status(run_root).get(name)
    runner = runner if isinstance(runner, dict) else {}
    how, seconds = str(runner.get("how", "")), number(runner.get("seconds"))
    stopped = how in ("failed", "interrupted")  # the runner's word when the notebook itself cannot say it
    if not path.exists() and not stopped:
        return NotebookStatus(name, "not run")
    if not path.exists():
        return NotebookStatus(name, "failed", seconds, str(runner.get("error") or how), how=how)
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # a half-written or corrupt file is reported, not raised
        return NotebookStatus(name, "failed", error=f"unreadable executed notebook ({type(exc).__name__})")
    meta = nb.metadata.get("papermill", {})
    error, reused = "", []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                error = f"{out.get('ename')}: {strip_ansi(str(out.get('evalue', '')))}"
            elif out.get("output_type") == "stream":
                reused += [m for m in _CACHE_LINE.findall(str(out.get("text", ""))) if m not in reused]
    if meta.get("exception") or error:
        return NotebookStatus(name, "failed", meta.get("duration"), error or "stopped with an exception", how="failed")
    if stopped:
        return NotebookStatus(name, "failed", seconds, str(runner.get("error") or how), how=how)
    if not meta.get("end_time"):
        return NotebookStatus(name, "not run", error="started but did not finish")
    return NotebookStatus(name, "ok", seconds if seconds is not None else meta.get("duration"), how=how or "ran", reused=reused,
                          skipped=skipped_parts(run_root, name))


# ----------------------------------------------------------------------------- HTML reports of the notebooks


def _static_widgets(nb: "NotebookNode") -> None:
    """Live widgets are blank in static HTML: the parameter form becomes a short note (the parameter table
    printed right after carries the values), other inputs (e.g. the layer picker) a note to open the notebook,
    and progress bars, frozen at their first frame, are dropped."""
    form_note = {"text/html": "<p><em>Interactive parameter form (open the notebook in JupyterLab to edit). The values "
                              "used are in the table below.</em></p>",
                 "text/plain": "[interactive parameter form; values in the table below]"}
    other_note = {"text/html": "<p><em>Interactive widget (open the notebook in JupyterLab to use it); what it selected is "
                               "printed below.</em></p>", "text/plain": "[interactive widget]"}
    for cell in nb.cells:
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_MIME in data:
                text = str(data.get("text/plain", ""))
                if "%|" in text or text.startswith(("HBox(children=(HTML(value=", "FloatProgress", "IntProgress")):
                    continue  # a progress bar
                out["data"] = form_note if "Parameters of" in text else other_note
            kept.append(out)
        if "outputs" in cell:
            cell["outputs"] = kept
    nb.metadata.pop("widgets", None)


@lru_cache(maxsize=2)
def _exporter(report_only: bool) -> "HTMLExporter":
    """One HTMLExporter per flavour (building one compiles its templates, the slow part)."""
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", exclude_input=report_only, exclude_input_prompt=report_only,
                        exclude_output_prompt=report_only)


def render_notebook(executed: Path, report_dir: Path) -> tuple[Path, Path]:
    """Render one executed notebook twice: <name>.html (code and outputs) and <name>.report.html (no code)."""
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    _static_widgets(nb)
    # papermill's "injected-parameters" cell is code: it shows in the full flavour, as it should.
    name = Path(executed).stem
    report_dir.mkdir(parents=True, exist_ok=True)
    outputs = []
    for suffix, report_only in ((".html", False), (".report.html", True)):
        body, _ = _exporter(report_only).from_notebook_node(nb, resources={"metadata": {"name": name}})
        outputs.append(write_text_atomic(report_dir / f"{name}{suffix}", body))
    return outputs[0], outputs[1]


def render(run_dir: str | Path) -> Path:
    """Render every executed notebook of a run into <run>/report/ and write the index page; returns it."""
    run = Run.at(run_dir)
    report_dir = run.sub("report")
    for nb in notebooks():
        executed = run.root / "executed" / nb.name
        if executed.exists():
            try:
                render_notebook(executed, report_dir)
            except Exception as exc:  # a broken executed file must not stop the index page
                print(f"warning: could not render {executed.name}: {type(exc).__name__}: {exc}")
    return write_index(run.root)


def esc(value: Any) -> str:
    return html.escape(str(value))


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


# ----------------------------------------------------------------------------- the page

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;color:#1d2330;padding:0 1rem}
h1{margin-bottom:.2rem} .sub{color:#5a6372;margin-top:0}
table{border-collapse:collapse;margin:.6rem 0 1.6rem;min-width:60%}
th,td{border:1px solid #d5dae3;padding:.35rem .7rem;text-align:left;vertical-align:top;max-width:30rem}
th{background:#eef1f6} td.num{text-align:right;font-variant-numeric:tabular-nums}
.notrun{color:#8a93a3;font-style:italic} .ok{color:#1b7f3b;font-weight:600} .failed{color:#b3261e;font-weight:600}
.src{color:#7a8494;font-size:.85em} figure{display:inline-block;margin:0 1rem 1.5rem 0;vertical-align:top}
figure img{max-width:520px;border:1px solid #d5dae3} figcaption{color:#5a6372;font-size:.9em}
.verdict{font-size:1.15em;background:#eef6ee;border-left:4px solid #1b7f3b;padding:.5rem .8rem}
.demo{background:#fff4d6;border-left:4px solid #c98a00;padding:.4rem .8rem}
"""


def _cell(value: str | None) -> str:
    if value is None:
        return f'<td class="notrun">{NOT_RUN}</td>'
    return f'<td class="num">{esc(value)}</td>' if re.match(r"[-+]?[\d.]", value) else f"<td>{esc(value)}</td>"


def _fmt(value: Any, column: str = "") -> str:
    """A CSV cell for display: points (columns ending _pt) to 2 decimals, other numbers to 4, text as is, blank as ''."""
    x = number(value)
    if x is None:
        return str(value or "")
    if column.endswith("_pt"):
        return f"{x:+.2f}" if x else "0"
    return f"{x:.4f}" if abs(x) < 10 and x != int(x) else f"{x:g}"


def _img(path: Path, style: str = "") -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    attr = f' style="{style}"' if style else ""
    return f'<img alt="{esc(path.name)}"{attr} src="data:image/png;base64,{data}">'


# Plots shown at the page's width: the detector's box grid, whose score labels are unreadable at the default 520 px.
WIDE_PLOTS = ("eval/detections.png",)


def index_html(s: Summary) -> str:
    """The index page: key figures, the five most sensitive layers, the steps with links, the plots."""
    convert = read_json(s.root / "rknn" / "convert.json")
    config = convert.get("config") if isinstance(convert, dict) else None
    target = config.get("target_platform") if isinstance(config, dict) else None  # what the .rknn was built for
    env = read_json(s.root / "env.json") or {}
    tk = next((c.get("detail") for c in env.get("checks", []) if isinstance(c, dict) and c.get("name") == "rknn-toolkit2"), None)
    meta = [f"run folder <code>{esc(s.root)}</code>", f"page written {esc(stamp())}"]
    if target:
        meta.append(f"built for <b>{esc(target)}</b>")
    if tk:
        meta.append(f"rknn-toolkit2 {esc(tk)}")
    out = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>RKNN workbook run: {esc(s.root.name)}</title>",
           f"<style>{CSS}</style></head><body>", f"<h1>RKNN workbook run: {esc(s.root.name)}</h1>",
           f"<p class=sub>{' · '.join(meta)}</p>", f'<p id="verdict" class=verdict><b>Verdict:</b> {esc(s.verdict)}</p>',
           '<h2>Key figures</h2><table id="figures"><tr><th>figure</th><th>value</th><th>from</th></tr>']
    for f in s.figures:
        out.append(f"<tr><td>{esc(f.label)}</td>{_cell(f.value)}<td class=src>{esc(f.source)}</td></tr>")
    out.append("</table><h2>Five most quantization-sensitive layers</h2>")
    if s.layers:
        out.append('<p class=sub>Lowest single-layer cosine (INT8 vs FP32 with FP32 inputs) from analysis/layers.csv.</p>')
        demo50 = demo_images(s.root, "50_accuracy_analysis")
        if demo50:
            out.append(f'<p class=demo id="layers-demo">DEMO: notebook 50 analysed a model calibrated on {demo50} image'
                       f"{'s' * (demo50 != 1)} (demo_calib_images = {demo50}), not notebook 20's model; run it with "
                       "demo_calib_images = 0 to rank the layers of the model you deploy.</p>")
        out.append('<table id="layers"><tr><th>#</th><th>layer</th><th>op</th><th>single cosine</th><th>entire cosine</th></tr>')
        for i, r in enumerate(s.layers, 1):
            fmt = lambda x: f"{x:.5f}" if x is not None else None  # noqa: E731
            out.append(f"<tr><td>{i}</td><td>{esc(r['layer'])}</td><td>{esc(r['op'])}</td>{_cell(fmt(r['single cosine']))}"
                       f"{_cell(fmt(r['entire cosine']))}</tr>")
        out.append("</table>")
    else:
        out.append(f'<p class="notrun" id="layers">{NOT_RUN}: notebooks/50_accuracy_analysis writes analysis/layers.csv.</p>')
    out.append("<h2>Hybrid quantization</h2>")
    rows = _compare_rows(s.root)
    if rows:
        calibs = {str(r.get("calibration") or "") for r in rows if r.get("model") != "FP32"}
        shared = calibs.pop() if len(calibs) == 1 else ""  # one calibration for every quantized row: said once, not per row
        skip = {"layers", "file", "note", "min_cosine"} | ({"calibration"} if shared else set())
        cols = [c for c in rows[0] if c and c.lower() not in skip] + (["note"] if "note" in rows[0] else [])
        out.append('<p class=sub>From hybrid/compare.csv (notebook 60 measures its strategies against its own INT8 baseline, built with '
                   f'the same calibration{": " + esc(shared) if shared else ""}).</p>')
        demo = demo_images(s.root, "60_hybrid_quantization")
        if demo:
            out.append(f'<p class=demo id="hybrid-demo">DEMO: notebook 60 ran with demo_calib_images = {demo}, so these models were '
                       "calibrated on a deliberately poor set. Compare them with the INT8 row of this table, not with notebook 30's "
                       "INT8; none of them goes into the deployment bundle.</p>")
        out.append('<div style="overflow-x:auto"><table id="hybrid"><tr>' + "".join(f"<th>{esc(c)}</th>" for c in cols) + "</tr>")
        for r in rows:
            out.append("<tr>" + "".join(_cell(_fmt(r.get(c), c)) for c in cols) + "</tr>")
        out.append("</table></div>")
    else:
        out.append(f'<p class="notrun" id="hybrid">{NOT_RUN}: notebooks/60_hybrid_quantization writes hybrid/compare.csv.</p>')
    out.append('<h2>Notebooks</h2><table id="steps"><tr><th>notebook</th><th>status</th><th>time</th><th>report</th></tr>')
    for st in s.steps:
        links = ""
        if (s.root / "report" / f"{st.name}.html").exists():
            links = (f'<a href="{esc(st.name)}.report.html">report</a> · '
                     f'<a href="{esc(st.name)}.html">with code</a>')
        klass = {"ok": "ok", "failed": "failed"}.get(st.status, "notrun")
        err = f"<br><span class=src>{esc(st.error[:300])}</span>" if st.error else ""
        out.append(f"<tr><td>{esc(st.name)}</td><td class={klass}>{esc(st.label)}{err}</td><td>{esc(st.time_text)}</td>"
                   f"<td>{links}</td></tr>")
    out.append("</table><h2>Plots</h2>")
    if s.plots:
        for caption, path in s.plots:
            if path.relative_to(s.root).as_posix() in WIDE_PLOTS:
                out.append(f'<figure style="display:block">{_img(path, "max-width:100%")}<figcaption>{esc(caption)}</figcaption></figure>')
            else:
                out.append(f"<figure>{_img(path)}<figcaption>{esc(caption)}</figcaption></figure>")
    else:
        out.append(f"<p class=notrun>{NOT_RUN}: no plots in this run folder yet.</p>")
    out.append("</body></html>")
    return "\n".join(out)


def write_index(root: Path) -> Path:
    """Write <run>/report/index.html atomically; returns its path."""
    report = Path(root) / "report"
    report.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(report / "index.html", index_html(summarize(Path(root))))


def injected_parameters(root: Path) -> dict[str, Any]:
    """{'20_convert.target_platform': 'rk3566', ...}: what papermill injected into each executed notebook."""
    out: dict[str, Any] = {}
    for nb in notebooks():
        data = read_json(Path(root) / "executed" / nb.name)
        injected = data.get("metadata", {}).get("papermill", {}).get("parameters", {}) if isinstance(data, dict) else {}
        out.update({f"{nb.stem}.{k}": v for k, v in (injected or {}).items()})
    return out


def comparison(roots: dict[str, Path]) -> list[dict[str, Any]]:
    """One row per run folder (e.g. sweep variants): the parameters that differ between them, the
    status of the series and the key figures (figures no run has are left out)."""
    params = {v: injected_parameters(Path(r)) for v, r in roots.items()}
    keys = sorted({k for p in params.values() for k in p if not k.endswith(".run_dir")})
    differing = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True, default=str) for p in params.values()}) > 1]
    rows = []
    for variant, root in roots.items():
        steps = [status_of(root, nb) for nb in notebooks()]
        ran = [st for st in steps if st.status != "not run"]
        row: dict[str, Any] = {"variant": variant}
        row.update({k: params[variant].get(k, "") for k in differing})
        row["status"] = ("failed" if any(st.status == "failed" for st in steps)
                         else "ok" if ran and all(st.status == "ok" for st in steps) else "partial")
        row["notebooks run"] = len(ran)
        for f in key_figures(root):
            row[f.label] = f.value if f.value is not None else NOT_RUN
        rows.append(row)
    labels = [f.label for f in key_figures(next(iter(roots.values())))] if roots else []
    empty = [lab for lab in labels if all(r.get(lab) == NOT_RUN for r in rows)]
    return [{k: v for k, v in r.items() if k not in empty} for r in rows]
