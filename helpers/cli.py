"""Command line for the series.

    python -m helpers run    [--params FILE.yaml] [--run-dir DIR] [--only 20,30] [--no-report]
    python -m helpers run    --sweep FILE.yaml [--run-dir DIR] [--only ...] [--jobs N]
    python -m helpers report [--run-dir DIR]

`run` executes the notebooks in order with papermill into <run>/executed/ (a progress bar per
notebook), stops at the first failing notebook with its error in one block, then renders the HTML
reports and <run>/report/index.html. `--sweep` runs several parameter sets into sibling run folders
<run-dir>/<variant>/ in a process pool sized to the cores and writes <run-dir>/comparison.{csv,html}.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import report, summary
from .errors import WorkbookError
from .paths import DEFAULT_RUN, OUTPUTS, REPO, Run, write_text_atomic


@dataclass
class SeriesResult:
    """What one run of the series did: notebooks finished, the failure block (if any), wall time."""

    run_dir: Path
    done: list[str] = field(default_factory=list)
    failed: str | None = None
    failure: str = ""
    seconds: float = 0.0
    index: Path | None = None

    @property
    def ok(self) -> bool:
        return self.failed is None


def check_run_dir(run_dir: str | Path) -> Path:
    """The run folder as an absolute path (relative = from the repo root); a file there is an error."""
    path = Path(run_dir).expanduser()
    path = path if path.is_absolute() else REPO / path
    if path.exists() and not path.is_dir():
        raise WorkbookError(f"Run folder {path} is a file; pass --run-dir a folder path (it is created if missing).")
    return path


def plan(config: dict[str, Any], only: str | list[str] | None) -> list[tuple[Path, dict[str, Any]]]:
    """The notebooks to run with their parameters, all validated before anything executes."""
    books = report.select(only)
    if not books:
        raise WorkbookError("notebooks/ holds no NN_name.ipynb notebook; nothing to run.")
    return [(nb, report.params_for(nb, config)) for nb in books]


def run_series(config: dict[str, Any], run_dir: str | Path, only: str | list[str] | None = None,
               progress: bool = True, render: bool = True, log=print, prewarm: bool = True) -> SeriesResult:
    """Execute the planned notebooks in order; stop at the first failure; render the reports.

    While one notebook runs, the next one's kernel starts and imports its modules (prewarm) and the
    finished one is rendered to HTML, both in background threads: a warm series is mostly kernel
    start-up and imports, so overlapping them is most of what makes it fast.
    """
    from concurrent.futures import ThreadPoolExecutor

    steps = plan(config, only)
    root = Run.at(check_run_dir(run_dir)).root
    result = SeriesResult(root)
    started = time.perf_counter()
    renders = []
    renderer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
    kernel = report.Prewarmed(steps[0][0]) if prewarm else None
    try:
        for i, (nb, params) in enumerate(steps):
            name = report.notebook_name(nb)
            t0 = time.perf_counter()
            current, kernel = kernel, None
            try:
                if prewarm and i + 1 < len(steps):
                    kernel = report.Prewarmed(steps[i + 1][0])
                report.execute(nb, root, params, progress={"desc": f"{name:<26}", "leave": True} if progress else False,
                               kernel=current)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # papermill's execution error, a dead kernel, ...
                result.failed = name
                result.failure = report.describe_failure(name, exc, root / "executed" / nb.name)
                break
            result.done.append(name)
            if render:
                renders.append(renderer.submit(summary.render_notebook, root / "executed" / nb.name, root / "report"))
            if not progress:
                log(f"  {name} done in {time.perf_counter() - t0:.1f} s")
    finally:
        if kernel is not None:
            kernel.shutdown()
        renderer.shutdown(wait=True)
    result.seconds = time.perf_counter() - started
    if render:
        for job in renders:
            try:
                job.result()
            except Exception as exc:  # a notebook that cannot be rendered must not hide the run's outcome
                log(f"warning: could not render a report: {type(exc).__name__}: {exc}")
        if result.failed:  # the failed notebook's own report shows where it stopped
            with contextlib.suppress(Exception):
                summary.render_notebook(root / "executed" / f"{result.failed}.ipynb", root / "report")
        result.index = summary.write_index(root)
    return result


# ----------------------------------------------------------------------------- sweeps

SWEEP_KEYS = {"base", "only", "variants"}


def load_sweep(path: str | Path) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Read a sweep file -> ({variant: full parameters config}, only). Each variant's sections are laid
    over the `base:` parameters file (path relative to the repo root or to the sweep file)."""
    path = Path(path)
    data = report.read_yaml(path, "Sweep file", "--sweep an existing YAML file (see params/sweep_platforms.yaml)")
    if not isinstance(data, dict) or set(data) - SWEEP_KEYS:
        extra = sorted(set(data) - SWEEP_KEYS) if isinstance(data, dict) else data
        raise WorkbookError(f"Sweep file {path} has unknown key(s) {extra}; valid keys: {', '.join(sorted(SWEEP_KEYS))}.")
    variants = data.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise WorkbookError(f"Sweep file {path} needs a non-empty 'variants:' mapping of name: {{section: {{param: value}}}}.")
    base: dict[str, Any] = {}
    if data.get("base"):
        base_path = Path(data["base"])
        if not base_path.is_absolute():
            base_path = (REPO / base_path) if (REPO / base_path).exists() else path.parent / base_path
        base = report.load_params_file(base_path)
    configs = {}
    for name, override in variants.items():
        if not isinstance(override, dict) or not str(name).replace("-", "_").replace(".", "_").isidentifier():
            raise WorkbookError(f"Sweep variant {name!r} must be a simple name mapped to parameter sections (e.g. rk3566: {{20_convert: {{target_platform: rk3566}}}}).")
        merged = {k: dict(v or {}) for k, v in base.items()}
        for section, values in override.items():
            if not isinstance(values, dict):
                raise WorkbookError(f"Sweep variant {name!r} section {section!r} must be a mapping of parameter: value.")
            merged[section] = {**merged.get(section, {}), **values}
        configs[str(name)] = merged
    only = data.get("only")
    return configs, (",".join(str(x) for x in only) if isinstance(only, list) else (str(only) if only else None))


