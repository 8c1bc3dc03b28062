"""The toolkit version a run used is recorded in env.json (notebook 00) and convert.json (notebook 20)."""
from __future__ import annotations

import json
from importlib.metadata import version

from helpers.core.paths import Run
from helpers.steps import env


def test_env_json_records_the_installed_toolkit_version(tmp_path):
    run = Run.at(tmp_path / "run")
    path = env.save(run, [env.check_python()])
    data = json.loads(path.read_text())
    assert data["toolkit_version"] == version("rknn-toolkit2") and data["checks"][0]["name"]
