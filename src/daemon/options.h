/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The bufiofs command line: the config file first, then BACKING/MOUNTPOINT,
 * -f, -d and -o options on top of it; --help lists every tunable.
 */
#ifndef BUFIOFS_OPTIONS_H
#define BUFIOFS_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "daemon/config.h"

/* fs_options_parse() results besides a negative errno. */
#define FS_OPTIONS_RUN  0 /* cfg is complete: serve it */
#define FS_OPTIONS_EXIT 1 /* --help or --version was printed: exit 0 */

/* What the command line said that is not part of struct fs_config. */
struct fs_cmdline {
	const char *config_path; /* -c FILE (points into argv), or NULL */
	bool demo;               /* --demo: see fs_options_parse() */
};

/*
 * Parse
 *	bufiofs [options] BACKING MOUNTPOINT
 *	bufiofs -c CONFIG [MOUNTPOINT]         (MOUNTPOINT overrides the file's)
 *	bufiofs -c CONFIG BACKING MOUNTPOINT   (only if CONFIG defines no devices)
 *	bufiofs --demo [options] MOUNTPOINT
 * into @cfg (freshly initialised by the caller, freed by the caller even on
 * error). Options: -c/--config FILE, -f/--foreground, -d/--debug,
 * -o NAME[=VALUE][,...] (split on commas, "\," for a literal comma; each
 * goes to fs_config_set_option(), after the config file so they override
 * it), -h/--help, -V/--version, --demo.
 *
 * --demo leaves one device ("disk") whose backing is NULL: the daemon creates
 * the demo image (under cfg->state_dir or its default) and sets
 * cfg->devs[0].backing. Otherwise fs_config_check() has passed.
 *
 * Returns FS_OPTIONS_RUN, FS_OPTIONS_EXIT (help/version printed on stdout),
 * or a negative errno with a one-line message in @err (print it with a hint
 * to --help and exit 2, the usual status for a usage error).
 */
int fs_options_parse(int argc, char **argv, struct fs_config *cfg, struct fs_cmdline *out,
                     char *err, size_t errlen);

/* The --help text: usage, options, every tunable with range, default and doc. */
void fs_options_usage(FILE *out, const char *prog);

#endif
