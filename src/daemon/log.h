/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Daemon logging: stderr while in the foreground or starting up, syslog once
 * daemonized. libfuse's own messages are routed through the same place.
 */
#ifndef BUFIOFS_LOG_H
#define BUFIOFS_LOG_H

#include <stdbool.h>
#include <syslog.h>

/* Start logging to stderr and take libfuse's messages. */
void fs_log_init(void);

/* From now on log to syslog (daemon facility) instead of stderr. */
void fs_log_use_syslog(void);

/* Log at a syslog priority (LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO). */
void fs_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
