"""The bundle's throughput kit, used by run_rknn.py on the board: --benchmark N (warm-up, then N timed inferences:
mean, p50/p90/p99 latency and frames per second) and --cores 0,1,2 (one RKNNLite context per NPU core, driven by a
thread pool: FPS per core and in all). Shipped beside run_rknn.py (standard library only, so --help works without numpy).

Only RKNNLite.inference is timed (the runtime's own input conversion included): reading, preprocessing and
post-processing are not, which is how rknn_model_zoo's published FPS are measured too (rknn_run only).
"""
from __future__ import annotations

import argparse
import glob
import importlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Sequence

# chips.py beside this file: in the bundle a plain module, in the repository helpers.deploy.chips
chips = importlib.import_module(f"{__package__}.chips" if __package__ else "chips")
CORE_MASKS, CORE_MASKS_BY_CHIP, RunnerError = chips.CORE_MASKS, chips.CORE_MASKS_BY_CHIP, chips.RunnerError

WHAT_IS_TIMED = ("inference only: RKNNLite.inference calls on one preprocessed uint8 input (the runtime's input "
                 "conversion included); image reading, preprocessing and post-processing are not timed")
DEVFREQ = "/sys/class/devfreq"
DEFAULT_WARMUP = 5


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--benchmark N, --warmup W and --cores LIST on run_rknn.py's command line."""
    p.add_argument("--benchmark", type=int, default=None, metavar="N",
                   help="after the images, time N inferences on the first one: mean, p50/p90/p99 ms and FPS")
    p.add_argument("--loops", type=int, dest="benchmark", help=argparse.SUPPRESS)  # the older name of --benchmark
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, metavar="W",
                   help=f"untimed runs before the timed ones (default {DEFAULT_WARMUP})")
    p.add_argument("--cores", default=None, metavar="LIST",
                   help="with --benchmark: one context per NPU core, e.g. 0,1,2 (rk3588) or 0,1 (rk3576); FPS per core and "
                        "in all")


def check_args(args: argparse.Namespace, platform: str) -> None:
    """The benchmark options against each other and the model's chip (args.cores becomes a list of core numbers);
    a wrong one is one sentence naming it and the fix."""
    if args.benchmark is not None and args.benchmark < 1:
        raise RunnerError(f"--benchmark {args.benchmark}: the number of timed inferences must be at least 1; "
                          "pass e.g. --benchmark 200.")
    if args.warmup < 0:
        raise RunnerError(f"--warmup {args.warmup}: the number of untimed runs must be 0 or more; pass e.g. --warmup 5.")
    if args.cores is None:
        return
    if args.benchmark is None:
        raise RunnerError(f"--cores {args.cores} runs the benchmark once per core; add the number of timed runs, "
                          f"e.g. --benchmark 200 --cores {args.cores}.")
    if args.core_mask != "auto":
        raise RunnerError(f"--cores {args.cores} pins each context to one core, so --core-mask {args.core_mask} does not "
                          "apply; drop one of the two.")
    args.cores = parse_cores(args.cores, platform)


def npu_cores(platform: str) -> List[int]:
    """The NPU cores a chip has, by number (rk3588: [0, 1, 2]; rk3576: [0, 1]; single-core chips: [0])."""
    singles = sorted(int(m) for m in CORE_MASKS_BY_CHIP.get(platform, set()) if m.isdigit())
    return singles or [0]


def parse_cores(text: str, platform: str) -> List[int]:
    """--cores '0,1,2' as core numbers, checked against the chip's cores; one sentence naming the input and the fix."""
    have = npu_cores(platform)
    listed = ", ".join(map(str, have))
    example = ",".join(map(str, have))
    if len(have) < 2:
        raise RunnerError(f"--cores {text}: {platform} has a single NPU core, so there is nothing to spread over; "
                          "drop --cores and run --benchmark N alone.")
    parts = [p.strip() for p in str(text).split(",")]
    if not all(p.isdigit() for p in parts):
        raise RunnerError(f"--cores {text} is not a comma-separated list of NPU core numbers; pass e.g. --cores {example}.")
    cores = [int(p) for p in parts]
    wrong = [c for c in cores if c not in have]
    if wrong:
        raise RunnerError(f"--cores {text}: {platform} has NPU cores {listed} only, not {', '.join(map(str, wrong))}; "
                          f"pass some of them, e.g. --cores {example}.")
    if len(set(cores)) != len(cores):
        raise RunnerError(f"--cores {text} names a core twice; list each core once, e.g. --cores {example}.")
    return cores


