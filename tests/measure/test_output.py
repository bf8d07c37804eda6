"""The output engine against the real kernel: every event a program tried to emit is either
consumed by user space or counted lost, exactly, whatever the buffer, size, consumer or producers."""

import pytest

from mapbench.errors import BadInput
from mapbench.measure import runner
from mapbench.measure.engine import Host, MeasureOptions, NotMeasured
from mapbench.measure.engines import output

pytestmark = pytest.mark.kernel

HOST = Host.here()


def spec(strategy, op, **fields):
    return output.make_spec({"strategy": strategy, "op": op, **fields}, HOST)


@pytest.mark.parametrize("rate, size, wakeup", [(output.FULL, 64, 0), (20_000, 16, 0), (output.FULL, 4096, 0),
                                                (output.FULL, 64, 500)])
def test_every_event_is_consumed_or_counted_lost(rate, size, wakeup):
    shape = {"event_size": size, "consumer_rate": rate, "buffer_bytes": 16384, "wakeup_every": wakeup}
    sides = [spec("ringbuf", "reserve_submit", **shape), spec("ringbuf", "output", **shape),
             spec("perf_buffer", "output", **shape)]
    rows = runner.measure(sides, MeasureOptions(samples=2, instances=1, warmup=0, target_ms=2.0))
    measured = [r for r in rows if r["strategy"] != "control"]
    assert len(measured) == 3 * 2
    for r in measured:
        assert r["events_emitted"] + r["events_lost"] == r["ops"]
        assert r["events_consumed"] == r["events_emitted"], r  # drained: none left in the buffer
        # a ring buffer record holds the event as sent; a perf one pads it (a u32 size, then to 8)
        exact = r["strategy"] == "ringbuf"
        assert (r["consumed_bytes"] == r["events_consumed"] * size) if exact else r["consumed_bytes"] >= r[
            "events_consumed"] * size
    if rate:  # 16 KiB hold a few hundred events, and the consumer takes some forty in a 2 ms window
        assert all(r["events_lost"] for r in measured if r["strategy"] == "ringbuf")


def test_perf_buffer_has_no_reserve_and_bounds_are_one_line():
    assert spec("perf_buffer", "reserve_submit") == NotMeasured((), "")
    for parse, value in ((output._event_size, 12), (output._event_size, 8192), (output._rate, 10),
                         (output._buffer_bytes, 5000), (output._wakeup, 0)):
        with pytest.raises(BadInput):
            parse(value)
