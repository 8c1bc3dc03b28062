"""PyTorch -> TorchScript (for `load_pytorch`) and ONNX (for `load_onnx`), with the checks the toolkit
needs: the ONNX opset it accepts, the torch version a TorchScript came from, the input size. (The
numeric comparison of the exported ONNX against PyTorch is steps.export.check.check_export.)
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.core.errors import WorkbookError
from helpers.core.paths import Run, atomic_path, write_json_atomic
from helpers.steps.export.models import train_sample_model
from helpers.tasks.data import load_split
from helpers.tasks.model_file import check_model_path
from helpers.toolkit.session import into_log

# rknn-toolkit2 2.5.0 refuses anything newer ("Unsupport onnx opset 20, need <= 19!"); tests check this
# against the real toolkit.
TOOLKIT_MAX_OPSET = 19
DEFAULT_OPSET = 19
SIDECAR_SUFFIX = ".json"


@dataclass
class ExportResult:
    """The files one export produced (torchscript is None when the user gave only an ONNX)."""

    onnx: Path
    torchscript: Path | None
    kind: str  # 'ultralytics', 'torchscript' or 'onnx': what the user's model file was
    imgsz: int
    opset: int
    opset_note: str = ""


# ---------------------------------------------------------------- inputs of notebook 10

@contextlib.contextmanager
def quiet(log_path: Path) -> Iterator[None]:
    """Send stdout/stderr, and ultralytics' logger (its handler keeps a reference to the notebook's
    stream), to log_path for the duration of the block."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("ultralytics")
    before = [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]
    with open(log_path, "a") as fh, into_log(log_path):
        old = [h.setStream(fh) for h in before]
        try:
            yield
        finally:
            for h, stream in zip(before, old):
                h.setStream(stream)
    # ultralytics imported inside the block bound its handler to the temporary (now closed) stream
    for h in logger.handlers:
        if isinstance(h, logging.StreamHandler) and getattr(h.stream, "closed", False):
            h.stream = sys.stdout  # not setStream(): that flushes the closed stream first


def data_marker(data_dir: Path) -> Path:
    """What to hash for a data folder in a cache key: the sample's spec file, else the folder itself."""
    folder = Path(data_dir).parent if Path(data_dir).is_file() else Path(data_dir)  # a detection data.yaml: its folder
    marker = folder / "sample.json"
    return marker if marker.exists() else folder


def prepare_model(run: Run, model: str | Path, data_dir: Path, imgsz: int, epochs: int = 20) -> tuple[Path, str]:
    """The model file of the run and a one-line description: the user's file, or the trained sample model."""
    if str(model).strip():
        path = check_model_path(model)
        check_classes(path, data_dir)
        return path, f"your model {path} ({model_kind(path)})"
    with quiet(run.logs / "train.log"):
        res = train_sample_model(run, data_dir, imgsz=imgsz, epochs=epochs)
    how = "reused from the cache" if res.reused else f"trained in {res.seconds:.0f} s"
    return res.weights, f"sample YOLO11n-cls on the digits, {how}: val top-1 {res.top1:.3f}, top-5 {res.top5:.3f}"


def model_outputs(path: Path) -> int | None:
    """How many scores a classification model outputs (ONNX graph or ultralytics checkpoint); None if unknown."""
    kind = model_kind(path)
    if kind == "onnx":
        outs = onnx_io(path)["outputs"]
        shape = outs[0]["shape"] if len(outs) == 1 else []
        return shape[1] if len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0 else None  # [N, classes] only
    if kind == "ultralytics":
        import torch  # optional and slow: only where a PyTorch file is read or written

        ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
        net = ckpt.get("model") if isinstance(ckpt, dict) else None
        names = getattr(net, "names", None)
        return len(names) if names and getattr(net, "task", "classify") == "classify" else None
    return None


def check_classes(model: Path, data_dir: Path) -> None:
    """Raise WorkbookError when the model's number of outputs differs from the number of class folders in data_dir/val."""
    classes = load_split(data_dir, "val").classes
    n = model_outputs(model)
    if n is not None and n != len(classes):
        raise WorkbookError(f"Model {model} has {n} outputs but {Path(data_dir) / 'val'} has {len(classes)} class folders; "
                            f"give a data_dir with one sub-folder per model output, or the model trained on these "
                            f"{len(classes)} classes.")


