/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Unit tests of the file backend on both engines (io_uring, thread pool):
 * open errors, round trips, O_DIRECT alignment, EOF, read-only, discard,
 * flush, large batches, resubmitting callbacks, concurrency, the io_uring
 * fallback and a loop block device.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include <bufio/backend.h>
#include <bufio/bufio.h>
#include "backend/be_int.h"
#include "helpers.h"

#define KIB 1024ull

static const enum bufio_io_engine engines[] = {BUFIO_ENGINE_URING, BUFIO_ENGINE_THREADS};
static const char *const engine_names[] = {"io_uring", "threads"};

static struct bufio_backend *open_engine(const char *path, int e, int direct, bool ro)
{
	struct bufio_backend_options o = {.engine = engines[e], .direct = direct, .readonly = ro};
	struct bufio_backend *be = bufio_backend_open(path, &o);

	ck_assert_msg(be != NULL, "open %s on %s: %s", path, engine_names[e], strerror(errno));
	ck_assert_str_eq(be->name, engine_names[e]);
	return be;
}

static void temp_file(char *path, uint64_t size)
{
	ck_assert_int_eq(make_temp_file(path, 256, size), 0);
}

/* Counts completions; waiters block on a condvar, never poll. */
struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned done, errors;
	int last_err;
};

static void waiter_init(struct waiter *w)
{
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->done = w->errors = 0;
	w->last_err = 0;
}

static void waiter_done(struct bufio_io *io, int res)
{
	struct waiter *w = io->private;

	pthread_mutex_lock(&w->lock);
	w->done++;
	if (res) {
		w->errors++;
		w->last_err = res;
	}
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static void waiter_wait(struct waiter *w, unsigned n)
{
	pthread_mutex_lock(&w->lock);
	while (w->done < n)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
}

/* Capture what the backend writes to stderr. */
struct capture {
	char path[256];
	int saved;
};

static void capture_start(struct capture *c)
{
	temp_file(c->path, 0);
	int fd = open(c->path, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	fflush(stderr);
	c->saved = dup(2);
	dup2(fd, 2);
	close(fd);
}

static char *capture_end(struct capture *c)
{
	static char text[4096];
	int fd;
	ssize_t n;

	fflush(stderr);
	dup2(c->saved, 2);
	close(c->saved);
	fd = open(c->path, O_RDONLY);
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	unlink(c->path);
	text[n > 0 ? n : 0] = '\0';
	return text;
}

/*---------------------------------------------------------------- open */

START_TEST(test_open_errors)
{
	struct bufio_backend_options bad = {.engine = 42};
	struct capture c;
	char path[256], *log;

	capture_start(&c);
	errno = 0;
	ck_assert_ptr_null(bufio_backend_open("/var/tmp/bufio-no-such-dir/file", NULL));
	ck_assert_int_eq(errno, ENOENT);
	errno = 0;
	ck_assert_ptr_null(bufio_backend_open("/var/tmp", NULL));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(
	    bufio_backend_open("/var/tmp", &(struct bufio_backend_options){.readonly = true}));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(bufio_backend_open("/dev/null", NULL));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(bufio_backend_open(NULL, NULL));
	ck_assert_int_eq(errno, EINVAL);
	temp_file(path, 4096);
	errno = 0;
	ck_assert_ptr_null(bufio_backend_open(path, &bad));
	ck_assert_int_eq(errno, EINVAL);
	log = capture_end(&c);
	unlink(path);

	/* one line per failure, naming what failed and where */
	ck_assert_msg(strstr(log, "bufio: cannot open /var/tmp/bufio-no-such-dir/file (No such "
	                          "file or directory)\n"),
	              "log: %s", log);
	ck_assert_msg(strstr(log, "bufio: /var/tmp is neither a regular file nor a block device\n"),
	              "log: %s", log);
	ck_assert_msg(strstr(log, "bufio: /dev/null is neither"), "log: %s", log);
	ck_assert_msg(strstr(log, "invalid backend options for /var/tmp/bufio-test-"), "log: %s",
	              log);
}
END_TEST

START_TEST(test_defaults)
{
	char path[256];
	struct bufio_backend *be;

	temp_file(path, 1 * MIB);
	be = bufio_backend_open(path, NULL);
	ck_assert_ptr_nonnull(be);
	/* io_uring works on the machines the tests run on; NULL options mean AUTO */
	ck_assert_str_eq(be->name, "io_uring");
	ck_assert_str_eq(be->path, path);
	ck_assert_uint_eq(bufio_backend_size(be), 1 * MIB);
	ck_assert_uint_eq(bufio_backend_alignment(be), 1);
	ck_assert(!(be->flags & BUFIO_BE_DIRECT));
	ck_assert(!(be->flags & BUFIO_BE_READONLY));
	ck_assert(be->flags & BUFIO_BE_DISCARD);
	bufio_backend_close(be);
	unlink(path);
}
END_TEST

/*---------------------------------------------------------------- data path */

START_TEST(test_roundtrip)
{
	char path[256];
	unsigned char *buf = alloc_aligned(4096, 256 * KIB), *back = alloc_aligned(4096, 256 * KIB);
	struct bufio_backend *be;
	int fd;

	temp_file(path, 4 * MIB);
	be = open_engine(path, _i, 0, false);
	fill_pattern(buf, 256 * KIB, 5, (uint32_t)_i);
	/* unaligned offsets and lengths are fine without O_DIRECT */
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_WRITE, buf, 1 * MIB + 7, 256 * KIB - 3),
	                 0);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, back, 1 * MIB + 7, 256 * KIB - 3),
	                 0);
	ck_assert_int_eq(memcmp(buf, back, 256 * KIB - 3), 0);
	/* and it reached the file */
	fd = open(path, O_RDONLY);
	memset(back, 0, 256 * KIB);
	ck_assert_int_eq(pread(fd, back, 256 * KIB - 3, 1 * MIB + 7), (ssize_t)(256 * KIB - 3));
	close(fd);
	ck_assert_int_eq(memcmp(buf, back, 256 * KIB - 3), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, back, 0, 0), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(be, 7, back, 0, 512), -EINVAL);
	bufio_backend_close(be);
	unlink(path);
	free(buf);
	free(back);
}
END_TEST

