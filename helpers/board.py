"""The board side: device discovery and choice, target checks, a board backend for evaluate(),
performance and memory, accuracy analysis with runtime columns, and the deployment bundle.

Everything that touches a board goes through helpers.rknn.toolkit and fails with RknnError when the
board does not answer; nothing here fabricates a board result. Bad input (unknown device id, target
that does not match the model, unknown core mask) is a WorkbookError before any toolkit call.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .convert import TARGET_PLATFORMS, ConvertRecord, rebuild
from .deploy import run_rknn as runner
from .errors import RknnError, WorkbookError
from .evaluate import ToolkitSession
from .paths import Run, write_json_atomic
from .rknn import log_tail, toolkit, toolkit_version

CORE_MASKS = list(runner.CORE_MASKS)  # auto, 0, 1, 2, 0_1, 0_1_2, all
DEVICES_JSON = "board/devices.json"
HYBRID_RKNN = "hybrid/model_hybrid.rknn"
RUNNER = Path(runner.__file__)
PREPROCESS = Path(__file__).with_name("preprocess.py")
NO_BOARD_HINT = ("connect the board by USB OTG, check that `adb devices` lists it, and start rknn_server on the board "
                 "(checklist: notebooks/40_board_inference.ipynb)")


def _write_json(path: Path, data: Any) -> Path:
    """Atomic JSON that also turns numpy values into plain numbers."""
    return write_json_atomic(path, data, default=_jsonable)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


@contextlib.contextmanager
def explained() -> Any:
    """Board failures often reach Python as a bare 'RuntimeError'; re-raise them with the toolkit's own
    'E <call>: ...' reason from the log (e.g. 'no devices/emulators found') and, for device trouble,
    what to check."""
    try:
        yield
    except RknnError as exc:
        text = log_tail(exc.log_path, 400) if exc.log_path else ""
        prefix = f"E {exc.call}:"
        reasons = [ln[len(prefix):].strip() for ln in text.splitlines()
                   if ln.startswith(prefix) and "Traceback" not in ln and ln[len(prefix):].strip()]
        if not reasons:
            raise
        reason = reasons[-1]
        if any(w in reason.lower() for w in ("device", "adb", "rknn_server", "connect")):
            reason += f" ({NO_BOARD_HINT})"
        raise RknnError(exc.call, reason, exc.log_path, exc.log_tail) from exc


# ---------------------------------------------------------------- devices

@dataclass
class Devices:
    """What `list_devices()` reported: adb serials and ntb ids (both empty without a board)."""

    adb: list[str] = field(default_factory=list)
    ntb: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ids(self) -> list[str]:
        return [*self.adb, *self.ntb]

    @property
    def found(self) -> bool:
        return bool(self.ids)

    def table(self):
        """One row per device (id, transport) as a DataFrame; empty with the right columns when none."""
        import pandas as pd

        rows = [{"device_id": d, "transport": "adb"} for d in self.adb] + [{"device_id": d, "transport": "ntb"} for d in self.ntb]
        return pd.DataFrame(rows, columns=["device_id", "transport"])

    def status_line(self) -> str:
        """One line for the notebook: what was found, or 'no board found' and what to check."""
        if self.found:
            return f"{len(self.ids)} board(s) found: {', '.join(self.ids)}."
        why = f" (list_devices failed: {self.error})" if self.error else ""
        return f"No board found{why}: {NO_BOARD_HINT}; the board cells below are skipped and the bundle is still built."


def discover(log_path: str | Path) -> Devices:
    """Ask the toolkit for connected boards (adb and ntb); a failing adb is recorded, not raised."""
    try:
        with toolkit(log_path) as rk:
            adb, ntb = rk.list_devices()
    except Exception as exc:  # noqa: BLE001 - no adb at all is a finding for devices.json, not a crash
        return Devices([], [], str(exc).splitlines()[0])
    return Devices([str(d) for d in adb or []], [str(d) for d in ntb or []])


def choose_device(devices: Devices, device_id: str = "") -> str | None:
    """The device to use: device_id when it is connected, else the first found, else None (no board).

    A device_id that is not connected is a WorkbookError listing what is connected.
    """
    device_id = (device_id or "").strip()
    if device_id:
        if device_id not in devices.ids:
            have = ", ".join(devices.ids) if devices.ids else "none (no board found)"
            raise WorkbookError(
                f"device_id={device_id!r} is not connected (connected: {have}); pass one of those ids or device_id='' for the first board found."
            )
        return device_id
    return devices.ids[0] if devices.ids else None


def save_devices(run: Run, devices: Devices, chosen: str | None) -> Path:
    """board/devices.json: what was found (possibly nothing), which device was chosen, when, with which toolkit."""
    return _write_json(run.board / "devices.json", {
        "found": devices.found, "adb": devices.adb, "ntb": devices.ntb, "chosen": chosen,
        "error": devices.error or None, "status": devices.status_line(),
        "checked": time.strftime("%Y-%m-%d %H:%M:%S"), "toolkit_version": toolkit_version(),
    })


# ---------------------------------------------------------------- target checks

def model_platform(rknn_path: str | Path) -> str:
    """The chip a .rknn was built for, read from the description embedded in the file."""
    rknn_path = Path(rknn_path)
    if not rknn_path.is_file():
        raise WorkbookError(f"Model file {rknn_path} does not exist; run notebooks/20_convert.ipynb first or pass an existing .rknn.")
    try:
        return runner.rknn_platform(rknn_path)
    except runner.RunnerError as exc:
        raise WorkbookError(str(exc)) from None


def resolve_target(target: str, rknn_path: str | Path, record: ConvertRecord | None = None) -> str:
    """The board target to use: `target`, checked against the platform written in the .rknn (and
    against convert.json when given); empty target = the model's own platform."""
    rknn_path = Path(rknn_path)
    built_for = model_platform(rknn_path)
    if record is not None and record.config.target_platform != built_for:
        raise WorkbookError(
            f"{rknn_path.name} was built for {built_for} but rknn/convert.json records {record.config.target_platform}; "
            "the file was replaced after conversion, so re-run notebooks/20_convert.ipynb."
        )
    target = (target or "").strip().lower()
    if not target:
        return built_for
    if target not in TARGET_PLATFORMS:
        raise WorkbookError(f"target={target!r} is not a known Rockchip chip; use one of {', '.join(TARGET_PLATFORMS)}.")
    if target != built_for:
        raise WorkbookError(
            f"target={target!r} does not match {rknn_path.name}, which was built for {built_for}; set target={built_for!r} "
            f"(or '') or convert again with target_platform={target!r} in notebooks/20_convert.ipynb."
        )
    return target


