"""The index page of a detection run: every figure and the verdict in mAP50-95, read from notebook 50's and 60's
tables in the team's contract format (the metric column is the first of top1 / map50_95 a table has), and no
row of the other task. The run folders are written here, file by file, as the notebooks write them."""
from __future__ import annotations

import csv
import html
import json
import re
from pathlib import Path

from helpers.runner import figures as run_figures
from helpers.runner import index

CALIB = "calibration.txt (50 images)"
SWEEP = ["algorithm", "method", "map50_95", "map50_95_delta_pt", "mean_cosine", "min_cosine", "map50", "build_s", "why",
         "fp32_map50_95", "images", "calibration"]
COMPARE = ["model", "map50_95", "map50_95_delta_pt", "mean_cosine", "min_cosine", "size_kb", "float16_layers", "note", "file",
           "layers",
           "calibration"]
SEARCH = ["layers", "map50_95", "mean_cosine", "met_target", "layers_list"]


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def detect_metrics(root: Path, fp32: float = 0.766, int8: float = 0.744) -> None:
    """eval/metrics.json as notebook 30 writes it for a detector (roles fp32 / int8 / diagnostic)."""
    rows = [{"name": "FP32 split head", "role": "fp32", "head": "split", "precision": "FP32", "map50_95": fp32, "map50": 0.975},
            {"name": "INT8 split head", "role": "int8", "head": "split", "precision": "INT8", "map50_95": int8, "map50": 0.970,
             "cosine_mean": 0.99987, "cosine_min": 0.9997},
            {"name": "FP32 stock head", "role": "diagnostic", "head": "stock", "precision": "FP32", "map50_95": fp32,
             "map50": 0.975},
            {"name": "INT8 stock head", "role": "diagnostic", "head": "stock", "precision": "INT8", "map50_95": 0.0, "map50": 0.0,
             "cosine_mean": 0.99993}]
    write_json(root / "eval" / "metrics.json", {"task": "detect", "head": "split", "imgsz": 160, "backends": rows, "images": 50})
    write_json(root / "rknn" / "convert.json",
               {"load_path": "onnx", "source_bytes": 10_410_000, "rknn_bytes": 4_110_000, "seconds": 5.1,
                                                "config": {"target_platform": "rk3588"}})


def detect_tables(root: Path, calibration: str = CALIB, chosen: bool = True) -> None:
    """analysis/sweep.csv, hybrid/compare.csv, hybrid/search.csv and hybrid/chosen.json of notebooks 50 and 60, scored
    in mAP50-95."""
    fp32 = 0.766
    sweep = [("normal", "channel", 0.744, 0.99987, 5.2), ("normal", "layer", 0.701, 0.9990, 5.0),
             ("mmse", "channel", 0.752, 0.99990, 31.0)]
    write_csv(root / "analysis" / "sweep.csv", SWEEP, [
        {"algorithm": a, "method": m, "map50_95": v, "map50_95_delta_pt": round(100 * (v - fp32), 2), "mean_cosine": c,
         "min_cosine": c - 0.001,
         "map50": 0.97, "build_s": b, "why": "", "fp32_map50_95": fp32, "images": 50, "calibration": calibration} for a, m, v,
             c, b in sweep]
        + [{"algorithm": "kl_divergence", "method": "layer", "why": "build failed: RknnError", "fp32_map50_95": fp32,
            "images": 50,
            "calibration": calibration}])
    compare = [("FP32", fp32, 1.0, 10166.0, 0, "", ""), ("INT8", 0.744, 0.99987, 4013.7, 2, "hybrid/model_int8.rknn", ""),
               ("hybrid (a) your list", None, None, None, 0, "", "no layers picked (user_layers is empty)"),
               ("hybrid (c) auto from ranking", 0.751, 0.99991, 4210.0, 8, "hybrid/strategy_hybrid_c_auto_from_ranking.rknn", ""),
               ("build(auto_hybrid=True)", 0.744, 0.99987, 4013.7, 2, "", "")]
    write_csv(root / "hybrid" / "compare.csv", COMPARE, [
        {"model": name, "map50_95": v, "map50_95_delta_pt": None if v is None else round(100 * (v - fp32), 2), "mean_cosine": c,
         "min_cosine": c, "size_kb": kb, "float16_layers": n, "note": note, "file": f, "layers": "", "calibration": calibration}
        for name, v, c, kb, n, f, note in compare])
    write_csv(root / "hybrid" / "search.csv", SEARCH, [
        {"layers": n, "map50_95": v, "mean_cosine": c, "met_target": met, "layers_list": "a b"}
        for n, v, c, met in ((1, 0.746, 0.99988, False), (2, 0.749, 0.99989, False), (4, 0.758, 0.99992, True),
                             (8, 0.760, 0.99993, True))])
    if chosen:
        write_json(root / "hybrid" / "chosen.json", {"model": "hybrid search (4 layers)", "map50_95": 0.758, "metric": "map50_95",
                                                     "mean_cosine": 0.99992, "float16_layers": 4,
                                                         "file": "hybrid/model_hybrid.rknn",
                                                     "calibration": calibration, "demo": calibration.startswith("demo")})


def figures(root: Path) -> dict[str, run_figures.Figure]:
    return {f.label: f for f in run_figures.key_figures(root)}


