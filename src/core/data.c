/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Memory for block data. Blocks under 1 MiB come from aligned chunks mapped
 * from the system and carved into equal pieces, like a kernel slab: aligned
 * malloc would leave a free fragment beside every block and double the
 * resident size. Empty chunks go back to the system; bigger blocks get a
 * mapping each.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

#define BIG_BLOCK   (1u << 20)
#define MIN_CHUNK   (2u << 20)
#define CHUNK_MULTI 32 /* at least this many blocks per chunk */
#define HUGE_AFTER  8  /* chunks held before new ones get huge pages */

/* Lives in the chunk's first piece(s); pieces follow. */
struct chunk {
	struct chunk *next, *prev; /* chunks with free pieces */
	void *free;                /* freed pieces, linked through their first word */
	size_t bump;               /* offset of the first never-used piece */
	unsigned used;
};

static size_t chunk_size(size_t block_size)
{
	size_t want = block_size * CHUNK_MULTI, sz = MIN_CHUNK;
	while (sz < want)
		sz <<= 1;
	return sz;
}

int data_init(struct data_alloc *d, unsigned block_size, unsigned align)
{
	memset(d, 0, sizeof(*d));
	d->big = block_size >= BIG_BLOCK;
	d->block_size = block_size;
	d->stride = ((size_t)block_size + align - 1) / align * align;
	d->chunk = chunk_size(d->stride);
	d->first = (sizeof(struct chunk) + align - 1) / align * align;
	return pthread_mutex_init(&d->lock, NULL) ? -ENOMEM : 0;
}

/* A chunk-aligned mapping: map twice the size and trim both ends. */
static struct chunk *chunk_map(struct data_alloc *d)
{
	size_t sz = d->chunk;
	char *p = mmap(NULL, 2 * sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	char *base = (char *)(((uintptr_t)p + sz - 1) & ~(uintptr_t)(sz - 1));
	if (base > p)
		munmap(p, (size_t)(base - p));
	munmap(base + sz, (size_t)(p + 2 * sz - (base + sz)));
	/* Chunks are 2 MiB-aligned multiples of 2 MiB: backed by huge pages,
	 * a growing cache takes one fault per chunk instead of 512 (each a
	 * VM exit on a fresh VM). A huge page is resident whole, untouched
	 * pieces included, so small caches keep small pages: that one chunk
	 * is then a small share of what the allocator holds. It can fail
	 * (no THP in this kernel): small pages work as well. */
	if (d->nchunks >= HUGE_AFTER)
		(void)madvise(base, sz, MADV_HUGEPAGE);
	struct chunk *ch = (struct chunk *)base;
	ch->next = ch->prev = NULL;
	ch->free = NULL;
	ch->bump = d->first;
	ch->used = 0;
	return ch;
}

static void partial_add(struct data_alloc *d, struct chunk *ch)
{
	ch->prev = NULL;
	ch->next = d->partial;
	if (d->partial)
		d->partial->prev = ch;
	d->partial = ch;
}

static void partial_del(struct data_alloc *d, struct chunk *ch)
{
	if (ch->prev)
		ch->prev->next = ch->next;
	else
		d->partial = ch->next;
	if (ch->next)
		ch->next->prev = ch->prev;
	ch->next = ch->prev = NULL;
}

static bool chunk_full(struct data_alloc *d, struct chunk *ch)
{
	return !ch->free && ch->bump + d->stride > d->chunk;
}

/* One piece of a chunk; @d->lock held. NULL when no chunk can be mapped. */
static void *data_get_locked(struct data_alloc *d)
{
	struct chunk *ch = d->partial;
	if (!ch) {
		ch = chunk_map(d);
		if (!ch)
			return NULL;
		partial_add(d, ch);
		d->nchunks++;
	}
	void *p;
	if (ch->free) {
		p = ch->free;
		ch->free = *(void **)p;
	} else {
		/* Untouched pieces cost no memory until first used, unless
		 * the chunk got a huge page (past HUGE_AFTER chunks): then
		 * at most one chunk per allocator is resident beyond its
		 * blocks. */
		p = (char *)ch + ch->bump;
		ch->bump += d->stride;
	}
	ch->used++;
	if (chunk_full(d, ch))
		partial_del(d, ch);
	return p;
}

void *data_get(struct data_alloc *d)
{
	if (d->big) {
		void *p = mmap(NULL, d->block_size, PROT_READ | PROT_WRITE,
		               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		return p == MAP_FAILED ? NULL : p;
	}
	pthread_mutex_lock(&d->lock);
	void *p = data_get_locked(d);
	pthread_mutex_unlock(&d->lock);
	return p;
}

unsigned data_get_many(struct data_alloc *d, void **out, unsigned n)
{
	unsigned i = 0;
	/* Blocks of 1 MiB and up are a mapping each: nothing to keep together. */
	if (d->big)
		return 0;
	pthread_mutex_lock(&d->lock);
	for (; i < n; i++)
		if (!(out[i] = data_get_locked(d)))
			break;
	pthread_mutex_unlock(&d->lock);
	return i;
}

void data_put(struct data_alloc *d, void *p)
{
	if (d->big) {
		munmap(p, d->block_size);
		return;
	}
	struct chunk *ch = (struct chunk *)((uintptr_t)p & ~(uintptr_t)(d->chunk - 1));
	pthread_mutex_lock(&d->lock);
	bool was_full = chunk_full(d, ch);
	*(void **)p = ch->free;
	ch->free = p;
	ch->used--;
	if (was_full)
		partial_add(d, ch);
	/* An empty chunk goes back, unless it is the only one with room:
	 * that keeps a steady churn from mapping and unmapping. */
	if (!ch->used && (d->partial != ch || ch->next)) {
		partial_del(d, ch);
		munmap(ch, d->chunk);
		d->nchunks--;
	}
	pthread_mutex_unlock(&d->lock);
}

void data_destroy(struct data_alloc *d)
{
	/* Every block was returned first; only empty, kept chunks remain. */
	while (d->partial) {
		struct chunk *ch = d->partial;
		partial_del(d, ch);
		munmap(ch, d->chunk);
	}
	pthread_mutex_destroy(&d->lock);
}
