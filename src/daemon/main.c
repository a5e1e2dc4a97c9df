/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * bufiofs: serve a backing file or block device as a file in a FUSE mount,
 * through the libbufio cache. Start-up, the serving loop and the orderly
 * shutdown that writes every dirty buffer back.
 */
#define _GNU_SOURCE /* asprintf */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "control/ctl.h"
#include "daemon/config.h"
#include "daemon/lifecycle.h"
#include "daemon/log.h"
#include "daemon/options.h"
#include "fuse/fs.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

/*
 * FUSE workers (fuse_threads, default FS_FUSE_THREADS). Each may block on
 * backing I/O, so this bounds the requests served at once; each also keeps a
 * receive buffer as large as the largest request (1 MiB) and may hold that
 * much of the cache while it copies, so it is also a bound on memory beyond
 * the budget. 8 keeps a QD32 random-read load on an SSD busy (merged,
 * read-ahead I/O does the rest).
 */
static unsigned fuse_threads(const struct fs_config *cfg)
{
	return cfg->fuse_threads ? cfg->fuse_threads : FS_FUSE_THREADS;
}

/*
 * Of them, runnable at once while none waits for I/O (fuse_running; see
 * src/fuse/gate.c). One more than the CPUs: on 2 CPUs, 2 and 3 kept hot 4 KiB reads
 * at QD32x2 at 78-100k IOPS in 8 of 8 runs, where all 8 ran at 60-82k.
 */
static unsigned fuse_running(const struct fs_config *cfg)
{
	long cpus;

	if (cfg->fuse_running)
		return cfg->fuse_running;
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	return cpus > 0 && cpus < FS_FUSE_THREADS_MAX ? (unsigned)cpus + 1 : FS_FUSE_THREADS_MAX;
}

/* Everything the daemon holds while serving. */
struct fs_daemon {
	struct fs_config *cfg;
	struct fs_device **devs;
	unsigned ndevs; /* opened so far */
	struct fs_ctx ctx;
	struct fuse_session *se;
	int status_fd;
};

static void notify(const char *state)
{
#ifdef HAVE_LIBSYSTEMD
	sd_notify(0, state);
#else
	(void)state;
#endif
}

/*
 * A loop device on our file sends its writes through us; if reclaim waited
 * on those writes while we allocated memory, the machine would deadlock.
 * IO_FLUSHER makes our allocations avoid I/O reclaim; threads inherit it.
 */
static void protect_from_reclaim(const struct fs_config *cfg)
{
	if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0)
		fs_log(LOG_WARNING,
		       "prctl(PR_SET_IO_FLUSHER) failed: %s; a loop device on bufiofs may "
		       "deadlock under memory pressure (needs CAP_SYS_RESOURCE)",
		       strerror(errno));
	if (cfg->mlockall && mlockall(MCL_CURRENT | MCL_FUTURE) != 0)
		fs_log(LOG_WARNING, "mlockall failed: %s; continuing unlocked", strerror(errno));
}

static int open_devices(struct fs_daemon *d)
{
	char err[1024];

	d->devs = calloc(d->cfg->ndevs, sizeof(struct fs_device *));
	if (!d->devs) {
		fs_log(LOG_ERR, "out of memory");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < d->cfg->ndevs; i++) {
		struct fs_device *dev = calloc(1, sizeof(*dev));
		int ret;

		if (!dev) {
			fs_log(LOG_ERR, "out of memory");
			return -ENOMEM;
		}
		ret = fs_device_open(dev, &d->cfg->devs[i], err, sizeof(err));
		if (ret) {
			fs_log(LOG_ERR, "%s", err);
			free(dev);
			return ret;
		}
		d->devs[d->ndevs++] = dev;
	}
	ctl_set_devices(d->devs, d->ndevs);
	if (fs_config_apply(d->cfg, d->devs, d->ndevs, err, sizeof(err)) != 0) {
		fs_log(LOG_ERR, "%s", err);
		return -EINVAL;
	}
	return 0;
}

