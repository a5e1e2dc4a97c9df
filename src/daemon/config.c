/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The libconfig loader and the -o setter: every key is checked against the
 * control registry or the device/daemon options, so a typo stops start-up
 * with "FILE:LINE: message" instead of being silently ignored.
 */
#include "daemon/config.h"

#include <errno.h>
#include <libconfig.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Device options that are not registry entries (or shadow read-only ones). */
enum opt_kind { OPT_NAME, OPT_PATH, OPT_SIZE, OPT_ENGINE, OPT_DIRECT, OPT_BOOL };

struct dev_option {
	const char *name;
	enum opt_kind kind;
};

static const struct dev_option dev_options[] = {
    {"name", OPT_NAME},        {"backing", OPT_PATH},  {"block_size", OPT_SIZE},
    {"io_engine", OPT_ENGINE}, {"direct", OPT_DIRECT}, {"readonly", OPT_BOOL},
};

/* Daemon-wide keys of the config file and -o (booleans point into the config). */
enum daemon_key {
	KEY_MOUNTPOINT,
	KEY_FUSE_OPTIONS,
	KEY_STATE_DIR,
	KEY_URING,
	KEY_THREADS, /* 1..FS_FUSE_THREADS_MAX */
	KEY_RUNNING, /* the same, or auto (0) */
	KEY_BOOL,
};

struct daemon_option {
	const char *name;
	enum daemon_key kind;
	size_t bool_offset;
};

static const struct daemon_option daemon_options[] = {
    {"mountpoint", KEY_MOUNTPOINT, 0},
    {"fuse_options", KEY_FUSE_OPTIONS, 0},
    {"state_dir", KEY_STATE_DIR, 0},
    {"fuse_uring", KEY_URING, 0},
    {"fuse_threads", KEY_THREADS, 0},
    {"fuse_running", KEY_RUNNING, 0},
    {"foreground", KEY_BOOL, offsetof(struct fs_config, foreground)},
    {"debug", KEY_BOOL, offsetof(struct fs_config, debug)},
    {"kernel_cache", KEY_BOOL, offsetof(struct fs_config, kernel_cache)},
    {"mlockall", KEY_BOOL, offsetof(struct fs_config, mlockall)},
    {"allow_other", KEY_BOOL, offsetof(struct fs_config, allow_other)},
};

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

int fs_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return rc;
	va_start(ap, fmt);
	/* The analyzer loses va_start on x86-64's array-typed va_list. */
	// NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}

void fs_config_init(struct fs_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->fuse_uring = FS_URING_AUTO;
}

static void free_tunable(struct fs_tunable *t)
{
	free(t->device);
	free(t->value);
	free(t->origin);
}

void fs_config_free(struct fs_config *cfg)
{
	for (unsigned i = 0; i < cfg->ndevs; i++)
		fs_device_spec_free(&cfg->devs[i]);
	for (unsigned i = 0; i < cfg->ntunables; i++)
		free_tunable(&cfg->tunables[i]);
	free(cfg->devs);
	free(cfg->tunables);
	free(cfg->mountpoint);
	free(cfg->fuse_opts);
	free(cfg->state_dir);
	free(cfg->config_path);
	fs_config_init(cfg);
}

/*----------------------------------------------------------------
 * Building blocks shared by the file and -o
 *--------------------------------------------------------------*/

static int replace_string(char **dst, const char *src)
{
	char *copy = strdup(src);

	if (!copy)
		return -ENOMEM;
	free(*dst);
	*dst = copy;
	return 0;
}

static int append_fuse_opts(struct fs_config *cfg, const char *opts)
{
	size_t old = cfg->fuse_opts ? strlen(cfg->fuse_opts) : 0;
	char *s;

	if (!*opts)
		return 0;
	s = realloc(cfg->fuse_opts, old + strlen(opts) + 2);
	if (!s)
		return -ENOMEM;
	if (old)
		s[old++] = ',';
	memcpy(s + old, opts, strlen(opts) + 1);
	cfg->fuse_opts = s;
	return 0;
}

struct fs_device_spec *fs_config_add_device(struct fs_config *cfg, const char *name)
{
	struct fs_device_spec *devs = realloc(cfg->devs, (cfg->ndevs + 1) * sizeof(*devs));
	struct fs_device_spec *spec;

	if (!devs)
		return NULL;
	cfg->devs = devs;
	spec = &devs[cfg->ndevs];
	fs_device_spec_defaults(spec);
	if (!spec->name || (name && replace_string(&spec->name, name) < 0)) {
		fs_device_spec_free(spec);
		errno = ENOMEM;
		return NULL;
	}
	cfg->ndevs++;
	return spec;
}

static struct fs_device_spec *find_spec(struct fs_config *cfg, const char *name)
{
	for (unsigned i = 0; i < cfg->ndevs; i++)
		if (cfg->devs[i].name && strcmp(cfg->devs[i].name, name) == 0)
			return &cfg->devs[i];
	return NULL;
}

