"""Conclusions scoped to their machine, and compared across machines (docs/method.md,
"Machines").

Head-to-head ratios survive a machine's drift, not a change of machine: the same default bench
on an AMD EPYC and an Intel Xeon VM of one kind put some ratios on opposite sides of 1. So a
report names, for every conclusion, the machine and kernel it was measured on, and where a
result set holds the same comparison from several machines, one table puts its ratio on each
side by side and says whether the conclusion holds on all of them: the same side of 1 with a
95 % CI that excludes 1 on every machine.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mapbench.measure.machine import short_model
from mapbench.present import render
from mapbench.results.stats import ABOVE, BELOW, direction
from mapbench.results.store import config_key

HOLDS, DIFFERS, NOT_SHOWN = "holds", "differs", "not shown on all"
ORDER = {DIFFERS: 0, NOT_SHOWN: 1, HOLDS: 2}


def by_machine(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The rows of each machine, in the order of its first row's timestamp."""
    first = df.groupby("machine", dropna=False)["timestamp"].min().sort_values(kind="stable")
    return [(m, df[df["machine"].isna() if pd.isna(m) else df["machine"] == m]) for m in first.index]


def joined(rows: pd.DataFrame, column: str) -> str:
    """One column of one machine's rows: its value, or every value its runs had."""
    return ", ".join(map(str, sorted(rows[column].dropna().unique(), key=str))) or "unknown"


def scope(rows: pd.DataFrame) -> str:
    """'on this AMD EPYC, 2 vCPUs, L2 1 MiB, L3 32 MiB, 23 GiB [machine amd-26-2-1-9e0d687b],
    kernel 6.18.44-fc-v657': what every conclusion drawn from these rows holds for."""
    kernels = sorted(rows["kernel_release"].dropna().unique(), key=str)
    return (f"on this {joined(rows, 'machine_name')} [machine {joined(rows, 'machine')}], "
            f"kernel{'s' if len(kernels) > 1 else ''} {', '.join(map(str, kernels)) or 'unknown'}")


def nested(lines: list[str]) -> list[str]:
    """A part of the report one heading level down (under its machine's heading)."""
    return ["#" + line if line.startswith("## ") else line for line in lines]


def _key(r: dict) -> tuple:
    return config_key(r["numerator_config"]), config_key(r["denominator_config"])


def latest(ratios: list[dict], rows: pd.DataFrame) -> dict[tuple, dict]:
    """One ratio per conclusion (numerator and denominator configurations): the latest run's
    where several runs of the machine measured it."""
    run_of = rows.groupby("comparison")["run_id"].first()
    started = rows.groupby("run_id")["timestamp"].min()
    out = {}
    for r in sorted(ratios, key=lambda r: (started[run_of[r["comparison"]]], run_of[r["comparison"]])):
        out[_key(r)] = r  # a later run's replaces an earlier one's
    return out


def side(r: dict | None) -> int:
    """-1: the CI lies below 1; 1: above; 0: it holds 1, or there is no ratio, or too few loads
    for a verdict (stats.direction, the one gate of verdicts)."""
    if r is None:
        return 0
    return {BELOW: -1, ABOVE: 1}.get(direction(r), 0)


def verdict(cells: list[dict | None]) -> str:
    sides = {side(c) for c in cells}
    if {-1, 1} <= sides:
        return DIFFERS
    return HOLDS if sides in ({-1}, {1}) else NOT_SHOWN


def _label(rows: pd.DataFrame) -> str:
    return f"{short_model(rows['cpu_model'].dropna().iloc[0] if rows['cpu_model'].notna().any() else None)} " \
           f"[{joined(rows, 'machine')}]"


def table(parts: list[tuple[str, pd.DataFrame, list[dict]]]) -> tuple[list[str], list[list[str]], dict]:
    """Header, rows and counts of the across-machines table: every conclusion that at least two
    machines measured (parts: machine id, its rows, its head-to-head ratios)."""
    per_machine = [latest(ratios, rows) for _, rows, ratios in parts]
    counts: dict[tuple, int] = {}
    for found in per_machine:
        for key in found:
            counts[key] = counts.get(key, 0) + 1
    shared = [k for k, n in counts.items() if n > 1]
    out, spreads = [], []
    for key in shared:
        cells = [found.get(key) for found in per_machine]
        first = next(c for c in cells if c is not None)
        values = [c["ratio"] for c in cells if c is not None and c["ratio"] is not None and c["ratio"] > 0]
        spread = max(values) / min(values) if len(values) > 1 else None
        if spread is not None:
            spreads.append(spread)
        out.append((verdict(cells), f"{first['context']}: {first['numerator']} / {first['denominator']}",
                    [render.fmt_ratio(c) if c is not None else "-" for c in cells],
                    f"{spread:.2f}x" if spread is not None else "-"))
    out.sort(key=lambda row: (ORDER[row[0]], row[1]))
    header = ["conclusion: side / vs", *(_label(rows) for _, rows, _ in parts), "max / min", "on all machines"]
    rows = [[label, *cells, spread, v] for v, label, cells, spread in out]
    tally = {v: sum(row[0] == v for row in out) for v in (HOLDS, DIFFERS, NOT_SHOWN)}
    return header, rows, {**tally, "shared": len(shared), "spreads": spreads}


def section(parts: list[tuple[str, pd.DataFrame, list[dict]]]) -> list[str]:
    """The report's "Across machines" section; none unless two machines measured a conclusion."""
    if len(parts) < 2:
        return []
    header, rows, n = table(parts)
    if not rows:
        return []
    lines = ["## Across machines", "",
             "Each conclusion's ratio (95 % CI) on each machine that measured it, head to head in its own "
             "runs (a machine's latest run where several measured it). It **holds** on all machines when "
             "every machine's CI lies on the same side of 1; it **differs** when one machine's lies below "
             "1 and another's above; otherwise it is **not shown on all** (a CI holds 1, a machine had too "
             "few loads for a verdict, or did not measure it). Holding is about the direction: max / min "
             "says how far the machines' ratios part. The machines:", ""]
    for _, machine_rows, _ in parts:
        lines.append(f"- {_label(machine_rows)}: {joined(machine_rows, 'machine_name')}; kernel "
                     f"{joined(machine_rows, 'kernel_release')}; {machine_rows['run_id'].nunique()} run(s)")
    spreads = np.array(n["spreads"])
    lines += ["", f"{n['shared']} conclusions measured on more than one machine (holds on all: {n[HOLDS]}; "
              f"differs: {n[DIFFERS]}; not shown on all: {n[NOT_SHOWN]})."
              + (f" The same ratio on different machines: a median {np.median(spreads):.2f}x apart (max / min), "
                 f"90th percentile {np.percentile(spreads, 90):.2f}x, largest {spreads.max():.2f}x."
                 if len(spreads) else ""), "", render.markdown(header, rows), ""]
    return lines