/* Final write-back of every device; nonzero if any data could not be saved. */
static int close_devices(struct fs_daemon *d)
{
	int status = 0;

	for (unsigned i = 0; i < d->ndevs; i++) {
		if (fs_device_close(d->devs[i]) != 0)
			status = 1;
		free(d->devs[i]);
	}
	free(d->devs);
	d->devs = NULL;
	d->ndevs = 0;
	return status;
}

/*
 * FUSE over io_uring when asked for (fuse_uring=auto or yes) and the fuse
 * module allows it. Its enable_uring parameter is the administrator's
 * switch for the whole machine, so the daemon reads it and never sets it.
 */
static int choose_uring(struct fs_daemon *d)
{
	enum fs_uring_mode mode = d->cfg->fuse_uring;

	if (mode == FS_URING_NO) {
		fs_log(LOG_NOTICE, "FUSE requests come through /dev/fuse reads (fuse_uring=no)");
		return 0;
	}
	if (!fs_uring_kernel_enabled()) {
		if (mode == FS_URING_AUTO) {
			fs_log(LOG_NOTICE, "FUSE requests come through /dev/fuse reads (the fuse "
			                   "module's enable_uring is off)");
			return 0;
		}
		fs_log(LOG_ERR, "fuse_uring=yes, but the kernel does not allow FUSE over io_uring "
		                "(needs Linux 6.14+ and: echo Y > "
		                "/sys/module/fuse/parameters/enable_uring)");
		return -EOPNOTSUPP;
	}
	d->ctx.uring = fs_uring_new(&d->ctx);
	if (!d->ctx.uring) {
		fs_log(LOG_ERR, "cannot set up FUSE over io_uring: out of memory");
		return -ENOMEM;
	}
	return 0;
}

static int mount_fs(struct fs_daemon *d)
{
	const struct fs_config *cfg = d->cfg;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	char *opt = NULL;
	int ret = 0;

	if (fuse_opt_add_arg(&args, "bufiofs") != 0 ||
	    (cfg->debug && fuse_opt_add_arg(&args, "-d") != 0) ||
	    (cfg->allow_other && fuse_opt_add_arg(&args, "-oallow_other") != 0))
		ret = -ENOMEM;
	if (!ret && cfg->fuse_opts && *cfg->fuse_opts) {
		if (asprintf(&opt, "-o%s", cfg->fuse_opts) < 0 || fuse_opt_add_arg(&args, opt) != 0)
			ret = -ENOMEM;
		free(opt);
	}
	fs_ctx_init(&d->ctx, d->devs, d->ndevs, cfg->kernel_cache);
	if (!ret)
		ret = choose_uring(d);
	if (!ret) {
		d->se = fs_mount(&d->ctx, cfg->mountpoint, &args);
		if (!d->se)
			ret = -EIO;
	}
	fuse_opt_free_args(&args);
	return ret;
}

static void log_serving(const struct fs_daemon *d)
{
	for (unsigned i = 0; i < d->ndevs; i++) {
		const struct fs_device *dev = d->devs[i];

		fs_log(LOG_NOTICE, "serving %s (%llu bytes, %u-byte blocks, %s) as %s/%s",
		       dev->spec.backing, (unsigned long long)dev->size, dev->spec.block_size,
		       dev->be->name, d->cfg->mountpoint, dev->spec.name);
	}
	fs_log(LOG_NOTICE, "tunables and stats in %s/control; stop with: fusermount3 -u %s",
	       d->cfg->mountpoint, d->cfg->mountpoint);
}

