// SPDX-License-Identifier: GPL-2.0
/*
 * Per-task state family: find (or create) a small record for a task.
 *   MB_PID_HASH      a hash keyed by pid, holding map_size tasks; each draw asks for one
 *                    of them, as a tracer does for whichever task an event is about
 *   MB_TASK_STORAGE  task local storage of the current task (create on first use)
 *   MB_CONTROL       the same loop and draws with the map operation compiled out
 * Only the map definitions and the accessor sit under #if.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "mapbench.h"

#ifndef MB_STORAGE
#error "compile with -DMB_STORAGE=MB_CONTROL, MB_PID_HASH or MB_TASK_STORAGE"
#endif

char LICENSE[] SEC("license") = "GPL";

const volatile struct mb_config cfg = {};

#if MB_STORAGE == MB_PID_HASH
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct task_state);
	__uint(max_entries, 1); /* sized by the loader before load */
} states SEC(".maps");
#elif MB_STORAGE == MB_TASK_STORAGE
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* the kernel requires it for task storage */
	__type(key, int);
	__type(value, struct task_state);
} states SEC(".maps");
#endif

/* chain: latency mode's zero, which the task pointer (the pid hash's key: pid) waits for */
MB_ACCESSOR struct task_state *get_state(__u32 pid, __u64 chain)
{
#if MB_STORAGE == MB_PID_HASH
	struct task_state *s = bpf_map_lookup_elem(&states, &pid);
	struct task_state zero = {};

	if (s)
		return s;
	bpf_map_update_elem(&states, &pid, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&states, &pid);
#elif MB_STORAGE == MB_TASK_STORAGE
	return bpf_task_storage_get(&states, (void *)bpf_get_current_task_btf() + chain, NULL,
				    BPF_LOCAL_STORAGE_GET_F_CREATE);
#else
	return NULL;
#endif
}

static long one_op(__u64 i, void *ctx)
{
	struct mb_loop_state *st = ctx;
	__u64 chain = cfg.latency ? st->chain : 0;
	__u32 pid = 0;
	struct task_state *s;

	/* Task storage has no key to draw: drawing a pid beside its get (and netting it out with the
	 * control's) cost 9 to 18 % of the get in throughput mode, where the two overlap. */
	if (!cfg.keyless) {
		__u64 r = mb_mix(cfg.seed + st->start + i);
		__u64 idx = cfg.sequential ? (st->start + i) % cfg.map_size : (r >> 32) % cfg.map_size;

		pid = cfg.base_pid + (__u32)(idx + chain);
		st->checksum ^= pid;
	}
	s = get_state(pid, chain);
#if MB_STORAGE != MB_CONTROL
	st->checksum ^= mb_slowdown(pid);
#endif
	if (s) {
		s->last_seen = i;
		s->count++;
		st->hits++;
	}
	if (cfg.latency) {
		st->found = mb_bits(s);
		st->chain = mb_chain(st);
	}
	return 0;
}

MB_RUN(one_op)
