"""The C++ decode harnesses (tests/cpp/*_harness.cc) the detector and segment/pose tests build, and the raw-output dump
they read (tests/cpp/raw_manifest.h): each output as out<i>.bin, int8 with its zero point and scale or float32, listed
in manifest.txt."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers.deploy import codegen

GXX = shutil.which("g++")


def build_harness(tmp_path_factory, name: str) -> Path:
    """Compile tests/cpp/<name>.cc against the bundle's headers (warnings are errors); skip without g++."""
    if GXX is None:
        pytest.skip("needs g++ to compile the C++ decode")
    exe = tmp_path_factory.mktemp("harness") / name
    subprocess.run([GXX, "-std=c++11", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{codegen.CPP_DIR}",
                    str(Path(__file__).resolve().parent / "cpp" / f"{name}.cc"), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    return exe


def quantize(x: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Per-tensor affine int8 (what rknn_query reports as zp/scale): q, zero point, scale."""
    lo, hi = float(min(x.min(), 0.0)), float(max(x.max(), 0.0))
    scale = np.float32(max(hi - lo, 1e-6) / 255.0)
    zp = int(round(-128 - lo / float(scale)))
    q = np.clip(np.round(x / scale) + zp, -128, 127).astype(np.int8)
    return q, zp, float(scale)


def dequantize(q: np.ndarray, zp: int, scale: float) -> np.ndarray:
    """(q - zp) * scale in float32, the same arithmetic as yolo_detect.h's dequantize."""
    return (q.astype(np.float32) - np.float32(zp)) * np.float32(scale)


def write_raw_outputs(folder: Path, header_line: str, outputs: list[np.ndarray], int8: bool) -> tuple[Path, list[np.ndarray]]:
    """Dump one image's outputs, each already [C, H, W], as a harness manifest (header_line, then one line per output) and
    return its path and the float outputs [1, C, H, W] the C++ side decodes (dequantized when int8), for the Python decode."""
    folder.mkdir(parents=True, exist_ok=True)
    lines, used = [header_line], []
    for i, o in enumerate(outputs):
        a = np.asarray(o, np.float32)
        path = folder / f"out{i}.bin"
        if int8:
            q, zp, scale = quantize(a)
            q.tofile(path)
            used.append(dequantize(q, zp, scale)[None])
            lines.append(f"{a.shape[0]} {a.shape[1]} {a.shape[2]} i8 {zp} {scale!r} {path}")
        else:
            a.tofile(path)
            used.append(a[None])
            lines.append(f"{a.shape[0]} {a.shape[1]} {a.shape[2]} f32 0 1.0 {path}")
    manifest = folder / "manifest.txt"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, used