START_TEST(test_direct)
{
	char path[256];
	unsigned char *buf = alloc_aligned(4096, 64 * KIB), *back = alloc_aligned(4096, 64 * KIB);
	struct bufio_backend *be;
	unsigned a;

	temp_file(path, 4 * MIB);
	ck_assert_msg(strncmp(path, "/var/tmp/", 9) == 0, "O_DIRECT test file in %s", path);
	be = open_engine(path, _i, 1, false);
	a = bufio_backend_alignment(be);
	ck_assert(be->flags & BUFIO_BE_DIRECT);
	ck_assert_msg(a >= 512 && a <= 4096 && (a & (a - 1)) == 0, "alignment %u", a);
	fill_pattern(buf, 64 * KIB, 11, 1);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_WRITE, buf, 64 * KIB, 64 * KIB), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, back, 64 * KIB, 64 * KIB), 0);
	ck_assert(check_pattern(back, 64 * KIB, 11, 1));
	/* misaligned buffer, offset or length */
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, back + a / 2, 0, a), -EINVAL);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, back, a / 2, a), -EINVAL);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_WRITE, buf, 0, a + 1), -EINVAL);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_DISCARD, NULL, a / 2, a), -EINVAL);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_FLUSH, NULL, 0, 0), 0);
	/* the file shrinks to mid-block: the short O_DIRECT read cannot go on aligned */
	ck_assert_int_eq(truncate(path, 64 * KIB + 100), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, back, 64 * KIB, 64 * KIB), -EIO);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, back, 0, 64 * KIB), 0);
	bufio_backend_close(be);
	ck_assert_int_eq(truncate(path, 4 * MIB), 0);

	/* "try" gets O_DIRECT where the filesystem has it (ext4/xfs under /var/tmp) */
	be = open_engine(path, _i, -1, false);
	ck_assert(be->flags & BUFIO_BE_DIRECT);
	ck_assert_uint_eq(bufio_backend_alignment(be), a);
	bufio_backend_close(be);
	unlink(path);
	free(buf);
	free(back);
}
END_TEST

START_TEST(test_eof)
{
	char path[256];
	unsigned char *buf = alloc_aligned(4096, 64 * KIB);
	struct bufio_backend *be;

	temp_file(path, 1 * MIB);
	be = open_engine(path, _i, 0, false);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, buf, 1 * MIB, 4096), -EIO);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, buf, 1 * MIB - 4096, 8192), -EIO);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_WRITE, buf, 1 * MIB, 4096), -EIO);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, buf, 1 * MIB - 4096, 4096), 0);
	/*
	 * Shrink the file under the backend: now the kernel returns a short
	 * read, then 0 on the retry of the rest, which must become -EIO.
	 */
	ck_assert_int_eq(truncate(path, 512 * KIB + 100), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, buf, 512 * KIB, 4096), -EIO);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, buf, 768 * KIB, 4096), -EIO);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, buf, 0, 4096), 0);
	bufio_backend_close(be);
	unlink(path);
	free(buf);
}
END_TEST