/* Does the later assignment @e/@device make the earlier @t pointless? */
static bool overrides(const struct fs_tunable *t, const struct ctl_entry *e, const char *device)
{
	if (t->entry != e)
		return false;
	if (!device)
		return true;
	return t->device && strcmp(t->device, device) == 0;
}

static int add_tunable(struct fs_config *cfg, const struct ctl_entry *e, const char *device,
                       const char *value, const char *origin)
{
	struct fs_tunable t = {.entry = e};
	struct fs_tunable *arr;
	unsigned kept = 0;

	t.device = device ? strdup(device) : NULL;
	t.value = strdup(value);
	t.origin = strdup(origin);
	arr = realloc(cfg->tunables, (cfg->ntunables + 1) * sizeof(*arr));
	if ((device && !t.device) || !t.value || !t.origin || !arr) {
		free_tunable(&t);
		if (arr)
			cfg->tunables = arr;
		return -ENOMEM;
	}
	cfg->tunables = arr;
	for (unsigned i = 0; i < cfg->ntunables; i++) {
		if (overrides(&arr[i], e, device))
			free_tunable(&arr[i]);
		else
			arr[kept++] = arr[i];
	}
	arr[kept++] = t;
	cfg->ntunables = kept;
	return 0;
}

/* Keep the spec's copy of a device tunable in step, for code that opens from the spec. */
static void spec_set_tunable(struct fs_device_spec *spec, const struct ctl_entry *e, uint64_t v)
{
	if (strcmp(e->name, "cache_mode") == 0)
		spec->cache_mode = (unsigned)v;
	else if (strcmp(e->name, "writeback_ratio") == 0)
		spec->writeback_ratio = (unsigned)v;
	else if (strcmp(e->name, "dirty_expire_seconds") == 0)
		spec->dirty_expire_seconds = (unsigned)v;
	else if (strcmp(e->name, "read_ahead_kb") == 0)
		spec->read_ahead_kb = (unsigned)v;
	else if (strcmp(e->name, "max_write_failures") == 0)
		spec->max_write_failures = (unsigned)v;
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"1", "yes", "true", "on"};
	static const char *const no[] = {"0", "no", "false", "off"};

	for (unsigned i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

static int set_block_size_dummy(struct fs_device *dev, uint64_t val)
{
	return 0;
}

/* Parsed like a byte tunable, so "64K" works here too. */
static const struct ctl_entry block_size_syntax = {
    .name = "block_size",
    .type = CTL_BYTES,
    .min = 512,
    .max = BUFIO_MAX_BLOCK_SIZE,
    .set = set_block_size_dummy,
};

static int parse_engine(const char *s, enum bufio_io_engine *out)
{
	if (strcmp(s, "auto") == 0)
		*out = BUFIO_ENGINE_AUTO;
	else if (strcmp(s, "io_uring") == 0 || strcmp(s, "uring") == 0)
		*out = BUFIO_ENGINE_URING;
	else if (strcmp(s, "threads") == 0)
		*out = BUFIO_ENGINE_THREADS;
	else
		return -EINVAL;
	return 0;
}

/* Why @s cannot name a device (a file in the mount, a directory in control/), or NULL. */
static const char *bad_device_name(const char *s)
{
	if (!*s || strlen(s) >= 256 || strchr(s, '/') || strcmp(s, ".") == 0 ||
	    strcmp(s, "..") == 0 || strcmp(s, "control") == 0)
		return "not a usable file name (empty, '/', '.', '..' or 'control')";
	/* control/NAME would be both the device's directory and a global file. */
	if (ctl_find(CTL_GLOBAL, s))
		return "not a usable file name: control/ has a global file of that name";
	return NULL;
}

/* Apply device option @o with text @text to @spec; reason in @why on -EINVAL. */
static int spec_set_option(struct fs_device_spec *spec, const struct dev_option *o,
                           const char *text, char *why, size_t whylen)
{
	uint64_t v;
	bool b;

	switch (o->kind) {
	case OPT_NAME:
		if (bad_device_name(text))
			return fs_errf(why, whylen, -EINVAL, "%s", bad_device_name(text));
		return replace_string(&spec->name, text);
	case OPT_PATH:
		if (!*text)
			return fs_errf(why, whylen, -EINVAL, "empty path");
		return replace_string(&spec->backing, text);
	case OPT_SIZE:
		if (ctl_parse_explain(&block_size_syntax, text, strlen(text), &v, why, whylen) < 0)
			return -EINVAL;
		if (v % 512)
			return fs_errf(why, whylen, -EINVAL, "not a multiple of 512");
		spec->block_size = (unsigned)v;
		return 0;
	case OPT_ENGINE:
		if (parse_engine(text, &spec->engine) < 0)
			return fs_errf(why, whylen, -EINVAL, "expected auto, io_uring or threads");
		return 0;
	case OPT_DIRECT:
		if (strcmp(text, "auto") == 0) {
			spec->direct = -1;
			return 0;
		}
		if (parse_bool(text, &b) < 0)
			return fs_errf(why, whylen, -EINVAL, "expected auto, yes or no");
		spec->direct = b;
		return 0;
	case OPT_BOOL:
		if (parse_bool(text, &b) < 0)
			return fs_errf(why, whylen, -EINVAL, "expected yes or no");
		spec->readonly = b;
		return 0;
	}
	return -EINVAL;
}

static const struct dev_option *find_dev_option(const char *name)
{
	for (unsigned i = 0; i < ARRAY_SIZE(dev_options); i++)
		if (strcmp(dev_options[i].name, name) == 0)
			return &dev_options[i];
	return NULL;
}

static const struct daemon_option *find_daemon_option(const char *name)
{
	for (unsigned i = 0; i < ARRAY_SIZE(daemon_options); i++)
		if (strcmp(daemon_options[i].name, name) == 0)
			return &daemon_options[i];
	return NULL;
}

static bool *daemon_bool(struct fs_config *cfg, const struct daemon_option *o)
{
	return (bool *)((char *)cfg + o->bool_offset);
}

/* fuse_uring: "auto" or a boolean. */
static int parse_uring(const char *s, enum fs_uring_mode *out)
{
	bool b;

	if (strcasecmp(s, "auto") == 0) {
		*out = FS_URING_AUTO;
		return 0;
	}
	if (parse_bool(s, &b) < 0)
		return -EINVAL;
	*out = b ? FS_URING_YES : FS_URING_NO;
	return 0;
}

/* A count of FUSE workers, 1..FS_FUSE_THREADS_MAX; "auto" (0) if @can_auto. */
static int parse_workers(const char *s, bool can_auto, unsigned *out)
{
	char *end;
	unsigned long v;

	if (can_auto && strcasecmp(s, "auto") == 0) {
		*out = 0;
		return 0;
	}
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < 1 || v > FS_FUSE_THREADS_MAX)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

/* What a daemon option accepts, for an -EINVAL from set_daemon_option. */
static const char *daemon_syntax(const struct daemon_option *o)
{
	_Static_assert(FS_FUSE_THREADS_MAX == 64, "the messages below name the maximum");
	switch (o->kind) {
	case KEY_URING:
		return "expected auto, yes or no";
	case KEY_THREADS:
		return "expected a number of threads from 1 to 64";
	case KEY_RUNNING:
		return "expected auto or a number of threads from 1 to 64";
	default:
		return NULL;
	}
}

/* Apply a daemon option given as text (the bool already parsed by the caller). */
static int set_daemon_option(struct fs_config *cfg, const struct daemon_option *o, const char *text,
                             bool b)
{
	switch (o->kind) {
	case KEY_MOUNTPOINT:
		return replace_string(&cfg->mountpoint, text);
	case KEY_FUSE_OPTIONS:
		return append_fuse_opts(cfg, text);
	case KEY_STATE_DIR:
		return replace_string(&cfg->state_dir, text);
	case KEY_URING:
		return parse_uring(text, &cfg->fuse_uring);
	case KEY_THREADS:
		return parse_workers(text, false, &cfg->fuse_threads);
	case KEY_RUNNING:
		return parse_workers(text, true, &cfg->fuse_running);
	case KEY_BOOL:
		*daemon_bool(cfg, o) = b;
		return 0;
	}
	return -EINVAL;
}

/* Why a registry name cannot be set from the config or -o. */
static const char *not_settable(const struct ctl_entry *e)
{
	if (e->type == CTL_ACTION)
		return "is an action of the control directory, not a setting";
	if (e->set)
		return "can only be written in the control directory";
	return "is read-only";
}

/*----------------------------------------------------------------
 * The config file
 *--------------------------------------------------------------*/

struct loader {
	const char *path;
	struct fs_config *cfg;
	struct fs_device_spec defaults; /* top-level device tunables, for every device */
	char *err;
	size_t errlen;
};

static int fail(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
{
	const char *file = config_setting_source_file(s);
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	/* The analyzer loses va_start on x86-64's array-typed va_list. */
	// NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return fs_errf(ld->err, ld->errlen, -EINVAL, "%s:%u: %s", file ? file : ld->path,
	               config_setting_source_line(s), msg);
}

static const char *type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a float";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_GROUP:
		return "a group";
	default:
		return "a list or array";
	}
}

