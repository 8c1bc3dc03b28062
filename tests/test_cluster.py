"""Variants runs on dask.distributed: a real `dask scheduler` and two `dask worker` processes on 127.0.0.1 run
a small variants file whose comparison equals the same file run on the default local cluster; a board variant is
never sent to a worker without its chip resource; bad inputs are one clear sentence."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_runner import FAILING_NB, one_sentence, run_cli, write_notebook

from helpers.core import cluster
from helpers.core.errors import WorkbookError
from helpers.core.paths import REPO
from helpers.runner import execute, series, variant_runs, variants

DASK = Path(sys.executable).parent / "dask"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def receiving_sigint(argv: list[str]) -> list[str]:
    """argv started through a shim that restores SIGINT's default and execs it: a job started in the background of a
    non-interactive shell inherits SIGINT as ignored, and Python then never installs its KeyboardInterrupt handler
    (a shim rather than preexec_fn, which is unsafe in a parent with threads)."""
    shim = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", shim, *argv]


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """`dask scheduler` + two `dask worker` processes, all bound to 127.0.0.1; stopped afterwards."""
    from distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    port, dash = free_port(), free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    procs = [subprocess.Popen(receiving_sigint([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                                "--dashboard-address", f"127.0.0.1:{dash}"]), cwd=folder, env=env,
                              stdout=subprocess.DEVNULL, stderr=open(folder / "scheduler.log", "w"))]
    try:
        for i in (1, 2):
            procs.append(subprocess.Popen(receiving_sigint([str(DASK), "worker", address, "--host", "127.0.0.1", "--nthreads",
                                                            "1",
                                                            "--nworkers", "1", "--no-dashboard", "--name", f"w{i}",
                                                            "--local-directory", str(folder / f"w{i}")]), cwd=folder, env=env,
                                          stdout=subprocess.DEVNULL, stderr=open(folder / f"worker{i}.log", "w")))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
            hosts = {info["host"] for info in client.scheduler_info()["workers"].values()}
        assert hosts == {"127.0.0.1"}, hosts
        yield address
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGINT)
        for p in reversed(procs):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def toy_notebooks(folder: Path) -> Path:
    """Two real notebooks: 01 writes its `what`; 02 declares a board `target` (a board notebook's shape)."""
    folder.mkdir()
    write_notebook(folder / "01_first.ipynb", FAILING_NB[:3])
    write_notebook(folder / "02_board.ipynb", [("params", 'run_dir = "outputs/sample"\ntarget = ""'), FAILING_NB[1],
                                               ("code", "(run.root / 'board.txt').write_text(target or 'simulator')")])
    return folder


# ----------------------------------------------------------------------------- the real series, two ways

FIGURES = ("FP32 top-1 (ONNX Runtime)", "INT8 top-1 (RKNN simulator)", "Final-output cosine INT8 vs FP32 (mean)",
           "ONNX model size", "RKNN INT8 model size")


@pytest.mark.slow
def test_variants_on_a_scheduler_match_the_local_cluster(tmp_path, dask_cluster):
    """A grid of two calibration sizes (notebooks 00-30, small parameters) on the default local cluster,
    then through --scheduler on the two workers: the comparison's figures are the same, the remote
    variants' artifacts came back into outputs/<variants file>/<variant>/, and the grid's plot was drawn."""
    variants_file = tmp_path / "grid.yaml"
    variants_file.write_text(yaml.safe_dump({
        "base": str(REPO / "params" / "sample.yaml"), "only": "00,10,20,30",
        "grid": {"20_convert.calib_images": [4, 8]},
        "variants": {},
    }))
    small = {"10_export": {"epochs": 2, "check_images": 4}, "30_simulator_inference": {"val_images": 40, "batch": 8}}
    data = yaml.safe_load(variants_file.read_text())
    data["grid"].update({f"{s}.{k}": [v] for s, kv in small.items() for k, v in kv.items()})
    variants_file.write_text(yaml.safe_dump(data))

    local, rows_local, failures = variant_runs.run_variants(variants_file, tmp_path / "local")
    assert not failures, failures
    # The remote run starts from the local one's shared model (training is not what is compared).
    shutil.copytree(local / "_shared", tmp_path / "remote" / "_shared")
    remote, rows_remote, failures = variant_runs.run_variants(variants_file, tmp_path / "remote", scheduler=dask_cluster)
    assert not failures, failures

    def table(root: Path) -> dict[str, dict[str, str]]:
        with open(root / "comparison.csv") as fh:
            return {r["variant"]: r for r in csv.DictReader(fh)}

    a, b = table(local), table(remote)
    assert set(a) == set(b) == {"calib_images-4", "calib_images-8"}
    for variant in a:
        assert a[variant]["status"] == b[variant]["status"] == "partial"  # 40-60 were not selected
        for label in FIGURES:
            assert a[variant][label] not in ("", "not run"), label
            assert a[variant][label] == b[variant][label], (variant, label)
    for variant in ("calib_images-4", "calib_images-8"):  # the artifacts came back from the workers' temporary folders
        assert (remote / variant / "rknn" / "model.rknn").stat().st_size > 0
        calib = (remote / variant / "rknn" / "calibration.txt").read_text().split()
        assert len(calib) == int(variant.split("-")[1])
        ran_in = json.loads((remote / variant / "params.json").read_text())["20_convert"]["run_dir"]
        assert ran_in != str(remote / variant) and "workbook-" in ran_in  # it ran elsewhere, not in place
    page = (remote / "comparison.html").read_text()
    assert "plots/" in page and (remote / "plots").is_dir()
    assert any(p.name.startswith("INT8-top-1") and "calib_images" in p.name for p in (remote / "plots").glob("*.png"))


# ----------------------------------------------------------------------------- board resources


@pytest.mark.slow
def test_board_variant_waits_for_a_worker_with_its_chip_and_fails_clearly(tmp_path, dask_cluster, monkeypatch):
    books = toy_notebooks(tmp_path / "notebooks")
    monkeypatch.setattr(execute, "NOTEBOOKS", books)
    variants_file = tmp_path / "s.yaml"
    variants_file.write_text(yaml.safe_dump({"variants": {"sim": {}, "board": {"02_board": {"target": "rk3588"}}}}))
    root, rows, failures = variant_runs.run_variants(variants_file, tmp_path / "sw", scheduler=dask_cluster, board_wait=4)
    assert set(failures) == {"board"}
    msg = failures["board"]
    assert "'rk3588'" in msg and "within 4 s" in msg and f'dask worker {dask_cluster} --resources "rk3588=1"' in msg
    assert (root / "sim" / "board.txt").read_text() == "simulator"  # the other variant ran on a worker
    assert not (root / "board" / "executed" / "02_board.ipynb").exists() and not (root / "board" / "board.txt").exists(), \
        "the board variant must not run on a worker without the board"
    with open(root / "comparison.csv") as fh:
        table = {r["variant"]: r for r in csv.DictReader(fh)}
    assert table["board"]["status"] == "failed" and "rk3588" in table["board"]["why"]
    assert table["sim"]["status"] == "ok" and table["sim"]["why"] == ""


def test_board_resource_is_named_after_the_chip(tmp_path, monkeypatch):
    monkeypatch.setattr(execute, "NOTEBOOKS", toy_notebooks(tmp_path / "notebooks"))
    assert variant_runs.board_resources({"02_board": {"target": "RK3566"}}, None) == {"rk3566": 1}
    assert variant_runs.board_resources({"02_board": {"target": "rk3566"}}, "01") == {}  # the board notebook is not selected
    assert variant_runs.board_resources({}, None) == {}


# ----------------------------------------------------------------------------- failures and Ctrl-C


@pytest.mark.slow
def test_failing_variant_stops_only_itself_and_its_row_says_why(tmp_path, dask_cluster, monkeypatch):
    books = tmp_path / "notebooks"
    books.mkdir()
    write_notebook(books / "01_check.ipynb", FAILING_NB)
    monkeypatch.setattr(execute, "NOTEBOOKS", books)
    variants_file = tmp_path / "s.yaml"
    variants_file.write_text(yaml.safe_dump({"grid": {"what": ["fine", "bad"]}}))
    root, rows, failures = variant_runs.run_variants(variants_file, tmp_path / "sw", scheduler=dask_cluster)
    assert set(failures) == {"bad"}
    assert (root / "fine" / "after.txt").exists() and not (root / "bad" / "after.txt").exists()
    with open(root / "comparison.csv") as fh:
        table = {r["variant"]: r for r in csv.DictReader(fh)}
    assert table["bad"]["why"] == "01_check: WorkbookError: Parameter what='bad' is not fine; pass what=\"fine\"."
    assert table["fine"]["status"] == "ok"
    assert 'class="failed"' in (root / "comparison.html").read_text()


@pytest.mark.slow
def test_ctrl_c_cancels_the_variants_run_and_its_kernels(tmp_path):
    """SIGINT to `python -m helpers run --variants`: exit 130 with one line, no kernel or run left behind."""
    import psutil

    books = tmp_path / "notebooks"
    books.mkdir()
    write_notebook(books / "01_slow.ipynb", [("params", 'run_dir = "outputs/sample"\nn = 0'),
                                             ("code", "import time\nfrom pathlib import Path\n"
                                                      "Path(run_dir, 'started.txt').write_text('yes')\ntime.sleep(300)")])
    variants_file = tmp_path / "s.yaml"
    variants_file.write_text(yaml.safe_dump({"grid": {"n": [1, 2]}}))
    proc = subprocess.Popen(receiving_sigint([sys.executable, "-m", "helpers", "run", "--variants", str(variants_file),
                                              "--run-dir", str(tmp_path / "sw"), "--notebooks", str(books)]),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not all((tmp_path / "sw" / v / "started.txt").exists() for v in ("n-1", "n-2")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(1)
        family = psutil.Process(proc.pid).children(recursive=True)
        kernels = [p for p in family if "ipykernel" in " ".join(p.cmdline())]
        assert kernels, "the variants' kernels should be running"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    gone, alive = psutil.wait_procs(family, timeout=20)
    assert not alive, [p.cmdline() for p in alive]


def test_unreachable_scheduler_is_one_sentence(tmp_path):
    variants_file = tmp_path / "s.yaml"
    variants_file.write_text(yaml.safe_dump({"variants": {"a": {}}, "only": "00"}))
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    proc = run_cli("run", "--variants", str(variants_file), "--run-dir", str(tmp_path / "sw"), "--scheduler", address,
                   "--connect-timeout", "2")
    assert proc.returncode == 2
    msg = one_sentence(proc.stderr)
    assert f"The dask scheduler at {address} did not answer within 2 s" in msg and "dask scheduler" in msg


def test_scheduler_address_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://10.0.0.5:8786")
    assert cluster.scheduler_address(None) == "tcp://10.0.0.5:8786"
    assert cluster.scheduler_address("tcp://127.0.0.1:1") == "tcp://127.0.0.1:1"
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")
    assert cluster.scheduler_address(None) is None


# ----------------------------------------------------------------------------- grids


def test_grid_is_the_cartesian_product_over_the_base(tmp_path):
    variants_file = tmp_path / "g.yaml"
    variants_file.write_text(yaml.safe_dump({
        "base": str(REPO / "params" / "sample.yaml"),
        "grid": {"20_convert.target_platform": ["rk3588", "rk3566"], "20_convert.quantized_algorithm": ["normal", "mmse"],
                 "imgsz": [32]},
        "variants": {"layer": {"20_convert": {"quantized_method": "layer"}}},
    }, sort_keys=False))
    configs, _ = variants.load_variants(variants_file)
    assert sorted(configs) == sorted(["rk3588_normal", "rk3588_mmse", "rk3566_normal", "rk3566_mmse", "layer"])
    assert configs["rk3566_mmse"]["20_convert"]["target_platform"] == "rk3566"
    assert configs["rk3566_mmse"]["20_convert"]["quantized_algorithm"] == "mmse"
    assert configs["rk3566_mmse"]["20_convert"]["calib_images"] == 50  # from the base file
    assert configs["rk3566_mmse"]["common"]["imgsz"] == 32
    assert configs["layer"]["20_convert"]["quantized_method"] == "layer"


@pytest.mark.parametrize("key", ["20_convert.tagret_platform", "25_convert.target_platform", "no_such_param"])
def test_grid_key_no_notebook_declares(tmp_path, key):
    variants_file = tmp_path / "g.yaml"
    variants_file.write_text(yaml.safe_dump({"grid": {key: [1, 2]}}))
    with pytest.raises(WorkbookError) as err:
        variants.load_variants(variants_file)
    msg = str(err.value)
    assert f"Grid key {key!r}" in msg and "no notebook declares" in msg and "\n" not in msg


def test_grid_larger_than_the_limit_needs_yes(tmp_path):
    variants_file = tmp_path / "g.yaml"
    variants_file.write_text(yaml.safe_dump({"grid": {"20_convert.calib_images": [1, 2, 3],
                                                   "20_convert.target_platform": ["rk3588", "rk3566"]}}))
    with pytest.raises(WorkbookError, match=r"makes 6 variants, more than the limit of 4; pass --yes"):
        variant_runs.run_variants(variants_file, tmp_path / "sw", max_variants=4)
    assert not (tmp_path / "sw").exists(), "nothing may start before the variants file is accepted"
    proc = run_cli("run", "--variants", str(variants_file), "--run-dir", str(tmp_path / "sw"), "--max-variants", "5")
    assert proc.returncode == 2 and "--yes" in one_sentence(proc.stderr)


def test_failure_reason_is_one_line():
    block = "\n".join(["─" * 78, "✗ 20_convert failed", "  in cell 5 (In [5]):", "    | rk.build()",
                       "  RknnError: build failed: Unsupported op Foo", "  full notebook with outputs: /x.ipynb",
                       "  The run stopped here; ...", "─" * 78])
    assert variants.reason(block) == "20_convert: RknnError: build failed: Unsupported op Foo"
    line = "Run folder /x is a file; pass --run-dir a folder path."
    assert variants.reason(f"error: {line}") == line


def test_plots_across_the_grid(tmp_path):
    params = {f"{a}_{n}": {"20_convert.quantized_algorithm": a, "20_convert.calib_images": n, "20_convert.target_platform": p}
              for a in ("normal", "mmse") for n in (1, 10, 50) for p in ("rk3588",)}
    params["x"] = {"20_convert.quantized_algorithm": "normal", "20_convert.calib_images": 5,
                   "20_convert.target_platform": "rk3566"}
    figures = {v: {"INT8 top-1 (RKNN simulator)": 0.5 + 0.001 * int(p["20_convert.calib_images"]),
                   "Conversion time (load + build + export)": 3.0 if p["20_convert.target_platform"] == "rk3588" else 5.0}
               for v, p in params.items()}
    pngs = {p.name for p in variants.plots(tmp_path, params, figures)}
    assert pngs == {"INT8-top-1-RKNN-simulator_vs_20_convert.calib_images.png", "build_time_per_chip.png"}


def test_plots_across_a_grid_of_detectors_are_in_map(tmp_path):
    """A detection run's variants carry mAP rows (the INT8 one names its head): those are plotted, in mAP50-95."""
    import matplotlib.image as mpimg

    params = {f"c{n}": {"20_convert.calib_images": n} for n in (5, 20, 50)}
    int8 = "INT8 mAP50-95 / mAP50 (RKNN simulator, split head)"
    figures = {v: {"FP32 mAP50-95 / mAP50 (ONNX Runtime)": 0.766, int8: 0.70 + p["20_convert.calib_images"] / 1000,
                   "Hybrid mAP50-95": None}
               for v, p in params.items()}
    pngs = sorted(p.name for p in variants.plots(tmp_path, params, figures))
    assert pngs == ["FP32-mAP50-95-mAP50-ONNX-Runtime_vs_20_convert.calib_images.png",
                    "INT8-mAP50-95-mAP50-RKNN-simulator-split-head_vs_20_convert.calib_images.png"]  # no hybrid measured: no plot
    assert variants.plotted(figures) == ["FP32 mAP50-95 / mAP50 (ONNX Runtime)", "Hybrid mAP50-95", int8]
    assert mpimg.imread(tmp_path / "plots" / pngs[1]).shape[0] > 100


def test_example_grid_variants_file_is_valid():
    configs, only = variants.load_variants(REPO / "params" / "variants_grid.yaml")
    assert len(configs) == 8 and "mmse_calib_images-5" in configs
    for config in configs.values():
        series.plan(config, only)
    assert {c["20_convert"]["target_platform"] for c in configs.values()} == {"rk3588", "rk3566", "rk3576"}
