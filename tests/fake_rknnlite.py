"""FakeRKNNLite: a STAND-IN for the board's runtime library (rknn-toolkit-lite2's RKNNLite), for tests.

It is not the toolkit and not a mock of it: it computes real outputs by running the SAME model's ONNX
file (FAKE_RKNNLITE_ONNX) under ONNX Runtime, applying the model's mean/std the way the NPU applies
the values baked into the .rknn. It checks what the real RKNNLite needs from a caller (a loaded model,
an initialised runtime, one uint8 NHWC image per call) so the runner's preprocessing, loop, output and
error handling run for real. FAKE_RKNNLITE_FAIL=load|init|inference makes that step fail the way the
real library reports failures (-1 return or None outputs). Like the real runtime, init_runtime refuses a core mask the
model's chip (model.json's target_platform) does not have (-1): a single-core chip takes NPU_CORE_AUTO only, rk3576 has
cores 0 and 1, rk3588 cores 0, 1 and 2. Calls are logged with their context's core mask (thread-safe: the benchmark
drives one context per core from a thread pool).

FakeBoardRKNN stands in the same way for the PC side, rknn-toolkit2's `rknn.api.RKNN` driving a board over adb
(notebook 40's script): list_devices answers with FAKE_RKNN_DEVICES (comma-separated; empty = no board),
init_runtime checks the target against the model's chip and the device id against that list, and eval_perf /
eval_memory return no figures at all (a stand-in has no board to measure; it says so when asked to print).
`install_toolkit(folder)` exposes it as `rknn.api.RKNN`.

`install(folder)` writes a `rknnlite/api.py` into folder that exposes it as `rknnlite.api.RKNNLite`,
so a subprocess with folder on PYTHONPATH imports the stand-in where the board would import the library.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np

ONNX_ENV = "FAKE_RKNNLITE_ONNX"
DEVICES_ENV = "FAKE_RKNN_DEVICES"
FAIL_ENV = "FAKE_RKNNLITE_FAIL"
LOG_ENV = "FAKE_RKNNLITE_LOG"
_LOG_LOCK = threading.Lock()


class FakeRKNNLite:
    """Stand-in for rknnlite.api.RKNNLite: same calls, outputs from ONNX Runtime on the same model."""

    NPU_CORE_AUTO, NPU_CORE_0, NPU_CORE_1, NPU_CORE_2 = 0, 1, 2, 4
    NPU_CORE_0_1, NPU_CORE_0_1_2, NPU_CORE_ALL = 3, 7, 0xFFFF
    # the masks each chip's runtime accepts (rknn-toolkit-lite2 documents core masks for rk3588 and rk3576 only)
    MASKS_BY_CHIP = {"rk3588": {0, 1, 2, 4, 3, 7, 0xFFFF}, "rk3576": {0, 1, 2, 3, 0xFFFF}}

    def __init__(self, verbose: bool = False):
        self.session = None
        self.mean = self.std = None
        self.platform = ""
        self.core_mask = None
        self.ready = False
        self.calls: list[dict] = []

    def _fails(self, step: str) -> bool:
        return os.environ.get(FAIL_ENV, "") == step

    def load_rknn(self, path: str) -> int:
        import onnxruntime as ort

        if self._fails("load") or not Path(path).read_bytes().startswith(b"RKNN"):
            return -1
        beside = Path(path).parent
        if (beside / "model.json").is_file():  # a bundle: mean/std the .rknn carries, as model.json repeats them
            cfg = json.loads((beside / "model.json").read_text())
        else:  # a run's rknn/model.rknn: notebook 20's record beside it
            cfg = json.loads((beside / "convert.json").read_text())["config"]
        self.mean = np.asarray(cfg["mean_values"], np.float32)
        self.std = np.asarray(cfg["std_values"], np.float32)
        self.platform = cfg.get("target_platform", "")
        self.session = ort.InferenceSession(os.environ[ONNX_ENV], providers=["CPUExecutionProvider"])
        return 0

    def init_runtime(self, core_mask: int = 0) -> int:
        if self.session is None or self._fails("init"):
            return -1
        if core_mask not in self.MASKS_BY_CHIP.get(self.platform, {self.NPU_CORE_AUTO}):
            return -1  # the real runtime refuses a core the chip does not have
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
            with _LOG_LOCK, open(os.environ[LOG_ENV], "a") as fh:
                fh.write(json.dumps({**self.calls[-1], "context": id(self)}) + "\n")
        feed = ((x.astype(np.float32) - self.mean) / self.std).transpose(0, 3, 1, 2)
        name = self.session.get_inputs()[0].name
        return [np.asarray(o, np.float32) for o in self.session.run(None, {name: np.ascontiguousarray(feed)})]

    def release(self) -> None:
        self.session = None
        self.ready = False


class FakeBoardRKNN(FakeRKNNLite):
    """Stand-in for rknn.api.RKNN with a board target: list_devices, init_runtime(target, device_id, perf_debug,
    eval_mem, core_mask), inference (ONNX Runtime, as FakeRKNNLite), eval_perf / eval_memory without figures."""

    def list_devices(self):
        found = [d for d in os.environ.get(DEVICES_ENV, "").split(",") if d]
        return found, []

    def init_runtime(self, target=None, device_id=None, perf_debug=False, eval_mem=False, async_mode=False,
                     core_mask=0, fallback_prior_device="cpu") -> int:
        if target is None or str(target).lower() != self.platform:  # the toolkit refuses a model built for another chip
            return -1
        if device_id not in self.list_devices()[0]:
            return -1
        self.eval_mem = eval_mem
        return super().init_runtime(core_mask)

    def eval_perf(self, is_print=True, fix_freq=True) -> dict:
        if not self.ready:
            raise RuntimeError("eval_perf before init_runtime")
        if is_print:
            print("FakeBoardRKNN.eval_perf: a stand-in, no board: no figures")
        return {}

    def eval_memory(self, is_print=True) -> dict:
        if not (self.ready and self.eval_mem):
            raise RuntimeError("eval_memory needs init_runtime(eval_mem=True)")
        if is_print:
            print("FakeBoardRKNN.eval_memory: a stand-in, no board: no figures")
        return {}


def install_toolkit(folder: Path) -> Path:
    """Make `from rknn.api import RKNN` resolve to FakeBoardRKNN for a process with folder (and this file's folder)
    on its PYTHONPATH, ahead of the installed rknn-toolkit2."""
    pkg = Path(folder) / "rknn"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text('"""Test stand-in package: see tests/fake_rknnlite.py."""\n')
    (pkg / "api.py").write_text("from fake_rknnlite import FakeBoardRKNN as RKNN  # a stand-in, not the toolkit\n")
    return folder


def install(folder: Path) -> Path:
    """Make `from rknnlite.api import RKNNLite` resolve to FakeRKNNLite for a process with folder on
    its PYTHONPATH (beside this file's folder)."""
    pkg = Path(folder) / "rknnlite"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text('"""Test stand-in package: see tests/fake_rknnlite.py."""\n')
    (pkg / "api.py").write_text("from fake_rknnlite import FakeRKNNLite as RKNNLite  # a stand-in, not the library\n")
    return folder
