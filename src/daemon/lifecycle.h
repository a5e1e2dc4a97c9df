/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Bringing a served device up and down (lock, backend, cache client) and the
 * process-level steps around the mount: daemonizing, signals, the demo image.
 */
#ifndef BUFIOFS_LIFECYCLE_H
#define BUFIOFS_LIFECYCLE_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon/config.h"
#include "daemon/device.h"

struct fuse_session;

/*
 * Take an exclusive lock on the backing at @path so that a second bufiofs
 * (or, for a block device, a mount) cannot use it at the same time. Returns
 * the fd holding the lock, or -errno with a message in @err (-EBUSY when
 * someone else has it, -EINVAL when @path is neither a regular file nor a
 * block device). Never blocks, not even on a FIFO.
 */
int fs_lock_backing(const char *path, bool readonly, char *err, size_t errlen);

/*
 * Open @spec as @dev: lock, backend, libbufio client, per-device settings.
 * Returns 0 or -errno with a message in @err; @dev is then left closed.
 */
int fs_device_open(struct fs_device *dev, const struct fs_device_spec *spec, char *err,
                   size_t errlen);

/*
 * Write back everything, destroy the client, close the backend, drop the
 * lock. Returns the final write-back's error (0 when all data is on the
 * backing).
 */
int fs_device_close(struct fs_device *dev);

/*
 * Detach from the terminal unless @foreground: the parent stays until
 * fs_daemon_ready() and exits with the status given there, so start-up
 * errors still reach the caller's shell. Call before creating any thread.
 * *@status_fd is the pipe to report on (-1 in the foreground).
 */
int fs_daemon_start(bool foreground, int *status_fd);

/*
 * Report start-up done (@status 0: logging moves to syslog and stdio is
 * detached) or failed (@status is the parent's exit status). No-op in the
 * foreground or when already reported.
 */
void fs_daemon_ready(int *status_fd, int status);

/*
 * Block SIGTERM, SIGINT and SIGHUP in every thread created from now on and
 * handle them in a dedicated thread: TERM/INT end the session loop, HUP
 * reloads the tunables from the config. Call before creating threads.
 */
struct fs_signals;
int fs_signals_block(void);
struct fs_loop;
struct fs_signals *fs_signals_start(struct fuse_session *se, struct fs_loop *loop,
                                    struct fs_config *cfg, struct fs_device **devs, unsigned ndevs);
/* After the loop returned: stop the signal thread and free @s. */
void fs_signals_stop(struct fs_signals *s);

/*
 * --demo: give @cfg's device without a backing a sparse 1 GiB image in the
 * state directory (created if absent) and create the mount point if absent.
 */
int fs_demo_prepare(struct fs_config *cfg, char *err, size_t errlen);

#endif
