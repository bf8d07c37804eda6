"""The Markdown report of a result set, machine by machine: environment, how steady the run was,
conclusions (each a ratio of sides measured head to head in the same loads, scoped to the
machine and kernel), plots and tables; with several machines, the conclusions across them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mapbench.measure.machine import short_model
from mapbench.present import render
from mapbench.results import across
from mapbench.results.stats import (
    ABOVE,
    BELOW,
    MIN_LOADS_FOR_VERDICT,
    NO_RATIO,
    TOO_FEW_LOADS,
    WIDE_SPREAD_CV,
    direction,
)
from mapbench.results.store import ENV_KEYS, KERNEL_DEFAULTS, config_key, measured
from mapbench.results.summary import CONTEXT_KEYS, head_to_head, load_ids, summaries

KNEE = 0.05  # "stops paying": a 10x larger batch saves less than this share per element


def _verdict(r: dict, cheaper: str = "cheaper", dearer: str = "dearer") -> str:
    """How a ratio reads, through the one gate of verdicts (stats.direction): its CI below 1, the
    numerator is cheaper; above 1, dearer; paired over fewer than MIN_LOADS_FOR_VERDICT loads,
    no verdict, whatever its CI."""
    side = direction(r)
    if side == NO_RATIO:
        return "not comparable (a net figure at or below its control)"
    if side == TOO_FEW_LOADS:
        return f"too few loads ({r.get('loads') or 0}) for a verdict"
    return {BELOW: cheaper, ABOVE: dearer}.get(side, "not resolved from 1 by this run")


def _where(ratios: list[dict], **want) -> list[dict]:
    """Ratios whose numerator and denominator configurations have the given values; a key
    prefixed `den_` applies to the denominator only, `num_` to the numerator only."""
    def match(r):
        for key, value in want.items():
            side, _, k = key.partition("_") if key.startswith(("den_", "num_")) else ("both", "", key)
            configs = {"den": [r["denominator_config"]], "num": [r["numerator_config"]],
                       "both": [r["numerator_config"], r["denominator_config"]]}[side]
            if any(c.get(k) != value for c in configs):
                return False
        return True
    return [r for r in ratios if match(r)]


def _r(r: dict) -> str:
    return render.fmt_ratio(r)


def _sides(r: dict) -> tuple[dict, dict]:
    return r["numerator_config"], r["denominator_config"]


def _at_newest_isa(ratios: list[dict]) -> list[dict]:
    """The ratios, both sides, at the newest ISA among them (render.newest_isa): a conclusion that
    is not about the ISA is drawn at one."""
    return _where(ratios, isa=render.newest_isa(c.get("isa") for r in ratios for c in _sides(r)))


def _differ_in(ratios: list[dict], key: str) -> list[dict]:
    """The ratios whose sides differ in `key` (and have it); the rest of the configuration may differ too."""
    def differ(n, d):
        return n.get(key) is not None and d.get(key) is not None and n[key] != d[key]
    return [r for r in ratios if differ(*_sides(r))]


def _filtered(c: dict) -> bool:
    """A membership strategy with a filter in front of its map (bloom): it has hash functions."""
    return c.get("nr_hash_funcs") is not None


def _map_type(c: dict) -> bool:
    """A plain map type of the membership family (hash, LRU, per-CPU, array): no filter in front."""
    return c.get("family") == "membership" and not _filtered(c)


def _most_measured(ratios: list[dict], *keys: str) -> list[dict]:
    """The ratios whose numerator has the most measured values of `keys` among them (the grid's
    default, where a few comparisons vary it)."""
    counts: dict[tuple, int] = {}
    for r in ratios:
        value = tuple(str(r["numerator_config"].get(k)) for k in keys)
        counts[value] = counts.get(value, 0) + 1
    if not counts:
        return []
    usual = max(counts, key=counts.get)
    return [r for r in ratios if tuple(str(r["numerator_config"].get(k)) for k in keys) == usual]


def _mode(r: dict) -> str:
    """'throughput mode' or 'latency mode': what a kernel ratio's figures are (docs/method.md, "Modes")."""
    return render.config_label(r["numerator_config"], ["mode"])


def _by_mode(ratios: list[dict]) -> list[list[dict]]:
    """Kernel ratios of one series, a list per mode: a series never mixes the two figures."""
    groups: dict[str, list] = {}
    for r in ratios:
        groups.setdefault(_mode(r), []).append(r)
    return list(groups.values())


def _short_verdict(r: dict) -> str:
    """_verdict without its explanation: 'cheaper', 'dearer', 'not resolved from 1 by this run'."""
    return _verdict(r).split(" (")[0]


def _machine_name(rows: pd.DataFrame) -> str:
    """A machine's short name for a table cell: 'AMD EPYC [amd-26-2-1-9e0d687b]'."""
    model = rows["cpu_model"].dropna()
    return f"{short_model(model.iloc[0] if not model.empty else None)} [{across.joined(rows, 'machine')}]"


def _counted(verdicts: list[str]) -> str:
    """'cheaper at 2 of 9, dearer at 7': how a question's ratios read."""
    counts = {v: verdicts.count(v) for v in dict.fromkeys(verdicts)}
    if len(counts) == 1:
        return f"{verdicts[0]}" + (f" at all {len(verdicts)}" if len(verdicts) > 1 else "")
    return ", ".join(f"{v} at {n}" + (f" of {len(verdicts)}" if i == 0 else "") for i, (v, n) in
                     enumerate(sorted(counts.items(), key=lambda kv: -kv[1])))


def answer(q: dict, rs: list[dict]) -> str:
    """A question's answer in words, from its ratios' CIs: per numerator, how many points it is
    cheaper or dearer than the denominator at, and where it is cheaper when that is not everywhere."""
    by_num: dict[str, list] = {}
    for r in rs:
        by_num.setdefault(r["numerator"], []).append(r)
    verdicts = {_short_verdict(r) for r in rs}
    if len(by_num) > 1 and len(verdicts) == 1:  # every side reads alike: say it once
        return f"vs {rs[0]['denominator']}: every side {_counted([_short_verdict(r) for r in rs])}"
    parts = []
    for num, points in by_num.items():
        verdicts = [_short_verdict(r) for r in points]
        text = f"{num}: {_counted(verdicts)}"
        cheaper = [render.question_point(r, q) for r in points if _verdict(r) == "cheaper"]
        if cheaper and len(cheaper) < len(points) and len(by_num) == 1:
            text += " (cheaper at " + render.listed(cheaper, 3) + ")"
        parts.append(text)
    return f"vs {rs[0]['denominator']}: " + "; ".join(parts)


def _ends(rs: list[dict]) -> tuple[str, str]:
    """The ratio and its 95 % CI of one point; of several, the range of the ratios and the CIs'
    outer bounds (the lowest point's low end to the highest point's high end)."""
    rs = sorted((r for r in rs if r["ratio"] is not None), key=lambda r: r["ratio"])
    if not rs:
        return "-", "-"
    low, high = rs[0].get("ci_low"), rs[-1].get("ci_high")
    ci = "no CI (one load)" if low is None or high is None else f"{low:.3f} .. {high:.3f}"
    if len(rs) == 1:
        return f"{rs[0]['ratio']:.3f}", ci
    return f"{rs[0]['ratio']:.3f} .. {rs[-1]['ratio']:.3f} ({len(rs)} points)", ci