/* Accepted setting types, as a mask of 1 << CONFIG_TYPE_*. */
#define T(x)     (1u << CONFIG_TYPE_##x)
#define T_NUMBER (T(INT) | T(INT64) | T(STRING))

/*
 * Render a scalar setting as text after checking its type against @types;
 * @expect words the error. Negative integers are refused here so that the
 * message says so rather than "not a number".
 */
static int setting_text(struct loader *ld, const config_setting_t *s, unsigned types,
                        const char *expect, char *buf, size_t size)
{
	int type = config_setting_type(s);
	long long v;

	if (!(types & (1u << type)))
		return fail(ld, s, "%s: wrong type: expected %s, got %s", config_setting_name(s),
		            expect, type_name(type));
	switch (type) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		v = config_setting_get_int64(s);
		/* fs_config_read_text() has refused the literals libconfig would cut */
		if (v < 0)
			return fail(ld, s, "%s: out of range: %lld is negative",
			            config_setting_name(s), v);
		snprintf(buf, size, "%lld", v);
		return 0;
	case CONFIG_TYPE_BOOL:
		snprintf(buf, size, "%s", config_setting_get_bool(s) ? "yes" : "no");
		return 0;
	default:
		if (strlen(config_setting_get_string(s)) >= size)
			return fail(ld, s, "%s: value too long", config_setting_name(s));
		snprintf(buf, size, "%s", config_setting_get_string(s));
		return 0;
	}
}

