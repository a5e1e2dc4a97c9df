/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Unit tests of libbufio's process-wide memory policy: the budget and its
 * default, CLOCK replacement, minimum buffers, peak tracking, age eviction,
 * the shrinker (memory pressure) and sharing the budget between clients.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include <bufio/bufio.h>
#include "backend/be_memory.h"
#include "helpers.h"

#define BS 4096u

static uint64_t cached(struct bufio_client *c)
{
	struct bufio_stats st = stats(c);
	return st.buffers_clean + st.buffers_dirty;
}

/*---------------------------------------------------------------- the budget */

START_TEST(test_default_budget)
{
	ck_assert_int_eq(bufio_set_max_cache_size(0), 0);
	ck_assert_uint_eq(bufio_get_max_cache_size(), 0);
	uint64_t ram = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t limit = ram;
	FILE *f = fopen("/sys/fs/cgroup/memory.max", "r");
	if (f) {
		unsigned long long v;
		if (fscanf(f, "%llu", &v) == 1 && v < limit)
			limit = v;
		fclose(f);
	}
	uint64_t eff = bufio_get_effective_cache_size();
	uint64_t want = ram / 50;
	if (limit == ram) {
		/* 2% of RAM, give or take rounding to pages or blocks */
		ck_assert_msg(eff <= want + want / 100 && eff >= want - want / 100,
		              "default budget %llu, 2%% of RAM is %llu", (unsigned long long)eff,
		              (unsigned long long)want);
	} else {
		ck_assert_msg(eff > 0 && eff <= want + want / 100 && eff <= limit,
		              "default budget %llu, RAM %llu, cgroup limit %llu",
		              (unsigned long long)eff, (unsigned long long)ram,
		              (unsigned long long)limit);
	}
	ck_assert_int_eq(bufio_set_max_cache_size(5 * MIB), 0);
	ck_assert_uint_eq(bufio_get_max_cache_size(), 5 * MIB);
	ck_assert_uint_eq(bufio_get_effective_cache_size(), 5 * MIB);
	reset_globals();
}
END_TEST

START_TEST(test_lowering_budget_evicts)
{
	reset_globals();
	struct bufio_backend *m = mem_with_pattern(1024, BS, 512, 1);
	struct bufio_client *c = lazy_client(m, BS);
	uint64_t base = bufio_get_current_allocated();
	read_range(c, 0, 512, 1);
	ck_assert_uint_ge(bufio_get_current_allocated(), base + (uint64_t)512 * BS);
	ck_assert_uint_eq(stats(c).evict_budget, 0);
	ck_assert_uint_eq(cached(c), 512);

	ck_assert_int_eq(bufio_set_max_cache_size((uint64_t)512 * 1024), 0);
	ck_assert_msg(WAIT_UNTIL(bufio_get_current_allocated() <= (uint64_t)512 * 1024, 10),
	              "still %llu bytes allocated over a 512 KiB budget",
	              (unsigned long long)bufio_get_current_allocated());
	struct bufio_stats st = stats(c);
	ck_assert_uint_ge(st.evict_budget, 512 - 128);
	ck_assert_uint_le(st.bytes_cached, (uint64_t)512 * 1024);
	ck_assert_uint_ge(cached(c), 8);
	/* what remains and what was evicted still reads right */
	read_range(c, 0, 512, 1);
	ck_assert(WAIT_UNTIL(bufio_get_current_allocated() <= (uint64_t)512 * 1024, 10));
	bufio_client_destroy(c);
	bufio_backend_close(m);
	reset_globals();
}
END_TEST

START_TEST(test_budget_writes_back_dirty)
{
	/* over budget with dirty data: it is written, not lost */
	reset_globals();
	struct bufio_backend *m = be_memory_create((uint64_t)1024 * BS, 512);
	/* one clean buffer: no ratio write-back */
	struct bufio_client *c = quiet_client(m, BS);
	for (uint64_t i = 0; i < 256; i++)
		dirty_block(c, i, 2);
	ck_assert_uint_eq(stats(c).buffers_dirty, 256);
	ck_assert_int_eq(bufio_set_max_cache_size((uint64_t)256 * 1024), 0);
	ck_assert_msg(WAIT_UNTIL(bufio_get_current_allocated() <= (uint64_t)256 * 1024, 10),
	              "still %llu bytes allocated over a 256 KiB budget",
	              (unsigned long long)bufio_get_current_allocated());
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	unsigned char *d = be_memory_data(m);
	for (uint64_t i = 0; i < 256; i++)
		ck_assert_msg(check_pattern(d + i * BS, BS, i, 2), "dirty block %llu lost",
		              (unsigned long long)i);
	for (uint64_t i = 0; i < 256; i++) {
		struct bufio_buffer *b;
		void *p = bufio_read(c, i, &b);
		ck_assert(check_pattern(p, BS, i, 2));
		bufio_release(b);
	}
	bufio_client_destroy(c);
	bufio_backend_close(m);
	reset_globals();
}
END_TEST