def which_map(parts: list[tuple[pd.DataFrame, list[dict]]], plots: list[Path] = (),
              base: Path = Path(".")) -> list[str]:
    """The report's opening: a row per question the comparisons answer (render.questions), mode
    and machine, each naming its machine, from each comparison's latest run on that machine; a
    question's plot linked where there is one."""
    figures = {p.stem: p for p in plots if p.suffix == ".png"}
    rows = []
    for machine_rows, ratios in parts:
        name = _machine_name(machine_rows)
        # a comparison several runs of the machine measured counts once: its latest run's ratio
        for q in render.questions(render.latest_runs(ratios, machine_rows)):
            by_mode: dict[str, list] = {}
            for r in q["ratios"]:
                by_mode.setdefault(_mode(r) or "-", []).append(r)
            plot = figures.get(render.question_slug(q))
            for mode, rs in sorted(by_mode.items(), key=lambda kv: render.mode_rank(kv[0].split(" ")[0])):
                rows.append([q["title"], answer(q, rs), *_ends(rs), mode, name]
                            + ([f"[plot]({plot.relative_to(base)})" if plot else "-"] if figures else []))
    if not rows:
        return ["## Which map, here", "", "(no head-to-head comparisons in this result set)", ""]
    header = ["question", "answer", "ratio", "95 % CI", "mode", "machine", *(["plot"] if figures else [])]
    return ["## Which map, here", "",
            "Each row: one question the comparisons of this result set answer, as the first side named / the "
            "last (below 1: the first is cheaper), head to head in the same loads, on the machine named. "
            "Cheaper or dearer only where the 95 % CI excludes 1. Several points (sizes, hit ratios, ops): the "
            "range of their ratios and the outer bounds of their CIs; every point is in the sections below.",
            "", render.markdown(header, rows), ""]


def _probe_records(records: list[dict]) -> list[dict]:
    return sorted((r for r in records if r.get("working_set_bytes") is not None),
                  key=lambda r: r["working_set_bytes"])


def _fits(n: float, rows: pd.DataFrame) -> str:
    """The smallest cache of the machine's fingerprint a number of bytes fits in."""
    for level in ("l2", "l3"):
        size = rows[f"{level}_cache_bytes"].dropna()
        if not size.empty and n <= size.max():
            return f"fits {level.upper()} ({render.fmt_bytes(size.max())})"
    return "beyond L3: DRAM"


def memory_latency(probe: list[dict], rows: pd.DataFrame, plots: list[Path] = (), base: Path = Path(".")) -> list[str]:
    """The memory engine's pointer chase (docs/method.md, "Memory latency"): ns per dependent load
    by working set (`probe`: its summaries), and where each map size of the run sits among them
    (its rows' map_memory_bytes); its plot linked where there is one."""
    probe = _probe_records(probe)
    scope = across.scope(rows)
    if not probe:
        return [f"## Memory latency {scope}", "", "No memory-latency probe in this result set "
                "(`mapbench run --engine memory`; the default sweep has one).", ""]
    thp = across.joined(rows, "thp_enabled")
    lines = [f"## Memory latency {scope}", "",
             f"A pointer chase through one random cycle of 64 B lines (the memory engine): ns per dependent load, "
             f"by working set, in this run; transparent hugepages: {thp}, and the share of each working set the "
             "kernel backed with huge pages beside it.", "",
             render.markdown(["working set", "ns per load", "95 % CI", "huge pages", "samples"],
                             [[render.config_label(r, ["working_set_bytes"]).removesuffix(" working set"),
                               render.fmt_ns(r["median_ns_per_op"]), f"{render.fmt_ns(r['ci_low'])} .. "
                               f"{render.fmt_ns(r['ci_high'])}",
                               "-" if r.get("huge_page_share") is None else f"{r['huge_page_share']:.0%}",
                               f"{r['samples']} / {r['instances']} loads"] for r in probe]), ""]
    memory: dict[int, list] = {}
    held = measured(rows)[["map_size", "map_memory_bytes"]].dropna()
    for size, group in held.groupby("map_size"):
        memory[int(size)] = sorted(group["map_memory_bytes"].unique())
    if memory:
        table = []
        def near(n: float) -> str:
            p = min(probe, key=lambda p: abs(np.log(p["working_set_bytes"] / n)))
            return (f"{render.config_label(p, ['working_set_bytes']).removesuffix(' working set')}: "
                    f"{render.fmt_ns(p['median_ns_per_op'])} ns")

        def spread(low: str, high: str) -> str:
            return low if low == high else f"{low} .. {high}"

        for size, held in sorted(memory.items()):
            low, high = min(held), max(held)
            table.append([f"{size:,}", spread(render.fmt_bytes(low), render.fmt_bytes(high)),
                          spread(near(low), near(high)), spread(_fits(low, rows), _fits(high, rows))])
        lines += ["Where the run's maps sit: each map size's memory (fdinfo's memlock over the map types "
                  "measured at it, smallest .. largest), the probed working set nearest each end (in log "
                  "distance) with its ns per load, and the smallest cache of this machine each end fits.", "",
                  render.markdown(["map size (entries)", "map memory", "nearest working set: ns per load",
                                   "cache"], table), ""]
    lines += [f"![memory_latency]({p.relative_to(base)})" for p in plots
              if p.suffix == ".png" and p.stem == "memory_latency"]
    return lines + [""]


def membership(ratios) -> list[str]:
    """A filter in front of the map (bloom+hash) against the map alone: lookups at the filter's
    and keys' most measured shape, and updates."""
    out = []
    in_front = [r for r in _where(ratios, engine="kernel") if _filtered(r["numerator_config"])
                and _map_type(r["denominator_config"])]
    lookups = _most_measured(_at_newest_isa(_where(in_front, op="lookup")), "nr_hash_funcs", "value_size",
                             "key_distribution")
    by_size: dict[tuple, list] = {}
    for r in sorted(lookups, key=lambda r: (_mode(r), r["numerator_config"]["map_size"],
                                            r["numerator_config"]["hit_ratio"])):
        c = r["numerator_config"]
        by_size.setdefault((c["map_size"], _mode(r)), []).append((c["hit_ratio"], r))
        out.append(f"Lookup, {c['map_size']:,} entries, hit ratio {c['hit_ratio']:g}, {_mode(r)}: bloom+hash / hash "
                   f"= {_r(r)}: {_verdict(r, 'the filter is cheaper', 'the filter is dearer')}.")
    for (size, mode), hits in by_size.items():
        paying = [h for h, r in hits if direction(r) == BELOW]
        unsettled = [h for h, r in hits if direction(r) == TOO_FEW_LOADS]
        out.append(f"**At {size:,} entries, {mode}, the bloom filter pays for hit ratios "
                   + (f"up to {max(paying):g}" if paying else "nowhere in the grid")
                   + f" (of {', '.join(f'{h:g}' for h, _ in hits)})"
                   + (f"; too few loads for a verdict at {', '.join(f'{h:g}' for h in unsettled)}"
                      if unsettled else "") + ".**")
    for r in _at_newest_isa(_where(in_front, op="update")):
        out.append(f"Update, {r['numerator_config']['map_size']:,} entries, {_mode(r)}: keeping a bloom filter "
                   f"beside the hash costs bloom+hash / hash = {_r(r)} per update ({_verdict(r)}).")
    return out


REFERENCE_GOAL, REFERENCE_BOUND = 0.05, 0.10  # mapbench / minimal: what the engine aims for, what it must hold


def _references(ratios) -> list[dict]:
    """The engine's builds head to head with the minimal reference programs (bpf/minimal.bpf.c)."""
    return _where(ratios, engine="kernel", num_implementation="mapbench", den_implementation="minimal")


def _reference_label(r: dict) -> str:
    return render.config_label(r["numerator_config"], ["strategy", "op", "map_size", "hit_ratio"])


