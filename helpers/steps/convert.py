"""ONNX / TorchScript -> .rknn: a validated config (every RKNN.config option of 2.5.0 a user may need),
the two load paths, build, atomic export, and a record (rknn/convert.json) from which later notebooks
rebuild the very same model in the simulator.

The simulator cannot run a `.rknn` loaded with `load_rknn`; it needs the model built from its source
in the same process. `build_on` is that one sequence (config -> load -> build), shared by
`convert` (which then exports) and by every notebook that needs a simulator-ready toolkit. A build
that fails in a graph rule is repeated without it when the toolkit's log names it
(helpers.toolkit.session.RKNN); the record keeps those rules, so `rebuild` applies exactly the same ones.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from helpers.core.errors import WorkbookError, strip_ansi
from helpers.core.paths import Run, write_json_atomic
from helpers.toolkit.session import RKNN, DisabledRule, toolkit_version

TARGET_PLATFORMS = ["rk3588", "rk3576", "rk3568", "rk3566", "rk3562", "rv1103", "rv1106", "rv1103b", "rv1106b", "rk2118", "rv1126b"]
# The dtypes rknn-toolkit2 2.5.0 accepts (its 'w16a16i' is gone: config refuses it).
QUANTIZED_DTYPES = ["w8a8", "w8a16", "w16a16i_dfp", "w4a16"]
# Which chips rknn-toolkit2 2.5.0 accepts each dtype for (measured: its config refuses the others with
# "The quantized_dtype = '...' not support in '...'"; tests/test_convert.py checks this table against it).
DTYPE_PLATFORMS_2_5_0: dict[str, list[str]] = {
    "w8a8": TARGET_PLATFORMS,
    "w8a16": ["rk3562"],
    "w16a16i_dfp": TARGET_PLATFORMS,
    "w4a16": ["rk3576", "rv1126b"],
}
SPARSE_PLATFORMS_2_5_0 = ["rk3576", "rv1103b", "rv1106b", "rk2118", "rv1126b"]  # sparse_infer=True, same source
# rknn-toolkit2 1.x (and toolkit 1) names -> the 2.x name that does the same thing.
LEGACY_DTYPES = {
    "asymmetric_quantized-8": "w8a8",
    "asymmetric_affine-u8": "w8a8",
    "dynamic_fixed_point-i8": "w8a8",
    "asymmetric_quantized-16": "w16a16i_dfp",
    "dynamic_fixed_point-i16": "w16a16i_dfp",
    "w16a16i": "w16a16i_dfp",
}
QUANTIZED_ALGORITHMS = ["normal", "mmse", "kl_divergence", "gdq"]
QUANTIZED_METHODS = ["channel", "layer", *[f"group{n}" for n in range(32, 257, 32)]]
FLOAT_DTYPES = ["float16"]
LOAD_PATHS = ["auto", "onnx", "pytorch"]
ONNX_SUFFIXES = {".onnx"}
TORCHSCRIPT_SUFFIXES = {".torchscript", ".pt", ".pth"}

# Options of RKNN.config in 2.5.0 that the workbook leaves out, and why (shown in notebook 20).
LEFT_OUT: dict[str, str] = {
    "inputs_yuv_fmt": "adds YUV->RGB conversion in front of the model for camera frames; the workbook feeds RGB images everywhere, so its figures would no longer apply.",
    "quantized_hybrid_level": "undocumented in 2.5.0; mixed precision is done explicitly in notebook 60 (hybrid_quantization_step1/2) or with auto_hybrid here.",
    "quantize_weight": "only for do_quantization=False and marked 'about to be deprecated' by the toolkit; use compress_weight.",
    "memory_plan_strategy, compute_order, compiler_control_file": "undocumented in 2.5.0 (no list of values); the defaults BestFit / WidthFirst are what every build here uses.",
}


# What each option does: the meaning column of notebook 20's options table (shown in full).
OPTION_HELP: dict[str, str] = {
    "load_path": "onnx: load_onnx(model/model.onnx); pytorch: load_pytorch(model/model.torchscript, input_size_list).",
    "calib_images": "How many train images calibrate the quantization (normal: 20-100 is typical).",
    "auto_disable_rules": "When build fails and the toolkit's log says 'You can add disable_rules=[...]', build again with those rules off (recorded in convert.json); False: stop and name the rule.",
    "disable_rules": "Graph optimisation rules the toolkit must skip, e.g. ['fuse_exmatmul_add_mul_exsoftmax13_exmatmul_to_sdpa'] when build fails inside that rule (the name comes from the toolkit's hint in rknn/build.log).",
    "mean_values": "Per-channel mean subtracted on the NPU before the model (0-255 scale); must match training.",
    "std_values": "Per-channel divisor applied on the NPU after the mean (0-255 scale); ultralytics: 255.",
    "target_platform": "Rockchip chip the .rknn is built for; it runs only on that chip.",
    "quantized_dtype": "w8a8 = INT8 weights and activations (1.x: asymmetric_quantized-8); w8a16 = INT8 weights, 16-bit activations; w16a16i_dfp = 16-bit dynamic fixed point; w4a16 = 4-bit weights. Not every chip has every dtype.",
    "quantized_algorithm": "normal: min/max ranges, fast (20-100 images); mmse: searches clipping ranges that minimise the squared error, slow (20-50 images); kl_divergence: between the two, for uneven distributions; gdq: gradient-based, for w4a16.",
    "quantized_method": "channel: one scale per output channel (usually better); layer: one scale per tensor; group32...group256: one scale per group of that many weights (w4a16).",
    "optimization_level": "Graph optimisation level 0-3; lower it only to debug accuracy problems caused by fusion.",
    "float_dtype": "Type of the layers that are not quantized (float16 is the only one the NPU runs).",
    "single_core_mode": "rk3588 only: build for one NPU core (smaller model, no multi-core split).",
    "compress_weight": "Compress weights to shrink the .rknn (slightly slower loading).",
    "model_pruning": "Remove weights that do not affect the output (lossless pruning).",
    "remove_weight": "Write a 'slave' .rknn without conv weights that shares them with a full model loaded on the board; only for multi-model deployments.",
    "remove_reshape": "Drop Reshape ops at the model's inputs and outputs (faster), so the board code must feed and read the raw tensor layout.",
    "sparse_infer": "Use the NPU's sparse weights on a model already pruned to 2:4 sparsity (rk3576, rv1103b, rv1106b, rk2118, rv1126b); no gain on a dense model.",
    "enable_flash_attention": "Fuse attention blocks into the NPU's flash-attention kernel (transformers; rk3576/rk3588).",
    "mini_rknn": "Build for the 'mini' runtime of the small chips (rv1103/rv1106 family): smaller file, fewer features.",
    "dynamic_input": "None, or a list of input-shape sets the model must accept, e.g. [[[1,3,224,224]],[[1,3,160,160]]].",
    "op_target": "None, or {op name: 'cpu' | 'npu'} to force where specific ops run.",
    "custom_string": "Free text stored in the .rknn (e.g. a version tag), readable on the board.",
    "quant_img_RGB2BGR": "Swap R and B of the calibration images only (for models trained on BGR); not stored in the model.",
    "do_quantization": "True: INT8 (needs the calibration list); False: a float16 model.",
    "rknn_batch_size": "None = batch 1; N = the model takes N images per call (faster simulator/board throughput).",
    "auto_hybrid": "build(auto_hybrid=True): the toolkit keeps layers whose quantized output drifts past the thresholds below in float16 (automatic mixed precision).",
    "auto_hybrid_cos_thresh": "With auto_hybrid: a layer whose cosine to float falls below this is kept in float16 (toolkit default 0.98).",
    "auto_hybrid_euc_thresh": "With auto_hybrid: a layer whose euclidean distance to float exceeds this is kept in float16 (None = not used).",
}

# One line each for two words the options and callouts use.
PASS_THROUGH = ("**pass-through**: the board's runtime hands your buffer to the NPU as is, with no type or layout "
                "conversion, so it must already be in the model's quantized type and layout.")
C_RUNTIME_API = ("**C runtime API**: `librknnrt`'s C functions (`rknn_init`, `rknn_inputs_set`, `rknn_run`, "
                 "`rknn_outputs_get`) that a C/C++ program on the board calls instead of Python's RKNNLite.")


def known_rules() -> set[str]:
    """The graph rule names of the installed toolkit (2.5.0 keeps them in rknn.api.graph_optimizer's
    convert_rules / fuse_rules / hardware_rules tables); empty when they cannot be read."""
    try:
        from rknn.api import graph_optimizer as g
    except Exception:  # another toolkit layout: skip the check, the toolkit ignores unknown names
        return set()
    return {name for table in ("convert_rules", "fuse_rules", "hardware_rules") for name in getattr(g, table, {}) or {}}


def dtype_platforms(dtype: str) -> list[str] | None:
    """The chips the installed toolkit builds `dtype` for, when measured for its version (else None)."""
    return DTYPE_PLATFORMS_2_5_0.get(dtype) if toolkit_version() == "2.5.0" else None


@dataclass
class ConvertConfig:
    """Every `rk.config` option a user may need plus the `build` options, validated."""

    mean_values: list[float]
    std_values: list[float]
    disable_rules: list[str] = field(default_factory=list)
    target_platform: str = "rk3588"
    quantized_dtype: str = "w8a8"
    quantized_algorithm: str = "normal"
    quantized_method: str = "channel"
    optimization_level: int = 3
    float_dtype: str = "float16"
    single_core_mode: bool = False
    compress_weight: bool = False
    model_pruning: bool = False
    remove_weight: bool = False
    remove_reshape: bool = False
    sparse_infer: bool = False
    enable_flash_attention: bool = False
    mini_rknn: bool = False
    dynamic_input: list | None = None
    op_target: dict | None = None
    custom_string: str | None = None
    quant_img_RGB2BGR: bool = False
    do_quantization: bool = True
    rknn_batch_size: int | None = None
    auto_hybrid: bool = False
    auto_hybrid_cos_thresh: float = 0.98
    auto_hybrid_euc_thresh: float | None = None

    def validate(self, channels: int = 3) -> None:
        """Raise WorkbookError (one sentence naming the option and the fix) for any bad value."""
        self.validate_rules()
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
        self.validate_quantization()
        if self.optimization_level not in (0, 1, 2, 3) or isinstance(self.optimization_level, bool):
            raise WorkbookError(f"optimization_level={self.optimization_level!r} is out of range; use 0, 1, 2 or 3 (3 = all optimizations).")
        if self.float_dtype not in FLOAT_DTYPES:
            raise WorkbookError(f"float_dtype={self.float_dtype!r} is not supported; use 'float16' (the only float type the NPU runs).")
        for flag in ("single_core_mode", "compress_weight", "model_pruning", "remove_weight", "remove_reshape", "sparse_infer",
                     "enable_flash_attention", "mini_rknn", "quant_img_RGB2BGR", "do_quantization", "auto_hybrid"):
            if not isinstance(getattr(self, flag), bool):
                raise WorkbookError(f"{flag}={getattr(self, flag)!r} must be True or False.")
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

    def validate_rules(self) -> None:
        """disable_rules must be a list of rule names the installed toolkit knows (it silently ignores others)."""
        import difflib

        rules = self.disable_rules
        if not isinstance(rules, (list, tuple)) or not all(isinstance(r, str) and r for r in rules):
            raise WorkbookError(f"disable_rules={rules!r} must be a list of rule names, e.g. ['fuse_exmatmul_add_mul_exsoftmax13_exmatmul_to_sdpa'] ([] = none).")
        known = known_rules() if rules else set()  # importing the toolkit's rule tables costs seconds: only when needed
        for rule in rules:
            if known and rule not in known:
                close = difflib.get_close_matches(rule, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise WorkbookError(
                    f"disable_rules names {rule!r}, a rule rknn-toolkit2 {toolkit_version()} does not have{hint}; "
                    "copy the name from the toolkit's hint 'You can add disable_rules=[...]' in rknn/build.log."
                )

    def validate_quantization(self) -> None:
        """dtype, algorithm, method and the auto-hybrid thresholds; the dtype must exist for the chip."""
        if self.quantized_dtype in LEGACY_DTYPES:
            raise WorkbookError(
                f"quantized_dtype={self.quantized_dtype!r} is not an rknn-toolkit2 2.5 name; write quantized_dtype={LEGACY_DTYPES[self.quantized_dtype]!r}."
            )
        if self.quantized_dtype not in QUANTIZED_DTYPES:
            raise WorkbookError(f"quantized_dtype={self.quantized_dtype!r} is unknown; use one of {', '.join(QUANTIZED_DTYPES)}.")
        chips = dtype_platforms(self.quantized_dtype)
        if chips is not None and self.target_platform in TARGET_PLATFORMS and self.target_platform not in chips:
            raise WorkbookError(
                f"quantized_dtype={self.quantized_dtype!r} is not available on {self.target_platform} (rknn-toolkit2 {toolkit_version()} "
                f"builds it only for {', '.join(chips)}); use quantized_dtype='w8a8' or one of those chips."
            )
        if self.quantized_algorithm not in QUANTIZED_ALGORITHMS:
            raise WorkbookError(f"quantized_algorithm={self.quantized_algorithm!r} is unknown; use one of {', '.join(QUANTIZED_ALGORITHMS)}.")
        if self.quantized_method not in QUANTIZED_METHODS:
            raise WorkbookError(f"quantized_method={self.quantized_method!r} is unknown; use channel, layer or group32, group64, ... group256.")
        if self.quantized_method.startswith("group") and self.quantized_dtype != "w4a16":
            raise WorkbookError(f"quantized_method={self.quantized_method!r} works only with quantized_dtype='w4a16'; use 'channel' or 'layer' with {self.quantized_dtype}.")
        if self.quantized_algorithm == "gdq" and self.quantized_dtype not in ("w4a16", "w8a16"):
            raise WorkbookError(f"quantized_algorithm='gdq' works only with quantized_dtype 'w4a16' or 'w8a16'; use normal, mmse or kl_divergence with {self.quantized_dtype}.")
        if self.sparse_infer and toolkit_version() == "2.5.0" and self.target_platform not in SPARSE_PLATFORMS_2_5_0:
            raise WorkbookError(f"sparse_infer=True is not available on {self.target_platform} (rknn-toolkit2 2.5.0 has it for "
                                f"{', '.join(SPARSE_PLATFORMS_2_5_0)}); set sparse_infer=False.")
        cos = self.auto_hybrid_cos_thresh
        if isinstance(cos, bool) or not isinstance(cos, (int, float)) or not 0 < cos <= 1:
            raise WorkbookError(f"auto_hybrid_cos_thresh={cos!r} must be a number in (0, 1], e.g. 0.98 (the toolkit's default).")
        euc = self.auto_hybrid_euc_thresh
        if euc is not None and (isinstance(euc, bool) or not isinstance(euc, (int, float)) or euc <= 0):
            raise WorkbookError(f"auto_hybrid_euc_thresh={euc!r} must be None or a positive number.")
        if self.auto_hybrid and not self.do_quantization:
            raise WorkbookError("auto_hybrid=True needs do_quantization=True (it keeps some quantized layers in float16); set one of them differently.")

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
        for flag in ("remove_weight", "remove_reshape", "sparse_infer", "enable_flash_attention", "mini_rknn"):
            if getattr(self, flag):  # off is the toolkit's default: keep the call short
                kw[flag] = True
        if self.auto_hybrid:
            kw["auto_hybrid_cos_thresh"] = float(self.auto_hybrid_cos_thresh)
            if self.auto_hybrid_euc_thresh is not None:
                kw["auto_hybrid_euc_thresh"] = float(self.auto_hybrid_euc_thresh)
        for opt in ("dynamic_input", "op_target", "custom_string"):
            if getattr(self, opt) is not None:
                kw[opt] = getattr(self, opt)
        if self.disable_rules:
            kw["disable_rules"] = list(self.disable_rules)
        return kw

    def build_kwargs(self, dataset: Path | None) -> dict[str, Any]:
        """Keyword arguments for `rk.build(...)`."""
        return {
            "do_quantization": self.do_quantization,
            "dataset": str(dataset) if (dataset and self.do_quantization) else None,
            "rknn_batch_size": self.rknn_batch_size,
            **({"auto_hybrid": True} if self.auto_hybrid else {}),
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
    auto_disabled: list[DisabledRule] = field(default_factory=list)

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
    auto_disabled: list[DisabledRule] = field(default_factory=list)


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
    from helpers.steps.export import exporter

    source = Path(source)
    if source_kind(source, load_path) == "onnx":
        shape = exporter.onnx_io(source)["inputs"][0]["shape"]
        return int(shape[1]) if len(shape) == 4 and isinstance(shape[1], int) else 3
    side = exporter.read_sidecar(source)
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


def options_table(cfg: ConvertConfig, extra: dict[str, Any] | None = None):
    """The config as a DataFrame: option, value, what it does (extra: workbook parameters shown first)."""
    import pandas as pd

    rows = {**(extra or {}), **cfg.to_dict()}
    return pd.DataFrame([{"option": k, "value": repr(v), "meaning": OPTION_HELP.get(k, "")} for k, v in rows.items()]).set_index("option")


def options_markdown(cfg: ConvertConfig, extra: dict[str, Any] | None = None) -> str:
    """The options table as Markdown, every meaning in full (HTML reports do not cut Markdown cells)."""
    esc = lambda text: str(text).replace("|", "\\|")  # noqa: E731
    lines = ["| option | value | meaning |", "|---|---|---|"]
    for name, row in options_table(cfg, extra).iterrows():
        lines.append(f"| `{name}` | `{esc(row['value'])}` | {esc(row['meaning'])} |")
    left = "\n".join(f"- `{k}`: {v}" for k, v in LEFT_OUT.items())
    return "\n".join(lines) + f"\n\n**Options of `RKNN.config` left out on purpose:**\n{left}"


def conversion_step(run: Run, cfg: ConvertConfig, params: dict[str, Any], source: Path, calibration: Path | None):
    """The cache step of notebook 20; when it must recompute, its record, rknn/convert.json and the old
    model.rknn are removed first (an interrupted build can never look finished)."""
    from helpers.core.step_cache import Step

    key = cfg.to_dict() | {k: params[k] for k in ("load_path", "imgsz", "auto_disable_rules") if k in params}
    step = Step(run, "20_convert", key, inputs=[p for p in (source, calibration) if p is not None],
                outputs=[run.rknn / "model.rknn", run.root / RECORD])
    if not step.check():
        start_record(run)
    return step


def raw_calls(record: ConvertRecord) -> str:
    """The plain rknn-toolkit2 script of this conversion, with this run's values, ready to copy."""
    from helpers import listing

    load = load_arguments(record.source, record.input_size, record.load_path)  # e.g. input_size_list for dynamic dims
    lines = [listing.call(f"rknn.load_{load.kind}", **load.kwargs) if ln.startswith("rknn.load_") else ln
             for ln in listing.convert_calls(record)]
    return listing.code(*lines, listing.call("rknn.export_rknn", record.rknn_path), "rknn.release()")


