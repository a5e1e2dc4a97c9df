/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Memory pressure: the userspace analogue of dm-bufio's shrinker. A thread
 * sleeps in poll() on a PSI trigger (the cgroup v2 memory.pressure of this
 * process, else /proc/pressure/memory) and asks the worker to free a quarter
 * of the clean cache each time the kernel reports stalls. Where neither
 * exists, nothing watches: the budget and the age pass alone bound the cache.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* 100 ms of "some" stall within 2 s: the smallest window unprivileged
 * processes may use, and a level that means real reclaim trouble. */
static const char trigger[] = "some 100000 2000000";
static const char *source = "none";
static int psi_fd = -1;

static int open_trigger(const char *path)
{
	int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (write(fd, trigger, strlen(trigger) + 1) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int open_cgroup_trigger(void)
{
	char line[512], path[700];
	FILE *f = fopen("/proc/self/cgroup", "re");
	int fd = -1;
	while (f && fd < 0 && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (strncmp(line, "0::", 3) != 0)
			continue;
		/* The root cgroup has no memory.pressure; that is the system's. */
		if (!strcmp(line + 3, "/"))
			break;
		snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.pressure", line + 3);
		fd = open_trigger(path);
		if (fd < 0) {
			snprintf(path, sizeof(path), "/sys/fs/cgroup/unified%s/memory.pressure",
			         line + 3);
			fd = open_trigger(path);
		}
	}
	if (f)
		fclose(f);
	return fd;
}

static void *watch(void *arg)
{
	struct pollfd pfd = {.fd = psi_fd, .events = POLLPRI};
	for (;;) {
		int n = poll(&pfd, 1, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (pfd.revents & (POLLERR | POLLNVAL))) {
			fprintf(stderr, "bufio: memory pressure trigger lost; "
			                "not watching memory pressure any more\n");
			return NULL;
		}
		if (pfd.revents & POLLPRI)
			global_request_shrink(bufio_get_current_allocated() / 4);
	}
}

void pressure_start(void)
{
	psi_fd = open_cgroup_trigger();
	if (psi_fd >= 0) {
		source = "cgroup";
	} else {
		psi_fd = open_trigger("/proc/pressure/memory");
		if (psi_fd >= 0)
			source = "system";
	}
	if (psi_fd < 0)
		return;
	pthread_t t;
	if (pthread_create(&t, NULL, watch, NULL) != 0) {
		close(psi_fd);
		psi_fd = -1;
		source = "none";
		return;
	}
	pthread_detach(t);
}

const char *bufio_pressure_source(void)
{
	global_start();
	return source;
}
