//go:build ignore

// c10mprobe's kernel side: what each connection costs, aggregated in the
// kernel. Every measurement is one __always_inline handler; the wrappers below
// attach it per backend (fentry_, kprobe_, rawtp_, tp_), libbpf-tools style.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#if defined(__TARGET_ARCH_arm64)
/* vmlinux.h is dumped from an x86-64 kernel's BTF (make vmlinux). arm64's
 * kprobe context is its uapi struct user_pt_regs, which bpf_tracing.h's
 * PT_REGS_PARM macros read (arch/arm64/include/uapi/asm/ptrace.h); every
 * other type is relocated by CO-RE against the running kernel's BTF. */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};
#endif

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_CACHES 32
#define CACHE_NAME_LEN 32
#define NOT_WATCHED 0xffffffff
#define MAX_ORDER 11
#define TCP_STATES 13
#define LAT_SLOTS 32
#define PAGE_CACHE_BASE 64 /* stack keys for page allocations: base + order */
#define EEXIST 17 /* vmlinux.h has no errno values */

/* Set by Go before load. */
const volatile __u32 sample_every = 64; /* one allocation stack in this many */
const volatile __u16 run_port = 0;     /* the run's server port, host order */
const volatile __u32 socket_mask = 0;   /* entries of the sockets map, a power of two, less one */

/* Watched slab caches: name → index, filled by Go before attaching. */
struct cache_name {
	char name[CACHE_NAME_LEN];
};
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_CACHES);
	__type(key, struct cache_name);
	__type(value, __u32);
} cache_by_name SEC(".maps");

/* kmem_cache pointer → index (or NOT_WATCHED), resolved through its name the
 * first time the pointer is seen; every later event is one pointer lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} cache_by_ptr SEC(".maps");

struct cache_stats {
	__u64 allocs;
	__u64 frees;
	__u64 run_allocs;
	__u64 run_frees;
	__u64 run_softirq_allocs; /* of run_allocs, made while serving a softirq */
};

/* Softirqs being served on each CPU, from irq:softirq_entry/exit (the
 * preempt count that says so is a per-CPU variable this loader cannot
 * type). A softirq runs on whichever task the CPU was on, so what it
 * allocates counts as that task's: on loopback, the receiving end's sock
 * is made in the sender's softirq. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} softirq_depth SEC(".maps");

static __always_inline bool in_serving_softirq(void)
{
	__u32 zero = 0;
	__u32 *d = bpf_map_lookup_elem(&softirq_depth, &zero);
	return d && *d > 0;
}

static __always_inline void softirq_step(int up)
{
	__u32 zero = 0;
	__u32 *d = bpf_map_lookup_elem(&softirq_depth, &zero);
	if (!d)
		return;
	if (up)
		(*d)++;
	else if (*d > 0) /* attached while one ran: its exit is unmatched */
		(*d)--;
}

SEC("raw_tracepoint/softirq_entry")
int rawtp_softirq_entry(struct bpf_raw_tracepoint_args *ctx)
{
	softirq_step(1);
	return 0;
}

SEC("raw_tracepoint/softirq_exit")
int rawtp_softirq_exit(struct bpf_raw_tracepoint_args *ctx)
{
	softirq_step(0);
	return 0;
}

SEC("tracepoint/irq/softirq_entry")
int tp_softirq_entry(void *ctx)
{
	softirq_step(1);
	return 0;
}

SEC("tracepoint/irq/softirq_exit")
int tp_softirq_exit(void *ctx)
{
	softirq_step(0);
	return 0;
}
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_CACHES);
	__type(key, __u32);
	__type(value, struct cache_stats);
} cache_totals SEC(".maps");

