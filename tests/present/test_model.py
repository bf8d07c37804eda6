"""The runqslower model: the simulation against cases worked out by hand, its inputs read from
attached rows, the validation, and a run without the rows it needs (one line, exit 2)."""

import math

import pandas as pd
import pytest

from conftest import run_cli
from mapbench.errors import BadInput
from mapbench.present import model
from mapbench.results import store

COST, PAYLOAD = 100.0, 400.0  # ns per BPF event, ns of the load's own time per event


def flat(_runnable: float) -> float:
    return PAYLOAD


def test_one_task_alone_shares_the_cpu_as_worked_out_by_hand():
    # a cycle: two events of BPF (2 x 100), a slice for them (2 x 400), a sleep of 500: 1500 ns,
    # of which 200 in BPF; 1000 whole cycles fit the simulated time
    sleep = 500.0
    o = model.simulate(COST, flat, model.Workload(tasks=1, sleep_ns=sleep, sim_ns=1500.0 * 1000))
    assert o.bpf_share == pytest.approx(200 / 1500, rel=1e-12)
    assert o.events_per_s == pytest.approx(2 * 1000 / 1.5e-3, rel=1e-12)
    assert o.reports == 1000  # threshold 0: every wait is reported, a zero wait too
    assert o.births == 1


def test_a_threshold_above_every_wait_reports_none():
    o = model.simulate(COST, flat, model.Workload(tasks=1, sleep_ns=10, threshold_ns=1, sim_ns=1e6))
    assert o.reports == 0


@pytest.mark.parametrize("tasks,cpus", [(2, 1), (16, 1), (4, 2), (9, 3)])
def test_always_runnable_tasks_keep_every_cpu_busy_so_the_share_is_cost_over_cost_and_load(tasks, cpus):
    cycle = 2 * (COST + PAYLOAD)
    o = model.simulate(COST, flat, model.Workload(tasks=tasks, cpus=cpus, sim_ns=cycle * 3000))
    assert o.bpf_share == pytest.approx(COST / (COST + PAYLOAD), rel=1e-9)
    assert (o.series.bpf_share > 0).all()


def test_the_load_grows_with_the_runnable_tasks_on_a_cpu():
    # contention: the load's time per event read at the runnable tasks per CPU (every one of them here)
    def per_task(runnable):
        return 100.0 * runnable

    for tasks, cpus in ((4, 1), (8, 2), (3, 1)):
        per_cpu = tasks / cpus
        cycle = 2 * (COST + 100.0 * per_cpu)
        o = model.simulate(COST, per_task, model.Workload(tasks=tasks, cpus=cpus, sim_ns=cycle * 2000))
        assert o.bpf_share == pytest.approx(COST / (COST + 100.0 * per_cpu), rel=1e-9), (tasks, cpus)


def test_a_seed_makes_a_varied_simulation_repeat_and_its_mean_stays_near_the_closed_form():
    w = model.Workload(tasks=8, variation=0.5, sim_ns=5e6, seed=7)
    a, b = model.simulate(COST, flat, w), model.simulate(COST, flat, w)
    assert a.bpf_share == b.bpf_share and a.series.equals(b.series)
    other = model.simulate(COST, flat, model.Workload(**{**vars(w), "seed": 8}))
    assert other.bpf_share != a.bpf_share
    # about 5000 cycles with a slice's CV 0.5: the share's own spread is under 1 %
    assert a.bpf_share == pytest.approx(COST / (COST + PAYLOAD), rel=0.05)


def test_tasks_that_end_are_replaced_and_the_cost_per_event_is_unchanged():
    cycle = 2 * (COST + PAYLOAD)
    o = model.simulate(COST, flat, model.Workload(tasks=2, lifetime_ns=4 * cycle, sim_ns=cycle * 400))
    # 400 cycles of the CPU, two tasks taking turns: a task exits after 2 or 3 of its own cycles
    assert 400 / 3 < o.births <= 400 / 2 + 2
    assert o.bpf_share == pytest.approx(COST / (COST + PAYLOAD), rel=1e-9)


REPORT = 60.0  # ns per report on the made-up machine; half the events report (a switch in of each wakeup)


