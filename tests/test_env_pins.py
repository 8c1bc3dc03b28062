"""Notebook 00 tells how to fix, not only what is wrong: install commands on every run, the toolkit's own
requirements apart from the workbook's other pins."""
from __future__ import annotations

import os
from importlib.metadata import requires
from pathlib import Path

import pytest

from helpers.steps import env


def test_toolkit_requirements_are_listed_apart_from_the_workbooks_pins():
    toolkit_rows, other_rows = env.pin_tables()
    declared = {r.split()[0].split(";")[0].lower() for r in requires("rknn-toolkit2")}
    assert {r["package"] for r in toolkit_rows} == declared, "exactly what the toolkit's metadata declares"
    torch = next(r for r in toolkit_rows if r["package"] == "torch")
    assert torch["toolkit requires"].startswith("<=") and torch["workbook pins"] == "==2.4.0"
    assert torch["installed"].startswith("2.4.0")
    others = {r["package"] for r in other_rows}
    assert "papermill" in others and not (others & declared), "a package appears in one table only"


def test_install_commands_are_one_pip_call():
    text = env.install_commands()
    pip_lines = [ln for ln in text.splitlines() if " install " in ln and not ln.startswith("#") and "pip" in ln]
    assert pip_lines == [".venv/bin/pip install -r requirements.txt -e ."]
    assert "ipykernel install" in text and "rknn-workbook" in text


def test_pins_follow_the_running_python(tmp_path):
    """A package whose current release dropped 3.10 has two pins; notebook 00 compares with the one for this Python."""
    req = tmp_path / "requirements.txt"
    req.write_text('# comment\npandas==3.0.6; python_version >= "3.11"\npandas==2.3.3; python_version < "3.11"\n'
                   'torch==2.4.0  # the toolkit pin\n')
    pins = env.requirement_pins(req)
    import sys

    assert pins["pandas"] == ("==3.0.6" if sys.version_info >= (3, 11) else "==2.3.3")
    assert pins["torch"] == "==2.4.0"


def test_missing_opencv_system_library_gets_the_apt_line():
    fix = env.system_library_fix("libGL.so.1: cannot open shared object file: No such file or directory")
    assert fix.startswith("sudo apt-get install -y libgl1 libglib2.0-0")
    assert env.system_library_fix("No module named 'cv2'") == ""


@pytest.mark.slow
def test_requirements_resolve_for_python_3_10_and_3_12(pytestconfig):
    """The tutorial's Python (3.10) and the newest the toolkit ships for (3.12) get every pin, toolkit pins unchanged:
    a pin that drops a version fails here (the resolution runs as on that Python, markers included; conftest starts
    it when the session begins)."""
    from conftest import PYTHONS, RESOLVED_INTO
    from resolve_requirements import read_into, resolve, why, would_install

    into = os.environ.get(RESOLVED_INTO)  # started when the session began (conftest), else resolved here
    answers = read_into(Path(into), PYTHONS) if into else resolve(PYTHONS)
    for version, (code, out) in answers.items():
        assert code == 0, f"requirements.txt does not resolve for Python {version}: {why(out)}"
        pins = would_install(out)
        assert (pins["rknn-toolkit2"], pins["torch"], pins["numpy"], pins["onnx"]) == ("2.5.0", "2.4.0", "1.26.4",
                                                                                       "1.18.0"), version


def test_a_crash_of_pip_itself_is_told_apart_from_an_answer_about_the_pins():
    """A dropped download ends pip in 'ERROR: Exception:' and a traceback: that resolution runs again and, if it
    fails twice, the message names the exception; a pin with no matching release is an answer and fails at once."""
    from resolve_requirements import crashed, why

    crash = ("Collecting torch==2.4.0\nERROR: Exception:\nTraceback (most recent call last):\n  File \"x.py\", line 1\n"
             "pip._vendor.urllib3.exceptions.ReadTimeoutError: HTTPSConnectionPool(host='files'): Read timed out.\n")
    answer = "ERROR: Could not find a version that satisfies the requirement torch==9.9\nERROR: No matching distribution\n"
    assert crashed(crash) and not crashed(answer)
    assert why(crash).endswith("ReadTimeoutError: HTTPSConnectionPool(host='files'): Read timed out.")
    assert why(answer).startswith("ERROR: Could not find a version") and "No matching distribution" in why(answer)
