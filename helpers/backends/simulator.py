"""The toolkit's simulator (init_runtime(target=None)) as a runner: a model built in this process, or a toolkit
another step already built (hybrid step 2), fed uint8 NHWC images (mean/std are baked into the model)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from helpers.backends.base import Outputs, ToolkitRunner, batched, split_batch
from helpers.toolkit.session import RKNN


class SimulatorRunner(ToolkitRunner):
    """A model `build` puts into a fresh toolkit (config, load, build), initialised in the simulator; with batch > 1
    the model is built for exactly `batch` images (rknn_batch_size) and fed that many per call."""

    pad = True

    def __init__(self, log_path: str | Path, build: Callable[[RKNN], None], batch: int = 8,
                 prepare: Callable[[np.ndarray], np.ndarray] | None = None, name: str = "INT8 RKNN simulator",
                 auto_disable_rules: bool = False, channels: int | None = None):
        self.auto_disable_rules = auto_disable_rules
        self.channels = channels  # the model's input channels when known (prepare brings batches to it)
        self.batch = int(batch)
        self.prepare = prepare
        self.name = name
        self.log_path = Path(log_path)

        def setup(rk: RKNN) -> None:
            build(rk)
            rk.init_runtime(target=None)

        self._open(self.log_path, setup)

    def split(self, outputs: Sequence[np.ndarray], n: int) -> Outputs:
        """Each output brought to [batch, ...], then per image."""
        return split_batch([batched(o, self.batch) for o in outputs], n)


class BuiltSimulator(ToolkitRunner):
    """A toolkit already built and initialised in the simulator by its owner (e.g. hybrid step 2, which builds
    for batch 1): one image per call; closing it leaves the toolkit to its owner."""

    batch = 1

    def __init__(self, rk: Any, prepare: Callable[[np.ndarray], np.ndarray] | None = None, name: str = "INT8 RKNN simulator"):
        self.rk = rk
        self.prepare = prepare
        self.name = name

    def split(self, outputs: Sequence[np.ndarray], n: int) -> Outputs:
        """One image's outputs, each with a batch dimension of 1."""
        return [[one(o) for o in outputs]]


def one(output: Any) -> np.ndarray:
    """One output with a batch dimension of 1."""
    a = np.asarray(output, np.float32)
    return a if a.ndim > 1 and a.shape[0] == 1 else a[None]
