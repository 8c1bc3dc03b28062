"""Notebook 60's bench (the model, calibration, judge and analysis images every model shares) and its strategies:
plain INT8 (the baseline, kept on disk with its outputs, so every hybrid is compared with it on the same images), the
strategies' hybrids via step 2, build(auto_hybrid=True), and the tutorial's layer rule against the workbook's."""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from helpers.core.paths import atomic_path, write_json_atomic, write_text_atomic
from helpers.steps.analysis.plots import demo_note
from helpers.steps.convert import build_on, load_source
from helpers.steps.hybrid.build import Variant, built, float16_tensors, judged, measure, paired_columns
from helpers.steps.hybrid.cfg import Step1Files
from helpers.tasks.measures import Outputs
from helpers.toolkit.options import ConvertConfig, quantized_name
from helpers.toolkit.session import RKNN

if TYPE_CHECKING:
    from helpers.core.paths import Run
    from helpers.tasks.scoring import Judge
    from helpers.toolkit.record import ConvertRecord

AUTO_HYBRID = "build(auto_hybrid=True)"  # the comparison row of the toolkit's own one-switch hybrid
# The tutorial's rule and the workbook's, each picking k layers from the INT8 ranking (rank_layers' columns).
TUTORIAL_RULE = "tutorial: largest entire-single gap"
WORKBOOK_RULE = "workbook: lowest single cosine"
RULE_COLUMNS = {TUTORIAL_RULE: "gap", WORKBOOK_RULE: "single_drop"}


@dataclass
class Bench:
    """What every model notebook 60 measures shares: the recorded model, the calibration list actually used
    (demo or notebook 20's), the judge (the validation images, FP32's outputs on them and the task's metric)
    and the images accuracy_analysis reads."""

    run: "Run"
    record: "ConvertRecord"
    dataset: Path
    judge: "Judge"
    analysis_images: list[Path]
    dtype: str = "float16"
    demo_images: int = 0  # > 0: built under demo calibration with this many images
    layers: list[str] = field(default_factory=list)  # step 1's activation tensors: what every float16 count counts

    @property
    def cfg(self) -> "ConvertConfig":
        """Notebook 20's options (with the graph rules it had to disable) for a batch-1 build: step 1, step 2 and
        accuracy_analysis take one image per call."""
        return ConvertConfig.from_dict({**self.record.config.to_dict(), "rknn_batch_size": None})

    @property
    def calibration(self) -> str:
        """How the quantized models here were calibrated, as the tables and chosen.json label it."""
        n = sum(1 for line in Path(self.dataset).read_text().splitlines() if line.strip())
        return f"demo: {n} image{'s' * (n != 1)}" if self.demo_images else f"notebook 20's list ({n} images)"

    @property
    def quant(self) -> str:
        """What the sentences, tables and plots call the quantized model: 'INT8' for w8a8, 'w4a16' for w4a16, ..."""
        return quantized_name(self.cfg.quantized_dtype)

    @property
    def note(self) -> str:
        """The demo label for this notebook's figures ('' outside demo mode)."""
        return demo_note(self.demo_images)

    def describe(self) -> str:
        """Three lines: the model and its quantization settings, the calibration, and what every model is scored by."""
        j, rules = self.judge, self.cfg.disable_rules
        off = f", graph rules off: {', '.join(rules)}" if rules else ""
        return (f"model: {self.record.source.name} ({j.task}), {self.cfg.quantized_algorithm}/{self.cfg.quantized_method}{off}\n"
                f"calibration: {self.calibration}\n"
                f"scored by {j.label} on {j.images} val images; FP32 {j.label} {j.text(j.fp32.value)}; every comparison is "
                "paired on these images (helpers.tasks.noise: difference, 95 % interval, verdict)")

    def selection(self, names: Iterable[str]) -> dict[str, str]:
        return {n: self.dtype for n in names}


