"""helpers.steps.hybrid on .quantization.cfg / .model / .data files the real toolkit writes in the test."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import yaml
from quality_support import CONFIG, MEAN, SIZE, STD, onnx_scores, outlier_onnx

from helpers.backends.simulator import BuiltSimulator
from helpers.core.errors import WorkbookError
from helpers.steps import analysis, hybrid
from helpers.tasks import data, scoring
from helpers.tasks.classify.judge import ClassifyJudge
from helpers.tasks.classify.metric import scores_of
from helpers.tasks.feeds import fp32_runner
from helpers.tasks.measures import cosine
from helpers.tasks.noise import Paired
from helpers.tasks.preprocess import read_rgb
from helpers.text import hybrid as text60
from helpers.toolkit.session import RKNN


@pytest.fixture(scope="module")
def made(tiny_images, tmp_path_factory):
    """Step 1 (with the toolkit's proposal) of the outlier model, run in its own folder."""
    root = tmp_path_factory.mktemp("hybrid")
    onnx = outlier_onnx(root)
    dataset = data.write_calibration_list(tiny_images, root / "calib.txt")
    folder = root / "step1"
    with RKNN(folder / "step1.log", workdir=folder) as rk:
        rk.config(**CONFIG)
        rk.load_onnx(str(onnx))
        files = hybrid.step1(rk, dataset, proposal=True)
    return {"root": root, "onnx": onnx, "dataset": dataset, "files": files}


def test_step1_writes_its_files_in_the_step_folder(made):
    files = made["files"]
    assert files.folder == made["root"] / "step1"
    assert files.model.name == "outlier.model" and files.data.stat().st_size > 0
    assert not list(made["root"].glob("*.cfg")), "step1 must not write outside its folder"
    cfg = hybrid.read_cfg(files.cfg)
    assert "images" in cfg.tensors and "/3/Relu_output_0" in cfg.tensors
    # the proposal fills custom_quantize_layers as a block mapping of float16 layers
    assert cfg.custom and set(cfg.custom.values()) == {"float16"}
    assert hybrid.graph_inputs(files) == ["images"]
    acts = hybrid.activation_tensors(files)
    assert "images" not in acts and "/1/Relu_output_0" in acts and not any(t.endswith(".weight") for t in acts)
    # nor the input conversions the toolkit inserts (images_int8, images_float16 for w4a16): the ranking and the search
    # offer real layers only, so the search never spends its first build on one
    assert not [t for t in acts if t.startswith("images")], acts
    assert hybrid.layer_graph(files)["/2/Conv_output_0"] == ["/1/Relu_output_0"]


def _plain_step1(made, tmp_path):
    """Step 1 without proposal: the cfg starts with `custom_quantize_layers: {}`."""
    folder = tmp_path / "plain"
    with RKNN(folder / "step1.log", workdir=folder) as rk:
        rk.config(**CONFIG)
        rk.load_onnx(str(made["onnx"]))
        return hybrid.step1(rk, made["dataset"], proposal=False)


def test_edit_writes_a_block_mapping_and_keeps_the_original(made, tmp_path):
    files = _plain_step1(made, tmp_path)
    original = files.cfg.read_bytes()
    assert original.startswith(b"custom_quantize_layers: {}")
    out = hybrid.write_cfg(files, ["/1/Relu_output_0", "/2/Conv_output_0"])
    assert out == files.edited_cfg and out.name == "outlier.edited.quantization.cfg"
    assert files.cfg.read_bytes() == original, "the toolkit's cfg must stay untouched"
    text = out.read_text()
    assert text.startswith("custom_quantize_layers:\n    /1/Relu_output_0: float16\n    /2/Conv_output_0: "
                           "float16\nquantize_parameters:")
    assert yaml.safe_load(text)["quantize_parameters"] == yaml.safe_load(original)["quantize_parameters"]
    # only the section changed: the rest of the file is byte for byte the toolkit's
    assert text.split("quantize_parameters:", 1)[1] == original.decode().split("quantize_parameters:", 1)[1]
    assert hybrid.read_cfg(out).custom == {"/1/Relu_output_0": "float16", "/2/Conv_output_0": "float16"}
    # int16 is a valid choice too; an empty selection writes the empty mapping back
    hybrid.write_cfg(files, {"/3/Relu_output_0": "int16"})
    assert hybrid.read_cfg(out).custom == {"/3/Relu_output_0": "int16"}
    hybrid.write_cfg(files, [])
    assert out.read_bytes() == original


def test_edit_is_idempotent_over_a_hand_edited_cfg(made, tmp_path):
    files = _plain_step1(made, tmp_path)
    sel = ["/1/Relu_output_0", "/2/Conv_output_0"]
    first = hybrid.write_cfg(files, sel).read_bytes()
    assert hybrid.write_cfg(files, sel).read_bytes() == first
    text = files.cfg.read_text()
    # the tutorial's trap: entries added under the `{}` line -> invalid YAML, named as such
    files.cfg.write_text(text.replace("custom_quantize_layers: {}", "custom_quantize_layers: {}\n    /1/Relu_output_0: float16",
                                      1))
    with pytest.raises(WorkbookError, match="not valid YAML at line 2; write custom_quantize_layers as a block mapping"):
        hybrid.read_cfg(files.cfg)
    assert hybrid.write_cfg(files, sel).read_bytes() == first
    # an inline mapping written by hand is replaced by the same block mapping
    files.cfg.write_text(text.replace("custom_quantize_layers: {}", "custom_quantize_layers: {/3/Relu_output_0: float16}", 1))
    assert hybrid.read_cfg(files.cfg).custom == {"/3/Relu_output_0": "float16"}
    assert hybrid.write_cfg(files, sel).read_bytes() == first


def test_bad_selections_are_refused_before_writing(made, tmp_path):
    files = _plain_step1(made, tmp_path)
    with pytest.raises(WorkbookError) as info:
        hybrid.write_cfg(files, ["/1/Relu_output"])
    msg = str(info.value)
    assert msg == ("Layer '/1/Relu_output' is not under quantize_parameters in outlier.quantization.cfg "
                   "(did you mean '/1/Relu_output_0'?); pick tensor names from that list.")
    with pytest.raises(WorkbookError, match=r"^Layer '/1/Relu_output_0' has dtype 'fp16', which the cfg does not "
                                            r"accept; write 'float16' instead\.$"):
        hybrid.write_cfg(files, {"/1/Relu_output_0": "fp16"})
    with pytest.raises(WorkbookError, match=r"unknown dtype 'int4'; use one of int8, int16, float16\.$"):
        hybrid.write_cfg(files, {"/1/Relu_output_0": "int4"})
    with pytest.raises(WorkbookError, match=r"^Layer 'images' is a graph input"):
        hybrid.write_cfg(files, ["images", "/1/Relu_output_0"])
    assert not files.edited_cfg.exists(), "nothing may be written when the selection is refused"
    with pytest.raises(WorkbookError, match="Refusing to overwrite the original"):
        hybrid.write_cfg(files, ["/1/Relu_output_0"], out=files.cfg)


def test_step2_without_step1_files(made, tmp_path):
    with pytest.raises(WorkbookError, match=r"^No <model>.quantization.cfg in .*; run hybrid step 1"):
        hybrid.find_step1(tmp_path)
    files = _plain_step1(made, tmp_path)
    files.data.unlink()
    with pytest.raises(WorkbookError, match=r"outlier.data is missing beside outlier.quantization.cfg; re-run hybrid step 1"):
        hybrid.find_step1(files.folder)
    with RKNN(tmp_path / "s2.log") as rk:
        with pytest.raises(WorkbookError, match=r"^Hybrid step 2 needs .*outlier.data, which does not exist; run hybrid step 1"):
            hybrid.step2(rk, files, files.cfg)


def test_hybrid_from_the_ranking_repairs_the_output(made, tiny_images, tmp_path):
    """INT8 vs float16 for the ranked layers (with their inputs): output cosine vs FP32 goes up."""
    files = made["files"]
    pixels = np.stack([read_rgb(p, SIZE) for p in tiny_images])
    fp32 = onnx_scores(made["onnx"], pixels)
    with RKNN(tmp_path / "int8.log") as rk:
        rk.config(**CONFIG)
        rk.load_onnx(str(made["onnx"]))
        rk.build(do_quantization=True, dataset=str(made["dataset"]))
        before = analysis.combine([analysis.parse_error_analysis(p) for p in
                                   analysis.run_accuracy_analysis(rk, tiny_images[:1], tmp_path / "before", progress=False)])
        rk.init_runtime(target=None)
        int8 = scores_of(BuiltSimulator(rk).outputs(pixels))
    order = [n for n in analysis.rank_layers(before)["name"]]
    fused = before.loc[before["fused"], "name"]
    chosen = hybrid.with_inputs(order[:1], hybrid.layer_graph(files), hybrid.activation_tensors(files), fused)
    # the worst layer with its fused conv, and the crushed tensor they read with its own fused conv
    assert chosen == ["/0/Conv_output_0", "/1/Relu_output_0", "/2/Conv_output_0", "/3/Relu_output_0"] and order[0] == chosen[-1]
    log = tmp_path / "step2.log"
    with hybrid.built(files, chosen, tmp_path / "edited.cfg", log) as rk:
        after = analysis.parse_error_analysis(analysis.run_accuracy_analysis(rk, tiny_images[:1], tmp_path / "after",
                                                                             progress=False)[0])
        rk.export_rknn(str(tmp_path / "hybrid.rknn"))
        rk.init_runtime(target=None)
        mixed = scores_of(BuiltSimulator(rk).outputs(pixels))
    assert (tmp_path / "hybrid.rknn").stat().st_size > 0
    assert set(chosen) <= set(hybrid.float16_tensors(log))
    c_int8, c_mixed = cosine(fp32, int8).mean(), cosine(fp32, mixed).mean()
    assert c_mixed > c_int8 and c_mixed > 0.999, (c_int8, c_mixed)
    worst = after.set_index("name").loc[order[0], "single_cos"]
    assert worst > before.set_index("name").loc[order[0], "single_cos"]


def test_tutorial_rule_experiment_scores_two_hybrids_with_the_same_k(made, tiny_images, tmp_path):
    """Issue 21 part 6 on the outlier model: the tutorial's rule (largest entire-single gap) and the workbook's (lowest
    single cosine) each pick k layers from the INT8 ranking; two step 2 builds, both scored by the one noise rule
    against INT8 and each other, and every float16 count is of the build's own float16 layers."""
    from helpers.core.paths import Run

    files = made["files"]
    pixels = np.stack([read_rgb(p, SIZE) for p in tiny_images])
    fp32 = fp32_runner(made["onnx"], MEAN, STD).outputs(pixels)
    judge = ClassifyJudge("classify", "top1", "top-1", "top1_agreement", list(tiny_images), pixels, fp32,
                          labels=scores_of(fp32).argmax(1))
    with RKNN(tmp_path / "int8.log") as rk:
        rk.config(**CONFIG)
        rk.load_onnx(str(made["onnx"]))
        rk.build(do_quantization=True, dataset=str(made["dataset"]))
        before = analysis.combine([analysis.parse_error_analysis(p) for p in
                                   analysis.run_accuracy_analysis(rk, tiny_images[:1], tmp_path / "before", progress=False)])
        rk.init_runtime(target=None)
        int8_outputs = BuiltSimulator(rk).outputs(pixels)
    ranked = analysis.rank_layers(before)
    layers = hybrid.activation_tensors(files)
    picks = hybrid.rule_layers(ranked, 1, layers)
    assert set(picks) == {hybrid.TUTORIAL_RULE, hybrid.WORKBOOK_RULE} and all(len(v) == 1 for v in picks.values())
    assert picks[hybrid.WORKBOOK_RULE] == [n for n in ranked["name"] if n in layers][:1], "the workbook's rule is the ranking's"
    bench = hybrid.Bench(Run.at(tmp_path / "run"), None, made["dataset"], judge, [], layers=layers)
    rules = hybrid.compare_rules(bench, files, ranked, 1, int8_outputs)
    assert list(rules["model"]) == [hybrid.TUTORIAL_RULE, hybrid.WORKBOOK_RULE]
    assert (rules["chosen_layers"] == 1).all() and rules["top1"].between(0, 1).all()
    for r in rules.to_dict("records"):
        f16 = r["float16_list"].split()
        assert r["float16_layers"] == len(f16) and set(r["layers"].split()) <= set(f16), r["model"]
        assert hybrid.paired_of(r, "vs_int8").images == len(tiny_images) and hybrid.paired_of(r, "vs_fp32") is not None
    assert hybrid.paired_of(rules.iloc[1], "vs_tutorial") is not None and hybrid.paired_of(rules.iloc[0], "vs_tutorial") is None
    int8 = hybrid.Variant("INT8", judge.score(int8_outputs).value, 0.9, 0.9, 0, 0, vs_fp32=judge.paired(int8_outputs).to_dict())
    note = text60.rules_note(rules, int8, judge)
    assert "k = 1 layers each" in note and "departs from the tutorial" in note


def test_search_stops_at_target_and_respects_budget():
    calls = []

    def score(names):
        calls.append(len(names))
        return (0.90 + 0.01 * len(names), 0.99)

    points, hit = hybrid.accuracy_search([f"t{i}" for i in range(20)], score, fp32_value=0.95, target_pt=0.2, budget=16)
    assert calls == [1, 2, 4, 8] and hit is points[-1] and hit.layers == 8  # 0.98 is the first within 0.2 pt of 0.95 or above
    points, hit = hybrid.accuracy_search([f"t{i}" for i in range(20)], lambda n: (0.5, 0.9), fp32_value=0.95, budget=5)
    assert hit is None and [p.layers for p in points] == [1, 2, 4, 5]
    calls.clear()  # plain INT8 already within the target: nothing to search
    assert hybrid.accuracy_search(["a", "b"], score, fp32_value=0.95, target_pt=0.2, budget=4, int8_value=0.949) == ([], None)
    assert calls == []
    with pytest.raises(WorkbookError, match="search_budget=0 allows no layer"):
        hybrid.accuracy_search(["a"], score, 0.9, budget=0)


def test_search_stops_at_the_first_hybrid_the_noise_rule_cannot_tell_from_fp32():
    """More float16 layers cost NPU time; once a hybrid is within noise of FP32 on these images (the one noise rule),
    the search stops there even if the point estimate is short of the target, and it does not start when plain INT8
    itself is within noise of FP32."""
    def score(names):
        verdict = "worse" if len(names) < 4 else "within noise"
        return 0.90 + 0.005 * len(names), 0.99, {"vs_fp32_verdict": verdict}

    points, hit = hybrid.accuracy_search([f"t{i}" for i in range(20)], score, fp32_value=0.95, target_pt=0.2, budget=16)
    assert [p.layers for p in points] == [1, 2, 4] and hit is points[-1] and hit.value < 0.95 - 0.002
    assert hybrid.accuracy_search(["a", "b"], score, fp32_value=0.95, budget=4, int8_value=0.9, int8_close=True) == ([], None)


def test_layer_picker_offers_the_cfg_names_and_refuses_unknown_ones(made):
    names = hybrid.activation_tensors(made["files"])
    picker = hybrid.layer_picker(names, ["/1/Relu_output_0"])
    assert tuple(picker.value) == ("/1/Relu_output_0",) and list(picker.options) == names
    with pytest.raises(WorkbookError, match=r"^user_layers names '/1/relu_output_0', which is not a layer of this "
                                            r"model \(did you mean '/1/Relu_output_0'\?\)"):
        hybrid.layer_picker(names, ["/1/relu_output_0"])


def test_export_choice_search_competes_with_strategies_and_files_go_by_name(tmp_path):
    """Issue 11 item 3: the search's model is one more candidate; it never overwrites a strategy's row (the
    old `candidates.loc[len(candidates)]` did when a strategy row had been dropped), and each candidate's
    file is the one its own row names, not the one at its position."""
    import pandas as pd

    from helpers.core.paths import Run

    run = Run.at(tmp_path / "run")
    for f in ("strategy_hybrid_a_your_list.rknn", "strategy_hybrid_c_auto_from_ranking.rknn", "model_search.rknn"):
        (run.hybrid / f).write_bytes(f.encode())
    compare = [
        {"model": "FP32", "top1": 0.99, "mean_cosine": 1.0, "float16_layers": 0, "file": ""},
        {"model": "INT8", "top1": 0.90, "mean_cosine": 0.98, "float16_layers": 1, "file": "hybrid/model_int8.rknn"},
        {"model": "hybrid (a) your list", "top1": 0.97, "mean_cosine": 0.990, "float16_layers": 4,
         "file": "hybrid/strategy_hybrid_a_your_list.rknn"},
        {"model": "hybrid (b) toolkit proposal", "top1": float("nan"), "mean_cosine": float("nan"), "float16_layers": 0,
         "file": ""},
        {"model": "hybrid (c) auto from ranking", "top1": 0.96, "mean_cosine": 0.995, "float16_layers": 9,
         "file": "hybrid/strategy_hybrid_c_auto_from_ranking.rknn"},
    ]
    judge = _top1_judge(0.99, 100)
    search = [{"layers": 1, "top1": 0.93, "mean_cosine": 0.99, "float16_layers": 2, "layers_total": 40, "met_target": False},
              _scored(judge, "", _right(97), _right(90), layers=2, mean_cosine=0.991, float16_layers=4, layers_total=40,
                      met_target=True)]
    cands = hybrid.export_candidates(compare, search, root=run.root)
    assert [c["model"] for c in cands] == ["hybrid (a) your list", "hybrid (c) auto from ranking",
                                           "hybrid search (4 of 40 layers in float16)"]
    best = hybrid.choose_export(cands)
    assert best["model"] == "hybrid search (4 of 40 layers in float16)", "same top-1 as (a), higher cosine: the search wins"
    out = hybrid.export_choice(run, best, "notebook 20's list (20 images)", demo=False)
    assert out == run.hybrid / "model_hybrid.rknn" and out.read_bytes() == b"model_search.rknn"
    chosen = json.loads((run.hybrid / "chosen.json").read_text())
    assert chosen["file"] == "hybrid/model_hybrid.rknn" and chosen["demo"] is False, "relative to the run folder: relocatable"
    assert chosen["metric"] == "top1" and chosen["top1"] == 0.97 and chosen["float16_layers"] == 4
    # the one noise rule's verdicts, whole (Paired.to_dict), and the sentences quote exactly them
    assert Paired.from_dict(chosen["vs_int8"]) == judge.paired(_outs(_right(97)), _outs(_right(90)))
    assert Paired.from_dict(chosen["vs_fp32"]) == judge.paired(_outs(_right(97)))
    assert chosen["vs_int8"]["text"].startswith("+7.0 pt (95 % CI +") and chosen["vs_int8"]["text"].endswith(", better")
    int8 = _int8(judge, _right(90))
    text = text60.conclusion(pd.DataFrame(search), 40, int8, judge, 2.0, chosen, chosen["calibration"], False)
    assert f"Against plain INT8 it is {chosen['vs_int8']['text']}" in text and f"(vs FP32 {chosen['vs_fp32']['text']})" in text
    note = text60.export_note(chosen, 3, out.relative_to(run.root), int8, judge)
    assert f"vs INT8 {chosen['vs_int8']['text']}; vs FP32 {chosen['vs_fp32']['text']}" in note
    # a strategy whose file is missing is not a candidate; without the search, (a) beats (c) on top-1
    (run.hybrid / "model_search.rknn").unlink()
    assert hybrid.choose_export(hybrid.export_candidates(compare, search, root=run.root))["model"] == "hybrid (a) your list"


def test_demo_export_never_becomes_model_hybrid(tmp_path):
    from helpers.core.paths import Run

    run = Run.at(tmp_path / "run")
    (run.hybrid / "model_hybrid.rknn").write_bytes(b"an earlier real hybrid")
    (run.hybrid / "strategy_x.rknn").write_bytes(b"demo")
    choice = {"model": "hybrid (c) auto from ranking", "top1": 0.9, "mean_cosine": 0.99, "float16_layers": 3,
              "file": "hybrid/strategy_x.rknn"}
    out = hybrid.export_choice(run, choice, "demo: 1 image", demo=True)
    assert out.name == "model_hybrid_demo.rknn" and not (run.hybrid / "model_hybrid.rknn").exists()
    chosen = json.loads((run.hybrid / "chosen.json").read_text())
    assert chosen["demo"] is True and chosen["calibration"] == "demo: 1 image"


def _top1_judge(fp32_top1: float, images: int) -> ClassifyJudge:
    """A classifier's judge on `images` images whose FP32 top-1 is fp32_top1 (synthetic outputs, label 0 everywhere)."""
    right = round(fp32_top1 * images)
    outputs = [[np.array([[1.0, 0.0]] if k < right else [[0.0, 1.0]], np.float32)] for k in range(images)]
    return ClassifyJudge("classify", "top1", "top-1", "top1_agreement", [f"{k}.png" for k in range(images)],
                                 np.zeros((images, 1, 1, 3), np.uint8), outputs, labels=np.zeros(images, np.int64))


@dataclass
class _MapJudge(scoring.Judge):
    """A detector's judge with known numbers: mAP50-95 `fp32_map` for FP32, no one-image step."""

    fp32_map: float = 0.766

    def metric(self, outputs):
        return self.fp32_map, 0.97


def _map_judge(fp32_map: float = 0.766, images: int = 50) -> _MapJudge:
    return _MapJudge("detect", "map50_95", "mAP50-95", "map50", [f"{k}.png" for k in range(images)],
                     np.zeros((images, 1, 1, 3), np.uint8),
                     [[np.zeros((1, 2), np.float32)]] * images, fp32_map=fp32_map)


def _outs(correct) -> list:
    """A classifier's raw outputs on images labelled 0: right where correct is True."""
    return [[np.array([[1.0, 0.0]] if c else [[0.0, 1.0]], np.float32)] for c in correct]


def _right(first: int, images: int = 100) -> np.ndarray:
    return np.arange(images) < first


def _scored(judge, name: str, correct, int8_correct=None, **row) -> dict:
    """A comparison row scored by the one noise rule: the model minus FP32 and minus INT8 on the judge's images."""
    outs = _outs(correct)
    vs_int8 = judge.paired(outs, _outs(int8_correct)) if int8_correct is not None else None
    return {"model": name, "top1": float(np.mean(correct)), "mean_cosine": 0.99,
            **hybrid.paired_columns("vs_fp32", judge.paired(outs)), **hybrid.paired_columns("vs_int8", vs_int8), **row}


def _int8(judge, correct) -> hybrid.Variant:
    return hybrid.Variant("INT8", float(np.mean(correct)), 0.98, 0.9, 2048, 2,
                          vs_fp32=judge.paired(_outs(correct)).to_dict(), float16=["output0", "output0-rs"])


def test_paired_columns_round_trip_through_a_csv(tmp_path):
    import pandas as pd

    judge = _top1_judge(0.99, 100)
    row = _scored(judge, "hybrid (a) your list", _right(97), _right(90))
    pd.DataFrame([row, {"model": "FP32", **hybrid.paired_columns("vs_int8", None)}]).to_csv(tmp_path / "t.csv", index=False)
    back = pd.read_csv(tmp_path / "t.csv").fillna("").to_dict("records")
    p = hybrid.paired_of(back[0], "vs_int8")
    assert p == judge.paired(_outs(_right(97)), _outs(_right(90))) and back[0]["vs_int8"] == p.text
    assert p.verdict == "better" and back[0]["vs_int8_low_pt"] == pytest.approx(p.low_pt, abs=1e-3)
    assert hybrid.paired_of(back[1], "vs_int8") is None


def test_conclusion_when_int8_loses_measurably_reports_the_share_recovered():
    import pandas as pd

    judge = _top1_judge(0.99, 100)
    int8 = _int8(judge, _right(90))  # 9 images FP32 gets right and INT8 does not: a measurable loss
    loss = judge.paired(_outs(_right(90)))
    assert loss.verdict == "worse"
    search = pd.DataFrame([{"layers": 1, "top1": 0.95, "float16_layers": 3, "met_target": False},
                           {"layers": 2, "top1": 0.99, "float16_layers": 4, "met_target": True}])
    choice = _scored(judge, "hybrid search (4 of 40 layers in float16)", _right(99), _right(90))
    text = text60.conclusion(search, 40, int8, judge, 0.2, choice, "notebook 20's list (50 images)", False)
    assert text.startswith(f"Plain INT8's top-1 is 90.00% against FP32's 99.00%: {loss.text} (a measurable loss).")
    assert "The search needed 4 of 40 layers in float16" in text and "the error is local" in text
    vs_int8, vs_fp32 = hybrid.paired_of(choice, "vs_int8"), hybrid.paired_of(choice, "vs_fp32")
    assert f"(vs FP32 {vs_fp32.text})" in text and f"Against plain INT8 it is {vs_int8.text}" in text
    assert "it recovers +9.0 of INT8's 9.0 pt loss (100 %, at least half of it), a measurable gain." in text
    half = _scored(judge, "hybrid (c) auto from ranking", _right(93), _right(90))  # 3 of 9 points back, within noise
    text = text60.conclusion(search, 40, int8, judge, 0.2, half, "x", False)
    assert "(33 %, less than half of it)" in text and "not measurably different from INT8" in text
    assert "plain INT8 (faster) is the model to keep" in text
    spread = pd.DataFrame([{"layers": 32, "top1": 0.99, "float16_layers": 40, "met_target": True}])
    assert "all 40 of 40 layers in float16" in text60.conclusion(spread, 40, int8, judge, 0.2, None, "x", False)
    assert "not local" in text60.conclusion(spread, 40, int8, judge, 0.2, None, "x", False)


def test_conclusion_when_int8_loses_nothing_says_there_is_nothing_to_recover():
    import pandas as pd

    judge = _top1_judge(0.99, 100)
    int8 = _int8(judge, _right(98))  # one image: within noise
    empty = pd.DataFrame(columns=hybrid.search_columns("top1"))
    choice = _scored(judge, "hybrid (c) auto from ranking", _right(97), _right(98))
    text = text60.conclusion(empty, 112, int8, judge, 2.0, choice, "notebook 20's list (50 images)", False)
    assert "(not a measurable loss on these images). It is already within the 2 pt target: no float16 layer is needed." in text
    assert "recovers" not in text, "no measurable loss: no share of it to recover"
    assert "not measurably different from INT8" in text and "This is a demo" not in text
    flat = pd.DataFrame([{"layers": 1, "top1": 0.98, "float16_layers": 3, "met_target": False}])
    text = text60.conclusion(flat, 112, int8, judge, 0.2, None, "x", False)
    assert "with no measurable loss to repair, this search cannot tell whether the error is local" in text
    demo = text60.conclusion(flat, 112, int8, judge, 0.2, choice, "demo: 1 image", True)
    assert "This is a demo" in demo and "model to keep" not in demo
    assert text60.target_note(0.2, _top1_judge(0.9, 60)).splitlines()[0].endswith("so it means: equal to FP32")
    assert text60.target_note(5, _top1_judge(0.9, 60)).startswith("target: within 5 pt of FP32 (3.0 images of 60)")


def test_detector_sentences_name_map_and_carry_the_interval():
    """mAP's comparisons come from the paired bootstrap (here given as Paired values): the sentences quote them."""
    import pandas as pd

    judge = _map_judge(0.766, 50)
    loss = Paired(-6.6, -9.0, -4.2, "worse", "paired bootstrap over 50 images (50 resamples, normal interval)", 50)
    int8 = hybrid.Variant("INT8", 0.70, 0.99, 0.9, 2048, 0, vs_fp32=loss.to_dict())
    gain = Paired(6.5, 4.0, 9.0, "better", "paired bootstrap over 50 images", 50)
    near = Paired(-0.1, -1.5, 1.3, "within noise", "paired bootstrap over 50 images", 50)
    choice = {"model": "hybrid search (2 of 120 layers in float16)", "map50_95": 0.765, "mean_cosine": 0.99,
              **hybrid.paired_columns("vs_int8", gain), **hybrid.paired_columns("vs_fp32", near)}
    search = pd.DataFrame([{"layers": 1, "map50_95": 0.70, "met_target": False}, {"layers": 2, "map50_95": 0.765,
                                                                                  "met_target": True}])
    text = text60.conclusion(search, 120, int8, judge, 0.2, choice, "demo: 1 image", True)
    assert text.startswith("Plain INT8's mAP50-95 is 0.700 against FP32's 0.766: -6.6 pt (95 % CI -9.0 to -4.2), worse")
    assert "mAP50-95 0.765 vs 0.700 for INT8" in text and "+6.5 pt (95 % CI +4.0 to +9.0), better" in text
    assert "(98 %, at least half of it)" in text and "top-1" not in text
    note = text60.target_note(0.2, judge)
    assert note.startswith("target: mAP50-95 within 0.2 pt of FP32's 0.766 on 50 val images") and "interval" in note
    assert text60.target_note(0.2, judge, 0.765).endswith("plain INT8 (0.765) already meets it, so the search built no hybrid: "
                                                          "the plot shows INT8 alone")
    assert "already meets it" not in text60.target_note(0.2, judge, 0.76)


def test_float16_count_in_the_text_is_the_tables():
    """Issue 21: '(c) auto from ranking: 11 layer(s)' beside 15 float16 layers in the table. The text now quotes the
    table's count and says what it is made of: the chosen layers, INT8's own float16 layers, the toolkit's additions."""
    import re

    import pandas as pd

    table = pd.DataFrame([
        {"model": "FP32", "top1": 0.99, "float16_layers": 0, "layers": "", "float16_list": ""},
        {"model": "INT8", "top1": 0.98, "float16_layers": 2, "layers": "", "float16_list": "output0 output0-rs"},
        {"model": "hybrid (a) your list", "top1": float("nan"), "float16_layers": 0, "layers": "", "float16_list": ""},
        {"model": "hybrid (c) auto from ranking", "top1": 0.98, "float16_layers": 6, "layers": "a b c",
         "float16_list": "a b c split_1 output0 output0-rs"},
        {"model": "build(auto_hybrid=True)", "top1": 0.98, "float16_layers": 3, "layers": "x output0 output0-rs",
         "float16_list": "x output0 output0-rs"}])
    text = text60.float16_counts(table, 112)
    assert "This model has 112 layers; plain INT8 runs 2 of them in float16" in text
    line = next(x for x in text.splitlines() if "(c) auto" in x)
    assert line == ("- **hybrid (c) auto from ranking**: 6 of 112 layers in float16 = 3 chosen + 2 plain INT8 already keeps "
                    "in float16 + 1 the toolkit added (`split_1`).")
    for row in table.to_dict("records"):
        said = re.search(rf"\*\*{re.escape(row['model'])}\*\*: (\d+) of 112", text)
        if said:
            assert int(said[1]) == row["float16_layers"], row["model"]
    assert "(a) your list" not in text, "a strategy that built nothing has no count"
    assert hybrid.search_name(112, 112) == "hybrid search (all 112 of 112 layers in float16)"
    assert hybrid.search_name(18, 112) == "hybrid search (18 of 112 layers in float16)"


def test_plots_show_paired_intervals_and_say_the_axis_is_not_to_scale():
    """Issue 21 part 5: compare.png is a dot plot of each model minus INT8 with its interval whiskers (no axis cut to
    make one image look decisive), search.png says its doubling x axis is not to scale and names the layer total."""
    import pandas as pd

    judge = _top1_judge(0.99, 100)
    int8 = _int8(judge, _right(90))
    table = pd.DataFrame([{"model": "FP32", "top1": 0.99, "mean_cosine": 1.0, "float16_layers": 0,
                           **hybrid.paired_columns("vs_fp32", None), **hybrid.paired_columns("vs_int8", None)},
                          {**int8.row(judge)},
                          _scored(judge, "hybrid (c) auto from ranking", _right(97), _right(90), float16_layers=15)])
    fig = hybrid.plot_compare(table, judge)
    left, right = fig.axes[:2]
    assert "95 % interval" in left.get_ylabel() and right.get_yscale() == "log"
    bars = [c for c in left.containers if hasattr(c, "lines")]
    assert len(bars) == 3, "one whiskered dot per scored model (FP32 mirrored from INT8's loss, INT8 at 0, the hybrid)"
    search = pd.DataFrame([_scored(judge, "", _right(95), _right(90), layers=n, float16_layers=n + 2, layers_total=40,
                                   met_target=False) for n in (1, 2, 4, 40)])
    ax = hybrid.plot_search(search, int8, judge, 0.2).axes[0]
    assert "not to scale" in ax.get_xlabel() and "(of 40)" in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "4", "all 40"]
    assert len([c for c in ax.containers if hasattr(c, "lines")]) == 1


