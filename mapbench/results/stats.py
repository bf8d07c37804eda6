"""Statistics of clustered samples (docs/method.md, "Statistics").

Samples come in clusters: several samples from each fresh load of the programs and maps, and
loads differ more than samples do (hash seeds, where the kernel placed the map, and, since a
run spreads each comparison's loads over its whole span, what the machine did meanwhile). The
load is therefore the unit:

- A configuration's median: 95 % CI of a two-level bootstrap (loads with replacement, then
  samples within each), so that the CI is as wide as the load-to-load spread says.
- A head-to-head ratio: per load, log(median numerator / median denominator) over the load's
  paired samples; the figure is exp of their mean, its 95 % CI a t interval on them with
  n_loads - 1 degrees of freedom. Chosen by simulation (tests/results/test_coverage.py): the t
  interval covered the true ratio 94 to 96 % of the time at 2 to 8 loads, whatever the mix of
  load and sample noise; the paired two-level percentile bootstrap it replaced, 66 % at 2 loads
  where loads differ more than samples, 100 % (too wide) at 5 loads and more where they do not.
- A verdict (the CI on one side of 1) needs MIN_LOADS_FOR_VERDICT loads: with fewer, the loads'
  spread is itself guessed from three degrees of freedom or less, and one odd load decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import stats as sps

WIDE_SPREAD_CV = 0.10  # pyperf's rule: warn when the spread is 10 % of the centre or more
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
MIN_LOADS_FOR_VERDICT = 5  # loads a ratio needs before its CI may say cheaper or dearer


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    q1: float
    q3: float
    ci_low: float
    ci_high: float
    cv: float

    @property
    def wide(self) -> bool:
        return self.cv > WIDE_SPREAD_CV


class Ratio(NamedTuple):
    """A head-to-head ratio: its figure, its 95 % CI (None where it has none: one load, or no
    figure) and the number of loads it was paired over."""
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    loads: int


# What a ratio's CI says about 1 (direction): the one gate every verdict goes through.
BELOW, ABOVE, HOLDS_ONE, TOO_FEW_LOADS, NO_RATIO = "below 1", "above 1", "holds 1", "too few loads", "no ratio"


def direction(r: dict) -> str:
    """What a ratio (a dict with ratio, ci_low, ci_high, loads: summary.head_to_head's) may be read
    as: BELOW or ABOVE when its CI lies on that side of 1 and it was paired over
    MIN_LOADS_FOR_VERDICT loads or more; TOO_FEW_LOADS with fewer (its figure and CI stand, no
    verdict is drawn from them); HOLDS_ONE when the CI reaches 1; NO_RATIO without a figure (a
    net figure at or below its control). The report's verdicts and the across-machines table
    read ratios through it."""
    if r.get("ratio") is None:
        return NO_RATIO
    if (r.get("loads") or 0) < MIN_LOADS_FOR_VERDICT or r.get("ci_low") is None or r.get("ci_high") is None:
        return TOO_FEW_LOADS
    if r["ci_high"] < 1:
        return BELOW
    if r["ci_low"] > 1:
        return ABOVE
    return HOLDS_ONE


def bootstrap_paired_medians(columns: list[np.ndarray], groups: np.ndarray | None, rng: np.random.Generator,
                             resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """(len(columns), resamples) medians of two-level bootstrap resamples: clusters (loads)
    with replacement, then positions with replacement within each chosen cluster; every
    column is resampled at the same positions, so paired samples stay paired."""
    columns = [np.asarray(c, dtype=float) for c in columns]
    n = len(columns[0])
    groups = np.zeros(n) if groups is None else np.asarray(groups)
    labels = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in labels]
    k, widest = len(members), max(len(m) for m in members)
    index = np.full((k, widest), -1)  # row i: the positions of cluster i, -1 past its end
    for i, m in enumerate(members):
        index[i, : len(m)] = m
    sizes = np.array([len(m) for m in members])
    chosen = rng.integers(0, k, (resamples, k))
    within = (rng.random((resamples, k, widest)) * sizes[chosen][..., None]).astype(int)
    picked = index[chosen[..., None], within]  # positions into the columns
    past_end = np.arange(widest)[None, None, :] >= sizes[chosen][..., None]
    out = np.empty((len(columns), resamples))
    for j, c in enumerate(columns):
        drawn = c[picked]
        drawn[past_end] = np.nan
        out[j] = np.nanmedian(drawn.reshape(resamples, -1), axis=1)
    return out


def bootstrap_medians(values, groups, rng, resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    return bootstrap_paired_medians([values], groups, rng, resamples)[0]


def percentile_ci(draws: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.nanpercentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def median_ci(values, groups=None, seed: int = 0) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or np.all(values == values[0]):
        m = float(np.median(values))
        return m, m
    return percentile_ci(bootstrap_medians(values, groups, np.random.default_rng(seed)))


def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean of independent values and its t interval (n - 1 degrees of freedom); the interval is
    (nan, nan) for fewer than two values."""
    x = np.asarray(values, dtype=float)
    mean = float(np.mean(x))
    if len(x) < 2:
        return mean, np.nan, np.nan
    half = float(sps.t.ppf(0.5 + confidence / 2, len(x) - 1) * np.std(x, ddof=1) / np.sqrt(len(x)))
    return mean, mean - half, mean + half


def load_medians(numerator, denominator, groups) -> tuple[np.ndarray, np.ndarray]:
    """Per load (group), the median of each side's paired samples."""
    num, den = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    labels, index = np.unique(np.asarray(groups), return_inverse=True)
    order = np.argsort(index, kind="stable")
    bounds = np.flatnonzero(np.diff(index[order])) + 1
    return (np.array([np.median(c) for c in np.split(num[order], bounds)]),
            np.array([np.median(c) for c in np.split(den[order], bounds)]))


def paired_ratio(numerator, denominator, groups, confidence: float = CONFIDENCE) -> Ratio:
    """The ratio of paired samples' sides, numerator over denominator, loads (groups) as the
    unit: per load r = median(numerator) / median(denominator); the figure is the geometric mean
    of the loads' r and its CI a t interval on log r (n_loads - 1 degrees of freedom).

    Net figures near their control can put a load's median at or below zero, where log r means
    nothing: then, while every load's denominator is positive, the figure is the mean of the
    loads' r and the t interval is on r itself; with a load's denominator at or below zero, there
    is no ratio (None), as a ratio would mean nothing there. One load has a figure and no CI."""
    num, den = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    if len(num) == 0:
        return Ratio(None, None, None, 0)
    groups = np.zeros(len(num)) if groups is None else np.asarray(groups)
    num_k, den_k = load_medians(num, den, groups)
    loads = len(num_k)
    if np.any(den_k <= 0) or np.median(den) <= 0:
        return Ratio(None, None, None, loads)
    if np.all(num_k > 0):
        centre, low, high = np.exp(t_interval(np.log(num_k / den_k), confidence))
    else:
        centre, low, high = t_interval(num_k / den_k, confidence)
    if loads < 2:
        return Ratio(float(centre), None, None, loads)
    return Ratio(float(centre), float(low), float(high), loads)


def bootstrap_ratio(numerator, denominator, groups, seed: int = 0,
                    resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float | None, float | None, float | None]:
    """The head-to-head ratio as it was before the t interval, for comparison in the coverage
    simulation: median(numerator) / median(denominator) over all paired samples, with the 95 %
    percentile CI of the paired two-level bootstrap (loads, then sample indices within them)."""
    num, den = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    if len(num) == 0 or np.median(den) <= 0:
        return None, None, None
    ratio = float(np.median(num) / np.median(den))
    if len(num) < 2:
        return ratio, ratio, ratio
    draws = bootstrap_paired_medians([num, den], groups, np.random.default_rng(seed), resamples)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(draws[1] > 0, draws[0] / draws[1], np.nan)
    low, high = percentile_ci(ratios)
    return ratio, low, high


def summarize(values, groups=None) -> Summary:
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("no samples to summarize")
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    low, high = median_ci(v, None if groups is None else np.asarray(groups))
    mean = float(np.mean(v))
    cv = float(np.std(v, ddof=1) / abs(mean)) if v.size > 1 and mean != 0 else 0.0
    return Summary(int(v.size), float(med), float(q1), float(q3), low, high, cv)


# --- series of runs: noise and change points (results/history.py, results/diff.py) ---------------

MIN_SEGMENT = 3  # runs: a step needs this many runs on each side
PENALTY = 4.0  # x noise sigma x log(n), in the L1 cost's units (3 already gave no false step in 200)


def noise_sigma(x: np.ndarray) -> float:
    """Run-to-run noise of a series, robust to its steps: MAD of successive differences / sqrt 2."""
    d = np.diff(x)
    if len(d) == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))


def change_points(values, min_size: int = MIN_SEGMENT, penalty: float = PENALTY) -> list[int]:
    """Indexes where a new level starts in a series of per-run medians (positive): PELT on their
    logs with the L1 cost (docs/method.md, "Dataset and history")."""
    import ruptures

    x = np.log(np.asarray(values, dtype=float))
    n = len(x)
    if n < 2 * min_size:
        return []
    sigma = max(noise_sigma(x), 1e-3)  # a perfectly flat series would make any wiggle a step
    algo = ruptures.Pelt(model="l1", min_size=min_size, jump=1).fit(x.reshape(-1, 1))
    return [b for b in algo.predict(pen=penalty * sigma * np.log(n)) if b < n]
