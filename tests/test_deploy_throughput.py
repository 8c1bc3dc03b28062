"""The bundle's throughput kit (issue 23.6): run_rknn.py --benchmark N and --cores, run from an extracted bundle
against FakeRKNNLite (tests/fake_rknnlite.py: a stand-in for the board's runtime whose outputs come from ONNX Runtime
on the same model, and which refuses a core its chip does not have). The figures it prints here are the stand-in's and
mean nothing; what is tested is the control flow: warm-up and timed runs, ordered percentiles, one context per core,
per-core and total FPS, and the one-sentence refusals. Real figures come only from a board."""
from __future__ import annotations

import ast
import json
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import fake_rknnlite
import pytest
from test_deploy import bundle_dir, bundle_tarball, extracted, one_line, run_on_stand_in, sample_val  # noqa: F401  (fixtures)

from helpers.deploy import bundle, readme, throughput
from helpers.deploy.chips import RunnerError

NUMBER = r"([0-9.]+)"
LATENCY = re.compile(rf"^  (latency|core \d): mean {NUMBER} ms, p50 {NUMBER}, p90 {NUMBER}, p99 {NUMBER} ms "
                     rf"\(min {NUMBER}, max {NUMBER}\) -> {NUMBER} FPS$")


def reported(stdout: str) -> dict[str, dict[str, float]]:
    """{'latency' or 'core N': {mean, p50, p90, p99, min, max, fps}} from the runner's benchmark lines."""
    keys = ("mean", "p50", "p90", "p99", "min", "max", "fps")
    return {m[1]: dict(zip(keys, map(float, m.groups()[1:]))) for line in stdout.splitlines() if (m := LATENCY.match(line))}


def calls(tmp_path: Path) -> list[dict]:
    """Every inference the stand-in ran, with its context and that context's core mask."""
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def test_benchmark_warms_up_then_times_n_runs_with_ordered_percentiles(bundle_dir, tiny_onnx, tmp_path):
    res = run_on_stand_in(bundle_dir, tiny_onnx, tmp_path, "images", "--benchmark", "30", "--warmup", "4")
    assert res.returncode == 0, res.stderr
    stats = reported(res.stdout)["latency"]
    assert 0 < stats["min"] <= stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"] and stats["fps"] > 0
    assert "4 warm-up run(s), then 30 timed run(s)" in res.stdout
    assert "inference only" in res.stdout and "preprocessing and post-processing are not timed" in res.stdout
    assert "NPU clock: no *npu* node under /sys/class/devfreq" in res.stdout  # this PC: no clock claimed
    images = len(list((bundle_dir / "images").iterdir()))
    assert len(calls(tmp_path)) == images + 4 + 30  # each image once, then warm-up and timed runs on the first


def test_cores_run_one_context_per_core_and_report_each_and_all(bundle_dir, tiny_onnx, tmp_path):
    res = run_on_stand_in(bundle_dir, tiny_onnx, tmp_path, "images", "--benchmark", "12", "--warmup", "2", "--cores", "0,1,2")
    assert res.returncode == 0, res.stderr
    stats = reported(res.stdout)
    assert set(stats) == {"core 0", "core 1", "core 2"}
    for s in stats.values():
        assert s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"] and s["fps"] > 0
    total = re.search(rf"all 3 cores: {NUMBER} FPS \(36 inferences in {NUMBER} s wall time\)", res.stdout)
    assert total and float(total[1]) > 0
    per_context = Counter((c["context"], c["core_mask"]) for c in calls(tmp_path))
    masks = sorted(mask for (_, mask), n in per_context.items() if n == 2 + 12)
    lite = fake_rknnlite.FakeRKNNLite
    assert masks == sorted([lite.NPU_CORE_0, lite.NPU_CORE_1, lite.NPU_CORE_2])  # one context pinned to each core
    assert len(per_context) == 4  # plus the context that ran the images (core mask auto)


@pytest.mark.parametrize("argv, message", [
    (["--benchmark", "0"], "--benchmark 0: the number of timed inferences must be at least 1; pass e.g. --benchmark 200."),
    (["--benchmark", "5", "--warmup", "-1"], "--warmup -1: the number of untimed runs must be 0 or more"),
    (["--benchmark", "5", "--cores", "5"], "--cores 5: rk3588 has NPU cores 0, 1, 2 only, not 5; pass some of them, "
                                           "e.g. --cores 0,1,2."),
    (["--benchmark", "5", "--cores", "0,0"], "--cores 0,0 names a core twice; list each core once"),
    (["--benchmark", "5", "--cores", "all"], "--cores all is not a comma-separated list of NPU core numbers"),
    (["--cores", "0,1"], "--cores 0,1 runs the benchmark once per core; add the number of timed runs, e.g. --benchmark 200"),
    (["--benchmark", "5", "--cores", "0,1", "--core-mask", "0_1"], "so --core-mask 0_1 does not apply; drop one of the two."),
])
def test_bad_benchmark_input_is_one_sentence_before_any_inference(bundle_dir, tiny_onnx, tmp_path, argv, message):
    res = run_on_stand_in(bundle_dir, tiny_onnx, tmp_path, "images", *argv)
    assert res.returncode == 2 and res.stdout == ""
    assert message in one_line(res.stderr)
    assert not (tmp_path / "calls.jsonl").exists()  # refused before the NPU was touched


