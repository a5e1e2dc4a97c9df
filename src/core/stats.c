/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Statistics: counters live in per-thread slots (one cache line each) so the
 * hit path never bounces a shared line between cores; readers sum the slots.
 */
#include <string.h>
#include <time.h>

#include "internal.h"

static atomic_uint next_slot;
static _Thread_local int my_slot = -1;

unsigned stat_slot_id(void)
{
	if (__builtin_expect(my_slot < 0, 0))
		my_slot = (int)(atomic_fetch_add(&next_slot, 1) % NSLOTS);
	return (unsigned)my_slot;
}

uint32_t bufio_now(void)
{
	struct timespec ts;
	/* The coarse clock is a vDSO read of a jiffy-granular value: cheap
	 * enough for every release, and seconds are all the aging needs. */
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint32_t)ts.tv_sec;
}

static int64_t stat_sum(struct bufio_client *c, enum stat_id id)
{
	int64_t sum = 0;
	for (unsigned i = 0; i < NSLOTS; i++)
		sum += atomic_load_explicit(&c->slots[i].v[id], memory_order_relaxed);
	return sum;
}

static uint64_t nonneg(int64_t v)
{
	return v < 0 ? 0 : (uint64_t)v;
}

void bufio_get_stats(struct bufio_client *c, struct bufio_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->hits = nonneg(stat_sum(c, ST_HITS));
	out->misses = nonneg(stat_sum(c, ST_MISSES));
	out->reads = nonneg(stat_sum(c, ST_READS));
	out->read_bytes = nonneg(stat_sum(c, ST_READ_BYTES));
	out->writes = nonneg(stat_sum(c, ST_WRITES));
	out->write_bytes = nonneg(stat_sum(c, ST_WRITE_BYTES));
	out->writebacks = nonneg(stat_sum(c, ST_WRITEBACKS));
	out->flushes = nonneg(stat_sum(c, ST_FLUSHES));
	out->discards = nonneg(stat_sum(c, ST_DISCARDS));
	out->prefetches = nonneg(stat_sum(c, ST_PREFETCHES));
	out->read_errors = nonneg(stat_sum(c, ST_READ_ERRORS));
	out->write_errors = nonneg(stat_sum(c, ST_WRITE_ERRORS));
	out->evict_budget = nonneg(stat_sum(c, ST_EVICT_BUDGET));
	out->evict_age = nonneg(stat_sum(c, ST_EVICT_AGE));
	out->evict_pressure = nonneg(stat_sum(c, ST_EVICT_PRESSURE));
	out->evict_forget = nonneg(stat_sum(c, ST_EVICT_FORGET));
	out->evict_reuse = nonneg(stat_sum(c, ST_EVICT_REUSE));
	out->alloc_failures = nonneg(stat_sum(c, ST_ALLOC_FAILURES));
	out->reserve_used = nonneg(stat_sum(c, ST_RESERVE_USED));
	out->buffers_held = nonneg(stat_sum(c, ST_HELD));

	pthread_mutex_lock(&c->lock);
	out->buffers_clean = c->n_buffers[LIST_CLEAN];
	out->buffers_dirty = c->n_buffers[LIST_DIRTY];
	out->buffers_writing = c->n_writing;
	pthread_mutex_unlock(&c->lock);
	out->buffers_reading = __atomic_load_n(&c->n_reading, __ATOMIC_RELAXED);
	out->bytes_cached = (out->buffers_clean + out->buffers_dirty) * c->block_size;
}

void bufio_clear_stats(struct bufio_client *c)
{
	/* Gauges (ST_HELD) are kept; every other counter restarts from 0. A
	 * racing increment may survive the reset, which is harmless. */
	for (unsigned i = 0; i < NSLOTS; i++)
		for (unsigned id = 0; id < ST_COUNT; id++)
			if (id != ST_HELD)
				atomic_store_explicit(&c->slots[i].v[id], 0, memory_order_relaxed);
}
