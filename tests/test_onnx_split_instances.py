"""A segmentation or pose ONNX as users export it (`YOLO(pt).export(format="onnx")`) gets its head split by graph
surgery in notebook 10's export: the same outputs, names, shapes and metadata as the workbook's own split of the .pt,
the same numbers in FP32 (same weights), decoding to what ultralytics' own output decodes to; a graph that cannot be
split, or a split that disagrees with the original, stops in one sentence and leaves no head file behind."""
from __future__ import annotations

import functools
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from helpers.core.errors import WorkbookError
from helpers.steps.export import heads
from helpers.steps.export.detect_head import export_detector, onnx_metadata
from helpers.steps.export.onnx_split import split_user_onnx
from helpers.steps.export.onnx_split_instances import split_user_instances_onnx
from helpers.tasks.pose import postprocess as pose_pp
from helpers.tasks.segment import postprocess as seg_pp
from helpers.text.export import split_check_note

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean")]  # its tracer
SIZE = 64
ARCH = {"segment": "yolo11n-seg", "pose": "yolo11n-pose"}
KPT_SHAPE = [7, 3]


def _yaml(base, arch, **change):
    """ultralytics' model YAML, the pose one single-class with 7 keypoints (a person model's shape: one class, whose
    class convolution has one channel like the DFL's, and not COCO's 17 keypoints)."""
    import yaml
    from ultralytics.utils import ROOT

    family = arch[4:6]  # 11 or 26
    cfg = yaml.safe_load((ROOT / "cfg" / "models" / family / f"{arch.replace(family + 'n', family)}.yaml").read_text())
    cfg |= {"nc": 1, "kpt_shape": KPT_SHAPE} if arch.endswith("pose") else {}
    path = base / f"{arch}.yaml"  # the scale (n) is read from the name
    path.write_text(yaml.safe_dump(cfg | change))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Per task: random-init YOLO11n .pt, its ultralytics ONNX, the workbook's split of the .pt and notebook 10's
    export of the ONNX (model_split.onnx, model_stock.onnx, model.onnx)."""
    from ultralytics import YOLO

    from helpers.steps.export.detect_sample import offline

    base = tmp_path_factory.mktemp("instances")
    out = {}
    for task, arch in ARCH.items():
        pt = base / f"{arch}.pt"
        with offline():
            YOLO(str(_yaml(base, arch))).save(str(pt))
            exported = YOLO(str(pt)).export(format="onnx", imgsz=SIZE, opset=19, device="cpu")
        given = base / f"{arch}.onnx"
        shutil.move(exported, given)
        export_detector(pt, base / f"{arch}.pt_split.onnx", SIZE, head="split", task=task)
        result = heads.export_heads(given, base / task, SIZE, "split", 19, task=task)
        out[task] = {"given": given, "pt_split": base / f"{arch}.pt_split.onnx", "dir": base / task, "result": result}
    return out


@functools.cache
def _session(path: str):
    return ort.InferenceSession(path)


def _run(path, x):
    sess = _session(str(path))
    return [o.name for o in sess.get_outputs()], sess.run(None, {"images": x})


def _images(n=3):
    return np.random.default_rng(0).random((n, 1, 3, SIZE, SIZE), dtype=np.float32)


@pytest.mark.parametrize("task", ARCH)
def test_the_surgery_writes_what_the_pt_split_writes(models, task):
    m = models[task]
    split = m["dir"] / "model_split.onnx"
    assert m["result"]["head"] == "split" and "graph surgery" in m["result"]["opset_note"]
    assert (m["dir"] / "model.onnx").read_bytes() == split.read_bytes()
    assert onnx_metadata(m["dir"] / "model_stock.onnx")["head"] == "stock"
    x = _images(1)[0]
    (names, outs), (want_names, want) = _run(split, x), _run(m["pt_split"], x)
    assert names == want_names and [o.shape for o in outs] == [o.shape for o in want]
    got_meta, want_meta = onnx_metadata(split), onnx_metadata(m["pt_split"])
    assert {k: got_meta.get(k) for k in want_meta} == want_meta  # task, head, strides, reg_max, nm / kpt_shape, ...
    stock_meta = onnx_metadata(m["dir"] / "model_stock.onnx")  # the file as given, described like the .pt's stock export
    assert {k: stock_meta.get(k) for k in want_meta if k != "head"} == {k: v for k, v in want_meta.items() if k != "head"}
    assert ("mask coefficients" if task == "segment" else "keypoints") in split_check_note(m["result"]["split_check"])


@pytest.mark.parametrize("task", ARCH)
def test_same_weights_give_the_same_split_outputs(models, task):
    """The strongest check, no training needed: the cut graph computes exactly the .pt split's tensors."""
    m = models[task]
    worst = 0.0
    for x in _images():
        got, want = _run(m["dir"] / "model_split.onnx", x)[1], _run(m["pt_split"], x)[1]
        worst = max(worst, *(float(np.abs(a - b).max()) for a, b in zip(got, want)))
    assert worst <= 1e-4


