import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, settings

# Kernel round trips are slow next to hypothesis's defaults; keep examples few and deadline-free.
settings.register_profile("kernel", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("kernel")


def pytest_collection_modifyitems(config, items):
    """Tests marked `kernel` skip only for want of privilege; when root, a missing feature fails."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason=f"needs root to load BPF programs (euid is {os.geteuid()})")
    for item in items:
        if "kernel" in item.keywords:
            item.add_marker(skip)


def run_cli(*args, env=None, user=None):
    """Run `mapbench ...` in a subprocess: exit codes and stderr as a user sees them."""
    cmd = [sys.executable, "-m", "mapbench.cli", *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=600)
