/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Unit tests of libbufio's I/O error paths with the fault backend: failed
 * reads are returned and not cached, failed writes stay dirty and are retried,
 * flush and discard errors propagate; plus issue_flush and issue_discard.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include <bufio/bufio.h>
#include "backend/be_fault.h"
#include "backend/be_memory.h"
#include "helpers.h"

#define BS 4096u

static struct bufio_backend *mem, *flt;
static struct bufio_client *cl;

/* Every test: a 256-block patterned memory device under a fault wrapper. */
static void setup(void)
{
	ck_assert_int_eq(bufio_set_max_cache_size(256 * MIB), 0);
	bufio_set_max_age(300);
	bufio_inject_alloc_failures(0);
	mem = mem_with_pattern(256, BS, 512, 1);
	flt = be_fault_create(mem, false);
	ck_assert_ptr_nonnull(flt);
	/* one clean buffer, so that ratio 1000 really means "only when asked" */
	cl = quiet_client(flt, BS);
}

static void teardown(void)
{
	be_fault_clear_rules(flt);
	bufio_client_destroy(cl);
	bufio_backend_close(flt);
	bufio_backend_close(mem);
}

static void add_rule(unsigned ops, uint64_t block, uint64_t nblocks, int error, uint64_t count)
{
	struct be_fault_rule r = {.ops = ops,
	                          .start = block * BS,
	                          .end = (block + nblocks) * BS,
	                          .count = count,
	                          .error = error};
	ck_assert_int_ge(be_fault_add_rule(flt, &r), 0);
}

static int on_disk(uint64_t blk, uint32_t seed)
{
	return check_pattern((unsigned char *)be_memory_data(mem) + blk * BS, BS, blk, seed);
}

/*---------------------------------------------------------------- reads */

START_TEST(test_read_error_not_cached)
{
	add_rule(1u << BUFIO_OP_READ, 10, 1, -EIO, 0);
	struct bufio_buffer *b;
	errno = 0;
	ck_assert_ptr_null(bufio_read(cl, 10, &b));
	ck_assert_int_eq(errno, EIO);
	/* other blocks are fine */
	void *p = bufio_read(cl, 11, &b);
	ck_assert_ptr_nonnull(p);
	ck_assert(check_pattern(p, BS, 11, 1));
	bufio_release(b);
	/* the failure was not cached: not gettable, and read tries again */
	errno = 0;
	ck_assert_ptr_null(bufio_get(cl, 10, &b));
	ck_assert_int_eq(errno, ENOENT);
	errno = 0;
	ck_assert_ptr_null(bufio_read(cl, 10, &b));
	ck_assert_int_eq(errno, EIO);
	struct bufio_stats st = stats(cl);
	ck_assert_uint_eq(st.read_errors, 2);
	ck_assert_uint_eq(st.buffers_held, 0);
	ck_assert_uint_eq(st.buffers_reading, 0);
	ck_assert_uint_eq(be_fault_injected(flt), 2);

	be_fault_clear_rules(flt);
	p = bufio_read(cl, 10, &b);
	ck_assert_ptr_nonnull(p);
	ck_assert(check_pattern(p, BS, 10, 1));
	bufio_release(b);
}
END_TEST

START_TEST(test_read_error_passes_errno)
{
	add_rule(1u << BUFIO_OP_READ, 0, 0, -ENODATA, 1);
	struct bufio_buffer *b;
	errno = 0;
	ck_assert_ptr_null(bufio_read(cl, 3, &b));
	ck_assert_int_eq(errno, ENODATA);
	/* count 1: the rule is spent, the retry reads */
	void *p = bufio_read(cl, 3, &b);
	ck_assert_ptr_nonnull(p);
	ck_assert(check_pattern(p, BS, 3, 1));
	bufio_release(b);

	add_rule(1u << BUFIO_OP_READ, 0, 0, -EILSEQ, 1);
	errno = 0;
	ck_assert_ptr_null(bufio_read(cl, 4, &b));
	ck_assert_int_eq(errno, EILSEQ);
}
END_TEST

START_TEST(test_prefetch_error_then_read)
{
	add_rule(1u << BUFIO_OP_READ, 20, 4, -EIO, 4);
	bufio_prefetch(cl, 18, 8);
	ck_assert(WAIT_UNTIL(stats(cl).buffers_reading == 0 && be_fault_injected(flt) == 4, 10));
	struct bufio_buffer *b;
	for (uint64_t i = 18; i < 26; i++) {
		void *p = bufio_get(cl, i, &b);
		if (i >= 20 && i < 24) {
			ck_assert_msg(p == NULL, "failed prefetch of %llu was cached",
			              (unsigned long long)i);
			continue;
		}
		ck_assert_ptr_nonnull(p);
		ck_assert(check_pattern(p, BS, i, 1));
		bufio_release(b);
	}
	for (uint64_t i = 20; i < 24; i++) {
		void *p = bufio_read(cl, i, &b);
		ck_assert_ptr_nonnull(p);
		ck_assert(check_pattern(p, BS, i, 1));
		bufio_release(b);
	}
	ck_assert_uint_ge(stats(cl).read_errors, 4);
}
END_TEST

