/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The process-wide side of libbufio, like dm-bufio's module: the memory
 * budget shared by every client, its tunables, the client list and the one
 * background worker that does write-back, budget eviction and the age pass.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

struct bufio_global bufio_g = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .max_age = BUFIO_DEFAULT_AGE_SECS,
    .retain_bytes = BUFIO_DEFAULT_RETAIN_BYTES,
};

static pthread_mutex_t worker_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t start_once = PTHREAD_ONCE_INIT;

/*---- memory accounting ----*/

void global_account(int64_t bytes)
{
	uint64_t cur = atomic_fetch_add(&bufio_g.current, (uint64_t)bytes) + (uint64_t)bytes;
	if (bytes <= 0)
		return;
	uint64_t peak = atomic_load(&bufio_g.peak);
	while (cur > peak && !atomic_compare_exchange_weak(&bufio_g.peak, &peak, cur))
		;
}

bool global_over_budget(void)
{
	return atomic_load_explicit(&bufio_g.current, memory_order_relaxed) >
	       atomic_load_explicit(&bufio_g.cache_size, memory_order_relaxed);
}

bool global_near_budget(void)
{
	uint64_t size = atomic_load_explicit(&bufio_g.cache_size, memory_order_relaxed);
	return atomic_load_explicit(&bufio_g.current, memory_order_relaxed) >=
	       size - size / BUFIO_LOW_WATERMARK_RATIO;
}

bool global_far_over_budget(void)
{
	uint64_t size = atomic_load(&bufio_g.cache_size);
	return atomic_load(&bufio_g.current) > size + size / BUFIO_HARD_LIMIT_RATIO;
}

/* Read one unsigned number from a file; 0 if absent or "max". */
static uint64_t read_u64_file(const char *path)
{
	FILE *f = fopen(path, "re");
	unsigned long long v = 0;
	if (!f)
		return 0;
	if (fscanf(f, "%llu", &v) != 1)
		v = 0;
	fclose(f);
	return v;
}

/* Page cache the kernel can reclaim from a cgroup (memory.stat, v1 and v2). */
static uint64_t cgroup_file_pages(const char *dir)
{
	char path[768], key[64];
	unsigned long long v, sum = 0;
	snprintf(path, sizeof(path), "%s/memory.stat", dir);
	FILE *f = fopen(path, "re");
	while (f && fscanf(f, "%63s %llu", key, &v) == 2)
		if (!strcmp(key, "inactive_file") || !strcmp(key, "active_file"))
			sum += v;
	if (f)
		fclose(f);
	return sum;
}

/* The tightest memory cgroup limit on this process (0 if none) and the
 * cgroup's usage without its reclaimable page cache. */
struct cg_memory {
	uint64_t limit, used;
};

static struct cg_memory cgroup_memory(void)
{
	struct cg_memory m = {0, 0};
	char line[512], dir[600], path[700];
	FILE *f = fopen("/proc/self/cgroup", "re");
	while (f && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		char *cg = strrchr(line, ':');
		const char *lim_file, *use_file;
		if (!cg)
			continue;
		if (!strncmp(line, "0::", 3)) {
			snprintf(dir, sizeof(dir), "/sys/fs/cgroup%s", cg + 1);
			lim_file = "memory.max";
			use_file = "memory.current";
		} else if (strstr(line, ":memory:")) {
			snprintf(dir, sizeof(dir), "/sys/fs/cgroup/memory%s", cg + 1);
			lim_file = "memory.limit_in_bytes";
			use_file = "memory.usage_in_bytes";
		} else {
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, lim_file);
		uint64_t v = read_u64_file(path);
		if (v && (!m.limit || v < m.limit)) {
			m.limit = v;
			snprintf(path, sizeof(path), "%s/%s", dir, use_file);
			uint64_t used = read_u64_file(path), file = cgroup_file_pages(dir);
			m.used = used > file ? used - file : 0;
		}
	}
	if (f)
		fclose(f);
	return m;
}

/*
 * The budget in force: the setting, or 2% of RAM (of the cgroup limit if
 * lower). In a memory cgroup it is also capped to what the cache can take
 * without an OOM kill: the limit less everything else the cgroup uses and a
 * margin, less the 1/BUFIO_HARD_LIMIT_RATIO a writer may overshoot by. Like
 * dm-bufio's shrinker, the process's real surroundings win over a setting
 * too large for them; the cap follows the usage at every refresh.
 */
