"""helpers.steps.analysis on error_analysis.txt files the real toolkit writes in the test (simulator)."""
from __future__ import annotations

import re

import numpy as np
import pytest
from board_support import BOARD_ID, needs_board
from quality_support import CONFIG, SIZE, outlier_onnx

from helpers.core.errors import WorkbookError
from helpers.steps import analysis, convert
from helpers.tasks import data
from helpers.text import analysis as text50
from helpers.toolkit.options import ConvertConfig
from helpers.toolkit.record import read_record, write_record
from helpers.toolkit.session import RKNN


def _analyse(onnx, images, out, config=None, target=None):
    dataset = data.write_calibration_list(images, out / "calib.txt")
    with RKNN(out / "analysis.log") as rk:
        rk.config(**(config or {"mean_values": [[0, 0, 0]], "std_values": [[255, 255, 255]], "target_platform": "rk3588"}))
        rk.load_onnx(str(onnx))
        rk.build(do_quantization=True, dataset=str(dataset))
        return analysis.run_accuracy_analysis(rk, images[:2], out / "snapshot", target=target, device_id=BOARD_ID or None,
                                              progress=False)


@pytest.fixture(scope="module")
def tiny_tables(tiny_onnx, tiny_images, tmp_path_factory):
    return _analyse(tiny_onnx, tiny_images, tmp_path_factory.mktemp("aa_tiny"))


@pytest.fixture(scope="module")
def outlier_tables(tiny_images, tmp_path_factory):
    out = tmp_path_factory.mktemp("aa_outlier")
    return _analyse(outlier_onnx(out), tiny_images, out, CONFIG)


def test_parser_keeps_every_row_and_fused_rows_as_missing(tiny_tables):
    path = tiny_tables[0]
    text = path.read_text()
    df = analysis.parse_error_analysis(path)
    rows = [ln for ln in text.splitlines() if ln.startswith("[")]
    assert len(df) == len(rows) and list(df["index"]) == list(range(len(rows)))
    assert df["op"].iloc[0] == "Input" and df["name"].iloc[0] == "images"
    assert df["name"].iloc[-1] == "logits"
    # the toolkit fuses the conv into its ReLU: its row has a name and no values
    fused_lines = [ln for ln in rows if not re.search(r"\d\s*\|", ln)]
    assert fused_lines, "the tiny conv+relu net should produce fused (blank) rows"
    fused = df[df["fused"]]
    assert len(fused) == len(fused_lines) and set(fused["op"]) == {"Conv"}
    assert fused[["entire_cos", "entire_euc", "single_cos", "single_euc"]].isna().all().all()
    values = df[~df["fused"]]
    assert values[["entire_cos", "single_cos"]].notna().all().all()
    assert ((values["entire_cos"] > 0.9) & (values["entire_cos"] <= 1.0)).all()
    # numbers are the file's numbers, not rounded or shifted between columns
    first = [ln for ln in rows if ln.startswith("[Relu]")][0]
    nums = [float(x) for x in re.findall(r"\d+\.\d+", first)]
    relu = df[df["op"] == "Relu"].iloc[0]
    assert [relu.entire_cos, relu.entire_euc, relu.single_cos, relu.single_euc] == nums
    assert list(analysis.value_columns(df)) == ["entire_cos", "entire_euc", "single_cos", "single_euc"]


# Rows of the error_analysis.txt rknn-toolkit2 2.5.0 wrote for the sample detector (demo calibration): a euc of 100
# or more fills its fixed-width column and runs into the next cosine; a quantized tensor of all zeros reads q_zero.
DETECTOR_ROWS = """layer_name                                                              simulator_error
                                                                    entire              single
                                                                 cos      euc        cos      euc
-------------------------------------------------------------------------------------------------------
[Input] images                                                 1.00000 | 0.00000   1.00000 | 0.00000
[exMatMul] /model.10/m/m.0/attn/MatMul_output_0_sw_sw          -0.74612 | 862.109310.83862 | 817.76227
[Conv] /cv2.2/cv2.2.0/conv/Conv_output_0                       0.68501 | 18.50231  0.99611 | 2.19509
[Sigmoid] cls16_int8                                            q_zero |  q_zero    q_zero |  q_zero
[exDataConvert] sum16                                           q_zero |  q_zero   0.99999 | 0.00001
"""


