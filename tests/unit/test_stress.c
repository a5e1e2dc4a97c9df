/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Randomized multi-threaded stress of libbufio against a shadow copy of the
 * device: 8 threads, a small cache, every kind of operation mixed; every read
 * must match the shadow and the device must equal it exactly at the end.
 * BUFIO_STRESS_OPS (total operations per run) scales it up.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include <bufio/bufio.h>
#include "backend/be_fault.h"
#include "backend/be_memory.h"
#include "helpers.h"

#define NTHREADS     8
#define NBLOCKS      1024
#define CACHE_BLOCKS 64

/*
 * The oracle: the test serializes every operation that reads or writes a
 * block's contents with that block's lock, so the expected contents
 * (shadow) are always known. Only prefetch, write-back and flush run
 * unlocked: they must not change what any block reads as.
 */
struct stress {
	struct bufio_client *c;
	struct bufio_backend *mem;
	unsigned bs;
	unsigned char *shadow;
	pthread_mutex_t locks[NBLOCKS];
	long ops_per_thread;
	uint64_t seed;
	int failures;
	char first[256];
	pthread_mutex_t msg_lock;
	/*
	 * The data contract of bufio.h: a thread changes a buffer only after
	 * bufio_wait_writeback, and explicit write-back of the whole cache
	 * (which writes held buffers, as dm-bufio does) does not run while
	 * another thread changes one. Changers hold this shared, the explicit
	 * write-back calls exclusive.
	 */
	pthread_rwlock_t flush_lock;
};

/* Record a failure (the first message is kept); threads stop soon after. */
static void __attribute__((format(printf, 2, 3))) bad(struct stress *s, const char *fmt, ...)
{
	pthread_mutex_lock(&s->msg_lock);
	if (!__atomic_fetch_add(&s->failures, 1, __ATOMIC_RELAXED)) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(s->first, sizeof(s->first), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&s->msg_lock);
}

static unsigned char *shadow_of(struct stress *s, uint64_t blk)
{
	return s->shadow + blk * s->bs;
}

/* Random bytes into @p (and the same into the shadow when @sh). */
static void scribble(unsigned char *p, unsigned char *sh, size_t len, uint64_t *rs)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = rnd_next(rs);
		size_t n = len - i < 8 ? len - i : 8;
		memcpy(p + i, &v, n);
		if (sh)
			memcpy(sh + i, &v, n);
	}
}

/* Read @blk (lock held), compare with the shadow; returns the data or NULL. */
static unsigned char *read_verify(struct stress *s, uint64_t blk, struct bufio_buffer **bp,
                                  const char *what)
{
	unsigned char *p = bufio_read(s->c, blk, bp);
	if (!p) {
		bad(s, "%s: read of block %llu failed: %s", what, (unsigned long long)blk,
		    strerror(errno));
		return NULL;
	}
	if (memcmp(p, shadow_of(s, blk), s->bs) != 0) {
		bad(s, "%s: block %llu does not match the shadow", what, (unsigned long long)blk);
		bufio_release(*bp);
		return NULL;
	}
	return p;
}

/* Make the backend hold the shadow of @blk (lock held). */
static int make_clean(struct stress *s, uint64_t blk)
{
	struct bufio_buffer *b;
	if (!read_verify(s, blk, &b, "clean"))
		return -1;
	int r = bufio_write_buffer(b);
	bufio_release(b);
	if (r) {
		bad(s, "write_buffer of block %llu: %s", (unsigned long long)blk, strerror(-r));
		return -1;
	}
	return 0;
}

