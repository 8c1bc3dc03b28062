"""What a model file says about itself (its task: classify | detect | segment | pose; its input size when fixed), and the
checks that the run's `task` / `imgsz` parameters agree with it. Empty `task` and `imgsz: 0` mean "what the
model says" (the sample's when no model is given)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

from helpers.core.errors import WorkbookError
from helpers.tasks.model_file import check_model_path

TASKS = ("classify", "detect", "segment", "pose")
_WHAT = {"classify": "a classifier", "detect": "a detector", "segment": "an instance-segmentation model",
         "pose": "a pose model"}


def _onnx_task(path: Path) -> str | None:
    """From the ONNX metadata 'task' (ultralytics and helpers.steps.export.detect_head write it), else from the
    output shapes: one [N, classes] -> classify; one [N, 4 + classes, anchors] or 3 per stride -> detect."""
    import onnx  # optional and slow: only for an .onnx model

    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("task"):  # any task ultralytics names (segment, pose, obb too): supported() decides
        return meta["task"]
    ranks = [len(o.type.tensor_type.shape.dim) for o in model.graph.output]
    if len(ranks) == 1 and ranks[0] == 2:
        return "classify"
    if (len(ranks) == 1 and ranks[0] == 3) or (len(ranks) % 3 == 0 and set(ranks) == {4}):
        return "detect"
    return None


def _load_pt(path: Path):
    import torch  # optional and slow: only for a .pt model

    try:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise WorkbookError(f"Model file {path} cannot be loaded as a PyTorch checkpoint ({type(exc).__name__}); pass an "
                            "ultralytics .pt or an .onnx.") from exc


def class_names(model_path: str | Path) -> list[str] | None:
    """The class names an ultralytics .pt or an ONNX with ultralytics/export_detector metadata carries."""
    path = Path(model_path)
    if path.suffix.lower() == ".onnx":
        import onnx  # optional and slow: only for an .onnx model

        raw = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}.get("names")
        if not raw:
            return None
        names = json.loads(raw) if raw.lstrip().startswith("[") else ast.literal_eval(raw)
    elif path.suffix.lower() in (".pt", ".pth"):
        ckpt = _load_pt(path)
        model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else ckpt
        names = getattr(model, "names", None)
    else:
        return None
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    return [str(n) for n in names] if names else None


def model_kpt_shape(model_path: str | Path) -> list[int] | None:
    """A pose model's keypoint shape [K, ndim]: its head's (ultralytics .pt) or its ONNX metadata's; None if not stated."""
    path = Path(model_path)
    if path.suffix.lower() == ".onnx":
        import onnx  # optional and slow: only for an .onnx model

        raw = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}.get("kpt_shape")
        return [int(v) for v in ast.literal_eval(raw)] if raw else None
    if path.suffix.lower() in (".pt", ".pth"):
        ckpt = _load_pt(path)
        model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else ckpt
        shape = getattr(getattr(model, "model", [None])[-1], "kpt_shape", None) if hasattr(model, "model") else None
        return [int(v) for v in shape] if shape is not None else None
    return None


def task_of(model_path: str | Path) -> str | None:
    """The task an ultralytics .pt states (its own) or an ONNX (metadata, else 'classify' / 'detect' from the
    output shapes), as the file names it (also tasks this workbook does not run yet, e.g. 'segment'); None when
    the file does not say (e.g. a plain TorchScript)."""
    path = Path(model_path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return _onnx_task(path)
    if suffix in (".pt", ".pth"):
        ckpt = _load_pt(path)
        model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else ckpt
        task = getattr(model, "task", None) or (ckpt.get("train_args", {}).get("task") if isinstance(ckpt, dict) else None)
        return task if isinstance(task, str) and task else None
    return None


def supported(found: str | None, model_path: str | Path) -> str | None:
    """found when it is a task of this workbook (or None: the file did not say); else one sentence."""
    if found is None or found in TASKS:
        return found
    raise WorkbookError(f"Model {model_path} is an ultralytics {found} model; this workbook takes "
                        f"{', '.join(TASKS[:-1])} and {TASKS[-1]} models so far: pass one of those.")


def check_task(model_path: str | Path, task: str) -> str:
    """Raise WorkbookError when the model file's own task differs from `task` (both named); returns
    the task to use (the file's when it says, else the parameter)."""
    if task not in TASKS:
        raise WorkbookError(f"task={task!r} is not a task of this workbook; use one of {', '.join(TASKS)}.")
    found = supported(task_of(model_path), model_path)
    if found is not None and found != task:
        raise WorkbookError(
            f"Model {model_path} is {_WHAT[found]} (task {found}) but task: {task} was given; set task: {found} or pass "
            f"{_WHAT[task]}."
        )
    return found or task


def resolve_task(model: str | Path, task: str = "") -> str:
    """The run's task: "" = the model file's own (classify when it does not say, or no model is given: the sample
    classifier); an explicit task is an override a model that says otherwise refuses (check_task)."""
    if not str(task).strip():
        if not str(model).strip():
            return "classify"
        path = check_model_path(model)
        return supported(task_of(path), path) or "classify"
    if task not in TASKS:
        raise WorkbookError(f"task={task!r} is not a task of this workbook; use one of {', '.join(TASKS)}, "
                            "or leave it empty for the model's own.")
    if not str(model).strip():
        return task
    return check_task(check_model_path(model), task)


SAMPLE_IMGSZ = 32  # the sample models' input size when imgsz is 0


def model_imgsz(model_path: str | Path) -> tuple[int | None, bool]:
    """The input size a model file states and whether it is fixed: a fixed-shape (square) ONNX input or an
    ultralytics ONNX's metadata -> (size, True); an ultralytics .pt's training size -> (size, False); else (None, False)."""
    path = Path(model_path)
    if path.suffix.lower() == ".onnx":
        import onnx  # optional and slow: only for an .onnx model

        model = onnx.load(str(path), load_external_data=False)
        inits = {i.name for i in model.graph.initializer}
        inputs = [v for v in model.graph.input if v.name not in inits]
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in inputs[0].type.tensor_type.shape.dim] if inputs else []
        if len(dims) == 4 and dims[2] > 0 and dims[3] > 0:
            if dims[2] != dims[3]:
                raise WorkbookError(f"Model {path} has a {dims[2]}x{dims[3]} input; this workbook handles square inputs only, "
                                    "so re-export it square.")
            return dims[2], True
        raw = {p.key: p.value for p in model.metadata_props}.get("imgsz")
        if raw:
            size = ast.literal_eval(raw)
            size = size[0] if isinstance(size, (list, tuple)) else size
            return int(size), True
        return None, False
    if path.suffix.lower() in (".pt", ".pth"):
        ckpt = _load_pt(path)
        size = ckpt.get("train_args", {}).get("imgsz") if isinstance(ckpt, dict) else None
        size = size[0] if isinstance(size, (list, tuple)) else size
        return (int(size), False) if size else (None, False)
    return None, False


