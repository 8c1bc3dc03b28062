"""The options of one conversion: the chips, dtypes, algorithms and methods rknn-toolkit2 2.5.0 accepts,
the options left out on purpose, and ConvertConfig (every RKNN.config option a user may need plus the build
options), validated before the toolkit sees them with one sentence naming the option and the fix.

What each option does is written once, in notebook 20's parameters cell (its comments are the form's tooltips
and the meaning column of the options table).
"""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from helpers.core.errors import WorkbookError
from helpers.core.versions import toolkit_version

TARGET_PLATFORMS = ["rk3588", "rk3576", "rk3568", "rk3566", "rk3562", "rv1103", "rv1106", "rv1103b", "rv1106b", "rk2118",
                    "rv1126b"]
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
    "inputs_yuv_fmt": "adds YUV->RGB conversion in front of the model for camera frames; the workbook feeds RGB images "
                      "everywhere, so its figures would no longer apply.",
    "quantized_hybrid_level": "undocumented in 2.5.0; mixed precision is done explicitly in notebook 60 "
                              "(hybrid_quantization_step1/2) or with auto_hybrid here.",
    "quantize_weight": "only for do_quantization=False and marked 'about to be deprecated' by the toolkit; use compress_weight.",
    "memory_plan_strategy, compute_order, compiler_control_file": "undocumented in 2.5.0 (no list of values); the defaults "
                                                                  "BestFit / WidthFirst are what every build here uses.",
}



# What users read for a quantized model of each dtype: "INT8" only when it is one (w8a8); keys in tables and JSON
# ("INT8" rows, "int8" fields) stay as they are, only the words change.
QUANTIZED_NAMES = {"w8a8": "INT8", "w8a16": "w8a16", "w16a16i_dfp": "INT16", "w16a16i": "INT16", "w4a16": "w4a16"}
# Dtypes whose hybrid proposal rknn-toolkit2 2.5.0 refuses (measured: hybrid_quantization_step1(proposal=True) on a
# w4a16 build fails with "Hybrid proposal not support dtype_w = int4 & dtype_a = float16!").
PROPOSAL_REFUSED = {"w4a16": "int4 weights with float16 activations"}


def quantized_name(dtype: str | None) -> str:
    """The name sentences, labels and plots give a model quantized with `dtype`: w8a8 -> 'INT8', w4a16 -> 'w4a16',
    w8a16 -> 'w8a16', w16a16i_dfp -> 'INT16' (a legacy spelling reads as its 2.x dtype; unknown or missing -> 'INT8',
    the toolkit's default)."""
    d = str(dtype or "w8a8").strip()
    return QUANTIZED_NAMES.get(LEGACY_DTYPES.get(d, d), d or "INT8")


def proposal_refusal(dtype: str | None) -> str:
    """'' when the toolkit's hybrid proposal works for `dtype`, else one sentence saying why it is skipped."""
    d = str(dtype or "w8a8")
    if d not in PROPOSAL_REFUSED:
        return ""
    return (f"The toolkit's proposal (b) is skipped: rknn-toolkit2 refuses it for quantized_dtype={d!r} "
            f"({PROPOSAL_REFUSED[d]}), so step 1 runs without it and (a) and (c) still choose layers.")


