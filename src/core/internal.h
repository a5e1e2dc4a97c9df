/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * libbufio internals shared by the core's files: the buffer and client
 * structures, the sharded index, per-thread statistics and the process-wide
 * budget. Nothing here is part of the public API.
 */
#ifndef BUFIO_CORE_INTERNAL_H
#define BUFIO_CORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <bufio/bufio.h>

#include "core/sleep.h"

#define BUFIO_MIN_BUFFERS          8
#define BUFIO_WRITEBACK_RATIO      3
#define BUFIO_LOW_WATERMARK_RATIO  16
#define BUFIO_WORK_TIMER_SECS      30
#define BUFIO_DEFAULT_AGE_SECS     300
#define BUFIO_DEFAULT_RETAIN_BYTES (256ull * 1024)
#define BUFIO_WRITE_ALIGN          4096
#define BUFIO_DEFAULT_DIRTY_EXPIRE 30
#define BUFIO_MEMORY_PERCENT       2
/* A writer more than budget / BUFIO_HARD_LIMIT_RATIO over the budget waits:
 * small, since the overshoot is resident memory beyond the budget. */
#define BUFIO_HARD_LIMIT_RATIO 64
/* Of a cgroup's limit, never given to the cache: limit / 8 plus this. */
#define BUFIO_CGROUP_MARGIN      (16ull << 20)
#define BUFIO_RETRY_MIN_SECS     1 /* backoff after a failed write attempt */
#define BUFIO_RETRY_MAX_SECS     30
#define BUFIO_MAX_WRITE_FAILURES 5 /* default: failed attempts before read-only */

/* Buffer state bits (b->state). */
#define B_READING (1u << 0) /* a backend read is in flight */
#define B_WRITING (1u << 1) /* a backend write is in flight */
#define B_DIRTY   (1u << 2) /* modified since the last write was submitted */
#define B_WAITERS (1u << 4) /* someone sleeps on the futex for this word */
/* Read by bufio_prefetch and not asked for since: the first get is a miss. */
#define B_PREFETCHED (1u << 5)
#define B_IO         (B_READING | B_WRITING)

/*
 * b->hold carries the dead mark in its top bit, so the thread dropping the
 * last hold learns from the same atomic operation whether it must free the
 * buffer, without touching a buffer someone else may already be reusing.
 */
#define HOLD_DEAD     (1u << 31)
#define HOLD_MASK     (HOLD_DEAD - 1)
#define hold_count(b) (atomic_load(&(b)->hold) & HOLD_MASK)

/*
 * The rings a cached buffer is on: clean, dirty (waiting for write-back), or
 * writing (a write in flight, whether or not it was dirtied again since), so
 * write-back walks only what it may submit.
 */
enum { LIST_CLEAN = 0, LIST_DIRTY = 1, LIST_WRITING = 2, NR_LISTS = 3, LIST_NONE = NR_LISTS };

/*
 * A cached block. Kept small (the metadata target is <= 96 bytes including
 * the index): descriptors come from a per-client slab without malloc
 * headers, the aux data follows the descriptor.
 *
 * Locking: hash_next by the shard lock; lru links, list, dirty range and
 * dirty_since by the client lock; hold, state, accessed and last_accessed
 * are atomics (state bit changes of DIRTY also happen under the client lock).
 */
struct bufio_buffer {
	struct bufio_buffer *hash_next;
	struct bufio_buffer *lru_next, *lru_prev;
	uint64_t block;
	unsigned char *data;
	struct bufio_client *c;
	atomic_uint hold;
	atomic_uint state;
	atomic_uint last_accessed; /* coarse seconds, see bufio_now() */
	uint32_t dirty_start, dirty_end;
	uint32_t dirty_since;
	uint32_t dirty_seq;    /* client dirty_seq when this data became dirty */
	int16_t io_error;      /* last read/write error, negative errno */
	uint8_t list;          /* LIST_* */
	atomic_uchar accessed; /* CLOCK reference bit */
	                       /* aux data follows */
};

/*
 * A lock word that sleeps when contended: 0 free, 1 held, 2 held with
 * sleepers. Uncontended it costs what a spinlock does, one atomic each way;
 * contended it spins briefly, then waits on a futex. A spinlock here burnt
 * a quarter of the daemon's CPU in cold streaming reads: with more runnable
 * threads than CPUs, the holder of a shard's writer lock was preempted and
 * its waiters spun out their time slices (see slock_lock_slow).
 */
