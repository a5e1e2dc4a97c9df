/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Microbenchmark of libbufio: cost of a cache hit (1 and 2 threads), backing
 * read throughput through the cache against direct pread, and metadata bytes
 * per cached buffer. Prints numbers; asserts nothing. See bench/README.md.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bufio/bufio.h>
#include "backend/be_memory.h"

#define MIB (1024ull * 1024)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void die(const char *what)
{
	fprintf(stderr, "bench_cache: %s: %s\n", what, strerror(errno));
	exit(1);
}

/*---------------------------------------------------------------- hits */

#define DEV_BLOCKS (1u << 18) /* 1 GiB of 4 KiB blocks, never touched: calloc'd */

/* Blocks each thread cycles over (a power of two): 2048 stays in the L2 of
 * a core, 32768 is a cache of realistic size. */
static unsigned hot_per_thread = 2048;

struct hit_arg {
	struct bufio_client *c;
	const uint64_t *blocks; /* hot_per_thread random block numbers */
	uint64_t iters;
	int use_read;
	pthread_barrier_t *start;
	double t0, t1;
	uint64_t sink;
};

static void *hit_thread(void *p)
{
	struct hit_arg *a = p;
	struct bufio_buffer *b;
	pthread_barrier_wait(a->start);
	a->t0 = now_s();
	for (uint64_t i = 0; i < a->iters; i++) {
		uint64_t blk = a->blocks[i & (hot_per_thread - 1)];
		unsigned char *d =
		    a->use_read ? bufio_read(a->c, blk, &b) : bufio_get(a->c, blk, &b);
		if (__builtin_expect(!d, 0)) {
			fprintf(stderr, "bench_cache: block %llu not cached\n",
			        (unsigned long long)blk);
			exit(1);
		}
		a->sink += d[0];
		bufio_release(b);
	}
	a->t1 = now_s();
	return NULL;
}

/* Aggregate ops per second over @n threads doing @iters each. */
static double run_hits(struct bufio_client *c, uint64_t *const *sets, unsigned n, uint64_t iters,
                       int use_read)
{
	struct hit_arg a[2];
	pthread_t tid[2];
	if (n == 0 || n > sizeof(a) / sizeof(a[0]))
		return 0; /* callers run 1 or 2 threads */
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, n);
	for (unsigned t = 0; t < n; t++) {
		a[t] = (struct hit_arg){
		    .c = c, .blocks = sets[t], .iters = iters, .use_read = use_read, .start = &bar};
		pthread_create(&tid[t], NULL, hit_thread, &a[t]);
	}
	for (unsigned t = 0; t < n; t++)
		pthread_join(tid[t], NULL);
	pthread_barrier_destroy(&bar);
	double t0 = a[0].t0, t1 = a[0].t1;
	for (unsigned t = 1; t < n; t++) {
		t0 = a[t].t0 < t0 ? a[t].t0 : t0;
		t1 = a[t].t1 > t1 ? a[t].t1 : t1;
	}
	return (double)iters * n / (t1 - t0);
}