def reference(ratios) -> list[str]:
    """How far the engine's figures are from the op alone: mapbench / minimal, per mode."""
    out = []
    for mode in sorted({_mode(r) for r in _references(ratios)}, reverse=True):  # throughput first
        refs = [r for r in _references(ratios) if _mode(r) == mode and r["ratio"] is not None]
        beyond = [r for r in refs if abs(r["ratio"] - 1) > REFERENCE_BOUND]
        out.append(f"{'**' if beyond else ''}The engine against its reference, {mode} (the minimal programs: the op "
                   f"alone, key on the stack): {sum(abs(r['ratio'] - 1) <= REFERENCE_GOAL for r in refs)} of "
                   f"{len(refs)} within {REFERENCE_GOAL:.0%}, " + ("; ".join(
                       f"beyond {REFERENCE_BOUND:.0%}: {_reference_label(r)} {_r(r)}" for r in beyond) + "**"
                       if beyond else f"all within {REFERENCE_BOUND:.0%}") + " (table below).")
    return out


def reference_table(ratios) -> list[str]:
    """mapbench / minimal with its CI, one row per configuration, one column per mode."""
    cells: dict[str, dict] = {}
    for r in _references(ratios):
        cells.setdefault(_reference_label(r), {})[_mode(r)] = render.fmt_ratio(r)
    if not cells:
        return []
    modes = sorted({m for row in cells.values() for m in row}, reverse=True)
    return ["## The engine against its reference", "",
            "The engine's builds / the minimal programs (bpf/minimal.bpf.c: the op alone, key on the stack, "
            "in a plain loop), head to head in the same loads, each net of its own control (docs/method.md, "
            f"\"Minimal reference\"). Goal: within {REFERENCE_GOAL:.0%}; bound: {REFERENCE_BOUND:.0%}.", "",
            render.markdown(["mapbench / minimal", *modes],
                            [[label, *(row.get(m, "-") for m in modes)] for label, row in cells.items()]), ""]


def modes(ratios) -> list[str]:
    """The comparisons measured in both modes: where latency mode reaches another conclusion than
    throughput mode, in bold, and how many it does not change. The kernel engine's modes as the
    rows have them, but for the one its rows from before --mode read as (neither mode's figure)."""
    pairs: dict[tuple, dict] = {}
    for r in ratios:
        n, d = r["numerator_config"], r["denominator_config"]
        if (n.get("engine") == "kernel" and n.get("mode") not in (None, KERNEL_DEFAULTS["mode"])
                and n["implementation"] == d["implementation"]):
            key = (config_key({**n, "mode": None}), config_key({**d, "mode": None}))
            pairs.setdefault(key, {})[n["mode"]] = r
    both = [{m: p[m] for m in sorted(p, key=render.mode_rank)} for p in pairs.values() if len(p) > 1]
    out = []
    for p in both:
        # a change of conclusion needs a conclusion in both modes: not one with too few loads
        if len({_verdict(r) for r in p.values()}) > 1 and all(direction(r) != TOO_FEW_LOADS for r in p.values()):
            r = next(iter(p.values()))
            n, d = r["numerator_config"], r["denominator_config"]
            shared = render.config_label(n, [k for k in CONTEXT_KEYS if k != "mode" and n.get(k) == d.get(k)])
            out.append(f"**The mode changes the conclusion: {r['numerator']} / {r['denominator']}, {shared}: "
                       + "; ".join(f"{_verdict(p[m])} in {m} mode, {_r(p[m])}" for m in p) + ".**")
    if both:
        out.append(f"Of {len(both)} comparisons measured in both modes, {len(out)} reach another conclusion in "
                   "latency mode (each op waiting for the one before) than in throughput mode (independent ops "
                   "back to back).")
    return out


def _ns(records: list[dict], config: dict) -> float | None:
    """This run's median ns/op of one configuration (for context beside a ratio)."""
    for r in records:
        if all(r.get(k) == v for k, v in config.items() if k in r):
            return r["median_ns_per_op"]
    return None


def _ns_pair(records, r) -> str:
    num, den = _ns(records, r["numerator_config"]), _ns(records, r["denominator_config"])
    if num is None or den is None:
        return ""
    return f" ({num:.0f} vs {den:.0f} ns in this run)"


def shapes(ratios, records) -> list[str]:
    """One line per choice of map type and shape: the ratio measured head to head, and this run's
    absolute figures beside it."""
    out = []
    kernel = [r for r in _where(ratios, engine="kernel") if all(map(_map_type, _sides(r)))]
    types = _at_newest_isa(_differ_in(_where(kernel, op="lookup", den_no_prealloc=False), "strategy"))
    by_context: dict[tuple, list] = {}
    for r in types:
        d = r["denominator_config"]
        by_context.setdefault((d["map_size"], d["key_size"], d["value_size"], d["key_distribution"], d["hit_ratio"],
                               _mode(r), d["strategy"]), []).append(r)
    for (size, key, value, dist, hit, mode, base), rs in sorted(by_context.items(), key=lambda kv: str(kv[0])):
        out.append(f"Lookup at {size:,} entries, {key} B keys, {value} B values, {dist} keys, hit ratio {hit:g}, "
                   f"{mode}, against {base}: " + "; ".join(
                       f"{r['numerator_config']['strategy']} {_r(r)}{_ns_pair(records, r)}"
                       for r in sorted(rs, key=lambda r: r["numerator_config"]["strategy"])) + ".")
    same_type = [r for r in kernel if r["numerator_config"]["strategy"] == r["denominator_config"]["strategy"]]
    groups: dict[tuple, list] = {}
    for r in _differ_in(same_type, "key_size"):
        d = r["denominator_config"]
        groups.setdefault((d["strategy"], d["op"], d["map_size"], d["key_distribution"], _mode(r), d["key_size"]),
                          []).append(r)
    for (strategy, op, size, dist, mode, base), rs in groups.items():
        out.append(f"{strategy} {op} at {size:,} entries, {dist} keys, {mode}, by key size against {base} B keys: "
                   + "; ".join(
            f"{r['numerator_config']['key_size']} B: {_r(r)}"
            for r in sorted(rs, key=lambda r: r["numerator_config"]["key_size"])) + ".")
    groups = {}
    for r in _differ_in(same_type, "value_size"):
        d = r["denominator_config"]
        groups.setdefault((d["strategy"], d["op"], d["map_size"], _mode(r), d["value_size"]), []).append(r)
    for (strategy, op, size, mode, base), rs in groups.items():
        out.append(f"{strategy} {op} at {size:,} entries, {mode}, by value size against {base} B (the program reads or "
                   "writes the whole value): " + "; ".join(
                       f"{r['numerator_config']['value_size']} B: {_r(r)}"
                       for r in sorted(rs, key=lambda r: r["numerator_config"]["value_size"])) + ".")
    for r in _where(ratios, engine="kernel", num_no_prealloc=True, den_no_prealloc=False):
        n, d = r["numerator_config"], r["denominator_config"]
        if any(n[k] != d[k] for k in n if k != "no_prealloc"):  # the same work but for preallocation
            continue
        mem = {c["no_prealloc"]: c for c in records
               if all(c.get(k) == v for k, v in n.items() if k != "no_prealloc")}
        memory = (f"; memory per entry held {mem[True]['bytes_per_entry']:.0f} B without preallocation vs "
                  f"{mem[False]['bytes_per_entry']:.0f} B with ({mem[True]['bytes_per_entry_source']})"
                  if all(mem.get(k, {}).get("bytes_per_entry") for k in (True, False)) else "")
        held = f", {n['fill']:.0%} full" if n.get("fill", 1) != 1 else ""
        out.append(f"**{n['strategy']} {n['op']} at {n['map_size']:,} entries{held}, {_mode(r)}: no-prealloc / "
                   f"prealloc = {_r(r)}"
                   f"{_ns_pair(records, r)}{memory}.**")
    return out


