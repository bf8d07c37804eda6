"""Engine behaviour that a user could not see in the figures, against the real kernel: what is
timed, what is counted as unsupported, what resume skips."""

import errno
import resource

import pytest

from mapbench.errors import KernelRefused
from mapbench.measure import runner
from mapbench.measure.engine import Host, MeasureOptions
from mapbench.measure.engines import kernel, syscall
from mapbench.results import store as results


def test_resume_keys_on_every_configuration_column(tmp_path):
    # A file holding bloom lookups with 4-byte elements must not make resume skip 16-byte ones.
    grid = tmp_path / "g.toml"
    grid.write_text("[[grid]]\nengine = 'kernel'\nstrategies = ['bloom']\nsizes = [1e3]\n"
                    "bloom_value_sizes = [4, 16]\ncompare = []\n")
    comparisons = runner.comparisons_from_sweep(grid, Host.here())
    assert len(comparisons) == 2
    done = tmp_path / "r.parquet"
    [four] = comparisons[0].sides
    row = {**four.config_fields(), "status": "ok", "warmup": False, "instance": 0}
    results.write(done, results.make_table([row], "r", {}))
    skip = {key for key, load in runner.done_loads(done) if load == 0}
    keys = [results.config_key(c.sides[0].config_fields()) for c in comparisons]
    assert keys[0] in skip and keys[1] not in skip


@pytest.mark.kernel
def test_a_map_count_sample_lasts_what_was_asked():
    # Calibrated per loop iteration, not per get: 64 gets an iteration must not make it 64x longer.
    rows = runner.measure([kernel.KernelSpec.of("task_storage_maps", nr_maps=64)],
                          MeasureOptions(samples=3, instances=1, warmup=1, target_ms=5.0, cpu=None))
    mine = [r for r in rows if r["strategy"] == "task_storage_maps"]
    assert all(1e6 < r["elapsed_ns"] < 20e6 for r in mine), [r["elapsed_ns"] for r in mine]


@pytest.mark.kernel
def test_a_lookup_pass_touches_no_fresh_pages():
    # The out buffers are allocated and written before any timing: a walk over 100,000 entries
    # (1.2 MB of keys and values) must not fault its pages in during a timed pass.
    with syscall.SyscallSide(syscall.SyscallSpec("hash", "batch", "lookup", 100_000, 1000)) as side:
        side.run_once(1)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        side.run_once(3)
        assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 50


@pytest.mark.kernel
def test_only_what_the_kernel_refuses_for_a_map_type_is_unsupported(monkeypatch):
    assert "errno 22" in syscall.refusal("array", "elem", "delete")  # EINVAL: arrays have no delete
    assert "ENOTSUPP" in syscall.refusal("bloom_filter", "batch", "lookup")
    assert syscall.refusal("hash", "elem", "lookup") is None
    spec = syscall.SyscallSpec("hash", "elem", "lookup", 1000)
    rows = runner.measure([syscall.SyscallSpec("array", "elem", "delete", 1000)],
                           MeasureOptions(samples=1, instances=1))
    assert [r["status"] for r in rows] == ["unsupported"]

    # An EINVAL in the middle of a measurement of something the kernel supports is an error.
    def failing(self, reps):
        raise KernelRefused("injected", errno=errno.EINVAL)

    monkeypatch.setattr(syscall.SyscallSide, "run_once", failing)
    with pytest.raises(KernelRefused, match="injected"):
        runner.measure([spec], MeasureOptions(samples=1, instances=1))