/* Capping every transfer at 4 KiB makes each io a chain of resubmitted remainders. */
START_TEST(test_short_transfers)
{
	char path[256];
	unsigned char *buf = alloc_aligned(4096, 1 * MIB), *back = alloc_aligned(4096, 1 * MIB);
	struct bufio_backend *be;
	int fd;

	temp_file(path, 4 * MIB);
	setenv("BUFIO_BE_MAX_XFER", "4096", 1);
	be = open_engine(path, _i, 0, false);
	unsetenv("BUFIO_BE_MAX_XFER");
	fill_pattern(buf, 1 * MIB, 3, 3);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_WRITE, buf, 100, 1 * MIB - 200), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, back, 100, 1 * MIB - 200), 0);
	ck_assert_int_eq(memcmp(buf, back, 1 * MIB - 200), 0);
	fd = open(path, O_RDONLY);
	ck_assert_int_eq(pread(fd, back, 1 * MIB - 200, 100), (ssize_t)(1 * MIB - 200));
	close(fd);
	ck_assert_int_eq(memcmp(buf, back, 1 * MIB - 200), 0);
	/* a read that runs into EOF after some pieces succeeded */
	ck_assert_int_eq(truncate(path, 2 * MIB + 6000), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, back, 2 * MIB, 64 * KIB), -EIO);
	bufio_backend_close(be);
	unlink(path);
	free(buf);
	free(back);
}
END_TEST

/* Read syscalls of this process so far (/proc/self/io syscr). */
static unsigned long long read_syscalls(void)
{
	char line[128];
	unsigned long long v = 0;
	FILE *f = fopen("/proc/self/io", "r");

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "syscr: %llu", &v) == 1)
			break;
	fclose(f);
	return v;
}

/* Submit @n 4 KiB ios of @op at blocks @first.. (in a shuffled order), wait. */
static void submit_blocks(struct bufio_backend *be, struct waiter *w, uint8_t op,
                          unsigned char *buf, unsigned first, unsigned n)
{
	struct bufio_io *ios = calloc(n, sizeof(*ios));
	struct bufio_plug plug;

	bufio_plug_init(&plug);
	for (unsigned k = 0; k < n; k++) {
		unsigned i = (k * 7) % n; /* n is not a multiple of 7: a permutation */

		ios[i] = (struct bufio_io){.buf = buf + (uint64_t)i * 4096,
		                           .offset = (uint64_t)(first + i) * 4096,
		                           .len = 4096,
		                           .done = waiter_done,
		                           .private = w,
		                           .op = op};
		bufio_plug_add(&plug, &ios[i]);
	}
	bufio_backend_submit(be, plug.head);
	waiter_wait(w, n);
	free(ios);
}

/*
 * Adjacent ios of one batch are merged into vectored calls (fewer system
 * calls, same data); when a merged call fails, every part is retried alone
 * and gets its own result.
 */
START_TEST(test_merge)
{
	char path[256];
	const unsigned n = 300; /* more than one merged call (256 segments, 1 MiB) */
	unsigned char *buf = alloc_aligned(4096, n * 4096ull),
	              *back = alloc_aligned(4096, n * 4096ull);
	unsigned long long before;
	struct bufio_backend *be;
	struct waiter w;
	int fd;

	temp_file(path, 4 * MIB);
	be = open_engine(path, _i, 1, false);
	fill_pattern(buf, n * 4096ull, 21, (uint32_t)_i);
	waiter_init(&w);
	submit_blocks(be, &w, BUFIO_OP_WRITE, buf, 8, n);
	ck_assert_uint_eq(w.errors, 0);
	fd = open(path, O_RDONLY);
	ck_assert_int_eq(pread(fd, back, n * 4096ull, (off_t)8 * 4096), (ssize_t)(n * 4096ull));
	close(fd);
	ck_assert_int_eq(memcmp(buf, back, n * 4096ull), 0);

	memset(back, 0, n * 4096ull);
	waiter_init(&w);
	before = read_syscalls();
	submit_blocks(be, &w, BUFIO_OP_READ, back, 8, n);
	ck_assert_uint_eq(w.errors, 0);
	ck_assert_int_eq(memcmp(buf, back, n * 4096ull), 0);
	/* threads: preadv calls; io_uring: none, unless the parts fell back to pread */
	ck_assert_uint_le(read_syscalls() - before, 4);

	/* the file ends inside the run: the blocks before its end still read */
	ck_assert_int_eq(truncate(path, (off_t)(8 + 100) * 4096), 0);
	memset(back, 0, n * 4096ull);
	waiter_init(&w);
	submit_blocks(be, &w, BUFIO_OP_READ, back, 8, n);
	ck_assert_uint_eq(w.errors, n - 100);
	ck_assert_int_eq(w.last_err, -EIO);
	ck_assert_int_eq(memcmp(buf, back, (size_t)100 * 4096), 0);
	bufio_backend_close(be);
	unlink(path);
	free(buf);
	free(back);
}
END_TEST

/*
 * Merged reads into scattered buffers go through staging buffers (io_uring
 * engine): the data lands where each part asked, also when a batch has more
 * merged reads than there are staging buffers, and when the file ends inside
 * a staged read (the part before the end is copied out, the rest fails).
 * Merged writes from scattered buffers (in place) land in order too. The
 * process maps one buffer per 64 MiB of cache budget, shared by backends.
 */