PUBLISHED_CHURN = ("Published for comparison (Hou Tao's htab memory series, 8 vCPUs, 8 producers, a "
                   "syscall-driven bench, so absolute rates do not carry over): overwrite with "
                   "preallocation 191.4k op/s at 1.24 MiB vs the BPF memory allocator 126.6k op/s at 2.26 MiB; "
                   "add on one CPU, delete on another: 39.7k op/s / 1.47 MiB preallocated vs 21.3k op/s / "
                   "17.5 MiB (28.9 MiB peak).")


def _workload(c: dict) -> str | None:
    """The churn workload a configuration is, after the kernel's htab-mem bench."""
    if c.get("op") == "update" and not c.get("writers"):
        return "overwrite"
    if c.get("op") == "delete_insert" and not c.get("writers"):
        return "add+delete on one CPU"
    if c.get("write_op") == "insert" and c.get("op") in ("delete", "insert") and c.get("writers"):
        return "add on one CPU, delete on another"
    return None


def contention(ratios, records) -> list[str]:
    """Producers head to head with one producer, readers alone and beside a writer; then the
    churn workloads' rates and memory."""
    out = []
    roles = ("producers", "writers", "write_op", "overlap", "role", "op")  # what a producer side changes
    for r in _where(ratios, engine="kernel", den_producers=1, den_writers=0, num_role="reader"):
        n, d = r["numerator_config"], r["denominator_config"]
        if n["producers"] == 1 or any(n[k] != d[k] for k in n if k not in roles):
            continue
        rec = next((x for x in records if all(x.get(k) == v for k, v in n.items())), {})
        with_writers = (f"beside {n['writers']} writing ({n['write_op']})" if n["writers"]
                        else f"every producer doing {n['op']}")
        extra = ""
        if rec.get("aggregate_ops_per_s"):
            extra = f"; all producers {rec['aggregate_ops_per_s'] / 1e6:.2f} M ops/s"
        if rec.get("scaling_efficiency") is not None:
            extra += f", {render.fmt_scaling(rec)}"
        out.append(f"{n['strategy']} {n['op']} at {n['map_size']:,} entries, {n['producers']} producers "
                   f"({n.get('overlap') or 'same'} entries), {with_writers}, {_mode(r)}: per-{n['op']} cost on each "
                   f"CPU / one "
                   f"producer alone = {_r(r)}{extra}.")
    for r in _where(ratios, engine="kernel", den_producers=1, den_writers=0, num_role="writer"):
        n = r["numerator_config"]
        if n["producers"] > 1 and n["writers"] < n["producers"]:
            out.append(f"{n['strategy']} at {n['map_size']:,} entries, {_mode(r)}, the writer among "
                       f"{n['producers']} producers: its {n['write_op']} / one reader's lookup alone = {_r(r)}.")
    churn = [c for c in records if c.get("engine") == "kernel" and _workload(c) and c.get("memory_source")
             and c["producers"] > 1]
    for c in sorted(churn, key=lambda c: (str(_workload(c)), c["strategy"], c["map_size"], bool(c["no_prealloc"]),
                                          c["producers"], str(c.get("role")))):
        rate = c.get("aggregate_ops_per_s") or c.get("ops_per_s")
        memory = (f"{render.fmt_bytes(c['memory_current_bytes'])} held, {render.fmt_bytes(c['memory_peak_bytes'])}"
                  f" at peak ({c['memory_source']})" if c.get("memory_current_bytes") is not None
                  else f"fdinfo {render.fmt_bytes(c['map_memory_bytes'])} ({c['memory_source']})")
        if c.get("bytes_per_entry") is not None and c.get("entries_held"):
            memory += (f", {c['bytes_per_entry']:.0f} B per entry held ({c['bytes_per_entry_source']}, "
                       f"{c['entries_held']:,.0f} entries held)")
        if c.get("success_rate") is not None:
            memory += f"; {c['success_rate']:.0%} of the {c['op']}s succeeded, and the rates count only those"
        role = f", the producers that {c['op']}" if c.get("role") and c.get("writers") else ""
        out.append(f"Churn, {_workload(c)}: {c['strategy']} "
                   f"{'without' if c.get('no_prealloc') else 'with'} preallocation, {c['map_size']:,} entries, "
                   f"{c['producers']} producers{role}, {render.config_label(c, ['mode'])}: {rate / 1e6:.2f} M ops/s "
                   "all producers, "
                   f"{c['median_ns_per_op']:.0f} ns per op on each CPU; {memory}.")
    if churn:
        out.append(PUBLISHED_CHURN)
    return out


def _named(strategy: str) -> str:
    return strategy.replace("_", " ")


def per_task(ratios) -> list[str]:
    """Task storage against a pid-keyed hash: the attached engine's strategies head to head on live
    events, and the kernel engine's per-task family in a test run."""
    out = []
    for r in sorted(_at_newest_isa(_differ_in(_where(ratios, engine="attached"), "strategy")),
                    key=lambda r: (r["denominator_config"]["map_size"], r["denominator_config"]["nr_tasks"])):
        n, d = _sides(r)
        minimum = f", only delays from {int(d['min_delay_us']):,} us reported" if d.get("min_delay_us") else ""
        out.append(f"**Per task, live scheduler events, {d['nr_tasks']} tasks switching, the hash holding "
                   f"{d['map_size']:,} other pids{minimum}: {_named(n['strategy'])} / {_named(d['strategy'])} = "
                   f"{_r(r)} per event** ({_verdict(r)}).")
    for r in _at_newest_isa(_differ_in(_where(ratios, engine="kernel", family="per_task"), "strategy")):
        n = r["denominator_config"]["map_size"]
        out.append(f"Per task in a test run, one task, {_mode(r)}: getting the current task's record from task "
                   f"storage / getting a random one of {n:,} pids from a pid-keyed hash = {_r(r)}. Task storage here "
                   f"serves one task, not {n:,}: this is the cost of a lookup by pid in a hash of that size "
                   "against a pointer chase; the live comparison above is the per-event figure.")
    return out


def _pct(x) -> str:
    return "-" if x is None or pd.isna(x) else f"{100 * x:.1f} %"


def lru_pressure(records: list[dict], ratios) -> list[str]:
    """LRU under pressure (--op cache, docs/method.md, "LRU under pressure"): for each LRU map, list
    kind and size, its hit ratio against an exact LRU's of the same capacity on the same draws by
    working set, how full it was when it first evicted; per-CPU lists against one common list."""
    out = []
    cache = [r for r in records if r.get("op") == "cache" and r.get("engine") == "kernel"
             and r.get("strategy") != "control"]
    groups: dict[tuple, list] = {}
    for r in cache:
        key = (r["strategy"], r.get("lru_lists"), r["map_size"], r["producers"], r["mode"], r["key_distribution"],
               r.get("zipf_s"))
        groups.setdefault(key, []).append(r)
    for (strategy, lists, size, producers, mode, drawn, s), rs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        rs = sorted(rs, key=lambda r: r["working_set"])
        hits = "; ".join(f"at {r['working_set']:g}x capacity {_pct(r.get('measured_hit_ratio'))}"
                         + (f" against an ideal {_pct(r.get('ideal_hit_ratio'))}"
                            if r.get("ideal_hit_ratio") is not None and not pd.isna(r["ideal_hit_ratio"]) else "")
                         + f" ({render.fmt_ns(r['median_ns_per_op'])} ns per op)" for r in rs)
        first = [r for r in rs if r.get("first_eviction_entries") is not None
                 and not pd.isna(r["first_eviction_entries"])]
        evicts = (f"; it first evicted holding {int(min(r['first_eviction_entries'] for r in first)):,} of {size:,} "
                  f"entries ({_pct(min(r['first_eviction_share'] for r in first))} full)" if first
                  else "; it never evicted")
        lists = f" ({lists} LRU lists)" if isinstance(lists, str) else " (no LRU: a full map refuses inserts)"
        keys = f"zipf keys (s={s:g})" if drawn == "zipf" else f"{drawn} keys"
        out.append(f"**LRU under pressure, {strategy.replace('_', ' ')}{lists}, {size:,} entries, {keys}, "
                   f"{producers} producer{'s' if producers > 1 else ''}, {mode} mode: it hits {hits}{evicts}.**")
    for r in _differ_in(_where(ratios, engine="kernel", op="cache"), "lru_lists"):
        n, d = _sides(r)
        if any(n.get(k) != d.get(k) for k in n if k != "lru_lists"):  # the lists alone differ
            continue
        producers = f", {n['producers']} producers" if n["producers"] > 1 else ""
        out.append(f"LRU lists, {n['strategy'].replace('_', ' ')} at {n['working_set']:g}x of {n['map_size']:,} "
                   f"entries{producers}: {n['lru_lists']} / {d['lru_lists']} lists = {_r(r)} per op ({_verdict(r)}).")
    return out


