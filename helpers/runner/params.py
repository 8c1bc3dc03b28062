"""Every workbook parameter checked before anything runs: its type (the parameters cell's literal says it),
its range, the paths it names and the kind of file they are, and a data folder's classes against the model.

One definition of the rules, keyed by parameter name and applied to whatever a notebook declares; both front
doors call it: the runner (`python -m helpers run`, before any notebook starts) and the form
(`form.values()`, so JupyterLab gets the same sentence). Each refusal is one WorkbookError sentence naming
the notebook, the parameter, the value and the fix. The cell's own literal always passes (its author chose
it: e.g. imgsz 0 where 0 means "the model's own").
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Callable

from helpers.core.errors import WorkbookError
from helpers.core.paths import REPO, SAMPLE_DATA
from helpers.runner.execute import NOTEBOOKS, declared_parameters, notebook_name
from helpers.steps.export import exporter
from helpers.tasks.data import detect_yaml, load_split
from helpers.tasks.identify import TASKS, fit_norm
from helpers.tasks.model_file import check_model_path
from helpers.toolkit import options
from helpers.toolkit.options import QUANTIZED_ALGORITHMS, QUANTIZED_METHODS, ConvertConfig

Rule = Callable[[str, Any, str], None]  # (notebook, value, name) -> None, or raise WorkbookError


def _say(notebook: str, name: str, value: Any, problem: str, fix: str) -> WorkbookError:
    return WorkbookError(f"{name}={value!r} in {notebook} {problem}; {fix}.")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def count(low: int, what: str, high: int | None = None) -> Rule:
    """A whole number of things, at least low (and at most high)."""
    def rule(nb: str, value: Any, name: str = "") -> None:
        if not _whole(value):
            raise _say(nb, name, value, "is not a whole number", f"give the number of {what} as an integer (e.g. {max(low, 1)})")
        if value < low or (high is not None and value > high):
            span = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise _say(nb, name, value, f"is out of range ({span})", f"give the number of {what}, {span}")
    return rule


def real(low: float, high: float, what: str, low_open: bool = False) -> Rule:
    """A number in [low, high] (or (low, high])."""
    def rule(nb: str, value: Any, name: str = "") -> None:
        below = value <= low if (_number(value) and low_open) else (_number(value) and value < low)
        if not _number(value) or below or value > high:
            span = f"{'(' if low_open else '['}{low:g}, {high:g}]"
            raise _say(nb, name, value, f"is not a number in {span}", f"give {what} in {span}")
    return rule


def choice(options: Callable[[], list[Any]], what: str) -> Rule:
    def rule(nb: str, value: Any, name: str = "") -> None:
        allowed = options()
        if value not in allowed:
            raise _say(nb, name, value, f"is not {what}", f"use one of {', '.join(repr(o) for o in allowed)}")
    return rule


def numbers_per_channel(nb: str, value: Any, name: str = "") -> None:
    """mean_values / std_values: one number per input channel (1 to 4), std never 0."""
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= 4 or not all(_number(v) for v in value):
        raise _say(nb, name, value, "is not a list of numbers, one per input channel",
                   "write e.g. [0, 0, 0] (RGB) or [0] (grayscale)")
    if name == "std_values" and any(float(v) == 0 for v in value):
        raise _say(nb, name, value, "contains 0 (a divisor)", "give non-zero values, e.g. [255, 255, 255] for /255 scaling")


def sweep_pairs(nb: str, value: Any, name: str = "") -> None:
    """50's sweep_grid: [quantized_algorithm, quantized_method] pairs the toolkit knows."""
    ok = isinstance(value, list) and all(isinstance(p, (list, tuple)) and len(p) == 2 and p[0] in QUANTIZED_ALGORITHMS
                                         and p[1] in QUANTIZED_METHODS for p in value)
    if not ok:
        raise _say(nb, name, value, "is not a list of [quantized_algorithm, quantized_method] pairs",
                   f"write e.g. [['normal', 'channel'], ['mmse', 'layer']] (algorithms: {', '.join(QUANTIZED_ALGORITHMS)})")


def names(nb: str, value: Any, name: str = "") -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _say(nb, name, value, "is not a list of names", "write e.g. ['/model.22/Concat_output_0'] ([] for none)")


