"""helpers.steps.shapes and helpers.text.shapes with the real toolkit: a model converted with dynamic_input of two sizes
(from an ONNX exported at one fixed size, as notebook 10 exports) or with rknn_batch_size 2 is scored at EVERY declared
shape against ONNX Runtime at that same shape, and its pre-flight says what the toolkit profiled for each shape."""
from __future__ import annotations

import shutil

import pytest

from helpers.core.errors import WorkbookError
from helpers.core.paths import Run
from helpers.steps import convert, shapes
from helpers.tasks.data import load_split, write_calibration_list
from helpers.text import shapes as text
from helpers.toolkit.options import ConvertConfig
from helpers.toolkit.record import read_record, write_record

NORM = {"mean_values": [0.0, 0.0, 0.0], "std_values": [255.0, 255.0, 255.0]}
TWO_SIZES = [[[1, 3, 16, 16]], [[1, 3, 24, 24]]]


def converted(tmp_path, tiny_onnx, tiny_images, **options):
    """A run folder holding the tiny classifier as notebook 10 leaves it, converted by notebook 20's path with options;
    its data folder has 4 train and 4 val images in 3 classes (tiny_onnx has 3 outputs)."""
    run = Run.at(tmp_path / "run")
    shutil.copy(tiny_onnx, run.model / "model.onnx")
    data = tmp_path / "data"
    for i, image in enumerate(tiny_images):
        folder = data / ("train" if i % 2 else "val") / "abc"[i // 2 % 3]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, folder / image.name)
    calib = write_calibration_list(load_split(data, "train"), run.rknn / "calibration.txt")
    cfg = ConvertConfig(**NORM, **options)
    source = run.model / "model.onnx"
    result = convert.convert(source, cfg, calib, run.rknn / "model.rknn", run.rknn / "build.log", 16, "onnx")
    write_record(run, result, cfg, source, calib, 16, "onnx")
    return run, read_record(run), data


def test_dynamic_input_two_sizes_are_each_profiled_and_scored(tmp_path, tiny_onnx, tiny_images):
    run, record, data = converted(tmp_path, tiny_onnx, tiny_images, dynamic_input=TWO_SIZES)
    declared = shapes.declared(record.config, record.input_size, 3)
    assert [s.label for s in declared] == ["1x3x16x16", "1x3x24x24"]
    pre = shapes.preflight_table(run.rknn / "build.log", declared, "rk3588").set_index("shape")
    assert list(pre["profiled"]) == ["this shape", "this shape"], "the toolkit writes one per-op table per dynamic shape"
    assert pre.loc["1x3x24x24", "internal_mb"] > pre.loc["1x3x16x16", "internal_mb"] > 0  # larger input, more activations
    assert pre.loc["1x3x24x24", "cycles_m"] > pre.loc["1x3x16x16", "cycles_m"] and pre["npu_ms"].isna().all()
    assert "one per-op table per declared shape" in text.preflight_text(pre.reset_index(), declared)
    table = shapes.score(run, record, data, declared)
    assert list(table["shape"]) == ["1x3x16x16", "1x3x24x24"] and (table["images"] == 4).all()
    assert (table["metric"] == "top-1").all() and table["fp32"].between(0, 1).all() and table["int8"].between(0, 1).all()
    assert (table["min_cosine"] > 0.99).all(), "INT8 at each shape follows FP32 at that same shape"
    assert (run.root / shapes.SHAPES_CSV).is_file()
    assert text.scores_text(table).startswith("**2 shape(s) scored** on 4 validation images")


def test_rknn_batch_size_2_feeds_two_images_per_call(tmp_path, tiny_onnx, tiny_images):
    run, record, data = converted(tmp_path, tiny_onnx, tiny_images, rknn_batch_size=2)
    declared = shapes.declared(record.config, record.input_size, 3)
    assert [s.label for s in declared] == ["2x3x16x16"]
    pre = shapes.preflight_table(run.rknn / "build.log", declared, "rk3588")
    assert pre.loc[0, "profiled"] == "one image (1x3x16x16)"
    assert "one-image graph only" in text.preflight_text(pre, declared)
    table = shapes.score(run, record, data, declared, images=3)  # 3 images: two calls of 2, the last one padded
    assert table.loc[0, "images_per_call"] == 2 and table.loc[0, "images"] == 3 and table.loc[0, "min_cosine"] > 0.99


def test_one_fixed_shape_is_said_in_one_line_and_a_wrong_channel_count_is_named(tmp_path, tiny_onnx, tiny_images):
    assert shapes.declared(ConvertConfig(**NORM), 16, 3) == []
    assert text.fixed_text(16, 3).startswith("The model has one fixed input shape (1x3x16x16")
    bad = ConvertConfig(**NORM, dynamic_input=[[[1, 3, 16, 16]], [[1, 1, 24, 24]]])
    with pytest.raises(WorkbookError, match=r"dynamic_input set 2 gives the input shape \[1, 1, 24, 24\] with 1 channel\(s\) but "
                                            r"the model's input has 3; write \[1, 3, 24, 24\]\."):
        convert.build_on(None, tiny_onnx, bad, None, 16, "onnx")  # refused before the toolkit is opened
    with pytest.raises(WorkbookError, match=r"dynamic_input set 1 has batch 2 .* set rknn_batch_size"):
        ConvertConfig(**NORM, dynamic_input=[[[2, 3, 16, 16]]]).validate(3)