def task_creation(records: list[dict], ratios) -> list[str]:
    """Fresh tasks (the create engine, docs/method.md, "Task creation"): a record made on fork and
    removed at exit, task storage against a pid-keyed hash, per op, with memory per live task."""
    out = []
    mine = [r for r in records if r.get("engine") == "create" and r.get("strategy") != "control"]
    for r in sorted(_at_newest_isa(_differ_in(_where(ratios, engine="create"), "strategy")),
                    key=lambda r: (r["numerator_config"]["op"] == "delete", r["numerator_config"]["map_size"])):
        n, d = _sides(r)
        ns = {c["strategy"]: next((x for x in mine if all(x.get(k) == c.get(k) for k in
                                                           ("strategy", "op", "map_size", "nr_tasks", "isa"))), None)
              for c in (n, d)}
        storage, pid = ns.get("task_storage"), ns.get("pid_hash")
        if storage is None or pid is None:
            continue
        what = "deleting its record at exit" if n["op"] == "delete" else "making its record on fork"
        memory = ""
        if storage.get("bytes_per_task") is not None and not pd.isna(storage["bytes_per_task"]):
            memory = (f"; task storage held {storage['bytes_per_task']:.0f} B per live task (the cgroup), where the "
                      f"pid hash had preallocated {render.fmt_bytes(pid['map_memory_bytes'])} for its "
                      f"{n['map_size']:,} dummy pids and room for live tasks (fdinfo)"
                      if pid.get("map_memory_bytes") is not None and not pd.isna(pid["map_memory_bytes"]) else "")
        out.append(f"**Fresh tasks ({d['nr_tasks']:,} threads at once, the hash holding {d['map_size']:,} other "
                   f"pids), {what}: task storage {render.fmt_ns(storage['median_ns_per_op'])} ns against "
                   f"{render.fmt_ns(pid['median_ns_per_op'])} ns for the pid hash ({n['strategy']} / "
                   f"{d['strategy']} = {_r(r)}, {_verdict(r)}){memory}.**")
    return out


def article(ratios, df: pd.DataFrame) -> list[str]:
    """The experiments of the article mapbench grew from (Dmitrii Dolgov, "Running Fast and Slow:
    Experiments with BPF Program Performance", P99 CONF 2023): BPF ISAs, and task storage spread
    over several maps on one task."""
    out = []
    for r in _differ_in(ratios, "isa"):
        n, d = r["numerator_config"], r["denominator_config"]
        if n["strategy"] != d["strategy"]:
            continue
        mode = f", {_mode(r)}" if n["engine"] == "kernel" else ""
        out.append(f"ISA, {n['engine']} {n['strategy']} at {n['map_size']:,}{mode}: {n['isa']} / {d['isa']} = {_r(r)} "
                   f"({_verdict(r, 'faster', 'slower')}).")
    for counts in _by_mode(_differ_in(_where(ratios, num_family="map_count"), "strategy")):
        series = "; ".join(f"{r['numerator_config']['nr_maps']} maps: {_r(r)}"
                           for r in sorted(counts, key=lambda r: r["numerator_config"]["nr_maps"]))
        dearer = [r["numerator_config"]["nr_maps"] for r in counts if direction(r) == ABOVE]
        cheaper_everywhere = all(direction(r) == BELOW for r in counts)
        out.append(f"Task storage with several maps on one task, {_mode(counts[0])}, ns per get / a pid hash of "
                   f"{counts[0]['denominator_config']['map_size']:,} pids: {series}. Task storage "
                   + (f"costs more than the hash from {min(dearer)} maps on (the kernel caches 16 storages "
                      "per task)." if dearer else "stays cheaper up to the largest count measured."
                      if cheaper_everywhere else "is not shown dearer at any count measured, and not every count "
                      f"has a verdict (a CI that holds 1, or fewer than {MIN_LOADS_FOR_VERDICT} loads)."))
    filters = [r for r in ratios if all(map(_filtered, _sides(r)))]
    for funcs in _by_mode(_differ_in(filters, "nr_hash_funcs")):
        out.append(f"Bloom filter lookups of absent keys by hash functions, {_mode(funcs[0])}, k / "
                   f"k={funcs[0]['denominator_config']['nr_hash_funcs']}: " + "; ".join(
            f"k={r['numerator_config']['nr_hash_funcs']}: {_r(r)}"
            for r in sorted(funcs, key=lambda r: r["numerator_config"]["nr_hash_funcs"])) + ".")
    for elems in _by_mode(_differ_in(filters, "value_size")):
        out.append(f"Bloom filter lookups of absent keys by element size, {_mode(elems[0])}, against "
                   f"{elems[0]['denominator_config']['value_size']} B: " + "; ".join(
            f"{r['numerator_config']['value_size']} B: {_r(r)}"
            for r in sorted(elems, key=lambda r: r["numerator_config"]["value_size"])) + ".")
    bloom = df[df.bloom_fp_theory.notna() & (df.hit_ratio == 0)]
    bloom = bloom[bloom.value_size == bloom.value_size.mode().min()]  # the most measured element size
    by_k = bloom.groupby(["map_size", "nr_hash_funcs"]).agg(fp=("bloom_fp_rate", "mean"),
                                                              theory=("bloom_fp_theory", "mean"))
    if len(by_k) > 1:
        out.append("Bloom filter false-positive rate, measured vs (1 - e^(-kn/m))^k for the bit array "
                   "the kernel allocates: " + "; ".join(
                       f"{int(n):,} entries, k={int(k)}: {r.fp:.4f} vs {r.theory:.4f}" for (n, k), r in by_k.iterrows())
                   + ".")
    return out


