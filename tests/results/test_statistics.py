"""Summaries, head-to-head ratios and their pairing, without a kernel."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mapbench.measure import cpus
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


@given(st.integers(min_value=1, max_value=7))
def test_rotation_puts_every_program_first_once_every_k_samples(k):
    items = list(range(k))
    orders = [cpus.rotation(items, s) for s in range(k)]
    assert sorted(o[0] for o in orders) == items
    assert all(sorted(o) == items for o in orders)


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
    ratio, low, high = paired_ratio((factor * den).ravel(), den.ravel(), np.repeat(np.arange(6), 8))
    assert ratio == pytest.approx(factor) and low == pytest.approx(factor) and high == pytest.approx(factor)


def test_unpaired_noise_widens_the_ratio_ci():
    rng = np.random.default_rng(1)
    den = 100 * rng.lognormal(0, 0.05, 60)
    num = 50 * rng.lognormal(0, 0.05, 60)
    ratio, low, high = paired_ratio(num, den, np.repeat(np.arange(5), 12))
    assert low < ratio < high and 0.45 < ratio < 0.55 and high - low > 0.005


def test_a_denominator_at_or_below_zero_has_no_ratio():
    assert paired_ratio([1.0, 2.0], [-1.0, 0.0], [0, 0]) == (None, None, None)


def test_head_to_head_pairs_each_side_with_the_first():
    rows = sample_rows("hash", [[100.0, 110.0], [120.0, 130.0]], position=0) + \
        sample_rows("bloom", [[50.0, 55.0], [60.0, 65.0]], position=1)
    [r] = head_to_head(frame(rows))
    assert (r["numerator"], r["denominator"]) == ("bloom", "hash")
    assert r["ratio"] == pytest.approx(0.5) and r["pairs"] == 4
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
