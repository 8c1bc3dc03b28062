"""The judge of a detector: COCO mAP50-95 of its decoded outputs (helpers.tasks.scoring.Judge)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from helpers.tasks.detect.metric import coco_map, paired_map
from helpers.tasks.detect.postprocess import postprocess
from helpers.tasks.measures import Outputs
from helpers.tasks.noise import Paired
from helpers.tasks.scoring import Judge


@dataclass
class DetectJudge(Judge):
    """COCO mAP50-95 (pycocotools, val-style thresholds) of a detector's decoded outputs; agreement = mAP50."""

    split: Any = field(default=None, repr=False)  # helpers.tasks.detect.labels.DetectionSplit
    geoms: list = field(default_factory=list, repr=False)
    decode: dict = field(default_factory=dict, repr=False)  # postprocess keywords from the ONNX (end2end: top-k, no NMS)

    def detections(self, outputs: Outputs) -> list:
        """Each image's raw outputs decoded into boxes (val-style thresholds), in original image pixels."""
        return [postprocess(o, lb, conf=0.001, iou=0.7, max_det=300, multi_label=True, **self.decode)
                for o, lb in zip(outputs, self.geoms)]

    def metric(self, outputs: Outputs) -> tuple[float, float]:
        """COCO mAP50-95 and mAP50 of the decoded outputs against the labels."""
        m = coco_map(self.split.truth, self.detections(outputs), self.split.names, max_det=300)
        return m.map50_95, m.map50

    def paired(self, outputs: Outputs, reference: Outputs | None = None, resamples: int = 50) -> Paired:
        """mAP50-95 against the reference's (FP32 by default): paired bootstrap over the same images."""
        a = self.detections(self.fp32_outputs if reference is None else reference)
        return paired_map(self.split.truth, a, self.detections(outputs), self.split.names, resamples=resamples)