/* Processes of the run (tgid), filled by Go as it starts them; the value
 * says which executable each runs (bpf.Image). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} run_pids SEC(".maps");

struct counters {
	__u64 sendmsg_calls;
	__u64 sendmsg_bytes;
	__u64 run_sendmsg_calls;
	__u64 run_sendmsg_bytes;
	__u64 page_allocs[MAX_ORDER];
	__u64 page_frees[MAX_ORDER];
	__u64 run_page_allocs[MAX_ORDER];
	__u64 state_to[TCP_STATES];
	__u64 connect_latency[LAT_SLOTS]; /* log2 µs, SYN_SENT → ESTABLISHED */
	__u64 direct_reclaim;
	__u64 memcg_reclaim;
	__u64 oom_victims;
	__u64 exceed_buf_limit;
	__u64 kmalloc_calls;
	__u64 kmalloc_bytes;
	__u64 lost_sockets;   /* socket map full */
	__u64 lost_stacks;    /* sample map full, or no stack to read */
	__u64 lost_kmalloc;   /* call-site map full */
	__u64 lost_caches;    /* cache pointer map full */
	__u64 lost_cpu_samples; /* CPU sample map full */
	__u64 stack_samples;
	__u64 stack_collisions; /* samples whose stack hashed to a bucket another stack holds */
	__u64 sample_countdown; /* allocations until the next stack sample */
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} totals SEC(".maps");

/* Per-socket memory of the run's sockets: an open-addressed table in an
 * array, keyed by the sock pointer. A connection is known by its client end,
 * (source address, port): the source's index in the run's plan times the
 * ports of ip_local_port_range, plus the port's offset, makes a dense slot
 * pair, the client's and the server's socket side by side, so that a
 * source's connections, whose ports the kernel hands out in order, are
 * walked like the array they are. An array slot costs one memory access
 * where a BPF hash map misses in its bucket and its element on every state
 * change and send. A source outside the plan starts from its address, mixed.
 * Where the plan is larger than the table (many --src addresses), slots wrap,
 * and a slot another socket holds is probed past, in steps that grow by one
 * (triangular numbers, which visit every slot of a power-of-two table). A
 * closed socket leaves a tombstone, so that a lookup walks past it to sockets
 * inserted after. */
const volatile __u32 port_lo = 0;          /* ip_local_port_range's first port */
const volatile __u32 ports_per_source = 1; /* ports in that range */
/* Automatic sources, when the plan's are: 127.1.0.1 upward, every address
 * but x.x.x.0 and x.x.x.255, so a source's index is arithmetic on its
 * address (no hash lookup, twice a socket event). 0: look it up. */
const volatile __u32 auto_sources = 0; /* how many */
#define AUTO_SOURCE_BASE 0x7f010000u /* 127.1.0.0, host order */
#define MAX_PROBES 32
#define TOMBSTONE 1ULL
struct sock_mem {
	__u64 sk; /* the live socket holding the entry; 0 when never used, TOMBSTONE when freed */
	__u64 bytes_sent;
	__u32 sends;
	__u32 wmem_queued;
	__s32 fwd_alloc;
	__u32 rmem_alloc;
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << 16);
	__type(key, __u32);
	__type(value, struct sock_mem);
} sockets SEC(".maps");

/* The run's source addresses (network order) → their index in the plan. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} run_sources SEC(".maps");

/* Client sockets in SYN_SENT → when they got there. tcp_v4_connect() sets
 * SYN_SENT before inet_hash_connect() picks the source port, so a
 * connecting socket's slot is not known yet; only connects in flight are here. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__type(key, __u64);
	__type(value, __u64);
} connecting SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
} stacks SEC(".maps");

struct stack_key {
	__s32 stack_id;
	__u32 cache; /* cache index, or PAGE_CACHE_BASE + order */
};
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct stack_key);
	__type(value, __u64); /* bytes, weighted by the sampling rate */
} alloc_stacks SEC(".maps");

struct site_stats {
	__u64 calls;
	__u64 bytes;
};
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct site_stats);
} kmalloc_sites SEC(".maps");

/* log2 of a 32-bit value, as libbpf-tools' bits.bpf.h computes it. */
static __always_inline __u64 log2_32(__u32 v)
{
	__u32 shift, r;
	r = (v > 0xFFFF) << 4; v >>= r;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

/* log2 of a 64-bit value, from its halves. */
static __always_inline __u64 log2_64(__u64 v)
{
	__u32 hi = v >> 32;
	return hi ? log2_32(hi) + 32 : log2_32(v);
}

/* lookup_or_try_init returns key's value, inserting init first when the key
 * is new; NULL only when the map has no room (libbpf-tools'
 * bpf_map_lookup_or_try_init). Another CPU inserting the same key first is
 * not a failure. */
static __always_inline void *lookup_or_try_init(void *map, const void *key, const void *init)
{
	void *v = bpf_map_lookup_elem(map, key);
	if (v)
		return v;
	long err = bpf_map_update_elem(map, key, init, BPF_NOEXIST);
	if (err && err != -EEXIST)
		return NULL;
	return bpf_map_lookup_elem(map, key);
}

static __always_inline struct counters *ctrs(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&totals, &zero);
}