static void bench_hits(unsigned hot)
{
	hot_per_thread = hot;
	printf("hot set: %u blocks per thread\n", hot);
	const unsigned bs = 4096;
	struct bufio_backend *m = be_memory_create((uint64_t)DEV_BLOCKS * bs, 0);
	if (!m)
		die("memory backend");
	struct bufio_client *c = bufio_client_create(m, bs, 2, 0, NULL, NULL);
	if (!c)
		die("client");
	/* two disjoint hot sets spread randomly over the device */
	uint64_t *sets[2];
	uint64_t rs = 0x5eed;
	unsigned char *taken = calloc(DEV_BLOCKS, 1);
	for (unsigned t = 0; t < 2; t++) {
		sets[t] = malloc(hot_per_thread * sizeof(uint64_t));
		for (unsigned i = 0; i < hot_per_thread; i++) {
			uint64_t blk;
			do
				blk = xorshift(&rs) % DEV_BLOCKS;
			while (taken[blk]);
			taken[blk] = 1;
			sets[t][i] = blk;
			struct bufio_buffer *b;
			if (!bufio_read(c, blk, &b))
				die("warm-up read");
			bufio_release(b);
		}
	}
	free(taken);

	const uint64_t iters = 4000000;
	const char *names[2] = {"get+release", "read+release"};
	for (int r = 0; r < 2; r++) {
		/* best of 3, after a warm-up: the machine is shared and noisy */
		run_hits(c, sets, 1, iters / 4, r);
		double one = 0, two = 0;
		for (int k = 0; k < 3; k++) {
			double x = run_hits(c, sets, 1, iters, r);
			double y = run_hits(c, sets, 2, iters, r);
			one = x > one ? x : one;
			two = y > two ? y : two;
		}
		printf("hit %-13s 1 thread : %7.1f ns/op  %6.2f Mops/s\n", names[r], 1e9 / one,
		       one / 1e6);
		printf("hit %-13s 2 threads: %7.1f ns/op  %6.2f Mops/s aggregate  scaling %.2fx\n",
		       names[r], 2e9 / two, two / 1e6, two / one);
	}
	struct bufio_stats st;
	bufio_get_stats(c, &st);
	printf("  (hits %llu, misses %llu)\n", (unsigned long long)st.hits,
	       (unsigned long long)st.misses);
	bufio_client_destroy(c);
	bufio_backend_close(m);
	free(sets[0]);
	free(sets[1]);
}

/*
 * The machine's own ceiling: two locked read-modify-writes per op on lines
 * private to each thread (what a hold and a release cost at the least). On
 * some virtual machines even this does not scale to two cores.
 */
struct base_arg {
	_Atomic unsigned *words;
	uint64_t iters;
	double t0, t1;
};

static void *base_thread(void *p)
{
	struct base_arg *a = p;
	a->t0 = now_s();
	for (uint64_t i = 0; i < a->iters; i++) {
		_Atomic unsigned *w = &a->words[(i * 16) & 4095];
		atomic_fetch_add(w, 1);
		atomic_fetch_sub(w, 1);
	}
	a->t1 = now_s();
	return NULL;
}

static double run_base(unsigned n, uint64_t iters)
{
	struct base_arg a[2];
	pthread_t tid[2];
	for (unsigned t = 0; t < n; t++) {
		a[t] = (struct base_arg){.words = aligned_alloc(64, 4096 * sizeof(unsigned)),
		                         .iters = iters};
		memset((void *)a[t].words, 0, 4096 * sizeof(unsigned));
		pthread_create(&tid[t], NULL, base_thread, &a[t]);
	}
	double t0 = 1e30, t1 = 0;
	for (unsigned t = 0; t < n; t++) {
		pthread_join(tid[t], NULL);
		t0 = a[t].t0 < t0 ? a[t].t0 : t0;
		t1 = a[t].t1 > t1 ? a[t].t1 : t1;
		free((void *)a[t].words);
	}
	return (double)iters * n / (t1 - t0);
}

static void bench_atomic_baseline(void)
{
	double one = 0, two = 0;
	for (int k = 0; k < 3; k++) {
		double x = run_base(1, 20000000), y = run_base(2, 20000000);
		one = x > one ? x : one;
		two = y > two ? y : two;
	}
	printf("machine baseline, 2 locked RMWs per op on private lines: 1 thread %.1f ns/op, "
	       "2 threads scaling %.2fx\n",
	       1e9 / one, two / one);
}

/*---------------------------------------------------------------- throughput */

static int make_file(const char *path, uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -1;
	unsigned char *buf = malloc(MIB);
	uint64_t rs = 0xf11e;
	for (uint64_t off = 0; off < size; off += MIB) {
		for (size_t i = 0; i < MIB; i += 8) {
			uint64_t v = xorshift(&rs);
			memcpy(buf + i, &v, 8);
		}
		if (pwrite(fd, buf, MIB, (off_t)off) != (ssize_t)MIB) {
			free(buf);
			close(fd);
			return -1;
		}
	}
	free(buf);
	fsync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
	return 0;
}

static void drop_page_cache(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd >= 0) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
}

