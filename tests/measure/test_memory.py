"""The memory engine's pointer chase: one random cycle through every 64 B slot, a latency that
grows with the working set, and one-line errors for working sets it cannot take."""

import numpy as np
import pytest

from conftest import run_cli
from mapbench.errors import BadInput
from mapbench.measure import runner
from mapbench.measure.engine import MeasureOptions
from mapbench.measure.engines import memory


def test_the_chase_is_one_cycle_through_every_slot():
    following = memory.cycle(1000, [0, 64000])
    seen, slot = set(), 0
    for _ in range(1000):
        seen.add(slot)
        slot = int(following[slot])
    assert slot == 0 and len(seen) == 1000  # back where it began after visiting every slot once
    assert not np.array_equal(following, np.roll(np.arange(1000), -1))  # not the sequential walk a prefetcher follows


def test_working_sets_parse_with_binary_units():
    assert memory.parse_working_set("32KiB") == 32 * 1024
    assert memory.parse_working_set("1 GiB") == 2**30
    assert memory.parse_working_set(65536) == 65536
    for bad in ("3KiB", "1TiB", "128GiB", "abc", "0"):
        with pytest.raises(BadInput, match="--working-set"):
            memory.parse_working_set(bad)


@pytest.mark.kernel
def test_latency_grows_from_32_KiB_to_256_MiB():
    opts = MeasureOptions(samples=5, instances=2, warmup=1, target_ms=5.0)
    ns = {}
    for size in (32 * 2**10, 256 * 2**20):
        rows = [r for r in runner.measure([memory.ChaseSpec(size)], opts) if not r["warmup"]]
        assert {r["working_set_bytes"] for r in rows} == {size} and all(r["ops"] > 0 for r in rows)
        ns[size] = float(np.median([r["ns_per_op"] for r in rows]))
    # L1 against DRAM (and the TLB): a chase that does not chase would read the same at both
    assert ns[256 * 2**20] > 3 * ns[32 * 2**10], ns


@pytest.mark.kernel
@pytest.mark.parametrize("value", ["3KiB", "1TiB", "128GiB"])
def test_a_bad_working_set_is_a_one_line_error(value):
    res = run_cli("run", "--engine", "memory", "--working-set", value)
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "--working-set" in res.stderr, res.stderr
