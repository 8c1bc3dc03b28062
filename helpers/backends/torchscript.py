"""A TorchScript module on CPU (what the toolkit's load_pytorch reads): notebook 10 checks the ONNX against it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from helpers.backends.base import Runner


class TorchScriptRunner(Runner):
    """A TorchScript file run with torch on CPU, all images in one call; `prepare` gives its float input."""

    def __init__(self, path: str | Path, prepare: Callable[[np.ndarray], np.ndarray] | None = None, name: str = "TorchScript"):
        import torch  # slow to import, needed only when a TorchScript file is run

        self.torch = torch
        self.path = Path(path)
        self.module = torch.jit.load(str(path), map_location="cpu").eval()
        self.prepare = prepare
        self.name = name

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """One forward pass: the module's outputs (a tuple or list of them, or one tensor) as numpy arrays."""
        with self.torch.no_grad():
            out = self.module(*[self.torch.from_numpy(np.ascontiguousarray(x)) for x in inputs])
        return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else [out])]

    def close(self) -> None:
        self.module = None
