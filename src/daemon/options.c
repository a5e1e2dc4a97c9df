/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Command-line parsing for bufiofs: positional arguments, -o lists split into
 * single settings, and a --help generated from the control registry so the
 * documentation of every tunable lives in one place.
 */
#include "daemon/options.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <bufio/bufio.h>

#define OPT_DEMO 256

static const struct option long_options[] = {
    {"config", required_argument, NULL, 'c'},
    {"foreground", no_argument, NULL, 'f'},
    {"debug", no_argument, NULL, 'd'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {"demo", no_argument, NULL, OPT_DEMO},
    {NULL, 0, NULL, 0},
};

/* Default of a registry entry: the core's value before anything is set, or the spec's. */
static void entry_default(const struct ctl_entry *e, char *buf, size_t size)
{
	struct fs_device_spec spec;
	uint64_t v = 0;

	if (e->scope == CTL_GLOBAL) {
		e->get(NULL, &v);
	} else {
		fs_device_spec_defaults(&spec);
		if (strcmp(e->name, "cache_mode") == 0)
			v = spec.cache_mode;
		else if (strcmp(e->name, "writeback_ratio") == 0)
			v = spec.writeback_ratio;
		else if (strcmp(e->name, "dirty_expire_seconds") == 0)
			v = spec.dirty_expire_seconds;
		else if (strcmp(e->name, "read_ahead_kb") == 0)
			v = spec.read_ahead_kb;
		else if (strcmp(e->name, "max_write_failures") == 0)
			v = spec.max_write_failures;
		fs_device_spec_free(&spec);
	}
	if (e->type == CTL_ENUM)
		snprintf(buf, size, "%s", e->enum_names[v]);
	else
		snprintf(buf, size, "%" PRIu64, v);
}

/* @text word-wrapped to 78 columns, each line indented by @indent spaces. */
static void put_wrapped(FILE *out, const char *text, unsigned indent)
{
	unsigned col = 0;

	while (*text) {
		size_t word = strcspn(text, " ");

		if (col > indent && col + 1 + word > 78) {
			fputc('\n', out);
			col = 0;
		}
		if (col == 0)
			col = (unsigned)fprintf(out, "%*s", (int)indent, "");
		else
			col += (unsigned)fprintf(out, " ");
		col += (unsigned)fprintf(out, "%.*s", (int)word, text);
		text += word;
		text += strspn(text, " ");
	}
	fputc('\n', out);
}

static void usage_tunables(FILE *out, enum ctl_scope scope)
{
	for (const struct ctl_entry *const *p = ctl_entries(scope); *p; p++) {
		const struct ctl_entry *e = *p;
		char values[128], def[64];

		if (!e->configurable)
			continue;
		ctl_describe_values(e, values, sizeof(values));
		entry_default(e, def, sizeof(def));
		fprintf(out, "  %s=%s%s%s (default %s)\n", e->name, values, e->unit ? " " : "",
		        e->unit ? e->unit : "", def);
		put_wrapped(out, e->doc, 6);
	}
}

/* Names of the control files that are not settings, by how they are written. */
static void usage_files(FILE *out, const char *title, enum ctl_scope scope, int kind)
{
	char names[2048];
	size_t len = 0;

	for (const struct ctl_entry *const *p = ctl_entries(scope); *p; p++) {
		const struct ctl_entry *e = *p;
		int k = e->type == CTL_ACTION ? 2 : e->set || e->command ? 1 : 0;

		if (!e->configurable && k == kind && len + strlen(e->name) + 2 < sizeof(names))
			len += (size_t)snprintf(names + len, sizeof(names) - len, " %s", e->name);
	}
	if (len) {
		fprintf(out, "  %s:\n", title);
		put_wrapped(out, names + 1, 4);
	}
}

void fs_options_usage(FILE *out, const char *prog)
{
	fprintf(out,
	        "Usage: %1$s [options] BACKING MOUNTPOINT\n"
	        "       %1$s -c CONFIG [options] [MOUNTPOINT]\n"
	        "       %1$s --demo [options] MOUNTPOINT\n\n"
	        "Serve BACKING (a file or block device) as MOUNTPOINT/disk through libbufio, a\n"
	        "userspace dm-bufio block cache; tunables and statistics are files under\n"
	        "MOUNTPOINT/control/.\n\n"
	        "Options:\n"
	        "  -c, --config FILE   read settings from a libconfig file (see bufiofs.conf);\n"
	        "                      the command line overrides it\n"
	        "  -f, --foreground    stay in the foreground, log to stderr\n"
	        "  -d, --debug         FUSE debug output (implies -f)\n"
	        "  -o OPT[,OPT...]     NAME=VALUE settings below, else FUSE mount options\n"
	        "      --demo          serve a sparse 1 GiB image kept in the state directory\n"
	        "  -h, --help          this text\n"
	        "  -V, --version       print the version\n\n"
	        "Global tunables (-o NAME=VALUE, config file, MOUNTPOINT/control/NAME):\n",
	        prog);
	usage_tunables(out, CTL_GLOBAL);
	fputs("\nDevice tunables (-o NAME=VALUE for every device or DEVICE.NAME=VALUE,\n"
	      "config file, MOUNTPOINT/control/DEVICE/NAME):\n",
	      out);
	usage_tunables(out, CTL_DEVICE);
	fputs("\nDevice options (-o, or inside devices = ( { ... } ) in the config file):\n"
	      "  name=NAME            device file name (default disk)\n"
	      "  backing=PATH         file or block device to serve\n"
	      "  block_size=BYTES     cache block size, a multiple of 512 (default 4096)\n"
	      "  io_engine=ENGINE     auto, io_uring or threads (default auto)\n"
	      "  direct=auto|yes|no   O_DIRECT on the backing (default auto)\n"
	      "  readonly[=yes|no]    refuse writes with EROFS (default no)\n\n"
	      "Daemon options (-o or config file):\n"
	      "  kernel_cache         let the kernel page cache cache the device file\n"
	      "  mlockall             lock the daemon's memory (no reclaim deadlock)\n"
	      "  allow_other          let other users access the mount\n"
	      "  state_dir=DIR        where --demo keeps its image\n"
	      "  fuse_uring=auto|yes|no  FUSE requests over io_uring (default auto: when\n"
	      "                       /sys/module/fuse/parameters/enable_uring is Y)\n"
	      "  fuse_threads=N       threads serving /dev/fuse, 1-64 (default 8)\n"
	      "  fuse_running=auto|N  of them, runnable at once while none waits for the\n"
	      "                       backing (default auto: the CPUs + 1)\n\n"
	      "Byte values take K, M, G or T suffixes (1024-based; KiB and KB mean the same).\n\n"
	      "Other files in MOUNTPOINT/control/:\n",
	      out);
	usage_files(out, "read-only", CTL_GLOBAL, 0);
	usage_files(out, "write 0 to reset", CTL_GLOBAL, 1);
	fputs("Other files in MOUNTPOINT/control/DEVICE/:\n", out);
	usage_files(out, "read-only", CTL_DEVICE, 0);
	usage_files(out, "read-write, at run time only", CTL_DEVICE, 1);
	usage_files(out, "actions, write 1", CTL_DEVICE, 2);
}

/* Split one -o argument on unescaped commas and apply each NAME[=VALUE]. */
static int apply_o(struct fs_config *cfg, const char *arg, char *err, size_t errlen)
{
	char *item = malloc(strlen(arg) + 1);
	const char *p = arg;
	int rc = 0;

	if (!item)
		return fs_errf(err, errlen, -ENOMEM, "out of memory");
	while (rc == 0 && *p) {
		size_t n = 0;

		for (; *p && *p != ','; p++) {
			if (*p == '\\' && p[1])
				p++;
			item[n++] = *p;
		}
		item[n] = '\0';
		if (*p == ',')
			p++;
		if (n == 0)
			continue;
		char *eq = strchr(item, '=');
		if (eq)
			*eq = '\0';
		rc = fs_config_set_option(cfg, item, eq ? eq + 1 : NULL, err, errlen);
	}
	free(item);
	return rc;
}

struct parsed {
	const char **o; /* the -o arguments in order */
	unsigned no;
	bool foreground, debug, help, version;
};

static int scan(int argc, char **argv, struct parsed *p, struct fs_cmdline *out, char *err,
                size_t errlen)
{
	int c;

	optind = 0; /* glibc: full reset, so the parser can run more than once */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:fdo:hV", long_options, NULL)) != -1) {
		switch (c) {
		case 'c':
			out->config_path = optarg;
			break;
		case 'f':
			p->foreground = true;
			break;
		case 'd':
			p->debug = true;
			break;
		case 'o':
			p->o[p->no++] = optarg;
			break;
		case 'h':
			p->help = true;
			break;
		case 'V':
			p->version = true;
			break;
		case OPT_DEMO:
			out->demo = true;
			break;
		case ':':
			return fs_errf(err, errlen, -EINVAL, "option %s needs an argument",
			               argv[optind - 1]);
		default:
			return fs_errf(err, errlen, -EINVAL, "unknown option %s", argv[optind - 1]);
		}
	}
	return 0;
}

