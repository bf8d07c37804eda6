"""Several producers on one map (issue 12): they run at once, each on its own slice, and a
run's memory cgroup never outlives it."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import run_cli
from mapbench.binding._libbpf import lib
from mapbench.errors import BadInput
from mapbench.measure import keys, memcg, runner, sweep
from mapbench.measure.cpus import Producers
from mapbench.measure.engine import Host
from mapbench.measure.engines import kernel
from mapbench.measure.engines.kernel import KernelSpec, LoadedBuild, instance_config
from mapbench.present import render
from mapbench.results import store as results
from mapbench.results import summary

pytestmark = pytest.mark.kernel
CPUS = len(os.sched_getaffinity(0))
needs_two = pytest.mark.skipif(CPUS < 2, reason=f"needs 2 CPUs to run producers at once; this process has {CPUS}")


def test_producers_above_the_usable_cpus_is_one_line_naming_the_bound(tmp_path):
    out = tmp_path / "r.parquet"
    res = run_cli("run", "--map", "hash", "--producers", str(CPUS + 1), "--out", str(out))
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == (f"mapbench: error: --producers {CPUS + 1} is above the {CPUS} CPUs this "
                                  "process may use")
    assert not out.exists()
    with pytest.raises(BadInput, match="--writers 3 is above --producers 2"):
        KernelSpec.of("hash", producers=min(2, CPUS), writers=3)


@needs_two
def test_producers_run_at_the_same_time_and_rows_say_who_did_what(tmp_path):
    out = tmp_path / "r.parquet"
    res = run_cli("run", "--map", "hash", "--size", "1e4", "--producers", "2", "--writers", "1", "--samples", "3",
                  "--instances", "2", "--out", str(out))
    assert res.returncode == 0, res.stderr
    df = results.read(out).to_pandas()
    two = df[(df.producers == 2) & (df.strategy == "hash")]
    assert set(two.role) == {"reader", "writer"} and set(two[two.role == "writer"].op) == {"update"}
    assert set(two[two.role == "reader"].op) == {"lookup"}
    for _, sample in two.groupby(["instance", "sample"]):
        assert sorted(sample.producer) == [0, 1] and sample.cpu.nunique() == 2
        ends = sample.started_ns + sample.elapsed_ns
        # the timed windows overlap: each started before the other ended
        assert sample.started_ns.max() < ends.min(), sample[["cpu", "started_ns", "elapsed_ns"]]
        assert (sample.ended_ns == ends).all() and sample.aggregate_ops_per_s.nunique() == 1
    # they run for one shared window, so each sample's windows coincide (before: each did a fixed
    # count, and a reader's lookups ended long before a writer's updates)
    overlaps = two.groupby(["instance", "sample"]).window_overlap.first()
    assert overlaps.median() >= 0.95 and (overlaps > 0).all(), overlaps.describe()
    # the one-producer baseline was measured beside them, in the same loads
    assert set(df[df.strategy == "hash"].producers) == {1, 2}


def test_aggregate_ops_are_those_inside_the_common_window():
    def run(start, end, ops):
        return kernel.RunResult(end - start, ops, 0, 0, 0, 0, ops, start, 0)
    # [0, 10) and [5, 15) share [5, 10): 5 of each one's 10 ns, so half of each one's ops
    sample = kernel.Sample([run(0, 10, 100), run(5, 15, 40)])
    assert sample.common_window_ns == 5 and sample.overlap == pytest.approx(5 / 15)
    assert sample.aggregate_ops_per_s == pytest.approx((50 + 20) / 5 * 1e9)
    apart = kernel.Sample([run(0, 10, 100), run(10, 20, 100)])
    assert apart.overlap == 0 and np.isnan(apart.aggregate_ops_per_s)


def _rows(spec, comparison, position, rates):
    """Result rows of one side, over three loads: per sample, ops/s of one producer, or of all of
    them (each producer then did its share)."""
    rows = []
    for sample, rate in enumerate(rates):
        for producer, role in enumerate(spec.roles()):
            share = rate / spec.producers
            rows.append({**spec.config_fields(), "comparison": comparison, "position": position, "instance": sample % 3,
                         "sample": sample // 3, "warmup": False, "status": "ok", "producer": producer, "role": role,
                         "ops": int(share), "elapsed_ns": 10**9, "ns_per_op": 1e9 / share,
                         "gross_ns_per_op": 1e9 / share,
                         "aggregate_ops_per_s": rate if spec.producers > 1 else None,
                         "window_overlap": 0.99 if spec.producers > 1 else None})
    return rows


def test_scaling_efficiency_is_per_sample_against_the_same_comparisons_one_producer_on_the_same_entries():
    solo, pair = KernelSpec.of("hash", producers=1), KernelSpec.of("hash", producers=2)
    sliced, disjoint = (KernelSpec.of("hash", producers=1, overlap="disjoint", slice_of=2),
                        KernelSpec.of("hash", producers=2, overlap="disjoint"))
    rates = [1e6 * (1 + i % 5) for i in range(12)]  # a machine that drifts from sample to sample
    times = lambda k, rs: [k * r for r in rs]  # noqa: E731
    rows = (_rows(solo, "same", 0, rates) + _rows(pair, "same", 1, times(1.6, rates))
            # another comparison of the same configurations, on a machine half as fast
            + _rows(solo, "again", 0, times(0.5, rates)) + _rows(pair, "again", 1, times(0.9, rates))
            + _rows(sliced, "disjoint", 0, rates) + _rows(disjoint, "disjoint", 1, times(2.2, rates)))
    records = {(r["overlap"], r["producers"]): r for r in summary.summaries(results.make_table(rows, "run", {}))}
    assert records[("slice 1/2", 1)]["scaling_efficiency"] is None
    same = records[("same", 2)]
    # pooled over both comparisons' loads, each against its own one producer: 0.8 and 0.9
    assert 0.8 < same["scaling_efficiency"] < 0.9 and same["scaling_pairs"] == 24
    assert 0.75 < same["scaling_ci_low"] < same["scaling_efficiency"] < same["scaling_ci_high"] < 0.95
    off = records[("disjoint", 2)]  # against one producer on one slice: 2.2 / 2
    assert (off["scaling_efficiency"], off["scaling_ci_low"], off["scaling_ci_high"]) == pytest.approx((1.1,) * 3)
    assert off["window_overlap"] == pytest.approx(0.99)
    assert "above 100 %" in render.fmt_scaling(off) and "above" not in render.fmt_scaling(same)


def test_one_producer_of_a_disjoint_comparison_draws_from_one_slice():
    raw = {"strategies": ["hash"], "sizes": ["1000"], "producers": ["2"], "overlaps": ["disjoint"]}
    comparisons = runner.comparisons(sweep.Grid("kernel", raw, kernel.DEFAULTS), Host.here())
    assert len(comparisons) == 1
    one, two = comparisons[0].sides
    assert (one.producers, one.slices(), two.slices()) == (1, [(0, 500)], [(0, 500), (500, 500)])
    assert one.config_fields()["overlap"] == "slice 1/2" and two.config_fields()["overlap"] == "disjoint"
    # alone, one producer draws from every entry, as before
    assert KernelSpec.of("hash", producers=1, overlap="disjoint").slices() == [(0, 0)]


@needs_two
@given(size=st.integers(min_value=2, max_value=5000), hit_ratio=st.floats(min_value=0, max_value=1),
       seed=st.integers(min_value=0, max_value=2**32), nr_loops=st.integers(min_value=1, max_value=5000),
       overlap=st.sampled_from(["same", "disjoint"]), distribution=st.sampled_from(["uniform", "zipf"]))
def test_each_producer_finds_exactly_what_numpy_predicts_for_its_slice(size, hit_ratio, seed, nr_loops, overlap,
                                                                      distribution):
    spec = KernelSpec.of("hash", map_size=size, hit_ratio=hit_ratio, seed=seed, producers=2, overlap=overlap,
                      key_distribution=distribution)
    config = instance_config(spec, 0)
    members = keys.member_keys(np.arange(size, dtype=np.uint64), config["key_mult"], config["key_salt"])
    sums = keys.value_words(members, 1).sum(axis=1, dtype=np.uint64)
    cpus = Host.here().producer_cpus(None, 2)
    starts = [7 * nr_loops, 8 * nr_loops]
    with Producers(cpus) as pool, LoadedBuild(spec, False, config) as program:
        runs = pool.run([lambda p=p: program.run(nr_loops, starts[p], *spec.slices()[p], cpu=cpus[p])
                         for p in range(2)])
        program.reset_gate()  # and in a shared window: as many draws as the window held, the stream's next ones
        runs += pool.run([lambda p=p: program.run(kernel.WINDOW_DRAWS, starts[p], *spec.slices()[p], cpu=cpus[p],
                                                  producers=2, window_ns=200_000) for p in range(2)])
    assert [r.nr_loops for r in runs[:2]] == [nr_loops] * 2
    assert all(r.nr_loops % lib.MB_CLOCK_EVERY == 0 and r.elapsed_ns >= 200_000 for r in runs[2:])
    for p, r in enumerate(runs):
        p %= 2
        first, nr = spec.slices()[p]
        idx, hit = keys.draw_indexes(config, starts[p], r.nr_loops, kernel.draw_table(spec, config), first, nr)
        assert r.cpu == cpus[p] and r.hits == int(hit.sum())
        found = idx[hit].astype(np.int64)
        if nr:
            assert ((found >= first) & (found < first + nr)).all()
        assert r.value_checksum == int(np.bitwise_xor.reduce(sums[found], initial=np.uint64(0)))


class Interrupted(Exception):
    """What the test's signal handler raises, as the CLI's raises KeyboardInterrupt."""


def test_an_interrupted_run_joins_its_threads_before_it_raises():
    """An interrupt in Producers.run: run() raises only once no job runs (the caller then closes
    what the jobs use), and close() does not hang."""
    def interrupt(signum, frame):
        raise Interrupted
    finished = []

    def job():
        time.sleep(0.5)  # as a test run: the C call goes on whatever the main thread does
        finished.append(True)
    before = signal.signal(signal.SIGUSR1, interrupt)
    try:
        pool = Producers(Host.here().producer_cpus(None, min(2, CPUS)))
        threading.Timer(0.1, signal.pthread_kill, (threading.main_thread().ident, signal.SIGUSR1)).start()
        with pytest.raises(Interrupted):
            pool.run([job] * len(pool.cpus))
        assert len(finished) == len(pool.cpus), "run() raised while jobs were still running"
        closing = threading.Thread(target=pool.close, daemon=True)
        closing.start()
        closing.join(5)
        assert not closing.is_alive(), "close() hung after an interrupted run"
        assert not any(t.is_alive() for t in pool._threads)
    finally:
        signal.signal(signal.SIGUSR1, before)


def _bpf_ids(pid: int) -> set[str]:
    """The programs and maps a process holds: ('prog', id) and ('map', id) from its fds' fdinfo."""
    ids = set()
    for fdinfo in Path(f"/proc/{pid}/fdinfo").iterdir():
        with contextlib.suppress(OSError):
            for line in fdinfo.read_text().splitlines():
                kind, _, value = line.partition(":\t")
                if kind in ("prog_id", "map_id"):
                    ids.add((kind[:-3], value.strip()))
    return ids