def known_rules() -> set[str]:
    """The graph rule names of the installed toolkit (2.5.0 keeps them in rknn.api.graph_optimizer's
    convert_rules / fuse_rules / hardware_rules tables); empty when they cannot be read."""
    try:
        from rknn.api import graph_optimizer as g  # optional and slow (seconds): only when rules are named
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
            is_list = isinstance(vals, (list, tuple))
            if not is_list or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                raise WorkbookError(f"{name}={vals!r} must be a flat list of numbers, one per input channel (e.g. [0, 0, 0]).")
            if len(vals) != channels:
                raise WorkbookError(
                    f"{name}={list(vals)} has {len(vals)} value(s) but the model's input has {channels} channel(s); give "
                    f"exactly {channels}."
                )
        if any(float(s) == 0 for s in self.std_values):
            raise WorkbookError(f"std_values={list(self.std_values)} contains 0; every std must be non-zero (e.g. 255 for /255 "
                                "scaling).")
        if self.target_platform not in TARGET_PLATFORMS:
            raise WorkbookError(f"target_platform={self.target_platform!r} is not a known Rockchip chip; use one of "
                                f"{', '.join(TARGET_PLATFORMS)}.")
        self.validate_quantization()
        if self.optimization_level not in (0, 1, 2, 3) or isinstance(self.optimization_level, bool):
            raise WorkbookError(f"optimization_level={self.optimization_level!r} is out of range; use 0, 1, 2 or 3 (3 = all "
                                "optimizations).")
        if self.float_dtype not in FLOAT_DTYPES:
            raise WorkbookError(f"float_dtype={self.float_dtype!r} is not supported; use 'float16' (the only float type the NPU "
                                "runs).")
        for flag in ("single_core_mode", "compress_weight", "model_pruning", "remove_weight", "remove_reshape", "sparse_infer",
                     "enable_flash_attention", "mini_rknn", "quant_img_RGB2BGR", "do_quantization", "auto_hybrid"):
            if not isinstance(getattr(self, flag), bool):
                raise WorkbookError(f"{flag}={getattr(self, flag)!r} must be True or False.")
        if self.single_core_mode and self.target_platform != "rk3588":
            raise WorkbookError(f"single_core_mode=True only applies to rk3588, not {self.target_platform}; set "
                                "single_core_mode=False.")
        batch = self.rknn_batch_size
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise WorkbookError(f"rknn_batch_size={self.rknn_batch_size!r} must be None or a positive integer (e.g. 8).")
        if self.dynamic_input is not None and not (
            isinstance(self.dynamic_input, list) and self.dynamic_input
            and all(isinstance(s, list) and s for s in self.dynamic_input)
        ):
            raise WorkbookError(
                f"dynamic_input={self.dynamic_input!r} must be None or a list of input-shape sets, e.g. [[[1, 3, 224, 224]], "
                "[[1, 3, 160, 160]]]."
            )
        self.validate_shapes(channels)
        targets = self.op_target
        places = ("cpu", "npu", "gpu", "auto")
        if targets is not None and not (isinstance(targets, dict) and all(v in places for v in targets.values())):
            raise WorkbookError(f"op_target={self.op_target!r} must be None or a dict {{op name: 'cpu' | 'npu' | 'gpu' | "
                                f"'auto'}}.")
        if self.custom_string is not None and not isinstance(self.custom_string, str):
            raise WorkbookError(f"custom_string={self.custom_string!r} must be None or a string (at most 1024 characters).")
        if isinstance(self.custom_string, str) and len(self.custom_string) > 1024:
            raise WorkbookError(f"custom_string is {len(self.custom_string)} characters long; shorten it to at most 1024.")

    def validate_shapes(self, channels: int) -> None:
        """Each dynamic_input set is one [1, channels, height, width]: the workbook's models have one image input, and
        the toolkit calibrates one image at a time (rknn_batch_size gives several images per call)."""
        for k, shapes in enumerate(self.dynamic_input or [], 1):
            shape = shapes[0]
            if len(shapes) != 1 or not (isinstance(shape, list) and len(shape) == 4
                                        and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
                raise WorkbookError(f"dynamic_input set {k} is {shapes!r}; give one input shape of four positive integers per "
                                    f"set, e.g. [[1, {channels}, 224, 224]].")
            if shape[1] != channels:
                raise WorkbookError(f"dynamic_input set {k} gives the input shape {shape} with {shape[1]} channel(s) but the "
                                    f"model's input has {channels}; write [{shape[0]}, {channels}, {shape[2]}, {shape[3]}].")
            if shape[0] != 1:
                raise WorkbookError(f"dynamic_input set {k} has batch {shape[0]} ({shape}), which rknn-toolkit2 cannot calibrate "
                                    f"(one image at a time); write [1, {channels}, {shape[2]}, {shape[3]}] and set "
                                    "rknn_batch_size for several images per call.")

    def validate_rules(self) -> None:
        """disable_rules must be a list of rule names the installed toolkit knows (it silently ignores others)."""
        rules = self.disable_rules
        if not isinstance(rules, (list, tuple)) or not all(isinstance(r, str) and r for r in rules):
            raise WorkbookError(f"disable_rules={rules!r} must be a list of rule names, e.g. "
                                "['fuse_exmatmul_add_mul_exsoftmax13_exmatmul_to_sdpa'] ([] = none).")
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
                f"quantized_dtype={self.quantized_dtype!r} is not an rknn-toolkit2 2.5 name; write "
                f"quantized_dtype={LEGACY_DTYPES[self.quantized_dtype]!r}."
            )
        if self.quantized_dtype not in QUANTIZED_DTYPES:
            raise WorkbookError(f"quantized_dtype={self.quantized_dtype!r} is unknown; use one of {', '.join(QUANTIZED_DTYPES)}.")
        chips = dtype_platforms(self.quantized_dtype)
        if chips is not None and self.target_platform in TARGET_PLATFORMS and self.target_platform not in chips:
            raise WorkbookError(
                f"quantized_dtype={self.quantized_dtype!r} is not available on {self.target_platform} (rknn-toolkit2 "
                f"{toolkit_version()} "
                f"builds it only for {', '.join(chips)}); use quantized_dtype='w8a8' or one of those chips."
            )
        if self.quantized_algorithm not in QUANTIZED_ALGORITHMS:
            raise WorkbookError(f"quantized_algorithm={self.quantized_algorithm!r} is unknown; use one of "
                                f"{', '.join(QUANTIZED_ALGORITHMS)}.")
        if self.quantized_method not in QUANTIZED_METHODS:
            raise WorkbookError(f"quantized_method={self.quantized_method!r} is unknown; use channel, layer or group32, "
                                "group64, ... group256.")
        if self.quantized_method.startswith("group") and self.quantized_dtype != "w4a16":
            raise WorkbookError(f"quantized_method={self.quantized_method!r} works only with quantized_dtype='w4a16'; use "
                                f"'channel' or 'layer' with {self.quantized_dtype}.")
        if self.quantized_algorithm == "gdq" and self.quantized_dtype not in ("w4a16", "w8a16"):
            raise WorkbookError(f"quantized_algorithm='gdq' works only with quantized_dtype 'w4a16' or 'w8a16'; use normal, "
                                f"mmse or kl_divergence with {self.quantized_dtype}.")
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
            raise WorkbookError("auto_hybrid=True needs do_quantization=True (it keeps some quantized layers in float16); set "
                                "one of them differently.")

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


def source_kind(source: Path, load_path: str = "auto") -> str:
    """'onnx' or 'pytorch' for a model file, checking that it fits the requested load path."""
    source = Path(source)
    if load_path not in LOAD_PATHS:
        raise WorkbookError(f"load_path={load_path!r} is unknown; use 'onnx' (load_onnx) or 'pytorch' (load_pytorch with "
                            "TorchScript).")
    suffix = source.suffix.lower()
    kind = "onnx" if suffix in ONNX_SUFFIXES else "pytorch" if suffix in TORCHSCRIPT_SUFFIXES else None
    if kind is None:
        raise WorkbookError(f"Model file {source} has unknown type {suffix or '(none)'}; pass a .onnx or a TorchScript "
                            ".torchscript/.pt file.")
    if load_path != "auto" and load_path != kind:
        raise WorkbookError(f"load_path={load_path!r} does not fit {source.name} (a {kind} file); pass the matching model file "
                            "or load_path='auto'.")
    return kind
