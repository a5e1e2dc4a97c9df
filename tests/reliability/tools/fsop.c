/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fsop: one system call per run, for the reliability tests that need exact
 * errnos from calls coreutils does not make (one write(2) of any bytes, a
 * zero-length write, O_CREAT|O_EXCL, xattrs, mknod, renameat2, fallocate
 * modes). Prints "ok" (and a result) or strerror(errno); exits 0 or 1.
 * With FSOP_HOLD set, write keeps its file open until killed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

static int failed(void)
{
	printf("%s\n", strerror(errno));
	return 1;
}

static int done(int rc)
{
	if (rc < 0)
		return failed();
	printf("ok\n");
	return 0;
}

/* "ok N" for a call that returns a count, or its error. */
static int counted(ssize_t n)
{
	if (n < 0)
		return failed();
	printf("ok %zd\n", n);
	return 0;
}

/* Everything on stdin, which may be empty or hold NUL bytes. */
static char *read_stdin(size_t *len)
{
	size_t size = 1 << 16, n = 0;
	char *buf = malloc(size);
	ssize_t r;

	while (buf && (r = read(0, buf + n, size - n)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			perror("fsop: stdin");
			exit(2);
		}
		n += (size_t)r;
		if (n == size) {
			char *bigger = realloc(buf, size * 2);

			if (!bigger) {
				free(buf);
				buf = NULL; /* reported below */
				break;
			}
			buf = bigger;
			size *= 2;
		}
	}
	if (!buf) {
		fprintf(stderr, "fsop: out of memory\n");
		exit(2);
	}
	*len = n;
	return buf;
}

static int open_flags(const char *list)
{
	static const struct {
		const char *name;
		int flag;
	} names[] = {{"rdonly", O_RDONLY},  {"wronly", O_WRONLY},       {"rdwr", O_RDWR},
	             {"creat", O_CREAT},    {"excl", O_EXCL},           {"trunc", O_TRUNC},
	             {"append", O_APPEND},  {"directory", O_DIRECTORY}, {"nofollow", O_NOFOLLOW},
	             {"direct", O_DIRECT},  {"sync", O_SYNC},           {"tmpfile", O_TMPFILE},
	             {"noatime", O_NOATIME}};
	char *copy = strdup(list), *save = NULL;
	int flags = 0;

	for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		size_t i;

		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (strcmp(w, names[i].name) == 0)
				break;
		if (i == sizeof(names) / sizeof(names[0])) {
			fprintf(stderr, "fsop: unknown open flag %s\n", w);
			exit(2);
		}
		flags |= names[i].flag;
	}
	free(copy);
	return flags;
}

static int falloc_mode(const char *s)
{
	if (strcmp(s, "alloc") == 0)
		return 0;
	if (strcmp(s, "keep") == 0)
		return FALLOC_FL_KEEP_SIZE;
	if (strcmp(s, "punch") == 0)
		return FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	if (strcmp(s, "zero") == 0)
		return FALLOC_FL_ZERO_RANGE;
	if (strcmp(s, "collapse") == 0)
		return FALLOC_FL_COLLAPSE_RANGE;
	if (strcmp(s, "insert") == 0)
		return FALLOC_FL_INSERT_RANGE;
	fprintf(stderr, "fsop: unknown fallocate mode %s\n", s);
	exit(2);
}

static mode_t node_type(const char *s, dev_t *rdev)
{
	*rdev = 0;
	if (strcmp(s, "fifo") == 0)
		return S_IFIFO;
	if (strcmp(s, "reg") == 0)
		return S_IFREG;
	if (strcmp(s, "sock") == 0)
		return S_IFSOCK;
	*rdev = makedev(1, 3); /* like /dev/null */
	if (strcmp(s, "chr") == 0)
		return S_IFCHR;
	if (strcmp(s, "blk") == 0)
		return S_IFBLK;
	fprintf(stderr, "fsop: unknown node type %s\n", s);
	exit(2);
}

/* open + one call on the descriptor, so that both errors are told apart. */
static int with_fd(const char *path, int flags, int (*op)(int fd, char **args), char **args)
{
	int fd = open(path, flags);
	int rc;

	if (fd < 0) {
		printf("open: %s\n", strerror(errno));
		return 1;
	}
	rc = op(fd, args);
	close(fd);
	return rc;
}

static int op_write(int fd, char **args)
{
	size_t len;
	char *data = read_stdin(&len);
	ssize_t n =
	    args[0] ? pwrite(fd, data, len, strtoll(args[0], NULL, 0)) : write(fd, data, len);

	int e = errno;

	free(data);
	errno = e;
	if (counted(n) != 0)
		return 1;
	/* FSOP_HOLD: keep the file open (a close would write dirty data back) until killed. */
	if (getenv("FSOP_HOLD")) {
		fflush(stdout);
		pause();
	}
	return 0;
}

static int op_ftruncate(int fd, char **args)
{
	return done(ftruncate(fd, strtoll(args[0], NULL, 0)));
}

/* pwrite of zeroes or pread of args[1] bytes at offset args[0]. */
static int rw(int fd, char **args, bool out)
{
	size_t len = strtoull(args[1], NULL, 0);
	char *buf = calloc(1, len ? len : 1);
	off_t off = strtoll(args[0], NULL, 0);
	ssize_t n = out ? pwrite(fd, buf, len, off) : pread(fd, buf, len, off);
	int e = errno;

	free(buf);
	errno = e;
	return counted(n);
}

