"""Notebook 40's board section as a plain script: the PC-to-board calls of rknn-toolkit2 (list_devices, load_rknn,
init_runtime with a target and device id, inference with this run's preprocessing, eval_perf / eval_memory,
release), with this run's values, for a user to copy to a PC with the board attached over adb."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from helpers import listing
from helpers.deploy import chips
from helpers.deploy.instances import NOUN
from helpers.deploy.meta import INSTANCE_TASKS

NO_BOARD = ("No board found: connect it by USB OTG, check that `adb devices` lists it, and start rknn_server on the "
            "board (notebook 40's checklist).")


@dataclass
class BoardScript:
    """What the script needs from the run: the model, the chip, the board and its options, one image and its input."""

    model: Path  # the run's rknn/model.rknn
    target: str  # the chip, as init_runtime takes it
    image: Path
    input_size: int
    device_id: str = ""  # "" = the first board list_devices finds
    core_mask: str = "auto"
    perf_debug: bool = False
    eval_mem: bool = False
    color_order: str = "RGB"
    channels: int = 3
    task: str = "classify"
    bundle: Path | None = None  # board/deploy/, whose postprocess*.py decode a detector's, segmenter's or pose model's outputs
    end2end: bool = False
    kpt_shape: list[int] | None = None  # pose: [K, ndim], model.json's
    toolkit_version: str = ""  # the rknn-toolkit2 that built the model; the board's rknn_server and librknnrt.so match it


def _device_lines(s: BoardScript) -> list[str]:
    """list_devices, then the board to use: this run's device_id (checked) or the first one found."""
    lines = ["adb, ntb = rknn.list_devices()  # boards on adb (USB) and on ntb (PCIe)",
             "devices = [*adb, *ntb]",
             "if not devices:",
             f"    sys.exit({NO_BOARD!r})"]
    if s.device_id:
        return lines + [f"device_id = {listing.literal(s.device_id)}  # this run's device_id",
                        "if device_id not in devices:",
                        "    sys.exit(f'{device_id} is not connected (connected: {devices}); use one of those.')"]
    return lines + ["device_id = devices[0]  # this run's device_id was empty: the first board found"]


def _input_lines(s: BoardScript) -> list[str]:
    """The image as the model's input, exactly as the workbook prepares it (helpers/tasks/preprocess.py for a
    classifier: short side resized, centre crop; detect / segment / pose: the bundle's postprocess.letterbox)."""
    size = int(s.input_size)
    lines = [listing.call("cv2.imread", s.image, assign="bgr"),
             "if bgr is None:",
             "    sys.exit('cannot read the image; pass an image file that exists')"]
    if s.color_order.upper() == "BGR":
        lines.append("img = bgr  # the model was trained on BGR images: no colour conversion")
    else:
        lines.append("img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # the model takes RGB; cvtColor returns a new image")
    if s.task in INSTANCE_TASKS:
        return lines + [f"canvas, lb = letterbox(img, {size})  # aspect kept, grey padding (lb maps boxes back)",
                        "x = canvas[None]  # 1 x H x W x 3 uint8, NHWC"]
    lines += [f"size = {size}",
              "h, w = img.shape[:2]",
              "if (h, w) != (size, size):  # scale the short side to size, then crop the centre (what the workbook does)",
              "    scale = size / min(h, w)",
              "    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))",
              "    img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)",
              "    top, left = (nh - size) // 2, (nw - size) // 2",
              "    img = img[top : top + size, left : left + size]"]
    if s.channels == 1:
        lines.append("img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)[..., None]  # a 1-channel model")
    return lines + [f"x = np.ascontiguousarray(img)[None]  # 1 x {size} x {size} x {s.channels} uint8, NHWC"]


