/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Request merging for the file engines, as the block layer does under a plug:
 * within one batch, reads (or writes) of adjacent byte ranges become one
 * vectored read (or write) into the callers' own buffers. A cold 1 MiB read
 * of 4 KiB blocks is one system call or SQE instead of 256, which is what
 * lets a cached device keep up with the raw one on sequential I/O.
 *
 * A short transfer goes on with the rest, as for any io (O_DIRECT reads into
 * pages not yet faulted in come back short from io_uring's non-blocking
 * attempt). The merged io completes its parts; if it fails, each part is
 * retried on its own, synchronously, so every caller still gets the error of
 * exactly its range (a bad sector fails one block, not the whole run).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/uio.h>

#include "be_int.h"

/* Bounds of one merged io: the iovec count and bytes a single call moves. */
#define MERGE_MAX_SEGS  256
#define MERGE_MAX_BYTES (1u << 20)

struct be_vec {
	struct bufio_io io; /* first: engines see a bufio_io with BE_IO_VEC */
	struct be_file *f;
	struct bufio_io *parts; /* ->next list, in offset order */
	unsigned n;
	unsigned first; /* iov[first..n) is what is left to transfer */
	char *staging;  /* the engine's staging buffer, if it uses one */
	struct iovec iov[];
};

char *be_vec_staging(const struct bufio_io *io)
{
	return ((const struct be_vec *)io)->staging;
}

void be_vec_set_staging(struct bufio_io *io, char *buf)
{
	((struct be_vec *)io)->staging = buf;
}

const struct iovec *be_vec_iov(const struct bufio_io *io, unsigned *n)
{
	const struct be_vec *v = (const struct be_vec *)io;

	*n = v->n - v->first;
	return &v->iov[v->first];
}

void be_vec_advance(struct bufio_io *io, uint64_t bytes)
{
	struct be_vec *v = (struct be_vec *)io;

	while (bytes && v->first < v->n) {
		struct iovec *iv = &v->iov[v->first];

		if (bytes < iv->iov_len) {
			iv->iov_base = (char *)iv->iov_base + bytes;
			iv->iov_len -= bytes;
			return;
		}
		bytes -= iv->iov_len;
		v->first++;
	}
}

/*
 * Complete the parts last to first: a reader that walks the run in order
 * waits on the first block, so it sleeps once for the whole run instead of
 * waking for each block while the rest are still being completed.
 */
static void vec_done(struct bufio_io *io, int res)
{
	struct be_vec *v = (struct be_vec *)io;
	struct bufio_io *p = v->parts, *rev = NULL;
	struct be_file *f = v->f;

	free(v);
	while (p) {
		struct bufio_io *next = p->next;

		p->next = rev;
		rev = p;
		p = next;
	}
	while (rev) {
		struct bufio_io *next = rev->next;

		rev->done(rev, res ? be_file_exec(f, rev) : 0);
		rev = next;
	}
}

static bool mergeable(const struct bufio_io *a, const struct bufio_io *b)
{
	return a->op == b->op && (a->op == BUFIO_OP_READ || a->op == BUFIO_OP_WRITE) &&
	       a->offset + a->len == b->offset;
}

static bool io_before(const struct bufio_io *a, const struct bufio_io *b)
{
	return a->op < b->op || (a->op == b->op && a->offset < b->offset);
}

/* Merge two sorted lists; on ties @a (the older) goes first. */
static struct bufio_io *merge_lists(struct bufio_io *a, struct bufio_io *b)
{
	struct bufio_io *out = NULL, **ot = &out;

	while (a && b) {
		struct bufio_io **pick = io_before(b, a) ? &b : &a;

		*ot = *pick;
		ot = &(*pick)->next;
		*pick = (*pick)->next;
	}
	*ot = a ? a : b;
	return out;
}

/*
 * Stable natural merge sort of a ->next list by (op, offset). Concurrent
 * sequential writers leave their blocks in long ascending runs, so the list
 * is cut into its runs, which are merged like a binary counter: level i
 * holds 2^i runs merged.
 */
static struct bufio_io *sort_ios(struct bufio_io *l)
{
	struct bufio_io *level[64] = {NULL}, *out = NULL;

	while (l) {
		struct bufio_io *run = l, *carry;
		unsigned i = 0;

		while (l->next && !io_before(l->next, l))
			l = l->next;
		carry = run;
		run = l->next;
		l->next = NULL;
		l = run;
		for (; i < 63 && level[i]; i++) {
			carry = merge_lists(level[i], carry);
			level[i] = NULL;
		}
		level[i] = i == 63 && level[i] ? merge_lists(level[i], carry) : carry;
	}
	for (unsigned i = 0; i < 64; i++)
		if (level[i])
			out = merge_lists(level[i], out);
	return out;
}

/* Length of the mergeable run starting at @io, within the bounds. */
static unsigned run_length(const struct bufio_io *io, uint64_t max_bytes)
{
	unsigned n = 1;
	uint64_t bytes = io->len;

	while (io->next && mergeable(io, io->next) && n < MERGE_MAX_SEGS &&
	       bytes + io->next->len <= max_bytes) {
		io = io->next;
		bytes += io->len;
		n++;
	}
	return n;
}

/* Build the merged io for the @n ios from @first. NULL when out of memory. */
static struct bufio_io *make_vec(struct be_file *f, struct bufio_io *first, unsigned n)
{
	struct be_vec *v = malloc(sizeof(*v) + n * sizeof(v->iov[0]));
	struct bufio_io *p = first;

	if (!v)
		return NULL;
	v->f = f;
	v->parts = first;
	v->first = 0;
	v->staging = NULL;
	v->io = (struct bufio_io){
	    .offset = first->offset,
	    .done = vec_done,
	    .op = (uint8_t)(first->op | BE_IO_VEC),
	};
	v->n = 0;
	for (unsigned i = 0; i < n; i++, p = p->next) {
		struct iovec *last = v->n ? &v->iov[v->n - 1] : NULL;

		/* Neighbours in memory too (see bufio_expect_new): one entry. */
		if (last && (char *)last->iov_base + last->iov_len == (char *)p->buf) {
			last->iov_len += p->len;
		} else {
			v->iov[v->n].iov_base = p->buf;
			v->iov[v->n].iov_len = p->len;
			v->n++;
		}
		v->io.len += p->len;
	}
	return &v->io;
}

struct bufio_io *be_merge(struct be_file *f, struct bufio_io *ios)
{
	struct bufio_io *out = NULL, **tail = &out;
	uint64_t max_bytes = f->max_xfer < MERGE_MAX_BYTES ? f->max_xfer : MERGE_MAX_BYTES;

	if (!ios || !ios->next)
		return ios;
	ios = sort_ios(ios);
	while (ios) {
		unsigned n = run_length(ios, max_bytes);
		struct bufio_io *last = ios, *rest, *m = NULL;

		for (unsigned i = 1; i < n; i++)
			last = last->next;
		rest = last->next;
		if (n > 1) {
			last->next = NULL; /* the parts' own list */
			m = make_vec(f, ios, n);
			if (!m)
				last->next = rest; /* no memory: issue them one by one */
		}
		if (m) {
			*tail = m;
			tail = &m->next;
		} else {
			*tail = ios;
			tail = &last->next;
		}
		ios = rest;
	}
	*tail = NULL;
	return out;
}
