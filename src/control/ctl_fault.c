/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Test-only: control/DEVICE/fault_inject of bufiofs-fault, the daemon built
 * with BUFIOFS_FAULT_INJECT for the reliability tests (never installed). Every
 * backing sits under the fault backend; writing a rule here makes its reads,
 * writes, flushes or discards fail or slow down.
 */
#ifndef BUFIOFS_FAULT_INJECT
#error "ctl_fault.c belongs to the bufiofs-fault test daemon only"
#endif

#include "control/ctl_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "backend/be_fault.h"
#include "daemon/device.h"

/* Longest command accepted: a rule with every key spelled out fits easily. */
#define FAULT_MAX_COMMAND 512

static const struct {
	const char *name;
	int err;
} errnos[] = {
    {"EIO", EIO},         {"ENOSPC", ENOSPC},       {"ENODEV", ENODEV}, {"ENXIO", ENXIO},
    {"EROFS", EROFS},     {"ENOMEM", ENOMEM},       {"EAGAIN", EAGAIN}, {"EILSEQ", EILSEQ},
    {"ENODATA", ENODATA}, {"ETIMEDOUT", ETIMEDOUT},
};

static const char *const op_names[] = {"read", "write", "flush", "discard"};

static int set_nothing(struct fs_device *dev, uint64_t val)
{
	return 0;
}

/* Stand-ins that let the registry's own parser read the numbers. */
static const struct ctl_entry bytes_value = {
    .name = "bytes", .type = CTL_BYTES, .max = UINT64_MAX, .set = set_nothing};
static const struct ctl_entry uint_value = {
    .name = "number", .type = CTL_UINT, .max = UINT64_MAX, .set = set_nothing};

static int parse_ops(const char *s, size_t len, unsigned *ops)
{
	*ops = 0;
	while (len) {
		size_t w = 0;
		unsigned bit = 0;

		while (w < len && s[w] != ',')
			w++;
		if (w == 3 && memcmp(s, "all", 3) == 0)
			bit = 0xf;
		for (unsigned i = 0; i < 4 && !bit; i++)
			if (strlen(op_names[i]) == w && memcmp(s, op_names[i], w) == 0)
				bit = 1u << i;
		if (!bit)
			return -EINVAL;
		*ops |= bit;
		s += w;
		len -= w;
		if (len) { /* the comma */
			s++;
			len--;
		}
	}
	return *ops ? 0 : -EINVAL;
}

static int parse_errno(const char *s, size_t len, int *err)
{
	uint64_t v;

	for (unsigned i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++)
		if (strlen(errnos[i].name) == len && memcmp(s, errnos[i].name, len) == 0) {
			*err = -errnos[i].err;
			return 0;
		}
	if (ctl_parse(&uint_value, s, len, &v) < 0 || v == 0 || v > 4095)
		return -EINVAL;
	*err = -(int)v;
	return 0;
}

/* One KEY=VALUE word of a rule into @r. */
static int parse_word(const char *key, size_t klen, const char *val, size_t vlen,
                      struct be_fault_rule *r)
{
	uint64_t v;

#define IS(k) (klen == strlen(k) && memcmp(key, k, klen) == 0)
	if (IS("op"))
		return parse_ops(val, vlen, &r->ops);
	if (IS("error"))
		return parse_errno(val, vlen, &r->error);
	if (IS("start") || IS("end")) {
		if (ctl_parse(&bytes_value, val, vlen, &v) < 0)
			return -EINVAL;
		*(IS("start") ? &r->start : &r->end) = v;
		return 0;
	}
	if (ctl_parse(&uint_value, val, vlen, &v) < 0)
		return -EINVAL;
	if (IS("count"))
		r->count = v;
	else if (IS("after"))
		r->after = v;
	else if (IS("probability") && v <= 1000000)
		r->probability = (unsigned)v;
	else if (IS("delay_ms") && v <= 60000)
		r->delay_us = (unsigned)v * 1000;
	else if (IS("stall_ms") && v <= 60000)
		r->stall_us = (unsigned)v * 1000;
	else
		return -EINVAL;
	return 0;
#undef IS
}

/*
 * "clear", or a rule: words KEY=VALUE separated by blanks; keys op
 * (read,write,flush,discard,all), start, end (bytes, K/M/G), error (EIO,
 * ENOSPC, ... or a number), count, after, probability (ppm), delay_ms,
 * stall_ms (the submitting thread sleeps, unreported to its pool).
 */
static int fault_command(struct fs_device *dev, const char *text, size_t len)
{
	struct be_fault_rule r = {0};
	char buf[FAULT_MAX_COMMAND + 1], *save = NULL;

	if (len > FAULT_MAX_COMMAND)
		return -EINVAL;
	memcpy(buf, text, len);
	buf[len] = '\0';
	for (char *w = strtok_r(buf, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save)) {
		char *eq = strchr(w, '=');

		if (strcmp(w, "clear") == 0) {
			be_fault_clear_rules(dev->be);
			return 0;
		}
		if (!eq || parse_word(w, (size_t)(eq - w), eq + 1, strlen(eq + 1), &r) < 0)
			return -EINVAL;
	}
	if (!r.error && !r.delay_us && !r.stall_us)
		return -EINVAL; /* a rule that does nothing is a typo */
	return be_fault_add_rule(dev->be, &r) < 0 ? -EINVAL : 0;
}

/* What passed through the fault backend, and how much of it a rule failed. */
static int fault_show(struct fs_device *dev, char *buf, size_t size)
{
	struct be_counts k;
	struct ctl_text t;

	be_fault_counts(dev->be, &k);
	ctl_text_init(&t, buf, size);
	for (unsigned i = 0; i < 4; i++)
		ctl_text_printf(&t, "%s %" PRIu64 "\n", op_names[i], k.ops[i]);
	ctl_text_printf(&t, "injected %" PRIu64 "\n", be_fault_injected(dev->be));
	return ctl_text_result(&t);
}

const struct ctl_entry ctl_ent_fault_inject = {
    .name = "fault_inject",
    .type = CTL_TEXT,
    .scope = CTL_DEVICE,
    .doc = "test daemon only: write a fault rule (op=read,write,flush,discard start= end= "
           "error= count= after= probability= delay_ms= stall_ms=) or clear; read the I/O counts",
    .show = fault_show,
    .command = fault_command,
};
