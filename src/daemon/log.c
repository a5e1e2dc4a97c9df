/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Daemon logging to stderr or syslog. The destination is chosen once, before
 * any worker thread exists, so it needs no lock.
 */
#include <stdarg.h>
#include <stdio.h>

#define FUSE_USE_VERSION 35
#include <fuse_log.h>

#include "daemon/log.h"

static bool to_syslog;

static void vlog(int prio, const char *fmt, va_list ap)
{
	if (to_syslog) {
		vsyslog(prio, fmt, ap);
		return;
	}
	fputs("bufiofs: ", stderr);
	/* Every caller va_starts ap; the analyzer loses it on x86-64's va_list. */
	// NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void fs_log(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(prio, fmt, ap);
	va_end(ap);
}

/* libfuse messages end with a newline already and carry their own prefix. */
static void fuse_msg(enum fuse_log_level level, const char *fmt, va_list ap)
{
	if (to_syslog) {
		vsyslog((int)level, fmt, ap);
		return;
	}
	vfprintf(stderr, fmt, ap);
}

void fs_log_init(void)
{
	fuse_set_log_func(fuse_msg);
}

void fs_log_use_syslog(void)
{
	openlog("bufiofs", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	to_syslog = true;
}
