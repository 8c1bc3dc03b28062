"""One interface over inference backends, one evaluation loop over a labelled image set.

A backend takes a batch of uint8 RGB NHWC images (the output of helpers.tasks.preprocess.read_rgb) and
returns float scores [N, classes]. A backend whose model has one input channel converts RGB batches to
grayscale itself (helpers.tasks.preprocess.match_channels), so callers never need to know the layout. Each
backend does its own normalisation: ONNX Runtime applies mean/std in numpy (the FP32 reference), the
RKNN simulator and the board take the raw uint8 images because mean/std are baked into the .rknn. To
add a backend (e.g. helpers.steps.board.BoardBackend), implement `name`, `run()` and `close()`; `evaluate()`
and `compare()` then work unchanged.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from helpers.core.errors import WorkbookError
from helpers.core.paths import write_json_atomic
from helpers.tasks.data import LabelledImages
from helpers.tasks.preprocess import match_channels, read_rgb, to_float_nchw

if TYPE_CHECKING:  # convert imports the toolkit wrapper; only the types are needed here
    from helpers.steps.convert import ConvertConfig, ConvertRecord
    from helpers.toolkit.session import RKNN


@runtime_checkable
class Backend(Protocol):
    """Anything that scores uint8 RGB NHWC batches: `run(batch) -> float32 [N, classes]`."""

    name: str

    def run(self, batch_uint8_nhwc: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


class OnnxBackend:
    """The FP32 reference: the exported ONNX under ONNX Runtime on CPU."""

    def __init__(self, onnx_path: str | Path, mean: Sequence[float], std: Sequence[float], name: str = "FP32 ONNX Runtime"):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.channels = inp.shape[1] if len(inp.shape) == 4 and isinstance(inp.shape[1], int) else len(mean)
        check_channels(mean, std, self.channels, str(onnx_path))
        self.mean, self.std, self.name = list(mean), list(std), name

    def run(self, batch_uint8_nhwc: np.ndarray) -> np.ndarray:
        """The first output of each image, flattened: [N, K] scores."""
        return first_outputs(self.run_raw(batch_uint8_nhwc))

    def run_raw(self, batch_uint8_nhwc: np.ndarray) -> list[list[np.ndarray]]:
        """Every output of each image, as the model gives it (batch dimension 1): outputs[image][output]."""
        x = to_float_nchw(batch_uint8_nhwc, self.mean, self.std)
        step = self.fixed_batch or len(x)  # a model exported with batch 1 is fed image by image
        per_image: list[list[np.ndarray]] = []
        for i in range(0, len(x), step):
            outs = [np.asarray(o, np.float32) for o in self.session.run(None, {self.input_name: x[i : i + step]})]
            per_image += split_batch(outs, len(x[i : i + step]))
        return per_image

    def close(self) -> None:
        self.session = None


def split_batch(outputs: Sequence[np.ndarray], n: int) -> list[list[np.ndarray]]:
    """Batched outputs [n, ...] of one call -> per image, each output keeping a batch dimension of 1."""
    return [[o[j : j + 1] for o in outputs] for j in range(n)]


def batched(output: Any, batch: int) -> np.ndarray:
    """One toolkit output as [batch, ...]: its own shape when it leads with the batch, else flattened per image."""
    a = np.asarray(output, np.float32)
    return a.reshape(batch, *a.shape[1:]) if a.ndim > 1 and a.shape[0] == batch else a.reshape(batch, -1)


def first_outputs(per_image: list[list[np.ndarray]]) -> np.ndarray:
    """[N, K]: each image's first output flattened (a classifier's scores)."""
    if not per_image:
        return np.zeros((0, 0), np.float32)
    return np.stack([np.ravel(outs[0]) for outs in per_image]).astype(np.float32)


def check_channels(mean: Sequence[float], std: Sequence[float], channels: int, model: str) -> None:
    """Raise WorkbookError unless mean_values and std_values have one value per input channel of the model."""
    for key, vals in (("mean_values", mean), ("std_values", std)):
        if len(vals) != channels:
            raise WorkbookError(f"{key}={list(vals)} has {len(vals)} value(s) but model {model} has {channels} input channel(s); "
                                f"give exactly {channels} (e.g. {key}={list(vals)[:1] * channels}).")


class ToolkitSession:
    """Base of the backends that hold one open toolkit (simulator, board): `_open` runs their setup on
    it and releases it if setup fails; `close()` (or leaving a `with` block) releases it."""

    rk: RKNN
    channels: int | None = None  # the model's input channels, when known: batches are brought to it

    def fit_channels(self, batch_uint8_nhwc: np.ndarray) -> np.ndarray:
        """The batch with the model's channel count (RGB -> grayscale for a 1-channel model)."""
        return match_channels(batch_uint8_nhwc, self.channels) if self.channels else batch_uint8_nhwc

    auto_disable_rules: bool = False  # True: a build failing in a graph rule the log names is retried without it

    def _open(self, log_path: Path, setup: Callable[[RKNN], None]) -> None:
        from helpers.toolkit.session import RKNN

        self._stack = contextlib.ExitStack()
        try:
            self.rk = self._stack.enter_context(RKNN(log_path, auto_disable_rules=self.auto_disable_rules))
            setup(self.rk)
        except BaseException:
            self._stack.close()
            raise

    def close(self) -> None:
        self._stack.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class SimulatorBackend(ToolkitSession):
    """The INT8 model in the toolkit's simulator, built from its source (ONNX or TorchScript) in this
    process; with batch > 1 the model is built with rknn_batch_size=batch and fed batch images per call."""

    def __init__(self, source: str | Path, cfg: ConvertConfig, dataset: str | Path | None, input_size: int, log_path: str | Path,
                 load_path: str = "auto", batch: int = 8, name: str = "INT8 RKNN simulator", auto_disable_rules: bool = False):
        from helpers.steps.convert import ConvertConfig, build_on, model_channels

        self.auto_disable_rules = auto_disable_rules
        self.channels = model_channels(Path(source), load_path)
        self.batch = int(batch)
        self.name = name
        self.input_size = input_size
        self.log_path = Path(log_path)
        self.cfg = ConvertConfig.from_dict({**cfg.to_dict(), "rknn_batch_size": self.batch if self.batch > 1 else None})

        def setup(rk: RKNN) -> None:
            build_on(rk, Path(source), self.cfg, Path(dataset) if dataset else None, input_size, load_path)
            rk.init_runtime(target=None)

        self._open(self.log_path, setup)

    @classmethod
    def from_record(cls, record: ConvertRecord, log_path: str | Path, batch: int = 8, name: str = "INT8 RKNN simulator", **overrides: Any) -> "SimulatorBackend":
        """Rebuild the model notebook 20 converted (helpers.steps.convert.read_record), with optional config overrides."""
        from helpers.steps.convert import ConvertConfig

        cfg = ConvertConfig.from_dict({**record.config.to_dict(), **overrides})
        return cls(record.source, cfg, record.dataset, record.input_size, log_path, record.load_path, batch, name)

    def run(self, batch_uint8_nhwc: np.ndarray) -> np.ndarray:
        """The first output of each image, flattened: [N, K] scores."""
        return first_outputs(self.run_raw(batch_uint8_nhwc))

    def run_raw(self, batch_uint8_nhwc: np.ndarray) -> list[list[np.ndarray]]:
        """Every output of each image, as the toolkit gives it (batch dimension 1): outputs[image][output]."""
        per_image: list[list[np.ndarray]] = []
        batch_uint8_nhwc = self.fit_channels(batch_uint8_nhwc)
        for i in range(0, len(batch_uint8_nhwc), self.batch):
            chunk = batch_uint8_nhwc[i : i + self.batch]
            n = len(chunk)
            if n < self.batch:  # the model is built for exactly `batch` images: pad with copies of the last
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - n, axis=0)])
            outs = self.rk.inference(inputs=[np.ascontiguousarray(chunk)], data_format="nhwc")
            per_image += split_batch([batched(o, self.batch) for o in outs], n)
        return per_image



