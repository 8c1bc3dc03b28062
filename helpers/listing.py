"""Copyable listings of the toolkit's own calls, filled in with this run's values.

The notebooks call helpers; a learner also needs the plain rknn-toolkit2 lines to paste into a script
of their own. `call("rknn.config", mean_values=[[0, 0, 0]], ...)` renders one call as Python source,
`code(*lines)` a block (`Expr("img")` for a name instead of a value), and `show(...)` displays it as a
Markdown code block, which renders in the static HTML reports. `convert_calls(record)` gives the
RKNN() / config / load / build lines of notebook 20's recorded conversion, for every later step.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Iterable

from IPython.display import display

WIDTH = 100
# config options a listing always shows (the ones the lessons discuss) and the defaults of the others,
# which are left out of a listing while they keep their default value
ALWAYS_SHOWN = {"mean_values", "std_values", "target_platform", "quantized_dtype", "quantized_algorithm", "quantized_method"}
QUIET_DEFAULTS = {"optimization_level": 3, "float_dtype": "float16", "single_core_mode": False, "compress_weight": False,
                  "model_pruning": False, "quant_img_RGB2BGR": False}


class Expr:
    """A Python expression shown as is (a variable name), not as a quoted value."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def literal(value: Any) -> str:
    """A value as Python source: paths as strings, numpy scalars as plain numbers, floats shortened."""
    if isinstance(value, Expr):
        return value.text
    if isinstance(value, Path):
        return repr(str(value))
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):
        value = value.item()
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, (list, tuple)):
        inner = ", ".join(literal(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def call(func: str, *args: Any, assign: str = "", **kwargs: Any) -> str:
    """`assign = func(args, key=value, ...)` as source; one argument per line when it would be too long."""
    parts = [literal(a) for a in args] + [f"{k}={literal(v)}" for k, v in kwargs.items()]
    head = f"{assign} = " if assign else ""
    one = f"{head}{func}({', '.join(parts)})"
    if len(one) <= WIDTH or not parts:
        return one
    return f"{head}{func}(\n" + "".join(f"    {p},\n" for p in parts) + ")"


def code(*lines: str | Iterable[str]) -> str:
    """The lines (strings or lists of strings) as one block of source."""
    out: list[str] = []
    for item in lines:
        out.extend([item] if isinstance(item, str) else list(item))
    return "\n".join(out)


def markdown(source: str, title: str = "", language: str = "python") -> str:
    """A Markdown code block, with an optional lead-in line."""
    return (f"{title}\n\n" if title else "") + f"```{language}\n{source}\n```"


def html_block(source: str, title: str = "", language: str = "python") -> str:
    """The block as self-contained HTML (inline colours, a framed background), so it reads as code in
    any static report."""
    try:  # pygments is optional: without it the block is plain <pre>
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import get_lexer_by_name

        body = highlight(source, get_lexer_by_name(language), HtmlFormatter(noclasses=True, nobackground=True))
    except ImportError:
        body = f"<pre>{html.escape(source)}</pre>"
    lead = f"<p>{html.escape(title)}</p>" if title else ""
    return (f'{lead}<div style="background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:.2em .8em;'
            f'font-size:90%;overflow-x:auto">{body}</div>')


def show(source: str, title: str = "", language: str = "python") -> None:
    """Display the block in a notebook: framed HTML for the reports, Markdown and plain text as fallbacks."""
    display({"text/html": html_block(source, title, language), "text/markdown": markdown(source, title, language),
             "text/plain": source}, raw=True)


def convert_calls(record: Any, dataset: Path | None = None, var: str = "rknn", **overrides: Any) -> list[str]:
    """RKNN() + config + load_onnx / load_pytorch + build for a convert record (helpers.toolkit.record.ConvertRecord),
    with `dataset` instead of the recorded calibration list and config overrides (e.g. quantized_algorithm)."""
    cfg = type(record.config).from_dict({**record.config.to_dict(), **overrides})
    source = Path(record.source)
    size = int(record.input_size)
    kwargs = cfg.config_kwargs()
    shown = {k: v for k, v in kwargs.items() if k in ALWAYS_SHOWN or QUIET_DEFAULTS.get(k, object()) != v}
    rest = "  # every other option at the toolkit's default" if len(shown) < len(kwargs) else ""
    lines = ["from rknn.api import RKNN", "", f"{var} = RKNN(verbose=False)", call(f"{var}.config", **shown) + rest]
    if record.load_path == "pytorch":
        lines.append(call(f"{var}.load_pytorch", model=source, input_size_list=[[1, len(cfg.mean_values), size, size]]))
    else:
        lines.append(call(f"{var}.load_onnx", model=source))
    build = cfg.build_kwargs(Path(dataset) if dataset else record.dataset)
    lines.append(call(f"{var}.build", **{k: v for k, v in build.items() if v is not None or k == "dataset"}))
    return lines


def simulator_calls(record: Any, image: Path, task: str = "classify", kpt_shape: list | None = None) -> str:
    """Notebook 30 as plain toolkit calls: rebuild in this process, init_runtime(target=None), one image
    (a detector's, segmentation or pose model's image letterboxed and its raw outputs decoded by the task's
    helpers/tasks/<task>/postprocess.py; a pose model's decode needs its kpt_shape)."""
    size = int(record.input_size)
    family = task in ("detect", "segment", "pose")
    if family:
        fit = [f"img, lb = letterbox(img, {size})  # keep the aspect ratio, pad to {size}x{size} (lb undoes it)"]
        extra = f", kpt_shape={list(kpt_shape or [])}" if task == "pose" else ""
        found = {"segment": "masks", "pose": "keypoints"}.get(task)
        show = [f"dets = postprocess(outputs, lb{extra})  # decode, score threshold, per-class NMS (CPU)",
                f"print(dets.boxes, dets.scores, dets.classes{f', dets.{found}.shape' if found else ''})"]
        imports = ["from helpers.tasks.detect.postprocess import letterbox"
                   + (", postprocess" if task == "detect" else ""),
                   *([f"from helpers.tasks.{task}.postprocess import postprocess"] if task != "detect" else [])]
    else:
        fit = [f"img = cv2.resize(img, ({size}, {size}))  # the workbook scales the short side and centre-crops"]
        show = ["print(outputs[0].argmax())"]
        imports = []
    return code(
        "import cv2", *imports,
        *convert_calls(record),
        call("rknn.init_runtime", target=None) + "  # the simulator: a model built in this process, no board",
        call("cv2.imread", Path(image), assign="bgr"),
        "img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # keep the result: cvtColor does not change bgr",
        *fit,
        call("rknn.inference", inputs=[Expr("img")], data_format="nhwc", assign="outputs"),
        *show,
        "rknn.release()",
    )


def analysis_calls(record: Any, dataset: Path | None, images: Iterable[Path], out_dir: Path) -> str:
    """Notebook 50 as plain toolkit calls: build, then accuracy_analysis once per image (simulator only)."""
    lines = convert_calls(record, dataset=dataset)
    for k, img in enumerate(images):
        lines.append(call("rknn.accuracy_analysis", inputs=[Path(img)], output_dir=Path(out_dir) / f"{k:02d}_{Path(img).stem}",
                          target=None))
    return code(lines, "rknn.release()")


def hybrid_calls(record: Any, dataset: Path | None, step1_dir: Path, stem: str, edited_cfg: Path, out_rknn: Path,
                 proposal: bool) -> str:
    """Notebook 60 as plain toolkit calls: step 1 in its own folder, the cfg edit, step 2, export."""
    step1_dir = Path(step1_dir)
    head = convert_calls(record, dataset=dataset)[:-1]  # config + load, no build: step 1 quantizes
    return code(
        "import os", *head,
        f"os.chdir({literal(step1_dir)})  # step 1 writes {stem}.model, {stem}.data, {stem}.quantization.cfg here",
        call("rknn.hybrid_quantization_step1", dataset=Path(dataset) if dataset else record.dataset, proposal=proposal,
             proposal_dataset_size=1),
        "rknn.release()",
        f"# copy {stem}.quantization.cfg, list the float16 layers under custom_quantize_layers (block mapping):",
        f"#   see {Path(edited_cfg).name}",
        "rknn = RKNN(verbose=False)",
        call("rknn.hybrid_quantization_step2", model_input=step1_dir / f"{stem}.model", data_input=step1_dir / f"{stem}.data",
             model_quantization_cfg=Path(edited_cfg)),
        call("rknn.export_rknn", Path(out_rknn)),
        "rknn.release()",
    )
