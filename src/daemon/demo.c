/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * --demo: the README's one-command start. A sparse 1 GiB image in the state
 * directory (systemd's $STATE_DIRECTORY, else /var/lib/bufiofs) is created on
 * first use and kept, so data written in one demo is there in the next.
 */
#define _GNU_SOURCE /* asprintf */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/lifecycle.h"
#include "daemon/log.h"

#define DEMO_SIZE              (1ull << 30)
#define DEMO_DEFAULT_STATE_DIR "/var/lib/bufiofs"

/* mkdir -p: create @path and its missing parents. */
static int make_dirs(const char *path)
{
	char *p = strdup(path);
	int ret = 0;

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s && !ret; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) != 0 && errno != EEXIST)
			ret = -errno;
		*s = '/';
	}
	if (!ret && mkdir(p, 0755) != 0 && errno != EEXIST)
		ret = -errno;
	free(p);
	return ret;
}

/* The first directory of $STATE_DIRECTORY (a colon-separated list), if set. */
static char *state_dir(const struct fs_config *cfg)
{
	const char *env = getenv("STATE_DIRECTORY");

	if (cfg->state_dir)
		return strdup(cfg->state_dir);
	if (env && *env)
		return strndup(env, strcspn(env, ":"));
	return strdup(DEMO_DEFAULT_STATE_DIR);
}

static int create_image(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0) {
		if (errno == EEXIST)
			return 0; /* kept from an earlier demo */
		snprintf(err, errlen, "%s: cannot create the demo image: %s", path,
		         strerror(errno));
		return -errno;
	}
	if (ftruncate(fd, DEMO_SIZE) != 0) {
		int e = errno;

		snprintf(err, errlen, "%s: cannot size the demo image: %s", path, strerror(e));
		close(fd);
		unlink(path);
		return -e;
	}
	close(fd);
	fs_log(LOG_NOTICE, "created sparse 1 GiB demo image %s", path);
	return 0;
}

static int point_at(struct fs_config *cfg, const char *image)
{
	struct fs_device_spec *spec = cfg->ndevs ? &cfg->devs[0] : fs_config_add_device(cfg, NULL);

	if (!spec)
		return -ENOMEM;
	if (!spec->backing) {
		spec->backing = strdup(image);
		if (!spec->backing)
			return -ENOMEM;
	}
	return 0;
}

int fs_demo_prepare(struct fs_config *cfg, char *err, size_t errlen)
{
	const char *mountpoint = cfg->mountpoint;
	char *dir = state_dir(cfg), *image = NULL;
	int ret;

	if (!dir || asprintf(&image, "%s/demo.img", dir) < 0) {
		free(dir);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ret = make_dirs(dir);
	if (ret)
		snprintf(err, errlen, "%s: cannot create the state directory: %s", dir,
		         strerror(-ret));
	if (!ret)
		ret = create_image(image, err, errlen);
	if (!ret) {
		ret = make_dirs(mountpoint);
		if (ret)
			snprintf(err, errlen, "%s: cannot create the mount point: %s", mountpoint,
			         strerror(-ret));
	}
	if (!ret && point_at(cfg, image) != 0) {
		snprintf(err, errlen, "out of memory");
		ret = -ENOMEM;
	}
	free(image);
	free(dir);
	return ret;
}
