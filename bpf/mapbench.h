/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The contract between the BPF programs and the Python loader.
 *
 * Knobs live in one `const volatile struct mb_config` (.rodata, set between open and
 * load, so the verifier prunes the branches of other ops); results of the last run live
 * in one `struct mb_result` (.bss, read by the loader through libbpf's mmap). The
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
};

#define MB_MAX_KEY_WORDS 64   /* 256-byte keys */
#define MB_MAX_VALUE_WORDS 64 /* 512-byte values */

/* Per-CPU scratch of the membership family: a key or value larger than a few words does not
 * fit the 512-byte BPF stack, so the programs build them here. */
struct mb_scratch {
	__u32 key[MB_MAX_KEY_WORDS];
	__u64 value[MB_MAX_VALUE_WORDS];
};

#define MB_BLOOM_MAX_WORDS 16 /* 64-byte bloom elements at most */
#define MB_MAX_TASK_MAPS 64   /* task-storage maps of the map-count family (storagecount.bpf.c) */

/* Test-run context: raw_tp test_run hands ctx_in to the program as its u64 args. */
struct mb_run_args {
	__u64 nr_loops;
	__u64 start;       /* index of the first draw in the key stream */
	__u64 first_entry; /* membership, --overlap disjoint: this producer's entries are */
	__u64 nr_entries;  /* first_entry .. first_entry + nr_entries - 1; 0: all of them */
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

/* One per CPU (the `results` per-CPU array), so that producers on several CPUs at once each
 * publish their own run. */
struct mb_result {
	__u64 start_ns;         /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) when the loop started */
	__u64 elapsed_ns;       /* bpf_ktime_get_ns() around the whole bpf_loop */
	__u64 ops;
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
	struct task_struct *task;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mb_result);
} results SEC(".maps");

/*
 * The body of every family's raw_tp entry: time a bpf_loop of args->nr_loops calls of `fn`
 * with bpf_ktime_get_ns and publish the run in this CPU's `results`. ops_per_loop: map
 * operations per call.
 */
static __always_inline int mb_timed_run(struct mb_run_args *args, void *fn, struct mb_loop_state *st,
					__u64 ops_per_loop)
{
	__u32 zero = 0;
	struct mb_result *res = bpf_map_lookup_elem(&results, &zero);
	__u64 nr_loops = args->nr_loops, t0;

	if (!res)
		return 1;
	t0 = bpf_ktime_get_ns();
	bpf_loop(nr_loops, fn, st, 0);
	res->elapsed_ns = bpf_ktime_get_ns() - t0;
	res->start_ns = t0;
	res->ops = nr_loops * ops_per_loop;
	res->hits = st->hits;
	res->filter_positives = st->positives;
	res->checksum = st->checksum;
	res->value_checksum = st->value_checksum;
	return 0;
}
#endif

#endif /* MAPBENCH_H */
