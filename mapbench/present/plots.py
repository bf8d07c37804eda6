"""Plots of a result set, each written as PNG and SVG. Medians and CI bands come from the same
summaries as the tables (load-clustered bootstrap), ratios from the head-to-head comparisons;
labels from render.config_label."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import matplotlib.lines
import matplotlib.ticker

matplotlib.use("Agg")  # files only: no display here or in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from mapbench.present.render import (  # noqa: E402
    config_label,
    fmt_bytes,
    latest_runs,
    mode_rank,
    newest_isa,
    question_slug,
    questions,
    varying_keys,
)
from mapbench.results import stats  # noqa: E402
from mapbench.results.across import by_machine, scope  # noqa: E402
from mapbench.results.store import CONFIG_KEYS, measured  # noqa: E402
from mapbench.results.summary import head_to_head, summaries  # noqa: E402


def _save(fig, path: Path) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [path.with_suffix(".png"), path.with_suffix(".svg")]
    for p in out:
        fig.savefig(p, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def _lines(ax, frame: pd.DataFrame, x: str, hue: str) -> None:
    """Median line and 95 % CI band (the tables' CIs) per hue value."""
    palette = dict(zip(sorted(frame[hue].unique()), sns.color_palette(n_colors=frame[hue].nunique())))
    for value, g in frame.groupby(hue):
        g = g.sort_values(x)
        ax.plot(g[x], g.median_ns_per_op, marker="o", label=str(value), color=palette[value])
        ax.fill_between(g[x], g.ci_low, g.ci_high, alpha=0.2, color=palette[value], lw=0)


def _panels(frame: pd.DataFrame, panel: str, x: str, hue: str, xlabel: str, ylabel: str, title: str,
            path: Path, logx: bool = True, extra=None) -> list[Path]:
    # panels in the order of their smallest x-less key value (map size), not as strings
    order_by = "map_size" if x != "map_size" else x
    names = list(frame.groupby(panel)[order_by].min().sort_values().index)
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        _lines(ax, frame[frame[panel] == name], x, hue)
        if extra:
            extra(ax, frame[frame[panel] == name])
        ax.set_title(str(name), fontsize=10)
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(title, y=1.02)
    fig.tight_layout()
    return _save(fig, path)


def _plain_shape(s: pd.DataFrame) -> pd.Series:
    """Rows of the default shape: 4-byte keys, 8-byte values (or bloom's), a full preallocated map,
    built as usual (the accessor inlined, no restrict, one common LRU list)."""
    usual = pd.Series(True, index=s.index)
    for column, value in (("calls", "inline"), ("restrict", "off"), ("lru_lists", "common")):
        if column in s:
            usual &= s[column].isna() | (s[column] == value)
    return ((s.key_size == 4) & (s.fill == 1) & (s.no_prealloc != True) & (s.producers == 1)  # noqa: E712
            & ((s.value_size == 8) | (s.family != "membership") | (s.strategy == "bloom")) & usual)


def _at_newest_isa(s: pd.DataFrame) -> pd.DataFrame:
    """The rows at the newest ISA among them (render.newest_isa): plots not about the ISA draw one."""
    return s[s.isa == newest_isa(s.isa)]


def _filtered(s: pd.DataFrame) -> pd.Series:
    """Membership strategies with a filter in front of their map (bloom): they have hash functions."""
    return s.nr_hash_funcs.notna()


def _map_types(s: pd.DataFrame) -> pd.DataFrame:
    """The plain map types of the membership family (hash, LRU, per-CPU, array): no filter in front."""
    return s[(s.family == "membership") & ~_filtered(s)]


def _most_measured(s: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """The rows with the most measured values of `columns` (the grid's default, where a few
    configurations vary it)."""
    if s.empty:
        return s
    key = s[list(columns)].astype(str).agg("|".join, axis=1)
    return s[key == key.value_counts().idxmax()]


def _type_order(strategy: str) -> tuple:
    """Map types side by side: hashes before arrays, shared before per-CPU, plain before LRU."""
    return "array" in strategy, "percpu" in strategy, "lru" in strategy


def _kernel_engine(k: pd.DataFrame) -> str:
    """'Kernel engine, throughput mode': a kernel plot's title names the mode it draws (all_plots
    gives each set of kernel plots one mode)."""
    modes = k["mode"].dropna().unique()
    return "Kernel engine" + (f", {config_label({'mode': modes[0]}, ['mode'])}" if len(modes) == 1 else "")


def kernel_scaling(s: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Kernel engine: ns/op against map size per strategy, one panel per op and hit ratio."""
    k = _at_newest_isa(s[(s.engine == "kernel") & _plain_shape(s)])
    k = k[k.groupby("strategy").map_size.transform("nunique") > 1]  # a strategy of one size makes no curve
    k = pd.concat([k[~_filtered(k)], _most_measured(k[_filtered(k)], "nr_hash_funcs", "value_size")])
    k = _most_measured(k, "key_distribution").copy()
    if k.empty or k.map_size.nunique() < 2:
        return []
    k["panel"] = [f"{op}" + (f", hit ratio {h:g}" if op == "lookup" else "") for op, h in zip(k.op, k.hit_ratio)]
    return _panels(k, "panel", "map_size", "strategy", "map size (entries)", "ns per op (net, median)",
                   f"{_kernel_engine(k)}: one map operation inside a BPF program (sides of a panel measured "
                   "head to head; band: 95 % CI)", out_dir / "kernel_scaling")


def map_types(s: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Kernel engine lookups (all hits), 4-byte keys: ns/op per map type, one panel per map size,
    uniform and zipf keys side by side, with the 95 % CI as error bars."""
    k = _map_types(s[(s.engine == "kernel") & (s.op == "lookup") & (s.hit_ratio == 1) & _plain_shape(s)])
    k = _at_newest_isa(k)
    k = k[k.groupby("map_size").strategy.transform("nunique") > 1]  # sizes with types side by side
    if k.empty:
        return []
    sizes = sorted(k.map_size.unique())
    kinds = sorted(k.key_distribution.unique())
    types = sorted(k.strategy.unique(), key=_type_order)
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 3.6), squeeze=False, sharey=False)
    width = 0.8 / len(kinds)
    for ax, size in zip(axes.flat, sizes):
        for j, (kind, colour) in enumerate(zip(kinds, sns.color_palette(n_colors=len(kinds)))):
            g = k[(k.map_size == size) & (k.key_distribution == kind)].set_index("strategy").reindex(types)
            x = np.arange(len(types)) + (j - (len(kinds) - 1) / 2) * width
            ax.bar(x, g.median_ns_per_op, width, color=colour, label=f"{kind} keys",
                   yerr=[g.median_ns_per_op - g.ci_low, g.ci_high - g.median_ns_per_op], capsize=2)
        ax.set_xticks(range(len(types)), types, rotation=35, ha="right", fontsize=8)
        ax.set_title(f"{int(size):,} entries", fontsize=10)
        ax.set_ylabel("ns per lookup (net, median)")
        ax.legend(fontsize=8)
    fig.suptitle(f"{_kernel_engine(k)}: one lookup by map type (4 B keys, 8 B values; bars of a panel measured "
                 "head to head; 95 % CI)", y=1.02)
    fig.tight_layout()
    return _save(fig, out_dir / "map_types")


def key_sizes(s: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Kernel engine: ns/op against key size, one line per map type, one panel per op, size and
    key distribution."""
    k = _at_newest_isa(_map_types(s[(s.engine == "kernel") & (s.fill == 1) & (s.no_prealloc != True)  # noqa: E712
                                    & (s.producers == 1)]))
    k = _most_measured(k, "value_size")
    k = k[k.groupby("strategy").key_size.transform("nunique") > 1]  # arrays keep 4-byte index keys
    if k.key_size.nunique() < 2:
        return []
    k = k[k.groupby(["op", "map_size", "key_distribution"]).key_size.transform("nunique") > 1].copy()
    k["panel"] = [f"{op}, {int(n):,} entries, {d}" for op, n, d in zip(k.op, k.map_size, k.key_distribution)]
    return _panels(k, "panel", "key_size", "strategy", "key size (bytes)", "ns per op (net, median)",
                   f"{_kernel_engine(k)}: cost against key size (band: 95 % CI)", out_dir / "key_sizes", logx=False)


def scaling(s: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Kernel engine, several producers: aggregate ops/s and per-op cost on each CPU against the
    number of producers, one line per map type; one row of panels per workload."""
    k = s[(s.engine == "kernel") & (s.family == "membership") & (s.writers == 0)].copy()
    # a line: one configuration at every producer count (the producer axes aside)
    same = [c for c in CONFIG_KEYS if c not in ("producers", "overlap", "role")]
    k["line_key"] = ["|".join(map(str, row)) for row in k[same].itertuples(index=False)]
    k = k[k.groupby("line_key").producers.transform("nunique") > 1]
    if k.empty:
        return []
    k["m_ops"] = k.aggregate_ops_per_s.fillna(k.ops_per_s) / 1e6
    k["workload"] = [f"{op}" + (f", {int(w)} writing ({wo})" if w else "") + f", {int(n):,} entries"
                     for op, w, wo, n in zip(k.op, k.writers, k.write_op, k.map_size)]
    k["line"] = [f"{t}" + (" no prealloc" if p is True else "") + (f", {o} entries" if isinstance(o, str) else "")
                 for t, p, o in zip(k.strategy, k.no_prealloc, k.overlap.where(k.producers > 1).bfill())]
    workloads = sorted(k.workload.unique())
    fig, axes = plt.subplots(len(workloads), 2, figsize=(9, 3.2 * len(workloads)), squeeze=False)
    for row, w in zip(axes, workloads):
        g = k[k.workload == w]
        for _, h in g.groupby("line_key"):
            line = h.line.iloc[-1]
            h = h.sort_values("producers")
            row[0].plot(h.producers, h["m_ops"], marker="o", label=line)
            row[1].plot(h.producers, h.median_ns_per_op, marker="o", label=line)
            row[1].fill_between(h.producers, h.ci_low, h.ci_high, alpha=0.2, lw=0)
        row[0].set_ylabel("M ops/s, all producers")
        row[1].set_ylabel("ns per op on each CPU")
        for ax in row:
            ax.set_xlabel("producers (CPUs at once)")
            ax.set_title(w, fontsize=9)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.legend(fontsize=7)
    fig.suptitle(f"{_kernel_engine(k)}: many CPUs on one map (producers of a panel measured head to head)", y=1.01)
    fig.tight_layout()
    return _save(fig, out_dir / "scaling")


def churn_memory(s: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Memory of the churn workloads: the run's cgroup (held and peak) or fdinfo, per map type
    with and without preallocation."""
    k = s[(s.engine == "kernel") & s.memory_source.notna() & (s.producers > 1)].copy()
    k = k[k.role != "writer"]  # one bar per workload: its readers' rows name both ops
    if k.empty:
        return []
    k["held"] = k.memory_current_bytes.fillna(k.map_memory_bytes) / 2**20
    k["peak"] = k.memory_peak_bytes.fillna(k.map_memory_bytes) / 2**20
    k["label"] = [f"{t}{' no prealloc' if p is True else ''}\n"
                  + (f"{wo} on {int(w)}, {op} on {int(n - w)} CPUs" if w else f"{op} on {int(n)} CPUs")
                  + f", {int(size):,}"
                  for t, p, op, wo, w, n, size in zip(k.strategy, k.no_prealloc, k.op, k.write_op, k.writers,
                                                      k.producers, k.map_size)]
    k = k.drop_duplicates("label")
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(k)), 4))
    x = np.arange(len(k))
    ax.bar(x - 0.2, k.held, 0.4, label="held after the samples")
    ax.bar(x + 0.2, k.peak, 0.4, label="peak")
    ax.set_xticks(x, k.label, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("MiB")
    ax.legend(fontsize=8)
    ax.set_title(f"Memory under churn ({', '.join(sorted(k.memory_source.unique()))})", fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir / "churn_memory")


def batch_sizes(s: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Syscall engine: ns per element against batch size, one panel per map size of each map type
    batched at several sizes (the default grid: hash); the element-by-element call of each op as a dashed line."""
    h = s[s.engine == "syscall"]
    batch = h[h.driver == "batch"]
    batch = batch[batch.groupby("strategy").batch_size.transform("nunique") > 1]  # a type batched at one size: no curve
    if batch.empty:
        return []
    batch = batch.assign(panel=[f"{t}, {int(n):,} entries" for t, n in zip(batch.strategy, batch.map_size)])
    elem = h[h.driver == "elem"]

    def elem_lines(ax, panel):
        first = panel.iloc[0]
        for r in elem[(elem.map_size == first.map_size) & (elem.strategy == first.strategy)].itertuples():
            ax.axhline(r.median_ns_per_op, ls="--", lw=1, color="grey")
            ax.annotate(f"elem {r.op}", (panel.batch_size.max(), r.median_ns_per_op), ha="right", va="bottom",
                        fontsize=7, color="grey")

    return _panels(batch, "panel", "batch_size", "op", "batch size (entries per call)", "ns per element (median)",
                   "Syscall engine: batched calls (lines) vs one syscall per element (dashed)",
                   out_dir / "batch_sizes", extra=elem_lines)


def attached(s: pd.DataFrame, out_dir: Path) -> list[Path]:
    """runqslower: ns per scheduler event against live tasks, per pids in the hash."""
    a = _at_newest_isa(s[s.engine == "attached"])
    a = a[a.min_delay_us.fillna(0) == 0]  # every delay reported, as runqslower with min_us 0
    if a.empty or a.nr_tasks.nunique() < 2:
        return []
    swept = a.groupby("map_size").nr_tasks.nunique()
    a = a[a.map_size.isin(swept[swept > 1].index)]  # a size measured at one task count makes no curve
    a = a.assign(panel=[f"hash holds {int(n):,} other pids" for n in a.map_size])
    return _panels(a, "panel", "nr_tasks", "strategy", "live tasks switching", "ns per sched event (net, median)",
                   "runqslower on live scheduler events: pid-keyed hash vs task storage", out_dir / "attached")


def program_chain(s: pd.DataFrame, out_dir: Path) -> list[Path]:
    """The programs engine: ns per program run (median, 95 % CI) and the 4 KiB pages the chain's
    code spans, against the number of distinct programs on the path, per run stats setting."""
    c = s[(s.engine == "programs") & s.text_pages.notna()].sort_values("nr_programs")
    if c.nr_programs.nunique() < 2:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    c = c.assign(code_layout=c.code_layout.fillna("packed"))
    for (setting, layout), g in c.groupby(["run_stats", "code_layout"]):
        left.plot(g.nr_programs, g.median_ns_per_op, marker="o", label=f"{layout} code, run stats {setting}")
        left.fill_between(g.nr_programs, g.ci_low, g.ci_high, alpha=0.2, lw=0)
    for layout, g in c.groupby("code_layout"):
        pages = g.groupby("nr_programs").text_pages.max()
        right.plot(pages.index, pages.values, marker="o", label=f"{layout} (measured, /proc/kallsyms)")
    packed = c.groupby("nr_programs").text_pages.max()
    right.plot(packed.index, packed.index, ls="--", color="grey", label="a page per program")
    for ax, ylabel in ((left, "ns per program run (net, median)"), (right, "4 KiB pages of code")):
        ax.set_xscale("log")
        ax.set_xlabel("distinct programs on the path")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    right.set_yscale("log")
    fig.suptitle("Many programs on one path: time per program run, and the pages the pack allocator puts them in",
                 fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir / "program_chain")


def bloom_fp(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    from mapbench.results.store import measured

    b = measured(df)
    b = b[b.bloom_fp_rate.notna() & (b.hit_ratio == 0)]
    b = b[b.value_size == b.value_size.mode().min()]  # the most measured element size
    swept = b.groupby("map_size").nr_hash_funcs.nunique()
    b = b[b.map_size.isin(swept[swept > 1].index)]  # sizes measured at one k make no curve
    if b.empty:
        return []
    fig, ax = plt.subplots(figsize=(7, 4))
    for size, g in b.groupby("map_size"):
        per_k = g.groupby("nr_hash_funcs").agg(fp=("bloom_fp_rate", "mean"), lo=("bloom_fp_rate", "min"),
                                               hi=("bloom_fp_rate", "max"), theory=("bloom_fp_theory", "first"))
        line = ax.errorbar(per_k.index, per_k.fp, yerr=[per_k.fp - per_k.lo, per_k.hi - per_k.fp], marker="o",
                           capsize=3, label=f"measured (range of samples), {int(size):,} entries")
        ax.plot(per_k.index, per_k.theory, ls="--", color=line.lines[0].get_color(),
                label=f"theory, {int(size):,} entries")
    ax.set_yscale("log")
    ax.set_xlabel("hash functions (k)")
    ax.set_ylabel("false-positive rate (log scale)")
    ax.set_title("Bloom filter: measured false positives vs (1 - e^(-kn/m))^k,\n"
                 "m = the kernel's bit array (n k 7/5 rounded up to a power of two)", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, out_dir / "bloom_fp")


def _ratio_rows(ax, labels: list[str], ratios: list[tuple], colours: list[str]) -> None:
    for i, ((r, lo, hi), colour) in enumerate(zip(ratios, colours)):
        ax.errorbar(r, i, xerr=[[r - lo], [hi - r]], fmt="o", color=colour, capsize=3)
    ax.axvline(1.0, color="black", lw=1)
    ax.set_yticks(np.arange(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()


def _ci(r: dict) -> tuple[float, float]:
    """A ratio's CI; a ratio without one (one load) reads as its own point, so it never looks resolved."""
    return (r["ci_low"], r["ci_high"]) if r.get("ci_low") is not None and r.get("ci_high") is not None \
        else (r["ratio"], r["ratio"])


def _side_colour(r: dict) -> str:
    """Green: the CI lies below 1 (the first side cheaper); red: above; grey: no verdict (the CI
    holds 1, there is none, or too few loads: stats.direction, as the report's tables read it)."""
    return {stats.BELOW: "tab:green", stats.ABOVE: "tab:red"}.get(stats.direction(r), "tab:grey")


def _ratio_axis(ax, low: float, high: float) -> None:
    """A log ratio axis (1 always in view) with a few ticks to read: plain steps within a few
    times, 1-2-5 steps within about a decade, decades beyond."""
    ax.set_xscale("log")
    low, high = min(low, 1.0), max(high, 1.0)
    if high / low < 4:  # plain steps, and 1 among them
        steps = matplotlib.ticker.MaxNLocator(nbins=5).tick_values(low, high)
        locator = matplotlib.ticker.FixedLocator(sorted({round(t, 6) for t in steps if low <= t <= high} | {1.0}))
    else:
        locator = matplotlib.ticker.LogLocator(base=10, subs=(1, 2, 5) if high / low < 20 else (1,))
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.axvline(1.0, color="black", lw=1)


def question_plot(q: dict, machine: str, out_dir: Path) -> list[Path]:
    """One question (render.questions): each of its ratios with its paired 95 % CI, a panel per
    mode sharing one row per point (what tells the points apart: size, hit ratio, op), and,
    where the question has several first sides (map types against hash), a colour per side,
    its marker hollow where the CI holds 1. Sized by its rows, so labels read at normal size."""
    rs = [r for r in q["ratios"] if r["ratio"] is not None]
    if not rs:
        return []
    nums = list(dict.fromkeys(r["numerator"] for r in rs))
    hue = len(nums) > 1 and bool(q["context"])  # several sides at each point: a colour each
    row_of = (lambda r: config_label(r["numerator_config"], q["context"])) if q["context"] else \
        (lambda r: r["numerator"])
    rows = list(dict.fromkeys(row_of(r) for r in rs))
    modes = sorted({config_label(r["numerator_config"], ["mode"]) for r in rs},
                   key=lambda m: mode_rank(m.split(" ")[0]))
    step = 0.22 + (0.1 * len(nums) if hue else 0.08)  # inches per row
    key = ("filled: the CI excludes 1, hollow: it holds 1" if hue
           else "green: CI below 1 (the first side cheaper), red: above 1 (dearer), grey: it holds 1")
    title = f"{textwrap.fill(q['title'], 100)}\n{textwrap.fill(machine, 100)}\n{key}"
    # the title's lines and the axis' labels above and below the rows
    height = 1.5 + 0.2 * title.count("\n") + step * len(rows)
    fig, axes = plt.subplots(1, len(modes), figsize=(3.0 + 3.2 * len(modes), height), squeeze=False, sharey=True,
                             sharex=True)
    colours = dict(zip(nums, sns.color_palette(n_colors=len(nums))))
    low, high = min(_ci(r)[0] for r in rs), max(_ci(r)[1] for r in rs)
    for ax, mode in zip(axes.flat, modes):
        for r in rs:
            if config_label(r["numerator_config"], ["mode"]) != mode:
                continue
            y = rows.index(row_of(r)) + ((nums.index(r["numerator"]) - (len(nums) - 1) / 2) * 0.8 / len(nums)
                                         if hue else 0)
            colour = colours[r["numerator"]] if hue else _side_colour(r)
            ci_low, ci_high = _ci(r)
            holds = r.get("ci_low") is None or ci_low <= 1 <= ci_high
            ax.errorbar(r["ratio"], y, xerr=[[r["ratio"] - ci_low], [ci_high - r["ratio"]]], fmt="o",
                        color=colour, mfc="white" if hue and holds else colour, capsize=2, ms=5)
        _ratio_axis(ax, low, high)
        ax.set_yticks(range(len(rows)), rows, fontsize=9)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_title(mode or f"{q['engine']} engine", fontsize=10)
        ax.set_xlabel("first side / last (95 % CI, log)", fontsize=9)
    if hue:
        handles = [matplotlib.lines.Line2D([], [], marker="o", ls="", color=colours[n], label=n) for n in nums]
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=1 if max(map(len, nums)) > 40 else min(3, len(nums)),
                   fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, out_dir / question_slug(q))


def question_plots(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """A plot per question of each machine's head-to-head ratios (a folder per machine where
    there are several: one question's points are never pooled across machines)."""
    machines = by_machine(df)
    paths = []
    for machine, rows in machines:
        name = scope(rows).removeprefix("on this ")
        for q in questions(latest_runs(head_to_head(rows), rows)):  # as the report's opening
            paths += question_plot(q, name, out_dir / str(machine) if len(machines) > 1 else out_dir)
    return paths


def memory_latency(s: pd.DataFrame, df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """The memory engine's pointer chase: ns per load against working set, with the machine's L2
    and L3 sizes and each map size's memory (fdinfo's, the largest map type at it) marked."""
    if "working_set_bytes" not in s:
        return []
    probe = s[s.working_set_bytes.notna()].sort_values("working_set_bytes")
    if probe.empty:
        return []
    fig, ax = plt.subplots(figsize=(8, 4.2))
    x = probe.working_set_bytes.to_numpy(dtype=float)
    ax.errorbar(x, probe.median_ns_per_op, yerr=[probe.median_ns_per_op - probe.ci_low,
                                                 probe.ci_high - probe.median_ns_per_op],
                marker="o", capsize=3, color="black", label="pointer chase (median, 95 % CI)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")  # the caches' steps (1, 4, 10 ns) and DRAM's (100+ ns) on one axis
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    rows = measured(df)
    for level, colour in (("l2", "tab:blue"), ("l3", "tab:purple")):
        size = rows[f"{level}_cache_bytes"].dropna()
        if not size.empty:
            ax.axvline(size.max(), color=colour, ls="--", lw=1,
                       label=f"{level.upper()} {fmt_bytes(size.max()).replace('.0 ', ' ')}")
    maps = rows[rows.working_set_bytes.isna()][["map_size", "map_memory_bytes"]].dropna()
    for size, held in maps.groupby("map_size").map_memory_bytes.max().items():
        ax.axvline(held, color="tab:orange", ls=":", lw=1)
        ax.annotate(f"{int(size):,} entries", (held, ax.get_ylim()[1]), rotation=90, va="top", ha="right",
                    fontsize=8, color="tab:orange")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: fmt_bytes(v).replace(".0", "")))
    ax.set_xlabel("working set (log scale); dotted: a map size's memory (largest map type at it)")
    ax.set_ylabel("ns per dependent load (log)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"Memory latency {scope(df).removeprefix('on this ')}", fontsize=9)
    fig.tight_layout()
    return _save(fig, out_dir / "memory_latency")


def diff_plot(result, path: Path) -> list[Path]:
    """new/base ratio of medians with its CI, one row per matched configuration."""
    rows = [c for c in result.changes if c.ratio is not None]
    if not rows:
        return []
    keys = varying_keys([c.config for c in rows])
    colour = {"slower": "tab:red", "faster": "tab:green", "unchanged": "tab:grey", "inconclusive": "tab:orange"}
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.5))
    _ratio_rows(ax, [config_label(c.config, keys) for c in rows],
                [(c.ratio, c.ratio_ci_low, c.ratio_ci_high) for c in rows], [colour[c.verdict] for c in rows])
    t = result.threshold
    ax.axvspan(1 / (1 + t), 1 + t, color="grey", alpha=0.12, lw=0, label=f"threshold ±{t:.0%}")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("new / base median ns per op (95 % CI); right of 1 is slower")
    ax.set_title("mapbench diff: red slower, green faster, grey unchanged, orange inconclusive", fontsize=10)
    return _save(fig, path)


def per_kernel(df: pd.DataFrame, path: Path) -> list[Path]:
    """Median ns/op (95 % CI) of each configuration under each kernel of a matrix."""
    sns.set_theme(style="whitegrid", context="notebook")
    s = pd.DataFrame([{**r, "kernel": kernel} for kernel, g in df.groupby("kernel_release")
                      for r in summaries(g)])  # each kernel's own summaries, never pooled
    if s.empty:
        return []
    keys = [k for k in varying_keys(s.to_dict("records")) if k != "run_ids"]
    s["label"] = [config_label(r, keys) for r in s.to_dict("records")]
    labels, kernels = list(dict.fromkeys(s.label)), sorted(s.kernel.unique())
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(labels) * len(kernels)), 4))
    width = 0.8 / len(kernels)
    for j, kernel in enumerate(kernels):
        g = s[s.kernel == kernel].set_index("label").reindex(labels)
        x = np.arange(len(labels)) + (j - (len(kernels) - 1) / 2) * width
        ax.bar(x, g.median_ns_per_op, width, label=kernel,
               yerr=[g.median_ns_per_op - g.ci_low, g.ci_high - g.median_ns_per_op], capsize=2)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("ns per op (median, 95 % CI)")
    ax.legend(fontsize=8, title="kernel")
    ax.set_title("By kernel: each in its own VM, so absolute figures carry that VM's drift", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def lru_pressure(s: pd.DataFrame, out_dir: Path) -> list[Path]:
    """LRU under pressure (--op cache): hit ratio against working set per map and list kind, an
    exact LRU's of the same capacity dashed, and ns per op below; one column per map size and
    producer count."""
    k = s[(s.engine == "kernel") & (s.op == "cache")].copy()
    if k.empty:
        return []
    k["side"] = [f"{t}" + (f", {lists} lists" if isinstance(lists, str) else "")
                 for t, lists in zip(k.strategy, k.lru_lists)]
    k["column"] = [f"{int(n):,} entries, {d} keys, {int(p)} producer{'s' if p > 1 else ''}"
                   for n, p, d in zip(k.map_size, k.producers, k.key_distribution)]
    columns = list(k.sort_values(["map_size", "key_distribution", "producers"]).column.unique())
    palette = dict(zip(sorted(k.side.unique()), sns.color_palette(n_colors=k.side.nunique())))
    fig, axes = plt.subplots(2, len(columns), figsize=(4.6 * len(columns), 6.4), squeeze=False, sharex=True)
    for j, column in enumerate(columns):
        g = k[k.column == column]
        hit, ns = axes[0, j], axes[1, j]
        for side, h in g.groupby("side"):
            h = h.sort_values("working_set")
            hit.plot(h.working_set, 100 * h.measured_hit_ratio, marker="o", color=palette[side], label=side)
            ns.plot(h.working_set, h.median_ns_per_op, marker="o", color=palette[side], label=side)
            ns.fill_between(h.working_set, h.ci_low, h.ci_high, alpha=0.2, color=palette[side], lw=0)
        ideal = g.dropna(subset=["ideal_hit_ratio"]).groupby("working_set").ideal_hit_ratio.mean()
        if not ideal.empty:
            hit.plot(ideal.index, 100 * ideal.values, "k--", marker="x", label="exact LRU, same capacity and draws")
        hit.set_title(column, fontsize=10)
        hit.set_ylabel("hit ratio (%)")
        ns.set_ylabel("ns per op (net, median)")
        ns.set_xlabel("working set (x capacity)")
        ns.set_xscale("log", base=2)
        ns.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        hit.legend(fontsize=7)
    fig.suptitle(textwrap.fill(f"{_kernel_engine(k)}: LRU under pressure, lookup then insert on a miss "
                               "(sides of a column measured head to head; band: 95 % CI)", 70), y=1.03)
    fig.tight_layout()
    return _save(fig, out_dir / "lru_pressure")


def task_creation(s: pd.DataFrame, out_dir: Path) -> list[Path]:
    """The create engine: ns per record made on fork and removed at exit, task storage beside the
    pid hash, one panel per tasks-at-once and hash size, with the 95 % CI as error bars."""
    k = s[(s.engine == "create") & (s.strategy != "control")].copy()
    if k.empty:
        return []
    k["stage"] = ["removed at exit" if op == "delete" else "made on fork" for op in k.op]
    k["panel"] = [f"{int(t):,} threads at once, hash of {int(n):,} pids" for t, n in zip(k.nr_tasks, k.map_size)]
    panels = sorted(k.panel.unique())
    stages = ["made on fork", "removed at exit"]
    strategies = sorted(k.strategy.unique())
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    width = 0.8 / len(strategies)
    for ax, panel in zip(axes.flat, panels):
        for j, (strategy, colour) in enumerate(zip(strategies, sns.color_palette(n_colors=len(strategies)))):
            g = k[(k.panel == panel) & (k.strategy == strategy)].set_index("stage").reindex(stages)
            x = np.arange(len(stages)) + (j - (len(strategies) - 1) / 2) * width
            ax.bar(x, g.median_ns_per_op, width, color=colour, label=strategy,
                   yerr=[g.median_ns_per_op - g.ci_low, g.ci_high - g.median_ns_per_op], capsize=2)
        ax.set_xticks(range(len(stages)), stages)
        ax.set_title(panel, fontsize=10)
        ax.set_ylabel("ns per task (net, median)")
        ax.legend(fontsize=8)
    fig.suptitle("Create engine: a record for each fresh task (bars of a panel measured head to head; 95 % CI)",
                 y=1.02)
    fig.tight_layout()
    return _save(fig, out_dir / "task_creation")


def all_plots(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    sns.set_theme(style="whitegrid", context="notebook")
    s = pd.DataFrame(summaries(df))
    if s.empty:
        return []
    paths = []
    # The kernel engine's own builds (the minimal reference is the report's table), one set of plots
    # per mode: the first in render.MODE_ORDER here, the others in a folder named after theirs.
    own = s[(s.engine == "kernel") & (s.implementation == "mapbench") & (s.op != "cache")]  # cache: lru_pressure
    modes = sorted(own["mode"].dropna().unique(), key=mode_rank)
    for i, mode in enumerate(modes):
        for make in (kernel_scaling, map_types, key_sizes, scaling, churn_memory):
            paths += make(own[own["mode"] == mode], out_dir / mode if i else out_dir)
    for make in (batch_sizes, attached, program_chain):
        paths += make(s, out_dir)
    paths += bloom_fp(df, out_dir)
    paths += lru_pressure(s, out_dir)
    paths += task_creation(s, out_dir)
    paths += memory_latency(s, df, out_dir)
    paths += question_plots(df, out_dir)
    paths += prefix_family(s, out_dir)
    paths += output(s, out_dir) + map_in_map(s, out_dir)
    return paths


def history_plot(series: list[dict], path: Path) -> list[Path]:
    """`mapbench history --plot`: median and CI per run over time (results.history's series),
    one panel per configuration, coloured by kernel; steps as vertical lines."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(len(series), 1, figsize=(9, 3 * len(series)), squeeze=False)
    for ax, s in zip(axes.flat, series):
        runs = pd.DataFrame(s["runs"])
        kernels = sorted(runs.kernel_release.astype(str).unique())
        for kernel, colour in zip(kernels, sns.color_palette(n_colors=len(kernels))):
            k = runs[runs.kernel_release.astype(str) == kernel]
            ax.errorbar(k.index, k["median"], yerr=[k["median"] - k.ci_low, k.ci_high - k["median"]], fmt="o",
                        ms=3, color=colour, label=f"kernel {kernel}", capsize=2)
        for step in s["steps"]:
            ax.axvline(step.index - 0.5, color="red", ls="--", lw=1)
        ax.set_title(s["label"], fontsize=9)
        ax.set_xlabel("run (in time order)")
        ax.set_ylabel("ns per op (median, 95 % CI)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def model_plot(series: dict, predicted: pd.DataFrame, validated: pd.DataFrame, path: Path) -> list[Path]:
    """`mapbench model runqslower`: like the article's figure, the share of the CPU spent in BPF
    over simulated time, one line per side; beside it the share against tasks, with the attached
    engine's measured shares and the validation's predictions of them."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, (over_time, by_tasks) = plt.subplots(1, 2, figsize=(11, 4))
    colours = dict(zip(sorted(predicted.strategy.unique()), sns.color_palette(n_colors=predicted.strategy.nunique())))
    for strategy, s in series.items():
        over_time.plot(s.t_ms, 100 * s.bpf_share, label=strategy, color=colours[strategy])
    first = predicted[(predicted.map_size == predicted.map_size.min())
                      & (predicted.lifetime_ns == predicted.lifetime_ns.max())]
    for strategy, g in first.groupby("strategy"):
        by_tasks.plot(g.nr_tasks, 100 * g.share, marker=".", color=colours[strategy],
                      label=f"{strategy}, model ({int(g.map_size.iloc[0]):,} pids)")
    for strategy, g in validated[validated.reporting == "every"].groupby("strategy"):
        by_tasks.scatter(g.nr_tasks, 100 * g.measured, marker="o", facecolors="none", edgecolors=colours[strategy],
                         label=f"{strategy}, measured")
        by_tasks.scatter(g.nr_tasks, 100 * g.predicted, marker="x", color=colours[strategy],
                         label=f"{strategy}, predicted without its own rows")
    n = int(predicted.nr_tasks.max())
    over_time.set(xlabel="simulated time (ms)", ylabel="CPU spent in BPF (%, per window)",
                  title=f"{n} tasks: bookkeeping over time")
    by_tasks.set(xscale="log", xlabel="tasks", ylabel="CPU spent in BPF (%)", title="against tasks")
    over_time.legend(fontsize=8)
    by_tasks.legend(fontsize=7)
    fig.suptitle("runqslower model: costs from measured rows", y=1.02)
    fig.tight_layout()
    return _save(fig, path)


def prefix_family(s: pd.DataFrame, out_dir: Path) -> list[Path]:
    """The prefix family: ns per op by prefixes held, LPM trie against exact hash, IPv4 and IPv6,
    a panel per op (kernel engine, throughput mode, hit ratio 1 for lookups); and the free engine's
    time from close() to the memory back, in ms."""
    if "addr_family" not in s:
        return []
    k = s[(s.family == "prefix") & s.addr_family.notna()].copy()
    if k.empty:
        return []
    k["line"] = [f"{t} {a}" + ("" if t == "exact_hash" or p == "table" else " hosts" if p == "hosts" else f" /{p}")
                 for t, a, p in zip(k.strategy, k.addr_family, k.prefix_lens)]
    paths = []
    ops = k[(k.engine == "kernel") & (k["mode"] == "throughput") & ((k.op != "lookup") | (k.hit_ratio == 1.0))]
    if not ops.empty:
        paths += _panels(ops, "op", "map_size", "line", "prefixes held", "ns per op (net of control)",
                         "Which prefix holds this address? LPM trie against exact hash (kernel engine)",
                         out_dir / "prefix_ops")
    freed = k[k.engine == "free"].copy()
    if not freed.empty:
        for c in ("median_ns_per_op", "ci_low", "ci_high"):
            freed[c] = freed[c] / 1e6
        freed["what"] = "close() to memory back"
        paths += _panels(freed, "what", "map_size", "line", "prefixes held", "ms",
                         "Freeing a filled map (free engine, the memory cgroup's usage)", out_dir / "prefix_free")
    return paths
def _output_panel(c: pd.Series) -> str:
    rate = "consumer at full speed" if not c.consumer_rate else f"consumer {c.consumer_rate:,.0f}/s"
    wakeup = f", a wakeup per {int(c.wakeup_every):,}" if c.wakeup_every == c.wakeup_every and c.wakeup_every else ""
    return f"{fmt_bytes(c.buffer_bytes)} buffer, {rate}, {int(c.producers)} producer" + (
        "s" if c.producers != 1 else "") + wakeup


def output(s: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Output engine: ns per event emitted against event size (one panel per buffer, consumer and
    producers), and the share of events lost, the same way."""
    o = s[(s.engine == "output") & (s.strategy != "control")]
    if o.empty or o.event_size.nunique() < 2:
        return []
    o = o.assign(panel=[_output_panel(c) for c in o.itertuples()], side=o.strategy + " " + o.op, map_size=0)
    paths = _panels(o, "panel", "event_size", "side", "event size (bytes)", "ns per event emitted (median)",
                    "Output: ring buffer vs perf buffer, per event emitted, net of the control",
                    out_dir / "output_cost", extra=lambda ax, _: ax.set_yscale("log"))  # ~100x apart
    loss = o.assign(median_ns_per_op=o.loss_rate, ci_low=o.loss_rate, ci_high=o.loss_rate)
    return paths + _panels(loss, "panel", "event_size", "side", "event size (bytes)", "share of events lost (mean)",
                           "Output: events the buffer had no room for", out_dir / "output_loss")


def map_in_map(s: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Map in map: ns per lookup against entries, one panel per count of inner maps and mode."""
    m = s[(s.engine == "kernel") & (s.family == "map_in_map") & (s.strategy != "control")]
    if m.empty or m.map_size.nunique() < 2:
        return []
    m = m.assign(panel=[f"{int(c.nr_maps)} inner maps, {c.mode}" for c in m.itertuples()])
    return _panels(m, "panel", "map_size", "strategy", "entries", "ns per lookup (median)",
                   "Map in map: two lookups vs one flat hash keyed by {inner map, key}", out_dir / "map_in_map")