static void op_locked(struct stress *s, unsigned op, uint64_t blk, uint64_t *rs)
{
	struct bufio_buffer *b;
	unsigned char *p;
	unsigned bs = s->bs;
	switch (op) {
	case 0: /* read */
		if (read_verify(s, blk, &b, "read"))
			bufio_release(b);
		break;
	case 1: /* get: only from the cache */
		p = bufio_get(s->c, blk, &b);
		if (!p) {
			if (errno != ENOENT)
				bad(s, "get of block %llu: %s", (unsigned long long)blk,
				    strerror(errno));
			break;
		}
		if (memcmp(p, shadow_of(s, blk), bs) != 0)
			bad(s, "get of block %llu does not match the shadow",
			    (unsigned long long)blk);
		bufio_release(b);
		break;
	case 2: /* new: the whole block written */
		p = bufio_new(s->c, blk, &b);
		if (!p) {
			bad(s, "new of block %llu: %s", (unsigned long long)blk, strerror(errno));
			break;
		}
		scribble(p, shadow_of(s, blk), bs, rs);
		bufio_mark_buffer_dirty(b);
		bufio_release(b);
		break;
	case 3: { /* partial write */
		if (!(p = read_verify(s, blk, &b, "partial")))
			break;
		bufio_wait_writeback(b);
		unsigned a = (unsigned)(rnd_next(rs) % bs), z = (unsigned)(rnd_next(rs) % bs);
		if (a > z) {
			unsigned t = a;
			a = z;
			z = t;
		}
		z++;
		scribble(p + a, shadow_of(s, blk) + a, z - a, rs);
		bufio_mark_partial_buffer_dirty(b, a, z);
		/* sometimes a second range */
		if (rnd_next(rs) & 1) {
			unsigned a2 = (unsigned)(rnd_next(rs) % bs);
			unsigned z2 = a2 + 1 + (unsigned)(rnd_next(rs) % 64);
			if (z2 > bs)
				z2 = bs;
			scribble(p + a2, shadow_of(s, blk) + a2, z2 - a2, rs);
			bufio_mark_partial_buffer_dirty(b, a2, z2);
		}
		bufio_release(b);
		break;
	}
	case 4: /* read, rewrite all, mark dirty */
		if (!(p = read_verify(s, blk, &b, "full")))
			break;
		bufio_wait_writeback(b);
		scribble(p, shadow_of(s, blk), bs, rs);
		bufio_mark_buffer_dirty(b);
		bufio_release(b);
		break;
	case 5: /* forget a clean block: the backend must have the data */
		if (make_clean(s, blk))
			break;
		bufio_forget(s->c, blk);
		if (read_verify(s, blk, &b, "after forget"))
			bufio_release(b);
		break;
	case 6: { /* forget a dirty block: its new data may be dropped */
		if (make_clean(s, blk))
			break;
		unsigned char *before = malloc(bs), *after = malloc(bs);
		memcpy(before, shadow_of(s, blk), bs);
		p = bufio_new(s->c, blk, &b);
		if (!p) {
			bad(s, "new of block %llu: %s", (unsigned long long)blk, strerror(errno));
			free(before);
			free(after);
			break;
		}
		scribble(p, after, bs, rs);
		bufio_mark_buffer_dirty(b);
		bufio_release(b);
		bufio_forget(s->c, blk);
		/*
		 * Dropped (backend: before) or written first by write-back
		 * (after): either is right, anything else is not.
		 */
		p = bufio_read(s->c, blk, &b);
		if (!p) {
			bad(s, "read of block %llu after forget: %s", (unsigned long long)blk,
			    strerror(errno));
		} else {
			if (!memcmp(p, after, bs))
				memcpy(shadow_of(s, blk), after, bs);
			else if (memcmp(p, before, bs) != 0)
				bad(s, "forgotten dirty block %llu reads neither old nor new",
				    (unsigned long long)blk);
			bufio_release(b);
		}
		free(before);
		free(after);
		break;
	}
	case 13: /* write one buffer now */
		if (read_verify(s, blk, &b, "write_buffer")) {
			int r = bufio_write_buffer(b);
			if (r)
				bad(s, "write_buffer of block %llu: %s", (unsigned long long)blk,
				    strerror(-r));
			bufio_release(b);
		}
		break;
	}
}

static void lock_range(struct stress *s, uint64_t a, uint64_t n)
{
	for (uint64_t i = a; i < a + n; i++)
		pthread_mutex_lock(&s->locks[i]);
}

static void unlock_range(struct stress *s, uint64_t a, uint64_t n)
{
	for (uint64_t i = a; i < a + n; i++)
		pthread_mutex_unlock(&s->locks[i]);
}

