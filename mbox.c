/*
 * mbox.c: mbox maildrops behind the maildrop interface.
 *
 * A message starts at a "From " line at the start of the file or after an
 * empty line; that envelope line and the empty line before the next one are
 * the format's, not the message's (DESIGN.md).  The bytes are hostile: any
 * length of line, NUL, CR, 8-bit.  The file is scanned once at login in
 * large reads and never held whole in memory; RETR streams it.  Runs as the
 * mail user.
 *
 * Locks: flock(2) on the mbox for the whole session keeps other pop3d
 * sessions out ([IN-USE]); fcntl(2) locks, which Debian's delivery agents
 * take, are held only while scanning and during UPDATE, so delivery goes
 * on during a session.
 */
#include <sys/stat.h>
#ifdef __linux__
#include <sys/vfs.h>
#include <linux/magic.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "pop3d.h"

/*
 * What the scan puts in the table is also kept in the index between
 * sessions: a change of its rules (digest, sizes, offsets) must change
 * INDEX_MAGIC in mboxindex.c.
 */

/* The scan reads this much at a time; a longer line arrives in pieces. */
#define SCAN_BUF	POP3D_MAILBUF

struct scan {
	struct maildrop	*md;
	struct msg	*cur;		/* the message being scanned */
	struct mbox_msg	*at;		/* and where it lies */
	uint64_t	 line_off;	/* where the current line starts */
	uint64_t	 line_len;	/* its bytes so far */
	int		 envelope;	/* the line is a "From " line */
	int		 prev_empty;	/* the line before was empty */
	uint64_t	 empty_off;	/* and it started here */
	uint64_t	 empty_len;	/* with this many bytes */
	int		 in_header;
	int		 skip;		/* header left out of the UIDL */
	unsigned char	 last;		/* last byte seen of the line */
	int		 full;		/* the table is full */
	struct uidhash	 hash;		/* the UIDL digest so far */
};

/*
 * Headers that mail readers add or rewrite (DESIGN.md): left out of the
 * UIDL digest so that reading a message in mutt does not change its id.
 */
static int
volatile_header(const unsigned char *p, size_t n)
{
	static const char *const names[] = {
		"STATUS", "X-STATUS", "X-KEYWORDS", "X-UID", "CONTENT-LENGTH",
		"LINES"
	};
	const unsigned char *colon;
	size_t len, i;

	/* Most header lines start with none of these names' letters. */
	switch (p[0] | 0x20) {
	case 'c': case 'l': case 's': case 'x':
		break;
	default:
		return 0;
	}
	if ((colon = memchr(p, ':', n)) == NULL)
		return 0;
	len = (size_t)(colon - p);
	if (len >= 6 && keyword_eq((const char *)p, "X-IMAP", 6))
		return 1;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == len &&
		    keyword_eq((const char *)p, names[i], len))
			return 1;
	return 0;
}

/*
 * Ends the current message.  strip: its last line was empty and is the
 * separator before the next "From " line or the end of the file.
 */
static void
finish(struct scan *s, int strip)
{
	struct mbox_msg *at = s->at;

	if (s->cur == NULL)
		return;
	if (strip) {
		/* The empty line before "From " (or at EOF) is the format's. */
		at->len -= s->empty_len;
		s->cur->size -= 2;
	}
	if (s->in_header || at->hdrlen > at->len)
		at->hdrlen = at->len;
	uidhash_final(&s->hash, at->uid);
	s->cur = NULL;
	s->at = NULL;
}

/*
 * One piece of a line: first is set on its first piece (which holds at
 * least five bytes unless the line is shorter), lf when the piece ends the
 * line with its LF.
 */
static int
piece(struct scan *s, uint64_t off, const unsigned char *p, size_t n,
    int first, int lf)
{
	struct mbox_msg *at;
	struct msg *m;

	if (first) {
		s->line_off = off;
		s->line_len = 0;
		s->envelope = s->prev_empty && n >= 5 &&
		    memcmp(p, "From ", 5) == 0;
		if (s->envelope) {
			finish(s, 1);
			if (s->md->count >= POP3D_MAX_MSGS) {
				/* The rest stays, unseen, as new mail does. */
				s->full = 1;
				return 0;
			}
			if ((s->cur = maildrop_append(s->md)) == NULL)
				return -1;
			s->at = &s->md->loc.mbox[s->md->count - 1];
			s->at->off = off;
			s->in_header = 1;
			s->skip = 0;
			uidhash_init(&s->hash);
		} else if (s->cur == NULL) {
			errno = EINVAL;		/* does not start with "From " */
			return -1;
		} else if (s->in_header) {
			/*
			 * A continuation line belongs to the header before
			 * it; the empty line ending the header is never
			 * hashed, whatever header came last.
			 */
			if (p[0] == '\n' || (n >= 2 && p[0] == '\r' &&
			    p[1] == '\n'))
				s->skip = 1;
			else if (p[0] != ' ' && p[0] != '\t')
				s->skip = volatile_header(p, n);
		}
	}
	m = s->cur;
	at = s->at;
	s->line_len += n;
	if (s->envelope)
		uidhash_update(&s->hash, p, n);
	else {
		at->len += n;
		m->size += n;
		if (s->in_header && !s->skip)
			uidhash_update(&s->hash, p, n);
	}
	/* Remember the byte before the LF, across pieces. */
	if (!lf)
		s->last = p[n - 1];
	else if (n >= 2)
		s->last = p[n - 2];
	else if (s->line_len == 1)
		s->last = 0;
	if (!lf)
		return 0;

	/* The line is complete. */
	int cr = s->line_len >= 2 && s->last == '\r';
	int empty = s->line_len == 1 || (s->line_len == 2 && cr);

	if (s->envelope) {
		at->data = s->line_off + s->line_len;
		s->envelope = 0;
		s->prev_empty = 0;
		return 0;
	}
	/* LF, with one CR before it dropped, goes out as CRLF. */
	m->size += 1 - (uint64_t)cr;
	if (empty && s->in_header) {
		s->in_header = 0;
		at->hdrlen = s->line_off + s->line_len - at->data;
	}
	s->prev_empty = empty;
	if (empty) {
		s->empty_off = s->line_off;
		s->empty_len = s->line_len;
	}
	return 0;
}

