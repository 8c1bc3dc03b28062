"""helpers/steps/export/guard.py on synthetic detections (no model): what counts as agreeing with the original model, and
the classifier's sentence. The guard on a real model: tests/test_yolo26.py."""
from __future__ import annotations

import numpy as np
import pytest

from helpers.core.errors import WorkbookError
from helpers.steps.export import guard
from helpers.tasks.detect.postprocess import Detections


def dets(boxes, scores, classes) -> Detections:
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32), np.asarray(classes, np.int64))


ORIGINAL = [dets([[10, 10, 40, 40], [50, 50, 90, 80], [5, 60, 30, 90]], [0.9, 0.7, 0.05], [0, 1, 2]),
            dets([[20, 30, 60, 70]], [0.8], [3])]


def test_the_same_boxes_agree_and_low_scores_do_not_count():
    ours = [dets(d.boxes + 0.01, d.scores + 1e-4, d.classes) for d in ORIGINAL]
    ours[0] = dets(ours[0].boxes[:2], ours[0].scores[:2], ours[0].classes[:2])  # the 0.05 box is below half the best score
    r = guard.compare(ORIGINAL, ours)
    assert r.ok and r.theirs == r.ours == 3 and r.found_theirs == r.found_ours == 1.0 and r.mean_iou > 0.99


@pytest.mark.parametrize("change", ["boxes shrunk to their corner", "class swapped", "scores halved", "an extra box"])
def test_a_misread_output_disagrees(change):
    ours = [dets(d.boxes, d.scores, d.classes) for d in ORIGINAL]
    d = ours[0]
    if change == "boxes shrunk to their corner":  # what a 1-bin DFL did to YOLO26: every distance 0
        ours[0] = dets(np.repeat(d.boxes[:, :2], 2, axis=1), d.scores, d.classes)
    elif change == "class swapped":
        ours[0] = dets(d.boxes, d.scores, (d.classes + 1) % 4)
    elif change == "scores halved":
        ours[0] = dets(d.boxes, d.scores / 2, d.classes)
    else:
        ours[1] = dets(np.vstack([ours[1].boxes, [[0, 0, 30, 30]]]), [0.8, 0.85], [3, 1])
    assert not guard.compare(ORIGINAL, ours).ok


def test_an_export_that_finds_nothing_disagrees():
    """The silent zero itself: the original finds boxes, the export's decode none."""
    empty = [dets(np.zeros((0, 4)), [], []) for _ in ORIGINAL]
    r = guard.compare(ORIGINAL, empty)
    assert not r.ok and r.found_theirs == 0.0


def test_nothing_confident_on_either_side_is_no_disagreement():
    empty = [dets(np.zeros((0, 4)), [], []) for _ in range(2)]
    r = guard.compare(empty, empty)
    assert r.ok and r.theirs == r.ours == 0


def test_classifier_disagreement_is_one_sentence():
    guard.check_classifier(1.0, 8, "model.pt")
    with pytest.raises(WorkbookError) as err:
        guard.check_classifier(0.5, 8, "/x/model.pt")
    msg = str(err.value)
    assert msg.count(". ") == 0 and "classifier model.pt" in msg and "50% of 8 images" in msg and "do not convert it" in msg
