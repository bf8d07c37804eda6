"""The kernel matrix (issue 13): kernels resolved from installed images, the guest command
assembled, every failure a one-line reason with its exit code, and one real run."""

import os
import platform
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import run_cli
from mapbench.errors import BadInput
from mapbench.measure import children, matrix

CHECKOUT = Path(__file__).resolve().parents[2]
TINY = """[measure]
samples = 1
instances = 1
warmup = 0
sample_ms = 1

[[grid]]
engine = "kernel"
strategies = ["hash", "task_storage"]
sizes = [1e3]
"""


@pytest.fixture
def boot(tmp_path):
    for release in ("6.1.0-28-amd64", "6.1.0-56-amd64", "6.12.12-amd64"):
        (tmp_path / f"vmlinuz-{release}").write_bytes(b"")
    return tmp_path


def test_kernels_resolve_by_version_prefix_to_the_newest_image(boot):
    assert matrix.resolve("6.1", boot).release == "6.1.0-56-amd64"  # not 6.12
    assert matrix.resolve("6.12", boot).image == boot / "vmlinuz-6.12.12-amd64"
    assert matrix.resolve("running", boot) == matrix.Kernel("running", platform.release(), None)
    with pytest.raises(BadInput, match=r"--kernel 5\.15: no installed kernel image matches \(have: 6\.1\.0-28"):
        matrix.resolve("5.15", boot)


def test_the_guest_command_runs_this_checkout_with_its_own_cache_and_output(boot, tmp_path):
    kernel = matrix.resolve("6.1", boot)
    args = matrix.with_output(["sweep", "grid.toml"], tmp_path / "out" / "k.parquet")
    assert args == ["sweep", "grid.toml", "--out", str(tmp_path / "out" / "k.parquet")]
    cmd = matrix.guest_command(kernel, args, CHECKOUT, tmp_path / "out", 2, python="/py")
    assert cmd[0].endswith("vng") and cmd[cmd.index("--run") + 1] == str(boot / "vmlinuz-6.1.0-56-amd64")
    assert cmd[cmd.index("--rwdir") + 1] == str(tmp_path / "out") and "--disable-kvm" not in cmd
    script = cmd[cmd.index("--exec") + 1]
    assert script.startswith(f"cd {CHECKOUT} && MAPBENCH_CACHE={tmp_path / 'out' / 'cache'} /py -m mapbench.cli "
                             "sweep grid.toml --out ")
    assert "--disable-kvm" in matrix.guest_command(kernel, args, CHECKOUT, tmp_path, 2, emulate=True)
    # the running kernel needs no VM
    assert matrix.guest_command(matrix.resolve("running"), args, CHECKOUT, tmp_path, 2, python="/py") == [
        "/py", "-m", "mapbench.cli", *args]
    with pytest.raises(BadInput, match="matrix runs `sweep` or `run`"):
        matrix.with_output(["diff", "a", "b"], tmp_path / "x.parquet")
    with pytest.raises(BadInput, match="matrix chooses each kernel's --out itself"):
        matrix.with_output(["run", "--out", "x.parquet"], tmp_path / "x.parquet")


def test_without_kvm_the_command_exits_3_with_the_reason(monkeypatch, boot):
    real_exists = os.path.exists
    monkeypatch.setattr(matrix.os.path, "exists", lambda p: False if p == "/dev/kvm" else real_exists(p))
    monkeypatch.setattr(matrix, "vng", lambda: "/usr/bin/vng")
    monkeypatch.setattr(matrix.shutil, "which", lambda tool, path=None: f"/usr/bin/{tool}")
    with pytest.raises(matrix.NoVirtualMachine, match="no /dev/kvm") as exc:
        matrix.check_host(matrix.resolve("6.1", boot))
    assert exc.value.exit_code == 3


def test_unknown_kernel_and_missing_args_are_one_line_errors():
    res = run_cli("matrix", "--kernel", "4.4", "--", "sweep", "x.toml")
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "--kernel 4.4: no installed kernel image" in res.stderr
    res = run_cli("matrix", "--kernel", "running", "--", "show", "x")
    assert res.returncode == 2 and "matrix runs `sweep` or `run` under each kernel, not 'show'" in res.stderr


def _alive(pid: int) -> bool:
    """Running or runnable: neither gone nor a zombie waiting for init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _marked(marker: str) -> list[str]:
    """Live processes whose environment holds `marker`: what a call made under it started."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes() and _alive(int(proc.name)):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue  # gone meanwhile
    return found


