"""The command line as a user meets it: exit codes, one-line errors, nothing half-written."""

import json
import sys

import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from mapbench import cli
from mapbench.results import store as results

FAST = ["--samples", "3", "--instances", "1", "--warmup", "1", "--sample-ms", "1"]


@pytest.mark.parametrize("args, needle", [
    (["--map", "hash", "--size", "0"], "--size '0' must be at least 1 entry"),
    (["--map", "hash", "--size", "-5"], "at least 1"),
    (["--map", "hash", "--size", "2.5"], "whole number"),
    (["--map", "hash", "--size", "5e9"], "u32 limit of 4294967295"),
    (["--map", "hash", "--size", "2e9"], "GiB available"),
    (["--map", "btree"], "--map 'btree' is unknown: choose one of hash, lru_hash"),
    (["--map", "bloom", "--op", "get"], "--op 'get' is not an op of bloom: it has lookup, update"),
    (["--map", "hash", "--hit-ratio", "1.5"], "--hit-ratio 1.5 is outside [0, 1]"),
    (["--map", "hash", "--isa", "v9"], "--isa 'v9' is not a BPF ISA"),
    (["--map", "hash", "--samples", "0"], "--samples 0 must be at least 1"),
    (["--map", "hash", "--cpu", "999"], "--cpu 999 is not one this process may run on"),
    # flags that do not apply to the engine or to any configuration asked for are never ignored
    (["--map", "hash", "--driver", "elem", "--hit-ratio", "0.5"], "--hit-ratio does not apply to the syscall engine"),
    (["--map", "hash", "--driver", "elem", "--isa", "v1"], "--isa does not apply to the syscall engine"),
    (["--map", "hash", "--driver", "elem", "--seed", "3"], "--seed does not apply to the syscall engine"),
    (["--map", "hash", "--driver", "elem", "--keys", "sequential"], "--keys does not apply to the syscall engine"),
    (["--map", "hash", "--driver", "elem", "--task-maps", "3"], "--task-maps does not apply to the syscall engine"),
    (["--map", "hash", "--driver", "elem", "--hash-funcs", "3"], "--hash-funcs does not apply to the syscall engine"),
    (["--map", "hash", "--driver", "elem", "--tasks", "4"], "--tasks does not apply to the syscall engine"),
    (["--engine", "attached", "--map", "pid_hash", "--op", "get"], "--op does not apply to the attached engine"),
    (["--engine", "attached", "--map", "pid_hash", "--hit-ratio", "0"], "--hit-ratio does not apply to the attached"),
    (["--map", "hash", "--hash-funcs", "5"], "--hash-funcs does not apply to hash lookup"),
    (["--map", "hash", "--op", "update", "--hit-ratio", "0.5"], "--hit-ratio does not apply to hash update"),
    (["--map", "task_storage_maps", "--size", "5"], "--size does not apply to task_storage_maps get"),
    (["--map", "pid_hash", "--task-maps", "3"], "--task-maps does not apply to pid_hash get"),
    (["--map", "array", "--no-prealloc"], "--no-prealloc does not apply to array lookup"),
    (["--map", "hash", "--driver", "elem", "--no-prealloc"], "--no-prealloc does not apply to the syscall engine"),
    (["--engine", "attached", "--map", "pid_hash", "--sample-ms", "5"], "--sample-ms 5 is below 50"),
    (["--map", "hash", "--samples", "1.5"], "'1.5' is not a valid integer"),
    (["--map", "hash", "--producers", "all", "--writers", "1..all"],
     "--writers '1..all' must be a count of at least 0, or all"),
    (["--map", "hash", "--producers", "some"], "--producers 'some' must be a count of at least 1, or all or 1..all"),
    # the C reference's maps have one shape: what would change it is refused, not ignored
    (["--engine", "reference", "--key-size", "40"], "--key-size does not apply to the reference engine"),
    (["--engine", "reference", "--value-size", "64"], "--value-size does not apply to the reference engine"),
    (["--engine", "reference", "--fill", "0.5"], "--fill does not apply to the reference engine"),
    # modes and the minimal reference are the kernel engine's; the reference runs one shape
    (["--map", "hash", "--driver", "elem", "--mode", "latency"], "--mode does not apply to the syscall engine"),
    (["--map", "hash", "--mode", "chained"], "--mode 'chained' is unknown: choose one of throughput, latency"),
    (["--map", "pid_hash", "--implementation", "minimal"], "--implementation minimal has hash lookup, bloom lookup"),
    (["--map", "hash", "--implementation", "minimal", "--key-size", "8"], "runs --key-size 4 only, not 8"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, needle):
    out = tmp_path / "r.parquet"
    res = run_cli("run", *args, "--out", str(out))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def _main(monkeypatch, *args) -> int:
    """cli.main() in this process, as `mapbench ARGS`: its exit code."""
    monkeypatch.setattr(sys, "argv", ["mapbench", *args])
    monkeypatch.setattr(cli.signal, "signal", lambda *a: None)  # leave pytest's SIGTERM alone
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return exc.value.code


def test_an_unexpected_error_is_one_line_and_exit_4_never_diffs_regression_code(monkeypatch, capsys):
    def broken():
        raise RuntimeError("the pipe burst")

    monkeypatch.setattr(cli.list_cmd, "callback", broken)
    assert _main(monkeypatch, "list") == 4
    assert capsys.readouterr().err == ("mapbench: internal error: RuntimeError: the pipe burst "
                                       "(run with -v for the traceback)\n")
    assert _main(monkeypatch, "-v", "list") == 4
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in broken" in err
    assert err.endswith("mapbench: internal error: RuntimeError: the pipe burst\n")


def test_v_shows_the_traceback_and_keeps_the_exit_code(monkeypatch, capsys):
    assert _main(monkeypatch, "-v", "show", "/nonexistent.parquet") == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last):" in err
    assert err.endswith("mapbench: error: result file '/nonexistent.parquet' does not exist\n")


def test_show_tells_seeds_apart(tmp_path):
    for seed, ns in ((0, 100.0), (7, 300.0)):
        rows = [{"engine": "kernel", "strategy": "hash", "op": "lookup", "map_size": 1000, "seed": seed,
                 "instance": 0, "sample": s, "warmup": False, "status": "ok", "ns_per_op": ns} for s in range(3)]
        results.write(tmp_path / f"{seed}.parquet", results.make_table(rows, f"run-{seed}", {}), append=False)
    res = run_cli("show", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "│ seed 0 " in res.stdout and "│ seed 7 " in res.stdout


def test_out_must_be_parquet(tmp_path):
    res = run_cli("run", "--map", "hash", "--out", str(tmp_path / "r.csv"))
    assert res.returncode == 2 and "must end in .parquet" in res.stderr


def test_not_privileged_is_exit_3(tmp_path):
    # Capabilities dropped rather than another uid: a clone in a 0700 directory (mktemp -d)
    # is unreadable to other users, and the privilege is what the check is about.
    res = run_cli("run", "--map", "hash", without_caps=True)
    assert res.returncode == 3, res.stderr
    assert "run as root" in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.kernel
def test_no_btf_is_exit_3(tmp_path):
    res = run_cli("run", "--map", "hash", *FAST, env={"MAPBENCH_KERNEL_BTF": str(tmp_path / "none"),
                                                      "MAPBENCH_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 3, res.stderr
    assert "no kernel BTF" in res.stderr


@pytest.mark.kernel
def test_run_prints_json_and_writes_one_row_per_sample(tmp_path):
    out = tmp_path / "r.parquet"
    res = run_cli("run", "--map", "bloom", "--size", "1_000", "--hit-ratio", "0.25", *FAST,
                  "--out", str(out), "--json")
    assert res.returncode == 0, res.stderr
    [record] = [json.loads(line) for line in res.stdout.splitlines()]
    assert record["strategy"] == "bloom" and record["op"] == "lookup"
    assert record["map_size"] == 1000 and record["hit_ratio"] == 0.25 and record["samples"] == 3
    assert record["ci_low"] <= record["median_ns_per_op"] <= record["ci_high"]
    assert 0 <= record["bloom_fp_rate"] <= 1
    assert abs(record["measured_hit_ratio"] - 0.25) < 0.05
    table = results.read(out)
    # 4 samples (1 warm-up) of the strategy and of the control
    assert table.num_rows == 8
    assert pq.read_metadata(out).schema.to_arrow_schema().metadata[results.SCHEMA_KEY] == b"3"
    env = table.to_pylist()[0]
    assert env["kernel_release"] and env["host"] and env["libbpf_version"].startswith("1.")
    assert env["machine"] and env["machine_name"] and env["thp_enabled"] and env["cpu_vulnerabilities"]
    assert len(env["object_sha256"]) == 64


@pytest.mark.kernel
def test_run_appends(tmp_path):
    out = tmp_path / "r.parquet"
    for strategy in ("pid_hash", "task_storage"):
        res = run_cli("run", "--map", strategy, "--size", "1e3", *FAST, "--out", str(out))
        assert res.returncode == 0, res.stderr
        assert "median" in res.stdout
    assert set(results.read(out).column("strategy").to_pylist()) == {"pid_hash", "task_storage", "control"}


@pytest.mark.kernel
def test_env_and_list():
    res = run_cli("env")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "task_storage" in res.stdout and "bloom_filter" in res.stdout
    res = run_cli("list")
    assert res.returncode == 0 and "task_storage" in res.stdout
