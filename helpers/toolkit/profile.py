"""Read the toolkit's own per-op profile out of a verbose build log: where every op runs, what it costs.

With `verbose=True`, rknn-toolkit2's native library prints, for every `build`, a "Network Layer Information
Table" (ID, OpType, DataType, Target NPU/CPU, shapes, Cycles DDR/NPU/Total, RW(KB), FullName; RK3576 adds a
SparseRatio column) and after it the memory plan: the feature and const tensor tables and the totals
("Total Internal Memory Size", "Total Weight Memory Size"). helpers.toolkit.session sends that native stdout into
the step's log (rknn/build.log), so the log already holds it: this module turns it into one pandas table per
build plus the memory totals. A log with several builds (a retry after a graph rule, a hybrid step) gives one
profile each; `read_profile` returns the last complete one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from helpers.core.errors import WorkbookError, strip_ansi

# "D RKNN: [12:07:53.343] " in front of every native line (absent in some captures: optional).
_PREFIX = re.compile(r"^(?:[DIWE] RKNN: \[[\d:.]+\] ?)?")
_LAYER = re.compile(
    r"^(?P<id>\d+)\s+(?P<op_type>\S+)\s+(?P<dtype>\S+)\s+(?P<target>[A-Z]+)\s+(?P<input_shape>\S+)\s+(?P<output_shape>\S+)\s+"
    r"(?P<ddr>\d+)/(?P<npu>\d+)/(?P<total>\d+)\s+(?:(?P<sparse>[\d.]+)%\s+)?(?P<rw_kb>[\d.]+)\s+(?P<name>.*?)\s*$")
_TOTAL = re.compile(r"^Total (?P<what>[\w ]+?) Size:\s*(?P<value>[\d.]+)\s*(?P<unit>[KMG]?B)\s*$")
_SPAN = re.compile(r"\|\s*0x(?P<start>[0-9a-fA-F]+)[\s*]+0x(?P<end>[0-9a-fA-F]+)\s+0x[0-9a-fA-F]+\s*$")
_UNIT_KB = {"B": 1 / 1024, "KB": 1.0, "MB": 1024.0, "GB": 1024.0 ** 2}
COLUMNS = ["id", "op_type", "dtype", "target", "input_shape", "output_shape", "ddr_cycles", "npu_cycles", "total_cycles",
           "sparse_ratio", "rw_kb", "name"]
_TENSOR_TABLES = (("Feature Tensor Information Table", "internal_memory"), ("Const Tensor Information Table", "weight_memory"))
IO_OPS = ("InputOperator", "OutputOperator")  # the graph's inputs and outputs: listed on the CPU, cost nothing


@dataclass
class BuildProfile:
    """One build's per-op table (COLUMNS, one row per op) and its memory figures in KB.

    memory_kb: the totals the log states, keyed by their words in snake case ("internal_memory": Total Internal
    Memory Size, "weight_memory": Total Weight Memory Size, and any other "Total ... Size" line).
    spans_kb: the extent of the feature ("internal") and const ("weight") tensor tables, end - start of the
    address ranges they list: a check that the tables were read whole (it equals the stated totals)."""

    layers: pd.DataFrame
    memory_kb: dict[str, float] = field(default_factory=dict)
    spans_kb: dict[str, float] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when the build got as far as stating its memory totals."""
        return bool(self.memory_kb)

    @property
    def ops(self) -> pd.DataFrame:
        """The layers without the input/output markers."""
        return self.layers[~self.layers["op_type"].isin(IO_OPS)]

    @property
    def cpu_ops(self) -> pd.DataFrame:
        """Ops the toolkit placed on the CPU (each one a hand-over NPU -> CPU -> NPU at run time)."""
        ops = self.ops
        return ops[ops["target"] != "NPU"]

    @property
    def total_cycles(self) -> int:
        """Sum of the per-op total cycles: the toolkit's cycle model of one inference on the NPU."""
        return int(self.layers["total_cycles"].sum())

    @property
    def weight_kb(self) -> float | None:
        return self.memory_kb.get("weight_memory")

    @property
    def internal_kb(self) -> float | None:
        return self.memory_kb.get("internal_memory")


def _clean_lines(text: str) -> list[str]:
    """The log's lines without colour codes and the native 'D RKNN: [time]' prefix."""
    return [_PREFIX.sub("", ln).rstrip() for ln in strip_ansi(text).splitlines()]


def _layers(lines: list[str]) -> pd.DataFrame:
    """The rows of one Network Layer Information Table (lines after its header)."""
    rows = []
    for ln in lines:
        m = _LAYER.match(ln.strip())
        if m:
            g = m.groupdict()
            rows.append([int(g["id"]), g["op_type"], g["dtype"], g["target"], g["input_shape"], g["output_shape"],
                         int(g["ddr"]), int(g["npu"]), int(g["total"]), float(g["sparse"]) / 100 if g["sparse"] else None,
                         float(g["rw_kb"]), g["name"]])
    return pd.DataFrame(rows, columns=COLUMNS)


def _table_end(lines: list[str], start: int) -> int:
    """Index of the dashed line closing the table whose header row is at start + 1 (header, dashes, rows, dashes)."""
    dashes = [i for i in range(start, len(lines)) if lines[i].startswith("---")]
    return dashes[2] if len(dashes) > 2 else len(lines)


def _span_kb(lines: list[str]) -> float | None:
    """end - start of the address ranges a tensor table lists, in KB."""
    spans = [(int(m["start"], 16), int(m["end"], 16)) for m in map(_SPAN.search, lines) if m]
    return (max(e for _, e in spans) - min(s for s, _ in spans)) / 1024 if spans else None


def _memory(lines: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """The stated totals and the tensor tables' spans in the lines after a layer table."""
    totals: dict[str, float] = {}
    spans: dict[str, float] = {}
    for i, ln in enumerate(lines):
        m = _TOTAL.match(ln.strip())
        if m:
            key = m["what"].strip().lower().replace(" ", "_")
            totals[key] = float(m["value"]) * _UNIT_KB[m["unit"]]
        for title, key in _TENSOR_TABLES:
            if title in ln:
                span = _span_kb(lines[i + 1:_table_end(lines, i)])
                if span is not None:
                    spans[key] = span
    return totals, spans


def parse_profiles(text: str) -> list[BuildProfile]:
    """Every build's profile in a log's text, in order (empty when the build was not verbose)."""
    lines = _clean_lines(text)
    heads = [i for i, ln in enumerate(lines) if "Network Layer Information Table" in ln]
    profiles = []
    for k, head in enumerate(heads):
        stop = heads[k + 1] if k + 1 < len(heads) else len(lines)
        end = _table_end(lines, head)
        totals, spans = _memory(lines[end:stop])
        profiles.append(BuildProfile(_layers(lines[head:end]), totals, spans))
    return profiles


def read_profile(log_path: str | Path) -> BuildProfile:
    """The last complete build profile in a toolkit log; WorkbookError naming the fix when there is none."""
    log_path = Path(log_path)
    if not log_path.is_file():
        raise WorkbookError(f"Build log {log_path} does not exist; run the convert step (notebook 20) first.")
    profiles = [p for p in parse_profiles(log_path.read_text(errors="replace")) if p.complete and len(p.layers)]
    if not profiles:
        raise WorkbookError(f"Build log {log_path} holds no finished per-op profile; build again with the toolkit's verbose=True "
                            "(the workbook's default) and let the build finish.")
    return profiles[-1]
