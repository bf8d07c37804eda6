"""The command line: it parses, calls the library and renders. Errors become one line and an
exit code: 0 ok, 1 regression found by diff, 2 bad input, 3 this environment cannot run it,
4 internal error (a bug; -v shows its traceback, as every error's)."""

from __future__ import annotations

import json
import signal
import sys
import traceback
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mapbench import __version__
from mapbench.errors import BadInput, MapbenchError
from mapbench.measure import runner
from mapbench.present import render

ENGINE_NOTES = {name: engine.note for name, engine in runner.ENGINES.items()}  # what each engine's figure is
# Off a terminal rich assumes 80 columns, which folds every table cell; results deserve 160.
out = Console() if sys.stdout.isatty() else Console(width=160)
err = Console(stderr=True)


class Bar:
    """The library's progress callbacks, drawn with rich on stderr."""

    def __init__(self, description: str):
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=err, transient=True)
        self.task = self.progress.add_task(description, total=None)

    def start(self, total: int) -> None:
        self.progress.update(self.task, total=total)

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)

    def __enter__(self) -> Bar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__)
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and tool logs on errors.")
def cli(verbose):
    """mapbench: what BPF map strategies cost on the running kernel."""


@cli.command("env")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
def env_cmd(as_json):
    """Can this machine run mapbench? What it has, and why not where it cannot."""
    from mapbench.measure.checks import checks

    found = checks()
    if as_json:
        click.echo(json.dumps([c.__dict__ for c in found], indent=2))
    else:
        rows = [[c.name, "[green]yes[/]" if c.ok else ("[red]no[/]" if c.required else "[yellow]no[/]"), c.detail]
                for c in found]
        out.print(render.rich_table("mapbench env", ["check", "ok", "detail"], rows))
    missing = [c for c in found if c.required and not c.ok]
    if missing:
        raise MapbenchError("this machine cannot run mapbench: "
                            + "; ".join(f"{c.name}: {c.detail}" for c in missing))


@cli.command("list")
def list_cmd():
    """Engines, their axes, and the kernel engine's strategies."""
    from mapbench.measure.strategies import STRATEGIES

    rows = [[name, e.description, ", ".join(f"{a.key} ({a.flag})" for a in e.axes),
             ", ".join(e.sides)] for name, e in runner.ENGINES.items()]
    out.print(render.rich_table("mapbench engines", ["engine", "what it measures", "axes (sweep key, flag)",
                                                     "head to head by default"], rows))
    rows = [[s.name, s.family.name, ", ".join(s.ops), s.description] for s in STRATEGIES.values()]
    out.print(render.rich_table("kernel engine strategies", ["--map", "family", "ops", "what it is"], rows))
    out.print("Each family also has a control build: the same loop and key stream, no map operation.")


def axis_options(engines=None, skip: tuple[str, ...] = ()):
    """One --flag per axis of these engines (default: every engine's; a comma list runs each
    value, a repeatable flag takes one value an occurrence); help from the axes."""
    def decorate(f):
        flags: dict[str, list[str]] = {}
        is_flag, repeat = set(), set()
        for engine in engines or runner.ENGINES.values():
            for axis in engine.axes:
                if axis.flag in skip:
                    continue
                flags.setdefault(axis.flag, [])
                if axis.is_flag:
                    is_flag.add(axis.flag)
                if axis.repeat:
                    repeat.add(axis.flag)
                if axis.help and axis.help not in flags[axis.flag]:
                    flags[axis.flag].append(f"{engine.name}: {axis.help}")
        for flag in sorted(flags, reverse=True):
            if flag in is_flag:  # given: True; absent: the spec's default
                f = click.option(flag, is_flag=True, default=None, help="; ".join(flags[flag]))(f)
            elif flag in repeat:
                f = click.option(flag, multiple=True, default=None, help="; ".join(flags[flag]) + " (repeatable)")(f)
            else:
                f = click.option(flag, default=None, help="; ".join(flags[flag]) + " (a comma list: each is run)")(f)
        return f
    return decorate


