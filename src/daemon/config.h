/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * bufiofs configuration: what to serve and where (devices, mount point, FUSE
 * options) and the tunables to apply once the devices are open, gathered
 * from the libconfig file and then -o options, which override it.
 */
#ifndef BUFIOFS_CONFIG_H
#define BUFIOFS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "control/ctl.h"
#include "daemon/device.h"

/*
 * One registry assignment, kept as validated text and applied with
 * ctl_write() by fs_config_apply(). Later assignments to the same target
 * replace earlier ones, so the list holds at most one per (entry, device).
 */
struct fs_tunable {
	const struct ctl_entry *entry;
	char *device; /* CTL_DEVICE entries: the device's name, or NULL for every device;
	                 always NULL for CTL_GLOBAL entries */
	char *value;  /* as written, already checked with ctl_parse() */
	char *origin; /* "FILE:LINE" or "-o", for error messages */
};

/*
 * fuse_uring: FUSE requests over io_uring. By default whenever the fuse
 * module allows it (its enable_uring, a switch for the whole machine, is
 * off unless the administrator turns it on): on the 2-CPU VM of
 * bench/README.md it meets every target (hot 4 KiB reads at QD32 2.8x the
 * best peer, where /dev/fuse itself carries under 1.5x), streams included.
 */
enum fs_uring_mode {
	FS_URING_NO,   /* /dev/fuse reads */
	FS_URING_AUTO, /* when the fuse module allows it (the default) */
	FS_URING_YES,  /* required: start-up fails without it */
};

struct fs_config {
	char *mountpoint;
	struct fs_device_spec *devs; /* strings heap-owned by the config */
	unsigned ndevs;
	struct fs_tunable *tunables;
	unsigned ntunables;
	char *fuse_opts;   /* extra comma-separated FUSE mount options, or NULL */
	char *state_dir;   /* where --demo keeps its image; NULL = the daemon's default */
	char *config_path; /* the file loaded, for SIGHUP; NULL if none */
	bool foreground;
	bool debug;        /* -d: FUSE debug output */
	bool kernel_cache; /* let the kernel page cache cache the device file */
	bool mlockall;
	bool allow_other; /* not added to fuse_opts: the daemon passes it itself */
	enum fs_uring_mode fuse_uring;
	unsigned fuse_threads; /* FUSE workers; 0 = FS_FUSE_THREADS */
	unsigned fuse_running; /* of them runnable at once; 0 = the CPUs + 1 */
};

/* FUSE workers by default, and the most fuse_threads accepts. Each may keep a
 * 1 MiB receive buffer and hold that much of the cache while it copies. */
#define FS_FUSE_THREADS     8
#define FS_FUSE_THREADS_MAX 64

/*
 * Format an error message into @err (when @err is non-NULL and @errlen > 0)
 * and return @rc, so that error paths read "return fs_errf(err, errlen, -EINVAL, ...)".
 */
int fs_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Empty config: no devices, no tunables, everything false/NULL. */
void fs_config_init(struct fs_config *cfg);

/* Free everything @cfg owns and leave it as after fs_config_init(). */
void fs_config_free(struct fs_config *cfg);

/*
 * Load a libconfig file. Call it on a freshly initialised config, before any
 * -o: on success the file's contents replace @cfg's entirely. On error @cfg
 * is unchanged, -errno is returned and @err holds "FILE:LINE: message" (or
 * "FILE: message" when the file cannot be read). Syntax errors, unknown keys
 * at any level, wrong types, out-of-range values, duplicate device names and
 * devices without a backing are all errors. A file without devices is
 * accepted (fs_config_check() then wants one from the command line).
 */
int fs_config_load_file(struct fs_config *cfg, const char *path, char *err, size_t errlen);

/*
 * Apply one `-o NAME[=VALUE]` (@value NULL when there was no '='):
 *  - a configurable registry entry (max_cache_size_bytes, cache_mode, ...):
 *    recorded as a tunable; a device entry applies to every device, or to
 *    one with NAME written as DEVICE.NAME; device entries also update the
 *    matching fs_device_spec fields (cache_mode, writeback_ratio,
 *    dirty_expire_seconds);
 *  - a device option: readonly, block_size, io_engine (auto, io_uring,
 *    threads), direct (auto, yes/no; alone: yes), name, backing — every device or
 *    DEVICE.NAME; name and backing need DEVICE. when there are several
 *    devices; a device "disk" is created first when there is none;
 *  - kernel_cache, mlockall, allow_other, foreground, debug (booleans: no
 *    value, 1/0, yes/no, true/false, on/off), state_dir=PATH,
 *    fuse_uring=auto|yes|no, fuse_threads=N, fuse_running=auto|N
 *    (N from 1 to FS_FUSE_THREADS_MAX);
 *  - a read-only registry name (hits, metrics, ...) is an error;
 *  - anything else is appended to fuse_opts.
 * Returns 0 or -EINVAL/-ENOMEM with a message in @err.
 */
int fs_config_set_option(struct fs_config *cfg, const char *name, const char *value, char *err,
                         size_t errlen);

/*
 * Write every tunable through ctl_write() (global ones once, device ones to
 * the named device or to all of @devs). Used after the devices are open and
 * on SIGHUP. Applies all of them; returns 0 or the first error, with
 * "ORIGIN: NAME = VALUE: reason" in @err.
 */
int fs_config_apply(const struct fs_config *cfg, struct fs_device **devs, unsigned ndevs, char *err,
                    size_t errlen);

/*
 * SIGHUP: re-read @path (NULL = cfg->config_path) and replace the file's
 * tunables with the new ones; -o tunables keep overriding them. Everything
 * else in the file (devices, mount point, options) is ignored until a
 * restart, but must still be valid. A device tunable naming a device not
 * being served is an error. On error @cfg is unchanged. Settings removed
 * from the file keep their current value. Call fs_config_apply() next.
 */
int fs_config_reload_tunables(struct fs_config *cfg, const char *path, char *err, size_t errlen);

/* Check that the result can be served: a mount point, >= 1 device, each with a backing. */
int fs_config_check(const struct fs_config *cfg, char *err, size_t errlen);

/* Append a device with default settings named @name (NULL: "disk"); NULL on ENOMEM. */
struct fs_device_spec *fs_config_add_device(struct fs_config *cfg, const char *name);

/* Free the strings of a spec (fs_device_spec_defaults() allocates the name). */
void fs_device_spec_free(struct fs_device_spec *spec);

/*
 * Read the config file @path for config_read_string(): all of it, at most
 * 16 MiB, from a regular file, a pipe (-c <(command)) or a character device;
 * a directory, a FIFO nobody writes to and a NUL byte are refused. Every file
 * it @includes (relative to @include_dir) must be a regular file, as libconfig
 * opens those itself and would block on a FIFO; they may nest 10 deep and
 * number 64 in all. No integer literal, here or in an included file, may be
 * larger than the type libconfig would silently cut it to ("FILE:LINE:
 * integer N does not fit ..."). Returns 0 with the NUL-terminated text in
 * *@text (free() it), or -errno with "FILE: cannot read: ..." or
 * "FILE:LINE: ..." in @err.
 */
int fs_config_read_text(const char *path, const char *include_dir, char **text, char *err,
                        size_t errlen);

/* "a directory", "a FIFO", ... for messages about a file of type @mode. */
const char *fs_file_kind(mode_t mode);

#endif
