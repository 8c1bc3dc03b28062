"""The deployment bundle: board/deploy/ (models, labels, model.json, the runner with its chips.py, throughput.py and
instances.py, the workbook's preprocess.py and, for detect / segment / pose, its postprocess modules, README, optional C++
demo and example images) and board/deploy.tar.gz.

Folder and tarball are built under temporary names and swapped in together, so a failure at any
step leaves the previous bundle (folder and tarball) as it was.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.core.errors import WorkbookError
from helpers.core.paths import Run, atomic_path
from helpers.core.versions import toolkit_version
from helpers.deploy import chips, instances, run_rknn, throughput
from helpers.deploy.codegen import CppDemo
from helpers.deploy.meta import INSTANCE_TASKS, model_meta
from helpers.deploy.readme import render_readme
from helpers.steps.board import model_platform, save_json
from helpers.tasks.data import LabelledImages
from helpers.tasks.preprocess import match_channels, read_image
from helpers.toolkit.record import ConvertRecord

RUNNER = Path(run_rknn.__file__)
CHIPS = Path(chips.__file__)  # run_rknn.py imports it from beside itself on the board
THROUGHPUT = Path(throughput.__file__)  # the benchmark kit (--benchmark, --cores), imported the same way
INSTANCES = Path(instances.__file__)  # detect / segment / pose: decode, print and draw, imported the same way
PREPROCESS = Path(__file__).resolve().parents[1] / "tasks" / "preprocess.py"
POSTPROCESS = Path(__file__).resolve().parents[1] / "tasks" / "detect" / "postprocess.py"
# the task's own decode, shipped beside postprocess.py (which it imports on the board) under these names
TASK_POSTPROCESS = {"segment": ("postprocess_segment.py", POSTPROCESS.parents[1] / "segment" / "postprocess.py"),
                    "pose": ("postprocess_pose.py", POSTPROCESS.parents[1] / "pose" / "postprocess.py")}
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
    scoring below plain INT8 with the same calibration, or not measurably better than it by the workbook's noise
    rule (hybrid/chosen.json's vs_int8: float16 layers cost NPU time, so a hybrid must earn its place)."""
    chosen = run.root / CHOSEN_JSON
    record = json.loads(chosen.read_text()) if chosen.is_file() else {}
    if record.get("demo"):
        return "was built under demo calibration (set demo_calib_images = 0 in notebook 60 for a hybrid worth deploying)"
    if record.get("below_int8"):
        return ("scores below plain INT8 with the same calibration, so it would cost NPU time for nothing: INT8 is the "
                "model to deploy")
    paired = record.get("vs_int8")
    if isinstance(paired, dict) and paired.get("verdict") != "better":
        return (f"is not measurably better than plain INT8 on these images ({paired.get('text', '')}), so its float16 "
                "layers would cost NPU time for nothing: INT8 is the model to deploy")
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


def model_config(record: ConvertRecord, platform: str, labels: list[str], hybrid: bool,
                 cpp_demo: CppDemo | None) -> dict[str, Any]:
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
                 cpp_demo: CppDemo | None = None, sample_images: list[Path] | None = None, skeleton: Any = None) -> Bundle:
    """Assemble board/deploy/ and board/deploy.tar.gz under temporary names, then swap both in. A detector, segmentation
    or pose model (its ONNX says so) gets its decode modules and model.json's task, head, end2end (pose: kpt_shape and
    `skeleton`, chains of keypoint indices the runner draws lines along, else the model's own if its metadata has one)."""
    models = models or bundle_models(run)
    if not labels:
        raise WorkbookError("labels is empty; pass the class names (one per model output) so the runner can print them.")
    with atomic_path(run.board / "deploy", suffix=".partial") as tmp:
        tmp.mkdir()
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
        shutil.copyfile(CHIPS, tmp / "chips.py")
        shutil.copyfile(THROUGHPUT, tmp / "throughput.py")
        shutil.copyfile(INSTANCES, tmp / "instances.py")
        shutil.copyfile(PREPROCESS, tmp / "preprocess.py")  # the workbook's own module, byte for byte
        meta = model_meta(record, skeleton)
        if meta.get("task") in INSTANCE_TASKS:
            shutil.copyfile(POSTPROCESS, tmp / "postprocess.py")  # the decode notebook 30 measured, byte for byte
        if meta.get("task") in TASK_POSTPROCESS:
            name, src = TASK_POSTPROCESS[meta["task"]]
            shutil.copyfile(src, tmp / name)  # byte for byte; it imports the letterbox, DFL and NMS from postprocess.py
        if sample_images:
            (tmp / "images").mkdir()
            for p in sample_images:  # <class folder>_<file>: unique, and says what the image shows
                shutil.copyfile(p, tmp / "images" / example_name(p))
        if cpp_demo is not None and cpp_demo.folder is not None and cpp_demo.folder.is_dir():
            shutil.copytree(cpp_demo.folder, tmp / "cpp")
        config = model_config(record, platforms["model.rknn"], labels, "model_hybrid.rknn" in models, cpp_demo)
        config = {**config, **meta}
        save_json(tmp / "model.json", config)
        readme = render_readme(config, sorted(models), [example_name(p) for p in sample_images or []], cpp_demo)
        (tmp / "README.md").write_text(readme, encoding="utf-8")
        return publish(tmp, run.board / "deploy", config)


def publish(folder: Path, final: Path, config: dict[str, Any]) -> Bundle:
    """Write the tarball of the finished bundle folder (still under its temporary name, swapped in by the caller's
    atomic_path after this returns); a failure leaves the previous folder and tarball as they were."""
    files = {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    tarball = final.parent / "deploy.tar.gz"
    with atomic_path(tarball, suffix=".partial") as tmp_tar, tarfile.open(tmp_tar, "w:gz") as tar:
        tar.add(folder, arcname="deploy")
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
    with atomic_path(final, suffix=".partial") as tmp:
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
    channels = len(bundle.config.get("mean_values") or [0, 0, 0])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "inputs.npy"
        cmd = [sys.executable, str(bundle.folder / "run_rknn.py"), *map(str, images)]
        res = subprocess.run([*cmd, "--preprocess-only", str(out)], cwd=bundle.folder, capture_output=True, text=True,
                             timeout=300)
        if res.returncode != 0:
            raise WorkbookError(f"The bundle's runner failed on this PC ({res.stderr.strip()}); fix the input it names "
                                "and rebuild the bundle.")
        got = np.load(out)
    if bundle.config.get("task") in INSTANCE_TASKS:
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