def test_rules_sentence_follows_the_numbers():
    """The tutorial's rule against the workbook's: the sentence names the winner only when the paired test does, and
    always says that (and why) the workbook departs from the tutorial."""
    import pandas as pd

    judge = _top1_judge(0.99, 100)
    int8 = _int8(judge, _right(90))

    def rules(tutorial: int, workbook: int) -> pd.DataFrame:
        t, w = _right(tutorial), _right(workbook)
        rows = [_scored(judge, hybrid.TUTORIAL_RULE, t, _right(90), chosen_layers=8,
                        **hybrid.paired_columns("vs_tutorial", None)),
                _scored(judge, hybrid.WORKBOOK_RULE, w, _right(90), chosen_layers=8,
                        **hybrid.paired_columns("vs_tutorial", judge.paired(_outs(w), _outs(t))))]
        return pd.DataFrame(rows)

    wins = text60.rules_note(rules(90, 99), int8, judge)
    assert "k = 8 layers each" in wins and "the workbook's rule recovers measurably more" in wins
    assert "The workbook departs from the tutorial on purpose" in wins and "inherited" in wins
    assert "numbers side with the tutorial" in text60.rules_note(rules(99, 90), int8, judge)
    tie = text60.rules_note(rules(94, 95), int8, judge)
    assert "within noise of each other" in tie and "measurably more" not in tie
    assert text60.rules_note(pd.DataFrame(columns=["model"]), int8, judge).startswith("auto_layers is 0")
    nothing = text60.rules_note(rules(98, 98), _int8(judge, _right(98)), judge)
    assert "this run cannot tell the rules apart" in nothing and "measurably more" not in nothing


