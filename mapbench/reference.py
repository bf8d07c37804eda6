"""The syscall engine next to a plain C loop over the same libbpf calls (ref_syscalls.c).

Both run pinned to the same CPU, alternating round by round, with the same number of passes
per sample, so that the comparison says how far the engine's figures are from what C gets."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import syscall_engine
from .build import BuildFailed, cache_dir
from .environment import load_avg_1m
from .kernel_engine import MeasureOptions, pinned_to, require_root
from .syscall_engine import SyscallMap, SyscallSpec, calibrate

SOURCE = Path(__file__).resolve().parent / "ref_syscalls.c"
REFERENCE_MAPS = ("hash", "lru_hash", "percpu_hash", "array")


def build_reference() -> Path:
    source = SOURCE.read_bytes()
    out = cache_dir() / "ref" / f"ref_syscalls-{hashlib.sha256(source).hexdigest()[:16]}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            exe = Path(tmp) / out.name
            res = subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(SOURCE), "-lbpf"],
                                 capture_output=True, text=True)
            if res.returncode != 0:
                raise BuildFailed("gcc failed to build the C reference", res.stderr)
            os.replace(exe, out)
    return out


def run_reference(exe: Path, spec: SyscallSpec, samples: int, reps: int) -> list[float]:
    args = [str(exe), spec.map_type, spec.driver, spec.op, str(spec.map_size),
            str(spec.batch_size or 1), str(samples), str(reps)]
    res = subprocess.run(args, capture_output=True, text=True)
    if res.returncode != 0:
        raise BuildFailed(f"the C reference failed on {spec}", res.stderr)
    return [float(line) for line in res.stdout.split()]


def compare(spec: SyscallSpec, rounds: int = 3, samples: int = 5, target_ms: float = 20.0,
            cpu: int | None = None, on_round: Callable[[], None] = lambda: None) -> list[dict]:
    """Rows of both, in family 'reference': engine 'syscall' (mapbench) and 'c_reference'."""
    require_root()
    if spec.map_type not in REFERENCE_MAPS:
        raise syscall_engine.BadInput(f"the C reference covers {', '.join(REFERENCE_MAPS)}, "
                                      f"not {spec.map_type}")
    exe = build_reference()
    rows: list[dict] = []
    with pinned_to(cpu) as pinned:
        with SyscallMap(spec) as m:
            reps = calibrate(m, target_ms * 1e6)
        opts = MeasureOptions(samples=samples, instances=1, warmup=1, target_ms=target_ms, cpu=None)
        for r in range(rounds):
            for row in syscall_engine.measure(spec, opts, reps=reps):
                rows.append({**row, "family": "reference", "instance": r})
            for i, ns in enumerate(run_reference(exe, spec, samples, reps)):
                rows.append({**spec.config_fields(), "engine": "c_reference", "family": "reference",
                             "instance": r,
                             "sample": i + 1, "warmup": False, "ns_per_op": ns, "gross_ns_per_op": ns,
                             "cpu": pinned, "load_avg_1m": load_avg_1m(), "status": "ok",
                             "message": f"ref_syscalls.c, {reps} passes per sample"})
            on_round()
    return rows
