/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The io_uring engine of the file backend: one ring shared by every submitter
 * under a mutex, a whole batch per io_uring_submit(), and one reaper thread
 * that waits for completions, finishes short transfers and calls ->done.
 */
#define _GNU_SOURCE /* O_DIRECT, fallocate, statx, pthread_setname_np */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "be_int.h"
#include "core/sleep.h"

#define DEFAULT_QUEUE_DEPTH 256
#define REAP_BATCH          64

/*
 * One slot per io the kernel may hold. There are as many slots as CQ entries,
 * so the completion queue can never overflow, and a short transfer is
 * resubmitted in the slot it already owns.
 */
struct uring_req {
	struct bufio_io *io;
	uint64_t done; /* bytes transferred so far */
	struct uring_req *next_free;
};

struct be_uring {
	struct be_file f;
	struct io_uring ring;
	pthread_t reaper;
	pthread_mutex_t lock; /* the SQ side, the slots and the pending queue */
	pthread_cond_t space; /* a slot is free and nothing is queued ahead */
	struct uring_req *reqs, *free;
	unsigned nslots, waiters, sq_ready;
	/*
	 * ios submitted from a completion thread while every slot was busy. Only
	 * queued when full, so there is always I/O in flight whose completion
	 * lets the reaper submit them.
	 */
	struct bufio_io *pend_head, **pend_tail;
	bool stopping;
	bool has_helper;
	struct be_pool helper; /* block-device discards: not an io_uring op */
	struct be_bounce staging;
};

/* Push prepared SQEs to the kernel. Called with the lock held. */
static void flush_sq(struct be_uring *u)
{
	while (u->sq_ready) {
		int ret = io_uring_submit(&u->ring);

		if (ret >= 0) {
			u->sq_ready -= (unsigned)ret < u->sq_ready ? (unsigned)ret : u->sq_ready;
			continue;
		}
		/*
		 * Transient: the SQEs stay in the ring and the next call pushes
		 * them. CQ overflow (EBUSY) cannot happen as in-flight ios are
		 * bounded by the CQ size.
		 */
		if (ret == -EINTR || ret == -EAGAIN || ret == -EBUSY)
			continue;
		fprintf(stderr, "bufio: io_uring_submit failed on %s (%s)\n", u->f.path,
		        strerror(-ret));
		abort();
	}
}

