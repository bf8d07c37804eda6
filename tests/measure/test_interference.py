"""Interference per sample (measure/interference.py): the reader on this machine, deltas on
synthetic /proc text, what counts as hit, re-takes in the runner and the report's line. No
kernel needed: the runner's part runs a toy engine through measure_load."""

import contextlib
import os
from dataclasses import dataclass

import pandas as pd
import pyarrow.parquet as pq

from mapbench.measure import interference, runner
from mapbench.measure.cpus import resolve_cpu, rotation
from mapbench.measure.engine import Comparison, Engine, Host, MeasureOptions, Spec
from mapbench.measure.interference import Interference, Probe, Reading
from mapbench.present import report
from mapbench.results import store as results

STAT = """cpu  461779 0 407688 1311194 4821 0 1053 {total} 0 0
cpu0 180295 0 89197 819172 3202 0 542 66 0 0
cpu1 281484 0 318490 492022 1618 0 510 {steal} 0 0
intr 1 2 3
ctxt 123
"""
STATUS = "Name:\tpython3\nvoluntary_ctxt_switches:\t5\nnonvoluntary_ctxt_switches:\t{switches}\n"
SCHED = ("python3 (1234, #threads: 1)\n-------------------------------------------------------------------\n"
         "se.exec_start                                :      11027005.503044\n"
         "se.nr_migrations                             :                    {migrations}\n"
         "nr_switches                                  :                    0\n")
PSI = "some avg10=3.27 avg60=12.33 avg300=9.60 total={some}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"


def fake_proc(tmp_path, monkeypatch, **values) -> dict:
    """Point the probe at files of synthetic /proc text; returns a writer of new values."""
    paths = {name: tmp_path / name for name in ("stat", "status", "sched", "pressure")}
    for attr, name in (("PROC_STAT", "stat"), ("THREAD_STATUS", "status"), ("THREAD_SCHED", "sched"),
                       ("CPU_PRESSURE", "pressure")):
        monkeypatch.setattr(interference, attr, str(paths[name]))

    def write(steal, switches, migrations, some):
        # rewritten in place: the probe's open files read the new text, as /proc's do
        paths["stat"].write_text(STAT.format(total=steal + 66, steal=steal))
        paths["status"].write_text(STATUS.format(switches=switches))
        paths["sched"].write_text(SCHED.format(migrations=migrations))
        paths["pressure"].write_text(PSI.format(some=some))

    write(**values)
    return write


def test_the_probe_reads_numbers_on_this_machine():
    cpu = resolve_cpu(None)
    with Probe(cpu) as probe:
        before = probe.read()
        sum(range(100_000))
        after = probe.read()
    for value, path in ((before.steal_ticks, interference.PROC_STAT),
                        (before.involuntary_switches, interference.THREAD_STATUS),
                        (before.migrations, interference.THREAD_SCHED),
                        (before.cpu_pressure_us, interference.CPU_PRESSURE)):
        assert (isinstance(value, int) and value >= 0) == os.path.exists(path), (path, value)
    seen = after.since(before, 1_000_000)
    assert all(v is None or v >= 0 for v in seen.columns().values())
    assert probe._fds[interference.PROC_STAT] is None  # closed


def test_absent_files_read_as_none(tmp_path, monkeypatch):
    monkeypatch.setattr(interference, "THREAD_SCHED", str(tmp_path / "no-sched"))  # !CONFIG_SCHED_DEBUG
    monkeypatch.setattr(interference, "CPU_PRESSURE", str(tmp_path / "no-psi"))  # psi=0
    with Probe(resolve_cpu(None)) as probe:
        before, after = probe.read(), probe.read()
    assert before.migrations is None and before.cpu_pressure_us is None
    assert before.steal_ticks is not None and before.involuntary_switches is not None
    seen = after.since(before, 5_000_000)
    assert seen.migrations is None and seen.cpu_pressure_us is None
    assert "migration" not in seen.reasons() and "pressure" not in seen.reasons()


def test_a_cpu_the_stat_file_does_not_list_reads_none():
    assert interference.steal_ticks(STAT.format(total=1, steal=7), 1) == 7
    assert interference.steal_ticks(STAT.format(total=1, steal=7), 0) == 66
    assert interference.steal_ticks(STAT.format(total=1, steal=7), 12) is None  # "cpu1" must not match "cpu12"
    assert interference.steal_ticks("cpu3 1 2 3 4\n", 3) is None  # a kernel before steal was counted


