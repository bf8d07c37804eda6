"""From result rows to one summary per configuration, and to the head-to-head ratios of each
comparison (what `run` prints, `--json` emits, and the report and plots draw)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from mapbench.present.render import config_label, varying_keys
from mapbench.results import columns
from mapbench.results.stats import paired_ratio, summarize
from mapbench.results.store import CONFIG_KEYS, LOAD_KEYS, config_of, measured, plain

SAMPLE_KEYS = [*LOAD_KEYS, "sample"]
# What a ratio's context names, of what its sides share
CONTEXT_KEYS = [k for k in CONFIG_KEYS if columns.BY_NAME[k].context]
# The figures a summary pools over its samples, each as the registry says (median, mean or max)
AGGREGATED = {c.name: c.aggregate for c in columns.COLUMNS if c.aggregate}


def _frame(table: pa.Table | pd.DataFrame) -> pd.DataFrame:
    return table.to_pandas() if isinstance(table, pa.Table) else table


def load_ids(df: pd.DataFrame) -> pd.Series:
    """One label per load: its load_id (run/comparison/load); for rows from before load_id, the
    same from their columns. A load of another run or another comparison is another load,
    whatever its index: the same configuration measured in several comparisons has the loads of
    them all."""
    comparison = df["comparison"].fillna("").astype(str).str.rpartition("/")[2] if "comparison" in df else ""
    derived = df["run_id"].astype(str) + "/" + comparison + "/" + df["instance"].fillna(0).astype(int).astype(str)
    return df["load_id"].fillna(derived) if "load_id" in df else derived


def summaries(table: pa.Table | pd.DataFrame) -> list[dict]:
    """One dict per measured configuration (controls excluded, warm-up samples dropped)."""
    df = measured(_frame(table))
    out = []
    for config, group in df.groupby(CONFIG_KEYS, dropna=False, sort=False):
        s = summarize(group["ns_per_op"].to_numpy(), load_ids(group).to_numpy())
        gross = float(group["gross_ns_per_op"].median())
        record = config_of(dict(zip(CONFIG_KEYS, config)))
        record.update(
            median_ns_per_op=s.median, ci_low=s.ci_low, ci_high=s.ci_high, iqr_ns=s.q3 - s.q1, cv=s.cv,
            wide_spread=s.wide, samples=s.n, instances=int(load_ids(group).nunique()),
            # what one operation really takes, loop included: the rate a program can sustain
            ops_per_s=1e9 / gross if gross > 0 else None,
            gross_median_ns_per_op=gross,
            run_ids=sorted(group["run_id"].astype(str).unique()),
            **{c: plain(getattr(group[c], how)()) for c, how in AGGREGATED.items()},
            # writes: per successful op, so how many succeeded goes beside the figure
            success_rate=plain(group["ops_succeeded"].sum() / group["ops"].sum())
            if group["success_rate"].notna().any() else None,
            # several producers: each CPU's median beside the pooled one
            per_cpu={int(c): float(v) for c, v in group.groupby("cpu")["ns_per_op"].median().items()}
            if (record["producers"] or 1) > 1 else None,
            memory_source=plain(group["memory_source"].dropna().iloc[0]) if group["memory_source"].notna().any()
            else None,
        )
        # memory per entry held after each sample: the cgroup's where there is one, else fdinfo's
        # (rows from before entries_held: fdinfo over the nominal entries)
        if group["bytes_per_entry"].notna().any():
            record.update(bytes_per_entry=float(group["bytes_per_entry"].median()),
                          bytes_per_entry_source=record["memory_source"])
        elif record["fdinfo_bytes_per_entry"] is not None:
            record.update(bytes_per_entry=record["fdinfo_bytes_per_entry"], bytes_per_entry_source="fdinfo")
        else:
            held = record["entries"] or record["map_size"]
            record.update(bytes_per_entry=(record["map_memory_bytes"] / held
                                           if record["map_memory_bytes"] is not None and held else None),
                          bytes_per_entry_source="fdinfo, nominal entries")
        record.update(_scaling(record, group, df))
        out.append(record)
    return out


def _scaling(record: dict, group: pd.DataFrame, df: pd.DataFrame) -> dict:
    """Several producers: the share of each sample's span during which all of them ran (median
    and lowest), and scaling efficiency. Efficiency is per sample: the aggregate ops/s of the N
    producers over N x the ops/s of the same comparison's one-producer side in the same load and
    sample, on the same entries (for disjoint slices, one producer's slice); its CI is the
    paired bootstrap's. 1.0 is perfect scaling. Only where every producer does the same op
    (readers only, or writers only)."""
    n, writers = record.get("producers") or 1, record.get("writers") or 0
    if n == 1:
        return {"scaling_efficiency": None}
    out = {"window_overlap": plain(group["window_overlap"].median()),
           "window_overlap_min": plain(group["window_overlap"].min()),
           "scaling_efficiency": None, "scaling_ci_low": None, "scaling_ci_high": None, "scaling_pairs": 0}
    if writers not in (0, n):
        return out
    solo = {**{k: record[k] for k in CONFIG_KEYS}, "producers": 1, "writers": min(writers, 1),
            "overlap": f"slice 1/{n}" if record.get("overlap") == "disjoint" else None,
            "role": "writer" if writers else None}
    base = df[df["comparison"].isin(group["comparison"].dropna().unique())]
    for k, v in solo.items():
        base = base[base[k].isna() if v is None else base[k] == v]
    keys = ["run_id", "comparison", "instance", "sample"]
    solo_runs = base.set_index(keys)
    solo_ops_per_s = solo_runs["ops_succeeded"].fillna(solo_runs["ops"]) * 1e9 / solo_runs["elapsed_ns"]
    paired = pd.concat([group.groupby(keys)["aggregate_ops_per_s"].first(), solo_ops_per_s.rename("solo")],
                       axis=1, join="inner").dropna()
    if paired.empty:
        return out
    loads = [f"{r}/{i}" for r, _, i, _ in paired.index]
    ratio, low, high, n_loads = paired_ratio(paired["aggregate_ops_per_s"], n * paired["solo"], loads)
    return {**out, "scaling_efficiency": ratio, "scaling_ci_low": low, "scaling_ci_high": high,
            "scaling_pairs": len(paired), "scaling_loads": n_loads}


def head_to_head(table: pa.Table | pd.DataFrame) -> list[dict]:
    """Per comparison with more than one side: each side's ratio to the first side (position
    0), from samples paired by load and sample index: the geometric mean over loads of each
    load's ratio of medians, with the t interval over loads (stats.paired_ratio). `loads`: how
    many loads were paired; a verdict needs stats.MIN_LOADS_FOR_VERDICT of them (stats.direction)."""
    df = measured(_frame(table))
    df = df[df["comparison"].notna()]
    out = []
    for comparison, group in df.groupby("comparison", sort=False):
        # a side of several producers: per sample, the mean over its producers of each role
        group = group.assign(role=group["role"].fillna(""))
        sides = {}
        for (p, role), g in group.groupby(["position", "role"], sort=True):
            per_sample = g.groupby(SAMPLE_KEYS)["ns_per_op"].mean().to_frame()
            rest = g.groupby(SAMPLE_KEYS).first().drop(columns=["ns_per_op", "role"])
            sides[(int(p), role)] = per_sample.join(rest).assign(role=role or None)
        bases = [k for k in sides if k[0] == 0]
        if not bases or len(sides) < 2:
            continue
        base = sides[bases[0]]
        configs = [config_of(g.iloc[0]) for g in sides.values()]
        varying = varying_keys(configs)
        context = config_label(configs[0], [k for k in CONTEXT_KEYS if k not in varying])
        for key, side in sorted(sides.items()):
            if key == bases[0]:
                continue
            paired = side[["ns_per_op"]].join(base[["ns_per_op"]].rename(columns={"ns_per_op": "ns_per_op_base"}),
                                              how="inner")
            loads = [f"{r}/{i}" for r, i, _ in paired.index]
            ratio, low, high, n_loads = paired_ratio(paired["ns_per_op"], paired["ns_per_op_base"], loads)
            num, den = config_of(side.iloc[0]), config_of(base.iloc[0])
            out.append({
                "comparison": comparison, "context": context,
                "numerator": config_label(num, varying), "denominator": config_label(den, varying),
                "ratio": ratio, "ci_low": low, "ci_high": high, "pairs": len(paired), "loads": n_loads,
                "numerator_config": num, "denominator_config": den,
            })
    return out
