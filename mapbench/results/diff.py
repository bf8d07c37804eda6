"""Compare two result sets, configuration by configuration (docs/method.md, "Diff").

The independent units are loads: samples of one load share its maps and hash seeds. Per
configuration the change is d = log(median new / median base); its standard error comes from
the spread of per-load log medians, moderated (Smyth 2004) by the typical spread of the
engine's configurations, so that two loads a side still give a usable estimate, and never below
the configuration's own spread. A
change is called when it is significantly larger than the threshold (a minimum-effect t test,
H0: |d| <= log(1 + threshold)) after Holm correction across every matched configuration.
A change that was not called is "unchanged" only when its 95 % CI lies inside the threshold
band; otherwise it is "inconclusive", with the smallest change its samples could have called.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from mapbench.errors import BadInput
from mapbench.measure import machine
from mapbench.results.store import CONFIG_KEYS, ENV_KEYS, config_key, measured
from mapbench.results.summary import load_ids

MUST_MATCH = ["kernel_release"]  # comparing across these needs --force; machines need --across-machines
# From A/A runs of the default bench on this kind of VM (docs/method.md, "Diff"): the largest
# change between two runs of the same code that the statistics alone did not explain.
DEFAULT_THRESHOLD = 0.10
DEFAULT_ALPHA = 0.01
MAX_PRIOR_DF = 20  # the engine's pooled load variance is worth at most this many degrees of freedom


@dataclass(frozen=True)
class Change:
    config: dict
    verdict: str  # slower | faster | unchanged | inconclusive | only in base | only in new
    base_median: float | None = None
    new_median: float | None = None
    ratio: float | None = None  # new / base medians: > 1 is slower
    ratio_ci_low: float | None = None
    ratio_ci_high: float | None = None
    p_value: float | None = None
    p_holm: float | None = None
    detectable: float | None = None  # the smallest slowdown (ratio) this configuration could call
    base_loads: int = 0
    new_loads: int = 0
    base_samples: int = 0
    new_samples: int = 0
    reason: str = ""

    def as_dict(self) -> dict:
        return {**self.config, **{k: v for k, v in asdict(self).items() if k != "config"}}


@dataclass(frozen=True)
class DiffResult:
    changes: list[Change]
    env_differences: dict[str, tuple[list, list]]
    threshold: float
    alpha: float
    machine_note: str = ""  # how the two sides' machines were matched, when not by their fingerprints

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == "slower"]

    def counts(self) -> dict[str, int]:
        verdicts = ("slower", "faster", "unchanged", "inconclusive", "only in base", "only in new")
        return {v: sum(c.verdict == v for c in self.changes) for v in verdicts}


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


@dataclass
class _Side:
    values: np.ndarray
    load_log_medians: np.ndarray | None  # None: some load's median is not positive

    @classmethod
    def of(cls, g: pd.DataFrame) -> _Side:
        medians = g.groupby(load_ids(g).to_numpy())["ns_per_op"].median().to_numpy()
        return cls(g["ns_per_op"].to_numpy(dtype=float), np.log(medians) if np.all(medians > 0) else None)

    @property
    def loads(self) -> int:
        return 0 if self.load_log_medians is None else len(self.load_log_medians)

    def sum_squares(self) -> float:
        x = self.load_log_medians
        return float(np.sum((x - x.mean()) ** 2))


def _groups(df: pd.DataFrame) -> dict[tuple, _Side]:
    return {config_key(dict(zip(CONFIG_KEYS, config))): _Side.of(g)
            for config, g in measured(df).groupby(CONFIG_KEYS, dropna=False, sort=True)}


def env_differences(base: pd.DataFrame, new: pd.DataFrame) -> dict[str, tuple[list, list]]:
    out = {}
    for key in ENV_KEYS:
        a = sorted(map(str, base[key].dropna().unique()))
        b = sorted(map(str, new[key].dropna().unique()))
        if a != b:
            out[key] = (a, b)
    return out


def fit_prior(variances: list[float], dfs: list[int]) -> tuple[float, float]:
    """The prior of a moderated t (Smyth 2004): the variance s0^2 the configurations' load
    variances scatter around, and the degrees of freedom d0 it is worth. s0^2 is a median (one
    noisy configuration must not move it), each variance first divided by the median of its
    chi^2/df so that the median is unbiased; d0 is what the engine's configurations hold
    together, at most MAX_PRIOR_DF. (limma fits d0 from the spread of the variances; with two
    degrees of freedom a configuration, as here, that fit swings on one outlier.)"""
    v, d = np.asarray(variances, dtype=float), np.asarray(dfs, dtype=float)
    if not len(v):
        return np.nan, 0.0
    s0 = float(np.median(v / (sps.chi2.median(d) / d)))
    return s0, float(min(d.sum(), MAX_PRIOR_DF))


def _priors(pairs: dict[tuple, tuple[_Side, _Side]]) -> dict[str, tuple[float, float]]:
    """Per engine: (s0^2, d0) from the load-to-load variances of its configurations."""
    found: dict[str, tuple[list, list]] = {}
    engine_at = CONFIG_KEYS.index("engine")
    for config, (a, b) in pairs.items():
        df = a.loads + b.loads - 2
        if a.loads and b.loads and df > 0:
            v, d = found.setdefault(config[engine_at], ([], []))
            v.append((a.sum_squares() + b.sum_squares()) / df)
            d.append(df)
    return {engine: fit_prior(v, d) for engine, (v, d) in found.items()}


def machine_note(base: pd.DataFrame, new: pd.DataFrame, across_machines: bool = False) -> str:
    """Whether the two sides come from one machine: "" when their fingerprints agree (or
    across_machines says the caller knows they do not); a note when a side predates fingerprints
    and agrees with the other on all it recorded (host, CPU model, CPU count); else BadInput."""
    a, b = set(base["machine"].dropna()), set(new["machine"].dropna())
    if a == b or across_machines:
        return ""
    if any(map(machine.is_legacy, a | b)) and machine.legacy_ids(base) == machine.legacy_ids(new):
        return (f"matched machines on host, CPU model and CPU count only (base: {machine.described(base)}; new: "
                f"{machine.described(new)}): rows from before fingerprints recorded nothing else")
    raise BadInput(f"the results come from different machines (base: {machine.described(base)}; new: "
                   f"{machine.described(new)}); pass --across-machines to compare them anyway")


def diff(base: pd.DataFrame, new: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD,
         alpha: float = DEFAULT_ALPHA, force: bool = False, across_machines: bool = False) -> DiffResult:
    if not 0 <= threshold < 1:
        raise BadInput(f"--threshold {threshold} is outside [0, 1)")
    if not 0 < alpha < 1:
        raise BadInput(f"--alpha {alpha} is outside (0, 1)")
    note = machine_note(base, new, across_machines)
    envs = env_differences(base, new)
    blocking = [k for k in MUST_MATCH if k in envs]
    if blocking and not force:
        k = blocking[0]
        raise BadInput(f"the results come from different kernels ({k}: {', '.join(envs[k][0])} vs "
                       f"{', '.join(envs[k][1])}); pass --force to compare them anyway")
    a_groups, b_groups = _groups(base), _groups(new)
    shared = sorted(set(a_groups) & set(b_groups), key=str)
    if not shared:
        raise BadInput("the two result sets share no configuration: nothing to compare")
    pairs = {c: (a_groups[c], b_groups[c]) for c in shared}
    priors = _priors(pairs)
    delta = np.log1p(threshold)
    tests = []  # (config, d, se, df) or (config, reason)
    for config, (a, b) in pairs.items():
        ma, mb = float(np.median(a.values)), float(np.median(b.values))
        engine = config[CONFIG_KEYS.index("engine")]
        if ma <= 0 or mb <= 0 or not a.loads or not b.loads:
            tests.append((config, "a median at or below zero (net of its control): no ratio to test"))
            continue
        df_own = a.loads + b.loads - 2
        s2_own = (a.sum_squares() + b.sum_squares()) / df_own if df_own > 0 else None
        s2_prior, df_prior = priors.get(engine, (None, 0))
        if s2_prior is not None and not np.isfinite(s2_prior):
            s2_prior = None
        if s2_own is None and s2_prior is None:
            tests.append((config, "one load a side, and no other configuration of the engine to "
                                  "borrow a load-to-load spread from"))
            continue
        weights = [(df_prior, s2_prior), (df_own, s2_own)]
        df = sum(w for w, s2 in weights if s2 is not None)
        s2 = sum(w * s2 for w, s2 in weights if s2 is not None) / df
        # Borrowing may widen a configuration's spread, never narrow it below what its own loads
        # show: loads that disagree (a machine that changed state mid-run) must not pass for steady.
        s2 = max(s2, s2_own or 0.0)
        se = float(np.sqrt(s2 * (1 / a.loads + 1 / b.loads)))
        tests.append((config, float(np.log(mb / ma)), se, df))
    p_values = [sps.t.sf((abs(t[1]) - delta) / t[2], t[3]) if len(t) == 4 and t[2] > 0
                else (0.0 if len(t) == 4 and abs(t[1]) > delta else 1.0) for t in tests]
    adjusted = holm(p_values)
    m = len(tests)
    changes = []
    for test, p, p_adj in zip(tests, p_values, adjusted):
        config = test[0]
        a, b = pairs[config]
        fields = dict(zip(CONFIG_KEYS, config))
        common = dict(base_median=float(np.median(a.values)), new_median=float(np.median(b.values)),
                      base_loads=a.loads, new_loads=b.loads, base_samples=len(a.values), new_samples=len(b.values))
        if len(test) == 2:
            changes.append(Change(fields, "inconclusive", reason=test[1], **common))
            continue
        _, d, se, df = test
        half = sps.t.ppf(0.975, df) * se
        detectable = float(np.exp(delta + sps.t.isf(alpha / m, df) * se))
        if p_adj < alpha:
            verdict = "slower" if d > 0 else "faster"
        else:  # unchanged only when the whole CI lies within the threshold band
            verdict = "unchanged" if abs(d) + half <= delta else "inconclusive"
        changes.append(Change(fields, verdict, ratio=float(np.exp(d)), ratio_ci_low=float(np.exp(d - half)),
                              ratio_ci_high=float(np.exp(d + half)), p_value=float(p), p_holm=float(p_adj),
                              detectable=detectable, **common,
                              reason="" if verdict != "inconclusive" else
                              f"its CI reaches past the threshold; it could call only {detectable:.2f}x or more"))
    for side, only in (("only in base", set(a_groups) - set(b_groups)),
                       ("only in new", set(b_groups) - set(a_groups))):
        for config in sorted(only, key=str):
            changes.append(Change(dict(zip(CONFIG_KEYS, config)), side))
    return DiffResult(changes, envs, threshold, alpha, note)
