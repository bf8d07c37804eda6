// SPDX-License-Identifier: GPL-2.0
/*
 * Prefix family: which prefix holds this address?
 *   MB_LPM_TRIE    an LPM trie of N prefixes (a routing-table-like length mix, or one length);
 *                  a lookup returns the value of the longest prefix holding the address
 *   MB_EXACT_HASH  a hash of N exact addresses (/32 or /128 keys): what an exact-match table
 *                  instead of the trie costs
 *   MB_FRONT_HASH  the same prefixes split: the full-length ones (host entries) in an exact hash
 *                  asked first, the rest in an LPM trie asked when the hash misses (a host entry
 *                  is always the longest match, so the answer is the trie's)
 *   MB_CONTROL     the same loop, draw-table read and key copy, with the map operation compiled out
 * Only the map definition and the operation sit under #if. Draws come from `draw_table`, which
 * the loader fills (mapbench/measure/prefixes.py): lookups walk a power-of-two table of
 * addresses (cfg.table_mask: draw i takes record i & mask), in a present prefix for a hit and
 * outside every one for a miss; updates and deletes walk every present prefix once per pass in a
 * random order (cfg.table_mask 0: draw i takes record i % cfg.map_size).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "mapbench.h"

#ifndef MB_STORAGE
#error "compile with -DMB_STORAGE=MB_CONTROL, MB_LPM_TRIE, MB_EXACT_HASH or MB_FRONT_HASH"
#endif

char LICENSE[] SEC("license") = "GPL";

const volatile struct mb_config cfg = {};

#include "prefix.h" /* the storage macros and the trie */

/* A draw: struct bpf_lpm_trie_key_u8's layout (a host-order prefix length, then the address in
 * network order), 16 address bytes of which IPv4 uses the first 4. The loader sets the trie's key
 * size to 4 + 4 or 4 + 16 and the hash's to 4 or 16 (the address alone). */
struct mb_prefix_key {
	__u32 prefixlen;
	__u32 data[4];
};

#if MB_STORAGE == MB_LPM_TRIE || MB_STORAGE == MB_FRONT_HASH
#define PREFIX_KEY(k) ((void *)(k))
#endif
#if MB_STORAGE == MB_FRONT_HASH
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(key_size, 4);                  /* set by the loader: the address bytes */
	__uint(value_size, sizeof(__u64));
	__uint(max_entries, 1);
} front SEC(".maps");
#elif MB_STORAGE == MB_EXACT_HASH
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(key_size, 4);                  /* set by the loader: the address bytes */
	__uint(value_size, sizeof(__u64));
	__uint(max_entries, 1);
} prefixes SEC(".maps");
#define PREFIX_KEY(k) ((void *)(k)->data)
#endif

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* sized and filled by the loader */
	__type(key, __u32);
	__type(value, struct mb_prefix_key);
} draw_table SEC(".maps");

/* The map operation on one key; 1 when it found (or wrote, or deleted) the entry. A lookup adds
 * the value it found to value_checksum, so that a test can check every longest match. */
static __always_inline int storage_op(struct mb_prefix_key *key, __u64 n, struct mb_loop_state *st, __u32 op)
{
#if MB_STORAGE != MB_CONTROL
	__u64 *v, value = n;

	st->checksum ^= mb_slowdown(key->data[0]);
	if (op == MB_OP_UPDATE)
		return bpf_map_update_elem(&prefixes, PREFIX_KEY(key), &value, BPF_EXIST) == 0;
	if (op == MB_OP_DELETE)
		return bpf_map_delete_elem(&prefixes, PREFIX_KEY(key)) == 0;
#if MB_STORAGE == MB_FRONT_HASH
	v = bpf_map_lookup_elem(&front, key->data);
	if (!v)
		v = bpf_map_lookup_elem(&prefixes, PREFIX_KEY(key));
#else
	v = bpf_map_lookup_elem(&prefixes, PREFIX_KEY(key));
#endif
	if (cfg.latency)
		st->found = mb_bits(v);
	if (!v)
		return 0;
	st->value_checksum += *v;
	return 1;
#else
	return 0;
#endif
}

static __always_inline long one_draw(__u64 i, struct mb_loop_state *st, __u32 op)
{
	__u64 n = st->start + i;
	__u32 slot = cfg.table_mask ? n & cfg.table_mask : n % cfg.map_size;
	struct mb_prefix_key *drawn = bpf_map_lookup_elem(&draw_table, &slot);
	struct mb_prefix_key key;

	if (!drawn)
		return 1;
	key = *drawn; /* on the stack, where latency mode can chain it */
	if (cfg.latency)
		key.data[0] += st->chain;
	st->checksum ^= key.data[0];
	st->hits += storage_op(&key, n, st, op);
	if (cfg.latency)
		st->chain = mb_chain(st);
	return 0;
}

static long one_op(__u64 i, void *ctx)
{
	return one_draw(i, ctx, cfg.op);
}

static long one_lookup(__u64 i, void *ctx)
{
	return one_draw(i, ctx, MB_OP_LOOKUP);
}

MB_CLOCKED(one_op)
MB_CLOCKED(one_lookup)

static __always_inline int timed(struct mb_run_args *args, void *fn, void *clocked)
{
	struct mb_loop_state st = { .start = args->start };

	return mb_timed_run(args, fn, clocked, &st, 1);
}

SEC("raw_tp")
int run(struct mb_run_args *args)
{
	return timed(args, one_op, one_op_clocked);
}

/* Calibration's pilot runs: lookups, so that finding the loop count changes no map. */
SEC("raw_tp")
int run_reader(struct mb_run_args *args)
{
	return timed(args, one_lookup, one_lookup_clocked);
}
