"""The attached engine: the article's runqslower on live scheduler events (docs/method.md,
"Attached engine").

tp_btf programs on sched_wakeup, sched_wakeup_new and sched_switch keep an enqueue timestamp
per task, in a pid-keyed hash (pre-filled with map_size dummy pids) or in task local storage.
A native load generator (threads ping-ponging through pipes, pinned with the runner to one
CPU) drives the events. Every side and its ISA's control (empty bodies on the same hooks)
are loaded together and attached one at a time, sample by sample in rotating order. The
programs time their own body with bpf_ktime_get_ns() on the events of the load generator's
tasks only, into per-CPU counters, beside a count of all events; a side's cost per event is
that figure net of the control's median. BPF run stats (every task's events on every CPU,
trampoline included) are kept beside it.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from mapbench.binding.libbpf import BpfObject, pingpong, program_sizes, run_stats, run_stats_of
from mapbench.errors import BadInput
from mapbench.measure import build
from mapbench.measure.engine import Axis, Engine, Host, MeasureOptions, Spec
from mapbench.measure.runstats import RUN_STATS, stats_for
from mapbench.measure.strategies import CONTROL_MACRO, STRATEGIES
from mapbench.measure.taskmaps import (
    COUNTS,
    LIVE_TASK_ROOM,
    check_counts,
    counts,
    counts_per_cpu,
    dummy_pids,
    parse_pingpong_tasks,
)
from mapbench.measure.values import parse_choice, parse_whole_number

NAME = "attached"
DESCRIPTION = "runqslower on live scheduler events (tp_btf), net of empty programs on the same hooks"
PROGRAMS = ("on_wakeup", "on_wakeup_new", "on_switch")
SOURCE = "runqslower.bpf.c"
STRATEGY_NAMES = ("pid_hash", "task_storage")  # the per-task pair; macros from their records
MAX_SIZE = 10_000_000
MAX_MIN_DELAY_US = 10_000_000  # 10 s: no run-queue delay of the load comes near it


def _size(text) -> int:
    value = parse_whole_number(text, "--size", " of dummy pids")
    if not 1 <= value <= MAX_SIZE:
        raise BadInput(f"--size {value} is outside 1..{MAX_SIZE:_} for the attached engine")
    return value


def _min_delay(text) -> int:
    value = parse_whole_number(text, "--min-delay-us")
    if value > MAX_MIN_DELAY_US:
        raise BadInput(f"--min-delay-us {value} is above {MAX_MIN_DELAY_US:_}")
    return value


AXES = (
    Axis("strategies", "--map", "strategy", lambda t: parse_choice(t, "--map", STRATEGY_NAMES),
         default=STRATEGY_NAMES, help="pid_hash or task_storage"),
    Axis("sizes", "--size", "map_size", _size, help="dummy pids pre-filled in the pid hash"),
    Axis("tasks", "--tasks", "nr_tasks", parse_pingpong_tasks, help="load generator threads (an even number)"),
    Axis("isas", "--isa", "isa", build.check_isa),
    Axis("min_delays", "--min-delay-us", "min_delay_us", _min_delay,
         help="report (histogram) only run-queue delays at least this long, as runqslower's min_us; 0: every one"),
    Axis("run_stats", "--run-stats", "run_stats", lambda t: parse_choice(t, "--run-stats", RUN_STATS),
         default=("on",), help="BPF run stats on (run_time_ns, run_cnt beside the figure) or off while a side's "
                               "samples run; on,off: head to head, the stats' cost"),
)
SIDES = ("strategies", "isas", "run_stats")
DEFAULTS = MeasureOptions(samples=3, instances=2, warmup=1, target_ms=300.0)
MIN_SAMPLE_MS = 50  # below this a sample holds too few events for run stats to mean much


@dataclass(frozen=True)
class AttachedSpec(Spec):
    strategy: str
    map_size: int = 1000  # dummy pids in the hash (task storage holds only live tasks)
    nr_tasks: int = 8  # load generator threads (pairs)
    isa: str = build.DEFAULT_ISA
    min_delay_us: int = 0  # the report path runs for delays at least this long
    run_stats: str = "on"  # BPF run stats while its samples run

    def __post_init__(self):
        parse_choice(self.strategy, "--map", STRATEGY_NAMES)
        parse_choice(self.run_stats, "--run-stats", RUN_STATS)
        _size(self.map_size)
        parse_pingpong_tasks(self.nr_tasks)
        build.check_isa(self.isa)
        _min_delay(self.min_delay_us)

    @property
    def holds_pids(self) -> bool:
        """The dummies go into the strategy's sized map; task storage has none."""
        return any(plan.sized for plan in STRATEGIES[self.strategy].maps)

    def control_key(self) -> tuple:
        return (self.isa, self.run_stats)  # the control's empty programs, with the side's run stats

    def used_fields(self) -> set[str]:
        # map_size names the pid population of the comparison, on both sides of the pair
        return {"strategy", "isa", "nr_tasks", "map_size", "min_delay_us", "run_stats"}

    def config_fields(self) -> dict:
        return {"engine": NAME, "family": "runqslower", "strategy": self.strategy, "op": "sched_event",
                "map_size": self.map_size, "value_size": 8, "hit_ratio": 1.0, "isa": self.isa,
                "key_distribution": "live", "nr_tasks": self.nr_tasks,
                "mode": "load events",  # timed inside the programs, the load's events only
                "min_delay_us": self.min_delay_us, "run_stats": self.run_stats}