# ---------------------------------------------------------------- evaluation

@dataclass
class EvalResult:
    """Scores and accuracy of one backend on one labelled set."""

    name: str
    scores: np.ndarray
    labels: np.ndarray
    top1: float
    top5: float
    seconds: float
    images_per_s: float

    @property
    def predictions(self) -> np.ndarray:
        return self.scores.argmax(axis=1)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "images": int(len(self.labels)), "top1": self.top1, "top5": self.top5,
                "seconds": round(self.seconds, 3), "images_per_s": round(self.images_per_s, 1)}


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the k highest scores."""
    if len(labels) == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def evaluate(backend: Backend, images: LabelledImages, size: int, batch: int = 32, progress: bool = True,
             pixels: np.ndarray | None = None) -> EvalResult:
    """Score every image with the backend in batches (tqdm bar); only backend time counts as speed.
    Pass pixels (images.load(size)) to reuse already-decoded images."""
    from tqdm.auto import tqdm

    n = len(images)
    outs, spent = [], 0.0
    bar = tqdm(total=n, desc=backend.name, unit="img", disable=not progress)
    for i in range(0, n, batch):
        x = pixels[i : i + batch] if pixels is not None else np.stack([read_rgb(p, size) for p in images.paths[i : i + batch]])
        t = time.perf_counter()
        outs.append(backend.run(x))
        spent += time.perf_counter() - t
        if i == 0:
            check_outputs(outs[0], images, backend.name)
        bar.update(len(x))
    bar.close()
    scores = np.concatenate(outs) if outs else np.zeros((0, len(images.classes)), np.float32)
    labels = np.asarray(images.labels)
    return EvalResult(backend.name, scores, labels, topk_accuracy(scores, labels, 1), topk_accuracy(scores, labels, 5),
                      spent, n / spent if spent > 0 else float("nan"))


def check_outputs(scores: np.ndarray, images: LabelledImages, backend: str) -> None:
    """Raise WorkbookError when the model scores a different number of classes than the folder has."""
    if scores.ndim == 2 and scores.shape[1] != len(images.classes):
        raise WorkbookError(f"The model ({backend}) has {scores.shape[1]} outputs but {images.root} has {len(images.classes)} class folders; "
                            f"give a data_dir with one sub-folder per model output (in output order) or the model trained on it.")


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row cosine similarity of two [N, K] arrays (0 where a row is all zeros)."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(den > 0, (a * b).sum(axis=1) / np.where(den > 0, den, 1.0), 0.0)


@dataclass
class Comparison:
    """How closely a second backend (e.g. INT8) follows a reference (e.g. FP32), image by image."""

    reference: str
    other: str
    top1_agreement: float
    cosine: np.ndarray = field(repr=False)
    top1_delta_pt: float = 0.0

    @property
    def mean_cosine(self) -> float:
        return float(self.cosine.mean()) if len(self.cosine) else float("nan")

    @property
    def min_cosine(self) -> float:
        return float(self.cosine.min()) if len(self.cosine) else float("nan")

    def summary(self) -> dict[str, Any]:
        return {"reference": self.reference, "other": self.other, "top1_agreement": self.top1_agreement,
                "mean_cosine": self.mean_cosine, "min_cosine": self.min_cosine, "top1_delta_pt": self.top1_delta_pt}


def compare(fp32: EvalResult, int8: EvalResult) -> Comparison:
    """Top-1 agreement and per-sample output cosine of int8 against fp32 (same images, same order)."""
    if fp32.scores.shape != int8.scores.shape:
        raise ValueError(f"Cannot compare {fp32.name} {fp32.scores.shape} with {int8.name} {int8.scores.shape}: evaluate both on the same images.")
    agree = float((fp32.predictions == int8.predictions).mean()) if len(fp32.labels) else float("nan")
    return Comparison(fp32.name, int8.name, agree, cosine_rows(fp32.scores, int8.scores), round(100 * (int8.top1 - fp32.top1), 2))


def verdict(cmp: Comparison) -> str:
    """One line: how much top-1 the second model loses (or gains) against the reference."""
    d = cmp.top1_delta_pt
    change = f"loses {-d:.1f} pt top-1" if d < 0 else f"gains {d:.1f} pt top-1" if d > 0 else "keeps top-1 exactly"
    return (f"{cmp.other} {change} against {cmp.reference}; the two agree on {100 * cmp.top1_agreement:.1f}% "
            f"of images, mean output cosine {cmp.mean_cosine:.4f}.")


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    """[true, predicted] counts."""
    m = np.zeros((classes, classes), np.int64)
    np.add.at(m, (np.asarray(labels), np.asarray(predictions)), 1)
    return m


def plot_confusions(results: list[EvalResult], class_names: list[str], path: Path | None = None):
    """Side-by-side confusion matrices (rows = true class), titled with top-1; saved to path if given."""
    import matplotlib.pyplot as plt

    k = len(class_names)
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 4), squeeze=False)
    for ax, r in zip(axes[0], results):
        m = confusion_matrix(r.labels, r.predictions, k)
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > m.max() / 2 else "black")
        ax.set_title(f"{r.name}\ntop-1 {100 * r.top1:.1f}%")
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_xticks(range(k), class_names, fontsize=7)
        ax.set_yticks(range(k), class_names, fontsize=7)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


def plot_cosine_hist(cmp: Comparison, path: Path | None = None):
    """Histogram of per-image output cosine between the two backends; saved to path if given."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    cos = np.clip(cmp.cosine, -1.0, 1.0)
    lo = float(cos.min()) if len(cos) else 0.9
    lo = min(lo - 0.1 * (1.0 - lo), 0.999)  # zoom on the occupied range, keep 1.0 at the right edge
    ax.hist(cos, bins=np.linspace(lo, 1.0, 41), color="tab:orange", edgecolor="black", linewidth=0.3)
    ax.set_yscale("log")
    ax.set_title(f"Per-image output cosine\n{cmp.other} vs {cmp.reference} (mean {cmp.mean_cosine:.5f})")
    ax.set_xlabel("cosine similarity of the output vectors (1 = same direction)")
    ax.set_ylabel("images (log scale)")
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


