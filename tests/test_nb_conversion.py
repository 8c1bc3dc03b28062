"""Artifacts of notebooks 10 export, 20 convert and 30 simulator inference, run by papermill with
tests/small_params.yaml (via the `series` fixture)."""
from __future__ import annotations

import html
import json
import re
from collections import Counter

import numpy as np
import pytest
import torch

from helpers.core.paths import REPO
from helpers.runner import execute, render
from helpers.tasks.noise import Paired
from helpers.toolkit.options import ConvertConfig
from helpers.widgets import tooltips

pytestmark = pytest.mark.slow


def test_export_writes_checked_torchscript_and_onnx(series):
    root = series.ran("10_export")
    model = root / "model"
    check = json.loads((model / "export_check.json").read_text())
    assert check["kind"] == "ultralytics" and check["imgsz"] == 32
    assert check["opset"] <= 19 and check["io"]["opset"] == check["opset"]
    assert check["io"]["inputs"][0]["shape"] == [1, 3, 32, 32] and check["io"]["outputs"][0]["shape"] == [1, 10]
    assert check["check"]["images"] == series.config["10_export"]["check_images"]
    assert check["check"]["top1_agreement"] == 1.0 and check["check"]["min_cosine"] > 0.9999
    side = json.loads((model / "model.torchscript.json").read_text())
    assert side["torch_version"] == torch.__version__.split("+")[0] and side["input_size_list"] == [[1, 3, 32, 32]]
    assert (model / "model.torchscript").stat().st_size > 1e6 and (model / "model.pt").exists()
    assert sum(check["op_counts"].values()) > 50 and "Conv" in check["op_counts"]
    assert not (model / ".export_tmp").exists()
    # training and exporter chatter goes to log files, not into the notebook
    executed = (root / "executed" / "10_export.ipynb").read_text()
    assert "Starting training" not in executed and "export success" not in executed
    assert "export success" in (root / "logs" / "export.log").read_text()


