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


def print_summaries(rows: list[dict], title: str) -> None:
    table = Table(title=title)
    for name, justify in [("strategy", "left"), ("op", "left"), ("map size", "right"),
                          ("hit ratio", "right"), ("median ns/op", "right"), ("95% CI", "right"),
                          ("ops/s", "right"), ("control ns/op", "right"), ("samples", "right"),
                          ("map memory", "right"), ("bloom FP rate", "right")]:
        table.add_column(name, justify=justify)
    for r in rows:
        table.add_row(
            r["strategy"], r["op"], f"{r['map_size']:,}", f"{r['hit_ratio']:g}",
            f"{r['median_ns_per_op']:.1f}" + (" [yellow](CV>10%)[/]" if r["wide_spread"] else ""),
            f"{r['ci_low']:.1f} .. {r['ci_high']:.1f}",
            f"{r['ops_per_s'] / 1e6:.1f} M" if r["ops_per_s"] else "-",
            f"{r['control_ns_per_op']:.1f}" if r["control_ns_per_op"] is not None else "-",
            f"{r['samples']}/{r['instances']} loads",
            _fmt_bytes(r["map_memory_bytes"]),
            f"{r['bloom_fp_rate']:.4f}" if r["bloom_fp_rate"] is not None else "-",
        )
    out.print(table)
    out.print("ns/op is net of the control build (same loop and keys, no map operation); "
              "the CI is a 95 % bootstrap interval of the median.")


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
@click.option("--map", "strategy", required=True, help="Strategy: hash, bloom, pid_hash, task_storage.")
@click.option("--size", default="1e3", show_default=True, help="Entries in the map: 1e6, 1000000, 1_000_000.")
@click.option("--op", default=None, help="Operation (default: the strategy's first; see `mapbench list`).")
@click.option("--hit-ratio", type=float, default=1.0, show_default=True, help="Share of lookups whose key is present.")
@click.option("--keys", "key_distribution", default="uniform", show_default=True,
              help="uniform: random entries; sequential: entry i %% size (always a hit).")
@click.option("--hash-funcs", type=int, default=3, show_default=True, help="Bloom filter hash functions (1..15).")
@click.option("--samples", type=int, default=20, show_default=True, help="Measured samples per load.")
@click.option("--instances", type=int, default=3, show_default=True, help="Fresh loads of the programs and maps.")
@click.option("--warmup", type=int, default=2, show_default=True, help="Samples per load flagged as warm-up.")
@click.option("--sample-ms", type=float, default=5.0, show_default=True, help="Target duration of one sample.")
@click.option("--isa", default="v3", show_default=True, help="BPF ISA: v1, v2 or v3 (clang -mcpu).")
@click.option("--cpu", type=int, default=None, help="CPU to pin to (default: the last allowed one).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the key sets.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Write (or append) one row per sample to this Parquet file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per configuration.")
def run_cmd(strategy, size, op, hit_ratio, key_distribution, hash_funcs, samples, instances, warmup,
            sample_ms, isa, cpu, seed, out_path, as_json):
    """Measure one configuration with the kernel engine."""
    from . import kernel_engine, results
    from .environment import run_environment
    from .workloads import KernelSpec, parse_size

    spec = KernelSpec(strategy, op=op, map_size=parse_size(size), hit_ratio=hit_ratio,
                      nr_hash_funcs=hash_funcs, isa=isa, key_distribution=key_distribution, seed=seed)
    opts = kernel_engine.MeasureOptions(samples=samples, instances=instances, warmup=warmup,
                                        target_ms=sample_ms, cpu=cpu)
    validate_measure_options(opts)
    if out_path is not None:
        check_output(Path(out_path))
    kernel_engine.require_root()

    with progress_bar() as bar:
        task = bar.add_task(f"{spec.strategy} {spec.op} size={spec.map_size:,}",
                            total=instances * (warmup + samples))
        rows = kernel_engine.measure(spec, opts, on_sample=lambda: bar.advance(task))
    run_id = results.new_run_id()
    table = results.make_table(rows, run_id, run_environment())
    if out_path is not None:
        results.write(out_path, table)
    from .summary import summaries

    found = summaries(table)
    if as_json:
        for record in found:
            click.echo(json.dumps(record))
    else:
        print_summaries(found, f"mapbench run {run_id} (kernel engine, ISA {isa})")
        if out_path is not None:
            out.print(f"{table.num_rows} rows written to {out_path}")


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

    configs, opts = sweep.load(config or default_sweep())
    opts.cpu = cpu
    validate_measure_options(opts)
    run_id = results.new_run_id()
    if resume_path and out_path and Path(resume_path) != Path(out_path):
        raise BadInput("--resume and --out name different files: resume appends to the file it resumes")
    path = Path(resume_path or out_path or Path("data") / "results" / f"{run_id}.parquet")
    check_output(path)
    kernel_engine.require_root()
    per_config = opts.instances * (opts.warmup + opts.samples)
    with progress_bar() as bar:
        task = bar.add_task(f"sweep: {len(configs)} configurations", total=len(configs) * per_config)
        sweep.run(configs, opts, path, run_id,
                  on_config=lambda c, n: bar.update(task, completed=None) if n else bar.advance(task, per_config),
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


@cli.command("bench")
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help="Sweep file (default: data/sweeps/default.toml).")
@click.option("--out-dir", type=click.Path(file_okay=False), default="data/results", show_default=True)
@click.option("--cpu", type=int, default=None)
def bench_cmd(config, out_dir, cpu):
    """The default benchmark: sweep, Parquet file and Markdown report under --out-dir."""
    from . import results
    from .report import write_report

    from .results import new_run_id

    path = run_sweep(config, str(Path(out_dir) / f"{new_run_id()}.parquet"), None, cpu)
    report = write_report(results.read(path), path.with_suffix(".md"), f"mapbench bench {path.stem}")
    found_summaries(path)
    out.print(f"report: {report}")


def found_summaries(path: Path) -> None:
    from . import results
    from .summary import summaries

    print_summaries(summaries(results.read(path)), f"mapbench bench {path.stem}")


def validate_measure_options(opts) -> None:
    from .kernel_engine import default_cpu

    for name, value, low in (("--samples", opts.samples, 1), ("--instances", opts.instances, 1),
                             ("--warmup", opts.warmup, 0)):
        if value < low:
            raise BadInput(f"{name} {value} must be at least {low}")
    if not (0.1 <= opts.target_ms <= 1000):
        raise BadInput(f"--sample-ms {opts.target_ms} is outside 0.1 .. 1000")
    allowed = sorted(os.sched_getaffinity(0))
    if opts.cpu is None:
        opts.cpu = default_cpu()
    elif opts.cpu not in allowed:
        raise BadInput(f"--cpu {opts.cpu} is not one this process may run on ({allowed})")


def check_output(path: Path) -> None:
    """Fail before measuring, not after: the file must be writable Parquet of our schema."""
    from . import results

    if path.suffix != ".parquet":
        raise BadInput(f"--out {str(path)!r} must end in .parquet")
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
