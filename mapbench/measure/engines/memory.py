"""The memory engine: how long one load from memory takes on this machine, by working-set size
(docs/method.md, "Memory latency"), so that a reader sees where each map's memory sits between
the caches and DRAM.

A pointer chase: the working set is cut into 64-byte slots (a cache line each), and every
slot's first word points to the next slot of one random cycle through all of them (a uniformly
random cyclic permutation, the distribution Sattolo's algorithm draws). _native.c's mb_chase
walks it in C: each load's address is what the load before it read, so no two loads overlap,
and the nanoseconds per step are the latency of wherever the working set sits. numpy lays the
cycle out; the walk is timed in C with CLOCK_MONOTONIC.

No control build: the loop's counter and branch run beside the dependent load, not after it,
so an empty loop's time is not part of a step's and subtracting it would understate the
latency. The figure is the gross ns per step.

Pages: the working set is an anonymous mapping with MADV_HUGEPAGE, and each row records the
share of it the kernel backed with transparent huge pages (/proc/self/smaps), beside the run's
THP mode (thp_enabled): with 4 KiB pages a large working set pays page-table walks too.
"""

from __future__ import annotations

import mmap
import re
from dataclasses import dataclass

import numpy as np

from mapbench.binding._libbpf import ffi, lib
from mapbench.errors import BadInput
from mapbench.measure.engine import Axis, Engine, Host, MeasureOptions, NotMeasured, Spec
from mapbench.measure.values import parse_whole_number

NAME = "memory"
SLOT = 64  # bytes: one cache line per step
PAGE = 4096
MIN_WORKING_SET, MAX_WORKING_SET = PAGE, 64 * 2**30
UNITS = {"": 1, "k": 2**10, "kib": 2**10, "m": 2**20, "mib": 2**20, "g": 2**30, "gib": 2**30}
# powers of 4 from 32 KiB, with 1 MiB, 32 MiB and 1 GiB among them (where caches of this kind end)
WORKING_SETS = tuple(32 * 2**10 * 4**i for i in range(8)) + (2**30,)
CALIBRATION_STEPS = 1 << 16


def parse_working_set(text) -> int:
    """'32KiB', '1 GiB', '4M' or a number of bytes: a multiple of 4 KiB in 4 KiB .. 64 GiB."""
    raw = str(text).strip().replace(" ", "").lower()
    m = re.fullmatch(r"([0-9.e_+]+)([a-z]*)", raw)
    if m is None or m.group(2) not in UNITS:
        raise BadInput(f"--working-set {text!r} is not a size (examples: 32KiB, 4MiB, 1GiB, 65536)")
    value = parse_whole_number(m.group(1), "--working-set") * UNITS[m.group(2)]
    if value % PAGE or not MIN_WORKING_SET <= value <= MAX_WORKING_SET:
        raise BadInput(f"--working-set {text!r} must be a multiple of 4 KiB in 4 KiB .. 64 GiB")
    return value


@dataclass(frozen=True)
class ChaseSpec(Spec):
    working_set: int  # bytes

    def config_fields(self) -> dict:
        return {"engine": NAME, "family": NAME, "strategy": "pointer_chase", "op": "load",
                "working_set_bytes": self.working_set}

    def used_fields(self) -> set[str]:
        return {"working_set"}


def cycle(slots: int, seed) -> np.ndarray:
    """next[i]: the slot after slot i on one random cycle through every slot. A random order
    of the slots, each pointing to the one after it and the last to the first, is a uniformly
    random cyclic permutation (what Sattolo's algorithm draws), built without a Python loop."""
    order = np.random.default_rng(seed).permutation(slots)
    following = np.empty(slots, dtype=np.uint64)
    following[order] = np.roll(order, -1)
    return following


