/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The output family's contract (bpf/output.bpf.c and mapbench/measure/engines/output.py): its
 * knobs in .rodata, set between open and load. The verifier reads them as constants, which
 * bpf_ringbuf_reserve's size argument must be.
 */
#ifndef MAPBENCH_OUTPUT_H
#define MAPBENCH_OUTPUT_H

#define MB_MAX_EVENT_SIZE 4096 /* bytes of one event at most (the per-CPU payload buffer) */

struct mb_output_config {
	__u32 event_size; /* bytes of one event: a u64 sequence number, then payload */
	__u32 wakeup_every; /* ring buffer: 0, flags 0 (adaptive wakeup); N: BPF_RB_FORCE_WAKEUP on every
			     * Nth event, BPF_RB_NO_WAKEUP on the others (the perf buffer's is its
			     * wakeup_events, set by the consumer) */
};

#endif /* MAPBENCH_OUTPUT_H */