static void refresh_cache_size(void)
{
	uint64_t ram = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
	struct cg_memory cg = cgroup_memory();
	bool limited = cg.limit && cg.limit < ram;
	atomic_store(&bufio_g.cg_limited, limited);
	uint64_t size = atomic_load(&bufio_g.cache_size_setting);
	if (!size)
		size = (limited ? cg.limit : ram) / 100 * BUFIO_MEMORY_PERCENT;
	if (limited) {
		uint64_t cache = atomic_load(&bufio_g.current);
		uint64_t other = cg.used > cache ? cg.used - cache : 0;
		uint64_t keep = other + cg.limit / 8 + BUFIO_CGROUP_MARGIN;
		uint64_t room = cg.limit > keep ? cg.limit - keep : 0;
		uint64_t cap = room / (BUFIO_HARD_LIMIT_RATIO + 1) * BUFIO_HARD_LIMIT_RATIO;
		if (size > cap)
			size = cap;
	}
	atomic_store(&bufio_g.cache_size, size);
}

/*---- the background worker ----*/

/* How often the worker re-reads the memory cgroup's limit and usage. */
#define REFRESH_MS 100

void global_kick(unsigned what)
{
	/* Already asked and not yet taken: the worker will see it. Writers
	 * dirtying blocks kick per request; this keeps them off the lock. */
	if ((atomic_load(&bufio_g.kick) & what) == what)
		return;
	pthread_mutex_lock(&worker_lock);
	bufio_g.kick |= what;
	pthread_cond_signal(&bufio_g.worker_cond);
	pthread_mutex_unlock(&worker_lock);
}

static uint32_t dirty_check_period(void)
{
	/* Check often enough that nothing stays dirty much past its expiry. */
	uint32_t p = 5;
	for (struct bufio_client *c = bufio_g.clients; c; c = c->g_next) {
		unsigned e = atomic_load(&c->dirty_expire);
		if (e && e / 4 < p)
			p = e / 4 ? e / 4 : 1;
	}
	return p;
}

void global_enforce_budget(void)
{
	uint64_t size = atomic_load(&bufio_g.cache_size);
	uint64_t target = size - size / BUFIO_LOW_WATERMARK_RATIO;
	if (atomic_load(&bufio_g.current) <= size)
		return;
	for (;;) {
		bool progress = false;
		for (struct bufio_client *c = bufio_g.clients; c; c = c->g_next) {
			if (atomic_load(&bufio_g.current) <= target)
				return;
			uint64_t over = atomic_load(&bufio_g.current) - target;
			uint64_t nr = (over + c->charge - 1) / c->charge;
			pthread_mutex_lock(&c->lock);
			uint64_t n = evict_clock(c, nr, ST_EVICT_BUDGET);
			bool dirty = c->n_buffers[LIST_DIRTY] > 0;
			pthread_mutex_unlock(&c->lock);
			/* Nothing clean left to drop: write dirty buffers so
			 * they can go once clean; their completions kick us. */
			if (n < nr && dirty)
				writeback_async(c, true);
			progress |= n > 0;
		}
		if (!progress)
			return;
	}
}

/* Write back what the dirty ratio asks for; global lock held. */
static void ratio_writeback(void)
{
	for (struct bufio_client *c = bufio_g.clients; c; c = c->g_next) {
		pthread_mutex_lock(&c->lock);
		bool wb = writeback_needed(c);
		pthread_mutex_unlock(&c->lock);
		if (wb)
			writeback_async(c, true);
	}
}

static void cleanup_pass(uint32_t now, bool age)
{
	unsigned max_age = atomic_load(&bufio_g.max_age);
	uint64_t now_ms = bufio_now_ms();
	for (struct bufio_client *c = bufio_g.clients; c; c = c->g_next) {
		writeback_retry(c, now_ms);
		pthread_mutex_lock(&c->lock);
		bool wb = writeback_needed(c);
		pthread_mutex_unlock(&c->lock);
		if (wb)
			writeback_async(c, true);
		writeback_expired(c, now);
		if (age) {
			pthread_mutex_lock(&c->lock);
			evict_old(c, now, max_age);
			pthread_mutex_unlock(&c->lock);
		}
	}
	global_enforce_budget();
}

