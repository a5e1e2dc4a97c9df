/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The fault backend: a stacking backend for tests that fails, delays or holds
 * back the I/O of the backend below according to rules, so error paths and
 * "in flight" states of the cache can be exercised deterministically.
 *
 * Rule semantics (every rule is checked, in the order added):
 *  - an io matches a rule when its op is in ->ops (0 = any) and it overlaps
 *    [start, end) (end 0 = no upper bound); a zero-length io (flush) has no
 *    range and matches any range;
 *  - the first ->after matching ios pass untouched (no failure, no delay);
 *  - each later one is hit with chance ->probability ppm (0 = always), drawn
 *    from a PRNG seeded by BUFIO_FAULT_SEED (default fixed), so runs are
 *    repeatable; so {probability, delay_us} alone delays a random share;
 *  - a hit io gets ->delay_us (the largest of all rules that hit it) and
 *    fails with ->error (the first rule that fails it wins) while fewer than
 *    ->count have failed by this rule (0 = no limit); once ->count is spent
 *    the rule still delays;
 *  - a batch with a hit io stalls its submitter for the largest ->stall_us
 *    of the rules that hit, before anything of it goes further.
 *
 * Where completions run: an io failed by a rule without delay is completed
 * inline by the submitter, before submit returns, and never reaches the lower
 * backend. A delayed io waits on the fault thread's timer queue (ordered by
 * due time), then is passed to the lower backend (or completed with its
 * error). Ios released by the gate are completed on the fault thread. Other
 * completions run wherever the lower backend runs them.
 */
#define _GNU_SOURCE /* O_DIRECT, fallocate, statx, pthread_setname_np */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "be_fault.h"
#include "be_int.h"

struct rule_state {
	struct be_fault_rule r;
	uint64_t seen;   /* matching ios so far */
	uint64_t failed; /* ios failed by this rule */
};

/* One per io passing through: the io the lower backend sees, and our state. */
struct fault_req {
	struct bufio_io lio;
	struct bufio_io *orig;
	struct be_fault *fb;
	uint64_t due_ns;
	unsigned delay_us;
	unsigned stall_us;
	int err; /* the rule's error: not sent below */
	int res; /* the result to deliver (held ios) */
	struct fault_req *next;
};

struct be_fault {
	struct bufio_backend be;
	struct bufio_backend *lower;
	bool own_lower;

	pthread_mutex_t lock;
	pthread_cond_t wake; /* the fault thread: new timer or ready work, or stop */
	pthread_t thread;
	bool stopping;

	struct rule_state *rules;
	unsigned nrules, cap;
	uint64_t rng;
	uint64_t injected;
	struct be_counts counts;

	bool gate;
	unsigned gate_ops;
	unsigned held;
	struct fault_req *held_head, **held_tail;
	struct fault_req *ready;  /* released from the gate, for the fault thread */
	struct fault_req *timers; /* sorted by due time, FIFO among equals */
};

static const struct bufio_backend_ops fault_ops;