def test_parser_splits_values_that_run_into_the_next_column(tmp_path):
    path = tmp_path / "error_analysis.txt"
    path.write_text(DETECTOR_ROWS)
    df = analysis.parse_error_analysis(path).set_index("name")
    cols = ["entire_cos", "entire_euc", "single_cos", "single_euc"]
    assert df.loc["/model.10/m/m.0/attn/MatMul_output_0_sw_sw", cols].tolist() == [-0.74612, 862.10931, 0.83862, 817.76227]
    assert df.loc["/model.10/m/m.0/attn/MatMul_output_0_sw_sw", "flags"] == ""
    assert df.loc["/cv2.2/cv2.2.0/conv/Conv_output_0", cols].tolist() == [0.68501, 18.50231, 0.99611, 2.19509]
    assert df.loc["cls16_int8", cols].isna().all() and not df.loc["cls16_int8", "fused"] and "q_zero" in df.loc["cls16_int8",
        "flags"]
    assert np.isnan(df.loc["sum16", "entire_cos"]) and df.loc["sum16", "single_cos"] == 0.99999


def test_combine_averages_images_and_keeps_fused_missing(tiny_tables):
    frames = [analysis.parse_error_analysis(p) for p in tiny_tables]
    both = analysis.combine(frames)
    assert len(both) == len(frames[0]) and (both["images"] == 2).all()
    ok = ~both["fused"]
    expected = (frames[0]["single_cos"] + frames[1]["single_cos"]) / 2
    assert np.allclose(both.loc[ok, "single_cos"], expected[ok])
    assert both.loc[both["fused"], "single_cos"].isna().all()
    assert (both.loc[ok, "min_single_cos"] <= both.loc[ok, "single_cos"] + 1e-12).all()


def test_warning_signs_and_ranking_find_the_damaged_layer(outlier_tables):
    df = analysis.combine([analysis.parse_error_analysis(p) for p in outlier_tables])
    warn = analysis.warning_signs(df, threshold=0.99)
    assert "/3/Relu_output_0" in set(warn["name"]), warn
    assert "images" not in set(warn["name"])
    ranked = analysis.rank_layers(df)
    assert ranked["name"].iloc[0] == "/3/Relu_output_0"  # largest single-layer drop
    assert not ranked["op"].isin(analysis.NON_LAYER_OPS).any() and ranked["single_drop"].notna().all()
    # downstream layers look fine alone but carry the upstream error: a large entire-single gap
    gap_top = ranked.sort_values("gap", ascending=False).iloc[0]
    assert gap_top["gap"] > 0.05 and gap_top["single_cos"] > 0.99
    fig = analysis.plot_layers(df, 0.99)
    assert fig.axes[0].get_title() and fig.axes[1].get_xlabel()


def test_parser_errors_are_one_clear_sentence(tmp_path, tiny_tables):
    with pytest.raises(WorkbookError, match="does not exist; run accuracy_analysis"):
        analysis.parse_error_analysis(tmp_path / "nope.txt")
    broken = tmp_path / "error_analysis.txt"
    broken.write_text("\n".join(ln for ln in tiny_tables[0].read_text().splitlines() if not ln.startswith("layer_name")))
    with pytest.raises(WorkbookError, match=rf"^{re.escape(str(broken))}: No 'layer_name' header found"):
        analysis.parse_error_analysis(broken)
    header_only = tmp_path / "header_only.txt"
    header_only.write_text("\n".join(ln for ln in tiny_tables[0].read_text().splitlines() if not ln.startswith("[")))
    with pytest.raises(WorkbookError, match="no layer rows"):
        analysis.parse_error_analysis(header_only)


def test_sweep_grid_validation():
    assert analysis.parse_grid([["mmse", "layer"], "kl_divergence/channel"]) == [("mmse", "layer"), ("kl_divergence", "channel")]
    with pytest.raises(WorkbookError, match="quantized_algorithm 'fast'"):
        analysis.parse_grid([["fast", "channel"]])
    with pytest.raises(WorkbookError, match="quantized_method 'tensor'"):
        analysis.parse_grid([["normal", "tensor"]])
    with pytest.raises(WorkbookError, match="grid is empty"):
        analysis.parse_grid([])


def _classify_judge(record, onnx, images):
    """The judge notebook 50 builds (helpers.steps.judge.judge_for) for a hand-made labelled set."""
    from helpers.steps.judge import fp32_outputs
    from helpers.tasks.classify.judge import ClassifyJudge

    pixels = images.load(SIZE)
    return ClassifyJudge("classify", "top1", "top-1", "top1_agreement", list(images.paths), pixels,
                         fp32_outputs(record, onnx, pixels),
                         labels=np.asarray(images.labels))


