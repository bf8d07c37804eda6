"""The result dataset: every run's rows in one hive-partitioned Parquet dataset
(docs/method.md, "Dataset and history").

    data/results/kernel=<kernel release>/machine=<machine id>/<run_id>.parquet

Partitioned by kernel and machine because those are the two questions asked of it ("did this
kernel make it slower?", "on which machine?"): a query that names a kernel or a machine reads
only those directories. The machine is its fingerprint's id (machine.py), not the hostname,
which every VM of this project's kind shares. A file is one run of one kernel and machine,
named by its run id (unique), and written once, by an exclusive create: appending from several
machines is copying their directories together, with nothing to coordinate and no file ever
rewritten. The files are ordinary mapbench result files (schema version in their metadata,
`machine` and `kernel_release` columns inside), so pyarrow, DuckDB and Spark read the dataset
unchanged and `mapbench diff` reads any one file. DuckDB answers the queries (`history`,
`query`) over a `results` view.

Datasets from before fingerprints are laid out kernel=<release>/host=<host>/: they still read
(the view adds their legacy machine), and `mapbench import` moves their files to the layout
above.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mapbench.errors import BadInput
from mapbench.results import store as results

PARTITION_KEYS = (("kernel", "kernel_release"), ("machine", "machine"))  # (directory key, column)
OLD_LAYOUT = "host="  # the second level before machine fingerprints (schema 1): kernel=<release>/host=<host>/


def partition_value(value) -> str:
    """A partition value as a path segment: '/' and '=' would break the layout."""
    return re.sub(r"[/=\\\\]", "_", str(value)) if value is not None else "unknown"


def partition_dir(root: Path, row: dict) -> Path:
    path = root
    for key, column in PARTITION_KEYS:
        path = path / f"{key}={partition_value(row.get(column))}"
    return path


def add(root: Path, table: pa.Table) -> list[Path]:
    """Write a result table into the dataset: one new file per (run, kernel, machine). A file that
    exists already is never rewritten: the same rows are skipped, other rows are an error."""
    written = []
    keys = ["run_id", *(c for _, c in PARTITION_KEYS)]
    groups = table.group_by(keys).aggregate([]).to_pylist()
    for group in groups:
        mask = None
        for k in keys:
            eq = pc.is_null(table[k]) if group[k] is None else pc.equal(table[k], group[k])
            mask = eq if mask is None else pc.and_(mask, eq)
        part = table.filter(mask)
        target = partition_dir(root, group) / f"{partition_value(group['run_id'])}.parquet"
        written.append(_write_once(target, part))
    return written


def _write_once(target: Path, table: pa.Table) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, target)  # fails if it exists: never replaces a file
        except FileExistsError:
            if not results.read_file(target).equals(results.read_file(Path(tmp))):
                raise BadInput(f"{target} exists with other rows: a run id is written once") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def import_files(root: Path, files: list[Path], keep: bool = False) -> list[Path]:
    """Move result files (schema checked) into the dataset; `keep`: copy them instead."""
    written = []
    for f in files:
        table = results.read_file(Path(f))
        written += add(root, table)
        if not keep:
            Path(f).unlink()
    return written


def files(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*.parquet") if not p.name.startswith("."))


def check(root: Path) -> list[Path]:
    """Every file's schema version, from its footer only (as results.read_file checks)."""
    found = files(root)
    if not found:
        raise BadInput(f"no result files in the dataset {root}")
    for f in found:
        results.check_version(f, (pq.read_schema(f).metadata or {}).get(results.SCHEMA_KEY))
    return found


def connect(root: Path):
    """A DuckDB connection with the view `results` over the dataset (hive partitions `kernel`
    and `machine` pruned by filters on them; columns read only when a query names them). Files
    in the layout before fingerprints (kernel=/host=/) join the view with their legacy machine;
    a column no file has yet (one added since they were written) is in the view, null."""
    import duckdb

    root = Path(root)
    found = check(root)
    old = [f for f in found if f.parent.name.startswith(OLD_LAYOUT)]
    con = duckdb.connect()
    scan = "read_parquet({}, hive_partitioning = true, union_by_name = true)"
    view = f"SELECT * FROM {scan.format(_sql_text(root / '**' / '*.parquet'))}"
    if old:
        old_scan = scan.format("[" + ", ".join(map(_sql_text, old)) + "]")
        keys = results.LEGACY_MACHINE_KEYS
        recorded = con.sql(f"SELECT DISTINCT {', '.join(keys)} FROM {old_scan}").to_arrow_table()
        con.register("legacy_machines", results.as_measured(recorded.append_column(
            "machine", pa.nulls(recorded.num_rows, pa.string())).append_column(
            "machine_name", pa.nulls(recorded.num_rows, pa.string()))))
        same = " AND ".join(f"o.{k} IS NOT DISTINCT FROM l.{k}" for k in keys)
        view = f"SELECT o.*, l.machine, l.machine_name FROM {old_scan} o JOIN legacy_machines l ON {same}"
        new = [f for f in found if f not in old]
        if new:
            view = f"SELECT * FROM {scan.format('[' + ', '.join(map(_sql_text, new)) + ']')} UNION ALL BY NAME {view}"
    con.execute(f"CREATE VIEW scanned AS {view}")
    have = set(con.sql("SELECT * FROM scanned LIMIT 0").columns)
    absent = "".join(f", CAST(NULL AS {_sql_type(kind)}) AS {name}" for name, kind in results.FIELDS
                     if name not in have)
    con.execute(f"CREATE VIEW results AS SELECT *{absent} FROM scanned")
    return con


def _sql_type(kind: pa.DataType) -> str:
    if pa.types.is_timestamp(kind):
        return "TIMESTAMPTZ"
    if pa.types.is_list(kind):
        return _sql_type(kind.value_type) + "[]"
    return {pa.string(): "VARCHAR", pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.float64(): "DOUBLE",
            pa.bool_(): "BOOLEAN"}[kind]


def _sql_text(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"
