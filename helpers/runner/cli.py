"""Command line for the series.

    python -m helpers run    [--params FILE.yaml] [--run-dir DIR] [--only 20,30] [--no-report] [--rerun]
    python -m helpers run    --variants FILE.yaml [--run-dir DIR] [--only ...] [--jobs N] [--scheduler tcp://HOST:8786]
    python -m helpers report [--run-dir DIR]

`run` executes the notebooks in order with papermill into <run>/executed/ (a progress bar per
notebook), stops at the first failing notebook with its error in one block, then renders the HTML
reports and <run>/report/index.html. A notebook whose parameters, inputs and code are unchanged since
its last successful run is reused without starting a kernel. `--variants` runs several parameter sets
(named variants and/or a grid) into sibling run folders <run-dir>/<variant>/ on dask.distributed (a
local cluster sized to the cores, or the scheduler given) and writes <run-dir>/comparison.{csv,html}
(`--sweep` is its former name, still accepted).
"""
from __future__ import annotations

import argparse
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from helpers.core import cluster, leftovers, storage
from helpers.core.errors import WorkbookError
from helpers.core.paths import DEFAULT_RUN, OUTPUTS, REPO
from helpers.runner import execute, variants
from helpers.runner.render import render
from helpers.runner.series import check_run_dir, run_series
from helpers.runner.variant_runs import run_variants


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
    run.add_argument("--run-dir", help=f"run folder (default {DEFAULT_RUN.relative_to(REPO)}; for --variants "
                                       "outputs/<variants file name>)")
    run.add_argument("--only", help="comma-separated notebook numbers or names, e.g. 20,30")
    run.add_argument("--variants", metavar="FILE.yaml", help="named parameter sets (and/or a grid) run into sibling "
                                                             "run folders, then one comparison page")
    run.add_argument("--sweep", dest="old_sweep", help=argparse.SUPPRESS)  # the former name of --variants (users' scripts)
    run.add_argument("--scheduler", help="dask scheduler address tcp://HOST:PORT for --variants (default: "
                                         "DASK_SCHEDULER_ADDRESS, else a local cluster)")
    run.add_argument("--jobs", type=int, help="workers of the local cluster for --variants (default: number of cores)")
    run.add_argument("--yes", action="store_true", help="run a variants file of more than --max-variants variants")
    run.add_argument("--max-variants", type=int, default=variants.MAX_VARIANTS, help="most variants run without --yes "
                                                                                     "(default %(default)s)")
    run.add_argument("--board-wait", type=float, default=300.0,
                     help="seconds a board variant waits for a worker offering its chip resource (default %(default)s)")
    run.add_argument("--connect-timeout", type=float, default=cluster.CONNECT_TIMEOUT,
                     help="seconds to wait for the scheduler to answer (default %(default)s)")
    run.add_argument("--rerun", action="store_true", help="execute every notebook even when nothing changed since its last run")
    run.add_argument("--progress", choices=("bars", "lines"), default="bars", help="a bar per notebook, or one line "
                                                                                   "each (the workers of --variants)")
    run.add_argument("--notebooks", help=argparse.SUPPRESS)  # the series' folder (tests run toy series)
    run.add_argument("--no-report", action="store_true", help="skip rendering HTML reports")
    rep = sub.add_parser("report", help="render <run>/report/: HTML of every executed notebook + index.html")
    rep.add_argument("--run-dir", default=str(DEFAULT_RUN), help="run folder (default outputs/sample)")
    args = parser.parse_args(argv)
    if getattr(args, "old_sweep", None):
        print("note: --sweep is now --variants (same file, same behaviour); please use --variants.", file=sys.stderr)
        args.variants = args.variants or args.old_sweep
    # A stop request (e.g. a cancelled variant's task) unwinds like Ctrl-C, so kernels are shut down.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.command == "report":
            root = check_run_dir(args.run_dir)
            if not root.is_dir():
                raise WorkbookError(f"Run folder {root} does not exist; run `python -m helpers run --run-dir "
                                    f"{args.run_dir}` first.")
            print(f"report: {render(root)}")
            return 0
        if args.notebooks:
            execute.NOTEBOOKS = Path(args.notebooks)
        if args.variants:
            if args.params:
                raise WorkbookError("--params and --variants do not combine; put `base: FILE.yaml` in the variants file instead.")
            root, rows, failures = run_variants(args.variants, args.run_dir, args.only, args.jobs, args.scheduler, args.yes,
                                                args.max_variants, args.board_wait, args.connect_timeout)
            for block in failures.values():
                print(block, file=sys.stderr)
            print(format_table(rows))
            print(f"comparison: {root / 'comparison.csv'} and {root / 'comparison.html'}")
            return 1 if failures else 0
        if args.scheduler:
            raise WorkbookError("--scheduler applies to --variants only; add --variants FILE.yaml (a series runs its "
                                "notebooks in order).")
        config = execute.load_params_file(args.params)
        lines = args.progress == "lines"
        only = args.only or config.pop("only", None)  # --only wins over the file's own `only:`
        result = run_series(config, args.run_dir or DEFAULT_RUN, only, progress=not lines, render=not args.no_report,
                            log=(lambda msg: print(f"progress: {msg}", flush=True)) if lines else print,
                            reuse_runs=not args.rerun)
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
        variants_file = getattr(args, "variants", None)
        default = OUTPUTS / Path(variants_file).stem if variants_file else DEFAULT_RUN
        root = check_run_dir(getattr(args, "run_dir", None) or default)
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
