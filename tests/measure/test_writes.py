"""Writes that can fail, and what the maps hold: figures per successful op, entries counted
from successful inserts and deletes, memory per entry from the cgroup."""

import numpy as np
import pytest

from conftest import run_cli
from mapbench.errors import BadInput
from mapbench.measure import keys, memcg
from mapbench.measure.engine import Host
from mapbench.measure.engines import kernel
from mapbench.measure.engines.kernel import KernelSpec, LoadedBuild, Sample, instance_config
from mapbench.measure.strategies import bloom_fp_theory

HOST = Host.here()

PAGE = 4096
CHURN = dict(op="delete", producers=2, writers=1, write_op="insert", fill=0.5)


@pytest.mark.parametrize("fields", [dict(op="insert"), dict(op="delete"),
                                    dict(op="lookup", producers=2, writers=1, write_op="insert"),
                                    dict(op="insert", producers=2, writers=2, write_op="insert")])
def test_a_workload_that_cannot_stay_in_steady_state_is_refused(fields):
    with pytest.raises(BadInput, match="cannot stay in steady state"):
        KernelSpec.of("hash", map_size=1000, **fields)


def test_inserts_beside_deletes_are_a_steady_workload():
    assert KernelSpec.of("hash", map_size=1000, **CHURN).roles() == ["reader", "writer"]
    # and no one-producer side is added that would be an insert or a delete alone
    assert kernel.complete_axes({"producers": [2], "ops": ["delete"], "writers": [1], "write_ops": ["insert"]},
                                ["producers"], HOST)["producers"] == [2]
    assert kernel.complete_axes({"producers": [2], "ops": ["lookup"]}, ["producers"], HOST)["producers"] == [1, 2]


@pytest.mark.kernel
def test_run_refuses_inserts_alone_in_one_line():
    res = run_cli("run", "--map", "hash", "--size", "1e5", "--op", "insert")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "--op insert cannot stay in steady state" in res.stderr