/* Bumped by Go on every AddPID, so a per-CPU answer cached below is
 * never older than the run's set of processes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} run_gen SEC(".maps");

struct run_seen {
	__u64 pid_tgid;
	__u64 gen;
	__u64 run;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct run_seen);
} run_cache SEC(".maps");

/* in_run: is the current task one of the run's processes? Asked on every
 * watched slab allocation; the same task usually asks many times in a row,
 * so the answer is cached per CPU (array lookups, which the verifier
 * inlines) in front of the run_pids hash. */
static __always_inline bool in_run(void)
{
	__u32 zero = 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u64 *gen = bpf_map_lookup_elem(&run_gen, &zero);
	struct run_seen *seen = bpf_map_lookup_elem(&run_cache, &zero);
	if (gen && seen && seen->pid_tgid == id && seen->gen == *gen)
		return seen->run;
	__u32 tgid = id >> 32;
	bool run = bpf_map_lookup_elem(&run_pids, &tgid) != NULL;
	if (gen && seen) {
		seen->pid_tgid = id;
		seen->gen = *gen;
		seen->run = run;
	}
	return run;
}

/* The run's sockets are those on its server port, at either end. */
enum side { NOT_RUN = -1, CLIENT = 0, SERVER = 1 };

/* The first 16 bytes of sock_common: daddr, rcv_saddr, hash, dport, num. */
struct sk_ends {
	__u32 daddr;
	__u32 saddr;
	__u32 hash;
	__u16 dport; /* network order */
	__u16 num;   /* host order */
};

static __always_inline enum side run_side(const struct sock *sk, struct sk_ends *e)
{
	/* One read for both addresses and both ports. */
	if (bpf_core_read(e, sizeof(*e), &sk->__sk_common.skc_addrpair))
		return NOT_RUN;
	if (e->num == run_port)
		return SERVER;
	if (bpf_ntohs(e->dport) == run_port)
		return CLIENT;
	return NOT_RUN;
}

/* socket_hash is where a run socket's probe starts (before the mask). */
static __always_inline __u32 socket_hash(const struct sk_ends *e, enum side side)
{
	__u32 addr = side == SERVER ? e->daddr : e->saddr;
	__u32 port = side == SERVER ? bpf_ntohs(e->dport) : e->num;
	__u32 off = bpf_ntohl(addr) - AUTO_SOURCE_BASE;
	__u32 low = off & 0xff, idx = (off >> 8) * 254 + low - 1;
	__u32 *src = NULL;
	if (auto_sources && low != 0 && low != 255 && idx < auto_sources)
		src = &idx;
	else if (!auto_sources)
		src = bpf_map_lookup_elem(&run_sources, &addr);
	__u32 base;
	if (src) {
		base = *src * ports_per_source;
	} else {
		/* murmur3's finalizer: an unplanned source lands anywhere. */
		base = addr;
		base ^= base >> 16;
		base *= 0x85EBCA6Bu;
		base ^= base >> 13;
		base *= 0xC2B2AE35u;
		base ^= base >> 16;
	}
	return (base + port - port_lo) * 2 + side;
}

/* socket_find returns the entry sk holds, or NULL. */
static __always_inline struct sock_mem *socket_find(const struct sk_ends *e, enum side side, __u64 sk)
{
	__u32 slot = socket_hash(e, side);
#pragma unroll
	for (int i = 0; i < MAX_PROBES; i++) {
		slot = (slot + i) & socket_mask;
		struct sock_mem *m = bpf_map_lookup_elem(&sockets, &slot);
		if (!m || !m->sk)
			return NULL; /* never used: sk was never inserted past it */
		if (m->sk == sk)
			return m;
	}
	return NULL;
}

