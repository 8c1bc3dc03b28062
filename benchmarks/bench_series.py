"""Cold vs warm wall time of the whole series, and where the cold time goes (toolkit vs our code).

    .venv/bin/python benchmarks/bench_series.py [--params params/sample.yaml] [--run-dir DIR] [--only 00,10,20,30]

1. cold: `python -m helpers run` into an empty run folder (the bundled sample data, written once by the
   first run on a machine, is shared and not deleted);
2. warm: the same command again (every Step should reuse its artifacts);
3. late changes: a parameter of 30, then of 20: only the changed notebook's steps and the steps
   after it that read its artifacts may recompute (the cache records say which did);
4. variants: 6 variants of notebook 20 (3 chips x 2 algorithms) on the default local dask cluster vs the
   same 6 one after another (`--jobs 1`), both seeded with the cold run's model (notebooks 00 and 10,
   reused), so the ratio is the variants' own work.

Time inside rknn-toolkit2 is measured for real: a sitecustomize (in a temp dir on PYTHONPATH, so the
notebook kernels load it too) times what the toolkit wrapper runs (`helpers.toolkit.session.RKNN`: RKNN
construction and release; every method of its proxy). Per-step seconds come from <run>/.cache/*.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SITECUSTOMIZE = r'''
import importlib.abc, importlib.util, json, os, sys, time, contextlib

class _TimeToolkit(importlib.abc.MetaPathFinder):
    """After helpers.toolkit.session is imported, wrap RKNN's calls so the time spent in each toolkit call is logged."""
    def find_spec(self, name, path, target=None):
        if name != "helpers.toolkit.session":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        sys.meta_path.insert(0, self)
        if spec is None:
            return None
        loader = spec.loader
        orig_exec = loader.exec_module
        def exec_module(module):
            orig_exec(module)
            def log(what, t0):
                with open(os.environ["WORKBOOK_TOOLKIT_TIMES"], "a") as fh:
                    fh.write(json.dumps({"pid": os.getpid(), "call": what, "s": time.perf_counter() - t0}) + "\n")
            cls = module.RKNN
            call_, init_, release_ = cls._call, cls.__init__, cls.release
            def timed_call(self, name, args, kwargs):
                t0 = time.perf_counter()
                try:
                    return call_(self, name, args, kwargs)
                finally:
                    log(name, t0)
            def timed_init(self, *a, **k):
                t0 = time.perf_counter()
                init_(self, *a, **k)
                log("RKNN()", t0)
            def timed_release(self):
                if self.released:
                    return
                t0 = time.perf_counter()
                release_(self)
                log("release", t0)
            cls._call, cls.__init__, cls.release = timed_call, timed_init, timed_release
        loader.exec_module = exec_module
        return spec

if os.environ.get("WORKBOOK_TOOLKIT_TIMES"):
    sys.meta_path.insert(0, _TimeToolkit())
