/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Unit tests of the fault backend: each rule field, probability, delays and
 * their ordering, the gate, counters, ownership of the lower backend, and
 * stacking over the asynchronous file backend.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include <bufio/backend.h>
#include "backend/be_fault.h"
#include "backend/be_memory.h"
#include "helpers.h"

#define OPB(op) (1u << (op))

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Records every completion: order, result, thread, time. */
struct log {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned n;
	int order[64];
	int res[64];
	pthread_t thread[64];
	uint64_t at[64];
};

struct tio {
	struct bufio_io io;
	struct log *log;
	int id;
};

static void log_init(struct log *l)
{
	memset(l, 0, sizeof(*l));
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
}

static void tio_done(struct bufio_io *io, int res)
{
	struct tio *t = io->private;
	struct log *l = t->log;

	pthread_mutex_lock(&l->lock);
	if (l->n < 64) {
		l->order[l->n] = t->id;
		l->res[l->n] = res;
		l->thread[l->n] = pthread_self();
		l->at[l->n] = now_us();
	}
	l->n++;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

static void log_wait(struct log *l, unsigned n)
{
	pthread_mutex_lock(&l->lock);
	while (l->n < n)
		pthread_cond_wait(&l->cond, &l->lock);
	pthread_mutex_unlock(&l->lock);
}

static unsigned log_count(struct log *l)
{
	pthread_mutex_lock(&l->lock);
	unsigned n = l->n;
	pthread_mutex_unlock(&l->lock);
	return n;
}

static void tio_set(struct tio *t, struct log *l, int id, int op, void *buf, uint64_t off,
                    uint64_t len)
{
	t->io = (struct bufio_io){.buf = buf,
	                          .offset = off,
	                          .len = len,
	                          .done = tio_done,
	                          .private = t,
	                          .op = (uint8_t)op};
	t->log = l;
	t->id = id;
}

static int one(struct bufio_backend *be, int op, void *buf, uint64_t off, uint64_t len)
{
	return bufio_backend_rw_sync(be, (enum bufio_io_op)op, buf, off, len);
}

static char buf[1 * MIB] __attribute__((aligned(4096)));

START_TEST(test_create_and_rule_errors)
{
	struct bufio_backend *m = be_memory_create(1 * MIB, 512);
	struct bufio_backend *f;

	errno = 0;
	ck_assert_ptr_null(be_fault_create(NULL, false));
	ck_assert_int_eq(errno, EINVAL);
	f = be_fault_create(m, true);
	ck_assert_ptr_nonnull(f);
	ck_assert_str_eq(f->name, "fault");
	ck_assert_uint_eq(bufio_backend_size(f), 1 * MIB);
	ck_assert_uint_eq(bufio_backend_alignment(f), 512);
	ck_assert_uint_eq(f->flags, m->flags);

	ck_assert_int_eq(be_fault_add_rule(f, NULL), -EINVAL);
	ck_assert_int_eq(be_fault_add_rule(f, &(struct be_fault_rule){.error = EIO}), -EINVAL);
	ck_assert_int_eq(be_fault_add_rule(f, &(struct be_fault_rule){.probability = 1000001}),
	                 -EINVAL);
	ck_assert_int_eq(be_fault_add_rule(f, &(struct be_fault_rule){.start = 10, .end = 10}),
	                 -EINVAL);
	ck_assert_int_eq(be_fault_add_rule(f, &(struct be_fault_rule){.ops = 1u << 7}), -EINVAL);
	/* not a fault backend */
	ck_assert_int_eq(be_fault_add_rule(m, &(struct be_fault_rule){.error = -EIO}), -EINVAL);
	ck_assert_int_eq(be_fault_add_rule(f, &(struct be_fault_rule){.error = -EIO}), 0);
	ck_assert_int_eq(be_fault_add_rule(f, &(struct be_fault_rule){.error = -EIO}), 1);
	for (int i = 2; i < 40; i++) /* the table grows */
		ck_assert_int_eq(be_fault_add_rule(f, &(struct be_fault_rule){.delay_us = 0}), i);
	ck_assert_uint_eq(be_fault_injected(f), 0);
	ck_assert_uint_eq(be_fault_held(f), 0);
	bufio_backend_close(f); /* own_lower: closes m too (ASan checks the leak) */
}
END_TEST

START_TEST(test_op_mask)
{
	struct bufio_backend *m = be_memory_create(1 * MIB, 512);
	struct bufio_backend *f = be_fault_create(m, false);
	struct be_counts k;

	ck_assert_int_ge(be_fault_add_rule(f, &(struct be_fault_rule){.ops = OPB(BUFIO_OP_WRITE),
	                                                              .error = -ENOSPC}),
	                 0);
	ck_assert_int_eq(one(f, BUFIO_OP_WRITE, buf, 0, 4096), -ENOSPC);
	ck_assert_int_eq(one(f, BUFIO_OP_WRITE, buf, 8192, 512), -ENOSPC);
	ck_assert_int_eq(one(f, BUFIO_OP_READ, buf, 0, 4096), 0);
	ck_assert_int_eq(one(f, BUFIO_OP_FLUSH, NULL, 0, 0), 0);
	ck_assert_int_eq(one(f, BUFIO_OP_DISCARD, NULL, 0, 4096), 0);
	/* failed ios never reach the lower backend */
	ck_assert_uint_eq(mem_ops(m, BUFIO_OP_WRITE), 0);
	ck_assert_uint_eq(mem_ops(m, BUFIO_OP_READ), 1);
	ck_assert_uint_eq(be_fault_injected(f), 2);
	be_fault_counts(f, &k);
	ck_assert_uint_eq(k.ops[BUFIO_OP_WRITE], 2);
	ck_assert_uint_eq(k.bytes[BUFIO_OP_WRITE], 4608);
	ck_assert_uint_eq(k.ops[BUFIO_OP_READ], 1);
	ck_assert_uint_eq(k.ops[BUFIO_OP_FLUSH], 1);
	ck_assert_uint_eq(k.ops[BUFIO_OP_DISCARD], 1);
	ck_assert_uint_eq(k.batches, 5);

	/* errors of the lower backend pass through untouched */
	ck_assert_int_eq(one(f, BUFIO_OP_READ, buf, 1 * MIB, 512), -EIO);
	ck_assert_int_eq(one(f, BUFIO_OP_READ, buf + 1, 0, 512), -EINVAL);

	be_fault_clear_rules(f);
	ck_assert_int_eq(one(f, BUFIO_OP_WRITE, buf, 0, 4096), 0);
	ck_assert_uint_eq(mem_ops(m, BUFIO_OP_WRITE), 1);
	bufio_backend_close(f);
	/* not owned: still ours to use and close */
	ck_assert_int_eq(one(m, BUFIO_OP_READ, buf, 0, 512), 0);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_range)
{
	struct bufio_backend *m = be_memory_create(1 * MIB, 512);
	struct bufio_backend *f = be_fault_create(m, true);

	be_fault_add_rule(f, &(struct be_fault_rule){.start = 8192, .end = 16384, .error = -EIO});
	ck_assert_int_eq(one(f, BUFIO_OP_READ, buf, 4096, 4096), 0);    /* ends at start */
	ck_assert_int_eq(one(f, BUFIO_OP_READ, buf, 4096, 4608), -EIO); /* overlaps by 512 */
	ck_assert_int_eq(one(f, BUFIO_OP_WRITE, buf, 12288, 512), -EIO);
	ck_assert_int_eq(one(f, BUFIO_OP_WRITE, buf, 16384 - 512, 4096), -EIO);
	ck_assert_int_eq(one(f, BUFIO_OP_READ, buf, 16384, 4096), 0); /* starts at end */
	ck_assert_int_eq(one(f, BUFIO_OP_DISCARD, NULL, 0, 1 * MIB), -EIO);
	/* a flush has no range: it matches any range */
	ck_assert_int_eq(one(f, BUFIO_OP_FLUSH, NULL, 0, 0), -EIO);
	ck_assert_uint_eq(be_fault_injected(f), 5);

	/* end 0: everything from start on */
	be_fault_clear_rules(f);
	be_fault_add_rule(f, &(struct be_fault_rule){.start = 65536, .error = -EIO});
	ck_assert_int_eq(one(f, BUFIO_OP_READ, buf, 0, 65536), 0);
	ck_assert_int_eq(one(f, BUFIO_OP_READ, buf, 1 * MIB - 512, 512), -EIO);
	bufio_backend_close(f);
}
END_TEST

START_TEST(test_after_and_count)
{
	struct bufio_backend *m = be_memory_create(1 * MIB, 512);
	struct bufio_backend *f = be_fault_create(m, true);
	const int want[] = {0, 0, 0, -EIO, -EIO, 0, 0};

	be_fault_add_rule(f, &(struct be_fault_rule){
	                         .ops = OPB(BUFIO_OP_READ), .after = 3, .count = 2, .error = -EIO});
	for (int i = 0; i < 7; i++) {
		/* writes do not match, so they do not advance the rule */
		ck_assert_int_eq(one(f, BUFIO_OP_WRITE, buf, 0, 512), 0);
		ck_assert_msg(one(f, BUFIO_OP_READ, buf, 0, 512) == want[i], "read %d", i);
	}
	ck_assert_uint_eq(be_fault_injected(f), 2);
	ck_assert_uint_eq(mem_ops(m, BUFIO_OP_READ), 5);

	/* count 0 = unlimited; the first rule that fires gives the error */
	be_fault_clear_rules(f);
	be_fault_add_rule(f, &(struct be_fault_rule){.after = 1, .error = -EREMOTEIO});
	be_fault_add_rule(f, &(struct be_fault_rule){.error = -ETIMEDOUT});
	ck_assert_int_eq(one(f, BUFIO_OP_READ, buf, 0, 512), -ETIMEDOUT);
	for (int i = 0; i < 20; i++)
		ck_assert_int_eq(one(f, BUFIO_OP_READ, buf, 0, 512), -EREMOTEIO);
	bufio_backend_close(f);
}
END_TEST

static uint64_t run_probability(unsigned ppm, unsigned n, unsigned char *pattern)
{
	struct bufio_backend *f = be_fault_create(be_memory_create(1 * MIB, 1), true);
	uint64_t injected;

	be_fault_add_rule(f, &(struct be_fault_rule){.probability = ppm, .error = -EIO});
	for (unsigned i = 0; i < n; i++)
		pattern[i] = one(f, BUFIO_OP_READ, buf, 0, 1) != 0;
	injected = be_fault_injected(f);
	bufio_backend_close(f);
	return injected;
}

START_TEST(test_probability)
{
	enum { N = 20000 };
	static unsigned char a[N], b[N];
	uint64_t got, fails = 0;

	setenv("BUFIO_FAULT_SEED", "12345", 1);
	got = run_probability(100000, N, a); /* 10% */
	for (int i = 0; i < N; i++)
		fails += a[i];
	ck_assert_uint_eq(fails, got);
	/* 2000 expected, sigma ~42: a wide but meaningful window */
	ck_assert_msg(got > 1700 && got < 2300, "10%% of %d failed %llu", N,
	              (unsigned long long)got);
	/* the same seed gives the same sequence */
	ck_assert_uint_eq(run_probability(100000, N, b), got);
	ck_assert_int_eq(memcmp(a, b, N), 0);
	setenv("BUFIO_FAULT_SEED", "999", 1);
	run_probability(100000, N, b);
	ck_assert_int_ne(memcmp(a, b, N), 0);
	unsetenv("BUFIO_FAULT_SEED");

	/* probability picks which ios a delay-only rule hits, too */
	{
		struct bufio_backend *m = be_memory_create(1 * MIB, 1);
		struct bufio_backend *f = be_fault_create(m, true);
		struct tio t[64];
		struct log l;
		unsigned inline_done = 0;

		log_init(&l);
		be_fault_add_rule(f,
		                  &(struct be_fault_rule){.probability = 500000, .delay_us = 1000});
		for (int i = 0; i < 64; i++) {
			tio_set(&t[i], &l, i, BUFIO_OP_READ, buf, 0, 1);
			bufio_backend_submit(f, &t[i].io);
		}
		log_wait(&l, 64);
		for (int i = 0; i < 64; i++)
			inline_done += pthread_equal(l.thread[i], pthread_self());
		ck_assert_msg(inline_done >= 16 && inline_done <= 48, "%u of 64 undelayed",
		              inline_done);
		bufio_backend_close(f);
	}

	got = run_probability(1000000, 1000, a);
	ck_assert_uint_eq(got, 1000);
	got = run_probability(1, 1000, a);
	ck_assert_uint_le(got, 2);
}
END_TEST

/* Delays complete in due order on the fault thread, failing or not. */
START_TEST(test_delay_ordering)
{
	struct bufio_backend *m = be_memory_create(1 * MIB, 512);
	struct bufio_backend *f = be_fault_create(m, true);
	struct tio t[4];
	struct log l;
	uint64_t t0;

	log_init(&l);
	be_fault_add_rule(f, &(struct be_fault_rule){.start = 0, .end = 4096, .delay_us = 90000});
	be_fault_add_rule(f,
	                  &(struct be_fault_rule){.start = 4096, .end = 8192, .delay_us = 30000});
	be_fault_add_rule(f, &(struct be_fault_rule){
	                         .start = 8192, .end = 12288, .delay_us = 60000, .error = -EIO});
	tio_set(&t[0], &l, 0, BUFIO_OP_WRITE, buf, 0, 4096);
	tio_set(&t[1], &l, 1, BUFIO_OP_WRITE, buf, 4096, 4096);
	tio_set(&t[2], &l, 2, BUFIO_OP_WRITE, buf, 8192, 4096);
	tio_set(&t[3], &l, 3, BUFIO_OP_WRITE, buf, 65536, 4096); /* no rule: inline */
	t[0].io.next = &t[1].io;
	t[1].io.next = &t[2].io;
	t[2].io.next = &t[3].io;
	t[3].io.next = NULL;
	memset(buf, 0x77, 16384);
	t0 = now_us();
	bufio_backend_submit(f, &t[0].io);
	/* the undelayed one went straight through the synchronous memory backend */
	ck_assert_uint_eq(log_count(&l), 1);
	ck_assert_int_eq(l.order[0], 3);
	/* a delayed write has not reached the "disk" yet */
	ck_assert_uint_eq(((unsigned char *)be_memory_data(m))[0], 0);
	log_wait(&l, 4);
	ck_assert_int_eq(l.order[1], 1);
	ck_assert_int_eq(l.order[2], 2);
	ck_assert_int_eq(l.order[3], 0);
	ck_assert_int_eq(l.res[1], 0);
	ck_assert_int_eq(l.res[2], -EIO);
	ck_assert_int_eq(l.res[3], 0);
	/* never early (lower bounds only: no timing upper bound is asserted) */
	ck_assert_uint_ge(l.at[1] - t0, 30000);
	ck_assert_uint_ge(l.at[2] - t0, 60000);
	ck_assert_uint_ge(l.at[3] - t0, 90000);
	for (int i = 1; i < 4; i++)
		ck_assert(!pthread_equal(l.thread[i], pthread_self()));
	ck_assert_uint_eq(((unsigned char *)be_memory_data(m))[0], 0x77);
	ck_assert_uint_eq(((unsigned char *)be_memory_data(m))[4096], 0x77);
	ck_assert_uint_eq(((unsigned char *)be_memory_data(m))[8192], 0); /* failed: not written */
	ck_assert_uint_eq(mem_ops(m, BUFIO_OP_WRITE), 3);
	ck_assert_uint_eq(be_fault_injected(f), 1);
	bufio_backend_close(f);
}
END_TEST

/*
 * A stall holds the submitter itself: submit returns no earlier than the
 * stall (a lower bound only), in the submitting thread; then the batch goes
 * on as usual. Ios no stall rule hits pass at once.
 */
START_TEST(test_stall)
{
	struct bufio_backend *m = be_memory_create(1 * MIB, 512);
	struct bufio_backend *f = be_fault_create(m, true);
	struct tio t[2];
	struct log l;
	uint64_t t0;

	log_init(&l);
	be_fault_add_rule(
	    f, &(struct be_fault_rule){.ops = OPB(BUFIO_OP_READ), .end = 4096, .stall_us = 80000});
	memset(be_memory_data(m), 0x3c, 8192);
	tio_set(&t[0], &l, 0, BUFIO_OP_READ, buf, 4096, 4096); /* outside the rule */
	t[0].io.next = NULL;
	bufio_backend_submit(f, &t[0].io);
	ck_assert_uint_eq(log_count(&l), 1);
	tio_set(&t[0], &l, 1, BUFIO_OP_READ, buf, 0, 4096);
	tio_set(&t[1], &l, 2, BUFIO_OP_WRITE, buf + 4096, 65536, 4096);
	t[0].io.next = &t[1].io;
	t[1].io.next = NULL;
	t0 = now_us();
	bufio_backend_submit(f, &t[0].io);
	ck_assert_uint_ge(now_us() - t0, 80000);
	/* the memory backend completes inline: both done when submit returns */
	ck_assert_uint_eq(log_count(&l), 3);
	ck_assert_int_eq(l.res[1], 0);
	ck_assert_int_eq(l.res[2], 0);
	ck_assert(pthread_equal(l.thread[1], pthread_self()));
	ck_assert_uint_eq(((unsigned char *)buf)[0], 0x3c);
	bufio_backend_close(f);
}
END_TEST

START_TEST(test_gate)
{
	struct bufio_backend *m = be_memory_create(1 * MIB, 512);
	struct bufio_backend *f = be_fault_create(m, true);
	struct tio t[6];
	struct log l;

	log_init(&l);
	be_fault_hold(f, OPB(BUFIO_OP_WRITE) | OPB(BUFIO_OP_FLUSH));
	memset(buf, 0x99, 4096);
	for (int i = 0; i < 6; i++) {
		int op = i % 3 == 0 ? BUFIO_OP_READ : i % 3 == 1 ? BUFIO_OP_WRITE : BUFIO_OP_FLUSH;

		tio_set(&t[i], &l, i, op,
		        op == BUFIO_OP_FLUSH ? NULL : buf + (size_t)4096 * (i + 1),
		        (uint64_t)i * 4096, op == BUFIO_OP_FLUSH ? 0 : 4096);
		t[i].io.next = i < 5 ? &t[i + 1].io : NULL;
	}
	memset(buf + 8192, 0x99, 4096);
	memset(buf + 20480, 0x99, 4096);
	bufio_backend_submit(f, &t[0].io);
	/* reads are delivered, writes and flushes are kept back */
	ck_assert_uint_eq(log_count(&l), 2);
	ck_assert_int_eq(l.order[0], 0);
	ck_assert_int_eq(l.order[1], 3);
	ck_assert_uint_eq(be_fault_held(f), 4);
	/* ... though the lower backend did the writes: only completions wait */
	ck_assert_uint_eq(((unsigned char *)be_memory_data(m))[4096], 0x99);
	ck_assert_uint_eq(mem_ops(m, BUFIO_OP_WRITE), 2);
	usleep(20000);
	ck_assert_uint_eq(log_count(&l), 2);

	be_fault_release(f);
	log_wait(&l, 6);
	ck_assert_uint_eq(be_fault_held(f), 0);
	ck_assert_int_eq(l.order[2], 1); /* delivered in the order they were held */
	ck_assert_int_eq(l.order[3], 2);
	ck_assert_int_eq(l.order[4], 4);
	ck_assert_int_eq(l.order[5], 5);
	for (int i = 2; i < 6; i++) {
		ck_assert_int_eq(l.res[i], 0);
		ck_assert(!pthread_equal(l.thread[i], pthread_self()));
	}

	/* mask 0 holds everything, errors included */
	be_fault_add_rule(f, &(struct be_fault_rule){.ops = OPB(BUFIO_OP_READ), .error = -EIO});
	be_fault_hold(f, 0);
	tio_set(&t[0], &l, 10, BUFIO_OP_READ, buf, 0, 512);
	tio_set(&t[1], &l, 11, BUFIO_OP_DISCARD, NULL, 0, 512);
	t[0].io.next = &t[1].io;
	bufio_backend_submit(f, &t[0].io);
	ck_assert_uint_eq(be_fault_held(f), 2);
	ck_assert_uint_eq(log_count(&l), 6);
	be_fault_release(f);
	log_wait(&l, 8);
	ck_assert_int_eq(l.order[6], 10);
	ck_assert_int_eq(l.res[6], -EIO);
	ck_assert_int_eq(l.order[7], 11);
	ck_assert_int_eq(l.res[7], 0);
	/* released: back to inline completion */
	ck_assert_int_eq(one(f, BUFIO_OP_WRITE, buf, 0, 512), 0);
	bufio_backend_close(f);
}
END_TEST

/* Delayed completions, delivered on the fault thread, submit the next io. */
struct chain {
	struct bufio_backend *be;
	struct bufio_io io;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int left, calls, errors;
};

static void chain_done(struct bufio_io *io, int res)
{
	struct chain *c = io->private;
	bool again;

	pthread_mutex_lock(&c->lock);
	c->calls++;
	c->errors += res != 0;
	again = --c->left > 0;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	if (again) {
		io->offset += 512;
		io->next = NULL;
		bufio_backend_submit(c->be, io);
	}
}

static void run_chain(struct bufio_backend *f, int n)
{
	struct chain c = {.be = f, .left = n};

	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.cond, NULL);
	c.io = (struct bufio_io){
	    .buf = buf, .len = 512, .done = chain_done, .private = &c, .op = BUFIO_OP_WRITE};
	bufio_backend_submit(f, &c.io);
	pthread_mutex_lock(&c.lock);
	while (c.calls < n)
		pthread_cond_wait(&c.cond, &c.lock);
	pthread_mutex_unlock(&c.lock);
	ck_assert_int_eq(c.errors, 0);
}