@dataclass
class LoadCall:
    """The load call for a model file: kind 'onnx' -> rk.load_onnx(**kwargs), 'pytorch' -> rk.load_pytorch(**kwargs)."""

    kind: str
    kwargs: dict[str, Any]


def load_arguments(source: Path, input_size: int, load_path: str = "auto") -> LoadCall:
    """Check the model file (exists, opset / torch version, input size fits) and return its load call:
    load_onnx(model=...) (with inputs/input_size_list when dims are dynamic) or load_pytorch(model=, input_size_list=)."""
    from helpers.steps.export import exporter

    source = Path(source).resolve()  # absolute: the toolkit runs inside a work folder
    if not source.is_file():
        raise WorkbookError(f"Model file {source} does not exist; run notebooks/10_export.ipynb or pass an existing .onnx/.torchscript path.")
    kind = source_kind(source, load_path)
    if kind == "onnx":
        inp = exporter.check_onnx(source, input_size=input_size)["inputs"][0]
        if all(isinstance(d, int) and d > 0 for d in inp["shape"]):
            return LoadCall("onnx", {"model": str(source)})
        # dynamic dims (e.g. an export with dynamic=True): fix them to one image of input_size
        channels = inp["shape"][1] if isinstance(inp["shape"][1], int) and inp["shape"][1] > 0 else 3
        return LoadCall("onnx", {"model": str(source), "inputs": [inp["name"]], "input_size_list": [[1, channels, input_size, input_size]]})
    exporter.check_torchscript(source, input_size=input_size)
    channels = model_channels(source, load_path)
    return LoadCall("pytorch", {"model": str(source), "input_size_list": [[1, channels, input_size, input_size]]})


