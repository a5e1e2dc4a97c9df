/* SPDX-License-Identifier: GPL-2.0-only */
/* Shared helpers for the unit tests: patterns, temp files, threads, clients, the check runner. */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/be_memory.h"

static uint32_t pattern_word(uint64_t block, uint32_t seed, size_t i)
{
	uint64_t x = (block * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)seed << 32) ^ i;
	x ^= x >> 29;
	x *= 0xBF58476D1CE4E5B9ull;
	return (uint32_t)(x >> 32);
}

void fill_pattern(void *buf, size_t len, uint64_t block, uint32_t seed)
{
	unsigned char *p = buf;
	for (size_t i = 0; i < len; i += 4) {
		uint32_t w = pattern_word(block, seed, i / 4);
		memcpy(p + i, &w, len - i < 4 ? len - i : 4);
	}
}

int check_pattern(const void *buf, size_t len, uint64_t block, uint32_t seed)
{
	const unsigned char *p = buf;
	for (size_t i = 0; i < len; i += 4) {
		uint32_t w = pattern_word(block, seed, i / 4);
		if (memcmp(p + i, &w, len - i < 4 ? len - i : 4) != 0)
			return 0;
	}
	return 1;
}

int make_temp_file(char *path, size_t path_size, uint64_t size)
{
	const char *dir = getenv("TMPDIR");
	snprintf(path, path_size, "%s/bufio-test-XXXXXX", dir ? dir : "/var/tmp");
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	if (ftruncate(fd, (off_t)size) != 0) {
		close(fd);
		unlink(path);
		return -1;
	}
	close(fd);
	return 0;
}

struct thread_arg {
	void (*fn)(void *, unsigned);
	void *arg;
	unsigned idx;
};

static void *thread_main(void *p)
{
	struct thread_arg *t = p;
	t->fn(t->arg, t->idx);
	return NULL;
}

void run_threads(unsigned n, void (*fn)(void *arg, unsigned idx), void *arg)
{
	pthread_t tid[64];
	struct thread_arg ta[64];
	if (n > 64)
		n = 64;
	for (unsigned i = 0; i < n; i++) {
		ta[i] = (struct thread_arg){fn, arg, i};
		if (pthread_create(&tid[i], NULL, thread_main, &ta[i]) != 0)
			abort();
	}
	for (unsigned i = 0; i < n; i++)
		pthread_join(tid[i], NULL);
}

void *alloc_aligned(size_t align, size_t len)
{
	void *p = NULL;

	ck_assert_int_eq(posix_memalign(&p, align, len), 0);
	return p;
}

int run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

void reset_globals(void)
{
	ck_assert_int_eq(bufio_set_max_cache_size(256 * MIB), 0);
	ck_assert_int_eq(bufio_set_max_age(300), 0);
	ck_assert_int_eq(bufio_set_retain_bytes((uint64_t)256 * 1024), 0);
	bufio_inject_alloc_failures(0);
}

struct bufio_backend *mem_with_pattern(uint64_t blocks, unsigned bs, unsigned align, uint32_t seed)
{
	struct bufio_backend *m = be_memory_create(blocks * bs, align);
	ck_assert_ptr_nonnull(m);
	unsigned char *d = be_memory_data(m);
	for (uint64_t i = 0; i < blocks; i++)
		fill_pattern(d + i * bs, bs, i, seed);
	return m;
}

uint64_t mem_ops(struct bufio_backend *m, int op)
{
	struct be_counts k;

	be_memory_counts(m, &k);
	return k.ops[op];
}

struct bufio_client *lazy_client(struct bufio_backend *be, unsigned bs)
{
	struct bufio_client *c = bufio_client_create(be, bs, 1, 0, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(bufio_set_writeback_ratio(c, 1000), 0);
	ck_assert_int_eq(bufio_set_dirty_expire(c, 0), 0);
	return c;
}

void anchor(struct bufio_client *c)
{
	struct bufio_buffer *b;
	ck_assert_ptr_nonnull(bufio_read(c, bufio_get_device_size(c) - 1, &b));
	bufio_release(b);
}

struct bufio_client *quiet_client(struct bufio_backend *be, unsigned bs)
{
	struct bufio_client *c = lazy_client(be, bs);
	anchor(c);
	return c;
}

struct bufio_stats stats(struct bufio_client *c)
{
	struct bufio_stats st;
	bufio_get_stats(c, &st);
	return st;
}

int is_cached(struct bufio_client *c, uint64_t blk)
{
	struct bufio_buffer *b;
	if (!bufio_get(c, blk, &b))
		return 0;
	bufio_release(b);
	return 1;
}

void read_range(struct bufio_client *c, uint64_t from, uint64_t n, uint32_t seed)
{
	const unsigned bs = bufio_get_block_size(c);
	for (uint64_t i = from; i < from + n; i++) {
		struct bufio_buffer *b;
		void *p = bufio_read(c, i, &b);
		ck_assert_msg(p != NULL, "read %llu: %s", (unsigned long long)i, strerror(errno));
		ck_assert(check_pattern(p, bs, i, seed));
		bufio_release(b);
	}
}

void dirty_block(struct bufio_client *c, uint64_t blk, uint32_t seed)
{
	struct bufio_buffer *b;
	void *p = bufio_new(c, blk, &b);
	ck_assert_ptr_nonnull(p);
	fill_pattern(p, bufio_get_block_size(c), blk, seed);
	bufio_mark_buffer_dirty(b);
	bufio_release(b);
}
