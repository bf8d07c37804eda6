"""Which machine a row was measured on (docs/method.md, "Machines").

Every VM of this project's kind calls itself `vm`, so the hostname cannot tell an AMD VM from
an Intel one, and ratios do not transfer between them. A machine is identified by a
fingerprint of what the figures depend on: the CPU (vendor, family, model, stepping, model
name, microcode), its L2 and L3 sizes, the memory, the CPU count and the hostname. Its id,

    <vendor>-<family>-<model>-<stepping>-<8 hex digits of a SHA-256 of the rest>

(amd-26-2-1-0c1d2e3f), names the dataset partition (`machine=<id>`), and diff refuses to compare
two ids unless told. Rows from before fingerprints (schema 1) recorded only the hostname, the
CPU model name and the CPU count: they read as `legacy-<model>-<n>cpu-<host>`, and their name
says that the rest is unknown.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

# The fingerprint's columns (results.FIELDS); the id hashes all but its first four.
FINGERPRINT = ("cpu_vendor", "cpu_family", "cpu_model_number", "cpu_stepping", "cpu_model", "microcode",
               "l2_cache_bytes", "l3_cache_bytes", "memory_gib", "nr_cpus", "host")
VENDORS = {"AuthenticAMD": "amd", "GenuineIntel": "intel", "HygonGenuine": "hygon", "CentaurHauls": "centaur"}
LEGACY = "legacy-"
UNKNOWN_REST = "family, caches, memory and microcode unknown: recorded before machine fingerprints"


def _read(root: Path, path: str) -> str:
    try:
        return (root / path.lstrip("/")).read_text().strip()
    except OSError:
        return ""


def cpuinfo(root: Path = Path("/")) -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (x86 names; arm64's where x86's are absent)."""
    fields: dict[str, str] = {}
    for line in _read(root, "/proc/cpuinfo").split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _size(text: str) -> int | None:
    """A sysfs cache size ('1024K', '32M') in bytes."""
    m = re.fullmatch(r"(\d+)\s*([KMG]?)", text)
    return int(m.group(1)) * 1024 ** " KMG".index(m.group(2) or " ") if m else None


def _caches(root: Path) -> dict[int, int]:
    """Cache level -> size of CPU 0's unified (or data) caches."""
    out = {}
    for index in sorted((root / "sys/devices/system/cpu/cpu0/cache").glob("index*")):
        if _read(index, "type") in ("Unified", "Data"):
            level, size = _read(index, "level"), _size(_read(index, "size"))
            if level.isdigit() and size:
                out.setdefault(int(level), size)
    return out


def _chosen(text: str) -> str:
    """The [bracketed] choice of a sysfs mode file ('always [madvise] never' -> 'madvise')."""
    m = re.search(r"\[(\w+)\]", text)
    return m.group(1) if m else (text or "unknown")


def vulnerabilities(root: Path = Path("/")) -> str:
    """Every entry of /sys/devices/system/cpu/vulnerabilities: 'name: state | ...'."""
    folder = root / "sys/devices/system/cpu/vulnerabilities"
    entries = sorted(folder.glob("*")) if folder.is_dir() else []
    return " | ".join(f"{p.name}: {_read(p, '')}" for p in entries) or "unknown"  # states hold ";"


def short_model(cpu_model: str | None) -> str:
    """'Intel(R) Xeon(R) Processor' -> 'Intel Xeon', 'AMD EPYC 7B13 64-Core Processor' -> 'AMD EPYC 7B13'."""
    text = re.sub(r"\((R|TM|tm|r)\)|\b(Processor|CPU)\b|\d+-Core|@.*", " ", cpu_model or "")
    return " ".join(text.split()) or "unknown CPU"


def _slug(text) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def _fmt_size(n: int | None) -> str:
    if not n:
        return "unknown"
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n / 2**10:g} KiB"


