"""Nothing changed, nothing runs: the runner reuses a notebook's last execution without starting a
kernel when its parameters, inputs and code are unchanged, and runs it when any of them changed;
<run>/executed/status.json says which; the terminal stays quiet (no kernel warnings)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fault_support import corrupt_in_place
from test_runner import run_cli, write_notebook

from helpers.core import notebook_reuse
from helpers.core.paths import REPO
from helpers.runner import execute, series

PARAMS = ('run_dir = "outputs/sample"\nwhat = "a"', 'run_dir = "outputs/sample"\nextra = 0')
SETUP = "from helpers.core.paths import Run\nimport uuid\nrun = Run.at(run_dir)"


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """01 writes a fresh token on every execution (so a reuse is visible); 02 too, and reads 01's file."""
    books = tmp_path / "notebooks"
    books.mkdir()
    write_notebook(books / "01_first.ipynb", [("params", PARAMS[0]), ("code", SETUP),
                                              ("code", "(run.root / 'one.txt').write_text(what + ' ' + uuid.uuid4().hex)")])
    write_notebook(books / "02_second.ipynb", [("params", PARAMS[1]), ("code", SETUP),
                                               ("code", "(run.root / 'two.txt').write_text((run.root / 'one.txt').read_text()"
                                                        " + f' {extra} ' + uuid.uuid4().hex)")])
    monkeypatch.setattr(execute, "NOTEBOOKS", books)
    return books


class Kernels:
    """Counts kernels the runner starts (every execution starts one through execute.Prewarmed)."""

    def __init__(self, monkeypatch):
        self.started: list[str] = []
        real = execute.Prewarmed
        outer = self

        class Counting(real):
            def __init__(self, notebook, *a, **k):
                outer.started.append(Path(notebook).stem)
                super().__init__(notebook, *a, **k)

        monkeypatch.setattr(execute, "Prewarmed", Counting)


def status(root: Path) -> dict[str, str]:
    return {k: v["how"] for k, v in json.loads((root / "executed" / "status.json").read_text()).items()}


def tokens(root: Path) -> tuple[str, str]:
    return (root / "one.txt").read_text(), (root / "two.txt").read_text()


@pytest.mark.slow
def test_unchanged_rerun_starts_no_kernel_and_a_changed_parameter_reruns(tmp_path, toy, monkeypatch):
    root = tmp_path / "run"
    first = series.run_series({}, root, progress=False, render=False)
    assert first.ok and first.reused == []
    assert status(root) == {"01_first": "ran", "02_second": "ran"}
    entry = json.loads((root / "executed" / "status.json").read_text())["02_second"]
    assert set(entry) == {"how", "seconds", "finished", "at", "model"} and entry["seconds"] > 0
    before = tokens(root)

    kernels = Kernels(monkeypatch)
    lines: list[str] = []
    again = series.run_series({}, root, progress=False, render=False, log=lines.append)
    assert again.ok and again.reused == ["01_first", "02_second"]
    assert kernels.started == [], "an unchanged re-run must not start a kernel"
    assert tokens(root) == before
    assert status(root) == {"01_first": "reused", "02_second": "reused"}
    reused = json.loads((root / "executed" / "status.json").read_text())["02_second"]
    assert reused["ran"]["seconds"] == entry["seconds"], "a reused notebook keeps what it took when it last ran"
    assert any("01_first" in ln and "reused" in ln and "unchanged since" in ln for ln in lines), lines

    changed = series.run_series({"02_second": {"extra": 5}}, root, progress=False, render=False)
    assert changed.ok and changed.reused == ["01_first"]
    assert kernels.started and set(kernels.started) == {"02_second"}
    one, two = tokens(root)
    assert one == before[0] and two != before[1] and " 5 " in two
    assert status(root) == {"01_first": "reused", "02_second": "ran"}

    kernels.started.clear()
    upstream = series.run_series({"common": {"what": "b"}, "02_second": {"extra": 5}}, root, progress=False, render=False)
    assert upstream.reused == [] and set(kernels.started) == {"01_first", "02_second"}  # 02 reads what 01 wrote
    assert tokens(root)[1].startswith("b ")


