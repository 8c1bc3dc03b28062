"""Command line for the series.

    python -m helpers run    [--params FILE.yaml] [--run-dir DIR] [--only 20,30] [--no-report] [--rerun]
    python -m helpers run    --sweep FILE.yaml [--run-dir DIR] [--only ...] [--jobs N] [--scheduler tcp://HOST:8786]
    python -m helpers report [--run-dir DIR]

`run` executes the notebooks in order with papermill into <run>/executed/ (a progress bar per
notebook), stops at the first failing notebook with its error in one block, then renders the HTML
reports and <run>/report/index.html. A notebook whose parameters, inputs and code are unchanged since
its last successful run is reused without starting a kernel. `--sweep` runs several parameter sets
(named variants and/or a grid) into sibling run folders <run-dir>/<variant>/ on dask.distributed (a
local cluster sized to the cores, or the scheduler given) and writes <run-dir>/comparison.{csv,html}.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import os
import re
import shutil
import signal
import sys
import time
import traceback
import warnings
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.core import cluster, leftovers, notebook_reuse, storage
from helpers.core.errors import WorkbookError
from helpers.core.paths import DEFAULT_RUN, OUTPUTS, REPO, Run, write_text_atomic
from helpers.runner import execute, summary
from helpers.runner import params as params_check
from helpers.runner import variants as sweep


@dataclass
class SeriesResult:
    """What one run of the series did: notebooks finished, the failure block (if any), wall time."""

    run_dir: Path
    done: list[str] = field(default_factory=list)
    failed: str | None = None
    failure: str = ""
    seconds: float = 0.0
    index: Path | None = None
    reused: list[str] = field(default_factory=list)
    fault: storage.Fault | None = None  # a full disk or an unwritable folder stopped the run

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


def plan(config: dict[str, Any], only: str | list[str] | None,
         run_root: Path | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """The notebooks to run with their parameters, all validated before anything executes: known keys, then
    each value's type, range, paths and file kind, and a data folder's classes against the model
    (helpers.runner.params; run_root: the run folder whose exported model counts when notebook 10 is not planned)."""
    books = execute.select(only)
    if not books:
        raise WorkbookError(f"Notebook folder {execute.NOTEBOOKS} holds no NN_name.ipynb notebook; put the series there (e.g. 20_convert.ipynb) or fix --notebooks.")
    steps = [(nb, execute.params_for(nb, config)) for nb in books]
    params_check.check_plan(steps, run_root)
    return steps


@dataclass
class Planned:
    """One notebook of a run: its parameters and whether its last execution can be reused."""

    notebook: Path
    params: dict[str, Any]
    decision: notebook_reuse.Decision | None = None

    @property
    def name(self) -> str:
        return execute.notebook_name(self.notebook)


def plan_reuse(steps: list[tuple[Path, dict[str, Any]]], root: Path, enabled: bool = True) -> list[Planned]:
    """Decide, before anything runs, which notebooks are reused: a notebook's key chains on the key of
    the notebook before it (computed when it is selected, as recorded when it is not), and once one
    notebook runs every later one runs too (it reads what the earlier one wrote)."""
    chosen = {nb: params for nb, params in steps}
    planned: list[Planned] = []
    previous: list[str] = []
    must_run = not enabled
    for nb in execute.notebooks():
        name = execute.notebook_name(nb)
        if nb not in chosen:
            previous = [notebook_reuse.recorded_key(root, name)]
            continue
        key = notebook_reuse.notebook_key(nb, chosen[nb], execute.notebook_imports(nb), previous,
                                 board="device_id" in execute.declared_parameters(nb))
        decision = notebook_reuse.decide(root, name, key) if enabled else notebook_reuse.Decision(key, False, "--rerun")
        if must_run and decision.reuse:
            decision = notebook_reuse.Decision(key, False, "an earlier notebook runs")
        must_run = must_run or not decision.reuse
        planned.append(Planned(nb, chosen[nb], decision))
        previous = [key]
    return planned


# Reasons to run that need no line of their own (a first run, --rerun, the chain after a notebook that runs).
UNSAID = {"never ran here", "--rerun", "an earlier notebook runs"}


def run_series(config: dict[str, Any], run_dir: str | Path, only: str | list[str] | None = None,
               progress: bool = True, render: bool = True, log=print, prewarm: bool = True,
               reuse_runs: bool = True) -> SeriesResult:
    """Execute the planned notebooks in order; stop at the first failure; render the reports.

    A notebook whose parameters, inputs and code are unchanged since its last successful execution
    here is reused without starting a kernel (see helpers.core.notebook_reuse). While one notebook runs, the next
    one's kernel starts and imports its modules (prewarm) and the finished one is rendered to HTML,
    both in background threads. Each notebook's outcome goes to <run>/executed/status.json.
    """
    from concurrent.futures import ThreadPoolExecutor

    steps = plan(config, only, check_run_dir(run_dir))
    root = Run.at(check_run_dir(run_dir)).root
    leftovers.remove_temporaries(root)  # half-written files of a run that was killed (nothing could clean up then)
    (root / "executed" / storage.LOG).unlink(missing_ok=True)  # an earlier run's fault: no longer this run's word
    planned = plan_reuse(steps, root, reuse_runs)
    result = SeriesResult(root)
    started = time.perf_counter()
    renders = []
    renderer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
    to_run = [p for p in planned if not p.decision.reuse]
    klog = execute.kernel_log(root)
    kernel = execute.Prewarmed(to_run[0].notebook, log=klog) if prewarm and to_run else None
    try:
        for step in planned:
            name, nb = step.name, step.notebook
            t0 = time.perf_counter()
            if step.decision.reuse:
                notebook_reuse.write_status(root, name, "reused", time.perf_counter() - t0)
                log(f"{name:<26} reused: parameters, inputs and code unchanged since {step.decision.finished}")
                result.done.append(name)
                result.reused.append(name)
                if render and not report_is_current(root, name):
                    renders.append(renderer.submit(summary.render_notebook, root / "executed" / nb.name, root / "report"))
                continue
            if step.decision.why not in UNSAID:
                log(f"{name:<26} runs again: {step.decision.why}")
            current, kernel = kernel, None
            try:
                before = notebook_reuse.listing(root)
                notebook_reuse.forget(root, name)
                later = to_run[to_run.index(step) + 1:]
                if prewarm and later:
                    kernel = execute.Prewarmed(later[0].notebook, log=klog)
                execute.execute(nb, root, step.params, progress={"desc": f"{name:<26}", "leave": True} if progress else False,
                               kernel=current)
                notebook_reuse.record(root, name, step.decision.key, before)
                notebook_reuse.write_status(root, name, "ran", time.perf_counter() - t0)
            except KeyboardInterrupt as exc:
                stopped(root, name, "interrupted", time.perf_counter() - t0, exc)
                raise
            except Exception as exc:  # papermill's execution error, a dead kernel, a full disk, ...
                result.failed = name
                result.failure = execute.describe_failure(name, exc, root / "executed" / nb.name)
                result.fault = storage.find(exc, root)
                if result.fault is not None:  # one sentence; the block and the traceback go to a log
                    partial = storage.half_written(root)
                    leftovers.remove_temporaries(root, skip=("report",))  # frees what the fault left half-written
                    storage.remove_toolkit_dumps(root)  # and the toolkit's debug graphs, the last one cut short
                    details = result.failure + "\n" + "".join(traceback.format_exception(exc))
                    result.failure = storage.sentence(name, result.fault, root, storage.write_log(root, details), partial)
                stopped(root, name, "failed", time.perf_counter() - t0, exc, result.failure if result.fault else None)
                if not progress:
                    log(f"{name} FAILED after {time.perf_counter() - t0:.1f} s")
                break
            result.done.append(name)
            if render:
                renders.append(renderer.submit(summary.render_notebook, root / "executed" / nb.name, root / "report"))
            if not progress:
                log(f"{name} ran in {time.perf_counter() - t0:.1f} s")
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
                if result.fault is None:  # after a full disk the same cause: said once
                    log(f"warning: could not render a report: {type(exc).__name__}: {exc}")
        if result.failed and result.fault is None:  # the failed notebook's own report shows where it stopped
            with contextlib.suppress(Exception):
                summary.render_notebook(root / "executed" / f"{result.failed}.ipynb", root / "report")
        try:
            result.index = summary.write_index(root)
        except OSError:
            if result.fault is None:
                raise
        if result.fault is not None:  # a report half-written on the full disk
            leftovers.remove_temporaries(root)
    return result


def stopped(root: Path, name: str, how: str, seconds: float, exc: BaseException, error: str | None = None) -> None:
    """A notebook failed or was interrupted: remove the temporary files it left, then say so in status.json
    (error: the line to record, else the exception's; when even that cannot be written, e.g. a full disk,
    status.json is removed rather than left saying it ran)."""
    leftovers.remove_temporaries(root, skip=("report",))  # the renderer may be writing there right now
    try:
        notebook_reuse.write_status(root, name, how, seconds, error=error or execute.failure_line(exc))
    except OSError:
        with contextlib.suppress(OSError):
            (root / "executed" / notebook_reuse.STATUS).unlink(missing_ok=True)


def report_is_current(root: Path, name: str) -> bool:
    """Both HTML flavours of a notebook exist and are newer than its executed notebook."""
    executed = root / "executed" / f"{name}.ipynb"
    pages = [root / "report" / f"{name}.html", root / "report" / f"{name}.report.html"]
    return executed.exists() and all(p.exists() and p.stat().st_mtime >= executed.stat().st_mtime for p in pages)


# ----------------------------------------------------------------------------- sweeps

SWEEP_KEYS = {"base", "only", "variants", "grid"}


def load_sweep(path: str | Path) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Read a sweep file -> ({variant: full parameters config}, only). Each variant's sections are laid
    over the `base:` parameters file (path relative to the repo root or to the sweep file); `grid:`
    (NOTEBOOK.PARAMETER: [values]) adds one variant per combination of its lists."""
    path = Path(path)
    data = execute.read_yaml(path, "Sweep file", "--sweep an existing YAML file (see params/sweep_platforms.yaml)")
    if not isinstance(data, dict) or set(data) - SWEEP_KEYS:
        extra = sorted(set(data) - SWEEP_KEYS) if isinstance(data, dict) else data
        raise WorkbookError(f"Sweep file {path} has unknown key(s) {extra}; valid keys: {', '.join(sorted(SWEEP_KEYS))}.")
    variants = data.get("variants") or {}
    if not isinstance(variants, dict) or not (variants or data.get("grid")):
        raise WorkbookError(f"Sweep file {path} needs a non-empty 'variants:' mapping of name: {{section: {{param: value}}}} or a 'grid:'.")
    base: dict[str, Any] = {}
    if data.get("base"):
        base_path = Path(data["base"])
        if not base_path.is_absolute():
            base_path = (REPO / base_path) if (REPO / base_path).exists() else path.parent / base_path
        base = execute.load_params_file(base_path)
    overrides: dict[str, Any] = {}
    if data.get("grid") is not None:
        overrides.update({name: sections for name, (sections, _) in sweep.expand_grid(data["grid"], path).items()})
    for name, override in variants.items():
        if str(name) in overrides:
            raise WorkbookError(f"Sweep variant {name!r} has the name of a grid combination; rename it.")
        overrides[str(name)] = override
    configs = {}
    for name, override in overrides.items():
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