def test_deltas_on_synthetic_proc_text(tmp_path, monkeypatch):
    write = fake_proc(tmp_path, monkeypatch, steal=70, switches=1, migrations=1, some=991219149)
    with Probe(1) as probe:
        before = probe.read()
        assert before == Reading(70, 1, 1, 991219149, 5)
        write(steal=72, switches=4, migrations=1, some=991219149 + 250)
        seen = probe.read().since(before, 5_000_000)
    assert seen == Interference(2, 3, 0, 250, 5_000_000, 0)
    assert seen.reasons() == ("steal", "preemption")


def test_what_counts_as_hit():
    quiet = Interference(0, 0, 0, 0, 5_000_000)
    assert not quiet.hit and quiet.reasons() == ()
    assert Interference(1, 0, 0, 0, 5_000_000).reasons() == ("steal",)
    assert Interference(0, 1, 0, 0, 5_000_000).reasons() == ("preemption",)
    assert Interference(0, 0, 1, 0, 5_000_000).reasons() == ("migration",)
    share = interference.PRESSURE_SHARE
    assert Interference(0, 0, 0, int(5_000 * share) + 1, 5_000_000).reasons() == ("pressure",)
    assert not Interference(0, 0, 0, int(5_000 * share) - 1, 5_000_000).hit
    assert not Interference(None, None, None, None, 5_000_000).hit  # nothing readable: nothing known to be hit


def test_a_thread_that_slept_is_hit_by_steal_and_migration_only():
    # several producers: the measuring thread waits at a barrier while the producers, its own
    # load, keep every CPU busy; their preemptions and pressure are the sample's work, not interference
    busy = dict(involuntary_switches=2, cpu_pressure_us=4_000, duration_ns=5_000_000, voluntary_switches=2)
    assert Interference(0, migrations=0, **busy).reasons() == ()
    assert Interference(1, migrations=1, **busy).reasons() == ("steal", "migration")
    assert Interference(0, migrations=0, **{**busy, "voluntary_switches": 0}).reasons() == ("preemption", "pressure")


def scripted_reads(monkeypatch, hit_takes: set[int]):
    """Probe.read reporting one involuntary switch over take t (0, 1, ...) for t in hit_takes."""
    reads = {"n": 0, "switches": 0}

    def read(self):
        n = reads["n"]
        reads["n"] += 1
        if n % 2 == 1 and n // 2 in hit_takes:  # the read after take n // 2
            reads["switches"] += 1
        return Reading(0, reads["switches"], 0, 0)

    monkeypatch.setattr(Probe, "read", read)
    return reads


def test_a_hit_take_is_taken_again_until_one_is_not(monkeypatch):
    scripted_reads(monkeypatch, hit_takes={0, 1})
    calls = []
    with Probe(0) as probe:
        result, seen, discarded = probe.take(lambda: calls.append(1) or len(calls))
    assert (result, discarded, seen.hit) == (3, 2, False)


def test_retakes_run_out_and_the_last_take_is_kept_flagged(monkeypatch):
    scripted_reads(monkeypatch, hit_takes=set(range(100)))
    calls = []
    with Probe(0) as probe:
        result, seen, discarded = probe.take(lambda: calls.append(1) or len(calls))
        assert (result, discarded, seen.hit) == (1 + interference.MAX_RETAKES, interference.MAX_RETAKES, True)
        calls.clear()
        result, seen, discarded = probe.take(lambda: calls.append(1) or len(calls), retakes=0)
        assert (result, discarded, seen.hit) == (1, 0, True)


# --- in the runner ----------------------------------------------------------------------------

@dataclass(frozen=True)
class CountSpec(Spec):
    strategy: str

    def config_fields(self) -> dict:
        return {"engine": "count", "family": "count", "strategy": self.strategy, "op": "lookup", "map_size": 1}

    def used_fields(self) -> set[str]:
        return {"strategy"}

    def control_key(self) -> tuple:
        return ()


@dataclass(frozen=True)
class CountBuild:
    spec: CountSpec
    control: bool


