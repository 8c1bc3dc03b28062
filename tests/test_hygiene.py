"""Repository rules that keep notebooks reviewable and the series runnable."""
from __future__ import annotations

import json
import re

import pytest

from helpers.runner import execute

NOTEBOOKS = execute.notebooks()


def test_series_is_present():
    """Every notebook, not just the first: NN_name.ipynb, unique numbers in order, 00 to 60 all there."""
    stems = [nb.stem for nb in NOTEBOOKS]
    bad = [s for s in stems if not re.fullmatch(r"\d\d_[a-z0-9_]+", s)]
    assert not bad, f"notebooks must be named NN_name.ipynb: {bad}"
    numbers = [s[:2] for s in stems]
    assert numbers == sorted(set(numbers)), f"notebook numbers must be unique and in order: {numbers}"
    assert {"00", "10", "20", "30", "40", "50", "60"} <= set(numbers) and numbers[0] == "00"


@pytest.mark.parametrize("nb", [nb for nb in NOTEBOOKS if nb.stem[:2] >= "20"], ids=lambda p: p.stem)
def test_code_cells_are_short(nb):
    """No code cell of notebooks 20-60 other than the parameters cell is longer than 20 lines."""
    cells = json.loads(nb.read_text())["cells"]
    long = {i: len("".join(c["source"]).splitlines()) for i, c in enumerate(cells)
            if c["cell_type"] == "code" and "parameters" not in c.get("metadata", {}).get("tags", [])
            and len("".join(c["source"]).splitlines()) > 20}
    assert not long, f"{nb.name}: code cells {long} (index: lines) are longer than 20 lines; move the logic into helpers"


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
    assert execute.declared_parameters(nb).get("run_dir") is not None, f"{nb.name}: every notebook takes run_dir"
    two = [ln for ln in "".join(tagged[0]["source"]).splitlines() if ln.count("=") > 1]
    assert not two, f"{nb.name}: papermill cannot read a parameter line with a second '=' (e.g. in its comment): {two}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_uses_project_kernel(nb):
    assert json.loads(nb.read_text())["metadata"]["kernelspec"]["name"] == "rknn-workbook"
