"""The report's opening screen (a row per question, each naming its machine), one readable plot
per question, and the memory-latency section, on a committed result file."""

import re
from pathlib import Path

import matplotlib.image
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mapbench.present import plots, render, report
from mapbench.results import store
from mapbench.results.summary import head_to_head

DATA = Path(__file__).resolve().parents[2] / "data" / "results"


def _newest_bench() -> Path:
    """The newest committed default bench with a machine fingerprint (it has the memory probe; a
    sweep of one family in the dataset beside it has not)."""
    for path in sorted(DATA.glob("kernel=*/machine=amd-*/*.parquet"), reverse=True):
        if "memory" in set(pq.read_table(path, columns=["engine"]).column("engine").to_pylist()):
            return path
    raise AssertionError(f"no default bench under {DATA}")


COMMITTED = _newest_bench()


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return store.read(COMMITTED).to_pandas()


@pytest.fixture(scope="module")
def ratios(rows) -> list[dict]:
    return head_to_head(rows)


def _opening(text: str) -> list[list[str]]:
    """The cells of the table under '## Which map, here'."""
    section = text.split("## Which map, here", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")][1:]  # the header aside
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def test_the_opening_has_a_row_per_question_and_mode_each_naming_the_machine(rows, ratios):
    text = report.report_markdown(rows, "t")
    assert text.index("## Which map, here") < text.index("## Environment")  # the report opens with it
    table = _opening(text)
    found = render.questions(ratios)
    assert sum(len(q["ratios"]) for q in found) == len(ratios)  # every ratio answers one question
    expected = {(q["title"], report._mode(r) or "-") for q in found for r in q["ratios"]}
    assert len(table) == len(expected) and {(row[0], row[4]) for row in table} == expected
    machine = rows["machine"].dropna().unique()[0]
    assert all(machine in row[5] for row in table)
    # the bloom question, found in the data: bloom against hash lookups, in both modes
    bloom = [row for row in table if "bloom or hash?" in row[0] and "lookup" in row[0]]
    assert {row[4] for row in bloom} == {"throughput mode", "latency mode"}
    assert all(re.fullmatch(r"\d\.\d{3} \.\. \d+\.\d{3}( \(\d+ points\))?", row[2]) for row in bloom)


def test_each_question_has_one_readable_plot(rows, ratios, tmp_path):
    written = plots.question_plots(rows, tmp_path)
    pngs = [p for p in written if p.suffix == ".png"]
    assert {p.stem for p in pngs} == {render.question_slug(q) for q in render.questions(ratios)
                                      if any(r["ratio"] is not None for r in q["ratios"])}
    for png in pngs:
        height, width = matplotlib.image.imread(png).shape[:2]
        assert height <= 1600 and height <= 2.5 * width, (png.name, width, height)
    text = report.report_markdown(rows, "t", written, tmp_path)
    linked = [row[-1] for row in _opening(text)]
    assert all(cell.startswith("[plot](question-") for cell in linked)
    assert "head_to_head" not in text


def _row(**kw) -> dict:
    return {"status": "ok", "warmup": False, "sample": 0, "instance": 0, "ops": 1, "machine": "m-1",
            "cpu_model": "AMD EPYC", "kernel_release": "k", "l2_cache_bytes": 2**20, "l3_cache_bytes": 32 * 2**20,
            "thp_enabled": "madvise", **kw}


def test_the_memory_latency_table_places_each_map_size():
    probe = [_row(engine="memory", family="memory", strategy="pointer_chase", op="load", working_set_bytes=ws,
                  ns_per_op=ns, gross_ns_per_op=ns, sample=s, instance=i, comparison=f"r/{ws}",
                  load_id=f"r/{ws}/{i}", huge_page_share=0.5)
             for ws, ns in ((32 * 2**10, 1.0), (2**20, 4.0), (64 * 2**20, 90.0)) for i in (0, 1) for s in (0, 1)]
    maps = [_row(engine="kernel", strategy="hash", op="lookup", map_size=n, map_memory_bytes=b, ns_per_op=5.0,
                 gross_ns_per_op=6.0, comparison=f"r/{n}", load_id=f"r/{n}/0")
            for n, b in ((1000, 80 * 2**10), (10**6, 70 * 2**20))]
    df = store.make_table(probe + maps, "r", {}).to_pandas()
    text = report.report_markdown(df, "t")
    section = text.split("## Memory latency", 1)[1].split("\n## ", 1)[0]
    assert "| 32 KiB | 1.0 |" in section and "| 64 MiB | 90.0 |" in section and "50%" in section
    assert "| 1,000 | 80.0 KiB | 32 KiB: 1.0 ns | fits L2 (1.0 MiB) |" in section, section
    assert "| 1,000,000 | 70.0 MiB | 64 MiB: 90.0 ns | beyond L3: DRAM |" in section, section


def test_a_ratio_without_a_ci_is_drawn_and_tabled_without_a_verdict(tmp_path):
    # one load: a ratio, no CI (summary.head_to_head gives none); it must not read as resolved
    base = {"engine": "toy", "strategy": "hash", "op": "lookup", "map_size": 10}
    ratio = {"comparison": "r/0", "context": "toy lookup", "numerator": "bloom", "denominator": "hash",
             "ratio": 0.5, "ci_low": None, "ci_high": None, "pairs": 4, "loads": 1,
             "numerator_config": {**base, "strategy": "bloom"}, "denominator_config": base}
    [q] = render.questions([ratio])
    assert q["title"] == "toy lookup: bloom or hash?"
    [png, _] = plots.question_plot(q, "a machine", tmp_path)
    assert png.exists()
    assert report._ends([ratio]) == ("0.500", "no CI (one load)")


def test_a_conclusion_several_runs_measured_counts_once_from_the_latest():
    base = {"engine": "toy", "strategy": "hash", "op": "lookup", "map_size": 10}
    ratio = lambda comparison, value: {"comparison": comparison, "numerator": "bloom", "denominator": "hash",  # noqa: E731
                                       "ratio": value, "ci_low": value, "ci_high": value,
                                       "numerator_config": {**base, "strategy": "bloom"}, "denominator_config": base}
    rows = pd.DataFrame({"comparison": ["old/0", "new/0", "new/1"], "run_id": ["old", "new", "new"],
                         "timestamp": pd.to_datetime(["2026-01-01", "2026-02-01", "2026-02-01"])})
    kept = render.latest_runs([ratio("old/0", 0.5), ratio("new/0", 0.6), ratio("new/1", 0.7)], rows)
    assert [r["ratio"] for r in kept] == [0.6, 0.7]  # the new run's, both of its comparisons


def test_the_report_names_the_ratios_that_missed_the_precision_target():
    import numpy as np

    from mapbench.present.report import precision
    from mapbench.results import store
    from mapbench.results.summary import head_to_head

    rng = np.random.default_rng(1)
    base = {"engine": "kernel", "family": "membership", "op": "lookup", "map_size": 1000, "isa": "v3",
            "warmup": False, "status": "ok", "comparison": "r/0", "precision_target": 0.05}
    rows = [{**base, "strategy": strategy, "position": position, "instance": load, "sample": sample,
             "load_id": f"r/0/{load}", "ns_per_op": ns * rng.lognormal(0, 0.3)}
            for position, (strategy, ns) in enumerate((("hash", 100.0), ("bloom", 50.0)))
            for load in range(5) for sample in range(3)]
    df = store.make_table(rows, "r", {}).to_pandas()
    lines = precision(df, head_to_head(df))
    assert lines[0].startswith("Precision target: a 95 % CI within ±5% of each ratio; 0 of 1 reached it")
    assert lines[1].startswith("did not reach it: bloom / hash") and "(5 loads)" in lines[1]
    assert precision(df.drop(columns="precision_target"), head_to_head(df)) == []
