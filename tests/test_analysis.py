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


@pytest.fixture(scope="module")
def outlier_run(tiny_images, tmp_path_factory):
    """A run folder whose notebook 20 converted the outlier model (normal/channel, the 8 tiny images as calibration),
    with the judge notebook 50 would build on those 8 images."""
    from types import SimpleNamespace

    from helpers.core.paths import Run

    tmp_path = tmp_path_factory.mktemp("sweep")
    onnx = outlier_onnx(tmp_path)
    run = Run.at(tmp_path / "run")
    cfg = ConvertConfig(mean_values=[0, 0, 0], std_values=[255, 255, 255])
    dataset = data.write_calibration_list(tiny_images, run.rknn / "calibration.txt")
    result = convert.convert(onnx, cfg, dataset, run.rknn / "model.rknn", run.logs / "convert.log", SIZE)
    write_record(run, result, cfg, onnx, dataset, SIZE, "onnx")
    record = read_record(run)
    images = data.LabelledImages(list(tiny_images), np.arange(len(tiny_images)) % 3, ["a", "b", "c"])
    return SimpleNamespace(onnx=onnx, run=run, dataset=dataset, record=record, images=images,
                           judge=_classify_judge(record, onnx, images))


def test_sweep_builds_each_cell_and_picks_the_best(outlier_run):
    from dataclasses import replace

    from helpers.steps.evaluate import simulator_from_record
    from helpers.tasks.classify.metric import compare, evaluate
    from helpers.tasks.feeds import fp32_runner

    onnx, run, record, images, judge = (outlier_run.onnx, outlier_run.run, outlier_run.record, outlier_run.images,
                                        outlier_run.judge)
    fp32 = evaluate(fp32_runner(onnx, [0, 0, 0], [255, 255, 255]), images, SIZE, progress=False, pixels=judge.pixels)
    assert judge.fp32.value == fp32.top1  # the judge's top-1 is evaluate's
    grid = [("normal", "layer"), ("normal", "channel"), ("kl_divergence", "channel")]
    sweep = analysis.run_sweep(record, grid, judge, run.logs, batch=1)
    assert list(sweep.columns) == ["algorithm", "method", "top1", "top1_delta_pt", "mean_cosine", "min_cosine", "top1_agreement",
                                   "build_s", "why", *analysis.PAIRED_COLUMNS, "log_names_algorithm", "same_outputs_as"]
    assert list(sweep["method"]) == ["layer", "channel", "channel"] and (sweep["build_s"] > 0).all()
    layer, channel = sweep.iloc[0], sweep.iloc[1]
    # the judge scores a cell exactly as evaluate() + compare() did on the same build
    with simulator_from_record(record, run.logs / "check.log", batch=1) as sim:
        int8 = evaluate(sim, images, SIZE, progress=False, pixels=judge.pixels)
        int8_outputs = sim.outputs(judge.pixels)
    # the paired columns are Judge.paired's, against FP32 and against notebook 20's setting (the record's: channel)
    paired = judge.paired(int8_outputs)
    assert analysis.row_paired(channel, "vs_fp32") == replace(paired, method="", images=0, p_value=None, discordant=None)
    assert channel["vs_current_verdict"] == "reference" and np.isnan(channel["vs_current_pt"])
    assert analysis.row_paired(layer, "vs_current").verdict in ("better", "worse", "within noise")
    assert (sweep["log_names_algorithm"] == "none").all(), "rknn-toolkit2 2.5.0 names neither normal nor kl_divergence"
    assert (sweep["same_outputs_as"] == "").all(), "calibrated on 8 images, kl_divergence builds its own model"
    cmp = compare(fp32, int8)
    assert (channel["top1"], channel["top1_delta_pt"], channel["top1_agreement"]) == (int8.top1, cmp.top1_delta_pt,
                                                                                      cmp.top1_agreement)
    assert channel["mean_cosine"] == pytest.approx(cmp.mean_cosine, abs=1e-12)
    assert channel["min_cosine"] == pytest.approx(cmp.min_cosine, abs=1e-12)
    # one scale per channel rescues the seven small channels the outlier crushes in per-layer mode
    assert channel["mean_cosine"] > layer["mean_cosine"]
    best, why = analysis.best_row(sweep)
    assert best["method"] == "channel" and why.startswith(f"Best: quantized_algorithm={best['algorithm']!r}, "
                                                          "quantized_method='channel'")
    stored = analysis.sweep_table(sweep, judge, "notebook 20's list")
    assert list(stored.columns)[-3:] == ["fp32_top1", "images", "calibration"] and (stored["images"] == len(images)).all()
    assert analysis.write_csv(stored, run.analysis / "sweep.csv").exists()


