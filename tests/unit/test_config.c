/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The libconfig loader and the command line: every user error gives
 * "FILE:LINE: message", the example config loads clean, -o overrides the
 * file, and tunables reach real devices through the registry.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bufio/bufio.h>

#include "backend/be_memory.h"
#include "control/ctl.h"
#include "daemon/config.h"
#include "daemon/device.h"
#include "daemon/options.h"
#include "helpers.h"

/* The daemon's versions (src/daemon/device.c) are not linked here. */
int fs_device_set_cache_mode(struct fs_device *dev, unsigned mode)
{
	int rc = mode == FS_CACHE_WRITEBACK ? 0 : bufio_write_dirty_buffers(dev->client);

	if (rc == 0)
		atomic_store(&dev->cache_mode, mode);
	return rc;
}

int fs_device_flush(struct fs_device *dev)
{
	return bufio_write_dirty_buffers(dev->client);
}

static char path[256];
static char err[512];
static struct fs_config cfg;

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");
	int fd;

	snprintf(path, sizeof(path), "%s/bufiofs-conf-XXXXXX", tmp ? tmp : "/tmp");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	fs_config_init(&cfg);
	err[0] = '\0';
}

static void teardown(void)
{
	fs_config_free(&cfg);
	unlink(path);
}

static void write_conf(const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

static int load(const char *text)
{
	write_conf(text);
	err[0] = '\0';
	return fs_config_load_file(&cfg, path, err, sizeof(err));
}

/* Loading @text fails with "PATH:LINE: " followed by text containing @what. */
static void load_fails(const char *text, int line, const char *what)
{
	char prefix[300];

	ck_assert_int_eq(load(text), -EINVAL);
	snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
	ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "want %s..., got \"%s\"", prefix,
	              err);
	ck_assert_msg(strstr(err, what), "want \"%s\" in \"%s\"", what, err);
	ck_assert_uint_eq(cfg.ndevs, 0); /* nothing half-loaded */
	ck_assert_uint_eq(cfg.ntunables, 0);
}

static const struct fs_tunable *tunable(const char *name, const char *device)
{
	for (unsigned i = 0; i < cfg.ntunables; i++) {
		const struct fs_tunable *t = &cfg.tunables[i];

		if (strcmp(t->entry->name, name) == 0 &&
		    (device ? t->device && strcmp(t->device, device) == 0 : !t->device))
			return t;
	}
	return NULL;
}

static const char *value_of(const char *name, const char *device)
{
	const struct fs_tunable *t = tunable(name, device);

	ck_assert_msg(t != NULL, "no tunable %s for %s", name, device ? device : "all");
	return t->value;
}

