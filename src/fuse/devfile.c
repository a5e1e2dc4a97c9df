/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The device file: reads, writes, fsync and discard of the served device,
 * split into cache blocks and passed through libbufio (or, in cache mode
 * "none", straight to the backend).
 */
#define _GNU_SOURCE /* IOV_MAX */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "fuse/fs.h"

/* The blocks a byte range touches, and where it starts and ends in them. */
struct span {
	uint64_t first; /* first block */
	unsigned n;     /* number of blocks */
	unsigned head;  /* offset in the first block */
	unsigned tail;  /* end in the last block (1..bs) */
};

static struct span span_of(unsigned bs, uint64_t off, uint64_t len)
{
	uint64_t last = (off + len - 1) / bs;
	struct span s = {
	    .first = off / bs,
	    .head = off % bs,
	    .tail = (off + len - 1) % bs + 1,
	};

	s.n = last - s.first + 1;
	return s;
}

/* Byte range of block @i of @s that the request covers. */
static void span_piece(const struct span *s, unsigned bs, unsigned i, unsigned *start,
                       unsigned *end)
{
	*start = i == 0 ? s->head : 0;
	*end = i == s->n - 1 ? s->tail : bs;
}

static void release_all(struct bufio_buffer **bufs, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		bufio_release(bufs[i]);
}

/*----------------------------------------------------------------
 * Cache mode "none": straight to the backend.
 *--------------------------------------------------------------*/

/*
 * An aligned bounce buffer covering [off, off + len) widened to the
 * backend's alignment, which O_DIRECT backends require of buffer, offset and
 * length alike.
 */
struct bounce {
	void *mem;
	uint64_t start; /* backend offset of mem */
	uint64_t len;
	size_t delta; /* where the caller's range starts in mem */
};

static int bounce_alloc(struct fs_device *dev, uint64_t off, uint64_t len, struct bounce *bb)
{
	uint64_t align = bufio_backend_alignment(dev->be);
	uint64_t end;

	if (align < 512)
		align = 512;
	bb->start = off & ~(align - 1);
	end = (off + len + align - 1) & ~(align - 1);
	if (end > bufio_backend_size(dev->be))
		end = bufio_backend_size(dev->be);
	bb->len = end - bb->start;
	bb->delta = off - bb->start;
	if (posix_memalign(&bb->mem, align < 4096 ? 4096 : align, bb->len))
		return -ENOMEM;
	return 0;
}

static void read_uncached(fuse_req_t req, struct fs_device *dev, size_t size, off_t off)
{
	struct bounce bb;
	int err;

	err = bounce_alloc(dev, off, size, &bb);
	if (!err)
		err = bufio_backend_rw_sync(dev->be, BUFIO_OP_READ, bb.mem, bb.start, bb.len);
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_buf(req, (char *)bb.mem + bb.delta, size);
	free(bb.mem);
}

/*
 * Unaligned edges are read first so the widened write carries the bytes
 * around the caller's range unchanged. Two such writes racing on one
 * sector can lose an edge; cache mode "none" is for measurement, not for
 * concurrent unaligned writers.
 */
static int write_uncached(struct fs_device *dev, const struct fs_src *src, size_t size, off_t off)
{
	struct bounce bb;
	int err;

	err = bounce_alloc(dev, off, size, &bb);
	if (err)
		return err;
	if (bb.delta || bb.len != size)
		err = bufio_backend_rw_sync(dev->be, BUFIO_OP_READ, bb.mem, bb.start, bb.len);
	if (!err) {
		fs_src_copy(src, 0, (char *)bb.mem + bb.delta, size);
		err = bufio_backend_rw_sync(dev->be, BUFIO_OP_WRITE, bb.mem, bb.start, bb.len);
	}
	free(bb.mem);
	return err;
}

/*----------------------------------------------------------------
 * Reads through the cache
 *--------------------------------------------------------------*/

/*
 * Reply from held buffers. fuse_reply_iov hands the buffers to writev(2)
 * as they are; fuse_reply_data in libfuse 3.14 copies any bufvec of more
 * than one buffer into a bounce buffer first, so it is not used here. Only
 * more pieces than writev accepts (tiny blocks) are gathered by copying.
 */
