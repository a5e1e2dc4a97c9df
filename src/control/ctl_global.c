/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Global control entries: libbufio's process-wide memory policy (dm-bufio's
 * module parameters), the totals over every device and the metrics file.
 */
#include "control/ctl_internal.h"

#include <errno.h>
#include <stdio.h>

/* Generous ceilings: they only stop typos like 1000T, the core decides the rest. */
#define CTL_MAX_BYTES (1ull << 50)
#define CTL_MAX_AGE   (30ull * 24 * 3600)

static int get_max_cache_size(struct fs_device *dev, uint64_t *val)
{
	*val = bufio_get_max_cache_size();
	return 0;
}

static int set_max_cache_size(struct fs_device *dev, uint64_t val)
{
	return bufio_set_max_cache_size(val);
}

static int get_effective_cache_size(struct fs_device *dev, uint64_t *val)
{
	*val = bufio_get_effective_cache_size();
	return 0;
}

static int get_max_age(struct fs_device *dev, uint64_t *val)
{
	*val = bufio_get_max_age();
	return 0;
}

static int set_max_age(struct fs_device *dev, uint64_t val)
{
	return bufio_set_max_age((unsigned)val);
}

static int get_retain(struct fs_device *dev, uint64_t *val)
{
	*val = bufio_get_retain_bytes();
	return 0;
}

static int set_retain(struct fs_device *dev, uint64_t val)
{
	return bufio_set_retain_bytes(val);
}

static int get_peak(struct fs_device *dev, uint64_t *val)
{
	*val = bufio_get_peak_allocated();
	return 0;
}

/* The range is 0..0: the only write is the reset, as with bcache's clear_stats. */
static int reset_peak(struct fs_device *dev, uint64_t val)
{
	bufio_reset_peak_allocated();
	return 0;
}

static int get_current(struct fs_device *dev, uint64_t *val)
{
	*val = bufio_get_current_allocated();
	return 0;
}

static int show_pressure_source(struct fs_device *dev, char *buf, size_t size)
{
	return snprintf(buf, size, "%s", bufio_pressure_source());
}

static int global_stat(size_t offset, uint64_t *val)
{
	struct bufio_stats st;

	bufio_get_global_stats(&st);
	*val = *(const uint64_t *)((const char *)&st + offset);
	return 0;
}

#define GLOBAL_GAUGE(field, help)                                                                  \
	static int get_global_##field(struct fs_device *dev, uint64_t *val)                        \
	{                                                                                          \
		return global_stat(offsetof(struct bufio_stats, field), val);                      \
	}                                                                                          \
	static const struct ctl_entry ent_global_##field = {                                       \
	    .name = #field,                                                                        \
	    .type = CTL_UINT,                                                                      \
	    .scope = CTL_GLOBAL,                                                                   \
	    .unit = "buffers",                                                                     \
	    .doc = (help),                                                                         \
	    .get = get_global_##field,                                                             \
	};

GLOBAL_GAUGE(buffers_clean, "clean buffers cached, all devices")
GLOBAL_GAUGE(buffers_dirty, "dirty buffers waiting for write-back, all devices")
GLOBAL_GAUGE(buffers_reading, "buffers being read from a backing, all devices")
GLOBAL_GAUGE(buffers_writing, "buffers being written to a backing, all devices")
GLOBAL_GAUGE(buffers_held, "buffers held by a request right now, all devices")

static const struct ctl_entry ent_max_cache_size = {
    .name = "max_cache_size_bytes",
    .type = CTL_BYTES,
    .scope = CTL_GLOBAL,
    .unit = "bytes",
    .doc = "cache budget shared by all devices; 0 = 2% of RAM (or of the cgroup limit)",
    .min = 0,
    .max = CTL_MAX_BYTES,
    .configurable = true,
    .get = get_max_cache_size,
    .set = set_max_cache_size,
};

static const struct ctl_entry ent_effective_cache_size = {
    .name = "effective_cache_size_bytes",
    .type = CTL_BYTES,
    .scope = CTL_GLOBAL,
    .unit = "bytes",
    .doc = "the cache budget in force (max_cache_size_bytes or its default, capped to fit "
           "under the memory cgroup limit)",
    .get = get_effective_cache_size,
};

static const struct ctl_entry ent_max_age = {
    .name = "max_age_seconds",
    .type = CTL_UINT,
    .scope = CTL_GLOBAL,
    .unit = "seconds",
    .doc = "buffers unused for longer are freed by the periodic pass (down to retain_bytes)",
    .min = 0,
    .max = CTL_MAX_AGE,
    .configurable = true,
    .get = get_max_age,
    .set = set_max_age,
};

static const struct ctl_entry ent_retain = {
    .name = "retain_bytes",
    .type = CTL_BYTES,
    .scope = CTL_GLOBAL,
    .unit = "bytes",
    .doc = "the age pass keeps this much of each device cached",
    .min = 0,
    .max = CTL_MAX_BYTES,
    .configurable = true,
    .get = get_retain,
    .set = set_retain,
};

static const struct ctl_entry ent_peak = {
    .name = "peak_allocated_bytes",
    .type = CTL_BYTES,
    .scope = CTL_GLOBAL,
    .unit = "bytes",
    .doc = "highest current_allocated_bytes seen; write 0 to reset it to the current value",
    .min = 0,
    .max = 0,
    .get = get_peak,
    .set = reset_peak,
};

static const struct ctl_entry ent_current = {
    .name = "current_allocated_bytes",
    .type = CTL_BYTES,
    .scope = CTL_GLOBAL,
    .unit = "bytes",
    .doc = "bytes of buffer memory allocated now, all devices",
    .get = get_current,
};

static const struct ctl_entry ent_pressure_source = {
    .name = "pressure_source",
    .type = CTL_STRING,
    .scope = CTL_GLOBAL,
    .doc = "where memory-pressure notifications come from: cgroup, system or none",
    .show = show_pressure_source,
};

static const struct ctl_entry ent_metrics = {
    .name = "metrics",
    .type = CTL_TEXT,
    .scope = CTL_GLOBAL,
    .doc = "every statistic of every device in Prometheus text exposition format",
    .show = ctl_show_metrics,
};

const struct ctl_entry *const ctl_global_table[] = {
    &ent_max_cache_size,
    &ent_max_age,
    &ent_retain,
    &ent_peak,
    &ent_current,
    &ent_effective_cache_size,
    &ent_global_buffers_clean,
    &ent_global_buffers_dirty,
    &ent_global_buffers_reading,
    &ent_global_buffers_writing,
    &ent_global_buffers_held,
    &ent_pressure_source,
    &ent_metrics,
    NULL,
};
