"""HTML reports and the index page: rendered from real executed notebooks and real run artifacts;
missing or broken artifacts show as "not run", never as a crash or an invented number."""
from __future__ import annotations

import html
import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from helpers.core.paths import REPO
from helpers.runner import execute, index, render, status
from helpers.runner import figures as run_figures

NAMES = [nb.stem for nb in execute.notebooks()]


def figures(root) -> dict[str, run_figures.Figure]:
    return {f.label: f for f in run_figures.key_figures(root)}


def test_index_of_an_empty_run_says_not_run(tmp_path):
    page = index.write_index(tmp_path).read_text()
    for f in run_figures.key_figures(tmp_path):
        assert f.value is None and f.raw is None, f
    assert page.count('class="notrun">not run</td>') == len(run_figures.key_figures(tmp_path))
    assert "<img" not in page
    rows = re.findall(r"<tr><td>(\d\d_\w+)</td><td class=(\w+)>([^<]+)", page)
    assert [r[0] for r in rows] == NAMES and {r[2] for r in rows} == {"not run"}


def test_index_survives_broken_artifacts(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text('{"backends": [{"name": "FP32", "top1": ')  # truncated
    (tmp_path / "rknn").mkdir()
    (tmp_path / "rknn" / "convert.json").write_text("[1, 2]")  # valid JSON, wrong shape
    (tmp_path / "rknn" / "preflight.json").write_text('{"profile": "yes", "cpu_ops": 3}')  # wrong types
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "layers.csv").write_text("index,op,name,entire_cos,single_cos\n0,Conv,a,,\n1,Relu,b,x,y\n")
    (tmp_path / "board").mkdir()
    (tmp_path / "board" / "devices.json").write_text("null")
    (tmp_path / "executed").mkdir()
    (tmp_path / "executed" / f"{NAMES[0]}.ipynb").write_text("{not a notebook")
    page = index.write_index(tmp_path).read_text()
    assert all(f.value is None for f in run_figures.key_figures(tmp_path))
    assert run_figures.sensitive_layers(tmp_path) == []  # rows exist but hold no numbers: nothing to rank
    assert "unreadable executed notebook" in page
    assert status.status_of(tmp_path, execute.notebooks()[0]).status == "failed"


def test_sensitive_layers_rank_by_single_cosine(tmp_path):
    (tmp_path / "analysis").mkdir()
    rows = [{"index": i, "op": "Conv", "name": f"t{i}", "entire_cos": 1 - i / 100, "single_cos": c}
            for i, c in enumerate([0.999, 0.95, None, 0.99, 0.9, 0.97, 0.998, 0.5])]
    pd.DataFrame(rows).to_csv(tmp_path / "analysis" / "layers.csv", index=False)
    top = run_figures.sensitive_layers(tmp_path)
    assert [r["layer"] for r in top] == ["t7", "t4", "t1", "t5", "t3"]  # fused row (blank) never ranks
    assert top[0]["single cosine"] == 0.5 and top[0]["entire cosine"] == pytest.approx(0.93)


def last_ran(series) -> str:
    """Run the series as far as the notebooks go (the index reads every step's artifacts)."""
    return series.ran(NAMES[-1])


