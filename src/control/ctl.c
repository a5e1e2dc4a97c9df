/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The control registry's common half: lookup, the value parser (suffixes,
 * ranges, enum names) and the read/write rules every control file obeys.
 */
#include "control/ctl_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Longest value text accepted; a number with a suffix is far shorter. */
#define CTL_MAX_VALUE 64
/*
 * Longest input, whitespace included. The kernel splits a write(2) larger than
 * FUSE's max_write into several requests: refusing long inputs outright keeps
 * the first piece of such a write (a number, then padding) from being applied
 * while the rest is rejected.
 */
#define CTL_MAX_INPUT 4096

static struct fs_device **ctl_devs;
static unsigned ctl_ndevs;

const struct ctl_entry *const *ctl_entries(enum ctl_scope scope)
{
	return scope == CTL_GLOBAL ? ctl_global_table : ctl_device_table;
}

const struct ctl_entry *ctl_find(enum ctl_scope scope, const char *name)
{
	if (!name)
		return NULL;
	for (const struct ctl_entry *const *e = ctl_entries(scope); *e; e++)
		if (strcmp((*e)->name, name) == 0)
			return *e;
	return NULL;
}

void ctl_set_devices(struct fs_device **devs, unsigned n)
{
	ctl_devs = devs;
	ctl_ndevs = devs ? n : 0;
}

struct fs_device *const *ctl_devices(unsigned *n)
{
	*n = ctl_ndevs;
	return ctl_devs;
}

void ctl_text_init(struct ctl_text *t, char *buf, size_t size)
{
	t->buf = buf;
	t->size = size;
	t->len = 0;
	if (size)
		buf[0] = '\0';
}