/* The earliest background retry of a failing client (ms), 0 if none; global lock held. */
static uint64_t earliest_retry(void)
{
	uint64_t t = 0;
	for (struct bufio_client *c = bufio_g.clients; c; c = c->g_next) {
		uint64_t r = next_retry(c);
		if (r && (!t || r < t))
			t = r;
	}
	return t;
}

/* Sleep until @next (coarse seconds) or @retry_ms (0: none), or a kick. */
static void worker_wait(uint32_t next, uint64_t retry_ms)
{
	uint32_t now = bufio_now();
	/* bufio_now_ms() reads CLOCK_MONOTONIC, the clock of worker_cond. */
	uint64_t deadline = bufio_now_ms() + (next > now ? next - now : 0) * 1000ull;
	if (retry_ms && retry_ms < deadline)
		deadline = retry_ms;
	/* In a memory cgroup, the neighbours' usage moves the cap. */
	if (atomic_load(&bufio_g.cg_limited) && bufio_g.next_refresh_ms < deadline)
		deadline = bufio_g.next_refresh_ms;
	struct timespec ts = {.tv_sec = (time_t)(deadline / 1000),
	                      .tv_nsec = (long)(deadline % 1000) * 1000000};
	pthread_cond_timedwait(&bufio_g.worker_cond, &worker_lock, &ts);
}

static void *worker_main(void *arg)
{
	uint32_t next_age = bufio_now() + BUFIO_WORK_TIMER_SECS;
	uint32_t next_dirty = bufio_now() + 1;
	uint64_t retry_ms = 0;
	pthread_mutex_lock(&worker_lock);
	for (;;) {
		if (!bufio_g.kick)
			worker_wait(next_age < next_dirty ? next_age : next_dirty, retry_ms);
		unsigned kick = bufio_g.kick;
		bufio_g.kick = 0;
		uint64_t shrink = bufio_g.shrink_request;
		bufio_g.shrink_request = 0;
		pthread_mutex_unlock(&worker_lock);

		uint32_t now = bufio_now();
		bool age = (int32_t)(now - next_age) >= 0;
		bool dirty = (int32_t)(now - next_dirty) >= 0;
		bool retry = retry_ms && bufio_now_ms() >= retry_ms;
		if (shrink)
			bufio_shrink(shrink);
		pthread_mutex_lock(&bufio_g.lock);
		if (age || dirty || retry)
			cleanup_pass(now, age);
		else if (kick & KICK_WRITEBACK)
			ratio_writeback();
		if (kick & KICK_BUDGET)
			global_enforce_budget();
		/* The cgroup's usage comes from files: read it every
		 * REFRESH_MS, not on every kick of a busy writer, and follow a
		 * lower cap at once. */
		if (bufio_now_ms() >= bufio_g.next_refresh_ms) {
			refresh_cache_size();
			bufio_g.next_refresh_ms = bufio_now_ms() + REFRESH_MS;
			if (global_over_budget())
				global_enforce_budget();
		}
		if (dirty || age)
			next_dirty = now + dirty_check_period();
		retry_ms = earliest_retry();
		pthread_mutex_unlock(&bufio_g.lock);
		if (age)
			next_age = now + BUFIO_WORK_TIMER_SECS;
		pthread_mutex_lock(&worker_lock);
	}
	return NULL;
}

static void start_background(void)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&bufio_g.worker_cond, &ca);
	pthread_condattr_destroy(&ca);
	refresh_cache_size();
	if (pthread_create(&bufio_g.worker, NULL, worker_main, NULL) == 0) {
		pthread_detach(bufio_g.worker);
		bufio_g.worker_running = true;
	} else {
		fprintf(stderr, "bufio: cannot start the background worker: %s\n", strerror(errno));
	}
	pressure_start();
}

void global_start(void)
{
	pthread_once(&start_once, start_background);
}

int global_register(struct bufio_client *c)
{
	global_start();
	if (!bufio_g.worker_running)
		return -EAGAIN;
	pthread_mutex_lock(&bufio_g.lock);
	c->g_prev = NULL;
	c->g_next = bufio_g.clients;
	if (bufio_g.clients)
		bufio_g.clients->g_prev = c;
	bufio_g.clients = c;
	bufio_g.n_clients++;
	pthread_mutex_unlock(&bufio_g.lock);
	return 0;
}

