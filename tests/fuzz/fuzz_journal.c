/*
 * fuzz_journal.c: libFuzzer target for the redo journal (journal.c): the
 * journal UPDATE writes (journal_compact) and, above all, its recovery
 * (journal_recover), reached through maildrop_open as a login reaches it.
 *
 * Each input describes a small mbox (a few messages; their bodies are the
 * input's tail, cut at NUL bytes), the messages a client deletes, mail
 * delivered during the session, a crash, and what happened afterwards.
 * The target
 *
 *  1. runs the server's own UPDATE on that mbox (maildrop_open, the
 *     deletions, maildrop_update) and checks the mbox it leaves against
 *     the kept messages, and the journal it wrote (kept through a hard
 *     link to its ".new" name, which write_journal truncates and renames
 *     without making it anew) against one written here from the layout
 *     in journal.c's header comment;
 *  2. puts the mbox back as it was, and the journal beside it: genuine,
 *     with bytes overwritten, cut or extended, with fields, ranges or
 *     carried bytes changed (the trailer's MD5 recomputed or not, so that
 *     read_journal's semantic checks are reached too), forged from
 *     scratch, a symbolic link, or only a leftover ".new";
 *  3. leaves the mbox as a crash at some point of the compaction would
 *     (not touched, some moves done, all moves done, truncated too), and
 *     then maybe changes it as a delivery or another program could
 *     (mail appended, the same message delivered again, truncated,
 *     replaced by a copy, a byte changed);
 *  4. opens the maildrop and checks that nothing crashed or leaked, and
 *     that the mbox, the journal's presence and the status are what a
 *     reference of the recovery rules, written here from journal.c's
 *     header and HACKING.md and sharing no code with journal.c (MD5
 *     aside), says: the mbox untouched, or the plan that the journal
 *     describes done; never a journal of another file or size applied.
 *     Where the history is one the design covers (a genuine journal, a
 *     crash, mail delivered under the locks), the mbox must moreover be
 *     what it says: the kept messages, then the mail delivered since.
 *     One such history the design cannot tell apart (see ambiguous())
 *     is let pass unless FUZZ_JOURNAL_STRICT is set in the environment.
 *
 * Logs go to stderr: run it with -close_fd_mask=2.  Runs as whoever runs
 * the fuzzer, in a directory of its own under /dev/shm.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <md5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pop3d.h"
#include "fuzz.h"

/* The parameter bytes at the head of an input (zeros when it is short). */
#define PAR_LEN		40
/* Messages in the mbox, and bytes of a body taken from the input. */
#define MAX_MSGS	8
#define BODY_MAX	2048
/* Ranges in a journal made or forged here. */
#define JM_MAX		(MAX_MSGS + 4)
/* Carried bytes made up for a forged journal, at most. */
#define DATA_MAX	(256 * 1024)

/* The layout (journal.c): host order, no padding. */
#define J_HEAD		64	/* magic, dev, ino, orig, final, nranges,
				   stale[16] */
#define J_REC		24	/* dst, src, len */
#define J_TAIL		24	/* MD5 of all before, end magic */
#define J_MAX_RANGES	((uint64_t)POP3D_MAX_MSGS + 1)
#define J_MAGIC		"POP3DJ01"
#define J_END		"POP3DEND"

typedef unsigned __int128 u128;

/* The input's parameters, in the order they are read. */
struct par {
	unsigned	 nmsg;		/* messages, 1..MAX_MSGS */
	unsigned	 del;		/* bit i: message i deleted */
	unsigned	 crlf;		/* bit i: message i has CRLF lines */
	unsigned	 shape;		/* SH_* */
	unsigned	 jvar;		/* JV_*: which journal lies there */
	unsigned	 state;		/* CR_*: where the crash came */
	unsigned	 ext;		/* EX_*: what happened after it */
	unsigned	 nops;		/* changes to the journal, 1..4 */
	unsigned char	 op[4][3];	/* field, kind, index */
	uint64_t	 val[2];
	unsigned	 at;
	unsigned	 extra;
};

#define SH_DISTINCT	0x01	/* envelopes differ from message to message */
#define SH_NO_EOL	0x02	/* the last line has no newline */
#define SH_NO_SEP	0x04	/* no empty line after the last message */
#define SH_TAIL(s)	(((s) >> 3) & 3)	/* mail delivered in session */
#define SH_LEFTOVER	0x20	/* a ".new" leftover lies there too */
#define SH_DSTYLE	0x40	/* delivery after the crash: "\nFrom " */
#define SH_REDERIVE	0x80	/* forged: carried bytes and stale made to
				   fit the changed plan */

enum jvar {
	JV_GENUINE,		/* as UPDATE wrote it */
	JV_BYTES,		/* some bytes overwritten */
	JV_LENGTH,		/* cut short or extended */
	JV_FIELDS,		/* fields changed, MD5 recomputed */
	JV_FIELDS_NOSUM,	/* fields changed, the old trailer */
	JV_FORGED,		/* made up from scratch, MD5 right */
	JV_JUNK_NEW,		/* none, only a ".new" of junk */
	JV_GENUINE_NEW,		/* the genuine one, not yet renamed */
	JV_SYMLINK,		/* a symbolic link, never followed */
	JV_COUNT
};

enum crash {
	CR_NONE,		/* journal complete, mbox not touched */
	CR_SOME,		/* some of the moves done */
	CR_MOVED,		/* all moves done, not truncated */
	CR_TRUNCATED,		/* truncated too, journal not yet removed */
	CR_COUNT
};

