"""Notebook 00 tells how to fix, not only what is wrong: install commands on every run, the toolkit's own
requirements apart from the workbook's other pins."""
from __future__ import annotations

from importlib.metadata import requires

from helpers import env


def test_toolkit_requirements_are_listed_apart_from_the_workbooks_pins():
    toolkit_rows, other_rows = env.pin_tables()
    declared = {r.split()[0].split(";")[0].lower() for r in requires("rknn-toolkit2")}
    assert {r["package"] for r in toolkit_rows} == declared, "exactly what the toolkit's metadata declares"
    torch = next(r for r in toolkit_rows if r["package"] == "torch")
    assert torch["toolkit requires"].startswith("<=") and torch["workbook pins"] == "==2.4.0" and torch["installed"].startswith("2.4.0")
    others = {r["package"] for r in other_rows}
    assert "papermill" in others and not (others & declared), "a package appears in one table only"


def test_install_commands_are_one_pip_call():
    text = env.install_commands()
    pip_lines = [ln for ln in text.splitlines() if " install " in ln and not ln.startswith("#") and "pip" in ln]
    assert pip_lines == [".venv/bin/pip install -r requirements.txt -e ."]
    assert "ipykernel install" in text and "rknn-workbook" in text