def board_resources(config: dict[str, Any], only: str | None) -> dict[str, float]:
    """{chip: 1} when a selected notebook has a `target` (a board to run on), else {}."""
    for nb in execute.select(only):
        target = execute.params_for(nb, config).get("target")
        if isinstance(target, str) and target.strip():
            return {target.strip().lower(): 1}
    return {}


def _notebooks_option() -> tuple[str, ...]:
    """`--notebooks DIR` for the child runs when the series' folder is not the default one."""
    return ("--notebooks", str(execute.NOTEBOOKS)) if execute.NOTEBOOKS != REPO / "notebooks" else ()


def _submit(ex: Executor, variant: str, config: dict[str, Any], folder: Path, only: str | None) -> Future:
    """Send one variant to the executor: in place on a shared file system, as an archive to a remote cluster."""
    remote = isinstance(ex, cluster.DaskExecutor) and not ex.local
    resources = board_resources(config, only) if remote else {}
    target = ex.requiring(resources) if resources else ex
    cancel = ex.cancel_event if isinstance(ex, cluster.DaskExecutor) else None
    with warnings.catch_warnings():  # the run folder travels inside the task on purpose (any file system)
        warnings.filterwarnings("ignore", message="Sending large graph")
        return target.submit(cluster.run_variant, variant, config, only, None if remote else str(folder),
                             cluster.pack(folder) if remote else None, cancel, _notebooks_option())


