/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Getting buffers: bufio_read, bufio_get, bufio_new, bufio_prefetch and
 * bufio_release. Hits take only a shard read lock and an atomic hold; misses
 * create the buffer under the client lock and share one backend read among
 * every thread that asks for the block meanwhile.
 */
#include <errno.h>

#include "internal.h"

enum new_flag { NF_READ, NF_NEW };

/* Trade the data memory of @b, still unseen by anyone, with *@mem. */
static void swap_data(struct bufio_buffer *b, void **mem)
{
	void *t = b->data;
	b->data = *mem;
	*mem = t;
}

/*
 * Insert a fresh buffer for @block unless one appeared meanwhile. Returns the
 * buffer holding one hold for the caller, with *@created telling which. If
 * @nb had adopted the caller's memory (@adopted, see bufio_new_adopt) and is
 * not used, the memory goes back to the caller first.
 */
struct bufio_buffer *buffer_insert_or_find(struct bufio_client *c, uint64_t block,
                                           struct bufio_buffer *nb, unsigned state, unsigned hold,
                                           bool *created, void **adopted)
{
	struct shard *s = index_shard(c, block);
	/* Before the buffer is visible to anyone, with its block number set;
	 * wasted if another thread created the block meanwhile. */
	nb->block = block;
	if (c->alloc_callback)
		c->alloc_callback(nb);
	pthread_mutex_lock(&c->lock);
	shard_wrlock(s);
	struct bufio_buffer *b = index_find(s, block);
	if (b) {
		buffer_get_hold(b);
		shard_wrunlock(s);
		if (adopted)
			swap_data(nb, adopted);
		buffer_free(nb);
		pthread_mutex_unlock(&c->lock);
		*created = false;
		return b;
	}
	nb->block = block;
	atomic_store(&nb->hold, 0);
	if (hold)
		buffer_hold(nb);
	atomic_store(&nb->state, state);
	atomic_store(&nb->accessed, 1);
	atomic_store(&nb->last_accessed, bufio_now());
	index_insert(s, nb);
	shard_wrunlock(s);
	lru_link(nb, LIST_CLEAN);
	pthread_mutex_unlock(&c->lock);
	*created = true;
	return nb;
}

/*
 * Count a lookup that found @b. Waiting for a read in flight is a miss, and
 * so is the first use of a prefetched block: the prefetch was the miss, made
 * early. Exactly one thread clears the prefetched mark.
 */
static void count_found(struct bufio_client *c, struct bufio_buffer *b)
{
	unsigned st = atomic_load(&b->state);
	bool miss = st & B_READING;
	if (st & B_PREFETCHED)
		miss |= (atomic_fetch_and(&b->state, ~B_PREFETCHED) & B_PREFETCHED) != 0;
	stat_inc(c, miss ? ST_MISSES : ST_HITS);
}

static struct bufio_buffer *find_or_create(struct bufio_client *c, uint64_t block, enum new_flag nf,
                                           void **adopt)
{
	struct bufio_buffer *b = index_find_hold(c, block);
	if (b) {
		count_found(c, b);
		return b;
	}
	struct bufio_io *io = NULL;
	if (nf == NF_READ)
		io = io_alloc(c, true);
	struct bufio_buffer *nb = buffer_alloc(c, true);
	bool created;
	if (adopt)
		swap_data(nb, adopt);
	b = buffer_insert_or_find(c, block, nb, nf == NF_READ ? B_READING : 0, 1, &created, adopt);
	if (!created) {
		if (io)
			io_free(c, io);
		stat_inc(c, ST_HITS);
		return b;
	}
	stat_inc(c, ST_MISSES);
	if (io) {
		struct bufio_plug plug;
		bufio_plug_init(&plug);
		read_prepare(b, io, &plug);
		bufio_plug_finish(&plug, c->be);
	}
	return b;
}

