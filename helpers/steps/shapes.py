"""Dynamic input shapes and batch, shape by shape: the shapes notebook 20 declared (`dynamic_input`, `rknn_batch_size`),
the toolkit's per-op profile of each, and notebook 30's score of each (the task's metric and the output cosine of the
simulator against ONNX Runtime at that same shape).

rknn-toolkit2 2.5.0 writes one per-op table per dynamic shape into the verbose build log (largest first), matched here
by the input shape it lists; for `rknn_batch_size` it profiles the one-image graph only. One simulator build serves
every shape (what dynamic_input is for); the FP32 reference is the exported ONNX with its input's height and width left
free, so an ONNX exported at one size runs at another where its graph allows. Sentences live in helpers.text.shapes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from helpers.core.errors import WorkbookError
from helpers.core.paths import Run, atomic_path
from helpers.steps.evaluate import simulator_from_record
from helpers.steps.judge import judge_for
from helpers.steps.preflight import estimate
from helpers.toolkit.options import ConvertConfig
from helpers.toolkit.profile import BuildProfile, parse_profiles
from helpers.toolkit.record import ConvertRecord

SHAPES_CSV = "eval/shapes.csv"
_SHAPE = re.compile(r"\((\d+),(\d+),(\d+),(\d+)\)")


@dataclass(frozen=True)
class Shape:
    """One declared input shape: images per call (rknn_batch_size), channels, height, width."""

    batch: int
    channels: int
    height: int
    width: int

    @property
    def label(self) -> str:
        return f"{self.batch}x{self.channels}x{self.height}x{self.width}"

    @property
    def image(self) -> tuple[int, int, int]:
        """channels, height, width: what the toolkit's profile of the one-image graph lists."""
        return self.channels, self.height, self.width


def declared(cfg: ConvertConfig, input_size: int, channels: int) -> list[Shape]:
    """Every shape the model takes: one per dynamic_input set (at rknn_batch_size images per call), or the one batched
    shape of rknn_batch_size > 1; empty for a model with one fixed shape of one image."""
    batch = int(cfg.rknn_batch_size or 1)
    if cfg.dynamic_input:
        return [Shape(batch, *map(int, s[0][1:])) for s in cfg.dynamic_input]
    return [Shape(batch, channels, input_size, input_size)] if batch > 1 else []


def profiled_image(profile: BuildProfile) -> tuple[int, int, int] | None:
    """(channels, height, width) of the input a profile was computed for: its InputOperator's output shape."""
    rows = profile.layers[profile.layers["op_type"] == "InputOperator"]
    m = _SHAPE.search(str(rows.iloc[0]["output_shape"])) if len(rows) else None
    return tuple(int(v) for v in m.groups()[1:]) if m else None


def profiled_label(profile: BuildProfile) -> str:
    """The one-image input shape a profile describes, as a label ('1x3x224x224'); '' when its table lists none."""
    image = profiled_image(profile)
    return "1x" + "x".join(map(str, image)) if image else ""


def profiles_by_shape(log_path: str | Path, shapes: list[Shape]) -> dict[Shape, BuildProfile | None]:
    """Each declared shape's profile in the build log (None when the toolkit wrote none for it); a later build in the log
    (the retry after a graph rule) replaces an earlier one."""
    log_path = Path(log_path)
    if not log_path.is_file():
        raise WorkbookError(f"Build log {log_path} does not exist; run the convert step (notebook 20) first.")
    found = {}
    for p in parse_profiles(log_path.read_text(errors="replace")):
        if p.complete and len(p.layers) and profiled_image(p):
            found[profiled_image(p)] = p
    return {s: found.get(s.image) for s in shapes}