static int set_backing(struct fs_config *cfg, const char *backing, char *err, size_t errlen)
{
	if (cfg->ndevs > 0)
		return fs_errf(err, errlen, -EINVAL,
		               "%s defines devices: give only MOUNTPOINT after -c CONFIG",
		               cfg->config_path ? cfg->config_path : "the configuration");
	return fs_config_set_option(cfg, "backing", backing, err, errlen);
}

static int set_mountpoint(struct fs_config *cfg, const char *path, char *err, size_t errlen)
{
	return fs_config_set_option(cfg, "mountpoint", path, err, errlen);
}

/* BACKING MOUNTPOINT, or MOUNTPOINT alone with -c or --demo. */
static int positionals(struct fs_config *cfg, const struct fs_cmdline *cmd, char **args, int n,
                       char *err, size_t errlen)
{
	if (cmd->demo) {
		if (n != 1)
			return fs_errf(err, errlen, -EINVAL, "--demo takes exactly one MOUNTPOINT");
		if (cmd->config_path)
			return fs_errf(err, errlen, -EINVAL, "--demo and -c cannot be combined");
		if (cfg->ndevs == 0 && !fs_config_add_device(cfg, NULL))
			return fs_errf(err, errlen, -ENOMEM, "out of memory");
		return set_mountpoint(cfg, args[0], err, errlen);
	}
	if (n > 2 || (n < 2 && !cmd->config_path))
		return fs_errf(err, errlen, -EINVAL, "expected BACKING MOUNTPOINT%s",
		               n > 2 ? ", got extra arguments" : "");
	if (n == 2) {
		int rc = set_backing(cfg, args[0], err, errlen);

		if (rc < 0)
			return rc;
	}
	return n ? set_mountpoint(cfg, args[n - 1], err, errlen) : 0;
}

