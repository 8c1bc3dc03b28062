"""Step 1's files of hybrid quantization: find them, read the .quantization.cfg, validate a layer selection, write the
edited copy; and what the .model graph says (the graph inputs, which tensors feed which, the tensors one may choose).

The toolkit's two steps: `hybrid_quantization_step1` writes `<stem>.model`, `<stem>.data` and
`<stem>.quantization.cfg` into the current directory (we run it inside the run's hybrid/step1
folder); the user then lists layers under `custom_quantize_layers` in the cfg; and
`hybrid_quantization_step2(model, data, cfg)` builds the mixed model. The cfg starts with
`custom_quantize_layers: {}` (an empty YAML flow mapping): writing entries *inside* those braces by
hand is the classic mistake, the edit here always produces a YAML block mapping, validates every
name and dtype first, and leaves the toolkit's original cfg untouched beside the edited copy.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from helpers.core.errors import WorkbookError
from helpers.core.paths import write_text_atomic
from helpers.steps.analysis.parse import NON_LAYER_OPS

DTYPES = ("int8", "int16", "float16")
# Spellings people try, and the one the cfg needs.
DTYPE_ALIASES = {
    "fp16": "float16", "f16": "float16", "half": "float16", "float": "float16", "fp32": "float16", "float32": "float16",
    "i8": "int8", "s8": "int8", "i16": "int16", "s16": "int16",
}
CFG_KEY = "custom_quantize_layers"
EDITED_SUFFIX = ".edited.quantization.cfg"


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
            f"No <model>.quantization.cfg in {folder}; run hybrid step 1 (hybrid.step1 / notebook 60's step 1 cell) "
            "before step 2."
        )
    cfg = cfgs[0]
    stem = cfg.name[: -len(".quantization.cfg")]
    files = Step1Files(folder / f"{stem}.model", folder / f"{stem}.data", cfg)
    for p in (files.model, files.data):
        if not p.is_file():
            raise WorkbookError(f"Step 1 file {p} is missing beside {cfg.name}; "
                                "re-run hybrid step 1 so .model, .data and .cfg match.")
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
        raise WorkbookError(f"Quantization cfg {path} has no quantize_parameters section; "
                            "use the .quantization.cfg written by hybrid step 1.")
    params = data.get("quantize_parameters") or {}
    custom = data.get(CFG_KEY) or {}
    if not isinstance(custom, dict):
        raise WorkbookError(f"{CFG_KEY} in {path} is not a mapping; "
                            "write it as a block mapping, one '    <tensor>: float16' line each.")
    dtypes = {str(k): str((v or {}).get("dtype", "")) for k, v in params.items()}
    return QuantCfg(path, {str(k): str(v) for k, v in custom.items()}, list(dtypes), dtypes)


def step1_graph(step1: Step1Files) -> Any | None:
    """Step 1's .model as an ONNX graph (external weight files not loaded), or None when it cannot be read as one."""
    try:
        import onnx  # slow to import: only reading the step 1 graph needs it

        return onnx.load(str(step1.model), load_external_data=False)
    except Exception:  # not readable as a graph: the callers fall back to the cfg
        return None


def input_channels(step1: Step1Files) -> int | None:
    """Channel count of the model's (NCHW) image input in step1's .model graph; None when unreadable."""
    model = step1_graph(step1)
    try:
        dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        return dims[1] if len(dims) == 4 and dims[1] in (1, 3) else None
    except Exception:  # not readable as a graph: leave batches as they are
        return None


def graph_inputs(step1: Step1Files) -> list[str]:
    """Names of the model's graph inputs (from step1's .model graph; weights excluded)."""
    cfg = read_cfg(step1.cfg, ignore_custom=True)
    model = step1_graph(step1)
    try:
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
    model = step1_graph(step1)
    if model is None:
        return {}
    known = set(cfg.dtypes) - {t.name for t in model.graph.initializer}
    return {out: [i for i in node.input if i in known] for node in model.graph.node for out in node.output if out in known}


def activation_tensors(step1: Step1Files) -> list[str]:
    """The layers: quantized node outputs a user may choose (not inputs, not weights, not the dtype conversions the
    toolkit inserts, e.g. images_int8: the rows notebook 50 does not rank either), in cfg order. Every layer count
    in notebook 60 counts these."""
    cfg = read_cfg(step1.cfg, ignore_custom=True)
    graph = layer_graph(step1)
    inputs = set(graph_inputs(step1))
    model = step1_graph(step1) if graph else None
    helpers = {o for n in model.graph.node if n.op_type in NON_LAYER_OPS for o in n.output} if model is not None else set()
    names = [t for t in cfg.tensors if t in graph] if graph else cfg.tensors
    return [t for t in names if t not in inputs and t not in helpers]


def normalise_dtype(layer: str, dtype: str) -> str:
    """The dtype if valid, else a WorkbookError naming the layer and the right spelling."""
    d = str(dtype).strip().lower()
    if d in DTYPES:
        return d
    if d in DTYPE_ALIASES:
        raise WorkbookError(f"Layer {layer!r} has dtype {dtype!r}, which the cfg does not accept; "
                            f"write {DTYPE_ALIASES[d]!r} instead.")
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
                f"Layer {layer!r} is a graph input, which keeps the dtype the runtime feeds it; "
                "choose a layer after the input instead."
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


def write_cfg(step1: Step1Files, layers: Iterable[str] | Mapping[str, str], out: Path | None = None,
              dtype: str = "float16") -> Path:
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
        raise WorkbookError(f"{step1.cfg} has more than one {CFG_KEY} section, so the edit reads back as {check.get(CFG_KEY)!r}; "
                            "keep one section (or re-run hybrid step 1).")
    return write_text_atomic(out, text)
