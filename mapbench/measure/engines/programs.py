"""The programs engine: many distinct programs on one path, and how the kernel packs their code
(docs/method.md, "The article's program-level experiments").

A chain of N distinct small tp_btf programs (bpf/programs.bpf.c) on task_rename, a tracepoint
only the measuring thread fires (prctl PR_SET_NAME): every event runs all N of them in the order
they were attached, between chain_start and chain_stop, which time the chain with
bpf_ktime_get_ns(). Every side (a count of programs) and the control (start and stop alone) are
loaded together and attached one at a time, sample by sample in rotating order. A side's figure
is the chain's time per event net of the control's median, over N: ns per program run, whose
ratio to one program's says what the count of programs costs each of them (i-cache, iTLB: this
VM has no PMU to count them). The programs' text is located in /proc/kallsyms: pages and 2 MiB
regions it spans, beside its jited bytes.
"""

from __future__ import annotations

import ctypes
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mapbench.binding.libbpf import BpfObject, fdinfo, program_sizes
from mapbench.errors import BadInput, EnvironmentProblem
from mapbench.measure import build
from mapbench.measure.engine import Axis, Engine, Host, MeasureOptions, Spec
from mapbench.measure.runstats import RUN_STATS, stats_for
from mapbench.measure.strategies import CONTROL_MACRO
from mapbench.measure.values import parse_choice, parse_whole_number

NAME = "programs"
DESCRIPTION = "a chain of N distinct programs on one tracepoint: ns per program run, and the pages their code spans"
SOURCE = "programs.bpf.c"
MAX_PROGRAMS = 1024  # MB_MAX_CHAIN of bpf/mapbench.h: the programs p0000000000 .. p1111111111
NAME_BITS = MAX_PROGRAMS.bit_length() - 1  # p<bits>: the chain's program names are 10 binary digits
PAGE = 4096
PACK_REGION = 2 << 20  # the pack allocator's unit on x86-64: 2 MiB (kernel/bpf/core.c, BPF_PROG_PACK_SIZE)
KALLSYMS = Path("/proc/kallsyms")
# struct mb_chain_counts (bpf/mapbench.h), one per CPU
COUNTS = np.dtype([("started_ns", np.uint64), ("events", np.uint64), ("ns", np.uint64), ("runs", np.uint64),
                   ("sum", np.uint64), ("pad", np.uint64)])
# packed: each program as small as it is, a few to a page; spread: each padded (never run) to about
# a page, so that the same instructions lie on a page of their own per program (bpf/programs.bpf.c)
LAYOUTS = ("packed", "spread")
PR_SET_NAME, PR_GET_NAME = 15, 16
MIN_SAMPLE_MS = 5
_ZERO = bytes(4)
_libc = ctypes.CDLL(None, use_errno=True)


def _programs(text) -> int:
    value = parse_whole_number(text, "--programs")
    if not 1 <= value <= MAX_PROGRAMS:
        raise BadInput(f"--programs {value} is outside 1..{MAX_PROGRAMS} (the chain bpf/programs.bpf.c defines)")
    return value


AXES = (
    Axis("programs", "--programs", "nr_programs", _programs, default=(1, 16),
         help=f"programs on the event's path, 1..{MAX_PROGRAMS}; 1,16,256,1024: head to head"),
    Axis("run_stats", "--run-stats", "run_stats", lambda t: parse_choice(t, "--run-stats", RUN_STATS),
         default=("off",), help="BPF run stats on or off while a side's samples run; on,off: head to head, the "
                                "stats' cost per program run"),
    Axis("layouts", "--layout", "layout", lambda t: parse_choice(t, "--layout", LAYOUTS), default=("packed",),
         help="packed (each program as small as it is) or spread (each padded to about a page, the padding never "
              "run); packed,spread: head to head"),
)
SIDES = ("programs", "run_stats", "layouts")
DEFAULTS = MeasureOptions(samples=5, instances=3, warmup=1, target_ms=30.0)


@dataclass(frozen=True)
class ProgramsSpec(Spec):
    nr_programs: int = 1
    isa: str = build.DEFAULT_ISA
    run_stats: str = "off"  # BPF run stats while its samples run
    layout: str = "packed"

    def __post_init__(self):
        _programs(self.nr_programs)
        parse_choice(self.run_stats, "--run-stats", RUN_STATS)
        parse_choice(self.layout, "--layout", LAYOUTS)

    def control_key(self) -> tuple:
        return (self.isa, self.run_stats)  # start and stop alone, whatever the count, with the side's stats

    def used_fields(self) -> set[str]:
        return {"nr_programs", "isa", "run_stats", "layout"}

    def config_fields(self) -> dict:
        return {"engine": NAME, "family": "programs", "strategy": "chain", "op": "task_rename",
                "isa": self.isa, "nr_programs": self.nr_programs, "run_stats": self.run_stats,
                "code_layout": self.layout}


