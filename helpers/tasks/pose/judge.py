"""The judge of a pose model: COCO OKS mAP50-95 of its decoded keypoints with the data's sigmas, box mAP50-95 beside it
(helpers.tasks.scoring.Judge), so notebooks 50 and 60 rank pose models as they rank detectors."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from helpers.tasks.detect.judge import MAX_DET, CocoJudge
from helpers.tasks.detect.metric import Matching
from helpers.tasks.measures import Outputs
from helpers.tasks.pose.metric import keypoint_matching
from helpers.tasks.pose.postprocess import postprocess


@dataclass
class PoseJudge(CocoJudge):
    """OKS mAP50-95 (pycocotools keypoints with split.sigmas, val-style thresholds) of a pose model's decoded outputs;
    agreement = box mAP50-95 of the same predictions (keypoints drifting while boxes hold is the INT8 symptom)."""

    TASK: ClassVar[str] = "pose"
    IOU_TYPE: ClassVar[str] = "keypoints"
    KEY: ClassVar[str] = "pose_map50_95"
    LABEL: ClassVar[str] = "pose mAP50-95"
    AGREEMENT: ClassVar[str] = "box_map50_95"

    def decoded(self, outputs: Outputs) -> list:
        """Boxes, scores, classes and keypoints per image (helpers.tasks.pose.postprocess, split.kpt_shape)."""
        return [postprocess(o, lb, self.split.kpt_shape, conf=0.001, iou=0.7, max_det=MAX_DET, multi_label=True, **self.decode)
                for o, lb in zip(outputs, self.geoms)]

    def matched(self, predictions: list) -> Matching:
        """keypoints (OKS) matching with the split's sigmas."""
        return keypoint_matching(self.split.truth, predictions, self.split.names, self.split.sigmas, MAX_DET)

    def metric(self, outputs: Outputs) -> tuple[float, float]:
        """OKS mAP50-95 and box mAP50-95 of the decoded outputs against the labels."""
        return self.matching(outputs).map_of(), self.box_map(outputs)