def _present(build: LoadedBuild) -> int:
    """Entries the members map holds, asked key by key from user space."""
    config = build.config
    members = keys.member_keys(np.arange(config["map_size"], dtype=np.uint64), config["key_mult"], config["key_salt"])
    m = build.obj.map("members")
    return sum(m.lookup(k.tobytes()) is not None for k in keys.key_words(members, build.spec.key_size // 4))


def _churn_sample(build: LoadedBuild, i: int, n: int) -> Sample:
    """A delete run and an insert run, one after the other on this CPU, as a sample's producers."""
    runs = [build.run(n, 2 * i * n), build.run(n, (2 * i + 1) * n, writer=True)]
    return Sample(runs, **build.after_sample(runs))


@pytest.mark.kernel
@pytest.mark.parametrize("no_prealloc", [False, True])
def test_entries_held_and_rows_count_only_successful_writes(no_prealloc):
    spec = KernelSpec.of("hash", map_size=2000, no_prealloc=no_prealloc, **CHURN)
    with LoadedBuild(spec, False, instance_config(spec, 0)) as b:
        assert _present(b) == spec.entries == 1000
        for i in range(4):
            smp = _churn_sample(b, i, 3000)
            deletes, inserts = smp.runs
            assert 0 < deletes.hits < deletes.ops and 0 < inserts.hits < inserts.ops  # some fail: the churn
            assert smp.entries_held == _present(b)
            row = kernel._row(b, deletes, smp, 0, "reader", 1.0)
            assert row["op"] == "delete" and row["ops_succeeded"] == deletes.hits
            assert row["success_rate"] == pytest.approx(deletes.hits / deletes.ops)
            # per successful delete: the failed ones' time is in it, their count is not
            assert row["gross_ns_per_op"] == pytest.approx(deletes.elapsed_ns / deletes.hits)
            assert row["ns_per_op"] == pytest.approx((deletes.elapsed_ns / deletes.ops - 1.0) * deletes.ops
                                                     / deletes.hits)


@pytest.mark.kernel
def test_a_sample_where_no_write_succeeded_is_no_figure():
    spec = KernelSpec.of("hash", map_size=100, **CHURN)
    with LoadedBuild(spec, False, instance_config(spec, 0)) as b:
        b.run(5000, 0)  # deletes every entry drawn: all of them
        deletes = b.run(100, 5000)
        assert deletes.hits == 0
        row = kernel._row(b, deletes, Sample([deletes, deletes], entries_held=0), 0, "reader", 1.0)
    assert row["status"] == "no_success" and row["ns_per_op"] is None and "no delete succeeded" in row["message"]


@pytest.mark.kernel
def test_calibration_changes_no_map():
    spec = KernelSpec.of("hash", map_size=1000, **CHURN)
    with LoadedBuild(spec, False, instance_config(spec, 0)) as b:
        kernel.calibrate([b], 1e6)
        assert _present(b) == spec.entries


slack = 64 * 2 + 8  # cgroup v1 charges in batches of 64 pages a CPU (MEMCG_CHARGE_BATCH), kept as stock


@pytest.mark.kernel
@pytest.mark.skipif(memcg.flavour() is None, reason="no writable memory cgroup on this host")
@pytest.mark.parametrize("strategy", ["hash", "lru_hash"])
def test_the_cgroup_holds_a_preallocated_map_alone_after_fill_and_under_churn(strategy):
    spec = KernelSpec.of(strategy, map_size=100_000, **CHURN)
    with LoadedBuild(spec, False, instance_config(spec, 0)) as b:
        for i in range(3):
            memory = b.after_sample([]) if i == 0 else _churn_sample(b, i, 20_000).__dict__
            # the cgroup holds the map and nothing else of the object's: within the charge batches
            assert abs(memory["memory_current"] - memory["memlock"]) <= slack * PAGE, memory


@pytest.mark.kernel
@pytest.mark.skipif(memcg.flavour() is None, reason="no writable memory cgroup on this host")
def test_without_preallocation_the_cgroup_sees_more_than_fdinfo():
    spec = KernelSpec.of("hash", map_size=100_000, no_prealloc=True, **CHURN)
    with LoadedBuild(spec, False, instance_config(spec, 0)) as b:
        smp = _churn_sample(b, 0, 20_000)
    # fdinfo counts the elements held; the allocator's per-CPU caches and the elements waiting
    # for RCU are the cgroup's alone
    assert smp.memory_current > smp.memlock


@pytest.mark.kernel
def test_bloom_fp_theory_counts_the_entries_held_not_the_capacity():
    assert bloom_fp_theory(100_000, 3, 10_000) < bloom_fp_theory(100_000, 3) / 50
    spec = KernelSpec.of("bloom", map_size=100_000, fill=0.1, hit_ratio=0.0, nr_hash_funcs=3)
    rates = []
    for load in range(4):  # each filter draws its own hash seed, which moves its rate by a factor: a mean
        with LoadedBuild(spec, False, instance_config(spec, load)) as b:
            r = b.run(200_000, 0)
            row = kernel._row(b, r, Sample([r]), 0, None, 0.0)
        assert row["bloom_fp_theory"] == bloom_fp_theory(100_000, 3, 10_000)
        rates.append(row["bloom_fp_rate"])
    # the rate is of the entries held: far below a full filter's (0.083), near the theory (1.7e-4; one
    # filter read 7.5e-4 once, so the bound is loose on that side)
    assert sum(rates) / len(rates) < min(4 * row["bloom_fp_theory"], bloom_fp_theory(100_000, 3) / 50)


@pytest.mark.kernel
def test_the_bloom_element_is_built_by_the_control_too():
    """Building the element is key building, not the map operation: the control pays it."""
    spec = KernelSpec.of("bloom", map_size=1000, bloom_value_size=64, hit_ratio=0.0)
    config = instance_config(spec, 0)
    with LoadedBuild(spec, True, config) as control:
        control.run(10, 0)
        scratch = control.obj.map("scratch").lookup(bytes(4))
    # per CPU: 64 key words, 64 u64 value words, then the element's 16 words
    elems = np.frombuffer(scratch, dtype=np.uint32).reshape(-1, 64 + 2 * 64 + 16)[:, -16:]
    assert elems.all(axis=1).any()  # on the CPU it ran on, the control wrote all 16 words of an element
    assert spec.control_key() != KernelSpec.of("hash", map_size=1000, hit_ratio=0.0).control_key()


def test_a_count_of_writers_above_one_adds_no_one_producer_side_it_cannot_have():
    assert kernel.complete_axes({"producers": [2], "writers": [2]}, ["producers"], HOST)["producers"] == [2]
    assert kernel.complete_axes({"producers": [2], "writers": ["all"]}, ["producers"], HOST)["producers"] == [1, 2]
