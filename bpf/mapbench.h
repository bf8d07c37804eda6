/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The contract between the BPF programs and the Python loader.
 *
 * Knobs live in one `const volatile struct mb_config` (.rodata, set between open and
 * load, so the verifier prunes the branches of other ops); results of the last run live
 * in `struct mb_result`, one per CPU in the `results` per-CPU array (the loader looks it up). The
 * per-run arguments (loop count, first key index) come in through the raw_tp test-run
 * context so that nothing changes after load.
 */
#ifndef MAPBENCH_H
#define MAPBENCH_H

/* Storage strategies: a pair is one source compiled with -DMB_STORAGE=<one of these>. */
#define MB_CONTROL 0
#define MB_HASH 1
#define MB_BLOOM 2
#define MB_PID_HASH 3
#define MB_TASK_STORAGE 4

/* Operations: chosen in .rodata by the programs; the syscall loops of the cffi module
 * (mapbench/_native.c) use the same codes. */
#define MB_OP_LOOKUP 0
#define MB_OP_UPDATE 1
#define MB_OP_GET 2
#define MB_OP_DELETE 3
#define MB_OP_DELETE_INSERT 4 /* kernel membership: delete a present key, then insert it again */
#define MB_OP_INSERT 5        /* kernel membership: insert a key that may be absent (BPF_NOEXIST) */
#define MB_OP_CACHE 6         /* kernel membership: look the key up; on a miss insert it, as an LRU cache's user does */

/* hit_thresh is a fraction of this: a lookup hits when the low bits of the draw fall below it. */
#define MB_HIT_SCALE (1u << 20)

struct mb_config {
	__u64 seed;        /* key stream seed */
	__u32 map_size;    /* number of keys present in the map */
	__u32 hit_thresh;  /* hit ratio * MB_HIT_SCALE */
	__u32 key_mult;    /* odd: key(i) = i * key_mult ^ key_salt is a bijection on u32 */
	__u32 key_salt;
	__u32 op;
	__u32 base_pid;    /* per-task family: the pid population is base_pid .. base_pid + map_size - 1 */
	__u32 sequential;  /* 1: draw i asks for entry i % map_size (always a hit), as the kernel's
			    * hashmap lookup bench does; 0: uniform random entries */
	__u32 nr_maps;     /* map-count family: task-storage maps each draw gets from */
	__u32 bloom_words; /* bloom filter element size in u32 words (1..MB_BLOOM_MAX_WORDS) */
	__u32 index_keys;  /* 1: the key of entry i is i (arrays, indexed by entry number) */
	__u32 key_words;   /* membership: key size in u32 words (1..MB_MAX_KEY_WORDS) */
	__u32 value_words; /* membership: value size in u64 words the program reads or writes */
	__u32 table_mask;  /* membership: length - 1 of the draw table (zipf); 0: no table */
	__u32 write_op;    /* membership: the op of the `run_writer` program (producers that write) */
	__u32 latency;     /* 1: each op's key waits for the op before it (mb_chain); 0: throughput */
	__u32 keyless;     /* per-task family: 1: no pid to draw (task storage gets the current task's) */
};

#define MB_MAX_KEY_WORDS 64   /* 256-byte keys */
#define MB_MAX_VALUE_WORDS 64 /* 512-byte values */
#define MB_BLOOM_MAX_WORDS 16 /* 64-byte bloom elements at most */

/* Per-CPU scratch of the membership family: a key or value larger than a few words does not
 * fit the 512-byte BPF stack, so the programs build them here. */
struct mb_scratch {
	__u32 key[MB_MAX_KEY_WORDS];
	__u64 value[MB_MAX_VALUE_WORDS];
	__u32 elem[MB_BLOOM_MAX_WORDS]; /* the key's bloom element: every build makes it, the control too */
};

#define MB_MAX_TASK_MAPS 64   /* task-storage maps of the map-count family (storagecount.bpf.c) */

