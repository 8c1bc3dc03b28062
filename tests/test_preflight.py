"""helpers.steps.preflight and helpers.text.preflight on real verbose builds (tests/profile_support.py): the CPU
fallback is named with why it matters, memory is held against the RAM in the package, the time is always called an
estimate with its band, and a chip without a useful fit gets no number."""
from __future__ import annotations

import html
import json
import re
import shutil

import matplotlib
import pandas as pd
import pytest
from profile_support import build, make_model

from benchmarks.preflight_vs_zoo import compare
from helpers.core.errors import WorkbookError
from helpers.core.paths import Run
from helpers.runner import index
from helpers.steps import preflight
from helpers.text import preflight as text
from helpers.toolkit.profile import read_profile

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("preflight")
    make_model(folder)
    return {chip: build(folder, chip) for chip in ("rk3566", "rk3588", "rv1106")}


@pytest.fixture(scope="module")
def profiles(logs):
    return {chip: read_profile(log) for chip, log in logs.items()}


def test_cpu_ops_are_named_with_why_they_matter(profiles):
    pf = preflight.preflight(profiles["rk3566"], "rk3566")
    assert "exSoftmax13" in set(pf.cpu_ops["op_type"])
    sentence = text.cpu_text(pf)
    assert "run on the CPU" in sentence and "Softmax" in sentence and "cycle model counts none" in sentence
    assert text.cpu_text(preflight.preflight(profiles["rk3588"], "rk3588")).startswith("**No op runs on the CPU**")


def test_memory_against_the_ram_in_the_package(profiles):
    pf = preflight.preflight(profiles["rv1106"], "rv1106")
    assert set(pf.memory["variant"]) == {"RV1106G2", "RV1106G3"}
    row = pf.memory.set_index("variant").loc["RV1106G2"]
    assert row.model_mb == pytest.approx(row.weight_mb + row.internal_mb, abs=0.02) and row.model_mb > 0
    assert row.share == pytest.approx(row.model_mb / 128, abs=1e-4)
    assert "RV1106G2 128 MB" in text.memory_text(pf)
    board = preflight.preflight(profiles["rk3588"], "rk3588")
    assert board.memory["ram_mb"].isna().all() and "not what limits" in text.memory_text(board)


def test_the_time_is_an_estimate_with_its_band_or_no_number(profiles):
    prof = profiles["rk3588"]
    good = {"rk3588": preflight.Calibration(2.0, -0.2, 0.3, 0.95, 8, True)}
    est = preflight.estimate(prof, "rk3588", good)
    assert est.raw_ms == pytest.approx(prof.total_cycles / 1e9 * 1e3)
    assert est.ms == pytest.approx(2 * est.raw_ms) and est.low_ms < est.ms < est.high_ms
    sentence = text.estimate_text(est)
    assert "estimate, not a measurement" in sentence and "cycle model" in sentence and "-20% to +30%" in sentence
    bad = preflight.estimate(prof, "rk3588", {"rk3588": preflight.Calibration(2.0, -0.6, 0.9, 0.3, 8, False)})
    assert bad.ms is None and text.estimate_text(bad).startswith("**No time estimate")
    assert preflight.estimate(prof, "rk3588", {}).ms is None
    for chip, cal in preflight.CALIBRATION.items():  # the shipped fits: a number only where the fit was useful
        assert (preflight.estimate(prof, chip).ms is None) != cal.useful


def test_plot_and_table(profiles, tmp_path):
    prof = profiles["rk3566"]
    fig = preflight.plot_cycles(prof, "rk3566", top=3)
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0 and ax.get_xlabel() and "cycles" in ax.get_ylabel()
    named = "\n".join(t.get_text() for t in ax.texts)
    assert all(name.split(":", 1)[-1][-20:] in named for name in preflight.heaviest(prof, 3)["name"])
    path = preflight.write_profile(prof, tmp_path / "profile.csv")
    assert len(pd.read_csv(path)) == len(prof.layers)
    with pytest.raises(WorkbookError, match="target_platform"):
        preflight.preflight(prof, "rk9999")


def test_the_benchmark_fit_leaves_each_model_out():
    """benchmarks/preflight_vs_zoo.compare on made-up cells: a constant ratio is fitted exactly, an outlier shows
    up in its own leave-one-out error and costs the chip its number."""
    cells = pd.DataFrame({"model": list("abcde"), "imgsz": 640, "chip": "rk3588", "cpu_ops": 0,
                          "cycles": [1e6, 2e6, 4e6, 8e6, 16e6], "zoo_fps": [500.0, 250.0, 125.0, 62.5, 31.25]})
    per_cell, chips = compare(cells)
    assert chips.loc[0, "factor"] == pytest.approx(2.0) and per_cell["loo_err"].abs().max() < 1e-9 and chips.loc[0, "useful"]
    cells.loc[2, "zoo_fps"] = 125.0 / 3  # model c three times slower on the board than its cycles say
    per_cell, chips = compare(cells)
    assert per_cell.loc[2, "loo_err"] < -0.5 and not chips.loc[0, "useful"]


def index_text(root) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", index.index_html(index.summarize(root))))


def test_the_index_shows_the_cpu_ops_and_the_memory_never_a_time(logs, tmp_path):
    """Notebook 20's of_run writes rknn/profile.csv and rknn/preflight.json from the run's build log; the index's key
    figures name the ops on the CPU and the memory against the in-package RAM, and print no time; a log without the
    per-op table (a build older than the pre-flight) is said to be one, and leaves no stale profile.csv."""
    run = Run.at(tmp_path / "run")
    shutil.copy(logs["rk3566"], run.rknn / "build.log")
    pf, missing = preflight.of_run(run, "rk3566")
    assert pf is not None and not missing and len(pd.read_csv(run.root / preflight.PROFILE_CSV)) == len(pf.profile.layers)
    facts = json.loads((run.root / preflight.PREFLIGHT_JSON).read_text())
    assert facts["profile"] and len(facts["cpu_ops"]) == len(pf.cpu_ops) > 0
    assert not any("ms" in key or "fps" in key or "time" in key for key in facts), "the artifact holds no time estimate"
    page = index_text(run.root)
    figures = page.split("Key figures")[1].split("Five most")[0]
    assert f"{len(pf.cpu_ops)} on RK3566: " in figures and "exSoftmax13" in figures
    assert f"{pf.memory.iloc[0].model_mb:.2f} MB (" in figures and "weights" in figures and "board's RAM" in figures
    assert not re.search(r"\d ms\b|FPS", figures), "the index shows no time estimate"
    shutil.copy(logs["rv1106"], run.rknn / "build.log")
    preflight.of_run(run, "rv1106")
    assert "RAM in the package: RV1106G2 128 MB, RV1106G3 256 MB" in index_text(run.root)
    (run.rknn / "build.log").write_text("I rknn building ...\nI rknn building done.\n")  # no per-op table
    pf, missing = preflight.of_run(run, "rk3588")
    assert pf is None and "verbose=True" in missing and "No pre-flight for this build" in text.no_profile_text(missing)
    assert not (run.root / preflight.PROFILE_CSV).exists(), "a profile.csv of another build must not stay"
    assert "no per-op profile in rknn/build.log" in index_text(run.root)