def test_detector_tables_and_choice_use_map(tmp_path):
    """compare/search rows with map50_95: the same rule picks the best mAP, and chosen.json names its metric."""
    from helpers.core.paths import Run

    run = Run.at(tmp_path / "run")
    for f in ("strategy_a.rknn", "model_search.rknn"):
        (run.hybrid / f).write_bytes(f.encode())
    compare = [{"model": "FP32", "map50_95": 0.77, "mean_cosine": 1.0, "float16_layers": 0, "file": ""},
               {"model": "INT8", "map50_95": 0.76, "mean_cosine": 0.99, "float16_layers": 0, "file": "hybrid/model_int8.rknn"},
               {"model": "hybrid (a) your list", "map50_95": 0.755, "mean_cosine": 0.995, "float16_layers": 3,
                "file": "hybrid/strategy_a.rknn"}]
    search = [{"layers": 1, "map50_95": 0.762, "mean_cosine": 0.992, "met_target": True}]
    # the toolkit's auto_hybrid competes when it kept a tensor in float16 that INT8 does not; with none it is INT8
    (run.hybrid / "model_auto_hybrid.rknn").write_bytes(b"auto")
    auto = {"model": "build(auto_hybrid=True)", "map50_95": 0.761, "mean_cosine": 0.99, "float16_layers": 0,
            "file": "hybrid/model_auto_hybrid.rknn"}
    assert [c["model"] for c in hybrid.export_candidates([*compare, auto], search, root=run.root)][:1] == ["hybrid (a) your list"]
    compare.append({**auto, "float16_layers": 2})
    cands = hybrid.export_candidates(compare, search, root=run.root)
    assert [c["model"] for c in cands] == ["hybrid (a) your list", "build(auto_hybrid=True)",
                                           "hybrid search (1 layers)"]  # a search.csv without float16 counts: the old name
    assert {c["metric"] for c in cands} == {"map50_95"}
    best = hybrid.choose_export(cands)
    assert best["model"] == "hybrid search (1 layers)", "higher mAP wins before the higher cosine"
    hybrid.export_choice(run, best, "notebook 20's list (50 images)", demo=False)
    chosen = json.loads((run.hybrid / "chosen.json").read_text())
    assert chosen["metric"] == "map50_95" and chosen["map50_95"] == 0.762 and "top1" not in chosen
    variant = hybrid.Variant("INT8", 0.76, 0.99, 0.98, 2048, 0)
    paired = [f"{p}{c}" for p in ("vs_fp32", "vs_int8") for c in ("", "_pt", "_low_pt", "_high_pt", "_verdict", "_paired")]
    assert list(variant.row(_map_judge(0.77))) == ["model", "map50_95", "map50_95_delta_pt", "mean_cosine", "min_cosine",
                                                   "size_kb", "float16_layers", "note", "file", "layers", "float16_list",
                                                   *paired]
    assert variant.row(_map_judge(0.77))["map50_95_delta_pt"] == -1.0


