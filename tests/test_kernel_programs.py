"""The paired programs against the real kernel: same observable results whatever the storage."""

import os
import struct
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mapbench import keys, libbpf
from mapbench.engines import kernel
from mapbench.engines.kernel import KernelSpec, LoadedBuild, instance_config
from mapbench.runner import MeasureOptions
from mapbench.strategies import bloom_fp_theory

pytestmark = pytest.mark.kernel


@contextmanager
def pair(spec: KernelSpec, instance: int = 0):
    """A strategy build and its family's control, loaded with the same key stream."""
    config = instance_config(spec, instance)
    with LoadedBuild(spec, False, config) as strategy, LoadedBuild(spec, True, config) as control:
        yield strategy, control

hit_ratios = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(min_value=0, max_value=1))


@given(size=st.integers(min_value=1, max_value=5000), hit_ratio=hit_ratios,
       seed=st.integers(min_value=0, max_value=2**32), nr_loops=st.integers(min_value=1, max_value=20000),
       start=st.integers(min_value=0, max_value=2**40), hash_funcs=st.integers(min_value=1, max_value=10),
       value_size=st.sampled_from(list(range(4, 65, 4))))
def test_hash_and_bloom_find_exactly_the_predicted_keys(size, hit_ratio, seed, nr_loops, start,
                                                        hash_funcs, value_size):
    hash_spec = KernelSpec("hash", map_size=size, hit_ratio=hit_ratio, seed=seed)
    bloom_spec = KernelSpec("bloom", map_size=size, hit_ratio=hit_ratio, seed=seed,
                            nr_hash_funcs=hash_funcs, bloom_value_size=value_size)
    config = instance_config(bloom_spec, 0)
    # the pair draws the same keys (only the bloom element size differs)
    assert {**instance_config(hash_spec, 0), "bloom_words": 0} == {**config, "bloom_words": 0}
    expected = keys.expected_hits(config["seed"], start, nr_loops, hash_spec.hit_thresh)
    results = {}
    for spec, control, name in ((hash_spec, False, "MB_HASH"), (bloom_spec, False, "MB_BLOOM"),
                                (hash_spec, True, "MB_CONTROL")):
        with LoadedBuild(spec, control, config) as program:
            results[name] = program.run(nr_loops, start)
    assert results["MB_HASH"].hits == expected
    assert results["MB_BLOOM"].hits == expected
    # no false negatives: the filter said "maybe" for every key that was present
    assert results["MB_BLOOM"].filter_positives >= expected
    assert results["MB_CONTROL"].hits == 0
    # all three builds drew the same key stream
    assert results["MB_HASH"].checksum == results["MB_BLOOM"].checksum == results["MB_CONTROL"].checksum
    assert results["MB_HASH"].ops == nr_loops


@given(size=st.integers(min_value=1, max_value=20000), seed=st.integers(min_value=0, max_value=2**32),
       hash_funcs=st.integers(min_value=1, max_value=15), value_size=st.sampled_from(list(range(4, 65, 4))))
