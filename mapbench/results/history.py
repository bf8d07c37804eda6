"""One configuration over many runs, from the dataset: per run its median and 95 % CI, and the
runs where its level shifted (docs/method.md, "Dataset and history").

Change points: PELT (ruptures) on the log of the per-run medians, with the L1 cost (deviations
from each segment's median, so one outlier run moves no segment's level and is never a step),
a minimum segment of stats.MIN_SEGMENT runs, and a penalty scaled to the series' own run-to-run
noise (estimated from successive differences, which a step barely moves), so a series that
only drifts finds no step. Calibrated on simulated series (200 seeds each): no step found in
pure noise of 5 %, a 30 % step found within a run every time, an outlier run of 2.5x never
taken for a step. At each step the environment columns are named that changed there and
stayed the same within both segments (a new kernel, clang or object is the usual suspect): a
column that also changed within a segment changed without a step there, and one that alternates
between runs is no change at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mapbench.present.render import config_label, varying_keys
from mapbench.results import columns, dataset
from mapbench.results.stats import change_points, summarize  # change points: in stats, diff's run variance uses them
from mapbench.results.store import CONFIG_KEYS, LEGACY_MACHINE_KEYS, SHAPE_DEFAULTS, as_measured, config_of, plain
from mapbench.results.summary import load_ids

# What each run records beside its figure: where and with what it was measured, and the object.
ENV_COLUMNS = [*columns.named(columns.ENVIRONMENT), *columns.named(columns.BUILD)]  # store.ENV_KEYS, the object
# What a step names where it changed: all of those but a column that changes at every commit
# (git_describe), which would be named at every step; object_sha256 says whether the programs changed.
SUSPECTS = [c for c in ENV_COLUMNS if columns.BY_NAME[c].suspect]


@dataclass(frozen=True)
class Step:
    index: int  # the first run of the new level
    run_id: str
    ratio: float  # median of the new segment over the old
    changed: dict  # environment column -> (before, after)


def changed_at(before: list[dict], after: list[dict], names: list[str] = SUSPECTS) -> dict:
    """The columns a step names: those whose one value in every run before it differs from their
    one value in every run after it, as {column: (before, after)}. A column with several values
    within either segment is not named: it changed where the level did not (a kernel upgrade a
    segment spans), or alternates between runs (two hosts taking turns)."""
    out = {}
    for c in names:
        old, new = {r[c] for r in before}, {r[c] for r in after}
        if len(old) == 1 and len(new) == 1 and old != new:
            out[c] = (next(iter(old)), next(iter(new)))
    return out


def history_sql(where: dict, kernel: str | None = None, machine: str | None = None) -> tuple[str, list]:
    """The query of the measured rows of the configurations matching `where`, naming only the
    columns history needs: DuckDB reads no other column, and no partition that the kernel or
    machine filter excludes."""
    clauses, params = ["status = 'ok'", "NOT warmup", "strategy <> 'control'"], []
    for column, value in where.items():
        default = SHAPE_DEFAULTS.get(column)  # a file from before the column: the value it had
        clauses.append(f"coalesce({column}, {default!r}) = ?" if default is not None else f"{column} = ?")
        params.append(value)
    for key, value in (("kernel", kernel), ("machine", machine)):
        if value is not None:
            clauses.append(f"{key} = ?")  # the hive partition: pruned before any file is opened
            params.append(dataset.partition_value(value))
    columns = sorted({"run_id", "timestamp", "instance", "ns_per_op", *ENV_COLUMNS, *CONFIG_KEYS,
                      *LEGACY_MACHINE_KEYS, "machine_name"})  # as_measured names rows from before fingerprints
    return f"SELECT {', '.join(columns)} FROM results WHERE {' AND '.join(clauses)}", params


def query_rows(root: Path, where: dict, kernel: str | None = None, machine: str | None = None) -> pd.DataFrame:
    sql, params = history_sql(where, kernel, machine)
    return as_measured(dataset.connect(root).sql(sql, params=params).to_arrow_table()).to_pandas()


def history(root: Path, where: dict, kernel: str | None = None, machine: str | None = None,
            timings: dict | None = None) -> list[dict]:
    """Per matching configuration: its runs in time order (median, CI, environment) and steps.
    `timings` receives the seconds the query and the summaries took."""
    started = time.perf_counter()
    rows = query_rows(root, where, kernel, machine)
    if timings is not None:
        timings["query_s"] = time.perf_counter() - started
    if rows.empty:
        return []
    found = []  # (configuration, its runs, its steps)
    for config, group in rows.groupby(CONFIG_KEYS, dropna=False, sort=False):
        runs = []
        for run_id, g in group.groupby("run_id", sort=False):
            s = summarize(g["ns_per_op"].to_numpy(), load_ids(g).to_numpy())
            # plain: a null read from an integer column is NaN, and NaN != NaN would be a change
            runs.append({"run_id": run_id, "timestamp": g["timestamp"].min(), "median": s.median,
                         "ci_low": s.ci_low, "ci_high": s.ci_high, "samples": s.n,
                         **{c: plain(g[c].iloc[0]) for c in ENV_COLUMNS}})
        runs.sort(key=lambda r: (r["timestamp"], r["run_id"]))
        medians = [r["median"] for r in runs]
        steps = []
        if all(m > 0 for m in medians):
            bounds = [0, *change_points(medians), len(runs)]
            for prev, b, nxt in zip(bounds, bounds[1:], bounds[2:]):
                before, after = runs[prev:b], runs[b:nxt]
                changed = changed_at(before, after)
                ratio = float(np.median(medians[b:nxt]) / np.median(medians[prev:b]))
                steps.append(Step(b, after[0]["run_id"], ratio, changed))
        found.append((config_of(dict(zip(CONFIG_KEYS, config))), runs, steps))
    if timings is not None:
        timings["summaries_s"] = time.perf_counter() - started - timings["query_s"]
    configs = [config for config, _, _ in found]
    keys = varying_keys(configs) if len(configs) > 1 else ["strategy", "op", "map_size"]
    return [{"config": config, "label": config_label(config, keys), "runs": runs, "steps": steps}
            for config, runs, steps in found]