static char *origin_of(struct loader *ld, const config_setting_t *s, char *buf, size_t size)
{
	const char *file = config_setting_source_file(s);

	snprintf(buf, size, "%s:%u", file ? file : ld->path, config_setting_source_line(s));
	return buf;
}

/* A registry tunable in the file: globally, as a default for all devices, or for @spec. */
static int load_tunable(struct loader *ld, const config_setting_t *s, const struct ctl_entry *e,
                        struct fs_device_spec *spec)
{
	const char *name = config_setting_name(s);
	char text[4096], why[160], origin[4200];
	uint64_t v;
	int rc;

	if (!e->configurable)
		return fail(ld, s, "%s %s", name, not_settable(e));
	rc = setting_text(ld, s, e->type == CTL_ENUM ? T(STRING) : T_NUMBER,
	                  e->type == CTL_ENUM ? "a string" : "an integer or a string", text,
	                  sizeof(text));
	if (rc < 0)
		return rc;
	if (ctl_parse_explain(e, text, strlen(text), &v, why, sizeof(why)) < 0)
		return fail(ld, s, "%s: invalid value \"%s\": %s", name, text, why);
	if (e->scope == CTL_DEVICE)
		spec_set_tunable(spec ? spec : &ld->defaults, e, v);
	rc = add_tunable(ld->cfg, e, spec ? spec->name : NULL, text,
	                 origin_of(ld, s, origin, sizeof(origin)));
	return rc < 0 ? fail(ld, s, "%s: %s", name, strerror(-rc)) : 0;
}

static int load_dev_option(struct loader *ld, const config_setting_t *s, const struct dev_option *o,
                           struct fs_device_spec *spec)
{
	static const unsigned types[] = {
	    [OPT_NAME] = T(STRING),
	    [OPT_PATH] = T(STRING),
	    [OPT_SIZE] = T_NUMBER,
	    [OPT_ENGINE] = T(STRING),
	    [OPT_DIRECT] = T(BOOL) | T(STRING),
	    [OPT_BOOL] = T(BOOL),
	};
	static const char *const expect[] = {
	    [OPT_NAME] = "a string",
	    [OPT_PATH] = "a string",
	    [OPT_SIZE] = "an integer or a string",
	    [OPT_ENGINE] = "a string",
	    [OPT_DIRECT] = "a boolean or \"auto\"",
	    [OPT_BOOL] = "a boolean",
	};
	char text[4096], why[160];
	int rc = setting_text(ld, s, types[o->kind], expect[o->kind], text, sizeof(text));

	if (rc < 0)
		return rc;
	rc = spec_set_option(spec, o, text, why, sizeof(why));
	if (rc == -EINVAL)
		return fail(ld, s, "%s: invalid value \"%s\": %s", o->name, text, why);
	return rc < 0 ? fail(ld, s, "%s: %s", o->name, strerror(-rc)) : 0;
}

static int check_new_device(struct loader *ld, const config_setting_t *group,
                            const struct fs_device_spec *spec)
{
	for (const struct fs_device_spec *d = ld->cfg->devs; d < spec; d++)
		if (strcmp(d->name, spec->name) == 0)
			return fail(ld, config_setting_get_member(group, "name") ?: group,
			            "duplicate device name \"%s\"", spec->name);
	if (!spec->backing)
		return fail(ld, group, "device \"%s\": missing backing", spec->name);
	return 0;
}

/* The device name first: the group's tunables are recorded under it. */
static int load_device_name(struct loader *ld, const config_setting_t *group,
                            struct fs_device_spec *spec)
{
	const config_setting_t *s = config_setting_get_member(group, "name");

	return s ? load_dev_option(ld, s, find_dev_option("name"), spec) : 0;
}

