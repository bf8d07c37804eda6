"""How often does `mapbench diff` call a change between runs of the same code, and how often does
it call a real one? Measured on real runs (docs/method.md, "Diff"):

    python scripts/diff_power.py [RESULTS...] [--factor 1.3] [--threshold T] [--alpha A] [--markdown]

RESULTS: result files or directories (default: data/results and data/fixtures/real), read as one
set of runs (a run found twice counts once).

- A/A pairs: two runs on one machine and kernel of the same code (git describe, "-dirty" aside),
  on the configurations both measured; and, where a machine and kernel hold four runs or more of
  one code, those runs split into two alternate halves (several runs a side). Each is diffed as
  `mapbench diff` does, at its defaults, with every other run of the machine as the history that
  gives a side of one run its between-run variance. A configuration called slower or faster is a
  false alarm.
- Power: each configuration the diff could test, alone, slowed by --factor in the second side's
  rows (its ns per op times the factor), the other configurations as they were; called slower is
  a detection.

Prints, per A/A pair and engine: configurations, how many had a test (the others: run drift
unknown, or no ratio), false alarms, detections, and the median smallest change the tests could
call."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from mapbench.results import diff
from mapbench.results import store as results

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = [ROOT / "data" / "results", ROOT / "data" / "fixtures" / "real"]
MIN_RUNS_FOR_HALVES = 4


def load(paths: list[Path]) -> pd.DataFrame:
    """Every run of the result files or directories once."""
    frames, seen = [], set()
    for path in paths:
        table = results.read(path).to_pandas()
        for run_id, rows in table.groupby("run_id", sort=False):
            if run_id not in seen:
                seen.add(run_id)
                frames.append(rows)
    return pd.concat(frames, ignore_index=True)


def code(describe) -> str:
    return str(describe).removesuffix("-dirty")


def aa_pairs(rows: pd.DataFrame) -> list[tuple[list[str], list[str]]]:
    """(base run ids, new run ids) of every A/A comparison the runs allow: each two runs of one
    machine, kernel and code, in time order; and their alternate halves where there are
    MIN_RUNS_FOR_HALVES or more."""
    runs = rows.groupby("run_id").agg(machine=("machine", "first"), kernel=("kernel_release", "first"),
                                      code=("git_describe", lambda s: code(s.iloc[0])),
                                      started=("timestamp", "min")).sort_values("started")
    out = []
    for _, group in runs.groupby(["machine", "kernel", "code"], sort=False):
        ids = list(group.index)
        out += [([a], [b]) for i, a in enumerate(ids) for b in ids[i + 1:]]
        if len(ids) >= MIN_RUNS_FOR_HALVES:
            out.append((ids[0::2], ids[1::2]))
    return out


def slowed(pairs: dict, config: tuple, factor: float) -> dict:
    """The pairs with one configuration's new side slowed by `factor` (every sample, so every
    run's median; its loads and spread as they were)."""
    a, b = pairs[config]
    return {**pairs, config: (a, replace(b, values=b.values * factor, run_logs=b.run_logs + np.log(factor)))}


def evaluate(rows: pd.DataFrame, base_ids: list[str], new_ids: list[str], factor: float = 1.3,
             threshold: float = diff.DEFAULT_THRESHOLD, alpha: float = diff.DEFAULT_ALPHA) -> pd.DataFrame:
    """One row per matched configuration: its A/A verdict, whether it had a test, the smallest
    change it could call, and its verdict with its new side slowed by `factor` alone."""
    base, new = rows[rows["run_id"].isin(base_ids)], rows[rows["run_id"].isin(new_ids)]
    pairs, variances, _, _, _ = diff.prepare(base, new, history=rows)  # diff leaves the sides' runs out
    found = diff.tests(pairs, variances)
    aa = diff.decide(pairs, found, threshold, alpha)
    out = []
    for test, change in zip(found, aa):
        slow = None
        if test.se is not None:
            moved = slowed(pairs, test.config, factor)
            [slow] = [c for t, c in zip(found, diff.decide(moved, diff.tests(moved, variances), threshold, alpha))
                      if t.config == test.config]
        out.append({"engine": change.config["engine"], "aa": change.verdict, "tested": test.se is not None,
                    "detectable": change.detectable, "slowed": slow.verdict if slow else None,
                    "variance_from": change.variance_from})
    return pd.DataFrame(out)


def summarize(found: pd.DataFrame) -> pd.DataFrame:
    per = found.groupby("engine").agg(
        configurations=("aa", "size"), tested=("tested", "sum"),
        false_alarms=("aa", lambda v: int(v.isin(["slower", "faster"]).sum())),
        drift_unknown=("aa", lambda v: int((v == diff.DRIFT_UNKNOWN).sum())),
        detected=("slowed", lambda v: int((v == "slower").sum())),
        median_detectable=("detectable", "median"))
    total = per.sum(numeric_only=True)
    total["median_detectable"] = found["detectable"].median()
    per.loc["all"] = total
    return per


def label(ids: list[str]) -> str:
    return "+".join(i.rsplit("-", 1)[-1] for i in ids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="*", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--factor", type=float, default=1.3)
    parser.add_argument("--threshold", type=float, default=diff.DEFAULT_THRESHOLD)
    parser.add_argument("--alpha", type=float, default=diff.DEFAULT_ALPHA)
    parser.add_argument("--markdown", action="store_true", help="one Markdown table for docs/method.md")
    args = parser.parse_args(argv)
    rows = load(args.results)
    pairs = aa_pairs(rows)
    runs = rows.groupby("machine")["run_id"].nunique()
    print(f"{rows['run_id'].nunique()} runs on {len(runs)} machine(s) ("
          + ", ".join(f"{m}: {n}" for m, n in runs.items()) + f"); {len(pairs)} A/A comparison(s); "
          f"threshold {args.threshold:.0%}, alpha {args.alpha} after Holm, slowdown {args.factor}x")
    if not pairs:
        print("no two runs of one code on one machine and kernel: nothing to measure")
        return 1
    table = []
    for base_ids, new_ids in pairs:
        found = evaluate(rows, base_ids, new_ids, args.factor, args.threshold, args.alpha)
        first = rows[rows["run_id"] == base_ids[0]].iloc[0]
        others = rows[(rows["machine"] == first["machine"]) & (rows["kernel_release"] == first["kernel_release"])
                      & ~rows["run_id"].isin(base_ids + new_ids)]
        name = (f"{label(base_ids)} vs {label(new_ids)} ({first['machine']}, {first['kernel_release']}, "
                f"{code(first['git_describe'])}; history: {others['run_id'].nunique()} other run(s) of that "
                "machine and kernel)")
        for engine, r in summarize(found).iterrows():
            table.append([name, engine, int(r.configurations), int(r.tested), int(r.false_alarms),
                          int(r.drift_unknown), f"{int(r.detected)} of {int(r.tested)}",
                          "-" if pd.isna(r.median_detectable) else f"{r.median_detectable:.2f}x"])
    header = ["A/A runs", "engine", "configurations", "tested", "false alarms", "drift unknown",
              f"{args.factor}x called", "median detectable"]
    if args.markdown:
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        print("\n".join("| " + " | ".join(map(str, row)) + " |" for row in table))
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
        for row in [header, *table]:
            print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
