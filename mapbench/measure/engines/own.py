"""The own-program engine (`own`): a user's BPF program, its variants head to head (docs/own-programs.md).

Each variant (--variant NAME[=CFLAGS], or a git revision or object file through `mapbench ab`)
is compiled from the user's libbpf-style source once, and every variant of a comparison is
loaded in the same load with a control: empty programs of the same types on the same sections.

- Test-run mode: BPF_PROG_TEST_RUN of the chosen program (--prog). Types that take `repeat`
  (xdp, tc, socket filter, flow dissector, ...) run over the packets of --packet in rotation
  (one packet a call, `repeat` runs a call), timed by the kernel (the test run's duration);
  the others (raw_tp, syscall) run on --ctx, one run a call, timed by BPF run stats.
- Attached mode (--attach): every program of a variant attached by its section name, one
  variant a sample, while --load CMD (or the built-in ping-pong of --tasks threads) runs;
  the cost per event from BPF run stats, the events per sample beside it.
A variant's figure is net of the control's median in the same load, as every engine's.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from mapbench.binding.libbpf import BpfObject, pingpong, program_sizes, run_stats, run_stats_of
from mapbench.errors import BadInput, KernelRefused, Unsupported
from mapbench.measure import build, children, usersource
from mapbench.measure.engine import Axis, Engine, Host, MeasureOptions, Spec
from mapbench.measure.taskmaps import parse_pingpong_tasks
from mapbench.measure.usersource import Variant
from mapbench.measure.values import parse_choice

NAME = "own"
DESCRIPTION = "your own BPF program: variants of its source head to head (test run or attached), net of empty programs"
# libbpf's program type names (libbpf_bpf_prog_type_str) that BPF_PROG_TEST_RUN takes, and how
PACKET_TYPES = ("xdp", "sched_cls", "sched_act", "socket_filter", "cgroup_skb", "lwt_in", "lwt_out", "lwt_xmit",
                "lwt_seg6local", "flow_dissector")  # a packet in, `repeat` runs timed by the kernel
CONTEXT_REPEAT_TYPES = ("sk_lookup",)  # a context in, `repeat` runs
CONTEXT_TYPES = ("raw_tracepoint", "syscall")  # a context in, no `repeat`: one run a call, run stats
FILL_KEYS = ("sequential", "random")
MAX_REPEAT = 1 << 20
MAX_CALLS = 1 << 20
MIN_ATTACHED_MS = 50
ATTACHED_SAMPLE_MS = 200  # an attached sample when --sample-ms is left at the test runs' default


def _load(text) -> str:
    cmd = str(text).strip()
    try:
        if not shlex.split(cmd):
            raise ValueError("empty")
    except ValueError as exc:
        raise BadInput(f"--load {text!r} is not a command ({exc})") from None
    return cmd


def _prog(text) -> str:
    return str(text).strip()


AXES = (
    Axis("sources", "--source", "source", usersource.existing_file("--source"),
         help="your libbpf-style BPF C source (vmlinux.h of this kernel and its own directory on the include path)"),
    Axis("variants", "--variant", "variant", usersource.parse_variant, default=(Variant("default"),),
         help="NAME[=CFLAGS], repeatable: a build of the source, measured head to head with the others",
         repeat="each"),
    Axis("progs", "--prog", "prog", _prog, help="the program to test-run (default: the only one), or to attach "
         "(default: every program)", repeat="each"),
    Axis("packets", "--packet", "packet", usersource.existing_file("--packet"),
         help="a pcap (its packets in rotation) or raw bytes; default a 60-byte Ethernet/IPv4/UDP frame",
         repeat="each"),
    Axis("ctxs", "--ctx", "ctx", usersource.existing_file("--ctx"), help="the context's bytes, for context-only types",
         repeat="each"),
    Axis("attach", "--attach", "attach", bool, is_flag=True,
         help="attach the programs by section name and time live events by run stats"),
    Axis("loads", "--load", "load", _load, help="the command that makes the events while attached (default: "
         "the built-in ping-pong of --tasks threads)", repeat="each"),
    Axis("load_tasks", "--tasks", "nr_tasks", parse_pingpong_tasks),
    Axis("map_sizes", "--map-size", "map_sizes", usersource.parse_map_sizes,
         help="MAP=N, repeatable: max_entries before load", repeat="all"),
    Axis("fills", "--fill", "fills", usersource.parse_fills,
         help="MAP=N (integer keys) or MAP=FILE (raw key/value records), repeatable: filled after load",
         repeat="all"),
    Axis("fill_keys", "--fill-keys", "fill_keys", lambda t: parse_choice(t, "--fill-keys", FILL_KEYS),
         help="keys of --fill MAP=N: sequential (0..N-1) or random"),
    Axis("includes", "--include", "includes", usersource.existing_dir("--include"),
         help="DIR, repeatable: your -I directories", repeat="all"),
    Axis("isas", "--isa", "isa", build.check_isa),
)
SIDES = ("variants", "isas")
DEFAULTS = MeasureOptions(samples=10, instances=6, warmup=2, target_ms=20.0)


@dataclass(frozen=True)
class ProgramSpec(Spec):
    source: str | None = None
    variant: Variant = Variant("default")
    prog: str | None = None
    packet: str | None = None
    ctx: str | None = None
    attach: bool = False
    load: str | None = None
    nr_tasks: int = 2
    map_sizes: tuple = ()
    fills: tuple = ()
    fill_keys: str = "sequential"
    includes: tuple = ()
    isa: str = build.DEFAULT_ISA
    shown_as: str = field(default="", compare=False)  # how a report names where it came from (ab)

    @property
    def source_name(self) -> str:
        path = self.variant.object or self.variant.source or self.source
        return Path(path).name if path else "?"

    def setup(self) -> str:
        """What the programs ran on, for the label: packets, context, maps, load."""
        parts = []
        if self.attach:
            parts.append(f"load {self.load!r}" if self.load else f"ping-pong of {self.nr_tasks} tasks")
        else:
            if self.packet:
                parts.append(f"packets of {Path(self.packet).name}")
            if self.ctx:
                parts.append(f"ctx {Path(self.ctx).name}")
        parts += [f"{m} max {n:,}" for m, n in self.map_sizes]
        parts += [f"{m} filled " + (f"{int(how):,}" + (" random" if self.fill_keys == "random" else "")
                                    if how.isdigit() else f"from {Path(how).name}") for m, how in self.fills]
        return ", ".join(parts)

    def used_fields(self) -> set[str]:
        used = {"source", "variant", "prog", "isa", "map_sizes", "fills", "includes"}
        used |= {"attach", "load", "nr_tasks"} if self.attach else {"packet", "ctx"}
        if any(how.isdigit() for _, how in self.fills):
            used.add("fill_keys")
        return used

    def control_key(self) -> tuple:
        return (self.isa, self.attach, self.prog)

    def config_fields(self) -> dict:
        return {"engine": NAME, "family": self.source_name, "strategy": self.variant.name, "op": self.prog or "",
                "isa": self.isa, "mode": "attached" if self.attach else "test run", "setup": self.setup()}


def make_spec(fields: dict) -> ProgramSpec:
    spec = ProgramSpec(**fields)
    if spec.source is None and spec.variant.object is None and spec.variant.source is None:
        raise BadInput("the own-program engine needs --source FILE.bpf.c")
    if spec.attach and (spec.packet or spec.ctx):
        raise BadInput("--packet and --ctx are for test runs: an attached program runs on live events")
    if not spec.attach and spec.load:
        raise BadInput("--load runs while programs are attached: add --attach")
    return spec


# --- builds ---------------------------------------------------------------------------------------

def _object(spec: ProgramSpec) -> build.BuiltObject:
    v = spec.variant
    if v.object:
        data = Path(v.object).read_bytes()
        return build.BuiltObject(Path(v.object), build._sha256(data), spec.isa, "object")
    return usersource.compile_source(v.source or spec.source, v.cflags, spec.includes, spec.isa)


def _chosen(obj: BpfObject, spec: ProgramSpec, what: str) -> list:
    programs = obj.programs()
    names = [p.name for p in programs]
    if spec.prog:
        if spec.prog not in names:
            raise BadInput(f"--prog {spec.prog}: {what} has no such program (it has {', '.join(names) or 'none'})")
        return [p for p in programs if p.name == spec.prog]
    if not spec.attach and len(programs) != 1:
        raise BadInput(f"{what} has {len(programs)} programs ({', '.join(names)}): name the one to test-run "
                       "with --prog")
    return programs


class Load:
    """--load CMD, kept running while a load of the comparison lasts: in a process group of
    its own (killed with it), started again when it ends."""

    def __init__(self, cmd: str | None):
        self.cmd, self.proc = cmd, None

    def running(self) -> None:
        if self.cmd and (self.proc is None or self.proc.poll() is not None):
            self.proc = children.popen(["sh", "-c", self.cmd], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self) -> Load:
        self.running()
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            children.kill_group(self.proc)


class ProgramBuild:
    """One loaded variant (or its control): the object, its programs, its maps sized and filled.
    Anything that fails on the way closes what it opened."""

    def __init__(self, spec: ProgramSpec, control: bool, load: int):
        self.spec, self.control = spec, control
        what = f"variant {spec.variant.name} ({spec.source_name})"
        self.built = _object(spec)
        self.stack = ExitStack()
        try:
            if control:
                self._open_control(what)
            else:
                self._open_variant(what, load)
            # what the kernel charges for the program's own maps (fdinfo memlock), sections aside
            self.map_memory = sum(m.memlock_bytes() or 0 for m in self.obj.maps() if not m.name.startswith("."))
            self.sizes = program_sizes([p.info() for p in self.programs])
            if not spec.attach:
                self.runner = _test_runner(self.programs[0], spec, what)
            if spec.attach or self.runner.by_run_stats:
                self.stack.enter_context(run_stats())  # the kernel counts run time while any such fd is open
        except BaseException:
            self.stack.close()
            raise

    def _open_variant(self, what: str, load: int) -> None:
        self.obj = self.stack.enter_context(BpfObject(self.built.path))
        self.programs = _chosen(self.obj, self.spec, what)
        chosen = {p.name for p in self.programs}
        for p in self.obj.programs():  # a program not measured is not loaded: the verifier sees only what runs
            p.set_autoload(p.name in chosen)
        if not self.spec.attach:
            _test_run_kind(self.programs[0], self.spec, what)  # before the load: a type no test run takes
        maps = {m.name: m for m in self.obj.maps()}
        for name, n in self.spec.map_sizes:
            if name not in maps:
                raise BadInput(f"--map-size {name}={n}: {what} has no map {name} (it has {', '.join(maps)})")
            maps[name].set_max_entries(n)
        for name, _ in self.spec.fills:
            if name not in maps:
                raise BadInput(f"--fill {name}: {what} has no map {name} (it has {', '.join(maps)})")
        try:
            self.obj.load()
        except KernelRefused as exc:
            raise usersource.verifier_refused(exc, f"loading {what}") from None
        self.entries = {name: usersource.fill_map(maps[name], how, self.spec.fill_keys == "random", seed=load)
                        for name, how in self.spec.fills}

    def _open_control(self, what: str) -> None:
        with BpfObject(self.built.path) as variant:
            chosen = _chosen(variant, self.spec, what)
            programs = tuple((p.name, p.section, p.type_name) for p in chosen)
        self.built = usersource.compile_control(programs, self.spec.isa)
        self.obj = self.stack.enter_context(BpfObject(self.built.path))
        try:
            self.obj.load()
        except KernelRefused as exc:
            raise Unsupported(f"the empty programs on the sections of {what} do not load here: {exc}") from None
        self.programs = self.obj.programs()
        self.entries = {}

    def stats(self) -> tuple[int, int]:
        return run_stats_of(self.programs)

    def attached_sample(self, seconds: float, load: Load) -> Sample:
        with ExitStack() as links:
            for p in self.programs:
                try:
                    links.enter_context(p.attach())
                except KernelRefused as exc:
                    raise Unsupported(f"{p.name} (SEC(\"{p.section}\"), {p.type_name}) cannot be attached here: "
                                      f"{exc}") from None
            (rt0, rc0), t0 = self.stats(), time.monotonic_ns()
            if self.spec.load:
                load.running()
                time.sleep(seconds)
            else:
                pingpong(self.spec.nr_tasks, seconds)
            (rt1, rc1), t1 = self.stats(), time.monotonic_ns()
        return Sample(rt1 - rt0, rc1 - rc0, t1 - t0)

    def close(self) -> None:
        self.stack.close()

    def __enter__(self) -> ProgramBuild:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Sample:
    run_ns: int  # the kernel's time for `runs` runs
    runs: int
    wall_ns: int

    @property
    def ns_per_run(self) -> float:
        return self.run_ns / self.runs if self.runs else float("nan")


@dataclass
class TestRunner:
    """How one program is test-run: a packet or context a call, `repeat` runs a call where the
    type takes it (timed by the kernel), else one run a call timed by run stats."""

    program: object
    packets: tuple
    ctx: bytes | None
    repeats: bool
    by_run_stats: bool

    def calls(self, first: int, calls: int, repeat: int, stats) -> Sample:
        t0 = time.monotonic_ns()
        if self.by_run_stats:
            rt0, rc0 = stats()
            for _ in range(calls):
                self.program.test_run(self.ctx)
            rt1, rc1 = stats()
            return Sample(rt1 - rt0, rc1 - rc0, time.monotonic_ns() - t0)
        total = 0
        for i in range(calls):
            packet = self.packets[(first + i) % len(self.packets)] if self.packets else None
            _, per_run = self.program.test_run_repeat(packet, self.ctx, repeat)
            total += per_run * repeat
        return Sample(total, calls * repeat, time.monotonic_ns() - t0)


def _test_run_kind(program, spec: ProgramSpec, what: str) -> str:
    """The program's type, if the kernel can test-run it with what was given."""
    kind = program.type_name
    if kind not in PACKET_TYPES + CONTEXT_REPEAT_TYPES + CONTEXT_TYPES:
        raise Unsupported(f"{program.name} of {what} is a {kind} program (SEC(\"{program.section}\")), which the "
                          "kernel cannot test-run; measure it attached (--attach) if its section attaches by name")
    if spec.packet and kind not in PACKET_TYPES:
        raise BadInput(f"--packet: {program.name} of {what} is a {kind} program, which takes no packet (--ctx)")
    if kind in CONTEXT_REPEAT_TYPES and not spec.ctx:
        raise BadInput(f"{program.name} of {what} is a {kind} program: give its context with --ctx FILE")
    return kind


