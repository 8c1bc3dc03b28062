"""The sentences of the run's index page: how a metric value is shown and the one-line verdict, built from
values the runner read from the run's artifacts (helpers.runner.figures), never from files here. A run is scored by
one Metric (top-1; mAP50-95, mask mAP50-95 or pose mAP50-95 for the detector family), named the same everywhere."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from helpers.tasks.measures import METRIC_LABELS

NO_VERDICT = "No verdict yet: notebook 30 has not measured INT8 against FP32 in this run folder."


def pct(x: float | None) -> str | None:
    """Top-1 as a percentage; accepts fractions (0.97) or percentages (97.0)."""
    if x is None:
        return None
    return f"{x * 100:.1f} %" if x <= 1.0 else f"{x:.1f} %"


@dataclass(frozen=True)
class Metric:
    """What a run is scored by: its column / JSON key in every artifact, and its label."""

    key: str
    label: str
    drawn: str = ""  # what notebook 30's picture grid draws for a run scored by it (eval/detections.png)

    def text(self, x: float) -> str:
        """A value as the page shows it: top-1 as a percentage, mAP to 3 decimals."""
        return pct(x) if self.key == "top1" else f"{x:.3f}"

    @property
    def at50(self) -> str:
        """The metric at IoU (OKS) 0.5 that metrics.json keeps beside an mAP50-95 as map50: 'mask mAP50-95' -> 'mask mAP50'."""
        return self.label.replace("mAP50-95", "mAP50")


# What the picture grid of a run scored by each metric shows (helpers.steps.detect_eval.pictures draws them)
DRAWN = {"map50_95": "boxes", "mask_map50_95": "masks", "pose_map50_95": "skeletons (keypoints)"}
# One Metric per metric column, in helpers.tasks.measures' precedence (a task's own mAP before the box one): keys and labels
METRICS = tuple(Metric(key, label, DRAWN.get(key, "")) for key, label in METRIC_LABELS.items())
TOP1, MAP = (next(m for m in METRICS if m.key == key) for key in ("top1", "map50_95"))


def metric_named(key: Any) -> Metric | None:
    """The Metric of a metric column or metrics.json's metric_key ("mask_map50_95" -> mask mAP50-95), None for another."""
    return next((m for m in METRICS if m.key == key), None)


def sizes_clause(onnx: str | None, rknn: str | None) -> str:
    """', <rknn size> vs <onnx size>' as the key figures show them ('' when either is missing)."""
    return f", {rknn} vs {onnx}" if onnx and rknn else ""


def hybrid_clause(metric: Metric, value: float, base: float | None, quant: str = "INT8", model: str = "",
                  vs_quant: str = "", vs_fp32: str = "") -> str:
    """The exported hybrid against the quantized model built with the same calibration: the paired comparisons
    chosen.json holds (their text, with the 95 % intervals) when present, else the plain difference."""
    shown = metric.text(value) + ("" if metric is TOP1 else f" {metric.label}")
    name = model if model.startswith("hybrid") else f"hybrid ({model})" if model else "hybrid"  # never "hybrid (hybrid ...)"
    if vs_quant:
        return f"{name}: {shown}, vs {quant} {vs_quant}" + (f", vs FP32 {vs_fp32}" if vs_fp32 else "")
    delta = 100 * (value - base) if base is not None else None
    vs = ("" if delta is None else f", {delta:+.1f} pt vs the {quant} with the same calibration" if round(delta, 1)
          else f", the same {metric.label} as the {quant} with the same calibration")
    return f"{name}: {shown}{vs}"


def hybrid_not_shipped(quant: str = "INT8") -> str:
    """The verdict's note when the exported hybrid is not measurably better than the plain quantized model."""
    return (f"the hybrid is not measurably better than plain {quant}, so plain {quant} is the model to deploy "
            "(the bundle leaves the hybrid out)")


def demo_hybrid_clause(images: int) -> str:
    """What the verdict says when notebook 60 ran as a demo: its figures stay in their DEMO section."""
    return (f"hybrid: notebook 60 ran as a demo (demo_calib_images = {images}), so no hybrid of this model was measured "
            "(the demo's figures are in its section below)")


DEMO_FIGURE = ("DEMO run of notebook {nb} (demo_calib_images = {n}): not a figure of this model; "
               "shown only in its DEMO section below")


def board_clause(metric: Metric, board: float | None, speed_measured: bool) -> str:
    """Whether a board has validated the model (its metric there), only run it (speed), or not yet."""
    if board is not None:
        return f"validated on a board: {metric.text(board)} {metric.label}"
    if speed_measured:
        return "run on a board (speed measured), accuracy on the board not yet checked"
    return "not yet validated on a board"


def classify_verdict(fp32: float, int8: float, sizes: str, tail: list[str], quant: str = "INT8", paired: str = "") -> str:
    """A classifier's line: the quantized model's top-1 against FP32 (metrics.json's paired comparison, with its 95 %
    interval, when present) and its size, then the hybrid and board clauses."""
    if paired:
        head = f"{quant} vs FP32, top-1: {paired} ({pct(int8)} vs {pct(fp32)}){sizes}"
    else:
        head = f"{quant}: {100 * (fp32 - int8):.1f} pt top-1 loss vs FP32{sizes}"
    return "; ".join([head, *tail]) + "."


NOTHING_FOUND = 0.01  # a detector-family FP32 below 1 pt of mAP finds (almost) nothing: no quantization verdict to give


