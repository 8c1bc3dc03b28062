"""helpers/tasks/segment/postprocess.py on raw outputs built so the right answer is known (a box, coefficients that
pick one prototype), against the detector decode it must agree with, and against ultralytics' own mask assembly."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from helpers.tasks.detect import postprocess as det
from helpers.tasks.segment import postprocess as pp

SIZE, NC, NM = 160, 2, 32
STRIDES = (8, 16, 32)
ANCHORS = sum((SIZE // s) ** 2 for s in STRIDES)
BOX = (40.0, 30.0, 90.0, 100.0)  # letterboxed input pixels


def _protos() -> np.ndarray:
    """Prototype 3 is +8 on proto rows 10..20, columns 8..24 and -8 elsewhere; the others are noise."""
    protos = np.random.default_rng(0).normal(0, 1, (1, NM, SIZE // 4, SIZE // 4)).astype(np.float32)
    protos[0, 3] = -8
    protos[0, 3, 10:21, 8:25] = 8
    return protos


def _coefs() -> np.ndarray:
    c = np.zeros(NM, np.float32)
    c[3] = 1.0
    return c


def _stock() -> list[np.ndarray]:
    pred = np.zeros((1, 4 + NC + NM, ANCHORS), np.float32)
    x1, y1, x2, y2 = BOX
    for anchor, score, shift in ((7, 0.9, 0.0), (8, 0.6, 2.0)):  # a weaker near-duplicate NMS must remove
        pred[0, :4, anchor] = [(x1 + x2) / 2 + shift, (y1 + y2) / 2, x2 - x1, y2 - y1]
        pred[0, 4 + 1, anchor] = score
        pred[0, 4 + NC :, anchor] = _coefs()
    return [pred, _protos()]


def _split() -> list[np.ndarray]:
    """The same object in the split layout, with plain distances (reg_max 1) from the stride-8 cell (7, 7)."""
    outs = []
    for s in STRIDES:
        n = SIZE // s
        box, cls = np.zeros((1, 4, n, n), np.float32), np.zeros((1, NC, n, n), np.float32)
        coef = np.zeros((1, NM, n, n), np.float32)
        if s == 8:
            c = 7.5 * s
            box[0, :, 7, 7] = [(c - BOX[0]) / s, (c - BOX[1]) / s, (BOX[2] - c) / s, (BOX[3] - c) / s]
            cls[0, 1, 7, 7] = 0.9
            coef[0, :, 7, 7] = _coefs()
        outs += [box, cls, cls.sum(1, keepdims=True).clip(0, 1), coef]
    return outs + [_protos()]


def test_postprocess_ships_beside_the_detectors():
    """It ships byte-identical in the board bundle: numpy and OpenCV, plus the detector's postprocess.py it ships beside
    (the one letterbox, DFL decode and NMS), which it also finds there under its bundle name."""
    tree = ast.parse(Path(pp.__file__).read_text())
    top = {n.names[0].name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)}
    top |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert top <= {"numpy", "cv2", "dataclasses", "typing", "__future__", "helpers.tasks.detect.postprocess", "postprocess"}, top


@pytest.mark.parametrize("outputs", [_stock, _split], ids=["stock", "split"])
def test_known_box_and_prototype_give_the_expected_mask(outputs):
    """A 160x120 image letterboxed to 160 (20 px of padding on top): the mask is prototype 3's rectangle (x4, moved up
    by the padding) cut to the box, in original pixels; the weaker duplicate is suppressed."""
    lb = det.letterbox_geometry(120, 160, SIZE)
    seg = pp.postprocess(outputs(), lb, conf=0.25)
    assert len(seg) == 1 and seg.classes.tolist() == [1] and np.allclose(seg.scores, [0.9])
    assert np.allclose(seg.boxes[0], [40, 10, 90, 80], atol=1e-4)
    expected = np.zeros((120, 160), bool)
    expected[20:64, 40:90] = True  # prototype rows 40..83 -> 20..63 after the padding; box columns 40..89
    assert seg.masks.shape == (1, 120, 160) and np.array_equal(seg.masks[0], expected)


def test_mask_maps_back_to_a_larger_original():
    """A 320x240 original (scale 0.5): the same rectangle lands at twice the coordinates, give or take an edge pixel."""
    lb = det.letterbox_geometry(240, 320, SIZE)
    seg = pp.postprocess(_stock(), lb)
    expected = np.zeros((240, 320), bool)
    expected[40:128, 80:180] = True
    inter, union = (seg.masks[0] & expected).sum(), (seg.masks[0] | expected).sum()
    assert seg.masks.shape == (1, 240, 320) and inter / union > 0.97
    assert not seg.masks[0, :, 180:].any() and not seg.masks[0, :, :80].any()  # nothing outside the box


@pytest.mark.parametrize("layout", ["stock", "split"])
def test_detections_are_the_detector_decode(layout):
    """Boxes, scores and classes equal helpers/tasks/detect/postprocess.py on the same raw outputs: one selection rule."""
    rng = np.random.default_rng(4)
    lb = det.letterbox_geometry(120, 160, SIZE)
    protos = rng.normal(0, 1, (1, NM, 40, 40)).astype(np.float32)
    if layout == "stock":
        xy, wh = rng.uniform(10, 150, (ANCHORS, 2)), rng.uniform(4, 50, (ANCHORS, 2))
        scores = rng.uniform(0, 1, (ANCHORS, NC)) ** 4
        pred = np.concatenate([xy, wh, scores, rng.normal(0, 1, (ANCHORS, NM))], 1).T[None].astype(np.float32)
        seg_out, det_out = [pred, protos], [pred[:, : 4 + NC]]
    else:
        seg_out, det_out = [], []
        for s in STRIDES:
            n = SIZE // s
            trio = [rng.normal(0, 2, (1, 64, n, n)), rng.uniform(0, 1, (1, NC, n, n)) ** 4]
            trio.append(trio[1].sum(1, keepdims=True).clip(0, 1))
            trio = [t.astype(np.float32) for t in trio]
            det_out += trio
            seg_out += [*trio, rng.normal(0, 1, (1, NM, n, n)).astype(np.float32)]
        seg_out.append(protos)
    for kwargs in ({"conf": 0.25}, {"conf": 0.01, "multi_label": True, "max_det": 50}, {"conf": 0.2, "end2end": True}):
        ours, theirs = pp.postprocess(seg_out, lb, **kwargs), det.postprocess(det_out, det.letterbox_geometry(120, 160, SIZE),
                                                                               **kwargs)
        assert len(ours) == len(theirs) > 0
        assert np.allclose(ours.boxes, theirs.boxes) and np.allclose(ours.scores, theirs.scores)
        assert ours.classes.tolist() == theirs.classes.tolist() and ours.masks.shape == (len(ours), 120, 160)


def test_masks_match_ultralytics_native_masks(monkeypatch):
    """Smooth random prototypes and boxes on a 240x320 original: the masks agree with ultralytics' process_mask_native
    (the masks its COCO evaluation scores) up to edge pixels."""
    import torch
    from ultralytics.utils.ops import process_mask_native

    rng = np.random.default_rng(7)
    lb = det.letterbox_geometry(240, 320, SIZE)
    protos = np.stack([np.sin(np.add.outer(np.arange(40) * rng.uniform(0.05, 0.3), np.arange(40) * rng.uniform(0.05, 0.3))
                              + rng.uniform(0, 6)) for _ in range(NM)]).astype(np.float32)
    coefs = rng.normal(0, 1, (12, NM)).astype(np.float32)
    xy = rng.uniform(0, 200, (12, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(30, 120, (12, 2))], 1).clip(0, [320, 240, 320, 240]).astype(np.float32)
    ours = pp.assemble_masks(coefs, protos, boxes, lb)
    theirs = process_mask_native(torch.from_numpy(protos), torch.from_numpy(coefs), torch.from_numpy(boxes), (240, 320))
    theirs = theirs.numpy().astype(bool)
    ious = [(a & b).sum() / max((a | b).sum(), 1) for a, b in zip(ours, theirs) if (a | b).sum() > 50]
    assert ious and min(ious) > 0.95
    monkeypatch.setattr(pp, "CHUNK_PIXELS", 1)  # one mask at a time (the memory bound of a large image): same masks
    assert np.array_equal(pp.assemble_masks(coefs, protos, boxes, lb), ours)


def test_wrong_number_of_outputs_is_named():
    with pytest.raises(ValueError, match="3 outputs"):
        pp.layout([np.zeros(1)] * 3)
