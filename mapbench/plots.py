"""Seaborn plots of a result set: scaling (ns/op against map size), batching (ns per element
against batch size), ISA, and diff ratios. Each figure is written as PNG and SVG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display here or in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

CI = ("ci", 95)  # seaborn bootstraps the estimator (the median) for the bands


def _save(fig, path: Path) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [path.with_suffix(".png"), path.with_suffix(".svg")]
    for p in out:
        fig.savefig(p, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def _measured(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df.strategy != "control") & (~df.warmup.astype(bool)) & (df.status == "ok")].copy()


def kernel_scaling(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Kernel engine: ns/op against map size, hue = strategy, one panel per op and hit ratio."""
    k = _measured(df)
    # the default axes only: the ISA, hash-function, element-size and map-count axes have plots of their own
    k = k[(k.engine == "kernel") & (k.isa == "v3") & (k.strategy != "task_storage_maps")
          & (k.nr_hash_funcs.isna() | (k.nr_hash_funcs == 3))
          & ~((k.strategy == "bloom") & (k.value_size != 4))]
    if k.empty:
        return []
    k["panel"] = [f"{op}" + (f", hit ratio {h:g}" if op == "lookup" else "")
                  for op, h in zip(k.op, k.hit_ratio)]
    panels = sorted(k.panel.unique())
    g = sns.relplot(data=k, x="map_size", y="ns_per_op", hue="strategy", col="panel",
                    col_order=panels, col_wrap=min(3, len(panels)), kind="line", marker="o",
                    estimator=np.median, errorbar=CI, height=3.2, aspect=1.2,
                    facet_kws={"sharey": False})
    g.set(xscale="log")
    g.set_axis_labels("map size (entries, log scale)", "ns per operation (net, median)")
    g.set_titles("{col_name}")
    g.figure.suptitle("Kernel engine: cost of one map operation inside a BPF program "
                      "(median, 95 % CI band)", y=1.03)
    return _save(g.figure, out_dir / "kernel_scaling")


