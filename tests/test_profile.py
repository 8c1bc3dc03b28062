"""helpers.toolkit.profile on REAL verbose build logs of four chips: a tiny model with a YOLOv8-style DFL head
(reshape, softmax over 16 bins, 1x1 conv) that rknn-toolkit2 2.5.0 keeps on the NPU for rk3588, rk3562 and rk3576
but puts on the CPU for rk3566: the difference a user must see before choosing a chip."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.core.errors import WorkbookError
from helpers.core.paths import write_text_atomic
from helpers.toolkit.profile import COLUMNS, parse_profiles, read_profile
from helpers.toolkit.session import RKNN

CHIPS = ["rk3588", "rk3566", "rk3562", "rk3576"]
SIZE = 32


class DflHead(torch.nn.Module):
    """conv -> 64 channels -> (4 sides x 16 bins) softmax -> 1x1 conv: the distribution head of YOLOv8/11."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 16, 3, 2, 1)
        self.box = torch.nn.Conv2d(16, 64, 1)
        self.dfl = torch.nn.Conv2d(16, 1, 1, bias=False)

    def forward(self, x):
        b = self.box(torch.relu(self.stem(x)))
        n = b.shape[2] * b.shape[3]
        return self.dfl(b.view(1, 4, 16, n).transpose(2, 1).softmax(1)).view(1, 4, n)


def _build(folder, chip, verbose=True, builds=1):
    """Build the model for chip (INT8, one random calibration image); returns the log path."""
    log = folder / f"{chip}{'' if verbose else '-quiet'}.log"
    with RKNN(log, verbose=verbose) as rk:
        for _ in range(builds):
            rk.config(mean_values=[[0, 0, 0]], std_values=[[255, 255, 255]], target_platform=chip)
            rk.load_onnx(model=str(folder / "dfl.onnx"))
            rk.build(do_quantization=True, dataset=str(folder / "calib.txt"))
    return log


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("profile")
    torch.manual_seed(0)
    torch.onnx.export(DflHead().eval(), torch.rand(1, 3, SIZE, SIZE), str(folder / "dfl.onnx"), opset_version=19,
                      input_names=["images"], output_names=["box"])
    np.save(folder / "calib.npy", np.random.default_rng(0).uniform(0, 255, (1, 3, SIZE, SIZE)).astype(np.float32))
    write_text_atomic(folder / "calib.txt", f"{folder / 'calib.npy'}\n")
    return {chip: _build(folder, chip) for chip in CHIPS} | {"folder": folder}


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


def test_a_log_with_two_builds_gives_two_profiles_and_the_last_is_read(logs):
    log = _build(logs["folder"], "rk3566", builds=2)
    profiles = parse_profiles(log.read_text())
    assert len(profiles) == 2 and all(p.complete for p in profiles)
    assert read_profile(log).total_cycles == profiles[-1].total_cycles


def test_a_log_without_the_profile_names_the_fix(logs, tmp_path):
    quiet = _build(logs["folder"], "rk3588", verbose=False)
    with pytest.raises(WorkbookError, match="verbose=True"):
        read_profile(quiet)
    with pytest.raises(WorkbookError, match="does not exist"):
        read_profile(tmp_path / "missing.log")
