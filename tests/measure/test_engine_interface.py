"""Adding an engine is its module and one registry line: a toy engine, registered here, runs
through run, sweep, show, diff and report like the real ones. And what the runner promises
every engine: loads spread over the run, controls subtracted, rows frozen."""

import contextlib
import importlib
import time
from dataclasses import dataclass

import numpy as np
import pytest
from click.testing import CliRunner

from mapbench.measure import runner
from mapbench.measure.engine import Axis, Comparison, Engine, Host, MeasureOptions, Spec


@dataclass(frozen=True)
class ToySpec(Spec):
    strategy: str
    map_size: int = 100

    def config_fields(self) -> dict:
        return {"engine": "toy", "family": "toy", "strategy": self.strategy, "op": "lookup",
                "map_size": self.map_size}

    def used_fields(self) -> set[str]:
        return {"strategy", "map_size"}

    def control_key(self) -> tuple:
        return (self.map_size,)


@dataclass
class ToyBuild:
    spec: ToySpec
    control: bool

    def __post_init__(self):
        self.table = dict.fromkeys(range(self.spec.map_size)) if self.spec.strategy == "dict" \
            else list(range(self.spec.map_size))


class Toy(Engine):
    """Python lookups in a dict or a list, net of an empty loop: no kernel needed to measure."""

    name, description = "toy", "Python lookups (a test engine)"
    note = "ns per Python lookup, net of an empty loop"
    axes = (Axis("strategies", "--map", "strategy", str, default=("dict", "list")),
            Axis("sizes", "--size", "map_size", int))
    sides = ("strategies",)
    defaults = MeasureOptions(samples=3, instances=2, warmup=1, target_ms=1.0)

    def make_spec(self, fields, host):
        return ToySpec(**fields)

    def open(self, spec, control, load):
        return contextlib.nullcontext(ToyBuild(spec, control))

    def sample(self, build, number, calibration, session) -> float:
        keys = range(0, build.spec.map_size, 7)
        start = time.perf_counter_ns()
        for k in keys:
            if not build.control:
                build.table.index(k) if isinstance(build.table, list) else build.table[k]
        return (time.perf_counter_ns() - start) / len(keys)

    def control_figures(self, sample):
        return {"ns_per_op": [sample]}

    def rows(self, build, sample, control):
        fields = {**build.spec.config_fields(), **({"strategy": "control"} if build.control else {})}
        net = sample - control["ns_per_op"] if control else sample
        return [{**fields, "ops": 1, "ns_per_op": net, "gross_ns_per_op": sample,
                 "control_ns_per_op": control and control["ns_per_op"]}]


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(runner.ENGINES, "toy", Toy())
    from mapbench import cli

    yield importlib.reload(cli)  # its flags and --engine choices come from the registry
    monkeypatch.undo()
    importlib.reload(cli)


def test_loads_spread_over_the_run_in_shuffled_blocks():
    opts = MeasureOptions(instances=4)
    comparisons = [Comparison("toy", (ToySpec(s, n),), opts) for s in ("dict", "list") for n in (10, 20, 30)]
    loads = runner.schedule(comparisons, seed=1)
    assert len(loads) == 6 * 4
    assert [load.number for load in loads] == sorted(load.number for load in loads)  # block k before k + 1
    blocks = [[load.comparison for load in loads if load.number == k] for k in range(4)]
    assert all(sorted(b) == list(range(6)) for b in blocks) and len({tuple(b) for b in blocks}) > 1
    assert runner.schedule(comparisons, seed=1) == loads  # a run's order follows from its id


@pytest.mark.kernel
def test_the_runner_subtracts_the_control_and_freezes_rows(toy):
    rows = runner.measure([ToySpec("dict", 1000), ToySpec("list", 1000)], MeasureOptions(samples=3, instances=2,
                                                                                           warmup=1))
    control = [r for r in rows if r["strategy"] == "control"]
    assert len(control) == 2 * 4 and {r["position"] for r in control} == {None}
    for r in rows:
        if r["strategy"] != "control":
            assert r["ns_per_op"] == pytest.approx(r["gross_ns_per_op"] - r["control_ns_per_op"])
    assert len({r["load_id"] for r in rows}) == 2 and {r["instance"] for r in rows} == {0, 1}
    with pytest.raises(TypeError):
        rows[0]["ns_per_op"] = 0.0  # frozen until written