static int op_pwrite(int fd, char **args)
{
	return rw(fd, args, true);
}

static int op_pread(int fd, char **args)
{
	return rw(fd, args, false);
}

static int op_fallocate(int fd, char **args)
{
	return done(fallocate(fd, falloc_mode(args[0]), strtoll(args[1], NULL, 0),
	                      strtoll(args[2], NULL, 0)));
}

static int op_fsetxattr(int fd, char **args)
{
	return done(fsetxattr(fd, args[0], args[1], strlen(args[1]), 0));
}

static int usage(void)
{
	fprintf(
	    stderr,
	    "usage: fsop write PATH [OFFSET] <DATA | open PATH FLAG,... | truncate PATH SIZE |\n"
	    "  ftruncate PATH SIZE | pwrite PATH OFF LEN | pread PATH OFF LEN |\n"
	    "  fallocate PATH alloc|keep|punch|zero|collapse|insert OFF LEN |\n"
	    "  mknod PATH fifo|chr|blk|reg|sock | mkdir PATH | rmdir PATH | unlink PATH |\n"
	    "  rename OLD NEW [noreplace|exchange] | link OLD NEW | symlink TARGET PATH |\n"
	    "  chmod PATH OCTAL | chown PATH UID GID | utimens PATH |\n"
	    "  setxattr PATH NAME VALUE | fsetxattr PATH NAME VALUE | getxattr PATH NAME |\n"
	    "  listxattr PATH | removexattr PATH NAME\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *op = argc > 1 ? argv[1] : "";
	char **a = argv + 2;
	int n = argc - 2;
	char buf[4096];
	ssize_t len;

	if (strcmp(op, "write") == 0 && (n == 1 || n == 2))
		return with_fd(a[0], O_WRONLY, op_write, a + 1);
	if (strcmp(op, "open") == 0 && n == 2) {
		int fd = open(a[0], open_flags(a[1]), 0644);

		if (fd >= 0)
			close(fd);
		return done(fd);
	}
	if (strcmp(op, "truncate") == 0 && n == 2)
		return done(truncate(a[0], strtoll(a[1], NULL, 0)));
	if (strcmp(op, "ftruncate") == 0 && n == 2)
		return with_fd(a[0], O_WRONLY, op_ftruncate, a + 1);
	if (strcmp(op, "pwrite") == 0 && n == 3)
		return with_fd(a[0], O_WRONLY, op_pwrite, a + 1);
	if (strcmp(op, "pread") == 0 && n == 3)
		return with_fd(a[0], O_RDONLY, op_pread, a + 1);
	if (strcmp(op, "fallocate") == 0 && n == 4)
		return with_fd(a[0], O_WRONLY, op_fallocate, a + 1);
	if (strcmp(op, "mknod") == 0 && n == 2) {
		dev_t rdev;
		mode_t type = node_type(a[1], &rdev);

		return done(mknod(a[0], type | 0600, rdev));
	}
	if (strcmp(op, "mkdir") == 0 && n == 1)
		return done(mkdir(a[0], 0755));
	if (strcmp(op, "rmdir") == 0 && n == 1)
		return done(rmdir(a[0]));
	if (strcmp(op, "unlink") == 0 && n == 1)
		return done(unlink(a[0]));
	if (strcmp(op, "rename") == 0 && (n == 2 || n == 3)) {
		unsigned flags = 0;

		if (n == 3)
			flags = strcmp(a[2], "exchange") == 0 ? RENAME_EXCHANGE : RENAME_NOREPLACE;
		return done(renameat2(AT_FDCWD, a[0], AT_FDCWD, a[1], flags));
	}
	if (strcmp(op, "link") == 0 && n == 2)
		return done(link(a[0], a[1]));
	if (strcmp(op, "symlink") == 0 && n == 2)
		return done(symlink(a[0], a[1]));
	if (strcmp(op, "chmod") == 0 && n == 2)
		return done(chmod(a[0], (mode_t)strtoul(a[1], NULL, 8)));
	if (strcmp(op, "chown") == 0 && n == 3)
		return done(
		    chown(a[0], (uid_t)strtol(a[1], NULL, 0), (gid_t)strtol(a[2], NULL, 0)));
	if (strcmp(op, "utimens") == 0 && n == 1)
		return done(utimensat(AT_FDCWD, a[0], NULL, 0));
	if (strcmp(op, "setxattr") == 0 && n == 3)
		return done(setxattr(a[0], a[1], a[2], strlen(a[2]), 0));
	if (strcmp(op, "fsetxattr") == 0 && n == 3)
		return with_fd(a[0], O_RDONLY, op_fsetxattr, a + 1);
	if (strcmp(op, "getxattr") == 0 && n == 2) {
		len = getxattr(a[0], a[1], buf, sizeof(buf));
		return len < 0 ? failed() : (printf("ok %.*s\n", (int)len, buf), 0);
	}
	if (strcmp(op, "listxattr") == 0 && n == 1) {
		len = listxattr(a[0], buf, sizeof(buf));
		return len < 0 ? failed() : (printf("ok %zd\n", len), 0);
	}
	if (strcmp(op, "removexattr") == 0 && n == 2)
		return done(removexattr(a[0], a[1]));
	return usage();
}