START_TEST(test_example_conf)
{
	char src[512], conf[600];

	snprintf(src, sizeof(src), "%s", __FILE__);
	snprintf(conf, sizeof(conf), "%s/../../conf/bufiofs.conf", dirname(src));
	ck_assert_msg(fs_config_load_file(&cfg, conf, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(cfg.ndevs, 1);
	ck_assert_str_eq(cfg.devs[0].name, "disk");
	ck_assert_str_eq(cfg.devs[0].backing, "/var/lib/bufiofs/example.img");
	ck_assert_uint_eq(cfg.devs[0].block_size, 4096);
	ck_assert_int_eq(cfg.devs[0].direct, -1);
	ck_assert_int_eq(cfg.devs[0].engine, BUFIO_ENGINE_AUTO);
	ck_assert_str_eq(cfg.mountpoint, "/run/bufiofs/example");
	ck_assert_str_eq(value_of("retain_bytes", NULL), "256K");
	ck_assert_str_eq(value_of("cache_mode", "disk"), "writeback");
	ck_assert_ptr_null(cfg.fuse_opts);
	ck_assert(!cfg.foreground && !cfg.allow_other && !cfg.mlockall && !cfg.kernel_cache);
	/* every configurable tunable is documented in the example */
	for (int s = CTL_GLOBAL; s <= CTL_DEVICE; s++)
		for (const struct ctl_entry *const *p = ctl_entries(s); *p; p++)
			if ((*p)->configurable)
				ck_assert_msg(tunable((*p)->name, s == CTL_GLOBAL ? NULL : "disk"),
				              "bufiofs.conf lacks %s", (*p)->name);
}
END_TEST

START_TEST(test_full_config)
{
	int rc = load("max_cache_size_bytes = \"1G\";\n"
	              "max_age_seconds = 60;\n"
	              "retain_bytes = 8589934592L;\n"
	              "writeback_ratio = 7;\n"
	              "mountpoint = \"/mnt/x\";\n"
	              "foreground = true;\n"
	              "allow_other = true;\n"
	              "fuse_options = \"fsname=foo,subtype=bar\";\n"
	              "devices = (\n"
	              "  { backing = \"/dev/a\"; cache_mode = \"writethrough\"; name = \"a\";\n"
	              "    block_size = \"64K\"; io_engine = \"threads\"; direct = false; },\n"
	              "  { name = \"b\"; backing = \"/dev/b\"; readonly = true;\n"
	              "    writeback_ratio = 0; direct = true; io_engine = \"io_uring\"; }\n"
	              ");\n");

	ck_assert_msg(rc == 0, "%s", err);
	ck_assert_uint_eq(cfg.ndevs, 2);
	ck_assert_str_eq(cfg.devs[0].name, "a");
	ck_assert_uint_eq(cfg.devs[0].block_size, 65536);
	ck_assert_uint_eq(cfg.devs[0].cache_mode, FS_CACHE_WRITETHROUGH);
	ck_assert_uint_eq(cfg.devs[0].writeback_ratio, 7); /* the top-level default */
	ck_assert_int_eq(cfg.devs[0].engine, BUFIO_ENGINE_THREADS);
	ck_assert_int_eq(cfg.devs[0].direct, 0);
	ck_assert_str_eq(cfg.devs[1].backing, "/dev/b");
	ck_assert(cfg.devs[1].readonly);
	ck_assert_int_eq(cfg.devs[1].direct, 1);
	ck_assert_int_eq(cfg.devs[1].engine, BUFIO_ENGINE_URING);
	ck_assert_uint_eq(cfg.devs[1].writeback_ratio, 0);
	ck_assert(cfg.foreground && cfg.allow_other);
	ck_assert_str_eq(cfg.fuse_opts, "fsname=foo,subtype=bar");
	char *abs = realpath(path, NULL);
	ck_assert_str_eq(cfg.config_path, abs); /* absolute, for SIGHUP after chdir("/") */
	free(abs);
	ck_assert_str_eq(value_of("max_cache_size_bytes", NULL), "1G");
	ck_assert_str_eq(value_of("retain_bytes", NULL), "8589934592");
	ck_assert_str_eq(value_of("writeback_ratio", NULL), "7");
	ck_assert_str_eq(value_of("writeback_ratio", "b"), "0");
	ck_assert_str_eq(value_of("cache_mode", "a"), "writethrough");

	char origin[300];
	snprintf(origin, sizeof(origin), "%s:2", path);
	ck_assert_str_eq(tunable("max_age_seconds", NULL)->origin, origin);
}
END_TEST

START_TEST(test_errors)
{
	load_fails("max_age_seconds = 60;\nfoo = ;\n", 2, "syntax error");
	load_fails("max_age_seconds = 60;\nmax_age_secs = 1;\n", 2,
	           "unknown setting \"max_age_secs\"");
	load_fails("devices = (\n { name = \"d\";\n   backing = \"/x\";\n   cache_mod = "
	           "\"none\"; }\n);\n",
	           4, "unknown device setting \"cache_mod\"");
	load_fails("\nmax_age_seconds = \"soon\";\n", 2, "not a number");
	load_fails("max_age_seconds = 1.5;\n", 1,
	           "wrong type: expected an integer or a string, "
	           "got a float");
	load_fails("foreground = \"yes\";\n", 1, "wrong type: expected a boolean");
	load_fails("mountpoint = 3;\n", 1, "wrong type: expected a string");
	load_fails("devices = ({ backing = \"/x\"; cache_mode = 2; });\n", 1,
	           "cache_mode: wrong type: expected a string");
	load_fails("devices = ({ backing = \"/x\"; cache_mode = \"fast\"; });\n", 1,
	           "expected one of writeback, writethrough, none");
	load_fails("devices = ({ backing = \"/x\"; readonly = 1; });\n", 1,
	           "readonly: wrong type: expected a boolean, got an integer");
	load_fails("max_age_seconds = 2592001;\n", 1, "out of range 0..2592000");
	load_fails("max_age_seconds = -1;\n", 1, "out of range");
	load_fails("max_cache_size_bytes = \"99999999999T\";\n", 1, "too large");
	load_fails("devices = (\n {\n backing = \"/x\";\n writeback_ratio = 1001; }\n);\n", 4,
	           "writeback_ratio: invalid value \"1001\": out of range 0..1000");
	load_fails("devices = (\n { backing = \"/x\"; },\n { backing = \"/y\";\n   name = "
	           "\"disk\"; }\n);\n",
	           4, "duplicate device name \"disk\"");
	load_fails("devices = (\n { name = \"d\"; }\n);\n", 2, "device \"d\": missing backing");
	load_fails("devices = ({ backing = \"/x\"; block_size = 1000; });\n", 1,
	           "not a multiple of 512");
	load_fails("devices = ({ backing = \"/x\"; block_size = \"128M\"; });\n", 1,
	           "out of range 512..64M");
	load_fails("devices = ({ backing = \"/x\"; name = \"a/b\"; });\n", 1, "not a usable");
	load_fails("devices = ({ backing = \"/x\"; name = \"control\"; });\n", 1, "not a usable");
	load_fails("devices = ({ backing = \"/x\"; io_engine = \"aio\"; });\n", 1,
	           "expected auto, io_uring or threads");
	load_fails("devices = ({ backing = \"/x\"; direct = \"maybe\"; });\n", 1,
	           "expected auto, yes or no");
	load_fails("devices = ({ backing = \"/x\"; max_age_seconds = 3; });\n", 1,
	           "max_age_seconds is a global setting");
	load_fails("backing = \"/x\";\n", 1, "backing is a device setting");
	load_fails("\n\nhits = 3;\n", 3, "hits is read-only");
	load_fails("devices = ({ backing = \"/x\"; flush = 1; });\n", 1, "flush is an action");
	load_fails("peak_allocated_bytes = 0;\n", 1, "only be written in the control directory");
	load_fails("devices = { backing = \"/x\"; };\n", 1, "devices: wrong type: expected a list");
	load_fails("devices = ( 3 );\n", 1, "each device must be a group");
	load_fails("max_age_seconds = 1;\nmax_age_seconds = 2;\n", 2, "duplicate setting");
}
END_TEST

START_TEST(test_unreadable)
{
	ck_assert_int_eq(fs_config_load_file(&cfg, "/nonexistent/x.conf", err, sizeof(err)),
	                 -ENOENT);
	ck_assert_str_eq(err, "/nonexistent/x.conf: cannot read: No such file or directory");
}
END_TEST

START_TEST(test_failed_load_keeps_config)
{
	ck_assert_int_eq(load("max_age_seconds = 9;\ndevices = ({ backing = \"/x\"; });\n"), 0);
	ck_assert_int_eq(load("max_age_seconds = 9;\nbogus = 1;\n"), -EINVAL);
	ck_assert_uint_eq(cfg.ndevs, 1);
	ck_assert_str_eq(value_of("max_age_seconds", NULL), "9");
}
END_TEST

/* Run fs_options_parse on "bufiofs" and @words, a NULL-terminated list. */
static int parse_argv(struct fs_cmdline *cmd, const char *const *words)
{
	char *argv[32];
	int argc = 0;

	argv[argc++] = "bufiofs";
	for (; *words; words++) {
		ck_assert_int_lt(argc, 31);
		argv[argc++] = (char *)*words;
	}
	argv[argc] = NULL;
	err[0] = '\0';
	return fs_options_parse(argc, argv, &cfg, cmd, err, sizeof(err));
}

/* parse_args(cmd, "-o", "x=1", "/img", "/mnt"): the list ends itself. */
#define parse_args(cmd, ...) parse_argv((cmd), (const char *const[]){__VA_ARGS__, NULL})

START_TEST(test_cmdline_basic)
{
	struct fs_cmdline cmd;
	int rc = parse_args(&cmd, "-f", "-o", "max_cache_size_bytes=64M,cache_mode=writethrough",
	                    "/tmp/img", "/mnt/b", "-o", "readonly,block_size=8K,allow_root,direct",
	                    "-o", "fsname=a\\,b");

	ck_assert_msg(rc == FS_OPTIONS_RUN, "%s", err);
	ck_assert_ptr_null(cmd.config_path);
	ck_assert(!cmd.demo);
	ck_assert(cfg.foreground);
	ck_assert_str_eq(cfg.mountpoint, "/mnt/b");
	ck_assert_uint_eq(cfg.ndevs, 1);
	ck_assert_str_eq(cfg.devs[0].name, "disk");
	ck_assert_str_eq(cfg.devs[0].backing, "/tmp/img");
	ck_assert(cfg.devs[0].readonly);
	ck_assert_int_eq(cfg.devs[0].direct, 1);
	ck_assert_uint_eq(cfg.devs[0].block_size, 8192);
	ck_assert_uint_eq(cfg.devs[0].cache_mode, FS_CACHE_WRITETHROUGH);
	ck_assert_str_eq(value_of("max_cache_size_bytes", NULL), "64M");
	ck_assert_str_eq(value_of("cache_mode", NULL), "writethrough");
	ck_assert_str_eq(tunable("cache_mode", NULL)->origin, "-o");
	ck_assert_str_eq(cfg.fuse_opts, "allow_root,fsname=a\\,b");
}
END_TEST

START_TEST(test_cmdline_overrides_config)
{
	struct fs_cmdline cmd;
	int rc;

	write_conf("mountpoint = \"/mnt/conf\";\nmax_age_seconds = 60;\n"
	           "fuse_options = \"fsname=x\";\n"
	           "devices = ({ name = \"a\"; backing = \"/a\"; writeback_ratio = 5; },\n"
	           "           { name = \"b\"; backing = \"/b\"; writeback_ratio = 6; });\n");
	rc = parse_args(&cmd, "-o", "max_age_seconds=90,b.dirty_expire_seconds=7", "-c", path, "-o",
	                "writeback_ratio=9,a.readonly=yes,b.name=bee,kernel_cache", "/mnt/cli",
	                "-o", "ro");
	ck_assert_msg(rc == FS_OPTIONS_RUN, "%s", err);
	ck_assert_ptr_eq(cmd.config_path, path);
	ck_assert_str_eq(cfg.mountpoint, "/mnt/cli");
	ck_assert_str_eq(value_of("max_age_seconds", NULL), "90");
	/* the unqualified -o replaces both devices' file values */
	ck_assert_str_eq(value_of("writeback_ratio", NULL), "9");
	ck_assert_ptr_null(tunable("writeback_ratio", "a"));
	ck_assert_ptr_null(tunable("writeback_ratio", "b"));
	ck_assert_uint_eq(cfg.devs[0].writeback_ratio, 9);
	ck_assert_uint_eq(cfg.devs[1].writeback_ratio, 9);
	/* renaming carries the device's tunables along */
	ck_assert_str_eq(cfg.devs[1].name, "bee");
	ck_assert_str_eq(value_of("dirty_expire_seconds", "bee"), "7");
	ck_assert_uint_eq(cfg.devs[1].dirty_expire_seconds, 7);
	ck_assert(cfg.devs[0].readonly && !cfg.devs[1].readonly);
	ck_assert(cfg.kernel_cache);
	ck_assert_str_eq(cfg.fuse_opts, "fsname=x,ro");
}
END_TEST

/* fuse_uring: auto (default), no, a boolean, or an error naming the choices. */
START_TEST(test_fuse_uring)
{
	struct fs_cmdline cmd;

	ck_assert_int_eq(load("fuse_uring = \"Auto\";\n"), 0);
	ck_assert_int_eq(cfg.fuse_uring, FS_URING_AUTO);
	ck_assert_int_eq(load("fuse_uring = \"no\";\n"), 0);
	ck_assert_int_eq(cfg.fuse_uring, FS_URING_NO);
	load_fails("\nfuse_uring = \"sometimes\";\n", 2, "expected auto, yes or no");
	load_fails("fuse_uring = 1;\n", 1, "a string");
	fs_config_free(&cfg);
	ck_assert_int_eq(cfg.fuse_uring, FS_URING_AUTO); /* the default */
	ck_assert_int_eq(parse_args(&cmd, "-o", "fuse_uring=yes", "/img", "/mnt"), FS_OPTIONS_RUN);
	ck_assert_int_eq(cfg.fuse_uring, FS_URING_YES);
	fs_config_free(&cfg);
	ck_assert_int_eq(parse_args(&cmd, "-o", "fuse_uring=off", "/img", "/mnt"), FS_OPTIONS_RUN);
	ck_assert_int_eq(cfg.fuse_uring, FS_URING_NO);
	ck_assert_ptr_null(cfg.fuse_opts); /* not passed on to FUSE */
}
END_TEST

/* fuse_threads 1..64; fuse_running auto (0) or 1..64; numbers or strings in the file. */
START_TEST(test_fuse_workers)
{
	struct fs_cmdline cmd;

	ck_assert_int_eq(load("fuse_threads = 16;\nfuse_running = \"AUTO\";\n"), 0);
	ck_assert_uint_eq(cfg.fuse_threads, 16);
	ck_assert_uint_eq(cfg.fuse_running, 0);
	ck_assert_int_eq(load("fuse_threads = \"64\";\nfuse_running = 1;\n"), 0);
	ck_assert_uint_eq(cfg.fuse_threads, 64);
	ck_assert_uint_eq(cfg.fuse_running, 1);
	load_fails("fuse_threads = 0;\n", 1, "expected a number of threads from 1 to 64");
	load_fails("\nfuse_threads = 65;\n", 2, "expected a number of threads from 1 to 64");
	load_fails("fuse_threads = \"auto\";\n", 1, "from 1 to 64");
	load_fails("fuse_running = \"some\";\n", 1, "expected auto or a number of threads");
	load_fails("fuse_running = -3;\n", 1, "negative");
	load_fails("fuse_running = true;\n", 1, "expected a number");
	fs_config_free(&cfg);
	ck_assert_uint_eq(cfg.fuse_threads, 0); /* the defaults */
	ck_assert_uint_eq(cfg.fuse_running, 0);
	ck_assert_int_eq(parse_args(&cmd, "-o", "fuse_threads=3,fuse_running=2", "/img", "/mnt"),
	                 FS_OPTIONS_RUN);
	ck_assert_uint_eq(cfg.fuse_threads, 3);
	ck_assert_uint_eq(cfg.fuse_running, 2);
	ck_assert_ptr_null(cfg.fuse_opts); /* not passed on to FUSE */
}
END_TEST

/* The command line @words is refused with an error that says @what. */
static void args_fail_argv(const char *what, const char *const *words)
{
	struct fs_cmdline cmd;
	int rc;

	fs_config_free(&cfg);
	rc = parse_argv(&cmd, words);
	ck_assert_msg(rc < 0, "accepted, wanted \"%s\"", what);
	ck_assert_msg(strstr(err, what), "want \"%s\" in \"%s\"", what, err);
}

#define args_fail(what, ...) args_fail_argv((what), (const char *const[]){__VA_ARGS__, NULL})

START_TEST(test_cmdline_errors)
{
	args_fail("expected BACKING MOUNTPOINT", "/img");
	args_fail("extra arguments", "/img", "/mnt", "/x");
	args_fail("unknown option -q", "-q", "/img", "/mnt");
	args_fail("unknown option --nope", "--nope", "/img", "/mnt");
	args_fail("needs an argument", "/img", "/mnt", "-o");
	args_fail("-o max_age_seconds: invalid value \"soon\": not a number", "-o",
	          "max_age_seconds=soon", "/img", "/mnt");
	args_fail("-o cache_mode: needs a value", "-o", "cache_mode", "/img", "/mnt");
	args_fail("-o fuse_uring: invalid value \"maybe\": expected auto, yes or no", "-o",
	          "fuse_uring=maybe", "/img", "/mnt");
	args_fail("-o fuse_uring: needs a value", "-o", "fuse_uring", "/img", "/mnt");
	args_fail(
	    "-o fuse_threads: invalid value \"8x\": expected a number of threads from 1 to 64",
	    "-o", "fuse_threads=8x", "/img", "/mnt");
	args_fail("-o fuse_threads: invalid value \"+8\"", "-o", "fuse_threads=+8", "/img", "/mnt");
	args_fail("-o fuse_running: invalid value \"0\": expected auto or", "-o", "fuse_running=0",
	          "/img", "/mnt");
	args_fail("-o fuse_running: needs a value", "-o", "fuse_running", "/img", "/mnt");
	args_fail("hits is read-only", "-o", "hits=4", "/img", "/mnt");
	args_fail("-o max_cache_size_bytes: invalid value \"99999999999T\": too large", "-o",
	          "max_cache_size_bytes=99999999999T", "/img", "/mnt");
	args_fail("out of range 0..1000", "-o", "disk.writeback_ratio=2000", "/img", "/mnt");
	args_fail("unknown device setting", "-o", "disk.bogus=1", "/img", "/mnt");
	args_fail("-o readonly: invalid value \"maybe\"", "-o", "readonly=maybe", "/img", "/mnt");
	args_fail("not a multiple of 512", "-o", "block_size=1000", "/img", "/mnt");
	args_fail("cannot read", "-c", "/nonexistent.conf");
	args_fail("--demo takes exactly one MOUNTPOINT", "--demo");
	args_fail("no device to serve", "-c", "/dev/null", "/mnt");
	write_conf("devices = ({ backing = \"/a\"; }, { name = \"b\"; backing = \"/b\"; });\n");
	args_fail("2 devices are configured: write DEVICE.backing", "-c", path, "-o", "backing=/z",
	          "/mnt");
	args_fail("give only MOUNTPOINT", "-c", path, "/img", "/mnt");
	args_fail("duplicate device name \"b\"", "-c", path, "-o", "disk.name=b", "/mnt");
	args_fail("no mount point given", "-c", path);
}
END_TEST

START_TEST(test_cmdline_modes)
{
	struct fs_cmdline cmd;
	int saved = dup(STDOUT_FILENO), null = open("/dev/null", O_WRONLY);

	/* --help and --version print on stdout: keep the test log readable */
	dup2(null, STDOUT_FILENO);
	ck_assert_int_eq(parse_args(&cmd, "--help"), FS_OPTIONS_EXIT);
	ck_assert_int_eq(parse_args(&cmd, "-V", "/a"), FS_OPTIONS_EXIT);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(null);
	close(saved);

	ck_assert_int_eq(parse_args(&cmd, "--demo", "/mnt/demo", "-o", "cache_mode=none"),
	                 FS_OPTIONS_RUN);
	ck_assert(cmd.demo);
	ck_assert_uint_eq(cfg.ndevs, 1);
	ck_assert_ptr_null(cfg.devs[0].backing);
	ck_assert_uint_eq(cfg.devs[0].cache_mode, FS_CACHE_NONE);
	ck_assert_str_eq(cfg.mountpoint, "/mnt/demo");
	fs_config_free(&cfg);

	ck_assert_int_eq(parse_args(&cmd, "-d", "/img", "/mnt"), FS_OPTIONS_RUN);
	ck_assert(cfg.debug && cfg.foreground);
	fs_config_free(&cfg);

	/* a config with only tunables, devices from the command line */
	write_conf("max_age_seconds = 1;\n");
	ck_assert_int_eq(parse_args(&cmd, "-c", path, "/img", "/mnt"), FS_OPTIONS_RUN);
	ck_assert_str_eq(cfg.devs[0].backing, "/img");
}
END_TEST

START_TEST(test_help_lists_tunables)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	fs_options_usage(f, "bufiofs");
	fclose(f);
	for (int s = CTL_GLOBAL; s <= CTL_DEVICE; s++) {
		for (const struct ctl_entry *const *p = ctl_entries(s); *p; p++) {
			char want[128];

			snprintf(want, sizeof(want), (*p)->configurable ? "  %s=" : " %s",
			         (*p)->name);
			ck_assert_msg(strstr(text, want), "--help lacks %s", (*p)->name);
		}
	}
	ck_assert_msg(strstr(text, "writeback_ratio=0..1000 (default 3)"), "%s", text);
	ck_assert_msg(strstr(text, "cache_mode=writeback, writethrough, none (default writeback)"),
	              "%s", text);
	ck_assert_msg(strstr(text, "max_age_seconds=0..2592000 seconds (default 300)"), "%s", text);
	free(text);
}
END_TEST

static struct fs_device *dev_create(const char *name)
{
	struct fs_device *d = calloc(1, sizeof(*d));

	fs_device_spec_defaults(&d->spec);
	free(d->spec.name);
	d->spec.name = strdup(name);
	d->be = be_memory_create(1 << 20, 0);
	d->client = bufio_client_create(d->be, 4096, 1, 0, NULL, NULL);
	ck_assert_ptr_nonnull(d->client);
	d->size = 1 << 20;
	atomic_init(&d->cache_mode, FS_CACHE_WRITEBACK);
	pthread_rwlock_init(&d->mode_lock, NULL);
	return d;
}

static void dev_destroy(struct fs_device *d)
{
	bufio_client_destroy(d->client);
	bufio_backend_close(d->be);
	pthread_rwlock_destroy(&d->mode_lock);
	fs_device_spec_free(&d->spec);
	free(d);
}

static uint64_t current(const char *name, struct fs_device *dev)
{
	const struct ctl_entry *e = ctl_find(dev ? CTL_DEVICE : CTL_GLOBAL, name);
	uint64_t v;

	ck_assert_int_eq(e->get(dev, &v), 0);
	return v;
}

START_TEST(test_apply_and_reload)
{
	struct fs_device *devs[2] = {dev_create("a"), dev_create("b")};
	unsigned old_age = bufio_get_max_age();
	struct fs_cmdline cmd;

	write_conf(
	    "max_age_seconds = 77;\nwriteback_ratio = 4;\n"
	    "devices = ({ name = \"a\"; backing = \"/a\"; dirty_expire_seconds = 11; },\n"
	    "           { name = \"b\"; backing = \"/b\"; cache_mode = \"writethrough\"; });\n");
	ck_assert_int_eq(parse_args(&cmd, "-c", path, "-o", "b.writeback_ratio=8", "/mnt"), 0);
	ck_assert_msg(fs_config_apply(&cfg, devs, 2, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(current("max_age_seconds", NULL), 77);
	ck_assert_uint_eq(current("writeback_ratio", devs[0]), 4);
	ck_assert_uint_eq(current("writeback_ratio", devs[1]), 8);
	ck_assert_uint_eq(current("dirty_expire_seconds", devs[0]), 11);
	ck_assert_uint_eq(current("dirty_expire_seconds", devs[1]), 30);
	ck_assert_uint_eq(current("cache_mode", devs[1]), FS_CACHE_WRITETHROUGH);

	/* SIGHUP: new file values, the -o value still wins */
	write_conf(
	    "max_age_seconds = 66;\nwriteback_ratio = 2;\n"
	    "devices = ({ name = \"a\"; backing = \"/a\"; },\n"
	    "           { name = \"b\"; backing = \"/b\"; cache_mode = \"writeback\"; });\n");
	ck_assert_msg(fs_config_reload_tunables(&cfg, NULL, err, sizeof(err)) == 0, "%s", err);
	ck_assert_msg(fs_config_apply(&cfg, devs, 2, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(current("max_age_seconds", NULL), 66);
	ck_assert_uint_eq(current("writeback_ratio", devs[0]), 2);
	ck_assert_uint_eq(current("writeback_ratio", devs[1]), 8);
	ck_assert_uint_eq(current("cache_mode", devs[1]), FS_CACHE_WRITEBACK);

	/* a bad reload changes nothing */
	write_conf("max_age_seconds = 55;\nmax_age = 1;\n");
	ck_assert_int_eq(fs_config_reload_tunables(&cfg, NULL, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, ":2: unknown setting"), "%s", err);
	ck_assert_str_eq(value_of("max_age_seconds", NULL), "66");
	write_conf("devices = ({ name = \"c\"; backing = \"/c\"; writeback_ratio = 1; });\n");
	ck_assert_int_eq(fs_config_reload_tunables(&cfg, NULL, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "device \"c\" is not being served"), "%s", err);

	/* a tunable for a device that is not open: reported with its origin */
	ck_assert_int_eq(fs_config_apply(&cfg, devs, 1, err, sizeof(err)), -ENODEV);
	char want[400];
	snprintf(want, sizeof(want), "%s:4: cache_mode: no device named \"b\"", path);
	ck_assert_str_eq(err, want); /* the first of the two failures */

	bufio_set_max_age(old_age);
	dev_destroy(devs[0]);
	dev_destroy(devs[1]);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *file = tcase_create("file");
	TCase *cmdline = tcase_create("cmdline");

	tcase_add_checked_fixture(file, setup, teardown);
	tcase_add_checked_fixture(cmdline, setup, teardown);
	tcase_add_test(file, test_example_conf);
	tcase_add_test(file, test_full_config);
	tcase_add_test(file, test_errors);
	tcase_add_test(file, test_unreadable);
	tcase_add_test(file, test_failed_load_keeps_config);
	tcase_add_test(cmdline, test_cmdline_basic);
	tcase_add_test(cmdline, test_cmdline_overrides_config);
	tcase_add_test(cmdline, test_cmdline_errors);
	tcase_add_test(cmdline, test_fuse_uring);
	tcase_add_test(cmdline, test_fuse_workers);
	tcase_add_test(cmdline, test_cmdline_modes);
	tcase_add_test(cmdline, test_help_lists_tunables);
	tcase_add_test(cmdline, test_apply_and_reload);
	suite_add_tcase(s, file);
	suite_add_tcase(s, cmdline);
	return s;
}

int main(void)
{
	return run_suite(config_suite());
}
