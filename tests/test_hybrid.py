"""helpers.hybrid on .quantization.cfg / .model / .data files the real toolkit writes in the test."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from helpers import analysis, data, hybrid
from helpers.errors import WorkbookError
from helpers.evaluate import cosine_rows
from helpers.rknn import toolkit
from quality_support import CONFIG, SIZE, onnx_scores, outlier_onnx


@pytest.fixture(scope="module")
def made(tiny_images, tmp_path_factory):
    """Step 1 (with the toolkit's proposal) of the outlier model, run in its own folder."""
    root = tmp_path_factory.mktemp("hybrid")
    onnx = outlier_onnx(root)
    dataset = data.write_calibration_list(tiny_images, root / "calib.txt")
    folder = root / "step1"
    with toolkit(folder / "step1.log", workdir=folder) as rk:
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
    with toolkit(folder / "step1.log", workdir=folder) as rk:
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
    assert text.startswith("custom_quantize_layers:\n    /1/Relu_output_0: float16\n    /2/Conv_output_0: float16\nquantize_parameters:")
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
    files.cfg.write_text(text.replace("custom_quantize_layers: {}", "custom_quantize_layers: {}\n    /1/Relu_output_0: float16", 1))
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
    with pytest.raises(WorkbookError, match=r"^Layer '/1/Relu_output_0' has dtype 'fp16', which the cfg does not accept; write 'float16' instead\.$"):
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
    with toolkit(tmp_path / "s2.log") as rk:
        with pytest.raises(WorkbookError, match=r"^Hybrid step 2 needs .*outlier.data, which does not exist; run hybrid step 1"):
            hybrid.step2(rk, files, files.cfg)


def test_hybrid_from_the_ranking_repairs_the_output(made, tiny_images, tmp_path):
    """INT8 vs float16 for the ranked layers (with their inputs): output cosine vs FP32 goes up."""
    files = made["files"]
    pixels = np.stack([data.read_rgb(p, SIZE) for p in tiny_images])
    fp32 = onnx_scores(made["onnx"], pixels)
    with toolkit(tmp_path / "int8.log") as rk:
        rk.config(**CONFIG)
        rk.load_onnx(str(made["onnx"]))
        rk.build(do_quantization=True, dataset=str(made["dataset"]))
        before = analysis.combine([analysis.parse_error_analysis(p) for p in
                                   analysis.run_accuracy_analysis(rk, tiny_images[:1], tmp_path / "before", progress=False)])
        int8 = hybrid.ToolkitBackend(rk, "INT8").run(pixels)
    order = [n for n in analysis.rank_layers(before)["name"]]
    fused = before.loc[before["fused"], "name"]
    chosen = hybrid.with_inputs(order[:1], hybrid.layer_graph(files), hybrid.activation_tensors(files), fused)
    # the worst layer with its fused conv, and the crushed tensor they read with its own fused conv
    assert chosen == ["/0/Conv_output_0", "/1/Relu_output_0", "/2/Conv_output_0", "/3/Relu_output_0"] and order[0] == chosen[-1]
    log = tmp_path / "step2.log"
    with hybrid.built(files, chosen, tmp_path / "edited.cfg", log) as rk:
        after = analysis.parse_error_analysis(analysis.run_accuracy_analysis(rk, tiny_images[:1], tmp_path / "after", progress=False)[0])
        rk.export_rknn(str(tmp_path / "hybrid.rknn"))
        mixed = hybrid.ToolkitBackend(rk, "hybrid").run(pixels)
    assert (tmp_path / "hybrid.rknn").stat().st_size > 0
    assert set(chosen) <= set(hybrid.float16_tensors(log))
    c_int8, c_mixed = cosine_rows(fp32, int8).mean(), cosine_rows(fp32, mixed).mean()
    assert c_mixed > c_int8 and c_mixed > 0.999, (c_int8, c_mixed)
    worst = after.set_index("name").loc[order[0], "single_cos"]
    assert worst > before.set_index("name").loc[order[0], "single_cos"]


def test_search_stops_at_target_and_respects_budget():
    calls = []

    def score(names):
        calls.append(len(names))
        return (0.90 + 0.01 * len(names), 0.99)

    points, hit = hybrid.accuracy_search([f"t{i}" for i in range(20)], score, fp32_top1=0.95, target_pt=0.2, budget=16)
    assert calls == [1, 2, 4, 8] and hit is points[-1] and hit.layers == 8  # 0.98 is the first within 0.2 pt of 0.95 or above
    points, hit = hybrid.accuracy_search([f"t{i}" for i in range(20)], lambda n: (0.5, 0.9), fp32_top1=0.95, budget=5)
    assert hit is None and [p.layers for p in points] == [1, 2, 4, 5]
    calls.clear()  # plain INT8 already within the target: nothing to search
    assert hybrid.accuracy_search(["a", "b"], score, fp32_top1=0.95, target_pt=0.2, budget=4, int8_top1=0.949) == ([], None)
    assert calls == []
    with pytest.raises(WorkbookError, match="search_budget=0 allows no layer"):
        hybrid.accuracy_search(["a"], score, 0.9, budget=0)


def test_layer_picker_offers_the_cfg_names_and_refuses_unknown_ones(made):
    names = hybrid.activation_tensors(made["files"])
    picker = hybrid.layer_picker(names, ["/1/Relu_output_0"])
    assert tuple(picker.value) == ("/1/Relu_output_0",) and list(picker.options) == names
    with pytest.raises(WorkbookError, match=r"^user_layers names '/1/relu_output_0', which is not a layer of this model \(did you mean '/1/Relu_output_0'\?\)"):
        hybrid.layer_picker(names, ["/1/relu_output_0"])
