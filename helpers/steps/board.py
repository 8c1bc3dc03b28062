"""The board side: device discovery, target checks, the board runner for notebook 40 (open_board; the runner
itself is helpers.backends.board), performance, accuracy analysis with runtime columns. (What goes onto the board, the
deployment bundle and the C++ demo, lives in helpers.deploy; the sentences notebook 40 prints, in helpers.text.board.)

Everything that touches a board goes through helpers.toolkit.session.RKNN and fails with RknnError when the
board does not answer; nothing here fabricates a board result. Bad input (unknown device id, target
that does not match the model, unknown core mask) is a WorkbookError before any toolkit call.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from helpers.backends.board import (
    BoardRunner,
    Devices,
    Perf,
    explained,
)
from helpers.core.errors import WorkbookError
from helpers.core.paths import Run, write_json_atomic
from helpers.core.versions import toolkit_version
from helpers.deploy import chips
from helpers.steps.analysis import run_accuracy_analysis
from helpers.steps.convert import rebuild
from helpers.steps.evaluate import load_run, simulator_from_record
from helpers.steps.judge import analysis_inputs, judge_for
from helpers.tasks.classify.metric import EvalResult, topk_accuracy
from helpers.tasks.data import LabelledImages
from helpers.tasks.family import in_family
from helpers.tasks.feeds import fitted, model_input_npy
from helpers.tasks.identify import run_task
from helpers.tasks.measures import output_cosines
from helpers.tasks.preprocess import read_rgb
from helpers.toolkit.options import TARGET_PLATFORMS
from helpers.toolkit.record import ConvertRecord
from helpers.toolkit.session import RKNN

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn
    from matplotlib.figure import Figure

CORE_MASKS = list(chips.CORE_MASKS)  # auto, 0, 1, 2, 0_1, 0_1_2, all
DEVICES_JSON = "board/devices.json"


def save_json(path: str | Path, data: Any) -> Path:
    """Write a board result (perf.json, memory.json, metrics.json, model.json) atomically, numpy values as numbers."""
    return write_json_atomic(Path(path), data, default=jsonable)


def jsonable(value: Any) -> Any:
    """What json cannot write, as something it can: numpy scalars/arrays as numbers/lists, the rest as text."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


# ---------------------------------------------------------------- devices

def discover(log_path: str | Path) -> Devices:
    """Ask the toolkit for connected boards (adb and ntb); a failing adb is recorded, not raised."""
    try:
        with RKNN(log_path) as rk:
            adb, ntb = rk.list_devices()
    except Exception as exc:  # noqa: BLE001 - no adb at all is a finding for devices.json, not a crash
        return Devices([], [], str(exc).splitlines()[0])
    return Devices([str(d) for d in adb or []], [str(d) for d in ntb or []])


def save_devices(run: Run, devices: Devices, chosen: str | None) -> Path:
    """board/devices.json: what was found (possibly nothing), which device was chosen, when, with which toolkit."""
    return save_json(run.board / "devices.json", {
        "found": devices.found, "adb": devices.adb, "ntb": devices.ntb, "chosen": chosen,
        "error": devices.error or None, "status": devices.status_line(),
        "checked": time.strftime("%Y-%m-%d %H:%M:%S"), "toolkit_version": toolkit_version(),
    })


# ---------------------------------------------------------------- target checks

def model_platform(rknn_path: str | Path) -> str:
    """The chip a .rknn was built for, read from the description embedded in the file."""
    rknn_path = Path(rknn_path)
    if not rknn_path.is_file():
        raise WorkbookError(f"Model file {rknn_path} does not exist; run notebooks/20_convert.ipynb first or pass an "
                            "existing .rknn.")
    try:
        return chips.rknn_platform(rknn_path)
    except chips.RunnerError as exc:
        raise WorkbookError(str(exc)) from None


def resolve_target(target: str, rknn_path: str | Path, record: ConvertRecord | None = None) -> str:
    """The board target to use: `target`, checked against the platform written in the .rknn (and
    against convert.json when given); empty target = the model's own platform. A chip with the same
    NPU as the model's is accepted (e.g. rk3568 for a model built for rk3566: run_rknn.NPU_FAMILY)."""
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
    if chips.npu_family(target) != chips.npu_family(built_for):
        raise WorkbookError(
            f"target={target!r} does not match {rknn_path.name}, which was built for {built_for}; set target={built_for!r} "
            f"(or '') or convert again with target_platform={target!r} in notebooks/20_convert.ipynb."
        )
    return target


