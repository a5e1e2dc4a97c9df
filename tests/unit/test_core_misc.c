/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Unit tests of libbufio's hold counts (what a held or in-flight buffer
 * survives), forget/forget_buffers/drop_clean, the statistics, and destroy
 * with a buffer still held.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include <bufio/bufio.h>
#include "backend/be_fault.h"
#include "backend/be_memory.h"
#include "helpers.h"

#define BS 4096u

/*---------------------------------------------------------------- holds */

START_TEST(test_held_survives_everything)
{
	reset_globals();
	struct bufio_backend *m = mem_with_pattern(256, BS, 512, 1);
	struct bufio_client *c = lazy_client(m, BS);
	/* held first, so that it is the oldest in any replacement order */
	struct bufio_buffer *held;
	unsigned char *hp = bufio_read(c, 0, &held);
	ck_assert_ptr_nonnull(hp);
	/* a second hold on it, dropped at once: holds count */
	struct bufio_buffer *again;
	ck_assert_ptr_eq(bufio_get(c, 0, &again), hp);
	bufio_release(again);
	read_range(c, 1, 63, 1);

	ck_assert_int_eq(bufio_set_max_cache_size(1), 0);
	bufio_run_cleanup();
	ck_assert(WAIT_UNTIL(stats(c).buffers_clean < 32, 10));
	ck_assert(check_pattern(hp, BS, 0, 1));
	bufio_forget(c, 0);
	bufio_forget_buffers(c, 0, 256);
	bufio_drop_clean(c);
	bufio_shrink(UINT64_MAX);
	bufio_run_cleanup();
	ck_assert_uint_eq(stats(c).buffers_held, 1);
	struct bufio_buffer *b;
	ck_assert_ptr_eq(bufio_get(c, 0, &b), hp);
	ck_assert_ptr_eq(b, held);
	bufio_release(b);
	ck_assert(check_pattern(hp, BS, 0, 1));
	ck_assert_uint_eq(bufio_get_block_number(held), 0);
	/* still fully usable: dirty it and write it */
	memset(hp, 0x61, 8);
	bufio_mark_partial_buffer_dirty(held, 0, 8);
	bufio_release(held);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	ck_assert_uint_eq(((unsigned char *)be_memory_data(m))[7], 0x61);
	reset_globals();
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_held_dirty_survives)
{
	/* a held dirty buffer: not dropped by forget, written by write-back */
	reset_globals();
	struct bufio_backend *m = mem_with_pattern(64, BS, 512, 1);
	struct bufio_client *c = quiet_client(m, BS);
	struct bufio_buffer *b;
	unsigned char *p = bufio_new(c, 5, &b);
	fill_pattern(p, BS, 5, 2);
	bufio_mark_buffer_dirty(b);
	bufio_forget(c, 5);
	bufio_forget_buffers(c, 0, 64);
	ck_assert_uint_eq(stats(c).buffers_dirty, 1);
	ck_assert(check_pattern(p, BS, 5, 2));
	bufio_release(b);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	ck_assert(check_pattern((unsigned char *)be_memory_data(m) + (size_t)5 * BS, BS, 5, 2));
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

struct cleanup_thread {
	int done;
};

static void *cleanup_main(void *arg)
{
	struct cleanup_thread *t = arg;
	bufio_run_cleanup();
	bufio_shrink(UINT64_MAX);
	__atomic_store_n(&t->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

START_TEST(test_in_flight_not_evicted)
{
	reset_globals();
	struct bufio_backend *m = mem_with_pattern(256, BS, 512, 3);
	struct bufio_backend *f = be_fault_create(m, false);
	struct bufio_client *c = lazy_client(f, BS);
	read_range(c, 100, 32, 3);
	be_fault_hold(f, 1u << BUFIO_OP_READ);
	bufio_prefetch(c, 0, 16);
	ck_assert(WAIT_UNTIL(be_fault_held(f) == 16, 10));
	ck_assert_uint_eq(stats(c).buffers_reading, 16);
	ck_assert_int_eq(bufio_set_max_cache_size(1), 0);
	/* the budget pass, age pass and shrinker must not wait for these reads */
	struct cleanup_thread t = {0};
	pthread_t tid;
	ck_assert_int_eq(pthread_create(&tid, NULL, cleanup_main, &t), 0);
	int finished = WAIT_UNTIL(__atomic_load_n(&t.done, __ATOMIC_SEQ_CST), 20);
	struct bufio_stats st = stats(c);
	be_fault_release(f);
	pthread_join(tid, NULL);
	ck_assert_msg(finished, "cleanup/shrink blocked on reads in flight");
	ck_assert_uint_eq(st.buffers_reading, 16);
	ck_assert_uint_ge(st.evict_budget + st.evict_pressure, 16);
	ck_assert(WAIT_UNTIL(stats(c).buffers_reading == 0, 10));
	/* the held-back reads delivered into live buffers; data right */
	reset_globals();
	read_range(c, 0, 16, 3);
	bufio_client_destroy(c);
	bufio_backend_close(f);
	bufio_backend_close(m);
}
END_TEST

struct forget_thread {
	struct bufio_client *c;
	uint64_t block;
	int done;
};

static void *forget_main(void *arg)
{
	struct forget_thread *t = arg;
	bufio_forget(t->c, t->block);
	__atomic_store_n(&t->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

START_TEST(test_writing_not_evicted_or_forgotten)
{
	reset_globals();
	struct bufio_backend *m = mem_with_pattern(64, BS, 512, 4);
	struct bufio_backend *f = be_fault_create(m, false);
	struct bufio_client *c = quiet_client(f, BS);
	dirty_block(c, 7, 5);
	be_fault_hold(f, 1u << BUFIO_OP_WRITE);
	bufio_write_dirty_buffers_async(c);
	ck_assert(WAIT_UNTIL(be_fault_held(f) == 1, 10));
	ck_assert_uint_eq(stats(c).buffers_writing, 1);
	bufio_drop_clean(c);
	bufio_shrink(UINT64_MAX);
	bufio_run_cleanup();
	ck_assert_uint_eq(stats(c).buffers_writing, 1);
	/* forget waits for the write in flight, then drops the copy */
	struct forget_thread t = {.c = c, .block = 7};
	pthread_t tid;
	ck_assert_int_eq(pthread_create(&tid, NULL, forget_main, &t), 0);
	usleep(100 * 1000);
	ck_assert_msg(!__atomic_load_n(&t.done, __ATOMIC_SEQ_CST),
	              "forget returned while the block's write was in flight");
	ck_assert_uint_eq(stats(c).buffers_writing, 1);
	be_fault_release(f);
	pthread_join(tid, NULL);
	ck_assert_uint_eq(stats(c).buffers_writing, 0);
	ck_assert(check_pattern((unsigned char *)be_memory_data(m) + (size_t)7 * BS, BS, 7, 5));
	ck_assert(!is_cached(c, 7));
	struct bufio_buffer *b;
	void *p = bufio_read(c, 7, &b);
	ck_assert(check_pattern(p, BS, 7, 5));
	bufio_release(b);
	bufio_client_destroy(c);
	bufio_backend_close(f);
	bufio_backend_close(m);
}
END_TEST

/*---------------------------------------------------------------- forget */

START_TEST(test_forget_waits_for_read)
{
	/* forget of a block being read waits for the read, then drops it */
	reset_globals();
	struct bufio_backend *m = mem_with_pattern(64, BS, 512, 15);
	struct bufio_backend *f = be_fault_create(m, false);
	struct bufio_client *c = lazy_client(f, BS);
	be_fault_hold(f, 1u << BUFIO_OP_READ);
	bufio_prefetch(c, 12, 1);
	ck_assert(WAIT_UNTIL(be_fault_held(f) == 1, 10));
	struct forget_thread t = {.c = c, .block = 12};
	pthread_t tid;
	ck_assert_int_eq(pthread_create(&tid, NULL, forget_main, &t), 0);
	usleep(100 * 1000);
	ck_assert_msg(!__atomic_load_n(&t.done, __ATOMIC_SEQ_CST),
	              "forget returned while the block's read was in flight");
	be_fault_release(f);
	pthread_join(tid, NULL);
	ck_assert_uint_eq(stats(c).buffers_reading, 0);
	ck_assert(!is_cached(c, 12));
	read_range(c, 12, 1, 15);
	bufio_client_destroy(c);
	bufio_backend_close(f);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_forget)
{
	reset_globals();
	struct bufio_backend *m = mem_with_pattern(64, BS, 512, 6);
	struct bufio_client *c = lazy_client(m, BS);
	read_range(c, 0, 16, 6);
	dirty_block(c, 20, 7);
	dirty_block(c, 21, 7);
	ck_assert_uint_eq(stats(c).buffers_clean, 16);

	bufio_forget(c, 3);
	ck_assert(!is_cached(c, 3));
	ck_assert(is_cached(c, 2));
	ck_assert(is_cached(c, 4));
	bufio_forget(c, 40); /* not cached: nothing */
	bufio_forget_buffers(c, 5, 4);
	for (uint64_t i = 5; i < 9; i++)
		ck_assert(!is_cached(c, i));
	ck_assert(is_cached(c, 9));
	ck_assert_uint_eq(stats(c).evict_forget, 5);
	bufio_forget_buffers(c, 0, 0);
	ck_assert(is_cached(c, 0));

	/* dirty data is dropped without a write */
	bufio_forget(c, 20);
	bufio_forget_buffers(c, 21, 1);
	ck_assert(!is_cached(c, 20));
	ck_assert(!is_cached(c, 21));
	ck_assert_uint_eq(stats(c).buffers_dirty, 0);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	struct be_counts k;
	be_memory_counts(m, &k);
	ck_assert_uint_eq(k.ops[BUFIO_OP_WRITE], 0);
	ck_assert(check_pattern((unsigned char *)be_memory_data(m) + (size_t)20 * BS, BS, 20, 6));
	/* reads come from the backend again */
	read_range(c, 0, 22, 6);
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_drop_clean)
{
	reset_globals();
	struct bufio_backend *m = mem_with_pattern(64, BS, 512, 8);
	struct bufio_client *c = lazy_client(m, BS);
	read_range(c, 0, 32, 8);
	dirty_block(c, 40, 9);
	struct bufio_buffer *held;
	ck_assert_ptr_nonnull(bufio_read(c, 50, &held));
	bufio_drop_clean(c);
	struct bufio_stats st = stats(c);
	ck_assert_uint_eq(st.buffers_dirty, 1);
	ck_assert_uint_le(st.buffers_clean, 1); /* the held one */
	ck_assert_uint_ge(st.evict_forget, 32);
	for (uint64_t i = 0; i < 32; i++)
		ck_assert(!is_cached(c, i));
	ck_assert(is_cached(c, 40));
	ck_assert(is_cached(c, 50));
	bufio_release(held);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	ck_assert(check_pattern((unsigned char *)be_memory_data(m) + (size_t)40 * BS, BS, 40, 9));
	bufio_drop_clean(c);
	ck_assert_uint_eq(stats(c).bytes_cached, 0);
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

/*---------------------------------------------------------------- stats */

START_TEST(test_stats)
{
	reset_globals();
	struct bufio_backend *m = mem_with_pattern(64, BS, 512, 10);
	struct bufio_client *c = lazy_client(m, BS);
	struct bufio_stats st = stats(c);
	ck_assert_uint_eq(st.hits, 0);
	ck_assert_uint_eq(st.misses, 0);
	ck_assert_uint_eq(st.bytes_cached, 0);

	struct bufio_buffer *b, *b2;
	ck_assert_ptr_nonnull(bufio_read(c, 1, &b)); /* miss */
	st = stats(c);
	ck_assert_uint_eq(st.misses, 1);
	ck_assert_uint_eq(st.reads, 1);
	ck_assert_uint_eq(st.read_bytes, BS);
	ck_assert_uint_eq(st.buffers_held, 1);
	ck_assert_uint_eq(st.buffers_clean, 1);
	ck_assert_uint_eq(st.bytes_cached, BS);
	ck_assert_ptr_nonnull(bufio_get(c, 1, &b2)); /* hit, second hold */
	ck_assert_uint_eq(stats(c).buffers_held, 1); /* one buffer, held twice */
	bufio_release(b2);
	bufio_release(b);
	ck_assert_uint_eq(stats(c).buffers_held, 0);
	ck_assert_ptr_nonnull(bufio_read(c, 1, &b)); /* hit */
	bufio_release(b);
	ck_assert_ptr_nonnull(bufio_new(c, 2, &b)); /* miss, no read */
	memset(bufio_get_block_data(b), 1, BS);
	bufio_mark_buffer_dirty(b);
	bufio_release(b);
	ck_assert_ptr_null(bufio_get(c, 3, &b)); /* not a miss: get never creates */
	st = stats(c);
	ck_assert_uint_eq(st.hits, 2);
	ck_assert_uint_eq(st.misses, 2);
	ck_assert_uint_eq(st.reads, 1);
	ck_assert_uint_eq(st.buffers_clean, 1);
	ck_assert_uint_eq(st.buffers_dirty, 1);
	ck_assert_uint_eq(st.bytes_cached, (uint64_t)2 * BS);
	ck_assert_uint_eq(st.writes, 0);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	bufio_prefetch(c, 10, 2);
	ck_assert(WAIT_UNTIL(stats(c).buffers_reading == 0 && stats(c).prefetches == 2, 10));
	st = stats(c);
	ck_assert_uint_eq(st.writes, 1);
	ck_assert_uint_eq(st.write_bytes, BS);
	ck_assert_uint_eq(st.writebacks, 0); /* asked for, not background */
	ck_assert_uint_eq(st.flushes, 1);
	ck_assert_uint_eq(st.reads, 3);
	ck_assert_uint_eq(st.buffers_clean, 4);
	ck_assert_uint_eq(st.buffers_dirty, 0);

	/* clear: counters reset, gauges kept */
	bufio_clear_stats(c);
	struct bufio_stats z = stats(c);
	ck_assert_uint_eq(z.hits, 0);
	ck_assert_uint_eq(z.misses, 0);
	ck_assert_uint_eq(z.reads, 0);
	ck_assert_uint_eq(z.read_bytes, 0);
	ck_assert_uint_eq(z.writes, 0);
	ck_assert_uint_eq(z.write_bytes, 0);
	ck_assert_uint_eq(z.flushes, 0);
	ck_assert_uint_eq(z.prefetches, 0);
	ck_assert_uint_eq(z.buffers_clean, st.buffers_clean);
	ck_assert_uint_eq(z.bytes_cached, st.bytes_cached);
	ck_assert_uint_eq(z.buffers_held, 0);
	ck_assert_ptr_nonnull(bufio_read(c, 1, &b));
	ck_assert_uint_eq(stats(c).hits, 1);
	ck_assert_uint_eq(stats(c).buffers_held, 1);
	bufio_clear_stats(c);
	ck_assert_uint_eq(stats(c).buffers_held, 1);
	bufio_release(b);
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_global_stats)
{
	reset_globals();
	struct bufio_stats g0;
	bufio_get_global_stats(&g0);
	struct bufio_backend *m1 = mem_with_pattern(64, BS, 512, 11),
	                     *m2 = mem_with_pattern(64, BS, 512, 12);
	struct bufio_client *c1 = lazy_client(m1, BS), *c2 = lazy_client(m2, BS);
	read_range(c1, 0, 10, 11);
	read_range(c2, 0, 5, 12);
	dirty_block(c2, 30, 1);
	struct bufio_buffer *held;
	ck_assert_ptr_nonnull(bufio_read(c1, 3, &held));
	struct bufio_stats s1 = stats(c1), s2 = stats(c2), g;
	bufio_get_global_stats(&g);
	ck_assert_uint_eq(g.buffers_clean - g0.buffers_clean, 15);
	ck_assert_uint_eq(g.buffers_dirty - g0.buffers_dirty, 1);
	ck_assert_uint_eq(g.buffers_held - g0.buffers_held, 1);
	ck_assert_uint_eq(g.bytes_cached - g0.bytes_cached, s1.bytes_cached + s2.bytes_cached);
	ck_assert_uint_eq(g.bytes_cached - g0.bytes_cached, (uint64_t)16 * BS);
	bufio_release(held);
	bufio_client_destroy(c1);
	bufio_get_global_stats(&g);
	ck_assert_uint_eq(g.bytes_cached - g0.bytes_cached, s2.bytes_cached);
	bufio_client_destroy(c2);
	bufio_backend_close(m1);
	bufio_backend_close(m2);
}
END_TEST

/*---------------------------------------------------------------- leaks */

/* The holder's reference: destroy keeps the memory, so it stays reachable. */
static struct bufio_buffer *leaked;
static unsigned char *leaked_data;

START_TEST(test_destroy_with_held_buffer)
{
	reset_globals();
	struct bufio_backend *m = mem_with_pattern(64, BS, 512, 13);
	struct bufio_client *c = lazy_client(m, BS);
	dirty_block(c, 9, 14);
	uint64_t before = bufio_leaked_buffers();
	leaked_data = bufio_read(c, 4, &leaked);
	ck_assert_ptr_nonnull(leaked_data);
	bufio_client_destroy(c);
	ck_assert_uint_eq(bufio_leaked_buffers(), before + 1);
	/* the dirty block was still written back */
	ck_assert(check_pattern((unsigned char *)be_memory_data(m) + (size_t)9 * BS, BS, 9, 14));
	/* and the holder's memory was not freed under it */
	ck_assert(check_pattern(leaked_data, BS, 4, 13));
	bufio_backend_close(m);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("core_misc");
	TCase *t = tcase_create("misc");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, test_held_survives_everything);
	tcase_add_test(t, test_held_dirty_survives);
	tcase_add_test(t, test_in_flight_not_evicted);
	tcase_add_test(t, test_writing_not_evicted_or_forgotten);
	tcase_add_test(t, test_forget_waits_for_read);
	tcase_add_test(t, test_forget);
	tcase_add_test(t, test_drop_clean);
	tcase_add_test(t, test_stats);
	tcase_add_test(t, test_global_stats);
	/* last: it leaves a buffer behind on purpose */
	tcase_add_test(t, test_destroy_with_held_buffer);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
