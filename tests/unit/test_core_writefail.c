/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Unit tests of a persistently failing backing under libbufio: background
 * write-back backs off instead of retrying in a loop, failed attempts are
 * counted per batch, the client goes read-only after the limit and returns
 * to write mode only once everything is written back.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include <bufio/bufio.h>
#include "backend/be_fault.h"
#include "backend/be_memory.h"
#include "helpers.h"

#define BS 4096u

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
#define BLOCKS 1024u

static struct bufio_backend *mem, *flt;
static struct bufio_client *cl;

/* Events seen by the callback, in order. */
#define MAXEV 64
static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static struct bufio_event evs[MAXEV];
static unsigned nev;

static void on_event(struct bufio_client *c, const struct bufio_event *ev, void *arg)
{
	ck_assert_ptr_eq(c, cl);
	ck_assert_ptr_eq(arg, &nev);
	pthread_mutex_lock(&ev_lock);
	if (nev < MAXEV)
		evs[nev++] = *ev;
	pthread_mutex_unlock(&ev_lock);
}

/* How many events of @type so far. */
static unsigned events(enum bufio_event_type type)
{
	unsigned n = 0;
	pthread_mutex_lock(&ev_lock);
	for (unsigned i = 0; i < nev; i++)
		n += evs[i].type == type;
	pthread_mutex_unlock(&ev_lock);
	return n;
}

/* The last event of @type (which must exist). */
static struct bufio_event last_event(enum bufio_event_type type)
{
	struct bufio_event e = {0};
	bool found = false;
	pthread_mutex_lock(&ev_lock);
	for (unsigned i = 0; i < nev; i++)
		if (evs[i].type == type) {
			e = evs[i];
			found = true;
		}
	pthread_mutex_unlock(&ev_lock);
	ck_assert_msg(found, "no event of type %d", type);
	return e;
}

static void setup(void)
{
	reset_globals();
	mem = mem_with_pattern(BLOCKS, BS, 512, 1);
	flt = be_fault_create(mem, false);
	ck_assert_ptr_nonnull(flt);
	cl = quiet_client(flt, BS);
	nev = 0;
	bufio_set_event_callback(cl, on_event, &nev);
}

static void teardown(void)
{
	be_fault_clear_rules(flt);
	bufio_client_destroy(cl);
	bufio_backend_close(flt);
	bufio_backend_close(mem);
	reset_globals();
}

static void fail_writes(int error)
{
	struct be_fault_rule r = {.ops = 1u << BUFIO_OP_WRITE, .error = error};
	ck_assert_int_ge(be_fault_add_rule(flt, &r), 0);
}

static uint64_t backend_writes(void)
{
	struct be_counts k;
	be_fault_counts(flt, &k);
	return k.ops[BUFIO_OP_WRITE];
}

static int on_disk(uint64_t blk, uint32_t seed)
{
	return check_pattern((unsigned char *)be_memory_data(mem) + blk * BS, BS, blk, seed);
}

static unsigned failures(void)
{
	return (unsigned)stats(cl).write_failures;
}

/* Every write fails, write-back starts at once, read-only after @limit failed attempts. */
static void failing_background(unsigned limit)
{
	ck_assert_int_eq(bufio_set_max_write_failures(cl, limit), 0);
	ck_assert_int_eq(bufio_set_writeback_ratio(cl, 0), 0);
	fail_writes(-EIO);
}

/* bufio_write_dirty_buffers until it succeeds: an earlier error may be reported first. */
static void write_all_ok(void)
{
	if (bufio_write_dirty_buffers(cl) != 0)
		ck_assert_int_eq(bufio_write_dirty_buffers(cl), 0);
}

START_TEST(test_defaults_and_limits)
{
	ck_assert_uint_eq(bufio_get_max_write_failures(cl), 5);
	ck_assert_int_eq(bufio_get_mode(cl), BUFIO_MODE_WRITE);
	ck_assert_uint_eq(failures(), 0);
	ck_assert_int_eq(bufio_set_max_write_failures(cl, 1001), -EINVAL);
	ck_assert_uint_eq(bufio_get_max_write_failures(cl), 5);
	ck_assert_int_eq(bufio_set_max_write_failures(cl, 0), 0);
	ck_assert_uint_eq(bufio_get_max_write_failures(cl), 0);
	ck_assert_int_eq(bufio_set_max_write_failures(cl, 1000), 0);
	ck_assert_int_eq(bufio_set_mode(cl, (enum bufio_mode)7), -EINVAL);
	ck_assert_int_eq(bufio_get_mode(cl), BUFIO_MODE_WRITE);
	/* setting the current mode is no transition */
	ck_assert_int_eq(bufio_set_mode(cl, BUFIO_MODE_WRITE), 0);
	ck_assert_uint_eq(events(BUFIO_EV_MODE), 0);
}
END_TEST

