"""What every engine shares when it measures: options, pinning, the privilege check, the
interleaving order of the sides of a comparison, and `mapbench env`'s checks.
See docs/method.md ("Head to head") for why sides are interleaved and rotated."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from mapbench.errors import BadInput, MissingPrivilege
from mapbench.measure import build
from mapbench.measure.environment import _read, bpf_privileged, jit_enabled, run_environment

T = TypeVar("T")
OnSample = Callable[[], None]  # progress: called once per program run of a sample


@dataclass(frozen=True)
class MeasureOptions:
    samples: int = 12  # measured samples per load, per side
    instances: int = 5  # fresh loads of every side's programs and maps
    warmup: int = 2  # samples per load flagged as warm-up (kept, not summarised)
    target_ms: float = 5.0  # how long one sample of the slowest side should last
    cpu: int | None = None

    def validate(self) -> MeasureOptions:
        for name, value, low in (("--samples", self.samples, 1), ("--instances", self.instances, 1),
                                 ("--warmup", self.warmup, 0)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise BadInput(f"{name} {value!r} must be a whole number")
            if value < low:
                raise BadInput(f"{name} {value} must be at least {low}")
        if not (0.1 <= self.target_ms <= 60_000):
            raise BadInput(f"--sample-ms {self.target_ms:g} is outside 0.1 .. 60000")
        return dataclasses.replace(self, cpu=resolve_cpu(self.cpu))


def require_bpf_privilege() -> None:
    if not bpf_privileged():
        raise MissingPrivilege("mapbench loads BPF programs: run as root (it needs CAP_BPF and "
                               f"CAP_PERFMON, or CAP_SYS_ADMIN; euid is {os.geteuid()})")


def default_cpu() -> int:
    """The last CPU this process may run on: away from CPU 0's interrupts where there is a choice."""
    return max(os.sched_getaffinity(0))


def resolve_cpu(cpu: int | None) -> int:
    allowed = sorted(os.sched_getaffinity(0))
    if cpu is None:
        return default_cpu()
    if cpu not in allowed:
        raise BadInput(f"--cpu {cpu} is not one this process may run on ({allowed})")
    return cpu


def producer_cpus(first: int | None, n: int) -> list[int]:
    """The CPUs of n producers: the measuring CPU first, then the others this process may use."""
    allowed = sorted(os.sched_getaffinity(0))
    if n > len(allowed):
        raise BadInput(f"--producers {n} is above the {len(allowed)} CPUs this process may use")
    if first is None:
        return allowed[:n]
    return [first, *[c for c in allowed if c != first]][:n]


class Producers:
    """One thread per CPU, each pinned to its CPU, that run their jobs at the same time: all
    released by one barrier, the caller waiting for the last. The C calls of the jobs
    (BPF_PROG_TEST_RUN) run without the GIL, so the runs overlap. Close it, or use `with`.

    An interrupt of the caller's wait (Ctrl-C, or SIGTERM, which the CLI turns into one) aborts
    the barriers and joins every thread before `run` raises: a job cannot be interrupted in
    its C call, and what it uses (a program, its results map) is closed by the caller next."""

    def __init__(self, cpus: Sequence[int]):
        self.cpus = list(cpus)
        self._jobs: list[Callable] = []
        self._results: list = [None] * len(self.cpus)
        self._start = threading.Barrier(len(self.cpus) + 1)
        self._done = threading.Barrier(len(self.cpus) + 1)
        self._threads = [threading.Thread(target=self._work, args=(i, cpu), daemon=True)
                         for i, cpu in enumerate(self.cpus)]
        for t in self._threads:
            t.start()

    def _work(self, i: int, cpu: int) -> None:
        os.sched_setaffinity(0, {cpu})  # this thread only
        try:
            while True:
                self._start.wait()
                try:
                    self._results[i] = self._jobs[i]()
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    self._results[i] = exc
                self._done.wait()
        except threading.BrokenBarrierError:
            return  # closed, or the caller was interrupted

    def run(self, jobs: Sequence[Callable]) -> list:
        """jobs[i]() on producer i's CPU, all at once; their results, in order."""
        if self._start.broken:
            raise RuntimeError("these producers were closed")
        self._jobs = list(jobs)
        try:
            self._start.wait()
            self._done.wait()
        except BaseException:
            self.close()  # every job has ended when this returns
            raise
        for r in self._results:
            if isinstance(r, BaseException):
                raise r
        return list(self._results)

    def close(self) -> None:
        """Stop the threads: those waiting for a job at once, a job still running when it ends."""
        self._start.abort()
        self._done.abort()
        for t in self._threads:
            while t.is_alive():
                try:
                    t.join()
                except KeyboardInterrupt:  # a second Ctrl-C: the job ends within one test run anyway
                    continue

    def __enter__(self) -> Producers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def pinned_to(cpu: int | None) -> Iterator[int | None]:
    """Run the block on one CPU (threads started inside inherit it), then restore the affinity."""
    if cpu is None:
        yield None
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


