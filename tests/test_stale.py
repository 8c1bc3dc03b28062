"""Never a stale figure: every figure of the index names the model it was computed from (a hash of rknn/convert.json);
one from an older model, or from a notebook that failed, was interrupted or did not finish, is marked STALE with
the notebook to re-run; status.json says what happened; a reused notebook shows what it took when it last ran."""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import SMALL_PARAMS
from test_runner import write_notebook

from helpers.core.paths import REPO
from helpers.core.run_status import read_status, write_status
from helpers.runner import execute, index
from helpers.runner import series as runner
from helpers.runner.status import status_of
from helpers.toolkit.record import model_hash

CONVERT = {"toolkit_version": "2.5.0", "source": "model/model.onnx", "load_path": "onnx", "imgsz": 32,
           "config": {"target_platform": "rk3588", "quantized_algorithm": "normal"}, "seconds": 6.2,
           "source_bytes": 6_000_000, "rknn_bytes": 2_000_000}
METRICS = {"backends": [{"role": "fp32", "top1": 0.986}, {"role": "int8", "top1": 0.972}], "comparison": {"mean_cosine": 0.999}}
FROM_30 = ("FP32 top-1 (ONNX Runtime)", "INT8 top-1 (RKNN simulator)")


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def executed(root: Path, name: str, seconds: float = 41.0) -> None:
    """A whole executed notebook as papermill leaves it."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x")]
    nb.metadata["papermill"] = {"end_time": "2026-01-01T00:00:00", "duration": seconds}
    (root / "executed").mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(root / "executed" / f"{name}.ipynb"))


def converted_and_measured(root: Path) -> str:
    """A run folder where the runner ran 20 then 30 on one model; returns that model's hash."""
    write_json(root / "rknn" / "convert.json", CONVERT)
    model = model_hash(root)
    write_status(root, "20_convert", "ran", 10.0, model=model)
    write_json(root / "eval" / "metrics.json", METRICS)
    write_status(root, "30_simulator_inference", "ran", 41.0, model=model)
    for name in ("20_convert", "30_simulator_inference"):
        executed(root, name)
    return model


def rows(page: str) -> dict[str, str]:
    """{figure label: its whole <tr>} of the key-figure table."""
    table = page[page.index('id="figures"'):page.index("</table>", page.index('id="figures"'))]
    found = re.finditer(r"<tr( class=stale)?><td>([^<]+)</td>.*?</tr>", table)
    return {html.unescape(m.group(2)): html.unescape(m.group(0)) for m in found}


def step_row(page: str, name: str) -> str:
    return re.search(rf"<tr><td>{name}</td>.*?</tr>", page, re.S).group(0)


