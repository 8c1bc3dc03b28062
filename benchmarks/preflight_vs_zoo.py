"""How good is the pre-flight time estimate? The toolkit's cycle model against the rknn_model_zoo's measured FPS.

    nice -n 19 .venv/bin/python benchmarks/preflight_vs_zoo.py [--out outputs/preflight_zoo] [--models yolov8n,resnet50]
                                                              [--chips rk3566,rk3588] [--timeout 1800]

Builds the zoo's architectures at the zoo's input sizes with random weights (the cycle model does not depend on
weight values): ultralytics YAMLs yolov8n/s, yolo11n/s and yolov5n/s (ultralytics' anchor-free "v5u" variants,
NOT the anchor-based airockchip/yolov5 the zoo measured), torchvision resnet50 (v1; the zoo ran ONNX model zoo's
resnet50-v2-7) and mobilenet_v2 (the zoo: mobilenetv2-12), INT8, verbose, for rk3566, rk3562, rk3588, rk3576.
The YOLO exports keep ultralytics' whole head (DFL, box decode, concat) where the zoo's exports stop before it:
one more reason the two differ. Each export and build runs in its own child process (helpers.core.isolate),
one at a time; a build that fails in a graph rule is retried without the rules the toolkit names
(helpers.toolkit.session.RKNN). Builds are cached under --out (delete a cell's folder to rebuild it).

Then per chip: raw estimate = total cycles / nominal NPU clock (helpers.steps.preflight.CHIPS); factor = geometric
mean of zoo time / raw estimate over the models; leave-one-model-out error = the estimate of each model with the
factor fitted on the others, against the zoo; Spearman rank correlation of cycles with the zoo's times.
Writes <out>/preflight_vs_zoo.md, .csv and calibration.json, and prints the table (the run of 2026-12-06 is kept in
benchmarks/preflight_vs_zoo.md; its fits are helpers.steps.preflight.CALIBRATION).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from helpers.core.errors import WorkbookError  # noqa: E402
from helpers.core.isolate import run_isolated  # noqa: E402
from helpers.core.paths import atomic_path, write_json_atomic, write_text_atomic  # noqa: E402
from helpers.steps.preflight import CHIPS  # noqa: E402
from helpers.toolkit.profile import read_profile  # noqa: E402

ZOO_SOURCE = ("airockchip/rknn_model_zoo README.md, section 'Model performance benchmark(FPS)' (commit bad6c733, 2025-04-09): "
              "INT8, inference only, maximum NPU frequency, RK3588 and RK3576 on a single NPU core")
ZOO_CHIPS = ["rk3566", "rk3562", "rk3588", "rk3576"]  # the README's columns RK3566/RK3568, RK3562, RK3588, RK3576
# model: (builder, input size, the zoo's model name, zoo FPS in ZOO_CHIPS order)
MODELS: dict[str, tuple[str, int, str, tuple[float, ...]]] = {
    "yolov8n": ("ultralytics:yolov8n.yaml", 640, "yolov8n", (34.0, 40.9, 73.5, 90.2)),
    "yolov8s": ("ultralytics:yolov8s.yaml", 640, "yolov8s", (15.1, 18.4, 38.0, 40.8)),
    "yolo11n": ("ultralytics:yolo11n.yaml", 640, "yolo11n", (20.6, 34.0, 60.0, 77.9)),
    "yolo11s": ("ultralytics:yolo11s.yaml", 640, "yolo11s", (10.2, 16.7, 33.0, 38.2)),
    "yolov5nu": ("ultralytics:yolov5nu.yaml", 640, "yolov5n (airockchip, anchor-based)", (39.7, 47.4, 82.5, 112.7)),
    "yolov5su": ("ultralytics:yolov5su.yaml", 640, "yolov5s (airockchip, anchor-based)", (19.3, 23.6, 48.4, 57.5)),
    "resnet50": ("torchvision:resnet50", 224, "resnet50-v2-7", (37.9, 54.9, 110.1, 99.0)),
    "mobilenet_v2": ("torchvision:mobilenet_v2", 224, "mobilenetv2-12", (180.7, 281.3, 450.7, 467.0)),
}
USEFUL_MAX_ERROR = 0.5  # a chip's estimate is shown when every leave-one-out error is within +-50 % ...
USEFUL_MIN_RHO = 0.8    # ... and the cycles rank the models as the board does (Spearman >= 0.8)


# ---------------------------------------------------------------- children (each in its own process)

def export_child(builder: str, imgsz: int, out: str) -> dict:
    """Build the architecture from code with random weights and write its ONNX to out."""
    import torch  # slow optional imports, only in the child that exports

    torch.manual_seed(0)
    kind, _, arg = builder.partition(":")
    out_path = Path(out)
    with atomic_path(out_path) as tmp:
        if kind == "ultralytics":
            from ultralytics import YOLO
            from ultralytics.utils import SETTINGS

            SETTINGS.update({"sync": False})
            work = out_path.parent / f".{out_path.stem}.work"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            YOLO(arg).save(str(work / "model.pt"))  # the export lands beside the weights file
            written = YOLO(str(work / "model.pt")).export(format="onnx", imgsz=imgsz, opset=19, simplify=True, device="cpu")
            shutil.move(str(written), tmp)
            shutil.rmtree(work, ignore_errors=True)
        else:
            import torchvision

            net = getattr(torchvision.models, arg)(weights=None).eval()
            with torch.no_grad():
                torch.onnx.export(net, torch.rand(1, 3, imgsz, imgsz), str(tmp), opset_version=19,
                                  input_names=["images"], output_names=["output0"])
    return {"onnx": str(out_path)}


def build_child(onnx: str, chip: str, imgsz: int, work: str) -> dict:
    """INT8 build of onnx for chip, verbose (the per-op profile lands in <work>/build.log); a build that fails
    in a graph rule is retried without the rules the toolkit's log names."""
    from helpers.toolkit.session import RKNN

    work_dir = Path(work)
    work_dir.mkdir(parents=True, exist_ok=True)
    calib = work_dir / "calib.npy"  # one random image: quantization ranges do not change the cycle model
    np.save(calib, np.random.default_rng(0).uniform(0, 255, (1, 3, imgsz, imgsz)).astype(np.float32))
    write_text_atomic(work_dir / "calib.txt", f"{calib}\n")
    t0 = time.perf_counter()
    with RKNN(work_dir / "build.log", verbose=True, auto_disable_rules=True) as rk:
        rk.config(mean_values=[[0, 0, 0]], std_values=[[255, 255, 255]], target_platform=chip)
        rk.load_onnx(model=onnx)
        rk.build(do_quantization=True, dataset=str(work_dir / "calib.txt"))
        rules = [d.rule for d in rk.auto_disabled]
    return {"seconds": round(time.perf_counter() - t0, 1), "rules_disabled": rules}


