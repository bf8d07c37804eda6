"""Do two runs of the same grid reach the same conclusions? For every head-to-head ratio both
runs measured (matched by context and sides): how far apart the ratios are, whether their 95 %
intervals overlap, whether the first run's interval holds the second's ratio, and whether a
conclusion flips (one run's interval entirely below 1, the other's entirely above).

    python scripts/compare_runs.py FIRST.parquet SECOND.parquet [--markdown]

A calibrated 95 % interval overlaps a repeat's about 99 % of the time and holds the repeat's
estimate about 83 % of the time (docs/method.md, "Statistics")."""

from __future__ import annotations

import argparse
import math

from mapbench.results import store
from mapbench.results.summary import head_to_head


def ratios(path: str) -> dict[tuple, dict]:
    return {(r["context"], r["numerator"], r["denominator"]): r for r in head_to_head(store.read(path))
            if r["ratio"] is not None and r["ci_low"] is not None}


def side(r: dict) -> int:
    """-1: the interval is below 1; 1: above; 0: it holds 1."""
    return -1 if r["ci_high"] < 1 else 1 if r["ci_low"] > 1 else 0


def compare(first: str, second: str) -> dict:
    a, b = ratios(first), ratios(second)
    both = sorted(set(a) & set(b))
    change = [b[k]["ratio"] / a[k]["ratio"] for k in both]
    flips = [k for k in both if side(a[k]) * side(b[k]) == -1]
    return {
        "ratios": len(both), "only_first": len(set(a) - set(b)), "only_second": len(set(b) - set(a)),
        "within_5_percent": sum(abs(math.log(c)) <= math.log(1.05) for c in change),
        "cis_overlap": sum(a[k]["ci_low"] <= b[k]["ci_high"] and b[k]["ci_low"] <= a[k]["ci_high"] for k in both),
        "first_ci_holds_second": sum(a[k]["ci_low"] <= b[k]["ratio"] <= a[k]["ci_high"] for k in both),
        "flips": [(k, a[k]["ratio"], b[k]["ratio"]) for k in flips],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first")
    parser.add_argument("second")
    args = parser.parse_args()
    c = compare(args.first, args.second)
    n = c["ratios"] or 1
    print(f"{c['ratios']} ratios in both runs ({c['only_first']} only in the first, {c['only_second']} only in "
          f"the second)")
    for key, what in (("within_5_percent", "within 5 % of each other"), ("cis_overlap", "95 % CIs overlap"),
                      ("first_ci_holds_second", "the first run's CI holds the second's ratio")):
        print(f"  {what}: {c[key]} of {c['ratios']} ({c[key] / n:.1%})")
    print(f"  conclusions that flip (CI below 1 in one run, above 1 in the other): {len(c['flips'])}")
    for (context, num, den), r1, r2 in c["flips"]:
        print(f"    {num} / {den}, {context}: {r1:.3f} -> {r2:.3f}")


if __name__ == "__main__":
    main()