static void reply_pieces(fuse_req_t req, struct iovec *iov, unsigned n, size_t size)
{
	char *flat, *p;

	if (n < IOV_MAX) {
		fuse_reply_iov(req, iov, (int)n); /* n < IOV_MAX */
		return;
	}
	flat = malloc(size);
	if (!flat) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	p = flat;
	for (unsigned i = 0; i < n; i++) {
		memcpy(p, iov[i].iov_base, iov[i].iov_len);
		p += iov[i].iov_len;
	}
	fuse_reply_buf(req, flat, size);
	free(flat);
}

static void read_cached(fuse_req_t req, struct fs_device *dev, size_t size, off_t off)
{
	unsigned bs = dev->spec.block_size;
	struct span s = span_of(bs, off, size);
	struct bufio_buffer **bufs;
	struct iovec *iov;
	unsigned held = 0;
	int err = 0;

	bufs = malloc(s.n * (sizeof(struct bufio_buffer *) + sizeof(struct iovec)));
	if (!bufs) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	iov = (struct iovec *)(bufs + s.n);
	/* Start every missing block's read at once, then collect them in order. */
	if (s.n > 1)
		bufio_prefetch(dev->client, s.first, s.n);
	fs_read_ahead(dev, (uint64_t)off, size);
	for (; held < s.n; held++) {
		unsigned start, end;
		char *data = bufio_read(dev->client, s.first + held, &bufs[held]);

		if (!data) {
			err = errno;
			break;
		}
		span_piece(&s, bs, held, &start, &end);
		iov[held].iov_base = data + start;
		iov[held].iov_len = end - start;
	}
	if (err)
		fuse_reply_err(req, err);
	else
		reply_pieces(req, iov, s.n, size);
	/* The reply has been written out: the data may now change or go. */
	release_all(bufs, held);
	free(bufs);
}

void fs_dev_prefetch(struct fs_device *dev, size_t size, uint64_t off)
{
	unsigned bs = dev->spec.block_size;
	struct span s;

	if (off >= dev->size || size == 0)
		return;
	if (size > dev->size - off)
		size = dev->size - off;
	s = span_of(bs, off, size);
	/* Under the mode lock: blocks read into the cache after a switch to
	 * cache_mode none would go stale under its uncached writes. */
	pthread_rwlock_rdlock(&dev->mode_lock);
	if (atomic_load(&dev->cache_mode) != FS_CACHE_NONE)
		bufio_prefetch(dev->client, s.first, s.n);
	pthread_rwlock_unlock(&dev->mode_lock);
}

void fs_dev_read(fuse_req_t req, struct fs_device *dev, size_t size, off_t off)
{
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if ((uint64_t)off >= dev->size || size == 0) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > dev->size - off)
		size = dev->size - off; /* short read at the end of the device */
	pthread_rwlock_rdlock(&dev->mode_lock);
	if (atomic_load(&dev->cache_mode) == FS_CACHE_NONE)
		read_uncached(req, dev, size, off);
	else
		read_cached(req, dev, size, off);
	pthread_rwlock_unlock(&dev->mode_lock);
}

/*----------------------------------------------------------------
 * Writes through the cache
 *--------------------------------------------------------------*/

/*
 * Whole blocks per write chunk: a maximal FUSE write, at least one block.
 * A chunk that starts mid-block touches one more; with the smallest block
 * size that bounds the buffers one request holds at once.
 */
#define CHUNK_MAX_HELD (FS_MAX_IO / 512 + 1)

static unsigned chunk_blocks(unsigned bs)
{
	return (FS_MAX_IO / bs) ? (FS_MAX_IO / bs) : 1;
}

/*
 * A whole block whose data sits in one of @src's pieces, in this device's
 * memory: an uncached block adopts the piece, a cached one is copied into.
 */
