"""The README inside the deployment bundle and the code snippets notebook 40 shows: how to copy, install and run
the bundle on the board, with this bundle's model, chip, input and tensor types filled in."""
from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from helpers.deploy import chips, readme_instances, throughput
from helpers.deploy.codegen import CppDemo, demo_options, program
from helpers.deploy.meta import INSTANCE_TASKS

README_TEMPLATE = Path(__file__).with_name("README.template.md")


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
        *(["import postprocess   # the bundle's copy of helpers/tasks/detect/postprocess.py"]
          if config.get("task") in INSTANCE_TASKS else []),
        *([f"import postprocess_{config['task']}   # the bundle's copy of helpers/tasks/{config['task']}/postprocess.py"]
          if config.get("task") in ("segment", "pose") else []),
        "",
        "lite = RKNNLite()",
        f"assert lite.load_rknn({(model or config['model'])!r}) == 0",
        "assert lite.init_runtime(core_mask=RKNNLite.NPU_CORE_AUTO) == 0   # "
        f"{chips.core_mask_meaning('auto', config['target_platform'])}",
        f"img = {read}   # {order}, as the model was trained",
        *(readme_instances.snippet_lines(config, size) if config.get("task") in ("segment", "pose") else
          detect_lines(size, image, bool(config.get("end2end"))) if config.get("task") == "detect" else [
            f"img = cv2.resize(img, ({size}, {size}))   # non-square images: resize the short side, crop the centre "
            "(preprocess.read_rgb)",
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
        f"outputs = lite.inference(inputs=[canvas[None]], data_format=['nhwc'])   # uint8, 1 x {size} x {size} x 3; 3 "
        "outputs per stride",
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
python3 run_rknn.py {sample} --benchmark 200 --core-mask {mask}    # latency and FPS (section 5)
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
python3 run_rknn.py {sample} --benchmark 200 --core-mask {mask}    # latency and FPS (section 5)
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


BENCHMARK = """
## 5. Benchmark: latency and frames per second

```
python3 run_rknn.py {sample} --benchmark 200                 # {warmup} warm-up runs, then 200 timed ones
python3 run_rknn.py {sample} --benchmark 200 --warmup 20     # more warm-up{cores_line}
```

The runner first runs the image(s) as usual, then times `RKNNLite.inference` on the first image's preprocessed input:
mean, p50, p90 and p99 latency in ms (min and max too) and frames per second. **Inference only**: reading,
preprocessing and post-processing are not timed, and the Python call is (the C API the zoo measures with is faster).
{cores_text}
Without a board the workbook prints no board FPS (notebook 40 measures with `eval_perf` only on a connected board),
and its pre-flight (notebook 20) shows no time estimate: the toolkit's cycle model missed the zoo's figures by too much.
These commands are how you measure it, on the board.

**Pin the clocks first.** The NPU, CPU and DDR frequencies follow the load (DVFS), so an unpinned run is slower and
noisier. The runner prints the NPU's governor and frequency when the kernel exposes them. As root on the board:

```
ls /sys/class/devfreq/                   # the NPU's entry has npu in its name (e.g. <address>.npu); DDR's is often dmc
cd /sys/class/devfreq/*npu*              # that entry
cat available_governors available_frequencies
echo performance > governor              # holds the maximum frequency
cat cur_freq                             # check it took
echo performance | tee /sys/devices/system/cpu/cpufreq/policy*/scaling_governor    # the CPU
```

Without a `performance` governor: `echo userspace > governor`, then write the highest of `available_frequencies` to
`userspace/set_freq` in the same folder; DDR's entry takes the same. The entry's name differs by chip and kernel (some
vendor kernels have none for the NPU, or cap the maximum in firmware), so find it with `ls` as above rather than
copying a path from elsewhere. rknn_model_zoo ships `scaling_frequency.sh` (`scaling_frequency.sh -c {platform}`),
which pins CPU, DDR and NPU for each chip it knows and reports whether each setting took. On chips with big and little
CPU cores (RK3588, RK3576) run the benchmark on the big ones: the cores with the highest
`cat /sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq`, then `taskset -c <those cores> python3 run_rknn.py ...`.

**Comparing with rknn_model_zoo's table.** The zoo's published FPS are measured with CPU, DDR and NPU pinned to their
maximum frequency, with the C API, timing the inference call (`rknn_run`) only: no pre- or post-processing, nothing
else loading the board, single core unless the table says otherwise. A figure from a run without pinned clocks, with
pre/post-processing, or from Python, is lower; that is not a fault of the model.
"""
CORES_LINE = "\npython3 run_rknn.py {sample} --benchmark 200 --cores {cores}     # one context per NPU core, all at once"
CORES_TEXT = """
`--cores {cores}` opens one RKNNLite context per NPU core ({platform} has {n}; each pinned with `core_mask =
RKNNLite.NPU_CORE_<n>`), drives them from a thread pool with the same input, starts their timed runs together and
reports each core's latency and FPS and the FPS of all cores together (inferences / wall time): the throughput of a
pipeline that keeps every core busy with its own frame. `--core-mask 0_1_2` instead splits **one** inference over
several cores; how much that helps depends on the model. A core number the chip does not have is refused in one line.
"""


def benchmark_section(config: dict[str, Any], sample: str) -> str:
    """The README's benchmark section: --benchmark, --cores on a multi-core chip, pinning the clocks, the zoo's terms."""
    platform = config["target_platform"]
    cores = throughput.npu_cores(platform)
    listed = ",".join(map(str, cores))
    multi = len(cores) > 1
    return BENCHMARK.format(
        sample=sample, platform=platform, warmup=throughput.DEFAULT_WARMUP,
        cores_line=CORES_LINE.format(sample=sample, cores=listed) if multi else "",
        cores_text=CORES_TEXT.format(cores=listed, platform=platform, n=len(cores)) if multi else
        f"\n{platform} has one NPU core, so `--cores` does not apply (the runner says so if you try).\n")


def run_section(config: dict[str, Any], sample: str, mask: str) -> str:
    """How to run the Python runner and what it prints: top-k for a classifier, boxes (masks, keypoints) otherwise."""
    platform = config["target_platform"]
    size = config["input_size"]
    first = (f"model {config['model']} ({platform}), input {size}x{size} {config['color_order']} uint8 NHWC, "
             f"core mask auto ({chips.core_mask_meaning('auto', platform)})")
    text = (readme_instances.run_text(config) if config.get("task") in ("segment", "pose")
            else RUN_DETECT if config.get("task") == "detect" else RUN_CLASSIFY)
    text = text.format(sample=sample, mask=mask, first_line=first, name=Path(sample).name)
    return text + END2END if config.get("end2end") else text


def input_note(config: dict[str, Any]) -> str:
    """The first bullet on the input: letterboxed for detect / segment / pose, resized and centre-cropped for a classifier."""
    size, order = config["input_size"], config["color_order"]
    if config.get("task") in INSTANCE_TASKS:
        mapped = {"segment": "boxes and masks", "pose": "boxes and keypoints"}.get(config["task"], "boxes")
        return (f"- {order} images **letterboxed** to {size}x{size}, uint8, NHWC: scaled to fit with the aspect ratio kept and "
                f"padded with grey (114), exactly `postprocess.letterbox`; the {mapped} are mapped back to the original image.")
    swapped = " with R and B swapped" if order == "BGR" else ""
    return (f"- {order} images, resized (short side) and centre-cropped to {size}x{size}, uint8, NHWC:\n"
            f"  exactly what `preprocess.read_rgb` returns{swapped}. OpenCV reads BGR; the runner converts.")


def cpp_section(config: dict[str, Any], cpp_demo: CppDemo | None) -> str:
    """The README's C++ part: the toolkit's codegen demo, and for detect / segment / pose the workbook's demo of the task."""
    if not (cpp_demo and cpp_demo.folder):
        return ""
    text = ("\n## C++ demo (`cpp/`)\n\nGenerated by the toolkit's `codegen`. Build it on a PC with the rknpu2 SDK and an "
            "aarch64 cross compiler as `cpp/README_EN.md` describes, push the install folder to the board, copy "
            "`model.rknn` next to it and run `./run.sh`.\n")
    task = config.get("task")
    if task not in INSTANCE_TASKS or not (Path(cpp_demo.folder) / "src" / f"{task}_demo.cc").is_file():
        return text
    selection = "the top-k of the end-to-end head (`--end2end`)" if config.get("end2end") else "per-class NMS"
    flag, prog, what = demo_options(config), program(task), readme_instances.CPP_WHAT[task]
    return text + f"""
The codegen program (`rknn_app_demo`) runs the model and saves its raw outputs. The workbook adds **`{prog}`**
(`src/{task}_demo.cc`, decode in `src/yolo_detect.h`): it letterboxes each image like `postprocess.letterbox`, runs
the model with the rknn C API, takes each int8 output as the runtime gives it and dequantizes it with the zero point
and scale `rknn_query` reports, {what}, keeps class scores above `--conf`,
applies {selection} and prints the same lines as `run_rknn.py` (no drawing). The workbook's tests compile its decode on the PC and
compare it with the bundle's Python decode on the same raw outputs; the program itself needs a board (and the SDK) to run.

```
export RKNPU2=/path/to/rknn-toolkit2/rknpu2        # librknnrt.so, rknn_api.h and examples/3rdparty/stb
cd cpp && ./build_linux.sh {config['target_platform']}     # aarch64-linux-gnu-g++ (or GCC_COMPILER=...)
adb push install/rknn_app_demo_Linux /userdata/cpp_demo
adb shell "cd /userdata/cpp_demo && ./run_{task}.sh"
# run_{task}.sh = ./{prog} model.rknn labels.txt images/* --conf 0.25 --iou 0.7{flag}
```
"""


def render_readme(config: dict[str, Any], models: list[str], samples: list[str], cpp_demo: CppDemo | None) -> str:
    """The README inside the bundle, from README.template.md and this bundle's values."""
    platform = config["target_platform"]
    sample = f"images/{samples[0]}" if samples else "your_image.jpg"
    family = chips.npu_family(platform)  # chips with the same NPU run the model too
    masks = sorted(chips.CORE_MASKS_BY_CHIP.get(platform, {"auto"}))
    values = {
        **{k: config[k] for k in ("model", "target_platform", "toolkit_version", "classes", "input_size", "color_order",
                                  "mean_values", "std_values")},
        "models": " / ".join(models),
        "runs_on": " and ".join(sorted(c for c, f in chips.NPU_FAMILY.items() if f == family) or [platform]),
        "hybrid": ("\n`model_hybrid.rknn` is the hybrid-quantized variant (notebook 60, real calibration); run it with "
                   "`--model model_hybrid.rknn`.\n") if "model_hybrid.rknn" in models else "",
        "sample": sample,
        "run": run_section(config, sample, "0_1_2" if platform == "rk3588" else ("0_1" if platform == "rk3576" else "auto")),
        "auto_meaning": chips.core_mask_meaning("auto", platform),
        "needs_postprocess": {"detect": " or `postprocess.py`", "segment": ", `postprocess.py` or `postprocess_segment.py`",
                              "pose": ", `postprocess.py` or `postprocess_pose.py`"}.get(config.get("task"), ""),
        "core_masks": (f" Other masks on {platform}: " + ", ".join(f"`{m}` = {chips.core_mask_meaning(m, platform)}"
                                                            for m in masks if m != "auto") + ".") if len(masks) > 1 else "",
        "snippet": rknnlite_snippet(config, sample),
        "detector": ("| postprocess.py | the workbook's detector decode (letterbox, distribution-to-box, score "
                     "threshold, per-class NMS), "
                     "byte for byte the module notebook 30 measured mAP with; the runner prints each image's "
                     "detections and draws "
                     "them into `detections/` (`--draw DIR`, `--conf`, `--iou`) |\n"
                     + readme_instances.FILES.get(config.get("task"), "")) if config.get("task") in INSTANCE_TASKS else "",
        "input_note": input_note(config),
        "io_dtypes": describe_dtypes(config),
        "why_split": (WHY_SPLIT.format(size=config["input_size"]) if config.get("task") == "detect"
                      else readme_instances.outputs_section(config)),
        "cpp": cpp_section(config, cpp_demo),
        "benchmark": benchmark_section(config, sample),
    }
    return string.Template(README_TEMPLATE.read_text(encoding="utf-8")).substitute(values)