def _outcomes(n: int, only_a: int, only_b: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-image correctness of two models on n images: only_a images only A gets right, only_b only B, the rest both."""
    a, b = np.ones(n, bool), np.ones(n, bool)
    a[only_a:only_a + only_b] = False
    b[:only_a] = False
    return a, b


def _top1_table(tmp_path, n: int, fp32_top1: float, lost: tuple[int, int], gained: tuple[int, int]):
    """sweep.csv as notebook 50 writes it, read back: notebook 20's normal/channel (losing lost[0] images to FP32 and
    winning lost[1]) and mmse/channel (gained = (images it loses, images it wins) against normal/channel), the paired
    columns from the one noise rule."""
    import pandas as pd

    from helpers.steps.analysis.sweep import paired_columns
    from helpers.tasks.noise import mcnemar

    cur_vs_fp32 = mcnemar(*_outcomes(n, *lost))
    best_vs_cur = mcnemar(*_outcomes(n, *gained))
    cur = fp32_top1 + cur_vs_fp32.difference_pt / 100
    best = cur + best_vs_cur.difference_pt / 100
    best_vs_fp32 = mcnemar(*_outcomes(n, lost[0] - min(lost[0], gained[1]), lost[1] + max(0, gained[1] - lost[0])))
    rows = [{"algorithm": "normal", "method": "channel", "top1": cur, "top1_delta_pt": round(100 * (cur - fp32_top1), 2),
             "mean_cosine": 0.99, "min_cosine": 0.31, "top1_agreement": 1 - 7 / n, "build_s": 1.0, "why": "",
             **paired_columns("vs_fp32", cur_vs_fp32), **paired_columns("vs_current", None, "reference"),
             "log_names_algorithm": "none", "same_outputs_as": ""},
            {"algorithm": "mmse", "method": "channel", "top1": best, "top1_delta_pt": round(100 * (best - fp32_top1), 2),
             "mean_cosine": 0.995, "min_cosine": 0.95, "top1_agreement": 0.99, "build_s": 2.0, "why": "",
             **paired_columns("vs_fp32", best_vs_fp32), **paired_columns("vs_current", best_vs_cur),
             "log_names_algorithm": "mmse", "same_outputs_as": ""}]
    table = pd.DataFrame(rows).assign(fp32_top1=fp32_top1, images=n, calibration="notebook 20's list (50 images)")
    path = analysis.write_csv(table, tmp_path / "sweep.csv")
    return pd.read_csv(path).fillna({"why": "", "same_outputs_as": "", "vs_current_verdict": ""}), cur_vs_fp32, best_vs_cur


def test_sweep_sentences_print_the_paired_columns_of_sweep_csv(tmp_path):
    """Every comparison the conclusion prints is the difference, 95 % interval and verdict stored in sweep.csv
    (helpers.tasks.noise via Judge.paired), and it reads right both when INT8 loses several points and when it loses
    nothing."""
    from helpers.tasks.noise import Paired

    # INT8 loses 20 of 400 images (-5 pt, worse); mmse wins back 12 and loses 1 against it (+2.75 pt, better)
    sweep, int8, gain = _top1_table(tmp_path, 400, 0.97, (20, 0), (1, 12))
    text = text50.sweep_conclusion(sweep, ("normal", "channel"))
    cur, best = sweep.iloc[0], sweep.iloc[1]
    stored = [Paired(r[f"{p}_pt"], r[f"{p}_low_pt"], r[f"{p}_high_pt"], r[f"{p}_verdict"], "", 400).text
              for r, p in ((cur, "vs_fp32"), (best, "vs_current"))]
    assert stored == [int8.text, gain.text]  # the CSV round trip keeps what the noise rule said
    assert (f"The sweep's best setting is mmse/channel (top-1 {100 * best['top1']:.2f}%); against notebook 20's "
            f"normal/channel ({100 * cur['top1']:.2f}%) on the same images: {gain.text}, so it is worth trying in notebook 20"
            ) in text
    assert f"; against FP32 it scores {analysis.row_paired(best, 'vs_fp32').text}." in text  # what the better setting leaves
    assert gain.text.startswith("+2.8 pt (95 % CI +") and gain.verdict == "better"
    assert (f"INT8 with normal/channel scores top-1 {100 * cur['top1']:.2f}%, FP32 97.00% on the same 400 images: "
            f"{int8.text}: quantization costs measurable accuracy here") in text
    assert int8.text.startswith("-5.0 pt (95 % CI -") and int8.text.endswith(", worse")
    assert "noise about" not in text and "±" not in text  # one rule: no binomial band beside the interval

    # INT8 loses nothing (2 images each way); mmse's one extra image is within noise
    sweep, int8, gain = _top1_table(tmp_path, 360, 0.9861, (2, 2), (0, 1))
    text = text50.sweep_conclusion(sweep, ("normal", "channel"), demo_images=1)
    assert f"on the same images: {gain.text}: no reason to change notebook 20's setting on this evidence" in text
    assert (f"INT8 with normal/channel under the demo calibration scores top-1 98.61%, FP32 98.61% on the same 360 images: "
            f"{int8.text}: on these images INT8 is not measurably worse than FP32, and a loss larger than "
            f"{-int8.low_pt:.1f} pt is outside the interval.") in text
    assert int8.text.startswith("+0.0 pt (95 % CI -") and "Found under demo calibration (1 image)" in text
    assert text50.sweep_headline(sweep).startswith("FP32 top-1 on the same 360 images: **98.61%** (1 image = 0.28 pt). ")
    assert "exact McNemar test" in text50.sweep_headline(sweep)
    note = text50.low_cosine_note(sweep)
    assert note.startswith("**The lowest output cosine, 0.31** (normal/channel; its mean over the 360 images is 0.9900)")
    assert "on the 7 images where INT8's top class differs from FP32's" in note
    view = text50.sweep_view(sweep)
    assert view["vs FP32"].tolist()[0] == int8.text and view["vs notebook 20's setting"].tolist() == ["reference", gain.text]


def test_sweep_plot_draws_the_paired_intervals_of_the_table(tmp_path):
    """sweep.png: dots with the stored 95 % interval as whiskers around 0 = FP32 (no bars from an arbitrary baseline),
    notebook 20's setting and the demo labelled."""
    sweep, int8, _ = _top1_table(tmp_path, 400, 0.97, (20, 0), (1, 12))
    fig = analysis.plot_sweep(sweep, note=analysis.demo_note(1))
    left, right = fig.axes[:2]
    assert "change vs FP32 (pt)" in left.get_ylabel() and "paired 95 % interval" in left.get_title()
    whiskers = [c for c in left.containers][0].lines[2][0].get_segments()[0]
    assert whiskers[:, 1].tolist() == pytest.approx([int8.low_pt, int8.high_pt])
    lo, hi = left.get_ylim()
    assert lo < min(sweep["vs_fp32_low_pt"]) and hi > 0  # every interval and the FP32 line are inside the axis
    assert not left.patches and not right.patches, "dots, not bars"
    assert "not from zero" in right.get_ylabel() and "(notebook 20)" in left.get_xticklabels()[0].get_text()
    assert fig._suptitle.get_text().startswith("DEMO calibration: 1 image")


