"""Notebook 50's sentences, computed from its results: the flagged layers (counted over one definition of "layers"),
the outputs' rows, whether the error is local, the sweep's headline, its notes (settings with identical outputs, a low
output cosine) and its conclusion (best setting vs notebook 20's, INT8 vs FP32), every comparison printed as the
workbook's one noise rule gives it (helpers.tasks.noise, stored in analysis/sweep.csv's vs_* columns)."""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from helpers.steps.analysis.rank import LAYERS_MEANING, candidates
from helpers.steps.analysis.sweep import best_row, row_paired, sweep_metric, table_value
from helpers.tasks.measures import METRIC_LABELS, metric_text

# How each metric's paired comparison is made (helpers.tasks.noise), for the headline: McNemar for top-1, the paired
# bootstrap for every COCO mAP (box, mask, pose), one sentence for all of them.
BOOTSTRAP = "a paired bootstrap over the images (both models scored on the same resampled images)"
PAIRED_TEST = {"top1": "an exact McNemar test on the images only one of the two gets right",
               **{key: BOOTSTRAP for key in METRIC_LABELS if key != "top1"}}
LOW_COSINE = 0.9  # a lowest-image output cosine below this gets its explanation


def _names(names: Sequence[str], most: int = 4) -> str:
    return ", ".join(f"`{n}`" for n in names[:most]) + (", ..." if len(names) > most else "")


def flagged_summary(warnings: pd.DataFrame, layers: pd.DataFrame, threshold: float, top: int = 5) -> tuple[str, pd.DataFrame]:
    """'N of M layers flagged' over the one definition of layers (LAYERS_MEANING: the same M as the ranking's count),
    the flagged rows that are not layers named apart, and the `top` worst flagged rows (lowest cosine first; rows
    without a number, e.g. q_zero, are named in the headline and listed after the numbers), instead of every row."""
    worst = layers.drop_duplicates("name").set_index("name")[["entire_cos", "single_cos"]].min(axis=1)
    ranked = warnings.assign(lowest_cos=warnings["name"].map(worst)).sort_values("lowest_cos", na_position="last")
    shown = ranked.head(top)
    real = set(candidates(layers)["name"])
    total, flagged = len(real), int(ranked["name"].isin(real).sum())
    others = ranked.loc[~ranked["name"].isin(real), "name"].tolist()
    which = f"the {len(shown)} with the lowest cosine" if len(shown) < len(warnings) else "all of them, lowest cosine first"
    blank = ranked.loc[ranked["lowest_cos"].isna(), "name"].tolist()
    nonum = (f"; {len(blank)} flagged row{'s' * (len(blank) != 1)} without a number: {_names(blank)}, all-zero or "
             "overflowing tensors" if blank else "")
    extra = (f" Also flagged: {len(others)} row{'s' * (len(others) != 1)} that {'are' if len(others) != 1 else 'is'} "
             f"not a layer ({_names(others)}: the input or a dtype conversion)." if others else "")
    return (f"**{flagged} of {total} layers flagged** (an entire or single cosine below {threshold}, or no number{nonum}). "
            f"Layers, in every count of this notebook: the {total} {LAYERS_MEANING}.{extra} Below, {which}:", shown)


