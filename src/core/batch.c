/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Buffers in batches. A thread that needs a buffer takes several at once and
 * keeps the rest on its own stash: clean buffers detached for reuse when the
 * cache is over budget, fresh memory when it is under. The batch is handed
 * out in address order, so a thread that said it is about to create a run of
 * blocks (bufio_expect_new) gets neighbouring memory for them, and their
 * write-back moves in a few segments instead of one per block.
 */
#include <stdlib.h>

#include "internal.h"

/*
 * Buffers a thread takes at once, kept on its stash: clean ones detached for
 * reuse when over budget, fresh ones when under it. STASH_BATCH by default;
 * as many as the thread said it is about to create (bufio_expect_new), up to
 * STASH_MAX and a 1/STASH_SHARE of the budget (8 writers then hold at most
 * an eighth of a small cache detached).
 */
#define STASH_BATCH 8
#define STASH_MAX   256
#define STASH_SHARE 64

struct stat_slot *own_slot(struct bufio_client *c)
{
	unsigned id = stat_slot_id();
	return id < NSLOTS_OWN ? &c->slots[id] : NULL;
}

void bufio_expect_new(struct bufio_client *c, unsigned n)
{
	struct stat_slot *s = own_slot(c);
	if (!s)
		return;
	s->want = n;
	/* A run that ended early (cached blocks, an error) may leave most of
	 * its batch unused: the cache cannot see or evict it, so beyond a
	 * default batch it goes back now rather than when this thread next
	 * allocates, which an idle worker may never do. */
	if (n || s->n_stash < STASH_BATCH)
		return;
	while (s->n_stash >= STASH_BATCH)
		buffer_destroy_mem(stash_pop(s));
	wake_free_waiters(c);
}

static unsigned batch_size(const struct bufio_client *c, const struct stat_slot *s)
{
	uint64_t cap = atomic_load(&bufio_g.cache_size) / c->charge / STASH_SHARE;
	uint64_t n = cap < STASH_MAX ? cap : STASH_MAX;
	// cppcheck-suppress knownConditionTrueFalse
	if (s->want < n)
		n = s->want;
	return n > STASH_BATCH ? (unsigned)n : STASH_BATCH;
}

struct bufio_buffer *stash_pop(struct stat_slot *s)
{
	struct bufio_buffer *b = s ? s->stash : NULL;
	if (b) {
		s->stash = b->hash_next;
		s->n_stash--;
	}
	return b;
}

static int by_data(const void *x, const void *y)
{
	uintptr_t a = (uintptr_t)(*(struct bufio_buffer *const *)x)->data;
	uintptr_t b = (uintptr_t)(*(struct bufio_buffer *const *)y)->data;
	return a < b ? -1 : a > b;
}

/*
 * Stash the batch @v of @n buffers so they come off lowest data address
 * first, and take the first. Consecutive blocks then get consecutive memory
 * wherever the batch has it: a fresh batch is carved from one chunk, and a
 * reused batch is the memory of blocks that were neighbours before. Their
 * write-back and reads then move in a few segments instead of one per block
 * (a 1 MiB write of 256 scattered 4 KiB pieces took the disk of the
 * development VM 1.2-1.8 GB/s, one piece 2-5.9).
 */
static struct bufio_buffer *stash_batch(struct stat_slot *s, struct bufio_buffer **v, unsigned n)
{
	qsort(v, n, sizeof(struct bufio_buffer *), by_data);
	while (n--) {
		v[n]->hash_next = s->stash;
		s->stash = v[n];
		s->n_stash++;
	}
	return stash_pop(s);
}

/*
 * Over budget: detach a batch of clean buffers for reuse while we hold the
 * lock (a streaming writer taking the client lock and sweeping the ring per
 * block made that lock the most contended in the process). Returns the first;
 * NULL if none. Client lock held.
 */
struct bufio_buffer *reuse_batch(struct bufio_client *c, struct stat_slot *s)
{
	struct bufio_buffer *v[STASH_MAX];
	unsigned want = s ? batch_size(c, s) : 1, n = 0;
	while (n < want && (v[n] = reuse_unclaimed(c)))
		n++;
	if (!n || !s)
		return n ? v[0] : NULL;
	return stash_batch(s, v, n);
}

/*
 * Under budget: fresh buffers, a batch of them when the thread asked for one
 * and the budget has room (carved under one allocator lock, so neighbours in
 * memory). Returns the first; NULL when allocation fails.
 */
struct bufio_buffer *new_batch(struct bufio_client *c, struct stat_slot *s)
{
	uint64_t size = atomic_load(&bufio_g.cache_size), cur = atomic_load(&bufio_g.current);
	uint64_t room = cur < size ? (size - cur) / c->charge : 0;
	unsigned want = s && s->want > 1 ? batch_size(c, s) : 1;
	if (want > room)
		want = room > 1 ? (unsigned)room : 1;
	if (want == 1)
		return buffer_new_mem(c);
	if (alloc_should_fail())
		return NULL;
	void *mem[STASH_MAX];
	struct bufio_buffer *v[STASH_MAX];
	unsigned got = data_get_many(&c->data, mem, want), n = 0;
	for (unsigned i = 0; i < got; i++) {
		v[n] = buffer_wrap(c, mem[i]);
		if (v[n])
			n++;
		else
			data_put(&c->data, mem[i]);
	}
	/* None (blocks of 1 MiB and up each get their own mapping): one. */
	return n ? stash_batch(s, v, n) : buffer_new_mem(c);
}

void stash_drain(struct bufio_client *c)
{
	for (unsigned i = 0; i < NSLOTS_OWN; i++) {
		struct bufio_buffer *b;
		while ((b = stash_pop(&c->slots[i])))
			buffer_destroy_mem(b);
	}
}
