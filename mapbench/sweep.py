"""Sweeps: TOML grids expanded into configurations, measured one by one, each written to the
result file as soon as it is done (atomically), so an interrupted sweep keeps all it finished
and `--resume` skips those."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tomllib

from . import attached_engine, kernel_engine, reference, results, syscall_engine
from .attached_engine import AttachedSpec
from .environment import run_environment
from .errors import BadInput, MapbenchError
from .kernel_engine import MeasureOptions
from .syscall_engine import SyscallSpec
from .workloads import STRATEGIES, KernelSpec, parse_size

MEASURE_KEYS = {"samples", "instances", "warmup", "sample_ms"}
GRID_KEYS = {
    "kernel": {"engine", "strategies", "ops", "sizes", "hit_ratios", "hash_funcs", "isas", "keys",
               "task_maps", "bloom_value_sizes"},
    "syscall": {"engine", "maps", "drivers", "ops", "sizes", "batch_sizes"},
    "reference": {"engine", "maps", "drivers", "ops", "sizes", "batch_sizes"},
    "attached": {"engine", "strategies", "sizes", "tasks", "isas"},
}
FLAG_TO_KEY = {
    "kernel": {"--map": "strategies", "--op": "ops", "--size": "sizes", "--hit-ratio": "hit_ratios",
               "--hash-funcs": "hash_funcs", "--isa": "isas", "--keys": "keys",
               "--task-maps": "task_maps", "--bloom-value-size": "bloom_value_sizes"},
    "syscall": {"--map": "maps", "--driver": "drivers", "--op": "ops", "--size": "sizes",
                "--batch-size": "batch_sizes"},
}
FLAG_TO_KEY["reference"] = FLAG_TO_KEY["syscall"]
FLAG_TO_KEY["attached"] = {"--map": "strategies", "--size": "sizes", "--tasks": "tasks",
                           "--isa": "isas", "--sample-ms": "sample_ms"}
# What identifies a configuration: the same for every engine, so resume works on any file.
RESUME_KEYS = ["engine", "family", "strategy", "op", "driver", "map_size", "batch_size", "hit_ratio",
               "nr_hash_funcs", "isa", "key_distribution", "nr_tasks", "nr_maps"]


@dataclass(frozen=True)
class Unsupported:
    """A grid point the strategy does not have: recorded as a row, never run."""

    spec_fields: tuple
    reason: str

    def config_fields(self) -> dict:
        return dict(self.spec_fields)


@dataclass(frozen=True)
class Reference:
    """A syscall configuration measured side by side with the plain C loop (ref_syscalls.c)."""

    spec: SyscallSpec

    def config_fields(self) -> dict:
        return {**self.spec.config_fields(), "family": "reference"}


@dataclass(frozen=True)
class Job:
    config: KernelSpec | SyscallSpec | AttachedSpec | Reference | Unsupported
    opts: MeasureOptions


def _measure_options(table: dict, base: MeasureOptions, where: str) -> MeasureOptions:
    values = {k: table[k] for k in MEASURE_KEYS & set(table)}
    if "sample_ms" in values:
        values["target_ms"] = float(values.pop("sample_ms"))
    for key, value in values.items():
        if not isinstance(value, (int, float)) or value < (0 if key == "warmup" else 1e-3):
            raise BadInput(f"{where}: {key} = {value!r} must be a positive number")
    return dataclasses.replace(base, **values)


def _list(grid: dict, key: str, default: list, where: str) -> list:
    value = grid.get(key, default)
    if not isinstance(value, list) or not value:
        raise BadInput(f"{where}: {key} = {value!r} must be a non-empty list")
    return value


def _sizes(grid: dict, where: str) -> list[int]:
    return [parse_size(int(s) if isinstance(s, float) and s.is_integer() else s)
            for s in _list(grid, "sizes", [1000], where)]


def load(path: str | Path) -> list[Job]:
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise BadInput(f"sweep file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"sweep file {path}: not valid TOML ({exc})") from None
    unknown = set(doc) - {"grid", "measure"}
    if unknown:
        raise BadInput(f"sweep file {path}: unknown key {sorted(unknown)[0]!r} (known: grid, measure)")
    measure = doc.get("measure", {})
    bad = set(measure) - MEASURE_KEYS
    if bad:
        raise BadInput(f"sweep file {path}: [measure] has unknown key {sorted(bad)[0]!r} "
                       f"(known: {', '.join(sorted(MEASURE_KEYS))})")
    base = _measure_options(measure, MeasureOptions(), f"sweep file {path}: [measure]")
    jobs: list[Job] = []
    for number, grid in enumerate(doc.get("grid", []), start=1):
        where = f"sweep file {path}: [[grid]] #{number}"
        engine = grid.get("engine", "kernel")
        if engine not in GRID_KEYS:
            raise BadInput(f"{where}: engine = {engine!r} is not one of {', '.join(GRID_KEYS)}")
        allowed = GRID_KEYS[engine] | MEASURE_KEYS
        bad = set(grid) - allowed
        if bad:
            raise BadInput(f"{where}: unknown key {sorted(bad)[0]!r} for engine {engine} "
                           f"(known: {', '.join(sorted(allowed))})")
        opts = _measure_options(grid, base, where)
        try:
            if engine == "kernel":
                configs = _expand_kernel(grid, where)
            elif engine == "attached":
                configs = _expand_attached(grid, where, opts)
            else:
                configs = _expand_syscall(grid, where)
                if engine == "reference":
                    configs = [Reference(c) for c in configs]
        except BadInput as exc:  # the specs speak in CLI flags; a sweep file names its keys
            message = str(exc)
            for flag, key in FLAG_TO_KEY[engine].items():
                message = message.replace(flag + " ", key + ": ", 1) if message.startswith(flag) else message
            raise BadInput(f"{where}: {message}") from None
        jobs.extend(Job(c, opts) for c in configs)
    if not jobs:
        raise BadInput(f"sweep file {path}: no [[grid]] tables")
    seen: set = set()
    return [j for j in jobs if not (j.config in seen or seen.add(j.config))]


def _expand_kernel(grid: dict, where: str) -> list:
    out: list = []
    # the ISA varies fastest, so that the variants of one configuration run back to back
    for strategy, size, op, hit, funcs, keys, maps, vsize, isa in itertools.product(
            _list(grid, "strategies", list(STRATEGIES), where), _sizes(grid, where),
            _list(grid, "ops", [None], where), _list(grid, "hit_ratios", [1.0], where),
            _list(grid, "hash_funcs", [3], where), _list(grid, "keys", ["uniform"], where),
            _list(grid, "task_maps", [1], where), _list(grid, "bloom_value_sizes", [4], where),
            _list(grid, "isas", ["v3"], where)):
        if strategy in STRATEGIES and op is not None and op not in STRATEGIES[strategy].ops:
            fields = {"engine": "kernel", "family": STRATEGIES[strategy].family.name,
                      "strategy": strategy, "op": op, "map_size": size}
            out.append(Unsupported(tuple(fields.items()), f"{strategy} has no {op} (it has "
                                                          f"{', '.join(STRATEGIES[strategy].ops)})"))
            continue
        resolved_op = op or (STRATEGIES[strategy].ops[0] if strategy in STRATEGIES else None)
        if resolved_op != "lookup" or keys == "sequential":
            hit = 1.0  # only uniform lookups have a hit ratio; the rest always find their key
        task_maps = strategy == "task_storage_maps"
        out.append(KernelSpec(strategy, op=op, map_size=1 if task_maps else size, hit_ratio=float(hit),
                              nr_hash_funcs=int(funcs) if strategy == "bloom" else 3, isa=isa,
                              key_distribution=keys, nr_maps=int(maps) if task_maps else 1,
                              bloom_value_size=int(vsize) if strategy == "bloom" else 4))
    return out


def _expand_attached(grid: dict, where: str, opts: MeasureOptions) -> list:
    return [AttachedSpec(strategy, size, int(tasks), opts.target_ms / 1000, isa)
            for strategy, size, tasks, isa in itertools.product(  # the ISA varies fastest
                _list(grid, "strategies", ["pid_hash", "task_storage"], where), _sizes(grid, where),
                _list(grid, "tasks", [8], where), _list(grid, "isas", ["v3"], where))]


def _expand_syscall(grid: dict, where: str) -> list:
    out: list = []
    batch_sizes = [syscall_engine.parse_batch_sizes(str(b))[0]
                   for b in _list(grid, "batch_sizes", [1000], where)]
    for map_type, driver, op, size in itertools.product(
            _list(grid, "maps", ["hash"], where), _list(grid, "drivers", ["elem", "batch"], where),
            _list(grid, "ops", ["lookup"], where), _sizes(grid, where)):
        if driver in syscall_engine.DRIVERS and op not in syscall_engine.DRIVERS[driver]:
            continue  # e.g. elem x lookup_and_delete: no such operation to measure
        if map_type == "task_storage":
            size = 1  # keyed by pidfd: measured on mapbench's own task
        for batch in (batch_sizes if driver == "batch" else [None]):
            out.append(SyscallSpec(map_type, driver, op, size, batch))
    return out


def _plain(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def job_key(job: Job) -> tuple:
    fields = job.config.config_fields()
    return tuple(_plain(fields.get(k)) for k in RESUME_KEYS)


def done_keys(path: Path) -> set[tuple]:
    """Configurations the file already holds, measured or unsupported: what resume skips.
    Configurations that ended in an error are measured again."""
    if not path.exists():
        return set()
    df = results.read_file(path).to_pandas()
    df = df[(df["strategy"] != "control") & df["status"].isin(["ok", "unsupported"])]
    return {tuple(_plain(v) for v in row) for row in df[RESUME_KEYS].itertuples(index=False)}


def samples_of(job: Job) -> int:
    if isinstance(job.config, Unsupported):
        return 0
    per_build = 2 if isinstance(job.config, AttachedSpec) else 1  # the control runs too
    return per_build * job.opts.instances * (job.opts.warmup + job.opts.samples)


def measure(job: Job, cpu: int | None, on_sample: Callable[[], None]) -> list[dict]:
    config = job.config
    if isinstance(config, Unsupported):
        return [{**config.config_fields(), "status": "unsupported", "message": config.reason}]
    opts = dataclasses.replace(job.opts, cpu=cpu)
    try:
        if isinstance(config, Reference):
            rows = reference.compare(config.spec, rounds=opts.instances, samples=opts.samples,
                                     target_ms=opts.target_ms, cpu=cpu)
            on_sample_n(on_sample, samples_of(job))
            return rows
        if isinstance(config, SyscallSpec):
            return syscall_engine.measure(config, opts, on_sample=on_sample)
        if isinstance(config, AttachedSpec):
            return attached_engine.measure(config, opts, on_sample=on_sample)
        return kernel_engine.measure(config, opts, on_sample=on_sample)
    except MapbenchError as exc:  # one configuration failed: record it and keep going
        return [{**config.config_fields(), "status": "error", "message": str(exc)}]


def on_sample_n(on_sample: Callable[[], None], n: int) -> None:
    for _ in range(n):
        on_sample()


def run(jobs: list[Job], cpu: int | None, out_path: Path, run_id: str,
        on_job: Callable[[Job, bool], None] = lambda j, measured: None,
        on_sample: Callable[[], None] = lambda: None) -> int:
    """Measure every job not yet in out_path; returns how many were measured."""
    skip = done_keys(out_path)
    measured = 0
    env = run_environment()
    for job in jobs:
        if job_key(job) in skip:
            on_job(job, False)
            continue
        rows = measure(job, cpu, on_sample)
        results.write(out_path, results.make_table(rows, run_id, env))
        measured += 1
        on_job(job, True)
    return measured
