/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Dirty buffers and their write-back: partial dirty ranges widened to 4 KiB,
 * one batch per pass, failed writes kept dirty for a retry, and the sequence
 * stamps that let bufio_write_dirty_buffers wait for exactly the data dirtied
 * before it was called.
 */
#include <errno.h>

#include "internal.h"

static unsigned write_align(struct bufio_client *c)
{
	unsigned a = bufio_backend_alignment(c->be);
	return a > BUFIO_WRITE_ALIGN ? a : BUFIO_WRITE_ALIGN;
}

/* Widen @b's dirty range by [start, end); client lock held. */
static void mark_dirty_locked(struct bufio_buffer *b, unsigned start, unsigned end)
{
	struct bufio_client *c = b->c;
	unsigned st = atomic_load(&b->state);
	if (!(st & B_DIRTY)) {
		atomic_fetch_or(&b->state, B_DIRTY);
		b->dirty_start = start;
		b->dirty_end = end;
		b->dirty_since = bufio_now();
		/* A buffer still being written keeps the stamp of the data in
		 * flight; the completion restamps it (see write_done). */
		if (!(st & B_WRITING)) {
			b->dirty_seq = ++c->dirty_seq;
			lru_relink(b, LIST_DIRTY);
		}
	} else {
		if (start < b->dirty_start)
			b->dirty_start = start;
		if (end > b->dirty_end)
			b->dirty_end = end;
	}
}

void bufio_mark_partial_buffer_dirty(struct bufio_buffer *b, unsigned start, unsigned end)
{
	struct bufio_client *c = b->c;
	if (start >= end || end > c->block_size)
		return;
	pthread_mutex_lock(&c->lock);
	mark_dirty_locked(b, start, end);
	bool kick = writeback_needed(c);
	pthread_mutex_unlock(&c->lock);
	if (kick)
		global_kick(KICK_WRITEBACK);
}

void bufio_mark_buffer_dirty(struct bufio_buffer *b)
{
	bufio_mark_partial_buffer_dirty(b, 0, b->c->block_size);
}

void bufio_mark_buffers_dirty(struct bufio_buffer **bufs, unsigned n)
{
	if (!n)
		return;
	struct bufio_client *c = bufs[0]->c;
	pthread_mutex_lock(&c->lock);
	for (unsigned i = 0; i < n; i++)
		mark_dirty_locked(bufs[i], 0, c->block_size);
	bool kick = writeback_needed(c);
	pthread_mutex_unlock(&c->lock);
	if (kick)
		global_kick(KICK_WRITEBACK);
}

bool writeback_needed(struct bufio_client *c)
{
	/* Dirty and not yet submitted: writes in flight are on their own ring. */
	uint64_t dirty = c->n_buffers[LIST_DIRTY];
	if (!dirty)
		return false;
	if (dirty > c->n_buffers[LIST_CLEAN] * atomic_load(&c->writeback_ratio))
		return true;
	/*
	 * At the budget the cache cannot grow: every new block needs a clean
	 * buffer, which only write-back makes. The ratio alone wrote in bursts
	 * of most of the cache with the backing idle in between (a streaming
	 * writer got 0.7x the device); write every 1/64 of the cache instead.
	 */
	return global_near_budget() && dirty >= cached_buffers(c) / 64;
}

