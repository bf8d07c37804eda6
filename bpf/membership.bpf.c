// SPDX-License-Identifier: GPL-2.0
/*
 * Membership family: is a key in the set?
 *   MB_HASH     a map holds the set: a hash, or (retyped by the loader before load, see
 *               mapbench/strategies.py) an LRU hash, a per-CPU hash or array, an array
 *   MB_BLOOM    a bloom filter in front of the same hash: the hash is asked only when
 *               the filter says "maybe"
 *   MB_CONTROL  the same loop, key stream and key building, with the map operation compiled out
 * Only the map definitions and the accessor sit under #if. A key, value or bloom element of more
 * than one word is built in a per-CPU scratch map (mapbench.h, struct mb_scratch); the default
 * shape's are on the stack. Latency mode chains the draws (mb_chain).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "mapbench.h"

#ifndef MB_STORAGE
#error "compile with -DMB_STORAGE=MB_CONTROL, MB_HASH or MB_BLOOM"
#endif

char LICENSE[] SEC("license") = "GPL";

const volatile struct mb_config cfg = {};

#include "members.h"

/* In every build, the control too: where larger shapes' keys and values are built, and the zipf draws. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mb_scratch);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* the loader sizes it to the table (a power of two) and fills it */
	__type(key, __u32);
	__type(value, __u32);
} draw_table SEC(".maps");

/* Draw number i of the key stream: the entry index, past map_size (never inserted) for a miss.
 * uniform: a random entry; zipf: entry table[i % table length], drawn by numpy; sequential:
 * entry i % map_size, always a hit. A draw hits with probability hit ratio. A producer of
 * --overlap disjoint draws only its own entries, st->first .. st->first + st->nr - 1. */
static __always_inline __u32 draw_index(__u64 i, struct mb_loop_state *st)
{
	__u64 r = mb_mix(cfg.seed + i);
	__u64 idx = (r >> 32) % cfg.map_size;

	if (cfg.sequential)
		idx = i % cfg.map_size;
	else if (cfg.table_mask) {
		__u32 slot = i & cfg.table_mask;
		__u32 *drawn = bpf_map_lookup_elem(&draw_table, &slot);

		idx = drawn ? *drawn : 0;
	}
	if (st->nr)
		idx = st->first + idx % st->nr;
	if (cfg.sequential)
		return idx;
	if ((r & (MB_HIT_SCALE - 1)) >= cfg.hit_thresh)
		idx += cfg.map_size; /* indexes map_size .. 2*map_size-1 are never inserted */
	return idx;
}

static __always_inline __u32 key_of(__u32 idx)
{
	if (cfg.index_keys) /* arrays: entry i at index i; a miss is an index past the end */
		return idx;
	return idx * cfg.key_mult ^ cfg.key_salt;
}

/* Where one draw's key, value and bloom element are: on the stack for the default shape, else in
 * the scratch map (one_draw). */
struct mb_where {
	__u32 *key;
	__u64 *value;
	__u32 *elem;
};

#if MB_STORAGE == MB_HASH || MB_STORAGE == MB_BLOOM
static __always_inline void write_value(__u64 *value, __u32 key)
{
	value[0] = mb_value_word(key, 0, 1);
	for (__u32 w = 1; w < MB_MAX_VALUE_WORDS && w < cfg.value_words; w++)
		value[w] = mb_value_word(key, w, 1);
}
#endif

#if MB_STORAGE == MB_HASH
/* The cache op's counts (mapbench.h); the kernel's element count of a hash (kernel/bpf/map_iter.c,
 * every program type). Weak: a kernel without it fails the cache op at load, not the other ops. */
struct mb_lru_counts lru = {};
extern __s64 bpf_map_sum_elem_count(const struct bpf_map *map) __ksym __weak;

/* A cache miss: insert the key (BPF_NOEXIST: a producer that raced in first keeps its entry). Until
 * the first eviction, compare the kernel's element count with the inserts so far: when it holds
 * fewer, one was evicted, and the count is how full the map was (an LRU hash can evict before it is
 * full: kernel/bpf/bpf_lru_list.c keeps free nodes in per-CPU lists; docs/method.md, "LRU under
 * pressure"). The kfunc runs only before that, so it weighs only on a build's first samples. */
static __always_inline void cache_insert(struct mb_where *at, __u32 key)
{
	__u64 inserted;
	__s64 held;

	write_value(at->value, key);
	if (bpf_map_update_elem(&members, at->key, at->value, BPF_NOEXIST) != 0)
		return;
	inserted = __sync_fetch_and_add(&lru.inserted, 1) + 1;
	if (lru.first_eviction)
		return;
	held = bpf_map_sum_elem_count((struct bpf_map *)&members);
	if (held >= 0 && (__u64)held < inserted)
		lru.first_eviction = held;
}
#endif

/* The map operation on the key at at->key; 1 when it found (or wrote) the entry. A lookup reads
 * the whole value and an update writes it, so the cost of touching the value is counted. */
