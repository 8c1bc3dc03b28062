"""The C++ demo project of the bundle: the toolkit's `codegen`, the workbook's one codegen function, and for a split-head
detector, segmentation or pose model the workbook's own C++ decode and demo for its task (cpp/yolo_detect.h with
detect_demo.cc, + yolo_segment.h with segment_demo.cc, + yolo_pose.h with pose_demo.cc; demo_io.h around the rknn C API)
added to that project as a second program, `rknn_<task>_demo`, with a `run_<task>.sh`."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.core.errors import WorkbookError
from helpers.core.paths import atomic_path
from helpers.deploy.meta import model_meta
from helpers.steps.convert import rebuild
from helpers.tasks.feeds import model_input_npy
from helpers.tasks.preprocess import read_rgb
from helpers.toolkit.record import ConvertRecord
from helpers.toolkit.session import RKNN

CPP_DIR = Path(__file__).with_name("cpp")
_HEADERS = (CPP_DIR / "yolo_detect.h", CPP_DIR / "demo_io.h")
TASK_SOURCES = {  # the files of each task's demo, copied into the codegen project's src/
    "detect": (*_HEADERS, CPP_DIR / "detect_demo.cc"),
    "segment": (*_HEADERS, CPP_DIR / "yolo_segment.h", CPP_DIR / "segment_demo.cc"),
    "pose": (*_HEADERS, CPP_DIR / "yolo_pose.h", CPP_DIR / "pose_demo.cc"),
}
DETECT_SOURCES = TASK_SOURCES["detect"]
DEMO_SOURCES = (Path(__file__), Path(__file__).with_name("meta.py"),
                *sorted({p for files in TASK_SOURCES.values() for p in files}))  # what cpp/ depends on besides the run (cache)
DETECT_PROGRAM = "rknn_detect_demo"
CMAKE_DEMO = """
# ---- added by the RKNN deployment workbook: the {task} demo (src/{task}_demo.cc + its headers in src/)
add_executable({program} src/{task}_demo.cc)
target_include_directories({program} PRIVATE ${{STB}} ${{CMAKE_SOURCE_DIR}}/src)
target_link_libraries({program} ${{RKNN_RT_LIB}} ${{PTHREAD_LIB}} dl)
install(TARGETS {program} DESTINATION ./)
install(PROGRAMS ${{CMAKE_SOURCE_DIR}}/run_{task}.sh DESTINATION ./)
install(FILES ${{CMAKE_SOURCE_DIR}}/../labels.txt DESTINATION ./)
install(DIRECTORY ${{CMAKE_SOURCE_DIR}}/../images DESTINATION ./ OPTIONAL)
"""
CMAKE_DETECT = CMAKE_DEMO.format(task="detect", program=DETECT_PROGRAM)
RUN_DEMO = """#!/bin/sh
# The workbook's {task} demo on the bundle's sample images (after build_linux.sh and adb push).
ROOT_PWD=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH="$ROOT_PWD/lib/"
cd "$ROOT_PWD" && ./{program} model.rknn labels.txt images/* --conf 0.25 --iou 0.7{options}
"""


def program(task: str) -> str:
    """The demo program's name for a task: rknn_detect_demo, rknn_segment_demo, rknn_pose_demo."""
    return f"rknn_{task}_demo"


@dataclass
class CppDemo:
    """Outcome of the toolkit's codegen: the folder (or None) and a one-line note of what happened."""

    folder: Path | None
    note: str


def detector_head(record: ConvertRecord) -> str | None:
    """'split' or 'stock' when the converted model is a detector (its ONNX says so), else None."""
    meta = model_meta(record)
    return meta["head"] if meta.get("task") == "detect" else None


def end2end(record: ConvertRecord) -> bool:
    """Whether the converted model has an end-to-end head (its ONNX says so): decoded by top-k, no NMS."""
    return bool(model_meta(record).get("end2end"))


def demo_options(meta: dict[str, Any]) -> str:
    """The demo's options beyond --conf/--iou for this model: --end2end, and for pose --kpt-shape K,ndim."""
    kpt = f" --kpt-shape {meta['kpt_shape'][0]},{meta['kpt_shape'][1]}" if meta.get("task") == "pose" else ""
    return kpt + (" --end2end" if meta.get("end2end") else "")


def add_task_demo(folder: Path, meta: dict[str, Any]) -> None:
    """Add the workbook's demo for meta's task (model_meta: task, end2end, kpt_shape) to a codegen project: its sources
    into src/, a second executable (and its install rules) at the end of CMakeLists.txt, and run_<task>.sh."""
    task = meta["task"]
    cmake = folder / "CMakeLists.txt"
    if not cmake.is_file():
        raise WorkbookError(f"{folder} has no CMakeLists.txt, so it is not the toolkit's codegen project; "
                            "generate it with generate_cpp_demo (codegen=True in notebook 40).")
    (folder / "src").mkdir(exist_ok=True)
    for src in TASK_SOURCES[task]:
        shutil.copyfile(src, folder / "src" / src.name)
    text = cmake.read_text()
    if program(task) not in text:
        cmake.write_text(text.rstrip("\n") + "\n" + CMAKE_DEMO.format(task=task, program=program(task)))
    script = folder / f"run_{task}.sh"
    script.write_text(RUN_DEMO.format(task=task, program=program(task), options=demo_options(meta)))
    script.chmod(0o755)


def add_detect_demo(folder: Path, end_to_end: bool = False) -> None:
    """add_task_demo for a detector (with --end2end for an end-to-end head)."""
    add_task_demo(folder, {"task": "detect", "end2end": end_to_end})


def codegen_input(record: ConvertRecord, image: Path, folder: Path) -> Path:
    """The sample input codegen runs the demo on: the image itself for a 3-channel model, else the model's own
    input as a 1 x C x H x W uint8 .npy (codegen reads image files as 3 channels and refuses them)."""
    channels = len(record.config.mean_values or [0, 0, 0])
    if channels == 3:
        return Path(image)
    return model_input_npy(read_rgb(image, record.input_size), channels, Path(folder) / f"{Path(image).stem}.npy")


def generate_cpp_demo(record: ConvertRecord, out_dir: str | Path, log_path: str | Path, image: Path | None = None,
                      model_name: str = "model.rknn") -> CppDemo:
    """The C++ demo project from the toolkit's `codegen`, written to out_dir (swapped in when complete);
    for a split-head detector, segmentation or pose model with the workbook's demo for its task (add_task_demo).

    In rknn-toolkit2 2.5.0 codegen needs the model built in the same session (after load_rknn it
    refuses), so the model is rebuilt with convert.rebuild (every recorded option, disable_rules
    included) and exported as `model_name` in a scratch folder first; the demo's run.sh then names
    that file. No board is involved.
    """
    out_dir = Path(out_dir)
    scratch = out_dir.with_name(out_dir.name + ".work")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    meta = model_meta(record)
    demo = meta.get("task") in TASK_SOURCES and meta.get("head") == "split"
    image = codegen_input(record, image, scratch) if image else None
    try:
        with RKNN(log_path, workdir=scratch, auto_disable_rules=False) as rk:
            rebuild(rk, record)
            rk.export_rknn(str(scratch / model_name))
            rk.codegen(output_path=str(scratch / "cpp"), inputs=[str(Path(image).resolve())] if image else None, overwrite=True)
        if demo:
            add_task_demo(scratch / "cpp", meta)
        with atomic_path(out_dir) as tmp:
            (scratch / "cpp").replace(tmp)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    with_golden = " with a golden output for the sample image" if image else ""
    what = {"detect": "box decode", "segment": "box and mask decode (src/yolo_segment.h)",
            "pose": "box and keypoint decode (src/yolo_pose.h)"}.get(meta.get("task"), "")
    detect = (f"; plus the workbook's {meta['task']} demo {program(meta['task'])} (src/{meta['task']}_demo.cc: letterbox, "
              f"int8 outputs dequantized with their zero point and scale, {what} and per-class NMS (an end-to-end head: "
              f"top-k) over src/yolo_detect.h, run_{meta['task']}.sh)") if demo else ""
    return CppDemo(out_dir, f"generated by rk.codegen (model rebuilt from convert.json{with_golden}){detect}; "
                            "build it with the rknpu2 SDK and an aarch64 cross compiler (cpp/README_EN.md)")
