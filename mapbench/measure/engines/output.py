"""The output engine: what sending an event to user space costs a BPF program, through the BPF
ring buffer (bpf_ringbuf_reserve + submit, or bpf_ringbuf_output) or the perf buffer
(bpf_perf_event_output), with a consumer draining it (docs/method.md, "Output: ring buffer and
perf buffer").

A raw_tp program (bpf/output.bpf.c) run by BPF_PROG_TEST_RUN emits events of --event-size bytes
for a window of --sample-ms in a bpf_loop timed with bpf_ktime_get_ns, as the kernel engine's
producers do; a native consumer thread (_native.c, libbpf's ring_buffer__poll / perf_buffer__poll)
pinned to another CPU drains the buffer at full speed or at --consumer-rate events a second. A
figure is ns per event emitted, net of the control build (the same loop building the event, no
output). Every event the program
tried to emit is either consumed or lost (no room: counted by the program as the kernel refused
it); after each sample the consumer drains the buffer before the next one, so a row's counts add up.
"""

from __future__ import annotations

import contextlib
import functools
import time
from contextlib import ExitStack
from dataclasses import dataclass

from mapbench.binding._libbpf import ffi, lib
from mapbench.binding.libbpf import BpfObject, raise_for
from mapbench.errors import BadInput
from mapbench.measure import build
from mapbench.measure.cpus import Producers
from mapbench.measure.engine import Axis, Engine, Host, MeasureOptions, NotMeasured, Spec
from mapbench.measure.values import parse_choice, parse_number, parse_whole_number

NAME = "output"
DESCRIPTION = "events sent to user space: BPF ring buffer (reserve+submit, output) or perf buffer, with a consumer"
SOURCE = "output.bpf.c"
# map -> op -> the build's -DMB_STORAGE macro
MACROS = {"ringbuf": {"reserve_submit": "MB_RINGBUF_RESERVE", "output": "MB_RINGBUF_OUTPUT"},
          "perf_buffer": {"output": "MB_PERF_OUTPUT"}}
OPS = ("reserve_submit", "output")
MIN_EVENT_SIZE = 16
MIN_RATE = 10_000  # events/s: a slower consumer would take seconds to drain a full buffer after each sample
PAGE = 4096
DRAIN_TIMEOUT_S = 5.0  # beyond what a limited-rate consumer needs for the backlog
FULL = 0.0  # --consumer-rate full
# the most events a run in a window may emit: bpf_loop's bound (2^23) of chunks between two reads
# of the clock (as the kernel engine's WINDOW_DRAWS; not imported, so that engines stay one floor)
WINDOW_DRAWS = (1 << 23) * lib.MB_CLOCK_EVERY


@dataclass(frozen=True)
class RunResult:
    """What one test run reported (struct mb_result of its CPU): ops attempted, hits emitted."""

    elapsed_ns: int
    ops: int
    hits: int
    start_ns: int
    cpu: int

    @property
    def ns_per_op(self) -> float:
        return self.elapsed_ns / self.ops

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.elapsed_ns


def _event_size(text) -> int:
    value = parse_whole_number(text, "--event-size")
    if value % 8 or not MIN_EVENT_SIZE <= value <= lib.MB_MAX_EVENT_SIZE:
        raise BadInput(f"--event-size {value} must be a multiple of 8 in {MIN_EVENT_SIZE}..{lib.MB_MAX_EVENT_SIZE}")
    return value


def _rate(text) -> float:
    if str(text).strip().lower() == "full":
        return FULL
    value = parse_number(text, "--consumer-rate")
    if not MIN_RATE <= value <= 1e9:
        raise BadInput(f"--consumer-rate {text} must be 'full' or events per second in {MIN_RATE:,}..1e9")
    return value


def _buffer_bytes(text) -> int:
    value = parse_whole_number(text, "--buffer-size")
    if value < PAGE or value & (value - 1) or value > 1 << 30:
        raise BadInput(f"--buffer-size {value} must be a power of two of bytes in {PAGE}..{1 << 30}")
    return value


def _wakeup(text) -> int:
    if str(text).strip().lower() == "default":
        return 0
    value = parse_whole_number(text, "--wakeup")
    if not 1 <= value <= 1 << 20:
        raise BadInput(f"--wakeup {value} must be 'default' or one wakeup per N events, N in 1..{1 << 20}")
    return value