def outputs_line(layers: pd.DataFrame, outputs: Sequence[str]) -> str:
    """The rows of the model's own outputs (what the task's metric reads): their accumulated (entire) cosine."""
    rows = layers[layers["name"].isin(list(outputs))].drop_duplicates("name", keep="last")
    if rows.empty:
        return ""
    cos = rows["entire_cos"].dropna()
    blank = rows.loc[rows["entire_cos"].isna(), "name"].tolist()
    names = ", ".join(f"`{n}`" for n in rows["name"] if n not in blank)
    text = ""
    if len(cos):
        span = f"{cos.iloc[0]:.4f}" if len(cos) == 1 else f"{cos.min():.4f} to {cos.max():.4f}"
        text = (f"The model's output{'s' * (len(cos) != 1)} ({names}) end{'s' * (len(cos) == 1)} "
                f"with an entire cosine of {span}: that is "
                "what the metric reads, so lower cosines inside the network matter only as far as they reach these rows.")
    if blank:
        zeros = rows.loc[rows["entire_cos"].isna(), "flags"].fillna("").astype(str).str.contains("zero").all()
        one = len(blank) == 1
        text += (f" {', '.join(f'`{n}`' for n in blank)} {'has' if one else 'have'} no number: in the quantized model "
                 f"{'it was' if one else 'they were'} all zeros{'' if zeros else ' or overflowed'} "
                 "on these images. For a detector's (or a seg or pose model's) "
                 "class scores that is typical of a stride where nothing scores above one INT8 step; the metric tells whether it "
                 "costs detections.")
    return text.strip()


def layers_conclusion(ranked: pd.DataFrame, threshold: float) -> str:
    """Whether the per-layer error is local (a few layers carry most of it) or spread, from the ranking; counted over
    the same layers as flagged_summary (rank_layers keeps exactly those)."""
    drops = ranked["single_drop"].dropna().clip(lower=0)
    if drops.empty or drops.sum() == 0:
        return "No layer adds measurable error on its own."
    share = drops.head(3).sum() / drops.sum()
    top = ranked.iloc[0]
    below = int((ranked["single_cos"] < threshold).sum())
    entire_only = int(((ranked["entire_cos"] < threshold) & ~(ranked["single_cos"] < threshold)).sum())
    if below == 0:
        return (f"None of the {len(ranked)} layers has a single cosine below {threshold} "
                f"(the lowest is `{top['name']}`, {top['op']}, {top['single_cos']:.5f}): "
                "no layer stands out as a float16 candidate on its own"
                + (f"; the {entire_only} below it in entire cosine carry error accumulated upstream." if entire_only else "."))
    kind = ("local: a few layers carry it, the case for hybrid quantization (notebook 60)" if share >= 0.5 else
            "spread over the network: a float16 layer here and there will not fix it; "
            "the calibration or the quantization settings are the lever")
    return (f"{below} of the same {len(ranked)} layers have a single cosine below {threshold} (the error a layer adds "
            f"on its own)" + (f"; {entire_only} more are below it only in entire cosine (error accumulated upstream)"
                              if entire_only else "")
            + f". The worst alone is `{top['name']}` ({top['op']}, single cosine {top['single_cos']:.5f}). "
            f"The three largest single drops make up {100 * share:.0f}% of the total, so the error is {kind}.")


def sweep_headline(sweep: pd.DataFrame) -> str:
    """FP32's metric on the sweep's images, the resolution (one image, for top-1) and the paired rule every
    comparison of the sweep uses."""
    key = sweep_metric(sweep)
    images, fp32 = int(table_value(sweep, "images", None)), float(table_value(sweep, f"fp32_{key}", None))
    step = f" (1 image = {100 / images:.2f} pt)" if key == "top1" and images else ""
    return (f"FP32 {METRIC_LABELS[key]} on the same {images} images: **{metric_text(key, fp32)}**{step}. Each setting is "
            f"compared with FP32 and with notebook 20's setting on these images by {PAIRED_TEST[key]}: the difference in "
            "points, its 95 % interval and a verdict (better, worse, or within noise: these images cannot tell the two apart).")