#ifdef __SSE2__
/* Without POPCNT in the baseline the builtin is a libgcc call. */
static inline unsigned
bits64(uint64_t x)
{
#ifdef __POPCNT__
	return (unsigned)__builtin_popcountll(x);
#else
	x -= (x >> 1) & 0x5555555555555555ULL;
	x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (unsigned)((x * 0x0101010101010101ULL) >> 56);
#endif
}

/* A block's four byte comparisons as 64 bits, bit i for byte i. */
#define MASK64(m0, m1, m2, m3)						\
	((uint64_t)(unsigned)_mm_movemask_epi8(m0) |			\
	(uint64_t)(unsigned)_mm_movemask_epi8(m1) << 16 |		\
	(uint64_t)(unsigned)_mm_movemask_epi8(m2) << 32 |		\
	(uint64_t)(unsigned)_mm_movemask_epi8(m3) << 48)

static inline __m128i
load16(const unsigned char *p)
{
	return _mm_loadu_si128((const __m128i *)p);
}

/* The sum of the 16 byte counters. */
static inline uint64_t
sum_bytes(__m128i acc)
{
	__m128i sad = _mm_sad_epu8(acc, _mm_setzero_si128());

	return (uint64_t)(unsigned)_mm_cvtsi128_si32(sad) +
	    (uint64_t)(unsigned)_mm_cvtsi128_si32(_mm_srli_si128(sad, 8));
}

/*
 * bulk_body() over whole 64-byte blocks of [p, end): bit i of lf (crs) is
 * byte i of the block being LF (CR), and the previous block's masks tell
 * the bytes before bit 0.  An empty line is an LF right after an LF, or
 * after a CR that follows an LF; p[-1] is an LF ending a non-empty line.
 * Stops after the first empty line, setting *empty to its start, or else
 * after the last LF in the blocks (p when none); adds to *extra the LFs
 * minus the CRLFs before that point.
 */
static const unsigned char *
bulk_sse2(const unsigned char *p, const unsigned char *end, uint64_t *extra,
    const unsigned char **empty)
{
	const __m128i nl = _mm_set1_epi8('\n'), cr = _mm_set1_epi8('\r');
	const unsigned char *c = p, *last;
	uint64_t plf = 1ULL << 63, pcr = 0, nlf = 0, npair = 0;

	*empty = NULL;
	while ((size_t)(end - c) >= 64) {
		/* Per-byte LF counts: at most 4 a block, 63 blocks fit. */
		size_t k = (size_t)(end - c) / 64;
		const unsigned char *stop = c + 64 * (k < 63 ? k : 63);
		__m128i acc = _mm_setzero_si128();

		for (; c < stop; c += 64) {
			__m128i b0 = load16(c), b1 = load16(c + 16);
			__m128i b2 = load16(c + 32), b3 = load16(c + 48);
			__m128i l0 = _mm_cmpeq_epi8(b0, nl);
			__m128i l1 = _mm_cmpeq_epi8(b1, nl);
			__m128i l2 = _mm_cmpeq_epi8(b2, nl);
			__m128i l3 = _mm_cmpeq_epi8(b3, nl);
			__m128i r0 = _mm_cmpeq_epi8(b0, cr);
			__m128i r1 = _mm_cmpeq_epi8(b1, cr);
			__m128i r2 = _mm_cmpeq_epi8(b2, cr);
			__m128i r3 = _mm_cmpeq_epi8(b3, cr);
			uint64_t lf = MASK64(l0, l1, l2, l3), crs = 0;
			uint64_t pairs = 0, e = lf & (lf << 1 | plf >> 63);

			/* CRs are rare in mboxes: their masks only if any. */
			if (_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(r0, r1),
			    _mm_or_si128(r2, r3))) != 0)
				crs = MASK64(r0, r1, r2, r3);
			/* A CR here, or at the end of the last block. */
			if ((crs | pcr) != 0) {
				pairs = lf & (crs << 1 | pcr >> 63);
				e |= pairs & (lf << 2 | plf >> 62);
			}
			if (e != 0) {
				unsigned at = (unsigned)__builtin_ctzll(e);
				/* Bits 0 to at (all of them when at is 63). */
				uint64_t upto = (2ULL << at) - 1;
				const unsigned char *l = c + at;

				nlf += sum_bytes(acc) + bits64(lf & upto);
				if (pairs != 0)
					npair += bits64(pairs & upto);
				*extra += nlf - npair;
				*empty = l > p && l[-1] == '\r' ? l - 1 : l;
				return l + 1;
			}
			if (pairs != 0)
				npair += bits64(pairs);
			/* cmpeq gives -1 for a match. */
			acc = _mm_sub_epi8(acc, _mm_add_epi8(
			    _mm_add_epi8(l0, l1), _mm_add_epi8(l2, l3)));
			plf = lf;
			pcr = crs;
		}
		nlf += sum_bytes(acc);
	}
	*extra += nlf - npair;
	/* Once a buffer: finding the last LF here keeps the loop lean. */
	if (c == p || (last = memrchr(p, '\n', (size_t)(c - p))) == NULL)
		return p;
	return last + 1;
}
#endif

/*
 * Body lines cannot hold a message boundary until an empty line comes, so
 * they need no trip through piece(): a tight loop counts their octets (the
 * bytes, plus one for each LF, minus one for each CR before an LF) up to
 * and including the first empty line, or the last complete line in
 * [p, p + n).  Returns the bytes consumed (0: no complete line) and
 * leaves the state as piece() would.  Where there is SSE2 (all x86-64),
 * the whole 64-byte blocks go through bulk_sse2() first: lines average
 * some 50 bytes, and a memchr call per line costs more than its search.
 */
static size_t
bulk_body(struct scan *s, uint64_t off, const unsigned char *p, size_t n)
{
	const unsigned char *q = p, *end = p + n, *lf, *line = NULL;
	uint64_t extra = 0;
	int empty = 0;

#ifdef __SSE2__
	/* Whole blocks first; line set: they held the empty line. */
	q = bulk_sse2(p, end, &extra, &line);
	empty = line != NULL;
#endif
	while (!empty && q < end &&
	    (lf = memchr(q, '\n', (size_t)(end - q))) != NULL) {
		size_t len = (size_t)(lf - q) + 1;
		int cr = len >= 2 && lf[-1] == '\r';

		extra += 1 - (uint64_t)cr;
		line = q;
		q = lf + 1;
		if (len == 1 || (len == 2 && cr))
			break;	/* empty: a "From " may follow */
	}
	if (q == p)
		return 0;
	if (line == NULL) {
		/* Only the blocks ended lines: find the last one's start. */
		const unsigned char *r = memrchr(p, '\n', (size_t)(q - 1 - p));

		line = r != NULL ? r + 1 : p;
	}
	s->at->len += (uint64_t)(q - p);
	s->cur->size += (uint64_t)(q - p) + extra;
	s->line_off = off + (uint64_t)(line - p);
	s->line_len = (uint64_t)(q - line);
	s->prev_empty = s->line_len == 1 || (s->line_len == 2 &&
	    line[0] == '\r');
	if (s->prev_empty) {
		s->empty_off = s->line_off;
		s->empty_len = s->line_len;
	}
	return (size_t)(q - p);
}

