"""Notebook 60 on a detection run (task: detect): notebook 60 under papermill on a copy of the session's detection
series run of the small shapes detector (10 -> 40, tests/detect_support.detect_series), asserting on what the run
wrote: the comparison and the search scored by COCO mAP50-95 (the map50_95 columns of hybrid/compare.csv and
hybrid/search.csv), chosen.json naming its metric, the toolkit's own auto_hybrid build of the detector, letterboxed
accuracy_analysis inputs, and a conclusion whose sentence about INT8 matches the numbers."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import pandas as pd
import pytest
from detect_support import SMALL, continue_series, detect_series, tiny_detector  # noqa: F401  (session fixtures)

from helpers.steps import hybrid
from helpers.toolkit.record import read_record

pytestmark = pytest.mark.slow

# Small: the notebook's defaults (target 0.2 pt, user_layers []: the classification tests' layer names are not this
# detector's) plus the opt-in demo calibration on one image, on the tiny detector's 20 val images, with few layers and builds.
# Whether INT8 loses mAP at all on 20 images is up to the images (it often does not), so the notebook's own search
# may have nothing to do; test_search_scores_every_point_by_map runs the search on this detector regardless.
PARAMS = {"analysis_images": 1, "val_images": 0, "auto_layers": 3, "search_budget": 4, "demo_calib_images": 1}
PAIRED = [f"{p}{c}" for p in ("vs_fp32", "vs_int8") for c in ("", "_pt", "_low_pt", "_high_pt", "_verdict", "_paired")]
COMPARE = ["model", "map50_95", "map50_95_delta_pt", "mean_cosine", "min_cosine", "size_kb", "float16_layers", "note", "file",
           "layers", "float16_list", *PAIRED, "calibration"]


@pytest.fixture(scope="module")
def hybrid_run(detect_series, tiny_detector, tmp_path_factory) -> Path:  # noqa: F811 (the imported fixtures)
    """Notebook 60 with PARAMS on a copy of the session's detection series run (10 -> 40, tests/detect_support)."""
    return continue_series(detect_series, tmp_path_factory.mktemp("detect_hybrid") / "run", tiny_detector, "60",
                           {"60_hybrid_quantization": PARAMS})


def _markdown(root: Path) -> list[str]:
    nb = json.loads((root / "executed" / "60_hybrid_quantization.ipynb").read_text())
    return ["".join(o.get("data", {}).get("text/markdown", "")) for c in nb["cells"] if c["cell_type"] == "code"
            for o in c.get("outputs", []) if o.get("data", {}).get("text/markdown")]


def test_compare_and_search_are_scored_by_map(hybrid_run):
    h = hybrid_run / "hybrid"
    table = pd.read_csv(h / "compare.csv").fillna({"note": "", "file": "", "layers": ""})
    assert list(table.columns) == COMPARE and "top1" not in table.columns
    rows = table.set_index("model")
    fp32, int8 = rows.loc["FP32"], rows.loc["INT8"]
    print(f"\nFP32 mAP50-95 {fp32['map50_95']:.4f}  INT8 {int8['map50_95']:.4f} cos {int8['mean_cosine']:.5f}")
    assert fp32["map50_95"] > 0.2, "the small detector learned too little for the comparison to mean anything"
    assert 0 <= int8["map50_95"] <= 1 and int8["mean_cosine"] > 0.9 and int8["size_kb"] > 100
    assert int8["map50_95_delta_pt"] == pytest.approx(round(100 * (int8["map50_95"] - fp32["map50_95"]), 2))
    # the default works for a detector
    assert rows.loc["hybrid (a) your list", "note"] == "no layers picked (user_layers is empty)"
    auto = rows.loc["hybrid (c) auto from ranking"]
    assert len(auto["layers"].split()) >= PARAMS["auto_layers"] and 0 <= auto["map50_95"] <= 1
    assert (hybrid_run / auto["file"]).is_file()
    assert 0 <= rows.loc["build(auto_hybrid=True)", "map50_95"] <= 1, "build(auto_hybrid=True) must build the detector"
    # the one noise rule: every quantized model against FP32 by the paired bootstrap, every hybrid against INT8 too
    assert int8["vs_fp32"].startswith(f"{int8['vs_fp32_pt']:+.1f} pt (95 % CI ") and int8["vs_fp32_low_pt"] <= int8["vs_fp32_pt"]
    assert "bootstrap" in hybrid.paired_of(int8, "vs_fp32").method and pd.isna(int8["vs_int8_pt"])
    assert hybrid.paired_of(auto, "vs_int8").verdict in ("better", "worse", "within noise")
    search = pd.read_csv(h / "search.csv")
    assert list(search.columns) == hybrid.search_columns("map50_95")
    int8_close = hybrid.paired_of(int8, "vs_fp32").verdict != "worse"  # the noise rule cannot tell INT8 from FP32
    if int8_close or hybrid.within(fp32["map50_95"], int8["map50_95"], 0.2):  # nothing to search
        assert search.empty
        assert "no float16 layer is needed" in _markdown(hybrid_run)[-1]
    else:
        assert list(search["layers"]) == [1, 2, 4][: len(search)] and search["map50_95"].between(0, 1).all()
    for name in ("compare.png", "search.png", "layers_before_after.png"):
        assert (h / name).stat().st_size > 0, name


