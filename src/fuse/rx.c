/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Receiving FUSE requests so that a write's data lands in cache memory.
 *
 * libfuse reads a request into one flat buffer, and the write path then
 * copied the data into cache blocks: with 1 MiB writes that copy was 15% of
 * the daemon's CPU. Here a worker that has just served a large write to a
 * device reads the next request with readv(2): the header and
 * fuse_write_in (80 bytes) into a small buffer, the rest into block-size
 * pieces of that device's block memory. A WRITE's data thus arrives block by
 * block in memory the cache adopts (bufio_new_adopt) instead of copying.
 * Any other request read that way is gathered into the flat buffer first
 * when it is longer than 80 bytes (READ, GETATTR, FLUSH, FSYNC are not).
 * Otherwise the worker reads flat, as libfuse would: importing an iovec of
 * 257 entries costs the kernel more than the copy saves for small writes
 * and costs reads for nothing (see learn()).
 *
 * The WRITE still goes through libfuse (fuse_session_process_buf), so its
 * dispatch and reply stay libfuse's: libfuse gets the 80-byte header alone,
 * and the write handler recognises the data pointer libfuse derives from it
 * (fs_rx_payload) and takes the pieces instead. libfuse only forms that
 * pointer (header + sizeof(fuse_write_in)); it reads nothing past the
 * header. A different pointer means a libfuse that works otherwise: the
 * write fails with EIO rather than reading past the header.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/fuse.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "daemon/log.h"
#include "fuse/fs.h"

#define RX_HDR (sizeof(struct fuse_in_header) + sizeof(struct fuse_write_in))
/* The largest request read flat: a maximal write and its header, with room
 * to spare as in libfuse's buffer. */
#define RX_FLAT (FS_MAX_IO + 4096)
/* Writes from this size on are read into pieces (see learn()). */
#define RX_PIECES_MIN (64u << 10)

/* A request's first RX_HDR bytes: its header, and fuse_write_in for a WRITE. */
union rx_head {
	struct fuse_in_header in;
	unsigned char b[RX_HDR];
};

struct fs_rx {
	struct fs_ctx *ctx;
	struct fuse_session *se;
	union rx_head hdr;
	struct fs_device *dev; /* whose memory the pieces are; NULL: none */
	bool use_pieces;       /* read the next request into the pieces */
	void **pieces;
	struct iovec *iov; /* hdr, then the pieces */
	unsigned n;        /* pieces */
	unsigned piece;    /* bytes per piece: dev's block size */
	char *flat;        /* RX_FLAT bytes, mapped: pages come and go with use */
	size_t len;        /* of the request received, 0: none */
	bool in_pieces;    /* it was read into hdr and the pieces */
};

/* A WRITE handed to libfuse as its header alone, and where its data is. */
struct rx_slot {
	const char *placeholder; /* the data pointer libfuse derives */
	struct fs_src *src;
};

/* The WRITE this thread is dispatching that way, if any. */
static _Thread_local const struct rx_slot *rx_current;

void fs_src_copy(const struct fs_src *src, size_t pos, char *dst, size_t len)
{
	if (!src) {
		memset(dst, 0, len);
		return;
	}
	if (src->flat) {
		memcpy(dst, src->flat + pos, len);
		return;
	}
	while (len) {
		size_t in = pos % src->piece, step = src->piece - in;

		if (step > len)
			step = len;
		memcpy(dst, (const char *)src->pieces[pos / src->piece] + in, step);
		dst += step;
		pos += step;
		len -= step;
	}
}

struct fs_src *fs_rx_payload(const char *buf, struct fs_src *flat)
{
	const struct rx_slot *slot = rx_current;

	if (!slot) {
		memset(flat, 0, sizeof(*flat));
		flat->flat = buf;
		return flat;
	}
	if (buf == slot->placeholder)
		return slot->src;
	fs_log(LOG_ERR, "write data pointer is not where this libfuse should put it; "
	                "failing the write");
	return NULL;
}

/* Pieces as many as a maximal write needs, and readv takes them all. */
static unsigned pieces_for(const struct fs_device *dev)
{
	unsigned bs = dev->spec.block_size;
	unsigned n = (FS_MAX_IO + bs - 1) / bs;

	return dev->client && n + 1 <= IOV_MAX ? n : 0;
}

static void rx_unprovision(struct fs_rx *rx)
{
	for (unsigned i = 0; i < rx->n; i++)
		bufio_free_block_data(rx->dev->client, rx->pieces[i]);
	free(rx->pieces);
	free(rx->iov);
	rx->pieces = NULL;
	rx->iov = NULL;
	rx->n = 0;
	rx->dev = NULL;
}