static int load_device(struct loader *ld, const config_setting_t *group)
{
	struct fs_device_spec *spec;
	int rc;

	if (config_setting_type(group) != CONFIG_TYPE_GROUP)
		return fail(ld, group, "devices: each device must be a group { ... }, got %s",
		            type_name(config_setting_type(group)));
	spec = fs_config_add_device(ld->cfg, NULL);
	if (!spec)
		return fail(ld, group, "out of memory");
	spec->cache_mode = ld->defaults.cache_mode;
	spec->writeback_ratio = ld->defaults.writeback_ratio;
	spec->dirty_expire_seconds = ld->defaults.dirty_expire_seconds;
	spec->read_ahead_kb = ld->defaults.read_ahead_kb;
	spec->max_write_failures = ld->defaults.max_write_failures;
	rc = load_device_name(ld, group, spec);
	for (int i = 0; rc == 0 && i < config_setting_length(group); i++) {
		const config_setting_t *s = config_setting_get_elem(group, i);
		const char *key = config_setting_name(s);
		const struct dev_option *o = find_dev_option(key);
		const struct ctl_entry *e = ctl_find(CTL_DEVICE, key);

		if (o)
			rc = o->kind == OPT_NAME ? 0 : load_dev_option(ld, s, o, spec);
		else if (e)
			rc = load_tunable(ld, s, e, spec);
		else if (ctl_find(CTL_GLOBAL, key))
			rc = fail(ld, s, "%s is a global setting: put it outside devices", key);
		else
			rc = fail(ld, s, "unknown device setting \"%s\"", key);
	}
	return rc ? rc : check_new_device(ld, group, spec);
}

static int load_devices(struct loader *ld, const config_setting_t *list)
{
	int rc = 0;

	if (config_setting_type(list) != CONFIG_TYPE_LIST)
		return fail(ld, list,
		            "devices: wrong type: expected a list ( { ... }, ... ), got %s",
		            type_name(config_setting_type(list)));
	for (int i = 0; rc == 0 && i < config_setting_length(list); i++)
		rc = load_device(ld, config_setting_get_elem(list, i));
	return rc;
}

static int load_daemon_option(struct loader *ld, const config_setting_t *s,
                              const struct daemon_option *o)
{
	bool is_bool = o->kind == KEY_BOOL;
	bool is_count = o->kind == KEY_THREADS || o->kind == KEY_RUNNING;
	char text[4096];
	int rc;

	if (is_bool)
		rc = setting_text(ld, s, T(BOOL), "a boolean", text, sizeof(text));
	else if (is_count)
		rc = setting_text(ld, s, T_NUMBER, "a number", text, sizeof(text));
	else
		rc = setting_text(ld, s, T(STRING), "a string", text, sizeof(text));
	if (rc < 0)
		return rc;
	if ((o->kind == KEY_MOUNTPOINT || o->kind == KEY_STATE_DIR) && !*text)
		return fail(ld, s, "%s: empty path", o->name);
	rc = set_daemon_option(ld->cfg, o, text, is_bool && config_setting_get_bool(s));
	if (rc == -EINVAL && daemon_syntax(o))
		return fail(ld, s, "%s: invalid value \"%s\": %s", o->name, text, daemon_syntax(o));
	return rc < 0 ? fail(ld, s, "%s: %s", o->name, strerror(-rc)) : 0;
}

static int load_top_setting(struct loader *ld, const config_setting_t *s)
{
	const char *key = config_setting_name(s);
	const struct daemon_option *o = find_daemon_option(key);
	const struct ctl_entry *e;

	if (strcmp(key, "devices") == 0)
		return 0; /* second pass, once the device defaults are known */
	if (o)
		return load_daemon_option(ld, s, o);
	if (find_dev_option(key))
		return fail(ld, s, "%s is a device setting: put it inside devices = ( { ... } )",
		            key);
	e = ctl_find(CTL_GLOBAL, key);
	if (!e)
		e = ctl_find(CTL_DEVICE, key);
	if (e)
		return load_tunable(ld, s, e, NULL);
	return fail(ld, s, "unknown setting \"%s\"", key);
}

static int load_root(struct loader *ld, const config_setting_t *root)
{
	const config_setting_t *devices = config_setting_get_member(root, "devices");
	int rc = 0;

	fs_device_spec_defaults(&ld->defaults);
	for (int i = 0; rc == 0 && i < config_setting_length(root); i++)
		rc = load_top_setting(ld, config_setting_get_elem(root, i));
	if (rc == 0 && devices)
		rc = load_devices(ld, devices);
	fs_device_spec_free(&ld->defaults);
	return rc;
}

static int read_config(config_t *c, const char *path, char *err, size_t errlen)
{
	char *dir = strdup(path), *text;
	int rc;

	if (!dir)
		return fs_errf(err, errlen, -ENOMEM, "%s: out of memory", path);
	/* @include "x.conf" is relative to the including file, not the cwd. */
	config_set_include_dir(c, dirname(dir));
	free(dir);
	/* Read here rather than by libconfig, which would block on a FIFO. */
	rc = fs_config_read_text(path, config_get_include_dir(c), &text, err, errlen);
	if (rc < 0)
		return rc;
	rc = config_read_string(c, text);
	free(text);
	if (rc == CONFIG_TRUE)
		return 0;
	if (config_error_type(c) == CONFIG_ERR_FILE_IO)
		return fs_errf(err, errlen, -EIO, "%s: cannot read an included file", path);
	return fs_errf(err, errlen, -EINVAL, "%s:%d: %s",
	               config_error_file(c) ? config_error_file(c) : path, config_error_line(c),
	               config_error_text(c));
}