# ---------------------------------------------------------------- inspecting files

def model_kind(path: Path) -> str:
    """'onnx', 'torchscript' or 'ultralytics' for a model file (by content, not only by name)."""
    path = check_model_path(path)
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if not zipfile.is_zipfile(path):
        raise WorkbookError(f"Model file {path} is not a PyTorch archive; pass an ultralytics .pt, a TorchScript file or an "
                            ".onnx.")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    # torch.jit.save archives carry compiled code under <archive>/code/; torch.save pickles do not.
    return "torchscript" if any("/code/" in n for n in names) else "ultralytics"


def load_onnx_model(path: Path):
    """onnx.load with a clear error when the file is not an ONNX model."""
    import onnx  # optional and slow: only where an ONNX file is read

    path = Path(path)
    if not path.is_file():
        raise WorkbookError(f"ONNX file {path} does not exist; run notebooks/10_export.ipynb or pass an existing .onnx path.")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError and friends
        raise WorkbookError(f"File {path} is not a valid ONNX model ({type(exc).__name__}); re-export it with torch.onnx.export "
                            "or ultralytics export(format='onnx').") from exc
    if not model.graph.node:
        raise WorkbookError(f"File {path} is not a valid ONNX model (no graph nodes); re-export it with torch.onnx.export or "
                            "ultralytics export(format='onnx').")
    return model


def onnx_opset(model) -> int:
    """The default-domain opset of a loaded ONNX model."""
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _shape(value_info) -> list[int | str]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def onnx_io(path: Path) -> dict[str, Any]:
    """Graph inputs/outputs (name, shape, dtype) and opset of an ONNX file."""
    import onnx  # optional and slow: only where an ONNX file is read

    model = load_onnx_model(path)
    inits = {i.name for i in model.graph.initializer}

    def row(v):
        dtype = onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name
        return {"name": v.name, "shape": _shape(v), "dtype": dtype}

    return {
        "inputs": [row(v) for v in model.graph.input if v.name not in inits],
        "outputs": [row(v) for v in model.graph.output],
        "opset": onnx_opset(model),
    }


def op_counts(path: Path) -> dict[str, int]:
    """How many nodes of each op type the ONNX graph has, most frequent first."""
    model = load_onnx_model(path)
    return dict(Counter(n.op_type for n in model.graph.node).most_common())


def check_onnx(path: Path, input_size: int | None = None) -> dict[str, Any]:
    """Raise WorkbookError unless the ONNX loads, has an opset the toolkit accepts and (when given)
    a square input of input_size; returns onnx_io()."""
    io = onnx_io(path)
    if io["opset"] > TOOLKIT_MAX_OPSET:
        raise WorkbookError(
            f"ONNX file {path} uses opset {io['opset']} but rknn-toolkit2 accepts at most {TOOLKIT_MAX_OPSET}; "
            f"run helpers.steps.export.exporter.downgrade_opset or re-export with opset={TOOLKIT_MAX_OPSET} (torch.onnx.export "
            "opset_version=, ultralytics opset=)."
        )
    if len(io["inputs"]) != 1:
        raise WorkbookError(f"ONNX file {path} has {len(io['inputs'])} inputs; this workbook handles single-input image models "
                            "only.")
    if input_size is not None:
        shape = io["inputs"][0]["shape"]
        if len(shape) != 4:
            raise WorkbookError(f"ONNX input {io['inputs'][0]['name']} of {path} has shape {shape}, not NCHW; pass a 4-D image "
                                "model.")
        hw = [d for d in shape[2:] if isinstance(d, int) and d > 0]
        if hw and any(d != input_size for d in hw):
            raise WorkbookError(
                f"Input size {input_size} does not match ONNX file {path}, whose input is {shape[2]}x{shape[3]}; set "
                f"imgsz={hw[0]} or re-export at {input_size}."
            )
    return io


