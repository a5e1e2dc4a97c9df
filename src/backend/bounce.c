/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Staging buffers for scattered merged reads. A merged read of 4 KiB cache
 * blocks lands in blocks scattered over the cache's memory, so the kernel
 * builds a request of one segment per block, at most max_segments of them
 * (254 for virtio-blk). Some devices pay per segment: on the virtio disk of
 * the development VM a 1 MiB read of 256 scattered pages took 4-6 ms at
 * queue depth 8, the same read into one huge page 0.5-1 ms. Reading into a
 * contiguous, huge-page-backed staging buffer and copying out costs a memcpy
 * of the data; it took cold 1 MiB streaming reads from 1.38-1.45 to
 * 1.60-2.03 GB/s there.
 *
 * A pool is mapped on first use (a device that never streams pays
 * nothing), touched once so no fault is taken on the I/O path, and kept
 * until the backend closes. How many buffers it gets is decided then, from
 * the cache budget in force and what other pools already hold.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include <bufio/bufio.h>

#include "be_int.h"

#define HUGE (2u << 20)

/* Buffers mapped by every pool of the process; see be_bounce_mapped(). */
static atomic_uint mapped_total;

/*
 * How many buffers a pool wanting @want may map now: one per 64 MiB of the
 * cache budget in force for the whole process, so that staging stays a small
 * share of what the cache may use whatever the number of backends.
 */
static unsigned take_share(unsigned want)
{
	uint64_t cap = bufio_get_effective_cache_size() / (64u << 20);
	unsigned max = cap < BE_BOUNCE_MAX ? (unsigned)cap : BE_BOUNCE_MAX;
	unsigned cur = atomic_load(&mapped_total), n;

	do {
		n = cur < max ? max - cur : 0;
		n = n < want ? n : want;
	} while (n && !atomic_compare_exchange_weak(&mapped_total, &cur, cur + n));
	return n;
}

unsigned be_bounce_mapped(void)
{
	return atomic_load(&mapped_total);
}

void be_bounce_init(struct be_bounce *b, unsigned n)
{
	memset(b, 0, sizeof(*b));
	pthread_mutex_init(&b->lock, NULL);
	b->want = n < BE_BOUNCE_MAX ? n : BE_BOUNCE_MAX;
}

/* Map the pool, 2 MiB-aligned so each buffer sits inside one huge page. */
static bool bounce_map(struct be_bounce *b)
{
	unsigned n = take_share(b->want);
	size_t len = (size_t)n * BE_BOUNCE_BYTES, map = len + HUGE;
	char *p, *base;

	b->tried = true;
	if (!n)
		return false;
	p = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		atomic_fetch_sub(&mapped_total, n);
		return false;
	}
	base = (char *)(((uintptr_t)p + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
	if (base > p)
		munmap(p, (size_t)(base - p));
	if (p + map > base + len)
		munmap(base + len, (size_t)(p + map - (base + len)));
	/* Without huge pages the buffers still cut the segment count where
	 * the kernel hands out adjacent pages; a failed madvise is no error. */
	(void)madvise(base, len, MADV_HUGEPAGE);
	memset(base, 0, len);
	b->mem = base;
	b->nmapped = n;
	for (unsigned i = 0; i < n; i++)
		b->free[b->nfree++] = base + (size_t)i * BE_BOUNCE_BYTES;
	return true;
}

/* Pieces of @iov that do not continue the previous one in memory. */
static unsigned pieces(const struct iovec *iov, unsigned n)
{
	unsigned k = n ? 1 : 0;

	for (unsigned i = 1; i < n; i++)
		k += (const char *)iov[i - 1].iov_base + iov[i - 1].iov_len != iov[i].iov_base;
	return k;
}

char *be_bounce_get(struct be_bounce *b, const struct iovec *iov, unsigned n, uint64_t len)
{
	if (!b->want || len > BE_BOUNCE_BYTES || n < BE_BOUNCE_MIN_PIECES)
		return NULL;
	if (pieces(iov, n) < BE_BOUNCE_MIN_PIECES)
		return NULL; /* already few segments: a copy would buy nothing */
	char *buf = NULL;

	pthread_mutex_lock(&b->lock);
	if (b->mem || (!b->tried && bounce_map(b)))
		buf = b->nfree ? b->free[--b->nfree] : NULL;
	pthread_mutex_unlock(&b->lock);
	return buf;
}

void be_bounce_put(struct be_bounce *b, char *buf)
{
	pthread_mutex_lock(&b->lock);
	b->free[b->nfree++] = buf;
	pthread_mutex_unlock(&b->lock);
}

void be_bounce_scatter(const struct iovec *iov, unsigned n, const char *src, uint64_t len)
{
	for (unsigned i = 0; i < n && len; i++) {
		size_t c = iov[i].iov_len < len ? iov[i].iov_len : (size_t)len;

		memcpy(iov[i].iov_base, src, c);
		src += c;
		len -= c;
	}
}

void be_bounce_destroy(struct be_bounce *b)
{
	if (b->mem) {
		munmap(b->mem, (size_t)b->nmapped * BE_BOUNCE_BYTES);
		atomic_fetch_sub(&mapped_total, b->nmapped);
	}
	b->mem = NULL;
	pthread_mutex_destroy(&b->lock);
}