def core_mask_value(core_mask: str, target: str) -> int:
    """The toolkit's NPU core mask for a name (auto, 0, 1, 2, 0_1, 0_1_2, all) on this chip."""
    from rknn.api import RKNN as ToolkitApi  # the toolkit itself: slow to import, needed only for this mask value

    if core_mask not in chips.CORE_MASKS:
        raise WorkbookError(f"core_mask={core_mask!r} is unknown; use one of {', '.join(CORE_MASKS)}.")
    try:
        return chips.core_mask_value(ToolkitApi, core_mask, target)
    except chips.RunnerError as exc:
        raise WorkbookError(str(exc).replace("--core-mask ", "core_mask=")) from None


# ---------------------------------------------------------------- board backend

def open_board(rknn_path: str | Path, target: str, log_path: str | Path, device_id: str = "", core_mask: str = "auto",
               perf_debug: bool = False, eval_mem: bool = False, record: ConvertRecord | None = None,
               name: str | None = None) -> BoardRunner:
    """The .rknn on a real board (helpers.backends.board.BoardRunner), after checking the target against the model
    (resolve_target) and the core mask (core_mask_value); a record brings batches to the model's channel count."""
    rknn_path = Path(rknn_path)
    target = resolve_target(target, rknn_path, record)
    mask = core_mask_value(core_mask, target)
    channels = len(record.config.mean_values) if record else None
    return BoardRunner(rknn_path, target, mask, log_path, device_id, perf_debug, eval_mem, fitted(channels), name)


def board_accuracy_analysis(record: ConvertRecord, images: list[Path], out_dir: str | Path, target: str, device_id: str | None,
                            log_path: str | Path) -> list[Path]:
    """accuracy_analysis with target set, so error_analysis.txt gains the board's runtime columns; the
    model is rebuilt from convert.json (the analysis needs the float graph). One image per call, into
    out_dir/<NN>_<stem>/, exactly as the simulator path (analysis.run_accuracy_analysis). Returns the txt paths."""
    with RKNN(log_path, auto_disable_rules=False) as rk:
        rebuild(rk, record)
        with explained():
            return run_accuracy_analysis(rk, images, out_dir, target=target, device_id=device_id, progress=False)


@dataclass
class DetectOnBoard:
    """A detector on the board vs the simulator on the same letterboxed images: each scored with the
    judge's mAP50-95 (and output cosine to FP32), plus the board's outputs' cosine to the simulator's."""

    judge: Any  # helpers.tasks.detect.judge.DetectJudge
    simulator: Any  # helpers.tasks.scoring.Score
    board: Any
    cosines: np.ndarray  # per image, board outputs vs simulator outputs
    paired: Any  # helpers.tasks.noise.Paired: the board's mAP50-95 minus the simulator's, by the one noise rule
    sdk: str = ""

    def table(self) -> pd.DataFrame:
        """One row each for FP32 (ONNX Runtime), the INT8 simulator and the INT8 board."""
        rows = [("FP32 ONNX Runtime", self.judge.fp32), ("INT8 RKNN simulator", self.simulator), ("INT8 board", self.board)]
        return pd.DataFrame([{"backend": name, "mAP50-95": round(s.value, 4), "mAP50": round(s.agreement, 4),
                              "output cosine to FP32": round(s.mean_cosine, 5)} for name, s in rows]).set_index("backend")

    def summary(self) -> dict[str, Any]:
        """board/metrics.json of a detector: each score and the board-vs-simulator comparison."""
        return {"task": "detect", "images": self.judge.images, "fp32": self.judge.fp32.row(self.judge),
                "simulator": self.simulator.row(self.judge), "board": self.board.row(self.judge),
                "comparison": {"map50_95_delta_pt": round(100 * (self.board.value - self.simulator.value), 2),
                               "paired": self.paired.to_dict(), "mean_cosine": float(self.cosines.mean()),
                               "min_cosine": float(self.cosines.min())}}


