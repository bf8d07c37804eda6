"""The registry of strategies and ops, and the frozen spec of one kernel-engine configuration.

A spec is plain data: validated on construction, deterministic, no kernel access. Loaded
objects (which own fds) live in `kernel_engine`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from .build import DEFAULT_ISA, ISAS
from .errors import BadInput


@dataclass(frozen=True)
class Family:
    name: str
    source: str
    description: str


@dataclass(frozen=True)
class Strategy:
    name: str
    family: Family
    macro: str  # -DMB_STORAGE=<macro>
    ops: tuple[str, ...]
    description: str


MEMBERSHIP = Family("membership", "membership.bpf.c", "is a key in the set?")
PER_TASK = Family("per_task", "taskstate.bpf.c", "find or create a record for a task")
MAP_COUNT = Family("map_count", "storagecount.bpf.c",
                   "one task carrying several task-storage maps (the kernel caches 16 per task)")
CONTROL_MACRO = "MB_CONTROL"

STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("hash", MEMBERSHIP, "MB_HASH", ("lookup", "update"),
                 "hash map holding the set"),
        Strategy("bloom", MEMBERSHIP, "MB_BLOOM", ("lookup", "update"),
                 "bloom filter in front of the same hash; the hash is asked only on 'maybe'"),
        Strategy("pid_hash", PER_TASK, "MB_PID_HASH", ("get",),
                 "hash keyed by pid holding map_size tasks; each draw asks for one of them"),
        Strategy("task_storage", PER_TASK, "MB_TASK_STORAGE", ("get",),
                 "task local storage of the current task, created on first use"),
        Strategy("task_storage_maps", MAP_COUNT, "MB_TASK_STORAGE", ("get",),
                 "the current task's record in each of --task-maps storage maps (size: 1 task)"),
    )
}

# Op codes as bpf/mapbench.h defines them (MB_OP_*).
# uniform: each draw asks for a random entry (hit or miss by the hit ratio);
# sequential: draw i asks for entry i % map_size, as the kernel's hashmap lookup bench does.
KEY_DISTRIBUTIONS = ("uniform", "sequential")

OP_CODES = {"lookup": 0, "update": 1, "get": 2}

MAX_MAP_SIZE = 2**32 - 1  # max_entries is a u32
BLOOM_VALUE_SIZES = range(4, 65, 4)
MAX_TASK_MAPS = 64  # task-storage maps in bpf/storagecount.bpf.c
MAX_HASH_FUNCS = 15  # the kernel's bound for a bloom filter's map_extra
DEFAULT_HASH_FUNCS = 3  # as the kernel's own bloom bench


def parse_whole_number(text: str | int, flag: str, what: str = "") -> int:
    """'1e6', '1000000', '1_000_000' -> 1000000, exactly (plain integers never go through a
    float); anything else is a one-line BadInput naming the flag. Bounds are the caller's."""
    if isinstance(text, int):
        return text
    raw = str(text).strip().replace("_", "")
    if "e" not in raw.lower():
        try:
            return int(raw)
        except ValueError:
            pass
    try:
        value = float(raw)
    except ValueError:
        raise BadInput(f"{flag} {text!r} is not a number (examples: 1e6, 1000000, 1_000_000)") from None
    if not math.isfinite(value) or value != int(value):
        raise BadInput(f"{flag} {text!r} is not a whole number{what}")
    return int(value)


def parse_size(text: str | int) -> int:
    """A map size within the kernel's bounds; anything else is a one-line BadInput."""
    value = parse_whole_number(text, "--size", " of entries")
    if value < 1:
        raise BadInput(f"--size {text!r} must be at least 1 entry")
    if value > MAX_MAP_SIZE:
        raise BadInput(f"--size {text!r} is above the kernel's u32 limit of {MAX_MAP_SIZE} entries")
    return value


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def estimate_kernel_bytes(strategy: str, map_size: int, nr_hash_funcs: int) -> int:
    """What the maps will cost the kernel, estimated before anything is created.

    A preallocated hash element is the kernel's htab_elem (48 bytes) plus key and value
    rounded to 8; buckets are a power of two of 16 bytes. A bloom filter holds
    map_size * k * 7/5 bits rounded up to a power of two. Slightly above fdinfo memlock,
    on purpose: it guards against OOM, it is not a result.
    """
    hash_value = {"hash": 8, "bloom": 8, "pid_hash": 16}.get(strategy)  # None: task storage
    if hash_value is None:  # task storage: one small record per task, created lazily
        return 4096
    total = map_size * (48 + 8 + hash_value) + _pow2(map_size) * 16
    if strategy == "bloom":
        total += bloom_bits(map_size, nr_hash_funcs) // 8
    user_space_fill = map_size * (4 + hash_value)  # numpy keys and values for the fill
    return total + user_space_fill


def bloom_bits(map_size: int, nr_hash_funcs: int) -> int:
    """The bit-array size the kernel gives a bloom filter (kernel/bpf/bloom_filter.c): n * k
    scaled by 7/5 (about 1/ln 2), rounded up to a power of two, at least 64, capped at 2^32."""
    bits = (map_size * nr_hash_funcs) // 5 * 7
    if bits > 2**31:
        return 2**32
    return 64 if bits <= 64 else _pow2(bits)


def bloom_fp_theory(map_size: int, nr_hash_funcs: int) -> float:
    """(1 - e^(-k n / m))^k for the filter the kernel builds."""
    k, m = nr_hash_funcs, bloom_bits(map_size, nr_hash_funcs)
    return (1 - math.exp(-k * map_size / m)) ** k