/* socket_insert claims a free slot for sk, or returns NULL when MAX_PROBES
 * slots from its hash are all held. */
static __always_inline struct sock_mem *socket_insert(const struct sk_ends *e, enum side side, __u64 sk)
{
	__u32 slot = socket_hash(e, side);
#pragma unroll
	for (int i = 0; i < MAX_PROBES; i++) {
		slot = (slot + i) & socket_mask;
		struct sock_mem *m = bpf_map_lookup_elem(&sockets, &slot);
		if (!m)
			return NULL;
		__u64 cur = m->sk;
		/* Two CPUs may claim the same slot: one compare-and-swap wins. */
		if ((cur == 0 || cur == TOMBSTONE) && __sync_val_compare_and_swap(&m->sk, cur, sk) == cur)
			return m;
	}
	return NULL;
}

/* One allocation stack in sample_every, weighted back up; bytes is read
 * only for the samples taken. */
static __always_inline void sample_stack(void *ctx, __u32 cache, const struct kmem_cache *s, __u64 bytes)
{
	struct counters *c = ctrs();
	if (!c)
		return;
	/* A countdown, not tick % sample_every: a 64-bit division costs tens
	 * of cycles, on every watched allocation. */
	if (c->sample_countdown) {
		c->sample_countdown--;
		return;
	}
	c->sample_countdown = sample_every - 1;
	struct stack_key key = { .cache = cache };
	key.stack_id = bpf_get_stackid(ctx, &stacks, 0);
	if (key.stack_id == -EEXIST) {
		/* -EEXIST: the stack map is a hash table without chaining; a
		 * second stack whose hash lands on a taken bucket is refused
		 * (BPF_F_REUSE_STACKID would overwrite the first and mislabel
		 * its samples): the birthday odds of the buckets Go sizes. */
		c->stack_collisions++;
		return;
	}
	if (key.stack_id < 0) {
		c->lost_stacks++;
		return;
	}
	c->stack_samples++;
	if (s)
		bytes = BPF_CORE_READ(s, size);
	__u64 zero = 0;
	__u64 *v = lookup_or_try_init(&alloc_stacks, &key, &zero);
	if (!v) {
		c->lost_stacks++;
		return;
	}
	__sync_fetch_and_add(v, bytes * sample_every);
}

/* ---- slab caches ---- */

/* A direct-mapped cache in front of cache_by_ptr: kmem_cache_alloc fires for
 * every slab allocation on the machine, and an array lookup, which the
 * verifier inlines, costs a fraction of a hash lookup. */
#define PTR_SLOTS 1024
/* A slot holds the kmem_cache pointer with the cache's index in its low six
 * bits (kmem_cache structs are cache-line aligned): one 8-byte store, so two
 * CPUs replacing a slot at once can never pair one's pointer with the
 * other's index. */
#define SLOT_INDEX_MASK 63ULL
#define SLOT_NOT_WATCHED 63ULL
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PTR_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} ptr_slots SEC(".maps");

static __always_inline __u32 resolve_cache(const struct kmem_cache *s)
{
	__u64 key = (__u64)s;
	/* kmem_cache structs are at least 64-byte aligned and apart. */
	__u32 slot_key = (key >> 6) & (PTR_SLOTS - 1);
	__u64 *slot = bpf_map_lookup_elem(&ptr_slots, &slot_key);
	if (slot) {
		__u64 v = *(volatile __u64 *)slot;
		if ((v & ~SLOT_INDEX_MASK) == key && !(key & SLOT_INDEX_MASK)) {
			__u64 i = v & SLOT_INDEX_MASK;
			return i == SLOT_NOT_WATCHED ? NOT_WATCHED : (__u32)i;
		}
	}

	__u32 *idx = bpf_map_lookup_elem(&cache_by_ptr, &key);
	if (idx) {
		if (slot && !(key & SLOT_INDEX_MASK))
			*(volatile __u64 *)slot = key | (*idx < MAX_CACHES ? *idx : SLOT_NOT_WATCHED);
		return *idx;
	}

	struct cache_name name = {};
	bpf_probe_read_kernel_str(name.name, sizeof(name.name), BPF_CORE_READ(s, name));
	__u32 *want = bpf_map_lookup_elem(&cache_by_name, &name);
	__u32 fresh = want ? *want : NOT_WATCHED;
	/* -EEXIST: another CPU resolved the same pointer first; not a loss. */
	long err = bpf_map_update_elem(&cache_by_ptr, &key, &fresh, BPF_NOEXIST);
	if (err && err != -EEXIST) {
		struct counters *c = ctrs();
		if (c)
			c->lost_caches++;
	}
	return fresh;
}