def given_flags(axis_flags: dict) -> dict[str, object]:
    """click's keyword arguments of the axis options, as the flags given."""
    return {"--" + k.replace("_", "-"): v for k, v in axis_flags.items() if v not in (None, False, ())}


measure_options = [
    click.option("--samples", type=int, default=None, help="Measured samples per load and side (engine default)."),
    click.option("--instances", type=int, default=None, help="Fresh loads of every side (engine default)."),
    click.option("--warmup", type=int, default=None, help="Samples per load flagged as warm-up (engine default)."),
    click.option("--sample-ms", type=float, default=None, help="Target duration of one sample (engine default)."),
    click.option("--cpu", type=int, default=None, help="CPU to pin to (default: the last allowed one)."),
    click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
                 help="Write (or append) one row per sample to this Parquet file."),
]


def with_measure_options(f):
    for option in reversed(measure_options):
        f = option(f)
    return f


precision_options = [
    click.option("--precision", type=float, default=None,
                 help="Keep adding loads until every comparison's widest 95 % CI half-width is at most this "
                      "share of its ratio (e.g. 0.05), within --budget."),
    click.option("--budget", "budget_s", type=float, default=None,
                 help="Seconds the run may take, loads added for --precision included."),
]


def with_precision(f):
    for option in reversed(precision_options):
        f = option(f)
    return f


def measure_flags(engine: str | None, given: dict, host, options: dict, cpu, out_path, precision, budget_s):
    """Flags to comparisons, planned and measured (rows appended to out_path as loads end): the
    table, the plan and the engine's name."""
    comparisons = runner.comparisons_from_flags(engine, given, host, **options)
    name = comparisons[0].engine if comparisons else engine
    if out_path is not None:
        runner.check_output(Path(out_path))
    plan = runner.plan(comparisons, cpu, host=host, precision=precision, budget_s=budget_s)
    with Bar(f"{name}: {len(comparisons)} comparison(s)") as bar:
        return runner.run_into(plan, out_path and Path(out_path), bar), plan, name


@cli.command("run")
@click.option("--engine", type=click.Choice(list(runner.ENGINES)), default=None,
              help="Default: " + next(iter(runner.ENGINES)) + ", unless it lacks flags given: then the engine "
                   "that takes most of those.")
@axis_options()
@with_measure_options
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per configuration, then one per head-to-head ratio.")
@with_precision
def run_cmd(engine, samples, instances, warmup, sample_ms, cpu, out_path, as_json, precision, budget_s,
            **axis_flags):
    """Measure configurations; several values of a side axis (--map hash,bloom, --isa v1,v3,
    --driver elem,batch, --batch-size 1,100) are measured head to head in the same loads."""
    from mapbench.measure.engine import Host

    given = given_flags(axis_flags)
    table, _, name = measure_flags(engine, given, Host.here(), dict(samples=samples, instances=instances,
                                   warmup=warmup, target_ms=sample_ms), cpu, out_path, precision, budget_s)
    from mapbench.results.summary import head_to_head, summaries

    records, ratios = summaries(table), head_to_head(table)
    if as_json:
        for record in records:
            click.echo(json.dumps(record))
        for r in ratios:
            click.echo(json.dumps({k: r[k] for k in ("numerator", "denominator", "ratio", "ci_low", "ci_high",
                                                     "pairs", "loads", "comparison")}))
        return
    print_summaries(records, ratios, f"mapbench run {records[0]['run_ids'][0] if records else ''} ({name} engine)")
    if out_path is not None:
        out.print(f"{table.num_rows} rows written to {out_path}")


@cli.command("ab")
@click.argument("base")
@click.argument("head")
@axis_options([runner.ENGINES["own"]], skip=("--variant",))
@with_measure_options
@click.option("--threshold", type=float, default=0.05, show_default=True,
              help="Smallest slowdown worth failing for, as a fraction of BASE.")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table", show_default=True,
              help="markdown: a pull-request comment.")
