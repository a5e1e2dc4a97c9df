/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * bufio backend interface: asynchronous, byte-ranged, batched and stackable
 * I/O underneath the libbufio cache. A backend is a device-mapper-like target:
 * the file backend talks to a file or block device, the memory and fault
 * backends exist for tests, and future tiers (write-back cache, hydration)
 * stack on top of any other backend through the same operations table.
 */
#ifndef BUFIO_BACKEND_H
#define BUFIO_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct bufio_backend;
struct bufio_io;

enum bufio_io_op {
	BUFIO_OP_READ = 0,
	BUFIO_OP_WRITE = 1,
	BUFIO_OP_FLUSH = 2,   /* make every completed write durable */
	BUFIO_OP_DISCARD = 3, /* the range reads back as zeroes afterwards */
};

/*
 * Completion callback. @res is 0 on success or a negative errno. A read or
 * write that transferred fewer bytes than asked is completed with -EIO
 * (past the end of the backing) by the backend, never with a short count.
 *
 * Called exactly once per submitted io, from a backend completion thread or,
 * for an io that failed at submission, from the submitter before
 * bufio_backend_submit() returns. It must not block on other I/O of the same
 * backend (it runs on the thread that reaps it); it may submit new I/O.
 */
typedef void (*bufio_io_done_fn)(struct bufio_io *io, int res);

/*
 * One I/O request. The submitter owns the memory until @done has been
 * called. @buf must be aligned to bufio_backend_alignment() for reads and
 * writes; @offset and @len must be multiples of it too when the backend
 * reports an alignment greater than 1.
 */
struct bufio_io {
	struct bufio_io *next; /* batch link: used by the submitter only */
	void *buf;
	uint64_t offset; /* bytes */
	uint64_t len;    /* bytes; 0 for FLUSH */
	bufio_io_done_fn done;
	void *private; /* for the submitter */
	uint8_t op;    /* enum bufio_io_op */
};

/* Capability flags a backend reports. */
#define BUFIO_BE_DISCARD  (1u << 0) /* OP_DISCARD really frees/zeroes space */
#define BUFIO_BE_READONLY (1u << 1) /* writes and discards fail with -EROFS */
#define BUFIO_BE_DIRECT   (1u << 2) /* O_DIRECT: no page cache below us */

/*
 * The operations table every backend implements. Stacking backends keep a
 * pointer to the backend below and forward to it.
 */
struct bufio_backend_ops {
	/*
	 * Queue every io of the NULL-terminated list @ios (linked by ->next)
	 * as one batch: a single submission system call for the whole list
	 * where the engine allows. Never blocks waiting for an io to finish;
	 * may block briefly when the queue is full. Each io completes through
	 * its own ->done. The backend may overwrite ->next once submitted.
	 */
	void (*submit)(struct bufio_backend *be, struct bufio_io *ios);
	/*
	 * Optional: run the single io @io in the calling thread, blocking
	 * until it is done, and return 0 or -errno (->done is not called).
	 * Backends that can do this without a thread hand-off (the file
	 * engines: pread/pwrite) set it; NULL means submit and wait.
	 */
	int (*exec_sync)(struct bufio_backend *be, struct bufio_io *io);
	/* Release everything; the caller has waited for all its ios. */
	void (*close)(struct bufio_backend *be);
};

/*
 * The common part of every backend. Implementations embed it first in their
 * own structure.
 */
struct bufio_backend {
	const struct bufio_backend_ops *ops;
	uint64_t size;    /* bytes */
	unsigned align;   /* buffer, offset and length alignment (1 = none) */
	unsigned flags;   /* BUFIO_BE_* */
	const char *name; /* engine for logs and the io_engine file */
	const char *path; /* what it serves, for messages */
};

enum bufio_io_engine {
	BUFIO_ENGINE_AUTO = 0, /* io_uring, else the thread pool (logged) */
	BUFIO_ENGINE_URING,    /* io_uring only: open fails if unavailable */
	BUFIO_ENGINE_THREADS,  /* pread/pwrite thread pool */
};

struct bufio_backend_options {
	enum bufio_io_engine engine;
	int direct;           /* <0 try O_DIRECT, fall back; 0 never; >0 require */
	bool readonly;        /* open O_RDONLY; writes fail with -EROFS */
	unsigned queue_depth; /* io_uring entries; 0 = 256 */
	unsigned threads;     /* thread-pool workers; 0 = 4 */
	bool fixed_buffers;   /* reserved for registered buffers; may be ignored */
	/*
	 * io_uring engine: at most this many 1 MiB staging buffers (up to 8)
	 * that merged reads of scattered blocks go through, so the device gets
	 * a few large segments; 0 = none. Mapped on first use, outside the
	 * cache budget, and shared out process-wide: all backends together
	 * get one per 64 MiB of the cache budget in force then, at most 8.
	 */
	unsigned staging_buffers;
};

/*
 * Open a regular file or block device as a backend. Its size is the file
 * size or BLKGETSIZE64. @opts may be NULL for defaults. Blocks in open(2) and
 * ring setup only.
 *
 * Returns NULL with errno set on failure: the open(2) errno, ENOSYS/EPERM when
 * BUFIO_ENGINE_URING was required and io_uring is not available, EINVAL for a
 * path that is neither a regular file nor a block device or for bad options.
 * A one-line reason is written to stderr.
 */
struct bufio_backend *bufio_backend_open(const char *path,
                                         const struct bufio_backend_options *opts);

/* Close any backend. The caller must have no I/O in flight on it. */
void bufio_backend_close(struct bufio_backend *be);

/* Size of the backend in bytes. Never blocks. */
uint64_t bufio_backend_size(struct bufio_backend *be);

/* Required alignment of buffers, offsets and lengths (a power of two). */
unsigned bufio_backend_alignment(struct bufio_backend *be);

/* Submit a NULL-terminated batch (see bufio_backend_ops.submit). */
void bufio_backend_submit(struct bufio_backend *be, struct bufio_io *ios);

/*
 * Synchronous single request built on submit: returns 0 or a negative errno.
 * Blocks until the io completes. Useful for flushes, discards and tests.
 * Reported as a wait to the caller's sleep hooks (bufio_set_sleep_hooks)
 * unless it is a read or write through the page cache.
 */
int bufio_backend_rw_sync(struct bufio_backend *be, enum bufio_io_op op, void *buf, uint64_t offset,
                          uint64_t len);

/*
 * The plug: gather ios and submit them as one batch. Not thread-safe: one
 * plug per submitting thread. bufio_plug_finish() submits what was gathered
 * (nothing if empty) and resets the plug.
 */
struct bufio_plug {
	struct bufio_io *head;
	struct bufio_io **tail;
	unsigned count;
};

static inline void bufio_plug_init(struct bufio_plug *p)
{
	p->head = NULL;
	p->tail = &p->head;
	p->count = 0;
}

static inline void bufio_plug_add(struct bufio_plug *p, struct bufio_io *io)
{
	io->next = NULL;
	*p->tail = io;
	p->tail = &io->next;
	p->count++;
}

static inline void bufio_plug_finish(struct bufio_plug *p, struct bufio_backend *be)
{
	if (p->head)
		bufio_backend_submit(be, p->head);
	bufio_plug_init(p);
}

#ifdef __cplusplus
}
#endif
#endif /* BUFIO_BACKEND_H */
