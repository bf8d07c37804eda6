"""Compare two result sets, configuration by configuration (docs/method.md, "Diff").

Runs drift: two runs of the same code on the same machine give medians further apart than their
loads explain, so a change can only be told from drift by the spread of whole runs. The run is
the unit: per configuration, each run's log median is one value, the change d is the mean of the
new runs' less the mean of the base runs', and its t test takes the between-run variance from

- the sides' own runs, where a side has several (its runs' spread about their mean);
- the dataset's history: the configuration's other runs on the same machine (not the sides'),
  each about the mean of its segment (the runs of one kernel between the history's change
  points);

pooled, and moderated by the between-run variance typical of the engine's configurations
(Smyth 2004), never below the configuration's own. With one run a side and no history of the
configuration on the machine there is no test: the row says the change cannot be told from run
drift (verdict "drift unknown").

A change is called when it is significantly larger than the threshold (a minimum-effect t test,
H0: |d| <= log(1 + threshold)) after Holm correction across every tested configuration. One
that was not called is "unchanged" only when its 95 % CI lies inside the threshold band;
otherwise it is "inconclusive", with the smallest change it could have called. How often this
calls a change between two runs of the same code, and how often it calls a 1.3x slowdown:
scripts/diff_power.py on the dataset's runs (docs/method.md, "Diff").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from mapbench.errors import BadInput
from mapbench.measure import machine
from mapbench.results import dataset
from mapbench.results.stats import change_points
from mapbench.results.store import CONFIG_KEYS, ENV_KEYS, LEGACY_MACHINE_KEYS, as_measured, config_key, measured
from mapbench.results.summary import load_ids

MUST_MATCH = ["kernel_release"]  # comparing across these needs --force; machines need --across-machines
# The smallest change worth calling (design notes, as asv and pyperf use): what decides whether a
# difference is drift is the between-run variance, not this threshold. Its false alarms and power on
# real runs: scripts/diff_power.py.
DEFAULT_THRESHOLD = 0.05
DEFAULT_ALPHA = 0.01
MAX_PRIOR_DF = 20  # the engine's typical between-run variance is worth at most this many degrees of freedom
DRIFT_UNKNOWN = "drift unknown"
VERDICTS = ("slower", "faster", "unchanged", "inconclusive", DRIFT_UNKNOWN, "only in base", "only in new")


@dataclass(frozen=True)
class Change:
    config: dict
    verdict: str  # one of VERDICTS
    base_median: float | None = None
    new_median: float | None = None
    ratio: float | None = None  # new / base: exp(d), > 1 is slower
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
    base_runs: int = 0
    new_runs: int = 0
    run_sd: float | None = None  # the between-run sd of a log median the test used
    df: float | None = None  # its degrees of freedom
    variance_from: str = ""  # "runs" (Welch), "history", "runs and history", or "" (none)

    def as_dict(self) -> dict:
        return {**self.config, **{k: v for k, v in asdict(self).items() if k != "config"}}


@dataclass(frozen=True)
class DiffResult:
    changes: list[Change]
    env_differences: dict[str, tuple[list, list]]
    threshold: float
    alpha: float
    machine_note: str = ""  # how the two sides' machines were matched, when not by their fingerprints
    history_runs: int = 0  # runs of the history the between-run variances came from

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == "slower"]

    def counts(self) -> dict[str, int]:
        return {v: sum(c.verdict == v for c in self.changes) for v in VERDICTS}


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
class Side:
    """One side's rows of one configuration: its samples, loads and per-run log medians."""
    values: np.ndarray
    loads: int
    run_ids: list[str]
    run_logs: np.ndarray | None  # None: some run's median is not positive (net of its control)

    @classmethod
    def of(cls, g: pd.DataFrame) -> Side:
        medians = g.groupby(g["run_id"].astype(str), sort=True)["ns_per_op"].median()
        return cls(g["ns_per_op"].to_numpy(dtype=float), int(load_ids(g).nunique()), list(medians.index),
                   np.log(medians.to_numpy()) if np.all(medians.to_numpy() > 0) else None)

    @property
    def runs(self) -> int:
        return len(self.run_ids)

    def sum_squares(self) -> float:
        x = self.run_logs
        return float(np.sum((x - x.mean()) ** 2)) if len(x) > 1 else 0.0


