"""The result dataset: every run's rows in one hive-partitioned Parquet dataset
(docs/method.md, "Dataset and history").

    data/results/kernel=<kernel release>/host=<host>/<run_id>.parquet

Partitioned by kernel and host because those are the two questions asked of it ("did this
kernel make it slower?", "on which machine?"): a query that names a kernel or a host reads only
those directories. A file is one run of one kernel and host, named by its run id (unique), and
written once, by an exclusive create: appending from several machines is copying their
directories together, with nothing to coordinate and no file ever rewritten. The files are
ordinary mapbench result files (schema version in their metadata, `host` and `kernel_release`
columns inside), so pyarrow, DuckDB and Spark read the dataset unchanged and `mapbench diff`
reads any one file. DuckDB answers the queries (`history`, `query`) over a `results` view.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import results
from .errors import BadInput

PARTITION_KEYS = (("kernel", "kernel_release"), ("host", "host"))  # (directory key, column)


def partition_value(value) -> str:
    """A partition value as a path segment: '/' and '=' would break the layout."""
    return re.sub(r"[/=\\\\]", "_", str(value)) if value is not None else "unknown"


def partition_dir(root: Path, row: dict) -> Path:
    path = root
    for key, column in PARTITION_KEYS:
        path = path / f"{key}={partition_value(row.get(column))}"
    return path


def add(root: Path, table: pa.Table) -> list[Path]:
    """Write a result table into the dataset: one new file per (run, kernel, host). A file that
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
        meta = pq.read_schema(f).metadata or {}
        version = meta.get(results.SCHEMA_KEY)
        if version is None or version.decode() != results.SCHEMA_VERSION:
            raise BadInput(f"{f} has result schema version {version.decode() if version else 'none'}; this "
                           f"mapbench reads version {results.SCHEMA_VERSION}")
    return found


def connect(root: Path):
    """A DuckDB connection with the view `results` over the dataset (hive partitions `kernel`
    and `host` pruned by filters on them; columns read only when a query names them)."""
    import duckdb

    root = Path(root)
    check(root)
    con = duckdb.connect()
    glob = str(root / "**" / "*.parquet").replace("'", "''")
    con.execute(f"CREATE VIEW results AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true, "
                "union_by_name = true)")
    return con
