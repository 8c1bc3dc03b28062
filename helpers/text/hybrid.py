"""Notebook 60's sentences, computed from its results: every comparison by the one noise rule (helpers.tasks.noise,
stored in the tables by helpers.steps.hybrid.build.paired_columns) with its 95 % interval; the search's target, how
the ranking relates to notebook 50's, what the float16 counts are made of, the tutorial's layer rule against the
workbook's, what was exported and the conclusion."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import pandas as pd

from helpers.steps.analysis.rank import rank_layers
from helpers.steps.hybrid.bench import TUTORIAL_RULE, WORKBOOK_RULE
from helpers.steps.hybrid.build import Variant, paired_of
from helpers.steps.hybrid.search import within
from helpers.tasks.measures import metric_in
from helpers.tasks.noise import Paired

if TYPE_CHECKING:
    from helpers.core.paths import Run
    from helpers.tasks.scoring import Judge

LAYERS = ("a *layer* here is a quantized activation tensor of step 1's cfg (a name `custom_quantize_layers` accepts); "
          "a model's float16 count is how many of them its build log reports in float16")


def _paired(row: Mapping[str, Any] | Variant | None, prefix: str) -> Paired | None:
    """The Paired a table row, a chosen.json record or a Variant holds under prefix (vs_fp32 / vs_int8)."""
    if row is None:
        return None
    if isinstance(row, Variant):
        d = getattr(row, prefix)
        return Paired.from_dict(d) if d else None
    if isinstance(row.get(prefix), dict):
        return Paired.from_dict(row[prefix])
    return paired_of(row, prefix)


def target_note(target_pt: float, judge: "Judge", int8_value: float | None = None, quant: str = "INT8") -> str:
    """The search's target in words (below one image of top-1 it can only mean 'equal to FP32'), and how to read the
    intervals on the plot. With int8_value, also whether plain INT8 already meets it (no search)."""
    step = judge.step_pt()
    if step and target_pt < step:
        text = (f"target {target_pt:g} pt is smaller than one image ({step:.2f} pt on {judge.images} images), "
                "so it means: equal to FP32")
    elif step:
        text = f"target: within {target_pt:g} pt of FP32 ({target_pt / step:.1f} images of {judge.images})"
    else:
        text = (f"target: {judge.label} within {target_pt:g} pt of FP32's {judge.text(judge.fp32.value)} "
                f"on {judge.images} val images")
    text += ("\neach point's whisker is its paired 95 % interval against FP32 on these images: a whisker that reaches "
             "FP32's line is within noise of FP32")
    if int8_value is not None and within(judge.fp32.value, int8_value, target_pt):
        text += (f"\nplain {quant} ({judge.text(int8_value)}) already meets it, so the search built no hybrid: "
                 f"the plot shows {quant} alone")
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


def _names(cell: Any) -> list[str]:
    return str(cell).split() if isinstance(cell, str) else []


def _shown(names: list[str], n: int = 2) -> str:
    return ", ".join(f"`{x}`" for x in names[:n]) + (" ..." if len(names) > n else "")


def float16_counts(table: Any, total: int, quant: str = "INT8") -> str:
    """For every built hybrid of the comparison table: its float16 count (the table's float16_layers) out of the
    model's layers, and what it is made of: the layers chosen, those plain INT8 already runs in float16, and those
    the toolkit added on its own (e.g. a Split's other outputs). The counts are the table's, so they always agree."""
    rows = table.to_dict("records")
    int8 = next((r for r in rows if r["model"] == "INT8"), {})
    base = set(_names(int8.get("float16_list")))
    out = [f"One count of layers throughout: {LAYERS}. This model has {total} layers; plain {quant} runs "
           f"{len(base)} of them in float16{' (' + _shown(sorted(base)) + ')' if base else ''}."]
    for r in rows:
        f16 = _names(r.get("float16_list"))
        if r["model"] in ("FP32", "INT8") or pd.isna(r.get(metric_in(table.columns))):
            continue
        n = int(r["float16_layers"])
        if r["model"] == "build(auto_hybrid=True)":
            out.append(f"- **{r['model']}**: {n} of {total} layers in float16, all chosen by the toolkit "
                       f"({max(n - len(base), 0)} more than plain {quant}).")
            continue
        chosen = [x for x in _names(r.get("layers")) if x in f16]
        kept = [x for x in f16 if x in base and x not in chosen]
        added = [x for x in f16 if x not in base and x not in chosen]
        parts = [f"{len(chosen)} chosen"] + ([f"{len(kept)} plain {quant} already keeps in float16"] if kept else []) + (
            [f"{len(added)} the toolkit added ({_shown(added)})"] if added else [])
        out.append(f"- **{r['model']}**: {n} of {total} layers in float16 = {' + '.join(parts)}.")
    return "\n".join(out)


def reading_notes(table: Any, int8_float16: list[str], proposal: bool, demo: bool, quant: str = "INT8",
                  proposal_skipped: str = "") -> str:
    """What this run's comparison table shows, as bullet points built from its rows."""
    rows = {str(r["model"]): r for r in table.to_dict("records")}
    key = metric_in(table.columns)
    out = []
    if int8_float16:
        out.append(f"- **Plain {quant} already has {len(int8_float16)} float16 layer(s)** ({_shown(int8_float16, 3)}): "
                   "operators the NPU only runs in float stay float16 in every build, and the hybrids' counts include them.")
    else:
        out.append(f"- Plain {quant} has no float16 layer in this model, so every float16 layer in a hybrid's row was chosen.")
    for name, r in rows.items():
        p = _paired(r, "vs_int8")
        if p is not None and name != "INT8":
            out.append(f"- {name} vs plain {quant}: {p.text}.")
    prop = rows.get("hybrid (b) toolkit proposal")
    if proposal_skipped:
        out.append(f"- {proposal_skipped}")
    elif prop is not None and proposal and pd.isna(prop[key]):
        out.append("- **The toolkit's proposal is empty in this run.** Step 1 judges the error on the calibration images, the "
                   "images the quantization was fitted to" + (", here a single demo image," if demo else ",")
                   + " so it saw no layer worth changing.")
    elif prop is not None and proposal:
        out.append(f"- **The toolkit proposed {len(_names(prop['layers']))} layer(s)**, judged on the calibration images.")
    auto = rows.get("build(auto_hybrid=True)")
    if auto is not None and pd.notna(auto["float16_layers"]):
        extra = int(auto["float16_layers"]) - len(int8_float16)
        out.append(f"- **`auto_hybrid`** kept {int(auto['float16_layers'])} layer(s) in float16 "
                   f"({max(extra, 0)} more than plain {quant}): it switches a layer when its cosine on the calibration set "
                   "falls below `auto_hybrid_cos_thresh` (0.98 by default).")
    return "\n".join(out)


def rules_note(rules: Any, int8: Variant, judge: "Judge", quant: str = "INT8") -> str:
    """The tutorial's rule against the workbook's, same k: both hybrids against INT8 (and each other), and a sentence
    that follows the numbers, saying plainly where and why the workbook departs from the tutorial."""
    rows = {str(r["model"]): r for r in rules.to_dict("records")}
    if TUTORIAL_RULE not in rows or WORKBOOK_RULE not in rows:
        return "auto_layers is 0, so no rule picked a layer and the tutorial's rule was not tested; set auto_layers to 1 or more."
    tut, wb = rows[TUTORIAL_RULE], rows[WORKBOOK_RULE]
    k = int(tut["chosen_layers"])
    a, b = _paired(tut, "vs_int8"), _paired(wb, "vs_int8")
    versus = _paired(wb, "vs_tutorial")
    loss = _paired(int8, "vs_fp32")
    head = (f"Same count, k = {k} layers each, no inputs added. **Tutorial's rule** (largest gap between entire and single "
            f"cosine): {judge.label} {judge.text(tut[judge.key])}, vs {quant} {a.text}. **Workbook's rule** (lowest single "
            f"cosine): {judge.text(wb[judge.key])}, vs {quant} {b.text}. Workbook's minus tutorial's: {versus.text}.")
    if loss is not None and loss.verdict != "worse":
        result = (f" Plain {quant} is not measurably worse than FP32 here ({loss.text}), so neither rule has a loss to "
                  f"recover and this run cannot tell the rules apart; a model whose {quant} loses measurably can.")
    elif versus.verdict == "better":
        result = " On these images the workbook's rule recovers measurably more than the tutorial's."
    elif versus.verdict == "worse":
        result = (" On these images the tutorial's rule recovers measurably more than the workbook's: the numbers side "
                  "with the tutorial here.")
    else:
        result = " The two rules are within noise of each other on these images: neither is shown to be better."
    why = (" **The workbook departs from the tutorial on purpose:** the tutorial keeps in float16 the layers whose entire "
           "and single cosines differ most; notebook 50 reads a large gap as error *inherited* from upstream (fed exact "
           "inputs, the layer itself quantizes well), so float16 there repairs nothing at its source. The workbook "
           "picks the layers with the lowest single cosine, those that quantize badly on their own.")
    return head + result + why


def export_note(choice: Mapping[str, Any], count: int, final: Path, int8: Variant, judge: "Judge",
                quant: str = "INT8") -> str:
    """What was exported, with the one noise rule's verdicts against INT8 (same calibration) and FP32."""
    value = float(choice[judge.key])
    vs_int8, vs_fp32 = _paired(choice, "vs_int8"), _paired(choice, "vs_fp32")
    versus = (f": vs {quant} {vs_int8.text}; vs FP32 {vs_fp32.text}" if vs_int8 and vs_fp32 else "")
    return (f"Exported **{choice['model']}** (of {count} candidate{'s' * (count != 1)}) "
            f"as `{final.as_posix()}`: {judge.label} {judge.text(value)} "
            f"({quant} with the same calibration {judge.text(int8.value)}, FP32 {judge.text(judge.fp32.value)}){versus}; "
            f"mean output cosine {float(choice['mean_cosine']):.5f} ({quant} {int8.mean_cosine:.5f}).")


def _search_sentence(search_table: Any, layers_total: int, int8: Variant, judge: "Judge", target_pt: float,
                     quant: str = "INT8") -> str:
    """INT8 against FP32 by the noise rule, then how many float16 layers reaching the target took (local or not)."""
    loss = _paired(int8, "vs_fp32")
    measurable = loss is not None and loss.verdict == "worse"
    lead = (f"Plain {quant}'s {judge.label} is {judge.text(int8.value)} against FP32's {judge.text(judge.fp32.value)}: "
            f"{loss.text if loss else 'not compared'}"
            + (" (a measurable loss). " if measurable else " (not a measurable loss on these images). "))
    if not len(search_table):
        why = f"within the {target_pt:g} pt target" if within(judge.fp32.value, int8.value, target_pt) else "within noise of FP32"
        return lead + f"It is already {why}: no float16 layer is needed."
    met = search_table[search_table["met_target"].astype(bool)]

    def count(r: Any) -> int:
        return int(r["float16_layers"]) if "float16_layers" in r and pd.notna(r["float16_layers"]) else int(r["layers"])
    def locality(n: int) -> str:
        share = n / max(layers_total, 1)
        return ("the error is local: a few layers carry it" if share <= 0.1 else
                "the error is not local: it is spread over the network, so a better calibration or another quantized_algorithm "
                "(notebook 50's sweep) is the cheaper fix" if share >= 0.5 else "the error is partly local")
    # the first hybrid the noise rule cannot tell from FP32: where the loss is gone as far as these images can measure
    early = next(((count(r), p) for _, r in search_table.iterrows()
                  if (p := paired_of(r, "vs_fp32")) is not None and p.verdict != "worse"), None) if measurable else None
    if early and (not len(met) or early[0] < count(met.iloc[0])):
        n0, p0 = early
        reached = (f"The search needed {count(met.iloc[0])} of {layers_total} layers in float16 to come within {target_pt:g} pt "
                   "of FP32, but " if len(met) else "")
        return lead + (f"{reached}{'a' if reached else 'A'}lready {n0} of {layers_total} layer(s) in float16 bring it within "
                       f"noise of FP32 ({p0.text}), so {locality(n0)}; the rest of the way is smaller than these images "
                       "can measure.")
    if len(met):
        n = count(met.iloc[0])
        kind = locality(n)
        if not measurable:
            kind += f" (with {quant}'s own loss within noise, read that as a property of these images rather than of the model)"
        every = "all " if n >= layers_total else ""
        row = met.iloc[0]
        reach = (f"within {target_pt:g} pt of FP32" if within(judge.fp32.value, float(row[judge.key]), target_pt) else
                 f"within noise of FP32 ({paired_of(row, 'vs_fp32').text}; more float16 layers could not be shown to buy "
                 "anything on these images)")
        return lead + f"The search needed {every}{n} of {layers_total} layers in float16 to come {reach}, so {kind}."
    n = max(count(r) for _, r in search_table.iterrows())
    if not measurable:
        return lead + (f"None of the search's {len(search_table)} hybrids (up to {n} of {layers_total} layers in float16) "
                       f"came within {target_pt:g} pt of FP32 either; with no measurable loss to repair, this search cannot "
                       "tell whether the error is local.")
    return lead + (f"Even {n} of {layers_total} layers in float16 did not bring {judge.label} "
                   f"within {target_pt:g} pt of FP32: ") + (
        "the error is not local; revisit the calibration set or the quantized_algorithm (notebook 50's sweep)."
        if n >= layers_total / 2 else
        "the search budget ran out before it could tell whether the error is local; raise search_budget to find out.")


def versus_int8(choice: Mapping[str, Any], int8: Variant, judge: "Judge", demo: bool = False, quant: str = "INT8") -> str:
    """The exported hybrid against plain INT8 by the noise rule, and how much of INT8's loss it recovers."""
    p, loss = _paired(choice, "vs_int8"), _paired(int8, "vs_fp32")
    if p is None:
        return ""
    text = f" Against plain {quant} it is {p.text}"
    if loss is not None and loss.verdict == "worse" and loss.difference_pt < 0:
        share = p.difference_pt / -loss.difference_pt
        half = "at least half" if share >= 0.5 else "less than half"
        text += (f": it recovers {p.difference_pt:+.1f} of {quant}'s {-loss.difference_pt:.1f} pt loss ({100 * share:.0f} %, "
                 f"{half} of it)")
    if p.verdict == "better":
        return text + ", a measurable gain."
    keep = "" if demo else f", and plain {quant} (faster) is the model to keep"
    if p.verdict == "worse":
        return text + f": the hybrid is measurably worse than {quant} here{keep}."
    return text + f": not measurably different from {quant}, so the float16 layers buy nothing shown on these images{keep}."


def conclusion(search_table: Any, layers_total: int, int8: Variant, judge: "Judge", target_pt: float,
               choice: Mapping[str, Any] | None, calibration: str, demo: bool, quant: str = "INT8") -> str:
    """The run's conclusion: INT8 against FP32 (the noise rule), how many float16 layers reaching the target took
    (local or not), what was exported, against INT8 and FP32 with intervals, and the share of INT8's loss recovered."""
    first = _search_sentence(search_table, layers_total, int8, judge, target_pt, quant)
    if choice is None:
        return first + " No hybrid was exported."
    value, vs_fp32 = float(choice[judge.key]), _paired(choice, "vs_fp32")
    second = (f" Exported **{choice['model']}**: {judge.label} {judge.text(value)} vs {judge.text(int8.value)} "
              f"for {quant} with the same calibration ({calibration}) and {judge.text(judge.fp32.value)} for FP32"
              + (f" (vs FP32 {vs_fp32.text})" if vs_fp32 else "") + "." + versus_int8(choice, int8, judge, demo, quant))
    if demo:
        second += (" This is a demo: built on a deliberately poor calibration, it says nothing about the model notebook 20 "
                   "converted; run with demo_calib_images = 0 for a hybrid worth deploying.")
    return first + second