/* Submit @ios[@n], every one as @op, in one batch, and wait for all. */
static void submit_scattered(struct bufio_backend *be, struct bufio_io *ios, unsigned n, uint8_t op,
                             struct waiter *w)
{
	struct bufio_plug plug;

	waiter_init(w);
	bufio_plug_init(&plug);
	for (unsigned i = 0; i < n; i++) {
		ios[i].op = op;
		ios[i].private = w;
		bufio_plug_add(&plug, &ios[i]);
	}
	bufio_backend_submit(be, plug.head);
	waiter_wait(w, n);
}

START_TEST(test_staging)
{
	char path[256];
	const unsigned n = 1200; /* 5 merged reads of up to 1 MiB, 2 staging buffers */
	const uint64_t stride = 3 * 4096ull;
	unsigned char *src = alloc_aligned(4096, n * 4096ull),
	              *dst = alloc_aligned(4096, n * stride);
	struct bufio_backend_options o = {
	    .engine = BUFIO_ENGINE_URING, .direct = 1, .staging_buffers = 2};
	struct bufio_io *ios = calloc(n, sizeof(*ios));
	struct bufio_backend *be;
	struct waiter w;
	int fd;

	temp_file(path, 8 * MIB);
	fill_pattern(src, n * 4096ull, 31, 5);
	fd = open(path, O_WRONLY);
	ck_assert_int_eq(pwrite(fd, src, n * 4096ull, 4096), (ssize_t)(n * 4096ull));
	close(fd);
	/* 3 buffers for the process at 192 MiB: this backend takes 2 */
	ck_assert_int_eq(bufio_set_max_cache_size(192ull << 20), 0);
	be = bufio_backend_open(path, &o);
	ck_assert_msg(be != NULL, "open: %s", strerror(errno));
	ck_assert_uint_eq(be_bounce_mapped(), 0); /* mapped on first use */
	for (unsigned i = 0; i < n; i++) /* every block 8 KiB after the previous one ends */
		ios[i] = (struct bufio_io){.buf = dst + i * stride,
		                           .offset = 4096 + i * 4096ull,
		                           .len = 4096,
		                           .done = waiter_done};
	for (int pass = 0; pass < 2; pass++) {
		/* pass 1: the file ends 2 blocks into the second merged read */
		unsigned whole = pass ? 258 : n;

		if (pass)
			ck_assert_int_eq(truncate(path, 4096 + 258 * 4096ull), 0);
		memset(dst, 0xee, n * stride);
		submit_scattered(be, ios, n, BUFIO_OP_READ, &w);
		ck_assert_uint_eq(w.errors, n - whole);
		ck_assert_uint_eq(be_bounce_mapped(), 2);
		for (unsigned i = 0; i < whole; i++)
			ck_assert_msg(memcmp(dst + i * stride, src + i * 4096ull, 4096) == 0,
			              "pass %d block %u", pass, i);
		/* the gaps between the blocks were never written */
		for (unsigned i = 0; i + 1 < n; i++)
			ck_assert_uint_eq(dst[i * stride + 4096], 0xee);
	}
	/* writes from scattered blocks: the file gets them in order */
	ck_assert_int_eq(truncate(path, 8 * MIB), 0);
	fill_pattern(src, n * 4096ull, 32, 6);
	for (unsigned i = 0; i < n; i++)
		memcpy(dst + i * stride, src + i * 4096ull, 4096);
	submit_scattered(be, ios, n, BUFIO_OP_WRITE, &w);
	ck_assert_uint_eq(w.errors, 0);
	fd = open(path, O_RDONLY);
	memset(dst, 0, n * 4096ull);
	ck_assert_int_eq(pread(fd, dst, n * 4096ull, 4096), (ssize_t)(n * 4096ull));
	close(fd);
	ck_assert_int_eq(memcmp(dst, src, n * 4096ull), 0);
	/* a second backend asking for 8 gets what is left of the share: 1 */
	o.staging_buffers = 8;
	struct bufio_backend *be2 = bufio_backend_open(path, &o);
	ck_assert_ptr_nonnull(be2);
	submit_scattered(be2, ios, n, BUFIO_OP_READ, &w);
	ck_assert_uint_eq(w.errors, 0);
	ck_assert_uint_eq(be_bounce_mapped(), 3);
	for (unsigned i = 0; i < n; i++)
		ck_assert(memcmp(dst + i * stride, src + i * 4096ull, 4096) == 0);
	bufio_backend_close(be2);
	bufio_backend_close(be);
	ck_assert_uint_eq(be_bounce_mapped(), 0);
	ck_assert_int_eq(bufio_set_max_cache_size(0), 0);
	unlink(path);
	free(ios);
	free(src);
	free(dst);
}
END_TEST

