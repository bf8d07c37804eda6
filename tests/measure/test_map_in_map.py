"""Map in map against the real kernel: the outer-and-inner builds and the flat compound-key hash
find exactly the entries numpy predicts; replacing inner maps from user space swaps every slot."""

import numpy as np
import pytest

from mapbench.measure import keys, runner
from mapbench.measure.engine import MeasureOptions
from mapbench.measure.engines.kernel import KernelSpec, LoadedBuild, instance_config
from mapbench.measure.engines.syscall import SyscallSide, SyscallSpec, make_spec

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("inner_maps, size, hit_ratio", [(1, 100, 1.0), (16, 1000, 0.5), (64, 5000, 0.25)])
def test_two_lookups_and_a_compound_key_find_the_same_entries(inner_maps, size, hit_ratio):
    found = {}
    for name in ("hash_of_maps", "array_of_maps", "compound_hash"):
        spec = KernelSpec.of(name, map_size=size, nr_maps=inner_maps, hit_ratio=hit_ratio)
        config = instance_config(spec, 0)
        for control in (False, True):
            with LoadedBuild(spec, control, config) as b:
                found[name, control] = b.run(20_000, 7)
    expected = keys.expected_hits(config["seed"], 7, 20_000, spec.hit_thresh)
    for name in ("hash_of_maps", "array_of_maps", "compound_hash"):
        assert found[name, False].hits == expected
        assert found[name, True].hits == 0
        assert found[name, False].checksum == found[name, True].checksum  # the same draws
        # the same values found: entry e's value is value_words(key(e)) wherever it lives
        assert found[name, False].value_checksum == found["compound_hash", False].value_checksum


def test_replace_inner_puts_another_inner_map_in_every_slot():
    spec = SyscallSpec("array_of_maps", "elem", "replace_inner", 4)
    with SyscallSide(spec) as side:
        first = side.values.copy()
        elements, elapsed, _ = side.run_once(2)
        assert elements == 8 and elapsed > 0
        assert not np.array_equal(first, side.values)
        assert set(side.values) <= set(side.pool)


def test_replace_inner_applies_to_maps_of_maps_only_and_has_a_control():
    assert make_spec({"map_type": "hash", "driver": "elem", "op": "replace_inner"}).reason
    assert make_spec({"map_type": "hash_of_maps", "driver": "elem", "op": "lookup"}).reason
    rows = runner.measure([SyscallSpec("hash_of_maps", "elem", "replace_inner", 2)],
                          MeasureOptions(samples=2, instances=1, warmup=0, target_ms=1.0))
    side = [r for r in rows if r["strategy"] == "hash_of_maps"]
    assert side and all(r["ns_per_op"] == pytest.approx(r["gross_ns_per_op"] - r["control_ns_per_op"]) for r in side)
    assert any(r["strategy"] == "control" for r in rows)


def test_the_c_reference_replaces_inner_maps_too():
    from mapbench.measure.engines import reference

    sides = [reference.make_spec({"map_type": "hash_of_maps", "driver": "elem", "op": "replace_inner",
                                  "map_size": 2, "implementation": impl}) for impl in reference.IMPLEMENTATIONS]
    rows = runner.measure(sides, MeasureOptions(samples=1, instances=1, warmup=0, target_ms=1.0))
    assert {r["implementation"] for r in rows} == set(reference.IMPLEMENTATIONS)
    assert all(r["ns_per_op"] > 0 for r in rows)
