"""The free engine: how long a loaded map of N prefixes takes to give its memory back once its
last fd is closed (docs/method.md, "Prefixes"), an LPM trie head to head with an exact-match
hash of the same N keys.

Closing the last reference does not free a map: the kernel queues bpf_map_free_deferred on a
workqueue, which runs the map's map_free (for a trie, a walk that frees one leaf at a time,
each time from the root: kernel/bpf/lpm_trie.c trie_free) and then returns its allocator's
caches after RCU grace periods. So the figure is taken from outside: each sample creates the map
inside a fresh memory cgroup of its own (the map is charged there for life, measure/memcg.py),
fills it (untimed), and times from close() until the cgroup's usage is back within the per-CPU
charge batches of zero, polling the usage file. The kernel's own bench times the work item with
fentry/fexit on bpf_map_free_deferred, which this VM refuses (EPERM); this figure adds the
queueing and the grace periods, which are part of the wait a user sees.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from mapbench.binding.libbpf import BPF_F_NO_PREALLOC, Map
from mapbench.errors import BadInput
from mapbench.measure import memcg, prefixes
from mapbench.measure.engine import Axis, Engine, Host, MeasureOptions, NotMeasured, Spec
from mapbench.measure.strategies import PREFIX, STRATEGIES, check_memory
from mapbench.measure.values import parse_choice, parse_size, parse_whole_number

NAME = "free"
MAP_TYPES = {"lpm_trie": ("lpm_trie", BPF_F_NO_PREALLOC), "exact_hash": ("hash", 0)}  # one map each
STRATEGY_NAMES = tuple(name for name, s in STRATEGIES.items() if s.family is PREFIX and name in MAP_TYPES)
# The memory cgroup charges in batches of up to 64 pages a CPU (MEMCG_CHARGE_BATCH in
# include/linux/memcontrol.h): the usage is back once it is within that of zero.
CHARGE_BATCH = 64 * 4096
SEEN_BATCHES = 8  # a map must take at least this many charge batches of every CPU to be timed
BYTES_PER_ENTRY = 64  # about the least either map takes per entry (a trie node, a hash element)
GIVE_UP_S = 120.0  # a free that takes longer is reported as not done (no_success)


@dataclass(frozen=True)
class FreeSpec(Spec):
    strategy: str
    map_size: int = 100_000
    addr_family: str = "ipv4"
    prefix_lens: str = prefixes.TABLE
    seed: int = 0

    def config_fields(self) -> dict:
        data = prefixes.DATA_BYTES[self.addr_family]
        return {"engine": NAME, "family": PREFIX.name, "strategy": self.strategy, "op": "free",
                "map_size": self.map_size, "entries": self.map_size, "addr_family": self.addr_family,
                "prefix_lens": self.prefix_lens, "key_size": 4 + data if self.strategy == "lpm_trie" else data,
                "value_size": 8, "seed": self.seed}

    def used_fields(self) -> set[str]:
        return {"strategy", "map_size", "addr_family", "prefix_lens", "seed"}


class Filled:
    """One load's keys and values for a spec: each sample creates, fills and frees a map of them."""

    def __init__(self, spec: FreeSpec, load: int):
        self.spec = spec
        s = prefixes.prefix_set(spec.addr_family, spec.prefix_lens, spec.map_size, load * 1_000_003 + spec.seed)
        self.keys = s.keys() if spec.strategy == "lpm_trie" else np.ascontiguousarray(s.keys()[:, 4:])
        self.values = s.values()
        self.kind = memcg.flavour()

    def __enter__(self) -> Filled:
        return self

    def __exit__(self, *exc) -> None:
        pass


@dataclass(frozen=True)
class Freed:
    free_ns: int | None  # close() to the usage back, None: not back within GIVE_UP_S
    loaded_bytes: int  # the cgroup's usage with the map filled
    left_bytes: int  # its usage when the wait ended
    close_ns: int  # the close() call itself
    memlock_bytes: int | None  # fdinfo memlock of the filled map


def free_once(f: Filled) -> Freed:
    """Create and fill the map in a fresh cgroup, close it, and wait for the cgroup's usage to
    come back (polled with pread, some microseconds a read)."""
    map_type, flags = MAP_TYPES[f.spec.strategy]
    slack = CHARGE_BATCH * (os.cpu_count() or 1)
    with memcg.MemoryCgroup(f.kind) as cg:
        with cg.charging():
            m = Map(map_type, f.keys.shape[1], 8, f.spec.map_size, map_flags=flags, name="mb_free")
        try:
            m.update_batch(f.keys, f.values)
            memlock = m.memlock_bytes()
        except BaseException:
            m.close()
            raise
        usage = os.open(cg.path / f.kind.current, os.O_RDONLY)
        try:
            loaded = int(os.pread(usage, 64, 0))
            t0 = time.monotonic_ns()
            m.close()
            t1 = time.monotonic_ns()
            while (left := int(os.pread(usage, 64, 0))) > slack and time.monotonic_ns() - t0 < GIVE_UP_S * 1e9:
                pass
            t2 = time.monotonic_ns()
        finally:
            os.close(usage)
    return Freed(t2 - t0 if left <= slack else None, loaded, left, t1 - t0, memlock)


