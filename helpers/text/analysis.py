"""Notebook 50's sentences, computed from its results: the flagged layers, the outputs' rows, whether the error is
local, the sweep's headline and its conclusion (best setting vs notebook 20's, INT8 vs FP32, against noise)."""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from helpers.steps.analysis.sweep import best_row, sweep_metric, table_value
from helpers.tasks.measures import METRIC_LABELS, binomial_noise_pt, metric_text


def flagged_summary(warnings: pd.DataFrame, layers: pd.DataFrame, threshold: float, top: int = 5) -> tuple[str, pd.DataFrame]:
    """'N of M layers flagged' and the `top` worst of them (lowest cosine first; rows without a number, e.g. q_zero,
    are named in the headline and listed after the numbers), instead of every row."""
    worst = layers.drop_duplicates("name").set_index("name")[["entire_cos", "single_cos"]].min(axis=1)
    ranked = warnings.assign(lowest_cos=warnings["name"].map(worst)).sort_values("lowest_cos", na_position="last")
    shown = ranked.head(top)
    total = int((~layers["fused"]).sum())
    which = f"the {len(shown)} with the lowest cosine" if len(shown) < len(warnings) else "all of them, lowest cosine first"
    blank = ranked.loc[ranked["lowest_cos"].isna(), "name"].tolist()
    nonum = (f", {len(blank)} of them without a number "
             f"({', '.join(f'`{n}`' for n in blank[:4])}{', ...' if len(blank) > 4 else ''}: "
             "all-zero or overflowing tensors)" if blank else "")
    return f"**{len(warnings)} of {total} layers flagged** (threshold {threshold}){nonum}; {which}:", shown


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
                 "on these images. For a detector's "
                 "class scores that is typical of a stride where nothing scores above one INT8 step; the metric tells whether it "
                 "costs detections.")
    return text.strip()


def noise_images(images: int, top1: float) -> float:
    """Two binomial standard deviations of a top-1 measured on `images` images, in images."""
    return binomial_noise_pt(top1, images) * images / 100.0 if images else 0.0


def layers_conclusion(ranked: pd.DataFrame, threshold: float) -> str:
    """Whether the per-layer error is local (a few layers carry most of it) or spread, from the ranking."""
    drops = ranked["single_drop"].dropna().clip(lower=0)
    if drops.empty or drops.sum() == 0:
        return "No layer adds measurable error on its own."
    share = drops.head(3).sum() / drops.sum()
    top = ranked.iloc[0]
    below = int((ranked["single_cos"] < threshold).sum())
    if below == 0:
        return (f"No layer has a single cosine below {threshold} "
                f"(the lowest is `{top['name']}`, {top['op']}, {top['single_cos']:.5f}): "
                "no layer stands out as a float16 candidate on its own.")
    kind = ("local: a few layers carry it, the case for hybrid quantization (notebook 60)" if share >= 0.5 else
            "spread over the network: a float16 layer here and there will not fix it; "
            "the calibration or the quantization settings are the lever")
    return (f"{below} of {len(ranked)} layers have a single cosine below {threshold}; "
            f"the worst is `{top['name']}` ({top['op']}, single cosine "
            f"{top['single_cos']:.5f}). "
            f"The three largest single drops make up {100 * share:.0f}% of the total, so the error is {kind}.")


def noise_pt_of(sweep: pd.DataFrame, value: float, images: int, given: float | None) -> float | None:
    """The noise of the table's metric in points: binomial (two standard deviations) of a top-1 `value` on
    `images` images; for mAP the judge's bootstrap value `given` (helpers.tasks.scoring.Judge.noise_pt)."""
    if sweep_metric(sweep) == "top1":
        return 100.0 * noise_images(images, value) / images if images else None
    return given


def _best_vs_current(sweep: pd.DataFrame, best: pd.Series, cur: pd.Series, images: int, noise: float | None) -> str:
    """The best setting's lead over notebook 20's: in images for top-1, in points for mAP; and against noise."""
    key = sweep_metric(sweep)
    a, m = cur["algorithm"], cur["method"]
    if key == "top1":
        diff = round((best["top1"] - cur["top1"]) * images)
        noise = noise_images(images, float(cur["top1"]))
        verdict = (f"beyond noise (about ±{noise:.1f} images on {images}), "
                   "so it is worth trying in notebook 20" if diff > noise else
                   f"within noise (about ±{noise:.1f} images on {images}): "
                   "no reason to change notebook 20's setting on this evidence")
        return f"notebook 20's {a}/{m} gets {100 * cur['top1']:.2f}%: {diff:+d} image(s), {verdict}"
    diff = 100 * (best[key] - cur[key])
    beyond = noise is not None and diff > noise
    scale = f" (about ±{noise:.1f} pt on {images} images)" if noise is not None else ""
    if noise is None:
        verdict = "with the noise of these images unknown (re-run notebook 50's sweep to estimate it), so no verdict"
    else:
        verdict = (f"beyond noise{scale}, so it is worth trying in notebook 20" if beyond else
                   f"within noise{scale}: no reason to change notebook 20's setting on this evidence")
    return f"notebook 20's {a}/{m} gets {metric_text(key, cur[key])}: {diff:+.1f} pt {METRIC_LABELS[key]}, {verdict}"


