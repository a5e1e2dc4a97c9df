/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Shared between the files of the control registry: the entry tables, the
 * table of libbufio statistics fields and a bounded text builder.
 */
#ifndef BUFIOFS_CTL_INTERNAL_H
#define BUFIOFS_CTL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bufio/bufio.h>

#include "control/ctl.h"

/*
 * Every field of struct bufio_stats: name, gauge (true) or counter, unit and
 * doc. One list feeds the per-counter files, the stats file and the metrics,
 * so they cannot drift apart.
 */
#define CTL_STATS_FIELDS(X)                                                                        \
	X(hits, false, "lookups", "lookups that found the block cached")                           \
	X(misses, false, "lookups", "lookups that had to create the buffer")                       \
	X(reads, false, "ops", "reads submitted to the backing")                                   \
	X(read_bytes, false, "bytes", "bytes read from the backing")                               \
	X(writes, false, "ops", "writes submitted to the backing")                                 \
	X(write_bytes, false, "bytes", "bytes written to the backing")                             \
	X(writebacks, false, "ops", "writes started by background write-back")                     \
	X(flushes, false, "ops", "flushes sent to the backing")                                    \
	X(discards, false, "ops", "discards sent to the backing")                                  \
	X(prefetches, false, "blocks", "blocks whose read was started by prefetch")                \
	X(read_errors, false, "ops", "backing reads that failed")                                  \
	X(write_errors, false, "ops", "backing writes that failed")                                \
	X(evict_budget, false, "buffers", "buffers evicted by the global memory budget")           \
	X(evict_age, false, "buffers", "buffers evicted by max_age_seconds")                       \
	X(evict_pressure, false, "buffers", "buffers evicted under memory pressure")               \
	X(evict_forget, false, "buffers", "buffers forgotten (forget, drop_caches, discard)")      \
	X(evict_reuse, false, "buffers", "buffers reused in place for another block")              \
	X(alloc_failures, false, "buffers", "buffer allocations that failed")                      \
	X(reserve_used, false, "buffers", "times the reserve supplied a buffer")                   \
	X(buffers_clean, true, "buffers", "clean buffers cached")                                  \
	X(buffers_dirty, true, "buffers", "dirty buffers waiting for write-back")                  \
	X(buffers_reading, true, "buffers", "buffers being read from the backing")                 \
	X(buffers_writing, true, "buffers", "buffers being written to the backing")                \
	X(buffers_held, true, "buffers", "buffers held by a request right now")                    \
	X(bytes_cached, true, "bytes", "bytes of cached blocks")                                   \
	X(write_failures, true, "attempts",                                                        \
	  "consecutive failed write-back attempts; 0 once one succeeds")

struct ctl_stat_field {
	const char *name;
	size_t offset; /* in struct bufio_stats */
	bool gauge;
	const char *unit;
	const char *doc;
};

extern const struct ctl_stat_field ctl_stat_fields[];
extern const unsigned ctl_nstat_fields;

static inline uint64_t ctl_stat_value(const struct bufio_stats *st, const struct ctl_stat_field *f)
{
	return *(const uint64_t *)((const char *)st + f->offset);
}

/* hits / (hits + misses); 0 before the first lookup. */
double ctl_hit_ratio(const struct bufio_stats *st);

/* The NULL-terminated tables of ctl_global.c and ctl_device.c. */
extern const struct ctl_entry *const ctl_global_table[];
extern const struct ctl_entry *const ctl_device_table[];

#ifdef BUFIOFS_FAULT_INJECT
/* The test daemon's control/DEVICE/fault_inject (ctl_fault.c). */
extern const struct ctl_entry ctl_ent_fault_inject;
#endif

/* The devices given to ctl_set_devices(). */
struct fs_device *const *ctl_devices(unsigned *n);

/* The global `metrics` file (metrics.c). */
int ctl_show_metrics(struct fs_device *dev, char *buf, size_t size);

/*
 * snprintf-style accumulation: appends while there is room, always counts
 * the full length, so the caller can report the size it would need.
 */
struct ctl_text {
	char *buf;
	size_t size;
	size_t len;
};

void ctl_text_init(struct ctl_text *t, char *buf, size_t size);
void ctl_text_printf(struct ctl_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Final length, or -EOVERFLOW when it no longer fits an int. */
int ctl_text_result(const struct ctl_text *t);

#endif