def board_calls(s: BoardScript) -> str:
    """The script: RKNN() -> list_devices -> load_rknn -> init_runtime(target, device_id, ...) -> inference ->
    eval_perf / eval_memory -> release, every value this run's. It stops with one sentence when no board answers."""
    runtime = {"target": s.target, "device_id": listing.Expr("device_id"), "perf_debug": s.perf_debug,
               "eval_mem": s.eval_mem}
    if s.core_mask != "auto":
        runtime["core_mask"] = listing.Expr(f"RKNN.{chips.CORE_MASKS[s.core_mask]}")
    detect = s.task in INSTANCE_TASKS
    version = f" {s.toolkit_version}" if s.toolkit_version else ""
    head = [f"# Notebook 40's board calls with this run's values. Run it on a PC with rknn-toolkit2{version} installed and",
            f"# the {s.target} board attached over adb, rknn_server{version} running on it (python3 this_file.py).",
            "import sys", "", "import cv2", "import numpy as np", "from rknn.api import RKNN"]
    if detect:
        head += ["", listing.call("sys.path.insert", 0, Path(s.bundle or "board/deploy"))
                 + "  # the bundle's postprocess.py: the workbook's decode",
                 "from postprocess import letterbox, postprocess"
                 + (f"\nfrom postprocess_{s.task} import postprocess as postprocess_{s.task}" if s.task != "detect" else "")]
        decode = "postprocess" if s.task == "detect" else f"postprocess_{s.task}"
        found = [listing.Expr("outputs"), listing.Expr("lb"), *([list(s.kpt_shape or [])] if s.task == "pose" else [])]
        noun = NOUN[s.task]
        result = [listing.call(decode, *found, conf=0.25, **({"end2end": True} if s.end2end else {"iou": 0.7}), assign="dets"),
                  f"print(f'{{len(dets)}} {noun}:', dets.classes.tolist(), dets.scores.round(3).tolist())"]
    else:
        result = ["scores = np.asarray(outputs[0]).ravel()",
                  "print('top-5 classes, best first:', np.argsort(-scores)[:5].tolist())"]
    memory = (["memory = rknn.eval_memory(is_print=True)  # weight and internal (activation) memory"] if s.eval_mem else
              ["# eval_memory() needs init_runtime(..., eval_mem=True); this run had eval_mem=False"])
    return listing.code(
        head, "",
        f"MODEL = {listing.literal(Path(s.model))}  # built for {s.target} by notebook 20",
        "rknn = RKNN(verbose=False)",
        _device_lines(s),
        "if rknn.load_rknn(MODEL) != 0:",
        "    sys.exit(f'load_rknn({MODEL}) failed; check the file is there and whole (notebook 20 writes it).')",
        f"if {listing.call('rknn.init_runtime', **runtime)} != 0:",
        "    sys.exit('init_runtime failed: check rknn_server and librknnrt.so on the board (the checklist in notebook 40).')",
        _input_lines(s),
        listing.call("rknn.inference", inputs=[listing.Expr("x")], data_format=["nhwc"], assign="outputs"),
        result,
        "perf = rknn.eval_perf(is_print=True)  # time per frame on the board with its clocks fixed"
        + (" (per layer: perf_debug=True)" if s.perf_debug else ""),
        memory,
        "rknn.release()",
    )


def for_bundle(config: dict, folder: Path, model: Path, target: str, device_id: str | None, params: dict,
               image: Path) -> BoardScript:
    """The script's values for notebook 40's run: the bundle's model.json (input size, colour order, channels, task),
    the run's model.rknn, the checked target, the board chosen (None: the first one found) and the board options."""
    return BoardScript(
        model=Path(model).resolve(), target=target, image=Path(image).resolve(), input_size=int(config["input_size"]),
        device_id=device_id or "", core_mask=params.get("core_mask", "auto"), perf_debug=bool(params.get("perf_debug")),
        eval_mem=bool(params.get("eval_mem")), color_order=str(config.get("color_order", "RGB")),
        channels=len(config.get("mean_values") or [0, 0, 0]), task=str(config.get("task") or "classify"),
        bundle=Path(folder).resolve(), end2end=bool(config.get("end2end")),
        toolkit_version=str(config.get("toolkit_version", "")), kpt_shape=config.get("kpt_shape"))
