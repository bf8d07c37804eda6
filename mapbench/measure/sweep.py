"""Sweep files: TOML grids parsed into Grid records (runner.comparisons expands them; the
runner measures them, written load by load, so an interrupted sweep keeps all it finished and
`--resume` skips those).

A sweep file has an optional [measure] table (samples, instances, warmup, sample_ms) and
[[grid]] tables: `engine`, the engine's axes (see `mapbench list`), optional measure keys,
and optional `compare`, the axes whose values are measured head to head in one load
(default: the engine's SIDES)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import tomllib

from mapbench.errors import BadInput
from mapbench.measure.engine import Axis, MeasureOptions

MEASURE_KEYS = {"samples": "samples", "instances": "instances", "warmup": "warmup", "sample_ms": "target_ms"}
GRID_ONLY_KEYS = {"engine", "compare"}
# [measure] keys of the whole run, not of a grid: the precision each comparison should reach,
# and the seconds the run may take to reach it (runner.execute; docs/method.md, "Precision on demand")
RUN_KEYS = ("precision", "budget_s")


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


@dataclass(frozen=True)
class Grid:
    """One grid of one engine: raw axis values (TOML values or CLI strings, parsed by the axes)."""

    engine: str
    raw: dict
    opts: MeasureOptions
    compare: list[str] | None = None  # the side axes; None: the engine's
    where: str = ""  # for messages: "sweep file F: [[grid]] #N"


def load(path: str | Path, axes: dict[str, tuple[Axis, ...]], defaults: dict[str, MeasureOptions]) -> list[Grid]:
    """A sweep file's grids; axes and defaults: each engine's (runner.ENGINES)."""
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
    bad = set(measure) - set(MEASURE_KEYS) - set(RUN_KEYS)
    if bad:
        raise BadInput(f"sweep file {path}: [measure] has unknown key {sorted(bad)[0]!r} "
                       f"(known: {', '.join(sorted([*MEASURE_KEYS, *RUN_KEYS]))})")
    out: list[Grid] = []
    for number, grid in enumerate(doc.get("grid", []), start=1):
        where = f"sweep file {path}: [[grid]] #{number}"
        name = grid.get("engine", "kernel")
        if name not in axes:
            raise BadInput(f"{where}: engine = {name!r} is not one of {', '.join(axes)}")
        keys = {a.key for a in axes[name]}
        allowed = keys | set(MEASURE_KEYS) | GRID_ONLY_KEYS
        bad = set(grid) - allowed
        if bad:
            raise BadInput(f"{where}: unknown key {sorted(bad)[0]!r} for engine {name} "
                           f"(known: {', '.join(sorted(allowed))})")
        opts = _measure_options(measure, defaults[name], f"sweep file {path}: [measure]")
        opts = _measure_options(grid, opts, where)
        raw = {k: v for k, v in grid.items() if k in keys}
        for key, value in raw.items():
            if not isinstance(value, list) or not value:
                raise BadInput(f"{where}: {key} = {value!r} must be a non-empty list")
        compare = grid.get("compare")
        if compare is not None and not (isinstance(compare, list) and all(isinstance(c, str) for c in compare)):
            raise BadInput(f"{where}: compare = {compare!r} must be a list of axis names")
        out.append(Grid(name, raw, opts, compare, where))
    if not out:
        raise BadInput(f"sweep file {path}: no [[grid]] tables")
    return out


def run_settings(path: str | Path) -> dict[str, float | None]:
    """The run's precision and budget_s from a sweep file's [measure] table (None: not set)."""
    measure = tomllib.loads(Path(path).read_text()).get("measure", {})
    out = {}
    for key in RUN_KEYS:
        value = measure.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise BadInput(f"sweep file {path}: [measure] {key} = {value!r} must be a positive number")
        out[key] = None if value is None else float(value)
    return out


def rename_flags(axes: tuple[Axis, ...], message: str) -> str:
    """A spec speaks in CLI flags; a sweep file names its keys."""
    for axis in axes:
        if message.startswith(axis.flag + " "):
            return axis.key + ": " + message[len(axis.flag) + 1:]
    return message
