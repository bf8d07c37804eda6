"""scripts/diff_power.py, which measures the diff's false alarms and power on real runs
(docs/method.md, "Diff"): its logic on the real A/A pair of data/fixtures/real/ (two default
benches of the same code, back to back) and on runs whose drift is known. No kernel needed."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_diff import drifting_runs

from mapbench.results import diff

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "data" / "fixtures" / "real"
_spec = importlib.util.spec_from_file_location("diff_power", ROOT / "scripts" / "diff_power.py")
power = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(power)


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    return power.load([REAL])


def test_the_real_pair_is_an_aa_pair_and_without_history_nothing_is_called(real):
    [(base, new)] = power.aa_pairs(real)
    assert base == ["20261123T173856Z-b8bcbc19"] and new == ["20261123T174840Z-4f32c760"]  # "-dirty" aside
    found = power.evaluate(real, base, new)
    # one run a side and no other run of that machine and kernel: drift cannot be told from a
    # change, so nothing is tested, nothing called, and a 1.3x slowdown is not called either
    assert len(found) > 150 and not found["tested"].any()
    assert set(found["aa"]) == {diff.DRIFT_UNKNOWN} and found["slowed"].isna().all()
    totals = power.summarize(found).loc["all"]
    assert (totals.configurations, totals.tested, totals.false_alarms, totals.detected) == (len(found), 0, 0, 0)


def test_runs_of_other_code_or_another_kernel_are_no_aa_pair(real):
    other_code = real[real["run_id"] == "20261123T174840Z-4f32c760"].assign(
        run_id="other-code", git_describe="abc1234")
    other_kernel = real[real["run_id"] == "20261123T174840Z-4f32c760"].assign(
        run_id="other-kernel", kernel_release="6.1.0")
    pairs = power.aa_pairs(pd.concat([real, other_code, other_kernel], ignore_index=True))
    assert pairs == [(["20261123T173856Z-b8bcbc19"], ["20261123T174840Z-4f32c760"])]


def test_slowing_one_configuration_moves_it_alone_by_the_factor(real):
    a, b = real[real["run_id"].str.endswith("b8bcbc19")], real[real["run_id"].str.endswith("4f32c760")]
    pairs, _, _, _, _ = diff.prepare(a, b)
    config = next(iter(pairs))
    moved = power.slowed(pairs, config, 1.3)
    assert moved[config][1].run_logs == pytest.approx(pairs[config][1].run_logs + np.log(1.3))
    assert moved[config][1].values == pytest.approx(pairs[config][1].values * 1.3)
    assert all(moved[c] is pairs[c] for c in pairs if c != config)


@pytest.fixture(scope="module")
def drifting() -> pd.DataFrame:
    """Eight runs of one code on one machine and kernel, 2 % run-to-run drift beside their loads'."""
    return drifting_runs(8, 11, drift=0.02, name="aa")


def test_with_a_history_the_aa_pairs_call_nothing_and_a_1_3x_slowdown_is_called(drifting):
    pairs = power.aa_pairs(drifting)
    assert len(pairs) == 28 + 1  # every two runs, and the alternate halves
    found = pd.concat([power.evaluate(drifting, base, new).assign(runs=len(base)) for base, new in pairs])
    one, halves = (power.summarize(found[found.runs == n]).loc["all"] for n in (1, 4))
    # one run a side, six runs of history: every configuration is tested, none called; 1.3x is
    # called for most (docs/method.md, "Diff": 480 of 588); four runs a side: 20 of 21
    assert one.tested == one.configurations == 588 and one.false_alarms == 0
    assert one.detected >= 0.75 * one.tested and one.median_detectable < 1.3
    assert halves.tested == 21 and halves.false_alarms == 0 and halves.detected >= 19


def test_the_script_prints_a_table(capsys):
    assert power.main([str(REAL), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "1 A/A comparison(s)" in out and "| A/A runs | engine |" in out and "| all | 175 | 0 | 0 | 175 |" in out
