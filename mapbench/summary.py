"""From result rows to one summary per configuration (what `run` prints and `--json` emits)."""

from __future__ import annotations

import math

import pandas as pd
import pyarrow as pa

from .results import CONFIG_KEYS
from .stats import summarize


def summaries(table: pa.Table | pd.DataFrame) -> list[dict]:
    """One dict per measured configuration (controls excluded, warm-up samples dropped)."""
    df = table.to_pandas() if isinstance(table, pa.Table) else table
    df = df[(df["strategy"] != "control") & (~df["warmup"].astype(bool)) & (df["status"] == "ok")]
    out = []
    keys = [k for k in CONFIG_KEYS if k in df.columns]
    for config, group in df.groupby(keys, dropna=False, sort=False):
        s = summarize(group["ns_per_op"].to_numpy(), group["instance"].fillna(0).to_numpy())
        record = {k: _plain(v) for k, v in zip(keys, config)}
        record.update(
            median_ns_per_op=s.median,
            ci_low=s.ci_low,
            ci_high=s.ci_high,
            iqr_ns=s.q3 - s.q1,
            cv=s.cv,
            wide_spread=s.wide,
            samples=s.n,
            instances=int(group["instance"].nunique()),
            ops_per_s=1e9 / s.median if s.median > 0 else None,
            gross_median_ns_per_op=float(group["gross_ns_per_op"].median()),
            control_ns_per_op=_plain(group["control_ns_per_op"].median()),
            map_memory_bytes=_plain(group["map_memory_bytes"].max()),
            bloom_fp_rate=_plain(group["bloom_fp_rate"].mean()),
            bloom_fp_theory=_plain(group["bloom_fp_theory"].mean()),
            prog_xlated_bytes=_plain(group["prog_xlated_bytes"].max()),
            prog_jited_bytes=_plain(group["prog_jited_bytes"].max()),
            events_per_s=_plain(group["events_per_s"].median()),
            cpu_overhead_share=_plain(group["cpu_overhead_share"].median()),
            delay_median_ns=_plain(group["delay_median_ns"].median()),
            measured_hit_ratio=_plain(group["measured_hit_ratio"].mean()),
            run_id=str(group["run_id"].iloc[0]),
        )
        out.append(record)
    return out


def _plain(value):
    """numpy/pandas scalars and NaN to JSON-able Python values."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
