"""LRU under pressure (--op cache): the kernel's hits beside an exact LRU's on the same draws,
evictions counted from the kernel's element count, per-CPU LRU lists, and bad input."""

import numpy as np
import pytest

from conftest import run_cli
from mapbench.binding.libbpf import possible_cpus
from mapbench.errors import BadInput
from mapbench.measure.engines.kernel import KernelSpec, LoadedBuild, Sample, _row, instance_config
from mapbench.measure.lru import IdealLru

LOCAL_FREE_TARGET = 128  # kernel/bpf/bpf_lru_list.c: free nodes a CPU takes from the common list at once


def _reference_lru(stream, capacity):
    """A list-based LRU, least recent first: slow and obvious."""
    held, hits = [], 0
    for key in stream:
        if key in held:
            hits += 1
            held.remove(key)
        elif len(held) == capacity:
            held.pop(0)
        held.append(key)
    return hits


@pytest.mark.parametrize("capacity,keys", [(1, 3), (8, 8), (16, 40), (50, 60)])
def test_ideal_lru_counts_the_hits_of_a_plain_lru(capacity, keys):
    stream = np.random.default_rng(capacity).integers(0, keys, 3000)
    model = IdealLru(capacity)
    assert model.access(stream[:1000]) + model.access(stream[1000:]) == _reference_lru(stream.tolist(), capacity)
    assert len(model) == min(capacity, len(set(stream.tolist())))


def test_lookups_alone_insert_nothing():
    model = IdealLru(4)
    assert model.access(np.arange(10), insert=False) == 0 and len(model) == 0


def test_working_set_is_used_by_the_cache_op_only():
    spec = KernelSpec.of("lru_hash", map_size=1000, op="cache", working_set=2, fill=0.5)
    assert spec.draw_range == 2000 and spec.fill == 1.0  # a cache starts empty: --fill says nothing
    assert spec.config_fields()["working_set"] == 2.0 and spec.config_fields()["lru_lists"] == "common"
    lookup = KernelSpec.of("lru_hash", map_size=1000, op="lookup", working_set=2)
    assert lookup.working_set == 1.0 and lookup.config_fields()["working_set"] is None
    assert KernelSpec.of("hash", map_size=1000, op="cache", lru_lists="percpu").lru_lists == "common"


@pytest.mark.parametrize("value", [0, -1, 65])
def test_a_working_set_out_of_bounds_is_refused(value):
    with pytest.raises(BadInput, match=f"--working-set {value} is outside"):
        KernelSpec.of("lru_hash", map_size=1000, op="cache", working_set=value)


def test_run_refuses_a_zero_working_set_in_one_line():
    res = run_cli("run", "--map", "lru_hash", "--op", "cache", "--working-set", "0")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "--working-set 0 is outside (0, 64]" in res.stderr


def _samples(spec, n=4, draws=60_000):
    with LoadedBuild(spec, False, instance_config(spec, 0)) as b:
        out = []
        for i in range(n):
            r = b.run(draws, (i + 1) * draws, cpu=0)
            out.append((r, Sample([r], **b.after_sample([r]))))
        return out, b.capacity


@pytest.mark.kernel
@pytest.mark.parametrize("strategy,keys", [("lru_hash", "uniform"), ("lru_percpu_hash", "uniform"),
                                          ("lru_hash", "zipf")])
def test_a_working_set_that_fits_hits_exactly_as_an_exact_lru(strategy, keys):
    """Half the capacity: nothing is ever evicted, so each key misses once, on first use, in both
    (zipf: the ideal walks the same draw table as the program)."""
    spec = KernelSpec.of(strategy, map_size=4096, op="cache", working_set=0.5, key_distribution=keys)
    samples, capacity = _samples(spec)
    assert capacity == 4096  # no spare room beside the capacity asked about
    for r, smp in samples:
        assert r.hits == r.ideal_hits
        assert smp.evictions == 0 and smp.first_eviction is None
    assert samples[-1][1].entries_held == 2048


