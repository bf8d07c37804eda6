"""The programs engine (a chain of N distinct programs on one tracepoint) and the run stats axis
of it and of the attached engine."""

import contextlib
from types import SimpleNamespace

import pytest

from mapbench.errors import BadInput
from mapbench.measure import runner, sweep
from mapbench.measure.engine import Host, MeasureOptions
from mapbench.measure.engines import attached, programs
from mapbench.measure.engines.attached import AttachedSpec
from mapbench.measure.engines.programs import ChainBuild, ProgramsSpec, Sample

HOST = Host((0, 1), 1 << 34)


def test_spans_count_every_unit_code_touches():
    assert programs.spans([(0, 64), (64, 64), (4032, 64)], 4096) == 1
    assert programs.spans([(4090, 10)], 4096) == 2  # across a page boundary
    assert programs.spans([(0, 64), (3 * 4096, 64)], 4096) == 2
    assert programs.spans([(0, 64), (3 * 4096, 64)], 2 << 20) == 1
    assert programs.spans([], 4096) == 0


def test_the_chain_is_named_in_binary_in_attach_order():
    assert programs.chain_names(3) == ["p0000000000", "p0000000001", "p0000000010"]
    assert programs.chain_names(programs.MAX_PROGRAMS)[-1] == "p1111111111"


@pytest.mark.parametrize("value", ["0", "1025", "x"])
def test_counts_outside_the_chain_are_refused_in_one_line(value):
    with pytest.raises(BadInput, match="--programs"):
        runner.axis_values(programs.ENGINE, {"programs": [value]})


def test_counts_and_stats_are_sides_of_one_comparison_with_a_control_per_stats_setting():
    grid = sweep.Grid("programs", {"programs": [1, 16], "run_stats": ["off", "on"]}, programs.DEFAULTS)
    (c,) = runner.comparisons(grid, HOST)
    assert [(s.nr_programs, s.run_stats) for s in c.sides] == [(1, "off"), (1, "on"), (16, "off"), (16, "on")]
    assert len({s.control_key() for s in c.sides}) == 2
    grid = sweep.Grid("attached", {"strategies": ["pid_hash"], "run_stats": ["off", "on"]}, attached.DEFAULTS)
    (c,) = runner.comparisons(grid, HOST)
    assert [s.run_stats for s in c.sides] == ["off", "on"]
    assert AttachedSpec("pid_hash", run_stats="off").control_key() != AttachedSpec("pid_hash").control_key()


def _fake_build(n: int, run_stats: str = "off"):
    return SimpleNamespace(control=False, spec=ProgramsSpec(n, run_stats=run_stats), sizes={}, layout={},
                           built=SimpleNamespace(sha256="x"), load_ms=1.0)


def test_a_sample_is_ok_only_when_every_program_ran_once_per_event_with_stats_as_asked():
    b = _fake_build(4)
    control = {"ns_per_event": 100.0}
    (ok,) = programs.ENGINE.rows(b, Sample(10, 10**6, 10, 10 * 500, 40, 10 * 6), control)
    assert ok["status"] == "ok" and ok["ns_per_op"] == pytest.approx(100.0) and ok["chain_ns_per_event"] == 400
    (short,) = programs.ENGINE.rows(b, Sample(10, 10**6, 10, 5000, 39, 60), control)
    assert short["status"] == "incomplete"
    (stats,) = programs.ENGINE.rows(b, Sample(10, 10**6, 10, 5000, 40, 60, stats_as_asked=False), control)
    assert stats["status"] == "stats_not_as_asked" and "run stats" in stats["message"]
    (orphan,) = programs.ENGINE.rows(b, Sample(10, 10**6, 10, 5000, 40, 60), {})  # no control sample kept
    assert orphan["status"] == "stats_not_as_asked" and orphan["ns_per_op"] is None
    assert "control's samples" in orphan["message"]


def test_the_attached_session_holds_stats_only_when_every_side_wants_them(monkeypatch):
    held = []
    monkeypatch.setattr(attached, "run_stats", lambda: held.append(1) or contextlib.nullcontext())
    opts = MeasureOptions()
    with attached.ENGINE.session([AttachedSpec("pid_hash"), AttachedSpec("task_storage")], opts, HOST) as s:
        assert s is True and held
    held.clear()
    with attached.ENGINE.session([AttachedSpec("pid_hash"), AttachedSpec("pid_hash", run_stats="off")], opts,
                                 HOST) as s:
        assert s is False and not held


@pytest.mark.kernel
def test_a_chain_runs_every_program_once_per_event_and_is_found_in_kallsyms():
    with ChainBuild(ProgramsSpec(5), False) as b:
        names = [p.name for p in b.obj.programs() if p.name.startswith("p")]
        assert len(names) == programs.MAX_PROGRAMS  # the source defines the whole chain
        s = b.sample(0.01)
        assert s.events > 0 and s.runs == 5 * s.events and s.sum == s.events * (0 + 1 + 2 + 3 + 4)
        # five programs of about 100 bytes each, packed: one or two pages of one 2 MiB region
        assert b.sizes["prog_jited_bytes"] > 0
        assert 1 <= b.layout["text_pages"] <= 5 and b.layout["text_regions"] == 1
    with ChainBuild(ProgramsSpec(5), True) as control:
        assert control.chain == [] and control.sample(0.01).runs == 0


@pytest.mark.kernel
def test_run_stats_asked_on_count_every_run():
    with ChainBuild(ProgramsSpec(2, run_stats="on"), False) as b:
        s = b.sample(0.01)
        assert s.stats_as_asked and s.events > 0
        assert b.stop.info()["run_cnt"] >= s.events


def test_a_control_sample_with_stats_not_as_asked_is_no_control():
    import numpy as np
    s = attached.Sample(1000, 10, 10**9, 5, np.zeros(32, np.uint64), 10, 500, 20, stats_as_asked=False)
    assert attached.ENGINE.control_figures(s) == {}
    assert programs.ENGINE.control_figures(Sample(10, 10**6, 10, 500, 0, 0, stats_as_asked=False)) == {}
    b = SimpleNamespace(control=False, spec=AttachedSpec("pid_hash", run_stats="off"), sizes={},
                        built=SimpleNamespace(sha256="x"))
    (row,) = attached.ENGINE.rows(b, attached.Sample(0, 0, 10**9, 5, np.zeros(32, np.uint64), 10, 500, 20), {})
    assert row["ns_per_op"] is None and row["status"] == "stats_not_as_asked"


@pytest.mark.kernel
def test_spread_programs_run_the_same_and_lie_on_pages_of_their_own():
    with ChainBuild(ProgramsSpec(4, layout="spread"), False) as spread, ChainBuild(ProgramsSpec(4), False) as packed:
        a, b = spread.sample(0.01), packed.sample(0.01)
        assert a.runs == 4 * a.events and b.runs == 4 * b.events
        assert spread.sizes["prog_jited_bytes"] > 4 * 4096 > packed.sizes["prog_jited_bytes"]
        assert spread.layout["text_pages"] >= 4 >= packed.layout["text_pages"]