def core_mask_value(core_mask: str, target: str) -> int:
    """The toolkit's NPU core mask for a name (auto, 0, 1, 2, 0_1, 0_1_2, all) on this chip."""
    from rknn.api import RKNN

    if core_mask not in runner.CORE_MASKS:
        raise WorkbookError(f"core_mask={core_mask!r} is unknown; use one of {', '.join(CORE_MASKS)}.")
    try:
        return runner.core_mask_value(RKNN, core_mask, target)
    except runner.RunnerError as exc:
        raise WorkbookError(str(exc).replace("--core-mask ", "core_mask=")) from None


# ---------------------------------------------------------------- board backend

class BoardBackend(ToolkitSession):
    """The .rknn on a real board through the toolkit (load_rknn + init_runtime with a target): an
    evaluate.Backend, scoring one image per call (the exported model has batch 1)."""

    def __init__(self, rknn_path: str | Path, target: str, log_path: str | Path, device_id: str = "",
                 core_mask: str = "auto", perf_debug: bool = False, eval_mem: bool = False,
                 record: ConvertRecord | None = None, name: str | None = None):
        self.rknn_path = Path(rknn_path)
        self.target = resolve_target(target, self.rknn_path, record)
        mask = core_mask_value(core_mask, self.target)
        self.name = name or f"INT8 board ({self.target})"
        self.log_path = Path(log_path)
        self.channels = len(record.config.mean_values) if record else None

        def setup(rk: Any) -> None:
            adb, ntb = rk.list_devices()
            self.device_id = choose_device(Devices(list(adb or []), list(ntb or [])), device_id)
            if self.device_id is None:
                raise WorkbookError(f"No board found for target={self.target!r}; {NO_BOARD_HINT}.")
            rk.load_rknn(str(self.rknn_path))
            with explained():
                rk.init_runtime(target=self.target, device_id=self.device_id, perf_debug=perf_debug,
                                eval_mem=eval_mem, core_mask=mask)

        self._open(self.log_path, setup)

    def run(self, batch_uint8_nhwc: np.ndarray) -> np.ndarray:
        with explained():
            outs = [np.asarray(self.rk.inference(inputs=[np.ascontiguousarray(x[None])], data_format="nhwc")[0], np.float32).ravel()
                    for x in self.fit_channels(batch_uint8_nhwc)]
        return np.stack(outs) if outs else np.zeros((0, 0), np.float32)

    def _log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def _log_since(self, start: int) -> str:
        from .rknn import _ANSI

        with open(self.log_path, "rb") as fh:
            fh.seek(start)
            return _ANSI.sub("", fh.read().decode("utf-8", "replace"))

    def perf(self) -> "Perf":
        """eval_perf on the board: per-layer table (when init_runtime had perf_debug=True) and FPS,
        keeping the returned structure and the table the toolkit printed (from its log) as they are."""
        start = self._log_size()
        with explained():
            raw = self.rk.eval_perf(is_print=True)
        return Perf.from_result(raw, self._log_since(start))

    def memory(self) -> dict[str, Any]:
        """eval_memory on the board (needs init_runtime with eval_mem=True)."""
        with explained():
            return dict(self.rk.eval_memory(is_print=True))

    def sdk_version(self) -> str:
        """Runtime (librknnrt) and driver versions as the board reports them."""
        return str(self.rk.get_sdk_version())



