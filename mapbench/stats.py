"""Per-configuration summaries: median, IQR, 95 % bootstrap CI of the median, CV.

Samples come in clusters: several samples from each fresh load (instance) of the programs and
maps, and loads differ more than samples do (hash seeds, where the kernel placed the map). The
bootstrap therefore resamples loads first and samples within them, so that a CI is as wide as
the load-to-load spread says it should be."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WIDE_SPREAD_CV = 0.10  # pyperf's rule: warn when the spread is 10 % of the centre or more
BOOTSTRAP_RESAMPLES = 2000


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


def bootstrap_medians(values: np.ndarray, groups: np.ndarray | None, rng: np.random.Generator,
                      resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """Medians of `resamples` two-level bootstrap resamples: clusters (loads) with replacement,
    then samples with replacement within each chosen cluster. One cluster: a plain bootstrap."""
    values = np.asarray(values, dtype=float)
    if groups is None:
        groups = np.zeros(len(values))
    clusters = [values[groups == g] for g in np.unique(groups)]
    k, widest = len(clusters), max(len(c) for c in clusters)
    padded = np.full((k, widest), np.nan)  # one row per cluster, NaN past its end
    for i, c in enumerate(clusters):
        padded[i, : len(c)] = c
    sizes = np.array([len(c) for c in clusters])
    chosen = rng.integers(0, k, (resamples, k)) if k > 1 else np.zeros((resamples, 1), dtype=int)
    # within a chosen cluster of size m, positions drawn uniformly from 0..m-1; slots past m stay NaN
    slots = np.arange(widest)
    positions = (rng.random((resamples, k, widest)) * sizes[chosen][..., None]).astype(int)
    drawn = padded[chosen[..., None], positions]
    drawn[slots[None, None, :] >= sizes[chosen][..., None]] = np.nan
    return np.nanmedian(drawn.reshape(resamples, -1), axis=1)


def median_ci(values, groups=None, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or np.all(values == values[0]):
        m = float(np.median(values))
        return m, m
    medians = bootstrap_medians(values, groups, np.random.default_rng(seed))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(low), float(high)


def summarize(values, groups=None) -> Summary:
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("no samples to summarize")
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    low, high = median_ci(v, None if groups is None else np.asarray(groups))
    mean = float(np.mean(v))
    cv = float(np.std(v, ddof=1) / abs(mean)) if v.size > 1 and mean != 0 else 0.0
    return Summary(int(v.size), float(med), float(q1), float(q3), low, high, cv)