@pytest.mark.slow
def test_missing_output_edited_notebook_and_rerun_flag(tmp_path, toy, monkeypatch):
    root = tmp_path / "run"
    assert series.run_series({}, root, progress=False, render=False).ok
    kernels = Kernels(monkeypatch)

    (root / "one.txt").unlink()  # an output of 01 is gone: 01 runs again, and so does 02 after it
    res = series.run_series({}, root, progress=False, render=False)
    assert res.ok and res.reused == [] and (root / "one.txt").exists()

    nb = toy / "02_second.ipynb"  # the notebook itself changed: it runs, 01 is reused
    write_notebook(nb, [("params", PARAMS[1]), ("code", SETUP),
                        ("code", "(run.root / 'two.txt').write_text('edited ' + uuid.uuid4().hex)")])
    res = series.run_series({}, root, progress=False, render=False)
    assert res.reused == ["01_first"] and (root / "two.txt").read_text().startswith("edited ")

    kernels.started.clear()
    res = series.run_series({}, root, progress=False, render=False, reuse_runs=False)  # --rerun
    assert res.reused == [] and set(kernels.started) == {"01_first", "02_second"}


@pytest.mark.slow
def test_an_upstream_rerun_outside_only_invalidates_the_later_notebook(tmp_path, toy, monkeypatch):
    root = tmp_path / "run"
    assert series.run_series({}, root, progress=False, render=False).ok
    assert series.run_series({"common": {"what": "c"}}, root, only="01", progress=False, render=False).reused == []
    res = series.run_series({}, root, only="02", progress=False, render=False)
    assert res.reused == [] and (root / "two.txt").read_text().startswith("c ")


