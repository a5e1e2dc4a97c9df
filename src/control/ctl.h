/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The control registry: every tunable, statistic and action of bufiofs as a
 * named entry with a type, unit, range and doc. The FUSE control directory,
 * the libconfig loader, `-o name=value` and the metrics exporter all read and
 * write through it, so a name means the same thing everywhere.
 */
#ifndef BUFIOFS_CTL_H
#define BUFIOFS_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fs_device;

enum ctl_type {
	CTL_UINT,   /* unsigned integer */
	CTL_BYTES,  /* unsigned byte count; K/M/G/T suffixes (1024-based) on input */
	CTL_ENUM,   /* one of a list of names */
	CTL_STRING, /* read-only text (backing path, io engine) */
	CTL_TEXT,   /* read-only multi-line text (stats, metrics) */
	CTL_ACTION, /* write-only trigger: accepts "1" */
};

enum ctl_scope {
	CTL_GLOBAL, /* MOUNTPOINT/control/NAME */
	CTL_DEVICE, /* MOUNTPOINT/control/DEVICE/NAME */
};

struct ctl_entry;

/* One registry entry. Read-only entries have no ->set. */
struct ctl_entry {
	const char *name;
	enum ctl_type type;
	enum ctl_scope scope;
	const char *unit;  /* "bytes", "seconds", "buffers", ... or NULL */
	const char *doc;   /* one line, for --help, the config reference, metrics HELP */
	uint64_t min, max; /* inclusive range for UINT/BYTES */
	const char *const *enum_names; /* NULL-terminated, for CTL_ENUM */
	bool configurable;             /* settable from the config file and -o */
	/* Current value (UINT/BYTES/ENUM index) for dev (NULL for global). */
	int (*get)(struct fs_device *dev, uint64_t *val);
	/* Text for STRING/TEXT entries: writes at most size bytes, returns the
	 * full length or -errno (like snprintf). */
	int (*show)(struct fs_device *dev, char *buf, size_t size);
	/* Apply an already parsed and range-checked value; 0 or -errno. */
	int (*set)(struct fs_device *dev, uint64_t val);
	/* A TEXT entry that takes free-form commands instead of a value
	 * (the test daemon's fault_inject): @text as written; 0 or -errno. */
	int (*command)(struct fs_device *dev, const char *text, size_t len);
};

/* The registry, NULL-terminated by scope. */
const struct ctl_entry *const *ctl_entries(enum ctl_scope scope);

/* Find by name in a scope; NULL if unknown. */
const struct ctl_entry *ctl_find(enum ctl_scope scope, const char *name);

/*
 * Format the entry's value followed by a newline into @buf (NUL-terminated).
 * Returns the length (which may exceed @size - 1: call again with a bigger
 * buffer) or -errno (-EACCES for a write-only action).
 */
int ctl_read(const struct ctl_entry *e, struct fs_device *dev, char *buf, size_t size);

/*
 * Parse @text (@len bytes, not necessarily NUL-terminated; surrounding
 * whitespace ignored; more than 4096 bytes in all is refused), check type and
 * range, and apply it. Returns 0, -EINVAL (unparsable, too long, out of
 * range, unknown enum name: nothing changed) or -EACCES (read-only entry), or
 * the setter's error. A command entry gets @text as it is.
 */
int ctl_write(const struct ctl_entry *e, struct fs_device *dev, const char *text, size_t len);

/* Parse a value for @e without applying it (config and -o validation). */
int ctl_parse(const struct ctl_entry *e, const char *text, size_t len, uint64_t *val);

/*
 * ctl_parse that also says why a value was refused ("out of range 0..1000",
 * "not a number", ...) in @why, for the messages of the config loader and
 * -o. @why may be NULL.
 */
int ctl_parse_explain(const struct ctl_entry *e, const char *text, size_t len, uint64_t *val,
                      char *why, size_t whylen);

/* "0..1000", "512..64M"-style description of what @e accepts, for --help. */
void ctl_describe_values(const struct ctl_entry *e, char *buf, size_t size);

/*
 * Tell the registry which devices are served (for global entries that sum
 * or list them, like metrics). Call once the devices are open, before the
 * mount; the array must outlive the mount.
 */
void ctl_set_devices(struct fs_device **devs, unsigned n);

#endif
