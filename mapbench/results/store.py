"""The Parquet result store: one row per sample, environment in every row, schema version in
the file metadata. Writes are atomic (temp file + rename), so a reader never sees half a file
and a crash keeps the previous content; appending rewrites the file with the new rows."""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mapbench.errors import BadInput
from mapbench.measure import machine
from mapbench.results import columns

SCHEMA_VERSION = "3"
SCHEMA_KEY = b"mapbench.schema_version"
# Versions this mapbench reads. 1: before machine fingerprints; its rows read with the id and
# name derived from what they recorded (machine.legacy_id), the other fingerprint columns null.
READABLE_VERSIONS = ("1", "2", "3")

# Rows are dicts with the registry's columns (missing ones are null); every list below is derived from it.
FIELDS = [(c.name, c.type) for c in columns.COLUMNS]
SCHEMA = pa.schema(FIELDS, metadata={SCHEMA_KEY: SCHEMA_VERSION.encode()})
COLUMNS = [name for name, _ in FIELDS]

# The columns that say which configuration a row measures, in the order a label names them:
# summaries, diff, resume and labels all derive from it.
CONFIG_KEYS = list(columns.CONFIGURATION_ORDER)
# Configuration columns added after rows were first written, with the value every row had
# before: a row without one (an older file, an engine without that axis) reads as that value,
# so configurations measured before and after the axis existed still match in diff.
SHAPE_DEFAULTS = {c.name: c.implied for c in columns.COLUMNS if c.implied is not None}
# Engines whose rows never had a shape (key size, fill, producers): a user's own program has none
SHAPELESS_ENGINES = ("own",)
# The kernel strategies that take --no-prealloc (strategies.py; a test keeps the two in step):
# their rows from before the axis have no_prealloc null, and were preallocated.
PREALLOC_CHOICE = ("hash", "percpu_hash")
# The kernel engine's rows from before --mode and --implementation: the engine's own builds, in a
# mode of their own, "mixed": independent ops, overlapped as far as the loop around each happened to
# allow (docs/method.md, "Modes"), so that they match neither mode's figures in diff and history.
KERNEL_DEFAULTS = {"mode": "mixed", "implementation": "mapbench",
                   # the accessor was always inlined, its pointers never restrict, before --calls, --restrict
                   "calls": "inline", "restrict": "off"}
# The attached engine's rows from before --run-stats: every sample ran with BPF run stats on.
ATTACHED_DEFAULTS = {"run_stats": "on"}
LRU_LISTS_CHOICE = ("lru_hash", "lru_percpu_hash")  # the strategies that take --lru-lists
# The environment columns: where and with what a row was measured.
ENV_KEYS = columns.named(columns.ENVIRONMENT)
LEGACY_MACHINE_KEYS = list(machine.LEGACY_MACHINE_KEYS)
# A load: samples of one load share its maps and hash seeds, so they are not independent.
LOAD_KEYS = ["run_id", *columns.named(columns.LOAD)]


def measured(df):
    """The rows that are measurements of a configuration: no control, no warm-up, status ok."""
    return df[(df["strategy"] != "control") & (df["warmup"] == False) & (df["status"] == "ok")]  # noqa: E712


def plain(value):
    """numpy/pandas scalars and NaN as plain Python values (None for missing)."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):  # pandas' missing markers
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


INTEGER_COLUMNS = {name for name, kind in FIELDS if pa.types.is_integer(kind)}


def config_of(row) -> dict:
    """The configuration of a row (a dict, a pandas row or a group key), as plain values with
    whole numbers as ints (pandas makes a column with nulls float)."""
    get = row.get if hasattr(row, "get") else row.__getitem__
    defaults = {} if plain(get("engine")) in SHAPELESS_ENGINES else SHAPE_DEFAULTS
    out = {}
    for k in CONFIG_KEYS:
        v = plain(get(k))
        if v is None:
            v = defaults.get(k)
        out[k] = int(v) if v is not None and k in INTEGER_COLUMNS else v
    return out


def config_key(fields: dict) -> tuple:
    return tuple(config_of(fields).values())


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]


def make_table(rows: Iterable[dict], run_id: str, environment: dict) -> pa.Table:
    now = dt.datetime.now(dt.timezone.utc)
    full = [{**{c: None for c in COLUMNS}, "run_id": run_id, "timestamp": now, **environment, **row}
            for row in rows]
    return as_measured(pa.Table.from_pylist(full, schema=SCHEMA))


def read(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> pa.Table:
    """A file, a directory (every *.parquet below it) or a list of them, as one table."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.rglob("*.parquet")))
        elif p.exists():
            files.append(p)
        else:
            raise BadInput(f"result file {str(p)!r} does not exist")
    if not files:
        raise BadInput(f"no Parquet files in {', '.join(map(str, paths))}")
    return pa.concat_tables([read_file(f) for f in files])


def read_file(path: Path) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadInput(f"{path} is not a readable Parquet file ({exc})") from exc
    version = (table.schema.metadata or {}).get(SCHEMA_KEY)
    if version is None:
        raise BadInput(f"{path} is not a mapbench result file (no {SCHEMA_KEY.decode()} in its metadata)")
    check_version(path, version)
    # Columns are only ever added: older files read them as null (then as_measured's values).
    for name, kind in FIELDS:
        if name not in table.column_names:
            table = table.append_column(pa.field(name, kind), pa.nulls(table.num_rows, kind))
    table = as_measured(table)
    unknown = set(table.column_names) - set(COLUMNS)
    if unknown:
        raise BadInput(f"{path} has columns this mapbench does not know ({', '.join(sorted(unknown))}): "
                       "it was written by a newer mapbench")
    return table.select(COLUMNS).cast(SCHEMA)


