"""Hybrid quantization: keep chosen layers in float16 (or int16) and the rest in INT8.

The toolkit's two steps: `hybrid_quantization_step1` writes `<stem>.model`, `<stem>.data` and
`<stem>.quantization.cfg` into the current directory (we run it inside the run's hybrid/step1
folder); the user then lists layers under `custom_quantize_layers` in the cfg; and
`hybrid_quantization_step2(model, data, cfg)` builds the mixed model. The cfg starts with
`custom_quantize_layers: {}` (an empty YAML flow mapping): writing entries *inside* those braces by
hand is the classic mistake, the edit here always produces a YAML block mapping, validates every
name and dtype first, and leaves the toolkit's original cfg untouched beside the edited copy.
"""
from __future__ import annotations

import contextlib
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import yaml

from helpers.core.errors import WorkbookError, strip_ansi
from helpers.core.paths import write_text_atomic
from helpers.tasks.scoring import metric_heading

if TYPE_CHECKING:
    from helpers.core.paths import Run
    from helpers.steps.convert import ConvertConfig, ConvertRecord
    from helpers.tasks.scoring import Judge, Score

DTYPES = ("int8", "int16", "float16")
# Spellings people try, and the one the cfg needs.
DTYPE_ALIASES = {
    "fp16": "float16", "f16": "float16", "half": "float16", "float": "float16", "fp32": "float16", "float32": "float16",
    "i8": "int8", "s8": "int8", "i16": "int16", "s16": "int16",
}
CFG_KEY = "custom_quantize_layers"
EDITED_SUFFIX = ".edited.quantization.cfg"
_HYBRID_LOG = re.compile(r"Meet hybrid type, dtype: (\w+), tensor: (\S+)")
AUTO_HYBRID = "build(auto_hybrid=True)"  # the comparison row of the toolkit's own one-switch hybrid


@dataclass(frozen=True)
class Step1Files:
    """The three files hybrid_quantization_step1 writes, for one model stem."""

    model: Path
    data: Path
    cfg: Path

    @property
    def folder(self) -> Path:
        return self.cfg.parent

    @property
    def stem(self) -> str:
        return self.cfg.name[: -len(".quantization.cfg")]

    @property
    def edited_cfg(self) -> Path:
        return self.variant_cfg("edited")

    def variant_cfg(self, tag: str) -> Path:
        """Where an edited copy named by tag goes: <stem>.<tag>.quantization.cfg beside the original."""
        return self.cfg.with_name(f"{self.stem}.{tag}.quantization.cfg")


@dataclass
class QuantCfg:
    """What a .quantization.cfg says: current custom layers, and every quantized tensor (file order)."""

    path: Path
    custom: dict[str, str]
    tensors: list[str]
    dtypes: dict[str, str] = field(default_factory=dict)


def find_step1(folder: str | Path) -> Step1Files:
    """The step1 files in folder, or a clear error saying to run step1 first."""
    folder = Path(folder)
    # the toolkit's cfg is the one with a matching <stem>.model (edited copies are <stem>.<what>.quantization.cfg)
    cfgs = sorted(folder.glob("*.quantization.cfg")) if folder.is_dir() else []
    own = [p for p in cfgs if (folder / (p.name[: -len(".quantization.cfg")] + ".model")).exists()]
    cfgs = own or [p for p in cfgs if not p.name.endswith(EDITED_SUFFIX)]
    if not cfgs:
        raise WorkbookError(
            f"No <model>.quantization.cfg in {folder}; run hybrid step 1 (hybrid.step1 / notebook 60's step 1 cell) before step 2."
        )
    cfg = cfgs[0]
    stem = cfg.name[: -len(".quantization.cfg")]
    files = Step1Files(folder / f"{stem}.model", folder / f"{stem}.data", cfg)
    for p in (files.model, files.data):
        if not p.is_file():
            raise WorkbookError(f"Step 1 file {p} is missing beside {cfg.name}; re-run hybrid step 1 so .model, .data and .cfg match.")
    return files