def load_source(rk: Any, source: Path, input_size: int, load_path: str = "auto") -> None:
    """Load an ONNX (`load_onnx`) or TorchScript (`load_pytorch` with input_size_list) source into rk,
    after checking the file, its opset / torch version and that input_size fits the model."""
    call = load_arguments(source, input_size, load_path)
    if call.kind == "onnx":
        rk.load_onnx(**call.kwargs)
    else:
        rk.load_pytorch(**call.kwargs)
    rk.input_channels = model_channels(source, load_path)  # read by backends fed from this toolkit (1 = grayscale)


def check_dataset(dataset: Path | None, cfg: ConvertConfig) -> Path | None:
    """The calibration list must exist, be non-empty and name existing images (quantized builds only)."""
    if not cfg.do_quantization:
        return None
    if dataset is None:
        raise WorkbookError("do_quantization=True needs a calibration list; pass dataset= a text file with one image path per line.")
    dataset = Path(dataset)
    if not dataset.is_file():
        raise WorkbookError(f"Calibration list {dataset} does not exist; write one with helpers.tasks.data.write_calibration_list.")
    lines = [ln.strip() for ln in dataset.read_text().splitlines() if ln.strip()]
    if not lines:
        raise WorkbookError(f"Calibration list {dataset} is empty; put at least one image path in it (calib_images >= 1).")
    for ln in lines:
        whole = Path(ln) if Path(ln).is_absolute() else dataset.parent / ln
        if len(ln.split()) > 1 and whole.is_file():
            raise WorkbookError(f"Calibration list {dataset} names {whole}, whose path has a space the toolkit splits on; write "
                                "the list with helpers.tasks.data.write_calibration_list (it links such images under plain names).")
        for item in ln.split():
            p = Path(item) if Path(item).is_absolute() else dataset.parent / item  # the toolkit's own rule
            if not p.is_file():
                raise WorkbookError(f"Calibration list {dataset} names missing image {p}; fix the line or regenerate the list.")
    return dataset


