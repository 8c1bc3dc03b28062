"""The small trained detector end to end in FP32: the workbook's decode + NMS + pycocotools mAP agrees with
ultralytics' own val(); the split head detects exactly what the stock head detects; bad inputs."""
from __future__ import annotations

import numpy as np
import pytest
from detect_support import tiny_detector  # noqa: F401  (session fixture)

from helpers.core.errors import WorkbookError
from helpers.steps.export.detect_head import export_detector
from helpers.steps.export.detect_sample import ultralytics_val
from helpers.steps.export.exporter import quiet
from helpers.tasks.detect.images import load_letterboxed, onnx_runner
from helpers.tasks.detect.labels import read_split
from helpers.tasks.detect.metric import evaluate_outputs
from helpers.tasks.detect.sample import CLASSES, write_data_yaml, write_detect_sample
from helpers.tasks.identify import check_task, class_names, task_of

pytestmark = pytest.mark.slow


def test_training_is_offline_and_learns(tiny_detector):
    res = tiny_detector.train
    assert res.network_attempts == []
    assert task_of(res.weights) == "detect"
    assert res.map50_95 > 0.2, f"the small sample model learned too little to test with (val mAP50-95 {res.map50_95:.3f})"


def _fp32(tiny, onnx_path):
    split = read_split(tiny.data_yaml, "val")
    images, geoms = load_letterboxed(split.paths, tiny.imgsz)
    run = onnx_runner(onnx_path)
    return split, evaluate_outputs("FP32", [run(i) for i in images], geoms, split)


def test_fp32_map_agrees_with_ultralytics_val(tiny_detector, tmp_path):
    """Letterbox, decode, per-class NMS (conf 0.001, IoU 0.7, max_det 300) and pycocotools' 101-point AP
    against ultralytics' val() of the same weights on the same split: within 1 point. val() runs with
    rect=False, i.e. at the square imgsz input the exported model has: its default rect batches pad
    every image to a multiple of 32 plus half a stride (a 128x96 image runs at 128x160), which
    changes the model's input, not the decode."""
    split, ours = _fp32(tiny_detector, tiny_detector.split_onnx)
    with quiet(tmp_path / "val.log"):
        theirs = ultralytics_val(tiny_detector.train.weights, tiny_detector.data_yaml, tiny_detector.imgsz, tmp_path, rect=False)
        rect = ultralytics_val(tiny_detector.train.weights, tiny_detector.data_yaml, tiny_detector.imgsz, tmp_path)
    print(f"\nworkbook mAP50-95 {ours.metric.map50_95:.4f} mAP50 {ours.metric.map50:.4f} | "
          f"ultralytics val(rect=False) mAP50-95 {theirs['map50_95']:.4f} mAP50 {theirs['map50']:.4f} | "
          f"val() default rect mAP50-95 {rect['map50_95']:.4f} mAP50 {rect['map50']:.4f}")
    print("per-class AP50-95 workbook vs val:",
          {k: (round(v, 3), round(theirs["per_class"][k], 3)) for k, v in ours.metric.per_class.items()})
    assert theirs["map50_95"] > 0.2
    assert abs(ours.metric.map50_95 - theirs["map50_95"]) <= 0.01
    assert abs(ours.metric.map50 - theirs["map50"]) <= 0.01
    assert set(ours.metric.per_class) == set(theirs["per_class"])


def test_split_head_detects_what_stock_head_detects(tiny_detector):
    _, split_eval = _fp32(tiny_detector, tiny_detector.split_onnx)
    _, stock_eval = _fp32(tiny_detector, tiny_detector.stock_onnx)
    assert sum(len(d) for d in split_eval.detections) > 0
    for a, b in zip(split_eval.detections, stock_eval.detections):
        assert len(a) == len(b)
        assert np.allclose(a.boxes, b.boxes, atol=1e-2)
        assert np.allclose(a.scores, b.scores, atol=1e-4)
        assert np.array_equal(a.classes, b.classes)
    assert split_eval.metric.map50_95 == pytest.approx(stock_eval.metric.map50_95, abs=1e-4)


# ---------------------------------------------------------------- bad inputs, one sentence each