@pytest.mark.kernel
@pytest.mark.parametrize("strategy", ["lru_hash", "lru_percpu_hash"])
def test_twice_the_capacity_hits_about_as_an_exact_lru_and_evicts(strategy):
    """Uniform draws: any demand policy hits about (entries held) / (working set); the kernel's map
    holds at most one CPU's free-list batch fewer entries than an exact LRU on one CPU."""
    spec = KernelSpec.of(strategy, map_size=4096, op="cache", working_set=2)
    samples, _ = _samples(spec)
    keys = spec.draw_range
    for r, smp in samples[1:]:  # after the first sample has filled the map
        assert abs(r.hits - r.ideal_hits) / r.ops <= LOCAL_FREE_TARGET / keys + 0.02
        assert smp.evictions > 0 and spec.map_size - LOCAL_FREE_TARGET <= smp.entries_held <= spec.map_size
    first = samples[-1][1].first_eviction
    assert first is not None and spec.map_size - 2 * LOCAL_FREE_TARGET <= first <= spec.map_size
    row = _row(_Build(spec), samples[-1][0], samples[-1][1], 0, None, 0.0)
    assert row["ideal_hit_ratio"] == pytest.approx(samples[-1][0].ideal_hits / samples[-1][0].ops)
    assert row["first_eviction_share"] == pytest.approx(first / spec.map_size)


@pytest.mark.kernel
@pytest.mark.skipif(possible_cpus() < 2, reason="per-CPU LRU lists differ from one list only with several CPUs")
def test_per_cpu_lists_give_one_cpu_its_share_of_the_capacity():
    """BPF_F_NO_COMMON_LRU: each CPU has its own list of max_entries / possible CPUs nodes, so one
    producer holds that many entries and hits about that share of what an exact LRU does."""
    spec = KernelSpec.of("lru_hash", map_size=4096, op="cache", working_set=2, lru_lists="percpu")
    samples, _ = _samples(spec)
    share = spec.map_size // possible_cpus()
    for r, smp in samples[1:]:
        assert smp.entries_held <= share
        assert r.hits / r.ops == pytest.approx(r.ideal_hits / r.ops / possible_cpus(), abs=0.03)


class _Build:
    """What _row reads of a build, for a row built outside a load."""

    def __init__(self, spec):
        self.spec, self.control = spec, False
        self.sizes, self.memory, self.memory_source, self.cgroup_per_entry = {}, None, None, False
        self.built = type("Built", (), {"sha256": "", "missed_remarks_total": None,
                                        "missed_remarks_text": lambda self: None})()


@pytest.mark.kernel
@pytest.mark.skipif(possible_cpus() < 2, reason="free nodes strand on other CPUs only with several CPUs")
def test_inserts_from_cpus_in_turn_evict_before_the_map_is_full():
    """Bursts of inserts from each CPU in turn (an affinity migration's pattern): each CPU keeps up to
    target_free free nodes (kernel/bpf/bpf_lru_list.c; at most LOCAL_FREE_TARGET), and a CPU whose
    own list is empty shrinks the common list rather than take them, so the map evicts before it is
    full: by at most what the other CPUs hold and the few free nodes it took itself with the shrink,
    one target_free each."""
    spec = KernelSpec.of("lru_hash", map_size=1000, op="cache", working_set=64)
    with LoadedBuild(spec, False, instance_config(spec, 0)) as b:
        runs = [b.run(100, i * 100, cpu=i % 2) for i in range(20)]
        smp = Sample(runs[-1:], **b.after_sample(runs[-1:]))
    cpus = possible_cpus()
    assert smp.first_eviction is not None
    assert spec.map_size - cpus * LOCAL_FREE_TARGET <= smp.first_eviction < spec.map_size


@pytest.mark.kernel
def test_the_minimal_reference_caches_the_same_keys():
    """bpf/minimal.bpf.c's cache op (lookup, insert on a miss) draws the same keys: at half the
    capacity its hits are an exact LRU's too."""
    spec = KernelSpec.of("lru_hash", map_size=4096, op="cache", working_set=0.5, implementation="minimal")
    samples, _ = _samples(spec, n=2)
    for r, smp in samples:
        assert r.hits == r.ideal_hits and smp.evictions is None


def test_minimal_runs_an_lru_hash_as_a_cache_only():
    with pytest.raises(BadInput, match="--implementation minimal has"):
        KernelSpec.of("lru_hash", map_size=1000, op="lookup", implementation="minimal")


def test_lru_rows_from_before_the_lists_axis_read_as_one_common_list():
    import pyarrow as pa

    from mapbench.results.store import as_measured

    table = pa.table({"engine": ["kernel", "kernel", "syscall", "kernel"],
                      "strategy": ["lru_hash", "hash", "lru_hash", "lru_percpu_hash"],
                      "lru_lists": pa.array([None, None, None, "percpu"], pa.string())})
    assert as_measured(table)["lru_lists"].to_pylist() == ["common", None, None, "percpu"]
