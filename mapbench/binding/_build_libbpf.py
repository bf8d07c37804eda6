"""cffi (API mode) build of the thin libbpf binding, compiled at `pip install`.

Only what mapbench calls is declared. Structs are declared with `...;` so that cffi takes
their layout from the real headers (libbpf 1.1.2's, and bpf/mapbench.h for the kernel/user
contract), and constants with `...` so that their values come from there too. The native helpers
in _native.c exist because Python cannot do them well: capture libbpf's printf-style log (a
va_list callback), and run element and batch syscall loops without the interpreter in the
timing.
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
BPF_DIR = HERE.parents[1] / "bpf"  # the checkout's bpf/ (mapbench.bpf once installed)

ffibuilder = FFI()

ffibuilder.cdef(
    r"""
typedef uint8_t __u8;
typedef uint32_t __u32;
typedef uint64_t __u64;
typedef int32_t __s32;

struct bpf_object;
struct bpf_map;
struct bpf_program;
struct bpf_link;

struct bpf_test_run_opts {
    size_t sz;
    const void *data_in;
    void *data_out;
    __u32 data_size_in;
    __u32 data_size_out;
    const void *ctx_in;
    __u32 ctx_size_in;
    void *ctx_out;
    __u32 ctx_size_out;
    __u32 retval;
    int repeat;
    __u32 duration;
    __u32 flags;
    __u32 cpu;
    ...;
};

struct btf;
struct btf_type { __u32 name_off; __u32 info; ...; };

struct bpf_map_batch_opts {
    size_t sz;
    __u64 elem_flags;
    __u64 flags;
};

struct bpf_prog_info {
    __u32 type;
    __u32 id;
    __u32 jited_prog_len;
    __u32 xlated_prog_len;
    __u64 run_time_ns;
    __u64 run_cnt;
    __u64 recursion_misses;
    __u32 verified_insns;
    ...;
};

struct bpf_map_info {
    __u32 type;
    __u32 id;
    __u32 key_size;
    __u32 value_size;
    __u32 max_entries;
    __u32 map_flags;
    __u64 map_extra;
    ...;
};

/* bpf/mapbench.h, the kernel/user contract: layouts and constants come from the header. */
struct mb_config {
    __u64 seed;
    __u32 map_size;
    __u32 hit_thresh;
    __u32 key_mult;
    __u32 key_salt;
    __u32 op;
    __u32 base_pid;
    __u32 sequential;
    __u32 nr_maps;
    __u32 bloom_words;
    __u32 index_keys;
    __u32 key_words;
    __u32 value_words;
    __u32 table_mask;
    __u32 write_op;
    __u32 latency;
    __u32 keyless;
    ...;
};
struct mb_run_args {
    __u64 nr_loops; __u64 start; __u64 first_entry; __u64 nr_entries; __u64 producers; __u64 window_ns; ...;
};
struct mb_result {
    __u64 start_ns; __u64 elapsed_ns; __u64 ops; __u64 loops; __u64 hits; __u64 filter_positives; __u64 checksum;
    __u64 value_checksum; ...;
};
struct mb_sched_config { __u32 target_tgid; __u64 min_delay_ns; ...; };
struct mb_sched_result { __u64 delay_hist[...]; ...; };
#define MB_OP_LOOKUP ...
#define MB_OP_UPDATE ...
#define MB_OP_GET ...
#define MB_OP_DELETE ...
#define MB_OP_DELETE_INSERT ...
#define MB_OP_INSERT ...
#define MB_HIT_SCALE ...
#define MB_CLOCK_EVERY ...
#define MB_BLOOM_MAX_WORDS ...
#define MB_MAX_KEY_WORDS ...
#define MB_MAX_VALUE_WORDS ...
#define MB_MAX_TASK_MAPS ...
#define MB_NR_SLOTS ...

#define BPF_ANY ...
#define BPF_NOEXIST ...
#define BPF_EXIST ...
#define BPF_F_LOCK ...
#define BPF_F_TEST_RUN_ON_CPU ...

enum bpf_stats_type { BPF_STATS_RUN_TIME, ... };

__u32 libbpf_major_version(void);
__u32 libbpf_minor_version(void);
long libbpf_get_error(const void *ptr);
int libbpf_probe_bpf_map_type(int map_type, const void *opts);
int libbpf_probe_bpf_prog_type(int prog_type, const void *opts);
int libbpf_num_possible_cpus(void);

struct bpf_object *bpf_object__open_file(const char *path, const void *opts);
int bpf_object__load(struct bpf_object *obj);
void bpf_object__close(struct bpf_object *obj);
const char *bpf_object__name(const struct bpf_object *obj);
struct bpf_map *bpf_object__find_map_by_name(const struct bpf_object *obj, const char *name);
struct bpf_program *bpf_object__find_program_by_name(const struct bpf_object *obj,
                                                     const char *name);
struct bpf_map *bpf_object__next_map(const struct bpf_object *obj, const struct bpf_map *map);
struct bpf_program *bpf_object__next_program(const struct bpf_object *obj,
                                             struct bpf_program *prog);

