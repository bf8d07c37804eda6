"""The engine registry. Every engine is one module with the same small surface:

    NAME, DESCRIPTION
    AXES      the grid axes it takes: TOML key, CLI flag, spec field, parser, default
    SIDES     the axes whose values are measured head to head, in one load, by default
    DEFAULTS  MeasureOptions that suit it
    make_spec(fields) -> its frozen spec (or NotMeasured) for one grid point
    split(sides) -> optional: the sides of one group as several comparisons
    complete_axes(values, side_keys) -> optional: axis values the engine adds (a baseline side)

A spec with control_key() runs beside one control build per key (runner.load_sides_and_controls).
    measure(sides, opts, on_sample) -> result rows of one comparison, sides interleaved
    check_options(opts) -> optional: measuring options the engine cannot work with

`run`, `sweep` and `bench` look engines up here; adding an engine is its module plus one
entry in ENGINES. See docs/method.md for what each engine measures.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mapbench.errors import BadInput
from mapbench.measure.runner import MeasureOptions, controls_per_sample


@dataclass(frozen=True)
class Axis:
    key: str  # in a sweep file: sizes = [...]
    flag: str  # on the command line: --size 1e3,1e5 (a comma list)
    field: str  # the spec field it sets
    parse: Callable[[Any], Any]  # one value -> the spec's value; BadInput names the flag
    default: tuple = ()  # values when absent; () = the spec's own default
    help: str = ""
    is_flag: bool = False  # on the command line a flag (--no-prealloc), in a sweep a list of booleans


@dataclass(frozen=True)
class NotMeasured:
    """A grid point that cannot be measured (a strategy without that op): an `unsupported`
    row, never run."""

    fields: tuple
    reason: str

    def config_fields(self) -> dict:
        return dict(self.fields)


@dataclass(frozen=True)
class Comparison:
    """Sides measured head to head: loaded together, sample by sample in rotating order."""

    engine: str
    sides: tuple
    opts: MeasureOptions

    @property
    def measured(self) -> tuple:
        return tuple(s for s in self.sides if not isinstance(s, NotMeasured))

    @property
    def not_measured(self) -> tuple:
        return tuple(s for s in self.sides if isinstance(s, NotMeasured))

    def samples(self) -> int:
        """Program runs in all, for a progress bar."""
        if not self.measured:
            return 0
        per_sample = len(self.measured) + controls_per_sample(self.measured)
        return self.opts.instances * (self.opts.warmup + self.opts.samples) * per_sample


def _engines() -> dict:
    from mapbench.measure.engines import attached, kernel, reference, syscall

    return {m.NAME: m for m in (kernel, syscall, attached, reference)}


ENGINES = _engines()


def axis_values(engine, raw: dict[str, list]) -> dict[str, list]:
    """Parse every axis's raw values (TOML values or CLI strings); defaults where absent."""
    out = {}
    for axis in engine.AXES:
        values = raw.get(axis.key)
        if values is None:
            out[axis.key] = list(axis.default) or [None]
            continue
        if not isinstance(values, list) or not values:
            raise BadInput(f"{axis.flag} {values!r} must be a non-empty list")
        out[axis.key] = [axis.parse(v) for v in values]
    return out


def comparisons(engine, raw: dict[str, list], opts: MeasureOptions,
                compare: list[str] | None = None) -> list[Comparison]:
    """A grid (the cartesian product of its axes) as comparisons: points that differ only in
    the side axes form one comparison, measured in the same loads."""
    getattr(engine, "check_options", lambda opts: None)(opts)
    sides_keys = list(engine.SIDES if compare is None else compare)
    unknown = set(sides_keys) - {a.key for a in engine.AXES}
    if unknown:
        raise BadInput(f"compare = {sorted(unknown)[0]!r} is not an axis of the {engine.NAME} engine "
                       f"(axes: {', '.join(a.key for a in engine.AXES)})")
    values = getattr(engine, "complete_axes", lambda values, sides: values)(axis_values(engine, raw), sides_keys)
    groups: dict[tuple, list] = {}
    for point in itertools.product(*values.values()):
        by_key = dict(zip(values, point))
        fields = {a.field: by_key[a.key] for a in engine.AXES if by_key[a.key] is not None}
        spec = engine.make_spec(fields)
        if isinstance(spec, NotMeasured) and not spec.fields:
            continue  # a combination that names nothing to measure (elem x lookup_and_delete)
        key = tuple(by_key[k] for k in values if k not in sides_keys)
        sides = groups.setdefault(key, [])
        if spec not in sides:
            sides.append(spec)
    out, seen = [], set()
    split = getattr(engine, "split", lambda sides: [sides])  # sides that must not share a load
    for group in groups.values():
        for sides in split(group):
            if tuple(sides) not in seen:
                seen.add(tuple(sides))
                out.append(Comparison(engine.NAME, tuple(sides), opts))
    return out


def rename_flags(engine, message: str) -> str:
    """A spec speaks in CLI flags; a sweep file names its keys."""
    for axis in engine.AXES:
        if message.startswith(axis.flag + " "):
            return axis.key + ": " + message[len(axis.flag) + 1:]
    return message


def options_for(engine, **given) -> MeasureOptions:
    """The engine's defaults, overridden by what was given (None: not given)."""
    return dataclasses.replace(engine.DEFAULTS, **{k: v for k, v in given.items() if v is not None})