def test_task_of_reads_the_model_and_mismatches_name_both_tasks(tiny_detector, tiny_onnx, tmp_path):
    from ultralytics import YOLO

    cls_pt = tmp_path / "cls.pt"
    YOLO("yolo11n-cls.yaml").save(str(cls_pt))
    assert task_of(cls_pt) == "classify" and task_of(tiny_onnx) == "classify"
    assert task_of(tiny_detector.split_onnx) == task_of(tiny_detector.stock_onnx) == "detect"
    assert check_task(tiny_detector.train.weights, "detect") == "detect"
    assert class_names(tiny_detector.train.weights) == class_names(tiny_detector.split_onnx) == list(CLASSES)
    with pytest.raises(WorkbookError, match=r"is a detector \(task detect\) but task: classify was given; set task: "
                                            r"detect or pass a classifier\.$"):
        check_task(tiny_detector.train.weights, "classify")
    with pytest.raises(WorkbookError, match=r"is a classifier \(task classify\) but task: detect was given; set task: "
                                            r"classify or pass a detector\.$"):
        check_task(cls_pt, "detect")
    with pytest.raises(WorkbookError, match=r"is a classifier .* but task: detect"):
        check_task(tiny_onnx, "detect")
    with pytest.raises(WorkbookError, match=r"is an ultralytics classify model, not a detector; pass a detect \.pt"):
        export_detector(cls_pt, tmp_path / "x.onnx", 128)
    with pytest.raises(WorkbookError, match=r"^head='fused' is not a detector head layout; use one of split, stock\.$"):
        export_detector(tiny_detector.train.weights, tmp_path / "x.onnx", 128, head="fused")


def test_labels_beyond_the_models_classes_are_refused(tmp_path):
    data = write_detect_sample(tmp_path / "d", images=6, imgsz=64)
    bad = sorted((tmp_path / "d" / "labels" / "val").glob("*.txt"))[0]
    bad.write_text(bad.read_text() + "7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(WorkbookError) as err:
        read_split(data, "val", num_classes=4)
    msg = str(err.value)
    assert "class ids [7]" in msg and "outside the model's 4 classes (0..3)" in msg and bad.name in msg
    assert msg.count(".") >= 1 and "\n" not in msg


def test_image_without_label_file_counts_as_background_once(tmp_path):
    data = write_detect_sample(tmp_path / "d", images=12, imgsz=64, val_fraction=0.5)
    labels = sorted((tmp_path / "d" / "labels" / "val").glob("*.txt"))
    for f in labels[:2]:
        f.unlink()
    split = read_split(data, "val")
    assert len(split) == 6 and [len(t.classes) for t in split.truth[:2]] == [0, 0]
    assert split.notes == [f"2 of 6 val images have no label file (e.g. {labels[0].stem}.png); they count as "
                           "background (no objects)."]


def test_data_yaml_without_val_is_one_sentence(tmp_path):
    y = write_data_yaml(tmp_path / "data.yaml", "images/train", "images/val", ["a"])
    y.write_text("train: images/train\nnames: [a]\n")
    with pytest.raises(WorkbookError, match=r"has no val entry; add e\.g\. 'val: images/val'"):
        read_split(y, "val")


def test_offline_guard_blocks_and_records_network_use():
    import socket

    import ultralytics.data.utils as du

    from helpers.steps.export.detect_sample import offline

    before = socket.socket.connect
    with offline() as attempts:
        with pytest.raises(OSError, match="network blocked"):
            socket.create_connection(("192.0.2.1", 443), timeout=1)
        with socket.socket() as raw, pytest.raises(OSError, match="network blocked"):
            raw.connect(("192.0.2.1", 443))
        assert du.check_font("Arial.ttf").name == "DejaVuSans.ttf"  # ultralytics' font fetch, answered locally
    assert attempts == ["resolve 192.0.2.1", "connect ('192.0.2.1', 443)"]
    assert socket.socket.connect is before


def test_prepare_reuses_the_cached_sample_model_and_checks_a_users_model(tiny_detector, tiny_onnx):
    from helpers.steps.export.detect_sample import prepare_detect_model

    t = tiny_detector
    path, data, text = prepare_detect_model(t.run, "", t.data_yaml, imgsz=t.imgsz, epochs=t.train.epochs)
    assert path == t.train.weights and data == t.data_yaml
    assert "reused from the cache" in text and f"mAP50-95 {t.train.map50_95:.3f}" in text
    assert prepare_detect_model(t.run, t.split_onnx, t.data_yaml, imgsz=t.imgsz)[0] == t.split_onnx.resolve()
    with pytest.raises(WorkbookError, match=r"is a classifier \(task classify\) but task: detect was given"):
        prepare_detect_model(t.run, tiny_onnx, t.data_yaml, imgsz=t.imgsz)
