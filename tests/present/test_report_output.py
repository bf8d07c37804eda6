"""The report's lines for the output engine and map in map: which RCU wait a replace_inner figure
shows, and a ring-vs-perf line that names each side's loss."""

from mapbench.present import report


def _replace(ns: float) -> dict:
    return {"engine": "syscall", "op": "replace_inner", "strategy": "array_of_maps", "median_ns_per_op": ns,
            "gross_median_ns_per_op": ns + 1000}


def test_replace_inner_reads_ms_as_a_full_grace_period_and_us_as_an_expedited_one():
    [full] = report.map_in_map([], [_replace(15e6)])
    [expedited] = report.map_in_map([], [_replace(80e3)])
    assert "15.00 ms per update" in full and "a full RCU grace period (synchronize_rcu)" in full
    assert "synchronize_rcu_expedited" in expedited and "0.08 ms per update" in expedited


def test_the_output_line_names_each_side_and_its_loss():
    base = {"engine": "output", "event_size": 64, "producers": 1, "consumer_rate": 0.0, "buffer_bytes": 2**18,
            "isa": "v3"}
    perf, ring = {**base, "strategy": "perf_buffer", "op": "output"}, {**base, "strategy": "ringbuf",
                                                                       "op": "reserve_submit"}
    ratio = {"comparison": "r/0", "numerator_config": ring, "denominator_config": perf, "ratio": 0.05,
             "ci_low": 0.04, "ci_high": 0.06, "loads": 5, "pairs": 50}
    records = [{**perf, "loss_rate": 0.0, "emitted_events_per_s": 1.5e5, "median_ns_per_op": 7000.0},
               {**ring, "loss_rate": 0.75, "emitted_events_per_s": 2.4e6, "median_ns_per_op": 350.0}]
    [line] = report.output([ratio], records)
    assert "ringbuf reserve_submit costs 0.050" in line and "against perf_buffer output" in line
    assert "perf_buffer output 0% lost" in line and "ringbuf reserve_submit 75% lost, 2.40 M emitted/s" in line
