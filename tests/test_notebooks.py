"""Every notebook in notebooks/ runs headlessly under papermill, in order, into one temporary run
folder with small parameters; the tests then check the artifacts each one wrote."""
from __future__ import annotations

import json

import pytest

from helpers import report

ALL = [nb.stem for nb in report.notebooks()]


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_notebook_executes(series, name):
    """Each notebook completes under papermill (new notebooks join by being in notebooks/)."""
    root = series.ran(name)
    executed = root / "executed" / f"{name}.ipynb"
    assert executed.exists()
    params = json.loads((root / "params.json").read_text())
    assert name in params, f"{name} did not record its effective parameters in params.json"
    assert params[name]["run_dir"] == str(root)


@pytest.mark.slow
def test_environment_check_writes_every_check(series):
    root = series.ran("00_environment_check")
    env = json.loads((root / "env.json").read_text())
    rows = {c["name"]: c for c in env["checks"]}
    expected = {"python", "rknn-toolkit2", "torch", "numpy", "onnx", "protobuf", "setuptools", "opencv-python",
                "onnxruntime", "kernel", "ipywidgets", "devices", "disk"}
    assert expected <= set(rows)
    for name in ("python", "rknn-toolkit2", "torch", "numpy", "onnx", "protobuf", "setuptools", "onnxruntime"):
        assert rows[name]["status"] == "OK", rows[name]
    assert rows["kernel"]["status"] == "OK", "papermill must run the project's .venv interpreter"
    assert "2.5.0" in rows["rknn-toolkit2"]["detail"]
    for row in env["checks"]:
        assert row["status"] in {"OK", "WARN", "FAIL"}
        if row["status"] != "OK":
            assert row["fix"], f"{row['name']} is {row['status']} without a fix"
    # With no board attached the device check is a WARN with next steps, never a FAIL.
    assert rows["devices"]["status"] in {"OK", "WARN"}
    assert env["summary"]["FAIL"] == 0
