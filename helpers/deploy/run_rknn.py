#!/usr/bin/env python3
"""Classify images (or, for a detector, segmentation or pose bundle, find objects, their masks or keypoints) on a
Rockchip board with rknn-toolkit-lite2 (RKNNLite): the bundle's runner.

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
(preprocess.py, postprocess*.py, labels.txt) or of the board's Python (numpy, OpenCV) is named in one line.
Detector, segmentation and pose models are decoded, printed and drawn by instances.py beside this file.
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

if not IN_REPOSITORY:  # the bundle: chips.py, throughput.py, instances.py beside this file, byte for byte the workbook's
    sys.path.insert(0, str(HERE))
try:
    chips = importlib.import_module("helpers.deploy.chips" if IN_REPOSITORY else "chips")
    throughput = importlib.import_module("helpers.deploy.throughput" if IN_REPOSITORY else "throughput")
    instances = importlib.import_module("helpers.deploy.instances" if IN_REPOSITORY else "instances")
except ImportError as exc:
    if (exc.name or "").rsplit(".", 1)[-1] not in ("chips", "throughput", "instances"):
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


ImageError = instances.ImageError  # one unreadable image: named on its own line, the others still run
_MODULES: Dict[str, Any] = {}


def bundled(name: str) -> Any:
    """The workbook module `name` ('preprocess', 'postprocess', 'postprocess_segment', 'postprocess_pose'): the file
    beside this one in the bundle
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
            module = importlib.import_module(instances.IN_WORKBOOK[name])
        else:
            raise RunnerError(f"{name}.py is missing from {HERE} (run_rknn.py imports it from beside itself); copy {name}.py "
                              "from the bundle (board/deploy/ in the workbook's run folder), or extract deploy.tar.gz again.")
    except ImportError as exc:
        missing = {"cv2": "OpenCV (cv2)"}.get(exc.name or "", exc.name or str(exc))
        raise RunnerError(f"{name}.py needs the Python package {missing}, which is not installed for {sys.executable}; "
                          f"on the board run `{PIP_LINE}`.") from None
    _MODULES[name] = module
    return module


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
    p.add_argument("--conf", type=float, default=0.25, help="detect/segment/pose: lowest class score kept (default 0.25)")
    p.add_argument("--iou", type=float, default=0.7, help="detect/segment/pose: IoU above which NMS drops the weaker box "
                                                          "of a class (default 0.7)")
    p.add_argument("--draw", default="detections", help="detect/segment/pose: folder for the images with boxes (masks, "
                                                        "skeletons) drawn ('' = none)")
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
    for name in instances.MODULES.get(cfg.get("task"), ()):
        bundled(name)


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
        detect = cfg.get("task") in instances.TASKS  # letterboxed, decoded by instances.py
        if args.preprocess_only is not None:
            batch = np.concatenate([instances.letterboxed(p, args.size, bundled)[0] if detect
                                    else prepare(p, args.size, args.color_order, channels) for p in images])
            np.save(args.preprocess_only, batch)
            print(f"wrote {batch.shape} {batch.dtype} input batch to {args.preprocess_only}")
            return 0
        instances.check_head(cfg, model)
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
                x = (instances.run_image(lite, path, args, labels, cfg, bundled) if detect
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
