// SPDX-License-Identifier: GPL-2.0
/*
 * Task creation family: a record for each new task, made when it is forked and removed when it
 * exits, the cost fork-heavy hosts pay (after the kernel's local-storage-create bench,
 * tools/testing/selftests/bpf/benchs/bench_local_storage_create.c, --storage-type task).
 *   MB_TASK_STORAGE  create: bpf_task_storage_get(child, F_CREATE) on sched_process_fork;
 *                    delete: bpf_task_storage_delete at sched_process_exit (without it the kernel
 *                    frees the storage itself when the task is freed: bpf_task_storage_free)
 *   MB_PID_HASH      insert: the child's pid into a hash (BPF_NOEXIST) on sched_process_fork;
 *                    delete: the pid from the hash at sched_process_exit (a hash needs it)
 *   MB_CONTROL       the same hooks, filter, timing and counting, no map operation
 * cfg.op says which of the two is timed: create (insert) or delete. Only the load's tasks (threads
 * of the target thread group) count. Only the map definitions and the accessors sit under #if.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "mapbench.h"

#ifndef MB_STORAGE
#error "compile with -DMB_STORAGE=MB_CONTROL, MB_PID_HASH or MB_TASK_STORAGE"
#endif

char LICENSE[] SEC("license") = "GPL";

const volatile struct mb_create_config cfg = {};
struct mb_create_result res = {};

#if MB_STORAGE == MB_PID_HASH
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct task_state);
	__uint(max_entries, 1); /* sized by the loader: map_size dummies + room for live tasks */
} records SEC(".maps");
#elif MB_STORAGE == MB_TASK_STORAGE
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* the kernel requires it for task storage */
	__type(key, int);
	__type(value, struct task_state);
} records SEC(".maps");
#endif

/* In every build, the control too, as the attached engine's (runqslower.bpf.c): the timed events
 * of the load's tasks and their time, per CPU, beside every event the programs ran on. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mb_sched_counts);
} counts SEC(".maps");

static __always_inline void count(bool target, __u64 start)
{
	__u64 end = target ? bpf_ktime_get_ns() : 0;
	__u32 zero = 0;
	struct mb_sched_counts *c = bpf_map_lookup_elem(&counts, &zero);

	if (!c)
		return;
	c->all_events++;
	if (target) {
		c->target_events++;
		c->target_ns += end - start;
	}
}

/* A thread of the load (not the load's main thread, whose exit ends the run). */
static __always_inline bool is_target(struct task_struct *p)
{
	return p->tgid == cfg.target_tgid && p->pid != cfg.target_tgid;
}

/* 1 when the task's record was made */
static __always_inline int create(struct task_struct *p)
{
#if MB_STORAGE == MB_PID_HASH
	struct task_state zero = {};
	__u32 pid = p->pid;

	return bpf_map_update_elem(&records, &pid, &zero, BPF_NOEXIST) == 0;
#elif MB_STORAGE == MB_TASK_STORAGE
	return bpf_task_storage_get(&records, p, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE) != NULL;
#else
	return 0;
#endif
}

/* 1 when the task had a record at exit (and it is removed, where cfg.op or the map asks) */
static __always_inline int remove(struct task_struct *p)
{
#if MB_STORAGE == MB_PID_HASH
	__u32 pid = p->pid;

	return bpf_map_delete_elem(&records, &pid) == 0;
#elif MB_STORAGE == MB_TASK_STORAGE
	if (cfg.op == MB_OP_DELETE)
		return bpf_task_storage_delete(&records, p) == 0;
	/* create: the kernel frees it when the task is freed; count it as there to be freed */
	return bpf_task_storage_get(&records, p, NULL, 0) != NULL;
#else
	return 0;
#endif
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	bool target = is_target(child), timed = target && cfg.op != MB_OP_DELETE;
	__u64 start = timed ? bpf_ktime_get_ns() : 0;
	int made = target ? create(child) : 0;

	count(timed, start);
	if (target)
		__sync_fetch_and_add(&res.created, made);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	bool target = is_target(p), timed = target && cfg.op == MB_OP_DELETE;
	__u64 start = timed ? bpf_ktime_get_ns() : 0;
	int had = target ? remove(p) : 0;

	count(timed, start);
	if (target) {
		__sync_fetch_and_add(&res.exited, 1);
		__sync_fetch_and_add(&res.removed, had);
	}
	return 0;
}
