"""The measuring pipeline behind `run`, `sweep` and `bench`: flags or a sweep file become
comparisons (engines.comparisons), comparisons become rows in a Parquet file written as each
finishes, and a result file becomes a report with plots. Progress goes to an object with
`start(total)` and `advance(n)`; the CLI draws it, a library caller may pass None."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa

from mapbench.errors import BadInput
from mapbench.measure import engines, sweep
from mapbench.measure.engines import Comparison
from mapbench.measure.environment import run_environment
from mapbench.measure.runner import require_bpf_privilege
from mapbench.present.render import config_label
from mapbench.results import dataset
from mapbench.results import store as results

DATA = Path(__file__).resolve().parents[2] / "data"
DATASET = DATA / "results"  # mapbench/dataset.py: kernel=<release>/host=<host>/<run_id>.parquet
REPORTS = DATA / "reports"  # <run_id>.md and <run_id>-plots/
DEFAULT_SWEEP = DATA / "sweeps" / "default.toml"
FULL_SWEEP = DATA / "sweeps" / "full.toml"


class _NoProgress:
    def start(self, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


def comparisons_from_flags(engine_name: str, given: dict[str, str], opts) -> list[Comparison]:
    """`run`'s flags (comma lists) as comparisons of one engine. A flag the engine does not
    take, or that changes none of the configurations asked for, is an error: never ignored."""
    engine = engines.ENGINES[engine_name]
    axes = {a.flag: a for a in engine.AXES}
    for flag in given:
        if flag not in axes:
            raise BadInput(f"{flag} does not apply to the {engine_name} engine (it takes "
                           f"{', '.join(axes)})")
    opts = opts.validate()
    raw = {axes[flag].key: [v.strip() for v in str(value).split(",")] for flag, value in given.items()}
    comparisons = engines.comparisons(engine, raw, opts)
    for c in comparisons:
        for s in c.not_measured:  # a run asked for exactly this: an error, not a row
            raise BadInput(s.reason)
    sides = [s for c in comparisons for s in c.measured]
    for flag in given:
        if sides and not any(axes[flag].field in s.used_fields() for s in sides):
            what = sorted({config_label(s.config_fields(), ["strategy", "op"]) for s in sides})
            raise BadInput(f"{flag} does not apply to {', '.join(what)}")
    if engine_name == "syscall":
        from mapbench.measure.engines.syscall import check_supported

        for s in sides:
            check_supported(s)
    return comparisons


def check_output(path: Path) -> None:
    """Fail before measuring, not after: the file must be writable Parquet of our schema."""
    results.check_path(path)
    if path.exists():
        results.read_file(path)
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise BadInput(f"--out {str(path)!r}: directory {str(parent)!r} is not writable")


def measure_comparisons(comparisons: list[Comparison], out_path: Path | None, progress=None) -> pa.Table:
    """Measure each comparison (a failure is an error here: `run` asked for exactly these);
    each is written to out_path as soon as it is done."""
    require_bpf_privilege()
    progress = progress or _NoProgress()
    progress.start(sum(c.samples() for c in comparisons))
    run_id, env = results.new_run_id(), run_environment()
    tables = []
    for number, c in enumerate(comparisons):
        rows = engines.ENGINES[c.engine].measure(list(c.measured), c.opts, on_sample=progress.advance)
        table = results.make_table([{**r, "comparison": f"{run_id}/{number}"} for r in rows], run_id, env)
        if out_path is not None:
            results.write(out_path, table)
        tables.append(table)
    return pa.concat_tables(tables)


def partial_path(root: Path, run_id: str) -> Path:
    """Where a run of the dataset at `root` is written comparison by comparison until it is
    whole (then it moves into the dataset): beside the dataset, so a crash loses nothing and
    no half run is ever in it."""
    return Path(root).parent / "partial" / f"{run_id}.parquet"


def run_sweep(config: str | Path | None, out_path: str | Path | None, cpu: int | None, progress=None,
              root: Path = DATASET) -> Path:
    """A sweep file measured into out_path (resumed when it exists), or, without one, into the
    dataset at `root`; returns the file's path."""
    from mapbench.measure.runner import resolve_cpu

    comparisons = sweep.load(config or DEFAULT_SWEEP)
    cpu = resolve_cpu(cpu)
    run_id = results.new_run_id()
    path = Path(out_path or partial_path(root, run_id))
    check_output(path)
    require_bpf_privilege()
    progress = progress or _NoProgress()
    progress.start(sum(c.samples() for c in comparisons))
    sweep.run(comparisons, cpu, path, run_id,
              on_comparison=lambda c, measured: None if measured else progress.advance(c.samples()),
              on_sample=progress.advance)
    if out_path is None:
        [path] = dataset.import_files(root, [path])
    return path


def report(path: Path, out_dir: Path | None = None) -> Path:
    """The Markdown report and plots of a result file, beside it (or in out_dir)."""
    from mapbench.present.plots import all_plots
    from mapbench.present.report import write_report

    table = results.read(path)
    out_dir = out_dir or path.parent
    plots = all_plots(table.to_pandas(), out_dir / f"{path.stem}-plots")
    return write_report(table, out_dir / f"{path.stem}.md", f"mapbench bench {path.stem}", plots)


def bench(config: str | Path | None, root: Path, reports: Path, cpu: int | None, progress=None) -> tuple[Path, Path]:
    """A sweep into the dataset at `root`, its report and plots into `reports`."""
    path = run_sweep(config, None, cpu, progress, root)
    return path, report(path, reports)
