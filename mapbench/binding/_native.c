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
#include <bpf/btf.h>
#include "mapbench.h"

/* One call of a syscall loop: what goes in, and what the loop reports. */
struct mb_io {
	int fd;
	const void *keys;  /* NULL: a map without keys (bloom filter) */
	const void *values;
	void *out_keys;    /* lookups write here */
	void *out_values;
	size_t n;          /* elements; for walks, the slots of the out buffers */
	__u32 batch;       /* entries per batch call */
	size_t key_size;
	size_t value_size; /* of one element as user space sees it (per-CPU: every CPU's value) */
	__u64 flags;
	__u64 elapsed_ns;  /* out */
	size_t done;       /* out: elements processed (walks: found) */
	size_t missing;    /* out: ENOENT of single lookups and deletes */
	__u64 calls;       /* out: syscalls made */
	__u64 retries;     /* out: walks, calls retried larger after ENOSPC */
};

typedef int (*mb_loop_fn)(struct mb_io *io);

struct mb_syscall_op {
	const char *driver;
	const char *op;
	int empties;
	int walks;
	mb_loop_fn run;
};

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
 * The syscall engine's loops (docs/method.md, "syscall engine"). Each times itself as a whole
 * with CLOCK_MONOTONIC. keys may be NULL for maps without keys (bloom filter: the value is
 * the element). Loops that read write into out_keys/out_values, buffers the caller allocated
 * once, so that no page is touched for the first time inside the timing.
 */
static int mb_elem_loop(struct mb_io *io, int op)
{
	const char *k = io->keys;
	const char *v = io->values;
	char *out = io->out_values;
	size_t i, absent = 0;
	int rc = 0, err = 0;
	__u64 t0 = mb_now_ns();

	for (i = 0; i < io->n; i++) {
		const void *key = k ? k + i * io->key_size : NULL;

		if (op == MB_OP_LOOKUP)
			rc = bpf_map_lookup_elem(io->fd, key, out + i * io->value_size);
		else if (op == MB_OP_UPDATE)
			rc = bpf_map_update_elem(io->fd, key, v + i * io->value_size, io->flags);
		else
			rc = bpf_map_delete_elem(io->fd, key);
		if (rc == -ENOENT && op != MB_OP_UPDATE) {
			absent++; /* an absent key is a finding, not a failure */
		} else if (rc < 0) {
			err = rc;
			break;
		}
	}
	io->elapsed_ns = mb_now_ns() - t0;
	io->done = i;
	io->missing = absent;
	io->calls = i + (err ? 1 : 0);
	return err;
}

static int mb_elem_lookup(struct mb_io *io) { return mb_elem_loop(io, MB_OP_LOOKUP); }
static int mb_elem_update(struct mb_io *io) { return mb_elem_loop(io, MB_OP_UPDATE); }
static int mb_elem_delete(struct mb_io *io) { return mb_elem_loop(io, MB_OP_DELETE); }

/*
 * A whole-map walk with BPF_MAP_LOOKUP_BATCH (or LOOKUP_AND_DELETE_BATCH), `batch` entries
 * asked per call, into out buffers of io->n slots. The kernel answers ENOSPC when a hash
 * bucket holds more entries than asked for: the call is retried with twice the count, for
 * this call only (counted in retries). ENOENT ends the walk while the count it returned is
 * still valid. The in/out token is 8 bytes (hash maps use a u32 bucket index, arrays a u32 key).
 */