def test_a_w4a16_run_is_named_by_its_dtype_and_skips_the_refused_proposal(tmp_path):
    """One name per dtype (w8a8 -> INT8, w4a16 -> w4a16, ...) in every sentence a user reads; the toolkit's proposal is
    skipped with one sentence for a dtype it refuses; a w4a16 build log (no 'Meet hybrid type' lines) counts the
    layers chosen, so a hybrid never reads as '0 layers in float16'."""
    import pandas as pd

    from helpers.toolkit.options import proposal_refusal, quantized_name

    names = {d: quantized_name(d) for d in ("w8a8", "w4a16", "w8a16", "w16a16i_dfp", "w16a16i", None)}
    assert names == {"w8a8": "INT8", "w4a16": "w4a16", "w8a16": "w8a16", "w16a16i_dfp": "INT16", "w16a16i": "INT16",
                     None: "INT8"}
    assert proposal_refusal("w8a8") == "" and "quantized_dtype='w4a16'" in proposal_refusal("w4a16")
    judge = _top1_judge(0.99, 100)
    int8 = _int8(judge, _right(80))
    search = pd.DataFrame([{"layers": 2, "top1": 0.99, "float16_layers": 4, "met_target": True}])
    choice = _scored(judge, "hybrid search (4 of 40 layers in float16)", _right(99), _right(80))
    text = text60.conclusion(search, 40, int8, judge, 0.2, choice, "notebook 20's list (50 images)", False, quant="w4a16")
    assert "Plain w4a16's top-1" in text and "of w4a16's 19.0 pt loss" in text and "INT8" not in text
    log = tmp_path / "w4a16.log"
    log.write_text("I rknn building ...\nW RKNN: Tensor x need parameter qtype, type is set to float16 by default!\n")
    assert hybrid.float16_tensors(log, ["a", "b", "c"], chosen=["b", "a", "z"]) == ["b", "a"]
    log.write_text("Meet hybrid type, dtype: float16, tensor: c\n")
    assert hybrid.float16_tensors(log, ["a", "b", "c"], chosen=["b", "a"]) == ["c"], "a log that reports them wins"


