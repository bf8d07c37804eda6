"""Compile the BPF sources: clang -target bpf -g -O2 -mcpu=<isa> -DMB_STORAGE=<strategy>.

vmlinux.h is generated once per kernel from /sys/kernel/btf/vmlinux with bpftool. Objects
are cached under $MAPBENCH_CACHE (default ~/.cache/mapbench) by a hash of everything that
goes into them: source, shared header, vmlinux.h, flags and the clang version.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mapbench.errors import BadInput, EnvironmentProblem
from mapbench.measure import children

ISAS = ("v1", "v2", "v3")
DEFAULT_ISA = "v3"
# The kernel's BTF; MAPBENCH_KERNEL_BTF points elsewhere (another kernel's BTF, or tests).
KERNEL_BTF = Path(os.environ.get("MAPBENCH_KERNEL_BTF", "/sys/kernel/btf/vmlinux"))


class BuildFailed(EnvironmentProblem):
    """clang or bpftool failed; `log` holds the tool's own message."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


@dataclass(frozen=True)
class BuiltObject:
    path: Path
    sha256: str
    isa: str
    storage: str
    # clang's missed-optimization remarks (-Rpass-missed=.*) while compiling it: (pass, count)
    missed_remarks: tuple[tuple[str, int], ...] = ()

    @property
    def missed_remarks_total(self) -> int:
        return sum(n for _, n in self.missed_remarks)

    def missed_remarks_text(self) -> str:
        """'gvn 215, licm 17, ...': by pass, the most first."""
        return ", ".join(f"{name} {n}" for name, n in self.missed_remarks)


def cache_dir() -> Path:
    path = Path(os.environ.get("MAPBENCH_CACHE", Path.home() / ".cache" / "mapbench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def source_dir() -> Path:
    return Path(str(importlib.resources.files("mapbench.bpf")))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


FALLBACKS = {"clang": ("clang-14",)}  # Debian 12's versioned name, when no plain clang is on PATH


def tool(name: str) -> str:
    for candidate in (os.environ.get(f"MAPBENCH_{name.upper()}"), name, *FALLBACKS.get(name, ())):
        if candidate and shutil.which(candidate):
            return candidate
    raise EnvironmentProblem(
        f"{name} not found on PATH; install it (Debian: apt-get install {name}) or run via nox"
    )


@functools.cache
def clang_version() -> str:
    out = children.run([tool("clang"), "--version"])
    return out.stdout.splitlines()[0].strip() if out.stdout else "unknown"


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@functools.cache
def vmlinux_header() -> Path:
    """vmlinux.h of the running kernel, generated from its BTF (cached per BTF content)."""
    if not KERNEL_BTF.exists():
        raise EnvironmentProblem(
            f"no kernel BTF at {KERNEL_BTF}: mapbench needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
        )
    btf_hash = _sha256(KERNEL_BTF.read_bytes())[:16]
    header = cache_dir() / f"vmlinux-{btf_hash}" / "vmlinux.h"
    if not header.exists():
        header.parent.mkdir(parents=True, exist_ok=True)
        cmd = [tool("bpftool"), "btf", "dump", "file", str(KERNEL_BTF), "format", "c"]
        out = children.run(cmd, text=False)
        if out.returncode != 0:
            raise BuildFailed("bpftool could not dump the kernel BTF", out.stderr.decode())
        _atomic_write(header, out.stdout)
    return header


def check_isa(isa: str) -> str:
    if isa not in ISAS:
        raise BadInput(f"--isa {isa!r} is not a BPF ISA: use one of {', '.join(ISAS)}")
    return isa


# clang prints one remark a line on stderr, ending with the pass that missed: '... not eliminated
# [-Rpass-missed=gvn]'. They change no code, so they stay out of the object's cache key.
REMARKS_FLAG = "-Rpass-missed=.*"
_REMARK = re.compile(r"\[-Rpass-missed=([\w.-]+)\]")


def count_remarks(stderr: str) -> tuple[tuple[str, int], ...]:
    """clang's missed-optimization remarks by pass, the most first (then by name)."""
    counts: dict[str, int] = {}
    for name in _REMARK.findall(stderr):
        counts[name] = counts.get(name, 0) + 1
    return tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def compile_object(source: str, storage: str, isa: str = DEFAULT_ISA, defines: tuple[str, ...] = ()) -> BuiltObject:
    """Compile bpf/<source> with -DMB_STORAGE=<storage> and -D<each of defines> for BPF ISA <isa>
    (cached), recording clang's missed-optimization remarks beside the object."""
    check_isa(isa)
    src_dir = source_dir()
    src = src_dir / source
    header = vmlinux_header()
    # MAPBENCH_CFLAGS: extra clang flags, e.g. -DMB_SLOWDOWN=20 to inject a known regression
    extra = shlex.split(os.environ.get("MAPBENCH_CFLAGS", ""))
    flags = ["-target", "bpf", "-g", "-O2", f"-mcpu={isa}", f"-DMB_STORAGE={storage}",
             *(f"-D{d}" for d in defines), *extra]
    key = _sha256(
        b"\0".join(
            [
                src.read_bytes(),
                *(h.read_bytes() for h in sorted(src_dir.glob("*.h"))),  # mapbench.h and what sources share
                header.parent.name.encode(),
                " ".join(flags).encode(),
                clang_version().encode(),
            ]
        )
    )[:16]
    out = cache_dir() / "objects" / f"{src.name.removesuffix('.bpf.c')}-{storage}-{isa}-{key}.o"
    remarks = out.with_name(out.stem + ".remarks.json")
    if not out.exists() or not remarks.exists():  # objects cached before remarks were kept: once more
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            tmp_obj = Path(tmp) / out.name
            cmd = [tool("clang"), *flags, REMARKS_FLAG, f"-I{header.parent}", f"-I{src_dir}",
                   "-c", str(src), "-o", str(tmp_obj)]
            res = children.run(cmd)
            if res.returncode != 0:
                raise BuildFailed(f"clang failed to compile {src.name} ({storage}, {isa})", res.stderr)
            _atomic_write(remarks, json.dumps(dict(count_remarks(res.stderr))).encode())
            os.replace(tmp_obj, out)
    counted = tuple(sorted(json.loads(remarks.read_text()).items(), key=lambda kv: (-kv[1], kv[0])))
    return BuiltObject(path=out, sha256=_sha256(out.read_bytes()), isa=isa, storage=storage,
                       missed_remarks=counted)
