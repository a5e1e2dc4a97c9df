/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The control files: each open handle renders its registry entry with
 * ctl_read and hands every write to ctl_write, so the control directory
 * means exactly what the registry (and the config file) mean.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "control/ctl.h"
#include "fuse/fs.h"

/* One open control file. Reads of one handle may run concurrently. */
struct ctl_handle {
	const struct ctl_entry *e;
	struct fs_device *dev; /* NULL for global entries */
	pthread_mutex_t lock;
	char *text; /* the value as rendered for the last read at offset 0 */
	size_t len;
	struct ctl_handle *prev, *next; /* in fs_ctx.ctl_open */
};

const struct ctl_entry *fs_ctl_entry(const struct fs_node *n)
{
	return ctl_entries(n->kind == FS_K_GCTL ? CTL_GLOBAL : CTL_DEVICE)[n->entry];
}

mode_t fs_ctl_mode(const struct ctl_entry *e)
{
	if (e->type == CTL_ACTION)
		return 0200;
	return e->set || e->command ? 0644 : 0444;
}

void fs_ctl_open(fuse_req_t req, struct fs_ctx *ctx, const struct fs_node *n,
                 struct fuse_file_info *fi)
{
	const struct ctl_entry *e = fs_ctl_entry(n);
	int acc = fi->flags & O_ACCMODE;
	struct ctl_handle *h;

	/* Root passes the mode bits, so the registry's rules are enforced here. */
	if ((acc != O_RDONLY && !e->set && !e->command) ||
	    (acc != O_WRONLY && e->type == CTL_ACTION)) {
		fuse_reply_err(req, EACCES);
		return;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	h->e = e;
	h->dev = n->kind == FS_K_DCTL ? ctx->devs[n->dev] : NULL;
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_lock(&ctx->ctl_lock);
	h->next = ctx->ctl_open;
	if (h->next)
		h->next->prev = h;
	ctx->ctl_open = h;
	pthread_mutex_unlock(&ctx->ctl_lock);
	fi->fh = (uintptr_t)h;
	/* Never cached by the kernel: every read shows the current value. */
	fi->direct_io = 1;
	fi->keep_cache = 0;
	fi->noflush = 1;
	fuse_reply_open(req, fi);
}

/* Render the entry into h->text, growing the buffer until it fits. */
static int render(struct ctl_handle *h)
{
	size_t size = 256;

	for (;;) {
		char *buf = malloc(size);
		int len;

		if (!buf)
			return -ENOMEM;
		len = ctl_read(h->e, h->dev, buf, size);
		if (len < 0) {
			free(buf);
			return len;
		}
		if ((size_t)len < size) {
			free(h->text);
			h->text = buf;
			h->len = len;
			return 0;
		}
		free(buf);
		size = (size_t)len + 1;
	}
}

void fs_ctl_read(fuse_req_t req, struct fuse_file_info *fi, size_t size, off_t off)
{
	struct ctl_handle *h = (struct ctl_handle *)(uintptr_t)fi->fh;
	char *slice = NULL;
	int err = 0;

	/*
	 * Nothing of @h may be touched once the reply is out: the reader can
	 * then close the file and its release free @h on another thread before
	 * this one returns. So the slice is copied and @h unlocked first.
	 */
	pthread_mutex_lock(&h->lock);
	/*
	 * A read from the start takes a fresh snapshot; later offsets continue
	 * the same one, so a long value (metrics) read in pieces is coherent.
	 */
	if (off == 0 || !h->text)
		err = render(h);
	if (!err) {
		if ((size_t)off >= h->len)
			size = 0;
		else if (size > h->len - off)
			size = h->len - off;
		slice = malloc(size ? size : 1);
		if (slice)
			memcpy(slice, h->text + (size ? off : 0), size);
		else
			err = -ENOMEM;
	}
	pthread_mutex_unlock(&h->lock);
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_buf(req, slice, size);
	free(slice);
}

void fs_ctl_write(fuse_req_t req, struct fuse_file_info *fi, const char *buf, size_t size)
{
	struct ctl_handle *h = (struct ctl_handle *)(uintptr_t)fi->fh;
	int err;

	/* The whole value comes in one write(2), whatever the file offset. */
	err = ctl_write(h->e, h->dev, buf, size);
	if (err < 0)
		fuse_reply_err(req, -err);
	else
		fuse_reply_write(req, size);
}

static void free_handle(struct ctl_handle *h)
{
	pthread_mutex_destroy(&h->lock);
	free(h->text);
	free(h);
}

void fs_ctl_release(struct fs_ctx *ctx, struct fuse_file_info *fi)
{
	struct ctl_handle *h = (struct ctl_handle *)(uintptr_t)fi->fh;

	if (!h)
		return;
	pthread_mutex_lock(&ctx->ctl_lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		ctx->ctl_open = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&ctx->ctl_lock);
	free_handle(h);
}

void fs_ctl_release_all(struct fs_ctx *ctx)
{
	pthread_mutex_lock(&ctx->ctl_lock);
	while (ctx->ctl_open) {
		struct ctl_handle *h = ctx->ctl_open;

		ctx->ctl_open = h->next;
		free_handle(h);
	}
	pthread_mutex_unlock(&ctx->ctl_lock);
}