enum ext {
	EX_NONE,
	EX_DELIVER,		/* new mail appended under the locks */
	EX_REDELIVER,		/* a copy of one of the messages appended */
	EX_TRUNCATE,		/* cut short by another program */
	EX_REPLACE,		/* rewritten to a new file renamed over it */
	EX_FLIP,		/* one byte changed in place */
	EX_COUNT
};

/* A journal as fields, to be laid out by encode(). */
struct jmodel {
	unsigned char	 magic[8], end[8], stale[16], sum[16];
	uint64_t	 dev, ino, orig, final, nranges;
	struct jrange	 rec[JM_MAX];
	size_t		 nrec;
	int		 keep_sum;	/* sum as given, not recomputed */
};

/* What the recovery must leave. */
struct outcome {
	int		 temp;		/* journal_recover says MD_TEMP */
	int		 kept;		/* the journal stays */
	struct buf	*mbox;
};

static char	 dir[128], mbox_path[256], jpath[256], jnew_path[256],
		 capture_path[256], tmp_path[256], lock_path[256],
		 index_path[256];
static struct par par;
/* The mbox before UPDATE (messages, then the session's new mail). */
static struct buf m0, tail, final_mbox, jgen, jdata, jcur, deliv;
static struct buf before, after, want, truth, scratch, other;
static uint64_t	 off[MAX_MSGS + 1], scanned;
static struct jmodel jm;

/* Input bytes: the tail, cut into chunks at NUL bytes. */
static const uint8_t *text;
static size_t	 text_len;

static void
chunk(unsigned k, const uint8_t **p, size_t *n)
{
	size_t at = 0, end;

	for (;;) {
		const uint8_t *z = at < text_len ?
		    memchr(text + at, '\0', text_len - at) : NULL;

		end = z != NULL ? (size_t)(z - text) : text_len;
		if (k == 0 || z == NULL)
			break;
		k--;
		at = end + 1;
	}
	if (k > 0 || at > text_len) {
		*p = text;
		*n = 0;
		return;
	}
	*p = text + at;
	*n = end - at < BODY_MAX ? end - at : BODY_MAX;
}

static uint64_t
get(const uint8_t *p, size_t *at, size_t bytes)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < bytes; i++)
		v |= (uint64_t)p[(*at)++] << (8 * i);
	return v;
}

static void
read_par(const uint8_t *data, size_t size)
{
	uint8_t p[PAR_LEN];
	size_t at = 0, i;

	memset(p, 0, sizeof(p));
	memcpy(p, data, size < PAR_LEN ? size : PAR_LEN);
	par.nmsg = 1 + (unsigned)get(p, &at, 1) % MAX_MSGS;
	par.del = (unsigned)get(p, &at, 1);
	par.crlf = (unsigned)get(p, &at, 1);
	par.shape = (unsigned)get(p, &at, 1);
	par.jvar = (unsigned)get(p, &at, 1) % JV_COUNT;
	par.state = (unsigned)get(p, &at, 1) % CR_COUNT;
	par.ext = (unsigned)get(p, &at, 1) % EX_COUNT;
	par.nops = 1 + (unsigned)get(p, &at, 1) % 4;
	for (i = 0; i < 4; i++) {
		par.op[i][0] = (unsigned char)get(p, &at, 1);
		par.op[i][1] = (unsigned char)get(p, &at, 1);
		par.op[i][2] = (unsigned char)get(p, &at, 1);
	}
	par.val[0] = get(p, &at, 8);
	par.val[1] = get(p, &at, 8);
	par.at = (unsigned)get(p, &at, 2);
	par.extra = (unsigned)get(p, &at, 1);
	text = data + (size < PAR_LEN ? size : PAR_LEN);
	text_len = size < PAR_LEN ? 0 : size - PAR_LEN;
	par.del &= (1u << par.nmsg) - 1;
	if (par.del == 0)
		par.del = 1u << (par.crlf % par.nmsg);
}

static int
deleted(unsigned i)
{
	return (par.del >> i) & 1;
}

static void
put_u64(unsigned char *p, uint64_t v)
{
	memcpy(p, &v, sizeof(v));
}

static uint64_t
get_u64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static void
md5(const void *p, size_t n, unsigned char out[16])
{
	MD5_CTX ctx;

	MD5Init(&ctx);
	MD5Update(&ctx, p, n);
	MD5Final(out, &ctx);
}

/* Files. */

static void
write_file(const char *path, const struct buf *b)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	CHECK(fd != -1);
	CHECK(b->len == 0 || write(fd, b->p, b->len) == (ssize_t)b->len);
	CHECK(close(fd) == 0);
}

/* The file at path into b; 0, or -1 when there is none. */
static int
read_file(const char *path, struct buf *b)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	b->len = 0;
	if (fd == -1) {
		CHECK(errno == ENOENT);
		return -1;
	}
	CHECK(fstat(fd, &st) == 0);
	buf_add(b, NULL, (size_t)st.st_size);
	CHECK(st.st_size == 0 ||
	    pread(fd, b->p, (size_t)st.st_size, 0) == st.st_size);
	CHECK(close(fd) == 0);
	return 0;
}

/* Rewrites the file in place: the same inode, so a journal names it. */
static void
rewrite_file(const char *path, const struct buf *b)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	CHECK(fd != -1);
	CHECK(b->len == 0 || pwrite(fd, b->p, b->len, 0) == (ssize_t)b->len);
	CHECK(ftruncate(fd, (off_t)b->len) == 0);
	CHECK(close(fd) == 0);
}

