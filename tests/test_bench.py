"""The whole bench pipeline on a tiny grid over every engine (sweep, Parquet, report, plots),
so that a broken report or plot fails CI; and head-to-head measurement as a user runs it."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from mapbench.results import store as results

TINY = Path(__file__).resolve().parent / "data" / "tiny.toml"
FAST = ["--samples", "3", "--instances", "2", "--warmup", "1", "--sample-ms", "1"]


@pytest.mark.kernel
def test_bench_pipeline_writes_results_report_and_plots(tmp_path):
    res = run_cli("bench", "--config", str(TINY), "--dataset", str(tmp_path / "results"), "--reports",
                  str(tmp_path / "reports"))
    assert res.returncode == 0, res.stderr
    [parquet] = (tmp_path / "results").rglob("*.parquet")  # moved into the dataset once whole
    assert parquet.parent.name.startswith("machine=") and parquet.parent.parent.name.startswith("kernel=")
    assert not list((tmp_path / "partial").glob("*.parquet"))
    df = results.read(parquet).to_pandas()
    assert set(df.engine) == {"kernel", "syscall", "attached", "reference"}
    assert (df.status == "ok").sum() > 100
    assert df.comparison.notna().all()
    report = (tmp_path / "reports" / f"{parquet.stem}.md").read_text()
    for heading in ("## Environment", "## How steady this run was", "## Conclusions", "## Head-to-head ratios",
                    "## Results", "## Not measured"):
        assert heading in report, heading
    assert "bloom+hash / hash = " in report and "task storage / pid hash = " in report
    assert "batches of n / one syscall per element" in report and "mapbench's native loops / a plain C loop" in report
    assert "zipf keys, hit ratio 1, throughput mode, against hash: array " in report
    assert "hash lookup at 1,000 entries, uniform keys, throughput mode, by key size against 4 B keys: 40 B: " in report
    assert "hash update at 1,000 entries, throughput mode: no-prealloc / prealloc = " in report
    assert "memory per entry held" in report
    assert "array delete_insert" in report and "the kernel refuses deletes from arrays (EINVAL)" in report
    assert "Churn, add on one CPU, delete on another: hash without preallocation" in report
    assert "Hou Tao" in report
    if len(os.sched_getaffinity(0)) > 1:
        assert "hash lookup at 1,000 entries, 2 producers" in report and "beside 1 writing (update)" in report
    assert "8 %" not in report  # no fixed claim about drift: the run says what it measured
    plots = {p.name for p in (tmp_path / "reports" / f"{parquet.stem}-plots").iterdir()}
    for name in ("kernel_scaling", "map_types", "key_sizes", "batch_sizes", "attached", "bloom_fp",
                 "question-kernel-hash-strategy-bloom", "churn_memory",
                 *(["scaling"] if len(os.sched_getaffinity(0)) > 1 else [])):
        assert {f"{name}.png", f"{name}.svg"} <= plots, name
    assert "## Which map, here" in report and "[plot](" in report  # a plot per question, linked from the opening


@pytest.mark.kernel
def test_head_to_head_run_prints_both_sides_and_the_ratio(tmp_path):
    out = tmp_path / "r.parquet"
    res = run_cli("run", "--map", "hash,bloom", "--size", "1e4", "--hit-ratio", "0", *FAST, "--out", str(out),
                  "--json")
    assert res.returncode == 0, res.stderr
    objects = [json.loads(line) for line in res.stdout.splitlines()]
    sides = [o for o in objects if "median_ns_per_op" in o]
    [ratio] = [o for o in objects if "numerator" in o]
    assert [s["strategy"] for s in sides] == ["hash", "bloom"]
    assert ratio["numerator"] == "bloom" and ratio["denominator"] == "hash"
    assert ratio["ci_low"] <= ratio["ratio"] <= ratio["ci_high"]
    df = results.read(out).to_pandas()
    # the ratio is the geometric mean over loads of each load's ratio of the sides' medians
    kept = df[(df.strategy != "control") & ~df.warmup]
    medians = kept.groupby(["instance", "strategy"])["ns_per_op"].median().unstack()
    assert ratio["ratio"] == pytest.approx(float(np.exp(np.log(medians["bloom"] / medians["hash"]).mean())), rel=1e-9)
    assert df.comparison.nunique() == 1
    assert set(df[df.strategy == "hash"].position) == {0} and set(df[df.strategy == "bloom"].position) == {1}
    assert df[df.strategy == "control"].position.isna().all()
    # sample by sample, in rotating order: each sample runs every program once, and each of the
    # three programs (hash, bloom, control) runs first in some sample
    for (_, _), sample in df.groupby(["instance", "sample"]):
        assert sorted(sample.run_order) == [0, 1, 2]
    firsts = df[df.run_order == 0].strategy
    assert set(firsts) == {"hash", "bloom", "control"}


@pytest.mark.kernel
def test_head_to_head_in_every_engine(tmp_path):
    # (flags, ratios expected): --batch-size alone keeps one syscall per element as the baseline
    for args, expected in ((["--map", "hash", "--driver", "elem,batch", "--batch-size", "100", "--size", "1e3"], 1),
                           (["--map", "hash", "--batch-size", "1,100", "--size", "1e3"], 2),
                           (["--map", "hash", "--driver", "batch", "--batch-size", "1,100", "--size", "1e3"], 1),
                           (["--map", "hash", "--isa", "v1,v3", "--size", "1e3"], 1),
                           (["--engine", "attached", "--map", "pid_hash,task_storage", "--tasks", "2",
                             "--sample-ms", "50", "--samples", "2", "--instances", "1"], 1)):
        res = run_cli("run", *args, *([] if "--engine" in args else FAST), "--json")
        assert res.returncode == 0, (args, res.stderr)
        ratios = [json.loads(line) for line in res.stdout.splitlines() if '"numerator"' in line]
        assert len(ratios) == expected and all(r["ratio"] > 0 for r in ratios), (args, ratios)


@pytest.mark.kernel
def test_the_readme_attached_command_runs_with_the_engine_defaults():
    res = run_cli("run", "--engine", "attached", "--map", "task_storage", "--size", "1e5", "--tasks", "8")
    assert res.returncode == 0, res.stderr
    assert "attached engine" in res.stdout