def batch_sizes(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Syscall engine: ns per element against batch size, one panel per map size; the
    per-element syscall of each op is drawn as a dashed line at its own level."""
    s = _measured(df)
    s = s[(s.engine == "syscall") & (s.strategy == "hash")]
    batch = s[s.driver == "batch"]
    if batch.empty:
        return []
    sizes = sorted(batch.map_size.unique())
    g = sns.relplot(data=batch, x="batch_size", y="ns_per_op", hue="op", col="map_size",
                    col_order=sizes, kind="line", marker="o", estimator=np.median, errorbar=CI,
                    height=3.4, aspect=1.1)
    g.set(xscale="log")
    palette = dict(zip(batch.op.unique(), sns.color_palette(n_colors=batch.op.nunique())))
    elem = s[s.driver == "elem"]
    for size, ax in zip(sizes, g.axes.flat):
        for op, group in elem[elem.map_size == size].groupby("op"):
            ax.axhline(group.ns_per_op.median(), ls="--", lw=1, color=palette.get(op, "grey"))
        ax.set_title(f"hash, {size:,} entries")
    g.set_axis_labels("batch size (entries per call, log scale)", "ns per element (median)")
    g.figure.suptitle("Syscall engine: batched calls (lines) vs one syscall per element "
                      "(dashed, same colour)", y=1.04)
    return _save(g.figure, out_dir / "batch_sizes")


def reference(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """The syscall engine next to the plain C loop (family 'reference'), per configuration."""
    both = _measured(df)
    both = both[both.family == "reference"].copy()
    if both.empty:
        return []
    both["config"] = [f"{s} {o} " + ("elem" if d == "elem" else f"batch {int(b):,}") + f" @ {int(m):,}"
                      for s, o, d, m, b in zip(both.strategy, both.op, both.driver, both.map_size,
                                               both.batch_size.fillna(0))]
    return _bars_by_config(both, "engine", "ns per element (median, 95 % CI)",
                           "mapbench's native loops (syscall) vs a plain C loop (c_reference)",
                           out_dir / "reference")


def _bars_by_config(data: pd.DataFrame, hue: str, xlabel: str, title: str, path: Path) -> list[Path]:
    """Median bars with CIs, one row per configuration (data["config"]), hue per variant."""
    order = sorted(data.config.unique())
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(order) + 1.5))
    sns.barplot(data=data, y="config", x="ns_per_op", hue=hue, hue_order=sorted(data[hue].unique()),
                estimator=np.median, errorbar=CI, ax=ax, order=order)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("")
    ax.set_title(title)
    return _save(fig, path)


def diff_plot(result, path: Path, threshold: float = 0.05) -> list[Path]:
    """new/base ratio of medians with its bootstrap CI, one row per matched configuration."""
    rows = [c for c in result.changes if c.ratio is not None]
    if not rows:
        return []
    labels = [f"{c.config['engine']} {c.config['strategy']} {c.config['op']}"
              + (f" b{int(c.config['batch_size'])}" if c.config.get("batch_size") else "")
              + f" @ {int(c.config['map_size']):,}"
              + (f" hit {c.config['hit_ratio']:g}"
                 if c.config["op"] == "lookup" and c.config["engine"] == "kernel" else "")
              for c in rows]
    colour = {"slower": "tab:red", "faster": "tab:green", "unchanged": "tab:grey"}
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.5))
    y = np.arange(len(rows))
    for i, c in enumerate(rows):
        ax.errorbar(c.ratio, i, xerr=[[c.ratio - c.ratio_ci_low], [c.ratio_ci_high - c.ratio]],
                    fmt="o", color=colour[c.verdict], capsize=3)
    ax.axvline(1.0, color="black", lw=1)
    ax.axvspan(1 - threshold, 1 + threshold, color="grey", alpha=0.12, lw=0,
               label=f"noise threshold ±{threshold:.0%}")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("new / base median ns per op (95 % bootstrap CI); right of 1 is slower")
    ax.set_title("mapbench diff: red slower, green faster, grey unchanged\n"
                 "(called when significant and the whole CI lies outside the band)", fontsize=10)
    return _save(fig, path)


def attached_scaling(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """runqslower: ns per scheduler event against the number of pids in the hash."""
    a = _measured(df)
    a = a[(a.engine == "attached") & (a.isa == "v3")]
    if a.empty:
        return []
    a["load"] = [f"{int(n)} tasks" for n in a.nr_tasks]
    g = sns.relplot(data=a, x="map_size", y="ns_per_op", hue="strategy", col="load", kind="line",
                    marker="o", estimator=np.median, errorbar=CI, height=3.4, aspect=1.2)
    g.set(xscale="log")
    g.set_axis_labels("pids in the hash (log scale; task storage holds only live tasks)",
                      "ns per sched event (net, median)")
    g.figure.suptitle("runqslower on live scheduler events: pid-keyed hash vs task storage", y=1.04)
    return _save(g.figure, out_dir / "attached_scaling")


def isa(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """ns/op by BPF ISA (-mcpu) for every configuration measured with more than one ISA."""
    m = _measured(df)
    m = m[m.engine.isin(["kernel", "attached"])].copy()
    m["config"] = [f"{e} {s} {o}" + (f" hit {h:g}" if o == "lookup" else "") + f" @ {int(n):,}"
                   for e, s, o, h, n in zip(m.engine, m.strategy, m.op, m.hit_ratio, m.map_size)]
    multi = m.groupby("config").isa.nunique()
    m = m[m.config.isin(multi[multi > 1].index)]
    if m.empty:
        return []
    return _bars_by_config(m, "isa", "ns per operation (net, median, 95 % CI)",
                           "Cost by BPF ISA (clang -mcpu)", out_dir / "isa")


def task_storage_maps(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    m = _measured(df)
    m = m[m.strategy == "task_storage_maps"]
    if m.empty:
        return []
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(data=m, x="nr_maps", y="ns_per_op", estimator=np.median, errorbar=CI, marker="o",
                 ax=ax, label="task storage, per get")
    pid = _measured(df)
    pid = pid[(pid.strategy == "pid_hash") & (pid.engine == "kernel") & (pid.isa == "v3")]
    for size, g in pid.groupby("map_size"):
        ax.axhline(g.ns_per_op.median(), ls="--", lw=1, color="grey")
        ax.annotate(f"pid hash, {int(size):,} tasks", (m.nr_maps.max(), g.ns_per_op.median()),
                    ha="right", va="bottom", fontsize=8, color="grey")
    ax.axvline(16.5, ls=":", color="tab:red", lw=1)
    ax.annotate(" kernel's per-task cache: 16 storages", (16.5, ax.get_ylim()[1] * 0.55), fontsize=8,
                color="tab:red")
    ax.set_xlabel("task-storage maps on the task")
    ax.set_ylabel("ns per get (net, median, 95 % CI)")
    ax.set_title("Task storage cost by number of storage maps on one task")
    return _save(fig, out_dir / "task_storage_maps")


def bloom_fp(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    b = _measured(df)
    b = b[(b.strategy == "bloom") & b.bloom_fp_rate.notna() & (b.value_size == 4) & (b.hit_ratio == 0)]
    swept = b.groupby("map_size").nr_hash_funcs.nunique()
    b = b[b.map_size.isin(swept[swept > 1].index)]  # sizes measured at one k make no curve
    if b.empty:
        return []
    fig, ax = plt.subplots(figsize=(7, 4))
    for size, g in b.groupby("map_size"):
        line = sns.lineplot(data=g, x="nr_hash_funcs", y="bloom_fp_rate", marker="o", errorbar=CI,
                            ax=ax, label=f"measured, {int(size):,} entries")
        theory = g.groupby("nr_hash_funcs").bloom_fp_theory.first()
        ax.plot(theory.index, theory.values, ls="--", color=line.lines[-1].get_color(),
                label=f"theory, {int(size):,} entries")
    ax.set_yscale("log")
    ax.set_xlabel("hash functions (k)")
    ax.set_ylabel("false-positive rate (log scale)")
    ax.set_title("Bloom filter: measured false positives vs (1 - e^(-kn/m))^k,\n"
                 "m = the kernel's bit array (n k 7/5 rounded up to a power of two)", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, out_dir / "bloom_fp")


def all_plots(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    sns.set_theme(style="whitegrid", context="notebook")
    paths = []
    for make in (kernel_scaling, batch_sizes, reference, attached_scaling, isa, task_storage_maps, bloom_fp):
        paths += make(df, out_dir)
    return paths
