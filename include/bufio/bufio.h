/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * libbufio: a userspace block cache modelled on the kernel's dm-bufio.
 * Holding recently used blocks in memory, delayed write-back, a global memory
 * budget shared by every client of the process, CLOCK replacement, age-based
 * eviction and release under memory pressure.
 */
#ifndef BUFIO_BUFIO_H
#define BUFIO_BUFIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bufio/backend.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BUFIO_VERSION "0.1.0"

struct bufio_client;
struct bufio_buffer;

/*
 * WARNING: to avoid deadlocks, these conditions must hold (as in dm-bufio):
 *
 * - At most one thread can hold at most "reserved_buffers" simultaneously.
 * - Each other thread can hold at most one buffer.
 * - Threads which call only bufio_get can hold any number of buffers.
 *
 * A thread that breaks them may wait forever for a free buffer when memory
 * allocation fails. While memory can be allocated, holding more is harmless.
 *
 * Error convention: functions returning int return 0 or a negative errno;
 * functions returning a pointer return NULL and set errno.
 */

/*----------------------------------------------------------------
 * Clients
 *--------------------------------------------------------------*/

/*
 * Create a cache over @be. The client does not own @be: close it after
 * bufio_client_destroy().
 *
 * @block_size: a multiple of 512 and of the backend alignment, up to
 *	BUFIO_MAX_BLOCK_SIZE; need not be a power of two.
 * @reserved_buffers: buffers allocated now and kept so that one thread can
 *	always make progress when allocation fails (at least 1 is kept).
 * @aux_size: bytes of per-buffer private data (bufio_get_aux_data()).
 * @alloc_callback: called when a buffer is (re)allocated for a new block,
 *	before it is read; may be NULL.
 * @write_callback: called just before a dirty buffer is submitted for
 *	writing, with the buffer's data stable; may be NULL.
 *
 * Blocks allocating the reserve. Starts the process-wide background worker
 * and memory-pressure watcher with the first client.
 * Errors: EINVAL (bad block size or alignment), ENOMEM.
 */
#define BUFIO_MAX_BLOCK_SIZE (64u << 20)
struct bufio_client *bufio_client_create(struct bufio_backend *be, unsigned block_size,
                                         unsigned reserved_buffers, unsigned aux_size,
                                         void (*alloc_callback)(struct bufio_buffer *),
                                         void (*write_callback)(struct bufio_buffer *));

/*
 * Write back every dirty buffer, flush the backend, then free everything.
 * A buffer still held at this point is a caller bug: it is reported on
 * stderr and counted (bufio_leaked_buffers()), and its memory is kept
 * rather than freed under the holder. Blocks for the write-back.
 */
void bufio_client_destroy(struct bufio_client *c);

/*
 * Offset (in 512-byte sectors) of block 0 on the backend. Set before any I/O;
 * the device size shrinks by it.
 */
void bufio_set_sector_offset(struct bufio_client *c, uint64_t start_sector);

/*----------------------------------------------------------------
 * Getting and releasing buffers
 *--------------------------------------------------------------*/

/*
 * Read block @block and hold it. Returns the data and stores the buffer in
 * *@bp. Concurrent readers of one block share one backend read; they wait
 * for it (per-buffer futex wait, no polling). May block on I/O and on
 * allocation (see the deadlock rules above).
 * Errors: the backend's error (EIO, ...) — a failed read is not cached;
 * ERANGE for a block past the end of the device.
 */
void *bufio_read(struct bufio_client *c, uint64_t block, struct bufio_buffer **bp);

/*
 * Like bufio_read but only from the cache: never allocates, never waits for
 * I/O. Errors: ENOENT when the block is absent or still being read.
 */
void *bufio_get(struct bufio_client *c, uint64_t block, struct bufio_buffer **bp);

/*
 * Like bufio_read but nothing is read: the caller must fill the whole block
 * and mark it dirty. If the block is cached its current contents are
 * returned. May block on allocation, on a read in flight for the block, and
 * on a write in flight (so the caller may change the data at once).
 * Errors: ERANGE, ENOMEM (only if the reserve is exhausted and nothing can
 * be waited for, which the deadlock rules exclude).
 */
void *bufio_new(struct bufio_client *c, uint64_t block, struct bufio_buffer **bp);