def detect_verdict(head: str, fp32: float, int8: float, sizes: str, other_head: str | None, other_map: float | None,
                   tail: list[str], quant: str = "INT8", paired: str = "", metric: Metric = MAP, box: str = "") -> str:
    """A detector-family line, in the run's metric (mAP50-95; mask or pose mAP50-95): the quantized model against FP32
    with the converted head (the paired comparison with its interval when metrics.json has one), the box mAP beside it
    (box: box_clause, segment and pose), its size, the other head's (the output-head pitfall), then the hybrid and board
    clauses."""
    label, beside = metric.label, f"; {box}" if box else ""
    if fp32 < NOTHING_FOUND:
        return (f"nothing to judge: the FP32 model itself scores {label} {fp32:.3f} on these images, so {quant} cannot "
                "lose anything and every comparison below reads 'within noise'; check the model was trained on this data "
                "(notebook 30 compares it with ultralytics' own val()) and that data_dir is its data set.")
    if paired:
        parts = [f"{quant} ({head} head) vs FP32, {label}: {paired} ({int8:.3f} vs {fp32:.3f}{beside}){sizes}"]
    else:
        parts = [f"{quant} ({head} head): {100 * (fp32 - int8):+.1f} pt {label} loss vs FP32 ({int8:.3f} vs {fp32:.3f}{beside})"
                 f"{sizes}"]
    if other_map is not None:
        parts.append(f"with the {other_head} head {quant} reaches {other_map:.3f}")
    return "; ".join(parts + tail) + "."


def box_clause(fp32_box: float | None, int8_box: float | None) -> str:
    """'box mAP50-95 0.702 vs 0.710': the box mAP a segment or pose run keeps beside its primary metric ('' without it)."""
    return f"box {MAP.label} {int8_box:.3f} vs {fp32_box:.3f}" if fp32_box is not None and int8_box is not None else ""


def figure_value(metric: Metric, value: float, at50: float | None, notes: list[str]) -> str:
    """A detector-family key figure: '<mAP50-95> / <mAP50>' and its notes in brackets (the paired comparison, the box
    mAP beside a mask or pose mAP, the whole-tensor cosine)."""
    text = f"{metric.text(value)} / {at50 or 0:.3f}"
    return text + (f" ({'; '.join(notes)})" if notes else "")


def picture_caption(metric: Metric) -> str:
    """What the run's picture grid shows, under it on the index page ('' for a run without one)."""
    if not metric.drawn:
        return ""
    return (f"validation images with each backend's {metric.drawn} side by side (notebook 30): the quantized model should "
            f"find what FP32 finds; the run is scored by {metric.label}")


NO_PROFILE = "no per-op profile in rknn/build.log (a build older than the pre-flight): rebuild it with notebook 20"


def cpu_ops_figure(chip: str, ops: list[dict[str, Any]], shown: int = 4) -> str:
    """The ops the toolkit placed on the CPU for chip (notebook 20's pre-flight), counted by type and named."""
    if not ops:
        return f"0 on {chip.upper()}: the whole graph runs on the NPU"
    kinds = ", ".join(f"{t} x{n}" if n > 1 else str(t) for t, n in Counter(o.get("op_type") for o in ops).items())
    names = ", ".join(str(o.get("name", "")).split(":", 1)[-1] for o in ops[:shown])
    more = f" and {len(ops) - shown} more" if len(ops) > shown else ""
    return f"{len(ops)} on {chip.upper()}: {kinds} ({names}{more}); each is a hand-over NPU -> CPU -> NPU per inference"


def memory_figure(chip: str, weight_mb: float, internal_mb: float, ram_mb: dict[str, Any]) -> str:
    """Weight + internal memory (the toolkit's totals) and the chip's in-package RAM variants, or the board's RAM."""
    need = f"{weight_mb + internal_mb:.2f} MB ({weight_mb:.2f} MB weights + {internal_mb:.2f} MB internal)"
    if not ram_mb:
        return f"{need}; {chip.upper()} uses the board's RAM"
    return f"{need}; RAM in the package: " + ", ".join(f"{name} {mb} MB" for name, mb in ram_mb.items())


# ----------------------------------------------------------------------------- which model a figure describes
STOPPED_WORDS = {"failed": "failed", "interrupted": "was interrupted", "running": "did not finish (the run stopped during it)"}


def model_tag(model: str | None, why: str = "", rerun: list[str] | tuple[str, ...] = (), by_time: bool = False) -> str:
    """'model 8be01d2', or 'STALE: computed from model 3f2a91c, the current model is 8be01d2: re-run 30'."""
    if why:
        return f"STALE: {why}: re-run {', then '.join(rerun)}"
    if not model:
        return "model unknown"
    return f"model {model}" + (" (judged by file times: no runner record of its model)" if by_time else "")


def stopped_why(step: str, how: str) -> str:
    """The notebook itself did not finish: what is on disk is an earlier run's (or half of one)."""
    return f"{step} {STOPPED_WORDS.get(how, how)}, so these are from an earlier run of it"


def conversion_stopped_why(step: str, how: str, current: str | None) -> str:
    """The conversion (20) did not finish: the model on disk is not the one it was asked for."""
    now = (f"rknn/convert.json (model {current}) is an earlier conversion's" if current
           else "there is no current model (rknn/convert.json is missing)")
    return f"{step} {STOPPED_WORDS.get(how, how)}: {now}"


NO_MODEL_WHY = "there is no current model (rknn/convert.json is missing or unreadable)"


def other_model_why(recorded: str, current: str) -> str:
    return f"computed from model {recorded}, the current model is {current}"


def inputs_changed_why(recorded: str, current: str) -> str:
    """The files rknn/convert.json names changed after notebook 20 converted (e.g. notebook 10 exported again)."""
    return (f"the source model or calibration list changed after this conversion (model {recorded} when converted, "
            f"{current} with today's files)")


def older_file_why(current: str) -> str:
    return f"written before the current model {current} (by file times: no runner record of its model)"
