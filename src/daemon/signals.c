/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Signals without async-signal-safety worries: TERM, INT and HUP are blocked
 * everywhere and taken by one thread with sigwait(2), which may then do real
 * work (reload the config, log) and end the FUSE session loop.
 */
#define _GNU_SOURCE /* strsignal */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>

#include "daemon/lifecycle.h"
#include "daemon/log.h"
#include "fuse/fs.h"

struct fs_signals {
	pthread_t thread;
	struct fuse_session *se;
	struct fs_loop *loop;
	struct fs_config *cfg;
	struct fs_device **devs;
	unsigned ndevs;
	atomic_bool loop_done; /* the main thread has left the session loop */
};

static void handled_set(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
}

/* Exists only so that SIGUSR1 interrupts a FUSE worker's read (EINTR). */
static void wake_handler(int sig)
{
	(void)sig;
}

int fs_signals_block(void)
{
	struct sigaction sa;
	sigset_t set;
	int err;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = wake_handler; /* no SA_RESTART: the wait must return */
	sigaction(SIGUSR1, &sa, NULL);
	handled_set(&set);
	sigaddset(&set, SIGUSR1);
	err = pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (err)
		fs_log(LOG_ERR, "cannot block signals: %s", strerror(err));
	return -err;
}

static void reload(struct fs_signals *s)
{
	char err[512];
	int ret;

	if (!s->cfg->config_path) {
		fs_log(LOG_NOTICE, "SIGHUP: no config file to reload");
		return;
	}
	ret = fs_config_reload_tunables(s->cfg, NULL, err, sizeof(err));
	if (ret) {
		fs_log(LOG_ERR, "SIGHUP: config not reloaded: %s", err);
		return;
	}
	ret = fs_config_apply(s->cfg, s->devs, s->ndevs, err, sizeof(err));
	if (ret)
		fs_log(LOG_ERR, "SIGHUP: %s", err);
	else
		fs_log(LOG_NOTICE, "SIGHUP: tunables reloaded from %s", s->cfg->config_path);
}

/*
 * A worker only notices fuse_session_exit() when its read returns, so poke
 * the workers until they are out. The retry covers a poke that lands just
 * before a read starts; it only runs while shutting down.
 */
static void wake_workers(struct fs_signals *s)
{
	const struct timespec step = {.tv_nsec = 50L * 1000 * 1000};

	while (!atomic_load(&s->loop_done)) {
		fs_loop_interrupt(s->loop);
		nanosleep(&step, NULL);
	}
}

static void *signal_thread(void *arg)
{
	struct fs_signals *s = arg;
	sigset_t set;
	int sig;

	handled_set(&set);
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (atomic_load(&s->loop_done))
			return NULL;
		if (sig == SIGHUP) {
			reload(s);
			continue;
		}
		fs_log(LOG_NOTICE, "%s: writing back and unmounting", strsignal(sig));
		fuse_session_exit(s->se);
		wake_workers(s);
		return NULL;
	}
}

struct fs_signals *fs_signals_start(struct fuse_session *se, struct fs_loop *loop,
                                    struct fs_config *cfg, struct fs_device **devs, unsigned ndevs)
{
	struct fs_signals *s = calloc(1, sizeof(*s));
	int err;

	if (!s) {
		fs_log(LOG_ERR, "cannot start the signal thread: out of memory");
		return NULL;
	}
	*s = (struct fs_signals){.se = se, .loop = loop, .cfg = cfg, .devs = devs, .ndevs = ndevs};
	atomic_init(&s->loop_done, false);
	err = pthread_create(&s->thread, NULL, signal_thread, s);
	if (err) {
		fs_log(LOG_ERR, "cannot start the signal thread: %s", strerror(err));
		free(s);
		return NULL;
	}
	return s;
}

void fs_signals_stop(struct fs_signals *s)
{
	if (!s)
		return;
	atomic_store(&s->loop_done, true);
	/* Unblocks the sigwait if the loop ended by unmount, not by a signal. */
	/* SIGTERM is blocked in every thread: it does not kill, sigwait takes it. */
	// NOLINTNEXTLINE(bugprone-bad-signal-to-kill-thread)
	pthread_kill(s->thread, SIGTERM);
	pthread_join(s->thread, NULL);
	free(s);
}
