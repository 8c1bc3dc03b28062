"""ONNX / TorchScript -> .rknn: a validated config, the two load paths, build, atomic export, and a
record (rknn/convert.json) from which later notebooks rebuild the very same model in the simulator.

The simulator cannot run a `.rknn` loaded with `load_rknn`; it needs the model built from its source
in the same process. `build_on` is that one sequence (config -> load -> build), shared by
`convert` (which then exports) and by every notebook that needs a simulator-ready toolkit.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from .errors import WorkbookError
from .paths import Run
from .rknn import _ANSI, toolkit, toolkit_version

TARGET_PLATFORMS = ["rk3588", "rk3576", "rk3568", "rk3566", "rk3562", "rv1103", "rv1106", "rv1103b", "rv1106b", "rk2118", "rv1126b"]
QUANTIZED_DTYPES = ["w8a8", "w8a16", "w16a16i", "w16a16i_dfp", "w4a16"]
# rknn-toolkit2 1.x (and toolkit 1) names -> the 2.x name that does the same thing.
LEGACY_DTYPES = {
    "asymmetric_quantized-8": "w8a8",
    "asymmetric_affine-u8": "w8a8",
    "dynamic_fixed_point-i8": "w8a8",
    "asymmetric_quantized-16": "w16a16i",
    "dynamic_fixed_point-i16": "w16a16i_dfp",
}
QUANTIZED_ALGORITHMS = ["normal", "mmse", "kl_divergence"]
QUANTIZED_METHODS = ["channel", "layer"]
FLOAT_DTYPES = ["float16"]
LOAD_PATHS = ["auto", "onnx", "pytorch"]
ONNX_SUFFIXES = {".onnx"}
TORCHSCRIPT_SUFFIXES = {".torchscript", ".pt", ".pth"}


@dataclass
class ConvertConfig:
    """Every `rk.config` option the tutorial documents plus the `build` options, validated."""

    mean_values: list[float]
    std_values: list[float]
    target_platform: str = "rk3588"
    quantized_dtype: str = "w8a8"
    quantized_algorithm: str = "normal"
    quantized_method: str = "channel"
    optimization_level: int = 3
    float_dtype: str = "float16"
    single_core_mode: bool = False
    compress_weight: bool = False
    model_pruning: bool = False
    dynamic_input: list | None = None
    op_target: dict | None = None
    custom_string: str | None = None
    quant_img_RGB2BGR: bool = False
    do_quantization: bool = True
    rknn_batch_size: int | None = None

    def validate(self, channels: int = 3) -> None:
        """Raise WorkbookError (one sentence naming the option and the fix) for any bad value."""
        for name in ("mean_values", "std_values"):
            vals = getattr(self, name)
            if not isinstance(vals, (list, tuple)) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                raise WorkbookError(f"{name}={vals!r} must be a flat list of numbers, one per input channel (e.g. [0, 0, 0]).")
            if len(vals) != channels:
                raise WorkbookError(
                    f"{name}={list(vals)} has {len(vals)} value(s) but the model's input has {channels} channel(s); give exactly {channels}."
                )
        if any(float(s) == 0 for s in self.std_values):
            raise WorkbookError(f"std_values={list(self.std_values)} contains 0; every std must be non-zero (e.g. 255 for /255 scaling).")
        if self.target_platform not in TARGET_PLATFORMS:
            raise WorkbookError(f"target_platform={self.target_platform!r} is not a known Rockchip chip; use one of {', '.join(TARGET_PLATFORMS)}.")
        if self.quantized_dtype in LEGACY_DTYPES:
            raise WorkbookError(
                f"quantized_dtype={self.quantized_dtype!r} is the rknn-toolkit 1.x name; in rknn-toolkit2 2.x write quantized_dtype={LEGACY_DTYPES[self.quantized_dtype]!r}."
            )
        if self.quantized_dtype not in QUANTIZED_DTYPES:
            raise WorkbookError(f"quantized_dtype={self.quantized_dtype!r} is unknown; use one of {', '.join(QUANTIZED_DTYPES)}.")
        if self.quantized_algorithm not in QUANTIZED_ALGORITHMS:
            raise WorkbookError(f"quantized_algorithm={self.quantized_algorithm!r} is unknown; use one of {', '.join(QUANTIZED_ALGORITHMS)}.")
        if self.quantized_method not in QUANTIZED_METHODS:
            raise WorkbookError(f"quantized_method={self.quantized_method!r} is unknown; use one of {', '.join(QUANTIZED_METHODS)}.")
        if self.optimization_level not in (0, 1, 2, 3) or isinstance(self.optimization_level, bool):
            raise WorkbookError(f"optimization_level={self.optimization_level!r} is out of range; use 0, 1, 2 or 3 (3 = all optimizations).")
        if self.float_dtype not in FLOAT_DTYPES:
            raise WorkbookError(f"float_dtype={self.float_dtype!r} is not supported; use 'float16' (the only float type the NPU runs).")
        if self.single_core_mode and self.target_platform != "rk3588":
            raise WorkbookError(f"single_core_mode=True only applies to rk3588, not {self.target_platform}; set single_core_mode=False.")
        if self.rknn_batch_size is not None and (isinstance(self.rknn_batch_size, bool) or not isinstance(self.rknn_batch_size, int) or self.rknn_batch_size < 1):
            raise WorkbookError(f"rknn_batch_size={self.rknn_batch_size!r} must be None or a positive integer (e.g. 8).")
        if self.dynamic_input is not None and not (
            isinstance(self.dynamic_input, list) and self.dynamic_input and all(isinstance(s, list) and s for s in self.dynamic_input)
        ):
            raise WorkbookError(
                f"dynamic_input={self.dynamic_input!r} must be None or a list of input-shape sets, e.g. [[[1, 3, 224, 224]], [[1, 3, 160, 160]]]."
            )
        if self.op_target is not None and not (isinstance(self.op_target, dict) and all(v in ("cpu", "npu", "gpu", "auto") for v in self.op_target.values())):
            raise WorkbookError(f"op_target={self.op_target!r} must be None or a dict {{op name: 'cpu' | 'npu' | 'gpu' | 'auto'}}.")
        if self.custom_string is not None and not isinstance(self.custom_string, str):
            raise WorkbookError(f"custom_string={self.custom_string!r} must be None or a string (at most 1024 characters).")
        if isinstance(self.custom_string, str) and len(self.custom_string) > 1024:
            raise WorkbookError(f"custom_string is {len(self.custom_string)} characters long; shorten it to at most 1024.")

    def config_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `rk.config(...)` (single-input model: one mean/std list)."""
        kw: dict[str, Any] = {
            "mean_values": [list(map(float, self.mean_values))],
            "std_values": [list(map(float, self.std_values))],
            "target_platform": self.target_platform,
            "quantized_dtype": self.quantized_dtype,
            "quantized_algorithm": self.quantized_algorithm,
            "quantized_method": self.quantized_method,
            "optimization_level": self.optimization_level,
            "float_dtype": self.float_dtype,
            "single_core_mode": self.single_core_mode,
            "compress_weight": self.compress_weight,
            "model_pruning": self.model_pruning,
            "quant_img_RGB2BGR": self.quant_img_RGB2BGR,
        }
        for opt in ("dynamic_input", "op_target", "custom_string"):
            if getattr(self, opt) is not None:
                kw[opt] = getattr(self, opt)
        return kw

    def build_kwargs(self, dataset: Path | None) -> dict[str, Any]:
        """Keyword arguments for `rk.build(...)`."""
        return {
            "do_quantization": self.do_quantization,
            "dataset": str(dataset) if (dataset and self.do_quantization) else None,
            "rknn_batch_size": self.rknn_batch_size,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ConvertConfig":
        """Build from a dict (e.g. notebook parameters), ignoring keys that are not options."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class ConvertResult:
    """What one conversion produced and how long it took."""

    rknn_path: Path
    log_path: Path
    seconds: float
    source_bytes: int
    rknn_bytes: int
    dtype_notes: list[str] = field(default_factory=list)

    @property
    def size_ratio(self) -> float:
        return self.rknn_bytes / self.source_bytes if self.source_bytes else float("nan")


@dataclass
class ConvertRecord:
    """Contents of rknn/convert.json: everything needed to rebuild the same model in the simulator."""

    source: Path
    load_path: str
    input_size: int
    dataset: Path | None
    config: ConvertConfig
    rknn_path: Path
    seconds: float
    source_bytes: int
    rknn_bytes: int
    dtype_notes: list[str]
    toolkit_version: str


# ---------------------------------------------------------------- load

def source_kind(source: Path, load_path: str = "auto") -> str:
    """'onnx' or 'pytorch' for a model file, checking that it fits the requested load path."""
    source = Path(source)
    if load_path not in LOAD_PATHS:
        raise WorkbookError(f"load_path={load_path!r} is unknown; use 'onnx' (load_onnx) or 'pytorch' (load_pytorch with TorchScript).")
    suffix = source.suffix.lower()
    kind = "onnx" if suffix in ONNX_SUFFIXES else "pytorch" if suffix in TORCHSCRIPT_SUFFIXES else None
    if kind is None:
        raise WorkbookError(f"Model file {source} has unknown type {suffix or '(none)'}; pass a .onnx or a TorchScript .torchscript/.pt file.")
    if load_path != "auto" and load_path != kind:
        raise WorkbookError(f"load_path={load_path!r} does not fit {source.name} (a {kind} file); pass the matching model file or load_path='auto'.")
    return kind


def model_channels(source: Path, load_path: str = "auto") -> int:
    """Input channel count of the model (from the ONNX graph or the TorchScript sidecar; else 3)."""
    from . import export

    source = Path(source)
    if source_kind(source, load_path) == "onnx":
        shape = export.onnx_io(source)["inputs"][0]["shape"]
        return int(shape[1]) if len(shape) == 4 and isinstance(shape[1], int) else 3
    side = export.read_sidecar(source)
    return int(side.get("channels", 3)) if side else 3


def load_source(rk: Any, source: Path, input_size: int, load_path: str = "auto") -> None:
    """Load an ONNX (`load_onnx`) or TorchScript (`load_pytorch` with input_size_list) source into rk,
    after checking the file, its opset / torch version and that input_size fits the model."""
    from . import export

    source = Path(source)
    if not source.is_file():
        raise WorkbookError(f"Model file {source} does not exist; run notebooks/10_export.ipynb or pass an existing .onnx/.torchscript path.")
    kind = source_kind(source, load_path)
    if kind == "onnx":
        export.check_onnx(source, input_size=input_size)
        rk.load_onnx(model=str(source))
    else:
        export.check_torchscript(source, input_size=input_size)
        channels = model_channels(source, load_path)
        rk.load_pytorch(model=str(source), input_size_list=[[1, channels, input_size, input_size]])


def check_dataset(dataset: Path | None, cfg: ConvertConfig) -> Path | None:
    """The calibration list must exist, be non-empty and name existing images (quantized builds only)."""
    if not cfg.do_quantization:
        return None
    if dataset is None:
        raise WorkbookError("do_quantization=True needs a calibration list; pass dataset= a text file with one image path per line.")
    dataset = Path(dataset)
    if not dataset.is_file():
        raise WorkbookError(f"Calibration list {dataset} does not exist; write one with helpers.data.write_calibration_list.")
    lines = [ln.strip() for ln in dataset.read_text().splitlines() if ln.strip()]
    if not lines:
        raise WorkbookError(f"Calibration list {dataset} is empty; put at least one image path in it (calib_images >= 1).")
    for ln in lines:
        for item in ln.split():
            p = Path(item) if Path(item).is_absolute() else dataset.parent / item  # the toolkit's own rule
            if not p.is_file():
                raise WorkbookError(f"Calibration list {dataset} names missing image {p}; fix the line or regenerate the list.")
    return dataset


@contextlib.contextmanager
def working_dir(path: Path) -> Iterator[None]:
    """Temporarily chdir into path (restored even on error)."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def build_on(rk: Any, source: Path, cfg: ConvertConfig, dataset: Path | None, input_size: int, load_path: str = "auto") -> None:
    """config + load + build on an open helpers.rknn toolkit; afterwards rk can export or init_runtime(target=None)."""
    source = Path(source)
    if not source.is_file():
        raise WorkbookError(f"Model file {source} does not exist; run notebooks/10_export.ipynb or pass an existing .onnx/.torchscript path.")
    cfg.validate(model_channels(source, load_path))
    dataset = check_dataset(dataset, cfg)
    # The toolkit drops check*.onnx debug files into the current directory: keep them beside the log.
    with working_dir(Path(getattr(rk, "log_path", ".")).parent):
        rk.config(**cfg.config_kwargs())
        load_source(rk, source.resolve(), input_size, load_path)
        rk.build(**cfg.build_kwargs(dataset.resolve() if dataset else None))


# ---------------------------------------------------------------- convert

_DTYPE_NOTE = re.compile(r"default (input|output) dtype of '([^']+)' is changed from '(\w+)' to '(\w+)'")


def dtype_notes(log_text: str) -> list[str]:
    """The toolkit's 'input/output dtype changed' announcements, one short line each."""
    seen: list[str] = []
    for kind, name, old, new in _DTYPE_NOTE.findall(_ANSI.sub("", log_text)):
        note = f"{kind} '{name}': {old} -> {new}"
        if note not in seen:
            seen.append(note)
    return seen


def convert(source: Path, cfg: ConvertConfig, dataset: Path | None, out_rknn: Path, log_path: Path,
            input_size: int, load_path: str = "auto") -> ConvertResult:
    """Build and export out_rknn (written under a temporary name, renamed on success), timed."""
    source, out_rknn, log_path = Path(source), Path(out_rknn), Path(log_path)
    out_rknn.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_rknn.with_name(out_rknn.stem + ".partial.rknn")
    tmp.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        with toolkit(log_path) as rk:
            build_on(rk, source, cfg, dataset, input_size, load_path)
            rk.export_rknn(str(tmp))
        seconds = time.perf_counter() - start
        tmp.replace(out_rknn)
    finally:
        tmp.unlink(missing_ok=True)
    notes = dtype_notes(log_path.read_text(errors="replace")) if log_path.exists() else []
    return ConvertResult(out_rknn, log_path, round(seconds, 3), source.stat().st_size, out_rknn.stat().st_size, notes)


def codegen(source: Path, cfg: ConvertConfig, dataset: Path | None, out_dir: Path, log_path: Path,
            input_size: int, load_path: str = "auto", image: Path | None = None) -> Path:
    """The toolkit's C++ demo project for this model (`rk.codegen`), written to out_dir."""
    out_dir = Path(out_dir)
    with toolkit(log_path) as rk:
        build_on(rk, source, cfg, dataset, input_size, load_path)
        tmp_rknn = out_dir.with_name(out_dir.name + ".rknn")
        rk.export_rknn(str(tmp_rknn))
        rk.codegen(output_path=str(out_dir), inputs=[str(image)] if image else None, overwrite=True)
    return out_dir


# ---------------------------------------------------------------- record

RECORD = "rknn/convert.json"


def write_record(run: Run, result: ConvertResult, cfg: ConvertConfig, source: Path, dataset: Path | None,
                 input_size: int, load_path: str) -> Path:
    """Write rknn/convert.json atomically."""
    data = {
        "source": str(Path(source).resolve()),
        "load_path": source_kind(Path(source), load_path),
        "input_size": int(input_size),
        "dataset": str(Path(dataset).resolve()) if dataset else None,
        "config": cfg.to_dict(),
        "rknn_path": str(Path(result.rknn_path).resolve()),
        "seconds": result.seconds,
        "source_bytes": result.source_bytes,
        "rknn_bytes": result.rknn_bytes,
        "dtype_notes": result.dtype_notes,
        "toolkit_version": toolkit_version(),
    }
    path = run.rknn / "convert.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
    return path


def read_record(run: Run) -> ConvertRecord:
    """Read rknn/convert.json (or say to run notebook 20 first)."""
    path = run.need(RECORD, "20_convert.ipynb")
    d = json.loads(path.read_text())
    return ConvertRecord(
        source=Path(d["source"]), load_path=d["load_path"], input_size=int(d["input_size"]),
        dataset=Path(d["dataset"]) if d.get("dataset") else None, config=ConvertConfig.from_dict(d["config"]),
        rknn_path=Path(d["rknn_path"]), seconds=float(d["seconds"]), source_bytes=int(d["source_bytes"]),
        rknn_bytes=int(d["rknn_bytes"]), dtype_notes=list(d.get("dtype_notes", [])), toolkit_version=d.get("toolkit_version", ""),
    )


def rebuild(rk: Any, record: ConvertRecord, **overrides: Any) -> None:
    """Rebuild the recorded model on an open toolkit (e.g. for the simulator); overrides change config
    options (rknn_batch_size=8, quantized_algorithm='mmse', ...)."""
    cfg = ConvertConfig.from_dict({**record.config.to_dict(), **overrides})
    build_on(rk, record.source, cfg, record.dataset, record.input_size, record.load_path)
