"""ONNX / TorchScript -> .rknn: a validated config, the two load paths, build, atomic export, and a
record (rknn/convert.json) from which later notebooks rebuild the very same model in the simulator.

The simulator cannot run a `.rknn` loaded with `load_rknn`; it needs the model built from its source
in the same process. `build_on` is that one sequence (config -> load -> build), shared by
`convert` (which then exports) and by every notebook that needs a simulator-ready toolkit.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import WorkbookError, strip_ansi
from .paths import Run, write_json_atomic
from .rknn import toolkit, toolkit_version

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


# One line per option, shown as tooltips in notebook 20's form and in its options table.
OPTION_HELP: dict[str, str] = {
    "load_path": "onnx: load_onnx(model/model.onnx); pytorch: load_pytorch(model/model.torchscript, input_size_list).",
    "calib_images": "How many train images calibrate the quantization (normal: 20-100 is typical).",
    "mean_values": "Per-channel mean subtracted on the NPU before the model (0-255 scale); must match training.",
    "std_values": "Per-channel divisor applied on the NPU after the mean (0-255 scale); ultralytics: 255.",
    "target_platform": "Rockchip chip the .rknn is built for; it runs only on that chip.",
    "quantized_dtype": "w8a8 = INT8 weights and activations (1.x: asymmetric_quantized-8); w8a16/w16a16i keep more bits.",
    "quantized_algorithm": "normal: min/max, fast; mmse: searches clipping ranges, slow; kl_divergence: for uneven distributions.",
    "quantized_method": "channel: one scale per output channel (usually better); layer: one scale per tensor.",
    "optimization_level": "Graph optimisation level 0-3; lower it only to debug accuracy problems caused by fusion.",
    "float_dtype": "Type of the layers that are not quantized (float16 is the only one the NPU runs).",
    "single_core_mode": "rk3588 only: build for one NPU core (smaller model, no multi-core split).",
    "compress_weight": "Compress weights to shrink the .rknn (slightly slower loading).",
    "model_pruning": "Remove weights that do not affect the output (lossless pruning).",
    "dynamic_input": "None, or a list of input-shape sets the model must accept, e.g. [[[1,3,224,224]],[[1,3,160,160]]].",
    "op_target": "None, or {op name: 'cpu' | 'npu'} to force where specific ops run.",
    "custom_string": "Free text stored in the .rknn (e.g. a version tag), readable on the board.",
    "quant_img_RGB2BGR": "Swap R and B of the calibration images only (for models trained on BGR); not stored in the model.",
    "do_quantization": "True: INT8 (needs the calibration list); False: a float16 model.",
    "rknn_batch_size": "None = batch 1; N = the model takes N images per call (faster simulator/board throughput).",
    "codegen": "Also write the toolkit's C++ demo project for the board (rknn/cpp_demo/).",
}


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


def source_for(run: Run, load_path: str) -> Path:
    """The exported file notebook 10 wrote for a load path: model.onnx or model.torchscript."""
    if load_path == "onnx":
        return run.need("model/model.onnx", "10_export.ipynb")
    if load_path == "pytorch":
        ts = run.model / "model.torchscript"
        if not ts.exists() and (run.model / "model.onnx").exists():
            raise WorkbookError(f"{ts} does not exist because notebook 10 was given an ONNX model; use load_path='onnx' (or give notebook 10 a .pt).")
        return run.need("model/model.torchscript", "10_export.ipynb")
    raise WorkbookError(f"load_path={load_path!r} is unknown; use 'onnx' (load_onnx) or 'pytorch' (load_pytorch with TorchScript).")


def options_table(cfg: ConvertConfig):
    """The config as a DataFrame: option, value, what it does."""
    import pandas as pd

    return pd.DataFrame([{"option": k, "value": repr(v), "meaning": OPTION_HELP.get(k, "")} for k, v in cfg.to_dict().items()]).set_index("option")


def load_source(rk: Any, source: Path, input_size: int, load_path: str = "auto") -> None:
    """Load an ONNX (`load_onnx`) or TorchScript (`load_pytorch` with input_size_list) source into rk,
    after checking the file, its opset / torch version and that input_size fits the model."""
    from . import export

    source = Path(source)
    if not source.is_file():
        raise WorkbookError(f"Model file {source} does not exist; run notebooks/10_export.ipynb or pass an existing .onnx/.torchscript path.")
    kind = source_kind(source, load_path)
    if kind == "onnx":
        inp = export.check_onnx(source, input_size=input_size)["inputs"][0]
        if all(isinstance(d, int) and d > 0 for d in inp["shape"]):
            rk.load_onnx(model=str(source))
        else:  # dynamic dims (e.g. an export with dynamic=True): fix them to one image of input_size
            channels = inp["shape"][1] if isinstance(inp["shape"][1], int) and inp["shape"][1] > 0 else 3
            rk.load_onnx(model=str(source), inputs=[inp["name"]], input_size_list=[[1, channels, input_size, input_size]])
    else:
        export.check_torchscript(source, input_size=input_size)
        channels = model_channels(source, load_path)
        rk.load_pytorch(model=str(source), input_size_list=[[1, channels, input_size, input_size]])
    rk.input_channels = model_channels(source, load_path)  # read by backends fed from this toolkit (1 = grayscale)


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


def build_on(rk: Any, source: Path, cfg: ConvertConfig, dataset: Path | None, input_size: int, load_path: str = "auto") -> None:
    """config + load + build on an open helpers.rknn toolkit; afterwards rk can export or init_runtime(target=None)."""
    source = Path(source)
    if not source.is_file():
        raise WorkbookError(f"Model file {source} does not exist; run notebooks/10_export.ipynb or pass an existing .onnx/.torchscript path.")
    cfg.validate(model_channels(source, load_path))
    dataset = check_dataset(dataset, cfg)
    # Absolute paths: helpers.rknn runs each call inside a work folder (the toolkit drops files in the CWD).
    rk.config(**cfg.config_kwargs())
    load_source(rk, source.resolve(), input_size, load_path)
    rk.build(**cfg.build_kwargs(dataset.resolve() if dataset else None))


# ---------------------------------------------------------------- convert

_DTYPE_NOTE = re.compile(r"default (input|output) dtype of '([^']+)' is changed from '(\w+)' to '(\w+)'")


def dtype_notes(log_text: str) -> list[str]:
    """The toolkit's 'input/output dtype changed' announcements, one short line each."""
    seen: list[str] = []
    for kind, name, old, new in _DTYPE_NOTE.findall(strip_ansi(log_text)):
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
    import shutil

    out_dir = Path(out_dir).resolve()
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with toolkit(log_path) as rk:
            build_on(rk, source, cfg, dataset, input_size, load_path)
            rk.export_rknn(str(staging / "model.rknn"))  # the demo's run.sh names the exported file
            rk.codegen(output_path=str(staging / "demo"), inputs=[str(Path(image).resolve())] if image else None, overwrite=True)
        (staging / "model.rknn").replace(staging / "demo" / "model.rknn")
        shutil.rmtree(out_dir, ignore_errors=True)
        (staging / "demo").rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def size_table(record: ConvertRecord):
    """Source model vs .rknn file sizes."""
    import pandas as pd

    kind = "ONNX" if record.load_path == "onnx" else "TorchScript"
    rows = [{"file": f"{kind} ({record.source.name})", "MB": record.source_bytes / 1e6},
            {"file": f"RKNN ({record.rknn_path.name})", "MB": record.rknn_bytes / 1e6}]
    df = pd.DataFrame(rows).set_index("file").round(2)
    df["vs source"] = (df["MB"] / df["MB"].iloc[0]).round(2)
    return df


