/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Unit tests of bufio_expect_new: a thread that says it is about to create
 * a run of buffers gets neighbouring memory for neighbouring blocks, fresh
 * (under the budget, even with another thread allocating at the same time)
 * and reused (over it, from the clean buffers the CLOCK hand gives up); a
 * small budget caps the batch, what a run leaves unused goes back when it
 * ends, and the data stays right.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <check.h>

#include <bufio/bufio.h>
#include "helpers.h"

#define BS  4096u
#define RUN 64u

/* Places in @p[0..n) where the next block's memory does not follow on. */
static unsigned breaks(char *const *p, unsigned n)
{
	unsigned k = 0;
	for (unsigned i = 1; i < n; i++)
		k += p[i] != p[i - 1] + BS;
	return k;
}

/* bufio_new block @blk, fill it with its pattern, mark it dirty, release it;
 * returns where its data is. */
static char *new_block(struct bufio_client *c, uint64_t blk)
{
	struct bufio_buffer *b;
	char *p = bufio_new(c, blk, &b);
	ck_assert_ptr_nonnull(p);
	fill_pattern(p, BS, blk, 9);
	bufio_mark_buffer_dirty(b);
	bufio_release(b);
	return p;
}

/* new_block @n blocks from @first, their data addresses into @p. */
static void new_run(struct bufio_client *c, uint64_t first, unsigned n, char **p)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = new_block(c, first + i);
}

/*
 * A client of @m whose cache holds blocks [0, @n), clean, read by one
 * thread (neighbours in memory and on the CLOCK ring alike), with the
 * budget set to exactly what they take.
 */
static struct bufio_client *full_client(struct bufio_backend *m, uint64_t n)
{
	struct bufio_client *c = lazy_client(m, BS);
	read_range(c, 0, n, 1);
	ck_assert_int_eq(bufio_set_max_cache_size(bufio_get_current_allocated()), 0);
	return c;
}

struct lockstep {
	struct bufio_client *c;
	uint64_t first;
	pthread_barrier_t bar;
	char *p[2][RUN];
};

/* Two threads create a buffer each per step, so their allocations interleave. */
static void step_writer(void *arg, unsigned idx)
{
	struct lockstep *ls = arg;
	uint64_t first = ls->first + (uint64_t)idx * RUN;
	bufio_expect_new(ls->c, RUN);
	for (unsigned i = 0; i < RUN; i++) {
		pthread_barrier_wait(&ls->bar);
		ls->p[idx][i] = new_block(ls->c, first + i);
	}
}

/* Two threads each create RUN blocks from @first, in lockstep; each run may
 * have @max_breaks places where memory does not follow on. */
static void two_runs(struct bufio_client *c, uint64_t first, unsigned max_breaks)
{
	struct lockstep ls = {.c = c, .first = first};
	pthread_barrier_init(&ls.bar, NULL, 2);
	run_threads(2, step_writer, &ls);
	pthread_barrier_destroy(&ls.bar);
	for (unsigned t = 0; t < 2; t++)
		ck_assert_msg(breaks(ls.p[t], RUN) <= max_breaks,
		              "thread %u: %u breaks in %u blocks", t, breaks(ls.p[t], RUN), RUN);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	read_range(c, first, 2ull * RUN, 9);
}

START_TEST(test_fresh_run)
{
	/* Without the hint the two threads' blocks alternate in memory. */
	reset_globals();
	struct bufio_backend *m = mem_with_pattern(4096, BS, 512, 1);
	struct bufio_client *c = lazy_client(m, BS);
	two_runs(c, 1000, 0);
	bufio_client_destroy(c);
	bufio_backend_close(m);
	reset_globals();
}
END_TEST

START_TEST(test_reused_run)
{
	reset_globals();
	const uint64_t fill = 4096; /* a 16 MiB budget: batches of up to 64 */
	struct bufio_backend *m = mem_with_pattern(2 * fill, BS, 512, 1);
	struct bufio_client *c = full_client(m, fill);
	uint64_t reused = stats(c).evict_reuse;
	/* Each thread's run is the memory of the oldest blocks, handed out in
	 * address order: at most one fresh block (the first allocation is at
	 * the budget, not over it) and one chunk boundary break it. Without
	 * the hint the threads took batches of 8 in turn. */
	two_runs(c, fill, 2);
	ck_assert_uint_ge(stats(c).evict_reuse - reused, 2 * RUN - 2);
	read_range(c, 2ull * RUN, fill - 2ull * RUN, 1);
	bufio_client_destroy(c);
	bufio_backend_close(m);
	reset_globals();
}
END_TEST

START_TEST(test_small_budget_caps_run)
{
	/* 64 blocks of budget: a thread may not detach them all at once. */
	reset_globals();
	struct bufio_backend *m = mem_with_pattern(1024, BS, 512, 1);
	struct bufio_client *c = full_client(m, RUN);
	char *p[RUN];
	ck_assert_uint_eq(stats(c).bytes_cached / BS, RUN);
	/* The thread says 256 and creates 16: what it detached and did not
	 * use is neither clean nor dirty. At most a default batch of 8 is
	 * held aside; uncapped, the whole cache would have been. */
	bufio_expect_new(c, 4 * RUN);
	new_run(c, 512, 16, p);
	ck_assert_uint_ge(stats(c).bytes_cached / BS, RUN - 8);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	read_range(c, 512, 16, 9);
	bufio_client_destroy(c);
	bufio_backend_close(m);
	reset_globals();
}
END_TEST

START_TEST(test_unused_batch_given_back)
{
	/* A run of 64 over a full cache that needed only 16: the 48 left
	 * detached go back when the thread says the run is over. */
	reset_globals();
	const uint64_t fill = 4096;
	struct bufio_backend *m = mem_with_pattern(2 * fill, BS, 512, 1);
	struct bufio_client *c = full_client(m, fill);
	char *p[RUN];
	bufio_expect_new(c, RUN);
	new_run(c, fill, 16, p);
	uint64_t before = bufio_get_current_allocated();
	bufio_expect_new(c, 0);
	uint64_t after = bufio_get_current_allocated();
	/* At most a default batch of 8 stays with the thread. */
	ck_assert_msg(before - after >= (uint64_t)(RUN - 16 - 8) * BS,
	              "%llu bytes given back, want at least %u blocks",
	              (unsigned long long)(before - after), RUN - 16 - 8);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	read_range(c, fill, 16, 9);
	read_range(c, 64, fill - 64, 1);
	bufio_client_destroy(c);
	bufio_backend_close(m);
	reset_globals();
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("core_batch");
	TCase *t = tcase_create("batch");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, test_fresh_run);
	tcase_add_test(t, test_reused_run);
	tcase_add_test(t, test_small_budget_caps_run);
	tcase_add_test(t, test_unused_batch_given_back);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
