/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The membership set's maps, as the loader sizes, configures and fills them
 * (mapbench/strategies.py): the membership family's builds and the minimal reference's
 * (minimal.bpf.c) declare the same ones.
 */
#ifndef MAPBENCH_MEMBERS_H
#define MAPBENCH_MEMBERS_H

#if MB_STORAGE == MB_HASH || MB_STORAGE == MB_BLOOM
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	/* sizes, not BTF types: the loader sets key and value size (--key-size, --value-size) */
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u64));
	__uint(max_entries, 1); /* sized by the loader before load */
} members SEC(".maps");
#endif

#if MB_STORAGE == MB_BLOOM
struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__uint(key_size, 0);
	__uint(value_size, sizeof(__u32)); /* element size, set by the loader (4..64 bytes) */
	__uint(max_entries, 1); /* sized by the loader before load */
	__uint(map_extra, 3);   /* number of hash functions, set by the loader */
} filter SEC(".maps");
#endif

#endif /* MAPBENCH_MEMBERS_H */
