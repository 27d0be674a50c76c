/*
 * maildir.c: Maildir maildrops behind the maildrop interface.
 *
 * A Maildir is a directory with new/, cur/ and tmp/; every message is a
 * file of its own in new/ (not yet seen by a mail reader) or cur/, named by
 * the delivery agent as TIME.UNIQUE.HOST[,S=n][,W=n][:2,FLAGS]
 * (https://cr.yp.to/proto/maildir.html).  Names and bytes are hostile: a
 * name is any bytes but '/' and NUL, a file any bytes.  Everything is
 * reached relative to the directory's descriptor, never through a link in
 * the last step, and a file may vanish or be renamed at any moment by
 * another client (an IMAP server on the same Maildir): that is a condition
 * to handle, never a crash.  Runs as the mail user.
 *
 * Locks: flock(2) on .pop3d.lock inside the Maildir, for the whole
 * session, keeps a second POP3 session out ([IN-USE], RFC 2449 §8.1.1).  A
 * lock file rather than the directory itself, because on NFS flock() is
 * emulated with fcntl() locks, which need a file open for writing.
 * Delivery needs no lock: an agent writes into tmp/ and renames into new/,
 * so a file in new/ or cur/ is always complete, and mail that arrives
 * during the session is not in the table and not touched by UPDATE.
 *
 * The table: md->loc.name[i] is the offset in md->names of the name,
 * behind a mark for its directory (MARK_LEN), and that is all a message
 * costs beside its struct msg and its name: the name holds everything
 * else.  The size comes from ,W= in the name when there is one (the CRLF
 * size that Dovecot's delivery agent records; trusted as Dovecot trusts
 * it, so the file is not read at login), else from one read at login.
 * RETR reads to the end of the file and TOP finds the end of the header
 * when it is asked; the UIDL is derived from the name when it is asked
 * (maildir_uidl).
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <md5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "pop3d.h"

/* The session lock; its leading '.' keeps it out of every listing. */
#define MAILDIR_LOCK	".pop3d.lock"
/*
 * In md->names a name is kept behind one byte for its directory, 'n' for
 * new/ or 'c' for cur/: four bytes a message less than the path.
 */
#define MARK_LEN	1
/* Bytes of a path "new/NAME" or "cur/NAME" with its NUL. */
#define PATH_LEN	(4 + NAME_MAX + 1)

/* The pool entry of message i: its directory's mark, then its name. */
static const char *
maildir_name(const struct maildrop *md, size_t i)
{
	return md->names + md->loc.name[i];
}

/*
 * The path of message i from the Maildir, "new/NAME" or "cur/NAME", into
 * buf (PATH_LEN bytes).  Every name in the pool came from a directory,
 * so it fits (maildir_pool_add refuses what does not).
 */
static const char *
maildir_path(const struct maildrop *md, size_t i, char *buf)
{
	const char *name = maildir_name(md, i);

	memcpy(buf, name[0] == 'n' ? "new/" : "cur/", 4);
	memcpy(buf + 4, name + MARK_LEN, strlen(name + MARK_LEN) + 1);
	return buf;
}

/* Closes a descriptor on an error path, keeping the error's errno. */
static void
close_quietly(int fd)
{
	int saved = errno;

	(void)close(fd);
	errno = saved;
}

/*
 * The path of message i as it may go into the log: a name is any bytes
 * but '/', and a newline in one must not forge a log line.  Bytes outside
 * 0x20..0x7E become '?'.  A static buffer: one such path per log call.
 */
static const char *
maildir_logmsg(const struct maildrop *md, size_t i)
{
	static char buf[PATH_LEN];
	size_t j;

	maildir_path(md, i, buf);
	for (j = 0; buf[j] != '\0'; j++)
		if ((unsigned char)buf[j] < 0x20 ||
		    (unsigned char)buf[j] > 0x7e)
			buf[j] = '?';
	return buf;
}

/*
 * The unique part of a name: what comes before the ':' of the info
 * ("1700000000.M1P2.host,S=10,W=12" of "...:2,S").  It never changes
 * once the message is delivered, whatever a mail reader does to the
 * flags, which is why the UIDL and the search for a renamed file use it.
 */
static size_t
maildir_base_len(const char *base)
{
	return strcspn(base, ":");
}

/*
 * The delivery time that leads a name, in seconds.  A name without one
 * counts as 0 and so sorts first; a number too large saturates.
 */
static uint64_t
maildir_time(const char *base)
{
	uint64_t t = 0;

	for (; *base >= '0' && *base <= '9'; base++) {
		uint64_t d = (uint64_t)(*base - '0');

		if (t > (UINT64_MAX - d) / 10)
			return UINT64_MAX;
		t = t * 10 + d;
	}
	return t;
}

/*
 * Delivery order: the leading time, then the name without its directory,
 * then the whole name so that the order is total.
 */
static int
maildir_order(const char *a, const char *b)
{
	uint64_t ta = maildir_time(a + MARK_LEN);
	uint64_t tb = maildir_time(b + MARK_LEN);
	int c;

	if (ta != tb)
		return ta < tb ? -1 : 1;
	if ((c = strcmp(a + MARK_LEN, b + MARK_LEN)) != 0)
		return c;
	return strcmp(a, b);
}

/* Orders name offsets (md->loc.name entries) in delivery order. */
static int
maildir_off_cmp(const void *a, const void *b, void *names)
{
	const uint32_t *x = a, *y = b;
	const char *n = names;

	return maildir_order(n + *x, n + *y);
}

/*
 * The ,W= field of a unique part: the size in CRLF octets.  0 and *w, or
 * -1 when there is none or it is not a plain decimal number.
 */
