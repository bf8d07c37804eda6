// SPDX-License-Identifier: GPL-2.0
/*
 * The syscall engine's reference: a plain C loop over the same libbpf calls, with no Python
 * anywhere. mapbench.reference runs it side by side with the syscall engine and reports both.
 *
 *   ref_syscalls MAP_TYPE DRIVER OP SIZE BATCH REPS
 *     MAP_TYPE hash | lru_hash | percpu_hash | array | array_of_maps | hash_of_maps
 *     DRIVER   elem (OP lookup | update | delete) or batch (OP lookup | lookup_and_delete |
 *              update | delete), BATCH entries per batch call (ignored for elem); the maps of
 *              maps take elem replace_inner only: slot i gets another of SIZE + 1 empty inner
 *              hashes every pass (pass p: inner (i + p) % (SIZE + 1)), as the syscall engine does
 * Creates and fills the map, prints "ready", then runs one sample (REPS passes) for every line
 * it reads on stdin and prints its nanoseconds per element, until end of input: the engine
 * interleaves these samples with its own. Same keys as mapbench:
 * key(i) = i * 0x9E3779B1 ^ 0x5BD1E995 (arrays: i); u32 keys, u64 values.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "ref_syscalls: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: %s MAP_TYPE DRIVER OP SIZE BATCH REPS\n", argv[0]);
		return 2;
	}
	const char *type = argv[1], *driver = argv[2], *op = argv[3];
	uint32_t n = strtoul(argv[4], NULL, 0), batch = strtoul(argv[5], NULL, 0);
	int reps = atoi(argv[6]);
	char line[64];
	enum bpf_map_type mt = !strcmp(type, "hash")        ? BPF_MAP_TYPE_HASH
			       : !strcmp(type, "lru_hash")    ? BPF_MAP_TYPE_LRU_HASH
			       : !strcmp(type, "percpu_hash") ? BPF_MAP_TYPE_PERCPU_HASH
			       : !strcmp(type, "array")       ? BPF_MAP_TYPE_ARRAY
			       : !strcmp(type, "array_of_maps") ? BPF_MAP_TYPE_ARRAY_OF_MAPS
			       : !strcmp(type, "hash_of_maps")  ? BPF_MAP_TYPE_HASH_OF_MAPS
							      : BPF_MAP_TYPE_UNSPEC;
	int of_maps = mt == BPF_MAP_TYPE_ARRAY_OF_MAPS || mt == BPF_MAP_TYPE_HASH_OF_MAPS;
	int *inner = of_maps ? malloc(sizeof(*inner) * (n + 1)) : NULL;
	uint32_t pass = 0;
	int ncpu = mt == BPF_MAP_TYPE_PERCPU_HASH ? libbpf_num_possible_cpus() : 1;
	uint32_t capacity = mt == BPF_MAP_TYPE_LRU_HASH ? n + 256 * sysconf(_SC_NPROCESSORS_ONLN) : n;
	size_t vbytes = 8 * ncpu;
	/* one slot more than the map holds, for the walk's last call that answers ENOENT */
	uint32_t slots = capacity + 1;
	uint32_t *keys = malloc(sizeof(*keys) * slots), *out_keys = malloc(sizeof(*keys) * slots);
	char *values = malloc(vbytes * slots), *out_values = malloc(vbytes * slots);
	int fd, r;

	if (mt == BPF_MAP_TYPE_UNSPEC)
		die("unknown map type", EINVAL);
	if (of_maps) {
		for (uint32_t i = 0; i <= n; i++)
			if ((inner[i] = bpf_map_create(BPF_MAP_TYPE_HASH, "in", 4, 8, 1, NULL)) < 0)
				die("creating an inner map", inner[i]);
		LIBBPF_OPTS(bpf_map_create_opts, outer, .inner_map_fd = inner[0]);
		fd = bpf_map_create(mt, "ref", 4, 4, capacity, &outer);
	} else {
		fd = bpf_map_create(mt, "ref", 4, 8, capacity, NULL);
	}
	if (fd < 0)
		die("bpf_map_create", fd);
	for (uint32_t i = 0; i < n; i++) {
		keys[i] = mt == BPF_MAP_TYPE_ARRAY || of_maps ? i : (i * 0x9E3779B1u) ^ 0x5BD1E995u;
		memset(values + i * vbytes, (int)i, vbytes);
	}
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	uint32_t count = n;
	int rc = 0;

	if (of_maps) /* slot i holds inner map i */
		for (uint32_t i = 0; i < n && !rc; i++)
			rc = bpf_map_update_elem(fd, &keys[i], &inner[i], 0);
	else
		rc = bpf_map_update_batch(fd, keys, values, &count, &opts);
	if (rc)
		die("filling the map", rc);

	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) { /* one sample per line asked */
		uint64_t elapsed = 0, elements = 0;

		for (r = 0; r < reps; r++) {
			uint64_t t0 = now_ns();

			pass++;
			if (!strcmp(op, "replace_inner")) {
				for (uint32_t i = 0; i < n; i++) {
					rc = bpf_map_update_elem(fd, &keys[i], &inner[(i + pass) % (n + 1)], 0);
					if (rc)
						die(op, rc);
				}
				elements += n;
			} else if (!strcmp(driver, "elem")) {
				for (uint32_t i = 0; i < n; i++) {
					if (!strcmp(op, "lookup"))
						rc = bpf_map_lookup_elem(fd, &keys[i], out_values + i * vbytes);
					else if (!strcmp(op, "update"))
						rc = bpf_map_update_elem(fd, &keys[i], values + i * vbytes, 0);
					else
						rc = bpf_map_delete_elem(fd, &keys[i]);
					if (rc)
						die(op, rc);
				}
				elements += n;
			} else if (!strcmp(op, "lookup") || !strcmp(op, "lookup_and_delete")) {
				uint64_t in = 0, outb = 0;
				uint32_t got = 0;
				int first = 1;

				for (;;) {
					uint32_t ask = batch < slots - got ? batch : slots - got;

					for (;;) {
						count = ask;
						if (!strcmp(op, "lookup"))
							rc = bpf_map_lookup_batch(fd, first ? NULL : &in, &outb,
										  out_keys + got, out_values + got * vbytes,
										  &count, &opts);
						else
							rc = bpf_map_lookup_and_delete_batch(fd, first ? NULL : &in, &outb,
											     out_keys + got,
											     out_values + got * vbytes,
											     &count, &opts);
						if (rc != -ENOSPC || ask >= slots - got)
							break;
						ask = ask * 2 < slots - got ? ask * 2 : slots - got;
					}
					if (rc && rc != -ENOENT)
						die(op, rc);
					got += count;
					if (rc == -ENOENT)
						break;
					in = outb;
					first = 0;
				}
				elements += got;
			} else {
				for (uint32_t at = 0; at < n; at += count) {
					count = batch < n - at ? batch : n - at;
					rc = !strcmp(op, "update")
						     ? bpf_map_update_batch(fd, keys + at, values + at * vbytes, &count, &opts)
						     : bpf_map_delete_batch(fd, keys + at, &count, &opts);
					if (rc)
						die(op, rc);
				}
				elements += n;
			}
			elapsed += now_ns() - t0;
			if (!strcmp(op, "delete") || !strcmp(op, "lookup_and_delete")) {
				count = n; /* refill, untimed */
				rc = bpf_map_update_batch(fd, keys, values, &count, &opts);
				if (rc)
					die("refilling the map", rc);
			}
		}
		printf("%.3f\n", (double)elapsed / (double)elements);
		fflush(stdout);
	}
	close(fd);
	for (uint32_t i = 0; of_maps && i <= n; i++)
		close(inner[i]);
	return 0;
}
