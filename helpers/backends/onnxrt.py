"""The one ONNX Runtime session of the workbook: an ONNX file on CPU, the FP32 reference every comparison
measures against. Its inputs are float tensors; `prepare` turns images into them (mean/std in numpy)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from helpers.backends.base import Runner


class OnnxRunner(Runner):
    """An ONNX under ONNX Runtime on CPU. A model exported with a fixed batch is fed that many images per call."""

    def __init__(self, onnx_path: str | Path, prepare: Callable[[np.ndarray], np.ndarray] | None = None,
                 name: str = "FP32 ONNX Runtime"):
        import onnxruntime as ort  # slow to import, needed only when an ONNX is run

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.path = Path(onnx_path)
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.channels = inp.shape[1] if len(inp.shape) == 4 and isinstance(inp.shape[1], int) else None
        self.prepare = prepare
        self.name = name

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """One session call: inputs in the model's input order -> its outputs as float32."""
        feed = {n: np.ascontiguousarray(x) for n, x in zip(self.input_names, inputs)}
        return [np.asarray(o, np.float32) for o in self.session.run(None, feed)]

    def close(self) -> None:
        self.session = None
