"""The parameter form (one source of truth for headless and interactive runs) and step caching."""
from __future__ import annotations

import json

import pytest

from helpers import cache, widgets
from helpers.paths import Run


def test_form_reads_declared_parameters_and_records_them(tmp_path, capsys):
    ns = {"run_dir": str(tmp_path / "run"), "In": ["noise"], "unrelated": 3}
    form = widgets.form(ns, "00_environment_check")
    assert set(form.widgets) == {"run_dir"}, "only the notebook's declared parameters become widgets"
    values = form.values()
    assert values == {"run_dir": str(tmp_path / "run")}
    out = capsys.readouterr().out
    assert "parameter" in out and "run_dir" in out, "values are printed as a text table"
    saved = json.loads((tmp_path / "run" / "params.json").read_text())
    assert saved["00_environment_check"] == values


def test_interactive_edit_is_what_later_cells_see(tmp_path):
    form = widgets.form({"run_dir": str(tmp_path / "a")}, "00_environment_check")
    form.widgets["run_dir"].value = str(tmp_path / "b")
    assert form.values(record=False)["run_dir"] == str(tmp_path / "b")


def test_widget_kinds_for_copied_notebook(tmp_path):
    ns = {"run_dir": str(tmp_path), "target_platform": "rk3566", "do_quantization": True, "calib_images": 50,
          "threshold": 0.99, "grid": ["normal", "mmse"]}
    form = widgets.form(ns, "not_a_notebook_in_the_series")
    kinds = {k: type(w).__name__ for k, w in form.widgets.items()}
    assert kinds == {"run_dir": "Text", "target_platform": "Dropdown", "do_quantization": "Checkbox",
                     "calib_images": "IntText", "threshold": "FloatText", "grid": "Text"}
    form.widgets["grid"].value = "['kl_divergence']"
    assert form.values(record=False)["grid"] == ["kl_divergence"]
    form.widgets["grid"].value = "[unclosed"
    with pytest.raises(ValueError, match="grid = '\\[unclosed' is not a valid Python literal"):
        form.values(record=False)


def test_missing_parameter_says_run_the_parameters_cell():
    with pytest.raises(NameError, match="run the cell tagged 'parameters' first"):
        widgets.form({}, "00_environment_check")


def test_step_cache_reuses_until_inputs_or_params_change(tmp_path, capsys):
    run = Run.at(tmp_path / "run")
    src = tmp_path / "in.txt"
    src.write_text("v1")
    out = run.root / "out.txt"

    def step(**params):
        return cache.Step(run, "demo", {"run_dir": str(run.root), **params}, inputs=[src], outputs=[out])

    s = step(a=1)
    assert not s.check()
    out.write_text("result")
    s.done(score=0.5)
    assert step(a=1).check() and "reusing out.txt" in capsys.readouterr().out
    assert step(a=1).record["score"] == 0.5
    assert not step(a=2).fresh, "a parameter change invalidates"
    src.write_text("v2")
    assert not step(a=1).fresh, "an input content change invalidates"
    src.write_text("v1")
    assert step(a=1).fresh
    out.unlink()
    assert not step(a=1).fresh, "a missing output invalidates"
    # the run folder's location is not part of the key: a moved run stays warm
    assert cache.fingerprint({"run_dir": "x", "a": 1}, [src]) == cache.fingerprint({"run_dir": "y", "a": 1}, [src])


def test_step_refuses_to_record_missing_outputs(tmp_path):
    run = Run.at(tmp_path)
    s = cache.Step(run, "demo", {}, outputs=[tmp_path / "never.txt"])
    with pytest.raises(RuntimeError, match="did not write"):
        s.done()


def test_run_dir_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    from helpers.errors import WorkbookError

    with pytest.raises(WorkbookError, match="is a file; pass run_dir= a folder path"):
        Run.at(f)
