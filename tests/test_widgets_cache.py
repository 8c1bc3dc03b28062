"""The parameter form (one source of truth for headless and interactive runs) and step caching."""
from __future__ import annotations

import json

import pytest

from helpers import widgets
from helpers.core import step_cache
from helpers.core.paths import Run
from helpers.runner import status
from helpers.toolkit.options import QUANTIZED_ALGORITHMS, TARGET_PLATFORMS


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
        return step_cache.Step(run, "demo", {"run_dir": str(run.root), **params}, inputs=[src], outputs=[out])

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
    assert step_cache.fingerprint({"run_dir": "x", "a": 1}, [src]) == step_cache.fingerprint({"run_dir": "y", "a": 1}, [src])


def test_step_refuses_to_record_missing_outputs(tmp_path):
    run = Run.at(tmp_path)
    s = step_cache.Step(run, "demo", {}, outputs=[tmp_path / "never.txt"])
    with pytest.raises(RuntimeError, match="did not write"):
        s.done()


def test_run_dir_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    from helpers.core.errors import WorkbookError

    with pytest.raises(WorkbookError, match="is a file; pass run_dir= a folder path"):
        Run.at(f)


# ---------------------------------------------------------------- cache: the defects of issue 11 item 2

def _cached_run(run, params, inputs, out, log):
    def compute():
        log.append(params["a"])
        out.write_text(f"result {params['a']}")
        return params["a"]
    return step_cache.cached(run, "demo", params, inputs=inputs, outputs=[out], compute=compute,
                             load=lambda: int(out.read_text().split()[1]))


def test_interrupted_recompute_then_reverted_params_recomputes(tmp_path):
    run = Run.at(tmp_path / "run")
    out, log = run.root / "out.txt", []
    assert _cached_run(run, {"a": 1}, [], out, log) == 1
    assert _cached_run(run, {"a": 1}, [], out, log) == 1 and log == [1], "an unchanged step is reused"

    def interrupted():
        out.write_text("half-written by a=2")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        step_cache.cached(run, "demo", {"a": 2}, outputs=[out], compute=interrupted)
    # back to a=1: the outputs on disk are the interrupted a=2 ones, so they must not be reused
    assert _cached_run(run, {"a": 1}, [], out, log) == 1 and log == [1, 1]
    assert out.read_text() == "result 1"


def test_timings_in_an_input_do_not_invalidate(tmp_path):
    run = Run.at(tmp_path / "run")
    conv = run.rknn / "convert.json"
    conv.write_text(json.dumps({"config": {"quantized_algorithm": "normal"}, "seconds": 3.2, "load_seconds": 1.0}))
    out, log = run.root / "out.txt", []
    _cached_run(run, {"a": 1, "build_seconds": 9}, [conv], out, log)
    conv.write_text(json.dumps({"seconds": 4.7, "load_seconds": 2.5, "config": {"quantized_algorithm": "normal"}}))
    _cached_run(run, {"a": 1, "build_seconds": 12}, [conv], out, log)
    assert log == [1], "an unchanged convert.json re-written with other timings reuses the step"
    conv.write_text(json.dumps({"seconds": 4.7, "config": {"quantized_algorithm": "mmse"}}))
    _cached_run(run, {"a": 1}, [conv], out, log)
    assert log == [1, 1], "a changed option recomputes"


def test_calibration_image_content_and_toolkit_version_are_in_the_key(tmp_path, monkeypatch):
    run = Run.at(tmp_path / "run")
    img = tmp_path / "imgs" / "a.png"
    img.parent.mkdir()
    img.write_bytes(b"pixels v1")
    calib = run.rknn / "calibration.txt"
    calib.write_text(f"{img}\n")
    out, log = run.root / "out.txt", []
    _cached_run(run, {"a": 1}, [calib], out, log)
    img.write_bytes(b"pixels v2")  # same list, same path, other image
    _cached_run(run, {"a": 1}, [calib], out, log)
    assert log == [1, 1], "a changed calibration image recomputes"
    monkeypatch.setattr(step_cache, "toolkit_version", lambda: "9.9.9")
    _cached_run(run, {"a": 1}, [calib], out, log)
    assert log == [1, 1, 1], "another toolkit version recomputes"