/* Serve until unmounted or signalled; returns the exit status. */
static int serve(struct fs_daemon *d)
{
	struct fs_signals *sigs;
	struct fs_loop *loop;
	int ret;

	loop = fs_loop_start(&d->ctx, d->se, fuse_threads(d->cfg), fuse_running(d->cfg));
	if (!loop)
		return 1;
	sigs = fs_signals_start(d->se, loop, d->cfg, d->devs, d->ndevs);
	if (!sigs) {
		fuse_session_exit(d->se);
		fs_loop_interrupt(loop);
		/* A worker may have been between reads: unmounting ends it too. */
		fuse_session_unmount(d->se);
		fs_loop_join(loop);
		fs_loop_free(loop);
		return 1;
	}
	log_serving(d);
	notify("READY=1");
	fs_daemon_ready(&d->status_fd, 0);
	ret = fs_loop_join(loop);
	fs_signals_stop(sigs);
	fs_loop_free(loop);
	notify("STOPPING=1");
	if (ret < 0) {
		fs_log(LOG_ERR, "FUSE session ended with an error: %s", strerror(-ret));
		return 1;
	}
	return 0;
}

/*
 * The daemon works from / (so it does not keep a directory busy): resolve
 * relative paths while the caller's directory still applies.
 */
static int make_absolute(char **path, const char *what)
{
	char *abs;

	if (!*path || **path == '/')
		return 0;
	abs = realpath(*path, NULL);
	if (!abs) {
		fs_log(LOG_ERR, "%s %s: %s", what, *path, strerror(errno));
		return -errno;
	}
	free(*path);
	*path = abs;
	return 0;
}

/* FUSE would mount on a file too, but the root of bufiofs is a directory. */
static int check_mountpoint(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		fs_log(LOG_ERR, "mount point %s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fs_log(LOG_ERR, "mount point %s: not a directory", path);
		return -1;
	}
	return 0;
}

static int resolve_paths(struct fs_config *cfg)
{
	if (make_absolute(&cfg->mountpoint, "mount point") != 0 ||
	    check_mountpoint(cfg->mountpoint) != 0)
		return -1;
	for (unsigned i = 0; i < cfg->ndevs; i++)
		if (make_absolute(&cfg->devs[i].backing, "backing") != 0)
			return -1;
	return 0;
}

static int run(struct fs_config *cfg)
{
	struct fs_daemon d = {.cfg = cfg, .status_fd = -1};
	int status = 1;

	if (resolve_paths(cfg) != 0 || fs_daemon_start(cfg->foreground, &d.status_fd) != 0)
		return 1;
	/* Both must come before the first thread (backends, cache, FUSE). */
	if (fs_signals_block() != 0)
		goto out;
	protect_from_reclaim(cfg);
	if (open_devices(&d) != 0 || mount_fs(&d) != 0)
		goto out;
	status = serve(&d);
out:
	fs_daemon_ready(&d.status_fd, 1);
	fs_unmount(d.se);
	fs_uring_free(d.ctx.uring);
	if (close_devices(&d) != 0)
		status = 1;
	fs_log(status ? LOG_ERR : LOG_NOTICE, "%s",
	       status ? "exiting with errors" : "all data written back; exiting");
	return status;
}

int main(int argc, char **argv)
{
	struct fs_config cfg;
	struct fs_cmdline cl = {0};
	char err[1024];
	int rc;

	/*
	 * Memory beyond the cache budget stays small and bounded: large
	 * temporary buffers (uncached I/O, 1 MiB requests) are mapped and
	 * unmapped rather than kept in a heap after glibc raises its mmap
	 * threshold, and there are a few malloc arenas, not 8 per core.
	 */
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
	mallopt(M_ARENA_MAX, 4);
	fs_log_init();
	fs_config_init(&cfg);
	rc = fs_options_parse(argc, argv, &cfg, &cl, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "bufiofs: %s\nTry 'bufiofs --help' for more information.\n", err);
		fs_config_free(&cfg);
		return 2;
	}
	if (rc == FS_OPTIONS_EXIT) {
		fs_config_free(&cfg);
		return 0;
	}
	if (cl.demo && fs_demo_prepare(&cfg, err, sizeof(err)) != 0) {
		fs_log(LOG_ERR, "%s", err);
		fs_config_free(&cfg);
		return 1;
	}
	rc = run(&cfg);
	fs_config_free(&cfg);
	return rc;
}