def _producers(text):
    if str(text).strip().lower() == "all":
        return "all"
    value = parse_whole_number(text, "--producers")
    if value < 1:
        raise BadInput(f"--producers {value} must be at least 1")
    return value


AXES = (
    # the perf buffer first: head-to-head ratios read ring buffer / perf buffer
    Axis("maps", "--map", "strategy", lambda t: parse_choice(t, "--map", MACROS), default=("perf_buffer", "ringbuf"),
         help="ringbuf (one buffer shared by every CPU) or perf_buffer (one per CPU)"),
    Axis("ops", "--op", "op", lambda t: parse_choice(t, "--op", OPS), default=("output", "reserve_submit"),
         help="reserve_submit (ringbuf: write in place) or output (a copy from a per-CPU buffer)"),
    Axis("event_sizes", "--event-size", "event_size", _event_size,
         help=f"bytes of one event, a multiple of 8 in {MIN_EVENT_SIZE}..4096"),
    Axis("producers", "--producers", "producers", _producers, help="CPUs emitting at once (N or all)"),
    Axis("consumer_rates", "--consumer-rate", "consumer_rate", _rate,
         help="the consumer drains at full speed, or takes at most this many events a second"),
    Axis("buffer_sizes", "--buffer-size", "buffer_bytes", _buffer_bytes,
         help="bytes of the ring buffer; of each CPU's perf buffer (default 256 KiB)"),
    Axis("isas", "--isa", "isa", build.check_isa, help="BPF ISA (clang -mcpu): v1, v2, v3"),
    Axis("wakeups", "--wakeup", "wakeup_every", _wakeup,
         help="default (ring buffer: adaptive; perf buffer: every event), or one wakeup per N events "
              "(ring buffer: BPF_RB_FORCE_WAKEUP / NO_WAKEUP; perf buffer: wakeup_events N)"),
)
SIDES = ("maps", "ops")
DEFAULTS = MeasureOptions(samples=10, instances=5, warmup=2, target_ms=5.0)


@dataclass(frozen=True)
class OutputSpec(Spec):
    strategy: str
    op: str = "output"
    event_size: int = 64
    producers: int = 1
    consumer_rate: float = FULL
    buffer_bytes: int = 256 * 1024
    isa: str = build.DEFAULT_ISA
    wakeup_every: int = 0  # 0: each buffer's default notification; N: one wakeup per N events

    @property
    def macro(self) -> str:
        return MACROS[self.strategy][self.op]

    def used_fields(self) -> set[str]:
        return {"strategy", "op", "event_size", "producers", "consumer_rate", "buffer_bytes", "isa", "wakeup_every"}

    def control_key(self) -> tuple:
        return (self.event_size, self.producers, self.isa)

    def config_fields(self) -> dict:
        return {"engine": NAME, "family": NAME, "strategy": self.strategy, "op": self.op, "isa": self.isa,
                "event_size": self.event_size, "producers": self.producers,
                "consumer_rate": float(self.consumer_rate), "buffer_bytes": self.buffer_bytes,
                "wakeup_every": self.wakeup_every}


def make_spec(fields: dict, host: Host) -> OutputSpec | NotMeasured:
    strategy, op = fields.get("strategy", "ringbuf"), fields.get("op", "output")
    if op not in MACROS[strategy]:
        return NotMeasured((), "")  # the perf buffer has no reserve: nothing to measure
    spec = OutputSpec(**fields)
    if spec.producers == "all":
        spec = OutputSpec(**{**fields, "producers": len(host.cpus)})
    host.producer_cpus(None, spec.producers)  # a one-line error above the usable CPUs
    return spec


@dataclass(frozen=True)
class OutputSample:
    runs: list[RunResult]
    consumed: int  # events the consumer took during the sample and its drain
    consumed_bytes: int
    lost_reported: int  # perf buffer: what its lost records said
    drain_ns: int  # after the runs, until the consumer had every event emitted (or gave up)


