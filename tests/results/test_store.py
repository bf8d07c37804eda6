import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapbench.errors import BadInput
from mapbench.results import store as results

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
row = st.fixed_dictionaries({
    "engine": st.sampled_from(["kernel", "syscall", "attached"]),
    "strategy": st.sampled_from(["hash", "bloom", "control", "task_storage"]),
    "op": st.text(min_size=1, max_size=10),
    "map_size": st.integers(min_value=1, max_value=2**32 - 1),
    "hit_ratio": st.floats(min_value=0, max_value=1),
    "sample": st.integers(min_value=0, max_value=2**31 - 1),
    "warmup": st.booleans(),
    "ops": st.integers(min_value=0, max_value=2**63 - 1),
    "elapsed_ns": st.integers(min_value=0, max_value=2**63 - 1),
    "ns_per_op": finite,
    "bloom_fp_rate": st.none() | st.floats(min_value=0, max_value=1),
    "map_memory_bytes": st.none() | st.integers(min_value=0, max_value=2**62),
    "message": st.text(),
})


@settings(max_examples=50)
@given(st.lists(row, min_size=1, max_size=20))
def test_rows_survive_a_parquet_round_trip_exactly(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("rt") / "r.parquet"
    table = results.make_table(rows, "run-1", {"host": "h"})
    results.write(path, table, append=False)
    back = results.read(path).to_pylist()
    assert len(back) == len(rows)
    for written, read in zip(rows, back):
        for key, value in written.items():
            got = read[key]
            if isinstance(value, float):
                assert got == value or (math.isnan(value) and math.isnan(got))
            else:
                assert got == value


def test_append_keeps_earlier_rows(tmp_path):
    path = tmp_path / "r.parquet"
    results.write(path, results.make_table([{"sample": 1}], "a", {}))
    results.write(path, results.make_table([{"sample": 2}], "b", {}))
    assert results.read(path).column("run_id").to_pylist() == ["a", "b"]


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "r.parquet"
    results.write(path, results.make_table([{"sample": 1}], "a", {}))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput, match="not a readable Parquet file"):
        results.read(path)


def test_foreign_parquet_is_refused(tmp_path):
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), path)
    with pytest.raises(BadInput, match="not a mapbench result file"):
        results.read(path)


def test_unknown_schema_version_is_refused(tmp_path):
    path = tmp_path / "future.parquet"
    table = results.make_table([{"sample": 1}], "a", {})
    table = table.replace_schema_metadata({results.SCHEMA_KEY: b"99"})
    pq.write_table(table, path)
    with pytest.raises(BadInput, match="schema version 99"):
        results.read(path)


def test_directory_reads_as_one_dataset(tmp_path):
    for name in ("a", "b"):
        results.write(tmp_path / f"{name}.parquet", results.make_table([{"sample": 0}], name, {}))
    assert sorted(results.read(tmp_path).column("run_id").to_pylist()) == ["a", "b"]


def test_missing_file(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        results.read(tmp_path / "nope.parquet")


def test_older_files_read_as_the_configurations_they_measured():
    """A file from before the shape and producer axes (the committed A/A pair) reads with the
    values those rows had: 4-byte keys, full maps, one producer, hash types preallocated."""
    from mapbench.measure.strategies import STRATEGIES

    assert set(results.PREALLOC_CHOICE) == {s.name for s in STRATEGIES.values() if "no_prealloc" in s.params}
    real = Path(__file__).resolve().parents[2] / "data" / "fixtures" / "real" / "first.parquet"
    df = results.read(real).to_pandas()
    hashes = df[(df.engine == "kernel") & (df.strategy == "hash")]
    assert (hashes.no_prealloc == False).all()  # noqa: E712
    assert df[df.strategy == "bloom"].no_prealloc.isna().all()
    assert (df.key_size == 4).all() and (df.fill == 1.0).all() and (df.producers == 1).all()
    assert (df.seed == 0).all()  # --seed's default: the key sets those runs drew


def test_runs_with_different_seeds_are_different_configurations(tmp_path):
    """Another seed draws other key sets: its figures are not pooled with the first seed's."""
    from mapbench.results.summary import summaries

    def measured(seed, ns):
        rows = [{"engine": "kernel", "strategy": "hash", "op": "lookup", "map_size": 1000, "seed": seed,
                 "instance": 0, "sample": s, "warmup": False, "status": "ok", "ns_per_op": ns} for s in range(3)]
        return results.make_table(rows, f"run-{seed}", {"host": "h"})

    for seed, ns in ((0, 100.0), (7, 300.0)):
        results.write(tmp_path / f"{seed}.parquet", measured(seed, ns), append=False)
    records = summaries(results.read(tmp_path))
    assert sorted((r["seed"], r["median_ns_per_op"]) for r in records) == [(0, 100.0), (7, 300.0)]


def test_attached_rows_without_a_mode_read_as_the_figure_they_hold():
    """Run stats of every event (before the load's events were timed inside the programs) and
    the load's events are other figures: other configurations, never matched by diff."""
    table = pa.table({"engine": ["attached", "attached", "kernel"], "mode": pa.array([None, None, None], pa.string()),
                      "target_event_share": [None, 0.98, None]})
    assert results.as_measured(table)["mode"].to_pylist() == ["run stats", "load events", "mixed"]