/* Identical copies have the same digest (maildrop_dedup). */
static int
uid_cmp(const struct maildrop *md, size_t i, size_t j)
{
	return memcmp(md->loc.mbox[i].uid, md->loc.mbox[j].uid,
	    sizeof(md->loc.mbox[i].uid));
}

/*
 * Scans fd's bytes [start, size), start being that of a "From " line (or of
 * the file), through buf (SCAN_BUF bytes), appending the messages to md.
 * A line's first piece is its first min(length, SCAN_BUF) bytes wherever
 * the range starts, so rescanning one message's envelope and header gives
 * the digest that the scan of the whole file gave (see changed()).
 */
static int
scan_range(struct maildrop *md, int fd, uint64_t start, uint64_t size,
    unsigned char *buf)
{
	struct scan s;
	uint64_t pos = start;	/* file offset of buf[0] */
	size_t have = 0;
	int in_line = 0;

	memset(&s, 0, sizeof(s));
	s.md = md;
	md->loc_size = sizeof(struct mbox_msg);
	s.prev_empty = 1;	/* the start of the file counts as one */
	md->end = size;
	if (size <= start)
		return 0;
	while (pos + have < size && !s.full) {
		size_t want = SCAN_BUF - have;
		ssize_t n;

		if (want > size - pos - have)
			want = (size_t)(size - pos - have);
		n = pread(fd, buf + have, want, (off_t)(pos + have));
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			errno = EIO;	/* shrank under the lock: not ours */
			return -1;
		}
		have += (size_t)n;

		int eof = pos + have == size;
		size_t p = 0;

		while (p < have && !s.full) {
			unsigned char *lf;

			/*
			 * Body lines in bulk, but never the line right after
			 * an empty one: that may be a "From ".
			 */
			if (!in_line && s.cur != NULL && !s.in_header &&
			    !s.envelope && !s.prev_empty) {
				size_t used = bulk_body(&s, pos + p, buf + p,
				    have - p);

				if (used > 0) {
					p += used;
					continue;
				}
			}
			lf = memchr(buf + p, '\n', have - p);
			if (lf != NULL) {
				size_t len = (size_t)(lf - (buf + p)) + 1;

				if (piece(&s, pos + p, buf + p, len, !in_line,
				    1) == -1)
					return -1;
				in_line = 0;
				p += len;
			} else if (eof || in_line || (p == 0 &&
			    have == SCAN_BUF)) {
				/* A line's tail, or a line over SCAN_BUF. */
				if (piece(&s, pos + p, buf + p, have - p,
				    !in_line, 0) == -1)
					return -1;
				in_line = 1;
				p = have;
			} else
				break;	/* read the rest of this line first */
		}
		if (s.full) {
			md->end = s.line_off;
			break;
		}
		memmove(buf, buf + p, have - p);
		pos += p;
		have -= p;
	}
	if (in_line && s.cur != NULL && !s.envelope) {
		/* The last line had no newline: it goes out with CRLF. */
		s.cur->size += 2 - (s.line_len >= 1 && s.last == '\r');
		s.prev_empty = 0;
	}
	if (in_line && s.envelope && !s.full) {
		/*
		 * A "From " line with no newline: a message with no bytes
		 * (unless it is the one past the cap, which was not taken).
		 */
		s.at->data = size;
		s.envelope = 0;
		s.prev_empty = 0;
	}
	finish(&s, s.prev_empty);
	return maildrop_dedup(md, uid_cmp);
}

int
mbox_scan(struct maildrop *md, int fd, uint64_t size)
{
	md->end = size;
	if (size == 0)
		return 0;
	return scan_range(md, fd, 0, size, maildrop_buf());
}

/* A dotlock older than this was left by a crash (as liblockfile holds). */
#define DOTLOCK_STALE	300
/* How often a dotlock held during long work is touched (mbox_lock_fresh). */
#define DOTLOCK_REFRESH	60

static int
same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/*
 * Whether two stats are of one file, untouched in between: a file made
 * anew has another inode or, when the number was reused, another ctime
 * (as does one written, renamed or chmod'ed since).
 */
static int
same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
	    same_time(&a->st_ctim, &b->st_ctim);
}

/*
 * A dotlock is stale when it is older than DOTLOCK_STALE, or when the
 * process whose pid it holds (liblockfile's convention) is gone, so that a
 * session killed in UPDATE does not lock its user out for minutes.  *seen
 * gets the identity of the file judged.
 */
static int
dotlock_stale(const char *lock, struct stat *seen)
{
	struct stat st;
	char buf[32], *end;
	ssize_t n;
	long pid;
	int fd;

	if (lstat(lock, seen) == -1 || !S_ISREG(seen->st_mode))
		return 0;
	if (time(NULL) - seen->st_mtime > DOTLOCK_STALE)
		return 1;	/* even when we may not read it */
	if ((fd = open(lock, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC)) == -1)
		return 0;
	n = fstat(fd, &st) == 0 && same_file(&st, seen) ?
	    read(fd, buf, sizeof(buf) - 1) : -1;
	(void)close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/*
	 * A number beyond pid_t is no pid: cast, it would name -1 (every
	 * process we may signal) or a process group, whose absence says
	 * nothing of the lock's owner.
	 */
	errno = 0;
	pid = strtol(buf, &end, 10);
	if (end == buf || errno == ERANGE || pid <= 0 || pid > INT_MAX)
		return 0;
	return kill((pid_t)pid, 0) == -1 && errno == ESRCH;
}

/*
 * Removes a stale dotlock, but only the file that was judged: in the time
 * it took to judge it, another agent may have removed it too and made its
 * own, which must stay.  (A new file has a new inode or, when the number
 * is reused, a new ctime.)  What is left is the window between lstat and
 * unlink, which no unlink-based dotlock scheme can close.
 */