/* Absolute, so that SIGHUP still finds the file after the daemon's chdir("/"). */
static int remember_path(struct fs_config *out, const char *path, char *err, size_t errlen)
{
	char *abs = realpath(path, NULL);

	if (abs) {
		free(out->config_path);
		out->config_path = abs;
		return 0;
	}
	if (replace_string(&out->config_path, path) < 0)
		return fs_errf(err, errlen, -ENOMEM, "%s: out of memory", path);
	return 0;
}

/* Parse @path into the fresh config @out. */
static int load_into(struct fs_config *out, const char *path, char *err, size_t errlen)
{
	struct loader ld = {.path = path, .cfg = out, .err = err, .errlen = errlen};
	config_t c;
	int rc;

	config_init(&c);
	rc = read_config(&c, path, err, errlen);
	if (rc == 0)
		rc = load_root(&ld, config_root_setting(&c));
	if (rc == 0)
		rc = remember_path(out, path, err, errlen);
	config_destroy(&c);
	return rc;
}

int fs_config_load_file(struct fs_config *cfg, const char *path, char *err, size_t errlen)
{
	struct fs_config fresh;
	int rc;

	fs_config_init(&fresh);
	rc = load_into(&fresh, path, err, errlen);
	if (rc < 0) {
		fs_config_free(&fresh);
		return rc;
	}
	fs_config_free(cfg);
	*cfg = fresh;
	return 0;
}

/*----------------------------------------------------------------
 * -o NAME[=VALUE]
 *--------------------------------------------------------------*/

/* "DEVICE.NAME": the device named by the part before the last dot, if there is one. */
static struct fs_device_spec *qualified_device(struct fs_config *cfg, const char *name,
                                               const char **key)
{
	const char *dot = strrchr(name, '.');
	char dev[256];

	if (!dot || dot == name || (size_t)(dot - name) >= sizeof(dev))
		return NULL;
	memcpy(dev, name, (size_t)(dot - name));
	dev[dot - name] = '\0';
	*key = dot + 1;
	return find_spec(cfg, dev);
}

static int option_tunable(struct fs_config *cfg, const struct ctl_entry *e,
                          struct fs_device_spec *spec, const char *value, char *err, size_t errlen)
{
	char why[160];
	uint64_t v;
	int rc;

	if (!e->configurable)
		return fs_errf(err, errlen, -EINVAL, "-o %s: %s %s", e->name, e->name,
		               not_settable(e));
	if (!value)
		return fs_errf(err, errlen, -EINVAL, "-o %s: needs a value (%s=VALUE)", e->name,
		               e->name);
	if (ctl_parse_explain(e, value, strlen(value), &v, why, sizeof(why)) < 0)
		return fs_errf(err, errlen, -EINVAL, "-o %s: invalid value \"%s\": %s", e->name,
		               value, why);
	for (unsigned i = 0; e->scope == CTL_DEVICE && i < cfg->ndevs; i++)
		if (!spec || spec == &cfg->devs[i])
			spec_set_tunable(&cfg->devs[i], e, v);
	rc = add_tunable(cfg, e, spec ? spec->name : NULL, value, "-o");
	return rc < 0 ? fs_errf(err, errlen, rc, "-o %s: %s", e->name, strerror(-rc)) : 0;
}

/* -o name=NEW: tunables already recorded for the old name follow the device. */
static int rename_device(struct fs_config *cfg, struct fs_device_spec *spec, const char *name,
                         char *err, size_t errlen)
{
	char why[160];
	char *old;
	int rc;

	if (find_spec(cfg, name) && find_spec(cfg, name) != spec)
		return fs_errf(err, errlen, -EINVAL, "-o name: duplicate device name \"%s\"", name);
	old = strdup(spec->name);
	if (!old)
		return fs_errf(err, errlen, -ENOMEM, "-o name: out of memory");
	rc = spec_set_option(spec, find_dev_option("name"), name, why, sizeof(why));
	for (unsigned i = 0; rc == 0 && i < cfg->ntunables; i++)
		if (cfg->tunables[i].device && strcmp(cfg->tunables[i].device, old) == 0)
			rc = replace_string(&cfg->tunables[i].device, name);
	free(old);
	if (rc == -EINVAL)
		return fs_errf(err, errlen, rc, "-o name: invalid value \"%s\": %s", name, why);
	return rc < 0 ? fs_errf(err, errlen, rc, "-o name: %s", strerror(-rc)) : 0;
}

static int option_device(struct fs_config *cfg, const struct dev_option *o,
                         struct fs_device_spec *spec, const char *value, char *err, size_t errlen)
{
	char why[160];
	int rc = 0;

