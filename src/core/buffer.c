/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Buffer memory and membership: the descriptor slab, data allocation under
 * the global budget with the reserve for forward progress, the CLOCK rings
 * and the hold count protocol that decides who frees a buffer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SLAB_CHUNK (64u << 10)

int slab_init(struct slab *s, size_t obj_size)
{
	s->obj_size = (obj_size + 15) & ~(size_t)15;
	s->chunks = NULL;
	s->free_list = NULL;
	return pthread_mutex_init(&s->lock, NULL) ? -ENOMEM : 0;
}

void slab_destroy(struct slab *s)
{
	void *ch = s->chunks;
	while (ch) {
		void *next = *(void **)ch;
		free(ch);
		ch = next;
	}
	pthread_mutex_destroy(&s->lock);
}

/* Descriptors are never returned to the system before the client goes:
 * they are small, and keeping them lets waiters touch a freed buffer's
 * futex word safely. */
static void *slab_alloc(struct slab *s)
{
	pthread_mutex_lock(&s->lock);
	if (!s->free_list) {
		size_t per = (SLAB_CHUNK - 16) / s->obj_size;
		if (per < 1)
			per = 1;
		char *ch = malloc(16 + per * s->obj_size);
		if (!ch) {
			pthread_mutex_unlock(&s->lock);
			return NULL;
		}
		*(void **)ch = s->chunks;
		s->chunks = ch;
		for (size_t i = 0; i < per; i++) {
			void *o = ch + 16 + i * s->obj_size;
			*(void **)o = s->free_list;
			s->free_list = o;
		}
	}
	void *o = s->free_list;
	s->free_list = *(void **)o;
	pthread_mutex_unlock(&s->lock);
	return o;
}

static void slab_free(struct slab *s, void *o)
{
	pthread_mutex_lock(&s->lock);
	*(void **)o = s->free_list;
	s->free_list = o;
	pthread_mutex_unlock(&s->lock);
}

bool alloc_should_fail(void)
{
	long n = atomic_load(&bufio_g.alloc_fail_inject);
	while (n != 0) {
		if (n < 0)
			return true;
		if (atomic_compare_exchange_weak(&bufio_g.alloc_fail_inject, &n, n - 1))
			return true;
	}
	return false;
}

struct bufio_buffer *buffer_wrap(struct bufio_client *c, void *data)
{
	struct bufio_buffer *b = slab_alloc(&c->slab);
	if (!b)
		return NULL;
	memset(b, 0, sizeof(*b));
	b->data = data;
	b->c = c;
	b->list = LIST_NONE;
	global_account(c->charge);
	return b;
}

struct bufio_buffer *buffer_new_mem(struct bufio_client *c)
{
	if (alloc_should_fail())
		return NULL;
	void *data = data_get(&c->data);
	if (!data)
		return NULL;
	struct bufio_buffer *b = buffer_wrap(c, data);
	if (!b)
		data_put(&c->data, data);
	return b;
}

void buffer_destroy_mem(struct bufio_buffer *b)
{
	struct bufio_client *c = b->c;
	data_put(&c->data, b->data);
	global_account(-(int64_t)c->charge);
	slab_free(&c->slab, b);
}

void *bufio_alloc_block_data(struct bufio_client *c)
{
	void *p = data_get(&c->data);
	if (!p)
		errno = ENOMEM;
	return p;
}

void bufio_free_block_data(struct bufio_client *c, void *mem)
{
	if (mem)
		data_put(&c->data, mem);
}

static void reset_buffer(struct bufio_buffer *b)
{
	b->hash_next = NULL;
	b->lru_next = b->lru_prev = NULL;
	atomic_store(&b->hold, 0);
	atomic_store(&b->state, 0);
	b->dirty_start = b->dirty_end = 0;
	b->io_error = 0;
	b->list = LIST_NONE;
	atomic_store(&b->accessed, 0);
}

/*
 * Over budget: reuse one of our own clean buffers. Far over budget with
 * nothing clean, write our dirty buffers and wait for one to come clean, so
 * a fast writer cannot grow the cache without bound; the wait always ends
 * because it only happens while our writes are in flight.
 */
