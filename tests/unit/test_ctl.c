/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The control registry: value parsing (suffixes, whitespace, overflow, ranges,
 * enum names), the read/write rules, and every entry against real devices
 * over the memory backend, including the metrics exposition format.
 */
#include <check.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bufio/bufio.h>

#include "backend/be_fault.h"
#include "backend/be_memory.h"
#include "control/ctl.h"
#include "daemon/config.h"
#include "daemon/device.h"
#include "helpers.h"

#define DEV_SIZE (1u << 20)
#define BLOCK    4096

/*
 * The daemon's real versions live in src/daemon/device.c, which this test
 * does not link; these follow the contract in device.h.
 */
static int fail_mode_switch;

int fs_device_set_cache_mode(struct fs_device *dev, unsigned mode)
{
	int rc = 0;

	if (mode > FS_CACHE_NONE)
		return -EINVAL;
	if (fail_mode_switch)
		return -EIO;
	if (mode != FS_CACHE_WRITEBACK)
		rc = bufio_write_dirty_buffers(dev->client);
	if (rc == 0)
		atomic_store(&dev->cache_mode, mode);
	return rc;
}

int fs_device_flush(struct fs_device *dev)
{
	return bufio_write_dirty_buffers(dev->client);
}

/* A device over @be (NULL: a fresh memory backend), which it then owns. */
static struct fs_device *dev_create_over(const char *name, struct bufio_backend *be)
{
	struct fs_device *d = calloc(1, sizeof(*d));

	ck_assert_ptr_nonnull(d);
	fs_device_spec_defaults(&d->spec);
	free(d->spec.name);
	d->spec.name = strdup(name);
	d->spec.backing = strdup("/memory/backing");
	d->be = be ? be : be_memory_create(DEV_SIZE, 0);
	ck_assert_ptr_nonnull(d->be);
	d->client = bufio_client_create(d->be, BLOCK, 1, 0, NULL, NULL);
	ck_assert_ptr_nonnull(d->client);
	d->size = DEV_SIZE;
	d->lock_fd = -1;
	atomic_init(&d->cache_mode, FS_CACHE_WRITEBACK);
	pthread_rwlock_init(&d->mode_lock, NULL);
	return d;
}

static struct fs_device *dev_create(const char *name)
{
	return dev_create_over(name, NULL);
}

static void dev_destroy(struct fs_device *d)
{
	bufio_client_destroy(d->client);
	bufio_backend_close(d->be);
	pthread_rwlock_destroy(&d->mode_lock);
	fs_device_spec_free(&d->spec);
	free(d);
}

static const struct ctl_entry *G(const char *name)
{
	const struct ctl_entry *e = ctl_find(CTL_GLOBAL, name);

	ck_assert_msg(e != NULL, "no global entry %s", name);
	return e;
}

static const struct ctl_entry *D(const char *name)
{
	const struct ctl_entry *e = ctl_find(CTL_DEVICE, name);

	ck_assert_msg(e != NULL, "no device entry %s", name);
	return e;
}

static int parse(const struct ctl_entry *e, const char *s, uint64_t *v)
{
	return ctl_parse(e, s, strlen(s), v);
}

static int write_str(const struct ctl_entry *e, struct fs_device *dev, const char *s)
{
	return ctl_write(e, dev, s, strlen(s));
}

/* The value as read, in a static buffer. */
static const char *read_str(const struct ctl_entry *e, struct fs_device *dev)
{
	static char buf[65536];
	int n = ctl_read(e, dev, buf, sizeof(buf));

	ck_assert_msg(n >= 0 && (size_t)n < sizeof(buf), "read %s: %d", e->name, n);
	ck_assert_int_eq(strlen(buf), n);
	return buf;
}

static uint64_t parsed(const struct ctl_entry *e, const char *s)
{
	uint64_t v = 12345;

	ck_assert_msg(parse(e, s, &v) == 0, "%s: \"%s\" refused", e->name, s);
	return v;
}

static void refused(const struct ctl_entry *e, const char *s)
{
	uint64_t v = 12345;

	ck_assert_msg(parse(e, s, &v) == -EINVAL, "%s: \"%s\" accepted", e->name, s);
	ck_assert_int_eq(v, 12345);
}

