"""Every column of a result row, once: its Arrow type, its role, how it reads in a label, the
value a row without it reads as, and how a summary aggregates it. The store's schema and key
lists, the labels, the summaries' figures and history's suspects are derived from COLUMNS.

Adding a configuration axis: its Column here (role CONFIGURATION, with a label, and `implied` if
rows from before it had one value of it) and its name in CONFIGURATION_ORDER; the engine that
measures it fills it in. Older files read it as null, then as `implied`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

# Roles: what a column says about its row.
RUN = "run"  # which run wrote the row, and when
ENVIRONMENT = "environment"  # where and with what the row was measured (the same for a whole run)
BUILD = "build"  # the BPF object the row's side ran
CONFIGURATION = "configuration"  # which configuration the row measures: summaries, diff, resume, labels
LOAD = "load"  # which load of its run: samples of one load share maps and hash seeds
SAMPLE = "sample"  # where and how the sample was taken (bookkeeping, not a figure)
FIGURE = "figure"  # what the sample measured
STATUS = "status"  # whether it was measured, and why not
ROLES = (RUN, ENVIRONMENT, BUILD, CONFIGURATION, LOAD, SAMPLE, FIGURE, STATUS)
AGGREGATES = ("median", "mean", "max")  # pandas Series methods


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    role: str
    # configuration: how the value reads in a label (render.config_label); "" says nothing
    label: Callable[[dict], str] | None = None
    # the value a row without the column reads as (a file from before it, an engine without the axis)
    implied: object = None
    # figure: how summaries.summaries pools a configuration's samples (one of AGGREGATES)
    aggregate: str | None = None
    doc: str = ""
    # configuration: named in a head-to-head ratio's context when its sides share it
    context: bool = False
    # environment, build: history names it at a change point where it changed. Off for a column
    # that changes at every commit, which would be named at every step.
    suspect: bool = True


def _c(name, type, role, doc="", **kw) -> Column:
    return Column(name, type, role, doc=doc, **kw)


def _env(name, type, doc="", **kw) -> Column:
    return Column(name, type, ENVIRONMENT, doc=doc, **kw)


def _config(name, type, label, doc="", **kw) -> Column:
    return Column(name, type, CONFIGURATION, label=label, doc=doc, **kw)


def _figure(name, type, aggregate=None, doc="") -> Column:
    return Column(name, type, FIGURE, aggregate=aggregate, doc=doc)


def _mode(c: dict) -> str:
    # the kernel engine's rows from before --mode read as "mixed" (store.KERNEL_DEFAULTS), the
    # attached engine's by the figure they hold (store.as_measured)
    return {"mixed": "mixed mode (before --mode)", "load events": "the load's events",
            "run stats": "every event, by run stats (before the load's events were timed)"}.get(
        c["mode"], f"{c['mode']} mode")


def _binary(n) -> str:
    """A byte count in the largest binary unit it is a whole number of: 32 KiB, 1 GiB, 1536 B."""
    n = int(n)
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


# In the order of the Parquet schema: columns are only ever appended.
COLUMNS: tuple[Column, ...] = (
    _c("run_id", pa.string(), RUN),
    _c("timestamp", pa.timestamp("us", tz="UTC"), RUN),
    _env("mapbench_version", pa.string()),
    _env("git_describe", pa.string(), "changes at every commit; object_sha256 says whether the programs did",
         suspect=False),
    _env("host", pa.string()),
    _env("kernel_release", pa.string()),
    _env("cpu_model", pa.string()),
    _env("nr_cpus", pa.int32()),
    _env("jit_enabled", pa.bool_()),
    _env("clang_version", pa.string()),
    _env("libbpf_version", pa.string()),
    _env("machine", pa.string(), "the fingerprint's id (machine.py): the dataset's partition, diff's match"),
    _env("machine_name", pa.string(), "'AMD EPYC, 2 vCPUs, L2 1 MiB, L3 32 MiB, 23 GiB'"),
    _env("cpu_vendor", pa.string()),
    _env("cpu_family", pa.string()),
    _env("cpu_model_number", pa.string()),
    _env("cpu_stepping", pa.string()),
    _env("microcode", pa.string()),
    _env("l2_cache_bytes", pa.int64()),
    _env("l3_cache_bytes", pa.int64()),
    _env("memory_total_bytes", pa.int64()),
    _env("cpu_vulnerabilities", pa.string(), "/sys/devices/system/cpu/vulnerabilities, 'name: state | ...'"),
    _env("thp_enabled", pa.string(), "transparent hugepages: always, madvise or never"),
    _config("isa", pa.string(), lambda c: c["isa"], "BPF ISA (clang -mcpu)", context=True),
    _c("object_sha256", pa.string(), BUILD, "the compiled BPF object's SHA-256"),
    _config("engine", pa.string(), lambda c: c["engine"], context=True),
    _config("family", pa.string(), lambda c: c["family"] if c.get("engine") == "own" else "",
            "implied by the strategy, never in a label; the own-program engine's source file"),
    _config("strategy", pa.string(), lambda c: c["strategy"], context=True),
    _config("op", pa.string(), lambda c: c["op"], context=True),
    _config("driver", pa.string(), lambda c: (f"batch {int(c['batch_size']):,}"
                                              if c.get("driver") == "batch" and c.get("batch_size") else c["driver"]),
            context=True),
    _config("map_size", pa.int64(), lambda c: f"{int(c['map_size']):,} " + (
        "dummy pids" if c.get("engine") == "attached" else "entry" if c["map_size"] == 1 else "entries"),
        context=True),
    _config("value_size", pa.int32(), lambda c: f"{int(c['value_size'])} B values", context=True),
    _config("key_size", pa.int32(), lambda c: f"{int(c['key_size'])} B keys", implied=4, context=True),
    _config("fill", pa.float64(), lambda c: f"fill {c['fill']:g}", implied=1.0, context=True),
    _figure("entries", pa.int64(), "max", "the entries a filled map holds (fill x map_size)"),
    _config("zipf_s", pa.float64(), lambda c: f"s={c['zipf_s']:g}", context=True),
    _config("key_distribution", pa.string(), lambda c: f"{c['key_distribution']} keys", context=True),
    _config("seed", pa.int64(), lambda c: f"seed {int(c['seed'])}" if c.get("engine") == "kernel" else "",
            "only the kernel engine has --seed", implied=0),
    _config("hit_ratio", pa.float64(),
            lambda c: f"hit {c['hit_ratio']:g}" if c.get("op") == "lookup" and c.get("engine") == "kernel" else "",
            context=True),
    _figure("measured_hit_ratio", pa.float64(), "mean"),
    _config("batch_size", pa.int64(), lambda c: "", "shown with the driver"),
    _config("implementation", pa.string(),
            lambda c: {"c": "C loop", "mapbench": "mapbench", "minimal": "minimal"}.get(c["implementation"])),
    _config("mode", pa.string(), _mode, "kernel engine: throughput or latency (docs/method.md, \"Modes\")",
            context=True),
    _c("retries", pa.int64(), SAMPLE),
    _c("passes", pa.int64(), SAMPLE),
    _config("nr_hash_funcs", pa.int32(), lambda c: f"k={int(c['nr_hash_funcs'])}", context=True),
    _c("comparison", pa.string(), SAMPLE, "the sides measured head to head in the same loads"),
    _c("position", pa.int32(), SAMPLE, "the side's place in its comparison (0: the denominator)"),
    _c("run_order", pa.int32(), SAMPLE),
    _c("instance", pa.int32(), LOAD),
    _c("load_id", pa.string(), SAMPLE, "run/comparison/load: one load of one comparison, never pooled with another's"),
    _c("load_started_at", pa.timestamp("us", tz="UTC"), SAMPLE, "when its load began (loads are spread over the run)"),
    _c("precision_target", pa.float64(), SAMPLE,
       "--precision of its run: the widest relative CI half-width its comparison was to reach"),
    _c("sample", pa.int32(), SAMPLE),
    _c("warmup", pa.bool_(), SAMPLE),
    _figure("ops", pa.int64(), doc="attempted"),
    _figure("ops_succeeded", pa.int64(), doc="where an op can fail (writes): those that did what they asked"),
    _figure("success_rate", pa.float64()),
    _figure("hits", pa.int64()),
    _figure("elapsed_ns", pa.int64()),
    _figure("ns_per_op", pa.float64()),
    _figure("gross_ns_per_op", pa.float64()),
    _figure("control_ns_per_op", pa.float64(), "median"),
    _figure("map_memory_bytes", pa.int64(), "max"),
    _figure("bloom_fp_rate", pa.float64(), "mean"),
    _figure("bloom_fp_theory", pa.float64(), "mean"),
    _figure("prog_xlated_bytes", pa.int64(), "max"),
    _figure("prog_jited_bytes", pa.int64(), "max"),
    _config("nr_tasks", pa.int32(), lambda c: f"{int(c['nr_tasks'])} tasks", context=True),
    _config("nr_maps", pa.int32(), lambda c: f"{int(c['nr_maps'])} maps"),
    _config("no_prealloc", pa.bool_(), lambda c: "no prealloc" if c["no_prealloc"] else "prealloc",
            "rows from before the axis: store.as_measured (PREALLOC_CHOICE)"),
    _config("producers", pa.int32(), lambda c: f"{int(c['producers'])} producer" + ("s" if c["producers"] != 1 else ""),
            implied=1),
    _config("writers", pa.int32(), lambda c: f"{int(c['writers'])} writing" if c["writers"] else "", implied=0),
    _config("write_op", pa.string(), lambda c: f"({c['write_op']})"),
    _config("overlap", pa.string(), lambda c: f"{c['overlap']} entries"),
    _config("role", pa.string(), lambda c: f"[{c['role']}s]"),
    _c("producer", pa.int32(), SAMPLE),
    _c("started_ns", pa.int64(), SAMPLE),
    _c("ended_ns", pa.int64(), SAMPLE, "with started_ns: this producer's window (CLOCK_MONOTONIC)"),
    _figure("window_overlap", pa.float64(), doc="several producers: the share of the sample's span all of them ran"),
    _figure("aggregate_ops_per_s", pa.float64(), "median"),
    _figure("memory_current_bytes", pa.int64(), "max"),
    _figure("memory_peak_bytes", pa.int64(), "max"),
    _figure("memory_source", pa.string(), doc="where the memory figures come from: the cgroup or fdinfo"),
    _figure("entries_held", pa.int64(), "median", "after the sample, counted from successful inserts and deletes"),
    _figure("bytes_per_entry", pa.float64(), doc="the cgroup's usage / entries held"),
    _figure("fdinfo_bytes_per_entry", pa.float64(), "median", "fdinfo memlock / entries held"),
    # the memory engine (measure/engines/memory.py): a pointer chase through a working set
    _config("working_set_bytes", pa.int64(), lambda c: f"{_binary(c['working_set_bytes'])} working set",
            "memory engine: the pointer chase's working set in bytes", context=True),
    _figure("huge_page_share", pa.float64(), "mean", "memory engine: the share of the working set on transparent "
            "huge pages (/proc/self/smaps AnonHugePages)"),
    _figure("events_per_s", pa.float64(), "median"),
    _figure("cpu_overhead_share", pa.float64(), "median"),
    _figure("run_stats_ns_per_event", pa.float64(), "median"),
    _figure("target_event_share", pa.float64(), "median"),
    _figure("delay_median_ns", pa.float64(), "median"),
    _figure("delays_recorded", pa.int64()),
    _figure("load_round_trips", pa.int64()),
    _figure("delay_hist", pa.list_(pa.int64())),
    _c("cpu", pa.int32(), SAMPLE),
    _c("load_avg_1m", pa.float64(), SAMPLE),
    # Interference over the kept take of a sample (measure/interference.py; docs/method.md,
    # "Interference"); rows from before these columns read as null.
    _c("steal_ticks", pa.int64(), SAMPLE, "the measuring CPU's steal in USER_HZ ticks (/proc/stat) during the sample"),
    _c("involuntary_switches", pa.int64(), SAMPLE, "the measuring thread's involuntary context switches during it"),
    _c("migrations", pa.int64(), SAMPLE, "the measuring thread's migrations during it (it is pinned: 0 expected)"),
    _c("cpu_pressure_us", pa.int64(), SAMPLE, "µs some task waited for a CPU during it (/proc/pressure/cpu some)"),
    _c("retakes", pa.int64(), SAMPLE, "takes of this sample discarded for interference before this one"),
    _c("interfered", pa.bool_(), SAMPLE, "the kept take was hit too (its retakes ran out, or a warm-up)"),
    _c("status", pa.string(), STATUS),
    _c("message", pa.string(), STATUS),
    # the own-program engine (measure/engines/own.py): a user's own program
    _config("setup", pa.string(), lambda c: c["setup"], "own-program engine: what the programs ran on (packets, "
            "context, maps sized and filled, the load)", context=True),
    _c("cflags", pa.string(), BUILD, "own-program engine: the variant's extra clang flags"),
    # the attached engine: runqslower's min_us, the report path's threshold (docs/method.md, "The runqslower model")
    _config("min_delay_us", pa.int64(), lambda c: f"delays >= {int(c['min_delay_us']):,} us reported"
            if c["min_delay_us"] else "", implied=0),
    # the prefix family (bpf/prefix.bpf.c; docs/method.md, "Prefixes")
    _config("addr_family", pa.string(), lambda c: c["addr_family"], "prefix family: ipv4 or ipv6 keys",
            context=True),
    _config("prefix_lens", pa.string(),
            lambda c: {"table": "table mix", "hosts": "hosts + table mix"}.get(c["prefix_lens"],
                                                                              f"/{c['prefix_lens']}"),
            "prefix family: 'table' (a routing table's length mix), 'hosts' (half host entries) or one prefix length",
            context=True),
    # The article's program-level experiments (docs/method.md, "The article's program-level experiments")
    _config("calls", pa.string(),
            lambda c: {"inline": "inlined", "subprog": "subprog call"}.get(c["calls"], c["calls"]),
            "kernel engine: the accessor inlined or a BPF-to-BPF call (--calls); kernel rows before it: inline. Not "
            "in a ratio's context, as implementation is not: named where the sides differ in it"),
    _config("restrict", pa.string(), lambda c: "restrict" if c["restrict"] == "on" else "no restrict",
            "kernel engine: the accessor's pointers restrict (--restrict); kernel rows before it: off"),
    _figure("missed_remarks", pa.string(), "max", "clang's missed-optimization remarks compiling the side's "
            "object, by pass ('gvn 215, licm 17')"),
    _figure("missed_remarks_total", pa.int64(), "max", "the remarks in all"),
    _config("nr_programs", pa.int32(), lambda c: f"{int(c['nr_programs'])} programs",
            "programs engine: distinct programs on the event's path (--programs)"),
    _figure("chain_ns_per_event", pa.float64(), "median", "programs engine: the chain's time per event, net of "
            "the control's"),
    _figure("text_pages", pa.int64(), "max", "programs engine: 4 KiB pages the chain's jited code spans "
            "(/proc/kallsyms)"),
    _figure("text_regions", pa.int64(), "max", "programs engine: 2 MiB regions (the pack allocator's unit) it spans"),
    _figure("prog_load_ms", pa.float64(), "median", "programs engine: loading the build's programs, ms"),
    _config("run_stats", pa.string(), lambda c: f"run stats {c['run_stats']}",
            "attached and programs engines: BPF run stats on or off while the side ran (--run-stats); attached "
            "rows before it: on"),
    _figure("wall_ns_per_event", pa.float64(), "median", "attached engine: the measuring CPU's time per event of "
            "the load, everything included"),
    _config("code_layout", pa.string(), lambda c: f"{c['code_layout']} code",
            "programs engine: each program as small as it is (packed) or padded to about a page (spread, --layout)"),
    # LRU under pressure (kernel engine, --op cache; docs/method.md, "LRU under pressure")
    _config("working_set", pa.float64(), lambda c: f"working set {c['working_set']:g}x",
            "--op cache: distinct keys drawn as a multiple of --size (the capacity)", context=True),
    _config("lru_lists", pa.string(), lambda c: f"{c['lru_lists']} LRU lists",
            "LRU hashes: common (one list, per-CPU free lists) or percpu (BPF_F_NO_COMMON_LRU); rows from "
            "before the axis: store.as_measured (LRU_LISTS_CHOICE)"),
    _figure("ideal_hit_ratio", pa.float64(), "mean", "an exact LRU of the same capacity on the same draws"),
    _figure("evictions", pa.int64(), doc="--op cache: entries the map evicted during the sample (the map's: "
            "the same on each producer's row)"),
    _figure("first_eviction_entries", pa.int64(), "median",
            "--op cache: entries the map held when it first evicted (null: it had not)"),
    _figure("first_eviction_share", pa.float64(), "median", "first_eviction_entries / --size"),
    # task creation (create engine; docs/method.md, "Task creation")
    _figure("bytes_per_task", pa.float64(), "median",
            "create engine: the cgroup's usage while the sample's tasks all lived, less before, per task"),
    _figure("records_left", pa.int64(), "max", "create engine: records made on fork not there at exit"),
    _figure("memory_after_bytes", pa.int64(), "median", "create engine: the cgroup's usage once the tasks exited"),
    # the output engine (measure/engines/output.py): events sent to user space through a buffer
    _config("event_size", pa.int32(), lambda c: f"{int(c['event_size'])} B events", "output engine: bytes of one event",
            context=True),
    _config("consumer_rate", pa.float64(),
            lambda c: "consumer at full speed" if not c["consumer_rate"] else f"consumer {c['consumer_rate']:,.0f}/s",
            "output engine: events a second the consumer takes at most; 0: full speed", context=True),
    _config("buffer_bytes", pa.int64(), lambda c: f"{_binary(c['buffer_bytes'])} buffer",
            "output engine: bytes of the ring buffer, of each CPU's perf buffer", context=True),
    _figure("events_emitted", pa.int64(), doc="output engine: events that found room in the buffer"),
    _figure("events_lost", pa.int64(), doc="output engine: events the buffer had no room for (the program's count)"),
    _figure("events_consumed", pa.int64(), doc="output engine: events the consumer took in the sample and its drain"),
    _figure("consumed_bytes", pa.int64()),
    _figure("events_lost_reported", pa.int64(), doc="perf buffer: the lost records' counts the consumer read"),
    _figure("loss_rate", pa.float64(), "mean", "output engine: events lost / events attempted"),
    _figure("emitted_events_per_s", pa.float64(), "median", "output engine: events emitted over the producers' span"),
    _figure("drain_ns", pa.int64(), "median", "output engine: after the runs, until the consumer had every event"),
    _config("wakeup_every", pa.int32(),
            lambda c: f"a wakeup per {int(c['wakeup_every']):,} events" if c["wakeup_every"] else "default wakeup",
            "output engine: 0, each buffer's default notification; N, one wakeup per N events", context=True),
)

# The configuration columns in the order a label names them ('kernel lookup 1,000,000 entries
# hit 0 v3'), which is also the order of a configuration key: not the schema's order, which only
# appends. Every configuration column once (checked below).
CONFIGURATION_ORDER = (
    "engine", "family", "strategy", "op", "driver", "implementation", "map_size", "key_size", "value_size", "fill",
    "key_distribution", "zipf_s", "seed", "hit_ratio", "batch_size", "nr_hash_funcs", "isa", "nr_tasks", "nr_maps",
    "no_prealloc", "producers", "writers", "write_op", "overlap", "role", "mode", "working_set_bytes", "setup",
    "min_delay_us", "addr_family", "prefix_lens", "calls", "restrict", "nr_programs", "run_stats", "code_layout",
    "working_set", "lru_lists", "event_size", "consumer_rate", "buffer_bytes", "wakeup_every")

BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}


def named(role: str) -> list[str]:
    """The names of a role's columns, in schema order."""
    return [c.name for c in COLUMNS if c.role == role]


def check(columns: tuple[Column, ...] = COLUMNS, order: tuple[str, ...] = CONFIGURATION_ORDER) -> None:
    """Each column once, with a known role; each configuration column labelled and in the label order;
    an aggregate only on a figure."""
    names = [c.name for c in columns]
    twice = sorted({n for n in names if names.count(n) > 1})
    problems = [f"named twice: {', '.join(twice)}"] if twice else []
    problems += [f"{c.name}: unknown role {c.role!r}" for c in columns if c.role not in ROLES]
    problems += [f"{c.name}: configuration without a label" for c in columns
                 if c.role == CONFIGURATION and c.label is None]
    problems += [f"{c.name}: aggregate {c.aggregate!r} on a {c.role} column" for c in columns
                 if c.aggregate is not None and (c.role != FIGURE or c.aggregate not in AGGREGATES)]
    configuration = [c.name for c in columns if c.role == CONFIGURATION]
    if sorted(configuration) != sorted(order):
        problems.append(f"CONFIGURATION_ORDER is not the configuration columns: missing "
                        f"{sorted(set(configuration) - set(order))}, "
                        f"not configuration {sorted(set(order) - set(configuration))}")
    if problems:
        raise ValueError("result columns: " + "; ".join(problems))


check()
