"""Execute the series headlessly with papermill (the HTML reports and the index page are helpers.runner.render and
helpers.runner.index)."""
from __future__ import annotations

import ast
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from helpers.core import leftovers
from helpers.core.errors import WorkbookError, log_tail, strip_ansi
from helpers.core.isolate import ADVICE, native_cause
from helpers.core.paths import HEADLESS_ENV, KERNEL_NAME, REPO, Run

NOTEBOOKS = REPO / "notebooks"


def notebooks() -> list[Path]:
    """The series in order: every NN_name.ipynb in notebooks/."""
    return sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def notebook_name(path: Path) -> str:
    """'20_convert' for notebooks/20_convert.ipynb."""
    return Path(path).stem


def execute(notebook: Path, run_dir: str | Path, params: dict[str, Any] | None = None,
            progress: bool | dict[str, Any] = False, kernel: "Prewarmed | None" = None) -> Path:
    """Run one notebook with papermill into <run>/executed/, parameters injected; returns the output path.
    It is written as <name>.partial.ipynb and renamed; after a failure it is kept only when whole.

    progress: True for papermill's cell bar, or a dict of tqdm options (e.g. {"desc": "20_convert"}).
    kernel: a Prewarmed kernel to run in (one is started here otherwise); it is shut down after. The
    kernel talks over local IPC sockets and its own stdout/stderr go to <run>/executed/kernels.log, so
    the terminal shows progress and results only.
    """
    import papermill as pm  # slow (~1 s): the parameter form imports this module inside every notebook's kernel

    run = Run.at(run_dir)
    out = run.sub("executed") / Path(notebook).name
    if not Path(notebook).exists():
        raise WorkbookError(f"Notebook {notebook} does not exist; choose one of {[p.name for p in notebooks()]}.")
    # papermill writes the notebook as it goes: under a temporary name, renamed when whole (see leftovers).
    partial = out.with_name(out.stem + ".partial.ipynb")
    partial.unlink(missing_ok=True)
    if kernel is None:
        kernel = Prewarmed(notebook, preload=False, log=kernel_log(run.root))
    km = kernel.manager()
    try:
        pm.execute_notebook(
            str(notebook), str(partial),
            parameters={**(params or {}), "run_dir": str(run.root)},
            kernel_name=KERNEL_NAME, cwd=str(NOTEBOOKS), progress_bar=progress, log_output=False,
            **({"km": km} if km is not None else {}),
        )
    except BaseException as exc:
        if isinstance(exc, OSError) and exc.filename is None:  # papermill writing the executed notebook (a full disk)
            exc.filename = str(partial)
        leftovers.settle_notebook(partial, out)
        raise
    finally:
        kernel.shutdown()
    partial.replace(out)
    return out


def kernel_log(run_root: Path) -> Path:
    """Where the kernels of a run write their own stdout/stderr (start-up warnings, library noise)."""
    return Path(run_root) / "executed" / "kernels.log"


def notebook_imports(notebook: Path) -> list[str]:
    """Absolute modules a notebook's code cells import (for pre-warming its kernel)."""
    mods: list[str] = []
    # Plain json, not nbformat: importing nbformat's schema validation costs seconds, and a warm
    # re-run that reuses every notebook should cost little more than reading these files.
    for cell in json.loads(Path(notebook).read_text(encoding="utf-8")).get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        try:
            tree = ast.parse("".join(source) if isinstance(source, list) else str(source))
        except SyntaxError:  # IPython magics: skip the cell
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                mods.append(node.module)
                mods += [f"{node.module}.{a.name}" for a in node.names]  # submodules (from helpers import convert)
    return list(dict.fromkeys(mods))


# Imported lazily by helpers in most notebooks; loading them early is what pre-warming is for.
PRELOAD = ("numpy", "pandas", "matplotlib.pyplot", "ipywidgets", "IPython.display")