def as_measured(table: pa.Table) -> pa.Table:
    """A table whose rows predate a configuration column (or come from an engine without that
    axis) with the value they had: SHAPE_DEFAULTS, no_prealloc False on the strategies that
    take it, KERNEL_DEFAULTS on the kernel engine's, the attached engine's figure as its mode;
    rows from before machine fingerprints with
    their legacy machine. The one place of this rule for every reader: files, new rows, DuckDB's
    answers."""
    names = table.column_names
    shapeless = (pc.is_in(table["engine"], pa.array(SHAPELESS_ENGINES)) if "engine" in names
                 else pa.repeat(pa.scalar(False), table.num_rows))
    for name, value in SHAPE_DEFAULTS.items():
        if name in names:
            table = table.set_column(names.index(name), name,
                                     pc.if_else(shapeless, table[name], pc.fill_null(table[name], value)))
    if {"engine", "strategy", "no_prealloc"} <= set(names):
        legacy = pc.and_(pc.and_(pc.equal(table["engine"], "kernel"),
                                 pc.is_in(table["strategy"], pa.array(PREALLOC_CHOICE))),
                         pc.is_null(table["no_prealloc"]))
        filled = pc.if_else(legacy, pa.scalar(False), table["no_prealloc"])
        table = table.set_column(names.index("no_prealloc"), "no_prealloc", filled)
    for engine, defaults in (("kernel", KERNEL_DEFAULTS), ("attached", ATTACHED_DEFAULTS)):
        for name, value in defaults.items():
            if {"engine", name} <= set(names):
                legacy = pc.and_(pc.equal(table["engine"], engine), pc.is_null(table[name]))
                table = table.set_column(names.index(name), name, pc.if_else(legacy, pa.scalar(value), table[name]))
    # The attached engine's rows without a mode: without target_event_share they are from before
    # it timed the load's events inside the programs (BPF run stats of every task's events: another
    # figure, so another configuration); with it, the load's events.
    if {"engine", "mode", "target_event_share"} <= set(names):
        legacy = pc.and_(pc.equal(table["engine"], "attached"), pc.is_null(table["mode"]))
        implied = pc.if_else(pc.is_null(table["target_event_share"]), pa.scalar("run stats"), pa.scalar("load events"))
        table = table.set_column(names.index("mode"), "mode", pc.if_else(legacy, implied, table["mode"]))
    # The kernel engine's LRU hashes from before --lru-lists had one common LRU list
    if {"engine", "strategy", "lru_lists"} <= set(names):
        legacy = pc.and_(pc.and_(pc.equal(table["engine"], "kernel"),
                                 pc.is_in(table["strategy"], pa.array(LRU_LISTS_CHOICE))),
                         pc.is_null(table["lru_lists"]))
        filled = pc.if_else(legacy, pa.scalar("common"), table["lru_lists"])
        table = table.set_column(names.index("lru_lists"), "lru_lists", filled)
    return _legacy_machines(table)


def _legacy_machines(table: pa.Table) -> pa.Table:
    """Rows without a machine fingerprint (schema 1) get the id and name of what they recorded
    of their machine (machine.legacy_id, legacy_name); the fingerprint's other columns stay null."""
    from mapbench.measure import machine

    names = table.column_names
    if not {"machine", "machine_name", *LEGACY_MACHINE_KEYS} <= set(names) or not table.num_rows:
        return table
    missing = pc.or_(pc.is_null(table["machine"]), pc.is_null(table["machine_name"]))  # name: a partition's id
    if not pc.any(missing).as_py():
        return table
    recorded = table.select(LEGACY_MACHINE_KEYS).filter(missing).group_by(LEGACY_MACHINE_KEYS).aggregate([])
    for facts in recorded.to_pylist():
        rows = missing
        for k, v in facts.items():
            rows = pc.and_(rows, pc.is_null(table[k]) if v is None else pc.fill_null(pc.equal(table[k], v), False))
        for column, value in (("machine", machine.legacy_id(**facts)), ("machine_name", machine.legacy_name(**facts))):
            filled = pc.if_else(rows, pa.scalar(value), table[column])
            table = table.set_column(names.index(column), column, filled)
    return table


def check_version(path, version: bytes | None) -> None:
    """A file's schema version (from its footer) must be one this mapbench reads."""
    if version is None or version.decode() not in READABLE_VERSIONS:
        raise BadInput(f"{path} has result schema version {version.decode() if version else 'none'}; this mapbench "
                       f"reads versions {', '.join(READABLE_VERSIONS)}")


def check_path(path: Path) -> None:
    if path.suffix != ".parquet":
        raise BadInput(f"--out {str(path)!r} must end in .parquet")


def write(path: str | os.PathLike, table: pa.Table, append: bool = True) -> Path:
    """Write (or append to) a result file atomically."""
    path = Path(path)
    check_path(path)
    if append and path.exists():
        table = pa.concat_tables([read_file(path), table])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
