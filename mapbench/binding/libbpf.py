"""Thin object layer over the cffi libbpf binding.

Every fd-owning thing is a context manager: `BpfObject` owns its maps and programs (libbpf
closes them with the object), `BpfLink` owns an attachment, `run_stats()` owns the
BPF_ENABLE_STATS fd. Failures raise `KernelRefused` with the kernel's errno and libbpf's
log (verifier output included).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mapbench.binding._libbpf import ffi, lib
from mapbench.errors import EnvironmentProblem, KernelRefused, MissingPrivilege

lib.mb_log_capture()

BPF_MAP_TYPE = {
    "hash": 1,
    "array": 2,
    "percpu_hash": 5,
    "percpu_array": 6,
    "lru_hash": 9,
    "lru_percpu_hash": 10,
    "task_storage": 29,
    "bloom_filter": 30,
    "lpm_trie": 11,
}


# include/uapi/linux/btf.h, BTF_KIND_*
BTF_KINDS = {1: "int", 2: "ptr", 3: "array", 4: "struct", 5: "union", 6: "enum", 7: "fwd", 19: "enum64"}
PERCPU_TYPES = {BPF_MAP_TYPE[t] for t in BPF_MAP_TYPE if "percpu" in t}
BPF_F_NO_PREALLOC = 1  # include/uapi/linux/bpf.h
BPF_F_NO_COMMON_LRU = 2  # include/uapi/linux/bpf.h: an LRU hash with a list per CPU


CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39


def bpf_privileged() -> bool:
    """Whether this process may load tracing BPF programs: CAP_BPF with CAP_PERFMON, or
    CAP_SYS_ADMIN. Capabilities, not the uid: root without them cannot, and a process with
    them can whatever its uid."""
    caps = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            caps = int(line.split()[1], 16)
    has = lambda cap: bool(caps >> cap & 1)  # noqa: E731
    return has(CAP_SYS_ADMIN) or (has(CAP_BPF) and has(CAP_PERFMON))


def require_bpf_privilege() -> None:
    if not bpf_privileged():
        raise MissingPrivilege("mapbench loads BPF programs: run as root (it needs CAP_BPF and "
                               f"CAP_PERFMON, or CAP_SYS_ADMIN; euid is {os.geteuid()})")


def take_log() -> str:
    """libbpf's warnings and the verifier log captured since the last call."""
    buf = ffi.new("char[]", 1 << 16)
    n = lib.mb_log_take(buf, len(buf))
    return ffi.string(buf, n).decode(errors="replace")


def raise_for(rc: int, what: str) -> None:
    """libbpf 1.x returns -errno on failure; turn it into a typed error naming the step."""
    if rc >= 0:
        return
    err = -rc
    log = take_log().strip()
    # 524 is the kernel's internal ENOTSUPP, which some map ops leak to user space
    reason = "not supported (ENOTSUPP)" if err == 524 else os.strerror(err)
    message = f"{what}: {reason} (errno {err})"
    if err == 1 and not bpf_privileged():  # EPERM
        raise MissingPrivilege(f"{message}; run as root (BPF needs CAP_BPF and CAP_PERFMON)")
    raise KernelRefused(message, errno=err, log=log)


def possible_cpus() -> int:
    n = lib.libbpf_num_possible_cpus()
    raise_for(n, "counting possible CPUs")
    return n


def probe_map_type(name: str) -> bool:
    return lib.libbpf_probe_bpf_map_type(BPF_MAP_TYPE[name], ffi.NULL) == 1


def fdinfo(fd: int) -> dict[str, str]:
    """The kernel's /proc fdinfo fields for a BPF fd (memlock, map_type, ...)."""
    fields = {}
    for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