static bool check_block(struct bufio_client *c, uint64_t block)
{
	if (block >= c->n_blocks) {
		errno = ERANGE;
		return false;
	}
	return true;
}

/* Wait for a read in flight; false (errno set, hold dropped) if it failed. */
static bool wait_read(struct bufio_buffer *b)
{
	if (atomic_load_explicit(&b->state, memory_order_acquire) & B_READING)
		buffer_wait_clear(b, B_READING);
	/* We hold it, so reading the dead mark in the hold word is safe. */
	if (atomic_load_explicit(&b->hold, memory_order_acquire) & HOLD_DEAD) {
		int err = b->io_error ? -b->io_error : EIO;
		buffer_put(b);
		errno = err;
		return false;
	}
	return true;
}

static void *hand_out(struct bufio_buffer *b, struct bufio_buffer **bp)
{
	*bp = b;
	return b->data;
}

void *bufio_read(struct bufio_client *c, uint64_t block, struct bufio_buffer **bp)
{
	if (!check_block(c, block))
		return NULL;
	struct bufio_buffer *b = find_or_create(c, block, NF_READ, NULL);
	if (!wait_read(b))
		return NULL;
	return hand_out(b, bp);
}

void *bufio_get(struct bufio_client *c, uint64_t block, struct bufio_buffer **bp)
{
	struct bufio_buffer *b = block < c->n_blocks ? index_find_hold(c, block) : NULL;
	if (b && ((atomic_load_explicit(&b->state, memory_order_acquire) & B_READING) ||
	          (atomic_load(&b->hold) & HOLD_DEAD))) {
		/* Never wait here: a caller may have prefetched this very block
		 * and would deadlock waiting for itself (see dm-bufio). */
		buffer_put(b);
		b = NULL;
	}
	if (!b) {
		errno = ENOENT;
		return NULL;
	}
	count_found(c, b);
	return hand_out(b, bp);
}

void *bufio_new(struct bufio_client *c, uint64_t block, struct bufio_buffer **bp)
{
	return bufio_new_adopt(c, block, NULL, bp);
}

void *bufio_new_adopt(struct bufio_client *c, uint64_t block, void **mem, struct bufio_buffer **bp)
{
	if (!check_block(c, block))
		return NULL;
	for (;;) {
		struct bufio_buffer *b = find_or_create(c, block, NF_NEW, mem);
		/* A failed read of the block is no reason to fail: the caller
		 * overwrites it anyway, so start again with a fresh buffer. */
		if (wait_read(b)) {
			/* The caller overwrites the data: no write may read it. */
			bufio_wait_writeback(b);
			return hand_out(b, bp);
		}
	}
}

void bufio_prefetch(struct bufio_client *c, uint64_t block, unsigned n_blocks)
{
	struct bufio_plug plug;
	bufio_plug_init(&plug);
	uint64_t end = block + n_blocks;
	if (end > c->n_blocks || end < block)
		end = c->n_blocks;
	for (; block < end; block++) {
		struct shard *s = index_shard(c, block);
		unsigned j = shard_rdlock(s);
		bool cached = index_find(s, block) != NULL;
		shard_rdunlock(s, j);
		if (cached)
			continue;
		struct bufio_io *io = io_alloc(c, false);
		if (!io)
			break;
		struct bufio_buffer *nb = buffer_alloc(c, false);
		if (!nb) {
			io_free(c, io);
			break;
		}
		bool created;
		/* No caller hold: B_READING alone protects it from eviction. */
		struct bufio_buffer *b = buffer_insert_or_find(
		    c, block, nb, B_READING | B_PREFETCHED, 0, &created, NULL);
		if (!created) {
			buffer_put(b);
			io_free(c, io);
			continue;
		}
		stat_inc(c, ST_PREFETCHES);
		read_prepare(b, io, &plug);
	}
	bufio_plug_finish(&plug, c->be);
}

void bufio_release(struct bufio_buffer *b)
{
	buffer_put(b);
}