static int mb_lookup_walk(struct mb_io *io, int and_delete)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	__u64 token_in = 0, token_out = 0;
	char *k = io->out_keys, *v = io->out_values;
	size_t got = 0;
	bool first = true;
	int rc, err = 0;
	__u64 t0 = mb_now_ns();

	io->retries = io->calls = 0;
	for (;;) {
		size_t room = io->n - got;
		__u32 ask = io->batch < room ? io->batch : (__u32)room;
		__u32 count;

		if (ask == 0) {
			err = -ENOSPC; /* more entries than the buffers hold */
			break;
		}
		for (;;) {
			count = ask;
			if (and_delete)
				rc = bpf_map_lookup_and_delete_batch(io->fd, first ? NULL : &token_in,
								     &token_out, k + got * io->key_size,
								     v + got * io->value_size, &count, &opts);
			else
				rc = bpf_map_lookup_batch(io->fd, first ? NULL : &token_in, &token_out,
							  k + got * io->key_size, v + got * io->value_size,
							  &count, &opts);
			io->calls++;
			if (rc != -ENOSPC || ask >= room)
				break;
			io->retries++;
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
	io->elapsed_ns = mb_now_ns() - t0;
	io->done = got;
	return err;
}

static int mb_batch_lookup(struct mb_io *io) { return mb_lookup_walk(io, 0); }
static int mb_batch_lookup_and_delete(struct mb_io *io) { return mb_lookup_walk(io, 1); }

/* BPF_MAP_UPDATE_BATCH or BPF_MAP_DELETE_BATCH over n elements, `batch` per call; done counts
 * the elements of whole calls (an unsupported op leaves count as it was). */
static int mb_write_batches(struct mb_io *io, int op)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = io->flags);
	const char *k = io->keys, *v = io->values;
	size_t at = 0;
	int rc = 0;
	__u64 t0 = mb_now_ns();

	io->calls = 0;
	while (at < io->n) {
		__u32 count = io->n - at < io->batch ? (__u32)(io->n - at) : io->batch;

		if (op == MB_OP_UPDATE)
			rc = bpf_map_update_batch(io->fd, k + at * io->key_size, v + at * io->value_size,
						  &count, &opts);
		else
			rc = bpf_map_delete_batch(io->fd, k + at * io->key_size, &count, &opts);
		io->calls++;
		if (rc < 0)
			break;
		at += count;
	}
	io->elapsed_ns = mb_now_ns() - t0;
	io->done = at;
	return rc < 0 ? rc : 0;
}

static int mb_batch_update(struct mb_io *io) { return mb_write_batches(io, MB_OP_UPDATE); }
static int mb_batch_delete(struct mb_io *io) { return mb_write_batches(io, MB_OP_DELETE); }

/*
 * The one table of syscall ops: a new op is its loop above plus one line here. `empties`: the
 * op leaves the map empty, so the engine refills it (untimed) after each pass; `walks`: the op
 * finds the entries itself (no keys in), into the out buffers.
 */
static const struct mb_syscall_op mb_syscall_ops[] = {
	{ "elem", "lookup", 0, 0, mb_elem_lookup },
	{ "elem", "update", 0, 0, mb_elem_update },
	{ "elem", "delete", 1, 0, mb_elem_delete },
	{ "batch", "lookup", 0, 1, mb_batch_lookup },
	{ "batch", "lookup_and_delete", 1, 1, mb_batch_lookup_and_delete },
	{ "batch", "update", 0, 0, mb_batch_update },
	{ "batch", "delete", 1, 0, mb_batch_delete },
	/* map-in-map: an update of the outer map whose value is another inner map's fd */
	{ "elem", "replace_inner", 0, 0, mb_elem_update },
};

const struct mb_syscall_op *mb_syscall_op(int index)
{
	if (index < 0 || index >= (int)(sizeof(mb_syscall_ops) / sizeof(mb_syscall_ops[0])))
		return NULL;
	return &mb_syscall_ops[index];
}