static void
remove_all(void)
{
	const char *const names[] = { mbox_path, jpath, jnew_path,
	    capture_path, tmp_path, lock_path, index_path };
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		CHECK(unlink(names[i]) == 0 || errno == ENOENT);
}

/*
 * Only the mbox is left in the directory, and the journal when it must
 * stay: no ".new", no dotlock, no index.
 */
static void
only_left(int journal)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int seen = 0;

	CHECK(d != NULL);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0 ||
		    strcmp(de->d_name, "mbox") == 0)
			continue;
		if (journal && strcmp(de->d_name, ".mbox.pop3d-journal") == 0) {
			seen = 1;
			continue;
		}
		dprintf(fuzz_report_fd, "left over: %s\n", de->d_name);
		CHECK(!"a file left in the maildrop's directory");
	}
	CHECK(closedir(d) == 0);
	CHECK(seen == journal);
}

static int
same(const struct buf *a, const struct buf *b)
{
	return a->len == b->len && (a->len == 0 ||
	    memcmp(a->p, b->p, a->len) == 0);
}

/* The mbox. */

/*
 * A body from the input.  No body line starts with 'F': a "From " line
 * after an empty line would begin a message of its own, and the plan
 * here needs to know where the messages are.
 */
static void
add_body(struct buf *b, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = p[i];

		if (c == 'F' && (i == 0 || p[i - 1] == '\n'))
			c = 'f';
		buf_add(b, &c, 1);
	}
}

/* A message as a delivery agent appends it, from chunk k. */
static void
add_message(struct buf *b, const char *who, int crlf, unsigned k, int sep)
{
	const char *eol = crlf ? "\r\n" : "\n";
	char head[128];
	const uint8_t *p;
	size_t n;

	chunk(k, &p, &n);
	snprintf(head, sizeof(head), "From %s@example.org Mon Jan  1 "
	    "00:00:00 2024%sSubject: %s%s%s", who, eol, who, eol, eol);
	buf_add(b, head, strlen(head));
	add_body(b, p, n);
	if (n > 0 && p[n - 1] != '\n')
		buf_add(b, eol, strlen(eol));
	if (sep)
		buf_add(b, eol, strlen(eol));
}

/* The separator a delivery agent may write before a message. */
static size_t
lead_sep(const unsigned char *p, size_t n)
{
	if (n >= 6 && memcmp(p, "\nFrom ", 6) == 0)
		return 1;
	if (n >= 7 && memcmp(p, "\r\nFrom ", 7) == 0)
		return 2;
	return 0;
}

/*
 * Whether the n bytes at p end with an empty line, or are none: what
 * mail moved behind them must not start with another (HACKING.md, UPDATE).
 */
static int
ends_empty(const unsigned char *p, size_t n)
{
	if (n == 0)
		return 1;
	if (n >= 2 && p[n - 1] == '\n' && p[n - 2] == '\n')
		return 1;
	return n >= 3 && p[n - 1] == '\n' && p[n - 2] == '\r' &&
	    p[n - 3] == '\n';
}

static void
make_mbox(void)
{
	unsigned i;

	m0.len = 0;
	for (i = 0; i < par.nmsg; i++) {
		char who[16];
		int last = i + 1 == par.nmsg;
		size_t before_eol;

		off[i] = m0.len;
		snprintf(who, sizeof(who), "m%u",
		    par.shape & SH_DISTINCT ? i : 0);
		add_message(&m0, who, (par.crlf >> i) & 1, i,
		    !(last && (par.shape & (SH_NO_SEP | SH_NO_EOL))));
		if (last && (par.shape & SH_NO_EOL)) {
			/* Cut the last newline: the file ends mid-line. */
			before_eol = m0.len;
			if (before_eol > 0 && m0.p[before_eol - 1] == '\n')
				before_eol--;
			if (before_eol > 0 && m0.p[before_eol - 1] == '\r')
				before_eol--;
			if (before_eol > off[i] + 5)
				m0.len = before_eol;
		}
	}
	off[par.nmsg] = scanned = m0.len;
	/* Mail delivered during the session: behind the scanned part. */
	tail.len = 0;
	switch (SH_TAIL(par.shape)) {
	case 2:
		buf_add(&tail, "\n", 1);
		break;
	case 3:
		buf_add(&tail, "\r\n", 2);
		break;
	}
	if (SH_TAIL(par.shape) != 0)
		add_message(&tail, "t", 0, par.nmsg, SH_TAIL(par.shape) == 1);
	buf_add(&m0, tail.p, tail.len);
}

/*
 * The mbox once UPDATE is done, from the rules (DESIGN.md, HACKING.md):
 * the messages kept, in order, each with the empty line behind it, then
 * the new mail, without a leading empty line when the last message went.
 */
static void
make_final(void)
{
	unsigned i;
	size_t skip;

	final_mbox.len = 0;
	for (i = 0; i < par.nmsg; i++)
		if (!deleted(i))
			buf_add(&final_mbox, m0.p + off[i],
			    (size_t)(off[i + 1] - off[i]));
	skip = deleted(par.nmsg - 1) ? lead_sep(tail.p, tail.len) : 0;
	buf_add(&final_mbox, tail.p + skip, tail.len - skip);
}

/* The bytes a range carries: those of its source below the final size. */
static uint64_t
carried(uint64_t src, uint64_t len, uint64_t final)
{
	if (src >= final)
		return 0;
	return len < final - src ? len : final - src;
}

