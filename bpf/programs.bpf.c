// SPDX-License-Identifier: GPL-2.0
/*
 * The program pack experiment (the programs engine, docs/method.md, "The article's
 * program-level experiments"): up to 1024 distinct small programs on one tracepoint,
 * task_rename, which only the measuring thread fires (prctl PR_SET_NAME). Every event runs
 * chain_start, then the chain's programs in the order they were attached, then chain_stop:
 * start and stop time the chain in between with bpf_ktime_get_ns(). The loader loads (autoload)
 * the first N of the chain, and only start and stop for the control.
 * Each program adds its own number to a per-CPU sum: its code differs from every other's, so
 * each has its own tag and its own kallsyms entry, and the sum says every one of them ran.
 * Then it jumps over its padding (c->pad is 0, which the verifier cannot know, so the padding is
 * kept): one instruction, or with -DMB_SPREAD about a page of them (1100 x 4 bytes jited on
 * x86-64), so that each program's code (entry, then exit past the padding) lies on pages of its own
 * instead of a few programs to a page: the same instructions run, spread out.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "mapbench.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mb_chain_counts);
} chain SEC(".maps");

/* task_rename fires from __set_task_comm with the task locked, preemption off: on one CPU the
 * chain of one event runs from start to stop without another event's in between. */
SEC("tp_btf/task_rename")
int BPF_PROG(chain_start)
{
	__u32 zero = 0;
	struct mb_chain_counts *c = bpf_map_lookup_elem(&chain, &zero);

	if (c)
		c->started_ns = bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/task_rename")
int BPF_PROG(chain_stop)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 zero = 0;
	struct mb_chain_counts *c = bpf_map_lookup_elem(&chain, &zero);

	if (c && c->started_ns) {
		c->events++;
		c->ns += now - c->started_ns;
		c->started_ns = 0;
	}
	return 0;
}

#ifdef MB_SPREAD
#define MB_PAD ".rept 1100\n\tr0 += 1\n\t.endr"
#else
#define MB_PAD "r0 += 1"
#endif

/* Program number 0b<bits> of the chain, p<bits>: 0b is clang's binary literal. */
#define LINK(bits)                                                   \
	SEC("tp_btf/task_rename")                                    \
	int BPF_PROG(p##bits)                                        \
	{                                                            \
		__u32 zero = 0;                                      \
		struct mb_chain_counts *c = bpf_map_lookup_elem(&chain, &zero); \
									     \
		if (c) {                                             \
			c->runs++;                                   \
			c->sum += 0b##bits;                          \
			if (c->pad)                                  \
				asm volatile(MB_PAD ::: "r0");       \
		}                                                    \
		return 0;                                            \
	}
#define L1(b) LINK(b##0) LINK(b##1)
#define L2(b) L1(b##0) L1(b##1)
#define L3(b) L2(b##0) L2(b##1)
#define L4(b) L3(b##0) L3(b##1)
#define L5(b) L4(b##0) L4(b##1)
#define L6(b) L5(b##0) L5(b##1)
#define L7(b) L6(b##0) L6(b##1)
#define L8(b) L7(b##0) L7(b##1)
#define L9(b) L8(b##0) L8(b##1)
L9(0) L9(1) /* p0000000000 .. p1111111111: MB_MAX_CHAIN programs */
