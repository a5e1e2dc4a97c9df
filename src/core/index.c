/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The block index: NSHARDS chained hash tables, each under its own
 * reader/writer lock, so lookups of different blocks never contend on one
 * client-wide lock (the upstream 6.4+ design, with hashes for trees).
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

#define INITIAL_BUCKETS 16
/* Grow when the average chain exceeds this: keeps the index share of the
 * per-buffer metadata at 4-8 bytes with chains short enough to stay fast. */
#define MAX_LOAD 1

static inline uint64_t hash_block(uint64_t block)
{
	return block * 0x9E3779B97F4A7C15ull;
}

struct shard *index_shard(struct bufio_client *c, uint64_t block)
{
	return &c->shards[(hash_block(block) >> 58) & (NSHARDS - 1)];
}

static inline uint32_t bucket_of(struct shard *s, uint64_t block)
{
	return (uint32_t)(hash_block(block) >> 20) & s->mask;
}

/* Twice the CPUs, rounded up to a power of two, at most NRD. */
static unsigned stripes(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned n = 1;

	while (n < NRD && (long)n < 2 * cpus)
		n <<= 1;
	return n;
}

int index_init(struct bufio_client *c)
{
	unsigned nrd = stripes();

	for (unsigned i = 0; i < NSHARDS; i++) {
		struct shard *s = &c->shards[i];
		s->buckets = calloc(INITIAL_BUCKETS, sizeof(struct bufio_buffer *));
		if (!s->buckets) {
			while (i--)
				free(c->shards[i].buckets);
			return -ENOMEM;
		}
		s->mask = INITIAL_BUCKETS - 1;
		s->count = 0;
		s->idx = i;
		s->nrd = nrd;
		s->rd = c->rd;
		for (unsigned j = 0; j < NRD; j++)
			atomic_init(&c->rd[j].l[i], 0);
	}
	return 0;
}

void index_destroy(struct bufio_client *c)
{
	for (unsigned i = 0; i < NSHARDS; i++) {
		free(c->shards[i].buckets);
	}
}

struct bufio_buffer *index_find(struct shard *s, uint64_t block)
{
	struct bufio_buffer *b = s->buckets[bucket_of(s, block)];
	while (b && b->block != block)
		b = b->hash_next;
	return b;
}

static void grow(struct shard *s)
{
	uint32_t n = (s->mask + 1) * 2;
	struct bufio_buffer **nb = calloc(n, sizeof(struct bufio_buffer *));
	if (!nb)
		return; /* longer chains, still correct */
	uint32_t old_n = s->mask + 1;
	struct bufio_buffer **ob = s->buckets;
	s->buckets = nb;
	s->mask = n - 1;
	for (uint32_t i = 0; i < old_n; i++) {
		struct bufio_buffer *b = ob[i];
		while (b) {
			struct bufio_buffer *next = b->hash_next;
			uint32_t k = bucket_of(s, b->block);
			b->hash_next = nb[k];
			nb[k] = b;
			b = next;
		}
	}
	free(ob);
}

void index_insert(struct shard *s, struct bufio_buffer *b)
{
	if (s->count + 1 > (uint64_t)(s->mask + 1) * MAX_LOAD)
		grow(s);
	uint32_t k = bucket_of(s, b->block);
	b->hash_next = s->buckets[k];
	s->buckets[k] = b;
	s->count++;
}

void index_remove(struct shard *s, struct bufio_buffer *b)
{
	struct bufio_buffer **pp = &s->buckets[bucket_of(s, b->block)];
	while (*pp && *pp != b)
		pp = &(*pp)->hash_next;
	if (*pp) {
		*pp = b->hash_next;
		s->count--;
	}
	b->hash_next = NULL;
}

void shard_wrlock(struct shard *s)
{
	/* Always in stripe order, and no thread holds two reader locks, so
	 * writers and readers cannot deadlock. */
	for (unsigned j = 0; j < s->nrd; j++)
		slock_lock(&s->rd[j].l[s->idx]);
}

void shard_wrunlock(struct shard *s)
{
	for (unsigned j = s->nrd; j--;)
		slock_unlock(&s->rd[j].l[s->idx]);
}

unsigned shard_rdlock(struct shard *s)
{
	unsigned j = stat_slot_id() & (s->nrd - 1);
	slock_lock(&s->rd[j].l[s->idx]);
	return j;
}

void shard_rdunlock(struct shard *s, unsigned stripe)
{
	slock_unlock(&s->rd[stripe].l[s->idx]);
}

struct bufio_buffer *index_find_hold(struct bufio_client *c, uint64_t block)
{
	struct shard *s = index_shard(c, block);
	unsigned j = shard_rdlock(s);
	struct bufio_buffer *b = index_find(s, block);
	if (b)
		buffer_get_hold(b);
	shard_rdunlock(s, j);
	return b;
}
