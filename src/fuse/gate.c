/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * How many FUSE workers run at once (the concurrency management of loop.c's
 * pool, after the kernel's concurrency-managed workqueues).
 *
 * Idle workers in read(2) are not free: with 8 of them the queue drains,
 * each request then finds a worker asleep and pays its wake-up inside the
 * caller's submission, and the caller slows down so the queue keeps
 * draining. Hot 4 KiB reads at QD32x2 ran either at 56-64k IOPS (workers
 * slept on 0.3-1.0 of the requests) or at 72-104k (they never slept); with
 * 3 workers every run stayed fast. But a worker that misses the cache waits
 * for the disk, and cold reads want more requests in flight than that.
 *
 * So the gate lets @limit workers run (receive or process requests) and
 * parks the others. libbufio tells it when a running worker starts and
 * stops waiting for I/O (bufio_set_sleep_hooks): a parked worker is let in
 * while one waits, and one coming back from a wait parks again between
 * requests while too many run.
 *
 * A worker stuck outside libbufio's waits (in memory reclaim that waits for
 * a loop device over this very mount, say) is not reported and keeps its
 * turn; if all running workers were stuck so, the parked ones would never
 * be let in and the mount would hang where 8 free workers would have got
 * through. So one parked worker is the watcher (like the workqueues' mayday
 * timer): every second it counts the workers that have been processing the
 * same request since its last look, and those no longer count as running
 * until they finish it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/log.h"
#include "fuse/fs.h"

#define WATCH_SECS 1

enum worker_state {
	W_OUT,       /* not running: parked, not started or gone */
	W_RECEIVING, /* in read(2) */
	W_BUSY,      /* processing a request */
	W_ASLEEP,    /* processing, in a wait libbufio reported */
};

/* One per worker, a cache line each: written by its worker on every request. */
struct gate_slot {
	alignas(64) atomic_ulong served; /* requests processed */
	atomic_int state;                /* enum worker_state */
	struct fs_gate *g;
	struct bufio_sleep_hooks hooks; /* arg: this slot */
	/* The watcher's last look, under the gate's lock. */
	unsigned long seen;
	bool was_busy;
};

struct fs_gate {
	struct fuse_session *se;
	pthread_mutex_t lock;
	/* Workers running and, of them, stuck (atomic: read without the lock
	 * between requests); how many may run; under lock, the workers parked
	 * on turn (the watcher apart, which parks on watch). */
	atomic_int running;
	atomic_int stuck;
	int limit;
	unsigned parked;
	bool watching;
	bool told; /* the first stuck worker was logged */
	pthread_cond_t turn;
	pthread_cond_t watch; /* on CLOCK_MONOTONIC */
	unsigned n;
	struct gate_slot *slots;
};

/* Workers running, stuck ones apart. Relaxed: decisions that must not miss
 * a turn are taken again under the lock. */
static int runnable(struct fs_gate *g)
{
	return atomic_load_explicit(&g->running, memory_order_relaxed) -
	       atomic_load_explicit(&g->stuck, memory_order_relaxed);
}

/* Let one parked worker in (lock held). */
static void let_one_in(struct fs_gate *g)
{
	if (g->parked)
		pthread_cond_signal(&g->turn);
	else if (g->watching)
		pthread_cond_signal(&g->watch);
}

/* The hook: this worker waits for I/O, let a parked one in. Taking the lock
 * orders the decrement before any parker's check, so no turn is lost. */
static void gate_sleeping(void *arg)
{
	struct gate_slot *slot = arg;
	struct fs_gate *g = slot->g;

	atomic_store_explicit(&slot->state, W_ASLEEP, memory_order_relaxed);
	atomic_fetch_sub(&g->running, 1);
	if (runnable(g) >= g->limit)
		return;
	pthread_mutex_lock(&g->lock);
	let_one_in(g);
	pthread_mutex_unlock(&g->lock);
}

static void gate_woken(void *arg)
{
	struct gate_slot *slot = arg;

	atomic_fetch_add(&slot->g->running, 1);
	atomic_store_explicit(&slot->state, W_BUSY, memory_order_relaxed);
}

struct fs_gate *fs_gate_new(struct fuse_session *se, unsigned nworkers, unsigned limit)
{
	struct fs_gate *g = calloc(1, sizeof(*g));
	pthread_condattr_t mono;