def test_search_scores_every_point_by_map(hybrid_run, tmp_path):
    """The accuracy-driven search on this detector's step 1 files and ranking (in a copy of the run), with a target
    no model meets: each point is a step 2 build scored by mAP50-95 on letterboxed images, the search stops at the
    first point the paired bootstrap cannot tell from FP32 (else builds its whole budget), and the curve is in mAP."""
    import shutil

    from helpers.core.paths import Run
    from helpers.steps import analysis
    from helpers.steps.judge import judge_for
    from helpers.tasks.data import resolve_data_dir

    run = Run.at(shutil.copytree(hybrid_run, tmp_path / "run"))
    record = read_record(run)
    judge = judge_for(run, record, resolve_data_dir("", run), images=8)
    assert judge.key == "map50_95" and judge.pixels.shape[1:] == (SMALL["imgsz"], SMALL["imgsz"], 3) and judge.step_pt() is None
    files = hybrid.find_step1(run.hybrid / "step1")
    int8, before, _ = hybrid.load_baseline(run)
    ranked = analysis.rank_layers(before)
    order = hybrid.with_inputs(list(ranked["name"]), hybrid.layer_graph(files), hybrid.activation_tensors(files),
                               before.loc[before["fused"], "name"])
    table = hybrid.search(hybrid.Bench(run, record, record.dataset, judge, []), files, order, target_pt=-100.0, budget=2,
                          int8_value=0.0)
    print(f"\nFP32 {judge.fp32.value:.4f} on 8 images; search points {list(zip(table['layers'], table['map50_95'].round(4)))}")
    assert list(table.columns) == hybrid.search_columns("map50_95")
    close = [hybrid.paired_of(r, "vs_fp32").verdict != "worse" for _, r in table.iterrows()]
    stop = close.index(True) + 1 if True in close else 2  # the first point within noise of FP32, else the budget
    assert list(table["layers"]) == [1, 2][:stop] and table["met_target"].tolist() == close[:stop]
    assert (run.hybrid / "model_search.rknn").exists() == any(close)
    assert "bootstrap" in hybrid.paired_of(table.iloc[0], "vs_fp32").method
    assert table["map50_95"].between(0, 1).all() and table["mean_cosine"].between(0.9, 1).all()
    assert table["layers_list"].str.split().map(len).tolist() == [1, 2][:stop]
    fig = hybrid.plot_search(table, int8.value, judge, 0.2)
    assert fig.axes[0].get_ylabel().startswith("mAP50-95 (%)") and "mAP50-95" in fig.axes[0].get_title()


def test_accuracy_analysis_reads_letterboxed_images(hybrid_run):
    h = hybrid_run / "hybrid"
    images = sorted((h / "analysis_inputs").glob("*.png"))
    assert len(images) == PARAMS["analysis_images"]
    assert cv2.imread(str(images[0])).shape[:2] == (SMALL["imgsz"], SMALL["imgsz"])  # the model's input, not the 4:3 original
    before_after = pd.read_csv(h / "layers_before_after.csv")
    assert {"INT8", "hybrid (c) auto from ranking"} <= set(before_after["model"]) and before_after["single_cos"].notna().any()


def test_chosen_hybrid_names_map_and_the_conclusion_matches_the_numbers(hybrid_run):
    """The rule picks the exported hybrid among hybrids only, so it can score below INT8: the conclusion must say
    which it is, with the numbers of compare.csv."""
    h = hybrid_run / "hybrid"
    chosen = json.loads((h / "chosen.json").read_text())
    assert chosen["metric"] == "map50_95" and "top1" not in chosen and chosen["demo"] is True
    assert chosen["file"] == "hybrid/model_hybrid_demo.rknn" and (hybrid_run / chosen["file"]).is_file()
    rows = pd.read_csv(h / "compare.csv").set_index("model")
    search = pd.read_csv(h / "search.csv")
    scored = {**rows["map50_95"].dropna().to_dict(),
              **{hybrid.search_name(int(n), t): v for n, t, v in zip(search["float16_layers"], search["layers_total"],
                                                                     search["map50_95"])}}
    assert chosen["map50_95"] == pytest.approx(scored[chosen["model"]])
    hybrids = [v for k, v in scored.items() if k.startswith("hybrid (")]
    # the toolkit's hybrid competes too
    if rows.loc["build(auto_hybrid=True)", "float16_layers"] > rows.loc["INT8", "float16_layers"]:
        hybrids.append(rows.loc["build(auto_hybrid=True)", "map50_95"])
    assert chosen["map50_95"] >= max(hybrids) - 1e-12, "the rule takes the best mAP among the hybrids"
    int8 = float(rows.loc["INT8", "map50_95"])
    text = _markdown(hybrid_run)[-1]
    assert "mAP50-95" in text and "top-1" not in text
    assert f"mAP50-95 {chosen['map50_95']:.3f} vs {int8:.3f} for INT8 with the same calibration" in text
    verdict = chosen["vs_int8"]["verdict"]  # the noise rule decides which sentence is right
    assert ("a measurable gain" in text) is (verdict == "better")
    assert ("measurably worse than INT8" in text) is (verdict == "worse")
    assert ("not measurably different from INT8" in text) is (verdict == "within noise")
    assert chosen["below_int8"] is (round(100 * (chosen["map50_95"] - int8), 2) < 0)  # what keeps it out of the bundle
    assert "This is a demo" in text
    # chosen.json's paired fields are the ones the sentence quotes (the index quotes them too)
    assert chosen["vs_int8"]["text"] in text and chosen["vs_fp32"]["text"] in text
    row = search[search["met_target"]].iloc[0] if chosen["model"].startswith("hybrid search") else rows.loc[chosen["model"]]
    assert chosen["vs_int8"] == json.loads(row["vs_int8_paired"]) and chosen["vs_fp32"] == json.loads(row["vs_fp32_paired"])