/*
 * bufio_new that takes the caller's memory instead of copying into it. *@mem
 * must come from bufio_alloc_block_data(@c) and hold the block's new
 * contents. If the block was not cached, the new buffer adopts *@mem as its
 * data, *@mem is replaced by other block memory the caller now owns, and the
 * adopted memory is returned: the block is filled, mark it dirty. Otherwise
 * *@mem is left alone and the cached buffer's data is returned, as bufio_new
 * would: copy into it. The swap happens before the buffer is visible, so no
 * reader can see the memory change hands. Blocks and fails like bufio_new.
 */
void *bufio_new_adopt(struct bufio_client *c, uint64_t block, void **mem, struct bufio_buffer **bp);

/*
 * A hint: the calling thread is about to create about @n buffers of @c in a
 * row (bufio_new, bufio_new_adopt, reads of uncached blocks), normally for
 * neighbouring blocks. The cache then takes them in one batch, handed out
 * in address order, so neighbouring blocks get neighbouring memory and their
 * write-back moves in a few segments instead of one per block. The hint
 * lasts until @n buffers were created or the next call; call it with 0 when
 * the run is over, which gives back what the batch left unused (blocks that
 * turned out cached). Never blocks, never fails; without it buffers come in
 * small batches.
 */
void bufio_expect_new(struct bufio_client *c, unsigned n);

/*
 * Memory for one block of @c (block size, aligned like buffer data), to be
 * filled and handed to bufio_new_adopt. It is not charged to the memory
 * budget while the caller owns it: keep few. Never blocks on I/O.
 * Errors: ENOMEM.
 */
void *bufio_alloc_block_data(struct bufio_client *c);

/* Give back memory from bufio_alloc_block_data (or traded by bufio_new_adopt). */
void bufio_free_block_data(struct bufio_client *c, void *mem);

/*
 * Start reading @n_blocks blocks from @block in the background, submitted as
 * one batch. Never blocks on a read; blocks already cached or in flight are
 * skipped; stops early (silently) when no memory is available.
 */
void bufio_prefetch(struct bufio_client *c, uint64_t block, unsigned n_blocks);

/*
 * Drop the hold obtained with bufio_read/get/new. @b and its data must not
 * be used afterwards. Never blocks on I/O.
 */
void bufio_release(struct bufio_buffer *b);

/*
 * Wait until no write of the held buffer is in flight. Call it before
 * changing the data of a buffer obtained with bufio_read or bufio_get
 * (bufio_new does it itself). Background write-back (ratio, age, budget)
 * never starts on a held buffer, so from then until the release only an
 * explicit bufio_write_dirty_buffers(_async) or bufio_write_buffer on another
 * thread can read the data while it changes; as in dm-bufio such a write may
 * be torn, and the buffer is written again once marked dirty.
 */
void bufio_wait_writeback(struct bufio_buffer *b);

/*
 * Mark the held buffer dirty: its whole block will be written back. It may be
 * written at any time after this (write-back ratio, age, memory budget), but
 * bufio_write_dirty_buffers guarantees it is on the backend when it returns.
 */
void bufio_mark_buffer_dirty(struct bufio_buffer *b);

/*
 * bufio_mark_buffer_dirty for @n held buffers of one client at once, under
 * one acquisition of the client lock (a writer of many blocks per request).
 */
void bufio_mark_buffers_dirty(struct bufio_buffer **bufs, unsigned n);

/*
 * Mark bytes [@start, @end) of the held buffer dirty. Ranges accumulate to
 * their union's extent; write-back covers it widened to 4 KiB alignment and
 * clipped to the block. start < end <= block size.
 */
void bufio_mark_partial_buffer_dirty(struct bufio_buffer *b, unsigned start, unsigned end);

/*
 * Write the held buffer's dirty range now and wait for it (not a flush).
 * Returns 0, or the write's negative errno (the buffer then stays dirty;
 * the error is not reported again by bufio_write_dirty_buffers).
 */
int bufio_write_buffer(struct bufio_buffer *b);

/*
 * bufio_write_buffer for @n held buffers of one client at once: their dirty
 * ranges go to the backend as one batch, then waits for all of them. Returns
 * 0 or the first error (those buffers stay dirty). Errors returned here are
 * not reported again by bufio_write_dirty_buffers.
 */
int bufio_write_buffers(struct bufio_buffer **bufs, unsigned n);

/* Start writing every dirty buffer, as one batch; does not wait. */
void bufio_write_dirty_buffers_async(struct bufio_client *c);

/*
 * Write every buffer dirtied before the call, wait for those writes, then
 * flush the backend. Returns the first write error recorded since the last
 * call (from any write-back, background ones included), else the flush's.
 * Buffers whose write failed stay dirty and are retried by later write-backs
 * (see "Write failures" below). Blocks.
 */
