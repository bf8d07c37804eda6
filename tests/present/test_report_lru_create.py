"""The report lines of LRU under pressure and of task creation: one sentence each that answers
the question, from summaries and head-to-head ratios."""

from mapbench.present import report

LRU = {"engine": "kernel", "op": "cache", "map_size": 10_000, "producers": 1, "mode": "throughput",
       "key_distribution": "uniform", "zipf_s": None, "isa": "v3"}


def _lru(strategy, lists, ws, hit, ideal, ns, first):
    return {**LRU, "strategy": strategy, "lru_lists": lists, "working_set": ws, "measured_hit_ratio": hit,
            "ideal_hit_ratio": ideal, "median_ns_per_op": ns, "first_eviction_entries": first,
            "first_eviction_share": first / 10_000 if first else None}


def test_lru_line_gives_hits_beside_the_ideal_and_the_first_eviction():
    records = [_lru("lru_hash", "common", 2.0, 0.497, 0.500, 179.1, 9890),
               _lru("lru_hash", "common", 0.5, 1.0, 1.0, 35.8, None),
               _lru("hash", None, 2.0, 0.501, 0.500, 101.5, None)]
    lines = report.lru_pressure(records, [])
    assert lines[1] == ("**LRU under pressure, lru hash (common LRU lists), 10,000 entries, uniform keys, 1 producer, "
                        "throughput mode: it hits at 0.5x capacity 100.0 % against an ideal 100.0 % (35.8 ns per op); "
                        "at 2x capacity 49.7 % against an ideal 50.0 % (179.1 ns per op); it first evicted holding "
                        "9,890 of 10,000 entries (98.9 % full).**")
    assert "hash (no LRU: a full map refuses inserts)" in lines[0] and lines[0].endswith("it never evicted.**")


def test_lists_line_compares_sides_that_differ_in_the_lists_alone():
    common, percpu = {**LRU, "strategy": "lru_hash", "working_set": 2.0, "lru_lists": "common"}, \
        {**LRU, "strategy": "lru_hash", "working_set": 2.0, "lru_lists": "percpu"}
    ratio = {"numerator_config": percpu, "denominator_config": common, "ratio": 1.138, "ci_low": 1.074,
             "ci_high": 1.207, "loads": 5, "pairs": 30}
    other = {**ratio, "numerator_config": {**percpu, "producers": 2}}
    lines = report.lru_pressure([], [ratio, other])
    assert lines == ["LRU lists, lru hash at 2x of 10,000 entries: percpu / common lists = "
                     f"{report.render.fmt_ratio(ratio)} per op (dearer)."]


def test_creation_line_gives_both_figures_the_ratio_and_memory_per_task():
    base = {"engine": "create", "map_size": 1000, "nr_tasks": 2000, "isa": "v3"}
    storage = {**base, "strategy": "task_storage", "op": "create", "median_ns_per_op": 1175.5,
               "bytes_per_task": 337.0, "map_memory_bytes": None}
    pid = {**base, "strategy": "pid_hash", "op": "insert", "median_ns_per_op": 331.3, "bytes_per_task": -92.0,
           "map_memory_bytes": 6.6 * 2**20}
    ratio = {"numerator_config": {**base, "strategy": "pid_hash", "op": "insert"},
             "denominator_config": {**base, "strategy": "task_storage", "op": "create"},
             "ratio": 0.284, "ci_low": 0.217, "ci_high": 0.374, "loads": 5, "pairs": 30}
    [line] = report.task_creation([storage, pid], [ratio])
    assert line.startswith("**Fresh tasks (2,000 threads at once, the hash holding 1,000 other pids), making its "
                           "record on fork: task storage 1175.5 ns against 331.3 ns for the pid hash (pid_hash / "
                           "task_storage = 0.284")
    assert "cheaper" in line and "task storage held 337 B per live task (the cgroup)" in line
