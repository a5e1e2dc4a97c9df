/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The FUSE frontend of bufiofs: a fixed namespace (one file per served
 * device plus the control directory) served with libfuse's low-level API.
 */
#ifndef BUFIOFS_FUSE_FS_H
#define BUFIOFS_FUSE_FS_H

#define FUSE_USE_VERSION 35

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "daemon/device.h"

/* Largest read or write request the kernel sends us (max_read/max_write). */
#define FS_MAX_IO (1u << 20)

/* What the frontend serves and how. Lives as long as the session. */
struct fs_ctx {
	struct fs_device **devs;
	unsigned ndevs;
	bool kernel_cache; /* let the page cache keep the device files' data */
	uid_t uid;         /* owner of every inode: the daemon's user */
	gid_t gid;
	struct timespec start; /* times of every inode */
	/* Registry sizes, counted once (the registry never changes). */
	unsigned n_global;
	unsigned n_device;
	/* Open control file handles: the kernel sends no RELEASE for those
	 * still open when the session ends, so they are freed at destroy. */
	pthread_mutex_t ctl_lock;
	struct ctl_handle *ctl_open;
};

/* Fill the context for @devs; the array must outlive the session. */
void fs_ctx_init(struct fs_ctx *ctx, struct fs_device **devs, unsigned ndevs, bool kernel_cache);

/*
 * Create the session and mount it at @mountpoint. @args carries FUSE mount
 * options ("-o ...", argv[0] first); max_read and default_permissions are
 * added here. Returns NULL after logging the reason.
 */
struct fuse_session *fs_mount(struct fs_ctx *ctx, const char *mountpoint, struct fuse_args *args);

/*
 * Serve requests on a multi-threaded loop until unmounted or
 * fuse_session_exit(). Returns 0 or -errno from libfuse.
 */
int fs_serve(struct fuse_session *se, unsigned max_threads);

/* Unmount (if still mounted) and free the session. */
void fs_unmount(struct fuse_session *se);

/*----------------------------------------------------------------
 * Internal to src/fuse: inode numbers and per-kind operations.
 *--------------------------------------------------------------*/

/*
 * The namespace is fixed, so inode numbers are computed, not allocated:
 * kind in the high bits, device index and registry index below. Lookup
 * counts need no bookkeeping because nothing is ever freed.
 */
enum fs_kind {
	FS_K_ROOT = 0,
	FS_K_CTLDIR = 1,  /* MOUNTPOINT/control */
	FS_K_DEVFILE = 2, /* MOUNTPOINT/<device> */
	FS_K_DEVDIR = 3,  /* MOUNTPOINT/control/<device> */
	FS_K_GCTL = 4,    /* MOUNTPOINT/control/<entry> */
	FS_K_DCTL = 5,    /* MOUNTPOINT/control/<device>/<entry> */
};

struct fs_node {
	enum fs_kind kind;
	unsigned dev;   /* device index (DEVFILE, DEVDIR, DCTL) */
	unsigned entry; /* registry index (GCTL, DCTL) */
};

fuse_ino_t fs_ino(enum fs_kind kind, unsigned dev, unsigned entry);
/* Decode @ino; false if it names nothing in this mount. */
bool fs_node_of(const struct fs_ctx *ctx, fuse_ino_t ino, struct fs_node *n);

static inline struct fs_ctx *fs_req_ctx(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Device file operations (devfile.c). */
void fs_dev_open(fuse_req_t req, struct fs_ctx *ctx, struct fs_device *dev,
                 struct fuse_file_info *fi);
void fs_dev_read(fuse_req_t req, struct fs_device *dev, size_t size, off_t off);
void fs_dev_write(fuse_req_t req, struct fs_device *dev, const char *buf, size_t size, off_t off);
void fs_dev_fsync(fuse_req_t req, struct fs_device *dev);
void fs_dev_fallocate(fuse_req_t req, struct fs_device *dev, int mode, off_t off, off_t len);

/* Control file operations (control.c). */
const struct ctl_entry *fs_ctl_entry(const struct fs_node *n);
mode_t fs_ctl_mode(const struct ctl_entry *e);
void fs_ctl_open(fuse_req_t req, struct fs_ctx *ctx, const struct fs_node *n,
                 struct fuse_file_info *fi);
void fs_ctl_read(fuse_req_t req, struct fuse_file_info *fi, size_t size, off_t off);
void fs_ctl_write(fuse_req_t req, struct fuse_file_info *fi, const char *buf, size_t size);
void fs_ctl_release(struct fs_ctx *ctx, struct fuse_file_info *fi);
/* Free every handle still open; at session end, when no request can come. */
void fs_ctl_release_all(struct fs_ctx *ctx);

/* The operations table (ops.c). */
extern const struct fuse_lowlevel_ops fs_ops;

#endif
