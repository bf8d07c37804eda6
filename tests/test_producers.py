"""Several producers on one map (issue 12): they run at once, each on its own slice, and a
run's memory cgroup never outlives it."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import run_cli
from mapbench import keys, memcg, results
from mapbench.engines import kernel
from mapbench.engines.kernel import KernelSpec, LoadedBuild, instance_config
from mapbench.errors import BadInput
from mapbench.runner import Producers, producer_cpus

pytestmark = pytest.mark.kernel
CPUS = len(os.sched_getaffinity(0))
needs_two = pytest.mark.skipif(CPUS < 2, reason=f"needs 2 CPUs to run producers at once; this process has {CPUS}")


def test_producers_above_the_usable_cpus_is_one_line_naming_the_bound(tmp_path):
    out = tmp_path / "r.parquet"
    res = run_cli("run", "--map", "hash", "--producers", str(CPUS + 1), "--out", str(out))
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == (f"mapbench: error: --producers {CPUS + 1} is above the {CPUS} CPUs this "
                                  "process may use")
    assert not out.exists()
    with pytest.raises(BadInput, match="--writers 3 is above --producers 2"):
        KernelSpec("hash", producers=min(2, CPUS), writers=3)


@needs_two
def test_producers_run_at_the_same_time_and_rows_say_who_did_what(tmp_path):
    out = tmp_path / "r.parquet"
    res = run_cli("run", "--map", "hash", "--size", "1e4", "--producers", "2", "--writers", "1", "--samples", "3",
                  "--instances", "2", "--out", str(out))
    assert res.returncode == 0, res.stderr
    df = results.read(out).to_pandas()
    two = df[(df.producers == 2) & (df.strategy == "hash")]
    assert set(two.role) == {"reader", "writer"} and set(two[two.role == "writer"].op) == {"update"}
    assert set(two[two.role == "reader"].op) == {"lookup"}
    for _, sample in two.groupby(["instance", "sample"]):
        assert sorted(sample.producer) == [0, 1] and sample.cpu.nunique() == 2
        ends = sample.started_ns + sample.elapsed_ns
        # the timed windows overlap: each started before the other ended
        assert sample.started_ns.max() < ends.min(), sample[["cpu", "started_ns", "elapsed_ns"]]
        assert sample.aggregate_ops_per_s.nunique() == 1
    # the one-producer baseline was measured beside them, in the same loads
    assert set(df[df.strategy == "hash"].producers) == {1, 2}


@needs_two
@given(size=st.integers(min_value=2, max_value=5000), hit_ratio=st.floats(min_value=0, max_value=1),
       seed=st.integers(min_value=0, max_value=2**32), nr_loops=st.integers(min_value=1, max_value=5000),
       overlap=st.sampled_from(["same", "disjoint"]), distribution=st.sampled_from(["uniform", "zipf"]))
def test_each_producer_finds_exactly_what_numpy_predicts_for_its_slice(size, hit_ratio, seed, nr_loops, overlap,
                                                                      distribution):
    spec = KernelSpec("hash", map_size=size, hit_ratio=hit_ratio, seed=seed, producers=2, overlap=overlap,
                      key_distribution=distribution)
    config = instance_config(spec, 0)
    members = keys.member_keys(np.arange(size, dtype=np.uint64), config["key_mult"], config["key_salt"])
    sums = keys.value_words(members, 1).sum(axis=1, dtype=np.uint64)
    cpus = producer_cpus(None, 2)
    starts = [7 * nr_loops, 8 * nr_loops]
    with Producers(cpus) as pool, LoadedBuild(spec, False, config) as program:
        runs = pool.run([lambda p=p: program.run(nr_loops, starts[p], *spec.slices()[p], cpu=cpus[p])
                         for p in range(2)])
    for p, r in enumerate(runs):
        first, nr = spec.slices()[p]
        idx, hit = keys.draw_indexes(config, starts[p], nr_loops, kernel.draw_table(spec, config), first, nr)
        assert r.cpu == cpus[p] and r.hits == int(hit.sum())
        found = idx[hit].astype(np.int64)
        if nr:
            assert ((found >= first) & (found < first + nr)).all()
        assert r.value_checksum == int(np.bitwise_xor.reduce(sums[found], initial=np.uint64(0)))


@pytest.mark.skipif(memcg.flavour() is None, reason=memcg.why_not())
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, None])
def test_the_memory_cgroup_is_removed_even_when_the_run_is_interrupted(tmp_path, how):
    parent = memcg.flavour().parent
    memcg.remove_stale(parent)
    before = set(parent.glob(memcg.PREFIX + "*"))
    proc = subprocess.Popen([sys.executable, "-m", "mapbench.cli", "run", "--map", "hash", "--op", "update",
                             "--no-prealloc", "--size", "1e5", "--instances", "50", "--out",
                             str(tmp_path / "r.parquet")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not set(parent.glob(memcg.PREFIX + f"{proc.pid}-*")):
        time.sleep(0.01)
    assert set(parent.glob(memcg.PREFIX + f"{proc.pid}-*")), "the run never made its cgroup"
    if how is None:  # killed outright: the next run removes what the dead one left
        proc.kill()
        proc.wait()
        assert set(parent.glob(memcg.PREFIX + f"{proc.pid}-*"))
        memcg.remove_stale(parent)
    else:
        proc.send_signal(how)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        assert "interrupted" in stderr
    assert set(parent.glob(memcg.PREFIX + "*")) == before


@pytest.mark.skipif(memcg.flavour() is None, reason=memcg.why_not())
def test_cgroup_memory_is_the_maps_memory():
    spec = KernelSpec("hash", op="update", map_size=100_000, no_prealloc=True)
    with LoadedBuild(spec, False, instance_config(spec, 0)) as program:
        memory = program.memory_now()
        assert program.memory_source == memcg.flavour().name
        # the cgroup holds the map and nothing of Python's: within a few pages of fdinfo's figure
        assert memory["memory_current"] >= 0.9 * memory["memlock"]
        assert memory["memory_current"] <= 1.5 * memory["memlock"] + 2**20