static char *adopt_block(struct fs_device *dev, uint64_t block, const struct fs_src *src,
                         size_t pos, struct bufio_buffer **bp)
{
	void **slot = &src->pieces[pos / src->piece];
	void *mine = *slot;
	char *data = bufio_new_adopt(dev->client, block, slot, bp);

	if (data && data != mine)
		memcpy(data, mine, src->piece);
	return data;
}

static bool adoptable(const struct fs_device *dev, const struct fs_src *src, size_t pos)
{
	return src && src->pieces && src->owner == dev->client && pos % src->piece == 0;
}

/*
 * Fill block i of @s from bytes @pos.. of @src (NULL: zeroes). Whole blocks
 * need no read and are marked dirty by the caller, all at once; partial ones
 * are read-modify-written and marked here.
 */
static int fill_block(struct fs_device *dev, const struct span *s, unsigned i,
                      const struct fs_src *src, size_t pos, struct bufio_buffer **bp)
{
	unsigned bs = dev->spec.block_size, start, end;
	bool whole;
	char *data;

	span_piece(s, bs, i, &start, &end);
	whole = start == 0 && end == bs;
	if (whole && adoptable(dev, src, pos))
		return adopt_block(dev, s->first + i, src, pos, bp) ? 0 : -errno;
	if (whole)
		data = bufio_new(dev->client, s->first + i, bp);
	else
		data = bufio_read(dev->client, s->first + i, bp);
	if (!data)
		return -errno;
	/* A background write of older data may still be reading the buffer. */
	if (!whole)
		bufio_wait_writeback(*bp);
	fs_src_copy(src, pos, data + start, end - start);
	if (!whole)
		bufio_mark_partial_buffer_dirty(*bp, start, end);
	return 0;
}

/* Mark the whole blocks among the first @n of @s dirty (the edges are). */
static void mark_whole(struct fs_device *dev, const struct span *s, struct bufio_buffer **bufs,
                       unsigned n)
{
	unsigned bs = dev->spec.block_size, first = 0, end = n;

	if (n && s->head)
		first = 1;
	if (end > first && end == s->n && s->tail != bs)
		end--;
	if (end > first)
		bufio_mark_buffers_dirty(bufs + first, end - first);
}

/*
 * Write-through: submit every buffer this request dirtied as one batch,
 * then wait for them. Returns how many leading blocks are written, with the
 * first error in *err (found by retrying one by one after a failed batch).
 */
static unsigned write_through(struct fs_device *dev, struct bufio_buffer **bufs, unsigned n,
                              int *err)
{
	*err = bufio_write_buffers(bufs, n);
	if (!*err)
		return n;
	for (unsigned i = 0; i < n; i++) {
		*err = bufio_write_buffer(bufs[i]);
		if (*err)
			return i;
	}
	return n;
}

/*
 * Write [off, off + size) through the cache from bytes @pos.. of @src, at
 * most CHUNK_MAX_HELD blocks (all held until done). Returns bytes written
 * (possibly short when a later block failed) or -errno when nothing was.
 */
static ssize_t write_chunk(struct fs_device *dev, const struct fs_src *src, size_t pos, size_t size,
                           uint64_t off, bool through)
{
	unsigned bs = dev->spec.block_size;
	struct span s = span_of(bs, off, size);
	struct bufio_buffer *bufs[CHUNK_MAX_HELD];
	unsigned done = 0, ok;
	size_t bytes = 0;
	int err = 0;

	/* Both partial edges need reads: start them together. */
	if (s.head)
		bufio_prefetch(dev->client, s.first, 1);
	if (s.tail != bs && (s.n > 1 || !s.head))
		bufio_prefetch(dev->client, s.first + s.n - 1, 1);
	/* The uncached blocks then get neighbouring memory: fewer segments
	 * for their write-back. */
	if (s.n > 1)
		bufio_expect_new(dev->client, s.n);
	for (; done < s.n; done++) {
		unsigned start, end;

		span_piece(&s, bs, done, &start, &end);
		err = fill_block(dev, &s, done, src, pos + bytes, &bufs[done]);
		if (err)
			break;
		bytes += end - start;
	}
	if (s.n > 1)
		bufio_expect_new(dev->client, 0);
	mark_whole(dev, &s, bufs, done);
	ok = done;
	if (through && done) {
		int werr = 0;

		ok = write_through(dev, bufs, done, &werr);
		if (werr)
			err = werr;
	}
	release_all(bufs, done);
	if (ok < done) {
		/* Count only the blocks that reached the backend. */
		bytes = 0;
		for (unsigned i = 0; i < ok; i++) {
			unsigned start, end;

			span_piece(&s, bs, i, &start, &end);
			bytes += end - start;
		}
	}
	if (err && bytes == 0)
		return err;
	return (ssize_t)bytes; /* at most one request: 1 MiB */
}