def test_core_checks_follow_the_chip():
    assert throughput.npu_cores("rk3588") == [0, 1, 2] and throughput.npu_cores("rk3576") == [0, 1]
    assert throughput.npu_cores("rk3566") == [0]
    assert throughput.parse_cores("2,0", "rk3588") == [2, 0]
    with pytest.raises(RunnerError, match=r"--cores 2: rk3576 has NPU cores 0, 1 only, not 2; .* --cores 0,1\.$"):
        throughput.parse_cores("2", "rk3576")
    with pytest.raises(RunnerError, match=r"--cores 0,1: rk3566 has a single NPU core.*drop --cores"):
        throughput.parse_cores("0,1", "rk3566")


def test_a_core_the_runtime_refuses_exits_1_naming_it(bundle_tarball, tiny_onnx, tmp_path):
    """The stand-in reads its chip from model.json: told rk3576 (two cores), it refuses NPU_CORE_2 as that chip's runtime
    would, while the runner (which reads the chip from the .rknn, rk3588) let core 2 through."""
    board = extracted(bundle_tarball, tmp_path / "board")
    cfg = json.loads((board / "model.json").read_text())
    (board / "model.json").write_text(json.dumps({**cfg, "target_platform": "rk3576"}))
    res = run_on_stand_in(board, tiny_onnx, tmp_path, "images", "--benchmark", "3", "--cores", "0,2")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "RKNNLite could not load" in one_line(res.stderr) and "on NPU core 2 (core_mask=NPU_CORE_2)" in res.stderr


def test_percentiles_of_known_latencies():
    stats = throughput.latency_stats([k / 1000 for k in range(1, 101)])  # 1 .. 100 ms
    assert stats["runs"] == 100 and stats["mean_ms"] == pytest.approx(50.5)
    assert (stats["p50_ms"], stats["p90_ms"], stats["p99_ms"]) == pytest.approx((50.5, 90.1, 99.01))
    assert stats["fps"] == pytest.approx(1000 / 50.5)  # frames per second = runs / their summed time
    assert throughput.latency_stats([0.004])["p99_ms"] == pytest.approx(4.0)


def test_the_kit_is_shipped_standalone(bundle_tarball, tiny_onnx, tmp_path):
    """throughput.py ships beside the runner byte for byte, imports the standard library and chips.py only, and a
    bundle without it says so in one line."""
    board = extracted(bundle_tarball, tmp_path / "board")
    assert (board / "throughput.py").read_bytes() == bundle.THROUGHPUT.read_bytes()
    tree = ast.parse(bundle.THROUGHPUT.read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= set(sys.stdlib_module_names)  # chips is imported by name at run time
    (board / "throughput.py").unlink()
    res = run_on_stand_in(board, tiny_onnx, tmp_path, "images")
    assert res.returncode == 2 and f"throughput.py is missing from {board.resolve()}" in one_line(res.stderr)


def test_readme_says_how_to_benchmark_and_pin_the_clocks_and_prints_no_figure(bundle_dir, tmp_path):
    text = (bundle_dir / "README.md").read_text()
    assert "--benchmark 200 --cores 0,1,2" in text and "throughput.py" in text
    assert "/sys/class/devfreq/" in text and "echo performance > governor" in text and "scaling_governor" in text
    assert "**Inference only**" in text and "maximum frequency" in text and "rknn_model_zoo" in text
    assert not re.search(r"\d\s*FPS", text)  # no figure nobody measured
    assert "$" not in text  # every template field filled (the shell lines need no variables)
    one_core = dict(json.loads((bundle_dir / "model.json").read_text()), target_platform="rk3566")
    single = readme.render_readme(one_core, ["model.rknn"], [], None)
    assert "rk3566 has one NPU core, so `--cores` does not apply" in single and "--cores 0" not in single


def test_help_lists_the_kit_without_numpy(bundle_tarball, tiny_onnx, tmp_path):
    board = extracted(bundle_tarball, tmp_path / "board")
    (tmp_path / "site" / "numpy").mkdir(parents=True)
    (tmp_path / "site" / "numpy" / "__init__.py").write_text("raise ModuleNotFoundError('test: no numpy', name='numpy')\n")
    res = run_on_stand_in(board, tiny_onnx, tmp_path, "--help")
    assert res.returncode == 0 and "--benchmark N" in res.stdout and "--cores LIST" in res.stdout
    shutil.rmtree(tmp_path / "site" / "numpy")


def test_the_npu_clock_is_read_where_the_kernel_exposes_it(tmp_path):
    assert "no *npu* node" in throughput.npu_clock(str(tmp_path))
    node = tmp_path / "fdab0000.npu"  # a devfreq entry laid out as the kernel lays it out
    node.mkdir()
    for name, value in {"governor": "performance", "cur_freq": "1000000000", "max_freq": "1000000000"}.items():
        (node / name).write_text(value + "\n")
    assert throughput.npu_clock(str(tmp_path)).startswith(
        "NPU clock fdab0000.npu: governor performance, 1000000000 Hz (max 1000000000 Hz); pin it to the maximum")
