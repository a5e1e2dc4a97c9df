/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Does this disk pay per segment? O_DIRECT 1 MiB writes (or reads) through
 * io_uring at a fixed queue depth, each from 1, 16 or 256 pieces picked at
 * random in 256 MiB of huge-page memory: one piece is what a contiguous
 * buffer gives the block layer, 256 what a run of 4 KiB cache blocks
 * scattered over memory gives it. Prints MB/s per combination.
 *
 * usage: bench_segments FILE [write|read] [seconds]
 * FILE is overwritten (writes) from its start, at most 1 GiB of it, and
 * must be at least 1 GiB long.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define IO_BYTES   (1u << 20)
#define POOL_BYTES (256ul << 20)
#define SPAN_BYTES (1ull << 30)
#define MAX_QD     128
#define MAX_SEGS   256

struct run {
	int fd;
	bool write;
	char *pool;
	struct io_uring ring;
	struct iovec iov[MAX_QD][MAX_SEGS];
	uint64_t next_off;
};

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Queue the next 1 MiB io in slot @slot, its @nseg pieces at random places. */
static void queue_io(struct run *r, unsigned slot, unsigned nseg)
{
	size_t piece = IO_BYTES / nseg, places = (POOL_BYTES - piece) / 4096;
	struct iovec *v = r->iov[slot];
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);

	for (unsigned s = 0; s < nseg; s++) {
		v[s].iov_base = r->pool + (size_t)(random() % (long)places) * 4096;
		v[s].iov_len = piece;
	}
	if (r->write)
		io_uring_prep_writev(sqe, r->fd, v, nseg, r->next_off);
	else
		io_uring_prep_readv(sqe, r->fd, v, nseg, r->next_off);
	io_uring_sqe_set_data64(sqe, slot);
	r->next_off = (r->next_off + IO_BYTES) % SPAN_BYTES;
}

/* MB/s of @secs seconds at queue depth @qd, @nseg pieces per io; <0 on error. */
static double measure(struct run *r, unsigned qd, unsigned nseg, double secs)
{
	uint64_t done = 0;
	double t0 = now_s(), t = t0;

	for (unsigned s = 0; s < qd; s++)
		queue_io(r, s, nseg);
	io_uring_submit(&r->ring);
	for (unsigned inflight = qd; inflight;) {
		struct io_uring_cqe *cqe;
		int ret = io_uring_wait_cqe(&r->ring, &cqe);

		if (ret < 0 || cqe->res < 0) {
			fprintf(stderr, "bench_segments: io failed: %s\n",
			        strerror(ret < 0 ? -ret : -cqe->res));
			return -1;
		}
		unsigned slot = (unsigned)io_uring_cqe_get_data64(cqe);

		io_uring_cqe_seen(&r->ring, cqe);
		done++;
		t = now_s();
		if (t - t0 < secs) {
			queue_io(r, slot, nseg);
			io_uring_submit(&r->ring);
		} else {
			inflight--;
		}
	}
	return (double)done * IO_BYTES / (t - t0) / 1e6;
}

int main(int argc, char **argv)
{
	static const unsigned depths[] = {4, 16, 128}, segs[] = {1, 16, 256};
	static struct run r;
	double secs = argc > 3 ? atof(argv[3]) : 3.0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE [write|read] [seconds]\n", argv[0]);
		return 2;
	}
	r.write = argc < 3 || strcmp(argv[2], "read") != 0;
	r.fd = open(argv[1], (r.write ? O_WRONLY : O_RDONLY) | O_DIRECT);
	if (r.fd < 0 || lseek(r.fd, 0, SEEK_END) < (off_t)SPAN_BYTES) {
		fprintf(stderr, "bench_segments: %s: %s\n", argv[1],
		        r.fd < 0 ? strerror(errno) : "shorter than 1 GiB");
		return 1;
	}
	r.pool = mmap(NULL, POOL_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r.pool == MAP_FAILED || io_uring_queue_init(MAX_QD, &r.ring, 0) < 0) {
		fprintf(stderr, "bench_segments: no memory or no io_uring\n");
		return 1;
	}
	(void)madvise(r.pool, POOL_BYTES, MADV_HUGEPAGE);
	memset(r.pool, 0x5a, POOL_BYTES);
	srandom(1);
	printf("%s, 1 MiB O_DIRECT %ss, MB/s\n", argv[1], r.write ? "write" : "read");
	printf("pieces per io");
	for (size_t d = 0; d < sizeof(depths) / sizeof(depths[0]); d++) {
		char h[16];

		snprintf(h, sizeof(h), "QD %u", depths[d]);
		printf("  %8s", h);
	}
	printf("\n");
	for (size_t s = 0; s < sizeof(segs) / sizeof(segs[0]); s++) {
		printf("%13u", segs[s]);
		for (size_t d = 0; d < sizeof(depths) / sizeof(depths[0]); d++) {
			double mbs = measure(&r, depths[d], segs[s], secs);

			if (mbs < 0)
				return 1;
			printf("  %8.0f", mbs);
			fflush(stdout);
		}
		printf("\n");
	}
	io_uring_queue_exit(&r.ring);
	close(r.fd);
	return 0;
}