def dtype_callout(record: ConvertRecord) -> str:
    """Markdown callout about the input/output dtype change the toolkit announced during build."""
    if not record.dtype_notes:
        return "> **Input/output types.** The toolkit announced no dtype change: the model's inputs and outputs keep their float types."
    notes = "; ".join(f"`{n}`" for n in record.dtype_notes)
    return (f"> **Input/output types changed for the board API.** The toolkit announced: {notes}. "
            "The Python APIs (toolkit, RKNNLite) convert for you, but with the C runtime API you pass the "
            "quantized type yourself (or ask for float and let the runtime convert, which costs time). "
            "The full message is in `rknn/build.log`.")


# ---------------------------------------------------------------- quantization demo

def pick_weight(onnx_path: Path, min_channels: int = 8) -> tuple[str, "np.ndarray"]:
    """A real 4-D conv weight of the model whose output channels have the most uneven ranges
    (where per-channel quantization shows its value)."""
    import numpy as np
    from onnx import numpy_helper

    from .export import load_onnx_model

    best, best_spread = None, -1.0
    for init in load_onnx_model(onnx_path).graph.initializer:
        if len(init.dims) == 4 and init.dims[0] >= min_channels and int(np.prod(init.dims[1:])) >= 9:
            w = numpy_helper.to_array(init).astype(np.float32)
            ranges = np.abs(w).reshape(len(w), -1).max(axis=1)
            spread = float(ranges.max() / max(ranges.min(), 1e-12))
            if spread > best_spread:
                best, best_spread = (init.name, w), spread
    if best is None:
        raise WorkbookError(f"ONNX file {onnx_path} has no 4-D conv weight with >= {min_channels} output channels to demonstrate quantization on.")
    return best


def quantize(x: "np.ndarray", bits: int = 8, symmetric: bool = True, per_channel: bool = False):
    """Linear quantization q = clip(round(x / scale) + zero_point); returns (dequantized x, scales, zero points)."""
    import numpy as np

    axes = tuple(range(1, x.ndim)) if per_channel else None
    lo = np.minimum(x.min(axis=axes, keepdims=per_channel), 0.0)
    hi = np.maximum(x.max(axis=axes, keepdims=per_channel), 0.0)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = np.maximum(np.maximum(-lo, hi) / qmax, 1e-12)
        zero = np.zeros_like(scale)
        qmin = -qmax
    else:
        qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        scale = np.maximum((hi - lo) / (qmax - qmin), 1e-12)
        zero = np.round(qmin - lo / scale)
    q = np.clip(np.round(x / scale) + zero, qmin, qmax)
    return (q - zero) * scale, np.ravel(scale), np.ravel(zero)


def quantization_demo(weight: "np.ndarray", bits: int = 8):
    """Error of the four int8 schemes (symmetric/asymmetric x per-tensor/per-channel) on one tensor."""
    import numpy as np
    import pandas as pd

    rows = []
    for per_channel in (False, True):
        for symmetric in (True, False):
            deq, scale, zero = quantize(weight, bits, symmetric, per_channel)
            err = deq - weight
            sqnr = 10 * np.log10((weight ** 2).mean() / max((err ** 2).mean(), 1e-30))
            rows.append({
                "granularity": "per-channel" if per_channel else "per-tensor (layer)",
                "scheme": "symmetric" if symmetric else "asymmetric",
                "scales": len(scale),
                "scale (first)": float(scale[0]),
                "zero point (first)": int(zero[0]),
                "max |error|": float(np.abs(err).max()),
                "mean |error|": float(np.abs(err).mean()),
                "SQNR dB": round(float(sqnr), 1),
            })
    return pd.DataFrame(rows)


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
    return write_json_atomic(run.rknn / "convert.json", data)


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