def test_sweep_builds_each_cell_and_picks_the_best(tiny_images, tmp_path):
    from helpers.core.paths import Run
    from helpers.steps.evaluate import simulator_from_record
    from helpers.tasks.classify.metric import compare, evaluate
    from helpers.tasks.feeds import fp32_runner

    onnx = outlier_onnx(tmp_path)
    run = Run.at(tmp_path / "run")
    cfg = ConvertConfig(mean_values=[0, 0, 0], std_values=[255, 255, 255])
    dataset = data.write_calibration_list(tiny_images, run.rknn / "calibration.txt")
    result = convert.convert(onnx, cfg, dataset, run.rknn / "model.rknn", run.logs / "convert.log", SIZE)
    write_record(run, result, cfg, onnx, dataset, SIZE, "onnx")
    record = read_record(run)
    images = data.LabelledImages(list(tiny_images), np.arange(len(tiny_images)) % 3, ["a", "b", "c"])
    judge = _classify_judge(record, onnx, images)
    fp32 = evaluate(fp32_runner(onnx, [0, 0, 0], [255, 255, 255]), images, SIZE, progress=False, pixels=judge.pixels)
    assert judge.fp32.value == fp32.top1  # the judge's top-1 is evaluate's
    sweep = analysis.run_sweep(record, [("normal", "layer"), ("normal", "channel")], judge, run.logs, batch=1)
    assert list(sweep.columns) == ["algorithm", "method", "top1", "top1_delta_pt", "mean_cosine", "min_cosine", "top1_agreement",
                                   "build_s", "why"]
    assert list(sweep["method"]) == ["layer", "channel"] and (sweep["build_s"] > 0).all()
    layer, channel = sweep.iloc[0], sweep.iloc[1]
    # the judge scores a cell exactly as evaluate() + compare() did on the same build
    with simulator_from_record(record, run.logs / "check.log", batch=1) as sim:
        int8 = evaluate(sim, images, SIZE, progress=False, pixels=judge.pixels)
    cmp = compare(fp32, int8)
    assert (channel["top1"], channel["top1_delta_pt"], channel["top1_agreement"]) == (int8.top1, cmp.top1_delta_pt,
                                                                                      cmp.top1_agreement)
    assert channel["mean_cosine"] == pytest.approx(cmp.mean_cosine, abs=1e-12)
    assert channel["min_cosine"] == pytest.approx(cmp.min_cosine, abs=1e-12)
    # one scale per channel rescues the seven small channels the outlier crushes in per-layer mode
    assert channel["mean_cosine"] > layer["mean_cosine"]
    best, why = analysis.best_row(sweep)
    assert best["method"] == "channel" and why.startswith("Best: quantized_algorithm='normal', quantized_method='channel'")
    stored = analysis.sweep_table(sweep, judge, "notebook 20's list")
    assert list(stored.columns)[-3:] == ["fp32_top1", "images", "calibration"] and (stored["images"] == len(images)).all()
    assert analysis.write_csv(stored, run.analysis / "sweep.csv").exists()


def _table(key: str, values: list[float], fp32: float, images: int):
    """A two-row sweep.csv as notebook 50 writes it, for the metric column `key`."""
    import pandas as pd

    agreement = {"top1": "top1_agreement", "map50_95": "map50"}[key]
    return pd.DataFrame({"algorithm": ["normal", "mmse"], "method": ["channel", "channel"], key: values,
                         f"{key}_delta_pt": [round(100 * (v - fp32), 2) for v in values], "mean_cosine": [0.99, 0.995],
                         "min_cosine": [0.9, 0.95], agreement: [0.9, 0.95], "build_s": [1.0, 2.0], "why": ["", ""],
                         f"fp32_{key}": fp32, "images": images, "calibration": "notebook 20's list (50 images)"})


