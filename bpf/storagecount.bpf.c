// SPDX-License-Identifier: GPL-2.0
/*
 * Map-count family: how task local storage scales with the number of storage maps a task
 * carries. Each draw gets (creating on first use) the current task's record in every one of
 * the first nr_maps of 64 task-storage maps, reached through an array of maps. The kernel
 * caches a task's first 16 storages per task (BPF_LOCAL_STORAGE_CACHE_SIZE); past that a get
 * walks the task's storage list.
 *   MB_TASK_STORAGE  the gets
 *   MB_CONTROL       the same loop and map-in-map lookups, no storage get
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "mapbench.h"

#ifndef MB_STORAGE
#error "compile with -DMB_STORAGE=MB_CONTROL or MB_TASK_STORAGE"
#endif

char LICENSE[] SEC("license") = "GPL";

const volatile struct mb_config cfg = {};

struct storage {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_state);
};

#define S(n) struct storage storage##n SEC(".maps");
S(0) S(1) S(2) S(3) S(4) S(5) S(6) S(7) S(8) S(9) S(10) S(11) S(12) S(13) S(14) S(15)
S(16) S(17) S(18) S(19) S(20) S(21) S(22) S(23) S(24) S(25) S(26) S(27) S(28) S(29) S(30) S(31)
S(32) S(33) S(34) S(35) S(36) S(37) S(38) S(39) S(40) S(41) S(42) S(43) S(44) S(45) S(46) S(47)
S(48) S(49) S(50) S(51) S(52) S(53) S(54) S(55) S(56) S(57) S(58) S(59) S(60) S(61) S(62) S(63)

#define V(n) [n] = &storage##n,
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, MB_MAX_TASK_MAPS);
	__type(key, __u32);
	__array(values, struct storage);
} storages SEC(".maps") = {
	.values = {
		V(0) V(1) V(2) V(3) V(4) V(5) V(6) V(7) V(8) V(9) V(10) V(11) V(12) V(13) V(14) V(15)
		V(16) V(17) V(18) V(19) V(20) V(21) V(22) V(23) V(24) V(25) V(26) V(27) V(28) V(29)
		V(30) V(31) V(32) V(33) V(34) V(35) V(36) V(37) V(38) V(39) V(40) V(41) V(42) V(43)
		V(44) V(45) V(46) V(47) V(48) V(49) V(50) V(51) V(52) V(53) V(54) V(55) V(56) V(57)
		V(58) V(59) V(60) V(61) V(62) V(63)
	},
};

static long one_get(__u64 m, void *ctx)
{
	struct mb_loop_state *st = ctx;
	__u32 index = m;
	void *storage = bpf_map_lookup_elem(&storages, &index);

	if (!storage)
		return 1;
	st->checksum ^= index;
#if MB_STORAGE == MB_TASK_STORAGE
	/* latency mode: each get's task pointer waits for the get before (st->chain is 0) */
	struct task_state *s = bpf_task_storage_get(storage, (void *)st->task + (cfg.latency ? st->chain : 0),
						    NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (s) {
		s->count++;
		st->hits++;
	}
	if (cfg.latency)
		st->found = mb_bits(s);
#endif
	if (cfg.latency)
		st->chain = mb_chain(st);
	return 0;
}

static long one_draw(__u64 i, void *ctx)
{
	bpf_loop(cfg.nr_maps, one_get, ctx, 0);
	return 0;
}

MB_CLOCKED(one_draw)

SEC("raw_tp")
int run(struct mb_run_args *args)
{
	struct mb_loop_state st = { .start = args->start, .task = bpf_get_current_task_btf() };

	return mb_timed_run(args, one_draw, one_draw_clocked, &st, cfg.nr_maps);
}
