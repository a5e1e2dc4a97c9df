/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The low-level operations table: the fixed namespace (lookup, getattr,
 * readdir, statfs), refusals for everything that would change its shape,
 * and dispatch of file operations to the device file or the control files.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "control/ctl.h"
#include "fuse/fs.h"

#define FS_CTLDIR_NAME "control"

/* Longest name in the namespace (device names are shorter). */
#define FS_NAME_MAX 255

/* The namespace never changes: let the kernel cache names and attributes. */
#define FS_ENTRY_TIMEOUT 3600.0

fuse_ino_t fs_ino(enum fs_kind kind, unsigned dev, unsigned entry)
{
	if (kind == FS_K_ROOT)
		return FUSE_ROOT_ID;
	return ((fuse_ino_t)kind << 40) | ((fuse_ino_t)dev << 20) | entry;
}

bool fs_node_of(const struct fs_ctx *ctx, fuse_ino_t ino, struct fs_node *n)
{
	if (ino == FUSE_ROOT_ID) {
		*n = (struct fs_node){.kind = FS_K_ROOT};
		return true;
	}
	n->kind = ino >> 40;
	n->dev = (ino >> 20) & 0xfffff;
	n->entry = ino & 0xfffff;
	switch (n->kind) {
	case FS_K_CTLDIR:
		return n->dev == 0 && n->entry == 0;
	case FS_K_DEVFILE:
	case FS_K_DEVDIR:
		return n->dev < ctx->ndevs && n->entry == 0;
	case FS_K_GCTL:
		return n->dev == 0 && n->entry < ctx->n_global;
	case FS_K_DCTL:
		return n->dev < ctx->ndevs && n->entry < ctx->n_device;
	default:
		return false;
	}
}

static void fill_attr(const struct fs_ctx *ctx, fuse_ino_t ino, const struct fs_node *n,
                      struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = ctx->uid;
	st->st_gid = ctx->gid;
	st->st_atim = st->st_mtim = st->st_ctim = ctx->start;
	st->st_blksize = 4096;
	switch (n->kind) {
	case FS_K_ROOT:
	case FS_K_CTLDIR:
	case FS_K_DEVDIR:
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		break;
	case FS_K_DEVFILE: {
		struct fs_device *dev = ctx->devs[n->dev];

		st->st_mode = S_IFREG | (dev->spec.readonly ? 0444 : 0644);
		st->st_nlink = 1;
		st->st_size = (off_t)dev->size;
		st->st_blocks = (blkcnt_t)(dev->size / 512);
		/* The cache block is the natural I/O size: tell tools like fio. */
		st->st_blksize = dev->spec.block_size;
		break;
	}
	case FS_K_GCTL:
	case FS_K_DCTL:
		st->st_mode = S_IFREG | fs_ctl_mode(fs_ctl_entry(n));
		st->st_nlink = 1;
		/* Like sysfs: a nominal size; reads return the real length. */
		st->st_size = 4096;
		break;
	}
}

static void reply_entry(fuse_req_t req, const struct fs_ctx *ctx, const struct fs_node *n)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = fs_ino(n->kind, n->dev, n->entry);
	e.generation = 1;
	e.attr_timeout = FS_ENTRY_TIMEOUT;
	e.entry_timeout = FS_ENTRY_TIMEOUT;
	fill_attr(ctx, e.ino, n, &e.attr);
	fuse_reply_entry(req, &e);
}

static bool find_device(const struct fs_ctx *ctx, const char *name, unsigned *idx)
{
	for (unsigned i = 0; i < ctx->ndevs; i++) {
		if (strcmp(ctx->devs[i]->spec.name, name) == 0) {
			*idx = i;
			return true;
		}
	}
	return false;
}

static bool find_entry(enum ctl_scope scope, const char *name, unsigned *idx)
{
	const struct ctl_entry *const *all = ctl_entries(scope);

	for (unsigned i = 0; all[i]; i++) {
		if (strcmp(all[i]->name, name) == 0) {
			*idx = i;
			return true;
		}
	}
	return false;
}

/* Resolve @name in directory @dir; false if it does not exist. */
static bool lookup_child(const struct fs_ctx *ctx, const struct fs_node *dir, const char *name,
                         struct fs_node *out)
{
	unsigned i;