def _sweep_worker(variant: str, config: dict[str, Any], run_dir: str, only: str | None) -> tuple[str, bool, str, float]:
    """Run one variant's series (in a pool process); returns (variant, ok, failure block, seconds)."""
    res = run_series(config, run_dir, only, progress=False, log=lambda msg: print(f"[{variant}] {msg.strip()}", flush=True))
    return variant, res.ok, res.failure, res.seconds


def run_sweep(sweep_file: str | Path, run_dir: str | Path | None, only: str | None = None, jobs: int | None = None) -> tuple[Path, list[dict[str, Any]], dict[str, str]]:
    """Run every variant into <run_dir>/<variant>/ in parallel; write comparison.csv/.html; return them."""
    from .summary import comparison

    configs, file_only = load_sweep(sweep_file)
    only = only or file_only
    root = check_run_dir(run_dir or OUTPUTS / Path(sweep_file).stem)
    for config in configs.values():  # every variant's parameters are valid before anything runs
        plan(config, only)
    dirs = {v: check_run_dir(root / v) for v in configs}
    Run.at(root)
    seed_variants(configs, dirs, root / "_shared", only)
    workers = max(1, min(len(configs), jobs or os.cpu_count() or 1))
    print(f"sweep: {len(configs)} variant(s) into {root}/<variant>/, {workers} at a time", flush=True)
    failures: dict[str, str] = {}
    from tqdm.auto import tqdm

    with ProcessPoolExecutor(max_workers=workers) as pool, tqdm(total=len(configs), desc="variants", unit="run") as bar:
        futures = [pool.submit(_sweep_worker, v, configs[v], str(dirs[v]), only) for v in configs]
        for fut in as_completed(futures):
            variant, ok, failure, secs = fut.result()
            bar.update(1)
            bar.write(f"[{variant}] {'finished' if ok else 'FAILED'} in {secs:.0f} s")
            if not ok:
                failures[variant] = failure
    rows = comparison(dirs)
    write_comparison(root, rows)
    return root, rows, failures


def shared_prefix(configs: dict[str, dict[str, Any]], only: str | None) -> list[str]:
    """The leading notebooks whose parameters are the same in every variant (their results are too)."""
    prefix = []
    for nb in report.select(only):
        if len({repr(sorted(report.params_for(nb, c).items())) for c in configs.values()}) != 1:
            break
        prefix.append(report.notebook_name(nb))
    return prefix