@with_precision
def ab_cmd(base, head, threshold, fmt, samples, instances, warmup, sample_ms, cpu, out_path, precision, budget_s,
           **axis_flags):
    """HEAD against BASE, head to head in one run: git revisions of the repository holding --source
    (each built from its own tree) or two object files. Exit 1 when HEAD is slower: its ratio's 95 %
    CI above 1 and the ratio above 1 + --threshold (docs/own-programs.md, "A CI gate")."""
    import tempfile

    from mapbench.measure.engine import Host
    from mapbench.measure.usersource import side
    from mapbench.present import ab
    from mapbench.results.summary import head_to_head, summaries

    if not 0 <= threshold < 1:
        raise BadInput(f"--threshold {threshold:g} is outside 0 .. 1 (a fraction of BASE)")
    given = given_flags(axis_flags)
    source = given.get("--source")
    host = Host.here()
    with tempfile.TemporaryDirectory(prefix="mapbench-ab-") as tmp:
        sides = [side(rev, source, name, Path(tmp) / name) for rev, name in ((base, "base"), (head, "head"))]
        given["--variant"] = tuple(v for v, _ in sides)
        table, plan, _ = measure_flags("own", given, host, dict(samples=samples, instances=instances,
                                       warmup=warmup, target_ms=sample_ms), cpu, out_path, precision, budget_s)
    records, ratios = summaries(table), head_to_head(table)
    shown = {v.name: text for v, text in sides}
    result = ab.verdict(ratios[0] if ratios else None, threshold)
    what = records[0]["family"] if records else "?"
    if fmt == "json":
        figures = {k: ratios[0][k] for k in ("ratio", "ci_low", "ci_high", "loads")} if ratios else {}
        click.echo(json.dumps({"verdict": result.call, "sentence": result.sentence(), "threshold": threshold,
                               "base": shown["base"], "head": shown["head"], "run_id": plan.run_id, **figures}))
    elif fmt == "markdown":
        machine = table.column("machine_name")[0].as_py() if table.num_rows else "this machine"
        kernel = table.column("kernel_release")[0].as_py() if table.num_rows else ""
        click.echo(ab.markdown_comment(result, records, shown, what, f"{machine}, Linux {kernel}", plan.run_id))
    else:
        print_summaries(records, ratios, f"mapbench ab {plan.run_id}: {shown['base']} vs {shown['head']}")
        out.print(result.sentence())
    if result.slower:
        sys.exit(1)


def print_summaries(records: list[dict], ratios: list[dict], title: str) -> None:
    if records:
        title += "\n" + render.shared_label(records)
    out.print(render.rich_table(title, render.SUMMARY_HEADER, render.summary_rows(records)))
    if ratios:
        out.print(render.rich_table("head to head (same loads, interleaved)", render.RATIO_HEADER,
                                    render.ratio_rows(ratios)))
    for engine in sorted({r["engine"] for r in records}):
        out.print(render.engine_note(engine, ENGINE_NOTES))
    out.print(render.STAT_NOTE)


@cli.command("sweep")
@click.argument("config", type=click.Path(dir_okay=False), default=None, required=False)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Result file (default: a new run in the dataset, data/results).")
@click.option("--resume", "resume_path", type=click.Path(dir_okay=False), default=None,
              help="Continue this result file: configurations already in it are skipped.")
@click.option("--cpu", type=int, default=None, help="CPU to pin to (default: the last allowed one).")
@with_precision
def sweep_cmd(config, out_path, resume_path, cpu, precision, budget_s):
    """Measure a grid from a TOML file (default: data/sweeps/default.toml)."""
    if resume_path and out_path and Path(resume_path) != Path(out_path):
        raise BadInput("--resume and --out name different files: resume appends to the file it resumes")
    with Bar("sweep") as bar:
        path = runner.run_sweep(config, resume_path or out_path, cpu, bar, precision=precision, budget_s=budget_s)
    err.print(f"results in {path}")