def strategy_file(run: "Run", name: str) -> Path:
    """Where a strategy's model goes, named after the strategy (never after its row position)."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return run.hybrid / f"strategy_{slug}.rknn"


def measure_int8(bench: Bench) -> tuple[Variant, Any, Outputs]:
    """The plain INT8 baseline with the same calibration: build, accuracy_analysis, export, the judge's metric and
    its paired comparison with FP32; returns its Variant, per-layer table and raw outputs on the judge's images."""
    run, rec = bench.run, bench.record
    log = run.logs / "60_int8.log"
    with RKNN(log, auto_disable_rules=False) as rk:
        build_on(rk, rec.source, bench.cfg, bench.dataset, rec.input_size, rec.load_path)
        v, table, outputs = measure(rk, "INT8", bench.judge, run.hybrid / "model_int8.rknn", log, bench.analysis_images,
                                    run.hybrid / "snapshot_int8", counted=bench.layers or None)
    v.file = "hybrid/model_int8.rknn"
    return v, table, outputs


def auto_hybrid(bench: Bench, int8_outputs: Outputs | None = None) -> Variant:
    """build(auto_hybrid=True) with notebook 20's options (and disabled rules): the toolkit picks float16 layers by cosine."""
    rec, log = bench.record, bench.run.logs / "60_auto_hybrid.log"
    with RKNN(log, auto_disable_rules=False) as rk:
        rk.config(**bench.cfg.config_kwargs())
        load_source(rk, rec.source, rec.input_size, rec.load_path)
        rk.build(**{**bench.cfg.build_kwargs(bench.dataset), "auto_hybrid": True})  # also when notebook 20 already set it
        v, _, _ = measure(rk, AUTO_HYBRID, bench.judge, bench.run.hybrid / "model_auto_hybrid.rknn", log,
                          int8_outputs=int8_outputs, counted=bench.layers or None)
    v.layers, v.file = float16_tensors(log, bench.layers or None), "hybrid/model_auto_hybrid.rknn"
    return v


def compare_strategies(bench: Bench, files: Step1Files, strategies: Mapping[str, list[str]], why_empty: Mapping[str, str],
                       int8: Variant, before: Any, int8_outputs: Outputs) -> tuple[Any, Any]:
    """Step 2 + accuracy_analysis + the judge's metric and paired comparisons (FP32, INT8) for every strategy (an empty
    one gets a row saying why), then build(auto_hybrid=True); returns the comparison table (FP32 first, a file and
    calibration column) and every model's per-layer table (column 'model')."""
    run = bench.run
    for old in [*run.hybrid.glob("strategy_*.rknn"), *run.hybrid.glob("model_strategy*.rknn")]:
        old.unlink()  # no model of an earlier selection may pass for this one
    results, tables = [int8], {"INT8": before}
    for i, (name, chosen) in enumerate(tqdm(list(strategies.items()), desc="step 2", unit="model")):
        if not chosen:
            results.append(Variant(name, float("nan"), float("nan"), float("nan"), 0, 0, [],
                                   note=why_empty.get(name, "no layers")))
            continue
        log, out = run.logs / f"60_step2_{i}.log", strategy_file(run, name)
        with built(files, bench.selection(chosen), files.variant_cfg(f"strategy{i}"), log) as rk:
            v, tables[name], _ = measure(rk, name, bench.judge, out, log, bench.analysis_images,
                                         run.hybrid / f"snapshot_strategy{i}", chosen, int8_outputs, bench.layers or None)
        v.file = run.relative(out)
        results.append(v)
    results.append(auto_hybrid(bench, int8_outputs))
    onnx = run.root / "model" / "model.onnx"
    size = onnx.stat().st_size if onnx.exists() else 0  # FP32's size: the ONNX file
    fp32_row = Variant("FP32", bench.judge.fp32.value, 1.0, 1.0, size, 0, [])
    table = pd.DataFrame([r.row(bench.judge) for r in [fp32_row, *results]])
    table["calibration"] = ["none (float)"] + [bench.calibration] * len(results)
    return table, pd.concat([t.assign(model=k) for k, t in tables.items()])


def baseline_files(run: "Run") -> list[Path]:
    """Where the INT8 baseline is kept: its per-layer table, its Variant and its raw outputs on the judge's images
    (every hybrid is compared with them, image by image)."""
    return [run.hybrid / "int8_layers.csv", run.hybrid / "int8.json", run.hybrid / "int8_outputs.npz"]