@pytest.mark.kernel
def test_a_registered_engine_runs_through_run_sweep_show_diff_and_report(toy, tmp_path):
    cli = CliRunner()
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    res = cli.invoke(toy.cli, ["run", "--engine", "toy", "--map", "dict,list", "--size", "500", "--out", str(a)])
    assert res.exit_code == 0, res.output
    assert "list" in res.output and "dict" in res.output
    grid = tmp_path / "toy.toml"
    grid.write_text("[[grid]]\nengine = 'toy'\nsizes = [500]\n")
    res = cli.invoke(toy.cli, ["sweep", str(grid), "--out", str(b)])
    assert res.exit_code == 0, res.output
    res = cli.invoke(toy.cli, ["show", str(b)])
    assert res.exit_code == 0 and "toy" in res.output, res.output
    res = cli.invoke(toy.cli, ["diff", str(a), str(b)])
    assert res.exit_code in (0, 1), res.output  # 1: a regression found, which Python lookups may show
    report = tmp_path / "r.md"
    res = cli.invoke(toy.cli, ["report", str(a), str(b), "--out", str(report)])
    assert res.exit_code == 0, res.output
    text = report.read_text()
    assert "toy" in text and "dict" in text


def test_make_spec_reads_nothing_of_the_host():
    # Host facts come in through the plan: a host of one CPU and little memory changes the spec's
    # checks, not the machine's
    from mapbench.errors import BadInput
    from mapbench.measure.engines import kernel

    tiny = Host(cpus=(0,), memory_available_bytes=1 << 20)
    with pytest.raises(BadInput, match="above the 1 CPUs"):
        kernel.make_spec({"strategy": "hash", "producers": 2}, tiny)
    with pytest.raises(BadInput, match="GiB available"):
        kernel.make_spec({"strategy": "hash", "map_size": 10**7}, tiny)
    assert kernel.make_spec({"strategy": "hash", "producers": "all"}, tiny).producers == 1


class NoisyToy(Toy):
    """Synthetic samples: dict 100 ns, list 150 ns, each load off by its own factor, as real loads
    are; an interval narrows as loads are added."""

    name = "noisy"

    def open(self, spec, control, load):
        build = ToyBuild(spec, control)
        build.rng = np.random.default_rng([load, ord(spec.strategy[0]), control])
        build.load_factor = build.rng.lognormal(0, 0.1)
        return contextlib.nullcontext(build)

    def sample(self, build, number, calibration, session) -> float:
        base = 1.0 if build.control else 100.0 if build.spec.strategy == "dict" else 150.0
        return base * build.load_factor * build.rng.lognormal(0, 0.02)


@pytest.mark.kernel
@pytest.mark.parametrize("precision, budget_s, loads", [
    (0.5, None, "planned"),  # reached with the planned loads
    (0.08, None, "more"),  # reached with more
    (0.001, None, "cap"),  # never reached: up to MAX_LOADS_FACTOR times the planned loads
    (0.001, 0.0001, "planned"),  # out of budget at once
])
def test_precision_adds_loads_until_reached_or_out_of_budget(monkeypatch, precision, budget_s, loads):
    monkeypatch.setitem(runner.ENGINES, "noisy", NoisyToy())
    opts = MeasureOptions(samples=3, instances=5, warmup=0)
    p = runner.plan([Comparison("noisy", (ToySpec("dict"), ToySpec("list")), opts)], None, precision=precision,
                    budget_s=budget_s)
    rows = []
    runner.execute(p, rows.extend)
    n = len({r["load_id"] for r in rows})
    assert {r["precision_target"] for r in rows} == {precision}
    if loads == "planned":
        assert n == 5
    elif loads == "cap":
        assert n == runner.MAX_LOADS_FACTOR * 5
    else:  # stopped because it got there
        assert 5 < n < runner.MAX_LOADS_FACTOR * 5 and runner.half_width(rows) <= precision
