"""The one runner behind `run`, `sweep`, `bench` and `matrix`: the engine registry, grids made
into comparisons, a plan of every load of every comparison of a run, and its execution.

A run is planned whole before it starts (plan): each comparison's loads are spread over the
run in blocks (load 0 of every comparison in a shuffled order, then load 1, ...), so that the
loads of a comparison sample the run's whole span rather than a few seconds of it
(docs/method.md, "Loads over the run"). The runner owns pinning, opening each side's and
control's builds through the engine, calibration, the rotation of samples, control
subtraction and the rows' bookkeeping; an engine only opens builds and takes samples
(engine.py). Rows leave the runner frozen, one load at a time, and are written as they come,
so an error or a kill loses no finished load. See docs/architecture.md.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import math
import os
import random
import statistics
import time
import types
import zlib
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa

from mapbench.binding.libbpf import require_bpf_privilege
from mapbench.errors import BadInput, MapbenchError, Unsupported
from mapbench.measure import interference, sweep
from mapbench.measure.cpus import pinned_to, resolve_cpu, rotation
from mapbench.measure.engine import Comparison, Engine, Host, MeasureOptions, NotMeasured, options_for
from mapbench.measure.engines import attached, create, free, kernel, memory, output, own, programs, reference, syscall
from mapbench.measure.environment import load_avg_1m, run_environment
from mapbench.results import dataset
from mapbench.results import store as results

# The registry: adding an engine is its module and one entry here.
ENGINES: dict[str, Engine] = {e.name: e for e in (kernel.ENGINE, syscall.ENGINE, attached.ENGINE, reference.ENGINE,
                                                   memory.ENGINE, own.ENGINE, free.ENGINE, programs.ENGINE,
                                                   create.ENGINE, output.ENGINE)}

DATA = Path(__file__).resolve().parents[2] / "data"
DATASET = DATA / "results"  # results/dataset.py: kernel=<release>/machine=<id>/<run_id>.parquet
REPORTS = DATA / "reports"  # <run_id>.md and <run_id>-plots/
DEFAULT_SWEEP = DATA / "sweeps" / "default.toml"
FULL_SWEEP = DATA / "sweeps" / "full.toml"

Row = Mapping  # a frozen row (types.MappingProxyType) until the store writes it
# --precision adds loads to a comparison up to this many times its planned ones: a ratio whose
# interval does not narrow (a figure at its control's level) cannot keep a run going for ever
MAX_LOADS_FACTOR = 8


class Progress:
    """What the runner reports progress to; the CLI draws a bar, a library caller may pass None."""

    def start(self, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


# --- from grids to comparisons --------------------------------------------------------------

def axis_values(engine: Engine, raw: dict[str, list]) -> dict[str, list]:
    """Parse every axis's raw values (TOML values or CLI strings); defaults where absent."""
    out = {}
    for axis in engine.axes:
        values = raw.get(axis.key)
        if values is None:
            out[axis.key] = list(axis.default) or [None]
            continue
        if not isinstance(values, list) or not values:
            raise BadInput(f"{axis.flag} {values!r} must be a non-empty list")
        out[axis.key] = [axis.parse(v) for v in values]
    return out


def comparisons(grid: sweep.Grid, host: Host) -> list[Comparison]:
    """A grid (the cartesian product of its axes) as comparisons: points that differ only in
    the side axes form one comparison, measured in the same loads."""
    engine = ENGINES[grid.engine]
    engine.check_options(grid.opts)
    side_keys = list(engine.sides if grid.compare is None else grid.compare)
    unknown = set(side_keys) - {a.key for a in engine.axes}
    if unknown:
        raise BadInput(f"compare = {sorted(unknown)[0]!r} is not an axis of the {engine.name} engine "
                       f"(axes: {', '.join(a.key for a in engine.axes)})")
    values = engine.complete_axes(axis_values(engine, grid.raw), side_keys, host)
    groups: dict[tuple, list] = {}
    for point in itertools.product(*values.values()):
        by_key = dict(zip(values, point))
        fields = {a.field: by_key[a.key] for a in engine.axes if by_key[a.key] is not None}
        spec = engine.make_spec(fields, host)
        if isinstance(spec, NotMeasured) and not spec.fields:
            continue  # a combination that names nothing to measure (elem x lookup_and_delete)
        key = tuple(by_key[k] for k in values if k not in side_keys)
        sides = groups.setdefault(key, [])
        if spec not in sides:
            sides.append(spec)
    out, seen = [], set()
    for group in groups.values():
        for sides in engine.split(group):
            if tuple(sides) not in seen:
                seen.add(tuple(sides))
                out.append(Comparison(engine.name, tuple(sides), grid.opts))
    return out


