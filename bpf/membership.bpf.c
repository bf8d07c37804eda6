// SPDX-License-Identifier: GPL-2.0
/*
 * Membership family: is a key in the set?
 *   MB_HASH     a map holds the set: a hash, or (retyped by the loader before load, see
 *               mapbench/strategies.py) an LRU hash, a per-CPU hash or array, an array
 *   MB_BLOOM    a bloom filter in front of the same hash: the hash is asked only when
 *               the filter says "maybe"
 *   MB_CONTROL  the same loop and key stream with the map operation compiled out
 * Only the map definitions and the accessor sit under #if.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "mapbench.h"

#ifndef MB_STORAGE
#error "compile with -DMB_STORAGE=MB_CONTROL, MB_HASH or MB_BLOOM"
#endif

char LICENSE[] SEC("license") = "GPL";

const volatile struct mb_config cfg = {};
struct mb_result res = {};

#if MB_STORAGE == MB_HASH || MB_STORAGE == MB_BLOOM
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1); /* sized by the loader before load */
} members SEC(".maps");
#endif

#if MB_STORAGE == MB_BLOOM
struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__uint(key_size, 0);
	__uint(value_size, sizeof(__u32)); /* element size, set by the loader (4..64 bytes) */
	__uint(max_entries, 1); /* sized by the loader before load */
	__uint(map_extra, 3);   /* number of hash functions, set by the loader */
} filter SEC(".maps");
#endif

/* Draw number i of the key stream: a key present in the map with probability hit ratio. */
static __always_inline __u32 draw_key(__u64 i)
{
	__u64 r = mb_mix(cfg.seed + i);
	__u64 idx = (r >> 32) % cfg.map_size;

	if (cfg.sequential)
		idx = i % cfg.map_size;
	else if ((r & (MB_HIT_SCALE - 1)) >= cfg.hit_thresh)
		idx += cfg.map_size; /* indexes map_size .. 2*map_size-1 are never inserted */
	if (cfg.index_keys) /* arrays: entry i at index i; a miss is an index past the end */
		return (__u32)idx;
	return (__u32)idx * cfg.key_mult ^ cfg.key_salt;
}

static __always_inline int storage_op(__u32 key, struct mb_loop_state *st)
{
#if MB_STORAGE == MB_BLOOM
	__u32 elem[MB_BLOOM_MAX_WORDS];

	for (__u32 w = 0; w < MB_BLOOM_MAX_WORDS && w < cfg.bloom_words; w++)
		elem[w] = mb_bloom_word(key, w);
#endif
#if MB_STORAGE == MB_HASH || MB_STORAGE == MB_BLOOM
	__u64 val = key;

	st->checksum ^= mb_slowdown(key);
	if (cfg.op == MB_OP_UPDATE) {
#if MB_STORAGE == MB_BLOOM
		/* a writer keeps both structures: the filter must learn every key */
		bpf_map_push_elem(&filter, elem, BPF_ANY);
#endif
		return bpf_map_update_elem(&members, &key, &val, BPF_EXIST) == 0;
	}
#if MB_STORAGE == MB_BLOOM
	if (bpf_map_peek_elem(&filter, elem) != 0)
		return 0; /* definitely absent: the hash is not asked */
	st->positives++;
#endif
	return bpf_map_lookup_elem(&members, &key) != NULL;
#else
	return 0;
#endif
}

static long one_op(__u64 i, void *ctx)
{
	struct mb_loop_state *st = ctx;
	__u32 key = draw_key(st->start + i);

	st->checksum ^= key;
	st->hits += storage_op(key, st);
	return 0;
}

SEC("raw_tp")
int run(struct mb_run_args *args)
{
	struct mb_loop_state st = { .start = args->start };

	return mb_timed_run(args, &res, one_op, &st, 1);
}