'''


def run_series(args: list[str], env: dict[str, str], cwd: Path = REPO) -> tuple[float, int]:
    """Wall seconds (and exit code) of one `python -m helpers run` in cwd, reports included; stops the benchmark on failure."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "helpers", "run", *args], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-4000:])
        raise SystemExit(f"series failed (exit {proc.returncode}); see above")
    return seconds, proc.returncode


def toolkit_seconds(times_file: Path) -> float:
    if not times_file.exists():
        return 0.0
    return sum(json.loads(line)["s"] for line in times_file.read_text().splitlines() if line.strip())


def cache_records(run_dir: Path) -> dict[str, dict]:
    out = {}
    for p in sorted((run_dir / ".cache").glob("*.json")):
        try:
            out[p.stem] = json.loads(p.read_text())
        except ValueError:
            pass
    return out


def notebook_seconds(run_dir: Path) -> dict[str, float]:
    import nbformat

    out = {}
    for p in sorted((run_dir / "executed").glob("*.ipynb")):
        meta = nbformat.read(str(p), as_version=4).metadata.get("papermill", {})
        out[p.stem] = float(meta.get("duration") or 0.0)
    return out


def seed_from(run_dir: Path, keep: tuple[str, ...], dest: Path) -> None:
    """Copy of a run folder with only what the notebooks `keep` wrote (their reuse records say what)."""
    records = json.loads((run_dir / "executed" / "reuse.json").read_text())
    records = {k: v for k, v in records.items() if k.split("_", 1)[0] in keep}
    for rec in records.values():
        for rel in rec["outputs"]:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(run_dir / rel, dest / rel)
    (dest / "executed").mkdir(parents=True, exist_ok=True)
    for name in records:
        shutil.copy2(run_dir / "executed" / f"{name}.ipynb", dest / "executed" / f"{name}.ipynb")
    (dest / "executed" / "reuse.json").write_text(json.dumps(records))
    if (run_dir / "params.json").exists():
        shutil.copy2(run_dir / "params.json", dest / "params.json")


def bench_variants(params: str, run_dir: Path, env: dict[str, str]) -> tuple[float, float]:
    """Seconds of the 6 variants (--variants) on the local cluster, and with one worker (one after another)."""
    import yaml

    variants_file = run_dir.parent / f"{run_dir.name}-variants.yaml"
    variants_file.write_text(yaml.safe_dump({"base": str(REPO / params), "only": "00,10,20", "grid": {
        "20_convert.target_platform": ["rk3588", "rk3566", "rk3576"], "20_convert.quantized_algorithm": ["normal", "mmse"]}}))
    out = []
    for label, extra in (("local cluster", []), ("one after another", ["--jobs", "1"])):
        root = run_dir.parent / f"{run_dir.name}-variants-{'par' if not extra else 'seq'}"
        seed_from(run_dir, ("00", "10"), root / "_shared")
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "helpers", "run", "--variants", str(variants_file), "--run-dir", str(root), *extra]
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            print(proc.stdout[-4000:])
            raise SystemExit(f"variants ({label}) failed (exit {proc.returncode}); see above")
        print(f"variants ({label}): {out[-1]:.1f} s", flush=True)
    variants_file.unlink()
    return out[0], out[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params/sample.yaml")
    ap.add_argument("--run-dir", help="run folder (default: a fresh temp folder under outputs/)")
    ap.add_argument("--only", help="notebooks to run, e.g. 00,10,20,30")
    ap.add_argument("--no-variants", action="store_true", help="skip the 6-variant comparison (cluster vs one after another)")
    ap.add_argument("--late-param", action="append",
                    help="NOTEBOOK.KEY=VALUE to change after the warm run (repeatable, cumulative); "
                         "default: 30_simulator_inference.batch=16 then 20_convert.calib_images=40")
    a = ap.parse_args()
    if a.late_param is None:
        a.late_param = ["30_simulator_inference.batch=16", "20_convert.calib_images=40"]
    a.late_param = [x for x in a.late_param if x]

    from helpers.runner import execute

    run_dir = Path(a.run_dir) if a.run_dir else Path(tempfile.mkdtemp(prefix="bench-", dir=REPO / "outputs"))
    if any(run_dir.iterdir()) if run_dir.exists() else False:
        raise SystemExit(f"{run_dir} is not empty; a cold run needs an empty run folder")
    tmp = Path(tempfile.mkdtemp(prefix="bench-hook-"))
    (tmp / "sitecustomize.py").write_text(SITECUSTOMIZE)
    times = tmp / "toolkit_times.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp), os.environ.get("PYTHONPATH")])),
           "WORKBOOK_TOOLKIT_TIMES": str(times)}
    base = ["--params", a.params, "--run-dir", str(run_dir)] + (["--only", a.only] if a.only else [])

    print(f"run folder {run_dir}; {os.cpu_count()} cores", flush=True)
    cold, _ = run_series(base, env)
    cold_tk = toolkit_seconds(times)
    cold_nb = notebook_seconds(run_dir)
    cold_steps = cache_records(run_dir)
    times.unlink(missing_ok=True)
    warm, _ = run_series(base, env)
    warm_tk = toolkit_seconds(times)
    warm_steps = cache_records(run_dir)
    recomputed_warm = [k for k in warm_steps if warm_steps[k].get("finished") != cold_steps.get(k, {}).get("finished")]

    lates = []
    if a.late_param:
        import yaml

        config = execute.load_params_file(REPO / a.params)
        previous = warm_steps
        for change in a.late_param:  # cumulative: each run adds one change to the ones before
            nb_key, value = change.split("=", 1)
            nb, key = nb_key.split(".", 1)
            if not any(b.stem == nb for b in execute.notebooks()):
                continue
            config.setdefault(nb, {})[key] = yaml.safe_load(value)
            late_file = tmp / "late.yaml"
            late_file.write_text(yaml.safe_dump(config))
            times.unlink(missing_ok=True)
            late_s, _ = run_series(["--params", str(late_file), *base[2:]], env)
            after = cache_records(run_dir)
            lates.append((change, late_s, toolkit_seconds(times),
                          [k for k in after if after[k].get("finished") != previous.get(k, {}).get("finished")]))
            previous = after

    par_s = seq_s = None
    if not a.no_variants:
        par_s, seq_s = bench_variants(a.params, run_dir, {k: v for k, v in env.items() if k != "WORKBOOK_TOOLKIT_TIMES"})

    print("\n== series wall time (python -m helpers run, reports included)")
    print(f"cold  {cold:7.1f} s   toolkit {cold_tk:6.1f} s ({100 * cold_tk / cold:4.1f} %)   our code + "
          f"papermill/kernels {cold - cold_tk:6.1f} s ({100 * (cold - cold_tk) / cold:4.1f} %)")
    print(f"warm  {warm:7.1f} s   toolkit {warm_tk:6.1f} s   warm/cold = {warm / cold:.3f} (target < 0.10)   steps "
          f"recomputed: {recomputed_warm or 'none'}")
    for change, secs, tk, recomputed in lates:
        print(f"change {change}: {secs:.1f} s (toolkit {tk:.1f} s); steps recomputed: {recomputed or 'none'}")
    print("\n== cold, per notebook (papermill duration) and per cached step (.cache/*.json seconds)")
    for name, s in cold_nb.items():
        print(f"  {name:<28} {s:6.1f} s")
    for name, rec in cold_steps.items():
        print(f"  step {name:<23} {float(rec.get('seconds', 0)):6.1f} s")
    shutil.rmtree(tmp, ignore_errors=True)
    if par_s is not None:
        print(f"\n== 6 variants (notebook 20: 3 chips x 2 algorithms), {os.cpu_count()} cores")
        print(f"local dask cluster {par_s:7.1f} s   one after another {seq_s:7.1f} s   ratio {par_s / seq_s:.3f}")
    print(f"\nsummary: cold {cold:.1f} s, warm {warm:.1f} s (ratio {warm / cold:.3f}, target < 0.10), toolkit share of "
          f"cold {100 * cold_tk / cold:.1f} %"
          + (f"; 6 variants on the local cluster / one after another = {par_s:.1f} / {seq_s:.1f} s = "
             f"{par_s / seq_s:.3f}"
             if par_s is not None else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
