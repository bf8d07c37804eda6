"""The kernel engine (DESIGN 3.1): a map operation's cost inside the kernel.

A raw_tp program run by BPF_PROG_TEST_RUN times a bpf_loop of N operations with
bpf_ktime_get_ns. The family's control build runs the same loop and key stream without the
map operation; a sample's figure is its gross ns/op less the median control ns/op of the
same load. N is calibrated so that a sample lasts `target_ms`; the runner is pinned to one
CPU; warm-up samples are kept but flagged; every instance is a fresh load (fresh maps, so
fresh hash seeds).
"""

from __future__ import annotations

import contextlib
import os
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from . import build, keys
from ._libbpf import ffi, lib
from .environment import bpf_privileged, load_avg_1m
from .errors import MissingPrivilege
from .libbpf import BpfObject
from .workloads import CONTROL_MACRO, STRATEGIES, KernelSpec, bloom_fp_theory

BPF_LOOP_MAX = 1 << 23  # the kernel's bound on bpf_loop iterations
FILL_CHUNK = 1 << 16  # entries per BPF_MAP_UPDATE_BATCH call when filling


@dataclass(frozen=True)
class RunResult:
    """What one test run of one program reported (struct mb_result)."""

    elapsed_ns: int
    ops: int
    hits: int
    filter_positives: int
    checksum: int

    @property
    def ns_per_op(self) -> float:
        return self.elapsed_ns / self.ops


def instance_config(spec: KernelSpec, instance: int) -> dict:
    """The key stream of one instance: deterministic from (spec.seed, instance)."""
    rng = np.random.default_rng([spec.seed, instance])
    return {
        "seed": int(rng.integers(0, 2**63)),
        "map_size": spec.map_size,
        "hit_thresh": spec.hit_thresh,
        "key_mult": int(rng.integers(0, 2**31)) * 2 + 1,
        "key_salt": int(rng.integers(0, 2**32)),
        "op": spec.op_code,
        "base_pid": os.getpid(),
        "sequential": int(spec.key_distribution == "sequential"),
        "nr_maps": spec.nr_maps,
        "bloom_words": spec.bloom_value_size // 4,
    }


def require_root() -> None:
    if not bpf_privileged():
        raise MissingPrivilege("mapbench loads BPF programs: run as root (it needs CAP_BPF and "
                               f"CAP_PERFMON, or CAP_SYS_ADMIN; euid is {os.geteuid()})")


