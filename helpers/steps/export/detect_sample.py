"""The sample models of the detector family: YOLO11n (detect, -seg, -pose) trained on the generated shapes, masks or
figures (helpers.tasks.family) from their YAML on CPU with nothing downloaded (cached per run), ultralytics' own val(),
and the run's model (the user's, checked to be of the task, or that sample model)."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from helpers.core.errors import WorkbookError
from helpers.core.paths import Run, atomic_path, write_json_atomic
from helpers.core.step_cache import Step
from helpers.steps.export.exporter import quiet
from helpers.tasks.family import member
from helpers.tasks.identify import check_task
from helpers.tasks.model_file import check_model_path

LOOPBACK = ("localhost", "127.0.0.1", "::1")


@dataclass
class DetectTrainResult:
    """Where the sample detector's weights are and how ultralytics' val() scored them."""

    weights: Path
    map50_95: float
    map50: float
    epochs: int
    imgsz: int
    seconds: float
    reused: bool
    network_attempts: list[str] = field(default_factory=list)


@contextlib.contextmanager
def offline() -> Iterator[list[str]]:
    """Block network use by ultralytics for the duration of the block and yield the list of the
    connections it attempted (expected empty). The font check of ultralytics' dataset reader would
    fetch Arial.ttf; it gets matplotlib's bundled DejaVuSans instead."""
    import matplotlib  # optional and slow: only while ultralytics trains or validates
    import ultralytics.data.utils as du

    attempts: list[str] = []
    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    real_connect, real_getaddrinfo, real_font = socket.socket.connect, socket.getaddrinfo, du.check_font
    old_env = os.environ.get("YOLO_OFFLINE")

    def connect(self, address):  # noqa: ANN001
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in LOOPBACK:
            attempts.append(f"connect {address}")
            raise OSError(f"network blocked by helpers.steps.export.detect_sample.offline: {address}")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):  # noqa: ANN001
        if host not in LOOPBACK and host is not None:
            attempts.append(f"resolve {host}")
            raise socket.gaierror(f"network blocked by helpers.steps.export.detect_sample.offline: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    os.environ["YOLO_OFFLINE"] = "1"
    socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo
    du.check_font = lambda *a, **k: font
    try:
        yield attempts
    finally:
        socket.socket.connect, socket.getaddrinfo, du.check_font = real_connect, real_getaddrinfo, real_font
        if old_env is None:
            os.environ.pop("YOLO_OFFLINE", None)
        else:
            os.environ["YOLO_OFFLINE"] = old_env


def train_detect_sample(run: Run, data_yaml: str | Path, imgsz: int = 160, epochs: int = 12, batch: int = 8,
                        seed: int = 0, workers: int = 0, nbs: int | None = None, lr0: float | None = 0.005,
                        mosaic: float = 0.0, arch: str = "", warmup_epochs: float | None = None,
                        task: str = "detect") -> DetectTrainResult:
    """Train a model of `task` (detect, segment, pose; `arch`: its ultralytics YAML, default the family's YOLO11n) from
    its YAML on CPU (offline), cached in run/model/model.pt; map50_95 is the task's primary metric (box, mask or pose).

    Tuned for a few hundred images and minutes of CPU: nbs (ultralytics' nominal batch, default: batch)
    makes every batch an optimizer step (ultralytics accumulates to 64 images, leaving a small sample a
    few dozen steps), AdamW at lr0, and no mosaic (it shrinks the already small shapes); warmup_epochs=0 skips
    ultralytics' warm-up (at least 100 steps), which would take most of a run of a few hundred steps. ultralytics
    trains with cpu_count - 1 torch threads (1 on a 2-core machine)."""
    nbs = int(nbs or batch)
    arch = arch or member(task).arch
    data_yaml = Path(data_yaml).resolve()
    if not data_yaml.is_file():
        raise WorkbookError(f"Detection data file {data_yaml} does not exist; pass a data.yaml (train:, val:, names:) or leave "
                            "it empty for the generated sample.")
    out = run.model / "model.pt"
    marker = data_yaml.parent / "sample.json"
    params = {"arch": arch, "imgsz": imgsz, "epochs": epochs, "batch": batch, "nbs": nbs, "lr0": lr0, "mosaic": mosaic,
              "seed": seed, "data": str(data_yaml)}
    extra = {"optimizer": "AdamW", "lr0": lr0} if lr0 else {}
    if warmup_epochs is not None:  # ultralytics warms up for at least 100 steps: most of a tiny run (0: none)
        params["warmup_epochs"] = extra["warmup_epochs"] = warmup_epochs
    step = Step(run, "detect_sample_model", params, inputs=[marker if marker.exists() else data_yaml.parent], outputs=[out])
    if step.check():
        rec = step.record
        return DetectTrainResult(out, rec["map50_95"], rec["map50"], epochs, imgsz, rec["seconds"], reused=True,
                                 network_attempts=list(rec.get("network_attempts", [])))

    from ultralytics import YOLO  # optional and slow (seconds): only when the sample detector is trained
    from ultralytics.utils import SETTINGS

    SETTINGS.update({"sync": False})
    workdir = run.model / "train"
    shutil.rmtree(workdir, ignore_errors=True)
    started = time.perf_counter()
    with offline() as attempts:
        model = YOLO(arch, task=task)
        # val=False: ultralytics still validates after the final epoch, which is the figure recorded.
        metrics = model.train(
            data=str(data_yaml), epochs=epochs, imgsz=imgsz, batch=batch, device="cpu", workers=workers, seed=seed,
            deterministic=True, pretrained=False, amp=False, plots=False, verbose=False, val=False, nbs=nbs, mosaic=mosaic,
            **extra,
            project=str(workdir), name="run", exist_ok=True,
        )
    seconds = time.perf_counter() - started
    best = workdir / "run" / "weights" / "best.pt"
    with atomic_path(out) as tmp:
        shutil.copy2(best, tmp)
    own = getattr(metrics, member(task).val_metric)
    m50_95, m50 = float(own.map), float(own.map50)
    step.done(map50_95=m50_95, map50=m50, epochs=epochs, imgsz=imgsz, network_attempts=attempts)
    write_json_atomic(run.model / "train.json", {"task": task, "map50_95": m50_95, "map50": m50, "epochs": epochs,
                                                  "imgsz": imgsz, "train_seconds": round(seconds, 1)})
    return DetectTrainResult(out, m50_95, m50, epochs, imgsz, seconds, reused=False, network_attempts=list(attempts))


def ultralytics_val(weights: str | Path, data_yaml: str | Path, imgsz: int, log_dir: str | Path, task: str = "detect",
                    **overrides) -> dict:
    """ultralytics' own val() of a detect, segment or pose model on the val split (conf 0.001, IoU 0.7, max_det 300
    unless overridden): the task's primary mAP50-95 / mAP50 and per-class AP50-95 keyed by class name, plus the box
    mAP of a segment or pose model. A segmenter's masks are scored at the input's full resolution (save_txt selects
    ultralytics' native-size masks, mask_ratio=1 rasterises the labels at full size), as the workbook's pycocotools
    segm does; by default ultralytics scores them at a quarter of it, a different number."""
    from ultralytics import YOLO  # optional and slow (seconds): only for a val() run

    args = {"conf": 0.001, "iou": 0.7, "max_det": 300, **({"save_txt": True, "mask_ratio": 1} if task == "segment" else {}),
            **overrides}
    with offline():
        res = YOLO(str(weights), task=task).val(
            data=str(data_yaml), imgsz=imgsz, batch=16, device="cpu", workers=0, plots=False, verbose=False,
            project=str(log_dir), name="val", exist_ok=True, **args)
    names = res.names
    own = getattr(res, member(task).val_metric)
    per_class = {names[int(c)]: float(own.maps[int(c)]) for c in own.ap_class_index}
    out = {"map50_95": float(own.map), "map50": float(own.map50), "per_class": per_class}
    if task != "detect":
        out |= {"box_map50_95": float(res.box.map), "box_map50": float(res.box.map50)}
    return out


def prepare_detect_model(run: Run, model: str | Path = "", data: str | Path = "", imgsz: int = 160, epochs: int = 12,
                         images: int = 250, task: str = "detect") -> tuple[Path, Path, str]:
    """The model and data.yaml of a detect, segment or pose run plus a one-line description: the user's files
    (checked to be of the task), or the task's generated sample and the sample model trained on it (cached)."""
    kind = member(task)
    data_yaml = Path(data).expanduser().resolve() if str(data).strip() else kind.write_sample(images=images, imgsz=imgsz)
    if str(model).strip():
        path = check_model_path(model)
        check_task(path, task)
        return path, data_yaml, f"your {kind.what.split(' ', 1)[1]} {path}"
    with quiet(run.logs / "train.log"):
        res = train_detect_sample(run, data_yaml, imgsz=imgsz, epochs=epochs, task=task)
    how = "reused from the cache" if res.reused else f"trained in {res.seconds:.0f} s"
    name, on = kind.sample_words
    quarter = " (ultralytics' training-time val scores masks at a quarter of the input's resolution)" if task == "segment" else ""
    return res.weights, data_yaml, (f"sample {name} on the generated {on}, {how}: val {kind.metric_label} "
                                    f"{res.map50_95:.3f}, mAP50 {res.map50:.3f}{quarter}")
