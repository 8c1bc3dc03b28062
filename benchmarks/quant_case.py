"""A real quantization loss on the sample classifier and what the workbook's tools recover: per-tensor 4-bit weights
(rk3576 w4a16, quantized_method='layer') against per-channel, INT8 and a hybrid with float16 on the analysis' worst layers.

    PYTHONPATH=. .venv/bin/python benchmarks/quant_case.py --onnx outputs/sample/model/model.onnx [--float16 3,10]

Every row is scored on all val images against the ONNX model's own predictions on the same images (paired):
b = FP32 right and quantized wrong, c = the reverse; loss = (b - c) / n with a 95 % paired (Wald) interval and the
exact McNemar p-value. Calibration: `--calib` train images, stratified across classes; analysis: one val image per class.

Measured on the sample YOLO11n-cls (FP32 98.6 %, 2 shared cores, about 2 min for the whole table): INT8 loses nothing
(channel or layer); w4a16 per-channel -1.4 pt; w4a16 per-tensor -11.9 pt [8.5, 15.4] (b 44, c 1) because the stem
conv's 16 filters share one 4-bit scale (step 0.71, smallest filter max 0.79: one level); float16 on that one layer,
the lowest single cosine (0.913), gives -1.4 pt. The workbook runs the same case with params/sample.yaml's 20_convert
set to target_platform rk3576, quantized_dtype w4a16, quantized_method layer, and demo_calib_images 0, 60's proposal false.
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.steps.analysis.parse import combine, parse_error_analysis
from helpers.steps.analysis.rank import rank_layers
from helpers.steps.hybrid.cfg import find_step1, read_cfg, write_cfg

ROOT = Path(__file__).resolve().parents[1]
# (label, target_platform, quantized_dtype, quantized_method, quantized_algorithm): the studied case is CASE
PLAIN = [
    ("INT8 per-channel (default)", "rk3588", "w8a8", "channel", "normal"),
    ("INT8 per-tensor", "rk3588", "w8a8", "layer", "normal"),
    ("w4a16 per-channel", "rk3576", "w4a16", "channel", "normal"),
    ("w4a16 per-tensor", "rk3576", "w4a16", "layer", "normal"),
    ("w4a16 per-tensor, mmse", "rk3576", "w4a16", "layer", "mmse"),
]
CASE = PLAIN[3]


def labelled(folder: Path) -> list[tuple[Path, int]]:
    """(image, class) for every PNG under folder/<class index>/."""
    return [(p, int(p.parent.name)) for p in sorted(folder.glob("*/*.png"))]


def stratified(items: list[tuple[Path, int]], n: int, seed: int = 0) -> list[Path]:
    """n images drawn round-robin over the classes (seeded), so every class is calibrated."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[Path]] = {}
    for p, y in items:
        by_class.setdefault(y, []).append(p)
    pools = {y: list(rng.permutation(ps)) for y, ps in sorted(by_class.items())}
    out: list[Path] = []
    while len(out) < n and any(pools.values()):
        for ps in pools.values():
            if ps and len(out) < n:
                out.append(Path(ps.pop()))
    return out


def paired(ref: np.ndarray, new: np.ndarray) -> dict:
    """Loss in points of new vs ref (both per-image correctness), 95 % paired interval, McNemar exact p."""
    n = len(ref)
    b, c = int((ref & ~new).sum()), int((~ref & new).sum())
    d = (b - c) / n
    se = math.sqrt(max((b + c) / n - d * d, 0.0) / n)
    k = min(b, c)
    p = min(1.0, 2 * sum(math.comb(b + c, i) for i in range(k + 1)) / 2 ** (b + c)) if b + c else 1.0
    return {"top1": new.mean(), "loss": 100 * d, "lo": 100 * (d - 1.96 * se), "hi": 100 * (d + 1.96 * se), "b": b, "c": c, "p": p}


class Case:
    """The ONNX model, the val images with their FP32 correctness, and the calibration list."""

    def __init__(self, onnx: Path, data: Path, calib: int, work: Path):
        import onnxruntime as ort  # optional and slow: only when the benchmark runs

        self.onnx, self.work = onnx, work
        val = labelled(data / "val")
        self.x = [np.asarray(Image.open(p).convert("RGB")) for p, _ in val]
        self.y = np.array([y for _, y in val])
        self.analysis = [next(p for p, y in val if y == k) for k in sorted(set(self.y))]
        sess = ort.InferenceSession(str(onnx))
        name, size = sess.get_inputs()[0].name, sess.get_inputs()[0].shape[2]
        self.x = [np.asarray(Image.fromarray(x).resize((size, size))) for x in self.x]
        feed = [(x.transpose(2, 0, 1)[None] / 255.0).astype(np.float32) for x in self.x]
        self.fp32 = np.array([np.argmax(sess.run(None, {name: f})[0]) for f in feed]) == self.y
        self.dataset = work / "calib.txt"
        self.dataset.write_text("".join(f"{p.resolve()}\n" for p in stratified(labelled(data / "train"), calib)))

    def toolkit(self, chip: str, dtype: str, method: str, algo: str, load: bool = True):
        from rknn.api import RKNN  # optional and slow: only when the benchmark runs

        rk = RKNN(verbose=False)
        rk.config(mean_values=[[0, 0, 0]], std_values=[[255, 255, 255]], target_platform=chip,
                  quantized_dtype=dtype, quantized_method=method, quantized_algorithm=algo)
        if load and rk.load_onnx(str(self.onnx)) != 0:
            raise SystemExit(f"load_onnx failed for {self.onnx}")
        return rk

    def score(self, rk) -> dict:
        if rk.init_runtime() != 0:
            raise SystemExit("init_runtime (simulator) failed")
        pred = [np.argmax(rk.inference(inputs=[x[None]], data_format="nhwc")[0]) for x in self.x]
        return paired(self.fp32, np.array(pred) == self.y)