/* Take pieces of @dev's memory; without them (no memory) read flat. */
static void rx_provision(struct fs_rx *rx, struct fs_device *dev)
{
	unsigned n = pieces_for(dev);

	rx_unprovision(rx);
	if (!n)
		return;
	rx->pieces = calloc(n, sizeof(*rx->pieces));
	rx->iov = calloc(n + 1, sizeof(*rx->iov));
	if (!rx->pieces || !rx->iov) {
		rx_unprovision(rx);
		return;
	}
	rx->dev = dev;
	rx->piece = dev->spec.block_size;
	for (; rx->n < n; rx->n++) {
		rx->pieces[rx->n] = bufio_alloc_block_data(dev->client);
		if (!rx->pieces[rx->n]) {
			rx_unprovision(rx);
			return;
		}
	}
}

struct fs_rx *fs_rx_new(struct fs_ctx *ctx, struct fuse_session *se)
{
	struct fs_rx *rx = calloc(1, sizeof(*rx));

	if (!rx)
		return NULL;
	rx->ctx = ctx;
	rx->se = se;
	rx->flat = mmap(NULL, RX_FLAT, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (rx->flat == MAP_FAILED) {
		free(rx);
		return NULL;
	}
	return rx;
}

void fs_rx_free(struct fs_rx *rx)
{
	if (!rx)
		return;
	rx_unprovision(rx);
	if (rx->flat)
		munmap(rx->flat, RX_FLAT);
	free(rx);
}

static ssize_t read_flat(struct fs_rx *rx)
{
	return read(fuse_session_fd(rx->se), rx->flat, RX_FLAT);
}

static int by_address(const void *x, const void *y)
{
	uintptr_t a = (uintptr_t)(*(void *const *)x);
	uintptr_t b = (uintptr_t)(*(void *const *)y);

	return a < b ? -1 : a > b;
}

/*
 * Read the next request into the header and the pieces, in address order.
 * A write that adopted pieces left the memory of the buffers it replaced in
 * their slots, in eviction order; sorted, the next write's blocks get that
 * memory in order, and neighbouring pieces are one iovec entry and later
 * one write-back segment (bufio_expect_new keeps the memory in runs).
 */
static ssize_t read_pieces(struct fs_rx *rx)
{
	unsigned n = 1;

	qsort(rx->pieces, rx->n, sizeof(*rx->pieces), by_address);
	rx->iov[0].iov_base = rx->hdr.b;
	rx->iov[0].iov_len = RX_HDR;
	for (unsigned i = 0; i < rx->n; i++) {
		struct iovec *last = &rx->iov[n - 1];

		if (n > 1 && (char *)last->iov_base + last->iov_len == rx->pieces[i]) {
			last->iov_len += rx->piece;
			continue;
		}
		rx->iov[n].iov_base = rx->pieces[i];
		rx->iov[n].iov_len = rx->piece;
		n++;
	}
	return readv(fuse_session_fd(rx->se), rx->iov, (int)n);
}

struct fs_device *fs_rx_write_target(const struct fs_ctx *ctx, const void *hdr,
                                     const void *write_in, size_t data_len)
{
	struct fuse_in_header in;
	struct fuse_write_in w;
	struct fs_node n;

	memcpy(&in, hdr, sizeof(in));
	memcpy(&w, write_in, sizeof(w));
	if (!data_len || in.opcode != FUSE_WRITE || w.size != data_len)
		return NULL;
	if (!fs_node_of(ctx, in.nodeid, &n) || n.kind != FS_K_DEVFILE)
		return NULL;
	return ctx->devs[n.dev];
}

/* The device the request @in of @len bytes in all writes to, or NULL. @in
 * is followed by the rest of the request's first RX_HDR bytes. */
static struct fs_device *write_target(const struct fs_rx *rx, const struct fuse_in_header *in,
                                      size_t len)
{
	if (len <= RX_HDR)
		return NULL;
	return fs_rx_write_target(rx->ctx, in, in + 1, len - RX_HDR);
}

void fs_rx_dispatch_write(struct fuse_session *se, void *head, struct fs_src *src)
{
	const struct rx_slot slot = {.placeholder = (const char *)head + RX_HDR, .src = src};
	struct fuse_buf buf = {.mem = head, .size = RX_HDR};

	rx_current = &slot;
	fuse_session_process_buf(se, &buf);
	rx_current = NULL;
}

/* Answer the request @in with @err without libfuse (it never saw it). */
static void reply_err_raw(struct fs_rx *rx, const struct fuse_in_header *in, int err)
{
	struct fuse_out_header out = {.len = sizeof(out), .error = -err, .unique = in->unique};

	if (write(fuse_session_fd(rx->se), &out, sizeof(out)) < 0)
		fs_log(LOG_ERR, "cannot answer a FUSE request: %s", strerror(errno));
}

static void process(struct fs_rx *rx, void *mem, size_t len)
{
	struct fuse_buf buf = {.mem = mem, .size = len};

	fuse_session_process_buf(rx->se, &buf);
}

/* A request read into hdr and pieces, @len bytes in all. */
static void dispatch_pieces(struct fs_rx *rx, size_t len)
{
	struct fs_src all = {.pieces = rx->pieces, .piece = rx->piece};

	if (len <= RX_HDR) {
		process(rx, rx->hdr.b, len);
		return;
	}
	if (rx->dev && write_target(rx, &rx->hdr.in, len) == rx->dev) {
		all.owner = rx->dev->client;
		fs_rx_dispatch_write(rx->se, rx->hdr.b, &all);
		return;
	}
	if (len > RX_FLAT) {
		/* Only a batch of forgets, which needs no answer, can be this
		 * long (blocks over 1 MiB make the pieces hold more). */
		fs_log(LOG_ERR, "a %zu-byte FUSE request (opcode %u) is too long; dropped", len,
		       rx->hdr.in.opcode);
		reply_err_raw(rx, &rx->hdr.in, EIO);
		return;
	}
	memcpy(rx->flat, rx->hdr.b, RX_HDR);
	fs_src_copy(&all, 0, rx->flat + RX_HDR, len - RX_HDR);
	process(rx, rx->flat, len);
}

/*
 * Choose how to read the next request from the one just served: into
 * pieces after a large write to a device (the pieces follow that device),
 * flat otherwise. Reading into pieces costs the kernel an iovec of 257
 * entries to import per request, about 5% of a hot 4 KiB read, and saves a
 * copy only for a write.
 */
static void learn(struct fs_rx *rx, const struct fuse_in_header *in, size_t len)
{
	struct fs_device *target = write_target(rx, in, len);
	bool was = rx->use_pieces;

	rx->use_pieces = target && len - RX_HDR >= RX_PIECES_MIN && pieces_for(target);
	if (rx->use_pieces && target != rx->dev)
		rx_provision(rx, target);
	rx->use_pieces = rx->use_pieces && rx->dev;
	/* The pieces take over: the flat buffer's megabyte need not stay
	 * resident beside them (8 workers: 8 MiB nearer the budget). */
	if (rx->use_pieces && !was)
		madvise(rx->flat, RX_FLAT, MADV_DONTNEED);
	/* Back to flat reads: the pieces go back to the cache's memory rather
	 * than sit outside the budget (8 workers: 8 MiB) until the next large
	 * write. test_load_rss at a 2.6 MB budget peaked at 22-37 MiB against a
	 * bound of 35.5 with the pieces kept. */
	if (!rx->use_pieces && was)
		rx_unprovision(rx);
}

int fs_rx_receive(struct fs_rx *rx)
{
	bool pieces = rx->use_pieces;
	ssize_t res = pieces ? read_pieces(rx) : read_flat(rx);

	rx->len = 0;
	if (res < 0) {
		int err = errno;

		if (err == ENODEV) { /* unmounted */
			fuse_session_exit(rx->se);
			return 0;
		}
		/* ENOENT: the request was withdrawn (interrupted) before we got it. */
		return err == ENOENT ? -EAGAIN : -err;
	}
	if ((size_t)res < sizeof(struct fuse_in_header)) {
		fs_log(LOG_ERR, "short read on /dev/fuse: %zd bytes", res);
		return -EIO;
	}
	rx->len = (size_t)res;
	rx->in_pieces = pieces;
	return 1;
}

void fs_rx_process(struct fs_rx *rx)
{
	size_t len = rx->len;
	union rx_head h;

	if (!len)
		return;
	rx->len = 0;
	/* Processing may reuse the buffers: keep the header for learn(). */
	memcpy(h.b, rx->in_pieces ? rx->hdr.b : (unsigned char *)rx->flat,
	       len < RX_HDR ? len : RX_HDR);
	if (rx->in_pieces) {
		dispatch_pieces(rx, len);
	} else {
		if (h.in.opcode == FUSE_INIT && rx->ctx->uring)
			fs_uring_init_request(rx->ctx->uring, rx->flat, len);
		process(rx, rx->flat, len);
	}
	learn(rx, &h.in, len);
}
