/* SPDX-License-Identifier: GPL-2.0-only */
/* Shared helpers for the unit tests: patterns, temp files, threads. */
#ifndef BUFIO_TEST_HELPERS_H
#define BUFIO_TEST_HELPERS_H

#include <stddef.h>
#include <stdint.h>

/* Fill @buf with a pattern derived from (@block, @seed); check it back. */
void fill_pattern(void *buf, size_t len, uint64_t block, uint32_t seed);
int check_pattern(const void *buf, size_t len, uint64_t block, uint32_t seed);

/* A temp file of @size bytes (sparse) under $TMPDIR; path in @path (>= 64). */
int make_temp_file(char *path, size_t path_size, uint64_t size);

/* Run @fn(arg, i) on @n threads and join them. */
void run_threads(unsigned n, void (*fn)(void *arg, unsigned idx), void *arg);

/* A small xorshift PRNG, per thread. */
static inline uint64_t rnd_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

#endif
