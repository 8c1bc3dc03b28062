"""The C++ demo project of the bundle: the toolkit's `codegen`, the workbook's one codegen function, and
for a split-head detector the workbook's own C++ decode (cpp/yolo_detect.h) and demo (cpp/detect_demo.cc)
added to that project as a second program, `rknn_detect_demo`."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from helpers.core.errors import WorkbookError
from helpers.core.paths import atomic_path
from helpers.steps.convert import rebuild
from helpers.steps.export.detect_head import decode_options, onnx_metadata
from helpers.tasks.feeds import model_input_npy
from helpers.tasks.preprocess import read_rgb
from helpers.toolkit.record import ConvertRecord
from helpers.toolkit.session import RKNN

CPP_DIR = Path(__file__).with_name("cpp")
DETECT_SOURCES = (CPP_DIR / "yolo_detect.h", CPP_DIR / "detect_demo.cc")
DEMO_SOURCES = (Path(__file__), *DETECT_SOURCES)  # what the generated cpp/ folder depends on besides the run (a cache input)
DETECT_PROGRAM = "rknn_detect_demo"
CMAKE_DETECT = f"""
# ---- added by the RKNN deployment workbook: the detector demo (src/detect_demo.cc + src/yolo_detect.h)
add_executable({DETECT_PROGRAM} src/detect_demo.cc)
target_include_directories({DETECT_PROGRAM} PRIVATE ${{STB}} ${{CMAKE_SOURCE_DIR}}/src)
target_link_libraries({DETECT_PROGRAM} ${{RKNN_RT_LIB}} ${{PTHREAD_LIB}} dl)
install(TARGETS {DETECT_PROGRAM} DESTINATION ./)
install(PROGRAMS ${{CMAKE_SOURCE_DIR}}/run_detect.sh DESTINATION ./)
install(FILES ${{CMAKE_SOURCE_DIR}}/../labels.txt DESTINATION ./)
install(DIRECTORY ${{CMAKE_SOURCE_DIR}}/../images DESTINATION ./ OPTIONAL)
"""
RUN_DETECT = f"""#!/bin/sh
# The workbook's detector demo on the bundle's sample images (after build_linux.sh and adb push).
ROOT_PWD=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH="$ROOT_PWD/lib/"
cd "$ROOT_PWD" && ./{DETECT_PROGRAM} model.rknn labels.txt images/* --conf 0.25 --iou 0.7{{end2end}}
"""


@dataclass
class CppDemo:
    """Outcome of the toolkit's codegen: the folder (or None) and a one-line note of what happened."""

    folder: Path | None
    note: str


def detector_head(record: ConvertRecord) -> str | None:
    """'split' or 'stock' when the converted model is a detector (its ONNX says so), else None."""
    if record.source.suffix.lower() != ".onnx" or not record.source.is_file():
        return None
    meta = onnx_metadata(record.source)
    if meta.get("task") != "detect":
        return None
    return meta.get("head") or "stock"


def end2end(record: ConvertRecord) -> bool:
    """Whether the converted detector has an end-to-end head (its ONNX says so): decoded by top-k, no NMS."""
    if record.source.suffix.lower() != ".onnx" or not record.source.is_file():
        return False
    return bool(decode_options(record.source).get("end2end"))


def add_detect_demo(folder: Path, end_to_end: bool = False) -> None:
    """Add the workbook's detector demo to a codegen project: the two sources into src/, a second
    executable (and its install rules) at the end of CMakeLists.txt, and run_detect.sh (with --end2end for
    an end-to-end head)."""
    cmake = folder / "CMakeLists.txt"
    if not cmake.is_file():
        raise WorkbookError(f"{folder} has no CMakeLists.txt, so it is not the toolkit's codegen project; "
                            "generate it with generate_cpp_demo (codegen=True in notebook 40).")
    (folder / "src").mkdir(exist_ok=True)
    for src in DETECT_SOURCES:
        shutil.copyfile(src, folder / "src" / src.name)
    text = cmake.read_text()
    if DETECT_PROGRAM not in text:
        cmake.write_text(text.rstrip("\n") + "\n" + CMAKE_DETECT)
    (folder / "run_detect.sh").write_text(RUN_DETECT.format(end2end=" --end2end" if end_to_end else ""))
    (folder / "run_detect.sh").chmod(0o755)


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
    for a split-head detector with the workbook's detector demo added (add_detect_demo).

    In rknn-toolkit2 2.5.0 codegen needs the model built in the same session (after load_rknn it
    refuses), so the model is rebuilt with convert.rebuild (every recorded option, disable_rules
    included) and exported as `model_name` in a scratch folder first; the demo's run.sh then names
    that file. No board is involved.
    """
    out_dir = Path(out_dir)
    scratch = out_dir.with_name(out_dir.name + ".work")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    detector = detector_head(record) == "split"
    image = codegen_input(record, image, scratch) if image else None
    try:
        with RKNN(log_path, workdir=scratch, auto_disable_rules=False) as rk:
            rebuild(rk, record)
            rk.export_rknn(str(scratch / model_name))
            rk.codegen(output_path=str(scratch / "cpp"), inputs=[str(Path(image).resolve())] if image else None, overwrite=True)
        if detector:
            add_detect_demo(scratch / "cpp", end2end(record))
        with atomic_path(out_dir) as tmp:
            (scratch / "cpp").replace(tmp)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    with_golden = " with a golden output for the sample image" if image else ""
    detect = (f"; plus the workbook's detector demo {DETECT_PROGRAM} (src/detect_demo.cc: letterbox, int8 outputs "
              "dequantized with their zero point and scale, box decode and per-class NMS (an end-to-end head: top-k) in "
              "src/yolo_detect.h, "
              "run_detect.sh)") if detector else ""
    return CppDemo(out_dir, f"generated by rk.codegen (model rebuilt from convert.json{with_golden}){detect}; "
                            "build it with the rknpu2 SDK and an aarch64 cross compiler (cpp/README_EN.md)")
