/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * libFuzzer harness for the control-value parser (src/control/ctl.c): what a
 * write to a control file, a config value or -o NAME=VALUE goes through. The
 * first byte picks the registry entry, the rest is the value, passed with its
 * exact length (not NUL-terminated), as a FUSE write passes it. Beyond memory
 * errors it checks the contract: only 0, -EINVAL or -EACCES; an accepted
 * value is in range and reads back the same when printed and parsed again; a
 * refusal always says why.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "control/ctl.h"

static const struct ctl_entry *pick(uint8_t byte)
{
	const struct ctl_entry *const *g = ctl_entries(CTL_GLOBAL);
	const struct ctl_entry *const *d = ctl_entries(CTL_DEVICE);
	unsigned ng = 0, nd = 0;

	while (g[ng])
		ng++;
	while (d[nd])
		nd++;
	byte %= ng + nd;
	return byte < ng ? g[byte] : d[byte - ng];
}

/* The value of an accepted parse must obey the entry's type and range. */
static void check_accepted(const struct ctl_entry *e, uint64_t v)
{
	char text[32];
	uint64_t again = ~v;

	switch (e->type) {
	case CTL_UINT:
	case CTL_BYTES:
		CHECK(v >= e->min && v <= e->max);
		snprintf(text, sizeof(text), "%" PRIu64, v);
		CHECK(ctl_parse(e, text, strlen(text), &again) == 0 && again == v);
		break;
	case CTL_ENUM: {
		uint64_t n = 0;

		while (e->enum_names[n])
			n++;
		CHECK(v < n);
		CHECK(ctl_parse(e, e->enum_names[v], strlen(e->enum_names[v]), &again) == 0 &&
		      again == v);
		break;
	}
	case CTL_ACTION:
		CHECK(v == 1);
		break;
	default:
		CHECK(!"a read-only entry accepted a value");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct ctl_entry *e;
	char why[160], small[8], range[96];
	uint64_t v = 0, plain = 0;
	char *text;
	int rc;

	if (size == 0)
		return 0;
	e = pick(data[0]);
	/* An exact-size copy, so ASan sees any read past the value's end. */
	text = malloc(size - 1 ? size - 1 : 1);
	CHECK(text);
	memcpy(text, data + 1, size - 1);
	memset(why, 0x55, sizeof(why));
	rc = ctl_parse_explain(e, text, size - 1, &v, why, sizeof(why));
	CHECK(rc == 0 || rc == -EINVAL || rc == -EACCES);
	CHECK(rc != -EACCES || !e->set || e->type == CTL_STRING || e->type == CTL_TEXT);
	CHECK(memchr(why, '\0', sizeof(why)));
	if (rc < 0)
		CHECK(why[0] != '\0');
	else
		check_accepted(e, v);
	/* The same answer without an explanation, or with a tiny buffer for it. */
	CHECK(ctl_parse(e, text, size - 1, &plain) == rc && (rc < 0 || plain == v));
	CHECK(ctl_parse_explain(e, text, size - 1, &plain, small, sizeof(small)) == rc);
	CHECK(memchr(small, '\0', sizeof(small)));
	ctl_describe_values(e, range, sizeof(range));
	CHECK(memchr(range, '\0', sizeof(range)));
	free(text);
	return 0;
}
