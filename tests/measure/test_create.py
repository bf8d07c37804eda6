"""The create engine: a record for each fresh task on fork and its removal at exit, task storage
against a pid-keyed hash; every record made is there at exit and removed (or left to the kernel),
and bad input is one line."""

import numpy as np
import pytest

from conftest import run_cli
from mapbench.binding.libbpf import SYSCALL_OPS
from mapbench.errors import BadInput
from mapbench.measure.engines import create
from mapbench.measure.engines.create import CreateBuild, CreateSpec, make_spec


def test_create_and_insert_name_the_fork_side_op_of_either_strategy():
    assert make_spec({"strategy": "task_storage", "op": "insert"}).op == "create"
    assert make_spec({"strategy": "pid_hash", "op": "create"}).op == "insert"
    assert make_spec({"strategy": "pid_hash"}).op == "insert"
    assert make_spec({"strategy": "task_storage", "op": "delete"}).op == "delete"
    # both sides of the pair share their control: the same hook is timed
    assert make_spec({"strategy": "pid_hash"}).control_key() == make_spec({"strategy": "task_storage"}).control_key()


@pytest.mark.parametrize("fields,message", [({"nr_tasks": 0}, "--tasks 0 is outside"),
                                            ({"map_size": -1}, "--size -1 is outside"),
                                            ({"op": "lookup"}, "--op")])
def test_bad_input_is_refused(fields, message):
    with pytest.raises(BadInput, match=message):
        make_spec({"strategy": "pid_hash", **fields})


def test_run_refuses_zero_tasks_in_one_line():
    res = run_cli("run", "--engine", "create", "--tasks", "0")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "--tasks 0 is outside 1..10000" in res.stderr


def _entries(build: CreateBuild) -> int:
    """Entries of the pid hash, walked from user space."""
    m = build.obj.map("records")
    n = m.max_entries
    keys, values = np.zeros(n, np.uint32), np.zeros((n, 2), np.uint64)
    return m.run(SYSCALL_OPS["batch", "lookup"], n, out_keys=keys, out_values=values, batch=n).done


@pytest.mark.kernel
@pytest.mark.parametrize("strategy,op", [("task_storage", "create"), ("task_storage", "delete"),
                                         ("pid_hash", "insert"), ("pid_hash", "delete")])
def test_every_fresh_task_gets_a_record_that_is_there_at_exit_and_removed(strategy, op):
    """Removed: the exit program's delete (the pid hash always, task storage with --op delete), or
    task storage left for the kernel to free with the task (bpf_task_storage_free)."""
    spec = CreateSpec(strategy, op, map_size=100, nr_tasks=50)
    with CreateBuild(spec, False) as b:
        for _ in range(2):
            s = b.sample(spec.nr_tasks)
            assert s.target_events == spec.nr_tasks  # the timed hook saw every one of them, no other task
            assert s.created == s.exited == s.removed == spec.nr_tasks
            if strategy == "pid_hash":
                assert _entries(b) == spec.map_size  # the dummies alone: every live task's pid was deleted
            row = create.ENGINE.rows(b, s, {"ns_per_op": 0.0, "run_stats_ns_per_event": 0.0})[0]
            assert row["status"] == "ok" and row["records_left"] == 0 and row["op"] == op


@pytest.mark.kernel
def test_the_control_times_the_same_hook_without_a_record():
    spec = CreateSpec("task_storage", "create", nr_tasks=20)
    with CreateBuild(spec, True) as b:
        s = b.sample(spec.nr_tasks)
        assert s.target_events == spec.nr_tasks and s.created == 0 and s.removed == 0
        assert create.ENGINE.rows(b, s, None)[0]["status"] == "ok"
