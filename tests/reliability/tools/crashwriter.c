/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * crashwriter: random writes of self-describing 4 KiB sectors to a device,
 * a log of the writes an fsync acknowledged (made durable on another file
 * system), and a verifier that checks, after the device's daemon was killed
 * and restarted, that no acknowledged write is lost and nothing is garbage.
 *
 *   crashwriter init FILE SIZE
 *   crashwriter write DEV LOG --gen G [--threads T] [--max-sectors N]
 *                [--sync-every K] [--seconds S] [--seed X] [--ack-writes]
 *                [--punch-pct P]
 *       (an fsync after every 1..K writes, K = 0: never; P% of the writes
 *       are hole punches or zeroed ranges instead)
 *   crashwriter verify DEV [--state FILE [--update]] [--log LOG]
 *   crashwriter scatter DEV REF OFFSET [--seed X] [--max-piece BYTES] [--hold]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <time.h>

#include "common.h"

#define SECTOR      4096u
#define MAGIC       0x315243494f465542ULL /* "BUFIOCR1" */
#define HDR_LEN     40u
#define SUM_OFF     (SECTOR - 8u)
#define GEN_SHIFT   40
#define ZERO_FLAG   (1ULL << 63) /* in the state: the sector read back as zeroes */
#define MAX_THREADS 16
#define MAX_FAILS   12 /* failures described in full */

/*
 * Every sector carries what it is: its own number, the stamp of the write
 * (generation << 40 | sequence; 0 is the initial pattern) and that write's
 * extent. The rest is derived from those, and a checksum covers it all.
 */
struct hdr {
	uint64_t magic;
	uint64_t sector;
	uint64_t stamp;
	uint64_t first; /* first sector of the write */
	uint32_t count; /* sectors in the write */
	/* Part of the on-disk record: written by make_sector(), checked as part of
	 * the whole sector by check_sector()'s memcmp, never read by name. */
	// cppcheck-suppress unusedStructMember
	uint32_t tid; /* writer thread */
};

static void make_sector(unsigned char *p, const struct hdr *h)
{
	uint64_t sum;

	memcpy(p, h, sizeof(*h));
	fill_random(p + HDR_LEN, SUM_OFF - HDR_LEN, mix64(h->sector * 0x100000001b3ULL ^ h->stamp));
	sum = checksum64(p, SUM_OFF);
	memcpy(p + SUM_OFF, &sum, 8);
}

static void fmt_stamp(char *buf, size_t size, uint64_t stamp)
{
	if (!stamp)
		snprintf(buf, size, "initial");
	else
		snprintf(buf, size, "gen %" PRIu64 " seq %" PRIu64, stamp >> GEN_SHIFT,
		         stamp & (((uint64_t)1 << GEN_SHIFT) - 1));
}

static uint64_t device_sectors(int fd, const char *path)
{
	off_t size = lseek(fd, 0, SEEK_END);

	if (size < 0)
		die("%s: cannot find the size: %s", path, strerror(errno));
	if (size < (off_t)SECTOR)
		die("%s: smaller than one sector", path);
	return (uint64_t)size / SECTOR;
}

static int open_or_die(const char *path, int flags, mode_t mode)
{
	int fd = open(path, flags, mode);

	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	return fd;
}

/*----------------------------------------------------------------
 * init: the initial pattern (stamp 0) in every sector
 *--------------------------------------------------------------*/

