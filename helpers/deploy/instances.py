"""The runner's part for models that find instances (detect, segment, pose): letterbox each image, decode its raw outputs
with the bundle's postprocess modules (the workbook's own, byte for byte), print every instance and draw it.

Shipped beside run_rknn.py, which imports it (like chips.py and throughput.py) and hands it `load`, its loader of the
bundle's modules: postprocess.py (the detector's decode, which the other two import), postprocess_segment.py and
postprocess_pose.py. Standard library at import time; numpy and OpenCV only when an image is decoded or drawn.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

try:
    import numpy as np
except ImportError:  # run_rknn.main names the missing numpy in one sentence
    np = None

IN_REPOSITORY = (Path(__file__).resolve().parent / "__init__.py").is_file()
chips = importlib.import_module("helpers.deploy.chips" if IN_REPOSITORY else "chips")

TASKS = ("detect", "segment", "pose")
MODULES = {"detect": ("postprocess",), "segment": ("postprocess", "postprocess_segment"),
           "pose": ("postprocess", "postprocess_pose")}  # the bundle's files each task decodes with
IN_WORKBOOK = {"preprocess": "helpers.tasks.preprocess", "postprocess": "helpers.tasks.detect.postprocess",
               "postprocess_segment": "helpers.tasks.segment.postprocess", "postprocess_pose": "helpers.tasks.pose.postprocess"}
STOCK = {"detect": ("detector", "box pixels and class scores"),
         "segment": ("segmentation", "box pixels, class scores and mask coefficients"),
         "pose": ("pose", "box pixels, class scores and keypoint pixels")}
NOUN = {"detect": "detection(s)", "segment": "instance(s)", "pose": "pose(s)"}
Loader = Callable[[str], Any]


class ImageError(chips.RunnerError):
    """One input image cannot be read: reported on its own line, the other images still run."""


def check_head(cfg: Dict[str, Any], model: Path) -> None:
    """A detector, segmentation or pose bundle must carry the split head: the stock one's INT8 class scores collapse."""
    task = cfg.get("task")
    if task in STOCK and cfg.get("head") == "stock":
        kind, mixed = STOCK[task]
        raise chips.RunnerError(f"{model.name} has the stock {kind} head ({mixed} in one INT8 tensor, so the scores collapse "
                                "on the NPU); export it with head: split in notebook 10, convert again and rebuild the bundle.")


def require_split(task: str, outputs: List[Any], model: str, load: Loader) -> None:
    """Refuse raw outputs in the stock layout (or in a count the task's decode does not read) in one sentence."""
    try:
        if task == "detect":
            load("postprocess").require_split(outputs, model)
            return
        layout = load(MODULES[task][1]).layout(outputs)
    except ValueError as exc:
        raise chips.RunnerError(str(exc)) from None
    if layout == "stock":
        kind, mixed = STOCK[task]
        raise chips.RunnerError(f"{model} has the stock {kind} head (one output mixing {mixed}), whose INT8 class scores "
                                "collapse to 0 on the NPU; re-export it with head: split in notebook 10.")


def letterboxed(path: Path, size: int, load: Loader) -> Any:
    """One image letterboxed: (1 x size x size x 3 uint8 RGB, geometry, the original BGR image)."""
    import cv2  # only when an image is read (the module imports with the standard library alone)

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError(f"Cannot read image {path}; check the file exists and is a valid image.")
    canvas, lb = load("postprocess").letterbox(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)
    return canvas[None], lb, bgr


def decode(task: str, outputs: List[Any], lb: Any, cfg: Dict[str, Any], conf: float, iou: float, load: Loader) -> Any:
    """The task's postprocess on one image's raw outputs: Detections, Segmentation or Poses in original image pixels."""
    end2end = bool(cfg.get("end2end"))
    if task == "segment":
        return load("postprocess_segment").postprocess(outputs, lb, conf=conf, iou=iou, end2end=end2end)
    if task == "pose":
        return load("postprocess_pose").postprocess(outputs, lb, cfg.get("kpt_shape"), conf=conf, iou=iou, end2end=end2end)
    return load("postprocess").postprocess(outputs, lb, conf=conf, iou=iou, end2end=end2end)