def make_spec(fields: dict) -> AttachedSpec:
    return AttachedSpec(**fields)


def check_options(opts: MeasureOptions) -> None:
    if opts.target_ms < MIN_SAMPLE_MS:
        raise BadInput(f"--sample-ms {opts.target_ms:g} is below {MIN_SAMPLE_MS}, the attached engine's "
                       "minimum (a sample must hold enough scheduler events)")


class AttachedBuild:
    """One loaded build of runqslower.bpf.c (a side's, or the control). `attached(stack)`
    attaches every program through links owned by the stack; nothing is ever pinned."""

    def __init__(self, spec: AttachedSpec, control: bool):
        self.spec, self.control = spec, control
        macro = CONTROL_MACRO if control else STRATEGIES[spec.strategy].macro
        self.built = build.compile_object(SOURCE, macro, spec.isa)
        self.obj = BpfObject(self.built.path)
        try:
            config = self.obj.map(".rodata").data("struct mb_sched_config")
            config.target_tgid = os.getpid()
            config.min_delay_ns = spec.min_delay_us * 1000
            holds_pids = not control and spec.holds_pids
            if holds_pids:
                self.obj.map("start").set_max_entries(spec.map_size + LIVE_TASK_ROOM)
            self.obj.load()
            self.counts_map = self.obj.map("counts")
            check_counts(self.counts_map, "engines/attached.py")
            if holds_pids:
                dummies = dummy_pids(spec.map_size)
                self.obj.map("start").update_batch(dummies, np.zeros(spec.map_size, np.uint64))
            self.programs = [self.obj.program(name) for name in PROGRAMS]
            self.sizes = program_sizes([p.info() for p in self.programs])
        except BaseException:
            self.obj.close()
            raise

    def attach(self, stack: ExitStack) -> None:
        for program in self.programs:
            stack.enter_context(program.attach())

    def stats(self) -> tuple[int, int]:
        return run_stats_of(self.programs)

    def counts_per_cpu(self) -> np.ndarray:
        """Every CPU's struct mb_sched_counts, as COUNTS records indexed by CPU."""
        return counts_per_cpu(self.counts_map)

    def counts(self) -> dict[str, int]:
        return counts(self.counts_map)

    def delay_histogram(self) -> np.ndarray:
        res = self.obj.map(".bss").read("struct mb_sched_result")
        return np.array(list(res.delay_hist), dtype=np.uint64)

    def sample(self, seconds: float, stats_held: bool = False) -> Sample:
        """Attach, drive the load for `seconds`, detach: what the programs did meanwhile, with run
        stats on or off as the spec says (`stats_held`: the load holds them on)."""
        with stats_for(self.spec.run_stats, stats_held), ExitStack() as links:
            self.attach(links)
            t0, (rt0, rc0), c0, h0 = time.monotonic_ns(), self.stats(), self.counts(), self.delay_histogram()
            rounds = pingpong(self.spec.nr_tasks, seconds)
            t1, (rt1, rc1), c1, h1 = time.monotonic_ns(), self.stats(), self.counts(), self.delay_histogram()
        return Sample(rt1 - rt0, rc1 - rc0, t1 - t0, rounds, h1 - h0, **{n: c1[n] - c0[n] for n in COUNTS.names},
                      stats_as_asked=(rc1 > rc0) == (self.spec.run_stats == "on"))

    def close(self) -> None:
        self.obj.close()

    def __enter__(self) -> AttachedBuild:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def histogram_median_ns(hist: np.ndarray) -> float | None:
    """Median of a log2 histogram (slot i holds delays in [2^i, 2^(i+1)) ns), geometric midpoint."""
    total = int(hist.sum())
    if total == 0:
        return None
    slot = int(np.searchsorted(np.cumsum(hist), (total + 1) / 2))
    return float(2 ** slot * math.sqrt(2))