int bufio_write_dirty_buffers(struct bufio_client *c);

/* Send a flush (cache barrier) to the backend and wait. Blocks. */
int bufio_issue_flush(struct bufio_client *c);

/*
 * Discard @count blocks from @block on the backend (they read back as
 * zeroes). The caller forgets the cached copies first
 * (bufio_forget_buffers). Blocks. Errors: ERANGE, EOPNOTSUPP, the backend's.
 */
int bufio_issue_discard(struct bufio_client *c, uint64_t block, uint64_t count);

/*
 * Release the held buffer and move it to @new_block: afterwards the data is
 * cached (dirty) as @new_block, and whatever was cached for @new_block is
 * dropped — it must not be held by anyone. The old block's cached copy is
 * gone; what the backend holds there is unchanged. Waits for I/O in flight
 * on either block.
 */
void bufio_release_move(struct bufio_buffer *b, uint64_t new_block);

/*
 * Drop the cached copy of @block unless it is held. A dirty copy is
 * discarded without being written (unlike dm-bufio, where forget is only a
 * hint): that is what a discard of the block needs. If a read or write of the
 * block is in flight, waits for it first, so no stale write can land on the
 * backend after the caller goes on to discard. Never waits for a holder.
 */
void bufio_forget(struct bufio_client *c, uint64_t block);

/* bufio_forget for every block of [@block, @block + @n_blocks). */
void bufio_forget_buffers(struct bufio_client *c, uint64_t block, uint64_t n_blocks);

/* Keep at least @n buffers of this client against eviction (default 8). */
void bufio_set_minimum_buffers(struct bufio_client *c, unsigned n);

unsigned bufio_get_block_size(struct bufio_client *c);
uint64_t bufio_get_device_size(struct bufio_client *c); /* in blocks */
uint64_t bufio_get_block_number(struct bufio_buffer *b);
void *bufio_get_block_data(struct bufio_buffer *b);
void *bufio_get_aux_data(struct bufio_buffer *b);
struct bufio_client *bufio_get_client(struct bufio_buffer *b);
struct bufio_backend *bufio_get_backend(struct bufio_client *c);

/*----------------------------------------------------------------
 * Per-client tunables
 *--------------------------------------------------------------*/

/*
 * Background write-back starts when dirty buffers exceed @ratio times the
 * clean ones (default 3, like DM_BUFIO_WRITEBACK_RATIO), and, while the
 * cache is at its budget, whenever 1/64 of the client's buffers are dirty.
 * 0 writes back as soon as anything is dirty. Returns 0 or -EINVAL (> 1000).
 */
int bufio_set_writeback_ratio(struct bufio_client *c, unsigned ratio);
unsigned bufio_get_writeback_ratio(struct bufio_client *c);

/*
 * Dirty data older than @seconds is written back by the background worker
 * (default 30). 0 disables age-based write-back. Returns 0 or -EINVAL
 * (> 86400).
 */
int bufio_set_dirty_expire(struct bufio_client *c, unsigned seconds);
unsigned bufio_get_dirty_expire(struct bufio_client *c);

/* Forget every clean, unheld buffer of the client (drop_caches). */
void bufio_drop_clean(struct bufio_client *c);

/*----------------------------------------------------------------
 * Write failures and the read-only mode (like dm-clone's metadata modes)
 *--------------------------------------------------------------*/

/*
 * A write attempt is one batch of writes submitted together: one background
 * write-back pass, one round of bufio_write_dirty_buffers, one
 * bufio_write_buffers call. It fails when any of its writes fails and
 * succeeds when all of them do. Failed writes always leave their data dirty.
 *
 * After a failed attempt, background write-back (ratio, age, budget) leaves
 * the client alone for a backoff of 1 s, doubled after every further failed
 * attempt up to 30 s; when it ends, the background worker retries every
 * dirty buffer (one attempt). An attempt that succeeds ends the backoff and
 * resets the count of consecutive failed attempts. Explicit write-back
 * (bufio_write_dirty_buffers, bufio_write_buffer(s), _async) is never held
 * back, and its attempts count like the others. Flush errors are returned
 * to the caller but are not write attempts.
 */
enum bufio_mode {
	BUFIO_MODE_WRITE = 0,     /* normal */
	BUFIO_MODE_READ_ONLY = 1, /* write-back failed persistently, or set by the caller */
};

