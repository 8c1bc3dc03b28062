"""One run of the series: plan and validate the notebooks, decide which are reused, execute the others in
order with papermill (the next kernel prewarmed, the finished notebook rendered in the background), stop at
the first failure with its error in one block, then write the index page."""
from __future__ import annotations

import contextlib
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.core import leftovers, notebook_reuse, run_status, storage
from helpers.core.errors import WorkbookError
from helpers.core.paths import REPO, Run
from helpers.runner import execute
from helpers.runner import params as params_check
from helpers.runner.index import write_index
from helpers.runner.render import render_notebook
from helpers.toolkit.record import model_hash


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
        raise WorkbookError(f"Notebook folder {execute.NOTEBOOKS} holds no NN_name.ipynb notebook; put the series there "
                            "(e.g. 20_convert.ipynb) or fix --notebooks.")
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
                run_status.write_status(root, name, "reused", time.perf_counter() - t0, model=model_hash(root))
                log(f"{name:<26} reused: parameters, inputs and code unchanged since {step.decision.finished}")
                result.done.append(name)
                result.reused.append(name)
                if render and not report_is_current(root, name):
                    renders.append(renderer.submit(render_notebook, root / "executed" / nb.name, root / "report"))
                continue
            if step.decision.why not in UNSAID:
                log(f"{name:<26} runs again: {step.decision.why}")
            current, kernel = kernel, None
            try:
                before = notebook_reuse.listing(root)
                notebook_reuse.forget(root, name)
                run_status.write_status(root, name, "running", 0.0)  # a run killed outright leaves this, not an old "ran"
                later = to_run[to_run.index(step) + 1:]
                if prewarm and later:
                    kernel = execute.Prewarmed(later[0].notebook, log=klog)
                execute.execute(nb, root, step.params, progress={"desc": f"{name:<26}", "leave": True} if progress else False,
                               kernel=current)
                notebook_reuse.record(root, name, step.decision.key, before)
                run_status.write_status(root, name, "ran", time.perf_counter() - t0, model=model_hash(root))
            except KeyboardInterrupt as exc:
                stopped(root, name, "interrupted", time.perf_counter() - t0, exc)
                if render:  # the page must not go on showing this notebook's old figures as current
                    with contextlib.suppress(Exception):
                        write_index(root)
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
                renders.append(renderer.submit(render_notebook, root / "executed" / nb.name, root / "report"))
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
                render_notebook(root / "executed" / f"{result.failed}.ipynb", root / "report")
        try:
            result.index = write_index(root)
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
        line = error or execute.failure_line(exc)
        if how == "interrupted":  # which notebook the stop caught, as the index lists it
            line = f"interrupted during {name} (Ctrl-C or a stop request)"
        run_status.write_status(root, name, how, seconds, error=line)
    except OSError:
        with contextlib.suppress(OSError):
            (root / "executed" / run_status.STATUS).unlink(missing_ok=True)


def report_is_current(root: Path, name: str) -> bool:
    """Both HTML flavours of a notebook exist and are newer than its executed notebook."""
    executed = root / "executed" / f"{name}.ipynb"
    pages = [root / "report" / f"{name}.html", root / "report" / f"{name}.report.html"]
    return executed.exists() and all(p.exists() and p.stat().st_mtime >= executed.stat().st_mtime for p in pages)
