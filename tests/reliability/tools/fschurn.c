/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fschurn: a metadata-heavy file system workload (small files created,
 * renamed, linked, truncated and deleted, directories made and removed)
 * that now and then makes a file durable (fsync of the file and of its
 * directory) and only then logs its checksum; and the check that every
 * logged file is intact after a crash and journal replay.
 *
 *   fschurn run ROOT LOG --gen G [--seconds S] [--seed X]
 *   fschurn verify ROOT LOG [--update]
 *
 * Log lines: "K NAME SIZE SUM" (durable: fsync of file and directory done),
 * "I NAME SIZE SUM" (a replacement of NAME by rename is about to start;
 * until its K, NAME may hold the old or the new contents), "R NAME" (NAME is
 * about to be deleted: it may be gone) and "D NAME" (deleted and the
 * directory fsynced: it must stay gone). Kept files of generations three
 * and more back are deleted so the file system never fills up.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <time.h>

#include "common.h"

#define NDIRS     8
#define NNAMES    48
#define NSLOTS    6
#define MAXFILE   (256u << 10)
#define KEEP_GENS 3 /* generations of kept files that stay */

static struct {
	const char *root;
	int log_fd, keep_fd;
	uint64_t gen, rnd, ops, durable, durable_bytes, kept;
	const char *stop_op;
	int stop_err;
	unsigned char *buf;
} R;

/* Errors the random namespace produces on its own (ELOOP: a symlink
 * renamed onto its own target): not a failure. */
static bool benign(int err)
{
	return err == ENOENT || err == EEXIST || err == ENOTEMPTY || err == ENOTDIR ||
	       err == EISDIR || err == EMLINK || err == ELOOP;
}

/* Record the first real error; false when the workload must stop. */
static bool check(int ret, const char *op)
{
	if (ret >= 0 || benign(errno))
		return true;
	if (!R.stop_op) {
		R.stop_op = op;
		R.stop_err = errno;
	}
	return false;
}

static void churn_name(char *buf, size_t size, bool sub)
{
	unsigned d = (unsigned)rnd_below(&R.rnd, NDIRS), n = (unsigned)rnd_below(&R.rnd, NNAMES);

	if (sub)
		snprintf(buf, size, "%s/churn%" PRIu64 "/d%u/s%u/f%u", R.root, R.gen, d, n % 4, n);
	else
		snprintf(buf, size, "%s/churn%" PRIu64 "/d%u/f%u", R.root, R.gen, d, n);
}

/* Write @len bytes of @seed's stream to @path; returns the fd or -1. */
static int write_file(const char *path, int flags, uint64_t len, uint64_t seed)
{
	int fd = open(path, O_WRONLY | O_CREAT | flags, 0644);

	if (fd < 0)
		return -1;
	int err;

	fill_random(R.buf, len, seed);
	err = write_all(fd, R.buf, len);
	if (err) {
		close(fd);
		errno = -err;
		return -1;
	}
	return fd;
}

static uint64_t small_size(void)
{
	/* Mostly tiny (inline data, one block), sometimes a few blocks. */
	return rnd_below(&R.rnd, 8) ? rnd_below(&R.rnd, 6000) : rnd_below(&R.rnd, 64 << 10);
}

/* One random namespace operation in the churn area. */
static bool churn_op(void)
{
	char a[512], b[512];
	unsigned op = (unsigned)rnd_below(&R.rnd, 100);
	int fd, ret;

	churn_name(a, sizeof(a), rnd_below(&R.rnd, 3) == 0);
	churn_name(b, sizeof(b), rnd_below(&R.rnd, 3) == 0);
	if (op < 30) {
		fd = write_file(a, O_TRUNC, small_size(), rnd_next(&R.rnd));
		if (!check(fd, "create"))
			return false;
		if (fd >= 0)
			close(fd);
		return true;
	}
	if (op < 50)
		return check(rename(a, b), "rename");
	if (op < 65)
		return check(unlink(a), "unlink");
	if (op < 72) {
		char *slash = strrchr(a, '/');

		*slash = 0; /* the directory part: d<i> or d<i>/s<j> */
		return check(rnd_below(&R.rnd, 2) ? mkdir(a, 0755) : rmdir(a), "mkdir/rmdir");
	}
	if (op < 78)
		return check(link(a, b), "link");
	if (op < 82)
		return check(symlink(a, b), "symlink");
	if (op < 90)
		return check(truncate(a, (off_t)small_size()), "truncate");
	fd = open(a, O_WRONLY | O_APPEND);
	if (!check(fd, "open for append"))
		return false;
	if (fd < 0)
		return true;
	fill_random(R.buf, 1000, rnd_next(&R.rnd));
	ret = write_all(fd, R.buf, 1 + rnd_below(&R.rnd, 1000));
	close(fd);
	errno = -ret;
	return check(ret, "append");
}

