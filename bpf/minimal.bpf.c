// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel engine's reference (docs/method.md, "Minimal reference"): each operation as the
 * kernel's selftests bench writes it, to check the engine's figures against. A bpf_loop whose
 * callback draws a u32 key into a variable on the stack and does the operation alone: no
 * scratch map, no shapes, no draw table, no producers.
 *   MB_HASH          a lookup in a hash of u32 keys and u64 values; a hit reads the value;
 *                    for the cache op (any hash type the loader makes it), a miss inserts the key
 *   MB_BLOOM         a peek in a bloom filter of u32 elements, then, on "maybe", the hash lookup
 *   MB_TASK_STORAGE  a get (created on first use) of the current task's record; no draw
 *   MB_LPM_TRIE      a lookup in an LPM trie of /32 keys (prefix.h), the u32 key as the address
 *   MB_CONTROL       the same loop (and draws, beside a lookup), no operation
 * lookup and get are MB_ACCESSOR (mapbench.h): --calls subprog makes them a BPF-to-BPF call, the
 * independent check of the families' figure for the call.
 * The draws are the membership family's uniform ones, so numpy predicts every hit
 * (mapbench/keys.py); latency mode chains the ops as every family does (mb_chain).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "mapbench.h"

#ifndef MB_STORAGE
#error "compile with -DMB_STORAGE=MB_CONTROL, MB_HASH, MB_BLOOM, MB_TASK_STORAGE or MB_LPM_TRIE"
#endif

char LICENSE[] SEC("license") = "GPL";

const volatile struct mb_config cfg = {};

#include "prefix.h" /* first: members.h's #if needs its macros defined */
#include "members.h"

#if MB_STORAGE == MB_TASK_STORAGE
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_state);
} states SEC(".maps");
#endif

/* A lookup (hash, bloom) of a u32 key drawn onto the stack; 1 when it found the key. */
MB_ACCESSOR int lookup(__u64 i, struct mb_loop_state *st, __u64 chain)
{
	__u64 r = mb_mix(cfg.seed + st->start + i);
	__u32 idx = (r >> 32) % cfg.map_size;
	__u32 key;

	if ((r & (MB_HIT_SCALE - 1)) >= cfg.hit_thresh)
		idx += cfg.map_size; /* never inserted: a miss */
	key = (idx + chain) * cfg.key_mult ^ cfg.key_salt;
	st->checksum ^= key;
#if MB_STORAGE == MB_HASH || MB_STORAGE == MB_BLOOM || MB_STORAGE == MB_LPM_TRIE
	__u64 *v = NULL;

#if MB_STORAGE == MB_BLOOM
	if (bpf_map_peek_elem(&filter, &key) == 0) {
		st->positives++;
		v = bpf_map_lookup_elem(&members, &key);
	}
#elif MB_STORAGE == MB_LPM_TRIE
	struct { __u32 prefixlen; __u32 address; } lpm_key = { 32, key }; /* bpf_lpm_trie_key_u8 of a /32 */

	v = bpf_map_lookup_elem(&prefixes, &lpm_key);
#else
	v = bpf_map_lookup_elem(&members, &key);
#endif
	if (cfg.latency)
		st->found = mb_bits(v);
	if (!v) {
#if MB_STORAGE == MB_HASH
		if (cfg.op == MB_OP_CACHE) {
			__u64 value = 0;

			bpf_map_update_elem(&members, &key, &value, BPF_NOEXIST);
		}
#endif
		return 0;
	}
	st->value_checksum ^= *v;
	return 1;
#else
	return 0;
#endif
}

/* A get of the current task's record (task storage): no draw, the task is the key. */
MB_ACCESSOR int get(struct mb_loop_state *st, __u64 chain)
{
#if MB_STORAGE == MB_TASK_STORAGE
	struct task_state *s = bpf_task_storage_get(&states, (void *)bpf_get_current_task_btf() + chain, NULL,
						    BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (cfg.latency)
		st->found = mb_bits(s);
	return s != NULL;
#else
	return 0;
#endif
}

/* The control runs the loop of the op it stands beside: cfg.op says which. */
static long one_op(__u64 i, void *ctx)
{
	struct mb_loop_state *st = ctx;
	__u64 chain = cfg.latency ? st->chain : 0;

	st->hits += cfg.op == MB_OP_GET ? get(st, chain) : lookup(i, st, chain);
	if (cfg.latency)
		st->chain = mb_chain(st);
	return 0;
}

MB_RUN(one_op)
