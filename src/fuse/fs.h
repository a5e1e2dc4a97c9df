/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The FUSE frontend of bufiofs: a fixed namespace (one file per served
 * device plus the control directory) served with libfuse's low-level API.
 */
#ifndef BUFIOFS_FUSE_FS_H
#define BUFIOFS_FUSE_FS_H

#define FUSE_USE_VERSION 35

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "daemon/device.h"

/* Largest read or write request the kernel sends us (max_read/max_write). */
#define FS_MAX_IO (1u << 20)

/* What the frontend serves and how. Lives as long as the session. */
struct fs_ctx {
	struct fs_device **devs;
	unsigned ndevs;
	bool kernel_cache; /* let the page cache keep the device files' data */
	uid_t uid;         /* owner of every inode: the daemon's user */
	gid_t gid;
	struct timespec start; /* times of every inode */
	/* Registry sizes, counted once (the registry never changes). */
	unsigned n_global;
	unsigned n_device;
	/* Open control file handles: the kernel sends no RELEASE for those
	 * still open when the session ends, so they are freed at destroy. */
	pthread_mutex_t ctl_lock;
	struct ctl_handle *ctl_open;
	/* FUSE requests over io_uring when the kernel allows; NULL: never. */
	struct fs_uring *uring;
};

/* Fill the context for @devs; the array must outlive the session. ctx->uring
 * starts NULL: set it (fs_uring_new) before fs_mount to use io_uring. */
void fs_ctx_init(struct fs_ctx *ctx, struct fs_device **devs, unsigned ndevs, bool kernel_cache);

/*
 * Create the session and mount it at @mountpoint. @args carries FUSE mount
 * options ("-o ...", argv[0] first); max_read and default_permissions are
 * added here. Returns NULL after logging the reason.
 */
struct fuse_session *fs_mount(struct fs_ctx *ctx, const char *mountpoint, struct fuse_args *args);

/*
 * The worker pool serving @se: @nthreads threads (at least 1) that each take
 * requests from /dev/fuse until the session ends (unmount, or
 * fuse_session_exit() followed by fs_loop_interrupt()). A worker blocks while
 * its request waits for backing I/O, so the pool size bounds the requests
 * served at once. Of those, at most @running (0 or more than @nthreads: all)
 * receive or process requests at a time while none waits for I/O; each
 * worker waiting in libbufio lets a parked one in. Returns NULL (logged) if no
 * thread could be started.
 */
struct fs_loop;
struct fs_loop *fs_loop_start(struct fs_ctx *ctx, struct fuse_session *se, unsigned nthreads,
                              unsigned running);

/*
 * Interrupt workers blocked in read(2) so they see fuse_session_exit().
 * A poke can land just before a worker blocks: repeat until fs_loop_join()
 * has returned. Any thread; valid until fs_loop_free().
 */
void fs_loop_interrupt(struct fs_loop *l);

/* Wait for every worker to end. Returns 0 or the first -errno of a read. */
int fs_loop_join(struct fs_loop *l);

/* Free the pool after fs_loop_join() (and after nobody can interrupt it). */
void fs_loop_free(struct fs_loop *l);

/*
 * The gate of the worker pool (gate.c): at most @limit of @nworkers workers
 * (0 or more: all) run at once, not counting those waiting in libbufio for
 * I/O (each such wait lets a parked worker in) nor those stuck on one request
 * for over a second. Workers are numbered 0..@nworkers-1; each calls the
 * functions below with its number, from its own thread. NULL when out of
 * memory.
 */
struct fs_gate;
struct fs_gate *fs_gate_new(struct fuse_session *se, unsigned nworkers, unsigned limit);
/* After every worker has left. */
void fs_gate_free(struct fs_gate *g);
/* A worker starts: blocks until its turn (or the session ends), then has
 * its libbufio waits reported to the gate. */
void fs_gate_enter(struct fs_gate *g, unsigned worker);
/* Between requests: blocks while more than the limit run. */
void fs_gate_pass(struct fs_gate *g, unsigned worker);
/* @worker waits in read(2) (@on) or processes what it read (!@on); it
 * processed one more request. Never block: what the watcher looks at. */
