"""The result dataset, history and change points (issue 13): layout, reads by pyarrow and
DuckDB, write-once appends, imports, pruned scans, and steps found where they are and nowhere else."""

import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from conftest import run_cli
from mapbench.errors import BadInput
from mapbench.results import dataset, history
from mapbench.results import store as results

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("make_dataset", ROOT / "data" / "fixtures" / "make_dataset.py")
make_dataset = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_dataset)
REAL = ROOT / "data" / "fixtures" / "real" / "first.parquet"


@pytest.fixture(scope="module")
def runs200(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    make_dataset.make(root, 200)
    return root


def test_layout_is_hive_partitioned_by_kernel_and_machine_one_file_per_run(runs200):
    files = dataset.files(runs200)
    assert len(files) == 200
    for f in files:
        kernel, machine = f.parent.parent.name, f.parent.name
        assert re.fullmatch(r"kernel=6\.\d+\.0-fixture", kernel)
        assert machine in {f"machine={m}" for m in make_dataset.MACHINES.values()}
        assert f.name == f"{results.read_file(f).column('run_id')[0].as_py()}.parquet"
    # pyarrow reads the layout unchanged, partitions as columns beside the files' own
    table = ds.dataset(runs200, format="parquet", partitioning="hive").to_table(columns=["kernel", "machine",
                                                                                        "kernel_release"])
    assert set(table.column("kernel").to_pylist()) == set(make_dataset.KERNELS)
    assert table.column("kernel").to_pylist() == table.column("kernel_release").to_pylist()
    # and mapbench's own reader (every file's schema version checked) takes the directory
    assert results.read(runs200).num_rows == table.num_rows


def test_appending_never_rewrites_a_file_and_copies_merge_without_coordination(runs200, tmp_path):
    one = dataset.files(runs200)[0]
    before = one.stat().st_mtime_ns
    assert dataset.add(runs200, results.read_file(one)) == [one]  # the same rows again: skipped
    assert one.stat().st_mtime_ns == before
    altered = results.read_file(one).slice(0, 5)
    with pytest.raises(BadInput, match="exists with other rows: a run id is written once"):
        dataset.add(runs200, altered)
    # two machines' datasets copied together: the union of their files
    other = tmp_path / "other"
    make_dataset.make(other, 3, seed=9)
    merged = tmp_path / "merged"
    shutil.copytree(runs200, merged)
    shutil.copytree(other, merged, dirs_exist_ok=True)  # same run ids, same rows: identical files
    assert len(dataset.files(merged)) == 200


def test_import_moves_single_files_in_and_old_files_stay_readable(tmp_path):
    loose = tmp_path / "loose.parquet"
    shutil.copy(REAL, loose)
    root = tmp_path / "results"
    res = run_cli("import", str(loose), "--dataset", str(root))
    assert res.returncode == 0, res.stderr
    assert not loose.exists()
    [moved] = dataset.files(root)
    assert moved.parent.name == "machine=legacy-amd-epyc-2cpu-vm" and moved.parent.parent.name.startswith("kernel=")
    assert results.read_file(moved).equals(results.read_file(REAL))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    res = run_cli("import", str(bad), "--dataset", str(root))
    assert res.returncode == 2 and "is not a readable Parquet file" in res.stderr
    assert bad.exists()


def test_query_runs_sql_over_the_results_view(runs200):
    res = run_cli("query", "SELECT kernel, count(DISTINCT run_id) AS runs FROM results GROUP BY kernel "
                  "ORDER BY kernel", "--dataset", str(runs200), "--format", "csv")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["kernel,runs", "6.1.0-fixture,60", "6.12.0-fixture,60", "6.18.0-fixture,80"]
    res = run_cli("query", "SELECT nope FROM results", "--dataset", str(runs200))
    assert res.returncode == 2 and res.stderr.startswith("mapbench: error: query:")


def test_a_kernel_filter_reads_only_that_partition_and_the_columns_named(runs200):
    con = dataset.connect(runs200)
    sql, params = history.history_sql({"strategy": "hash", "map_size": 1_000_000}, "6.1.0-fixture", None)
    plan = "\n".join(r[1] for r in con.execute("EXPLAIN ANALYZE " + sql, params).fetchall())
    scanned, total = map(int, re.search(r"Scanning Files: (\d+)/(\d+)", plan).groups())
    assert (scanned, total) == (60, 200), plan
    projected = re.search(r"Projections:(.*?)(?:Filters|File Filters|Scanning)", plan, re.S).group(1)
    assert "delay_hist" not in projected and "ns_per_op" in projected


def test_history_marks_the_injected_step_and_names_what_changed(runs200):
    [series] = history.history(runs200, {"strategy": "hash", "map_size": 1_000_000, "op": "lookup"})
    assert len(series["runs"]) == 200
    [step] = series["steps"]
    assert abs(step.index - make_dataset.STEP_AT) <= 1
    assert step.ratio == pytest.approx(make_dataset.STEP, rel=0.05)
    # the object changed at the step and nowhere else; the kernel changed there too, but also from
    # 6.1 to 6.12 within the old level, without a step; the machines alternate: none of those is named
    assert step.changed == {"object_sha256": ("sha-old", "sha-new")}
    # the configurations without a step: none found
    for strategy, size in (("hash", 1000), ("bloom", 1_000_000), ("task_storage", 1)):
        [s] = history.history(runs200, {"strategy": strategy, "map_size": size})
        assert s["steps"] == [], (strategy, s["steps"])


def test_history_command_prints_runs_steps_and_a_plot(runs200, tmp_path):
    res = run_cli("history", "--dataset", str(runs200), "--map", "hash", "--size", "1e6", "--op", "lookup",
                  "--kernel", "6.18.0-fixture", "--plot", str(tmp_path / "h.png"))
    assert res.returncode == 0, res.stderr
    assert "80 run(s)" in res.stderr and (tmp_path / "h.png").exists()
    res = run_cli("history", "--dataset", str(runs200), "--map", "hash", "--size", "1e6", "--op", "lookup")
    assert "step x1.2" in res.stdout and "object_sha256 sha-old -> sha-new" in res.stdout
    res = run_cli("history", "--dataset", str(runs200), "--map", "hash", "--size", "1e6", "--json")
    [step] = json.loads(res.stdout)["steps"]
    assert step["changed"] == {"object_sha256": ["sha-old", "sha-new"]}
    res = run_cli("history", "--dataset", str(runs200), "--map", "btree")
    assert res.returncode == 2 and "no measured rows match strategy=btree" in res.stderr


def test_a_step_names_only_what_changed_there_and_stayed_the_same_on_both_sides():
    def runs(**values):
        n = max(len(v) for v in values.values())
        return [{c: v[i] for c, v in values.items()} for i in range(n)]

    before = runs(kernel_release=["6.1"] * 3, clang_version=["14", "15", "15"], host=["a", "b", "a"],
                  object_sha256=["x"] * 3, libbpf_version=["1.1"] * 3)
    after = runs(kernel_release=["6.6"] * 3, clang_version=["16"] * 3, host=["b", "a", "b"],
                 object_sha256=["y", "y", "z"], libbpf_version=["1.1"] * 3)
    names = ["kernel_release", "clang_version", "host", "object_sha256", "libbpf_version"]
    # clang changed within the old level, the host alternates, the object changed again after the
    # step, libbpf never changed: only the kernel is named
    assert history.changed_at(before, after, names) == {"kernel_release": ("6.1", "6.6")}
    assert history.changed_at(before[-1:], after[:1], names) == {"kernel_release": ("6.1", "6.6"),
                                                                 "clang_version": ("15", "16"), "host": ("a", "b"),
                                                                 "object_sha256": ("x", "y")}


@pytest.mark.parametrize("seed", range(20))
def test_pure_noise_has_no_step_and_an_injected_one_is_found(seed):
    rng = np.random.default_rng(seed)
    noise = 100 * np.exp(rng.normal(0, 0.05, 60) + rng.standard_t(3, 60) * 0.01)
    assert history.change_points(noise) == []
    stepped = noise * np.where(np.arange(60) >= 37, 1.3, 1.0)
    found = history.change_points(stepped)
    assert len(found) == 1 and abs(found[0] - 37) <= 1, found


def test_one_outlier_run_is_not_a_step():
    series = np.full(40, 100.0) * np.exp(np.random.default_rng(1).normal(0, 0.03, 40))
    series[20] *= 2.5
    assert history.change_points(series) == []