def test_convert_writes_rknn_record_and_calibration(series):
    root = series.ran("20_convert")
    rknn = root / "rknn"
    assert (rknn / "model.rknn").read_bytes()[:4] == b"RKNN"
    lines = (rknn / "calibration.txt").read_text().split()
    assert len(lines) == series.config["20_convert"]["calib_images"]
    assert all(line.startswith("/") and "/train/" in line for line in lines), "absolute paths from the train split"
    per_class = Counter(line.split("/")[-2] for line in lines)
    assert len(per_class) == 10 and set(per_class.values()) == {len(lines) // 10}, "drawn stratified: every digit equally"
    shown = (root / "executed" / "20_convert.ipynb").read_text()
    assert lines[0] in shown and "Format of the calibration file" in shown, "20 shows the file and its rule"
    assert f"{len(lines)} calibration images, drawn stratified" in shown
    rec = json.loads((rknn / "convert.json").read_text())
    params = json.loads((root / "params.json").read_text())["20_convert"]
    for key in ("target_platform", "quantized_dtype", "quantized_algorithm", "quantized_method", "mean_values", "std_values"):
        assert rec["config"][key] == params[key]
    assert rec["load_path"] == "onnx" and rec["input_size"] == 32 and rec["toolkit_version"] == "2.5.0"
    assert rec["rknn_bytes"] < rec["source_bytes"], "INT8 weights are smaller than the FP32 ONNX"
    assert any("int8" in note for note in rec["dtype_notes"])
    assert "rknn building" in (rknn / "build.log").read_text()
    assert rec["source"] == "model/model.onnx" and rec["rknn_path"] == "rknn/model.rknn", "relative inside the run folder"
    assert rec["auto_disabled_rules"] == [] and rec["config"]["disable_rules"] == []


def test_convert_shows_the_preflight_of_its_own_build(series):
    """Notebook 20's pre-flight, from this build's rknn/build.log: the CPU fallback (or that there is none), the memory
    against the chip, and no time (no chip's estimate proved useful); rknn/preflight.json keeps it for the index."""
    root = series.ran("20_convert")
    facts = json.loads((root / "rknn" / "preflight.json").read_text())
    params = json.loads((root / "params.json").read_text())["20_convert"]
    assert facts["profile"] is True and facts["chip"] == params["target_platform"] and facts["model_mb"] > 0
    assert (root / "rknn" / "profile.csv").stat().st_size > 0
    executed = (root / "executed" / "20_convert.ipynb").read_text()
    assert "run on the CPU" in executed or "No op runs on the CPU" in executed
    assert "of internal (activation) memory" in executed
    assert f"No time estimate for {params['target_platform'].upper()}" in executed


def test_convert_report_shows_the_raw_calls_theory_first_and_full_meanings(series):
    """The rendered page of 20: the copyable toolkit script with this run's values, quantization theory before
    the options table, every option's meaning in full, the two board terms defined."""
    root = series.ran("20_convert")
    _, page = render.render_notebook(root / "executed" / "20_convert.ipynb", root / "report")
    plain = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
    params = json.loads((root / "params.json").read_text())["20_convert"]
    compact = re.sub(r"\(\s+", "(", re.sub(r",\s+", ", ", plain)).replace(", )", ")")  # long calls are split one argument a line
    for call in ("rknn = RKNN(verbose=False)", f"target_platform='{params['target_platform']}'",
                 f"rknn.load_onnx(model='{root / 'model' / 'model.onnx'}')",
                 f"rknn.build(do_quantization=True, dataset='{root / 'rknn' / 'calibration.txt'}')",
                 f"rknn.export_rknn('{root / 'rknn' / 'model.rknn'}')", "rknn.release()"):
        assert call in compact, call
    assert plain.index("Linear quantization in one tensor") < plain.index("The options")
    for name, meaning in tooltips("20_convert").items():
        if name in ("load_path", "calib_images", "auto_disable_rules") or name in ConvertConfig.__dataclass_fields__:
            table = plain[plain.index("The options"):]  # the parameters cell above shows the same comment
            assert meaning in table, f"meaning of {name} shown in full"
    assert "C runtime API" in plain and "pass-through" in plain
    cells = json.loads((REPO / "notebooks" / "20_convert.ipynb").read_text())["cells"]
    code_cells = [c for c in cells if c["cell_type"] == "code"]
    calls = ["RKNN(", ".config(", ".load_onnx(", ".build(", ".export_rknn(", ".release()"]
    for call in calls:
        assert sum(call in "".join(c["source"]) for c in code_cells) >= 1, f"{call} shown in a cell of its own"
    assert all(len("".join(c["source"]).splitlines()) <= 20 for c in code_cells if "parameters" not in c["metadata"].get("tags",
        []))


def test_simulator_evaluation_metrics(series):
    root = series.ran("30_simulator_inference")
    ev = root / "eval"
    m = json.loads((ev / "metrics.json").read_text())
    fp32, int8, bgr = m["backends"]
    n = series.config["30_simulator_inference"]["val_images"]
    assert fp32["images"] == int8["images"] == m["images"] == n
    assert fp32["top1"] >= 0.9, "the sample model is accurate"
    # the lessons, judged by the workbook's one noise rule (a paired test on the same images): INT8 is not measurably
    # worse than FP32 and agrees with it image by image; the discarded cvtColor costs accuracy beyond the noise
    paired = Paired.from_dict(m["comparison"]["paired"])
    assert paired.verdict != "worse" and paired.images == n, "INT8 stays within noise of FP32 (or better)"
    assert paired.low_pt <= 100 * (int8["top1"] - fp32["top1"]) <= paired.high_pt
    assert m["comparison"]["top1_agreement"] >= 0.95 and m["comparison"]["mean_cosine"] > 0.99
    assert Paired.from_dict(m["bgr_paired"]).verdict == "worse", "the discarded cvtColor costs accuracy, as the notebook shows"
    # the verdict sentence (metrics.json and the notebook's text) quotes metrics.json's paired interval word for word
    assert m["verdict"].startswith(f"INT8 RKNN simulator: top-1 {100 * int8['top1']:.2f}% vs FP32 ONNX Runtime "
                                   f"{100 * fp32['top1']:.2f}%: {m['comparison']['paired']['text']}; ")
    assert paired.text == m["comparison"]["paired"]["text"] and "95 % CI" in paired.text
    executed = json.loads((root / "executed" / "30_simulator_inference.ipynb").read_text())
    shown = "".join("".join(o.get("data", {}).get("text/markdown", "")) + "".join(o.get("text", ""))
                    for c in executed["cells"] for o in c.get("outputs", []))
    assert m["verdict"] in shown
    z = np.load(ev / "predictions.npz")
    assert z["scores_0"].shape == z["scores_1"].shape == (n, 10) and len(z["labels"]) == n
    assert np.isclose((z["scores_1"].argmax(1) == z["labels"]).mean(), int8["top1"])
    assert (ev / "confusion.png").stat().st_size > 5000 and (ev / "cosine_hist.png").stat().st_size > 5000


def test_tutorial_case_480_px_runs_10_to_30_with_parameters_only(series, tmp_path):
    """Issue 9: the sample YOLO11n-cls exported at 480 px for rk3588 (params/tutorial_480.yaml). rknn-toolkit2
    2.5.0's build fails in a graph rule; notebook 20 switches it off after the toolkit's hint, records it, and
    notebook 30 rebuilds the simulator model with the same rule."""
    sample = series.ran("10_export")
    config = execute.load_params_file(REPO / "params" / "tutorial_480.yaml")
    config["common"]["model"] = str(sample / "model" / "model.pt")
    config["10_export"] = {"check_images": 4}
    config["20_convert"]["calib_images"] = 4
    config["30_simulator_inference"] = {"batch": 4, "val_images": 8}
    run = tmp_path / "tutorial_480"
    for name in ("10_export", "20_convert", "30_simulator_inference"):
        nb = REPO / "notebooks" / f"{name}.ipynb"
        execute.execute(nb, run, execute.params_for(nb, config))
    rec = json.loads((run / "rknn" / "convert.json").read_text())
    rule = "fuse_exmatmul_add_mul_exsoftmax13_exmatmul_to_sdpa"
    assert rec["imgsz"] == 480 and rec["config"]["target_platform"] == "rk3588"
    assert rec["config"]["disable_rules"] == [rule] and rec["auto_disabled_rules"][0]["rule"] == rule
    assert "IndexError" in rec["auto_disabled_rules"][0]["reason"]
    page = (run / "executed" / "20_convert.ipynb").read_text()
    assert "Graph rules switched off automatically" in page and f"disable_rules=['{rule}']" in page
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["images"] == 8 and metrics["comparison"]["mean_cosine"] > 0.9, "the simulator runs the 480-px model"