static void stress_thread(void *arg, unsigned idx)
{
	struct stress *s = arg;
	uint64_t rs = s->seed * 0x9E3779B97F4A7C15ull + idx + 1;
	for (long i = 0; i < s->ops_per_thread && !__atomic_load_n(&s->failures, __ATOMIC_RELAXED);
	     i++) {
		unsigned dice = (unsigned)(rnd_next(&rs) % 100);
		uint64_t blk = rnd_next(&rs) % NBLOCKS;
		unsigned op;
		if (dice < 25)
			op = 0;
		else if (dice < 35)
			op = 1;
		else if (dice < 45)
			op = 2;
		else if (dice < 60)
			op = 3;
		else if (dice < 65)
			op = 4;
		else if (dice < 70)
			op = 5;
		else if (dice < 74)
			op = 6;
		else if (dice < 76)
			op = 13;
		else
			op = dice; /* the unlocked and multi-block ones below */
		bool whole_cache = dice >= 92 && dice < 98;
		if (whole_cache)
			pthread_rwlock_wrlock(&s->flush_lock);
		else
			pthread_rwlock_rdlock(&s->flush_lock);
		if (op < 14) {
			pthread_mutex_lock(&s->locks[blk]);
			op_locked(s, op, blk, &rs);
			pthread_mutex_unlock(&s->locks[blk]);
			goto next;
		}
		if (dice < 80) { /* forget_buffers over clean blocks */
			uint64_t n = 1 + rnd_next(&rs) % 4;
			if (blk + n > NBLOCKS)
				n = NBLOCKS - blk;
			lock_range(s, blk, n);
			int ok = 1;
			for (uint64_t j = blk; j < blk + n && ok; j++)
				ok = !make_clean(s, j);
			if (ok) {
				bufio_forget_buffers(s->c, blk, n);
				for (uint64_t j = blk; j < blk + n; j++) {
					struct bufio_buffer *b;
					if (read_verify(s, j, &b, "after forget_buffers"))
						bufio_release(b);
				}
			}
			unlock_range(s, blk, n);
		} else if (dice < 84) { /* release_move */
			uint64_t to = rnd_next(&rs) % NBLOCKS;
			if (to == blk)
				goto next;
			uint64_t lo = blk < to ? blk : to, hi = blk < to ? to : blk;
			pthread_mutex_lock(&s->locks[lo]);
			pthread_mutex_lock(&s->locks[hi]);
			/*
			 * The source clean first, so the backend holds its
			 * shadow whether or not the move writes it there.
			 */
			struct bufio_buffer *b;
			if (!make_clean(s, blk) && read_verify(s, blk, &b, "move")) {
				unsigned char *old_to = malloc(s->bs);
				memcpy(old_to, shadow_of(s, to), s->bs);
				bufio_release_move(b, to);
				memcpy(shadow_of(s, to), shadow_of(s, blk), s->bs);
				unsigned char *p = bufio_read(s->c, to, &b);
				if (!p) {
					bad(s, "read of block %llu after a move: %s",
					    (unsigned long long)to, strerror(errno));
				} else {
					if (memcmp(p, shadow_of(s, to), s->bs) != 0)
						bad(s,
						    "block %llu moved to %llu reads %s, not the "
						    "moved data",
						    (unsigned long long)blk, (unsigned long long)to,
						    memcmp(p, old_to, s->bs) ? "something else"
						                             : "its old contents");
					bufio_release(b);
				}
				free(old_to);
				if (read_verify(s, blk, &b, "move source"))
					bufio_release(b);
			}
			pthread_mutex_unlock(&s->locks[hi]);
			pthread_mutex_unlock(&s->locks[lo]);
		} else if (dice < 92) {
			bufio_prefetch(s->c, blk, 1 + (unsigned)(rnd_next(&rs) % 8));
		} else if (dice < 95) {
			bufio_write_dirty_buffers_async(s->c);
		} else if (dice < 98) {
			int r = bufio_write_dirty_buffers(s->c);
			if (r)
				bad(s, "write_dirty_buffers: %s", strerror(-r));
		} else {
			int r = bufio_issue_flush(s->c);
			if (r)
				bad(s, "issue_flush: %s", strerror(-r));
		}
	next:
		pthread_rwlock_unlock(&s->flush_lock);
	}
}

static long total_ops(void)
{
	const char *e = getenv("BUFIO_STRESS_OPS");
	long n = e ? strtol(e, NULL, 10) : 0;
	return n > 0 ? n : 40000;
}

/*
 * One run: block size @bs, optionally with the fault backend adding random
 * latency so that completions really arrive later, from another thread.
 */
