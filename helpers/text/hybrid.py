"""Notebook 60's sentences, computed from its results: a gap to FP32 or INT8 on these images, the search's target,
how the ranking relates to notebook 50's, what the comparison table shows, what was exported and the conclusion."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import pandas as pd

from helpers.steps.analysis.rank import rank_layers
from helpers.steps.hybrid.build import Variant
from helpers.steps.hybrid.choice import not_below_int8
from helpers.steps.hybrid.search import within
from helpers.tasks.measures import metric_in

if TYPE_CHECKING:
    from helpers.core.paths import Run
    from helpers.tasks.scoring import Judge


def gap_note(judge: "Judge", value: float, ref: float | None = None, what: str = "FP32") -> str:
    """How far value is from ref (default FP32's metric) in points, and how to read that on these images:
    in images for top-1, against the noise of the images for mAP."""
    ref = judge.fp32.value if ref is None else ref
    d = 100 * (value - ref)
    side = f"{abs(d):.2f} pt {'below' if d < 0 else 'above'} {what}" if round(d, 2) else f"equal to {what}"
    step = judge.step_pt()
    if step:
        n = round(abs(d) / step)
        return (f"{side} ({n} of {judge.images} images; 1 image = {step:.2f} pt)" if n else
                f"{side} (not one image of {judge.images} differs)")
    noise = judge.noise_pt()
    inside = "within" if abs(d) <= noise else "beyond"
    return f"{side}, {inside} the noise of {judge.images} val images (about ±{noise:.1f} pt)"


def target_note(target_pt: float, judge: "Judge", int8_value: float | None = None) -> str:
    """The search's target in words: below one image of top-1 it can only mean 'equal to FP32'; for mAP, how it
    compares with the noise of these images. With int8_value, also whether plain INT8 already meets it (no search)."""
    step, noise = judge.step_pt(), judge.noise_pt()
    if step and target_pt < step:
        text = (f"target {target_pt:g} pt is smaller than one image ({step:.2f} pt on {judge.images} images), "
                "so it means: equal to FP32")
    elif step:
        text = f"target: within {target_pt:g} pt of FP32 ({target_pt / step:.1f} images of {judge.images})"
    else:
        hint = (" (a hybrid that meets it on these images can still differ from FP32 by that much on others)"
                if target_pt < noise else "")
        text = (f"target: {judge.label} within {target_pt:g} pt of FP32's {judge.text(judge.fp32.value)}; "
                f"the noise of {judge.images} val images "
                f"is about ±{noise:.1f} pt{hint}")
    if int8_value is not None and within(judge.fp32.value, int8_value, target_pt):
        text += (f"\nplain INT8 ({judge.text(int8_value)}) already meets it, so the search built no hybrid: "
                 "the plot shows INT8 alone")
    return text


def ranking_note(ranked: Any, run: "Run", analysis_images: int, calibration: str, k: int = 5) -> str:
    """How this ranking relates to notebook 50's (other image count or calibration -> other order)."""
    try:
        p50 = json.loads((run.root / "params.json").read_text()).get("50_accuracy_analysis", {})
        theirs = rank_layers(pd.read_csv(run.root / "analysis" / "layers.csv").fillna({"flags": ""}))
    except (OSError, ValueError, KeyError):
        return "Notebook 50 has not analysed this run folder, so there is no ranking to compare with."
    n50, demo50 = p50.get("analysis_images", "?"), int(p50.get("demo_calib_images", 0) or 0)
    calib50 = f"demo: {demo50} image{'s' * (demo50 != 1)}" if demo50 else "notebook 20's list"
    same = set(ranked["name"][:k]) & set(theirs["name"][:k])
    differs = n50 != analysis_images or calib50.split(" (")[0] != calibration.split(" (")[0]
    how = (f"Notebook 50 ranked on {n50} image(s) ({calib50}); this notebook ranks on {analysis_images} image(s) ({calibration})")
    why = ": other images or calibration, so the order can differ" if differs else ": the same setting"
    return f"{how}{why}. {len(same)} of the top {k} layers here are also in notebook 50's top {k}."


def reading_notes(table: Any, int8_float16: Sequence[str], proposal: bool, demo: bool) -> str:
    """What this run's comparison table shows, as bullet points built from its rows."""
    rows = {str(r["model"]): r for r in table.to_dict("records")}
    key = metric_in(table.columns)
    out = []
    if int8_float16:
        shown = ", ".join(f"`{n}`" for n in int8_float16[:3]) + (" ..." if len(int8_float16) > 3 else "")
        out.append(f"- **Plain INT8 already has {len(int8_float16)} float16 tensor(s)** ({shown}): operators the NPU only runs "
                   "in float stay float16 in every build, and the hybrids' counts include them.")
    else:
        out.append("- Plain INT8 has no float16 tensor in this model, so every float16 layer in a hybrid's row was chosen.")
    prop = rows.get("hybrid (b) toolkit proposal")
    if prop is not None and proposal and pd.isna(prop[key]):
        out.append("- **The toolkit's proposal is empty in this run.** Step 1 judges the error on the calibration images, the "
                   "images the quantization was fitted to" + (", here a single demo image," if demo else ",")
                   + " so it saw no layer worth changing.")
    elif prop is not None and proposal:
        out.append(f"- **The toolkit proposed {len(str(prop['layers']).split())} layer(s)**, judged on the calibration images.")
    auto = rows.get("build(auto_hybrid=True)")
    if auto is not None and pd.notna(auto["float16_layers"]):
        extra = int(auto["float16_layers"]) - len(int8_float16)
        out.append(f"- **`auto_hybrid`** kept {int(auto['float16_layers'])} tensor(s) in float16 "
                   f"({max(extra, 0)} more than plain INT8): "
                   "it switches a layer when its cosine on the calibration set "
                   "falls below `auto_hybrid_cos_thresh` (0.98 by default).")
    return "\n".join(out)


def export_note(choice: Mapping[str, Any], count: int, final: Path, int8: Variant, judge: "Judge") -> str:
    """What was exported and how it scores next to INT8 (same calibration) and FP32."""
    value = float(choice[judge.key])
    return (f"Exported **{choice['model']}** (of {count} candidate{'s' * (count != 1)}) "
            f"as `{final.as_posix()}`: {judge.label} {judge.text(value)} "
            f"(INT8 with the same calibration {judge.text(int8.value)}, FP32 {judge.text(judge.fp32.value)}), "
            f"mean output cosine {float(choice['mean_cosine']):.5f} (INT8 {int8.mean_cosine:.5f}).")


def inside_noise(judge: "Judge", value: float) -> bool:
    """For a metric without a one-image step (mAP): value is within the noise of FP32's on these images."""
    return judge.step_pt() is None and abs(100 * (value - judge.fp32.value)) <= judge.noise_pt()


def _search_sentence(search_table: Any, layers_total: int, int8_value: float, judge: "Judge", target_pt: float) -> str:
    """How many float16 layers reaching the target took, and whether that makes the error local."""
    met = search_table[search_table["met_target"].astype(bool)] if len(search_table) else search_table
    if not len(search_table):
        return (f"Plain INT8's {judge.label} is {gap_note(judge, int8_value)}, already within the {target_pt:g} pt target: "
                "no float16 layer is needed.")
    lead = f"Plain INT8's {judge.label} is {gap_note(judge, int8_value)}. "
    if len(met):
        n = int(met.iloc[0]["layers"])
        share = n / max(layers_total, 1)
        kind = ("the error is local: a few layers carry it" if share <= 0.1 else
                "the error is not local: it is spread over the network, so a better calibration or another quantized_algorithm "
                "(notebook 50's sweep) is the cheaper fix" if share >= 0.5 else "the error is partly local")
        caveat = (" (with INT8's own loss inside the noise of these images, read that as a property of these images rather than "
                  "of the model)") if inside_noise(judge, int8_value) else ""
        return lead + (f"The search needed {n} of {layers_total} layers in float16 to come within {target_pt:g} pt of FP32, "
                       f"so {kind}{caveat}.")
    n = int(search_table["layers"].max())
    if inside_noise(judge, int8_value):
        lo, hi = judge.text(search_table[judge.key].min()), judge.text(search_table[judge.key].max())
        return lead + (f"None of the search's {len(search_table)} hybrids "
                       f"(up to {n} of {layers_total} layers in float16) came within "
                       f"{target_pt:g} pt of FP32 either; they score {lo} to {hi}, inside the same noise. On these images INT8 "
                       "loses too little for float16 layers to repair measurably, "
                       "so this search cannot tell whether the error is local.")
    return lead + (f"Even {n} of {layers_total} layers in float16 did not bring {judge.label} "
                   f"within {target_pt:g} pt of FP32: ") + (
        "the error is not local; revisit the calibration set or the quantized_algorithm (notebook 50's sweep)."
        if n >= layers_total / 2 else
        "the search budget ran out before it could tell whether the error is local; raise search_budget to find out.")


def versus_int8(value: float, int8_value: float, judge: "Judge", demo: bool = False) -> str:
    """Whether the exported hybrid's metric is at least INT8's (same calibration), with the numbers."""
    gap = gap_note(judge, value, int8_value, "INT8")
    if not_below_int8(value, int8_value):
        return f"It is {gap}, so the exported hybrid's {judge.label} is not below INT8's."
    keep = "" if demo else " and plain INT8 is the model to keep"
    return f"It is {gap}, so no hybrid reached INT8's {judge.label} here: on this evidence the float16 layers buy nothing{keep}."


def conclusion(search_table: Any, layers_total: int, int8_value: float, judge: "Judge", target_pt: float,
               choice: Mapping[str, Any] | None, calibration: str, demo: bool) -> str:
    """The run's conclusion: how far INT8 is from FP32, how many float16 layers reaching the target took (local
    or not), what was exported and whether its metric is at least INT8's, all with this run's numbers."""
    first = _search_sentence(search_table, layers_total, int8_value, judge, target_pt)
    if choice is None:
        return first + " No hybrid was exported."
    value = float(choice[judge.key])
    second = (f" Exported **{choice['model']}**: {judge.label} {judge.text(value)} vs {judge.text(int8_value)} "
              "for INT8 with the same calibration "
              f"({calibration}) and {judge.text(judge.fp32.value)} for FP32. " + versus_int8(value, int8_value, judge, demo))
    if demo:
        second += (" This is a demo: built on a deliberately poor calibration, it says nothing about the model notebook 20 "
                   "converted; run with demo_calib_images = 0 for a hybrid worth deploying.")
    return first + second
