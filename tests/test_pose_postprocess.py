"""helpers/tasks/pose/postprocess.py on synthetic raw outputs: a known answer through the letterbox, the split layout
against ultralytics' own keypoint decode (YOLO11 and YOLO26 Pose heads), and boxes/scores/classes identical to the
detection task's decode of the same box and class channels. No model needed."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from helpers.tasks.detect import postprocess as det
from helpers.tasks.pose import postprocess as pp

STRIDES = (8, 16, 32)
SIZE = 160


def test_postprocess_ships_beside_the_detectors():
    """It ships byte-identical in the board bundle: numpy, plus the detector's postprocess.py it ships beside (the one
    DFL decode, NMS, top-k and un-letterboxing), which it also finds there under its bundle name."""
    tree = ast.parse(Path(pp.__file__).read_text())
    top = {n.names[0].name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)}
    top |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert top <= {"numpy", "dataclasses", "typing", "__future__", "helpers.tasks.detect.postprocess", "postprocess"}, top


def _stock(nc: int, k: int, objects: list[tuple[int, list[float], int, float, np.ndarray]]) -> np.ndarray:
    """A stock tensor [1, 4 + nc + 3k, anchors] of background noise with the given (anchor, xywh, class, score,
    keypoints [k, 3]) set."""
    anchors = sum((SIZE // s) ** 2 for s in STRIDES)
    rng = np.random.default_rng(0)
    pred = np.zeros((4 + nc + 3 * k, anchors), np.float32)
    pred[:4] = np.array([[80], [80], [10], [10]], np.float32)
    pred[4:4 + nc] = rng.uniform(0, 0.05, (nc, anchors))
    pred[4 + nc:] = rng.uniform(0, SIZE, (3 * k, anchors))
    for a, xywh, cls, score, kpts in objects:
        pred[:4, a] = xywh
        pred[4 + cls, a] = score
        pred[4 + nc:, a] = kpts.reshape(-1)
    return pred[None]


def test_stock_known_answer_through_the_letterbox():
    """Two figures on a 160x120 image letterboxed into 160x160 (20 px of grey above): boxes and keypoints come back 20 px
    up, best first, the overlapping duplicate suppressed, a keypoint in the padding clipped to the image."""
    lb = det.letterbox_geometry(120, 160, SIZE)
    assert (lb.scale, lb.left, lb.top) == (1.0, 0, 20)
    k1 = np.array([[50, 40, 0.9], [60, 70, 0.8], [55, 10, 0.1]], np.float32)  # the third in the padding (y < 20)
    k2 = np.array([[120, 100, 0.95], [130, 110, 0.2], [125, 90, 0.7]], np.float32)
    objects = [(30, [55, 55, 30, 50], 1, 0.8, k1), (31, [56, 55, 30, 50], 1, 0.6, k1 + 2),  # a duplicate of the first
               (400, [125, 100, 20, 30], 0, 0.9, k2)]
    poses = pp.postprocess(_stock(2, 3, objects), lb, (3, 3), conf=0.25)
    assert len(poses) == 2
    assert poses.classes.tolist() == [0, 1] and np.allclose(poses.scores, [0.9, 0.8])
    assert np.allclose(poses.boxes, [[115, 65, 135, 95], [40, 10, 70, 60]])
    assert np.allclose(poses.keypoints[0], k2 - [0, 20, 0])
    assert np.allclose(poses.keypoints[1], [[50, 20, 0.9], [60, 50, 0.8], [55, 0, 0.1]])  # clipped at the image's top


def _ultralytics_kpts(raw: list[np.ndarray], head_cls: str, k: int) -> np.ndarray:
    """ultralytics' own decode of a Pose head's raw keypoint maps: [anchors, k, 3] in input pixels."""
    import torch
    from ultralytics.nn.modules import head as heads
    from ultralytics.utils.tal import make_anchors

    head = getattr(heads, head_cls)(nc=1, kpt_shape=(k, 3), ch=(16, 32, 64))
    t = [torch.from_numpy(r) for r in raw]
    anchors, strides = make_anchors(t, torch.tensor(STRIDES, dtype=torch.float32), 0.5)
    head.anchors, head.strides = anchors.transpose(0, 1), strides.transpose(0, 1)
    flat = torch.cat([x.view(1, 3 * k, -1) for x in t], 2)
    with torch.no_grad():
        return head.kpts_decode(flat)[0].numpy().T.reshape(-1, k, 3)


@pytest.mark.parametrize("head_cls, to_offset", [("Pose", lambda r: 2 * r), ("Pose26", lambda r: r + 0.5)])
def test_split_keypoints_match_ultralytics_decode(head_cls, to_offset):
    """The split layout's cell offsets (2 * raw for YOLO11's Pose, raw + 0.5 for YOLO26's) decode to ultralytics' pixels."""
    k = 4
    rng = np.random.default_rng(1)
    raw = [rng.normal(0, 1.5, (1, 3 * k, SIZE // s, SIZE // s)).astype(np.float32) for s in STRIDES]
    outs = []
    for r, s in zip(raw, STRIDES):
        y = r.reshape(1, k, 3, SIZE // s, SIZE // s).copy()
        y[:, :, :2] = to_offset(y[:, :, :2])
        y[:, :, 2] = 1 / (1 + np.exp(-y[:, :, 2]))
        outs += [rng.normal(0, 2, (1, 64, SIZE // s, SIZE // s)).astype(np.float32), np.zeros((1, 1, SIZE // s, SIZE // s)),
                 np.zeros((1, 1, SIZE // s, SIZE // s)), y.reshape(1, 3 * k, SIZE // s, SIZE // s)]
    _, _, ours = pp.decode(outs, SIZE, (k, 3))
    assert np.allclose(ours, _ultralytics_kpts(raw, head_cls, k), atol=1e-3)


def _split_outputs(rng: np.random.Generator, nc: int, k: int) -> list[np.ndarray]:
    outs = []
    for s in STRIDES:
        n = SIZE // s
        cls = (rng.uniform(0, 1, (1, nc, n, n)) ** 6).astype(np.float32)
        outs += [rng.normal(0, 2, (1, 64, n, n)).astype(np.float32), cls, cls.sum(1, keepdims=True).clip(0, 1),
                 rng.uniform(-1, 3, (1, 3 * k, n, n)).astype(np.float32)]
    first = 0
    for kpt in outs[3::4]:  # the first keypoint's visibility holds the anchor's index, to tell which anchor a pose is
        n = kpt.shape[-1]
        kpt[0, 2] = first + np.arange(n * n, dtype=np.float32).reshape(n, n)
        first += n * n
    return outs


@pytest.mark.parametrize("layout", ["stock", "split"])
@pytest.mark.parametrize("end2end, multi_label", [(False, False), (False, True), (True, False)])
def test_boxes_scores_classes_are_the_detection_tasks(layout, end2end, multi_label):
    """Same decode rules as detect: its postprocess on the box and class channels alone keeps the same boxes, scores,
    classes in the same order; each pose's keypoints are those of its anchor."""
    rng = np.random.default_rng(2)
    nc, k = 3, 5
    lb = det.letterbox_geometry(100, 160, SIZE)
    if layout == "split":
        outs = _split_outputs(rng, nc, k)
        det_outs = [o for i, o in enumerate(outs) if i % 4 != 3]
    else:
        n = sum((SIZE // s) ** 2 for s in STRIDES)
        xy, wh = rng.uniform(10, 150, (2, n)), rng.uniform(4, 50, (2, n))
        outs = [np.concatenate([xy, wh, rng.uniform(0, 1, (nc, n)) ** 3, rng.uniform(0, SIZE, (3 * k, n))])[None]]
        outs[0][0, 4 + nc + 2] = np.arange(n)  # the first keypoint's visibility: the anchor's index
        det_outs = [outs[0][:, :4 + nc]]
    theirs = det.postprocess(det_outs, lb, conf=0.1, iou=0.5, max_det=50, multi_label=multi_label, end2end=end2end)
    ours = pp.postprocess(outs, lb, (k, 3), conf=0.1, iou=0.5, max_det=50, multi_label=multi_label, end2end=end2end)
    assert len(ours) == len(theirs) > 5
    assert np.array_equal(ours.boxes, theirs.boxes) and np.array_equal(ours.scores, theirs.scores)
    assert np.array_equal(ours.classes, theirs.classes) and ours.keypoints.shape == (len(ours), k, 3)
    boxes, _, kpts = pp.decode(outs, SIZE, (k, 3))  # each pose carries the keypoints of the anchor its box came from
    rows = np.round(ours.keypoints[:, 0, 2]).astype(np.int64)  # the anchor's index, planted in a visibility channel
    assert np.array_equal(ours.boxes, det.unletterbox(boxes[rows], lb))
    assert np.array_equal(ours.keypoints, pp.unletterbox_keypoints(kpts[rows], lb))


def test_keypoints_without_visibility_and_wrong_shapes():
    """An ndim-2 model's keypoints get visibility 1.0; a kpt_shape that does not fit the outputs is a sentence."""
    objects = [(10, [50, 50, 20, 20], 0, 0.9, np.array([[40, 45], [60, 55]], np.float32))]
    pred = _stock(1, 3, [])[:, :4 + 1 + 4]
    pred[0, :4, 10], pred[0, 4, 10], pred[0, 5:, 10] = objects[0][1], 0.9, objects[0][4].reshape(-1)
    poses = pp.postprocess(pred, det.letterbox_geometry(160, 160, SIZE), (2, 2))
    assert np.allclose(poses.keypoints, [[[40, 45, 1], [60, 55, 1]]])
    with pytest.raises(ValueError, match=r"^Pose output has 9 channels, too few for 4 box \+ classes \+ 17x3 keypoint"):
        pp.decode(pred, SIZE, (17, 3))
    with pytest.raises(ValueError, match=r"^Pose keypoint output has 15 channels, not 17x3 = 51; pass the model's own"):
        pp.decode(_split_outputs(np.random.default_rng(0), 1, 5), SIZE, (17, 3))
    with pytest.raises(ValueError, match=r"^Pose model gave 9 outputs; expected 1 \(stock head\) or 4 per stride"):
        pp.layout([pred] * 9)



def test_real_pose_head_output_decodes_like_ultralytics():
    """ultralytics' own Pose head (2 classes, 7 keypoints, random weights) on random P3-P5 features: its inference output
    (the stock layout it exports) through this decode gives ultralytics' NMS + scale_boxes / scale_coords, pose for pose,
    on a 160x120 image letterboxed into 160x160."""
    import torch
    from ultralytics.nn.modules.head import Pose
    from ultralytics.utils import ops
    from ultralytics.utils.nms import non_max_suppression

    torch.manual_seed(0)
    head = Pose(nc=2, kpt_shape=(7, 3), ch=(16, 32, 64)).eval()
    head.stride = torch.tensor(STRIDES, dtype=torch.float32)
    feats = [torch.randn(1, c, SIZE // s, SIZE // s) for c, s in zip((16, 32, 64), STRIDES)]
    with torch.no_grad():
        raw = head(feats)[0]  # [1, 4 + 2 + 21, 525]
    assert raw.shape == (1, 27, sum((SIZE // s) ** 2 for s in STRIDES))
    lb = det.letterbox_geometry(120, 160, SIZE)
    theirs = non_max_suppression(raw.clone(), 0.5, 0.7, nc=2, multi_label=True, max_det=300)[0]
    boxes = ops.scale_boxes((SIZE, SIZE), theirs[:, :4].clone(), (120, 160)).numpy()
    kpts = ops.scale_coords((SIZE, SIZE), theirs[:, 6:].view(-1, 7, 3).clone(), (120, 160)).numpy()
    ours = pp.postprocess([raw.numpy()], lb, (7, 3), conf=0.5, iou=0.7, max_det=300, multi_label=True)
    assert len(ours) == len(theirs) > 3
    assert np.allclose(ours.scores, theirs[:, 4].numpy(), atol=1e-6) and ours.classes.tolist() == theirs[:, 5].int().tolist()
    assert np.allclose(ours.boxes, boxes, atol=1e-2) and np.allclose(ours.keypoints, kpts, atol=1e-2)