START_TEST(test_parse_uint)
{
	const struct ctl_entry *e = D("writeback_ratio");

	ck_assert_int_eq(parsed(e, "3"), 3);
	ck_assert_int_eq(parsed(e, "0"), 0);
	ck_assert_int_eq(parsed(e, "1000"), 1000);
	ck_assert_int_eq(parsed(e, "  42\n"), 42);
	ck_assert_int_eq(parsed(e, "\t7 \r\n"), 7);
	ck_assert_int_eq(parsed(e, "007"), 7);
	refused(e, "1001");
	refused(e, "");
	refused(e, " \n");
	refused(e, "-1");
	refused(e, "+3");
	refused(e, "3x");
	refused(e, "3 4");
	refused(e, "0x10");
	refused(e, "1K"); /* suffixes are for byte values only */
	refused(e, "abc");
	refused(e, "99999999999999999999999");
	ck_assert_int_eq(parsed(G("max_age_seconds"), "2592000"), 2592000);
	refused(G("max_age_seconds"), "2592001");
	ck_assert_int_eq(parsed(D("dirty_expire_seconds"), "86400"), 86400);
	refused(D("dirty_expire_seconds"), "86401");
}
END_TEST

START_TEST(test_parse_bytes)
{
	const struct ctl_entry *e = G("max_cache_size_bytes");

	ck_assert_uint_eq(parsed(e, "4096"), 4096);
	ck_assert_uint_eq(parsed(e, "0"), 0);
	ck_assert_uint_eq(parsed(e, "1K"), 1024);
	ck_assert_uint_eq(parsed(e, "1k"), 1024);
	ck_assert_uint_eq(parsed(e, "2M"), 2u << 20);
	ck_assert_uint_eq(parsed(e, "3G"), 3ull << 30);
	ck_assert_uint_eq(parsed(e, "5T"), 5ull << 40);
	ck_assert_uint_eq(parsed(e, "1KiB"), 1024);
	ck_assert_uint_eq(parsed(e, "1MB"), 1u << 20);
	ck_assert_uint_eq(parsed(e, "1gib"), 1ull << 30);
	ck_assert_uint_eq(parsed(e, "1 G"), 1ull << 30);
	ck_assert_uint_eq(parsed(e, " 512B \n"), 512);
	ck_assert_uint_eq(parsed(e, "1024T"), 1ull << 50);
	refused(e, "1025T"); /* beyond the registry's ceiling */
	refused(e, "99999999999T");
	refused(e, "18446744073709551616");
	refused(e, "16777216T");
	refused(e, "1P");
	refused(e, "1.5G");
	refused(e, "G");
	refused(e, "1GG");
	refused(e, "1Gi");
	refused(e, "1iB");
	refused(e, "-1G");
	ck_assert_int_eq(parsed(G("peak_allocated_bytes"), "0"), 0);
	refused(G("peak_allocated_bytes"), "1");
}
END_TEST

START_TEST(test_parse_enum_action)
{
	const struct ctl_entry *m = D("cache_mode");
	const struct ctl_entry *f = D("flush");

	ck_assert_int_eq(parsed(m, "writeback"), FS_CACHE_WRITEBACK);
	ck_assert_int_eq(parsed(m, " writethrough\n"), FS_CACHE_WRITETHROUGH);
	ck_assert_int_eq(parsed(m, "none"), FS_CACHE_NONE);
	refused(m, "WriteBack");
	refused(m, "write");
	refused(m, "0");
	refused(m, "");
	ck_assert_int_eq(parsed(f, "1"), 1);
	ck_assert_int_eq(parsed(f, " 1\n"), 1);
	refused(f, "0");
	refused(f, "2");
	refused(f, "yes");
	refused(f, "11");
}
END_TEST

