"""The variants of a variants file run on dask.distributed (a local cluster sized to the cores, or the scheduler given):
the leading notebooks every variant shares run once, each variant runs into its own run folder (as an archive
on a remote cluster, a board variant on a worker offering its chip), then the comparison page is written."""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from helpers.core import cluster
from helpers.core.errors import WorkbookError
from helpers.core.paths import OUTPUTS, REPO, Run, atomic_path
from helpers.runner import execute, variants
from helpers.runner.index import comparison, write_comparison
from helpers.runner.series import check_run_dir, plan, run_series


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
        with atomic_path(folder, suffix=".incoming") as fresh:
            cluster.unpack(res.archive, fresh)
        res.archive = None
    return res


def run_each(ex: Executor, configs: dict[str, dict[str, Any]], dirs: dict[str, Path], only: str | None,
                 board_wait: float = 300.0) -> dict[str, cluster.VariantResult]:
    """Run every variant on the executor with a progress bar; a variant needing a board resource that no
    worker offers fails after board_wait seconds; Ctrl-C cancels every task (and its child run)."""
    per = len(execute.select(only))
    results: dict[str, cluster.VariantResult] = {}
    with tqdm(total=len(configs) * per, desc="variants", unit="notebook") as bar:
        if isinstance(ex, cluster.DaskExecutor):
            def show(msg: dict[str, Any]) -> None:
                bar.write(f"[{msg.get('variant')}] {msg.get('line')}")
                bar.update(1)
            ex.on_progress(show)
        started = time.monotonic()
        futures = {_submit(ex, v, configs[v], dirs[v], only): v for v in configs}
        remote = isinstance(ex, cluster.DaskExecutor) and not ex.local
        needs = {v: board_resources(configs[v], only) for v in configs} if remote else {}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for fut in done:
                    v = futures[fut]
                    res = results[v] = _collect(fut, v, dirs[v])
                    bar.write(f"[{v}] {'finished' if res.ok else 'FAILED'} in {res.seconds:.0f} s"
                              + (f" on {res.worker}" if res.worker and not getattr(ex, "local", True) else "")
                              + ("" if res.ok else f": {variants.reason(res.failure)}"))
                if needs and time.monotonic() - started > board_wait:
                    offered = ex.offered()
                    for fut in list(pending):
                        v = futures[fut]
                        missing = [r for r in needs[v] if offered.get(r, 0) < needs[v][r]]
                        if missing:
                            fut.cancel()
                            pending.discard(fut)
                            msg = (f"variant {v} needs a worker with the resource {missing[0]!r} (its board) and none of the "
                                   f"{ex.workers()} worker(s) at {ex.address} offered it within {board_wait:g} s; "
                                   "start one on the "
                                   f"machine wired to the board: dask worker {ex.address} --resources \"{missing[0]}=1\".")
                            results[v] = cluster.VariantResult(v, False, msg, time.monotonic() - started)
                            bar.write(f"[{v}] FAILED: {msg}")
        except KeyboardInterrupt:
            bar.write("Ctrl-C: cancelling the variants' tasks (their runs stop and shut their kernels down) ...")
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


def run_variants(variants_file: str | Path, run_dir: str | Path | None, only: str | None = None, jobs: int | None = None,
                 scheduler: str | None = None, yes: bool = False, max_variants: int = variants.MAX_VARIANTS,
                 board_wait: float = 300.0, connect_timeout: float = cluster.CONNECT_TIMEOUT,
                 executor: Executor | None = None) -> tuple[Path, list[dict[str, Any]], dict[str, str]]:
    """Run every variant into <run_dir>/<variant>/ on dask.distributed (a local cluster, or the one at
    `scheduler`); write comparison.csv/.html (with plots across the grid); return them."""
    configs, file_only = variants.load_variants(variants_file)
    if len(configs) > max_variants and not yes:
        raise WorkbookError(f"Variants file {variants_file} makes {len(configs)} variants, more than the limit of "
                            f"{max_variants}; pass --yes to run them all (or raise --max-variants).")
    only = only or file_only
    root = check_run_dir(run_dir or OUTPUTS / Path(variants_file).stem)
    dirs = {v: check_run_dir(root / v) for v in configs}
    variants.check_selected(variants_file, only)  # a grid or variant over a notebook `only` leaves out changes nothing
    for v, config in configs.items():  # every variant's parameters are valid before anything runs
        plan(config, only, dirs[v])
    address = cluster.scheduler_address(scheduler)
    workers = max(1, min(len(configs), jobs or os.cpu_count() or 1))
    with (contextlib.nullcontext(executor) if executor is not None
          else cluster.executor(address, workers, connect_timeout)) as ex:
        Run.at(root)
        dask = isinstance(ex, cluster.DaskExecutor)
        where = (f"the dask cluster at {address} ({ex.workers()} worker(s))" if dask and not ex.local
                 else f"a local dask cluster of {workers} worker(s)" if dask else "the given executor")
        print(f"variants: {len(configs)} variant(s) into {root}/<variant>/ on {where}", flush=True)
        if isinstance(ex, cluster.DaskExecutor) and ex.dashboard:
            print(f"variants: dashboard {ex.dashboard}", flush=True)
        seed_variants(configs, dirs, root / "_shared", only, ex)
        results = run_each(ex, configs, dirs, only, board_wait)
    failures = {v: r.failure for v, r in results.items() if not r.ok}
    rows = comparison(dirs)
    for row in rows:
        res = results.get(row["variant"])
        if res is not None and not res.ok:
            row["status"] = "failed"
        row["why"] = variants.reason(res.failure) if res is not None and not res.ok else ""
    write_comparison(root, rows, dirs)
    return root, rows, failures


def seed_variants(configs: dict[str, dict[str, Any]], dirs: dict[str, Path], shared: Path, only: str | None,
                  ex: Executor | None = None) -> list[str]:
    """Run the shared leading notebooks once into `shared` (on the executor), then copy its run folder into
    every variant folder that has none yet; each variant's own run then reuses those notebooks (and their
    cached steps), so e.g. the sample model is trained once, not once per variant. Returns the notebooks run."""
    prefix = variants.shared_prefix(configs, only)
    fresh = [v for v, d in dirs.items() if not (d / ".cache").exists()]
    if len(fresh) < 2 or not prefix:
        return []
    print(f"variants: {', '.join(prefix)} have the same parameters in every variant; running them once into {shared}", flush=True)
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