static int cmd_init(int argc, char **argv)
{
	uint64_t size, nsec;
	unsigned char *buf;
	int fd;

	if (argc != 4)
		die("usage: crashwriter init FILE SIZE");
	size = parse_u64("SIZE", argv[3]);
	nsec = size / SECTOR;
	if (!nsec || size % SECTOR)
		die("SIZE must be a positive multiple of %u", SECTOR);
	fd = open_or_die(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	buf = malloc((size_t)256 * SECTOR);
	if (!buf)
		die("out of memory");
	for (uint64_t s = 0; s < nsec;) {
		unsigned n = nsec - s < 256 ? (unsigned)(nsec - s) : 256;

		for (unsigned i = 0; i < n; i++) {
			struct hdr h = {
			    .magic = MAGIC, .sector = s + i, .first = s + i, .count = 1};

			make_sector(buf + (size_t)i * SECTOR, &h);
		}
		if (pwrite(fd, buf, (size_t)n * SECTOR, (off_t)(s * SECTOR)) != (ssize_t)n * SECTOR)
			die("%s: write failed: %s", argv[2], strerror(errno));
		s += n;
	}
	if (fsync(fd) != 0 || close(fd) != 0)
		die("%s: %s", argv[2], strerror(errno));
	free(buf);
	return 0;
}

/*----------------------------------------------------------------
 * write: the workload
 *--------------------------------------------------------------*/

struct writer {
	pthread_t thread;
	uint64_t lo, hi; /* the sectors this thread owns */
	uint64_t rnd;
	unsigned id;
	int fd;
	/* results */
	uint64_t writes, zeroes, bytes, acked, acked_bytes, syncs;
	const char *stop_op; /* what failed, or NULL */
	int stop_err;
};

static struct {
	const char *dev;
	int log_fd;
	uint64_t gen;
	unsigned max_sectors, sync_every, punch_pct;
	bool ack_writes;
	double deadline; /* 0: none */
	atomic_uint_fast64_t seq;
} W;

struct pending {
	uint64_t stamp, first;
	unsigned count;
};

static int log_line(char *buf, size_t size, char kind, const struct pending *p)
{
	return snprintf(buf, size, "%c %" PRIu64 " %" PRIu64 " %" PRIu64 " %u\n", kind,
	                p->stamp >> GEN_SHIFT, p->stamp & (((uint64_t)1 << GEN_SHIFT) - 1),
	                p->first, p->count);
}

/*
 * Write (or, punch_pct percent of the time, punch or zero) p's range,
 * its intent logged first: a record or zero range found later must have
 * been issued. False, with the reason in @w, when it failed.
 */
static bool issue(struct writer *w, const struct pending *p, unsigned char *buf)
{
	uint64_t off = p->first * SECTOR, len = (uint64_t)p->count * SECTOR;
	bool zero = W.punch_pct && rnd_below(&w->rnd, 100) < W.punch_pct;
	char line[80];
	int err;

	if (!zero) {
		for (unsigned i = 0; i < p->count; i++) {
			struct hdr h = {.magic = MAGIC,
			                .sector = p->first + i,
			                .stamp = p->stamp,
			                .first = p->first,
			                .count = p->count,
			                .tid = w->id};

			make_sector(buf + (size_t)i * SECTOR, &h);
		}
	}
	err = write_all(W.log_fd, line, (size_t)log_line(line, sizeof(line), zero ? 'Z' : 'W', p));
	if (err)
		die("cannot append to the log: %s", strerror(-err));
	if (zero) {
		int mode = rnd_below(&w->rnd, 2) ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
		                                 : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;

		if (fallocate(w->fd, mode, (off_t)off, (off_t)len) != 0) {
			w->stop_op = mode & FALLOC_FL_PUNCH_HOLE ? "punch hole" : "zero range";
			w->stop_err = errno;
			return false;
		}
		w->zeroes++;
	} else {
		ssize_t n = pwrite(w->fd, buf, len, (off_t)off);

		if (n != (ssize_t)len) {
			w->stop_op = n < 0 ? "pwrite" : "short pwrite";
			w->stop_err = n < 0 ? errno : 0;
			return false;
		}
	}
	w->writes++;
	w->bytes += len;
	return true;
}

/* Acknowledge @n writes: one append of all their lines, then fsync. */
static void log_acked(struct writer *w, const struct pending *p, unsigned n)
{
	char *text = malloc((size_t)n * 80 + 1);
	size_t len = 0;

	if (!text)
		die("out of memory");
	for (unsigned i = 0; i < n; i++) {
		len += (size_t)log_line(text + len, 80, 'A', &p[i]);
		w->acked++;
		w->acked_bytes += (uint64_t)p[i].count * SECTOR;
	}
	log_durable(W.log_fd, text, len);
	free(text);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	unsigned char *buf = aligned_alloc(SECTOR, (size_t)W.max_sectors * SECTOR);
	struct pending *pend = calloc(W.sync_every ? W.sync_every : 1, sizeof(*pend));
	uint64_t region = w->hi - w->lo;
	unsigned npend = 0, until_sync = 0;

	if (!buf || !pend)
		die("out of memory");
	while (!W.deadline || now_s() < W.deadline) {
		uint64_t k = 1 + rnd_below(&w->rnd, W.max_sectors);
		struct pending p;

		if (k > region)
			k = region;
		p.first = w->lo + rnd_below(&w->rnd, region - k + 1);
		p.count = (unsigned)k;
		p.stamp = W.gen << GEN_SHIFT | atomic_fetch_add(&W.seq, 1);
		if (!issue(w, &p, buf))
			break;
		if (W.ack_writes) {
			/* Write-through, or a clean stop to come: a completed
			 * write is as good as an fsynced one. */
			log_acked(w, &p, 1);
		} else {
			pend[npend++] = p;
		}
		if (W.sync_every && until_sync == 0)
			until_sync = 1 + (unsigned)rnd_below(&w->rnd, W.sync_every);
		if (W.sync_every && --until_sync == 0) {
			bool data = rnd_below(&w->rnd, 2);

			if ((data ? fdatasync(w->fd) : fsync(w->fd)) != 0) {
				w->stop_op = data ? "fdatasync" : "fsync";
				w->stop_err = errno;
				break;
			}
			w->syncs++;
			/* Only now are they acknowledged as durable. */
			if (npend)
				log_acked(w, pend, npend);
			npend = 0;
		}
	}
	free(pend);
	free(buf);
	return NULL;
}

static int cmd_write(int argc, char **argv)
{
	static const struct option opts[] = {{"gen", required_argument, NULL, 'g'},
	                                     {"threads", required_argument, NULL, 't'},
	                                     {"max-sectors", required_argument, NULL, 'm'},
	                                     {"sync-every", required_argument, NULL, 'k'},
	                                     {"seconds", required_argument, NULL, 's'},
	                                     {"seed", required_argument, NULL, 'r'},
	                                     {"ack-writes", no_argument, NULL, 'a'},
	                                     {"punch-pct", required_argument, NULL, 'p'},
	                                     {NULL, 0, NULL, 0}};
	struct writer ws[MAX_THREADS];
	uint64_t seed = (uint64_t)time(NULL), nsec, tot[5] = {0};
	unsigned threads = 4;
	double seconds = 0;
	int c, fd;

	W.max_sectors = 16;
	W.sync_every = 8;
	atomic_init(&W.seq, 1);
	while ((c = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
		switch (c) {
		case 'g':
			W.gen = parse_u64("--gen", optarg);
			break;
		case 't':
			threads = (unsigned)parse_u64("--threads", optarg);
			break;
		case 'm':
			W.max_sectors = (unsigned)parse_u64("--max-sectors", optarg);
			break;
		case 'k':
			W.sync_every = (unsigned)parse_u64("--sync-every", optarg);
			break;
		case 's':
			seconds = (double)parse_u64("--seconds", optarg);
			break;
		case 'r':
			seed = parse_u64("--seed", optarg);
			break;
		case 'a':
			W.ack_writes = true;
			break;
		case 'p':
			W.punch_pct = (unsigned)parse_u64("--punch-pct", optarg);
			break;
		default:
			die("usage: crashwriter write DEV LOG --gen G [options]");
		}
	}
	if (argc - 1 - optind != 2)
		die("usage: crashwriter write DEV LOG --gen G [options]");
	if (!W.gen || W.gen >= (1ULL << 23))
		die("--gen must be in 1..%llu", (1ULL << 23) - 1);
	if (!threads || threads > MAX_THREADS || !W.max_sectors || W.max_sectors > 256 ||
	    W.sync_every > 1000000 || (!W.sync_every && !W.ack_writes) || W.punch_pct > 100)
		die("--threads 1..%d, --max-sectors 1..256, --sync-every 0..1000000 (0 needs "
		    "--ack-writes), --punch-pct 0..100",
		    MAX_THREADS);
	W.dev = argv[1 + optind];
	W.log_fd = open_or_die(argv[2 + optind], O_WRONLY | O_CREAT | O_APPEND, 0644);
	fd = open_or_die(W.dev, O_RDWR, 0);
	nsec = device_sectors(fd, W.dev);
	close(fd);
	if (nsec < threads * 8ULL)
		die("%s: too small for %u threads", W.dev, threads);
	W.deadline = seconds > 0 ? now_s() + seconds : 0;
	signal(SIGPIPE, SIG_IGN);
	for (unsigned t = 0; t < threads; t++) {
		struct writer *w = &ws[t];

		memset(w, 0, sizeof(*w));
		w->id = t;
		/* Region borders off block boundaries: neighbours share a block. */
		w->lo = t ? t * nsec / threads + 3 : 0;
		w->hi = t + 1 < threads ? (t + 1) * nsec / threads + 3 : nsec;
		w->rnd = mix64(seed + t);
		w->fd = open_or_die(W.dev, O_RDWR, 0);
		if (pthread_create(&w->thread, NULL, writer_main, w) != 0)
			die("cannot start a writer thread");
	}
	for (unsigned t = 0; t < threads; t++) {
		struct writer *w = &ws[t];

		pthread_join(w->thread, NULL);
		close(w->fd); /* may fail on a dead mount: nothing to learn */
		tot[0] += w->writes;
		tot[1] += w->bytes;
		tot[2] += w->acked;
		tot[3] += w->acked_bytes;
		tot[4] += w->syncs;
		printf("writer %u: %" PRIu64 " writes (%" PRIu64 " punch or zero), %" PRIu64
		       " syncs, %" PRIu64 " acknowledged; stopped by %s%s%s\n",
		       t, w->writes, w->zeroes, w->syncs, w->acked,
		       w->stop_op ? w->stop_op : "the deadline", w->stop_op ? ": " : "",
		       w->stop_op ? strerror(w->stop_err) : "");
	}
	printf("write: gen %" PRIu64 ": %" PRIu64 " writes (%" PRIu64 " bytes), %" PRIu64
	       " fsyncs, %" PRIu64 " acknowledged (%" PRIu64 " bytes)\n",
	       W.gen, tot[0], tot[1], tot[4], tot[2], tot[3]);
	printf("ACKED_BYTES=%" PRIu64 "\n", tot[3]);
	close(W.log_fd);
	return 0;
}

/*----------------------------------------------------------------
 * verify
 *--------------------------------------------------------------*/

struct intent {
	uint64_t stamp, first;
	unsigned count;
	bool zero; /* a punch or zero range */
};

static int cmp_intent(const void *a, const void *b)
{
	const struct intent *x = a, *y = b;

	return x->stamp < y->stamp ? -1 : x->stamp > y->stamp;
}

struct log_state {
	struct intent *intents;
	size_t n, cap;
	uint64_t *acked;  /* per sector: newest acknowledged stamp, 0 none */
	uint64_t *issued; /* per sector: newest stamp written at all */
	uint64_t *zeroed; /* per sector: newest punch or zero range */
};

static void load_log(const char *path, uint64_t nsec, struct log_state *ls)
{
	FILE *f = fopen(path, "r");
	char line[256];
	unsigned long lineno = 0;

	if (!f)
		die("%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		char kind;
		uint64_t gen, seq, first;
		unsigned count;
		struct intent in;

		lineno++;
		if (sscanf(line, "%c %" SCNu64 " %" SCNu64 " %" SCNu64 " %u", &kind, &gen, &seq,
		           &first, &count) != 5 ||
		    !strchr("WZA", kind) || !count || first + count > nsec)
			die("%s:%lu: malformed line: %s", path, lineno, line);
		in = (struct intent){.stamp = gen << GEN_SHIFT | seq,
		                     .first = first,
		                     .count = count,
		                     .zero = kind == 'Z'};
		for (uint64_t s = first; s < first + count; s++) {
			if (ls->issued[s] < in.stamp)
				ls->issued[s] = in.stamp;
			if (in.zero && ls->zeroed[s] < in.stamp)
				ls->zeroed[s] = in.stamp;
		}
		if (kind == 'A') {
			for (uint64_t s = first; s < first + count; s++)
				if (ls->acked[s] < in.stamp)
					ls->acked[s] = in.stamp;
			continue;
		}
		if (ls->n == ls->cap) {
			ls->cap = ls->cap ? ls->cap * 2 : 4096;
			ls->intents = realloc(ls->intents, ls->cap * sizeof(*ls->intents));
			if (!ls->intents)
				die("out of memory");
		}
		ls->intents[ls->n++] = in;
	}
	fclose(f);
}

static const struct intent *find_intent(const struct log_state *ls, uint64_t stamp)
{
	struct intent key = {.stamp = stamp};

	return ls->n ? bsearch(&key, ls->intents, ls->n, sizeof(key), cmp_intent) : NULL;
}

struct vstats {
	uint64_t sectors, acked, fresh, initial, zero, newer, lost, fails;
};

static void fail_at(struct vstats *vs, uint64_t s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail_at(struct vstats *vs, uint64_t s, const char *fmt, ...)
{
	va_list ap;

	if (vs->fails++ >= MAX_FAILS)
		return;
	printf("FAIL sector %" PRIu64 " (byte %" PRIu64 "): ", s, s * SECTOR);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static bool all_zero(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

static void count_ok(struct vstats *vs, const struct log_state *ls, uint64_t s, uint64_t base,
                     uint64_t need, uint64_t found)
{
	vs->acked += need != 0;
	vs->fresh += ls->acked[s] > (base & ~ZERO_FLAG);
	vs->lost += ls->issued[s] > found;
}

/*
 * Zeroes are right where a punch or zero range not older than what must be
 * there was issued, or where they were found before and nothing newer was
 * acknowledged. Returns the newest such stamp (flagged), 0 if none.
 */
static uint64_t zero_stamp(const struct log_state *ls, uint64_t s, uint64_t base, uint64_t need)
{
	uint64_t found = 0;

	if ((base & ZERO_FLAG) && (base & ~ZERO_FLAG) >= need)
		found = base & ~ZERO_FLAG;
	if (ls->zeroed[s] >= need && ls->zeroed[s] > found)
		found = ls->zeroed[s];
	return found ? found | ZERO_FLAG : 0;
}

/*
 * One sector: a valid record of this very sector, written by a write that
 * was really issued (the baseline or a logged intent), or the zeroes of an
 * issued punch; never older than what was acknowledged or found before.
 * Returns what was found, as kept in the state file.
 */
static uint64_t check_sector(const unsigned char *p, uint64_t s, uint64_t base,
                             const struct log_state *ls, struct vstats *vs, unsigned char *expect)
{
	uint64_t acked = ls->acked[s], bstamp = base & ~ZERO_FLAG;
	uint64_t need = acked > bstamp ? acked : bstamp, sum;
	char got[64], want[64];
	struct hdr h;

	memcpy(&h, p, sizeof(h));
	memcpy(&sum, p + SUM_OFF, 8);
	if (h.magic != MAGIC || sum != checksum64(p, SUM_OFF)) {
		fmt_stamp(want, sizeof(want), need);
		const uint64_t z = all_zero(p, SECTOR) ? zero_stamp(ls, s, base, need) : 0;

		if (z) {
			count_ok(vs, ls, s, base, need, z & ~ZERO_FLAG);
			vs->zero++;
			return z;
		}
		if (all_zero(p, SECTOR))
			fail_at(vs, s, "all zeroes, but no punch since %s was issued", want);
		else if (h.magic == MAGIC)
			fail_at(vs, s,
			        "torn or corrupt record (header says sector %" PRIu64
			        ", bad checksum); expected %s or newer",
			        h.sector, want);
		else
			fail_at(vs, s, "garbage (no record header); expected %s or newer", want);
		return base;
	}
	fmt_stamp(got, sizeof(got), h.stamp);
	if (h.sector != s) {
		fail_at(vs, s, "holds the data of sector %" PRIu64 " (%s)", h.sector, got);
		return base;
	}
	make_sector(expect, &h);
	if (memcmp(expect, p, SECTOR) != 0) {
		fail_at(vs, s, "record %s has a valid checksum but wrong contents", got);
		return base;
	}
	if (h.stamp < need) {
		fmt_stamp(want, sizeof(want), need);
		fail_at(vs, s, "holds %s, older than %s which was %s", got, want,
		        need == acked ? "acknowledged by fsync" : "already on the device");
		return base;
	}
	if (h.stamp != base) {
		const struct intent *in = find_intent(ls, h.stamp);

		if (!in || in->zero || h.first != in->first || h.count != in->count) {
			fail_at(vs, s, "holds %s, which was never written", got);
			return base;
		}
		vs->newer += h.stamp > acked;
	}
	count_ok(vs, ls, s, base, need, h.stamp);
	vs->initial += h.stamp == 0;
	return h.stamp;
}

static uint64_t *load_state(const char *path, uint64_t nsec)
{
	uint64_t *base = calloc(nsec, 8);
	struct stat st;
	int fd;

	if (!base)
		die("out of memory");
	if (!path)
		return base;
	fd = open(path, O_RDONLY);
	if (fd < 0 && errno == ENOENT)
		return base; /* first run: every sector holds the initial pattern */
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != nsec * 8)
		die("%s: not a state file for %" PRIu64 " sectors", path, nsec);
	if (pread(fd, base, nsec * 8, 0) != (ssize_t)(nsec * 8))
		die("%s: short read", path);
	close(fd);
	return base;
}

static void save_state(const char *path, const uint64_t *found, uint64_t nsec)
{
	char tmp[4096];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open_or_die(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (write_all(fd, found, nsec * 8) != 0 || fsync(fd) != 0 || close(fd) != 0 ||
	    rename(tmp, path) != 0)
		die("%s: cannot save: %s", path, strerror(errno));
}

static int cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {{"state", required_argument, NULL, 's'},
	                                     {"log", required_argument, NULL, 'l'},
	                                     {"update", no_argument, NULL, 'u'},
	                                     {NULL, 0, NULL, 0}};
	const char *state = NULL, *logs[64], *dev;
	unsigned nlogs = 0, chunk = 256;
	struct log_state ls = {0};
	struct vstats vs = {0};
	unsigned char *buf, *expect;
	uint64_t nsec, *base, *found;
	bool update = false;
	int c, fd;

	while ((c = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
		if (c == 's')
			state = optarg;
		else if (c == 'l' && nlogs < 64)
			logs[nlogs++] = optarg;
		else if (c == 'u')
			update = true;
		else
			die("usage: crashwriter verify DEV [--state FILE [--update]] [--log "
			    "LOG]...");
	}
	if (argc - 1 - optind != 1 || (update && !state))
		die("usage: crashwriter verify DEV [--state FILE [--update]] [--log LOG]...");
	dev = argv[1 + optind];
	fd = open_or_die(dev, O_RDONLY, 0);
	nsec = device_sectors(fd, dev);
	base = load_state(state, nsec);
	found = calloc(nsec, 8);
	ls.acked = calloc(nsec, 8);
	ls.issued = calloc(nsec, 8);
	ls.zeroed = calloc(nsec, 8);
	buf = aligned_alloc(SECTOR, (size_t)chunk * SECTOR);
	expect = malloc(SECTOR);
	if (!found || !ls.acked || !ls.issued || !ls.zeroed || !buf || !expect)
		die("out of memory");
	for (unsigned i = 0; i < nlogs; i++)
		load_log(logs[i], nsec, &ls);
	if (ls.n)
		qsort(ls.intents, ls.n, sizeof(*ls.intents), cmp_intent);
	for (uint64_t s = 0; s < nsec; s += chunk) {
		unsigned n = nsec - s < chunk ? (unsigned)(nsec - s) : chunk;
		ssize_t got = pread(fd, buf, (size_t)n * SECTOR, (off_t)(s * SECTOR));

		if (got != (ssize_t)n * SECTOR) {
			fail_at(&vs, s, "read of %u sectors failed: %s", n,
			        got < 0 ? strerror(errno) : "short read");
			break;
		}
		for (unsigned i = 0; i < n; i++)
			found[s + i] = check_sector(buf + (size_t)i * SECTOR, s + i, base[s + i],
			                            &ls, &vs, expect);
		vs.sectors += n;
	}
	close(fd);
	if (vs.fails > MAX_FAILS)
		printf("FAIL ... and %" PRIu64 " more sectors\n", vs.fails - MAX_FAILS);
	printf("verify: %s: %" PRIu64 " sectors read (%" PRIu64 " bytes): %" PRIu64
	       " must hold acknowledged or earlier-verified data (%" PRIu64 " bytes; %" PRIu64
	       " acknowledged since the last check), %" PRIu64
	       " hold newer unacknowledged writes, %" PRIu64
	       " lost unacknowledged writes (allowed), %" PRIu64 " zeroed, %" PRIu64
	       " initial; %" PRIu64 " failures\n",
	       dev, vs.sectors, vs.sectors * SECTOR, vs.acked, vs.acked * SECTOR, vs.fresh,
	       vs.newer, vs.lost, vs.zero, vs.initial, vs.fails);
	printf("VERIFIED_BYTES=%" PRIu64 "\n", vs.acked * SECTOR);
	if (!vs.fails && update)
		save_state(state, found, nsec);
	free(expect);
	free(buf);
	free(ls.acked);
	free(ls.issued);
	free(ls.zeroed);
	free(ls.intents);
	free(found);
	free(base);
	return vs.fails ? 1 : 0;
}

/*----------------------------------------------------------------
 * scatter: a reference file written in shuffled, unaligned pieces
 *--------------------------------------------------------------*/

struct piece {
	uint64_t off, len;
};

static int cmd_scatter(int argc, char **argv)
{
	static const struct option opts[] = {{"seed", required_argument, NULL, 'r'},
	                                     {"max-piece", required_argument, NULL, 'm'},
	                                     {"hold", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	uint64_t seed = (uint64_t)time(NULL), maxp = 200000, off, len, np = 0;
	struct piece *pieces;
	unsigned char *data;
	bool hold = false;
	struct stat st;
	int c, fd, rfd;

	while ((c = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
		if (c == 'r')
			seed = parse_u64("--seed", optarg);
		else if (c == 'm')
			maxp = parse_u64("--max-piece", optarg);
		else if (c == 'h')
			hold = true;
		else
			die("usage: crashwriter scatter DEV REF OFFSET [options]");
	}
	if (argc - 1 - optind != 3 || !maxp)
		die("usage: crashwriter scatter DEV REF OFFSET [options]");
	off = parse_u64("OFFSET", argv[3 + optind]);
	rfd = open_or_die(argv[2 + optind], O_RDONLY, 0);
	if (fstat(rfd, &st) != 0 || st.st_size <= 0)
		die("%s: empty or unreadable", argv[2 + optind]);
	len = (uint64_t)st.st_size;
	data = malloc(len);
	pieces = calloc(len, sizeof(*pieces)); /* at most one per byte */
	if (!data || !pieces || pread(rfd, data, len, 0) != (ssize_t)len)
		die("%s: cannot read", argv[2 + optind]);
	close(rfd);
	for (uint64_t pos = 0; pos < len; np++) {
		uint64_t l = 1 + rnd_below(&seed, maxp);

		pieces[np] = (struct piece){pos, l < len - pos ? l : len - pos};
		pos += pieces[np].len;
	}
	for (uint64_t i = np - 1; i > 0; i--) { /* Fisher-Yates */
		uint64_t j = rnd_below(&seed, i + 1);
		struct piece t = pieces[i];

		pieces[i] = pieces[j];
		pieces[j] = t;
	}
	fd = open_or_die(argv[1 + optind], O_WRONLY, 0);
	for (uint64_t i = 0; i < np; i++) {
		const struct piece *p = &pieces[i];

		if (pwrite(fd, data + p->off, p->len, (off_t)(off + p->off)) != (ssize_t)p->len)
			die("%s: write of %" PRIu64 " bytes at %" PRIu64 " failed: %s",
			    argv[1 + optind], p->len, off + p->off, strerror(errno));
	}
	printf("scatter: %" PRIu64 " bytes in %" PRIu64 " pieces, no fsync\n", len, np);
	fflush(stdout);
	free(pieces);
	free(data);
	if (hold) {
		/* Keep the file open (close would flush) until killed. */
		for (;;)
			pause();
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "init"))
		return cmd_init(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "write"))
		return cmd_write(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "verify"))
		return cmd_verify(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "scatter"))
		return cmd_scatter(argc, argv);
	die("usage: crashwriter init|write|verify|scatter ... (see the source)");
}