def core_mask_of(cls: Any, core: int) -> int:
    """The RKNNLite mask constant that pins a context to one core (NPU_CORE_0/1/2)."""
    return int(getattr(cls, CORE_MASKS[str(core)]))


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile of sorted values, interpolated linearly between neighbours (numpy's default method)."""
    at = (len(ordered) - 1) * q / 100
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def latency_stats(seconds: Sequence[float]) -> Dict[str, float]:
    """Mean, p50, p90, p99, min and max in ms of the timed runs, and frames per second (runs / their summed time)."""
    ms = sorted(1000 * float(t) for t in seconds)
    return {"runs": len(ms), "mean_ms": sum(ms) / len(ms), "p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90),
            "p99_ms": percentile(ms, 99), "min_ms": ms[0], "max_ms": ms[-1], "fps": 1000 * len(ms) / sum(ms)}


def timed_runs(lite: Any, x: Any, runs: int, warmup: int, start: Optional[threading.Barrier] = None) -> List[float]:
    """`warmup` untimed inferences, then `runs` timed ones (seconds each); a failed inference is a RunnerError.
    With a barrier, the timed part starts when every context has warmed up (a failure breaks it for all)."""
    def once() -> None:
        if lite.inference(inputs=[x], data_format=["nhwc"]) is None:
            raise RunnerError("RKNNLite.inference returned nothing during the benchmark; see the RKNNLite messages above.")

    try:
        for _ in range(warmup):
            once()
        if start is not None:
            start.wait()
    except BaseException:
        if start is not None:
            start.abort()
        raise
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return times


def line(name: str, s: Dict[str, float]) -> str:
    """One report line: latency percentiles and FPS."""
    return (f"  {name}: mean {s['mean_ms']:.2f} ms, p50 {s['p50_ms']:.2f}, p90 {s['p90_ms']:.2f}, p99 {s['p99_ms']:.2f} ms "
            f"(min {s['min_ms']:.2f}, max {s['max_ms']:.2f}) -> {s['fps']:.1f} FPS")


def benchmark(lite: Any, x: Any, runs: int, warmup: int, what: str) -> Dict[str, float]:
    """--benchmark on one initialised context: prints the report and returns its figures."""
    stats = latency_stats(timed_runs(lite, x, runs, warmup))
    print(f"benchmark ({what}): {warmup} warm-up run(s), then {runs} timed run(s)")
    print(line("latency", stats))
    notes(runs)
    return stats


def per_core(open_context: Callable[[int], Any], cores: Sequence[int], x: Any, runs: int, warmup: int) -> Dict[str, Any]:
    """--cores: one context per core (open_context(core) returns an initialised RKNNLite pinned to it), each run by
    its own thread of a pool, the timed parts started together; prints FPS per core and in all, returns the figures."""
    contexts: List[Any] = []
    start = threading.Barrier(len(cores) + 1)
    try:
        for c in cores:
            contexts.append(open_context(c))
        with ThreadPoolExecutor(max_workers=len(cores)) as pool:
            jobs = [pool.submit(timed_runs, lite, x, runs, warmup, start) for lite in contexts]
            try:
                start.wait()
            except threading.BrokenBarrierError:
                pass  # a context failed in its warm-up: its own error is raised below
            t0 = time.perf_counter()
            errors = [job.exception() for job in jobs]
            wall = time.perf_counter() - t0
        failed = [e for e in errors if e is not None]
        if failed:  # the cause first, not the broken barrier it left the other threads with
            raise next((e for e in failed if not isinstance(e, threading.BrokenBarrierError)), failed[0])
        times = [job.result() for job in jobs]
    finally:
        for lite in contexts:
            lite.release()
    stats = {c: latency_stats(t) for c, t in zip(cores, times)}
    total = len(cores) * runs / wall
    print(f"benchmark: one RKNNLite context per NPU core ({', '.join(map(str, cores))}), each on its own thread; "
          f"{warmup} warm-up run(s), then {runs} timed run(s) per core, all cores at once")
    for c in cores:
        print(line(f"core {c}", stats[c]))
    print(f"  all {len(cores)} cores: {total:.1f} FPS ({len(cores) * runs} inferences in {wall:.3f} s wall time)")
    notes(runs)
    return {"per_core": stats, "total_fps": total, "wall_s": wall}


def run(cls: Any, lite: Any, model: Any, x: Any, args: argparse.Namespace, what: str) -> Dict[str, Any]:
    """The benchmark run_rknn.py asked for: on its own context `lite`, or with --cores one new context per core."""
    if not args.cores:
        return benchmark(lite, x, args.benchmark, args.warmup, what)

    def open_context(core: int) -> Any:
        ctx = cls(verbose=False)
        if ctx.load_rknn(str(model)) != 0 or ctx.init_runtime(core_mask=core_mask_of(cls, core)) != 0:
            ctx.release()
            raise RunnerError(f"RKNNLite could not load {model} on NPU core {core} (core_mask={CORE_MASKS[str(core)]}); "
                              "see the RKNNLite messages above, and check the core is not disabled on this board.")
        return ctx

    return per_core(open_context, args.cores, x, args.benchmark, args.warmup)


def notes(runs: int) -> None:
    """The lines under every benchmark report: what was timed, how many runs a p99 needs, the NPU clock."""
    print(f"  {WHAT_IS_TIMED}")
    if runs < 100:
        print(f"  with {runs} timed runs p99 is close to the slowest run; use --benchmark 200 or more for a stable tail")
    print(f"  {npu_clock()}")


def npu_clock(root: str = DEVFREQ) -> str:
    """The NPU's devfreq governor and current/maximum frequency as the kernel reports them (nodes named *npu*), or
    where to look when there is none: the figures above hold for that clock only."""
    nodes = sorted(glob.glob(os.path.join(root, "*npu*")))
    if not nodes:
        return (f"NPU clock: no *npu* node under {root} (not a Rockchip board, or another kernel naming); "
                "see README.md, section 5 (Benchmark), for pinning the frequency.")

    def read(node: str, name: str) -> str:
        try:
            with open(os.path.join(node, name)) as fh:
                return fh.read().strip()
        except OSError:
            return "?"

    return "; ".join(f"NPU clock {os.path.basename(n)}: governor {read(n, 'governor')}, {read(n, 'cur_freq')} Hz "
                     f"(max {read(n, 'max_freq')} Hz)" for n in nodes) + (
        "; pin it to the maximum for figures comparable with rknn_model_zoo's (README.md, section 5)")
