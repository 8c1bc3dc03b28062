"""Simulator throughput, conversion time and load-path agreement on the sample model, measured in one run.

    .venv/bin/python benchmarks/bench_simulator.py [--run-dir outputs/bench] [--batch 32] [--repeats 3]

1. the sample model (trained once and cached in the run folder) is exported to TorchScript and ONNX;
2. conversion: `convert()` through load_onnx and through load_pytorch, each timed (toolkit build + export);
3. simulator speed over the whole val split, image reading included in both:
   - one at a time: the tutorial's loop, per image read -> `rk.inference(inputs=[img])` on a batch-1 build;
   - batched: `metric.evaluate()` with a simulator runner built with rknn_batch_size=--batch;
   - for reference, the same simulator runner/metric.evaluate() code built with batch 1;
   each after one untimed warm-up call, timed --repeats times, best time kept; the ratio is printed;
4. accuracy on the val split: FP32 (ONNX Runtime) vs INT8 (simulator) top-1, and the top-1 agreement
   between the RKNN models built from the ONNX and from the TorchScript.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from helpers.core.paths import Run  # noqa: E402
from helpers.steps import convert, evaluate  # noqa: E402
from helpers.steps.export import exporter  # noqa: E402
from helpers.tasks.classify import metric  # noqa: E402
from helpers.tasks.data import load_split, resolve_data_dir, write_calibration_list  # noqa: E402
from helpers.tasks.feeds import fp32_runner  # noqa: E402
from helpers.tasks.preprocess import read_rgb  # noqa: E402
from helpers.toolkit.options import ConvertConfig  # noqa: E402
from helpers.toolkit.record import ConvertRecord  # noqa: E402
from helpers.toolkit.session import RKNN  # noqa: E402

MEAN, STD = [0.0, 0.0, 0.0], [255.0, 255.0, 255.0]


def one_at_a_time(record: ConvertRecord, paths: list[Path], size: int, log: Path) -> float:
    """The tutorial's loop: build for batch 1, then read and infer image by image. Returns seconds."""
    with RKNN(log) as rk:
        convert.rebuild(rk, record)
        rk.init_runtime(target=None)
        rk.inference(inputs=[read_rgb(paths[0], size)], data_format="nhwc")  # warm-up call, not timed
        start = time.perf_counter()
        for p in paths:
            rk.inference(inputs=[read_rgb(p, size)], data_format="nhwc")
        return time.perf_counter() - start


def batched(record: ConvertRecord, images, size: int, batch: int, log: Path) -> tuple[float, metric.EvalResult]:
    """Read and score the whole set through a simulator runner built with rknn_batch_size=batch."""
    with evaluate.simulator_from_record(record, log, batch=batch) as sim:
        sim.outputs(np.stack([read_rgb(images.paths[0], size)]))  # warm-up call, not timed
        start = time.perf_counter()
        res = metric.evaluate(sim, images, size, batch=batch, progress=False)
        return time.perf_counter() - start, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="outputs/bench")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--calib-images", type=int, default=50)
    args = ap.parse_args()

    run = Run.at(args.run_dir)
    size = 32
    data_dir = resolve_data_dir("")
    model, about = exporter.prepare_model(run, "", data_dir, size)
    print(f"model: {about}")
    exp = exporter.export_model(model, run.model, size, log_path=run.logs / "export.log")
    calib = write_calibration_list(load_split(data_dir, "train").subset(args.calib_images), run.rknn / "calibration.txt")
    val = load_split(data_dir, "val")
    cfg = ConvertConfig(MEAN, STD)

    records: dict[str, ConvertRecord] = {}
    seconds: dict[str, float] = {}
    for path, source in (("onnx", exp.onnx), ("pytorch", exp.torchscript)):
        res = convert.convert(source, cfg, calib, run.rknn / f"model_{path}.rknn", run.logs / f"build_{path}.log", size, path)
        seconds[path] = res.seconds
        records[path] = ConvertRecord(source, path, size, calib, cfg, res.rknn_path, res.seconds, res.source_bytes,
                                              res.rknn_bytes, res.dtype_notes, "")

    single_s = min(one_at_a_time(records["onnx"], val.paths, size, run.logs / "bench_single.log") for _ in range(args.repeats))
    runs = [batched(records["onnx"], val, size, args.batch, run.logs / "bench_batched.log") for _ in range(args.repeats)]
    batched_s, int8 = min(runs, key=lambda r: r[0])
    backend1_s = min(batched(records["onnx"], val, size, 1, run.logs / "bench_b1.log")[0] for _ in range(args.repeats))
    _, int8_ts = batched(records["pytorch"], val, size, args.batch, run.logs / "bench_ts.log")
    fp32 = metric.evaluate(fp32_runner(exp.onnx, MEAN, STD), val, size, progress=False)
    cmp = metric.compare(fp32, int8)
    paths_agree = float((int8.predictions == int8_ts.predictions).mean())

    n = len(val)
    print(f"\nval split: {n} images, {size}x{size}, rk3588 w8a8 normal/channel, {args.calib_images} calibration images")
    print(f"{'measure':<46} value")
    print(f"{'-' * 46} {'-' * 24}")
    print(f"{'conversion, load_onnx (build + export)':<46} {seconds['onnx']:.1f} s")
    print(f"{'conversion, load_pytorch (build + export)':<46} {seconds['pytorch']:.1f} s")
    print(f"{'simulator, one image at a time':<46} {single_s:.2f} s ({n / single_s:.0f} img/s)")
    print(f"{f'simulator, batched (rknn_batch_size={args.batch})':<46} {batched_s:.2f} s ({n / batched_s:.0f} img/s)")
    print(f"{'simulator, same backend code with batch 1':<46} {backend1_s:.2f} s ({n / backend1_s:.0f} img/s)")
    print(f"{'batched / one-at-a-time speed ratio':<46} {single_s / batched_s:.2f}x")
    print(f"{'batched / backend-with-batch-1 speed ratio':<46} {backend1_s / batched_s:.2f}x")
    print(f"{'FP32 top-1 (ONNX Runtime)':<46} {100 * fp32.top1:.2f}%")
    print(f"{'INT8 top-1 (simulator, ONNX path)':<46} {100 * int8.top1:.2f}%  ({cmp.top1_delta_pt:+.2f} pt)")
    print(f"{'INT8 top-1 (simulator, TorchScript path)':<46} {100 * int8_ts.top1:.2f}%")
    print(f"{'FP32 vs INT8 top-1 agreement / mean cosine':<46} {100 * cmp.top1_agreement:.2f}% / {cmp.mean_cosine:.5f}")
    print(f"{'ONNX-path vs TorchScript-path RKNN agreement':<46} {100 * paths_agree:.2f}%")


if __name__ == "__main__":
    main()
