/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Unit tests of the memory backend and the generic backend functions: create
 * errors, round trips, alignment and range errors, discard, flush, counters,
 * inline completion, batches, and a large sparse device.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include <bufio/backend.h>
#include "backend/be_memory.h"
#include "helpers.h"

struct rec {
	int calls;
	int res;
	pthread_t thread;
};

static void rec_done(struct bufio_io *io, int res)
{
	struct rec *r = io->private;

	r->calls++;
	r->res = res;
	r->thread = pthread_self();
}

START_TEST(test_create_errors)
{
	errno = 0;
	ck_assert_ptr_null(be_memory_create(1 * MIB, 3));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(be_memory_create(0, 512));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(be_memory_create(UINT64_MAX, 512));
	ck_assert(errno == EINVAL || errno == ENOMEM);

	struct bufio_backend *m = be_memory_create(1 * MIB, 0);
	ck_assert_ptr_nonnull(m);
	ck_assert_uint_eq(bufio_backend_alignment(m), 1);
	ck_assert_uint_eq(bufio_backend_size(m), 1 * MIB);
	ck_assert_str_eq(m->name, "memory");
	ck_assert(m->flags & BUFIO_BE_DISCARD);
	ck_assert(!(m->flags & BUFIO_BE_READONLY));
	bufio_backend_close(m);
	bufio_backend_close(NULL); /* harmless */
}
END_TEST

START_TEST(test_roundtrip_and_data)
{
	struct bufio_backend *m = be_memory_create(4 * MIB, 4096);
	unsigned char *buf = alloc_aligned(4096, (size_t)64 * 1024);
	unsigned char *back = alloc_aligned(4096, (size_t)64 * 1024);

	ck_assert_uint_eq(bufio_backend_alignment(m), 4096);
	fill_pattern(buf, (size_t)64 * 1024, 7, 1);
	ck_assert_int_eq(
	    bufio_backend_rw_sync(m, BUFIO_OP_WRITE, buf, 1 * MIB, (uint64_t)64 * 1024), 0);
	/* the data really is in the device array */
	ck_assert(
	    check_pattern((unsigned char *)be_memory_data(m) + 1 * MIB, (size_t)64 * 1024, 7, 1));
	memset(back, 0xaa, (size_t)64 * 1024);
	ck_assert_int_eq(
	    bufio_backend_rw_sync(m, BUFIO_OP_READ, back, 1 * MIB, (uint64_t)64 * 1024), 0);
	ck_assert(check_pattern(back, (size_t)64 * 1024, 7, 1));
	/* untouched areas read as zeroes */
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_READ, back, 0, 4096), 0);
	for (int i = 0; i < 4096; i++)
		ck_assert_uint_eq(back[i], 0);
	/* a zero-length read is a successful no-op */
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_READ, back, 0, 0), 0);
	ck_assert_ptr_null(be_memory_data(NULL));
	free(buf);
	free(back);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_alignment_errors)
{
	struct bufio_backend *m = be_memory_create(1 * MIB, 512);
	unsigned char *buf = alloc_aligned(4096, 8192);

	/* misaligned buffer, offset and length: -EINVAL, and nothing written */
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_WRITE, buf + 1, 0, 512), -EINVAL);
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_WRITE, buf, 100, 512), -EINVAL);
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_READ, buf, 0, 100), -EINVAL);
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_DISCARD, NULL, 256, 512), -EINVAL);
	ck_assert_int_eq(bufio_backend_rw_sync(m, 9, buf, 0, 512), -EINVAL);
	/* aligned ones work */
	memset(buf, 0x5a, 512);
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_WRITE, buf, 512, 512), 0);
	ck_assert_uint_eq(((unsigned char *)be_memory_data(m))[512], 0x5a);
	ck_assert_uint_eq(((unsigned char *)be_memory_data(m))[0], 0);
	free(buf);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_past_end)
{
	struct bufio_backend *m = be_memory_create(1 * MIB, 512);
	unsigned char *buf = alloc_aligned(4096, 8192);

	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_READ, buf, 1 * MIB, 512), -EIO);
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_READ, buf, 1 * MIB - 512, 1024), -EIO);
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_WRITE, buf, 2 * MIB, 512), -EIO);
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_DISCARD, NULL, 1 * MIB - 512, 1024),
	                 -EIO);
	/* offset + len wrapping around must not pass the range check */
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_READ, buf, 512, UINT64_MAX - 511), -EIO);
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_READ, buf, 1 * MIB - 512, 512), 0);
	free(buf);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_discard_zeroes_and_flush)
{
	struct bufio_backend *m = be_memory_create(8 * MIB, 512);
	unsigned char *d = be_memory_data(m);
	struct be_counts k;

	memset(d, 0xff, 8 * MIB);
	/* partial pages at both ends and whole pages in the middle */
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_DISCARD, NULL, 1024, 3 * MIB), 0);
	ck_assert_uint_eq(d[1023], 0xff);
	for (uint64_t i = 1024; i < 1024 + 3 * MIB; i += 511)
		ck_assert_uint_eq(d[i], 0);
	ck_assert_uint_eq(d[1024 + 3 * MIB - 1], 0);
	ck_assert_uint_eq(d[1024 + 3 * MIB], 0xff);
	/* a range inside one page */
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_DISCARD, NULL, 5 * MIB + 512, 512), 0);
	ck_assert_uint_eq(d[5 * MIB + 511], 0xff);
	ck_assert_uint_eq(d[5 * MIB + 512], 0);
	ck_assert_uint_eq(d[5 * MIB + 1023], 0);
	ck_assert_uint_eq(d[5 * MIB + 1024], 0xff);

	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_FLUSH, NULL, 0, 0), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_FLUSH, NULL, 0, 0), 0);
	be_memory_counts(m, &k);
	ck_assert_uint_eq(k.ops[BUFIO_OP_FLUSH], 2);
	ck_assert_uint_eq(k.ops[BUFIO_OP_DISCARD], 2);
	ck_assert_uint_eq(k.bytes[BUFIO_OP_DISCARD], 3 * MIB + 512);
	ck_assert_uint_eq(k.ops[BUFIO_OP_READ], 0);
	ck_assert_uint_eq(k.batches, 4);
	bufio_backend_close(m);
}
END_TEST