START_TEST(test_readonly)
{
	char path[256];
	unsigned char *buf = alloc_aligned(4096, 4096);
	struct bufio_backend *be;
	int fd;

	temp_file(path, 1 * MIB);
	fd = open(path, O_WRONLY);
	memset(buf, 0x42, 4096);
	ck_assert_int_eq(pwrite(fd, buf, 4096, 8192), 4096);
	close(fd);
	/* even a file we could not write opens read-only */
	ck_assert_int_eq(chmod(path, 0444), 0);
	be = open_engine(path, _i, 0, true);
	ck_assert(be->flags & BUFIO_BE_READONLY);
	ck_assert(!(be->flags & BUFIO_BE_DISCARD));
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_WRITE, buf, 0, 4096), -EROFS);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_DISCARD, NULL, 0, 4096), -EROFS);
	memset(buf, 0, 4096);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, buf, 8192, 4096), 0);
	ck_assert_uint_eq(buf[0], 0x42);
	ck_assert_uint_eq(buf[4095], 0x42);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_FLUSH, NULL, 0, 0), 0);
	bufio_backend_close(be);
	unlink(path);
	free(buf);
}
END_TEST

START_TEST(test_discard)
{
	char path[256];
	unsigned char *buf = alloc_aligned(4096, 4 * MIB);
	struct bufio_backend *be;
	struct stat before, after;

	temp_file(path, 4 * MIB);
	be = open_engine(path, _i, -1, false);
	ck_assert(be->flags & BUFIO_BE_DISCARD);
	fill_pattern(buf, 4 * MIB, 1, 1);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_WRITE, buf, 0, 4 * MIB), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_FLUSH, NULL, 0, 0), 0);
	ck_assert_int_eq(stat(path, &before), 0);
	ck_assert_int_ge(before.st_blocks, (blkcnt_t)(4 * MIB / 512));

	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_DISCARD, NULL, 1 * MIB, 2 * MIB), 0);
	ck_assert_int_eq(stat(path, &after), 0);
	/* the hole really frees the blocks, and the size stays */
	ck_assert_int_le(after.st_blocks, before.st_blocks - (blkcnt_t)(2 * MIB / 512));
	ck_assert_int_eq(after.st_size, (off_t)(4 * MIB));

	memset(buf, 0xee, 4 * MIB);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, buf, 0, 4 * MIB), 0);
	ck_assert(check_pattern(buf, 1 * MIB, 1, 1));
	for (uint64_t i = 1 * MIB; i < 3 * MIB; i++)
		if (buf[i])
			ck_abort_msg("byte %llu not zero after discard", (unsigned long long)i);
	ck_assert_uint_ne(buf[3 * MIB], 0xee);
	/* past the end is an error, zero length a no-op */
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_DISCARD, NULL, 4 * MIB, 4096), -EIO);
	bufio_backend_close(be);
	unlink(path);
	free(buf);
}
END_TEST

/*---------------------------------------------------------------- batches and threads */

/* 1000 ios in one batch through a ring of 16 entries (32 CQ slots) or 4 workers. */
START_TEST(test_batch_1000)
{
	enum { N = 1000, BS = 4096 };
	struct bufio_backend_options o = {.engine = engines[_i], .queue_depth = 16, .direct = -1};
	unsigned char *buf = alloc_aligned(4096, (size_t)N * BS);
	struct bufio_io *ios = calloc(N, sizeof(*ios));
	struct bufio_plug plug;
	struct waiter w;
	struct bufio_backend *be;
	char path[256];

	temp_file(path, (uint64_t)N * BS);
	be = bufio_backend_open(path, &o);
	ck_assert_ptr_nonnull(be);
	ck_assert_str_eq(be->name, engine_names[_i]);
	waiter_init(&w);
	bufio_plug_init(&plug);
	for (int i = 0; i < N; i++) {
		fill_pattern(buf + (size_t)i * BS, BS, (uint64_t)i, 77);
		ios[i] = (struct bufio_io){.buf = buf + (size_t)i * BS,
		                           .offset = (uint64_t)i * BS,
		                           .len = BS,
		                           .done = waiter_done,
		                           .private = &w,
		                           .op = BUFIO_OP_WRITE};
		bufio_plug_add(&plug, &ios[i]);
	}
	bufio_plug_finish(&plug, be);
	waiter_wait(&w, N);
	ck_assert_uint_eq(w.errors, 0);

	memset(buf, 0, (size_t)N * BS);
	waiter_init(&w);
	for (int i = 0; i < N; i++) {
		ios[i].op = BUFIO_OP_READ;
		bufio_plug_add(&plug, &ios[i]);
	}
	bufio_plug_finish(&plug, be);
	waiter_wait(&w, N);
	ck_assert_uint_eq(w.errors, 0);
	ck_assert_uint_eq(w.done, N);
	for (int i = 0; i < N; i++)
		ck_assert_msg(check_pattern(buf + (size_t)i * BS, BS, (uint64_t)i, 77), "block %d",
		              i);
	bufio_backend_close(be);
	unlink(path);
	free(ios);
	free(buf);
}
END_TEST