@dataclass
class Perf:
    """What eval_perf returned, kept whole, with a per-layer table and FPS when they can be found in it."""

    raw: Any
    layers: Any = None  # pandas DataFrame or None
    total_us: float | None = None
    printed: str = ""  # what eval_perf printed (its own formatted table)

    @property
    def fps(self) -> float | None:
        return 1e6 / self.total_us if self.total_us else None

    @classmethod
    def from_result(cls, raw: Any, printed: str = "") -> "Perf":
        """Look for a list of per-layer records and a total time (us) in the returned structure; when
        the structure has no total, take it from the printed 'Total ... Time(us): N' line."""
        import re

        import pandas as pd

        layers, total = None, None
        items = raw.items() if isinstance(raw, dict) else []
        for key, value in items:
            if layers is None and isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                layers = pd.DataFrame(value)
            if total is None and isinstance(value, (int, float)) and "total" in str(key).lower() and "time" in str(key).lower():
                total = float(value)
        if total is None:
            found = re.findall(r"Total[^\n:]*Time\(us\)\s*:\s*([0-9.]+)", printed)
            total = float(found[-1]) if found else None
        return cls(raw, layers, total, printed)

    def summary(self) -> dict[str, Any]:
        return {"total_us": self.total_us, "fps": self.fps, "layers": None if self.layers is None else len(self.layers),
                "raw": self.raw, "printed": self.printed}


