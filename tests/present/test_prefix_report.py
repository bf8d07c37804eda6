"""The prefix family's report lines: one sentence per point, the ratio with its CI and a verdict."""

from mapbench.present import report


def _ratio(op, ratio, low, high, loads, engine="kernel"):
    base = {"engine": engine, "family": "prefix", "op": op, "map_size": 1_000_000, "addr_family": "ipv4",
            "hit_ratio": 1.0, "mode": "throughput" if engine == "kernel" else None}
    return {"comparison": "run/0", "numerator": "exact_hash /32", "denominator": "lpm_trie table mix",
            "numerator_config": {**base, "strategy": "exact_hash", "prefix_lens": "32"},
            "denominator_config": {**base, "strategy": "lpm_trie", "prefix_lens": "table"},
            "ratio": ratio, "ci_low": low, "ci_high": high, "pairs": 30, "loads": loads}


def test_one_sentence_answers_trie_or_exact_hash_at_a_size():
    records = [{"engine": "kernel", "strategy": "exact_hash", "op": "lookup", "map_size": 1_000_000,
                "median_ns_per_op": 240.0},
               {"engine": "kernel", "strategy": "lpm_trie", "op": "lookup", "map_size": 1_000_000,
                "median_ns_per_op": 1300.0}]
    lines = report.prefix_family([_ratio("lookup", 0.19, 0.17, 0.21, 5)], records)
    assert len(lines) == 1
    assert lines[0].startswith("Trie or exact hash at 1,000,000 ipv4 prefixes (a routing table's length mix), "
                               "lookup, hit ratio 1, throughput mode: exact hash / trie = 0.190")
    assert "(240 vs 1300 ns in this run)" in lines[0]
    assert lines[0].endswith("the exact hash is cheaper.")


def test_the_free_reads_in_ms_and_a_short_run_has_no_verdict():
    records = [{"engine": "free", "strategy": "exact_hash", "map_size": 1_000_000, "median_ns_per_op": 5.8e6},
               {"engine": "free", "strategy": "lpm_trie", "map_size": 1_000_000, "median_ns_per_op": 524e6}]
    (line,) = report.prefix_family([_ratio("free", 0.011, 0.003, 0.035, 2, engine="free")], records)
    assert "freeing the map" in line and "(5.8 vs 524.0 ms in this run)" in line
    assert line.endswith("too few loads (2) for a verdict.")


def test_the_hash_in_front_of_the_trie_is_named_as_such():
    r = _ratio("lookup", 0.59, 0.55, 0.63, 5)
    r["numerator_config"] = {**r["numerator_config"], "strategy": "front_hash", "prefix_lens": "hosts"}
    r["denominator_config"] = {**r["denominator_config"], "prefix_lens": "hosts"}
    (line,) = report.prefix_family([r], [])
    assert line.startswith("Trie or exact hash in front of the trie at 1,000,000 ipv4 prefixes (half host entries")
    assert "exact hash in front of the trie / trie = 0.590" in line
    assert line.endswith("the exact hash in front of the trie is cheaper.")