START_TEST(test_parse_not_terminated)
{
	const struct ctl_entry *e = D("writeback_ratio");
	uint64_t v = 0;
	char why[128];

	ck_assert_int_eq(ctl_parse(e, "123456", 3, &v), 0);
	ck_assert_int_eq(v, 123);
	ck_assert_int_eq(ctl_parse(e, "12\n999", 3, &v), 0);
	ck_assert_int_eq(v, 12);
	ck_assert_int_eq(ctl_parse_explain(e, "5000", 4, &v, why, sizeof(why)), -EINVAL);
	ck_assert_msg(strstr(why, "out of range 0..1000"), "why: %s", why);
	ck_assert_int_eq(ctl_parse_explain(D("cache_mode"), "x", 1, &v, why, sizeof(why)), -EINVAL);
	ck_assert_msg(strstr(why, "writeback, writethrough, none"), "why: %s", why);
}
END_TEST

START_TEST(test_registry_shape)
{
	static const enum ctl_scope scopes[] = {CTL_GLOBAL, CTL_DEVICE};

	for (unsigned s = 0; s < 2; s++) {
		for (const struct ctl_entry *const *p = ctl_entries(scopes[s]); *p; p++) {
			const struct ctl_entry *e = *p;

			ck_assert_msg(e->name && e->doc && *e->doc, "entry without doc");
			ck_assert_int_eq(e->scope, scopes[s]);
			ck_assert_ptr_eq(ctl_find(scopes[s], e->name), e); /* names unique */
			if (e->configurable)
				ck_assert_msg(e->set && e->get, "%s configurable", e->name);
			if (e->type == CTL_STRING || e->type == CTL_TEXT)
				ck_assert_msg(e->show && !e->set, "%s text", e->name);
			if (e->type == CTL_ACTION)
				ck_assert_msg(e->set && !e->get, "%s action", e->name);
		}
	}
	ck_assert_ptr_null(ctl_find(CTL_GLOBAL, "nope"));
	ck_assert_ptr_null(ctl_find(CTL_GLOBAL, "cache_mode"));
	ck_assert_ptr_null(ctl_find(CTL_DEVICE, "metrics"));
	/* one file per statistic, named like the struct bufio_stats fields */
	static const char *const stat_files[] = {
	    "hits",          "misses",          "reads",           "read_bytes",   "writes",
	    "write_bytes",   "writebacks",      "flushes",         "discards",     "prefetches",
	    "read_errors",   "write_errors",    "evict_budget",    "evict_age",    "evict_pressure",
	    "evict_forget",  "evict_reuse",     "alloc_failures",  "reserve_used", "buffers_clean",
	    "buffers_dirty", "buffers_reading", "buffers_writing", "buffers_held", "bytes_cached"};
	for (unsigned i = 0; i < sizeof(stat_files) / sizeof(stat_files[0]); i++)
		ck_assert_ptr_null(D(stat_files[i])->set);
}
END_TEST

START_TEST(test_global_rw)
{
	const struct ctl_entry *cs = G("max_cache_size_bytes");
	const struct ctl_entry *age = G("max_age_seconds");
	const struct ctl_entry *ret = G("retain_bytes");
	uint64_t old_age = bufio_get_max_age(), old_ret = bufio_get_retain_bytes();

	ck_assert_int_eq(write_str(cs, NULL, " 64M\n"), 0);
	ck_assert_str_eq(read_str(cs, NULL), "67108864\n");
	ck_assert_int_eq(bufio_get_max_cache_size(), 64u << 20);
	ck_assert_int_eq(write_str(cs, NULL, "garbage"), -EINVAL);
	ck_assert_int_eq(write_str(cs, NULL, "99999999999T"), -EINVAL);
	ck_assert_str_eq(read_str(cs, NULL), "67108864\n");
	ck_assert_int_eq(write_str(cs, NULL, "0"), 0);
	ck_assert_str_eq(read_str(cs, NULL), "0\n");

	ck_assert_int_eq(write_str(age, NULL, "120"), 0);
	ck_assert_str_eq(read_str(age, NULL), "120\n");
	ck_assert_int_eq(write_str(age, NULL, "-5"), -EINVAL);
	ck_assert_str_eq(read_str(age, NULL), "120\n");
	ck_assert_int_eq(write_str(ret, NULL, "1M"), 0);
	ck_assert_str_eq(read_str(ret, NULL), "1048576\n");

	ck_assert_int_eq(write_str(G("peak_allocated_bytes"), NULL, "5"), -EINVAL);
	ck_assert_int_eq(write_str(G("peak_allocated_bytes"), NULL, "0\n"), 0);

	bufio_set_max_age((unsigned)old_age);
	bufio_set_retain_bytes(old_ret);
}
END_TEST

