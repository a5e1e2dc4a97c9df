/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Statistics: counters live in per-thread slots (one cache line each) so the
 * hit path never bounces a shared line between cores; readers sum the slots.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "internal.h"

_Thread_local int bufio_my_slot = -1;

static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t slot_used; /* bitmap of owned slots in use */
static atomic_uint shared_next;
static pthread_key_t slot_key;
static pthread_once_t slot_once = PTHREAD_ONCE_INIT;

static void slot_release(void *p)
{
	unsigned slot = (unsigned)(uintptr_t)p - 1;
	pthread_mutex_lock(&slot_lock);
	slot_used &= ~(1ull << slot);
	pthread_mutex_unlock(&slot_lock);
}

static void slot_init(void)
{
	pthread_key_create(&slot_key, slot_release);
}

unsigned stat_slot_assign(void)
{
	pthread_once(&slot_once, slot_init);
	int slot = -1;
	pthread_mutex_lock(&slot_lock);
	for (unsigned i = 0; i < NSLOTS_OWN && slot < 0; i++)
		if (!(slot_used & (1ull << i))) {
			slot_used |= 1ull << i;
			slot = (int)i;
		}
	pthread_mutex_unlock(&slot_lock);
	if (slot >= 0)
		/* Returned when the thread exits; the counts stay in it. */
		pthread_setspecific(slot_key, (void *)(uintptr_t)(slot + 1));
	else
		slot =
		    NSLOTS_OWN + (int)(atomic_fetch_add(&shared_next, 1) % (NSLOTS - NSLOTS_OWN));
	bufio_my_slot = slot;
	return (unsigned)slot;
}

uint32_t bufio_now(void)
{
	struct timespec ts;
	/* The coarse clock is a vDSO read of a jiffy-granular value: cheap
	 * enough for every release, and seconds are all the aging needs. */
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint32_t)ts.tv_sec;
}

uint64_t bufio_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
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

/* A counter since the last clear: clearing keeps a baseline instead of
 * zeroing slots, which their owners update without atomics. */
static uint64_t counter(struct bufio_client *c, enum stat_id id)
{
	return nonneg(stat_sum(c, id) - __atomic_load_n(&c->stat_base[id], __ATOMIC_RELAXED));
}

void bufio_get_stats(struct bufio_client *c, struct bufio_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->hits = counter(c, ST_HITS);
	out->misses = counter(c, ST_MISSES);
	out->reads = counter(c, ST_READS);
	out->read_bytes = counter(c, ST_READ_BYTES);
	out->writes = counter(c, ST_WRITES);
	out->write_bytes = counter(c, ST_WRITE_BYTES);
	out->writebacks = counter(c, ST_WRITEBACKS);
	out->flushes = counter(c, ST_FLUSHES);
	out->discards = counter(c, ST_DISCARDS);
	out->prefetches = counter(c, ST_PREFETCHES);
	out->read_errors = counter(c, ST_READ_ERRORS);
	out->write_errors = counter(c, ST_WRITE_ERRORS);
	out->evict_budget = counter(c, ST_EVICT_BUDGET);
	out->evict_age = counter(c, ST_EVICT_AGE);
	out->evict_pressure = counter(c, ST_EVICT_PRESSURE);
	out->evict_forget = counter(c, ST_EVICT_FORGET);
	out->evict_reuse = counter(c, ST_EVICT_REUSE);
	out->alloc_failures = counter(c, ST_ALLOC_FAILURES);
	out->reserve_used = counter(c, ST_RESERVE_USED);
	out->buffers_held = nonneg(stat_sum(c, ST_HELD));

	pthread_mutex_lock(&c->lock);
	out->buffers_clean = c->n_buffers[LIST_CLEAN];
	/* as before the writing ring existed: dirty until known written */
	out->buffers_dirty = c->n_buffers[LIST_DIRTY] + c->n_buffers[LIST_WRITING];
	out->buffers_writing = c->n_buffers[LIST_WRITING];
	out->write_failures = c->wb_failures;
	pthread_mutex_unlock(&c->lock);
	out->buffers_reading = __atomic_load_n(&c->n_reading, __ATOMIC_RELAXED);
	out->bytes_cached = (out->buffers_clean + out->buffers_dirty) * c->block_size;
}

void bufio_clear_stats(struct bufio_client *c)
{
	/* Gauges (ST_HELD) are kept; every counter restarts from 0. */
	pthread_mutex_lock(&c->lock);
	for (unsigned id = 0; id < ST_COUNT; id++)
		if (id != ST_HELD)
			__atomic_store_n(&c->stat_base[id], stat_sum(c, id), __ATOMIC_RELAXED);
	pthread_mutex_unlock(&c->lock);
}