/*
 * Completion callbacks that submit more I/O than the ring has room for: each
 * completion starts two more until TOTAL have been issued. With 4 SQ / 8 CQ
 * entries the reaper runs out of slots from inside its own callbacks; it must
 * queue, not wait for itself.
 */
enum { FAN_TOTAL = 3000, FAN_BS = 512 };

struct fan {
	struct bufio_backend *be;
	struct bufio_io ios[FAN_TOTAL];
	unsigned char *buf;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned issued, completed, errors;
};

static void fan_done(struct bufio_io *io, int res);

static void fan_issue(struct fan *f, unsigned n)
{
	struct bufio_io *head = NULL, **tail = &head;

	pthread_mutex_lock(&f->lock);
	while (n-- && f->issued < FAN_TOTAL) {
		unsigned i = f->issued++;
		struct bufio_io *io = &f->ios[i];

		*io = (struct bufio_io){.buf = f->buf + (size_t)i * FAN_BS,
		                        .offset = (uint64_t)i * FAN_BS,
		                        .len = FAN_BS,
		                        .done = fan_done,
		                        .private = f,
		                        .op = BUFIO_OP_WRITE};
		fill_pattern(io->buf, FAN_BS, i, 5);
		*tail = io;
		tail = &io->next;
	}
	pthread_mutex_unlock(&f->lock);
	*tail = NULL;
	bufio_backend_submit(f->be, head);
}

