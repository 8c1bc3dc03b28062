"""The float16 search: the ranked order extended by each layer's inputs, and the accuracy-driven search that adds
layers in that order (1, 2, 4, ...) until the judge's metric is within a target of FP32's; as a table (each point with
its float16 count and the one noise rule's comparisons to FP32 and INT8), with the first hybrid that met the target
exported."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import pandas as pd
from tqdm.auto import tqdm

from helpers.core.errors import WorkbookError
from helpers.steps.hybrid.build import PAIRED_PREFIXES, built, float16_tensors, judged, paired_columns
from helpers.steps.hybrid.cfg import Step1Files
from helpers.tasks.measures import Outputs

if TYPE_CHECKING:
    from helpers.steps.hybrid.bench import Bench


def with_inputs(order: Sequence[str], graph: Mapping[str, list[str]], allowed: Iterable[str],
                fused: Iterable[str] = ()) -> list[str]:
    """Each ranked tensor together with the tensors its operation reads, so it computes from float16
    inputs instead of re-quantized INT8 ones: a layer's 'single' error includes quantizing its
    inputs, so that is where the fix belongs. Fused layers (rows without values: they run inside
    their consumer, e.g. Conv inside ConvRelu) go with the tensor they are fused into, on both ends.
    Order kept, duplicates and non-allowed names dropped."""
    allowed, fused = set(allowed), set(fused)
    out: list[str] = []

    def chain(t: str, depth: int = 0) -> list[str]:
        """t and the fused tensors feeding it (one hardware operation)."""
        feed = [x for src in graph.get(t, []) if src in fused and depth < 8 for x in chain(src, depth + 1)]
        return [*feed, t]

    def add(t: str) -> None:
        for x in chain(t):
            if x in allowed and x not in out:
                out.append(x)

    for name in order:
        op = chain(name)
        for t in op:
            for src in graph.get(t, []):
                if src not in op:
                    add(src)
        add(name)
    return out


@dataclass
class SearchPoint:
    """One hybrid tried by the accuracy-driven search: its metric (top-1 or the task's mAP50-95, 0..1) and output cosine."""

    layers: int
    value: float
    mean_cosine: float
    names: list[str]
    extra: dict[str, Any] = field(default_factory=dict)  # what else score() measured (float16 count, paired comparisons)


def doubling(budget: int) -> list[int]:
    """Layer counts 1, 2, 4, ... up to and including budget."""
    counts, n = [], 1
    while n < budget:
        counts.append(n)
        n *= 2
    return [*counts, budget] if budget >= 1 else []


def within(fp32_value: float, value: float, target_pt: float) -> bool:
    """The metric is within target_pt points of FP32's (the search's stopping rule)."""
    return 100 * (fp32_value - value) <= target_pt + 1e-9


def met(fp32_value: float, point: SearchPoint, target_pt: float) -> bool:
    """The search's stopping rule: within target_pt points of FP32, or a hybrid the one noise rule cannot tell from
    FP32 on these images (its paired verdict against FP32 is not 'worse'): more float16 layers could not be shown to
    buy anything, and each costs NPU time."""
    return within(fp32_value, point.value, target_pt) or point.extra.get("vs_fp32_verdict") in ("within noise", "better")


def accuracy_search(order: Sequence[str], score: Callable[[list[str]], tuple[float, float]], fp32_value: float,
                    target_pt: float = 0.2, budget: int = 32, int8_value: float | None = None,
                    int8_close: bool = False) -> tuple[list[SearchPoint], SearchPoint | None]:
    """Add float16 layers in ranked order (1, 2, 4, ... up to budget) until a hybrid meets the stopping rule (`met`).
    score(layers) -> (metric, mean_cosine[, extra columns]). Returns every point and the first that met it (None if
    the budget ran out first). No point at all when plain INT8 (int8_value) is already within target_pt of FP32, or
    the noise rule cannot tell it from FP32 (int8_close)."""
    if budget < 1:
        raise WorkbookError(f"search_budget={budget} allows no layer; set it to at least 1.")
    points: list[SearchPoint] = []
    if int8_close or (int8_value is not None and within(fp32_value, int8_value, target_pt)):
        return points, None
    for n in tqdm(doubling(min(budget, len(order))), desc="hybrid search", unit="build"):
        names = list(order[:n])
        value, cos, *extra = score(names)
        points.append(SearchPoint(n, value, cos, names, extra[0] if extra else {}))
        if met(fp32_value, points[-1], target_pt):
            return points, points[-1]
    return points, None


def search_columns(key: str) -> list[str]:
    """search.csv's columns: the layers chosen (the search's step), the metric, cosine, the built model's float16 layers
    and the count they are out of, whether it met the target, the paired comparisons, the chosen names."""
    paired = [c for p in PAIRED_PREFIXES for c in paired_columns(p, None)]
    return ["layers", key, "mean_cosine", "float16_layers", "layers_total", "met_target", *paired, "layers_list"]


def search(bench: Bench, files: Step1Files, order: Sequence[str], target_pt: float, budget: int, int8_value: float,
           int8_outputs: Outputs | None = None) -> Any:
    """The accuracy-driven search as a table (search_columns); the first hybrid that met the target is exported as
    hybrid/model_search.rknn (removed first, so it never outlives a run). Float16 counts are of step 1's activation
    tensors (bench.layers; order's length when not set)."""
    judge = bench.judge
    log, found = bench.run.logs / "60_search.log", bench.run.hybrid / "model_search.rknn"
    found.unlink(missing_ok=True)
    total = len(bench.layers) or len(order)

    def score(chosen: list[str]) -> tuple[float, float, dict[str, Any]]:
        with built(files, bench.selection(chosen), files.variant_cfg("search"), log) as rk:
            j = judged(rk, judge, int8_outputs)
        return j.score.value, j.score.mean_cosine, {"float16_layers": len(float16_tensors(log, bench.layers or None, chosen)),
                                                    **paired_columns("vs_fp32", j.vs_fp32),
                                                    **paired_columns("vs_int8", j.vs_int8)}

    int8_close = int8_outputs is not None and judge.paired(int8_outputs).verdict != "worse"
    points, hit = accuracy_search(order, score, judge.fp32.value, target_pt, budget, int8_value=int8_value,
                                  int8_close=int8_close)
    if hit:
        with built(files, bench.selection(hit.names), files.variant_cfg("search"), log) as rk:
            rk.export_rknn(str(found))
    rows = [{"layers": p.layers, judge.key: p.value, "mean_cosine": p.mean_cosine, "layers_total": total,
             "met_target": met(judge.fp32.value, p, target_pt), **p.extra, "layers_list": " ".join(p.names)}
            for p in points]
    return pd.DataFrame(rows, columns=search_columns(judge.key))