START_TEST(test_attempt_is_a_batch)
{
	/* 16 failing buffers written together are one failed attempt */
	fail_writes(-EIO);
	for (uint64_t i = 0; i < 16; i++)
		dirty_block(cl, i, 2);
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), -EIO);
	ck_assert_uint_eq(failures(), 1);
	ck_assert_uint_eq(stats(cl).write_errors, 16);
	ck_assert_uint_eq(events(BUFIO_EV_WRITE_FAILED), 1);
	struct bufio_event e = last_event(BUFIO_EV_WRITE_FAILED);
	ck_assert_int_eq(e.error, -EIO);
	ck_assert_uint_lt(e.offset, (uint64_t)16 * BS);
	ck_assert_uint_eq(e.failures, 1);
	ck_assert_uint_eq(e.retry_seconds, 1);
	/* the next one doubles the backoff */
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), -EIO);
	ck_assert_uint_eq(failures(), 2);
	ck_assert_uint_eq(last_event(BUFIO_EV_WRITE_FAILED).retry_seconds, 2);
	ck_assert_uint_eq(stats(cl).buffers_dirty, 16);

	/* a batch with one failing write among good ones still failed */
	be_fault_clear_rules(flt);
	struct be_fault_rule r = {.ops = 1u << BUFIO_OP_WRITE,
	                          .start = (uint64_t)5 * BS,
	                          .end = (uint64_t)6 * BS,
	                          .error = -ENOSPC};
	ck_assert_int_ge(be_fault_add_rule(flt, &r), 0);
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), -ENOSPC);
	ck_assert_uint_eq(failures(), 3);
	e = last_event(BUFIO_EV_WRITE_FAILED);
	ck_assert_int_eq(e.error, -ENOSPC);
	ck_assert_uint_eq(e.offset, (uint64_t)5 * BS);
	ck_assert_uint_eq(stats(cl).buffers_dirty, 1);
	ck_assert(on_disk(4, 2));
	ck_assert(on_disk(5, 1));

	/* a successful attempt resets the count and says so */
	be_fault_clear_rules(flt);
	ck_assert_uint_eq(events(BUFIO_EV_WRITE_RECOVERED), 0);
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), 0);
	ck_assert_uint_eq(failures(), 0);
	ck_assert_uint_eq(events(BUFIO_EV_WRITE_RECOVERED), 1);
	ck_assert_uint_eq(last_event(BUFIO_EV_WRITE_RECOVERED).failures, 3);
	ck_assert(on_disk(5, 2));
	ck_assert_int_eq(bufio_get_mode(cl), BUFIO_MODE_WRITE);
	/* and the backoff starts over */
	fail_writes(-EIO);
	dirty_block(cl, 20, 3);
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), -EIO);
	ck_assert_uint_eq(last_event(BUFIO_EV_WRITE_FAILED).retry_seconds, 1);
}
END_TEST

START_TEST(test_write_buffers_attempts)
{
	/* write-through style writes count too, each call one attempt */
	ck_assert_int_eq(bufio_set_max_write_failures(cl, 2), 0);
	fail_writes(-EIO);
	struct bufio_buffer *b[2];
	for (unsigned i = 0; i < 2; i++) {
		void *p = bufio_new(cl, 30 + i, &b[i]);
		ck_assert_ptr_nonnull(p);
		fill_pattern(p, BS, 30 + i, 4);
		bufio_mark_buffer_dirty(b[i]);
	}
	ck_assert_int_eq(bufio_write_buffers(b, 2), -EIO);
	ck_assert_uint_eq(failures(), 1);
	ck_assert_int_eq(bufio_get_mode(cl), BUFIO_MODE_WRITE);
	ck_assert_int_eq(bufio_write_buffer(b[0]), -EIO);
	ck_assert_uint_eq(failures(), 2);
	ck_assert_int_eq(bufio_get_mode(cl), BUFIO_MODE_READ_ONLY);
	be_fault_clear_rules(flt);
	ck_assert_int_eq(bufio_write_buffers(b, 2), 0);
	ck_assert_uint_eq(failures(), 0);
	/* success alone does not leave read-only mode */
	ck_assert_int_eq(bufio_get_mode(cl), BUFIO_MODE_READ_ONLY);
	bufio_release(b[0]);
	bufio_release(b[1]);
	ck_assert(on_disk(30, 4));
	ck_assert(on_disk(31, 4));
}
END_TEST

