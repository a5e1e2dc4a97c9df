/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Private plumbing shared by the backends: io validation, the completion-context
 * marker, and the pieces the two file engines (io_uring, thread pool) share.
 */
#ifndef BUFIO_BE_INT_H
#define BUFIO_BE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <bufio/backend.h>

/*
 * True on threads that deliver completions (io_uring reapers, pool workers,
 * the fault thread). A submit made from such a thread must never wait for
 * queue space: the thread it would wait for may be itself, or another
 * completion thread that is waiting on us (stacked backends). Thread-local,
 * so it is a property of the thread, not shared mutable state.
 */
extern __thread bool be_in_completion;

/*
 * Validate @io against @be before issuing it: 0 = issue it, 1 = nothing to
 * do (complete with 0), or a negative errno to complete it with. Checks the
 * op, read-only, discard support, alignment (-EINVAL) and range (-EIO).
 */
int be_check_io(const struct bufio_backend *be, const struct bufio_io *io);

/* Complete every io of a ->next list with @res (the list may be freed as we go). */
void be_complete_list(struct bufio_io *ios, int res);

/* The part both file engines share; embedded first in each engine's structure. */
struct be_file {
	struct bufio_backend be;
	int fd;
	bool blkdev;
	unsigned lbs;    /* logical block size of a block device */
	size_t max_xfer; /* bytes per read/write system call or SQE */
	char *path;      /* owned copy, be.path points to it */
};

/*
 * Test hook: BUFIO_BE_MAX_XFER=<bytes> caps each read/write system call or
 * SQE so that the short-transfer resubmission paths can be exercised. The
 * default (1 GiB) stays below the kernel's own per-call cap.
 */
size_t be_file_max_xfer(void);

/* Discard [off, off + len) of @f so that it reads back as zeroes. 0 or -errno. */
int be_file_discard_sync(struct be_file *f, uint64_t off, uint64_t len);

/* Run one validated io synchronously (pread/pwrite/fdatasync/discard). 0 or -errno. */
int be_file_exec(struct be_file *f, struct bufio_io *io);

/*
 * The file engines' exec_sync: validate and run @io in the calling thread.
 * A synchronous io from bufio_backend_rw_sync (uncached I/O, flushes) then
 * costs one system call instead of a submission, a completion thread's
 * wake-up and a condition variable.
 */
int be_file_exec_sync(struct bufio_backend *be, struct bufio_io *io);

/*
 * Merging (merge.c). be_merge() sorts a list of validated ios by op and
 * offset and replaces each run of adjacent reads (or writes) by one io whose
 * op has BE_IO_VEC set; engines issue it as a vectored read or write of
 * be_vec_iov() at ->offset plus what already moved, call be_vec_advance()
 * after a short transfer, and complete it with 0 once every byte moved, else
 * with an error (its completion then retries each part alone). Never blocks.
 */
#define BE_IO_VEC 0x80
struct bufio_io *be_merge(struct be_file *f, struct bufio_io *ios);
const struct iovec *be_vec_iov(const struct bufio_io *io, unsigned *n);
void be_vec_advance(struct bufio_io *io, uint64_t bytes);
/* The staging buffer an engine attached to a merged io (NULL: none). The
 * engine gives it back before completing the io. */
char *be_vec_staging(const struct bufio_io *io);
void be_vec_set_staging(struct bufio_io *io, char *buf);

/*
 * Staging buffers (bounce.c): an engine may read a merged run of scattered
 * blocks into one contiguous buffer and copy it out, so the device sees a
 * few large segments instead of one per block. Thread-safe; get and put
 * only take the pool's own short lock.
 */
#define BE_BOUNCE_MAX        8
#define BE_BOUNCE_BYTES      (1u << 20) /* the largest merged io */
#define BE_BOUNCE_MIN_PIECES 8          /* fewer separate pieces: read in place */
struct be_bounce {
	pthread_mutex_t lock;
	unsigned want;    /* buffers to map on first use, at most; 0 = never stage */
	unsigned nmapped; /* buffers mapped (the share it got) */
	unsigned nfree;   /* of free[] */
	bool tried;       /* the mapping was attempted (and failed if !mem) */
	char *mem;
	char *free[BE_BOUNCE_MAX];
};

/* Set up a pool of @n buffers (at most BE_BOUNCE_MAX), mapped on first use. */
void be_bounce_init(struct be_bounce *b, unsigned n);
/*
 * A staging buffer for a read of @len bytes into @iov[@n], or NULL to read
 * in place: too short or too few separate pieces to gain, none free, or no
 * memory for the pool.
 */
char *be_bounce_get(struct be_bounce *b, const struct iovec *iov, unsigned n, uint64_t len);
/* Give back a buffer of be_bounce_get(). */
void be_bounce_put(struct be_bounce *b, char *buf);
/* Copy @len bytes of @src out over @iov[@n], in order. */
void be_bounce_scatter(const struct iovec *iov, unsigned n, const char *src, uint64_t len);
/* Unmap the pool; no buffer may be in use. */
void be_bounce_destroy(struct be_bounce *b);
/* Buffers mapped by all pools of the process (for tests). */
unsigned be_bounce_mapped(void);

/* Release what bufio_backend_open() set up in @f (fd, path). */
void be_file_release(struct be_file *f);

/*
 * A pool of worker threads running validated ios with be_file_exec(). The
 * thread-pool engine is one; the io_uring engine keeps a one-thread pool for
 * the block-device discards io_uring cannot do.
 */
struct be_pool {
	struct be_file *f;
	pthread_mutex_t lock;
	pthread_cond_t work;
	struct bufio_io *head, **tail;
	bool stopping;
	unsigned nthreads;
	pthread_t *tids;
};

int be_pool_start(struct be_pool *p, struct be_file *f, unsigned nthreads, const char *tname);
/* Queue a ->next list of validated ios. Never blocks beyond the queue lock. */
void be_pool_queue(struct be_pool *p, struct bufio_io *ios);
/* Stop and join the workers; the queue must be empty (no I/O in flight). */
void be_pool_stop(struct be_pool *p);

/*
 * Engine constructors. @f carries the opened file; on success the engine
 * copies it into its own structure and owns it. On failure nothing of @f is
 * released and a negative errno is returned; *ring_failed tells the caller
 * that io_uring itself is unavailable (so AUTO may fall back).
 */
int be_uring_create(const struct be_file *f, const struct bufio_backend_options *opts,
                    struct bufio_backend **out, bool *ring_failed);
int be_threads_create(const struct be_file *f, const struct bufio_backend_options *opts,
                      struct bufio_backend **out);

#endif