MB_ACCESSOR int storage_op(__u32 key, struct mb_where *MB_RESTRICT_PTR at,
			   struct mb_loop_state *MB_RESTRICT_PTR st, __u32 op)
{
#if MB_STORAGE == MB_BLOOM
	__u32 *elem = at->elem; /* built in one_draw, by the control too: building it is not counted */
#endif
#if MB_STORAGE == MB_HASH || MB_STORAGE == MB_BLOOM
	__u64 *v, sum;

	st->checksum ^= mb_slowdown(key);
	if (op == MB_OP_UPDATE) {
#if MB_STORAGE == MB_BLOOM
		/* a writer keeps both structures: the filter must learn every key */
		bpf_map_push_elem(&filter, elem, BPF_ANY);
#endif
		write_value(at->value, key);
		return bpf_map_update_elem(&members, at->key, at->value, BPF_EXIST) == 0;
	}
	if (op == MB_OP_DELETE_INSERT) {
		if (bpf_map_delete_elem(&members, at->key) != 0)
			return 0;
		write_value(at->value, key);
		return bpf_map_update_elem(&members, at->key, at->value, BPF_NOEXIST) == 0;
	}
	if (op == MB_OP_INSERT) {
		write_value(at->value, key);
		return bpf_map_update_elem(&members, at->key, at->value, BPF_NOEXIST) == 0;
	}
	if (op == MB_OP_DELETE)
		return bpf_map_delete_elem(&members, at->key) == 0;
#if MB_STORAGE == MB_BLOOM
	if (bpf_map_peek_elem(&filter, elem) != 0)
		return 0; /* definitely absent: the hash is not asked */
	st->positives++;
#endif
	v = bpf_map_lookup_elem(&members, at->key);
	if (cfg.latency)
		st->found = mb_bits(v);
	if (!v) {
#if MB_STORAGE == MB_HASH
		if (op == MB_OP_CACHE) /* a lookup; on a miss, an insert: only the lookup's hit counts */
			cache_insert(at, key);
#endif
		return 0;
	}
	sum = v[0];
	for (__u32 w = 1; w < MB_MAX_VALUE_WORDS && w < cfg.value_words; w++)
		sum += v[w];
	st->value_checksum ^= sum;
	return 1;
#else
	return 0;
#endif
}

/* One draw and the map operation `op` (a .rodata constant: the verifier prunes the others). The
 * default shape (4-byte key and bloom element, 8-byte value) keeps them on the stack, as the
 * minimal reference does; larger ones are built in the scratch map, whose lookup and loops would
 * otherwise weigh on the default shape's figure (docs/method.md, "Minimal reference"). */
static __always_inline long one_draw(__u64 i, struct mb_loop_state *st, __u32 op)
{
	__u32 zero = 0, key = key_of(draw_index(st->start + i, st) + (cfg.latency ? st->chain : 0));
	__u64 value;
	struct mb_where at = { .key = &key, .value = &value, .elem = &key }; /* one word: word 0 is the key */

	if (cfg.key_words > 1 || cfg.value_words > 1 || cfg.bloom_words > 1) {
		struct mb_scratch *s = bpf_map_lookup_elem(&scratch, &zero);

		if (!s)
			return 1;
		for (__u32 w = 0; w < MB_MAX_KEY_WORDS && w < cfg.key_words; w++)
			s->key[w] = mb_key_word(key, w);
		for (__u32 w = 0; w < MB_BLOOM_MAX_WORDS && w < cfg.bloom_words; w++)
			s->elem[w] = mb_key_word(key, w);
		at = (struct mb_where){ .key = s->key, .value = s->value, .elem = s->elem };
	}
	st->checksum ^= key;
	st->hits += storage_op(key, &at, st, op);
	if (cfg.latency)
		st->chain = mb_chain(st);
	return 0;
}

static long one_op(__u64 i, void *ctx)
{
	return one_draw(i, ctx, cfg.op);
}

static long one_write(__u64 i, void *ctx)
{
	return one_draw(i, ctx, cfg.write_op);
}

MB_CLOCKED(one_op)
MB_CLOCKED(one_write)

static __always_inline int timed(struct mb_run_args *args, void *fn, void *clocked)
{
	struct mb_loop_state st = { .start = args->start, .first = args->first_entry, .nr = args->nr_entries };

	return mb_timed_run(args, fn, clocked, &st, 1);
}

SEC("raw_tp")
int run(struct mb_run_args *args)
{
	int err = timed(args, one_op, one_op_clocked);

#if MB_STORAGE == MB_HASH
	if (cfg.op == MB_OP_CACHE)
		lru.entries = bpf_map_sum_elem_count((struct bpf_map *)&members);
#endif
	return err;
}

static long one_lookup(__u64 i, void *ctx)
{
	return one_draw(i, ctx, MB_OP_LOOKUP);
}

MB_CLOCKED(one_lookup)

/* Calibration's pilot runs: lookups, so that finding the loop count changes no map. */
SEC("raw_tp")
int run_reader(struct mb_run_args *args)
{
	return timed(args, one_lookup, one_lookup_clocked);
}

/* The writers among concurrent producers (--writers): the same maps, cfg.write_op. */
SEC("raw_tp")
int run_writer(struct mb_run_args *args)
{
	return timed(args, one_write, one_write_clocked);
}