static int finish(int argc, char **argv, struct parsed *p, struct fs_config *cfg,
                  struct fs_cmdline *out, char *err, size_t errlen)
{
	int rc = 0;

	if (out->config_path)
		rc = fs_config_load_file(cfg, out->config_path, err, errlen);
	if (rc == 0)
		rc = positionals(cfg, out, argv + optind, argc - optind, err, errlen);
	cfg->foreground |= p->foreground || p->debug;
	cfg->debug |= p->debug;
	for (unsigned i = 0; rc == 0 && i < p->no; i++)
		rc = apply_o(cfg, p->o[i], err, errlen);
	if (rc == 0 && out->demo && !cfg->mountpoint)
		rc = fs_errf(err, errlen, -EINVAL, "no mount point given");
	if (rc == 0 && !out->demo)
		rc = fs_config_check(cfg, err, errlen);
	return rc;
}

int fs_options_parse(int argc, char **argv, struct fs_config *cfg, struct fs_cmdline *out,
                     char *err, size_t errlen)
{
	struct parsed p = {.o = calloc((size_t)argc + 1, sizeof(char *))};
	int rc;

	memset(out, 0, sizeof(*out));
	if (!p.o)
		return fs_errf(err, errlen, -ENOMEM, "out of memory");
	rc = scan(argc, argv, &p, out, err, errlen);
	if (rc == 0 && p.help) {
		fs_options_usage(stdout, argv[0]);
		rc = FS_OPTIONS_EXIT;
	} else if (rc == 0 && p.version) {
		printf("bufiofs %s\n", BUFIO_VERSION);
		rc = FS_OPTIONS_EXIT;
	} else if (rc == 0) {
		rc = finish(argc, argv, &p, cfg, out, err, errlen);
	}
	free(p.o);
	return rc;
}