def test_detector_sentences_name_map_and_its_bootstrap(tmp_path):
    import pandas as pd

    from helpers.steps.analysis.sweep import paired_columns
    from helpers.tasks.noise import bootstrap

    quality = np.random.default_rng(0).uniform(0.5, 1.0, 50)

    def metric(shift: float):
        return lambda idx: float(np.mean(quality[idx] + shift))

    drop, gain = bootstrap(metric(0.0), metric(-0.05), 50), bootstrap(metric(-0.05), metric(-0.01), 50)
    sweep = pd.DataFrame([
        {"algorithm": "normal", "method": "channel", "map50_95": 0.70, "mean_cosine": 0.99, "min_cosine": 0.97, "map50": 0.9,
         "build_s": 1.0, "why": "", **paired_columns("vs_fp32", drop), **paired_columns("vs_current", None, "reference")},
        {"algorithm": "mmse", "method": "layer", "map50_95": 0.74, "mean_cosine": 0.995, "min_cosine": 0.98, "map50": 0.92,
         "build_s": 2.0, "why": "", **paired_columns("vs_fp32", bootstrap(metric(0.0), metric(-0.01), 50)),
         **paired_columns("vs_current", gain)}]).assign(fp32_map50_95=0.75, images=50, calibration="notebook 20's list")
    text = text50.sweep_conclusion(sweep, ("normal", "channel"))
    assert ("The sweep's best setting is mmse/layer (mAP50-95 0.740); against notebook 20's normal/channel (0.700) on the "
            f"same images: {gain.text}") in text
    assert f"scores mAP50-95 0.700, FP32 0.750 on the same 50 images: {drop.text}" in text
    assert "top-1" not in text and "image(s)" not in text
    assert "paired bootstrap over the images" in text50.sweep_headline(sweep)
    best, why = analysis.best_row(sweep)
    assert best["algorithm"] == "mmse" and "highest mAP50-95 (0.740)" in why
    assert analysis.plot_sweep(sweep).axes[0].get_title() == "mAP50-95 vs FP32, with the paired 95 % interval"
    with pytest.raises(WorkbookError, match="no metric column"):
        analysis.best_row(sweep.drop(columns=["map50_95"]))


