"""helpers/tasks/detect/postprocess.py against ultralytics' and torchvision's own implementations of the same
steps (letterbox, distribution-to-box decode, NMS), on synthetic tensors: no model needed."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from helpers.tasks.detect import postprocess as pp


def test_postprocess_is_standalone():
    """It ships byte-identical in the board bundle: numpy only at import time, no helpers imports."""
    tree = ast.parse(Path(pp.__file__).read_text())
    top = {n.names[0].name.split(".")[0] for n in tree.body if isinstance(n, ast.Import)}
    top |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    assert top <= {"numpy", "dataclasses", "typing", "__future__"}, top


@pytest.mark.parametrize("hw", [(120, 160), (160, 120), (37, 211), (300, 300), (50, 64)])
def test_letterbox_matches_ultralytics_and_inverts(hw):
    from ultralytics.data.augment import LetterBox

    rng = np.random.default_rng(hw[0] * 1000 + hw[1])
    img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    ours, lb = pp.letterbox(img, 160)
    theirs = LetterBox((160, 160), auto=False, scaleup=True, center=True)(image=img)
    assert ours.shape == theirs.shape == (160, 160, 3)
    assert np.array_equal(ours, theirs)
    # a box on the original, mapped forward onto the canvas, comes back where it was
    box = np.array([[0.1 * hw[1], 0.2 * hw[0], 0.7 * hw[1], 0.9 * hw[0]]], np.float32)
    canvas_box = box * lb.scale + np.array([lb.left, lb.top, lb.left, lb.top], np.float32)
    assert np.allclose(pp.unletterbox(canvas_box, lb), box, atol=1e-3)


def test_dfl_decode_matches_ultralytics():
    import torch
    from ultralytics.nn.modules.block import DFL
    from ultralytics.utils.tal import dist2bbox, make_anchors

    rng = np.random.default_rng(0)
    feats = [rng.normal(0, 2, (1, 64, s, s)).astype(np.float32) for s in (20, 10, 5)]
    strides = [8, 16, 32]
    ours = np.concatenate([pp.dfl_decode(f[0], s) for f, s in zip(feats, strides)])
    t = [torch.from_numpy(f) for f in feats]
    anchors, stride_t = make_anchors(t, torch.tensor(strides, dtype=torch.float32), 0.5)
    dist = DFL(16)(torch.cat([x.view(1, 64, -1) for x in t], 2))
    theirs = (dist2bbox(dist, anchors.transpose(0, 1).unsqueeze(0), xywh=False, dim=1) * stride_t.transpose(0, 1))[0].T.numpy()
    assert np.allclose(ours, theirs, atol=1e-3)


def test_nms_keeps_what_torchvision_keeps():
    import torch
    import torchvision

    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, (300, 2))
    wh = rng.uniform(5, 40, (300, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.uniform(0, 1, 300).astype(np.float32)
    ours = pp.nms(boxes, scores, 0.5)
    theirs = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5).numpy()
    assert ours.tolist() == theirs.tolist()


@pytest.mark.parametrize("multi_label", [True, False])
def test_postprocess_matches_ultralytics_nms_on_stock_output(multi_label):
    """Same boxes, scores and classes as ultralytics' non_max_suppression (class-aware) on a stock-layout tensor."""
    import torch
    from ultralytics.utils.nms import non_max_suppression

    rng = np.random.default_rng(2)
    n, nc = 400, 3
    xy = rng.uniform(10, 150, (n, 2))
    wh = rng.uniform(4, 50, (n, 2))
    scores = rng.uniform(0, 1, (n, nc)) ** 3
    pred = np.concatenate([xy, wh, scores], 1).T[None].astype(np.float32)  # [1, 4 + nc, anchors]
    lb = pp.letterbox_geometry(160, 160, 160)
    ours = pp.postprocess([pred], lb, conf=0.05, iou=0.6, max_det=300, multi_label=multi_label)
    theirs = non_max_suppression(torch.from_numpy(pred), 0.05, 0.6, multi_label=multi_label, max_det=300)[0].numpy()
    assert len(ours) == len(theirs) > 20
    theirs[:, :4] = theirs[:, :4].clip(0, 160)  # ultralytics clips when it scales boxes back (val, predict)
    order = np.lexsort((theirs[:, 0], -theirs[:, 4]))
    mine = np.lexsort((ours.boxes[:, 0], -ours.scores))
    assert np.allclose(ours.boxes[mine], theirs[order, :4], atol=1e-3)
    assert np.allclose(ours.scores[mine], theirs[order, 4], atol=1e-6)
    assert ours.classes[mine].tolist() == theirs[order, 5].astype(int).tolist()