/* Write (@src NULL: zero) a range of any length; returns bytes done or -errno. */
static ssize_t write_range(struct fs_device *dev, const struct fs_src *src, size_t size,
                           uint64_t off)
{
	unsigned mode = atomic_load(&dev->cache_mode);
	uint64_t max = (uint64_t)chunk_blocks(dev->spec.block_size) * dev->spec.block_size;
	size_t done = 0;

	if (mode == FS_CACHE_NONE) {
		int err = write_uncached(dev, src, size, (off_t)off);

		return err ? err : (ssize_t)size;
	}
	while (done < size) {
		/* Chunks end on block boundaries so only the outer edges are partial. */
		uint64_t pos = off + done;
		uint64_t len = max - pos % dev->spec.block_size;
		ssize_t n;

		if (len > size - done)
			len = size - done;
		n = write_chunk(dev, src, done, len, pos, mode == FS_CACHE_WRITETHROUGH);
		if (n < 0)
			return done ? (ssize_t)done : n;
		done += n;
		if ((uint64_t)n < len)
			break;
	}
	return (ssize_t)done;
}

void fs_dev_write(fuse_req_t req, struct fs_device *dev, const char *buf, size_t size, off_t off)
{
	struct fs_src flat;
	struct fs_src *src = fs_rx_payload(buf, &flat);
	ssize_t n;

	if (!src) {
		fuse_reply_err(req, EIO);
		return;
	}
	/* readonly, or read-only mode after persistent write-back failures */
	if (fs_device_mode(dev) != BUFIO_MODE_WRITE) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (size == 0) {
		fuse_reply_write(req, 0);
		return;
	}
	/* A fixed-size device: like a block device, short at the end, then full. */
	if ((uint64_t)off >= dev->size) {
		fuse_reply_err(req, ENOSPC);
		return;
	}
	if (size > dev->size - off)
		size = dev->size - off;
	pthread_rwlock_rdlock(&dev->mode_lock);
	n = write_range(dev, src, size, off);
	pthread_rwlock_unlock(&dev->mode_lock);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, n);
}

/*----------------------------------------------------------------
 * open, fsync, fallocate
 *--------------------------------------------------------------*/

