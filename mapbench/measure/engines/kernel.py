"""The kernel engine: a map operation's cost inside the kernel (docs/method.md, "Kernel engine").

A raw_tp program run by BPF_PROG_TEST_RUN times a bpf_loop of N operations with
bpf_ktime_get_ns. Every side of a comparison and its family's control build (same loop, same
key stream, no map operation) are loaded together and run sample by sample in rotating order;
a side's figure is its gross ns/op less the median control ns/op of the same load, family
and ISA.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from mapbench.binding._libbpf import ffi, lib
from mapbench.binding.libbpf import BpfObject
from mapbench.errors import BadInput, EnvironmentProblem
from mapbench.measure import build, keys, lru, memcg, prefixes
from mapbench.measure.cpus import Producers
from mapbench.measure.engine import Axis, Engine, Host, MeasureOptions, NotMeasured, Spec
from mapbench.measure.keys import MAX_ZIPF_ENTRIES
from mapbench.measure.strategies import (
    CONTROL_MACRO,
    DEFAULT_HASH_FUNCS,
    FILL_CHUNK,
    MAP_COUNT,
    MAX_HASH_FUNCS,
    MEMBERSHIP,
    MINIMAL_SOURCE,
    PER_TASK,
    PREFIX,
    STRATEGIES,
    bloom_fp_theory,
    check_memory,
    prefix_set_of,
)
from mapbench.measure.values import (
    MAX_KEY_SIZE,
    MAX_VALUE_SIZE,
    check_fixed_size,
    parse_choice,
    parse_fill,
    parse_key_size,
    parse_number,
    parse_size,
    parse_value_size,
    parse_whole_number,
)

NAME = "kernel"
DESCRIPTION = "a map operation inside a BPF program (raw_tp test run), net of a control build"
BPF_LOOP_MAX = 1 << 23  # the kernel's bound on bpf_loop iterations
# Several producers share one window (docs/method.md, "Many CPUs on one map"): they meet at
# the gate, then each draws for the sample's time, at most this many draws (bpf_loop's bound, in
# chunks between two reads of the clock).
WINDOW_DRAWS = BPF_LOOP_MAX * lib.MB_CLOCK_EVERY
# uniform: each draw asks for a random entry (hit or miss by the hit ratio);
# sequential: draw i asks for entry i % map_size, as the kernel's hashmap lookup bench does;
# zipf: entry of rank k with probability proportional to 1/k^s (membership family).
KEY_DISTRIBUTIONS = ("uniform", "sequential", "zipf")
OP_CODES = {"lookup": lib.MB_OP_LOOKUP, "update": lib.MB_OP_UPDATE, "get": lib.MB_OP_GET,
            "delete_insert": lib.MB_OP_DELETE_INSERT, "insert": lib.MB_OP_INSERT, "delete": lib.MB_OP_DELETE,
            "cache": lib.MB_OP_CACHE}
WRITE_OPS = ("update", "delete_insert", "insert", "delete")  # what --writers may do
OVERLAPS = ("same", "disjoint")
# throughput: independent ops back to back, as far as the CPU overlaps them; latency: each op's key
# waits for the op before to finish (mb_chain in bpf/mapbench.h; docs/method.md, "Modes")
MODES = ("throughput", "latency")
# mapbench: the engine's builds; minimal: the reference, the op alone (bpf/minimal.bpf.c)
IMPLEMENTATIONS = ("mapbench", "minimal")
# The article's build variants of a family's accessor (bpf/mapbench.h, MB_ACCESSOR): inlined or a
# BPF-to-BPF call; its pointer parameters restrict or not. The control builds take neither.
CALLS = ("inline", "subprog")
RESTRICT = ("off", "on")
# the families whose source has an accessor of MB_ACCESSOR (map_count's get is in its loop), and
# those whose accessor takes pointers (per_task's get_state takes a pid)
ACCESSOR_FAMILIES = (MEMBERSHIP, PER_TASK)
RESTRICT_FAMILIES = (MEMBERSHIP,)
ZIPF_TABLE_LEN = 1 << 20  # zipf draws the programs walk (4 MiB); draw i takes entry table[i % len]
# --op cache: distinct keys drawn, as a multiple of the map's capacity (--size); LRU lists: one
# common list with per-CPU free lists, or one list per CPU (BPF_F_NO_COMMON_LRU)
MAX_WORKING_SET = 64.0
LRU_LISTS = ("common", "percpu")


def _working_set(text) -> float:
    value = parse_number(text, "--working-set")
    if not 0.0 < value <= MAX_WORKING_SET:
        raise BadInput(f"--working-set {text} is outside (0, {MAX_WORKING_SET:g}]: distinct keys as a "
                       "multiple of --size")
    return value


def _hit_ratio(text) -> float:
    value = parse_number(text, "--hit-ratio")
    if not 0.0 <= value <= 1.0:
        raise BadInput(f"--hit-ratio {text} is outside [0, 1]")
    return value


def _bounded(flag: str, low: int, high: int, what: str = ""):
    def parse(text) -> int:
        value = parse_whole_number(text, flag)
        if not low <= value <= high:
            raise BadInput(f"--{flag.lstrip('-')} {value} is outside {low}..{high}{what}")
        return value
    return parse


def _boolean(flag: str):
    def parse(value) -> bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise BadInput(f"{flag} {value!r} is not true or false")
    return parse


def _zipf_s(text) -> float:
    value = parse_number(text, "--zipf-s")
    if not 0.0 <= value <= 10.0:
        raise BadInput(f"--zipf-s {text} is outside 0..10")
    return value


def _count_or_all(flag: str, low: int):
    """A count of at least `low`, or 'all' (every usable CPU for --producers; every producer
    for --writers), or for --producers '1..all' (steps: complete_axes)."""
    words = ("all", "1..all") if flag == "--producers" else ("all",)

    def parse(text):
        if str(text).strip().lower() in words:
            return str(text).strip().lower()
        try:
            value = parse_whole_number(text, flag)
        except BadInput:
            raise BadInput(f"{flag} {text!r} must be a count of at least {low}, or {' or '.join(words)}") from None
        if value < low:
            raise BadInput(f"{flag} {value} must be at least {low}")
        return value
    return parse


def _bloom_value_size(text) -> int:
    value = parse_whole_number(text, "--bloom-value-size")
    if value % 4 or not 4 <= value <= 4 * lib.MB_BLOOM_MAX_WORDS:
        raise BadInput(f"--bloom-value-size {value} must be a multiple of 4 in 4..{4 * lib.MB_BLOOM_MAX_WORDS} bytes")
    return value


AXES = (
    Axis("strategies", "--map", "strategy", lambda t: parse_choice(t, "--map", STRATEGIES),
         help="strategy: " + ", ".join(STRATEGIES)),
    Axis("sizes", "--size", "map_size", parse_size, help="entries in the map"),
    Axis("ops", "--op", "op", str, help="operation (default: the strategy's first)"),
    Axis("hit_ratios", "--hit-ratio", "hit_ratio", _hit_ratio, help="share of lookups whose key is present"),
    Axis("keys", "--keys", "key_distribution", lambda t: parse_choice(t, "--keys", KEY_DISTRIBUTIONS),
         help="uniform (random entries), sequential (entry i % size, always a hit) or zipf"),
    Axis("zipf_s", "--zipf-s", "zipf_s", _zipf_s, help="--keys zipf: the exponent s (default 0.99)"),
    Axis("key_sizes", "--key-size", "key_size", parse_key_size,
         help=f"membership maps: bytes of a key, a multiple of 4 in 4..{MAX_KEY_SIZE}"),
    Axis("value_sizes", "--value-size", "value_size", parse_value_size,
         help=f"membership maps: bytes of a value, a multiple of 8 in 8..{MAX_VALUE_SIZE}; read or written whole"),
    Axis("fills", "--fill", "fill", parse_fill, help="membership maps: entries present as a share of --size (0, 1]"),
    Axis("hash_funcs", "--hash-funcs", "nr_hash_funcs", _bounded("--hash-funcs", 1, MAX_HASH_FUNCS,
                                                               " (the kernel's bound)"),
         help="bloom: hash functions"),
    Axis("bloom_value_sizes", "--bloom-value-size", "bloom_value_size", _bloom_value_size,
         help="bloom: bytes of an element, 4..64"),
    Axis("task_maps", "--task-maps", "nr_maps", _bounded("--task-maps", 1, lib.MB_MAX_TASK_MAPS),
         help="task_storage_maps: task-storage maps each draw gets from"),
    Axis("no_prealloc", "--no-prealloc", "no_prealloc", _boolean("--no-prealloc"), is_flag=True,
         help="hash and percpu_hash: BPF_F_NO_PREALLOC (elements allocated on update)"),
    Axis("producers", "--producers", "producers", _count_or_all("--producers", 1),
         help="CPUs running the program at once (N, all, or 1..all: 1, 2, 4, ... and all), each its own "
              "slice of the key stream"),
    Axis("writers", "--writers", "writers", _count_or_all("--writers", 0),
         help="membership: producers that write (--write-op) while the rest run --op (N or all)"),
    Axis("write_ops", "--write-op", "write_op", lambda t: parse_choice(t, "--write-op", WRITE_OPS),
         help="what writers do: " + ", ".join(WRITE_OPS)),
    Axis("overlaps", "--overlap", "overlap", lambda t: parse_choice(t, "--overlap", OVERLAPS),
         help="producers on the same entries, or each on a disjoint slice of them"),
    Axis("seeds", "--seed", "seed", lambda t: parse_whole_number(t, "--seed"), help="seed of the key sets"),
    Axis("isas", "--isa", "isa", build.check_isa, help="BPF ISA (clang -mcpu): v1, v2, v3"),
    Axis("modes", "--mode", "mode", lambda t: parse_choice(t, "--mode", MODES),
         help="throughput (independent ops back to back) or latency (each op waits for the one before)"),
    Axis("implementations", "--implementation", "implementation",
         lambda t: parse_choice(t, "--implementation", IMPLEMENTATIONS),
         help="mapbench, or minimal: the reference programs, the op alone (hash and bloom lookups, "
              "task_storage gets); minimal,mapbench: head to head"),
    Axis("addr_families", "--addr-family", "addr_family",
         lambda t: parse_choice(t, "--addr-family", prefixes.ADDR_FAMILIES),
         help="prefix family: ipv4 or ipv6 keys (4 or 16 address bytes)"),
    Axis("prefix_lens", "--prefix-lens", "prefix_lens", prefixes.parse_prefix_lens,
         help="lpm_trie: 'table' (a routing table's prefix-length mix, the default) or one length n (every "
              "prefix /n); exact_hash holds full-length (/32, /128) keys"),
    Axis("calls", "--calls", "calls", lambda t: parse_choice(t, "--calls", CALLS),
         help="membership and per_task: the accessor inlined (__always_inline) or a BPF-to-BPF call "
              "(__noinline); inline,subprog: head to head"),
    Axis("restrict", "--restrict", "restrict", lambda t: parse_choice(t, "--restrict", RESTRICT),
         help="membership: the accessor's pointer parameters `restrict` (on) or not (off); on,off: head to head"),
    Axis("working_sets", "--working-set", "working_set", _working_set,
         help="--op cache: distinct keys drawn as a multiple of --size (0.5: half of them fit, 4: a quarter)"),
    Axis("lru_lists", "--lru-lists", "lru_lists", lambda t: parse_choice(t, "--lru-lists", LRU_LISTS),
         help="LRU hashes: one common LRU list (the default) or one per CPU (percpu: BPF_F_NO_COMMON_LRU)"),
    Axis("inner_maps", "--inner-maps", "nr_maps", _bounded("--inner-maps", 1, lib.MB_MAX_TASK_MAPS),
         help="hash_of_maps, array_of_maps, compound_hash: inner maps the entries are spread over "
              "(the compound key's first word)"),
)
SIDES = ("strategies", "isas", "producers", "implementations", "calls", "restrict", "lru_lists")
DEFAULTS = MeasureOptions(samples=12, instances=5, warmup=2, target_ms=5.0)


@dataclass(frozen=True)
class KernelSpec(Spec):
    """One kernel-engine configuration: plain data. complete() fills in and checks a partial
    one; make_spec and KernelSpec.of are how one is made."""

    strategy: str
    op: str | None = None  # default: the strategy's first op
    map_size: int | None = None  # default: 1000, or what a fixed-size strategy needs
    hit_ratio: float = 1.0
    nr_hash_funcs: int = DEFAULT_HASH_FUNCS
    isa: str = build.DEFAULT_ISA
    key_distribution: str = "uniform"
    nr_maps: int = 1
    bloom_value_size: int = 4  # bytes of a bloom filter element (the key, then derived words)
    no_prealloc: bool = False  # hash types: BPF_F_NO_PREALLOC
    key_size: int = 4  # membership maps: bytes of a key (its first word the u32 key)
    value_size: int = 8  # membership maps: bytes of a value
    fill: float = 1.0  # membership maps: entries present as a share of map_size (max_entries)
    zipf_s: float = 0.99
    producers: int = 1  # CPUs running it at once ("all": every CPU this process may use)
    writers: int = 0  # membership: producers running write_op ("all": every producer)
    write_op: str = "update"
    overlap: str = "same"  # producers' entries: the same, or disjoint slices
    # one producer beside `slice_of` disjoint ones (split): it draws from slice 0 of slice_of, as
    # each of them draws from one, so that scaling compares the same work
    slice_of: int = 1
    seed: int = 0
    mode: str = "throughput"
    implementation: str = "mapbench"
    addr_family: str = "ipv4"  # prefix family: IPv4 or IPv6 keys
    prefix_lens: str = prefixes.TABLE  # prefix family: the length mix ('table') or one length
    calls: str = "inline"  # the accessor inlined, or a BPF-to-BPF call (subprog)
    restrict: str = "off"  # the accessor's pointer parameters restrict (on)
    working_set: float = 1.0  # --op cache: distinct keys drawn, as a multiple of map_size
    lru_lists: str = "common"  # LRU hashes: "percpu" is BPF_F_NO_COMMON_LRU

    @classmethod
    def of(cls, strategy: str, host: Host | None = None, check_memory_use: bool = True, **fields) -> KernelSpec:
        """A complete spec from a partial one, on this host unless told."""
        return complete(cls(strategy, **fields), host or Host.here(), check_memory_use)

    @property
    def family(self):
        return STRATEGIES[self.strategy].family

    @property
    def entries(self) -> int:
        """Entries present in the map: --fill of map_size (max_entries), at least one."""
        return max(1, round(self.fill * self.map_size))

    @property
    def draw_range(self) -> int:
        """Entries the key stream draws from: those present, or for --op cache the working set."""
        return max(1, round(self.working_set * self.map_size)) if self.op == "cache" else self.entries

    @property
    def hit_thresh(self) -> int:
        """The hit ratio as the programs compare it: a draw's low bits below this hit."""
        return round(self.hit_ratio * lib.MB_HIT_SCALE)

    def used_fields(self) -> set[str]:
        """The spec fields that change what this configuration measures."""
        s = STRATEGIES[self.strategy]
        used = {"strategy", "op", "isa", "seed", "mode", "implementation", "calls", "restrict"} | s.params
        if s.fixed_size is None:
            used.add("map_size")
        if s.family is not MAP_COUNT:
            used.add("key_distribution")
            if self.op == "lookup" and self.key_distribution != "sequential":
                used.add("hit_ratio")
            if self.key_distribution == "zipf":
                used.add("zipf_s")
        used.add("producers")
        if self.op == "cache":
            used.add("working_set")
        if s.family is MEMBERSHIP:
            used |= {"writers", "overlap"} if self.producers > 1 or self.slice_of > 1 else {"writers"}
            if self.writers:
                used.add("write_op")
        return used

    def op_of(self, role: str | None) -> str:
        """The op a producer of that role runs: a writer's is write_op."""
        return self.write_op if role == "writer" else self.op

    def roles(self) -> list[str | None]:
        """What each producer does: the last `writers` of them write. None: one producer alone,
        which is what every figure before --producers was."""
        if self.producers == 1 and not self.writers:
            return [None]
        return ["reader"] * (self.producers - self.writers) + ["writer"] * self.writers

    def slices(self) -> list[tuple[int, int]]:
        """(first entry, entries) each producer draws from; (0, 0): all of them."""
        n, p = self.entries, self.producers
        if self.overlap == "same":
            return [(0, 0)] * p
        k = max(p, self.slice_of)
        return [(i * n // k, (i + 1) * n // k - i * n // k) for i in range(p)]

    def control_key(self) -> tuple:
        """Sides with the same control key share a control build: same family and ISA, and the
        same loop (draws, hit branch, inner map count) for the control to run."""
        return (self.family.name, self.isa, self.map_size, self.entries, self.hit_thresh, self.key_distribution,
                self.zipf_s, self.key_size, self.bloom_value_size, self.nr_maps, STRATEGIES[self.strategy].index_keys,
                self.producers, self.overlap, self.mode, self.implementation, STRATEGIES[self.strategy].keyless,
                self.addr_family, self.draw_range)

    @property
    def source(self) -> str:
        """bpf/<source> of its builds: its family's, or the minimal reference's."""
        return MINIMAL_SOURCE if self.implementation == "minimal" else self.family.source

    def config_fields(self) -> dict:
        """The configuration columns (results.CONFIG_KEYS) of this spec's rows."""
        used = self.used_fields()
        return {"engine": NAME, "family": self.family.name, "strategy": self.strategy, "op": self.op,
                "map_size": self.map_size, "hit_ratio": float(self.hit_ratio), "isa": self.isa,
                # bloom: the filter element's size is the value size that matters there
                "value_size": (self.bloom_value_size if "bloom_value_size" in used
                               else self.value_size if self.family is MEMBERSHIP else self.family.value_size),
                "key_size": self.key_size, "fill": float(self.fill), "entries": self.entries,
                "zipf_s": float(self.zipf_s) if "zipf_s" in used else None,
                "nr_hash_funcs": self.nr_hash_funcs if "nr_hash_funcs" in used else None,
                "key_distribution": self.key_distribution, "seed": self.seed,
                "nr_maps": self.nr_maps if "nr_maps" in used else None,
                "producers": self.producers, "writers": self.writers,
                "write_op": self.write_op if "write_op" in used else None,
                "overlap": (f"slice 1/{self.slice_of}" if self.slice_of > 1 else self.overlap) if "overlap" in used
                else None,
                "no_prealloc": self.no_prealloc if "no_prealloc" in used else None,
                "mode": self.mode, "implementation": self.implementation,
                "working_set": float(self.working_set) if "working_set" in used else None,
                "lru_lists": self.lru_lists if "lru_lists" in used else None,
                "calls": self.calls, "restrict": self.restrict,
                **(self._prefix_fields() if self.family is PREFIX else {})}

    def _prefix_fields(self) -> dict:
        """The prefix family's configuration: its address family, length mix and real key size."""
        data = prefixes.DATA_BYTES[self.addr_family]
        return {"addr_family": self.addr_family, "prefix_lens": self.prefix_lens,
                "key_size": 4 + data if self.strategy == "lpm_trie" else data}

    def defines(self) -> tuple[str, ...]:
        """The macros of its builds' accessor (bpf/mapbench.h): the control builds take none."""
        return (("MB_CALLS_SUBPROG",) if self.calls == "subprog" else ()) + (
            ("MB_RESTRICT",) if self.restrict == "on" else ())


def complete(spec: KernelSpec, host: Host, check_memory_use: bool = True) -> KernelSpec:
    """The spec with every default filled in, what does not change its work normalised (so that
    equal work is one spec), and every value checked against its bound and the host's CPUs and
    memory: a one-line BadInput otherwise."""
    s = STRATEGIES.get(spec.strategy)
    if s is None:
        raise BadInput(f"--map {spec.strategy!r} is unknown: choose one of {', '.join(STRATEGIES)}")
    spec = dataclasses.replace(spec, op=spec.op or s.ops[0])
    if spec.op not in s.ops:
        raise BadInput(f"--op {spec.op!r} is not an op of {spec.strategy}: it has {', '.join(s.ops)}")
    if spec.map_size is None:
        spec = dataclasses.replace(spec, map_size=s.fixed_size or 1000)
    parse_size(spec.map_size)
    check_fixed_size(spec.strategy, s.fixed_size, spec.map_size, "works on the current task only")
    if s.family.name == "membership" and spec.map_size > 2**31:
        raise BadInput(f"--size {spec.map_size} is above 2^31, the largest set whose miss keys "
                       "fit beside it in the u32 key space")
    _hit_ratio(spec.hit_ratio)
    parse_choice(spec.key_distribution, "--keys", KEY_DISTRIBUTIONS)
    build.check_isa(spec.isa)
    if spec.producers == "all":
        spec = dataclasses.replace(spec, producers=len(host.cpus))
    host.producer_cpus(None, spec.producers)  # a one-line error above the usable CPUs
    if spec.writers == "all":
        spec = dataclasses.replace(spec, writers=spec.producers)
    if spec.writers > spec.producers:
        raise BadInput(f"--writers {spec.writers} is above --producers {spec.producers}")
    if spec.writers and s.family is not MEMBERSHIP:
        raise BadInput(f"--writers applies to the membership strategies, not {spec.strategy}")
    if spec.writers and (spec.write_op not in s.ops or spec.write_op in dict(s.refused)):
        raise BadInput(f"--write-op {spec.write_op} is not an op of {spec.strategy}")
    if not spec.writers:
        spec = dataclasses.replace(spec, write_op="update")
    # the prefix family puts back after each sample what its deletes took (_sample)
    unsteady = _unsteady(spec.op, spec.write_op, spec.producers, spec.writers) if s.family is not PREFIX else None
    if unsteady:
        raise BadInput(unsteady)
    if spec.producers > 1 or spec.overlap == "same" or s.family is not MEMBERSHIP:
        spec = dataclasses.replace(spec, slice_of=1)
    if (spec.producers == 1 and spec.slice_of == 1) or s.family is not MEMBERSHIP:
        spec = dataclasses.replace(spec, overlap="same")
    parse_choice(spec.overlap, "--overlap", OVERLAPS)
    # what does not change this strategy's work is normalised, so that equal work is one spec
    if "hit_ratio" not in spec.used_fields():
        spec = dataclasses.replace(spec, hit_ratio=1.0)
    if spec.key_distribution == "zipf" and s.family is not MEMBERSHIP:
        raise BadInput(f"--keys zipf applies to the membership strategies, not {spec.strategy}")
    if spec.key_distribution != "zipf":
        spec = dataclasses.replace(spec, zipf_s=0.99)
    for name, default in (("nr_hash_funcs", DEFAULT_HASH_FUNCS), ("bloom_value_size", 4), ("nr_maps", 1),
                          ("no_prealloc", False), ("key_size", 4), ("value_size", 8), ("fill", 1.0),
                          ("lru_lists", "common")):
        if name not in s.params:
            spec = dataclasses.replace(spec, **{name: default})
    parse_choice(spec.lru_lists, "--lru-lists", LRU_LISTS)
    _working_set(spec.working_set)
    if spec.op == "cache":  # a cache starts empty and draws from its working set: --fill says nothing
        spec = dataclasses.replace(spec, fill=1.0)
        if spec.draw_range > 2**31:
            raise BadInput(f"--working-set {spec.working_set:g} of --size {spec.map_size} is above 2^31 keys")
    else:
        spec = dataclasses.replace(spec, working_set=1.0)
    parse_key_size(spec.key_size)
    parse_value_size(spec.value_size)
    parse_fill(spec.fill)
    _zipf_s(spec.zipf_s)
    if spec.key_distribution == "zipf" and spec.entries > MAX_ZIPF_ENTRIES:
        raise BadInput(f"--size {spec.map_size} with --keys zipf holds {spec.entries} entries, above the "
                       f"bound of {MAX_ZIPF_ENTRIES} for the zipf table")
    _bounded("--hash-funcs", 1, MAX_HASH_FUNCS)(spec.nr_hash_funcs)
    _bloom_value_size(spec.bloom_value_size)
    _bounded("--task-maps", 1, lib.MB_MAX_TASK_MAPS)(spec.nr_maps)
    parse_choice(spec.mode, "--mode", MODES)
    parse_choice(spec.implementation, "--implementation", IMPLEMENTATIONS)
    parse_choice(spec.calls, "--calls", CALLS)
    parse_choice(spec.restrict, "--restrict", RESTRICT)
    for flag, value, families in (("--calls", spec.calls, ACCESSOR_FAMILIES), ("--restrict", spec.restrict,
                                                                              RESTRICT_FAMILIES)):
        if value != ("inline" if flag == "--calls" else "off") and s.family not in families:
            raise BadInput(f"{flag} {value} applies to the {' and '.join(f.name for f in families)} "
                           f"strategies (their accessor), not {spec.strategy}")
    if spec.implementation == "minimal":
        _check_minimal(spec, s)
    spec = _complete_prefix(spec, s)
    if check_memory_use:
        check_memory(s.estimate_bytes(spec), spec.strategy, spec.map_size, host.memory_available_bytes)
    return spec


MAX_PREFIXES = 1 << 24  # the prefix family's numpy tables: about 1 GiB at this bound


def _complete_prefix(spec: KernelSpec, s) -> KernelSpec:
    """The prefix family's axes checked (and the others' left at their defaults); exact_hash keys
    are full-length addresses."""
    if s.family is not PREFIX:
        return dataclasses.replace(spec, addr_family="ipv4", prefix_lens=prefixes.TABLE)
    parse_choice(spec.addr_family, "--addr-family", prefixes.ADDR_FAMILIES)
    lens = prefixes.parse_prefix_lens(spec.prefix_lens)
    if "prefix_lens" not in s.params:
        lens = str(prefixes.BITS[spec.addr_family])
    if spec.map_size > MAX_PREFIXES:
        raise BadInput(f"--size {spec.map_size} is above {MAX_PREFIXES}, the prefix family's bound")
    if spec.key_distribution != "uniform":
        raise BadInput(f"--keys {spec.key_distribution} does not apply to {spec.strategy}: its draws are a "
                       "shuffled table of addresses (uniform)")
    if spec.op == "delete" and spec.producers > 1:
        raise BadInput(f"--op delete of {spec.strategy} runs on one producer (each sample deletes distinct "
                       "prefixes, put back after it)")
    prefixes.check(spec.addr_family, lens, spec.entries)
    if spec.implementation == "minimal" and (lens != "32" or spec.addr_family != "ipv4"):
        raise BadInput(f"--implementation minimal runs lpm_trie with --prefix-lens 32 and --addr-family ipv4 "
                       f"only, not {lens} {spec.addr_family}")
    return dataclasses.replace(spec, prefix_lens=lens)


# What the minimal reference programs do (bpf/minimal.bpf.c): one op on the default shape, one producer
_MINIMAL_SHAPE = {"key_size": 4, "value_size": 8, "fill": 1.0, "bloom_value_size": 4, "key_distribution": "uniform",
                  "producers": 1, "writers": 0, "restrict": "off"}  # its accessor takes --calls


def _check_minimal(spec: KernelSpec, s) -> None:
    """--implementation minimal: what the reference programs do, or a one-line BadInput."""
    cache = spec.op == "cache" and s.macro == "MB_HASH"  # a hash type as a cache: lookup, insert on a miss
    if not cache and (not s.minimal or spec.op != s.ops[0]):
        has = ", ".join(f"{name} {x.ops[0]}" for name, x in STRATEGIES.items() if x.minimal)
        raise BadInput(f"--implementation minimal has {has} and the hash types' cache, not {spec.strategy} "
                       f"{spec.op}")
    for name, value in _MINIMAL_SHAPE.items():
        if getattr(spec, name) != value:
            flag = next(a.flag for a in AXES if a.field == name)
            raise BadInput(f"--implementation minimal runs {flag} {value} only, not {getattr(spec, name)}")


def _unsteady(op: str, write_op: str, producers: int, writers: int) -> str | None:
    """Why a workload cannot stay in steady state, or None. Every key drawn is one the map held
    at the start, so inserts alone fail (EEXIST) from the first draw on and deletes alone empty
    the map in one pass: each needs producers doing the other beside it."""
    ops = ({op} if producers > writers else set()) | ({write_op} if writers else set())
    for alone, other in (("insert", "delete"), ("delete", "insert")):
        if alone in ops and other not in ops:
            what = ("every key drawn is already in the map, so each insert fails (EEXIST)" if alone == "insert"
                    else "the deletes empty the map in one pass, then each one fails (ENOENT)")
            return (f"--op {alone} cannot stay in steady state without producers that {other}: {what}; "
                    f"add writers, e.g. --producers 2 --writers 1 --write-op {other}")
    return None


def make_spec(fields: dict, host: Host) -> KernelSpec | NotMeasured:
    s = STRATEGIES.get(fields.get("strategy"))
    op = fields.get("op")
    if s is not None and op is not None and (op not in s.ops or op in dict(s.refused)):
        reason = dict(s.refused).get(op) or f"--op {op!r} is not an op of {s.name}: it has {', '.join(s.ops)}"
        return NotMeasured((("engine", NAME), ("family", s.family.name), ("strategy", s.name),
                            ("op", op), ("map_size", fields.get("map_size")),
                            ("mode", fields.get("mode", KernelSpec.mode)),
                            ("implementation", fields.get("implementation", KernelSpec.implementation))), reason)
    if s is not None and s.fixed_size is not None:
        fields = {**fields, "map_size": s.fixed_size}
    return complete(KernelSpec(**fields), host)


@dataclass(frozen=True)
class RunResult:
    """What one test run of one program reported (struct mb_result of its CPU)."""

    elapsed_ns: int
    ops: int
    hits: int
    filter_positives: int
    checksum: int
    value_checksum: int
    nr_loops: int  # draws done
    start_ns: int = 0  # CLOCK_MONOTONIC when its loop started
    cpu: int | None = None
    ideal_hits: int | None = None  # --op cache, one producer: an exact LRU's hits on the same draws

    @property
    def ns_per_op(self) -> float:
        return self.elapsed_ns / self.ops

    @property
    def ns_per_loop(self) -> float:
        return self.elapsed_ns / self.nr_loops

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.elapsed_ns


@dataclass(frozen=True)
class Sample:
    """One sample of one build: a run per producer, and the memory its maps held after it."""

    runs: list[RunResult]
    succeeded: tuple[int, ...] | None = None  # per run, where its op can fail: what succeeded
    entries_held: int | None = None
    memlock: int | None = None
    memory_current: int | None = None
    memory_peak: int | None = None
    evictions: int | None = None  # --op cache: entries the map evicted during the sample
    first_eviction: int | None = None  # --op cache: entries held when it first evicted (None: not yet)

    @property
    def common_window_ns(self) -> int:
        """From the last producer's start to the first one's end: while every producer ran (at
        or below 0: they never all ran at once)."""
        return min(r.end_ns for r in self.runs) - max(r.start_ns for r in self.runs)

    @property
    def overlap(self) -> float:
        """The common window's share of the span from the first start to the last end."""
        span = max(r.end_ns for r in self.runs) - min(r.start_ns for r in self.runs)
        return max(self.common_window_ns, 0) / span if span > 0 else float("nan")

    @property
    def aggregate_ops_per_s(self) -> float:
        """The ops every producer completed inside the common window, over that window. A
        producer's share is its ops scaled by the part of its run inside the window (its rate
        taken as uniform within the run)."""
        common = self.common_window_ns
        if common <= 0:
            return float("nan")
        done = self.succeeded or [r.ops for r in self.runs]
        inside = sum(ops * common / r.elapsed_ns for ops, r in zip(done, self.runs))
        return inside * 1e9 / common


def instance_config(spec: KernelSpec, instance: int) -> dict:
    """struct mb_config of one load: the key stream is deterministic from (seed, instance), so
    every side and control of a comparison draws the same keys."""
    rng = np.random.default_rng([spec.seed, instance])
    config = {
        "seed": int(rng.integers(0, 2**63)),
        "map_size": spec.draw_range,
        "hit_thresh": spec.hit_thresh,
        "key_mult": int(rng.integers(0, 2**31)) * 2 + 1,
        "key_salt": int(rng.integers(0, 2**32)),
        "op": OP_CODES[spec.op],
        "base_pid": os.getpid(),
        "sequential": int(spec.key_distribution == "sequential"),
        "nr_maps": spec.nr_maps,
        "bloom_words": spec.bloom_value_size // 4,
        "index_keys": int(STRATEGIES[spec.strategy].index_keys),
        "key_words": spec.key_size // 4,
        "value_words": spec.value_size // 8,
        "table_mask": ZIPF_TABLE_LEN - 1 if spec.key_distribution == "zipf" else 0,
        "write_op": OP_CODES[spec.write_op],
        "latency": int(spec.mode == "latency"),
        "keyless": int(STRATEGIES[spec.strategy].keyless),
    }
    if spec.family is PREFIX:  # lookups walk a power-of-two table of addresses; writes every prefix
        config["table_mask"] = prefixes.lookup_table_length(spec.entries) - 1 if spec.op == "lookup" else 0
    return config


@functools.lru_cache(maxsize=4)
def _zipf_table(entries: int, s: float, seed: int) -> np.ndarray:
    return keys.zipf_table(entries, s, ZIPF_TABLE_LEN, seed)


def draw_table(spec: KernelSpec, config: dict) -> np.ndarray | None:
    """The zipf draws of one load (every build of it walks the same table), or None."""
    if not config["table_mask"]:
        return None
    return _zipf_table(config["map_size"], spec.zipf_s, config["seed"])


def prefix_draw_table(spec: KernelSpec, config: dict) -> np.ndarray:
    """The prefix family's draws in one load (bpf/prefix.bpf.c): lookup addresses, or for updates
    and deletes every present prefix once in a random order."""
    if config["table_mask"]:
        return prefixes.lookup_table(spec.addr_family, spec.prefix_lens, spec.entries, config["seed"],
                                     config["table_mask"] + 1, spec.hit_ratio)[2]
    s = prefix_set_of(spec, config)
    order = prefixes.write_order(spec.entries, config["seed"])
    return prefixes.table_record(s.hi[order], s.lo[order], s.length[order], spec.addr_family)


_ZERO = bytes(4)


def _writes(spec: KernelSpec) -> bool:
    """Whether the maps can grow or shrink while it runs: then memory is read after every sample."""
    return spec.family is MEMBERSHIP and (spec.op in WRITE_OPS or spec.writers > 0)


# What one successful op does to the entries a membership map holds (the others keep them)
NET_ENTRIES = {"insert": 1, "delete": -1}


def _succeeded(op: str, r: RunResult) -> int:
    """A run's ops that did what they asked: a write can fail (its hits are its successes), a
    lookup or get cannot (a miss is an answer)."""
    return r.hits if op in WRITE_OPS else r.ops


class LoadedBuild:
    """One loaded build of a family source (a strategy's, or the control), its maps sized and
    filled as the strategy's record says. A strategy's maps whose memory can be known are
    created inside a memory cgroup of their own when the host has one (mapbench/memcg.py),
    before the rest of the object loads outside it, so the cgroup holds those maps alone. Owns
    the object and the cgroup: close it, or use `with`."""

    def __init__(self, spec: KernelSpec, control: bool, config: dict):
        self.spec, self.control, self.config = spec, control, config
        strategy = STRATEGIES[spec.strategy]
        self.plans = () if control else strategy.maps
        self.built = build.compile_object(spec.source, CONTROL_MACRO if control else strategy.macro,
                                          spec.isa, () if control else spec.defines())
        self.cgroup = None
        self.obj = BpfObject(self.built.path)
        try:
            measured = bool(self.plans) and strategy.memory_known
            kind = memcg.flavour() if measured else None
            self.memory_source = (kind.name if kind else memcg.why_not()) if measured else None
            if kind:
                self.cgroup = memcg.MemoryCgroup(kind)
            # Measured here: cgroup v1 is not charged for per-CPU allocations (a 1e5-entry
            # percpu_hash read 1.3 MiB below fdinfo), so per entry, fdinfo is the figure there.
            self.cgroup_per_entry = bool(kind) and not ("percpu" in spec.strategy and kind.name == "cgroup v1")
            self.held = spec.entries  # what the strategy's maps hold: counted from successful writes
            # --op cache: max_entries is --size itself (the capacity asked about), the map starts empty
            # and one producer's draws are fed to an exact LRU of that capacity (mapbench/measure/lru.py)
            cache = spec.op == "cache" and not control
            spare = (lambda plan: 0) if cache else (lambda plan: plan.spare(spec.map_size))
            if cache:
                self.held = 0
            self.ideal = lru.IdealLru(spec.map_size) if cache and spec.producers == 1 else None
            self.evicted = 0  # --op cache: evictions up to the last sample
            cfg = self.obj.map(".rodata").data("struct mb_config")
            for name, value in config.items():
                setattr(cfg, name, value)
            table = (draw_table(spec, config) if spec.family is MEMBERSHIP
                     else prefix_draw_table(spec, config) if spec.source == PREFIX.source else None)
            self.table = table  # the ideal LRU's draws walk it too
            if table is not None:
                self.obj.map("draw_table").set_max_entries(len(table))
            for plan in self.plans:
                m = self.obj.map(plan.name)
                if plan.sized:
                    m.set_max_entries(spec.map_size + spare(plan))
                if plan.configure:
                    plan.configure(m, spec)
            self.capacity = spec.map_size + (spare(self.plans[0]) if self.plans else 0)
            if self.cgroup:
                with self.cgroup.charging():  # a map is charged to the cgroup it is created in, for life
                    for plan in self.plans:
                        self.obj.map(plan.name).create_now()
            self.obj.load()
            if table is not None:
                self.obj.map("draw_table").update_batch(np.arange(len(table), dtype=np.uint32), table, FILL_CHUNK)
            for plan in self.plans:
                if plan.fill:
                    plan.fill(self.obj.map(plan.name), spec, config)
            self.prog = self.obj.program("run")
            roles = spec.source == MEMBERSHIP.source  # run_writer and run_reader: the membership source's
            self.writer = self.obj.program("run_writer") if roles else None
            # calibration's pilots: lookups where the op writes, so that they change no map
            self.reader = self.obj.program("run_reader") if roles or spec.source == PREFIX.source else self.prog
            self.results = self.obj.map("results")
            info = self.prog.info()  # what the verifier and the JIT made of this ISA
            self.sizes = {"prog_xlated_bytes": info["xlated_prog_len"], "prog_jited_bytes": info["jited_prog_len"]}
            self.memory = None if control else strategy.memory_bytes(self)
        except BaseException:
            self.close()
            raise

    def run(self, nr_loops: int, start: int, first: int = 0, nr: int = 0, cpu: int | None = None,
            writer: bool = False, reader: bool = False, producers: int = 0, window_ns: int = 0) -> RunResult:
        """One test run: `nr_loops` draws from `start`, on entries first..first+nr-1 (nr 0: all),
        on `cpu` (None: where this thread is; the newest result is its). `writer`: run_writer;
        `reader`: run_reader (lookups only). `window_ns`: one of `producers` runs that meet at the
        gate (reset_gate), then draw for window_ns, at most nr_loops draws."""
        args = ffi.new("struct mb_run_args *", {"nr_loops": nr_loops, "start": start, "first_entry": first,
                                                "nr_entries": nr, "producers": producers, "window_ns": window_ns})
        program = self.reader if reader else self.writer if writer and not self.control else self.prog
        program.test_run(args, cpu)
        slots = ffi.from_buffer("struct mb_result[]", self.results.lookup(_ZERO))
        if cpu is None:
            cpu = max(range(len(slots)), key=lambda c: slots[c].start_ns)
        r = slots[cpu]
        ideal = None
        if self.ideal is not None and not window_ns:  # the draws this run made, in order, as the kernel saw them
            drawn, _ = keys.draw_indexes(self.config, start, r.loops, self.table, first, nr)
            ideal = self.ideal.access(drawn, insert=not reader)
        return RunResult(r.elapsed_ns, r.ops, r.hits, r.filter_positives, r.checksum, r.value_checksum, r.loops,
                         r.start_ns, cpu, ideal)

    def restore(self, start: int, nr: int) -> None:
        """Put back the prefixes that draws start..start+nr-1 of a prefix-family delete took
        (untimed, between samples), with their values."""
        s = prefix_set_of(self.spec, self.config)
        index = prefixes.write_order(self.spec.entries, self.config["seed"])[
            (start + np.arange(nr, dtype=np.int64)) % self.spec.entries]
        keys = s.keys()[index]
        if self.spec.strategy != "lpm_trie":
            keys = keys[:, 4:]
        self.obj.map("prefixes").update_batch(np.ascontiguousarray(keys), index.astype(np.uint64), FILL_CHUNK)

    def reset_gate(self) -> None:
        """No producer at the gate (bpf/mapbench.h): before every sample of several producers."""
        self.obj.map("gate").update(_ZERO, bytes(8))

    def after_sample(self, runs: list[RunResult]) -> dict:
        """Count what a sample's successful inserts and deletes did to the entries held (an LRU
        map evicts rather than grow past its capacity); then what the strategy's maps hold now:
        entries, fdinfo memlock and the cgroup's usage."""
        if self.control:
            return {}
        ops = [self.spec.op_of(role) for role in self.spec.roles()]
        for op, r in zip(ops, runs):
            self.held += NET_ENTRIES.get(op, 0) * r.hits
        if self.spec.family is PREFIX:  # what its deletes took was put back (restore)
            self.held = self.spec.entries
        self.held = min(max(self.held, 0), self.capacity)
        succeeded = tuple(_succeeded(op, r) for op, r in zip(ops, runs))
        current, peak = self.cgroup.usage() if self.cgroup else (None, None)
        memlock = STRATEGIES[self.spec.strategy].memory_bytes(self) if _writes(self.spec) else self.memory
        # the minimal reference counts no evictions (bpf/minimal.bpf.c): the op alone
        cache = self.cache_counts() if self.spec.op == "cache" and self.spec.implementation == "mapbench" else {}
        return {"succeeded": succeeded, "entries_held": self.held, "memlock": memlock, "memory_current": current,
                "memory_peak": peak, **cache}

    def cache_counts(self) -> dict:
        """--op cache: the kernel's element count after the sample, the evictions during it (inserts
        that succeeded less the growth of the count) and how full the map was at its first eviction."""
        bss = self.obj.map(".bss")
        if bss.value_size != ffi.sizeof("struct mb_lru_counts"):
            raise EnvironmentProblem(f"map .bss holds {bss.value_size} bytes, mapbench reads "
                                     f"{ffi.sizeof('struct mb_lru_counts')}: bpf/membership.bpf.c and "
                                     "engines/kernel.py disagree")
        c = bss.read("struct mb_lru_counts")
        self.held = int(c.entries)
        evicted, self.evicted = self.evicted, int(c.inserted) - int(c.entries)
        return {"entries_held": self.held, "evictions": self.evicted - evicted,
                "first_eviction": int(c.first_eviction) or None}

    def close(self) -> None:
        self.obj.close()
        if self.cgroup is not None:
            self.cgroup.close()
            self.cgroup = None

    def __enter__(self) -> LoadedBuild:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def calibrate(builds: list[LoadedBuild], target_ns: float) -> int:
    """N loops such that a run of the slowest build lasts about target_ns. Per loop, not per
    op: a map-count loop does nr_maps gets. The pilots only read (a build that writes runs its
    lookups instead): an insert or delete pilot would change the map before the first sample,
    so a write sample lasts longer than target_ns by what a write costs over a lookup."""
    n = 4096
    for _ in range(3):  # the first pilot also warms the code and the maps
        slowest = max(b.run(n, 0, reader=True).ns_per_loop for b in builds)
        n = int(min(BPF_LOOP_MAX, max(1024, target_ns / max(slowest, 0.1))))
    return n


def complete_axes(values: dict, side_keys: list[str], host: Host) -> dict:
    """'1..all' producers is 1, 2, 4, ... and every usable CPU. Several producers are measured
    beside one producer in the same loads (a side of its own, first), so that scaling
    efficiency has its baseline from the same run."""
    usable = len(host.cpus)
    producers: list = []
    for p in values.get("producers", [None]):
        steps = [2**i for i in range(usable.bit_length()) if 2**i < usable] + [usable] if p == "1..all" else [p]
        producers += [s for s in steps if s not in producers]
    writers = values.get("writers", [None])
    # a one-producer side needs a one-producer form: none for a churn workload (it would not stay
    # in steady state), nor for a count of writers above one ("all" is one there)
    solo = (not any(_unsteady(op or "lookup", write_op or "update", 1, 1 if w else 0)
                    for op in values.get("ops", [None]) for write_op in values.get("write_ops", [None])
                    for w in writers)
            and not any(isinstance(w, int) and w > 1 for w in writers))
    if "producers" in side_keys and any(p not in (None, 1) for p in producers) and 1 not in producers and solo:
        producers = [1, *producers]
    return {**values, "producers": producers}


def split(sides: list) -> list[list]:
    """Producers on disjoint slices: one comparison per producer count N, whose one-producer sides
    draw from one slice of N (KernelSpec.slice_of). Sides of a strategy whose builds interfere in
    one load (Strategy.alone) get a comparison each, with every other side in it."""
    counts = sorted({s.producers for s in sides if isinstance(s, KernelSpec) and s.overlap == "disjoint"
                     and s.producers > 1})
    return [part for i, n in enumerate(counts or [None]) for part in _alone(_sliced(sides, n, first=i == 0))]


def _sliced(sides: list, n: int | None, first: bool) -> list:
    """The sides of n producers and of one, the membership ones of one on slice 0 of n (None:
    every side as it is). What is not measured goes with the first count only."""
    if n is None:
        return sides
    specs = [s for s in sides if isinstance(s, KernelSpec) and s.producers in (1, n)]
    return ([dataclasses.replace(s, overlap="disjoint", slice_of=n) if s.producers == 1 and s.family is MEMBERSHIP
             else s for s in specs] + [s for s in sides if not isinstance(s, KernelSpec) and first])


def _alone(sides: list) -> list[list]:
    alone = [s for s in sides if isinstance(s, KernelSpec) and STRATEGIES[s.strategy].alone]
    if len(alone) < 2:
        return [sides]
    rest = [s for s in sides if s not in alone]
    return [[*rest, s] for s in alone]


def _sample(b: LoadedBuild, sample: int, nr_loops: int, pools: dict[int, Producers], window_ns: float) -> Sample:
    """One sample of one build, then what its maps hold. One producer: nr_loops draws. Several:
    their runs at once, for one shared window of window_ns, each its own slice of the key
    stream: draws from ((sample + 1) * producers + p) * WINDOW_DRAWS on (draws 0.. were the
    calibration's)."""
    spec = b.spec
    roles, slices = spec.roles(), spec.slices()
    if spec.family is PREFIX and spec.op == "delete":  # each prefix deleted at most once per sample
        nr_loops = min(nr_loops, spec.entries)
    if spec.producers == 1:
        runs = [b.run(nr_loops, (sample + 1) * nr_loops, *slices[0], writer=roles[0] == "writer")]
        if spec.family is PREFIX and spec.op == "delete" and not b.control:
            b.restore((sample + 1) * nr_loops, nr_loops)
    else:
        pool = pools[spec.producers]
        b.reset_gate()
        n = spec.producers
        runs = pool.run([functools.partial(b.run, WINDOW_DRAWS, ((sample + 1) * n + p) * WINDOW_DRAWS, *slices[p],
                                           cpu=pool.cpus[p], writer=roles[p] == "writer", producers=n,
                                           window_ns=int(window_ns))
                         for p in range(spec.producers)])
    return Sample(runs, **b.after_sample(runs))


class Kernel(Engine):
    name, description, axes, sides = NAME, DESCRIPTION, AXES, SIDES
    note = ("kernel engine: ns per map operation inside a BPF program, net of the control build "
            "(same loop and keys, no map operation), in throughput mode (independent ops back to back) or "
            "latency mode (each op waits for the one before), as the title or row says; ops/s from the "
            "gross figure.")
    defaults = DEFAULTS

    def make_spec(self, fields: dict, host: Host) -> KernelSpec | NotMeasured:
        return make_spec(fields, host)

    def complete_axes(self, values: dict, side_keys: list[str], host: Host) -> dict:
        return complete_axes(values, side_keys, host)

    def split(self, sides: list) -> list[list]:
        return split(sides)

    @contextlib.contextmanager
    def session(self, sides, opts: MeasureOptions, host: Host):
        """One thread per CPU for each count of producers the sides have: the measuring CPU first."""
        with ExitStack() as threads:
            yield {n: threads.enter_context(Producers(host.producer_cpus(opts.cpu, n)))
                   for n in sorted({s.producers for s in sides}) if n > 1}

    def open(self, spec: KernelSpec, control: bool, load: int) -> LoadedBuild:
        return LoadedBuild(spec, control, instance_config(spec, load))

    def calibrate(self, builds: list[LoadedBuild], opts: MeasureOptions, calibration):
        """(draws per sample of one producer, window of several producers in ns)."""
        return calibration or (calibrate(builds, opts.target_ms * 1e6), opts.target_ms * 1e6)

    def sample(self, build: LoadedBuild, number: int, calibration, pools) -> Sample:
        nr_loops, window_ns = calibration
        return _sample(build, number, nr_loops, pools, window_ns)

    def control_figures(self, sample: Sample) -> dict[str, list[float]]:
        return {"ns_per_op": [r.ns_per_op for r in sample.runs]}

    def rows(self, build: LoadedBuild, sample: Sample, control: dict[str, float] | None) -> list[dict]:
        return [_row(build, r, sample, producer, role, None if build.control else control["ns_per_op"])
                for producer, (role, r) in enumerate(zip(build.spec.roles(), sample.runs))]


ENGINE = Kernel()


def _row(b: LoadedBuild, r: RunResult, smp: Sample, producer: int, role, control_ns: float | None) -> dict:
    spec = b.spec
    op = spec.op_of(role)
    fp_rate = fp_theory = None
    misses = r.ops - r.hits
    if not b.control and "nr_hash_funcs" in spec.used_fields() and op == "lookup" and misses > 0:
        fp_rate = (r.filter_positives - r.hits) / misses
        fp_theory = bloom_fp_theory(spec.map_size, spec.nr_hash_funcs, spec.entries)
    fields = spec.config_fields()
    if b.control:
        fields.update(strategy="control", value_size=None, nr_hash_funcs=None, calls="inline", restrict="off")
    # A write can fail (insert of a present key, delete of an absent one): its figures are per
    # successful op, the failed ones' time included (docs/method.md, "Writes that fail").
    can_fail = not b.control and op in WRITE_OPS
    succeeded = _succeeded(op, r) if not b.control else r.ops  # a control's hits are none
    status = "ok" if succeeded else "no_success"
    net = r.ns_per_op if b.control else r.ns_per_op - control_ns
    held = smp.entries_held
    memlock = smp.memlock if smp.memlock is not None else b.memory
    return {
        **fields, **b.sizes,
        "object_sha256": b.built.sha256,
        **({"cpu": r.cpu} if spec.producers > 1 else {}),  # else the measuring CPU, the runner's
        "producer": producer, "role": role,
        "op": op, "status": status,
        "message": "" if succeeded else f"no {op} succeeded in this sample",
        "started_ns": r.start_ns, "ended_ns": r.end_ns,  # this producer's window
        "window_overlap": smp.overlap if spec.producers > 1 else None,
        "aggregate_ops_per_s": smp.aggregate_ops_per_s if spec.producers > 1 else None,
        "ops": r.ops, "ops_succeeded": succeeded, "success_rate": succeeded / r.ops if can_fail else None,
        "elapsed_ns": r.elapsed_ns,
        "ns_per_op": net * r.ops / succeeded if succeeded else None,
        "gross_ns_per_op": r.elapsed_ns / succeeded if succeeded else None,
        "control_ns_per_op": control_ns,
        "hits": r.hits,
        "measured_hit_ratio": None if b.control or can_fail else r.hits / r.ops,
        "entries_held": held,
        "map_memory_bytes": memlock,
        "memory_current_bytes": smp.memory_current, "memory_peak_bytes": smp.memory_peak,
        "memory_source": b.memory_source,
        # per entry held after the sample: the cgroup's figure where there is one, fdinfo's beside it
        "bytes_per_entry": (smp.memory_current / held if b.cgroup_per_entry and smp.memory_current and held
                            else None),
        "fdinfo_bytes_per_entry": memlock / held if memlock is not None and held else None,
        "bloom_fp_rate": fp_rate, "bloom_fp_theory": fp_theory,
        "missed_remarks": b.built.missed_remarks_text(), "missed_remarks_total": b.built.missed_remarks_total,
        **(_cache_columns(b, r, smp) if op == "cache" and not b.control else {}),
    }


def _cache_columns(b: LoadedBuild, r: RunResult, smp: Sample) -> dict:
    """--op cache: the hit ratio beside an exact LRU's on the same draws (one producer), the
    evictions of the sample and how full the map was when it first evicted."""
    return {"measured_hit_ratio": r.hits / r.ops,
            "ideal_hit_ratio": r.ideal_hits / r.ops if r.ideal_hits is not None else None,
            "evictions": smp.evictions,
            "first_eviction_entries": smp.first_eviction,
            "first_eviction_share": smp.first_eviction / b.spec.map_size if smp.first_eviction else None}
