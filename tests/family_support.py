"""The segmentation and pose series the tests share: each task's generated sample at a small size, its YOLO11n trained
briefly from its YAML, and notebooks 10 -> 40 run once per session (notebooks 50 and 60 continue in the same run
folder: series_through). The same functions and notebooks as params/segment.yaml and params/pose.yaml, small sizes."""
from __future__ import annotations

from pathlib import Path

import pytest

# Small sizes that still learn enough for the comparisons to mean something (the full samples: 250 images at 160 px).
SMALL = {"segment": {"images": 100, "imgsz": 128, "epochs": 20},
         "pose": {"images": 160, "imgsz": 128, "epochs": 20}}
FIRST = "10,20,30,40"


def config(task: str, data: Path) -> dict:
    """The parameters of a small series of `task` on its generated data."""
    size = SMALL[task]
    return {"common": {"data_dir": str(data), "imgsz": size["imgsz"]},
            "10_export": {"task": task, "epochs": size["epochs"]},
            "20_convert": {"calib_images": 16},
            "30_simulator_inference": {"batch": 8, "pictures": 2},
            "40_board_inference": {"sample_images": 2}}


def run_family(base: Path, task: str, only: str = FIRST, more: dict | None = None) -> Path:
    """Generate the task's small sample and run the notebooks `only` into base/run (the step cache reuses what ran);
    more: parameters of later notebooks (e.g. 50's and 60's small settings)."""
    from helpers.runner.series import run_series
    from helpers.tasks.family import member

    size = SMALL[task]
    data = member(task).write_sample(out_dir=base / "data", images=size["images"], imgsz=size["imgsz"])
    params = {**config(task, data), **(more or {})}
    result = run_series(params, base / "run", only=only, progress=False, render=False, log=lambda *_: None)
    assert result.failed is None, result.failure
    return base / "run"


@pytest.fixture(scope="session")
def segment_series(tmp_path_factory) -> Path:
    """A segmentation run through notebooks 10-40."""
    return run_family(tmp_path_factory.getbasetemp() / "segment_series", "segment")


@pytest.fixture(scope="session")
def pose_series(tmp_path_factory) -> Path:
    """A pose run through notebooks 10-40."""
    return run_family(tmp_path_factory.getbasetemp() / "pose_series", "pose")


def series_through(run: Path, task: str, only: str, more: dict | None = None) -> Path:
    """Continue a session's run with more notebooks (e.g. "50,60" and their parameters), in the same folder."""
    return run_family(run.parent, task, only, more)
