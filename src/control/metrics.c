/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The `metrics` control file: every device's statistics and tunables and the
 * global memory gauges in Prometheus text exposition format (version 0.0.4),
 * so a node_exporter textfile collector or a scraper can read it as is.
 */
#include "control/ctl_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/device.h"

static const char *const mode_names[] = {"writeback", "writethrough", "none"};

/* Label values escape backslash, double quote and newline. */
static void put_label(struct ctl_text *t, const char *s)
{
	for (; s && *s; s++) {
		if (*s == '\\' || *s == '"')
			ctl_text_printf(t, "\\%c", *s);
		else if (*s == '\n')
			ctl_text_printf(t, "\\n");
		else
			ctl_text_printf(t, "%c", *s);
	}
}

static void put_family(struct ctl_text *t, const char *name, const char *suffix, bool gauge,
                       const char *help)
{
	ctl_text_printf(t, "# HELP bufio_%s%s %s\n", name, suffix, help);
	ctl_text_printf(t, "# TYPE bufio_%s%s %s\n", name, suffix, gauge ? "gauge" : "counter");
}

/* "bufio_NAME{device="dev"@extra} ": @extra adds labels (",mode=\"x\"") or is "". */
static void put_dev_sample(struct ctl_text *t, const char *name, const char *suffix,
                           struct fs_device *dev, const char *extra)
{
	ctl_text_printf(t, "bufio_%s%s{device=\"", name, suffix);
	put_label(t, dev->spec.name);
	ctl_text_printf(t, "\"%s} ", extra);
}

/* Counters get the conventional _total suffix; gauges keep the field name. */
static void put_stats(struct ctl_text *t, struct fs_device *const *devs, unsigned n,
                      const struct bufio_stats *st)
{
	for (unsigned f = 0; f < ctl_nstat_fields; f++) {
		const struct ctl_stat_field *sf = &ctl_stat_fields[f];
		const char *suffix = sf->gauge ? "" : "_total";

		put_family(t, sf->name, suffix, sf->gauge, sf->doc);
		for (unsigned d = 0; d < n; d++) {
			put_dev_sample(t, sf->name, suffix, devs[d], "");
			ctl_text_printf(t, "%" PRIu64 "\n", ctl_stat_value(&st[d], sf));
		}
	}
	put_family(t, "hit_ratio", "", true, "hits / (hits + misses) since the last clear_stats");
	for (unsigned d = 0; d < n; d++) {
		put_dev_sample(t, "hit_ratio", "", devs[d], "");
		ctl_text_printf(t, "%.6f\n", ctl_hit_ratio(&st[d]));
	}
}

static void put_dev_tunables(struct ctl_text *t, struct fs_device *const *devs, unsigned n)
{
	static const char *const names[] = {"writeback_ratio",   "dirty_expire_seconds",
	                                    "read_ahead_kb",     "max_write_failures",
	                                    "device_size_bytes", "block_size"};

	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const struct ctl_entry *e = ctl_find(CTL_DEVICE, names[i]);

		put_family(t, e->name, "", true, e->doc);
		for (unsigned d = 0; d < n; d++) {
			uint64_t v = 0;

			e->get(devs[d], &v);
			put_dev_sample(t, e->name, "", devs[d], "");
			ctl_text_printf(t, "%" PRIu64 "\n", v);
		}
	}
	put_family(t, "cache_mode", "", true, "1 for the device's current cache mode");
	for (unsigned d = 0; d < n; d++) {
		unsigned mode = atomic_load(&devs[d]->cache_mode);

		for (unsigned m = 0; m < 3; m++) {
			char extra[32];

			snprintf(extra, sizeof(extra), ",mode=\"%s\"", mode_names[m]);
			put_dev_sample(t, "cache_mode", "", devs[d], extra);
			ctl_text_printf(t, "%d\n", m == mode);
		}
	}
	put_family(t, "mode", "", true,
	           "1 for the device's current mode (read-only after persistent write-back "
	           "failures)");
	for (unsigned d = 0; d < n; d++) {
		const struct ctl_entry *e = ctl_find(CTL_DEVICE, "mode");
		uint64_t mode = 0;

		e->get(devs[d], &mode);
		for (unsigned m = 0; e->enum_names[m]; m++) {
			char extra[32];

			snprintf(extra, sizeof(extra), ",mode=\"%s\"", e->enum_names[m]);
			put_dev_sample(t, "mode", "", devs[d], extra);
			ctl_text_printf(t, "%d\n", m == mode);
		}
	}
}

static void put_global(struct ctl_text *t)
{
	static const char *const names[] = {"max_cache_size_bytes",
	                                    "effective_cache_size_bytes",
	                                    "current_allocated_bytes",
	                                    "peak_allocated_bytes",
	                                    "retain_bytes",
	                                    "max_age_seconds"};

	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const struct ctl_entry *e = ctl_find(CTL_GLOBAL, names[i]);
		uint64_t v = 0;

		e->get(NULL, &v);
		put_family(t, e->name, "", true, e->doc);
		ctl_text_printf(t, "bufio_%s %" PRIu64 "\n", e->name, v);
	}
	put_family(t, "leaked_buffers", "", true,
	           "buffers found still held when a client was destroyed");
	ctl_text_printf(t, "bufio_leaked_buffers %" PRIu64 "\n", bufio_leaked_buffers());
	put_family(t, "pressure_source", "", true, "1 for the memory-pressure source in use");
	ctl_text_printf(t, "bufio_pressure_source{source=\"%s\"} 1\n", bufio_pressure_source());
}

int ctl_show_metrics(struct fs_device *unused, char *buf, size_t size)
{
	unsigned n;
	struct fs_device *const *devs = ctl_devices(&n);
	struct bufio_stats *st = calloc(n ? n : 1, sizeof(*st));
	struct ctl_text t;

	if (!st)
		return -ENOMEM;
	for (unsigned d = 0; d < n; d++)
		bufio_get_stats(devs[d]->client, &st[d]);
	ctl_text_init(&t, buf, size);
	put_global(&t);
	put_stats(&t, devs, n, st);
	put_dev_tunables(&t, devs, n);
	free(st);
	return ctl_text_result(&t);
}