def fp32_gap(sweep: pd.DataFrame, cur: pd.Series, images: int, noise: float | None, demo_images: int = 0) -> str:
    """How far notebook 20's setting, as the sweep built it, lands from FP32: in points of the table's metric, against noise."""
    key = sweep_metric(sweep)
    fp32 = table_value(sweep, f"fp32_{key}", None)
    if fp32 is None or pd.isna(cur[key]):
        return ""
    loss = 100 * (float(fp32) - float(cur[key]))
    change = ("the same score as FP32" if abs(loss) < 0.05 else
              f"{'a loss' if loss > 0 else 'a gain'} of {abs(loss):.1f} pt against FP32")
    under = " under the demo calibration" if demo_images else ""
    text = (f" INT8 with {cur['algorithm']}/{cur['method']}{under} "
            f"scores {METRIC_LABELS[key]} {metric_text(key, cur[key])}, FP32 "
            f"{metric_text(key, float(fp32))} on the same {images} images: {change}")
    if noise is None:
        return text + "."
    if abs(loss) <= noise:
        return text + f", within noise (about ±{noise:.1f} pt): on these images INT8 is not measurably worse than FP32."
    if loss < 0:
        return text + f", more than the noise (about ±{noise:.1f} pt) in INT8's favour on these images."
    return text + (f", beyond noise (about ±{noise:.1f} pt): quantization costs measurable accuracy here; "
                   "the layer ranking above "
                   "and notebook 60 show where and what float16 layers buy back.")


def sweep_headline(sweep: pd.DataFrame, noise_pt: float | None = None) -> str:
    """FP32's metric on the sweep's images and how to read a difference: one image for top-1, the noise (pt) for mAP."""
    key = sweep_metric(sweep)
    images, fp32 = int(table_value(sweep, "images", None)), float(table_value(sweep, f"fp32_{key}", None))
    scale = (f"1 image = {100 / images:.2f} pt" if key == "top1" else
             f"noise about ±{noise_pt:.1f} pt, "
             "two standard deviations of a bootstrap over the images" if noise_pt is not None else "")
    return (f"FP32 {METRIC_LABELS[key]} on the same {images} images: **{metric_text(key, fp32)}**"
            + (f" ({scale})." if scale else "."))


def sweep_conclusion(sweep: pd.DataFrame, current: tuple[str, str], images: int = 0, demo_images: int = 0,
                     noise_pt: float | None = None) -> str:
    """The sweep's best setting against notebook 20's and INT8 against FP32, named in the table's metric (top-1:
    in images against binomial noise; mAP: in points against the judge's bootstrap noise_pt); with the demo caveat."""
    best, _ = best_row(sweep)
    key = sweep_metric(sweep)
    images = images or int(table_value(sweep, "images", None) or 0)
    if key == "top1":
        step = 100.0 / images if images else float("nan")
        head = (f"The sweep's best setting is {best['algorithm']}/{best['method']} "
                f"({100 * best['top1']:.2f}% top-1; 1 image = {step:.2f} pt)")
    else:
        scale = f"; {images} val images, noise about ±{noise_pt:.1f} pt" if noise_pt is not None else f"; {images} val images"
        head = f"The sweep's best setting is {best['algorithm']}/{best['method']} ({METRIC_LABELS[key]} {best[key]:.3f}{scale})"
    cur = sweep[(sweep["algorithm"] == current[0]) & (sweep["method"] == current[1])]
    if cur.empty:
        text = f"{head}; notebook 20's {current[0]}/{current[1]} was not in the grid, so there is nothing to compare it with."
    elif pd.isna(cur.iloc[0][key]):
        text = f"{head}; notebook 20's {current[0]}/{current[1]} did not build in the sweep ({cur.iloc[0].get('why', '')})."
    else:
        noise = noise_pt_of(sweep, float(cur.iloc[0][key]), images, noise_pt)
        text = (f"{head}, which is what notebook 20 already uses: keep it." if (best["algorithm"], best["method"]) == current else
                f"{head}; {_best_vs_current(sweep, best, cur.iloc[0], images, noise)}.")
        text += fp32_gap(sweep, cur.iloc[0], images, noise, demo_images)
    if demo_images:
        text += (f" Found under demo calibration ({demo_images} image{'s' * (demo_images != 1)}): "
                 "it says which setting copes best with a "
                 "poor calibration, not which is best for notebook 20's list; "
                 "re-run with demo_calib_images = 0 before changing notebook 20.")
    return text
