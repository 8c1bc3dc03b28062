"""Repository rules that keep notebooks reviewable and the series runnable."""
from __future__ import annotations

import json

import pytest

from helpers import report

NOTEBOOKS = report.notebooks()


def test_series_is_present():
    assert [nb.stem.split("_")[0] for nb in NOTEBOOKS][:1] == ["00"]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(nb):
    cells = json.loads(nb.read_text())["cells"]
    dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{nb.name}: cells {dirty} carry outputs or execution counts; clear them before committing"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_has_parameters_cell_of_literals(nb):
    import ast

    cells = json.loads(nb.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{nb.name}: needs exactly one cell tagged 'parameters'"
    tree = ast.parse("".join(tagged[0]["source"]))
    for stmt in tree.body:
        assert isinstance(stmt, ast.Assign), f"{nb.name}: parameters cell must hold assignments only"
        ast.literal_eval(stmt.value)  # plain literals only, so papermill can inject over them
    assert report.declared_parameters(nb).get("run_dir") is not None, f"{nb.name}: every notebook takes run_dir"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_uses_project_kernel(nb):
    assert json.loads(nb.read_text())["metadata"]["kernelspec"]["name"] == "rknn-workbook"
