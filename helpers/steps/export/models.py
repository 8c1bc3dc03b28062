"""The model a run works on: the sample YOLO11n-cls trained on the digits, or the user's own file."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers.core.paths import Run, atomic_path, write_json_atomic
from helpers.core.step_cache import Step
from helpers.tasks.data import load_split


@dataclass
class TrainResult:
    """Where the sample model's weights are and how well they did on the val split."""

    weights: Path
    top1: float
    top5: float
    epochs: int
    seconds: float
    reused: bool


def train_sample_model(run: Run, data_dir: str | Path, imgsz: int = 32, epochs: int = 20, seed: int = 0,
                       arch: str = "yolo11n-cls.yaml", batch: int = 64, warmup_epochs: float | None = None) -> TrainResult:
    """Train YOLO11n-cls (or another ultralytics classify YAML, `arch`) from its architecture YAML on CPU (no
    download), cached in run/model/. warmup_epochs=0 skips ultralytics' warm-up (at least 100 steps), which would
    take all of a run of a few dozen steps."""
    data_dir = Path(data_dir).resolve()
    out = run.model / "model.pt"
    params = {"arch": arch, "imgsz": imgsz, "epochs": epochs, "seed": seed, "data": str(data_dir)}
    params |= {"batch": batch} if batch != 64 else {}
    extra = {} if warmup_epochs is None else {"warmup_epochs": warmup_epochs}
    params |= extra
    marker = data_dir / "sample.json"
    step = Step(run, "sample_model", params, inputs=[marker] if marker.exists() else [data_dir], outputs=[out])
    if step.check():
        rec = step.record
        return TrainResult(out, rec["top1"], rec["top5"], epochs, rec["seconds"], reused=True)

    from ultralytics import YOLO  # optional and slow (seconds): only when the sample model is trained
    from ultralytics.utils import SETTINGS

    SETTINGS.update({"sync": False})
    workdir = run.model / "train"
    shutil.rmtree(workdir, ignore_errors=True)
    model = YOLO(arch)
    # Digits must not be mirrored or colour-jittered: a flipped 2 is not a 2, and colour is the
    # channel-order signal notebook 30 relies on.
    metrics = model.train(
        data=str(data_dir), epochs=epochs, imgsz=imgsz, batch=batch, device="cpu", workers=0, seed=seed,
        deterministic=True, pretrained=False, amp=False, plots=False, verbose=False,
        fliplr=0.0, erasing=0.0, auto_augment=None, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0,
        project=str(workdir), name="run", exist_ok=True, **extra,
    )
    best = workdir / "run" / "weights" / "best.pt"
    with atomic_path(out) as tmp:
        shutil.copy2(best, tmp)
    top1, top5 = float(metrics.top1), float(metrics.top5)
    step.done(top1=top1, top5=top5, epochs=epochs)
    write_json_atomic(run.model / "train.json",
                      {"top1": top1, "top5": top5, "epochs": epochs, "imgsz": imgsz, "seconds": step.record["seconds"]})
    return TrainResult(out, top1, top5, epochs, step.record["seconds"], reused=False)


def gray_cnn(classes: int = 4, channels: int = 1, width: int = 16):
    """A small conv net for channels x H x W inputs (any H, W): three conv blocks, global pool, linear."""
    import torch.nn as nn  # optional and slow: only the grayscale test model needs torch

    def block(cin: int, cout: int) -> list:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(channels, width), *block(width, 2 * width), *block(2 * width, 4 * width),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, classes))


def train_gray_cnn(data_dir: str | Path, out_onnx: str | Path, size: int = 32, epochs: int = 8, opset: int = 12, seed: int = 0,
                   weights_as_inputs: bool = False) -> float:
    """Train gray_cnn on data_dir/train (grayscale, x / 255) on CPU and export it to ONNX (atomic; weights_as_inputs:
    listed among the graph inputs, as older exporters and model zoos do); returns its FP32 top-1 on data_dir/val."""
    import torch  # optional and slow: only the grayscale test model needs torch

    torch.manual_seed(seed)
    train, val = load_split(data_dir, "train"), load_split(data_dir, "val")

    def tensors(images):
        x = torch.from_numpy(images.load(size, channels=1)).permute(0, 3, 1, 2).float() / 255.0
        return x, torch.from_numpy(np.asarray(images.labels))

    (xt, yt), (xv, yv) = tensors(train), tensors(val)
    net = gray_cnn(len(train.classes))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(xt), generator=gen).split(32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        top1 = float((net(xv).argmax(1) == yv).float().mean())
    out_onnx = Path(out_onnx)
    out_onnx.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_onnx, ".partial.onnx") as tmp:
        torch.onnx.export(net, torch.zeros(1, 1, size, size), str(tmp), opset_version=opset, input_names=["images"],
                          output_names=["logits"], keep_initializers_as_inputs=weights_as_inputs)
    return top1