START_TEST(test_read_only_after_limit)
{
	/* background write-back alone: attempts 1 s and 2 s apart, then read-only */
	failing_background(3);
	dirty_block(cl, 40, 5);
	dirty_block(cl, 41, 5);
	ck_assert(WAIT_UNTIL(failures() >= 1, 20));
	ck_assert_int_eq(bufio_get_mode(cl), BUFIO_MODE_WRITE);
	ck_assert(WAIT_UNTIL(events(BUFIO_EV_MODE) == 1, 60));
	ck_assert_int_eq(bufio_get_mode(cl), BUFIO_MODE_READ_ONLY);
	ck_assert_uint_eq(failures(), 3);
	struct bufio_event e = last_event(BUFIO_EV_MODE);
	ck_assert_int_eq(e.old_mode, BUFIO_MODE_WRITE);
	ck_assert_int_eq(e.new_mode, BUFIO_MODE_READ_ONLY);
	ck_assert_uint_eq(e.failures, 3);
	ck_assert_uint_eq(events(BUFIO_EV_WRITE_FAILED), 3);
	ck_assert_uint_eq(stats(cl).buffers_dirty, 2);

	/* the data stays readable from the cache */
	read_range(cl, 40, 2, 5);
	read_range(cl, 42, 2, 1);

	/* back to write mode needs a write-back that works */
	ck_assert_int_eq(bufio_set_mode(cl, BUFIO_MODE_WRITE), -EIO);
	ck_assert_int_eq(bufio_get_mode(cl), BUFIO_MODE_READ_ONLY);
	ck_assert_uint_eq(events(BUFIO_EV_MODE), 1);
	be_fault_clear_rules(flt);
	ck_assert_int_eq(bufio_set_mode(cl, BUFIO_MODE_WRITE), 0);
	ck_assert_int_eq(bufio_get_mode(cl), BUFIO_MODE_WRITE);
	ck_assert_uint_eq(failures(), 0);
	ck_assert_uint_eq(stats(cl).buffers_dirty, 0);
	ck_assert(on_disk(40, 5));
	ck_assert(on_disk(41, 5));
	e = last_event(BUFIO_EV_MODE);
	ck_assert_int_eq(e.old_mode, BUFIO_MODE_READ_ONLY);
	ck_assert_int_eq(e.new_mode, BUFIO_MODE_WRITE);
}
END_TEST

START_TEST(test_background_retry_after_fault)
{
	/* read-only with the fault gone: the backoff retry writes the data */
	ck_assert_int_eq(bufio_set_max_write_failures(cl, 1), 0);
	fail_writes(-EIO);
	dirty_block(cl, 50, 6);
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), -EIO);
	ck_assert_int_eq(bufio_get_mode(cl), BUFIO_MODE_READ_ONLY);
	uint64_t w = backend_writes();
	be_fault_clear_rules(flt);
	/* no ratio, no expiry: only the retry can write it, after about 1 s */
	ck_assert(WAIT_UNTIL(stats(cl).buffers_dirty == 0, 30));
	ck_assert(on_disk(50, 6));
	ck_assert_uint_eq(backend_writes() - w, 1);
	ck_assert_uint_eq(failures(), 0);
	/* delivered once the lock is dropped, so a moment after the count */
	ck_assert(WAIT_UNTIL(events(BUFIO_EV_WRITE_RECOVERED) == 1, 10));
	ck_assert_int_eq(bufio_get_mode(cl), BUFIO_MODE_READ_ONLY);
	/* the failure was reported by the call that met it: nothing is left */
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), 0);
	ck_assert_int_eq(bufio_set_mode(cl, BUFIO_MODE_WRITE), 0);
}
END_TEST