static struct io_uring_sqe *get_sqe(struct be_uring *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (!sqe) {
		flush_sq(u);
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

/* The staging buffer @io reads through, or NULL (only merged ios have one). */
static char *staging_of(const struct bufio_io *io)
{
	return io->op & BE_IO_VEC ? be_vec_staging(io) : NULL;
}

/* Vectored writes from this size on are issued by the kernel's io-wq threads. */
#define ASYNC_WRITE_BYTES (256u << 10)

/* Prepare the (remaining part of the) io in slot @r. Called with the lock held. */
static void prep(struct be_uring *u, struct uring_req *r)
{
	struct io_uring_sqe *sqe = get_sqe(u);
	struct bufio_io *io = r->io;
	uint64_t rest = io->len - r->done;
	unsigned chunk = rest < u->f.max_xfer ? (unsigned)rest : (unsigned)u->f.max_xfer;
	const struct iovec *iov = NULL;
	unsigned nvec = 0;

	if (io->op & BE_IO_VEC) /* advanced past r->done by the reaper */
		iov = be_vec_iov(io, &nvec);
	/* A staged read moves whole; after a short transfer it goes on in place. */
	char *st = staging_of(io);

	switch (io->op) {
	/* READ is 0: spelled out so the case says what it matches. */
	// cppcheck-suppress badBitmaskCheck
	case BUFIO_OP_READ | BE_IO_VEC:
		if (st)
			io_uring_prep_read(sqe, u->f.fd, st, (unsigned)io->len, io->offset);
		else
			io_uring_prep_readv(sqe, u->f.fd, iov, nvec, io->offset + r->done);
		break;
	case BUFIO_OP_WRITE | BE_IO_VEC:
		io_uring_prep_writev(sqe, u->f.fd, iov, nvec, io->offset + r->done);
		/* Issuing a large O_DIRECT write pins every page of it, in the
		 * submitter's thread: that made the one write-back thread the
		 * limit of a streaming writer. io-wq threads issue it instead. */
		if (rest >= ASYNC_WRITE_BYTES)
			sqe->flags |= IOSQE_ASYNC;
		break;
	case BUFIO_OP_READ:
		io_uring_prep_read(sqe, u->f.fd, (char *)io->buf + r->done, chunk,
		                   io->offset + r->done);
		break;
	case BUFIO_OP_WRITE:
		io_uring_prep_write(sqe, u->f.fd, (const char *)io->buf + r->done, chunk,
		                    io->offset + r->done);
		break;
	case BUFIO_OP_FLUSH:
		io_uring_prep_fsync(sqe, u->f.fd, IORING_FSYNC_DATASYNC);
		break;
	case BUFIO_OP_DISCARD:
		/* regular files only; block devices go to the helper thread */
		io_uring_prep_fallocate(sqe, u->f.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		                        (off_t)io->offset, (off_t)io->len);
		break;
	}
	io_uring_sqe_set_data(sqe, r);
	u->sq_ready++;
}

/* Put @io in a free slot and prepare it. Called with the lock held, a slot free. */
static void start(struct be_uring *u, struct bufio_io *io)
{
	struct uring_req *r = u->free;

	u->free = r->next_free;
	r->io = io;
	r->done = 0;
	prep(u, r);
}

/* Give free slots to queued ios, then to waiting submitters. Lock held. */
static void pump(struct be_uring *u)
{
	while (u->pend_head && u->free) {
		struct bufio_io *io = u->pend_head;

		u->pend_head = io->next;
		if (!u->pend_head)
			u->pend_tail = &u->pend_head;
		start(u, io);
	}
	flush_sq(u);
	if (u->free && !u->pend_head && u->waiters)
		pthread_cond_broadcast(&u->space);
}

/*
 * Attach staging buffers to the merged reads of @ios that are scattered
 * enough to gain, before the ring lock. Writes stay in place: gathering them
 * was measured twice on 2026-12-05 (bench/README.md) and did not pay. The
 * disk got single-segment requests, but the memcpy cost about a CPU second
 * per 8 s stream, and on 2 vCPUs the throughput came out even at best. Since
 * then a large write's blocks get neighbouring memory (bufio_expect_new):
 * about 19 blocks per segment, without a copy.
 */
static void stage(struct be_uring *u, struct bufio_io *ios)
{
	for (; ios; ios = ios->next) {
		const struct iovec *iov;
		unsigned n;
		char *buf;

		// cppcheck-suppress badBitmaskCheck
		if (ios->op != (BUFIO_OP_READ | BE_IO_VEC))
			continue;
		iov = be_vec_iov(ios, &n);
		buf = be_bounce_get(&u->staging, iov, n, ios->len);
		if (buf)
			be_vec_set_staging(ios, buf);
	}
}

static void uring_submit(struct bufio_backend *be, struct bufio_io *ios)
{
	struct be_uring *u = (struct be_uring *)be;
	struct bufio_io *ok = NULL, **tail = &ok, *slow = NULL, **stail = &slow;

	/* Failures complete here, before submit returns, as the contract allows. */
	while (ios) {
		struct bufio_io *next = ios->next;
		int ret = be_check_io(be, ios);

		if (ret) {
			ios->done(ios, ret < 0 ? ret : 0);
		} else if (ios->op == BUFIO_OP_DISCARD && u->f.blkdev) {
			*stail = ios;
			stail = &ios->next;
		} else {
			*tail = ios;
			tail = &ios->next;
		}
		ios = next;
	}
	*tail = NULL;
	*stail = NULL;
	if (slow)
		be_pool_queue(&u->helper, slow);
	if (!ok)
		return;
	ok = be_merge(&u->f, ok);
	stage(u, ok);

	pthread_mutex_lock(&u->lock);
	while (ok) {
		if (u->free && !u->pend_head) {
			struct bufio_io *io = ok;

			ok = io->next;
			start(u, io);
		} else if (be_in_completion) {
			/*
			 * A completion callback (ours or a stacked backend's) must not
			 * wait for a slot only a completion thread can free: queue the
			 * rest for the reaper.
			 */
			*u->pend_tail = ok;
			while (ok->next)
				ok = ok->next;
			u->pend_tail = &ok->next;
			ok = NULL;
		} else {
			/* push what is prepared first: the slots we wait for may be in it */
			flush_sq(u);
			u->waiters++;
			sleep_begin();
			pthread_cond_wait(&u->space, &u->lock);
			sleep_end();
			u->waiters--;
		}
	}
	flush_sq(u);
	pthread_mutex_unlock(&u->lock);
}

struct reaped {
	struct bufio_io *io;
	int res;
};

/* Copy the first @bytes of staged read @io out, give its buffer back. */
static void unstage(struct be_uring *u, struct bufio_io *io, uint64_t bytes)
{
	char *buf = be_vec_staging(io);
	unsigned n;
	const struct iovec *iov = be_vec_iov(io, &n);

	be_bounce_scatter(iov, n, buf, bytes);
	be_vec_set_staging(io, NULL);
	be_bounce_put(&u->staging, buf);
}

/*
 * A staged read ended with @res. Whole: keep the buffer for staged_finish(),
 * outside the lock. Short or failed: copy out what arrived (rare), give the
 * buffer back, and let the read go on (or be retried) in place. Lock held.
 */
static void staged_end(struct be_uring *u, struct bufio_io *io, int res)
{
	if (res > 0 && (uint64_t)res >= io->len)
		return;
	unstage(u, io, res > 0 ? (uint64_t)res : 0);
}

/* Before completing whole staged reads: copy them out, give buffers back. */
static void staged_finish(struct be_uring *u, struct reaped *done, unsigned ndone)
{
	for (unsigned i = 0; i < ndone; i++) {
		struct bufio_io *io = done[i].io;

		if (staging_of(io))
			unstage(u, io, io->len);
	}
}

static void *reaper_main(void *arg)
{
	struct be_uring *u = arg;
	struct reaped done[REAP_BATCH];
	bool stop = false;

	be_in_completion = true;
	while (!stop) {
		struct io_uring_cqe *cqe, *cqes[REAP_BATCH];
		unsigned n, ndone = 0;
		int ret = io_uring_wait_cqe(&u->ring, &cqe);

		if (ret == -EINTR || ret == -EAGAIN)
			continue;
		if (ret < 0) {
			fprintf(stderr,
			        "bufio: waiting for io_uring completions on %s failed (%s)\n",
			        u->f.path, strerror(-ret));
			abort();
		}
		n = io_uring_peek_batch_cqe(&u->ring, cqes, REAP_BATCH);

		pthread_mutex_lock(&u->lock);
		for (unsigned i = 0; i < n; i++) {
			struct uring_req *r = io_uring_cqe_get_data(cqes[i]);
			int res = cqes[i]->res;
			struct bufio_io *io;

			if (!r) { /* the NOP from close() */
				stop = u->stopping;
				continue;
			}
			io = r->io;
			if (res == -EINTR || res == -EAGAIN) {
				prep(u, r);
				continue;
			}
			if (staging_of(io))
				staged_end(u, io, res);
			bool rw = (io->op & ~BE_IO_VEC) == BUFIO_OP_READ ||
			          (io->op & ~BE_IO_VEC) == BUFIO_OP_WRITE;

			if (res > 0 && rw) {
				r->done += (uint64_t)res;
				if (r->done >= io->len) {
					res = 0;
				} else if (r->done & (u->f.be.align - 1)) {
					/* O_DIRECT stopped mid-block: EOF, and the rest could not
					 * be aligned */
					res = -EIO;
				} else {
					if (io->op & BE_IO_VEC)
						be_vec_advance(io, (uint64_t)res);
					prep(u, r); /* short transfer: the rest */
					continue;
				}
			} else if (res == 0 && rw) {
				res = -EIO; /* end of file before the end of the io */
			}
			done[ndone].io = io;
			done[ndone].res = res;
			ndone++;
			r->next_free = u->free;
			u->free = r;
		}
		io_uring_cq_advance(&u->ring, n);
		pump(u);
		pthread_mutex_unlock(&u->lock);

		/* outside the lock: a callback may submit again */
		staged_finish(u, done, ndone);
		for (unsigned i = 0; i < ndone; i++)
			done[i].io->done(done[i].io, done[i].res);
	}
	return NULL;
}

static void uring_close(struct bufio_backend *be)
{
	struct be_uring *u = (struct be_uring *)be;
	struct io_uring_sqe *sqe;

	pthread_mutex_lock(&u->lock);
	u->stopping = true;
	sqe = get_sqe(u);
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data(sqe, NULL);
	u->sq_ready++;
	flush_sq(u);
	pthread_mutex_unlock(&u->lock);
	pthread_join(u->reaper, NULL);

	if (u->has_helper)
		be_pool_stop(&u->helper);
	be_bounce_destroy(&u->staging);
	io_uring_queue_exit(&u->ring);
	pthread_cond_destroy(&u->space);
	pthread_mutex_destroy(&u->lock);
	be_file_release(&u->f);
	free(u->reqs);
	free(u);
}

static const struct bufio_backend_ops uring_ops = {
    .submit = uring_submit,
    .exec_sync = be_file_exec_sync,
    .close = uring_close,
};

/* Kernels before 5.6 have rings but not these opcodes. */
static int probe_ops(struct io_uring *ring)
{
	static const int needed[] = {IORING_OP_NOP,      IORING_OP_READ,   IORING_OP_WRITE,
	                             IORING_OP_READV,    IORING_OP_WRITEV, IORING_OP_FSYNC,
	                             IORING_OP_FALLOCATE};
	struct io_uring_probe *probe = io_uring_get_probe_ring(ring);
	int ret = 0;

	if (!probe)
		return -ENOSYS;
	for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
		if (!io_uring_opcode_supported(probe, needed[i]))
			ret = -ENOSYS;
	}
	io_uring_free_probe(probe);
	return ret;
}

int be_uring_create(const struct be_file *f, const struct bufio_backend_options *opts,
                    struct bufio_backend **out, bool *ring_failed)
{
	const char *force = getenv("BUFIO_FORCE_NO_URING");
	unsigned depth = opts->queue_depth ? opts->queue_depth : DEFAULT_QUEUE_DEPTH;
	struct be_uring *u;
	int ret;

	*ring_failed = false;
	if (force && strcmp(force, "1") == 0) {
		/* test hook: behave as if seccomp or io_uring_disabled said no */
		*ring_failed = true;
		return -EPERM;
	}
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	ret = io_uring_queue_init(depth, &u->ring, 0);
	if (ret) {
		free(u);
		*ring_failed = true;
		return ret;
	}
	ret = probe_ops(&u->ring);
	if (ret) {
		io_uring_queue_exit(&u->ring);
		free(u);
		*ring_failed = true;
		return ret;
	}
	u->nslots = u->ring.cq.ring_entries;
	u->reqs = calloc(u->nslots, sizeof(*u->reqs));
	if (!u->reqs) {
		ret = -ENOMEM;
		goto err_ring;
	}
	for (unsigned i = 0; i < u->nslots; i++) {
		u->reqs[i].next_free = u->free;
		u->free = &u->reqs[i];
	}
	u->f = *f;
	u->f.be.ops = &uring_ops;
	u->f.be.name = "io_uring";
	u->pend_tail = &u->pend_head;
	be_bounce_init(&u->staging, opts->staging_buffers);
	pthread_mutex_init(&u->lock, NULL);
	pthread_cond_init(&u->space, NULL);
	if (u->f.blkdev && !(u->f.be.flags & BUFIO_BE_READONLY)) {
		ret = be_pool_start(&u->helper, &u->f, 1, "bufio-discard");
		if (ret)
			goto err_lock;
		u->has_helper = true;
	}
	ret = pthread_create(&u->reaper, NULL, reaper_main, u);
	if (ret) {
		ret = -ret;
		goto err_helper;
	}
	pthread_setname_np(u->reaper, "bufio-uring");
	*out = &u->f.be;
	return 0;

err_helper:
	if (u->has_helper)
		be_pool_stop(&u->helper);
err_lock:
	be_bounce_destroy(&u->staging);
	pthread_cond_destroy(&u->space);
	pthread_mutex_destroy(&u->lock);
err_ring:
	io_uring_queue_exit(&u->ring);
	free(u->reqs);
	free(u);
	return ret;
}