def _groups(df: pd.DataFrame) -> dict[tuple, Side]:
    return {config_key(dict(zip(CONFIG_KEYS, config))): Side.of(g)
            for config, g in measured(df).groupby(CONFIG_KEYS, dropna=False, sort=True)}


def env_differences(base: pd.DataFrame, new: pd.DataFrame) -> dict[str, tuple[list, list]]:
    out = {}
    for key in ENV_KEYS:
        a = sorted(map(str, base[key].dropna().unique()))
        b = sorted(map(str, new[key].dropna().unique()))
        if a != b:
            out[key] = (a, b)
    return out


def fit_prior(variances: list[float], dfs: list[float]) -> tuple[float, float]:
    """The prior of a moderated t (Smyth 2004): the variance s0^2 the configurations' between-run
    variances scatter around, and the degrees of freedom d0 it is worth. s0^2 is a median (one
    drifting configuration must not move it), each variance first divided by the median of its
    chi^2/df so that the median is unbiased; d0 is what the engine's configurations hold
    together, at most MAX_PRIOR_DF. (limma fits d0 from the spread of the variances; with one or
    two degrees of freedom a configuration, as here, that fit swings on one outlier.)"""
    v, d = np.asarray(variances, dtype=float), np.asarray(dfs, dtype=float)
    if not len(v):
        return np.nan, 0.0
    s0 = float(np.median(v / (sps.chi2.median(d) / d)))
    return s0, float(min(d.sum(), MAX_PRIOR_DF))


# --- the dataset's history: between-run variance per configuration and machine -------------------

def history_rows(root: Path, machines: list[str]) -> pd.DataFrame:
    """The dataset at `root` on these machines as one row per run and configuration, its
    ns_per_op the run's median (DuckDB reads only those machines' partitions and the columns
    named, and takes the medians)."""
    keys = sorted({"run_id", "machine", "machine_name", "kernel_release", *CONFIG_KEYS, *LEGACY_MACHINE_KEYS})
    marks = ", ".join("?" for _ in machines)
    sql = (f"SELECT {', '.join(keys)}, any_value(target_event_share) AS target_event_share, "
           "min(timestamp) AS timestamp, median(ns_per_op) AS ns_per_op, 'ok' AS status, false AS warmup "
           "FROM results WHERE status = 'ok' AND NOT warmup AND strategy <> 'control' "
           f"AND machine IN ({marks}) GROUP BY {', '.join(keys)}")
    table = dataset.connect(Path(root)).sql(sql, params=[dataset.partition_value(m) for m in machines]).to_arrow_table()
    return as_measured(table).to_pandas()


def run_variances(history: pd.DataFrame, machines: set, exclude: set[str]) -> dict[tuple, tuple[float, float, int]]:
    """Per configuration, from the history's runs on these machines but those excluded (the two
    sides'; history: measured rows, or history_rows' one row per run and configuration):
    (sum of squares, degrees of freedom, runs) of the runs' log medians about their
    segment's mean. A segment is the runs of one machine and kernel (another kernel's runs are no
    repeats of this one's) between the change points the history finds in them (a new level is
    not drift); fewer than 2 x stats.MIN_SEGMENT runs cannot show a change point, and a level
    change among them counts as drift: the variance errs wide."""
    rows = measured(history)
    rows = rows[rows["machine"].isin(machines) & ~rows["run_id"].astype(str).isin(exclude)]
    out = {}
    for config, g in rows.groupby(CONFIG_KEYS, dropna=False, sort=False):
        ss, df, n = 0.0, 0, 0
        for _, segment in g.groupby(["machine", g["kernel_release"].astype(str)], sort=False):
            runs = segment.groupby(segment["run_id"].astype(str)).agg(timestamp=("timestamp", "min"),
                                                                       median=("ns_per_op", "median"))
            runs = runs[runs["median"] > 0].sort_values("timestamp")
            logs = np.log(runs["median"].to_numpy())
            bounds = [0, *change_points(runs["median"].to_numpy()), len(logs)]
            for a, b in zip(bounds, bounds[1:]):
                ss += float(np.sum((logs[a:b] - logs[a:b].mean()) ** 2))
                df += max(b - a - 1, 0)
            n += len(logs)
        if df > 0:
            out[config_key(dict(zip(CONFIG_KEYS, config)))] = (ss, float(df), n)
    return out