static __always_inline void handle_cache_alloc(void *ctx, __u32 index, const struct kmem_cache *s, __u64 bytes)
{
	if (index >= MAX_CACHES)
		return;
	struct cache_stats *st = bpf_map_lookup_elem(&cache_totals, &index);
	if (!st)
		return;
	st->allocs++;
	if (in_run()) {
		st->run_allocs++;
		if (in_serving_softirq())
			st->run_softirq_allocs++;
		sample_stack(ctx, index, s, bytes);
	}
}

static __always_inline void handle_cache_free(__u32 index)
{
	if (index >= MAX_CACHES)
		return;
	struct cache_stats *st = bpf_map_lookup_elem(&cache_totals, &index);
	if (!st)
		return;
	st->frees++;
	if (in_run())
		st->run_frees++;
}

SEC("raw_tracepoint/kmem_cache_alloc")
int rawtp_kmem_cache_alloc(struct bpf_raw_tracepoint_args *ctx)
{
	const struct kmem_cache *s = (const struct kmem_cache *)ctx->args[2];
	__u32 index = resolve_cache(s);
	if (index < MAX_CACHES)
		handle_cache_alloc(ctx, index, s, 0);
	return 0;
}

SEC("raw_tracepoint/kmem_cache_free")
int rawtp_kmem_cache_free(struct bpf_raw_tracepoint_args *ctx)
{
	handle_cache_free(resolve_cache((const struct kmem_cache *)ctx->args[2]));
	return 0;
}

static __always_inline __u32 cache_from_data_loc(void *ctx, __u32 data_loc)
{
	struct cache_name name = {};
	bpf_probe_read_kernel_str(name.name, sizeof(name.name), (char *)ctx + (data_loc & 0xffff));
	__u32 *idx = bpf_map_lookup_elem(&cache_by_name, &name);
	return idx ? *idx : NOT_WATCHED;
}

SEC("tracepoint/kmem/kmem_cache_alloc")
int tp_kmem_cache_alloc(struct trace_event_raw_kmem_cache_alloc *ctx)
{
	handle_cache_alloc(ctx, cache_from_data_loc(ctx, ctx->__data_loc_name), NULL, ctx->bytes_alloc);
	return 0;
}

SEC("tracepoint/kmem/kmem_cache_free")
int tp_kmem_cache_free(struct trace_event_raw_kmem_cache_free *ctx)
{
	handle_cache_free(cache_from_data_loc(ctx, ctx->__data_loc_name));
	return 0;
}

/* ---- kmalloc by call site, for the run's processes ---- */

static __always_inline void handle_kmalloc(__u64 call_site, __u64 bytes)
{
	if (!in_run())
		return;
	struct counters *c = ctrs();
	if (!c)
		return;
	c->kmalloc_calls++;
	c->kmalloc_bytes += bytes;
	struct site_stats zero = {};
	struct site_stats *s = lookup_or_try_init(&kmalloc_sites, &call_site, &zero);
	if (!s) {
		c->lost_kmalloc++;
		return;
	}
	__sync_fetch_and_add(&s->calls, 1);
	__sync_fetch_and_add(&s->bytes, bytes);
}

SEC("raw_tracepoint/kmalloc")
int rawtp_kmalloc(struct bpf_raw_tracepoint_args *ctx)
{
	handle_kmalloc(ctx->args[0], ctx->args[3]);
	return 0;
}

SEC("tracepoint/kmem/kmalloc")
int tp_kmalloc(struct trace_event_raw_kmalloc *ctx)
{
	handle_kmalloc(ctx->call_site, ctx->bytes_alloc);
	return 0;
}

