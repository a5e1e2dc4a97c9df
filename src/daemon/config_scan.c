/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Reading a config file for libconfig, and a look at it (and the files it
 * @includes) first, for the inputs libconfig mishandles: included files that
 * are not regular files (a FIFO blocks its fopen forever, a directory kills
 * its scanner with exit(2)) and integers too large for the type libconfig
 * stores them in.
 */
#define _GNU_SOURCE /* asprintf */
#include "daemon/config.h"

#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Before 1.7, libconfig stores an integer without the L suffix as an int
 * with atoi(), so 4294967301 silently becomes 5: such literals must carry L.
 */
#if !defined(LIBCONFIG_VER_MAJOR) || (LIBCONFIG_VER_MAJOR == 1 && LIBCONFIG_VER_MINOR < 7)
#define SCAN_INT_IS_32BIT 1
#else
#define SCAN_INT_IS_32BIT 0
#endif

/* libconfig's own limit on @include nesting. */
#define SCAN_MAX_DEPTH 10
/*
 * Included files read in all: a file that includes itself twice would
 * otherwise be read 2^10 times before the nesting limit stops it.
 */
#define SCAN_MAX_FILES 64
/* Far beyond any real configuration; keeps a mistaken path from filling memory. */
#define SCAN_MAX_SIZE (16u << 20)

const char *fs_file_kind(mode_t mode)
{
	if (S_ISREG(mode))
		return "a regular file";
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISFIFO(mode))
		return "a FIFO";
	if (S_ISCHR(mode))
		return "a character device";
	if (S_ISBLK(mode))
		return "a block device";
	if (S_ISSOCK(mode))
		return "a socket";
	return "a special file";
}

/* One look at a config and its includes. */
struct scan_all {
	const char *dir; /* where relative @include paths start */
	unsigned files;  /* included files read so far */
	char *err;
	size_t errlen;
};

/* One file of it. */
struct scan {
	struct scan_all *all;
	const char *path;
	const char *s; /* the file's text */
	size_t len, pos;
	unsigned line;
	int depth; /* of @include */
};

static int scan_file(struct scan_all *all, const char *path, int depth);

/*
 * The whole of @path, NUL-terminated. Only regular files, unless @any_kind:
 * then pipes and character devices too (bufiofs -c <(generate-config)).
 */