@cli.command("show")
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per configuration, then per ratio.")
def show_cmd(paths, as_json):
    """Per-configuration median, 95 % CI and spread of result files or directories, and the
    head-to-head ratios of their comparisons."""
    from mapbench.results import store as results
    from mapbench.results.summary import head_to_head, summaries

    table = results.read(list(paths))
    records, ratios = summaries(table), head_to_head(table)
    if as_json:
        for record in [*records, *ratios]:
            click.echo(json.dumps(record))
        return
    print_summaries(records, ratios, f"mapbench show {' '.join(paths)}")
    wide = [r for r in records if r["wide_spread"]]
    if wide:
        err.print(f"[yellow]warning:[/] {len(wide)} configuration(s) have CV > 10 %: "
                  "rerun them on an idle machine before drawing conclusions")


@cli.command("diff")
@click.argument("base", nargs=1)
@click.argument("new", nargs=1)
@click.option("--threshold", type=float, default=None,
              help="Smallest change worth calling, as a fraction of the base median (default 0.05: the smallest "
                   "change worth calling; its false alarms and power: docs/method.md, \"Diff\").")
@click.option("--alpha", type=float, default=None, help="Significance after Holm correction (default 0.01).")
@click.option("--force", is_flag=True, help="Compare results from different kernels.")
@click.option("--across-machines", is_flag=True,
              help="Compare results from different machines (their fingerprints differ: docs/method.md).")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table",
              show_default=True, help="markdown: a table ready for a pull-request comment.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also draw the ratios with their CIs to this PNG (an SVG is written beside it).")
@click.option("--dataset", "root", type=click.Path(file_okay=False), default=None,
              help="Result dataset whose other runs of each configuration on the same machine give a one-run side "
                   "its between-run variance (default: data/results).")
def diff_cmd(base, new, threshold, alpha, force, across_machines, fmt, as_json, plot_path, root):
    """Significant changes from BASE to NEW (files or directories). Exit 1 on a regression.

    Runs are the units: a one-run side takes its between-run variance from the dataset's other
    runs of that configuration on that machine, or reads "drift unknown"; a change is called when
    it is significantly larger than --threshold after Holm correction across all matched
    configurations (docs/method.md, "Diff")."""
    from mapbench.results import diff
    from mapbench.results import store as results

    defaults = dict(threshold=diff.DEFAULT_THRESHOLD, alpha=diff.DEFAULT_ALPHA)
    given = {k: v for k, v in dict(threshold=threshold, alpha=alpha).items() if v is not None}
    result = diff.diff(results.read(base).to_pandas(), results.read(new).to_pandas(), force=force,
                       across_machines=across_machines, history=Path(root or runner.DATASET),
                       **{**defaults, **given})
    for key, (a, b) in result.env_differences.items():
        err.print(f"[yellow]environment differs:[/] {key}: {', '.join(a)} -> {', '.join(b)}")
    if result.machine_note:
        err.print(f"[yellow]machines:[/] {result.machine_note}")
    fmt = "json" if as_json else fmt
    if fmt == "json":
        for change in result.changes:
            click.echo(json.dumps(change.as_dict()))
    elif fmt == "markdown":
        click.echo(render.diff_markdown(result))
    else:
        out.print(render.rich_table(render.diff_title(result), render.DIFF_HEADER, render.diff_rows(result.changes)))
        out.print(render.diff_counts(result))
    if plot_path:
        from mapbench.present.plots import diff_plot

        for path in diff_plot(result, Path(plot_path)):
            err.print(f"plot: {path}")
    if result.regressions:
        raise SystemExit(1)


dataset_option = click.option("--dataset", "root", type=click.Path(file_okay=False), default=None,
                              help="Result dataset (default: data/results).")
reports_option = click.option("--reports", type=click.Path(file_okay=False), default=None,
                              help="Where reports and plots go (default: data/reports).")


