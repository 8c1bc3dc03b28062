"""The judge of an instance-segmentation model: COCO mask mAP50-95 of its decoded outputs, box mAP50-95 beside it
(helpers.tasks.scoring.Judge), so notebooks 50 and 60 rank seg models as they rank detectors."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from helpers.tasks.detect.judge import MAX_DET, CocoJudge
from helpers.tasks.detect.metric import Matching
from helpers.tasks.measures import Outputs
from helpers.tasks.segment.metric import mask_matching
from helpers.tasks.segment.postprocess import postprocess


@dataclass
class SegmentJudge(CocoJudge):
    """Mask mAP50-95 (pycocotools segm, val-style thresholds) of a seg model's decoded outputs; agreement = box
    mAP50-95 of the same predictions (masks suffering more than boxes is what INT8 on the prototypes does)."""

    TASK: ClassVar[str] = "segment"
    IOU_TYPE: ClassVar[str] = "segm"
    KEY: ClassVar[str] = "mask_map50_95"
    LABEL: ClassVar[str] = "mask mAP50-95"
    AGREEMENT: ClassVar[str] = "box_map50_95"

    def decoded(self, outputs: Outputs) -> list:
        """Boxes, scores, classes and masks per image (helpers.tasks.segment.postprocess)."""
        return [postprocess(o, lb, conf=0.001, iou=0.7, max_det=MAX_DET, multi_label=True, **self.decode)
                for o, lb in zip(outputs, self.geoms)]

    def matched(self, predictions: list) -> Matching:
        """segm matching of the masks."""
        return mask_matching(self.split.truth, predictions, self.split.names, MAX_DET)

    def metric(self, outputs: Outputs) -> tuple[float, float]:
        """Mask mAP50-95 and box mAP50-95 of the decoded outputs against the labels."""
        return self.matching(outputs).map_of(), self.box_map(outputs)