/* Test-run context: raw_tp test_run hands ctx_in to the program as its u64 args. */
struct mb_run_args {
	__u64 nr_loops;    /* draws; in a window, the most it may do */
	__u64 start;       /* index of the first draw in the key stream */
	__u64 first_entry; /* membership, --overlap disjoint: this producer's entries are */
	__u64 nr_entries;  /* first_entry .. first_entry + nr_entries - 1; 0: all of them */
	__u64 producers;   /* several producers: wait at the `gate` until this many have come, */
	__u64 window_ns;   /* then draw for this long; 0: exactly nr_loops draws, no waiting */
};

/* A run in a window reads the clock once every this many draws (the control as well, so the
 * reads net out): producers then share one window instead of each running its own count. */
#define MB_CLOCK_EVERY 64
/* The longest a producer waits at the gate for the others (also at most 2^23 looks at it). */
#define MB_GATE_WAIT_NS 250000000ULL

/* The cache op (--op cache) of the membership family, in its .bss (shared by every CPU): what
 * the loader reads after each sample to count evictions, and how full the map was when it first
 * evicted. The element count is the kernel's (bpf_map_sum_elem_count). */
struct mb_lru_counts {
	__u64 inserted;       /* cache inserts that succeeded, on every CPU */
	__u64 entries;        /* the map's element count when a run last ended */
	__u64 first_eviction; /* entries held just after the first insert that evicted one (0: none yet) */
};

/* The task-creation family (taskcreate.bpf.c): whose new tasks count, and which op is timed. */
struct mb_create_config {
	__u32 target_tgid; /* the load's thread group: its threads are the fresh tasks */
	__u32 op;          /* MB_OP_INSERT (a record on fork) or MB_OP_DELETE (its removal at exit) */
};

/* What the task-creation programs saw of the load's tasks, in their .bss. */
struct mb_create_result {
	__u64 created; /* records made on fork */
	__u64 exited;  /* the load's tasks that exited */
	__u64 removed; /* of those, the ones whose record was there at exit (deleted, or left to the kernel) */
};

/* The per-task record of the per-task and map-count families. */
struct task_state {
	__u64 last_seen;
	__u64 count;
};

/* The attached engine (runqslower.bpf.c): whose delays go into the histogram, and the
 * log2 histogram of run-queue delays in ns (slot i: [2^i, 2^(i+1))). */
#define MB_NR_SLOTS 32

struct mb_sched_config {
	__u32 target_tgid; /* the load generator's thread group */
	__u64 min_delay_ns; /* report only delays at least this long (runqslower's min_us); 0: every one */
};

struct mb_sched_result {
	__u64 delay_hist[MB_NR_SLOTS];
};

/* One per CPU (the `counts` per-CPU array of runqslower.bpf.c): the events that concern the
 * target thread group, timed with bpf_ktime_get_ns() around the program body, and all events. */
struct mb_sched_counts {
	__u64 target_events;
	__u64 target_ns;
	__u64 all_events;
};

/* The programs engine (programs.bpf.c): a chain of up to MB_MAX_CHAIN distinct programs on one
 * tracepoint, timed per event by a program before them and one after them, one per CPU. */
#define MB_MAX_CHAIN 1024

struct mb_chain_counts {
	__u64 started_ns; /* chain_start's clock, for chain_stop of the same event */
	__u64 events;     /* events chain_stop timed */
	__u64 ns;         /* their time from chain_start to chain_stop */
	__u64 runs;       /* runs of the chain's programs */
	__u64 sum;        /* the numbers of the programs that ran, added */
	__u64 pad;        /* always 0: the chain's programs skip their padding on it */
};

/* One per CPU (the `results` per-CPU array), so that producers on several CPUs at once each
 * publish their own run. */
struct mb_result {
	__u64 start_ns;         /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) when the loop started */
	__u64 elapsed_ns;       /* bpf_ktime_get_ns() around the whole bpf_loop */
	__u64 ops;
	__u64 loops;            /* bpf_loop iterations done (draws) */
	__u64 hits;             /* lookups that found the key / updates and gets that succeeded */
	__u64 filter_positives; /* bloom: draws the filter said may be present */
	__u64 checksum;         /* xor of every key, so no build can drop the key generation */
	__u64 value_checksum;   /* xor of the sums of the values lookups found */
};

/* Word w of a key of several words, and of the bloom element of a key: word 0 is the key,
 * the rest derived from it, so that user space builds the same keys and elements. */