class Prewarmed:
    """A kernel started in a background thread, with the notebook's modules already imported (silently:
    no execution count, no history, no names bound), so the next notebook's start overlaps with the
    current one. `execute(..., kernel=)` runs in it; shutdown() always stops it."""

    def __init__(self, notebook: Path, preload: bool = True, log: Path | None = None):
        # Import on the calling thread: papermill imports the same packages, and two threads importing
        # one package at once can see it half-initialised. (Slow, and not needed by the parameter form's
        # use of this module inside every kernel: imported here, not at the top.)
        import papermill  # noqa: F401
        from jupyter_client.asynchronous import AsyncKernelClient  # noqa: F401
        from jupyter_client.blocking import BlockingKernelClient  # noqa: F401
        from jupyter_client.manager import KernelManager  # noqa: F401

        self.notebook = Path(notebook)
        self.preload = preload
        self.log = Path(log) if log else None
        self._km: Any = None
        self._error: BaseException | None = None
        self._sink: Any = None
        self._sockets = ""
        if self.log:
            self.log.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._start, name=f"prewarm-{self.notebook.stem}", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            from jupyter_client.asynchronous import AsyncKernelClient  # slow: see __init__
            from jupyter_client.blocking import BlockingKernelClient
            from jupyter_client.manager import KernelManager

            # IPC sockets in a private temp folder: no TCP port (and no "running over TCP without
            # encryption" warning); the kernel's own output goes to the run's kernels.log.
            self._sockets = tempfile.mkdtemp(prefix="wb-kernel-")
            km = KernelManager(kernel_name=KERNEL_NAME, transport="ipc", ip=os.path.join(self._sockets, "k"))
            km.client_factory = AsyncKernelClient  # nbclient drives the kernel asynchronously
            self._km = km
            sink = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - closed in shutdown
            self._sink = sink
            km.start_kernel(cwd=str(NOTEBOOKS), stdout=sink, stderr=sink, env={**os.environ, HEADLESS_ENV: "1"})
            if not self.preload:
                return
            kc = BlockingKernelClient()
            kc.load_connection_info(km.get_connection_info())
            kc.start_channels()
            try:
                kc.wait_for_ready(timeout=60)
                mods = [*PRELOAD, *notebook_imports(self.notebook)]
                code = ("def _prewarm(mods):\n    import importlib\n    for m in mods:\n        try:\n"
                        "            importlib.import_module(m)\n        except Exception:\n            pass\n"
                        f"_prewarm({mods!r})\ndel _prewarm")
                kc.execute_interactive(code, silent=True, store_history=False, timeout=300, output_hook=lambda msg: None)
            finally:
                kc.stop_channels()
        except BaseException as exc:  # noqa: BLE001 - fall back to papermill's own kernel
            self._error = exc

    def manager(self) -> Any:
        """The ready kernel manager (pre-loading is only a speed-up: a kernel that started but could not
        pre-load still serves); else a kernel started now, the same quiet way; None if that fails too."""
        self._thread.join()
        if self._error is not None and self.log:
            with contextlib.suppress(OSError), open(self.log, "a") as fh:
                fh.write(f"[workbook] pre-warming a kernel for {self.notebook.name} failed: "
                         f"{type(self._error).__name__}: {self._error}\n")
        if self._km is not None and self._km.has_kernel and self._km.is_alive():
            return self._km
        self.shutdown()
        if self.preload:  # one plain retry, without pre-loading
            self.preload, self._error = False, None
            self._start()
            if self._error is None and self._km is not None and self._km.has_kernel:
                return self._km
            self.shutdown()
        return None

    def shutdown(self) -> None:
        self._thread.join()
        km, self._km = self._km, None
        if km is not None and km.has_kernel:
            try:
                km.shutdown_kernel(now=True)
            except Exception:  # noqa: BLE001 - best effort: the process may be gone already
                pass
        sink, self._sink = self._sink, None
        if sink is not None and sink is not subprocess.DEVNULL:
            sink.close()
        if self._sockets:
            shutil.rmtree(self._sockets, ignore_errors=True)
            self._sockets = ""