def test_split_layout_decodes_like_stock_layout():
    """A split-layout output and the stock tensor built from the same numbers give the same detections;
    the score-sum filter drops nothing that could pass."""
    rng = np.random.default_rng(3)
    strides, nc, size = [8, 16, 32], 2, 64
    split, boxes, scores = [], [], []
    for s in strides:
        g = size // s
        box = rng.normal(0, 3, (1, 64, g, g)).astype(np.float32)
        cls = (rng.uniform(0, 1, (1, nc, g, g)) ** 4).astype(np.float32)
        split += [box, cls, np.clip(cls.sum(1, keepdims=True), 0, 1)]
        boxes.append(pp.dfl_decode(box[0], s))
        scores.append(cls[0].reshape(nc, -1).T)
    b, sc = np.concatenate(boxes), np.concatenate(scores)
    stock = np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2], sc], 1).T[None]
    lb = pp.letterbox_geometry(48, 64, size)
    a = pp.postprocess(split, lb, conf=0.2, iou=0.5, multi_label=True)
    c = pp.postprocess([stock], lb, conf=0.2, iou=0.5, multi_label=True)
    assert len(a) == len(c) > 3
    assert np.allclose(a.boxes, c.boxes, atol=1e-3) and np.allclose(a.scores, c.scores)
    assert a.boxes[:, [1, 3]].max() <= 48  # clipped to the original image, not the canvas


def test_wrong_number_of_outputs_is_one_sentence():
    with pytest.raises(ValueError, match="expected 1 .stock head. or 3 per stride"):
        pp.decode([np.zeros((1, 64, 4, 4)), np.zeros((1, 2, 4, 4))], 32)


def test_stock_layout_is_refused_where_int8_runs():
    stock = [np.zeros((1, 8, 21), np.float32)]
    split = [np.zeros((1, 64, 4, 4)), np.zeros((1, 4, 4, 4)), np.zeros((1, 1, 4, 4))]
    assert pp.layout(stock) == "stock" and pp.layout(split) == "split"
    pp.require_split(split)
    with pytest.raises(ValueError, match=r"^model.rknn has the stock detector head .* re-export it with head: split"):
        pp.require_split(stock, "model.rknn")


def test_reg_max_1_boxes_are_plain_distances_like_ultralytics():
    """YOLO26 (reg_max 1) regresses each side's distance directly: no softmax over bins (a 1-bin DFL would give 0)."""
    import torch
    from ultralytics.utils.tal import dist2bbox, make_anchors

    rng = np.random.default_rng(1)
    strides = [8, 16, 32]
    feats = [rng.uniform(0, 6, (1, 4, 96 // s, 96 // s)).astype(np.float32) for s in strides]
    anchors, stride_t = make_anchors([torch.from_numpy(f) for f in feats], torch.tensor(strides, dtype=torch.float32), 0.5)
    dist = torch.cat([torch.from_numpy(f).view(1, 4, -1) for f in feats], 2)
    theirs = (dist2bbox(dist, anchors.transpose(0, 1).unsqueeze(0), xywh=False, dim=1) * stride_t.transpose(0, 1))[0].T.numpy()
    ours = np.concatenate([pp.dfl_decode(f[0], s) for f, s in zip(feats, strides)])
    assert np.allclose(ours, theirs, atol=1e-4)


@pytest.mark.parametrize("anchors, nc, max_det", [(189, 4, 300), (500, 3, 50), (40, 80, 30)])
def test_end2end_topk_is_ultralytics_selection(anchors, nc, max_det):
    """An end-to-end head's boxes are chosen like ultralytics' Detect.postprocess (top-k anchors by best class, then
    top-k anchor x class pairs), then scores above conf, with no NMS: same boxes, classes and scores."""
    import torch
    from ultralytics.nn.modules.head import Detect

    rng = np.random.default_rng(anchors)
    scores = rng.uniform(0, 1, (anchors, nc)).astype(np.float32) ** 4
    xyxy = np.sort(rng.uniform(0, 96, (anchors, 2, 2)).astype(np.float32), axis=1).reshape(anchors, 4)  # x1 y1 x2 y2
    head = Detect(nc=nc, reg_max=1, end2end=True, ch=(16,))
    head.max_det = max_det
    out = head.postprocess(torch.from_numpy(np.concatenate([xyxy, scores], 1))[None])[0].numpy()
    theirs = out[out[:, 4] > 0.25]  # ultralytics' end-to-end "NMS": scores above conf, nothing else
    # [1, 4 + nc, anchors]
    stock = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2], scores], 1).T[None]
    lb = pp.Letterbox(96, 96, 96, 1.0, 0, 0)
    ours = pp.postprocess([stock], lb, conf=0.25, iou=0.7, max_det=max_det, end2end=True)
    assert len(ours) == len(theirs) > 0
    assert np.array_equal(ours.classes, theirs[:, 5].astype(np.int64)) and np.allclose(ours.scores, theirs[:, 4])
    assert np.allclose(ours.boxes, theirs[:, :4], atol=1e-3)