static void fan_done(struct bufio_io *io, int res)
{
	struct fan *f = io->private;

	fan_issue(f, 2);
	pthread_mutex_lock(&f->lock);
	f->completed++;
	if (res)
		f->errors++;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

START_TEST(test_callback_resubmits)
{
	struct bufio_backend_options o = {.engine = engines[_i], .queue_depth = 4, .threads = 2};
	struct fan *f = calloc(1, sizeof(*f));
	unsigned char *back = alloc_aligned(4096, (size_t)FAN_TOTAL * FAN_BS);
	char path[256];

	temp_file(path, (uint64_t)FAN_TOTAL * FAN_BS);
	f->be = bufio_backend_open(path, &o);
	ck_assert_ptr_nonnull(f->be);
	f->buf = alloc_aligned(4096, (size_t)FAN_TOTAL * FAN_BS);
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	fan_issue(f, 4);
	pthread_mutex_lock(&f->lock);
	while (f->completed < FAN_TOTAL)
		pthread_cond_wait(&f->cond, &f->lock);
	pthread_mutex_unlock(&f->lock);
	ck_assert_uint_eq(f->errors, 0);
	ck_assert_uint_eq(f->issued, FAN_TOTAL);
	ck_assert_int_eq(
	    bufio_backend_rw_sync(f->be, BUFIO_OP_READ, back, 0, (uint64_t)FAN_TOTAL * FAN_BS), 0);
	for (unsigned i = 0; i < FAN_TOTAL; i++)
		ck_assert(check_pattern(back + (size_t)i * FAN_BS, FAN_BS, i, 5));
	bufio_backend_close(f->be);
	unlink(path);
	free(f->buf);
	free(f);
	free(back);
}
END_TEST

struct conc {
	struct bufio_backend *be;
};

/* Each thread writes its own 256 blocks in batches of 64 and waits for them. */
static void conc_worker(void *arg, unsigned idx)
{
	struct conc *c = arg;
	unsigned char *buf = alloc_aligned(4096, (size_t)64 * 4096);
	struct bufio_io ios[64];
	struct waiter w;

	for (int round = 0; round < 4; round++) {
		struct bufio_plug plug;

		waiter_init(&w);
		bufio_plug_init(&plug);
		for (int i = 0; i < 64; i++) {
			uint64_t blk = idx * 256ull + (uint64_t)round * 64 + (uint64_t)i;

			fill_pattern(buf + (size_t)i * 4096, 4096, blk, 21);
			ios[i] = (struct bufio_io){.buf = buf + (size_t)i * 4096,
			                           .offset = blk * 4096,
			                           .len = 4096,
			                           .done = waiter_done,
			                           .private = &w,
			                           .op = BUFIO_OP_WRITE};
			bufio_plug_add(&plug, &ios[i]);
		}
		bufio_plug_finish(&plug, c->be);
		waiter_wait(&w, 64);
		ck_assert_uint_eq(w.errors, 0);
	}
	free(buf);
}

START_TEST(test_concurrent_submitters)
{
	struct bufio_backend_options o = {.engine = engines[_i], .queue_depth = 8};
	unsigned char *back = alloc_aligned(4096, (size_t)1024 * 4096);
	struct conc c;
	char path[256];

	temp_file(path, (uint64_t)1024 * 4096);
	c.be = bufio_backend_open(path, &o);
	ck_assert_ptr_nonnull(c.be);
	run_threads(4, conc_worker, &c);
	ck_assert_int_eq(bufio_backend_rw_sync(c.be, BUFIO_OP_FLUSH, NULL, 0, 0), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(c.be, BUFIO_OP_READ, back, 0, (uint64_t)1024 * 4096),
	                 0);
	for (unsigned b = 0; b < 1024; b++)
		ck_assert_msg(check_pattern(back + (size_t)b * 4096, 4096, b, 21), "block %u", b);
	bufio_backend_close(c.be);
	unlink(path);
	free(back);
}
END_TEST

/* A batch mixing good and bad ios: the bad ones fail alone, before submit returns. */
START_TEST(test_mixed_batch)
{
	struct bufio_backend_options o = {.engine = engines[_i], .direct = 1};
	unsigned char *buf = alloc_aligned(4096, (size_t)8 * 4096);
	struct bufio_io ios[4];
	struct waiter w;
	char path[256];
	struct bufio_backend *be;

	temp_file(path, 1 * MIB);
	be = bufio_backend_open(path, &o);
	ck_assert_ptr_nonnull(be);
	waiter_init(&w);
	for (int i = 0; i < 4; i++) {
		ios[i] = (struct bufio_io){.next = i < 3 ? &ios[i + 1] : NULL,
		                           .buf = buf + (size_t)i * 4096,
		                           .offset = (uint64_t)i * 4096,
		                           .len = 4096,
		                           .done = waiter_done,
		                           .private = &w,
		                           .op = BUFIO_OP_WRITE};
	}
	ios[1].offset = 1 * MIB; /* past the end */
	ios[3].buf = buf + 4097; /* misaligned for O_DIRECT */
	bufio_backend_submit(be, ios);
	waiter_wait(&w, 4);
	ck_assert_uint_eq(w.errors, 2);
	bufio_backend_close(be);
	unlink(path);
	free(buf);
}
END_TEST

/*---------------------------------------------------------------- fallback */

START_TEST(test_uring_fallback)
{
	char path[256], want[512], *log;
	struct bufio_backend_options o = {.engine = BUFIO_ENGINE_AUTO};
	unsigned char *buf = alloc_aligned(4096, 4096);
	struct bufio_backend *be;
	struct capture c;

	temp_file(path, 1 * MIB);
	setenv("BUFIO_FORCE_NO_URING", "1", 1);
	capture_start(&c);
	be = bufio_backend_open(path, &o);
	log = capture_end(&c);
	ck_assert_ptr_nonnull(be);
	ck_assert_str_eq(be->name, "threads");
	snprintf(want, sizeof(want),
	         "bufio: io_uring unavailable on %s (Operation not permitted), using the thread "
	         "pool\n",
	         path);
	ck_assert_str_eq(log, want);
	memset(buf, 0x33, 4096);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_WRITE, buf, 4096, 4096), 0);
	memset(buf, 0, 4096);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, buf, 4096, 4096), 0);
	ck_assert_uint_eq(buf[100], 0x33);
	bufio_backend_close(be);

	/* io_uring required: fail with EPERM instead */
	o.engine = BUFIO_ENGINE_URING;
	capture_start(&c);
	errno = 0;
	be = bufio_backend_open(path, &o);
	log = capture_end(&c);
	ck_assert_ptr_null(be);
	ck_assert_int_eq(errno, EPERM);
	snprintf(want, sizeof(want),
	         "bufio: io_uring unavailable on %s (Operation not permitted)\n", path);
	ck_assert_str_eq(log, want);

	/* the thread pool never asks for a ring, so it says nothing */
	o.engine = BUFIO_ENGINE_THREADS;
	capture_start(&c);
	be = bufio_backend_open(path, &o);
	log = capture_end(&c);
	ck_assert_ptr_nonnull(be);
	ck_assert_str_eq(log, "");
	bufio_backend_close(be);
	unsetenv("BUFIO_FORCE_NO_URING");
	unlink(path);
	free(buf);
}
END_TEST

/*---------------------------------------------------------------- block device */

static bool ci(void)
{
	const char *s = getenv("CI");

	return s && strcmp(s, "true") == 0;
}

/* Attach @file to a free loop device; NULL (after saying why) when we cannot. */
static char *loop_attach(const char *file)
{
	static char dev[128];
	char cmd[512];
	FILE *p;

	if (access("/dev/loop-control", R_OK | W_OK) != 0 ||
	    system("command -v losetup >/dev/null"))
		return NULL;
	snprintf(cmd, sizeof(cmd), "losetup -f --show %s 2>/dev/null", file);
	p = popen(cmd, "r");
	if (!p)
		return NULL;
	if (!fgets(dev, sizeof(dev), p)) {
		pclose(p);
		return NULL;
	}
	if (pclose(p) != 0)
		return NULL;
	dev[strcspn(dev, "\n")] = '\0';
	return dev[0] ? dev : NULL;
}

