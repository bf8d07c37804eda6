"""The runqslower model (docs/method.md, "The runqslower model"): the article's state machine as
a discrete-event simulation (SimPy), with its costs taken from a run's measured rows instead of
the article's guessed constants, and checked against the share of the CPU that the attached
engine measured in the same run.

A task is woken (enqueue event: the BPF handler runs), waits in its CPU's run queue, is switched
in (dequeue event: the handler runs, and reports the wait when it is at least the threshold),
runs a slice and, after an optional sleep, is woken again; after its lifetime it exits and a new
task takes its place. What each piece costs comes from the attached engine's rows:

- a BPF event: the side's per-event time as the programs timed it (`gross_ns_per_op`: the body
  and the one clock read of the timing, which is what `cpu_overhead_share` counts), by map size
  and task count, interpolated in log size and log tasks (flat beyond the ends);
- the load's own time per event (the contention, which grows with the tasks on the CPU): the
  control's wall time per event less its own timed span, by task count, read at the number of
  runnable tasks per CPU.

The validation predicts each measured (strategy, map size, task count) with the side's rows at
that task count left out: the prediction never sees the share it is compared with.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mapbench.errors import BadInput
from mapbench.results.store import plain

ENGINE = "attached"
SIDES = ("pid_hash", "task_storage")
VALIDATED_TASK_COUNTS = 3  # the "three task counts"
NEEDED = ("gross_ns_per_op", "events_per_s", "cpu_overhead_share")  # per-sample columns the model reads
RUN_HINT = "mapbench run --engine attached --tasks 2,32,128"
EVENTS_PER_CYCLE = 2  # a task's wakeup (enqueue) and its switch in (dequeue)
WINDOWS = 100  # the share over simulated time, in this many windows


def _interp_log(x: float, xs, ys) -> float:
    """ys at x, linear in log x between the measured points, flat beyond the ends."""
    order = np.argsort(xs)
    return float(np.interp(math.log(x), np.log(np.asarray(xs, float)[order]), np.asarray(ys, float)[order]))


@dataclass(frozen=True)
class Inputs:
    """What the model takes from one run: per-sample medians by configuration."""

    source: str
    isa: str
    # strategy, reporting ("every" delay: min_delay_us 0; "none": a minimum no delay reached), map_size,
    # nr_tasks: ns_per_event, reports_per_event, share (medians), share_low/high, samples
    costs: pd.DataFrame
    payload: pd.DataFrame  # nr_tasks: payload_ns (the control's wall time per event less its timed span)
    machine: str = ""
    kernel: str = ""

    def _at(self, strategy: str, reporting: str, column: str, map_size: int, tasks: float,
            leave_out: int | None) -> float | None:
        """A figure by map size within each measured task count, then by task count (the task
        count changes the cost more: the mix of wakeups and switches changes with it)."""
        c = self.costs[(self.costs.strategy == strategy) & (self.costs.reporting == reporting)
                       & (self.costs.nr_tasks != leave_out)]
        if c.empty:
            return None
        by_tasks = c.groupby("nr_tasks").apply(
            lambda g: _interp_log(map_size, g.map_size, g[column]), include_groups=False)
        return _interp_log(tasks, by_tasks.index, by_tasks.values)

    def event_ns(self, strategy: str, map_size: int, tasks: float, leave_out: int | None = None) -> float:
        """A BPF event's cost as measured with every delay reported."""
        every = self._at(strategy, "every", "ns_per_event", map_size, tasks, leave_out)
        if every is None:
            raise BadInput(f"{self.source} has no {strategy} rows of the attached engine reporting every delay"
                           + (f" besides {leave_out} tasks" if leave_out else ""))
        return every

    def event_costs(self, strategy: str, map_size: int, tasks: float,
                    leave_out: int | None = None) -> tuple[float, float]:
        """(ns per event without the report path, ns per report). Where the run measured the
        strategy with no delay reported too, the report's cost is the difference over the reports
        per event; where not, it stays in every event's cost (the second figure is 0)."""
        every = self.event_ns(strategy, map_size, tasks, leave_out)
        none = self._at(strategy, "none", "ns_per_event", map_size, tasks, leave_out)
        if none is None:
            return every, 0.0
        return none, (every - none) / self._at(strategy, "every", "reports_per_event", map_size, tasks, leave_out)

    def report_split(self, strategy: str) -> bool:
        return bool(((self.costs.strategy == strategy) & (self.costs.reporting == "none")).any())

    def payload_ns(self, tasks_per_cpu: float) -> float:
        return _interp_log(max(tasks_per_cpu, 1.0), self.payload.nr_tasks, self.payload.payload_ns)