START_TEST(test_read_only)
{
	static const char *const global_ro[] = {
	    "current_allocated_bytes", "effective_cache_size_bytes",
	    "buffers_clean",           "buffers_held",
	    "pressure_source",         "metrics"};
	static const char *const dev_ro[] = {
	    "block_size", "device_size_bytes", "backing", "io_engine", "stats",
	    "hits",       "buffers_dirty"};
	struct fs_device *d = dev_create("disk");
	uint64_t v;

	for (unsigned i = 0; i < sizeof(global_ro) / sizeof(global_ro[0]); i++) {
		ck_assert_int_eq(write_str(G(global_ro[i]), NULL, "1"), -EACCES);
		ck_assert_int_eq(parse(G(global_ro[i]), "1", &v), -EACCES);
	}
	for (unsigned i = 0; i < sizeof(dev_ro) / sizeof(dev_ro[0]); i++)
		ck_assert_int_eq(write_str(D(dev_ro[i]), d, "1"), -EACCES);
	/* actions are write-only */
	char buf[16];
	ck_assert_int_eq(ctl_read(D("flush"), d, buf, sizeof(buf)), -EACCES);
	/* device entries need a device */
	ck_assert_int_eq(write_str(D("writeback_ratio"), NULL, "3"), -EINVAL);
	ck_assert_int_eq(ctl_read(D("writeback_ratio"), NULL, buf, sizeof(buf)), -EINVAL);
	dev_destroy(d);
}
END_TEST

START_TEST(test_device_tunables)
{
	struct fs_device *d = dev_create("disk");
	const struct ctl_entry *m = D("cache_mode");

	ck_assert_str_eq(read_str(m, d), "writeback\n");
	ck_assert_int_eq(write_str(m, d, "writethrough\n"), 0);
	ck_assert_str_eq(read_str(m, d), "writethrough\n");
	ck_assert_int_eq(write_str(m, d, "bogus"), -EINVAL);
	ck_assert_str_eq(read_str(m, d), "writethrough\n");
	fail_mode_switch = 1; /* the setter's error reaches the writer */
	ck_assert_int_eq(write_str(m, d, "none"), -EIO);
	fail_mode_switch = 0;
	ck_assert_str_eq(read_str(m, d), "writethrough\n");

	ck_assert_int_eq(write_str(D("writeback_ratio"), d, "10"), 0);
	ck_assert_str_eq(read_str(D("writeback_ratio"), d), "10\n");
	ck_assert_int_eq(write_str(D("writeback_ratio"), d, "1001"), -EINVAL);
	ck_assert_str_eq(read_str(D("writeback_ratio"), d), "10\n");
	ck_assert_int_eq(write_str(D("dirty_expire_seconds"), d, " 5 "), 0);
	ck_assert_str_eq(read_str(D("dirty_expire_seconds"), d), "5\n");
	ck_assert_int_eq(write_str(D("dirty_expire_seconds"), d, "86401"), -EINVAL);
	ck_assert_str_eq(read_str(D("dirty_expire_seconds"), d), "5\n");

	ck_assert_str_eq(read_str(D("block_size"), d), "4096\n");
	ck_assert_str_eq(read_str(D("device_size_bytes"), d), "1048576\n");
	ck_assert_str_eq(read_str(D("backing"), d), "/memory/backing\n");
	ck_assert_str_eq(read_str(D("io_engine"), d), "memory\n");
	dev_destroy(d);
}
END_TEST