static void write_done(struct bufio_io *io, int res)
{
	struct core_io *cio = (struct core_io *)io;
	struct bufio_buffer *b = io->private;
	struct bufio_client *c = b->c;
	uint32_t ws = (uint32_t)(io->offset - block_to_byte(c, b->block));
	uint32_t we = ws + (uint32_t)io->len;
	struct bufio_event ev[MAX_EVENTS];
	bool kick = false;

	pthread_mutex_lock(&c->lock);
	unsigned st = atomic_load(&b->state);
	if (res < 0) {
		/* Unlike dm-bufio the data is kept: the buffer stays dirty and
		 * the next write-back retries it. */
		stat_inc(c, ST_WRITE_ERRORS);
		if (!c->async_write_error && !cio->sync)
			c->async_write_error = res;
		b->io_error = (int16_t)res;
		if (st & B_DIRTY) {
			b->dirty_start = ws < b->dirty_start ? ws : b->dirty_start;
			b->dirty_end = we > b->dirty_end ? we : b->dirty_end;
		} else {
			atomic_fetch_or(&b->state, B_DIRTY);
			b->dirty_start = ws;
			b->dirty_end = we;
			b->dirty_since = bufio_now();
		}
		/* A fresh stamp: a write_dirty_buffers waiting on this data
		 * has its error and must not spin retrying it. */
		b->dirty_seq = ++c->dirty_seq;
		lru_relink(b, LIST_DIRTY);
	} else {
		b->io_error = 0;
		if (st & B_DIRTY)
			/* Re-dirtied while in flight: what was dirty before
			 * the submission is on the backend now. */
			b->dirty_seq = cio->sub_seq;
		lru_relink(b, (st & B_DIRTY) ? LIST_DIRTY : LIST_CLEAN);
	}
	unsigned nev = attempt_io_done(c, cio, res, ev, &kick);
	pthread_mutex_unlock(&c->lock);

	io_free(c, io);
	/* While B_WRITING is set the client cannot be destroyed under us. */
	deliver_events(c, ev, nev);
	if (kick)
		global_kick(KICK_RETRY);
	/* @b may be evicted as soon as the bit is clear: last touch. */
	buffer_clear_wake(b, B_WRITING);
	/* A writer just over the budget reuses this buffer now that it is
	 * clean; only far over it (a lowered budget, writers waiting) must the
	 * worker free memory. Kicking on every completion made it evict what
	 * writers were about to reuse. */
	wake_free_waiters(c);
	if (global_far_over_budget())
		global_kick(KICK_BUDGET);
	completion_end(c);
}

/* Turn one dirty buffer into a write request; client lock held. */
static void write_prepare(struct bufio_buffer *b, struct bufio_io *io, struct bufio_plug *plug)
{
	struct bufio_client *c = b->c;
	struct core_io *cio = (struct core_io *)io;
	unsigned align = write_align(c);
	uint32_t ws = b->dirty_start / align * align;
	uint64_t we = ((uint64_t)b->dirty_end + align - 1) / align * align;
	if (we > c->block_size)
		we = c->block_size;

	atomic_fetch_or(&b->state, B_WRITING);
	atomic_fetch_and(&b->state, ~B_DIRTY);
	cio->sub_seq = ++c->dirty_seq;
	cio->sync = false;
	lru_relink(b, LIST_WRITING);

	io->op = BUFIO_OP_WRITE;
	io->buf = b->data + ws;
	io->offset = block_to_byte(c, b->block) + ws;
	io->len = we - ws;
	io->done = write_done;
	io->private = b;
	completion_begin(c);
	stat_inc(c, ST_WRITES);
	stat_add(c, ST_WRITE_BYTES, (int64_t)io->len);
	bufio_plug_add(plug, io);
}

/*
 * Background write-back leaves held buffers alone: their holder may be
 * changing the data. It claims the buffer (B_WRITING) before looking at the
 * hold, and a holder looks for B_WRITING after taking its hold
 * (bufio_wait_writeback), so one of the two always sees the other.
 */
static bool claim_unheld(struct bufio_buffer *b)
{
	atomic_fetch_or(&b->state, B_WRITING);
	if (!hold_count(b))
		return true;
	buffer_clear_wake(b, B_WRITING);
	return false;
}

/*
 * Gather writes for dirty buffers not already being written: all of them, or
 * only those whose stamp is at most @seq_limit when @limited, or dirty since
 * @older_than. Stops early if no io descriptor is available without waiting.
 * Client lock held.
 */
static unsigned collect(struct bufio_client *c, struct bufio_plug *plug, bool limited,
                        uint32_t seq_limit, uint32_t older_than, bool background)
{
	unsigned n = 0;
	uint64_t left = c->n_buffers[LIST_DIRTY];
	struct bufio_buffer *b = c->lru[LIST_DIRTY];
	/* Submitted buffers leave the ring for the writing one; the count
	 * taken first still visits each of the others exactly once. */
	for (; left; left--) {
		struct bufio_buffer *next = b->lru_next;
		unsigned st = atomic_load(&b->state);
		bool want = (st & B_DIRTY) && !(st & B_WRITING);
		if (want && limited && !seq_le(b->dirty_seq, seq_limit))
			want = false;
		if (want && older_than && b->dirty_since > older_than)
			want = false;
		if (want && background && hold_count(b))
			want = false;
		if (want) {
			struct bufio_io *io = io_alloc(c, false);
			if (!io)
				break;
			if (background && !claim_unheld(b)) {
				io_free(c, io);
			} else {
				write_prepare(b, io, plug);
				n++;
			}
		}
		b = next;
	}
	return n;
}