/* ---- pages ---- */

static __always_inline void handle_page_alloc(void *ctx, __u32 order)
{
	struct counters *c = ctrs();
	if (!c || order >= MAX_ORDER)
		return;
	c->page_allocs[order]++;
	if (in_run()) {
		c->run_page_allocs[order]++;
		sample_stack(ctx, PAGE_CACHE_BASE + order, NULL, 4096ULL << order);
	}
}

static __always_inline void handle_page_free(__u32 order)
{
	struct counters *c = ctrs();
	if (c && order < MAX_ORDER)
		c->page_frees[order]++;
}

SEC("raw_tracepoint/mm_page_alloc")
int rawtp_mm_page_alloc(struct bpf_raw_tracepoint_args *ctx)
{
	/* A failed allocation is traced with a NULL page. */
	if (ctx->args[0])
		handle_page_alloc(ctx, (__u32)ctx->args[1]);
	return 0;
}

SEC("raw_tracepoint/mm_page_free")
int rawtp_mm_page_free(struct bpf_raw_tracepoint_args *ctx)
{
	handle_page_free((__u32)ctx->args[1]);
	return 0;
}

SEC("tracepoint/kmem/mm_page_alloc")
int tp_mm_page_alloc(struct trace_event_raw_mm_page_alloc *ctx)
{
	if (ctx->pfn != -1UL)
		handle_page_alloc(ctx, ctx->order);
	return 0;
}

SEC("tracepoint/kmem/mm_page_free")
int tp_mm_page_free(struct trace_event_raw_mm_page_free *ctx)
{
	handle_page_free(ctx->order);
	return 0;
}

/* ---- pressure, reclaim, OOM ---- */

#define COUNTER_HANDLER(field)                   \
	static __always_inline void count_##field(void) \
	{                                            \
		struct counters *c = ctrs();             \
		if (c)                                   \
			c->field++;                          \
	}
COUNTER_HANDLER(direct_reclaim)
COUNTER_HANDLER(memcg_reclaim)
COUNTER_HANDLER(oom_victims)
COUNTER_HANDLER(exceed_buf_limit)

SEC("raw_tracepoint/mm_vmscan_direct_reclaim_begin")
int rawtp_direct_reclaim(void *ctx) { count_direct_reclaim(); return 0; }
SEC("tracepoint/vmscan/mm_vmscan_direct_reclaim_begin")
int tp_direct_reclaim(void *ctx) { count_direct_reclaim(); return 0; }
SEC("raw_tracepoint/mm_vmscan_memcg_reclaim_begin")
int rawtp_memcg_reclaim(void *ctx) { count_memcg_reclaim(); return 0; }
SEC("tracepoint/vmscan/mm_vmscan_memcg_reclaim_begin")
int tp_memcg_reclaim(void *ctx) { count_memcg_reclaim(); return 0; }
SEC("raw_tracepoint/mark_victim")
int rawtp_mark_victim(void *ctx) { count_oom_victims(); return 0; }
SEC("tracepoint/oom/mark_victim")
int tp_mark_victim(void *ctx) { count_oom_victims(); return 0; }
SEC("raw_tracepoint/sock_exceed_buf_limit")
int rawtp_sock_exceed_buf_limit(void *ctx) { count_exceed_buf_limit(); return 0; }
SEC("tracepoint/sock/sock_exceed_buf_limit")
int tp_sock_exceed_buf_limit(void *ctx) { count_exceed_buf_limit(); return 0; }

/* ---- socket lifecycle ---- */

static __always_inline void connect_latency(struct counters *c, __u64 key)
{
	__u64 *t0 = bpf_map_lookup_elem(&connecting, &key);
	if (!t0)
		return;
	__u64 us = (bpf_ktime_get_ns() - *t0) / 1000;
	__u32 slot = us ? log2_64(us) + 1 : 0;
	if (slot >= LAT_SLOTS)
		slot = LAT_SLOTS - 1;
	c->connect_latency[slot]++;
	bpf_map_delete_elem(&connecting, &key);
}