void global_unregister(struct bufio_client *c)
{
	pthread_mutex_lock(&bufio_g.lock);
	if (c->g_prev)
		c->g_prev->g_next = c->g_next;
	else
		bufio_g.clients = c->g_next;
	if (c->g_next)
		c->g_next->g_prev = c->g_prev;
	bufio_g.n_clients--;
	pthread_mutex_unlock(&bufio_g.lock);
}

/*---- tunables ----*/

int bufio_set_max_cache_size(uint64_t bytes)
{
	global_start();
	atomic_store(&bufio_g.cache_size_setting, bytes);
	pthread_mutex_lock(&bufio_g.lock);
	refresh_cache_size();
	/* Shrink at once, on the caller's thread, as the issue requires. */
	global_enforce_budget();
	pthread_mutex_unlock(&bufio_g.lock);
	return 0;
}

uint64_t bufio_get_max_cache_size(void)
{
	return atomic_load(&bufio_g.cache_size_setting);
}

uint64_t bufio_get_effective_cache_size(void)
{
	global_start();
	return atomic_load(&bufio_g.cache_size);
}

int bufio_set_max_age(unsigned seconds)
{
	atomic_store(&bufio_g.max_age, seconds);
	return 0;
}

unsigned bufio_get_max_age(void)
{
	return atomic_load(&bufio_g.max_age);
}

int bufio_set_retain_bytes(uint64_t bytes)
{
	atomic_store(&bufio_g.retain_bytes, bytes);
	return 0;
}

uint64_t bufio_get_retain_bytes(void)
{
	return atomic_load(&bufio_g.retain_bytes);
}

uint64_t bufio_get_current_allocated(void)
{
	return atomic_load(&bufio_g.current);
}

uint64_t bufio_get_peak_allocated(void)
{
	return atomic_load(&bufio_g.peak);
}

void bufio_reset_peak_allocated(void)
{
	atomic_store(&bufio_g.peak, atomic_load(&bufio_g.current));
}

uint64_t bufio_leaked_buffers(void)
{
	return atomic_load(&bufio_g.leaked);
}

void bufio_inject_alloc_failures(long n)
{
	atomic_store(&bufio_g.alloc_fail_inject, n);
}

void bufio_get_global_stats(struct bufio_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&bufio_g.lock);
	for (struct bufio_client *c = bufio_g.clients; c; c = c->g_next) {
		struct bufio_stats s;
		bufio_get_stats(c, &s);
		uint64_t *dst = (uint64_t *)out;
		const uint64_t *src = (const uint64_t *)&s;
		for (size_t i = 0; i < sizeof(s) / sizeof(uint64_t); i++)
			dst[i] += src[i];
	}
	pthread_mutex_unlock(&bufio_g.lock);
}

uint64_t bufio_shrink(uint64_t bytes)
{
	uint64_t freed = 0;
	pthread_mutex_lock(&bufio_g.lock);
	bool progress = true;
	while (freed < bytes && progress) {
		progress = false;
		for (struct bufio_client *c = bufio_g.clients; c && freed < bytes; c = c->g_next) {
			uint64_t left = bytes - freed; /* no rounding overflow for huge asks */
			uint64_t nr = left / c->block_size + (left % c->block_size != 0);
			pthread_mutex_lock(&c->lock);
			uint64_t n = evict_clock(c, nr, ST_EVICT_PRESSURE);
			pthread_mutex_unlock(&c->lock);
			freed += n * c->block_size;
			progress |= n > 0;
		}
	}
	pthread_mutex_unlock(&bufio_g.lock);
	return freed;
}

void bufio_run_cleanup(void)
{
	pthread_mutex_lock(&bufio_g.lock);
	cleanup_pass(bufio_now(), true);
	pthread_mutex_unlock(&bufio_g.lock);
}

/* Let the pressure watcher hand work to the worker without blocking. */
void global_request_shrink(uint64_t bytes)
{
	pthread_mutex_lock(&worker_lock);
	bufio_g.shrink_request += bytes;
	bufio_g.kick |= KICK_SHRINK;
	pthread_cond_signal(&bufio_g.worker_cond);
	pthread_mutex_unlock(&worker_lock);
}