/*
 * After @n consecutive failed attempts the client switches to
 * BUFIO_MODE_READ_ONLY (0 = never; default 5). Takes effect at the next
 * failed attempt. Returns 0 or -EINVAL (> 1000).
 */
int bufio_set_max_write_failures(struct bufio_client *c, unsigned n);
unsigned bufio_get_max_write_failures(struct bufio_client *c);

enum bufio_mode bufio_get_mode(struct bufio_client *c);

/*
 * BUFIO_MODE_READ_ONLY: switch now. BUFIO_MODE_WRITE: write back every dirty
 * buffer and flush (an error latched by an earlier background write is not
 * reported: this call's own attempt decides); on success leave read-only
 * mode and reset the failure count, else return the error (-EIO, -ENOSPC,
 * ...) and stay read-only. Setting the current mode does nothing.
 *
 * The mode is advice to the caller: libbufio itself keeps accepting dirty
 * data in read-only mode (it has no way to refuse bufio_mark_buffer_dirty);
 * the caller stops writing, as bufiofs's FUSE layer does with EROFS. Dirty
 * data is still written back in the background at the backoff interval, so
 * it reaches the backend once the fault clears; the client stays read-only
 * until set back. Blocks (BUFIO_MODE_WRITE) for the write-back.
 * Errors: EINVAL (unknown mode), the write-back's.
 */
int bufio_set_mode(struct bufio_client *c, enum bufio_mode mode);

/* What bufio_set_event_callback reports. */
enum bufio_event_type {
	BUFIO_EV_WRITE_FAILED,    /* an attempt failed */
	BUFIO_EV_WRITE_RECOVERED, /* an attempt succeeded after failed ones */
	BUFIO_EV_MODE,            /* the mode changed */
};

struct bufio_event {
	enum bufio_event_type type;
	int error;                          /* WRITE_FAILED: a failed write's negative errno */
	uint64_t offset;                    /* WRITE_FAILED: its byte offset on the backend */
	unsigned failures;                  /* consecutive failed attempts, this one included
	                                       (RECOVERED: how many there had been) */
	unsigned retry_seconds;             /* WRITE_FAILED: background retry in this long */
	enum bufio_mode old_mode, new_mode; /* MODE */
};

typedef void (*bufio_event_fn)(struct bufio_client *c, const struct bufio_event *ev, void *arg);

/*
 * Call @fn for every event above (NULL: none). Set it before the first
 * write. @fn runs on the thread that completed the write (a backend
 * completion thread, or the caller of a bufio_ function), with no libbufio
 * lock held; like a backend completion it must not wait for I/O of this
 * client.
 */
void bufio_set_event_callback(struct bufio_client *c, bufio_event_fn fn, void *arg);

/*----------------------------------------------------------------
 * Statistics
 *--------------------------------------------------------------*/

/* Counters (since creation or bufio_clear_stats) and gauges (now). */
struct bufio_stats {
	/* counters */
	uint64_t hits;   /* read/get/new found the block cached and ready */
	uint64_t misses; /* read/new created the buffer or waited for its read */
	uint64_t reads;  /* backend reads submitted */
	uint64_t read_bytes;
	uint64_t writes; /* backend writes submitted */
	uint64_t write_bytes;
	uint64_t writebacks; /* writes started by background write-back */
	uint64_t flushes;
	uint64_t discards;
	uint64_t prefetches; /* blocks whose read was started by prefetch */
	uint64_t read_errors;
	uint64_t write_errors;
	uint64_t evict_budget;   /* evicted by the global memory budget */
	uint64_t evict_age;      /* evicted by max_age_seconds */
	uint64_t evict_pressure; /* evicted under memory pressure */
	uint64_t evict_forget;   /* forgotten (forget, drop_caches, discard) */
	uint64_t evict_reuse;    /* reused for another block in place */
	uint64_t alloc_failures; /* buffer allocations that failed */
	uint64_t reserve_used;   /* times the reserve supplied a buffer */
	/* gauges */
	uint64_t buffers_clean;
	uint64_t buffers_dirty;
	uint64_t buffers_reading;
	uint64_t buffers_writing;
	uint64_t buffers_held;
	uint64_t bytes_cached;   /* buffers * block size */
	uint64_t write_failures; /* consecutive failed write attempts (0 after a success) */
};

/* Fill @out. Cheap (no client-wide lock on the hot path); never blocks long. */
void bufio_get_stats(struct bufio_client *c, struct bufio_stats *out);

