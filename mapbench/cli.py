"""The command line: thin commands over the library. Errors become one line and an exit code
(0 ok, 1 regression found by diff, 2 bad input, 3 this environment cannot run it)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from . import __version__
from .errors import BadInput, MapbenchError

# Off a terminal rich assumes 80 columns, which folds every table cell; results deserve 160.
out = Console() if sys.stdout.isatty() else Console(width=160)
err = Console(stderr=True)


def _fmt_bytes(n) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _driver(r: dict) -> str:
    if r.get("driver") == "batch":
        return f"batch {r['batch_size']:,}"
    if r.get("engine") == "attached":
        return f"tp_btf, {r['nr_tasks']} tasks"
    return r.get("driver") or "bpf prog"


def print_summaries(rows: list[dict], title: str) -> None:
    table = Table(title=title)
    for name, justify in [("strategy", "left"), ("op", "left"), ("driver", "left"), ("map size", "right"),
                          ("hit ratio", "right"), ("median ns/op", "right"), ("95% CI", "right"),
                          ("ops/s", "right"), ("control ns/op", "right"), ("samples", "right"),
                          ("map memory", "right"), ("bloom FP rate", "right")]:
        table.add_column(name, justify=justify)
    for r in rows:
        table.add_row(
            r["strategy"], r["op"], _driver(r), f"{r['map_size']:,}", f"{r['hit_ratio']:g}",
            f"{r['median_ns_per_op']:.1f}" + (" [yellow](CV>10%)[/]" if r["wide_spread"] else ""),
            f"{r['ci_low']:.1f} .. {r['ci_high']:.1f}",
            f"{r['ops_per_s'] / 1e6:.1f} M" if r["ops_per_s"] else "-",
            f"{r['control_ns_per_op']:.1f}" if r["control_ns_per_op"] is not None else "-",
            f"{r['samples']}/{r['instances']} loads",
            _fmt_bytes(r["map_memory_bytes"]),
            f"{r['bloom_fp_rate']:.4f}" if r["bloom_fp_rate"] is not None else "-",
        )
    out.print(table)
    if any(r["engine"] == "kernel" for r in rows):
        out.print("kernel engine: ns/op is net of the control build (same loop and keys, no map "
                  "operation).")
    if any(r["engine"] == "attached" for r in rows):
        out.print("attached engine: ns per scheduler event from BPF run stats, net of empty programs "
                  "on the same hooks; " + "; ".join(
                      f"{r['strategy']}: {r['events_per_s'] / 1e3:.0f} k events/s, "
                      f"{r['cpu_overhead_share']:.2%} of CPU time, median run-queue delay "
                      f"{r['delay_median_ns'] / 1e3:.1f} us" for r in rows
                      if r["engine"] == "attached" and r.get("delay_median_ns")))
    if any(r["engine"] == "syscall" for r in rows):
        out.print("syscall engine: ns per element, timed in native code around the syscalls.")
    out.print("The CI is a 95 % bootstrap interval of the median.")


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err, transient=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__)
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and tool logs on errors.")
@click.pass_context
def cli(ctx, verbose):
    """mapbench: what BPF map strategies cost on the running kernel."""
    ctx.obj = {"verbose": verbose}


@cli.command("env")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
def env_cmd(as_json):
    """Can this machine run mapbench? What it has, and why not where it cannot."""
    from .environment import checks

    found = checks()
    if as_json:
        click.echo(json.dumps([c.__dict__ for c in found], indent=2))
    else:
        table = Table(title="mapbench env")
        for col in ("check", "ok", "detail"):
            table.add_column(col)
        for c in found:
            mark = "[green]yes[/]" if c.ok else ("[red]no[/]" if c.required else "[yellow]no[/]")
            table.add_row(c.name, mark, c.detail)
        out.print(table)
    missing = [c for c in found if c.required and not c.ok]
    if missing:
        raise MapbenchError("this machine cannot run mapbench: "
                            + "; ".join(f"{c.name}: {c.detail}" for c in missing))


@cli.command("list")
def list_cmd():
    """The strategies, their families and ops."""
    from .workloads import STRATEGIES

    table = Table(title="mapbench strategies (kernel engine)")
    for col in ("--map", "family", "ops", "what it is"):
        table.add_column(col)
    for s in STRATEGIES.values():
        table.add_row(s.name, s.family.name, ", ".join(s.ops), s.description)
    out.print(table)
    out.print("Each family also has a control build: the same loop and key stream, no map operation.")


@cli.command("run")
@click.option("--map", "strategy", required=True,
              help="kernel engine: hash, bloom, pid_hash, task_storage; syscall engine: hash, "
                   "lru_hash, percpu_hash, array, bloom_filter, task_storage.")
@click.option("--size", default=None, help="Entries in the map: 1e6, 1000000, 1_000_000 "
              "(default 1e3; 1 for task_storage_maps and the syscall engine's task_storage).")
@click.option("--task-maps", "nr_maps", type=int, default=1, show_default=True,
              help="task_storage_maps: how many task-storage maps each draw gets from (1..64).")
@click.option("--op", default=None, help="Operation (default: the strategy's first; see `mapbench list`).")
@click.option("--engine", type=click.Choice(["kernel", "syscall", "attached"]), default=None,
              help="kernel: inside a BPF program; syscall: from user space (default with --driver); "
                   "attached: runqslower on live scheduler events.")
@click.option("--tasks", "nr_tasks", type=int, default=8, show_default=True,
              help="Attached engine: load generator threads (an even number).")
@click.option("--driver", type=click.Choice(["elem", "batch"]), default=None,
              help="Syscall engine: one syscall per element, or BPF_MAP_*_BATCH.")
@click.option("--batch-size", default=None, help="Entries per batch call; a list runs each: 1,10,100.")
@click.option("--hit-ratio", type=float, default=1.0, show_default=True, help="Share of lookups whose key is present.")
@click.option("--keys", "key_distribution", default="uniform", show_default=True,
              help="uniform: random entries; sequential: entry i %% size (always a hit).")
@click.option("--hash-funcs", type=int, default=3, show_default=True, help="Bloom filter hash functions (1..15).")
@click.option("--bloom-value-size", type=int, default=4, show_default=True,
              help="Bytes of a bloom filter element: 4..64, a multiple of 4.")
@click.option("--samples", type=int, default=12, show_default=True, help="Measured samples per load.")
@click.option("--instances", type=int, default=5, show_default=True, help="Fresh loads of the programs and maps.")
@click.option("--warmup", type=int, default=2, show_default=True, help="Samples per load flagged as warm-up.")
@click.option("--sample-ms", type=float, default=5.0, show_default=True, help="Target duration of one sample.")
@click.option("--isa", default="v3", show_default=True, help="BPF ISA: v1, v2 or v3 (clang -mcpu).")
@click.option("--cpu", type=int, default=None, help="CPU to pin to (default: the last allowed one).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the key sets.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Write (or append) one row per sample to this Parquet file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per configuration.")
def run_cmd(strategy, size, nr_maps, op, engine, nr_tasks, driver, batch_size, hit_ratio, key_distribution,
            hash_funcs, bloom_value_size,
            samples, instances, warmup, sample_ms, isa, cpu, seed, out_path, as_json):
    """Measure one configuration (or one per --batch-size)."""
    from . import attached_engine, kernel_engine, results, syscall_engine
    from .environment import run_environment
    from .summary import summaries
    from .workloads import KernelSpec, parse_size

    engine = engine or ("syscall" if driver or batch_size else "kernel")
    map_size = parse_size(size if size is not None else
                          1 if strategy == "task_storage_maps" or (engine == "syscall" and strategy == "task_storage")
                          else 1000)
    if engine == "attached":
        if driver or batch_size or op:
            raise BadInput("--driver, --batch-size and --op do not apply to the attached engine")
        specs = [attached_engine.AttachedSpec(strategy, map_size, nr_tasks, sample_ms / 1000, isa)]
        measure = attached_engine.measure
    elif engine == "kernel":
        if driver or batch_size:
            raise BadInput("--driver and --batch-size belong to the syscall engine; drop --engine kernel")
        specs = [KernelSpec(strategy, op=op, map_size=map_size, hit_ratio=hit_ratio,
                            nr_hash_funcs=hash_funcs, isa=isa, key_distribution=key_distribution,
                            nr_maps=nr_maps, bloom_value_size=bloom_value_size, seed=seed)]
        measure = kernel_engine.measure
    else:
        driver = driver or ("batch" if batch_size else "elem")
        sizes = syscall_engine.parse_batch_sizes(batch_size) if driver == "batch" else [None]
        if driver == "batch" and batch_size is None:
            raise BadInput("--driver batch needs --batch-size (1..4294967295, or a list: 1,10,100)")
        if driver == "elem" and batch_size is not None:
            raise BadInput(f"--batch-size {batch_size} applies to --driver batch only")
        specs = [syscall_engine.SyscallSpec(strategy, driver, op or "lookup", map_size, b) for b in sizes]
        measure = syscall_engine.measure
    opts = kernel_engine.MeasureOptions(samples=samples, instances=instances, warmup=warmup,
                                        target_ms=sample_ms, cpu=cpu)
    validate_measure_options(opts)
    if out_path is not None:
        check_output(Path(out_path))
    kernel_engine.require_root()

    run_id = results.new_run_id()
    tables = []
    per_config = instances * (warmup + samples) * (2 if engine == "attached" else 1)  # + control
    with progress_bar() as bar:
        task = bar.add_task(f"{engine}: {strategy} size={map_size:,}",
                            total=len(specs) * per_config)
        for spec in specs:
            rows = measure(spec, opts, on_sample=lambda: bar.advance(task))
            refused = [r for r in rows if r["status"] != "ok"]
            if refused:  # a sweep records it as a row; a run asked for exactly this: an error
                raise BadInput(f"{strategy} {getattr(spec, 'op', '')} ({engine}"
                               + (f", {spec.driver}" if engine == "syscall" else "")
                               + f"): the kernel does not support it: {refused[0]['message']}")
            table = results.make_table(rows, run_id, run_environment())
            if out_path is not None:  # each configuration is kept as soon as it is measured
                results.write(out_path, table)
            tables.append(table)
    import pyarrow as pa

    found = summaries(pa.concat_tables(tables))
    if as_json:
        for record in found:
            click.echo(json.dumps(record))
    else:
        print_summaries(found, f"mapbench run {run_id} ({engine} engine"
                        + (f", ISA {isa})" if engine == "kernel" else ")"))
        if out_path is not None:
            out.print(f"{sum(t.num_rows for t in tables)} rows written to {out_path}")


@cli.command("sweep")
@click.argument("config", type=click.Path(dir_okay=False), default=None, required=False)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Result file (default: data/results/<run_id>.parquet).")
@click.option("--resume", "resume_path", type=click.Path(dir_okay=False), default=None,
              help="Continue this result file: configurations already in it are skipped.")
@click.option("--cpu", type=int, default=None, help="CPU to pin to (default: the last allowed one).")
def sweep_cmd(config, out_path, resume_path, cpu):
    """Measure a grid from a TOML file (default: data/sweeps/default.toml)."""
    run_sweep(config, out_path, resume_path, cpu)


def run_sweep(config, out_path, resume_path, cpu) -> Path:
    from . import kernel_engine, results, sweep

    jobs = sweep.load(config or default_sweep())
    cpu = resolve_cpu(cpu)
    run_id = results.new_run_id()
    if resume_path and out_path and Path(resume_path) != Path(out_path):
        raise BadInput("--resume and --out name different files: resume appends to the file it resumes")
    path = Path(resume_path or out_path or Path("data") / "results" / f"{run_id}.parquet")
    check_output(path)
    kernel_engine.require_root()
    with progress_bar() as bar:
        task = bar.add_task(f"sweep: {len(jobs)} configurations",
                            total=sum(sweep.samples_of(j) for j in jobs))
        sweep.run(jobs, cpu, path, run_id,
                  on_job=lambda job, measured: None if measured else bar.advance(task, sweep.samples_of(job)),
                  on_sample=lambda: bar.advance(task))
    err.print(f"results in {path}")
    return path


def default_sweep() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "sweeps" / "default.toml"


@cli.command("show")
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per configuration.")
def show_cmd(paths, as_json):
    """Per-configuration median, 95 % CI and spread of result files or directories."""
    from . import results
    from .summary import summaries

    found = summaries(results.read(list(paths)))
    if as_json:
        for record in found:
            click.echo(json.dumps(record))
        return
    print_summaries(found, f"mapbench show {' '.join(paths)}")
    wide = [r for r in found if r["wide_spread"]]
    if wide:
        err.print(f"[yellow]warning:[/] {len(wide)} configuration(s) have CV > 10 %: "
                  "rerun them on an idle machine before drawing conclusions")


@cli.command("diff")
@click.argument("base", nargs=1)
@click.argument("new", nargs=1)
@click.option("--threshold", type=float, default=0.05, show_default=True,
              help="Smallest change worth calling, as a fraction of the base median.")
@click.option("--alpha", type=float, default=0.01, show_default=True,
              help="Significance level after Holm correction across all configurations.")
@click.option("--force", is_flag=True, help="Compare results from different hosts or kernels.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per configuration.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also draw the ratios with their CIs to this PNG (an SVG is written beside it).")
def diff_cmd(base, new, threshold, alpha, force, as_json, plot_path):
    """Significant changes from BASE to NEW (files or directories). Exit 1 on a regression.

    A change is called when a Mann-Whitney U test is significant at --alpha after Holm
    correction across all matched configurations, and the 95 % bootstrap CI of the ratio of
    medians (loads resampled first) lies entirely beyond --threshold. Several runs per side
    (directories) narrow the CI and catch smaller changes."""
    from . import diff, results

    result = diff.diff(results.read(base).to_pandas(), results.read(new).to_pandas(),
                       threshold=threshold, alpha=alpha, force=force)
    for key, (a, b) in result.env_differences.items():
        err.print(f"[yellow]environment differs:[/] {key}: {', '.join(a)} -> {', '.join(b)}")
    if as_json:
        for change in result.changes:
            click.echo(json.dumps(change.as_dict()))
    else:
        print_changes(result.changes, threshold, alpha)
    if plot_path:
        from .plots import diff_plot

        for path in diff_plot(result, Path(plot_path), threshold):
            err.print(f"plot: {path}")
    if result.regressions:
        raise SystemExit(1)


def print_changes(changes, threshold: float, alpha: float) -> None:
    colour = {"slower": "red", "faster": "green", "unchanged": "white"}
    table = Table(title=f"mapbench diff (threshold {threshold:.0%}, alpha {alpha} after Holm)")
    for col in ("verdict", "engine", "strategy", "op", "driver", "map size", "hit", "base ns/op",
                "new ns/op", "new/base", "95% CI", "p (Holm)"):
        table.add_column(col, justify="left" if col in ("verdict", "engine", "strategy", "op", "driver") else "right")
    for c in changes:
        cfg = c.config
        driver = _driver(cfg)
        if c.ratio is None:
            table.add_row(f"[yellow]{c.verdict}[/]", cfg["engine"], cfg["strategy"], cfg["op"], driver,
                          f"{cfg['map_size']:,}", f"{cfg['hit_ratio']:g}", "", "", "", "", "")
            continue
        table.add_row(f"[{colour[c.verdict]}]{c.verdict}[/]", cfg["engine"], cfg["strategy"], cfg["op"],
                      driver, f"{cfg['map_size']:,}", f"{cfg['hit_ratio']:g}", f"{c.base_median:.1f}",
                      f"{c.new_median:.1f}", f"{c.ratio:.3f}",
                      f"{c.ratio_ci_low:.3f} .. {c.ratio_ci_high:.3f}", f"{c.p_holm:.2g}")
    out.print(table)
    counts = {v: sum(c.verdict == v for c in changes) for v in ("slower", "faster", "unchanged")}
    out.print(", ".join(f"{n} {v}" for v, n in counts.items()))


@cli.command("bench")
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help="Sweep file (default: data/sweeps/default.toml).")
@click.option("--full", is_flag=True, help="The complete grids (data/sweeps/full.toml, about an hour).")
@click.option("--out-dir", type=click.Path(file_okay=False), default="data/results", show_default=True)
@click.option("--cpu", type=int, default=None)
def bench_cmd(config, full, out_dir, cpu):
    """The default benchmark: sweep, Parquet file, plots and a Markdown report under --out-dir."""
    from .results import new_run_id

    if full and config:
        raise BadInput("--full and --config both name a sweep file: give one")
    if full:
        config = default_sweep().with_name("full.toml")
    path = run_sweep(config, str(Path(out_dir) / f"{new_run_id()}.parquet"), None, cpu)
    report = make_report(path)
    out.print(f"report: {report}")


def make_report(path: Path, out_dir: Path | None = None) -> Path:
    from . import results
    from .plots import all_plots
    from .report import write_report

    table = results.read(path)
    plot_dir = (out_dir or path.parent) / f"{path.stem}-plots"
    plots = all_plots(table.to_pandas(), plot_dir)
    return write_report(table, (out_dir or path.parent) / f"{path.stem}.md",
                        f"mapbench bench {path.stem}", plots)


@cli.command("plot")
@click.argument("paths", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="plots", show_default=True)
def plot_cmd(paths, out_dir):
    """Scaling, batching and reference plots (PNG + SVG) of result files or directories."""
    from . import results
    from .plots import all_plots

    written = all_plots(results.read(list(paths)).to_pandas(), Path(out_dir))
    if not written:
        raise BadInput(f"nothing to plot in {', '.join(paths)}: no measured rows")
    for p in written:
        out.print(str(p))


def validate_measure_options(opts) -> None:
    for name, value, low in (("--samples", opts.samples, 1), ("--instances", opts.instances, 1),
                             ("--warmup", opts.warmup, 0)):
        if value < low:
            raise BadInput(f"{name} {value} must be at least {low}")
    if not (0.1 <= opts.target_ms <= 60_000):
        raise BadInput(f"--sample-ms {opts.target_ms:g} is outside 0.1 .. 60000")
    opts.cpu = resolve_cpu(opts.cpu)


def resolve_cpu(cpu: int | None) -> int:
    from .kernel_engine import default_cpu

    allowed = sorted(os.sched_getaffinity(0))
    if cpu is None:
        return default_cpu()
    if cpu not in allowed:
        raise BadInput(f"--cpu {cpu} is not one this process may run on ({allowed})")
    return cpu


def check_output(path: Path) -> None:
    """Fail before measuring, not after: the file must be writable Parquet of our schema."""
    from . import results

    results.check_path(path)
    if path.exists():
        results.read_file(path)
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise BadInput(f"--out {str(path)!r}: directory {str(parent)!r} is not writable")


def main() -> None:
    verbose = "-v" in sys.argv[1:] or "--verbose" in sys.argv[1:]
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        err.print("mapbench: interrupted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code == 2 else exc.exit_code)
    except MapbenchError as exc:
        click.echo(f"mapbench: error: {exc}", err=True)
        log = getattr(exc, "log", "")
        if log and verbose:
            click.echo(log, err=True)
        elif log:
            click.echo("  (run with -v for the tool's log)", err=True)
        if verbose:
            raise
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
