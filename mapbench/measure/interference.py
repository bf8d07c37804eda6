"""Interference per sample: what took the measuring CPU or thread away while a sample ran.

Around every take of a sample the runner reads, for the measuring CPU and the measuring thread:
the CPU's steal ticks (/proc/stat), the thread's involuntary context switches
(/proc/thread-self/status) and migrations (/proc/thread-self/sched), and the system's CPU
pressure (/proc/pressure/cpu, `some` total). A take whose deltas say it was hit is taken again,
at most MAX_RETAKES times; rows carry the kept take's deltas, how many takes were discarded and
whether the kept one was hit too. See docs/method.md, "Interference".
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

PROC_STAT = "/proc/stat"
THREAD_STATUS = "/proc/thread-self/status"
THREAD_SCHED = "/proc/thread-self/sched"
CPU_PRESSURE = "/proc/pressure/cpu"

# A take is hit when the CPU's steal ticks, the thread's involuntary switches or its migrations
# grew while it ran, or when some task waited for a CPU for more than this share of its duration
# (docs/method.md, "Interference": what this VM shows at rest and under load).
PRESSURE_SHARE = 0.10
MAX_RETAKES = 3  # takes discarded at most per sample: a machine that is always busy is reported, not waited out
READ_BYTES = 1 << 16  # the cpuN lines open /proc/stat: 64 KiB covers hundreds of CPUs


def steal_ticks(stat: str, cpu: int) -> int | None:
    """The steal field (the 8th after the name, USER_HZ ticks) of /proc/stat's `cpu<cpu>` line."""
    prefix = f"cpu{cpu} "
    for line in stat.splitlines():
        if line.startswith(prefix):
            fields = line.split()
            return int(fields[8]) if len(fields) > 8 else None
    return None


def field(text: str, name: str) -> int | None:
    """`name: value` of /proc/thread-self/status or `name : value` of .../sched, as an integer."""
    at = -1
    while True:  # find, not a split of every line: status has some 60 lines, read twice a take
        at = text.find(name, at + 1)
        if at < 0:
            return None
        if at == 0 or text[at - 1] == "\n":
            end = text.find("\n", at)
            key, sep, value = text[at:end if end >= 0 else len(text)].partition(":")
            if sep and key.strip() == name:
                return int(float(value.split()[0]))


def pressure_some_us(psi: str) -> int | None:
    """The `total=` of /proc/pressure/cpu's `some` line: microseconds some task waited for a CPU."""
    for line in psi.splitlines():
        if line.startswith("some "):
            for item in line.split()[1:]:
                key, _, value = item.partition("=")
                if key == "total":
                    return int(value)
    return None


@dataclass(frozen=True)
class Reading:
    """Cumulative counters at one instant; None: not readable on this kernel."""

    steal_ticks: int | None
    involuntary_switches: int | None
    migrations: int | None
    cpu_pressure_us: int | None
    voluntary_switches: int | None = None

    def since(self, before: Reading, duration_ns: int) -> Interference:
        delta = lambda now, then: None if now is None or then is None else now - then  # noqa: E731
        return Interference(delta(self.steal_ticks, before.steal_ticks),
                            delta(self.involuntary_switches, before.involuntary_switches),
                            delta(self.migrations, before.migrations),
                            delta(self.cpu_pressure_us, before.cpu_pressure_us), duration_ns,
                            delta(self.voluntary_switches, before.voluntary_switches))


@dataclass(frozen=True)
class Interference:
    """What happened to the measuring CPU and thread over one take (deltas; None: not readable)."""

    steal_ticks: int | None
    involuntary_switches: int | None
    migrations: int | None
    cpu_pressure_us: int | None
    duration_ns: int  # the take's wall time, the probe's reads excluded
    voluntary_switches: int | None = None  # > 0: the thread slept, its sample's work ran on other threads

    def reasons(self) -> tuple[str, ...]:
        """Why this take counts as hit: () when it does not. A thread that slept through the take
        (waiting for producers, or for a load generator, on other threads) did not do its work:
        its preemptions and the CPU pressure are that work's own contention, not interference."""
        alone = not self.voluntary_switches
        pressured = (self.cpu_pressure_us is not None
                     and self.cpu_pressure_us * 1000 > PRESSURE_SHARE * self.duration_ns)
        return tuple(name for name, yes in (("steal", bool(self.steal_ticks)),
                                            ("preemption", alone and bool(self.involuntary_switches)),
                                            ("migration", bool(self.migrations)),
                                            ("pressure", alone and pressured)) if yes)

    @property
    def hit(self) -> bool:
        return bool(self.reasons())

    def columns(self) -> dict:
        return {"steal_ticks": self.steal_ticks, "involuntary_switches": self.involuntary_switches,
                "migrations": self.migrations, "cpu_pressure_us": self.cpu_pressure_us}


class Probe:
    """The counters of one CPU and of the thread that creates the probe (the files stay open, and
    /proc/thread-self names the opener: create it on the measuring thread). Close it, or use `with`."""

    def __init__(self, cpu: int):
        self.cpu = cpu
        self._fds: dict[str, int | None] = {}
        for path in (PROC_STAT, THREAD_STATUS, THREAD_SCHED, CPU_PRESSURE):
            try:
                self._fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:  # no PSI (psi=0), no sched file (!CONFIG_SCHED_DEBUG): those columns read None
                self._fds[path] = None

    def _text(self, path: str) -> str:
        fd = self._fds[path]
        if fd is None:
            return ""
        # a read from offset 0 makes a seq_file show its content anew: one syscall, no reopen
        return os.pread(fd, READ_BYTES, 0).decode("ascii", "replace")

    def read(self) -> Reading:
        stat, status, sched, psi = (self._text(p) for p in (PROC_STAT, THREAD_STATUS, THREAD_SCHED, CPU_PRESSURE))
        return Reading(steal_ticks(stat, self.cpu), field(status, "nonvoluntary_ctxt_switches"),
                       field(sched, "se.nr_migrations"), pressure_some_us(psi),
                       field(status, "voluntary_ctxt_switches"))

    def take(self, sample: Callable[[], T], retakes: int = MAX_RETAKES) -> tuple[T, Interference, int]:
        """sample() until a take is not hit, at most 1 + retakes times: the last take's result,
        its interference and how many takes were discarded."""
        discarded = 0
        while True:
            before = self.read()
            started = time.monotonic_ns()
            result = sample()
            duration_ns = time.monotonic_ns() - started
            seen = self.read().since(before, duration_ns)
            if not seen.hit or discarded == retakes:
                return result, seen, discarded
            discarded += 1

    def close(self) -> None:
        for path, fd in self._fds.items():
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds[path] = None

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