/* Completion happens on the submitting thread, before submit returns. */
START_TEST(test_inline_completion_and_batch)
{
	enum { N = 1000 };
	struct bufio_backend *m = be_memory_create(N * 4096ull, 4096);
	unsigned char *buf = alloc_aligned(4096, N * 4096ull);
	struct bufio_io *ios = calloc(N, sizeof(*ios));
	struct rec *recs = calloc(N, sizeof(*recs));
	struct bufio_plug plug;
	struct be_counts k;

	bufio_plug_init(&plug);
	for (int i = 0; i < N; i++) {
		fill_pattern(buf + i * 4096ull, 4096, (uint64_t)i, 3);
		ios[i] = (struct bufio_io){.buf = buf + i * 4096ull,
		                           .offset = (uint64_t)(N - 1 - i) * 4096,
		                           .len = 4096,
		                           .done = rec_done,
		                           .private = &recs[i],
		                           .op = BUFIO_OP_WRITE};
		bufio_plug_add(&plug, &ios[i]);
	}
	ck_assert_uint_eq(plug.count, N);
	bufio_plug_finish(&plug, m);
	ck_assert_ptr_null(plug.head);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(recs[i].calls, 1);
		ck_assert_int_eq(recs[i].res, 0);
		ck_assert(pthread_equal(recs[i].thread, pthread_self()));
		ck_assert(
		    check_pattern((unsigned char *)be_memory_data(m) + (uint64_t)(N - 1 - i) * 4096,
		                  4096, (uint64_t)i, 3));
	}
	be_memory_counts(m, &k);
	ck_assert_uint_eq(k.batches, 1);
	ck_assert_uint_eq(k.ops[BUFIO_OP_WRITE], N);
	ck_assert_uint_eq(k.bytes[BUFIO_OP_WRITE], N * 4096ull);
	/* an empty plug submits nothing */
	bufio_plug_finish(&plug, m);
	be_memory_counts(m, &k);
	ck_assert_uint_eq(k.batches, 1);
	free(ios);
	free(recs);
	free(buf);
	bufio_backend_close(m);
}
END_TEST

struct chain {
	struct bufio_backend *be;
	struct bufio_io io;
	int left;
	int calls;
};

