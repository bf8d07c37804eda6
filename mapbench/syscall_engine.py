"""The syscall engine (DESIGN 3.2): what map operations cost from user space.

Per-element `bpf_map_{lookup,update,delete}_elem` and the four BPF_MAP_*_BATCH commands, over
map types, map sizes and batch sizes. The loops run in native code (mapbench/_native.c) and time
themselves with CLOCK_MONOTONIC; buffers are numpy arrays passed without a copy. A figure is
nanoseconds per element. A combination the kernel refuses becomes an `unsupported` row carrying
the kernel's errno.
"""

from __future__ import annotations

import errno as errno_codes
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import build, keys
from ._libbpf import lib
from .environment import load_avg_1m
from .errors import BadInput, KernelRefused
from .kernel_engine import MeasureOptions, pinned_to, require_root
from .libbpf import BpfObject, Map, MapOps, pidfd_open
from .workloads import parse_whole_number

MAP_TYPES = ("hash", "lru_hash", "percpu_hash", "array", "bloom_filter", "task_storage")
DRIVERS = {"elem": ("lookup", "update", "delete"),
           "batch": ("lookup", "lookup_and_delete", "update", "delete")}
MAX_BATCH = 2**32 - 1  # the count is a u32
ENOTSUPP = 524  # the kernel's internal "not supported", which batch ops can leak to user space
UNSUPPORTED_ERRNOS = {errno_codes.EINVAL, errno_codes.EOPNOTSUPP, ENOTSUPP, errno_codes.EPERM}
# bytes of one value: struct task_state, a u32 bloom element, u64 for the rest
VALUE_SIZES = {**{t: 8 for t in MAP_TYPES}, "task_storage": 16, "bloom_filter": 4}
LRU_LOCAL_FREE = 128  # the kernel's LOCAL_FREE_TARGET (kernel/bpf/bpf_lru_list.h)
KEY_MULT, KEY_SALT = 0x9E3779B1, 0x5BD1E995  # key(i) = i * KEY_MULT ^ KEY_SALT, as the C reference


def parse_batch_sizes(text: str) -> list[int]:
    """'1,10,100' -> [1, 10, 100]; each a whole number in 1..2^32-1."""
    sizes = []
    for part in str(text).split(","):
        part = part.strip()
        value = parse_whole_number(part, "--batch-size")
        if not 1 <= value <= MAX_BATCH:
            raise BadInput(f"--batch-size {part!r} is outside 1..{MAX_BATCH}")
        sizes.append(value)
    return sizes


@dataclass(frozen=True)
class SyscallSpec:
    map_type: str
    driver: str
    op: str
    map_size: int
    batch_size: int | None = None

    def __post_init__(self):
        if self.map_type not in MAP_TYPES:
            raise BadInput(f"--map {self.map_type!r} is not a map type of the syscall engine: "
                           f"choose one of {', '.join(MAP_TYPES)}")
        if self.driver not in DRIVERS:
            raise BadInput(f"--driver {self.driver!r} is unknown: choose elem or batch")
        if self.op not in DRIVERS[self.driver]:
            raise BadInput(f"--op {self.op!r} is not a {self.driver} op: it has "
                           f"{', '.join(DRIVERS[self.driver])}")
        if self.driver == "batch":
            if self.batch_size is None or not 1 <= self.batch_size <= MAX_BATCH:
                raise BadInput(f"--batch-size {self.batch_size!r} is outside 1..{MAX_BATCH}")
        elif self.batch_size is not None:
            raise BadInput("--batch-size applies to --driver batch only")
        if self.map_type == "task_storage" and self.map_size != 1:
            raise BadInput(f"--size {self.map_size}: task storage is keyed by pidfd from user space, "
                           "and mapbench measures it on its own task: use --size 1")
        if not 1 <= self.map_size <= 2**31:
            raise BadInput(f"--size {self.map_size} is outside 1..{2**31}")

    def config_fields(self) -> dict:
        """The result columns that identify this configuration (results.CONFIG_KEYS)."""
        return {"engine": "syscall", "family": "syscall", "strategy": self.map_type, "op": self.op,
                "driver": self.driver, "map_size": self.map_size, "batch_size": self.batch_size,
                "value_size": VALUE_SIZES[self.map_type], "hit_ratio": 1.0, "nr_hash_funcs": None,
                "isa": None, "key_distribution": "all"}