@pytest.mark.slow
def test_index_figures_come_from_the_run(series):
    root = last_ran(series)
    page = render.render(root).read_text()
    figs = figures(root)
    assert (root / "eval" / "metrics.json").exists(), "the series ran through its last notebook, so this artifact must exist"
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    fp32, int8 = metrics["backends"][0], metrics["backends"][1]
    assert figs["FP32 top-1 (ONNX Runtime)"].raw == fp32["top1"]
    assert figs["INT8 top-1 (RKNN simulator)"].raw == int8["top1"]
    assert figs["Final-output cosine INT8 vs FP32 (mean)"].raw == metrics["comparison"]["mean_cosine"]
    assert f"{100 * fp32['top1']:.1f} %" in page and f"{100 * int8['top1']:.1f} %" in page
    assert (root / "rknn" / "convert.json").exists(), "the series ran through its last notebook, so this artifact must exist"
    conv = json.loads((root / "rknn" / "convert.json").read_text())
    assert figs["Conversion time (load + build + export)"].raw == conv["seconds"]
    assert figs["RKNN INT8 model size"].raw == conv["rknn_bytes"] == (root / "rknn" / "model.rknn").stat().st_size
    assert figs["ONNX model size"].raw == (root / "model" / "model.onnx").stat().st_size
    assert (root / "board" / "devices.json").exists(), "the series ran through its last notebook, so this artifact must exist"
    devices = json.loads((root / "board" / "devices.json").read_text())
    assert figs["Board"].value.startswith(devices["status"])
    assert (root / "analysis" / "layers.csv").exists(), "the series ran through its last notebook, so this artifact must exist"
    layers = pd.read_csv(root / "analysis" / "layers.csv").dropna(subset=["single_cos"]).nsmallest(5, "single_cos")
    assert [r["layer"] for r in run_figures.sensitive_layers(root)] == list(layers["name"])
    assert 'id="layers"' in page and str(layers["name"].iloc[0]) in page
    for label, f in figs.items():  # a figure is filled exactly when its artifact exists
        artifact = root / f.source
        if "*" not in f.source:
            assert (f.value is not None) == artifact.exists(), (label, f)
    pngs = [p for sub in run_figures.PLOT_DIRS for p in sorted((root / sub).glob("*.png"))]
    assert page.count("<img ") == len(pngs)
    for name in series.done:
        assert f'href="{name}.report.html"' in page and (root / "report" / f"{name}.report.html").exists()


@pytest.mark.slow
def test_notebook_reports_full_and_report_only(series):
    name = "20_convert" if "20_convert" in NAMES else NAMES[0]
    root = series.ran(name)
    full, only = render.render_notebook(root / "executed" / f"{name}.ipynb", root / "report")
    full_html, only_html = (html.unescape(re.sub(r"<[^>]+>", "", f.read_text())) for f in (full, only))
    assert "widgets.form(" in full_html and "widgets.form(" not in only_html  # code only in the full flavour
    assert "injected-parameters" in full_html or "Parameters" in full_html
    for text in (full_html, only_html):
        assert "parameter" in text and str(root) in text  # the printed parameter table, as text
        assert "Interactive parameter form" in text  # the widget's static stand-in
        assert "widget-view+json" not in text
    if name == "20_convert":  # the conversion's outputs made it into the report-only flavour
        assert "conversion took" in only_html


@pytest.mark.slow
def test_report_command_rerenders_a_run(series):
    root = series.ran(NAMES[0])
    page = root / "report" / "index.html"
    page.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-m", "helpers", "report", "--run-dir", str(root)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert page.exists() and str(page) in proc.stdout


