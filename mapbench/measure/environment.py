"""What this machine is and what it can do: recorded with every result, shown by `mapbench env`."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
from pathlib import Path

from mapbench import __version__
from mapbench.measure import children, machine


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def cpu_model() -> str:
    return machine.cpuinfo().get("model name") or platform.processor() or "unknown"


def jit_enabled() -> bool:
    return _read("/proc/sys/net/core/bpf_jit_enable", "0") != "0"


@functools.cache
def git_describe() -> str:
    here = Path(__file__).resolve().parents[2]  # the checkout
    try:
        out = children.run(["git", "-C", str(here), "describe", "--always", "--dirty", "--tags"], timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def load_avg_1m() -> float:
    return os.getloadavg()[0]


def libbpf_version() -> str:
    """The loaded libbpf's full version: its file name in our mappings (libbpf.so.1.1.2) says
    the patch level, which libbpf's own API (major, minor) does not."""
    from mapbench.binding._libbpf import lib  # loads libbpf.so into this process

    for line in Path("/proc/self/maps").read_text().splitlines():
        name = line.rsplit("/", 1)[-1]
        if name.startswith("libbpf.so."):
            return name.removeprefix("libbpf.so.")
    return f"{lib.libbpf_major_version()}.{lib.libbpf_minor_version()}"


@functools.cache
def run_environment() -> dict:
    """The environment columns of every result row (results.ENV_KEYS): the machine's
    fingerprint, vulnerabilities and THP mode among them (machine.py)."""
    from mapbench.measure.build import clang_version

    env = {
        "mapbench_version": __version__,
        "git_describe": git_describe(),
        "host": socket.gethostname(),
        "kernel_release": platform.release(),
        "cpu_model": cpu_model(),
        "nr_cpus": os.cpu_count() or 0,
        "jit_enabled": jit_enabled(),
        "clang_version": clang_version(),
        "libbpf_version": libbpf_version(),
    }
    return {**env, **machine.facts(env["host"], env["cpu_model"], env["nr_cpus"])}
