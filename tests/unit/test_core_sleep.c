/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Unit tests of the sleep hooks (bufio_set_sleep_hooks): which waits a
 * thread reports to its pool, that each report is paired, and that hits,
 * buffered synchronous I/O and threads without hooks report nothing.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include <bufio/bufio.h>
#include "backend/be_fault.h"
#include "backend/be_memory.h"
#include "helpers.h"

#define BS     4096u
#define OPB(o) (1u << (o))

/* What one thread's hooks saw. */
struct seen {
	atomic_uint sleeping, woken;
	atomic_int asleep; /* sleeping minus woken */
	pthread_t owner;
	atomic_bool foreign;  /* a hook ran in another thread */
	atomic_bool unpaired; /* asleep left [0, 1]: a report twice, or woken first */
};

/* Count one report in @n; @delta: +1 falling asleep, -1 waking. */
static void note(struct seen *s, atomic_uint *n, int delta)
{
	if (!pthread_equal(pthread_self(), s->owner))
		atomic_store(&s->foreign, true);
	int now = atomic_fetch_add(&s->asleep, delta) + delta;

	if (now < 0 || now > 1)
		atomic_store(&s->unpaired, true);
	atomic_fetch_add(n, 1);
}

static void on_sleeping(void *arg)
{
	struct seen *s = arg;

	note(s, &s->sleeping, 1);
}

static void on_woken(void *arg)
{
	struct seen *s = arg;

	note(s, &s->woken, -1);
}

/* A reader thread: sets hooks, reads @block through @c, checks its pattern. */
struct reader {
	struct bufio_client *c;
	uint64_t block;
	struct seen seen;
	struct bufio_sleep_hooks hooks;
};

static void *read_one(void *arg)
{
	struct reader *r = arg;
	struct bufio_buffer *b;
	void *data;

	r->seen.owner = pthread_self();
	r->hooks =
	    (struct bufio_sleep_hooks){.sleeping = on_sleeping, .woken = on_woken, .arg = &r->seen};
	bufio_set_sleep_hooks(&r->hooks);
	data = bufio_read(r->c, r->block, &b);
	ck_assert_ptr_nonnull(data);
	ck_assert(check_pattern(data, BS, r->block, 7));
	bufio_release(b);
	bufio_set_sleep_hooks(NULL);
	return NULL;
}

static void start_reader(pthread_t *t, struct reader *r, struct bufio_client *c, uint64_t block)
{
	memset(r, 0, sizeof(*r));
	r->c = c;
	r->block = block;
	ck_assert_int_eq(pthread_create(t, NULL, read_one, r), 0);
}

/* A miss waits for its read: reported once, and woken only after the read. */
START_TEST(test_miss_reports_hit_does_not)
{
	reset_globals();
	struct bufio_backend *f = be_fault_create(mem_with_pattern(64, BS, 512, 7), true);
	struct bufio_client *c = lazy_client(f, BS);
	struct reader r;
	pthread_t t;

	be_fault_hold(f, OPB(BUFIO_OP_READ));
	start_reader(&t, &r, c, 5);
	ck_assert(WAIT_UNTIL(atomic_load(&r.seen.sleeping) == 1, 10));
	usleep(20000);
	ck_assert_uint_eq(atomic_load(&r.seen.woken), 0); /* still held back */
	ck_assert_uint_eq(be_fault_held(f), 1);
	be_fault_release(f);
	pthread_join(t, NULL);
	ck_assert_uint_eq(atomic_load(&r.seen.sleeping), 1);
	ck_assert_uint_eq(atomic_load(&r.seen.woken), 1);
	ck_assert(!atomic_load(&r.seen.foreign));
	ck_assert(!atomic_load(&r.seen.unpaired));

	/* the same block again is a hit: no wait, nothing reported */
	start_reader(&t, &r, c, 5);
	pthread_join(t, NULL);
	ck_assert_uint_eq(atomic_load(&r.seen.sleeping), 0);
	ck_assert_uint_eq(atomic_load(&r.seen.woken), 0);
	bufio_client_destroy(c);
	bufio_backend_close(f);
}
END_TEST

