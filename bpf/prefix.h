/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The prefix family's storage macros and its LPM trie, as the loader sizes, configures and
 * fills it (mapbench/measure/strategies.py): the family's builds (prefix.bpf.c) and the minimal
 * reference's trie lookup (minimal.bpf.c) declare the same one. The numbers are kept out of
 * mapbench.h's list, and clear of it.
 */
#ifndef MAPBENCH_PREFIX_H
#define MAPBENCH_PREFIX_H

#define MB_LPM_TRIE 20
#define MB_EXACT_HASH 21
#define MB_FRONT_HASH 22

#if MB_STORAGE == MB_LPM_TRIE || MB_STORAGE == MB_FRONT_HASH
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* the kernel refuses a trie without it */
	__uint(key_size, 8);                  /* set by the loader: 4 + address bytes */
	__uint(value_size, sizeof(__u64));
	__uint(max_entries, 1);               /* sized by the loader before load */
} prefixes SEC(".maps");
#endif

#endif /* MAPBENCH_PREFIX_H */
