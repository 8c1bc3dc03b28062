"""The pre-flight section's sentences (notebook 20): ops on the CPU, memory against the chip, the time estimate.

Computed from helpers.steps.preflight results; every time figure is said to be an estimate of the toolkit's cycle
model with its measured error band, never a measurement.
"""
from __future__ import annotations

from collections import Counter

from helpers.steps.preflight import CALIBRATION_SOURCE, Estimate, Preflight, chip_facts

WHY_CPU = ("Each one hands its tensor from the NPU to the CPU and back on every inference: the CPU runs it in its own "
           "(often float) code, the copies cost memory bandwidth, and the cycle model counts none of that time. Common "
           "fixes: cut the graph before these ops and run them in post-processing (the model zoo does this for YOLO "
           "heads), or pick a chip that keeps them on the NPU.")


def cpu_text(pf: Preflight) -> str:
    """Which ops run on the CPU (named), and why it matters; says so when there are none."""
    chip = pf.chip.upper()
    if pf.cpu_ops.empty:
        return f"**No op runs on the CPU** for {chip}: the toolkit placed the whole graph on the NPU."
    counts = Counter(pf.cpu_ops["op_type"])
    kinds = ", ".join(f"{t} x{n}" if n > 1 else t for t, n in counts.items())
    names = ", ".join(f"`{n.split(':', 1)[-1]}`" for n in pf.cpu_ops["name"].head(6))
    more = f" and {len(pf.cpu_ops) - 6} more" if len(pf.cpu_ops) > 6 else ""
    return (f"**{len(pf.cpu_ops)} op(s) run on the CPU** for {chip}: {kinds} ({names}{more}). {WHY_CPU}")


def memory_text(pf: Preflight) -> str:
    """Weight + internal memory against the chip's RAM (in-package variants) or a note that the board's RAM decides."""
    facts = chip_facts(pf.chip)
    row = pf.memory.iloc[0]
    need = (f"The model needs {row.weight_mb:.1f} MB of weights + {row.internal_mb:.1f} MB of internal (activation) memory "
            f"= **{row.model_mb:.1f} MB** (the toolkit's totals; the runtime adds its own buffers and the input/output copies)")
    if not facts.ram_mb:
        return f"{need}. {pf.chip.upper()} uses {facts.ram_source}: memory is not what limits this model there."
    parts = [f"{r.variant} {r.ram_mb} MB: {r.share:.0%}" for r in pf.memory.itertuples()]
    tight = [r.variant for r in pf.memory.itertuples() if r.share > 0.25]
    warn = (f" On {', '.join(tight)} that is over a quarter of all RAM, which the OS and the camera pipeline share: "
            "expect to trim the input size or the model." if tight else " That leaves room for the OS and the camera pipeline.")
    return f"{need}. Against the RAM in the package ({facts.ram_source}): {'; '.join(parts)}.{warn}"


def estimate_text(est: Estimate) -> str:
    """The estimated NPU time per inference, labelled an estimate with its band; or why there is no number."""
    if est.ms is None:  # not even the raw cycles / clock: it is the number that misleads
        return (f"**No time estimate for {est.chip.upper()}**: {est.reason}, so a time would mislead. The toolkit counts "
                f"{est.cycles / 1e6:.2f} M cycles for this model; measure the time on a board (notebook 40).")
    raw = (f"{est.cycles / 1e6:.2f} M cycles in the toolkit's cycle model = {est.raw_ms:.1f} ms at the NPU clock of "
           f"{chip_facts(est.chip).npu_hz / 1e9:g} GHz")
    cal = est.calibration
    return (f"**Estimated NPU time per inference on {est.chip.upper()}: about {est.ms:.0f} ms (~{est.fps:.0f} FPS), "
            f"likely {est.low_ms:.0f}-{est.high_ms:.0f} ms.** This is an estimate, not a measurement: {raw}, times "
            f"{est.chip.upper()}'s factor {cal.factor:.2f} fitted on {cal.models} rknn_model_zoo models (leave-one-model-out "
            f"error {cal.err_low:+.0%} to {cal.err_high:+.0%}; {CALIBRATION_SOURCE}). One NPU core, inference only: ops on the "
            "CPU, pre- and post-processing are not in it.")


def heaviest_text(pf: Preflight) -> str:
    """One line naming the heaviest layers and their share of the cycles."""
    top = pf.heaviest
    if top.empty:
        return ""
    names = ", ".join(f"`{r.name.split(':', 1)[-1]}` ({r.op_type}, {r.share:.0%})" for r in top.head(3).itertuples())
    return f"The heaviest layers: {names}; the {len(top)} heaviest take {top['share'].sum():.0%} of the cycles."


def preflight_markdown(pf: Preflight) -> str:
    """The whole pre-flight summary as markdown paragraphs."""
    return "\n\n".join(t for t in (cpu_text(pf), memory_text(pf), estimate_text(pf.estimate), heaviest_text(pf)) if t)


def no_profile_text(missing: str) -> str:
    """Said instead of the pre-flight when rknn/build.log holds no per-op profile, with the way to get one."""
    return (f"**No pre-flight for this build**: {missing} A `.rknn` reused from a run older than the pre-flight keeps its "
            "old log: delete `rknn/model.rknn` and run this notebook again to rebuild it with the profile.")