def sweep_view(sweep: pd.DataFrame) -> pd.DataFrame:
    """analysis/sweep.csv as the notebook shows it: each comparison as one cell of text (difference, interval, verdict)."""
    key = sweep_metric(sweep)

    def cell(row: pd.Series, prefix: str) -> str:
        paired = row_paired(row, prefix)
        return paired.text if paired else str(row.get(f"{prefix}_verdict", "") or "")

    return pd.DataFrame({
        "setting": [f"{a}/{m}" for a, m in zip(sweep["algorithm"], sweep["method"])],
        METRIC_LABELS[key]: [metric_text(key, v) if pd.notna(v) else "" for v in sweep[key]],
        "vs FP32": [cell(r, "vs_fp32") for _, r in sweep.iterrows()],
        "vs notebook 20's setting": [cell(r, "vs_current") for _, r in sweep.iterrows()],
        "mean output cosine": sweep["mean_cosine"].round(5),
        "lowest image's cosine": sweep["min_cosine"].round(3),
        "build s": sweep["build_s"],
        "algorithm the toolkit's log names": sweep.get("log_names_algorithm", ""),
        "same outputs as": sweep.get("same_outputs_as", ""),
        "why (not built)": sweep["why"],
    })


def identical_outputs_note(sweep: pd.DataFrame, calib_images: int, dtype: str = "w8a8") -> str:
    """Settings whose model gave bit-identical raw outputs to an earlier row's (same_outputs_as), why, and what the
    toolkit's log can and cannot confirm."""
    if "same_outputs_as" not in sweep:
        return ""
    same = sweep[sweep["same_outputs_as"].fillna("").astype(str).str.len() > 0]
    if same.empty:
        return ""
    images = int(table_value(sweep, "images", None) or 0)
    pairs = "; ".join(f"{a}/{m} = {s}" for a, m, s in zip(same["algorithm"], same["method"], same["same_outputs_as"]))
    text = (f"**Identical rows are identical models.** {pairs}: the raw outputs are bit for bit the same on all {images} "
            "images, so those rows repeat each other; the setting reached the toolkit but changed nothing here. ")
    if str(dtype).endswith("a16") and same["algorithm"].eq("kl_divergence").any():
        text += (f"With {dtype} the activations stay in 16 bits: only the weights are quantized, from their own values, "
                 "and kl_divergence versus normal is a choice of activation ranges from the calibration images, so there "
                 "is nothing for it to change. ")
    elif calib_images == 1 and same["algorithm"].eq("kl_divergence").any():
        text += ("With a single calibration image, rknn-toolkit2 2.5.0's kl_divergence ends at the same ranges as normal "
                 "(measured on the sample model and on a tiny test model: from 2 calibration images on, the two give "
                 "different models); it needs a calibration set to choose ranges from. ")
    return text + ("The toolkit's log cannot tell you which ran: rknn-toolkit2 2.5.0 names no quantization algorithm "
                   "except mmse (its MmseQuant2 step), which the column `algorithm the toolkit's log names` shows.")


def low_cosine_note(sweep: pd.DataFrame, threshold: float = LOW_COSINE, quant: str = "INT8") -> str:
    """A lowest-image output cosine far below the mean, explained: one image whose outputs point elsewhere than FP32's."""
    built = sweep.dropna(subset=["min_cosine"])
    if built.empty or float(built["min_cosine"].min()) >= threshold:
        return ""
    row = built.loc[built["min_cosine"].idxmin()]
    key = sweep_metric(sweep)
    images = int(table_value(sweep, "images", None) or 0)
    text = (f"**The lowest output cosine, {row['min_cosine']:.2f}** ({row['algorithm']}/{row['method']}; its mean over the "
            f"{images} images is {row['mean_cosine']:.4f}), is one image, not the model: the cosine compares one image's "
            "raw outputs with FP32's. ")
    if key == "top1" and "top1_agreement" in row and pd.notna(row["top1_agreement"]):
        moved = round((1 - float(row["top1_agreement"])) * images)
        text += (f"A classifier's output is its class-score vector; on the {moved} image{'s' * (moved != 1)} where "
                 f"{quant}'s top class differs from FP32's, that vector points at another class and its cosine to FP32's "
                 "falls far below 1. ")
    else:
        text += f"On that image {quant}'s outputs point elsewhere than FP32's (e.g. scores moved between boxes or classes). "
    return text + f"Whether such images cost accuracy is what the {METRIC_LABELS[key]} comparison with its interval says."