static void
dotlock_break(struct maildrop *md, const char *lock)
{
	struct stat seen, now;

	if (!dotlock_stale(lock, &seen))
		return;
	PAUSE("dotlock-stale");
	if (lstat(lock, &now) == -1 || !same_file(&now, &seen))
		return;
	if (unlink(lock) == 0)
		log_msg(LOG_WARNING, "maildrop %s: removed stale %s",
		    md->path, lock);
}

/*
 * Creates <mbox>.lock the way that is safe even on NFS: a unique file,
 * link(2)ed to the lock name, and the link count tells whether we won.
 * 1 taken, 0 busy, -1 cannot (the directory does not let us: then we go
 * on without, as delivery agents do; for any other reason, a full disk
 * say, too, but logged).
 */
static int
dotlock_take(struct maildrop *md)
{
	char lock[1100], tmp[1200], host[64];
	struct stat st;
	int fd, won, err = 0;

	if ((size_t)snprintf(lock, sizeof(lock), "%s.lock", md->path) >=
	    sizeof(lock))
		return -1;
	if (gethostname(host, sizeof(host)) == -1)
		strlcpy(host, "localhost", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.%ld.%s", lock,
	    (long)getpid(), host) >= sizeof(tmp))
		return -1;
	PAUSE("dotlock-take");
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    0644);
	/* A name of ours that exists was left by a process of our pid. */
	if (fd == -1 && errno == EEXIST && unlink(tmp) == 0)
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_CLOEXEC, 0644);
	if (fd == -1) {
		if (errno != EACCES && errno != EPERM && errno != EROFS)
			log_msg(LOG_WARNING, "maildrop %s: no dotlock: %s: %s",
			    md->path, tmp, strerror(errno));
		return -1;
	}
	if (dprintf(fd, "%ld\n", (long)getpid()) < 0) {
		log_msg(LOG_WARNING, "maildrop %s: no dotlock: writing %s: "
		    "%s", md->path, tmp, strerror(errno));
		(void)close(fd);
		(void)unlink(tmp);
		return -1;
	}
	(void)close(fd);	/* written to the page cache: what link needs */
	/* NFS may report a failed link that succeeded: the count decides. */
	if (link(tmp, lock) == -1)
		err = errno;
	won = stat(tmp, &st) == 0 && st.st_nlink == 2;
	(void)unlink(tmp);
	/* Which file is ours, for dotlock_drop (the unlink set its ctime). */
	if (won && lstat(lock, &md->dotlock_id) == 0 &&
	    md->dotlock_id.st_ino == st.st_ino)
		return 1;
	if (won) {
		/* Taken from us already: a very slow link, or a breaker. */
		log_msg(LOG_WARNING, "maildrop %s: %s replaced as it was made",
		    md->path, lock);
		return 0;
	}
	/*
	 * EEXIST is a lock held, ENOENT our file removed meanwhile: try
	 * again.  Anything else is a dotlock we cannot make, as above: a
	 * file system without hard links (EPERM) used to be taken for a
	 * lock held, and every login waited POP3D_LOCK_WAIT and failed.
	 */
	if (err != 0 && err != EEXIST && err != ENOENT) {
		log_msg(LOG_WARNING, "maildrop %s: no dotlock: linking %s: %s",
		    md->path, lock, strerror(err));
		return -1;
	}
	dotlock_break(md, lock);
	return 0;
}

/*
 * Removes our dotlock, but only while it is the file we made: an agent
 * that judged it stale (older than its own limit during a long UPDATE, or
 * our pid unseen from another pid namespace) may have broken it and made
 * its own, which must stay for as long as that agent writes.  The window
 * between lstat and unlink is dotlock_break's.
 */
static void
dotlock_drop(struct maildrop *md)
{
	char lock[1100];
	struct stat now;

	if (!md->dotlock)
		return;
	md->dotlock = 0;
	if ((size_t)snprintf(lock, sizeof(lock), "%s.lock", md->path) >=
	    sizeof(lock))
		return;
	if (lstat(lock, &now) == -1 || !same_file(&now, &md->dotlock_id)) {
		log_msg(LOG_WARNING, "maildrop %s: %s was taken from us; "
		    "left to its new owner", md->path, lock);
		return;
	}
	if (unlink(lock) == -1)
		log_msg(LOG_ERR, "maildrop %s: removing %s: %s", md->path,
		    lock, strerror(errno));
}

static time_t
mono_secs(void)
{
	return (time_t)(mono_ms() / 1000);
}

/*
 * The fault-injection build lets the tests shorten the waits
 * (POP3D_LOCK_WAIT_SECS, POP3D_DOTLOCK_REFRESH_SECS); the release binary
 * has the constants only.
 */
static time_t
knob(const char *name, time_t dflt)
{
#ifdef POP3D_FAULTS
	const char *e = getenv(name);

	if (e != NULL && *e != '\0')
		return (time_t)atol(e);
#else
	(void)name;
#endif
	return dflt;
}

/*
 * Keeps our dotlock fresh during long work under it: writing the journal
 * and compacting a large mbox on a slow disk, or replaying a journal.  An
 * agent takes a dotlock older than its stale limit (liblockfile: 300 s)
 * for one a crash left and breaks it; one that locks with the dotlock
 * alone would then append while we rewrite.  Called per chunk of that
 * work: it reads the clock and, every DOTLOCK_REFRESH seconds, sets the
 * file's times to now (liblockfile's lockfile_touch), while the name
 * still holds our file.  Our identity of it moves to the new ctime; when
 * the name changed hands between the look and the touch, the touch went
 * to the new owner's lock (harmless), whose inode is not ours, and
 * dotlock_drop leaves it.
 */
void
mbox_lock_fresh(struct maildrop *md)
{
	char lock[1100];
	struct stat st;
	time_t now;

	if (!md->dotlock || (now = mono_secs()) - md->dotlock_touched <
	    knob("POP3D_DOTLOCK_REFRESH_SECS", DOTLOCK_REFRESH))
		return;
	md->dotlock_touched = now;
	if ((size_t)snprintf(lock, sizeof(lock), "%s.lock", md->path) >=
	    sizeof(lock) || lstat(lock, &st) == -1 ||
	    !same_file(&st, &md->dotlock_id))
		return;		/* taken from us: dotlock_drop says so */
	if (utimensat(AT_FDCWD, lock, NULL, AT_SYMLINK_NOFOLLOW) == -1) {
		log_msg(LOG_WARNING, "maildrop %s: refreshing %s: %s",
		    md->path, lock, strerror(errno));
		return;
	}
	if (lstat(lock, &st) == 0 && st.st_dev == md->dotlock_id.st_dev &&
	    st.st_ino == md->dotlock_id.st_ino)
		md->dotlock_id = st;
	PAUSE("dotlock-fresh");
}