START_TEST(test_backoff_spacing)
{
	/* retries of a failing background write-back come at 1, 2, 4 s */
	failing_background(0);
	dirty_block(cl, 60, 7);
	ck_assert(WAIT_UNTIL(failures() >= 1, 20));
	uint64_t t1 = now_ms();
	ck_assert(WAIT_UNTIL(failures() >= 2, 20));
	uint64_t t2 = now_ms();
	ck_assert(WAIT_UNTIL(failures() >= 3, 20));
	uint64_t t3 = now_ms();
	/* not timed assertions of speed: lower bounds, halved for late wakeups */
	ck_assert_uint_ge(t2 - t1, 500);
	ck_assert_uint_ge(t3 - t2, 1000);
	ck_assert(WAIT_UNTIL(events(BUFIO_EV_WRITE_FAILED) == 3, 10));
	ck_assert_int_eq(bufio_get_mode(cl), BUFIO_MODE_WRITE); /* limit 0: never */
	be_fault_clear_rules(flt);
	write_all_ok();
	ck_assert(on_disk(60, 7));
}
END_TEST

START_TEST(test_manual_read_only)
{
	ck_assert_int_eq(bufio_set_mode(cl, BUFIO_MODE_READ_ONLY), 0);
	ck_assert_int_eq(bufio_get_mode(cl), BUFIO_MODE_READ_ONLY);
	ck_assert_uint_eq(events(BUFIO_EV_MODE), 1);
	ck_assert_int_eq(bufio_set_mode(cl, BUFIO_MODE_READ_ONLY), 0);
	ck_assert_uint_eq(events(BUFIO_EV_MODE), 1);
	/* nothing dirty, backing fine: back at once */
	ck_assert_int_eq(bufio_set_mode(cl, BUFIO_MODE_WRITE), 0);
	ck_assert_int_eq(bufio_get_mode(cl), BUFIO_MODE_WRITE);
	ck_assert_uint_eq(events(BUFIO_EV_MODE), 2);
}
END_TEST

START_TEST(test_set_write_ignores_old_latched_error)
{
	/* a background failure latched before the fault cleared does not make
	 * the switch back fail: the switch writes everything itself */
	ck_assert_int_eq(bufio_set_max_write_failures(cl, 1), 0);
	fail_writes(-EIO);
	dirty_block(cl, 70, 8);
	bufio_write_dirty_buffers_async(cl);
	ck_assert(WAIT_UNTIL(bufio_get_mode(cl) == BUFIO_MODE_READ_ONLY, 20));
	be_fault_clear_rules(flt);
	ck_assert_int_eq(bufio_set_mode(cl, BUFIO_MODE_WRITE), 0);
	ck_assert(on_disk(70, 8));
	ck_assert_int_eq(bufio_write_dirty_buffers(cl), 0);
}
END_TEST

/*
 * Over the memory budget with nothing clean, every failed write used to kick
 * the budget pass, which wrote the same buffers again at once: a hot loop of
 * failing writes for as long as the backing failed.
 */
START_TEST(test_no_hot_loop_over_budget)
{
	fail_writes(-EIO);
	ck_assert_int_eq(bufio_set_max_cache_size((uint64_t)256 * 1024), 0);
	for (uint64_t i = 0; i < 128; i++)
		dirty_block(cl, i, 2);
	bufio_run_cleanup();
	sleep(1); /* let whatever the failures started settle */
	uint64_t before = backend_writes();
	sleep(2);
	uint64_t during = backend_writes() - before;
	/* A backoff allows a pass or two here (128 writes each), never thousands. */
	ck_assert_msg(during <= (uint64_t)2 * 128,
	              "%llu failing writes in 2 s: write-back retries in a loop",
	              (unsigned long long)during);
	ck_assert_uint_eq(stats(cl).buffers_dirty, 128);
	be_fault_clear_rules(flt);
	ck_assert_int_eq(bufio_set_max_cache_size(256 * MIB), 0);
	/* a latched error may be reported once; then everything is written */
	if (bufio_write_dirty_buffers(cl) != 0)
		ck_assert_int_eq(bufio_write_dirty_buffers(cl), 0);
	for (uint64_t i = 0; i < 128; i++)
		ck_assert(on_disk(i, 2));
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("core_writefail");
	TCase *t = tcase_create("writefail");
	tcase_set_timeout(t, 200);
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, test_defaults_and_limits);
	tcase_add_test(t, test_attempt_is_a_batch);
	tcase_add_test(t, test_write_buffers_attempts);
	tcase_add_test(t, test_read_only_after_limit);
	tcase_add_test(t, test_background_retry_after_fault);
	tcase_add_test(t, test_backoff_spacing);
	tcase_add_test(t, test_manual_read_only);
	tcase_add_test(t, test_set_write_ignores_old_latched_error);
	tcase_add_test(t, test_no_hot_loop_over_budget);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