def inputs_from(df: pd.DataFrame, source: str) -> Inputs:
    """The model's inputs from a run's rows, or BadInput naming what the run lacks."""
    a = df[(df.engine == ENGINE) & (df.warmup == False) & (df.status == "ok")]  # noqa: E712
    if a.empty:
        raise BadInput(f"{source} has no rows of the attached engine: the model needs them ({RUN_HINT})")
    lacking = [c for c in NEEDED if a[c].isna().all()]
    if lacking:
        raise BadInput(f"{source}'s attached rows lack {', '.join(lacking)} (written by an older mapbench): "
                       f"the model needs a newer run ({RUN_HINT})")
    isa = a.isa.mode().iloc[0]  # one ISA: the run's most measured
    a = a[(a.isa == isa) & a[list(NEEDED)].notna().all(axis=1)]
    sides, control = a[a.strategy.isin(SIDES)], a[a.strategy == "control"]
    missing = [s for s in (*SIDES, "control") if s not in set(a.strategy)]
    if missing:
        raise BadInput(f"{source} has no attached rows of {', '.join(missing)}: the model needs both sides "
                       f"and the control ({RUN_HINT})")
    minimum = sides.min_delay_us.fillna(0)
    sides = sides.assign(reports_per_event=sides.delays_recorded / sides.ops, reporting=np.where(
        minimum == 0, "every", np.where(sides.delays_recorded == 0, "none", "some")))
    # a minimum some delays reached reports some: its cost per report is not separable
    sides = sides[sides.reporting != "some"]
    costs = sides.groupby(["strategy", "reporting", "map_size", "nr_tasks"]).agg(
        ns_per_event=("gross_ns_per_op", "median"), reports_per_event=("reports_per_event", "median"),
        share=("cpu_overhead_share", "median"),
        share_low=("cpu_overhead_share", "min"), share_high=("cpu_overhead_share", "max"),
        samples=("cpu_overhead_share", "size")).reset_index().astype({"map_size": int, "nr_tasks": int})
    payload = control.assign(payload_ns=1e9 / control.events_per_s - control.gross_ns_per_op).groupby(
        "nr_tasks").payload_ns.median().reset_index().astype({"nr_tasks": int})
    both = sorted(set(payload.nr_tasks) & set(costs[costs.reporting == "every"].nr_tasks))
    if len(both) < VALIDATED_TASK_COUNTS:
        raise BadInput(f"{source} measured the attached engine at {len(both)} task count(s) "
                       f"({', '.join(map(str, both)) or 'none'}): the validation needs {VALIDATED_TASK_COUNTS} "
                       f"({RUN_HINT})")
    first = a.iloc[0]
    machine = plain(first.get("machine_name")) or plain(first.get("machine")) or "machine unknown"
    return Inputs(source, isa, costs, payload, str(machine), str(plain(first.get("kernel_release")) or "unknown"))