def _collect(fut: Future, variant: str, folder: Path) -> cluster.VariantResult:
    """The task's result, its archive (remote) unpacked into the variant folder; a lost task as a failure."""
    try:
        res = fut.result()
    except Exception as exc:  # a worker that died, a task the cluster could not run, ...
        return cluster.VariantResult(variant, False, f"variant {variant} failed on the cluster: {type(exc).__name__}: {exc}", 0.0)
    if res.archive is not None:
        fresh = folder.with_name(folder.name + ".incoming")
        shutil.rmtree(fresh, ignore_errors=True)
        cluster.unpack(res.archive, fresh)
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        fresh.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
        res.archive = None
    return res


def run_variants(ex: Executor, configs: dict[str, dict[str, Any]], dirs: dict[str, Path], only: str | None,
                 board_wait: float = 300.0) -> dict[str, cluster.VariantResult]:
    """Run every variant on the executor with a progress bar; a variant needing a board resource that no
    worker offers fails after board_wait seconds; Ctrl-C cancels every task (and its child run)."""
    from tqdm.auto import tqdm

    per = len(execute.select(only))
    results: dict[str, cluster.VariantResult] = {}
    with tqdm(total=len(configs) * per, desc="sweep", unit="notebook") as bar:
        if isinstance(ex, cluster.DaskExecutor):
            def show(msg: dict[str, Any]) -> None:
                bar.write(f"[{msg.get('variant')}] {msg.get('line')}")
                bar.update(1)
            ex.on_progress(show)
        started = time.monotonic()
        futures = {_submit(ex, v, configs[v], dirs[v], only): v for v in configs}
        needs = {v: board_resources(configs[v], only) for v in configs} if isinstance(ex, cluster.DaskExecutor) and not ex.local else {}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for fut in done:
                    v = futures[fut]
                    res = results[v] = _collect(fut, v, dirs[v])
                    bar.write(f"[{v}] {'finished' if res.ok else 'FAILED'} in {res.seconds:.0f} s"
                              + (f" on {res.worker}" if res.worker and not getattr(ex, "local", True) else "")
                              + ("" if res.ok else f": {sweep.reason(res.failure)}"))
                if needs and time.monotonic() - started > board_wait:
                    offered = ex.offered()
                    for fut in list(pending):
                        v = futures[fut]
                        missing = [r for r in needs[v] if offered.get(r, 0) < needs[v][r]]
                        if missing:
                            fut.cancel()
                            pending.discard(fut)
                            msg = (f"variant {v} needs a worker with the resource {missing[0]!r} (its board) and none of the "
                                   f"{ex.workers()} worker(s) at {ex.address} offered it within {board_wait:g} s; start one on the "
                                   f"machine wired to the board: dask worker {ex.address} --resources \"{missing[0]}=1\".")
                            results[v] = cluster.VariantResult(v, False, msg, time.monotonic() - started)
                            bar.write(f"[{v}] FAILED: {msg}")
        except KeyboardInterrupt:
            bar.write("Ctrl-C: cancelling the sweep's tasks (their runs stop and shut their kernels down) ...")
            if isinstance(ex, cluster.DaskExecutor):
                ex.cancel_all()
                wait(pending, timeout=45)  # each task stops its child run, then returns
            for fut in pending:
                fut.cancel()
            cluster.stop_children()
            raise
        finally:
            if isinstance(ex, cluster.DaskExecutor):
                ex.on_progress(ex.print_progress)
    return results