static int
maildir_vsize(const char *base, uint64_t *w)
{
	size_t len = maildir_base_len(base), i;

	for (i = 0; i + 3 < len; i++) {
		uint64_t v = 0;
		size_t j;

		if (base[i] != ',' || base[i + 1] != 'W' || base[i + 2] != '=')
			continue;
		for (j = i + 3; j < len && base[j] >= '0' && base[j] <= '9';
		    j++) {
			uint64_t d = (uint64_t)(base[j] - '0');

			if (v > (UINT64_MAX - d) / 10)
				break;
			v = v * 10 + d;
		}
		if (j > i + 3 && (j == len || base[j] == ',')) {
			*w = v;
			return 0;
		}
	}
	return -1;
}

/*
 * Counts stored bytes the way io_body_write sends them: each LF, with one
 * CR right before it dropped, goes out as CRLF; other CRs pass; a last
 * line without LF still ends in CRLF, and a CR that ends the file becomes
 * that CRLF's CR (RFC 1939 §3, RFC 5322 §2.3).  hdrlen is the header up to
 * and including the first empty line, or everything when there is none.
 */
struct count {
	uint64_t	 len;		/* stored bytes so far */
	uint64_t	 size;		/* octets as sent */
	uint64_t	 line;		/* bytes of the unfinished line */
	uint64_t	 hdrlen;
	int		 in_header;	/* no empty line yet */
	unsigned char	 last;		/* the last byte counted */
};

static void
maildir_count(struct count *c, const unsigned char *p, size_t n)
{
	const unsigned char *q = p, *end = p + n, *lf;

	c->size += n;
	while (q < end && (lf = memchr(q, '\n', (size_t)(end - q))) != NULL) {
		uint64_t linelen = c->line + (uint64_t)(lf - q) + 1;
		unsigned char before = lf > p ? lf[-1] : c->last;
		int cr = linelen >= 2 && before == '\r';

		if (!cr)
			c->size++;
		if (c->in_header && (linelen == 1 || (linelen == 2 && cr))) {
			c->in_header = 0;
			c->hdrlen = c->len + (uint64_t)(lf - p) + 1;
		}
		c->line = 0;
		q = lf + 1;
	}
	c->line += (uint64_t)(end - q);
	if (n > 0)
		c->last = p[n - 1];
	c->len += n;
}

/*
 * Reads fd from offset 0 and counts it; with header_only, stops at the
 * end of the header.  0, or -1 with errno.
 */
static int
maildir_count_fd(int fd, struct count *c, int header_only)
{
	unsigned char *buf = maildrop_buf();

	memset(c, 0, sizeof(*c));
	c->in_header = 1;
	for (;;) {
		ssize_t n = pread(fd, buf, POP3D_MAILBUF, (off_t)c->len);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		maildir_count(c, buf, (size_t)n);
		if (header_only && !c->in_header)
			return 0;
	}
	if (c->line > 0)
		c->size += c->last == '\r' ? 1 : 2;
	if (c->in_header)
		c->hdrlen = c->len;
	return 0;
}

/* The names pool's first size, and the most that a hint reserves. */
#define POOL_MIN	4096
#define POOL_HINT_MAX	((size_t)64 << 20)

int maildir_pool_hint = 1;

/*
 * Allocates the names pool for the scan at the size of new/ and cur/
 * together.  On the usual file systems (ext4, XFS, btrfs) a directory's
 * size bounds the bytes of the names in it, each with a few bytes of its
 * own beside, so the pool is allocated once: growing it by copies leaves
 * the old copies resident, and the names are most of a Maildir's memory.
 * Pages never written cost nothing.  Only a hint: tmpfs, for one, counts
 * 20 bytes an entry, and the pool then grows as it must.
 */
static void
maildir_pool_reserve(struct maildrop *md)
{
	static const char *const subs[] = { "new", "cur" };
	struct stat st;
	uint64_t hint = 0;
	size_t i;
	char *p;

	for (i = 0; i < 2; i++)
		if (fstatat(md->fd, subs[i], &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISDIR(st.st_mode) && st.st_size > 0)
			hint += (uint64_t)st.st_size;
	if (hint > POOL_HINT_MAX)
		hint = POOL_HINT_MAX;
	if (maildir_pool_hint && hint > POOL_MIN &&
	    (p = malloc((size_t)hint)) != NULL) {
		md->names = p;
		md->names_cap = (size_t)hint;
	}
}

/*
 * Appends sub's mark, name and a NUL to md->names; the offset into *off.  The
 * pool stays under 4 GiB (offsets are 32-bit): POP3D_MAX_MSGS names of
 * NAME_MAX bytes, plus what compaction and renames leave, are far below.
 */
static int
maildir_pool_add(struct maildrop *md, const char *sub, const char *name,
    uint32_t *off)
{
	size_t nlen = strlen(name), need = MARK_LEN + nlen + 1;

	if (nlen > NAME_MAX) {
		errno = ENAMETOOLONG;	/* no directory gives one */
		return -1;
	}
	if (md->names_len + need > UINT32_MAX) {
		errno = ENOMEM;
		return -1;
	}
	if (need > md->names_cap - md->names_len) {
		size_t cap = md->names_cap > 0 ? md->names_cap : POOL_MIN;
		char *p;

		while (need > cap - md->names_len) {
			if (cap > SIZE_MAX / 2) {
				errno = ENOMEM;
				return -1;
			}
			cap *= 2;
		}
		if ((p = realloc(md->names, cap)) == NULL)
			return -1;
		md->names = p;
		md->names_cap = cap;
	}
	*off = (uint32_t)md->names_len;
	md->names[md->names_len] = sub[0];	/* 'n' or 'c' */
	memcpy(md->names + md->names_len + MARK_LEN, name, nlen + 1);
	md->names_len += need;
	return 0;
}

/*
 * The scan at login: the messages of new/ and cur/, at most
 * POP3D_MAX_MSGS of them.  Beyond the cap the table becomes a max-heap in
 * delivery order, so that the oldest messages are the ones shown, as in
 * an mbox; the rest stays untouched, like mail that arrives during the
 * session.
 */
struct pick {
	int		 full;		/* at the cap: a heap */
	size_t		 dropped;	/* messages left out */
	size_t		 garbage;	/* pool bytes no message uses */
};

static void
maildir_sift_down(struct maildrop *md, size_t i)
{
	uint32_t *h = md->loc.name, t;

	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, big = i;

		if (l < md->count && maildir_off_cmp(&h[l], &h[big],
		    md->names) > 0)
			big = l;
		if (r < md->count && maildir_off_cmp(&h[r], &h[big],
		    md->names) > 0)
			big = r;
		if (big == i)
			return;
		t = h[i];
		h[i] = h[big];
		h[big] = t;
		i = big;
	}
}

