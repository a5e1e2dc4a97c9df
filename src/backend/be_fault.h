/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The fault backend: wraps any backend and fails, delays or holds back its
 * I/O according to rules set by a test. Tests reach it only through this
 * header; no configuration can select it.
 */
#ifndef BUFIO_BE_FAULT_H
#define BUFIO_BE_FAULT_H

#include <bufio/backend.h>
#include "be_memory.h"

struct be_fault_rule {
	unsigned ops;         /* mask of (1u << BUFIO_OP_*); 0 = every op */
	uint64_t start, end;  /* byte range [start, end) an io must overlap; end 0 = all */
	uint64_t after;       /* let the first @after matching ios through */
	uint64_t count;       /* then fail at most @count of them; 0 = unlimited */
	unsigned probability; /* parts per million; 0 = every match (after @after) */
	int error;            /* negative errno to complete with; 0 = don't fail */
	unsigned delay_us;    /* added latency for matching ios (failing or not) */
	/* The submitting thread sleeps this long inside submit, and no sleep
	 * hook hears of it: a thread stuck outside libbufio's waits (memory
	 * reclaim, a page fault), as a thread pool sees it. */
	unsigned stall_us;
};

/*
 * Wrap @lower. When @own_lower is true, closing the fault backend closes
 * @lower too. Completions of delayed or held ios run on the fault backend's
 * own thread. NULL with errno ENOMEM on failure.
 *
 * An io failed by a rule never reaches @lower; without a delay it completes
 * inline, before submit returns. Rule matching in detail: top of fault.c.
 */
struct bufio_backend *be_fault_create(struct bufio_backend *lower, bool own_lower);

/* Add a rule; returns its id (>= 0) or -ENOMEM/-EINVAL. Thread-safe. */
int be_fault_add_rule(struct bufio_backend *be, const struct be_fault_rule *rule);

/* Remove every rule. Thread-safe. */
void be_fault_clear_rules(struct bufio_backend *be);

/* Number of ios failed by rules so far. */
uint64_t be_fault_injected(struct bufio_backend *be);

/*
 * Gate: while held, completions of matching-or-not ios of the given op mask
 * (0 = all) are kept back instead of delivered. Release delivers them all.
 * Lets a test observe the cache while I/O is "in flight".
 */
void be_fault_hold(struct bufio_backend *be, unsigned ops);
void be_fault_release(struct bufio_backend *be);

/* Number of ios currently kept back by the gate. */
unsigned be_fault_held(struct bufio_backend *be);

/* Counters of ios that passed through (submitted to the wrapper). */
void be_fault_counts(struct bufio_backend *be, struct be_counts *out);

#endif
