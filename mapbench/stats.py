"""Per-configuration summaries: median, IQR, 95 % bootstrap CI of the median, CV."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

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


def median_ci(values: np.ndarray, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the median (BCa misbehaves on the median's ties)."""
    if len(values) < 2 or np.all(values == values[0]):
        m = float(np.median(values))
        return m, m
    res = sps.bootstrap((values,), np.median, confidence_level=confidence,
                        n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                        random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def summarize(values) -> Summary:
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("no samples to summarize")
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    low, high = median_ci(v)
    mean = float(np.mean(v))
    cv = float(np.std(v, ddof=1) / abs(mean)) if v.size > 1 and mean != 0 else 0.0
    return Summary(int(v.size), float(med), float(q1), float(q3), low, high, cv)
