/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Per-device control entries: the device's tunables, its identity, its
 * libbufio statistics (one file each and all together) and its actions.
 */
#include "control/ctl_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "daemon/device.h"

#define X(f, is_gauge, u, d)                                                                       \
	{.name = #f,                                                                               \
	 .offset = offsetof(struct bufio_stats, f),                                                \
	 .gauge = (is_gauge),                                                                      \
	 .unit = (u),                                                                              \
	 .doc = (d)},
const struct ctl_stat_field ctl_stat_fields[] = {CTL_STATS_FIELDS(X)};
#undef X
const unsigned ctl_nstat_fields = sizeof(ctl_stat_fields) / sizeof(ctl_stat_fields[0]);

static const char *const cache_mode_names[] = {"writeback", "writethrough", "none", NULL};
/* Indexed by enum bufio_mode. */
static const char *const mode_names[] = {"write", "read-only", NULL};

static int get_cache_mode(struct fs_device *dev, uint64_t *val)
{
	*val = atomic_load(&dev->cache_mode);
	return 0;
}

static int set_cache_mode(struct fs_device *dev, uint64_t val)
{
	return fs_device_set_cache_mode(dev, (unsigned)val);
}

static int get_mode(struct fs_device *dev, uint64_t *val)
{
	*val = fs_device_mode(dev);
	return 0;
}

/* Back to write mode writes everything back first; it fails (-EIO, ...) if that does. */
static int set_mode(struct fs_device *dev, uint64_t val)
{
	if (dev->spec.readonly) /* opened read-only: there is no write mode */
		return val == BUFIO_MODE_READ_ONLY ? 0 : -EROFS;
	return bufio_set_mode(dev->client, (enum bufio_mode)val);
}

static int get_max_write_failures(struct fs_device *dev, uint64_t *val)
{
	*val = bufio_get_max_write_failures(dev->client);
	return 0;
}

static int set_max_write_failures(struct fs_device *dev, uint64_t val)
{
	return bufio_set_max_write_failures(dev->client, (unsigned)val);
}

static int get_writeback_ratio(struct fs_device *dev, uint64_t *val)
{
	*val = bufio_get_writeback_ratio(dev->client);
	return 0;
}

static int set_writeback_ratio(struct fs_device *dev, uint64_t val)
{
	return bufio_set_writeback_ratio(dev->client, (unsigned)val);
}

static int get_read_ahead(struct fs_device *dev, uint64_t *val)
{
	*val = atomic_load(&dev->read_ahead_kb);
	return 0;
}

static int set_read_ahead(struct fs_device *dev, uint64_t val)
{
	atomic_store(&dev->read_ahead_kb, (unsigned)val);
	return 0;
}

static int get_dirty_expire(struct fs_device *dev, uint64_t *val)
{
	*val = bufio_get_dirty_expire(dev->client);
	return 0;
}

static int set_dirty_expire(struct fs_device *dev, uint64_t val)
{
	return bufio_set_dirty_expire(dev->client, (unsigned)val);
}

static int get_block_size(struct fs_device *dev, uint64_t *val)
{
	*val = bufio_get_block_size(dev->client);
	return 0;
}

static int get_device_size(struct fs_device *dev, uint64_t *val)
{
	*val = dev->size;
	return 0;
}

static int show_backing(struct fs_device *dev, char *buf, size_t size)
{
	return snprintf(buf, size, "%s", dev->spec.backing ? dev->spec.backing : "");
}

static int show_io_engine(struct fs_device *dev, char *buf, size_t size)
{
	return snprintf(buf, size, "%s", dev->be && dev->be->name ? dev->be->name : "unknown");
}

static int show_stats(struct fs_device *dev, char *buf, size_t size)
{
	struct bufio_stats st;
	struct ctl_text t;

	bufio_get_stats(dev->client, &st);
	ctl_text_init(&t, buf, size);
	for (unsigned i = 0; i < ctl_nstat_fields; i++)
		ctl_text_printf(&t, "%s %" PRIu64 "\n", ctl_stat_fields[i].name,
		                ctl_stat_value(&st, &ctl_stat_fields[i]));
	ctl_text_printf(&t, "hit_ratio %.4f\n", ctl_hit_ratio(&st));
	return ctl_text_result(&t);
}

static int do_flush(struct fs_device *dev, uint64_t val)
{
	return fs_device_flush(dev);
}

static int do_drop_caches(struct fs_device *dev, uint64_t val)
{
	bufio_drop_clean(dev->client);
	return 0;
}

static int do_clear_stats(struct fs_device *dev, uint64_t val)
{
	bufio_clear_stats(dev->client);
	return 0;
}

static int stat_of(struct fs_device *dev, size_t offset, uint64_t *val)
{
	struct bufio_stats st;

	bufio_get_stats(dev->client, &st);
	*val = *(const uint64_t *)((const char *)&st + offset);
	return 0;
}

/* One read-only file per statistic, each with its own getter. */
#define X(f, is_gauge, u, d)                                                                       \
	static int get_stat_##f(struct fs_device *dev, uint64_t *val)                              \
	{                                                                                          \
		return stat_of(dev, offsetof(struct bufio_stats, f), val);                         \
	}                                                                                          \
	static const struct ctl_entry ent_stat_##f = {                                             \
	    .name = #f,                                                                            \
	    .type = CTL_UINT,                                                                      \
	    .scope = CTL_DEVICE,                                                                   \
	    .unit = (u),                                                                           \
	    .doc = (d),                                                                            \
	    .get = get_stat_##f,                                                                   \
	};