def _prefix_lens(text) -> str:
    return prefixes.parse_prefix_lens(text)


class Free(Engine):
    name = NAME
    description = "map free: close() of a filled LPM trie or exact hash until its memory cgroup is back"
    note = ("free engine: ns from close() of a filled map's last fd until its memory cgroup's usage is back "
            "(the deferred free, its grace periods and the queueing), polled from user space; no control "
            "(docs/method.md, \"Prefixes\").")
    axes = (
        Axis("strategies", "--map", "strategy", lambda t: parse_choice(t, "--map", STRATEGY_NAMES),
             help="strategy: " + ", ".join(STRATEGY_NAMES)),
        Axis("sizes", "--size", "map_size", parse_size, default=(100_000,), help="prefixes in the map"),
        Axis("addr_families", "--addr-family", "addr_family",
             lambda t: parse_choice(t, "--addr-family", prefixes.ADDR_FAMILIES), help="ipv4 or ipv6 keys"),
        Axis("prefix_lens", "--prefix-lens", "prefix_lens", _prefix_lens,
             help="lpm_trie: 'table' (a routing table's length mix) or one length"),
        Axis("seeds", "--seed", "seed", lambda t: parse_whole_number(t, "--seed"), help="seed of the prefix sets"),
    )
    sides = ("strategies",)
    defaults = MeasureOptions(samples=3, instances=2, warmup=1, target_ms=5.0)

    def make_spec(self, fields: dict, host: Host) -> FreeSpec | NotMeasured:
        spec = FreeSpec(**fields)
        if spec.strategy != "lpm_trie":  # exact keys: full-length addresses
            spec = FreeSpec(spec.strategy, spec.map_size, spec.addr_family,
                            str(prefixes.BITS[spec.addr_family]), spec.seed)
        if spec.map_size > 1 << 24:
            raise BadInput(f"--size {spec.map_size} is above {1 << 24}, the prefix family's bound")
        prefixes.check(spec.addr_family, spec.prefix_lens, spec.map_size)
        # below this the map is within a few charge batches of zero: the cgroup cannot see its free
        smallest = SEEN_BATCHES * CHARGE_BATCH * len(host.cpus) // BYTES_PER_ENTRY
        if spec.map_size < smallest:
            raise BadInput(f"--size {spec.map_size} is below {smallest:,}: a map that small is within the memory "
                           f"cgroup's per-CPU charge batches ({CHARGE_BATCH // 1024} KiB a CPU), which hide its free")
        check_memory(STRATEGIES[spec.strategy].estimate_bytes(_Sized(spec)), spec.strategy, spec.map_size,
                     host.memory_available_bytes)
        return spec

    def refusal(self, spec: FreeSpec) -> str | None:
        return None if memcg.flavour() else memcg.why_not()

    def open(self, spec: FreeSpec, control: bool, load: int) -> Filled:
        return Filled(spec, load)

    def sample(self, build: Filled, number: int, calibration, session) -> Freed:
        return free_once(build)

    def rows(self, build: Filled, sample: Freed, control) -> list[dict]:
        done = sample.free_ns is not None
        return [{**build.spec.config_fields(), "ops": 1, "ops_succeeded": int(done),
                 "elapsed_ns": sample.free_ns, "ns_per_op": sample.free_ns, "gross_ns_per_op": sample.free_ns,
                 "memory_peak_bytes": sample.loaded_bytes, "memory_current_bytes": sample.left_bytes,
                 "map_memory_bytes": sample.memlock_bytes, "memory_source": build.kind.name,
                 "bytes_per_entry": sample.loaded_bytes / build.spec.map_size,
                 "status": "ok" if done else "no_success",
                 "message": "" if done else f"the memory was not back {GIVE_UP_S:g} s after close()"}]


@dataclass(frozen=True)
class _Sized:
    """What the strategies' estimate_bytes reads of a spec."""

    spec: FreeSpec

    @property
    def entries(self) -> int:
        return self.spec.map_size

    @property
    def addr_family(self) -> str:
        return self.spec.addr_family


ENGINE = Free()
