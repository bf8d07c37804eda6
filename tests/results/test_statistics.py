"""Summaries, head-to-head ratios and their pairing, without a kernel."""

import collections

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mapbench.measure import cpus
from mapbench.results import stats
from mapbench.results import store as results
from mapbench.results.stats import paired_ratio
from mapbench.results.summary import head_to_head, summaries


def frame(rows: list[dict]) -> pd.DataFrame:
    return results.make_table(rows, "run-a", {"host": "h"}).to_pandas()


def sample_rows(strategy: str, ns: list[list[float]], position=None, run_id=None, gross_extra=10.0) -> list[dict]:
    """ns[load][sample] figures of one configuration."""
    return [{"engine": "kernel", "family": "membership", "strategy": strategy, "op": "lookup", "map_size": 1000,
             "hit_ratio": 1.0, "isa": "v3", "key_distribution": "uniform", "instance": load, "sample": s,
             "warmup": False, "status": "ok",
             "ns_per_op": v, "gross_ns_per_op": v + gross_extra, "comparison": "c", "position": position,
             **({"run_id": run_id} if run_id else {})}
            for load, values in enumerate(ns) for s, v in enumerate(values)]


@given(st.integers(min_value=1, max_value=7), st.integers(0, 1000), st.integers(0, 50))
def test_rotation_puts_every_program_in_every_place_alike(k, load, start):
    """Over a cycle of orders (2k samples from any sample on, k with two programs or fewer) every
    program runs in every place equally often, in a load of any number."""
    items = list(range(k))
    period = 2 * k if k > 2 else k
    orders = [cpus.rotation(items, start + s, load) for s in range(period)]
    assert all(sorted(o) == items for o in orders)
    for place in range(k):
        assert collections.Counter(o[place] for o in orders) == {i: period // k for i in items}


@given(st.integers(min_value=2, max_value=7), st.integers(0, 1000), st.integers(0, 50))
def test_over_a_cycle_every_program_follows_every_other_alike(k, load, start):
    """Carryover balanced both ways: over a cycle of orders a program runs right after another
    as often as that one runs right after it, so that no side inherits another's cache state
    more than it leaves its own."""
    items = list(range(k))
    follows = collections.Counter((o[i - 1], o[i]) for s in range(2 * k)
                                  for o in [cpus.rotation(items, start + s, load)] for i in range(1, k))
    assert all(follows[a, b] == follows[b, a] for a, b in follows)


def test_loads_enter_the_cycle_at_points_of_their_own():
    starts = {tuple(cpus.rotation([0, 1, 2], 0, load)) for load in range(40)}
    assert len(starts) == 6  # every one of the 2n orders opens some load


def test_ops_per_second_come_from_the_gross_figure():
    [s] = summaries(frame(sample_rows("hash", [[5.0, 5.0, 5.0]], gross_extra=15.0)))
    assert s["median_ns_per_op"] == 5.0
    assert s["ops_per_s"] == pytest.approx(1e9 / 20.0)


def test_loads_of_different_runs_are_different_loads():
    a = results.make_table(sample_rows("hash", [[10.0, 11.0]]), "run-a", {}).to_pandas()
    b = results.make_table(sample_rows("hash", [[20.0, 21.0]]), "run-b", {}).to_pandas()
    [s] = summaries(pd.concat([a, b]))
    assert s["instances"] == 2 and s["samples"] == 4
    assert s["run_ids"] == ["run-a", "run-b"]


@given(factor=st.floats(min_value=0.1, max_value=10), seed=st.integers(0, 1000))
def test_pairing_cancels_what_the_sides_of_a_load_share(factor, seed):
    # Each load moves both sides by the same factor (fresh maps, the machine's mood); a paired
    # ratio sees only the factor between them, however much the loads differ.
    rng = np.random.default_rng(seed)
    loads = rng.lognormal(0, 0.5, size=(6, 1)) * np.ones((6, 8))
    den = 100 * loads
    ratio, low, high, loads = paired_ratio((factor * den).ravel(), den.ravel(), np.repeat(np.arange(6), 8))
    assert ratio == pytest.approx(factor) and low == pytest.approx(factor) and high == pytest.approx(factor)
    assert loads == 6


def test_unpaired_noise_widens_the_ratio_ci():
    rng = np.random.default_rng(1)
    den = 100 * rng.lognormal(0, 0.05, 60)
    num = 50 * rng.lognormal(0, 0.05, 60)
    ratio, low, high, _ = paired_ratio(num, den, np.repeat(np.arange(5), 12))
    assert low < ratio < high and 0.45 < ratio < 0.55 and high - low > 0.005


def test_the_ratio_is_the_geometric_mean_of_its_loads_with_a_t_interval_over_them():
    # per load: median(num) / median(den) = 0.5, 0.6, 0.55 (the samples' order within a load is noise)
    num = [50, 51, 49, 60, 61, 59, 55, 54, 56]
    den = [100, 100, 100, 100, 100, 100, 100, 100, 100]
    r = paired_ratio(num, den, np.repeat(["a", "b", "c"], 3))
    logs = np.log([0.5, 0.6, 0.55])
    half = 4.302653 * logs.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 df)
    assert r.ratio == pytest.approx(np.exp(logs.mean()))
    assert (r.ci_low, r.ci_high) == pytest.approx((np.exp(logs.mean() - half), np.exp(logs.mean() + half)))
    assert r.loads == 3


def test_one_load_has_a_figure_and_no_interval():
    assert paired_ratio([50.0, 52.0], [100.0, 100.0], [0, 0]) == (pytest.approx(0.51), None, None, 1)


