"""The registry of the kernel engine's strategies: one record per strategy says everything the
engines need to know about it (its family's source, its -DMB_STORAGE macro, its ops, which
maps its build has and how each is sized, filled and charged), so that no engine branches on
a strategy's name. Adding a strategy: its record here and its `#if` branch in the family's
BPF source. See docs/method.md ("Pairs").
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mapbench.binding.libbpf import BPF_F_NO_COMMON_LRU, BPF_F_NO_PREALLOC, Map
from mapbench.errors import BadInput
from mapbench.measure import keys, prefixes

MAX_HASH_FUNCS = 15  # the kernel's bound for a bloom filter's map_extra
DEFAULT_HASH_FUNCS = 3  # as the kernel's own bloom bench
MEMORY_SHARE = 0.8  # never plan to take more than this share of MemAvailable
FILL_CHUNK = 1 << 16  # entries per BPF_MAP_UPDATE_BATCH call when filling
CONTROL_MACRO = "MB_CONTROL"
# The kernel engine's reference: the op alone, key on the stack, in a plain loop (Strategy.minimal)
MINIMAL_SOURCE = "minimal.bpf.c"


@dataclass(frozen=True)
class Family:
    name: str
    source: str  # bpf/<source>
    description: str
    value_size: int  # bytes of the value the programs keep, as the BPF source defines it


MEMBERSHIP = Family("membership", "membership.bpf.c", "is a key in the set?", 8)
PER_TASK = Family("per_task", "taskstate.bpf.c", "find or create a record for a task", 16)
MAP_COUNT = Family("map_count", "storagecount.bpf.c",
                   "one task carrying several task-storage maps (the kernel caches 16 per task)", 16)


@dataclass(frozen=True)
class MapPlan:
    """How the loader prepares one map of a build: between open and load it sizes it
    (`sized`: max_entries = map_size) and sets what `configure` says; after load, `fill`
    puts the entries the programs will draw."""

    name: str
    sized: bool = True
    configure: Callable | None = None  # (BpfMap, spec) -> None, before load
    fill: Callable | None = None  # (BpfMap, spec, instance config) -> None, after load
    spare: Callable[[int], int] = lambda n: 0  # max_entries beyond the map_size entries held


def _member_keys(spec, config) -> np.ndarray:
    """The keys of the entries present (config map_size of them: --fill of max_entries)."""
    index = np.arange(config["map_size"], dtype=np.uint64)
    if config.get("index_keys"):
        return index.astype(np.uint32)
    return keys.member_keys(index, config["key_mult"], config["key_salt"])


def _fill_members(m, spec, config) -> None:
    if spec.op == "cache":  # a cache starts empty: its misses fill it
        return
    members = _member_keys(spec, config)
    key = members if config.get("index_keys") else keys.key_words(members, spec.key_size // 4)
    values = keys.value_words(members, spec.value_size // 8)
    copies = m.elem_value_bytes // spec.value_size  # per-CPU maps: a value for every possible CPU
    m.update_batch(key, np.ascontiguousarray(np.tile(values, (1, copies))), FILL_CHUNK)


def _configure_members(map_type: str):
    """Before load: the members map's key and value size, and its type (the program code is the
    same for every type); hash types without preallocation when the spec asks (--no-prealloc)."""
    def configure(m, spec) -> None:
        if map_type != "hash":
            m.set_type(map_type)
        if "array" not in map_type:
            m.set_key_size(spec.key_size)
        m.set_value_size(spec.value_size)
        if spec.no_prealloc:
            m.set_map_flags(BPF_F_NO_PREALLOC)
        if spec.lru_lists == "percpu":  # an LRU list per CPU, each max_entries / possible CPUs long
            m.set_map_flags(BPF_F_NO_COMMON_LRU)
    return configure


# An LRU hash can evict before it is full: each CPU keeps a local list of free nodes
# (LOCAL_FREE_TARGET, 128, in kernel/bpf/bpf_lru_list.h), so room for them keeps every entry.
def _lru_room(n: int) -> int:
    return 128 * 2 * (os.cpu_count() or 1)


def _configure_filter(m, spec) -> None:
    m.set_map_extra(spec.nr_hash_funcs)
    m.set_value_size(spec.bloom_value_size)


def _fill_filter(m, spec, config) -> None:
    """The bloom filter has no batch ops: one push per element, in a native loop."""
    m.push_all(keys.key_words(_member_keys(spec, config), spec.bloom_value_size // 4))


def _fill_pids(m, spec, config) -> None:
    pids = (config["base_pid"] + np.arange(spec.map_size, dtype=np.uint64)).astype(np.uint32)
    m.update_batch(pids, np.zeros((spec.map_size, 2), dtype=np.uint64), FILL_CHUNK)


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def hash_bytes(entries: int, key_size: int, value_size: int) -> int:
    """A preallocated hash: the kernel's htab_elem (48 bytes) plus key and value rounded to 8
    per entry, and a power of two of 16-byte buckets; plus the numpy arrays of the fill."""
    r8 = lambda n: (n + 7) // 8 * 8  # noqa: E731
    return entries * (48 + r8(key_size) + r8(value_size)) + _pow2(entries) * 16 \
        + entries * (key_size + value_size)


def bloom_bits(map_size: int, nr_hash_funcs: int) -> int:
    """The bit-array size the kernel gives a bloom filter (kernel/bpf/bloom_filter.c): n * k
    scaled by 7/5 (about 1/ln 2), rounded up to a power of two, at least 64, capped at 2^32."""
    bits = (map_size * nr_hash_funcs) // 5 * 7
    if bits > 2**31:
        return 2**32
    return 64 if bits <= 64 else _pow2(bits)


def bloom_fp_theory(map_size: int, nr_hash_funcs: int, entries: int | None = None) -> float:
    """(1 - e^(-k n / m))^k for the filter the kernel builds for map_size (max_entries)
    elements, holding `entries` of them (default: full)."""
    k, m = nr_hash_funcs, bloom_bits(map_size, nr_hash_funcs)
    n = map_size if entries is None else entries
    return (1 - math.exp(-k * n / m)) ** k


@dataclass(frozen=True)
class Strategy:
    name: str
    family: Family
    macro: str  # -DMB_STORAGE=<macro>
    ops: tuple[str, ...]
    description: str
    maps: tuple[MapPlan, ...] = ()
    # the spec fields (besides size and op) that change what this strategy does
    params: frozenset[str] = frozenset()
    fixed_size: int | None = None  # works on the current task only: --size must be this
    index_keys: bool = False  # the key of entry i is i: arrays, indexed by entry number
    memory_known: bool = True  # False: fdinfo memlock says nothing (task storage: a constant)
    # True: two builds of it in one load interfere: their storages share the task's one storage
    # list, so each lengthens the other's walk. Such sides get a comparison each (the other
    # sides in every one). Removing the other build's storages before each run would add its
    # own cost: 131 against 114 ns per get at 64 maps (docs/method.md, "Kernel engine").
    alone: bool = False
    estimate_bytes: Callable = field(default=lambda spec: 4096, repr=False)
    # ops the kernel refuses for this type, with its reason: `unsupported` rows, never run
    refused: tuple[tuple[str, str], ...] = ()
    # bpf/minimal.bpf.c has this strategy's first op under its macro (--implementation minimal)
    minimal: bool = False
    keyless: bool = False  # no key to draw: task storage gets the current task's record

    def memory_bytes(self, build) -> int | None:
        """fdinfo memlock of the strategy's maps in a loaded build, or None when unknown."""
        if not self.memory_known or not self.maps:
            return None
        return sum(build.obj.map(p.name).memlock_bytes() or 0 for p in self.maps)