def test_sweep_sentences_name_the_metric_of_the_table():
    """top-1: differences in images against binomial noise; mAP: in points against the judge's bootstrap noise."""
    top1 = _table("top1", [0.95, 0.97], 0.98, 100)
    text = text50.sweep_conclusion(top1, ("normal", "channel"))
    assert ("The sweep's best setting is mmse/channel (97.00% top-1; 1 image = 1.00 pt); notebook 20's normal/channel gets "
            "95.00%: "
            "+2 image(s), within noise (about ±4.4 images on 100)") in text
    assert ("scores top-1 95.00%, FP32 98.00% on the same 100 images: a loss of 3.0 pt against FP32, within noise "
            "(about ±4.4 pt)") in text
    detect = _table("map50_95", [0.70, 0.74], 0.75, 50)
    text = text50.sweep_conclusion(detect, ("normal", "channel"), noise_pt=2.0)
    assert ("The sweep's best setting is mmse/channel (mAP50-95 0.740; 50 val images, noise about ±2.0 pt); notebook 20's "
            "normal/channel "
            "gets 0.700: +4.0 pt mAP50-95, beyond noise (about ±2.0 pt on 50 images), so it is worth trying in "
            "notebook 20") in text
    assert "a loss of 5.0 pt against FP32, beyond noise (about ±2.0 pt): quantization costs measurable accuracy here" in text
    assert "top-1" not in text and "image(s)" not in text
    assert text50.sweep_headline(detect, 2.0) == ("FP32 mAP50-95 on the same 50 images: **0.750** (noise about ±2.0 pt, two "
                                                  "standard "
                                                  "deviations of a bootstrap over the images).")
    best, why = analysis.best_row(detect)
    assert best["algorithm"] == "mmse" and "highest mAP50-95 (0.740)" in why
    ax = analysis.plot_sweep(detect, noise_pt=2.0).axes[0]
    assert ax.get_title() == "mAP50-95 per quantization setting" and "noise about ±2.0 pt" in ax.get_ylabel()
    with pytest.raises(WorkbookError, match="no metric column"):
        analysis.best_row(detect.drop(columns=["map50_95"]))


def test_small_calibration_keeps_first_n(tiny_images, tmp_path):
    full = data.write_calibration_list(tiny_images, tmp_path / "calib.txt")
    small = analysis.small_calibration(full, 2, tmp_path / "small.txt")
    assert small.read_text().splitlines() == full.read_text().splitlines()[:2]
    with pytest.raises(WorkbookError, match="calib_images=0 would leave no calibration image"):
        analysis.small_calibration(full, 0, tmp_path / "none.txt")


@needs_board
def test_board_adds_runtime_columns(tiny_onnx, tiny_images, tmp_path):
    paths = _analyse(tiny_onnx, tiny_images, tmp_path, target="rk3588")
    df = analysis.parse_error_analysis(paths[0])
    assert {"runtime_entire_cos", "runtime_entire_euc"} <= set(df.columns)
    assert df["runtime_entire_cos"].notna().any()


@pytest.mark.slow
def test_a_sweep_cell_that_crashes_the_toolkit_becomes_its_row(tiny_images, tmp_path):
    """rknn-toolkit2 2.5.0 aborts the process building w8a16 for rk3562: inside notebook 50's sweep that
    costs the cell's row (with why), not the kernel; the next cell still builds in a fresh worker."""
    from dataclasses import replace

    from helpers.core.paths import Run

    onnx = outlier_onnx(tmp_path)
    run = Run.at(tmp_path / "run")
    cfg = ConvertConfig(mean_values=[0, 0, 0], std_values=[255, 255, 255], target_platform="rk3562")
    dataset = data.write_calibration_list(tiny_images, run.rknn / "calibration.txt")
    result = convert.convert(onnx, cfg, dataset, run.rknn / "model.rknn", run.logs / "convert.log", SIZE)
    write_record(run, result, cfg, onnx, dataset, SIZE, "onnx")
    good = read_record(run)
    crashing = replace(good, config=replace(good.config, quantized_dtype="w8a16"))
    images = data.LabelledImages(list(tiny_images), np.arange(len(tiny_images)) % 3, ["a", "b", "c"])
    judge = _classify_judge(good, onnx, images)

    sweep = analysis.run_sweep(crashing, [("normal", "channel")], judge, run.logs, batch=1)
    row = sweep.iloc[0]
    if not row["why"]:
        pytest.skip("rknn-toolkit2 built w8a16 for rk3562 without aborting this time (native memory corruption is not "
                    "deterministic); tests/test_isolate.py covers the crash path")
    assert np.isnan(row["top1"]) and row["why"].startswith("the build crashed its process: "), row["why"]
    assert "try another quantized_dtype, target_platform or optimization_level" in row["why"]
    with pytest.raises(WorkbookError, match=r"No setting of the sweep built \(normal/channel: the build crashed its process"):
        analysis.best_row(sweep)

    after = analysis.run_sweep(good, [("normal", "layer"), ("normal", "channel")], judge, run.logs, batch=1)
    assert after["why"].tolist() == ["", ""] and (after["top1"] >= 0).all()
    import pandas as pd

    mixed = pd.concat([sweep, after], ignore_index=True)
    best, _ = analysis.best_row(mixed)
    assert best["method"] == "channel" and best["why"] == "", "the crashed row never wins"