/* Call write callbacks outside the lock, then submit the batch (one attempt). */
static void submit_writes(struct bufio_client *c, struct bufio_plug *plug)
{
	if (!plug->head)
		return;
	attempt_start(plug);
	if (c->write_callback)
		for (struct bufio_io *io = plug->head; io; io = io->next)
			c->write_callback(io->private);
	bufio_plug_finish(plug, c->be);
}

static unsigned writeback_collect(struct bufio_client *c, struct bufio_plug *plug,
                                  uint32_t older_than, bool background)
{
	/* After a failed attempt only the retry writes in the background. */
	if (background && backing_off(c))
		return 0;
	unsigned n = collect(c, plug, false, 0, older_than, background);
	if (background)
		stat_add(c, ST_WRITEBACKS, n);
	return n;
}

void writeback_async(struct bufio_client *c, bool background)
{
	struct bufio_plug plug;
	bufio_plug_init(&plug);
	pthread_mutex_lock(&c->lock);
	writeback_collect(c, &plug, 0, background);
	pthread_mutex_unlock(&c->lock);
	submit_writes(c, &plug);
}

void writeback_expired(struct bufio_client *c, uint32_t now)
{
	unsigned expire = atomic_load(&c->dirty_expire);
	if (!expire || now < expire)
		return;
	struct bufio_plug plug;
	bufio_plug_init(&plug);
	pthread_mutex_lock(&c->lock);
	writeback_collect(c, &plug, now - expire, true);
	pthread_mutex_unlock(&c->lock);
	submit_writes(c, &plug);
}

void writeback_retry(struct bufio_client *c, uint64_t now_ms)
{
	struct bufio_plug plug;
	bufio_plug_init(&plug);
	pthread_mutex_lock(&c->lock);
	if (claim_retry(c, now_ms))
		stat_add(c, ST_WRITEBACKS, collect(c, &plug, false, 0, 0, true));
	pthread_mutex_unlock(&c->lock);
	submit_writes(c, &plug);
}

void bufio_wait_writeback(struct bufio_buffer *b)
{
	/* Pairs with claim_unheld(): our hold is already visible. */
	atomic_thread_fence(memory_order_seq_cst);
	buffer_wait_clear(b, B_WRITING);
}

void bufio_write_dirty_buffers_async(struct bufio_client *c)
{
	writeback_async(c, false);
}

/*
 * A buffer with data from before @seq still being written, held; or NULL,
 * with *pending set when such data is dirty but not yet submitted.
 */
static struct bufio_buffer *find_old_writing(struct bufio_client *c, uint32_t seq, bool *pending)
{
	struct bufio_buffer *b = c->lru[LIST_WRITING];
	for (uint64_t n = c->n_buffers[LIST_WRITING]; n; n--, b = b->lru_next)
		if (seq_le(b->dirty_seq, seq)) {
			buffer_hold(b);
			return b;
		}
	b = c->lru[LIST_DIRTY];
	for (uint64_t n = c->n_buffers[LIST_DIRTY]; n; n--, b = b->lru_next) {
		unsigned st = atomic_load(&b->state);
		if (!seq_le(b->dirty_seq, seq))
			continue;
		/* Completed and back on this ring, its bit not yet cleared. */
		if (st & B_WRITING) {
			buffer_hold(b);
			return b;
		}
		if (st & B_DIRTY)
			*pending = true;
	}
	return NULL;
}

