/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Going to the background without losing start-up errors: the parent waits
 * on a pipe for the child's verdict and exits with it, so `bufiofs ...; echo
 * $?` and init scripts see a failed mount as a failure.
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/lifecycle.h"
#include "daemon/log.h"

/* Parent: wait for one status byte; EOF means the child died first. */
static void parent_wait(int fd, pid_t child)
{
	unsigned char status;
	ssize_t n;

	do
		n = read(fd, &status, 1);
	while (n < 0 && errno == EINTR);
	if (n == 1)
		_exit(status);
	waitpid(child, NULL, 0);
	_exit(1);
}

int fs_daemon_start(bool foreground, int *status_fd)
{
	int fds[2];
	pid_t pid;

	*status_fd = -1;
	if (foreground)
		return 0;
	if (pipe2(fds, O_CLOEXEC) != 0) {
		fs_log(LOG_ERR, "cannot create a pipe to daemonize: %s", strerror(errno));
		return -errno;
	}
	pid = fork();
	if (pid < 0) {
		fs_log(LOG_ERR, "cannot fork to daemonize: %s", strerror(errno));
		return -errno;
	}
	if (pid > 0) {
		close(fds[1]);
		parent_wait(fds[0], pid);
	}
	close(fds[0]);
	*status_fd = fds[1];
	if (setsid() < 0)
		fs_log(LOG_WARNING, "setsid failed: %s", strerror(errno));
	/* Do not keep the directory we were started in busy. */
	if (chdir("/") != 0)
		fs_log(LOG_WARNING, "chdir / failed: %s", strerror(errno));
	return 0;
}

static void detach_stdio(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

void fs_daemon_ready(int *status_fd, int status)
{
	unsigned char s = status;

	if (*status_fd < 0)
		return;
	if (status == 0) {
		fs_log_use_syslog();
		detach_stdio();
	}
	if (write(*status_fd, &s, 1) != 1)
		fs_log(LOG_WARNING, "cannot report start-up status: %s", strerror(errno));
	close(*status_fd);
	*status_fd = -1;
}