def _test_runner(program, spec: ProgramSpec, what: str) -> TestRunner:
    kind = _test_run_kind(program, spec, what)
    ctx = Path(spec.ctx).read_bytes() if spec.ctx else None
    if kind in PACKET_TYPES:
        packets = usersource.read_packets(spec.packet) if spec.packet else (usersource.default_frame(),)
        return TestRunner(program, packets, ctx, repeats=True, by_run_stats=False)
    return TestRunner(program, (), ctx, repeats=kind in CONTEXT_REPEAT_TYPES, by_run_stats=kind in CONTEXT_TYPES)


@dataclass(frozen=True)
class Calibration:
    calls: int  # test runs a sample (packets in rotation)
    repeat: int  # runs a call, where the type takes it
    seconds: float  # attached: the load's time a sample


class OwnProgram(Engine):
    name, description, axes, sides, defaults = NAME, DESCRIPTION, AXES, SIDES, DEFAULTS
    note = ("own-program engine: ns per run of your program (test run: the kernel's time for the run; attached: "
            "BPF run stats per event), net of empty programs of the same types on the same sections.")

    def make_spec(self, fields: dict, host: Host) -> ProgramSpec:
        return make_spec(fields)

    def complete_axes(self, values: dict, side_keys: list[str], host: Host) -> dict:
        usersource.check_variant_names(values["variants"])
        return values

    def session(self, sides, opts: MeasureOptions, host: Host):
        spec = sides[0]
        if spec.attach and opts.target_ms != DEFAULTS.target_ms and opts.target_ms < MIN_ATTACHED_MS:
            raise BadInput(f"--sample-ms {opts.target_ms:g} is below {MIN_ATTACHED_MS}, the least an attached "
                           "sample needs to hold enough events")
        return Load(spec.load if spec.attach else None)

    def open(self, spec: ProgramSpec, control: bool, load: int) -> ProgramBuild:
        return ProgramBuild(spec, control, load)

    def calibrate(self, builds: list[ProgramBuild], opts: MeasureOptions, calibration) -> Calibration:
        if calibration is not None:
            return calibration
        if builds[0].spec.attach:  # the test runs' default sample is too short for live events
            ms = ATTACHED_SAMPLE_MS if opts.target_ms == DEFAULTS.target_ms else opts.target_ms
            return Calibration(0, 0, ms / 1000)
        # one trial of every build: the calls (and repeats) that make the slowest one's sample last target_ms
        trial_calls = 64
        slowest = max(b.runner.calls(0, trial_calls, 1, b.stats).wall_ns / trial_calls for b in builds)
        calls = max(1, min(MAX_CALLS, int(opts.target_ms * 1e6 / slowest)))
        runner = builds[0].runner
        if runner.repeats and len(runner.packets) <= 1:  # one packet: the kernel's loop, not ours, repeats it
            repeat = max(1, min(MAX_REPEAT, calls // 16))
            return Calibration(16 if calls >= 16 else calls, repeat, 0)
        return Calibration(calls, 1, 0)

    def sample(self, build: ProgramBuild, number: int, calibration: Calibration, load: Load) -> Sample:
        if build.spec.attach:
            return build.attached_sample(calibration.seconds, load)
        return build.runner.calls(number * calibration.calls, calibration.calls, calibration.repeat, build.stats)

    def control_figures(self, s: Sample) -> dict[str, list[float]]:
        return {"ns_per_op": [s.ns_per_run]}

    def rows(self, b: ProgramBuild, s: Sample, control: dict[str, float] | None) -> list[dict]:
        control = control or {}
        fields = {**b.spec.config_fields(), **({"strategy": "control"} if b.control else {})}
        net = s.ns_per_run - control.get("ns_per_op", 0.0)
        return [{
            **fields, **b.sizes, "object_sha256": b.built.sha256, "cflags": " ".join(b.spec.variant.cflags),
            "ops": s.runs, "elapsed_ns": s.run_ns, "ns_per_op": net, "gross_ns_per_op": s.ns_per_run,
            "control_ns_per_op": control.get("ns_per_op"),
            # attached: the events the hooks saw, and the share of one CPU their programs took
            "events_per_s": s.runs / (s.wall_ns / 1e9) if b.spec.attach and s.wall_ns else None,
            "cpu_overhead_share": s.run_ns / s.wall_ns if b.spec.attach and s.wall_ns else None,
            "entries": sum(b.entries.values()) if b.entries else None,
            "map_memory_bytes": b.map_memory,
        }]


ENGINE = OwnProgram()

