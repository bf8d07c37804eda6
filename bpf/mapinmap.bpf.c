// SPDX-License-Identifier: GPL-2.0
/*
 * Map-in-map family: an entry reached through an outer map of inner hashes (two lookups), or
 * in one flat hash keyed by the compound key (outer index, inner key). The same entries either
 * way: entry e lives in inner map e % nr_maps under key(e), or in the flat hash under
 * {e % nr_maps, key(e)}; the loader creates and fills the inner maps and puts their fds in the
 * outer map (mapbench/measure/strategies.py).
 *   MB_HASH_OF_MAPS   outer BPF_MAP_TYPE_HASH_OF_MAPS keyed by the inner map's index
 *   MB_ARRAY_OF_MAPS  outer BPF_MAP_TYPE_ARRAY_OF_MAPS indexed by it
 *   MB_COMPOUND_HASH  one hash keyed by {outer index, inner key}
 *   MB_CONTROL        the same loop, draws and keys, no lookup
 * Draws as the minimal reference's (a uniform entry, a miss past map_size by the hit ratio) or
 * sequential (entry i % map_size); latency mode chains the lookups (mb_chain).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "mapbench.h"

#define MB_HASH_OF_MAPS 20
#define MB_ARRAY_OF_MAPS 21
#define MB_COMPOUND_HASH 22

#ifndef MB_STORAGE
#error "compile with -DMB_STORAGE=MB_CONTROL, MB_HASH_OF_MAPS, MB_ARRAY_OF_MAPS or MB_COMPOUND_HASH"
#endif

char LICENSE[] SEC("license") = "GPL";

const volatile struct mb_config cfg = {};

struct mb_compound_key {
	__u32 outer;
	__u32 key;
};

/* The inner maps' template: the loader's inner hashes match its type, key, value and flags
 * (bpf_map_meta_equal); a hash's max_entries may differ from the template's. */
struct inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
};

#if MB_STORAGE == MB_HASH_OF_MAPS || MB_STORAGE == MB_ARRAY_OF_MAPS
struct {
#if MB_STORAGE == MB_HASH_OF_MAPS
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
#else
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
#endif
	__uint(max_entries, 1); /* nr_maps, set by the loader */
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps");
#endif

#if MB_STORAGE == MB_COMPOUND_HASH
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1); /* sized by the loader */
	__type(key, struct mb_compound_key);
	__type(value, __u64);
} flat SEC(".maps");
#endif

static long one_lookup(__u64 i, void *ctx)
{
	struct mb_loop_state *st = ctx;
	__u64 r = mb_mix(cfg.seed + st->start + i);
	__u32 idx = (r >> 32) % cfg.map_size;
	struct mb_compound_key ck;
	__u64 *v = NULL;

	if (cfg.sequential)
		idx = (st->start + i) % cfg.map_size;
	else if ((r & (MB_HIT_SCALE - 1)) >= cfg.hit_thresh)
		idx += cfg.map_size; /* never inserted: a miss (its inner map exists) */
	idx += cfg.latency ? st->chain : 0;
	ck.outer = idx % cfg.nr_maps;
	ck.key = idx * cfg.key_mult ^ cfg.key_salt;
	st->checksum ^= ck.key ^ ck.outer;
#if MB_STORAGE == MB_HASH_OF_MAPS || MB_STORAGE == MB_ARRAY_OF_MAPS
	void *inner = bpf_map_lookup_elem(&outer, &ck.outer);

	if (inner)
		v = bpf_map_lookup_elem(inner, &ck.key);
#elif MB_STORAGE == MB_COMPOUND_HASH
	v = bpf_map_lookup_elem(&flat, &ck);
#endif
	if (cfg.latency) {
		st->found = mb_bits(v);
		st->chain = mb_chain(st);
	}
	if (v) {
		st->hits++;
		st->value_checksum ^= *v;
	}
	return 0;
}

MB_RUN(one_lookup)