def run_sweep(sweep_file: str | Path, run_dir: str | Path | None, only: str | None = None, jobs: int | None = None,
              scheduler: str | None = None, yes: bool = False, max_variants: int = sweep.MAX_VARIANTS,
              board_wait: float = 300.0, connect_timeout: float = cluster.CONNECT_TIMEOUT,
              executor: Executor | None = None) -> tuple[Path, list[dict[str, Any]], dict[str, str]]:
    """Run every variant into <run_dir>/<variant>/ on dask.distributed (a local cluster, or the one at
    `scheduler`); write comparison.csv/.html (with plots across the grid); return them."""
    from helpers.runner.summary import comparison

    configs, file_only = load_sweep(sweep_file)
    if len(configs) > max_variants and not yes:
        raise WorkbookError(f"Sweep file {sweep_file} makes {len(configs)} variants, more than the limit of {max_variants}; "
                            "pass --yes to run them all (or raise --max-variants).")
    only = only or file_only
    root = check_run_dir(run_dir or OUTPUTS / Path(sweep_file).stem)
    dirs = {v: check_run_dir(root / v) for v in configs}
    sweep.check_selected(sweep_file, only)  # a grid or variant over a notebook `only` leaves out sweeps nothing
    for v, config in configs.items():  # every variant's parameters are valid before anything runs
        plan(config, only, dirs[v])
    address = cluster.scheduler_address(scheduler)
    workers = max(1, min(len(configs), jobs or os.cpu_count() or 1))
    with (contextlib.nullcontext(executor) if executor is not None
          else cluster.executor(address, workers, connect_timeout)) as ex:
        Run.at(root)
        where = (f"the dask cluster at {address} ({ex.workers()} worker(s))" if isinstance(ex, cluster.DaskExecutor) and not ex.local
                 else f"a local dask cluster of {workers} worker(s)" if isinstance(ex, cluster.DaskExecutor) else "the given executor")
        print(f"sweep: {len(configs)} variant(s) into {root}/<variant>/ on {where}", flush=True)
        if isinstance(ex, cluster.DaskExecutor) and ex.dashboard:
            print(f"sweep: dashboard {ex.dashboard}", flush=True)
        seed_variants(configs, dirs, root / "_shared", only, ex)
        results = run_variants(ex, configs, dirs, only, board_wait)
    failures = {v: r.failure for v, r in results.items() if not r.ok}
    rows = comparison(dirs)
    for row in rows:
        res = results.get(row["variant"])
        if res is not None and not res.ok:
            row["status"] = "failed"
        row["why"] = sweep.reason(res.failure) if res is not None and not res.ok else ""
    write_comparison(root, rows, dirs)
    return root, rows, failures


