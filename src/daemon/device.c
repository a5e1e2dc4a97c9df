/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A served device's life: opening the backing under an exclusive lock,
 * creating its libbufio client, switching cache modes, flushing, and the
 * final write-back when the daemon stops.
 */
#define _GNU_SOURCE /* pthread_rwlockattr_setkind_np */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef BUFIOFS_FAULT_INJECT
#include "backend/be_fault.h"
#endif
#include "daemon/device.h"
#include "daemon/lifecycle.h"
#include "daemon/log.h"

/* Largest FUSE request, in bytes: one request may hold that many blocks. */
#define FS_DEVICE_MAX_IO (1u << 20)

int fs_device_set_cache_mode(struct fs_device *dev, unsigned mode)
{
	unsigned old;
	int err = 0;

	if (mode > FS_CACHE_NONE)
		return -EINVAL;
	/* Waits for every request in progress; none starts until we are done. */
	pthread_rwlock_wrlock(&dev->mode_lock);
	old = atomic_load(&dev->cache_mode);
	if (old == mode)
		goto out;
	/* Leaving writeback (or entering none): nothing dirty may stay behind. */
	if (old == FS_CACHE_WRITEBACK || mode == FS_CACHE_NONE) {
		err = bufio_write_dirty_buffers(dev->client);
		if (err) {
			fs_log(LOG_ERR, "%s: cache_mode %u -> %u: write-back failed: %s",
			       dev->spec.name, old, mode, strerror(-err));
			goto out;
		}
	}
	/*
	 * Mode none bypasses the cache, so cached copies go stale: drop them
	 * on the way in (memory back) and on the way out (correctness).
	 */
	if (mode == FS_CACHE_NONE || old == FS_CACHE_NONE)
		bufio_drop_clean(dev->client);
	atomic_store(&dev->cache_mode, mode);
out:
	pthread_rwlock_unlock(&dev->mode_lock);
	return err;
}

