"""One way to show results, for the terminal, the Markdown report and the plots: one label
function per configuration, one set of table rows, two outputs (rich and Markdown)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table

from mapbench.results.columns import COLUMNS, CONFIGURATION
from mapbench.results.stats import ABOVE, HOLDS_ONE, MIN_LOADS_FOR_VERDICT, direction
from mapbench.results.store import CONFIG_KEYS, config_key, plain

# How each configuration key reads in a label (the registry's; family and batch_size say nothing
# of their own: the strategy implies the one, the driver shows the other).
LABELS = {c.name: c.label for c in COLUMNS if c.role == CONFIGURATION}


def config_label(config: dict, keys: Iterable[str] | None = None) -> str:
    """'bloom lookup 1,000,000 hit 0': the given keys (default: every key with a value)."""
    config = {k: plain(v) for k, v in config.items()}  # NaN, as pandas gives a missing value, is None
    keys = CONFIG_KEYS if keys is None else [k for k in CONFIG_KEYS if k in set(keys)]
    if "batch_size" in keys and "driver" not in keys:
        keys = [*keys, "driver"]
    parts = [LABELS[k](config) for k in keys if config.get(k) is not None]
    return " ".join(p for p in parts if p)


# often set by the strategy (arrays keep 4-byte keys beside a hash's larger ones)
FOLLOW_STRATEGY = ("key_size", "value_size", "fill", "nr_hash_funcs", "key_distribution", "no_prealloc")


def varying_keys(configs: list[dict]) -> list[str]:
    """The keys that tell these configurations apart (at least the strategy); a key that only
    changes with the strategy (bloom's element size beside the hash's value), or the
    implementation that only changes with the engine (the kernel engine's rows are mapbench's), is
    left out."""
    distinct = lambda cs, k: len({str(c.get(k)) for c in cs})  # noqa: E731
    keys = [k for k in CONFIG_KEYS if distinct(configs, k) > 1]
    for by, follow in (("strategy", FOLLOW_STRATEGY), ("engine", ("implementation",))):
        if by in keys:
            groups: dict[str, list] = {}
            for c in configs:
                groups.setdefault(c.get(by), []).append(c)
            keys = [k for k in keys if k not in follow or any(distinct(cs, k) > 1 for cs in groups.values())]
    return keys or ["strategy"]


def shared_label(configs: list[dict]) -> str:
    """What every configuration of a table shares, for its title: 'kernel lookup 100,000 entries
    40 B keys ...' (the rows then name only what differs)."""
    varying = set(varying_keys(configs))
    first = configs[0]
    shared = [k for k in CONFIG_KEYS if k not in varying and all(str(c.get(k)) == str(first.get(k)) for c in configs)
              and (k, first.get(k)) != ("implementation", "mapbench")]  # mapbench's own builds go without saying
    return config_label(first, shared)