def refused(c: Comparison) -> Comparison:
    """The comparison with every side the kernel refuses (probed now) as NotMeasured."""
    engine = ENGINES[c.engine]
    sides = []
    for spec in c.sides:
        reason = None if isinstance(spec, NotMeasured) else engine.refusal(spec)
        sides.append(NotMeasured(tuple(spec.config_fields().items()), reason) if reason else spec)
    return replace(c, sides=tuple(sides))


def comparisons_from_flags(engine_name: str | None, given: dict[str, str], host: Host,
                           **options) -> list[Comparison]:
    """`run`'s flags (comma lists) as comparisons of one engine: the one named, else the first
    of the registry, unless it lacks flags given: then the engine that takes most of those (the
    earlier on a tie); `options`: MeasureOptions fields given (None:
    the engine's default). A flag the engine does not take, or that changes none of the
    configurations asked for, is an error: never ignored."""
    if engine_name is None:  # the first engine, unless flags it lacks name another
        first, *others = ENGINES.values()
        lacking = set(given) - {a.flag for a in first.axes}
        takes = lambda e: len(lacking & {a.flag for a in e.axes})  # noqa: E731
        engine_name = max(others, key=takes).name if lacking and others else first.name
    engine = ENGINES[engine_name]
    axes = {a.flag: a for a in engine.axes}
    for flag in given:
        if flag not in axes:
            raise BadInput(f"{flag} does not apply to the {engine_name} engine (it takes {', '.join(axes)})")
    raw = {axes[flag].key: _raw_values(axes[flag], value) for flag, value in given.items()}
    found = comparisons(sweep.Grid(engine_name, raw, options_for(engine, **options).validate()), host)
    for c in found:
        for s in c.not_measured:  # a run asked for exactly this: an error, not a row
            raise BadInput(s.reason)
    sides = [s for c in found for s in c.measured]
    for flag in given:
        if sides and not any(axes[flag].field in s.used_fields() for s in sides):
            what = sorted({" ".join(str(s.config_fields()[k]) for k in ("strategy", "op")) for s in sides})
            raise BadInput(f"{flag} does not apply to {', '.join(what)}")
    require_bpf_privilege()  # the kernel is asked what it refuses
    for c in found:
        for s in refused(c).not_measured:
            what = " ".join(str(s.config_fields()[k]) for k in ("strategy", "driver", "op") if s.config_fields().get(k))
            raise Unsupported(f"{what}: the kernel does not support it: {s.reason}")
    return found


def _raw_values(axis, value) -> list:
    """A flag's values: a comma list, or a repeatable flag's occurrences (Axis.repeat)."""
    if axis.repeat == "each":
        return list(value) if isinstance(value, (list, tuple)) else [value]
    if axis.repeat == "all":
        return [tuple(value) if isinstance(value, (list, tuple)) else (value,)]
    # a flag that another engine repeats comes as its occurrences: each a comma list here
    occurrences = value if isinstance(value, (list, tuple)) else [value]
    return [v.strip() for occurrence in occurrences for v in str(occurrence).split(",")]


def comparisons_from_sweep(path: str | Path, host: Host) -> list[Comparison]:
    out: list[Comparison] = []
    for grid in sweep.load(path, {name: e.axes for name, e in ENGINES.items()},
                           {name: e.defaults for name, e in ENGINES.items()}):
        try:
            out.extend(comparisons(grid, host))
        except BadInput as exc:  # the specs speak in CLI flags; a sweep file names its keys
            raise BadInput(f"{grid.where}: {sweep.rename_flags(ENGINES[grid.engine].axes, str(exc))}") from None
    seen: set = set()
    return [c for c in out if not (c.sides in seen or seen.add(c.sides))]


# --- the plan ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Load:
    comparison: int  # its index in Plan.comparisons
    number: int  # 0 .. the comparison's instances - 1: which key stream and hash seeds it draws


@dataclass(frozen=True)
class Plan:
    """Every load of a run, in the order they run, with what they need of the host."""

    run_id: str
    comparisons: tuple[Comparison, ...]
    loads: tuple[Load, ...]
    host: Host
    cpu: int  # the measuring CPU
    precision: float | None = None  # each comparison's widest relative CI half-width to reach
    budget_s: float | None = None  # seconds the whole run may take, loads added for precision included

    def samples(self) -> int:
        return sum(_samples_per_load(self.comparisons[load.comparison]) for load in self.loads)


