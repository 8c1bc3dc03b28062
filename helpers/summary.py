"""The run's key figures, read defensively from its JSON/CSV artifacts, and the index page built on them.

Every reader returns None when its artifact is missing or lacks the value, so a step that has not run
shows as "not run" and nothing is invented.
"""
from __future__ import annotations

import base64
import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .paths import write_text_atomic
from .report import NotebookStatus, esc, notebooks, stamp, status_of

NOT_RUN = "not run"


@dataclass
class Figure:
    """One key figure: its label, the formatted value (None = not available) and where it came from."""

    label: str
    value: str | None
    source: str
    raw: Any = None


@dataclass
class Summary:
    """Everything the index page shows about one run folder."""

    root: Path
    steps: list[NotebookStatus]
    figures: list[Figure]
    layers: list[dict[str, Any]] | None
    plots: list[tuple[str, Path]] = field(default_factory=list)


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


def _row_value(rows: list[dict[str, str]], row_rx: str, col_rx: str) -> float | None:
    """A number from the first row whose first/name column matches row_rx, in the column matching col_rx."""
    for row in rows:
        label = " ".join(str(v) for k, v in row.items() if re.search(r"model|name|variant|strategy|row|^$", k or "", re.I))
        label = label or str(next(iter(row.values()), ""))
        if re.search(row_rx, label, re.I):
            for col, value in row.items():
                if col and re.fullmatch(col_rx, col, re.I) and number(value) is not None:
                    return float(value)
    return None


def _backends(metrics: Any) -> list[dict[str, Any]]:
    """eval/metrics.json's per-backend summaries (a list of {name, top1, ...}), or []."""
    rows = metrics.get("backends") if isinstance(metrics, dict) else None
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def _backend_top1(metrics: Any, name_rx: str, index: int) -> float | None:
    """top1 of the backend whose name matches name_rx (else the one at `index`)."""
    rows = _backends(metrics)
    match = [r for r in rows if re.search(name_rx, str(r.get("name", "")), re.I) and not re.search(r"bgr|bug", str(r.get("name", "")), re.I)]
    row = match[0] if match else (rows[index] if len(rows) > index else None)
    return number(row.get("top1")) if row else None


def best_hybrid(rows: list[dict[str, str]]) -> dict[str, Any] | None:
    """The hybrid row notebook 60 exports as model_hybrid.rknn: best top-1, then higher mean cosine,
    then fewer float16 layers (rows without numbers, e.g. an empty toolkit proposal, never win)."""
    cands = [r for r in rows if re.search(r"hybrid|search", str(r.get("model", "")), re.I) and number(r.get("top1")) is not None]
    if not cands:
        return None
    return min(cands, key=lambda r: (-float(r["top1"]), -(number(r.get("mean_cosine")) or 0.0), number(r.get("float16_layers")) or 0.0))


def key_figures(root: Path) -> list[Figure]:
    """The run's headline numbers, each from its artifact or None."""
    root = Path(root)
    metrics = read_json(root / "eval" / "metrics.json")
    convert = read_json(root / "rknn" / "convert.json")
    compare = _compare_rows(root)
    figs: list[Figure] = []

    def add(label: str, raw: float | None, fmt, source: str) -> None:
        figs.append(Figure(label, fmt(raw) if raw is not None else None, source, raw))

    comparison = metrics.get("comparison") if isinstance(metrics, dict) and isinstance(metrics.get("comparison"), dict) else {}
    fp32 = _backend_top1(metrics, r"fp32|onnx|float", 0)
    int8 = _backend_top1(metrics, re.escape(str(comparison.get("other", ""))) or r"int8|rknn|simulator", 1) if comparison.get("other") \
        else _backend_top1(metrics, r"int8|rknn|simulator", 1)
    add("FP32 top-1 (ONNX Runtime)", fp32, pct, "eval/metrics.json")
    add("INT8 top-1 (RKNN simulator)", int8, pct, "eval/metrics.json")
    base_top1 = _row_value(compare, r"^int8|plain", r"top_?1")
    base_cos = _row_value(compare, r"^int8|plain", r"(mean_)?cos(ine)?(_mean)?")
    chosen = read_json(root / "hybrid" / "chosen.json")  # what notebook 60 exported, when it says so
    best = chosen if isinstance(chosen, dict) and number(chosen.get("top1")) is not None else best_hybrid(compare)
    note = lambda base, fmt: f" ({best['model']}; INT8 baseline of notebook 60: {fmt(base)})" if base is not None else f" ({best['model']})"  # noqa: E731
    add("Hybrid top-1", number(best["top1"]) if best else None, lambda x: f"{pct(x)}{note(base_top1, pct)}", "hybrid/compare.csv")
    cos = number(comparison.get("mean_cosine"))
    add("Final-output cosine INT8 vs FP32 (mean)", cos, lambda x: f"{x:.4f}", "eval/metrics.json")
    add("Final-output cosine hybrid vs FP32 (mean)", number(best.get("mean_cosine")) if best else None,
        lambda x: f"{x:.4f}{note(base_cos, lambda v: f'{v:.4f}')}", "hybrid/compare.csv")
    conv = convert if isinstance(convert, dict) else {}
    onnx = number(conv.get("source_bytes")) if conv.get("load_path", "onnx") == "onnx" else None
    add("ONNX model size", onnx if onnx is not None else file_size(root / "model" / "model.onnx"), size, "model/model.onnx")
    rknn = number(conv.get("rknn_bytes"))
    add("RKNN INT8 model size", rknn if rknn is not None else file_size(root / "rknn" / "model.rknn"), size, "rknn/model.rknn")
    hybrid = sorted((root / "hybrid").glob("*hybrid*.rknn"), key=lambda p: (p.name != "model_hybrid.rknn", p.name)) \
        if (root / "hybrid").is_dir() else []
    add("RKNN hybrid model size", file_size(hybrid[0]) if hybrid else None, size,
        f"hybrid/{hybrid[0].name}" if hybrid else "hybrid/*hybrid*.rknn")
    add("Conversion time (load + build + export)", number(conv.get("seconds")), lambda x: f"{x:.1f} s", "rknn/convert.json")
    figs.append(board_status(root))
    return figs


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