def save_baseline(run: "Run", variant: Variant, table: Any, outputs: Outputs) -> tuple[Variant, Any, Outputs]:
    """Write the baseline (atomically) and return it as load_baseline reads it back."""
    csv_path, json_path, npz_path = baseline_files(run)
    write_text_atomic(csv_path, table.to_csv(index=False))
    write_json_atomic(json_path, dataclasses.asdict(variant))
    with atomic_path(npz_path, suffix=".partial.npz") as tmp:
        np.savez_compressed(tmp, **{f"{i}_{k}": np.asarray(o) for i, outs in enumerate(outputs) for k, o in enumerate(outs)})
    return load_baseline(run)


def load_baseline(run: "Run") -> tuple[Variant, Any, Outputs]:
    """The INT8 baseline save_baseline wrote (an int8.json from before the judge holds its metric as "top1")."""
    csv_path, json_path, npz_path = baseline_files(run)
    data = json.loads(json_path.read_text())
    if "top1" in data:
        data["value"] = data.pop("top1")
    with np.load(npz_path) as z:
        keys = sorted((tuple(int(x) for x in k.split("_")) for k in z.files))
        outputs: Outputs = [[] for _ in range(max((i for i, _ in keys), default=-1) + 1)]
        for i, k in keys:
            outputs[i].append(z[f"{i}_{k}"])
    return Variant(**data), pd.read_csv(csv_path).fillna({"flags": ""}), outputs


def rule_layers(ranked: Any, k: int, allowed: Iterable[str] | None = None) -> dict[str, list[str]]:
    """The k layers each rule keeps in float16, from the INT8 ranking (rank_layers; only names in allowed, step 1's
    activation tensors, when given): the tutorial's, the largest gap between a layer's single and entire cosine; the
    workbook's, the lowest single cosine. Same k, no inputs added: the rules differ only in which layers they pick."""
    keep = ranked if allowed is None else ranked[ranked["name"].isin(set(allowed))]
    return {name: list(keep.sort_values(col, ascending=False, na_position="last", kind="stable")["name"][:k])
            for name, col in RULE_COLUMNS.items()}


def compare_rules(bench: Bench, files: Step1Files, ranked: Any, k: int, int8_outputs: Outputs) -> Any:
    """The tutorial's rule tested: a hybrid for each rule of rule_layers (two step 2 builds), scored on the judge's
    images with the paired comparisons to FP32 and INT8; the workbook's row also holds its comparison with the
    tutorial's (prefix vs_tutorial). Returns the table (one row per rule; none when k < 1)."""
    if k < 1:
        return pd.DataFrame(columns=["model", bench.judge.key, "mean_cosine", "chosen_layers", "float16_layers", "layers",
                                     "float16_list",
                                     *[c for p in ("vs_fp32", "vs_int8", "vs_tutorial") for c in paired_columns(p, None)]])
    rows, outs = [], {}
    picks = rule_layers(ranked, k, bench.layers or None)
    for i, (name, chosen) in enumerate(tqdm(list(picks.items()), desc="rules", unit="build")):
        log = bench.run.logs / f"60_rule_{i}.log"
        with built(files, bench.selection(chosen), files.variant_cfg(f"rule{i}"), log) as rk:
            j = judged(rk, bench.judge, int8_outputs)
        outs[name] = j.outputs
        f16 = float16_tensors(log, bench.layers or None, chosen)
        v = Variant(name, j.score.value, j.score.mean_cosine, j.score.min_cosine, 0, len(f16), chosen,
                    vs_fp32=j.vs_fp32.to_dict(), vs_int8=j.vs_int8.to_dict() if j.vs_int8 else None, float16=f16)
        rows.append({**v.row(bench.judge), "rule": RULE_COLUMNS[name], "chosen_layers": len(chosen)})
    versus = bench.judge.paired(outs[WORKBOOK_RULE], outs[TUTORIAL_RULE])
    for r in rows:
        r.update(paired_columns("vs_tutorial", versus if r["model"] == WORKBOOK_RULE else None))
    return pd.DataFrame(rows).drop(columns=["size_kb", "file"])