@dataclass(frozen=True)
class Workload:
    tasks: int
    cpus: int = 1
    lifetime_ns: float = math.inf  # then the task exits and a new one starts
    sleep_ns: float = 0.0  # after a slice; 0: always runnable, as the load generator's pairs
    threshold_ns: float = 0.0  # report waits at least this long (runqslower's min_us; inf: none)
    variation: float = 0.0  # coefficient of variation of a slice (gamma); 0: every slice the same
    sim_ns: float = 20e6
    seed: int = 0


@dataclass(frozen=True)
class Outcome:
    bpf_share: float  # of the CPUs' capacity over the simulated time
    events_per_s: float
    reports: int
    births: int
    series: pd.DataFrame = field(repr=False)  # t_ms (a window's end), bpf_share in that window


def simulate(event_ns: float, payload_ns: Callable[[float], float], w: Workload, report_ns: float = 0.0) -> Outcome:
    """One simulation. The CPU time of a cycle is the two events' BPF time (and a report's, for a
    wait at the threshold or above) and a slice of the load's own time for those two events, at
    the runnable tasks per CPU when it starts."""
    import simpy

    if w.tasks < 1 or w.cpus < 1 or w.sim_ns <= 0:
        raise BadInput(f"a simulation needs tasks >= 1, cpus >= 1 and a positive duration, not {w}")
    env = simpy.Environment()
    cpus = simpy.Resource(env, capacity=w.cpus)
    rng = np.random.default_rng(w.seed)
    tally = {"bpf_ns": 0.0, "events": 0, "reports": 0, "births": 0}
    marks: list[tuple[float, float]] = []

    def slice_ns() -> float:
        mean = EVENTS_PER_CYCLE * payload_ns((len(cpus.queue) + cpus.count) / w.cpus)
        if w.variation == 0:
            return mean
        k = 1 / w.variation ** 2
        return float(rng.gamma(k, mean / k))

    def task(born: float):
        tally["births"] += 1
        while True:
            queued = env.now  # woken: the enqueue handler runs; the task waits for a CPU
            with cpus.request() as turn:
                yield turn
                # switched in: the dequeue handler runs, reporting a wait at the threshold or above;
                # both handlers' time is counted here, where the cycle's CPU time starts
                reported = env.now - queued >= w.threshold_ns
                tally["reports"] += reported
                bpf = EVENTS_PER_CYCLE * event_ns + (report_ns if reported else 0.0)
                tally["bpf_ns"] += bpf
                tally["events"] += EVENTS_PER_CYCLE
                marks.append((env.now, bpf))
                yield env.timeout(bpf + slice_ns())
            if env.now - born >= w.lifetime_ns:
                env.process(task(env.now))
                return
            if w.sleep_ns:
                yield env.timeout(w.sleep_ns)

    for _ in range(w.tasks):
        env.process(task(0.0))
    env.run(until=w.sim_ns)
    edges = np.linspace(0, w.sim_ns, WINDOWS + 1)
    bpf_in, _ = np.histogram([m[0] for m in marks], edges, weights=[m[1] for m in marks])
    series = pd.DataFrame({"t_ms": edges[1:] / 1e6, "bpf_share": bpf_in / (w.cpus * np.diff(edges))})
    return Outcome(tally["bpf_ns"] / (w.cpus * w.sim_ns), tally["events"] / (w.sim_ns / 1e9), tally["reports"],
                   tally["births"], series)


def predict(inputs: Inputs, strategy: str, map_size: int, w: Workload, leave_out: int | None = None) -> Outcome:
    event, report = inputs.event_costs(strategy, map_size, w.tasks / w.cpus, leave_out)
    return simulate(event, inputs.payload_ns, w, report)