typedef atomic_uint slock_t;

void slock_lock_slow(slock_t *l);
void slock_wake(slock_t *l);

/* Take @l; may sleep. */
static inline void slock_lock(slock_t *l)
{
	unsigned free = 0;
	if (!atomic_compare_exchange_strong_explicit(l, &free, 1, memory_order_acquire,
	                                             memory_order_relaxed))
		slock_lock_slow(l);
}

/* Drop @l, waking one sleeper if there is one. */
static inline void slock_unlock(slock_t *l)
{
	if (atomic_exchange_explicit(l, 0, memory_order_release) == 2)
		slock_wake(l);
}

/*
 * One shard of the block index: a chained hash. Its lock is a big-reader
 * lock made of up to NRD slocks, one per stripe of thread slots, each on
 * a cache line of its stripe: a hit takes only its own stripe's lock, so two
 * cores hitting rarely write the same line; a writer takes all of them.
 * Stripes beyond twice the CPUs only make writers slower (a streaming writer
 * inserts and removes a block per 4 KiB), so there are that many, at most NRD.
 */
#define NRD 8
struct rd_stripe;
struct shard {
	struct rd_stripe *rd; /* the client's reader locks */
	unsigned idx;
	unsigned nrd; /* stripes in use: a power of two <= NRD */
	struct bufio_buffer **buckets;
	uint32_t mask; /* nbuckets - 1 */
	uint32_t count;
} __attribute__((aligned(64)));

#define NSHARDS 64

/* One stripe's reader locks for every shard. */
struct rd_stripe {
	slock_t l[NSHARDS];
} __attribute__((aligned(64)));
/*
 * Thread slots: the first NSLOTS_OWN are each owned by one live thread at a
 * time (handed out on first use, returned at thread exit), so their owner
 * updates them with plain loads and stores; threads beyond that share the
 * rest with atomic read-modify-writes.
 */
#define NSLOTS     64
#define NSLOTS_OWN 48

/* Counters kept per thread slot so the hit path never shares a cache line. */
enum stat_id {
	ST_HITS,
	ST_MISSES,
	ST_READS,
	ST_READ_BYTES,
	ST_WRITES,
	ST_WRITE_BYTES,
	ST_WRITEBACKS,
	ST_FLUSHES,
	ST_DISCARDS,
	ST_PREFETCHES,
	ST_READ_ERRORS,
	ST_WRITE_ERRORS,
	ST_EVICT_BUDGET,
	ST_EVICT_AGE,
	ST_EVICT_PRESSURE,
	ST_EVICT_FORGET,
	ST_EVICT_REUSE,
	ST_ALLOC_FAILURES,
	ST_RESERVE_USED,
	ST_HELD, /* gauge: buffers with a non-zero hold (sum of +1/-1) */
	ST_COUNT
};

struct stat_slot {
	_Atomic int64_t v[ST_COUNT];
	/* Owned slots only: clean buffers this thread detached for reuse in
	 * one batch and has not used yet (linked by hash_next, accounted in
	 * the budget). See buffer_alloc. */
	struct bufio_buffer *stash;
	unsigned n_stash;
	unsigned want; /* buffers the owner said it is about to create */
} __attribute__((aligned(64)));

/* Per-client slab of buffer descriptors. */
struct slab {
	pthread_mutex_t lock;
	void *chunks;    /* singly linked list of chunks */
	void *free_list; /* free descriptors */
	size_t obj_size;
};

/* Block data memory (data.c). */
struct data_alloc {
	pthread_mutex_t lock;
	struct chunk *partial; /* chunks with free pieces */
	size_t chunk, stride, first;
	unsigned block_size;
	unsigned nchunks;
	bool big; /* one mapping per block */
};

struct bufio_client {
	struct bufio_backend *be;
	unsigned block_size;
	unsigned aux_size;
	unsigned data_align;
	atomic_int mode;     /* enum bufio_mode; written under lock */
	uint64_t start_byte; /* sector offset in bytes */
	uint64_t n_blocks;
	void (*alloc_callback)(struct bufio_buffer *);
	void (*write_callback)(struct bufio_buffer *);
	bufio_event_fn event_fn; /* and event_arg: under lock */

	struct shard shards[NSHARDS];
	struct rd_stripe rd[NRD];
	struct stat_slot slots[NSLOTS];
	int64_t stat_base[ST_COUNT]; /* counter values at the last clear (lock) */

