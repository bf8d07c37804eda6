import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, settings

from mapbench.binding.libbpf import bpf_privileged

# Kernel round trips are slow next to hypothesis's defaults; keep examples few and deadline-free.
settings.register_profile("kernel", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("kernel")


def pytest_collection_modifyitems(config, items):
    """Tests marked `kernel` skip only for want of privilege; when root, a missing feature fails."""
    if bpf_privileged():
        return
    skip = pytest.mark.skip(reason="needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN) to load "
                                   f"BPF programs; euid is {os.geteuid()}")
    for item in items:
        if "kernel" in item.keywords:
            item.add_marker(skip)


def run_cli(*args, env=None, without_caps=False):
    """Run `mapbench ...` in a subprocess: exit codes and stderr as a user sees them.
    without_caps: with every capability dropped, as an unprivileged user has none."""
    cmd = [sys.executable, "-m", "mapbench.cli", *args]
    if without_caps:
        cmd = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=600)
