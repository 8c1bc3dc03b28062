"""The parameter form: one source of truth (the `parameters` cell), two front doors.

`form(locals_of_parameters, "20_convert")` shows ipywidgets built from the literals of the
notebook's parameters cell; `form.values()` returns the effective values (the widgets' current
state, which under papermill is exactly what was injected), prints them as a text table (widgets do
not render in static HTML) and records them in the run's params.json under the notebook's name.
Run All in JupyterLab re-runs the parameters cell and the form cell: a value the person changed in the
previous form of the same kernel is kept (unless the cell's own literal changed), said in one line,
with a button to reset to the cell's values. Headless runs (the runner's kernels) keep nothing.
"""
from __future__ import annotations

import ast
import html
import io
import json
import os
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ipywidgets as w
from IPython.display import display

from helpers.core.paths import HEADLESS_ENV, Run, write_json_atomic
from helpers.runner import params as params_check
from helpers.runner.execute import NOTEBOOKS, declared_parameters
from helpers.runner.params import CHOICES
from helpers.toolkit.options import TARGET_PLATFORMS

RESET_LABEL = "Reset to the cell's values"

TARGET_PLATFORMS = TARGET_PLATFORMS  # kept for notebooks not yet switched to convert's list

# Enumerations shown as dropdowns wherever a parameter of that name appears: convert's own lists,
# so the form offers exactly what the conversion accepts.


def _cell_source(notebook_path: Path) -> str:
    cells = json.loads(Path(notebook_path).read_text(encoding="utf-8")).get("cells", [])
    cell = next((c for c in cells if c.get("cell_type") == "code" and "parameters" in c.get("metadata", {}).get("tags", [])),
                None)
    if cell is None:
        return ""
    return "".join(cell["source"]) if isinstance(cell.get("source"), list) else str(cell.get("source", ""))


def comments_of(source: str) -> dict[str, str]:
    """{name: its comment} for a parameters cell: the comment on the assignment's line(s), continued by
    indented comment-only lines right below it. This is the tooltip text: one place to write it."""
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
    path = NOTEBOOKS / f"{notebook}.ipynb"
    return comments_of(_cell_source(path)) if path.exists() else {}


def _widget_for(name: str, value: Any, choices: list[Any] | None, tip: str):
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
        raise ValueError(f"Parameter {widget.description} = {value!r} is not a valid Python literal; "
                         "fix it in the form.") from exc


@dataclass
class Form:
    """Widgets for one notebook's parameters; values() is the single source for later cells."""

    notebook: str
    defaults: dict[str, Any]
    widgets: dict[str, Any] = field(default_factory=dict)
    initial: dict[str, Any] = field(default_factory=dict)  # each widget's value as built from the cell
    kept: dict[str, Any] = field(default_factory=dict)  # {name: value kept from the previous form}
    replaced: dict[str, Any] = field(default_factory=dict)  # {name: form value the cell's new literal replaced}
    _note: Any = None

    def _ipython_display_(self) -> None:
        self._note = w.HTML(self.note_html())
        reset = w.Button(description=RESET_LABEL, tooltip="Set every field back to the literal in the parameters cell",
                         layout=w.Layout(width="220px"))
        reset.on_click(lambda _button: self.reset())
        for widget in self.widgets.values():  # the note follows edits made after the rebuild too
            widget.observe(lambda _change: self._refresh_note(), names="value")
        heading = w.HTML(f"<b>Parameters of {html.escape(self.notebook)}</b> (change, then re-run the cells below; "
                         "Run All keeps what you changed here)")
        display(w.VBox([heading, self._note, reset, *self.widgets.values()]))

    def edited(self) -> dict[str, Any]:
        """{name: widget value} of the fields that differ from the cell's values right now."""
        return {k: wdg.value for k, wdg in self.widgets.items() if k in self.initial and wdg.value != self.initial[k]}

    def note(self) -> str:
        """One line: which values were kept from the previous form, or which cell edits replaced a form value."""
        parts = []
        kept = {k: v for k, v in self.edited().items() if k in self.kept}
        if kept:
            cell = ", ".join(f"{k}={v!r} (cell: {self.initial[k]!r})" for k, v in kept.items())
            parts.append(f"Kept from the form before this re-run: {cell}; press '{RESET_LABEL}' to use the cell's values.")
        if self.replaced:
            gone = ", ".join(f"{k}={self.defaults[k]!r} (your form value {v!r} was replaced)" for k, v in self.replaced.items())
            parts.append(f"The parameters cell changed: {gone}.")
        return " ".join(parts)

    def note_html(self) -> str:
        text = self.note()
        return f"<span style='color:#9a5b00'>{html.escape(text)}</span>" if text else ""

    def _refresh_note(self) -> None:
        if self._note is not None:
            self._note.value = self.note_html()

    def reset(self) -> None:
        """Every field back to the parameters cell's value (what the button does)."""
        for k, value in self.initial.items():
            self.widgets[k].value = value
        self.kept.clear()
        self.replaced.clear()
        self._refresh_note()

    def values(self, record: bool = True) -> dict[str, Any]:
        """Effective parameters; with record=True also print them as a table and save to params.json."""
        vals = {k: _read(self.widgets[k], v) if k in self.widgets else v for k, v in self.defaults.items()}
        params_check.check_in_run(self.notebook, vals)  # the runner's rules: type, range, paths, file kinds, classes
        if record:
            if self.note():
                print(self.note())
            show_table(vals)
            if "run_dir" in vals:
                save_params(Run.at(vals["run_dir"]), self.notebook, vals)
        return vals


