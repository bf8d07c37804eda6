"""The attached engine's report path: runqslower's min_us (`--min-delay-us`), below which a
run-queue delay is not reported, so that a run can measure what reporting costs."""

import numpy as np
import pytest

from mapbench.errors import BadInput
from mapbench.measure import runner
from mapbench.measure.engine import MeasureOptions
from mapbench.measure.engines.attached import AttachedSpec


@pytest.mark.kernel
def test_only_delays_at_least_the_minimum_are_reported():
    minimums = (0, 1, 10_000_000)  # us: every delay, those from 1 us on (the median is about 1.4), none
    rows = runner.measure([AttachedSpec("task_storage", map_size=1000, nr_tasks=2, min_delay_us=m) for m in minimums],
                          MeasureOptions(samples=2, instances=1, warmup=0, target_ms=100))
    by_min = {m: [r for r in rows if r["strategy"] == "task_storage" and r["min_delay_us"] == m] for m in minimums}
    assert all(len(rs) == 2 for rs in by_min.values()), rows
    every = by_min[0]
    assert all(r["delays_recorded"] > 0.5 * r["load_round_trips"] for r in every), every  # ~2 per round trip
    from_1us = np.sum([r["delay_hist"] for r in by_min[1]], axis=0)
    assert from_1us[:9].sum() == 0  # slot 9 holds [512, 1024) ns: only its top may be reported
    assert from_1us.sum() > 0
    assert all(r["delays_recorded"] == 0 and r["ops"] > 1000 for r in by_min[10_000_000]), by_min[10_000_000]


def test_a_minimum_delay_beyond_its_bound_is_bad_input():
    with pytest.raises(BadInput, match="--min-delay-us 10000001 is above 10_000_000"):
        AttachedSpec("pid_hash", min_delay_us=10_000_001)