START_TEST(test_device_mode)
{
	struct bufio_backend *flt = be_fault_create(be_memory_create(DEV_SIZE, 0), true);
	struct fs_device *d = dev_create_over("disk", flt);
	const struct ctl_entry *m = D("mode"), *mx = D("max_write_failures");
	struct be_fault_rule r = {.ops = 1u << BUFIO_OP_WRITE, .error = -EIO};
	struct bufio_buffer *b;

	ck_assert(!m->configurable);
	ck_assert(mx->configurable);
	ck_assert_str_eq(read_str(mx, d), "5\n");
	ck_assert_int_eq(write_str(mx, d, "1"), 0);
	ck_assert_str_eq(read_str(mx, d), "1\n");
	ck_assert_int_eq(write_str(mx, d, "1001"), -EINVAL);
	ck_assert_str_eq(read_str(mx, d), "1\n");

	ck_assert_str_eq(read_str(m, d), "write\n");
	ck_assert_int_eq(write_str(m, d, "read-only\n"), 0);
	ck_assert_str_eq(read_str(m, d), "read-only\n");
	ck_assert_int_eq(write_str(m, d, "readonly"), -EINVAL);
	ck_assert_int_eq(write_str(m, d, "write"), 0);
	ck_assert_str_eq(read_str(m, d), "write\n");

	/* one failed write-back attempt (limit 1): read-only, and back only once
	 * the write-back works */
	ck_assert_int_ge(be_fault_add_rule(flt, &r), 0);
	ck_assert_ptr_nonnull(bufio_new(d->client, 3, &b));
	bufio_mark_buffer_dirty(b);
	bufio_release(b);
	ck_assert_int_eq(fs_device_flush(d), -EIO);
	ck_assert_str_eq(read_str(m, d), "read-only\n");
	ck_assert_str_eq(read_str(D("write_failures"), d), "1\n");
	ck_assert_int_eq(write_str(m, d, "write"), -EIO);
	ck_assert_str_eq(read_str(m, d), "read-only\n");
	be_fault_clear_rules(flt);
	ck_assert_int_eq(write_str(m, d, "write"), 0);
	ck_assert_str_eq(read_str(m, d), "write\n");
	ck_assert_str_eq(read_str(D("write_failures"), d), "0\n");
	ck_assert_str_eq(read_str(D("buffers_dirty"), d), "0\n");

	/* a device served readonly has no write mode */
	d->spec.readonly = true;
	ck_assert_str_eq(read_str(m, d), "read-only\n");
	ck_assert_int_eq(write_str(m, d, "write"), -EROFS);
	ck_assert_int_eq(write_str(m, d, "read-only"), 0);
	dev_destroy(d);
}
END_TEST

/* Read block @blk once through the cache. */
static void touch(struct fs_device *d, uint64_t blk)
{
	struct bufio_buffer *b;

	ck_assert_ptr_nonnull(bufio_read(d->client, blk, &b));
	bufio_release(b);
}

/*
 * Keep background write-back away while a test counts dirty buffers: it
 * starts when dirty > ratio * clean, so keep one clean buffer (block 200)
 * and the highest ratio, and no age-based write-back.
 */
static void no_writeback(struct fs_device *d)
{
	ck_assert_int_eq(bufio_set_writeback_ratio(d->client, 1000), 0);
	ck_assert_int_eq(bufio_set_dirty_expire(d->client, 0), 0);
	touch(d, 200);
}

static void dirty(struct fs_device *d, uint64_t blk, char fill)
{
	struct bufio_buffer *b;
	void *data = bufio_new(d->client, blk, &b);

	ck_assert_ptr_nonnull(data);
	memset(data, fill, BLOCK);
	bufio_mark_buffer_dirty(b);
	bufio_release(b);
}