START_TEST(test_new_after_read_error)
{
	/* bufio_new needs no read, so a failing device does not stop it */
	add_rule(1u << BUFIO_OP_READ, 0, 0, -EIO, 0);
	struct bufio_buffer *b;
	ck_assert_ptr_null(bufio_read(cl, 7, &b));
	dirty_block(cl, 7, 2);
	void *p = bufio_read(cl, 7, &b);
	ck_assert_ptr_nonnull(p);
	ck_assert(check_pattern(p, BS, 7, 2));
	bufio_release(b);
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), 0);
	ck_assert(on_disk(7, 2));
}
END_TEST

/*---------------------------------------------------------------- writes */

START_TEST(test_write_error_stays_dirty)
{
	add_rule(1u << BUFIO_OP_WRITE, 0, 0, -EIO, 0);
	dirty_block(cl, 5, 2);
	dirty_block(cl, 6, 2);
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), -EIO);
	struct bufio_stats st = stats(cl);
	ck_assert_uint_eq(st.buffers_dirty, 2);
	ck_assert_uint_ge(st.write_errors, 2);
	ck_assert(on_disk(5, 1));
	/* the data is still the cached contents */
	struct bufio_buffer *b;
	void *p = bufio_get(cl, 5, &b);
	ck_assert_ptr_nonnull(p);
	ck_assert(check_pattern(p, BS, 5, 2));
	bufio_release(b);
	/* still failing: reported again, as a new error */
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), -EIO);

	be_fault_clear_rules(flt);
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), 0);
	ck_assert(on_disk(5, 2));
	ck_assert(on_disk(6, 2));
	ck_assert_uint_eq(stats(cl).buffers_dirty, 0);
	/* reported once: nothing new failed */
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), 0);
}
END_TEST

START_TEST(test_write_error_passes_errno_once)
{
	add_rule(1u << BUFIO_OP_WRITE, 9, 1, -ENOSPC, 1);
	dirty_block(cl, 8, 3);
	dirty_block(cl, 9, 3);
	dirty_block(cl, 10, 3);
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), -ENOSPC);
	ck_assert(on_disk(8, 3));
	ck_assert(on_disk(10, 3));
	ck_assert(on_disk(9, 1));
	ck_assert_uint_eq(stats(cl).buffers_dirty, 1);
	ck_assert_uint_eq(stats(cl).write_errors, 1);
	/* the rule is spent: the retry succeeds and no error is repeated */
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), 0);
	ck_assert(on_disk(9, 3));
	ck_assert_uint_eq(stats(cl).buffers_dirty, 0);
}
END_TEST

START_TEST(test_background_write_error_reported)
{
	/* an error met by background write-back is returned by the next call */
	add_rule(1u << BUFIO_OP_WRITE, 0, 0, -EIO, 1);
	ck_assert_int_eq(bufio_set_writeback_ratio(cl, 0), 0);
	dirty_block(cl, 12, 4);
	ck_assert(WAIT_UNTIL(stats(cl).write_errors >= 1, 10));
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), -EIO);
	/* reported once; the data gets there (retried here if not before) */
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), 0);
	ck_assert(on_disk(12, 4));
	ck_assert_uint_eq(stats(cl).buffers_dirty, 0);
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), 0);
}
END_TEST

START_TEST(test_async_write_error_reported)
{
	add_rule(1u << BUFIO_OP_WRITE, 0, 0, -EIO, 1);
	dirty_block(cl, 12, 4);
	bufio_write_dirty_buffers_async(cl);
	ck_assert(WAIT_UNTIL(stats(cl).write_errors >= 1 && stats(cl).buffers_writing == 0, 10));
	ck_assert_uint_eq(stats(cl).buffers_dirty, 1);
	ck_assert(on_disk(12, 1));
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), -EIO);
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), 0);
	ck_assert(on_disk(12, 4));
	ck_assert_uint_eq(stats(cl).buffers_dirty, 0);
}
END_TEST

/*---------------------------------------------------------------- flush */

START_TEST(test_issue_flush)
{
	struct be_counts k0, k1;
	be_fault_counts(flt, &k0);
	ck_assert_int_eq(bufio_issue_flush(cl), 0);
	be_fault_counts(flt, &k1);
	ck_assert_uint_eq(k1.ops[BUFIO_OP_FLUSH] - k0.ops[BUFIO_OP_FLUSH], 1);
	ck_assert_uint_eq(stats(cl).flushes, 1);

	add_rule(1u << BUFIO_OP_FLUSH, 0, 0, -EIO, 0);
	ck_assert_int_eq(bufio_issue_flush(cl), -EIO);
	/* write_dirty_buffers with no write error returns the flush's */
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), -EIO);
	dirty_block(cl, 1, 5);
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), -EIO);
	/* the write itself succeeded */
	ck_assert(on_disk(1, 5));
	ck_assert_uint_eq(stats(cl).buffers_dirty, 0);
	be_fault_clear_rules(flt);
	ck_assert_int_eq(bufio_issue_flush(cl), 0);
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), 0);
}
END_TEST