/*
 * Takes the locks of Debian's delivery agents, in their order (postfix:
 * fcntl, then dotlock), waiting at most POP3D_LOCK_WAIT seconds.  When the
 * dotlock is busy the fcntl lock is given back before the next try, so
 * that a program that locks the other way round cannot deadlock with us.
 */
static int
delivery_lock(struct maildrop *md, short type)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET };
	struct timespec nap = { 0, 100 * 1000 * 1000 };
	/* In milliseconds: whole seconds would cut up to one off the wait. */
	int64_t end = mono_ms() + (int64_t)knob("POP3D_LOCK_WAIT_SECS",
	    POP3D_LOCK_WAIT) * 1000;

	/* The bound is the clock's: a slow attempt (NFS) counts in full. */
	for (;; nanosleep(&nap, NULL)) {
		if (fcntl(md->fd, F_SETLK, &fl) == -1) {
			if (errno != EAGAIN && errno != EACCES &&
			    errno != EINTR)
				return -1;
		} else {
			switch (dotlock_take(md)) {
			case 1:
				md->dotlock = 1;
				md->dotlock_touched = mono_secs();
				return 0;
			case -1:
				return 0;	/* no dotlock possible here */
			}
			fl.l_type = F_UNLCK;
			(void)fcntl(md->fd, F_SETLK, &fl);
			fl.l_type = type;
		}
		if (mono_ms() >= end) {
			errno = EWOULDBLOCK;
			return -1;
		}
	}
}

static void
delivery_unlock(struct maildrop *md)
{
	struct flock fl = { .l_type = F_UNLCK, .l_whence = SEEK_SET };

	dotlock_drop(md);
	(void)fcntl(md->fd, F_SETLK, &fl);
}

/*
 * Whether flock(2) on fd's file is a byte-range lock in disguise: on a
 * Linux NFS mount it is sent to the server as a lock of the whole file
 * (flock(2), nfs(5)), which conflicts there with every fcntl lock of
 * another owner, our own included.  The fault-injection build takes
 * POP3D_FS_NFS for such a mount, so that the tests reach the other path.
 */
static int
flock_is_fcntl(int fd)
{
#ifdef __linux__
	struct statfs sfs;

#ifdef POP3D_FAULTS
	if (getenv("POP3D_FS_NFS") != NULL)
		return 1;
#endif
	return fstatfs(fd, &sfs) == 0 && sfs.f_type == NFS_SUPER_MAGIC;
#else
	(void)fd;
	return 0;
#endif
}

/*
 * The session lock ([IN-USE], RFC 2449 §8.1.1): flock(2) of the mbox,
 * which delivery agents ignore (they take fcntl and the dotlock), so that
 * they deliver during the session.  On NFS, where a flock of the mbox
 * would be a byte-range lock of it (above), it would conflict with our own
 * fcntl lock at the scan, so that every login waited POP3D_LOCK_WAIT and
 * failed, and it would hold every delivery off for the whole session.
 * There the session lock is a flock of a file of its own beside the
 * mbox, .NAME.pop3d-session, left in place.  Where that file cannot be
 * made, the session goes on without a lock, logged: a second session is
 * then not refused at login, but whichever QUITs second finds the mbox
 * changed and deletes nothing ([SYS/TEMP]).
 */
static enum md_status
session_lock(struct maildrop *md)
{
	char path[1100], dir[1024];
	struct stat st;
	int fd = md->fd;

	if (flock_is_fcntl(md->fd)) {
		if (maildrop_sidefile(md, "session", path, sizeof(path), dir,
		    sizeof(dir)) == -1) {
			errno = ENAMETOOLONG;
			goto nolock;
		}
		md->lockfd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW |
		    O_NOCTTY | O_NONBLOCK | O_CLOEXEC, 0600);
		if (md->lockfd == -1)
			goto nolock;
		/*
		 * Only our own file: in a shared spool another user could
		 * make the name first and hold its lock, and every login of
		 * ours would be [IN-USE].
		 */
		if (fstat(md->lockfd, &st) == -1 || !S_ISREG(st.st_mode) ||
		    st.st_uid != geteuid()) {
			log_msg(LOG_WARNING, "maildrop %s: %s is no file of "
			    "ours; going on without a session lock", md->path,
			    path);
			(void)close(md->lockfd);
			md->lockfd = -1;
			return MD_OK;
		}
		fd = md->lockfd;
	}
	return maildrop_flock(md, fd);
nolock:
	log_msg(LOG_WARNING, "maildrop %s: on NFS, and no session lock file "
	    "beside it: %s; going on without", md->path, strerror(errno));
	return MD_OK;
}

/*
 * Is message i still the one the scan found at its offset: its envelope
 * and header, rescanned, give the same digest?  1 yes, 0 no or unreadable.
 */
static int
same_message(struct maildrop *md, size_t i, unsigned char *buf)
{
	const struct mbox_msg *m = &md->loc.mbox[i];
	struct maildrop tmp;
	int same;

	memset(&tmp, 0, sizeof(tmp));
	tmp.fd = -1;
	same = scan_range(&tmp, md->fd, m->off, m->data + m->hdrlen, buf) ==
	    0 && tmp.count == 1 && tmp.loc.mbox[0].data == m->data &&
	    memcmp(tmp.loc.mbox[0].uid, m->uid, sizeof(m->uid)) == 0;
	maildrop_free_table(&tmp);
	return same;
}

int
mbox_line_end(struct maildrop *md, uint64_t off)
{
	unsigned char b[3];

	if (off == 0)
		return 2;
	if (off < 3 || pread(md->fd, b, 3, (off_t)off - 3) != 3 ||
	    b[2] != '\n')
		return 0;
	return b[1] == '\n' || (b[1] == '\r' && b[0] == '\n') ? 2 : 1;
}

size_t
mbox_sep_skip(struct maildrop *md, uint64_t src, uint64_t len)
{
	unsigned char b[7];
	ssize_t n = pread(md->fd, b, len < 7 ? (size_t)len : 7, (off_t)src);

	if (n >= 6 && memcmp(b, "\nFrom ", 6) == 0)
		return 1;
	if (n >= 7 && memcmp(b, "\r\nFrom ", 7) == 0)
		return 2;
	return 0;
}

