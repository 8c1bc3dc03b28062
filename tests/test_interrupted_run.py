"""A notebook that fails, is interrupted (Ctrl-C) or is killed leaves nothing that looks valid: status.json says
what happened, the temporary files (*.tmp, *.partial.*) are gone, the executed notebook is whole or absent, and
the next run recovers without --rerun."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cluster import receiving_sigint
from test_runner import write_notebook

from helpers.core import leftovers
from helpers.core.paths import REPO, write_text_atomic
from helpers.runner import execute, series
from helpers.runner.status import status_of

# Writes what a step writes mid-way (a model, a record, a bundle folder under temporary names), then works.
WRITES_TEMPORARIES = ("from pathlib import Path\nimport time\nroot = Path(run_dir)\nroot.mkdir(parents=True, exist_ok=True)\n"
                      "names = ('rknn/model.partial.rknn', 'status.json.tmp', 'deploy.partial')\n"
                      "left = [n for n in names if (root / n).exists()]\n"
                      "assert not left, f'the runner removes leftovers of an earlier run first: {left}'\n"
                      "(root / 'rknn').mkdir(exist_ok=True)\n(root / 'rknn' / 'model.partial.rknn').write_bytes(b'RKNN half')\n"
                      "(root / 'status.json.tmp').write_text('')\n(root / 'deploy.partial').mkdir(exist_ok=True)\n"
                      "(root / 'deploy.partial' / 'run_rknn.py').write_text('#')\n(root / 'kept.txt').write_text('a result')\n")

# What the step does when it completes: its temporaries become the artifacts.
FINISHES = ("import shutil\n(root / 'rknn' / 'model.partial.rknn').replace(root / 'rknn' / 'model.rknn')\n"
            "(root / 'status.json.tmp').unlink()\nshutil.rmtree(root / 'deploy') if (root / 'deploy').exists() else None\n"
            "(root / 'deploy.partial').rename(root / 'deploy')")


def temporaries(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if leftovers.is_temporary(p.name))


def status(root: Path) -> dict:
    return json.loads((root / "executed" / "status.json").read_text())


def runner(books: Path, root: Path) -> subprocess.Popen:
    return subprocess.Popen(receiving_sigint([sys.executable, "-m", "helpers", "run", "--notebooks", str(books), "--run-dir",
                                              str(root), "--no-report", "--progress", "lines"]),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc: subprocess.Popen, marker: Path) -> None:
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.5)


@pytest.mark.slow
def test_ctrl_c_then_a_kill_then_a_plain_rerun(tmp_path):
    import psutil

    books, root = tmp_path / "notebooks", tmp_path / "run"
    books.mkdir()
    write_notebook(books / "01_work.ipynb", [("params", 'run_dir = "outputs/sample"'),
                                             ("code", WRITES_TEMPORARIES + "if (root.parent / 'slow').exists():\n"
                                                      "    (root / 'started').write_text('yes')\n    time.sleep(300)"),
                                             ("code", FINISHES)])
    (tmp_path / "slow").touch()

    proc = runner(books, root)  # Ctrl-C while the notebook works
    try:
        wait_for(proc, root / "started")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err[-2000:]
    entry = status(root)["01_work"]
    assert entry["how"] == "interrupted" and "interrupted" in entry["error"], entry
    assert temporaries(root) == [], "the half-written files are removed"
    assert (root / "kept.txt").read_text() == "a result", "finished files are left alone"
    executed = root / "executed" / "01_work.ipynb"
    assert not executed.exists() or leftovers.whole_notebook(executed), "the executed notebook is whole or absent"
    assert status_of(root, books / "01_work.ipynb").status == "failed"

    (root / "started").unlink()
    proc = runner(books, root)  # killed outright: nothing can clean up now
    try:
        wait_for(proc, root / "started")
        family = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()
        proc.wait(60)
    finally:
        for child in family:
            child.kill()
        psutil.wait_procs(family, timeout=30)
    assert temporaries(root), "a killed run leaves temporaries behind"

    (tmp_path / "slow").unlink()  # the next plain run cleans them and recovers
    proc = runner(books, root)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert status(root)["01_work"]["how"] == "ran" and "error" not in status(root)["01_work"]
    assert leftovers.whole_notebook(root / "executed" / "01_work.ipynb") and temporaries(root) == []
    assert (root / "rknn" / "model.rknn").read_bytes() == b"RKNN half"


@pytest.mark.slow
def test_a_failing_cell_is_said_in_status_and_its_temporaries_are_removed(tmp_path, monkeypatch):
    books, root = tmp_path / "notebooks", tmp_path / "run"
    books.mkdir()
    write_notebook(books / "01_work.ipynb", [("params", 'run_dir = "outputs/sample"'),
                                             ("code", WRITES_TEMPORARIES + "raise ValueError('the calibration set is empty')")])
    monkeypatch.setattr(execute, "NOTEBOOKS", books)
    res = series.run_series({}, root, progress=False, render=False, prewarm=False)
    assert res.failed == "01_work"
    entry = status(root)["01_work"]
    assert entry["how"] == "failed" and entry["error"] == "ValueError: the calibration set is empty", entry
    assert temporaries(root) == []
    executed = root / "executed" / "01_work.ipynb"
    assert leftovers.whole_notebook(executed), "the whole executed notebook shows where it stopped"
    assert not (root / "executed" / "01_work.partial.ipynb").exists()


def test_a_half_written_executed_notebook_is_removed_a_whole_one_kept(tmp_path):
    final, partial = tmp_path / "20_convert.ipynb", tmp_path / "20_convert.partial.ipynb"
    final.write_text('{"cells": [], "note": "an older run"}')
    partial.write_text('{"cells": [{"cell_type": "code", "sou')  # cut off by a full disk
    assert not leftovers.settle_notebook(partial, final)
    assert not final.exists() and not partial.exists(), "neither the torn file nor an older run's notebook is left"
    partial.write_text('{"cells": []}')
    assert leftovers.settle_notebook(partial, final) and final.read_text() == '{"cells": []}'


def test_an_atomic_write_that_fails_leaves_no_temporary(tmp_path):
    target = tmp_path / "status.json"
    target.mkdir()  # the rename fails, as a full disk or a permission error would fail the write
    with pytest.raises(OSError):
        write_text_atomic(target, "{}")
    assert not (tmp_path / "status.json.tmp").exists()


def test_temporaries_are_removed_but_not_inside_a_nested_run_or_through_a_link(tmp_path):
    root, outside = tmp_path / "run", tmp_path / "images"
    outside.mkdir()
    (outside / "a.png.tmp").write_text("not the run's")
    for rel in ("rknn/model.partial.rknn", "x.json.tmp", "board/deploy.partial/run_rknn.py", "report/index.html.tmp",
                "variants/v1/executed/status.json", "variants/v1/rknn/model.partial.rknn", "rknn/model.rknn"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    (root / "linked").symlink_to(outside)
    removed = leftovers.remove_temporaries(root, skip=("report",))
    assert removed == ["board/deploy.partial", "rknn/model.partial.rknn", "x.json.tmp"]
    assert (root / "report/index.html.tmp").exists() and (root / "variants/v1/rknn/model.partial.rknn").exists()
    assert (outside / "a.png.tmp").exists() and (root / "rknn/model.rknn").exists()