@dataclass(frozen=True)
class Sample:
    run_time_ns: int  # BPF run stats: every event on every CPU, trampoline included
    run_cnt: int
    wall_ns: int
    rounds: int
    hist: np.ndarray
    target_events: int  # the programs' own counts: the load generator's events,
    target_ns: int  # their bodies timed inside the programs,
    all_events: int  # and every event the programs ran on
    stats_as_asked: bool = True  # run stats were on or off, as the side asked, before and after

    @property
    def wall_ns_per_event(self) -> float:
        """The measuring CPU's time per event of the load, everything included: the load generator,
        the scheduler, the programs and, when on, the run stats' work around every program run."""
        return self.wall_ns / self.target_events if self.target_events else float("nan")

    @property
    def ns_per_event(self) -> float:
        """Body time per event of the load generator's tasks, as the programs timed it."""
        return self.target_ns / self.target_events if self.target_events else float("nan")

    @property
    def run_stats_ns_per_event(self) -> float:
        return self.run_time_ns / self.run_cnt if self.run_cnt else float("nan")

    @property
    def target_event_share(self) -> float | None:
        return self.target_events / self.all_events if self.all_events else None

    @property
    def cpu_overhead_share(self) -> float:
        """The load and the programs share one CPU: the share of it that the program bodies
        took on the load's events."""
        return self.target_ns / self.wall_ns


class Attached(Engine):
    name, description, axes, sides = NAME, DESCRIPTION, AXES, SIDES
    note = ("attached engine: ns per scheduler event of the load generator's tasks, timed inside the "
            "programs, net of empty programs on the same hooks (run stats beside it).")
    defaults = DEFAULTS

    def make_spec(self, fields: dict, host: Host) -> AttachedSpec:
        return make_spec(fields)

    def check_options(self, opts: MeasureOptions) -> None:
        check_options(opts)

    def session(self, sides, opts: MeasureOptions, host: Host):
        """BPF run stats on while the load runs, when every side asks for them (else each sample
        of a side that does turns them on: stats_for). The load generator's threads inherit the
        runner's pinning: with every task on one CPU each event is a local wakeup or switch, the
        same work from run to run; left to roam, the share of cross-CPU wakeups (and so the cost
        per event) changed from run to run by half."""
        if all(s.run_stats == "on" for s in sides):
            return _held(run_stats())
        return contextlib.nullcontext(False)

    def open(self, spec: AttachedSpec, control: bool, load: int) -> AttachedBuild:
        return AttachedBuild(spec, control)

    def calibrate(self, builds, opts: MeasureOptions, calibration) -> float:
        return opts.target_ms / 1000  # seconds of load per sample: events, not loops, are what it counts

    def sample(self, build: AttachedBuild, number: int, seconds: float, session) -> Sample:
        return build.sample(seconds, session)

    def control_figures(self, s: Sample) -> dict[str, list[float]]:
        if not s.stats_as_asked:  # another process held run stats on: not the control of its sides
            return {}
        return {"ns_per_op": [s.ns_per_event], "run_stats_ns_per_event": [s.run_stats_ns_per_event],
                "wall_ns_per_event": [s.wall_ns_per_event]}

    def rows(self, b: AttachedBuild, s: Sample, control: dict[str, float] | None) -> list[dict]:
        control = control or {}
        fields = {**b.spec.config_fields(), **({"strategy": "control"} if b.control else {})}
        # a side whose control kept no sample (each ran with the stats not as asked) has no net figure
        orphan = not b.control and "ns_per_op" not in control
        return [{
            **fields, **b.sizes, "object_sha256": b.built.sha256, "ops": s.target_events, "elapsed_ns": s.target_ns,
            "ns_per_op": None if orphan else s.ns_per_event - control.get("ns_per_op", 0.0),
            "gross_ns_per_op": s.ns_per_event,
            "control_ns_per_op": control.get("ns_per_op"),
            "run_stats_ns_per_event": (s.run_stats_ns_per_event - control.get("run_stats_ns_per_event", 0.0)
                                       if b.spec.run_stats == "on" else None),
            "wall_ns_per_event": s.wall_ns_per_event,
            "target_event_share": s.target_event_share,
            "events_per_s": s.target_events / (s.wall_ns / 1e9),
            "cpu_overhead_share": s.cpu_overhead_share,
            "delay_median_ns": histogram_median_ns(s.hist),
            "delays_recorded": int(s.hist.sum()), "load_round_trips": s.rounds,
            "delay_hist": s.hist.tolist(),
            **({} if s.stats_as_asked and not orphan else {
                "status": "stats_not_as_asked", "ns_per_op": None if orphan else s.ns_per_event - control["ns_per_op"],
                "message": f"BPF run stats were not {b.spec.run_stats} throughout the "
                           + ("control's samples" if orphan else "sample") + " (another process held them on?)"}),
        }]


@contextlib.contextmanager
def _held(stats):
    with stats:
        yield True


ENGINE = Attached()