/* A second reader of a block in flight waits for the first one's read. */
START_TEST(test_waiting_for_anothers_read)
{
	reset_globals();
	struct bufio_backend *f = be_fault_create(mem_with_pattern(64, BS, 512, 7), true);
	struct bufio_client *c = lazy_client(f, BS);
	struct reader r1, r2;
	pthread_t t1, t2;

	be_fault_hold(f, OPB(BUFIO_OP_READ));
	start_reader(&t1, &r1, c, 9);
	ck_assert(WAIT_UNTIL(atomic_load(&r1.seen.sleeping) == 1, 10));
	start_reader(&t2, &r2, c, 9);
	ck_assert(WAIT_UNTIL(atomic_load(&r2.seen.sleeping) == 1, 10));
	ck_assert_uint_eq(be_fault_held(f), 1); /* one read for both */
	be_fault_release(f);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	ck_assert_uint_eq(atomic_load(&r2.seen.woken), 1);
	ck_assert_int_eq(atomic_load(&r2.seen.asleep), 0);
	ck_assert(!atomic_load(&r1.seen.unpaired) && !atomic_load(&r2.seen.unpaired));
	bufio_client_destroy(c);
	bufio_backend_close(f);
}
END_TEST

/* Hooks of the calling thread only; a flush waits and reports. */
struct flusher {
	struct bufio_client *c;
	struct seen seen;
	int res;
};

static void *flush_one(void *arg)
{
	struct flusher *fl = arg;
	struct bufio_sleep_hooks h = {.sleeping = on_sleeping, .woken = on_woken, .arg = &fl->seen};

	fl->seen.owner = pthread_self();
	bufio_set_sleep_hooks(&h);
	fl->res = bufio_issue_flush(fl->c);
	bufio_set_sleep_hooks(NULL);
	return NULL;
}

START_TEST(test_flush_reports)
{
	reset_globals();
	struct bufio_backend *f = be_fault_create(mem_with_pattern(64, BS, 512, 7), true);
	struct bufio_client *c = lazy_client(f, BS);
	struct flusher fl;
	pthread_t t;

	memset(&fl, 0, sizeof(fl));
	fl.c = c;
	be_fault_hold(f, OPB(BUFIO_OP_FLUSH));
	ck_assert_int_eq(pthread_create(&t, NULL, flush_one, &fl), 0);
	ck_assert(WAIT_UNTIL(atomic_load(&fl.seen.sleeping) == 1, 10));
	ck_assert_uint_eq(atomic_load(&fl.seen.woken), 0);
	be_fault_release(f);
	pthread_join(t, NULL);
	ck_assert_int_eq(fl.res, 0);
	ck_assert_uint_eq(atomic_load(&fl.seen.woken), 1);
	ck_assert(!atomic_load(&fl.seen.foreign) && !atomic_load(&fl.seen.unpaired));
	bufio_client_destroy(c);
	bufio_backend_close(f);
}
END_TEST

/*
 * Through a file opened without O_DIRECT, a synchronous read or write is
 * served by the page cache and not reported; a flush is. After
 * bufio_set_sleep_hooks(NULL), nothing is.
 */
START_TEST(test_sync_file_io)
{
	char path[256], block[BS];
	struct bufio_backend_options o = {.engine = BUFIO_ENGINE_AUTO, .direct = 0};
	struct bufio_backend *be;
	struct seen s;
	struct bufio_sleep_hooks h = {.sleeping = on_sleeping, .woken = on_woken, .arg = &s};

	memset(&s, 0, sizeof(s));
	s.owner = pthread_self();
	ck_assert_int_eq(make_temp_file(path, sizeof(path), 1 * MIB), 0);
	be = bufio_backend_open(path, &o);
	ck_assert_ptr_nonnull(be);
	ck_assert(!(be->flags & BUFIO_BE_DIRECT));
	memset(block, 0x5a, sizeof(block));
	bufio_set_sleep_hooks(&h);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_WRITE, block, 8192, BS), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_READ, block, 8192, BS), 0);
	ck_assert_uint_eq(atomic_load(&s.sleeping), 0);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_FLUSH, NULL, 0, 0), 0);
	ck_assert_uint_eq(atomic_load(&s.sleeping), 1);
	ck_assert_uint_eq(atomic_load(&s.woken), 1);
	bufio_set_sleep_hooks(NULL);
	ck_assert_int_eq(bufio_backend_rw_sync(be, BUFIO_OP_FLUSH, NULL, 0, 0), 0);
	ck_assert_uint_eq(atomic_load(&s.sleeping), 1);
	bufio_backend_close(be);
	unlink(path);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("core_sleep");
	TCase *t = tcase_create("sleep");

	tcase_add_test(t, test_miss_reports_hit_does_not);
	tcase_add_test(t, test_waiting_for_anothers_read);
	tcase_add_test(t, test_flush_reports);
	tcase_add_test(t, test_sync_file_io);
	suite_add_tcase(s, t);
	return run_suite(s);
}