def name_of(cls: Any, labels: List[str]) -> str:
    """The class name from labels.txt, else the class index."""
    return labels[int(cls)] if int(cls) < len(labels) else str(int(cls))


def report(task: str, path: Path, found: Any, labels: List[str]) -> None:
    """Print one image's instances, best first: class, score, box (original pixels), and the mask's area or keypoints."""
    print(f"{path}: {len(found)} {NOUN[task]}")
    for i, (box, score, cls) in enumerate(zip(found.boxes, found.scores, found.classes)):
        corners = f"x1={box[0]:.0f} y1={box[1]:.0f} x2={box[2]:.0f} y2={box[3]:.0f}"
        line = f"  {name_of(cls, labels):<12} {float(score):.3f}  box {corners}"
        if task == "segment":
            line += f"  mask {int(found.masks[i].sum())} px"
        print(line)
        if task == "pose":
            print("    keypoints x,y,v: " + " ".join(f"{x:.0f},{y:.0f},{v:.2f}" for x, y, v in found.keypoints[i]))


def colour(cls: Any) -> tuple:
    """A fixed colour per class (BGR)."""
    return tuple(int(c) for c in np.random.default_rng(int(cls)).integers(64, 256, 3))


def draw(task: str, bgr: Any, found: Any, labels: List[str], out: Path, skeleton: Optional[List[List[int]]] = None) -> Path:
    """The image with every instance drawn, written to out: box, class name and score; segment: the mask blended in
    half-transparent; pose: the keypoints (those with visibility > 0.5) and the skeleton's lines between consecutive
    keypoints of each chain in model.json's `skeleton` (none given: points only)."""
    import cv2  # only when drawing

    img = bgr.copy()
    if task == "segment":
        for mask, cls in zip(found.masks, found.classes):
            img[mask] = (0.5 * img[mask] + 0.5 * np.array(colour(cls), np.float32)).astype(np.uint8)
    for i, (box, score, cls) in enumerate(zip(found.boxes, found.scores, found.classes)):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(img, (x1, y1), (x2, y2), colour(cls), 1)
        cv2.putText(img, f"{name_of(cls, labels)} {float(score):.2f}", (x1, max(y1 - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.3,
                    colour(cls), 1, cv2.LINE_AA)
        if task == "pose":
            kpts = found.keypoints[i]
            seen = kpts[:, 2] > 0.5
            pts = [(int(round(float(x))), int(round(float(y)))) for x, y, _ in kpts]
            for chain in skeleton or []:
                for a, b in zip(chain[:-1], chain[1:]):
                    if a < len(pts) and b < len(pts) and seen[a] and seen[b]:
                        cv2.line(img, pts[a], pts[b], colour(cls), 1, cv2.LINE_AA)
            for p, ok in zip(pts, seen):
                if ok:
                    cv2.circle(img, p, 2, (0, 0, 255), -1, cv2.LINE_AA)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), img)
    return out


def run_image(lite: Any, path: Path, args: Any, labels: List[str], cfg: Dict[str, Any], load: Loader) -> Any:
    """Letterbox, infer, decode with the bundle's postprocess modules (model.json's task, end2end and kpt_shape), print
    the instances and draw them into args.draw; the input array, or None if inference failed."""
    task = cfg.get("task", "detect")
    x, lb, bgr = letterboxed(path, args.size, load)
    outputs = lite.inference(inputs=[x], data_format=["nhwc"])
    if outputs is None:
        return None
    require_split(task, outputs, str(args.model), load)
    found = decode(task, outputs, lb, cfg, args.conf, args.iou, load)
    report(task, path, found, labels)
    if args.draw:
        print(f"  drawn: {draw(task, bgr, found, labels, Path(args.draw) / Path(path).name, cfg.get('skeleton'))}")
    return x