/* Whether a "From " line starts at off, at the start of a line. */
static int
envelope_at(struct maildrop *md, uint64_t off)
{
	unsigned char b[6];

	if (off == 0)
		return pread(md->fd, b + 1, 5, 0) == 5 &&
		    memcmp(b + 1, "From ", 5) == 0;
	return pread(md->fd, b, 6, (off_t)off - 1) == 6 &&
	    memcmp(b, "\nFrom ", 6) == 0;
}

int mbox_settle = 1;

/*
 * Whether st is of a file last written over mbox_settle seconds ago: any
 * later write then shows as a new mtime and ctime even on coarse
 * file-system clocks.  The clock is read with clock_gettime, not time(3):
 * Linux's vDSO time() is its coarse clock, up to a tick behind the
 * fine-grained file times of Linux 6.13 and later, so a file written in
 * the tick after a second began looked written in the future.
 */
static int
file_settled(const struct stat *st)
{
	struct timespec now;

	if (clock_gettime(CLOCK_REALTIME, &now) == -1)
		return 0;
	return now.tv_sec - st->st_mtime > mbox_settle &&
	    now.tv_sec - st->st_ctime > mbox_settle;
}

/*
 * Whether what lies behind the old end of the file that the index
 * describes was appended the way delivery agents append, so that scanning
 * from the first new "From " line gives what a scan of the whole file
 * would: either the old part ended with an empty line and the new part
 * starts with "From ", or the old part ended with a newline but no empty
 * line and the new part starts with an empty line and "From " (the
 * separator written before the message instead of after).  And the last
 * indexed message must still be where it was and the same message (the
 * digest of envelope and header).  A rewrite ahead of it that kept every
 * size (messages of equal size swapped for others) passes; the session
 * then treats the table like one whose file changed after the scan: RETR
 * and UPDATE check each message they use (changed()).  Returns where the
 * new part's first message starts, or 0.
 */
static uint64_t
appended(struct maildrop *md, uint64_t old, uint64_t size)
{
	const struct mbox_msg *last = &md->loc.mbox[md->count - 1];
	uint64_t start, skip;

	if (old < 3 || size - old < 7)
		return 0;
	switch (mbox_line_end(md, old)) {
	case 2:
		if (!envelope_at(md, old))
			return 0;
		start = old;
		break;
	case 1:
		if ((skip = mbox_sep_skip(md, old, size - old)) == 0)
			return 0;
		start = old + skip;
		break;
	default:
		return 0;
	}
	return envelope_at(md, last->off) &&
	    same_message(md, md->count - 1, maildrop_buf()) ? start : 0;
}

enum table_source { SCANNED, INDEXED, APPENDED };

/*
 * Builds the table of the write-locked mbox, whose state is st: from the
 * index when the file is still exactly as the index says (device, inode,
 * size, mtime and ctime to the nanosecond: any write since changes the
 * ctime, as the index is only written for a file settled over a second),
 * from the index and a scan of the rest when mail was only appended, else
 * by a scan of all of it.  *whole: the table is a scan of all the file, or
 * an index of one; not after an index+scan, whose front was only checked
 * at its last message, nor from an index saved by such a session.  MD_OK,
 * or the status for the client (logged).
 */
static enum md_status
build_table(struct maildrop *md, const struct stat *st,
    enum table_source *src, int *whole)
{
	struct mbox_index ix;
	uint64_t size = (uint64_t)st->st_size, start = 0;
	int r;

	*src = SCANNED;
	*whole = 1;
	if (size > 0 && mbox_index_load(md, &ix) == 0) {
		if (ix.size == size && same_time(&ix.mtime, &st->st_mtim) &&
		    same_time(&ix.ctime, &st->st_ctim)) {
			*src = INDEXED;
			*whole = ix.whole;
			return MD_OK;
		}
		if (ix.size < size &&
		    (start = appended(md, ix.size, size)) > 0) {
			*src = APPENDED;
			*whole = 0;
		} else
			maildrop_free_table(md);
	}
	if (*src == APPENDED)
		r = scan_range(md, md->fd, start, size, maildrop_buf());
	else
		r = mbox_scan(md, md->fd, size);
	if (r == -1) {
		log_msg(LOG_ERR, "maildrop %s: %s", md->path, errno == EINVAL ?
		    "not an mbox (does not start with \"From \")" :
		    strerror(errno));
		return errno == EINVAL ? MD_PERM : MD_TEMP;
	}
	return MD_OK;
}