def _live_bpf_ids() -> set[str]:
    return {(kind, str(o["id"])) for kind in ("prog", "map")
            for o in json.loads(subprocess.run(["bpftool", kind, "show", "-j"], capture_output=True, text=True,
                                               check=True).stdout)}


def _producers_ran(pid: int) -> bool:
    """Whether a producer thread (pinned to one CPU, not the main thread) has spent a sample's
    time on its CPU: calibration runs on the main thread, so sampling with producers has begun."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            pinned = len(os.sched_getaffinity(int(task.name))) == 1
            ran_ns = int((task / "schedstat").read_text().split()[0])
            if task.name != str(pid) and pinned and ran_ns > 4_000_000:
                return True
    return False


def _eventually(check, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@needs_two
@pytest.mark.skipif(memcg.flavour() is None, reason=memcg.why_not())
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_an_interrupted_or_killed_run_of_two_producers_leaves_nothing_behind(tmp_path, how):
    """Ctrl-C, SIGTERM or SIGKILL while two producers (one writing) are sampling: the run exits
    within 10 s, and no cgroup, process, program or map of it remains."""
    parent = memcg.flavour().parent
    proc = subprocess.Popen([sys.executable, "-m", "mapbench.cli", "run", "--map", "hash", "--size", "1e5",
                             "--producers", "2", "--writers", "1", "--op", "lookup", "--write-op", "update",
                             "--samples", "200", "--out", str(tmp_path / "r.parquet")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    mine = lambda: set(parent.glob(memcg.PREFIX + f"{proc.pid}-*"))  # noqa: E731
    try:
        assert _eventually(lambda: _producers_ran(proc.pid), 60), "the run never sampled with its producers"
        held = _bpf_ids(proc.pid)
        assert mine() and {k for k, _ in held} == {"prog", "map"}
        # most likely while the main thread waits for its producers (Producers.run), the case
        # that used to hang: its wait is a futex
        _eventually(lambda: "futex" in Path(f"/proc/{proc.pid}/wchan").read_text(), 5)
        proc.send_signal(how)
        _, stderr = proc.communicate(timeout=10)
    finally:
        proc.kill()
    if how == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130, stderr
        assert "interrupted" in stderr
    assert _eventually(lambda: not mine()), f"left {mine()}"
    watchers = lambda: [p for p in Path("/proc").glob("[0-9]*/cmdline")  # noqa: E731
                        if f"mapbench.measure.memcg\0{parent}\0{proc.pid}\0" in p.read_bytes().decode(errors="replace")]
    assert _eventually(lambda: not watchers()), "the cgroup watcher outlived the run"
    assert _eventually(lambda: not held & _live_bpf_ids()), f"left {held & _live_bpf_ids()}"  # after RCU
