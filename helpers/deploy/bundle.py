"""The deployment bundle: board/deploy/ (models, labels, model.json, the runner, the workbook's
preprocess.py, README, optional C++ demo and example images) and board/deploy.tar.gz.

Folder and tarball are built under temporary names and swapped in together, so a failure at any
step leaves the previous bundle (folder and tarball) as it was.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import string
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.core.errors import WorkbookError
from helpers.core.paths import Run
from helpers.deploy import run_rknn as runner
from helpers.deploy.codegen import DETECT_PROGRAM, CppDemo, detector_head
from helpers.deploy.codegen import end2end as codegen_end2end
from helpers.steps.board import model_platform, save_json
from helpers.steps.convert import ConvertRecord
from helpers.tasks.data import LabelledImages
from helpers.toolkit.session import toolkit_version

RUNNER = Path(runner.__file__)
PREPROCESS = Path(__file__).resolve().parents[1] / "tasks" / "preprocess.py"
POSTPROCESS = Path(__file__).resolve().parents[1] / "tasks" / "detect" / "postprocess.py"
README_TEMPLATE = Path(__file__).with_name("README.template.md")
HYBRID_RKNN = "hybrid/model_hybrid.rknn"
CHOSEN_JSON = "hybrid/chosen.json"
_NOTE = re.compile(r"^(input|output) '([^']+)': (\w+) -> (\w+)$")


@dataclass
class Bundle:
    """The deploy folder, its tarball and what went in."""

    folder: Path
    tarball: Path
    files: dict[str, str]  # relative path -> sha256
    config: dict[str, Any]

    def table(self):
        """One row per top-level entry (folders summed: 'cpp/ (23 files)'), with sizes."""
        import pandas as pd

        groups: dict[str, list[int]] = {}
        for rel in sorted(self.files):
            top = rel.split("/", 1)[0] + ("/" if "/" in rel else "")
            groups.setdefault(top, []).append((self.folder / rel).stat().st_size)
        rows = [{"entry": k if not k.endswith("/") else f"{k} ({len(v)} files)", "bytes": sum(v)} for k, v in groups.items()]
        return pd.DataFrame(rows, columns=["entry", "bytes"])


def example_name(path: str | Path) -> str:
    """Name of an example image inside the bundle: '<class folder>_<file name>'."""
    path = Path(path)
    return f"{path.parent.name}_{path.name}"


def one_per_class(images: LabelledImages, n: int) -> list[Path]:
    """The first image of each class, in class order, at most n (example images for the bundle)."""
    firsts: dict[int, Path] = {}
    for path, label in zip(images.paths, [int(x) for x in images.labels]):
        firsts.setdefault(label, Path(path))
    return [firsts[k] for k in sorted(firsts)][: max(int(n), 0)]


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hybrid_kept_out(run: Run) -> str:
    """Why notebook 60's hybrid stays out of the bundle ("" when it may ship): built under demo calibration,
    or scoring below plain INT8 with the same calibration (hybrid/chosen.json)."""
    chosen = run.root / CHOSEN_JSON
    record = json.loads(chosen.read_text()) if chosen.is_file() else {}
    if record.get("demo"):
        return "was built under demo calibration (set demo_calib_images = 0 in notebook 60 for a hybrid worth deploying)"
    if record.get("below_int8"):
        return "scores below plain INT8 with the same calibration, so it would cost NPU time for nothing: INT8 is the model to deploy"
    return ""


def bundle_models(run: Run) -> dict[str, Path]:
    """The models to ship: rknn/model.rknn always, hybrid/model_hybrid.rknn when notebook 60 made it with
    real calibration and it scores at least plain INT8 (hybrid_kept_out says why not otherwise)."""
    models = {"model.rknn": run.need("rknn/model.rknn", "20_convert.ipynb")}
    hybrid = run.root / HYBRID_RKNN
    if hybrid.is_file() and not hybrid_kept_out(run):
        models["model_hybrid.rknn"] = hybrid
    return models


def io_dtypes(record: ConvertRecord) -> dict[str, str]:
    """The model's input/output tensor types as the build announced them ("input 'images'": "int8");
    {} when the toolkit announced no change (the tensors keep their float type)."""
    found: dict[str, str] = {}
    for note in record.dtype_notes:
        m = _NOTE.match(note.strip())
        if m:
            found[f"{m[1]} '{m[2]}'"] = m[4]
    return found


def rknnlite_snippet(config: dict[str, Any], image: str = "your_image.jpg", model: str | None = None) -> str:
    """The RKNNLite calls with this bundle's values: load_rknn, init_runtime(core_mask), inference, release."""
    size, order = config["input_size"], config["color_order"]
    convert = "" if order == "BGR" else ", cv2.COLOR_BGR2RGB"
    read = f"cv2.imread({image!r})" if order == "BGR" else f"cv2.cvtColor(cv2.imread({image!r}){convert})"
    outputs = config.get("io_dtypes") or {}
    out_note = "int8 inside the model, dequantized to float32 by RKNNLite" if any(
        k.startswith("output") and v.startswith("int") for k, v in outputs.items()) else "float32"
    return "\n".join([
        "import cv2",
        "import numpy as np",
        "from rknnlite.api import RKNNLite",
        *(["import postprocess   # the bundle's copy of helpers/tasks/detect/postprocess.py"] if config.get("task") == "detect" else []),
        "",
        "lite = RKNNLite()",
        f"assert lite.load_rknn({(model or config['model'])!r}) == 0",
        f"assert lite.init_runtime(core_mask=RKNNLite.NPU_CORE_AUTO) == 0   # {runner.core_mask_meaning('auto', config['target_platform'])}",
        f"img = {read}   # {order}, as the model was trained",
        *(detect_lines(size, image, bool(config.get("end2end"))) if config.get("task") == "detect" else [
            f"img = cv2.resize(img, ({size}, {size}))   # non-square images: resize the short side, crop the centre (preprocess.read_rgb)",
            f"outputs = lite.inference(inputs=[img[None]], data_format=['nhwc'])   # uint8, 1 x {size} x {size} x 3, NHWC",
            f"scores = np.asarray(outputs[0]).ravel()   # {config['classes']} scores, {out_note}",
            "print('class', int(scores.argmax()))"]),
        "lite.release()",
    ])


