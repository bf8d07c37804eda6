"""mapbench diff: what it calls, what it cannot see, and how it says so. No kernel needed."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_cli
from mapbench.results import diff
from mapbench.results import store as results

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"
_spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
make_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_fixtures)


def fixture(name: str) -> pd.DataFrame:
    return results.read(FIXTURES / f"{name}.parquet").to_pandas()


def verdicts(result) -> dict[tuple, str]:
    return {(c.config["engine"], c.config["strategy"], c.config["op"], c.config["map_size"],
             c.config["batch_size"]): c.verdict for c in result.changes}


def test_a_1_3x_slowdown_is_called_in_the_kernel_and_syscall_engines_and_exits_1():
    res = run_cli("diff", str(FIXTURES / "base.parquet"), str(FIXTURES / "slower.parquet"), "--json")
    assert res.returncode == 1, res.stderr
    changes = [json.loads(line) for line in res.stdout.splitlines()]
    slower = sorted((c["engine"], c["strategy"], c["op"], c["map_size"]) for c in changes if c["verdict"] == "slower")
    assert slower == [("kernel", "hash", "lookup", 100000), ("syscall", "hash", "update", 100000)]
    # 1.05x is below the threshold: never called
    [pid] = [c for c in changes if c["strategy"] == "pid_hash" and c["engine"] == "kernel"]
    assert pid["verdict"] != "slower" and 1.0 < pid["ratio"] < 1.1
    assert not [c for c in changes if c["verdict"] == "faster"]


def test_two_runs_of_the_same_code_call_nothing():
    res = run_cli("diff", str(FIXTURES / "base.parquet"), str(FIXTURES / "same.parquet"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 slower, 0 faster" in res.stdout


def test_a_configuration_whose_samples_cannot_see_a_change_is_inconclusive_not_unchanged():
    result = diff.diff(fixture("base"), fixture("same"))
    noisy = [c for c in result.changes if c.config["engine"] == "attached" and c.config["map_size"] == 10000]
    [c] = noisy
    assert c.verdict == "inconclusive" and c.detectable > 1.5
    assert "could call only" in c.reason
    # and "unchanged" means the whole CI lies inside the threshold band
    for c in result.changes:
        if c.verdict == "unchanged":
            assert 1 / 1.1 <= c.ratio_ci_low and c.ratio_ci_high <= 1.1


def test_a_median_at_or_below_zero_is_inconclusive_never_slower():
    base, new = fixture("base"), fixture("same")
    pick = (base.engine == "kernel") & (base.strategy == "task_storage")
    base.loc[pick, "ns_per_op"] = -base.loc[pick, "ns_per_op"]  # a net figure below its control
    [c] = [c for c in diff.diff(base, new).changes if c.config["strategy"] == "task_storage"
           and c.config["engine"] == "kernel"]
    assert c.verdict == "inconclusive" and c.ratio is None and "at or below zero" in c.reason


def test_one_load_a_side_borrows_the_engines_spread_or_says_it_cannot():
    base, new = fixture("base"), fixture("same")
    one = lambda df: df[(df.engine != "kernel") | (df.instance == 0)]  # noqa: E731
    result = diff.diff(one(base), one(new))
    kernel = [c for c in result.changes if c.config["engine"] == "kernel"]
    assert {c.verdict for c in kernel} == {"inconclusive"}
    assert all("no other configuration of the engine" in c.reason for c in kernel)


def test_markdown_format_is_a_table_for_a_pull_request():
    res = run_cli("diff", str(FIXTURES / "base.parquet"), str(FIXTURES / "slower.parquet"), "--format", "markdown")
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    assert lines[0].startswith("**mapbench diff") and "2 slower" in lines[0]
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
    CONFIGS, key, rows = make_fixtures.CONFIGS, make_fixtures.key, make_fixtures.rows
    quiet = [c for c in CONFIGS if c[-1] < 0.1][:14]  # kernel and syscall shapes
    base = results.make_table(rows(seed, quiet, run="a"), "a", {"host": "h", "kernel_release": "k"}).to_pandas()
    slow = {key(quiet[which]): factor}
    new = results.make_table(rows(seed + 1, quiet, slow, run="b"), "b",
                             {"host": "h", "kernel_release": "k"}).to_pandas()
    result = diff.diff(base, new)
    called = [c for c in result.changes if c.verdict in ("slower", "faster")]
    assert len(called) == 1 and called[0].verdict == ("slower" if factor > 1 else "faster")
    assert np.isclose(called[0].ratio, factor, rtol=0.15)
