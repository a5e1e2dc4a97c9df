/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The file backend: opening a regular file or block device, probing its size,
 * O_DIRECT alignment and discard support, choosing the I/O engine, and the
 * synchronous operations both engines share.
 */
#define _GNU_SOURCE /* O_DIRECT, fallocate, statx, pthread_setname_np */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "be_int.h"

/* Above the io_uring ring limit the kernel refuses anyway; catches garbage. */
#define MAX_QUEUE_DEPTH   32768
#define MAX_THREADS       1024
#define DEFAULT_DIO_ALIGN 4096

size_t be_file_max_xfer(void)
{
	const char *s = getenv("BUFIO_BE_MAX_XFER");
	size_t def = (size_t)1 << 30;

	if (s && *s) {
		char *end;
		unsigned long long v = strtoull(s, &end, 0);

		if (*end == '\0' && v > 0 && v < def)
			return (size_t)v;
	}
	return def;
}

static int retry_fallocate(int fd, int mode, uint64_t off, uint64_t len)
{
	while (fallocate(fd, mode, (off_t)off, (off_t)len) != 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

static int pwrite_all(int fd, const void *buf, uint64_t len, uint64_t off, size_t max_xfer)
{
	uint64_t done = 0;

	while (done < len) {
		size_t chunk = len - done < max_xfer ? (size_t)(len - done) : max_xfer;
		ssize_t n = pwrite(fd, (const char *)buf + done, chunk, (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		done += (uint64_t)n;
	}
	return 0;
}

/*
 * Zero a logical-block-aligned range of a block device. BLKDISCARD alone does
 * not promise zeroes on read (the kernel dropped discard_zeroes_data), so we
 * use fallocate(PUNCH_HOLE), which the block layer turns into an unmapping
 * WRITE_ZEROES -- a discard that guarantees zeroes -- and fails with
 * EOPNOTSUPP when the device cannot; BLKZEROOUT then writes the zeroes.
 */
static int blk_zero_aligned(struct be_file *f, uint64_t off, uint64_t len)
{
	uint64_t range[2] = {off, len};
	int ret;

	if (!len)
		return 0;
	ret = retry_fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
	if (ret != -EOPNOTSUPP)
		return ret;
	while (ioctl(f->fd, BLKZEROOUT, range) != 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

static int pwrite_zeroes(struct be_file *f, uint64_t off, uint64_t len)
{
	void *z;
	int ret;

	if (!len)
		return 0;
	z = calloc(1, (size_t)len);
	if (!z)
		return -ENOMEM;
	ret = pwrite_all(f->fd, z, len, off, f->max_xfer);
	free(z);
	return ret;
}

int be_file_discard_sync(struct be_file *f, uint64_t off, uint64_t len)
{
	uint64_t lbs, a_start, a_end, end = off + len;
	int ret;

	if (!f->blkdev)
		return retry_fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
	/*
	 * A buffered block-device backend accepts byte ranges, the block layer
	 * only whole logical blocks: write zeroes over the partial ends.
	 */
	lbs = f->lbs ? f->lbs : 512;
	a_start = (off + lbs - 1) / lbs * lbs;
	a_end = end / lbs * lbs;
	if (a_start >= a_end)
		return pwrite_zeroes(f, off, len);
	ret = pwrite_zeroes(f, off, a_start - off);
	if (!ret)
		ret = blk_zero_aligned(f, a_start, a_end - a_start);
	if (!ret)
		ret = pwrite_zeroes(f, a_end, end - a_end);
	return ret;
}

/* A merged io: vectored calls until every byte moved (see be_merge). */
static int exec_vec(struct be_file *f, struct bufio_io *io)
{
	uint64_t done = 0;

	while (done < io->len) {
		unsigned n;
		const struct iovec *iov = be_vec_iov(io, &n);
		off_t off = (off_t)(io->offset + done);
		ssize_t r = (io->op & ~BE_IO_VEC) == BUFIO_OP_READ
		                ? preadv(f->fd, iov, (int)n, off)
		                : pwritev(f->fd, iov, (int)n, off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO; /* end of file before the end of the io */
		done += (uint64_t)r;
		if (done < io->len && (done & (f->be.align - 1)))
			return -EIO; /* O_DIRECT stopped mid-block: EOF */
		be_vec_advance(io, (uint64_t)r);
	}
	return 0;
}

int be_file_exec(struct be_file *f, struct bufio_io *io)
{
	uint64_t done = 0;

	if (io->op & BE_IO_VEC)
		return exec_vec(f, io);
	switch (io->op) {
	case BUFIO_OP_FLUSH:
		while (fdatasync(f->fd) != 0) {
			if (errno != EINTR)
				return -errno;
		}
		return 0;
	case BUFIO_OP_DISCARD:
		return be_file_discard_sync(f, io->offset, io->len);
	case BUFIO_OP_WRITE:
		return pwrite_all(f->fd, io->buf, io->len, io->offset, f->max_xfer);
	case BUFIO_OP_READ:
		break;
	default:
		return -EINVAL;
	}
	while (done < io->len) {
		size_t chunk =
		    io->len - done < f->max_xfer ? (size_t)(io->len - done) : f->max_xfer;
		ssize_t n = pread(f->fd, (char *)io->buf + done, chunk, (off_t)(io->offset + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO; /* end of file before the end of the io */
		done += (uint64_t)n;
		if (done < io->len && (done & (f->be.align - 1)))
			return -EIO; /* O_DIRECT stopped mid-block: EOF */
	}
	return 0;
}

int be_file_exec_sync(struct bufio_backend *be, struct bufio_io *io)
{
	int ret = be_check_io(be, io);

	if (ret)
		return ret < 0 ? ret : 0;
	return be_file_exec((struct be_file *)be, io);
}

void be_file_release(struct be_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	free(f->path);
	f->path = NULL;
}

static unsigned round_pow2(unsigned v)
{
	unsigned p = 1;

	while (p < v && p < (1u << 30))
		p <<= 1;
	return p;
}

/*
 * O_DIRECT alignment of a regular file. statx(STATX_DIOALIGN) (Linux 6.1)
 * knows the filesystem's real requirement; without it 4096 is safe on every
 * common filesystem. Returns 0 when the filesystem says the file cannot do
 * direct I/O at all.
 */
static unsigned file_dio_align(int fd)
{
#ifdef STATX_DIOALIGN
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN)) {
		unsigned a = stx.stx_dio_offset_align;

		if (!a)
			return 0;
		if (stx.stx_dio_mem_align > a)
			a = stx.stx_dio_mem_align;
		return round_pow2(a);
	}
#endif
	return DEFAULT_DIO_ALIGN;
}

static int open_backing(const char *path, bool readonly, bool direct)
{
	/*
	 * O_NONBLOCK keeps open() from hanging on a FIFO we are about to reject;
	 * it is cleared again once the type is known.
	 */
	int flags = (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;

	return open(path, flags | (direct ? O_DIRECT : 0));
}

/* io_uring would return -EAGAIN instead of waiting on an O_NONBLOCK file */
static int clear_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -1;
	return fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

static struct bufio_backend *fail(int fd, int err)
{
	if (fd >= 0)
		close(fd);
	errno = err;
	return NULL;
}

struct bufio_backend *bufio_backend_open(const char *path, const struct bufio_backend_options *opts)
{
	static const struct bufio_backend_options defaults = {.engine = BUFIO_ENGINE_AUTO,
	                                                      .direct = 0};
	struct be_file f = {.fd = -1};
	struct bufio_backend *be = NULL;
	struct stat st;
	bool direct, ring_failed = false;
	int fd, ret;

	if (!opts)
		opts = &defaults;
	if (!path || !*path) {
		fprintf(stderr, "bufio: no backing file or device given\n");
		errno = EINVAL;
		return NULL;
	}
	if ((unsigned)opts->engine > BUFIO_ENGINE_THREADS || opts->queue_depth > MAX_QUEUE_DEPTH ||
	    opts->threads > MAX_THREADS) {
		fprintf(stderr,
		        "bufio: invalid backend options for %s (engine %d, queue depth %u, "
		        "threads %u)\n",
		        path, (int)opts->engine, opts->queue_depth, opts->threads);
		errno = EINVAL;
		return NULL;
	}

	direct = opts->direct != 0;
	fd = open_backing(path, opts->readonly, direct);
	if (fd < 0 && errno == EINVAL && opts->direct < 0) {
		/* tmpfs and friends refuse O_DIRECT: buffered is what was asked for */
		direct = false;
		fd = open_backing(path, opts->readonly, false);
	}
	if (fd < 0) {
		int err = errno;

		if (err == EISDIR) {
			fprintf(stderr, "bufio: %s is neither a regular file nor a block device\n",
			        path);
			return fail(-1, EINVAL);
		}
		if (err == EINVAL && direct)
			fprintf(stderr, "bufio: cannot open %s with O_DIRECT (%s)\n", path,
			        strerror(err));
		else
			fprintf(stderr, "bufio: cannot open %s (%s)\n", path, strerror(err));
		return fail(-1, err);
	}
	if (fstat(fd, &st) != 0) {
		int err = errno;

		fprintf(stderr, "bufio: cannot stat %s (%s)\n", path, strerror(err));
		return fail(fd, err);
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		fprintf(stderr, "bufio: %s is neither a regular file nor a block device\n", path);
		return fail(fd, EINVAL);
	}
	if (clear_nonblock(fd) != 0) {
		int err = errno;

		fprintf(stderr, "bufio: cannot set the file flags of %s (%s)\n", path,
		        strerror(err));
		return fail(fd, err);
	}

	f.fd = fd;
	f.blkdev = S_ISBLK(st.st_mode);
	f.max_xfer = be_file_max_xfer();
	if (f.blkdev) {
		uint64_t size;
		int lbs;

		if (ioctl(fd, BLKGETSIZE64, &size) != 0 || ioctl(fd, BLKSSZGET, &lbs) != 0) {
			int err = errno;

			fprintf(stderr, "bufio: cannot get the size of block device %s (%s)\n",
			        path, strerror(err));
			return fail(fd, err);
		}
		f.be.size = size;
		f.lbs = lbs > 0 ? round_pow2((unsigned)lbs) : 512;
		f.be.align = direct ? f.lbs : 1;
	} else {
		f.be.size = (uint64_t)st.st_size;
		f.be.align = 1;
		if (direct) {
			unsigned a = file_dio_align(fd);

			if (!a && opts->direct < 0) {
				close(fd);
				direct = false;
				f.fd = fd = open_backing(path, opts->readonly, false);
				if (fd < 0 || clear_nonblock(fd) != 0) {
					int err = errno;

					fprintf(stderr, "bufio: cannot open %s (%s)\n", path,
					        strerror(err));
					return fail(fd, err);
				}
			} else if (!a) {
				fprintf(stderr,
				        "bufio: cannot open %s with O_DIRECT (the filesystem does "
				        "not support direct I/O on it)\n",
				        path);
				return fail(fd, EINVAL);
			} else {
				f.be.align = a;
			}
		}
	}

	f.be.flags = 0;
	if (direct)
		f.be.flags |= BUFIO_BE_DIRECT;
	if (opts->readonly) {
		f.be.flags |= BUFIO_BE_READONLY;
	} else if (f.blkdev) {
		/* BLKZEROOUT is the fallback, so zeroing always works */
		f.be.flags |= BUFIO_BE_DISCARD;
	} else {
		/*
		 * Probe hole punching past the end of the file, where it changes
		 * no data, so the flag tells the truth before the first discard.
		 */
		ret = retry_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		                      (uint64_t)st.st_size, 4096);
		if (ret == 0)
			f.be.flags |= BUFIO_BE_DISCARD;
	}

	f.path = strdup(path);
	if (!f.path) {
		fprintf(stderr, "bufio: out of memory opening %s\n", path);
		return fail(fd, ENOMEM);
	}
	f.be.path = f.path;

	if (opts->engine != BUFIO_ENGINE_THREADS) {
		ret = be_uring_create(&f, opts, &be, &ring_failed);
		if (ret && ring_failed && opts->engine == BUFIO_ENGINE_AUTO) {
			fprintf(stderr,
			        "bufio: io_uring unavailable on %s (%s), using the thread pool\n",
			        path, strerror(-ret));
		} else if (ret) {
			if (ring_failed)
				fprintf(stderr, "bufio: io_uring unavailable on %s (%s)\n", path,
				        strerror(-ret));
			else
				fprintf(stderr,
				        "bufio: cannot start the io_uring engine on %s (%s)\n",
				        path, strerror(-ret));
			be_file_release(&f);
			errno = -ret;
			return NULL;
		}
	}
	if (!be) {
		ret = be_threads_create(&f, opts, &be);
		if (ret) {
			fprintf(stderr, "bufio: cannot start the I/O threads for %s (%s)\n", path,
			        strerror(-ret));
			be_file_release(&f);
			errno = -ret;
			return NULL;
		}
	}
	return be;
}