	if (!value && o->kind != OPT_BOOL && o->kind != OPT_DIRECT)
		return fs_errf(err, errlen, -EINVAL, "-o %s: needs a value (%s=VALUE)", o->name,
		               o->name);
	if (!spec && cfg->ndevs == 0 && !fs_config_add_device(cfg, NULL))
		return fs_errf(err, errlen, -ENOMEM, "-o %s: out of memory", o->name);
	if (!spec && cfg->ndevs > 1 && (o->kind == OPT_NAME || o->kind == OPT_PATH))
		return fs_errf(err, errlen, -EINVAL,
		               "-o %s: %u devices are configured: write DEVICE.%s", o->name,
		               cfg->ndevs, o->name);
	if (o->kind == OPT_NAME && value)
		return rename_device(cfg, spec ? spec : &cfg->devs[0], value, err, errlen);
	for (unsigned i = 0; rc == 0 && i < cfg->ndevs; i++)
		if (!spec || spec == &cfg->devs[i])
			rc = spec_set_option(&cfg->devs[i], o, value ? value : "yes", why,
			                     sizeof(why));
	if (rc == -EINVAL)
		return fs_errf(err, errlen, rc, "-o %s: invalid value \"%s\": %s", o->name,
		               value ? value : "", why);
	return rc < 0 ? fs_errf(err, errlen, rc, "-o %s: %s", o->name, strerror(-rc)) : 0;
}

static int option_daemon(struct fs_config *cfg, const struct daemon_option *o, const char *value,
                         char *err, size_t errlen)
{
	bool b = true;
	int rc;

	if (o->kind == KEY_BOOL && value && parse_bool(value, &b) < 0)
		return fs_errf(err, errlen, -EINVAL,
		               "-o %s: invalid value \"%s\": expected yes or no", o->name, value);
	if (o->kind != KEY_BOOL && (!value || !*value))
		return fs_errf(err, errlen, -EINVAL, "-o %s: needs a value (%s=VALUE)", o->name,
		               o->name);
	rc = set_daemon_option(cfg, o, value ? value : "", b);
	if (rc == -EINVAL && daemon_syntax(o))
		return fs_errf(err, errlen, rc, "-o %s: invalid value \"%s\": %s", o->name, value,
		               daemon_syntax(o));
	return rc < 0 ? fs_errf(err, errlen, rc, "-o %s: %s", o->name, strerror(-rc)) : 0;
}

static int option_device_key(struct fs_config *cfg, struct fs_device_spec *spec, const char *key,
                             const char *value, char *err, size_t errlen)
{
	const struct dev_option *o = find_dev_option(key);
	const struct ctl_entry *e = ctl_find(CTL_DEVICE, key);

	if (o)
		return option_device(cfg, o, spec, value, err, errlen);
	if (e)
		return option_tunable(cfg, e, spec, value, err, errlen);
	return fs_errf(err, errlen, -EINVAL, "-o %s.%s: unknown device setting \"%s\"", spec->name,
	               key, key);
}

static char *escape_char(char *q, char c)
{
	if (c == ',' || c == '\\')
		*q++ = '\\';
	*q++ = c;
	return q;
}

/* Passed to FUSE, whose own -o parser reads a backslash-escaped comma as a comma. */
static int option_fuse(struct fs_config *cfg, const char *name, const char *value, char *err,
                       size_t errlen)
{
	size_t len = strlen(name) + (value ? strlen(value) : 0);
	char *opt = malloc(2 * len + 2), *q = opt;
	int rc;

	if (!opt)
		return fs_errf(err, errlen, -ENOMEM, "-o %s: out of memory", name);
	for (const char *p = name; *p; p++)
		q = escape_char(q, *p);
	if (value) {
		*q++ = '=';
		for (const char *p = value; *p; p++)
			q = escape_char(q, *p);
	}
	*q = '\0';
	rc = append_fuse_opts(cfg, opt);
	free(opt);
	return rc < 0 ? fs_errf(err, errlen, rc, "-o %s: out of memory", name) : 0;
}

int fs_config_set_option(struct fs_config *cfg, const char *name, const char *value, char *err,
                         size_t errlen)
{
	const struct daemon_option *d = find_daemon_option(name);
	const struct ctl_entry *e = ctl_find(CTL_GLOBAL, name);
	const char *key = NULL;
	struct fs_device_spec *spec;

	if (!*name)
		return fs_errf(err, errlen, -EINVAL, "-o: empty option name");
	if (d)
		return option_daemon(cfg, d, value, err, errlen);
	if (e)
		return option_tunable(cfg, e, NULL, value, err, errlen);
	spec = qualified_device(cfg, name, &key);
	if (spec)
		return option_device_key(cfg, spec, key, value, err, errlen);
	if (find_dev_option(name))
		return option_device(cfg, find_dev_option(name), NULL, value, err, errlen);
	e = ctl_find(CTL_DEVICE, name);
	if (e)
		return option_tunable(cfg, e, NULL, value, err, errlen);
	return option_fuse(cfg, name, value, err, errlen);
}