const char *bpf_map__name(const struct bpf_map *map);
int bpf_map__fd(const struct bpf_map *map);
int bpf_map__type(const struct bpf_map *map);
__u32 bpf_map__max_entries(const struct bpf_map *map);
int bpf_map__set_max_entries(struct bpf_map *map, __u32 max_entries);
__u32 bpf_map__key_size(const struct bpf_map *map);
__u32 bpf_map__value_size(const struct bpf_map *map);
int bpf_map__set_value_size(struct bpf_map *map, __u32 size);
int bpf_map__set_key_size(struct bpf_map *map, __u32 size);
__u64 bpf_map__map_extra(const struct bpf_map *map);
int bpf_map__set_map_extra(struct bpf_map *map, __u64 map_extra);
int bpf_map__set_type(struct bpf_map *map, int type);
int bpf_map__set_map_flags(struct bpf_map *map, __u32 flags);
__u32 bpf_map__map_flags(const struct bpf_map *map);
int bpf_map__set_initial_value(struct bpf_map *map, const void *data, size_t size);
int bpf_map__reuse_fd(struct bpf_map *map, int fd);
void *bpf_map__initial_value(struct bpf_map *map, size_t *psize);

const char *bpf_program__name(const struct bpf_program *prog);
int bpf_program__fd(const struct bpf_program *prog);
int bpf_program__set_autoload(struct bpf_program *prog, bool autoload);
bool bpf_program__autoload(const struct bpf_program *prog);
struct bpf_link *bpf_program__attach(const struct bpf_program *prog);
int bpf_link__destroy(struct bpf_link *link);
int bpf_program__type(const struct bpf_program *prog);
const char *bpf_program__section_name(const struct bpf_program *prog);
const char *libbpf_bpf_prog_type_str(int t);
struct btf *bpf_object__btf(const struct bpf_object *obj);
__u32 bpf_map__btf_key_type_id(const struct bpf_map *map);
const struct btf_type *btf__type_by_id(const struct btf *btf, __u32 id);
int btf__resolve_type(const struct btf *btf, __u32 type_id);
const char *btf__name_by_offset(const struct btf *btf, __u32 offset);

int bpf_prog_test_run_opts(int prog_fd, struct bpf_test_run_opts *opts);
int bpf_map_lookup_elem(int fd, const void *key, void *value);
int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);
int bpf_map_delete_elem(int fd, const void *key);
int bpf_map_get_next_key(int fd, const void *key, void *next_key);
int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values,
                         __u32 *count, const struct bpf_map_batch_opts *opts);
int bpf_map_lookup_and_delete_batch(int fd, void *in_batch, void *out_batch, void *keys,
                                    void *values, __u32 *count,
                                    const struct bpf_map_batch_opts *opts);
int bpf_map_update_batch(int fd, const void *keys, const void *values, __u32 *count,
                         const struct bpf_map_batch_opts *opts);
int bpf_map_delete_batch(int fd, const void *keys, __u32 *count,
                         const struct bpf_map_batch_opts *opts);
int bpf_obj_get_info_by_fd(int bpf_fd, void *info, __u32 *info_len);
int bpf_enable_stats(enum bpf_stats_type type);

struct bpf_map_create_opts {
    size_t sz;
    __u32 map_flags;
    __u64 map_extra;
    ...;
};

int bpf_map_create(int map_type, const char *map_name, __u32 key_size, __u32 value_size,
                   __u32 max_entries, const struct bpf_map_create_opts *opts);

/* native helpers: mapbench/_native.c */
struct mb_io {
    int fd;
    const void *keys;
    const void *values;
    void *out_keys;
    void *out_values;
    size_t n;
    __u32 batch;
    size_t key_size;
    size_t value_size;
    __u64 flags;
    __u64 elapsed_ns;
    size_t done;
    size_t missing;
    __u64 calls;
    __u64 retries;
    ...;
};
struct mb_syscall_op { const char *driver; const char *op; int empties; int walks; ...; };
const struct mb_syscall_op *mb_syscall_op(int index);
int mb_syscall_run(int index, struct mb_io *io);
void mb_log_capture(void);
size_t mb_log_take(char *buf, size_t size);
int mb_pidfd_open(int pid);
long long mb_pingpong(int nr_tasks, double seconds);
__u64 mb_chase(void **start, __u64 steps, void **end);
#define MB_OP_CACHE ...
struct mb_lru_counts { __u64 inserted; __u64 entries; __u64 first_eviction; ...; };
struct mb_create_config { __u32 target_tgid; __u32 op; ...; };
struct mb_create_result { __u64 created; __u64 exited; __u64 removed; ...; };
void *mb_threads_start(int n);
int mb_threads_finish(void *handle);
int mb_outer_map_create(int map_type, __u32 max_entries, int inner_map_fd);

/* the output family (bpf/output.h) and its consumer (_native.c) */
struct mb_output_config { __u32 event_size; __u32 wakeup_every; ...; };
#define MB_MAX_EVENT_SIZE ...
struct mb_consumer { int map_fd; int perf; int cpu; double rate_per_s; size_t perf_pages; int error;
                     __u32 wakeup_every; ...; };
int mb_consumer_start(struct mb_consumer *c);
void mb_consumer_repace(struct mb_consumer *c);
void mb_consumer_stop(struct mb_consumer *c);
__u64 mb_consumer_events(struct mb_consumer *c);
__u64 mb_consumer_bytes(struct mb_consumer *c);
__u64 mb_consumer_lost(struct mb_consumer *c);
"""
)

ffibuilder.set_source(
    "mapbench.binding._libbpf",
    (HERE / "_native.c").read_text(),
    libraries=["bpf", "pthread"],
    include_dirs=[str(BPF_DIR)],
    extra_compile_args=["-O2"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
