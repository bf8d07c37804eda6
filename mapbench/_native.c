/*
 * Native helpers of the cffi module. Element and batch loops live here so that the
 * interpreter is not in the timing: Python adds 40-115 % to a ~700 ns syscall on this kind of
 * machine. Every loop times itself with CLOCK_MONOTONIC.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/types.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "mapbench.h"

#define MB_LOOKUP 0
#define MB_UPDATE 1
#define MB_DELETE 2

/* libbpf's log (verifier messages included) goes to a buffer the loader can show. */
static char mb_log[1 << 16];
static size_t mb_log_len;

static int mb_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	size_t room = sizeof(mb_log) - mb_log_len;
	int n;

	if (level == LIBBPF_DEBUG || room <= 1)
		return 0;
	n = vsnprintf(mb_log + mb_log_len, room, fmt, ap);
	if (n > 0)
		mb_log_len += (size_t)n < room ? (size_t)n : room - 1;
	return 0;
}

void mb_log_capture(void)
{
	libbpf_set_print(mb_print);
}

size_t mb_log_take(char *buf, size_t size)
{
	size_t n = mb_log_len < size ? mb_log_len : size;

	memcpy(buf, mb_log, n);
	mb_log_len = 0;
	return n;
}

int mb_pidfd_open(int pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static __u64 mb_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/*
 * One syscall per element over n elements, timed as a whole. keys may be NULL for maps
 * without keys (bloom filter: the value is the element). A lookup or delete of an absent key
 * (ENOENT) is counted in *missing; any other failure stops the loop and is returned as -errno.
 */
int mb_elem_loop(int fd, int op, const void *keys, void *values, size_t n, size_t key_size,
		 size_t value_size, __u64 flags, __u64 *elapsed_ns, size_t *missing)
{
	const char *k = keys;
	char *v = values;
	size_t i, absent = 0;
	int rc = 0, err = 0;
	__u64 t0 = mb_now_ns();

	for (i = 0; i < n; i++) {
		const void *key = k ? k + i * key_size : NULL;

		switch (op) {
		case MB_LOOKUP:
			rc = bpf_map_lookup_elem(fd, key, v + i * value_size);
			break;
		case MB_UPDATE:
			rc = bpf_map_update_elem(fd, key, v + i * value_size, flags);
			break;
		case MB_DELETE:
			rc = bpf_map_delete_elem(fd, key);
			break;
		default:
			rc = -EINVAL;
		}
		if (rc == -ENOENT && op != MB_UPDATE) {
			absent++;
		} else if (rc < 0) {
			err = rc;
			break;
		}
	}
	*elapsed_ns = mb_now_ns() - t0;
	*missing = absent;
	return err;
}

/*
 * A whole-map walk with BPF_MAP_LOOKUP_BATCH (or LOOKUP_AND_DELETE_BATCH), `batch` entries
 * asked per call. The kernel answers ENOSPC when a hash bucket holds more entries than asked
 * for: the call is retried with twice the count (counted in *retries). ENOENT ends the walk
 * while the count it returned is still valid. The in/out token is 8 bytes (hash maps use a
 * u32 bucket index, arrays a u32 key).
 */
int mb_lookup_walk(int fd, int and_delete, void *keys, void *values, size_t capacity,
		   __u32 batch, size_t key_size, size_t value_size, __u64 *elapsed_ns,
		   size_t *found, __u64 *retries, __u64 *calls)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	__u64 token_in = 0, token_out = 0, nr_retries = 0, nr_calls = 0;
	char *k = keys, *v = values;
	size_t got = 0;
	bool first = true;
	int rc, err = 0;
	__u64 t0 = mb_now_ns();

	for (;;) {
		size_t room = capacity - got;
		__u32 ask = batch < room ? batch : (__u32)room;
		__u32 count;

		if (ask == 0) {
			err = -ENOSPC; /* more entries than the buffers hold */
			break;
		}
		for (;;) { /* a larger count for this call only; the next asks for `batch` again */
			count = ask;
			if (and_delete)
				rc = bpf_map_lookup_and_delete_batch(fd, first ? NULL : &token_in,
								     &token_out, k + got * key_size,
								     v + got * value_size, &count, &opts);
			else
				rc = bpf_map_lookup_batch(fd, first ? NULL : &token_in, &token_out,
							  k + got * key_size, v + got * value_size,
							  &count, &opts);
			nr_calls++;
			if (rc != -ENOSPC || ask >= room)
				break;
			nr_retries++;
			ask = (size_t)ask * 2 < room ? ask * 2 : (__u32)room;
		}
		if (rc < 0 && rc != -ENOENT) {
			err = rc;
			break;
		}
		got += count;
		if (rc == -ENOENT)
			break;
		token_in = token_out;
		first = false;
	}
	*elapsed_ns = mb_now_ns() - t0;
	*found = got;
	*retries = nr_retries;
	*calls = nr_calls;
	return err;
}