static void log_record(char kind, const char *name, uint64_t size, uint64_t sum, bool durable)
{
	char line[256];
	int len = snprintf(line, sizeof(line), "%c %s %" PRIu64 " %016" PRIx64 "\n", kind, name,
	                   size, sum);

	if (durable) {
		log_durable(R.log_fd, line, (size_t)len);
	} else {
		int err = write_all(R.log_fd, line, (size_t)len);

		if (err)
			die("cannot append to the log: %s", strerror(-err));
	}
}

/* fsync (or fdatasync) the file, close it, fsync the directory. */
static bool make_durable(int fd)
{
	bool data = rnd_below(&R.rnd, 2);
	int ret = data ? fdatasync(fd) : fsync(fd);

	if (!check(ret, data ? "fdatasync" : "fsync")) {
		close(fd);
		return false;
	}
	if (!check(close(fd), "close"))
		return false;
	return check(fsync(R.keep_fd), "fsync of the directory");
}

/*
 * A durable file: a new one, or a replacement of a slot through a
 * temporary file and rename. Its checksum is logged only once both the
 * file and its directory have been fsynced.
 */
static bool durable_op(void)
{
	uint64_t size = 1 + rnd_below(&R.rnd, rnd_below(&R.rnd, 4) ? 16 << 10 : MAXFILE);
	uint64_t seed = rnd_next(&R.rnd), sum;
	char name[64], path[512];
	bool slot = rnd_below(&R.rnd, 3) == 0;
	int fd;

	fill_random(R.buf, size, seed);
	sum = checksum64(R.buf, size);
	if (slot)
		snprintf(name, sizeof(name), "slot%u", (unsigned)rnd_below(&R.rnd, NSLOTS));
	else
		snprintf(name, sizeof(name), "g%" PRIu64 "-%" PRIu64, R.gen, R.kept++);
	snprintf(path, sizeof(path), "%s/keep/%s", R.root, name);
	if (slot) {
		char tmp[520];

		snprintf(tmp, sizeof(tmp), "%s.tmp", path);
		fd = write_file(tmp, O_TRUNC, size, seed);
		if (!check(fd, "create slot tmp"))
			return false;
		if (!check(rnd_below(&R.rnd, 2) ? fsync(fd) : fdatasync(fd), "fsync slot tmp") ||
		    !check(close(fd), "close slot tmp"))
			return false;
		/* From here on the slot may hold either version. */
		log_record('I', name, size, sum, false);
		if (!check(rename(tmp, path), "rename slot") ||
		    !check(fsync(R.keep_fd), "fsync of the directory"))
			return false;
	} else {
		fd = write_file(path, O_EXCL, size, seed);
		if (!check(fd, "create kept file") || !make_durable(fd))
			return false;
	}
	log_record('K', name, size, sum, true);
	R.durable++;
	R.durable_bytes += size;
	return true;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	int ret = type == FTW_DP ? rmdir(path) : unlink(path);

	return check(ret, "remove old churn") ? 0 : 1;
}

/* Remove the churn areas of earlier generations: a burst of deletes. */
static bool remove_old(void)
{
	char path[512];

	for (uint64_t g = 1; g < R.gen; g++) {
		snprintf(path, sizeof(path), "%s/churn%" PRIu64, R.root, g);
		if (access(path, F_OK) == 0 && nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS) != 0)
			return false;
	}
	return true;
}

/* Delete the kept files of old generations, logging before and after. */
static bool prune_kept(void)
{
	char path[512], line[128], (*names)[64] = NULL;
	size_t n = 0, cap = 0;
	bool ok = true;
	struct dirent *de;
	DIR *d;
	int len;

	snprintf(path, sizeof(path), "%s/keep", R.root);
	d = opendir(path);
	if (!d)
		return check(-1, "opendir keep");
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		uint64_t g, i;

		if (l >= sizeof(names[0]) ||
		    sscanf(de->d_name, "g%" SCNu64 "-%" SCNu64, &g, &i) != 2 ||
		    g + KEEP_GENS > R.gen)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			names = realloc(names, cap * sizeof(*names));
			if (!names)
				die("out of memory");
		}
		memcpy(names[n++], de->d_name, l + 1);
	}
	closedir(d);
	for (size_t i = 0; ok && i < n; i++) {
		len = snprintf(line, sizeof(line), "R %s\n", names[i]);
		log_durable(R.log_fd, line, (size_t)len);
		ok = check(unlinkat(R.keep_fd, names[i], 0), "unlink kept file");
	}
	if (ok && n)
		ok = check(fsync(R.keep_fd), "fsync of the directory");
	for (size_t i = 0; ok && i < n; i++) {
		len = snprintf(line, sizeof(line), "D %s\n", names[i]);
		log_durable(R.log_fd, line, (size_t)len);
	}
	free(names);
	return ok;
}