static __always_inline void handle_set_state(const struct sock *sk, int newstate)
{
	struct counters *c = ctrs();
	if (!c)
		return;
	if (newstate >= 0 && newstate < TCP_STATES)
		c->state_to[newstate]++;
	if (newstate != TCP_SYN_SENT && newstate != TCP_ESTABLISHED && newstate != TCP_CLOSE)
		return;
	struct sk_ends e;
	enum side side = run_side(sk, &e);
	if (side == NOT_RUN)
		return;
	__u64 key = (__u64)sk;
	if (newstate == TCP_SYN_SENT) {
		__u64 now = bpf_ktime_get_ns();
		if (bpf_map_update_elem(&connecting, &key, &now, BPF_ANY))
			c->lost_sockets++;
		return;
	}
	/* A socket enters the table at ESTABLISHED (a server socket is cloned
	 * from the listener there) and leaves it at CLOSE. */
	if (newstate == TCP_CLOSE) {
		struct sock_mem *m = socket_find(&e, side, key);
		if (m)
			m->sk = TOMBSTONE;
		else if (side == CLIENT)
			bpf_map_delete_elem(&connecting, &key); /* a connect that failed */
		return;
	}
	if (side == CLIENT)
		connect_latency(c, key);
	struct sock_mem *m = socket_insert(&e, side, key);
	if (!m) {
		c->lost_sockets++; /* MAX_PROBES slots held: the table is too full */
		return;
	}
	m->bytes_sent = 0;
	m->sends = 0;
	m->wmem_queued = 0;
	m->fwd_alloc = 0;
	m->rmem_alloc = 0;
}

SEC("raw_tracepoint/inet_sock_set_state")
int rawtp_inet_sock_set_state(struct bpf_raw_tracepoint_args *ctx)
{
	handle_set_state((const struct sock *)ctx->args[0], (int)ctx->args[2]);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int tp_inet_sock_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol == IPPROTO_TCP)
		handle_set_state((const struct sock *)ctx->skaddr, ctx->newstate);
	return 0;
}

/* ---- tcp_sendmsg ---- */

static __always_inline void handle_sendmsg(const struct sock *sk, __u64 bytes)
{
	struct counters *c = ctrs();
	if (!c)
		return;
	c->sendmsg_calls++;
	c->sendmsg_bytes += bytes;
	/* Without a sock (see tp_tcp_sendmsg_locked), attribute by process. */
	if (!sk) {
		if (in_run()) {
			c->run_sendmsg_calls++;
			c->run_sendmsg_bytes += bytes;
		}
		return;
	}
	struct sk_ends e;
	enum side side = run_side(sk, &e);
	if (side == NOT_RUN)
		return;
	c->run_sendmsg_calls++;
	c->run_sendmsg_bytes += bytes;
	struct sock_mem *m = socket_find(&e, side, (__u64)sk);
	if (!m)
		return;
	m->sends++;
	m->bytes_sent += bytes;
	m->wmem_queued = BPF_CORE_READ(sk, sk_wmem_queued);
	m->fwd_alloc = BPF_CORE_READ(sk, sk_forward_alloc);
	m->rmem_alloc = BPF_CORE_READ(sk, sk_backlog.rmem_alloc.counter);
}

/* tcp_sendmsg(sk, msg, size) on kernels with fentry (5.5+, BTF). */
SEC("fentry/tcp_sendmsg")
int BPF_PROG(fentry_tcp_sendmsg, struct sock *sk, struct msghdr *msg, size_t size)
{
	handle_sendmsg(sk, size);
	return 0;
}

SEC("kprobe/tcp_sendmsg")
int BPF_KPROBE(kprobe_tcp_sendmsg, struct sock *sk, struct msghdr *msg, size_t size)
{
	handle_sendmsg(sk, size);
	return 0;
}

/* tcp:tcp_sendmsg_locked (Linux 6.11) fires each time tcp_sendmsg_locked
 * starts a new skb, with what is left of the message in msg_iter; one call
 * of a large send fires several times. A later event on the same sock and
 * msghdr that has already copied some of its message (iov_offset > 0: the
 * iterator advanced) continues the call: count it once, whole. A new call
 * starts at offset 0 — the msghdr of the next write() on the same socket is
 * often at the same kernel stack address, and a smaller one after a larger
 * one was taken for a continuation and lost (--payload 1 after the 4-byte
 * echo). A writev() that starts a new skb exactly on an iovec boundary
 * (offset 0 again) is counted twice; write() and send(), which the runner
 * makes, are exact. */