def save_predictions(path: Path, images: LabelledImages, *results: EvalResult) -> Path:
    """Write labels, image paths and each backend's scores to an .npz (atomic)."""
    path = Path(path)
    arrays: dict[str, Any] = {"labels": np.asarray(images.labels), "paths": np.asarray([str(p) for p in images.paths]),
                              "classes": np.asarray(images.classes)}
    for i, r in enumerate(results):
        arrays[f"scores_{i}"] = r.scores
        arrays[f"name_{i}"] = np.asarray(r.name)
    tmp = path.with_name(path.stem + ".partial.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


ROLES = ("fp32", "int8", "hybrid", "board", "diagnostic")


def write_metrics(path: Path, results: list[EvalResult], comparison: Comparison | None, extra: dict[str, Any] | None = None,
                  roles: list[str] | None = None, demo: bool = False) -> Path:
    """eval/metrics.json: each backend's summary with its role (default: fp32, int8, then diagnostic rows such
    as the BGR-input bug; "demo": true on non-FP32 rows built under demo calibration), the comparison and any
    extra values (atomic). Readers pick backends by role, never by display name."""
    roles = list(roles) if roles is not None else ["fp32", "int8", *["diagnostic"] * max(0, len(results) - 2)][: len(results)]
    unknown = [r for r in roles if r not in ROLES]
    if len(roles) != len(results) or unknown:
        raise ValueError(f"roles={roles} must give one of {ROLES} for each of the {len(results)} results.")
    backends = [{**r.summary(), "role": role, **({"demo": True} if demo and role != "fp32" else {})} for r, role in zip(results, roles)]
    data = {"backends": backends, "comparison": comparison.summary() if comparison else None,
            "verdict": verdict(comparison) if comparison else "", **(extra or {})}
    return write_json_atomic(path, data, default=float)


def load_run(metrics_path: Path, predictions_path: Path) -> tuple[list[EvalResult], Comparison | None, dict[str, Any]]:
    """Reload what write_metrics/save_predictions stored (for a cached notebook re-run)."""
    metrics = json.loads(Path(metrics_path).read_text())
    z = np.load(predictions_path)
    labels = z["labels"]
    results = []
    for i, summ in enumerate(metrics["backends"]):
        scores = z[f"scores_{i}"]
        results.append(EvalResult(summ["name"], scores, labels, topk_accuracy(scores, labels, 1), topk_accuracy(scores, labels, 5),
                                  float(summ["seconds"]), float(summ["images_per_s"])))
    cmp = compare(results[0], results[1]) if len(results) >= 2 else None
    extra = {k: v for k, v in metrics.items() if k not in ("backends", "comparison", "verdict")}
    return results, cmp, extra


# ---------------------------------------------------------------- export check (notebook 10): TorchScript vs ONNX

def run_torchscript(path: Path, batch_uint8_nhwc: np.ndarray, mean, std) -> np.ndarray:
    """Scores of a TorchScript module on uint8 NHWC images."""
    import torch

    from helpers.steps.export.exporter import read_sidecar

    side = read_sidecar(path) or {}
    check_channels(mean, std, int(side.get("channels", len(mean))), str(path))
    module = torch.jit.load(str(path), map_location="cpu").eval()
    with torch.no_grad():
        out = module(torch.from_numpy(to_float_nchw(batch_uint8_nhwc, mean, std)))
    out = out[0] if isinstance(out, (tuple, list)) else out
    return out.numpy().reshape(len(batch_uint8_nhwc), -1)


def check_export(torchscript: Path, onnx_path: Path, images_uint8_nhwc: np.ndarray, mean, std) -> ExportCheck:
    """Compare TorchScript (what load_pytorch gets) with the ONNX under ONNX Runtime, image by image."""
    from helpers.steps.convert import ConvertConfig
    from helpers.steps.export.exporter import read_sidecar

    channels = int((read_sidecar(torchscript) or {}).get("channels", images_uint8_nhwc.shape[-1]))
    ConvertConfig(mean_values=mean, std_values=std).validate(channels=channels)  # a sentence, not a broadcast error
    ref = run_torchscript(torchscript, images_uint8_nhwc, mean, std)
    ort = OnnxBackend(onnx_path, mean, std)
    got = ort.run(images_uint8_nhwc)
    ort.close()
    cos = cosine_rows(ref, got)
    diff = np.abs(ref - got).max(axis=1)
    agree = ref.argmax(1) == got.argmax(1)
    rows = [{"image": i, "max_abs_diff": float(diff[i]), "cosine": float(cos[i]), "same_top1": bool(agree[i])} for i in range(len(ref))]
    return ExportCheck(len(ref), float(diff.max()), float(cos.mean()), float(cos.min()), float(agree.mean()), rows)


@dataclass
class ExportCheck:
    """PyTorch (TorchScript) vs ONNX Runtime on the same real images."""

    images: int
    max_abs_diff: float
    mean_cosine: float
    min_cosine: float
    top1_agreement: float
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