class Count(Engine):
    """Each take of a sample returns how many takes its build had so far."""

    name, description, note = "count", "counts takes (a test engine)", "takes"
    axes, sides = (), ()
    defaults = MeasureOptions(samples=2, instances=1, warmup=1)

    def __init__(self):
        self.takes: list[tuple[str, int]] = []

    def make_spec(self, fields, host):
        return CountSpec(**fields)

    def open(self, spec, control, load):
        return contextlib.nullcontext(CountBuild(spec, control))

    def sample(self, build, number, calibration, session):
        self.takes.append(("control" if build.control else build.spec.strategy, number))
        return float(len(self.takes))

    def control_figures(self, sample):
        return {"ns_per_op": [sample]}

    def rows(self, build, sample, control):
        return [{**build.spec.config_fields(), **({"strategy": "control"} if build.control else {}),
                 "ns_per_op": sample}]


def load_rows(monkeypatch, hit_takes: set[int]) -> tuple[Count, list, int]:
    engine = Count()
    monkeypatch.setitem(runner.ENGINES, "count", engine)
    scripted_reads(monkeypatch, hit_takes)
    opts = engine.defaults
    load = runner.Load(0, 1)  # a load whose rotation starts with the side (cpus.rotation seeds it by number)
    assert rotation(["a", "control"], 0, load.number) == ["a", "control"]
    p = runner.Plan("run", (Comparison("count", (CountSpec("a"),), opts),), (load,), Host.here(), resolve_cpu(None))
    advanced = []
    rows, _ = runner.measure_load(p, load, None, lambda: advanced.append(1))
    return engine, rows, len(advanced)


def test_the_runner_takes_a_hit_sample_again_in_its_place(monkeypatch):
    # takes: sample 0 (warm-up) a, control; sample 1 control, a (rotated) -> take 2 is sample 1's control
    engine, rows, advanced = load_rows(monkeypatch, hit_takes={2})
    assert engine.takes == [("a", 0), ("control", 0), ("control", 1), ("control", 1), ("a", 1),
                            ("a", 2), ("control", 2)]
    assert advanced == 6 and len(rows) == 6  # one row and one progress step per sample, not per take
    by = {(r["strategy"], r["sample"]): r for r in rows}
    assert by[("control", 1)]["retakes"] == 1 and by[("control", 1)]["ns_per_op"] == 4.0  # the kept take
    assert by[("control", 1)]["run_order"] == 0 and by[("a", 1)]["run_order"] == 1  # the rotation holds
    assert sum(r["retakes"] for r in rows) == 1 and not any(r["interfered"] for r in rows)
    for r in rows:
        assert {k: r[k] for k in ("steal_ticks", "migrations", "cpu_pressure_us")} == dict.fromkeys(
            ("steal_ticks", "migrations", "cpu_pressure_us"), 0)
        assert r["involuntary_switches"] == 0  # the kept take's deltas


def test_a_hit_warm_up_sample_is_flagged_not_taken_again(monkeypatch):
    engine, rows, _ = load_rows(monkeypatch, hit_takes={0})
    assert len(engine.takes) == 6
    [hit] = [r for r in rows if r["interfered"]]
    assert (hit["strategy"], hit["sample"], hit["warmup"], hit["retakes"], hit["involuntary_switches"]) == (
        "a", 0, True, 0, 1)


def test_rows_carry_the_columns_into_the_store_and_older_files_read_null(monkeypatch, tmp_path):
    _, rows, _ = load_rows(monkeypatch, hit_takes={2})
    path = tmp_path / "new.parquet"
    results.write(path, results.make_table([dict(r) for r in rows], "run", {}))
    df = results.read(path).to_pandas()
    assert df.retakes.sum() == 1 and df.interfered.dtype == bool
    old = tmp_path / "old.parquet"
    new = ["steal_ticks", "involuntary_switches", "migrations", "cpu_pressure_us", "retakes", "interfered"]
    pq.write_table(pq.read_table(path).drop_columns(new), old)
    assert results.read(old).to_pandas()[new].isna().all().all()


# --- in the report ----------------------------------------------------------------------------

def test_the_report_says_how_much_was_taken_again():
    df = pd.DataFrame({"retakes": [0, 2, 1, 3, 0, None], "interfered": [False, False, False, True, True, None],
                       "warmup": [False, False, False, False, True, None], "producer": [None, 0, 0, None, None, None]})
    [line] = report.interference(df)
    assert line.startswith("3 of 4 samples re-taken for interference (steal, preemption, migration, pressure): "
                           "6 takes discarded; 1 kept although hit")
    producers = pd.concat([df, df.assign(producer=1)])  # a second producer's rows are the same samples
    assert report.interference(producers) == [line]
    assert report.interference(df.iloc[[5]]) == []  # rows from before the columns
    assert report.interference(df.drop(columns=["retakes"])) == []
