"""Users' own models through the real series (helpers.runner.series.run_series, real toolkit), parameters only: a
grayscale ONNX classifier as model zoos ship them (1x1x28x28, opset 9, weights listed among the graph inputs) with its
own 1-channel image folder (00 -> 60, given only model, data_dir and imgsz), both built here; small image counts keep
it short. The ultralytics detectors and the YOLO26 classifier users bring are tests/test_own_models.py.
The tutorial's 480-px case (params/tutorial_480.yaml, 10 -> 30) is tests/test_nb_conversion.py's
test_tutorial_case_480_px_runs_10_to_30_with_parameters_only."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from helpers.core.paths import REPO
from helpers.runner import execute, series


@pytest.fixture(scope="module")
def gray_model(tmp_path_factory):
    """Grayscale 28x28 shapes (train/val, 4 classes, single-channel PNGs) and a small CNN trained on them a few seconds,
    as an opset-9 ONNX with its weights among the graph inputs."""
    from helpers.steps.export.models import train_gray_cnn
    from helpers.tasks.data import write_gray_shapes

    tmp = tmp_path_factory.mktemp("gray_model")
    data = write_gray_shapes(tmp / "shapes", size=28, val_per_class=30)
    onnx_path = tmp / "gray_cnn.onnx"
    top1 = train_gray_cnn(data, onnx_path, size=28, epochs=8, opset=9, weights_as_inputs=True)
    return data, onnx_path, top1


@pytest.mark.slow
def test_grayscale_onnx_with_its_own_folder_runs_00_to_60_given_only_model_data_and_imgsz(gray_model, tmp_path):
    import onnx

    data, onnx_path, trained_top1 = gray_model
    graph = onnx.load(str(onnx_path))
    assert graph.opset_import[0].version == 9 and {i.name for i in graph.graph.initializer} <= {i.name for i in graph.graph.input}
    config = {
        "common": {"model": str(onnx_path), "data_dir": str(data), "imgsz": 28},  # mean/std: the defaults, one value for all
        "10_export": {"check_images": 4},
        "20_convert": {"calib_images": 20},
        "30_simulator_inference": {"batch": 16},
        "40_board_inference": {"sample_images": 2},  # codegen on: its sample input must be the model's 1 channel
        "50_accuracy_analysis": {"analysis_images": 1, "sweep_grid": [["normal", "channel"]]},
        "60_hybrid_quantization": {"analysis_images": 1, "auto_layers": 2, "search_budget": 2},
    }
    run = tmp_path / "run"
    result = series.run_series(config, run, only="00,10,20,30,40,50,60", progress=False, render=False)
    assert result.ok, f"the series stopped in {result.failed}:\n{result.failure}"

    assert json.loads((run / "model" / "export_check.json").read_text())["task"] == "classify"
    import cv2

    calibration = (run / "rknn" / "calibration.txt").read_text().split()
    assert cv2.imread(calibration[0], cv2.IMREAD_UNCHANGED).shape == (28, 28)  # calibrated on the model's 1-channel input
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    fp32, int8 = metrics["backends"][0], metrics["backends"][1]
    assert fp32["images"] == int8["images"] == 120  # the whole val split of the folder
    assert fp32["top1"] > 0.6 and abs(fp32["top1"] - trained_top1) < 1e-6  # ONNX Runtime reproduces the trained model
    assert abs(metrics["comparison"]["top1_delta_pt"]) <= 2.5, metrics["comparison"]  # INT8 keeps top-1 within 3 of 120 images
    hybrid = pd.read_csv(run / "hybrid" / "compare.csv")
    assert {"FP32", "INT8"} <= set(hybrid["model"])

    # the board bundle preprocesses a grayscale image to exactly the model's 1-channel input
    from helpers.tasks.data import load_split
    from helpers.tasks.preprocess import read_image

    bundle = run / "board" / "deploy"
    assert json.loads((bundle / "model.json").read_text())["mean_values"] == [0.0]
    sample = next((bundle / "cpp" / "data" / "inputs").glob("*.npy"))  # the C++ demo's sample input: the model's 1 channel
    assert np.load(sample).shape == (1, 1, 28, 28)
    image = load_split(data, "val").paths[0]
    out = tmp_path / "x.npy"
    subprocess.run([sys.executable, "run_rknn.py", str(image), "--preprocess-only", str(out)], cwd=bundle, check=True,
                   capture_output=True, timeout=120)
    np.testing.assert_array_equal(np.load(out), read_image(image, 28, channels=1)[None])


@pytest.mark.parametrize("name", ["tutorial_480.yaml", "grayscale.yaml"])
def test_shipped_params_files_only_use_declared_keys(name):
    config = execute.load_params_file(REPO / "params" / name)
    used = {k for nb in execute.notebooks() for k in execute.params_for(nb, config)}  # its paths are placeholders to fill in
    assert set(config["common"]) <= used