def preflight_table(log_path: str | Path, shapes: list[Shape], chip: str) -> pd.DataFrame:
    """One row per shape: ops on the CPU, weight + internal memory (MB), cycles and the NPU time (a number only where the
    chip's fit is useful: none today), and what the toolkit profiled (the shape itself, or one image of a batch)."""
    rows = []
    for shape, prof in profiles_by_shape(log_path, shapes).items():
        row = {"shape": shape.label, "profiled": "no table in the log" if prof is None else
               f"one image (1x{shape.channels}x{shape.height}x{shape.width})" if shape.batch > 1 else "this shape"}
        if prof is not None:
            cpu = prof.cpu_ops
            est = estimate(prof, chip)
            row |= {"cpu_ops": len(cpu), "cpu_op_types": ", ".join(dict.fromkeys(cpu["op_type"])),
                    "weight_mb": round((prof.weight_kb or 0) / 1024, 3), "internal_mb": round((prof.internal_kb or 0) / 1024, 3),
                    "cycles_m": round(prof.total_cycles / 1e6, 3), "npu_ms": None if est.ms is None else round(est.ms, 2)}
        rows.append(row)
    return pd.DataFrame(rows)


def free_size_onnx(onnx: str | Path, out: str | Path) -> Path:
    """A copy of the ONNX whose image input has free height and width (batch as exported) and whose outputs have free
    dims, so ONNX Runtime runs it at every declared size; written atomically."""
    import onnx as onnx_lib  # slow optional import, only when a model has several shapes

    model = onnx_lib.load(str(onnx))
    inits = {i.name for i in model.graph.initializer}
    image = next(i for i in model.graph.input if i.name not in inits)  # older exporters list weights among the inputs
    dims = image.type.tensor_type.shape.dim
    for k, name in ((2, "height"), (3, "width")):
        if len(dims) == 4:
            dims[k].dim_param = name
    for out_value in model.graph.output:
        for k, d in enumerate(out_value.type.tensor_type.shape.dim):
            d.dim_param = f"{out_value.name}_{k}"
    del model.graph.value_info[:]
    with atomic_path(Path(out), ".partial.onnx") as tmp:
        onnx_lib.save(model, str(tmp))
    return Path(out)


def score(run: Run, record: ConvertRecord, data_dir: Path, shapes: list[Shape], images: int = 0) -> pd.DataFrame:
    """Every shape scored on the first `images` validation images (0: all): FP32 (ONNX Runtime at that shape) and INT8
    (the simulator, fed `batch` images per call) in the task's metric, and the per-image output cosine; written to
    eval/shapes.csv. One simulator build of notebook 20's recorded options serves every shape."""
    onnx = free_size_onnx(run.need("model/model.onnx", "10_export.ipynb"), run.eval / "shapes" / "model_free_size.onnx")
    rows = []
    # every shape has rknn_batch_size images per call: the simulator is built once for it
    with simulator_from_record(record, run.logs / "shapes.log", batch=shapes[0].batch, name="INT8 simulator") as sim:
        for shape in shapes:
            row = {"shape": shape.label, "images_per_call": shape.batch}
            if shape.height != shape.width:
                rows.append(row | {"note": "not scored: the workbook's images are square (height = width)"})
                continue
            try:
                judge = judge_for(run, replace(record, input_size=shape.height), data_dir, images, onnx=onnx)
            except Exception as exc:  # ONNX Runtime refuses the graph at this size (e.g. a Reshape to a fixed shape)
                if "onnxruntime" not in type(exc).__module__:
                    raise
                rows.append(row | {"note": f"not scored: ONNX Runtime cannot run the ONNX at this size ({str(exc)[:160]})"})
                continue
            got = judge.score(sim.outputs(judge.pixels))
            rows.append(row | {"images": judge.images, "metric": judge.label, "fp32": round(judge.fp32.value, 4),
                               "int8": round(got.value, 4), "delta_pt": round(100 * (got.value - judge.fp32.value), 2),
                               "mean_cosine": round(got.mean_cosine, 5), "min_cosine": round(got.min_cosine, 5), "note": ""})
    table = pd.DataFrame(rows)
    with atomic_path(run.root / SHAPES_CSV) as tmp:
        table.to_csv(tmp, index=False)
    return table
