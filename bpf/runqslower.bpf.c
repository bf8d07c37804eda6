// SPDX-License-Identifier: GPL-2.0
/*
 * The article's runqslower model: run-queue delay per task, from the moment a task is woken
 * (or preempted while runnable) until it runs.
 *   MB_PID_HASH      enqueue timestamps in a hash keyed by pid, pre-filled with map_size
 *                    dummy pids (the tracer's view of a busy machine)
 *   MB_TASK_STORAGE  enqueue timestamps in task local storage
 *   MB_CONTROL       empty bodies on the same hooks: what attaching, the timing and the
 *                    counting cost by themselves
 * Only the map definitions and the accessors sit under #if.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "mapbench.h"

#ifndef MB_STORAGE
#error "compile with -DMB_STORAGE=MB_CONTROL, MB_PID_HASH or MB_TASK_STORAGE"
#endif

char LICENSE[] SEC("license") = "GPL";

#define TASK_RUNNING 0

/* Every task's timestamps are kept, as runqslower does; only the delays of one thread group
 * (the load generator's) go into the histogram, so that the pair can be compared on them. */
const volatile struct mb_sched_config cfg = {};
struct mb_sched_result res = {};

#if MB_STORAGE == MB_PID_HASH
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1); /* sized by the loader: map_size dummies + room for live tasks */
} start SEC(".maps");
#elif MB_STORAGE == MB_TASK_STORAGE
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} start SEC(".maps");
#endif

/* In every build, the control too: the events that concern the target thread group, timed
 * inside the program, and all events. The sched tracepoints fire with interrupts off (under
 * the run-queue lock), so the programs never nest on one CPU: plain adds to this CPU's slot. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mb_sched_counts);
} counts SEC(".maps");

static __always_inline bool is_target(struct task_struct *p)
{
	return p->tgid == cfg.target_tgid;
}

/* The clock at the start of the body, read only for a target event: the test of whether it
 * is one, and the counting after the body, stay outside the timed span. */
static __always_inline __u64 body_start(bool target)
{
	return target ? bpf_ktime_get_ns() : 0;
}

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

static __always_inline void enqueue(struct task_struct *p)
{
#if MB_STORAGE != MB_CONTROL
	__u64 ts = bpf_ktime_get_ns();

#if MB_STORAGE == MB_PID_HASH
	__u32 pid = p->pid;

	bpf_map_update_elem(&start, &pid, &ts, BPF_ANY);
#else
	__u64 *slot = bpf_task_storage_get(&start, p, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (slot)
		*slot = ts;
#endif
#endif
}

static __always_inline void record(__u64 delta)
{
	__u32 slot = 0;

	while (delta > 1 && slot < MB_NR_SLOTS - 1) {
		delta >>= 1;
		slot++;
	}
	__sync_fetch_and_add(&res.delay_hist[slot], 1);
}

static __always_inline void dequeue(struct task_struct *next)
{
#if MB_STORAGE != MB_CONTROL
	/* read the clock before the lookup, so that the lookup's own cost is not a delay */
	__u64 now = bpf_ktime_get_ns(), *tsp, ts;

#if MB_STORAGE == MB_PID_HASH
	__u32 pid = next->pid;

	tsp = bpf_map_lookup_elem(&start, &pid);
	if (!tsp)
		return;
	ts = *tsp;
	bpf_map_delete_elem(&start, &pid);
#else
	tsp = bpf_task_storage_get(&start, next, NULL, 0);
	if (!tsp || !*tsp)
		return;
	ts = *tsp;
	*tsp = 0;
#endif
	/* the report path: runqslower sends a delay at least min_us long to user space; here it
	 * goes into the histogram */
	if (is_target(next) && now - ts >= cfg.min_delay_ns)
		record(now - ts);
#endif
}

/* A wakeup, of a new task or not: the target event is the woken task's. */
static __always_inline int woken(struct task_struct *p)
{
	bool target = is_target(p);
	__u64 start = body_start(target);

	enqueue(p);
	count(target, start);
	return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(on_wakeup, struct task_struct *p)
{
	return woken(p);
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(on_wakeup_new, struct task_struct *p)
{
	return woken(p);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	bool target = is_target(prev) || is_target(next);
	__u64 start = body_start(target);

	if (prev->__state == TASK_RUNNING) /* preempted: back on the run queue */
		enqueue(prev);
	dequeue(next);
	count(target, start);
	return 0;
}