@cli.command("bench")
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help="Sweep file (default: data/sweeps/default.toml).")
@click.option("--full", is_flag=True, help="The complete grids (data/sweeps/full.toml, about an hour).")
@dataset_option
@reports_option
@click.option("--cpu", type=int, default=None)
@with_precision
def bench_cmd(config, full, root, reports, cpu, precision, budget_s):
    """The default benchmark: a run into the result dataset, its plots and Markdown report."""
    if full and config:
        raise BadInput("--full and --config both name a sweep file: give one")
    with Bar("bench") as bar:
        path = runner.run_sweep(runner.FULL_SWEEP if full else config, None, cpu, bar, Path(root or runner.DATASET),
                                precision, budget_s)
    report = write_report(path, Path(reports or runner.REPORTS))
    out.print(f"results: {path}\nreport: {report}")


def write_report(path: Path, out_dir: Path) -> Path:
    """The Markdown report and plots of a result file, in out_dir."""
    from mapbench.present.plots import all_plots
    from mapbench.present.report import write_report
    from mapbench.results import store as results

    table = results.read(path)
    plots = all_plots(table.to_pandas(), out_dir / f"{path.stem}-plots")
    return write_report(table, out_dir / f"{path.stem}.md", f"mapbench bench {path.stem}", plots, ENGINE_NOTES)


@cli.command("report")
@click.argument("paths", nargs=-1)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Write the Markdown report to this file (default: print it).")
def report_cmd(paths, out_path):
    """The Markdown report of result files or directories (default: the dataset, data/results):
    each machine's conclusions, scoped to it and its kernel, and, when several machines measured
    the same comparisons, each conclusion's ratio on every one and whether it holds on all."""
    from mapbench.present.report import report_markdown
    from mapbench.results import store as results

    table = results.read(list(paths) or [runner.DATASET])
    base = Path(out_path).parent if out_path else Path(".")
    text = report_markdown(table.to_pandas(), f"mapbench report {' '.join(paths) or 'data/results'}", base=base,
                           engine_notes=ENGINE_NOTES)
    if out_path is None:
        click.echo(text, nl=False)
        return
    Path(out_path).write_text(text)
    err.print(f"report: {out_path}")


@cli.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@dataset_option
@click.option("--keep", is_flag=True, help="Copy the files in; leave the originals.")
def import_cmd(files, root, keep):
    """Move result files into the dataset, one file per run, kernel and machine (files in the
    layout before machine fingerprints, kernel=/host=/, move to kernel=/machine=/)."""
    from mapbench.results import dataset

    for path in dataset.import_files(Path(root or runner.DATASET), [Path(f) for f in files], keep):
        out.print(str(path))