void ctl_text_printf(struct ctl_text *t, const char *fmt, ...)
{
	size_t room = t->len < t->size ? t->size - t->len : 0;
	va_list ap;

	va_start(ap, fmt);
	/* The analyzer loses va_start on x86-64's array-typed va_list. */
	// NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
	int n = vsnprintf(room ? t->buf + t->len : NULL, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->len += (size_t)n;
}

int ctl_text_result(const struct ctl_text *t)
{
	return t->len > INT_MAX ? -EOVERFLOW : (int)t->len;
}

double ctl_hit_ratio(const struct bufio_stats *st)
{
	uint64_t lookups = st->hits + st->misses;

	return lookups ? (double)st->hits / (double)lookups : 0.0;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Narrow [*s, *s + *len) to its non-whitespace core. */
static void trim(const char **s, size_t *len)
{
	while (*len && is_space(**s)) {
		(*s)++;
		(*len)--;
	}
	while (*len && is_space((*s)[*len - 1]))
		(*len)--;
}

static void explain(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void explain(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (!why || !whylen)
		return;
	va_start(ap, fmt);
	/* The analyzer loses va_start on x86-64's array-typed va_list. */
	// NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

/* Multiplier for a size suffix: K, M, G, T, each optionally followed by "iB" or "B"; or "B". */
static int suffix_shift(const char *s, size_t len, unsigned *shift)
{
	static const char units[] = "KMGT";
	const char *u;

	if (len == 0) {
		*shift = 0;
		return 0;
	}
	if (len == 1 && (s[0] == 'B' || s[0] == 'b')) {
		*shift = 0;
		return 0;
	}
	u = strchr(units, s[0] & ~0x20);
	if (!u || *u == '\0')
		return -EINVAL;
	if (len == 2 && (s[1] == 'B' || s[1] == 'b'))
		len = 1;
	if (len == 3 && (s[1] == 'i' || s[1] == 'I') && (s[2] == 'B' || s[2] == 'b'))
		len = 1;
	if (len != 1)
		return -EINVAL;
	*shift = 10 * (unsigned)(u - units + 1);
	return 0;
}

/* Decimal digits, then (for byte values) an optional suffix; overflow is an error. */
static int parse_number(const char *s, size_t len, bool bytes, uint64_t *out, char *why,
                        size_t whylen)
{
	uint64_t v = 0;
	size_t i = 0;
	unsigned shift;

	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(s[i] - '0'), &v)) {
			explain(why, whylen, "too large");
			return -EINVAL;
		}
	}
	if (i == 0) {
		explain(why, whylen, "not a number");
		return -EINVAL;
	}
	if (!bytes) {
		if (i != len) {
			explain(why, whylen, "not a whole number");
			return -EINVAL;
		}
		*out = v;
		return 0;
	}
	while (i < len && is_space(s[i]))
		i++;
	if (suffix_shift(s + i, len - i, &shift) < 0) {
		explain(why, whylen,
		        "not a byte count (digits with an optional K, M, G or T suffix)");
		return -EINVAL;
	}
	if (shift && v > (UINT64_MAX >> shift)) {
		explain(why, whylen, "too large");
		return -EINVAL;
	}
	*out = v << shift;
	return 0;
}

static int parse_enum(const struct ctl_entry *e, const char *s, size_t len, uint64_t *out,
                      char *why, size_t whylen)
{
	struct ctl_text names;
	char list[128];

	for (uint64_t i = 0; e->enum_names && e->enum_names[i]; i++) {
		if (strlen(e->enum_names[i]) == len && memcmp(e->enum_names[i], s, len) == 0) {
			*out = i;
			return 0;
		}
	}
	ctl_describe_values(e, list, sizeof(list));
	ctl_text_init(&names, why, whylen);
	ctl_text_printf(&names, "expected one of %s", list);
	return -EINVAL;
}

/* Human form of a byte count for messages: exact K/M/G/T multiples get a suffix. */
static void format_bytes(char *buf, size_t size, uint64_t v)
{
	static const char units[] = "KMGT";
	int i = -1;

	while (i < 3 && v && (v & 1023) == 0) {
		v >>= 10;
		i++;
	}
	if (i < 0)
		snprintf(buf, size, "%" PRIu64, v);
	else
		snprintf(buf, size, "%" PRIu64 "%c", v, units[i]);
}

void ctl_describe_values(const struct ctl_entry *e, char *buf, size_t size)
{
	struct ctl_text t;
	char lo[32], hi[32];

	ctl_text_init(&t, buf, size);
	switch (e->type) {
	case CTL_UINT:
		ctl_text_printf(&t, "%" PRIu64 "..%" PRIu64, e->min, e->max);
		break;
	case CTL_BYTES:
		format_bytes(lo, sizeof(lo), e->min);
		format_bytes(hi, sizeof(hi), e->max);
		ctl_text_printf(&t, "%s..%s", lo, hi);
		break;
	case CTL_ENUM:
		for (unsigned i = 0; e->enum_names && e->enum_names[i]; i++)
			ctl_text_printf(&t, "%s%s", i ? ", " : "", e->enum_names[i]);
		break;
	case CTL_ACTION:
		ctl_text_printf(&t, "1");
		break;
	case CTL_STRING:
	case CTL_TEXT:
		ctl_text_printf(&t, "read-only text");
		break;
	}
}

int ctl_parse_explain(const struct ctl_entry *e, const char *text, size_t len, uint64_t *val,
                      char *why, size_t whylen)
{
	uint64_t v;
	int rc;

	explain(why, whylen, "invalid value");
	if (!e->set) {
		explain(why, whylen, "%s is read-only", e->name);
		return -EACCES;
	}
	if (!text)
		len = 0;
	if (len > CTL_MAX_INPUT) {
		explain(why, whylen, "value too long");
		return -EINVAL;
	}
	trim(&text, &len);
	if (len == 0) {
		explain(why, whylen, "empty value");
		return -EINVAL;
	}
	if (len > CTL_MAX_VALUE) {
		explain(why, whylen, "value too long");
		return -EINVAL;
	}
	switch (e->type) {
	case CTL_UINT:
	case CTL_BYTES:
		rc = parse_number(text, len, e->type == CTL_BYTES, &v, why, whylen);
		if (rc < 0)
			return rc;
		if (v < e->min || v > e->max) {
			char range[80];

			ctl_describe_values(e, range, sizeof(range));
			explain(why, whylen, "out of range %s", range);
			return -EINVAL;
		}
		break;
	case CTL_ENUM:
		rc = parse_enum(e, text, len, &v, why, whylen);
		if (rc < 0)
			return rc;
		break;
	case CTL_ACTION:
		if (len != 1 || text[0] != '1') {
			explain(why, whylen, "write 1 to trigger %s", e->name);
			return -EINVAL;
		}
		v = 1;
		break;
	default:
		explain(why, whylen, "%s is read-only", e->name);
		return -EACCES;
	}
	*val = v;
	return 0;
}

int ctl_parse(const struct ctl_entry *e, const char *text, size_t len, uint64_t *val)
{
	return ctl_parse_explain(e, text, len, val, NULL, 0);
}

/* Device entries need a device; global ones ignore it. */
static bool scope_ok(const struct ctl_entry *e, const struct fs_device *dev)
{
	return e->scope == CTL_GLOBAL || dev != NULL;
}

int ctl_write(const struct ctl_entry *e, struct fs_device *dev, const char *text, size_t len)
{
	uint64_t v;
	int rc;

	if (!e->set && !e->command)
		return -EACCES;
	if (!scope_ok(e, dev))
		return -EINVAL;
	if (e->command)
		return e->command(dev, text, len);
	rc = ctl_parse(e, text, len, &v);
	if (rc < 0)
		return rc;
	return e->set(dev, v);
}

/* STRING and TEXT entries: the show text, then the newline for STRING. */
static int read_text(const struct ctl_entry *e, struct fs_device *dev, char *buf, size_t size)
{
	int n = e->show(dev, buf, size);

	if (n < 0 || e->type == CTL_TEXT)
		return n;
	if ((size_t)n + 1 < size) {
		buf[n] = '\n';
		buf[n + 1] = '\0';
	}
	return n + 1;
}

int ctl_read(const struct ctl_entry *e, struct fs_device *dev, char *buf, size_t size)
{
	uint64_t v;
	int rc;

	if (!scope_ok(e, dev))
		return -EINVAL;
	if (e->type == CTL_ACTION)
		return -EACCES;
	if (e->type == CTL_STRING || e->type == CTL_TEXT)
		return e->show ? read_text(e, dev, buf, size) : -EACCES;
	if (!e->get)
		return -EACCES;
	rc = e->get(dev, &v);
	if (rc < 0)
		return rc;
	if (e->type == CTL_ENUM) {
		const char *name = NULL;

		for (uint64_t i = 0; e->enum_names && e->enum_names[i]; i++)
			if (i == v)
				name = e->enum_names[i];
		if (!name)
			return -EIO;
		return snprintf(buf, size, "%s\n", name);
	}
	return snprintf(buf, size, "%" PRIu64 "\n", v);
}