def seed_variants(configs: dict[str, dict[str, Any]], dirs: dict[str, Path], shared: Path, only: str | None) -> list[str]:
    """Run the shared leading notebooks once into `shared`, then copy its artifacts into every variant
    folder that has none yet; each variant's own run then finds those steps cached (inputs are hashed by
    content), so e.g. the sample model is trained once, not once per variant. Returns the notebooks run."""
    import shutil

    prefix = shared_prefix(configs, only)
    fresh = [v for v, d in dirs.items() if not (d / ".cache").exists()]
    if len(fresh) < 2 or not prefix:
        return []
    print(f"sweep: {', '.join(prefix)} have the same parameters in every variant; running them once into {shared}", flush=True)
    result = run_series(next(iter(configs.values())), shared, prefix, progress=True, render=False)
    if not result.ok:
        print(result.failure, file=sys.stderr)
        return []  # each variant then runs (and reports) the failing notebook itself
    skip = shutil.ignore_patterns("executed", "report", "params.json")
    for v in fresh:
        shutil.copytree(shared, dirs[v], ignore=skip, dirs_exist_ok=True)
    return prefix


def write_comparison(root: Path, rows: list[dict[str, Any]]) -> None:
    """<root>/comparison.csv and comparison.html: one row per variant, with links to each index page."""
    from .summary import esc

    cols = list(dict.fromkeys(k for r in rows for k in r))
    tmp = root / "comparison.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(root / "comparison.csv")
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(
        f'<td><a href="{esc(r["variant"])}/report/index.html">{esc(r[c])}</a></td>' if c == "variant" else f"<td>{esc(r.get(c, ''))}</td>"
        for c in cols) + "</tr>" for r in rows)
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>Sweep {esc(root.name)}</title><style>"
            "body{font-family:system-ui,sans-serif;margin:2rem} table{border-collapse:collapse} th,td{border:1px solid #ccd;"
            "padding:.3rem .6rem} th{background:#eef1f6}</style></head><body>"
            f"<h1>Sweep {esc(root.name)}</h1><table id=comparison><tr>{head}</tr>{body}</table></body></html>")
    write_text_atomic(root / "comparison.html", page)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table (for the terminal)."""
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    widths = {c: max(len(str(c)), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(f"{c:<{widths[c]}}" for c in cols), "  ".join("-" * widths[c] for c in cols)]
    lines += ["  ".join(f"{str(r.get(c, '')):<{widths[c]}}" for c in cols) for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebooks in order with papermill, then render the reports")
    run.add_argument("--params", help="parameters YAML (common: + per-notebook sections), e.g. params/sample.yaml")
    run.add_argument("--run-dir", help=f"run folder (default {DEFAULT_RUN.relative_to(REPO)}; for --sweep outputs/<sweep name>)")
    run.add_argument("--only", help="comma-separated notebook numbers or names, e.g. 20,30")
    run.add_argument("--sweep", help="sweep YAML: variants run into sibling run folders, then one comparison table")
    run.add_argument("--jobs", type=int, help="variants run at once in a sweep (default: number of cores)")
    run.add_argument("--no-report", action="store_true", help="skip rendering HTML reports")
    rep = sub.add_parser("report", help="render <run>/report/: HTML of every executed notebook + index.html")
    rep.add_argument("--run-dir", default=str(DEFAULT_RUN), help="run folder (default outputs/sample)")
    args = parser.parse_args(argv)
    try:
        if args.command == "report":
            root = check_run_dir(args.run_dir)
            if not root.is_dir():
                raise WorkbookError(f"Run folder {root} does not exist; run `python -m helpers run --run-dir {args.run_dir}` first.")
            print(f"report: {summary.render(root)}")
            return 0
        if args.sweep:
            if args.params:
                raise WorkbookError("--params and --sweep do not combine; put `base: FILE.yaml` in the sweep file instead.")
            root, rows, failures = run_sweep(args.sweep, args.run_dir, args.only, args.jobs)
            for block in failures.values():
                print(block, file=sys.stderr)
            print(format_table(rows))
            print(f"comparison: {root / 'comparison.csv'} and {root / 'comparison.html'}")
            return 1 if failures else 0
        config = report.load_params_file(args.params)
        result = run_series(config, args.run_dir or DEFAULT_RUN, args.only, progress=True, render=not args.no_report)
        if not result.ok:
            print(result.failure, file=sys.stderr)
        print(f"{len(result.done)} notebook(s) ran in {result.seconds:.0f} s into {result.run_dir}"
              + (f"; report: {result.index}" if result.index else ""))
        return 0 if result.ok else 1
    except WorkbookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
