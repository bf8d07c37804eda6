"""Sweeps: a TOML grid expanded into configurations, measured one by one, each written to the
result file as soon as it is done (atomically), so an interrupted sweep keeps all it finished
and `resume` skips those."""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import kernel_engine, results
from .environment import run_environment
from .errors import BadInput, MapbenchError
from .workloads import STRATEGIES, KernelSpec, parse_size

GRID_KEYS = {"engine", "strategies", "ops", "sizes", "hit_ratios", "hash_funcs", "isas", "keys"}
MEASURE_KEYS = {"samples", "instances", "warmup", "sample_ms"}
ENGINES = ("kernel",)


@dataclass(frozen=True)
class Unsupported:
    """A grid point the strategy does not have: recorded as a row, never run."""

    strategy: str
    op: str
    map_size: int
    reason: str

    def row(self) -> dict:
        return {"engine": "kernel", "family": STRATEGIES[self.strategy].family.name,
                "strategy": self.strategy, "op": self.op, "map_size": self.map_size,
                "status": "unsupported", "message": self.reason}


def _list(grid: dict, key: str, default: list, where: str) -> list:
    value = grid.get(key, default)
    if not isinstance(value, list) or not value:
        raise BadInput(f"{where}: {key} = {value!r} must be a non-empty list")
    return value


def load(path: str | Path) -> tuple[list[KernelSpec | Unsupported], kernel_engine.MeasureOptions]:
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
    opts = kernel_engine.MeasureOptions(
        samples=measure.get("samples", 20), instances=measure.get("instances", 3),
        warmup=measure.get("warmup", 2), target_ms=float(measure.get("sample_ms", 5.0)))
    configs: list[KernelSpec | Unsupported] = []
    for number, grid in enumerate(doc.get("grid", []), start=1):
        where = f"sweep file {path}: [[grid]] #{number}"
        bad = set(grid) - GRID_KEYS
        if bad:
            raise BadInput(f"{where}: unknown key {sorted(bad)[0]!r} (known: {', '.join(sorted(GRID_KEYS))})")
        engine = grid.get("engine", "kernel")
        if engine not in ENGINES:
            raise BadInput(f"{where}: engine = {engine!r} is not one of {', '.join(ENGINES)}")
        try:
            configs.extend(_expand(grid, where))
        except BadInput as exc:
            raise BadInput(f"{where}: {exc}") from None
    if not configs:
        raise BadInput(f"sweep file {path}: no [[grid]] tables")
    return _dedupe(configs), opts


def _expand(grid: dict, where: str) -> list[KernelSpec | Unsupported]:
    out: list[KernelSpec | Unsupported] = []
    strategies = _list(grid, "strategies", list(STRATEGIES), where)
    sizes = [parse_size(int(s) if isinstance(s, float) and s.is_integer() else s)
             for s in _list(grid, "sizes", [1000], where)]
    for strategy, size, op, hit, funcs, isa, keys in itertools.product(
            strategies, sizes, _list(grid, "ops", [None], where), _list(grid, "hit_ratios", [1.0], where),
            _list(grid, "hash_funcs", [3], where), _list(grid, "isas", ["v3"], where),
            _list(grid, "keys", ["uniform"], where)):
        if strategy in STRATEGIES and op is not None and op not in STRATEGIES[strategy].ops:
            out.append(Unsupported(strategy, op, size, f"{strategy} has no {op} "
                                                       f"(it has {', '.join(STRATEGIES[strategy].ops)})"))
            continue
        resolved_op = op or (STRATEGIES[strategy].ops[0] if strategy in STRATEGIES else None)
        if resolved_op != "lookup" or keys == "sequential":
            hit = 1.0  # only uniform lookups have a hit ratio; the rest always find their key
        if strategy != "bloom":
            funcs = 3
        out.append(KernelSpec(strategy, op=op, map_size=size, hit_ratio=float(hit),
                              nr_hash_funcs=int(funcs), isa=isa, key_distribution=keys))
    return out


def _dedupe(configs):
    seen, out = set(), []
    for c in configs:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


# What identifies a configuration for resume (DESIGN 4's keys that a kernel sweep varies).
RESUME_KEYS = ["engine", "strategy", "op", "map_size", "hit_ratio", "nr_hash_funcs", "isa",
               "key_distribution"]


def _plain(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def spec_key(c: KernelSpec | Unsupported) -> tuple:
    if isinstance(c, Unsupported):
        return ("kernel", c.strategy, c.op, c.map_size, None, None, None, None)
    return ("kernel", c.strategy, c.op, c.map_size, c.hit_ratio,
            c.nr_hash_funcs if c.strategy == "bloom" else None, c.isa, c.key_distribution)


def done_keys(path: Path) -> set[tuple]:
    """Configurations the file already holds, measured or unsupported: what resume skips.
    Configurations that ended in an error are measured again."""
    if not path.exists():
        return set()
    df = results.read_file(path).to_pandas()
    df = df[(df["strategy"] != "control") & df["status"].isin(["ok", "unsupported"])]
    return {tuple(_plain(v) for v in row) for row in df[RESUME_KEYS].itertuples(index=False)}


def run(configs, opts: kernel_engine.MeasureOptions, out_path: Path, run_id: str,
        on_config: Callable[[object, int], None] = lambda c, n: None,
        on_sample: Callable[[], None] = lambda: None) -> int:
    """Measure every configuration not yet in out_path; returns how many were measured."""
    skip = done_keys(out_path)
    measured = 0
    env = run_environment()
    for config in configs:
        if spec_key(config) in skip:
            on_config(config, 0)
            continue
        if isinstance(config, Unsupported):
            rows = [config.row()]
        else:
            try:
                rows = kernel_engine.measure(config, opts, on_sample=on_sample)
            except MapbenchError as exc:  # one configuration the kernel refused: keep going
                rows = [{"engine": "kernel", "family": config.family.name, "strategy": config.strategy,
                         "op": config.op, "map_size": config.map_size, "hit_ratio": config.hit_ratio,
                         "isa": config.isa, "key_distribution": config.key_distribution,
                         "status": "error", "message": str(exc)}]
        results.write(out_path, results.make_table(rows, run_id, env))
        measured += 1
        on_config(config, 1)
    return measured
