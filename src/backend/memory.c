/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The memory backend: an anonymous mapping that behaves like a device, with
 * O_DIRECT-like alignment checks, counters, and synchronous completion on the
 * submitting thread. For tests and benchmarks only.
 */
#define _GNU_SOURCE /* O_DIRECT, fallocate, statx, pthread_setname_np */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "be_int.h"
#include "be_memory.h"

struct be_memory {
	struct bufio_backend be;
	unsigned char *data;
	size_t map_size;
	struct be_counts counts; /* updated with atomics: submitters run in parallel */
};

static const struct bufio_backend_ops memory_ops;

static struct be_memory *to_mem(struct bufio_backend *be)
{
	return be && be->ops == &memory_ops ? (struct be_memory *)be : NULL;
}

/*
 * Zero a range. Whole pages are given back with MADV_DONTNEED (a private
 * anonymous mapping then reads as zeroes), so discarding a large test device
 * really frees its memory, like a discard on a thin device.
 */
static void zero_range(struct be_memory *m, uint64_t off, uint64_t len)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t a_start = (off + page - 1) / page * page;
	uint64_t a_end = (off + len) / page * page;

	if (a_start >= a_end ||
	    madvise(m->data + a_start, (size_t)(a_end - a_start), MADV_DONTNEED) != 0) {
		memset(m->data + off, 0, (size_t)len);
		return;
	}
	memset(m->data + off, 0, (size_t)(a_start - off));
	memset(m->data + a_end, 0, (size_t)(off + len - a_end));
}

static int memory_exec(struct be_memory *m, struct bufio_io *io)
{
	int ret = be_check_io(&m->be, io);

	if (io->op <= BUFIO_OP_DISCARD) {
		/* every io with a valid op counts, failed or not: it reached the "device" */
		__atomic_fetch_add(&m->counts.ops[io->op], 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&m->counts.bytes[io->op], io->len, __ATOMIC_RELAXED);
	}
	if (ret)
		return ret < 0 ? ret : 0;
	switch (io->op) {
	case BUFIO_OP_READ:
		memcpy(io->buf, m->data + io->offset, (size_t)io->len);
		break;
	case BUFIO_OP_WRITE:
		memcpy(m->data + io->offset, io->buf, (size_t)io->len);
		break;
	case BUFIO_OP_DISCARD:
		zero_range(m, io->offset, io->len);
		break;
	case BUFIO_OP_FLUSH:
		break;
	}
	return 0;
}

static void memory_submit(struct bufio_backend *be, struct bufio_io *ios)
{
	struct be_memory *m = (struct be_memory *)be;

	__atomic_fetch_add(&m->counts.batches, 1, __ATOMIC_RELAXED);
	while (ios) {
		struct bufio_io *next = ios->next; /* ->done may free or reuse ios */

		ios->done(ios, memory_exec(m, ios));
		ios = next;
	}
}

static void memory_close(struct bufio_backend *be)
{
	struct be_memory *m = (struct be_memory *)be;

	munmap(m->data, m->map_size);
	free(m);
}

static const struct bufio_backend_ops memory_ops = {
    .submit = memory_submit,
    .close = memory_close,
};

struct bufio_backend *be_memory_create(uint64_t size, unsigned align)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	struct be_memory *m;

	if (!align)
		align = 1;
	if (!size || (align & (align - 1)) || size > (uint64_t)SIZE_MAX - page) {
		errno = EINVAL;
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		errno = ENOMEM;
		return NULL;
	}
	m->map_size = (size_t)((size + page - 1) / page * page);
	/* untouched pages cost nothing, so a 1 GiB test device is cheap */
	m->data = mmap(NULL, m->map_size, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m->data == MAP_FAILED) {
		free(m);
		errno = ENOMEM;
		return NULL;
	}
	m->be.ops = &memory_ops;
	m->be.size = size;
	m->be.align = align;
	m->be.flags = BUFIO_BE_DISCARD;
	m->be.name = "memory";
	m->be.path = "memory";
	return &m->be;
}

void *be_memory_data(struct bufio_backend *be)
{
	struct be_memory *m = to_mem(be);

	return m ? m->data : NULL;
}

void be_memory_counts(struct bufio_backend *be, struct be_counts *out)
{
	struct be_memory *m = to_mem(be);

	memset(out, 0, sizeof(*out));
	if (!m)
		return;
	for (int i = 0; i < 4; i++) {
		out->ops[i] = __atomic_load_n(&m->counts.ops[i], __ATOMIC_RELAXED);
		out->bytes[i] = __atomic_load_n(&m->counts.bytes[i], __ATOMIC_RELAXED);
	}
	out->batches = __atomic_load_n(&m->counts.batches, __ATOMIC_RELAXED);
}
