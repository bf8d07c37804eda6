"""Element and batch syscalls against the real kernel, checked against a Python model."""

from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mapbench.binding.libbpf import SYSCALL_OPS, Map, possible_cpus

pytestmark = pytest.mark.kernel

U32_MAX, U64_MAX = 2**32 - 1, 2**64 - 1
HASH_TYPES = ["hash", "lru_hash", "percpu_hash"]
ALL_TYPES = HASH_TYPES + ["array"]


def ncpu(map_type: str) -> int:
    return possible_cpus() if map_type == "percpu_hash" else 1


def make_values(map_type: str, raw: list[int]) -> np.ndarray:
    """One u64 per element, or one per possible CPU for per-CPU maps (each CPU its own value)."""
    n = ncpu(map_type)
    return np.array([[(v + cpu) % 2**64 for cpu in range(n)] for v in raw], dtype=np.uint64)


def capacity(map_type: str, n: int) -> int:
    # an LRU hash may evict before it is full (per-CPU free lists); leave it room
    return n + 512 if map_type == "lru_hash" else max(n, 1)


def lookup_walk(m: Map, batch: int, delete: bool = False):
    """The engine's walk (_native.c) over every entry: (keys, values, timing)."""
    slots = m.max_entries + 1  # room for the call that answers ENOENT
    out_keys = np.zeros(slots * m.key_size, np.uint8)
    out_values = np.zeros(slots * m.elem_value_bytes, np.uint8)
    t = m.run(SYSCALL_OPS["batch", "lookup_and_delete" if delete else "lookup"], slots,
              out_keys=out_keys, out_values=out_values, batch=batch)
    return out_keys[: t.done * m.key_size].view(np.uint32), out_values[: t.done * m.elem_value_bytes], t


def delete_batch(m: Map, keys: np.ndarray, batch: int) -> None:
    m.run(SYSCALL_OPS["batch", "delete"], len(keys), keys, batch=batch)


def walk(m: Map, batch: int, delete: bool = False) -> dict[int, bytes]:
    keys, values, t = lookup_walk(m, batch, delete)
    values = values.reshape(t.done, m.elem_value_bytes)
    found = {int(k): values[i].tobytes() for i, k in enumerate(keys)}
    assert len(found) == t.done, "a walk returned a key twice"
    return found


def per_element(m: Map, keys) -> dict[int, bytes]:
    out = {}
    for k in keys:
        v = m.lookup(np.uint32(k).tobytes())
        if v is not None:
            out[int(k)] = v
    return out


@contextmanager
def filled(map_type: str, data: dict[int, int], batch: int):
    """A map of map_type holding `data` (written by batch update), and what it must hold."""
    keys = np.array(list(data), dtype=np.uint32)
    values = make_values(map_type, list(data.values()))
    with Map(map_type, 4, 8, capacity(map_type, len(data))) as m:
        if len(data):
            m.update_batch(keys, values, batch)
        yield m, keys, {int(k): values[i].tobytes() for i, k in enumerate(keys)}


contents = st.dictionaries(
    st.one_of(st.sampled_from([0, U32_MAX]), st.integers(0, U32_MAX)),
    st.one_of(st.sampled_from([0, U64_MAX]), st.integers(0, U64_MAX)),
    min_size=0, max_size=300)
batch_sizes = st.one_of(st.sampled_from([1, 2, 1000]), st.integers(1, 400))


@settings(max_examples=30)
@given(map_type=st.sampled_from(HASH_TYPES), data=contents, batch=batch_sizes)
def test_batch_lookup_walk_returns_exactly_the_contents(map_type, data, batch):
    with filled(map_type, data, batch) as (m, keys, expected):
        assert walk(m, batch) == expected
        assert per_element(m, keys) == expected


@settings(max_examples=20)
@given(size=st.integers(1, 300), batch=batch_sizes, raw=st.data())
def test_array_walk_equals_element_lookups(size, batch, raw):
    values = raw.draw(st.lists(st.integers(0, U64_MAX), min_size=size, max_size=size))
    with Map("array", 4, 8, size) as m:
        keys = np.arange(size, dtype=np.uint32)
        m.update_batch(keys, np.array(values, dtype=np.uint64), batch)
        assert walk(m, batch) == per_element(m, keys) == {
            i: np.uint64(v).tobytes() for i, v in enumerate(values)}


@settings(max_examples=30)
@given(map_type=st.sampled_from(HASH_TYPES), data=contents, batch=batch_sizes)
def test_lookup_and_delete_returns_every_entry_once_and_empties_the_map(map_type, data, batch):
    with filled(map_type, data, batch) as (m, keys, expected):
        assert walk(m, batch, delete=True) == expected
        assert walk(m, batch) == {}
        assert per_element(m, keys) == {}