def test_a_child_that_times_out_takes_its_grandchildren_with_it():
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as exc:
        children.run(["sh", "-c", "sleep 100 & echo $!; echo started >&2; sleep 100"], timeout=0.5)
    assert time.monotonic() - started < 3
    assert exc.value.stderr == "started\n"  # what it printed until then, decoded
    grandchild = int(exc.value.stdout)
    assert not _alive(grandchild)


def test_a_child_interrupted_takes_its_grandchildren_with_it(monkeypatch):
    def interrupted(proc, timeout=None):
        raise KeyboardInterrupt  # as Ctrl-C, or SIGTERM through cli._terminated, arrives while it waits

    marker = f"MAPBENCH_TEST_{uuid.uuid4().hex}"
    monkeypatch.setattr(subprocess.Popen, "communicate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        children.run(["sh", "-c", "sleep 100 & sleep 100"], env={**os.environ, marker: "1"})
    assert _marked(marker) == []


@pytest.mark.kernel
@pytest.mark.skipif(shutil.which("busybox") is None or shutil.which("qemu-system-x86_64") is None
                    or not matrix.installed_images(),
                    reason="no busybox, qemu or kernel image: scripts/install-system-deps.sh installs them")
def test_a_probe_that_times_out_answers_in_time_and_leaves_no_vm(monkeypatch):
    # Under emulation a guest takes tens of seconds to boot: a few seconds' timeout finds qemu
    # running. What the probe started carries the marker in its environment.
    marker = f"MAPBENCH_TEST_{uuid.uuid4().hex}"
    monkeypatch.setenv(marker, "1")
    kernel = matrix.resolve(sorted(matrix.installed_images())[0])
    started = time.monotonic()
    reason = matrix.probe_boot(kernel, emulate=True, timeout=4)
    assert time.monotonic() - started < 4 + 3
    assert reason.startswith(f"a {kernel.release} guest did not boot under emulation (TCG): no answer in 4 s")
    assert _marked(marker) == []


def test_a_failed_boot_is_told_by_the_last_console_lines_or_kvms_own_error():
    assert matrix._tail("a\n\nb\r\nc\nProbing EDD (edd=off to disable)... ok\n") == (
        "b | c | Probing EDD (edd=off to disable)... ok")
    dump = "virtme: waiting\nKVM internal error. Suberror: 1\nemulation failure\nRAX=0 RBX=0\nRCX=0 RDX=0\n"
    assert matrix._tail(dump) == "KVM internal error. Suberror: 1 | emulation failure | RAX=0 RBX=0"
    assert matrix._tail(None) == ""


def _guest_reason() -> str | None:
    """Why a real guest cannot run here, or None: tools first, then a probe boot with KVM."""
    images = matrix.installed_images()
    if not images:
        return "no distribution kernel image in /boot (apt-get install linux-image-amd64)"
    try:
        matrix.check_host(matrix.resolve(sorted(images)[0]))
    except matrix.NoVirtualMachine as exc:
        return str(exc)
    return None


@pytest.mark.kernel
def test_a_real_matrix_run_gathers_each_kernels_results(tmp_path):
    reason = _guest_reason()
    if reason:
        pytest.skip(f"no KVM guest here: {reason}")
    _matrix_run(tmp_path, [])


@pytest.mark.kernel
@pytest.mark.skipif(shutil.which("busybox") is None or not matrix.installed_images(),
                    reason="no busybox or no kernel image: scripts/install-system-deps.sh installs them")
def test_an_emulated_matrix_run_loads_and_runs_the_programs_on_another_kernel(tmp_path):
    _matrix_run(tmp_path, ["--emulate"])


def _matrix_run(tmp_path, flags):
    grid = tmp_path / "grid.toml"
    grid.write_text(TINY)
    other = sorted(matrix.installed_images())[0]
    res = run_cli("matrix", "--kernel", "running", "--kernel", other, *flags, "--dataset", str(tmp_path / "results"),
                  "--reports", str(tmp_path / "reports"), "--", "sweep", str(grid))
    assert res.returncode == 0, res.stderr
    kernels = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert kernels == sorted({f"kernel={platform.release()}", f"kernel={other}"})
    assert "The environment differs on purpose (" in res.stdout and "kernel_release: " in res.stdout
    assert list((tmp_path / "reports").glob("matrix-*-kernels.png"))