START_TEST(test_callback_resubmits)
{
	struct bufio_backend *m = be_memory_create(1 * MIB, 512);
	struct bufio_backend *f = be_fault_create(m, true);

	be_fault_add_rule(f, &(struct be_fault_rule){.delay_us = 500});
	run_chain(f, 40);
	ck_assert_uint_eq(mem_ops(m, BUFIO_OP_WRITE), 40);
	bufio_backend_close(f);
}
END_TEST

/* Over the io_uring file backend: completions come from the reaper thread. */
START_TEST(test_over_file_backend)
{
	struct bufio_backend_options o = {.engine = BUFIO_ENGINE_URING, .queue_depth = 4};
	struct bufio_backend *fb, *f;
	struct tio t[16];
	struct log l;
	char path[256];

	ck_assert_int_eq(make_temp_file(path, sizeof(path), 1 * MIB), 0);
	fb = bufio_backend_open(path, &o);
	ck_assert_ptr_nonnull(fb);
	f = be_fault_create(fb, true);
	ck_assert_str_eq(f->path, path);
	be_fault_add_rule(f,
	                  &(struct be_fault_rule){
	                      .ops = OPB(BUFIO_OP_READ), .start = 0, .end = 4096, .error = -EIO});
	be_fault_add_rule(f,
	                  &(struct be_fault_rule){.start = (uint64_t)4096 * 8, .delay_us = 20000});
	fill_pattern(buf, (size_t)16 * 4096, 0, 4);
	log_init(&l);
	be_fault_hold(f, OPB(BUFIO_OP_WRITE));
	for (int i = 0; i < 16; i++) {
		tio_set(&t[i], &l, i, BUFIO_OP_WRITE, buf + (size_t)i * 4096, (uint64_t)i * 4096,
		        4096);
		t[i].io.next = i < 15 ? &t[i + 1].io : NULL;
	}
	bufio_backend_submit(f, &t[0].io);
	/* every write is held: 8 as soon as the reaper completes them, 8 after 20 ms */
	while (be_fault_held(f) < 16) {
		ck_assert_uint_eq(log_count(&l), 0);
		usleep(1000);
	}
	be_fault_release(f);
	log_wait(&l, 16);
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(l.res[i], 0);
	memset(buf, 0, (size_t)16 * 4096);
	ck_assert_int_eq(one(f, BUFIO_OP_READ, buf, 0, 4096), -EIO);
	ck_assert_int_eq(one(f, BUFIO_OP_READ, buf + 4096, 4096, (uint64_t)15 * 4096), 0);
	fill_pattern(buf + (size_t)16 * 4096, (size_t)16 * 4096, 0, 4);
	ck_assert_int_eq(memcmp(buf + 4096, buf + (size_t)16 * 4096 + 4096, (size_t)15 * 4096), 0);
	run_chain(f, 100); /* resubmitting callbacks on the reaper, through the fault layer */
	bufio_backend_close(f);
	unlink(path);
}
END_TEST

