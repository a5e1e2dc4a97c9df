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
 * Only a few workers run at once, the others parked; gate.c decides.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "fuse/fs.h"

struct fs_worker {
	struct fs_loop *l;
	unsigned idx;
	pthread_t tid;
	bool started;
	bool done; /* under fs_loop.lock: no more signals to this thread */
};

struct fs_loop {
	struct fs_ctx *ctx;
	struct fuse_session *se;
	pthread_mutex_t lock;
	atomic_int error; /* first -errno a worker saw */
	struct fs_gate *gate;
	unsigned n;
	struct fs_worker w[];
};

static void worker_loop(struct fs_worker *self)
{
	struct fs_loop *l = self->l;
	struct fs_rx *rx = fs_rx_new(l->ctx, l->se);
	int err = rx ? 0 : -ENOMEM;

	if (!err) /* a worker without memory ends the session at once */
		fs_gate_enter(l->gate, self->idx);
	while (!err && !fuse_session_exited(l->se)) {
		int res;

		fs_gate_pass(l->gate, self->idx);
		fs_gate_receiving(l->gate, self->idx, true);
		res = fs_rx_receive(rx);
		fs_gate_receiving(l->gate, self->idx, false);
		if (res == 1) {
			fs_rx_process(rx);
			fs_gate_served(l->gate, self->idx);
			continue;
		}
		if (res == -EINTR || res == -EAGAIN)
			continue; /* poked (shutdown) or a request the kernel withdrew */
		if (res == 0)
			break; /* unmounted: the session has already been ended */
		err = res;
	}
	if (err) {
		int none = 0;

		atomic_compare_exchange_strong(&l->error, &none, err);
	}
	fuse_session_exit(l->se);
	fs_gate_leave(l->gate, self->idx);
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
	worker_loop(self);
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
	l = calloc(1, sizeof(*l) + nthreads * sizeof(l->w[0]));
	if (l)
		l->gate = fs_gate_new(se, nthreads, running);
	if (!l || !l->gate) {
		fs_log(LOG_ERR, "cannot start the FUSE workers: out of memory");
		free(l);
		return NULL;
	}
	l->ctx = ctx;
	l->se = se;
	l->n = nthreads;
	/* The ring threads first: INIT, which the workers read, asks the
	 * kernel for io_uring only once they are all set up. */
	if (ctx->uring && fs_uring_start(ctx->uring) != 0)
		fs_log(LOG_WARNING, "FUSE io_uring unavailable; serving through /dev/fuse reads");
	atomic_init(&l->error, 0);
	pthread_mutex_init(&l->lock, NULL);
	/* A worker marks itself done under the lock, so only after started. */
	pthread_mutex_lock(&l->lock);
	for (unsigned i = 0; i < nthreads; i++) {
		l->w[i].l = l;
		l->w[i].idx = i;
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
		fs_gate_free(l->gate);
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
	pthread_mutex_unlock(&l->lock);
	fs_gate_open(l->gate); /* parked workers see the end too */
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
	fs_gate_free(l->gate);
	pthread_mutex_destroy(&l->lock);
	free(l);
}