int fs_device_flush(struct fs_device *dev)
{
	return bufio_write_dirty_buffers(dev->client);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * A failed attempt is logged at once when it starts a run of failures, then
 * at most once a second: fsync in a loop on a dead backing must not flood
 * the log.
 */
static void log_write_failed(struct fs_device *dev, const struct bufio_event *ev)
{
	uint64_t now = now_ms(), last = atomic_load(&dev->fail_logged_ms);
	unsigned limit = bufio_get_max_write_failures(dev->client), skipped;
	char left[64] = "";

	if (ev->failures > 1 && now - last < 1000) {
		atomic_fetch_add(&dev->fail_suppressed, 1);
		return;
	}
	atomic_store(&dev->fail_logged_ms, now);
	skipped = atomic_exchange(&dev->fail_suppressed, 0);
	if (limit && ev->failures < limit)
		snprintf(left, sizeof(left), " of %u before read-only", limit);
	fs_log(LOG_ERR,
	       "%s: write-back to %s failed: %s (at byte %llu); the data stays dirty, retried "
	       "in %u s (failed attempt %u%s)%s",
	       dev->spec.name, dev->spec.backing, strerror(-ev->error),
	       (unsigned long long)ev->offset, ev->retry_seconds, ev->failures, left,
	       skipped ? "; more failures not logged" : "");
}

/* libbufio's events: write-back failures, recovery and mode changes. */
static void on_event(struct bufio_client *c, const struct bufio_event *ev, void *arg)
{
	struct fs_device *dev = arg;

	switch (ev->type) {
	case BUFIO_EV_WRITE_FAILED:
		log_write_failed(dev, ev);
		break;
	case BUFIO_EV_WRITE_RECOVERED:
		fs_log(LOG_NOTICE, "%s: write-back to %s works again after %u failed attempts",
		       dev->spec.name, dev->spec.backing, ev->failures);
		break;
	case BUFIO_EV_MODE:
		if (ev->new_mode == BUFIO_MODE_READ_ONLY) {
			char why[80] = "on request";

			if (ev->failures)
				snprintf(why, sizeof(why),
				         "after %u consecutive failed write-back attempts",
				         ev->failures);
			fs_log(LOG_ERR,
			       "%s: now read-only %s: writes fail with EROFS, reads are served, "
			       "dirty data is kept and retried; once %s works again: "
			       "echo write > control/%s/mode",
			       dev->spec.name, why, dev->spec.backing, dev->spec.name);
		} else {
			fs_log(LOG_NOTICE, "%s: back in write mode: all dirty data is on %s",
			       dev->spec.name, dev->spec.backing);
		}
		break;
	}
}

static bool is_block_device(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISBLK(st.st_mode);
}

int fs_lock_backing(const char *path, bool readonly, char *err, size_t errlen)
{
	/* O_NONBLOCK: opening a FIFO for reading would wait for a writer forever. */
	int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
	struct stat st;
	int fd;

	/*
	 * O_EXCL on a block device fails while it is mounted or claimed by
	 * another exclusive opener (md, dm, another bufiofs); the flock below
	 * catches bufiofs instances on files and on the same device node.
	 */
	if (!readonly && is_block_device(path))
		flags |= O_EXCL;
	fd = open(path, flags);
	if (fd < 0) {
		int e = errno;

		if (e == EBUSY)
			snprintf(err, errlen, "%s: block device is in use (mounted or claimed)",
			         path);
		else
			snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
		return -e;
	}
	if (fstat(fd, &st) != 0) {
		int e = errno;

		snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(e));
		close(fd);
		return -e;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file or block device (it is %s)", path,
		         fs_file_kind(st.st_mode));
		close(fd);
		return -EINVAL;
	}
	if (flock(fd, (readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
		int e = errno;

		if (e == EWOULDBLOCK)
			snprintf(err, errlen,
			         "%s: already served (another bufiofs, or twice in this config, "
			         "holds its lock); "
			         "two caches on one backing would corrupt it",
			         path);
		else
			snprintf(err, errlen, "%s: cannot lock: %s", path, strerror(e));
		close(fd);
		return e == EWOULDBLOCK ? -EBUSY : -e;
	}
	return fd;
}

static int open_backend(struct fs_device *dev, const struct fs_device_spec *spec, char *err,
                        size_t errlen)
{
	struct bufio_backend_options opts = {
	    .engine = spec->engine,
	    .direct = spec->direct,
	    .readonly = spec->readonly,
	    /* the most a backend may stage; the budget at first use decides
	     * how many it gets (src/backend/bounce.c) */
	    .staging_buffers = 4,
	};

	dev->be = bufio_backend_open(spec->backing, &opts);
	if (!dev->be) {
		int e = errno;

		snprintf(err, errlen, "%s: cannot open backing: %s", spec->backing, strerror(e));
		return -e;
	}
#ifdef BUFIOFS_FAULT_INJECT
	/* The test daemon: every backing under the fault backend (fault_inject). */
	struct bufio_backend *f = be_fault_create(dev->be, true);

	if (!f) {
		snprintf(err, errlen, "%s: cannot create the fault backend", spec->backing);
		return -ENOMEM;
	}
	dev->be = f;
#endif
	return 0;
}

static int create_client(struct fs_device *dev, const struct fs_device_spec *spec, char *err,
                         size_t errlen)
{
	/*
	 * A request holds every block it touches until its reply is sent:
	 * reserve that many so one request can always complete.
	 */
	unsigned reserve = FS_DEVICE_MAX_IO / spec->block_size + 2;
	int e;

	dev->client = bufio_client_create(dev->be, spec->block_size, reserve, 0, NULL, NULL);
	if (!dev->client) {
		e = errno;
		snprintf(err, errlen, "%s: cannot create the cache (block_size %u): %s",
		         spec->backing, spec->block_size, strerror(e));
		return -e;
	}
	dev->size = bufio_get_device_size(dev->client) * (uint64_t)spec->block_size;
	if (dev->size == 0) {
		snprintf(err, errlen, "%s: backing is smaller than one block (%u bytes)",
		         spec->backing, spec->block_size);
		return -EINVAL;
	}
	atomic_store(&dev->read_ahead_kb, spec->read_ahead_kb);
	atomic_store(&dev->ra_next, UINT64_MAX);
	atomic_store(&dev->ra_until, 0);
	atomic_store(&dev->ra_win, 0);
	bufio_set_event_callback(dev->client, on_event, dev);
	e = bufio_set_writeback_ratio(dev->client, spec->writeback_ratio);
	if (!e)
		e = bufio_set_dirty_expire(dev->client, spec->dirty_expire_seconds);
	if (!e)
		e = bufio_set_max_write_failures(dev->client, spec->max_write_failures);
	if (e) {
		snprintf(err, errlen,
		         "%s: bad writeback_ratio, dirty_expire_seconds or max_write_failures",
		         spec->name);
		return e;
	}
	return 0;
}

static void init_lock(pthread_rwlock_t *lock)
{
	pthread_rwlockattr_t attr;

	/*
	 * Writer preference: a cache mode switch must not starve behind a
	 * steady stream of requests (readers never nest, so this is safe).
	 */
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(lock, &attr);
	pthread_rwlockattr_destroy(&attr);
}

int fs_device_open(struct fs_device *dev, const struct fs_device_spec *spec, char *err,
                   size_t errlen)
{
	int ret;

	memset(dev, 0, sizeof(*dev));
	dev->spec = *spec;
	dev->lock_fd = -1;
	atomic_init(&dev->cache_mode, spec->cache_mode);
	init_lock(&dev->mode_lock);
	ret = fs_lock_backing(spec->backing, spec->readonly, err, errlen);
	if (ret < 0)
		goto fail;
	dev->lock_fd = ret;
	ret = open_backend(dev, spec, err, errlen);
	if (ret)
		goto fail;
	ret = create_client(dev, spec, err, errlen);
	if (ret)
		goto fail;
	return 0;
fail:
	fs_device_close(dev);
	return ret;
}

int fs_device_close(struct fs_device *dev)
{
	int err = 0;

	if (dev->client) {
		/* destroy writes back too, but cannot report failure: do it here. */
		err = bufio_write_dirty_buffers(dev->client);
		/*
		 * The first call reports an error latched by an earlier
		 * background write-back even when a retry has written that
		 * data since; what counts here is whether anything is left.
		 */
		if (err)
			err = bufio_write_dirty_buffers(dev->client);
		if (err)
			fs_log(LOG_ERR, "%s: final write-back to %s failed: %s; data may be lost",
			       dev->spec.name, dev->spec.backing, strerror(-err));
		bufio_client_destroy(dev->client);
		dev->client = NULL;
	}
	if (dev->be) {
		bufio_backend_close(dev->be);
		dev->be = NULL;
	}
	if (dev->lock_fd >= 0) {
		close(dev->lock_fd);
		dev->lock_fd = -1;
	}
	pthread_rwlock_destroy(&dev->mode_lock);
	return err;
}
