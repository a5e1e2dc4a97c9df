/* SPDX-License-Identifier: GPL-2.0-only */
/* Shared helpers for the unit tests: patterns, temp files, threads. */
#include "helpers.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