/*
 * The plan UPDATE makes: one range per run of kept messages behind the
 * first deleted one, and one for the new mail.
 */
static void
make_plan(struct jmodel *j, const struct stat *st)
{
	unsigned i, k, first;
	uint64_t w, skip;

	memset(j, 0, sizeof(*j));
	memcpy(j->magic, J_MAGIC, 8);
	memcpy(j->end, J_END, 8);
	j->dev = (uint64_t)st->st_dev;
	j->ino = (uint64_t)st->st_ino;
	for (first = 0; !deleted(first); first++)
		;
	w = off[first];
	for (i = first + 1; i < par.nmsg; i = k) {
		if (deleted(i)) {
			k = i + 1;
			continue;
		}
		for (k = i; k < par.nmsg && !deleted(k); k++)
			;
		j->rec[j->nrec].dst = w;
		j->rec[j->nrec].src = off[i];
		j->rec[j->nrec].len = off[k] - off[i];
		w += j->rec[j->nrec++].len;
	}
	if (tail.len > 0) {
		skip = deleted(par.nmsg - 1) ? lead_sep(tail.p, tail.len) : 0;
		j->rec[j->nrec].dst = w;
		j->rec[j->nrec].src = scanned + skip;
		j->rec[j->nrec].len = tail.len - skip;
		w += j->rec[j->nrec++].len;
	}
	j->nranges = j->nrec;
	j->orig = m0.len;
	j->final = w;
	md5(m0.p + w, (size_t)(m0.len - w), j->stale);
}

/*
 * The carried bytes of j's ranges, taken from the mbox m0 (zeros past
 * its end); 0, or -1 when they would be too many to make.
 */
static int
make_data(const struct jmodel *j, struct buf *d)
{
	u128 total = 0;
	size_t i;

	for (i = 0; i < j->nrec; i++)
		total += carried(j->rec[i].src, j->rec[i].len, j->final);
	if (total > DATA_MAX)
		return -1;
	d->len = 0;
	for (i = 0; i < j->nrec; i++) {
		uint64_t c = carried(j->rec[i].src, j->rec[i].len, j->final);
		uint64_t k;

		for (k = 0; k < c; k++) {
			u128 at = (u128)j->rec[i].src + k;
			unsigned char b = at < m0.len ? m0.p[(size_t)at] : 0;

			buf_add(d, &b, 1);
		}
	}
	return 0;
}

/* Lays j out as journal.c's header comment says, with data carried. */
static void
encode(const struct jmodel *j, const struct buf *d, struct buf *out)
{
	unsigned char h[J_HEAD], r[J_REC], sum[16];
	size_t i;

	out->len = 0;
	memcpy(h, j->magic, 8);
	put_u64(h + 8, j->dev);
	put_u64(h + 16, j->ino);
	put_u64(h + 24, j->orig);
	put_u64(h + 32, j->final);
	put_u64(h + 40, j->nranges);
	memcpy(h + 48, j->stale, 16);
	buf_add(out, h, sizeof(h));
	for (i = 0; i < j->nrec; i++) {
		put_u64(r, j->rec[i].dst);
		put_u64(r + 8, j->rec[i].src);
		put_u64(r + 16, j->rec[i].len);
		buf_add(out, r, sizeof(r));
	}
	buf_add(out, d->p, d->len);
	if (j->keep_sum)
		memcpy(sum, j->sum, 16);
	else
		md5(out->p, out->len, sum);
	buf_add(out, sum, 16);
	buf_add(out, j->end, 8);
}

/*
 * Does ranges of the journal j (raw, already judged complete) in m, as a
 * replay does: each range's carried part from the journal, the rest from
 * where it is in m.  With mask, only the ranges whose bit is set, and
 * range cut_at only up to cut bytes: a crash somewhere in the moves.
 */
static void
ref_moves(struct buf *m, const struct buf *j, uint64_t mask, size_t cut_at,
    uint64_t cut)
{
	uint64_t nr = get_u64(j->p + 40), final = get_u64(j->p + 32);
	size_t data = J_HEAD + (size_t)nr * J_REC, i;

	for (i = 0; i < nr; i++) {
		const unsigned char *r = j->p + J_HEAD + i * J_REC;
		uint64_t dst = get_u64(r), src = get_u64(r + 8);
		uint64_t len = get_u64(r + 16), c = carried(src, len, final);
		uint64_t k, n = len;

		if (i < 64 && !((mask >> i) & 1))
			n = 0;
		if (i == cut_at && cut < n)
			n = cut;
		for (k = 0; k < n; k++) {
			CHECK(dst + k < m->len);
			m->p[dst + k] = k < c ? j->p[data + k] :
			    m->p[src + k];
		}
		data += (size_t)c;
	}
}

/*
 * Whether the journal j (raw) is complete and for the file dev/ino: the
 * checks that journal.c's header and HACKING.md name, in exact
 * arithmetic (no sum may wrap).
 */
