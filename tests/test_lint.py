"""ruff with pyproject.toml's rules (the line length among them) passes on helpers/, tests/ and benchmarks/."""
from __future__ import annotations

import subprocess
import sys

from helpers.core.paths import REPO


def test_ruff_passes():
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                          "helpers", "tests", "benchmarks"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"ruff check helpers tests benchmarks reports:\n{res.stdout[-6000:]}{res.stderr[-2000:]}"
