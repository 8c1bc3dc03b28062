"""Copyable listings of the toolkit's own calls, filled in with this run's values.

The notebooks call helpers; a learner also needs the plain rknn-toolkit2 lines to paste into a script
of their own. `call("rknn.config", mean_values=[[0, 0, 0]], ...)` renders one call as Python source,
`code(*lines)` a block (`Expr("img")` for a name instead of a value), and `show(...)` displays it as a
Markdown code block, which renders in the static HTML reports. `convert_calls(record)` gives the
RKNN() / config / load / build lines of notebook 20's recorded conversion, for every later step.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

WIDTH = 100


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


def markdown(source: str, title: str = "") -> str:
    """A Markdown Python code block, with an optional lead-in line."""
    return (f"{title}\n\n" if title else "") + f"```python\n{source}\n```"


def show(source: str, title: str = "") -> None:
    """Display the block in a notebook (Markdown renders in the static reports too)."""
    from IPython.display import Markdown, display

    display(Markdown(markdown(source, title)))


def convert_calls(record: Any, dataset: Path | None = None, var: str = "rknn", **overrides: Any) -> list[str]:
    """RKNN() + config + load_onnx / load_pytorch + build for a convert record (helpers.convert.ConvertRecord),
    with `dataset` instead of the recorded calibration list and config overrides (e.g. quantized_algorithm)."""
    cfg = type(record.config).from_dict({**record.config.to_dict(), **overrides})
    source = Path(record.source)
    size = int(record.input_size)
    lines = ["from rknn.api import RKNN", "", f"{var} = RKNN(verbose=False)", call(f"{var}.config", **cfg.config_kwargs())]
    if record.load_path == "pytorch":
        lines.append(call(f"{var}.load_pytorch", model=source, input_size_list=[[1, len(cfg.mean_values), size, size]]))
    else:
        lines.append(call(f"{var}.load_onnx", model=source))
    build = cfg.build_kwargs(Path(dataset) if dataset else record.dataset)
    lines.append(call(f"{var}.build", **{k: v for k, v in build.items() if v is not None or k == "dataset"}))
    return lines
