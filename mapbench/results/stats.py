"""Statistics of clustered samples (docs/method.md, "Statistics").

Samples come in clusters: several samples from each fresh load of the programs and maps, and
loads differ more than samples do (hash seeds, where the kernel placed the map). Bootstraps
therefore resample loads first and samples within them, so that a CI is as wide as the
load-to-load spread says it should be. Head-to-head sides were run in the same loads, sample
by sample, so their resamples keep the pairs: the same loads, the same sample indices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WIDE_SPREAD_CV = 0.10  # pyperf's rule: warn when the spread is 10 % of the centre or more
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95


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


def paired_ratio(numerator, denominator, groups, seed: int = 0) -> tuple[float | None, float | None, float | None]:
    """median(numerator) / median(denominator) of paired samples, with the 95 % CI of the
    paired, load-clustered bootstrap. None where the denominator's median is not positive
    (a net figure at or below its control): a ratio would mean nothing there."""
    num, den = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    if len(num) == 0 or np.median(den) <= 0:
        return None, None, None
    ratio = float(np.median(num) / np.median(den))
    if len(num) < 2:
        return ratio, ratio, ratio
    draws = bootstrap_paired_medians([num, den], groups, np.random.default_rng(seed))
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
