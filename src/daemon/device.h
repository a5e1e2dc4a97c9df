/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * One served device: the backing, its libbufio client and the per-device
 * settings the control directory exposes. Shared by the FUSE frontend, the
 * control registry and the daemon's lifecycle code.
 */
#ifndef BUFIOFS_DEVICE_H
#define BUFIOFS_DEVICE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <bufio/bufio.h>

enum fs_cache_mode {
	FS_CACHE_WRITEBACK = 0,    /* writes are cached and written back later */
	FS_CACHE_WRITETHROUGH = 1, /* writes are cached and written before the reply */
	FS_CACHE_NONE = 2,         /* straight to the backend: measures FUSE overhead */
};

/* What a device is made from: the config file, then the command line. */
struct fs_device_spec {
	char *name;                  /* file name under the mount point ("disk") */
	char *backing;               /* file or block device path */
	unsigned block_size;         /* bytes; default 4096 */
	enum bufio_io_engine engine; /* default BUFIO_ENGINE_AUTO */
	int direct;                  /* like bufio_backend_options.direct; default -1 */
	bool readonly;
	unsigned cache_mode;           /* enum fs_cache_mode */
	unsigned writeback_ratio;      /* default 3 */
	unsigned dirty_expire_seconds; /* default 30 */
	unsigned read_ahead_kb;        /* default 4096; 0 = no read-ahead */
	unsigned max_write_failures;   /* default 5 */
};

struct fs_device {
	struct fs_device_spec spec;
	struct bufio_backend *be;
	struct bufio_client *client;
	uint64_t size;          /* bytes served = backing size rounded down to a block */
	int lock_fd;            /* holds the exclusive lock on the backing; -1 if none */
	atomic_uint cache_mode; /* enum fs_cache_mode */
	/* Read-held by every I/O, write-held while cache_mode changes (so a
	 * switch away from writeback flushes with no write racing it). */
	pthread_rwlock_t mode_lock;
	/* Sequential read-ahead (fuse/readahead.c): the largest window, where
	 * the last read ended, how far read-ahead has been started, and the
	 * current window (grows while the reader stays sequential). */
	atomic_uint read_ahead_kb;
	_Atomic uint64_t ra_next;
	_Atomic uint64_t ra_until;
	_Atomic uint64_t ra_win;
	/* Write-failure messages: at most one a second after the first. */
	atomic_uint_fast64_t fail_logged_ms;
	atomic_uint fail_suppressed;
};

/* Fill @spec with the defaults above (name "disk", no backing). */
void fs_device_spec_defaults(struct fs_device_spec *spec);

/*
 * Switch the cache mode. Leaving writeback writes back all dirty data and
 * flushes the backing first; on failure the mode is unchanged and the error
 * (-EIO, ...) returned. Blocks.
 */
int fs_device_set_cache_mode(struct fs_device *dev, unsigned mode);

/* Write back everything and flush the backing (the `flush` action). */
int fs_device_flush(struct fs_device *dev);

/*
 * The device mode (control file `mode`): the client's (BUFIO_MODE_READ_ONLY
 * after max_write_failures consecutive failed write-back attempts, or when
 * set so), and always read-only for a readonly device. In read-only mode
 * writes and fallocate fail with EROFS, reads are served, and dirty data is
 * kept and retried in the background.
 */
static inline enum bufio_mode fs_device_mode(struct fs_device *dev)
{
	return dev->spec.readonly ? BUFIO_MODE_READ_ONLY : bufio_get_mode(dev->client);
}

#endif
