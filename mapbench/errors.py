"""One exception hierarchy; the CLI turns each kind into a one-line message and an exit code."""


class MapbenchError(Exception):
    """Base of every error mapbench raises on purpose."""

    exit_code = 3


class BadInput(MapbenchError):
    """A value the user gave is out of its bounds; the message names the value and the bound."""

    exit_code = 2


class EnvironmentProblem(MapbenchError):
    """This machine cannot run the request (kernel feature, tool or privilege missing)."""

    exit_code = 3


class Unsupported(EnvironmentProblem):
    """The kernel or libbpf lacks a feature; `errno` holds the kernel's answer when there is one."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


class MissingPrivilege(EnvironmentProblem):
    """Not root (or no CAP_BPF/CAP_PERFMON/CAP_SYS_ADMIN)."""


class KernelRefused(EnvironmentProblem):
    """A BPF syscall failed; `errno` is the kernel's code, `log` the verifier/libbpf output."""

    def __init__(self, message: str, errno: int | None = None, log: str = ""):
        super().__init__(message)
        self.errno = errno
        self.log = log