# The last form built for each notebook in this kernel (module state lives as long as the kernel).
_LAST: dict[str, Form] = {}


def headless() -> bool:
    """True in a kernel the runner started (papermill): nothing is carried between forms there."""
    return os.environ.get(HEADLESS_ENV, "") not in ("", "0")


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and repr(a) == repr(b)  # 1 vs True vs 1.0 differ; lists compare by content


def carry_edits(previous: Form, new: Form) -> None:
    """Into the new form, the values the person changed in the previous one, where the cell's literal
    is the same as when that form was built (a changed literal is the person's newer choice)."""
    for k, old in previous.widgets.items():
        if k not in new.widgets or k not in previous.initial or old.value == previous.initial[k]:
            continue
        if not _same(previous.defaults.get(k), new.defaults.get(k)):
            new.replaced[k] = old.value
            continue
        try:
            new.widgets[k].value = old.value
        except Exception:  # noqa: BLE001 - e.g. a dropdown whose options changed: the cell's value stands
            continue
        new.kept[k] = old.value


def parameter_names(notebook: str) -> list[str] | None:
    """Names declared in notebooks/<notebook>.ipynb's `parameters` cell, or None if it is not there."""
    path = NOTEBOOKS / f"{notebook}.ipynb"
    return list(declared_parameters(path)) if path.exists() else None


def form(namespace: dict[str, Any], notebook: str, choices: dict[str, list[Any]] | None = None) -> Form:
    """Build the form for the notebook's parameters, taking their current values from namespace
    (pass `globals()`): the names come from the notebook's own `parameters` cell, so the values
    papermill injected (or the user edited) are what the form starts from; each tooltip is that
    parameter's comment in the cell (the one place tooltips live). choices adds run-time lists (e.g.
    the boards found). Built again in the same interactive kernel (Run All), a field the person changed
    in the previous form keeps that value while the cell's literal is unchanged (see carry_edits)."""
    names = parameter_names(notebook)
    if names is None:  # a copied notebook outside notebooks/: take the plain literals given
        plain = (bool, int, float, str, list, tuple, dict, type(None))
        names = [k for k, v in namespace.items() if not k.startswith("_") and isinstance(v, plain)]
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
    f.initial = {k: wdg.value for k, wdg in f.widgets.items()}
    if headless():
        return f
    if notebook in _LAST:
        carry_edits(_LAST[notebook], f)
    _LAST[notebook] = f
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