@settings(max_examples=30)
@given(map_type=st.sampled_from(HASH_TYPES), data=contents, batch=batch_sizes, raw=st.data())
def test_delete_batch_of_a_subset_leaves_exactly_the_rest(map_type, data, batch, raw):
    doomed = raw.draw(st.sets(st.sampled_from(list(data)) if data else st.nothing()))
    with filled(map_type, data, batch) as (m, _, contents_before):
        if doomed:
            delete_batch(m, np.array(sorted(doomed), dtype=np.uint32), batch)
        assert walk(m, batch) == {k: v for k, v in contents_before.items() if k not in doomed}


def test_lookup_batch_retries_when_a_bucket_is_larger_than_the_count():
    # 2000 keys in a 2000-entry hash: some buckets hold several entries, so a count of 1 must
    # get ENOSPC and be retried larger; the walk still returns everything once.
    with Map("hash", 4, 8, 2000) as m:
        keys = np.arange(2000, dtype=np.uint32)
        m.update_batch(keys, keys.astype(np.uint64))
        found, _, t = lookup_walk(m, 1)
        assert t.done == 2000 and t.retries > 0
        assert sorted(found.tolist()) == list(range(2000))


class MapModel(RuleBasedStateMachine):
    """Element and batch operations mixed on one live map, against a dict."""

    map_type = "hash"
    max_entries = 64

    def __init__(self):
        super().__init__()
        self.m = Map(self.map_type, 4, 8, capacity(self.map_type, self.max_entries))
        self.model: dict[int, bytes] = {}
        if self.map_type == "array":
            self.model = {k: bytes(8) for k in range(self.max_entries)}

    def teardown(self):
        self.m.close()

    keys = st.integers(0, U32_MAX)
    values = st.integers(0, U64_MAX)

    def _key(self, k):
        return k % self.max_entries if self.map_type == "array" else k

    def _room_for(self, new_keys) -> bool:
        return len(set(self.model) | set(new_keys)) <= self.max_entries

    @rule(k=keys, v=values)
    def update_elem(self, k, v):
        k = self._key(k)
        if not self._room_for([k]):
            return
        value = make_values(self.map_type, [v])[0]
        self.m.update(np.uint32(k).tobytes(), value.tobytes())
        self.model[k] = value.tobytes()

    @rule(k=keys)
    def delete_elem(self, k):
        if self.map_type == "array":
            return  # arrays have no delete (EINVAL), covered by the syscall engine's rows
        k = self._key(k)
        assert self.m.delete(np.uint32(k).tobytes()) == (k in self.model)
        self.model.pop(k, None)

    @rule(items=st.dictionaries(keys, values, max_size=20), batch=batch_sizes)
    def update_batch(self, items, batch):
        items = {self._key(k): v for k, v in items.items()}
        if not items or not self._room_for(items):
            return
        ks = np.array(list(items), dtype=np.uint32)
        vs = make_values(self.map_type, list(items.values()))
        self.m.update_batch(ks, vs, batch)
        self.model.update({int(k): vs[i].tobytes() for i, k in enumerate(ks)})

    @precondition(lambda self: self.map_type != "array" and self.model)
    @rule(data=st.data(), batch=batch_sizes)
    def delete_batch(self, data, batch):
        doomed = data.draw(st.sets(st.sampled_from(sorted(self.model)), min_size=1))
        delete_batch(self.m, np.array(sorted(doomed), dtype=np.uint32), batch)
        for k in doomed:
            del self.model[k]

    @precondition(lambda self: self.map_type != "array")
    @rule(batch=batch_sizes)
    def lookup_and_delete_everything(self, batch):
        assert walk(self.m, batch, delete=True) == self.model
        self.model.clear()

    @rule(k=keys)
    def lookup_elem(self, k):
        k = self._key(k)
        assert self.m.lookup(np.uint32(k).tobytes()) == self.model.get(k)

    @invariant()
    def walk_matches_model(self):
        assert walk(self.m, 7) == self.model


def _machine(map_type):
    cls = type(f"{map_type}Model", (MapModel,), {"map_type": map_type})
    cls.TestCase.settings = settings(max_examples=15, stateful_step_count=20, deadline=None)
    return cls.TestCase


TestHashModel = _machine("hash")
TestLruHashModel = _machine("lru_hash")
TestPercpuHashModel = _machine("percpu_hash")
TestArrayModel = _machine("array")