static int slurp(const char *path, bool any_kind, char **text, size_t *len, char *err,
                 size_t errlen)
{
	/* O_NONBLOCK: a FIFO must not block the open() before fstat() can refuse it. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	size_t n = 0, size = 4096;
	struct stat st;
	char *buf = NULL;
	int rc = 0;

	if (fd < 0)
		return fs_errf(err, errlen, -errno, "%s: cannot read: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0) {
		rc = fs_errf(err, errlen, -errno, "%s: cannot read: %s", path, strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode) || (!any_kind && !S_ISREG(st.st_mode))) {
		rc = fs_errf(err, errlen, S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL,
		             "%s: cannot read: not a regular file (it is %s)", path,
		             fs_file_kind(st.st_mode));
		goto out;
	}
	/* A pipe's writer may still be writing: wait for it from here on. */
	if (!S_ISREG(st.st_mode) && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
		rc = fs_errf(err, errlen, -errno, "%s: cannot read: %s", path, strerror(errno));
		goto out;
	}
	buf = malloc(size);
	if (!buf) {
		rc = fs_errf(err, errlen, -ENOMEM, "%s: out of memory", path);
		goto out;
	}
	for (;;) {
		ssize_t r;

		if (n + 1 == size) {
			char *bigger = realloc(buf, size *= 2);

			if (!bigger) {
				rc = fs_errf(err, errlen, -ENOMEM, "%s: out of memory", path);
				goto out;
			}
			buf = bigger;
		}
		r = read(fd, buf + n, size - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = fs_errf(err, errlen, -errno, "%s: cannot read: %s", path,
			             strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > SCAN_MAX_SIZE) {
			rc = fs_errf(err, errlen, -EFBIG, "%s: cannot read: larger than %u MiB",
			             path, SCAN_MAX_SIZE >> 20);
			goto out;
		}
	}
	/* Most likely a FIFO nobody writes to: say so rather than "no device to serve". */
	if (n == 0 && S_ISFIFO(st.st_mode)) {
		rc = fs_errf(err, errlen, -ENODATA,
		             "%s: cannot read: it is a FIFO and nothing was written to it", path);
		goto out;
	}
	/* libconfig would stop reading there, and the rest would be ignored. */
	if (n && memchr(buf, '\0', n)) {
		const char *nul = memchr(buf, '\0', n);
		unsigned line = 1;

		for (const char *p = buf; p < nul; p++)
			line += *p == '\n';
		rc =
		    fs_errf(err, errlen, -EINVAL, "%s:%u: a NUL byte: not a text file", path, line);
		goto out;
	}
	buf[n] = '\0';
	*text = buf;
	*len = n;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

static int peek(const struct scan *sc, size_t ahead)
{
	return sc->pos + ahead < sc->len ? (unsigned char)sc->s[sc->pos + ahead] : -1;
}

static void skip_to_eol(struct scan *sc)
{
	while (sc->pos < sc->len && sc->s[sc->pos] != '\n')
		sc->pos++;
}

static void skip_block_comment(struct scan *sc)
{
	for (sc->pos += 2; sc->pos < sc->len; sc->pos++) {
		if (sc->s[sc->pos] == '\n')
			sc->line++;
		else if (sc->s[sc->pos] == '*' && peek(sc, 1) == '/') {
			sc->pos += 2;
			return;
		}
	}
}

/* A "..." string, escapes included; its text (undone escapes) into @out when non-NULL. */
static void skip_string(struct scan *sc, char *out, size_t outlen)
{
	size_t o = 0;

	for (sc->pos++; sc->pos < sc->len && sc->s[sc->pos] != '"'; sc->pos++) {
		char c = sc->s[sc->pos];

		if (c == '\\' && sc->pos + 1 < sc->len)
			c = sc->s[++sc->pos];
		if (c == '\n')
			sc->line++;
		if (out && o + 1 < outlen)
			out[o++] = c;
	}
	sc->pos++; /* the closing quote */
	if (out && outlen)
		out[o] = '\0';
}

static bool is_name_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '*';
}

static bool is_float_char(int c)
{
	return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E';
}

static int hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
		return (c | 0x20) - 'a' + 10;
	return -1;
}

static int number_error(struct scan *sc, size_t start, const char *why)
{
	int n = (int)(sc->pos - start);

	return fs_errf(sc->all->err, sc->all->errlen, -EINVAL, "%s:%u: integer %.*s %s", sc->path,
	               sc->line, n > 40 ? 40 : n, sc->s + start, why);
}

/* An integer or float literal at sc->pos (a digit, or a sign before one). */
static int scan_number(struct scan *sc)
{
	size_t start = sc->pos;
	bool neg = false, hex = false, over = false, suffix = false;
	uint64_t v = 0, limit;

	if (peek(sc, 0) == '-' || peek(sc, 0) == '+')
		neg = sc->s[sc->pos++] == '-';
	if (peek(sc, 0) == '0' && (peek(sc, 1) | 0x20) == 'x') {
		hex = true;
		for (sc->pos += 2; hex_digit(peek(sc, 0)) >= 0; sc->pos++) {
			over |= v >> 60 != 0;
			v = v << 4 | (unsigned)hex_digit(peek(sc, 0));
		}
	} else {
		for (; peek(sc, 0) >= '0' && peek(sc, 0) <= '9'; sc->pos++)
			over |= __builtin_mul_overflow(v, 10, &v) ||
			        __builtin_add_overflow(v, (unsigned)(peek(sc, 0) - '0'), &v);
		if (peek(sc, 0) == '.' || (peek(sc, 0) | 0x20) == 'e') {
			/* A float: libconfig stores doubles correctly. */
			while (is_float_char(peek(sc, 0)) ||
			       ((peek(sc, 0) == '-' || peek(sc, 0) == '+') &&
			        (sc->s[sc->pos - 1] | 0x20) == 'e'))
				sc->pos++;
			return 0;
		}
	}
	while (peek(sc, 0) == 'L') {
		suffix = true;
		sc->pos++;
	}
	/* Hex literals are bit patterns: libconfig takes all 64 bits of one with L. */
	limit = hex ? UINT64_MAX : (uint64_t)INT64_MAX + neg;
	if (over || v > limit)
		return number_error(sc, start, "does not fit in 64 bits");
	limit = hex ? UINT32_MAX >> 1 : (uint64_t)INT32_MAX + neg;
	if (SCAN_INT_IS_32BIT && !suffix && v > limit)
		return number_error(sc, start,
		                    "does not fit in 32 bits, and this libconfig would silently "
		                    "cut it: write it with an L suffix (or a byte count as a "
		                    "string, \"4G\")");
	return 0;
}