def downgrade_opset(path: Path, out: Path, target: int = TOOLKIT_MAX_OPSET) -> Path:
    """Convert an ONNX above the toolkit's opset down to target with onnx's version converter
    (written to out atomically), or raise WorkbookError naming both opsets and the export flag."""
    import onnx  # optional and slow: only where an ONNX file is read
    from onnx import version_converter

    model = load_onnx_model(path)
    found = onnx_opset(model)
    try:
        converted = version_converter.convert_version(model, target)
        onnx.checker.check_model(converted)
    except Exception as exc:
        ops = sorted({n.op_type for n in model.graph.node})
        raise WorkbookError(
            f"ONNX file {path} uses opset {found}, above the toolkit's maximum {TOOLKIT_MAX_OPSET}, and onnx's version converter "
            f"cannot lower it ({_first_line(exc).split('failed: ')[-1]}; ops: {', '.join(ops[:8])}); re-export with "
            f"opset={TOOLKIT_MAX_OPSET} "
            f"(torch.onnx.export opset_version={TOOLKIT_MAX_OPSET}, ultralytics export(opset={TOOLKIT_MAX_OPSET}))."
        ) from exc
    out = Path(out)
    with atomic_path(out, ".partial.onnx") as tmp:
        onnx.save(converted, str(tmp))
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:160]


# ---------------------------------------------------------------- TorchScript sidecar

def sidecar_path(torchscript: Path) -> Path:
    return Path(torchscript).with_name(Path(torchscript).name + SIDECAR_SUFFIX)


def write_sidecar(torchscript: Path, imgsz: int, channels: int = 3, source: str = "") -> Path:
    """Record the torch version (load_pytorch needs the same one), input size and channels."""
    import torch  # optional and slow: only where a PyTorch file is read or written

    data = {"torch_version": torch.__version__.split("+")[0], "imgsz": int(imgsz), "channels": int(channels),
            "input_size_list": [[1, int(channels), int(imgsz), int(imgsz)]], "source": str(source)}
    return write_json_atomic(sidecar_path(torchscript), data)


def read_sidecar(torchscript: Path) -> dict[str, Any] | None:
    path = sidecar_path(torchscript)
    return json.loads(path.read_text()) if path.exists() else None


def check_torchscript(path: Path, input_size: int | None = None) -> dict[str, Any] | None:
    """Refuse a TorchScript whose sidecar names another torch version or another input size;
    warn when there is no sidecar (the version cannot be checked)."""
    import torch  # optional and slow: only where a PyTorch file is read or written

    path = Path(path)
    if not path.is_file():
        raise WorkbookError(f"TorchScript file {path} does not exist; run notebooks/10_export.ipynb or pass an existing file.")
    if not zipfile.is_zipfile(path):
        raise WorkbookError(f"File {path} is not a TorchScript archive; export it with torch.jit.trace(model, x).save(path).")
    side = read_sidecar(path)
    here = torch.__version__.split("+")[0]
    if side is None:
        warnings.warn(f"TorchScript {path} has no {SIDECAR_SUFFIX} sidecar, so its torch version cannot be checked; "
                      f"load_pytorch fails unless it was exported with torch {here}.", stacklevel=2)
        return None
    if side.get("torch_version") != here:
        raise WorkbookError(
            f"TorchScript {path} was exported with torch {side.get('torch_version')} but this environment has torch {here}; "
            f"re-export it with torch {here} (load_pytorch needs the same version)."
        )
    if input_size is not None and side.get("imgsz") not in (None, input_size):
        raise WorkbookError(f"Input size {input_size} does not match TorchScript {path}, exported at {side['imgsz']} px; set "
                            f"imgsz={side['imgsz']} or re-export.")
    return side


# ---------------------------------------------------------------- export

