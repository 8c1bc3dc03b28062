"""The detection, segmentation or pose series cold (as on a fresh clone: the task's sample generated, its YOLO11n
trained) vs warm (the same command again, everything reused), with the run's own figures in the task's metric.

    .venv/bin/python benchmarks/bench_detect_series.py [--params params/detect.yaml] [--only 00,10,20,30,40] [--keep]
    .venv/bin/python benchmarks/bench_detect_series.py --params params/segment.yaml
    .venv/bin/python benchmarks/bench_detect_series.py --params params/pose.yaml

Issue 10's and issue 24's targets: cold < 8 min on 2 cores (training included), warm < 25 % of cold.

Nothing cached may be reused by the cold run: the generated sample (data/shapes), the trained weights
(<run>/model/model.pt, a step of the run folder) and ultralytics' / matplotlib's settings and font caches
(outputs/.config) all live inside the repository. So the benchmark copies the repository's files (what
`git ls-files` lists, with their working-tree content, nothing under data/ or outputs/) into a temporary
folder, a fresh clone in effect, and runs `python -m helpers run --params FILE --run-dir outputs/detect`
there twice with that copy first on PYTHONPATH (papermill's kernels inherit it). The parameters are the
file's own (by default params/detect.yaml, including its `only:`). The copy is deleted afterwards unless
--keep. The machine's load average is printed before and after: on a shared machine the wall times are
pessimistic.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FRESH = ("data/", "outputs/")  # what a fresh clone has only the committed README of


def fresh_copy(dest: Path) -> Path:
    """The repository's tracked and new (not ignored) files, as they are in the working tree, copied to dest;
    nothing under data/ or outputs/ but their README."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if not src.is_file() or (rel.startswith(FRESH) and not rel.endswith("README.md")):
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    return dest


def clean_env(clone: Path) -> dict[str, str]:
    """This environment with the copy first on PYTHONPATH and no cache folder inherited from the caller."""
    env = {k: v for k, v in os.environ.items() if k not in ("YOLO_CONFIG_DIR", "MPLCONFIGDIR")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(clone), os.environ.get("PYTHONPATH", "")]))
    return env


