"""Execute the notebook series headlessly with papermill (the runner builds on this)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import WorkbookError
from .paths import KERNEL_NAME, REPO, Run

NOTEBOOKS = REPO / "notebooks"


def notebooks() -> list[Path]:
    """The series in order: every NN_name.ipynb in notebooks/."""
    return sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def notebook_name(path: Path) -> str:
    """'20_convert' for notebooks/20_convert.ipynb."""
    return Path(path).stem


def execute(notebook: Path, run_dir: str | Path, params: dict[str, Any] | None = None, progress: bool = False) -> Path:
    """Run one notebook with papermill into <run>/executed/, parameters injected; returns the output path."""
    import papermill as pm

    run = Run.at(run_dir)
    out = run.sub("executed") / Path(notebook).name
    if not Path(notebook).exists():
        raise WorkbookError(f"Notebook {notebook} does not exist; choose one of {[p.name for p in notebooks()]}.")
    pm.execute_notebook(
        str(notebook), str(out),
        parameters={**(params or {}), "run_dir": str(run.root)},
        kernel_name=KERNEL_NAME, cwd=str(NOTEBOOKS), progress_bar=progress, log_output=False,
    )
    return out


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """Names and default literals of a notebook's `parameters` cell (via papermill's inspector)."""
    import papermill as pm

    return {name: info["default"] for name, info in pm.inspect_notebook(str(notebook)).items()}


def load_params_file(path: str | Path | None) -> dict[str, Any]:
    """Read a parameters YAML: `common:` keys go to every notebook, `<NN_name>:` sections override."""
    import yaml

    if not path:
        return {}
    path = Path(path)
    if not path.is_file():
        raise WorkbookError(f"Parameters file {path} does not exist; pass --params an existing YAML file (see params/).")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise WorkbookError(f"Parameters file {path} must be a mapping with 'common:' and per-notebook sections.")
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
    unknown_sections = [k for k in config if k != "common" and k not in {notebook_name(n) for n in notebooks()}]
    if unknown_sections:
        raise WorkbookError(f"Parameters file has section(s) {unknown_sections} that match no notebook; valid: common, {', '.join(notebook_name(n) for n in notebooks())}.")
    bad = sorted(set(section) - set(declared))
    if bad:
        raise WorkbookError(f"Unknown parameter(s) {bad} for {name}; valid keys: {', '.join(sorted(declared))}.")
    unknown_common = sorted(k for k in common if not any(k in declared_parameters(n) for n in notebooks()))
    if unknown_common:
        valid = sorted({k for n in notebooks() for k in declared_parameters(n)})
        raise WorkbookError(f"Unknown common parameter(s) {unknown_common}; valid keys: {', '.join(valid)}.")
    return {**{k: v for k, v in common.items() if k in declared}, **section}