def page_text(root: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", index.index_html(index.summarize(root))))


def test_detection_index_reads_50_and_60_in_map(tmp_path):
    detect_metrics(tmp_path)
    detect_tables(tmp_path)
    (tmp_path / "hybrid" / "model_hybrid.rknn").write_bytes(b"\0" * 4_200_000)
    figs = figures(tmp_path)
    assert figs["Hybrid mAP50-95"].raw == 0.758
    assert figs["Hybrid mAP50-95"].value == ("0.758 (hybrid search (4 layers); INT8 baseline of notebook 60: 0.744, "
                                             "hybrid +1.4 pt)")
    best = figs["Best quantization setting by mAP50-95 (notebook 50 sweep)"]
    assert best.raw == 0.752 and best.value == "mmse / channel: 0.752 mAP50-95 (-1.4 pt vs FP32; best of 3 settings built)"
    assert figs["Final-output cosine INT8 vs FP32 (mean, split head)"].value == "0.9999"  # metrics.json's INT8 split-head row
    assert figs["INT8 mAP50-95 / mAP50, stock head (same images)"].value == "0.000 / 0.000 (whole-tensor cosine 0.9999)"
    assert figs["Final-output cosine hybrid vs FP32 (mean)"].value.startswith("0.9999 (hybrid search (4 layers); INT8 baseline")
    assert figs["RKNN hybrid model size"].value == "4.20 MB"
    assert index.verdict(tmp_path) == (
        "INT8 (split head): +2.2 pt mAP50-95 loss vs FP32 (0.744 vs 0.766), 4.11 MB vs 10.41 MB; with the stock head "
        "INT8 reaches 0.000; "
        "hybrid search (4 layers): 0.758 mAP50-95, +1.4 pt vs the INT8 with the same calibration; "
        "not yet validated on a board.")
    assert not any("top-1" in label or "top1" in label for label in figs), "a classification row on a detector's page"
    text = page_text(tmp_path)
    assert "top-1" not in text and "%" not in text.split("Key figures")[1].split("Five most")[0]
    # notebook 40 with a board writes board/metrics.json (helpers.steps.board.DetectOnBoard.summary): the verdict then says so
    (tmp_path / "board").mkdir(exist_ok=True)
    (tmp_path / "board" / "metrics.json").write_text(json.dumps({"task": "detect", "board": {"map50_95": 0.7412, "map50": 0.97}}))
    assert index.verdict(tmp_path).endswith("; validated on a board: 0.741 mAP50-95.")
    # one calibration for every quantized model: said once above the hybrid table instead of a column of repeats
    assert f"built with the same calibration: {CALIB})" in text
    hybrid_head = index.index_html(index.summarize(tmp_path)).split('id="hybrid">')[1].split("</tr>")[0]
    assert "<th>map50_95</th>" in hybrid_head and "calibration" not in hybrid_head
    assert "map50_95_delta_pt" in text and "hybrid (c) auto from ranking" in text  # notebook 60's table, its own columns


def test_detection_hybrid_without_chosen_json_follows_notebook_60s_rule(tmp_path):
    """Without chosen.json the index applies hybrid.choose_export to the tables: the search's first point that met
    its target (4 layers, 0.758) beats strategy (c) (0.751)."""
    detect_metrics(tmp_path)
    detect_tables(tmp_path, chosen=False)
    fig = figures(tmp_path)["Hybrid mAP50-95"]
    assert fig.raw == 0.758 and "hybrid search (4 layers)" in fig.value
    assert run_figures.exported_hybrid(tmp_path)["map50_95"] == "0.758"
    assert "top1" not in run_figures.exported_hybrid(tmp_path)


def test_detection_demo_hybrid_and_sweep_stay_out_of_the_verdict_and_key_figures(tmp_path):
    """Figures of a demo run of 50 or 60 (a deliberately poor calibration) are not figures of the model: the key figures
    and the verdict say a demo ran, the numbers stay in the labelled DEMO sections."""
    detect_metrics(tmp_path)
    detect_tables(tmp_path, calibration="demo: 1 image")
    figs = figures(tmp_path)
    for label, nb in (("Hybrid mAP50-95", 60), ("Best quantization setting by mAP50-95 (notebook 50 sweep)", 50)):
        assert figs[label].raw is None and figs[label].value.startswith(f"DEMO run of notebook {nb} (demo_calib_images = 1)")
    line = index.verdict(tmp_path)
    assert "0.758" not in line and "; hybrid: notebook 60 ran as a demo (demo_calib_images = 1)" in line


def test_detection_run_before_30_shows_detector_rows_only(tmp_path):
    """A detection run that stopped before notebook 30 (model/export_check.json says task detect): its rows are the
    detector's, each "not run"; a classification run's page never shows a detector's row."""
    write_json(tmp_path / "model" / "export_check.json", {"task": "detect", "head": "split"})
    figs = figures(tmp_path)
    assert "FP32 mAP50-95 / mAP50 (ONNX Runtime)" in figs and "Hybrid mAP50-95" in figs
    assert not any("top-1" in label for label in figs)
    assert figs["Best quantization setting by mAP50-95 (notebook 50 sweep)"].value is None
    classify = tmp_path / "classify"
    write_json(classify / "eval" / "metrics.json", {"backends": [{"role": "fp32", "top1": 0.95}, {"role": "int8", "top1": 0.9}]})
    write_csv(classify / "analysis" / "sweep.csv", ["algorithm", "method", "top1", "mean_cosine", "build_s"],
              [{"algorithm": "normal", "method": "channel", "top1": 0.9, "mean_cosine": 0.99, "build_s": 1.0}])
    labels = list(figures(classify))
    assert "Hybrid top-1" in labels and not any("mAP" in label or "sweep" in label for label in labels)


def test_sweep_with_no_built_setting_is_not_run(tmp_path):
    detect_metrics(tmp_path)
    write_csv(tmp_path / "analysis" / "sweep.csv", SWEEP, [{"algorithm": "mmse", "method": "layer", "why": "crashed (SIGABRT)",
                                                           "fp32_map50_95": 0.766, "images": 50, "calibration": CALIB}])
    assert figures(tmp_path)["Best quantization setting by mAP50-95 (notebook 50 sweep)"].value is None