def chain_names(n: int) -> list[str]:
    """The first n programs of the chain, in attach order: p0000000000, p0000000001, ..."""
    return [f"p{i:0{NAME_BITS}b}" for i in range(n)]


def kallsyms_text(symbols: dict[str, int]) -> dict[str, int]:
    """Where /proc/kallsyms puts each of these symbols (name -> address); 0 where absent or
    hidden (only root sees real addresses)."""
    found = dict.fromkeys(symbols, 0)
    with KALLSYMS.open() as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] in found:
                found[parts[2]] = int(parts[0], 16)
    return found


def spans(extents: list[tuple[int, int]], unit: int) -> int:
    """Distinct units (pages, regions) that code at these (address, bytes) extents touches."""
    touched = set()
    for address, size in extents:
        touched.update(range(address // unit, (address + max(size, 1) - 1) // unit + 1))
    return len(touched)


class ChainBuild:
    """One load of programs.bpf.c with the first N programs of the chain (none for the control)
    beside chain_start and chain_stop. `attached(stack)` attaches start, the chain in order, then
    stop, through links the stack owns."""

    def __init__(self, spec: ProgramsSpec, control: bool):
        self.spec, self.control = spec, control
        spread = spec.layout == "spread" and not control  # the control's start and stop are the same in both
        self.built = build.compile_object(SOURCE, CONTROL_MACRO, spec.isa, ("MB_SPREAD",) if spread else ())
        self.obj = BpfObject(self.built.path)
        try:
            names = [] if control else chain_names(spec.nr_programs)
            wanted = {"chain_start", "chain_stop", *names}
            for p in self.obj.programs():
                p.set_autoload(p.name in wanted)
            started = time.perf_counter()
            self.obj.load()
            self.load_ms = (time.perf_counter() - started) * 1e3
            self.counts_map = self.obj.map("chain")
            if self.counts_map.value_size != COUNTS.itemsize:
                raise EnvironmentProblem(f"map chain holds {self.counts_map.value_size} bytes, mapbench reads "
                                         f"{COUNTS.itemsize}: bpf/mapbench.h and engines/programs.py disagree")
            self.start, self.stop = self.obj.program("chain_start"), self.obj.program("chain_stop")
            self.chain = [self.obj.program(n) for n in names]
            infos = [p.info() for p in self.chain]
            self.sizes = program_sizes(infos)
            self.layout = self._layout(infos)
        except BaseException:
            self.obj.close()
            raise

    def _layout(self, infos: list[dict]) -> dict:
        """The chain's code as /proc/kallsyms places it: bpf_prog_<tag>_<name> of each program."""
        if not self.chain:
            return {"text_pages": None, "text_regions": None}
        symbols = {f"bpf_prog_{fdinfo(p.fd)['prog_tag']}_{p.name}": i["jited_prog_len"]
                   for p, i in zip(self.chain, infos)}
        where = kallsyms_text(symbols)
        if not all(where.values()):
            return {"text_pages": None, "text_regions": None}  # addresses hidden (not root) or renamed
        extents = [(where[s], size) for s, size in symbols.items()]
        return {"text_pages": spans(extents, PAGE), "text_regions": spans(extents, PACK_REGION)}

    def attach(self, stack: ExitStack) -> None:
        for program in (self.start, *self.chain, self.stop):
            stack.enter_context(program.attach())

    def counts(self, cpu: int | None) -> dict[str, int]:
        """The chain's counts on `cpu` (None: every CPU's, added), and chain_stop's run stats count."""
        per_cpu = np.frombuffer(self.counts_map.lookup(_ZERO), COUNTS)
        mine = per_cpu if cpu is None else per_cpu[cpu:cpu + 1]
        return {**{name: int(mine[name].sum()) for name in COUNTS.names if name != "started_ns"},
                "run_cnt": self.stop.info()["run_cnt"]}

    def sample(self, seconds: float) -> Sample:
        """Attach, rename this thread for `seconds` (each rename one event), detach. Counted on this
        thread's CPU when it is pinned to one: a task of another process can rename itself (every exec
        does) on another CPU, and its chain may be half run when the counts are read."""
        pinned = os.sched_getaffinity(0)
        cpu = next(iter(pinned)) if len(pinned) == 1 else None
        with stats_for(self.spec.run_stats, False), ExitStack() as links:
            self.attach(links)
            before, t0 = self.counts(cpu), time.monotonic_ns()
            renames = fire(seconds)
            after, t1 = self.counts(cpu), time.monotonic_ns()
        d = {k: after[k] - before[k] for k in before}
        # run_cnt grows only while run stats are on (anyone's: the kernel has one switch for all)
        return Sample(renames, t1 - t0, d["events"], d["ns"], d["runs"], d["sum"],
                      stats_as_asked=(d["run_cnt"] > 0) == (self.spec.run_stats == "on"))

    def close(self) -> None:
        self.obj.close()

    def __enter__(self) -> ChainBuild:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def fire(seconds: float) -> int:
    """task_rename events from this thread for `seconds`: its name set again and again, then
    put back."""
    old = ctypes.create_string_buffer(16)
    _libc.prctl(PR_GET_NAME, old, 0, 0, 0)
    names = (b"mapbench-chain0", b"mapbench-chain1")
    n, deadline = 0, time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline:
            for _ in range(64):
                if _libc.prctl(PR_SET_NAME, names[n & 1], 0, 0, 0) != 0:
                    raise EnvironmentProblem(f"prctl(PR_SET_NAME): {os.strerror(ctypes.get_errno())}")
                n += 1
    finally:
        _libc.prctl(PR_SET_NAME, old, 0, 0, 0)
    return n


@dataclass(frozen=True)
class Sample:
    renames: int
    wall_ns: int
    events: int  # events chain_stop timed (every CPU: another task's renames too)
    ns: int
    runs: int  # the chain's programs' runs
    sum: int
    stats_as_asked: bool = True  # run stats were on or off, as the side asked, before and after

    @property
    def ns_per_event(self) -> float:
        return self.ns / self.events if self.events else float("nan")


class Programs(Engine):
    name, description, axes, sides = NAME, DESCRIPTION, AXES, SIDES
    note = ("programs engine: ns per program run, a chain of N distinct programs on one tracepoint timed per event "
            "inside BPF, net of the chain's two timing programs alone, over N.")
    defaults = DEFAULTS

    def make_spec(self, fields: dict, host: Host) -> ProgramsSpec:
        return ProgramsSpec(**fields)

    def check_options(self, opts: MeasureOptions) -> None:
        if opts.target_ms < MIN_SAMPLE_MS:
            raise BadInput(f"--sample-ms {opts.target_ms:g} is below {MIN_SAMPLE_MS}, the programs engine's minimum")

    def open(self, spec: ProgramsSpec, control: bool, load: int) -> ChainBuild:
        return ChainBuild(spec, control)

    def calibrate(self, builds, opts: MeasureOptions, calibration) -> float:
        return opts.target_ms / 1000  # seconds of renames per sample

    def sample(self, build: ChainBuild, number: int, seconds: float, session) -> Sample:
        return build.sample(seconds)

    def control_figures(self, s: Sample) -> dict[str, list[float]]:
        # a control sample run with the stats not as asked (another process held them on) is not
        # the control of its sides
        return {"ns_per_event": [s.ns_per_event]} if s.stats_as_asked else {}

    def rows(self, b: ChainBuild, s: Sample, control: dict[str, float] | None) -> list[dict]:
        n = 0 if b.control else b.spec.nr_programs
        fields = {**b.spec.config_fields(),
                  **({"strategy": "control", "nr_programs": 0, "code_layout": "packed"} if b.control else {})}
        net = s.ns_per_event - control["ns_per_event"] if control and "ns_per_event" in control else None
        # every event ran every program of the chain, each adding its own number once
        whole = s.events > 0 and s.runs == n * s.events and s.sum == s.events * n * (n - 1) // 2
        status, message = "ok", ""
        if not whole:
            status = "incomplete"
            message = f"{s.runs} program runs and sum {s.sum} for {s.events} events of {n} programs"
        elif not s.stats_as_asked or (net is None and not b.control):
            status = "stats_not_as_asked"
            message = (f"BPF run stats were not {b.spec.run_stats} throughout the "
                       + ("sample" if not s.stats_as_asked else "control's samples")
                       + " (another process held them on?)")
        return [{
            **fields, **b.sizes, **b.layout, "object_sha256": b.built.sha256, "prog_load_ms": b.load_ms,
            "ops": s.events * max(n, 1), "elapsed_ns": s.ns,
            "ns_per_op": net / n if n and net is not None else None,
            "gross_ns_per_op": s.ns_per_event / n if n else s.ns_per_event,
            "control_ns_per_op": control["ns_per_event"] / n if n and net is not None else None,
            "chain_ns_per_event": net if n else s.ns_per_event,
            "events_per_s": s.events / (s.wall_ns / 1e9), "cpu_overhead_share": s.ns / s.wall_ns,
            "status": status, "message": message,
        }]


ENGINE = Programs()