def available_memory_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


MEMORY_SHARE = 0.8  # never plan to take more than this share of MemAvailable


@dataclass(frozen=True)
class KernelSpec:
    """One kernel-engine configuration."""

    strategy: str
    op: str | None = None  # default: the strategy's first op
    map_size: int = 1000
    hit_ratio: float = 1.0
    nr_hash_funcs: int = DEFAULT_HASH_FUNCS
    isa: str = DEFAULT_ISA
    key_distribution: str = "uniform"
    nr_maps: int = 1
    bloom_value_size: int = 4  # bytes of a bloom filter element (the key, then derived words)
    seed: int = 0
    check_memory: bool = field(default=True, compare=False)

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise BadInput(f"--map {self.strategy!r} is unknown: choose one of {', '.join(STRATEGIES)}")
        ops = STRATEGIES[self.strategy].ops
        if self.op is None:
            object.__setattr__(self, "op", ops[0])
        if self.op not in ops:
            raise BadInput(f"--op {self.op!r} is not an op of {self.strategy}: it has {', '.join(ops)}")
        if not isinstance(self.map_size, int) or isinstance(self.map_size, bool):
            raise BadInput(f"--size {self.map_size!r} is not a whole number")
        parse_size(self.map_size)
        if self.family is MEMBERSHIP and self.map_size > 2**31:
            raise BadInput(f"--size {self.map_size} is above 2^31, the largest set whose miss keys "
                           "fit beside it in the u32 key space")
        if not (isinstance(self.hit_ratio, (int, float)) and 0.0 <= self.hit_ratio <= 1.0):
            raise BadInput(f"--hit-ratio {self.hit_ratio!r} is outside [0, 1]")
        if self.op != "lookup" and self.hit_ratio != 1.0:
            raise BadInput(f"--hit-ratio {self.hit_ratio} applies to lookup only; {self.op} "
                           "always works on keys that are present")
        if self.key_distribution not in KEY_DISTRIBUTIONS:
            raise BadInput(f"--keys {self.key_distribution!r} is unknown: choose one of "
                           f"{', '.join(KEY_DISTRIBUTIONS)}")
        if self.key_distribution == "sequential" and self.hit_ratio != 1.0:
            raise BadInput(f"--hit-ratio {self.hit_ratio} needs --keys uniform: sequential keys always hit")
        if not (1 <= self.nr_hash_funcs <= MAX_HASH_FUNCS):
            raise BadInput(f"--hash-funcs {self.nr_hash_funcs} is outside the kernel's 1..{MAX_HASH_FUNCS}")
        if self.isa not in ISAS:
            raise BadInput(f"--isa {self.isa!r} is not a BPF ISA: use one of {', '.join(ISAS)}")
        if self.family is MAP_COUNT:
            if not 1 <= self.nr_maps <= MAX_TASK_MAPS:
                raise BadInput(f"--task-maps {self.nr_maps} is outside 1..{MAX_TASK_MAPS}")
            if self.map_size != 1:
                raise BadInput(f"--size {self.map_size}: {self.strategy} works on the current task "
                               "only: use --size 1")
        elif self.nr_maps != 1:
            raise BadInput(f"--task-maps {self.nr_maps} applies to task_storage_maps only")
        if self.bloom_value_size not in BLOOM_VALUE_SIZES:
            raise BadInput(f"--bloom-value-size {self.bloom_value_size} must be a multiple of 4 "
                           "in 4..64 bytes")
        if self.bloom_value_size != 4 and self.strategy != "bloom":
            raise BadInput(f"--bloom-value-size {self.bloom_value_size} applies to bloom only")
        if self.check_memory:
            need = estimate_kernel_bytes(self.strategy, self.map_size, self.nr_hash_funcs)
            have = available_memory_bytes()
            if need > MEMORY_SHARE * have:
                raise BadInput(
                    f"--size {self.map_size} needs about {need / 2**30:.1f} GiB for {self.strategy}; "
                    f"the bound is {MEMORY_SHARE:.0%} of the {have / 2**30:.1f} GiB available"
                )

    @property
    def family(self) -> Family:
        return STRATEGIES[self.strategy].family

    def config_fields(self) -> dict:
        """The result columns that identify this configuration (results.CONFIG_KEYS)."""
        return {"engine": "kernel", "family": self.family.name, "strategy": self.strategy,
                "op": self.op, "driver": None, "map_size": self.map_size, "batch_size": None,
                # bloom: the filter element's size, the axis that matters there
                "value_size": (self.bloom_value_size if self.strategy == "bloom"
                               else VALUE_SIZES[self.family.name]),
                "hit_ratio": float(self.hit_ratio),
                "nr_hash_funcs": self.nr_hash_funcs if self.strategy == "bloom" else None,
                "isa": self.isa, "key_distribution": self.key_distribution,
                "nr_maps": self.nr_maps if self.family is MAP_COUNT else None}

    @property
    def op_code(self) -> int:
        return OP_CODES[self.op]

    @property
    def hit_thresh(self) -> int:
        return round(self.hit_ratio * HIT_SCALE)


HIT_SCALE = 1 << 20  # MB_HIT_SCALE in bpf/mapbench.h
VALUE_SIZES = {"membership": 8, "per_task": 16, "map_count": 16}  # bytes, as the BPF sources define them