def facts(host: str, cpu_model: str, nr_cpus: int, root: Path = Path("/")) -> dict:
    """This machine's fingerprint columns, its id and name, its CPU vulnerabilities and THP
    mode (`root`: where /proc and /sys are, for tests)."""
    info = cpuinfo(root)
    caches = _caches(root)
    mem_kib = re.search(r"MemTotal:\s+(\d+)", _read(root, "/proc/meminfo"))
    memory = int(mem_kib.group(1)) * 1024 if mem_kib else None
    vendor_id = info.get("vendor_id") or (f"arm-{info['CPU implementer']}" if "CPU implementer" in info else "")
    out = {
        "cpu_vendor": VENDORS.get(vendor_id, _slug(vendor_id) or "unknown"),
        "cpu_family": info.get("cpu family") or info.get("CPU architecture") or "unknown",
        "cpu_model_number": info.get("model") or info.get("CPU part") or "unknown",
        "cpu_stepping": info.get("stepping") or info.get("CPU revision") or "unknown",
        "microcode": info.get("microcode") or _read(root, "/sys/devices/system/cpu/cpu0/microcode/version")
        or "unknown",
        "l2_cache_bytes": caches.get(2),
        "l3_cache_bytes": caches.get(3),
        "memory_total_bytes": memory,
        "cpu_vulnerabilities": vulnerabilities(root),
        "thp_enabled": _chosen(_read(root, "/sys/kernel/mm/transparent_hugepage/enabled")),
    }
    # whole GiB: MemTotal moves by a few MiB with the kernel's own reservations
    fingerprint = {**out, "cpu_model": cpu_model, "nr_cpus": nr_cpus, "host": host,
                   "memory_gib": memory // 2**30 if memory else None}
    rest = "|".join(str(fingerprint[k]) for k in FINGERPRINT[4:])
    out["machine"] = "-".join(_slug(fingerprint[k]) or "unknown" for k in FINGERPRINT[:4]) + "-" + \
        hashlib.sha256(rest.encode()).hexdigest()[:8]
    virtual = "hypervisor" in info.get("flags", "").split()
    out["machine_name"] = (f"{short_model(cpu_model)}, {nr_cpus} {'vCPUs' if virtual else 'CPUs'}, "
                           f"L2 {_fmt_size(caches.get(2))}, L3 {_fmt_size(caches.get(3))}, "
                           f"{fingerprint['memory_gib'] if memory else 'unknown'} GiB")
    return out


def legacy_id(host, cpu_model, nr_cpus) -> str:
    """The id of a row from before fingerprints, from the three facts it recorded."""
    parts = [_slug(short_model(cpu_model)) if cpu_model else "unknown", f"{int(nr_cpus)}cpu" if nr_cpus else "",
             _slug(host) if host else ""]
    return LEGACY + "-".join(p for p in parts if p)


def legacy_name(host, cpu_model, nr_cpus) -> str:
    cpus = f", {nr_cpus} CPUs" if nr_cpus else ""
    return f"{short_model(cpu_model)}{cpus}, host {host or 'unknown'} ({UNKNOWN_REST})"


# What a row without a fingerprint (schema 1) recorded of its machine: its legacy id's inputs.
LEGACY_MACHINE_KEYS = ("host", "cpu_model", "nr_cpus")


def is_legacy(machine_id: str) -> bool:
    return str(machine_id).startswith(LEGACY)


def legacy_ids(df) -> set[str]:
    """The legacy ids of a frame's rows, fingerprinted or not: what rows from before fingerprints
    can be matched on."""
    import pandas as pd  # the caller's frame is one: pandas is loaded

    facts = df[list(LEGACY_MACHINE_KEYS)].drop_duplicates().itertuples(index=False)
    return {legacy_id(*(None if pd.isna(v) else v.item() if hasattr(v, "item") else v for v in row))
            for row in facts}


def described(df) -> str:
    """'AMD EPYC, 2 vCPUs, ... [amd-26-2-1-9e0d687b]' for each machine of a frame's rows."""
    pairs = df[["machine", "machine_name"]].drop_duplicates().itertuples(index=False)
    return "; ".join(f"{name} [{machine_id}]" for machine_id, name in sorted(pairs, key=str))
