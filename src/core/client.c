/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Client lifecycle and accessors: creating a cache over a backend with its
 * reserve, tearing it down after a final write-back, and the small getters
 * and per-client tunables.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* io descriptors kept back for write-back when malloc fails */
#define IO_RESERVE 32

static int fill_reserve(struct bufio_client *c, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct bufio_buffer *b = buffer_alloc(c, false);
		if (!b)
			return -ENOMEM;
		b->hash_next = c->reserve;
		c->reserve = b;
	}
	return 0;
}

static void free_reserve(struct bufio_client *c)
{
	while (c->reserve) {
		struct bufio_buffer *b = c->reserve;
		c->reserve = b->hash_next;
		buffer_destroy_mem(b);
	}
}

static void recompute_size(struct bufio_client *c)
{
	uint64_t size = bufio_backend_size(c->be);
	size = size > c->start_byte ? size - c->start_byte : 0;
	c->n_blocks = size / c->block_size;
}

static bool valid_block_size(struct bufio_backend *be, unsigned block_size)
{
	unsigned align = bufio_backend_alignment(be);
	return block_size && block_size % 512 == 0 && block_size <= BUFIO_MAX_BLOCK_SIZE &&
	       block_size % align == 0;
}

static int client_init(struct bufio_client *c, unsigned reserved)
{
	int r = index_init(c);
	if (r)
		return r;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->free_cond, NULL);
	r = slab_init(&c->slab, sizeof(struct bufio_buffer) + c->aux_size);
	if (!r)
		r = data_init(&c->data, c->block_size, c->data_align);
	c->charge = (unsigned)(c->data.stride + c->slab.obj_size + sizeof(void *));
	if (!r)
		r = io_reserve_init(c, IO_RESERVE);
	if (!r)
		r = fill_reserve(c, reserved ? reserved : 1);
	return r;
}

static void client_fini(struct bufio_client *c)
{
	free_reserve(c);
	io_reserve_destroy(c);
	slab_destroy(&c->slab);
	data_destroy(&c->data);
	pthread_cond_destroy(&c->free_cond);
	pthread_mutex_destroy(&c->lock);
	index_destroy(c);
	free(c);
}

struct bufio_client *bufio_client_create(struct bufio_backend *be, unsigned block_size,
                                         unsigned reserved_buffers, unsigned aux_size,
                                         void (*alloc_callback)(struct bufio_buffer *),
                                         void (*write_callback)(struct bufio_buffer *))
{
	if (!be || !valid_block_size(be, block_size) || aux_size > (1u << 20)) {
		errno = EINVAL;
		return NULL;
	}
	struct bufio_client *c = aligned_alloc(64, (sizeof(*c) + 63) & ~(size_t)63);
	if (!c) {
		errno = ENOMEM;
		return NULL;
	}
	memset(c, 0, sizeof(*c));
	c->be = be;
	c->block_size = block_size;
	c->aux_size = aux_size;
	unsigned align = bufio_backend_alignment(be);
	c->data_align = align > 64 ? align : 64;
	if (block_size >= 4096 && c->data_align < 4096)
		c->data_align = 4096;
	c->alloc_callback = alloc_callback;
	c->write_callback = write_callback;
	c->minimum_buffers = BUFIO_MIN_BUFFERS;
	atomic_store(&c->writeback_ratio, BUFIO_WRITEBACK_RATIO);
	atomic_store(&c->dirty_expire, BUFIO_DEFAULT_DIRTY_EXPIRE);
	c->max_write_failures = BUFIO_MAX_WRITE_FAILURES;
	for (int l = 0; l < NR_LISTS; l++)
		c->lru[l] = NULL;
	recompute_size(c);
	int r = client_init(c, reserved_buffers);
	if (!r)
		r = global_register(c);
	if (r) {
		client_fini(c);
		errno = -r;
		return NULL;
	}
	return c;
}

/* Wait until no read (prefetches included) or write is in flight. */
static void wait_all_io(struct bufio_client *c)
{
	for (;;) {
		struct bufio_buffer *busy = NULL;
		pthread_mutex_lock(&c->lock);
		for (int l = 0; l < NR_LISTS && !busy; l++) {
			struct bufio_buffer *head = c->lru[l], *b = head;
			while (b && !busy) {
				if (atomic_load(&b->state) & B_IO)
					busy = b;
				b = b->lru_next == head ? NULL : b->lru_next;
			}
		}
		if (busy)
			buffer_hold(busy);
		pthread_mutex_unlock(&c->lock);
		if (!busy)
			break;
		buffer_wait_clear(busy, B_IO);
		buffer_put(busy);
	}
	/* and until their completions have let go of the client */
	completions_wait(c);
}

