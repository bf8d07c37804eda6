"""The syscall engine: what map operations cost from user space (docs/method.md, "Syscall engine").

Per-element bpf_map_{lookup,update,delete}_elem and the BPF_MAP_*_BATCH commands, over map
types, sizes and batch sizes. The loops are _native.c's table (libbpf.SYSCALL_OPS), timed in
native code; buffers are numpy arrays allocated and touched once per side, passed without a
copy. A figure is nanoseconds per element. What the kernel refuses for a map type and op
(probed once on a small map) is an `unsupported` row; any other failure is an error.
"""

from __future__ import annotations

import errno as errno_codes
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mapbench.binding.libbpf import SYSCALL_OPS, BpfObject, Map, MapOps, OuterMap, SyscallOp, pidfd_open
from mapbench.errors import BadInput, KernelRefused
from mapbench.measure import build, keys
from mapbench.measure.engine import Axis, Engine, Host, MeasureOptions, NotMeasured, Spec
from mapbench.measure.values import (
    check_fixed_size,
    parse_choice,
    parse_fill,
    parse_key_size,
    parse_size,
    parse_value_size,
    parse_whole_number,
)

NAME = "syscall"
DESCRIPTION = "map operations from user space: one syscall per element, or BPF_MAP_*_BATCH"
MAX_BATCH = 2**32 - 1  # the count is a u32
ENOTSUPP = 524  # the kernel's internal "not supported", which batch ops leak to user space
# What a kernel answers for an op a map type does not have. Only the probe reads these.
REFUSALS = {errno_codes.EINVAL, errno_codes.EOPNOTSUPP, ENOTSUPP}
LRU_LOCAL_FREE = 128  # the kernel's LOCAL_FREE_TARGET (kernel/bpf/bpf_lru_list.h)
KEY_MULT, KEY_SALT = 0x9E3779B1, 0x5BD1E995  # key(i) = i * KEY_MULT ^ KEY_SALT, as the C reference
DRIVERS = sorted({driver for driver, _ in SYSCALL_OPS})
OPS = sorted({op for _, op in SYSCALL_OPS})


@dataclass(frozen=True)
class MapType:
    """What the engine needs to know of a map type to create, fill and measure it."""

    name: str
    value_size: int  # bytes of one value (per CPU for per-CPU maps)
    keyed: bool = True  # False: a bloom filter, whose value is the element
    index_keys: bool = False  # keys are entry numbers (arrays)
    fixed_size: int | None = None  # measured on mapbench's own task only
    btf_map: tuple[str, str, str] | None = None  # (source, macro, map): needs BTF, so from an object
    spare: Callable[[int], int] = lambda n: 0  # max_entries beyond the entries held
    inner: bool = False  # a map of maps: its values are inner map fds, its one op replace_inner
    default_size: int = 1000

    @property
    def memory_known(self) -> bool:
        return self.btf_map is None  # task storage's fdinfo memlock is a constant 480 B

    @property
    def shaped(self) -> set[str]:
        """The shape axes (--key-size, --value-size, --fill) this type takes."""
        if not self.keyed or self.btf_map or self.inner:
            return set()
        return {"value_size"} if self.index_keys else {"key_size", "value_size", "fill"}


MAP_TYPES = {m.name: m for m in (
    MapType("hash", 8),
    # An LRU hash can evict before it is full: each CPU keeps a local list of free nodes, so one
    # CPU filling the map may find none while others hold some. Room for those lists keeps all.
    MapType("lru_hash", 8, spare=lambda n: LRU_LOCAL_FREE * (os.cpu_count() or 1) * 2),
    MapType("percpu_hash", 8),
    MapType("array", 8, index_keys=True),
    MapType("bloom_filter", 4, keyed=False),
    MapType("task_storage", 16, fixed_size=1, btf_map=("taskstate.bpf.c", "MB_TASK_STORAGE", "states")),
    # replace_inner waits for an RCU grace period per update (docs/method.md, "Map in map"): a few entries
    MapType("hash_of_maps", 4, inner=True, default_size=8),
    MapType("array_of_maps", 4, index_keys=True, inner=True, default_size=8),
)}
INNER_OP = "replace_inner"


def _batch_size(text) -> int:
    value = parse_whole_number(text, "--batch-size")
    if not 1 <= value <= MAX_BATCH:
        raise BadInput(f"--batch-size {text!r} is outside 1..{MAX_BATCH}")
    return value