def _history(history, base: pd.DataFrame, new: pd.DataFrame) -> tuple[dict, int]:
    """The sides' configurations' between-run variances from `history` (a dataset root or its
    rows), leaving the sides' own runs out; and how many history runs they came from."""
    if history is None:
        return {}, 0
    machines = set(base["machine"].dropna()) | set(new["machine"].dropna())
    if isinstance(history, (str, Path)):
        if not dataset.files(Path(history)):
            return {}, 0
        history = history_rows(Path(history), sorted(machines))
    exclude = set(base["run_id"].astype(str)) | set(new["run_id"].astype(str))
    found = run_variances(history, machines, exclude)
    used = history[history["machine"].isin(machines) & ~history["run_id"].astype(str).isin(exclude)]
    return found, int(used["run_id"].nunique()) if found else 0


# --- the diff -----------------------------------------------------------------------------------

@dataclass
class ChangeTest:
    config: tuple
    d: float | None = None  # log new / base
    se: float | None = None
    df: float | None = None
    run_sd: float | None = None
    variance_from: str = ""
    reason: str = ""


def tests(pairs: dict[tuple, tuple[Side, Side]], history: dict[tuple, tuple[float, float, int]]) -> list[ChangeTest]:
    """Per matched configuration: the change d, its standard error and degrees of freedom, or why
    there is no test (docs/method.md, "Diff")."""
    engine_at = CONFIG_KEYS.index("engine")
    # the engine's typical between-run variance, from every configuration's own runs and history
    found: dict[str, tuple[list, list]] = {}
    for config, (a, b) in pairs.items():
        if a.run_logs is None or b.run_logs is None:
            continue
        ss_h, df_h, _ = history.get(config, (0.0, 0.0, 0))
        ss, df = a.sum_squares() + b.sum_squares() + ss_h, (a.runs - 1) + (b.runs - 1) + df_h
        if df > 0:
            v, d = found.setdefault(config[engine_at], ([], []))
            v.append(ss / df)
            d.append(df)
    priors = {engine: fit_prior(v, d) for engine, (v, d) in found.items()}
    out = []
    for config, (a, b) in pairs.items():
        if a.run_logs is None or b.run_logs is None:
            out.append(ChangeTest(config, reason="a median at or below zero (net of its control): no ratio to test"))
            continue
        d = float(b.run_logs.mean() - a.run_logs.mean())
        ss_h, df_h, _ = history.get(config, (0.0, 0.0, 0))
        ss_own, df_own = a.sum_squares() + b.sum_squares(), (a.runs - 1) + (b.runs - 1)
        if df_own + df_h == 0:
            out.append(ChangeTest(config, d, reason="one run a side and no history of it on this machine (two runs "
                                                    "under one kernel) to give a between-run variance: run drift "
                                                    "cannot be told from a change (give each side several runs)"))
            continue
        s2_own = (ss_own + ss_h) / (df_own + df_h)
        s0, d0 = priors.get(config[engine_at], (np.nan, 0.0))
        s2, df = s2_own, df_own + df_h
        if np.isfinite(s0) and d0 > 0:
            # moderated by the engine's typical variance, never narrowed below the configuration's own:
            # a configuration that drifts more than its engine must not pass for steady
            s2, df = max((d0 * s0 + df * s2_own) / (d0 + df), s2_own), d0 + df
        se = float(np.sqrt(s2 * (1 / a.runs + 1 / b.runs)))
        out.append(ChangeTest(config, d, se, float(df), float(np.sqrt(s2)),
                         "history" if df_own == 0 else ("runs and history" if df_h else "runs")))
    return out