static void loop_detach(const char *dev)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "losetup -d %s", dev);
	ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_block_device)
{
	char path[256];
	unsigned char *buf = alloc_aligned(4096, 1 * MIB), *back = alloc_aligned(4096, 1 * MIB);
	struct bufio_backend *be;
	const char *dev;

	temp_file(path, 64 * MIB);
	dev = loop_attach(path);
	if (!dev) {
		unlink(path);
		free(buf);
		free(back);
		if (ci())
			ck_abort_msg("no loop device (losetup) but CI=true: cannot skip");
		printf("test_block_device: SKIPPED, no usable losetup/loop device\n");
		return;
	}

	/* O_DIRECT: the logical block size */
	be = open_engine(dev, _i, 1, false);
	ck_assert_uint_eq(bufio_backend_size(be), 64 * MIB);
	ck_assert_uint_eq(bufio_backend_alignment(be), 512);
	ck_assert(be->flags & BUFIO_BE_DIRECT);
	ck_assert(be->flags & BUFIO_BE_DISCARD);
	fill_pattern(buf, 1 * MIB, 8, 8);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_WRITE, buf, 4 * MIB, 1 * MIB), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_FLUSH, NULL, 0, 0), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, back, 4 * MIB, 1 * MIB), 0);
	ck_assert(check_pattern(back, 1 * MIB, 8, 8));
	ck_assert_int_eq(
	    bufio_backend_rw_sync(be, BUFIO_OP_DISCARD, NULL, 4 * MIB + 512, 512 * KIB), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, back, 4 * MIB, 1 * MIB), 0);
	ck_assert(check_pattern(back, 512, 8, 8));
	for (uint64_t i = 512; i < 512 + 512 * KIB; i++)
		if (back[i])
			ck_abort_msg("byte %llu not zero after discard", (unsigned long long)i);
	ck_assert_int_eq(
	    memcmp(back + 512 + 512 * KIB, buf + 512 + 512 * KIB, 1 * MIB - 512 - 512 * KIB), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, back, 64 * MIB, 512), -EIO);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, back + 1, 0, 512), -EINVAL);
	bufio_backend_close(be);

	/* buffered: byte-granular discard, the partial sectors written as zeroes */
	be = open_engine(dev, _i, 0, false);
	ck_assert_uint_eq(bufio_backend_alignment(be), 1);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_WRITE, buf, 8 * MIB, 1 * MIB), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_DISCARD, NULL, 8 * MIB + 100, 9000), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_DISCARD, NULL, 8 * MIB + 20000, 300),
	                 0);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, back, 8 * MIB, 1 * MIB), 0);
	ck_assert_int_eq(memcmp(back, buf, 100), 0);
	for (int i = 100; i < 9100; i++)
		ck_assert_uint_eq(back[i], 0);
	ck_assert_int_eq(memcmp(back + 9100, buf + 9100, 20000 - 9100), 0);
	for (int i = 20000; i < 20300; i++)
		ck_assert_uint_eq(back[i], 0);
	ck_assert_int_eq(memcmp(back + 20300, buf + 20300, 1 * MIB - 20300), 0);
	bufio_backend_close(be);

	be = open_engine(dev, _i, 0, true);
	ck_assert(be->flags & BUFIO_BE_READONLY);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_WRITE, buf, 0, 512), -EROFS);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_DISCARD, NULL, 0, 512), -EROFS);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, back, 8 * MIB, 512), 0);
	ck_assert_int_eq(memcmp(back, buf, 100), 0);
	bufio_backend_close(be);

	loop_detach(dev);
	unlink(path);
	free(buf);
	free(back);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("backend_file");
	TCase *t = tcase_create("file");

	tcase_set_timeout(t, 240);
	tcase_add_test(t, test_open_errors);
	tcase_add_test(t, test_defaults);
	tcase_add_loop_test(t, test_roundtrip, 0, 2);
	tcase_add_loop_test(t, test_direct, 0, 2);
	tcase_add_loop_test(t, test_eof, 0, 2);
	tcase_add_loop_test(t, test_short_transfers, 0, 2);
	tcase_add_loop_test(t, test_merge, 0, 2);
	tcase_add_test(t, test_staging);
	tcase_add_loop_test(t, test_readonly, 0, 2);
	tcase_add_loop_test(t, test_discard, 0, 2);
	tcase_add_loop_test(t, test_batch_1000, 0, 2);
	tcase_add_loop_test(t, test_callback_resubmits, 0, 2);
	tcase_add_loop_test(t, test_concurrent_submitters, 0, 2);
	tcase_add_loop_test(t, test_mixed_batch, 0, 2);
	tcase_add_test(t, test_uring_fallback);
	tcase_add_loop_test(t, test_block_device, 0, 2);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	/* O_DIRECT needs a real filesystem; /tmp may be tmpfs */
	setenv("TMPDIR", "/var/tmp", 1);
	return run_suite(suite());
}
