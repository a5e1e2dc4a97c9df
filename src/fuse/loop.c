/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Our own FUSE worker pool: a fixed set of threads, each receiving and
 * processing requests on the session's /dev/fuse descriptor.
 *
 * Why not fuse_session_loop_mt: libfuse 3.14's loop starts a thread
 * whenever no worker is idle at the moment one takes a request, and lets it
 * exit again when it finds too many idle. Under a queue of requests that
 * was a clone3, an open of /dev/fuse and a teardown per request (strace:
 * 1078 clone3 for 1114 requests at 64 requests in flight). A fixed pool
 * costs one read and one writev per request. The kernel wakes a single
 * reader per request (exclusive wait). How a worker reads and dispatches a
 * request is rx.c's.
 *
 * Only a few workers run at a time; the rest are parked. Idle workers in
 * read(2) are not free: with 8 of them the queue drains, each request then
 * finds a worker asleep and pays its wake-up inside the caller's submission,
 * and the caller slows down so the queue keeps draining (hot 4 KiB reads at
 * QD32x2: 56-64k IOPS in that state against 80-100k when workers always
 * find a request waiting; 3 workers stayed in the fast state). But a worker
 * that misses the cache waits for the disk, and cold reads want more
 * requests in flight than that. So, like the kernel's concurrency-managed
 * workqueues, the pool keeps @running workers runnable (receiving or
 * processing), and libbufio tells it when one starts and stops waiting for
 * I/O (bufio_set_sleep_hooks): a parked worker is let in while one waits,
 * and the one coming back from a wait parks again if too many run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <bufio/bufio.h>

#include "daemon/log.h"
#include "fuse/fs.h"

struct fs_worker {
	struct fs_loop *l;
	pthread_t tid;
	bool started;
	bool done; /* under fs_loop.lock: no more signals to this thread */
};

struct fs_loop {
	struct fs_ctx *ctx;
	struct fuse_session *se;
	pthread_mutex_t lock;
	atomic_int error; /* first -errno a worker saw */
	/* The gate, under lock except where said: workers receiving or
	 * processing (atomic: the sleep hooks change it without the lock),
	 * how many may, and how many are parked waiting for their turn. */
	atomic_int running;
	int limit;
	unsigned parked;
	pthread_cond_t turn;
	struct bufio_sleep_hooks hooks;
	unsigned n;
	struct fs_worker w[];
};

/* Park until fewer than the limit run (or the session ends), then run. */
static void gate_wait_locked(struct fs_loop *l)
{
	while (atomic_load(&l->running) >= l->limit && !fuse_session_exited(l->se)) {
		l->parked++;
		pthread_cond_wait(&l->turn, &l->lock);
		l->parked--;
	}
	atomic_fetch_add(&l->running, 1);
}

/* Between requests: step aside while more than the limit run (a worker came
 * back from a wait). The common case is one atomic load. */
static void gate_pass(struct fs_loop *l)
{
	if (atomic_load_explicit(&l->running, memory_order_relaxed) <= l->limit)
		return;
	pthread_mutex_lock(&l->lock);
	if (atomic_load(&l->running) > l->limit) {
		atomic_fetch_sub(&l->running, 1);
		gate_wait_locked(l);
	}
	pthread_mutex_unlock(&l->lock);
}

/* The hook: this worker waits for I/O, let a parked one in. Taking the lock
 * orders the decrement before any parker's check, so no turn is lost. */
static void worker_sleeping(void *arg)
{
	struct fs_loop *l = arg;

	if (atomic_fetch_sub(&l->running, 1) - 1 >= l->limit)
		return;
	pthread_mutex_lock(&l->lock);
	if (l->parked)
		pthread_cond_signal(&l->turn);
	pthread_mutex_unlock(&l->lock);
}

static void worker_woken(void *arg)
{
	struct fs_loop *l = arg;

	atomic_fetch_add(&l->running, 1);
}

/* The session ended: parked workers must see it and leave. */
static void gate_open(struct fs_loop *l)
{
	pthread_mutex_lock(&l->lock);
	pthread_cond_broadcast(&l->turn);
	pthread_mutex_unlock(&l->lock);
}