CTL_STATS_FIELDS(X)
#undef X

static const struct ctl_entry ent_cache_mode = {
    .name = "cache_mode",
    .type = CTL_ENUM,
    .scope = CTL_DEVICE,
    .doc = "writeback (cached, written back later), writethrough (written before the "
           "reply) or none (no cache); leaving writeback flushes first",
    .enum_names = cache_mode_names,
    .max = 2,
    .configurable = true,
    .get = get_cache_mode,
    .set = set_cache_mode,
};

static const struct ctl_entry ent_mode = {
    .name = "mode",
    .type = CTL_ENUM,
    .scope = CTL_DEVICE,
    .doc = "write (normal) or read-only (writes fail with EROFS; entered after "
           "max_write_failures failed write-back attempts); writing write first writes "
           "back all dirty data and fails, staying read-only, if that fails",
    .enum_names = mode_names,
    .max = 1,
    .get = get_mode,
    .set = set_mode,
};

static const struct ctl_entry ent_max_write_failures = {
    .name = "max_write_failures",
    .type = CTL_UINT,
    .scope = CTL_DEVICE,
    .unit = "attempts",
    .doc = "consecutive failed write-back attempts (retried after 1 s, doubling to 30 s) "
           "that make the device read-only; 0 = never",
    .min = 0,
    .max = 1000,
    .configurable = true,
    .get = get_max_write_failures,
    .set = set_max_write_failures,
};

static const struct ctl_entry ent_writeback_ratio = {
    .name = "writeback_ratio",
    .type = CTL_UINT,
    .scope = CTL_DEVICE,
    .doc = "background write-back starts when dirty buffers exceed this many times the "
           "clean ones; 0 = at once",
    .min = 0,
    .max = 1000,
    .configurable = true,
    .get = get_writeback_ratio,
    .set = set_writeback_ratio,
};

static const struct ctl_entry ent_dirty_expire = {
    .name = "dirty_expire_seconds",
    .type = CTL_UINT,
    .scope = CTL_DEVICE,
    .unit = "seconds",
    .doc = "dirty data older than this is written back in the background; 0 = never by age",
    .min = 0,
    .max = 86400,
    .configurable = true,
    .get = get_dirty_expire,
    .set = set_dirty_expire,
};

static const struct ctl_entry ent_read_ahead = {
    .name = "read_ahead_kb",
    .type = CTL_UINT,
    .scope = CTL_DEVICE,
    .unit = "KiB",
    .doc = "on sequential reads, read this much beyond the request in the background; "
           "0 = off",
    .min = 0,
    .max = 65536,
    .configurable = true,
    .get = get_read_ahead,
    .set = set_read_ahead,
};

static const struct ctl_entry ent_block_size = {
    .name = "block_size",
    .type = CTL_UINT,
    .scope = CTL_DEVICE,
    .unit = "bytes",
    .doc = "cache block size",
    .get = get_block_size,
};

static const struct ctl_entry ent_device_size = {
    .name = "device_size_bytes",
    .type = CTL_BYTES,
    .scope = CTL_DEVICE,
    .unit = "bytes",
    .doc = "size of the device file (backing size rounded down to a block)",
    .get = get_device_size,
};

static const struct ctl_entry ent_backing = {
    .name = "backing",
    .type = CTL_STRING,
    .scope = CTL_DEVICE,
    .doc = "the backing file or block device",
    .show = show_backing,
};

static const struct ctl_entry ent_io_engine = {
    .name = "io_engine",
    .type = CTL_STRING,
    .scope = CTL_DEVICE,
    .doc = "the I/O engine serving the backing",
    .show = show_io_engine,
};

static const struct ctl_entry ent_stats = {
    .name = "stats",
    .type = CTL_TEXT,
    .scope = CTL_DEVICE,
    .doc = "every statistic as `name value` lines, with hit_ratio",
    .show = show_stats,
};

static const struct ctl_entry ent_flush = {
    .name = "flush",
    .type = CTL_ACTION,
    .scope = CTL_DEVICE,
    .doc = "write 1: write back all dirty data and flush the backing",
    .set = do_flush,
};

static const struct ctl_entry ent_drop_caches = {
    .name = "drop_caches",
    .type = CTL_ACTION,
    .scope = CTL_DEVICE,
    .doc = "write 1: forget every clean buffer",
    .set = do_drop_caches,
};

static const struct ctl_entry ent_clear_stats = {
    .name = "clear_stats",
    .type = CTL_ACTION,
    .scope = CTL_DEVICE,
    .doc = "write 1: reset the counters",
    .set = do_clear_stats,
};

/* The order of the control directory listing: tunables, identity, stats, actions. */
#define X(f, is_gauge, u, d) &ent_stat_##f,
// clang-format off
const struct ctl_entry *const ctl_device_table[] = {
	&ent_cache_mode,
	&ent_mode,
	&ent_writeback_ratio,
	&ent_dirty_expire,
	&ent_read_ahead,
	&ent_max_write_failures,
	&ent_block_size,
	&ent_device_size,
	&ent_backing,
	&ent_io_engine,
	&ent_stats,
	CTL_STATS_FIELDS(X)
	&ent_flush,
	&ent_drop_caches,
	&ent_clear_stats,
#ifdef BUFIOFS_FAULT_INJECT
	&ctl_ent_fault_inject,
#endif
	NULL,
};
// clang-format on
#undef X
