"""The parameter form: one source of truth (the `parameters` cell), two front doors.

`form(locals_of_parameters, "20_convert")` shows ipywidgets built from the literals of the
notebook's parameters cell; `form.values()` returns the effective values (the widgets' current
state, which under papermill is exactly what was injected), prints them as a text table (widgets do
not render in static HTML) and records them in the run's params.json under the notebook's name.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import convert
from .paths import Run, write_json_atomic

TARGET_PLATFORMS = convert.TARGET_PLATFORMS  # kept for notebooks not yet switched to convert's list

# Enumerations shown as dropdowns wherever a parameter of that name appears: convert's own lists,
# so the form offers exactly what the conversion accepts.
CHOICES: dict[str, list[Any]] = {
    "target_platform": convert.TARGET_PLATFORMS,
    "target": convert.TARGET_PLATFORMS,
    "quantized_dtype": convert.QUANTIZED_DTYPES,
    "quantized_algorithm": convert.QUANTIZED_ALGORITHMS,
    "quantized_method": convert.QUANTIZED_METHODS,
    "float_dtype": convert.FLOAT_DTYPES,
    "optimization_level": [0, 1, 2, 3],
    "load_path": convert.LOAD_PATHS,
    "core_mask": ["auto", "0", "1", "2", "0_1", "0_1_2", "all"],
    "task": ["", "classify", "detect"],  # "": what the model says
    "head": ["split", "stock"],
}


def _cell_source(notebook_path: Path) -> str:
    cells = json.loads(Path(notebook_path).read_text(encoding="utf-8")).get("cells", [])
    cell = next((c for c in cells if c.get("cell_type") == "code" and "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return ""
    return "".join(cell["source"]) if isinstance(cell.get("source"), list) else str(cell.get("source", ""))


def comments_of(source: str) -> dict[str, str]:
    """{name: its comment} for a parameters cell: the comment on the assignment's line(s), continued by
    indented comment-only lines right below it. This is the tooltip text: one place to write it."""
    import io
    import tokenize

    try:
        tree = ast.parse(source)
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (SyntaxError, tokenize.TokenError):
        return {}
    comments = {t.start[0]: t.string.lstrip("#").strip() for t in tokens if t.type == tokenize.COMMENT}
    lines = source.splitlines()
    out: dict[str, str] = {}
    for node in tree.body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        text = [comments[n] for n in range(node.lineno, (node.end_lineno or node.lineno) + 1) if n in comments]
        n = (node.end_lineno or node.lineno) + 1
        while text and n <= len(lines) and n in comments and lines[n - 1][:1].isspace() and lines[n - 1].strip().startswith("#"):
            text.append(comments[n])
            n += 1
        for t in targets:
            if isinstance(t, ast.Name) and text:
                out[t.id] = " ".join(text)
    return out


def tooltips(notebook: str) -> dict[str, str]:
    """The comments of notebooks/<notebook>.ipynb's parameters cell, by parameter name ({} if absent)."""
    from .report import NOTEBOOKS

    path = NOTEBOOKS / f"{notebook}.ipynb"
    return comments_of(_cell_source(path)) if path.exists() else {}


def _widget_for(name: str, value: Any, choices: list[Any] | None, tip: str):
    import ipywidgets as w

    style = {"description_width": "180px"}
    layout = w.Layout(width="520px")
    common = dict(description=name, description_tooltip=tip, tooltip=tip, style=style, layout=layout)
    if choices is not None:
        options = list(choices) if value in choices else [value, *choices]
        return w.Dropdown(options=options, value=value, **common)
    if isinstance(value, bool):
        return w.Checkbox(value=value, indent=False, **common)
    if isinstance(value, int):
        return w.IntText(value=value, **common)
    if isinstance(value, float):
        return w.FloatText(value=value, **common)
    if isinstance(value, str):
        return w.Text(value=value, **common)
    return w.Text(value=repr(value), **common)  # lists, dicts, None: edited as Python literals


def _read(widget: Any, original: Any) -> Any:
    value = widget.value
    if isinstance(original, (bool, int, float, str)) or hasattr(widget, "options"):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"Parameter {widget.description} = {value!r} is not a valid Python literal; fix it in the form.") from exc


@dataclass
class Form:
    """Widgets for one notebook's parameters; values() is the single source for later cells."""

    notebook: str
    defaults: dict[str, Any]
    widgets: dict[str, Any] = field(default_factory=dict)

    def _ipython_display_(self) -> None:
        from IPython.display import display
        import ipywidgets as w

        display(w.VBox([w.HTML(f"<b>Parameters of {self.notebook}</b> (change, then re-run the cells below)"), *self.widgets.values()]))

    def values(self, record: bool = True) -> dict[str, Any]:
        """Effective parameters; with record=True also print them as a table and save to params.json."""
        vals = {k: _read(self.widgets[k], v) if k in self.widgets else v for k, v in self.defaults.items()}
        if record:
            show_table(vals)
            if "run_dir" in vals:
                save_params(Run.at(vals["run_dir"]), self.notebook, vals)
        return vals


def parameter_names(notebook: str) -> list[str] | None:
    """Names declared in notebooks/<notebook>.ipynb's `parameters` cell, or None if it is not there."""
    from .report import NOTEBOOKS, declared_parameters

    path = NOTEBOOKS / f"{notebook}.ipynb"
    return list(declared_parameters(path)) if path.exists() else None


def form(namespace: dict[str, Any], notebook: str, choices: dict[str, list[Any]] | None = None) -> Form:
    """Build the form for the notebook's parameters, taking their current values from namespace
    (pass `globals()`): the names come from the notebook's own `parameters` cell, so the values
    papermill injected (or the user edited) are what the form starts from; each tooltip is that
    parameter's comment in the cell (the one place tooltips live). choices adds run-time lists (e.g.
    the boards found)."""
    names = parameter_names(notebook)
    if names is None:  # a copied notebook outside notebooks/: take the plain literals given
        names = [k for k, v in namespace.items() if not k.startswith("_") and isinstance(v, (bool, int, float, str, list, tuple, dict, type(None)))]
    missing = [n for n in names if n not in namespace]
    if missing:
        raise NameError(f"Parameters {missing} are not defined; run the cell tagged 'parameters' first.")
    params = {k: namespace[k] for k in names}
    choices = {**CHOICES, **(choices or {})}
    tips = tooltips(notebook)
    f = Form(notebook, dict(params))
    try:
        f.widgets = {k: _widget_for(k, v, choices.get(k), tips.get(k, "")) for k, v in params.items()}
    except ImportError:  # ipywidgets missing: values() still works from the literals
        f.widgets = {}
    return f


def show_table(values: dict[str, Any]) -> None:
    """Print parameters as a plain two-column text table (renders in static HTML reports)."""
    width = max((len(k) for k in values), default=0)
    print(f"{'parameter':<{width}}  value")
    print(f"{'-' * width}  {'-' * 5}")
    for k, v in values.items():
        print(f"{k:<{width}}  {v!r}")


def save_params(run: Run, notebook: str, values: dict[str, Any]) -> None:
    """Merge this notebook's effective parameters into <run>/params.json (atomic write)."""
    path = run.root / "params.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[notebook] = values
    write_json_atomic(path, data)