	/* Everything below is protected by lock. */
	pthread_mutex_t lock;
	struct bufio_buffer *lru[NR_LISTS]; /* CLOCK rings; the head is the hand */
	uint64_t n_buffers[NR_LISTS];
	uint64_t n_reading;           /* atomically updated, read for stats */
	struct bufio_buffer *reserve; /* linked by hash_next */
	unsigned need_reserved;
	unsigned minimum_buffers;
	atomic_uint free_waiters;
	atomic_uint completing;   /* read/write completions not yet returned (wait.c) */
	pthread_cond_t free_cond; /* a buffer became free or unheld */
	int async_write_error;    /* first error since last write_dirty_buffers */
	uint32_t dirty_seq;       /* ticks on every clean->dirty and write submission */
	atomic_uint writeback_ratio;
	atomic_uint dirty_expire;
	/* Write attempts (failure.c), under lock. */
	unsigned wb_failures; /* consecutive failed attempts */
	unsigned max_write_failures;
	/* What one buffer costs the budget: its data, descriptor and index
	 * slot, so the budget bounds the memory and not only the data. Set
	 * once at creation (here, out of the first cache line's way). */
	unsigned charge;
	uint64_t wb_retry_ms; /* background write-back waits until then */
	void *event_arg;

	struct slab slab;
	struct data_alloc data;

	/* io descriptors for when malloc fails */
	pthread_mutex_t io_lock;
	pthread_cond_t io_cond;
	struct bufio_io *io_reserve;
	struct core_io *io_reserve_mem;
	unsigned io_reserve_n;

	/* membership of the global client list (global lock) */
	struct bufio_client *g_next, *g_prev;
};

/*---- time ----*/
uint32_t bufio_now(void);    /* coarse monotonic seconds */
uint64_t bufio_now_ms(void); /* monotonic milliseconds */

/*---- stats.c ----*/
extern _Thread_local int bufio_my_slot;
unsigned stat_slot_assign(void);

static inline unsigned stat_slot_id(void)
{
	int s = bufio_my_slot;
	return __builtin_expect(s >= 0, 1) ? (unsigned)s : stat_slot_assign();
}

static inline bool slot_owned(unsigned slot)
{
	return slot < NSLOTS_OWN;
}

static inline void stat_add(struct bufio_client *c, enum stat_id id, int64_t n)
{
	unsigned slot = stat_slot_id();
	_Atomic int64_t *v = &c->slots[slot].v[id];
	if (slot_owned(slot)) /* only we write it: no locked instruction */
		atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
		                      memory_order_relaxed);
	else
		atomic_fetch_add_explicit(v, n, memory_order_relaxed);
}
static inline void stat_inc(struct bufio_client *c, enum stat_id id)
{
	stat_add(c, id, 1);
}

/*---- index.c ----*/
int index_init(struct bufio_client *c);
void index_destroy(struct bufio_client *c);
struct shard *index_shard(struct bufio_client *c, uint64_t block);
struct bufio_buffer *index_find(struct shard *s, uint64_t block);
void index_insert(struct shard *s, struct bufio_buffer *b); /* shard write-locked */
void index_remove(struct shard *s, struct bufio_buffer *b); /* shard write-locked */
void shard_wrlock(struct shard *s);
void shard_wrunlock(struct shard *s);
unsigned shard_rdlock(struct shard *s); /* returns the stripe to unlock */
void shard_rdunlock(struct shard *s, unsigned stripe);
/* The hit path: find and take a hold under the shard read lock. */
struct bufio_buffer *index_find_hold(struct bufio_client *c, uint64_t block);

/*---- buffer.c: allocation, lists, freeing ----*/
struct bufio_buffer *buffer_alloc(struct bufio_client *c, bool may_wait);
void buffer_free(struct bufio_buffer *b);        /* client lock held */
void buffer_destroy_mem(struct bufio_buffer *b); /* really free; no lock needed */
/*---- batch.c ----*/
/* The calling thread's own slot, whose stash only it touches; NULL if shared. */
struct stat_slot *own_slot(struct bufio_client *c);
/* The next buffer of @s's stash (detached, charged), or NULL; @s may be NULL. */
struct bufio_buffer *stash_pop(struct stat_slot *s);
/* Over budget: detach a batch of clean buffers for reuse, the rest onto @s's
 * stash (NULL: just one). Returns the first, NULL if none. Client lock held. */
struct bufio_buffer *reuse_batch(struct bufio_client *c, struct stat_slot *s);
/* Under budget: fresh buffers, a batch when @s asked for one and the budget
 * has room. Returns the first; NULL when allocation fails. No lock held. */