@cli.command("query")
@click.argument("sql")
@dataset_option
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
def query_cmd(sql, root, fmt):
    """SQL (DuckDB) over the view `results`: one row per sample, every result column, and the
    partitions `kernel` and `host`."""
    import duckdb

    from mapbench.results import dataset

    try:
        df = dataset.connect(Path(root or runner.DATASET)).execute(sql).df()
    except duckdb.Error as exc:
        raise BadInput(f"query: {str(exc).splitlines()[0]}") from None
    if fmt == "csv":
        click.echo(df.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(df.to_json(orient="records", date_format="iso"))
    else:
        out.print(render.rich_table(f"mapbench query ({len(df)} rows)", list(map(str, df.columns)),
                                    [[str(v) for v in row] for row in df.itertuples(index=False)]))


@cli.command("matrix", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--kernel", "kernels", multiple=True, required=True,
              help="A kernel to run under: 'running', a release, or a version prefix of an installed image "
                   "(6.1, 6.12). Repeat it.")
@dataset_option
@reports_option
@click.option("--cpus", type=int, default=2, show_default=True, help="vCPUs of each guest.")
@click.option("--emulate", is_flag=True,
              help="Boot guests under qemu's emulation (TCG), without KVM: the programs load and run on each "
                   "kernel, but the figures are an emulator's, not that kernel's costs.")
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED)
def matrix_cmd(kernels, root, reports, cpus, emulate, args):
    """Run `mapbench ARGS` (sweep or run) under each kernel, booted with virtme-ng, and gather
    the results into the dataset: mapbench matrix --kernel 6.1 --kernel running -- sweep F."""
    import pandas as pd

    from mapbench.measure import matrix
    from mapbench.present.plots import per_kernel
    from mapbench.results import dataset
    from mapbench.results import store as results
    from mapbench.results.diff import diff
    from mapbench.results.summary import summaries

    args = [a for a in args if a != "--"]
    resolved = [matrix.resolve(k) for k in kernels]
    guests = [k for k in resolved if k.image]
    if guests:
        matrix.check_host(guests[0], emulate)
    if emulate:
        err.print("[yellow]--emulate: the guests run under qemu's TCG: their figures are an emulator's[/]")
    root, reports = Path(root or runner.DATASET), Path(reports or runner.REPORTS)
    run_id = results.new_run_id()
    work = runner.partial_path(root, f"matrix-{run_id}").with_suffix("")
    done = matrix.run(resolved, args, Path(__file__).resolve().parent.parent, work, cpus, emulate,
                      on_start=lambda k, cmd: err.print(f"{k.name} ({k.release}): {' '.join(cmd)}"))
    tables = {}
    for name, got in done.items():
        if isinstance(got, Path):
            [path] = dataset.import_files(root, [got])
            tables[name] = results.read_file(path)
            err.print(f"{name}: {path}")
        else:
            err.print(f"[red]{name}: no results[/]: {got}")
    if not tables:
        raise matrix.NoVirtualMachine("no kernel produced results: " + "; ".join(f"{k}: {v}" for k, v in done.items()))
    frames = [t.to_pandas() for t in tables.values()]
    names = list(tables)
    per_kernel_records = {n: summaries(f) for n, f in zip(names, frames)}  # never pooled across kernels
    keys = render.varying_keys([r for rs in per_kernel_records.values() for r in rs])
    rows: dict[str, dict] = {}
    for name, records in per_kernel_records.items():
        for r in records:
            rows.setdefault(render.config_label(r, keys), {})[name] = (
                f"{r['median_ns_per_op']:.1f} ({r['ci_low']:.1f} .. {r['ci_high']:.1f})")
    out.print(render.rich_table("median ns/op by kernel (95% CI); absolute figures: each kernel in its own VM",
                                ["configuration", *(f"{n} ({tables[n].column('kernel_release')[0]})" for n in names)],
                                [[label, *(v.get(n, "-") for n in names)] for label, v in rows.items()]))
    base = names[0]
    for name in names[1:]:
        result = diff(frames[0], frames[names.index(name)], force=True, across_machines=True)
        envs = "; ".join(f"{k}: {', '.join(a)} -> {', '.join(b)}" for k, (a, b) in result.env_differences.items())
        out.print(f"diff {base} -> {name}: {render.diff_counts(result)}. The environment differs on purpose "
                  f"({envs}): each kernel ran in its own VM.", soft_wrap=True)
    for p in per_kernel(pd.concat(frames, ignore_index=True), reports / f"matrix-{run_id}-kernels"):
        err.print(f"plot: {p}")