def detect_lines(size: int, image: str, end2end: bool = False) -> list[str]:
    """The detector part of the snippet: letterbox, inference, decode with the bundle's postprocess.py (an end-to-end
    head: end2end=True, top-k instead of NMS)."""
    return [
        f"canvas, lb = postprocess.letterbox(img, {size})   # aspect kept, grey padding: what the workbook measured",
        f"outputs = lite.inference(inputs=[canvas[None]], data_format=['nhwc'])   # uint8, 1 x {size} x {size} x 3; 3 outputs per stride",
        ("dets = postprocess.postprocess(outputs, lb, conf=0.25, end2end=True)   # top-k, no NMS (end-to-end head)" if end2end
         else "dets = postprocess.postprocess(outputs, lb, conf=0.25, iou=0.7)   # boxes in the original image's pixels"),
        "print(list(zip(dets.classes.tolist(), dets.scores.round(3).tolist())))",
    ]


def dtype_summary(config: dict[str, Any]) -> str:
    """The model's tensor types in a few words: "input 'images': int8; outputs: float (no change announced)"."""
    found = config.get("io_dtypes") or {}
    parts = [f"{name}: {dtype}" for name, dtype in found.items()]
    for kind in ("input", "output"):
        if not any(name.startswith(kind) for name in found):
            parts.append(f"{kind}s: float (no change announced)")
    return "; ".join(parts)


def describe_dtypes(config: dict[str, Any]) -> str:
    """One line on the model's real tensor types and what the Python API does about them."""
    found = config.get("io_dtypes") or {}
    if not found:
        return ("the build announced no dtype change, so inputs and outputs keep their float type; "
                "RKNNLite and the C API take the uint8 image and return float outputs.")
    listed = "; ".join([f"{name}: **{dtype}**" for name, dtype in found.items()] + dtype_summary(config).split("; ")[len(found):])
    return (f"{listed}. RKNNLite (and the C API without pass-through) quantize the uint8 image and "
            "dequantize the outputs to float for you; with pass-through you feed the quantized type yourself, "
            "using the model's scale and zero point.")