SHAPE = frozenset({"key_size", "value_size", "fill"})  # the shape axes of a keyed membership map
_MAP_TYPES = (  # the membership family's map types: (name, what it is, params, spare)
    ("hash", "hash map holding the set", SHAPE | {"no_prealloc"}, lambda n: 0),
    ("lru_hash", "LRU hash holding the set (room for per-CPU free lists beside it)", SHAPE | {"lru_lists"},
     _lru_room),
    ("percpu_hash", "per-CPU hash holding the set", SHAPE | {"no_prealloc"}, lambda n: 0),
    ("lru_percpu_hash", "per-CPU LRU hash holding the set", SHAPE | {"lru_lists"}, _lru_room),
    ("array", "array indexed by entry number", frozenset({"value_size"}), lambda n: 0),
    ("percpu_array", "per-CPU array indexed by entry number", frozenset({"value_size"}), lambda n: 0),
)
# array_map_delete_elem() is -EINVAL: an array has every index from creation to the end
_NO_DELETE = "the kernel refuses deletes from arrays (EINVAL): every index exists from creation on"
_ARRAY_REFUSES = (("delete_insert", _NO_DELETE), ("delete", _NO_DELETE),
                  ("insert", "an array has every index: an insert (BPF_NOEXIST) is always EEXIST"),
                  ("cache", "an array has every index: a cache of it never misses nor evicts"))
