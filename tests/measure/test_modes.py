"""Throughput and latency modes, and the minimal reference programs (bpf/minimal.bpf.c)."""

import statistics

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mapbench.errors import BadInput
from mapbench.measure import keys
from mapbench.measure.cpus import pinned_to, rotation
from mapbench.measure.engines.kernel import MODES, KernelSpec, LoadedBuild, instance_config
from mapbench.present import render
from mapbench.results import store as results

hit_ratios = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(min_value=0, max_value=1))


@pytest.mark.kernel
@given(strategy=st.sampled_from(["hash", "bloom"]), mode=st.sampled_from(MODES),
       size=st.integers(min_value=1, max_value=5000), hit_ratio=hit_ratios,
       seed=st.integers(min_value=0, max_value=2**32), nr_loops=st.integers(min_value=1, max_value=20000),
       start=st.integers(min_value=0, max_value=2**40))
def test_the_minimal_programs_find_exactly_the_keys_numpy_predicts(strategy, mode, size, hit_ratio, seed, nr_loops,
                                                                  start):
    minimal = KernelSpec.of(strategy, map_size=size, hit_ratio=hit_ratio, seed=seed, mode=mode,
                            implementation="minimal")
    config = instance_config(minimal, 0)
    idx, hit = keys.draw_indexes(config, start, nr_loops)
    members = keys.member_keys(np.arange(size, dtype=np.uint64), config["key_mult"], config["key_salt"])
    values = keys.value_words(members, 1)[:, 0]
    with LoadedBuild(minimal, False, config) as program, LoadedBuild(minimal, True, config) as control, \
            LoadedBuild(KernelSpec.of(strategy, map_size=size, hit_ratio=hit_ratio, seed=seed, mode=mode), False,
                        config) as engine:
        r, c, e = program.run(nr_loops, start), control.run(nr_loops, start), engine.run(nr_loops, start)
    assert r.hits == e.hits == int(hit.sum()) and c.hits == 0
    assert r.value_checksum == e.value_checksum == int(np.bitwise_xor.reduce(values[idx[hit].astype(np.int64)],
                                                                             initial=np.uint64(0)))
    assert r.checksum == c.checksum == e.checksum  # the reference, its control and the engine drew the same keys
    if strategy == "bloom":
        assert r.filter_positives >= r.hits  # no false negatives


@pytest.mark.kernel
@pytest.mark.parametrize("mode", MODES)
def test_the_minimal_task_storage_gets_the_record_every_time(mode):
    spec = KernelSpec.of("task_storage", mode=mode, implementation="minimal")
    with LoadedBuild(spec, False, instance_config(spec, 0)) as program:
        r = program.run(5000, 0)
    assert r.hits == r.ops == 5000


def _net_ns(builds: dict, samples: int = 8, nr_loops: int = 20000) -> dict:
    """Median ns/op of each (build, control) pair, net of the control, run interleaved."""
    names = [(name, k) for name in builds for k in (0, 1)]
    net: dict = {name: [] for name in builds}
    with pinned_to(None):
        for sample in range(samples + 1):
            gross = {(n, k): builds[n][k].run(nr_loops, (sample + 1) * nr_loops).ns_per_op
                     for n, k in rotation(names, sample)}
            if sample:  # the first warms the maps
                for name in builds:
                    net[name].append(gross[(name, 0)] - gross[(name, 1)])
    return {name: statistics.median(v) for name, v in net.items()}


@pytest.mark.kernel
@pytest.mark.parametrize("hit_ratio", [1.0, 0.0])
def test_latency_mode_chains_every_op_hits_and_misses_alike(hit_ratio):
    """At 1e6 entries a lookup waits for memory: back to back, the CPU overlaps independent ones;
    chained, it cannot. Misses too: a NULL from a predicted branch would let them overlap (measured
    here 1.03x the throughput figure with the returned pointer alone; 2.3x with the clock)."""
    builds = {}
    try:
        for mode in MODES:
            spec = KernelSpec.of("hash", map_size=10**6, hit_ratio=hit_ratio, mode=mode)
            config = instance_config(spec, 0)
            builds[mode] = (LoadedBuild(spec, False, config), LoadedBuild(spec, True, config))
        net = _net_ns(builds)
    finally:
        for pair in builds.values():
            for b in pair:
                b.close()
    assert net["latency"] > 1.3 * net["throughput"], net