static struct be_fault *to_fault(struct bufio_backend *be)
{
	return be && be->ops == &fault_ops ? (struct be_fault *)be : NULL;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* splitmix64: tiny, and good enough to make a ppm draw unbiased */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static unsigned op_bit(const struct bufio_io *io)
{
	return io->op <= BUFIO_OP_DISCARD ? 1u << io->op : 0;
}

static bool rule_matches(const struct be_fault_rule *r, const struct bufio_io *io)
{
	if (r->ops && !(r->ops & op_bit(io)))
		return false;
	if (!io->len)
		return true;
	return io->offset + io->len > r->start && (r->end == 0 || io->offset < r->end);
}

/* Decide the fate of one io. Lock held. */
static void apply_rules(struct be_fault *fb, struct fault_req *req)
{
	const struct bufio_io *io = req->orig;

	for (unsigned i = 0; i < fb->nrules; i++) {
		struct rule_state *rs = &fb->rules[i];
		const struct be_fault_rule *r = &rs->r;

		if (!rule_matches(r, io))
			continue;
		if (++rs->seen <= r->after)
			continue;
		if (r->probability && rng_next(&fb->rng) % 1000000 >= r->probability)
			continue;
		if (r->delay_us > req->delay_us)
			req->delay_us = r->delay_us;
		if (r->stall_us > req->stall_us)
			req->stall_us = r->stall_us;
		if (req->err || !r->error || (r->count && rs->failed >= r->count))
			continue;
		req->err = r->error;
		rs->failed++;
		fb->injected++;
	}
}

/* Hand a result to the submitter, unless the gate keeps it back. */
static void deliver(struct be_fault *fb, struct fault_req *req, int res)
{
	struct bufio_io *orig = req->orig;

	pthread_mutex_lock(&fb->lock);
	if (fb->gate && (!fb->gate_ops || (fb->gate_ops & op_bit(orig)))) {
		req->res = res;
		req->next = NULL;
		*fb->held_tail = req;
		fb->held_tail = &req->next;
		fb->held++;
		pthread_mutex_unlock(&fb->lock);
		return;
	}
	pthread_mutex_unlock(&fb->lock);
	free(req);
	orig->done(orig, res);
}

static void lower_done(struct bufio_io *lio, int res)
{
	struct fault_req *req = lio->private;

	deliver(req->fb, req, res);
}

static void timer_insert(struct be_fault *fb, struct fault_req *req)
{
	struct fault_req **p = &fb->timers;

	while (*p && (*p)->due_ns <= req->due_ns)
		p = &(*p)->next;
	req->next = *p;
	*p = req;
}

/* A due timer: send the io below, or complete it with its rule's error. */
static void fire(struct be_fault *fb, struct fault_req *req)
{
	if (req->err) {
		deliver(fb, req, req->err);
		return;
	}
	req->lio.next = NULL;
	bufio_backend_submit(fb->lower, &req->lio);
}

static void *fault_main(void *arg)
{
	struct be_fault *fb = arg;

	be_in_completion = true;
	pthread_mutex_lock(&fb->lock);
	while (!fb->stopping) {
		struct fault_req *req;

		if (fb->ready) {
			req = fb->ready;
			fb->ready = req->next;
			pthread_mutex_unlock(&fb->lock);
			req->orig->done(req->orig, req->res);
			free(req);
			pthread_mutex_lock(&fb->lock);
			continue;
		}
		if (fb->timers) {
			uint64_t now = now_ns();
			struct timespec ts;

			req = fb->timers;
			if (req->due_ns <= now) {
				fb->timers = req->next;
				pthread_mutex_unlock(&fb->lock);
				fire(fb, req);
				pthread_mutex_lock(&fb->lock);
				continue;
			}
			ts.tv_sec = (time_t)(req->due_ns / 1000000000ull);
			ts.tv_nsec = (long)(req->due_ns % 1000000000ull);
			pthread_cond_timedwait(&fb->wake, &fb->lock, &ts);
			continue;
		}
		pthread_cond_wait(&fb->wake, &fb->lock);
	}
	pthread_mutex_unlock(&fb->lock);
	return NULL;
}

static void fault_submit(struct bufio_backend *be, struct bufio_io *ios)
{
	struct be_fault *fb = (struct be_fault *)be;
	struct fault_req *reqs = NULL, **rtail = &reqs, *req, *next;
	struct bufio_io *lower = NULL, **ltail = &lower;
	uint64_t now = now_ns();
	unsigned stall_us = 0;
	bool kick = false;

	/* Wrap every io first so the rules see the batch under one lock. */
	while (ios) {
		struct bufio_io *inext = ios->next;

		req = calloc(1, sizeof(*req));
		if (!req) {
			ios->done(ios, -ENOMEM);
		} else {
			req->orig = ios;
			req->fb = fb;
			req->lio.buf = ios->buf;
			req->lio.offset = ios->offset;
			req->lio.len = ios->len;
			req->lio.op = ios->op;
			req->lio.done = lower_done;
			req->lio.private = req;
			*rtail = req;
			rtail = &req->next;
		}
		ios = inext;
	}
	*rtail = NULL;

	pthread_mutex_lock(&fb->lock);
	fb->counts.batches++;
	for (req = reqs; req; req = req->next) {
		if (req->orig->op <= BUFIO_OP_DISCARD) {
			fb->counts.ops[req->orig->op]++;
			fb->counts.bytes[req->orig->op] += req->orig->len;
		}
		apply_rules(fb, req);
		if (req->stall_us > stall_us)
			stall_us = req->stall_us;
	}
	pthread_mutex_unlock(&fb->lock);
	if (stall_us) /* plain sleep: no hook must hear of it */
		nanosleep(&(struct timespec){.tv_sec = stall_us / 1000000,
		                             .tv_nsec = (long)(stall_us % 1000000) * 1000},
		          NULL);

	for (req = reqs; req; req = next) {
		next = req->next;
		if (req->delay_us) {
			req->due_ns = now + (uint64_t)req->delay_us * 1000;
			pthread_mutex_lock(&fb->lock);
			timer_insert(fb, req);
			kick |= fb->timers == req;
			pthread_mutex_unlock(&fb->lock);
		} else if (req->err) {
			deliver(fb, req, req->err);
		} else {
			*ltail = &req->lio;
			ltail = &req->lio.next;
		}
	}
	*ltail = NULL;
	if (kick) {
		/* a new earliest timer: the thread must shorten its wait */
		pthread_mutex_lock(&fb->lock);
		pthread_cond_signal(&fb->wake);
		pthread_mutex_unlock(&fb->lock);
	}
	bufio_backend_submit(fb->lower, lower);
}

static void free_list(struct fault_req *req)
{
	while (req) {
		struct fault_req *next = req->next;

		free(req);
		req = next;
	}
}

static void fault_close(struct bufio_backend *be)
{
	struct be_fault *fb = (struct be_fault *)be;

	pthread_mutex_lock(&fb->lock);
	fb->stopping = true;
	pthread_cond_signal(&fb->wake);
	pthread_mutex_unlock(&fb->lock);
	pthread_join(fb->thread, NULL);
	/* the caller broke the contract if any are left; at least free them */
	free_list(fb->held_head);
	free_list(fb->ready);
	free_list(fb->timers);
	if (fb->own_lower)
		bufio_backend_close(fb->lower);
	pthread_cond_destroy(&fb->wake);
	pthread_mutex_destroy(&fb->lock);
	free(fb->rules);
	free(fb);
}

static const struct bufio_backend_ops fault_ops = {
    .submit = fault_submit,
    .close = fault_close,
};

struct bufio_backend *be_fault_create(struct bufio_backend *lower, bool own_lower)
{
	const char *seed = getenv("BUFIO_FAULT_SEED");
	pthread_condattr_t ca;
	struct be_fault *fb;
	int ret;