def validation(inputs: Inputs, base: Workload) -> pd.DataFrame:
    """Every measured (strategy, reporting, map size, task count) predicted with the side's rows at
    that task count left out, against the measured share; as the attached engine runs it: one CPU
    (it pins the load and the runner to one), tasks always runnable, none ending, every delay
    reported or none. From `base` only the simulated time, the slices' variation and the seed."""
    out = []
    for r in inputs.costs.itertuples():
        w = Workload(tasks=int(r.nr_tasks), variation=base.variation, sim_ns=base.sim_ns, seed=base.seed,
                     threshold_ns=0.0 if r.reporting == "every" else math.inf)
        o = predict(inputs, r.strategy, int(r.map_size), w, leave_out=int(r.nr_tasks))
        # with its own cost per event: what is left is the structure's error (the load's time from
        # the control, BPF time added to it), not the interpolation's
        own = simulate(r.ns_per_event, inputs.payload_ns, w)
        out.append({"strategy": r.strategy, "reporting": r.reporting, "map_size": int(r.map_size),
                    "nr_tasks": int(r.nr_tasks),
                    "measured": r.share, "low": r.share_low, "high": r.share_high, "samples": int(r.samples),
                    "predicted": o.bpf_share, "error": o.bpf_share / r.share - 1,
                    "own_cost": own.bpf_share, "own_error": own.bpf_share / r.share - 1})
    return pd.DataFrame(out)


def predictions(inputs: Inputs, tasks: list[int], sizes: list[int], lifetimes_ns: list[float],
                base: Workload) -> tuple[pd.DataFrame, dict]:
    """The share against tasks, map size and lifetime, every side; and the series over simulated
    time of each side at the largest task count, smallest size and shortest lifetime."""
    rows, series = [], {}
    for strategy in SIDES:
        for size in sizes:
            for life in lifetimes_ns:
                for n in tasks:
                    w = Workload(**{**vars(base), "tasks": n, "lifetime_ns": life})
                    o = predict(inputs, strategy, size, w)
                    rows.append({"strategy": strategy, "map_size": size, "lifetime_ns": life, "nr_tasks": n,
                                 "cpus": w.cpus, "share": o.bpf_share, "events_per_s": o.events_per_s,
                                 "reports": o.reports, "births": o.births})
                    if (n, size, life) == (max(tasks), min(sizes), min(lifetimes_ns)):
                        series[strategy] = o.series
    return pd.DataFrame(rows), series


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _life(ns: float) -> str:
    return "the whole run" if math.isinf(ns) else f"{ns / 1e6:g} ms"


def summary_line(v: pd.DataFrame) -> str:
    """The report's one-sentence answer."""
    worst = v.loc[v.error.abs().idxmax()]
    counts = ", ".join(map(str, sorted(v.nr_tasks.unique())))
    return (f"Predicted vs measured share of the CPU in BPF at {v.nr_tasks.nunique()} task counts ({counts}), "
            f"{len(v)} configurations, each predicted without its own rows: median absolute error "
            f"{100 * v.error.abs().median():.1f} %, largest {100 * worst.error:+.1f} % "
            f"({worst.strategy}, {int(worst.map_size):,} pids, {int(worst.nr_tasks)} tasks); with their own cost "
            f"per event, median absolute error {100 * v.own_error.abs().median():.1f} %.")


def report_path(inputs: Inputs) -> list[str]:
    """What a report costs, where the run measured a side with every delay reported and with none."""
    c = inputs.costs
    both = c[c.reporting == "every"].merge(c[c.reporting == "none"], on=["strategy", "map_size", "nr_tasks"],
                                           suffixes=("", "_none")).set_index(["strategy", "map_size", "nr_tasks"])
    out = []
    for strategy in SIDES:
        if not inputs.report_split(strategy):
            out.append(f"{strategy}: the run reported every delay only, so the report path's cost stays in every "
                       "event's (measure it with `--min-delay-us 0,10000000`).")
            continue
        mine = both.loc[strategy] if strategy in both.index.get_level_values(0) else both.iloc[:0]
        per = (mine.ns_per_event - mine.ns_per_event_none) / mine.reports_per_event
        out.append(f"{strategy}: a report costs " + "; ".join(
            f"{ns:.0f} ns ({int(size):,} pids, {int(n)} tasks)" for (size, n), ns in per.items())
                   + " (ns per event with every delay reported less with none, over reports per event); the "
                   "model charges it to each wait at the threshold or above.")
    return out


