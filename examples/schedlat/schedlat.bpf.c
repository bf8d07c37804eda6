// SPDX-License-Identifier: GPL-2.0
/*
 * Scheduler latency, as runqslower measures it: a task's wakeup stamps it, its switch-in reads
 * the stamp and adds the wait to a histogram. Where the per-task stamp lives is one #ifdef:
 *   (default)               a hash keyed by pid, the entry deleted at switch-in
 *   -DUSE_TASK_STORAGE      task local storage, the task's own slot, zeroed at switch-in
 * Measured attached, on live scheduler events (docs/own-programs.md):
 *   mapbench run --source examples/schedlat/schedlat.bpf.c --attach \
 *     --variant pid_hash --variant task_storage=-DUSE_TASK_STORAGE
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define TASK_RUNNING 0
#define MAX_SLOTS 32

char LICENSE[] SEC("license") = "GPL";

#ifdef USE_TASK_STORAGE
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} start SEC(".maps");
#else
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} start SEC(".maps");
#endif

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} hist SEC(".maps"); /* slot i: waits of [2^i, 2^(i+1)) us */

static __always_inline void stamp(struct task_struct *p)
{
	__u64 now = bpf_ktime_get_ns();
#ifdef USE_TASK_STORAGE
	__u64 *slot = bpf_task_storage_get(&start, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (slot)
		*slot = now;
#else
	__u32 pid = p->pid;

	bpf_map_update_elem(&start, &pid, &now, BPF_ANY);
#endif
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(on_wakeup, struct task_struct *p)
{
	stamp(p);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(on_wakeup_new, struct task_struct *p)
{
	stamp(p);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u64 *then, us;
	__u32 slot = 0;

	if (prev->__state == TASK_RUNNING) /* preempted: it waits again from now */
		stamp(prev);
#ifdef USE_TASK_STORAGE
	then = bpf_task_storage_get(&start, next, 0, 0);
#else
	__u32 pid = next->pid;

	then = bpf_map_lookup_elem(&start, &pid);
#endif
	if (!then || !*then)
		return 0;
	us = (bpf_ktime_get_ns() - *then) / 1000;
	while (us > 1 && slot < MAX_SLOTS - 1) {
		us >>= 1;
		slot++;
	}
	__u64 *count = bpf_map_lookup_elem(&hist, &slot);
	if (count)
		*count += 1;
#ifdef USE_TASK_STORAGE
	*then = 0;
#else
	bpf_map_delete_elem(&start, &pid);
#endif
	return 0;
}