def resolve_imgsz(model: str | Path, imgsz: int = 0) -> int:
    """The run's input size: 0 = the model's own (a fixed-shape ONNX's input, an ultralytics .pt's training size;
    the sample's 32 when no model is given); a value that conflicts with a fixed-shape model is refused."""
    imgsz = int(imgsz or 0)
    if imgsz < 0:
        raise WorkbookError(f"imgsz={imgsz} is not an input size; give the model's size in pixels, or 0 for the model's own.")
    if not str(model).strip():
        return imgsz or SAMPLE_IMGSZ
    path = check_model_path(model)
    size, fixed = model_imgsz(path)
    if imgsz and fixed and size and imgsz != size:
        raise WorkbookError(f"imgsz={imgsz} conflicts with model {path}, whose input is fixed at {size}x{size}; "
                            f"set imgsz: {size} or leave it 0.")
    if imgsz:
        return imgsz
    if size:
        return size
    raise WorkbookError(f"Model {path} does not state its input size (a dynamic ONNX or a plain TorchScript); "
                        "set imgsz to the size it was trained at.")


def fit_norm(values, channels: int, name: str = "mean_values") -> list[float]:  # noqa: ANN001 (a list of numbers)
    """Per-channel mean/std values for a model with `channels` inputs: the same value on every channel (the
    defaults [0, 0, 0] / [255, 255, 255]) fits any channel count; differing values must be one per channel."""
    vals = [float(v) for v in (values or [])]
    if len(vals) == channels or not vals:
        return vals
    if len(set(vals)) == 1:
        return vals[:1] * channels
    raise WorkbookError(f"{name}={vals} has {len(vals)} values but the model has {channels} input channel(s); "
                        f"give exactly {channels} "
                        f"(e.g. {name}={vals[:1] * channels}).")


def fit_norms(params: dict, channels) -> dict:  # noqa: ANN001 (an int, or a symbolic dim)
    """{'mean_values': ..., 'std_values': ...} of params fitted to the model's input channels (fit_norm); {} when
    the channel count is not a number."""
    if not isinstance(channels, int) or channels <= 0:
        return {}
    return {k: fit_norm(params[k], channels, k) for k in ("mean_values", "std_values") if k in params}


def run_imgsz(run, imgsz: int = 0) -> int:  # noqa: ANN001 (helpers.core.paths.Run)
    """The input size for notebooks after 10: `imgsz` when given, else the one notebook 10 exported at."""
    if int(imgsz or 0):
        return int(imgsz)
    record = Path(run.model) / "export_check.json"
    size = json.loads(record.read_text()).get("imgsz") if record.is_file() else None
    if not size:
        raise WorkbookError(f"imgsz=0 means notebook 10's size, but {record} does not record one; "
                            "run notebooks/10_export.ipynb first or set imgsz.")
    return int(size)


def run_task(run) -> str:  # noqa: ANN001 (helpers.core.paths.Run)
    """The task notebook 10 recorded for a run in model/export_check.json ('classify' when it did not say)."""
    record = Path(run.model) / "export_check.json"
    if not record.is_file():
        return "classify"
    return json.loads(record.read_text()).get("task") or "classify"


def recorded_data(run) -> Path | None:  # noqa: ANN001 (helpers.core.paths.Run)
    """The data (folder or data.yaml) notebook 10 recorded for a run, when it exists."""
    record = Path(run.model) / "export_check.json"
    if not record.is_file():
        return None
    data = json.loads(record.read_text()).get("data_dir")
    return Path(data) if data and Path(data).exists() else None
