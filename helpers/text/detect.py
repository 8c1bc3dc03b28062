"""The sentences notebook 30 shows about a detector (or segmentation / pose model: their mask or keypoint mAP, named
as metrics.json's metric_label), computed from its eval/metrics.json: the verdict, the
stock-vs-split head pitfall, the end-to-end head, and the colour-order bug; every INT8-vs-reference difference is
quoted with its paired interval (helpers.tasks.noise, stored per row as "paired" by helpers.steps.detect_eval)."""
from __future__ import annotations

from typing import Any

from helpers.steps.detect_eval import BGR, row
from helpers.tasks.noise import Paired


def verdict(metrics: dict[str, Any]) -> str:
    """What the run's numbers say about INT8 on this detector, in sentences computed from them: metrics.json's
    verdict (the paired mAP50-95 interval of the one noise rule), then the check against ultralytics' val()."""
    label = _label(metrics)
    head = metrics["head"]
    fp32 = row(metrics, head, "FP32")
    line = metrics.get("verdict") or "This run's metrics predate the paired verdict; re-run notebook 30."
    text = f"**Verdict ({head} head, {metrics['images']} images, {metrics['instances']} objects):** {line}"
    uv = metrics.get("ultralytics_val")
    if uv:
        gap = 100 * abs(fp32["map50_95"] - uv["map50_95"])
        agree = "agrees with" if gap <= 1 else "differs from"
        text += (f" The workbook's FP32 {label} {agree} ultralytics' own val() of the same weights ({uv['map50_95']:.3f}, "
                 f"{gap:.1f} pt apart), which checks the decode and "
                 f"{'the top-k selection' if metrics.get('end2end') else 'NMS'}.")
    return text


def _label(metrics: dict[str, Any]) -> str:
    """How sentences name the run's metric: "mAP50-95" for a detector, "mask mAP50-95" or "pose mAP50-95" otherwise."""
    return str(metrics.get("metric_label", "mAP50-95")).split(" (")[0]


def _judged(r: dict[str, Any] | None) -> Paired | None:
    """A row's paired verdict against its reference (None when the row or its verdict is missing)."""
    return Paired.from_dict(r["paired"]) if r and r.get("paired") else None


def end_to_end(metrics: dict[str, Any]) -> str:
    """For an end-to-end head (YOLO26, YOLOv10): how it is decoded and what INT8 did to it, from this run's
    numbers; "" for an NMS head."""
    label = _label(metrics)
    if not metrics.get("end2end"):
        return ""
    split_fp, split_q = row(metrics, "split", "FP32"), row(metrics, "split", "INT8")
    stock_q = row(metrics, "stock", "INT8")
    reg = metrics.get("reg_max")
    text = ("**End-to-end head.** This detector was trained with a one-to-one assignment (one prediction per object), so it "
            "needs no non-maximum suppression: the workbook exports that branch and keeps ultralytics' top-k on the host "
            "(the best anchors by class score, then the best box-and-class pairs; the NPU has no TopK). "
            + (f"Its boxes are regressed as plain distances (reg_max {reg}), not as 16-bin distributions. " if reg == 1 else ""))
    uv = metrics.get("ultralytics_val")
    if uv and split_fp:
        text += (f"ultralytics' own val() in its end-to-end mode (nms=False) gives {label} {uv['map50_95']:.3f}, the workbook's "
                 f"FP32 decode {split_fp['map50_95']:.3f} ({100 * abs(split_fp['map50_95'] - uv['map50_95']):.1f} pt apart). ")
    split, stock = _judged(split_q), _judged(stock_q)
    if split and stock:
        text += (f"INT8 against FP32 in {label} on these {metrics['images']} images: split head {split.text}, stock head "
                 f"{stock.text}: ")
        text += ("the one-INT8-scale pitfall above is about the output layout, not the family, and the split head is the "
                 "fix for an end-to-end head too." if stock.verdict == "worse" and stock.high_pt < split.low_pt else
                 "here the two layouts' intervals overlap, so this model does not show the layout pitfall clearly.")
    return text


def pitfall(metrics: dict[str, Any]) -> str:
    """The stock-vs-split lesson with this run's numbers: mAP, top class score and whole-tensor cosine."""
    label = _label(metrics)
    split_fp, split_q = row(metrics, "split", "FP32"), row(metrics, "split", "INT8")
    stock_fp, stock_q = row(metrics, "stock", "FP32"), row(metrics, "stock", "INT8")
    if not (split_q and stock_q):
        return "Only one head was exported (an ONNX was given), so there is no stock-vs-split comparison in this run."
    collapsed = stock_q["map50_95"] < 0.5 * stock_fp["map50_95"]
    against = {h: f": {_judged(r).text}" if _judged(r) else "" for h, r in (("stock", stock_q), ("split", split_q))}
    text = (f"On the same {metrics['images']} images, INT8 with the **stock** head reaches {label} {stock_q['map50_95']:.3f} "
            f"(FP32 {stock_fp['map50_95']:.3f}{against['stock']}; top class score {stock_q['top_score']:.3f} vs "
            f"{stock_fp['top_score']:.3f}), INT8 with the **split** head {split_q['map50_95']:.3f} (FP32 "
            f"{split_fp['map50_95']:.3f}{against['split']}; top score {split_q['top_score']:.3f}). ")
    text += (f"The whole-tensor cosine of the stock head's INT8 output to its FP32 output is {stock_q['cosine_mean']:.4f} on "
             f"average (lowest {stock_q['cosine_min']:.4f}); the split head's outputs, flattened together the same way, give "
             f"{split_q['cosine_mean']:.4f}. ")
    if collapsed and stock_q["cosine_mean"] > 0.99:
        text += ("So the cosine read almost 1 while the stock head's detections vanished: the box coordinates "
                 f"(0..{metrics.get('imgsz', 'imgsz')} px) carry nearly all of the tensor's length, the 0..1 class scores almost "
                 "none, so rounding every score to zero barely turns the vector. One INT8 scale for both is the bug; the "
                 "cosine cannot see it because it weighs values by size.")
    elif collapsed:
        text += "The stock head's detections collapsed under INT8; judge a detector by its mAP, not by one similarity number."
    else:
        text += ("Here the stock head kept most of its mAP under INT8, so this model does not show the pitfall strongly; "
                 "the split head is still the layout whose scores get a scale of their own.")
    return text


def colour_pitfall(metrics: dict[str, Any]) -> str:
    """The colour-order bug in this run's mAP: the INT8 model fed BGR images against the same model fed RGB."""
    label = _label(metrics)
    head = metrics["head"]
    rgb, bgr = row(metrics, head, "INT8"), row(metrics, head, BGR)
    if bgr is None:
        return "This run's metrics predate the colour-order row; re-run notebook 30 to measure it."
    judged = _judged(bgr)
    text = (f"With the tutorial's colour bug the INT8 model ({head} head) reaches {label} **{bgr['map50_95']:.3f}** instead of "
            f"{rgb['map50_95']:.3f} on these {metrics['images']} images")
    if judged is None:
        return text + ". Re-run notebook 30 for its paired interval."
    text += f": {judged.text} against the same model fed RGB"
    if judged.verdict == "worse":
        return (text + ". How much a detector loses depends on how much colour tells its classes apart; expect a different "
                "size on your own data, never zero risk.")
    what = "the swapped colours happen to score higher" if judged.verdict == "better" else "the bug's effect is within noise"
    return (text + f": on these images {what}. That says something about these images and classes, not about the bug: a "
            "model whose classes differ by colour (traffic lights, ripe fruit) loses much more. Keep the conversion.")