def huge_page_share(address: int) -> float | None:
    """The share of the mapping holding `address` that transparent huge pages back (smaps'
    AnonHugePages over the mapping's size), or None where smaps cannot say."""
    try:
        with open("/proc/self/smaps") as f:
            inside, size = False, 0
            for line in f:
                head = line.split(maxsplit=1)[0]
                if "-" in head and not head.endswith(":"):
                    start, end = (int(x, 16) for x in head.split("-"))
                    inside, size = start <= address < end, end - start
                elif inside and head == "AnonHugePages:":
                    return int(line.split()[1]) * 1024 / size
    except OSError:
        return None
    return None


class Chase:
    """One working set laid out as a cycle of pointers; closing it unmaps it."""

    def __init__(self, spec: ChaseSpec, load: int):
        self.spec = spec
        self.memory = mmap.mmap(-1, spec.working_set, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if hasattr(mmap, "MADV_HUGEPAGE"):  # asked before the first touch, so the faults can take huge pages
            self.memory.madvise(mmap.MADV_HUGEPAGE)
        self.words = np.frombuffer(self.memory, dtype=np.uint64)
        base = self.words.ctypes.data
        self.words[::SLOT // 8] = base + cycle(spec.working_set // SLOT, [load, spec.working_set]) * SLOT
        self.position = ffi.cast("void **", base)
        self.end = ffi.new("void **")
        self.huge_page_share = huge_page_share(base)

    def walk(self, steps: int) -> int:
        """ns for `steps` steps, on from where the last walk stopped."""
        elapsed = lib.mb_chase(self.position, steps, self.end)
        self.position = ffi.cast("void **", self.end[0])
        return elapsed

    def __enter__(self) -> Chase:
        return self

    def __exit__(self, *exc) -> None:
        del self.words  # the buffer's export ends before the mapping closes
        self.memory.close()


class Memory(Engine):
    name = NAME
    description = "memory latency: a pointer chase through working sets of 32 KiB .. 1 GiB"
    note = ("memory engine: ns per step of a pointer chase through a working set (one dependent load of a "
            "64 B line), timed in C in user space, no control (docs/method.md, \"Memory latency\").")
    axes = (Axis("working_sets", "--working-set", "working_set", parse_working_set, default=WORKING_SETS,
                 help="working-set sizes: 32KiB, 4MiB, 1GiB or bytes (default 32 KiB .. 1 GiB)"),)
    sides = ()  # each working set alone: its own loads, no ratios (a figure to place maps by)
    defaults = MeasureOptions(samples=5, instances=2, warmup=1, target_ms=5.0)

    def make_spec(self, fields: dict, host: Host) -> ChaseSpec | NotMeasured:
        spec = ChaseSpec(fields.get("working_set", WORKING_SETS[0]))
        if spec.working_set > host.memory_available_bytes // 2:
            raise BadInput(f"--working-set {spec.working_set} bytes is above half the "
                           f"{host.memory_available_bytes / 2**30:.1f} GiB available")
        return spec

    def open(self, spec: ChaseSpec, control: bool, load: int) -> Chase:
        return Chase(spec, load)

    def calibrate(self, chases: list, opts: MeasureOptions, calibration) -> dict:
        """Steps per sample of each working set, so one sample lasts about target_ms: found on
        the first load from a short walk, kept for the later ones."""
        if calibration is None:
            calibration = {}
            for chase in chases:
                chase.walk(CALIBRATION_STEPS)  # the first walk pays for cold caches and TLB
                ns = max(chase.walk(CALIBRATION_STEPS), 1) / CALIBRATION_STEPS
                calibration[chase.spec.working_set] = max(CALIBRATION_STEPS, int(opts.target_ms * 1e6 / ns))
        return calibration

    def sample(self, chase: Chase, number: int, calibration: dict, session) -> tuple[int, int]:
        steps = calibration[chase.spec.working_set]
        return chase.walk(steps), steps

    def rows(self, chase: Chase, sample: tuple[int, int], control) -> list[dict]:
        elapsed, steps = sample
        return [{**chase.spec.config_fields(), "ops": steps, "elapsed_ns": elapsed, "ns_per_op": elapsed / steps,
                 "gross_ns_per_op": elapsed / steps, "huge_page_share": chase.huge_page_share}]


ENGINE = Memory()
