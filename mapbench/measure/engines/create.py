"""The create engine: a record for each fresh task and its removal at exit (docs/method.md,
"Task creation"), the cost fork-heavy hosts pay, after the kernel's local-storage-create bench.

tp_btf programs on sched_process_fork and sched_process_exit (bpf/taskcreate.bpf.c) make a record
for each new thread of this process when it is forked, task local storage
(bpf_task_storage_get with F_CREATE on the child) or a pid-keyed hash insert, and remove it when
it exits (the hash's delete, or task storage's explicit delete; without it the kernel frees task
storage itself when the task is freed, in bpf_task_storage_free, outside any program). --op
create (insert) times the first, --op delete the second, with bpf_ktime_get_ns around the body,
on this process's threads only. A sample starts --tasks threads that wait until all have started
(so that each holds its record at once: the memory cgroup the map was created in says what they
take), then lets them exit and waits for their exits. Every side and its ISA's control (the same
hooks with no map operation) are loaded together and attached one at a time, sample by sample in
rotating order; a side's figure is its ns per timed event net of the control's median.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from mapbench.binding._libbpf import ffi, lib
from mapbench.binding.libbpf import BpfObject, program_sizes, run_stats, run_stats_of
from mapbench.errors import BadInput, EnvironmentProblem
from mapbench.measure import build, memcg
from mapbench.measure.engine import Axis, Engine, Host, MeasureOptions, Spec
from mapbench.measure.strategies import CONTROL_MACRO, STRATEGIES
from mapbench.measure.taskmaps import LIVE_TASK_ROOM, check_counts, counts, dummy_pids
from mapbench.measure.values import parse_choice, parse_whole_number

NAME = "create"
DESCRIPTION = "a record for each fresh task on fork and its removal at exit (tp_btf), net of empty programs"
SOURCE = "taskcreate.bpf.c"
# the fork-side op of each strategy, by its own name; "create" and "insert" name it for either
FIRST_OP = {"task_storage": "create", "pid_hash": "insert"}
STRATEGY_NAMES = tuple(FIRST_OP)
OPS = ("create", "insert", "delete")
MAX_TASKS = 10_000  # threads alive at once in a sample
MAX_SIZE = 10_000_000
EXIT_WAIT_S = 5.0  # how long a sample waits for its threads' exits to reach the programs


def _size(text) -> int:
    value = parse_whole_number(text, "--size", " of dummy pids")
    if not 0 <= value <= MAX_SIZE:
        raise BadInput(f"--size {value} is outside 0..{MAX_SIZE:_} for the create engine")
    return value


def _tasks(text) -> int:
    value = parse_whole_number(text, "--tasks")
    if not 1 <= value <= MAX_TASKS:
        raise BadInput(f"--tasks {value} is outside 1..{MAX_TASKS} (fresh threads per sample)")
    return value


AXES = (
    Axis("strategies", "--map", "strategy", lambda t: parse_choice(t, "--map", STRATEGY_NAMES),
         default=STRATEGY_NAMES, help="task_storage or pid_hash"),
    Axis("ops", "--op", "op", lambda t: parse_choice(t, "--op", OPS),
         help="create (insert: the same, a pid hash's name for it) on fork, or delete at exit"),
    Axis("sizes", "--size", "map_size", _size, help="dummy pids pre-filled in the pid hash"),
    Axis("tasks", "--tasks", "nr_tasks", _tasks, help="fresh threads per sample, alive together"),
    Axis("isas", "--isa", "isa", build.check_isa),
)
SIDES = ("strategies", "isas")
DEFAULTS = MeasureOptions(samples=8, instances=3, warmup=2, target_ms=50.0)


@dataclass(frozen=True)
class CreateSpec(Spec):
    strategy: str
    op: str = "create"  # normalised to the strategy's name for it (FIRST_OP), or "delete"
    map_size: int = 1000  # dummy pids in the hash (task storage holds only live tasks)
    # cgroup v1 and v2 charge in batches of 64 pages per CPU (MEMCG_CHARGE_BATCH): 256 KiB over 2000
    # tasks is 128 B per task of granularity
    nr_tasks: int = 2000
    isa: str = build.DEFAULT_ISA

    def __post_init__(self):
        parse_choice(self.strategy, "--map", STRATEGY_NAMES)
        parse_choice(self.op, "--op", OPS)
        _size(self.map_size)
        _tasks(self.nr_tasks)
        build.check_isa(self.isa)

    @property
    def holds_pids(self) -> bool:
        return any(plan.sized for plan in STRATEGIES[self.strategy].maps)

    def control_key(self) -> tuple:
        return (self.isa, self.op == "delete")  # which hook the control times

    def used_fields(self) -> set[str]:
        return {"strategy", "op", "isa", "nr_tasks", "map_size"}

    def config_fields(self) -> dict:
        return {"engine": NAME, "family": "task_create", "strategy": self.strategy, "op": self.op,
                "map_size": self.map_size, "value_size": 16, "hit_ratio": 1.0, "isa": self.isa,
                "key_distribution": "live", "nr_tasks": self.nr_tasks, "mode": "fresh tasks"}


def make_spec(fields: dict) -> CreateSpec:
    strategy = fields.get("strategy", STRATEGY_NAMES[0])
    op = fields.get("op") or "create"
    if op in ("create", "insert"):
        op = FIRST_OP.get(strategy, op)
    return CreateSpec(**{**fields, "op": op})


@dataclass(frozen=True)
class Sample:
    target_events: int  # the timed events of the load's threads (forks, or exits),
    target_ns: int  # their bodies' time, as the programs timed it,
    all_events: int  # and every event the programs ran on
    run_time_ns: int  # BPF run stats, both programs, every event, trampoline included
    run_cnt: int
    wall_ns: int
    created: int  # records made on fork
    removed: int  # records there at exit
    exited: int
    held_bytes: int | None  # the cgroup's usage while every thread was alive
    after_bytes: int | None  # and once they had exited
    before_bytes: int | None

    @property
    def ns_per_event(self) -> float:
        return self.target_ns / self.target_events if self.target_events else float("nan")

    @property
    def run_stats_ns_per_event(self) -> float:
        return self.run_time_ns / self.run_cnt if self.run_cnt else float("nan")


def _spawn(n: int, held) -> None:
    """n threads of this process, alive together (_native.c's mb_threads_start: pthread_create,
    about ten times as fast as Python's threads here): `held()` is called once all have started,
    then they exit and are joined."""
    handle = lib.mb_threads_start(n)
    if handle == ffi.NULL:
        raise EnvironmentProblem(f"could not start {n} threads: {os.strerror(ffi.errno)}")
    try:
        held()
    finally:
        lib.mb_threads_finish(handle)


class CreateBuild:
    """One loaded build of taskcreate.bpf.c (a side's or the control). The record map is created
    inside a memory cgroup of its own where the host has one (mapbench/measure/memcg.py), so its
    usage is the records' memory. Nothing is ever pinned; links are owned by each sample."""

    def __init__(self, spec: CreateSpec, control: bool):
        self.spec, self.control = spec, control
        macro = CONTROL_MACRO if control else STRATEGIES[spec.strategy].macro
        self.built = build.compile_object(SOURCE, macro, spec.isa)
        self.cgroup, self.loaded_bytes = None, None
        self.obj = BpfObject(self.built.path)
        try:
            cfg = self.obj.map(".rodata").data("struct mb_create_config")
            cfg.target_tgid = os.getpid()
            cfg.op = lib.MB_OP_DELETE if spec.op == "delete" else lib.MB_OP_INSERT
            self.memory_source = None
            if not control:
                kind = memcg.flavour()
                self.memory_source = kind.name if kind else memcg.why_not()
                if spec.holds_pids:
                    self.obj.map("records").set_max_entries(spec.map_size + LIVE_TASK_ROOM)
                if kind:
                    self.cgroup = memcg.MemoryCgroup(kind)
            # A map is charged to the cgroup it is created in, for life, its records too. Task storage
            # needs its BTF types at creation, so the whole object loads there: the programs and the
            # other maps are a constant, and the figure per task is a difference of usages.
            with self.cgroup.charging() if self.cgroup else ExitStack():
                self.obj.load()
            self.counts_map = self.obj.map("counts")
            check_counts(self.counts_map, "engines/create.py")
            if not control and spec.holds_pids and spec.map_size:
                dummies = dummy_pids(spec.map_size)
                self.obj.map("records").update_batch(dummies, np.zeros((spec.map_size, 2), np.uint64))
            self.programs = [self.obj.program(name) for name in ("on_fork", "on_exit")]
            self.sizes = program_sizes([p.info() for p in self.programs])
            self.memory = None if control or not spec.holds_pids else self.obj.map("records").memlock_bytes()
            self.loaded_bytes = self.usage()  # before any task had a record
        except BaseException:
            self.close()
            raise

    def stats(self) -> tuple[int, int]:
        return run_stats_of(self.programs)

    def counts(self) -> dict[str, int]:
        return counts(self.counts_map)

    def result(self) -> dict[str, int]:
        r = self.obj.map(".bss").read("struct mb_create_result")
        return {"created": int(r.created), "removed": int(r.removed), "exited": int(r.exited)}

    def usage(self) -> int | None:
        return self.cgroup.usage()[0] if self.cgroup else None

    def sample(self, nr_tasks: int) -> Sample:
        """Attach, start nr_tasks threads, read the cgroup while they all live, let them exit,
        wait until the programs have seen every exit, detach."""
        held = {}
        with ExitStack() as links:
            for program in self.programs:
                links.enter_context(program.attach())
            before = self.usage()
            t0, (rt0, rc0), c0, r0 = time.monotonic_ns(), self.stats(), self.counts(), self.result()
            _spawn(nr_tasks, lambda: held.update(bytes=self.usage()))
            give_up = time.monotonic() + EXIT_WAIT_S  # join returns before the kernel's exit path is done
            while self.result()["exited"] - r0["exited"] < nr_tasks and time.monotonic() < give_up:
                time.sleep(0.001)
            t1, (rt1, rc1), c1, r1 = time.monotonic_ns(), self.stats(), self.counts(), self.result()
        return Sample(c1["target_events"] - c0["target_events"], c1["target_ns"] - c0["target_ns"],
                      c1["all_events"] - c0["all_events"], rt1 - rt0, rc1 - rc0, t1 - t0,
                      **{k: r1[k] - r0[k] for k in r1}, held_bytes=held.get("bytes"), after_bytes=self.usage(),
                      before_bytes=before)

    def close(self) -> None:
        self.obj.close()
        if self.cgroup is not None:
            self.cgroup.close()
            self.cgroup = None

    def __enter__(self) -> CreateBuild:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Create(Engine):
    name, description, axes, sides = NAME, DESCRIPTION, AXES, SIDES
    note = ("create engine: ns per record made on fork (or removed at exit) for fresh threads, timed inside the "
            "programs, net of empty programs on the same hooks; memory per live task from the cgroup the map "
            "was created in.")
    defaults = DEFAULTS

    def make_spec(self, fields: dict, host: Host) -> CreateSpec:
        return make_spec(fields)

    def session(self, sides, opts: MeasureOptions, host: Host):
        return run_stats()

    def open(self, spec: CreateSpec, control: bool, load: int) -> CreateBuild:
        return CreateBuild(spec, control)

    def calibrate(self, builds, opts: MeasureOptions, calibration):
        return None  # a sample is --tasks fresh threads: tasks, not time, are its size

    def sample(self, build: CreateBuild, number: int, calibration, session) -> Sample:
        return build.sample(build.spec.nr_tasks)

    def control_figures(self, s: Sample) -> dict[str, list[float]]:
        return {"ns_per_op": [s.ns_per_event], "run_stats_ns_per_event": [s.run_stats_ns_per_event]}

    def rows(self, b: CreateBuild, s: Sample, control: dict[str, float] | None) -> list[dict]:
        control = control or {}
        fields = {**b.spec.config_fields(), **({"strategy": "control"} if b.control else {})}
        n = b.spec.nr_tasks
        # what the cgroup holds for n live tasks' records, over what it held at load: freed records are
        # kept for reuse (RCU, the allocator's caches), so later samples find memory already charged
        per_task = ((s.held_bytes - b.loaded_bytes) / n if s.held_bytes is not None and b.loaded_bytes is not None
                    else None)
        ok = s.target_events == n and (b.control or (s.created == n and s.removed == n))
        return [{
            **fields, **b.sizes, "object_sha256": b.built.sha256, "ops": s.target_events, "elapsed_ns": s.target_ns,
            "ns_per_op": s.ns_per_event - control.get("ns_per_op", 0.0), "gross_ns_per_op": s.ns_per_event,
            "control_ns_per_op": control.get("ns_per_op"),
            "run_stats_ns_per_event": s.run_stats_ns_per_event - control.get("run_stats_ns_per_event", 0.0),
            "events_per_s": n / (s.wall_ns / 1e9),  # fresh tasks per second, the whole round trip
            "cpu_overhead_share": s.target_ns / s.wall_ns,  # of the sample's wall time, in the timed bodies
            "ops_succeeded": s.created if s.target_events and b.spec.op != "delete" else s.removed,
            "entries_held": None if b.control else s.created,
            "records_left": None if b.control else s.created - s.removed,
            "map_memory_bytes": b.memory,
            "memory_current_bytes": s.held_bytes, "memory_source": b.memory_source,
            "bytes_per_task": per_task,
            "memory_after_bytes": s.after_bytes,
            "status": "ok" if ok else "incomplete",
            "message": "" if ok else (f"{s.target_events} timed events, {s.created} records made, {s.removed} "
                                      f"there at exit, of {n} tasks"),
        }]


ENGINE = Create()
