"""CPUs for measuring: the measuring CPU, pinning, producers on several CPUs at once, and the
rotation of a comparison's builds. See docs/method.md ("Head to head") for why sides are
interleaved and rotated."""

from __future__ import annotations

import contextlib
import os
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from mapbench.errors import BadInput

T = TypeVar("T")


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


def rotation(items: Sequence[T], sample: int, load: int = 0) -> list[T]:
    """The order in which sample `sample` of load `load` runs the programs of a comparison.

    Where a program runs in a sample matters: in A/A runs of `mapbench ab` (one build at two
    positions, its control third; AMD EPYC VM) a side read up to 10 % dearer running right after
    the other than before it (docs/method.md, "Head to head"). So the orders must be balanced: rotated
    by one each sample, every program first once a cycle; with three or more, the rotations run
    backwards every other cycle, so that each runs right after each other as often as that one
    after it; and each load enters this cycle of 2n orders at a point of its own (seeded by the
    load's number), so that the samples a load measures, whatever their number and warm-ups,
    leave no order favoured across loads: what one load's share of orders tilts, the loads'
    spread (the ratio's CI) carries, not its centre."""
    n = len(items)
    period = 2 * n if n > 2 else n
    t = sample + random.Random(load).randrange(period)
    k = t % n
    order = [*items[k:], *items[:k]]
    if n > 2 and (t // n) % 2:
        order.reverse()
    return order