/*
 * BPF_MAP_UPDATE_BATCH or BPF_MAP_DELETE_BATCH over n elements, `batch` per call. Returns 0
 * or -errno; *done counts the elements the kernel reported as processed.
 */
int mb_batch_loop(int fd, int op, const void *keys, const void *values, size_t n, __u32 batch,
		  size_t key_size, size_t value_size, __u64 elem_flags, __u64 *elapsed_ns,
		  size_t *done, __u64 *calls)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = elem_flags);
	const char *k = keys, *v = values;
	size_t at = 0;
	__u64 nr_calls = 0;
	int rc = 0;
	__u64 t0 = mb_now_ns();

	while (at < n) {
		__u32 count = n - at < batch ? (__u32)(n - at) : batch;

		if (op == MB_UPDATE)
			rc = bpf_map_update_batch(fd, k + at * key_size, v + at * value_size, &count,
						  &opts);
		else
			rc = bpf_map_delete_batch(fd, k + at * key_size, &count, &opts);
		nr_calls++;
		if (rc < 0) /* unsupported ops leave count as it was: trust only whole calls */
			break;
		at += count;
	}
	*elapsed_ns = mb_now_ns() - t0;
	*done = at;
	*calls = nr_calls;
	return rc < 0 ? rc : 0;
}

/*
 * The attached engine's load generator: nr_tasks threads in pairs, each pair passing one byte
 * back and forth through two pipes, so that every round trip is two wakeups and two context
 * switches. Runs for `seconds`; returns the number of round trips, or -errno when the threads
 * or pipes cannot be made (then nothing is left running).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct mb_pingpong_pair {
	int ping[2], pong[2];
	atomic_int *stop;
	__u64 rounds;
};

static void *mb_ping(void *arg)
{
	struct mb_pingpong_pair *p = arg;
	char byte = 0;

	while (!atomic_load(p->stop)) {
		if (write(p->ping[1], &byte, 1) != 1 || read(p->pong[0], &byte, 1) != 1)
			break;
		p->rounds++;
	}
	close(p->ping[1]); /* the partner's read returns 0: it ends too */
	p->ping[1] = -1;
	return NULL;
}

static void *mb_pong(void *arg)
{
	struct mb_pingpong_pair *p = arg;
	char byte;

	while (read(p->ping[0], &byte, 1) == 1)
		if (write(p->pong[1], &byte, 1) != 1)
			break;
	close(p->pong[1]);
	p->pong[1] = -1;
	return NULL;
}

long long mb_pingpong(int nr_tasks, double seconds)
{
	int nr_pairs = nr_tasks / 2, made = 0, err = 0, i;
	struct mb_pingpong_pair *pairs = calloc(nr_pairs, sizeof(*pairs));
	pthread_t *threads = calloc(nr_pairs * 2, sizeof(*threads));
	atomic_int stop = 0;
	struct timespec nap = { (time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9) };
	long long rounds = 0;

	if (!pairs || !threads || nr_pairs < 1) {
		free(pairs);
		free(threads);
		return -ENOMEM;
	}
	for (i = 0; i < nr_pairs; i++)
		pairs[i].ping[0] = pairs[i].ping[1] = pairs[i].pong[0] = pairs[i].pong[1] = -1;
	for (i = 0; i < nr_pairs && !err; i++) {
		pairs[i].stop = &stop;
		if (pipe(pairs[i].ping) || pipe(pairs[i].pong)) {
			err = -errno;
			break;
		}
		if ((err = -pthread_create(&threads[2 * i + 1], NULL, mb_pong, &pairs[i])))
			break;
		if ((err = -pthread_create(&threads[2 * i], NULL, mb_ping, &pairs[i]))) {
			close(pairs[i].ping[1]); /* lets this pair's pong end */
			pairs[i].ping[1] = -1;
			pthread_join(threads[2 * i + 1], NULL);
			break;
		}
		made++;
	}
	if (!err)
		nanosleep(&nap, NULL);
	atomic_store(&stop, 1);
	for (i = 0; i < made; i++) {
		pthread_join(threads[2 * i], NULL);
		pthread_join(threads[2 * i + 1], NULL);
		rounds += pairs[i].rounds;
	}
	for (i = 0; i < nr_pairs; i++) { /* every thread has ended: close what is left */
		int *fds[] = { pairs[i].ping, pairs[i].pong };
		for (int j = 0; j < 2; j++)
			for (int e = 0; e < 2; e++)
				if (fds[j][e] >= 0)
					close(fds[j][e]);
	}
	free(pairs);
	free(threads);
	return err ? err : rounds;
}
