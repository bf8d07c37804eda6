"""The same mapbench command under several kernels (docs/method.md, "Kernel matrix").

Each kernel other than the running one boots in a virtual machine with virtme-ng (`vng`; qemu
and KVM underneath): the guest sees the host's file system, so it runs this checkout's
mapbench with the host's Python, clang and libbpf, and only the kernel differs. Kernels come
from the distribution's packages (`/boot/vmlinuz-<release>`, with their modules and BTF). The
guest writes its results into a directory made writable for it; the host then moves them into
the dataset, where the kernel is a partition of its own.
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInput, EnvironmentProblem

BOOT = Path("/boot")
GUEST_MEMORY = "4G"


class NoVirtualMachine(EnvironmentProblem):
    """The host cannot boot a kernel in a VM: no KVM, or no virtme-ng."""

    exit_code = 3


@dataclass(frozen=True)
class Kernel:
    name: str  # as asked: "6.1", "6.12", "running"
    release: str  # what `uname -r` says inside
    image: Path | None  # None: the running kernel, no VM


def installed_images(boot: Path = BOOT) -> dict[str, Path]:
    """Kernel images the distribution installed: release -> /boot/vmlinuz-<release>."""
    return {p.name.removeprefix("vmlinuz-"): p for p in sorted(boot.glob("vmlinuz-*"))}


def resolve(name: str, boot: Path = BOOT) -> Kernel:
    """'running', an exact release, or a version prefix ('6.1' matches 6.1.0-28-amd64, not 6.12)."""
    if name == "running":
        return Kernel(name, platform.release(), None)
    images = installed_images(boot)
    matches = [r for r in images if r == name or r.startswith(name + ".") or r.startswith(name + "-")]
    if not matches:
        raise BadInput(f"--kernel {name}: no installed kernel image matches (have: "
                       f"{', '.join(images) or 'none'} in {boot}); install the distribution's, e.g. "
                       f"apt-get install linux-image-{name}*-amd64")
    release = sorted(matches)[-1]
    return Kernel(name, release, images[release])


def check_host() -> None:
    """KVM and vng, or a NoVirtualMachine naming what is missing (exit 3)."""
    if not os.path.exists("/dev/kvm"):
        raise NoVirtualMachine("no /dev/kvm: this host cannot run a kernel in a VM at useful speed "
                               "(nested virtualisation off, or not a KVM host)")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise NoVirtualMachine("/dev/kvm is not readable and writable by this user")
    if shutil.which("vng") is None:
        raise NoVirtualMachine("vng (virtme-ng) is not installed: pip install virtme-ng")


def guest_command(kernel: Kernel, args: list[str], checkout: Path, out_dir: Path, cpus: int,
                  python: str = sys.executable) -> list[str]:
    """The command that runs `mapbench <args>` under `kernel`: directly for the running kernel,
    else in a vng guest with the checkout as its working directory and out_dir writable."""
    inner = [python, "-m", "mapbench.cli", *args]
    if kernel.image is None:
        return inner
    script = f"cd {shlex.quote(str(checkout))} && {shlex.join(inner)}"
    return ["vng", "--run", str(kernel.image), "--user", "root", "--cpus", str(cpus), "--memory", GUEST_MEMORY,
            "--rwdir", str(out_dir), "--exec", script]


def with_output(args: list[str], out: Path) -> list[str]:
    """`sweep`/`run` args with their result file set to `out` (where the host collects it)."""
    if not args or args[0] not in ("sweep", "run"):
        raise BadInput(f"matrix runs `sweep` or `run` under each kernel, not {args[0] if args else 'nothing'!r}")
    if "--out" in args:
        raise BadInput("matrix chooses each kernel's --out itself: leave it out")
    return [*args, "--out", str(out)]


def run(kernels: list[Kernel], args: list[str], checkout: Path, out_dir: Path, cpus: int,
        on_start=lambda kernel, cmd: None) -> dict[str, Path | str]:
    """Each kernel in turn; per kernel name its result file, or the reason it produced none."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done: dict[str, Path | str] = {}
    for kernel in kernels:
        out = out_dir / f"{kernel.release}.parquet"
        cmd = guest_command(kernel, with_output(args, out), checkout, out_dir, cpus)
        on_start(kernel, cmd)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0 and out.exists():
            done[kernel.name] = out
        else:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            done[kernel.name] = f"exit {proc.returncode}: {' | '.join(tail) or 'no output'}"
    return done