static void stress_run(unsigned bs, int delays, uint64_t seed)
{
	ck_assert_int_eq(bufio_set_max_cache_size((uint64_t)CACHE_BLOCKS * bs), 0);
	bufio_set_max_age(300);
	bufio_inject_alloc_failures(0);
	struct stress *s = calloc(1, sizeof(*s));
	ck_assert_ptr_nonnull(s);
	s->bs = bs;
	s->seed = seed;
	s->mem = be_memory_create((uint64_t)NBLOCKS * bs, 512);
	ck_assert_ptr_nonnull(s->mem);
	s->shadow = malloc((size_t)NBLOCKS * bs);
	ck_assert_ptr_nonnull(s->shadow);
	uint64_t rs = seed;
	scribble(be_memory_data(s->mem), s->shadow, (size_t)NBLOCKS * bs, &rs);
	for (unsigned i = 0; i < NBLOCKS; i++)
		pthread_mutex_init(&s->locks[i], NULL);
	pthread_mutex_init(&s->msg_lock, NULL);
	pthread_rwlock_init(&s->flush_lock, NULL);

	struct bufio_backend *be = s->mem, *f = NULL;
	if (delays) {
		f = be_fault_create(s->mem, false);
		ck_assert_ptr_nonnull(f);
		struct be_fault_rule r = {.probability = 400000, .delay_us = 150};
		ck_assert_int_ge(be_fault_add_rule(f, &r), 0);
		be = f;
	}
	s->c = bufio_client_create(be, bs, 1, 0, NULL, NULL);
	ck_assert_ptr_nonnull(s->c);
	s->ops_per_thread = total_ops() / NTHREADS;

	run_threads(NTHREADS, stress_thread, s);
	ck_assert_msg(s->failures == 0, "%d failures, first: %s", s->failures, s->first);

	ck_assert_int_eq(bufio_write_dirty_buffers(s->c), 0);
	struct bufio_stats st;
	bufio_get_stats(s->c, &st);
	ck_assert_uint_eq(st.buffers_dirty, 0);
	ck_assert_uint_eq(st.buffers_held, 0);
	ck_assert_uint_eq(st.buffers_writing, 0);
	ck_assert_uint_eq(st.read_errors + st.write_errors, 0);
	/* a small cache: evictions of every kind must have happened */
	ck_assert_uint_gt(st.evict_budget + st.evict_reuse, 0);
	ck_assert_uint_gt(st.evict_forget, 0);
	const unsigned char *d = be_memory_data(s->mem);
	for (uint64_t i = 0; i < NBLOCKS; i++)
		ck_assert_msg(memcmp(d + i * bs, shadow_of(s, i), bs) == 0,
		              "device block %llu differs from the shadow at the end",
		              (unsigned long long)i);
	/* and through the cache, after dropping it */
	bufio_drop_clean(s->c);
	for (uint64_t i = 0; i < NBLOCKS; i++) {
		struct bufio_buffer *b;
		void *p = bufio_read(s->c, i, &b);
		ck_assert_ptr_nonnull(p);
		ck_assert_msg(memcmp(p, shadow_of(s, i), bs) == 0, "block %llu reads wrong",
		              (unsigned long long)i);
		bufio_release(b);
	}
	bufio_client_destroy(s->c);
	if (f)
		bufio_backend_close(f);
	bufio_backend_close(s->mem);
	free(s->shadow);
	free(s);
	ck_assert_int_eq(bufio_set_max_cache_size(256ull << 20), 0);
}

START_TEST(test_stress_4k)
{
	stress_run(4096, 0, 1);
}
END_TEST

START_TEST(test_stress_1536)
{
	/* not a power of two, and partial ranges clipped at its end */
	stress_run(1536, 0, 2);
}
END_TEST

START_TEST(test_stress_6k_delays)
{
	stress_run(6144, 1, 3);
}
END_TEST

START_TEST(test_stress_4k_delays)
{
	stress_run(4096, 1, 4);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("stress");
	TCase *t = tcase_create("stress");
	tcase_set_timeout(t, 240);
	tcase_add_test(t, test_stress_4k);
	tcase_add_test(t, test_stress_1536);
	tcase_add_test(t, test_stress_6k_delays);
	tcase_add_test(t, test_stress_4k_delays);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
