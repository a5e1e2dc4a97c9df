/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Dropping and moving blocks: bufio_forget(_buffers), which a discard relies
 * on to leave no stale dirty data behind, and bufio_release_move.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Remove an unheld, idle buffer even if dirty; client and shard locks held. */
static void drop_locked(struct shard *s, struct bufio_buffer *b)
{
	index_remove(s, b);
	atomic_fetch_and(&b->state, ~B_DIRTY);
	lru_unlink(b);
	stat_inc(b->c, ST_EVICT_FORGET);
}

/*
 * Find @block with client and shard (write) locks held, having waited for
 * any I/O in flight on it. Returns NULL (locks released) if absent.
 */
static struct bufio_buffer *find_idle_locked(struct bufio_client *c, uint64_t block,
                                             struct shard **sp)
{
	struct shard *s = index_shard(c, block);
	for (;;) {
		pthread_mutex_lock(&c->lock);
		shard_wrlock(s);
		struct bufio_buffer *b = index_find(s, block);
		if (!b) {
			shard_wrunlock(s);
			pthread_mutex_unlock(&c->lock);
			return NULL;
		}
		if (!(atomic_load(&b->state) & B_IO)) {
			*sp = s;
			return b;
		}
		buffer_hold(b);
		shard_wrunlock(s);
		pthread_mutex_unlock(&c->lock);
		buffer_wait_clear(b, B_IO);
		buffer_put(b);
	}
}

void bufio_forget(struct bufio_client *c, uint64_t block)
{
	struct shard *s;
	struct bufio_buffer *b = find_idle_locked(c, block, &s);
	if (!b)
		return;
	bool drop = hold_count(b) == 0;
	if (drop)
		drop_locked(s, b);
	shard_wrunlock(s);
	if (drop)
		buffer_free(b);
	pthread_mutex_unlock(&c->lock);
}

/* Cached block numbers in [block, end), for ranges far larger than the cache. */
static uint64_t *cached_in_range(struct bufio_client *c, uint64_t block, uint64_t end, size_t *n)
{
	pthread_mutex_lock(&c->lock);
	size_t cap = cached_buffers(c), k = 0;
	uint64_t *v = malloc((cap + 1) * sizeof(*v));
	for (int l = 0; v && l < NR_LISTS; l++) {
		struct bufio_buffer *head = c->lru[l], *b = head;
		if (!head)
			continue;
		do {
			if (b->block >= block && b->block < end && k < cap)
				v[k++] = b->block;
			b = b->lru_next;
		} while (b != head);
	}
	pthread_mutex_unlock(&c->lock);
	*n = k;
	return v;
}

void bufio_forget_buffers(struct bufio_client *c, uint64_t block, uint64_t n_blocks)
{
	uint64_t end = block + n_blocks;
	if (end > c->n_blocks || end < block)
		end = c->n_blocks;
	pthread_mutex_lock(&c->lock);
	uint64_t cached = cached_buffers(c);
	pthread_mutex_unlock(&c->lock);
	if (block >= end)
		return;
	if (end - block > 4 * cached + 64) {
		size_t n;
		uint64_t *v = cached_in_range(c, block, end, &n);
		if (v) {
			for (size_t i = 0; i < n; i++)
				bufio_forget(c, v[i]);
			free(v);
			return;
		}
	}
	for (; block < end; block++)
		bufio_forget(c, block);
}

/* Lock two shards in address order (they may be the same). */
static void lock_pair(struct shard *a, struct shard *b)
{
	if (a == b) {
		shard_wrlock(a);
		return;
	}
	if (a > b) {
		struct shard *t = a;
		a = b;
		b = t;
	}
	shard_wrlock(a);
	shard_wrlock(b);
}

static void unlock_pair(struct shard *a, struct shard *b)
{
	shard_wrunlock(a);
	if (a != b)
		shard_wrunlock(b);
}

/* Drop whatever is cached for @block so @b can take its place. Returns false
 * (locks released, waited) when the caller must retry. */
static bool clear_target(struct bufio_buffer *b, uint64_t block)
{
	struct bufio_client *c = b->c;
	struct shard *s;
	struct bufio_buffer *t = find_idle_locked(c, block, &s);
	if (!t)
		return true;
	if (t == b) { /* moving onto itself */
		shard_wrunlock(s);
		pthread_mutex_unlock(&c->lock);
		return true;
	}
	if (hold_count(t)) {
		/* Someone holds the target: wait for a release, as dm-bufio. */
		shard_wrunlock(s);
		free_wait(c);
		pthread_mutex_unlock(&c->lock);
		return false;
	}
	drop_locked(s, t);
	shard_wrunlock(s);
	buffer_free(t);
	pthread_mutex_unlock(&c->lock);
	return true;
}

/*
 * Someone else holds @b at its old block: cache a copy as @new_block.
 * Returns false if @new_block got cached meanwhile (the caller retries).
 */
static bool move_by_copy(struct bufio_buffer *b, uint64_t new_block)
{
	struct bufio_client *c = b->c;
	struct bufio_buffer *nb = buffer_alloc(c, true);
	memcpy(nb->data, b->data, c->block_size);
	bool created;
	struct bufio_buffer *t = buffer_insert_or_find(c, new_block, nb, 0, 1, &created, NULL);
	if (!created) {
		buffer_put(t);
		return false;
	}
	bufio_mark_buffer_dirty(t);
	buffer_put(t);
	return true;
}

/* Rehash @b as @new_block, fully dirty; client lock held, @b idle and ours alone. */
static bool move_in_place(struct bufio_buffer *b, uint64_t new_block)
{
	struct bufio_client *c = b->c;
	struct shard *so = index_shard(c, b->block), *sn = index_shard(c, new_block);
	lock_pair(so, sn);
	if (index_find(sn, new_block)) { /* a reader cached the target meanwhile */
		unlock_pair(so, sn);
		return false;
	}
	index_remove(so, b);
	b->block = new_block;
	index_insert(sn, b);
	unlock_pair(so, sn);
	if (!(atomic_load(&b->state) & B_DIRTY)) {
		atomic_fetch_or(&b->state, B_DIRTY);
		b->dirty_seq = ++c->dirty_seq;
		b->dirty_since = bufio_now();
	}
	b->dirty_start = 0;
	b->dirty_end = c->block_size;
	lru_relink(b, LIST_DIRTY);
	return true;
}

void bufio_release_move(struct bufio_buffer *b, uint64_t new_block)
{
	struct bufio_client *c = b->c;
	if (new_block >= c->n_blocks) {
		fprintf(stderr, "bufio: release_move of block %llu to %llu: past the device end\n",
		        (unsigned long long)b->block, (unsigned long long)new_block);
		bufio_release(b);
		return;
	}
	/* Unlike dm-bufio, nothing is written to the old block: the data
	 * belongs to the new one now (copy-on-write users rely on that). */
	for (;;) {
		while (!clear_target(b, new_block))
			;
		pthread_mutex_lock(&c->lock);
		/* Writes start only under this lock, so an idle buffer stays
		 * idle until we unlock. */
		if (atomic_load(&b->state) & B_WRITING) {
			pthread_mutex_unlock(&c->lock);
			buffer_wait_clear(b, B_WRITING);
			continue;
		}
		if (hold_count(b) != 1) {
			pthread_mutex_unlock(&c->lock);
			if (move_by_copy(b, new_block))
				break;
			continue;
		}
		bool moved = move_in_place(b, new_block);
		pthread_mutex_unlock(&c->lock);
		if (moved)
			break;
	}
	bufio_release(b);
}
