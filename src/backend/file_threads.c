/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The thread-pool engine of the file backend: workers take ios from one queue
 * and run pread/pwrite/fdatasync/fallocate. Used where io_uring is missing or
 * forbidden, and (one worker) for what io_uring cannot do.
 */
#define _GNU_SOURCE /* O_DIRECT, fallocate, statx, pthread_setname_np */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "be_int.h"

#define DEFAULT_THREADS 4

static void *pool_main(void *arg)
{
	struct be_pool *p = arg;

	be_in_completion = true;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct bufio_io *io;
		int res;

		while (!p->head && !p->stopping)
			pthread_cond_wait(&p->work, &p->lock);
		if (!p->head)
			break;
		io = p->head;
		p->head = io->next;
		if (!p->head)
			p->tail = &p->head;
		pthread_mutex_unlock(&p->lock);

		res = be_file_exec(p->f, io);
		io->done(io, res);

		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int be_pool_start(struct be_pool *p, struct be_file *f, unsigned nthreads, const char *tname)
{
	p->f = f;
	p->head = NULL;
	p->tail = &p->head;
	p->stopping = false;
	p->nthreads = 0;
	p->tids = calloc(nthreads, sizeof(*p->tids));
	if (!p->tids)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	for (unsigned i = 0; i < nthreads; i++) {
		int ret = pthread_create(&p->tids[i], NULL, pool_main, p);

		if (ret) {
			be_pool_stop(p);
			return -ret;
		}
		pthread_setname_np(p->tids[i], tname);
		p->nthreads++;
	}
	return 0;
}

void be_pool_queue(struct be_pool *p, struct bufio_io *ios)
{
	unsigned n = 0;

	if (!ios)
		return;
	pthread_mutex_lock(&p->lock);
	*p->tail = ios;
	for (; ios; ios = ios->next) {
		p->tail = &ios->next;
		n++;
	}
	/* wake as many workers as there is work, not the whole pool for one io */
	if (n >= p->nthreads)
		pthread_cond_broadcast(&p->work);
	else
		while (n--)
			pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
}

void be_pool_stop(struct be_pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->tids[i], NULL);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->lock);
	free(p->tids);
	p->tids = NULL;
	p->nthreads = 0;
}

struct be_threads {
	struct be_file f;
	struct be_pool pool;
};

static void threads_submit(struct bufio_backend *be, struct bufio_io *ios)
{
	struct be_threads *t = (struct be_threads *)be;
	struct bufio_io *ok = NULL, **tail = &ok;

	while (ios) {
		struct bufio_io *next = ios->next;
		int ret = be_check_io(be, ios);

		if (ret) {
			ios->done(ios, ret < 0 ? ret : 0);
		} else {
			*tail = ios;
			tail = &ios->next;
		}
		ios = next;
	}
	*tail = NULL;
	be_pool_queue(&t->pool, be_merge(&t->f, ok));
}

static void threads_close(struct bufio_backend *be)
{
	struct be_threads *t = (struct be_threads *)be;

	be_pool_stop(&t->pool);
	be_file_release(&t->f);
	free(t);
}

static const struct bufio_backend_ops threads_ops = {
    .submit = threads_submit,
    .exec_sync = be_file_exec_sync,
    .close = threads_close,
};

int be_threads_create(const struct be_file *f, const struct bufio_backend_options *opts,
                      struct bufio_backend **out)
{
	struct be_threads *t = calloc(1, sizeof(*t));
	int ret;

	if (!t)
		return -ENOMEM;
	t->f = *f;
	t->f.be.ops = &threads_ops;
	t->f.be.name = "threads";
	ret = be_pool_start(&t->pool, &t->f, opts->threads ? opts->threads : DEFAULT_THREADS,
	                    "bufio-io");
	if (ret) {
		free(t);
		return ret;
	}
	*out = &t->f.be;
	return 0;
}
