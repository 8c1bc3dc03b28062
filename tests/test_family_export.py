"""Segmentation and pose models through notebook 10's export: the split head (mask coefficients and prototypes, or
keypoint offsets, each its own output) decodes to exactly what ultralytics' stock layout decodes to in FP32, for the
YOLOv8/11 heads and YOLO26's end-to-end heads; the task is read from the model; and the bad inputs users bring stop
in one sentence (a segmentation model given box labels, a pose data.yaml without kpt_shape, another keypoint count)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from helpers.core.errors import WorkbookError
from helpers.core.paths import Run
from helpers.steps.export import heads
from helpers.steps.export.detect_head import decode_options, export_detector, onnx_metadata
from helpers.tasks.detect.sample import write_detect_sample
from helpers.tasks.family import data_task
from helpers.tasks.identify import model_kpt_shape, resolve_task
from helpers.tasks.pose import postprocess as pose_pp
from helpers.tasks.pose.sample import write_pose_sample
from helpers.tasks.segment import postprocess as seg_pp
from helpers.tasks.segment.sample import write_segment_sample

pytestmark = pytest.mark.slow
SIZE = 96


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """Random-init .pt files of the four heads (the layout checks need no training)."""
    from ultralytics import YOLO

    base = tmp_path_factory.mktemp("family")
    out = {}
    for arch in ("yolo11n-seg", "yolo26n-seg", "yolo11n-pose", "yolo26n-pose"):
        out[arch] = base / f"{arch}.pt"
        YOLO(f"{arch}.yaml").save(str(out[arch]))
    return out


def _both(pt, tmp_path, task):
    x = np.random.default_rng(0).random((1, 3, SIZE, SIZE), dtype=np.float32)
    outs = {}
    for head in ("split", "stock"):
        path = tmp_path / f"{head}.onnx"
        export_detector(pt, path, SIZE, head=head, task=task)
        outs[head] = ort.InferenceSession(str(path)).run(None, {"images": x})
    return outs, tmp_path / "split.onnx"


@pytest.mark.parametrize("arch", ["yolo11n-seg", "yolo26n-seg"])
def test_segment_split_head_decodes_like_the_stock_head(untrained, tmp_path, arch):
    outs, split = _both(untrained[arch], tmp_path, "segment")
    meta = onnx_metadata(split)
    assert meta["task"] == "segment" and meta["head"] == "split" and int(meta["nm"]) == outs["split"][-1].shape[1]
    assert (meta["end2end"] == "true") == arch.startswith("yolo26")  # YOLO26: the one-to-one branch, top-k on the host
    assert len(outs["split"]) == 4 * 3 + 1 and len(outs["stock"]) == 2
    a, b = seg_pp.decode(outs["split"], SIZE), seg_pp.decode(outs["stock"], SIZE)
    for got, want in zip(a[:3], b[:3]):  # boxes, class scores, mask coefficients: anchor for anchor
        np.testing.assert_allclose(got, want, atol=1e-3)
    np.testing.assert_allclose(outs["split"][-1], outs["stock"][-1], atol=1e-4)  # the same prototypes


@pytest.mark.parametrize("arch", ["yolo11n-pose", "yolo26n-pose"])
def test_pose_split_head_decodes_like_the_stock_head(untrained, tmp_path, arch):
    """ultralytics decodes YOLOv8/11 keypoints as (2 * raw + column) * stride and YOLO26's as (raw + 0.5 + column) *
    stride: the split head's offsets carry that rule, so one decode reads both."""
    outs, split = _both(untrained[arch], tmp_path, "pose")
    kpt_shape = decode_options(split)["kpt_shape"]
    assert kpt_shape == model_kpt_shape(untrained[arch]) == [17, 3]
    assert len(outs["split"]) == 4 * 3 and len(outs["stock"]) == 1
    a, b = pose_pp.decode(outs["split"], SIZE, kpt_shape), pose_pp.decode(outs["stock"], SIZE, kpt_shape)
    for got, want in zip(a, b):  # boxes, class scores, keypoints (x, y in input pixels, visibility)
        np.testing.assert_allclose(got, want, atol=1e-3)
    offsets = outs["split"][3]  # small numbers next to the pixels of the stock layout: INT8 keeps a fine step
    assert np.abs(offsets).max() < np.abs(outs["stock"][0][0, -51:]).max() / 4


def test_the_task_is_read_from_the_model(untrained):
    assert resolve_task(untrained["yolo11n-seg"]) == "segment"
    assert resolve_task(untrained["yolo26n-pose"]) == "pose"
    with pytest.raises(WorkbookError, match=r"is an instance-segmentation model \(task segment\) but task: detect was given; "
                                            r"set task: segment or pass a detector\."):
        resolve_task(untrained["yolo11n-seg"], "detect")


def test_samples_say_which_task_their_labels_are_for(tmp_path):
    assert data_task(write_segment_sample(tmp_path / "seg", images=10, imgsz=64)) == "segment"
    assert data_task(write_pose_sample(tmp_path / "pose", images=10, imgsz=64)) == "pose"
    assert data_task(write_detect_sample(tmp_path / "det", images=10, imgsz=64)) == "detect"


def test_bad_inputs_stop_in_one_sentence(untrained, tmp_path):
    run = Run.at(tmp_path / "run")
    boxes = write_detect_sample(tmp_path / "det", images=10, imgsz=64)
    with pytest.raises(WorkbookError, match=r"has a detection box on line 1 \('class cx cy w h'\), but task: segment needs one "
                                            r"polygon per object"):
        heads.prepare(run, str(untrained["yolo11n-seg"]), str(boxes), SIZE, 1, task="segment")
    pose_yaml = write_pose_sample(tmp_path / "pose", images=10, imgsz=64)
    with pytest.raises(WorkbookError, match=r"predicts 17 keypoints of 3 values \(kpt_shape \[17, 3\]\) but \S+data.yaml has "
                                            r"kpt_shape \[\d+, \d\]; use the data.yaml the model was trained with"):
        heads.prepare(run, str(untrained["yolo11n-pose"]), str(pose_yaml), SIZE, 1, task="pose")
    text = pose_yaml.read_text()
    pose_yaml.write_text("\n".join(line for line in text.splitlines() if not line.startswith("kpt_shape")) + "\n")
    with pytest.raises(WorkbookError, match=r"has no kpt_shape entry; add 'kpt_shape: \[K, 3\]'"):
        heads.prepare(run, str(untrained["yolo11n-pose"]), str(pose_yaml), SIZE, 1, task="pose")