def attached_dicts(tasks=(2, 8, 128), sizes=(1000, 1_000_000), cost=None, payload=None,
                   minimums=(0,)) -> list[dict]:
    """Attached-engine rows as the engine writes them, from a made-up machine where the share is
    exactly what the model says: BPF time added to the load's own time, a report's time to every
    second event where delays are reported (min_delay_us 0), to none where no delay reached the
    minimum."""
    cost = cost or {"pid_hash": lambda n, s: 200.0 + 10 * math.log2(s / 1000) - 5 * math.log2(n),
                    "task_storage": lambda n, s: 80.0 - 2 * math.log2(n)}
    payload = payload or (lambda n: 1500.0 + 50 * math.log2(n))
    control_ns = 33.0
    rows = []
    for n in tasks:
        for size in sizes:
            for sample in range(3):
                base = {"engine": "attached", "family": "runqslower", "op": "sched_event", "map_size": size,
                        "nr_tasks": n, "isa": "v3", "warmup": False, "status": "ok", "sample": sample,
                        "kernel_release": "6.18", "machine_name": "test machine"}
                eps = 1e9 / (payload(n) + control_ns)
                rows.append({**base, "strategy": "control", "gross_ns_per_op": control_ns, "ns_per_op": control_ns,
                             "events_per_s": eps, "cpu_overhead_share": control_ns * eps / 1e9})
                for side, f in cost.items():
                    for minimum in minimums:
                        reports_per_event = 0.0 if minimum else 0.5
                        c = f(n, size) + REPORT * reports_per_event
                        eps = 1e9 / (payload(n) + c)
                        rows.append({**base, "strategy": side, "gross_ns_per_op": c, "ns_per_op": c - control_ns,
                                     "events_per_s": eps, "cpu_overhead_share": c * eps / 1e9, "ops": 100_000,
                                     "delays_recorded": int(100_000 * reports_per_event), "min_delay_us": minimum})
    return rows


def attached_rows(**kw) -> pd.DataFrame:
    return store.make_table(attached_dicts(**kw), "run-model", {}).to_pandas()


def test_inputs_come_from_the_rows_and_interpolate_in_log_size_and_tasks():
    inputs = model.inputs_from(attached_rows(), "run-model")
    assert inputs.payload_ns(8) == pytest.approx(1500 + 50 * 3)
    assert inputs.payload_ns(32) == pytest.approx(1500 + 50 * 5)  # between 8 and 128, in log tasks
    assert inputs.payload_ns(1000) == pytest.approx(1500 + 50 * 7)  # held beyond the largest
    with_report = REPORT / 2
    assert inputs.event_ns("pid_hash", 1000, 8) == pytest.approx(200 - 15 + with_report)
    assert inputs.event_ns("pid_hash", 31_623, 8) == pytest.approx(
        200 + 10 * math.log2(31.623) - 15 + with_report, rel=1e-3)
    # left out: 8 tasks from 2 and 128 (linear in log tasks, exactly the made-up law)
    assert inputs.event_ns("pid_hash", 1000, 8, leave_out=8) == pytest.approx(200 - 15 + with_report)
    # at an end, held at the nearest task count left
    assert inputs.event_ns("task_storage", 1000, 2, leave_out=2) == pytest.approx(80 - 6 + with_report)
    # no row without reports: the report path stays in every event's cost
    assert inputs.event_costs("pid_hash", 1000, 8) == (pytest.approx(200 - 15 + with_report), 0.0)
    assert not inputs.report_split("pid_hash")


def test_a_run_with_and_without_reports_gives_the_report_paths_cost():
    inputs = model.inputs_from(attached_rows(minimums=(0, 10_000_000)), "run-model")
    assert inputs.report_split("pid_hash") and inputs.report_split("task_storage")
    event, report = inputs.event_costs("pid_hash", 1000, 8)
    assert event == pytest.approx(200 - 15) and report == pytest.approx(REPORT)
    event, report = inputs.event_costs("task_storage", 10_000, 32, leave_out=128)
    assert event == pytest.approx(80 - 2 * 3) and report == pytest.approx(REPORT)  # held at 8 tasks
    v = model.validation(inputs, model.Workload(tasks=1, sim_ns=2e6))
    assert set(v.reporting) == {"every", "none"} and len(v) == 2 * 2 * 3 * 2
    assert v[v.nr_tasks == 8].error.abs().max() < 2e-3
    lines = model.report_path(inputs)
    assert lines[0].startswith("pid_hash: a report costs 60 ns (1,000 pids, 2 tasks); 60 ns (1,000 pids, 8 tasks)")