def board_accuracy_analysis(record: ConvertRecord, images: list[Path], out_dir: str | Path, target: str, device_id: str,
                            log_path: str | Path) -> Path:
    """accuracy_analysis with target set, so error_analysis.txt gains the board's runtime columns;
    the model is rebuilt from its source (the analysis needs the float graph). Returns the txt path."""
    out_dir = Path(out_dir)
    with toolkit(log_path) as rk:
        rebuild(rk, record)
        with explained():
            rk.accuracy_analysis(inputs=[str(p) for p in images], output_dir=str(out_dir), target=target, device_id=device_id)
    return out_dir / "error_analysis.txt"


def skipped(what: str) -> str:
    """The line a board-only cell prints when there is no board (so the skip is visible in reports)."""
    line = f"[skipped: no board] {what} needs a connected board; see the 'No board found' line above."
    print(line)
    return line


def notebook30_set(run: Run, n: int = 0) -> tuple[Any, Any]:
    """The images notebook 30 evaluated (same files, same order; the first n when n > 0) and its
    stored INT8 simulator result on them, for the board-vs-simulator comparison."""
    from . import evaluate
    from .data import LabelledImages

    preds = run.need("eval/predictions.npz", "30_simulator_inference.ipynb")
    metrics = run.need("eval/metrics.json", "30_simulator_inference.ipynb")
    z = np.load(preds)
    images = LabelledImages([Path(p) for p in z["paths"]], np.asarray(z["labels"]), [str(c) for c in z["classes"]])
    results, _, _ = evaluate.load_run(metrics, preds)
    sims = [r for r in results if "simulator" in r.name.lower() and "bgr" not in r.name.lower()]
    if not sims:
        raise WorkbookError(f"{metrics} has no INT8 simulator result; re-run notebooks/30_simulator_inference.ipynb.")
    sim = sims[0]
    if n and n < len(images):
        images = LabelledImages(images.paths[:n], images.labels[:n], images.classes, images.root)
        sim = evaluate.EvalResult(sim.name, sim.scores[:n], sim.labels[:n], evaluate.topk_accuracy(sim.scores[:n], sim.labels[:n], 1),
                                  evaluate.topk_accuracy(sim.scores[:n], sim.labels[:n], 5), float("nan"), float("nan"))
    return images, sim


def one_per_class(images: Any, n: int) -> list[Path]:
    """The first image of each class, in class order, at most n (example images for the bundle)."""
    firsts: dict[int, Path] = {}
    for path, label in zip(images.paths, np.asarray(images.labels).tolist()):
        firsts.setdefault(int(label), Path(path))
    return [firsts[k] for k in sorted(firsts)][: max(int(n), 0)]


def plot_layer_times(perf: Perf, path: str | Path | None = None, top: int = 15):
    """Horizontal bars of the slowest layers from eval_perf's per-layer table (None when it has no time column)."""
    import matplotlib.pyplot as plt

    if perf.layers is None:
        return None
    cols = [c for c in perf.layers.columns if "time" in str(c).lower()]
    if not cols:
        return None
    df = perf.layers.assign(_t=lambda d: d[cols[0]].astype(float)).nlargest(top, "_t")
    name_col = next((c for c in df.columns if str(c).lower() in ("name", "fullname", "full_name", "op_type", "optype")), None)
    names = df[name_col].astype(str) if name_col else df.index.astype(str)
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(df) + 1.2))
    ax.barh(names[::-1], df["_t"][::-1], color="tab:green")
    ax.set_title(f"Slowest {len(df)} layers on the board" + (f" ({perf.fps:.0f} FPS overall)" if perf.fps else ""))
    ax.set_xlabel(f"{cols[0]} (as reported by eval_perf)")
    ax.set_ylabel("layer")
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


def save_json(path: str | Path, data: Any) -> Path:
    """Write a board result (perf.json, memory.json, metrics.json) atomically."""
    return _write_json(Path(path), data)


# ---------------------------------------------------------------- C++ demo (codegen)

@dataclass
class CppDemo:
    """Outcome of the toolkit's codegen: the folder (or None) and a one-line note of what happened."""

    folder: Path | None
    note: str


