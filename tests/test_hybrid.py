"""helpers.steps.hybrid on .quantization.cfg / .model / .data files the real toolkit writes in the test."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import yaml
from quality_support import CONFIG, SIZE, onnx_scores, outlier_onnx

from helpers.backends.simulator import BuiltSimulator
from helpers.core.errors import WorkbookError
from helpers.steps import analysis, hybrid
from helpers.tasks import data, scoring
from helpers.tasks.classify.judge import ClassifyJudge
from helpers.tasks.classify.metric import scores_of
from helpers.tasks.measures import cosine
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
    search = [{"layers": 1, "top1": 0.93, "mean_cosine": 0.99, "met_target": False},
              {"layers": 2, "top1": 0.97, "mean_cosine": 0.991, "met_target": True}]
    cands = hybrid.export_candidates(compare, search, root=run.root)
    assert [c["model"] for c in cands] == ["hybrid (a) your list", "hybrid (c) auto from ranking", "hybrid search (2 layers)"]
    best = hybrid.choose_export(cands)
    assert best["model"] == "hybrid search (2 layers)", "same top-1 as (a), higher output cosine: the search's model wins"
    out = hybrid.export_choice(run, best, "notebook 20's list (20 images)", demo=False)
    assert out == run.hybrid / "model_hybrid.rknn" and out.read_bytes() == b"model_search.rknn"
    chosen = json.loads((run.hybrid / "chosen.json").read_text())
    assert chosen["file"] == "hybrid/model_hybrid.rknn" and chosen["demo"] is False, "relative to the run folder: relocatable"
    assert chosen["metric"] == "top1" and chosen["top1"] == 0.97
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
    """A detector's judge with known numbers: mAP50-95 `fp32_map` for FP32, no one-image step, noise `noise`."""

    fp32_map: float = 0.766
    noise: float = 1.2

    def metric(self, outputs):
        return self.fp32_map, 0.97

    def noise_pt(self) -> float:
        return self.noise


def _map_judge(fp32_map: float = 0.766, images: int = 50, noise: float = 1.2) -> _MapJudge:
    return _MapJudge("detect", "map50_95", "mAP50-95", "map50", [f"{k}.png" for k in range(images)],
                     np.zeros((images, 1, 1, 3), np.uint8),
                     [[np.zeros((1, 2), np.float32)]] * images, fp32_map=fp32_map, noise=noise)


def test_conclusions_are_computed_from_the_numbers():
    import pandas as pd

    judge = _top1_judge(0.99, 100)
    assert judge.fp32.value == pytest.approx(0.99) and judge.step_pt() == pytest.approx(1.0)
    search = pd.DataFrame([{"layers": 1, "top1": 0.95, "met_target": False}, {"layers": 2, "top1": 0.99, "met_target": True}])
    text = text60.conclusion(search, 40, 0.90, judge, 0.2, {"model": "hybrid search (2 layers)", "top1": 0.99}, "demo: 1 image",
                             True)
    assert text.startswith("Plain INT8's top-1 is 9.00 pt below FP32 (9 of 100 images; 1 image = 1.00 pt).")
    assert "The search needed 2 of 40 layers in float16" in text and "the error is local" in text
    assert "top-1 99.00% vs 90.00% for INT8 with the same calibration (demo: 1 image) and 99.00% for FP32." in text
    assert ("It is 9.00 pt above INT8 (9 of 100 images; 1 image = 1.00 pt), so the exported hybrid's top-1 is not below "
            "INT8's.") in text
    assert "This is a demo" in text
    spread = pd.DataFrame([{"layers": 32, "top1": 0.99, "met_target": True}])
    assert "not local" in text60.conclusion(spread, 40, 0.90, judge, 0.2, None, "x", False)
    worse = text60.conclusion(spread, 40, 0.90, judge, 0.2, {"model": "hybrid (a) your list", "top1": 0.89}, "x", False)
    assert "It is 1.00 pt below INT8 (1 of 100 images; 1 image = 1.00 pt), so no hybrid reached INT8's top-1 here" in worse
    assert text60.target_note(0.2, _top1_judge(0.9, 60)).endswith("so it means: equal to FP32")
    assert text60.target_note(5, _top1_judge(0.9, 60)).startswith("target: within 5 pt of FP32 (3.0 images of 60)")


