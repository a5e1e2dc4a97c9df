/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The generic half of the backend interface: dispatch through the operations
 * table, the synchronous wrapper, and io validation shared by every backend.
 */
#define _GNU_SOURCE /* O_DIRECT, fallocate, statx, pthread_setname_np */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>

#include "be_int.h"
#include "core/sleep.h"

__thread bool be_in_completion;

void bufio_backend_close(struct bufio_backend *be)
{
	if (be)
		be->ops->close(be);
}

uint64_t bufio_backend_size(struct bufio_backend *be)
{
	return be->size;
}

unsigned bufio_backend_alignment(struct bufio_backend *be)
{
	return be->align ? be->align : 1;
}

void bufio_backend_submit(struct bufio_backend *be, struct bufio_io *ios)
{
	if (ios)
		be->ops->submit(be, ios);
}

struct sync_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int res;
};

static void sync_done(struct bufio_io *io, int res)
{
	struct sync_wait *w = io->private;

	/*
	 * Signal under the lock: the waiter owns @w on its stack and may free it
	 * the moment it sees done, which it can only do after we unlock.
	 */
	pthread_mutex_lock(&w->lock);
	w->res = res;
	w->done = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/*
 * Whether running @op in the calling thread waits for the device, as far as
 * a thread pool should know (bufio_set_sleep_hooks): not for a buffered read
 * or write, which the page cache usually serves at once.
 */
static bool sync_sleeps(const struct bufio_backend *be, enum bufio_io_op op)
{
	return (op != BUFIO_OP_READ && op != BUFIO_OP_WRITE) || (be->flags & BUFIO_BE_DIRECT);
}

static int exec_here(struct bufio_backend *be, struct bufio_io *io)
{
	bool sleeps = sync_sleeps(be, (enum bufio_io_op)io->op);
	int res;

	if (sleeps)
		sleep_begin();
	res = be->ops->exec_sync(be, io);
	if (sleeps)
		sleep_end();
	return res;
}

/*
 * Must not be called from a completion callback of a backend that completes
 * asynchronously: the thread that would complete it is the one waiting.
 */
int bufio_backend_rw_sync(struct bufio_backend *be, enum bufio_io_op op, void *buf, uint64_t offset,
                          uint64_t len)
{
	struct sync_wait w = {.done = false, .res = 0};
	struct bufio_io io = {
	    .next = NULL,
	    .buf = buf,
	    .offset = offset,
	    .len = len,
	    .done = sync_done,
	    .private = &w,
	    .op = (uint8_t)op,
	};

	if (be->ops->exec_sync)
		return exec_here(be, &io);
	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	be->ops->submit(be, &io);
	sleep_begin();
	pthread_mutex_lock(&w.lock);
	while (!w.done)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	sleep_end();
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.lock);
	return w.res;
}

int be_check_io(const struct bufio_backend *be, const struct bufio_io *io)
{
	uint64_t mask = be->align > 1 ? be->align - 1 : 0;

	switch (io->op) {
	case BUFIO_OP_FLUSH:
		return 0;
	case BUFIO_OP_READ:
		break;
	case BUFIO_OP_WRITE:
	case BUFIO_OP_DISCARD:
		if (be->flags & BUFIO_BE_READONLY)
			return -EROFS;
		if (io->op == BUFIO_OP_DISCARD && !(be->flags & BUFIO_BE_DISCARD))
			return -EOPNOTSUPP;
		break;
	default:
		return -EINVAL;
	}
	if ((io->offset & mask) || (io->len & mask))
		return -EINVAL;
	if (io->op != BUFIO_OP_DISCARD && io->len && (!io->buf || ((uintptr_t)io->buf & mask)))
		return -EINVAL;
	if (io->offset > be->size || io->len > be->size - io->offset)
		return -EIO;
	return io->len ? 0 : 1;
}

void be_complete_list(struct bufio_io *ios, int res)
{
	while (ios) {
		struct bufio_io *next = ios->next;

		ios->done(ios, res);
		ios = next;
	}
}
