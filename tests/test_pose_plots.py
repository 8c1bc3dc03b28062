"""helpers.tasks.pose.plots: a run's eval/detections.json drawn as FP32 vs INT8 pictures, keypoints joined by the
skeleton when there is one and shown as points when not, without a model."""
from __future__ import annotations

import json

import cv2
import numpy as np

from helpers.core.paths import Run
from helpers.tasks.pose.metric import predictions_json
from helpers.tasks.pose.postprocess import Poses

KPTS = np.array([[[10, 10, 0.9], [20, 20, 0.9], [30, 10, 0.9], [5, 35, 0.1]]], np.float32)  # the last one not seen


def _run(tmp_path, skeleton=None) -> Run:
    run = Run.at(tmp_path / "run")
    run.eval.mkdir(parents=True, exist_ok=True)
    path = str(tmp_path / "0.png")
    cv2.imwrite(path, np.full((40, 60, 3), 100, np.uint8))
    pose = Poses(np.array([[5, 5, 35, 38]], np.float32), np.array([0.9], np.float32), np.array([0]), KPTS)
    record = {"images": [path], "classes": ["figure"],
              "backends": {"FP32": predictions_json([pose]), "INT8": predictions_json([pose])}}
    if skeleton is not None:
        record["skeleton"] = skeleton
    (run.eval / "detections.json").write_text(json.dumps(record))
    return run


def test_skeleton_lines_join_the_keypoints_seen(tmp_path):
    from helpers.tasks.pose.plots import plot_poses

    fig = plot_poses(_run(tmp_path, [[0, 1], [1, 2], [2, 3]]), images=1, path=tmp_path / "poses.png")
    assert len(fig.axes) == 2 and [ax.get_title() for ax in fig.axes] == ["FP32", "INT8"]
    assert len(fig.axes[0].lines) == 2  # (2, 3) is left out: keypoint 3 is not seen
    assert len(fig.axes[0].collections[0].get_offsets()) == 3 and (tmp_path / "poses.png").stat().st_size > 0


def test_without_a_skeleton_the_points_alone_and_a_given_one_wins(tmp_path):
    from helpers.tasks.pose.plots import plot_poses

    run = _run(tmp_path)
    assert len(plot_poses(run, images=1).axes[0].lines) == 0
    assert len(plot_poses(run, images=1, skeleton=[[0, 2]]).axes[0].lines) == 1
