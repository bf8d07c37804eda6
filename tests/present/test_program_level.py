"""The report's lines on the article's program-level experiments (present/report.program_level)."""

import pandas as pd

from mapbench.present import plots
from mapbench.present.report import program_level

KERNEL = {"engine": "kernel", "family": "membership", "strategy": "hash", "op": "lookup", "map_size": 1000,
          "mode": "throughput", "isa": "v3", "calls": "inline", "restrict": "off"}


def _ratio(num: dict, den: dict, ratio: float, loads: int = 5) -> dict:
    return {"comparison": "run/0", "numerator_config": num, "denominator_config": den, "ratio": ratio,
            "ci_low": ratio * 0.95, "ci_high": ratio * 1.05, "pairs": 3 * loads, "loads": loads}


def _summary(config: dict, ns: float, **figures) -> dict:
    return {**config, "median_ns_per_op": ns, "ci_low": ns * 0.95, "ci_high": ns * 1.05, **figures}


def test_calls_and_restrict_lines_carry_sizes_and_remark_counts():
    subprog, restrict = {**KERNEL, "calls": "subprog"}, {**KERNEL, "restrict": "on"}
    records = [_summary(KERNEL, 35, prog_xlated_bytes=2736, prog_jited_bytes=1538, missed_remarks_total=279,
                        missed_remarks="gvn 225, licm 17"),
               _summary(subprog, 43, prog_xlated_bytes=2832, prog_jited_bytes=1597),
               _summary(restrict, 35, prog_xlated_bytes=2736, prog_jited_bytes=1538, missed_remarks_total=269,
                        missed_remarks="gvn 215, licm 17")]
    lines = program_level([_ratio(subprog, KERNEL, 1.22), _ratio(restrict, KERNEL, 1.0)], records, pd.DataFrame())
    assert len(lines) == 2
    assert "subprog / inline = 1.220 (1.159 .. 1.281) per op (dearer)" in lines[0]
    assert "2,736 -> 2,832 B xlated, 1,538 -> 1,597 B jited" in lines[0]
    assert "remarks 279 -> 269 (gvn 225, licm 17 -> gvn 215, licm 17)" in lines[1]
    assert "2,736 -> 2,736 B (the same) xlated" in lines[1]


def test_a_ratio_that_differs_in_more_than_the_axis_says_nothing_of_it():
    other = {**KERNEL, "calls": "subprog", "strategy": "bloom"}
    assert program_level([_ratio(other, KERNEL, 1.5)], [], pd.DataFrame()) == []


def test_the_programs_series_names_pages_per_count_and_the_stats_cost(tmp_path):
    base = {"engine": "programs", "strategy": "chain", "isa": "v3", "nr_programs": 1, "run_stats": "off",
            "code_layout": "packed"}
    many, on = {**base, "nr_programs": 1024}, {**base, "run_stats": "on"}
    layout = {"text_regions": 1, "prog_jited_bytes": 106}
    records = [_summary(base, 54, text_pages=1, chain_ns_per_event=54, **layout),
               _summary(many, 64, text_pages=49, chain_ns_per_event=65536, **{**layout, "prog_jited_bytes": 123508}),
               _summary(on, 125, text_pages=1, chain_ns_per_event=125, **layout)]
    lines = program_level([_ratio(many, base, 1.18), _ratio(on, base, 2.3)], records, pd.DataFrame())
    assert "1,024: 1.180 (1.121 .. 1.239) (dearer)" in lines[0]
    assert ("1: 54 ns per event, 106 B jited in 1 page of one 2 MiB region; "
            "1,024: 65,536 ns per event, 123,508 B jited in 49 pages of one 2 MiB region") in lines[0]
    assert "71 ns more per program run (125 vs 54 ns)" in lines[1]
    paths = plots.program_chain(pd.DataFrame(records), tmp_path)
    assert [p.name for p in paths] == ["program_chain.png", "program_chain.svg"] and all(p.exists() for p in paths)


def test_the_layout_line_names_the_pages_of_both():
    packed = {"engine": "programs", "strategy": "chain", "isa": "v3", "nr_programs": 1024, "run_stats": "off",
              "code_layout": "packed"}
    spread = {**packed, "code_layout": "spread"}
    records = [_summary(packed, 78, text_pages=49, text_regions=1), _summary(spread, 101, text_pages=1154,
                                                                            text_regions=3)]
    (line,) = program_level([_ratio(spread, packed, 1.3)], records, pd.DataFrame())
    assert "spread a page apart / packed, a chain of 1,024 programs" in line
    assert "49 pages -> 1,154 pages (1 region -> 3 regions of 2 MiB)" in line