def run_series(clone: Path, args: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one `python -m helpers run` in the copy (bench_series' runner, reports included)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_series import run_series as timed_run

    return timed_run(args, env, cwd=clone)[0]


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def notebook_times(run_dir: Path) -> dict[str, tuple[str, float]]:
    """{notebook: (how, seconds)} from the runner's executed/status.json."""
    return {k: (v.get("how", "?"), float(v.get("seconds") or 0.0)) for k,
            v in read_json(run_dir / "executed" / "status.json").items()}


def figures(run_dir: Path) -> list[str]:
    """The run's own figures: training time and val mAP, FP32 vs INT8 (split) vs INT8 (stock) in the task's mAP50-95
    (box, mask or pose) and ultralytics' val()."""
    train = read_json(run_dir / "model" / "train.json")
    metrics = read_json(run_dir / "eval" / "metrics.json")
    name = metrics.get("metric_label", "mAP50-95").split(" (")[0]
    rows = {(r.get("head"), r.get("precision")): r for r in metrics.get("backends", [])}
    out = []
    if train:
        out.append(f"training: {train.get('train_seconds')} s, {train.get('epochs')} epochs at {train.get('imgsz')} px; "
                   f"ultralytics val after training mAP50-95 {train.get('map50_95', 0):.3f}")
    for (head, precision), label in ((("split", "FP32"), "FP32 (ONNX Runtime)"),
                                     (("split", "INT8"), "INT8 split head (simulator)"),
                                     (("stock", "INT8"), "INT8 stock head (simulator)")):
        r = rows.get((head, precision))
        if r:
            cos = f", whole-tensor cosine {r['cosine_mean']:.4f}" if "cosine_mean" in r else ""
            box = f"  box mAP50-95 {r['box_map50_95']:.3f}" if "box_map50_95" in r else ""
            out.append(f"{label:<30} {name} {r['map50_95']:.3f}  mAP50 {r['map50']:.3f}{box}{cos}")
    uv = metrics.get("ultralytics_val")
    fp32 = rows.get(("split", "FP32"))
    if uv and fp32:
        out.append(f"{'ultralytics val() (same .pt)':<30} {name} {uv['map50_95']:.3f}  mAP50 {uv['map50']:.3f}  "
                   f"(workbook FP32 {100 * abs(fp32['map50_95'] - uv['map50_95']):.1f} pt apart)")
    if fp32 and rows.get(("split", "INT8")):
        out.append(f"INT8 split vs FP32: {100 * (rows[('split', 'INT8')]['map50_95'] - fp32['map50_95']):+.1f} pt "
                   f"{name} (target: within 2 pt)")
    return out + later_figures(run_dir, metrics.get("metric_key", "map50_95"))


def later_figures(run_dir: Path, key: str = "map50_95") -> list[str]:
    """Notebooks 50 and 60 in the task's mAP50-95 (their tables' column `key`): the sweep's rows, the exported hybrid
    against the INT8 of the same calibration (target: not below it) and the search's curve."""
    import csv

    def rows(rel: str) -> list[dict]:
        path = run_dir / rel
        return list(csv.DictReader(path.open())) if path.is_file() else []

    out = [f"sweep {r['algorithm']}/{r['method']}: {key} {float(r[key]):.3f}, build {r['build_s']} s"
           for r in rows("analysis/sweep.csv") if r.get(key)]
    int8 = next((r for r in rows("hybrid/compare.csv") if r["model"] == "INT8" and r.get(key)), None)
    chosen = read_json(run_dir / "hybrid" / "chosen.json")
    if int8 and chosen.get(key) is not None:
        gap = 100 * (chosen[key] - float(int8[key]))
        out.append(f"exported hybrid {chosen['model']} ({chosen['float16_layers']} float16): {key} "
                   f"{chosen[key]:.3f} vs INT8 "
                   f"{float(int8[key]):.3f} with the same calibration, {gap:+.2f} pt (target: not below INT8)")
    curve = [f"{r['layers']}: {float(r[key]):.3f}" for r in rows("hybrid/search.csv")]
    if curve:
        out.append(f"search curve (float16 layers: {key}): " + ", ".join(curve))
    return out


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params/detect.yaml", help="parameters file, relative to the repository "
                                                                   "(default %(default)s)")
    ap.add_argument("--only", help="notebooks to run (default: the file's own `only:`)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy and its run folder")
    a = ap.parse_args()

    clone = Path(tempfile.mkdtemp(prefix="bench-series-"))
    fresh_copy(clone)
    params = clone / a.params
    if not params.is_file():
        raise SystemExit(f"{a.params} is not a file of the repository; pass --params a path relative to {REPO}")
    run_dir = clone / "outputs" / Path(a.params).stem
    args = ["--params", str(params), "--run-dir", str(run_dir)] + (["--only", a.only] if a.only else [])
    env = clean_env(clone)
    print(f"fresh copy {clone}; {os.cpu_count()} cores; load average (1/5/15 min) {load()}", flush=True)

    cold = run_series(clone, args, env)
    cold_nb = notebook_times(run_dir)
    load_cold = load()
    print(f"cold done in {cold:.1f} s; load average {load_cold}", flush=True)
    warm = run_series(clone, args, env)
    warm_nb = notebook_times(run_dir)
    load_warm = load()

    print(f"\n== {Path(a.params).stem} series wall time (python -m helpers run, reports included)")
    print(f"{'':<28}{'cold':>16}{'warm':>16}")
    for name in cold_nb:
        (how_c, s_c), (how_w, s_w) = cold_nb[name], warm_nb.get(name, ("-", 0.0))
        print(f"  {name:<26}{s_c:>8.1f} s {how_c:<6}{s_w:>8.1f} s {how_w:<6}")
    print(f"  {'whole command':<26}{cold:>8.1f} s       {warm:>8.1f} s")
    print(f"warm/cold = {warm / cold:.3f} (target < 0.25); cold {cold / 60:.1f} min (target < 8 min on 2 cores, "
          "training included)")
    print(f"load average (1/5/15 min): after cold {load_cold}, after warm {load_warm}")
    print("\n== the run's own figures")
    for line in figures(run_dir):
        print(f"  {line}")
    if a.keep:
        print(f"\nkept: {clone} (run folder {run_dir})")
    else:
        shutil.rmtree(clone, ignore_errors=True)
    print(f"\nsummary: cold {cold:.1f} s, warm {warm:.1f} s, warm/cold {warm / cold:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