def compare_detector(judge: Any, simulator_outputs: list, board_outputs: list, sdk: str = "") -> DetectOnBoard:
    """Score the simulator's and the board's raw outputs on the judge's images (same order) and compare them."""
    return DetectOnBoard(judge, judge.score(simulator_outputs), judge.score(board_outputs),
                         output_cosines(simulator_outputs, board_outputs), judge.paired(board_outputs, simulator_outputs), sdk)


def detector_on_board(run: Run, record: ConvertRecord, data_dir: Path, images: int, target: str, device_id: str | None,
                      core_mask: str = "auto") -> DetectOnBoard:
    """Notebook 40's board-vs-simulator section for a detector: the images notebook 30 scored (the first `images`
    of them, 0 = all) letterboxed once, run on the board (first, so a missing board stops before any rebuild) and
    in the simulator rebuilt from convert.json, both scored by the task's judge (box, mask or pose mAP50-95)."""
    scored = int(json.loads(run.need("eval/metrics.json", "30_simulator_inference.ipynb").read_text())["images"])  # 30's first N
    judge = judge_for(run, record, data_dir, min(images, scored) if images else scored)
    with open_board(run.rknn / "model.rknn", target, run.logs / "40_board.log", device_id=device_id or "",
                    core_mask=core_mask, record=record) as backend:
        on_board = backend.outputs(judge.pixels)
        sdk = backend.sdk_version()
    with simulator_from_record(record, run.logs / "40_simulator.log", batch=1) as sim:
        in_sim = sim.outputs(judge.pixels)
    return compare_detector(judge, in_sim, on_board, sdk)


def analysis_images(run: Run, record: ConvertRecord, data_dir: Path, n: int) -> list[Path]:
    """The first n images notebook 30 evaluated, as files accuracy_analysis reads: a classifier's own files, a
    detector's letterboxed (helpers.steps.judge.analysis_inputs, into board/analysis_inputs/)."""
    channels = len(record.config.mean_values or [0, 0, 0])
    if not in_family(run_task(run)):
        paths = list(notebook30_set(run, n)[0].paths)
        if channels == 3:
            return paths
        folder = run.board / "analysis_inputs"
        # a 1-channel model's input as .npy: the toolkit reads image files as 3 channels
        return [model_input_npy(read_rgb(p, record.input_size), channels, folder / f"{i:02d}_{Path(p).stem}.npy")
                for i, p in enumerate(paths)]
    return analysis_inputs(judge_for(run, record, data_dir, n), n, run.board / "analysis_inputs")


def notebook30_set(run: Run, n: int = 0) -> tuple[LabelledImages, EvalResult]:
    """The images notebook 30 evaluated (same files, same order; the first n when n > 0) and its
    stored INT8 simulator result on them, for the board-vs-simulator comparison."""
    preds = run.need("eval/predictions.npz", "30_simulator_inference.ipynb")
    metrics = run.need("eval/metrics.json", "30_simulator_inference.ipynb")
    z = np.load(preds)
    images = LabelledImages([Path(p) for p in z["paths"]], np.asarray(z["labels"]), [str(c) for c in z["classes"]])
    results, _, _ = load_run(metrics, preds)
    roles = [b.get("role") for b in json.loads(metrics.read_text()).get("backends", [])]
    if any(roles):  # metrics.json names each backend's role (fp32 / int8 / ...): the INT8 simulator is role int8
        sims = [r for r, role in zip(results, roles) if role == "int8"]
    else:  # written before roles existed: find it by name
        sims = [r for r in results if "simulator" in r.name.lower() and "bgr" not in r.name.lower()]
    if not sims:
        raise WorkbookError(f"{metrics} has no INT8 simulator result; re-run notebooks/30_simulator_inference.ipynb.")
    sim = sims[0]
    if n and n < len(images):
        images = LabelledImages(images.paths[:n], images.labels[:n], images.classes, images.root)
        sim = EvalResult(sim.name, sim.scores[:n], sim.labels[:n], topk_accuracy(sim.scores[:n], sim.labels[:n], 1),
                         topk_accuracy(sim.scores[:n], sim.labels[:n], 5), float("nan"), float("nan"))
    return images, sim


def plot_layer_times(perf: Perf, path: str | Path | None = None, top: int = 15) -> Figure | None:
    """Horizontal bars of the slowest layers from eval_perf's per-layer table (None when it has no time column)."""
    import matplotlib.pyplot as plt  # slow to import, needed only for this figure

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
