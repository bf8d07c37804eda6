"""The prefix family against numpy: the longest-prefix match numpy predicts is what the kernel's
LPM trie returns, from user space and inside the programs; deletes take and put back exactly
what they should; bad prefix input is one line."""

import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapbench.errors import BadInput
from mapbench.measure import prefixes
from mapbench.measure.engines.kernel import KernelSpec, LoadedBuild, instance_config
from mapbench.measure.strategies import prefix_set_of


def _network(s: prefixes.PrefixSet, i: int):
    value = (int(s.hi[i]) << 64) | int(s.lo[i])
    if s.addr_family == "ipv4":  # by class: ip_network(0) would guess IPv4 for the IPv6 prefix 0::/8 too
        return ipaddress.IPv4Network((value >> 96, int(s.length[i])))
    return ipaddress.IPv6Network((value, int(s.length[i])))


def _address(addr_family: str, hi, lo):
    value = (int(hi) << 64) | int(lo)
    return ipaddress.IPv4Address(value >> 96) if addr_family == "ipv4" else ipaddress.IPv6Address(value)


@settings(max_examples=20, deadline=None)
@given(addr_family=st.sampled_from(prefixes.ADDR_FAMILIES), entries=st.integers(1, 300),
       lens=st.sampled_from(["table", "8", "20", "24", "32"]), seed=st.integers(0, 2**32))
def test_numpy_longest_match_is_the_ipaddress_longest_match(addr_family, entries, lens, seed):
    if lens != "table" and entries > prefixes.MAX_SHARE_OF_LENGTH * 2**int(lens):
        return
    s = prefixes.prefix_set(addr_family, lens, entries, seed)
    assert len(s) == entries
    networks = [_network(s, i) for i in range(entries)]
    assert len(set(networks)) == entries  # distinct prefixes
    hi, lo, _ = prefixes.lookup_table(addr_family, lens, entries, seed, 1 << 16, 0.5)
    found = s.longest_match(hi[:200], lo[:200])
    for h, low, f in zip(hi[:200], lo[:200], found):
        address = _address(addr_family, h, low)
        holding = [i for i, n in enumerate(networks) if address in n]
        expected = max(holding, key=lambda i: networks[i].prefixlen) if holding else -1
        assert f == expected


def test_a_lookup_table_holds_the_hit_ratio_asked_for():
    s = prefixes.prefix_set("ipv4", "table", 5000, 1)
    hi, lo, records = prefixes.lookup_table("ipv4", "table", 5000, 1, 1 << 16, 0.25)
    assert np.count_nonzero(s.longest_match(hi, lo) >= 0) == round(0.25 * (1 << 16))
    assert records.shape == (1 << 16, prefixes.KEY_RECORD)


def test_the_table_mix_has_the_routing_table_shape():
    counts = prefixes.lengths("ipv4", "table", 1_000_000)
    assert sum(counts.values()) == 1_000_000
    assert 0.55 < counts[24] / 1e6 < 0.65
    assert all(c <= prefixes.MAX_SHARE_OF_LENGTH * 2**n for n, c in counts.items())


def _user_lookup(m, s, addr_family, hi, lo, trie: bool) -> list:
    """The value each address finds from user space (bpf_map_lookup_elem), None for none."""
    full = np.full(len(hi), prefixes.BITS[addr_family], dtype=np.uint32)
    keys = prefixes.table_record(hi, lo, full, addr_family)[:, :4 + prefixes.DATA_BYTES[addr_family]]
    if not trie:
        keys = keys[:, 4:]
    out = []
    for k in keys:
        v = m.lookup(np.ascontiguousarray(k).tobytes())
        out.append(None if v is None else int(np.frombuffer(v, dtype=np.uint64)[0]))
    return out


@pytest.mark.kernel
@pytest.mark.parametrize("addr_family", prefixes.ADDR_FAMILIES)
@pytest.mark.parametrize("strategy, lens", [("lpm_trie", "table"), ("exact_hash", "table"),
                                            ("lpm_trie", "hosts"), ("front_hash", "hosts")])
