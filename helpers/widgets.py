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
from typing import Any

from .paths import Run, write_json_atomic

TARGET_PLATFORMS = ["rk3588", "rk3576", "rk3568", "rk3566", "rk3562", "rv1103", "rv1106", "rv1103b", "rv1106b", "rk2118", "rv1126b"]

# Enumerations shown as dropdowns (value lists) wherever a parameter of that name appears.
CHOICES: dict[str, list[Any]] = {
    "target_platform": TARGET_PLATFORMS,
    "target": TARGET_PLATFORMS,
    "quantized_dtype": ["w8a8", "w8a16", "w16a16i", "w16a16i_dfp", "w4a16"],
    "quantized_algorithm": ["normal", "mmse", "kl_divergence"],
    "quantized_method": ["channel", "layer"],
    "float_dtype": ["float16"],
    "optimization_level": [0, 1, 2, 3],
    "load_path": ["onnx", "pytorch"],
    "core_mask": ["auto", "0", "1", "2", "0_1", "0_1_2", "all"],
}

# One-line tooltips for common parameters; notebooks may pass more through `help=`.
HELP: dict[str, str] = {
    "run_dir": "Run folder (relative to the repository root); every artifact of this run goes here.",
    "data_dir": "Labelled images laid out as <dir>/{train,val}/<class>/<image>; empty = the bundled digits sample.",
    "model": "Your .pt (ultralytics or TorchScript) or .onnx; empty = train the sample YOLO11n-cls model.",
    "imgsz": "Model input size in pixels (square).",
    "target_platform": "Rockchip chip the .rknn is built for; a model only runs on the platform it was built for.",
    "quantized_algorithm": "normal: fast min/max; mmse: slower, clips outliers; kl_divergence: for uneven distributions.",
    "quantized_method": "channel: one scale per output channel (usually more accurate); layer: one per tensor.",
    "quantized_dtype": "w8a8 = INT8 weights and activations (the 2.x name of asymmetric_quantized-8).",
    "mean_values": "Per-channel mean subtracted before the model, on the 0-255 scale (ultralytics: [0, 0, 0]).",
    "std_values": "Per-channel divisor after the mean, on the 0-255 scale (ultralytics: [255, 255, 255]).",
    "load_path": "onnx: load_onnx(model/model.onnx); pytorch: load_pytorch(model/model.torchscript) with input_size_list.",
    "demo_calib_images": "Demo mode (notebooks 50, 60): calibrate on only the first N images of notebook 20's list (1 = visibly harsh); 0 = the converted model as is.",
    "analysis_images": "Validation images fed to accuracy_analysis, one call each; the per-layer cosines are averaged.",
    "threshold": "A per-layer cosine below this value is a warning sign (rule of thumb: 0.99).",
    "target": "Chip of the attached board; must be the platform the .rknn was built for (empty = read it from the file).",
    "device_id": "adb serial (or ntb id) of the board to use; empty = the first board found.",
    "core_mask": "NPU cores to run on: auto, or 0/1/2/0_1/0_1_2/all on rk3588 (0/1/0_1/all on rk3576).",
}


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


def form(namespace: dict[str, Any], notebook: str, choices: dict[str, list[Any]] | None = None, help: dict[str, str] | None = None) -> Form:
    """Build the form for the notebook's parameters, taking their current values from namespace
    (pass `globals()`): the names come from the notebook's own `parameters` cell, so the values
    papermill injected (or the user edited) are what the form starts from."""
    names = parameter_names(notebook)
    if names is None:  # a copied notebook outside notebooks/: take the plain literals given
        names = [k for k, v in namespace.items() if not k.startswith("_") and isinstance(v, (bool, int, float, str, list, tuple, dict, type(None)))]
    missing = [n for n in names if n not in namespace]
    if missing:
        raise NameError(f"Parameters {missing} are not defined; run the cell tagged 'parameters' first.")
    params = {k: namespace[k] for k in names}
    choices = {**CHOICES, **(choices or {})}
    tips = {**HELP, **(help or {})}
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