static int
ref_valid(const struct buf *j, uint64_t dev, uint64_t ino)
{
	uint64_t orig, final, nr, i;
	unsigned char sum[16];
	u128 total = 0;
	size_t body;

	if (j->len < J_HEAD + J_TAIL)
		return 0;
	orig = get_u64(j->p + 24);
	final = get_u64(j->p + 32);
	nr = get_u64(j->p + 40);
	if (memcmp(j->p, J_MAGIC, 8) != 0 || nr > J_MAX_RANGES ||
	    final > orig)
		return 0;
	body = j->len - J_TAIL;
	if ((u128)J_HEAD + (u128)nr * J_REC > body)
		return 0;
	for (i = 0; i < nr; i++) {
		const unsigned char *r = j->p + J_HEAD + i * J_REC;
		uint64_t dst = get_u64(r), src = get_u64(r + 8);
		uint64_t len = get_u64(r + 16);

		/* Inside the final file, from inside the old one, down. */
		if ((u128)dst + len > final || (u128)src + len > orig ||
		    src <= dst)
			return 0;
		total += carried(src, len, final);
	}
	if ((u128)J_HEAD + (u128)nr * J_REC + total != body)
		return 0;
	md5(j->p, body, sum);
	if (memcmp(j->p + body, sum, 16) != 0 ||
	    memcmp(j->p + body + 16, J_END, 8) != 0)
		return 0;
	return get_u64(j->p + 8) == dev && get_u64(j->p + 16) == ino;
}

/*
 * What journal_recover must make of the mbox m (file dev/ino) with the
 * journal j beside it (NULL: none).  Into o->mbox.
 */
static void
ref_recover(const struct buf *m, const struct buf *j, uint64_t dev,
    uint64_t ino, struct outcome *o)
{
	uint64_t orig, final, cur = m->len;
	unsigned char now[16];

	o->temp = 0;
	o->kept = 0;
	o->mbox->len = 0;
	buf_add(o->mbox, m->p, m->len);
	if (j == NULL || !ref_valid(j, dev, ino))
		return;			/* none, or discarded */
	orig = get_u64(j->p + 24);
	final = get_u64(j->p + 32);
	if (cur < final) {
		/* Shorter than the plan: left for the administrator. */
		o->temp = 1;
		o->kept = 1;
		return;
	}
	if (cur < orig)
		return;			/* truncated already */
	md5(m->p + final, (size_t)(orig - final), now);
	if (memcmp(now, j->p + 48, 16) != 0)
		return;			/* truncated already, mail behind */
	ref_moves(o->mbox, j, UINT64_MAX, SIZE_MAX, 0);
	if (cur > orig) {
		/* Mail that came after the crash moves down behind final. */
		size_t skip = ends_empty(o->mbox->p, (size_t)final) ?
		    lead_sep(o->mbox->p + orig, (size_t)(cur - orig)) : 0;

		memmove(o->mbox->p + final, o->mbox->p + orig + skip,
		    (size_t)(cur - orig - skip));
		o->mbox->len = (size_t)(final + cur - orig - skip);
	} else
		o->mbox->len = (size_t)final;
}

/* Changes to a journal. */

static uint64_t
interesting(unsigned k, uint64_t v, const struct jmodel *j)
{
	switch (k % 16) {
	case 0:
		return 0;
	case 1:
		return 1;
	case 2:
		return m0.len;
	case 3:
		return m0.len - 1;
	case 4:
		return m0.len + 1;
	case 5:
		return j->final;
	case 6:
		return j->orig;
	case 7:
		return off[v % (par.nmsg + 1)];
	case 8:
		return off[v % (par.nmsg + 1)] + 1;
	case 9:
		return (uint64_t)1 << 63;
	case 10:
		return UINT64_MAX;
	case 11:
		return UINT64_MAX - (v & 0xffff);
	case 12:
		return UINT64_MAX / J_REC + 1;
	case 13:
		return J_MAX_RANGES + (v & 1);
	case 14:
		return UINT64_MAX - j->final + 1 + (v & 0xff);
	default:
		return v;
	}
}

static void
change_number(uint64_t *x, unsigned kind, uint64_t v, const struct jmodel *j)
{
	switch (kind % 8) {
	case 0:
		*x = v;
		break;
	case 1:
		*x += (uint64_t)(int64_t)(int8_t)(v & 0xff);
		break;
	case 2:
		*x = interesting((unsigned)(v >> 8), v, j);
		break;
	case 3:
		*x ^= (uint64_t)1 << (v % 64);
		break;
	case 4:
		*x = UINT64_MAX - (v & 0xff);
		break;
	case 5:
		*x = ((uint64_t)1 << 63) + (v & 0xff) - 128;
		break;
	case 6:
		*x -= v & 0xff;
		break;
	default:
		*x = interesting((unsigned)v, v >> 4, j);
		break;
	}
}

