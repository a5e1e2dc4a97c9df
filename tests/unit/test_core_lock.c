/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Unit tests of the core's slock, the lock word behind the block index's
 * reader stripes: it excludes, and a thread that waits for a holder that is
 * not running sleeps instead of burning its CPU.
 */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "core/internal.h"
#include "helpers.h"

#define NTHREADS 6
#define ROUNDS   20000

struct counted {
	slock_t lock;
	unsigned long count; /* only under lock, deliberately not atomic */
	unsigned long inside;
	unsigned long overlaps;
};

static void count_thread(void *arg, unsigned idx)
{
	struct counted *c = arg;

	for (unsigned i = 0; i < ROUNDS; i++) {
		slock_lock(&c->lock);
		if (c->inside++)
			c->overlaps++;
		c->count++;
		/* Some holders get descheduled inside, as on a busy machine:
		 * the waiters must then take the sleeping path and be woken. */
		if ((i + idx) % 997 == 0)
			usleep(200);
		c->inside--;
		slock_unlock(&c->lock);
	}
}

START_TEST(test_excludes)
{
	struct counted c = {0};

	atomic_init(&c.lock, 0);
	run_threads(NTHREADS, count_thread, &c);
	ck_assert_uint_eq(c.count, (unsigned long)NTHREADS * ROUNDS);
	ck_assert_uint_eq(c.overlaps, 0);
	ck_assert_uint_eq(atomic_load(&c.lock), 0);
}
END_TEST

static double thread_cpu_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct waiter {
	slock_t lock;
	int waiting;
	double cpu; /* seconds the waiter's thread used to get the lock */
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;
	double t0 = thread_cpu_seconds();

	__atomic_store_n(&w->waiting, 1, __ATOMIC_SEQ_CST);
	slock_lock(&w->lock);
	w->cpu = thread_cpu_seconds() - t0;
	slock_unlock(&w->lock);
	return NULL;
}

START_TEST(test_waiter_sleeps)
{
	struct waiter w = {0};
	pthread_t t;

	atomic_init(&w.lock, 0);
	slock_lock(&w.lock);
	ck_assert_int_eq(pthread_create(&t, NULL, waiter_main, &w), 0);
	while (!__atomic_load_n(&w.waiting, __ATOMIC_SEQ_CST))
		usleep(1000);
	/* Hold for half a second: a spinning waiter would use about that
	 * much CPU, a sleeping one a few microseconds. */
	usleep(500000);
	unsigned word = atomic_load(&w.lock); /* 2: the waiter said it sleeps */
	slock_unlock(&w.lock);
	pthread_join(t, NULL);
	ck_assert_uint_eq(word, 2);
	ck_assert_msg(w.cpu < 0.1, "waiter used %.3f s of CPU while the lock was held", w.cpu);
	ck_assert_uint_eq(atomic_load(&w.lock), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("core_lock");
	TCase *t = tcase_create("slock");
	tcase_set_timeout(t, 200);
	tcase_add_test(t, test_excludes);
	tcase_add_test(t, test_waiter_sleeps);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
