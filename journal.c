/*
 * journal.c: the redo journal that makes mbox compaction crash-safe.
 *
 * UPDATE moves the messages behind the first deleted one down in place.
 * Before the mbox is touched, the plan (where each run of bytes goes) and
 * the bytes themselves are written to a journal beside the mbox, fsync'ed,
 * and its directory entry synced.  The moves are then done from the journal
 * (bytes it does not carry, which lie at or above the final size, from
 * where they still are in the mbox), the mbox synced and truncated, and
 * the journal removed.  Whoever next opens the mbox under its locks finds
 * either no journal, an incomplete one (the mbox was not touched yet:
 * discard it), or a complete one, which is replayed; replay writes only
 * below the final size, from the journal and from mbox bytes no move
 * overwrites, so it can be repeated any number of times.  Runs as the
 * mail user.  It trusts the journal only after its checksum matches.
 *
 * On-disk layout (host byte order: a journal never leaves its host):
 *   struct jhead, nranges struct jrec, the carried bytes of every range in
 *   order (see carried()), then struct jtail (MD5 of everything before it,
 *   and an end magic).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <md5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "pop3d.h"

#define J_MAGIC		"POP3DJ01"
#define J_END		"POP3DEND"

/* A plan has one range per run of kept messages, plus the tail. */
#define J_MAX_RANGES	(POP3D_MAX_MSGS + 1)

struct jhead {
	char		magic[8];
	uint64_t	dev, ino;	/* the mbox this journal is for */
	uint64_t	orig;		/* its size when the plan was made */
	uint64_t	final;		/* its size once the plan is done */
	uint64_t	nranges;
	/*
	 * MD5 of the mbox bytes in [final, orig) before any move.  Moves only
	 * write below final, so while these bytes still match, the truncate
	 * has not happened yet and anything past orig arrived after a crash.
	 */
	unsigned char	stale[16];
};

struct jrec {
	uint64_t	dst, src, len;
};

/*
 * How much of a range the journal carries: only the bytes whose source
 * lies below the final size.  Moves write only below it and the truncate
 * comes last, so the source bytes at or above it stay in the mbox until
 * the moves are synced, guarded by the stale digest; replay reads them
 * from there.  QUIT thus writes less than twice the bytes it moves.
 */
static uint64_t
carried(uint64_t src, uint64_t len, uint64_t final)
{
	if (src >= final)
		return 0;
	return len < final - src ? len : final - src;
}

struct jtail {
	unsigned char	sum[16];
	char		magic[8];
};

#ifdef POP3D_FAULTS
/*
 * Test builds only: POP3D_FAULT="N:ACTION" makes the Nth mutating step of
 * UPDATE (write, fsync, ftruncate, rename, unlink, close; for Maildir, the
 * move to cur/) fail with EIO, ENOSPC or EINVAL (a file system that does
 * not know a flag), kills the process right before it, or stops it there
 * (SIGSTOP) and then lets the step go through when it is continued
 * (ACTION eio, enospc, einval, kill, stop).  POP3D_FAULT=count prints the
 * number of steps taken on stderr at exit.
 */
static long fault_n = -1, fault_steps;
static char fault_action[16];

static void
fault_report(void)
{
	dprintf(STDERR_FILENO, "pop3d-fault-steps %ld\n", fault_steps);
}

int
fault_check(const char *op)
{
	static int init;

	(void)op;
	if (!init) {
		const char *e = getenv("POP3D_FAULT");

		init = 1;
		if (e != NULL && strcmp(e, "count") == 0)
			atexit(fault_report);
		else if (e != NULL && sscanf(e, "%ld:%15s", &fault_n,
		    fault_action) != 2)
			fault_n = -1;
	}
	if (++fault_steps != fault_n)
		return 0;
	if (strcmp(fault_action, "kill") == 0)
		(void)raise(SIGKILL);
	if (strcmp(fault_action, "stop") == 0) {
		(void)raise(SIGSTOP);
		return 0;
	}
	errno = strcmp(fault_action, "enospc") == 0 ? ENOSPC :
	    strcmp(fault_action, "einval") == 0 ? EINVAL : EIO;
	return -1;
}

