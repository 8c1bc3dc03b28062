"""Raw outputs in the split segmentation and pose layouts for tests/test_deploy_segment_pose.py: synthetic (random, with a
few confident anchors whose boxes overlap so NMS has work), or computed by a tiny torch model exported to ONNX that
produces them (the stand-in runtime runs it), plus the dump format tests/cpp/instance_harness.cc reads."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
from raw_outputs import write_raw_outputs

STRIDES = (8, 16, 32)
REG_MAX = 16


def _smooth(rng: np.random.Generator, channels: int, side: int) -> np.ndarray:
    """channels smooth random planes (a few low-frequency cosines each): prototypes that make blob-like masks."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    out = np.zeros((channels, side, side), np.float32)
    for c in range(channels):
        for _ in range(3):
            fx, fy, px, py = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 6.3), rng.uniform(0, 6.3)
            out[c] += rng.normal(0, 1.0) * np.cos(2 * np.pi * fx * xx + px) * np.cos(2 * np.pi * fy * yy + py)
    return out


def split_outputs(task: str, size: int, classes: int = 3, nm: int = 8, kpt_shape: tuple[int, int] = (5, 3),
                  confident: int = 6, seed: int = 0) -> list[np.ndarray]:
    """One image's raw outputs [1, C, h, w] in the split layout of `task` ('segment': box, cls, sum, coef per stride,
    then prototypes [1, nm, size/4, size/4]; 'pose': box, cls, sum, kpt per stride): low class scores everywhere
    (their sum under 0.25) but at `confident` anchors, each with one class above 0.5 and a peaked box distribution;
    pairs of neighbouring confident anchors share a class, so their boxes overlap and NMS must choose."""
    rng = np.random.default_rng(seed)
    grids = [size // s for s in STRIDES]
    outs: list[np.ndarray] = []
    cells = [(g, int(rng.integers(0, grids[g] ** 2))) for g in rng.integers(0, len(grids), confident)]
    for i, h in enumerate(grids):
        box = rng.normal(0, 1.0, (4, REG_MAX, h, h)).astype(np.float32)
        cls = rng.uniform(0, 0.05, (classes, h, h)).astype(np.float32)
        for j, (g, cell) in enumerate(cells):
            if g != i:
                continue
            sides = rng.integers(1, 4, 4)  # left, top, right, bottom in stride units (the DFL bin that peaks)
            for shift, c in enumerate((cell, min(cell + 1, h * h - 1))):  # the anchor and its right neighbour, whose
                r, col = divmod(c, h)  # box is nearly the same (left one bin longer, right one shorter): NMS keeps one
                cls[j % classes, r, col] = rng.uniform(0.5, 0.95)
                for side, peak in enumerate(sides + np.array([shift, 0, -shift, 0])):
                    box[side, peak, r, col] += 8.0
        total = np.clip(cls.sum(0, keepdims=True), 0, 1)
        extra = (rng.normal(0, 1.0, (nm, h, h)) if task == "segment"
                 else np.concatenate([np.stack([rng.uniform(-0.5, 1.5, (h, h)), rng.uniform(-0.5, 1.5, (h, h))]
                                               + ([rng.uniform(0, 1, (h, h))] if kpt_shape[1] == 3 else []))
                                      for _ in range(kpt_shape[0])]))
        outs += [box.reshape(4 * REG_MAX, h, h), cls, total, extra.astype(np.float32)]
    if task == "segment":
        outs.append(_smooth(rng, nm, size // 4))
    return [o[None].astype(np.float32) for o in outs]


def run_instance_harness(exe: Path, folder: Path, task: str, outputs: list[np.ndarray], hw: tuple[int, int], size: int,
                         conf: float = 0.25, iou: float = 0.7, end2end: bool = False, kpt_shape: tuple[int, int] = (0, 0),
                         int8: bool = True) -> tuple[str, list[np.ndarray], Path]:
    """Dump one image's raw outputs (int8 with zp/scale, or float32) for tests/cpp/instance_harness.cc; returns its stdout,
    the float outputs the C++ side decodes (dequantized when int8), for the Python decode, and its masks file."""
    header = f"{task} {hw[0]} {hw[1]} {size} {conf} {iou} {int(end2end)} {kpt_shape[0]} {kpt_shape[1]} {len(outputs)}"
    manifest, used = write_raw_outputs(folder, header, [np.asarray(o, np.float32)[0] for o in outputs], int8)
    masks = folder / "masks.bin"
    res = subprocess.run([str(exe), str(manifest), str(masks)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout, used, masks


def parse_instances(stdout: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[list[float]]]:
    """(classes, scores, boxes, mask areas, keypoint rows) from the harness's output."""
    rows = [ln.split()[1:] for ln in stdout.splitlines() if ln.startswith("det ")]
    kpts = [[float(v) for v in ln.split()[1:]] for ln in stdout.splitlines() if ln.startswith("kpt")]
    return (np.array([int(r[0]) for r in rows], np.int64), np.array([float(r[1]) for r in rows]),
            np.array([[float(v) for v in r[2:6]] for r in rows]).reshape(-1, 4), np.array([int(r[6]) for r in rows]), kpts)


def split_model_onnx(path: Path, task: str, size: int, classes: int = 3, nm: int = 8, kpt_shape: tuple[int, int] = (5, 3),
                     metadata: dict | None = None) -> Path:
    """A tiny torch model whose outputs are split_outputs(task, size) shifted by a small function of the image (so the
    letterboxed pixels matter), exported to ONNX with metadata (what the export writes: task, head, kpt_shape, ...)."""
    import onnx  # slow imports, only for the fixture that builds the model
    import torch

    base = split_outputs(task, size, classes, nm, kpt_shape)

    class Split(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for i, o in enumerate(base):
                self.register_buffer(f"b{i}", torch.from_numpy(o))

        def forward(self, x):
            shift = 0.02 * (x.mean() - 0.5)  # small: the confident anchors stay confident whatever the image
            outs = [getattr(self, f"b{i}") + shift for i in range(len(base))]
            for i in range(1, len(outs) - (task == "segment"), 4):  # cls in 0..1, sum = their clamped sum, as the head gives
                outs[i] = outs[i].clamp(0, 1)
                outs[i + 1] = outs[i].sum(1, keepdim=True).clamp(0, 1)
            return tuple(outs)

    names = [f"{k}{s}" for s in STRIDES for k in ("box", "cls", "sum", "coef" if task == "segment" else "kpt")]
    names += ["protos"] if task == "segment" else []
    torch.onnx.export(Split().eval(), torch.zeros(1, 3, size, size), str(path), opset_version=12, input_names=["images"],
                      output_names=names)
    model = onnx.load(str(path))
    meta = {"task": task, "head": "split", "imgsz": json.dumps([size, size]),
            "names": json.dumps([f"c{i}" for i in range(classes)]),
            "strides": json.dumps(list(STRIDES)), "reg_max": str(REG_MAX), "end2end": "false",
            **({"kpt_shape": json.dumps(list(kpt_shape))} if task == "pose" else {}), **(metadata or {})}
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=str(v))
    onnx.save(model, str(path))
    return path
