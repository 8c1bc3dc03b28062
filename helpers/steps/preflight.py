"""Pre-flight without a board: from a build's per-op profile, where ops run, whether the model fits, how fast it may be.

Reads helpers.toolkit.profile.BuildProfile (the toolkit's own verbose per-op table). The time is an ESTIMATE from the
toolkit's cycle model: total cycles / the chip's NPU clock, times a per-chip factor fitted against the rknn_model_zoo's
measured FPS (benchmarks/preflight_vs_zoo.py), with that fit's leave-one-model-out error as its band; a chip without a
useful fit gets no number. Sentences live in helpers.text.preflight; this module computes. `of_run` is notebook 20's
entry: it writes rknn/profile.csv and rknn/preflight.json (what the index page reads: facts, never a time).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.core.errors import WorkbookError
from helpers.core.paths import Run, atomic_path, write_json_atomic
from helpers.toolkit.profile import BuildProfile, read_profile

ZOO_CLOCKS = "rknn_model_zoo scaling_frequency.sh (the NPU clock the zoo's FPS table is measured at)"
# RV1103/RV1106 carry their DDR inside the package, so the RAM is fixed per chip variant. The figures below are those
# the Luckfox Pico boards (built on these chips) publish in their specifications; other boards' variants may differ.
IN_PACKAGE = ("DDR inside the chip's package, sizes as the Luckfox Pico boards' published specifications give them; "
              "check your board's own")
EXTERNAL = "external LPDDR on the board (boards ship with 1-32 GB)"


@dataclass(frozen=True)
class Chip:
    """Public facts about one target_platform: NPU clock (Hz) and the RAM variants a model must fit in (MB)."""

    name: str
    npu_hz: float
    ram_mb: dict[str, int] = field(default_factory=dict)  # variant -> MB, only where the RAM is in the package
    ram_source: str = EXTERNAL
    clock_source: str = ZOO_CLOCKS


CHIPS: dict[str, Chip] = {c.name: c for c in [
    Chip("rk3588", 1.0e9),
    Chip("rk3576", 1.0e9),
    Chip("rk3566", 1.0e9),
    Chip("rk3568", 1.0e9),
    Chip("rk3562", 1.0e9),
    Chip("rv1126b", 0.95e9),
    Chip("rv1106", 0.5e9, {"RV1106G2": 128, "RV1106G3": 256}, IN_PACKAGE),
    Chip("rv1103", 0.5e9, {"RV1103": 64}, IN_PACKAGE),
]}


@dataclass(frozen=True)
class Calibration:
    """A chip's fit of zoo time / raw estimate: the factor, the leave-one-model-out error range (estimate / zoo - 1)."""

    factor: float
    err_low: float
    err_high: float
    spearman: float
    models: int
    useful: bool


# Measured by benchmarks/preflight_vs_zoo.py (rknn-toolkit2 2.5.0, INT8, 8 zoo architectures at the zoo's sizes,
# 2026-12-06): factor, leave-one-model-out error range, Spearman rho, models, useful. Its rule, fixed before the run:
# useful = every leave-one-out error within +-50 % and rho >= 0.8. No chip met it: the workbook prints no number.
CALIBRATION: dict[str, Calibration] = {
    "rk3566": Calibration(2.427, -0.541, 0.603, 0.667, 8, False),
    "rk3562": Calibration(1.819, -0.441, 0.486, 0.69, 8, False),
    "rk3588": Calibration(1.845, -0.42, 0.462, 0.738, 8, False),
    "rk3576": Calibration(1.225, -0.322, 0.492, 0.667, 8, False),
}
CALIBRATION_SOURCE = "benchmarks/preflight_vs_zoo.py against the rknn_model_zoo README's FPS table"


@dataclass
class Estimate:
    """NPU time per inference from the cycle model; ms is None (and reason says why) where no fit is useful."""

    chip: str
    cycles: int
    raw_ms: float
    ms: float | None = None
    low_ms: float | None = None
    high_ms: float | None = None
    calibration: Calibration | None = None
    reason: str = ""

    @property
    def fps(self) -> float | None:
        return 1e3 / self.ms if self.ms else None


