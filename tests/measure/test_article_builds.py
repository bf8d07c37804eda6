"""The article's build variants of the kernel engine (--calls, --restrict): what they accept, that
the builds differ as the macros say, and that every variant does the same work."""

import pytest

from mapbench.errors import BadInput
from mapbench.measure import build
from mapbench.measure.engine import Host
from mapbench.measure.engines import kernel
from mapbench.measure.engines.kernel import KernelSpec, LoadedBuild, instance_config

HOST = Host((0, 1), 1 << 34)


def test_remarks_are_counted_by_pass_the_most_first():
    stderr = ("a.c:1:2: remark: load of type i32 not eliminated [-Rpass-missed=gvn]\n"
              "a.c:3:4: remark: failed to hoist load [-Rpass-missed=licm]\n"
              "a.c:5:6: remark: load of type i64 not eliminated [-Rpass-missed=gvn]\n"
              "a.c:7:8: warning: something else\n")
    assert build.count_remarks(stderr) == (("gvn", 2), ("licm", 1))
    assert build.count_remarks("") == ()


@pytest.mark.parametrize("fields, flag", [
    ({"strategy": "task_storage_maps", "calls": "subprog"}, "--calls subprog"),
    ({"strategy": "pid_hash", "op": "get", "restrict": "on"}, "--restrict on"),
    ({"strategy": "hash", "calls": "outline"}, "--calls"),
    ({"strategy": "hash", "restrict": "yes"}, "--restrict"),
    ({"strategy": "hash", "implementation": "minimal", "restrict": "on"}, "--restrict"),
])
def test_variants_outside_an_accessor_are_refused_in_one_line(fields, flag):
    with pytest.raises(BadInput, match=flag):
        kernel.make_spec(fields, HOST)


def test_variants_are_configuration_and_only_the_sides_take_the_macros():
    spec = kernel.make_spec({"strategy": "hash", "calls": "subprog", "restrict": "on"}, HOST)
    assert spec.config_fields()["calls"] == "subprog" and spec.config_fields()["restrict"] == "on"
    assert spec.defines() == ("MB_CALLS_SUBPROG", "MB_RESTRICT")
    plain = kernel.make_spec({"strategy": "hash"}, HOST)
    assert plain.defines() == ()
    # one control build serves every variant: the control has no accessor
    assert spec.control_key() == plain.control_key()


def test_side_axes_make_one_comparison_of_the_variants():
    from mapbench.measure import runner, sweep
    grid = sweep.Grid("kernel", {"strategies": ["hash"], "calls": ["inline", "subprog"],
                                 "restrict": ["off", "on"]}, runner.ENGINES["kernel"].defaults, None)
    (c,) = runner.comparisons(grid, HOST)
    assert [(s.calls, s.restrict) for s in c.sides] == [("inline", "off"), ("inline", "on"),
                                                         ("subprog", "off"), ("subprog", "on")]


@pytest.mark.kernel
@pytest.mark.parametrize("strategy, op", [("hash", "lookup"), ("bloom", "lookup"), ("hash", "update"),
                                          ("pid_hash", "get"), ("task_storage", "get")])
def test_every_variant_does_the_same_work(strategy, op):
    """Same hits and the same key checksum from the inlined, subprog and restrict builds; the
    subprog build is a BPF-to-BPF call (its own function in the object), the others are not."""
    variants = [{"calls": "inline"}, {"calls": "subprog"}]
    if strategy in ("hash", "bloom"):
        variants.append({"restrict": "on"})
    results, remarks = [], []
    for v in variants:
        spec = KernelSpec.of(strategy, op=op, map_size=500, hit_ratio=0.5, **v)
        with LoadedBuild(spec, False, instance_config(spec, 0)) as b:
            r = b.run(3000, 7)
            results.append((r.hits, r.checksum, r.ops))
            remarks.append(b.built.missed_remarks)
            assert b.sizes["prog_xlated_bytes"] > 0 and b.sizes["prog_jited_bytes"] > 0
    assert len(set(results)) == 1
    assert all(remarks), "clang's remarks were recorded for every build"
    # clang says it declined to inline only where the accessor is __noinline
    assert not dict(remarks[0]).get("inline") and dict(remarks[1]).get("inline")


@pytest.mark.kernel
def test_the_minimal_reference_takes_calls_too():
    """--implementation minimal --calls subprog: the independent check of the call's cost."""
    results = []
    for calls in ("inline", "subprog"):
        spec = KernelSpec.of("hash", map_size=500, hit_ratio=0.5, implementation="minimal", calls=calls)
        with LoadedBuild(spec, False, instance_config(spec, 0)) as b:
            r = b.run(3000, 7)
            results.append((r.hits, r.checksum))
            assert bool(dict(b.built.missed_remarks).get("inline")) == (calls == "subprog")
    assert results[0] == results[1]