class SyscallMap:
    """The map under test, created for one spec, filled with map_size entries; owns its fds."""

    def __init__(self, spec: SyscallSpec):
        self.spec = spec
        self._obj: BpfObject | None = None
        self._pidfd: int | None = None
        n = spec.map_size
        if spec.map_type == "task_storage":
            # Task storage needs BTF for its key and value: take the map from our own object.
            built = build.compile_object("taskstate.bpf.c", "MB_TASK_STORAGE")
            self._obj = BpfObject(built.path)
            try:
                self._obj.program("run").set_autoload(False)
                self._obj.load()
                self._pidfd = pidfd_open(os.getpid())
            except BaseException:
                self.close()
                raise
            self.map: MapOps = self._obj.map("states")
            self.keys = np.array([self._pidfd], dtype=np.int32)
            self.values = np.zeros((1, 2), dtype=np.uint64)
        elif spec.map_type == "bloom_filter":
            self.map = Map("bloom_filter", 0, 4, n, map_extra=3)
            self.keys = None  # the value is the element
            self.values = keys.member_keys(np.arange(n, dtype=np.uint64), KEY_MULT, KEY_SALT)
        else:
            # An LRU hash can evict before it is full: each CPU keeps a local list of free
            # nodes, so one CPU filling the map may find none while others hold some. Leave
            # room for those lists so that all map_size entries stay.
            capacity = n + LRU_LOCAL_FREE * os.cpu_count() * 2 if spec.map_type == "lru_hash" else n
            self.map = Map(spec.map_type, 4, 8, capacity)
            index = np.arange(n, dtype=np.uint64)
            self.keys = (index.astype(np.uint32) if spec.map_type == "array"
                         else keys.member_keys(index, KEY_MULT, KEY_SALT))
            ncpu = self.map.elem_value_bytes // 8
            self.values = np.random.default_rng(n).integers(0, 2**63, size=(n, ncpu), dtype=np.uint64)
            if ncpu == 1:
                self.values = self.values.reshape(n)
        self.capacity = getattr(self.map, "max_entries", n)
        # A bloom filter has no keys; its batch calls get the elements as keys, and the kernel
        # answers with its errno (it has no batch ops), which becomes an unsupported row.
        self.batch_keys = self.keys if self.keys is not None else self.values
        self.refill()

    def refill(self) -> None:
        """Put every entry back (untimed), after a delete."""
        if self.keys is None:
            self.map.elem_loop(lib.MB_UPDATE, None, self.values)
        elif self.spec.map_type == "task_storage":
            self.map.update(self.keys.tobytes(), self.values.tobytes())
        else:
            self.map.update_batch(self.keys, self.values, 1 << 16)

    def close(self) -> None:
        if isinstance(getattr(self, "map", None), Map):
            self.map.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def __enter__(self) -> SyscallMap:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Timing:
    elements: int
    elapsed_ns: int
    retries: int = 0


def run_once(m: SyscallMap, reps: int) -> Timing:
    """One sample: `reps` passes of the op over the map's entries; only the op is timed."""
    spec, mp = m.spec, m.map
    elements = elapsed = retries = 0
    for _ in range(reps):
        if spec.driver == "elem":
            code = {"lookup": lib.MB_LOOKUP, "update": lib.MB_UPDATE, "delete": lib.MB_DELETE}[spec.op]
            out = m.values.copy() if spec.op == "lookup" else m.values
            ns, missing = mp.elem_loop(code, m.keys, out, 0)
            if missing:
                raise KernelRefused(f"{missing} of {spec.map_size} keys were absent during {spec.op}")
            n = spec.map_size
        elif spec.op in ("lookup", "lookup_and_delete"):
            walk = mp.lookup_walk(m.capacity, spec.batch_size, delete=spec.op == "lookup_and_delete")
            if walk.count != spec.map_size:
                raise KernelRefused(f"batch {spec.op} walked {walk.count} of {spec.map_size} entries")
            ns, n = walk.elapsed_ns, walk.count
            retries += walk.retries
        elif spec.op == "update":
            ns, _ = mp.update_batch(m.batch_keys, m.values, spec.batch_size)
            n = spec.map_size
        else:
            ns, _ = mp.delete_batch(m.batch_keys, spec.batch_size)
            n = spec.map_size
        elements += n
        elapsed += ns
        if spec.op in ("delete", "lookup_and_delete"):
            m.refill()
    return Timing(elements, elapsed, retries)


def calibrate(m: SyscallMap, target_ns: float) -> int:
    """Passes per sample so that a sample lasts about target_ns (at least one pass)."""
    t = run_once(m, 1)
    per_pass = max(t.elapsed_ns, 1)
    return max(1, min(10_000, round(target_ns / per_pass)))


def unsupported_row(spec: SyscallSpec, exc: KernelRefused) -> dict:
    return {**spec.config_fields(), "status": "unsupported", "message": str(exc)}


def measure(spec: SyscallSpec, opts: MeasureOptions, on_sample: Callable[[], None] = lambda: None,
            reps: int | None = None) -> list[dict]:
    """Every sample of one configuration as result rows; a refused op gives one unsupported row.
    A sample is `reps` passes over the map (calibrated to opts.target_ms unless given)."""
    require_root()
    rows: list[dict] = []
    with pinned_to(opts.cpu) as cpu:
        for instance in range(opts.instances):
            with SyscallMap(spec) as m:
                try:
                    sample_reps = reps or calibrate(m, opts.target_ms * 1e6)
                except KernelRefused as exc:
                    if exc.errno in UNSUPPORTED_ERRNOS:
                        return [unsupported_row(spec, exc)]
                    raise
                memory = m.map.memlock_bytes() if spec.map_type != "task_storage" else None
                for sample in range(opts.warmup + opts.samples):
                    t = run_once(m, sample_reps)
                    rows.append({**spec.config_fields(), "instance": instance, "sample": sample,
                                 "warmup": sample < opts.warmup, "ops": t.elements,
                                 "elapsed_ns": t.elapsed_ns, "ns_per_op": t.elapsed_ns / t.elements,
                                 "gross_ns_per_op": t.elapsed_ns / t.elements, "retries": t.retries,
                                 "map_memory_bytes": memory, "cpu": cpu, "load_avg_1m": load_avg_1m(),
                                 "status": "ok", "message": ""})
                    on_sample()
    return rows