/*----------------------------------------------------------------
 * Applying, reloading, checking
 *--------------------------------------------------------------*/

static int apply_one(const struct fs_tunable *t, struct fs_device *dev, char *err, size_t errlen)
{
	char why[160];
	uint64_t v;
	int rc = ctl_write(t->entry, dev, t->value, strlen(t->value));

	if (rc == 0)
		return 0;
	if (rc == -EINVAL &&
	    ctl_parse_explain(t->entry, t->value, strlen(t->value), &v, why, sizeof(why)) < 0)
		return fs_errf(err, errlen, rc, "%s: %s = %s: %s", t->origin, t->entry->name,
		               t->value, why);
	return fs_errf(err, errlen, rc, "%s: %s = %s%s%s: %s", t->origin, t->entry->name, t->value,
	               dev ? " on " : "", dev ? dev->spec.name : "", strerror(-rc));
}

static int apply_tunable(const struct fs_tunable *t, struct fs_device **devs, unsigned ndevs,
                         char *err, size_t errlen)
{
	bool found = false;
	int first = 0;

	if (t->entry->scope == CTL_GLOBAL)
		return apply_one(t, NULL, err, errlen);
	for (unsigned i = 0; i < ndevs; i++) {
		if (t->device && strcmp(devs[i]->spec.name, t->device) != 0)
			continue;
		found = true;
		int rc = apply_one(t, devs[i], first ? NULL : err, errlen);
		if (rc < 0 && !first)
			first = rc;
	}
	if (!found && t->device)
		return fs_errf(err, errlen, -ENODEV, "%s: %s: no device named \"%s\"", t->origin,
		               t->entry->name, t->device);
	return first;
}

int fs_config_apply(const struct fs_config *cfg, struct fs_device **devs, unsigned ndevs, char *err,
                    size_t errlen)
{
	int first = 0;

	for (unsigned i = 0; i < cfg->ntunables; i++) {
		int rc = apply_tunable(&cfg->tunables[i], devs, ndevs, first ? NULL : err, errlen);

		if (rc < 0 && !first)
			first = rc;
	}
	return first;
}

static int check_reload_devices(const struct fs_config *cfg, const struct fs_config *fresh,
                                char *err, size_t errlen)
{
	for (unsigned i = 0; i < fresh->ntunables; i++) {
		const struct fs_tunable *t = &fresh->tunables[i];

		if (t->device && !find_spec((struct fs_config *)cfg, t->device))
			return fs_errf(
			    err, errlen, -EINVAL,
			    "%s: device \"%s\" is not being served (restart to add devices)",
			    t->origin, t->device);
	}
	return 0;
}

/* Re-add the -o tunables of @cfg after the file's, so they keep overriding. */
static int keep_cmdline_tunables(struct fs_config *fresh, const struct fs_config *cfg)
{
	for (unsigned i = 0; i < cfg->ntunables; i++) {
		const struct fs_tunable *t = &cfg->tunables[i];

		if (strcmp(t->origin, "-o") == 0) {
			int rc = add_tunable(fresh, t->entry, t->device, t->value, t->origin);

			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

int fs_config_reload_tunables(struct fs_config *cfg, const char *path, char *err, size_t errlen)
{
	struct fs_config fresh;
	int rc;

	if (!path)
		path = cfg->config_path;
	if (!path)
		return fs_errf(err, errlen, -EINVAL, "no configuration file to reload");
	fs_config_init(&fresh);
	rc = load_into(&fresh, path, err, errlen);
	if (rc == 0)
		rc = check_reload_devices(cfg, &fresh, err, errlen);
	if (rc == 0 && keep_cmdline_tunables(&fresh, cfg) < 0)
		rc = fs_errf(err, errlen, -ENOMEM, "%s: out of memory", path);
	if (rc == 0) {
		struct fs_tunable *swap = cfg->tunables;
		unsigned n = cfg->ntunables;

		cfg->tunables = fresh.tunables;
		cfg->ntunables = fresh.ntunables;
		fresh.tunables = swap;
		fresh.ntunables = n;
	}
	fs_config_free(&fresh);
	return rc;
}

int fs_config_check(const struct fs_config *cfg, char *err, size_t errlen)
{
	if (cfg->ndevs == 0)
		return fs_errf(err, errlen, -EINVAL,
		               "no device to serve: give BACKING or a config "
		               "file with devices = ( { ... } )");
	for (unsigned i = 0; i < cfg->ndevs; i++)
		if (!cfg->devs[i].backing)
			return fs_errf(err, errlen, -EINVAL, "device \"%s\": missing backing",
			               cfg->devs[i].name);
	if (!cfg->mountpoint)
		return fs_errf(err, errlen, -EINVAL, "no mount point given");
	return 0;
}
