/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The calling thread's sleep hooks. Thread-local, so a FUSE worker reports
 * its waits while the background worker, the backend's threads and other
 * pools report nothing.
 */
#include <stddef.h>

#include <bufio/bufio.h>

#include "core/sleep.h"

static _Thread_local const struct bufio_sleep_hooks *hooks;
/* Waits entered and not yet left: a wait may call code that waits too. */
static _Thread_local unsigned depth;

void bufio_set_sleep_hooks(const struct bufio_sleep_hooks *h)
{
	hooks = h;
	depth = 0;
}

void sleep_begin(void)
{
	if (hooks && depth++ == 0)
		hooks->sleeping(hooks->arg);
}

void sleep_end(void)
{
	if (hooks && --depth == 0)
		hooks->woken(hooks->arg);
}
