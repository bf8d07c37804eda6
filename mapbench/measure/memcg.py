"""A memory cgroup of mapbench's own, for what a map really takes (docs/method.md, "Churn").

A BPF map's memory is charged to the memory cgroup of the task that created it, for its whole
life, whoever later adds elements (the map keeps that cgroup's objcg). So the loader enters a
fresh cgroup only while it creates one side's maps and leaves it at once: the cgroup's usage is
then the map's memory and nothing of Python's. Cgroup v2 (memory.current, memory.peak) where
the memory controller is there; else cgroup v1 (memory.usage_in_bytes,
memory.max_usage_in_bytes), as on hosts that still mount it; else nothing, and the rows say so.
A cgroup is removed when its `with` ends, also on an exception or Ctrl-C; after a SIGKILL,
when nothing in the process runs, by a watcher process the run started (`_watch`); and should
that have been killed too, by the next run (the names carry the pid).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mapbench.measure import children

ROOT = Path("/sys/fs/cgroup")
PREFIX = "mapbench-"


@dataclass(frozen=True)
class Flavour:
    name: str  # what the rows say: "cgroup v2" or "cgroup v1"
    parent: Path  # where mapbench makes its cgroups: beside the process's own
    current: str  # file of the usage now
    peak: str  # file of the highest usage since creation


def _own_path(controller: str | None) -> str | None:
    """The process's cgroup path in the hierarchy of `controller` (None: the v2 one)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (controller is None and controllers == "") or (controller and controller in controllers.split(",")):
            return path
    return None


def _writable(parent: Path) -> bool:
    return parent.is_dir() and os.access(parent, os.W_OK)


def _memory_for_children(parent: Path) -> bool:
    """v2: children get the memory controller only if the parent hands it down; a non-root
    cgroup that holds processes may not (the kernel's "no internal processes" rule)."""
    control = parent / "cgroup.subtree_control"
    if "memory" in control.read_text().split():
        return True
    try:
        control.write_text("+memory")
    except OSError:
        return False
    return True


@functools.cache  # the host's cgroup set-up does not change under a run
def flavour() -> Flavour | None:
    """Where memory can be measured here, or None."""
    v2 = _own_path(None)
    for mount in (ROOT, ROOT / "unified"):
        controllers = mount / "cgroup.controllers"
        if v2 is not None and controllers.exists() and "memory" in controllers.read_text().split():
            parent = mount / v2.lstrip("/")
            if _writable(parent) and _memory_for_children(parent):
                return Flavour("cgroup v2", parent, "memory.current", "memory.peak")
    v1 = _own_path("memory")
    if v1 is not None and (ROOT / "memory").is_dir():
        parent = ROOT / "memory" / v1.lstrip("/")
        if _writable(parent):
            return Flavour("cgroup v1", parent, "memory.usage_in_bytes", "memory.max_usage_in_bytes")
    return None


def why_not() -> str:
    return ("no writable memory cgroup (neither the v2 memory controller nor v1 memory is mounted "
            "where this process may create one): memory is fdinfo's figure only")


def remove_stale(parent: Path) -> None:
    """Cgroups of mapbench runs that died without removing theirs (their pid is gone)."""
    for d in parent.glob(PREFIX + "*"):
        pid = d.name[len(PREFIX):].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            with contextlib.suppress(OSError):
                d.rmdir()


def _remove(path: Path, tries: int = 100, between=lambda: None) -> None:
    """rmdir, retried briefly while the cgroup still holds a task (EBUSY)."""
    for _ in range(tries):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            between()
            time.sleep(0.01)
    path.rmdir()


_watchers: dict[Path, subprocess.Popen] = {}


def _watch(parent: Path) -> None:
    """Once per process and parent: start a watcher that removes this process's cgroups there
    once the process has ended, however it ended. It reads a pipe whose write end only this
    process holds (Popen closes it in every other child), so even a SIGKILL ends its wait. It
    has a session of its own, so that a Ctrl-C or a signal to the run's process group leaves
    it to do its work; at a normal exit the run waits for it."""
    if parent in _watchers:
        return
    _watchers[parent] = children.popen([sys.executable, "-m", __name__, str(parent), str(os.getpid())],
                                       stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(_unwatch, parent)


def _unwatch(parent: Path) -> None:
    proc = _watchers.pop(parent)
    proc.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _watcher(parent: Path, pid: int) -> None:
    """The watcher's body: wait for the run to end (its end of the pipe closes), then remove
    what it left under parent."""
    sys.stdin.buffer.read()
    for path in parent.glob(f"{PREFIX}{pid}-*"):
        with contextlib.suppress(OSError):
            _remove(path, tries=500)  # a killed run leaves its cgroup as it finishes exiting


class MemoryCgroup:
    """One cgroup; `with cg.charging():` runs its block inside it (map creation), `usage()`
    reads (current, peak) bytes. Close it, or use `with`."""

    def __init__(self, kind: Flavour):
        self.kind = kind
        remove_stale(kind.parent)
        _watch(kind.parent)
        self.path = kind.parent / f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path.mkdir()

    @contextlib.contextmanager
    def charging(self) -> Iterator[None]:
        """Run the block with the calling thread in this cgroup (v1 `tasks`/v2 `cgroup.threads`
        would need threaded mode; the whole process moves: mapbench loads from one thread)."""
        try:
            (self.path / "cgroup.procs").write_text(str(os.getpid()))
            yield
        finally:
            self._go_home()

    def _go_home(self) -> None:
        (self.kind.parent / "cgroup.procs").write_text(str(os.getpid()))

    def usage(self) -> tuple[int, int | None]:
        read = lambda name: int((self.path / name).read_text())  # noqa: E731
        peak = self.path / self.kind.peak
        return read(self.kind.current), read(self.kind.peak) if peak.exists() else None

    def close(self) -> None:
        """Remove the cgroup. The maps charged to it may outlive it by an RCU grace period:
        a cgroup with charges goes offline and the kernel frees it when they are gone. Still
        inside (an interrupt landed mid-move): go home between tries."""
        _remove(self.path, between=self._go_home)

    def __enter__(self) -> MemoryCgroup:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    _watcher(Path(sys.argv[1]), int(sys.argv[2]))
