"""Notebook 30's step: the INT8 simulator built from a model's source or from notebook 20's convert record
(helpers.backends.simulator), and what the evaluation writes and reloads (eval/metrics.json, eval/predictions.npz).
The classifier's metric and plots live in helpers.tasks.classify, a detector's in helpers.tasks.detect."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from helpers.backends.simulator import SimulatorRunner
from helpers.core.paths import Run, atomic_path, write_json_atomic
from helpers.core.step_cache import cached, record_inputs
from helpers.steps.convert import build_on, model_channels
from helpers.steps.export.exporter import data_marker
from helpers.tasks.classify.metric import Comparison, EvalResult, compare, evaluate, paired, topk_accuracy, verdict
from helpers.tasks.data import LabelledImages
from helpers.tasks.feeds import fitted, fp32_runner
from helpers.toolkit.options import ConvertConfig, quantized_name
from helpers.toolkit.record import ConvertRecord

ROLES = ("fp32", "int8", "hybrid", "board", "diagnostic")


def simulator(source: str | Path, cfg: ConvertConfig, dataset: str | Path | None, input_size: int, log_path: str | Path,
              load_path: str = "auto", batch: int = 8, name: str = "", auto_disable_rules: bool = False) -> SimulatorRunner:
    """The quantized model in the toolkit's simulator, built from its source (ONNX or TorchScript) in this process;
    with batch > 1 the model is built with rknn_batch_size=batch and fed batch images per call. Its default name says
    its dtype ("INT8 RKNN simulator", "w4a16 RKNN simulator": helpers.toolkit.options.quantized_name)."""
    name = name or f"{quantized_name(cfg.quantized_dtype)} RKNN simulator"
    channels = model_channels(Path(source), load_path)
    cfg = ConvertConfig.from_dict({**cfg.to_dict(), "rknn_batch_size": int(batch) if int(batch) > 1 else None})
    data = Path(dataset) if dataset else None
    return SimulatorRunner(log_path, lambda rk: build_on(rk, Path(source), cfg, data, input_size, load_path), batch,
                           fitted(channels), name, auto_disable_rules, channels)


def simulator_from_record(record: ConvertRecord, log_path: str | Path, batch: int = 8, name: str = "",
                          **overrides: Any) -> SimulatorRunner:
    """Rebuild the model notebook 20 converted (helpers.toolkit.record.read_record), with optional config overrides."""
    cfg = ConvertConfig.from_dict({**record.config.to_dict(), **overrides})
    return simulator(record.source, cfg, record.dataset, record.input_size, log_path, record.load_path, batch, name)


def save_predictions(path: Path, images: LabelledImages, *results: EvalResult) -> Path:
    """Write labels, image paths and each backend's scores to an .npz (atomic)."""
    path = Path(path)
    arrays: dict[str, Any] = {"labels": np.asarray(images.labels), "paths": np.asarray([str(p) for p in images.paths]),
                              "classes": np.asarray(images.classes)}
    for i, r in enumerate(results):
        arrays[f"scores_{i}"] = r.scores
        arrays[f"name_{i}"] = np.asarray(r.name)
    with atomic_path(path, ".partial.npz") as tmp:  # numpy appends .npz to any other name
        np.savez_compressed(tmp, **arrays)
    return path


def write_metrics(path: Path, results: list[EvalResult], comparison: Comparison | None, extra: dict[str, Any] | None = None,
                  roles: list[str] | None = None, demo: bool = False) -> Path:
    """eval/metrics.json: each backend's summary with its role (default: fp32, int8, then diagnostic rows such
    as the BGR-input bug; "demo": true on non-FP32 rows built under demo calibration), the comparison and any
    extra values (atomic). Readers pick backends by role, never by display name."""
    roles = list(roles) if roles is not None else ["fp32", "int8", *["diagnostic"] * max(0, len(results) - 2)][: len(results)]
    unknown = [r for r in roles if r not in ROLES]
    if len(roles) != len(results) or unknown:
        raise ValueError(f"roles={roles} must give one of {ROLES} for each of the {len(results)} results.")
    backends = [{**r.summary(), "role": role, **({"demo": True} if demo and role != "fp32" else {})}
                for r, role in zip(results, roles)]
    data = {"backends": backends, "comparison": comparison.summary() if comparison else None,
            "verdict": verdict(comparison) if comparison else "", **(extra or {})}
    return write_json_atomic(path, data, default=float)


def load_run(metrics_path: Path, predictions_path: Path) -> tuple[list[EvalResult], Comparison | None, dict[str, Any]]:
    """Reload what write_metrics/save_predictions stored (for a cached notebook re-run)."""
    metrics = json.loads(Path(metrics_path).read_text())
    z = np.load(predictions_path)
    labels = z["labels"]
    results = []
    for i, summ in enumerate(metrics["backends"]):
        scores = z[f"scores_{i}"]
        results.append(EvalResult(summ["name"], scores, labels, topk_accuracy(scores, labels, 1),
                                  topk_accuracy(scores, labels, 5), float(summ["seconds"]), float(summ["images_per_s"])))
    cmp = compare(results[0], results[1]) if len(results) >= 2 else None
    extra = {k: v for k, v in metrics.items() if k not in ("backends", "comparison", "verdict")}
    return results, cmp, extra


def measured(run: Run, record: ConvertRecord, val: LabelledImages, data_dir: Path, sim: Any, batch: int,
             val_images: int) -> tuple[list[EvalResult], Comparison | None, dict[str, Any]]:
    """Notebook 30's classifier measurement through the step cache: FP32 (ONNX Runtime), INT8 and INT8 fed BGR (the
    simulator: sim, a step_cache.Lazy built on first use) on the same images, with the paired verdicts of the one
    noise rule (INT8 vs FP32 in "comparison", the BGR bug vs INT8 in "bgr_paired"); or its saved results."""
    metrics_path, preds_path = run.eval / "metrics.json", run.eval / "predictions.npz"
    size = record.input_size

    def compute():
        pixels = val.load(size)
        onnx_path = run.need("model/model.onnx", "10_export.ipynb")
        fp32 = evaluate(fp32_runner(onnx_path, record.config.mean_values, record.config.std_values), val, size, pixels=pixels)
        int8 = evaluate(sim.get(), val, size, batch=batch, pixels=pixels)
        bgr = evaluate(sim.get(), val, size, batch=batch, pixels=np.ascontiguousarray(pixels[..., ::-1]))
        bgr.name = f"{quantized_name(record.config.quantized_dtype)} simulator, BGR input (bug)"
        save_predictions(preds_path, val, fp32, int8, bgr)
        extra = {"bgr_top1": bgr.top1, "bgr_paired": paired(int8, bgr).to_dict(), "batch": batch, "images": len(val)}
        write_metrics(metrics_path, [fp32, int8, bgr], compare(fp32, int8), extra, roles=["fp32", "int8", "diagnostic"])
        return load_run(metrics_path, preds_path)

    key = {"batch": batch, "val_images": val_images, "data": str(data_dir), "paired": "mcnemar", "order": "stratified"}
    return cached(run, "30_evaluate", key, inputs=[*record_inputs(run), data_marker(data_dir)],
                  outputs=[metrics_path, preds_path], compute=compute, load=lambda: load_run(metrics_path, preds_path))
