"""Shared fixtures: a tiny ONNX model and images built in the test, and the papermill series run."""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from helpers.core.paths import REPO
from helpers.runner import execute

SMALL_PARAMS = REPO / "tests" / "small_params.yaml"


RESOLVE_TEST = "test_requirements_resolve_for_python_3_10_and_3_12"
RESOLVER = pytest.StashKey[tuple]()
RESOLVED_INTO = "WORKBOOK_RESOLVED_INTO"  # where the background resolution writes its answers (workers inherit it)
PYTHONS = ["3.10", "3.12"]
# Under pytest -n (make test) a module runs in one worker (its module fixtures are built once), the modules sharing an
# expensive session fixture run in the same worker, and those groups start first, longest first, so the workers end
# together. A module is in a group when its text names the fixture (imported from a support module, or a test's
# argument); a module missed only costs time, the fixture is then built in two workers.
SHARED = (("yolo26", r"\btiny_yolo26\b"), ("family", r"\b(segment|pose)_series\b"),
          ("detect", r"\b(tiny_detector|detect_series)\b"), ("series", r"\bdef \w+\([^)]*\bseries\b"))


@functools.cache
def shared_group(module: str) -> tuple[int, str]:
    """(start rank, group) of a test module (its file name, e.g. "test_yolo26"): a SHARED group, or the module alone."""
    path = Path(__file__).with_name(f"{module}.py")
    text = path.read_text() if path.is_file() else ""
    return next(((i, group) for i, (group, pattern) in enumerate(SHARED) if re.search(pattern, text)), (len(SHARED), module))


def _xdist_main(config) -> bool:
    """This is the main process of a pytest -n run: its workers run the tests."""
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def _may_select_resolution(config) -> bool:
    """The run's arguments may select the resolution test (a folder or its file, no -k or -m narrowing)."""
    paths = [Path(a.split("::")[0]) for a in config.args]
    return not (config.option.keyword or config.option.markexpr) and any(
        p.is_dir() or p.name == "test_env_pins.py" for p in paths)


def pytest_configure(config) -> None:
    """In the main process of a pytest -n run: write what every worker would otherwise write at once (the digits
    sample, ultralytics' settings, matplotlib's font list), and start the requirements resolution for the worker
    that gets its test (mostly downloads: it runs beside the suite instead of adding a minute to it)."""
    if not _xdist_main(config):
        return
    import matplotlib.font_manager  # noqa: F401  (builds the font list once)
    import ultralytics  # noqa: F401  (writes its settings file once)

    from helpers.tasks.data import write_sample

    write_sample()
    if _may_select_resolution(config):
        _start_resolution(config)


def _start_resolution(config) -> None:
    """Resolve the pins in the background into a folder named by RESOLVED_INTO, which the test reads."""
    import tempfile

    from resolve_requirements import start_into

    folder = Path(tempfile.mkdtemp(prefix="workbook-resolve-"))
    os.environ[RESOLVED_INTO] = str(folder)
    config.stash[RESOLVER] = (start_into(folder, PYTHONS), folder)


def pytest_unconfigure(config) -> None:
    if RESOLVER in config.stash:
        import shutil

        proc, folder = config.stash[RESOLVER]
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(folder, ignore_errors=True)


def pytest_collection_modifyitems(config, items) -> None:
    """In a pytest -n worker: the SHARED groups first (the main process sends work in this order)."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: shared_group(item.path.stem)[0])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest -n sends each module, or SHARED group of modules, to one worker as one unit of work (xdist's own
    loadgroup marks do not reach its scheduler under pytest 9)."""
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return shared_group(Path(nodeid.split("::")[0]).stem)[1]

    return SharedFixtureScheduling(config, log)


def pytest_collection_finish(session) -> None:
    """When the requirements-resolution test is selected in a plain pytest run, start it now: it is mostly downloads,
    so it runs beside the rest of the suite instead of adding a minute and more to it (the test collects the result;
    under pytest -n the main process started it)."""
    if hasattr(session.config, "workerinput") or _xdist_main(session.config):
        return
    if any(item.name == RESOLVE_TEST for item in session.items):
        _start_resolution(session.config)


@pytest.fixture(autouse=True)
def _fresh_forms():
    """Each test starts as a new kernel would: no parameter form remembered from an earlier test."""
    import sys

    widgets = sys.modules.get("helpers.widgets")
    if widgets is not None:
        widgets._LAST.clear()
    yield


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """A 3-class conv net on 16x16 RGB, exported by torch to ONNX opset 12."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 3),
    ).eval()
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    torch.onnx.export(net, torch.randn(1, 3, 16, 16), str(path), opset_version=12, input_names=["images"],
                      output_names=["logits"])
    return path


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory) -> list[Path]:
    """Eight random 16x16 PNGs (real files the toolkit reads for calibration)."""
    import cv2

    folder = tmp_path_factory.mktemp("tiny_images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(8):
        p = folder / f"{i}.png"
        cv2.imwrite(str(p), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        paths.append(p)
    return paths


@dataclass
class SeriesRun:
    """The notebooks executed in order into one temporary run folder, each at most once."""

    root: Path
    config: dict
    errors: dict[str, BaseException] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)

    def ran(self, name: str) -> Path:
        """Execute notebooks up to and including `name` (once); fail with the notebook's error."""
        for nb in execute.notebooks():
            stem = nb.stem
            if stem in self.errors:
                pytest.fail(f"{stem} failed, so {name} cannot be checked:\n{self.errors[stem]}")
            if stem not in self.done:
                try:
                    execute.execute(nb, self.root, execute.params_for(nb, self.config))
                except Exception as exc:  # papermill's PapermillExecutionError carries the cell's traceback
                    self.errors[stem] = exc
                    pytest.fail(f"{stem} failed under papermill:\n{exc}")
                self.done.append(stem)
            if stem == name:
                return self.root
        pytest.fail(f"notebook {name} is not in notebooks/")


@pytest.fixture(scope="session")
def series(tmp_path_factory) -> SeriesRun:
    root = Path(os.environ.get("WORKBOOK_TEST_RUN") or tmp_path_factory.mktemp("series_run"))
    return SeriesRun(root, execute.load_params_file(SMALL_PARAMS))


def _untracked() -> set[str]:
    """Files git would offer to add (untracked and not ignored)."""
    import subprocess

    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO, capture_output=True, text=True)
    return {line[3:] for line in out.stdout.splitlines() if line.startswith("??")} if out.returncode == 0 else set()


def pytest_sessionstart(session):
    session.config._untracked_before = _untracked()


def pytest_sessionfinish(session, exitstatus):
    """`make test` (WORKBOOK_CHECK_CLEAN=1) fails if the run left files outside git-ignored folders."""
    if os.environ.get("WORKBOOK_CHECK_CLEAN") != "1":
        return
    new = sorted(_untracked() - session.config._untracked_before)
    if new:
        print(f"\nERROR: the test run left files outside git-ignored folders: {new}")
        session.exitstatus = 1