int
fault_fail(const char *point)
{
	const char *e = getenv("POP3D_FAIL");

	if (e == NULL || strcmp(e, point) != 0)
		return 0;
	errno = EIO;
	return 1;
}

void
fault_pause(const char *point)
{
	const char *e = getenv("POP3D_PAUSE");

	if (e != NULL && strcmp(e, point) == 0)
		(void)raise(SIGSTOP);
}
#endif

static int
sync_dir(const char *dir)
{
	int fd, r;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	r = FAULT("fsync") || fsync(fd) == -1 ? -1 : 0;
	if (close(fd) == -1)
		r = -1;
	return r;
}

static int
write_all(int fd, const void *p, size_t n, MD5_CTX *ctx)
{
	const unsigned char *s = p;

	if (ctx != NULL)
		MD5Update(ctx, s, n);
	while (n > 0) {
		ssize_t w;

		if (FAULT("write"))
			return -1;
		if ((w = write(fd, s, n)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
pread_all(int fd, void *p, size_t n, uint64_t off)
{
	unsigned char *d = p;

	while (n > 0) {
		ssize_t r = pread(fd, d, n, (off_t)off);

		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EIO;
			return -1;
		}
		d += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static int
pwrite_all(int fd, const void *p, size_t n, uint64_t off)
{
	const unsigned char *s = p;

	while (n > 0) {
		ssize_t w;

		if (FAULT("write"))
			return -1;
		if ((w = pwrite(fd, s, n, (off_t)off)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		s += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

/* MD5 of fd's bytes [from, to). */
static int
digest(struct maildrop *md, uint64_t from, uint64_t to,
    unsigned char out[16])
{
	unsigned char *jbuf = maildrop_buf();
	MD5_CTX ctx;

	MD5Init(&ctx);
	while (from < to) {
		size_t n = to - from < POP3D_MAILBUF ? (size_t)(to - from) :
		    POP3D_MAILBUF;

		mbox_lock_fresh(md);
		if (pread_all(md->fd, jbuf, n, from) == -1)
			return -1;
		MD5Update(&ctx, jbuf, n);
		from += n;
	}
	MD5Final(out, &ctx);
	return 0;
}

/*
 * Does the plan in jfd (already validated): writes every range from the
 * journal into the mbox, syncs, and, when truncate is set, cuts the mbox
 * to its final size, syncs, and removes the journal.
 */
static int
apply(struct maildrop *md, int jfd, const struct jhead *h, const char *jpath,
    const char *dir, int truncate)
{
	unsigned char *jbuf = maildrop_buf();
	uint64_t i, data = sizeof(*h) + h->nranges * sizeof(struct jrec);

	for (i = 0; i < h->nranges; i++) {
		struct jrec r;
		uint64_t done = 0, c;

		if (pread_all(jfd, &r, sizeof(r), sizeof(*h) + i * sizeof(r))
		    == -1)
			return -1;
		c = carried(r.src, r.len, h->final);
		while (done < r.len) {
			size_t n = r.len - done < POP3D_MAILBUF ?
			    (size_t)(r.len - done) : POP3D_MAILBUF;
			int rd;

			mbox_lock_fresh(md);
			/* The carried part from the journal, the rest from
			 * where it still is in the mbox. */
			if (done < c) {
				if (n > c - done)
					n = (size_t)(c - done);
				rd = pread_all(jfd, jbuf, n, data + done);
			} else
				rd = pread_all(md->fd, jbuf, n, r.src + done);
			if (rd == -1 ||
			    pwrite_all(md->fd, jbuf, n, r.dst + done) == -1)
				return -1;
			done += n;
		}
		data += carried(r.src, r.len, h->final);
	}
	if (FAULT("fsync") || fsync(md->fd) == -1)
		return -1;
	if (!truncate)
		return 0;
	if (FAULT("ftruncate") || ftruncate(md->fd, (off_t)h->final) == -1 ||
	    FAULT("fsync") || fsync(md->fd) == -1)
		return -1;
	if (FAULT("unlink") || unlink(jpath) == -1 || sync_dir(dir) == -1)
		return -1;
	return 0;
}

/*
 * Writes the journal for moving n ranges of the mbox (src to dst), the
 * mbox being orig bytes long and final bytes once done.  It is written
 * beside path and renamed over it, so that an older journal there stays
 * whole until the new one is.  0 when it is in place and durable; 1 when
 * it replaced an older journal but the directory sync failed (it stays);
 * -1 with errno when there is none (an older one is still there).
 */
static int
write_journal(struct maildrop *md, const char *path, const char *dir,
    const struct jrange *rg, size_t n, uint64_t orig, uint64_t final)
{
	unsigned char *jbuf = maildrop_buf();
	struct jhead h;
	struct jtail t;
	struct stat st;
	MD5_CTX ctx;
	char tmp[1200];
	size_t i;
	int fd, ok = 0, replacing;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.new", path) >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, J_MAGIC, sizeof(h.magic));
	h.dev = (uint64_t)md->id.dev;
	h.ino = (uint64_t)md->id.ino;
	h.orig = orig;
	h.final = final;
	h.nranges = n;
	if (digest(md, final, orig, h.stale) == -1)
		return -1;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
	    0600);
	if (fd == -1)
		return -1;
	MD5Init(&ctx);
	if (write_all(fd, &h, sizeof(h), &ctx) == -1)
		goto out;
	for (i = 0; i < n; i++) {
		struct jrec r = { rg[i].dst, rg[i].src, rg[i].len };

		if (write_all(fd, &r, sizeof(r), &ctx) == -1)
			goto out;
	}
	for (i = 0; i < n; i++) {
		uint64_t done = 0, c = carried(rg[i].src, rg[i].len, final);

		while (done < c) {
			size_t k = c - done < POP3D_MAILBUF ?
			    (size_t)(c - done) : POP3D_MAILBUF;

			mbox_lock_fresh(md);
			if (pread_all(md->fd, jbuf, k, rg[i].src + done) == -1 ||
			    write_all(fd, jbuf, k, &ctx) == -1)
				goto out;
			done += k;
		}
	}
	MD5Final(t.sum, &ctx);
	memcpy(t.magic, J_END, sizeof(t.magic));
	if (write_all(fd, &t, sizeof(t), NULL) == -1 ||
	    FAULT("fsync") || fsync(fd) == -1)
		goto out;
	ok = 1;
out:
	if ((FAULT("close") || close(fd) == -1) && ok)
		ok = 0;
	/* A replay's journal replaces the one it carries on (below). */
	replacing = ok && lstat(path, &st) == 0;
	if (ok && (FAULT("rename") || rename(tmp, path) == -1))
		ok = 0;
	else if (ok && sync_dir(dir) == -1) {
		/*
		 * Not durable.  A first journal goes again: nothing is done
		 * at all, as QUIT will say.  One that replaced a journal
		 * stays: the old one is gone, and either of them, whichever
		 * the directory keeps, completes the work at the next login.
		 */
		if (replacing)
			return 1;
		(void)unlink(path);
		ok = 0;
	}
	if (!ok) {
		int e = errno;

		(void)unlink(tmp);	/* an incomplete journal is never used */
		errno = e;
		return -1;
	}
	return 0;
}

/*
 * Reads and checks the journal at path.  1 and *h when it is complete and
 * for this mbox, 0 when it is incomplete or corrupt, -1 on a read error.
 */
static int
read_journal(struct maildrop *md, int fd, struct jhead *h)
{
	unsigned char *jbuf = maildrop_buf(), sum[16];
	struct stat st;
	struct jtail t;
	uint64_t body, off = 0, i, total = 0, c;
	MD5_CTX ctx;

	if (fstat(fd, &st) == -1)
		return -1;
	if ((uint64_t)st.st_size < sizeof(*h) + sizeof(t))
		return 0;
	if (pread_all(fd, h, sizeof(*h), 0) == -1)
		return -1;
	if (memcmp(h->magic, J_MAGIC, sizeof(h->magic)) != 0 ||
	    h->nranges > J_MAX_RANGES || h->final > h->orig)
		return 0;
	body = (uint64_t)st.st_size - sizeof(t);
	if (body < sizeof(*h) + h->nranges * sizeof(struct jrec))
		return 0;
	for (i = 0; i < h->nranges; i++) {
		struct jrec r;

		if (pread_all(fd, &r, sizeof(r), sizeof(*h) + i * sizeof(r))
		    == -1)
			return -1;
		if (r.len > h->final || r.dst > h->final - r.len ||
		    r.len > h->orig || r.src > h->orig - r.len ||
		    r.src <= r.dst)
			return 0;
		c = carried(r.src, r.len, h->final);
		if (c > body || total > body - c)
			return 0;	/* more than the file holds (no wrap) */
		total += c;
	}
	if (sizeof(*h) + h->nranges * sizeof(struct jrec) + total != body)
		return 0;
	MD5Init(&ctx);
	while (off < body) {
		size_t n = body - off < POP3D_MAILBUF ? (size_t)(body - off) :
		    POP3D_MAILBUF;

		mbox_lock_fresh(md);
		if (pread_all(fd, jbuf, n, off) == -1)
			return -1;
		MD5Update(&ctx, jbuf, n);
		off += n;
	}
	MD5Final(sum, &ctx);
	if (pread_all(fd, &t, sizeof(t), body) == -1)
		return -1;
	if (memcmp(t.magic, J_END, sizeof(t.magic)) != 0 ||
	    memcmp(t.sum, sum, sizeof(sum)) != 0)
		return 0;
	if (h->dev != (uint64_t)md->id.dev || h->ino != (uint64_t)md->id.ino)
		return 0;
	return 1;
}

enum md_status
journal_compact(struct maildrop *md, const struct jrange *rg, size_t n,
    uint64_t orig, uint64_t final)
{
	char path[1100], dir[1024];
	struct jhead h;
	int fd, r;

	if (maildrop_sidefile(md, "journal", path, sizeof(path), dir,
	    sizeof(dir)) == -1) {
		log_msg(LOG_ERR, "maildrop %s: path too long for a journal",
		    md->path);
		return MD_PERM;
	}
	if ((r = write_journal(md, path, dir, rg, n, orig, final)) == 1) {
		log_msg(LOG_ERR, "maildrop %s: journal %s written but its "
		    "directory not synced: %s; the next login completes it",
		    md->path, path, strerror(errno));
		return MD_TEMP;
	}
	if (r == -1) {
		int e = errno;

		log_msg(LOG_ERR, "maildrop %s: journal %s: %s; nothing deleted",
		    md->path, path, strerror(e));
		/* No place for a journal: the admin has to make one. */
		return e == EACCES || e == EPERM || e == EROFS ? MD_PERM :
		    MD_TEMP;
	}
	/* From here on the journal completes the work if we fail. */
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1 ||
	    pread_all(fd, &h, sizeof(h), 0) == -1) {
		log_msg(LOG_ERR, "maildrop %s: journal %s: %s", md->path, path,
		    strerror(errno));
		if (fd != -1)
			(void)close(fd);
		return MD_TEMP;
	}
	r = apply(md, fd, &h, path, dir, 1);
	if (r == -1)
		log_msg(LOG_ERR, "maildrop %s: compacting: %s; the journal "
		    "will complete it at the next login", md->path,
		    strerror(errno));
	(void)close(fd);
	return r == 0 ? MD_OK : MD_TEMP;
}

enum md_status
journal_recover(struct maildrop *md)
{
	char path[1100], dir[1024], tmp[1200];
	unsigned char now[16];
	struct jhead h;
	struct stat st;
	int fd, v;
	enum md_status r = MD_TEMP;

	if (maildrop_sidefile(md, "journal", path, sizeof(path), dir,
	    sizeof(dir)) == -1)
		return MD_OK;	/* none could have been written either */
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.new", path) < sizeof(tmp))
		(void)unlink(tmp);	/* a journal cut short while written */
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC))
	    == -1) {
		if (errno == ENOENT)
			return MD_OK;
		log_msg(LOG_ERR, "maildrop %s: journal %s: %s", md->path, path,
		    strerror(errno));
		return MD_TEMP;
	}
	/*
	 * Only a journal pop3d wrote, as the mail user, is read at all: a
	 * FIFO would block the login (and every delivery behind the locks;
	 * hence O_NONBLOCK), and a file of another user could be a forgery
	 * planted in a shared spool.  Such a file is left for the
	 * administrator, and the login refused: the mbox may be half-moved
	 * if a real journal was replaced.
	 */
	if (fstat(fd, &st) == -1) {
		log_msg(LOG_ERR, "maildrop %s: journal %s: %s", md->path, path,
		    strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & (S_IWGRP | S_IWOTH))) {
		log_msg(LOG_ERR, "maildrop %s: journal %s is no file this user "
		    "wrote (mode 0%o, uid %lu); left for the administrator",
		    md->path, path, (unsigned)st.st_mode,
		    (unsigned long)st.st_uid);
		goto out;
	}
	if ((v = read_journal(md, fd, &h)) == -1 || fstat(md->fd, &st) == -1) {
		log_msg(LOG_ERR, "maildrop %s: journal %s: %s", md->path, path,
		    strerror(errno));
		goto out;
	}
	if (v == 0) {
		/* Written only partly: the mbox was never touched. */
		log_msg(LOG_WARNING, "maildrop %s: discarding incomplete "
		    "journal %s", md->path, path);
		if (unlink(path) == -1 || sync_dir(dir) == -1)
			goto out;
		r = MD_OK;
		goto out;
	}
	uint64_t cur = (uint64_t)st.st_size;

	if (cur < h.final) {
		log_msg(LOG_ERR, "maildrop %s: shorter (%llu) than its journal "
		    "%s allows (%llu); left for the administrator", md->path,
		    (unsigned long long)cur, path,
		    (unsigned long long)h.final);
		goto out;
	}
	/*
	 * The bytes the moves leave alone, [final, orig), tell whether the
	 * mbox was truncated yet.  A read error tells nothing: the journal
	 * stays for the next login.
	 */
	if (cur >= h.orig && (FAIL("digest") ||
	    digest(md, h.final, h.orig, now) == -1)) {
		log_msg(LOG_ERR, "maildrop %s: reading it for journal %s: %s; "
		    "the journal is kept", md->path, path, strerror(errno));
		goto out;
	}
	if (cur >= h.orig && memcmp(now, h.stale, sizeof(now)) == 0) {
		/* Not truncated yet: redo the moves. */
		log_msg(LOG_NOTICE, "maildrop %s: replaying journal %s",
		    md->path, path);
		if (apply(md, fd, &h, path, dir, cur == h.orig) == -1) {
			log_msg(LOG_ERR, "maildrop %s: replay: %s", md->path,
			    strerror(errno));
			goto out;
		}
		if (cur > h.orig) {
			/*
			 * Mail arrived after the crash, behind the old end:
			 * it moves down to the new end, under a journal of its
			 * own that replaces this one.
			 */
			struct jrange t = { h.final, h.orig, cur - h.orig };
			uint64_t skip = mbox_line_end(md, h.final) == 2 ?
			    mbox_sep_skip(md, h.orig, cur - h.orig) : 0;

			t.src += skip;
			t.len -= skip;

			(void)close(fd);
			fd = -1;
			r = journal_compact(md, &t, 1, cur, h.final + t.len);
			goto out;
		}
	} else {
		/* Truncated already: all that is left is the journal. */
		log_msg(LOG_NOTICE, "maildrop %s: journal %s already applied",
		    md->path, path);
		if (unlink(path) == -1 || sync_dir(dir) == -1)
			goto out;
	}
	r = MD_OK;
out:
	if (fd != -1)
		(void)close(fd);
	return r;
}