@pytest.mark.parametrize("task", ARCH)
def test_the_split_decodes_to_what_ultralytics_output_decodes_to(models, task):
    m = models[task]
    kpt_shape = KPT_SHAPE
    for x in _images():
        split, given = _run(m["dir"] / "model_split.onnx", x)[1], _run(m["given"], x)[1]
        if task == "segment":
            a, b = seg_pp.decode(split, SIZE)[:3], seg_pp.decode(given, SIZE)[:3]  # boxes, scores, mask coefficients
            np.testing.assert_allclose(split[-1], given[-1], atol=1e-5)  # the same prototypes
        else:
            a, b = pose_pp.decode(split, SIZE, kpt_shape), pose_pp.decode(given, SIZE, kpt_shape)  # boxes, scores, keypoints
        for got, want in zip(a, b):
            np.testing.assert_allclose(got, want, atol=1e-3)
    assert m["result"]["split_check"]["check"]["max_box_diff_px"] < 1e-3  # notebook 10's own check agrees


def test_a_graph_that_cannot_be_split_is_refused(models, tmp_path):
    model = onnx.load(str(models["segment"]["given"]))
    del model.graph.output[1]  # the prototypes gone: not ultralytics' segmentation layout
    bad = tmp_path / "no_protos.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(WorkbookError, match=r"cannot be split for INT8 \(1 outputs.*export the \.pt instead"):
        split_user_instances_onnx(bad, tmp_path / "out", [], SIZE)
    assert not list(tmp_path.glob("out/*.onnx"))


def test_a_split_that_disagrees_stops_and_leaves_no_head_behind(models, tmp_path):
    """A YOLOv8/11 pose graph labelled YOLO26 (whose keypoints read raw + 0.5, not 2 * raw): the FP32 check catches it."""
    model = onnx.load(str(models["pose"]["given"]))
    next(p for p in model.metadata_props if p.key == "head").value = "Pose26"
    bad = tmp_path / "mislabelled.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(WorkbookError, match="disagrees with the original ONNX in FP32"):
        split_user_instances_onnx(bad, tmp_path / "out", [], SIZE)
    assert not list((tmp_path / "out").glob("*.onnx"))


def test_a_single_class_detector_onnx_is_split_too(tmp_path):
    """Its class convolution has one output channel, like the DFL's: the surgery must not walk through it."""
    from ultralytics import YOLO

    from helpers.steps.export.detect_sample import offline

    pt = tmp_path / "yolo11n.pt"
    with offline():
        YOLO(str(_yaml(tmp_path, "yolo11n", nc=1))).save(str(pt))
        given = YOLO(str(pt)).export(format="onnx", imgsz=SIZE, opset=19, device="cpu")
    info = split_user_onnx(given, tmp_path / "out", [], SIZE)
    assert info["classes"] == 1 and info["check"]["max_box_diff_px"] < 1e-3


def test_a_yolo26_pose_onnx_is_split_with_its_own_keypoint_rule(tmp_path):
    """YOLO26 reads keypoints as raw + 0.5 (not 2 * raw): its default export (one-to-many branch, NMS) splits and
    decodes to what ultralytics' output decodes to."""
    from ultralytics import YOLO

    from helpers.steps.export.detect_sample import offline

    pt = tmp_path / "yolo26n-pose.pt"
    with offline():
        YOLO(str(_yaml(tmp_path, "yolo26n-pose"))).save(str(pt))
        given = YOLO(str(pt)).export(format="onnx", imgsz=SIZE, opset=19, device="cpu")
    info = split_user_instances_onnx(given, tmp_path / "out", [], SIZE)
    assert info["reg_max"] == 1 and not info["end2end"] and info["check"]["max_box_diff_px"] < 1e-3
    x = _images(1)[0]
    split, original = _run(tmp_path / "out" / "model_split.onnx", x)[1], _run(given, x)[1]
    for got, want in zip(pose_pp.decode(split, SIZE, KPT_SHAPE), pose_pp.decode(original, SIZE, KPT_SHAPE)):
        np.testing.assert_allclose(got, want, atol=1e-3)
