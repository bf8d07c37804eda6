"""The Markdown report of a result set: environment, tables, and conclusions drawn from the data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .summary import summaries

ENV_COLUMNS = ["host", "kernel_release", "cpu_model", "nr_cpus", "jit_enabled", "clang_version",
               "libbpf_version", "mapbench_version", "git_describe"]


def _ns(x: float) -> str:
    return f"{x:.1f}"


def summary_frame(table) -> pd.DataFrame:
    return pd.DataFrame(summaries(table))


def markdown_table(df: pd.DataFrame) -> str:
    cols = ["engine", "strategy", "op", "driver", "batch_size", "map_size", "hit_ratio",
            "median_ns_per_op", "ci_low", "ci_high", "cv", "control_ns_per_op", "samples",
            "map_memory_bytes", "bloom_fp_rate"]
    head = ["engine", "strategy", "op", "driver", "map size", "hit ratio", "median ns/op",
            "95 % CI", "CV", "control ns/op", "samples", "map memory", "bloom FP rate"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in df[cols].itertuples(index=False):
        driver = "bpf prog" if pd.isna(r.driver) else (
            "elem" if r.driver == "elem" else f"batch {int(r.batch_size):,}")
        control = "" if pd.isna(r.control_ns_per_op) else _ns(r.control_ns_per_op)
        mem = "unknown" if pd.isna(r.map_memory_bytes) else f"{r.map_memory_bytes / 2**20:.1f} MiB"
        fp = "" if pd.isna(r.bloom_fp_rate) else f"{r.bloom_fp_rate:.4f}"
        cv = f"{r.cv:.1%}" + (" (wide)" if r.cv > 0.10 else "")
        lines.append(f"| {r.engine} | {r.strategy} | {r.op} | {driver} | {r.map_size:,} | "
                     f"{r.hit_ratio:g} | {_ns(r.median_ns_per_op)} | {_ns(r.ci_low)} .. "
                     f"{_ns(r.ci_high)} | {cv} | {control} | {r.samples} | {mem} | {fp} |")
    return "\n".join(lines)


def _compare(a: pd.Series, b: pd.Series) -> str:
    """'faster'/'slower'/'indistinguishable' for a against b, by non-overlapping 95 % CIs."""
    if a.ci_high < b.ci_low:
        return "faster"
    if a.ci_low > b.ci_high:
        return "slower"
    return "indistinguishable"


def conclusions(df: pd.DataFrame) -> list[str]:
    out = []
    df = df[(df.engine == "kernel") & (df.isa == "v3") & (df.value_size.isin([8, 16])
                                                          | ((df.strategy == "bloom") & (df.value_size == 4)))]
    df = df[df.nr_hash_funcs.isna() | (df.nr_hash_funcs == 3)]
    lookups = df[(df.op == "lookup") & (df.key_distribution == "uniform")]
    for size in sorted(lookups.map_size.unique()):
        at = lookups[lookups.map_size == size]
        pays = []
        for hit in sorted(at.hit_ratio.unique()):
            h = at[(at.strategy == "hash") & (at.hit_ratio == hit)]
            b = at[(at.strategy == "bloom") & (at.hit_ratio == hit)]
            if h.empty or b.empty:
                continue
            h, b = h.iloc[0], b.iloc[0]
            verdict = _compare(b, h)
            pays.append((hit, verdict))
            out.append(f"Lookup, {size:,} entries, hit ratio {hit:g}: bloom+hash "
                       f"{_ns(b.median_ns_per_op)} ns vs hash {_ns(h.median_ns_per_op)} ns "
                       f"({h.median_ns_per_op / b.median_ns_per_op:.2f}x): the filter is {verdict}"
                       + (f"; measured false-positive rate {b.bloom_fp_rate:.3f}" if pd.notna(b.bloom_fp_rate) else "")
                       + ".")
        paying = [hit for hit, v in pays if v == "faster"]
        if pays:
            out.append(f"**At {size:,} entries the bloom filter pays for hit ratios "
                       + (f"up to {max(paying):g}" if paying else "nowhere in the grid")
                       + f" (of {', '.join(f'{h:g}' for h, _ in pays)}).**")
    gets = df[df.op == "get"]
    for size in sorted(gets.map_size.unique()):
        p = gets[(gets.strategy == "pid_hash") & (gets.map_size == size)]
        t = gets[(gets.strategy == "task_storage") & (gets.map_size == size)]
        if p.empty or t.empty:
            continue
        p, t = p.iloc[0], t.iloc[0]
        out.append(f"Per-task get, {size:,} tasks: task storage {_ns(t.median_ns_per_op)} ns vs pid-keyed "
                   f"hash {_ns(p.median_ns_per_op)} ns: pid hash / task storage = "
                   f"{p.median_ns_per_op / t.median_ns_per_op:.1f}x (task storage {_compare(t, p)} by 95 % CIs).")
    updates = df[df.op == "update"]
    for size in sorted(updates.map_size.unique()):
        h = updates[(updates.strategy == "hash") & (updates.map_size == size)]
        b = updates[(updates.strategy == "bloom") & (updates.map_size == size)]
        if not h.empty and not b.empty:
            out.append(f"Update, {size:,} entries: keeping a bloom filter beside the hash costs "
                       f"{_ns(b.iloc[0].median_ns_per_op - h.iloc[0].median_ns_per_op)} ns more per update "
                       f"({_ns(b.iloc[0].median_ns_per_op)} vs {_ns(h.iloc[0].median_ns_per_op)} ns).")
    wide = df[df.cv > 0.10]
    if not wide.empty:
        out.append(f"{len(wide)} configuration(s) had a wide spread (CV > 10 %): read those figures with care.")
    return out


KNEE = 0.05  # "stops paying": a 10x larger batch saves less than this share per element


def batching_conclusions(df: pd.DataFrame) -> list[str]:
    """Per op and map size: the speed-up of batches over one syscall per element, and the batch
    size past which a 10x larger batch saves less than KNEE per element."""
    s = df[(df.engine == "syscall") & (df.family == "syscall")]
    out = []
    for (strategy, size), group in s.groupby(["strategy", "map_size"], sort=True):
        for op in ("lookup", "update", "delete", "lookup_and_delete"):
            batch = group[(group.driver == "batch") & (group.op == op)].sort_values("batch_size")
            elem = group[(group.driver == "elem") & (group.op == op)]
            if batch.empty:
                continue
            base_op = "delete" if op == "lookup_and_delete" else op
            elem = group[(group.driver == "elem") & (group.op == base_op)]
            medians = list(zip(batch.batch_size.astype(int), batch.median_ns_per_op))
            best_b, best = min(medians, key=lambda bm: bm[1])
            knee = medians[-1][0]
            for (b, m), (_, m_next) in zip(medians, medians[1:]):
                if m_next > m * (1 - KNEE):
                    knee = b
                    break
            text = f"{strategy} {op}, {int(size):,} entries: best {best:.0f} ns/element (batches of {best_b:,})"
            if len(medians) > 1:
                text += (f"; batching stops paying at about {knee:,} entries per call (a 10x larger "
                         f"batch saves less than {KNEE:.0%} per element)")
            if not elem.empty:
                e = elem.iloc[0].median_ns_per_op
                text += f"; one {base_op} syscall per element costs {e:.0f} ns: {e / best:.1f}x the best batch"
                if medians[0][0] == 1:
                    text += f", and a batch of 1 costs {medians[0][1] / e:.2f}x the element call"
            out.append(text + ".")
    return out


def reference_table(df: pd.DataFrame) -> str:
    ref = df[df.family == "reference"]
    if ref.empty:
        return ""
    lines = ["| map | op | driver | map size | mapbench ns/element | C reference ns/element | mapbench / C |",
             "|---|---|---|---|---|---|---|"]
    for (strategy, op, driver, size, batch), group in ref.groupby(
            ["strategy", "op", "driver", "map_size", "batch_size"], dropna=False, sort=True):
        mb = group[group.engine == "syscall"]
        c = group[group.engine == "c_reference"]
        if mb.empty or c.empty:
            continue
        m, r = mb.iloc[0], c.iloc[0]
        label = "elem" if driver == "elem" else f"batch {int(batch):,}"
        lines.append(f"| {strategy} | {op} | {label} | {int(size):,} | {_ns(m.median_ns_per_op)} "
                     f"({_ns(m.ci_low)} .. {_ns(m.ci_high)}) | {_ns(r.median_ns_per_op)} "
                     f"({_ns(r.ci_low)} .. {_ns(r.ci_high)}) | {m.median_ns_per_op / r.median_ns_per_op:.3f} |")
    return "\n".join(lines)


def write_report(table, path: Path, title: str, plots: list[Path] = ()) -> Path:
    df_rows = table.to_pandas()
    df = summary_frame(table)
    env = df_rows.iloc[0]
    status = df_rows[df_rows.strategy != "control"].groupby("status").size().to_dict()
    lines = [f"# {title}", "",
             "Kernel engine: nanoseconds per map operation inside a BPF program, net of a control "
             "build that runs the same loop and key stream without the map operation. Syscall "
             "engine: nanoseconds per element from user space, timed in native code around the "
             "syscalls. Medians over all measured samples of several fresh loads, with 95 % "
             "bootstrap confidence intervals (loads resampled, then samples).", "",
             "The CIs cover the spread within this run. On a shared VM whole runs also drift: two "
             "runs of the same code differed by up to 8 % here, and a 100,000-entry hash (which "
             "straddles the cache) by much more between runs an hour apart. Compare runs with "
             "`mapbench diff`, and read differences between grids measured at different times "
             "with that in mind.", "",
             "## Environment", ""]
    lines += [f"- {c}: {env[c]}" for c in ENV_COLUMNS]
    lines += [f"- rows by status: {status}", "", "## Conclusions", ""]
    found = conclusions(df) + batching_conclusions(df) + article_conclusions(df)
    lines += [f"- {c}" for c in found] or ["- (no comparable configurations)"]
    lines += [""]
    for plot in plots:
        if plot.suffix == ".png":
            lines += [f"![{plot.stem}]({plot.relative_to(path.parent)})", ""]
    ref = reference_table(df)
    if ref:
        lines += ["## Syscall engine vs a plain C loop", "",
                  "Same calls, same keys, same passes per sample, alternating round by round on "
                  "the same CPU; the C loop is mapbench/ref_syscalls.c.", "", ref, ""]
    lines += ["## Results", "", markdown_table(df), ""]
    unsupported = df_rows[df_rows.status != "ok"]
    if not unsupported.empty:
        lines += ["## Not measured", ""]
        lines += [f"- {r.strategy} {r.op} {r.map_size:,}: {r.status}: {r.message}"
                  for r in unsupported.itertuples()]
    path.write_text("\n".join(lines) + "\n")
    return path


def article_conclusions(df: pd.DataFrame) -> list[str]:
    """The article's questions: runqslower storage, ISA, storage map count, bloom theory."""
    out = []
    att = df[df.engine == "attached"]
    for (size, tasks, isa), g in att.groupby(["map_size", "nr_tasks", "isa"], sort=True):
        h, t = g[g.strategy == "pid_hash"], g[g.strategy == "task_storage"]
        if h.empty or t.empty:
            continue
        h, t = h.iloc[0], t.iloc[0]
        out.append(f"runqslower ({int(tasks)} tasks, ISA {isa}), {int(size):,} dummy pids in the hash: pid hash "
                   f"{_ns(h.median_ns_per_op)} ns per event vs task storage {_ns(t.median_ns_per_op)} ns "
                   f"({_compare(t, h)} by 95 % CIs); {h.events_per_s / 1e3:.0f}k vs {t.events_per_s / 1e3:.0f}k "
                   f"events/s, {h.cpu_overhead_share:.2%} vs {t.cpu_overhead_share:.2%} of CPU time.")
    kernel = df[df.engine.isin(["kernel", "attached"])]
    keys = ["engine", "strategy", "op", "map_size", "hit_ratio", "nr_maps", "nr_tasks", "value_size",
            "nr_hash_funcs"]
    for config, g in kernel.groupby(keys, dropna=False, sort=True):
        if g.isa.nunique() < 2 or "v1" not in set(g.isa) or "v3" not in set(g.isa):
            continue
        v1, v3 = g[g.isa == "v1"].iloc[0], g[g.isa == "v3"].iloc[0]
        out.append(f"ISA, {config[0]} {config[1]} {config[2]} at {int(config[3]):,}: v1 "
                   f"{_ns(v1.median_ns_per_op)} ns ({int(v1.prog_xlated_bytes or 0)} B translated, "
                   f"{int(v1.prog_jited_bytes or 0)} B JIT-ed) vs v3 {_ns(v3.median_ns_per_op)} ns "
                   f"({int(v3.prog_xlated_bytes or 0)} B, {int(v3.prog_jited_bytes or 0)} B): v3 is "
                   f"{_compare(v3, v1)}.")
    maps = df[(df.strategy == "task_storage_maps")].sort_values("nr_maps")
    if not maps.empty:
        pid = df[(df.strategy == "pid_hash") & (df.engine == "kernel")].sort_values("map_size")
        series = ", ".join(f"{int(m)}: {_ns(v)} ns" for m, v in zip(maps.nr_maps, maps.median_ns_per_op))
        text = f"Task storage with several maps on one task, ns per get by map count: {series}."
        if not pid.empty:
            ref = pid.iloc[0]
            worse = maps[maps.median_ns_per_op > ref.median_ns_per_op]
            text += (f" Against the pid-keyed hash with {int(ref.map_size):,} tasks "
                     f"({_ns(ref.median_ns_per_op)} ns), task storage "
                     + (f"loses its edge from {int(worse.nr_maps.iloc[0])} maps on."
                        if not worse.empty else "keeps its edge up to the largest count measured."))
        out.append(text)
    bloom = df[(df.strategy == "bloom") & df.bloom_fp_theory.notna() & (df.hit_ratio == 0)]
    by_k = bloom[bloom.value_size == 4].groupby(["map_size", "nr_hash_funcs"]).agg(
        fp=("bloom_fp_rate", "mean"), theory=("bloom_fp_theory", "mean"),
        ns=("median_ns_per_op", "median"))
    if len(by_k) > 1:
        out.append("Bloom filter false-positive rate, measured vs (1 - e^(-kn/m))^k for the bit array "
                   "the kernel allocates: " + "; ".join(
                       f"{int(n):,} entries, k={int(k)}: {r.fp:.4f} vs {r.theory:.4f} ({_ns(r.ns)} ns)"
                       for (n, k), r in by_k.iterrows()) + ".")
    sizes = bloom.groupby(["map_size", "value_size"]).median_ns_per_op.median()
    if sizes.index.get_level_values(1).nunique() > 1:
        out.append("Bloom lookups of absent keys by element size: " + "; ".join(
            f"{int(n):,} entries, {int(v)} B: {_ns(ns)} ns" for (n, v), ns in sizes.items()) + ".")
    return out