struct bufio_buffer *new_batch(struct bufio_client *c, struct stat_slot *s);
/* Free every slot's stash; client lock held, no other user of the client. */
void stash_drain(struct bufio_client *c);
void lru_link(struct bufio_buffer *b, int list); /* client lock held */
void lru_unlink(struct bufio_buffer *b);         /* client lock held */
void lru_relink(struct bufio_buffer *b, int list);
bool buffer_evictable(struct bufio_buffer *b);
/* Unhash and unlink @b; client lock held; takes the shard lock. */
void buffer_unhash(struct bufio_buffer *b);
/* Unhash and unlink @b if nobody holds it and no I/O or dirt; client lock held. */
bool buffer_try_detach(struct bufio_buffer *b);
/* Try to evict @b (client lock held): true if it was unhashed and freed. */
bool buffer_try_evict(struct bufio_buffer *b, enum stat_id reason);
/* Drop a hold; frees dead buffers and wakes allocation waiters. */
void buffer_put(struct bufio_buffer *b);
void buffer_get_hold(struct bufio_buffer *b); /* a caller's hold: sets the reference bit */
void buffer_hold(struct bufio_buffer *b);     /* an internal hold (waiting on I/O) */
void wake_free_waiters(struct bufio_client *c);
/* Wait for wake_free_waiters (c->lock held; dropped while asleep). */
void free_wait(struct bufio_client *c);
/* Wrap block memory @data in a descriptor, charged; NULL without one. */
struct bufio_buffer *buffer_wrap(struct bufio_client *c, void *data);
/* A fresh buffer from the system; NULL when allocation fails (or is injected to). */
struct bufio_buffer *buffer_new_mem(struct bufio_client *c);
int slab_init(struct slab *s, size_t obj_size);
void slab_destroy(struct slab *s);
bool alloc_should_fail(void);

/*
 * Publish @nb (freshly allocated) as @block with @state and @hold caller
 * holds, unless the block got cached meanwhile: then @nb is freed and the
 * cached buffer returned with one hold taken. If @adopted is not NULL, @nb's
 * data was swapped with *@adopted and is swapped back before @nb is freed.
 * No locks held on entry.
 */
struct bufio_buffer *buffer_insert_or_find(struct bufio_client *c, uint64_t block,
                                           struct bufio_buffer *nb, unsigned state, unsigned hold,
                                           bool *created, void **adopted);

/*---- data.c ----*/
int data_init(struct data_alloc *d, unsigned block_size, unsigned align);
/* Up to @n pieces into @out under one lock, so neighbours in memory where
 * the chunks allow; returns how many (0 for blocks of 1 MiB and up). */
unsigned data_get_many(struct data_alloc *d, void **out, unsigned n);
void *data_get(struct data_alloc *d); /* NULL when the system has no memory */
void data_put(struct data_alloc *d, void *p);
void data_destroy(struct data_alloc *d);

/*---- wait.c: per-buffer futex waits ----*/
void buffer_wait_clear(struct bufio_buffer *b, unsigned bits);
void buffer_clear_wake(struct bufio_buffer *b, unsigned bits);
/*
 * A completion still uses its client after clearing the buffer's I/O bit
 * (wakeups, budget kick), when the client may already look idle: one
 * completion_begin per io submitted, completion_end as the callback's last
 * touch of the client, and destroy waits in completions_wait.
 */
void completion_begin(struct bufio_client *c);
void completion_end(struct bufio_client *c);
void completions_wait(struct bufio_client *c);

/* One batch of writes submitted together: the unit of failure accounting. */
struct wb_attempt {
	unsigned pending; /* writes not completed yet (client lock) */
	int error;        /* the first failure's negative errno; 0 while none */
	uint64_t offset;  /* its backend byte offset */
};

/* The core's io descriptor: the backend request plus write bookkeeping. */
struct core_io {
	struct bufio_io io;
	uint32_t sub_seq;       /* client dirty_seq when the write was submitted */
	bool sync;              /* a bufio_write_buffers caller waits for it */
	struct wb_attempt *att; /* NULL: the write is an attempt of its own */
};

static inline bool seq_le(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) <= 0;
}

