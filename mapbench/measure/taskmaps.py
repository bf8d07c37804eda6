"""What the engines on task and scheduler events share (attached, create, own): the pid hash's
dummy pids and room, the per-CPU `counts` map of struct mb_sched_counts (bpf/mapbench.h), and the
ping-pong load's --tasks."""

from __future__ import annotations

import numpy as np

from mapbench.errors import BadInput, EnvironmentProblem
from mapbench.measure.values import parse_whole_number

DUMMY_PID_BASE = 0x40000000  # above any pid_max (at most 2^22): never a live task's pid
LIVE_TASK_ROOM = 65536  # hash entries for live tasks beside the dummies
# struct mb_sched_counts, one per CPU in the `counts` map; checked against the map's value size,
# so that the header and the reader cannot drift apart unnoticed
COUNTS = np.dtype([("target_events", np.uint64), ("target_ns", np.uint64), ("all_events", np.uint64)])
_ZERO = bytes(4)
PINGPONG_MAX_TASKS = 4096  # threads of the native ping-pong load (libbpf.pingpong)


def parse_pingpong_tasks(text) -> int:
    """--tasks of the ping-pong load: an even number of threads, as it runs pairs."""
    value = parse_whole_number(text, "--tasks")
    if not 2 <= value <= PINGPONG_MAX_TASKS or value % 2:
        raise BadInput(f"--tasks {value} must be an even number in 2..{PINGPONG_MAX_TASKS} "
                       "(the load generator runs pairs)")
    return value


def dummy_pids(n: int) -> np.ndarray:
    return (DUMMY_PID_BASE + np.arange(n, dtype=np.uint64)).astype(np.uint32)


def check_counts(m, reader: str) -> None:
    if m.value_size != COUNTS.itemsize:
        raise EnvironmentProblem(f"map counts holds {m.value_size} bytes, mapbench reads {COUNTS.itemsize}: "
                                 f"bpf/mapbench.h and {reader} disagree")


def counts_per_cpu(m) -> np.ndarray:
    """Every CPU's struct mb_sched_counts, as COUNTS records indexed by CPU."""
    return np.frombuffer(m.lookup(_ZERO), COUNTS)


def counts(m) -> dict[str, int]:
    per_cpu = counts_per_cpu(m)
    return {name: int(per_cpu[name].sum()) for name in COUNTS.names}
