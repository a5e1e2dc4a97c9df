/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A failing backing: write attempts (a batch of writes) are counted, a
 * failed one holds background write-back back for a doubling backoff instead
 * of retrying at once, and too many in a row switch the client to read-only
 * mode, as dm-clone does on metadata errors. Events tell the embedder.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

/* The backoff after @failures failed attempts: 1 s, doubled per failure, at most 30 s. */
static unsigned backoff_secs(unsigned failures)
{
	unsigned s = BUFIO_RETRY_MIN_SECS;

	for (unsigned i = 1; i < failures && s < BUFIO_RETRY_MAX_SECS; i++)
		s *= 2;
	return s < BUFIO_RETRY_MAX_SECS ? s : BUFIO_RETRY_MAX_SECS;
}

void attempt_start(struct bufio_plug *plug)
{
	if (!plug->head)
		return;
	struct wb_attempt *att = malloc(sizeof(*att));

	if (att) {
		att->pending = plug->count;
		att->error = 0;
		att->offset = 0;
	}
	for (struct bufio_io *io = plug->head; io; io = io->next)
		((struct core_io *)io)->att = att;
}

static void set_mode_locked(struct bufio_client *c, enum bufio_mode mode, struct bufio_event *ev,
                            unsigned *n)
{
	enum bufio_mode old = (enum bufio_mode)atomic_load(&c->mode);

	if (old == mode)
		return;
	atomic_store(&c->mode, (int)mode);
	ev[(*n)++] = (struct bufio_event){
	    .type = BUFIO_EV_MODE,
	    .failures = c->wb_failures,
	    .old_mode = old,
	    .new_mode = mode,
	};
}

unsigned attempt_io_done(struct bufio_client *c, struct core_io *cio, int res,
                         struct bufio_event *ev, bool *kick)
{
	struct wb_attempt *att = cio->att;
	int err = res;
	uint64_t offset = cio->io.offset;
	unsigned n = 0;

	if (att) {
		if (res < 0 && !att->error) {
			att->error = res;
			att->offset = offset;
		}
		if (--att->pending)
			return 0;
		err = att->error;
		offset = att->offset;
		free(att);
	}
	if (err < 0) {
		unsigned backoff = backoff_secs(++c->wb_failures);

		c->wb_retry_ms = bufio_now_ms() + backoff * 1000ull;
		ev[n++] = (struct bufio_event){
		    .type = BUFIO_EV_WRITE_FAILED,
		    .error = err,
		    .offset = offset,
		    .failures = c->wb_failures,
		    .retry_seconds = backoff,
		};
		if (c->max_write_failures && c->wb_failures >= c->max_write_failures)
			set_mode_locked(c, BUFIO_MODE_READ_ONLY, ev, &n);
		*kick = true;
	} else if (c->wb_failures) {
		ev[n++] = (struct bufio_event){
		    .type = BUFIO_EV_WRITE_RECOVERED,
		    .failures = c->wb_failures,
		};
		c->wb_failures = 0;
		c->wb_retry_ms = 0;
	}
	return n;
}

void deliver_events(struct bufio_client *c, const struct bufio_event *ev, unsigned n)
{
	if (!n)
		return;
	pthread_mutex_lock(&c->lock);
	bufio_event_fn fn = c->event_fn;
	void *arg = c->event_arg;
	pthread_mutex_unlock(&c->lock);
	for (unsigned i = 0; fn && i < n; i++)
		fn(c, &ev[i], arg);
}

bool backing_off(struct bufio_client *c)
{
	return c->wb_failures && bufio_now_ms() < c->wb_retry_ms;
}

/* Dirty buffers not being written: what a retry would write. */
static bool dirty_waiting(struct bufio_client *c)
{
	return c->n_buffers[LIST_DIRTY] > 0;
}

bool claim_retry(struct bufio_client *c, uint64_t now_ms)
{
	if (!c->wb_failures || now_ms < c->wb_retry_ms || !dirty_waiting(c))
		return false;
	/* The attempt's end sets the next time; should nothing be written
	 * now (every dirty buffer held), this keeps the worker from spinning. */
	c->wb_retry_ms = now_ms + backoff_secs(c->wb_failures) * 1000ull;
	return true;
}

uint64_t next_retry(struct bufio_client *c)
{
	pthread_mutex_lock(&c->lock);
	uint64_t t = c->wb_failures && dirty_waiting(c) ? c->wb_retry_ms : 0;
	pthread_mutex_unlock(&c->lock);
	return t;
}

/*---- the public side ----*/

int bufio_set_max_write_failures(struct bufio_client *c, unsigned n)
{
	if (n > 1000)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	c->max_write_failures = n;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

unsigned bufio_get_max_write_failures(struct bufio_client *c)
{
	pthread_mutex_lock(&c->lock);
	unsigned n = c->max_write_failures;
	pthread_mutex_unlock(&c->lock);
	return n;
}

enum bufio_mode bufio_get_mode(struct bufio_client *c)
{
	return (enum bufio_mode)atomic_load(&c->mode);
}

int bufio_set_mode(struct bufio_client *c, enum bufio_mode mode)
{
	struct bufio_event ev[1];
	unsigned n = 0;

	if (mode != BUFIO_MODE_WRITE && mode != BUFIO_MODE_READ_ONLY)
		return -EINVAL;
	if (bufio_get_mode(c) == mode)
		return 0;
	if (mode == BUFIO_MODE_WRITE) {
		int err;

		/* Everything dirty is written now, so an older background
		 * failure says nothing about whether this succeeds. */
		pthread_mutex_lock(&c->lock);
		c->async_write_error = 0;
		pthread_mutex_unlock(&c->lock);
		err = bufio_write_dirty_buffers(c);
		if (err)
			return err;
	}
	pthread_mutex_lock(&c->lock);
	if (mode == BUFIO_MODE_WRITE) {
		c->wb_failures = 0;
		c->wb_retry_ms = 0;
	}
	set_mode_locked(c, mode, ev, &n);
	pthread_mutex_unlock(&c->lock);
	deliver_events(c, ev, n);
	return 0;
}

void bufio_set_event_callback(struct bufio_client *c, bufio_event_fn fn, void *arg)
{
	pthread_mutex_lock(&c->lock);
	c->event_fn = fn;
	c->event_arg = arg;
	pthread_mutex_unlock(&c->lock);
}
