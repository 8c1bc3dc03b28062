"""The one interface every way of running a model implements (ONNX Runtime, the toolkit's simulator, a board,
TorchScript): `run(inputs)` -> the model's raw outputs, `close()`, and use as a context manager. Task-agnostic:
what the outputs mean (scores, boxes) is the tasks' business; `outputs(images)` feeds a batch in the calls the
model takes and returns each image's outputs."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from helpers.toolkit.session import RKNN

Outputs = list[list[np.ndarray]]  # outputs[image][output], each with a batch dimension of 1


class Runner:
    """One model, ready to run. Subclasses implement `run`; `outputs` splits a batch of images into calls of
    `batch` images (None: all in one call), after `prepare` (the images as the model's input, e.g. mean/std)."""

    name: str = ""
    batch: int | None = None  # images per call the model takes; None: any number
    pad: bool = False  # True: the model takes exactly `batch` images; a short last call is padded with the last image
    prepare: Callable[[np.ndarray], np.ndarray] | None = None  # a batch of images -> the model's input

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """One call of the model: its inputs (in input order) -> its raw outputs (in output order)."""
        raise NotImplementedError

    def split(self, outputs: Sequence[np.ndarray], n: int) -> Outputs:
        """The outputs of one call on n images, per image (each keeping a batch dimension of 1)."""
        return split_batch(outputs, n)

    def outputs(self, images: np.ndarray) -> Outputs:
        """Every output of each image, as the model gives it (batch dimension 1): outputs[image][output]."""
        x = self.prepare(images) if self.prepare else images
        step = self.batch or max(len(x), 1)
        per_image: Outputs = []
        for i in range(0, len(x), step):
            chunk = x[i : i + step]
            n = len(chunk)
            if self.pad and n < step:  # the model is built for exactly `batch` images: pad with copies of the last
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
            per_image += self.split(self.run([chunk]), n)
        return per_image

    def close(self) -> None:
        """Release what the runner holds (a session, a toolkit)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def split_batch(outputs: Sequence[np.ndarray], n: int) -> Outputs:
    """Batched outputs [n, ...] of one call -> per image, each output keeping a batch dimension of 1."""
    return [[o[j : j + 1] for o in outputs] for j in range(n)]


def batched(output: Any, batch: int) -> np.ndarray:
    """One toolkit output as [batch, ...]: its own shape when it leads with the batch, else flattened per image."""
    a = np.asarray(output, np.float32)
    return a.reshape(batch, *a.shape[1:]) if a.ndim > 1 and a.shape[0] == batch else a.reshape(batch, -1)


class ToolkitRunner(Runner):
    """Base of the runners that hold one open toolkit (simulator, board): `_open` runs their setup on it and
    releases it if setup fails; `close()` (or leaving a `with` block) releases it."""

    rk: RKNN
    auto_disable_rules: bool = False  # True: a build failing in a graph rule the log names is retried without it

    def _open(self, log_path: Path, setup: Callable[[RKNN], None]) -> None:
        self._stack = contextlib.ExitStack()
        try:
            self.rk = self._stack.enter_context(RKNN(log_path, auto_disable_rules=self.auto_disable_rules))
            setup(self.rk)
        except BaseException:
            self._stack.close()
            raise

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """One toolkit inference on uint8 NHWC inputs (mean/std are baked into the model)."""
        return list(self.rk.inference(inputs=[np.ascontiguousarray(x) for x in inputs], data_format="nhwc"))

    def close(self) -> None:
        stack = getattr(self, "_stack", None)
        if stack is not None:
            stack.close()
