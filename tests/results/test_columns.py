"""The column registry (results/columns.py): every column once, and the store's schema and key
lists, the labels, the summaries' figures and history's suspects derived from it; a result set
of an engine nobody listed flows through summaries, report and diff. No kernel needed."""

import importlib

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mapbench.present import render
from mapbench.results import columns, history, summary
from mapbench.results import store as results
from mapbench.results.columns import CONFIGURATION, ENVIRONMENT, FIGURE, Column


def test_every_column_once_in_the_schemas_order():
    names = [c.name for c in columns.COLUMNS]
    assert len(names) == len(set(names))
    assert names == results.COLUMNS == results.SCHEMA.names
    assert [c.type for c in columns.COLUMNS] == list(results.SCHEMA.types)
    columns.check()


def test_the_stores_lists_are_the_registrys():
    by_role = lambda role: {c.name for c in columns.COLUMNS if c.role == role}  # noqa: E731
    assert sorted(results.CONFIG_KEYS) == sorted(by_role(CONFIGURATION))
    assert results.ENV_KEYS == [c.name for c in columns.COLUMNS if c.role == ENVIRONMENT]
    assert results.SHAPE_DEFAULTS == {"key_size": 4, "fill": 1.0, "producers": 1, "writers": 0, "seed": 0,
                                      "min_delay_us": 0}
    assert results.INTEGER_COLUMNS == {c.name for c in columns.COLUMNS if pa.types.is_integer(c.type)}
    assert results.LOAD_KEYS == ["run_id", "instance"]
    assert set(summary.CONTEXT_KEYS) < set(results.CONFIG_KEYS)
    assert summary.AGGREGATED["map_memory_bytes"] == "max" and summary.AGGREGATED["bloom_fp_rate"] == "mean"
    assert all(columns.BY_NAME[c].role == FIGURE for c in summary.AGGREGATED)


def test_a_configuration_column_needs_a_label_and_a_place_in_the_label_order():
    unlabelled = Column("ring_size", pa.int32(), CONFIGURATION)
    with pytest.raises(ValueError, match="ring_size: configuration without a label"):
        columns.check((*columns.COLUMNS, unlabelled))
    labelled = Column("ring_size", pa.int32(), CONFIGURATION, label=lambda c: f"ring {c['ring_size']}")
    with pytest.raises(ValueError, match="CONFIGURATION_ORDER"):
        columns.check((*columns.COLUMNS, labelled))
    with pytest.raises(ValueError, match="named twice: op"):
        columns.check((*columns.COLUMNS, columns.BY_NAME["op"]))
    with pytest.raises(ValueError, match="aggregate 'max' on a configuration column"):
        columns.check((*(c for c in columns.COLUMNS if c.name != "message"),
                       Column("message", pa.string(), CONFIGURATION, aggregate="max")))


CONFIG = {"engine": "kernel", "family": "membership", "strategy": "hash", "op": "lookup", "driver": "batch",
          "implementation": "mapbench", "map_size": 1000, "key_size": 4, "value_size": 8, "fill": 1.0,
          "key_distribution": "zipf", "zipf_s": 1.1, "seed": 0, "hit_ratio": 0.5, "batch_size": 16,
          "nr_hash_funcs": 3, "isa": "v3", "nr_tasks": 2, "nr_maps": 4, "no_prealloc": False, "producers": 2,
          "writers": 1, "write_op": "update", "overlap": "same", "role": "reader", "mode": "throughput",
          "working_set_bytes": 2**20, "setup": "packets of a.pcap", "min_delay_us": 5, "addr_family": "ipv4",
          "prefix_lens": "table", "calls": "subprog", "restrict": "on", "nr_programs": 16, "run_stats": "off",
          "code_layout": "spread", "working_set": 2.0, "lru_lists": "percpu", "event_size": 64, "consumer_rate": 0.0,
          "buffer_bytes": 2**18, "wakeup_every": 500}


def test_every_configuration_column_has_a_label():
    assert set(CONFIG) == set(results.CONFIG_KEYS)
    for name in results.CONFIG_KEYS:
        assert isinstance(render.LABELS[name](CONFIG), str), name
    assert render.config_label(CONFIG) == (
        "kernel hash lookup batch 16 mapbench 1,000 entries 4 B keys 8 B values fill 1 zipf keys s=1.1 seed 0 "
        "hit 0.5 k=3 v3 2 tasks 4 maps prealloc 2 producers 1 writing (update) same entries [readers] throughput mode "
        "1 MiB working set packets of a.pcap delays >= 5 us reported ipv4 table mix subprog call restrict 16 programs "
        "run stats off spread code working set 2x percpu LRU lists 64 B events consumer at full speed 256 KiB buffer "
        "a wakeup per 500 events")