class MapOps:
    """Element and batch operations on a map fd. Keys and values are numpy arrays (or any
    contiguous buffer), passed to the native loops without a copy. Per-CPU maps hold
    `ncpu` values of value_size (rounded to 8) per element."""

    fd: int
    name: str
    key_size: int
    value_size: int
    percpu: bool = False

    @property
    def elem_value_bytes(self) -> int:
        """Bytes of one element's value as user space reads and writes it."""
        if self.percpu:
            return ((self.value_size + 7) // 8 * 8) * possible_cpus()
        return self.value_size

    def memlock_bytes(self) -> int | None:
        """Memory the kernel charges for the map (fdinfo memlock)."""
        value = fdinfo(self.fd).get("memlock")
        return int(value) if value is not None else None

    def lookup(self, key: bytes | None) -> bytes | None:
        out = ffi.new("char[]", self.elem_value_bytes)
        rc = lib.bpf_map_lookup_elem(self.fd, _ptr_or_null(key), out)
        if rc == -2:  # ENOENT
            return None
        raise_for(rc, f"looking up in map {self.name}")
        return ffi.buffer(out)[:]

    def update(self, key: bytes | None, value: bytes, flags: int = 0) -> None:
        raise_for(lib.bpf_map_update_elem(self.fd, _ptr_or_null(key), value, flags),
                  f"updating map {self.name}")

    def delete(self, key: bytes) -> bool:
        """Delete one element; False when it was absent."""
        rc = lib.bpf_map_delete_elem(self.fd, key)
        if rc == -2:
            return False
        raise_for(rc, f"deleting from map {self.name}")
        return True

    def run(self, op: SyscallOp, n: int, keys=None, values=None, out_keys=None, out_values=None,
            batch: int = 1, flags: int = 0) -> Timing:
        """One timed pass of a native syscall loop (_native.c) over n elements; buffers are numpy
        arrays (or any contiguous buffer) passed without a copy. Walks write up to n entries
        into out_keys/out_values. Failures other than an absent key raise KernelRefused."""
        io = ffi.new("struct mb_io *")
        io.fd, io.n, io.batch, io.flags = self.fd, n, min(batch, 2**32 - 1), flags
        io.key_size, io.value_size = self.key_size, self.elem_value_bytes
        keep = [ffi.from_buffer(b) if b is not None else ffi.NULL
                for b in (keys, values, out_keys, out_values)]
        io.keys, io.values, io.out_keys, io.out_values = keep
        rc = lib.mb_syscall_run(op.index, io)
        raise_for(rc, f"{op.driver} {op.op} of map {self.name} ({io.done} of {n} done)")
        return Timing(io.elapsed_ns, io.done, io.missing, io.calls, io.retries)

    def update_batch(self, keys, values, batch: int = 1 << 16) -> Timing:
        """Fill: BPF_MAP_UPDATE_BATCH over every key, `batch` per call."""
        return self.run(SYSCALL_OPS["batch", "update"], len(keys), keys, values, batch=batch)

    def push_all(self, elements) -> Timing:
        """Fill a map without keys (bloom filter): one update per element, NULL key."""
        return self.run(SYSCALL_OPS["elem", "update"], len(elements), values=elements)


@dataclass(frozen=True)
class SyscallOp:
    """An entry of _native.c's table of syscall loops."""

    index: int
    driver: str
    op: str
    empties: bool  # leaves the map empty: refilled, untimed, after each pass
    walks: bool  # finds the entries itself, into the out buffers


@dataclass(frozen=True)
class Timing:
    elapsed_ns: int
    done: int  # elements processed (walks: entries found)
    missing: int  # single lookups and deletes that found no entry
    calls: int
    retries: int  # walks: calls retried with a larger count after ENOSPC


def _syscall_ops() -> dict[tuple[str, str], SyscallOp]:
    ops, i = {}, 0
    while (entry := lib.mb_syscall_op(i)) != ffi.NULL:
        driver, op = ffi.string(entry.driver).decode(), ffi.string(entry.op).decode()
        ops[driver, op] = SyscallOp(i, driver, op, bool(entry.empties), bool(entry.walks))
        i += 1
    return ops


SYSCALL_OPS = _syscall_ops()  # (driver, op) -> the native loop: the one list of syscall ops


class BpfMap(MapOps):
    """A map of an open object; the object owns its fd."""

    def __init__(self, ptr, owner: BpfObject):
        self._ptr = ptr
        self._owner = owner  # keeps the object (and so the fd) alive

    @property
    def name(self) -> str:
        return ffi.string(lib.bpf_map__name(self._ptr)).decode()

    @property
    def fd(self) -> int:
        return lib.bpf_map__fd(self._ptr)

    @property
    def max_entries(self) -> int:
        return lib.bpf_map__max_entries(self._ptr)

    @property
    def map_type(self) -> int:
        return lib.bpf_map__type(self._ptr)

    @property
    def key_size(self) -> int:
        return lib.bpf_map__key_size(self._ptr)

    @property
    def value_size(self) -> int:
        return lib.bpf_map__value_size(self._ptr)

    def create_now(self) -> None:
        """Create the map now, as the load would (its type, sizes, flags and map_extra), and have
        the load use it: so a memory cgroup the caller is in is charged for this map alone, not
        for the object's other maps and programs. BTF types are not passed: only for maps that
        need none."""
        opts = ffi.new("struct bpf_map_create_opts *")
        opts.sz = ffi.sizeof("struct bpf_map_create_opts")
        opts.map_flags = lib.bpf_map__map_flags(self._ptr)
        opts.map_extra = lib.bpf_map__map_extra(self._ptr)
        take_log()
        fd = lib.bpf_map_create(self.map_type, self.name.encode()[:15], self.key_size, self.value_size,
                                self.max_entries, opts)
        raise_for(fd, f"creating map {self.name} before load")
        try:
            raise_for(lib.bpf_map__reuse_fd(self._ptr, fd), f"handing map {self.name} to the load")
        finally:
            os.close(fd)  # the object keeps a duplicate

    def key_type(self) -> tuple[str, int] | None:
        """The map's key type from the object's BTF, typedefs and modifiers resolved: (kind,
        name), kind one of int, enum, struct, union, array, ...; None for a map without BTF
        key type (defined by key_size alone)."""
        btf = lib.bpf_object__btf(self._owner._live())
        type_id = lib.bpf_map__btf_key_type_id(self._ptr)
        if btf == ffi.NULL or type_id == 0:
            return None
        resolved = lib.btf__resolve_type(btf, type_id)
        if resolved < 0:
            return None
        t = lib.btf__type_by_id(btf, resolved)
        kind = BTF_KINDS.get((t.info >> 24) & 0x1F, "other")
        return kind, ffi.string(lib.btf__name_by_offset(btf, t.name_off)).decode()

    def set_max_entries(self, n: int) -> None:
        raise_for(lib.bpf_map__set_max_entries(self._ptr, n), f"sizing map {self.name} to {n}")

    def set_key_size(self, size: int) -> None:
        raise_for(lib.bpf_map__set_key_size(self._ptr, size), f"setting key size of {self.name}")

    def set_value_size(self, size: int) -> None:
        raise_for(lib.bpf_map__set_value_size(self._ptr, size), f"setting value size of {self.name}")

    def set_map_extra(self, extra: int) -> None:
        raise_for(lib.bpf_map__set_map_extra(self._ptr, extra), f"setting map_extra of {self.name}")

    def set_type(self, map_type: str) -> None:
        raise_for(lib.bpf_map__set_type(self._ptr, BPF_MAP_TYPE[map_type]), f"setting the type of {self.name}")

    def set_map_flags(self, flags: int) -> None:
        raise_for(lib.bpf_map__set_map_flags(self._ptr, flags), f"setting the flags of {self.name}")

    @property
    def percpu(self) -> bool:
        return self.map_type in PERCPU_TYPES

    def data(self, ctype: str):
        """The editable image of a global-data map (.rodata, .bss) as `ctype *`, before
        load. libbpf 1.1 re-maps it onto the kernel map only for skeletons, so after load
        read the kernel's copy with `read(ctype)`."""
        size = ffi.new("size_t *")
        ptr = lib.bpf_map__initial_value(self._ptr, size)
        if ptr == ffi.NULL or size[0] < ffi.sizeof(ctype):
            raise KernelRefused(f"map {self.name} has no data image of {ctype}")
        return ffi.cast(f"{ctype} *", ptr)

    def read(self, ctype: str):
        """A global-data map's current kernel value (key 0) as a fresh `ctype` struct."""
        out = ffi.new(f"{ctype} *")
        key = ffi.new("__u32 *", 0)
        raise_for(lib.bpf_map_lookup_elem(self.fd, key, out), f"reading map {self.name}")
        return out


class Map(MapOps):
    """A map created directly with BPF_MAP_CREATE; owns its fd. Close it, or use `with`."""

    def __init__(self, map_type: str, key_size: int, value_size: int, max_entries: int,
                 map_flags: int = 0, map_extra: int = 0, name: str = "mapbench"):
        opts = ffi.new("struct bpf_map_create_opts *")
        opts.sz = ffi.sizeof("struct bpf_map_create_opts")
        opts.map_flags = map_flags
        opts.map_extra = map_extra
        take_log()
        fd = lib.bpf_map_create(BPF_MAP_TYPE[map_type], name.encode()[:15], key_size, value_size,
                                max_entries, opts)
        raise_for(fd, f"creating a {map_type} map of {max_entries} entries")
        self.fd = fd
        self.name = name
        self.map_type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.percpu = "percpu" in map_type

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Map:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        self.close()


def _ptr_or_null(data):
    return ffi.NULL if data is None else ffi.from_buffer(data)


class BpfProgram:
    """A program of an open object; the object owns its fd."""

    def __init__(self, ptr, owner: BpfObject):
        self._ptr = ptr
        self._owner = owner

    @property
    def name(self) -> str:
        return ffi.string(lib.bpf_program__name(self._ptr)).decode()

    @property
    def fd(self) -> int:
        return lib.bpf_program__fd(self._ptr)

    def set_autoload(self, autoload: bool) -> None:
        raise_for(lib.bpf_program__set_autoload(self._ptr, autoload), f"setting autoload of {self.name}")

    def test_run(self, ctx=None, cpu: int | None = None) -> int:
        """BPF_PROG_TEST_RUN once (raw_tp rejects `repeat`); `ctx` is the args buffer. `cpu`:
        run there (BPF_F_TEST_RUN_ON_CPU); from a thread pinned to that CPU it runs in place."""
        opts = ffi.new("struct bpf_test_run_opts *")
        opts.sz = ffi.sizeof("struct bpf_test_run_opts")
        if cpu is not None:
            opts.flags, opts.cpu = lib.BPF_F_TEST_RUN_ON_CPU, cpu
        if ctx is not None:
            opts.ctx_in = ctx
            opts.ctx_size_in = ffi.sizeof(ctx[0]) if isinstance(ctx, ffi.CData) else len(ctx)
        raise_for(lib.bpf_prog_test_run_opts(self.fd, opts), f"test run of {self.name}")
        return opts.retval

    @property
    def section(self) -> str:
        return ffi.string(lib.bpf_program__section_name(self._ptr)).decode()

    @property
    def type_name(self) -> str:
        """libbpf's name of the program type: xdp, sched_cls, raw_tracepoint, tracing, ..."""
        name = lib.libbpf_bpf_prog_type_str(lib.bpf_program__type(self._ptr))
        return ffi.string(name).decode() if name != ffi.NULL else "unknown"

    def test_run_repeat(self, data: bytes | None, ctx: bytes | None, repeat: int) -> tuple[int, int]:
        """BPF_PROG_TEST_RUN of `repeat` runs over one packet (`data`) and/or context, for the
        types that take `repeat` (xdp, tc, socket filter, flow dissector, ...): (retval, the
        kernel's ns per run, which it rounds down). The packet comes back out into a buffer of
        its size plus room for a program that grows it."""
        opts = ffi.new("struct bpf_test_run_opts *")
        opts.sz = ffi.sizeof("struct bpf_test_run_opts")
        opts.repeat = repeat
        keep = []
        if data is not None:
            out = ffi.new("char[]", len(data) + 4096)
            keep += [data, out]
            opts.data_in, opts.data_size_in = ffi.from_buffer(data), len(data)
            opts.data_out, opts.data_size_out = out, len(out)
        if ctx is not None:
            keep.append(ctx)
            opts.ctx_in, opts.ctx_size_in = ffi.from_buffer(ctx), len(ctx)
        raise_for(lib.bpf_prog_test_run_opts(self.fd, opts), f"test run of {self.name}")
        return opts.retval, opts.duration

    def info(self) -> dict[str, int]:
        """Program info: sizes after the verifier and the JIT, and run stats."""
        info = ffi.new("struct bpf_prog_info *")
        size = ffi.new("__u32 *", ffi.sizeof("struct bpf_prog_info"))
        raise_for(lib.bpf_obj_get_info_by_fd(self.fd, info, size), f"reading info of {self.name}")
        return {
            "id": info.id,
            "jited_prog_len": info.jited_prog_len,
            "xlated_prog_len": info.xlated_prog_len,
            "verified_insns": info.verified_insns,
            "run_time_ns": info.run_time_ns,
            "run_cnt": info.run_cnt,
        }

    def attach(self) -> BpfLink:
        ptr = lib.bpf_program__attach(self._ptr)
        if ptr == ffi.NULL:
            raise_for(-ffi.errno or -1, f"attaching {self.name}")
        return BpfLink(ptr)


class BpfLink:
    """An attachment; detached on close."""

    def __init__(self, ptr):
        self._ptr = ptr

    def close(self) -> None:
        if self._ptr is not None:
            lib.bpf_link__destroy(self._ptr)
            self._ptr = None

    def __enter__(self) -> BpfLink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BpfObject:
    """An opened (then loaded) BPF object file. Close it, or use it in a `with` block."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        take_log()
        ptr = lib.bpf_object__open_file(str(self.path).encode(), ffi.NULL)
        if ptr == ffi.NULL:
            raise_for(-ffi.errno or -1, f"opening {self.path}")
        self._ptr = ptr

    def _live(self):
        if self._ptr is None:
            raise KernelRefused(f"BPF object {self.path.name} is closed")
        return self._ptr

    def map(self, name: str) -> BpfMap:
        ptr = lib.bpf_object__find_map_by_name(self._live(), name.encode())
        if ptr == ffi.NULL:
            raise KeyError(f"no map {name!r} in {self.path.name}")
        return BpfMap(ptr, self)

    def maps(self) -> list[BpfMap]:
        out, ptr = [], ffi.NULL
        while (ptr := lib.bpf_object__next_map(self._live(), ptr)) != ffi.NULL:
            out.append(BpfMap(ptr, self))
        return out

    def program(self, name: str) -> BpfProgram:
        ptr = lib.bpf_object__find_program_by_name(self._live(), name.encode())
        if ptr == ffi.NULL:
            raise KeyError(f"no program {name!r} in {self.path.name}")
        return BpfProgram(ptr, self)

    def programs(self) -> list[BpfProgram]:
        out, ptr = [], ffi.NULL
        while (ptr := lib.bpf_object__next_program(self._live(), ptr)) != ffi.NULL:
            out.append(BpfProgram(ptr, self))
        return out

    def load(self) -> None:
        take_log()
        raise_for(lib.bpf_object__load(self._live()), f"loading {self.path.name}")

    def close(self) -> None:
        if self._ptr is not None:
            lib.bpf_object__close(self._ptr)
            self._ptr = None

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # a last resort; `with` or close() is the normal path
        self.close()


def run_stats_of(programs: list[BpfProgram]) -> tuple[int, int]:
    """run_time_ns and run_cnt summed over these programs (counted while run stats are on)."""
    infos = [p.info() for p in programs]
    return sum(i["run_time_ns"] for i in infos), sum(i["run_cnt"] for i in infos)


def program_sizes(infos: list[dict[str, int]]) -> dict[str, int]:
    """Programs' code after the verifier and after the JIT (BpfProgram.info()s), summed: a result
    row's two columns."""
    return {"prog_xlated_bytes": sum(i["xlated_prog_len"] for i in infos),
            "prog_jited_bytes": sum(i["jited_prog_len"] for i in infos)}


@contextlib.contextmanager
def run_stats() -> Iterator[None]:
    """BPF_ENABLE_STATS(BPF_STATS_RUN_TIME) while the block runs: the kernel counts
    run_time_ns/run_cnt only while at least one such fd is open."""
    fd = lib.bpf_enable_stats(lib.BPF_STATS_RUN_TIME)
    raise_for(fd, "enabling BPF run stats")
    try:
        yield
    finally:
        os.close(fd)


def pidfd_open(pid: int) -> int:
    fd = lib.mb_pidfd_open(pid)
    if fd < 0:
        raise_for(-ffi.errno, f"pidfd_open({pid})")
    return fd


def pingpong(nr_tasks: int, seconds: float) -> int:
    """The native load generator (_native.c): nr_tasks threads in pairs, ping-ponging a byte through
    pipes for `seconds`, every round trip two wakeups and two context switches. Round trips done."""
    rounds = lib.mb_pingpong(nr_tasks, seconds)
    if rounds < 0:
        raise EnvironmentProblem(f"the load generator could not start {nr_tasks} threads: {os.strerror(-rounds)}")
    return rounds
BPF_MAP_TYPE_OF_MAPS = {"array_of_maps": 12, "hash_of_maps": 13}  # include/uapi/linux/bpf.h


class OuterMap(MapOps):
    """A map of maps created from user space: u32 keys, values the fds of inner maps shaped as
    `template` (type, key and value size, flags: bpf_map_meta_equal). Owns its fd; the inner
    maps it holds stay alive through it."""

    def __init__(self, map_type: str, max_entries: int, template: Map, name: str = "mb_outer"):
        take_log()
        fd = lib.mb_outer_map_create(BPF_MAP_TYPE_OF_MAPS[map_type], max_entries, template.fd)
        raise_for(fd, f"creating a {map_type} map of {max_entries} entries")
        self.fd, self.name, self.map_type = fd, name, map_type
        self.key_size, self.value_size, self.max_entries = 4, 4, max_entries

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> OuterMap:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        self.close()
