// SPDX-License-Identifier: GPL-2.0
/*
 * Output family: a program sending events to user space. Each draw of the loop emits one event
 * of out_cfg.event_size bytes, its first word the event's sequence number (the draw index):
 *   MB_RINGBUF_RESERVE  bpf_ringbuf_reserve + write the sequence number in place + bpf_ringbuf_submit
 *   MB_RINGBUF_OUTPUT   bpf_ringbuf_output: the event copied from a per-CPU buffer
 *   MB_PERF_OUTPUT      bpf_perf_event_output to this CPU's perf buffer: copied from the same buffer
 *   MB_CONTROL          the same loop, sequence number written into the per-CPU buffer, no output
 * By default the ring buffer's adaptive wakeup (flags 0: a consumer is woken when it has caught
 * up) and the perf buffer's wakeup per event as libbpf opens it (wakeup_events 1); with
 * out_cfg.wakeup_every N, one wakeup per N events for both (sampled notification, as the kernel's
 * bench --rb-sampled: the ring buffer by flags here, the perf buffer by wakeup_events). A draw that the
 * buffer has no room for is lost: counted here (loops - hits), as the kernel returns it
 * (reserve NULL, output -ENOSPC), so emitted = consumed + lost is exact.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "mapbench.h"
#include "output.h"

#define MB_RINGBUF_RESERVE 30
#define MB_RINGBUF_OUTPUT 31
#define MB_PERF_OUTPUT 32

#ifndef MB_STORAGE
#error "compile with -DMB_STORAGE=MB_CONTROL, MB_RINGBUF_RESERVE, MB_RINGBUF_OUTPUT or MB_PERF_OUTPUT"
#endif

char LICENSE[] SEC("license") = "GPL";

const volatile struct mb_output_config out_cfg = { .event_size = 64 };

struct mb_payload {
	__u8 bytes[MB_MAX_EVENT_SIZE];
};

/* The event as the copying APIs (and the control) build it before they send it. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mb_payload);
} payload SEC(".maps");

#if MB_STORAGE == MB_RINGBUF_RESERVE || MB_STORAGE == MB_RINGBUF_OUTPUT
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096); /* bytes, a power-of-two number of pages: set by the loader */
} events SEC(".maps");
#endif

#if MB_STORAGE == MB_PERF_OUTPUT
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");
#endif

struct mb_output_ctx {
	struct mb_loop_state st;
	void *ctx; /* the program's context, which bpf_perf_event_output needs */
};

static long one_event(__u64 i, void *c)
{
	struct mb_output_ctx *oc = c;
	struct mb_loop_state *st = &oc->st;
	__u32 zero = 0, size = out_cfg.event_size, every = out_cfg.wakeup_every;
	__u64 seq = st->start + i;
	__u64 flags = !every ? 0 : seq % every == every - 1 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;

	if (size < sizeof(__u64) || size > MB_MAX_EVENT_SIZE)
		return 1;
	st->checksum ^= seq;
#if MB_STORAGE == MB_RINGBUF_RESERVE
	__u64 *e = bpf_ringbuf_reserve(&events, size, 0);

	if (!e)
		return 0;
	*e = seq;
	bpf_ringbuf_submit(e, flags);
	st->hits++;
#else
	struct mb_payload *p = bpf_map_lookup_elem(&payload, &zero);

	if (!p)
		return 1;
	*(__u64 *)p->bytes = seq;
#if MB_STORAGE == MB_RINGBUF_OUTPUT
	if (bpf_ringbuf_output(&events, p, size, flags) == 0)
		st->hits++;
#elif MB_STORAGE == MB_PERF_OUTPUT
	if (bpf_perf_event_output(oc->ctx, &events, BPF_F_CURRENT_CPU, p, size) == 0)
		st->hits++;
#endif
#endif
	return 0;
}

static long one_event_clocked(__u64 chunk, void *c)
{
	struct mb_output_ctx *oc = c;

	bpf_loop(MB_CLOCK_EVERY, one_event, oc, 0);
	oc->st.start += MB_CLOCK_EVERY;
	return bpf_ktime_get_ns() >= oc->st.deadline;
}

SEC("raw_tp")
int run(struct mb_run_args *args)
{
	struct mb_output_ctx oc = { .st = { .start = args->start }, .ctx = args };

	return mb_timed_run(args, one_event, one_event_clocked, &oc.st, 1);
}