def test_a_denominator_at_or_below_zero_has_no_ratio():
    assert paired_ratio([1.0, 2.0], [-1.0, 0.0], [0, 0]) == (None, None, None, 1)
    # a load's denominator at or below zero: no ratio either, whatever the others say
    assert paired_ratio([1.0, 2.0, 3.0], [-1.0, 2.0, 3.0], [0, 1, 2]).ratio is None


def test_a_numerator_at_or_below_zero_in_a_load_gives_an_interval_on_the_ratios_themselves():
    # a net figure near its control: log ratios mean nothing, the loads' ratios still do
    r = paired_ratio([-1.0, 1.0, 3.0], [10.0, 10.0, 10.0], [0, 1, 2])
    assert r.ratio == pytest.approx(0.1) and r.ci_low < 0 < 0.1 < r.ci_high and r.loads == 3


@pytest.mark.parametrize("loads, ci, expected", [
    (5, (0.8, 0.9), stats.BELOW), (5, (1.1, 1.2), stats.ABOVE), (8, (0.9, 1.1), stats.HOLDS_ONE),
    (4, (0.8, 0.9), stats.TOO_FEW_LOADS), (2, (1.5, 3.0), stats.TOO_FEW_LOADS), (1, (None, None), stats.TOO_FEW_LOADS),
])
def test_a_verdict_needs_five_loads(loads, ci, expected):
    assert stats.MIN_LOADS_FOR_VERDICT == 5
    r = {"ratio": 0.85 if expected == stats.BELOW else 1.15, "ci_low": ci[0], "ci_high": ci[1], "loads": loads}
    assert stats.direction(r) == expected
    assert stats.direction({"ratio": None, "ci_low": None, "ci_high": None, "loads": 9}) == stats.NO_RATIO


def test_head_to_head_pairs_each_side_with_the_first():
    rows = sample_rows("hash", [[100.0, 110.0], [120.0, 130.0]], position=0) + \
        sample_rows("bloom", [[50.0, 55.0], [60.0, 65.0]], position=1)
    [r] = head_to_head(frame(rows))
    assert (r["numerator"], r["denominator"]) == ("bloom", "hash")
    assert r["ratio"] == pytest.approx(0.5) and r["pairs"] == 4 and r["loads"] == 2
    assert r["ci_low"] == pytest.approx(0.5) and r["ci_high"] == pytest.approx(0.5)


def test_plot_bands_are_the_tables_load_clustered_cis(monkeypatch, tmp_path):
    from matplotlib.collections import PolyCollection

    from mapbench.present import plots

    rows = []
    for strategy, base in (("hash", 100.0), ("bloom", 40.0)):
        for size in (1000, 100000):
            rows += [{**r, "map_size": size, "value_size": 4 if strategy == "bloom" else 8} for r in sample_rows(
                strategy, [[base + load * 10 + s for s in range(4)] for load in range(3)])]
    summary = pd.DataFrame(summaries(frame(rows)))
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or [path])
    plots.kernel_scaling(summary, tmp_path)
    [fig] = drawn
    bands = [c for ax in fig.axes for c in ax.collections if isinstance(c, PolyCollection)]
    spans = sorted((round(p.get_paths()[0].vertices[:, 1].min(), 6), round(p.get_paths()[0].vertices[:, 1].max(), 6))
                   for p in bands)
    expected = sorted((round(g.ci_low.min(), 6), round(g.ci_high.max(), 6)) for _, g in summary.groupby("strategy"))
    assert spans == expected


def test_the_map_type_plot_draws_only_the_usual_builds(monkeypatch, tmp_path):
    """A hash built with restrict (or as a subprog, or per-CPU LRU lists) beside the usual one is
    another configuration of the same map type: the map-type plot draws the usual build alone."""
    from mapbench.present import plots

    rows = []
    for strategy, extra in (("hash", {}), ("hash", {"restrict": "on"}), ("hash", {"calls": "subprog"}),
                            ("array", {})):
        rows += [{**r, "key_size": 4, "value_size": 8, "fill": 1.0, "producers": 1, **extra}
                 for r in sample_rows(strategy, [[50.0, 51.0], [52.0, 53.0]])]
    summary = pd.DataFrame(summaries(frame(rows)))
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or [path])
    plots.map_types(summary, tmp_path)
    [fig] = drawn
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["hash", "array"]


@pytest.mark.parametrize("loads, verdict", [(2, "too few loads (2) for a verdict"), (5, "cheaper")])
def test_verdicts_are_drawn_from_five_loads_or_more(loads, verdict):
    from mapbench.present import render, report
    from mapbench.results import across

    # every load gives exactly 0.5: a CI of zero width, far from 1, and still no verdict from 2 loads
    base = [[100.0 + load, 110.0 + load] for load in range(loads)]
    half = [[v / 2 for v in ns] for ns in base]
    rows = sample_rows("hash", base, position=0) + sample_rows("bloom", half, position=1)
    [r] = head_to_head(frame(rows))
    assert r["loads"] == loads and r["ci_high"] == pytest.approx(0.5)
    assert report._verdict(r) == verdict
    assert across.side(r) == (-1 if loads >= stats.MIN_LOADS_FOR_VERDICT else 0)
    [row] = render.ratio_rows([r])
    assert row[3] == "0.500 (0.500 .. 0.500)"  # the figure and its CI stand either way
    assert ("too few for a verdict" in row[5]) == (loads < stats.MIN_LOADS_FOR_VERDICT)