def build_on(rk: Any, source: Path, cfg: ConvertConfig, dataset: Path | None, input_size: int, load_path: str = "auto") -> None:
    """config + load + build on an open helpers.toolkit.session toolkit (helpers.toolkit.session.RKNN retries a build the toolkit
    attributes to a graph rule); afterwards rk can export or init_runtime(target=None)."""
    source = Path(source)
    if not source.is_file():
        raise WorkbookError(f"Model file {source} does not exist; run notebooks/10_export.ipynb or pass an existing .onnx/.torchscript path.")
    cfg.validate(model_channels(source, load_path))
    dataset = check_dataset(dataset, cfg)
    # Absolute paths: helpers.toolkit.session runs each call inside a work folder (the toolkit drops files in the CWD).
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
            input_size: int, load_path: str = "auto", auto_disable_rules: bool = True) -> ConvertResult:
    """Build and export out_rknn (written under a temporary name, renamed on success), timed; a build
    the toolkit attributes to a graph rule is retried without it (auto_disable_rules)."""
    source, out_rknn, log_path = Path(source), Path(out_rknn), Path(log_path)
    out_rknn.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_rknn.with_name(out_rknn.stem + ".partial.rknn")
    tmp.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        with RKNN(log_path, auto_disable_rules=auto_disable_rules) as rk:
            build_on(rk, source, cfg, dataset, input_size, load_path)
            rk.export_rknn(str(tmp))
        seconds = time.perf_counter() - start
        tmp.replace(out_rknn)
    finally:
        tmp.unlink(missing_ok=True)
    return result_of(rk, out_rknn, source, seconds)


