"""helpers.steps.matrix: the compatibility matrix on one tiny model x a few chips, real toolkit, every cell a child process."""
from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers.core.errors import WorkbookError
from helpers.steps import matrix


def test_small_matrix_rows_say_what_built_and_why_the_others_did_not(tmp_path):
    cells = [("gray-cnn-64", "rk3588", "w8a8"), ("gray-cnn-64", "rv1106", "w8a8"),
             ("gray-cnn-64", "rk3566", "w4a16"),   # a dtype this chip does not have
             ("gray-cnn-64", "rk3562", "w8a16")]   # aborts the toolkit's process in 2.5.0
    with ThreadPoolExecutor(max_workers=2) as pool:
        result = matrix.run_matrix(tmp_path, models=["gray-cnn-64"], chips=["rk3588", "rv1106", "rk3566", "rk3562"],
                                   executor=pool, cells=cells, images=2, log=lambda *_: None)
    assert len(result) == 4
    rows = {(r["chip"], r["dtype"]): r for r in csv.DictReader((tmp_path / "matrix.csv").open())}
    assert set(rows) == {(c, d) for _, c, d in cells}
    for chip in ("rk3588", "rv1106"):
        row = rows[(chip, "w8a8")]
        assert row["built"] == "True" and row["reason"] == ""
        assert float(row["cosine"]) > 0.98 and float(row["rknn_mb"]) > 0 and float(row["build_seconds"]) > 0
    unsupported = rows[("rk3566", "w4a16")]
    assert unsupported["built"] == "False" and "w4a16" in unsupported["reason"] and "rk3566" in unsupported["reason"]
    crashed = rows[("rk3562", "w8a16")]
    if crashed["built"] == "True":
        pytest.skip("rknn-toolkit2 built w8a16 for rk3562 without aborting this time (native memory corruption is not "
                    "deterministic); tests/test_isolate.py covers the crash path")
    assert crashed["built"] == "False" and "crashed" in crashed["reason"] and "SIG" in crashed["reason"]
    assert all("\n" not in r["reason"] for r in rows.values())  # one line each
    md = (tmp_path / "matrix.md").read_text()
    assert "| gray-cnn-64 |" in md and md.count("✓") == 2 and md.count("✗") == 2
    assert "<table>" in (tmp_path / "matrix.html").read_text()


def test_unknown_models_and_chips_are_named(tmp_path):
    with pytest.raises(WorkbookError, match="Unknown matrix model or chip nope, rk9999"):
        matrix.run_matrix(tmp_path, models=["nope"], chips=["rk9999"])


def test_default_cells_cover_every_model_and_chip_and_extra_dtypes_only_where_supported():
    cells = matrix.default_cells(list(matrix.MODELS), matrix.CHIPS, "all")
    assert {(m, c) for m, c, d in cells if d == "w8a8"} == {(m, c) for m in matrix.MODELS for c in matrix.CHIPS}
    assert len(matrix.MODELS) >= 6 and len(matrix.CHIPS) >= 5
    assert {c for _, c, d in cells if d == "w4a16"} <= set(matrix.EXTRA_DTYPES["w4a16"])


def test_every_built_row_has_its_cpu_ops_memory_and_why_no_time_and_a_seg_row_builds(tmp_path, monkeypatch):
    """The pre-flight columns come from each cell's verbose build log; the time column says why no number is shown
    (no chip's fit met the rule: helpers.steps.preflight.CALIBRATION); a YOLO11n-seg row (at 64 px here, 640 in the
    benchmark) builds with output cosine near 1 and says its task is not supported yet."""
    seg = matrix.ModelSpec("yolo11n-seg-64", "ultralytics:yolo11n-seg.yaml", 64, note=matrix.MODELS["yolo11n-seg-640"].note)
    monkeypatch.setitem(matrix.MODELS, seg.name, seg)
    cells = [("gray-cnn-64", "rk3566", "w8a8"), ("gray-cnn-64", "rv1106", "w8a8"), (seg.name, "rk3588", "w8a8")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        matrix.run_matrix(tmp_path, models=["gray-cnn-64", seg.name], chips=["rk3566", "rv1106", "rk3588"], executor=pool,
                          cells=cells, images=2, log=lambda *_: None)
    rows = {(r["model"], r["chip"]): r for r in csv.DictReader((tmp_path / "matrix.csv").open())}
    for row in rows.values():
        assert row["built"] == "True", row["reason"]
        assert int(row["cpu_ops"]) == len([n for n in row["cpu_op_names"].split("; ") if n])
        assert float(row["weight_mb"]) > 0 and float(row["internal_mb"]) > 0
        assert row["npu_ms"] == "" and row["npu_time"].startswith("not shown: ")
    assert "missed the measured times" in rows[("gray-cnn-64", "rk3566")]["npu_time"]  # a fit that was not useful
    assert "no board measurements" in rows[("gray-cnn-64", "rv1106")]["npu_time"]  # no fit at all
    segment = rows[(seg.name, "rk3588")]
    assert float(segment["cosine"]) > 0.99 and "segment" in segment["note"] and "not support" in segment["note"]
    md = (tmp_path / "matrix.md").read_text()
    assert "CPU ops:" in md and "time: not shown" in md and "- rk3566: not shown: " in md and f"- {seg.name}: segment" in md