def test_model_hash_ignores_timing_and_follows_the_options(tmp_path):
    assert model_hash(tmp_path) is None  # no model yet
    write_json(tmp_path / "rknn" / "convert.json", CONVERT)
    first = model_hash(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{7}", first)
    write_json(tmp_path / "rknn" / "convert.json", {**CONVERT, "seconds": 9.9})  # an identical re-conversion, slower
    assert model_hash(tmp_path) == first
    write_json(tmp_path / "rknn" / "convert.json", {**CONVERT, "config": {**CONVERT["config"], "quantized_algorithm": "mmse"}})
    assert model_hash(tmp_path) != first
    write_json(tmp_path / "rknn" / "convert.json", {**CONVERT, "dataset": "rknn/calibration.txt"})
    (tmp_path / "rknn" / "calibration.txt").write_text("/data/a.png\n/data/b.png\n")
    fifty = model_hash(tmp_path)
    (tmp_path / "rknn" / "calibration.txt").write_text("/data/a.png\n")  # same record, another calibration set
    assert model_hash(tmp_path) != fifty


def test_figures_of_an_older_model_are_stale_with_the_step_to_rerun(tmp_path):
    old = converted_and_measured(tmp_path)
    page = index.index_html(index.summarize(tmp_path))
    assert all("STALE" not in r and f"model {old}" in r for label, r in rows(page).items() if label in FROM_30)
    assert "STALE" not in page.split("<h2>Plots")[0]

    write_json(tmp_path / "rknn" / "convert.json", {**CONVERT, "config": {**CONVERT["config"], "target_platform": "rk3566"}})
    new = model_hash(tmp_path)
    write_status(tmp_path, "20_convert", "ran", 10.0, model=new)  # `--only 20` with another chip
    page = index.index_html(index.summarize(tmp_path))
    by = rows(page)
    hint = f"computed from model {old}, the current model is {new}: re-run 30"
    for label in FROM_30:
        assert by[label].startswith("<tr class=stale>") and "STALE" in by[label] and hint in by[label], by[label]
        assert "98.6 %" in by[label] or "97.2 %" in by[label], "the figure keeps its content"
    conversion = by["Conversion time (load + build + export)"]
    assert "STALE" not in conversion and f"model {new}" in conversion
    assert 'class="verdict stale"' in page and hint in html.unescape(re.search(r'id="verdict-model">.*?</p>', page).group(0))
    assert hint in html.unescape(step_row(page, "30_simulator_inference"))

    write_json(tmp_path / "rknn" / "convert.json", {**CONVERT, "seconds": 7.5})  # back to the first options: same model
    write_status(tmp_path, "20_convert", "ran", 10.0, model=model_hash(tmp_path))
    assert model_hash(tmp_path) == old and "STALE" not in index.index_html(index.summarize(tmp_path)).split("<h2>Plots")[0]


def test_a_new_export_without_a_new_conversion_makes_20_and_later_stale(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.onnx").write_bytes(b"first export")
    converted_and_measured(tmp_path)
    assert "STALE" not in index.index_html(index.summarize(tmp_path)).split("<h2>Plots")[0]
    (tmp_path / "model" / "model.onnx").write_bytes(b"second export")  # `--only 10`: 20 has not converted it
    by = rows(index.index_html(index.summarize(tmp_path)))
    assert "the source model or calibration list changed after this conversion" in by["Conversion time (load + build + export)"]
    assert "re-run 20" in by["Conversion time (load + build + export)"]
    assert "re-run 20, then 30" in by[FROM_30[0]]


def test_a_conversion_that_failed_makes_every_later_figure_stale(tmp_path):
    model = converted_and_measured(tmp_path)
    write_status(tmp_path, "20_convert", "failed", 3.0, error="RknnError: build failed")
    page = index.index_html(index.summarize(tmp_path))
    hint = f"20 failed: rknn/convert.json (model {model}) is an earlier conversion's: re-run 20, then 30"
    assert all(hint in rows(page)[label] for label in FROM_30)
    assert "20 failed, so these are from an earlier run of it: re-run 20" in rows(page)["Conversion time (load + build + export)"]
    (tmp_path / "rknn" / "convert.json").unlink()  # the rebuild had removed the old record before it failed
    page = index.index_html(index.summarize(tmp_path))
    assert "there is no current model (rknn/convert.json is missing): re-run 20, then 30" in rows(page)[FROM_30[0]]


def test_a_notebook_run_by_hand_is_judged_by_file_times(tmp_path):
    write_json(tmp_path / "eval" / "metrics.json", METRICS)
    write_json(tmp_path / "rknn" / "convert.json", CONVERT)  # no status.json: everything was run in JupyterLab
    now = time.time()
    os.utime(tmp_path / "eval" / "metrics.json", (now - 600, now - 600))  # measured, then 20 converted again
    page = index.index_html(index.summarize(tmp_path))
    assert (f"written before the current model {model_hash(tmp_path)} (by file times"
            in rows(page)[FROM_30[0]]) and "re-run 30" in rows(page)[FROM_30[0]]
    os.utime(tmp_path / "eval" / "metrics.json", (now + 5, now + 5))  # 30 run again by hand afterwards
    page = index.index_html(index.summarize(tmp_path))
    row = rows(page)[FROM_30[0]]
    assert f"model {model_hash(tmp_path)} (judged by file times" in row and "STALE" not in row


@pytest.fixture
def books(tmp_path, monkeypatch) -> Path:
    """Notebooks 20 and 30 as the runner sees them (their work is played by the test: no kernel starts)."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name in ("20_convert", "30_simulator_inference"):
        write_notebook(folder / f"{name}.ipynb", [("params", 'run_dir = "outputs/sample"')])
    monkeypatch.setattr(execute, "NOTEBOOKS", folder)
    return folder


def test_an_interrupted_or_killed_notebook_is_said_so_and_its_figures_are_stale(tmp_path, books, monkeypatch):
    root = tmp_path / "run"
    converted_and_measured(root)
    seen = {}

    def play(nb, run_root, params, progress=False, kernel=None):
        name = Path(nb).stem
        seen[name] = read_status(run_root)[name]["how"], status_of(run_root, nb).label  # what a kill now would leave
        if name == "30_simulator_inference":
            raise KeyboardInterrupt  # Ctrl-C, or SIGTERM (the CLI turns it into the same)

    monkeypatch.setattr(execute, "execute", play)
    with pytest.raises(KeyboardInterrupt):
        runner.run_series({}, root, progress=False, prewarm=False, render=True)
    assert seen["30_simulator_inference"] == ("running", "unfinished"), "a run killed outright leaves 'running', not 'ran'"
    entry = read_status(root)["30_simulator_inference"]
    assert entry["how"] == "interrupted" and entry["error"].startswith("interrupted during 30_simulator_inference"), entry
    page = (root / "report" / "index.html").read_text()  # the runner rewrote the page on its way out
    row = step_row(page, "30_simulator_inference")
    assert "<td class=failed>interrupted" in row and "ok" not in row.split("</td>")[1], row
    assert " s (until it was interrupted)" in row
    assert "30 was interrupted, so these are from an earlier run of it: re-run 30" in rows(page)[FROM_30[0]]
    assert "STALE" not in rows(page)["Conversion time (load + build + export)"]

    write_status(root, "30_simulator_inference", "running", 0.0)  # the next run was killed during 30 (SIGKILL)
    page = index.index_html(index.summarize(root))
    assert "<td class=failed>unfinished" in step_row(page, "30_simulator_inference")
    assert "30 did not finish (the run stopped during it)" in rows(page)[FROM_30[0]]


def test_a_failed_notebook_is_recorded_and_shown_failed(tmp_path, books, monkeypatch):
    root = tmp_path / "run"
    converted_and_measured(root)

    def play(nb, run_root, params, progress=False, kernel=None):
        raise RuntimeError("the calibration set is empty")

    monkeypatch.setattr(execute, "execute", play)
    result = runner.run_series({}, root, progress=False, prewarm=False, render=False)
    assert result.failed == "20_convert"
    entry = read_status(root)["20_convert"]
    assert entry["how"] == "failed" and entry["error"] == "RuntimeError: the calibration set is empty", entry
    page = index.write_index(root).read_text()
    assert "<td class=failed>failed" in step_row(page, "20_convert")
    assert "re-run 20, then 30" in rows(page)[FROM_30[0]]


def test_a_reused_notebook_shows_what_it_took_when_it_last_ran(tmp_path, books, monkeypatch):
    root = tmp_path / "run"

    def play(nb, run_root, params, progress=False, kernel=None):
        executed(run_root, Path(nb).stem)
        time.sleep(0.6)

    monkeypatch.setattr(execute, "execute", play)
    runner.run_series({}, root, progress=False, prewarm=False, render=False)
    took = read_status(root)["30_simulator_inference"]["seconds"]
    runner.run_series({}, root, progress=False, prewarm=False, render=False)  # nothing changed: both reused
    entry = read_status(root)["30_simulator_inference"]
    assert entry["how"] == "reused" and entry["ran"]["seconds"] == took
    st = status_of(root, books / "30_simulator_inference.ipynb")
    assert st.time_text == f"reused; took {took:.0f} s when it last ran"
    assert "0 s" not in st.time_text or took < 0.5
    page = index.write_index(root).read_text()
    assert f"reused; took {took:.0f} s when it last ran" in step_row(page, "30_simulator_inference")


@pytest.mark.slow
def test_only_20_with_changed_options_marks_30s_figures_stale(series, tmp_path):
    """The real runner converts again with another calibration size; the index must not show 30's old figures as current."""
    shutil.copytree(series.ran("30_simulator_inference"), tmp_path / "run", symlinks=True,
                    ignore=shutil.ignore_patterns("analysis", "hybrid", "report"))  # what 20 and 30's figures need
    root = tmp_path / "run"
    before = model_hash(root)
    config = yaml.safe_load(SMALL_PARAMS.read_text())
    config["20_convert"]["calib_images"] = int(config["20_convert"]["calib_images"]) // 2
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, "-m", "helpers", "run", "--params", str(tmp_path / "changed.yaml"), "--run-dir",
                           str(root), "--only", "20", "--no-report", "--progress", "lines"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = model_hash(root)
    assert after and after != before, "another calibration set is another model"
    assert read_status(root)["20_convert"]["model"] == after
    page = index.write_index(root).read_text()
    by = rows(page)
    for label in FROM_30:
        assert by[label].startswith("<tr class=stale>") and "STALE" in by[label] and "re-run 30" in by[label], by[label]
    conversion = by["Conversion time (load + build + export)"]
    assert f"model {after}" in conversion and "STALE" not in conversion
    assert 'class="verdict stale"' in page