def shared_prefix(configs: dict[str, dict[str, Any]], only: str | None) -> list[str]:
    """The leading notebooks whose parameters are the same in every variant (their results are too)."""
    prefix = []
    for nb in execute.select(only):
        if len({repr(sorted(execute.params_for(nb, c).items())) for c in configs.values()}) != 1:
            break
        prefix.append(execute.notebook_name(nb))
    return prefix


def seed_variants(configs: dict[str, dict[str, Any]], dirs: dict[str, Path], shared: Path, only: str | None,
                  ex: Executor | None = None) -> list[str]:
    """Run the shared leading notebooks once into `shared` (on the executor), then copy its run folder into
    every variant folder that has none yet; each variant's own run then reuses those notebooks (and their
    cached steps), so e.g. the sample model is trained once, not once per variant. Returns the notebooks run."""
    prefix = shared_prefix(configs, only)
    fresh = [v for v, d in dirs.items() if not (d / ".cache").exists()]
    if len(fresh) < 2 or not prefix:
        return []
    print(f"sweep: {', '.join(prefix)} have the same parameters in every variant; running them once into {shared}", flush=True)
    config = next(iter(configs.values()))
    if ex is None:
        result = run_series(config, shared, prefix, progress=True, render=False)
        ok, failure = result.ok, result.failure
    else:
        shared.mkdir(parents=True, exist_ok=True)
        res = _collect(_submit(ex, "_shared", config, shared, ",".join(prefix)), "_shared", shared)
        ok, failure = res.ok, res.failure
    if not ok:
        print(failure, file=sys.stderr)
        return []  # each variant then runs (and reports) the failing notebook itself
    # The executed notebooks and their reuse records come too: each variant then reuses those notebooks
    # without starting a kernel (their parameters, inputs and code are the shared run's).
    skip = shutil.ignore_patterns("report", "kernels.log", "status.json", "*.tmp")
    for v in fresh:
        shutil.copytree(shared, dirs[v], ignore=skip, dirs_exist_ok=True)
    return prefix