def schedule(comparisons: list[Comparison], seed: int, skip: set[tuple[int, int]] = frozenset()) -> tuple[Load, ...]:
    """Load k of every comparison (in a shuffled order), then load k + 1: each comparison's
    loads spread over the whole run. A shuffle per block, so that no comparison always runs
    right after another. `skip`: (comparison, load) already measured (resume)."""
    rng = random.Random(seed)
    loads = []
    for number in range(max((c.opts.instances for c in comparisons), default=0)):
        block = [Load(i, number) for i, c in enumerate(comparisons)
                 if c.measured and number < c.opts.instances and (i, number) not in skip]
        rng.shuffle(block)
        loads += block
    return tuple(loads)


def plan(comparisons: list[Comparison], cpu: int | None, run_id: str | None = None, host: Host | None = None,
         done: set[tuple] = frozenset(), precision: float | None = None, budget_s: float | None = None) -> Plan:
    """The plan of a run. `done` (resume): (configuration key, load number) pairs a result file
    holds, with load number None for a configuration it holds as unsupported."""
    run_id = run_id or results.new_run_id()
    cs = [refused(c) for c in comparisons]
    key = _key_as_stored if done else lambda s: None
    recorded = lambda s: isinstance(s, NotMeasured) and (key(s), None) in done  # noqa: E731
    cs = tuple(replace(c, sides=tuple(s for s in c.sides if not recorded(s))) for c in cs)
    skip = {(i, k) for i, c in enumerate(cs) for k in range(c.opts.instances)
            if all((key(s), k) in done for s in c.measured)}
    if precision is not None and not 0 < precision < 1:
        raise BadInput(f"--precision {precision:g} is outside (0, 1): a relative half-width of each ratio's CI")
    if budget_s is not None and budget_s <= 0:
        raise BadInput(f"--budget {budget_s:g} must be a positive number of seconds")
    return Plan(run_id, cs, schedule(list(cs), zlib.crc32(run_id.encode()), skip), host or Host.here(),
                resolve_cpu(cpu), precision, budget_s)


def _key_as_stored(spec) -> tuple:
    """A spec's configuration key as its rows read back (with the values the store implies)."""
    return results.config_key(results.make_table([spec.config_fields()], "", {}).to_pylist()[0])


def done_loads(path: Path) -> set[tuple]:
    """What a result file holds, for resume: (configuration key, load number) of its measured
    loads, (configuration key, None) of its unsupported configurations. Loads that ended in an
    error are measured again."""
    if not path.exists():
        return set()
    df = results.read_file(path).to_pandas()
    df = df[df["strategy"] != "control"]
    key = lambda row: results.config_key(dict(zip(results.CONFIG_KEYS, row)))  # noqa: E731
    ok = df[(df["status"] == "ok") & df["instance"].notna()][[*results.CONFIG_KEYS, "instance"]].drop_duplicates()
    unsupported = df[df["status"] == "unsupported"][results.CONFIG_KEYS].drop_duplicates()
    return ({(key(row[:-1]), int(row[-1])) for row in ok.itertuples(index=False)}
            | {(key(row), None) for row in unsupported.itertuples(index=False)})


# --- execution --------------------------------------------------------------------------------

