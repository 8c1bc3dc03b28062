"""The generated detection sample at full size: how long YOLO11n detect trains from its YAML on this
machine's CPU and what ultralytics' val() scores it (target: mAP50-95 >= 0.6 in <= 4 minutes on 2 cores).

    .venv/bin/python benchmarks/bench_detect_sample.py [--images 250] [--imgsz 160] [--epochs 12] [--run-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from helpers.core.paths import Run
from helpers.steps.export.detect_sample import train_detect_sample
from helpers.tasks.detect.sample import write_detect_sample


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=250)
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--run-dir", default="")
    args = ap.parse_args()
    root = Path(args.run_dir or tempfile.mkdtemp(prefix="bench_detect_"))
    t = time.perf_counter()
    data = write_detect_sample(root / "data", images=args.images, imgsz=args.imgsz)
    gen = time.perf_counter() - t
    cpu = time.process_time()
    res = train_detect_sample(Run.at(root / "run"), data, imgsz=args.imgsz, epochs=args.epochs, batch=args.batch)
    out = {"images": args.images, "imgsz": args.imgsz, "epochs": args.epochs, "batch": args.batch, "cpus": os.cpu_count(),
           "load_1min_at_end": os.getloadavg()[0], "generate_seconds": round(gen, 1), "train_seconds": round(res.seconds, 1),
           # CPU seconds of all threads: on an otherwise idle machine, wall time is about this / cores used
           "train_cpu_seconds": round(time.process_time() - cpu, 1), "torch_threads": torch_threads(),
           "map50_95": round(res.map50_95, 4), "map50": round(res.map50, 4), "network_attempts": res.network_attempts,
           "run_dir": str(root)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