def fp32_gap(sweep: pd.DataFrame, cur: pd.Series, demo_images: int = 0, quant: str = "INT8") -> str:
    """Notebook 20's setting, as the sweep built it, against FP32 on the same images: the paired difference, its
    interval and what the verdict means."""
    key = sweep_metric(sweep)
    fp32 = table_value(sweep, f"fp32_{key}", None)
    paired = row_paired(cur, "vs_fp32")
    if fp32 is None or paired is None:
        return ""
    images = int(table_value(sweep, "images", None) or 0)
    under = " under the demo calibration" if demo_images else ""
    text = (f" {quant} with {cur['algorithm']}/{cur['method']}{under} scores {METRIC_LABELS[key]} {metric_text(key, cur[key])}, "
            f"FP32 {metric_text(key, float(fp32))} on the same {images} images: {paired.text}")
    if paired.verdict == "worse":
        return text + (": quantization costs measurable accuracy here; the layer ranking above and notebook 60 show "
                       "where and what float16 layers buy back.")
    if paired.verdict == "better":
        return text + (f": {quant} scores measurably higher on these images; rounding happened to help, which is no reason "
                       "to expect it on other images.")
    return text + (f": on these images {quant} is not measurably worse than FP32, and a loss larger than "
                   f"{max(-paired.low_pt, 0.0):.1f} pt is outside the interval.")


def _best_vs_current(sweep: pd.DataFrame, best: pd.Series, cur: pd.Series) -> str:
    """The best setting against notebook 20's, by the paired comparison the table stores."""
    key = sweep_metric(sweep)
    a, m = cur["algorithm"], cur["method"]
    paired = row_paired(best, "vs_current")
    against = f"against notebook 20's {a}/{m} ({metric_text(key, cur[key])}) on the same images"
    if paired is None:
        return f"{against} there is no paired comparison in the table (re-run notebook 50's sweep to add it)"
    if paired.verdict == "better":
        vs_fp32 = row_paired(best, "vs_fp32")
        return (f"{against}: {paired.text}, so it is worth trying in notebook 20 (quantized_algorithm="
                f"{best['algorithm']!r}, quantized_method={best['method']!r})"
                + (f"; against FP32 it scores {vs_fp32.text}" if vs_fp32 else ""))
    return f"{against}: {paired.text}: no reason to change notebook 20's setting on this evidence"


def sweep_conclusion(sweep: pd.DataFrame, current: tuple[str, str], demo_images: int = 0, quant: str = "INT8") -> str:
    """The sweep's best setting against notebook 20's and the quantized model (named `quant`: "INT8", "w4a16", ...)
    against FP32, each with its paired interval and verdict (analysis/sweep.csv's vs_current_* and vs_fp32_* columns);
    with the demo caveat."""
    best, _ = best_row(sweep)
    key = sweep_metric(sweep)
    head = (f"The sweep's best setting is {best['algorithm']}/{best['method']} "
            f"({METRIC_LABELS[key]} {metric_text(key, best[key])})")
    cur = sweep[(sweep["algorithm"] == current[0]) & (sweep["method"] == current[1])]
    if cur.empty:
        text = f"{head}; notebook 20's {current[0]}/{current[1]} was not in the grid, so there is nothing to compare it with."
    elif pd.isna(cur.iloc[0][key]):
        text = f"{head}; notebook 20's {current[0]}/{current[1]} did not build in the sweep ({cur.iloc[0].get('why', '')})."
    else:
        text = (f"{head}, which is what notebook 20 already uses: keep it." if (best["algorithm"], best["method"]) == current else
                f"{head}; {_best_vs_current(sweep, best, cur.iloc[0])}.")
        text += fp32_gap(sweep, cur.iloc[0], demo_images, quant)
    if demo_images:
        text += (f" Found under demo calibration ({demo_images} image{'s' * (demo_images != 1)}): "
                 "it says which setting copes best with a "
                 "poor calibration, not which is best for notebook 20's list; "
                 "re-run with demo_calib_images = 0 before changing notebook 20.")
    return text