class OutputBuild:
    """A loaded build of bpf/output.bpf.c and, for a side, its consumer (started at the first
    sample, on the session's consumer CPU). Owns both: close it, or use `with`."""

    def __init__(self, spec: OutputSpec, control: bool):
        self.spec, self.control = spec, control
        self.built = build.compile_object(SOURCE, "MB_CONTROL" if control else spec.macro, spec.isa)
        self.consumer = None
        self.obj = BpfObject(self.built.path)
        try:
            cfg = self.obj.map(".rodata").data("struct mb_output_config")
            cfg.event_size = spec.event_size
            cfg.wakeup_every = spec.wakeup_every if spec.strategy == "ringbuf" else 0
            if spec.strategy == "ringbuf" and not control:
                self.obj.map("events").set_max_entries(spec.buffer_bytes)
            self.obj.load()
            self.prog = self.obj.program("run")
            self.results = self.obj.map("results")
            info = self.prog.info()
            self.sizes = {"prog_xlated_bytes": info["xlated_prog_len"], "prog_jited_bytes": info["jited_prog_len"]}
        except BaseException:
            self.close()
            raise

    def start_consumer(self, cpu: int) -> None:
        if self.control or self.consumer is not None:
            return
        c = ffi.new("struct mb_consumer *")
        c.map_fd = self.obj.map("events").fd
        c.perf = int(self.spec.strategy == "perf_buffer")
        c.cpu = cpu
        c.rate_per_s = self.spec.consumer_rate
        c.perf_pages = self.spec.buffer_bytes // PAGE
        c.wakeup_every = self.spec.wakeup_every
        raise_for(lib.mb_consumer_start(c), f"starting the {self.spec.strategy} consumer")
        self.consumer = c

    def counts(self) -> tuple[int, int, int]:
        c = self.consumer
        return (lib.mb_consumer_events(c), lib.mb_consumer_bytes(c), lib.mb_consumer_lost(c)) if c else (0, 0, 0)

    def run(self, nr_loops: int, start: int, cpu: int | None = None, producers: int = 0,
            window_ns: int = 0) -> RunResult:
        """One test run: nr_loops events from sequence number `start` (see kernel.LoadedBuild.run)."""
        args = ffi.new("struct mb_run_args *", {"nr_loops": nr_loops, "start": start, "producers": producers,
                                                "window_ns": window_ns})
        self.prog.test_run(args, cpu)
        slots = ffi.from_buffer("struct mb_result[]", self.results.lookup(bytes(4)))
        if cpu is None:
            cpu = max(range(len(slots)), key=lambda c: slots[c].start_ns)
        r = slots[cpu]
        return RunResult(r.elapsed_ns, r.ops, r.hits, r.start_ns, cpu)

    def drain(self, expected: int) -> int:
        """Wait until the consumer has taken `expected` events in all (every one emitted), or for
        the time a limited-rate consumer needs for them and DRAIN_TIMEOUT_S more; the ns waited."""
        t0 = time.monotonic_ns()
        backlog = max(0, expected - self.counts()[0])
        limit = DRAIN_TIMEOUT_S + (backlog / self.spec.consumer_rate if self.spec.consumer_rate else 0)
        while self.counts()[0] < expected and time.monotonic_ns() - t0 < limit * 1e9:
            time.sleep(0.0002)
        return time.monotonic_ns() - t0

    def close(self) -> None:
        if self.consumer is not None:
            lib.mb_consumer_stop(self.consumer)
            self.consumer = None
        self.obj.close()

    def __enter__(self) -> OutputBuild:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _sample(b: OutputBuild, number: int, window_ns: float, session: dict) -> OutputSample:
    """One sample: the producers emit for one window of window_ns (one producer alone, or several
    meeting at the kernel engine's gate), however many events find room: a run of a fixed count
    would end early where attempts fail fast. Then the consumer drains what was emitted."""
    b.start_consumer(session["consumer_cpu"])
    before = b.counts()
    if b.consumer is not None:
        lib.mb_consumer_repace(b.consumer)
    n = b.spec.producers
    b.obj.map("gate").update(bytes(4), bytes(8))
    jobs = [functools.partial(b.run, WINDOW_DRAWS, ((number + 1) * n + p) * WINDOW_DRAWS, producers=n,
                              window_ns=int(window_ns)) for p in range(n)]
    if n == 1:
        runs = [jobs[0]()]
    else:
        pool = session["pools"][n]
        runs = pool.run([functools.partial(job, cpu=cpu) for job, cpu in zip(jobs, pool.cpus)])
    emitted = sum(r.hits for r in runs)
    drain_ns = b.drain(before[0] + emitted) if b.consumer is not None else 0
    if b.consumer is not None and b.consumer.error:  # a poll failed: the counts cannot be trusted
        raise_for(b.consumer.error, f"polling the {b.spec.strategy} consumer")
    after = b.counts()
    return OutputSample(runs, after[0] - before[0], after[1] - before[1], after[2] - before[2], drain_ns)


