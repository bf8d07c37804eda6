import pytest
from hypothesis import given
from hypothesis import strategies as st

from mapbench.errors import BadInput
from mapbench.measure.engines.kernel import KernelSpec
from mapbench.measure.values import MAX_MAP_SIZE, parse_size


@given(st.integers(min_value=1, max_value=MAX_MAP_SIZE))
def test_plain_and_underscored_sizes(n):
    assert parse_size(str(n)) == n
    assert parse_size(f"{n:_}") == n


@given(st.integers(min_value=0, max_value=9), st.integers(min_value=1, max_value=9))
def test_scientific_sizes(exponent, mantissa):
    n = mantissa * 10**exponent
    if n <= MAX_MAP_SIZE:
        assert parse_size(f"{mantissa}e{exponent}") == n
    else:
        with pytest.raises(BadInput, match="u32 limit"):
            parse_size(f"{mantissa}e{exponent}")


@pytest.mark.parametrize("text, bound", [
    ("0", "at least 1"), ("-5", "at least 1"), ("1.5", "whole number"), ("2.5e0", "whole number"),
    ("4294967296", "u32 limit of 4294967295"), ("1e10", "u32 limit"), ("lots", "not a number"),
    ("nan", "whole number"), ("inf", "whole number"),
])
def test_bad_sizes_name_value_and_bound(text, bound):
    with pytest.raises(BadInput) as exc:
        parse_size(text)
    assert bound in str(exc.value)
    assert repr(text) in str(exc.value)
    assert "\n" not in str(exc.value)


def test_size_beyond_memory_is_refused_before_any_map_exists():
    with pytest.raises(BadInput, match="GiB"):
        KernelSpec.of("hash", map_size=2**31)


@pytest.mark.parametrize("kwargs, message", [
    ({"strategy": "btree"}, "--map 'btree' is unknown"),
    ({"strategy": "bloom", "op": "get"}, "--op 'get' is not an op of bloom"),
    ({"strategy": "task_storage", "op": "lookup"}, "not an op of task_storage"),
    ({"strategy": "hash", "hit_ratio": 1.5}, "--hit-ratio 1.5 is outside [0, 1]"),
    ({"strategy": "hash", "hit_ratio": -0.1}, "outside [0, 1]"),
    ({"strategy": "bloom", "nr_hash_funcs": 16}, "1..15"),
    ({"strategy": "task_storage_maps", "map_size": 5}, "--size 5: task_storage_maps works on the current task only"),
    ({"strategy": "task_storage_maps", "nr_maps": 65}, "--task-maps 65 is outside 1..64"),
    ({"strategy": "hash", "isa": "v4"}, "--isa 'v4'"),
    ({"strategy": "hash", "key_distribution": "pareto"}, "--keys 'pareto'"),
    ({"strategy": "pid_hash", "key_distribution": "zipf"}, "--keys zipf applies to the membership strategies"),
    ({"strategy": "hash", "key_size": 6}, "--key-size 6 must be a multiple of 4 in 4..256 bytes"),
    ({"strategy": "hash", "key_size": 260}, "--key-size 260 must be a multiple of 4 in 4..256 bytes"),
    ({"strategy": "hash", "value_size": 4}, "--value-size 4 must be a multiple of 8 in 8..512 bytes"),
    ({"strategy": "hash", "value_size": 520}, "--value-size 520 must be a multiple of 8 in 8..512 bytes"),
    ({"strategy": "hash", "fill": 0}, "--fill 0 is outside (0, 1]"),
    ({"strategy": "hash", "fill": 1.5}, "--fill 1.5 is outside (0, 1]"),
    ({"strategy": "hash", "key_distribution": "zipf", "zipf_s": -1}, "--zipf-s -1 is outside 0..10"),
    ({"strategy": "hash", "key_distribution": "zipf", "map_size": 2**27},
     "holds 134217728 entries, above the bound of 67108864 for the zipf table"),
])
def test_bad_specs(kwargs, message):
    with pytest.raises(BadInput) as exc:
        KernelSpec.of(**kwargs)
    assert message in str(exc.value)