def result_of(rk: RKNN, rknn_path: Path, source: Path, seconds: float) -> ConvertResult:
    """The ConvertResult of a finished build on rk: sizes, the dtype notes of its log, rules disabled."""
    notes = dtype_notes(rk.log_path.read_text(errors="replace")) if rk.log_path.exists() else []
    return ConvertResult(Path(rknn_path), rk.log_path, round(seconds, 3), Path(source).stat().st_size, Path(rknn_path).stat().st_size,
                         notes, list(rk.auto_disabled))


def convert_isolated(source: str, config: dict, dataset: str | None, out_rknn: str, log_path: str, input_size: int,
                     load_path: str = "auto", auto_disable_rules: bool = True) -> dict[str, Any]:
    """`convert` with JSON arguments and result, for helpers.core.isolate.run_isolated (sweeps, matrix)."""
    res = convert(Path(source), ConvertConfig.from_dict(config), Path(dataset) if dataset else None, Path(out_rknn), Path(log_path),
                  int(input_size), load_path, auto_disable_rules)
    return {"rknn_path": str(res.rknn_path), "seconds": res.seconds, "rknn_bytes": res.rknn_bytes,
            "dtype_notes": res.dtype_notes, "auto_disabled": [asdict(d) for d in res.auto_disabled]}