/* Sequential pread of the whole file in @chunk pieces; MB/s, or -1. */
static double direct_read(const char *path, uint64_t size, size_t chunk, const char **mode)
{
	drop_page_cache(path);
	int fd = open(path, O_RDONLY | O_DIRECT);
	*mode = "O_DIRECT";
	if (fd < 0) {
		fd = open(path, O_RDONLY);
		*mode = "buffered (no O_DIRECT)";
	}
	if (fd < 0)
		return -1;
	void *buf;
	if (posix_memalign(&buf, 4096, chunk)) {
		close(fd);
		return -1;
	}
	double t0 = now_s();
	for (uint64_t off = 0; off < size; off += chunk)
		if (pread(fd, buf, chunk, (off_t)off) != (ssize_t)chunk) {
			free(buf);
			close(fd);
			return -1;
		}
	double t = now_s() - t0;
	free(buf);
	close(fd);
	return (double)size / (double)MIB / t;
}

/* Cold sequential bufio_read of every block, prefetching @window ahead. */
static double cache_read(const char *path, uint64_t size, unsigned bs, unsigned window,
                         const struct bufio_backend_options *opts, const char **engine, int *direct)
{
	drop_page_cache(path);
	struct bufio_backend *be = bufio_backend_open(path, opts);
	if (!be)
		return -1;
	*engine = be->name;
	*direct = !!(be->flags & BUFIO_BE_DIRECT);
	struct bufio_client *c = bufio_client_create(be, bs, 2, 0, NULL, NULL);
	if (!c) {
		bufio_backend_close(be);
		return -1;
	}
	uint64_t n = bufio_get_device_size(c), sum = 0;
	double t0 = now_s();
	bufio_prefetch(c, 0, window);
	for (uint64_t blk = 0; blk < n; blk++) {
		if (blk % (window / 2) == 0)
			bufio_prefetch(c, blk + window / 2, window / 2);
		struct bufio_buffer *b;
		unsigned char *d = bufio_read(c, blk, &b);
		if (!d) {
			fprintf(stderr, "bench_cache: read %llu: %s\n", (unsigned long long)blk,
			        strerror(errno));
			break;
		}
		sum += d[0];
		bufio_release(b);
	}
	double t = now_s() - t0;
	struct bufio_stats st;
	bufio_get_stats(c, &st);
	printf("  (bs %u: %llu backend reads, %llu by prefetch, %llu hits, sum %llu)\n", bs,
	       (unsigned long long)st.reads, (unsigned long long)st.prefetches,
	       (unsigned long long)st.hits, (unsigned long long)(sum & 0xff));
	bufio_client_destroy(c);
	bufio_backend_close(be);
	return (double)size / (double)MIB / t;
}

static void bench_throughput(void)
{
	const uint64_t size = 512 * MIB;
	const char *dir = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "/var/tmp";
	char path[512];
	snprintf(path, sizeof(path), "%s/bench_cache.%d", dir, (int)getpid());
	if (make_file(path, size)) {
		fprintf(stderr, "bench_cache: cannot create %s: %s; skipping throughput\n", path,
		        strerror(errno));
		unlink(path);
		return;
	}
	const char *mode, *engine = "?";
	int direct = 0;
	double d1m = direct_read(path, size, MIB, &mode);
	double d64k = direct_read(path, size, (size_t)64 * 1024, &mode);
	double d4k = direct_read(path, size, 4096, &mode);
	printf("direct pread %s, 512 MiB sequential: 1 MiB chunks %.0f MB/s, 64 KiB %.0f MB/s, "
	       "4 KiB %.0f MB/s\n",
	       mode, d1m, d64k, d4k);
	/* O_DIRECT where possible: the fair comparison with the direct pread */
	const struct bufio_backend_options dio = {.engine = BUFIO_ENGINE_AUTO, .direct = -1};
	double c64k = cache_read(path, size, 64 * 1024, 64, &dio, &engine, &direct);
	double c4k = cache_read(path, size, 4096, 512, &dio, &engine, &direct);
	printf("through the cache (engine %s%s), cold bufio_read + prefetch: 64 KiB blocks "
	       "%.0f MB/s (%.2fx the 64 KiB pread), 4 KiB blocks %.0f MB/s (%.2fx the 4 KiB "
	       "pread)\n",
	       engine, direct ? ", O_DIRECT" : ", buffered", c64k, c64k / d64k, c4k, c4k / d4k);
	const struct bufio_backend_options thr = {.engine = BUFIO_ENGINE_THREADS, .direct = -1};
	c64k = cache_read(path, size, 64 * 1024, 64, &thr, &engine, &direct);
	printf("through the cache (engine %s%s), 64 KiB blocks %.0f MB/s\n", engine,
	       direct ? ", O_DIRECT" : ", buffered", c64k);
	/* the default options (NULL), whatever they choose */
	c64k = cache_read(path, size, 64 * 1024, 64, NULL, &engine, &direct);
	printf("through the cache, default options (engine %s%s), 64 KiB blocks %.0f MB/s\n",
	       engine, direct ? ", O_DIRECT" : ", buffered", c64k);
	unlink(path);
}

