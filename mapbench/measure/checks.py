"""`mapbench env`: can this machine run mapbench, and if not, why not."""

from __future__ import annotations

from dataclasses import dataclass

from mapbench.measure import build
from mapbench.measure.environment import _read, jit_enabled, libbpf_version, run_environment


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def checks() -> list[Check]:
    """Can this machine run mapbench, and if not, why not."""
    env = run_environment()
    try:
        from mapbench.binding import libbpf
    except ImportError as exc:
        return [Check("libbpf binding", False, f"cannot import the cffi module: {exc}")]
    bpf_privileged = libbpf.bpf_privileged
    result = [
        Check("machine", True, f"{env['machine_name']}, id {env['machine']}: figures are for this machine",
              required=False),
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
            build.tool(tool)
            result.append(Check(tool, True, build.clang_version() if tool == "clang" else "found"))
        except Exception as exc:  # noqa: BLE001 - the message is the finding
            result.append(Check(tool, False, str(exc)))
    result.append(Check("libbpf", True, libbpf_version()))
    if bpf_privileged():
        for name in libbpf.BPF_MAP_TYPE:
            ok = libbpf.probe_map_type(name)
            result.append(Check(f"map {name}", ok, "supported" if ok else "not supported by this kernel",
                                required=name in ("hash", "bloom_filter", "task_storage")))
    return result
