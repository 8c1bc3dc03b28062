"""The runner (`python -m helpers run|report`): bad input refused up front with one clear sentence,
a failing notebook stops the run with its cell's error in one block, variants files, and the example
parameter files (including "my own ONNX model + my own image folder", made for real here)."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from helpers.core.errors import WorkbookError
from helpers.core.paths import REPO
from helpers.runner import execute, series, status, variant_runs, variants
from helpers.runner.series import run_series

PARAMS = REPO / "params"
NAMES = [nb.stem for nb in execute.notebooks()]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "helpers", *args], cwd=REPO, capture_output=True, text=True, timeout=900)


def one_sentence(text: str) -> str:
    """The error line the CLI printed; asserts it is a single line."""
    lines = [ln for ln in text.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, text
    return lines[0]


# ----------------------------------------------------------------------------- bad input


def test_unknown_key_in_section_lists_valid_keys(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("00_environment_check:\n  run_dirr: outputs/x\n")
    proc = run_cli("run", "--params", str(params), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2
    msg = one_sentence(proc.stderr)
    assert "run_dirr" in msg and "valid keys: run_dir" in msg
    assert not (tmp_path / "run").exists(), "nothing may run (or be created) before the parameters are valid"


def test_unknown_common_key_lists_every_valid_key(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("common:\n  tagret_platform: rk3566\n")
    with pytest.raises(WorkbookError) as err:
        series.plan(execute.load_params_file(params), None)
    msg = str(err.value)
    assert "tagret_platform" in msg and "valid keys:" in msg
    for name in {k for nb in execute.notebooks() for k in execute.declared_parameters(nb)}:
        assert name in msg


def test_unknown_section_names_the_notebooks(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("25_convertt:\n  target_platform: rk3566\n")
    with pytest.raises(WorkbookError, match=r"25_convertt.*match no notebook.*00_environment_check"):
        series.plan(execute.load_params_file(params), None)


def test_params_file_that_is_not_a_mapping(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("- just\n- a list\n")
    with pytest.raises(WorkbookError, match="must be a mapping"):
        execute.load_params_file(params)
    params.write_text("common: [1, 2]\n")
    with pytest.raises(WorkbookError, match="Section 'common'.*must be a mapping"):
        execute.load_params_file(params)


def test_only_names_a_missing_notebook(tmp_path):
    proc = run_cli("run", "--only", "00,99", "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2
    msg = one_sentence(proc.stderr)
    assert "'99'" in msg and "matches no notebook" in msg and "00_environment_check" in msg
    assert not (tmp_path / "run").exists()


def test_only_accepts_numbers_and_names():
    assert [p.stem for p in execute.select("00")] == ["00_environment_check"]
    assert [p.stem for p in execute.select(["00_environment_check"])] == ["00_environment_check"]
    assert [p.stem for p in execute.select("")] == NAMES


def test_run_dir_that_is_a_file(tmp_path):
    not_a_dir = tmp_path / "run"
    not_a_dir.write_text("I am a file")
    proc = run_cli("run", "--only", "00", "--run-dir", str(not_a_dir))
    assert proc.returncode == 2
    msg = one_sentence(proc.stderr)
    assert str(not_a_dir) in msg and "is a file" in msg
    assert not_a_dir.read_text() == "I am a file"
    proc = run_cli("report", "--run-dir", str(not_a_dir))
    assert proc.returncode == 2 and "is a file" in one_sentence(proc.stderr)


def test_report_of_a_missing_run(tmp_path):
    proc = run_cli("report", "--run-dir", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert "does not exist" in one_sentence(proc.stderr)


# ----------------------------------------------------------------------------- running


@pytest.mark.slow
def test_run_executes_and_renders(tmp_path):
    """`python -m helpers run --only 00`: executed notebook, both HTML flavours, index page, progress bar."""
    run_dir = tmp_path / "run"
    proc = run_cli("run", "--only", "00", "--params", str(PARAMS / "sample.yaml"), "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "00_environment_check" in proc.stderr and "cell/s]" in proc.stderr  # the per-notebook tqdm bar
    assert (run_dir / "executed" / "00_environment_check.ipynb").exists()
    for name in ("00_environment_check.html", "00_environment_check.report.html", "index.html"):
        assert (run_dir / "report" / name).stat().st_size > 1000, name
    assert "1 notebook(s) ran" in proc.stdout and str(run_dir / "report" / "index.html") in proc.stdout
    assert json.loads((run_dir / "env.json").read_text())["checks"]
    # The kernel was pre-warmed (modules imported silently): counts still start at 1, no names leaked.
    nb = nbformat.read(str(run_dir / "executed" / "00_environment_check.ipynb"), as_version=4)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))


FAILING_NB = [
    ("params", 'run_dir = "outputs/sample"\nwhat = "fine"'),
    ("code", "from helpers.core.errors import WorkbookError\nfrom helpers.core.paths import Run\nrun = Run.at(run_dir)"),
    ("code", "(run.root / 'first.txt').write_text(what)"),
    ("code", "if what != 'fine':\n    raise WorkbookError(f'Parameter what={what!r} is not fine; pass what=\"fine\".')"),
    ("code", "(run.root / 'after.txt').write_text('should not exist')"),
]


def write_notebook(path: Path, cells) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "rknn-workbook", "display_name": "RKNN workbook (.venv)", "language": "python"},
                   "language_info": {"name": "python"}}
    for kind, src in cells:
        cell = nbformat.v4.new_code_cell(src)
        if kind == "params":
            cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nbformat.write(nb, str(path))


@pytest.fixture
def toy_series(tmp_path, monkeypatch):
    """A series of real notebooks in a temp notebooks/ folder: 01 writes, 02 fails on bad input, 03 after it."""
    books = tmp_path / "notebooks"
    books.mkdir()
    write_notebook(books / "01_first.ipynb", FAILING_NB[:3])
    write_notebook(books / "02_check.ipynb", FAILING_NB)
    write_notebook(books / "03_later.ipynb", [FAILING_NB[0], ("code", "open('never', 'w')")])
    monkeypatch.setattr(execute, "NOTEBOOKS", books)
    return books


@pytest.mark.slow
def test_failing_cell_stops_the_run_with_one_readable_block(tmp_path, toy_series):
    run_dir = tmp_path / "run"
    result = series.run_series({"common": {"what": "bad"}}, run_dir, progress=False)
    assert result.done == ["01_first", "02_check"][:1] and result.failed == "02_check"
    block = result.failure
    assert "02_check failed" in block
    assert "raise WorkbookError" in block  # the failing cell's code
    assert "WorkbookError: Parameter what='bad' is not fine; pass what=\"fine\"." in block
    assert "Traceback" not in block and "\x1b[" not in block  # our own errors: the sentence, no traceback noise
    assert str(run_dir / "executed" / "02_check.ipynb") in block
    assert (run_dir / "first.txt").read_text() == "bad", "earlier artifacts stay"
    assert not (run_dir / "after.txt").exists() and not (run_dir / "executed" / "03_later.ipynb").exists()
    page = (run_dir / "report" / "index.html").read_text()
    row = re.search(r"<tr><td>02_check</td>.*?</tr>", page, re.S)  # the page's CSS names .failed too: look in the row
    assert row and re.search(r"<td[^>]*>failed\b", row.group(0)), "the index must mark 02_check as failed in its own row"
    assert not re.search(r"<td[^>]*>failed\b", re.search(r"<tr><td>01_first</td>.*?</tr>", page, re.S).group(0))
    statuses = {s.name: s.status for s in (status.status_of(run_dir, nb) for nb in execute.notebooks())}
    assert statuses == {"01_first": "ok", "02_check": "failed", "03_later": "not run"}


@pytest.mark.slow
def test_unexpected_error_shows_the_last_traceback_lines(tmp_path, toy_series):
    write_notebook(toy_series / "02_check.ipynb",
                   [FAILING_NB[0], ("code", "def inner():\n    return {}['missing_key']\ninner()")])
    result = series.run_series({}, tmp_path / "run", progress=False, render=False)
    assert result.failed == "02_check"
    assert "KeyError: 'missing_key'" in result.failure
    assert "traceback (last lines):" in result.failure and "inner()" in result.failure


@pytest.mark.slow
def test_variants_runs_variants_in_sibling_folders_and_compares(tmp_path, toy_series):
    variants_file = tmp_path / "variants.yaml"
    variants_file.write_text(yaml.safe_dump({"only": "01,02", "variants": {"good": {"common": {"what": "fine"}},
                                                                    "bad": {"common": {"what": "bad"}}}}))
    root, rows, failures = variant_runs.run_variants(variants_file, tmp_path / "sw")
    assert (root / "good" / "first.txt").read_text() == "fine" and (root / "bad" / "first.txt").read_text() == "bad"
    assert set(failures) == {"bad"} and "02_check failed" in failures["bad"]
    with open(root / "comparison.csv") as fh:
        table = {r["variant"]: r for r in csv.DictReader(fh)}
    assert table["good"]["status"] == "partial"  # 03 was not selected
    assert table["bad"]["status"] == "failed"
    assert table["good"]["01_first.what"] == "fine" and table["bad"]["01_first.what"] == "bad"  # what differs
    assert table["good"]["notebooks run"] == "2" and table["bad"]["notebooks run"] == "2"
    assert "FP32 top-1 (ONNX Runtime)" not in table["good"]  # a figure no variant has is left out
    assert 'href="good/report/index.html"' in (root / "comparison.html").read_text()
    assert (root / "good" / "report" / "index.html").exists()


def test_bad_variants_files(tmp_path):
    variants_file = tmp_path / "s.yaml"
    variants_file.write_text("variants: {}\n")
    with pytest.raises(WorkbookError, match="non-empty 'variants:'"):
        variants.load_variants(variants_file)
    variants_file.write_text("variants: {a: {}}\nvariant_dir: x\n")
    with pytest.raises(WorkbookError, match=r"unknown key\(s\) \['variant_dir'\]; valid keys: base, grid, only, variants"):
        variants.load_variants(variants_file)
    variants_file.write_text("variants: {a: {20_convert: {tagret: rk3566}}}\n")
    configs, _ = variants.load_variants(variants_file)
    with pytest.raises(WorkbookError, match="tagret"):
        variant_runs.run_variants(variants_file, tmp_path / "sw")
    assert not (tmp_path / "sw").exists()


# ----------------------------------------------------------------------------- example parameter files


@pytest.mark.parametrize("name", ["sample.yaml", "own_model.yaml"])
def test_example_params_files_are_valid(name):
    """Every key of the shipped examples is declared by a notebook (so a run would accept them); the sample
    passes every check, the own-model template is refused until its placeholder paths are set."""
    config = execute.load_params_file(PARAMS / name)
    planned = dict((nb.stem, execute.params_for(nb, config)) for nb in execute.notebooks())
    if name == "sample.yaml":
        series.plan(config, None)
    else:
        with pytest.raises(WorkbookError, match="model='/path/to/my_model.onnx' in 10_export"):
            series.plan(config, None)
    assert planned
    used = {k for p in planned.values() for k in p}
    assert set(config.get("common") or {}) <= used


def test_example_variants_file_is_valid():
    configs, only = variants.load_variants(PARAMS / "variants_platforms.yaml")
    assert len(configs) >= 2
    for config in configs.values():
        series.plan(config, only)
    platforms = {c["20_convert"]["target_platform"] for c in configs.values()}
    assert len(platforms) >= 2


def make_own_data(folder: Path, classes=("cat", "dog", "fox"), per_split=(6, 4)) -> Path:
    """A real labelled image folder: <folder>/{train,val}/<class>/*.png, each class its own colour."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(1)
    for split, n in zip(("train", "val"), per_split):
        for c, name in enumerate(classes):
            d = folder / split / name
            d.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 60, (20, 20, 3), dtype=np.uint8)
                img[..., c] += 180
                cv2.imwrite(str(d / f"{i}.png"), img)
    return folder


@pytest.mark.slow
def test_own_model_example_runs_on_a_real_onnx_and_image_folder(tmp_path, tiny_onnx):
    """params/own_model.yaml with its two paths (and input size) pointed at a real ONNX and a real
    image folder made here: the conversion path runs end to end and the index shows its figures."""
    needed = ["10_export", "20_convert", "30_simulator_inference"]
    missing = [n for n in needed if n not in NAMES]
    if missing:
        pytest.skip(f"{missing} not in notebooks/ yet")
    config = execute.load_params_file(PARAMS / "own_model.yaml")
    assert set(config["common"]) >= {"model", "data_dir", "imgsz"}
    config["common"].update(model=str(tiny_onnx), data_dir=str(make_own_data(tmp_path / "images")), imgsz=16)
    own = tmp_path / "my_model.yaml"
    own.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    proc = run_cli("run", "--params", str(own), "--run-dir", str(run_dir), "--only", "00,10,20,30")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    params = json.loads((run_dir / "params.json").read_text())
    assert params["20_convert"]["mean_values"] == config["common"]["mean_values"]
    assert params["30_simulator_inference"]["data_dir"] == config["common"]["data_dir"]
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert metrics
    from helpers.runner import figures

    figs = {f.label: f for f in figures.key_figures(run_dir)}
    for label in ("FP32 top-1 (ONNX Runtime)", "INT8 top-1 (RKNN simulator)", "Final-output cosine INT8 vs FP32 (mean)",
                  "ONNX model size", "RKNN INT8 model size", "Conversion time (load + build + export)"):
        assert figs[label].value is not None, label
    assert figs["ONNX model size"].raw == (run_dir / "model" / "model.onnx").stat().st_size
    assert "not run" in (run_dir / "report" / "index.html").read_text()  # 40-60 were not selected


@pytest.mark.slow
def test_changing_a_later_parameter_reruns_only_what_depends_on_it(series):
    """Re-running 10-30 with a new 30 parameter recomputes 30's step only; 10's and 20's are reused."""
    if "30_simulator_inference" not in NAMES:
        pytest.skip("30_simulator_inference not in notebooks/ yet")
    root = series.ran("30_simulator_inference")

    def records():
        return {p.stem: json.loads(p.read_text()) for p in sorted((root / ".cache").glob("*.json"))}

    before = records()
    config = json.loads(json.dumps(series.config))
    section = config.setdefault("30_simulator_inference", {})
    original = section.get("batch",
                           int(execute.declared_parameters(REPO / "notebooks" / "30_simulator_inference.ipynb")["batch"]))
    section["batch"] = 8 if original != 8 else 4
    try:
        result = run_series(config, root, only="10,20,30", progress=False, render=False)
        assert result.ok, result.failure
        after = records()
    finally:  # put the shared run folder back as the other tests expect it
        section["batch"] = original
        run_series(config, root, only="30", progress=False, render=False)
    changed = {k for k in after if after[k].get("finished") != before.get(k, {}).get("finished")}
    upstream = {k for k in before if k[:2] in {"10", "20"} or not k[:2].isdigit()}
    assert upstream and not (changed & upstream), f"upstream steps recomputed: {changed & upstream}"
    assert any(k.startswith("30") for k in changed), f"30's step did not recompute: {changed}"


@pytest.mark.slow
def test_variants_runs_shared_leading_notebooks_once(tmp_path, toy_series):
    """Notebooks whose parameters agree in every variant run once (into _shared) and seed the variants."""
    write_notebook(toy_series / "01_first.ipynb", [FAILING_NB[0], FAILING_NB[1], (
        "code", "import uuid\ntoken = run.root / 'token.txt'\nif not token.exists():  # a cached step: made once, then reused\n"
                "    token.write_text(uuid.uuid4().hex)")])
    write_notebook(toy_series / "02_check.ipynb", [("params", 'run_dir = "outputs/sample"\nextra = 0'), FAILING_NB[1],
                                                   ("code", "(run.root / 'extra.txt').write_text(str(extra))")])
    variants_file = tmp_path / "variants.yaml"
    variants_file.write_text(yaml.safe_dump({"only": "01,02",
                                     "variants": {"x": {"02_check": {"extra": 1}}, "y": {"02_check": {"extra": 2}}}}))
    configs, only = variants.load_variants(variants_file)
    assert variants.shared_prefix(configs, only) == ["01_first"]
    root, rows, failures = variant_runs.run_variants(variants_file, tmp_path / "sw")
    assert not failures
    token = (root / "_shared" / "token.txt").read_text()
    assert (root / "x" / "token.txt").read_text() == token == (root / "y" / "token.txt").read_text()
    assert (root / "x" / "extra.txt").read_text() == "1" and (root / "y" / "extra.txt").read_text() == "2"
    executed = nbformat.read(str(root / "x" / "executed" / "01_first.ipynb"), as_version=4)
    assert executed.metadata.papermill.parameters.run_dir == str(root / "_shared")  # 01 ran once, in _shared
    status = json.loads((root / "x" / "executed" / "status.json").read_text())
    assert status["01_first"]["how"] == "reused" and status["02_check"]["how"] == "ran"  # the variants reused it
    assert [r["variant"] for r in rows] == ["x", "y"]