def fmt_bytes(n) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def fmt_ns(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def fmt_ratio(r: dict) -> str:
    """A head-to-head ratio and its 95 % CI (a t interval over its loads: docs/method.md,
    "Statistics"); one load has no CI."""
    if r.get("ratio") is None:
        return "undefined (denominator at or below its control)"
    if r.get("ci_low") is None or r.get("ci_high") is None:
        return f"{r['ratio']:.3f} (no CI: {r.get('loads') or 1} load)"
    return f"{r['ratio']:.3f} ({r['ci_low']:.3f} .. {r['ci_high']:.3f})"


def fmt_loads(r: dict) -> str:
    """How many loads a ratio was paired over, and whether that is enough for a verdict."""
    loads = r.get("loads") or 0
    few = loads < MIN_LOADS_FOR_VERDICT
    return f"{loads}" + (": too few for a verdict" if few else "")


def fmt_scaling(r: dict) -> str:
    """A summary's scaling efficiency with its CI; above 100 % is flagged (docs/method.md says
    what was found behind it), beyond its CI only with the loads a verdict needs."""
    e, low, high = r["scaling_efficiency"], r["scaling_ci_low"], r["scaling_ci_high"]
    loads = r.get("scaling_loads") or 0
    text = (f"scaling efficiency {e:.0%} ({low:.0%} .. {high:.0%})" if low is not None and high is not None
            else f"scaling efficiency {e:.0%} (no CI: {loads} load)")
    if e > 1:
        side = direction({"ratio": e, "ci_low": low, "ci_high": high, "loads": loads})
        text += (f" (above 100 %: more than {r['producers']} x one producer alone" +
                 {ABOVE: ", beyond the CI", HOLDS_ONE: "; the CI reaches 100 %"}.get(
                     side, f"; too few loads ({loads}) for a verdict") + "; see docs/method.md)")
    return text


SUMMARY_HEADER = ["configuration", "median ns/op", "95% CI", "CV", "ops/s", "control ns/op", "samples",
                  "map memory", "bytes/entry", "notes"]


def summary_rows(records: list[dict], markup: bool = True) -> list[list[str]]:
    keys = varying_keys(records)
    rows = []
    for r in records:
        wide = " (CV>10%)" if r["wide_spread"] else ""
        rows.append([
            config_label(r, keys),
            fmt_ns(r["median_ns_per_op"]) + (f" [yellow]{wide}[/]" if markup and wide else wide),
            f"{fmt_ns(r['ci_low'])} .. {fmt_ns(r['ci_high'])}",
            f"{r['cv']:.1%}",
            f"{r['ops_per_s'] / 1e6:.2f} M" if r["ops_per_s"] else "-",
            fmt_ns(r["control_ns_per_op"]),
            f"{r['samples']} / {r['instances']} loads",
            fmt_bytes(r["map_memory_bytes"]),
            f"{r['bytes_per_entry']:.0f} ({r['bytes_per_entry_source']})" if r.get("bytes_per_entry") is not None
            else "-",
            notes(r),
        ])
    return rows


def notes(r: dict) -> str:
    out = []
    if r.get("success_rate") is not None:
        out.append(f"{r['success_rate']:.1%} of {r['op']}s succeeded (figures per successful one)")
    if r.get("bytes_per_entry_source", "fdinfo").startswith("cgroup") and r.get("fdinfo_bytes_per_entry"):
        out.append(f"fdinfo {r['fdinfo_bytes_per_entry']:.0f} B/entry")
    if r.get("per_cpu"):
        out.append("per CPU: " + ", ".join(f"cpu{c} {ns:.1f}" for c, ns in sorted(r["per_cpu"].items())))
    if r.get("aggregate_ops_per_s"):
        out.append(f"all producers {r['aggregate_ops_per_s'] / 1e6:.2f} M ops/s")
    if r.get("window_overlap") is not None:
        out.append(f"all producers ran {r['window_overlap']:.1%} of each sample's span (lowest "
                   f"{r['window_overlap_min']:.1%})")
    if r.get("scaling_efficiency") is not None:
        out.append(fmt_scaling(r))
    if r.get("memory_current_bytes") is not None:
        out.append(f"{r['memory_source']}: {fmt_bytes(r['memory_current_bytes'])} now, "
                   f"{fmt_bytes(r['memory_peak_bytes'])} peak")
    if r.get("bloom_fp_rate") is not None:
        out.append(f"FP rate {r['bloom_fp_rate']:.4f} (theory {r['bloom_fp_theory']:.4f})")
    if r.get("events_per_s"):
        out.append(f"{r['events_per_s'] / 1e3:.0f}k events/s, {r['cpu_overhead_share']:.1%} of the CPU")
    if r.get("target_event_share") is not None:
        out.append(f"the load's events {r['target_event_share']:.0%} of all; run stats "
                   f"{fmt_ns(r['run_stats_ns_per_event'])} ns/event")
    if r.get("delay_median_ns"):
        out.append(f"median run-queue delay {r['delay_median_ns'] / 1e3:.1f} us")
    if r.get("huge_page_share") is not None:  # the memory engine's working set (docs/method.md, "Memory latency")
        out.append(f"{r['huge_page_share']:.0%} on transparent huge pages")
    return "; ".join(out)


RATIO_HEADER = ["comparison", "side", "vs", "ratio (95% CI)", "pairs", "loads"]


def ratio_rows(ratios: list[dict]) -> list[list[str]]:
    return [[r["context"], r["numerator"], r["denominator"], fmt_ratio(r), str(r["pairs"]), fmt_loads(r)]
            for r in ratios]


ENGINE_NOTES = {
    "kernel": "kernel engine: ns per map operation inside a BPF program, net of the control build "
              "(same loop and keys, no map operation), in throughput mode (independent ops back to back) or "
              "latency mode (each op waits for the one before), as the title or row says; ops/s from the "
              "gross figure.",
    "syscall": "syscall engine: ns per element, timed in native code around the syscalls.",
    "attached": "attached engine: ns per scheduler event of the load generator's tasks, timed inside the "
                "programs, net of empty programs on the same hooks (run stats beside it).",
    "reference": "reference engine: mapbench's native loops and a plain C loop over the same calls.",
}


def engine_note(engine: str, notes: dict[str, str] | None = None) -> str:
    """What an engine's figures are (`notes`: each engine's own, default ENGINE_NOTES); an engine
    without a note (one registered since, or by a test) is still shown."""
    return (ENGINE_NOTES if notes is None else notes).get(
        engine, f"{engine} engine: see `mapbench list` and docs/method.md for what its figures are.")


# The kernel engine's modes in the order they are shown: the default first; mixed: before --mode.
# A mode not named here (a new one, the attached engine's) comes after them.
MODE_ORDER = ("throughput", "mixed", "latency")


def mode_rank(mode) -> tuple:
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), str(mode))