static enum md_status
mbox_open(struct maildrop *md)
{
	struct stat st;
	enum md_status r = MD_TEMP;
	enum table_source src = SCANNED;
	ssize_t n;
	int whole = 1, settled = 0;

	st.st_size = 0;
	md->fd = open(md->path, O_RDWR | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC |
	    O_NONBLOCK);
	if (md->fd == -1) {
		if (errno == ENOENT)
			return MD_OK;	/* no mbox yet: an empty maildrop */
		if (errno == EISDIR)
			log_msg(LOG_ERR, "maildrop %s: a directory, but no "
			    "Maildir (it needs cur/, new/ and tmp/)", md->path);
		else
			log_msg(LOG_ERR, "maildrop %s: open: %s", md->path,
			    strerror(errno));
		return errno == ELOOP || errno == EACCES || errno == EISDIR ||
		    errno == EPERM || errno == ENOTDIR ? MD_PERM : MD_TEMP;
	}
	if (fstat(md->fd, &st) == -1) {
		log_msg(LOG_ERR, "maildrop %s: fstat: %s", md->path,
		    strerror(errno));
		return MD_TEMP;
	}
	if (!S_ISREG(st.st_mode)) {
		log_msg(LOG_ERR, "maildrop %s: not a regular file", md->path);
		return MD_PERM;
	}
	md->id.dev = st.st_dev;
	md->id.ino = st.st_ino;
	if ((r = session_lock(md)) != MD_OK)
		return r;
	/* A write lock: a journal left by a crash may have to be replayed. */
	if (delivery_lock(md, F_WRLCK) == -1) {
		log_msg(LOG_ERR, "maildrop %s: delivery lock: %s", md->path,
		    strerror(errno));
		return MD_TEMP;
	}
	r = journal_recover(md);
	/* Under the delivery lock the size is a message boundary. */
	if (r == MD_OK && fstat(md->fd, &st) == -1) {
		log_msg(LOG_ERR, "maildrop %s: fstat: %s", md->path,
		    strerror(errno));
		r = MD_TEMP;
	}
	if (r == MD_OK)
		r = build_table(md, &st, &src, &whole);
	/* The bytes before the table's end, for end_kept(). */
	md->taillen = md->end < sizeof(md->tail) ? (size_t)md->end :
	    sizeof(md->tail);
	if (r == MD_OK && (n = pread(md->fd, md->tail, md->taillen,
	    (off_t)(md->end - md->taillen))) != (ssize_t)md->taillen) {
		log_msg(LOG_ERR, "maildrop %s: read at %llu: %s", md->path,
		    (unsigned long long)(md->end - md->taillen),
		    n == -1 ? strerror(errno) : "file shrank");
		r = MD_TEMP;
	}
	if (r == MD_OK) {
		/*
		 * What the file looked like when scanned, for changed()'s
		 * fast path.  Only a file last written over a second ago
		 * qualifies (file_settled()).  A table partly from an
		 * index whose file changed since never does, nor one from
		 * an index saved with such a table (!whole): its front was
		 * never checked against the file.
		 */
		md->seen.size = (uint64_t)st.st_size;
		md->seen.mtime = st.st_mtim;
		md->seen.ctime = st.st_ctim;
		settled = file_settled(&st);
		md->seen.settled = settled && whole;
		md->seen.indexed = src != SCANNED;
		md->source = src == INDEXED ? "index" : src == APPENDED ?
		    "index+scan" : "scan";
	}
	delivery_unlock(md);
	if (r == MD_OK && md->end < (uint64_t)st.st_size)
		log_msg(LOG_WARNING, "maildrop %s: over %d messages, the rest "
		    "is not shown", md->path, POP3D_MAX_MSGS);
	/* For the next session; the delivery agents need not wait for it. */
	if (r == MD_OK && src != INDEXED && settled)
		mbox_index_save(md, &st, whole);
	return r;
}

/*
 * Streams stored bytes [off, off + len) through the writer, until the
 * writer fails (the client is gone: the rest would be read for nothing).
 */
static enum md_status
stream(struct maildrop *md, struct io *io, uint64_t off, uint64_t len,
    long long *lines)
{
	unsigned char *buf = maildrop_buf();

	while (len > 0 && io->err == 0) {
		size_t want = len < POP3D_MAILBUF ? (size_t)len :
		    POP3D_MAILBUF;
		ssize_t n = pread(md->fd, buf, want, (off_t)off);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_msg(LOG_ERR, "maildrop %s: read at %llu: %s",
			    md->path, (unsigned long long)off,
			    n == 0 ? "file shrank" : strerror(errno));
			return MD_TEMP;
		}
		size_t used = io_body_write(io, buf, (size_t)n, lines);

		if (lines != NULL && *lines == 0)
			break;
		off += used;
		len -= used;
	}
	return MD_OK;
}

/*
 * Does the table's last message still end at md->end?  No "From " line
 * marks that end: a reader that shortened the message (mutt dropping its
 * "Status: RO" to mark it unread) with a delivery behind would put the new
 * mail's first bytes in its range, for RETR to send and UPDATE to cut off
 * with it, the rest of the new mail joining the message before (found in
 * review).  The bytes before md->end must be those that were there when
 * the table was made (mbox_open keeps them): appending leaves them alone,
 * whatever it appends, while a shift puts other bytes there.  What lies
 * behind is not judged: it stays, mail or not.
 */
static int
end_kept(struct maildrop *md)
{
	unsigned char b[sizeof(md->tail)];

	return md->taillen == 0 || (pread(md->fd, b, md->taillen,
	    (off_t)(md->end - md->taillen)) == (ssize_t)md->taillen &&
	    memcmp(b, md->tail, md->taillen) == 0);
}

/*
 * Was the mbox changed under us other than by appending (a mail reader
 * expunged or rewrote it)?  Then offsets from the scan are stale.  Checks
 * that such a rewrite trips: with path set, the path still names the file
 * we opened (not one renamed over it, nor none: UPDATE must act on the
 * file that readers and delivery see; RETR reads through our descriptor,
 * whose bytes stay the scanned ones, and spares the lookup); the file is
 * no shorter than the part the table covers, each message in
 * [first, last] has its "From " line where
 * it was, at the start of a line, and those whose flags have bits of mask
 * (all when mask is 0) are the same messages: an expunge can leave a
 * "From " line at every old offset (equal-sized messages, the same size
 * of new mail behind).  last == md->count stands for the end of the table,
 * checked (end_kept()) when the last message is one of those.  -1
 * (logged) when it changed or cannot be read.
 */
static int
changed(struct maildrop *md, size_t first, size_t last, uint32_t mask,
    int path)
{
	struct stat st;
	size_t i;

	if (path && (lstat(md->path, &st) == -1 ||
	    st.st_dev != md->id.dev || st.st_ino != md->id.ino))
		goto stale;
	if (fstat(md->fd, &st) == -1 || st.st_ino != md->id.ino ||
	    (uint64_t)st.st_size < md->end)
		goto stale;
	/* A write after this fstat shows to mbox_send's second look. */
	md->checked.size = (uint64_t)st.st_size;
	md->checked.mtime = st.st_mtim;
	md->checked.ctime = st.st_ctim;
	md->checked.settled = file_settled(&st);
	/*
	 * Untouched since the scan (same size, mtime and ctime, and the
	 * scan saw a settled file): no byte can have moved, and re-reading
	 * each message for its digest would double the cost of RETR.
	 */
	if (md->seen.settled && !(path && md->seen.indexed) &&
	    (uint64_t)st.st_size == md->seen.size &&
	    same_time(&st.st_mtim, &md->seen.mtime) &&
	    same_time(&st.st_ctim, &md->seen.ctime))
		return 0;
	for (i = first; i <= last && i <= md->count; i++) {
		if (i == md->count) {
			if ((mask == 0 || (md->msgs[i - 1].flags & mask)) &&
			    !end_kept(md))
				goto stale;
			break;
		}
		mbox_lock_fresh(md);
		if (!envelope_at(md, md->loc.mbox[i].off))
			goto stale;
		if (mask != 0 && !(md->msgs[i].flags & mask))
			continue;
		if (!same_message(md, i, maildrop_buf()))
			goto stale;
	}
	return 0;
stale:
	log_msg(LOG_ERR, "maildrop %s: changed during the session by another "
	    "program (not by appending); refusing to use stale offsets",
	    md->path);
	mbox_index_drop(md);	/* the next session scans it afresh */
	return -1;
}

