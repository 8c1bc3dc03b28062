"""The run's index page (key figures, verdict, sensitive layers, hybrid table, notebooks, plots) and the
comparison page of a variants run, both written atomically from what helpers.runner.figures reads."""
from __future__ import annotations

import base64
import csv
import html
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.core.paths import Run, atomic_path, write_text_atomic
from helpers.runner import variants
from helpers.runner.execute import notebooks
from helpers.runner.figures import (
    NOT_RUN,
    Figure,
    compare_rows,
    demo_images,
    key_figures,
    number,
    plots,
    quant_name,
    read_json,
    run_metric,
    sensitive_layers,
)
from helpers.runner.freshness import Freshness, Tag
from helpers.runner.status import NotebookStatus, status_of
from helpers.runner.verdict import verdict, verdict_tag
from helpers.text import index as text


@dataclass
class Summary:
    """Everything the index page shows about one run folder."""

    root: Path
    steps: list[NotebookStatus]
    figures: list[Figure]
    layers: list[dict[str, Any]] | None
    plots: list[tuple[str, Path]] = field(default_factory=list)
    verdict: str = ""
    fresh: Freshness | None = None  # which model each figure was computed from, and whether it still is the run's


def summarize(root: Path) -> Summary:
    """Read everything the index page shows from the run folder."""
    root = Path(root)
    return Summary(root, [status_of(root, nb) for nb in notebooks()], key_figures(root), sensitive_layers(root), plots(root),
                   verdict(root), Freshness(root))


def tag_html(tag: Tag | None) -> str:
    """A figure's model tag, or the STALE mark with why and the notebooks to re-run."""
    if tag is None:
        return ""
    if tag.stale:
        return f'<span class=stale-mark>STALE</span> <span class=stale-why>{esc(tag.text.removeprefix("STALE: "))}</span>'
    return f"<span class=tag>{esc(tag.text)}</span>"


