"""Notebooks 50 (accuracy analysis) and 60 (hybrid quantization) under papermill with small
parameters: the artifacts they write, checked for what a user relies on."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import yaml

from helpers.core.paths import REPO
from helpers.runner import execute
from helpers.steps import analysis, hybrid

SMALL = yaml.safe_load((REPO / "tests" / "small_params.yaml").read_text())
pytestmark = pytest.mark.slow


def _outputs(executed) -> str:
    nb = json.loads(executed.read_text())
    text = []
    for c in nb["cells"]:
        for o in c.get("outputs", []):
            t = o.get("text") or o.get("data", {}).get("text/markdown") or o.get("data", {}).get("text/plain") or ""
            text.append("".join(t))
    return "\n".join(text)


def test_50_writes_layer_table_plots_and_sweep(series):
    root = series.ran("50_accuracy_analysis")
    a = root / "analysis"
    for name in ("layers.csv", "layers.png", "sweep.csv", "sweep.png", "calibration_demo.txt"):
        assert (a / name).stat().st_size > 0, name
    snaps = sorted(a.glob("snapshot/*/error_analysis.txt"))
    assert len(snaps) == SMALL["50_accuracy_analysis"]["analysis_images"]
    layers = pd.read_csv(a / "layers.csv").fillna({"flags": ""})  # as the notebook reads it (no flag = empty, not NaN)
    raw = analysis.parse_error_analysis(snaps[0])
    assert list(layers["name"]) == list(raw["name"]) and len(layers) > 50  # YOLO11n-cls has ~110 rows
    assert layers["op"].iloc[0] == "Input" and {"entire_cos", "single_cos", "entire_euc", "single_euc"} <= set(layers.columns)
    assert layers.loc[~layers["fused"], "single_cos"].between(0, 1.0000001).all()
    assert len((a / "calibration_demo.txt").read_text().split()) == 1
    sweep = pd.read_csv(a / "sweep.csv")
    assert [list(x) for x in zip(sweep["algorithm"], sweep["method"])] == SMALL["50_accuracy_analysis"]["sweep_grid"]
    assert sweep["top1"].between(0.5, 1).all() and sweep["mean_cosine"].between(0.9, 1).all() and (sweep["build_s"] > 0).all()
    # the opt-in demo (one calibration image) moves INT8's outputs visibly away from FP32's (0.9999+ with the full list)
    assert sweep["mean_cosine"].iloc[0] < 0.999
    out = _outputs(root / "executed" / "50_accuracy_analysis.ipynb")
    best, why = analysis.best_row(sweep)
    assert why in out, "the notebook must state the best setting and why"
    # one noise rule: the sentence prints the paired comparison sweep.csv stores (difference, 95 % interval, verdict)
    current = sweep[sweep["vs_current_verdict"] == "reference"].iloc[0]
    int8 = analysis.row_paired(current, "vs_fp32")
    assert f"on the same {int(current['images'])} images: {int8.text}" in out
    assert f"{current['algorithm']}/{current['method']}" == "normal/channel"  # notebook 20's setting is the reference row
    # one definition of layers: the flagged count and the ranking's count share the denominator
    total, warnings = len(analysis.candidates(layers)), analysis.warning_signs(layers, 0.99)
    flagged = int(warnings["name"].isin(set(analysis.candidates(layers)["name"])).sum())
    assert (f"**{flagged} of {total} layers flagged**" in out if len(warnings) else
            "No layer below 0.99 and no NaN" in out)
    assert f" of the same {total} layers " in out or f"None of the {total} layers " in out


def test_60_compares_every_strategy_and_exports_the_hybrid(series):
    root = series.ran("60_hybrid_quantization")
    h = root / "hybrid"
    files = hybrid.find_step1(h / "step1")
    assert files.model.exists() and files.data.exists()
    original = files.cfg.read_text()
    assert original.startswith("custom_quantize_layers:"), "the toolkit's cfg must be left as written"
    edited = sorted(p.name for p in files.folder.glob("*.quantization.cfg") if p != files.cfg)
    assert edited, "edited cfgs live beside the original"
    for p in files.folder.glob("*.strategy*.quantization.cfg"):
        text = p.read_text()
        assert re.match(r"custom_quantize_layers:\n    \S+: float16\n", text), p.name
        assert text.split("quantize_parameters:", 1)[1] == original.split("quantize_parameters:", 1)[1]
    table = pd.read_csv(h / "compare.csv").fillna({"note": "", "layers": ""})
    assert list(table["model"]) == ["FP32", "INT8", "hybrid (a) your list", "hybrid (b) toolkit proposal",
                                    "hybrid (c) auto from ranking", "build(auto_hybrid=True)"]
    rows = table.set_index("model")
    user = SMALL["60_hybrid_quantization"]["user_layers"]
    assert rows.loc["hybrid (a) your list", "layers"].split() == user
    for name in ("INT8", "hybrid (a) your list", "hybrid (c) auto from ranking", "build(auto_hybrid=True)"):
        assert 0.5 <= rows.loc[name, "top1"] <= 1 and 0.9 <= rows.loc[name, "mean_cosine"] <= 1, name
        assert rows.loc[name, "size_kb"] > 100, name
    assert rows.loc["hybrid (a) your list", "float16_layers"] >= rows.loc["INT8", "float16_layers"] + len(user)
    if rows.loc["hybrid (b) toolkit proposal", "note"]:
        assert pd.isna(rows.loc["hybrid (b) toolkit proposal", "top1"])
    demo = SMALL["60_hybrid_quantization"].get("demo_calib_images", 0)  # demo mode is an opt-in (issue 21)
    exported = "model_hybrid_demo.rknn" if demo else "model_hybrid.rknn"
    for name in ("compare.png", "search.png", "layers_before_after.png", "search.csv", exported):
        assert (h / name).stat().st_size > 0, name
    if demo:
        assert not (h / "model_hybrid.rknn").exists(), "a demo hybrid is never exported under the deployable name"
        assert not (root / "board" / "deploy" / "model_hybrid.rknn").exists(), "a demo hybrid never enters the bundle"
        assert set(table.loc[table["model"] != "FP32", "calibration"]) == {"demo: 1 image"}
    for f in table["file"].dropna():
        assert (root / f).is_file(), f"compare.csv names {f}, which must exist"
    search = pd.read_csv(h / "search.csv")
    target = SMALL["60_hybrid_quantization"].get("target_pt", 0.2)
    int8_close = hybrid.paired_of(rows.loc["INT8"], "vs_fp32").verdict != "worse"  # the noise rule cannot tell it from FP32
    if int8_close or hybrid.within(rows.loc["FP32", "top1"], rows.loc["INT8", "top1"], target):  # nothing to recover
        assert search.empty
    else:  # 1, 2, 4, ... layers, stopping at the first hybrid that meets the target or at the budget
        assert list(search["layers"]) == [1, 2, 4, 8, 16][: len(search)]
        assert search["layers"].max() <= SMALL["60_hybrid_quantization"]["search_budget"]
        assert not search["met_target"].iloc[:-1].any()
    before_after = pd.read_csv(h / "layers_before_after.csv")
    assert {"INT8", "hybrid (a) your list"} <= set(before_after["model"])
    # where the user's layers sit, the hybrid's single-layer cosine is at least as good as INT8's
    b = before_after.set_index(["model", "name"])["single_cos"]
    for layer in user:
        assert b[("hybrid (a) your list", layer)] >= b[("INT8", layer)] - 1e-6


def test_20_30_50_and_60_reuse_their_results_on_a_warm_rerun(series):
    """Re-executing 20, 30, 50 and 60 on the finished run: each says it reused its results (the conversion too, and 30's
    evaluation after 20 ran again)."""
    root = series.ran("60_hybrid_quantization")
    steps = {"20_convert": ["20_convert"], "30_simulator_inference": ["30_one_image", "30_evaluate"],
             "50_accuracy_analysis": ["50_analysis", "50_sweep"],
             "60_hybrid_quantization": ["60_step1", "60_int8", "60_hybrid", "60_rules", "60_search"]}
    sim_log = root / "logs" / "simulator.log"
    before = sim_log.stat().st_mtime_ns if sim_log.exists() else None
    for name, cached in steps.items():
        nb = next(p for p in execute.notebooks() if p.stem == name)
        out = _outputs(execute.execute(nb, root, execute.params_for(nb, series.config)))
        for step in cached:
            assert f"[cache] {step}:" in out, f"{name} recomputed {step} on an unchanged re-run"
    # issue 11: notebook 30 does not rebuild the simulator model when every result comes from the cache
    assert "simulator model not built" in _outputs(root / "executed" / "30_simulator_inference.ipynb")
    assert (sim_log.stat().st_mtime_ns if sim_log.exists() else None) == before, "the simulator's log was written: it was rebuilt"


def test_index_reports_the_hybrid_that_was_exported(series):
    """chosen.json names the exported model (relative to the run folder) and says whether it is a demo; the
    index's hybrid figures come from it and carry the demo label."""
    from helpers.runner.figures import key_figures
    from helpers.runner.index import verdict

    root = series.ran("60_hybrid_quantization")
    chosen = json.loads((root / "hybrid" / "chosen.json").read_text())
    demo = SMALL["60_hybrid_quantization"].get("demo_calib_images", 0) > 0
    assert chosen["file"] == ("hybrid/model_hybrid_demo.rknn" if demo else "hybrid/model_hybrid.rknn")
    assert (root / chosen["file"]).is_file()
    assert chosen["demo"] is demo
    assert 0.5 <= chosen["top1"] <= 1 and 0.9 <= chosen["mean_cosine"] <= 1
    figures = {f.label: f for f in key_figures(root)}
    if demo:  # a demo's figures stay in its labelled section: the key figures and the verdict only say it ran
        assert figures["Hybrid top-1"].raw is None and "DEMO run of notebook 60" in figures["Hybrid top-1"].value
        assert "notebook 60 ran as a demo" in verdict(root)
    else:
        assert figures["Hybrid top-1"].raw == chosen["top1"]
        assert chosen["model"] in figures["Hybrid top-1"].value and chosen["model"] in verdict(root)
        assert figures["Final-output cosine hybrid vs FP32 (mean)"].raw == chosen["mean_cosine"]