def syscalls(ratios, df: pd.DataFrame) -> list[str]:
    out = []
    groups: dict[str, list] = {}
    for r in _where(ratios, engine="syscall", den_driver="elem", num_driver="batch"):
        if r["numerator_config"]["strategy"] == r["denominator_config"]["strategy"]:
            groups.setdefault(r["comparison"], []).append(r)
    for rs in groups.values():
        rs = sorted(rs, key=lambda r: r["numerator_config"]["batch_size"] or 0)
        c = rs[0]["denominator_config"]
        best = min(rs, key=lambda r: r["ratio"] or np.inf)
        text = (f"{c['strategy']} {c['op']}, {c['map_size']:,} entries: batches of n / one syscall per element: "
                + "; ".join(f"{r['numerator_config']['batch_size']:,}: {r['ratio']:.2f}" for r in rs)
                + f". Best: batches of {best['numerator_config']['batch_size']:,}, {_r(best)}")
        steps = [(a["numerator_config"]["batch_size"], a["ratio"], b["ratio"]) for a, b in zip(rs, rs[1:])]
        knee = next((size for size, a, b in steps if b > a * (1 - KNEE)), None)
        if knee is not None:
            text += (f"; batching stops paying at about {knee:,} entries per call (a 10x larger batch saves "
                     f"less than {KNEE:.0%} per element)")
        out.append(text + ".")
    types: dict[str, list] = {}
    for r in _differ_in(_where(ratios, engine="syscall"), "strategy"):
        types.setdefault(r["denominator_config"]["strategy"], []).append(r)
    for base, rs in types.items():
        out.append(f"Other map types against a {base} of the same size, same op and driver: " + "; ".join(
            f"{r['numerator_config']['strategy']} {render.config_label(r['numerator_config'], ['op', 'driver'])}: "
            f"{_r(r)}" for r in rs) + ".")
    refs = _where(ratios, engine="reference", num_implementation="mapbench", den_implementation="c")
    if refs:
        out.append("mapbench's native loops / a plain C loop over the same calls: " + "; ".join(
            f"{render.config_label(r['numerator_config'], ['strategy', 'op', 'driver', 'map_size'])}: {_r(r)}"
            for r in refs) + ".")
    return out


def steadiness(df: pd.DataFrame) -> list[str]:
    """What this run measured of its own noise: the spread of per-load medians, per engine."""
    m = measured(df)
    out = []
    for engine, g in m.groupby("engine"):
        cvs = []
        for _, c in g.groupby(["comparison", "position"], dropna=False):
            medians = c.groupby(load_ids(c).to_numpy()).ns_per_op.median()
            if len(medians) > 1 and medians.mean() > 0:
                cvs.append(medians.std(ddof=1) / medians.mean())
        if cvs:
            out.append(f"{engine}: loads of one configuration differed by {np.median(cvs):.1%} (median CV of "
                       f"per-load medians over {len(cvs)} configurations; 90th percentile "
                       f"{np.percentile(cvs, 90):.1%}).")
    return out


def interference(df: pd.DataFrame) -> list[str]:
    """How many measured samples were re-taken for interference, how many takes that discarded
    and how many kept takes were hit all the same (docs/method.md, "Interference"). Rows from
    before the columns (retakes null) say nothing."""
    if "retakes" not in df:
        return []
    taken = df[df.retakes.notna() & ~df.warmup.fillna(False).astype(bool)]  # warm-ups are never re-taken
    taken = taken[taken["producer"].fillna(0) == 0] if "producer" in taken else taken  # a row per producer
    if taken.empty:
        return []
    retaken, discarded = int((taken.retakes > 0).sum()), int(taken.retakes.sum())
    still = int(taken.interfered.fillna(False).astype(bool).sum())
    return [f"{retaken} of {len(taken)} samples re-taken for interference (steal, preemption, migration, "
            f"pressure): {discarded} takes discarded; {still} kept although hit (their retakes ran out; "
            "flagged `interfered`)."]


def precision(df: pd.DataFrame, ratios: list[dict], most: int = 12) -> list[str]:
    """Against the run's --precision target (rows' precision_target): how many ratios reached it,
    and the ones that did not, widest first (docs/method.md, "Precision on demand")."""
    if "precision_target" not in df or df.precision_target.isna().all():
        return []
    target = float(df.precision_target.dropna().max())
    width = {id(r): (r["ci_high"] - r["ci_low"]) / 2 / r["ratio"] if r["ci_low"] is not None else float("inf")
             for r in ratios if r["ratio"]}
    short = sorted((r for r in ratios if r["ratio"] and width[id(r)] > target), key=lambda r: -width[id(r)])
    lines = [f"Precision target: a 95 % CI within ±{target:.0%} of each ratio; {len(width) - len(short)} of "
             f"{len(width)} reached it{', within the budget' if short else ''}."]
    lines += [f"did not reach it: {r['numerator']} / {r['denominator']}, {r['context']}: ±{width[id(r)]:.0%} "
              f"({r.get('loads', '?')} loads)" for r in short[:most]]
    if len(short) > most:
        lines.append(f"and {len(short) - most} more (`mapbench show` lists every ratio with its CI)")
    return lines


def write_report(table, path: Path, title: str, plots: list[Path] = (),
                 engine_notes: dict[str, str] | None = None) -> Path:
    path.write_text(report_markdown(table.to_pandas(), title, plots, path.parent, engine_notes))
    return path


def report_markdown(df_all: pd.DataFrame, title: str, plots: list[Path] = (), base: Path = Path("."),
                    engine_notes: dict[str, str] | None = None) -> str:
    """The report of a result set: one part per machine, every conclusion scoped to the machine
    and kernel it was measured on; with several machines, first the conclusions across them.
    `base`: where the report goes (plots are linked relative to it); `engine_notes`: what each
    engine's figures are (default render.ENGINE_NOTES)."""
    parts = [(m, rows, *machine_part(rows, plots, base)) for m, rows in across.by_machine(df_all)]
    engines = df_all["engine"].dropna().unique()
    lines = [f"# {title}", "", *which_map([(rows, ratios) for _, rows, _, ratios in parts], plots, base)]
    for _, rows, _, _ in parts:
        lines += memory_latency(summaries(rows[rows["working_set_bytes"].notna()]), rows, plots, base)
    lines += [" ".join(render.engine_note(e, engine_notes) for e in engines)
             + " Medians with 95 % bootstrap CIs (loads resampled, then samples). How each is measured: "
             "docs/method.md.", "",
             "Every conclusion below is a ratio of sides measured head to head: loaded together and run "
             "sample by sample in rotating order, in one run. Absolute figures drift between runs and "
             "machines of this kind (by 1.1x to 2.6x between two VMs); ratios measured this way do not "
             "carry that drift, but they are their machine's: each holds for the machine and kernel its "
             "heading names, and another machine may reverse it. Compare absolute figures only with "
             "`mapbench diff`.", ""]
    lines += across.section([(m, rows, ratios) for m, rows, _, ratios in parts])
    for _, rows, part, _ in parts:
        lines += part if len(parts) == 1 else [f"## Measured {across.scope(rows)}", "", *across.nested(part)]
    return "\n".join(lines) + "\n"


def machine_part(df_rows: pd.DataFrame, plots: list[Path] = (), base: Path = Path(".")) -> tuple[list[str], list]:
    """The report's sections for one machine's rows, and their head-to-head ratios."""
    records, ratios = summaries(df_rows), head_to_head(df_rows)
    df = pd.DataFrame(records)
    status = df_rows[df_rows.strategy != "control"].groupby("status").size().to_dict()
    lines = ["## Environment", ""]
    lines += [f"- {c}: {across.joined(df_rows, c)}" for c in ENV_KEYS]
    lines += [f"- rows by status: {status}", "", "## How steady this run was", ""]
    lines += [f"- {s}" for s in steadiness(df_rows)] or ["- (one load per configuration: no spread to show)"]
    lines += [f"- {s}" for s in interference(df_rows)]
    lines += [f"- {s}" for s in precision(df_rows, ratios)]
    lines += ["", f"## Conclusions {across.scope(df_rows)}", ""]
    found = (reference(ratios) + modes(ratios) + membership(ratios) + shapes(ratios, records)
             + contention(ratios, records) + per_task(ratios)
             + syscalls(ratios, df) + article(ratios, df) + prefix_family(ratios, records)
             + program_level(ratios, records, df_rows) + lru_pressure(records, ratios)
             + task_creation(records, ratios)
             + output(ratios, records) + map_in_map(ratios, records))
    if not df.empty:
        wide = df[df.cv > WIDE_SPREAD_CV]
        if not wide.empty:
            found.append(f"{len(wide)} configuration(s) had a wide spread (CV > {WIDE_SPREAD_CV:.0%}): read "
                         "those figures with care.")
    lines += [f"- {c}" for c in found] or ["- (no comparisons in this result set)"]
    lines += ["", *reference_table(ratios)]
    for plot in plots:  # a question's plot is linked from the opening table, the memory probe's beside it
        if plot.suffix == ".png" and not plot.stem.startswith("question-") and plot.stem != "memory_latency":
            lines += [f"![{plot.stem}]({plot.relative_to(base)})", ""]
    if ratios:
        lines += ["## Head-to-head ratios", "", render.markdown(render.RATIO_HEADER, render.ratio_rows(ratios)), ""]
    if records:
        lines += ["## Results", "", render.markdown(render.SUMMARY_HEADER, render.summary_rows(records, markup=False)),
                  ""]
    unsupported = df_rows[(df_rows.status != "ok") & (df_rows.strategy != "control")]
    if not unsupported.empty:
        lines += ["## Not measured", ""]
        lines += [f"- {render.config_label(r._asdict())}: {r.status}: {r.message}"
                  for r in unsupported.itertuples(index=False)]
    return lines, ratios


