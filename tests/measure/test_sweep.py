import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from conftest import run_cli
from mapbench.measure import runner
from mapbench.measure.engine import Host
from mapbench.results import store as results

SMALL = """
[measure]
samples = 2
instances = 1
warmup = 1
sample_ms = 10

[[grid]]
engine = "kernel"
strategies = ["hash", "task_storage"]
ops = ["lookup", "get"]
sizes = [1e3, 2e3]

[[grid]]
engine = "syscall"
maps = ["hash", "array", "bloom_filter"]
drivers = ["elem", "batch"]
ops = ["lookup", "delete"]
sizes = [1000]
batch_sizes = [10, 100]
"""


def configs_in(path) -> Counter:
    """Rows per configuration (controls aside), keyed as resume keys them."""
    df = results.read(path).to_pandas()
    df = df[df.strategy != "control"]
    return Counter(tuple(results.plain(v) for v in row) for row in df[results.CONFIG_KEYS].itertuples(index=False))


def configs_of(grid) -> int:
    return sum(len(c.sides) for c in runner.comparisons_from_sweep(grid, Host.here()))


@pytest.mark.kernel
def test_sweep_records_unsupported_combinations_as_rows(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(SMALL)
    out = tmp_path / "r.parquet"
    res = run_cli("sweep", str(grid), "--out", str(out))
    assert res.returncode == 0, res.stderr
    df = results.read(out).to_pandas()
    df = df[df.strategy != "control"]
    status = {(r.strategy, r.op, results.plain(r.driver)): r.status for r in df.itertuples()}
    assert status[("hash", "get", None)] == "unsupported"  # the strategy has no such op
    assert status[("task_storage", "lookup", None)] == "unsupported"
    assert status[("array", "delete", "elem")] == "unsupported"  # the kernel refuses: EINVAL
    assert status[("array", "delete", "batch")] == "unsupported"
    assert "errno" in df[(df.strategy == "array") & (df.op == "delete")].message.iloc[0]
    assert status[("bloom_filter", "lookup", "batch")] == "unsupported"  # no batch ops
    assert status[("bloom_filter", "delete", "elem")] == "unsupported"  # no delete
    assert status[("bloom_filter", "lookup", "elem")] == "ok"
    assert status[("hash", "lookup", "batch")] == "ok"
    assert len(configs_in(out)) == configs_of(grid)


@pytest.mark.kernel
def test_resume_after_a_kill_loses_nothing_and_duplicates_nothing(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(SMALL)
    out = tmp_path / "r.parquet"
    proc = subprocess.Popen([sys.executable, "-m", "mapbench.cli", "sweep", str(grid), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out.exists() and len(configs_in(out)) >= 1):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = configs_in(out)
    assert 1 <= len(before) < configs_of(grid), "the kill should land mid-sweep"
    res = run_cli("sweep", str(grid), "--resume", str(out))
    assert res.returncode == 0, res.stderr
    after = configs_in(out)
    assert len(after) == configs_of(grid)
    for key, rows in before.items():  # kept as they were, not measured again
        assert after[key] == rows
    assert set(after.values()) <= {1, 3}, after  # 1 + 2 samples, or one unsupported row


@pytest.mark.parametrize("text, message", [
    ("[measure]\nsamples = 2\nbogus = 1\n", "[measure] has unknown key 'bogus'"),
    ("[[grid]]\nengine = 'kernel'\nstrategy = ['hash']\n", "unknown key 'strategy' for engine kernel"),
    ("[[grid]]\nengine = 'gpu'\n", "engine = 'gpu' is not one of"),
    ("[[grid]]\nengine = 'kernel'\nsizes = [0]\n", "[[grid]] #1: sizes: 0 must be at least 1"),
    ("[[grid]]\nengine = 'kernel'\nstrategies = ['hash']\nhit_ratios = [2.0]\n", "hit_ratios: 2.0 is outside [0, 1]"),
    ("[[grid]]\nengine = 'kernel'\nstrategies = ['btree']\n", "strategies: 'btree' is unknown"),
    ("[[grid]]\nengine = 'syscall'\nbatch_sizes = [0]\n", "batch_sizes: 0 is outside 1..4294967295"),
    ("[[grid]]\nengine = 'kernel'\nsamples = -3\n", "samples = -3 must be a whole number, positive"),
    ("[measure]\nsamples = 1.5\n[[grid]]\nengine = 'kernel'\n", "[measure]: samples = 1.5 must be a whole number"),
    ("[[grid]]\nengine = 'kernel'\nhit_ratios = ['x']\n", "hit_ratios: 'x' is not a number"),
    ("[[grid]]\nengine = 'kernel'\nsizes = 1000\n", "sizes = 1000 must be a non-empty list"),
    ("[[grid]]\nengine = 'kernel'\ncompare = ['colours']\n", "compare = 'colours' is not an axis of the kernel engine"),
    ("[[grid]]\nengine = 'attached'\nsample_ms = 5\n", "--sample-ms 5 is below 50, the attached engine's minimum"),
    ("not toml [", "not valid TOML"),
    ("", "no [[grid]] tables"),
])
def test_bad_sweep_files_name_the_key(tmp_path, text, message):
    grid = tmp_path / "grid.toml"
    grid.write_text(text)
    out = tmp_path / "r.parquet"
    res = run_cli("sweep", str(grid), "--out", str(out))
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not out.exists()