def test_flagged_and_ranked_layers_are_counted_over_one_definition(outlier_tables):
    """'N of M layers flagged' and 'K of the same M layers' use one M: the rows with values that are layers
    (analysis.LAYERS_MEANING), which is what the ranking holds."""
    df = analysis.combine([analysis.parse_error_analysis(p) for p in outlier_tables])
    ranked = analysis.rank_layers(df)
    warnings = analysis.warning_signs(df, 0.99)
    headline, _ = text50.flagged_summary(warnings, df, 0.99)
    m = len(ranked)
    assert m == len(analysis.candidates(df)) < int((~df["fused"]).sum())  # the input and its conversion are not layers
    flagged = int(warnings["name"].isin(set(ranked["name"])).sum())
    assert headline.startswith(f"**{flagged} of {m} layers flagged** (an entire or single cosine below 0.99")
    assert f"Layers, in every count of this notebook: the {m} rows of error_analysis.txt with values" in headline
    assert f" of the same {m} layers have a single cosine below 0.99" in text50.layers_conclusion(ranked, 0.99)


def test_kl_divergence_on_one_calibration_image_is_normal(outlier_run, tmp_path):
    """What notebook 50's sweep found on the sample (demo calibration): rknn-toolkit2 2.5.0's kl_divergence, calibrated
    on a single image, builds the model normal builds (bit-identical outputs), and its log names no algorithm (only
    mmse shows itself); with several calibration images it builds its own model (test above)."""
    grid = [("normal", "channel"), ("kl_divergence", "channel"), ("mmse", "channel")]
    one = analysis.run_sweep(outlier_run.record, grid, outlier_run.judge, tmp_path,
                             analysis.small_calibration(outlier_run.dataset, 1, tmp_path / "one.txt"), batch=1)
    assert one["same_outputs_as"].tolist() == ["", "normal/channel", ""]
    assert one["log_names_algorithm"].tolist() == ["none", "none", "mmse"]
    text = text50.identical_outputs_note(one.assign(images=outlier_run.judge.images), 1)
    assert text.startswith("**Identical rows are identical models.** kl_divergence/channel = normal/channel")
    assert "With a single calibration image" in text and "names no quantization algorithm except mmse" in text


def test_kl_divergence_has_nothing_to_choose_when_activations_stay_16_bit(outlier_run, tmp_path):
    """The sample's case (w4a16 on rk3576): with float16 activations, kl_divergence builds normal's model even on all
    calibration images, since it only picks activation ranges; the note says so instead of blaming the image count."""
    from dataclasses import replace

    cfg = replace(outlier_run.record.config, target_platform="rk3576", quantized_dtype="w4a16")
    record = replace(outlier_run.record, config=cfg)
    sweep = analysis.run_sweep(record, [("normal", "channel"), ("kl_divergence", "channel")], outlier_run.judge, tmp_path,
                               outlier_run.dataset, batch=1)
    assert sweep["same_outputs_as"].tolist() == ["", "normal/channel"]
    text = text50.identical_outputs_note(sweep.assign(images=outlier_run.judge.images), 8, "w4a16")
    assert "With w4a16 the activations stay in 16 bits" in text and "single calibration image" not in text


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