static inline __u32 mb_key_word(__u32 key, __u32 w)
{
	return w ? key ^ (w * 0x9e3779b9u) : key;
}

/* Word w of the value of a key: gen 0 as user space fills the map, gen 1 as the programs
 * write it, so that a test reads back which entries a run wrote. */
static inline __u64 mb_value_word(__u32 key, __u32 w, __u32 gen)
{
	return ((__u64)key << 32) | (w << 1) | gen;
}

/* splitmix64's finaliser: cheap, and the same arithmetic in numpy predicts every draw. */
static inline __u64 mb_mix(__u64 x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/*
 * Regression injection, to check that a CI gate catches a known slowdown: building with
 * MAPBENCH_CFLAGS=-DMB_SLOWDOWN=<n> adds n dependent multiply-adds to every map operation of
 * the strategy builds (never to the control, so the net figure grows by their cost).
 */
#ifdef MB_SLOWDOWN
static __always_inline __u64 mb_slowdown(__u64 x)
{
	/* xorshift-multiply steps: a dependent chain the compiler cannot fold into one step */
	for (int i = 0; i < MB_SLOWDOWN; i++) {
		x ^= x >> 29;
		x *= 0xbf58476d1ce4e5b9ULL;
	}
	return x;
}
#else
static __always_inline __u64 mb_slowdown(__u64 x)
{
	return 0;
}
#endif

/*
 * The article's build variants of a family's accessor (the function that does the map
 * operation: storage_op, get_state), as the kernel engine's --calls and --restrict ask:
 *   MB_CALLS_SUBPROG  the accessor is a BPF-to-BPF call (__noinline) instead of inlined
 *   MB_RESTRICT       the accessor's pointer parameters are `restrict` (no other pointer
 *                     reaches what they point to), which lets clang drop loads it must keep
 * The control builds never take them: the control has no accessor to call.
 */
#ifdef MB_CALLS_SUBPROG
#define MB_ACCESSOR static __noinline
#else
#define MB_ACCESSOR static __always_inline
#endif
#ifdef MB_RESTRICT
#define MB_RESTRICT_PTR restrict
#else
#define MB_RESTRICT_PTR
#endif

#ifdef __bpf__
/* What a bpf_loop callback accumulates; each family uses the fields it needs. */
struct mb_loop_state {
	__u64 start;      /* index of the first draw */
	__u64 hits;
	__u64 positives;
	__u64 checksum;
	__u64 value_checksum;
	__u64 first;      /* the entries this run draws: first .. first + nr - 1 */
	__u64 nr;
	__u64 deadline;   /* bpf_ktime_get_ns() at which a run in a window stops */
	__u64 found;      /* latency mode: mb_bits() of what the last op returned */
	__u64 chain;      /* latency mode: 0, added to the next draw's key once the last op is done */
	struct task_struct *task;
};

/* The bits of a pointer a lookup or get returned, as a scalar: the pointer less itself (root may
 * subtract pointers: the verifier's allow_ptr_leaks). 0, yet computed from the pointer. */
static __always_inline __u64 mb_bits(const void *p)
{
	__u64 bits;

	asm volatile("%0 = %1\n\t%0 -= %1" : "=&r"(bits) : "r"(p));
	return bits;
}

/*
 * Latency mode (cfg.latency; docs/method.md, "Modes"): after every op, what the next draw adds
 * to its key: 0, known only once this op has finished, so that no two ops overlap. It folds in
 * what the op returned (st->found: for a hit, a data dependency on the entry found) and the clock
 * read after the op: a miss returns NULL or an error code from a branch the CPU predicts, so the
 * returned value alone lets the next op run ahead of a miss; bpf_ktime_get_ns reads the TSC with
 * rdtsc_ordered (rdtscp, or lfence; rdtsc), which waits for every earlier instruction. `&= 0`
 * keeps each zero a data dependency (the verifier knows the result is 0, the JIT keeps the `and`;
 * `xor r, r` would break the dependency on x86). Controls call it too: the clock nets out.
 */
static __always_inline __u64 mb_chain(struct mb_loop_state *st)
{
	__u64 now = bpf_ktime_get_ns(), found = st->found;

	asm volatile("%0 &= 0" : "+r"(now));
	asm volatile("%0 &= 0" : "+r"(found));
	st->found = 0;
	return now + found;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mb_result);
} results SEC(".maps");

