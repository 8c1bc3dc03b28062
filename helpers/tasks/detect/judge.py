"""The judges whose metric is a COCO mAP50-95 of decoded outputs (helpers.tasks.scoring.Judge): CocoJudge, the part
detect, segment and pose share (decode once, match once, paired bootstrap), and DetectJudge (box mAP50-95)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from helpers.tasks.detect.metric import Matching, box_records, match, paired_matchings
from helpers.tasks.detect.postprocess import postprocess
from helpers.tasks.measures import Outputs
from helpers.tasks.noise import Paired
from helpers.tasks.scoring import Judge

MAX_DET = 300  # val-style decoding and scoring: conf 0.001, IoU 0.7, at most 300 predictions per image
MEMO = 3  # outputs whose matchings a judge keeps besides FP32's (a score and the paired verdicts of a model reuse them)


@dataclass
class CocoJudge(Judge):
    """A judge of decoded predictions by a COCO mAP50-95: FP32's matchings are kept, and so are the last few other
    outputs' (score() then paired() of one model decode and match it once; outputs are compared by identity, so a
    caller passes a new list per model rather than refilling one)."""

    TASK: ClassVar[str] = ""
    IOU_TYPE: ClassVar[str] = "bbox"  # what matched() compares: bbox, segm or keypoints (helpers.tasks.detect.metric)
    KEY: ClassVar[str] = ""
    LABEL: ClassVar[str] = ""
    AGREEMENT: ClassVar[str] = ""

    split: Any = field(default=None, repr=False)  # the task's split: truth and names (pose: kpt_shape, sigmas)
    geoms: list = field(default_factory=list, repr=False)
    decode: dict = field(default_factory=dict, repr=False)  # postprocess keywords from the ONNX (end2end: top-k, no NMS)
    _memo: dict = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def of(cls, paths: Sequence[Any], pixels: np.ndarray, fp32_outputs: Outputs, split: Any, geoms: Sequence[Any],
           decode: dict | None = None) -> "CocoJudge":
        """The judge of this task on these images (letterboxed pixels, their geoms) with its metric's names filled in."""
        return cls(cls.TASK, cls.KEY, cls.LABEL, cls.AGREEMENT, list(paths), pixels, fp32_outputs, split=split,
                   geoms=list(geoms), decode=dict(decode or {}))

    def decoded(self, outputs: Outputs) -> list:
        """Each image's raw outputs decoded (val-style thresholds), in original image pixels; implemented per task."""
        raise NotImplementedError

    def matched(self, predictions: list) -> Matching:
        """pycocotools' matching of decoded predictions to the split's truth; implemented per task."""
        raise NotImplementedError

    def _kept(self, outputs: Outputs) -> dict:
        """The memo of these outputs (compared by identity, held alive while kept): FP32's always, and the last
        MEMO others' (a comparison against another reference decodes neither twice)."""
        if outputs is self.fp32_outputs:
            return self._memo.setdefault("fp32", {"outputs": outputs})
        others = self._memo.setdefault("others", [])
        kept = next((m for m in others if m["outputs"] is outputs), None)
        if kept is None:
            kept = {"outputs": outputs}
            others[:] = [kept, *others][:MEMO]
        return kept

    def predictions(self, outputs: Outputs) -> list:
        """Each image's raw outputs decoded into predictions (val-style thresholds), in original image pixels; decoded
        on each call, not kept (a seg model's full-size masks are large; the matchings are what the metric reads)."""
        return self.decoded(outputs)

    def _matchings(self, outputs: Outputs) -> dict:
        """These outputs' task matching and box matching, from one decode, kept (see _kept)."""
        kept = self._kept(outputs)
        if "matching" not in kept:
            preds = self.predictions(outputs)
            kept["matching"] = self.matched(preds)
            kept["box"] = kept["matching"] if self.IOU_TYPE == "bbox" else match(
                *box_records(self.split.truth, preds), self.split.names, "bbox", MAX_DET)
        return kept

    def matching(self, outputs: Outputs) -> Matching:
        """The COCO matching of these outputs' predictions in the task's own terms (boxes, masks or keypoints)."""
        return self._matchings(outputs)["matching"]

    def box_map(self, outputs: Outputs) -> float:
        """Box mAP50-95 of these outputs' predictions (any task's: boxes, scores, classes against the truth's boxes)."""
        return self._matchings(outputs)["box"].map_of()

    def paired(self, outputs: Outputs, reference: Outputs | None = None, resamples: int = 50) -> Paired:
        """The metric against the reference's (FP32 by default): paired bootstrap over the same images."""
        ref = self.matching(self.fp32_outputs if reference is None else reference)
        return paired_matchings(ref, self.matching(outputs), resamples)


@dataclass
class DetectJudge(CocoJudge):
    """COCO mAP50-95 (pycocotools, val-style thresholds) of a detector's decoded outputs; agreement = mAP50."""

    TASK: ClassVar[str] = "detect"
    KEY: ClassVar[str] = "map50_95"
    LABEL: ClassVar[str] = "mAP50-95"
    AGREEMENT: ClassVar[str] = "map50"

    def decoded(self, outputs: Outputs) -> list:
        """Boxes, scores and classes per image (helpers.tasks.detect.postprocess)."""
        return [postprocess(o, lb, conf=0.001, iou=0.7, max_det=MAX_DET, multi_label=True, **self.decode)
                for o, lb in zip(outputs, self.geoms)]

    def detections(self, outputs: Outputs) -> list:
        """Each image's raw outputs decoded into boxes (val-style thresholds), in original image pixels."""
        return self.decoded(outputs)

    def matched(self, predictions: list) -> Matching:
        """bbox matching of the boxes."""
        return match(*box_records(self.split.truth, predictions), self.split.names, "bbox", MAX_DET)

    def metric(self, outputs: Outputs) -> tuple[float, float]:
        """COCO mAP50-95 and mAP50 of the decoded outputs against the labels."""
        m = self.matching(outputs).metric(self.split.names)
        return m.map50_95, m.map50