void fs_dev_open(fuse_req_t req, struct fs_ctx *ctx, struct fs_device *dev,
                 struct fuse_file_info *fi)
{
	if ((fi->flags & O_ACCMODE) != O_RDONLY && dev->spec.readonly) {
		fuse_reply_err(req, EROFS);
		return;
	}
	/* The size is fixed: truncating on open would silently do nothing. */
	if ((fi->flags & O_TRUNC) && dev->size != 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	/* The cache already holds the data; a second copy in the page cache
	 * would only halve the memory available to it. */
	fi->direct_io = !ctx->kernel_cache;
	fi->keep_cache = ctx->kernel_cache;
	/* flush gets no open flags: remember whether this handle may write. */
	fi->fh = (fi->flags & O_ACCMODE) != O_RDONLY;
	fuse_reply_open(req, fi);
}

void fs_dev_fsync(fuse_req_t req, struct fs_device *dev)
{
	/* Writes every dirty buffer, then flushes the backing; errors included. */
	fuse_reply_err(req, -bufio_write_dirty_buffers(dev->client));
}

/*
 * Make sure no dirty copy of a block in [blk, blk + n) can reach the backend
 * after the discard: write them now (waiting for write-backs in flight). Walks
 * the range when that is cheaper than walking the whole cache.
 */
static int settle_range(struct fs_device *dev, uint64_t blk, uint64_t n)
{
	struct bufio_stats st;
	uint64_t cached;

	bufio_get_stats(dev->client, &st);
	cached = st.buffers_clean + st.buffers_dirty + st.buffers_reading + st.buffers_writing;
	if (n > cached)
		return bufio_write_dirty_buffers(dev->client);
	for (uint64_t i = 0; i < n; i++) {
		struct bufio_buffer *b;
		int err;

		if (!bufio_get(dev->client, blk + i, &b))
			continue;
		err = bufio_write_buffer(b);
		bufio_release(b);
		if (err)
			return err;
	}
	return 0;
}

/* Zero whole blocks through the cache when the backend cannot discard. */
static int zero_blocks(struct fs_device *dev, uint64_t blk, uint64_t n)
{
	unsigned bs = dev->spec.block_size;
	uint64_t off = blk * bs, len = n * bs;

	while (len) {
		size_t step = len > FS_MAX_IO ? FS_MAX_IO : len;
		ssize_t done = write_range(dev, NULL, step, off);

		if (done < 0)
			return (int)done; /* a negative errno here */
		/* Short when a later block failed (cppcheck misses that). */
		// cppcheck-suppress knownConditionTrueFalse
		if ((size_t)done < step)
			return -EIO;
		off += step;
		len -= step;
	}
	return 0;
}

/* Discard the whole blocks [blk, blk + n); @zero: they must read back zero. */
static int discard_blocks(struct fs_device *dev, uint64_t blk, uint64_t n, bool zero)
{
	int err;

	if (atomic_load(&dev->cache_mode) != FS_CACHE_NONE) {
		err = settle_range(dev, blk, n);
		if (err)
			return err;
		bufio_forget_buffers(dev->client, blk, n);
	}
	err = bufio_issue_discard(dev->client, blk, n);
	if (err == -EOPNOTSUPP && zero)
		err = zero_blocks(dev, blk, n);
	return err;
}

static int zero_bytes(struct fs_device *dev, uint64_t off, uint64_t len)
{
	ssize_t n = write_range(dev, NULL, len, off);

	if (n < 0)
		return (int)n; /* a negative errno here */
	return (uint64_t)n == len ? 0 : -EIO;
}

/* Zero or punch [off, end): partial blocks in the cache, whole ones by discard. */
static int punch(struct fs_device *dev, uint64_t off, uint64_t end, bool zero)
{
	unsigned bs = dev->spec.block_size;
	uint64_t first = (off + bs - 1) / bs, last = end / bs; /* whole blocks */
	int err = 0;

	if (first >= last)
		return zero_bytes(dev, off, end - off);
	if (off < first * bs)
		err = zero_bytes(dev, off, first * bs - off);
	if (!err && end > last * bs)
		err = zero_bytes(dev, last * bs, end - last * bs);
	if (!err)
		err = discard_blocks(dev, first, last - first, zero);
	return err;
}

void fs_dev_fallocate(fuse_req_t req, struct fs_device *dev, int mode, off_t off, off_t len)
{
	bool zero = mode & FALLOC_FL_ZERO_RANGE;
	uint64_t end;
	int err;

	if (mode != (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) && mode != FALLOC_FL_ZERO_RANGE &&
	    mode != (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (fs_device_mode(dev) != BUFIO_MODE_WRITE) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	end = (uint64_t)off + len;
	if (end > dev->size) {
		/* Zeroing past the end would have to grow the device. */
		if (!(mode & FALLOC_FL_KEEP_SIZE)) {
			fuse_reply_err(req, ENOSPC);
			return;
		}
		end = dev->size;
	}
	if ((uint64_t)off >= end) {
		fuse_reply_err(req, 0);
		return;
	}
	pthread_rwlock_rdlock(&dev->mode_lock);
	err = punch(dev, off, end, zero);
	pthread_rwlock_unlock(&dev->mode_lock);
	fuse_reply_err(req, -err);
}
