"""mapbench diff: what it calls, what it cannot see, and how it says so. No kernel needed."""

import datetime as dt
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_cli
from mapbench.results import dataset, diff
from mapbench.results import store as results

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"
_spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
make_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_fixtures)


def fixture(name: str) -> pd.DataFrame:
    return results.read(FIXTURES / f"{name}.parquet").to_pandas()


def drifting_tables(runs: int, seed: int, drift: float = 0.02, slow: dict | None = None, name: str = "run",
                    configs=None) -> list[pa.Table]:
    """`runs` runs of the fixture configurations (make_fixtures: their loads and samples) on one
    machine and kernel, an hour apart, each run's level of each configuration off by its own
    log-normal factor of sd `drift`: run-to-run drift, which no run's loads can show."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    out = []
    for i in range(runs):
        rows = make_fixtures.rows(seed * 1000 + i, configs or make_fixtures.CONFIGS, slow, run=f"{name}{i}")
        level: dict = {}
        for r in rows:
            r["ns_per_op"] *= level.setdefault((r["engine"], r["strategy"], r["op"], r["map_size"], r["batch_size"]),
                                               rng.lognormal(0, drift))
        table = results.make_table(rows, f"{name}-{seed}-{i}", make_fixtures.ENV)
        stamp = pa.array([start + dt.timedelta(hours=i)] * table.num_rows, results.SCHEMA.field("timestamp").type)
        out.append(table.set_column(table.schema.get_field_index("timestamp"), "timestamp", stamp))
    return out


def drifting_runs(*args, **kw) -> pd.DataFrame:
    return pa.concat_tables(drifting_tables(*args, **kw)).to_pandas()


def write_runs(tables: list[pa.Table], directory: Path) -> Path:
    for table in tables:
        results.write(directory / f"{table['run_id'][0]}.parquet", table, append=False)
    return directory


@pytest.fixture(scope="module")
def three_a_side(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Base, the same code again, and a change: three runs each."""
    root = tmp_path_factory.mktemp("runs")
    return (write_runs(drifting_tables(3, 1, name="base"), root / "base"),
            write_runs(drifting_tables(3, 2, name="same"), root / "same"),
            write_runs(drifting_tables(3, 3, slow=make_fixtures.SLOWER, name="slower"), root / "slower"))


def test_a_1_3x_slowdown_is_called_with_runs_as_the_unit_and_exits_1(three_a_side):
    base, _, slower = three_a_side
    res = run_cli("diff", str(base), str(slower), "--json")
    assert res.returncode == 1, res.stderr
    changes = [json.loads(line) for line in res.stdout.splitlines()]
    called = sorted((c["engine"], c["strategy"], c["op"], c["map_size"]) for c in changes if c["verdict"] == "slower")
    assert called == [("attached", "pid_hash", "sched_event", 1000), ("kernel", "hash", "lookup", 100000),
                      ("syscall", "hash", "update", 100000)]
    assert {(c["base_runs"], c["new_runs"], c["variance_from"]) for c in changes} == {(3, 3, "runs")}
    # 1.05x is at the threshold: never called
    [pid] = [c for c in changes if c["strategy"] == "pid_hash" and c["engine"] == "kernel"]
    assert pid["verdict"] != "slower" and 1.0 < pid["ratio"] < 1.1
    assert not [c for c in changes if c["verdict"] == "faster"]


def test_three_runs_a_side_of_the_same_code_call_nothing(three_a_side):
    base, same, _ = three_a_side
    res = run_cli("diff", str(base), str(same))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 slower, 0 faster" in res.stdout


def test_one_run_a_side_without_history_calls_nothing_and_says_why(three_a_side):
    # a 1.3x slowdown between two single runs could be the machine's drift: no call, exit 0
    base, _, slower = three_a_side
    res = run_cli("diff", str(sorted(base.iterdir())[0]), str(sorted(slower.iterdir())[0]), "--json")
    assert res.returncode == 0, res.stderr
    changes = [json.loads(line) for line in res.stdout.splitlines()]
    assert {c["verdict"] for c in changes} == {diff.DRIFT_UNKNOWN}
    assert all("run drift cannot be told from a change" in c["reason"] for c in changes)
    [kernel_hash] = [c for c in changes if (c["engine"], c["strategy"], c["map_size"]) == ("kernel", "hash", 100000)]
    assert kernel_hash["ratio"] == pytest.approx(1.3, rel=0.1)  # the figure is still shown
    res = run_cli("diff", str(sorted(base.iterdir())[0]), str(sorted(slower.iterdir())[0]))
    assert "drift unknown" in res.stdout and "0 slower, 0 faster" in res.stdout