def test_a_loss_one_layer_removes_is_called_local_even_when_the_strict_target_needs_more():
    """The sample's case: the first convolution in float16 brings w4a16 within noise of FP32, the 0.2 pt target needs 64
    layers. The conclusion judges locality where the noise rule can no longer tell the hybrid from FP32."""
    import pandas as pd

    judge = _top1_judge(0.99, 100)
    int8 = _int8(judge, _right(80))
    near = Paired(-1.0, -3.0, 0.5, "within noise", "exact McNemar", 100)
    far = Paired(-10.0, -14.0, -6.0, "worse", "exact McNemar", 100)
    rows = [{"layers": 1, "top1": 0.98, "float16_layers": 1, "met_target": False, **hybrid.paired_columns("vs_fp32", near)},
            {"layers": 64, "top1": 0.99, "float16_layers": 64, "met_target": True, **hybrid.paired_columns("vs_fp32", near)}]
    text = text60.conclusion(pd.DataFrame(rows), 110, int8, judge, 0.2, None, "x", False, quant="w4a16")
    assert ("The search needed 64 of 110 layers in float16 to come within 0.2 pt of FP32, but already 1 of 110 layer(s) in "
            f"float16 bring it within noise of FP32 ({near.text}), so the error is local") in text
    rows[0].update(hybrid.paired_columns("vs_fp32", far))  # one layer is not enough: judged by the target, as before
    assert "The search needed 64 of 110 layers in float16" in text60.conclusion(pd.DataFrame(rows), 110, int8, judge, 0.2,
                                                                                 None, "x", False)


def test_the_cheapest_hybrid_within_noise_of_fp32_is_exported():
    """Of the hybrids the one noise rule cannot tell from FP32, the one with the fewest float16 layers is exported (each
    layer costs NPU time, and the better top-1 of a bigger one is not measurable on these images); when every hybrid is
    measurably worse than FP32, the best top-1 wins."""
    judge = _top1_judge(0.99, 100)
    big = _scored(judge, "hybrid (c) auto from ranking", _right(98), float16_layers=15, file="c.rknn", metric="top1")
    small = _scored(judge, "hybrid search (1 of 110 layers in float16)", _right(97), float16_layers=1, file="s.rknn",
                    metric="top1")
    assert hybrid.paired_of(small, "vs_fp32").verdict == "within noise"
    assert hybrid.choose_export([big, small])["model"] == "hybrid search (1 of 110 layers in float16)"
    worse_big = _scored(judge, "big", _right(90), float16_layers=15, metric="top1")
    worse_small = _scored(judge, "small", _right(80), float16_layers=1, metric="top1")
    assert hybrid.choose_export([worse_small, worse_big])["model"] == "big"