def isa_rank(isa) -> tuple:
    """BPF ISAs (clang -mcpu) by version: v1 < v2 < v3 < v4."""
    digits = "".join(ch for ch in str(isa) if ch.isdigit())
    return (int(digits) if digits else -1, str(isa))


def newest_isa(values: Iterable) -> str | None:
    """The newest ISA among values: where a run measured several head to head (the default grid
    compares v1, v2 and v3), conclusions and plots that are not about the ISA are drawn at it."""
    return max((plain(v) for v in values if plain(v) is not None), key=isa_rank, default=None)
STAT_NOTE = ("A median's CI is a 95 % bootstrap interval, resampling loads, then samples. "
             "Ratios come from sides measured in the same loads, interleaved sample by sample: "
             "only they survive the drift of a shared machine between runs. A ratio's CI is a 95 % t "
             "interval over its loads' log ratios; a verdict on it needs "
             f"{MIN_LOADS_FOR_VERDICT} loads.")


def rich_table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 or name in ("verdict", "side", "vs", "notes") else "right")
    for row in rows:
        table.add_row(*row)
    return table


def markdown(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


DIFF_HEADER = ["verdict", "configuration", "base ns/op", "new ns/op", "new/base (95% CI)", "p (Holm)",
               "detects"]
_VERDICT_COLOUR = {"slower": "red", "faster": "green", "unchanged": "white", "inconclusive": "yellow"}


def diff_rows(changes, markup: bool = True, keys: list[str] | None = None) -> list[list[str]]:
    keys = keys or varying_keys([c.config for c in changes])
    rows = []
    for c in changes:
        colour = _VERDICT_COLOUR.get(c.verdict, "yellow")
        verdict = f"[{colour}]{c.verdict}[/]" if markup else c.verdict
        if c.ratio is None or c.ratio_ci_low is None:  # no ratio (c.reason says why), or no test of it
            rows.append([verdict, config_label(c.config, keys), fmt_ns(c.base_median), fmt_ns(c.new_median),
                         c.reason if c.ratio is None else f"{c.ratio:.3f} (no test)", "", ""])
            continue
        rows.append([verdict, config_label(c.config, keys), fmt_ns(c.base_median), fmt_ns(c.new_median),
                     f"{c.ratio:.3f} ({c.ratio_ci_low:.3f} .. {c.ratio_ci_high:.3f})", f"{c.p_holm:.2g}",
                     f">= {c.detectable:.2f}x"])
    return rows


def diff_title(result) -> str:
    return f"mapbench diff (threshold {result.threshold:.0%}, alpha {result.alpha} after Holm)"


def diff_counts(result) -> str:
    counts = result.counts()
    text = ", ".join(f"{n} {v}" for v, n in counts.items() if n or v in ("slower", "faster", "unchanged"))
    if counts.get("drift unknown"):  # diff.DRIFT_UNKNOWN: why those have no test, once
        text += ("; drift unknown: one run a side and no history of the configuration on this machine (two "
                 "runs under one kernel) to give a between-run variance, so run drift cannot be told from a "
                 "change (give each side several runs)")
    return text


def diff_markdown(result) -> str:
    """A pull-request comment: the verdict first, then what moved, then the rest folded."""
    moved = [c for c in result.changes if c.verdict in ("slower", "faster")]
    rest = [c for c in result.changes if c not in moved]
    keys = varying_keys([c.config for c in result.changes])
    lines = [f"**{diff_title(result)}**: {diff_counts(result)}", ""]
    if result.env_differences:
        lines += ["Environment differs: " + "; ".join(f"{k}: {', '.join(a)} -> {', '.join(b)}"
                                                      for k, (a, b) in result.env_differences.items()), ""]
    if moved:
        lines += [markdown(DIFF_HEADER, diff_rows(moved, False, keys)), ""]
    if rest:
        lines += ["<details><summary>" + f"{len(rest)} other configuration(s)</summary>", "",
                  markdown(DIFF_HEADER, diff_rows(rest, False, keys)), "", "</details>"]
    return "\n".join(lines)


# --- questions: a result set's comparisons grouped by what their sides differ in --------------------
# The report's opening table has a row per question (and mode), and the plots a figure per
# question. A question is found in the data, never named here: the comparisons of one engine
# whose sides differ in the same configuration keys, against the same denominator (bloom against
# hash at every size and hit ratio; batch sizes against one syscall per element; v2 and v3
# against v1). Where the sides differ in strategy, the numerators' strategies are part of the
# question too: a bloom filter in front of a hash and other map types instead of it are two.


def listed(labels: list[str], most: int = 6) -> str:
    """Labels joined, each once; more than `most`: the first few, "...", the last."""
    labels = list(dict.fromkeys(labels))
    return ", ".join(labels if len(labels) <= most else [*labels[:most - 2], "...", labels[-1]])


def questions(ratios: list[dict]) -> list[dict]:
    """The questions a set of head-to-head ratios answers, in the order they first appear: each a
    dict of `key`, `engine`, `title` ('kernel lookup, update: bloom or hash?'), `sides` (the keys
    that tell its sides apart), `context` (the keys that tell its ratios apart besides the
    sides and the mode) and `ratios`. Ratios without a figure (a net figure at or below its
    control) stay in."""
    comparisons: dict[str, list] = {}
    for r in ratios:
        comparisons.setdefault(r["comparison"], []).append(r)
    groups: dict[tuple, list] = {}
    sides_of: dict[tuple, list] = {}
    for rs in comparisons.values():
        configs = [rs[0]["denominator_config"], *(r["numerator_config"] for r in rs)]
        sides = varying_keys(configs)
        strategies = tuple(sorted({str(c.get("strategy")) for c in configs[1:]})) if "strategy" in sides else ()
        key = (configs[0].get("engine"), rs[0]["denominator"], tuple(sides), strategies)
        groups.setdefault(key, []).extend(rs)
        sides_of[key] = sides
    out = []
    for key, rs in groups.items():
        sides = sides_of[key]
        ops = listed([str(r["denominator_config"].get("op")) for r in rs if "op" not in sides], 4)
        context = [k for k in varying_keys([r["numerator_config"] for r in rs]) if k not in sides and k != "mode"]
        context = [k for k in context if len({str(r["numerator_config"].get(k)) for r in rs}) > 1]
        out.append({"key": key, "engine": key[0], "sides": sides, "context": context, "ratios": rs,
                    "title": f"{key[0]}{' ' + ops if ops else ''}: {listed([r['numerator'] for r in rs])} "
                             f"or {key[1]}?"})
    return out


def latest_runs(ratios: list[dict], rows) -> list[dict]:
    """The ratios of the latest run that measured each conclusion (numerator and denominator
    configurations) in `rows` (one machine's): a comparison several runs measured counts once, and
    one run's comparisons that share a conclusion all stay."""
    run_of = rows.groupby("comparison")["run_id"].first()
    started = rows.groupby("run_id")["timestamp"].min()
    key = lambda r: (config_key(r["numerator_config"]), config_key(r["denominator_config"]))  # noqa: E731
    newest: dict[tuple, str] = {}
    for r in ratios:
        run = run_of[r["comparison"]]
        if key(r) not in newest or (started[run], run) > (started[newest[key(r)]], newest[key(r)]):
            newest[key(r)] = run
    return [r for r in ratios if run_of[r["comparison"]] == newest[key(r)]]


def question_point(r: dict, q: dict) -> str:
    """One ratio of a question as a short label: its numerator (where the question has several)
    and what sets it apart from the question's other ratios ('lookup 100,000 entries hit 0')."""
    several = len({x["numerator"] for x in q["ratios"]}) > 1
    where = config_label(r["numerator_config"], q["context"]) if q["context"] else ""
    return " ".join(p for p in (r["numerator"] if several or not where else "", where) if p)


def question_slug(q: dict) -> str:
    """A question's file name: 'question-kernel-hash-strategy-bloom'."""
    engine, den, keys, strategies = q["key"]
    text = "-".join(["question", str(engine), den, *keys, *strategies]).lower().replace(" ", "_")
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)
