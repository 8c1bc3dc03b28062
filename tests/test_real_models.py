"""Users' own models through the real series (helpers.cli.run_series, real toolkit), parameters only: a
grayscale ONNX with its own image folder (10 -> 60), both built here; small image counts keep it short.
The tutorial's 480-px case (params/tutorial_480.yaml, 10 -> 30) is tests/test_nb_conversion.py's
test_tutorial_case_480_px_runs_10_to_30_with_parameters_only."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from helpers import cli, report
from helpers.paths import REPO


@pytest.fixture(scope="module")
def gray_model(tmp_path_factory):
    """Grayscale shapes (train/val, 4 classes, single-channel PNGs) and a small CNN trained on them, as ONNX."""
    from helpers.data import write_gray_shapes
    from helpers.models import train_gray_cnn

    tmp = tmp_path_factory.mktemp("gray_model")
    data = write_gray_shapes(tmp / "shapes", size=32)
    onnx_path = tmp / "gray_cnn.onnx"
    top1 = train_gray_cnn(data, onnx_path, size=32)
    return data, onnx_path, top1


def test_grayscale_onnx_with_its_own_folder_runs_10_to_60(gray_model, tmp_path):
    data, onnx_path, trained_top1 = gray_model
    config = {
        "common": {"model": str(onnx_path), "data_dir": str(data), "imgsz": 32, "mean_values": [0.0], "std_values": [255.0],
                   "demo_calib_images": 0},
        "10_export": {"check_images": 4},
        "20_convert": {"calib_images": 20},
        "30_simulator_inference": {"batch": 16},
        "40_board_inference": {"sample_images": 2, "codegen": False},
        "50_accuracy_analysis": {"analysis_images": 1, "sweep_grid": [["normal", "channel"]]},
        "60_hybrid_quantization": {"analysis_images": 1, "auto_layers": 2, "search_budget": 2},
    }
    run = tmp_path / "run"
    result = cli.run_series(config, run, only="10,20,30,40,50,60", progress=False, render=False)
    assert result.ok, f"the series stopped in {result.failed}:\n{result.failure}"

    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    fp32, int8 = metrics["backends"][0], metrics["backends"][1]
    assert fp32["images"] == int8["images"] == 200  # the whole val split of the folder
    assert fp32["top1"] > 0.9 and abs(fp32["top1"] - trained_top1) < 1e-6  # ONNX Runtime reproduces the trained model
    assert abs(metrics["comparison"]["top1_delta_pt"]) <= 1.0, metrics["comparison"]
    hybrid = pd.read_csv(run / "hybrid" / "compare.csv")
    assert {"FP32", "INT8"} <= set(hybrid["model"])

    # the board bundle preprocesses a grayscale image to exactly the model's 1-channel input
    from helpers.data import load_split
    from helpers.preprocess import read_image

    bundle = run / "board" / "deploy"
    assert json.loads((bundle / "model.json").read_text())["mean_values"] == [0.0]
    image = load_split(data, "val").paths[0]
    out = tmp_path / "x.npy"
    subprocess.run([sys.executable, "run_rknn.py", str(image), "--preprocess-only", str(out)], cwd=bundle, check=True,
                   capture_output=True, timeout=120)
    np.testing.assert_array_equal(np.load(out), read_image(image, 32, channels=1)[None])


@pytest.mark.parametrize("name", ["tutorial_480.yaml", "grayscale.yaml"])
def test_shipped_params_files_only_use_declared_keys(name):
    config = report.load_params_file(REPO / "params" / name)
    used = {k for nb in report.notebooks() for k in report.params_for(nb, config)}  # its paths are placeholders to fill in
    assert set(config["common"]) <= used