/* Drops the pool bytes that no message uses any more. */
static int
maildir_pool_compact(struct maildrop *md, struct pick *pk)
{
	size_t cap = md->names_len - pk->garbage, len = 0, i;
	char *p;

	if ((p = malloc(cap)) == NULL)
		return -1;
	for (i = 0; i < md->count; i++) {
		const char *name = maildir_name(md, i);
		size_t n = strlen(name) + 1;

		memcpy(p + len, name, n);
		md->loc.name[i] = (uint32_t)len;
		len += n;
	}
	free(md->names);
	md->names = p;
	md->names_len = len;
	md->names_cap = cap;
	pk->garbage = 0;
	return 0;
}

/*
 * Takes one more name offset into md->loc.name: during the scan the table
 * is only that (md->msgs is made once the count is known).  0, or -1 at
 * the cap (EFBIG) or without memory.
 */
static int
maildir_take(struct maildrop *md, uint32_t off)
{
	if (md->count == md->cap) {
		size_t cap = md->cap == 0 ? 256 : md->cap * 2;
		uint32_t *p;

		if (cap > POP3D_MAX_MSGS)
			cap = POP3D_MAX_MSGS;
		if (md->count >= cap) {
			errno = EFBIG;
			return -1;
		}
		if ((p = reallocarray(md->loc.name, cap, sizeof(*p))) == NULL)
			return -1;
		md->loc.name = p;
		md->cap = cap;
	}
	md->loc.name[md->count++] = off;
	return 0;
}

static int
maildir_collect(struct maildrop *md, void *arg, const char *sub,
    const char *name)
{
	struct pick *pk = arg;
	size_t start = md->names_len, i;
	uint32_t off;

	if (maildir_pool_add(md, sub, name, &off) == -1)
		return -1;
	if (!pk->full) {
		if (maildir_take(md, off) == 0)
			return 0;
		if (errno != EFBIG)
			return -1;
		pk->full = 1;
		for (i = md->count / 2; i-- > 0; )
			maildir_sift_down(md, i);
	}
	pk->dropped++;
	if (md->count == 0 || maildir_order(md->names + off,
	    maildir_name(md, 0)) >= 0) {
		md->names_len = start;	/* newer than all shown */
		return 0;
	}
	/* Older than the newest shown message, which gives way. */
	pk->garbage += strlen(maildir_name(md, 0)) + 1;
	md->loc.name[0] = off;
	maildir_sift_down(md, 0);
	if (pk->garbage > (size_t)1 << 20 && pk->garbage > md->names_len / 2)
		return maildir_pool_compact(md, pk);
	return 0;
}

/*
 * One directory entry of sub/ (descriptor dfd) of d_type type: fn's if it
 * may be a message, a regular file whose name does not start with '.'
 * (Maildir readers skip dot files).  0, or -1 with errno.
 */
static int
maildir_entry(struct maildrop *md, int dfd, const char *sub,
    const char *name, unsigned char type,
    int (*fn)(struct maildrop *, void *, const char *, const char *),
    void *arg)
{
	struct stat st;

	if (name[0] == '.')
		return 0;
	if (type == DT_UNKNOWN) {
		/* Some file systems do not fill d_type. */
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1)
			return errno == ENOENT ? 0 : -1;  /* just removed */
		if (!S_ISREG(st.st_mode))
			return 0;
	} else if (type != DT_REG)
		return 0;
	return fn(md, arg, sub, name);
}

/*
 * Calls fn for every entry of sub/ that may be a message (maildir_entry).
 * On Linux the entries are read with getdents64(2) into the mail buffer
 * (fn must not use it), which spares readdir's 32 KiB buffer, the
 * largest allocation of a small Maildir's login.  0, or -1 with errno
 * from the directory or from fn.
 */
static int
maildir_scan_dir(struct maildrop *md, const char *sub,
    int (*fn)(struct maildrop *, void *, const char *, const char *),
    void *arg)
{
	int dfd, ret = -1, saved;

	dfd = openat(md->fd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (dfd == -1)
		return -1;
#ifdef __linux__
	unsigned char *buf = maildrop_buf();

	for (;;) {
		ssize_t n = getdents64(dfd, buf, POP3D_MAILBUF), pos;
		const struct dirent64 *e;

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				ret = 0;
			break;
		}
		for (pos = 0; pos < n; pos += e->d_reclen) {
			e = (const struct dirent64 *)(const void *)(buf + pos);
			if (maildir_entry(md, dfd, sub, e->d_name, e->d_type,
			    fn, arg) == -1)
				goto out;
		}
	}
out:
	saved = errno;
	(void)close(dfd);
#else
	struct dirent *e;
	DIR *d;

	if ((d = fdopendir(dfd)) == NULL) {
		close_quietly(dfd);
		return -1;
	}
	for (;;) {
		errno = 0;
		if ((e = readdir(d)) == NULL) {
			if (errno == 0)
				ret = 0;
			break;
		}
		if (maildir_entry(md, dfd, sub, e->d_name, e->d_type, fn,
		    arg) == -1)
			break;
	}
	saved = errno;
	if (closedir(d) == -1 && ret == 0)
		return -1;
#endif
	errno = saved;
	return ret;
}

