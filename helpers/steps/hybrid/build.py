"""The toolkit's two hybrid steps, building a hybrid from an edited cfg, and measuring a built model (export, the
judge's metric, the float16 tensors its build log reports): one row of notebook 60's comparison (Variant)."""
from __future__ import annotations

import contextlib
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
from helpers.toolkit.session import RKNN

if TYPE_CHECKING:
    from helpers.tasks.scoring import Judge, Score

_HYBRID_LOG = re.compile(r"Meet hybrid type, dtype: (\w+), tensor: (\S+)")


def float16_tensors(log_path: str | Path) -> list[str]:
    """The tensors the compiler reported as float16 in a build log ('Meet hybrid type' lines), without
    dtype-conversion helpers (names ending __float16 / __int8) and in first-seen order."""
    text = strip_ansi(Path(log_path).read_text(errors="replace")) if Path(log_path).exists() else ""
    seen: list[str] = []
    for dtype, name in _HYBRID_LOG.findall(text):
        if dtype == "float16" and not re.search(r"__(float16|int8|int16|uint8)$", name) and name not in seen:
            seen.append(name)
    return seen


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


def judged(rk: Any, judge: "Judge") -> "Score":
    """Initialise a built toolkit (e.g. by step 2, batch 1) in the simulator and score its raw outputs on the
    judge's images: top-1 or mAP50-95, and the output cosine to FP32."""
    rk.init_runtime(target=None)
    return judge.score(BuiltSimulator(rk, fitted(getattr(rk, "input_channels", None))).outputs(judge.pixels))  # 1 = grayscale


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

    def row(self, judge: "Judge") -> dict[str, Any]:
        """The comparison table's columns, the metric's named after the judge (top1 / map50_95)."""
        return {"model": self.name, judge.key: self.value, judge.delta_key: round(100 * (self.value - judge.fp32.value), 2),
                "mean_cosine": self.mean_cosine, "min_cosine": self.min_cosine,
                "size_kb": round(self.rknn_bytes / 1024, 1) if self.rknn_bytes else float("nan"),
                "float16_layers": self.float16_layers, "note": self.note, "file": self.file, "layers": " ".join(self.layers)}


def measure(rk: Any, name: str, judge: "Judge", rknn_out: Path, log_path: Path, analysis_images: Sequence[Path] = (),
            analysis_dir: Path | None = None, layers: Sequence[str] = ()) -> tuple[Variant, Any]:
    """On a built toolkit: optional accuracy_analysis (combined table), export to rknn_out (atomic), then the
    judge's metric and output cosine vs FP32 in the simulator. Returns the Variant and the table (or None)."""
    table = None
    if analysis_images:
        files = run_accuracy_analysis(rk, list(analysis_images), Path(analysis_dir), progress=False)
        table = combine([parse_error_analysis(f) for f in files])
    rknn_out = Path(rknn_out)
    with atomic_path(rknn_out, suffix=".partial.rknn") as tmp:
        rk.export_rknn(str(tmp))
    score = judged(rk, judge)
    v = Variant(name, score.value, score.mean_cosine, score.min_cosine, rknn_out.stat().st_size, len(float16_tensors(log_path)),
                list(layers))
    return v, table
