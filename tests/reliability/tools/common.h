/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers shared by the crash-consistency tools: a seeded random stream, a
 * 64-bit checksum, and an append-only text log that is made durable with
 * fsync before anything it says is relied on.
 */
#ifndef RELIABILITY_TOOLS_COMMON_H
#define RELIABILITY_TOOLS_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Exit status for usage and set-up errors (not a verification failure). */
#define EXIT_SETUP 2

static inline void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EXIT_SETUP);
}

/* splitmix64: a good 64-bit mix, and a random stream when stepped. */
static inline uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static inline uint64_t rnd_next(uint64_t *state)
{
	*state += 0x9e3779b97f4a7c15ULL;
	return mix64(*state);
}

/* Uniform enough in [0, n) for test workloads; n > 0. */
static inline uint64_t rnd_below(uint64_t *state, uint64_t n)
{
	return rnd_next(state) % n;
}

/* Fill @len bytes at @p from the stream seeded by @seed. */
static inline void fill_random(void *p, size_t len, uint64_t seed)
{
	unsigned char *c = p;
	uint64_t st = seed, w;

	while (len >= 8) {
		w = rnd_next(&st);
		memcpy(c, &w, 8);
		c += 8;
		len -= 8;
	}
	if (len) {
		w = rnd_next(&st);
		memcpy(c, &w, len);
	}
}

/* Checksum of @len bytes: every byte and its position count. */
static inline uint64_t checksum64(const void *p, size_t len)
{
	const unsigned char *c = p;
	uint64_t h = 0x6a09e667f3bcc908ULL ^ len, w;

	while (len >= 8) {
		memcpy(&w, c, 8);
		h = mix64(h ^ w);
		c += 8;
		len -= 8;
	}
	while (len--)
		h = mix64(h ^ *c++);
	return h;
}

/* Seconds on the monotonic clock. */
static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Write all of @buf (retrying short writes); 0 or -errno. */
static inline int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Append @text to the log and fsync it; dies when the log cannot be made
 * durable (that would make the test, not the cache, unreliable). */
static inline void log_durable(int fd, const char *text, size_t len)
{
	int err = write_all(fd, text, len);

	if (!err && fsync(fd) != 0)
		err = -errno;
	if (err)
		die("cannot append to the log: %s", strerror(-err));
}

/* Parse an unsigned number with an optional K/M/G suffix; dies if malformed. */
static inline uint64_t parse_u64(const char *what, const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		die("%s: not a number: '%s'", what, s);
	switch (*end) {
	case 'K':
		v <<= 10;
		end++;
		break;
	case 'M':
		v <<= 20;
		end++;
		break;
	case 'G':
		v <<= 30;
		end++;
		break;
	default:
		break;
	}
	if (*end)
		die("%s: not a number: '%s'", what, s);
	return v;
}

#endif
