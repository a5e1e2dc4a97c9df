/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Unit tests of libbufio's reserved buffers under injected allocation
 * failures: forward progress for one thread, others waiting for a release
 * rather than failing, and prefetch giving up silently.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include <bufio/bufio.h>
#include "backend/be_memory.h"
#include "helpers.h"

#define BS 4096u

static struct bufio_backend *mem;

static void setup(void)
{
	ck_assert_int_eq(bufio_set_max_cache_size(256 * MIB), 0);
	bufio_inject_alloc_failures(0);
	mem = mem_with_pattern(256, BS, 512, 1);
}

static void teardown(void)
{
	bufio_inject_alloc_failures(0);
	bufio_backend_close(mem);
}

static void read_check_release(struct bufio_client *c, uint64_t blk)
{
	struct bufio_buffer *b;
	void *p = bufio_read(c, blk, &b);
	ck_assert_msg(p != NULL, "read %llu under allocation failure: %s", (unsigned long long)blk,
	              strerror(errno));
	ck_assert(check_pattern(p, BS, blk, 1));
	bufio_release(b);
}

START_TEST(test_reserve_one_thread)
{
	struct bufio_client *c = bufio_client_create(mem, BS, 4, 0, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	bufio_inject_alloc_failures(-1);
	struct bufio_buffer *b[4];
	for (unsigned i = 0; i < 4; i++) {
		void *p = bufio_read(c, 10 + i, &b[i]);
		ck_assert_msg(p != NULL, "reserve buffer %u: %s", i, strerror(errno));
		ck_assert(check_pattern(p, BS, 10 + i, 1));
	}
	struct bufio_stats st = stats(c);
	ck_assert_uint_ge(st.reserve_used, 4);
	ck_assert_uint_ge(st.alloc_failures, 1);
	ck_assert_uint_eq(st.buffers_held, 4);
	for (unsigned i = 0; i < 4; i++)
		bufio_release(b[i]);
	/* one at a time, any number of blocks: buffers get recycled */
	for (uint64_t i = 20; i < 60; i++)
		read_check_release(c, i);
	/* new works too */
	void *p = bufio_new(c, 100, &b[0]);
	ck_assert_ptr_nonnull(p);
	fill_pattern(p, BS, 100, 2);
	bufio_mark_buffer_dirty(b[0]);
	bufio_release(b[0]);
	read_check_release(c, 61);
	ck_assert_uint_gt(stats(c).alloc_failures, st.alloc_failures);
	bufio_inject_alloc_failures(0);
	for (uint64_t i = 0; i < 10; i++)
		read_check_release(c, i);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	ck_assert(
	    check_pattern((unsigned char *)be_memory_data(mem) + (size_t)100 * BS, BS, 100, 2));
	bufio_client_destroy(c);
}
END_TEST

START_TEST(test_reserve_at_least_one)
{
	struct bufio_client *c = bufio_client_create(mem, BS, 0, 0, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	bufio_inject_alloc_failures(-1);
	for (uint64_t i = 0; i < 8; i++)
		read_check_release(c, i);
	bufio_inject_alloc_failures(0);
	bufio_client_destroy(c);
}
END_TEST

START_TEST(test_inject_count)
{
	struct bufio_client *c = bufio_client_create(mem, BS, 1, 0, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	bufio_clear_stats(c);
	bufio_inject_alloc_failures(3);
	for (uint64_t i = 0; i < 20; i++)
		read_check_release(c, i);
	struct bufio_stats st = stats(c);
	ck_assert_uint_ge(st.alloc_failures, 1);
	ck_assert_uint_le(st.alloc_failures, 3);
	/* the injection is spent: later buffers were allocated normally */
	ck_assert_uint_ge(st.buffers_clean, 15);
	bufio_client_destroy(c);
}
END_TEST

/*---------------------------------------------------------------- waiting */

struct waiter {
	struct bufio_client *c;
	int done;
	int ok;
	int err;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;
	struct bufio_buffer *b;
	void *p = bufio_read(w->c, 50, &b);
	w->err = errno;
	if (p) {
		w->ok = check_pattern(p, BS, 50, 1);
		bufio_release(b);
	}
	__atomic_store_n(&w->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

START_TEST(test_second_thread_waits)
{
	struct bufio_client *c = bufio_client_create(mem, BS, 4, 0, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	bufio_inject_alloc_failures(-1);
	struct bufio_buffer *b[4];
	for (unsigned i = 0; i < 4; i++)
		ck_assert_ptr_nonnull(bufio_read(c, i, &b[i]));
	/* the reserve is all held: another thread has to wait for a release */
	struct waiter w = {.c = c};
	pthread_t tid;
	ck_assert_int_eq(pthread_create(&tid, NULL, waiter_main, &w), 0);
	usleep(200 * 1000);
	ck_assert_msg(!__atomic_load_n(&w.done, __ATOMIC_SEQ_CST),
	              "a read returned (%s) with no memory and the reserve held", strerror(w.err));
	bufio_release(b[0]);
	ck_assert(WAIT_UNTIL(__atomic_load_n(&w.done, __ATOMIC_SEQ_CST), 20));
	pthread_join(tid, NULL);
	ck_assert_msg(w.ok, "the waiting read failed: %s", strerror(w.err));
	for (unsigned i = 1; i < 4; i++)
		bufio_release(b[i]);
	bufio_inject_alloc_failures(0);
	bufio_client_destroy(c);
}
END_TEST

struct turns {
	struct bufio_client *c;
	int bad;
};

static void turns_thread(void *arg, unsigned idx)
{
	struct turns *t = arg;
	uint64_t rs = 77 + idx;
	for (unsigned i = 0; i < 200; i++) {
		uint64_t blk = rnd_next(&rs) % 64;
		struct bufio_buffer *b;
		void *p = bufio_read(t->c, blk, &b);
		if (!p || !check_pattern(p, BS, blk, 1)) {
			__atomic_add_fetch(&t->bad, 1, __ATOMIC_RELAXED);
			if (!p)
				continue;
		}
		bufio_release(b);
	}
}

START_TEST(test_threads_take_turns)
{
	/* only the reserve's buffers exist: 6 threads share them, none stuck */
	struct bufio_client *c = bufio_client_create(mem, BS, 1, 0, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	bufio_inject_alloc_failures(-1);
	struct turns t = {.c = c};
	run_threads(6, turns_thread, &t);
	ck_assert_int_eq(t.bad, 0);
	ck_assert_uint_eq(stats(c).buffers_held, 0);
	bufio_inject_alloc_failures(0);
	bufio_client_destroy(c);
}
END_TEST

START_TEST(test_prefetch_under_failure)
{
	struct bufio_client *c = bufio_client_create(mem, BS, 2, 0, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	bufio_inject_alloc_failures(-1);
	bufio_prefetch(c, 0, 64);
	ck_assert(WAIT_UNTIL(stats(c).buffers_reading == 0, 10));
	struct bufio_stats st = stats(c);
	ck_assert_uint_lt(st.prefetches, 64);
	ck_assert_uint_ge(st.alloc_failures, 1);
	/* the reserve is still there for a reader */
	struct bufio_buffer *b1, *b2;
	ck_assert_ptr_nonnull(bufio_read(c, 100, &b1));
	ck_assert_ptr_nonnull(bufio_read(c, 101, &b2));
	ck_assert(check_pattern(bufio_get_block_data(b2), BS, 101, 1));
	bufio_release(b1);
	bufio_release(b2);
	for (uint64_t i = 0; i < 64; i++)
		read_check_release(c, i);
	bufio_inject_alloc_failures(0);
	bufio_client_destroy(c);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("core_reserve");
	TCase *t = tcase_create("reserve");
	tcase_set_timeout(t, 120);
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, test_reserve_one_thread);
	tcase_add_test(t, test_reserve_at_least_one);
	tcase_add_test(t, test_inject_count);
	tcase_add_test(t, test_second_thread_waits);
	tcase_add_test(t, test_threads_take_turns);
	tcase_add_test(t, test_prefetch_under_failure);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