def resolve(value: str) -> Path:
    """A path parameter as the notebooks read it: ~ expanded, relative = from the repository root."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else REPO / path


def data_folder(nb: str, value: Any, name: str = "") -> None:
    """data_dir: empty (the sample), a folder with train/ and val/ (or a data.yaml), or a YOLO data.yaml."""
    if not isinstance(value, str) or not value.strip():
        return
    path = resolve(value)
    if not path.exists():
        raise _say(nb, name, value, f"does not exist ({path})",
                   "give an existing folder with train/ and val/ (or a data.yaml), or \"\" for the sample")
    if path.is_file():
        if path.suffix.lower() not in (".yaml", ".yml"):
            raise _say(nb, name, value, "is a file, not a data folder or a data.yaml",
                       "give the folder holding train/ and val/, or a YOLO data.yaml")
        return
    if not (path / "data.yaml").is_file() and not all((path / s).is_dir() for s in ("train", "val")):
        raise _say(nb, name, value, f"has no train/ and val/ sub-folders (nor a data.yaml) in {path}",
                   "lay it out as <dir>/{train,val}/<class>/<image>, or give a YOLO data.yaml")
    if not (path / "data.yaml").is_file():
        for split in ("train", "val"):
            try:
                load_split(path, split)
            except WorkbookError as exc:
                raise WorkbookError(f"data_dir={value!r} in {nb}: {exc}") from None


def model_file(nb: str, value: Any, name: str = "") -> None:
    """model: empty (the sample), or an existing .pt/.torchscript/.onnx that really is such a model."""
    if not isinstance(value, str) or not value.strip():
        return

    try:
        check_model_path(value)
    except WorkbookError as exc:
        raise WorkbookError(f"model={value!r} in {nb}: {exc}") from None


def text(nb: str, value: Any, name: str = "") -> None:
    """Free text: the type check is all."""


RULES: dict[str, Rule] = {
    "imgsz": count(0, "pixels of the (square) model input (0: the model's own; otherwise 8 or more)", 4096),
    "opset": count(7, "the ONNX opset (rknn-toolkit2 2.5.0 accepts at most 19)", 19),
    "epochs": count(1, "training epochs"),
    "check_images": count(1, "validation images to compare PyTorch and ONNX Runtime on"),
    "calib_images": count(1, "calibration images (20-100 is typical)"),
    "calib_stratified": choice(lambda: [True, False], "True or False"),
    "batch": count(1, "images per simulator call", 1024),
    "val_images": count(0, "validation images (0: all)"),
    "image_index": count(0, "the validation image to show (0 is the first)"),
    "pictures": count(0, "pictures to draw"),
    "board_images": count(0, "images for the board (0: all)"),
    "analysis_images": count(0, "images for accuracy_analysis"),
    "sample_images": count(0, "example images in the bundle"),
    "demo_calib_images": count(0, "demo calibration images (0: the list as is)"),
    "top_layers": count(1, "layers the rankings show"),
    "auto_layers": count(0, "layers chosen automatically (0: none)"),
    "search_budget": count(0, "layers the search may keep in float16"),
    "threshold": real(0.0, 1.0, "a cosine threshold", low_open=True),
    "target_pt": real(0.0, 100.0, "the points of the metric the search may stay below FP32"),
    "mean_values": numbers_per_channel,
    "std_values": numbers_per_channel,
    "dtype": choice(lambda: list(__import__("helpers.steps.hybrid", fromlist=["DTYPES"]).DTYPES), "a dtype for hybrid layers"),
    "sweep_grid": sweep_pairs,
    "user_layers": names,
    "data_dir": data_folder,
    "model": model_file,
    "run_dir": text,
    "device_id": text,
}
# A few names mean something stricter in one notebook.
OVERRIDES: dict[str, Rule] = {
    "50_accuracy_analysis.analysis_images": count(1, "images for accuracy_analysis"),
    "60_hybrid_quantization.analysis_images": count(1, "images for the before/after accuracy_analysis"),
}
# The toolkit's own options (notebook 20) are checked by helpers.toolkit.options.ConvertConfig.validate.
CONVERT_SIGNS = ("target_platform", "quantized_dtype")


# The accepted values of the parameters that take one of a list: the form's dropdowns and the rule both read them.
CHOICES: dict[str, list[Any]] = {
    "target_platform": options.TARGET_PLATFORMS,
    "target": options.TARGET_PLATFORMS,
    "quantized_dtype": options.QUANTIZED_DTYPES,
    "quantized_algorithm": options.QUANTIZED_ALGORITHMS,
    "quantized_method": options.QUANTIZED_METHODS,
    "float_dtype": options.FLOAT_DTYPES,
    "optimization_level": [0, 1, 2, 3],
    "load_path": options.LOAD_PATHS,
    "core_mask": ["auto", "0", "1", "2", "0_1", "0_1_2", "all"],
    "task": ["", *TASKS],  # "": what the model says
    "head": ["split", "stock"],
}


def enumeration(name: str) -> Rule | None:
    """The accepted values for this name (CHOICES: convert's own lists), as a rule."""
    return choice(lambda: CHOICES[name], "one of the accepted values") if name in CHOICES else None


def literals(notebook: str | Path) -> dict[str, Any]:
    """{name: value} of a notebook's parameters cell (a value that is not a plain literal is left out)."""
    path = Path(notebook) if str(notebook).endswith(".ipynb") else NOTEBOOKS / f"{notebook}.ipynb"
    if not path.exists():
        return {}
    out = {}
    for name, source in declared_parameters(path).items():
        try:
            out[name] = ast.literal_eval(source)
        except (ValueError, SyntaxError, TypeError):
            continue
    return out


def _type_ok(value: Any, literal: Any) -> tuple[bool, str]:
    """Whether value has the type of the cell's literal, and how to say that type."""
    if literal is None:
        return True, ""
    if isinstance(literal, bool):
        return isinstance(value, bool), "True or False"
    if isinstance(literal, int):
        return _whole(value), "a whole number"
    if isinstance(literal, float):
        return _number(value), "a number"
    if isinstance(literal, str):
        return isinstance(value, str), "text (in quotes; \"\" for none)"
    if isinstance(literal, (list, tuple)):
        return isinstance(value, (list, tuple)), "a list"
    if isinstance(literal, dict):
        return isinstance(value, dict), "a mapping"
    return True, ""


def check(notebook: str, values: dict[str, Any], declared: dict[str, Any] | None = None) -> None:
    """Raise WorkbookError for the first value of `values` that is of the wrong type, out of range, a missing
    path or a file of the wrong kind; `declared` is the parameters cell's literals (read when not given)."""
    declared = literals(notebook) if declared is None else declared
    for name, value in values.items():
        literal = declared.get(name)
        if name in declared and literal is not None and type(value) is type(literal) and repr(value) == repr(literal):
            continue  # the cell's own value
        ok, kind = _type_ok(value, literal) if name in declared else (True, "")
        if not ok:
            raise _say(notebook, name, value, f"is not {kind} like the cell's {literal!r}",
                       f"give {kind}, e.g. {name}: {literal!r}")
        rule = OVERRIDES.get(f"{notebook}.{name}") or RULES.get(name) or enumeration(name)
        if rule is not None:
            rule(notebook, value, name)
    full = {**declared, **values}
    size = full.get("imgsz")
    if _whole(size) and 0 < size < 8:
        raise _say(notebook, "imgsz", full["imgsz"], "is too small for a model input", "give 8 or more pixels, or 0 "
                                                                                       "for the model's own")
    means, stds = full.get("mean_values"), full.get("std_values")
    if isinstance(means, (list, tuple)) and isinstance(stds, (list, tuple)):
        channels = max(len(means), len(stds))
        try:  # the one per-channel rule (task.fit_norm): a single repeated value fits any channel count
            full |= {"mean_values": fit_norm(means, channels, "mean_values"),
                     "std_values": fit_norm(stds, channels, "std_values")}
        except WorkbookError:
            given, other = ("mean_values", "std_values") if "std_values" not in values else ("std_values", "mean_values")
            raise _say(notebook, given, full[given], f"has {len(full[given])} value(s) but {other}={full[other]!r} has "
                       f"{len(full[other])}", "give both one number per input channel of the model") from None
    if all(k in full for k in CONVERT_SIGNS):
        convert_options(notebook, full)


def convert_options(notebook: str, values: dict[str, Any]) -> None:
    """The toolkit's options through ConvertConfig.validate (the per-channel count waits for the model)."""
    try:
        cfg = ConvertConfig.from_dict(values)
    except TypeError as exc:  # a required option missing: the notebook's own cell decides
        raise WorkbookError(f"{notebook} lacks a conversion option ({exc}); add it to its parameters cell.") from None
    means = values.get("mean_values")
    cfg.validate(len(means) if isinstance(means, (list, tuple)) else 3)


# ----------------------------------------------------------------------------- classes vs the model


def val_classes(data_dir: Path) -> int | None:
    """How many class folders data_dir/val has (None for a detection data set or an unreadable folder)."""
    if detect_yaml(data_dir) is not None:
        return None
    try:
        return len(load_split(data_dir, "val").classes)
    except WorkbookError:
        return None


def check_classes(notebook: str, data_dir: str, outputs: int | None, model_said: str) -> None:
    """A classifier's data folder has one class folder per model output, in both directions."""
    if outputs is None or not isinstance(data_dir, str) or not data_dir.strip():
        return
    found = val_classes(resolve(data_dir))
    if found is not None and found != outputs:
        raise WorkbookError(
            f"data_dir={data_dir!r} in {notebook} has {found} class folder(s) in val/ but {model_said} outputs {outputs} "
            f"scores; give a data_dir with one class folder per output ({outputs}), or \"\" to use notebook 10's data.")


def model_outputs(path: Path) -> int | None:
    """Scores a classification model outputs (None when unknown, e.g. a detector or an unreadable file)."""
    try:
        return exporter.model_outputs(path)
    except Exception:  # noqa: BLE001 - the model's own check says what is wrong with it, elsewhere
        return None


def run_model_outputs(run_root: Path) -> tuple[int | None, str]:
    """The scores of the model notebook 10 exported into a run folder (None when not there yet)."""
    onnx = Path(run_root) / "model" / "model.onnx"
    return (model_outputs(onnx), f"the run's model ({onnx})") if onnx.is_file() else (None, "")


def check_plan(steps: list[tuple[Path, dict[str, Any]]], run_root: Path | None = None) -> None:
    """The runner's check before any notebook starts: every planned notebook's values (its cell's literals
    filling what is not given), then each later data_dir against the model the run will have: notebook
    10's `model` (or the sample trained on 10's data_dir) when 10 is planned, else the run's model.onnx."""
    full: dict[str, dict[str, Any]] = {}
    for nb, params in steps:
        name = notebook_name(nb)
        declared = literals(nb)
        check(name, params, declared)
        full[name] = {**declared, **params}
    outputs, said = None, ""
    export = next((v for k, v in full.items() if k.startswith("10_")), None)
    if export is not None and export.get("task", "classify") in ("classify", ""):
        if str(export.get("model", "")).strip():
            model = check_model_path(export["model"])
            if model.suffix.lower() == ".onnx":  # a .pt would cost torch's import on every run: 20's form checks its export
                outputs, said = model_outputs(model), f"notebook 10's model {export['model']!r}"
        else:
            sample = export.get("data_dir") or ""
            digits = val_classes(SAMPLE_DATA) if SAMPLE_DATA.is_dir() else 10  # the bundled sample: ten digits
            outputs = val_classes(resolve(sample)) if sample.strip() else digits
            said = f"the sample model (trained on {'data_dir ' + repr(sample) if sample.strip() else 'the digits'})"
    elif export is None and run_root is not None:
        outputs, said = run_model_outputs(run_root)
    for name, values in full.items():
        if not name.startswith(("00_", "10_")):
            check_classes(name, values.get("data_dir", ""), outputs, said)


def check_in_run(notebook: str, values: dict[str, Any]) -> None:
    """The form's check inside a notebook: the values, then a data_dir against the run's exported model."""
    check(notebook, values)
    if "data_dir" in values and "run_dir" in values and not notebook.startswith(("00_", "10_")):
        outputs, said = run_model_outputs(resolve(str(values["run_dir"])))
        check_classes(notebook, values["data_dir"], outputs, said)