def test_every_row_names_its_mode_and_older_kernel_rows_read_as_mixed():
    latency = KernelSpec.of("hash", mode="latency")
    assert latency.config_fields()["mode"] == "latency" and KernelSpec.of("hash").mode == "throughput"
    assert render.config_label(latency.config_fields(), ["strategy", "mode"]) == "hash latency mode"
    assert latency.control_key() != KernelSpec.of("hash").control_key()  # a control of its own
    rows = [{"engine": "kernel", "strategy": "hash", "op": "lookup", "map_size": 1000},
            {"engine": "syscall", "strategy": "hash", "op": "lookup", "map_size": 1000}]
    old = results.make_table(rows, "run", {}).to_pylist()
    assert (old[0]["mode"], old[0]["implementation"]) == ("mixed", "mapbench")
    assert (old[1]["mode"], old[1]["implementation"]) == (None, None)  # no such axis there
    assert render.config_label(old[0], ["mode"]) == "mixed mode (before --mode)"


def test_the_minimal_reference_has_a_control_of_its_own_and_task_storage_draws_nothing():
    minimal = KernelSpec.of("hash", implementation="minimal")
    assert minimal.source == "minimal.bpf.c" and KernelSpec.of("hash").source == "membership.bpf.c"
    assert minimal.control_key() != KernelSpec.of("hash").control_key()
    # task storage has no key to draw: its control draws no pid, the pid hash's does
    assert KernelSpec.of("task_storage").control_key() != KernelSpec.of("pid_hash").control_key()
    assert instance_config(KernelSpec.of("task_storage"), 0)["keyless"] == 1


@pytest.mark.parametrize("fields, needle", [
    ({"strategy": "pid_hash"},
     "has hash lookup, bloom lookup, task_storage get, lpm_trie lookup and the hash types' cache, not pid_hash get"),
    ({"strategy": "hash", "op": "update"}, "not hash update"),
    ({"strategy": "hash", "key_size": 8}, "runs --key-size 4 only, not 8"),
    ({"strategy": "hash", "value_size": 64}, "runs --value-size 8 only"),
    ({"strategy": "hash", "key_distribution": "zipf"}, "runs --keys uniform only"),
    ({"strategy": "bloom", "bloom_value_size": 16}, "runs --bloom-value-size 4 only"),
    ({"strategy": "hash", "producers": 2}, "runs --producers 1 only"),
    ({"strategy": "hash", "mode": "chained"}, "--mode 'chained' is unknown: choose one of throughput, latency"),
])
def test_what_the_minimal_programs_do_not_run_is_refused(fields, needle):
    with pytest.raises(BadInput, match=needle):
        KernelSpec.of(**{"implementation": "minimal", **fields})


def _rows(comparison: str, sides: list[tuple[dict, float]], loads: int = 3, samples: int = 4) -> list[dict]:
    """Measured rows of one comparison: each side's config at a fixed ns/op, a little noise."""
    rng = np.random.default_rng(len(comparison))
    base = {"engine": "kernel", "family": "membership", "op": "lookup", "map_size": 10**6, "isa": "v3",
            "key_distribution": "uniform", "hit_ratio": 0.5, "warmup": False, "status": "ok", "comparison": comparison}
    return [{**base, **config, "position": position, "instance": load, "sample": s,
             "ns_per_op": ns * (1 + 0.01 * rng.standard_normal())}
            for position, (config, ns) in enumerate(sides) for load in range(loads) for s in range(samples)]


def test_the_report_tables_the_reference_and_says_where_the_mode_changes_the_conclusion():
    from mapbench.present.report import report_markdown

    rows = []
    for mode, bloom_ns in (("throughput", 120.0), ("latency", 80.0)):  # bloom dearer, then cheaper
        hash_, bloom = ({"strategy": "hash", "mode": mode, "implementation": "mapbench"},
                        {"strategy": "bloom", "mode": mode, "implementation": "mapbench", "nr_hash_funcs": 3})
        rows += _rows(f"r/{mode}", [(hash_, 100.0), (bloom, bloom_ns)], loads=5)  # a verdict needs 5 loads
        rows += _rows(f"r/ref-{mode}", [({**hash_, "implementation": "minimal"}, 100.0), (hash_, 104.0)], loads=5)
    text = report_markdown(results.make_table(rows, "r", {"host": "h"}).to_pandas(), "t")
    assert ("**The mode changes the conclusion: bloom / hash, kernel lookup 1,000,000 entries 4 B keys fill 1 "
            "uniform keys hit 0.5 v3: dearer in throughput mode") in text
    assert "cheaper in latency mode" in text and "Of 1 comparisons measured in both modes, 1 reach" in text
    assert "| mapbench / minimal | throughput mode | latency mode |" in text
    assert "| hash lookup 1,000,000 entries hit 0.5 | 1.04" in text
    assert "The engine against its reference, latency mode (the minimal programs" in text
    assert "1 of 1 within 5%, all within 10%" in text
