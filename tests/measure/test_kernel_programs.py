"""The paired programs against the real kernel: same observable results whatever the storage."""

import errno
import os
import struct
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mapbench.binding import libbpf
from mapbench.measure import keys, runner
from mapbench.measure.cpus import pinned_to
from mapbench.measure.engine import Host, MeasureOptions
from mapbench.measure.engines import kernel
from mapbench.measure.engines.kernel import KernelSpec, LoadedBuild, instance_config
from mapbench.measure.strategies import STRATEGIES, bloom_fp_theory

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
    hash_spec = KernelSpec.of("hash", map_size=size, hit_ratio=hit_ratio, seed=seed)
    bloom_spec = KernelSpec.of("bloom", map_size=size, hit_ratio=hit_ratio, seed=seed,
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
    spec = KernelSpec.of("bloom", map_size=size, seed=seed, nr_hash_funcs=hash_funcs,
                      bloom_value_size=value_size)
    config = instance_config(spec, 0)
    members = keys.member_keys(np.arange(size, dtype=np.uint64), config["key_mult"], config["key_salt"])
    elements = keys.key_words(members, value_size // 4)
    with LoadedBuild(spec, False, config) as program:
        bloom = program.obj.map("filter")
        assert bloom.value_size == value_size
        for element in elements:  # a user-space peek: lookup with a NULL key, the element as value
            rc = libbpf.lib.bpf_map_lookup_elem(bloom.fd, libbpf.ffi.NULL, libbpf.ffi.from_buffer(element))
            assert rc == 0, f"element {element} inserted but the filter says absent ({rc})"


def test_update_touches_only_present_keys():
    spec = KernelSpec.of("hash", op="update", map_size=1000)
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


@given(runs=st.lists(st.integers(min_value=1, max_value=50000), min_size=1, max_size=4),
       mode=st.sampled_from(kernel.MODES))
def test_per_task_pair_counts_the_same_whatever_the_storage(runs, mode):
    # With a population of one task the pid hash and task storage must hold the same record.
    counts = {}
    for strategy in ("pid_hash", "task_storage"):
        spec = KernelSpec.of(strategy, map_size=1, mode=mode)
        with LoadedBuild(spec, False, instance_config(spec, 0)) as program:
            start = 0
            for n in runs:
                r = program.run(n, start)
                assert r.hits == r.ops == n
                start += n
            counts[strategy] = _task_count(program)
    assert counts["pid_hash"] == counts["task_storage"] == sum(runs)


def test_pid_hash_spreads_gets_over_its_population():
    spec = KernelSpec.of("pid_hash", map_size=1000)
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

    def failing(source, storage, isa="v3", *defines):
        if storage == "MB_CONTROL":
            raise RuntimeError("injected")
        return real(source, storage, isa, *defines)

    monkeypatch.setattr(kernel.build, "compile_object", failing)
    with pytest.raises(RuntimeError, match="injected"):
        runner.measure([KernelSpec.of("hash", map_size=1000)], MeasureOptions(samples=1, instances=1, warmup=0))
    assert set(os.listdir("/proc/self/fd")) == before


def test_bloom_filter_matches_the_fp_theory_of_the_filter_the_kernel_builds():
    # 20k keys, all misses. Each load hashes with a new seed, so one filter's rate scatters about
    # theory by more than the binomial error of its lookups (sd 0.0038 at k=1, seen over 30
    # loads): the mean of 8 loads is held to the binomial bound.
    loads = 8
    for k in (1, 3, 7):
        spec = KernelSpec.of("bloom", map_size=20000, hit_ratio=0.0, nr_hash_funcs=k)
        rates, draws = [], 0
        for instance in range(loads):
            with pair(spec, instance) as (strategy, _):
                r = strategy.run(200000, 0)
            rates.append(r.filter_positives / r.ops)
            draws = r.ops
        measured, theory = sum(rates) / loads, bloom_fp_theory(20000, k)
        assert abs(measured - theory) < 4 * (theory * (1 - theory) / draws) ** 0.5 + 0.002, (k, rates, theory)


@pytest.mark.parametrize("mode", kernel.MODES)
def test_task_storage_in_many_maps_counts_every_get(mode):
    spec = KernelSpec.of("task_storage_maps", map_size=1, nr_maps=20, mode=mode)
    with pair(spec) as (strategy, control):
        r = strategy.run(1000, 0)
        assert r.ops == 20000 and r.hits == 20000
        assert control.run(1000, 0).hits == 0


MAP_TYPES = ["hash", "lru_hash", "percpu_hash", "lru_percpu_hash", "array", "percpu_array"]


def _predicted(spec: KernelSpec, config: dict, start: int, nr_loops: int):
    """numpy's draws (entry index, hit) and the member keys of a configuration."""
    idx, hit = keys.draw_indexes(config, start, nr_loops, kernel.draw_table(spec, config))
    index = np.arange(config["map_size"], dtype=np.uint64)
    members = index.astype(np.uint32) if config["index_keys"] else keys.member_keys(
        index, config["key_mult"], config["key_salt"])
    return idx, hit, members


shapes = dict(strategy=st.sampled_from(MAP_TYPES), size=st.integers(min_value=1, max_value=5000),
              hit_ratio=hit_ratios, seed=st.integers(min_value=0, max_value=2**32),
              nr_loops=st.integers(min_value=1, max_value=20000), start=st.integers(min_value=0, max_value=2**40),
              no_prealloc=st.booleans(), key_size=st.sampled_from([4, 8, 40, 64, 252, 256]),
              value_size=st.sampled_from([8, 16, 64, 256, 512]),
              distribution=st.sampled_from(["uniform", "zipf", "sequential"]),
              zipf_s=st.sampled_from([0.0, 0.5, 0.99, 1.5]), fill=st.sampled_from([1.0, 0.5, 0.01]),
              mode=st.sampled_from(kernel.MODES))


@given(**shapes)
def test_every_map_type_and_shape_finds_exactly_the_predicted_keys_and_values(
        strategy, size, hit_ratio, seed, nr_loops, start, no_prealloc, key_size, value_size, distribution, zipf_s,
        fill, mode):
    spec = KernelSpec.of(strategy, map_size=size, hit_ratio=hit_ratio, seed=seed, no_prealloc=no_prealloc,
                      key_size=key_size, value_size=value_size, key_distribution=distribution, zipf_s=zipf_s,
                      fill=fill, mode=mode)
    config = instance_config(spec, 0)
    idx, hit, members = _predicted(spec, config, start, nr_loops)
    # a lookup reads the whole value: the sum of its words, xored over the hits
    sums = keys.value_words(members, spec.value_size // 8).sum(axis=1, dtype=np.uint64)
    expected_values = np.bitwise_xor.reduce(sums[idx[hit].astype(np.int64)], initial=np.uint64(0))
    with pair(spec) as (program, control):
        r, c = program.run(nr_loops, start), control.run(nr_loops, start)
        members_map = program.obj.map("members")
        assert members_map.map_type == libbpf.BPF_MAP_TYPE[strategy]
        assert members_map.key_size == (4 if "array" in strategy else key_size)
        assert members_map.value_size == value_size
        assert members_map.max_entries >= size
        assert bool(libbpf.lib.bpf_map__map_flags(members_map._ptr) & libbpf.BPF_F_NO_PREALLOC) == spec.no_prealloc
    assert r.hits == int(hit.sum())
    assert r.value_checksum == int(expected_values)
    assert r.checksum == c.checksum and c.hits == 0


@given(strategy=st.sampled_from(MAP_TYPES), op=st.sampled_from(["update", "delete_insert"]),
       size=st.integers(min_value=1, max_value=3000), seed=st.integers(min_value=0, max_value=2**32),
       nr_loops=st.integers(min_value=1, max_value=3000), key_size=st.sampled_from([4, 40, 256]),
       value_size=st.sampled_from([8, 64, 512]), distribution=st.sampled_from(["uniform", "zipf"]),
       no_prealloc=st.booleans(), mode=st.sampled_from(kernel.MODES))
def test_writers_write_exactly_the_drawn_entries_whole(strategy, op, size, seed, nr_loops, key_size, value_size,
                                                        distribution, no_prealloc, mode):
    if op in dict(STRATEGIES[strategy].refused):
        return
    spec = KernelSpec.of(strategy, op=op, map_size=size, seed=seed, key_size=key_size, value_size=value_size,
                      key_distribution=distribution, no_prealloc=no_prealloc, mode=mode)
    config = instance_config(spec, 0)
    idx, _, members = _predicted(spec, config, 0, nr_loops)
    drawn = np.zeros(len(members), dtype=bool)
    drawn[idx.astype(np.int64)] = True
    words = value_size // 8
    with pinned_to(0), LoadedBuild(spec, False, config) as program:
        r = program.run(nr_loops, 0)
        assert r.hits == r.ops == nr_loops
        m = program.obj.map("members")
        stride = (value_size + 7) // 8 * 8 // 8
        for i in np.flatnonzero(drawn)[:50].tolist() + np.flatnonzero(~drawn)[:50].tolist():
            key = members[i:i + 1] if "array" in strategy else keys.key_words(members[i:i + 1], key_size // 4)
            got = np.frombuffer(m.lookup(key.tobytes()), dtype=np.uint64).reshape(-1, stride)[:, :words]
            mine = keys.value_words(members[i:i + 1], words, gen=int(drawn[i]))[0]
            # this CPU's value (the first, for a map that is not per-CPU) is what the program wrote
            assert (got[0] == mine).all(), (i, got[0], mine)
            if got.shape[0] > 1 and drawn[i] and op == "update":
                assert (got[1:] == keys.value_words(members[i:i + 1], words)[0]).all()  # other CPUs untouched


@given(capacity=st.integers(min_value=1, max_value=2000), extra=st.integers(min_value=1, max_value=5000),
       percpu=st.booleans())
def test_lru_maps_over_capacity_evict_rather_than_fail(capacity, extra, percpu):
    map_type = "lru_percpu_hash" if percpu else "lru_hash"
    n = capacity + extra
    members = keys.key_words(keys.member_keys(np.arange(n, dtype=np.uint64), 0x9E3779B1, 7), 1)
    with libbpf.Map(map_type, 4, 8, capacity) as m:
        values = np.zeros((n, m.elem_value_bytes // 8), dtype=np.uint64)
        t = m.run(libbpf.SYSCALL_OPS["elem", "update"], n, members, values)  # raises on any failure
        assert t.done == n
        held = sum(m.lookup(members[i].tobytes()) is not None for i in range(n))
    assert 0 < held <= capacity


def test_arrays_refuse_deletes_as_the_strategy_records_say():
    with libbpf.Map("array", 4, 8, 4) as m:
        with pytest.raises(libbpf.KernelRefused) as exc:
            m.delete(np.uint32(1).tobytes())
    assert exc.value.errno == errno.EINVAL
    assert "EINVAL" in dict(STRATEGIES["array"].refused)["delete_insert"]
    spec = kernel.make_spec({"strategy": "array", "op": "delete_insert", "map_size": 10}, Host.here())
    assert spec.reason == dict(STRATEGIES["array"].refused)["delete_insert"]


@pytest.mark.parametrize("strategy", MAP_TYPES)
def test_every_map_type_updates_every_present_key(strategy):
    spec = KernelSpec.of(strategy, op="update", map_size=3000)
    with pair(spec) as (program, control):
        r = program.run(20000, 0)
        assert r.hits == r.ops == 20000  # BPF_EXIST found every key: none was evicted
        assert program.memory > 0
        assert control.run(20000, 0).checksum == r.checksum


def test_no_prealloc_applies_to_hash_and_percpu_hash_only():
    assert KernelSpec.of("hash", no_prealloc=True).no_prealloc
    assert KernelSpec.of("percpu_hash", no_prealloc=True).no_prealloc
    for strategy in ("lru_hash", "array", "bloom"):  # LRU maps are always preallocated
        assert not KernelSpec.of(strategy, no_prealloc=True).no_prealloc