def execute(p: Plan, write: Callable[[list[Row]], None], progress: Progress | None = None,
            errors: str = "raise") -> None:
    """Run every load of the plan, in order; each load's rows go to `write` as it ends. The
    unmeasured sides' rows come first. errors="row": a failing comparison becomes one error row
    per side and its later loads are skipped (a sweep goes on); "raise": the error ends the run,
    what was written stays. With a precision target (Plan.precision), once the planned loads
    are done, blocks of one more load of every comparison short of it follow, as long as the
    next block fits in the budget (docs/method.md, "Precision on demand")."""
    require_bpf_privilege()
    progress = progress or Progress()
    progress.start(p.samples())
    write([_frozen({**s.config_fields(), "status": "unsupported", "message": s.reason,
                    "comparison": f"{p.run_id}/{i}"})
           for i, c in enumerate(p.comparisons) for s in c.not_measured if s.fields])
    calibration: dict[int, object] = {}
    failed: set[int] = set()
    taken: dict[int, list[Row]] = {}  # each comparison's rows, for the precision it reached
    seconds: dict[int, list[float]] = {}  # each comparison's loads' durations, for the budget
    started, total = time.monotonic(), p.samples()
    pending = list(p.loads)
    with pinned_to(p.cpu):
        while pending:
            for load in pending:
                c = p.comparisons[load.comparison]
                if load.comparison in failed:
                    progress.advance(_samples_per_load(c))
                    continue
                t0 = time.monotonic()
                try:
                    rows, calibration[load.comparison] = measure_load(p, load, calibration.get(load.comparison),
                                                                      progress.advance)
                except MapbenchError as exc:
                    if errors == "raise":
                        raise
                    failed.add(load.comparison)
                    rows = [_frozen({**s.config_fields(), "position": i, "status": "error", "message": str(exc),
                                     "comparison": f"{p.run_id}/{load.comparison}"})
                            for i, s in enumerate(c.measured)]
                if p.precision is not None:  # what the rows were asked to reach: the report says who did
                    rows = [_frozen({**r, "precision_target": p.precision}) for r in rows]
                seconds.setdefault(load.comparison, []).append(time.monotonic() - t0)
                taken.setdefault(load.comparison, []).extend(rows)
                write(rows)
            pending = _next_block(p, taken, seconds, failed, time.monotonic() - started)
            total += sum(_samples_per_load(p.comparisons[load.comparison]) for load in pending)
            progress.start(total)


def _samples_per_load(c: Comparison) -> int:
    return c.samples() // c.opts.instances


def _next_block(p: Plan, taken: dict[int, list[Row]], seconds: dict[int, list[float]], failed: set[int],
                spent_s: float) -> list[Load]:
    """One more load of each comparison whose widest interval is still above the precision
    target, the nearest to it first (the likeliest to reach it: a width falls as one over the
    root of the loads), as many as fit in what is left of the budget (each costs the median of
    its loads so far); shuffled as the plan's blocks."""
    if p.precision is None:
        return []
    loads = {i: max(int(r["instance"]) for r in rows if r.get("instance") is not None) + 1
             for i, rows in taken.items() if i not in failed}
    widths = {i: half_width(taken[i]) for i in loads if loads[i] < MAX_LOADS_FACTOR * p.comparisons[i].opts.instances}
    short = sorted((i for i in widths if widths[i] > p.precision), key=lambda i: widths[i])
    left = math.inf if p.budget_s is None else p.budget_s - spent_s
    block = []
    for i in short:
        cost = statistics.median(seconds[i])
        if cost <= left:
            block.append(Load(i, loads[i]))
            left -= cost
    random.Random(zlib.crc32(f"{p.run_id}/{spent_s}".encode())).shuffle(block)
    return block


def half_width(rows: list[Row]) -> float:
    """The widest relative half-width of a comparison's 95 % ratio intervals (of each side's ratio
    to the first side); inf where a ratio has no interval yet, 0 for a comparison of one side
    (no ratio: nothing for --precision to reach)."""
    from mapbench.results.summary import head_to_head

    ratios = head_to_head(results.make_table([dict(r) for r in rows], "", {}))
    return max(((r["ci_high"] - r["ci_low"]) / 2 / r["ratio"] if r["ratio"] and r["ci_low"] is not None
                else math.inf for r in ratios), default=0.0)