def markdown(inputs: Inputs, v: pd.DataFrame, p: pd.DataFrame, base: Workload, plots=(), title: str = "") -> str:
    lines = [f"# {title or 'mapbench model runqslower'}", "",
             f"Costs from {inputs.source} ({inputs.machine}, kernel {inputs.kernel}, ISA {inputs.isa}); "
             f"simulated {base.sim_ns / 1e6:g} ms per point, seed {base.seed}, sleep {base.sleep_ns / 1e3:g} us, "
             f"slice variation {base.variation:g}, report threshold {base.threshold_ns / 1e3:g} us.", "",
             *report_path(inputs), "",
             "## Validation", "", summary_line(v), "",
             "Each row is predicted with that side's rows at that task count left out (costs "
             "interpolated from the other task counts), as the attached engine runs: one CPU, tasks always "
             "runnable, none ending; every delay reported, or none (a minimum no delay reached).", "",
             "| strategy | delays reported | pids in the hash | tasks | measured share (median, min..max, samples) "
             "| predicted | error | with its own cost per event | error |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in v.sort_values(["strategy", "reporting", "nr_tasks", "map_size"]).itertuples():
        lines.append(f"| {r.strategy} | {r.reporting} | {r.map_size:,} | {r.nr_tasks} | {_pct(r.measured)} "
                     f"({_pct(r.low)}..{_pct(r.high)}, {r.samples}) | {_pct(r.predicted)} | {100 * r.error:+.1f} % "
                     f"| {_pct(r.own_cost)} | {100 * r.own_error:+.1f} % |")
    lines += ["", "The last two columns feed the model the configuration's own measured cost per event: their "
              "error is the model's structure alone (the load's time from the control, the BPF time added to "
              "it), the first error adds that of interpolating the cost from other task counts."]
    lines += ["", "## Inputs (from the run's rows)", "",
              "| strategy | delays reported | pids in the hash | tasks | ns per BPF event (gross, median) "
              "| reports per event |", "|---|---|---:|---:|---:|---:|"]
    for r in inputs.costs.sort_values(["strategy", "reporting", "map_size", "nr_tasks"]).itertuples():
        lines.append(f"| {r.strategy} | {r.reporting} | {r.map_size:,} | {r.nr_tasks} | {r.ns_per_event:.1f} "
                     f"| {r.reports_per_event:.3f} |")
    lines += ["", "| tasks | the load's own ns per event (control) |", "|---:|---:|"]
    lines += [f"| {int(r.nr_tasks)} | {r.payload_ns:.0f} |" for r in inputs.payload.itertuples()]
    lines += ["", "## Predictions", "",
              f"Inputs are interpolated in log size and log tasks between the measured points and held at the "
              f"nearest one beyond them (measured: {', '.join(map(str, sorted(inputs.costs.nr_tasks.unique())))} "
              f"tasks; {', '.join(f'{s:,}' for s in sorted(inputs.costs.map_size.unique()))} pids). A task's "
              "lifetime changes the share only through its first event's cost, which no row separates from the "
              "others: with these inputs it changes only the births counted.", "",
              "| strategy | pids in the hash | task lifetime | tasks | CPUs | share in BPF | events/s | reports "
              "| births |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in p.itertuples():
        lines.append(f"| {r.strategy} | {r.map_size:,} | {_life(r.lifetime_ns)} | {r.nr_tasks} | {r.cpus} | "
                     f"{_pct(r.share)} | {r.events_per_s:,.0f} | {r.reports:,} | {r.births:,} |")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{path.stem}]({path.as_posix()})" for path in plots
                                         if path.suffix == ".png"]
    return "\n".join(lines) + "\n"
