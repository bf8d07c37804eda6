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

from mapbench.errors import BadInput, EnvironmentProblem
from mapbench.measure import children

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


# How long a probe boot may take: a KVM guest answers in seconds, qemu's emulation (TCG) in about
# 30 s. Nested under some hypervisors a KVM guest never answers and never says why (a bzImage
# hangs after 'Probing EDD'; PVH stops on 'KVM internal error'), so the probe gives up then.
PROBE_TIMEOUT_KVM_S = 30
PROBE_TIMEOUT_TCG_S = 120


def vng() -> str:
    """virtme-ng's command: on PATH, or beside this Python (a venv not activated)."""
    found = shutil.which("vng") or shutil.which("vng", path=str(Path(sys.executable).parent))
    if found is None:
        raise NoVirtualMachine("vng (virtme-ng) is not installed: pip install virtme-ng")
    return found


def _env() -> dict:
    """vng runs its helpers (virtme-run) by name: they sit beside this Python in a venv."""
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": os.pathsep.join([bindir, os.environ.get("PATH", "")])}


def check_host(probe: Kernel | None = None, emulate: bool = False) -> None:
    """Tools, KVM, and that a guest really boots (a probe boot of `probe`), or a
    NoVirtualMachine naming what failed (exit 3). /dev/kvm can exist and still not run a guest:
    nested under some hypervisors the guest hangs in early boot."""
    vng()
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("busybox", "busybox-static")):
        if shutil.which(tool) is None:
            raise NoVirtualMachine(f"{tool} is not installed: apt-get install {package}")
    if not emulate:
        if not os.path.exists("/dev/kvm"):
            raise NoVirtualMachine("no /dev/kvm: this host cannot run a kernel in a VM at useful speed "
                                   "(nested virtualisation off, or not a KVM host); --emulate runs it under "
                                   "qemu's TCG, for correctness, not figures")
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            raise NoVirtualMachine("/dev/kvm is not readable and writable by this user")
    if probe is not None:
        reason = probe_boot(probe, emulate)
        if reason:
            raise NoVirtualMachine(reason)


def probe_boot(kernel: Kernel, emulate: bool = False, timeout: float | None = None) -> str | None:
    """Boot `kernel` once and run `uname -r`: None when it answered, else what went wrong, with
    the last lines of the guest's console (--verbose puts it on stderr). Whatever the probe
    started is gone when it returns."""
    timeout = timeout or (PROBE_TIMEOUT_TCG_S if emulate else PROBE_TIMEOUT_KVM_S)
    cmd = [vng(), "--run", str(kernel.image), "--user", "root", "--cpus", "1", "--memory", "1G", "--verbose",
           *(["--disable-kvm"] if emulate else []), "--exec", "uname -r"]
    failed = f"a {kernel.release} guest did not boot " + ("under emulation (TCG)" if emulate else "with KVM")
    instead = "" if emulate else "; --emulate boots it under qemu's TCG instead"
    try:
        proc = children.run(cmd, timeout=timeout, env=_env())
    except subprocess.TimeoutExpired as exc:
        return f"{failed}: no answer in {timeout:.0f} s; its console ended: {_tail(exc.stderr) or 'nothing'}{instead}"
    if proc.returncode != 0 or kernel.release not in proc.stdout:
        return f"{failed} (exit {proc.returncode}): {_tail(proc.stderr or proc.stdout) or 'no output'}{instead}"
    return None


def _tail(text: str | None, lines: int = 3) -> str:
    """The last lines a child printed, as one line ('a | b | c'); from qemu's 'KVM internal
    error' on when it printed one (the register dump after it says nothing to a user)."""
    said = [ln.strip("\x00 ") for ln in (text or "").replace("\r", "\n").splitlines()]
    said = [ln for ln in said if ln]
    start = next((i for i, ln in enumerate(said) if ln.startswith("KVM internal error")), len(said) - lines)
    return " | ".join(said[max(start, 0):][:lines])


def guest_command(kernel: Kernel, args: list[str], checkout: Path, out_dir: Path, cpus: int,
                  emulate: bool = False, python: str = sys.executable) -> list[str]:
    """The command that runs `mapbench <args>` under `kernel`: directly for the running kernel,
    else in a vng guest with the checkout as its working directory and out_dir writable (the
    guest compiles its BPF objects into a cache there: its vmlinux.h comes from its own BTF)."""
    inner = [python, "-m", "mapbench.cli", *args]
    if kernel.image is None:
        return inner
    script = (f"cd {shlex.quote(str(checkout))} && MAPBENCH_CACHE={shlex.quote(str(out_dir / 'cache'))} "
              f"{shlex.join(inner)}")
    return [vng(), "--run", str(kernel.image), "--user", "root", "--cpus", str(cpus), "--memory", GUEST_MEMORY,
            *(["--disable-kvm"] if emulate else []), "--rwdir", str(out_dir), "--exec", script]


def with_output(args: list[str], out: Path) -> list[str]:
    """`sweep`/`run` args with their result file set to `out` (where the host collects it)."""
    if not args or args[0] not in ("sweep", "run"):
        raise BadInput(f"matrix runs `sweep` or `run` under each kernel, not {args[0] if args else 'nothing'!r}")
    if "--out" in args:
        raise BadInput("matrix chooses each kernel's --out itself: leave it out")
    return [*args, "--out", str(out)]


def run(kernels: list[Kernel], args: list[str], checkout: Path, out_dir: Path, cpus: int, emulate: bool = False,
        on_start=lambda kernel, cmd: None) -> dict[str, Path | str]:
    """Each kernel in turn; per kernel name its result file, or the reason it produced none."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done: dict[str, Path | str] = {}
    for kernel in kernels:
        out = out_dir / f"{kernel.release}.parquet"
        cmd = guest_command(kernel, with_output(args, out), checkout, out_dir, cpus, emulate)
        on_start(kernel, cmd)
        proc = children.run(cmd, env=_env())
        if proc.returncode == 0 and out.exists():
            done[kernel.name] = out
        else:
            done[kernel.name] = f"exit {proc.returncode}: {_tail(proc.stderr or proc.stdout) or 'no output'}"
    return done