int bufio_write_dirty_buffers(struct bufio_client *c)
{
	pthread_mutex_lock(&c->lock);
	uint32_t seq = c->dirty_seq;
	for (;;) {
		struct bufio_plug plug;
		bufio_plug_init(&plug);
		bool pending = false;
		struct bufio_buffer *w = NULL;
		/* After a failure, only wait: retrying inside this call could
		 * spin forever on a dead device. The error is returned below. */
		if (!c->async_write_error)
			collect(c, &plug, true, seq, 0, false);
		if (!plug.head)
			w = find_old_writing(c, seq, &pending);
		pthread_mutex_unlock(&c->lock);
		if (plug.head) {
			submit_writes(c, &plug);
		} else if (w) {
			buffer_wait_clear(w, B_WRITING);
			buffer_put(w);
		} else if (pending && !c->async_write_error) {
			/* Out of io descriptors: wait for one to come back. */
			io_free(c, io_alloc(c, true));
		} else {
			break;
		}
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_lock(&c->lock);
	int err = c->async_write_error;
	c->async_write_error = 0;
	if (atomic_load(&c->free_waiters))
		pthread_cond_broadcast(&c->free_cond);
	pthread_mutex_unlock(&c->lock);
	int f = bufio_issue_flush(c);
	return err ? err : f;
}

/*
 * Submit writes for the dirty ones of bufs[*i..n) as one batch, stopping at
 * a buffer already being written or when io descriptors run out. Returns
 * the index reached in *i; the submitted ones are bufs[first..*i).
 */
static void write_some(struct bufio_client *c, struct bufio_buffer **bufs, unsigned n, unsigned *i,
                       bool *out_of_io)
{
	struct bufio_plug plug;
	bufio_plug_init(&plug);
	*out_of_io = false;
	pthread_mutex_lock(&c->lock);
	for (; *i < n; (*i)++) {
		struct bufio_buffer *b = bufs[*i];
		unsigned st = atomic_load(&b->state);
		if (st & B_WRITING)
			break;
		if (!(st & B_DIRTY))
			continue;
		struct bufio_io *io = io_alloc(c, false);
		if (!io) {
			*out_of_io = true;
			break;
		}
		write_prepare(b, io, &plug);
		/* The caller gets this error directly; it is not latched for
		 * the next bufio_write_dirty_buffers. */
		((struct core_io *)io)->sync = true;
	}
	pthread_mutex_unlock(&c->lock);
	submit_writes(c, &plug);
}

int bufio_write_buffers(struct bufio_buffer **bufs, unsigned n)
{
	if (!n)
		return 0;
	struct bufio_client *c = bufs[0]->c;
	unsigned i = 0;
	while (i < n) {
		unsigned first = i;
		bool out_of_io;
		write_some(c, bufs, n, &i, &out_of_io);
		for (unsigned k = first; k < i; k++)
			buffer_wait_clear(bufs[k], B_WRITING);
		if (i < n && out_of_io && i == first)
			io_free(c, io_alloc(c, true)); /* wait for a descriptor */
		else if (i < n)
			/* Someone else's write of older data: let it finish,
			 * then write ours (the buffer may be dirty again). */
			buffer_wait_clear(bufs[i], B_WRITING);
	}
	int err = 0;
	pthread_mutex_lock(&c->lock);
	for (unsigned k = 0; k < n && !err; k++)
		if ((atomic_load(&bufs[k]->state) & B_DIRTY) && bufs[k]->io_error < 0)
			err = bufs[k]->io_error;
	pthread_mutex_unlock(&c->lock);
	return err;
}

int bufio_write_buffer(struct bufio_buffer *b)
{
	return bufio_write_buffers(&b, 1);
}

int bufio_issue_flush(struct bufio_client *c)
{
	stat_inc(c, ST_FLUSHES);
	return bufio_backend_rw_sync(c->be, BUFIO_OP_FLUSH, NULL, 0, 0);
}

int bufio_issue_discard(struct bufio_client *c, uint64_t block, uint64_t count)
{
	if (block > c->n_blocks || count > c->n_blocks - block)
		return -ERANGE;
	if (!(c->be->flags & BUFIO_BE_DISCARD))
		return -EOPNOTSUPP;
	if (!count)
		return 0;
	stat_inc(c, ST_DISCARDS);
	return bufio_backend_rw_sync(c->be, BUFIO_OP_DISCARD, NULL, block_to_byte(c, block),
	                             count * c->block_size);
}