/* Applies the input's changes to jm (data: its carried bytes). */
static void
change_model(struct jmodel *j, struct buf *d)
{
	unsigned i;

	for (i = 0; i < par.nops; i++) {
		unsigned field = par.op[i][0] % 18, kind = par.op[i][1];
		size_t k = par.op[i][2];
		uint64_t v = par.val[i & 1];
		struct jrange t;

		if (i >= 2)
			v = v >> 32 | v << 32;
		switch (field) {
		case 0:
			change_number(&j->dev, kind, v, j);
			break;
		case 1:
			change_number(&j->ino, kind, v, j);
			break;
		case 2:
			change_number(&j->orig, kind, v, j);
			break;
		case 3:
			change_number(&j->final, kind, v, j);
			break;
		case 4:
			change_number(&j->nranges, kind, v, j);
			break;
		case 5:
			j->stale[k % 16] ^= (unsigned char)(kind | 1);
			break;
		case 6:
		case 7:
		case 8:
			if (j->nrec == 0)
				break;
			k %= j->nrec;
			change_number(field == 6 ? &j->rec[k].dst :
			    field == 7 ? &j->rec[k].src : &j->rec[k].len,
			    kind, v, j);
			break;
		case 9:		/* swap two ranges */
			if (j->nrec < 2)
				break;
			t = j->rec[k % j->nrec];
			j->rec[k % j->nrec] = j->rec[kind % j->nrec];
			j->rec[kind % j->nrec] = t;
			break;
		case 10:	/* a range twice, or one more */
			if (j->nrec == JM_MAX)
				break;
			if (j->nrec > 0)
				j->rec[j->nrec] = j->rec[k % j->nrec];
			else
				memset(&j->rec[0], 0, sizeof(j->rec[0]));
			j->nrec++;
			j->nranges++;
			break;
		case 11:	/* one range less */
			if (j->nrec == 0)
				break;
			k %= j->nrec;
			memmove(&j->rec[k], &j->rec[k + 1],
			    (j->nrec - k - 1) * sizeof(j->rec[0]));
			j->nrec--;
			j->nranges--;
			break;
		case 12:
			if (d->len > 0)
				d->p[(k << 8 | kind) % d->len] ^=
				    (unsigned char)(v | 1);
			break;
		case 13:	/* carried bytes cut or added */
			if (kind & 1)
				d->len -= (size_t)(v % (d->len + 1));
			else {
				size_t at = d->len;

				buf_add(d, NULL, (size_t)(v % 64) + 1);
				memset(d->p + at, (int)(kind >> 1),
				    d->len - at);
			}
			break;
		case 14:
			j->magic[k % 8] ^= (unsigned char)(kind | 1);
			break;
		case 15:
			j->end[k % 8] ^= (unsigned char)(kind | 1);
			break;
		case 16:	/* the ranges as they are, in the header */
			j->nranges = j->nrec;
			break;
		default:	/* a range made of interesting values */
			if (j->nrec == JM_MAX)
				break;
			j->rec[j->nrec].dst = interesting(kind, v, j);
			j->rec[j->nrec].src = interesting(kind >> 4,
			    v >> 16, j);
			j->rec[j->nrec].len = interesting((unsigned)k,
			    v >> 32, j);
			j->nrec++;
			j->nranges++;
			break;
		}
	}
	/*
	 * Made to fit: the carried bytes those of the changed ranges, and
	 * the stale digest that of the bytes the changed plan leaves, so
	 * that a journal gets past more of the checks.
	 */
	if (par.shape & SH_REDERIVE) {
		if (make_data(j, d) == -1)
			d->len = 0;
		if (j->final <= j->orig && j->orig <= m0.len)
			md5(m0.p + j->final, (size_t)(j->orig - j->final),
			    j->stale);
	}
}

/* A journal made up from the parameters and the input. */
static void
forge(struct jmodel *j, struct buf *d)
{
	const uint8_t *p;
	size_t n, i;

	j->orig = interesting(par.op[0][0], par.val[0], j);
	j->final = interesting(par.op[0][1], par.val[0] >> 8, j);
	j->nrec = par.op[0][2] % (JM_MAX + 1);
	for (i = 0; i < j->nrec; i++) {
		uint64_t v = par.val[1] >> (i % 8) * 8 | par.val[1] << 8;

		j->rec[i].dst = interesting(par.op[1 + i % 3][0] >> (i / 3),
		    v, j);
		j->rec[i].src = interesting(par.op[1 + i % 3][1] >> (i / 3),
		    v >> 4, j);
		j->rec[i].len = interesting(par.op[1 + i % 3][2] >> (i / 3),
		    v >> 12, j);
	}
	j->nranges = par.extra & 1 ? j->nrec : interesting(par.extra >> 1,
	    par.val[1], j);
	if (j->final <= j->orig && j->orig <= m0.len)
		md5(m0.p + j->final, (size_t)(j->orig - j->final), j->stale);
	if (par.shape & SH_REDERIVE) {
		if (make_data(j, d) == -1)
			d->len = 0;
	} else {
		chunk(par.nmsg + 2, &p, &n);
		d->len = 0;
		buf_add(d, p, n);
	}
}

/* The journal of the input's variant into jcur; 1 when it lies as the
 * journal, 0 when only as a ".new". */
static int
make_journal(void)
{
	struct jmodel j = jm;
	const uint8_t *p;
	size_t n, i, pos;

	jcur.len = 0;
	switch (par.jvar) {
	case JV_GENUINE:
	case JV_GENUINE_NEW:
		buf_add(&jcur, jgen.p, jgen.len);
		break;
	case JV_BYTES:
		buf_add(&jcur, jgen.p, jgen.len);
		for (i = 0; i < par.nops; i++) {
			pos = ((size_t)par.op[i][0] << 8 | par.op[i][2]) +
			    par.at;
			jcur.p[pos % jcur.len] ^= par.op[i][1];
		}
		break;
	case JV_LENGTH:
		buf_add(&jcur, jgen.p, jgen.len);
		if (par.val[0] & 1)
			jcur.len = (size_t)((par.val[0] >> 1) % jcur.len);
		else {
			/* Bytes from the input, then zeros: one at least. */
			chunk(par.nmsg + 2, &p, &n);
			n = n < 64 ? n : 64;
			buf_add(&jcur, p, n);
			pos = jcur.len;
			n = (size_t)(par.val[0] >> 1) % 64 + (n == 0);
			buf_add(&jcur, NULL, n);
			memset(jcur.p + pos, 0, n);
		}
		break;
	case JV_FIELDS:
	case JV_FIELDS_NOSUM:
		scratch.len = 0;
		buf_add(&scratch, jdata.p, jdata.len);
		if (par.jvar == JV_FIELDS_NOSUM) {
			j.keep_sum = 1;
			memcpy(j.sum, jgen.p + jgen.len - J_TAIL, 16);
		}
		change_model(&j, &scratch);
		encode(&j, &scratch, &jcur);
		break;
	case JV_FORGED:
		scratch.len = 0;
		forge(&j, &scratch);
		encode(&j, &scratch, &jcur);
		break;
	case JV_SYMLINK:
		break;
	default:	/* JV_JUNK_NEW */
		chunk(par.nmsg + 2, &p, &n);
		buf_add(&jcur, p, n);
		break;
	}
	return par.jvar != JV_JUNK_NEW && par.jvar != JV_GENUINE_NEW &&
	    par.jvar != JV_SYMLINK;
}