def decide(pairs: dict[tuple, tuple[Side, Side]], found: list[ChangeTest], threshold: float,
           alpha: float) -> list[Change]:
    """Verdicts: Holm across the configurations with a test; the others say why they have none."""
    delta = np.log1p(threshold)
    tested = [t for t in found if t.se is not None]
    p_values = [float(sps.t.sf((abs(t.d) - delta) / t.se, t.df)) if t.se > 0 else (0.0 if abs(t.d) > delta else 1.0)
                for t in tested]
    adjusted = dict(zip(map(id, tested), zip(p_values, holm(p_values) if p_values else [])))
    m = max(len(tested), 1)
    changes = []
    for t in found:
        a, b = pairs[t.config]
        fields = dict(zip(CONFIG_KEYS, t.config))
        common = dict(base_median=float(np.median(a.values)), new_median=float(np.median(b.values)),
                      base_loads=a.loads, new_loads=b.loads, base_samples=len(a.values), new_samples=len(b.values),
                      base_runs=a.runs, new_runs=b.runs)
        if t.d is None:
            changes.append(Change(fields, "inconclusive", reason=t.reason, **common))
            continue
        if t.se is None:
            changes.append(Change(fields, DRIFT_UNKNOWN, ratio=float(np.exp(t.d)), reason=t.reason, **common))
            continue
        p, p_adj = adjusted[id(t)]
        half = sps.t.ppf(0.975, t.df) * t.se
        detectable = float(np.exp(delta + sps.t.isf(alpha / m, t.df) * t.se))
        if p_adj < alpha:
            verdict = "slower" if t.d > 0 else "faster"
        else:  # unchanged only when the whole CI lies within the threshold band
            verdict = "unchanged" if abs(t.d) + half <= delta else "inconclusive"
        changes.append(Change(fields, verdict, ratio=float(np.exp(t.d)), ratio_ci_low=float(np.exp(t.d - half)),
                              ratio_ci_high=float(np.exp(t.d + half)), p_value=p, p_holm=float(p_adj),
                              detectable=detectable, run_sd=t.run_sd, df=t.df, variance_from=t.variance_from,
                              **common, reason="" if verdict != "inconclusive" else
                              f"its CI reaches past the threshold; it could call only {detectable:.2f}x or more"))
    return changes


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


def prepare(base: pd.DataFrame, new: pd.DataFrame, history: Path | pd.DataFrame | None = None
            ) -> tuple[dict[tuple, tuple[Side, Side]], dict, list[tuple], list[tuple], int]:
    """The matched configurations' sides, their history variances, the configurations only in
    base and only in new, and the history runs used."""
    a_groups, b_groups = _groups(base), _groups(new)
    shared = sorted(set(a_groups) & set(b_groups), key=str)
    if not shared:
        raise BadInput("the two result sets share no configuration: nothing to compare")
    variances, used = _history(history, base, new)
    return ({c: (a_groups[c], b_groups[c]) for c in shared}, variances,
            sorted(set(a_groups) - set(b_groups), key=str), sorted(set(b_groups) - set(a_groups), key=str), used)


def diff(base: pd.DataFrame, new: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD,
         alpha: float = DEFAULT_ALPHA, force: bool = False, across_machines: bool = False,
         history: Path | pd.DataFrame | None = None) -> DiffResult:
    """BASE against NEW. `history`: the dataset (its root, or its rows) whose other runs of each
    configuration on the sides' machine give the between-run variance where a side has one run."""
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
    pairs, variances, only_base, only_new, used = prepare(base, new, history)
    changes = decide(pairs, tests(pairs, variances), threshold, alpha)
    for side, only in (("only in base", only_base), ("only in new", only_new)):
        changes += [Change(dict(zip(CONFIG_KEYS, config)), side) for config in only]
    return DiffResult(changes, envs, threshold, alpha, note, used)