def export_model(model: Path, out_dir: Path, imgsz: int, opset: int = DEFAULT_OPSET,
                 log_path: Path | None = None) -> ExportResult:
    """Write out_dir/model.onnx and (unless the input is an ONNX) out_dir/model.torchscript + sidecar.

    ultralytics .pt: ultralytics' own exporters (offline; onnxslim is pinned). TorchScript: copied, and
    ONNX exported from it with torch.onnx.export. ONNX: checked, lowered to the toolkit's opset if
    needed, and copied. Every file is written under a temporary name first; exporter chatter goes
    to log_path (default out_dir/export.log).
    """
    if opset > TOOLKIT_MAX_OPSET or opset < 7:
        raise WorkbookError(f"opset={opset} is outside what rknn-toolkit2 accepts; use an opset between 7 and "
                            f"{TOOLKIT_MAX_OPSET}.")
    kind = model_kind(model)
    model = Path(model).resolve()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_out, ts_out = out_dir / "model.onnx", out_dir / "model.torchscript"
    note = ""
    work = out_dir / ".export_tmp"  # ultralytics and torch write beside their input: a scratch folder, removed after
    shutil.rmtree(work, ignore_errors=True)  # also one an interrupted export left
    if kind == "onnx":
        found = onnx_io(model)["opset"]
        with atomic_path(onnx_out, ".partial.onnx") as staged:
            if found > TOOLKIT_MAX_OPSET:
                downgrade_opset(model, staged, TOOLKIT_MAX_OPSET)
                note = f"opset {found} lowered to {TOOLKIT_MAX_OPSET} with onnx's version converter"
            else:
                shutil.copy2(model, staged)
            check_onnx(staged, imgsz)
            ts_out.unlink(missing_ok=True)
            sidecar_path(ts_out).unlink(missing_ok=True)
        return ExportResult(onnx_out, None, kind, imgsz, min(found, TOOLKIT_MAX_OPSET), note)
    work.mkdir()
    try:
        if kind == "ultralytics":
            _export_ultralytics(model, work, imgsz, opset, Path(log_path or out_dir / "export.log"))
        else:
            _export_torchscript(model, work, imgsz, opset)
        io = check_onnx(work / "model.onnx", imgsz)
        shape = io["inputs"][0]["shape"]
        channels = shape[1] if isinstance(shape[1], int) and shape[1] > 0 else 3
        write_sidecar(work / "model.torchscript", imgsz, channels, source=str(model))
        for name in ("model.torchscript", "model.torchscript.json", "model.onnx"):
            (work / name).replace(out_dir / name)
        return ExportResult(onnx_out, ts_out, kind, imgsz, opset, note)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _export_ultralytics(model: Path, work: Path, imgsz: int, opset: int, log_path: Path) -> None:
    """Use ultralytics' exporters on a copy of the .pt inside work/ (they write beside the weights)."""
    from ultralytics import YOLO  # optional and slow (seconds): only for an ultralytics .pt
    from ultralytics.utils import SETTINGS

    SETTINGS.update({"sync": False})
    pt = work / "model.pt"
    shutil.copy2(model, pt)
    log_path.write_text("")
    try:
        with quiet(log_path):
            yolo = YOLO(str(pt), task="classify")
            task = getattr(yolo, "task", "classify")
            if task == "classify":
                yolo.export(format="torchscript", imgsz=imgsz, device="cpu")
                yolo.export(format="onnx", imgsz=imgsz, opset=opset, simplify=True, dynamic=False, device="cpu")
    except Exception as exc:
        raise WorkbookError(f"ultralytics could not export {model} ({_first_line(exc)}); check it is an ultralytics "
                            f"classification .pt (log: {log_path}).") from exc
    if task != "classify":
        fix = (f"leave task empty (it is read from the model) or set task: {task}" if task in ("detect", "segment", "pose")
               else "pass a classify, detect, segment or pose model")
        raise WorkbookError(f"Model {model} is an ultralytics {task} model, not a classifier; {fix}.")


def _export_torchscript(model: Path, work: Path, imgsz: int, opset: int) -> None:
    """A plain TorchScript module: keep it, and export ONNX from it at imgsz."""
    import torch  # optional and slow: only where a PyTorch file is read or written

    try:
        module = torch.jit.load(str(model), map_location="cpu").eval()
    except Exception as exc:
        raise WorkbookError(f"TorchScript {model} cannot be loaded by torch {torch.__version__} ({_first_line(exc)}); re-export "
                            "it with this torch version.") from exc
    x = None
    for channels in (3, 1):  # RGB models, then grayscale ones
        try:
            with torch.no_grad():
                module(torch.zeros(1, channels, imgsz, imgsz))
            x = torch.zeros(1, channels, imgsz, imgsz)
            break
        except Exception as exc:
            error = exc
    if x is None:
        raise WorkbookError(f"TorchScript {model} accepts neither a 1x3x{imgsz}x{imgsz} nor a 1x1x{imgsz}x{imgsz} input "
                            f"({_first_line(error)}); set imgsz to the size it was traced at.") from error
    shutil.copy2(model, work / "model.torchscript")
    with torch.no_grad():
        torch.onnx.export(module, x, str(work / "model.onnx"), opset_version=opset, input_names=["images"],
                          output_names=["output0"])


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Atomic JSON write (notebook 10's export_check.json)."""
    return write_json_atomic(path, data)