/* Step 1: the server's UPDATE, checked. */
/*
 * Whether the mbox, truncated already, has since got mail behind its
 * final size that starts with exactly the bytes that the truncate cut
 * off: the journal's stale digest matches again, and recovery cannot
 * tell this mbox from one that was never truncated.  It replays, and
 * cuts the new mail (the first orig - final bytes of it, or all).  A
 * limit of the design, not of the code; FUZZ_JOURNAL_STRICT=1 reports
 * it like any other broken property.
 */
static int
ambiguous(void)
{
	unsigned char now[16];

	if (par.state != CR_TRUNCATED || before.len < jm.orig)
		return 0;
	md5(before.p + jm.final, (size_t)(jm.orig - jm.final), now);
	return memcmp(now, jm.stale, 16) == 0;
}

static void
server_update(void)
{
	struct maildrop md;
	struct buf s = { 0 };
	unsigned i;
	int fd;

	/* The session scans the messages; the new mail comes after. */
	s.p = m0.p;
	s.len = (size_t)scanned;
	write_file(mbox_path, &s);
	CHECK(maildrop_open(&md, mbox_path) == MD_OK);
	CHECK(md.count == par.nmsg);
	for (i = 0; i < par.nmsg; i++)
		CHECK(md.loc.mbox[i].off == off[i]);
	/* Catches the journal: write_journal truncates its ".new". */
	fd = open(jnew_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	CHECK(fd != -1 && close(fd) == 0);
	CHECK(link(jnew_path, capture_path) == 0);
	if (tail.len > 0) {
		fd = open(mbox_path, O_WRONLY | O_APPEND | O_CLOEXEC);
		CHECK(fd != -1);
		CHECK(write(fd, tail.p, tail.len) == (ssize_t)tail.len);
		CHECK(close(fd) == 0);
	}
	for (i = 0; i < par.nmsg; i++)
		if (deleted(i))
			md.msgs[i].flags |= MSG_DELETED;
	CHECK(maildrop_update(&md) == MD_OK);
	maildrop_close(&md);
	CHECK(read_file(mbox_path, &after) == 0);
	CHECK(same(&after, &final_mbox));
	CHECK(read_file(capture_path, &scratch) == 0);
	if (jm.nrec > 0) {
		/* Byte for byte the journal written here. */
		CHECK(same(&scratch, &jgen));
		CHECK(access(jnew_path, F_OK) == -1);
	} else {
		/* Only trailing deletions: one truncate, no journal. */
		CHECK(scratch.len == 0);
		CHECK(unlink(jnew_path) == 0);
	}
	CHECK(unlink(capture_path) == 0);
	CHECK(access(jpath, F_OK) == -1);
	only_left(0);
	/* Back as it was, in the same inode: the journal names it. */
	rewrite_file(mbox_path, &m0);
}

/* Step 3: the crash, and what happened after it.  The mbox into before. */
static void
crash_and_after(int genuine, struct stat *st)
{
	struct buf *m = &before;
	uint64_t x;
	unsigned k;
	int fd;

	m->len = 0;
	buf_add(m, m0.p, m0.len);
	if (!genuine || par.ext >= EX_TRUNCATE)
		par.state = CR_NONE;
	switch (par.state) {
	case CR_SOME:
		ref_moves(m, &jgen, par.val[1], par.extra % (jm.nrec + 1),
		    par.val[0] % (m0.len + 1));
		break;
	case CR_MOVED:
		ref_moves(m, &jgen, UINT64_MAX, SIZE_MAX, 0);
		break;
	case CR_TRUNCATED:
		ref_moves(m, &jgen, UINT64_MAX, SIZE_MAX, 0);
		m->len = (size_t)jm.final;
		CHECK(same(m, &final_mbox));
		break;
	}
	deliv.len = 0;
	switch (par.ext) {
	case EX_DELIVER:
		if (par.shape & SH_DSTYLE)
			buf_add(&deliv, "\n", 1);
		add_message(&deliv, "d", 0, par.nmsg + 1,
		    !(par.shape & SH_DSTYLE));
		break;
	case EX_REDELIVER:
		/* The same message once more (a duplicate delivery). */
		k = (unsigned)(par.val[1] % (par.nmsg + 1));
		if (k < par.nmsg)
			buf_add(&deliv, m0.p + off[k],
			    (size_t)(off[k + 1] - off[k]));
		else
			buf_add(&deliv, tail.p, tail.len);
		break;
	case EX_TRUNCATE:
		m->len = (size_t)(par.val[1] % (m->len + 1));
		break;
	case EX_FLIP:
		if (m->len > 0) {
			x = par.val[1] % m->len;
			m->p[x] ^= (unsigned char)(par.extra | 1);
		}
		break;
	}
	buf_add(m, deliv.p, deliv.len);
	if (par.ext == EX_REPLACE) {
		/* The old inode stays open, so the new one has another. */
		fd = open(mbox_path, O_RDONLY | O_CLOEXEC);
		CHECK(fd != -1);
		write_file(tmp_path, m);
		CHECK(rename(tmp_path, mbox_path) == 0);
		CHECK(close(fd) == 0);
	} else
		rewrite_file(mbox_path, m);
	CHECK(stat(mbox_path, st) == 0);
}

/*
 * Where the history is one the design answers for (a genuine journal, a
 * crash, then mail delivered under the locks, or nothing), what the mbox
 * must be: the kept messages and the new mail behind them.  0 when the
 * history is another.
 */
static int
history_truth(int genuine)
{
	size_t skip;

	if (!genuine || par.ext >= EX_TRUNCATE)
		return 0;
	truth.len = 0;
	buf_add(&truth, final_mbox.p, final_mbox.len);
	skip = par.state != CR_TRUNCATED &&
	    ends_empty(final_mbox.p, final_mbox.len) ?
	    lead_sep(deliv.p, deliv.len) : 0;
	buf_add(&truth, deliv.p + skip, deliv.len - skip);
	return 1;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_report_init();
	log_init(1);
	/* Never settled: no index is written, every open scans. */
	mbox_settle = INT_MAX;
	struct buf *const bufs[] = { &m0, &tail, &final_mbox, &jgen, &jdata,
	    &jcur, &deliv, &before, &after, &want, &truth, &scratch, &other };
	size_t i;

	/* Allocated from the start: p + 0 is then never NULL + 0. */
	for (i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
		buf_add(bufs[i], NULL, 1);
		bufs[i]->len = 0;
	}
	fuzz_tmpdir(dir, sizeof(dir));
	CHECK((size_t)snprintf(mbox_path, sizeof(mbox_path), "%s/mbox", dir) <
	    sizeof(mbox_path));
	snprintf(jpath, sizeof(jpath), "%s/.mbox.pop3d-journal", dir);
	snprintf(jnew_path, sizeof(jnew_path), "%s/.mbox.pop3d-journal.new",
	    dir);
	snprintf(capture_path, sizeof(capture_path), "%s/capture", dir);
	snprintf(tmp_path, sizeof(tmp_path), "%s/mbox.tmp", dir);
	snprintf(lock_path, sizeof(lock_path), "%s/mbox.lock", dir);
	snprintf(index_path, sizeof(index_path), "%s/.mbox.pop3d-index", dir);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct maildrop md;
	struct outcome o = { 0, 0, &want };
	struct stat st, lst;
	enum md_status r, expect_r;
	int as_journal, genuine, strict;

	read_par(data, size);
	make_mbox();
	make_final();
	write_file(mbox_path, &m0);
	CHECK(stat(mbox_path, &st) == 0);
	make_plan(&jm, &st);
	CHECK(make_data(&jm, &jdata) == 0);
	encode(&jm, &jdata, &jgen);
	/* The plan, done, is what the rules say. */
	CHECK(ref_valid(&jgen, jm.dev, jm.ino));
	scratch.len = 0;
	buf_add(&scratch, m0.p, m0.len);
	ref_moves(&scratch, &jgen, UINT64_MAX, SIZE_MAX, 0);
	scratch.len = (size_t)jm.final;
	CHECK(same(&scratch, &final_mbox));

	server_update();

	as_journal = make_journal();
	genuine = as_journal && same(&jcur, &jgen);
	crash_and_after(genuine, &st);
	if (par.jvar == JV_SYMLINK)
		CHECK(symlink("capture", jpath) == 0);
	else
		write_file(as_journal ? jpath : jnew_path, &jcur);
	if (as_journal && (par.shape & SH_LEFTOVER)) {
		/* A journal cut short while written, from a later crash. */
		other.len = 0;
		buf_add(&other, jgen.p, jgen.len / 2);
		write_file(jnew_path, &other);
	}
	ref_recover(&before, as_journal ? &jcur : NULL, (uint64_t)st.st_dev,
	    (uint64_t)st.st_ino, &o);
	if (par.jvar == JV_SYMLINK) {
		/* Cannot be opened (O_NOFOLLOW): left for the administrator. */
		o.temp = 1;
		o.kept = 1;
	}
	strict = history_truth(genuine);

	r = maildrop_open(&md, mbox_path);
	expect_r = o.temp ? MD_TEMP : want.len == 0 || (want.len >= 5 &&
	    memcmp(want.p, "From ", 5) == 0) ? MD_OK : MD_PERM;
	if (r == MD_OK) {
		CHECK(md.end == want.len);
		maildrop_close(&md);
	}
	CHECK(read_file(mbox_path, &after) == 0);
	/* The rules. */
	CHECK(same(&after, &want));
	CHECK(r == expect_r);
	only_left(o.kept);
	if (o.kept && par.jvar == JV_SYMLINK)
		CHECK(lstat(jpath, &lst) == 0 && S_ISLNK(lst.st_mode));
	else if (o.kept) {
		CHECK(read_file(jpath, &scratch) == 0);
		CHECK(same(&scratch, &jcur));
	}
	/* Touched only by a journal complete and for this file. */
	if (!same(&after, &before))
		CHECK(as_journal && ref_valid(&jcur, (uint64_t)st.st_dev,
		    (uint64_t)st.st_ino));
	/* And what the history says, where it says something. */
	if (strict && !(ambiguous() && getenv("FUZZ_JOURNAL_STRICT") == NULL))
		CHECK(same(&after, &truth));
	remove_all();
	return 0;
}