def test_key_covers_the_helpers_sources_a_notebook_imports_transitively(tmp_path, monkeypatch):
    copy = tmp_path / "helpers"
    shutil.copytree(REPO / "helpers", copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(notebook_reuse, "HELPERS", copy)
    files = {p.name for p in notebook_reuse.code_files(["helpers.core.paths"])}
    assert files == {"__init__.py", "paths.py", "errors.py"}  # paths imports errors; __init__ always runs
    assert {"execute.py", "notebook_reuse.py", "cluster.py",
            "paths.py"} <= {p.name for p in notebook_reuse.code_files(["helpers.runner.cli"])}
    nb = REPO / "notebooks" / "00_environment_check.ipynb"
    key = notebook_reuse.notebook_key(nb, {"run_dir": "x"}, ["helpers.core.paths"], [])
    # where it runs is not part of what it computes
    assert notebook_reuse.notebook_key(nb, {"run_dir": "elsewhere"}, ["helpers.core.paths"], []) == key
    (copy / "steps" / "board.py").write_text((copy / "steps" / "board.py").read_text() + "\n# unrelated edit\n")
    assert notebook_reuse.notebook_key(nb, {"run_dir": "x"}, ["helpers.core.paths"], []) == key
    (copy / "core" / "errors.py").write_text((copy / "core" / "errors.py").read_text() + "\n# a change paths depends on\n")
    assert notebook_reuse.notebook_key(nb, {"run_dir": "x"}, ["helpers.core.paths"], []) != key
    key = notebook_reuse.notebook_key(nb, {}, ["helpers.core.paths"], [])
    assert notebook_reuse.notebook_key(nb, {}, ["helpers.core.paths"], ["another upstream key"]) != key
    monkeypatch.setattr(notebook_reuse, "versions", lambda: (("rknn-toolkit2", "2.6.0"),))
    assert notebook_reuse.notebook_key(nb, {}, ["helpers.core.paths"], []) != key


def test_key_covers_the_files_path_parameters_name(tmp_path):
    nb = REPO / "notebooks" / "00_environment_check.ipynb"
    data = tmp_path / "images"
    data.mkdir()
    (data / "a.png").write_bytes(b"1")
    key = notebook_reuse.notebook_key(nb, {"data_dir": str(data)}, [], [])
    (data / "b.png").write_bytes(b"2")
    assert notebook_reuse.notebook_key(nb, {"data_dir": str(data)}, [], []) != key


@pytest.mark.slow
def test_cli_terminal_is_quiet_and_says_when_it_reuses(tmp_path):
    """`python -m helpers run`: no kernel warnings (kernels talk over IPC, their own output goes to
    executed/kernels.log); the second, unchanged run reuses the notebook and says so."""
    run_dir = tmp_path / "run"
    proc = run_cli("run", "--only", "00", "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "without encryption" not in out and "[IPKernelApp]" not in out, out[-2000:]
    assert "1 notebook(s) ran" in proc.stdout
    proc = run_cli("run", "--only", "00", "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "00_environment_check" in proc.stdout and "reused" in proc.stdout
    assert "0 notebook(s) ran, 1 reused" in proc.stdout and "cell/s" not in proc.stderr  # no notebook progress bar
    assert status(run_dir) == {"00_environment_check": "reused"}
    assert (run_dir / "report" / "index.html").exists()


def test_a_board_notebook_key_follows_the_device_named(monkeypatch):
    nb = REPO / "notebooks" / "00_environment_check.ipynb"
    monkeypatch.delenv("RKNN_DEVICE_ID", raising=False)
    key = notebook_reuse.notebook_key(nb, {}, [], [], board=True)
    monkeypatch.setenv("RKNN_DEVICE_ID", "abc123")
    assert notebook_reuse.notebook_key(nb, {}, [], [], board=True) != key
    assert notebook_reuse.notebook_key(nb, {}, [], [], board=False) == notebook_reuse.notebook_key(nb, {}, [], [], board=False)


# ----------------------------------------------------------------------------- content, not only size and time

def fake_series_run(root: Path) -> str:
    """What the runner records after a notebook that wrote a model and its record: returns the key."""
    before = notebook_reuse.listing(root)
    (root / "rknn").mkdir(parents=True)
    (root / "rknn" / "model.rknn").write_bytes(bytes(range(256)) * 64)
    (root / "rknn" / "convert.json").write_text('{"target_platform": "rk3566"}')
    (root / "executed").mkdir()
    (root / "executed" / "20_convert.ipynb").write_text("{}")
    notebook_reuse.record(root, "20_convert", "k", before)
    return "k"


@pytest.mark.parametrize("victim", ["rknn/model.rknn", "rknn/convert.json"])
def test_a_file_corrupted_in_place_with_size_and_mtime_kept_is_not_reused(tmp_path, victim):
    root = tmp_path / "run"
    key = fake_series_run(root)
    assert notebook_reuse.decide(root, "20_convert", key).reuse
    corrupt_in_place(root / victim)
    decision = notebook_reuse.decide(root, "20_convert", key)
    assert not decision.reuse
    assert decision.why.startswith(f"{victim} content changed"), decision.why


def test_the_runner_says_why_a_notebook_runs_again(tmp_path, toy):
    root = tmp_path / "run"
    fake = root / "executed"
    fake.mkdir(parents=True)
    (fake / "01_first.ipynb").write_text("{}")
    (root / "one.json").write_text('{"token": 1}')
    planned = series.plan_reuse(series.plan({}, "01"), root)
    notebook_reuse.record(root, "01_first", planned[0].decision.key, {})
    assert series.plan_reuse(series.plan({}, "01"), root)[0].decision.reuse
    corrupt_in_place(root / "one.json")
    lines: list[str] = []
    res = series.run_series({}, root, only="01", progress=False, render=False, log=lines.append, prewarm=False)
    assert res.ok and res.reused == []
    assert any(ln.startswith("01_first") and "runs again: one.json content changed" in ln for ln in lines), lines


def test_stat_proves_an_old_unchanged_file_without_hashing_it(tmp_path, monkeypatch):
    from helpers.core import stamps

    f = tmp_path / "model.rknn"
    f.write_bytes(b"x" * 1000)
    recorded = stamps.stamp(f)
    hashed: list[Path] = []
    real = stamps.sha256
    monkeypatch.setattr(stamps, "sha256", lambda p: hashed.append(Path(p)) or real(p))
    assert stamps.differs(f, recorded) is None and hashed == [f], "just stamped: within the racy margin, hashed"
    old = {**recorded, "at_ns": recorded["at_ns"] + 2 * stamps.RACY_NS}  # as if stamped well after the last change
    hashed.clear()
    assert stamps.differs(f, old) is None and hashed == [], "stat alone proves an old file unchanged"
    assert stamps.refresh(f, old) is old
    corrupt_in_place(f)  # os.utime moves the ctime: hashed again, and caught
    assert stamps.differs(f, old).startswith("content changed") and hashed == [f]
