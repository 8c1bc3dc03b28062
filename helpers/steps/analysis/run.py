"""Run the toolkit's accuracy_analysis (one call per image), on the images a judge scores; the demo calibration list;
the CSV writer of notebook 50's and 60's tables."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
from tqdm.auto import tqdm

from helpers.core.errors import WorkbookError
from helpers.core.lists import read_image_list
from helpers.core.paths import atomic_path
from helpers.steps.analysis.parse import ERROR_FILE
from helpers.steps.judge import analysis_inputs, judge_for
from helpers.tasks.data import write_calibration_list


def run_accuracy_analysis(rk: Any, images: Sequence[Path], out_dir: str | Path, target: str | None = None,
                          device_id: str | None = None, progress: bool = True) -> list[Path]:
    """accuracy_analysis on a built toolkit, once per image (the call takes one sample per model input),
    each into out_dir/<NN>_<image stem>/ (out_dir is replaced); returns the error_analysis.txt paths. target=None: simulator only;
    a platform name adds the board's runtime columns (needs a connected board)."""
    out_dir = Path(out_dir)
    if not images:
        raise WorkbookError("accuracy_analysis needs at least one image; set analysis_images >= 1.")
    shutil.rmtree(out_dir, ignore_errors=True)  # no stale snapshots of an earlier, larger image set
    paths = []
    for k, img in enumerate(tqdm(list(images), desc="accuracy_analysis", unit="img", disable=not progress)):
        folder = out_dir / f"{k:02d}_{Path(img).stem}"
        rk.accuracy_analysis(inputs=[str(img)], output_dir=str(folder), target=target, device_id=device_id)
        paths.append(folder / ERROR_FILE)
    return paths


def analysis_images(run: Any, record: Any, data_dir: Path, n: int, folder: Path) -> list[Path]:
    """The n validation images accuracy_analysis reads, the same n a judge on n images scores (helpers.tasks.scoring):
    a classifier's own files, a detector's (segment, pose: the same) letterboxed PNGs written to folder."""
    if n < 1:
        raise WorkbookError(f"analysis_images={n} gives accuracy_analysis no image; use 1 or more.")
    return analysis_inputs(judge_for(run, record, data_dir, n), n, folder, len(record.config.mean_values or [0, 0, 0]))


def small_calibration(dataset: Path, n: int, out_file: Path) -> Path:
    """Demo mode: a calibration list with only the first n images of dataset (a deliberately poor
    calibration, so the quantization error is large enough to see and to repair)."""
    images = read_image_list(dataset)  # relative lines are from the list's folder, as the toolkit reads them
    if n < 1:
        raise WorkbookError(f"calib_images={n} would leave no calibration image; use 0 for the full list or n >= 1.")
    return write_calibration_list(images[:n], out_file)


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """DataFrame -> CSV written under a temporary name, then renamed."""
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path
