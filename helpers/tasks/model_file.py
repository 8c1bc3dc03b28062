"""Whether a model file is what its name says, read without running it: check_model_path (exists, readable, a
type the workbook understands) and the content checks it runs for every user model: an ONNX that parses and is
whole (a text file named .onnx or a truncated copy is refused with its path), a PyTorch file that is a torch
archive holding a model (not only tensors).
"""
from __future__ import annotations

import pickletools
import zipfile
from functools import lru_cache
from pathlib import Path

from helpers.core.errors import WorkbookError
from helpers.core.paths import REPO

MODEL_SUFFIXES = {".pt": "pytorch", ".pth": "pytorch", ".torchscript": "pytorch", ".onnx": "onnx"}

REEXPORT = "re-export it (torch.onnx.export, ultralytics export(format='onnx')) or copy it again"
# Classes a bare state_dict or a tensor file pickles; a model also names its module classes.
TENSOR_ONLY = ("collections", "torch._utils", "torch", "builtins", "_codecs", "numpy", "numpy.core.multiarray", "torch._tensor")


def check_model_path(model: str | Path) -> Path:
    """Validate a user's model file: exists, readable, and of a type the workbook understands."""
    path = Path(model).expanduser()
    if not path.is_absolute() and not path.exists():  # relative = from the repository root, like run_dir and data_dir
        path = REPO / path
    if not path.exists():
        raise WorkbookError(f"Model file {path} does not exist; pass model= an existing .pt or .onnx path, or leave it empty to "
                            "train the sample model.")
    if path.is_dir():
        raise WorkbookError(f"Model path {path} is a folder, not a file; pass model= the .pt or .onnx file inside it.")
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise WorkbookError(f"Model file {path} has unknown type {path.suffix or '(none)'}; pass a .pt/.torchscript (PyTorch) "
                            "or .onnx file.")
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise WorkbookError(f"Model file {path} cannot be read ({exc.strerror}); fix its permissions or copy the model to a "
                            "readable regular file.") from exc
    if not head:
        raise WorkbookError(f"Model file {path} is empty; re-export or re-download it.")
    check(path)  # the content: an ONNX that parses and is whole, a torch archive holding a model
    return path.resolve()


def check(path: Path) -> None:
    """Raise WorkbookError (one sentence with the path and the fix) unless the file is a readable model."""
    path = Path(path)
    st = path.stat()
    _check(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=32)
def _check(path: str, size: int, mtime_ns: int) -> None:
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        check_onnx(Path(path))
    elif suffix in (".pt", ".pth", ".torchscript"):
        check_torch(Path(path))


def check_onnx(path: Path) -> None:
    """Parses as an ONNX model with nodes, outputs and an opset (a copy cut short loses one of these)."""
    import onnx  # optional and slow: only for a user's .onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError "Error parsing message", a text file, ...
        raise WorkbookError(f"Model file {path} is not a valid ONNX model (it does not parse: {type(exc).__name__}; a text file "
                            f"or a truncated copy, {path.stat().st_size} bytes); {REEXPORT}.") from None
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if not model.graph.node or not model.graph.output or not opset:
        missing = "graph nodes" if not model.graph.node else "graph outputs" if not model.graph.output else "an opset"
        raise WorkbookError(f"Model file {path} is not a whole ONNX model (it has no {missing}; a truncated copy?); {REEXPORT}.")


def check_torch(path: Path) -> None:
    """A torch.save / torch.jit.save archive (a zip with data.pkl) whose pickle names a model class."""
    if not zipfile.is_zipfile(path):
        raise WorkbookError(f"Model file {path} is not a PyTorch file (torch.save and torch.jit.save write a zip archive; "
                            "this is not one: a text file, a truncated copy or a legacy pickle); pass an ultralytics .pt, "
                            "a TorchScript file or an .onnx.")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            pickle = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if pickle is None:
                raise WorkbookError(f"Model file {path} is a zip archive but not a PyTorch one (no data.pkl inside); pass an "
                                    "ultralytics .pt, a TorchScript file or an .onnx.")
            if any("/code/" in n for n in names):  # TorchScript: compiled code, a module by construction
                return
            classes = pickled_classes(zf.read(pickle))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise WorkbookError(f"Model file {path} cannot be read as a PyTorch archive ({type(exc).__name__}: {exc}); "
                            "copy it again or re-save it.") from None
    if classes and all(module in TENSOR_ONLY for module, _ in classes):
        raise WorkbookError(f"Model file {path} holds only tensors (a state_dict or weights), not a model; pass an "
                            "ultralytics .pt (it stores the model), a TorchScript file (torch.jit.save) or an .onnx.")


def pickled_classes(data: bytes) -> set[tuple[str, str]]:
    """(module, name) of every class a pickle refers to, read from its opcodes (nothing is unpickled)."""
    found: set[tuple[str, str]] = set()
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL":
                module, _, name = str(arg).partition(" ")
                found.add((module, name))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.add((strings[-2], strings[-1]))
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # noqa: BLE001 - an odd pickle: torch itself will say what is wrong
        return set()
    return found