def test_hybrid_figure_is_the_row_notebook_60_exports(tmp_path):
    """Best top-1, then higher cosine, then fewer float16 layers; an empty proposal row never wins (the
    index applies notebook 60's own rule, hybrid.choose_export, when chosen.json is missing)."""
    (tmp_path / "hybrid").mkdir()
    pd.DataFrame([
        {"model": "FP32", "top1": 0.99, "mean_cosine": 1.0, "float16_layers": 0, "file": ""},
        {"model": "INT8", "top1": 0.95, "mean_cosine": 0.98, "float16_layers": 2, "file": "hybrid/model_int8.rknn"},
        {"model": "hybrid (a) your list", "top1": 0.97, "mean_cosine": 0.985, "float16_layers": 4,
         "file": "hybrid/strategy_a.rknn"},
        {"model": "hybrid (b) toolkit proposal", "top1": None, "mean_cosine": None, "float16_layers": 0, "file": ""},
        {"model": "hybrid (c) auto from ranking", "top1": 0.97, "mean_cosine": 0.99, "float16_layers": 9,
         "file": "hybrid/strategy_c.rknn"},
    ]).to_csv(tmp_path / "hybrid" / "compare.csv", index=False)
    figs = figures(tmp_path)
    assert figs["Hybrid top-1"].raw == 0.97
    assert figs["Hybrid top-1"].value == "97.0 % (hybrid (c) auto from ranking; INT8 baseline of notebook 60: 95.0 %)"
    assert figs["Final-output cosine hybrid vs FP32 (mean)"].raw == 0.99
    assert figs["FP32 top-1 (ONNX Runtime)"].value is None  # eval/metrics.json is what that figure reads
    from helpers.tasks.noise import mcnemar

    # notebook 60's chosen.json carries its paired comparison with INT8: the figure quotes it, interval and verdict
    paired = mcnemar([True] * 95 + [False] * 5, [True] * 97 + [False] * 3).to_dict()
    (tmp_path / "hybrid" / "chosen.json").write_text(json.dumps({"model": "hybrid (c) auto from ranking", "top1": 0.97,
                                                                 "mean_cosine": 0.99, "vs_int8": paired}))
    assert figures(tmp_path)["Hybrid top-1"].value.endswith(f"INT8 baseline of notebook 60: 95.0 %, hybrid {paired['text']})")


def test_index_reads_backends_by_role_and_keeps_a_demo_out_of_the_verdict(tmp_path):
    """Backends are found by their role, whatever their display name; a demo hybrid's figures never reach the verdict
    or the key figures (they say a demo ran), only its labelled DEMO section and the plot captions."""
    (tmp_path / "eval").mkdir()
    (tmp_path / "hybrid").mkdir()
    backends = [{"name": "BGR bug first", "top1": 0.1, "role": "diagnostic"}, {"name": "quantized", "top1": 0.9, "role": "int8"},
                {"name": "reference", "top1": 0.95, "role": "fp32"}]
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps({"backends": backends, "comparison": {"mean_cosine": 0.99}}))
    (tmp_path / "hybrid" / "chosen.json").write_text(json.dumps({"model": "hybrid (c) auto from ranking", "top1": 0.93,
                                                                 "mean_cosine": 0.995, "file": "hybrid/model_hybrid_demo.rknn",
                                                                 "calibration": "demo: 1 image", "demo": True}))
    pd.DataFrame([{"model": "INT8", "top1": 0.6, "mean_cosine": 0.9,
                   "calibration": "demo: 1 image"}]).to_csv(tmp_path / "hybrid" / "compare.csv", index=False)
    (tmp_path / "params.json").write_text(json.dumps({"60_hybrid_quantization": {"demo_calib_images": 1}}))
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "hybrid" / "compare.png"), np.zeros((4, 4, 3), np.uint8))
    figs = figures(tmp_path)
    assert figs["FP32 top-1 (ONNX Runtime)"].raw == 0.95 and figs["INT8 top-1 (RKNN simulator)"].raw == 0.9
    for label in ("Hybrid top-1", "Final-output cosine hybrid vs FP32 (mean)", "RKNN hybrid model size"):
        assert figs[label].raw is None and figs[label].value.startswith("DEMO run of notebook 60 (demo_calib_images = 1)")
    line = index.verdict(tmp_path)
    assert line.startswith("INT8: 5.0 pt top-1 loss vs FP32")
    assert "93.0" not in line and "notebook 60 ran as a demo (demo_calib_images = 1)" in line
    assert line.endswith("not yet validated on a board.")
    page = index.index_html(index.summarize(tmp_path))
    assert 'id="hybrid-demo"' in page and "hybrid/compare.png (DEMO calibration: 1 image)" in page


def paired(d: float, low: float, high: float, verdict: str) -> dict:
    """A Paired.to_dict() as notebooks 30 and 60 store it."""
    return {"difference_pt": d, "low_pt": low, "high_pt": high, "verdict": verdict, "method": "exact McNemar", "images": 360,
            "text": f"{d:+.1f} pt (95 % CI {low:+.1f} to {high:+.1f}), {verdict}"}