def test_detector_sentences_name_map_and_its_noise():
    """mAP has no one-image step: differences are read against the noise of the images, in mAP points."""
    import pandas as pd

    judge = _map_judge(0.766, 50, 1.2)
    empty = pd.DataFrame(columns=["layers", "map50_95", "mean_cosine", "met_target", "layers_list"])
    text = text60.conclusion(empty, 120, 0.764, judge, 0.5, None, "notebook 20's list (50 images)", False)
    assert text == ("Plain INT8's mAP50-95 is 0.20 pt below FP32, within the noise of 50 val images (about ±1.2 pt), already "
                    "within the 0.5 pt "
                    "target: no float16 layer is needed. No hybrid was exported.")
    search = pd.DataFrame([{"layers": 1, "map50_95": 0.70, "met_target": False}, {"layers": 2, "map50_95": 0.765,
                                                                                  "met_target": True}])
    text = text60.conclusion(search, 120, 0.70, judge, 0.2, {"model": "hybrid search (2 layers)", "map50_95": 0.765},
                             "demo: 1 image", True)
    assert text.startswith("Plain INT8's mAP50-95 is 6.60 pt below FP32, beyond the noise of 50 val images (about ±1.2 pt).")
    assert "mAP50-95 0.765 vs 0.700 for INT8" in text and "not below INT8's" in text
    worse = text60.conclusion(search, 120, 0.766, judge, 0.2, {"model": "hybrid search (2 layers)", "map50_95": 0.765}, "x",
                              False)
    assert ("It is 0.10 pt below INT8, within the noise of 50 val images (about ±1.2 pt), so no hybrid reached INT8's "
            "mAP50-95 here") in worse
    close = pd.DataFrame([{"layers": 1, "map50_95": 0.764, "met_target": True}])
    text = text60.conclusion(close, 120, 0.760, judge, 0.2, None, "x", False)
    assert ("The search needed 1 of 120 layers in float16 to come within 0.2 pt of FP32, so the error is local: a few "
            "layers carry it (with INT8's own loss inside") in text
    flat = pd.DataFrame([{"layers": 1, "map50_95": 0.760, "met_target": False}, {"layers": 2, "map50_95": 0.7617,
                                                                                 "met_target": False}])
    text = text60.conclusion(flat, 120, 0.7623, judge, 0.2, {"model": "hybrid (c) auto from ranking", "map50_95": 0.7617}, "x",
                             False)
    assert text.startswith("Plain INT8's mAP50-95 is 0.37 pt below FP32, within the noise of 50 val images (about ±1.2 pt). "
                           "None of the "
                           "search's 2 hybrids (up to 2 of 120 layers in float16) came within 0.2 pt of FP32 either; they score "
                           "0.760 to 0.762")
    assert "cannot tell whether the error is local" in text and "not local" not in text
    assert "It is 0.06 pt below INT8, within the noise" in text and "plain INT8 is the model to keep" in text
    note = text60.target_note(0.2, judge)
    assert note.startswith("target: mAP50-95 within 0.2 pt of FP32's 0.766; the noise of 50 val images is about ±1.2 pt")
    assert "images" not in text60.target_note(0.2, judge).split(";")[0]  # no one-image step for mAP
    assert text60.target_note(0.2, judge, 0.765).endswith("plain INT8 (0.765) already meets it, so the search built no hybrid: "
                                                          "the plot shows INT8 alone")
    assert "already meets it" not in text60.target_note(0.2, judge, 0.76)


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
    assert [c["model"] for c in cands] == ["hybrid (a) your list", "build(auto_hybrid=True)", "hybrid search (1 layers)"]
    assert {c["metric"] for c in cands} == {"map50_95"}
    best = hybrid.choose_export(cands)
    assert best["model"] == "hybrid search (1 layers)", "higher mAP wins before the higher cosine"
    hybrid.export_choice(run, best, "notebook 20's list (50 images)", demo=False)
    chosen = json.loads((run.hybrid / "chosen.json").read_text())
    assert chosen["metric"] == "map50_95" and chosen["map50_95"] == 0.762 and "top1" not in chosen
    variant = hybrid.Variant("INT8", 0.76, 0.99, 0.98, 2048, 0)
    assert list(variant.row(_map_judge(0.77))) == ["model", "map50_95", "map50_95_delta_pt", "mean_cosine", "min_cosine",
                                                   "size_kb",
                                                   "float16_layers", "note", "file", "layers"]
    assert variant.row(_map_judge(0.77))["map50_95_delta_pt"] == -1.0