RUN_CLASSIFY = """```
cd /userdata/deploy
python3 run_rknn.py {sample}    # top-5 for one image
python3 run_rknn.py images/ --top-k 3    # a folder
python3 run_rknn.py {sample} --loops 100 --core-mask {mask}    # timing
```

Expected output (numbers depend on the image):
```
{first_line}
{sample}:
  1. <label>                0.9xxx  (class i)
  2. ...
```
"""
RUN_DETECT = """```
cd /userdata/deploy
python3 run_rknn.py images/    # every sample image: detections printed and drawn into detections/
python3 run_rknn.py {sample} --conf 0.5 --iou 0.5 --draw out/    # fewer, surer boxes; drawn into out/
python3 run_rknn.py {sample} --loops 100 --core-mask {mask}    # timing
```

Expected output (numbers depend on the image):
```
{first_line}
{sample}: 2 detection(s)
  <label>      0.912  box x1=31 y1=18 x2=77 y2=64
  <label>      0.874  box x1=102 y1=40 x2=150 y2=95
  drawn: detections/{name}
```

What it means: one line per object found, best first: the class name (from `labels.txt`), its score (0 to 1; only
scores above `--conf`, default 0.25, are kept) and the box corners in **the original image's pixels** (x1, y1 top
left; x2, y2 bottom right). Of two boxes of one class that overlap by IoU above `--iou` (default 0.7), only the
better one stays (non-maximum suppression). `--draw DIR` (default `detections/`, `''` for none) writes each image
with its boxes. The decode is `postprocess.py`, byte for byte the module notebook 30 measured mAP with.
"""
END2END = """
This model has an **end-to-end head** (YOLO26 or YOLOv10: one-to-one assignment, one box per object), so no
non-maximum suppression runs: the decode takes ultralytics' top-k instead (the 300 best anchors by class score, then
the 300 best box-and-class pairs among them, scores above `--conf`), on the CPU because the NPU has no TopK; `--iou`
does not apply. `model.json` says so (`"end2end": true`) and the runner reads it.
"""
WHY_SPLIT = """
## Why the split head

This detector has three outputs per stride (8, 16 and 32 pixels): the box regression (4 sides: DFL logits over 16 bins
for YOLOv8/11, plain distances for YOLO26), the class scores, and the sum of the class scores (clamped to 1), each a
tensor of its own. Ultralytics'
stock head concatenates the box coordinates (0 to {size} pixels) and the class scores (0 to 1) into one output; INT8
gives a tensor one scale, so on the NPU the scores round to 0 and the detections vanish, while that tensor's cosine to
FP32 still reads almost 1 (notebook 30 shows it on this model). Split, each output gets its own scale, and the sum
lets the decode skip empty cells cheaply. The runner and the C++ demo refuse a stock-head model in one sentence.
"""


def run_section(config: dict[str, Any], sample: str, mask: str) -> str:
    """How to run the Python runner and what it prints: top-k for a classifier, boxes for a detector."""
    platform = config["target_platform"]
    size = config["input_size"]
    first = (f"model {config['model']} ({platform}), input {size}x{size} {config['color_order']} uint8 NHWC, "
             f"core mask auto ({runner.core_mask_meaning('auto', platform)})")
    text = RUN_DETECT if config.get("task") == "detect" else RUN_CLASSIFY
    text = text.format(sample=sample, mask=mask, first_line=first, name=Path(sample).name)
    return text + END2END if config.get("end2end") else text


def input_note(config: dict[str, Any]) -> str:
    """The first bullet on the input: letterboxed for a detector, resized and centre-cropped for a classifier."""
    size, order = config["input_size"], config["color_order"]
    if config.get("task") == "detect":
        return (f"- {order} images **letterboxed** to {size}x{size}, uint8, NHWC: scaled to fit with the aspect ratio kept and "
                "padded with grey (114), exactly `postprocess.letterbox`; the boxes are mapped back to the original image.")
    swapped = " with R and B swapped" if order == "BGR" else ""
    return (f"- {order} images, resized (short side) and centre-cropped to {size}x{size}, uint8, NHWC:\n"
            f"  exactly what `preprocess.read_rgb` returns{swapped}. OpenCV reads BGR; the runner converts.")