def test_a_w4a16_run_is_named_by_its_dtype_and_quotes_the_paired_intervals(tmp_path):
    """The verdict quotes metrics.json's paired comparison and chosen.json's vs_int8 / vs_fp32 (their 95 % intervals),
    the quantized model is called what notebook 20 built (w4a16, never INT8), and the hybrid table shows the paired
    text columns, not the numbers and JSON behind them nor the float16 list."""
    for d in ("eval", "hybrid", "rknn"):
        (tmp_path / d).mkdir()
    loss, gain = paired(-11.9, -15.3, -8.6, "worse"), paired(12.2, 8.7, 15.6, "better")
    left = paired(0.3, -0.5, 1.0, "within noise")
    backends = [{"name": "FP32", "top1": 0.986, "role": "fp32"}, {"name": "w4a16", "top1": 0.867, "role": "int8"}]
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps({"backends": backends,
                                                                "comparison": {"mean_cosine": 0.89, "paired": loss}}))
    (tmp_path / "rknn" / "convert.json").write_text(json.dumps({"config": {"quantized_dtype": "w4a16",
                                                                           "target_platform": "rk3576"}}))
    (tmp_path / "hybrid" / "chosen.json").write_text(json.dumps({
        "model": "hybrid search (64 of 110 layers in float16)", "top1": 0.989, "mean_cosine": 0.9998,
        "file": "hybrid/model_hybrid.rknn", "calibration": "notebook 20's list (50 images)", "demo": False,
        "vs_int8": gain, "vs_fp32": left}))
    pd.DataFrame([{"model": "FP32", "top1": 0.986, "vs_int8": "", "vs_int8_pt": None, "vs_int8_paired": "", "float16_list": ""},
                  {"model": "INT8", "top1": 0.867, "vs_int8": "", "vs_fp32": loss["text"], "vs_fp32_low_pt": -15.3,
                   "vs_fp32_verdict": "worse", "float16_list": ""},
                  {"model": "hybrid (c) auto from ranking", "top1": 0.975, "vs_int8": gain["text"], "vs_fp32": left["text"],
                   "vs_fp32_low_pt": -0.5, "vs_fp32_verdict": "within noise", "float16_list": "a b"}]
                 ).to_csv(tmp_path / "hybrid" / "compare.csv", index=False)
    line = index.verdict(tmp_path)
    assert line.startswith(f"w4a16 vs FP32, top-1: {loss['text']} (86.7 % vs 98.6 %)"), line
    assert (f"hybrid search (64 of 110 layers in float16): 98.9 %, vs w4a16 {gain['text']}, "
            f"vs FP32 {left['text']}") in line
    assert "INT8" not in line
    page = index.index_html(index.summarize(tmp_path))
    assert "<td>w4a16 top-1 (RKNN simulator)</td>" in page and "INT8 top-1" not in page
    table = page.split('id="hybrid">')[1].split("</table>")[0]
    heads = re.findall(r"<th>([^<]+)</th>", table)
    assert heads == ["model", "top1", "vs w4a16 (paired, 95 % CI)", "vs FP32 (paired, 95 % CI)"]
    assert "<td>w4a16</td>" in table and html.escape(gain["text"]) in table and "float16" not in table
    assert "is the model to deploy" not in line  # measurably better than w4a16: it ships
    # a hybrid within noise of the plain quantized model: the verdict says the plain model is the one to deploy
    chosen = json.loads((tmp_path / "hybrid" / "chosen.json").read_text())
    (tmp_path / "hybrid" / "chosen.json").write_text(json.dumps({**chosen, "vs_int8": left}))
    line = index.verdict(tmp_path)
    assert f"vs w4a16 {left['text']}" in line
    assert "so plain w4a16 is the model to deploy (the bundle leaves the hybrid out)" in line