def test_50_and_60_state_their_conclusion_from_this_run(series):
    """The closing sentences are computed: the sweep's best setting and the search's layer count appear
    with the numbers of this run, and demo mode is named."""
    root = series.ran("60_hybrid_quantization")
    out50 = _outputs(root / "executed" / "50_accuracy_analysis.ipynb")
    sweep = pd.read_csv(root / "analysis" / "sweep.csv")
    best, _ = analysis.best_row(sweep)
    assert f"The sweep's best setting is {best['algorithm']}/{best['method']} (top-1 {100 * best['top1']:.2f}%)" in out50
    assert "Found under demo calibration" in out50
    out60 = _outputs(root / "executed" / "60_hybrid_quantization.ipynb")
    search = pd.read_csv(root / "hybrid" / "search.csv")
    met = search[search["met_target"]]
    if len(met):  # the count is the built model's float16 layers, the table's
        assert re.search(rf"The search needed (all )?{int(met.iloc[0]['float16_layers'])} of \d+ layers in float16", out60)
    elif len(search):  # no point met the target: the sentence says so, with or without a measurable loss
        assert "None of the search's" in out60 or f"Even {int(search['float16_layers'].max())} of " in out60
    else:
        assert "no float16 layer is needed" in out60
    # every comparison carries the one noise rule's interval, and INT8's is the one int8.json holds
    int8 = json.loads((root / "hybrid" / "int8.json").read_text())
    assert f"Plain INT8's top-1 is {100 * int8['value']:.2f}% against FP32's" in out60 and int8["vs_fp32"]["text"] in out60
    chosen = json.loads((root / "hybrid" / "chosen.json").read_text())
    assert chosen["vs_int8"]["text"] in out60 and chosen["vs_fp32"]["text"] in out60
    # the tutorial's rule, tested: two scored rows with the same k, and a sentence that names the departure
    rules = pd.read_csv(root / "hybrid" / "rules.csv")
    assert len(rules) == 2 and rules["top1"].between(0.5, 1).all() and rules["vs_int8"].str.contains("95 % CI").all()
    assert rules["chosen_layers"].nunique() == 1 and "The workbook departs from the tutorial on purpose" in out60
    demo = SMALL["60_hybrid_quantization"].get("demo_calib_images", 0) > 0
    assert ("This is a demo" in out60) is demo
    if demo:
        assert "was built under demo calibration (set demo_calib_images = 0" in out60 and "it stays out of the bundle" in out60