/* Bytes of metadata per cached buffer: descriptor, aux data, index share. */
size_t bufio_metadata_per_buffer(struct bufio_client *c);

/* Reset the counters (not the gauges). */
void bufio_clear_stats(struct bufio_client *c);

/*----------------------------------------------------------------
 * Process-wide memory policy (dm-bufio's module parameters)
 *--------------------------------------------------------------*/

/*
 * Budget for all clients together: the memory of cached buffers, their data
 * and metadata (descriptor, aux data, index slot), which a writer may exceed
 * by 1/64 before it waits for write-back. 0 selects the default, 2% of RAM
 * (the cgroup limit if lower). Lowering it evicts down to the new budget at once
 * (clean buffers; dirty ones are written back first). Returns 0 or -EINVAL.
 *
 * In a memory cgroup the budget in force is also capped to what the cache
 * can take without an OOM kill: the limit less the cgroup's other usage
 * (reclaimable page cache aside), less limit / 8 + 16 MiB, less the 1/64 a
 * writer may overshoot the budget by. The cap follows the usage; a setting
 * above it is kept and applies again when there is room.
 */
int bufio_set_max_cache_size(uint64_t bytes);
uint64_t bufio_get_max_cache_size(void);       /* as set (0 = default) */
uint64_t bufio_get_effective_cache_size(void); /* the budget in force */

/* Buffers unused for longer are freed by the periodic pass (default 300). */
int bufio_set_max_age(unsigned seconds);
unsigned bufio_get_max_age(void);

/* The age pass keeps this much of each client (default 256 KiB). */
int bufio_set_retain_bytes(uint64_t bytes);
uint64_t bufio_get_retain_bytes(void);

/* Memory charged to the budget now: data and metadata of every buffer. */
uint64_t bufio_get_current_allocated(void);
uint64_t bufio_get_peak_allocated(void);
void bufio_reset_peak_allocated(void); /* peak := current */

/* Sum of every client's gauges, for the global control files. */
void bufio_get_global_stats(struct bufio_stats *out);

/* Buffers found still held by bufio_client_destroy, process lifetime. */
uint64_t bufio_leaked_buffers(void);

/*
 * Where memory-pressure notifications come from: "cgroup" (the cgroup v2
 * memory.pressure PSI trigger), "system" (/proc/pressure/memory), or "none"
 * (no PSI: only the budget and the age pass limit the cache).
 */
const char *bufio_pressure_source(void);

/*
 * The shrinker: free up to @bytes of clean, unheld buffers across all
 * clients, least recently used (CLOCK order) first, keeping each client's
 * minimum. Returns bytes freed. Called by the pressure watcher; public so
 * that an embedding program can react to its own signals. Blocks briefly.
 */
uint64_t bufio_shrink(uint64_t bytes);

/*
 * Run the periodic pass now (age eviction, dirty expiry, budget) instead of
 * waiting for the 30 s timer. Blocks until done.
 */
void bufio_run_cleanup(void);

/*----------------------------------------------------------------
 * Sleep notification for thread pools
 *--------------------------------------------------------------*/

/*
 * What a thread pool learns about its threads' waits inside libbufio, as the
 * kernel's concurrency-managed workqueues learn it from the scheduler: a pool
 * can then keep few threads runnable and let another in only while one
 * waits. @sleeping is called just before the calling thread waits for
 * backend I/O (a read or write in flight, a flush, a discard, a synchronous
 * read or write through an O_DIRECT backend, room in a full io_uring), or
 * for buffers another thread must release or write back; @woken when it
 * stops waiting, once per @sleeping. Short waits for the index's shard locks
 * are not reported. Both run in the waiting thread, must not block for long nor call into
 * libbufio, and get @arg.
 */
struct bufio_sleep_hooks {
	void (*sleeping)(void *arg);
	void (*woken)(void *arg);
	void *arg;
};

/*
 * Report the calling thread's waits to @hooks (NULL: stop reporting). The
 * hooks must stay valid while set. Never blocks; per thread, so threads that
 * did not set hooks are unaffected.
 */
void bufio_set_sleep_hooks(const struct bufio_sleep_hooks *hooks);

/*----------------------------------------------------------------
 * Fault injection (tests only)
 *--------------------------------------------------------------*/

/*
 * Make the next @n buffer allocations fail as if malloc had returned NULL
 * (-1: every allocation until called again with 0).
 */
void bufio_inject_alloc_failures(long n);

#ifdef __cplusplus
}
#endif
#endif /* BUFIO_BUFIO_H */