/*---- io.c ----*/
struct bufio_io *io_alloc(struct bufio_client *c, bool may_wait);
void io_free(struct bufio_client *c, struct bufio_io *io);
int io_reserve_init(struct bufio_client *c, unsigned n);
void io_reserve_destroy(struct bufio_client *c);
uint64_t block_to_byte(struct bufio_client *c, uint64_t block);
/* Prepare a read of @b into @plug (b is READING, held). */
void read_prepare(struct bufio_buffer *b, struct bufio_io *io, struct bufio_plug *plug);

/*---- writeback.c ----*/
/* Collect writes for dirty buffers of @c into @plug; client lock held. */
void writeback_async(struct bufio_client *c, bool background);
void writeback_expired(struct bufio_client *c, uint32_t now);
bool writeback_needed(struct bufio_client *c); /* client lock held */
/* The background retry of a failing client whose backoff is over. */
void writeback_retry(struct bufio_client *c, uint64_t now_ms);

/*---- failure.c: write attempts, backoff, mode ----*/
#define MAX_EVENTS 2 /* per completed attempt: failed, and maybe a mode change */
/* Make the writes in @plug one attempt (each its own if out of memory). */
void attempt_start(struct bufio_plug *plug);
/*
 * A write of an attempt completed with @res; client lock held. When it was
 * the last, account the attempt; returns the events to deliver (in @ev,
 * after unlocking) and sets *@kick when the worker must re-plan its retry.
 */
unsigned attempt_io_done(struct bufio_client *c, struct core_io *cio, int res,
                         struct bufio_event *ev, bool *kick);
void deliver_events(struct bufio_client *c, const struct bufio_event *ev, unsigned n);
/* Background write-back must wait (a failed attempt's backoff); lock held. */
bool backing_off(struct bufio_client *c);
/* The backoff is over and dirty data waits: claim the retry; lock held. */
bool claim_retry(struct bufio_client *c, uint64_t now_ms);
/* When the client's background retry is due (ms), 0 if none; takes the lock. */
uint64_t next_retry(struct bufio_client *c);

/*---- evict.c ----*/
/* Buffers on any ring; client lock held. */
static inline uint64_t cached_buffers(const struct bufio_client *c)
{
	return c->n_buffers[LIST_CLEAN] + c->n_buffers[LIST_DIRTY] + c->n_buffers[LIST_WRITING];
}

/* Evict up to @nr clean buffers in CLOCK order; client lock held. */
uint64_t evict_clock(struct bufio_client *c, uint64_t nr, enum stat_id reason);
void evict_old(struct bufio_client *c, uint32_t now, unsigned max_age);
struct bufio_buffer *reuse_unclaimed(struct bufio_client *c); /* client lock held */

/*---- global.c ----*/
struct bufio_global {
	pthread_mutex_t lock; /* client list, worker lifecycle */
	struct bufio_client *clients;
	unsigned n_clients;
	struct bufio_client *rr; /* round-robin cursor for eviction */

	atomic_uint_fast64_t cache_size_setting; /* 0 = default */
	atomic_uint_fast64_t cache_size;         /* effective */
	atomic_uint max_age;
	atomic_uint_fast64_t retain_bytes;
	atomic_uint_fast64_t current;
	atomic_uint_fast64_t peak;
	atomic_uint_fast64_t leaked;
	atomic_long alloc_fail_inject;

	/* background worker */
	pthread_t worker;
	bool worker_running;
	pthread_cond_t worker_cond;
	atomic_uint kick;         /* KICK_* bits, set under lock; read early without */
	uint64_t next_refresh_ms; /* next budget refresh (worker) */
	atomic_bool cg_limited;   /* the last refresh found a memory cgroup limit */
	uint64_t shrink_request;  /* bytes, from the pressure watcher */
};
#define KICK_BUDGET    1u
#define KICK_WRITEBACK 2u
#define KICK_SHRINK    4u
#define KICK_RETRY     8u /* a retry time changed: re-plan the wait */

extern struct bufio_global bufio_g;

void global_account(int64_t bytes);
bool global_over_budget(void);
/* At or above the low watermark the worker evicts down to. */
bool global_near_budget(void);
/* Over by more than a writer may overshoot: only a lowered budget or
 * writers waiting for write-back get here. */
bool global_far_over_budget(void);
void global_kick(unsigned what);
/* Start the worker and pressure watcher once per process. */
void global_start(void);
int global_register(struct bufio_client *c);
void global_unregister(struct bufio_client *c);
/* Evict across clients down to the low watermark; writes back if needed. */
void global_enforce_budget(void);
void global_request_shrink(uint64_t bytes);

/*---- pressure.c ----*/
void pressure_start(void);

#endif