struct send_seen {
	__u64 sk;
	__u64 msg;
	__u64 left;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct send_seen);
} last_send SEC(".maps");

SEC("raw_tracepoint/tcp_sendmsg_locked")
int rawtp_tcp_sendmsg_locked(struct bpf_raw_tracepoint_args *ctx)
{
	const struct msghdr *msg = (const struct msghdr *)ctx->args[1];
	__u64 left = BPF_CORE_READ(msg, msg_iter.count);
	__u64 offset = BPF_CORE_READ(msg, msg_iter.iov_offset);
	__u32 zero = 0;
	struct send_seen *seen = bpf_map_lookup_elem(&last_send, &zero);
	if (seen) {
		bool more = seen->sk == ctx->args[0] && seen->msg == ctx->args[1] && left < seen->left && offset > 0;
		seen->sk = ctx->args[0];
		seen->msg = ctx->args[1];
		seen->left = left;
		if (more)
			return 0;
	}
	handle_sendmsg((const struct sock *)ctx->args[0], left);
	return 0;
}

/* The classic tracepoint has no sock pointer, only the write queue's tail
 * skb, which a socket that has sent nothing yet does not have. */
SEC("tracepoint/tcp/tcp_sendmsg_locked")
int tp_tcp_sendmsg_locked(struct trace_event_raw_tcp_sendmsg_locked *ctx)
{
	/* Read ctx fields before anything else: the verifier refuses a load
	 * through a ctx pointer the compiler has offset. */
	const struct sk_buff *skb = (const struct sk_buff *)ctx->skb_addr;
	__u64 msg_left = ctx->msg_left;
	const struct sock *sk = skb ? BPF_CORE_READ(skb, sk) : NULL;
	/* No msghdr here: a continuation is the same skb queue's sock with less left. */
	__u32 zero = 0;
	struct send_seen *seen = bpf_map_lookup_elem(&last_send, &zero);
	if (seen) {
		bool more = sk && seen->sk == (__u64)sk && msg_left < seen->left;
		seen->sk = (__u64)sk;
		seen->msg = 0;
		seen->left = msg_left;
		if (more)
			return 0;
	}
	handle_sendmsg(sk, msg_left);
	return 0;
}

/* ---- CPU samples of the run's processes (perf_event, cpu-clock) ---- */

/* Keyed by stacks and the executable that ran them, not the pid: a run has
 * hundreds of identical workers, and a pid in the key would multiply the
 * keys by them until the map filled. The user frames are addresses in that
 * executable (the parent's and the workers' may be different files). */
struct cpu_key {
	__s32 kstack;
	__s32 ustack;
	__u32 phase; /* run_phase when sampled: connect, exchange, close... */
	__u32 image; /* run_pids' value for the process: which executable */
};

/* The run's phase, set by the recorder as each begins, so that the CPU
 * samples say which phase spent them. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} run_phase SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
} cpu_stacks SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct cpu_key);
	__type(value, __u64);
} cpu_samples SEC(".maps");

SEC("perf_event")
int perf_cpu_sample(struct bpf_perf_event_data *ctx)
{
	if (!in_run())
		return 0;
	struct cpu_key key;
	__u32 zero32 = 0;
	__u32 *phase = bpf_map_lookup_elem(&run_phase, &zero32);
	key.phase = phase ? *phase : 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u8 *image = bpf_map_lookup_elem(&run_pids, &tgid);
	key.image = image ? *image : 0;
	key.kstack = bpf_get_stackid(ctx, &cpu_stacks, 0);
	key.ustack = bpf_get_stackid(ctx, &cpu_stacks, BPF_F_USER_STACK);
	__u64 zero = 0;
	__u64 *v = lookup_or_try_init(&cpu_samples, &key, &zero);
	if (v) {
		__sync_fetch_and_add(v, 1);
		return 0;
	}
	struct counters *c = ctrs();
	if (c)
		c->lost_cpu_samples++;
	return 0;
}