static void worker_loop(struct fs_loop *l)
{
	struct fs_rx *rx = fs_rx_new(l->ctx, l->se);
	int err = rx ? 0 : -ENOMEM;

	if (!err) { /* a worker without memory ends the session at once */
		pthread_mutex_lock(&l->lock);
		gate_wait_locked(l);
		pthread_mutex_unlock(&l->lock);
		bufio_set_sleep_hooks(&l->hooks);
	}
	while (!err && !fuse_session_exited(l->se)) {
		int res;

		gate_pass(l);
		res = fs_rx_serve_one(rx);

		if (res == -EINTR || res == -EAGAIN)
			continue; /* poked (shutdown) or a request the kernel withdrew */
		if (res == 0)
			break; /* unmounted: the session has already been ended */
		if (res < 0)
			err = res;
	}
	if (err) {
		int none = 0;

		atomic_compare_exchange_strong(&l->error, &none, err);
	}
	bufio_set_sleep_hooks(NULL);
	fuse_session_exit(l->se);
	gate_open(l);
	fs_rx_free(rx);
}

static void *worker_main(void *arg)
{
	struct fs_worker *self = arg;
	struct fs_loop *l = self->l;
	sigset_t usr1;

	/* SIGUSR1 interrupts the read so a worker sees the session end. */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
	pthread_setname_np(pthread_self(), "bufiofs-fuse");
	worker_loop(l);
	pthread_mutex_lock(&l->lock);
	self->done = true;
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

struct fs_loop *fs_loop_start(struct fs_ctx *ctx, struct fuse_session *se, unsigned nthreads,
                              unsigned running)
{
	struct fs_loop *l;

	if (!nthreads)
		nthreads = 1;
	if (!running || running > nthreads)
		running = nthreads;
	l = calloc(1, sizeof(*l) + nthreads * sizeof(l->w[0]));
	if (!l) {
		fs_log(LOG_ERR, "cannot start the FUSE workers: out of memory");
		return NULL;
	}
	l->ctx = ctx;
	l->se = se;
	l->n = nthreads;
	l->limit = (int)running;
	l->hooks = (struct bufio_sleep_hooks){
	    .sleeping = worker_sleeping, .woken = worker_woken, .arg = l};
	/* The ring threads first: INIT, which the workers read, asks the
	 * kernel for io_uring only once they are all set up. */
	if (ctx->uring && fs_uring_start(ctx->uring) != 0)
		fs_log(LOG_WARNING, "FUSE io_uring unavailable; serving through /dev/fuse reads");
	atomic_init(&l->error, 0);
	atomic_init(&l->running, 0);
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->turn, NULL);
	/* A worker marks itself done under the lock, so only after started. */
	pthread_mutex_lock(&l->lock);
	for (unsigned i = 0; i < nthreads; i++) {
		l->w[i].l = l;
		int err = pthread_create(&l->w[i].tid, NULL, worker_main, &l->w[i]);
		if (err) {
			fs_log(LOG_ERR, "cannot start FUSE worker %u: %s", i, strerror(err));
			break;
		}
		l->w[i].started = true;
	}
	pthread_mutex_unlock(&l->lock);
	if (!l->w[0].started) {
		if (ctx->uring) {
			fs_uring_interrupt(ctx->uring);
			fs_uring_join(ctx->uring);
		}
		pthread_cond_destroy(&l->turn);
		pthread_mutex_destroy(&l->lock);
		free(l);
		return NULL;
	}
	/* Fewer workers than asked still serve; the loop just has less depth. */
	return l;
}

void fs_loop_interrupt(struct fs_loop *l)
{
	pthread_mutex_lock(&l->lock);
	for (unsigned i = 0; i < l->n; i++)
		if (l->w[i].started && !l->w[i].done)
			pthread_kill(l->w[i].tid, SIGUSR1);
	pthread_cond_broadcast(&l->turn); /* parked workers see the end too */
	pthread_mutex_unlock(&l->lock);
	if (l->ctx->uring)
		fs_uring_interrupt(l->ctx->uring);
}

int fs_loop_join(struct fs_loop *l)
{
	int err;

	for (unsigned i = 0; i < l->n; i++)
		if (l->w[i].started)
			pthread_join(l->w[i].tid, NULL);
	err = atomic_load(&l->error);
	/* The workers leave when the session ends (unmount, signal, error):
	 * so does the ring. */
	if (l->ctx->uring) {
		int uerr;

		fs_uring_interrupt(l->ctx->uring);
		uerr = fs_uring_join(l->ctx->uring);
		if (!err)
			err = uerr;
	}
	return err;
}

void fs_loop_free(struct fs_loop *l)
{
	if (!l)
		return;
	pthread_cond_destroy(&l->turn);
	pthread_mutex_destroy(&l->lock);
	free(l);
}