static bool make_dirs(void)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/keep", R.root);
	if (!check(mkdir(path, 0755), "mkdir keep"))
		return false;
	R.keep_fd = open(path, O_RDONLY | O_DIRECTORY);
	if (!check(R.keep_fd, "open keep"))
		return false;
	snprintf(path, sizeof(path), "%s/churn%" PRIu64, R.root, R.gen);
	if (!check(mkdir(path, 0755), "mkdir churn"))
		return false;
	for (unsigned d = 0; d < NDIRS; d++) {
		snprintf(path, sizeof(path), "%s/churn%" PRIu64 "/d%u", R.root, R.gen, d);
		if (!check(mkdir(path, 0755), "mkdir"))
			return false;
	}
	return true;
}

static int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {{"gen", required_argument, NULL, 'g'},
	                                     {"seconds", required_argument, NULL, 's'},
	                                     {"seed", required_argument, NULL, 'r'},
	                                     {NULL, 0, NULL, 0}};
	double seconds = 60, deadline;
	int c;

	R.rnd = (uint64_t)time(NULL);
	while ((c = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
		if (c == 'g')
			R.gen = parse_u64("--gen", optarg);
		else if (c == 's')
			seconds = (double)parse_u64("--seconds", optarg);
		else if (c == 'r')
			R.rnd = parse_u64("--seed", optarg);
		else
			die("usage: fschurn run ROOT LOG --gen G [--seconds S] [--seed X]");
	}
	if (argc - 1 - optind != 2 || !R.gen)
		die("usage: fschurn run ROOT LOG --gen G [--seconds S] [--seed X]");
	R.root = argv[1 + optind];
	R.log_fd = open(argv[2 + optind], O_WRONLY | O_CREAT | O_APPEND, 0644);
	R.buf = malloc(MAXFILE);
	if (R.log_fd < 0 || !R.buf)
		die("%s: %s", argv[2 + optind], strerror(errno));
	R.keep_fd = -1;
	deadline = now_s() + seconds;
	if (make_dirs() && remove_old() && prune_kept()) {
		while (now_s() < deadline) {
			bool ok = rnd_below(&R.rnd, 12) ? churn_op() : durable_op();

			if (!ok)
				break;
			R.ops++;
		}
	}
	printf("fschurn: gen %" PRIu64 ": %" PRIu64 " operations, %" PRIu64
	       " files made durable (%" PRIu64 " bytes); stopped by %s%s%s\n",
	       R.gen, R.ops, R.durable, R.durable_bytes, R.stop_op ? R.stop_op : "the deadline",
	       R.stop_op ? ": " : "", R.stop_op ? strerror(R.stop_err) : "");
	if (R.keep_fd >= 0)
		close(R.keep_fd);
	close(R.log_fd);
	free(R.buf);
	return 0;
}

/*----------------------------------------------------------------
 * verify
 *--------------------------------------------------------------*/

struct version {
	uint64_t size, sum;
};

struct kept {
	char name[64];
	struct version ok[64]; /* the durable version, then later candidates */
	unsigned n;
	bool durable;
	bool removing; /* R: may be gone */
	bool gone;     /* D: must be gone */
};

static struct kept *find_kept(struct kept **all, size_t *n, size_t *cap, const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp((*all)[i].name, name))
			return &(*all)[i];
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 256;
		*all = realloc(*all, *cap * sizeof(**all));
		if (!*all)
			die("out of memory");
	}
	memset(&(*all)[*n], 0, sizeof(**all));
	snprintf((*all)[*n].name, sizeof((*all)[*n].name), "%s", name);
	return &(*all)[(*n)++];
}

/* Checksum of the whole file at @path; -errno on failure. */
static int file_sum(const char *path, unsigned char *buf, uint64_t *size, uint64_t *sum)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;
	struct stat st;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0 || st.st_size > (off_t)MAXFILE) {
		close(fd);
		return -EFBIG;
	}
	n = pread(fd, buf, (size_t)st.st_size, 0);
	close(fd);
	if (n != st.st_size)
		return n < 0 ? -errno : -EIO;
	*size = (uint64_t)n;
	*sum = checksum64(buf, (size_t)n);
	return 0;
}