def disabled_rules_note(auto_disabled: list[DisabledRule], given: list[str] | None = None) -> str:
    """Markdown: which graph rules were switched off and why (empty list: a sentence saying none)."""
    if not auto_disabled:
        extra = f" (disable_rules={list(given)!r} were given as parameters)" if given else ""
        return f"> **Graph rules.** The build needed no rule switched off automatically{extra}."
    rows = "\n".join(f"> - `{d.rule}`: build failed in it with `{d.reason}`" for d in auto_disabled)
    return ("> **Graph rules switched off automatically.** The build failed and the toolkit's log named the rule to skip "
            "(\"You can add disable_rules=[...] in rknn.config()\"), so the build was repeated without it:\n"
            f"{rows}\n>\n> They are recorded in `rknn/convert.json`, and every later rebuild (30, 40, 50, 60, sweeps) "
            "uses the same rules. Whether this cost accuracy shows in notebook 30's FP32 vs INT8 figures.")


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
    """Markdown callout about the input/output dtype change the toolkit announced during build, with
    one line each on the two terms it needs (C runtime API, pass-through)."""
    if not record.dtype_notes:
        return "> **Input/output types.** The toolkit announced no dtype change: the model's inputs and outputs keep their float types."
    notes = "; ".join(f"`{n}`" for n in record.dtype_notes)
    return (f"> **Input/output types changed for the board API.** The toolkit announced: {notes}. "
            "The Python APIs (toolkit, RKNNLite) convert for you, but with the C runtime API and pass-through "
            "you pass the quantized type yourself (without pass-through, ask for float and let the runtime convert, "
            "which costs time). The full message is in `rknn/build.log`.\n>\n"
            f"> - {C_RUNTIME_API}\n> - {PASS_THROUGH}")