def test_record_inputs_follow_the_convert_record(tmp_path):
    run = Run.at(tmp_path / "run")
    (run.model / "model.onnx").write_bytes(b"onnx")
    (run.model / "model.torchscript").write_bytes(b"ts")
    (run.rknn / "calibration.txt").write_text("a.png\n")
    record = {"source": "model/model.torchscript", "load_path": "pytorch", "dataset": "rknn/calibration.txt"}
    (run.rknn / "convert.json").write_text(json.dumps(record))
    names = [p.relative_to(run.root).as_posix() for p in step_cache.record_inputs(run)]
    assert names == ["rknn/convert.json", "model/model.torchscript", "model/model.onnx", "rknn/calibration.txt"], \
        "with load_path pytorch the ONNX (the FP32 reference) is part of the key"
    demo = run.analysis / "calibration_demo.txt"
    assert step_cache.record_inputs(run, demo)[-1] == demo
    record.update(source=str(run.model / "model.onnx"), load_path="onnx")
    (run.rknn / "convert.json").write_text(json.dumps(record))
    assert [p.name for p in step_cache.record_inputs(run)] == ["convert.json", "model.onnx", "calibration.txt"]


def test_cached_without_load_returns_the_recorded_value(tmp_path, capsys):
    run = Run.at(tmp_path / "run")
    calls = []
    value = lambda: calls.append(1) or {"opset": 19}  # noqa: E731
    assert step_cache.cached(run, "v", {"x": 1}, compute=value) == {"opset": 19}
    assert step_cache.cached(run, "v", {"x": 1}, compute=value) == {"opset": 19} and len(calls) == 1
    # read back in the process that computed it (a notebook asking twice): not announced as a reuse of earlier work
    assert "[cache]" not in capsys.readouterr().out
    step_cache._MADE_HERE.clear()  # as in a later kernel
    assert step_cache.cached(run, "v", {"x": 1}, compute=value) == {"opset": 19} and len(calls) == 1
    assert "[cache] v: inputs and parameters unchanged" in capsys.readouterr().out


def test_lazy_makes_only_when_used():
    made = []
    lazy = step_cache.Lazy(lambda: made.append(1) or "model")
    lazy.close()
    assert made == [], "a lazy value nobody asked for is never made"
    assert lazy.get() == "model" and lazy.get() == "model" and made == [1]


def test_tooltips_are_the_parameters_cells_own_comments(tmp_path):
    src = ('a = 1  # first line of help\n    # continued below\nb = "x"\nc = [1,\n     2]  # on the closing line\n# a '
           'header, not help\nd = 0\n')
    assert widgets.comments_of(src) == {"a": "first line of help continued below", "c": "on the closing line"}
    form = widgets.form({"run_dir": str(tmp_path), "data_dir": "", "batch": 4, "val_images": 0, "image_index": 0,
                         "pictures": 4}, "30_simulator_inference")
    assert form.widgets["batch"].description_tooltip.startswith("images per simulator call"), "the tooltip is the cell's comment"
    assert not hasattr(widgets, "HELP"), "one place for help text: the parameters cell"


def test_choice_lists_are_converts_lists():

    assert widgets.CHOICES["target_platform"] is TARGET_PLATFORMS
    assert widgets.CHOICES["quantized_algorithm"] is QUANTIZED_ALGORITHMS


def test_cached_recomputes_over_a_record_without_result(tmp_path):
    run = Run.at(tmp_path / "run")
    old = step_cache.Step(run, "v", {"x": 1})
    old.check()
    old.done(kind="onnx")  # the older Step API: summary values, no "result"
    assert step_cache.cached(run, "v", {"x": 1}, compute=lambda: {"kind": "onnx"}) == {"kind": "onnx"}


# ----------------------------------------------------------------------------- Run All keeps the person's edits

def run_all(ns: dict, notebook: str = "not_a_notebook_in_the_series"):
    """What JupyterLab's Run All does to the form: the parameters cell runs again (ns holds its literals) and
    the form cell builds a new form in the same kernel."""
    return widgets.form(dict(ns), notebook)