def test_lookups_return_the_longest_match_numpy_predicts(strategy, lens, addr_family):
    fields = {"prefix_lens": lens} if strategy != "exact_hash" else {}
    spec = KernelSpec.of(strategy, map_size=3000, hit_ratio=0.5, addr_family=addr_family, seed=7, **fields)
    config = instance_config(spec, 0)
    s = prefix_set_of(spec, config)
    length = config["table_mask"] + 1
    hi, lo, _ = prefixes.lookup_table(addr_family, spec.prefix_lens, spec.entries, config["seed"], length, 0.5)
    expected = s.longest_match(hi, lo)
    with LoadedBuild(spec, False, config) as b, LoadedBuild(spec, True, config) as control:
        # from user space: the kernel's longest match for the first 500 addresses (one map: not front_hash's)
        if strategy != "front_hash":
            found = _user_lookup(b.obj.map("prefixes"), s, addr_family, hi[:500], lo[:500], strategy == "lpm_trie")
            assert found == [None if e < 0 else int(e) for e in expected[:500]]
        # inside the program: draws start .. start + n - 1 take table[i & mask]
        start, n = 12345, 3 * length // 2
        slots = (start + np.arange(n)) & (length - 1)
        r, c = b.run(n, start), control.run(n, start)
        assert r.hits == np.count_nonzero(expected[slots] >= 0)
        assert r.value_checksum == int(expected[slots][expected[slots] >= 0].astype(np.uint64).sum(dtype=np.uint64))
        assert c.hits == 0 and r.checksum == c.checksum  # the control drew the same addresses
    if strategy == "exact_hash":
        assert set(s.length.tolist()) == {prefixes.BITS[addr_family]}
    if lens == "hosts":  # half of them host entries, which front_hash asks its hash for first
        hosts = np.count_nonzero(s.length == prefixes.BITS[addr_family])
        assert abs(hosts - len(s) // 2) <= len(prefixes.MIXES[addr_family])  # the other lengths' rounding


@pytest.mark.kernel
@pytest.mark.parametrize("strategy", ["lpm_trie", "exact_hash"])
def test_deletes_take_the_drawn_prefixes_and_restore_puts_them_back(strategy):
    spec = KernelSpec.of(strategy, map_size=2000, op="delete", seed=3)
    config = instance_config(spec, 0)
    s = prefix_set_of(spec, config)
    order = prefixes.write_order(spec.entries, config["seed"])
    start, n = 1500, 1000  # wraps: draws 1500..2499 take prefixes order[1500..1999], order[0..499]
    taken = order[(start + np.arange(n)) % spec.entries]
    with LoadedBuild(spec, False, config) as b:
        m = b.obj.map("prefixes")
        keys = s.keys() if strategy == "lpm_trie" else np.ascontiguousarray(s.keys()[:, 4:])
        assert b.run(n, start).hits == n  # each delete found its prefix
        present = [m.lookup(np.ascontiguousarray(keys[i]).tobytes()) is not None for i in range(len(s))]
        if strategy == "exact_hash":  # exact keys: exactly the drawn ones are gone
            assert sorted(i for i, p in enumerate(present) if not p) == sorted(taken.tolist())
        assert b.run(n, start).hits == 0  # they are gone: a second pass finds none
        b.restore(start, n)
        assert b.run(n, start, reader=True).hits == n  # looked up again (exact keys): all back
        for i in taken[:50]:
            assert int(np.frombuffer(m.lookup(np.ascontiguousarray(keys[i]).tobytes()), np.uint64)[0]) == i


@pytest.mark.parametrize("fields, message", [
    ({"prefix_lens": "33"}, "--prefix-lens 33 is above the 32 bits"),
    ({"prefix_lens": "8", "map_size": 1000}, r"a quarter of the 2\^8 prefixes"),
    ({"prefix_lens": "x"}, "is not 'table', 'hosts' or a prefix length"),
    ({"addr_family": "ipx"}, "--addr-family"),
    ({"key_distribution": "zipf"}, "--keys zipf"),
])
def test_bad_prefix_input_is_one_line(fields, message):
    with pytest.raises(BadInput, match=message):
        KernelSpec.of("lpm_trie", **fields)


@pytest.mark.kernel
def test_the_minimal_trie_lookup_finds_the_hits_numpy_predicts():
    from mapbench.measure import keys

    spec = KernelSpec.of("lpm_trie", map_size=5000, hit_ratio=0.5, prefix_lens="32", implementation="minimal")
    config = instance_config(spec, 0)
    with LoadedBuild(spec, False, config) as b, LoadedBuild(spec, True, config) as control:
        r, c = b.run(20000, 777), control.run(20000, 777)
    assert r.hits == keys.expected_hits(config["seed"], 777, 20000, spec.hit_thresh)
    assert c.hits == 0 and r.checksum == c.checksum


def test_the_minimal_trie_is_of_ipv4_32s_only():
    with pytest.raises(BadInput, match="--implementation minimal runs lpm_trie with --prefix-lens 32"):
        KernelSpec.of("lpm_trie", implementation="minimal")
