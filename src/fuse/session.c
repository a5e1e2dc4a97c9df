/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Session setup for the FUSE frontend: mount options every bufiofs mount
 * needs, and unmounting (the worker pool is in loop.c).
 */
#include <errno.h>
#include <fuse_log.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "control/ctl.h"
#include "fuse/fs.h"

static unsigned count_entries(enum ctl_scope scope)
{
	const struct ctl_entry *const *all = ctl_entries(scope);
	unsigned n = 0;

	while (all[n])
		n++;
	return n;
}

void fs_ctx_init(struct fs_ctx *ctx, struct fs_device **devs, unsigned ndevs, bool kernel_cache)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->devs = devs;
	ctx->ndevs = ndevs;
	ctx->kernel_cache = kernel_cache;
	ctx->uid = getuid();
	ctx->gid = getgid();
	clock_gettime(CLOCK_REALTIME, &ctx->start);
	ctx->n_global = count_entries(CTL_GLOBAL);
	ctx->n_device = count_entries(CTL_DEVICE);
	pthread_mutex_init(&ctx->ctl_lock, NULL);
}

struct fuse_session *fs_mount(struct fs_ctx *ctx, const char *mountpoint, struct fuse_args *args)
{
	struct fuse_session *se;
	char opt[128];

	/*
	 * default_permissions: the kernel checks the mode bits, so the
	 * control files' 0444/0200 mean what they say for unprivileged users.
	 * max_read: reads as large as writes, one request per MiB.
	 */
	snprintf(opt, sizeof(opt),
	         "-odefault_permissions,max_read=%u,fsname=bufiofs,subtype=bufiofs", FS_MAX_IO);
	if (fuse_opt_add_arg(args, opt) != 0) {
		fuse_log(FUSE_LOG_ERR, "bufiofs: out of memory building mount options\n");
		return NULL;
	}
	se = fuse_session_new(args, &fs_ops, sizeof(fs_ops), ctx);
	if (!se) {
		fuse_log(FUSE_LOG_ERR,
		         "bufiofs: cannot create the FUSE session (bad -o option?)\n");
		return NULL;
	}
	if (fuse_session_mount(se, mountpoint) != 0) {
		fuse_log(FUSE_LOG_ERR, "bufiofs: cannot mount on %s\n", mountpoint);
		fuse_session_destroy(se);
		return NULL;
	}
	if (ctx->uring && fs_uring_attach(ctx->uring, se) != 0) {
		fuse_log(FUSE_LOG_ERR, "bufiofs: cannot route FUSE replies for io_uring\n");
		fuse_session_unmount(se);
		fuse_session_destroy(se);
		return NULL;
	}
	return se;
}

void fs_unmount(struct fuse_session *se)
{
	if (!se)
		return;
	fuse_session_unmount(se);
	fuse_session_destroy(se);
}