@lru_cache(maxsize=64)
def _declared(path: str, mtime_ns: int) -> tuple[tuple[str, Any], ...]:
    # Plain json, not nbformat: this runs inside every notebook's kernel (the parameter form), where
    # importing nbformat (and its JSON-schema machinery) would cost more than a second.
    cells = json.loads(Path(path).read_text(encoding="utf-8")).get("cells", [])
    cell = next((c for c in cells if c.get("cell_type") == "code" and "parameters" in c.get("metadata", {}).get("tags", [])),
                None)
    if cell is None:
        return ()
    source = "".join(cell["source"]) if isinstance(cell.get("source"), list) else str(cell.get("source", ""))
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise WorkbookError(f"The parameters cell of {Path(path).name} is not valid Python (line {exc.lineno}); fix it.") from exc
    found: dict[str, Any] = {}
    for node in tree.body:
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) and node.value else [])
        for target in targets:
            if isinstance(target, ast.Name):
                found[target.id] = ast.get_source_segment(source, node.value)
    return tuple(found.items())


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """Names and default literals (as source text) of a notebook's `parameters` cell.

    Parsed with Python's own ast: papermill's inspector silently drops a line whose comment holds '='.
    """
    path = Path(notebook)
    return dict(_declared(str(path), path.stat().st_mtime_ns))


def read_yaml(path: Path, kind: str, hint: str) -> Any:
    """Parse a YAML file, turning a missing file or a syntax error into one clear sentence."""
    if not path.is_file():
        raise WorkbookError(f"{kind} {path} does not exist; pass {hint}.")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise WorkbookError(f"{kind} {path} is not valid YAML ({str(exc).splitlines()[0]}); fix the line it names.") from exc


def load_params_file(path: str | Path | None) -> dict[str, Any]:
    """Read a parameters YAML: `common:` keys go to every notebook, `<NN_name>:` sections override."""
    if not path:
        return {}
    path = Path(path)
    data = read_yaml(path, "Parameters file", "--params an existing YAML file (see params/)")
    if not isinstance(data, dict):
        raise WorkbookError(f"Parameters file {path} must be a mapping with 'common:' and per-notebook sections.")
    for key, section in data.items():
        if key == "only":  # which notebooks the file is for (e.g. a task the later notebooks do not handle yet)
            if not isinstance(section, (str, list)):
                raise WorkbookError(f"'only' in parameters file {path} must be notebook numbers like \"00,10,20,30\" "
                                    "or a list of them.")
            continue
        if section is not None and not isinstance(section, dict):
            raise WorkbookError(f"Section {key!r} of parameters file {path} must be a mapping of parameter: value, not "
                                f"{section!r}.")
    return data


