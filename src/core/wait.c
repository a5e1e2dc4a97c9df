/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Waiting for a buffer's I/O: a futex on the buffer's own state word. The
 * B_WAITERS bit lets the completion skip the wake system call when nobody
 * sleeps, so the common case costs one atomic.
 */
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

static void futex_wait(atomic_uint *addr, unsigned val)
{
	syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(atomic_uint *addr, int n)
{
	syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/*
 * How often a contended slock is retried before sleeping. Holders keep a
 * shard for a hash insert or removal, well under a microsecond, so a short
 * spin usually wins; a holder that got preempted is not coming back within
 * any spin, and sleeping lets it run.
 */
#define SLOCK_SPINS 64

/* Tell the CPU we spin: on x86 it stops the loop hogging a hyperthread. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

void slock_lock_slow(slock_t *l)
{
	unsigned v;

	for (int i = 0; i < SLOCK_SPINS; i++) {
		cpu_relax();
		v = atomic_load_explicit(l, memory_order_relaxed);
		if (v == 0 && atomic_compare_exchange_weak_explicit(l, &v, 1, memory_order_acquire,
		                                                    memory_order_relaxed))
			return;
	}
	/* From here on we may have slept, and others may sleep too: keep
	 * the word at 2 so that our unlock wakes them. */
	while (atomic_exchange_explicit(l, 2, memory_order_acquire) != 0)
		futex_wait(l, 2);
}

void slock_wake(slock_t *l)
{
	futex_wake(l, 1);
}

void buffer_wait_clear(struct bufio_buffer *b, unsigned bits)
{
	unsigned s = atomic_load_explicit(&b->state, memory_order_acquire);

	if (!(s & bits))
		return;
	sleep_begin();
	while (s & bits) {
		if (!(s & B_WAITERS)) {
			if (!atomic_compare_exchange_weak(&b->state, &s, s | B_WAITERS))
				continue;
			s |= B_WAITERS;
		}
		futex_wait(&b->state, s);
		s = atomic_load_explicit(&b->state, memory_order_acquire);
	}
	sleep_end();
}

#define COMPLETING_WAITER (1u << 31)

void completion_begin(struct bufio_client *c)
{
	atomic_fetch_add_explicit(&c->completing, 1, memory_order_relaxed);
}

void completion_end(struct bufio_client *c)
{
	/* After this the client may be freed: only the futex key is used. */
	unsigned old = atomic_fetch_sub_explicit(&c->completing, 1, memory_order_release);
	if (old == (COMPLETING_WAITER | 1))
		futex_wake(&c->completing, INT_MAX);
}

void completions_wait(struct bufio_client *c)
{
	unsigned v = atomic_load_explicit(&c->completing, memory_order_acquire);

	if (!(v & ~COMPLETING_WAITER))
		return;
	sleep_begin();
	while (v & ~COMPLETING_WAITER) {
		if (!(v & COMPLETING_WAITER)) {
			if (!atomic_compare_exchange_weak(&c->completing, &v,
			                                  v | COMPLETING_WAITER))
				continue;
			v |= COMPLETING_WAITER;
		}
		futex_wait(&c->completing, v);
		v = atomic_load_explicit(&c->completing, memory_order_acquire);
	}
	sleep_end();
}

void buffer_clear_wake(struct bufio_buffer *b, unsigned bits)
{
	/* Clearing B_WAITERS with the bits is safe: a waiter that still needs
	 * to sleep sets it again before its futex_wait. */
	unsigned old =
	    atomic_fetch_and_explicit(&b->state, ~(bits | B_WAITERS), memory_order_acq_rel);
	if (old & B_WAITERS)
		futex_wake(&b->state, INT_MAX);
}