def _prefix_point(c: dict) -> str:
    """'1,000,000 ipv4 prefixes (table mix)': the point a prefix-family ratio answers for."""
    lens = {"table": "a routing table's length mix", "hosts": "half host entries, half a table's mix"}.get(
        c.get("prefix_lens"), f"/{c.get('prefix_lens')}")
    return f"{int(c['map_size']):,} {c.get('addr_family')} prefixes ({lens})"


def _ms_pair(records, r) -> str:
    num, den = _ns(records, r["numerator_config"]), _ns(records, r["denominator_config"])
    return "" if num is None or den is None else f" ({num / 1e6:.1f} vs {den / 1e6:.1f} ms in this run)"


# the prefix family's alternatives to the LPM trie, as a sentence names them
_AGAINST_TRIE = {"exact_hash": "exact hash", "front_hash": "exact hash in front of the trie"}


def prefix_family(ratios, records) -> list[str]:
    """Trie or exact-match hash, at my size? One sentence per point: the exact hash of N keys
    (or the hash of the host entries in front of the trie) against the LPM trie of N prefixes,
    per op (kernel engine) and for the free (free engine), with both figures, the ratio and its CI."""
    out = []
    pairs = [r for r in ratios if r["numerator_config"].get("strategy") in _AGAINST_TRIE
             and r["denominator_config"].get("strategy") == "lpm_trie"]
    for r in sorted(pairs, key=lambda r: (r["numerator_config"].get("engine"), r["numerator_config"].get("op"),
                                          r["numerator_config"].get("addr_family"), _mode(r),
                                          r["numerator_config"]["map_size"], r["numerator_config"].get("hit_ratio"))):
        n, d = _sides(r)
        other = _AGAINST_TRIE[n["strategy"]]
        verdict = _verdict(r, f"the {other} is cheaper", "the trie is cheaper")
        if n.get("op") == "free":
            out.append(f"Trie or {other} at {_prefix_point(d)}, freeing the map (close() to memory back): "
                       f"{other} / trie = {_r(r)}{_ms_pair(records, r)}: {verdict}.")
            continue
        what = f"lookup, hit ratio {n['hit_ratio']:g}" if n.get("op") == "lookup" else n.get("op")
        out.append(f"Trie or {other} at {_prefix_point(d)}, {what}, {_mode(r)}: {other} / trie = {_r(r)}"
                   f"{_ns_pair(records, r)}: {verdict}.")
    return out


def _record(records: list[dict], config: dict) -> dict:
    """This run's summary of one configuration ({} if it has none)."""
    for r in records:
        if all(r.get(k) == v for k, v in config.items() if k in r):
            return r
    return {}


def _bytes_change(records: list[dict], r: dict, what: str) -> str:
    """'2,736 -> 2,832 B' of a figure of both sides' summaries, or '' where one lacks it."""
    d, n = (_record(records, c).get(what) for c in (r["denominator_config"], r["numerator_config"]))
    if d is None or n is None or pd.isna(d) or pd.isna(n):
        return ""
    return f"{int(d):,} -> {int(n):,} B" + (" (the same)" if d == n else "")


def _only_differ_in(ratios: list[dict], key: str) -> list[dict]:
    """The ratios whose sides differ in `key` and in nothing else of their configuration."""
    def alone(r):
        n, d = _sides(r)
        return {k for k in set(n) | set(d) if str(n.get(k)) != str(d.get(k))} == {key}
    return [r for r in _differ_in(ratios, key) if alone(r)]


def _kernel_point(c: dict) -> str:
    minimal = " (the minimal reference)" if c.get("implementation") == "minimal" else ""
    return f"{c['strategy']} {c['op']}{minimal} at {int(c['map_size']):,} entries, {c['mode']} mode"


def _stats_pairs(df_rows: pd.DataFrame, comparison: str, strategy: str) -> pd.DataFrame:
    """One attached comparison's samples of one strategy, the stats-on side beside the stats-off
    one, paired by load and sample as head_to_head pairs them."""
    rows = measured(df_rows[(df_rows.comparison == comparison) & (df_rows.strategy == strategy)])
    keys = ["run_id", "instance", "sample"]
    on = rows[rows.run_stats == "on"].set_index(keys)
    off = rows[rows.run_stats == "off"].set_index(keys)
    return on[["run_stats_ns_per_event", "wall_ns_per_event"]].join(
        off[["ns_per_op", "wall_ns_per_event"]], rsuffix="_off", how="inner")


def _count(n, what: str) -> str:
    return f"{int(n):,} {what}" + ("" if int(n) == 1 else "s")


def _fmt(ratio) -> str:
    """A stats.paired_ratio as fmt_ratio reads it."""
    return render.fmt_ratio({"ratio": ratio[0], "ci_low": ratio[1], "ci_high": ratio[2], "loads": ratio[3]})