def rotation(items: Sequence[T], sample: int) -> list[T]:
    """The order in which sample `sample` runs the programs of a comparison: rotated by one
    each sample, so that no side (nor the control) always runs first or right after another."""
    k = sample % len(items)
    return [*items[k:], *items[:k]]


def load_sides_and_controls(stack, sides: Sequence, load: Callable) -> tuple[list, dict]:
    """Every side's build and one control build per control key (spec.control_key()), all
    owned by `stack`: (position or None, build) pairs in the order they were loaded, and the
    controls by key. load(spec, control) makes one build."""
    programs = [(position, stack.enter_context(load(spec, False))) for position, spec in enumerate(sides)]
    controls: dict = {}
    for spec in sides:  # a control takes the first such side's configuration (its key stream)
        if spec.control_key() not in controls:
            controls[spec.control_key()] = stack.enter_context(load(spec, True))
    return programs + [(None, b) for b in controls.values()], controls


def run_interleaved(programs: list, nr_samples: int, run: Callable, on_sample: OnSample) -> dict[int, list]:
    """Sample by sample, every program once in rotated order: per build (by id), the list of
    (its place in that sample's order, run(build, sample))."""
    runs: dict[int, list] = {id(b): [] for _, b in programs}
    for sample in range(nr_samples):
        for order, (_, b) in enumerate(rotation(programs, sample)):
            runs[id(b)].append((order, run(b, sample)))
            on_sample()
    return runs


def controls_per_sample(sides: Sequence) -> int:
    """Control builds a comparison runs beside its sides: one per control key, if any."""
    return len({s.control_key() for s in sides if hasattr(s, "control_key")})


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def checks() -> list[Check]:
    """Can this machine run mapbench, and if not, why not."""
    env = run_environment()
    result = [
        Check("machine", True, f"{env['machine_name']}, id {env['machine']}: figures are for this machine",
              required=False),
        Check("privilege", bpf_privileged(),
              "may load BPF programs" if bpf_privileged()
              else "run as root: BPF needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN"),
        Check("kernel BTF", build.KERNEL_BTF.exists(),
              str(build.KERNEL_BTF) if build.KERNEL_BTF.exists() else "no /sys/kernel/btf/vmlinux"),
        Check("JIT", jit_enabled(), "bpf_jit_enable=" + _read("/proc/sys/net/core/bpf_jit_enable", "?"),
              required=False),
    ]
    for tool in ("clang", "bpftool"):
        try:
            build.tool(tool)
            result.append(Check(tool, True, build.clang_version() if tool == "clang" else "found"))
        except Exception as exc:  # noqa: BLE001 - the message is the finding
            result.append(Check(tool, False, str(exc)))
    try:
        from mapbench.binding import libbpf
    except ImportError as exc:
        result.append(Check("libbpf binding", False, f"cannot import the cffi module: {exc}"))
        return result
    from mapbench.measure.environment import libbpf_version

    result.append(Check("libbpf", True, libbpf_version()))
    if bpf_privileged():
        for name in libbpf.BPF_MAP_TYPE:
            ok = libbpf.probe_map_type(name)
            result.append(Check(f"map {name}", ok, "supported" if ok else "not supported by this kernel",
                                required=name in ("hash", "bloom_filter", "task_storage")))
    return result