@dataclass
class Preflight:
    """Everything the pre-flight section shows for one build and one chip."""

    chip: str
    profile: BuildProfile
    cpu_ops: pd.DataFrame
    memory: pd.DataFrame
    heaviest: pd.DataFrame
    estimate: Estimate


def chip_facts(chip: str) -> Chip:
    """The Chip of a target_platform; WorkbookError listing the known ones."""
    facts = CHIPS.get(str(chip).lower())
    if facts is None:
        raise WorkbookError(f"target_platform {chip!r} has no pre-flight facts; use one of {', '.join(CHIPS)}.")
    return facts


def cpu_ops(profile: BuildProfile) -> pd.DataFrame:
    """The ops the toolkit placed on the CPU: id, type, name, shapes (empty when all run on the NPU)."""
    return profile.cpu_ops[["id", "op_type", "name", "input_shape", "output_shape"]].reset_index(drop=True)


def memory(profile: BuildProfile, chip: str) -> pd.DataFrame:
    """Weight + internal memory (the toolkit's totals, MB) against each RAM variant of the chip (share of it);
    one row with no RAM figure for chips whose RAM sits on the board."""
    facts = chip_facts(chip)
    weight, internal = (profile.weight_kb or 0) / 1024, (profile.internal_kb or 0) / 1024
    variants = facts.ram_mb or {f"{facts.name.upper()} board": None}
    return pd.DataFrame([{"variant": name, "ram_mb": ram, "weight_mb": round(weight, 2), "internal_mb": round(internal, 2),
                          "model_mb": round(weight + internal, 2), "share": (weight + internal) / ram if ram else None}
                         for name, ram in variants.items()])


def heaviest(profile: BuildProfile, top: int = 5) -> pd.DataFrame:
    """The top ops by total cycles with their share of the whole."""
    total = max(profile.total_cycles, 1)
    ops = profile.ops.nlargest(top, "total_cycles")[["id", "op_type", "name", "target", "total_cycles", "rw_kb"]]
    return ops.assign(share=ops["total_cycles"] / total).reset_index(drop=True)


def estimate(profile: BuildProfile, chip: str, calibration: dict[str, Calibration] | None = None) -> Estimate:
    """The NPU time per inference: cycles / clock x the chip's factor, band from its leave-one-out error; no number
    where the chip has no fit or its fit is not useful."""
    facts = chip_facts(chip)
    cal = (CALIBRATION if calibration is None else calibration).get(facts.name)
    cycles = profile.total_cycles
    raw = cycles / facts.npu_hz * 1e3
    est = Estimate(facts.name, cycles, raw, calibration=cal)
    if cal is None:
        est.reason = "no board measurements to calibrate the cycle model against for this chip"
    elif not cal.useful:
        est.reason = (f"on {cal.models} rknn_model_zoo models the cycle model, scaled by this chip's factor, missed the "
                      f"measured times by {cal.err_low:+.0%} to {cal.err_high:+.0%} (each model left out of the fit) and "
                      f"ranked them only loosely (Spearman {cal.spearman:.2f})")
    else:
        est.ms = raw * cal.factor
        # estimate / truth - 1 ranged over [err_low, err_high]: the truth lies in [ms / (1 + high), ms / (1 + low)]
        est.low_ms, est.high_ms = est.ms / (1 + cal.err_high), est.ms / (1 + cal.err_low)
    return est


def preflight(profile: BuildProfile, chip: str, top: int = 5) -> Preflight:
    """The pre-flight of one build for one chip."""
    return Preflight(chip_facts(chip).name, profile, cpu_ops(profile), memory(profile, chip), heaviest(profile, top),
                     estimate(profile, chip))