static void chain_done(struct bufio_io *io, int res)
{
	struct chain *c = io->private;

	ck_assert_int_eq(res, 0);
	c->calls++;
	if (--c->left > 0) {
		io->offset += 512;
		io->next = NULL;
		bufio_backend_submit(c->be, io);
	}
}

/* A completion callback may submit again: here recursively, on the same thread. */
START_TEST(test_callback_resubmits)
{
	struct bufio_backend *m = be_memory_create(1 * MIB, 512);
	unsigned char *buf = alloc_aligned(512, 512);
	struct chain c = {.be = m, .left = 50};
	struct be_counts k;

	memset(buf, 0x11, 512);
	c.io = (struct bufio_io){
	    .buf = buf, .len = 512, .done = chain_done, .private = &c, .op = BUFIO_OP_WRITE};
	bufio_backend_submit(m, &c.io);
	ck_assert_int_eq(c.calls, 50);
	be_memory_counts(m, &k);
	ck_assert_uint_eq(k.ops[BUFIO_OP_WRITE], 50);
	ck_assert_uint_eq(((unsigned char *)be_memory_data(m))[(size_t)49 * 512], 0x11);
	ck_assert_uint_eq(((unsigned char *)be_memory_data(m))[(size_t)50 * 512], 0);
	free(buf);
	bufio_backend_close(m);
}
END_TEST

struct par {
	struct bufio_backend *be;
};

static void par_worker(void *arg, unsigned idx)
{
	struct par *p = arg;
	unsigned char *buf = alloc_aligned(4096, 4096);

	for (int i = 0; i < 500; i++) {
		uint64_t blk = idx * 500ull + (uint64_t)i;

		fill_pattern(buf, 4096, blk, 9);
		ck_assert_int_eq(
		    bufio_backend_rw_sync(p->be, BUFIO_OP_WRITE, buf, blk * 4096, 4096), 0);
		memset(buf, 0, 4096);
		ck_assert_int_eq(bufio_backend_rw_sync(p->be, BUFIO_OP_READ, buf, blk * 4096, 4096),
		                 0);
		ck_assert(check_pattern(buf, 4096, blk, 9));
	}
	free(buf);
}

START_TEST(test_concurrent_counters)
{
	struct par p = {.be = be_memory_create(4ull * 500 * 4096, 4096)};
	struct be_counts k;

	run_threads(4, par_worker, &p);
	be_memory_counts(p.be, &k);
	ck_assert_uint_eq(k.ops[BUFIO_OP_WRITE], 2000);
	ck_assert_uint_eq(k.ops[BUFIO_OP_READ], 2000);
	ck_assert_uint_eq(k.bytes[BUFIO_OP_READ], 2000 * 4096ull);
	ck_assert_uint_eq(k.batches, 4000);
	bufio_backend_close(p.be);
}
END_TEST

/* 1 GiB costs only the pages touched; a discard gives them back. */
START_TEST(test_large_sparse)
{
	uint64_t size = 1024 * MIB;
	struct bufio_backend *m = be_memory_create(size, 4096);
	unsigned char *buf = alloc_aligned(4096, 4096);

	ck_assert_ptr_nonnull(m);
	fill_pattern(buf, 4096, 1, 2);
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_WRITE, buf, size - 4096, 4096), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_WRITE, buf, 512 * MIB, 4096), 0);
	memset(buf, 0, 4096);
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_READ, buf, size - 4096, 4096), 0);
	ck_assert(check_pattern(buf, 4096, 1, 2));
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_DISCARD, NULL, 0, size), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(m, BUFIO_OP_READ, buf, 512 * MIB, 4096), 0);
	for (int i = 0; i < 4096; i++)
		ck_assert_uint_eq(buf[i], 0);
	free(buf);
	bufio_backend_close(m);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("backend_memory");
	TCase *t = tcase_create("memory");

	tcase_set_timeout(t, 120);
	tcase_add_test(t, test_create_errors);
	tcase_add_test(t, test_roundtrip_and_data);
	tcase_add_test(t, test_alignment_errors);
	tcase_add_test(t, test_past_end);
	tcase_add_test(t, test_discard_zeroes_and_flush);
	tcase_add_test(t, test_inline_completion_and_batch);
	tcase_add_test(t, test_callback_resubmits);
	tcase_add_test(t, test_concurrent_counters);
	tcase_add_test(t, test_large_sparse);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
