// SPDX-License-Identifier: GPL-2.0
/*
 * Count packets per IPv4 source address at XDP: the rate limiter's first half. Where the
 * counters live is one macro, so that the builds differ in nothing else:
 *   -DCOUNTER_MAP=BPF_MAP_TYPE_HASH             one hash shared by every CPU (atomic adds)
 *   -DCOUNTER_MAP=BPF_MAP_TYPE_LRU_HASH         the same, evicting the oldest source when full
 *   -DCOUNTER_MAP=BPF_MAP_TYPE_PERCPU_HASH      a counter per CPU, summed by user space
 * Measured with mapbench (docs/own-programs.md):
 *   mapbench run --source examples/xdp_count/xdp_count.bpf.c --packet examples/xdp_count/traffic.pcap \
 *     --variant hash=-DCOUNTER_MAP=BPF_MAP_TYPE_HASH --variant lru=-DCOUNTER_MAP=BPF_MAP_TYPE_LRU_HASH \
 *     --variant percpu=-DCOUNTER_MAP=BPF_MAP_TYPE_PERCPU_HASH
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef COUNTER_MAP
#define COUNTER_MAP BPF_MAP_TYPE_HASH
#endif
#ifndef MAX_SOURCES
#define MAX_SOURCES 65536
#endif
#define ETH_P_IP 0x0800 /* if_ether.h is not in vmlinux.h */

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, COUNTER_MAP);
	__uint(max_entries, MAX_SOURCES);
	__type(key, __u32); /* the source address, network order */
	__type(value, __u64);
} counts SEC(".maps");

SEC("xdp")
int count_src(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	__u64 *n, one = 1;
	__u32 src;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	src = ip->saddr;
	n = bpf_map_lookup_elem(&counts, &src);
	if (!n) {
		bpf_map_update_elem(&counts, &src, &one, BPF_NOEXIST);
		return XDP_PASS;
	}
	if (COUNTER_MAP == BPF_MAP_TYPE_PERCPU_HASH)
		*n += 1; /* this CPU's own counter */
	else
		__sync_fetch_and_add(n, 1);
	return XDP_PASS;
}