START_TEST(test_budget_while_reading)
{
	/* streaming through a small budget stays near it */
	reset_globals();
	ck_assert_int_eq(bufio_set_max_cache_size((uint64_t)256 * 1024), 0);
	struct bufio_backend *m = mem_with_pattern(2048, BS, 512, 3);
	struct bufio_client *c = lazy_client(m, BS);
	read_range(c, 0, 2048, 3);
	ck_assert(WAIT_UNTIL(bufio_get_current_allocated() <= (uint64_t)256 * 1024, 10));
	/* evicted, or reused in place for the next block */
	ck_assert_uint_ge(stats(c).evict_budget + stats(c).evict_reuse, 2048 - 64);
	bufio_client_destroy(c);
	bufio_backend_close(m);
	reset_globals();
}
END_TEST

START_TEST(test_peak)
{
	reset_globals();
	struct bufio_backend *m = mem_with_pattern(512, BS, 512, 4);
	struct bufio_client *c = lazy_client(m, BS);
	bufio_reset_peak_allocated();
	uint64_t cur0 = bufio_get_current_allocated();
	ck_assert_uint_eq(bufio_get_peak_allocated(), cur0);
	read_range(c, 0, 256, 4);
	uint64_t cur1 = bufio_get_current_allocated();
	ck_assert_uint_ge(cur1, cur0 + (uint64_t)256 * BS);
	ck_assert_uint_ge(bufio_get_peak_allocated(), cur1);
	bufio_forget_buffers(c, 0, 256);
	uint64_t cur2 = bufio_get_current_allocated();
	ck_assert_uint_le(cur2, cur1 - (uint64_t)200 * BS);
	ck_assert_uint_ge(bufio_get_peak_allocated(), cur1);
	bufio_reset_peak_allocated();
	ck_assert_uint_eq(bufio_get_peak_allocated(), bufio_get_current_allocated());
	ck_assert_uint_lt(bufio_get_peak_allocated(), cur1);
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

/*---------------------------------------------------------------- minimum buffers */

START_TEST(test_minimum_buffers)
{
	reset_globals();
	struct bufio_backend *m = mem_with_pattern(256, BS, 512, 5);
	struct bufio_client *c = lazy_client(m, BS);
	read_range(c, 0, 64, 5);
	ck_assert_int_eq(bufio_set_max_cache_size(1), 0);
	bufio_run_cleanup();
	ck_assert(WAIT_UNTIL(cached(c) < 64, 10));
	bufio_run_cleanup();
	ck_assert_msg(cached(c) >= 8, "only %llu buffers kept, minimum is 8",
	              (unsigned long long)cached(c));

	ck_assert_int_eq(bufio_set_max_cache_size(256 * MIB), 0);
	bufio_set_minimum_buffers(c, 20);
	read_range(c, 100, 64, 5);
	ck_assert_int_eq(bufio_set_max_cache_size(1), 0);
	bufio_run_cleanup();
	ck_assert(WAIT_UNTIL(cached(c) < 64, 10));
	bufio_run_cleanup();
	ck_assert_msg(cached(c) >= 20, "only %llu buffers kept, minimum is 20",
	              (unsigned long long)cached(c));
	/* they are usable: reading one of them needs no I/O... */
	struct be_counts k0, k1;
	be_memory_counts(m, &k0);
	uint64_t hits = 0;
	for (uint64_t i = 0; i < 256; i++)
		hits += is_cached(c, i);
	be_memory_counts(m, &k1);
	ck_assert_uint_ge(hits, 20);
	ck_assert_uint_eq(k1.ops[BUFIO_OP_READ], k0.ops[BUFIO_OP_READ]);
	/* ...and the budget still works through them */
	read_range(c, 0, 256, 5);
	bufio_run_cleanup();
	ck_assert_uint_lt(cached(c), 64);
	bufio_client_destroy(c);
	bufio_backend_close(m);
	reset_globals();
}
END_TEST

/*---------------------------------------------------------------- CLOCK */

START_TEST(test_clock_keeps_hot_blocks)
{
	/*
	 * 64 hot blocks re-read every round, 32 new cold blocks per round, a
	 * budget of 128 blocks. With second-chance replacement the hot set
	 * stays; with FIFO it would be flushed out after a few rounds.
	 */
	reset_globals();
	const uint64_t hot = 64, cold_per_round = 32, rounds = 16;
	struct bufio_backend *m = mem_with_pattern(hot + cold_per_round * rounds + 8, BS, 512, 6);
	struct bufio_client *c = lazy_client(m, BS);
	ck_assert_int_eq(bufio_set_max_cache_size((uint64_t)128 * BS), 0);
	uint64_t next_cold = hot;
	for (uint64_t r = 0; r < rounds; r++) {
		read_range(c, 0, hot, 6);
		read_range(c, 0, hot, 6);
		read_range(c, next_cold, cold_per_round, 6);
		next_cold += cold_per_round;
		bufio_run_cleanup();
	}
	ck_assert(WAIT_UNTIL(bufio_get_current_allocated() <= (uint64_t)128 * BS, 10));
	uint64_t hot_cached = 0, old_cold_cached = 0;
	for (uint64_t i = 0; i < hot; i++)
		hot_cached += is_cached(c, i);
	/* cold blocks of all but the last two rounds */
	for (uint64_t i = hot; i < next_cold - 2 * cold_per_round; i++)
		old_cold_cached += is_cached(c, i);
	ck_assert_msg(hot_cached >= hot * 3 / 4,
	              "only %llu of %llu hot blocks survived (old cold ones: %llu)",
	              (unsigned long long)hot_cached, (unsigned long long)hot,
	              (unsigned long long)old_cold_cached);
	ck_assert_uint_lt(old_cold_cached, 16);
	ck_assert_uint_gt(stats(c).evict_budget + stats(c).evict_reuse, 0);
	bufio_client_destroy(c);
	bufio_backend_close(m);
	reset_globals();
}
END_TEST

/*---------------------------------------------------------------- two clients */

START_TEST(test_budget_shared_by_clients)
{
	reset_globals();
	struct bufio_backend *m1 = mem_with_pattern(512, BS, 512, 7),
	                     *m2 = mem_with_pattern(512, BS, 512, 8);
	struct bufio_client *c1 = lazy_client(m1, BS), *c2 = lazy_client(m2, BS);
	const uint64_t budget = (uint64_t)128 * BS;
	ck_assert_int_eq(bufio_set_max_cache_size(budget), 0);
	bufio_run_cleanup();
	uint64_t base = bufio_get_current_allocated();
	read_range(c1, 0, 100, 7);
	bufio_run_cleanup();
	ck_assert_uint_eq(stats(c1).evict_budget, 0);
	/* c2 alone fits too, but not both together */
	read_range(c2, 0, 100, 8);
	bufio_run_cleanup();
	ck_assert_msg(WAIT_UNTIL(bufio_get_current_allocated() <= budget, 10),
	              "%llu allocated for two clients over a budget of %llu (base %llu)",
	              (unsigned long long)bufio_get_current_allocated(), (unsigned long long)budget,
	              (unsigned long long)base);
	struct bufio_stats s1 = stats(c1), s2 = stats(c2), g;
	ck_assert_uint_ge(s1.evict_budget + s2.evict_budget + s1.evict_reuse + s2.evict_reuse,
	                  200 - 128);
	ck_assert_uint_ge(s1.buffers_clean, 8);
	ck_assert_uint_ge(s2.buffers_clean, 8);
	bufio_get_global_stats(&g);
	ck_assert_uint_eq(g.buffers_clean, s1.buffers_clean + s2.buffers_clean);
	ck_assert_uint_eq(g.bytes_cached, s1.bytes_cached + s2.bytes_cached);
	ck_assert_uint_le(g.bytes_cached, budget);
	bufio_client_destroy(c2);
	bufio_client_destroy(c1);
	bufio_backend_close(m1);
	bufio_backend_close(m2);
	reset_globals();
}
END_TEST

/*---------------------------------------------------------------- age */

START_TEST(test_age_eviction)
{
	reset_globals();
	struct bufio_backend *m = mem_with_pattern(256, BS, 512, 9);
	struct bufio_client *c = lazy_client(m, BS);
	ck_assert_int_eq(bufio_set_retain_bytes((uint64_t)16 * BS), 0);
	/* 3 s, not 1: under TSan on a busy CI machine reading 64 blocks took
	 * over a second once, and the first ones had aged out (34 left). */
	ck_assert_int_eq(bufio_set_max_age(3), 0);
	read_range(c, 0, 64, 9);
	/* young buffers are not touched by the age pass */
	bufio_run_cleanup();
	ck_assert_uint_eq(cached(c), 64);
	ck_assert_uint_eq(stats(c).evict_age, 0);
	sleep(4);
	usleep(300 * 1000);
	read_range(c, 50, 4, 9); /* used again: young */
	bufio_run_cleanup();
	struct bufio_stats st = stats(c);
	ck_assert_msg(st.bytes_cached >= (uint64_t)16 * BS && st.bytes_cached <= (uint64_t)20 * BS,
	              "%llu bytes cached after the age pass, retain_bytes %u",
	              (unsigned long long)st.bytes_cached, 16 * BS);
	ck_assert_uint_ge(st.evict_age, 44);
	ck_assert_uint_eq(st.evict_budget, 0);
	for (uint64_t i = 50; i < 54; i++)
		ck_assert_msg(is_cached(c, i), "recently used block %llu aged out",
		              (unsigned long long)i);
	bufio_client_destroy(c);
	bufio_backend_close(m);
	reset_globals();
}
END_TEST

START_TEST(test_age_keeps_dirty)
{
	/* the age pass frees clean buffers; dirty data is never dropped */
	reset_globals();
	struct bufio_backend *m = be_memory_create((uint64_t)256 * BS, 512);
	struct bufio_client *c = lazy_client(m, BS);
	ck_assert_int_eq(bufio_set_retain_bytes(0), 0);
	ck_assert_int_eq(bufio_set_max_age(1), 0);
	for (uint64_t i = 0; i < 32; i++)
		dirty_block(c, i, 10);
	sleep(2);
	usleep(300 * 1000);
	bufio_run_cleanup();
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	unsigned char *d = be_memory_data(m);
	for (uint64_t i = 0; i < 32; i++)
		ck_assert(check_pattern(d + i * BS, BS, i, 10));
	bufio_client_destroy(c);
	bufio_backend_close(m);
	reset_globals();
}
END_TEST

/*---------------------------------------------------------------- pressure */

START_TEST(test_shrink)
{
	reset_globals();
	struct bufio_backend *m = mem_with_pattern(256, BS, 512, 11);
	struct bufio_client *c = lazy_client(m, BS);
	read_range(c, 0, 100, 11);
	struct bufio_buffer *held;
	ck_assert_ptr_nonnull(bufio_read(c, 200, &held));
	for (uint64_t i = 210; i < 218; i++)
		dirty_block(c, i, 12);
	/* up to the bytes asked */
	uint64_t freed1 = bufio_shrink((uint64_t)4 * BS);
	ck_assert_uint_gt(freed1, 0);
	ck_assert_uint_le(freed1, (uint64_t)4 * BS);
	ck_assert_uint_eq(freed1 % BS, 0);
	ck_assert_uint_eq(stats(c).evict_pressure, freed1 / BS);

	uint64_t freed2 = bufio_shrink(UINT64_MAX);
	ck_assert_uint_gt(freed2, 0);
	struct bufio_stats st = stats(c);
	ck_assert_uint_eq(st.evict_pressure * BS, freed1 + freed2);
	ck_assert_uint_le(st.evict_pressure, 100);
	ck_assert_uint_ge(st.evict_pressure, 100 - 8);
	/* dirty and held buffers stay */
	ck_assert_uint_eq(st.buffers_dirty, 8);
	ck_assert_uint_eq(st.buffers_held, 1);
	ck_assert(is_cached(c, 200));
	for (uint64_t i = 210; i < 218; i++)
		ck_assert(is_cached(c, i));
	ck_assert(check_pattern(bufio_get_block_data(held), BS, 200, 11));
	ck_assert_uint_eq(bufio_shrink(0), 0);
	bufio_release(held);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	unsigned char *d = be_memory_data(m);
	for (uint64_t i = 210; i < 218; i++)
		ck_assert(check_pattern(d + i * BS, BS, i, 12));
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_pressure_source)
{
	const char *src = bufio_pressure_source();
	ck_assert_ptr_nonnull(src);
	ck_assert_msg(!strcmp(src, "cgroup") || !strcmp(src, "system") || !strcmp(src, "none"),
	              "pressure source \"%s\"", src);
	/* a client exists now, so the watcher is set up: same answer kind */
	struct bufio_backend *m = be_memory_create((uint64_t)64 * BS, 512);
	struct bufio_client *c = lazy_client(m, BS);
	src = bufio_pressure_source();
	ck_assert_msg(!strcmp(src, "cgroup") || !strcmp(src, "system") || !strcmp(src, "none"),
	              "pressure source \"%s\"", src);
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("core_budget");
	TCase *t = tcase_create("budget");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, test_default_budget);
	tcase_add_test(t, test_lowering_budget_evicts);
	tcase_add_test(t, test_budget_writes_back_dirty);
	tcase_add_test(t, test_budget_while_reading);
	tcase_add_test(t, test_peak);
	tcase_add_test(t, test_minimum_buffers);
	tcase_add_test(t, test_clock_keeps_hot_blocks);
	tcase_add_test(t, test_budget_shared_by_clients);
	tcase_add_test(t, test_age_eviction);
	tcase_add_test(t, test_age_keeps_dirty);
	tcase_add_test(t, test_shrink);
	tcase_add_test(t, test_pressure_source);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