START_TEST(test_stats_and_actions)
{
	struct fs_device *d = dev_create("disk");
	const char *s;

	touch(d, 0);
	touch(d, 0);
	touch(d, 1);
	ck_assert_str_eq(read_str(D("hits"), d), "1\n");
	ck_assert_str_eq(read_str(D("misses"), d), "2\n");
	s = read_str(D("stats"), d);
	ck_assert_msg(strncmp(s, "hits 1\nmisses 2\n", 16) == 0, "stats: %s", s);
	ck_assert_msg(strstr(s, "\nbytes_cached ") && strstr(s, "\nhit_ratio 0.3333\n"), "%s", s);
	ck_assert_msg(strstr(s, "\nbuffers_clean 2\n"), "%s", s);
	ck_assert_int_eq(s[strlen(s) - 1], '\n');

	ck_assert_int_eq(write_str(D("clear_stats"), d, "0"), -EINVAL);
	ck_assert_str_eq(read_str(D("hits"), d), "1\n");
	ck_assert_int_eq(write_str(D("clear_stats"), d, "1\n"), 0);
	ck_assert_str_eq(read_str(D("hits"), d), "0\n");
	ck_assert_msg(strstr(read_str(D("stats"), d), "\nhit_ratio 0.0000\n"), "no lookups");

	ck_assert_int_eq(write_str(D("drop_caches"), d, "1"), 0);
	ck_assert_str_eq(read_str(D("buffers_clean"), d), "0\n");

	no_writeback(d);
	dirty(d, 2, 'x');
	ck_assert_str_eq(read_str(D("buffers_dirty"), d), "1\n");
	ck_assert_int_eq(write_str(D("flush"), d, "2"), -EINVAL);
	ck_assert_str_eq(read_str(D("buffers_dirty"), d), "1\n");
	ck_assert_int_eq(write_str(D("flush"), d, "1"), 0);
	ck_assert_str_eq(read_str(D("buffers_dirty"), d), "0\n");
	ck_assert_int_eq(((char *)be_memory_data(d->be))[(size_t)2 * BLOCK], 'x');
	dev_destroy(d);
}
END_TEST

START_TEST(test_global_totals)
{
	struct fs_device *a = dev_create("a"), *b = dev_create("b");

	no_writeback(a);
	no_writeback(b);
	dirty(a, 0, 'a');
	dirty(b, 0, 'b');
	dirty(b, 1, 'b');
	ck_assert_str_eq(read_str(G("buffers_dirty"), NULL), "3\n");
	ck_assert_str_eq(read_str(G("buffers_held"), NULL), "0\n");
	ck_assert_uint_ge(strtoull(read_str(G("current_allocated_bytes"), NULL), NULL, 10),
	                  (unsigned long long)3 * BLOCK);
	ck_assert_uint_gt(strtoull(read_str(G("effective_cache_size_bytes"), NULL), NULL, 10), 0);
	const char *src = read_str(G("pressure_source"), NULL);
	ck_assert_msg(!strcmp(src, "cgroup\n") || !strcmp(src, "system\n") ||
	                  !strcmp(src, "none\n"),
	              "pressure_source %s", src);
	dev_destroy(a);
	dev_destroy(b);
}
END_TEST

START_TEST(test_short_buffer)
{
	struct fs_device *d = dev_create("disk");
	char small[4];
	int full = (int)strlen(read_str(D("stats"), d));

	ck_assert_int_eq(ctl_read(D("stats"), d, small, sizeof(small)), full);
	ck_assert_int_eq(strlen(small), 3);
	ck_assert_int_eq(ctl_read(D("backing"), d, small, sizeof(small)), 16);
	ck_assert_int_eq(strlen(small), 3);
	ck_assert_int_eq(ctl_read(D("cache_mode"), d, small, sizeof(small)), 10);
	ck_assert_int_eq(ctl_read(D("block_size"), d, small, sizeof(small)), 5);
	dev_destroy(d);
}
END_TEST

/* Every line a comment (# HELP / # TYPE) or `name{labels} value`, families grouped. */
static void check_exposition(const char *text)
{
	regex_t sample, help, type;
	char line[1024];

	ck_assert_int_eq(regcomp(&sample,
	                         "^[a-zA-Z_:][a-zA-Z0-9_:]*"
	                         "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\""
	                         "(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\")*\\})?"
	                         " -?[0-9]+(\\.[0-9]+)?$",
	                         REG_EXTENDED | REG_NOSUB),
	                 0);
	ck_assert_int_eq(
	    regcomp(&help, "^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* [^\n]+$", REG_EXTENDED | REG_NOSUB),
	    0);
	ck_assert_int_eq(regcomp(&type, "^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge)$",
	                         REG_EXTENDED | REG_NOSUB),
	                 0);
	ck_assert_int_eq(text[strlen(text) - 1], '\n');
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = (size_t)(nl - p);

		ck_assert_uint_lt(n, sizeof(line));
		memcpy(line, p, n);
		line[n] = '\0';
		ck_assert_msg(regexec(&sample, line, 0, NULL, 0) == 0 ||
		                  regexec(&help, line, 0, NULL, 0) == 0 ||
		                  regexec(&type, line, 0, NULL, 0) == 0,
		              "bad exposition line: %s", line);
		p = nl + 1;
	}
	regfree(&sample);
	regfree(&help);
	regfree(&type);
}