class LoadedProgram:
    """One loaded build of a family source (a strategy or its control), with its maps filled."""

    def __init__(self, spec: KernelSpec, macro: str, config: dict):
        self.spec = spec
        self.macro = macro
        self.config = config
        self.built = build.compile_object(spec.family.source, macro, spec.isa)
        self.obj = BpfObject(self.built.path)
        try:
            self._configure()
            self.obj.load()
            self._fill()
            self.prog = self.obj.program("run")
            self.bss = self.obj.map(".bss")
            info = self.prog.info()  # what the verifier and the JIT made of this ISA
            self.sizes = {"prog_xlated_bytes": info["xlated_prog_len"],
                          "prog_jited_bytes": info["jited_prog_len"]}
        except BaseException:
            self.obj.close()
            raise

    def _configure(self) -> None:
        cfg = self.obj.map(".rodata").data("struct mb_config")
        for name, value in self.config.items():
            setattr(cfg, name, value)
        n = self.spec.map_size
        for name in ("members", "states"):
            if self.obj.has_map(name) and self.macro != "MB_TASK_STORAGE":
                self.obj.map(name).set_max_entries(n)
        if self.obj.has_map("filter"):
            bloom = self.obj.map("filter")
            bloom.set_max_entries(n)
            bloom.set_map_extra(self.spec.nr_hash_funcs)
            bloom.set_value_size(self.spec.bloom_value_size)

    def _fill(self) -> None:
        """Put the map_size keys the programs will draw: batch updates for the hash, one
        push per element (native loop) for the bloom filter, which has no batch ops."""
        n = self.spec.map_size
        if self.obj.has_map("members"):
            members = keys.member_keys(np.arange(n, dtype=np.uint64), self.config["key_mult"],
                                       self.config["key_salt"])
            values = members.astype(np.uint64)
            self.obj.map("members").update_batch(members, values, FILL_CHUNK)
            if self.obj.has_map("filter"):
                self.obj.map("filter").elem_loop(lib.MB_UPDATE, None, keys.bloom_elements(
                    members, self.spec.bloom_value_size // 4))
        elif self.macro == "MB_PID_HASH":
            pids = (self.config["base_pid"] + np.arange(n, dtype=np.uint64)).astype(np.uint32)
            records = np.zeros((n, 2), dtype=np.uint64)
            self.obj.map("states").update_batch(pids, records, FILL_CHUNK)

    def run(self, nr_loops: int, start: int) -> RunResult:
        args = ffi.new("struct mb_run_args *", {"nr_loops": nr_loops, "start": start})
        self.prog.test_run(args)
        r = self.bss.read("struct mb_result")
        return RunResult(r.elapsed_ns, r.ops, r.hits, r.filter_positives, r.checksum)

    def map_memory_bytes(self) -> int | None:
        """fdinfo memlock of the maps this build uses; None for task storage, whose memlock
        stays at a fixed 480 B whatever it holds (DESIGN 6)."""
        if self.macro == "MB_TASK_STORAGE":
            return None
        names = [m for m in ("members", "filter", "states") if self.obj.has_map(m)]
        return sum(self.obj.map(m).memlock_bytes() or 0 for m in names) if names else None

    def close(self) -> None:
        self.obj.close()


class KernelPair:
    """A strategy build and its family's control build, loaded with the same key stream."""

    def __init__(self, spec: KernelSpec, instance: int):
        require_root()
        self.spec = spec
        self.instance = instance
        self.config = instance_config(spec, instance)
        self.strategy = LoadedProgram(spec, STRATEGIES[spec.strategy].macro, self.config)
        try:
            self.control = LoadedProgram(spec, CONTROL_MACRO, self.config)
        except BaseException:
            self.strategy.close()
            raise

    def close(self) -> None:
        self.strategy.close()
        self.control.close()

    def __enter__(self) -> KernelPair:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def pinned_to(cpu: int | None) -> Iterator[int | None]:
    """Run the block on one CPU, then restore the affinity it had."""
    if cpu is None:
        yield None
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


def calibrate(program: LoadedProgram, target_ns: float) -> int:
    """N such that one run of the strategy build lasts about target_ns."""
    n = 4096
    for _ in range(3):  # the first pilot also warms the code and the maps
        per_op = program.run(n, 0).ns_per_op
        n = int(min(BPF_LOOP_MAX, max(1024, target_ns / max(per_op, 0.1))))
    return n


@dataclass
class MeasureOptions:
    samples: int = 12
    instances: int = 5
    warmup: int = 2
    target_ms: float = 5.0
    cpu: int | None = None


def default_cpu() -> int:
    """The last CPU this process may run on: away from CPU 0's interrupts where there is a choice."""
    return max(os.sched_getaffinity(0))


def measure(spec: KernelSpec, opts: MeasureOptions,
            on_sample: Callable[[], None] = lambda: None) -> list[dict]:
    """Every sample of one configuration, as result-row fields (see results.SCHEMA)."""
    rows: list[dict] = []
    nr_loops = None
    with pinned_to(opts.cpu) as cpu:
        for instance in range(opts.instances):
            with KernelPair(spec, instance) as pair:
                if nr_loops is None:
                    nr_loops = calibrate(pair.strategy, opts.target_ms * 1e6)
                memory = pair.strategy.map_memory_bytes()
                pending = []
                for sample in range(opts.warmup + opts.samples):
                    start = (sample + 1) * nr_loops  # draw 0.. were the calibration's
                    control = pair.control.run(nr_loops, start)
                    measured = pair.strategy.run(nr_loops, start)
                    pending.append((sample, measured, control))
                    on_sample()
                control_median = statistics.median(
                    c.ns_per_op for s, _, c in pending if s >= opts.warmup)
                common = {**spec.config_fields(), "instance": instance, "cpu": cpu,
                          "load_avg_1m": load_avg_1m(), "status": "ok", "message": ""}
                for sample, measured, control in pending:
                    rows.append(_row(common, spec.strategy, pair.strategy, sample, opts.warmup,
                                     measured, measured.ns_per_op - control_median,
                                     control_median, memory, spec))
                    rows.append(_row(common, "control", pair.control, sample, opts.warmup,
                                     control, control.ns_per_op, None, None, spec))
    return rows


def _row(common: dict, strategy: str, program: LoadedProgram, sample: int, warmup: int,
         result: RunResult, ns_per_op: float, control_ns: float | None,
         memory: int | None, spec: KernelSpec) -> dict:
    misses = result.ops - result.hits
    fp_rate = fp_theory = None
    if strategy == "bloom" and spec.op == "lookup" and misses > 0:
        fp_rate = (result.filter_positives - result.hits) / misses
        fp_theory = bloom_fp_theory(spec.map_size, spec.nr_hash_funcs)
    return {
        **common,
        "strategy": strategy,
        "object_sha256": program.built.sha256,
        "sample": sample,
        "warmup": sample < warmup,
        "ops": result.ops,
        "elapsed_ns": result.elapsed_ns,
        "ns_per_op": ns_per_op,
        "gross_ns_per_op": result.ns_per_op,
        "control_ns_per_op": control_ns,
        "hits": result.hits,
        "measured_hit_ratio": result.hits / result.ops if strategy != "control" else None,
        "map_memory_bytes": memory,
        "bloom_fp_rate": fp_rate,
        "bloom_fp_theory": fp_theory,
        **program.sizes,
    }