/*
 * A Maildir or a part of it that cannot be opened or read for a reason
 * that will not go away by itself (a link, a file where a directory
 * should be, permissions) needs the admin.
 */
static enum md_status
maildir_status(int err)
{
	return err == ELOOP || err == ENOTDIR || err == EACCES ||
	    err == EPERM || err == ENOENT || err == EROFS ? MD_PERM : MD_TEMP;
}

/* Messages that vanished under the session and are being looked for. */
struct lost {
	size_t		*idx;		/* sorted by unique part */
	size_t		 n;
};

static int
maildir_base_cmp(const char *a, const char *b)
{
	size_t la = maildir_base_len(a), lb = maildir_base_len(b);
	int c = memcmp(a, b, la < lb ? la : lb);

	if (c != 0)
		return c;
	return la < lb ? -1 : la > lb;
}

/* Files with the same unique part share a UIDL (maildrop_dedup). */
static int
maildir_dup_cmp(const struct maildrop *md, size_t i, size_t j)
{
	return maildir_base_cmp(maildir_name(md, i) + MARK_LEN,
	    maildir_name(md, j) + MARK_LEN);
}

static int
maildir_lost_cmp(const void *a, const void *b, void *md)
{
	return maildir_dup_cmp(md, *(const size_t *)a, *(const size_t *)b);
}

static int
maildir_find(struct maildrop *md, void *arg, const char *sub,
    const char *name)
{
	struct lost *l = arg;
	size_t lo = 0, hi = l->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2, i = l->idx[mid];
		const char *old = maildir_name(md, i);
		int c = maildir_base_cmp(name, old + MARK_LEN);

		if (c < 0)
			hi = mid;
		else if (c > 0)
			lo = mid + 1;
		else {
			if ((md->msgs[i].flags & MSG_SHARED) ||
			    (old[0] == sub[0] &&
			    strcmp(old + MARK_LEN, name) == 0))
				return 0;
			return maildir_pool_add(md, sub, name,
			    &md->loc.name[i]);
		}
	}
	return 0;
}

/*
 * Looks for messages whose files vanished: a file that another client
 * renamed (an IMAP server moving it from new/ to cur/, or changing its
 * flags) keeps its unique part, and the table follows it to its new name.
 * Only for messages whose unique part is theirs alone (maildir_find
 * passes MSG_SHARED ones by): with two files of one unique part, the one
 * found could be the other message's, and RETR would send it, or UPDATE
 * unlink it.  The caller's idx is sorted here.  0 (whether or not found),
 * or -1.
 */
static int
maildir_relocate(struct maildrop *md, size_t *idx, size_t n)
{
	struct lost l = { idx, n };

	qsort_r(idx, n, sizeof(*idx), maildir_lost_cmp, md);
	if (maildir_scan_dir(md, "new", maildir_find, &l) == -1 ||
	    maildir_scan_dir(md, "cur", maildir_find, &l) == -1) {
		log_msg(LOG_ERR, "maildrop %s: looking for renamed messages: "
		    "%s", md->path, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * A message file is opened with O_NOATIME: with relatime, the first read
 * of a file delivered or renamed since it was last read (every message a
 * POP3 client downloads) would otherwise write its inode's atime, which
 * no Maildir reader uses (HACKING.md, Maildir).  The flag needs the
 * file's owner (the session runs as the mail user, who owns what its
 * delivery agent wrote); a file of another owner fails with EPERM, is
 * opened again without it, and the session stops asking.  Linux only;
 * elsewhere 0.
 */
#ifdef O_NOATIME
static int maildir_noatime = O_NOATIME;
#else
static int maildir_noatime = 0;
#endif

static int
maildir_openat(struct maildrop *md, size_t i)
{
	int flags = O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC;
	char name[PATH_LEN];
	int fd;

	maildir_path(md, i, name);
	fd = openat(md->fd, name, flags | maildir_noatime);
	if (fd == -1 && errno == EPERM && maildir_noatime != 0) {
		maildir_noatime = 0;
		fd = openat(md->fd, name, flags);
	}
	return fd;
}

/*
 * Opens message i for reading, following it when another client renamed
 * it (when follow is set).  The descriptor, or -1 with errno; ENOENT when
 * the message is gone.
 */
static int
maildir_open_fd(struct maildrop *md, size_t i, int follow)
{
	int fd;

	fd = maildir_openat(md, i);
	if (fd == -1 && errno == ENOENT && follow) {
		if (maildir_relocate(md, &i, 1) == -1)
			return -1;
		fd = maildir_openat(md, i);
	}
	if (fd == -1 && errno == ELOOP)
		errno = ENOENT;		/* a link now: not a message */
	return fd;
}

/*
 * Checks that fd is a regular file and gives its size; closes it when it
 * is not.  0, or -1 with errno: ENOENT for a FIFO or device.
 */
static int
maildir_regular(int fd, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st) == 0) {
		if (S_ISREG(st.st_mode)) {
			*size = (uint64_t)st.st_size;
			return 0;
		}
		errno = ENOENT;		/* a FIFO or device now */
	}
	close_quietly(fd);
	return -1;
}