@cli.command("history")
@dataset_option
@click.option("--engine", default=None)
@click.option("--map", "strategy", default=None, help="Strategy or map type.")
@click.option("--size", default=None)
@click.option("--op", default=None)
@click.option("--driver", default=None)
@click.option("--hit-ratio", type=float, default=None)
@click.option("--key-size", type=int, default=None)
@click.option("--isa", default=None)
@click.option("--kernel", default=None, help="Only runs on this kernel release.")
@click.option("--machine", default=None, help="Only runs on this machine (its fingerprint's id).")
@click.option("--host", default=None, help="Only runs on this hostname.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="Also draw it here.")
@click.option("--json", "as_json", is_flag=True)
def history_cmd(root, engine, strategy, size, op, driver, hit_ratio, key_size, isa, kernel, machine, host, plot_path,
                as_json):
    """One configuration over runs: median and CI per run, by kernel and machine, and the runs
    where its level shifted (change points) with what changed in the environment."""
    from mapbench.measure.values import parse_size
    from mapbench.results import history

    given = {"engine": engine, "strategy": strategy, "map_size": parse_size(size) if size else None, "op": op,
             "driver": driver, "hit_ratio": hit_ratio, "key_size": key_size, "isa": isa, "host": host}
    where = {k: v for k, v in given.items() if v is not None}
    timings: dict = {}
    series = history.history(Path(root or runner.DATASET), where, kernel, machine, timings)
    if not series:
        raise BadInput("no measured rows match " + (", ".join(f"{k}={v}" for k, v in where.items()) or "anything"))
    if as_json:
        for s in series:
            click.echo(json.dumps({"label": s["label"], "config": s["config"],
                                   "runs": [{**r, "timestamp": str(r["timestamp"])} for r in s["runs"]],
                                   "steps": [vars(st) for st in s["steps"]]}, default=str))
        return
    for s in series:
        steps = {st.index: st for st in s["steps"]}
        rows = []
        for i, r in enumerate(s["runs"]):
            st = steps.get(i)
            note = ""
            if st:
                changed = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in st.changed.items()) or "no environment change"
                note = f"[red]step x{st.ratio:.2f}[/] ({changed})"
            rows.append([str(r["timestamp"])[:19], r["run_id"], str(r["kernel_release"]), str(r["machine"]),
                         render.fmt_ns(r["median"]), f"{render.fmt_ns(r['ci_low'])} .. {render.fmt_ns(r['ci_high'])}",
                         note])
        out.print(render.rich_table(f"history: {s['label']}", ["time", "run", "kernel", "machine", "median ns/op",
                                                               "95% CI", "change point"], rows))
    err.print(f"{len(series)} configuration(s), {sum(len(s['runs']) for s in series)} run(s); the query took "
              f"{timings['query_s']:.2f} s, the per-run medians and CIs {timings['summaries_s']:.2f} s")
    if plot_path:
        from mapbench.present.plots import history_plot

        for p in history_plot(series, Path(plot_path)):
            err.print(f"plot: {p}")


@cli.command("plot")
@click.argument("paths", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="plots", show_default=True)
def plot_cmd(paths, out_dir):
    """Scaling, batching, head-to-head and reference plots (PNG + SVG) of result files or directories."""
    from mapbench.present.plots import all_plots
    from mapbench.results import store as results

    written = all_plots(results.read(list(paths)).to_pandas(), Path(out_dir))
    if not written:
        raise BadInput(f"nothing to plot in {', '.join(paths)}: no measured rows")
    for p in written:
        out.print(str(p))


@cli.group("model")
def model_group():
    """Models whose constants are measured rows, checked against measurements."""


def _whole_numbers(text: str, flag: str) -> list[int]:
    from mapbench.measure.values import parse_whole_number

    return [parse_whole_number(t.strip(), flag) for t in text.split(",") if t.strip()]


def _run_rows(source: str, root: Path):
    """A result file or directory, or a run id of the dataset, as rows."""
    from mapbench.results import dataset
    from mapbench.results import store as results

    if Path(source).exists():
        return results.read(source).to_pandas()
    found = [f for f in dataset.files(root) if f.stem == source]
    if not found:
        raise BadInput(f"--from {source}: no such file, and no run of that id in the dataset {root}")
    return results.read(found).to_pandas()


@model_group.command("runqslower")
@click.option("--from", "source", required=True, help="The measured run: a run id of the dataset, or a result file.")
@dataset_option
@click.option("--tasks", default="2,8,32,128,512", show_default=True, help="Task counts to predict.")
@click.option("--size", "sizes", default=None, help="Pids in the hash (default: the sizes the run measured).")
@click.option("--lifetime-ms", "lifetimes", default="inf", show_default=True,
              help="Task lifetimes (ms, or inf): a task exits after it and a new one starts.")
@click.option("--cpus", type=int, default=1, show_default=True, help="CPUs the tasks share.")
@click.option("--sleep-us", type=float, default=0.0, show_default=True, help="A task's sleep after each slice.")
@click.option("--threshold-us", type=float, default=0.0, show_default=True, help="Report waits at least this long.")
@click.option("--variation", type=float, default=0.0, show_default=True,
              help="Coefficient of variation of a slice (gamma distributed; 0: fixed).")