# ---------------------------------------------------------------- parent side

def export(model: str, out: Path) -> Path:
    """The model's ONNX under out/models (cached)."""
    builder, imgsz, _, _ = MODELS[model]
    onnx = out / "models" / f"{model}-{imgsz}.onnx"
    if not onnx.is_file():
        run_isolated("benchmarks.preflight_vs_zoo:export_child", {"builder": builder, "imgsz": imgsz, "out": str(onnx)},
                     out / "models" / f"{model}.export.log", timeout=1800, what=f"export of {model}")
    return onnx


def build(model: str, chip: str, onnx: Path, out: Path, timeout: float) -> dict:
    """One cell: build (cached in out/<model>/<chip>/result.json) and read its profile."""
    work = out / model / chip
    result_file = work / "result.json"
    if not result_file.is_file():
        res = run_isolated("benchmarks.preflight_vs_zoo:build_child",
                           {"onnx": str(onnx), "chip": chip, "imgsz": MODELS[model][1], "work": str(work)},
                           work / "child.log", timeout=timeout, what=f"build of {model} for {chip}")
        write_json_atomic(result_file, res)
    res = json.loads(result_file.read_text())
    prof = read_profile(work / "build.log")
    cpu = prof.cpu_ops
    return {"cycles": prof.total_cycles, "cpu_ops": len(cpu), "cpu_op_types": ",".join(sorted(set(cpu["op_type"]))),
            "weight_kb": prof.weight_kb, "internal_kb": prof.internal_kb, "build_s": res["seconds"],
            "rules_disabled": ",".join(res["rules_disabled"])}


def geomean(values) -> float:
    return float(math.exp(np.mean(np.log(np.asarray(list(values), dtype=float)))))


