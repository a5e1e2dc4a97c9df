/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * libFuzzer harness for the config loader (src/daemon/config.c and
 * config_scan.c) and the command line (options.c). The input is a config
 * file, optionally followed by a line "%%" and command-line words (split on
 * blanks) that go after "bufiofs -c FILE". The file sits in a scratch
 * directory next to an includable inc.conf, a FIFO and a subdirectory. Checks
 * beyond memory errors: a refusal leaves a message and an empty config; an
 * accepted one can be served (unique, usable device names, each with a
 * backing) and holds only valid, configurable tunables; a reload leaves the
 * config whole.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "control/ctl.h"
#include "daemon/config.h"
#include "daemon/options.h"

#define MAX_WORDS 32

/* The scratch directory, under $TMPDIR (run.sh: its work directory). */
static char dir[4096];
static char conf[sizeof(dir) + 16];

static void put(const char *name, const char *text)
{
	char path[sizeof(dir) + 16];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0);
}

static void remove_scratch(void)
{
	char path[sizeof(dir) + 16];
	static const char *const names[] = {"fuzz.conf", "inc.conf", "fifo"};

	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/sub", dir);
	rmdir(path);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[sizeof(dir) + 16];

	const char *tmp = getenv("TMPDIR");

	snprintf(dir, sizeof(dir), "%s/bufiofs-fuzz-config.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	CHECK(mkdtemp(dir));
	atexit(remove_scratch);
	snprintf(conf, sizeof(conf), "%s/fuzz.conf", dir);
	put("inc.conf", "retain_bytes = \"1M\";\n");
	snprintf(path, sizeof(path), "%s/fifo", dir);
	CHECK(mkfifo(path, 0600) == 0);
	snprintf(path, sizeof(path), "%s/sub", dir);
	CHECK(mkdir(path, 0700) == 0);
	/* --help and --version print on stdout: not interesting here. */
	CHECK(freopen("/dev/null", "w", stdout));
	return 0;
}

static void check_refused(const char *err)
{
	CHECK(err[0] != '\0');
	CHECK(memchr(err, '\0', 1024));
}

static void check_config(const struct fs_config *cfg)
{
	for (unsigned i = 0; i < cfg->ndevs; i++) {
		const char *name = cfg->devs[i].name;

		CHECK(name && *name && !strchr(name, '/') && strcmp(name, "control") != 0);
		CHECK(!ctl_find(CTL_GLOBAL, name));
		CHECK(cfg->devs[i].block_size >= 512 && cfg->devs[i].block_size % 512 == 0);
		for (unsigned j = 0; j < i; j++)
			CHECK(strcmp(cfg->devs[j].name, name) != 0);
	}
	for (unsigned i = 0; i < cfg->ntunables; i++) {
		const struct fs_tunable *t = &cfg->tunables[i];
		uint64_t v;

		CHECK(t->entry->configurable && t->value && t->origin);
		CHECK(ctl_parse(t->entry, t->value, strlen(t->value), &v) == 0);
		CHECK(!t->device || t->entry->scope == CTL_DEVICE);
	}
}

/* Split @text into at most MAX_WORDS blank-separated words after argv[0..2]. */
static int make_argv(char *text, char **argv)
{
	int argc = 0;

	argv[argc++] = "bufiofs";
	argv[argc++] = "-c";
	argv[argc++] = conf;
	for (char *w = strtok(text, " \t\n"); w && argc < MAX_WORDS; w = strtok(NULL, " \t\n"))
		argv[argc++] = w;
	argv[argc] = NULL;
	return argc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char sep[] = "\n%%\n";
	char *text = malloc(size + 1), *words, *argv[MAX_WORDS + 1], err[1024];
	struct fs_cmdline cl;
	struct fs_config cfg;
	int fd, argc, rc;

	CHECK(text);
	memcpy(text, data, size);
	text[size] = '\0';
	words = memmem(text, size, sep, strlen(sep));
	if (words) {
		*words = '\0';
		words += strlen(sep);
	}
	fd = open(conf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK(write(fd, data, words ? (size_t)(words - strlen(sep) - text) : size) >= 0);
	close(fd);

	/* The file alone. */
	fs_config_init(&cfg);
	err[0] = '\0';
	rc = fs_config_load_file(&cfg, conf, err, sizeof(err));
	if (rc < 0) {
		check_refused(err);
		CHECK(cfg.ndevs == 0 && cfg.ntunables == 0 && !cfg.mountpoint);
	} else {
		check_config(&cfg);
		CHECK(cfg.config_path);
		/* SIGHUP: the same file again; a failure leaves the tunables as they were. */
		const unsigned ntunables = cfg.ntunables;
		if (fs_config_reload_tunables(&cfg, NULL, err, sizeof(err)) < 0)
			CHECK(cfg.ntunables == ntunables);
		check_config(&cfg);
	}
	fs_config_free(&cfg);

	/* The command line on top of it. */
	argc = make_argv(words ? words : text + size, argv);
	fs_config_init(&cfg);
	err[0] = '\0';
	rc = fs_options_parse(argc, argv, &cfg, &cl, err, sizeof(err));
	CHECK(rc == FS_OPTIONS_RUN || rc == FS_OPTIONS_EXIT || rc < 0);
	if (rc < 0)
		check_refused(err);
	if (rc == FS_OPTIONS_RUN) {
		check_config(&cfg);
		if (!cl.demo)
			CHECK(fs_config_check(&cfg, err, sizeof(err)) == 0);
	}
	fs_config_free(&cfg);
	free(text);
	return 0;
}
