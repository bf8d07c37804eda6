"""What this machine is and what it can do: recorded with every result, shown by `mapbench env`."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import __version__


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39


def bpf_privileged() -> bool:
    """Whether this process may load tracing BPF programs: CAP_BPF with CAP_PERFMON, or
    CAP_SYS_ADMIN. Capabilities, not the uid: root without them cannot, and a process with
    them can whatever its uid."""
    caps = 0
    for line in _read("/proc/self/status").splitlines():
        if line.startswith("CapEff:"):
            caps = int(line.split()[1], 16)
    has = lambda cap: bool(caps >> cap & 1)  # noqa: E731
    return has(CAP_SYS_ADMIN) or (has(CAP_BPF) and has(CAP_PERFMON))


def jit_enabled() -> bool:
    return _read("/proc/sys/net/core/bpf_jit_enable", "0") != "0"


@functools.cache
def git_describe() -> str:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "describe", "--always", "--dirty", "--tags"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def load_avg_1m() -> float:
    return os.getloadavg()[0]


@functools.cache
def run_environment() -> dict:
    """The environment columns of every result row (DESIGN section 4)."""
    from .build import clang_version
    from .libbpf import libbpf_version

    return {
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


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def checks() -> list[Check]:
    """Can this machine run mapbench, and if not, why not."""
    from . import build

    result = [
        Check("privilege", bpf_privileged(),
              "may load BPF programs" if bpf_privileged()
              else "run as root: BPF needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN"),
        Check("kernel BTF", build.KERNEL_BTF.exists(),
              str(build.KERNEL_BTF) if build.KERNEL_BTF.exists() else "no /sys/kernel/btf/vmlinux"),
        Check("JIT", jit_enabled(), "bpf_jit_enable=" + _read("/proc/sys/net/core/bpf_jit_enable", "?"),
              required=False),
    ]
    for tool in ("clang", "bpftool"):
        try:
            build._tool(tool, "clang-14") if tool == "clang" else build._tool(tool)
            result.append(Check(tool, True, build.clang_version() if tool == "clang" else "found"))
        except Exception as exc:  # noqa: BLE001 - the message is the finding
            result.append(Check(tool, False, str(exc)))
    try:
        from . import libbpf
    except ImportError as exc:
        result.append(Check("libbpf binding", False, f"cannot import the cffi module: {exc}"))
        return result
    result.append(Check("libbpf", True, libbpf.libbpf_version()))
    if bpf_privileged():
        for name in ("hash", "bloom_filter", "task_storage", "lru_hash", "percpu_hash", "array"):
            ok = libbpf.probe_map_type(name)
            result.append(Check(f"map {name}", ok, "supported" if ok else "not supported by this kernel",
                                required=name in ("hash", "bloom_filter", "task_storage")))
    return result
