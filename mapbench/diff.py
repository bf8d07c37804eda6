"""Compare two result sets: a change is called only when it is larger than the noise threshold
AND significant (Mann-Whitney U, Holm-corrected across every matched configuration), as asv and
criterion do. Environments must match (host, kernel, ...) unless forced."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from .errors import BadInput
from .results import CONFIG_KEYS
from .stats import bootstrap_medians

ENV_KEYS = ["host", "kernel_release", "cpu_model", "nr_cpus", "jit_enabled", "clang_version",
            "libbpf_version"]
MUST_MATCH = ["host", "kernel_release"]  # comparing across these needs --force
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Change:
    config: dict
    verdict: str  # slower | faster | unchanged | only in base | only in new
    base_median: float | None = None
    new_median: float | None = None
    ratio: float | None = None  # new / base medians: > 1 is slower
    ratio_ci_low: float | None = None
    ratio_ci_high: float | None = None
    p_value: float | None = None
    p_holm: float | None = None
    base_samples: int = 0
    new_samples: int = 0

    def as_dict(self) -> dict:
        return {**self.config, **{k: v for k, v in asdict(self).items() if k != "config"}}


@dataclass(frozen=True)
class DiffResult:
    changes: list[Change]
    env_differences: dict[str, tuple[list, list]]

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == "slower"]


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    m = len(p_values)
    order = np.argsort(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p_values[i])
        adjusted[i] = min(1.0, running)
    return adjusted.tolist()


def ratio_ci(base: np.ndarray, new: np.ndarray, rng: np.random.Generator, confidence: float = 0.95,
             base_groups: np.ndarray | None = None, new_groups: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile bootstrap CI of median(new) / median(base), resampling both sides by load
    first (stats.bootstrap_medians), so that load-to-load spread widens it."""
    b = bootstrap_medians(base, base_groups, rng, BOOTSTRAP_RESAMPLES)
    n = bootstrap_medians(new, new_groups, rng, BOOTSTRAP_RESAMPLES)
    ratios = n / b
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def _measured(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["strategy"] != "control") & (~df["warmup"].astype(bool)) & (df["status"] == "ok")]


def _groups(df: pd.DataFrame) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
    """Per configuration: its samples and the load (run, instance) each came from."""
    keys = [k for k in CONFIG_KEYS if k in df.columns]
    return {tuple(None if pd.isna(v) else v for v in config):
            (g["ns_per_op"].to_numpy(dtype=float),
             (g["run_id"].astype(str) + "/" + g["instance"].fillna(0).astype(int).astype(str)).to_numpy())
            for config, g in df.groupby(keys, dropna=False, sort=True)}


def env_differences(base: pd.DataFrame, new: pd.DataFrame) -> dict[str, tuple[list, list]]:
    out = {}
    for key in ENV_KEYS:
        a = sorted(map(str, base[key].dropna().unique()))
        b = sorted(map(str, new[key].dropna().unique()))
        if a != b:
            out[key] = (a, b)
    return out


def diff(base: pd.DataFrame, new: pd.DataFrame, threshold: float = 0.05, alpha: float = 0.01,
         force: bool = False, seed: int = 0) -> DiffResult:
    if not 0 <= threshold < 1:
        raise BadInput(f"--threshold {threshold} is outside [0, 1)")
    if not 0 < alpha < 1:
        raise BadInput(f"--alpha {alpha} is outside (0, 1)")
    envs = env_differences(base, new)
    blocking = [k for k in MUST_MATCH if k in envs]
    if blocking and not force:
        k = blocking[0]
        raise BadInput(f"the results come from different machines ({k}: {', '.join(envs[k][0])} vs "
                       f"{', '.join(envs[k][1])}); pass --force to compare them anyway")
    a_groups, b_groups = _groups(_measured(base)), _groups(_measured(new))
    shared = sorted(set(a_groups) & set(b_groups), key=str)
    if not shared:
        raise BadInput("the two result sets share no configuration: nothing to compare")
    keys = [k for k in CONFIG_KEYS if k in base.columns]
    rng = np.random.default_rng(seed)
    p_values = []
    for config in shared:
        (a, _), (b, _) = a_groups[config], b_groups[config]
        if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0 and a[0] == b[0]):
            p_values.append(1.0)
        else:
            p_values.append(float(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue))
    adjusted = holm(p_values)
    changes = []
    for config, p, p_adj in zip(shared, p_values, adjusted):
        (a, a_loads), (b, b_loads) = a_groups[config], b_groups[config]
        ma, mb = float(np.median(a)), float(np.median(b))
        ratio = mb / ma if ma > 0 else float("inf")
        low, high = ratio_ci(a, b, rng, base_groups=a_loads, new_groups=b_loads) if ma > 0 else (ratio, ratio)
        verdict = "unchanged"
        # Called only when significant after Holm AND the whole 95 % CI of the ratio (resampled
        # by load) lies beyond the threshold: on a VM, whole runs drift by a few per cent, more
        # than the samples of one run show, so a point estimate past 5 % is not enough.
        if p_adj < alpha and (low > 1 + threshold or high < 1 - threshold):
            verdict = "slower" if ratio > 1 else "faster"
        changes.append(Change(dict(zip(keys, config)), verdict, ma, mb, ratio, low, high, p, p_adj,
                              len(a), len(b)))
    for side, only in (("only in base", set(a_groups) - set(b_groups)),
                       ("only in new", set(b_groups) - set(a_groups))):
        for config in sorted(only, key=str):
            changes.append(Change(dict(zip(keys, config)), side))
    return DiffResult(changes, envs)
