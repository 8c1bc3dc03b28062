"""Which layers of a parsed per-layer table are warning signs, and their ranking by the error each adds on its own."""
from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.steps.analysis.parse import NON_LAYER_OPS

# The one definition of "layers" every count of notebooks 50 and 60 uses ("N of M layers ..."): candidates() below.
LAYERS_MEANING = ("rows of error_analysis.txt with values, without the input and its dtype conversions (exDataConvert); "
                  "layers the compiler fused into the next one have no output of their own and are not counted")


def candidates(df: pd.DataFrame) -> pd.DataFrame:
    """The layers every count is over (LAYERS_MEANING): rows with values that are real layers (not the input,
    dtype conversions or fused rows)."""
    return df[~df["op"].isin(NON_LAYER_OPS) & ~df["fused"]]


def warning_signs(df: pd.DataFrame, threshold: float = 0.99) -> pd.DataFrame:
    """The two warning signs: a cosine below threshold (entire or single), and NaN/inf values
    (an all-zero or overflowing tensor). Fused rows have no values and are not flagged."""
    rows = []
    for _, r in df[~df["fused"]].iterrows():
        reasons = []
        if r.get("flags"):
            reasons.append(f"non-numeric values ({r['flags']}): all-zero or overflowing tensor")
        for col in ("entire_cos", "single_cos", "runtime_entire_cos"):
            v = r.get(col, np.nan)
            if col in df and pd.notna(v) and v < threshold:
                reasons.append(f"{col} {v:.5f} < {threshold}")
        if reasons:
            rows.append({"index": r["index"], "op": r["op"], "name": r["name"], "warning": "; ".join(reasons)})
    return pd.DataFrame(rows, columns=["index", "op", "name", "warning"])


def rank_layers(df: pd.DataFrame) -> pd.DataFrame:
    """Layers with two scores, sorted by the first:
    - single_drop = 1 - single_cos: the error this layer adds on its own, fed exact (float) inputs;
      large = the layer itself quantizes badly -> a hybrid (float16) candidate.
    - gap = single_cos - entire_cos: how much worse the layer looks with the quantized model's real
      inputs than with exact ones; large = error accumulated upstream reaches it (fix it earlier)."""
    c = candidates(df).copy()
    c["single_drop"] = 1.0 - c["single_cos"]
    c["gap"] = c["single_cos"] - c["entire_cos"]
    c = c.sort_values(["single_drop", "gap"], ascending=False, na_position="last")
    c["rank_drop"] = np.arange(1, len(c) + 1)
    c["rank_gap"] = c["gap"].rank(ascending=False, method="first", na_option="bottom").astype(int)
    columns = ["index", "op", "name", "entire_cos", "single_cos", "single_drop", "gap", "rank_drop", "rank_gap"]
    return c[columns].reset_index(drop=True)
