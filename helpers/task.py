"""Which task a model file does (classify | detect), read from the file, and the check that the run's
`task` parameter agrees with it."""
from __future__ import annotations

from pathlib import Path

from .errors import WorkbookError

TASKS = ("classify", "detect")
_WHAT = {"classify": "a classifier", "detect": "a detector"}


def _onnx_task(path: Path) -> str | None:
    """From the ONNX metadata 'task' (ultralytics and helpers.detect.head write it), else from the
    output shapes: one [N, classes] -> classify; one [N, 4 + classes, anchors] or 3 per stride -> detect."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("task") in TASKS:
        return meta["task"]
    ranks = [len(o.type.tensor_type.shape.dim) for o in model.graph.output]
    if len(ranks) == 1 and ranks[0] == 2:
        return "classify"
    if (len(ranks) == 1 and ranks[0] == 3) or (len(ranks) % 3 == 0 and set(ranks) == {4}):
        return "detect"
    return None


def _load_pt(path: Path):
    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise WorkbookError(f"Model file {path} cannot be loaded as a PyTorch checkpoint ({type(exc).__name__}); pass an ultralytics .pt or an .onnx.") from exc


def class_names(model_path: str | Path) -> list[str] | None:
    """The class names an ultralytics .pt or an ONNX with ultralytics/export_detector metadata carries."""
    import ast
    import json

    path = Path(model_path)
    if path.suffix.lower() == ".onnx":
        import onnx

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


def task_of(model_path: str | Path) -> str | None:
    """'classify' or 'detect' for an ultralytics .pt (its own task) or an ONNX (metadata or output
    shapes); None when the file does not say (e.g. a plain TorchScript)."""
    path = Path(model_path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return _onnx_task(path)
    if suffix in (".pt", ".pth"):
        ckpt = _load_pt(path)
        model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else ckpt
        task = getattr(model, "task", None) or (ckpt.get("train_args", {}).get("task") if isinstance(ckpt, dict) else None)
        return task if task in TASKS else None
    return None


def check_task(model_path: str | Path, task: str) -> str:
    """Raise WorkbookError when the model file's own task differs from `task` (both named); returns
    the task to use (the file's when it says, else the parameter)."""
    if task not in TASKS:
        raise WorkbookError(f"task={task!r} is not a task of this workbook; use one of {', '.join(TASKS)}.")
    found = task_of(model_path)
    if found is not None and found != task:
        raise WorkbookError(
            f"Model {model_path} is {_WHAT[found]} (task {found}) but task: {task} was given; set task: {found} or pass {_WHAT[task]}."
        )
    return found or task


def resolve_task(model: str | Path, task: str) -> str:
    """The run's task: the model file's own when it says (a mismatch with `task` is an error), else `task`."""
    if task not in TASKS:
        raise WorkbookError(f"task={task!r} is not a task of this workbook; use one of {', '.join(TASKS)}.")
    return check_task(model, task) if str(model).strip() else task


def run_task(run) -> str:  # noqa: ANN001 (helpers.paths.Run)
    """The task notebook 10 recorded for a run in model/export_check.json ('classify' when it did not say)."""
    import json

    record = Path(run.model) / "export_check.json"
    if not record.is_file():
        return "classify"
    return json.loads(record.read_text()).get("task") or "classify"


def recorded_data(run) -> Path | None:  # noqa: ANN001 (helpers.paths.Run)
    """The data (folder or data.yaml) notebook 10 recorded for a run, when it exists."""
    import json

    record = Path(run.model) / "export_check.json"
    if not record.is_file():
        return None
    data = json.loads(record.read_text()).get("data_dir")
    return Path(data) if data and Path(data).exists() else None