PARAM_COLUMN = re.compile(r"^\d\d_\w+\.\w+$")


def write_comparison(root: Path, rows: list[dict[str, Any]], dirs: dict[str, Path] | None = None) -> None:
    """<root>/comparison.csv and comparison.html: one row per variant (with why a failed one failed),
    links to each index page, and plots across the swept parameters."""
    from helpers.runner.summary import esc, key_figures

    cols = list(dict.fromkeys(k for r in rows for k in r))
    tmp = root / "comparison.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(root / "comparison.csv")
    images = ""
    if dirs:
        params = {r["variant"]: {k: v for k, v in r.items() if PARAM_COLUMN.match(k)} for r in rows}
        figures = {v: {f.label: f.raw for f in key_figures(d)} for v, d in dirs.items()}
        try:
            pngs = sweep.plots(root, params, figures)
        except Exception as exc:  # plots are a bonus: never lose the table for them
            print(f"warning: could not draw the comparison plots: {type(exc).__name__}: {exc}", file=sys.stderr)
            pngs = []
        images = "".join(f'<figure><img src="{esc(p.relative_to(root).as_posix())}" alt="{esc(p.stem)}"></figure>' for p in pngs)
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = "".join(f'<tr class="{esc(r.get("status", ""))}">' + "".join(
        f'<td><a href="{esc(r["variant"])}/report/index.html">{esc(r[c])}</a></td>' if c == "variant" else f"<td>{esc(r.get(c, ''))}</td>"
        for c in cols) + "</tr>" for r in rows)
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>Sweep {esc(root.name)}</title><style>"
            "body{font-family:system-ui,sans-serif;margin:2rem} table{border-collapse:collapse} th,td{border:1px solid #ccd;"
            "padding:.3rem .6rem} th{background:#eef1f6} tr.failed td{background:#fdecec} figure{display:inline-block;margin:1rem}"
            "</style></head><body>"
            f"<h1>Sweep {esc(root.name)}</h1><table id=comparison><tr>{head}</tr>{body}</table>"
            + (f"<h2>Across the sweep</h2><div id=plots>{images}</div>" if images else "") + "</body></html>")
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
    run.add_argument("--sweep", help="sweep YAML: variants (and/or a grid) run into sibling run folders, then one comparison page")
    run.add_argument("--scheduler", help="dask scheduler address tcp://HOST:PORT for --sweep (default: DASK_SCHEDULER_ADDRESS, "
                                         "else a local cluster)")
    run.add_argument("--jobs", type=int, help="workers of the local cluster in a sweep (default: number of cores)")
    run.add_argument("--yes", action="store_true", help=f"run a sweep of more than --max-variants variants")
    run.add_argument("--max-variants", type=int, default=sweep.MAX_VARIANTS, help="largest sweep run without --yes (default %(default)s)")
    run.add_argument("--board-wait", type=float, default=300.0,
                     help="seconds a board variant waits for a worker offering its chip resource (default %(default)s)")
    run.add_argument("--connect-timeout", type=float, default=cluster.CONNECT_TIMEOUT,
                     help="seconds to wait for the scheduler to answer (default %(default)s)")
    run.add_argument("--rerun", action="store_true", help="execute every notebook even when nothing changed since its last run")
    run.add_argument("--progress", choices=("bars", "lines"), default="bars", help="a bar per notebook, or one line each (sweep workers)")
    run.add_argument("--notebooks", help=argparse.SUPPRESS)  # the series' folder (tests run toy series)
    run.add_argument("--no-report", action="store_true", help="skip rendering HTML reports")
    rep = sub.add_parser("report", help="render <run>/report/: HTML of every executed notebook + index.html")
    rep.add_argument("--run-dir", default=str(DEFAULT_RUN), help="run folder (default outputs/sample)")
    args = parser.parse_args(argv)
    # A stop request (e.g. a cancelled sweep task) unwinds like Ctrl-C, so kernels are shut down.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.command == "report":
            root = check_run_dir(args.run_dir)
            if not root.is_dir():
                raise WorkbookError(f"Run folder {root} does not exist; run `python -m helpers run --run-dir {args.run_dir}` first.")
            print(f"report: {summary.render(root)}")
            return 0
        if args.notebooks:
            execute.NOTEBOOKS = Path(args.notebooks)
        if args.sweep:
            if args.params:
                raise WorkbookError("--params and --sweep do not combine; put `base: FILE.yaml` in the sweep file instead.")
            root, rows, failures = run_sweep(args.sweep, args.run_dir, args.only, args.jobs, args.scheduler, args.yes,
                                             args.max_variants, args.board_wait, args.connect_timeout)
            for block in failures.values():
                print(block, file=sys.stderr)
            print(format_table(rows))
            print(f"comparison: {root / 'comparison.csv'} and {root / 'comparison.html'}")
            return 1 if failures else 0
        if args.scheduler:
            raise WorkbookError("--scheduler applies to --sweep only; add --sweep FILE.yaml (a series runs its notebooks in order).")
        config = execute.load_params_file(args.params)
        lines = args.progress == "lines"
        only = args.only or config.pop("only", None)  # --only wins over the file's own `only:`
        result = run_series(config, args.run_dir or DEFAULT_RUN, only, progress=not lines, render=not args.no_report,
                            log=(lambda msg: print(f"progress: {msg}", flush=True)) if lines else print, reuse_runs=not args.rerun)
        if not result.ok:
            print(result.failure, file=sys.stderr)
        ran = len(result.done) - len(result.reused)
        print(f"{ran} notebook(s) ran" + (f", {len(result.reused)} reused" if result.reused else "")
              + f" in {result.seconds:.0f} s into {result.run_dir}" + (f"; report: {result.index}" if result.index else ""))
        return 0 if result.ok else 1
    except WorkbookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the runner's own writes (status, records, reports) on a full or read-only disk
        sweep_file = getattr(args, "sweep", None)
        root = check_run_dir(getattr(args, "run_dir", None) or (OUTPUTS / Path(sweep_file).stem if sweep_file else DEFAULT_RUN))
        fault = storage.find(exc, root)  # a permission error outside the run (e.g. reading the data) is not the run's
        if fault is None:
            raise
        leftovers.remove_temporaries(root)
        log = storage.write_log(root, "".join(traceback.format_exception(exc)))
        print(f"error: {storage.sentence('the run', fault, root, log)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: stopped (kernels shut down, cluster tasks cancelled).", file=sys.stderr)
        return 130


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