def tagged(tag: Tag | None, element: str = "p", ident: str = "") -> str:
    """The tag as its own line under a section or the verdict (a stale one styled to be seen)."""
    if tag is None:
        return ""
    attr = f' id="{ident}"' if ident else ""
    return f'<{element} class="{"stale" if tag.stale else "tagline"}"{attr}>{tag_html(tag)}</{element}>'


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
figure img{max-width:520px;border:1px solid #d5dae3} figcaption{color:#5a6372;font-size:.9em;max-width:520px}
.verdict{font-size:1.15em;background:#eef6ee;border-left:4px solid #1b7f3b;padding:.5rem .8rem}
.demo{background:#fff4d6;border-left:4px solid #c98a00;padding:.4rem .8rem}
.tag,.tagline{color:#5a6372;font-size:.85em} p.tagline{margin-top:-.2rem}
.stale-mark{background:#b3261e;color:#fff;font-weight:700;padding:0 .35em;border-radius:3px;font-size:.85em}
.stale-why{color:#b3261e} tr.stale td{background:#fdf0ec}
p.stale{background:#fdf0ec;border-left:4px solid #b3261e;padding:.3rem .8rem}
.verdict.stale{background:#f4f4f4;border-left-color:#b3261e;color:#5a6372}
"""


def _cell(value: str | None) -> str:
    """A table cell: a figure (a number, with its unit) right-aligned; a sentence, even one opening with a number, reads
    left-aligned as text."""
    if value is None:
        return f'<td class="notrun">{NOT_RUN}</td>'
    figure = re.match(r"[-+]?[\d.]", value) and len(value) <= 24 and not re.search(r"[(;:]", value)
    return f'<td class="num">{esc(value)}</td>' if figure else f"<td>{esc(value)}</td>"


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


# The hybrid table's columns behind its text columns (vs_int8, vs_fp32): the numbers and JSON they are made of.
HIDDEN_COLUMN = re.compile(r"^vs_\w+?_(pt|low_pt|high_pt|verdict|paired)$")

# Plots shown at the page's width: the detector family's picture grid (boxes, masks or skeletons), whose score labels are
# unreadable at the default 520 px.
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
           f"<p class=sub>{' · '.join(meta)}</p>"]
    fresh = s.fresh or Freshness(s.root)
    quant = quant_name(s.root)  # 'INT8' for w8a8, 'w4a16' for w4a16: the words change, the figures' keys do not
    vtag = verdict_tag(s.root, fresh) if s.verdict != text.NO_VERDICT else None
    out += [f'<p id="verdict" class="verdict{" stale" if vtag and vtag.stale else ""}"><b>Verdict:</b> {esc(s.verdict)}</p>',
            tagged(vtag, ident="verdict-model"),
            '<h2>Key figures</h2><table id="figures"><tr><th>figure</th><th>value</th><th>from (model)</th></tr>']
    for f in s.figures:
        tag = fresh.of(f.source) if f.value is not None else None
        out.append(f"<tr{' class=stale' if tag and tag.stale else ''}><td>{esc(f.label.replace('INT8', quant))}</td>"
                   f"{_cell(f.value)}"
                   f"<td class=src>{esc(f.source)}{'<br>' + tag_html(tag) if tag else ''}</td></tr>")
    out.append("</table><h2>Five most quantization-sensitive layers</h2>")
    if s.layers:
        out.append(f"<p class=sub>Lowest single-layer cosine ({esc(quant)} vs FP32 with FP32 inputs) from "
                   "analysis/layers.csv.</p>")
        out.append(tagged(fresh.of("analysis/layers.csv"), ident="layers-model"))
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
    rows = compare_rows(s.root)
    if rows:
        calibs = {str(r.get("calibration") or "") for r in rows if r.get("model") != "FP32"}
        shared = calibs.pop() if len(calibs) == 1 else ""  # one calibration for every quantized row: said once, not per row
        skip = {"layers", "file", "note", "min_cosine", "float16_list"} | ({"calibration"} if shared else set())
        paired = "vs_fp32" in rows[0]  # then its text says what <metric>_delta_pt says, with the interval
        cols = [c for c in rows[0] if c and c.lower() not in skip and not HIDDEN_COLUMN.search(c)
                and not (paired and c.endswith("_delta_pt"))]
        cols += ["note"] if "note" in rows[0] else []
        heads = {"vs_int8": f"vs {quant} (paired, 95 % CI)", "vs_fp32": "vs FP32 (paired, 95 % CI)"}
        out.append(f'<p class=sub>From hybrid/compare.csv (notebook 60 measures its strategies against its own {esc(quant)} '
                   'baseline, built with '
                   f'the same calibration{": " + esc(shared) if shared else ""}).</p>')
        out.append(tagged(fresh.of("hybrid/compare.csv"), ident="hybrid-model"))
        demo = demo_images(s.root, "60_hybrid_quantization")
        if demo:
            out.append(f'<p class=demo id="hybrid-demo">DEMO: notebook 60 ran with demo_calib_images = {demo}, so '
                       'these models were '
                       f"calibrated on a deliberately poor set. Compare them with the {esc(quant)} row of this table, not with "
                       "notebook 30's "
                       f"{esc(quant)}; none of them goes into the deployment bundle.</p>")
        head = "".join(f"<th>{esc(heads.get(c, c))}</th>" for c in cols)
        out.append(f'<div style="overflow-x:auto"><table id="hybrid"><tr>{head}</tr>')
        for r in rows:
            shown = {**r, "model": quant} if r.get("model") == "INT8" else r
            out.append("<tr>" + "".join(f"<td>{esc(shown.get(c) or '')}</td>" if c in heads else _cell(_fmt(shown.get(c), c))
                                        for c in cols) + "</tr>")  # a paired text column reads as text, left-aligned
        out.append("</table></div>")
    else:
        out.append(f'<p class="notrun" id="hybrid">{NOT_RUN}: notebooks/60_hybrid_quantization writes hybrid/compare.csv.</p>')
    out.append('<h2>Notebooks</h2><table id="steps"><tr><th>notebook</th><th>status</th><th>time</th><th>report</th>'
               "<th>its figures</th></tr>")
    for st in s.steps:
        links = ""
        if (s.root / "report" / f"{st.name}.html").exists():
            links = (f'<a href="{esc(st.name)}.report.html">report</a> · '
                     f'<a href="{esc(st.name)}.html">with code</a>')
        klass = {"ok": "ok", "failed": "failed"}.get(st.status, "notrun")
        err = f"<br><span class=src>{esc(st.error[:300])}</span>" if st.error else ""
        out.append(f"<tr><td>{esc(st.name)}</td><td class={klass}>{esc(st.label)}{err}</td><td>{esc(st.time_text)}</td>"
                   f"<td>{links}</td><td>{tag_html(fresh.of_notebook(st.name))}</td></tr>")
    out.append("</table><h2>Plots</h2>")
    if s.plots:
        for caption, path in s.plots:
            rel = Run(s.root).relative(path)
            said = text.picture_caption(run_metric(s.root)) if rel in WIDE_PLOTS else ""  # what the picture grid shows
            caption = f"<figcaption>{esc(caption + (': ' + said if said else ''))}<br>{tag_html(fresh.of(rel))}</figcaption>"
            if rel in WIDE_PLOTS:
                out.append(f'<figure style="display:block" id="pictures">{_img(path, "max-width:100%")}{caption}</figure>')
            else:
                out.append(f"<figure>{_img(path)}{caption}</figure>")
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
    """One row per run folder (e.g. the variants of a variants file): the parameters that differ between them, the
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


# ----------------------------------------------------------------------------- the variants' comparison page

PARAM_COLUMN = re.compile(r"^\d\d_\w+\.\w+$")


def write_comparison(root: Path, rows: list[dict[str, Any]], dirs: dict[str, Path] | None = None) -> None:
    """<root>/comparison.csv and comparison.html: one row per variant (with why a failed one failed),
    links to each index page, and plots across the swept parameters."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(root / "comparison.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    images = ""
    if dirs:
        params = {r["variant"]: {k: v for k, v in r.items() if PARAM_COLUMN.match(k)} for r in rows}
        figures = {v: {f.label: f.raw for f in key_figures(d)} for v, d in dirs.items()}
        try:
            pngs = variants.plots(root, params, figures)
        except Exception as exc:  # plots are a bonus: never lose the table for them
            print(f"warning: could not draw the comparison plots: {type(exc).__name__}: {exc}", file=sys.stderr)
            pngs = []
        images = "".join(f'<figure><img src="{esc(Run(root).relative(p))}" alt="{esc(p.stem)}"></figure>' for p in pngs)
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = "".join(f'<tr class="{esc(r.get("status", ""))}">' + "".join(
        f'<td><a href="{esc(r["variant"])}/report/index.html">{esc(r[c])}</a></td>' if c == "variant"
        else f"<td>{esc(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>Variants {esc(root.name)}</title><style>"
            "body{font-family:system-ui,sans-serif;margin:2rem} table{border-collapse:collapse} th,td{border:1px solid #ccd;"
            "padding:.3rem .6rem} th{background:#eef1f6} tr.failed td{background:#fdecec} "
            "figure{display:inline-block;margin:1rem}"
            "</style></head><body>"
            f"<h1>Variants {esc(root.name)}</h1><table id=comparison><tr>{head}</tr>{body}</table>"
            + (f"<h2>Across the variants</h2><div id=plots>{images}</div>" if images else "") + "</body></html>")
    write_text_atomic(root / "comparison.html", page)