# ---------------------------------------------------------------- quantization demo

def pick_weight(onnx_path: Path, min_channels: int = 8) -> tuple[str, "np.ndarray"]:
    """A real 4-D conv weight of the model whose output channels have the most uneven ranges
    (where per-channel quantization shows its value)."""
    import numpy as np
    from onnx import numpy_helper

    from helpers.steps.export.exporter import load_onnx_model

    best, best_spread = None, -1.0
    for init in load_onnx_model(onnx_path).graph.initializer:
        if len(init.dims) == 4 and init.dims[0] >= min_channels and int(np.prod(init.dims[1:])) >= 9:
            w = numpy_helper.to_array(init).astype(np.float32)
            ranges = np.abs(w).reshape(len(w), -1).max(axis=1)
            spread = float(ranges.max() / max(ranges.min(), 1e-12))
            if spread > best_spread:
                best, best_spread = (init.name, w), spread
    if best is None:
        raise WorkbookError(f"ONNX file {onnx_path} has no 4-D conv weight with >= {min_channels} output channels to demonstrate quantization on; skip this demo cell (the conversion does not need it).")
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


def _in_run(run: Run, path: Path | None) -> str | None:
    """A path as stored in a run artifact: relative to the run folder when inside it."""
    return None if path is None else run.relative(path)


