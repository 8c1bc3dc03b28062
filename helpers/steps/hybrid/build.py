"""The toolkit's two hybrid steps, building a hybrid from an edited cfg, and measuring a built model (export, the
judge's metric with the one noise rule's paired comparisons to FP32 and INT8, the float16 layers its build log
reports): one row of notebook 60's comparison (Variant), and how its tables store a Paired.

One definition of "layer" for every count in notebook 60: a quantized activation tensor of step 1's cfg (what
custom_quantize_layers can name; hybrid.activation_tensors). A model's float16 count is how many of those its build
log reports in float16: the chosen ones, those plain INT8 already keeps in float16, and any the toolkit adds."""
from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

from helpers.backends.simulator import BuiltSimulator
from helpers.core.errors import WorkbookError, strip_ansi
from helpers.core.paths import atomic_path
from helpers.steps.analysis.parse import combine, parse_error_analysis
from helpers.steps.analysis.run import run_accuracy_analysis
from helpers.steps.hybrid.cfg import Step1Files, find_step1, input_channels, write_cfg
from helpers.tasks.feeds import fitted
from helpers.tasks.measures import Outputs
from helpers.tasks.noise import Paired
from helpers.toolkit.session import RKNN

if TYPE_CHECKING:
    from helpers.tasks.scoring import Judge, Score

_HYBRID_LOG = re.compile(r"Meet hybrid type, dtype: (\w+), tensor: (\S+)")


def float16_tensors(log_path: str | Path, layers: Iterable[str] | None = None, chosen: Iterable[str] = ()) -> list[str]:
    """The tensors the compiler reported as float16 in a build log ('Meet hybrid type' lines), without
    dtype-conversion helpers (names ending __float16 / __int8) and in first-seen order; with layers (step 1's
    activation tensors), only those: the layers notebook 60 counts. A log with no such line at all (a w4a16 build's
    compiler prints none) counts the chosen layers instead, so a hybrid never reads as '0 layers in float16'."""
    text = strip_ansi(Path(log_path).read_text(errors="replace")) if Path(log_path).exists() else ""
    allowed = set(layers) if layers else None
    if not _HYBRID_LOG.search(text):
        return [c for c in dict.fromkeys(chosen) if allowed is None or c in allowed]
    seen: list[str] = []
    for dtype, name in _HYBRID_LOG.findall(text):
        if dtype == "float16" and not re.search(r"__(float16|int8|int16|uint8)$", name) and name not in seen:
            if allowed is None or name in allowed:
                seen.append(name)
    return seen


PAIRED_PREFIXES = ("vs_fp32", "vs_int8")


def paired_columns(prefix: str, paired: Paired | dict | None) -> dict[str, Any]:
    """A Paired as table columns: `<prefix>` (its text), `_pt`, `_low_pt`, `_high_pt`, `_verdict`, and `_paired` (its
    JSON, so chosen.json can store it whole); empty cells when there is no comparison (FP32's row, a model not built)."""
    if isinstance(paired, dict):
        paired = Paired.from_dict(paired)
    if paired is None:
        return {prefix: "", f"{prefix}_pt": float("nan"), f"{prefix}_low_pt": float("nan"), f"{prefix}_high_pt": float("nan"),
                f"{prefix}_verdict": "", f"{prefix}_paired": ""}
    return {prefix: paired.text, f"{prefix}_pt": round(paired.difference_pt, 3), f"{prefix}_low_pt": round(paired.low_pt, 3),
            f"{prefix}_high_pt": round(paired.high_pt, 3), f"{prefix}_verdict": paired.verdict,
            f"{prefix}_paired": json.dumps(paired.to_dict())}


def paired_of(row: Mapping[str, Any], prefix: str) -> Paired | None:
    """The Paired a table row stores under prefix (paired_columns), or None when the row has none."""
    raw = row.get(f"{prefix}_paired")
    if not isinstance(raw, str) or not raw.strip():
        return None
    return Paired.from_dict(json.loads(raw))


def step1(rk: Any, dataset: Path, proposal: bool = False, proposal_dataset_size: int = 1) -> Step1Files:
    """Run hybrid_quantization_step1 on a configured+loaded toolkit (rk.workdir receives the files)."""
    rk.hybrid_quantization_step1(dataset=str(dataset), proposal=proposal, proposal_dataset_size=proposal_dataset_size)
    return find_step1(rk.workdir)


def step2(rk: Any, step1_files: Step1Files, cfg: Path) -> None:
    """Run hybrid_quantization_step2 with step1's model/data and the given (edited) cfg."""
    for p in (step1_files.model, step1_files.data, cfg):
        if not Path(p).is_file():
            raise WorkbookError(f"Hybrid step 2 needs {p}, which does not exist; "
                                "run hybrid step 1 (and write the edited cfg) first.")
    rk.hybrid_quantization_step2(model_input=str(step1_files.model), data_input=str(step1_files.data),
                                 model_quantization_cfg=str(cfg))


