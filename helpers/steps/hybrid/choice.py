"""Which hybrid is exported: the candidates, the one rule (also the index page's), the copy to
hybrid/model_hybrid.rknn and its record hybrid/chosen.json."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from helpers.core.paths import atomic_path, write_json_atomic
from helpers.steps.hybrid.bench import AUTO_HYBRID
from helpers.steps.hybrid.build import PAIRED_PREFIXES, paired_columns, paired_of
from helpers.tasks.measures import METRIC_LABELS, metric_in

if TYPE_CHECKING:
    from helpers.core.paths import Run


def _num(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if x == x else None


def export_candidates(compare_rows: Sequence[Mapping[str, Any]], search_rows: Sequence[Mapping[str, Any]] = (),
                      root: Path | None = None, search_file: str = "hybrid/model_search.rknn") -> list[dict[str, Any]]:
    """Every hybrid that may be exported: the strategy rows with a metric value (top1, map50_95, mask_map50_95 or
    pose_map50_95, whichever the table holds) and a model file, build(auto_hybrid=True) when it kept more tensors in
    float16 than plain INT8 (else it is INT8), plus the search's first point that met its target (a new candidate beside
    them, never in place of one). Each candidate names its metric ("metric"). With root (the run folder) only candidates
    whose file exists there are kept."""
    def has_file(f: Any) -> bool:
        f = "" if f is None or (isinstance(f, float) and f != f) else str(f)
        return bool(f) and (root is None or (Path(root) / f).is_file())

    key = metric_in(k for r in compare_rows for k in r)
    int8_f16 = next((_num(r.get("float16_layers")) or 0.0 for r in compare_rows if r.get("model") == "INT8"), 0.0)

    def hybrid_row(r: Mapping[str, Any]) -> bool:
        name = str(r.get("model", ""))
        return name.startswith("hybrid") or (name == AUTO_HYBRID and (_num(r.get("float16_layers")) or 0.0) > int8_f16)

    cands = [{**r, "metric": key} for r in compare_rows
             if hybrid_row(r) and _num(r.get(key)) is not None and has_file(r.get("file"))]
    met = [r for r in search_rows if str(r.get("met_target")).lower() in ("true", "1", "1.0")]
    if met and has_file(search_file) and _num(met[0].get(key)) is not None:
        r = met[0]
        f16 = _num(r.get("float16_layers"))
        n = int(f16) if f16 is not None else int(float(r["layers"]))
        # a search.csv written before its float16 count keeps its old name: the layers the search chose
        name = search_name(n, _num(r.get("layers_total"))) if f16 is not None else f"hybrid search ({n} layers)"
        paired = {c: v for p in PAIRED_PREFIXES for c, v in paired_columns(p, paired_of(r, p)).items()}
        cands.append({"model": name, key: r[key], "mean_cosine": r["mean_cosine"],
                      "float16_layers": n, "file": search_file, "metric": key, **paired})
    return cands


def search_name(float16_layers: int, total: float | None) -> str:
    """How the search's model is named: its float16 layers out of the model's ('all 112 of 112' when every one is)."""
    if not total:
        return f"hybrid search ({float16_layers} layers in float16)"
    total = int(total)
    return f"hybrid search ({'all ' if float16_layers >= total else ''}{float16_layers} of {total} layers in float16)"


def choose_export(candidates: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The rule: of the hybrids the one noise rule cannot tell from FP32 (paired verdict vs FP32 not 'worse'), the one
    with the fewest float16 layers (each costs NPU time; among these the difference cannot be shown on these images);
    when none is, the best validation metric (top-1 or the task's mAP50-95), then higher mean output cosine, then fewer layers."""
    if not candidates:
        return None
    key = str(candidates[0].get("metric") or metric_in(candidates[0]))

    def close(r: Mapping[str, Any]) -> bool:
        p = paired_of(r, "vs_fp32")
        return p is not None and p.verdict != "worse"

    def metric_first(r: Mapping[str, Any]) -> tuple[float, float, float]:
        return -(_num(r.get(key)) or 0.0), -(_num(r.get("mean_cosine")) or 0.0), _num(r.get("float16_layers")) or 0.0

    near = [r for r in candidates if close(r)]
    best = (min(near, key=lambda r: ((_num(r.get("float16_layers")) or 0.0), *metric_first(r)[:2])) if near
            else min(candidates, key=metric_first))
    return {**best, "metric": key}


def not_below_int8(value: float, int8_value: float) -> bool:
    """The hybrid's metric is at least INT8's, as the sentences print them (to 0.01 pt)."""
    return round(100 * (value - int8_value), 2) >= 0


def export_choice(run: "Run", choice: Mapping[str, Any], calibration: str, demo: bool, int8_value: float | None = None) -> Path:
    """Copy the chosen model to hybrid/model_hybrid.rknn (hybrid/model_hybrid_demo.rknn under demo calibration,
    which nothing deploys; the other name's file from an earlier run is removed, as chosen.json no longer
    describes it) and record the choice in hybrid/chosen.json, with whether it scores below INT8's int8_value
    (the bundle then leaves it out); returns the exported path."""
    src = run.resolve(str(choice["file"]))
    final = run.hybrid / ("model_hybrid_demo.rknn" if demo else "model_hybrid.rknn")
    with atomic_path(final) as tmp:
        shutil.copyfile(src, tmp)
    (run.hybrid / ("model_hybrid.rknn" if demo else "model_hybrid_demo.rknn")).unlink(missing_ok=True)  # not described
    key = str(choice.get("metric") or metric_in(choice))
    below = int8_value is not None and not not_below_int8(float(choice[key]), int8_value)
    write_chosen(run.hybrid / "chosen.json", {**choice, "calibration": calibration, "demo": demo, "below_int8": below},
                 run.relative(final))
    return final


def write_chosen(path: Path, row: Mapping[str, Any], model: Path) -> None:
    """Record which hybrid was exported (name, its metric under the metric's own key plus "metric" and "metric_label"
    naming it: map50_95 / mAP50-95, mask_map50_95 / mask mAP50-95, ...,
    output cosine, float16 layers, calibration, demo flag; model relative to the run folder) as JSON, atomically,
    with the one noise rule's verdicts: "vs_int8" and "vs_fp32", each Paired.to_dict() (the hybrid minus plain INT8 /
    FP32 on the same images: difference_pt, low_pt, high_pt, verdict, method, images, p_value, discordant, text) or
    null when the row has none."""
    def plain(v: Any) -> Any:
        return v.item() if hasattr(v, "item") else v

    key = str(row.get("metric") or metric_in(row))
    data = {"model": str(row["model"]), key: plain(row[key]), "metric": key, "metric_label": METRIC_LABELS.get(key, key),
            "mean_cosine": plain(row["mean_cosine"]),
            "float16_layers": plain(row.get("float16_layers")), "file": Path(model).as_posix(),
            "calibration": str(row.get("calibration", "")), "demo": bool(row.get("demo", False)),
            "below_int8": bool(row.get("below_int8", False))}
    for prefix in PAIRED_PREFIXES:
        paired = paired_of(row, prefix)
        data[prefix] = paired.to_dict() if paired else None
    write_json_atomic(path, data)
