"""Error paths a user can reach that no other test triggered (issue 11, item 5): each bad input is
given the way a notebook or the CLI gives it (real files in tmp_path, the real toolkit where the
path needs it), and the message must name the input and say how to fix it."""
from __future__ import annotations

import json
import re
import signal

import cv2
import nbformat
import numpy as np
import pytest
import yaml

from helpers import analysis, cli, convert, data, export, hybrid, models, report, sweep, task
from helpers.errors import WorkbookError
from helpers.paths import Run


# ----------------------------------------------------------------------------- helpers of the tests

@pytest.fixture
def run_cli(capsys, monkeypatch):
    """`python -m helpers ...` in-process: (exit code, stderr). The CLI's SIGTERM handler and a
    --notebooks folder are undone afterwards."""
    monkeypatch.setattr(report, "NOTEBOOKS", report.NOTEBOOKS)
    before = signal.getsignal(signal.SIGTERM)

    def call(*argv: str) -> tuple[int, str]:
        try:
            code = cli.main([str(a) for a in argv])
        finally:
            signal.signal(signal.SIGTERM, before)
        return code, capsys.readouterr().err

    return call


def write_notebook(path, params_source: str, code: str = "x = 1") -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params_source)
    cell.metadata["tags"] = ["parameters"]
    nb.cells += [cell, nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, str(path))


def write_yaml(path, content) -> str:
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return str(path)


# ----------------------------------------------------------------------------- the CLI

def test_cli_params_and_sweep_together(tmp_path, run_cli):
    params = write_yaml(tmp_path / "p.yaml", {"common": {"imgsz": 32}})
    sweep_file = write_yaml(tmp_path / "s.yaml", {"variants": {"a": {"20_convert": {"calib_images": 2}}}})
    code, err = run_cli("run", "--params", params, "--sweep", sweep_file, "--run-dir", tmp_path / "run")
    assert code == 2
    assert "--params and --sweep do not combine; put `base: FILE.yaml` in the sweep file instead." in err
    assert not (tmp_path / "run").exists()


def test_cli_scheduler_without_sweep(tmp_path, run_cli):
    code, err = run_cli("run", "--scheduler", "tcp://127.0.0.1:1", "--run-dir", tmp_path / "run")
    assert code == 2
    assert "--scheduler applies to --sweep only; add --sweep FILE.yaml" in err
    assert not (tmp_path / "run").exists()


def test_cli_notebook_folder_without_notebooks(tmp_path, run_cli):
    empty = tmp_path / "books"
    empty.mkdir()
    (empty / "notes.ipynb").write_text("{}")  # not NN_name.ipynb
    code, err = run_cli("run", "--notebooks", empty, "--run-dir", tmp_path / "run", "--no-report")
    assert code == 2
    assert f"{empty} holds no NN_name.ipynb notebook" in err and "e.g. 20_convert.ipynb" in err
    assert not (tmp_path / "run").exists()


def test_cli_parameters_cell_that_is_not_python(tmp_path, run_cli):
    books = tmp_path / "books"
    books.mkdir()
    write_notebook(books / "01_broken.ipynb", 'run_dir = "outputs/sample"\nimgsz = (32')
    code, err = run_cli("run", "--notebooks", books, "--run-dir", tmp_path / "run", "--no-report")
    assert code == 2
    assert "The parameters cell of 01_broken.ipynb is not valid Python (line 2); fix it." in err


@pytest.mark.parametrize("content, message", [
    ("common:\n  imgsz: [32\n", r"Parameters file \S+p.yaml is not valid YAML \(while parsing .*\); fix the line it names"),
    ("- imgsz\n- 32\n", r"Parameters file \S+p.yaml must be a mapping with 'common:' and per-notebook sections"),
    ("common: 32\n", r"Section 'common' of parameters file \S+p.yaml must be a mapping of parameter: value, not 32"),
], ids=["yaml", "list", "section"])
def test_cli_bad_parameters_file(tmp_path, run_cli, content, message):
    params = write_yaml(tmp_path / "p.yaml", content)
    code, err = run_cli("run", "--params", params, "--run-dir", tmp_path / "run")
    assert code == 2 and re.search(message, err), err
    assert not (tmp_path / "run").exists()


def test_executing_a_notebook_that_does_not_exist(tmp_path):
    with pytest.raises(WorkbookError, match=r"Notebook \S+/99_typo.ipynb does not exist; choose one of \[.*'20_convert.ipynb'"):
        report.execute(tmp_path / "99_typo.ipynb", tmp_path / "run")


# ----------------------------------------------------------------------------- sweep files

@pytest.mark.parametrize("content, message", [
    ({"grid": ["20_convert.calib_images", 10]},
     r"Sweep file \S+s.yaml: 'grid:' must map NOTEBOOK.PARAMETER to a list of values, e.g. 20_convert.calib_images: \[10, 50\]"),
    ({"grid": {"20_convert.calib_images": []}},
     r"Grid key '20_convert.calib_images' in sweep file \S+s.yaml has an empty list; give it at least one value"),
    ({"grid": {"20_convert.calib_images": [2, 4]}, "variants": {"calib_images-2": {"20_convert": {"calib_images": 3}}}},
     r"Sweep variant 'calib_images-2' has the name of a grid combination; rename it"),
    ({"variants": {"small": {"20_convert": 8}}},
     r"Sweep variant 'small' section '20_convert' must be a mapping of parameter: value"),
    ({"variants": {}},
     r"Sweep file \S+s.yaml needs a non-empty 'variants:' mapping of name: \{section: \{param: value\}\} or a 'grid:'"),
], ids=["grid-not-mapping", "grid-empty-list", "name-collision", "section-not-mapping", "no-variants"])
def test_cli_bad_sweep_file(tmp_path, run_cli, content, message):
    sweep_file = write_yaml(tmp_path / "s.yaml", content)
    code, err = run_cli("run", "--sweep", sweep_file, "--run-dir", tmp_path / "sw")
    assert code == 2 and re.search(message, err), err
    assert not (tmp_path / "sw").exists()
