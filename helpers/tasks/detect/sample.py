"""The offline detection sample: coloured shapes on textured backgrounds in YOLO label format, and a
YOLO11n detector trained on it from `yolo11n.yaml` on CPU with nothing downloaded (cached per run)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from helpers.core.errors import WorkbookError
from helpers.core.paths import DATA, Run, write_json_atomic, write_text_atomic
from helpers.core.step_cache import Step

CLASSES = ("circle", "square", "triangle", "cross")
SAMPLE_DIR = DATA / "shapes"
SAMPLE_VERSION = 1
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


# ---------------------------------------------------------------- the generated data set

def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random background: low-frequency colour blotches, a few stripes and pixel noise."""
    grid = rng.integers(40, 215, (rng.integers(3, 7), rng.integers(3, 7), 3)).astype(np.float32)
    img = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    period = rng.uniform(6, 20)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    img += (stripes * rng.uniform(8, 25))[..., None]
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255)


def _draw(shape: str, mask: np.ndarray, x: int, y: int, s: int) -> None:
    """Draw one filled shape of size s with its top-left corner at (x, y) into a uint8 mask."""
    if shape == "circle":
        cv2.circle(mask, (x + s // 2, y + s // 2), s // 2, 255, -1, cv2.LINE_AA)
    elif shape == "square":
        cv2.rectangle(mask, (x, y), (x + s - 1, y + s - 1), 255, -1)
    elif shape == "triangle":
        pts = np.array([[x + s // 2, y], [x, y + s - 1], [x + s - 1, y + s - 1]], np.int32)
        cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA)
    else:  # cross
        t = max(2, s // 4)
        c = s // 2
        cv2.rectangle(mask, (x, y + c - t // 2), (x + s - 1, y + c + (t - t // 2) - 1), 255, -1)
        cv2.rectangle(mask, (x + c - t // 2, y), (x + c + (t - t // 2) - 1, y + s - 1), 255, -1)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def make_image(rng: np.random.Generator, width: int, height: int, max_objects: int) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One RGB image with 1..max_objects shapes and their (class, xyxy pixel box) labels."""
    img = _texture(rng, height, width)
    labels: list[tuple[int, np.ndarray]] = []
    short = min(width, height)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            s = int(rng.integers(max(8, short // 8), max(10, short // 3)))
            x, y = int(rng.integers(0, width - s)), int(rng.integers(0, height - s))
            box = np.array([x, y, x + s, y + s], np.float32)
            if all(_iou(box, b) < 0.05 for _, b in labels):
                break
        else:
            continue
        cls = int(rng.integers(len(CLASSES)))
        mask = np.zeros((height, width), np.uint8)
        _draw(CLASSES[cls], mask, x, y, s)
        ys, xs = np.nonzero(mask)
        tight = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
        colour = rng.integers(0, 256, 3).astype(np.float32)
        under = img[mask > 0].mean(axis=0)
        if np.abs(colour - under).sum() < 150:  # keep every shape visible against its background
            colour = 255 - under
        a = (mask.astype(np.float32) / 255)[..., None]
        img = img * (1 - a) + colour * a
        labels.append((cls, tight))
    return np.round(img).astype(np.uint8), labels


def yolo_line(cls: int, box: np.ndarray, width: int, height: int) -> str:
    """A YOLO label line: class cx cy w h, normalised to the image size."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return f"{cls} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"


def write_detect_sample(out_dir: str | Path = SAMPLE_DIR, images: int = 250, imgsz: int = 160, val_fraction: float = 0.2,
                        max_objects: int = 4, seed: int = 0) -> Path:
    """Write images/{train,val}, labels/{train,val} and data.yaml (landscape imgsz x 3/4 imgsz images);
    reuse a matching earlier copy. Returns the path of data.yaml."""
    out_dir = Path(out_dir)
    if images < 2:
        raise WorkbookError(f"images={images} is too few for a train and a val split; use images >= 2.")
    spec = {"version": SAMPLE_VERSION, "images": images, "imgsz": imgsz, "val_fraction": val_fraction,
            "max_objects": max_objects, "seed": seed, "classes": list(CLASSES)}
    marker = out_dir / "sample.json"
    if marker.exists() and json.loads(marker.read_text()).get("spec") == spec and (out_dir / "data.yaml").exists():
        return out_dir / "data.yaml"
    rng = np.random.default_rng(seed)
    width, height = imgsz, int(round(imgsz * 0.75))
    n_val = max(1, int(round(images * val_fraction)))
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    counts = {"train": 0, "val": 0}
    for i in range(images):
        split = "val" if i >= images - n_val else "train"
        img, labels = make_image(rng, width, height, max_objects)
        for sub in ("images", "labels"):
            (tmp / sub / split).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp / "images" / split / f"{i:04d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        (tmp / "labels" / split / f"{i:04d}.txt").write_text("".join(yolo_line(c, b, width, height) + "\n" for c, b in labels))
        counts[split] += 1
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(CLASSES))
    # `path` is left out on purpose: ultralytics resolves train/val against the yaml's own folder.
    (tmp / "data.yaml").write_text(f"train: images/train\nval: images/val\nnames:\n{names}")
    (tmp / "sample.json").write_text(json.dumps({"spec": spec, "counts": counts, "size": [width, height]}, indent=2))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir / "data.yaml"


# ---------------------------------------------------------------- offline training

@contextlib.contextmanager
def offline() -> Iterator[list[str]]:
    """Block network use by ultralytics for the duration of the block and yield the list of the
    connections it attempted (expected empty). The font check of ultralytics' dataset reader would
    fetch Arial.ttf; it gets matplotlib's bundled DejaVuSans instead."""
    import matplotlib
    import ultralytics.data.utils as du

    attempts: list[str] = []
    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    real_connect, real_getaddrinfo, real_font = socket.socket.connect, socket.getaddrinfo, du.check_font
    old_env = os.environ.get("YOLO_OFFLINE")

    def connect(self, address):  # noqa: ANN001
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in LOOPBACK:
            attempts.append(f"connect {address}")
            raise OSError(f"network blocked by helpers.tasks.detect.sample.offline: {address}")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):  # noqa: ANN001
        if host not in LOOPBACK and host is not None:
            attempts.append(f"resolve {host}")
            raise socket.gaierror(f"network blocked by helpers.tasks.detect.sample.offline: {host}")
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
                        mosaic: float = 0.0, arch: str = "yolo11n.yaml", warmup_epochs: float | None = None) -> DetectTrainResult:
    """Train a detector (YOLO11n by default; `arch`: another ultralytics detect YAML) from its YAML on CPU (offline),
    cached in run/model/model.pt.

    Tuned for a few hundred images and minutes of CPU: nbs (ultralytics' nominal batch, default: batch)
    makes every batch an optimizer step (ultralytics accumulates to 64 images, leaving a small sample a
    few dozen steps), AdamW at lr0, and no mosaic (it shrinks the already small shapes); warmup_epochs=0 skips
    ultralytics' warm-up (at least 100 steps), which would take most of a run of a few hundred steps. ultralytics
    trains with cpu_count - 1 torch threads (1 on a 2-core machine)."""
    nbs = int(nbs or batch)
    data_yaml = Path(data_yaml).resolve()
    if not data_yaml.is_file():
        raise WorkbookError(f"Detection data file {data_yaml} does not exist; pass a data.yaml (train:, val:, names:) or leave it empty for the generated sample.")
    out = run.model / "model.pt"
    marker = data_yaml.parent / "sample.json"
    params = {"arch": arch, "imgsz": imgsz, "epochs": epochs, "batch": batch, "nbs": nbs, "lr0": lr0, "mosaic": mosaic, "seed": seed, "data": str(data_yaml)}
    extra = {"optimizer": "AdamW", "lr0": lr0} if lr0 else {}
    if warmup_epochs is not None:  # ultralytics warms up for at least 100 steps: most of a tiny run (0: none)
        params["warmup_epochs"] = extra["warmup_epochs"] = warmup_epochs
    step = Step(run, "detect_sample_model", params, inputs=[marker if marker.exists() else data_yaml.parent], outputs=[out])
    if step.check():
        rec = step.record
        return DetectTrainResult(out, rec["map50_95"], rec["map50"], epochs, imgsz, rec["seconds"], reused=True,
                                 network_attempts=list(rec.get("network_attempts", [])))

    from ultralytics import YOLO
    from ultralytics.utils import SETTINGS

    SETTINGS.update({"sync": False})
    workdir = run.model / "train"
    shutil.rmtree(workdir, ignore_errors=True)
    started = time.perf_counter()
    with offline() as attempts:
        model = YOLO(arch, task="detect")
        # val=False: ultralytics still validates after the final epoch, which is the figure recorded.
        metrics = model.train(
            data=str(data_yaml), epochs=epochs, imgsz=imgsz, batch=batch, device="cpu", workers=workers, seed=seed,
            deterministic=True, pretrained=False, amp=False, plots=False, verbose=False, val=False, nbs=nbs, mosaic=mosaic, **extra,
            project=str(workdir), name="run", exist_ok=True,
        )
    seconds = time.perf_counter() - started
    best = workdir / "run" / "weights" / "best.pt"
    tmp = out.with_name("model.pt.tmp")
    shutil.copy2(best, tmp)
    tmp.replace(out)
    m50_95, m50 = float(metrics.box.map), float(metrics.box.map50)
    step.done(map50_95=m50_95, map50=m50, epochs=epochs, imgsz=imgsz, network_attempts=attempts)
    write_json_atomic(run.model / "train.json", {"task": "detect", "map50_95": m50_95, "map50": m50, "epochs": epochs,
                                                  "imgsz": imgsz, "train_seconds": round(seconds, 1)})
    return DetectTrainResult(out, m50_95, m50, epochs, imgsz, seconds, reused=False, network_attempts=list(attempts))


def ultralytics_val(weights: str | Path, data_yaml: str | Path, imgsz: int, log_dir: str | Path, **overrides) -> dict:
    """ultralytics' own val() of a detector on the val split (conf 0.001, IoU 0.7, max_det 300 unless
    overridden): mAP50-95, mAP50 and per-class AP50-95 keyed by class name."""
    from ultralytics import YOLO

    args = {"conf": 0.001, "iou": 0.7, "max_det": 300, **overrides}
    with offline():
        res = YOLO(str(weights), task="detect").val(
            data=str(data_yaml), imgsz=imgsz, batch=16, device="cpu", workers=0, plots=False, verbose=False,
            project=str(log_dir), name="val", exist_ok=True, **args)
    names = res.names
    per_class = {names[int(c)]: float(res.box.maps[int(c)]) for c in res.box.ap_class_index}
    return {"map50_95": float(res.box.map), "map50": float(res.box.map50), "per_class": per_class}


def write_data_yaml(path: Path, train: str, val: str, names: list[str]) -> Path:
    """A minimal ultralytics data.yaml with relative train/val folders."""
    body = "".join(f"  {i}: {n}\n" for i, n in enumerate(names))
    return write_text_atomic(path, f"train: {train}\nval: {val}\nnames:\n{body}")


def prepare_detect_model(run: Run, model: str | Path = "", data: str | Path = "", imgsz: int = 160, epochs: int = 12,
                         images: int = 250) -> tuple[Path, Path, str]:
    """The detector and data.yaml of a run plus a one-line description: the user's files (checked to be
    a detector), or the generated sample and the sample model trained on it (cached)."""
    from helpers.steps.export.exporter import quiet
    from helpers.steps.export.models import check_model_path
    from helpers.tasks.identify import check_task

    data_yaml = Path(data).expanduser().resolve() if str(data).strip() else write_detect_sample(images=images, imgsz=imgsz)
    if str(model).strip():
        path = check_model_path(model)
        check_task(path, "detect")
        return path, data_yaml, f"your detector {path}"
    with quiet(run.logs / "train.log"):
        res = train_detect_sample(run, data_yaml, imgsz=imgsz, epochs=epochs)
    how = "reused from the cache" if res.reused else f"trained in {res.seconds:.0f} s"
    return res.weights, data_yaml, f"sample YOLO11n detector on the generated shapes, {how}: val mAP50-95 {res.map50_95:.3f}, mAP50 {res.map50:.3f}"