/*---------------------------------------------------------------- metadata */

static uint64_t rss_bytes(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Bytes in use by malloc (small chunks and mmapped ones). */
static uint64_t malloc_bytes(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

/* Bytes malloc got from the system: in use plus free fragments. */
static uint64_t malloc_system_bytes(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.arena + mi.hblkhd;
}

static void per_buffer(const char *what, int64_t delta, uint64_t data, uint64_t n)
{
	if (delta >= (int64_t)data)
		printf("  %-22s +%.1f MiB: %.1f B/buffer beyond the block data\n", what,
		       (double)delta / (double)MIB, (double)(delta - (int64_t)data) / (double)n);
	else
		printf("  %-22s +%.1f MiB: less than the data, so data lives elsewhere; "
		       "%.1f B/buffer in total\n",
		       what, (double)delta / (double)MIB, (double)delta / (double)n);
}

static void bench_metadata(void)
{
	const unsigned bs = 4096;
	const uint64_t n = 100000;
	struct bufio_backend *m = be_memory_create(n * bs, 0);
	if (!m)
		die("memory backend");
	struct bufio_client *c = bufio_client_create(m, bs, 1, 0, NULL, NULL);
	if (!c)
		die("client");
	/* fault the device in first, so that RSS grows by the cache alone */
	memset(be_memory_data(m), 0x5a, n * bs);
	uint64_t rss0 = rss_bytes(), mal0 = malloc_bytes(), cur0 = bufio_get_current_allocated();
	uint64_t sys0 = malloc_system_bytes();
	for (uint64_t i = 0; i < n; i++) {
		struct bufio_buffer *b;
		if (!bufio_read(c, i, &b))
			die("read");
		bufio_release(b);
	}
	uint64_t rss1 = rss_bytes(), mal1 = malloc_bytes(), cur1 = bufio_get_current_allocated();
	uint64_t sys1 = malloc_system_bytes();
	struct bufio_stats st;
	bufio_get_stats(c, &st);
	printf("metadata, %llu cached 4 KiB buffers (%llu cached, %.1f MiB of data counted by "
	       "the core):\n",
	       (unsigned long long)n,
	       (unsigned long long)st.buffers_clean + (unsigned long long)st.buffers_dirty,
	       (double)(cur1 - cur0) / (double)MIB);
	per_buffer("malloc (mallinfo2)", (int64_t)(mal1 - mal0), n * bs, n);
	/* aligned allocations can leave a free fragment beside every block */
	per_buffer("malloc from the system", (int64_t)(sys1 - sys0), n * bs, n);
	per_buffer("RSS", (int64_t)(rss1 - rss0), n * bs, n);
	printf("  bufio_metadata_per_buffer(): %zu B\n", bufio_metadata_per_buffer(c));
	bufio_client_destroy(c);
	bufio_backend_close(m);
}

int main(int argc, char **argv)
{
	const char *only = argc > 1 ? argv[1] : NULL;
	/* everything cached stays cached: the default 2% of RAM may be too small */
	bufio_set_max_cache_size(2048 * MIB);
	printf("bufio %s bench_cache (%ld CPUs online)\n", BUFIO_VERSION,
	       sysconf(_SC_NPROCESSORS_ONLN));
	if (!only || !strcmp(only, "hits")) {
		bench_atomic_baseline();
		bench_hits(2048);
		bench_hits(32768);
	}
	if (!only || !strcmp(only, "metadata"))
		bench_metadata();
	bufio_set_max_cache_size(256 * MIB);
	if (!only || !strcmp(only, "throughput"))
		bench_throughput();
	return 0;
}