def show(label: str, row: dict, seconds: float) -> None:
    print(f"{label:<48} {100 * row['top1']:6.1f} {row['loss']:+6.1f} [{row['lo']:+5.1f}, {row['hi']:+5.1f}] "
          f"{row['b']:4d} {row['c']:4d} {row['p']:8.1e} {seconds:6.0f}", flush=True)


def hybrid_rows(case: Case, counts: list[int]) -> None:
    """The CASE conversion with float16 on the N layers of lowest single cosine (accuracy_analysis, one image per class)."""
    _, chip, dtype, method, algo = CASE
    t0 = time.time()
    rk = case.toolkit(chip, dtype, method, algo)
    rk.build(do_quantization=True, dataset=str(case.dataset))
    tables = []
    for k, img in enumerate(case.analysis):
        out = case.work / "analysis" / f"{k:02d}"
        rk.accuracy_analysis(inputs=[str(img)], output_dir=str(out), target=None)
        tables.append(parse_error_analysis(out))
    rk.release()
    ranked = rank_layers(combine(tables))
    step1_dir = case.work / "step1"
    step1_dir.mkdir()
    cwd = os.getcwd()
    os.chdir(step1_dir)  # hybrid_quantization_step1 writes its three files into the current directory
    try:
        rk = case.toolkit(chip, dtype, method, algo)
        rk.hybrid_quantization_step1(dataset=str(case.dataset), proposal=False)
        rk.release()
    finally:
        os.chdir(cwd)
    files = find_step1(step1_dir)
    tensors = set(read_cfg(files.cfg).tensors)
    names = [n for n in ranked["name"] if n in tensors]
    print(f"# analysis + step 1: {time.time() - t0:.0f} s; lowest single cosine: "
          + ", ".join(f"{r.name} ({r.single_cos:.3f})" for r in ranked.head(3).itertuples()), flush=True)
    for n in counts:
        t1 = time.time()
        cfg = write_cfg(files, names[:n], out=files.variant_cfg(f"float16_{n}"))
        rk = case.toolkit(chip, dtype, method, algo, load=False)
        rk.hybrid_quantization_step2(model_input=str(files.model), data_input=str(files.data), model_quantization_cfg=str(cfg))
        show(f"{CASE[0]} + float16 on {n} of {len(ranked)} layers", case.score(rk), time.time() - t1)
        rk.release()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", type=Path, default=ROOT / "outputs" / "sample" / "model" / "model.onnx",
                    help="the sample classifier's ONNX (notebook 10 writes it to <run>/model/model.onnx)")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "digits")
    ap.add_argument("--calib", type=int, default=50, help="calibration images, stratified across classes")
    ap.add_argument("--float16", default="1,3,10", help="hybrid rows: how many lowest-single-cosine layers go to float16")
    args = ap.parse_args()
    if not args.onnx.is_file():
        raise SystemExit(f"{args.onnx} does not exist; run notebook 10 on the sample (helpers run --only 10) or pass --onnx.")
    with tempfile.TemporaryDirectory(prefix="quant_case_") as tmp:
        case = Case(args.onnx, args.data, args.calib, Path(tmp))
        print(f"# {args.onnx}: {len(case.y)} val images, FP32 top-1 {100 * case.fp32.mean():.1f} %")
        print(f"{'conversion':<48} {'top-1':>6} {'loss':>6} {'95% interval':>16} {'b':>4} {'c':>4} {'McNemar':>8} {'s':>6}")
        for label, chip, dtype, method, algo in PLAIN:
            t0 = time.time()
            rk = case.toolkit(chip, dtype, method, algo)
            if rk.build(do_quantization=True, dataset=str(case.dataset)) != 0:
                raise SystemExit(f"build failed: {label}")
            show(f"{label} ({chip})", case.score(rk), time.time() - t0)
            rk.release()
        hybrid_rows(case, [int(n) for n in args.float16.split(",") if n.strip()])


if __name__ == "__main__":
    main()