def compare(cells: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per cell: raw estimate, corrected and leave-one-model-out estimates and errors; per chip: factor, errors, rho."""
    cells = cells.copy()
    cells["raw_ms"] = [c / CHIPS[chip].npu_hz * 1e3 for c, chip in zip(cells["cycles"], cells["chip"])]
    cells["zoo_ms"] = 1e3 / cells["zoo_fps"]
    cells["ratio"] = cells["zoo_ms"] / cells["raw_ms"]
    chips = []
    for chip, grp in cells.groupby("chip", sort=False):
        factor = geomean(grp["ratio"])
        loo = [geomean(grp["ratio"].drop(i)) * grp.at[i, "raw_ms"] for i in grp.index]
        cells.loc[grp.index, "est_ms"] = grp["raw_ms"] * factor
        cells.loc[grp.index, "loo_ms"] = loo
        err = np.asarray(loo) / grp["zoo_ms"].to_numpy() - 1
        cells.loc[grp.index, "loo_err"] = err
        rho = float(spearmanr(grp["cycles"], grp["zoo_ms"]).statistic) if len(grp) > 2 else float("nan")
        useful = bool(len(grp) >= 4 and np.max(np.abs(err)) <= USEFUL_MAX_ERROR and rho >= USEFUL_MIN_RHO)
        chips.append({"chip": chip, "models": len(grp), "npu_ghz": CHIPS[chip].npu_hz / 1e9, "factor": round(factor, 3),
                      "ratio_min": round(grp["ratio"].min(), 2), "ratio_max": round(grp["ratio"].max(), 2),
                      "loo_median_abs_err": round(float(np.median(np.abs(err))), 3),
                      "loo_max_abs_err": round(float(np.max(np.abs(err))), 3),
                      "loo_err_low": round(float(np.min(err)), 3), "loo_err_high": round(float(np.max(err)), 3),
                      "spearman": round(rho, 3), "useful": useful})
    return cells, pd.DataFrame(chips)


def markdown(cells: pd.DataFrame, chips: pd.DataFrame, minutes: float) -> str:
    """The side-by-side table and the per-chip summary as markdown."""
    rows = ["| model | input | chip | cycles (M) | ops on CPU | raw estimate (ms) | corrected (ms) | leave-one-out (ms) "
            "| zoo (ms) | zoo FPS | leave-one-out error |", "|" + " --- |" * 11]
    for r in cells.itertuples():
        cpu = f"{r.cpu_ops} ({r.cpu_op_types})" if r.cpu_ops else "0"
        rows.append(f"| {r.model} | {r.imgsz} | {r.chip} | {r.cycles / 1e6:.2f} | {cpu} | {r.raw_ms:.1f} | {r.est_ms:.1f} | "
                    f"{r.loo_ms:.1f} | {r.zoo_ms:.1f} | {r.zoo_fps:g} | {r.loo_err:+.0%} |")
    summary = ["| chip | NPU clock used (GHz) | models | factor (zoo / raw) | factor range | leave-one-out error: median abs "
               "| range | Spearman rho | estimate shown |", "|" + " --- |" * 9]
    for r in chips.itertuples():
        summary.append(f"| {r.chip} | {r.npu_ghz:g} | {r.models} | {r.factor:.2f} | {r.ratio_min:.2f}-{r.ratio_max:.2f} | "
                       f"{r.loo_median_abs_err:.0%} | {r.loo_err_low:+.0%} .. {r.loo_err_high:+.0%} | {r.spearman:.2f} | "
                       f"{'yes' if r.useful else 'no'} |")
    return "\n".join([
        "## Pre-flight estimate vs the rknn_model_zoo's measured FPS", "",
        f"Zoo figures: {ZOO_SOURCE}. Here: rknn-toolkit2 2.5.0, INT8, random weights, the toolkit's verbose per-op cycles; "
        "raw estimate = total cycles / NPU clock; corrected = raw x the chip's factor (fitted on all models); leave-one-out = "
        "raw x the factor fitted on the other models, compared with the zoo. yolov5nu/su are ultralytics' anchor-free v5u "
        "models, the zoo measured airockchip's anchor-based yolov5; resnet50 is torchvision's v1, the zoo's resnet50-v2-7; "
        "the YOLO exports keep ultralytics' decode head, the zoo's stop before it.", "",
        *rows, "", *summary, "",
        f"An estimate is shown for a chip when every leave-one-out error is within +-{USEFUL_MAX_ERROR:.0%} and Spearman "
        f"rho >= {USEFUL_MIN_RHO}. Wall time of this run: {minutes:.1f} min (builds cached under the output folder)."])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "outputs" / "preflight_zoo"), help="output folder (default outputs/preflight_zoo)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    p.add_argument("--chips", default=",".join(ZOO_CHIPS), help=f"comma-separated, from {', '.join(ZOO_CHIPS)}")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per build before it is stopped (default 1800)")
    args = p.parse_args(argv)
    models, chips = args.models.split(","), args.chips.split(",")
    unknown = [m for m in models if m not in MODELS] + [c for c in chips if c not in ZOO_CHIPS]
    if unknown:
        raise WorkbookError(f"Unknown model or chip {', '.join(unknown)}; "
                            f"models: {', '.join(MODELS)}; chips: {', '.join(ZOO_CHIPS)}.")
    out = Path(args.out).resolve()
    started = time.perf_counter()
    rows = []
    for model in models:
        onnx = export(model, out)
        for chip in chips:
            t0 = time.perf_counter()
            try:
                cell = build(model, chip, onnx, out, args.timeout)
            except Exception as exc:  # one failed cell is a row of the log, not the end of the run
                print(f"{model} {chip}: FAILED {str(exc).splitlines()[0][:200]}", flush=True)
                continue
            rows.append({"model": model, "imgsz": MODELS[model][1], "chip": chip, **cell,
                         "zoo_fps": MODELS[model][3][ZOO_CHIPS.index(chip)]})
            print(f"{model} {chip}: {cell['cycles'] / 1e6:.2f} M cycles, {cell['cpu_ops']} ops on CPU "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    cells, summary = compare(pd.DataFrame(rows))
    text = markdown(cells, summary, (time.perf_counter() - started) / 60)
    write_text_atomic(out / "preflight_vs_zoo.md", text + "\n")
    with atomic_path(out / "preflight_vs_zoo.csv") as tmp:
        cells.to_csv(tmp, index=False)
    write_json_atomic(out / "calibration.json", {"source": ZOO_SOURCE, "chips": summary.to_dict(orient="records")})
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