AXES = (
    Axis("maps", "--map", "map_type", lambda t: parse_choice(t, "--map", MAP_TYPES), default=("hash",),
         help="map type: " + ", ".join(MAP_TYPES)),
    Axis("sizes", "--size", "map_size", parse_size),
    Axis("ops", "--op", "op", lambda t: parse_choice(t, "--op", OPS), default=("lookup",)),
    Axis("drivers", "--driver", "driver", lambda t: parse_choice(t, "--driver", DRIVERS),
         default=("elem", "batch"), help="elem: one syscall per element; batch: BPF_MAP_*_BATCH"),
    Axis("batch_sizes", "--batch-size", "batch_size", _batch_size, default=(1000,),
         help="entries per batch call"),
    Axis("key_sizes", "--key-size", "key_size", parse_key_size, help="hash types: bytes of a key"),
    Axis("value_sizes", "--value-size", "value_size", parse_value_size, help="hash types and arrays: bytes of a value"),
    Axis("fills", "--fill", "fill", parse_fill, help="hash types: entries present as a share of --size"),
)
SIDES = ("maps", "drivers", "batch_sizes")
DEFAULTS = MeasureOptions(samples=5, instances=2, warmup=1, target_ms=20.0)


@dataclass(frozen=True)
class SyscallSpec(Spec):
    map_type: str
    driver: str
    op: str
    map_size: int | None = None
    batch_size: int | None = None
    key_size: int = 4
    value_size: int | None = None  # default: the type's
    fill: float = 1.0

    def __post_init__(self):
        m = MAP_TYPES.get(self.map_type)
        if m is None:
            raise BadInput(f"--map {self.map_type!r} is not a map type of the syscall engine: "
                           f"choose one of {', '.join(MAP_TYPES)}")
        if (self.driver, self.op) not in SYSCALL_OPS:
            raise BadInput(f"--op {self.op!r} is not a {self.driver} op: it has "
                           f"{', '.join(op for d, op in SYSCALL_OPS if d == self.driver)}")
        if self.driver == "batch":
            _batch_size(self.batch_size if self.batch_size is not None else 0)
        elif self.batch_size is not None:
            raise BadInput("--batch-size applies to --driver batch only")
        if self.map_size is None:
            object.__setattr__(self, "map_size", m.fixed_size or m.default_size)
        check_fixed_size(self.map_type, m.fixed_size, self.map_size,
                         "is keyed by pidfd from user space, and mapbench measures it on its own task")
        if not 1 <= self.map_size <= 2**31:
            raise BadInput(f"--size {self.map_size} is outside 1..{2**31}")
        # what a type does not take is normalised, so that equal work is one spec
        for name, default in (("key_size", 4), ("value_size", m.value_size), ("fill", 1.0)):
            if name not in m.shaped or getattr(self, name) is None:
                object.__setattr__(self, name, default)
        parse_key_size(self.key_size)
        parse_fill(self.fill)
        if "value_size" in m.shaped:
            parse_value_size(self.value_size)

    @property
    def entries(self) -> int:
        return max(1, round(self.fill * self.map_size))

    @property
    def syscall_op(self) -> SyscallOp:
        return SYSCALL_OPS[self.driver, self.op]

    def used_fields(self) -> set[str]:
        used = {"map_type", "driver", "op"} | ({"batch_size"} if self.driver == "batch" else set())
        used |= MAP_TYPES[self.map_type].shaped
        return used | ({"map_size"} if MAP_TYPES[self.map_type].fixed_size is None else set())

    def control_key(self) -> tuple | None:
        """replace_inner has a control: the same loop updating a plain u32 array (SyscallSide)."""
        return (INNER_OP, self.entries) if self.op == INNER_OP else None

    def config_fields(self) -> dict:
        return {"engine": NAME, "family": NAME, "strategy": self.map_type, "op": self.op,
                "driver": self.driver, "map_size": self.map_size, "batch_size": self.batch_size,
                "value_size": self.value_size, "key_size": self.key_size, "fill": float(self.fill),
                "entries": self.entries, "hit_ratio": 1.0, "key_distribution": "all"}