@click.option("--sim-ms", type=float, default=20.0, show_default=True, help="Simulated time per point.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Markdown report (default: data/reports/model-runqslower-<run>.md, plots beside it).")
def model_runqslower_cmd(source, root, tasks, sizes, lifetimes, cpus, sleep_us, threshold_us, variation, sim_ms,
                         seed, out_path):
    """The article's runqslower model as a discrete-event simulation, its BPF costs and the load's
    own time taken from a run's attached-engine rows: the share of the CPU spent in BPF against
    tasks, map size and task lifetime, validated against the run's measured share."""
    import math

    from mapbench.measure.values import parse_number, parse_size
    from mapbench.present import model
    from mapbench.present.plots import model_plot

    for flag, value, low in (("--cpus", cpus, 1), ("--sim-ms", sim_ms, 0.1)):
        if value < low:
            raise BadInput(f"{flag} {value:g} is below {low:g}")
    for flag, value in (("--sleep-us", sleep_us), ("--threshold-us", threshold_us), ("--variation", variation)):
        if value < 0 or not math.isfinite(value):
            raise BadInput(f"{flag} {value:g} must be a finite number >= 0")
    task_counts = _whole_numbers(tasks, "--tasks")
    if not task_counts or min(task_counts) < 1:
        raise BadInput(f"--tasks {tasks!r} must name task counts >= 1")
    lives = [math.inf if t.strip() == "inf" else parse_number(t, "--lifetime-ms") * 1e6
             for t in lifetimes.split(",") if t.strip()]
    if not lives or min(lives) <= 0:
        raise BadInput(f"--lifetime-ms {lifetimes!r} must name lifetimes > 0 (or inf)")
    inputs = model.inputs_from(_run_rows(source, Path(root or runner.DATASET)), source)
    size_list = ([parse_size(t) for t in sizes.split(",")] if sizes
                 else sorted(int(s) for s in inputs.costs.map_size.unique()))
    base = model.Workload(tasks=1, cpus=cpus, sleep_ns=sleep_us * 1e3, threshold_ns=threshold_us * 1e3,
                          variation=variation, sim_ns=sim_ms * 1e6, seed=seed)
    validated = model.validation(inputs, base)
    predicted, series = model.predictions(inputs, task_counts, size_list, lives, base)
    stem = Path(source).stem
    path = Path(out_path) if out_path else runner.REPORTS / f"model-runqslower-{stem}.md"
    plots = model_plot(series, predicted, validated, path.parent / f"{path.stem}-plots" / "runqslower-model")
    plots = [p.relative_to(path.parent) for p in plots]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model.markdown(inputs, validated, predicted, base, plots, f"mapbench model runqslower {stem}"))
    out.print(model.summary_line(validated))
    out.print(f"report: {path}")


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt  # so that every `with` (maps, links, cgroups) is unwound, as on Ctrl-C


INTERNAL_ERROR = 4  # exit code of an unexpected exception


def main() -> None:
    verbose = "-v" in sys.argv[1:] or "--verbose" in sys.argv[1:]
    signal.signal(signal.SIGTERM, _terminated)
    try:
        cli.main(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        err.print("mapbench: interrupted")
        sys.exit(130)
    except click.ClickException as exc:  # one line, as every other bad input
        click.echo(f"mapbench: error: {exc.format_message()}", err=True)
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except MapbenchError as exc:
        if verbose:
            traceback.print_exc()
        click.echo(f"mapbench: error: {exc}", err=True)
        log = getattr(exc, "log", "")
        if log and verbose:
            click.echo(log, err=True)
        elif log:
            click.echo("  (run with -v for the tool's log)", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug: never exit 1, which is diff's "regression" to a CI gate
        if verbose:
            traceback.print_exc()
        click.echo(f"mapbench: internal error: {type(exc).__name__}: {exc}"
                   + ("" if verbose else " (run with -v for the traceback)"), err=True)
        sys.exit(INTERNAL_ERROR)


if __name__ == "__main__":
    main()