/*
 * Opens message i for reading, as maildir_open_fd, and gives its size.
 * The descriptor, or -1 with errno; ENOENT when the message is gone or is
 * no regular file any more.
 */
static int
maildir_open_msg(struct maildrop *md, size_t i, int follow, uint64_t *size)
{
	int fd;

	if ((fd = maildir_open_fd(md, i, follow)) == -1 ||
	    maildir_regular(fd, size) == -1)
		return -1;
	return fd;
}

/*
 * For RETR: opens message i as maildir_open_msg does and reads its first
 * bytes into the mail buffer; *got is how many came.  A read that brings
 * some bytes but fewer than asked has met the end of the file, so the
 * fstat is not needed for the size: one syscall less of the four that a
 * small message costs.  A read that fills the buffer (a big message, or a
 * device that never ends) or brings nothing (an empty file, or a device
 * like /dev/null) is followed by the fstat, which refuses what is no
 * regular file and gives the size that bounds the rest; a FIFO or a
 * directory fails the read itself.  The file is opened O_NONBLOCK with the
 * mail user's rights, so whatever a name leads to can neither keep RETR
 * waiting nor show more than the user could read anyway.
 */
static int
maildir_open_read(struct maildrop *md, size_t i, uint64_t *size,
    size_t *got)
{
	ssize_t n;
	int fd;

	if ((fd = maildir_open_fd(md, i, 1)) == -1)
		return -1;
	do
		n = pread(fd, maildrop_buf(), POP3D_MAILBUF, 0);
	while (n == -1 && errno == EINTR);
	if (n == -1) {
		close_quietly(fd);
		return -1;
	}
	*got = (size_t)n;
	if (n > 0 && *got < POP3D_MAILBUF) {
		*size = *got;
		return fd;
	}
	if (maildir_regular(fd, size) == -1)
		return -1;
	if (*size < *got)
		*got = (size_t)*size;	/* shrank since the read */
	return fd;
}

/*
 * Fills in message i's size at login, from the name or from one read.  1
 * to keep it; 0 to leave it out because it vanished, is no regular file,
 * or cannot be read (logged: one bad file must not lock the user out of
 * the rest); -1 on a system failure.
 */
static int
maildir_measure(struct maildrop *md, size_t i)
{
	struct msg *m = &md->msgs[i];
	const char *name = maildir_name(md, i);
	struct count c;
	uint64_t size;
	int fd, saved;

	if (maildir_vsize(name + MARK_LEN, &m->size) == 0)
		return 1;
	if ((fd = maildir_open_msg(md, i, 0, &size)) == -1) {
		if (errno == ENOENT)
			return 0;
		goto unreadable;
	}
	if (maildir_count_fd(fd, &c, 0) == -1) {
		close_quietly(fd);
		goto unreadable;
	}
	(void)close(fd);		/* read-only: nothing to lose */
	m->size = c.size;
	return 1;
unreadable:
	if (errno != EACCES && errno != EPERM && errno != EIO)
		return -1;
	saved = errno;
	log_msg(LOG_WARNING, "maildrop %s: %s: %s; not shown", md->path,
	    maildir_logmsg(md, i), strerror(saved));
	return 0;
}

/* A message that shares its unique part, and its file's inode number. */
struct copy {
	size_t		i;
	uint64_t	ino;
};