	if (!lower) {
		errno = EINVAL;
		return NULL;
	}
	fb = calloc(1, sizeof(*fb));
	if (!fb) {
		errno = ENOMEM;
		return NULL;
	}
	fb->be.ops = &fault_ops;
	fb->be.size = lower->size;
	fb->be.align = lower->align;
	fb->be.flags = lower->flags;
	fb->be.name = "fault";
	fb->be.path = lower->path;
	fb->lower = lower;
	fb->own_lower = own_lower;
	fb->rng = seed && *seed ? strtoull(seed, NULL, 0) : 0x5eedf00dull;
	fb->held_tail = &fb->held_head;
	pthread_mutex_init(&fb->lock, NULL);
	/* timer deadlines are monotonic: a clock step must not stall a delay */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fb->wake, &ca);
	pthread_condattr_destroy(&ca);
	ret = pthread_create(&fb->thread, NULL, fault_main, fb);
	if (ret) {
		pthread_cond_destroy(&fb->wake);
		pthread_mutex_destroy(&fb->lock);
		free(fb);
		errno = ret;
		return NULL;
	}
	pthread_setname_np(fb->thread, "bufio-fault");
	return &fb->be;
}

int be_fault_add_rule(struct bufio_backend *be, const struct be_fault_rule *rule)
{
	struct be_fault *fb = to_fault(be);
	int id;

	if (!fb || !rule || rule->error > 0 || rule->probability > 1000000 || (rule->ops & ~0xfu) ||
	    (rule->end && rule->end <= rule->start))
		return -EINVAL;
	pthread_mutex_lock(&fb->lock);
	if (fb->nrules == fb->cap) {
		unsigned cap = fb->cap ? fb->cap * 2 : 8;
		struct rule_state *r = realloc(fb->rules, cap * sizeof(*r));

		if (!r) {
			pthread_mutex_unlock(&fb->lock);
			return -ENOMEM;
		}
		fb->rules = r;
		fb->cap = cap;
	}
	id = (int)fb->nrules;
	fb->rules[fb->nrules++] = (struct rule_state){.r = *rule};
	pthread_mutex_unlock(&fb->lock);
	return id;
}

void be_fault_clear_rules(struct bufio_backend *be)
{
	struct be_fault *fb = to_fault(be);

	if (!fb)
		return;
	pthread_mutex_lock(&fb->lock);
	fb->nrules = 0;
	pthread_mutex_unlock(&fb->lock);
}

uint64_t be_fault_injected(struct bufio_backend *be)
{
	struct be_fault *fb = to_fault(be);
	uint64_t n;

	if (!fb)
		return 0;
	pthread_mutex_lock(&fb->lock);
	n = fb->injected;
	pthread_mutex_unlock(&fb->lock);
	return n;
}

void be_fault_hold(struct bufio_backend *be, unsigned ops)
{
	struct be_fault *fb = to_fault(be);

	if (!fb)
		return;
	pthread_mutex_lock(&fb->lock);
	fb->gate = true;
	fb->gate_ops = ops;
	pthread_mutex_unlock(&fb->lock);
}

/* Delivery happens on the fault thread, so release never runs callbacks itself. */
void be_fault_release(struct bufio_backend *be)
{
	struct be_fault *fb = to_fault(be);

	if (!fb)
		return;
	pthread_mutex_lock(&fb->lock);
	fb->gate = false;
	if (fb->held_head) {
		struct fault_req **p;

		for (p = &fb->ready; *p; p = &(*p)->next)
			;
		*p = fb->held_head;
		fb->held_head = NULL;
		fb->held_tail = &fb->held_head;
		fb->held = 0;
		pthread_cond_signal(&fb->wake);
	}
	pthread_mutex_unlock(&fb->lock);
}

unsigned be_fault_held(struct bufio_backend *be)
{
	struct be_fault *fb = to_fault(be);
	unsigned n;

	if (!fb)
		return 0;
	pthread_mutex_lock(&fb->lock);
	n = fb->held;
	pthread_mutex_unlock(&fb->lock);
	return n;
}

void be_fault_counts(struct bufio_backend *be, struct be_counts *out)
{
	struct be_fault *fb = to_fault(be);

	memset(out, 0, sizeof(*out));
	if (!fb)
		return;
	pthread_mutex_lock(&fb->lock);
	*out = fb->counts;
	pthread_mutex_unlock(&fb->lock);
}
