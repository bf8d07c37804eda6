"""The attached engine (DESIGN 3.3): the article's runqslower on live scheduler events.

tp_btf programs on sched_wakeup, sched_wakeup_new and sched_switch keep an enqueue timestamp
per task, in a pid-keyed hash (pre-filled with map_size dummy pids) or in task local storage.
A native load generator (threads ping-ponging through pipes, all on the measuring CPU) drives
the events. The cost per
event comes from BPF run stats (run_time_ns / run_cnt over the three programs), net of the
control build: empty programs on the same hooks, which carry the stats and attach cost.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from . import build
from ._libbpf import lib
from .environment import load_avg_1m
from .errors import BadInput, EnvironmentProblem
from .kernel_engine import MeasureOptions, pinned_to, require_root
from .libbpf import BpfObject, run_stats

PROGRAMS = ("on_wakeup", "on_wakeup_new", "on_switch")
STRATEGY_MACROS = {"pid_hash": "MB_PID_HASH", "task_storage": "MB_TASK_STORAGE"}
DUMMY_PID_BASE = 0x40000000  # above any pid_max (at most 2^22): never a live task's pid
LIVE_TASK_ROOM = 65536  # hash entries for live tasks beside the dummies
MAX_TASKS = 4096
MAX_SIZE = 10_000_000
NR_SLOTS = 32


@dataclass(frozen=True)
class AttachedSpec:
    strategy: str
    map_size: int = 1000  # dummy pids in the hash (task storage: ignored by the kernel side)
    nr_tasks: int = 8  # load generator threads (pairs)
    seconds: float = 0.5  # one sample
    isa: str = build.DEFAULT_ISA

    def __post_init__(self):
        if self.strategy not in STRATEGY_MACROS:
            raise BadInput(f"--map {self.strategy!r} is not a strategy of the attached engine: "
                           f"choose one of {', '.join(STRATEGY_MACROS)}")
        if not 1 <= self.map_size <= MAX_SIZE:
            raise BadInput(f"--size {self.map_size} is outside 1..{MAX_SIZE:_} for the attached engine")
        if not 2 <= self.nr_tasks <= MAX_TASKS or self.nr_tasks % 2:
            raise BadInput(f"--tasks {self.nr_tasks} must be an even number in 2..{MAX_TASKS} "
                           "(the load generator runs pairs)")
        if not 0.05 <= self.seconds <= 60:
            raise BadInput(f"--sample-ms {self.seconds * 1000:g} is outside 50..60000 for the attached engine")
        if self.isa not in build.ISAS:
            raise BadInput(f"--isa {self.isa!r} is not a BPF ISA: use one of {', '.join(build.ISAS)}")

    def config_fields(self) -> dict:
        return {"engine": "attached", "family": "runqslower", "strategy": self.strategy,
                "op": "sched_event", "driver": None, "map_size": self.map_size, "batch_size": None,
                "value_size": 8, "hit_ratio": 1.0, "nr_hash_funcs": None, "isa": self.isa,
                "key_distribution": "live", "nr_tasks": self.nr_tasks}


def pingpong(nr_tasks: int, seconds: float) -> int:
    rounds = lib.mb_pingpong(nr_tasks, seconds)
    if rounds < 0:
        raise EnvironmentProblem(f"the load generator could not start {nr_tasks} threads: "
                                 f"{os.strerror(-rounds)}")
    return rounds


class AttachedBuild:
    """One build of runqslower.bpf.c, loaded; `attached()` attaches every program (links
    closed on exit), `stats()` reads the summed run stats."""

    def __init__(self, spec: AttachedSpec, macro: str):
        self.built = build.compile_object("runqslower.bpf.c", macro, spec.isa)
        self.obj = BpfObject(self.built.path)
        try:
            self.obj.map(".rodata").data("__u32")[0] = os.getpid()  # target_tgid
            if macro == "MB_PID_HASH":
                self.obj.map("start").set_max_entries(spec.map_size + LIVE_TASK_ROOM)
            self.obj.load()
            if macro == "MB_PID_HASH":
                dummies = (DUMMY_PID_BASE + np.arange(spec.map_size, dtype=np.uint64)).astype(np.uint32)
                self.obj.map("start").update_batch(dummies, np.zeros(spec.map_size, np.uint64), 1 << 16)
            self.programs = [self.obj.program(name) for name in PROGRAMS]
        except BaseException:
            self.obj.close()
            raise

    def attach(self, stack: ExitStack) -> None:
        for program in self.programs:
            stack.enter_context(program.attach())

    def stats(self) -> tuple[int, int]:
        infos = [p.info() for p in self.programs]
        return sum(i["run_time_ns"] for i in infos), sum(i["run_cnt"] for i in infos)

    def sizes(self) -> dict:
        infos = [p.info() for p in self.programs]
        return {"xlated_bytes": sum(i["xlated_prog_len"] for i in infos),
                "jited_bytes": sum(i["jited_prog_len"] for i in infos)}

    def delay_histogram(self) -> np.ndarray:
        bss = self.obj.map(".bss").lookup(bytes(4))
        return np.frombuffer(bss, dtype=np.uint64)[:NR_SLOTS].copy()

    def close(self) -> None:
        self.obj.close()


def histogram_median_ns(hist: np.ndarray) -> float | None:
    """Median of a log2 histogram (slot i holds delays in [2^i, 2^(i+1)) ns), geometric midpoint."""
    total = int(hist.sum())
    if total == 0:
        return None
    slot = int(np.searchsorted(np.cumsum(hist), (total + 1) / 2))
    return float(2 ** slot * math.sqrt(2))


@dataclass(frozen=True)
class Sample:
    run_time_ns: int
    run_cnt: int
    wall_ns: int
    rounds: int
    hist: np.ndarray

    @property
    def ns_per_event(self) -> float:
        return self.run_time_ns / self.run_cnt if self.run_cnt else float("nan")


def run_samples(b: AttachedBuild, spec: AttachedSpec, count: int, on_sample: Callable[[], None]) -> list[Sample]:
    out = []
    with ExitStack() as links:
        b.attach(links)
        for _ in range(count):
            t0, (rt0, rc0), h0 = time.monotonic_ns(), b.stats(), b.delay_histogram()
            rounds = pingpong(spec.nr_tasks, spec.seconds)
            t1, (rt1, rc1), h1 = time.monotonic_ns(), b.stats(), b.delay_histogram()
            out.append(Sample(rt1 - rt0, rc1 - rc0, t1 - t0, rounds, h1 - h0))
            on_sample()
    return out


def measure(spec: AttachedSpec, opts: MeasureOptions, on_sample: Callable[[], None] = lambda: None) -> list[dict]:
    """Per instance: the control build's samples, then the strategy's, each attached only while
    it runs. Rows of both; the strategy's ns_per_op is net of the instance's control median."""
    require_root()
    rows: list[dict] = []
    ncpu = os.cpu_count() or 1
    # The load generator's threads inherit this affinity: with every task on one CPU each event
    # is a local wakeup or switch, the same work from run to run; left to roam, the share of
    # cross-CPU wakeups (and so the cost per event) changed from run to run by half.
    with run_stats(), pinned_to(opts.cpu):
        for instance in range(opts.instances):
            per_build = {}
            for macro in ("MB_CONTROL", STRATEGY_MACROS[spec.strategy]):
                b = AttachedBuild(spec, macro)
                try:
                    per_build[macro] = (b.built, b.sizes(), run_samples(b, spec, opts.warmup + opts.samples, on_sample))
                finally:
                    b.close()
            _, _, control = per_build["MB_CONTROL"]
            control_ns = statistics.median(s.ns_per_event for s in control[opts.warmup:])
            for macro, (built, sizes, samples) in per_build.items():
                is_control = macro == "MB_CONTROL"
                for i, s in enumerate(samples):
                    rows.append({
                        **spec.config_fields(), "strategy": "control" if is_control else spec.strategy,
                        "instance": instance, "sample": i, "warmup": i < opts.warmup,
                        "object_sha256": built.sha256, "ops": s.run_cnt, "elapsed_ns": s.run_time_ns,
                        "ns_per_op": s.ns_per_event if is_control else s.ns_per_event - control_ns,
                        "gross_ns_per_op": s.ns_per_event,
                        "control_ns_per_op": None if is_control else control_ns,
                        "events_per_s": s.run_cnt / (s.wall_ns / 1e9),
                        "cpu_overhead_share": s.run_time_ns / (s.wall_ns * ncpu),
                        "delay_median_ns": histogram_median_ns(s.hist),
                        "delays_recorded": int(s.hist.sum()),
                        "load_round_trips": s.rounds,
                        "delay_hist": s.hist.tolist(),
                        **{f"prog_{k}": v for k, v in sizes.items()},
                        "load_avg_1m": load_avg_1m(), "status": "ok", "message": "",
                    })
    return rows