static struct bufio_buffer *reuse_or_throttle(struct bufio_client *c, struct stat_slot *slot)
{
	bool wrote = false;
	pthread_mutex_lock(&c->lock);
	for (;;) {
		struct bufio_buffer *b = reuse_batch(c, slot);
		if (b || !global_far_over_budget()) {
			pthread_mutex_unlock(&c->lock);
			return b;
		}
		if (!c->n_buffers[LIST_WRITING]) {
			if (wrote || c->n_buffers[LIST_DIRTY] == 0)
				break;
			pthread_mutex_unlock(&c->lock);
			writeback_async(c, true);
			wrote = true;
			pthread_mutex_lock(&c->lock);
			continue;
		}
		free_wait(c);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/*
 * Allocation ladder, like dm-bufio's __alloc_buffer_wait: when over budget
 * reuse an unclaimed clean buffer of our own; else ask the system; when that
 * fails take a reserved buffer, then any unclaimed one, else sleep until a
 * buffer is released or freed. @may_wait false (prefetch) stops at the
 * system allocation.
 */
struct bufio_buffer *buffer_alloc(struct bufio_client *c, bool may_wait)
{
	struct stat_slot *slot = own_slot(c);
	struct bufio_buffer *b = stash_pop(slot);

	if (b)
		goto got;
	if (global_over_budget()) {
		/* Reusing one of our own keeps the memory as it is; only when
		 * there is none must the worker free memory elsewhere. */
		b = reuse_or_throttle(c, slot);
		if (b)
			goto got;
		global_kick(KICK_BUDGET);
	}
	b = new_batch(c, slot);
	if (b)
		goto got;
	stat_inc(c, ST_ALLOC_FAILURES);
	if (!may_wait)
		return NULL;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		if (c->reserve) {
			b = c->reserve;
			c->reserve = b->hash_next;
			c->need_reserved++;
			stat_inc(c, ST_RESERVE_USED);
			break;
		}
		b = reuse_unclaimed(c);
		if (b)
			break;
		b = buffer_new_mem(c);
		if (b)
			break;
		free_wait(c);
	}
	pthread_mutex_unlock(&c->lock);
got:
	if (slot && slot->want)
		slot->want--;
	reset_buffer(b);
	return b;
}

/* Give a buffer back: refill the reserve first, else return it to the system. */
void buffer_free(struct bufio_buffer *b)
{
	struct bufio_client *c = b->c;
	if (c->need_reserved) {
		reset_buffer(b);
		b->hash_next = c->reserve;
		c->reserve = b;
		c->need_reserved--;
	} else {
		buffer_destroy_mem(b);
	}
	if (atomic_load(&c->free_waiters))
		pthread_cond_broadcast(&c->free_cond);
}

void lru_link(struct bufio_buffer *b, int list)
{
	struct bufio_client *c = b->c;
	struct bufio_buffer *head = c->lru[list];
	/* Insert just behind the hand: a new buffer is the last to be
	 * considered by the CLOCK sweep, like the tail of an LRU. */
	if (!head) {
		b->lru_next = b->lru_prev = b;
		c->lru[list] = b;
	} else {
		b->lru_next = head;
		b->lru_prev = head->lru_prev;
		head->lru_prev->lru_next = b;
		head->lru_prev = b;
	}
	b->list = (uint8_t)list;
	c->n_buffers[list]++;
}

void lru_unlink(struct bufio_buffer *b)
{
	struct bufio_client *c = b->c;
	int list = b->list;
	if (list == LIST_NONE)
		return;
	if (b->lru_next == b) {
		c->lru[list] = NULL;
	} else {
		b->lru_prev->lru_next = b->lru_next;
		b->lru_next->lru_prev = b->lru_prev;
		if (c->lru[list] == b)
			c->lru[list] = b->lru_next;
	}
	b->lru_next = b->lru_prev = NULL;
	b->list = LIST_NONE;
	c->n_buffers[list]--;
}

void lru_relink(struct bufio_buffer *b, int list)
{
	if (b->list == list)
		return;
	lru_unlink(b);
	lru_link(b, list);
}

bool buffer_evictable(struct bufio_buffer *b)
{
	return hold_count(b) == 0 && !(atomic_load(&b->state) & (B_READING | B_WRITING | B_DIRTY));
}

void buffer_unhash(struct bufio_buffer *b)
{
	struct shard *s = index_shard(b->c, b->block);
	shard_wrlock(s);
	index_remove(s, b);
	shard_wrunlock(s);
	lru_unlink(b);
}

bool buffer_try_detach(struct bufio_buffer *b)
{
	struct shard *s = index_shard(b->c, b->block);
	/* The hold is checked under the shard write lock: the hit path takes
	 * its hold under the read lock, so nobody can grab it meanwhile. */
	shard_wrlock(s);
	if (!buffer_evictable(b)) {
		shard_wrunlock(s);
		return false;
	}
	index_remove(s, b);
	shard_wrunlock(s);
	lru_unlink(b);
	return true;
}

bool buffer_try_evict(struct bufio_buffer *b, enum stat_id reason)
{
	if (!buffer_try_detach(b))
		return false;
	stat_inc(b->c, reason);
	buffer_free(b);
	return true;
}

void buffer_hold(struct bufio_buffer *b)
{
	/* 0 -> 1 transitions feed the buffers_held gauge; per-thread slots
	 * keep that off any shared cache line. */
	if ((atomic_fetch_add_explicit(&b->hold, 1, memory_order_acquire) & HOLD_MASK) == 0)
		stat_inc(b->c, ST_HELD);
}

void buffer_get_hold(struct bufio_buffer *b)
{
	buffer_hold(b);
	if (!atomic_load_explicit(&b->accessed, memory_order_relaxed))
		atomic_store_explicit(&b->accessed, 1, memory_order_relaxed);
}

void free_wait(struct bufio_client *c)
{
	atomic_fetch_add(&c->free_waiters, 1);
	sleep_begin();
	pthread_cond_wait(&c->free_cond, &c->lock);
	sleep_end();
	atomic_fetch_sub(&c->free_waiters, 1);
}

void wake_free_waiters(struct bufio_client *c)
{
	if (atomic_load(&c->free_waiters)) {
		pthread_mutex_lock(&c->lock);
		pthread_cond_broadcast(&c->free_cond);
		pthread_mutex_unlock(&c->lock);
	}
}

void buffer_put(struct bufio_buffer *b)
{
	struct bufio_client *c = b->c;
	uint32_t now = bufio_now();
	if (atomic_load_explicit(&b->last_accessed, memory_order_relaxed) != now)
		atomic_store_explicit(&b->last_accessed, now, memory_order_relaxed);
	unsigned old = atomic_fetch_sub_explicit(&b->hold, 1, memory_order_acq_rel);
	if ((old & HOLD_MASK) != 1)
		return;
	/* Unheld now: unless dead, @b may be evicted and reused at once, so
	 * only @c and @old are used from here on. */
	stat_add(c, ST_HELD, -1);
	if (old & HOLD_DEAD) {
		/* Unhashed while held (failed read): nobody else can find it. */
		pthread_mutex_lock(&c->lock);
		buffer_free(b);
		pthread_mutex_unlock(&c->lock);
		return;
	}
	wake_free_waiters(c);
}
