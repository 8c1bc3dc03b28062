"""The sentences notebook 40 prints, computed from its results: the board-vs-simulator verdict (detector and
classifier) and the skip line of each board-only cell when no board is connected (so the skip shows in reports)."""
from __future__ import annotations

from helpers.deploy import throughput
from helpers.steps.board import DetectOnBoard
from helpers.tasks.classify.metric import Comparison


def skipped(what: str) -> str:
    """The line a board-only cell prints when there is no board (so the skip is visible in reports)."""
    line = f"[skipped: no board] {what} needs a connected board; see the 'No board found' line above."
    print(line)
    return line


def skip_board_comparison(task: str, images: int = 0) -> str:
    """The skip line of notebook 40's board-vs-simulator section: what it would do for this task (a
    detector: mAP50-95 on the board vs the simulator), and where to read how to enable it."""
    if task != "detect":
        return skipped("Board inference and the board-vs-simulator comparison")
    n = f"the first {images} val images" if images else "every val image"
    return skipped(f"Running the detector on the board over {n} (letterboxed, as notebook 30 scored them) and "
                   "comparing its mAP50-95 and raw outputs with the simulator's")


def detect_comparison(det: DetectOnBoard) -> str:
    """What a detector's board-vs-simulator comparison says, with this run's numbers."""
    return (f"**Board vs simulator ({det.judge.images} images):** mAP50-95 {det.board.value:.3f} on the board vs "
            f"{det.simulator.value:.3f} in the simulator ({det.paired.text}; {det.paired.method}), mAP50 "
            f"{det.board.agreement:.3f} vs {det.simulator.agreement:.3f}; the board's raw outputs follow the "
            f"simulator's with mean cosine {det.cosines.mean():.5f} (min {det.cosines.min():.5f}). "
            f"Runtime: {det.sdk or 'not reported'}")


def classify_comparison(cmp: Comparison, sdk: str) -> str:
    """What a classifier's board-vs-simulator comparison (helpers.tasks.classify.metric.compare) says."""
    return (f"**Board vs simulator:** top-1 agreement {100 * cmp.top1_agreement:.1f}%, "
            f"mean output cosine {cmp.mean_cosine:.5f} (min {cmp.min_cosine:.5f}). Runtime: {sdk}")


def benchmark_note(config: dict, sample: str, board: bool) -> str:
    """Where notebook 40's reader measures frames per second on the board: the bundle's --benchmark / --cores commands
    with this bundle's values; no figure is printed unless a board measured it."""
    cores = throughput.npu_cores(config["target_platform"])
    per_core = f" --cores {','.join(map(str, cores))}" if len(cores) > 1 else ""
    where = ("eval_perf above measured this board from the PC" if board else
             "No board here, so no FPS is shown: the benchmark is for the board")
    return (f"{where}. On the board, inside the unpacked bundle: `python3 run_rknn.py {sample} --benchmark 200{per_core}` "
            f"(warm-up, then 200 timed runs: mean, p50/p90/p99 ms and FPS{', per core and in all' if per_core else ''}; "
            "inference only). Pin the NPU frequency first and read what rknn_model_zoo's FPS assume: README.md, section 5.")