	*out = (struct fs_node){0};
	switch (dir->kind) {
	case FS_K_ROOT:
		if (strcmp(name, FS_CTLDIR_NAME) == 0) {
			out->kind = FS_K_CTLDIR;
			return true;
		}
		if (!find_device(ctx, name, &i))
			return false;
		*out = (struct fs_node){.kind = FS_K_DEVFILE, .dev = i};
		return true;
	case FS_K_CTLDIR:
		/* Device directories win over a global entry of the same name. */
		if (find_device(ctx, name, &i)) {
			*out = (struct fs_node){.kind = FS_K_DEVDIR, .dev = i};
			return true;
		}
		if (!find_entry(CTL_GLOBAL, name, &i))
			return false;
		*out = (struct fs_node){.kind = FS_K_GCTL, .entry = i};
		return true;
	case FS_K_DEVDIR:
		if (!find_entry(CTL_DEVICE, name, &i))
			return false;
		*out = (struct fs_node){.kind = FS_K_DCTL, .dev = dir->dev, .entry = i};
		return true;
	default:
		return false;
	}
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs_ctx *ctx = fs_req_ctx(req);
	struct fs_node dir, child;

	if (!fs_node_of(ctx, parent, &dir)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	/* As statfs says (f_namemax); the kernel passes up to 1024 bytes. */
	if (strlen(name) > FS_NAME_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	if (!lookup_child(ctx, &dir, name, &child)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	reply_entry(req, ctx, &child);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *ctx = fs_req_ctx(req);
	struct fs_node n;
	struct stat st;

	if (!fs_node_of(ctx, ino, &n)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_attr(ctx, ino, &n, &st);
	fuse_reply_attr(req, &st, FS_ENTRY_TIMEOUT);
}

/*
 * Sizes are fixed and ownership is the daemon's: only no-op size changes
 * (O_TRUNC on a control file, truncate to the current size) and timestamp
 * updates, which are ignored, succeed.
 */
static int check_setattr(const struct fs_ctx *ctx, const struct fs_node *n, const struct stat *attr,
                         int to_set)
{
	if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
		return EPERM;
	if (!(to_set & FUSE_SET_ATTR_SIZE))
		return 0;
	switch (n->kind) {
	case FS_K_DEVFILE:
		return (uint64_t)attr->st_size == ctx->devs[n->dev]->size ? 0 : EINVAL;
	case FS_K_GCTL:
	case FS_K_DCTL:
		return attr->st_size == 0 ? 0 : EINVAL;
	default:
		return EISDIR;
	}
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
	struct fs_ctx *ctx = fs_req_ctx(req);
	struct fs_node n;
	struct stat st;
	int err;

	if (!fs_node_of(ctx, ino, &n)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	err = check_setattr(ctx, &n, attr, to_set);
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	fill_attr(ctx, ino, &n, &st);
	fuse_reply_attr(req, &st, FS_ENTRY_TIMEOUT);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *ctx = fs_req_ctx(req);
	struct fs_node n;

	if (!fs_node_of(ctx, ino, &n)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (n.kind != FS_K_ROOT && n.kind != FS_K_CTLDIR && n.kind != FS_K_DEVDIR) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	fuse_reply_open(req, fi);
}

/* The children of a directory, in readdir order, "." and ".." first. */
static bool dir_child(const struct fs_ctx *ctx, const struct fs_node *dir, unsigned i,
                      const char **name, struct fs_node *out)
{
	const struct ctl_entry *const *all;

	*out = (struct fs_node){0};
	if (i == 0) {
		*name = ".";
		*out = *dir;
		return true;
	}
	if (i == 1) {
		*name = "..";
		out->kind = dir->kind == FS_K_DEVDIR ? FS_K_CTLDIR : FS_K_ROOT;
		return true;
	}
	i -= 2;
	switch (dir->kind) {
	case FS_K_ROOT:
		if (i < ctx->ndevs) {
			*name = ctx->devs[i]->spec.name;
			*out = (struct fs_node){.kind = FS_K_DEVFILE, .dev = i};
			return true;
		}
		if (i > ctx->ndevs)
			return false;
		*name = FS_CTLDIR_NAME;
		out->kind = FS_K_CTLDIR;
		return true;
	case FS_K_CTLDIR:
		if (i < ctx->ndevs) {
			*name = ctx->devs[i]->spec.name;
			*out = (struct fs_node){.kind = FS_K_DEVDIR, .dev = i};
			return true;
		}
		i -= ctx->ndevs;
		if (i >= ctx->n_global)
			return false;
		all = ctl_entries(CTL_GLOBAL);
		*name = all[i]->name;
		*out = (struct fs_node){.kind = FS_K_GCTL, .entry = i};
		return true;
	case FS_K_DEVDIR:
		if (i >= ctx->n_device)
			return false;
		all = ctl_entries(CTL_DEVICE);
		*name = all[i]->name;
		*out = (struct fs_node){.kind = FS_K_DCTL, .dev = dir->dev, .entry = i};
		return true;
	default:
		return false;
	}
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
	struct fs_ctx *ctx = fs_req_ctx(req);
	struct fs_node dir, child;
	const char *name;
	char buf[8192];
	size_t used = 0;

	if (!fs_node_of(ctx, ino, &dir)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (size > sizeof(buf))
		size = sizeof(buf);
	for (unsigned i = off; dir_child(ctx, &dir, i, &name, &child); i++) {
		struct stat st;
		size_t len;

		fill_attr(ctx, fs_ino(child.kind, child.dev, child.entry), &child, &st);
		/* The offset stored with an entry is where the next readdir resumes. */
		len = fuse_add_direntry(req, buf + used, size - used, name, &st, i + 1);
		if (len > size - used)
			break;
		used += len;
	}
	fuse_reply_buf(req, buf, used);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs_ctx *ctx = fs_req_ctx(req);
	struct statvfs sv;
	uint64_t bytes = 0;

	for (unsigned i = 0; i < ctx->ndevs; i++)
		bytes += ctx->devs[i]->size;
	memset(&sv, 0, sizeof(sv));
	/* Fixed-size files and no free space: the mount is full by design. */
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_blocks = bytes / 4096;
	sv.f_files = 2 + 2 * ctx->ndevs + ctx->n_global + ctx->ndevs * ctx->n_device;
	sv.f_namemax = FS_NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *ctx = fs_req_ctx(req);
	struct fs_node n;

	if (!fs_node_of(ctx, ino, &n)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	switch (n.kind) {
	case FS_K_DEVFILE:
		fs_dev_open(req, ctx, ctx->devs[n.dev], fi);
		return;
	case FS_K_GCTL:
	case FS_K_DCTL:
		fs_ctl_open(req, ctx, &n, fi);
		return;
	default:
		fuse_reply_err(req, EISDIR);
		return;
	}
}

/* The device behind @ino, or NULL for a control file. */
static struct fs_device *devfile_of(fuse_req_t req, fuse_ino_t ino)
{
	struct fs_ctx *ctx = fs_req_ctx(req);
	struct fs_node n;

	if (fs_node_of(ctx, ino, &n) && n.kind == FS_K_DEVFILE)
		return ctx->devs[n.dev];
	return NULL;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	struct fs_device *dev = devfile_of(req, ino);

	if (dev)
		fs_dev_read(req, dev, size, off);
	else
		fs_ctl_read(req, fi, size, off);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
	struct fs_device *dev = devfile_of(req, ino);

	if (dev)
		fs_dev_write(req, dev, buf, size, off);
	else
		fs_ctl_write(req, fi, buf, size);
}

/*
 * close(2) of a device file handle that may have written: make the data
 * durable, so close() reports write-back errors like a block device's
 * fsync-on-close users expect. Read-only handles (blkid, cat) do not force a
 * write-back of everyone else's data.
 */
static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_device *dev = devfile_of(req, ino);

	if (dev && fi->fh) /* set by fs_dev_open for writable handles */
		fs_dev_fsync(req, dev);
	else
		fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fs_device *dev = devfile_of(req, ino);

	if (dev)
		fs_dev_fsync(req, dev);
	else
		fuse_reply_err(req, 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (!devfile_of(req, ino))
		fs_ctl_release(fs_req_ctx(req), fi);
	fuse_reply_err(req, 0);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                         struct fuse_file_info *fi)
{
	struct fs_device *dev = devfile_of(req, ino);

	if (dev)
		fs_dev_fallocate(req, dev, mode, off, len);
	else
		fuse_reply_err(req, EOPNOTSUPP);
}

/* The namespace is fixed: nothing can be created, removed or renamed. */
static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	fuse_reply_err(req, EPERM);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	fuse_reply_err(req, EPERM);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EPERM);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EPERM);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
	fuse_reply_err(req, EPERM);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	fuse_reply_err(req, EPERM);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
	fuse_reply_err(req, EPERM);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	conn->max_write = FS_MAX_IO;
	conn->max_read = FS_MAX_IO; /* must match the max_read mount option */
	conn->max_readahead = FS_MAX_IO;
	/* A loop device or fio keeps many requests in flight: let them through. */
	conn->max_background = 128;
	conn->congestion_threshold = 96;
	if (conn->capable & FUSE_CAP_ASYNC_DIO)
		conn->want |= FUSE_CAP_ASYNC_DIO;
	/* O_TRUNC arrives with open instead of as a setattr to size 0. */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* Writes come straight to us; the kernel must not buffer them. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

/* The session ends: no request comes any more, not even a pending RELEASE. */
static void op_destroy(void *userdata)
{
	fs_ctl_release_all(userdata);
}

const struct fuse_lowlevel_ops fs_ops = {
    .init = op_init,
    .destroy = op_destroy,
    .lookup = op_lookup,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_unlink,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .create = op_create,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .statfs = op_statfs,
    .fallocate = op_fallocate,
};
