"""Notebook 20's teaching demo: linear quantization (symmetric / asymmetric, per-tensor / per-channel) on one
real convolution weight of the exported model, before the toolkit's options use those words."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from helpers.core.errors import WorkbookError
from helpers.steps.export.exporter import load_onnx_model


def pick_weight(onnx_path: Path, min_channels: int = 8) -> tuple[str, np.ndarray]:
    """A real 4-D conv weight of the model whose output channels have the most uneven ranges
    (where per-channel quantization shows its value)."""
    from onnx import numpy_helper  # optional and slow: only the demo reads ONNX weights

    best, best_spread = None, -1.0
    for init in load_onnx_model(onnx_path).graph.initializer:
        if len(init.dims) == 4 and init.dims[0] >= min_channels and int(np.prod(init.dims[1:])) >= 9:
            w = numpy_helper.to_array(init).astype(np.float32)
            ranges = np.abs(w).reshape(len(w), -1).max(axis=1)
            spread = float(ranges.max() / max(ranges.min(), 1e-12))
            if spread > best_spread:
                best, best_spread = (init.name, w), spread
    if best is None:
        raise WorkbookError(f"ONNX file {onnx_path} has no 4-D conv weight with >= {min_channels} output channels to "
                            "demonstrate quantization on; skip this demo cell (the conversion does not need it).")
    return best


def quantize(x: np.ndarray, bits: int = 8, symmetric: bool = True, per_channel: bool = False):
    """Linear quantization q = clip(round(x / scale) + zero_point); returns (dequantized x, scales, zero points)."""
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


def quantization_demo(weight: np.ndarray, bits: int = 8):
    """Error of the four int8 schemes (symmetric/asymmetric x per-tensor/per-channel) on one tensor."""
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