def cpp_section(config: dict[str, Any], cpp_demo: CppDemo | None) -> str:
    """The README's C++ part: the toolkit's codegen demo, and for a detector the workbook's detector demo."""
    if not (cpp_demo and cpp_demo.folder):
        return ""
    text = ("\n## C++ demo (`cpp/`)\n\nGenerated by the toolkit's `codegen`. Build it on a PC with the rknpu2 SDK and an "
            "aarch64 cross compiler as `cpp/README_EN.md` describes, push the install folder to the board, copy "
            "`model.rknn` next to it and run `./run.sh`.\n")
    if config.get("task") != "detect" or not (Path(cpp_demo.folder) / "src" / "detect_demo.cc").is_file():
        return text
    selection = "the top-k of the end-to-end head (`--end2end`)" if config.get("end2end") else "per-class NMS"
    flag = " --end2end" if config.get("end2end") else ""
    return text + f"""
The codegen program (`rknn_app_demo`) runs the model and saves its raw outputs. The workbook adds **`{DETECT_PROGRAM}`**
(`src/detect_demo.cc`, decode in `src/yolo_detect.h`): it letterboxes each image like `postprocess.letterbox`, runs
the model with the rknn C API, takes each int8 output as the runtime gives it and dequantizes it with the zero point
and scale `rknn_query` reports, decodes the boxes (DFL, or plain distances), keeps class scores above `--conf`,
applies {selection} and prints the same lines as `run_rknn.py` (no drawing). The workbook's tests compile its decode on the PC and
compare it with `postprocess.py` on the same raw outputs; the program itself needs a board (and the SDK) to run.

```
export RKNPU2=/path/to/rknn-toolkit2/rknpu2        # librknnrt.so, rknn_api.h and examples/3rdparty/stb
cd cpp && ./build_linux.sh {config['target_platform']}     # aarch64-linux-gnu-g++ (or GCC_COMPILER=...)
adb push install/rknn_app_demo_Linux /userdata/cpp_demo
adb shell "cd /userdata/cpp_demo && ./run_detect.sh"
# run_detect.sh = ./{DETECT_PROGRAM} model.rknn labels.txt images/* --conf 0.25 --iou 0.7{flag}
```
"""


def render_readme(config: dict[str, Any], models: list[str], samples: list[str], cpp_demo: CppDemo | None) -> str:
    """The README inside the bundle, from README.template.md and this bundle's values."""
    platform = config["target_platform"]
    sample = f"images/{samples[0]}" if samples else "your_image.jpg"
    family = runner.npu_family(platform)  # chips with the same NPU run the model too
    masks = sorted(runner.CORE_MASKS_BY_CHIP.get(platform, {"auto"}))
    values = {
        **{k: config[k] for k in ("model", "target_platform", "toolkit_version", "classes", "input_size", "color_order",
                                  "mean_values", "std_values")},
        "models": " / ".join(models),
        "runs_on": " and ".join(sorted(c for c, f in runner.NPU_FAMILY.items() if f == family) or [platform]),
        "hybrid": ("\n`model_hybrid.rknn` is the hybrid-quantized variant (notebook 60, real calibration); run it with "
                   "`--model model_hybrid.rknn`.\n") if "model_hybrid.rknn" in models else "",
        "sample": sample,
        "run": run_section(config, sample, "0_1_2" if platform == "rk3588" else ("0_1" if platform == "rk3576" else "auto")),
        "auto_meaning": runner.core_mask_meaning("auto", platform),
        "needs_postprocess": " or `postprocess.py`" if config.get("task") == "detect" else "",
        "core_masks": (f" Other masks on {platform}: " + ", ".join(f"`{m}` = {runner.core_mask_meaning(m, platform)}"
                                                            for m in masks if m != "auto") + ".") if len(masks) > 1 else "",
        "snippet": rknnlite_snippet(config, sample),
        "detector": ("| postprocess.py | the workbook's detector decode (letterbox, distribution-to-box, score threshold, per-class NMS), "
                     "byte for byte the module notebook 30 measured mAP with; the runner prints each image's detections and draws "
                     "them into `detections/` (`--draw DIR`, `--conf`, `--iou`) |\n") if config.get("task") == "detect" else "",
        "input_note": input_note(config),
        "io_dtypes": describe_dtypes(config),
        "why_split": WHY_SPLIT.format(size=config["input_size"]) if config.get("task") == "detect" else "",
        "cpp": cpp_section(config, cpp_demo),
    }
    return string.Template(README_TEMPLATE.read_text(encoding="utf-8")).substitute(values)


