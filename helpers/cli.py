"""Command line: `python -m helpers run [--params FILE.yaml] [--run-dir DIR] [--only 20,30]`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import WorkbookError
from .paths import DEFAULT_RUN
from . import report


def _select(only: str | None) -> list[Path]:
    books = report.notebooks()
    if not only:
        return books
    chosen = []
    for token in [t.strip() for t in only.split(",") if t.strip()]:
        match = [b for b in books if b.stem == token or b.stem.split("_", 1)[0] == token]
        if not match:
            raise WorkbookError(f"--only {token!r} matches no notebook; choose from {', '.join(b.stem for b in books)}.")
        chosen += match
    return [b for b in books if b in chosen]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebooks in order with papermill")
    run.add_argument("--params", help="parameters YAML (common: + per-notebook sections)")
    run.add_argument("--run-dir", default=str(DEFAULT_RUN), help="run folder (default outputs/sample)")
    run.add_argument("--only", help="comma-separated notebook numbers or names, e.g. 20,30")
    args = parser.parse_args(argv)
    try:
        config = report.load_params_file(args.params)
        for nb in _select(args.only):
            print(f"==> {nb.name}", flush=True)
            report.execute(nb, args.run_dir, report.params_for(nb, config), progress=True)
    except WorkbookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