def test_one_run_a_side_takes_the_between_run_variance_from_the_history(tmp_path):
    root = tmp_path / "dataset"
    for table in drifting_tables(6, 4, name="history"):
        dataset.add(root, table)
    base = drifting_runs(1, 5, name="base")
    new = drifting_runs(1, 6, slow=make_fixtures.SLOWER, name="new")
    result = diff.diff(base, new, history=root)
    assert result.history_runs == 6
    tested = [c for c in result.changes if c.verdict != diff.DRIFT_UNKNOWN]
    assert len(tested) == len(result.changes) and {c.variance_from for c in tested} == {"history"}
    called = {(c.config["engine"], c.config["strategy"], c.config["map_size"]): c.verdict for c in result.changes
              if c.verdict in ("slower", "faster")}
    assert called == {("kernel", "hash", 100000): "slower", ("syscall", "hash", 100000): "slower",
                      ("attached", "pid_hash", 1000): "slower"}
    # the history of another machine is none of this one's
    other = base.assign(machine="another-machine")
    assert {c.verdict for c in diff.diff(other, new.assign(machine="another-machine"), history=root).changes} == {
        diff.DRIFT_UNKNOWN}


def test_a_configuration_whose_runs_cannot_see_a_change_is_inconclusive_not_unchanged(three_a_side):
    base, same, _ = three_a_side
    result = diff.diff(results.read(base).to_pandas(), results.read(same).to_pandas())
    noisy = [c for c in result.changes if c.config["engine"] == "attached" and c.config["map_size"] == 10000]
    [c] = noisy
    assert c.verdict == "inconclusive" and c.detectable > 1.3  # a 1.3x slowdown would have passed unseen
    assert "could call only" in c.reason
    # and "unchanged" means the whole CI lies inside the threshold band
    assert [c for c in result.changes if c.verdict == "unchanged"]
    for c in result.changes:
        if c.verdict == "unchanged":
            assert 1 / 1.05 <= c.ratio_ci_low and c.ratio_ci_high <= 1.05


def test_a_median_at_or_below_zero_is_inconclusive_never_slower():
    base, new = drifting_runs(2, 7, name="base"), drifting_runs(2, 8, name="new")
    pick = (base.engine == "kernel") & (base.strategy == "task_storage")
    base.loc[pick, "ns_per_op"] = -base.loc[pick, "ns_per_op"]  # a net figure below its control
    [c] = [c for c in diff.diff(base, new).changes if c.config["strategy"] == "task_storage"
           and c.config["engine"] == "kernel"]
    assert c.verdict == "inconclusive" and c.ratio is None and "at or below zero" in c.reason


def test_markdown_format_is_a_table_for_a_pull_request(three_a_side):
    base, _, slower = three_a_side
    res = run_cli("diff", str(base), str(slower), "--format", "markdown")
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    assert lines[0].startswith("**mapbench diff") and "3 slower" in lines[0]
    assert "| verdict | configuration |" in res.stdout and "<details>" in res.stdout
    assert "| slower | kernel hash lookup 100,000 entries" in res.stdout
    assert "syscall hash update batch 100 100,000 entries" in res.stdout


def test_other_machine_needs_across_machines_and_lists_what_differs():
    res = run_cli("diff", str(FIXTURES / "base.parquet"), str(FIXTURES / "other_host.parquet"))
    assert res.returncode == 2 and "pass --across-machines" in res.stderr
    assert "[legacy-fixture-2cpu-fixture-host]" in res.stderr and "[legacy-fixture-2cpu-another-host]" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = run_cli("diff", str(FIXTURES / "base.parquet"), str(FIXTURES / "other_host.parquet"), "--force")
    assert res.returncode == 2 and "pass --across-machines" in res.stderr  # --force is for kernels
    res = run_cli("diff", str(FIXTURES / "base.parquet"), str(FIXTURES / "other_host.parquet"), "--across-machines")
    assert res.returncode == 0 and "environment differs: machine" in res.stderr


def test_no_shared_configuration_is_exit_2():
    res = run_cli("diff", str(FIXTURES / "base.parquet"), str(FIXTURES / "disjoint.parquet"))
    assert res.returncode == 2 and "share no configuration" in res.stderr


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable Parquet file"),
    (b"PAR1 this is not parquet", "not a readable Parquet file"),
])
def test_broken_files_are_exit_2(tmp_path, content, message):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(content)
    res = run_cli("diff", str(FIXTURES / "base.parquet"), str(bad))
    assert res.returncode == 2 and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--threshold", "1.5"], "--threshold 1.5 is outside [0, 1)"),
    (["--alpha", "0"], "--alpha 0.0 is outside (0, 1)"),
])
def test_bad_diff_options(args, message):
    res = run_cli("diff", str(FIXTURES / "base.parquet"), str(FIXTURES / "same.parquet"), *args)
    assert res.returncode == 2 and message in res.stderr


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), which=st.integers(0, 13), factor=st.sampled_from([0.6, 1.5, 2.0]))
def test_a_large_change_of_any_one_configuration_is_called(seed, which, factor):
    quiet = [c for c in make_fixtures.CONFIGS if c[-1] < 0.1][:14]  # kernel and syscall shapes
    base = drifting_runs(2, seed, configs=quiet, name="a")
    new = drifting_runs(2, seed + 1, configs=quiet, slow={make_fixtures.key(quiet[which]): factor}, name="b")
    result = diff.diff(base, new)
    called = [c for c in result.changes if c.verdict in ("slower", "faster")]
    assert len(called) == 1 and called[0].verdict == ("slower" if factor > 1 else "faster")
    assert np.isclose(called[0].ratio, factor, rtol=0.15)