def test_the_validation_finds_no_error_where_the_machine_behaves_as_the_model():
    inputs = model.inputs_from(attached_rows(), "run-model")
    v = model.validation(inputs, model.Workload(tasks=1, sim_ns=2e6))
    assert sorted(v.nr_tasks.unique()) == [2, 8, 128]
    assert len(v) == 2 * 3 * 2 and set(v.reporting) == {"every"}
    assert v.own_error.abs().max() < 2e-3  # the same law: only the simulation's last partial cycle
    inner = v[v.nr_tasks == 8]  # interpolated, and the law is linear in log tasks
    assert inner.error.abs().max() < 2e-3
    ends = v[v.nr_tasks != 8]  # held at the neighbour: the law's slope shows as error
    assert ends.error.abs().min() > 1e-3
    sleepy = model.validation(inputs, model.Workload(tasks=1, sim_ns=2e6, sleep_ns=5e3, lifetime_ns=1e4, cpus=4))
    assert sleepy.equals(v)  # validated as the engine measured: one CPU, always runnable, no task ending
    text = model.markdown(inputs, v, v.assign(lifetime_ns=math.inf, cpus=1, share=v.predicted, events_per_s=1.0,
                                              reports=0, births=1), model.Workload(tasks=1))
    assert model.summary_line(v) in text and "| pid_hash | every | 1,000 | 8 |" in text
    assert "the report path's cost stays in every event's" in text


@pytest.mark.parametrize("rows,message", [
    (lambda: attached_rows().query("engine != 'attached'"), "no rows of the attached engine"),
    (lambda: attached_rows().query("strategy != 'control'"), "no attached rows of control"),
    (lambda: attached_rows(tasks=(2, 128)), "at 2 task count(s) (2, 128): the validation needs 3"),
    (lambda: attached_rows().assign(cpu_overhead_share=None), "lack cpu_overhead_share"),
])
def test_a_run_without_the_rows_the_model_needs_is_bad_input_naming_them(rows, message):
    frame = rows()
    if frame.empty:
        frame = store.make_table([{"engine": "kernel", "strategy": "hash", "warmup": False, "status": "ok"}],
                                 "run-model", {}).to_pandas()
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        model.inputs_from(frame, "run-model")


def test_the_command_writes_the_report_and_plot_and_a_short_run_exits_2_in_one_line(tmp_path):
    good, short = tmp_path / "good.parquet", tmp_path / "short.parquet"
    store.write(good, store.make_table(attached_dicts(), "run-good", {}), append=False)
    store.write(short, store.make_table(attached_dicts(tasks=(2, 8)), "run-short", {}),
                append=False)
    out = tmp_path / "m.md"
    done = run_cli("model", "runqslower", "--from", str(good), "--tasks", "2,64", "--sim-ms", "1",
                   "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "at 3 task counts (2, 8, 128)" in done.stdout
    text = out.read_text()
    assert "## Validation" in text and "![runqslower-model](m-plots/runqslower-model.png)" in text
    assert (tmp_path / "m-plots" / "runqslower-model.png").stat().st_size > 0
    failed = run_cli("model", "runqslower", "--from", str(short), "--out", str(tmp_path / "n.md"))
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [
        f"mapbench: error: {short} measured the attached engine at 2 task count(s) (2, 8): the validation "
        f"needs 3 ({model.RUN_HINT})"]
    assert not (tmp_path / "n.md").exists()
    dataset = tmp_path / "dataset" / "kernel=6.18" / "machine=m"
    dataset.mkdir(parents=True)
    good.rename(dataset / "run-good.parquet")
    by_id = run_cli("model", "runqslower", "--from", "run-good", "--dataset", str(tmp_path / "dataset"),
                    "--tasks", "4", "--sim-ms", "1", "--out", str(tmp_path / "by-id.md"))
    assert by_id.returncode == 0, by_id.stderr
    assert "Costs from run-good (" in (tmp_path / "by-id.md").read_text()
    unknown = run_cli("model", "runqslower", "--from", "no-such-run", "--dataset", str(tmp_path))
    assert unknown.returncode == 2 and "no such file, and no run of that id" in unknown.stderr