static int
maildir_copy_cmp(const void *a, const void *b, void *md)
{
	const struct copy *x = a, *y = b;
	int c = maildir_dup_cmp(md, x->i, y->i);

	if (c != 0)
		return c;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

/*
 * Files that share a unique part (copies, or a delivery agent's slip) are
 * told apart in their UIDLs by copy numbers (maildir_uidl).  They are
 * given here in the order of the files' inode numbers, which a rename
 * keeps, rather than in table order, which follows the names: an IMAP
 * client that changes one copy's flags renames it, and with table order
 * the copies could swap UIDLs, so that a client deleting by UIDL would
 * delete the one it never downloaded.  A file that cannot be looked at
 * sorts first, as inode 0.  0, or -1 with errno.
 */
static int
maildir_number_copies(struct maildrop *md)
{
	struct copy *c;
	char path[PATH_LEN];
	struct stat st;
	size_t i, n = 0;

	for (i = 0; i < md->count; i++)
		n += (md->msgs[i].flags & MSG_SHARED) != 0;
	if (n == 0)
		return 0;
	if ((c = reallocarray(NULL, n, sizeof(*c))) == NULL)
		return -1;
	for (i = n = 0; i < md->count; i++) {
		if (!(md->msgs[i].flags & MSG_SHARED))
			continue;
		c[n].i = i;
		c[n++].ino = fstatat(md->fd, maildir_path(md, i, path), &st,
		    AT_SYMLINK_NOFOLLOW) == 0 ? (uint64_t)st.st_ino : 0;
	}
	qsort_r(c, n, sizeof(*c), maildir_copy_cmp, md);
	for (i = 0; i < n; i++)
		md->msgs[c[i].i].dup = i > 0 &&
		    maildir_dup_cmp(md, c[i - 1].i, c[i].i) == 0 ?
		    md->msgs[c[i - 1].i].dup + 1 : 0;
	free(c);
	return 0;
}

/*
 * Drops the messages whose files vanished since the directories were
 * read, when another entry has the same unique part: another client
 * renamed the file while pop3d read them (an IMAP server moving new mail
 * to cur/ between the reads of new/ and of cur/, or changing flags in a
 * cur/ too big for one getdents), and the table holds the file twice.
 * Shown twice, the entry that exists got a copy's UIDL (digest-1) in this
 * session and has its own in the next, so that a client leaving mail on
 * the server downloads it again; the vanished one, being shared, is never
 * followed.  Copies whose files all exist stay, numbered afresh when some
 * went.  0, or -1 with errno.
 */
static int
maildir_drop_vanished(struct maildrop *md)
{
	char path[PATH_LEN];
	struct stat st;
	size_t i, j;

	for (i = j = 0; i < md->count; i++) {
		if ((md->msgs[i].flags & MSG_SHARED) &&
		    fstatat(md->fd, maildir_path(md, i, path), &st,
		    AT_SYMLINK_NOFOLLOW) == -1 && errno == ENOENT)
			continue;
		md->msgs[j] = md->msgs[i];
		md->loc.name[j++] = md->loc.name[i];
	}
	if (j == md->count)
		return 0;
	md->count = j;
	for (i = 0; i < md->count; i++) {
		md->msgs[i].dup = 0;
		md->msgs[i].flags &= ~(uint32_t)MSG_SHARED;
	}
	return maildrop_dedup(md, maildir_dup_cmp);
}

static enum md_status
maildir_lock(struct maildrop *md)
{
	struct stat st;

	md->lockfd = openat(md->fd, MAILDIR_LOCK, O_RDWR | O_CREAT |
	    O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC, 0600);
	if (md->lockfd == -1) {
		log_msg(LOG_ERR, "maildrop %s: lock file %s: %s", md->path,
		    MAILDIR_LOCK, strerror(errno));
		return maildir_status(errno);
	}
	if (fstat(md->lockfd, &st) == -1) {
		log_msg(LOG_ERR, "maildrop %s: fstat %s: %s", md->path,
		    MAILDIR_LOCK, strerror(errno));
		return MD_TEMP;
	}
	if (!S_ISREG(st.st_mode)) {
		log_msg(LOG_ERR, "maildrop %s: %s is not a regular file",
		    md->path, MAILDIR_LOCK);
		return MD_PERM;
	}
	return maildrop_flock(md, md->lockfd);
}

static enum md_status
maildir_open(struct maildrop *md)
{
	static const char *const subs[] = { "new", "cur" };
	struct pick pk = { 0, 0, 0 };
	struct stat st;
	enum md_status r;
	size_t i, j;
	int k;

	md->fd = open(md->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (md->fd == -1) {
		log_msg(LOG_ERR, "maildrop %s: open: %s", md->path,
		    strerror(errno));
		return errno == ENOENT ? MD_TEMP : maildir_status(errno);
	}
	if (fstat(md->fd, &st) == -1) {
		log_msg(LOG_ERR, "maildrop %s: fstat: %s", md->path,
		    strerror(errno));
		return MD_TEMP;
	}
	md->id.dev = st.st_dev;
	md->id.ino = st.st_ino;
	if ((r = maildir_lock(md)) != MD_OK)
		return r;
	maildir_pool_reserve(md);
	/* tmp/ holds deliveries in progress: never shown. */
	for (i = 0; i < 2; i++) {
		if (i > 0)
			PAUSE("maildir-scan");
		if (maildir_scan_dir(md, subs[i], maildir_collect, &pk) ==
		    -1) {
			log_msg(LOG_ERR, "maildrop %s: reading %s/: %s",
			    md->path, subs[i], strerror(errno));
			return maildir_status(errno);
		}
	}
	/* Numbers stay fixed for the session (RFC 1939 §5). */
	if (md->count > 1)
		qsort_r(md->loc.name, md->count, sizeof(md->loc.name[0]),
		    maildir_off_cmp, md->names);
	if (md->count > 0 && (md->msgs = calloc(md->count,
	    sizeof(md->msgs[0]))) == NULL) {
		log_msg(LOG_ERR, "maildrop %s: %s", md->path, strerror(errno));
		return MD_TEMP;
	}
	for (i = j = 0; i < md->count; i++) {
		if ((k = maildir_measure(md, i)) == -1) {
			log_msg(LOG_ERR, "maildrop %s: %s: %s", md->path,
			    maildir_logmsg(md, i), strerror(errno));
			return MD_TEMP;
		}
		if (k == 1) {
			md->msgs[j] = md->msgs[i];
			md->loc.name[j++] = md->loc.name[i];
		}
	}
	md->count = j;
	if (maildrop_dedup(md, maildir_dup_cmp) == -1 ||
	    maildir_drop_vanished(md) == -1 ||
	    maildir_number_copies(md) == -1) {
		log_msg(LOG_ERR, "maildrop %s: %s", md->path, strerror(errno));
		return MD_TEMP;
	}
	if (pk.dropped > 0)
		log_msg(LOG_WARNING, "maildrop %s: over %d messages, %zu not "
		    "shown", md->path, POP3D_MAX_MSGS, pk.dropped);
	return MD_OK;
}

/*
 * Streams the file's bytes [off, off + len) through the writer; a file
 * shorter than that is an error (the +OK may be out: the caller ends the
 * session).
 */
static enum md_status
maildir_stream(struct maildrop *md, size_t i, int fd, struct io *io,
    uint64_t off, uint64_t len, long long *lines)
{
	unsigned char *buf = maildrop_buf();

	while (len > 0 && io->err == 0) {
		size_t want = len < POP3D_MAILBUF ? (size_t)len :
		    POP3D_MAILBUF;
		ssize_t n = pread(fd, buf, want, (off_t)off);
		size_t used;

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_msg(LOG_ERR, "maildrop %s: %s: read at %llu: %s",
			    md->path, maildir_logmsg(md, i),
			    (unsigned long long)off,
			    n == 0 ? "file shrank" : strerror(errno));
			return MD_TEMP;
		}
		used = io_body_write(io, buf, (size_t)n, lines);
		if (lines != NULL && *lines == 0)
			break;
		off += used;
		len -= used;
	}
	return MD_OK;
}

/* Closes the file that check opened and send did not take. */
static void
maildir_drop_held(struct maildrop *md)
{
	if (md->held != 0)
		(void)close(md->heldfd);
	md->held = 0;
}

/*
 * Before RETR and TOP, and so before the +OK: opens message i's file
 * (following a rename by another client) and holds it for send, so that
 * one path lookup serves both; for RETR, with its first bytes read (see
 * maildir_open_read).  A message whose file another client deleted, or
 * that cannot be opened or read, gets -ERR and the session goes on; once
 * the +OK is out, nothing is left that could fail but the later reads.
 */
static enum md_status
maildir_check(struct maildrop *md, size_t i, long long lines)
{
	int fd;

	maildir_drop_held(md);
	md->heldgot = 0;
	if (lines < 0)
		fd = maildir_open_read(md, i, &md->heldsize, &md->heldgot);
	else
		fd = maildir_open_msg(md, i, 1, &md->heldsize);
	if (fd == -1) {
		if (errno == ENOENT)
			log_msg(LOG_NOTICE, "maildrop %s: message %zu (%s) "
			    "was removed by another client", md->path, i + 1,
			    maildir_logmsg(md, i));
		else
			log_msg(LOG_ERR, "maildrop %s: %s: %s", md->path,
			    maildir_logmsg(md, i), strerror(errno));
		return MD_TEMP;
	}
	md->held = i + 1;
	md->heldfd = fd;
	return MD_OK;
}

/*
 * RETR and TOP (RFC 1939 §7), of the file check opened (or, called
 * without check, opened now, before a byte of it is written).  The file's
 * size at open bounds the reads: a Maildir file does not change once
 * delivered, and the bound saves a read per message that only finds EOF.
 */
static enum md_status
maildir_send(struct maildrop *md, struct io *io, size_t i, long long lines)
{
	enum md_status r = MD_TEMP;
	struct count c;
	uint64_t size, got;
	int fd;

	if (md->held != i + 1 && maildir_check(md, i, lines) != MD_OK)
		return MD_TEMP;
	fd = md->heldfd;
	size = md->heldsize;
	got = md->heldgot;
	md->held = 0;
	io_body_begin(io);
	if (lines < 0) {
		/* RETR: check read the first bytes already. */
		(void)io_body_write(io, maildrop_buf(), (size_t)got, NULL);
		r = maildir_stream(md, i, fd, io, got, size - got, NULL);
		goto end;
	}
	/*
	 * TOP: find the header's end first, before the +OK's body starts.
	 * Not kept between commands: it costs a read of the header, and
	 * keeping it would cost memory for every message.
	 */
	if (maildir_count_fd(fd, &c, 1) == -1) {
		log_msg(LOG_ERR, "maildrop %s: %s: %s", md->path,
		    maildir_logmsg(md, i), strerror(errno));
		goto out;
	}
	if (c.hdrlen > size)
		c.hdrlen = size;	/* grew since the open: not ours */
	if ((r = maildir_stream(md, i, fd, io, 0, c.hdrlen, NULL)) == MD_OK &&
	    lines > 0)
		r = maildir_stream(md, i, fd, io, c.hdrlen, size - c.hdrlen,
		    &lines);
end:
	if (r == MD_OK)
		io_body_end(io);
out:
	(void)close(fd);		/* read-only: nothing to lose */
	return r;
}

/*
 * Moves a shown message from new/ to cur/ with an empty info ":2,", so
 * that mail readers stop treating it as new; the unique part, and with it
 * the UIDL, stays.  A file already in cur/ under that name is never
 * replaced: RENAME_NOREPLACE, or where the file system does not know the
 * flag (NFS), a hard link and an unlink, which fail on an existing name
 * too.  A crash between the two leaves the message under both names,
 * shown twice, never lost.  Only a file system without hard links gets a
 * plain rename, after a look that the name is free.  0, or -1 with errno.
 */
static int
maildir_move(struct maildrop *md, size_t i)
{
	const char *base = maildir_name(md, i) + MARK_LEN;
	char name[PATH_LEN], to[PATH_LEN];
	struct stat st;
	int n;

	maildir_path(md, i, name);
	n = snprintf(to, sizeof(to), "cur/%s%s", base,
	    strchr(base, ':') != NULL ? "" : ":2,");
	if (n < 0 || (size_t)n >= sizeof(to)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (!FAULT("rename") &&
	    renameat2(md->fd, name, md->fd, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL)
		return -1;
	if (linkat(md->fd, name, md->fd, to, 0) == 0)
		return unlinkat(md->fd, name, 0);
	if (errno != EPERM && errno != EOPNOTSUPP && errno != ENOSYS)
		return -1;
	if (fstatat(md->fd, to, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		errno = EEXIST;
		return -1;
	}
	if (errno != ENOENT)
		return -1;
	return renameat(md->fd, name, md->fd, to);
}

/* fsync(2) on sub/, so that the unlinks and renames in it persist. */
static int
maildir_sync_dir(struct maildrop *md, const char *sub)
{
	int dfd;

	dfd = openat(md->fd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (dfd == -1)
		return -1;
	/* EINVAL: a file system that cannot sync directories. */
	if (fsync(dfd) == -1 && errno != EINVAL) {
		close_quietly(dfd);
		return -1;
	}
	return close(dfd);
}

/* Unlinks message i; 0, or -1 with errno (ENOENT: already gone). */
static int
maildir_unlink(struct maildrop *md, size_t i, int *dirty)
{
	char path[PATH_LEN];

	if (unlinkat(md->fd, maildir_path(md, i, path), 0) == -1)
		return -1;
	dirty[path[0] == 'n' ? 0 : 1] = 1;
	return 0;
}

/*
 * RFC 1939 §6: unlinks the deleted messages and moves the others that
 * are still in new/ to cur/.  A message that vanished is looked for under
 * its new name (maildir_relocate); one that cannot be found is already
 * gone, which is what DELE asked for.  A failed move leaves the message
 * in new/, where the next session shows it again under the same UIDL:
 * logged, not an error.
 * A failed unlink or directory sync is MD_TEMP.
 */
static enum md_status
maildir_update(struct maildrop *md)
{
	static const char *const subs[] = { "new", "cur" };
	enum md_status r = MD_OK;
	int dirty[2] = { 0, 0 };	/* new/, cur/ changed */
	size_t *lost = NULL, nlost = 0, i;

	maildir_drop_held(md);
	for (i = 0; i < md->count; i++) {
		if (!(md->msgs[i].flags & MSG_DELETED))
			continue;
		if (maildir_unlink(md, i, dirty) == 0)
			continue;
		if (errno == ENOENT) {
			if (lost == NULL && (lost = reallocarray(NULL,
			    md->count, sizeof(*lost))) == NULL) {
				log_msg(LOG_ERR, "maildrop %s: %s", md->path,
				    strerror(errno));
				r = MD_TEMP;
				continue;
			}
			lost[nlost++] = i;
			continue;
		}
		log_msg(LOG_ERR, "maildrop %s: unlink %s: %s", md->path,
		    maildir_logmsg(md, i), strerror(errno));
		r = MD_TEMP;
	}
	if (nlost > 0) {
		if (maildir_relocate(md, lost, nlost) == -1)
			r = MD_TEMP;
		else
			for (i = 0; i < nlost; i++)
				if (maildir_unlink(md, lost[i], dirty) == -1 &&
				    errno != ENOENT) {
					log_msg(LOG_ERR, "maildrop %s: unlink "
					    "%s: %s", md->path,
					    maildir_logmsg(md, lost[i]),
					    strerror(errno));
					r = MD_TEMP;
				}
	}
	free(lost);
	for (i = 0; i < md->count; i++) {
		if ((md->msgs[i].flags & MSG_DELETED) ||
		    maildir_name(md, i)[0] != 'n')
			continue;
		if (maildir_move(md, i) == 0) {
			dirty[0] = dirty[1] = 1;
			continue;
		}
		/* ENOENT: another client moved or removed it first. */
		if (errno != ENOENT) {
			dirty[0] = dirty[1] = 1;	/* a link may be made */
			log_msg(LOG_WARNING, "maildrop %s: moving %s to cur/: "
			    "%s", md->path, maildir_logmsg(md, i),
			    strerror(errno));
		}
	}
	for (i = 0; i < 2; i++)
		if (dirty[i] && maildir_sync_dir(md, subs[i]) == -1) {
			log_msg(LOG_ERR, "maildrop %s: fsync %s/: %s",
			    md->path, subs[i], strerror(errno));
			r = MD_TEMP;
		}
	return r;
}

/*
 * 1 when s[0..len) has the shape of a hashed UIDL (maildrop_uidl_digest):
 * 32 lowercase hex digits, maybe '-' and digits.
 */
static int
digest_shaped(const char *s, size_t len)
{
	size_t j;

	if (len < 32 || (len > 32 && (len == 33 || s[32] != '-')))
		return 0;
	for (j = 0; j < 32; j++)
		if (!((s[j] >= '0' && s[j] <= '9') ||
		    (s[j] >= 'a' && s[j] <= 'f')))
			return 0;
	for (j = 33; j < len; j++)
		if (s[j] < '0' || s[j] > '9')
			return 0;
	return 1;
}

/*
 * RFC 1939 §7: a UIDL is 1 to 70 characters from 0x21 to 0x7E.  The
 * unique part of the name is used when it is one, as Dovecot and Courier
 * do, so that ids stay the same when a user moves between them; otherwise
 * the hex of its MD5.  A second file with the same unique part gets the
 * hex and a suffix, as an mbox copy does.  A unique part shaped like such
 * a hex id is hashed too: as it is, it could equal another file's hashed
 * id (a name that is the MD5 hex of another's unique part), and two
 * messages would share a UIDL.  So ids used as they are and hashed ids
 * never meet, and hashed ids differ unless MD5 collides.
 */
static void
maildir_uidl(const struct maildrop *md, size_t i, char *buf)
{
	const char *base = maildir_name(md, i) + MARK_LEN;
	size_t len = maildir_base_len(base), j;
	unsigned char uid[16];
	MD5_CTX ctx;
	int ok = md->msgs[i].dup == 0 && len >= 1 && len <= POP3D_UIDL_MAX &&
	    !digest_shaped(base, len);

	for (j = 0; ok && j < len; j++)
		if ((unsigned char)base[j] < 0x21 ||
		    (unsigned char)base[j] > 0x7e)
			ok = 0;
	if (ok) {
		memcpy(buf, base, len);
		buf[len] = '\0';
		return;
	}
	MD5Init(&ctx);
	MD5Update(&ctx, (const uint8_t *)base, len);
	MD5Final(uid, &ctx);
	maildrop_uidl_digest(uid, md->msgs[i].dup, buf);
}

static void
maildir_close(struct maildrop *md)
{
	/* Read-only descriptors: closing loses nothing; it drops the lock. */
	maildir_drop_held(md);
	if (md->lockfd != -1)
		(void)close(md->lockfd);
	md->lockfd = -1;
	if (md->fd != -1)
		(void)close(md->fd);
	md->fd = -1;
}

const struct maildrop_ops maildir_ops = {
	.name = "maildir",
	.open = maildir_open,
	.send = maildir_send,
	.update = maildir_update,
	.close = maildir_close,
	.check = maildir_check,
	.uidl = maildir_uidl,
};