# cache: look the key up, insert it on a miss (what an LRU cache's user does; --working-set)
MEMBERSHIP_OPS = ("lookup", "update", "delete_insert", "insert", "delete", "cache")


def _membership_bytes(spec, percpu: bool = False) -> int:
    copies = os.cpu_count() or 1 if percpu else 1
    return hash_bytes(spec.map_size, spec.key_size, spec.value_size * copies)


MAP_IN_MAP = Family("map_in_map", "mapinmap.bpf.c",
                    "an entry behind two lookups (outer map, then inner hash) or one (a compound key)", 8)


def _map_in_map_entries(spec, config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entry e of the family (bpf/mapinmap.bpf.c): in inner map e % nr_maps under key(e), or in
    the flat hash under {e % nr_maps, key(e)}: (outer indexes, inner keys, values)."""
    index = np.arange(config["map_size"], dtype=np.uint64)
    inner_keys = keys.member_keys(index, config["key_mult"], config["key_salt"])
    return (index % spec.nr_maps).astype(np.uint32), inner_keys, keys.value_words(inner_keys, 1)


def _fill_outer(m, spec, config) -> None:
    """Create nr_maps inner hashes (the type, sizes and flags of the source's template), fill each
    with its entries and put its fd in the outer map; the outer map keeps each inner one alive
    once our fd is closed."""
    outer, inner_keys, values = _map_in_map_entries(spec, config)
    room = max(1, -(-len(outer) // spec.nr_maps))
    for i in range(spec.nr_maps):
        mine = outer == i
        with Map("hash", 4, 8, room, name=f"inner{i}") as inner:
            if mine.any():
                inner.update_batch(np.ascontiguousarray(inner_keys[mine]), np.ascontiguousarray(values[mine]),
                                   FILL_CHUNK)
            m.update(np.uint32(i).tobytes(), np.uint32(inner.fd).tobytes())


def _fill_flat(m, spec, config) -> None:
    outer, inner_keys, values = _map_in_map_entries(spec, config)
    m.update_batch(np.ascontiguousarray(np.stack([outer, inner_keys], axis=1)), values, FILL_CHUNK)


def _configure_outer(m, spec) -> None:
    m.set_max_entries(spec.nr_maps)


_MAP_IN_MAP_TYPES = (  # (name, macro, what, maps)
    ("hash_of_maps", "MB_HASH_OF_MAPS", "outer hash of maps keyed by inner-map index, then the inner hash",
     (MapPlan("outer", sized=False, configure=_configure_outer, fill=_fill_outer),)),
    ("array_of_maps", "MB_ARRAY_OF_MAPS", "outer array of maps indexed by inner-map index, then the inner hash",
     (MapPlan("outer", sized=False, configure=_configure_outer, fill=_fill_outer),)),
    ("compound_hash", "MB_COMPOUND_HASH", "one flat hash keyed by {inner-map index, key}: the same entries",
     (MapPlan("flat", fill=_fill_flat),)),
)


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    *(Strategy(name, MEMBERSHIP, "MB_HASH", MEMBERSHIP_OPS, what,
               maps=(MapPlan("members", configure=_configure_members(name), fill=_fill_members, spare=spare),),
               params=params, index_keys="array" in name,
               refused=_ARRAY_REFUSES if "array" in name else (), minimal=name == "hash",
               estimate_bytes=lambda spec, name=name: _membership_bytes(spec, "percpu" in name))
      for name, what, params, spare in _MAP_TYPES),
    Strategy("bloom", MEMBERSHIP, "MB_BLOOM", ("lookup", "update"),
             "bloom filter in front of the same hash; the hash is asked only on 'maybe'",
             maps=(MapPlan("members", configure=_configure_members("hash"), fill=_fill_members),
                   MapPlan("filter", configure=_configure_filter, fill=_fill_filter)),
             params=frozenset({"nr_hash_funcs", "bloom_value_size", "key_size", "fill"}),
             refused=(("delete_insert", "a bloom filter cannot delete (the kernel has no delete for it)"),),
             minimal=True,
             estimate_bytes=lambda spec: _membership_bytes(spec)
             + bloom_bits(spec.map_size, spec.nr_hash_funcs) // 8),
    Strategy("pid_hash", PER_TASK, "MB_PID_HASH", ("get",),
             "hash keyed by pid holding map_size pids; each draw asks for a random one of them",
             maps=(MapPlan("states", fill=_fill_pids),),
             estimate_bytes=lambda spec: hash_bytes(spec.map_size, 4, 16)),
    Strategy("task_storage", PER_TASK, "MB_TASK_STORAGE", ("get",),
             "task local storage of the current task, created on first use (one record, "
             "whatever --size says: see docs/method.md)",
             maps=(MapPlan("states", sized=False),), memory_known=False, minimal=True, keyless=True),
    Strategy("task_storage_maps", MAP_COUNT, "MB_TASK_STORAGE", ("get",),
             "the current task's record in each of --task-maps storage maps",
             params=frozenset({"nr_maps"}), fixed_size=1, memory_known=False, alone=True),
    *(Strategy(name, MAP_IN_MAP, macro, ("lookup",), what, maps=plans, params=frozenset({"nr_maps"}),
               memory_known=name == "compound_hash", estimate_bytes=lambda spec: hash_bytes(spec.map_size, 8, 8))
      for name, macro, what, plans in _MAP_IN_MAP_TYPES),
)}


def check_memory(need: int, what: str, size: int, available: int) -> None:
    """Never plan to take more than MEMORY_SHARE of the memory available (Host.memory_available_bytes)."""
    if need > MEMORY_SHARE * available:
        raise BadInput(f"--size {size} needs about {need / 2**30:.1f} GiB for {what}; the bound is "
                       f"{MEMORY_SHARE:.0%} of the {available / 2**30:.1f} GiB available")


# --- the prefix family (bpf/prefix.bpf.c; docs/method.md, "Prefixes") ---
PREFIX = Family("prefix", "prefix.bpf.c", "which prefix holds this address? (longest-prefix match)", 8)
PREFIX_OPS = ("lookup", "update", "delete")


def prefix_set_of(spec, config):
    """The prefixes a build of spec holds in one load (the trie's mix, the hash's exact keys)."""
    return prefixes.prefix_set(spec.addr_family, spec.prefix_lens, spec.entries, config["seed"])


def _configure_trie(m, spec) -> None:
    m.set_key_size(4 + prefixes.DATA_BYTES[spec.addr_family])  # struct bpf_lpm_trie_key_u8: prefixlen, then data


def _configure_exact(m, spec) -> None:
    m.set_key_size(prefixes.DATA_BYTES[spec.addr_family])  # the address alone


def _fill_trie(m, spec, config) -> None:
    if spec.implementation == "minimal":  # bpf/minimal.bpf.c draws member keys: /32s of them
        members = _member_keys(spec, config)
        m.update_batch(np.stack([np.full(len(members), 32, dtype=np.uint32), members], axis=1),
                       np.arange(len(members), dtype=np.uint64), FILL_CHUNK)
        return
    s = prefix_set_of(spec, config)
    m.update_batch(s.keys(), s.values(), FILL_CHUNK)


def _fill_exact(m, spec, config) -> None:
    s = prefix_set_of(spec, config)
    m.update_batch(np.ascontiguousarray(s.keys()[:, 4:]), s.values(), FILL_CHUNK)


def _trie_bytes(spec) -> int:
    """Nodes of 40 bytes (rcu head, two children, length, flags) plus address and value, about as
    many intermediate nodes as prefixes at most, from one bpf_mem_alloc cache (kernel/bpf/lpm_trie.c);
    plus the numpy arrays of the prefix set and the lookup table."""
    node = 40 + prefixes.DATA_BYTES[spec.addr_family] + 8
    return 2 * spec.entries * _pow2(node) + spec.entries * 64 + prefixes.lookup_table_length(spec.entries) * 64


STRATEGIES.update({s.name: s for s in (
    Strategy("lpm_trie", PREFIX, "MB_LPM_TRIE", PREFIX_OPS,
             "LPM trie of N prefixes (--prefix-lens: a routing table's length mix, or one length); a lookup "
             "returns the longest prefix holding the address",
             maps=(MapPlan("prefixes", configure=_configure_trie, fill=_fill_trie),),
             params=frozenset({"addr_family", "prefix_lens"}), estimate_bytes=_trie_bytes, minimal=True),
    Strategy("exact_hash", PREFIX, "MB_EXACT_HASH", PREFIX_OPS,
             "hash of N exact addresses (/32 or /128 keys): the exact-match table in front of, or instead of, "
             "an LPM trie",
             maps=(MapPlan("prefixes", configure=_configure_exact, fill=_fill_exact),),
             params=frozenset({"addr_family"}),
             estimate_bytes=lambda spec: hash_bytes(spec.entries, prefixes.DATA_BYTES[spec.addr_family], 8)
             + prefixes.lookup_table_length(spec.entries) * 64),
)})


def _is_host(spec, config) -> np.ndarray:
    """Which prefixes of the set are host entries (full length): front_hash keeps them in its hash."""
    return prefix_set_of(spec, config).length == prefixes.BITS[spec.addr_family]


def _fill_front(m, spec, config) -> None:
    s, index = prefix_set_of(spec, config), np.flatnonzero(_is_host(spec, config))
    if len(index):
        m.update_batch(np.ascontiguousarray(s.keys()[index, 4:]), index.astype(np.uint64), FILL_CHUNK)


def _fill_behind(m, spec, config) -> None:
    s, index = prefix_set_of(spec, config), np.flatnonzero(~_is_host(spec, config))
    if len(index):
        m.update_batch(np.ascontiguousarray(s.keys()[index]), index.astype(np.uint64), FILL_CHUNK)


STRATEGIES.update({s.name: s for s in (
    Strategy("front_hash", PREFIX, "MB_FRONT_HASH", ("lookup",),
             "the same prefixes split: host entries (/32, /128) in an exact hash asked first, the rest in an "
             "LPM trie asked on a miss (--prefix-lens hosts: half of them host entries)",
             maps=(MapPlan("front", configure=_configure_exact, fill=_fill_front),
                   MapPlan("prefixes", configure=_configure_trie, fill=_fill_behind)),
             params=frozenset({"addr_family", "prefix_lens"}),
             estimate_bytes=lambda spec: _trie_bytes(spec) + hash_bytes(spec.entries, prefixes.DATA_BYTES[
                 spec.addr_family], 8)),
)})