static enum md_status
mbox_check(struct maildrop *md, size_t i, long long lines)
{
	(void)lines;
	/* The message and the one behind it (whose "From " ends it). */
	return changed(md, i, i + 1, 0, 0) == -1 ? MD_TEMP : MD_OK;
}

/*
 * RETR and TOP of message i, after check.  RETR holds no delivery lock,
 * so a mail reader may expunge or rewrite the mbox while a long message
 * is on its way: the rest of it then comes from offsets that hold other
 * bytes, and the client would keep a whole-looking copy of the wrong
 * bytes under the message's UIDL (found in review).  So before the
 * final "." the file gets a second look: when it is as check found it
 * (size, mtime, ctime, and settled then, so that a coarse clock cannot
 * hide a write) nothing was written; else changed() decides.  A change
 * ends the session without the ".", the one way to tell the client that
 * what it got is not the message (RFC 1939 has no abort).
 */
static enum md_status
mbox_send(struct maildrop *md, struct io *io, size_t i, long long lines)
{
	const struct mbox_msg *m = &md->loc.mbox[i];
	struct stat st;
	enum md_status r;

	io_body_begin(io);
	if (lines < 0)
		r = stream(md, io, m->data, m->len, NULL);
	else if ((r = stream(md, io, m->data, m->hdrlen, NULL)) == MD_OK)
		r = stream(md, io, m->data + m->hdrlen, m->len - m->hdrlen,
		    &lines);
	/* Written since check looked?  Then the checks again. */
	if (r == MD_OK && (!md->checked.settled ||
	    fstat(md->fd, &st) == -1 ||
	    (uint64_t)st.st_size != md->checked.size ||
	    !same_time(&st.st_mtim, &md->checked.mtime) ||
	    !same_time(&st.st_ctim, &md->checked.ctime)) &&
	    changed(md, i, i + 1, 0, 0) == -1)
		r = MD_TEMP;
	if (r == MD_OK)
		io_body_end(io);
	return r;
}


/*
 * RFC 1939 §6: removes the deleted messages.  The part of the file behind
 * the first deleted message moves down in place (the inode, owner and mode
 * stay; a delivery agent's open descriptor stays valid) through a redo
 * journal, and every byte behind what the table covers (mail delivered
 * during the session) is kept.  Deleting only trailing messages, with no
 * mail behind them, is a single truncate and needs no journal.
 */
static enum md_status
mbox_update(struct maildrop *md)
{
	struct stat st;
	struct jrange *rg = NULL;
	enum md_status r = MD_TEMP;
	uint64_t w, now;
	size_t i, j, first, n = 0;

	for (first = 0; first < md->count; first++)
		if (md->msgs[first].flags & MSG_DELETED)
			break;
	if (first == md->count)
		return MD_OK;
	if (delivery_lock(md, F_WRLCK) == -1) {
		log_msg(LOG_ERR, "maildrop %s: delivery lock: %s", md->path,
		    strerror(errno));
		return MD_TEMP;
	}
	/* Deleting is safe when what goes is what the client saw. */
	if (changed(md, 0, md->count, MSG_DELETED, 1) == -1)
		goto out;
	if (fstat(md->fd, &st) == -1) {
		log_msg(LOG_ERR, "maildrop %s: fstat: %s", md->path,
		    strerror(errno));
		goto out;
	}
	now = (uint64_t)st.st_size;
	/* The plan: runs of kept messages move down, each in one go. */
	if ((rg = reallocarray(NULL, md->count - first + 1, sizeof(*rg))) ==
	    NULL) {
		log_msg(LOG_ERR, "maildrop %s: %s", md->path, strerror(errno));
		goto out;
	}
	w = md->loc.mbox[first].off;
	for (i = first + 1; i < md->count; i = j + 1) {
		j = i;
		if (md->msgs[i].flags & MSG_DELETED)
			continue;
		while (j + 1 < md->count &&
		    !(md->msgs[j + 1].flags & MSG_DELETED))
			j++;
		rg[n].dst = w;
		rg[n].src = md->loc.mbox[i].off;
		rg[n].len = (j + 1 < md->count ? md->loc.mbox[j + 1].off :
		    md->end) - rg[n].src;
		w += rg[n++].len;
	}
	/*
	 * Mail delivered during the session, or beyond the table's cap.
	 * When the last message goes, what precedes the new mail's place
	 * is an empty line (before the next "From ") or nothing: the empty
	 * line an agent wrote before the new mail (appended()) would be
	 * one too many, and at the start it would make no mbox at all.
	 */
	if (now > md->end) {
		uint64_t skip = md->msgs[md->count - 1].flags & MSG_DELETED ?
		    mbox_sep_skip(md, md->end, now - md->end) : 0;

		rg[n].dst = w;
		rg[n].src = md->end + skip;
		rg[n].len = now - md->end - skip;
		w += rg[n++].len;
	}
	if (n > 0)
		r = journal_compact(md, rg, n, now, w);
	else if (FAULT("ftruncate") || ftruncate(md->fd, (off_t)w) == -1 ||
	    FAULT("fsync") || fsync(md->fd) == -1)
		log_msg(LOG_ERR, "maildrop %s: truncating: %s", md->path,
		    strerror(errno));
	else
		r = MD_OK;
	if (r == MD_OK) {
		md->end = w;
		mbox_index_drop(md);
	}
out:
	free(rg);
	delivery_unlock(md);
	return r;
}

/* The hex of the digest (RFC 1939 §7 allows 1 to 70 printable bytes). */
static void
mbox_uidl(const struct maildrop *md, size_t i, char *buf)
{
	maildrop_uidl_digest(md->loc.mbox[i].uid, md->msgs[i].dup, buf);
}

static void
mbox_close(struct maildrop *md)
{
	if (md->fd != -1)
		(void)close(md->fd);	/* releases flock and fcntl locks */
	md->fd = -1;
	if (md->lockfd != -1)
		(void)close(md->lockfd);	/* the session lock on NFS */
	md->lockfd = -1;
}

const struct maildrop_ops mbox_ops = {
	.name = "mbox",
	.open = mbox_open,
	.send = mbox_send,
	.update = mbox_update,
	.close = mbox_close,
	.check = mbox_check,
	.uidl = mbox_uidl,
};
