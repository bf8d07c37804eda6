"""Sweeps: TOML grids expanded (through the engine registry) into comparisons, measured one
by one, each written to the result file as soon as it is done (atomically), so an interrupted
sweep keeps all it finished and `--resume` skips those.

A sweep file has an optional [measure] table (samples, instances, warmup, sample_ms) and
[[grid]] tables: `engine`, the engine's axes (see `mapbench list`), optional measure keys,
and optional `compare`, the axes whose values are measured head to head in one load
(default: the engine's SIDES)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import tomllib

from mapbench.errors import BadInput, MapbenchError
from mapbench.measure import engines
from mapbench.measure.engines import Comparison
from mapbench.measure.environment import run_environment
from mapbench.measure.runner import OnSample
from mapbench.results import store as results
from mapbench.results.store import config_key

MEASURE_KEYS = {"samples": "samples", "instances": "instances", "warmup": "warmup", "sample_ms": "target_ms"}
GRID_ONLY_KEYS = {"engine", "compare"}


def _measure_options(table: dict, base, where: str):
    values = {}
    for key, field in MEASURE_KEYS.items():
        if key not in table:
            continue
        value = table[key]
        whole = key != "sample_ms"
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) \
                or value < (0 if key == "warmup" else 1e-3):
            kind = "a whole number" if whole else "a number"
            raise BadInput(f"{where}: {key} = {value!r} must be {kind}, "
                           f"{'at least 0' if key == 'warmup' else 'positive'}")
        values[field] = float(value) if key == "sample_ms" else value
    return dataclasses.replace(base, **values)


def load(path: str | Path) -> list[Comparison]:
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
    bad = set(measure) - set(MEASURE_KEYS)
    if bad:
        raise BadInput(f"sweep file {path}: [measure] has unknown key {sorted(bad)[0]!r} "
                       f"(known: {', '.join(sorted(MEASURE_KEYS))})")
    out: list[Comparison] = []
    for number, grid in enumerate(doc.get("grid", []), start=1):
        where = f"sweep file {path}: [[grid]] #{number}"
        name = grid.get("engine", "kernel")
        if name not in engines.ENGINES:
            raise BadInput(f"{where}: engine = {name!r} is not one of {', '.join(engines.ENGINES)}")
        engine = engines.ENGINES[name]
        axes = {a.key for a in engine.AXES}
        allowed = axes | set(MEASURE_KEYS) | GRID_ONLY_KEYS
        bad = set(grid) - allowed
        if bad:
            raise BadInput(f"{where}: unknown key {sorted(bad)[0]!r} for engine {name} "
                           f"(known: {', '.join(sorted(allowed))})")
        opts = _measure_options(measure, engine.DEFAULTS, f"sweep file {path}: [measure]")
        opts = _measure_options(grid, opts, where)
        raw = {k: v for k, v in grid.items() if k in axes}
        for key, value in raw.items():
            if not isinstance(value, list) or not value:
                raise BadInput(f"{where}: {key} = {value!r} must be a non-empty list")
        compare = grid.get("compare")
        if compare is not None and not (isinstance(compare, list) and all(isinstance(c, str) for c in compare)):
            raise BadInput(f"{where}: compare = {compare!r} must be a list of axis names")
        try:
            out.extend(engines.comparisons(engine, raw, opts, compare))
        except BadInput as exc:  # the specs speak in CLI flags; a sweep file names its keys
            raise BadInput(f"{where}: {engines.rename_flags(engine, str(exc))}") from None
    if not out:
        raise BadInput(f"sweep file {path}: no [[grid]] tables")
    seen: set = set()
    return [c for c in out if not (c.sides in seen or seen.add(c.sides))]


def done_keys(path: Path) -> set[tuple]:
    """Configurations the file already holds, measured or unsupported: what resume skips.
    Configurations that ended in an error are measured again."""
    if not path.exists():
        return set()
    df = results.read_file(path).to_pandas()
    df = df[(df["strategy"] != "control") & df["status"].isin(["ok", "unsupported"])]
    return {tuple(results.plain(v) for v in row) for row in df[results.CONFIG_KEYS].itertuples(index=False)}


def measure(comparison: Comparison, cpu: int | None, comparison_id: str, on_sample: OnSample) -> list[dict]:
    """Rows of one comparison: its unmeasurable points as `unsupported` rows, a failure as one
    `error` row per side (the sweep goes on), the rest measured head to head."""
    rows = [{**s.config_fields(), "status": "unsupported", "message": s.reason}
            for s in comparison.not_measured if s.fields]
    sides = list(comparison.measured)
    if sides:
        opts = dataclasses.replace(comparison.opts, cpu=cpu)
        try:
            rows += engines.ENGINES[comparison.engine].measure(sides, opts, on_sample=on_sample)
        except MapbenchError as exc:
            rows += [{**s.config_fields(), "position": i, "status": "error", "message": str(exc)}
                     for i, s in enumerate(sides)]
    return [{**r, "comparison": comparison_id} for r in rows]


def run(comparisons: list[Comparison], cpu: int | None, out_path: Path, run_id: str,
        on_comparison: Callable[[Comparison, bool], None] = lambda c, measured: None,
        on_sample: OnSample = lambda: None) -> int:
    """Measure every comparison not yet wholly in out_path; returns how many were measured."""
    skip = done_keys(out_path)
    measured = 0
    env = run_environment()
    for number, comparison in enumerate(comparisons):
        keys = {config_key(s.config_fields()) for s in comparison.sides}
        if keys <= skip:
            on_comparison(comparison, False)
            continue
        rows = measure(comparison, cpu, f"{run_id}/{number}", on_sample)
        results.write(out_path, results.make_table(rows, run_id, env))
        measured += 1
        on_comparison(comparison, True)
    return measured