class Output(Engine):
    name, description, axes, sides = NAME, DESCRIPTION, AXES, SIDES
    note = ("output engine: ns per event a BPF program emitted (ring buffer reserve+submit or output, perf buffer "
            "output), net of the control build (same loop, no output), per event that got a place in the buffer; "
            "a consumer thread on another CPU drained it at full speed or a limited rate; events lost are those "
            "the buffer had no room for.")
    defaults = DEFAULTS

    def make_spec(self, fields: dict, host: Host) -> OutputSpec | NotMeasured:
        return make_spec(fields, host)

    @contextlib.contextmanager
    def session(self, sides, opts: MeasureOptions, host: Host):
        """Producer threads per count of producers (the measuring CPU first), and the consumer's CPU."""
        with ExitStack() as threads:
            pools = {n: threads.enter_context(Producers(host.producer_cpus(opts.cpu, n)))
                     for n in sorted({s.producers for s in sides}) if n > 1}
            yield {"pools": pools, "consumer_cpu": consumer_cpu(opts.cpu, host)}

    def open(self, spec: OutputSpec, control: bool, load: int) -> OutputBuild:
        return OutputBuild(spec, control)

    def calibrate(self, builds: list[OutputBuild], opts: MeasureOptions, calibration) -> float:
        """A sample is a window of --sample-ms: nothing to find."""
        return opts.target_ms * 1e6

    def sample(self, build: OutputBuild, number: int, calibration, session) -> OutputSample:
        return _sample(build, number, calibration, session)

    def control_figures(self, sample: OutputSample) -> dict[str, list[float]]:
        return {"ns_per_op": [r.ns_per_op for r in sample.runs]}

    def rows(self, build: OutputBuild, sample: OutputSample, control: dict[str, float] | None) -> list[dict]:
        return [_row(build, sample, None if build.control else control["ns_per_op"])]


def consumer_cpu(cpu: int | None, host: Host) -> int:
    """The consumer's CPU: the first one this process may use that is not the measuring CPU (the
    runner's: --cpu, else the last one, cpus.default_cpu); the measuring one where it is the only
    one. From the host's CPUs, read before the runner pinned this thread to the measuring one."""
    measuring = cpu if cpu is not None else max(host.cpus)
    others = [c for c in host.cpus if c != measuring]
    return others[0] if others else measuring


ENGINE = Output()


def _row(b: OutputBuild, s: OutputSample, control_ns: float | None) -> dict:
    fields = b.spec.config_fields()
    if b.control:
        fields.update(strategy="control")
    ops = sum(r.ops for r in s.runs)
    emitted = sum(r.hits for r in s.runs)
    gross = sum(r.ns_per_op for r in s.runs) / len(s.runs)  # per attempt, each producer's, averaged
    net = gross if b.control else gross - control_ns
    done = ops if b.control else emitted
    span = max(r.end_ns for r in s.runs) - min(r.start_ns for r in s.runs)
    return {
        **fields, **b.sizes, "object_sha256": b.built.sha256,
        "status": "ok" if done else "no_success",
        "message": "" if done else "no event found room in the buffer in this sample",
        "ops": ops, "ops_succeeded": done, "elapsed_ns": max(r.elapsed_ns for r in s.runs),
        # per event emitted, the lost attempts' time included (as a write that can fail)
        "ns_per_op": net * ops / done if done else None,
        "gross_ns_per_op": gross * ops / done if done else None,
        "control_ns_per_op": control_ns,
        "events_emitted": None if b.control else emitted,
        "events_lost": None if b.control else ops - emitted,
        "events_consumed": None if b.control else s.consumed,
        "consumed_bytes": None if b.control else s.consumed_bytes,
        "events_lost_reported": s.lost_reported if b.spec.strategy == "perf_buffer" and not b.control else None,
        "loss_rate": None if b.control else (ops - emitted) / ops,
        "emitted_events_per_s": None if b.control or span <= 0 else emitted * 1e9 / span,
        "drain_ns": None if b.control else s.drain_ns,
    }