def model_config(record: ConvertRecord, platform: str, labels: list[str], hybrid: bool, cpp_demo: CppDemo | None) -> dict[str, Any]:
    """model.json: what the runner and the README need to know about the model."""
    return {
        "model": "model.rknn",
        "hybrid_model": "model_hybrid.rknn" if hybrid else None,
        "target_platform": platform,
        "input_size": record.input_size,
        "input_layout": "NHWC",
        "input_dtype": "uint8",
        "color_order": "BGR" if record.config.quant_img_RGB2BGR else "RGB",
        "mean_values": record.config.mean_values,
        "std_values": record.config.std_values,
        "labels": "labels.txt",
        "classes": len(labels),
        "toolkit_version": record.toolkit_version or toolkit_version(),
        "io_dtypes": io_dtypes(record),
        "dtype_notes": record.dtype_notes,
        "cpp_demo": cpp_demo.note if cpp_demo else "not generated (codegen=False)",
        "built": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def build_bundle(run: Run, record: ConvertRecord, labels: list[str], models: dict[str, Path] | None = None,
                 cpp_demo: CppDemo | None = None, sample_images: list[Path] | None = None) -> Bundle:
    """Assemble board/deploy/ and board/deploy.tar.gz under temporary names, then swap both in."""
    models = models or bundle_models(run)
    if not labels:
        raise WorkbookError("labels is empty; pass the class names (one per model output) so the runner can print them.")
    tmp = run.board / "deploy.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        platforms = {name: model_platform(src) for name, src in models.items()}
        if platforms["model.rknn"] != record.config.target_platform:
            raise WorkbookError(
                f"rknn/model.rknn was built for {platforms['model.rknn']} but rknn/convert.json records "
                f"{record.config.target_platform}; re-run notebooks/20_convert.ipynb."
            )
        other = {n: p for n, p in platforms.items() if p != platforms["model.rknn"]}
        if other:
            raise WorkbookError(f"{', '.join(other)} was built for {', '.join(other.values())} but model.rknn for "
                                f"{platforms['model.rknn']}; re-run notebook 60 on this run so both target the same chip.")
        for name, src in models.items():
            shutil.copyfile(src, tmp / name)
        (tmp / "labels.txt").write_text("".join(f"{name}\n" for name in labels))
        shutil.copyfile(RUNNER, tmp / "run_rknn.py")
        shutil.copyfile(PREPROCESS, tmp / "preprocess.py")  # the workbook's own module, byte for byte
        detector = detector_head(record)
        if detector:
            shutil.copyfile(POSTPROCESS, tmp / "postprocess.py")  # the decode notebook 30 measured, byte for byte
        if sample_images:
            (tmp / "images").mkdir()
            for p in sample_images:  # <class folder>_<file>: unique, and says what the image shows
                shutil.copyfile(p, tmp / "images" / example_name(p))
        if cpp_demo is not None and cpp_demo.folder is not None and cpp_demo.folder.is_dir():
            shutil.copytree(cpp_demo.folder, tmp / "cpp")
        config = model_config(record, platforms["model.rknn"], labels, "model_hybrid.rknn" in models, cpp_demo)
        if detector:
            config = {**config, "task": "detect", "head": detector, "end2end": codegen_end2end(record)}
        save_json(tmp / "model.json", config)
        readme = render_readme(config, sorted(models), [example_name(p) for p in sample_images or []], cpp_demo)
        (tmp / "README.md").write_text(readme, encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return publish(tmp, run.board / "deploy", config)


def publish(tmp: Path, final: Path, config: dict[str, Any]) -> Bundle:
    """Write the tarball of the finished temporary folder under a temporary name, then swap folder and
    tarball in together; if anything fails before the swap, the previous folder and tarball stay."""
    files = {str(p.relative_to(tmp)): sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    tarball = final.parent / "deploy.tar.gz"
    tmp_tar = final.parent / "deploy.tar.gz.partial"
    old = final.parent / "deploy.old"
    try:
        with tarfile.open(tmp_tar, "w:gz") as tar:
            tar.add(tmp, arcname="deploy")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        try:
            tmp.rename(final)
            tmp_tar.replace(tarball)
        except BaseException:  # put the previous folder back beside the previous tarball
            if old.exists():
                shutil.rmtree(final, ignore_errors=True)
                old.rename(final)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        tmp_tar.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return Bundle(final, tarball, files, config)


def add_hybrid_to_bundle(run: Run, model: Path) -> Bundle | None:
    """Put notebook 60's hybrid .rknn into the bundle notebook 40 built (40 runs first in the series),
    after checking it targets the same chip; README, model.json and tarball are refreshed together.
    A hybrid that hybrid_kept_out refuses is not added, and one an earlier run shipped is taken out."""
    final = run.board / "deploy"
    if not (final / "model.json").is_file():
        print("board/deploy/ does not exist yet: run notebooks/40_board_inference.ipynb to build the bundle "
              "(it picks up hybrid/model_hybrid.rknn by itself).")
        return None
    config = json.loads((final / "model.json").read_text())
    why = hybrid_kept_out(run)
    if why:
        print(f"{Path(model).name} {why}; it stays out of the bundle.")
        if not (final / "model_hybrid.rknn").exists():
            return None
        return _republish(final, {k: v for k, v in config.items() if k != "hybrid_model"}, None)  # an earlier run's hybrid leaves
    platform = model_platform(model)
    if platform != config["target_platform"]:
        raise WorkbookError(f"{model} was built for {platform} but the bundle's model.rknn for {config['target_platform']}; "
                            f"re-run notebook 60 on a run converted for {config['target_platform']}.")
    return _republish(final, {**config, "hybrid_model": "model_hybrid.rknn"}, model)


def _republish(final: Path, config: dict[str, Any], hybrid: Path | None) -> Bundle:
    """The bundle again with `hybrid` as model_hybrid.rknn (None: without one), README and model.json rewritten."""
    tmp = final.parent / "deploy.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(final, tmp)
        if hybrid is not None:
            shutil.copyfile(hybrid, tmp / "model_hybrid.rknn")
        else:
            (tmp / "model_hybrid.rknn").unlink(missing_ok=True)
        config = {**config, "built": time.strftime("%Y-%m-%d %H:%M:%S")}
        save_json(tmp / "model.json", config)
        samples = sorted(p.name for p in (tmp / "images").iterdir()) if (tmp / "images").is_dir() else []
        cpp = CppDemo(tmp / "cpp" if (tmp / "cpp").is_dir() else None, config.get("cpp_demo", ""))
        models = sorted(p.name for p in tmp.glob("*.rknn"))
        (tmp / "README.md").write_text(render_readme(config, models, samples, cpp), encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return publish(tmp, final, config)


@dataclass
class RunnerCheck:
    """The bundle's runner tried on this PC: its input arrays vs the workbook's, and what a plain run says."""

    images: int
    identical: bool
    max_abs_diff: int
    plain_exit: int
    plain_output: str


def try_runner(bundle: Bundle, images: list[Path], size: int) -> RunnerCheck:
    """Run bundle/run_rknn.py as a subprocess from the bundle folder: once with --preprocess-only
    (compared bit for bit with helpers.tasks.preprocess.read_image in the model's channels and colour order, i.e. what
    notebook 30 fed the simulator), once plainly (on a PC without rknn-toolkit-lite2 it must say how
    to install it)."""
    import subprocess
    import sys
    import tempfile

    import numpy as np

    from helpers.tasks.preprocess import match_channels, read_image

    channels = len(bundle.config.get("mean_values") or [0, 0, 0])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "inputs.npy"
        cmd = [sys.executable, str(bundle.folder / "run_rknn.py"), *map(str, images)]
        res = subprocess.run([*cmd, "--preprocess-only", str(out)], cwd=bundle.folder, capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            raise WorkbookError(f"The bundle's runner failed on this PC ({res.stderr.strip()}); fix the input it names and rebuild the bundle.")
        got = np.load(out)
    if bundle.config.get("task") == "detect":
        from helpers.tasks.data import LabelledImages

        want = LabelledImages(list(images), np.zeros(len(images), np.int64), [], letterbox=True).load(size)
    else:
        want = np.stack([read_image(p, size, channels) for p in images])
    if channels == 3 and bundle.config.get("color_order") == "BGR":
        want = want[..., ::-1]
    want = match_channels(np.ascontiguousarray(want), channels)
    same = got.shape == want.shape and bool(np.array_equal(got, want))
    diff = int(np.abs(got.astype(int) - want.astype(int)).max()) if got.shape == want.shape else -1
    plain = subprocess.run(cmd[:3], cwd=bundle.folder, capture_output=True, text=True, timeout=300)
    return RunnerCheck(len(images), same, diff, plain.returncode, (plain.stdout + plain.stderr).strip())