@dataclass
class Judged:
    """A built model on the judge's images: its score, raw outputs, and the one noise rule's verdicts against FP32
    and (when INT8's outputs are given) against plain INT8, each the model minus the reference."""

    score: "Score"
    outputs: Outputs
    vs_fp32: Paired
    vs_int8: Paired | None


def judged(rk: Any, judge: "Judge", int8_outputs: Outputs | None = None) -> Judged:
    """Initialise a built toolkit (e.g. by step 2, batch 1) in the simulator, run it on the judge's images and score
    it: top-1 or the task's mAP50-95 (box, mask, pose), the output cosine to FP32, and judge.paired against FP32 and
    plain INT8."""
    rk.init_runtime(target=None)
    outputs = BuiltSimulator(rk, fitted(getattr(rk, "input_channels", None))).outputs(judge.pixels)  # 1 = grayscale
    return Judged(judge.score(outputs), outputs, judge.paired(outputs),
                  judge.paired(outputs, int8_outputs) if int8_outputs is not None else None)


@contextlib.contextmanager
def built(step1_files: Step1Files, layers: Iterable[str] | Mapping[str, str], cfg_out: Path, log_path: Path) -> Iterator[Any]:
    """Write the edited cfg for layers, run step 2 (in step1's folder) and yield the built toolkit."""
    out = write_cfg(step1_files, layers, cfg_out)
    with RKNN(log_path, workdir=step1_files.folder) as rk:
        step2(rk, step1_files, out)
        rk.input_channels = input_channels(step1_files)
        yield rk


@dataclass
class Variant:
    """One model in the comparison table (FP32, INT8, a hybrid, auto_hybrid); value is the judge's metric."""

    name: str
    value: float
    mean_cosine: float
    min_cosine: float
    rknn_bytes: int
    float16_layers: int
    layers: list[str] = field(default_factory=list)
    note: str = ""
    file: str = ""  # the exported .rknn, relative to the run folder ('' when none was built)
    vs_fp32: dict | None = None  # Paired.to_dict(): this model minus FP32 on the same images
    vs_int8: dict | None = None  # Paired.to_dict(): this model minus plain INT8 (same calibration)
    float16: list[str] = field(default_factory=list)  # the layers its build log reports in float16 (float16_layers of them)

    def row(self, judge: "Judge") -> dict[str, Any]:
        """The comparison table's columns, the metric's named after the judge (top1, map50_95, mask_map50_95,
        pose_map50_95), then the paired comparisons to FP32 and INT8 (paired_columns)."""
        return {"model": self.name, judge.key: self.value, judge.delta_key: round(100 * (self.value - judge.fp32.value), 2),
                "mean_cosine": self.mean_cosine, "min_cosine": self.min_cosine,
                "size_kb": round(self.rknn_bytes / 1024, 1) if self.rknn_bytes else float("nan"),
                "float16_layers": self.float16_layers, "note": self.note, "file": self.file, "layers": " ".join(self.layers),
                "float16_list": " ".join(self.float16),
                **paired_columns("vs_fp32", self.vs_fp32), **paired_columns("vs_int8", self.vs_int8)}


def measure(rk: Any, name: str, judge: "Judge", rknn_out: Path, log_path: Path, analysis_images: Sequence[Path] = (),
            analysis_dir: Path | None = None, layers: Sequence[str] = (), int8_outputs: Outputs | None = None,
            counted: Iterable[str] | None = None) -> tuple[Variant, Any, Outputs]:
    """On a built toolkit: optional accuracy_analysis (combined table), export to rknn_out (atomic), then the
    judge's metric, output cosine and paired comparisons (FP32, and INT8 given its outputs) in the simulator; the
    float16 count is of the layers in `counted` (step 1's activation tensors). Returns the Variant, the table (or
    None) and the model's raw outputs."""
    table = None
    if analysis_images:
        files = run_accuracy_analysis(rk, list(analysis_images), Path(analysis_dir), progress=False)
        table = combine([parse_error_analysis(f) for f in files])
    rknn_out = Path(rknn_out)
    with atomic_path(rknn_out, suffix=".partial.rknn") as tmp:
        rk.export_rknn(str(tmp))
    j = judged(rk, judge, int8_outputs)
    s, f16 = j.score, float16_tensors(log_path, counted, layers)
    v = Variant(name, s.value, s.mean_cosine, s.min_cosine, rknn_out.stat().st_size, len(f16), list(layers),
                vs_fp32=j.vs_fp32.to_dict(), vs_int8=j.vs_int8.to_dict() if j.vs_int8 else None, float16=f16)
    return v, table, j.outputs
