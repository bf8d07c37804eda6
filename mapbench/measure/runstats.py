"""BPF run stats (run_time_ns, run_cnt) as a side of a comparison asks for them: the attached and
programs engines' --run-stats (docs/method.md, "The article's program-level experiments")."""

from __future__ import annotations

import contextlib

from mapbench.binding.libbpf import run_stats

RUN_STATS = ("on", "off")


def stats_for(wanted: str, held: bool) -> contextlib.AbstractContextManager:
    """Run stats as a side asks, for one sample: on (an fd of our own, unless the load holds one),
    or off. Off is only what this process does: another one may hold them on (the kernel has one
    switch for all, and /proc/sys/kernel/bpf_stats_enabled shows only the sysctl's own setting), so
    a sample checks that its programs' run_cnt grew only if asked."""
    return run_stats() if wanted == "on" and not held else contextlib.nullcontext()