struct par {
	struct bufio_backend *f;
	unsigned errors[4];
};

static void par_worker(void *arg, unsigned idx)
{
	struct par *p = arg;
	char b[512];

	for (int i = 0; i < 2000; i++)
		p->errors[idx] += one(p->f, BUFIO_OP_READ, b, (uint64_t)i * 512, 512) != 0;
}

START_TEST(test_concurrent)
{
	struct par p = {.f = be_fault_create(be_memory_create(1 * MIB, 1), true)};
	struct be_counts k;
	unsigned errors = 0;

	be_fault_add_rule(p.f, &(struct be_fault_rule){.probability = 250000, .error = -EIO});
	be_fault_add_rule(p.f, &(struct be_fault_rule){.probability = 10000, .delay_us = 100});
	run_threads(4, par_worker, &p);
	for (int i = 0; i < 4; i++)
		errors += p.errors[i];
	ck_assert_uint_eq(errors, be_fault_injected(p.f));
	ck_assert_msg(errors > 1600 && errors < 2400, "25%% of 8000 failed %u", errors);
	be_fault_counts(p.f, &k);
	ck_assert_uint_eq(k.ops[BUFIO_OP_READ], 8000);
	ck_assert_uint_eq(k.batches, 8000);
	bufio_backend_close(p.f);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("backend_fault");
	TCase *t = tcase_create("fault");

	tcase_set_timeout(t, 120);
	tcase_add_test(t, test_create_and_rule_errors);
	tcase_add_test(t, test_op_mask);
	tcase_add_test(t, test_range);
	tcase_add_test(t, test_after_and_count);
	tcase_add_test(t, test_probability);
	tcase_add_test(t, test_delay_ordering);
	tcase_add_test(t, test_stall);
	tcase_add_test(t, test_gate);
	tcase_add_test(t, test_callback_resubmits);
	tcase_add_test(t, test_over_file_backend);
	tcase_add_test(t, test_concurrent);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	setenv("TMPDIR", "/var/tmp", 1);
	return run_suite(suite());
}
