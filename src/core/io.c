/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Building and completing backend requests for buffers: io descriptors (with
 * a small per-client reserve so write-back never stalls on malloc) and the
 * read path's submission and completion.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

int io_reserve_init(struct bufio_client *c, unsigned n)
{
	pthread_mutex_init(&c->io_lock, NULL);
	pthread_cond_init(&c->io_cond, NULL);
	c->io_reserve = NULL;
	struct core_io *ios = calloc(n, sizeof(*ios));
	if (!ios)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		ios[i].io.next = c->io_reserve;
		c->io_reserve = &ios[i].io;
	}
	c->io_reserve_mem = ios;
	c->io_reserve_n = n;
	return 0;
}

void io_reserve_destroy(struct bufio_client *c)
{
	free(c->io_reserve_mem);
	pthread_mutex_destroy(&c->io_lock);
	pthread_cond_destroy(&c->io_cond);
}

static bool from_reserve(struct bufio_client *c, struct bufio_io *io)
{
	struct core_io *cio = (struct core_io *)io;
	return cio >= c->io_reserve_mem && cio < c->io_reserve_mem + c->io_reserve_n;
}

struct bufio_io *io_alloc(struct bufio_client *c, bool may_wait)
{
	struct bufio_io *io = alloc_should_fail() ? NULL : malloc(sizeof(struct core_io));
	if (io)
		return io;
	pthread_mutex_lock(&c->io_lock);
	/* Reserve descriptors are only ever taken by ios in flight, so one
	 * comes back when any of them completes. */
	while (!c->io_reserve && may_wait) {
		sleep_begin();
		pthread_cond_wait(&c->io_cond, &c->io_lock);
		sleep_end();
	}
	io = c->io_reserve;
	if (io)
		c->io_reserve = io->next;
	pthread_mutex_unlock(&c->io_lock);
	return io;
}

void io_free(struct bufio_client *c, struct bufio_io *io)
{
	if (!from_reserve(c, io)) {
		free(io);
		return;
	}
	pthread_mutex_lock(&c->io_lock);
	io->next = c->io_reserve;
	c->io_reserve = io;
	pthread_cond_signal(&c->io_cond);
	pthread_mutex_unlock(&c->io_lock);
}

uint64_t block_to_byte(struct bufio_client *c, uint64_t block)
{
	return c->start_byte + block * (uint64_t)c->block_size;
}

/* A failed read must not stay cached: unhash it so the next reader retries,
 * and let the last holder free it. */
static void read_failed(struct bufio_buffer *b, int res)
{
	struct bufio_client *c = b->c;
	b->io_error = (int16_t)res;
	stat_inc(c, ST_READ_ERRORS);
	pthread_mutex_lock(&c->lock);
	buffer_unhash(b);
	atomic_fetch_or(&b->hold, HOLD_DEAD);
	pthread_mutex_unlock(&c->lock);
}

static void read_done(struct bufio_io *io, int res)
{
	struct bufio_buffer *b = io->private;
	struct bufio_client *c = b->c;
	io_free(c, io);
	__atomic_fetch_sub(&c->n_reading, 1, __ATOMIC_RELAXED);
	if (res < 0) {
		/* Our own hold keeps @b until the waiters have seen the error;
		 * the last one to let go frees it. */
		buffer_hold(b);
		read_failed(b, res);
		buffer_clear_wake(b, B_READING);
		buffer_put(b);
		completion_end(c);
		return;
	}
	/* In flight, @b could not be evicted; once the bit is clear it may
	 * go at any moment, so it is not touched afterwards. */
	buffer_clear_wake(b, B_READING);
	wake_free_waiters(c);
	completion_end(c);
}

void read_prepare(struct bufio_buffer *b, struct bufio_io *io, struct bufio_plug *plug)
{
	struct bufio_client *c = b->c;
	io->op = BUFIO_OP_READ;
	io->buf = b->data;
	io->offset = block_to_byte(c, b->block);
	io->len = c->block_size;
	io->done = read_done;
	io->private = b;
	completion_begin(c);
	__atomic_fetch_add(&c->n_reading, 1, __ATOMIC_RELAXED);
	stat_inc(c, ST_READS);
	stat_add(c, ST_READ_BYTES, c->block_size);
	bufio_plug_add(plug, io);
}