/* Free every buffer; held ones are reported and left alone. */
static void drop_all(struct bufio_client *c)
{
	pthread_mutex_lock(&c->lock);
	for (int l = 0; l < NR_LISTS; l++) {
		while (c->lru[l]) {
			struct bufio_buffer *b = c->lru[l];
			if (hold_count(b) || (atomic_load(&b->state) & B_IO)) {
				fprintf(stderr,
				        "bufio: client destroyed with block %llu still held "
				        "(hold count %u); leaking it\n",
				        (unsigned long long)b->block, hold_count(b));
				atomic_fetch_add(&bufio_g.leaked, 1);
				lru_unlink(b);
				continue;
			}
			atomic_fetch_and(&b->state, ~B_DIRTY);
			buffer_unhash(b);
			buffer_destroy_mem(b);
		}
	}
	stash_drain(c);
	pthread_mutex_unlock(&c->lock);
}

void bufio_client_destroy(struct bufio_client *c)
{
	if (!c)
		return;
	/* Off the worker's list first, so no background pass starts I/O. */
	global_unregister(c);
	int r = bufio_write_dirty_buffers(c);
	if (r < 0)
		fprintf(stderr, "bufio: final write-back of %s failed: %s; dirty data lost\n",
		        c->be->path ? c->be->path : "backend", strerror(-r));
	wait_all_io(c);
	drop_all(c);
	if (atomic_load(&bufio_g.leaked)) {
		/* A leaked buffer's descriptor lives in the slab: keep the slab
		 * (and the client) so the holder's pointer stays valid. */
		pthread_mutex_lock(&c->lock);
		bool leak = false;
		for (int i = 0; i < NSHARDS && !leak; i++)
			leak = c->shards[i].count != 0;
		pthread_mutex_unlock(&c->lock);
		if (leak)
			return;
	}
	client_fini(c);
}

void bufio_set_sector_offset(struct bufio_client *c, uint64_t start_sector)
{
	c->start_byte = start_sector * 512;
	recompute_size(c);
}

void bufio_set_minimum_buffers(struct bufio_client *c, unsigned n)
{
	pthread_mutex_lock(&c->lock);
	c->minimum_buffers = n;
	pthread_mutex_unlock(&c->lock);
}

unsigned bufio_get_block_size(struct bufio_client *c)
{
	return c->block_size;
}

uint64_t bufio_get_device_size(struct bufio_client *c)
{
	return c->n_blocks;
}

uint64_t bufio_get_block_number(struct bufio_buffer *b)
{
	return b->block;
}

void *bufio_get_block_data(struct bufio_buffer *b)
{
	return b->data;
}

void *bufio_get_aux_data(struct bufio_buffer *b)
{
	return b + 1;
}

struct bufio_client *bufio_get_client(struct bufio_buffer *b)
{
	return b->c;
}

struct bufio_backend *bufio_get_backend(struct bufio_client *c)
{
	return c->be;
}

int bufio_set_writeback_ratio(struct bufio_client *c, unsigned ratio)
{
	if (ratio > 1000)
		return -EINVAL;
	atomic_store(&c->writeback_ratio, ratio);
	pthread_mutex_lock(&c->lock);
	bool kick = writeback_needed(c);
	pthread_mutex_unlock(&c->lock);
	if (kick)
		global_kick(KICK_WRITEBACK);
	return 0;
}

unsigned bufio_get_writeback_ratio(struct bufio_client *c)
{
	return atomic_load(&c->writeback_ratio);
}

int bufio_set_dirty_expire(struct bufio_client *c, unsigned seconds)
{
	if (seconds > 86400)
		return -EINVAL;
	atomic_store(&c->dirty_expire, seconds);
	global_kick(KICK_WRITEBACK);
	return 0;
}

unsigned bufio_get_dirty_expire(struct bufio_client *c)
{
	return atomic_load(&c->dirty_expire);
}

size_t bufio_metadata_per_buffer(struct bufio_client *c)
{
	/* Descriptor + aux from the slab (no malloc header), plus the index
	 * buckets at their current load. */
	uint64_t buckets = 0, count = 0;
	for (int i = 0; i < NSHARDS; i++) {
		unsigned j = shard_rdlock(&c->shards[i]);
		buckets += c->shards[i].mask + 1;
		count += c->shards[i].count;
		shard_rdunlock(&c->shards[i], j);
	}
	size_t per = c->slab.obj_size;
	if (count)
		per += (size_t)(buckets * sizeof(void *) / count);
	return per;
}