void fs_gate_receiving(struct fs_gate *g, unsigned worker, bool on);
void fs_gate_served(struct fs_gate *g, unsigned worker);
/* @worker ends (the session has ended): parked ones see it too. */
void fs_gate_leave(struct fs_gate *g, unsigned worker);
/* Wake every parked worker to look at the session's end. Any thread. */
void fs_gate_open(struct fs_gate *g);

/*
 * A read of [off, off + len) is being served from @dev's cache: if it goes
 * on where the previous one ended, start reading the next read_ahead_kb in
 * the background (bufio_prefetch). Never blocks on I/O.
 */
void fs_read_ahead(struct fs_device *dev, uint64_t off, uint64_t len);

/* Unmount (if still mounted) and free the session. */
void fs_unmount(struct fuse_session *se);

/*----------------------------------------------------------------
 * Internal to src/fuse: inode numbers and per-kind operations.
 *--------------------------------------------------------------*/

/*
 * The namespace is fixed, so inode numbers are computed, not allocated:
 * kind in the high bits, device index and registry index below. Lookup
 * counts need no bookkeeping because nothing is ever freed.
 */
enum fs_kind {
	FS_K_ROOT = 0,
	FS_K_CTLDIR = 1,  /* MOUNTPOINT/control */
	FS_K_DEVFILE = 2, /* MOUNTPOINT/<device> */
	FS_K_DEVDIR = 3,  /* MOUNTPOINT/control/<device> */
	FS_K_GCTL = 4,    /* MOUNTPOINT/control/<entry> */
	FS_K_DCTL = 5,    /* MOUNTPOINT/control/<device>/<entry> */
};

struct fs_node {
	enum fs_kind kind;
	unsigned dev;   /* device index (DEVFILE, DEVDIR, DCTL) */
	unsigned entry; /* registry index (GCTL, DCTL) */
};

fuse_ino_t fs_ino(enum fs_kind kind, unsigned dev, unsigned entry);
/* Decode @ino; false if it names nothing in this mount. */
bool fs_node_of(const struct fs_ctx *ctx, fuse_ino_t ino, struct fs_node *n);

