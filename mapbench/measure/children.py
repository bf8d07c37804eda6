"""Child processes that leave nothing behind.

`subprocess.run(..., timeout=...)` kills only the process it started: what that process started
in turn (vng's shell, virtme-run, qemu) lives on, orphaned. So every child mapbench starts gets
a session of its own, hence a process group of its own that holds everything it starts (unless
that starts a session itself), and on timeout, error or interrupt the whole group is killed and
the child reaped before the caller goes on.
"""

from __future__ import annotations

import os
import signal
import subprocess

DRAIN_S = 5.0  # after the kill: how long to collect what the group had printed


def popen(cmd: list[str], **kwargs) -> subprocess.Popen:
    """subprocess.Popen, in a session (and process group) of its own: see kill_group."""
    return subprocess.Popen(cmd, start_new_session=True, **kwargs)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child's process group (the child and all it started there), then reap the
    child. Harmless when they have exited already."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone
    proc.wait()


def run(cmd: list[str], timeout: float | None = None, text: bool = True, env: dict | None = None
        ) -> subprocess.CompletedProcess:
    """subprocess.run(cmd, capture_output=True, timeout=timeout), except that the child's
    whole process group is killed on timeout, error or interrupt, and on the way out whatever
    it left running. subprocess.TimeoutExpired carries what the group printed until then."""
    with popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text,
               env=env) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            kill_group(proc)
            try:  # the group is dead, so its pipes end: the rest of its output, decoded
                stdout, stderr = proc.communicate(timeout=DRAIN_S)
            except subprocess.TimeoutExpired:  # something outside the group holds a pipe
                stdout, stderr = (o.decode(errors="replace") if text and isinstance(o, bytes) else o
                                  for o in (exc.stdout, exc.stderr))
            raise subprocess.TimeoutExpired(cmd, timeout, stdout, stderr) from None
        finally:
            kill_group(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