@pytest.fixture
def registry(monkeypatch):
    """Add a column to the registry and derive the store from it again (put back afterwards)."""
    def add(column: Column):
        monkeypatch.setattr(columns, "COLUMNS", (*columns.COLUMNS, column))
        if column.role == CONFIGURATION:
            monkeypatch.setattr(columns, "CONFIGURATION_ORDER", (*columns.CONFIGURATION_ORDER, column.name))
        columns.check(columns.COLUMNS, columns.CONFIGURATION_ORDER)
        return importlib.reload(results)
    yield add
    monkeypatch.undo()
    importlib.reload(results)


def test_a_column_added_to_the_registry_is_in_the_schema_and_the_configuration(registry, tmp_path):
    old = tmp_path / "old.parquet"  # written before the column existed
    results.write(old, results.make_table([{"engine": "kernel", "strategy": "hash", "op": "lookup"}], "a", {}))
    store = registry(Column("ring_size", pa.int32(), CONFIGURATION, label=lambda c: f"ring {c['ring_size']}",
                            implied=64))
    assert store.SCHEMA.field("ring_size").type == pa.int32()
    assert store.CONFIG_KEYS[-1] == "ring_size" and store.SHAPE_DEFAULTS["ring_size"] == 64
    assert store.config_of({"engine": "kernel", "ring_size": 128})["ring_size"] == 128
    [row] = store.read(old).to_pylist()
    assert row["ring_size"] == 64  # what rows from before the axis had
    assert store.config_of(row)["ring_size"] == 64


def test_an_environment_column_added_to_the_registry_is_an_environment_key(registry):
    store = registry(Column("cpufreq_governor", pa.string(), ENVIRONMENT))
    assert store.ENV_KEYS[-1] == "cpufreq_governor"
    assert "cpufreq_governor" not in store.CONFIG_KEYS


def test_implied_values_fill_a_file_without_the_column(tmp_path):
    table = results.make_table([{"engine": "syscall", "strategy": "hash", "sample": 0}], "a", {})
    path = tmp_path / "old.parquet"
    pq.write_table(table.drop_columns(["key_size", "fill", "producers", "writers", "seed"]), path)
    [row] = results.read(path).to_pylist()
    assert {k: row[k] for k in results.SHAPE_DEFAULTS} == results.SHAPE_DEFAULTS


def test_history_names_the_environment_but_not_what_changes_at_every_commit():
    assert set(results.ENV_KEYS) <= set(history.ENV_COLUMNS)
    assert "object_sha256" in history.SUSPECTS and "kernel_release" in history.SUSPECTS
    assert "git_describe" in history.ENV_COLUMNS and "git_describe" not in history.SUSPECTS


def test_the_newest_isa_is_picked_from_the_data():
    assert render.newest_isa(["v1", "v3", None, "v2"]) == "v3"
    assert render.newest_isa(["v9", "v10"]) == "v10"
    assert render.newest_isa([None, float("nan")]) is None


def _toy_rows(run_id: str, ns: dict[str, float]) -> pd.DataFrame:
    """Two sides head to head of an engine no module knows ('toy'), 3 loads of 4 samples."""
    rows = [{"engine": "toy", "family": "toy", "strategy": strategy, "op": "poke", "map_size": 10, "isa": "v3",
             "comparison": "c", "position": position, "instance": load, "sample": sample, "warmup": False,
             "status": "ok", "ns_per_op": base * (1 + 0.01 * sample + 0.02 * load), "gross_ns_per_op": base + 5}
            for position, (strategy, base) in enumerate(ns.items()) for load in range(3) for sample in range(4)]
    return results.make_table(rows, run_id, {"host": "h", "kernel_release": "k"}).to_pandas()


def test_an_engine_nobody_listed_flows_through_summaries_report_and_diff():
    from mapbench.present.report import report_markdown
    from mapbench.results import diff

    base = _toy_rows("a", {"flat": 100.0, "tree": 50.0})
    records = summary.summaries(base)
    assert {r["engine"] for r in records} == {"toy"}
    assert render.summary_rows(records)
    [ratio] = summary.head_to_head(base)
    assert ratio["numerator"] == "tree" and ratio["ratio"] == pytest.approx(0.5)
    assert render.engine_note("toy").startswith("toy engine: ")
    assert render.engine_note("toy", {"toy": "toy engine: pokes."}) == "toy engine: pokes."
    text = report_markdown(base, "t", engine_notes={"toy": "toy engine: pokes."})
    assert "toy engine: pokes." in text and "| tree | flat | 0.500" in text
    assert "toy engine: see" in report_markdown(base, "t")
    # the run is diff's unit: two runs a side
    result = diff.diff(pd.concat([base, _toy_rows("a2", {"flat": 100.0, "tree": 50.0})]),
                       pd.concat([_toy_rows(run, {"flat": 200.0, "tree": 50.0}) for run in ("b", "b2")]))
    assert {tuple(c.config[k] for k in ("engine", "strategy")): c.verdict for c in result.changes} == {
        ("toy", "flat"): "slower", ("toy", "tree"): "unchanged"}