def measure_load(p: Plan, load: Load, calibration, on_sample: Callable[[], None]) -> tuple[list[Row], object]:
    """One load of one comparison: every side's build and one control build per control key,
    loaded together, calibrated (on the comparison's first load), sampled in rotating order;
    each side's figures net of its control's medians in this load. A take of a sample that
    interference hit (steal, preemption, migration, CPU pressure) is taken again in its place,
    warm-up samples aside (docs/method.md, "Interference")."""
    c = p.comparisons[load.comparison]
    engine, opts = ENGINES[c.engine], c.opts
    sides = list(c.measured)
    started = dt.datetime.now(dt.timezone.utc)
    with ExitStack() as stack:
        probe = stack.enter_context(interference.Probe(p.cpu))  # on this, the measuring thread
        session = stack.enter_context(engine.session(sides, opts, p.host))
        builds = [(position, stack.enter_context(engine.open(spec, False, load.number)))
                  for position, spec in enumerate(sides)]
        controls = {}
        for spec in sides:  # a control takes the first such side's configuration (its key stream)
            key = spec.control_key()
            if key is not None and key not in controls:
                controls[key] = stack.enter_context(engine.open(spec, True, load.number))
        every = builds + [(None, b) for b in controls.values()]
        calibration = engine.calibrate([b for _, b in every], opts, calibration)
        taken: dict[int, list] = {id(b): [] for _, b in every}
        for number in range(opts.warmup + opts.samples):
            retakes = 0 if number < opts.warmup else interference.MAX_RETAKES  # warm-ups are never summarised
            for order, (_, b) in enumerate(rotation(every, number, load.number)):
                s, seen, retaken = probe.take(functools.partial(engine.sample, b, number, calibration, session),
                                              retakes)
                taken[id(b)].append((order, s, load_avg_1m(), {**seen.columns(), "retakes": retaken,
                                                               "interfered": seen.hit}))
                on_sample()
    medians = {key: _medians(engine, [s for _, s, _, _ in taken[id(b)][opts.warmup:]]) for key, b in controls.items()}
    common = {"comparison": f"{p.run_id}/{load.comparison}", "instance": load.number,
              "load_id": f"{p.run_id}/{load.comparison}/{load.number}", "load_started_at": started,
              "status": "ok", "message": ""}
    rows = []
    for position, b in every:
        control = None if position is None else medians.get(b.spec.control_key())
        for number, (order, s, load_avg, seen) in enumerate(taken[id(b)]):
            for r in engine.rows(b, s, control):
                rows.append(_frozen({"cpu": p.cpu, **common, **r, "position": position, "run_order": order,
                                     "sample": number, "warmup": number < opts.warmup, "load_avg_1m": load_avg,
                                     **seen}))
    return rows, calibration


def _medians(engine: Engine, samples: list) -> dict[str, float]:
    figures: dict[str, list[float]] = {}
    for s in samples:
        for name, values in engine.control_figures(s).items():
            figures.setdefault(name, []).extend(values)
    return {name: statistics.median(values) for name, values in figures.items()}


def _frozen(row: dict) -> Row:
    return types.MappingProxyType(row)


# --- runs into files --------------------------------------------------------------------------

def check_output(path: Path) -> None:
    """Fail before measuring, not after: the file must be writable Parquet of our schema."""
    results.check_path(path)
    if path.exists():
        results.read_file(path)
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise BadInput(f"--out {str(path)!r}: directory {str(parent)!r} is not writable")


def run_into(p: Plan, path: Path | None, progress: Progress | None = None, errors: str = "raise") -> pa.Table:
    """Execute a plan, each load's rows appended to `path` (if given) as the load ends; all the
    rows, as one table."""
    env = run_environment()
    tables: list[pa.Table] = []

    def write(rows: list[Row]) -> None:
        if not rows:
            return
        table = results.make_table([dict(r) for r in rows], p.run_id, env)
        if path is not None:
            results.write(path, table)
        tables.append(table)

    execute(p, write, progress, errors)
    return pa.concat_tables(tables) if tables else results.make_table([], p.run_id, env)


def partial_path(root: Path, run_id: str) -> Path:
    """Where a run of the dataset at `root` is written load by load until it is whole (then it
    moves into the dataset): beside the dataset, so a crash loses nothing and no half run is
    ever in it."""
    return Path(root).parent / "partial" / f"{run_id}.parquet"


def run_sweep(config: str | Path | None, out_path: str | Path | None, cpu: int | None,
              progress: Progress | None = None, root: Path = DATASET, precision: float | None = None,
              budget_s: float | None = None) -> Path:
    """A sweep file measured into out_path (resumed when it exists), or, without one, into the
    dataset at `root`; returns the file's path. precision and budget_s: as given, else the
    sweep file's [measure] ones."""
    host = Host.here()
    config = config or DEFAULT_SWEEP
    found = comparisons_from_sweep(config, host)
    settings = sweep.run_settings(config)
    precision = precision if precision is not None else settings["precision"]
    budget_s = budget_s if budget_s is not None else settings["budget_s"]
    run_id = results.new_run_id()
    path = Path(out_path or partial_path(root, run_id))
    check_output(path)
    require_bpf_privilege()
    run_into(plan(found, cpu, run_id, host, done_loads(path), precision, budget_s), path, progress, errors="row")
    if out_path is None:
        [path] = dataset.import_files(root, [path])
    return path


def measure(sides: list, opts: MeasureOptions) -> list[Row]:
    """The rows of one comparison of these sides (of one engine), measured now: for library
    callers and tests."""
    engine = sides[0].config_fields()["engine"]
    rows: list[Row] = []
    execute(plan([Comparison(engine, tuple(sides), opts.validate())], opts.cpu), rows.extend)
    return rows