	if (!g)
		return NULL;
	g->slots = aligned_alloc(alignof(struct gate_slot), nworkers * sizeof(*g->slots));
	if (!g->slots) {
		free(g);
		return NULL;
	}
	memset(g->slots, 0, nworkers * sizeof(*g->slots));
	for (unsigned i = 0; i < nworkers; i++) {
		struct gate_slot *slot = &g->slots[i];

		slot->g = g;
		slot->hooks = (struct bufio_sleep_hooks){
		    .sleeping = gate_sleeping, .woken = gate_woken, .arg = slot};
	}
	g->se = se;
	g->n = nworkers;
	g->limit = (int)(limit && limit < nworkers ? limit : nworkers);
	atomic_init(&g->running, 0);
	atomic_init(&g->stuck, 0);
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->turn, NULL);
	pthread_condattr_init(&mono);
	pthread_condattr_setclock(&mono, CLOCK_MONOTONIC);
	pthread_cond_init(&g->watch, &mono);
	pthread_condattr_destroy(&mono);
	return g;
}

void fs_gate_free(struct fs_gate *g)
{
	if (!g)
		return;
	pthread_cond_destroy(&g->watch);
	pthread_cond_destroy(&g->turn);
	pthread_mutex_destroy(&g->lock);
	free(g->slots);
	free(g);
}

/*
 * The watcher's look (lock held): a worker is stuck when it was busy at the
 * last look and still is, on the same request. Parked workers are let in
 * for each one newly stuck.
 */
static void look(struct fs_gate *g)
{
	int stuck = 0, before = atomic_load(&g->stuck);

	for (unsigned i = 0; i < g->n; i++) {
		struct gate_slot *slot = &g->slots[i];
		unsigned long served = atomic_load_explicit(&slot->served, memory_order_relaxed);
		bool busy = atomic_load_explicit(&slot->state, memory_order_relaxed) == W_BUSY;

		if (busy && slot->was_busy && served == slot->seen)
			stuck++;
		slot->seen = served;
		slot->was_busy = busy;
	}
	atomic_store(&g->stuck, stuck);
	if (stuck > before && !g->told) {
		g->told = true;
		fs_log(LOG_WARNING,
		       "%d FUSE worker(s) stuck for over %d s outside the cache's waits "
		       "(memory reclaim?): letting parked workers in",
		       stuck, WATCH_SECS);
	}
	for (int i = before; i < stuck; i++)
		pthread_cond_signal(&g->turn);
}

/* Park as the watcher until a turn comes or WATCH_SECS pass (lock held). */
static void watch_once(struct fs_gate *g)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += WATCH_SECS;
	g->watching = true;
	if (pthread_cond_timedwait(&g->watch, &g->lock, &until) == ETIMEDOUT)
		look(g);
	g->watching = false;
}

/* Park until fewer than the limit run (stuck ones apart) or the session
 * ends; then run. Lock held. */
static void wait_turn_locked(struct fs_gate *g)
{
	bool watched = false;

	while (runnable(g) >= g->limit && !fuse_session_exited(g->se)) {
		if (!g->watching) {
			watched = true;
			watch_once(g);
			continue;
		}
		g->parked++;
		pthread_cond_wait(&g->turn, &g->lock);
		g->parked--;
	}
	/* Leaving the watch: another parked worker takes it over. */
	if (watched && g->parked && !g->watching)
		pthread_cond_signal(&g->turn);
	atomic_fetch_add(&g->running, 1);
}

void fs_gate_enter(struct fs_gate *g, unsigned worker)
{
	pthread_mutex_lock(&g->lock);
	wait_turn_locked(g);
	pthread_mutex_unlock(&g->lock);
	bufio_set_sleep_hooks(&g->slots[worker].hooks);
}

void fs_gate_pass(struct fs_gate *g, unsigned worker)
{
	struct gate_slot *slot = &g->slots[worker];

	if (runnable(g) <= g->limit)
		return;
	pthread_mutex_lock(&g->lock);
	if (runnable(g) > g->limit) {
		atomic_store_explicit(&slot->state, W_OUT, memory_order_relaxed);
		atomic_fetch_sub(&g->running, 1);
		wait_turn_locked(g);
	}
	pthread_mutex_unlock(&g->lock);
}

void fs_gate_receiving(struct fs_gate *g, unsigned worker, bool on)
{
	atomic_store_explicit(&g->slots[worker].state, on ? W_RECEIVING : W_BUSY,
	                      memory_order_relaxed);
}

void fs_gate_served(struct fs_gate *g, unsigned worker)
{
	struct gate_slot *s = &g->slots[worker];

	/* Only this worker writes its count: no read-modify-write needed. */
	atomic_store_explicit(&s->served,
	                      atomic_load_explicit(&s->served, memory_order_relaxed) + 1,
	                      memory_order_relaxed);
}

void fs_gate_open(struct fs_gate *g)
{
	pthread_mutex_lock(&g->lock);
	pthread_cond_broadcast(&g->turn);
	pthread_cond_broadcast(&g->watch);
	pthread_mutex_unlock(&g->lock);
}

void fs_gate_leave(struct fs_gate *g, unsigned worker)
{
	atomic_store_explicit(&g->slots[worker].state, W_OUT, memory_order_relaxed);
	bufio_set_sleep_hooks(NULL);
	fs_gate_open(g);
}