def write_profile(profile: BuildProfile, path: str | Path) -> Path:
    """The per-op table as CSV (rknn/profile.csv), written atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        profile.layers.to_csv(tmp, index=False)
    return path


def plot_cycles(profile: BuildProfile, chip: str = "", top: int = 5, ax=None):
    """Bars of total cycles per layer in graph order, from zero; the top heaviest named, CPU ops marked."""
    import matplotlib.pyplot as plt  # slow optional import, only when a figure is drawn

    if ax is None:
        _, ax = plt.subplots(figsize=(11, 3.6), layout="constrained")
    ops = profile.ops.reset_index(drop=True)
    ax.bar(ops.index, ops["total_cycles"] / 1e3, width=1.0, color="tab:blue", label="NPU op")
    cpu = ops[ops["target"] != "NPU"]
    if len(cpu):
        ax.plot(cpu.index, [0] * len(cpu), "v", color="tab:red", markersize=7, clip_on=False,
                label=f"on the CPU ({len(cpu)}: no cycles counted)")
    names = []
    for rank, i in enumerate(ops.nlargest(top, "total_cycles").index, 1):
        ax.annotate(str(rank), (i, ops.at[i, "total_cycles"] / 1e3), xytext=(0, 2), textcoords="offset points", ha="center",
                    fontsize=8, fontweight="bold")
        share = ops.at[i, "total_cycles"] / max(profile.total_cycles, 1)
        names.append(f"{rank}  {ops.at[i, 'op_type']} {ops.at[i, 'name'].split(':', 1)[-1][-34:]} ({share:.0%})")
    ax.text(1.01, 1.0, "heaviest layers\n" + "\n".join(names), transform=ax.transAxes, va="top", fontsize=8)
    ax.margins(y=0.12)
    ax.set_ylim(bottom=0)
    ax.set_xlim(-1, max(len(ops), 1))
    ax.set_xlabel("layer (graph order)")
    ax.set_ylabel("toolkit cycle model (thousand cycles)")
    share = ops["total_cycles"].nlargest(top).sum() / max(profile.total_cycles, 1)
    ax.set_title(f"Cycles by layer{' for ' + chip if chip else ''}: {profile.total_cycles / 1e6:.2f} M in all, "
                 f"the {top} heaviest {share:.0%}")
    ax.legend(loc="upper center", fontsize=8)
    return ax.figure


PROFILE_CSV = "rknn/profile.csv"
PREFLIGHT_JSON = "rknn/preflight.json"  # the index page's pre-flight figures: CPU ops and memory, never a time


def summary(pf: Preflight | None, chip: str, missing: str = "") -> dict[str, Any]:
    """The facts rknn/preflight.json keeps: the ops on the CPU (type, name), weight + internal memory (MB) and the
    chip's in-package RAM variants; or profile False and why. No time: no chip has a useful estimate."""
    if pf is None:
        return {"chip": str(chip).lower(), "profile": False, "missing": missing, "source": "rknn/build.log"}
    row = pf.memory.iloc[0]
    return {"chip": pf.chip, "profile": True, "source": "rknn/build.log", "ops": len(pf.profile.ops),
            "cpu_ops": [{"op_type": r.op_type, "name": r.name} for r in pf.cpu_ops.itertuples()],
            "weight_mb": float(row.weight_mb), "internal_mb": float(row.internal_mb), "model_mb": float(row.model_mb),
            "ram_mb": dict(chip_facts(pf.chip).ram_mb)}


def of_run(run: Run, chip: str, top: int = 5) -> tuple[Preflight | None, str]:
    """Notebook 20's pre-flight of the run's rknn/build.log for chip; writes rknn/profile.csv and rknn/preflight.json.
    (None, why) when the log holds no per-op profile (e.g. a .rknn reused from a run older than the pre-flight);
    a stale profile.csv is then removed, so no artifact describes another build."""
    try:
        profile = read_profile(run.rknn / "build.log")
    except WorkbookError as exc:
        (run.root / PROFILE_CSV).unlink(missing_ok=True)
        write_json_atomic(run.root / PREFLIGHT_JSON, summary(None, chip, str(exc)))
        return None, str(exc)
    pf = preflight(profile, chip, top)
    write_profile(profile, run.root / PROFILE_CSV)
    write_json_atomic(run.root / PREFLIGHT_JSON, summary(pf, chip))
    return pf, ""