def generate_cpp_demo(record: ConvertRecord, out_dir: str | Path, log_path: str | Path, image: Path | None = None,
                      model_name: str = "model.rknn") -> CppDemo:
    """The C++ demo project from the toolkit's `codegen`, written to out_dir.

    In rknn-toolkit2 2.5.0 codegen needs the model built in the same session (after load_rknn it
    refuses), so the model is rebuilt from rknn/convert.json and exported as `model_name` in a
    scratch folder first; the demo's run.sh then names that file. No board is involved.
    """
    out_dir = Path(out_dir)
    scratch = out_dir.with_name(out_dir.name + ".work")
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        with toolkit(log_path, workdir=scratch) as rk:
            rebuild(rk, record)
            rk.export_rknn(str(scratch / model_name))
            rk.codegen(output_path=str(scratch / "cpp"), inputs=[str(image)] if image else None, overwrite=True)
        (scratch / "cpp").replace(out_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    with_golden = " with a golden output for the sample image" if image else ""
    return CppDemo(out_dir, f"generated by rk.codegen (model rebuilt from convert.json{with_golden}); "
                            "build it with the rknpu2 SDK and an aarch64 cross compiler (cpp/README_EN.md)")


# ---------------------------------------------------------------- deployment bundle

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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def bundle_models(run: Run) -> dict[str, Path]:
    """The models to ship: rknn/model.rknn always, hybrid/model_hybrid.rknn when notebook 60 made it."""
    models = {"model.rknn": run.need("rknn/model.rknn", "20_convert.ipynb")}
    hybrid = run.root / HYBRID_RKNN
    if hybrid.is_file():
        models["model_hybrid.rknn"] = hybrid
    return models


def build_bundle(run: Run, record: ConvertRecord, labels: list[str], models: dict[str, Path] | None = None,
                 cpp_demo: CppDemo | None = None, sample_images: list[Path] | None = None) -> Bundle:
    """Assemble board/deploy/ (models, labels, model.json, runner + the workbook's preprocess.py,
    README, optional C++ demo and sample images) in a temporary folder, swap it in, then write
    board/deploy.tar.gz under a temporary name and rename it: nothing half-written looks valid."""
    models = models or bundle_models(run)
    if not labels:
        raise WorkbookError("labels is empty; pass the class names (one per model output) so the runner can print them.")
    board = run.board
    final, tmp = board / "deploy", board / "deploy.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        platforms = {}
        for name, src in models.items():
            platforms[name] = model_platform(src)
            shutil.copyfile(src, tmp / name)
        if platforms["model.rknn"] != record.config.target_platform:
            raise WorkbookError(
                f"rknn/model.rknn was built for {platforms['model.rknn']} but rknn/convert.json records "
                f"{record.config.target_platform}; re-run notebooks/20_convert.ipynb."
            )
        other = {n: p for n, p in platforms.items() if p != platforms["model.rknn"]}
        if other:
            raise WorkbookError(f"{', '.join(other)} was built for {', '.join(other.values())} but model.rknn for "
                                f"{platforms['model.rknn']}; re-run notebook 60 on this run so both target the same chip.")
        (tmp / "labels.txt").write_text("".join(f"{name}\n" for name in labels))
        shutil.copyfile(RUNNER, tmp / "run_rknn.py")
        shutil.copyfile(PREPROCESS, tmp / "preprocess.py")  # the workbook's own module, byte for byte
        if sample_images:
            (tmp / "images").mkdir()
            for p in sample_images:  # <class folder>_<file>: unique, and says what the image shows
                shutil.copyfile(p, tmp / "images" / example_name(p))
        if cpp_demo is not None and cpp_demo.folder is not None and cpp_demo.folder.is_dir():
            shutil.copytree(cpp_demo.folder, tmp / "cpp")
        config = {
            "model": "model.rknn",
            "hybrid_model": "model_hybrid.rknn" if "model_hybrid.rknn" in models else None,
            "target_platform": platforms["model.rknn"],
            "input_size": record.input_size,
            "input_layout": "NHWC",
            "input_dtype": "uint8",
            "color_order": "BGR" if record.config.quant_img_RGB2BGR else "RGB",
            "mean_values": record.config.mean_values,
            "std_values": record.config.std_values,
            "labels": "labels.txt",
            "classes": len(labels),
            "toolkit_version": record.toolkit_version or toolkit_version(),
            "dtype_notes": record.dtype_notes,
            "cpp_demo": cpp_demo.note if cpp_demo else "not generated (codegen=False)",
            "built": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        _write_json(tmp / "model.json", config)
        (tmp / "README.md").write_text(bundle_readme(config, sorted(models), [example_name(p) for p in sample_images or []], cpp_demo))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _publish(tmp, final, config)


def _publish(tmp: Path, final: Path, config: dict[str, Any]) -> Bundle:
    """Swap the finished temporary folder in for board/deploy/, then write the tarball under a
    temporary name and rename it."""
    files = {str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    tarball = final.parent / "deploy.tar.gz"
    tmp_tar = final.parent / "deploy.tar.gz.partial"
    try:
        with tarfile.open(tmp_tar, "w:gz") as tar:
            tar.add(final, arcname="deploy")
        tmp_tar.replace(tarball)
    finally:
        tmp_tar.unlink(missing_ok=True)
    return Bundle(final, tarball, files, config)


def add_hybrid_to_bundle(run: Run, model: Path) -> Bundle | None:
    """Put notebook 60's hybrid .rknn into the bundle notebook 40 built (40 runs first in the series),
    after checking it targets the same chip; README, model.json and tarball are refreshed atomically."""
    final = run.board / "deploy"
    if not (final / "model.json").is_file():
        print("board/deploy/ does not exist yet: run notebooks/40_board_inference.ipynb to build the bundle "
              "(it picks up hybrid/model_hybrid.rknn by itself).")
        return None
    config = json.loads((final / "model.json").read_text())
    platform = model_platform(model)
    if platform != config["target_platform"]:
        raise WorkbookError(f"{model} was built for {platform} but the bundle's model.rknn for {config['target_platform']}; "
                            f"re-run notebook 60 on a run converted for {config['target_platform']}.")
    tmp = final.parent / "deploy.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(final, tmp)
        shutil.copyfile(model, tmp / "model_hybrid.rknn")
        config = {**config, "hybrid_model": "model_hybrid.rknn", "built": time.strftime("%Y-%m-%d %H:%M:%S")}
        _write_json(tmp / "model.json", config)
        samples = sorted(p.name for p in (tmp / "images").iterdir()) if (tmp / "images").is_dir() else []
        cpp = CppDemo(tmp / "cpp" if (tmp / "cpp").is_dir() else None, config.get("cpp_demo", ""))
        models = sorted(p.name for p in tmp.glob("*.rknn"))
        (tmp / "README.md").write_text(bundle_readme(config, models, samples, cpp))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _publish(tmp, final, config)


def bundle_readme(cfg: dict[str, Any], models: list[str], samples: list[str], cpp_demo: CppDemo | None) -> str:
    """The README inside the bundle: copy, install, run, what the output looks like."""
    version = cfg["toolkit_version"]
    sample = f"images/{samples[0]}" if samples else "your_image.jpg"
    hybrid = ("\n`model_hybrid.rknn` is the hybrid-quantized variant (notebook 60); run it with "
              "`--model model_hybrid.rknn`.\n") if "model_hybrid.rknn" in models else ""
    notes = "".join(f"\n- the toolkit changed the {n}" for n in cfg.get("dtype_notes") or [])
    cpp = ("\n## C++ demo (`cpp/`)\n\nGenerated by the toolkit's `codegen`. Build it on a PC with the rknpu2 SDK and an "
           "aarch64 cross compiler as `cpp/README_EN.md` describes, push the install folder to the board, copy "
           "`model.rknn` next to it and run `./run.sh`.\n") if cpp_demo and cpp_demo.folder else ""
    return f"""# Deployment bundle: {cfg['model']} for {cfg['target_platform']}

Made by the RKNN deployment workbook (notebook 40) with rknn-toolkit2 {version}.

| file | what |
|---|---|
| {' / '.join(models)} | the model(s), built for **{cfg['target_platform']}** only |
| labels.txt | {cfg['classes']} class names, one per output |
| model.json | input size, colour order, mean/std, toolkit version (read by the runner) |
| run_rknn.py | the runner (rknn-toolkit-lite2) |
| preprocess.py | the workbook's own preprocessing module, imported by the runner |
{hybrid}
## 1. Copy to the board

```
adb push deploy /userdata/deploy        # or: scp -r deploy user@board:~/
```

## 2. Install the lite runtime on the board (once)

```
python3 -m pip install rknn-toolkit-lite2=={version} numpy opencv-python-headless
strings /usr/lib/librknnrt.so | grep -i "librknnrt version"     # must say {version}
```
rknn-toolkit-lite2 exists for aarch64 boards only. If librknnrt.so is older than the toolkit that
built the model, loading fails (for example "Invalid RKNN model version 6"): update librknnrt.so.

## 3. Run

```
cd /userdata/deploy
python3 run_rknn.py {sample}                       # top-5 for one image
python3 run_rknn.py images/ --top-k 3              # a folder
python3 run_rknn.py {sample} --loops 100 --core-mask 0_1_2   # timing (rk3588: 3 cores)
```

Expected output (numbers depend on the image):
```
model model.rknn ({cfg['target_platform']}), input {cfg['input_size']}x{cfg['input_size']} RGB uint8 NHWC, core mask auto
{sample}:
  1. <label>                0.9xxx  (class i)
  2. ...
```

## Input: what the model expects

- {cfg['color_order']} images, resized (short side) and centre-cropped to {cfg['input_size']}x{cfg['input_size']}, uint8, NHWC:
  exactly what `preprocess.read_rgb` returns. OpenCV reads BGR; the runner converts.
- mean {cfg['mean_values']} and std {cfg['std_values']} are applied **inside** the model by the NPU: do not normalise.
- The model's own input/output tensors are INT8. RKNNLite (and the C API without pass-through)
  quantize the uint8 image and dequantize the outputs to float for you; with pass-through you
  must feed int8 already quantized with the model's scale and zero point.{notes}
- `--preprocess-only out.npy` writes the exact array the runner would feed, to compare with the PC.
{cpp}"""


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
    (compared bit for bit with helpers.preprocess.read_rgb, i.e. what notebook 30 fed the simulator),
    once plainly (on a PC without rknn-toolkit-lite2 it must say how to install it)."""
    import subprocess
    import sys
    import tempfile

    from .preprocess import read_image

    channels = len(json.loads((bundle.folder / "model.json").read_text()).get("mean_values") or [0, 0, 0])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "inputs.npy"
        cmd = [sys.executable, str(bundle.folder / "run_rknn.py"), *map(str, images)]
        res = subprocess.run([*cmd, "--preprocess-only", str(out)], cwd=bundle.folder, capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            raise RuntimeError(f"the bundle's runner failed on this PC: {res.stderr.strip()}")
        got = np.load(out)
    want = np.stack([read_image(p, size, channels) for p in images])
    same = got.shape == want.shape and bool(np.array_equal(got, want))
    diff = int(np.abs(got.astype(int) - want.astype(int)).max()) if got.shape == want.shape else -1
    plain = subprocess.run(cmd[:3], cwd=bundle.folder, capture_output=True, text=True, timeout=300)
    return RunnerCheck(len(images), same, diff, plain.returncode, (plain.stdout + plain.stderr).strip())