START_TEST(test_metrics)
{
	struct fs_device *a = dev_create("disk"), *b = dev_create("we\"ird\\name");
	struct fs_device *devs[] = {a, b};
	const char *m;

	touch(a, 0);
	touch(a, 0);
	ctl_set_devices(devs, 2);
	m = read_str(G("metrics"), NULL);
	check_exposition(m);
	ck_assert_msg(strstr(m, "\n# TYPE bufio_hits_total counter\n"), "%s", m);
	ck_assert_msg(strstr(m, "\nbufio_hits_total{device=\"disk\"} 1\n"), "%s", m);
	ck_assert_msg(strstr(m, "\nbufio_misses_total{device=\"we\\\"ird\\\\name\"} 0\n"), "%s", m);
	ck_assert_msg(strstr(m, "\nbufio_hit_ratio{device=\"disk\"} 0.5"), "%s", m);
	ck_assert_msg(strstr(m, "\n# TYPE bufio_buffers_clean gauge\n"), "%s", m);
	ck_assert_msg(strstr(m, "\nbufio_cache_mode{device=\"disk\",mode=\"writeback\"} 1\n"), "%s",
	              m);
	ck_assert_msg(strstr(m, "\nbufio_writeback_ratio{device=\"disk\"} 3\n"), "%s", m);
	ck_assert_msg(strstr(m, "bufio_current_allocated_bytes "), "%s", m);
	ck_assert_msg(strstr(m, "bufio_max_cache_size_bytes "), "%s", m);
	/* every field of struct bufio_stats is exported */
	for (const struct ctl_entry *const *p = ctl_entries(CTL_DEVICE); *p; p++) {
		char name[96];

		if ((*p)->type != CTL_UINT || (*p)->configurable ||
		    !strcmp((*p)->name, "block_size"))
			continue;
		snprintf(name, sizeof(name), "bufio_%s", (*p)->name);
		ck_assert_msg(strstr(m, name), "metrics lacks %s", name);
	}
	ctl_set_devices(NULL, 0);
	check_exposition(read_str(G("metrics"), NULL));
	dev_destroy(a);
	dev_destroy(b);
}
END_TEST

START_TEST(test_describe)
{
	char buf[128];

	ctl_describe_values(G("max_cache_size_bytes"), buf, sizeof(buf));
	ck_assert_str_eq(buf, "0..1024T");
	ctl_describe_values(D("writeback_ratio"), buf, sizeof(buf));
	ck_assert_str_eq(buf, "0..1000");
	ctl_describe_values(D("cache_mode"), buf, sizeof(buf));
	ck_assert_str_eq(buf, "writeback, writethrough, none");
}
END_TEST

static Suite *ctl_suite(void)
{
	Suite *s = suite_create("ctl");
	TCase *parse_tc = tcase_create("parse");
	TCase *dev_tc = tcase_create("entries");

	tcase_add_test(parse_tc, test_parse_uint);
	tcase_add_test(parse_tc, test_parse_bytes);
	tcase_add_test(parse_tc, test_parse_enum_action);
	tcase_add_test(parse_tc, test_parse_not_terminated);
	tcase_add_test(parse_tc, test_registry_shape);
	tcase_add_test(parse_tc, test_describe);
	tcase_add_test(dev_tc, test_global_rw);
	tcase_add_test(dev_tc, test_read_only);
	tcase_add_test(dev_tc, test_device_tunables);
	tcase_add_test(dev_tc, test_device_mode);
	tcase_add_test(dev_tc, test_stats_and_actions);
	tcase_add_test(dev_tc, test_global_totals);
	tcase_add_test(dev_tc, test_short_buffer);
	tcase_add_test(dev_tc, test_metrics);
	suite_add_tcase(s, parse_tc);
	suite_add_tcase(s, dev_tc);
	return s;
}

int main(void)
{
	return run_suite(ctl_suite());
}