def plots(root: Path) -> list[tuple[str, Path]]:
    """Every PNG the notebooks saved in their artifact folders, in series order."""
    found = []
    for sub in PLOT_DIRS:
        folder = Path(root) / sub
        if folder.is_dir():
            found += [(f"{sub}/{p.name}", p) for p in sorted(folder.glob("*.png"))]
    return found


def summarize(root: Path) -> Summary:
    root = Path(root)
    return Summary(root, [status_of(root, nb) for nb in notebooks()], key_figures(root), sensitive_layers(root), plots(root))


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
"""


def _cell(value: str | None) -> str:
    if value is None:
        return f'<td class="notrun">{NOT_RUN}</td>'
    return f'<td class="num">{esc(value)}</td>' if re.match(r"[-+]?[\d.]", value) else f"<td>{esc(value)}</td>"


def _fmt(value: Any) -> str:
    """A CSV cell for display: numbers to 4 significant decimals, text as is, blank as ''."""
    x = number(value)
    if x is None:
        return str(value or "")
    return f"{x:.4f}" if abs(x) < 10 and x != int(x) else f"{x:g}"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{esc(path.name)}" src="data:image/png;base64,{data}">'


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
           f"<p class=sub>{' · '.join(meta)}</p>",
           '<h2>Key figures</h2><table id="figures"><tr><th>figure</th><th>value</th><th>from</th></tr>']
    for f in s.figures:
        out.append(f"<tr><td>{esc(f.label)}</td>{_cell(f.value)}<td class=src>{esc(f.source)}</td></tr>")
    out.append("</table><h2>Five most quantization-sensitive layers</h2>")
    if s.layers:
        out.append('<p class=sub>Lowest single-layer cosine (INT8 vs FP32 with FP32 inputs) from analysis/layers.csv.</p>')
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
        cols = [c for c in rows[0] if c and c.lower() not in {"layers"}]
        out.append('<p class=sub>From hybrid/compare.csv (notebook 60 measures its strategies against its own INT8 baseline).</p>')
        out.append('<table id="hybrid"><tr>' + "".join(f"<th>{esc(c)}</th>" for c in cols) + "</tr>")
        for r in rows:
            out.append("<tr>" + "".join(_cell(_fmt(r.get(c))) for c in cols) + "</tr>")
        out.append("</table>")
    else:
        out.append(f'<p class="notrun" id="hybrid">{NOT_RUN}: notebooks/60_hybrid_quantization writes hybrid/compare.csv.</p>')
    out.append('<h2>Notebooks</h2><table id="steps"><tr><th>notebook</th><th>status</th><th>time</th><th>report</th></tr>')
    for st in s.steps:
        links = ""
        if (s.root / "report" / f"{st.name}.html").exists():
            links = (f'<a href="{esc(st.name)}.report.html">report</a> · '
                     f'<a href="{esc(st.name)}.html">with code</a>')
        secs = f"{st.seconds:.0f} s" if st.seconds is not None else ""
        klass = {"ok": "ok", "failed": "failed"}.get(st.status, "notrun")
        err = f"<br><span class=src>{esc(st.error[:300])}</span>" if st.error else ""
        out.append(f"<tr><td>{esc(st.name)}</td><td class={klass}>{esc(st.status)}{err}</td><td class=num>{secs}</td>"
                   f"<td>{links}</td></tr>")
    out.append("</table><h2>Plots</h2>")
    if s.plots:
        for caption, path in s.plots:
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