def test_bloom_filter_has_no_false_negatives(size, seed, hash_funcs, value_size):
    spec = KernelSpec("bloom", map_size=size, seed=seed, nr_hash_funcs=hash_funcs,
                      bloom_value_size=value_size)
    config = instance_config(spec, 0)
    members = keys.member_keys(np.arange(size, dtype=np.uint64), config["key_mult"], config["key_salt"])
    elements = keys.bloom_elements(members, value_size // 4)
    with LoadedBuild(spec, False, config) as program:
        bloom = program.obj.map("filter")
        assert bloom.value_size == value_size
        for element in elements:  # a user-space peek: lookup with a NULL key, the element as value
            rc = libbpf.lib.bpf_map_lookup_elem(bloom.fd, libbpf.ffi.NULL, libbpf.ffi.from_buffer(element))
            assert rc == 0, f"element {element} inserted but the filter says absent ({rc})"


def test_update_touches_only_present_keys():
    spec = KernelSpec("hash", op="update", map_size=1000)
    with pair(spec) as (strategy, _):
        r = strategy.run(5000, 0)
        assert r.hits == r.ops == 5000  # BPF_EXIST succeeded every time
        assert strategy.obj.map("members").memlock_bytes() > 0


def _task_count(program: LoadedBuild) -> int:
    states = program.obj.map("states")
    if program.spec.strategy == "task_storage":
        pidfd = libbpf.pidfd_open(os.getpid())
        try:
            value = states.lookup(struct.pack("i", pidfd))
        finally:
            os.close(pidfd)
    else:
        value = states.lookup(struct.pack("I", os.getpid()))
    return struct.unpack("QQ", value)[1]


@given(runs=st.lists(st.integers(min_value=1, max_value=50000), min_size=1, max_size=4))
def test_per_task_pair_counts_the_same_whatever_the_storage(runs):
    # With a population of one task the pid hash and task storage must hold the same record.
    counts = {}
    for strategy in ("pid_hash", "task_storage"):
        spec = KernelSpec(strategy, map_size=1)
        with LoadedBuild(spec, False, instance_config(spec, 0)) as program:
            start = 0
            for n in runs:
                r = program.run(n, start)
                assert r.hits == r.ops == n
                start += n
            counts[strategy] = _task_count(program)
    assert counts["pid_hash"] == counts["task_storage"] == sum(runs)


def test_pid_hash_spreads_gets_over_its_population():
    spec = KernelSpec("pid_hash", map_size=1000)
    with pair(spec) as (strategy, _):
        r = strategy.run(20000, 0)
        assert r.hits == 20000
        states = strategy.obj.map("states")
        total = sum(struct.unpack("QQ", states.lookup(struct.pack("I", os.getpid() + i)))[1]
                    for i in range(1000))
        assert total == 20000


def test_objects_are_closed_when_a_load_fails(monkeypatch):
    # The control's build fails after the strategy's loaded: the run must not leak the first object.
    before = set(os.listdir("/proc/self/fd"))
    real = kernel.build.compile_object

    def failing(source, storage, isa="v3"):
        if storage == "MB_CONTROL":
            raise RuntimeError("injected")
        return real(source, storage, isa)

    monkeypatch.setattr(kernel.build, "compile_object", failing)
    with pytest.raises(RuntimeError, match="injected"):
        kernel.measure([KernelSpec("hash", map_size=1000)], MeasureOptions(samples=1, instances=1, warmup=0))
    assert set(os.listdir("/proc/self/fd")) == before


def test_bloom_filter_matches_the_fp_theory_of_the_filter_the_kernel_builds():
    # 20k keys, all misses. Each load hashes with a new seed, so one filter's rate scatters about
    # theory by more than the binomial error of its lookups (sd 0.0038 at k=1, seen over 30
    # loads): the mean of 8 loads is held to the binomial bound.
    loads = 8
    for k in (1, 3, 7):
        spec = KernelSpec("bloom", map_size=20000, hit_ratio=0.0, nr_hash_funcs=k)
        rates, draws = [], 0
        for instance in range(loads):
            with pair(spec, instance) as (strategy, _):
                r = strategy.run(200000, 0)
            rates.append(r.filter_positives / r.ops)
            draws = r.ops
        measured, theory = sum(rates) / loads, bloom_fp_theory(20000, k)
        assert abs(measured - theory) < 4 * (theory * (1 - theory) / draws) ** 0.5 + 0.002, (k, rates, theory)


def test_task_storage_in_many_maps_counts_every_get():
    spec = KernelSpec("task_storage_maps", map_size=1, nr_maps=20)
    with pair(spec) as (strategy, control):
        r = strategy.run(1000, 0)
        assert r.ops == 20000 and r.hits == 20000
        assert control.run(1000, 0).hits == 0


MAP_TYPES = ["hash", "lru_hash", "percpu_hash", "lru_percpu_hash", "array", "percpu_array"]


@given(strategy=st.sampled_from(MAP_TYPES), size=st.integers(min_value=1, max_value=5000), hit_ratio=hit_ratios,
       seed=st.integers(min_value=0, max_value=2**32), nr_loops=st.integers(min_value=1, max_value=20000),
       start=st.integers(min_value=0, max_value=2**40), no_prealloc=st.booleans())
def test_every_map_type_finds_exactly_the_predicted_keys(strategy, size, hit_ratio, seed, nr_loops, start,
                                                         no_prealloc):
    spec = KernelSpec(strategy, map_size=size, hit_ratio=hit_ratio, seed=seed, no_prealloc=no_prealloc)
    config = instance_config(spec, 0)
    expected = keys.expected_hits(config["seed"], start, nr_loops, spec.hit_thresh)
    with LoadedBuild(spec, False, config) as program:
        r = program.run(nr_loops, start)
        members = program.obj.map("members")
        assert members.map_type == libbpf.BPF_MAP_TYPE[strategy]
        assert bool(libbpf.lib.bpf_map__map_flags(members._ptr) & libbpf.BPF_F_NO_PREALLOC) == spec.no_prealloc
    assert r.hits == expected


@pytest.mark.parametrize("strategy", MAP_TYPES)
def test_every_map_type_updates_every_present_key(strategy):
    spec = KernelSpec(strategy, op="update", map_size=3000)
    with pair(spec) as (program, control):
        r = program.run(20000, 0)
        assert r.hits == r.ops == 20000  # BPF_EXIST found every key: none was evicted
        assert program.memory > 0
        assert control.run(20000, 0).checksum == r.checksum


def test_no_prealloc_applies_to_hash_and_percpu_hash_only():
    assert KernelSpec("hash", no_prealloc=True).no_prealloc
    assert KernelSpec("percpu_hash", no_prealloc=True).no_prealloc
    for strategy in ("lru_hash", "array", "bloom"):  # LRU maps are always preallocated
        assert not KernelSpec(strategy, no_prealloc=True).no_prealloc
