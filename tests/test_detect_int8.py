"""The INT8 pitfall of detectors, measured with the real rknn-toolkit2 simulator: with ultralytics' stock
head (box pixels and class scores in one tensor, one INT8 scale) the class scores collapse while the
whole-tensor cosine still reads ~1; with the head split per stride the scores and the mAP survive."""
from __future__ import annotations

import pytest
from detect_support import tiny_detector  # noqa: F401  (session fixture)

from helpers.steps.evaluate import simulate_int8
from helpers.tasks.detect.images import load_letterboxed, onnx_runner
from helpers.tasks.detect.labels import read_split
from helpers.tasks.detect.metric import evaluate_outputs
from helpers.tasks.measures import output_cosines

pytestmark = pytest.mark.slow

# rknn-toolkit2 2.5.0 fails in these optimisation rules on small YOLO11 detectors (IndexError; its log
# names the rule to disable): the first at 96-160 px (C2PSA attention on a 3x3..5x5 map), the second at
# 320/640. Passed explicitly here; helpers.steps.convert retries with the rule its log names.
DISABLE_RULES = ["fuse_exmatmul_add_mul_exsoftmax13_exmatmul_to_sdpa", "seperate_conv_rs_split"]


@pytest.fixture(scope="module")
def int8_vs_fp32(tiny_detector, tmp_path_factory):
    tiny = tiny_detector
    val = read_split(tiny.data_yaml, "val")
    calib = read_split(tiny.data_yaml, "train").subset(16)
    images, geoms = load_letterboxed(val.paths, tiny.imgsz)
    calib_images, _ = load_letterboxed(calib.paths, tiny.imgsz)
    out = {}
    for head, onnx_path in (("split", tiny.split_onnx), ("stock", tiny.stock_onnx)):
        fp32 = [onnx_runner(onnx_path)(i) for i in images]
        int8 = simulate_int8(onnx_path, calib_images, images, tmp_path_factory.mktemp(f"int8_{head}"),
                             disable_rules=DISABLE_RULES)
        out[head] = {
            "fp32": evaluate_outputs(f"FP32 {head}", fp32, geoms, val),
            "int8": evaluate_outputs(f"INT8 {head}", int8, geoms, val),
            "cosine": float(output_cosines(fp32, int8).min()),
            "mean_cosine": float(output_cosines(fp32, int8).mean()),
        }
    print()
    for head, r in out.items():
        print(f"{head:5s} FP32 mAP50-95 {r['fp32'].metric.map50_95:.4f} mAP50 {r['fp32'].metric.map50:.4f} top score "
              f"{max(r['fp32'].top_scores):.3f} | "
              f"INT8 mAP50-95 {r['int8'].metric.map50_95:.4f} mAP50 {r['int8'].metric.map50:.4f} top score "
              f"{max(r['int8'].top_scores):.3f} "
              f"| whole-tensor cosine min {r['cosine']:.4f} mean {r['mean_cosine']:.4f} | INT8 detections "
              f"{r['int8'].metric.detections}")
    return out


def test_split_head_int8_keeps_the_map(int8_vs_fp32):
    split = int8_vs_fp32["split"]
    assert split["fp32"].metric.map50_95 > 0.2
    assert split["int8"].metric.map50_95 >= split["fp32"].metric.map50_95 - 0.05
    assert max(split["int8"].top_scores) >= 0.8 * max(split["fp32"].top_scores)


def test_stock_head_int8_collapses_while_cosine_reads_high(int8_vs_fp32):
    """The lesson, relative to FP32 and to the split head (never one training run's incidental score values)."""
    stock, split = int8_vs_fp32["stock"], int8_vs_fp32["split"]
    assert stock["fp32"].metric.map50_95 == pytest.approx(split["fp32"].metric.map50_95, abs=1e-3)
    assert stock["int8"].metric.map50_95 < 0.5 * stock["fp32"].metric.map50_95
    assert stock["int8"].metric.map50_95 < split["int8"].metric.map50_95 - 0.1
    assert stock["cosine"] > 0.95  # the whole-tensor check does not warn