def make_spec(fields: dict):
    driver, op = fields.get("driver"), fields.get("op")
    if (driver, op) not in SYSCALL_OPS:  # e.g. elem x lookup_and_delete: no such operation
        return NotMeasured((), "")
    m = MAP_TYPES.get(fields.get("map_type"))
    if m is not None and m.inner != (op == INNER_OP):
        reason = (f"{m.name} holds inner maps: its op here is {INNER_OP}" if m.inner
                  else f"{INNER_OP} applies to hash_of_maps and array_of_maps, not {m.name}")
        return NotMeasured((("engine", NAME), ("family", NAME), ("strategy", m.name), ("op", op),
                            ("driver", driver), ("map_size", fields.get("map_size"))), reason)
    fields = {**fields, "batch_size": fields.get("batch_size") if driver == "batch" else None}
    if m is not None and m.fixed_size is not None:
        fields["map_size"] = m.fixed_size
    return SyscallSpec(**fields)


class SyscallSide:
    """The map under test for one spec, filled, with its buffers; owns its fds."""

    def __init__(self, spec: SyscallSpec, control: bool = False):
        self.spec, self.type = spec, MAP_TYPES[spec.map_type]
        self.op = spec.syscall_op
        self.control = control
        self._obj: BpfObject | None = None
        self._pidfd: int | None = None
        self._inner: list[Map] = []
        n = spec.entries
        try:
            if self.type.inner:
                self._open_inner(control)
            elif self.type.btf_map:
                source, macro, name = self.type.btf_map
                self._obj = BpfObject(build.compile_object(source, macro).path)
                for program in self._obj.programs():
                    program.set_autoload(False)  # the map is all we want of the object
                self._obj.load()
                self.map: MapOps = self._obj.map(name)
                self._pidfd = pidfd_open(os.getpid())
                self.keys = np.array([self._pidfd], dtype=np.int32)
            else:
                size = spec.map_size
                self.map = Map(self.type.name, spec.key_size if self.type.keyed else 0, spec.value_size,
                               size + self.type.spare(size))
                index = np.arange(n, dtype=np.uint64)
                self.keys = (index.astype(np.uint32) if self.type.index_keys
                             else keys.key_words(keys.member_keys(index, KEY_MULT, KEY_SALT), spec.key_size // 4))
                if not self.type.keyed:
                    self.keys = self.keys.ravel()
            words = self.map.elem_value_bytes // 8 or 1
            self.values = (self._replacements() if self.type.inner
                           else np.random.default_rng(n).integers(0, 2**63, size=(n, words), dtype=np.uint64))
            if not self.type.keyed:  # the bloom filter's elements are the keys, as u32
                self.values, self.keys = self.keys, None
            self.capacity = getattr(self.map, "max_entries", n)
            # Out buffers for lookups, written once here so that no page is touched for the first
            # time inside a timed pass; one slot more than the map holds, for a walk's last call.
            self.out_keys = np.empty((self.capacity + 1) * max(self.map.key_size, 1), np.uint8)
            self.out_values = np.empty((self.capacity + 1) * self.map.elem_value_bytes, np.uint8)
            self.out_keys.fill(1)
            self.out_values.fill(1)
            if not self.type.keyed:  # a bloom lookup reads its element from the value buffer
                self.out_values[: self.values.nbytes] = self.values.view(np.uint8).ravel()
            self.refill()
            self.memory = self.map.memlock_bytes() if self.type.memory_known else None
        except BaseException:
            self.close()
            raise

    def _open_inner(self, control: bool) -> None:
        """replace_inner: an outer map of n slots and n + 1 empty inner hashes, whose fds we keep
        so that a replaced one is never freed inside the timing; each pass puts in every
        slot another inner map than it holds. Control: a plain array of u32 values given the same
        numbers by the same loop: the same syscall, no map-in-map."""
        n = self.spec.entries
        self.keys = np.arange(n, dtype=np.uint32)
        self.passes = 0
        if control:
            self.map = Map("array", 4, 4, n, name="mb_inner_ctl")
            self.pool = np.arange(n + 1, dtype=np.uint32)
            return
        self._inner = [Map("hash", 4, 8, 1, name=f"mb_inner{i}") for i in range(n + 1)]
        self.map = OuterMap(self.type.name, n, self._inner[0])
        self.pool = np.array([m.fd for m in self._inner], dtype=np.uint32)

    def _replacements(self) -> np.ndarray:
        """The values of the next pass: slot i gets pool[(i + pass) % (n + 1)], another inner
        map than the pass before gave it."""
        n = self.spec.entries
        values = np.ascontiguousarray(self.pool[(np.arange(n) + self.passes) % (n + 1)])
        self.passes += 1
        return values

    def refill(self) -> None:
        """Put every entry back (untimed)."""
        if self.type.inner:
            self.map.run(SYSCALL_OPS["elem", "update"], self.spec.entries, self.keys, self.values)
        elif self.keys is None:
            self.map.push_all(self.values)
        elif self.type.btf_map:
            self.map.update(self.keys.tobytes(), self.values.tobytes())
        else:
            self.map.update_batch(self.keys, self.values)

    def run_once(self, reps: int) -> tuple[int, int, int]:
        """One sample: `reps` passes of the op over every entry; only the op is timed.
        Returns (elements, elapsed ns, walk retries)."""
        spec, n = self.spec, self.spec.entries
        elements = elapsed = retries = 0
        for _ in range(reps):
            if self.type.inner:
                self.values = self._replacements()
            t = self.map.run(self.op, self.capacity + 1 if self.op.walks else n, self.keys, self.values,
                             self.out_keys, self.out_values, spec.batch_size or 1)
            if t.done - t.missing != n:
                raise KernelRefused(f"{spec.driver} {spec.op} of {spec.map_type} handled {t.done - t.missing} "
                                    f"of {n} entries")
            elements, elapsed, retries = elements + n, elapsed + t.elapsed_ns, retries + t.retries
            if self.op.empties:
                self.refill()
        return elements, elapsed, retries

    def close(self) -> None:
        if isinstance(getattr(self, "map", None), (Map, OuterMap)):
            self.map.close()
        for inner in getattr(self, "_inner", []):
            inner.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def __enter__(self) -> SyscallSide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@functools.cache
def refusal(map_type: str, driver: str, op: str) -> str | None:
    """Whether the kernel refuses this op on this map type: tried once on a small map. The
    kernel's answer (EINVAL, EOPNOTSUPP, ENOTSUPP) is the reason; None when it works."""
    small = 1 if MAP_TYPES[map_type].fixed_size else 8
    try:
        with SyscallSide(SyscallSpec(map_type, driver, op, small, 4 if driver == "batch" else None)) as side:
            side.run_once(1)
    except KernelRefused as exc:
        if exc.errno in REFUSALS:
            return str(exc)
        raise
    return None


def calibrate(side: SyscallSide, target_ns: float) -> int:
    """Passes per sample so that a sample lasts about target_ns (at least one pass)."""
    _, elapsed, _ = side.run_once(1)
    return max(1, min(10_000, round(target_ns / max(elapsed, 1))))


class Syscall(Engine):
    name, description, axes, sides = NAME, DESCRIPTION, AXES, SIDES
    note = "syscall engine: ns per element, timed in native code around the syscalls."
    defaults = DEFAULTS

    def make_spec(self, fields: dict, host: Host) -> SyscallSpec | NotMeasured:
        return make_spec(fields)

    def refusal(self, spec: SyscallSpec) -> str | None:
        return refusal(spec.map_type, spec.driver, spec.op)

    def open(self, spec: SyscallSpec, control: bool, load: int) -> SyscallSide:
        return SyscallSide(spec, control)

    def calibrate(self, sides: list[SyscallSide], opts: MeasureOptions, calibration) -> dict:
        """Passes per sample of each side, found on the first load."""
        return calibration or {(side.spec, side.control): calibrate(side, opts.target_ms * 1e6) for side in sides}

    def sample(self, side: SyscallSide, number: int, calibration: dict, session) -> tuple[int, int, int, int]:
        passes = calibration[side.spec, side.control]  # a control shares its side's spec
        return (*side.run_once(passes), passes)

    def control_figures(self, sample) -> dict[str, list[float]]:
        elements, elapsed, _, _ = sample
        return {"ns_per_op": [elapsed / elements]}

    def rows(self, side: SyscallSide, sample, control) -> list[dict]:
        """ns per element; replace_inner's net of its control (a plain u32 array's update)."""
        elements, elapsed, retries, passes = sample
        gross = elapsed / elements
        control_ns = control["ns_per_op"] if control else None
        fields = {**side.spec.config_fields(), **({"strategy": "control"} if side.control else {})}
        return [{**fields, "ops": elements, "elapsed_ns": elapsed,
                 "ns_per_op": gross - control_ns if control_ns is not None else gross, "gross_ns_per_op": gross,
                 "control_ns_per_op": control_ns, "retries": retries, "passes": passes,
                 "map_memory_bytes": side.memory}]


ENGINE = Syscall()
