"""ruff with pyproject.toml's rules (the line length among them) passes on helpers/, tests/ and benchmarks/."""
from __future__ import annotations

import subprocess
import sys

from helpers.core.paths import REPO


def test_ruff_passes():
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                          "helpers", "tests", "benchmarks"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"ruff check helpers tests benchmarks reports:\n{res.stdout[-6000:]}{res.stderr[-2000:]}"


def test_notebooks_name_nothing_they_do_not_import():
    """pyflakes' rules (ruff F) on the notebooks' code cells: an undefined or unused name is found here, not
    half-way through a papermill run."""
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "--select", "F",
                          "notebooks"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"ruff check --select F notebooks reports:\n{res.stdout[-6000:]}{res.stderr[-2000:]}"
