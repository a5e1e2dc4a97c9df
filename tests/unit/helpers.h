/* SPDX-License-Identifier: GPL-2.0-only */
/* Shared helpers for the unit tests: patterns, temp files, threads, clients, the check runner. */
#ifndef BUFIO_TEST_HELPERS_H
#define BUFIO_TEST_HELPERS_H

#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <check.h>

#include <bufio/bufio.h>

#define MIB (1024ull * 1024)

/* Wait (not a timed assertion) for background work: true once @cond holds. */
#define WAIT_UNTIL(cond, secs)                                                                     \
	({                                                                                         \
		int ok_ = 0;                                                                       \
		for (long i_ = 0; i_ < (long)(secs)*1000 && !(ok_ = !!(cond)); i_++)               \
			usleep(1000);                                                              \
		ok_ || (cond);                                                                     \
	})

/* Fill @buf with a pattern derived from (@block, @seed); check it back. */
void fill_pattern(void *buf, size_t len, uint64_t block, uint32_t seed);
int check_pattern(const void *buf, size_t len, uint64_t block, uint32_t seed);

/* A temp file of @size bytes (sparse) under $TMPDIR; path in @path (>= 64). */
int make_temp_file(char *path, size_t path_size, uint64_t size);

/* Run @fn(arg, i) on @n threads and join them. */
void run_threads(unsigned n, void (*fn)(void *arg, unsigned idx), void *arg);

/* posix_memalign or fail the test. */
void *alloc_aligned(size_t align, size_t len);

/* Run suite @s (CK_NORMAL); EXIT_SUCCESS if every test passed. */
int run_suite(Suite *s);

/*
 * Process-wide policy back to the tests' defaults: 256 MiB budget, max age
 * 300 s, retain 256 KiB, no injected allocation failures.
 */
void reset_globals(void);

/* A memory device of @blocks blocks of @bs bytes, block i filled with pattern (i, @seed). */
struct bufio_backend *mem_with_pattern(uint64_t blocks, unsigned bs, unsigned align, uint32_t seed);

/* The memory backend's count of @op operations so far. */
uint64_t mem_ops(struct bufio_backend *m, int op);

/*
 * A client of @bs-byte blocks with write-back ratio 1000 and no dirty expiry:
 * background write-back starts only once dirty > 1000 x clean (so at the first
 * dirty buffer while nothing is clean; see anchor()).
 */
struct bufio_client *lazy_client(struct bufio_backend *be, unsigned bs);

/* Read and release the device's last block: one clean buffer, so that ratio 1000 means no
 * background write-back. */
void anchor(struct bufio_client *c);

/* A client that writes back only when asked: lazy_client() + anchor(). */
struct bufio_client *quiet_client(struct bufio_backend *be, unsigned bs);

struct bufio_stats stats(struct bufio_client *c);

/* Whether block @blk is in @c's cache (bufio_get, which does not read). */
int is_cached(struct bufio_client *c, uint64_t blk);

/* Read blocks [@from, @from + @n) and check each holds pattern (block, @seed). */
void read_range(struct bufio_client *c, uint64_t from, uint64_t n, uint32_t seed);

/* bufio_new block @blk, fill it with pattern (@blk, @seed), mark it dirty, release it. */
void dirty_block(struct bufio_client *c, uint64_t blk, uint32_t seed);

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
