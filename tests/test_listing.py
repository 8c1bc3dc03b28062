"""The copyable toolkit listings render this run's values as valid Python."""
from __future__ import annotations

import ast
from pathlib import Path

from helpers import listing
from helpers.toolkit.options import ConvertConfig
from helpers.toolkit.record import ConvertRecord


def test_call_renders_values_and_wraps_long_lines():
    line = listing.call("rknn.inference", inputs=[listing.Expr("img")], data_format="nhwc", assign="outputs")
    assert line == "outputs = rknn.inference(inputs=[img], data_format='nhwc')"
    long = listing.call("rknn.accuracy_analysis", inputs=[Path("/data/val/3/img_0001.png")],
                        output_dir=Path("/run/analysis/snapshot/00"),
                        target=None, extra=[255.0] * 12)
    assert long.splitlines()[0] == "rknn.accuracy_analysis(" and "    target=None," in long
    ast.parse(long)
    assert listing.literal(255.0) == "255" and listing.literal(0.5) == "0.5"


def test_convert_calls_follow_the_record(tmp_path):
    cfg = ConvertConfig(mean_values=[0, 0, 0], std_values=[255, 255, 255], target_platform="rk3566", quantized_algorithm="mmse")
    rec = ConvertRecord(source=tmp_path / "model.torchscript", load_path="pytorch", input_size=32, dataset=tmp_path / "calib.txt",
                        config=cfg, rknn_path=tmp_path / "m.rknn", seconds=1.0, source_bytes=1, rknn_bytes=1, dtype_notes=[],
                        toolkit_version="2.5.0")
    src = listing.code(listing.convert_calls(rec, dataset=tmp_path / "demo.txt", quantized_method="layer"))
    ast.parse(src)
    assert "target_platform='rk3566'" in src and "quantized_algorithm='mmse'" in src and "quantized_method='layer'" in src
    assert "rknn.load_pytorch(" in src and f"model='{tmp_path / 'model.torchscript'}'" in src
    assert "input_size_list=[[1, 3, 32, 32]]" in src
    assert f"dataset='{tmp_path / 'demo.txt'}'" in src
    md = listing.markdown(src, "In your own script:")
    assert md.startswith("In your own script:\n\n```python\nfrom rknn.api import RKNN") and md.endswith("```")


def test_config_listing_shows_the_lessons_options_and_only_changed_others(tmp_path):
    cfg = ConvertConfig(mean_values=[0, 0, 0], std_values=[255, 255, 255], compress_weight=True)
    rec = ConvertRecord(source=tmp_path / "m.onnx", load_path="onnx", input_size=32, dataset=None, config=cfg,
                        rknn_path=tmp_path / "m.rknn",
                        seconds=1.0, source_bytes=1, rknn_bytes=1, dtype_notes=[], toolkit_version="2.5.0")
    src = listing.code(listing.convert_calls(rec))
    assert "quantized_algorithm='normal'" in src and "compress_weight=True" in src
    assert "optimization_level" not in src and "every other option at the toolkit's default" in src
    html_block = listing.html_block(src, "Your script:")
    assert html_block.startswith("<p>Your script:</p><div") and "rknn" in html_block
