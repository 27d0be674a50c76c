/*
 * unit.h: helpers shared by the unit tests.
 *
 * Byte buffers, whole reads and writes, temporary directories, and the
 * reference computations the tests compare the library against: the
 * octets a stored message is worth on the wire, its CRLF form, its
 * stuffed form, and an mbox builder that records where each message
 * lies.  The references are written from the rules (RFC 1939, DESIGN.md),
 * line by line, and share no code with the library.
 *
 * Everything here is static inline so that a test that does not use a
 * helper does not warn about it.
 */
#ifndef UNIT_H
#define UNIT_H

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "pop3d.h"

struct buf {
	unsigned char	*p;
	size_t		 len, cap;
};

static inline void
buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap > 0 ? b->cap : 256;

		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = realloc(b->p, cap);
		cr_assert_not_null(b->p, "out of memory");
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';	/* handy for text, not counted */
}

static inline void
buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

/* Appends n copies of c. */
static inline void
buf_addc(struct buf *b, unsigned char c, size_t n)
{
	size_t at = b->len;

	buf_add(b, NULL, 0);
	if (n == 0)
		return;
	/* Grow once, then fill in place. */
	while (b->len + n + 1 > b->cap) {
		b->p = realloc(b->p, b->cap * 2);
		cr_assert_not_null(b->p, "out of memory");
		b->cap *= 2;
	}
	memset(b->p + at, c, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static inline void
buf_free(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/*
 * Cleanup that runs after each test, passed or failed: every suite names
 * unit_cleanup as its .fini, so temporary directories, maildrops and
 * allocations go away even when an assertion ends the test early.
 */
struct unit_deferred {
	void	(*fn)(void *);
	void	*arg;
};

static inline struct unit_deferred *
unit_deferred(size_t **n, size_t **cap, struct unit_deferred ***listp)
{
	static struct unit_deferred *list;
	static size_t count, size;

	*n = &count;
	if (cap != NULL)
		*cap = &size;
	if (listp != NULL)
		*listp = &list;
	return list;
}

static inline void
unit_defer(void (*fn)(void *), void *arg)
{
	size_t *n, *cap;
	struct unit_deferred **list;

	unit_deferred(&n, &cap, &list);
	if (*n == *cap) {
		*cap = *cap > 0 ? *cap * 2 : 32;
		*list = realloc(*list, *cap * sizeof(**list));
		cr_assert_not_null(*list);
	}
	(*list)[*n].fn = fn;
	(*list)[*n].arg = arg;
	(*n)++;
}

/* Runs the cleanup registered for arg now, and forgets it. */
static inline void
unit_release(void *arg)
{
	size_t *n, i;
	struct unit_deferred *list = unit_deferred(&n, NULL, NULL);

	for (i = *n; i-- > 0; )
		if (list[i].arg == arg) {
			void (*fn)(void *) = list[i].fn;

			memmove(&list[i], &list[i + 1],
			    (*n - i - 1) * sizeof(*list));
			(*n)--;
			fn(arg);
			return;
		}
	cr_assert_fail("no cleanup registered for %p", arg);
}

/* Runs the deferred cleanups, newest first. */
static inline void
unit_cleanup(void)
{
	size_t *n, *cap;
	struct unit_deferred **list;

	unit_deferred(&n, &cap, &list);
	while (*n > 0) {
		(*n)--;
		(*list)[*n].fn((*list)[*n].arg);
	}
	free(*list);
	*list = NULL;
	*cap = 0;
}

static inline void
write_all(int fd, const void *p, size_t n)
{
	const unsigned char *s = p;

	while (n > 0) {
		ssize_t w = write(fd, s, n);

		if (w == -1 && errno == EINTR)
			continue;
		cr_assert(w > 0, "write: %s", strerror(errno));
		s += w;
		n -= (size_t)w;
	}
}

/* Reads fd until EOF into b (appending). */
static inline void
read_all(int fd, struct buf *b)
{
	unsigned char tmp[65536];

	for (;;) {
		ssize_t r = read(fd, tmp, sizeof(tmp));

		if (r == -1 && errno == EINTR)
			continue;
		cr_assert(r >= 0, "read: %s", strerror(errno));
		if (r == 0)
			break;
		buf_add(b, tmp, (size_t)r);
	}
	if (b->p == NULL)
		buf_add(b, "", 0);
}

/* struct io is large (~150 KB): never on the stack.  The caller frees. */
static inline struct io *
io_new(int in, int out, int timeout)
{
	struct io *io = calloc(1, sizeof(*io));

	cr_assert_not_null(io);
	io_init(io, in, out, timeout);
	return io;
}

/* The same, freed by unit_cleanup, or earlier by unit_release(io). */
static inline struct io *
io_auto(int in, int out, int timeout)
{
	struct io *io = io_new(in, out, timeout);

	unit_defer(free, io);
	return io;
}

/* An unlinked temporary file, read-write, for output or an mbox. */
static inline int
tmpfd(void)
{
	char path[] = "/tmp/pop3d-unit-file.XXXXXX";
	int fd = mkstemp(path);

	cr_assert(fd != -1, "mkstemp: %s", strerror(errno));
	cr_assert(unlink(path) == 0);
	return fd;
}

/* The whole content of fd, from offset 0. */
static inline void
fd_slurp(int fd, struct buf *b)
{
	cr_assert(lseek(fd, 0, SEEK_SET) == 0);
	read_all(fd, b);
}


static inline int
tmpdir_rm_one(const char *path, const struct stat *st, int type,
    struct FTW *ftw)
{
	(void)st, (void)ftw;
	if (type == FTW_DP)
		return rmdir(path);
	return unlink(path);
}

static inline void
tmpdir_remove_now(void *dir)
{
	(void)nftw(dir, tmpdir_rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
}

/*
 * A fresh directory under /tmp.  It is removed with its content by
 * tmpdir_remove, or else by unit_cleanup when the suite has it as .fini
 * (so that a failed assertion leaves nothing behind).
 */
static inline char *
tmpdir_make(void)
{
	char *dir = strdup("/tmp/pop3d-unit.XXXXXX");

	cr_assert_not_null(dir);
	cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	unit_defer(tmpdir_remove_now, dir);
	return dir;
}

/* Removes a directory from tmpdir_make now, and frees its name. */
static inline void
tmpdir_remove(char *dir)
{
	if (dir != NULL)
		unit_release(dir);
}

static inline void
unit_md_close(void *md)
{
	maildrop_close(md);
}

static inline void
file_write(const char *path, const void *p, size_t n, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	cr_assert(fd != -1, "open %s: %s", path, strerror(errno));
	cr_assert(fchmod(fd, mode) == 0);
	write_all(fd, p, n);
	cr_assert(close(fd) == 0);
}

static inline void
file_append(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_APPEND);

	cr_assert(fd != -1, "open %s: %s", path, strerror(errno));
	write_all(fd, p, n);
	cr_assert(close(fd) == 0);
}

static inline void
file_read(const char *path, struct buf *b)
{
	int fd = open(path, O_RDONLY);

	cr_assert(fd != -1, "open %s: %s", path, strerror(errno));
	read_all(fd, b);
	close(fd);
}

/*
 * Asserts two byte strings are equal; on a mismatch says where the first
 * difference is and shows the bytes around it, escaped.
 */
static inline void
show_bytes(char *out, size_t outsz, const unsigned char *p, size_t n,
    size_t at)
{
	size_t i = at > 16 ? at - 16 : 0, o = 0;
	size_t end = at + 24 < n ? at + 24 : n;

	out[0] = '\0';
	for (; i < end && o + 8 < outsz; i++) {
		unsigned char c = p[i];

		if (c >= 0x20 && c < 0x7f && c != '\\')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, outsz - o, "\\x%02x", c);
	}
	out[o < outsz ? o : outsz - 1] = '\0';
}

static inline void
assert_bytes(const unsigned char *got, size_t gotlen,
    const unsigned char *exp, size_t explen, const char *what)
{
	size_t i, n = gotlen < explen ? gotlen : explen;
	char g[256], e[256];

	if (gotlen == explen && (n == 0 || memcmp(got, exp, n) == 0))
		return;
	for (i = 0; i < n && got[i] == exp[i]; i++)
		;
	show_bytes(g, sizeof(g), got, gotlen, i);
	show_bytes(e, sizeof(e), exp, explen, i);
	cr_assert_fail("%s: got %zu bytes, expected %zu; first difference at "
	    "%zu:\n  got: \"%s\"\n  exp: \"%s\"", what, gotlen, explen, i, g,
	    e);
}

static inline void
assert_buf_str(const struct buf *b, const char *exp, const char *what)
{
	assert_bytes(b->p, b->len, (const unsigned char *)exp, strlen(exp),
	    what);
}

/*
 * The reference for the wire form of stored bytes: lines end at LF; one
 * CR right before the LF is part of the line end; a last line without LF
 * still ends; every line goes out as content + CRLF.  Calls fn for each
 * line's content.
 */
static inline void
ref_lines(const unsigned char *p, size_t n,
    void (*fn)(void *, const unsigned char *, size_t), void *arg)
{
	size_t start = 0, i;

	for (i = 0; i < n; i++) {
		if (p[i] != '\n')
			continue;
		size_t len = i - start;

		if (len > 0 && p[i - 1] == '\r')
			len--;
		fn(arg, p + start, len);
		start = i + 1;
	}
	if (start < n) {
		size_t len = n - start;

		if (p[n - 1] == '\r')
			len--;
		fn(arg, p + start, len);
	}
}

static inline void
ref_count_line(void *arg, const unsigned char *p, size_t n)
{
	(void)p;
	*(uint64_t *)arg += n + 2;
}

/* Octets of stored bytes as sent, CRLF line ends, before stuffing. */
static inline uint64_t
ref_octets(const unsigned char *p, size_t n)
{
	uint64_t total = 0;

	ref_lines(p, n, ref_count_line, &total);
	return total;
}

static inline void
ref_crlf_line(void *arg, const unsigned char *p, size_t n)
{
	buf_add(arg, p, n);
	buf_add(arg, "\r\n", 2);
}

/* The CRLF form, unstuffed, appended to out. */
static inline void
ref_crlf(const unsigned char *p, size_t n, struct buf *out)
{
	ref_lines(p, n, ref_crlf_line, out);
}

static inline void
ref_stuff_line(void *arg, const unsigned char *p, size_t n)
{
	if (n > 0 && p[0] == '.')
		buf_add(arg, ".", 1);
	buf_add(arg, p, n);
	buf_add(arg, "\r\n", 2);
}

/* The multi-line response body: CRLF, stuffed, then ".\r\n". */
static inline void
ref_body(const unsigned char *p, size_t n, struct buf *out)
{
	ref_lines(p, n, ref_stuff_line, out);
	buf_add(out, ".\r\n", 3);
}

/*
 * Undoes a multi-line response body: checks it ends with the ".\r\n"
 * terminator line, that every line ends with CRLF, that no line but the
 * last is a lone ".", and removes the stuffed dots.  0, or -1 when the
 * response is malformed.
 */
static inline int
unstuff(const unsigned char *p, size_t n, struct buf *out)
{
	size_t start = 0, i;

	if (out->p == NULL)
		buf_add(out, "", 0);
	for (i = 0; i < n; i++) {
		if (p[i] != '\n')
			continue;
		if (i == start || p[i - 1] != '\r')
			return -1;	/* bare LF on the wire */
		size_t len = i - 1 - start;
		const unsigned char *l = p + start;

		start = i + 1;
		if (len == 1 && l[0] == '.')
			return start == n ? 0 : -1;
		if (len > 0 && l[0] == '.') {
			l++;
			len--;
		}
		buf_add(out, l, len);
		buf_add(out, "\r\n", 2);
	}
	return -1;			/* no terminator */
}

/*
 * An mbox under construction, with the fields the scanner must find for
 * each message.  The caller makes sure the bytes are unambiguous: every
 * message but the last ends with a newline and is followed by an empty
 * separator line.
 */
struct ref_msg {
	uint64_t	 off, data, len, hdrlen, size;
	size_t		 chunk_end;	/* where the next envelope is */
};

struct ref_mbox {
	struct buf	 file;
	struct ref_msg	*m;
	size_t		 n, cap;
};

/* Stored bytes up to and including the first empty line, else len. */
static inline uint64_t
ref_hdrlen(const unsigned char *p, size_t n)
{
	size_t start = 0, i;

	for (i = 0; i < n; i++) {
		if (p[i] != '\n')
			continue;
		if (i == start || (i == start + 1 && p[start] == '\r'))
			return i + 1;
		start = i + 1;
	}
	return n;
}

static inline struct ref_msg *
ref_mbox_add(struct ref_mbox *b, const char *env, const void *msg,
    size_t len, const char *sep)
{
	struct ref_msg *m;

	if (b->n == b->cap) {
		b->cap = b->cap > 0 ? b->cap * 2 : 16;
		b->m = realloc(b->m, b->cap * sizeof(*b->m));
		cr_assert_not_null(b->m);
	}
	m = &b->m[b->n++];
	m->off = b->file.len;
	buf_adds(&b->file, env);
	m->data = b->file.len;
	buf_add(&b->file, msg, len);
	m->len = len;
	m->hdrlen = ref_hdrlen(msg, len);
	m->size = ref_octets(msg, len);
	buf_adds(&b->file, sep);
	m->chunk_end = b->file.len;
	return m;
}

static inline void
ref_mbox_adds(struct ref_mbox *b, const char *env, const char *msg,
    const char *sep)
{
	ref_mbox_add(b, env, msg, strlen(msg), sep);
}

static inline void
ref_mbox_free(struct ref_mbox *b)
{
	buf_free(&b->file);
	free(b->m);
	memset(b, 0, sizeof(*b));
}

#define ENV	"From alice@example.org Mon Jan  1 00:00:00 2024\n"
#define ENV2	"From bob@example.org Tue Jan  2 10:11:12 2024\n"

/* A tiny deterministic PRNG (xorshift64*), so a failure can be replayed. */
static inline uint64_t
rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

static inline size_t
rnd_upto(uint64_t *s, size_t n)
{
	return n == 0 ? 0 : (size_t)(rnd(s) % n);
}

/*
 * A random mbox: every kind of line, LF and CRLF, long lines across any
 * buffer boundary, "From " lines where they are text, identical copies.
 */
static inline void
gen_line(uint64_t *seed, struct buf *m, int prev_empty)
{
	size_t kind = rnd_upto(seed, 20), len, i;

	switch (kind) {
	case 0:
	case 1:
		break;				/* empty */
	case 2:
		buf_adds(m, ".");
		break;
	case 3:
		buf_adds(m, "..x");
		break;
	case 4:
		buf_adds(m, ">From quoted");
		break;
	case 5:
		buf_adds(m, prev_empty ? ">From x" : "From text line");
		break;
	case 6:
		/* Long: up to 1.5 MB, across the scanner's buffers. */
		len = rnd_upto(seed, 8) == 0 ? 1024 * 1024 +
		    rnd_upto(seed, 512 * 1024) : rnd_upto(seed, 70000);
		buf_addc(m, (unsigned char)('a' + rnd_upto(seed, 26)), len);
		break;
	case 7:
		buf_add(m, "a\0b\rc\xff", 6);
		break;
	default:
		len = 1 + rnd_upto(seed, 100);
		for (i = 0; i < len; i++)
			buf_addc(m, (unsigned char)(' ' + 1 +
			    rnd_upto(seed, 94)), 1);
		break;
	}
}

static inline int
ends_with_empty_line(const struct buf *m)
{
	const unsigned char *p = m->p;
	size_t n = m->len;

	if (n == 0)
		return 0;
	if (n >= 2 && p[n - 1] == '\n' && p[n - 2] == '\n')
		return 1;
	if (n >= 3 && memcmp(p + n - 3, "\n\r\n", 3) == 0)
		return 1;
	return n == 1 && p[0] == '\n';
}

static inline void
gen_mbox(uint64_t seed, size_t count, struct ref_mbox *b)
{
	struct buf m = { 0 }, prev = { 0 };
	char env[128], hdr[64];
	size_t i, j;

	for (i = 0; i < count; i++) {
		int last = i + 1 == count;
		int crlf = rnd_upto(&seed, 3) == 0;
		const char *eol = crlf ? "\r\n" : "\n";
		const char *sep;
		size_t nhdr, nbody;
		int prev_empty = 0;

		if (i > 0 && rnd_upto(&seed, 10) == 0) {
			/* An identical copy of the previous message. */
			buf_free(&m);
			buf_add(&m, prev.p, prev.len);
			if (last && ends_with_empty_line(&m))
				buf_adds(&m, "end\n");
			ref_mbox_add(b, env, m.p, m.len, last ? "" : "\n");
			continue;
		}
		m.len = 0;
		snprintf(env, sizeof(env), "From user%zu@example.org Mon Jan "
		    " 1 00:00:%02zu 2024%s", rnd_upto(&seed, 50), i % 60, eol);
		nhdr = rnd_upto(&seed, 6);
		for (j = 0; j < nhdr; j++) {
			switch (rnd_upto(&seed, 5)) {
			case 0:
				buf_adds(&m, "Status: RO");
				break;
			case 1:
				buf_adds(&m, "X-Keywords: a");
				buf_adds(&m, eol);
				buf_adds(&m, "\tb");
				break;
			default:
				snprintf(hdr, sizeof(hdr), "H%zu: %zu", j,
				    rnd_upto(&seed, 1000));
				buf_adds(&m, hdr);
				break;
			}
			buf_adds(&m, eol);
		}
		if (rnd_upto(&seed, 10) != 0) {
			buf_adds(&m, eol);		/* header ends */
			prev_empty = 1;
			nbody = rnd_upto(&seed, 30);
			for (j = 0; j < nbody; j++) {
				size_t before = m.len;

				gen_line(&seed, &m, prev_empty);
				prev_empty = m.len == before;
				buf_adds(&m, rnd_upto(&seed, 4) == 0 ?
				    "\r\n" : eol);
			}
		}
		if (last) {
			if (rnd_upto(&seed, 3) == 0)
				buf_adds(&m, rnd_upto(&seed, 2) ? "tail" :
				    "tail\r");
			else if (ends_with_empty_line(&m))
				buf_adds(&m, "end\n");
			sep = m.len > 0 && m.p[m.len - 1] != '\n' ? "" :
			    rnd_upto(&seed, 2) ? "" : eol;
		} else
			sep = rnd_upto(&seed, 4) == 0 ? "\r\n" : "\n";
		ref_mbox_add(b, env, m.p, m.len, sep);
		buf_free(&prev);
		buf_add(&prev, m.p, m.len);
	}
	buf_free(&m);
	buf_free(&prev);
}

/*
 * Captures what an io writes to a socket: a child reads the peer end
 * until EOF and stores the bytes in an unlinked file, so that output of
 * any size can pass while the test writes.
 */
struct capture {
	int	 sock;		/* give this to io_init as out */
	int	 file;
	pid_t	 pid;
};

static inline void
capture_start(struct capture *c)
{
	int sv[2];

	cr_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	c->file = tmpfd();
	c->pid = fork();
	cr_assert(c->pid != -1);
	if (c->pid == 0) {
		unsigned char tmp[65536];
		ssize_t r;

		close(sv[0]);
		alarm(120);	/* never outlive a stuck test for long */
		for (;;) {
			r = read(sv[1], tmp, sizeof(tmp));
			if (r == -1 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			size_t off = 0;

			while (off < (size_t)r) {
				ssize_t w = write(c->file, tmp + off,
				    (size_t)r - off);

				if (w <= 0)
					_exit(1);
				off += (size_t)w;
			}
		}
		_exit(r == 0 ? 0 : 1);
	}
	close(sv[1]);
	c->sock = sv[0];
}

/* Closes the socket, waits for the reader and returns what it got. */
static inline void
capture_end(struct capture *c, struct buf *out)
{
	int status;

	close(c->sock);
	cr_assert(waitpid(c->pid, &status, 0) == c->pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "capture reader failed");
	fd_slurp(c->file, out);
	close(c->file);
}

#endif /* UNIT_H */
