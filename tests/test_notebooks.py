"""Every notebook in notebooks/ runs headlessly under papermill, in order, into one temporary run
folder with small parameters; the tests then check the artifacts each one wrote."""
from __future__ import annotations

import json

import pytest

from helpers.runner import execute

ALL = [nb.stem for nb in execute.notebooks()]


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


@pytest.mark.slow
def test_toolkit_console_noise_stays_in_the_step_logs(series):
    """The toolkit's own console lines ('D Save log info to ...', 'I rknn-toolkit2 version ...') belong in
    logs/, not in the lesson: no executed notebook shows them, even after an earlier plain import of rknn.api."""
    root = series.ran("20_convert")
    for name in ("00_environment_check", "10_export", "20_convert"):
        nb = json.loads((root / "executed" / f"{name}.ipynb").read_text())
        streams = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", [])
                          if o.get("output_type") == "stream")
        assert "Save log info to" not in streams and "I rknn-toolkit2 version" not in streams, name
