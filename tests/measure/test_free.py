"""The free engine against the real kernel: a filled map's memory is charged to its own cgroup and
comes back after close(); maps too small for the cgroup to see are refused in one line."""

import pytest

from mapbench.errors import BadInput
from mapbench.measure import memcg
from mapbench.measure.engine import Host
from mapbench.measure.engines import free


@pytest.mark.kernel
@pytest.mark.parametrize("strategy, addr_family", [("lpm_trie", "ipv4"), ("exact_hash", "ipv6")])
def test_a_filled_map_is_charged_to_its_cgroup_and_given_back_after_close(strategy, addr_family):
    if memcg.flavour() is None:
        pytest.skip(memcg.why_not())
    spec = free.ENGINE.make_spec({"strategy": strategy, "map_size": 100_000, "addr_family": addr_family},
                                 Host.here())
    with free.ENGINE.open(spec, False, 0) as filled:
        freed = free.ENGINE.sample(filled, 0, None, None)
        rows = free.ENGINE.rows(filled, freed, None)
    assert freed.free_ns is not None and freed.free_ns > 0
    assert freed.loaded_bytes > 100_000 * 40  # at least the nodes or elements of 100,000 keys
    assert freed.left_bytes <= free.CHARGE_BATCH * len(Host.here().cpus)
    assert rows[0]["status"] == "ok" and rows[0]["ns_per_op"] == freed.free_ns and rows[0]["op"] == "free"


def test_exact_hash_frees_full_length_keys():
    spec = free.ENGINE.make_spec({"strategy": "exact_hash", "map_size": 100_000, "addr_family": "ipv6",
                                  "prefix_lens": "24"}, Host.here())
    assert spec.prefix_lens == "128" and spec.config_fields()["key_size"] == 16


def test_a_map_too_small_for_the_cgroup_is_refused():
    with pytest.raises(BadInput, match="--size 1000 is below"):
        free.ENGINE.make_spec({"strategy": "lpm_trie", "map_size": 1000}, Host.here())