static inline struct fs_ctx *fs_req_ctx(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/*
 * Receiving requests (rx.c): one receive area per worker. In a stream of
 * large writes to a device file, a write's data is read straight into
 * block-size pieces of that device's block memory, for the cache to adopt
 * rather than copy.
 */
struct fs_rx;
/* NULL when out of memory. Reads flat when it gets no pieces. */
struct fs_rx *fs_rx_new(struct fs_ctx *ctx, struct fuse_session *se);
void fs_rx_free(struct fs_rx *rx);
/*
 * Read one request. Blocks in read(2). Returns 1 when one was received (then
 * call fs_rx_process), 0 when the session has ended (unmounted), -EINTR or
 * -EAGAIN to be called again, or another -errno of the read.
 */
int fs_rx_receive(struct fs_rx *rx);
/* Process and answer the request fs_rx_receive got; nothing if none. May
 * block for backing I/O. */
void fs_rx_process(struct fs_rx *rx);

/*
 * Where a write's data is: one flat buffer, or block-size pieces of
 * @owner's block memory, byte i at pieces[i / piece] + i % piece, each of
 * which a write to @owner may adopt, leaving other memory in its slot.
 */
struct fs_src {
	const char *flat;
	void **pieces;
	unsigned piece;
	struct bufio_client *owner;
};

/*
 * Dispatch a WRITE through libfuse with only its header and fuse_write_in
 * (the first 80 bytes, at @head): the write handler finds the data in @src
 * (fs_rx_payload). Replies as any dispatch does; @src is not kept.
 */
void fs_rx_dispatch_write(struct fuse_session *se, void *head, struct fs_src *src);

/*
 * The device file a WRITE writes to, or NULL if it is not a WRITE of
 * @data_len bytes to a device file. @hdr is its fuse_in_header and
 * @write_in its fuse_write_in (unaligned is fine).
 */
struct fs_device *fs_rx_write_target(const struct fs_ctx *ctx, const void *hdr,
                                     const void *write_in, size_t data_len);

/* Copy bytes [@pos, @pos + @len) of @src to @dst; zeroes if @src is NULL. */
void fs_src_copy(const struct fs_src *src, size_t pos, char *dst, size_t len);

/*
 * The data of the write request @buf came with, from the write handler: the
 * worker's pieces when @buf is the placeholder this thread's worker gave
 * libfuse; otherwise @buf itself, described in *@flat. NULL (logged) when
 * this thread dispatched pieces but @buf is not their placeholder: the data
 * is not at @buf, fail the write.
 */
struct fs_src *fs_rx_payload(const char *buf, struct fs_src *flat);

/*
 * FUSE requests over io_uring (uring.c): per-CPU queues of ring entries,
 * each queue served by a few threads, requests dispatched through libfuse
 * and answered into the ring. /dev/fuse workers still take FORGET and
 * INTERRUPT, and everything when the kernel does not do io_uring.
 */
struct fs_uring;
/* Whether the fuse module allows io_uring (its enable_uring parameter). */
bool fs_uring_kernel_enabled(void);
/* Sized for this machine's CPUs; starts nothing. NULL when out of memory. */
struct fs_uring *fs_uring_new(struct fs_ctx *ctx);
/* Route @se's replies through the transport (after fuse_session_mount). */
int fs_uring_attach(struct fs_uring *u, struct fuse_session *se);
/*
 * Start the ring threads and wait until each has set up its ring; call
 * before anything reads the INIT request. -errno when some could not: INIT
 * then keeps every request on /dev/fuse (the threads leave when it is
 * answered). Threads run until fs_uring_interrupt() or the session ends.
 */
int fs_uring_start(struct fs_uring *u);
/* The INIT request @req (@len bytes), from the worker about to dispatch it. */
void fs_uring_init_request(struct fs_uring *u, const void *req, size_t len);
/* Stop the threads (any thread; repeat like fs_loop_interrupt). */
void fs_uring_interrupt(struct fs_uring *u);
/* Wait for the threads; 0 or the first -errno a queue failed with. */
int fs_uring_join(struct fs_uring *u);
/* After fs_uring_join() and fs_unmount(); NULL is fine. */
void fs_uring_free(struct fs_uring *u);

/* Device file operations (devfile.c). */
void fs_dev_open(fuse_req_t req, struct fs_ctx *ctx, struct fs_device *dev,
                 struct fuse_file_info *fi);
void fs_dev_read(fuse_req_t req, struct fs_device *dev, size_t size, off_t off);
/*
 * Start reading the blocks of [off, off + size) into @dev's cache in the
 * background, for a read that will be served later (clamped to the device;
 * nothing under cache_mode none). Never blocks on I/O; takes the mode lock
 * shared, so it waits only for a cache_mode switch in progress.
 */
void fs_dev_prefetch(struct fs_device *dev, size_t size, uint64_t off);
void fs_dev_write(fuse_req_t req, struct fs_device *dev, const char *buf, size_t size, off_t off);
void fs_dev_fsync(fuse_req_t req, struct fs_device *dev);
void fs_dev_fallocate(fuse_req_t req, struct fs_device *dev, int mode, off_t off, off_t len);

/* Control file operations (control.c). */
const struct ctl_entry *fs_ctl_entry(const struct fs_node *n);
mode_t fs_ctl_mode(const struct ctl_entry *e);
void fs_ctl_open(fuse_req_t req, struct fs_ctx *ctx, const struct fs_node *n,
                 struct fuse_file_info *fi);
void fs_ctl_read(fuse_req_t req, struct fuse_file_info *fi, size_t size, off_t off);
void fs_ctl_write(fuse_req_t req, struct fuse_file_info *fi, const char *buf, size_t size);
void fs_ctl_release(struct fs_ctx *ctx, struct fuse_file_info *fi);
/* Free every handle still open; at session end, when no request can come. */
void fs_ctl_release_all(struct fs_ctx *ctx);

/* The operations table (ops.c). */
extern const struct fuse_lowlevel_ops fs_ops;

#endif