def read_cfg(path: str | Path, ignore_custom: bool = False) -> QuantCfg:
    """Parse a .quantization.cfg (YAML) into its custom layers and tensor list; with ignore_custom the
    custom_quantize_layers section is not read (so a broken hand edit of it does not matter)."""
    path = Path(path)
    if not path.is_file():
        raise WorkbookError(f"Quantization cfg {path} does not exist; run hybrid step 1 to create it.")
    text = path.read_text()
    try:
        data = yaml.safe_load(render_cfg(text, {}) if ignore_custom else text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise WorkbookError(
            f"Quantization cfg {path} is not valid YAML{where}; write custom_quantize_layers as a block mapping "
            "(no '{}' left on its line, one indented '<tensor>: float16' line per layer) or let hybrid.write_cfg write it."
        ) from exc
    if not isinstance(data, dict) or "quantize_parameters" not in data:
        raise WorkbookError(f"Quantization cfg {path} has no quantize_parameters section; use the .quantization.cfg written by hybrid step 1.")
    params = data.get("quantize_parameters") or {}
    custom = data.get(CFG_KEY) or {}
    if not isinstance(custom, dict):
        raise WorkbookError(f"{CFG_KEY} in {path} is not a mapping; write it as a block mapping, one '    <tensor>: float16' line each.")
    dtypes = {str(k): str((v or {}).get("dtype", "")) for k, v in params.items()}
    return QuantCfg(path, {str(k): str(v) for k, v in custom.items()}, list(dtypes), dtypes)


def input_channels(step1: Step1Files) -> int | None:
    """Channel count of the model's (NCHW) image input in step1's .model graph; None when unreadable."""
    try:
        import onnx

        model = onnx.load(str(step1.model), load_external_data=False)
        dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        return dims[1] if len(dims) == 4 and dims[1] in (1, 3) else None
    except Exception:  # not readable as a graph: leave batches as they are
        return None


def graph_inputs(step1: Step1Files) -> list[str]:
    """Names of the model's graph inputs (from step1's .model graph; weights excluded)."""
    cfg = read_cfg(step1.cfg, ignore_custom=True)
    try:
        import onnx

        model = onnx.load(str(step1.model), load_external_data=False)
        weights = {t.name for t in model.graph.initializer}
        names = [i.name for i in model.graph.input if i.name in cfg.dtypes and i.name not in weights]
        if names:
            return names
    except Exception:  # not readable as a graph: fall back to the cfg, whose first entry is the input
        pass
    return cfg.tensors[:1]


def layer_graph(step1: Step1Files) -> dict[str, list[str]]:
    """For each activation tensor of step1's graph, the activation tensors its producing node reads
    ({} when the .model cannot be read)."""
    cfg = read_cfg(step1.cfg, ignore_custom=True)
    try:
        import onnx

        model = onnx.load(str(step1.model), load_external_data=False)
    except Exception:
        return {}
    known = set(cfg.dtypes) - {t.name for t in model.graph.initializer}
    return {out: [i for i in node.input if i in known] for node in model.graph.node for out in node.output if out in known}


def activation_tensors(step1: Step1Files) -> list[str]:
    """The tensors a user may choose: quantized node outputs (not inputs, not weights), in cfg order."""
    cfg = read_cfg(step1.cfg, ignore_custom=True)
    graph = layer_graph(step1)
    inputs = set(graph_inputs(step1))
    names = [t for t in cfg.tensors if t in graph] if graph else cfg.tensors
    return [t for t in names if t not in inputs]


def normalise_dtype(layer: str, dtype: str) -> str:
    """The dtype if valid, else a WorkbookError naming the layer and the right spelling."""
    d = str(dtype).strip().lower()
    if d in DTYPES:
        return d
    if d in DTYPE_ALIASES:
        raise WorkbookError(f"Layer {layer!r} has dtype {dtype!r}, which the cfg does not accept; write {DTYPE_ALIASES[d]!r} instead.")
    raise WorkbookError(f"Layer {layer!r} has unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}.")


def validate_selection(selection: Mapping[str, str], cfg: QuantCfg, inputs: Sequence[str]) -> dict[str, str]:
    """Check every (layer, dtype) against the cfg before anything is written."""
    out: dict[str, str] = {}
    for layer, dtype in selection.items():
        if layer not in cfg.dtypes:
            close = difflib.get_close_matches(layer, cfg.tensors, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise WorkbookError(
                f"Layer {layer!r} is not under quantize_parameters in {cfg.path.name}{hint}; pick tensor names from that list."
            )
        if layer in inputs:
            raise WorkbookError(
                f"Layer {layer!r} is a graph input, which keeps the dtype the runtime feeds it; choose a layer after the input instead."
            )
        out[layer] = normalise_dtype(layer, dtype)
    return out


def as_selection(layers: Iterable[str] | Mapping[str, str], dtype: str = "float16") -> dict[str, str]:
    """A list of tensor names (all in dtype) or a {name: dtype} mapping, as a mapping."""
    if isinstance(layers, Mapping):
        return {str(k): str(v) for k, v in layers.items()}
    if isinstance(layers, str):
        layers = [layers]
    return {str(name): dtype for name in layers}


def _block(selection: Mapping[str, str]) -> str:
    """The custom_quantize_layers section as a YAML block mapping (names quoted when YAML needs it)."""
    if not selection:
        return f"{CFG_KEY}: {{}}\n"
    lines = [f"{CFG_KEY}:"]
    for name, dtype in selection.items():
        key = yaml.safe_dump({name: dtype}, default_flow_style=False, width=10_000).strip()
        lines.append(f"    {key}")
    return "\n".join(lines) + "\n"


def render_cfg(text: str, selection: Mapping[str, str]) -> str:
    """Replace the custom_quantize_layers section of a cfg's text (whatever form it is in: `{}`, an
    inline mapping, or a block) with a block mapping of selection; everything else is kept byte for byte."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.startswith(f"{CFG_KEY}:")), None)
    if start is None:
        return _block(selection) + text
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][:1] in (" ", "\t", "#")):
        end += 1
    return "".join(lines[:start]) + _block(selection) + "".join(lines[end:])


def write_cfg(step1: Step1Files, layers: Iterable[str] | Mapping[str, str], out: Path | None = None, dtype: str = "float16") -> Path:
    """Validate the selection, then write the edited cfg (default `<stem>.edited.quantization.cfg`,
    atomically) from step1's original cfg, which stays untouched. Same selection -> same bytes."""
    cfg = read_cfg(step1.cfg, ignore_custom=True)
    selection = validate_selection(as_selection(layers, dtype), cfg, graph_inputs(step1))
    out = Path(out) if out else step1.edited_cfg
    if out.resolve() == step1.cfg.resolve():
        raise WorkbookError(f"Refusing to overwrite the original {step1.cfg.name}; write the edited cfg to another file name.")
    text = render_cfg(step1.cfg.read_text(), selection)
    check = yaml.safe_load(text)  # the result must read back as exactly what was asked
    if (check.get(CFG_KEY) or {}) != selection:
        raise WorkbookError(f"{step1.cfg} has more than one {CFG_KEY} section, so the edit reads back as {check.get(CFG_KEY)!r}; keep one section (or re-run hybrid step 1).")
    return write_text_atomic(out, text)


def float16_tensors(log_path: str | Path) -> list[str]:
    """The tensors the compiler reported as float16 in a build log ('Meet hybrid type' lines), without
    dtype-conversion helpers (names ending __float16 / __int8) and in first-seen order."""
    text = strip_ansi(Path(log_path).read_text(errors="replace")) if Path(log_path).exists() else ""
    seen: list[str] = []
    for dtype, name in _HYBRID_LOG.findall(text):
        if dtype == "float16" and not re.search(r"__(float16|int8|int16|uint8)$", name) and name not in seen:
            seen.append(name)
    return seen


def step1(rk: Any, dataset: Path, proposal: bool = False, proposal_dataset_size: int = 1) -> Step1Files:
    """Run hybrid_quantization_step1 on a configured+loaded toolkit (rk.workdir receives the files)."""
    rk.hybrid_quantization_step1(dataset=str(dataset), proposal=proposal, proposal_dataset_size=proposal_dataset_size)
    return find_step1(rk.workdir)


def step2(rk: Any, step1_files: Step1Files, cfg: Path) -> None:
    """Run hybrid_quantization_step2 with step1's model/data and the given (edited) cfg."""
    for p in (step1_files.model, step1_files.data, cfg):
        if not Path(p).is_file():
            raise WorkbookError(f"Hybrid step 2 needs {p}, which does not exist; run hybrid step 1 (and write the edited cfg) first.")
    rk.hybrid_quantization_step2(model_input=str(step1_files.model), data_input=str(step1_files.data), model_quantization_cfg=str(cfg))


# ---------------------------------------------------------------- building and scoring hybrids

def judged(rk: Any, judge: "Judge") -> "Score":
    """Initialise a built toolkit (e.g. by step 2, batch 1) in the simulator and score its raw outputs on the
    judge's images: top-1 or mAP50-95, and the output cosine to FP32."""
    from helpers.tasks.scoring import toolkit_outputs

    rk.init_runtime(target=None)
    return judge.score(toolkit_outputs(rk, judge.pixels, getattr(rk, "input_channels", None)))  # 1 = grayscale


@contextlib.contextmanager
def built(step1_files: Step1Files, layers: Iterable[str] | Mapping[str, str], cfg_out: Path, log_path: Path) -> Iterator[Any]:
    """Write the edited cfg for layers, run step 2 (in step1's folder) and yield the built toolkit."""
    from helpers.toolkit.session import toolkit

    out = write_cfg(step1_files, layers, cfg_out)
    with toolkit(log_path, workdir=step1_files.folder) as rk:
        step2(rk, step1_files, out)
        rk.input_channels = input_channels(step1_files)
        yield rk


def with_inputs(order: Sequence[str], graph: Mapping[str, list[str]], allowed: Iterable[str],
                fused: Iterable[str] = ()) -> list[str]:
    """Each ranked tensor together with the tensors its operation reads, so it computes from float16
    inputs instead of re-quantized INT8 ones: a layer's 'single' error includes quantizing its
    inputs, so that is where the fix belongs. Fused layers (rows without values: they run inside
    their consumer, e.g. Conv inside ConvRelu) go with the tensor they are fused into, on both ends.
    Order kept, duplicates and non-allowed names dropped."""
    allowed, fused = set(allowed), set(fused)
    out: list[str] = []

    def chain(t: str, depth: int = 0) -> list[str]:
        """t and the fused tensors feeding it (one hardware operation)."""
        feed = [x for src in graph.get(t, []) if src in fused and depth < 8 for x in chain(src, depth + 1)]
        return [*feed, t]

    def add(t: str) -> None:
        for x in chain(t):
            if x in allowed and x not in out:
                out.append(x)

    for name in order:
        op = chain(name)
        for t in op:
            for src in graph.get(t, []):
                if src not in op:
                    add(src)
        add(name)
    return out


@dataclass
class SearchPoint:
    """One hybrid tried by the accuracy-driven search: its metric (top-1 or mAP50-95, 0..1) and output cosine."""

    layers: int
    value: float
    mean_cosine: float
    names: list[str]


def doubling(budget: int) -> list[int]:
    """Layer counts 1, 2, 4, ... up to and including budget."""
    counts, n = [], 1
    while n < budget:
        counts.append(n)
        n *= 2
    return [*counts, budget] if budget >= 1 else []


def within(fp32_value: float, value: float, target_pt: float) -> bool:
    """The metric is within target_pt points of FP32's (the search's stopping rule)."""
    return 100 * (fp32_value - value) <= target_pt + 1e-9


def accuracy_search(order: Sequence[str], score: Callable[[list[str]], tuple[float, float]], fp32_value: float,
                    target_pt: float = 0.2, budget: int = 32, int8_value: float | None = None) -> tuple[list[SearchPoint], SearchPoint | None]:
    """Add float16 layers in ranked order (1, 2, 4, ... up to budget) until the metric is within target_pt
    points of FP32. score(layers) -> (metric, mean_cosine). Returns every point and the first that met
    the target (None if the budget ran out first). No point at all when plain INT8 (int8_value) already
    meets the target."""
    from tqdm.auto import tqdm

    if budget < 1:
        raise WorkbookError(f"search_budget={budget} allows no layer; set it to at least 1.")
    points: list[SearchPoint] = []
    if int8_value is not None and within(fp32_value, int8_value, target_pt):
        return points, None
    for n in tqdm(doubling(min(budget, len(order))), desc="hybrid search", unit="build"):
        names = list(order[:n])
        value, cos = score(names)
        points.append(SearchPoint(n, value, cos, names))
        if within(fp32_value, value, target_pt):
            return points, points[-1]
    return points, None


# ---------------------------------------------------------------- measuring variants

@dataclass
class Variant:
    """One model in the comparison table (FP32, INT8, a hybrid, auto_hybrid); value is the judge's metric."""

    name: str
    value: float
    mean_cosine: float
    min_cosine: float
    rknn_bytes: int
    float16_layers: int
    layers: list[str] = field(default_factory=list)
    note: str = ""
    file: str = ""  # the exported .rknn, relative to the run folder ('' when none was built)

    def row(self, judge: "Judge") -> dict[str, Any]:
        """The comparison table's columns, the metric's named after the judge (top1 / map50_95)."""
        return {"model": self.name, judge.key: self.value, judge.delta_key: round(100 * (self.value - judge.fp32.value), 2),
                "mean_cosine": self.mean_cosine, "min_cosine": self.min_cosine,
                "size_kb": round(self.rknn_bytes / 1024, 1) if self.rknn_bytes else float("nan"),
                "float16_layers": self.float16_layers, "note": self.note, "file": self.file, "layers": " ".join(self.layers)}


def measure(rk: Any, name: str, judge: "Judge", rknn_out: Path, log_path: Path, analysis_images: Sequence[Path] = (),
            analysis_dir: Path | None = None, layers: Sequence[str] = ()) -> tuple[Variant, Any]:
    """On a built toolkit: optional accuracy_analysis (combined table), export to rknn_out (atomic), then the
    judge's metric and output cosine vs FP32 in the simulator. Returns the Variant and the table (or None)."""
    from helpers.steps import analysis

    table = None
    if analysis_images:
        files = analysis.run_accuracy_analysis(rk, list(analysis_images), Path(analysis_dir), progress=False)
        table = analysis.combine([analysis.parse_error_analysis(f) for f in files])
    rknn_out = Path(rknn_out)
    tmp = rknn_out.with_name(rknn_out.stem + ".partial.rknn")
    rk.export_rknn(str(tmp))
    tmp.replace(rknn_out)
    score = judged(rk, judge)
    v = Variant(name, score.value, score.mean_cosine, score.min_cosine, rknn_out.stat().st_size, len(float16_tensors(log_path)), list(layers))
    return v, table


def metric_key(columns: Iterable[str]) -> str:
    """The metric a table or record holds: the first of top1, map50_95 among its columns (top1 when neither)."""
    from helpers.tasks.scoring import metric_in

    return metric_in(columns) or "top1"


def axis_label(judge: "Judge") -> str:
    """The metric axis of notebook 60's plots, with how to read a difference on these images."""
    return f"{judge.label} (%)\n{judge.scale_note()}"


def plot_compare(table: Any, judge: "Judge", path: str | Path | None = None, note: str = ""):
    """The judge's metric (top-1 or mAP50-95) and mean output cosine vs FP32 for every row of the comparison table."""
    import pandas as pd

    from helpers.steps.analysis import save_figure, top1_cosine_bars

    short = {"hybrid (a) your list": "(a) your list", "hybrid (b) toolkit proposal": "(b) proposal",
             "hybrid (c) auto from ranking": "(c) auto\nranking", "build(auto_hybrid=True)": "auto_hybrid"}
    labels = [short.get(m, m) + ("" if m == "FP32" else f"\n{n:g} float16" if pd.notna(t) else "\nnot built")
              for m, n, t in zip(table["model"], pd.to_numeric(table["float16_layers"]), table[judge.key])]
    n = len(table)
    fig, (a1, a2) = top1_cosine_bars(labels, table[judge.key], table["mean_cosine"], "model (float16 layers)",
                                     (metric_heading(judge.label), "Agreement with the float model"),
                                     colors=(["black"] + ["tab:blue"] * (n - 1), ["black"] + ["tab:orange"] * (n - 1)),
                                     cosine_margin=0.005, figsize=(12, 4))
    step = judge.step_pt()
    margin = max(2.0, 3 * step) if step else max(2.0, judge.noise_pt())  # one image or the noise must not fill the plot
    a1.set_ylim(max(0, 100 * table[judge.key].min() - margin), min(100.5, 100 * table[judge.key].max() + 1))
    a1.set_ylabel(axis_label(judge))
    if note:
        fig.suptitle(note, color="#a06000")
    return save_figure(fig, path)


def plot_search(points: Any, int8_value: float, judge: "Judge", target_pt: float, path: str | Path | None = None, note: str = ""):
    """The judge's metric against the number of float16 layers added in ranked order (search.csv or SearchPoints),
    with FP32, the target band and, for a metric without a fixed step (mAP), FP32's noise on these images."""
    import matplotlib.pyplot as plt

    if hasattr(points, "to_dict"):
        xs, ys = list(points["layers"]), [100 * v for v in points[judge.key]]
    else:
        xs, ys = [p.layers for p in points], [100 * p.value for p in points]
    fp32, step = 100 * judge.fp32.value, judge.step_pt()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    pos = np.arange(len(xs) + 1)  # evenly spaced: the counts double from one point to the next
    ax.plot(pos, [100 * int8_value, *ys], marker="o", color="tab:blue", label="hybrid (0 = plain INT8)")
    ax.axhline(fp32, color="black", ls="--", lw=1, label=f"FP32 {fp32:.2f}%")
    band = f"target: equal to FP32 ({target_pt:g} pt < 1 image)" if step and target_pt < step else f"target: within {target_pt:g} pt"
    ax.axhspan(fp32 - target_pt, fp32, color="green", alpha=0.12, label=band)
    if not step:
        noise = judge.noise_pt()
        ax.axhspan(fp32 - noise, fp32 + noise, color="grey", alpha=0.1, label=f"FP32 ± {noise:.1f} pt: noise of {judge.images} images")
    ax.set_xticks(pos, ["0", *(str(int(v)) for v in xs)])
    ax.set_xlabel("float16 layers (added in ranked order, with their inputs)")
    ax.set_ylabel(axis_label(judge))
    ax.set_title(f"Accuracy-driven hybrid search, scored by {judge.label}" + (f"\n{note}" if note else ""))
    lo, hi = min([100 * int8_value, *ys, fp32 - target_pt]), max([100 * int8_value, *ys, fp32])  # ys is empty when INT8 met the target
    if not step:  # show the whole noise band: a curve that stays inside it has not shown any difference
        lo, hi = min(lo, fp32 - judge.noise_pt()), max(hi, fp32 + judge.noise_pt())
    pad = step if step else max(0.3, 0.15 * (hi - lo))  # one image (or a little) of room around the curve
    ax.set_ylim(max(0.0, lo - 2 * pad), min(100.5, hi + pad))
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


def layer_picker(options: Sequence[str], selected: Sequence[str]):
    """A multi-select of tensor names (hold Ctrl/Shift); its .value is the user's list. Names not in
    options are refused first, with the closest match, so the widget never silently drops them."""
    unknown = [n for n in selected if n not in options]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(options), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise WorkbookError(f"user_layers names {unknown[0]!r}, which is not a layer of this model{hint}; pick names from the step 1 cfg.")
    try:
        import ipywidgets as w
    except ImportError:  # no widgets: a stand-in with the same .value
        return type("Picker", (), {"value": tuple(selected)})()
    return w.SelectMultiple(options=list(options), value=tuple(selected), rows=12, description="float16 layers",
                            layout=w.Layout(width="700px"), style={"description_width": "120px"})


def write_chosen(path: Path, row: Mapping[str, Any], model: Path) -> None:
    """Record which hybrid was exported (name, its metric under the metric's own key plus "metric" naming it,
    output cosine, float16 layers, calibration, demo flag; model relative to the run folder) as JSON, atomically."""
    from helpers.core.paths import write_json_atomic

    def plain(v: Any) -> Any:
        return v.item() if hasattr(v, "item") else v

    key = str(row.get("metric") or metric_key(row))
    data = {"model": str(row["model"]), key: plain(row[key]), "metric": key, "mean_cosine": plain(row["mean_cosine"]),
            "float16_layers": plain(row.get("float16_layers")), "file": Path(model).as_posix(),
            "calibration": str(row.get("calibration", "")), "demo": bool(row.get("demo", False)),
            "below_int8": bool(row.get("below_int8", False))}
    write_json_atomic(path, data)


# ---------------------------------------------------------------- notebook 60's steps

@dataclass
class Bench:
    """What every model notebook 60 measures shares: the recorded model, the calibration list actually used
    (demo or notebook 20's), the judge (the validation images, FP32's outputs on them and the task's metric)
    and the images accuracy_analysis reads."""

    run: "Run"
    record: "ConvertRecord"
    dataset: Path
    judge: "Judge"
    analysis_images: list[Path]
    dtype: str = "float16"
    demo_images: int = 0  # > 0: built under demo calibration with this many images

    @property
    def cfg(self) -> "ConvertConfig":
        """Notebook 20's options (with the graph rules it had to disable) for a batch-1 build: step 1, step 2 and
        accuracy_analysis take one image per call."""
        from helpers.steps.convert import ConvertConfig

        return ConvertConfig.from_dict({**self.record.config.to_dict(), "rknn_batch_size": None})

    @property
    def calibration(self) -> str:
        """How the quantized models here were calibrated, as the tables and chosen.json label it."""
        n = sum(1 for line in Path(self.dataset).read_text().splitlines() if line.strip())
        return f"demo: {n} image{'s' * (n != 1)}" if self.demo_images else f"notebook 20's list ({n} images)"

    @property
    def note(self) -> str:
        """The demo label for this notebook's figures ('' outside demo mode)."""
        from helpers.steps.analysis import demo_note

        return demo_note(self.demo_images)

    def describe(self) -> str:
        """Three lines: the model and its quantization settings, the calibration, and what every model is scored by."""
        j, rules = self.judge, self.cfg.disable_rules
        off = f", graph rules off: {', '.join(rules)}" if rules else ""
        return (f"model: {self.record.source.name}, {self.cfg.quantized_algorithm}/{self.cfg.quantized_method}{off}\n"
                f"calibration: {self.calibration}\nscored by {j.label} on {j.scale_note()}; FP32 {j.label} {j.text(j.fp32.value)}")

    def selection(self, names: Iterable[str]) -> dict[str, str]:
        return {n: self.dtype for n in names}


def strategy_file(run: "Run", name: str) -> Path:
    """Where a strategy's model goes, named after the strategy (never after its row position)."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return run.hybrid / f"strategy_{slug}.rknn"


def measure_int8(bench: Bench) -> tuple[Variant, Any]:
    """The plain INT8 baseline with the same calibration: build, accuracy_analysis, export, the judge's metric."""
    from helpers.steps.convert import build_on
    from helpers.toolkit.session import toolkit

    run, rec = bench.run, bench.record
    log = run.logs / "60_int8.log"
    with toolkit(log) as rk:
        build_on(rk, rec.source, bench.cfg, bench.dataset, rec.input_size, rec.load_path)
        v, table = measure(rk, "INT8", bench.judge, run.hybrid / "model_int8.rknn", log, bench.analysis_images, run.hybrid / "snapshot_int8")
    v.file = "hybrid/model_int8.rknn"
    return v, table


def auto_hybrid(bench: Bench) -> Variant:
    """build(auto_hybrid=True) with notebook 20's options (and disabled rules): the toolkit picks float16 layers by cosine."""
    from helpers.steps.convert import load_source
    from helpers.toolkit.session import toolkit

    rec, log = bench.record, bench.run.logs / "60_auto_hybrid.log"
    with toolkit(log) as rk:
        rk.config(**bench.cfg.config_kwargs())
        load_source(rk, rec.source, rec.input_size, rec.load_path)
        rk.build(**{**bench.cfg.build_kwargs(bench.dataset), "auto_hybrid": True})  # also when notebook 20 already set it
        v, _ = measure(rk, AUTO_HYBRID, bench.judge, bench.run.hybrid / "model_auto_hybrid.rknn", log)
    v.layers, v.file = float16_tensors(log), "hybrid/model_auto_hybrid.rknn"
    return v


def compare_strategies(bench: Bench, files: Step1Files, strategies: Mapping[str, list[str]], why_empty: Mapping[str, str],
                       int8: Variant, before: Any) -> tuple[Any, Any]:
    """Step 2 + accuracy_analysis + the judge's metric for every strategy (an empty one gets a row saying why), then
    build(auto_hybrid=True); returns the comparison table (FP32 first, a file and calibration column)
    and every model's per-layer table (column 'model')."""
    import pandas as pd
    from tqdm.auto import tqdm

    run = bench.run
    for old in [*run.hybrid.glob("strategy_*.rknn"), *run.hybrid.glob("model_strategy*.rknn")]:
        old.unlink()  # no model of an earlier selection may pass for this one
    results, tables = [int8], {"INT8": before}
    for i, (name, chosen) in enumerate(tqdm(list(strategies.items()), desc="step 2", unit="model")):
        if not chosen:
            results.append(Variant(name, float("nan"), float("nan"), float("nan"), 0, 0, [], note=why_empty.get(name, "no layers")))
            continue
        log, out = run.logs / f"60_step2_{i}.log", strategy_file(run, name)
        with built(files, bench.selection(chosen), files.variant_cfg(f"strategy{i}"), log) as rk:
            v, tables[name] = measure(rk, name, bench.judge, out, log, bench.analysis_images, run.hybrid / f"snapshot_strategy{i}", chosen)
        v.file = run.relative(out)
        results.append(v)
    results.append(auto_hybrid(bench))
    onnx = run.root / "model" / "model.onnx"
    fp32_row = Variant("FP32", bench.judge.fp32.value, 1.0, 1.0, onnx.stat().st_size if onnx.exists() else 0, 0, [])  # size: the ONNX file
    table = pd.DataFrame([r.row(bench.judge) for r in [fp32_row, *results]])
    table["calibration"] = ["none (float)"] + [bench.calibration] * len(results)
    return table, pd.concat([t.assign(model=k) for k, t in tables.items()])


def search(bench: Bench, files: Step1Files, order: Sequence[str], target_pt: float, budget: int, int8_value: float) -> Any:
    """The accuracy-driven search as a table (layers, <metric>, mean_cosine, met_target, layers_list); the first
    hybrid that met the target is exported as hybrid/model_search.rknn (removed first, so it never outlives a run)."""
    import pandas as pd

    judge = bench.judge
    log, found = bench.run.logs / "60_search.log", bench.run.hybrid / "model_search.rknn"
    found.unlink(missing_ok=True)

    def score(chosen: list[str]) -> tuple[float, float]:
        with built(files, bench.selection(chosen), files.variant_cfg("search"), log) as rk:
            s = judged(rk, judge)
        return s.value, s.mean_cosine

    points, hit = accuracy_search(order, score, judge.fp32.value, target_pt, budget, int8_value=int8_value)
    if hit:
        with built(files, bench.selection(hit.names), files.variant_cfg("search"), log) as rk:
            rk.export_rknn(str(found))
    columns = ["layers", judge.key, "mean_cosine", "met_target", "layers_list"]
    return pd.DataFrame([dict(zip(columns, (p.layers, p.value, p.mean_cosine, within(judge.fp32.value, p.value, target_pt), " ".join(p.names))))
                         for p in points], columns=columns)


# ---------------------------------------------------------------- the export choice (one rule, also for the index page)

def _num(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if x == x else None


def export_candidates(compare_rows: Sequence[Mapping[str, Any]], search_rows: Sequence[Mapping[str, Any]] = (),
                      root: Path | None = None, search_file: str = "hybrid/model_search.rknn") -> list[dict[str, Any]]:
    """Every hybrid that may be exported: the strategy rows with a metric value (top1 or map50_95, whichever the
    table holds) and a model file, build(auto_hybrid=True) when it kept more tensors in float16 than plain INT8 (else it
    is INT8), plus the search's first point that met its target (a new candidate beside them, never in place of one).
    Each candidate names its metric ("metric"). With root (the run folder) only candidates whose file exists there are kept."""
    def has_file(f: Any) -> bool:
        f = "" if f is None or (isinstance(f, float) and f != f) else str(f)
        return bool(f) and (root is None or (Path(root) / f).is_file())

    key = metric_key(k for r in compare_rows for k in r)
    int8_f16 = next((_num(r.get("float16_layers")) or 0.0 for r in compare_rows if r.get("model") == "INT8"), 0.0)

    def hybrid_row(r: Mapping[str, Any]) -> bool:
        name = str(r.get("model", ""))
        return name.startswith("hybrid") or (name == AUTO_HYBRID and (_num(r.get("float16_layers")) or 0.0) > int8_f16)

    cands = [{**r, "metric": key} for r in compare_rows if hybrid_row(r) and _num(r.get(key)) is not None and has_file(r.get("file"))]
    met = [r for r in search_rows if str(r.get("met_target")).lower() in ("true", "1", "1.0")]
    if met and has_file(search_file) and _num(met[0].get(key)) is not None:
        r = met[0]
        cands.append({"model": f"hybrid search ({int(float(r['layers']))} layers)", key: r[key], "mean_cosine": r["mean_cosine"],
                      "float16_layers": int(float(r["layers"])), "file": search_file, "metric": key})
    return cands


def choose_export(candidates: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The rule: best validation metric (top-1 or mAP50-95), then higher mean output cosine, then fewer float16 layers."""
    if not candidates:
        return None
    key = str(candidates[0].get("metric") or metric_key(candidates[0]))
    best = min(candidates, key=lambda r: (-(_num(r.get(key)) or 0.0), -(_num(r.get("mean_cosine")) or 0.0),
                                          _num(r.get("float16_layers")) or 0.0))
    return {**best, "metric": key}


def export_choice(run: "Run", choice: Mapping[str, Any], calibration: str, demo: bool, int8_value: float | None = None) -> Path:
    """Copy the chosen model to hybrid/model_hybrid.rknn (hybrid/model_hybrid_demo.rknn under demo calibration,
    which nothing deploys; a real model_hybrid.rknn of an earlier run is removed, as chosen.json no longer
    describes it) and record the choice in hybrid/chosen.json, with whether it scores below INT8's int8_value
    (the bundle then leaves it out); returns the exported path."""
    import shutil

    src = run.resolve(str(choice["file"]))
    final = run.hybrid / ("model_hybrid_demo.rknn" if demo else "model_hybrid.rknn")
    tmp = final.with_name(final.name + ".tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(final)
    if demo:
        (run.hybrid / "model_hybrid.rknn").unlink(missing_ok=True)
    key = str(choice.get("metric") or metric_key(choice))
    below = int8_value is not None and not not_below_int8(float(choice[key]), int8_value)
    write_chosen(run.hybrid / "chosen.json", {**choice, "calibration": calibration, "demo": demo, "below_int8": below},
                 run.relative(final))
    return final


def baseline_files(run: "Run") -> list[Path]:
    """Where the INT8 baseline is kept: its per-layer table and its Variant."""
    return [run.hybrid / "int8_layers.csv", run.hybrid / "int8.json"]


def save_baseline(run: "Run", variant: Variant, table: Any) -> tuple[Variant, Any]:
    """Write the baseline (atomically) and return it as load_baseline reads it back."""
    import dataclasses

    from helpers.core.paths import write_json_atomic

    csv_path, json_path = baseline_files(run)
    write_text_atomic(csv_path, table.to_csv(index=False))
    write_json_atomic(json_path, dataclasses.asdict(variant))
    return load_baseline(run)


def load_baseline(run: "Run") -> tuple[Variant, Any]:
    """The INT8 baseline save_baseline wrote (an int8.json from before the judge holds its metric as "top1")."""
    import json

    import pandas as pd

    csv_path, json_path = baseline_files(run)
    data = json.loads(json_path.read_text())
    if "top1" in data:
        data["value"] = data.pop("top1")
    return Variant(**data), pd.read_csv(csv_path).fillna({"flags": ""})


# ---------------------------------------------------------------- sentences computed from this run

def gap_note(judge: "Judge", value: float, ref: float | None = None, what: str = "FP32") -> str:
    """How far value is from ref (default FP32's metric) in points, and how to read that on these images:
    in images for top-1, against the noise of the images for mAP."""
    ref = judge.fp32.value if ref is None else ref
    d = 100 * (value - ref)
    side = f"{abs(d):.2f} pt {'below' if d < 0 else 'above'} {what}" if round(d, 2) else f"equal to {what}"
    step = judge.step_pt()
    if step:
        n = round(abs(d) / step)
        return f"{side} ({n} of {judge.images} images; 1 image = {step:.2f} pt)" if n else f"{side} (not one image of {judge.images} differs)"
    noise = judge.noise_pt()
    inside = "within" if abs(d) <= noise else "beyond"
    return f"{side}, {inside} the noise of {judge.images} val images (about ±{noise:.1f} pt)"


def target_note(target_pt: float, judge: "Judge", int8_value: float | None = None) -> str:
    """The search's target in words: below one image of top-1 it can only mean 'equal to FP32'; for mAP, how it
    compares with the noise of these images. With int8_value, also whether plain INT8 already meets it (no search)."""
    step, noise = judge.step_pt(), judge.noise_pt()
    if step and target_pt < step:
        text = (f"target {target_pt:g} pt is smaller than one image ({step:.2f} pt on {judge.images} images), "
                "so it means: equal to FP32")
    elif step:
        text = f"target: within {target_pt:g} pt of FP32 ({target_pt / step:.1f} images of {judge.images})"
    else:
        hint = " (a hybrid that meets it on these images can still differ from FP32 by that much on others)" if target_pt < noise else ""
        text = (f"target: {judge.label} within {target_pt:g} pt of FP32's {judge.text(judge.fp32.value)}; the noise of {judge.images} val images "
                f"is about ±{noise:.1f} pt{hint}")
    if int8_value is not None and within(judge.fp32.value, int8_value, target_pt):
        text += f"\nplain INT8 ({judge.text(int8_value)}) already meets it, so the search built no hybrid: the plot shows INT8 alone"
    return text


def ranking_note(ranked: Any, run: "Run", analysis_images: int, calibration: str, k: int = 5) -> str:
    """How this ranking relates to notebook 50's (other image count or calibration -> other order)."""
    import json

    import pandas as pd

    from helpers.steps.analysis import rank_layers

    try:
        p50 = json.loads((run.root / "params.json").read_text()).get("50_accuracy_analysis", {})
        theirs = rank_layers(pd.read_csv(run.root / "analysis" / "layers.csv").fillna({"flags": ""}))
    except (OSError, ValueError, KeyError):
        return "Notebook 50 has not analysed this run folder, so there is no ranking to compare with."
    n50, demo50 = p50.get("analysis_images", "?"), int(p50.get("demo_calib_images", 0) or 0)
    calib50 = f"demo: {demo50} image{'s' * (demo50 != 1)}" if demo50 else "notebook 20's list"
    same = set(ranked["name"][:k]) & set(theirs["name"][:k])
    differs = n50 != analysis_images or calib50.split(" (")[0] != calibration.split(" (")[0]
    how = (f"Notebook 50 ranked on {n50} image(s) ({calib50}); this notebook ranks on {analysis_images} image(s) ({calibration})")
    why = ": other images or calibration, so the order can differ" if differs else ": the same setting"
    return f"{how}{why}. {len(same)} of the top {k} layers here are also in notebook 50's top {k}."


def reading_notes(table: Any, int8_float16: Sequence[str], proposal: bool, demo: bool) -> str:
    """What this run's comparison table shows, as bullet points built from its rows."""
    import pandas as pd

    rows = {str(r["model"]): r for r in table.to_dict("records")}
    key = metric_key(table.columns)
    out = []
    if int8_float16:
        shown = ", ".join(f"`{n}`" for n in int8_float16[:3]) + (" ..." if len(int8_float16) > 3 else "")
        out.append(f"- **Plain INT8 already has {len(int8_float16)} float16 tensor(s)** ({shown}): operators the NPU only runs "
                   "in float stay float16 in every build, and the hybrids' counts include them.")
    else:
        out.append("- Plain INT8 has no float16 tensor in this model, so every float16 layer in a hybrid's row was chosen.")
    prop = rows.get("hybrid (b) toolkit proposal")
    if prop is not None and proposal and pd.isna(prop[key]):
        out.append("- **The toolkit's proposal is empty in this run.** Step 1 judges the error on the calibration images, the "
                   "images the quantization was fitted to" + (", here a single demo image," if demo else ",") + " so it saw no layer worth changing.")
    elif prop is not None and proposal:
        out.append(f"- **The toolkit proposed {len(str(prop['layers']).split())} layer(s)**, judged on the calibration images.")
    auto = rows.get("build(auto_hybrid=True)")
    if auto is not None and pd.notna(auto["float16_layers"]):
        extra = int(auto["float16_layers"]) - len(int8_float16)
        out.append(f"- **`auto_hybrid`** kept {int(auto['float16_layers'])} tensor(s) in float16 ({max(extra, 0)} more than plain INT8): "
                   "it switches a layer when its cosine on the calibration set falls below `auto_hybrid_cos_thresh` (0.98 by default).")
    return "\n".join(out)


def export_note(choice: Mapping[str, Any], count: int, final: Path, int8: Variant, judge: "Judge") -> str:
    """What was exported and how it scores next to INT8 (same calibration) and FP32."""
    value = float(choice[judge.key])
    return (f"Exported **{choice['model']}** (of {count} candidate{'s' * (count != 1)}) as `{final.as_posix()}`: {judge.label} {judge.text(value)} "
            f"(INT8 with the same calibration {judge.text(int8.value)}, FP32 {judge.text(judge.fp32.value)}), "
            f"mean output cosine {float(choice['mean_cosine']):.5f} (INT8 {int8.mean_cosine:.5f}).")


def inside_noise(judge: "Judge", value: float) -> bool:
    """For a metric without a one-image step (mAP): value is within the noise of FP32's on these images."""
    return judge.step_pt() is None and abs(100 * (value - judge.fp32.value)) <= judge.noise_pt()


def _search_sentence(search_table: Any, layers_total: int, int8_value: float, judge: "Judge", target_pt: float) -> str:
    """How many float16 layers reaching the target took, and whether that makes the error local."""
    met = search_table[search_table["met_target"].astype(bool)] if len(search_table) else search_table
    if not len(search_table):
        return f"Plain INT8's {judge.label} is {gap_note(judge, int8_value)}, already within the {target_pt:g} pt target: no float16 layer is needed."
    lead = f"Plain INT8's {judge.label} is {gap_note(judge, int8_value)}. "
    if len(met):
        n = int(met.iloc[0]["layers"])
        share = n / max(layers_total, 1)
        kind = ("the error is local: a few layers carry it" if share <= 0.1 else
                "the error is not local: it is spread over the network, so a better calibration or another quantized_algorithm "
                "(notebook 50's sweep) is the cheaper fix" if share >= 0.5 else "the error is partly local")
        caveat = (" (with INT8's own loss inside the noise of these images, read that as a property of these images rather than "
                  "of the model)") if inside_noise(judge, int8_value) else ""
        return lead + f"The search needed {n} of {layers_total} layers in float16 to come within {target_pt:g} pt of FP32, so {kind}{caveat}."
    n = int(search_table["layers"].max())
    if inside_noise(judge, int8_value):
        lo, hi = judge.text(search_table[judge.key].min()), judge.text(search_table[judge.key].max())
        return lead + (f"None of the search's {len(search_table)} hybrids (up to {n} of {layers_total} layers in float16) came within "
                       f"{target_pt:g} pt of FP32 either; they score {lo} to {hi}, inside the same noise. On these images INT8 "
                       "loses too little for float16 layers to repair measurably, so this search cannot tell whether the error is local.")
    return lead + f"Even {n} of {layers_total} layers in float16 did not bring {judge.label} within {target_pt:g} pt of FP32: " + (
        "the error is not local; revisit the calibration set or the quantized_algorithm (notebook 50's sweep)."
        if n >= layers_total / 2 else
        "the search budget ran out before it could tell whether the error is local; raise search_budget to find out.")


def not_below_int8(value: float, int8_value: float) -> bool:
    """The hybrid's metric is at least INT8's, as the sentences print them (to 0.01 pt)."""
    return round(100 * (value - int8_value), 2) >= 0


def versus_int8(value: float, int8_value: float, judge: "Judge", demo: bool = False) -> str:
    """Whether the exported hybrid's metric is at least INT8's (same calibration), with the numbers."""
    gap = gap_note(judge, value, int8_value, "INT8")
    if not_below_int8(value, int8_value):
        return f"It is {gap}, so the exported hybrid's {judge.label} is not below INT8's."
    keep = "" if demo else " and plain INT8 is the model to keep"
    return f"It is {gap}, so no hybrid reached INT8's {judge.label} here: on this evidence the float16 layers buy nothing{keep}."


def conclusion(search_table: Any, layers_total: int, int8_value: float, judge: "Judge", target_pt: float,
               choice: Mapping[str, Any] | None, calibration: str, demo: bool) -> str:
    """The run's conclusion: how far INT8 is from FP32, how many float16 layers reaching the target took (local
    or not), what was exported and whether its metric is at least INT8's, all with this run's numbers."""
    first = _search_sentence(search_table, layers_total, int8_value, judge, target_pt)
    if choice is None:
        return first + " No hybrid was exported."
    value = float(choice[judge.key])
    second = (f" Exported **{choice['model']}**: {judge.label} {judge.text(value)} vs {judge.text(int8_value)} for INT8 with the same calibration "
              f"({calibration}) and {judge.text(judge.fp32.value)} for FP32. " + versus_int8(value, int8_value, judge, demo))
    if demo:
        second += (" This is a demo: built on a deliberately poor calibration, it says nothing about the model notebook 20 "
                   "converted; run with demo_calib_images = 0 for a hybrid worth deploying.")
    return first + second