/*
 * After a successful check, what was found in a slot that could hold
 * several versions is on the device for good (the file system has been
 * cleanly unmounted since): record it, so a later crash may not bring an
 * older version back.
 */
static void settle_found(const char *log, const struct kept *all, size_t n, const uint64_t *found)
{
	int fd = open(log, O_WRONLY | O_APPEND);

	if (fd < 0)
		die("%s: %s", log, strerror(errno));
	for (size_t i = 0; i < n; i++) {
		char line[256];
		int len;

		if (!all[i].durable || all[i].n < 2)
			continue;
		len = snprintf(line, sizeof(line), "K %s %" PRIu64 " %016" PRIx64 "\n", all[i].name,
		               all[i].ok[found[i]].size, all[i].ok[found[i]].sum);
		log_durable(fd, line, (size_t)len);
	}
	close(fd);
}

static int cmd_verify(int argc, char **argv)
{
	struct kept *all = NULL;
	size_t n = 0, cap = 0;
	uint64_t files = 0, bytes = 0, gone = 0, fails = 0, *found;
	unsigned char *buf = malloc(MAXFILE);
	char line[512], name[256], path[1024];
	bool update = argc == 5 && !strcmp(argv[4], "--update");
	FILE *f;

	if (argc != 4 && !update)
		die("usage: fschurn verify ROOT LOG [--update]");
	f = fopen(argv[3], "r");
	if (!f || !buf)
		die("%s: %s", argv[3], strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		char kind;
		struct version v;
		struct kept *k;

		int fields =
		    sscanf(line, "%c %255s %" SCNu64 " %" SCNx64, &kind, name, &v.size, &v.sum);

		if (fields < 2 || (fields != 4 && kind != 'R' && kind != 'D') ||
		    !strchr("KIRD", kind) || strlen(name) >= sizeof(k->name))
			die("%s: malformed line: %s", argv[3], line);
		k = find_kept(&all, &n, &cap, name);
		if (kind == 'R') {
			k->removing = true;
		} else if (kind == 'D') {
			k->gone = true;
		} else if (kind == 'K') {
			/* Durable: earlier versions may no longer appear. */
			k->ok[0] = v;
			k->n = 1;
			k->durable = true;
		} else if (k->n < 64) {
			k->ok[k->n++] = v;
		}
	}
	fclose(f);
	found = calloc(n ? n : 1, sizeof(*found));
	if (!found)
		die("out of memory");
	for (size_t i = 0; i < n; i++) {
		struct kept *k = &all[i];
		uint64_t size = 0, sum = 0;
		bool good = false;
		int err;

		if (!k->durable)
			continue; /* never acknowledged: may be missing */
		snprintf(path, sizeof(path), "%s/keep/%s", argv[2], k->name);
		err = file_sum(path, buf, &size, &sum);
		if (k->gone && err != -ENOENT) {
			fails++;
			printf("FAIL %s: deleted and its directory fsynced, but %s\n", path,
			       err ? strerror(-err) : "it is back");
			continue;
		}
		if (k->gone || (k->removing && err == -ENOENT)) {
			gone++;
			continue;
		}
		for (unsigned j = 0; !err && !good && j < k->n; j++) {
			good = k->ok[j].size == size && k->ok[j].sum == sum;
			found[i] = j;
		}
		if (good) {
			files++;
			bytes += size;
			continue;
		}
		fails++;
		if (err)
			printf("FAIL %s: fsynced (%" PRIu64 " bytes) but now: %s\n", path,
			       k->ok[0].size, strerror(-err));
		else
			printf("FAIL %s: fsynced as %" PRIu64 " bytes sum %016" PRIx64
			       ", now %" PRIu64 " bytes sum %016" PRIx64 "\n",
			       path, k->ok[0].size, k->ok[0].sum, size, sum);
	}
	printf("fsverify: %" PRIu64 " fsynced files intact (%" PRIu64 " bytes), %" PRIu64
	       " deleted ones gone, %" PRIu64 " failures\n",
	       files, bytes, gone, fails);
	printf("VERIFIED_BYTES=%" PRIu64 "\n", bytes);
	if (!fails && update)
		settle_found(argv[3], all, n, found);
	free(found);
	free(all);
	free(buf);
	return fails ? 1 : 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "run"))
		return cmd_run(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "verify"))
		return cmd_verify(argc, argv);
	die("usage: fschurn run|verify ... (see the source)");
}