/* "@include" at the start of a line: vet the included file too. */
static int scan_include(struct scan *sc)
{
	char name[4096], *full = NULL;
	int rc;

	sc->pos += strlen("@include");
	while (peek(sc, 0) == ' ' || peek(sc, 0) == '\t')
		sc->pos++;
	if (peek(sc, 0) != '"')
		return 0; /* libconfig reports the syntax error */
	skip_string(sc, name, sizeof(name));
	if (sc->depth >= SCAN_MAX_DEPTH)
		return fs_errf(sc->all->err, sc->all->errlen, -ELOOP,
		               "%s:%u: @include nested more than %d deep", sc->path, sc->line,
		               SCAN_MAX_DEPTH);
	if (++sc->all->files > SCAN_MAX_FILES)
		return fs_errf(sc->all->err, sc->all->errlen, -E2BIG,
		               "%s:%u: more than %d @include files in all", sc->path, sc->line,
		               SCAN_MAX_FILES);
	if (name[0] != '/' && sc->all->dir) {
		if (asprintf(&full, "%s/%s", sc->all->dir, name) < 0)
			return fs_errf(sc->all->err, sc->all->errlen, -ENOMEM, "%s: out of memory",
			               sc->path);
	}
	rc = scan_file(sc->all, full ? full : name, sc->depth + 1);
	free(full);
	return rc;
}

static bool at_line_start(const struct scan *sc)
{
	for (size_t i = sc->pos; i > 0; i--) {
		char c = sc->s[i - 1];

		if (c == '\n')
			return true;
		if (c != ' ' && c != '\t')
			return false;
	}
	return true;
}

static int scan_text(struct scan *sc)
{
	int rc = 0;

	while (rc == 0 && sc->pos < sc->len) {
		int c = peek(sc, 0);

		if (c == '\n') {
			sc->line++;
			sc->pos++;
		} else if (c == '#' || (c == '/' && peek(sc, 1) == '/')) {
			skip_to_eol(sc);
		} else if (c == '/' && peek(sc, 1) == '*') {
			skip_block_comment(sc);
		} else if (c == '"') {
			skip_string(sc, NULL, 0);
		} else if (c == '@' && strncmp(sc->s + sc->pos, "@include", 8) == 0 &&
		           at_line_start(sc)) {
			rc = scan_include(sc);
		} else if (is_name_char(c) && !(c >= '0' && c <= '9') && c != '-') {
			while (is_name_char(peek(sc, 0)))
				sc->pos++;
		} else if ((c >= '0' && c <= '9') ||
		           ((c == '-' || c == '+') && peek(sc, 1) >= '0' && peek(sc, 1) <= '9')) {
			rc = scan_number(sc);
		} else {
			sc->pos++;
		}
	}
	return rc;
}

/* Vet @text (the contents of @path) and the files it includes. */
static int scan_text_of(struct scan_all *all, const char *path, int depth, const char *text,
                        size_t len)
{
	struct scan sc = {
	    .all = all, .path = path, .s = text, .len = len, .line = 1, .depth = depth};

	return scan_text(&sc);
}

/* An included file: libconfig opens it itself, so it must be a regular file. */
static int scan_file(struct scan_all *all, const char *path, int depth)
{
	char *text = NULL;
	size_t len = 0;
	int rc;

	rc = slurp(path, false, &text, &len, all->err, all->errlen);
	if (rc == 0)
		rc = scan_text_of(all, path, depth, text, len);
	free(text);
	return rc;
}

int fs_config_read_text(const char *path, const char *include_dir, char **text, char *err,
                        size_t errlen)
{
	struct scan_all all = {.dir = include_dir, .err = err, .errlen = errlen};
	size_t len = 0;
	int rc;

	*text = NULL;
	rc = slurp(path, true, text, &len, err, errlen);
	if (rc == 0)
		rc = scan_text_of(&all, path, 0, *text, len);
	if (rc < 0) {
		free(*text);
		*text = NULL;
	}
	return rc;
}