def params_for(notebook: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The parameters to inject into one notebook: common keys it declares, then its own section.

    A key in the notebook's own section that the notebook does not declare is an error listing the
    valid keys; a common key is passed only to the notebooks that declare it.
    """
    name = notebook_name(notebook)
    declared = declared_parameters(notebook)
    common = config.get("common") or {}
    section = config.get(name) or {}
    unknown_sections = [k for k in config if k not in ("common", "only") and k not in {notebook_name(n) for n in notebooks()}]
    if unknown_sections:
        raise WorkbookError(f"Parameters file has section(s) {unknown_sections} that match no notebook; valid: common, "
                            f"{', '.join(notebook_name(n) for n in notebooks())}.")
    bad = sorted(set(section) - set(declared))
    if bad:
        raise WorkbookError(f"Unknown parameter(s) {bad} for {name}; valid keys: {', '.join(sorted(declared))}.")
    unknown_common = sorted(k for k in common if not any(k in declared_parameters(n) for n in notebooks()))
    if unknown_common:
        valid = sorted({k for n in notebooks() for k in declared_parameters(n)})
        raise WorkbookError(f"Unknown common parameter(s) {unknown_common}; valid keys: {', '.join(valid)}.")
    return {**{k: v for k, v in common.items() if k in declared}, **section}


def select(only: str | list[str] | None) -> list[Path]:
    """The notebooks named by --only ('20,30' or '20_convert'), in series order; all when empty."""
    books = notebooks()
    tokens = only.split(",") if isinstance(only, str) else list(only or [])
    tokens = [str(t).strip() for t in tokens if str(t).strip()]
    if not tokens:
        return books
    chosen: list[Path] = []
    for token in tokens:
        match = [b for b in books if b.stem == token or b.stem.removesuffix(".ipynb") == token.removesuffix(".ipynb")
                 or b.stem.split("_", 1)[0] == token]
        if not match:
            raise WorkbookError(f"--only {token!r} matches no notebook in notebooks/; choose from "
                                f"{', '.join(b.stem for b in books)}.")
        chosen += match
    return [b for b in books if b in chosen]


# ----------------------------------------------------------------------------- failures, readably


def dead_kernel_details(executed: Path | None) -> list[str]:
    """For a kernel that died: the cell it was running, the newest step log's last lines, the likely cause."""
    lines: list[str] = []
    if executed is not None and executed.is_file():
        try:
            cells = json.loads(executed.read_text()).get("cells", [])
        except ValueError:
            cells = []
        started = [c for c in cells
                   if c.get("cell_type") == "code" and (c.get("metadata", {}).get("papermill") or {}).get("start_time")]
        if started:
            source = "".join(started[-1].get("source", "")).strip().splitlines()
            lines.append("  it was running this cell:")
            lines += [f"    | {ln}" for ln in source[:8]] + (["    | ..."] if len(source) > 8 else [])
    root = executed.parent.parent if executed is not None else None
    logs = (sorted((p for p in root.rglob("*.log") if "executed" not in p.parts), key=lambda p: p.stat().st_mtime)
            if root and root.is_dir() else [])
    tail = log_tail(logs[-1], 12) if logs else ""
    if tail:
        lines.append(f"  last lines of the step log {logs[-1]}:")
        lines += [f"    {ln}" for ln in tail.splitlines()]
    cause = native_cause(tail) or ("native code (most often the toolkit) aborted or crashed the process, or the machine ran "
                                   f"out of memory; {ADVICE}")
    lines.append(f"  likely cause: {cause}")
    return lines


def failure_line(exc: BaseException) -> str:
    """The failure in one line for status.json: the cell's exception, a dead kernel, or the runner's own error."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C or a stop request) while it ran"
    if type(exc).__name__ == "DeadKernelError":
        return "its kernel (Python process) died; see the run's failure block or executed/kernels.log"
    ename = getattr(exc, "ename", None)
    text = strip_ansi(str(getattr(exc, "evalue", "") if ename is not None else exc)).strip()
    first = text.splitlines()[0] if text else ""
    return f"{ename or type(exc).__name__}: {first}"[:500]


def describe_failure(name: str, exc: BaseException, executed: Path | None = None) -> str:
    """One readable block for a failed notebook: which cell, its code, the error, where to look."""
    bar = "─" * 78
    lines = [bar, f"✗ {name} failed"]
    ename = getattr(exc, "ename", None)
    if type(exc).__name__ == "DeadKernelError":  # nbclient: the kernel process ended (abort, signal, out of memory)
        lines.append("  the notebook's kernel (its Python process) died: papermill says only "
                     f"\"{strip_ansi(str(exc)).strip() or 'Kernel died'}\"")
        lines += dead_kernel_details(executed)
    elif ename is not None:  # papermill's PapermillExecutionError: the cell's own exception
        source = (getattr(exc, "source", "") or "").strip().splitlines()
        lines.append(f"  in cell {exc.cell_index} (In [{exc.exec_count}]):")
        lines += [f"    | {ln}" for ln in source[:12]] + (["    | ..."] if len(source) > 12 else [])
        evalue = strip_ansi(str(getattr(exc, "evalue", ""))).strip()
        if ename not in {"WorkbookError", "RknnError"}:  # our own errors are already one clear message
            frames = strip_ansi("\n".join(getattr(exc, "traceback", []) or [])).strip().splitlines()
            tail = [ln for ln in frames if ln.strip()][-14:-1]
            if tail:
                lines.append("  traceback (last lines):")
                lines += [f"    {ln}" for ln in tail]
        lines.append(f"  {ename}: {evalue}")
    else:
        lines.append(f"  {type(exc).__name__}: {strip_ansi(str(exc)).strip()}")
    if executed is not None:
        lines.append(f"  full notebook with outputs: {executed}")
    lines.append("  The run stopped here; artifacts of the notebooks before it are intact (re-running reuses them).")
    lines.append(bar)
    return "\n".join(lines)