/* Run op `index` once over io; 0 or -errno (ENOENT of single lookups/deletes is io->missing). */
int mb_syscall_run(int index, struct mb_io *io)
{
	const struct mb_syscall_op *op = mb_syscall_op(index);

	return op ? op->run(io) : -EINVAL;
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

/*
 * The memory engine's pointer chase (docs/method.md, "Memory latency"): `steps` dependent
 * loads through a cycle of pointers laid out by the caller, each load's address the value the
 * load before it read, so that no two loads overlap and the time per step is the latency of
 * wherever the working set sits. Times itself with CLOCK_MONOTONIC; writes where it stopped to
 * *end, so the chain is used and cannot be dropped by the compiler. Returns the elapsed ns.
 */
__u64 mb_chase(void **start, __u64 steps, void **end)
{
	void **p = start;
	__u64 began = mb_now_ns(), i;

	for (i = 0; i < steps; i++)
		p = (void **)*p;
	began = mb_now_ns() - began;
	*end = p;
	return began;
}

/*
 * Fresh tasks for the create engine (mapbench/measure/engines/create.py): n threads of this
 * process, started together and alive until released. Each blocks reading a pipe whose write end
 * only mb_threads_finish closes, so every read returns 0 at once and every thread exits. When
 * pthread_create returns, the thread's task exists (the fork tracepoint has fired). A killed
 * process takes its threads with it.
 */
struct mb_threads {
	int n, fds[2];
	pthread_t ids[];
};

int mb_threads_finish(void *handle);

static void *mb_wait_release(void *arg)
{
	char byte;
	int fd = *(int *)arg;

	while (read(fd, &byte, 1) < 0 && errno == EINTR)
		;
	return NULL;
}

/* Start n threads; NULL and errno set on failure (those started are released and joined). */
void *mb_threads_start(int n)
{
	struct mb_threads *t = calloc(1, sizeof(*t) + n * sizeof(pthread_t));
	int err = 0;

	if (!t)
		return NULL;
	if (pipe(t->fds)) {
		free(t);
		return NULL;
	}
	for (t->n = 0; t->n < n; t->n++) {
		err = pthread_create(&t->ids[t->n], NULL, mb_wait_release, &t->fds[0]);
		if (err)
			break;
	}
	if (err) {
		mb_threads_finish(t);
		errno = err;
		return NULL;
	}
	return t;
}

/* Release the threads, join them, free the handle: the threads started. */
int mb_threads_finish(void *handle)
{
	struct mb_threads *t = handle;
	int n = t->n;

	close(t->fds[1]);
	for (int i = 0; i < n; i++)
		pthread_join(t->ids[i], NULL);
	close(t->fds[0]);
	free(t);
	return n;
}

/*
 * An outer map of inner maps (BPF_MAP_TYPE_HASH_OF_MAPS or ARRAY_OF_MAPS) for the syscall
 * engine's replace_inner: created from user space it needs an inner map fd as its template
 * (bpf_map_create_opts.inner_map_fd). Keys u32, values u32 inner map fds. An fd, or -errno.
 */
int mb_outer_map_create(int map_type, __u32 max_entries, int inner_map_fd)
{
	LIBBPF_OPTS(bpf_map_create_opts, opts, .inner_map_fd = inner_map_fd);

	return bpf_map_create(map_type, "mb_outer", sizeof(__u32), sizeof(__u32), max_entries, &opts);
}

/*
 * The output engine's consumer (docs/method.md, "Output: ring buffer and perf buffer"): a thread
 * pinned to one CPU draining a BPF ring buffer (ring_buffer__poll) or perf buffer
 * (perf_buffer__poll, per-CPU rings opened by libbpf) while the producers run, counting events
 * and bytes; the perf buffer's lost records (PERF_RECORD_LOST) are counted as the kernel reports
 * them. rate_per_s > 0: the consumer takes at most that many events a second (it sleeps before an
 * event that comes too early), as a consumer with work of its own to do per event would.
 */
#include <sched.h>
#include <linux/perf_event.h>
#include "output.h"

struct mb_consumer {
	int map_fd;
	int perf;            /* 0: ring buffer; 1: perf buffer */
	int cpu;             /* where the thread runs; -1: anywhere */
	double rate_per_s;   /* 0: full speed */
	size_t perf_pages;   /* perf buffer: pages per CPU (a power of two) */
	__u32 wakeup_every;  /* perf buffer: wakeup_events (0: libbpf's default, every event) */
	atomic_ullong events;
	atomic_ullong bytes;
	atomic_ullong lost_reported; /* perf buffer: lost records' counts */
	atomic_int stop;
	int error;           /* -errno of the last poll that failed */
	__u64 started_ns;
	pthread_t thread;
	struct ring_buffer *rb;
	struct perf_buffer *pb;
};

static void mb_consumer_pace(struct mb_consumer *c)
{
	__u64 due, now;

	if (c->rate_per_s <= 0)
		return;
	due = c->started_ns + (__u64)(atomic_load(&c->events) * 1e9 / c->rate_per_s);
	while ((now = mb_now_ns()) < due && !atomic_load(&c->stop)) {
		struct timespec nap = { 0, (long)(due - now) };
		nanosleep(&nap, NULL);
	}
}

static int mb_ringbuf_event(void *ctx, void *data, size_t size)
{
	struct mb_consumer *c = ctx;

	mb_consumer_pace(c);
	atomic_fetch_add(&c->events, 1);
	atomic_fetch_add(&c->bytes, size);
	return 0;
}

static void mb_perf_event(void *ctx, int cpu, void *data, __u32 size)
{
	mb_ringbuf_event(ctx, data, size);
}

static void mb_perf_lost(void *ctx, int cpu, __u64 count)
{
	atomic_fetch_add(&((struct mb_consumer *)ctx)->lost_reported, count);
}

/* A perf buffer opened with wakeup_events N reads raw records: a sample (header, u32 size, data)
 * or a lost record (header, u64 id, u64 lost), as libbpf's own callback would see them. */
static enum bpf_perf_event_ret mb_perf_raw(void *ctx, int cpu, struct perf_event_header *e)
{
	if (e->type == PERF_RECORD_SAMPLE) {
		__u32 *size = (__u32 *)(e + 1);

		mb_perf_event(ctx, cpu, size + 1, *size);
	} else if (e->type == PERF_RECORD_LOST) {
		mb_perf_lost(ctx, cpu, ((__u64 *)(e + 1))[1]);
	}
	return LIBBPF_PERF_EVENT_CONT;
}

static void *mb_consume(void *arg)
{
	struct mb_consumer *c = arg;
	int rc;

	if (c->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(c->cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	c->started_ns = mb_now_ns();
	while (!atomic_load(&c->stop)) {
		/* as consumers in the field wait: in epoll, woken by the producers (10 ms: the
		 * longest it takes to see `stop`) */
		rc = c->perf ? perf_buffer__poll(c->pb, 10) : ring_buffer__poll(c->rb, 10);
		/* nothing woke it in 10 ms: read what a producer left without a wakeup (a
		 * BPF_RB_NO_WAKEUP record, or fewer than wakeup_events perf records) */
		if (rc == 0)
			rc = c->perf ? perf_buffer__consume(c->pb) : ring_buffer__consume(c->rb);
		if (rc < 0 && rc != -EINTR)
			c->error = rc;
	}
	return NULL;
}

/* Open the buffer's reader and start the thread: 0, or -errno (then nothing is left open). */
int mb_consumer_start(struct mb_consumer *c)
{
	int err;

	atomic_store(&c->stop, 0);
	if (c->perf && c->wakeup_every) {
		struct perf_event_attr attr = {
			.type = PERF_TYPE_SOFTWARE, .config = PERF_COUNT_SW_BPF_OUTPUT, .size = sizeof(attr),
			.sample_type = PERF_SAMPLE_RAW, .sample_period = 1, .wakeup_events = c->wakeup_every,
		};
		c->pb = perf_buffer__new_raw(c->map_fd, c->perf_pages, &attr, mb_perf_raw, c, NULL);
	} else if (c->perf)
		c->pb = perf_buffer__new(c->map_fd, c->perf_pages, mb_perf_event, mb_perf_lost, c, NULL);
	else
		c->rb = ring_buffer__new(c->map_fd, mb_ringbuf_event, c, NULL);
	if (c->perf ? !c->pb : !c->rb)
		return -errno;
	err = -pthread_create(&c->thread, NULL, mb_consume, c);
	if (err) {
		perf_buffer__free(c->pb);
		ring_buffer__free(c->rb);
		c->pb = NULL;
		c->rb = NULL;
	}
	return err;
}

/* Restart the pace from now: a limited-rate consumer does not catch up, at full speed, on the
 * pauses between samples. */
void mb_consumer_repace(struct mb_consumer *c)
{
	if (c->rate_per_s > 0)
		c->started_ns = mb_now_ns() - (__u64)(atomic_load(&c->events) * 1e9 / c->rate_per_s);
}

/* Stop the thread and free the reader (idempotent). */
void mb_consumer_stop(struct mb_consumer *c)
{
	if (c->pb || c->rb) {
		atomic_store(&c->stop, 1);
		pthread_join(c->thread, NULL);
	}
	perf_buffer__free(c->pb);
	ring_buffer__free(c->rb);
	c->pb = NULL;
	c->rb = NULL;
}

__u64 mb_consumer_events(struct mb_consumer *c) { return atomic_load(&c->events); }
__u64 mb_consumer_bytes(struct mb_consumer *c) { return atomic_load(&c->bytes); }
__u64 mb_consumer_lost(struct mb_consumer *c) { return atomic_load(&c->lost_reported); }
