"""helpers.tasks.segment.plots: a run's eval/detections.json (masks as RLE) drawn as FP32 vs INT8 pictures, masks
blended in their class colour, without a model."""
from __future__ import annotations

import json

import cv2
import numpy as np

from helpers.core.paths import Run
from helpers.tasks.segment.metric import predictions_json
from helpers.tasks.segment.plots import blend, plot_masks
from helpers.tasks.segment.postprocess import Segmentation


def _seg(x1: int, score: float) -> Segmentation:
    mask = np.zeros((1, 40, 60), bool)
    mask[0, 10:30, x1:x1 + 20] = True
    return Segmentation(np.array([[x1, 10, x1 + 20, 30]], np.float32), np.array([score], np.float32), np.array([1]), mask)


def test_masks_are_blended_in_their_class_colour_only_where_they_are():
    grey = np.full((40, 60, 3), 128, np.uint8)
    det = predictions_json([_seg(5, 0.9)])[0]
    out = blend(grey, det, min_score=0.25)
    assert (out[20, 10] != 128).any() and (out[20, 50] == 128).all()  # inside the mask coloured, outside untouched
    assert out[20, 10, 0] > out[20, 10, 2]  # class 1 is matplotlib's C1, orange: more red than blue
    assert (blend(grey, det, min_score=0.95) == grey).all()  # below the score drawn: no mask


def test_plot_masks_draws_fp32_and_int8_side_by_side(tmp_path):
    run = Run.at(tmp_path / "run")
    run.eval.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"{i}.png"))
        cv2.imwrite(paths[-1], np.full((40, 60, 3), 100, np.uint8))
    record = {"images": paths, "classes": ["disc", "star"],
              "backends": {"FP32 split head": predictions_json([_seg(5, 0.9)] * 3),
                           "INT8 split head": predictions_json([_seg(8, 0.8)] * 3),
                           "INT8 split head, BGR input (bug)": predictions_json([_seg(8, 0.1)] * 3)}}
    (run.eval / "detections.json").write_text(json.dumps(record))
    fig = plot_masks(run, images=2, path=run.eval / "masks.png")
    assert len(fig.axes) == 4 and [ax.get_title() for ax in fig.axes[:2]] == ["FP32 split head", "INT8 split head"]
    assert (run.eval / "masks.png").stat().st_size > 0
