"""The sentences and tables notebook 20 shows about a conversion: the options table (each meaning read from
notebook 20's parameters comments, the one place they are written), the sizes, the graph rules switched off,
the input/output dtype change, and the calibration file (its first lines, its format rule, its classes)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from helpers.toolkit.options import LEFT_OUT, ConvertConfig
from helpers.toolkit.record import ConvertRecord
from helpers.toolkit.session import DisabledRule

# One line each for two words the options and callouts use.
PASS_THROUGH = ("**pass-through**: the board's runtime hands your buffer to the NPU as is, with no type or layout "
                "conversion, so it must already be in the model's quantized type and layout.")
C_RUNTIME_API = ("**C runtime API**: `librknnrt`'s C functions (`rknn_init`, `rknn_inputs_set`, `rknn_run`, "
                 "`rknn_outputs_get`) that a C/C++ program on the board calls instead of Python's RKNNLite.")


def options_table(cfg: ConvertConfig, meanings: dict[str, str], extra: dict[str, Any] | None = None) -> pd.DataFrame:
    """The config as a DataFrame: option, value, what it does (meanings: notebook 20's parameters comments,
    helpers.widgets.tooltips("20_convert"); extra: workbook parameters shown first)."""
    rows = {**(extra or {}), **cfg.to_dict()}
    table = [{"option": k, "value": repr(v), "meaning": meanings.get(k, "")} for k, v in rows.items()]
    return pd.DataFrame(table).set_index("option")


def options_markdown(cfg: ConvertConfig, meanings: dict[str, str], extra: dict[str, Any] | None = None) -> str:
    """The options table as Markdown, every meaning in full (HTML reports do not cut Markdown cells)."""
    esc = lambda text: str(text).replace("|", "\\|")  # noqa: E731
    lines = ["| option | value | meaning |", "|---|---|---|"]
    for name, row in options_table(cfg, meanings, extra).iterrows():
        lines.append(f"| `{name}` | `{esc(row['value'])}` | {esc(row['meaning'])} |")
    left = "\n".join(f"- `{k}`: {v}" for k, v in LEFT_OUT.items())
    return "\n".join(lines) + f"\n\n**Options of `RKNN.config` left out on purpose:**\n{left}"


def disabled_rules_note(auto_disabled: list[DisabledRule], given: list[str] | None = None) -> str:
    """Markdown: which graph rules were switched off and why (empty list: a sentence saying none)."""
    if not auto_disabled:
        extra = f" (disable_rules={list(given)!r} were given as parameters)" if given else ""
        return f"> **Graph rules.** The build needed no rule switched off automatically{extra}."
    rows = "\n".join(f"> - `{d.rule}`: build failed in it with `{d.reason}`" for d in auto_disabled)
    return ("> **Graph rules switched off automatically.** The build failed and the toolkit's log named the rule to skip "
            "(\"You can add disable_rules=[...] in rknn.config()\"), so the build was repeated without it:\n"
            f"{rows}\n>\n> They are recorded in `rknn/convert.json`, and every later rebuild (30, 40, 50, 60, variants) "
            "uses the same rules. Whether this cost accuracy shows in notebook 30's FP32 vs INT8 figures.")


def size_table(record: ConvertRecord) -> pd.DataFrame:
    """Source model vs .rknn file sizes."""
    kind = "ONNX" if record.load_path == "onnx" else "TorchScript"
    rows = [{"file": f"{kind} ({record.source.name})", "MB": record.source_bytes / 1e6},
            {"file": f"RKNN ({record.rknn_path.name})", "MB": record.rknn_bytes / 1e6}]
    df = pd.DataFrame(rows).set_index("file").round(2)
    df["vs source"] = (df["MB"] / df["MB"].iloc[0]).round(2)
    return df


def dtype_callout(record: ConvertRecord) -> str:
    """Markdown callout about the input/output dtype change the toolkit announced during build, with
    one line each on the two terms it needs (C runtime API, pass-through)."""
    if not record.dtype_notes:
        return ("> **Input/output types.** The toolkit announced no dtype change: the model's inputs and outputs keep their "
                "float types.")
    notes = "; ".join(f"`{n}`" for n in record.dtype_notes)
    return (f"> **Input/output types changed for the board API.** The toolkit announced: {notes}. "
            "The Python APIs (toolkit, RKNNLite) convert for you, but with the C runtime API and pass-through "
            "you pass the quantized type yourself (without pass-through, ask for float and let the runtime convert, "
            "which costs time). The full message is in `rknn/build.log`.\n>\n"
            f"> - {C_RUNTIME_API}\n> - {PASS_THROUGH}")


# The rule of the toolkit's `dataset` file, as the tutorial states it for its datasets.txt.
CALIBRATION_RULE = ("**Format of the calibration file** (`build(dataset=...)`): one image per line, as an **absolute** path "
                    "(a relative line is read from the list's own folder, not from where you run). A model with several "
                    "inputs lists one file per input on the same line, separated by spaces; so the toolkit cannot read a path "
                    "that itself contains a space: the workbook lists such an image through a plain-named link beside the file.")


def calibration_markdown(path: Path, first: int = 5) -> str:
    """The calibration file's first lines, how many it has, and its format rule."""
    lines = Path(path).read_text().splitlines()
    shown = "\n".join(lines[:first]) + (f"\n... ({len(lines) - first} more)" if len(lines) > first else "")
    return f"`{path}` holds {len(lines)} line(s); the first {min(first, len(lines))}:\n\n```\n{shown}\n```\n\n{CALIBRATION_RULE}"


def calibration_counts(counts: dict[str, int], images: int, stratified: bool, detector: bool) -> tuple[str, pd.DataFrame]:
    """The sentence and the one-row table of how many calibration images hold each class."""
    how = ("drawn stratified (round-robin across the classes" + (", a detector's images by the classes of their boxes)"
           if detector else ")") if stratified else "drawn at random without regard to class (calib_stratified=False)")
    low, high = min(counts.values(), default=0), max(counts.values(), default=0)
    spread = f"{low}" if low == high else f"{low} to {high}"
    held = f"each class has boxes in {spread} of them" if detector else f"{spread} images per class"
    return f"{images} calibration images, {how}: {held}.", pd.DataFrame([counts], index=["images with a box of it" if detector
                                                                                         else "images"])