def test_notebook_status_says_ran_reused_and_skipped(tmp_path):
    """status.json (the runner's) says ran / reused; cached steps and board parts that could not run are named."""
    import nbformat

    (tmp_path / "executed").mkdir()
    (tmp_path / "board").mkdir()
    for name, text in (("30_simulator_inference", "[cache] 30_evaluate: inputs and parameters unchanged\n"),
                       ("40_board_inference", "")):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output("stream", name="stdout", text=text)])]
        nb.metadata["papermill"] = {"end_time": "2026-01-01", "duration": 12.0}
        nbformat.write(nb, str(tmp_path / "executed" / f"{name}.ipynb"))
    (tmp_path / "executed" / "status.json").write_text(json.dumps({"40_board_inference": {"how": "reused", "seconds": 0.2}}))
    (tmp_path / "board" / "devices.json").write_text(json.dumps({"status": "no board found", "adb": [], "ntb": []}))
    by = {s.name: s for s in (status.status_of(tmp_path, nb) for nb in execute.notebooks())}
    s30, s40 = by["30_simulator_inference"], by["40_board_inference"]
    assert s30.label == "ok" and s30.time_text == "12 s (ran; reused from cache: 30_evaluate)"
    assert s40.label == "ok (executed notebook reused), board parts skipped (no board found)"
    assert s40.time_text == "reused; took 12 s when it last ran"  # its cost (the executed notebook's), not the reuse's 0 s
    assert by["00_environment_check"].label == "not run"


def _report_text(root, name: str) -> str:
    _, only = render.render_notebook(root / "executed" / f"{name}.ipynb", root / "report")
    return html.unescape(re.sub(r"<[^>]+>", "", only.read_text()))


@pytest.mark.slow
def test_reports_show_the_raw_toolkit_calls_with_this_runs_values(series):
    """Issue 13: each report (the no-code flavour) shows the plain toolkit calls a learner can paste, filled
    with the values this run used."""
    root = series.ran("60_hybrid_quantization")
    conv = json.loads((root / "rknn" / "convert.json").read_text())
    platform = f"target_platform='{conv['config']['target_platform']}'"
    params = json.loads((root / "params.json").read_text())

    text = _report_text(root, "30_simulator_inference")
    assert "rknn.init_runtime(target=None)" in text and "rknn.inference(inputs=[img], data_format='nhwc')" in text
    dataset = conv["dataset"] if conv["dataset"].startswith("/") else str(root / conv["dataset"])  # absolute or run-relative
    assert platform in text and f"dataset='{dataset}'" in text

    text = _report_text(root, "50_accuracy_analysis")
    snap = sorted((root / "analysis" / "snapshot").glob("*/error_analysis.txt"))[0]
    assert "rknn.accuracy_analysis(" in text and f"output_dir='{snap.parent}'" in text and "target=None" in text
    assert f"dataset='{root / 'analysis' / 'calibration_demo.txt'}'" in text, "demo mode's own calibration list"
    raw_row = next(ln for ln in snap.read_text().splitlines() if ln.startswith("[Conv]"))
    assert raw_row.split("|")[0].strip() in text, "a raw line of error_analysis.txt"

    text = _report_text(root, "60_hybrid_quantization")
    step1 = root / "hybrid" / "step1"
    stem = next(step1.glob("*.model")).stem
    assert "rknn.hybrid_quantization_step1(" in text and f"proposal={params['60_hybrid_quantization']['proposal']}" in text
    assert "rknn.hybrid_quantization_step2(" in text and f"model_input='{step1 / (stem + '.model')}'" in text
    demo60 = params["60_hybrid_quantization"]["demo_calib_images"] > 0  # the small parameters opt 50 into the demo, not 60
    calib60 = root / "hybrid" / "calibration_demo.txt" if demo60 else dataset
    assert f"dataset='{calib60}'" in text, "60's calls name the calibration list it used"