def _from_run(run: Run, value: str | None) -> Path | None:
    """The inverse of _in_run: absolute paths as stored, relative ones below the run folder."""
    return run.resolve(value) if value else None


def start_record(run: Run) -> None:
    """A rebuild starts: remove rknn/convert.json and the old model.rknn first, so an interrupted or failed
    conversion (a full disk) never leaves a record it did not finish, nor a model that is no longer this run's."""
    (run.root / RECORD).unlink(missing_ok=True)
    (run.root / RECORD).with_name("model.rknn").unlink(missing_ok=True)


def write_record(run: Run, result: ConvertResult, cfg: ConvertConfig, source: Path, dataset: Path | None,
                 input_size: int, load_path: str) -> Path:
    """Write rknn/convert.json atomically (after the .rknn): the options in effect, including the graph
    rules switched off automatically, so rebuild() reproduces this model."""
    auto = [asdict(d) for d in result.auto_disabled]
    in_effect = list(cfg.disable_rules) + [d["rule"] for d in auto if d["rule"] not in cfg.disable_rules]
    data = {
        "toolkit_version": toolkit_version(),
        "source": _in_run(run, source),
        "load_path": source_kind(Path(source), load_path),
        "imgsz": int(input_size),
        "input_size": int(input_size),
        "dataset": _in_run(run, dataset),
        "config": {**cfg.to_dict(), "disable_rules": in_effect},
        "disable_rules_given": list(cfg.disable_rules),
        "auto_disabled_rules": auto,
        "rknn_path": _in_run(run, result.rknn_path),
        "seconds": result.seconds,
        "source_bytes": result.source_bytes,
        "rknn_bytes": result.rknn_bytes,
        "dtype_notes": result.dtype_notes,
    }
    return write_json_atomic(run.root / RECORD, data)


def read_record(run: Run) -> ConvertRecord:
    """Read rknn/convert.json (or say to run notebook 20 first)."""
    path = run.need(RECORD, "20_convert.ipynb")
    d = json.loads(path.read_text())
    return ConvertRecord(
        source=_from_run(run, d["source"]), load_path=d["load_path"], input_size=int(d.get("imgsz", d.get("input_size"))),
        dataset=_from_run(run, d.get("dataset")), config=ConvertConfig.from_dict(d["config"]),
        rknn_path=_from_run(run, d["rknn_path"]), seconds=float(d["seconds"]), source_bytes=int(d["source_bytes"]),
        rknn_bytes=int(d["rknn_bytes"]), dtype_notes=list(d.get("dtype_notes", [])), toolkit_version=d.get("toolkit_version", ""),
        auto_disabled=[DisabledRule(**r) for r in d.get("auto_disabled_rules", [])],
    )


def rebuild(rk: Any, record: ConvertRecord, **overrides: Any) -> None:
    """Rebuild the recorded model on an open toolkit (e.g. for the simulator); overrides change config
    options (rknn_batch_size=8, quantized_algorithm='mmse', ...)."""
    cfg = ConvertConfig.from_dict({**record.config.to_dict(), **overrides})
    build_on(rk, record.source, cfg, record.dataset, record.input_size, record.load_path)
