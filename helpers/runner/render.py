"""The HTML reports of the executed notebooks (nbconvert): each in two flavours, with code and report-only,
live widgets replaced by static notes; then the run's index page (helpers.runner.index)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbformat import NotebookNode

from helpers.core.paths import Run, write_text_atomic
from helpers.runner.execute import notebooks
from helpers.runner.index import write_index

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _static_widgets(nb: NotebookNode) -> None:
    """Live widgets are blank in static HTML: the parameter form becomes a short note (the parameter table
    printed right after carries the values), other inputs (e.g. the layer picker) a note to open the notebook,
    and progress bars, frozen at their first frame, are dropped."""
    form_note = {"text/html": "<p><em>Interactive parameter form (open the notebook in JupyterLab to edit). The values "
                              "used are in the table below.</em></p>",
                 "text/plain": "[interactive parameter form; values in the table below]"}
    other_note = {"text/html": "<p><em>Interactive widget (open the notebook in JupyterLab to use it); what it selected is "
                               "printed below.</em></p>", "text/plain": "[interactive widget]"}
    for cell in nb.cells:
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_MIME in data:
                text = str(data.get("text/plain", ""))
                if "%|" in text or text.startswith(("HBox(children=(HTML(value=", "FloatProgress", "IntProgress")):
                    continue  # a progress bar
                out["data"] = form_note if "Parameters of" in text else other_note
            kept.append(out)
        if "outputs" in cell:
            cell["outputs"] = kept
    nb.metadata.pop("widgets", None)


@lru_cache(maxsize=2)
def _exporter(report_only: bool) -> HTMLExporter:
    """One HTMLExporter per flavour (building one compiles its templates, the slow part)."""
    return HTMLExporter(template_name="lab", exclude_input=report_only, exclude_input_prompt=report_only,
                        exclude_output_prompt=report_only)


def render_notebook(executed: Path, report_dir: Path) -> tuple[Path, Path]:
    """Render one executed notebook twice: <name>.html (code and outputs) and <name>.report.html (no code)."""
    nb = nbformat.read(str(executed), as_version=4)
    _static_widgets(nb)
    # papermill's "injected-parameters" cell is code: it shows in the full flavour, as it should.
    name = Path(executed).stem
    report_dir.mkdir(parents=True, exist_ok=True)
    outputs = []
    for suffix, report_only in ((".html", False), (".report.html", True)):
        body, _ = _exporter(report_only).from_notebook_node(nb, resources={"metadata": {"name": name}})
        outputs.append(write_text_atomic(report_dir / f"{name}{suffix}", body))
    return outputs[0], outputs[1]


def render(run_dir: str | Path) -> Path:
    """Render every executed notebook of a run into <run>/report/ and write the index page; returns it."""
    run = Run.at(run_dir)
    report_dir = run.sub("report")
    for nb in notebooks():
        executed = run.root / "executed" / nb.name
        if executed.exists():
            try:
                render_notebook(executed, report_dir)
            except Exception as exc:  # a broken executed file must not stop the index page
                print(f"warning: could not render {executed.name}: {type(exc).__name__}: {exc}")
    return write_index(run.root)