def program_level(ratios: list[dict], records: list[dict], df_rows: pd.DataFrame) -> list[str]:
    """The article's program-level experiments (issue 22): BPF-to-BPF calls against inlining,
    `restrict` and clang's missed-optimization remarks, many distinct programs on one path (the
    pack allocator), and what BPF run stats cost."""
    from mapbench.results.stats import paired_ratio

    out = []
    kernel = _where(ratios, engine="kernel")
    for r in _only_differ_in(kernel, "calls"):
        n, d = _sides(r)
        out.append(f"BPF-to-BPF call / inlined accessor, {_kernel_point(d)}: {n['calls']} / {d['calls']} = {_r(r)} "
                   f"per op ({_verdict(r)}); the program {_bytes_change(records, r, 'prog_xlated_bytes')} "
                   f"xlated, {_bytes_change(records, r, 'prog_jited_bytes')} jited.")
    for r in _only_differ_in(kernel, "restrict"):
        n, d = _sides(r)
        rn, rd = _record(records, n), _record(records, d)
        remarks = (f"clang's missed-optimization remarks {int(rd['missed_remarks_total'])} -> "
                   f"{int(rn['missed_remarks_total'])} ({rd['missed_remarks']} -> {rn['missed_remarks']})"
                   if rn.get("missed_remarks") and rd.get("missed_remarks") else "remarks not recorded")
        out.append(f"`restrict` on the accessor's pointers, {_kernel_point(d)}: restrict {n['restrict']} / "
                   f"{d['restrict']} = {_r(r)} per op ({_verdict(r)}); {remarks}; the program "
                   f"{_bytes_change(records, r, 'prog_xlated_bytes')} xlated.")
    chains = _where(ratios, engine="programs")
    for stats in sorted({c.get("run_stats") for r in chains for c in _sides(r)} - {None}):
        series = sorted(_only_differ_in(_where(chains, run_stats=stats), "nr_programs"),
                        key=lambda r: r["numerator_config"]["nr_programs"])
        if not series:
            continue
        d = series[0]["denominator_config"]
        layout = "; ".join(f"{int(c['nr_programs']):,}: {rec['chain_ns_per_event']:,.0f} ns per event, "
                           f"{int(rec['prog_jited_bytes']):,} B jited in {_count(rec['text_pages'], 'page')} "
                           + ("of one 2 MiB region" if int(rec["text_regions"]) == 1
                              else f"across {int(rec['text_regions'])} regions of 2 MiB")
                           for c in [d, *(r["numerator_config"] for r in series)]
                           if (rec := _record(records, c)).get("text_pages") is not None
                           and not pd.isna(rec["text_pages"]))
        out.append(f"Distinct programs on one event's path (programs engine, run stats {stats}), ns per program run "
                   f"against {d['nr_programs']} program: " + "; ".join(
                       f"{r['numerator_config']['nr_programs']:,}: {_r(r)} ({_short_verdict(r)})" for r in series)
                   + f". The chains, packed: {layout} (a page per program without the pack allocator).")
    for r in _only_differ_in(chains, "code_layout"):
        n, d = _sides(r)
        rn, rd = _record(records, n), _record(records, d)
        pages = (f"; the chain's code {_count(rd['text_pages'], 'page')} -> {_count(rn['text_pages'], 'page')} "
                 f"({_count(rd['text_regions'], 'region')} -> {_count(rn['text_regions'], 'region')} of 2 MiB)"
                 if rn.get("text_pages") is not None and rd.get("text_pages") is not None else "")
        out.append(f"The same programs spread a page apart / packed, a chain of {n['nr_programs']:,} programs "
                   f"(programs engine): {_r(r)} per program run ({_verdict(r)}){pages}.")
    for r in _only_differ_in(chains, "run_stats"):
        n, d = _sides(r)
        on, off = (_record(records, c).get("median_ns_per_op") for c in (n, d))
        cost = f": {on - off:.0f} ns more per program run ({on:.0f} vs {off:.0f} ns)" if on and off else ""
        out.append(f"BPF run stats on / off, a chain of {d['nr_programs']:,} programs (programs engine): "
                   f"{_r(r)} per program run ({_verdict(r)}){cost}.")
    for r in _only_differ_in(_where(ratios, engine="attached"), "run_stats"):
        n, d = _sides(r)
        line = (f"BPF run stats on / off, attached {n['strategy']} ({int(n['nr_tasks'])} tasks, "
                f"{int(n['map_size']):,} pids): the in-program figure per event {_r(r)} ({_verdict(r)})")
        pairs = _stats_pairs(df_rows, r["comparison"], n["strategy"]) if "comparison" in r else pd.DataFrame()
        if not pairs.empty:
            loads = [f"{run}/{i}" for run, i, _ in pairs.index]
            rs = paired_ratio(pairs["run_stats_ns_per_event"], pairs["ns_per_op"], loads)
            wall = paired_ratio(pairs["wall_ns_per_event"], pairs["wall_ns_per_event_off"], loads)
            added = pairs["wall_ns_per_event"].median() - pairs["wall_ns_per_event_off"].median()
            line += (f"; run stats' run_time_ns/run_cnt (stats on) / the program's own timer (stats off) = "
                     f"{_fmt(rs)}; the CPU's time per event of the load, on / off = {_fmt(wall)} ({added:+.0f} ns)")
        out.append(line + ".")
    return out


def _consumer(c: dict) -> str:
    return "at full speed" if not c.get("consumer_rate") else f"at most {c['consumer_rate']:,.0f} events/s"


def _loss(rec: dict) -> str:
    loss, rate = rec.get("loss_rate"), rec.get("emitted_events_per_s")
    if loss is None or pd.isna(loss):
        return ""
    return f"{loss:.0%} lost" + (f", {rate / 1e6:.2f} M emitted/s" if rate is not None and not pd.isna(rate) else "")


def output(ratios, records) -> list[str]:
    """Ring buffer against perf buffer (docs/method.md, "Output: ring buffer and perf buffer"): one
    line per comparison, each side per event emitted against the first (perf_buffer output, in the
    engine's default order), with what each lost and how many it emitted a second."""
    groups: dict[str, list] = {}
    for r in _where(ratios, engine="output"):
        groups.setdefault(r["comparison"], []).append(r)
    out = []
    order = lambda rs: tuple(rs[0]["denominator_config"].get(k) or 0 for k in  # noqa: E731
                             ("wakeup_every", "producers", "consumer_rate", "buffer_bytes", "event_size"))
    for rs in sorted(groups.values(), key=order):
        d = rs[0]["denominator_config"]
        sides = "; ".join(f"{r['numerator_config']['strategy']} {r['numerator_config']['op']} costs {_r(r)} of it "
                          f"({_verdict(r)})" for r in rs)
        lost = "; ".join(f"{c['strategy']} {c['op']} {_loss(_record(records, c))}"
                         for c in [d] + [r["numerator_config"] for r in rs])
        setting = ", ".join(filter(None, (render.config_label(d, [k]) for k in ("buffer_bytes", "wakeup_every"))))
        out.append(f"**Output, {d['event_size']}-byte events, {d['producers']} producer(s), consumer {_consumer(d)}, "
                   f"{setting}, per event emitted against "
                   f"{d['strategy']} {d['op']}"
                   f"{_ns_pair_one(records, d)}: {sides}.** Lost: {lost}.")
    return out


def _ns_pair_one(records, config) -> str:
    ns = _ns(records, config)
    return f" ({ns:,.0f} ns in this run)" if ns is not None else ""


def map_in_map(ratios, records) -> list[str]:
    """Two lookups through a map of maps against one in a flat hash keyed by the compound key; and
    what replacing an inner map from user space costs per update, and which RCU wait it shows."""
    groups: dict[str, list] = {}
    for r in _at_newest_isa(_where(ratios, engine="kernel", family="map_in_map")):
        if r["numerator_config"]["strategy"] != r["denominator_config"]["strategy"]:
            groups.setdefault(r["comparison"], []).append(r)
    out = []
    for rs in sorted(groups.values(), key=lambda rs: (_mode(rs[0]), rs[0]["denominator_config"]["nr_maps"],
                                                      rs[0]["denominator_config"]["map_size"])):
        d = rs[0]["denominator_config"]
        out.append(f"**Map in map, {d['map_size']:,} entries over {d['nr_maps']} inner maps, {_mode(rs[0])}, per "
                   f"lookup against one {d['strategy']}{_ns_pair_one(records, d)}: "
                   + "; ".join(f"{r['numerator_config']['strategy']} costs {_r(r)} of it ({_verdict(r)})" for r in rs)
                   + ".**")
    for rec in records:
        if rec.get("engine") == "syscall" and rec.get("op") == "replace_inner" and rec.get("strategy") != "control":
            ns = rec.get("gross_median_ns_per_op") or rec["median_ns_per_op"]
            # a full grace period is several scheduler ticks (ms); an expedited one forces it in tens of us
            wait = ("a full RCU grace period (synchronize_rcu)" if ns >= 1e6
                    else "an expedited RCU grace period (synchronize_rcu_expedited), or none")
            article = "an" if rec["strategy"][0] in "aeiou" else "a"
            more = rec["median_ns_per_op"] / 1e6
            out.append(f"**Replacing an inner map of {article} {rec['strategy']} from user space takes "
                       f"{ns / 1e6:.2f} ms per update ({more:.2f} ms more than a plain array update): this kernel "
                       f"waits for {wait}.** Published: about 15 ms per update before, 88 us after commit "
                       "ff34657aa72a (Linux 6.19), Superluminal's workload (hardware not stated).")
    return out
