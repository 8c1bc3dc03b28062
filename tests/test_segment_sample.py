"""The generated segmentation sample: its polygon labels give back each drawn shape's pixels, it is deterministic and
cached by version, and detection labels given where polygons are needed stop in one sentence."""
from __future__ import annotations

import numpy as np
import pytest

from helpers.core.errors import WorkbookError
from helpers.tasks.detect.sample import write_detect_sample
from helpers.tasks.segment import sample
from helpers.tasks.segment.labels import read_segment_split


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_polygon_gives_back_the_drawn_shape():
    """Every shape kind, drawn anywhere: its polygon filled back (as ultralytics does) covers the same pixels."""
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(30):
        _, labels = sample.make_image(rng, 160, 120, 4)
        for cls, poly, mask in labels:
            seen.add(cls)
            assert _iou(sample.polygon_mask(poly, 120, 160), mask) > 0.97
    assert seen == set(range(len(sample.CLASSES)))


def test_label_files_round_trip_to_the_shapes(tmp_path):
    """Written to disk (normalised, 6 decimals) and read back as masks: each object is the shape that was drawn."""
    data = sample.write_segment_sample(tmp_path / "seg", images=10, imgsz=160, seed=5)
    rng = np.random.default_rng(5)
    drawn = [sample.make_image(rng, 160, 120, 4)[1] for _ in range(10)]
    truth = read_segment_split(data, "train").truth + read_segment_split(data, "val").truth
    assert len(truth) == 10
    for gt, labels in zip(truth, drawn):
        assert gt.classes.tolist() == [c for c, _, _ in labels]
        for got, box, (_, _, mask) in zip(gt.masks, gt.boxes, labels):
            assert _iou(got, mask) > 0.97
            ys, xs = np.nonzero(mask)  # the box (the polygon's extent, as ultralytics takes it) hugs the shape
            assert np.allclose(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=1.0)


def test_sample_is_deterministic_and_cached(tmp_path):
    a = sample.write_segment_sample(tmp_path / "a", images=6, seed=1)
    b = sample.write_segment_sample(tmp_path / "b", images=6, seed=1)
    files = sorted(p.relative_to(a.parent) for p in a.parent.rglob("*.txt"))
    assert files and all((a.parent / f).read_text() == (b.parent / f).read_text() for f in files)
    stamp = (a.parent / "sample.json").stat().st_mtime_ns
    assert sample.write_segment_sample(tmp_path / "a", images=6, seed=1) == a
    assert (a.parent / "sample.json").stat().st_mtime_ns == stamp  # same settings and version: reused
    sample.write_segment_sample(tmp_path / "a", images=6, seed=2)
    assert (a.parent / "sample.json").stat().st_mtime_ns != stamp  # other settings: written again
    assert not list(tmp_path.glob("*.tmp"))  # written atomically, nothing half-done left beside it


def test_detection_labels_for_a_segment_data_set_are_one_sentence(tmp_path):
    data = write_detect_sample(tmp_path / "boxes", images=4)
    with pytest.raises(WorkbookError) as err:
        read_segment_split(data, "val")
    msg = str(err.value)
    assert "labels/val/0003.txt" in msg and "polygon" in msg and "task: detect" in msg
    assert msg.count(". ") == 0 and msg.endswith(".")


def test_ultralytics_reads_the_labels_as_segments(tmp_path):
    """ultralytics' own label check sees polygons (not boxes) in every file, with the boxes the workbook derives."""
    from ultralytics.data.utils import verify_image_label

    data = sample.write_segment_sample(tmp_path / "seg", images=5, seed=2)
    split = read_segment_split(data, "train")
    for path, gt in zip(split.paths, split.truth):
        lp = data.parent / "labels" / "train" / f"{path.stem}.txt"
        _, lb, shape, segments, *_, msg = verify_image_label((str(path), str(lp), "", False, 4, 0, 0, False))
        assert msg == "" and len(segments) == len(gt.classes) > 0 and all(len(s) >= 3 for s in segments)
        h, w = shape
        xywh = lb[:, 1:] * np.array([w, h, w, h])
        ours = np.concatenate([(gt.boxes[:, :2] + gt.boxes[:, 2:]) / 2, gt.boxes[:, 2:] - gt.boxes[:, :2]], 1)
        assert lb[:, 0].tolist() == gt.classes.tolist() and np.allclose(xywh, ours, atol=0.05)