def test_run_all_keeps_edited_values_and_reset_restores_the_cell(tmp_path, capsys):
    cell = {"run_dir": str(tmp_path / "run"), "calib_images": 50, "target_platform": "rk3566", "grid": ["normal"]}
    first = run_all(cell)
    first.widgets["calib_images"].value = 120
    first.widgets["target_platform"].value = "rk3588"
    first.widgets["grid"].value = "['mmse']"

    second = run_all(cell)
    assert second.values(record=False) == {**cell, "calib_images": 120, "target_platform": "rk3588", "grid": ["mmse"]}
    assert set(second.kept) == {"calib_images", "target_platform", "grid"}
    line = second.note()
    assert "calib_images=120 (cell: 50)" in line and "target_platform='rk3588'" in line and "Reset" in line
    second.values()  # printed with the table, so a static report says it too
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("Kept from the form before this re-run: calib_images=120")

    third = run_all(cell)  # a second Run All keeps them still
    assert third.values(record=False)["calib_images"] == 120

    third.reset()  # the button
    assert third.values(record=False) == cell and third.note() == ""
    assert run_all(cell).values(record=False) == cell, "after a reset, Run All takes the cell's values"


def test_run_all_takes_a_changed_cell_literal_over_an_older_form_edit(tmp_path):
    cell = {"run_dir": str(tmp_path / "run"), "calib_images": 50, "batch": 4}
    first = run_all(cell)
    first.widgets["calib_images"].value = 120
    first.widgets["batch"].value = 8
    second = run_all({**cell, "calib_images": 70})  # the person edited the cell text itself
    assert second.values(record=False) == {**cell, "calib_images": 70, "batch": 8}
    assert "calib_images=70 (your form value 120 was replaced)" in second.note()


def test_unedited_fields_follow_the_cell_and_forms_are_per_notebook(tmp_path):
    cell = {"run_dir": str(tmp_path / "run"), "calib_images": 50}
    run_all(cell, "a_notebook").widgets["calib_images"].value = 9
    assert run_all(cell, "another_notebook").values(record=False) == cell
    assert run_all(cell, "a_notebook").values(record=False)["calib_images"] == 9


def test_headless_kernel_keeps_nothing_injected_values_stand(tmp_path, monkeypatch):
    """Under the runner (papermill), each form shows exactly what the namespace holds: the injected values."""
    monkeypatch.setenv(widgets.HEADLESS_ENV, "1")
    cell = {"run_dir": str(tmp_path / "run"), "calib_images": 50}
    first = run_all(cell)
    first.widgets["calib_images"].value = 120
    injected = {**cell, "calib_images": 8}
    assert run_all(injected).values(record=False) == injected
    assert run_all(cell).values(record=False) == cell and run_all(cell).note() == ""


@pytest.mark.slow
def test_under_the_runner_injected_values_stand_even_after_an_edit(tmp_path):
    """A real papermill execution in the runner's kernel: a second form built after an edit shows the
    injected value, not the edit (the form is not interactive there)."""
    from test_runner import write_notebook

    from helpers.runner import execute

    nb = tmp_path / "toy.ipynb"
    code = ("import os\nfrom helpers import widgets\nns = {'run_dir': run_dir, 'calib_images': calib_images}\n"
            "widgets.form(ns, 'toy').widgets['calib_images'].value = 99\n"
            "again = widgets.form(ns, 'toy').values(record=False)['calib_images']\n"
            "seen = (os.environ.get('WORKBOOK_HEADLESS'), again)\nassert seen == ('1', 8), seen")
    write_notebook(nb, [("params", 'run_dir = "x"\ncalib_images = 50'), ("code", code)])
    out = execute.execute(nb, tmp_path / "run", {"calib_images": 8})
    assert json.loads(out.read_text())["metadata"]["papermill"]["parameters"]["calib_images"] == 8


def test_step_output_corrupted_in_place_is_recomputed_and_said(tmp_path, capsys):
    from fault_support import corrupt_in_place

    run = Run.at(tmp_path / "run")
    model, log = run.rknn / "model.rknn", run.logs / "build.log"
    model.write_bytes(bytes(range(256)) * 16)
    log.write_text("a toolkit log: not stamped")
    step = step_cache.Step(run, "20_convert", {"a": 1}, outputs=[model, log])
    step.done()
    assert set(step.record["stamps"]) == {"rknn/model.rknn"}, "stamped by run-relative name: a moved run stays warm"
    assert step_cache.Step(run, "20_convert", {"a": 1}, outputs=[model, log]).check()
    corrupt_in_place(model)
    capsys.readouterr()
    again = step_cache.Step(run, "20_convert", {"a": 1}, outputs=[model, log])
    assert not again.check()
    out = capsys.readouterr().out
    assert "[cache] 20_convert recomputes: rknn/model.rknn content changed" in out and not status._CACHE_LINE.search(out)
    assert not again.record_path.exists(), "the stale record is gone before recomputing"
