"""helpers.toolkit.profile on REAL verbose build logs of four chips (tests/profile_support.py: a tiny model with a
YOLOv8-style DFL head that rknn-toolkit2 2.5.0 runs on the NPU for rk3588, rk3562, rk3576 and partly on the CPU for rk3566)."""
from __future__ import annotations

import pytest
from profile_support import build, make_model

from helpers.core.errors import WorkbookError
from helpers.toolkit.profile import COLUMNS, parse_profiles, read_profile

CHIPS = ["rk3588", "rk3566", "rk3562", "rk3576"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("profile")
    make_model(folder)
    return {chip: build(folder, chip) for chip in CHIPS} | {"folder": folder}


@pytest.mark.parametrize("chip", CHIPS)
def test_every_op_has_a_target_cycles_and_memory(logs, chip):
    prof = read_profile(logs[chip])
    assert list(prof.layers.columns) == COLUMNS
    assert set(prof.layers["target"]) <= {"NPU", "CPU"} and prof.layers["target"].notna().all()
    assert {"InputOperator", "OutputOperator"} <= set(prof.layers["op_type"]), "the table was read from its first to last row"
    assert prof.layers["id"].is_monotonic_increasing and prof.layers["name"].str.len().gt(0).all()
    convs = prof.ops[prof.ops["op_type"].str.startswith("Conv")]
    assert len(convs) == 3 and (convs["total_cycles"] > 0).all() and (convs["target"] == "NPU").all()
    slower = prof.layers[["ddr_cycles", "npu_cycles"]].max(axis=1)
    assert (prof.layers["total_cycles"] >= slower).all(), "an op takes at least the slower of memory and compute"
    assert prof.total_cycles == prof.layers["total_cycles"].sum() > 0
    assert prof.weight_kb > 0 and prof.internal_kb > 0
    # the toolkit's own totals against the tensor tables it prints: the feature tensors span exactly the internal
    # memory; the const table lists the model's weights, the total adds constants the toolkit makes itself
    assert prof.spans_kb["internal_memory"] == pytest.approx(prof.internal_kb, abs=0.01)
    assert 0 < prof.spans_kb["weight_memory"] <= prof.weight_kb + 0.01


def test_the_cpu_fallback_is_found_where_the_toolkit_puts_it(logs):
    on_cpu = {chip: list(read_profile(logs[chip]).cpu_ops["op_type"]) for chip in CHIPS}
    assert "exSoftmax13" in on_cpu["rk3566"], on_cpu
    assert on_cpu["rk3588"] == on_cpu["rk3562"] == on_cpu["rk3576"] == [], on_cpu
    cpu = read_profile(logs["rk3566"]).cpu_ops
    assert (cpu["total_cycles"] == 0).all(), "the cycle model counts NPU work only: a CPU op is time it cannot see"


def test_rk3576_sparse_ratio_column_is_read(logs):
    prof = read_profile(logs["rk3576"])
    assert prof.ops[prof.ops["op_type"].str.startswith("Conv")]["sparse_ratio"].notna().all()
    assert read_profile(logs["rk3588"]).layers["sparse_ratio"].isna().all()


def test_a_log_with_two_builds_gives_two_profiles_and_the_last_is_read(logs, tmp_path):
    # one log, two builds (as when a step builds twice into its log): the toolkit refuses a second build on one
    # RKNN object, so the two real logs are joined
    joined = tmp_path / "two.log"
    joined.write_text(logs["rk3588"].read_text() + logs["rk3566"].read_text())
    profiles = parse_profiles(joined.read_text())
    assert len(profiles) == 2 and all(p.complete for p in profiles)
    assert read_profile(joined).total_cycles == profiles[-1].total_cycles == read_profile(logs["rk3566"]).total_cycles
    assert profiles[0].total_cycles == read_profile(logs["rk3588"]).total_cycles


def test_a_log_without_the_profile_names_the_fix(logs, tmp_path):
    quiet = build(logs["folder"], "rk3588", verbose=False)
    with pytest.raises(WorkbookError, match="verbose=True"):
        read_profile(quiet)
    with pytest.raises(WorkbookError, match="does not exist"):
        read_profile(tmp_path / "missing.log")
