"""Compatibility matrix of real architectures x Rockchip chips x dtypes with the installed rknn-toolkit2.

    .venv/bin/python benchmarks/compat_matrix.py [--out outputs/matrix] [--models a,b] [--chips rk3588,rv1106]
                                                 [--dtypes some|all|none] [--jobs 2] [--executor auto|dask|threads]
                                                 [--scheduler ADDRESS]

Models are built from code with random weights (no downloads): YOLO11n-cls at 224 and 480, YOLO11n
detect at 640 (and the YOLOv5u / v8 / v10 / YOLO26 detectors), YOLO11n-seg and -pose at 640 (build and cosine only:
the workbook does not support their tasks yet, and their rows say so), torchvision ResNet18 and MobileNetV3-small at
224, a small grayscale CNN, and ResNet18 exported the way older exporters do (opset 11, initializers among the graph
inputs, dynamic batch). Every built cell also reports, from its verbose build log, the ops the toolkit put on the CPU,
the weight + internal memory, and why no NPU time is shown for its chip (benchmarks/preflight_vs_zoo.py).
Each cell (model, chip, dtype) builds in a child process: a build that aborts the toolkit's process
becomes a row with its reason. When a build fails and the toolkit's log names rules to disable, the
cell retries with them (as long as the log names new ones) and the row says which. Writes <out>/matrix.csv, matrix.md,
matrix.html;
prints the wall time (not a pass/fail criterion). Cells run on the variants' executor
(helpers.core.cluster.executor: a local dask cluster, or the scheduler at --scheduler, whose workers must
see the same paths); `--executor threads` uses a local thread pool instead.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from helpers.steps import matrix  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "outputs" / "matrix"), help="output folder (default outputs/matrix)")
    p.add_argument("--models", default=",".join(matrix.MODELS), help=f"comma-separated, from {', '.join(matrix.MODELS)}")
    p.add_argument("--chips", default=",".join(matrix.CHIPS), help=f"comma-separated, from {', '.join(matrix.CHIPS)}")
    p.add_argument("--dtypes", choices=["some", "all", "none"], default="some",
                   help="w4a16 / w16a16i_dfp cells besides w8a8: for the two small models (some), every model (all), none")
    p.add_argument("--jobs", type=int, default=2, help="cells at once (each is its own child process; default 2)")
    p.add_argument("--images", type=int, default=4, help="images for calibration and the simulator-vs-ONNX cosine (default 4)")
    p.add_argument("--executor", choices=["auto", "dask", "threads"], default="auto",
                   help="dask: helpers.core.cluster.executor; threads: a local thread pool; auto: dask when "
                        "helpers.core.cluster exists")
    p.add_argument("--scheduler", default=None, help="dask scheduler address (default: a local cluster)")
    args = p.parse_args(argv)
    has_dask = importlib.util.find_spec("helpers.core.cluster") is not None
    use_dask = args.executor == "dask" or (args.executor == "auto" and has_dask)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if use_dask:
            from helpers.core import cluster

            pool = stack.enter_context(cluster.executor(args.scheduler, args.jobs))
        else:
            pool = stack.enter_context(ThreadPoolExecutor(max_workers=args.jobs, thread_name_prefix="matrix"))
        cells = matrix.run_matrix(args.out, args.models.split(","), args.chips.split(","), executor=pool,
                                  extra_dtypes=args.dtypes, images=args.images)
    minutes = (time.perf_counter() - started) / 60
    print(f"\n{sum(c.built for c in cells)}/{len(cells)} cells built; total wall time {minutes:.1f} min")
    print(Path(args.out, "matrix.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