/* Producers of one build meet here before a run in a window: each adds itself, then waits for
 * the count the loader asked for (it zeroes the count before every sample). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gate SEC(".maps");

struct mb_gate_wait {
	__u64 producers;
	__u64 give_up; /* bpf_ktime_get_ns() */
};

static long mb_wait(__u64 i, void *ctx)
{
	struct mb_gate_wait *w = ctx;
	__u32 zero = 0;
	__u64 *arrived = bpf_map_lookup_elem(&gate, &zero);

	return !arrived || *(volatile __u64 *)arrived >= w->producers || bpf_ktime_get_ns() >= w->give_up;
}

/*
 * MB_CLOCKED(fn) defines fn_clocked, the bpf_loop callback of a run in a window: it runs
 * MB_CLOCK_EVERY draws of `fn`, then ends the loop once the deadline has passed. A callback
 * cannot be handed to another at run time, so each family defines one per draw callback.
 */
#define MB_CLOCKED(fn)                                           \
	static long fn##_clocked(__u64 chunk, void *ctx)         \
	{                                                        \
		struct mb_loop_state *st = ctx;                  \
								 \
		bpf_loop(MB_CLOCK_EVERY, fn, st, 0);             \
		st->start += MB_CLOCK_EVERY;                     \
		return bpf_ktime_get_ns() >= st->deadline;       \
	}

/*
 * The body of every family's raw_tp entry: time a bpf_loop of args->nr_loops calls of `fn`
 * with bpf_ktime_get_ns and publish the run in this CPU's `results`. ops_per_loop: map
 * operations per call. Several producers (args->window_ns set; docs/method.md, "Many CPUs on
 * one map"): meet at the gate, so that all start within a few microseconds however late each
 * thread entered its test run, then run `clocked` (MB_CLOCKED(fn)) for args->window_ns, at
 * most args->nr_loops draws.
 */
static __always_inline int mb_timed_run(struct mb_run_args *args, void *fn, void *clocked,
					struct mb_loop_state *st, __u64 ops_per_loop)
{
	__u32 zero = 0;
	struct mb_result *res = bpf_map_lookup_elem(&results, &zero);
	__u64 *arrived = bpf_map_lookup_elem(&gate, &zero);
	__u64 nr_loops = args->nr_loops, t0;
	long chunks;

	if (!res || !arrived)
		return 1;
	if (args->window_ns) {
		struct mb_gate_wait w = { .producers = args->producers, .give_up = bpf_ktime_get_ns() + MB_GATE_WAIT_NS };

		__sync_fetch_and_add(arrived, 1);
		bpf_loop(1 << 23, mb_wait, &w, 0);
		t0 = bpf_ktime_get_ns();
		st->deadline = t0 + args->window_ns;
		chunks = bpf_loop(nr_loops / MB_CLOCK_EVERY, clocked, st, 0);
		nr_loops = chunks > 0 ? chunks * MB_CLOCK_EVERY : 0;
	} else {
		t0 = bpf_ktime_get_ns();
		bpf_loop(nr_loops, fn, st, 0);
	}
	res->elapsed_ns = bpf_ktime_get_ns() - t0;
	res->start_ns = t0;
	res->loops = nr_loops;
	res->ops = nr_loops * ops_per_loop;
	res->hits = st->hits;
	res->filter_positives = st->positives;
	res->checksum = st->checksum;
	res->value_checksum = st->value_checksum;
	return 0;
}

/* MB_RUN(fn): the raw_tp entry `run` of a source whose loop state starts from the first draw's
 * index alone: mb_timed_run of fn, one op per call (and MB_CLOCKED(fn) for producers). */
#define MB_RUN(fn)                                                   \
	MB_CLOCKED(fn)                                               \
	SEC("raw_tp")                                                \
	int run(struct mb_run_args *args)                            \
	{                                                            \
		struct mb_loop_state st = { .start = args->start };  \
								     \
		return mb_timed_run(args, fn, fn##_clocked, &st, 1); \
	}
#endif

#endif /* MAPBENCH_H */
