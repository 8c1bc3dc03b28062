"""The index page's one-line verdict for a lead: the quantized model against FP32 (metrics.json's paired comparison,
quoted with its 95 % interval), its size, the exported hybrid (chosen.json's paired comparisons; never a demo's) and
the board; plus which model each part was computed from."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers.runner.figures import (
    backend,
    compare_rows,
    demo_hybrid,
    exported_hybrid,
    family_metric,
    int8_row,
    key_figures,
    map_of,
    number,
    other_head,
    quant_name,
    read_json,
    top1_of,
)
from helpers.runner.freshness import Freshness, Tag, combine
from helpers.text import index as text
from helpers.text.index import TOP1, Metric


def model_sizes(root: Path) -> str:
    """', <rknn size> vs <onnx size>' as the key figures read them ('' when either is missing)."""
    figs = {f.label: f for f in key_figures(root)}
    return text.sizes_clause(figs["ONNX model size"].value, figs["RKNN INT8 model size"].value)


def paired_text(record: Any, key: str = "paired") -> str:
    """The text of a Paired.to_dict() stored under key ('' when absent: files written before the noise rule)."""
    found = record.get(key) if isinstance(record, dict) else None
    return str(found.get("text") or "") if isinstance(found, dict) else ""


def hybrid_and_board(root: Path, metric: Metric) -> list[str]:
    """The verdict's last clauses: the exported hybrid against the quantized model with the same calibration (never a
    demo's: it says the demo ran and leaves its figures to their section), then whether a board has validated the
    model, in the run's metric."""
    parts, quant = [], quant_name(root)
    demo = demo_hybrid(root)
    best = None if demo else exported_hybrid(root, metric)
    if demo:
        parts.append(text.demo_hybrid_clause(demo))
    elif best and number(best.get(metric.key)) is not None:
        base = number((int8_row(compare_rows(root)) or {}).get(metric.key))
        parts.append(text.hybrid_clause(metric, float(best[metric.key]), base, quant, str(best.get("model") or ""),
                                        paired_text(best, "vs_int8"), paired_text(best, "vs_fp32")))
        vs_int8 = best.get("vs_int8")
        if isinstance(vs_int8, dict) and vs_int8.get("verdict") not in (None, "better"):  # the bundle's rule, too
            parts.append(text.hybrid_not_shipped(quant))
    on_board = read_json(root / "board" / "metrics.json")  # notebook 40 with a board: {"board": {<metric>: ...}, ...}
    board = number((on_board.get("board") or {}).get(metric.key)) if isinstance(on_board, dict) else None
    perf = read_json(root / "board" / "perf.json")
    parts.append(text.board_clause(metric, board, isinstance(perf, dict) and bool(perf)))
    return parts


def detect_verdict(root: Path, metrics: dict[str, Any], metric: Metric) -> str:
    """One line for the detector family in the run's metric (mAP50-95; mask or pose mAP50-95 with the box mAP beside
    it): the quantized model against FP32 with the converted head (with its interval), its size, the other head's, the
    hybrid and whether a board has validated the model."""
    fp32_b, int8_b = backend(metrics, "fp32"), backend(metrics, "int8")
    fp32, int8 = map_of(fp32_b), map_of(int8_b)
    if fp32 is None or int8 is None:
        return text.NO_VERDICT
    other = other_head(metrics)
    box = text.box_clause(number(fp32_b.get("box_map50_95")), number(int8_b.get("box_map50_95")))
    return text.detect_verdict(metrics.get("head", "split"), fp32, int8, model_sizes(root), other.get("head") if other else None,
                               map_of(other) if other else None, hybrid_and_board(root, metric), quant_name(root),
                               paired_text(metrics.get("comparison")), metric, box)


def verdict(root: Path) -> str:
    """One line for a lead: the quantized model's top-1 against FP32 with its 95 % interval, its size, the hybrid
    and whether a board has validated the model (the detector family: its mAP50-95, mask or pose mAP50-95)."""
    root = Path(root)
    metrics = read_json(root / "eval" / "metrics.json")
    metric = family_metric(metrics)
    if metric is not None:
        return detect_verdict(root, metrics, metric)
    fp32, int8 = top1_of(backend(metrics, "fp32")), top1_of(backend(metrics, "int8"))
    if fp32 is None or int8 is None:
        return text.NO_VERDICT
    return text.classify_verdict(fp32, int8, model_sizes(root), hybrid_and_board(root, TOP1), quant_name(root),
                                 paired_text(metrics.get("comparison")))


def verdict_tag(root: Path, fresh: Freshness) -> Tag:
    """The verdict's model: notebook 30's measurement, with the hybrid (60) and the board (40) when it quotes them;
    a stale part is named (the verdict's hybrid, its board clause)."""
    parts = [("", "eval/metrics.json")]
    if not demo_hybrid(root) and exported_hybrid(root) is not None:
        parts.append(("the hybrid clause: ", "hybrid/compare.csv"))
    if any((root / "board" / f).exists() for f in ("metrics.json", "perf.json")):
        parts.append(("the board clause: ", "board/devices.json"))
    tags = [(label, fresh.of(src)) for label, src in parts]
    return combine([Tag(t.model, f"{label}{t.why}", t.rerun) if t.stale and label else t for label, t in tags])
