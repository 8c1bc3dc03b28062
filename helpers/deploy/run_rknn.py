#!/usr/bin/env python3
"""Classify images (or, for a detector bundle, detect objects) on a Rockchip board with rknn-toolkit-lite2 (RKNNLite):
the bundle's runner.

On the board, inside the unpacked bundle:
    python3 run_rknn.py image.png                      # top-5 for one image
    python3 run_rknn.py images/ --top-k 3              # every image in a folder
    python3 run_rknn.py image.png --benchmark 200 --core-mask 0_1_2   # plus latency percentiles and FPS
    python3 run_rknn.py image.png --benchmark 200 --cores 0,1,2       # one context per NPU core: FPS per core, in all
    python3 run_rknn.py image.png --preprocess-only x.npy         # save the exact input, no NPU

Preprocessing is the workbook's own module, preprocess.py, shipped beside this file: the board
feeds the model exactly the uint8 NHWC array the workbook fed the simulator, in the colour order
model.json names. Mean/std are inside the .rknn (the NPU applies them), so no normalisation happens here.
The file stands alone: --help needs only the standard library, and a missing piece of the bundle
(preprocess.py, postprocess.py, labels.txt) or of the board's Python (numpy, OpenCV) is named in one line.
The benchmark (throughput.py beside this file) times inference only; see README.md, 'Benchmark', before comparing figures.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

try:
    import numpy as np
except ImportError:  # named in one sentence by main(), after --help has had its chance
    np = None

HERE = Path(__file__).resolve().parent
# Inside the workbook repository this folder is a package (helpers/deploy/__init__.py); the bundle has none.
IN_REPOSITORY = (HERE / "__init__.py").is_file()
PIP_LINE = "python3 -m pip install numpy opencv-python-headless"

if not IN_REPOSITORY:  # the bundle: chips.py and throughput.py beside this file, byte for byte the workbook's
    sys.path.insert(0, str(HERE))
try:
    chips = importlib.import_module("helpers.deploy.chips" if IN_REPOSITORY else "chips")
    throughput = importlib.import_module("helpers.deploy.throughput" if IN_REPOSITORY else "throughput")
except ImportError as exc:
    if (exc.name or "").rsplit(".", 1)[-1] not in ("chips", "throughput"):
        raise
    name = f"{exc.name.rsplit('.', 1)[-1]}.py"
    print(f"error: {name} is missing from {HERE} (run_rknn.py imports it from beside itself); copy {name} from the "
          "bundle (board/deploy/ in the workbook's run folder), or extract deploy.tar.gz again.", file=sys.stderr)
    sys.exit(2)
RunnerError, CORE_MASKS, rknn_platform = chips.RunnerError, chips.CORE_MASKS, chips.rknn_platform
board_platform, check_platform, check_core_mask = chips.board_platform, chips.check_platform, chips.check_core_mask
core_mask_meaning, core_mask_value = chips.core_mask_meaning, chips.core_mask_value

CONFIG_NAME = "model.json"
DEFAULT_LITE_VERSION = "2.5.0"


class ImageError(RunnerError):
    """One input image cannot be read: reported on its own line, the other images still run."""


_MODULES: Dict[str, Any] = {}


def bundled(name: str) -> Any:
    """The workbook module `name` ('preprocess' or 'postprocess'): the file beside this one in the bundle
    (byte for byte the workbook's), the workbook's own inside the repository, else one sentence saying which
    file is missing and how to get it back."""
    if name in _MODULES:
        return _MODULES[name]
    try:
        if (HERE / f"{name}.py").is_file():
            if str(HERE) not in sys.path:
                sys.path.insert(0, str(HERE))
            module = __import__(name)
        elif IN_REPOSITORY:
            module = __import__(f"helpers.tasks.{'detect.' if name == 'postprocess' else ''}{name}", fromlist=[name])
        else:
            raise RunnerError(f"{name}.py is missing from {HERE} (run_rknn.py imports it from beside itself); copy {name}.py "
                              "from the bundle (board/deploy/ in the workbook's run folder), or extract deploy.tar.gz again.")
    except ImportError as exc:
        missing = {"cv2": "OpenCV (cv2)"}.get(exc.name or "", exc.name or str(exc))
        raise RunnerError(f"{name}.py needs the Python package {missing}, which is not installed for {sys.executable}; "
                          f"on the board run `{PIP_LINE}`.") from None
    _MODULES[name] = module
    return module


def detector_postprocess() -> Any:
    """The workbook's detector post-processing module: postprocess.py beside this file in the bundle
    (byte for byte helpers/tasks/detect/postprocess.py), or the workbook's own inside the repository."""
    return bundled("postprocess")


def check_head(cfg: Dict[str, Any], model: Path) -> None:
    """A detector bundle must carry the split head: the stock one's INT8 class scores collapse on the NPU."""
    if cfg.get("task") == "detect" and cfg.get("head") == "stock":
        raise RunnerError(f"{model.name} has the stock detector head (box pixels and class scores in one INT8 tensor, so the "
                          "scores collapse on the NPU); export it with head: split in notebook 10, convert again and "
                          "rebuild the bundle.")


def letterboxed(path: Path, size: int) -> Any:
    """One image letterboxed for a detector: (1 x size x size x 3 uint8 RGB, geometry, the original BGR image)."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError(f"Cannot read image {path}; check the file exists and is a valid image.")
    canvas, lb = detector_postprocess().letterbox(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)
    return canvas[None], lb, bgr


def draw_detections(bgr: Any, dets: Any, labels: List[str], out: Path) -> Path:
    """The image with its boxes, class names and scores drawn (OpenCV's built-in font), written to out."""
    import cv2

    img = bgr.copy()
    for box, score, cls in zip(dets.boxes, dets.scores, dets.classes):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        colour = tuple(int(c) for c in np.random.default_rng(int(cls)).integers(64, 256, 3))
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, 1)
        name = labels[int(cls)] if int(cls) < len(labels) else str(int(cls))
        cv2.putText(img, f"{name} {float(score):.2f}", (x1, max(y1 - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.3, colour, 1,
                    cv2.LINE_AA)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), img)
    return out


def detect_image(lite: Any, path: Path, args: argparse.Namespace, labels: List[str], end2end: bool = False) -> Any:
    """Letterbox, infer, decode with postprocess.py (end2end, from model.json: an end-to-end head's top-k instead
    of NMS), print the detections and draw them; the input array, or None if inference failed."""
    pp = detector_postprocess()
    x, lb, bgr = letterboxed(path, args.size)
    outputs = lite.inference(inputs=[x], data_format=["nhwc"])
    if outputs is None:
        return None
    try:
        pp.require_split(outputs, str(args.model))
    except ValueError as exc:
        raise RunnerError(str(exc)) from None
    dets = pp.postprocess(outputs, lb, conf=args.conf, iou=args.iou, end2end=end2end)
    print(f"{path}: {len(dets)} detection(s)")
    for box, score, cls in zip(dets.boxes, dets.scores, dets.classes):
        name = labels[int(cls)] if int(cls) < len(labels) else str(int(cls))
        print(f"  {name:<12} {float(score):.3f}  box x1={box[0]:.0f} y1={box[1]:.0f} x2={box[2]:.0f} y2={box[3]:.0f}")
    if args.draw:
        print(f"  drawn: {draw_detections(bgr, dets, labels, Path(args.draw) / Path(path).name)}")
    return x


# ---------------------------------------------------------------- inputs

def load_config(path: Optional[Path]) -> Dict[str, Any]:
    """The bundle's model.json (input size, labels, platform, ...); {} when absent. RunnerError when unreadable."""
    if path is None or not Path(path).is_file():
        return {}
    try:
        cfg = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunnerError(f"{path} cannot be read as JSON ({exc}); copy model.json from the bundle again, "
                          "or extract deploy.tar.gz again.") from None
    if not isinstance(cfg, dict):
        raise RunnerError(f"{path} does not hold a JSON object; copy model.json from the bundle again.")
    return cfg


def read_labels(path: Optional[Path]) -> List[str]:
    """Class names, one per line; [] when there is no file."""
    if path is None or not Path(path).is_file():
        return []
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def labels_or_warning(path: Optional[Path]) -> Tuple[List[str], str]:
    """(class names, "") or ([], one warning line) when the labels file is missing, unreadable or empty:
    the run goes on printing class indices, and the user is told why and how to get names."""
    fix = "copy labels.txt from the bundle beside run_rknn.py, or pass --labels FILE (one class name per line)"
    if path is None:
        return [], f"warning: no labels file named (none in model.json, no --labels), so class indices are printed; {fix}."
    try:
        labels = read_labels(path)
    except (OSError, UnicodeDecodeError) as exc:
        return [], f"warning: labels file {path} cannot be read ({exc}), so class indices are printed; {fix}."
    if not Path(path).is_file():
        return [], f"warning: labels file {path} is missing, so class indices are printed; {fix}."
    if not labels:
        return [], f"warning: labels file {path} is empty, so class indices are printed; {fix}."
    return labels, ""


def collect_images(inputs: Sequence[str]) -> List[Path]:
    """Image files named directly or found directly inside named folders, in order."""
    images: List[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = bundled("preprocess").list_images(p)
            if not found:
                raise RunnerError(f"Folder {p} has no images ({', '.join(bundled('preprocess').IMAGE_SUFFIXES)}); "
                                  "pass an image file or a folder of images.")
            images += found
        elif p.is_file():
            images.append(p)
        else:
            raise RunnerError(f"Input {p} does not exist; pass an image file or a folder of images.")
    return images


def prepare(path: Path, size: int, color_order: str = "RGB", channels: int = 3) -> np.ndarray:
    """One image as the model's input: uint8, 1 x size x size x C (NHWC); grayscale when channels is 1,
    else channels in the model's colour order (model.json's color_order: RGB, or BGR for a model trained on BGR)."""
    try:
        image = bundled("preprocess").read_image(path, size, channels)
    except ValueError as exc:
        raise ImageError(str(exc)) from None
    return np.ascontiguousarray(image[..., ::-1] if channels == 3 and color_order.upper() == "BGR" else image)[None]


def as_probabilities(scores: np.ndarray) -> np.ndarray:
    """Scores as probabilities: unchanged when they already are, softmax of logits otherwise."""
    scores = np.asarray(scores, np.float64).ravel()
    if (scores >= 0).all() and abs(scores.sum() - 1.0) < 1e-2:
        return scores
    return bundled("preprocess").softmax(scores)


# ---------------------------------------------------------------- arguments

def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command line; defaults (model, labels, input size) come from model.json beside this file."""
    cfg_default = HERE / CONFIG_NAME
    p = argparse.ArgumentParser(
        prog="run_rknn.py",
        description="Classify images with an .rknn model on a Rockchip NPU (rknn-toolkit-lite2).",
    )
    p.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    p.add_argument("--config", type=Path, default=cfg_default, help=f"bundle description (default: {CONFIG_NAME} "
                                                                    "beside this script)")
    p.add_argument("--model", type=Path, default=None, help="the .rknn file (default: the one named in the config)")
    p.add_argument("--labels", type=Path, default=None, help="class names, one per line (default: the config's labels file)")
    p.add_argument("--size", type=int, default=None, help="model input size in pixels (default: from the config)")
    p.add_argument("--top-k", type=int, default=5, help="how many classes to print per image (default 5)")
    p.add_argument("--conf", type=float, default=0.25, help="detectors: lowest class score kept (default 0.25)")
    p.add_argument("--iou", type=float, default=0.7, help="detectors: IoU above which NMS drops the weaker box of a "
                                                          "class (default 0.7)")
    p.add_argument("--draw", default="detections", help="detectors: folder for the images with boxes drawn ('' = none)")
    p.add_argument("--core-mask", choices=list(CORE_MASKS), default="auto",
                   help="NPU cores to use: auto, 0, 1, 2, 0_1, 0_1_2, all (rk3588/rk3576 only; default auto)")
    throughput.add_arguments(p)  # --benchmark N, --warmup W, --cores 0,1,2
    p.add_argument("--preprocess-only", type=Path, default=None, metavar="OUT.npy",
                   help="write the preprocessed input batch (N x H x W x 3 uint8) to OUT.npy and stop (no NPU needed)")
    args = p.parse_args(argv)
    cfg = load_config(args.config)  # RunnerError when unreadable: main prints it as one line
    args.config_data = cfg
    base = Path(args.config).resolve().parent
    if args.model is None:
        args.model = base / cfg.get("model", "model.rknn")
    if args.labels is None and cfg.get("labels"):
        args.labels = base / cfg["labels"]
    if args.size is None:
        args.size = cfg.get("input_size")
    if args.size is None:
        p.error(f"no input size: pass --size N or keep {CONFIG_NAME} beside the script")
    if args.size < 1:
        p.error(f"--size must be a positive number of pixels, got {args.size}")
    if args.top_k < 1:
        p.error(f"--top-k must be at least 1, got {args.top_k}")
    args.color_order = str(cfg.get("color_order", "RGB")).upper()
    if args.color_order not in ("RGB", "BGR"):
        p.error(f"{args.config} has color_order={args.color_order!r}; it must be RGB or BGR")
    return args


# ---------------------------------------------------------------- board

def import_rknnlite(version: str) -> Any:
    """The RKNNLite class, or one sentence saying how to install it on the board."""
    try:
        from rknnlite.api import RKNNLite
    except ImportError:
        raise RunnerError(
            f"rknn-toolkit-lite2 is not installed for {sys.executable}; on the board run "
            f"`python3 -m pip install rknn-toolkit-lite2=={version}` (aarch64 only, the same version as the toolkit "
            "that built the model)."
        ) from None
    return RKNNLite


def needed_modules(cfg: Dict[str, Any]) -> None:
    """numpy and the workbook's modules this bundle needs, loaded now so a missing one is named before any work."""
    if np is None:
        raise RunnerError(f"numpy is not installed for {sys.executable}; on the board run `{PIP_LINE}`.")
    bundled("preprocess")
    if cfg.get("task") == "detect":
        bundled("postprocess")


def classify_image(lite: Any, path: Path, args: argparse.Namespace, labels: List[str], channels: int) -> Any:
    """Preprocess, infer and print the top-k of one image; its input array, or None if inference failed."""
    x = prepare(path, args.size, args.color_order, channels)
    outputs = lite.inference(inputs=[x], data_format=["nhwc"])
    if outputs is None:
        return None
    probs = as_probabilities(outputs[0])
    print(f"{path}:")
    for rank, (idx, score) in enumerate(bundled("preprocess").top_k(probs, args.top_k), 1):
        name = labels[idx] if idx < len(labels) else str(idx)
        print(f"  {rank}. {name:<20} {score:.4f}  (class {idx})")
    return x


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Exit 0 when every image ran; 1 when the runtime failed or some images could not be read (each named on its
    own line, the others still run); 2 for bad input or a missing piece (one sentence)."""
    try:
        args = parse_args(argv)
        cfg = args.config_data
        needed_modules(cfg)
        model = Path(args.model)
        platform = rknn_platform(model)
        throughput.check_args(args, platform)  # --benchmark, --warmup, --cores against each other and the model's chip
        images = collect_images(args.inputs)
        channels = len(cfg.get("mean_values") or [0, 0, 0])
        detect = cfg.get("task") == "detect"
        if args.preprocess_only is not None:
            batch = np.concatenate([letterboxed(p, args.size)[0] if detect else prepare(p, args.size, args.color_order, channels)
                                    for p in images])
            np.save(args.preprocess_only, batch)
            print(f"wrote {batch.shape} {batch.dtype} input batch to {args.preprocess_only}")
            return 0
        check_head(cfg, model)
        check_platform(platform, board_platform(), model)
        mask = args.core_mask
        check_core_mask(mask, platform)
        RKNNLite = import_rknnlite(cfg.get("toolkit_version") or DEFAULT_LITE_VERSION)
        mask_value = core_mask_value(RKNNLite, mask, platform)
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    labels, warning = labels_or_warning(args.labels)
    lite = RKNNLite(verbose=False)
    try:
        if lite.load_rknn(str(model)) != 0:
            print(f"error: RKNNLite.load_rknn({model}) failed; check the file is complete and that /usr/lib/librknnrt.so is "
                  f"not older than rknn-toolkit2 {cfg.get('toolkit_version', '')}, which built the model (an older one reports "
                  "'Invalid RKNN model version').", file=sys.stderr)
            return 1
        if lite.init_runtime(core_mask=mask_value) != 0:
            print(f"error: RKNNLite.init_runtime failed; check that /usr/lib/librknnrt.so is rknn-toolkit2 "
                  f"{cfg.get('toolkit_version', '')} or newer (`strings /usr/lib/librknnrt.so | grep 'librknnrt version'`) "
                  "and the NPU driver is loaded (`cat /sys/kernel/debug/rknpu/version`).", file=sys.stderr)
            return 1
        print(f"model {model.name} ({platform}), input {args.size}x{args.size} {args.color_order} uint8 NHWC, "
              f"core mask {mask} ({core_mask_meaning(mask, platform)})")
        if warning:
            print(warning, file=sys.stderr)
        first, unreadable = None, 0
        for path in images:
            try:
                x = (detect_image(lite, path, args, labels, end2end=bool(cfg.get("end2end"))) if detect
                     else classify_image(lite, path, args, labels, channels))
            except ImageError as exc:  # this image only: say so and go on with the rest
                print(f"error: {exc}", file=sys.stderr)
                unreadable += 1
                continue
            except RunnerError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            if x is None:
                print(f"error: inference on {path} returned nothing; see the RKNNLite messages above.", file=sys.stderr)
                return 1
            first = x if first is None else first
        if args.benchmark and first is not None:
            try:
                throughput.run(RKNNLite, lite, model, first, args, f"{model.name} on {platform}, core mask {mask}")
            except RunnerError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
        if unreadable:
            print(f"error: {unreadable} of {len(images)} image(s) could not be read (named above), the other "
                  f"{len(images) - unreadable} ran; replace or remove the unreadable file(s).", file=sys.stderr)
            return 1
    finally:
        lite.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
