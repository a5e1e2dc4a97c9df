/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Choosing buffers to give up: the CLOCK (second-chance) sweep over a
 * client's clean ring used by the budget, the shrinker and allocation reuse,
 * and the age pass that trims idle buffers down to retain_bytes.
 */
#include "internal.h"

static uint64_t retain_buffers(struct bufio_client *c)
{
	return atomic_load(&bufio_g.retain_bytes) / c->block_size;
}

/*
 * Advance the hand over the clean ring until an evictable buffer without
 * its reference bit is found; referenced ones lose the bit (second chance).
 * Gives up after two full turns. Client lock held.
 */
static struct bufio_buffer *clock_pick(struct bufio_client *c)
{
	uint64_t budget = 2 * c->n_buffers[LIST_CLEAN] + 1;
	while (budget-- && c->lru[LIST_CLEAN]) {
		struct bufio_buffer *b = c->lru[LIST_CLEAN];
		c->lru[LIST_CLEAN] = b->lru_next;
		if (!buffer_evictable(b))
			continue;
		if (atomic_load_explicit(&b->accessed, memory_order_relaxed)) {
			atomic_store_explicit(&b->accessed, 0, memory_order_relaxed);
			continue;
		}
		return b;
	}
	return NULL;
}

uint64_t evict_clock(struct bufio_client *c, uint64_t nr, enum stat_id reason)
{
	uint64_t done = 0;
	while (done < nr && cached_buffers(c) > c->minimum_buffers) {
		struct bufio_buffer *b = clock_pick(c);
		if (!b)
			break;
		if (buffer_try_evict(b, reason))
			done++;
	}
	return done;
}

struct bufio_buffer *reuse_unclaimed(struct bufio_client *c)
{
	/* Reusing keeps the client's buffer count, so the minimum does not
	 * apply; the buffer's memory moves to the new block as is. */
	for (int tries = 0; tries < 4; tries++) {
		struct bufio_buffer *b = clock_pick(c);
		if (!b)
			return NULL;
		if (buffer_try_detach(b)) {
			stat_inc(c, ST_EVICT_REUSE);
			return b;
		}
	}
	return NULL;
}

void evict_old(struct bufio_client *c, uint32_t now, unsigned max_age)
{
	uint64_t retain = retain_buffers(c);
	struct bufio_buffer *b = c->lru[LIST_CLEAN];
	uint64_t n = c->n_buffers[LIST_CLEAN];
	/* One turn of the ring; each step fetches the successor first since
	 * an evicted buffer leaves the ring. */
	while (n-- && b && cached_buffers(c) > retain && cached_buffers(c) > c->minimum_buffers) {
		struct bufio_buffer *next = b->lru_next;
		uint32_t last = atomic_load_explicit(&b->last_accessed, memory_order_relaxed);
		if (now - last >= max_age)
			buffer_try_evict(b, ST_EVICT_AGE);
		b = next == b ? NULL : next;
	}
}

void bufio_drop_clean(struct bufio_client *c)
{
	pthread_mutex_lock(&c->lock);
	uint64_t n = c->n_buffers[LIST_CLEAN];
	struct bufio_buffer *b = c->lru[LIST_CLEAN];
	while (n-- && b) {
		struct bufio_buffer *next = b->lru_next;
		buffer_try_evict(b, ST_EVICT_FORGET);
		b = next == b ? NULL : next;
	}
	pthread_mutex_unlock(&c->lock);
}
