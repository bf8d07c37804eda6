"""The syscall engine head to head with a plain C loop over the same libbpf calls
(ref_syscalls.c beside this module; docs/method.md, "C reference").

The C program runs as a co-process on the same CPU: it creates and fills its own map, then
runs one sample for every line it is sent. The engine alternates its own samples with the C
program's, in rotating order, with the same passes per sample, so the ratio mapbench / C says
how far the engine's native loops are from plain C.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mapbench.errors import BadInput
from mapbench.measure import children
from mapbench.measure.build import BuildFailed, cache_dir
from mapbench.measure.engine import Axis, Engine, Host, MeasureOptions, NotMeasured, Spec
from mapbench.measure.engines import syscall
from mapbench.measure.values import parse_choice

NAME = "reference"
DESCRIPTION = "the syscall engine's loops head to head with a plain C loop (ref_syscalls.c)"
SOURCE = Path(__file__).resolve().parent / "ref_syscalls.c"
REFERENCE_MAPS = ("hash", "lru_hash", "percpu_hash", "array", "array_of_maps", "hash_of_maps")  # ref_syscalls.c's
IMPLEMENTATIONS = ("c", "mapbench")  # the C loop first: ratios read mapbench / C
# ref_syscalls.c's maps have 4-byte keys and 8-byte values, and are full: the syscall engine's
# shape axes are not the reference's, so --key-size, --value-size and --fill are refused.
SHAPE_AXES = ("key_sizes", "value_sizes", "fills")

AXES = (
    Axis("implementations", "--implementation", "implementation",
         lambda t: parse_choice(t, "--implementation", IMPLEMENTATIONS), default=IMPLEMENTATIONS),
    *(a if a.key != "maps" else Axis("maps", "--map", "map_type",
                                     lambda t: parse_choice(t, "--map", REFERENCE_MAPS), default=("hash",))
      for a in syscall.AXES if a.key not in SHAPE_AXES),
)
SIDES = ("implementations",)
DEFAULTS = MeasureOptions(samples=5, instances=3, warmup=1, target_ms=20.0)


@dataclass(frozen=True)
class ReferenceSpec(Spec):
    implementation: str
    syscall: syscall.SyscallSpec

    def used_fields(self) -> set[str]:
        return {"implementation"} | self.syscall.used_fields()

    def config_fields(self) -> dict:
        return {**self.syscall.config_fields(), "engine": NAME, "family": NAME,
                "implementation": self.implementation}


def make_spec(fields: dict):
    implementation = fields.pop("implementation", IMPLEMENTATIONS[0])
    spec = syscall.make_spec(fields)
    if not isinstance(spec, syscall.SyscallSpec):
        return spec
    if spec.map_type not in REFERENCE_MAPS:
        raise BadInput(f"--map {spec.map_type!r}: the C reference covers {', '.join(REFERENCE_MAPS)}")
    return ReferenceSpec(implementation, spec)


def build_reference() -> Path:
    source = SOURCE.read_bytes()
    out = cache_dir() / "ref" / f"ref_syscalls-{hashlib.sha256(source).hexdigest()[:16]}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            exe = Path(tmp) / out.name
            res = children.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(SOURCE), "-lbpf"])
            if res.returncode != 0:
                raise BuildFailed("gcc failed to build the C reference", res.stderr)
            os.replace(exe, out)
    return out


class CLoop:
    """ref_syscalls.c as a co-process: one sample per request. Started by start(reps), once
    the passes per sample are known; ends it on close."""

    def __init__(self, spec: ReferenceSpec):
        self.spec = self.reference = spec
        self.proc = None

    def start(self, reps: int) -> None:
        spec = self.spec.syscall
        args = [str(build_reference()), spec.map_type, spec.driver, spec.op, str(spec.map_size),
                str(spec.batch_size or 1), str(reps)]
        self.proc = children.popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            self._expect("ready")
        except BaseException:  # no `with` owns it yet; in a session of its own, Ctrl-C does not reach it
            children.kill_group(self.proc)
            raise

    def _expect(self, what: str) -> str:
        line = self.proc.stdout.readline().strip()
        if not line or (what == "ready" and line != "ready"):
            self.close()
            raise BuildFailed(f"the C reference failed on {self.spec.syscall}", self.proc.stderr.read())
        return line

    def sample(self, reps: int) -> float:
        self.proc.stdin.write("sample\n")
        self.proc.stdin.flush()
        return float(self._expect("sample"))

    def close(self) -> None:
        """Its stdin closed, it ends; killed (with anything it started) if it does not in 30 s."""
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
        finally:  # also on timeout and interrupt
            children.kill_group(self.proc)

    def __enter__(self) -> CLoop:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EngineLoop(syscall.SyscallSide):
    """The syscall engine's side, as the reference runs it."""

    def __init__(self, spec: ReferenceSpec):
        super().__init__(spec.syscall)
        self.reference = spec

    def sample(self, reps: int) -> float:
        elements, elapsed, _ = self.run_once(reps)
        return elapsed / elements


class Reference(Engine):
    name, description, axes, sides = NAME, DESCRIPTION, AXES, SIDES
    note = "reference engine: mapbench's native loops and a plain C loop over the same calls."
    defaults = DEFAULTS

    def make_spec(self, fields: dict, host: Host) -> ReferenceSpec | NotMeasured:
        return make_spec(fields)

    def open(self, spec: ReferenceSpec, control: bool, load: int) -> CLoop | EngineLoop:
        return CLoop(spec) if spec.implementation == "c" else EngineLoop(spec)

    def calibrate(self, loops: list, opts: MeasureOptions, calibration) -> int:
        """The same passes per sample for both loops, found with the syscall engine's on the
        first load; the C loops start with it."""
        if calibration is None:
            with syscall.SyscallSide(loops[0].reference.syscall) as side:
                calibration = syscall.calibrate(side, opts.target_ms * 1e6)
        for loop in loops:
            if isinstance(loop, CLoop):
                loop.start(calibration)
        return calibration

    def sample(self, loop: CLoop | EngineLoop, number: int, reps: int, session) -> tuple[float, int]:
        return loop.sample(reps), reps

    def rows(self, loop, sample: tuple[float, int], control) -> list[dict]:
        ns, reps = sample
        return [{**loop.reference.config_fields(), "ns_per_op": ns, "gross_ns_per_op": ns, "passes": reps}]


ENGINE = Reference()
