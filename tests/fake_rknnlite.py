"""FakeRKNNLite: a STAND-IN for the board's runtime library (rknn-toolkit-lite2's RKNNLite), for tests.

It is not the toolkit and not a mock of it: it computes real outputs by running the SAME model's ONNX
file (FAKE_RKNNLITE_ONNX) under ONNX Runtime, applying the model's mean/std the way the NPU applies
the values baked into the .rknn. It checks what the real RKNNLite needs from a caller (a loaded model,
an initialised runtime, one uint8 NHWC image per call) so the runner's preprocessing, loop, output and
error handling run for real. FAKE_RKNNLITE_FAIL=load|init|inference makes that step fail the way the
real library reports failures (-1 return or None outputs).

`install(folder)` writes a `rknnlite/api.py` into folder that exposes it as `rknnlite.api.RKNNLite`,
so a subprocess with folder on PYTHONPATH imports the stand-in where the board would import the library.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

ONNX_ENV = "FAKE_RKNNLITE_ONNX"
FAIL_ENV = "FAKE_RKNNLITE_FAIL"
LOG_ENV = "FAKE_RKNNLITE_LOG"


class FakeRKNNLite:
    """Stand-in for rknnlite.api.RKNNLite: same calls, outputs from ONNX Runtime on the same model."""

    NPU_CORE_AUTO, NPU_CORE_0, NPU_CORE_1, NPU_CORE_2 = 0, 1, 2, 4
    NPU_CORE_0_1, NPU_CORE_0_1_2, NPU_CORE_ALL = 3, 7, 0xFFFF

    def __init__(self, verbose: bool = False):
        self.session = None
        self.mean = self.std = None
        self.ready = False
        self.calls: list[dict] = []

    def _fails(self, step: str) -> bool:
        return os.environ.get(FAIL_ENV, "") == step

    def load_rknn(self, path: str) -> int:
        import onnxruntime as ort

        if self._fails("load") or not Path(path).read_bytes().startswith(b"RKNN"):
            return -1
        cfg = json.loads((Path(path).parent / "model.json").read_text())  # mean/std the .rknn carries
        self.mean = np.asarray(cfg["mean_values"], np.float32)
        self.std = np.asarray(cfg["std_values"], np.float32)
        self.session = ort.InferenceSession(os.environ[ONNX_ENV], providers=["CPUExecutionProvider"])
        return 0

    def init_runtime(self, core_mask: int = 0) -> int:
        if self.session is None or self._fails("init"):
            return -1
        self.core_mask = core_mask
        self.ready = True
        return 0

    def inference(self, inputs: list, data_format=None):
        if not self.ready or self._fails("inference"):
            return None
        (x,) = inputs
        fmt = data_format[0] if isinstance(data_format, (list, tuple)) else data_format
        if fmt != "nhwc" or x.dtype != np.uint8 or x.ndim != 4 or x.shape[0] != 1:
            raise ValueError(f"stand-in expects one uint8 NHWC image per call, got {x.dtype} {x.shape} {fmt}")
        self.calls.append({"shape": list(x.shape), "first_pixel": x[0, 0, 0].tolist(), "core_mask": self.core_mask})
        if os.environ.get(LOG_ENV):
            with open(os.environ[LOG_ENV], "a") as fh:
                fh.write(json.dumps(self.calls[-1]) + "\n")
        feed = ((x.astype(np.float32) - self.mean) / self.std).transpose(0, 3, 1, 2)
        name = self.session.get_inputs()[0].name
        return [np.asarray(o, np.float32) for o in self.session.run(None, {name: np.ascontiguousarray(feed)})]

    def release(self) -> None:
        self.session = None
        self.ready = False


def install(folder: Path) -> Path:
    """Make `from rknnlite.api import RKNNLite` resolve to FakeRKNNLite for a process with folder on
    its PYTHONPATH (beside this file's folder)."""
    pkg = Path(folder) / "rknnlite"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text('"""Test stand-in package: see tests/fake_rknnlite.py."""\n')
    (pkg / "api.py").write_text("from fake_rknnlite import FakeRKNNLite as RKNNLite  # a stand-in, not the library\n")
    return folder
