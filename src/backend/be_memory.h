/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The memory backend: a zero-filled array that behaves like a device, for
 * tests and benchmarks. It is never selectable from a configuration.
 */
#ifndef BUFIO_BE_MEMORY_H
#define BUFIO_BE_MEMORY_H

#include <bufio/backend.h>

/* Per-operation counters of a test backend (ops and bytes by enum bufio_io_op). */
struct be_counts {
	uint64_t ops[4];
	uint64_t bytes[4];
	uint64_t batches; /* submit calls */
};

/*
 * Create a memory device of @size bytes. @align (a power of two, 0 = 1) is
 * enforced on buffers, offsets and lengths like O_DIRECT would be: a
 * misaligned io completes with -EINVAL. I/O completes on the submitting
 * thread, before submit returns. NULL with errno ENOMEM/EINVAL on failure.
 */
struct bufio_backend *be_memory_create(uint64_t size, unsigned align);

/* The device contents, for checking what reached the "disk". */
void *be_memory_data(struct bufio_backend *be);

/* Snapshot of the counters (thread-safe). */
void be_memory_counts(struct bufio_backend *be, struct be_counts *out);

#endif