START_TEST(test_write_error_wins_over_flush)
{
	/* the first write error is what is returned, not the flush's */
	add_rule(1u << BUFIO_OP_WRITE, 0, 0, -ENOSPC, 0);
	add_rule(1u << BUFIO_OP_FLUSH, 0, 0, -EIO, 0);
	dirty_block(cl, 2, 6);
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), -ENOSPC);
}
END_TEST

/*---------------------------------------------------------------- discard */

START_TEST(test_issue_discard)
{
	const unsigned char *d = be_memory_data(mem);
	ck_assert_msg(flt->flags & BUFIO_BE_DISCARD, "memory device (wrapped) lacks discard");
	struct bufio_buffer *b;
	ck_assert_ptr_nonnull(bufio_read(cl, 41, &b));
	bufio_release(b);
	bufio_forget_buffers(cl, 40, 3);
	ck_assert_int_eq(bufio_issue_discard(cl, 40, 3), 0);
	for (unsigned i = 0; i < 3 * BS; i++)
		ck_assert_uint_eq(d[40 * BS + i], 0);
	ck_assert(on_disk(39, 1));
	ck_assert(on_disk(43, 1));
	void *p = bufio_read(cl, 41, &b);
	ck_assert_ptr_nonnull(p);
	for (unsigned i = 0; i < BS; i++)
		ck_assert_uint_eq(((unsigned char *)p)[i], 0);
	bufio_release(b);
	ck_assert_uint_eq(stats(cl).discards, 1);
	struct be_counts k;
	be_fault_counts(flt, &k);
	ck_assert_uint_eq(k.ops[BUFIO_OP_DISCARD], 1);
	ck_assert_uint_eq(k.bytes[BUFIO_OP_DISCARD], (uint64_t)3 * BS);

	/* range checks: nothing reaches the backend */
	ck_assert_int_eq(bufio_issue_discard(cl, 255, 2), -ERANGE);
	ck_assert_int_eq(bufio_issue_discard(cl, 256, 1), -ERANGE);
	ck_assert_int_eq(bufio_issue_discard(cl, 1, UINT64_MAX), -ERANGE);
	ck_assert_int_eq(bufio_issue_discard(cl, 255, 1), 0);
	be_fault_counts(flt, &k);
	ck_assert_uint_eq(k.ops[BUFIO_OP_DISCARD], 2);

	add_rule(1u << BUFIO_OP_DISCARD, 0, 0, -EIO, 0);
	ck_assert_int_eq(bufio_issue_discard(cl, 100, 1), -EIO);
	ck_assert(on_disk(100, 1));
}
END_TEST

START_TEST(test_discard_unsupported)
{
	struct bufio_backend *m = be_memory_create((uint64_t)64 * BS, 512);
	m->flags &= ~BUFIO_BE_DISCARD; /* a device without discard */
	struct bufio_client *c = bufio_client_create(m, BS, 1, 0, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	memset(be_memory_data(m), 0x33, (size_t)64 * BS);
	ck_assert_int_eq(bufio_issue_discard(c, 0, 4), -EOPNOTSUPP);
	ck_assert_uint_eq(((unsigned char *)be_memory_data(m))[0], 0x33);
	struct be_counts k;
	be_memory_counts(m, &k);
	ck_assert_uint_eq(k.ops[BUFIO_OP_DISCARD], 0);
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

/*---------------------------------------------------------------- range */

START_TEST(test_out_of_range)
{
	struct bufio_buffer *b;
	errno = 0;
	ck_assert_ptr_null(bufio_read(cl, 256, &b));
	ck_assert_int_eq(errno, ERANGE);
	errno = 0;
	ck_assert_ptr_null(bufio_new(cl, 1ull << 40, &b));
	ck_assert_int_eq(errno, ERANGE);
	/* prefetch, forget past the end: harmless */
	bufio_prefetch(cl, 250, 50);
	bufio_forget(cl, 300);
	bufio_forget_buffers(cl, 200, UINT64_MAX);
	ck_assert(WAIT_UNTIL(stats(cl).buffers_reading == 0, 10));
	struct be_counts k;
	be_fault_counts(flt, &k);
	ck_assert_uint_le(k.ops[BUFIO_OP_READ], 6);
	ck_assert_uint_eq(stats(cl).read_errors, 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("core_errors");
	TCase *t = tcase_create("errors");
	tcase_set_timeout(t, 120);
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, test_read_error_not_cached);
	tcase_add_test(t, test_read_error_passes_errno);
	tcase_add_test(t, test_prefetch_error_then_read);
	tcase_add_test(t, test_new_after_read_error);
	tcase_add_test(t, test_write_error_stays_dirty);
	tcase_add_test(t, test_write_error_passes_errno_once);
	tcase_add_test(t, test_background_write_error_reported);
	tcase_add_test(t, test_async_write_error_reported);
	tcase_add_test(t, test_issue_flush);
	tcase_add_test(t, test_write_error_wins_over_flush);
	tcase_add_test(t, test_issue_discard);
	tcase_add_test(t, test_discard_unsupported);
	tcase_add_test(t, test_out_of_range);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
