/*
 * fuzz_mbox.c: libFuzzer target for the mbox scanner (mbox_scan) and the
 * streaming writer that RETR and TOP use (io_body_*, through mbox_ops).
 *
 * The input is an mbox: hostile bytes, any line length, NUL, CR, 8-bit.
 * The table the scanner builds is compared with a reference written from
 * the format's rules (mbox.c's header comment, DESIGN.md), sharing no code
 * with it but the hash function (uidhash.c, which test_uidhash.c checks
 * against the SipHash test vectors): where each message starts, its stored
 * and sent lengths, its header, its UIDL digest.  Every UIDL must be
 * distinct and printable (RFC 1939 §7), and RETR and TOP of every message
 * must send exactly the bytes the rules say, with LIST's octet count
 * (RFC 1939 §3, §5), whole and when fed to the writer in small pieces.
 * The same input is also scanned behind a filler of about the scanner's
 * buffer size, so that its lines cross a buffer boundary, and a line
 * longer than the buffer ends inside it.  Runs as whoever runs the fuzzer.
 */
#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "pop3d.h"
#include "fuzz.h"

/* mbox.c's SCAN_BUF, POP3D_MAILBUF: what the scanner reads at a time. */
#define SCAN_SIZE	POP3D_MAILBUF
/* Inputs up to this size are also scanned behind the filler. */
#define BIG_MAX		(64 * 1024)
/* RETR and TOP are checked on this many messages of an input. */
#define SEND_MAX	16

static const char head[] = "From fuzz@example.org Mon Jan  1 00:00:00 2024\n\n";

/* What the reference says of one message. */
struct ref {
	uint64_t	 off, data, len, hdrlen, size;
	unsigned char	 uid[16];
	uint32_t	 dup;
};

struct reflist {
	struct ref	*m;
	size_t		 n, cap;
};

/*
 * The input alone (a file: RETR's checks look at its path), the input
 * behind a filler, and what io writes.
 */
static int	 small_fd = -1, big_fd = -1, out_fd = -1;
static char	 dir[128], small_path[256];
static struct io io;
static struct buf expect, got;
static struct reflist refs;
/* The filler file: head, 'x' bytes, then the input (mirrored in big). */
static unsigned char *big;
static size_t big_len, big_dirty_from = SIZE_MAX, big_dirty_to;

/* A complete line that is empty: LF or CRLF alone. */
static int
empty_line(const unsigned char *l, size_t len)
{
	return (len == 1 && l[0] == '\n') ||
	    (len == 2 && l[0] == '\r' && l[1] == '\n');
}

/* Through the first empty line, or everything. */
static uint64_t
ref_hdrlen(const unsigned char *p, size_t n)
{
	size_t pos = 0;

	while (pos < n) {
		size_t end = line_end(p, n, pos);

		if (empty_line(p + pos, end - pos))
			return end;
		pos = end;
	}
	return n;
}

/* Headers that mail readers rewrite; left out of the UIDL (DESIGN.md). */
static int
ref_volatile(const unsigned char *l, size_t len)
{
	static const char *const names[] = { "Status", "X-Status",
	    "X-Keywords", "X-UID", "Content-Length", "Lines" };
	const unsigned char *colon = memchr(l, ':', len);
	size_t n, i;

	if (colon == NULL)
		return 0;
	n = (size_t)(colon - l);
	if (n >= 6 && strncasecmp((const char *)l, "X-IMAP", 6) == 0)
		return 1;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (n == strlen(names[i]) &&
		    strncasecmp((const char *)l, names[i], n) == 0)
			return 1;
	return 0;
}

/*
 * The digest behind a UIDL: the "From " line and the header lines up to
 * the empty line, without the volatile headers and their continuations.
 */
static void
ref_uid(const unsigned char *p, const struct ref *r, size_t cend,
    unsigned char uid[16])
{
	struct uidhash h;
	size_t pos = (size_t)r->data;
	int skip = 0;

	uidhash_init(&h);
	uidhash_update(&h, p + r->off, (size_t)(r->data - r->off));
	while (pos < cend) {
		size_t end = line_end(p, cend, pos);

		if (empty_line(p + pos, end - pos))
			break;
		if (p[pos] != ' ' && p[pos] != '\t')
			skip = ref_volatile(p + pos, end - pos);
		if (!skip)
			uidhash_update(&h, p + pos, end - pos);
		pos = end;
	}
	uidhash_final(&h, uid);
}

/*
 * The reference scan.  A message starts at a "From " line at the start of
 * the file or after an empty line and runs to the next one; the "From "
 * line is not part of it, and neither is the empty line before the next
 * one (or a last empty line at the end of the file).  -1 when the file
 * does not start with "From ".
 */
static int
ref_scan(const unsigned char *p, size_t n, struct reflist *rl)
{
	size_t pos = 0, i, j;
	int prev_empty = 1;

	rl->n = 0;
	while (pos < n) {
		size_t end = line_end(p, n, pos), len = end - pos;

		if (prev_empty && len >= 5 && memcmp(p + pos, "From ", 5) == 0) {
			if (rl->n == rl->cap) {
				rl->cap = rl->cap > 0 ? rl->cap * 2 : 64;
				rl->m = reallocarray(rl->m, rl->cap,
				    sizeof(*rl->m));
				CHECK(rl->m != NULL);
			}
			memset(&rl->m[rl->n], 0, sizeof(rl->m[0]));
			rl->m[rl->n].off = pos;
			rl->m[rl->n].data = end;
			rl->n++;
			prev_empty = 0;
		} else if (rl->n == 0)
			return -1;
		else
			prev_empty = empty_line(p + pos, len);
		pos = end;
	}
	for (i = 0; i < rl->n; i++) {
		struct ref *r = &rl->m[i];
		size_t cend = i + 1 < rl->n ? (size_t)rl->m[i + 1].off : n;
		const unsigned char *c = p + r->data;
		size_t clen = cend - (size_t)r->data;

		/* A last empty line is the separator. */
		if (clen >= 1 && c[clen - 1] == '\n') {
			if (clen == 1 || c[clen - 2] == '\n')
				clen -= 1;
			else if (c[clen - 2] == '\r' &&
			    (clen == 2 || c[clen - 3] == '\n'))
				clen -= 2;
		}
		r->len = clen;
		r->hdrlen = ref_hdrlen(c, clen);
		r->size = ref_octets(c, clen);
		ref_uid(p, r, cend, r->uid);
		for (j = 0; j < i; j++)
			if (memcmp(rl->m[j].uid, r->uid, 16) == 0)
				r->dup++;
	}
	return 0;
}

/* Appends stored lines as sent, stuffed (RFC 1939 §3); at most max. */
static void
ref_send_lines(struct buf *out, const unsigned char *p, size_t n,
    long long max)
{
	size_t pos = 0;

	while (pos < n && max != 0) {
		size_t end = line_end(p, n, pos);

		if (p[pos] == '.')
			buf_add(out, ".", 1);
		buf_add(out, p + pos, line_text(p + pos, end - pos));
		buf_add(out, "\r\n", 2);
		pos = end;
		if (max > 0)
			max--;
	}
}

/* RETR (lines < 0) or TOP of a message as it must go out. */
static void
ref_send(struct buf *out, const unsigned char *p, const struct ref *r,
    long long lines)
{
	const unsigned char *c = p + r->data;

	out->len = 0;
	if (lines < 0)
		ref_send_lines(out, c, (size_t)r->len, -1);
	else {
		ref_send_lines(out, c, (size_t)r->hdrlen, -1);
		ref_send_lines(out, c + r->hdrlen,
		    (size_t)(r->len - r->hdrlen), lines);
	}
	buf_add(out, ".\r\n", 3);
}

/*
 * Takes what io has sent, and empties it: from its buffer when it has
 * not had to write yet (the usual case, and cheaper), else from out_fd.
 */
static void
take_output(struct buf *b)
{
	off_t n;

	if (lseek(out_fd, 0, SEEK_CUR) == 0) {
		CHECK(io.err == 0);
		b->len = 0;
		buf_add(b, io.outbuf, io.outlen);
		io.outlen = 0;
		return;
	}
	CHECK(io_flush(&io) == 0);
	n = lseek(out_fd, 0, SEEK_CUR);
	CHECK(n >= 0);
	b->len = 0;
	buf_add(b, NULL, (size_t)n);
	CHECK(pread(out_fd, b->p, (size_t)n, 0) == n);
	CHECK(ftruncate(out_fd, 0) == 0);
	CHECK(lseek(out_fd, 0, SEEK_SET) == 0);
}

static void
same_output(const struct buf *a, const struct buf *b)
{
	CHECK(a->len == b->len);
	CHECK(a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

/* The input is the whole file small_fd. */
static void
set_small(const void *p, size_t n)
{
	CHECK(ftruncate(small_fd, 0) == 0);
	CHECK(n == 0 || pwrite(small_fd, p, n, 0) == (ssize_t)n);
}

static int
str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every UIDL is printable, bounded, and unlike all the others. */
static void
check_uidls(const struct maildrop *md)
{
	char (*ids)[POP3D_UIDL_MAX + 1];
	char **sorted;
	size_t i, j;

	if (md->count == 0)
		return;
	ids = calloc(md->count, sizeof(*ids));
	sorted = calloc(md->count, sizeof(*sorted));
	CHECK(ids != NULL && sorted != NULL);
	for (i = 0; i < md->count; i++) {
		memset(ids[i], 0x7f, sizeof(ids[i]));
		maildrop_uidl(md, i, ids[i]);
		CHECK(memchr(ids[i], '\0', sizeof(ids[i])) != NULL);
		CHECK(ids[i][0] != '\0');
		for (j = 0; ids[i][j] != '\0'; j++)
			CHECK(ids[i][j] > 0x20 && ids[i][j] < 0x7f);
		sorted[i] = ids[i];
	}
	qsort(sorted, md->count, sizeof(*sorted), str_cmp);
	for (i = 1; i < md->count; i++)
		CHECK(strcmp(sorted[i - 1], sorted[i]) != 0);
	free(sorted);
	free(ids);
}

/*
 * Feeds stored bytes to the writer in pieces of 1 to 5 bytes, as stream()
 * in mbox.c does with its buffer: the output must not depend on where the
 * pieces end.
 */
static void
write_pieces(const unsigned char *p, const struct ref *r, long long lines,
    size_t seed)
{
	const unsigned char *c = p + r->data;
	size_t pos = 0, k = seed;
	long long left = lines;

	io_body_begin(&io);
	if (lines >= 0) {
		/* TOP: the header whole-line, then the counted body. */
		for (pos = 0; pos < r->hdrlen; ) {
			size_t want = 1 + k++ % 5;

			if (want > r->hdrlen - pos)
				want = (size_t)r->hdrlen - pos;
			CHECK(io_body_write(&io, c + pos, want, NULL) == want);
			pos += want;
		}
	}
	while (pos < r->len) {
		size_t want = 1 + k++ % 5, used;

		if (want > r->len - pos)
			want = (size_t)r->len - pos;
		used = io_body_write(&io, c + pos, want,
		    lines >= 0 ? &left : NULL);
		CHECK(used <= want);
		if (lines >= 0 && left == 0)
			break;
		CHECK(used == want);
		pos += used;
	}
	io_body_end(&io);
}

/* RETR and TOP of the first messages, through mbox_ops and in pieces. */
static void
check_sends(struct maildrop *md, int fd, const unsigned char *p)
{
	struct stat st;
	size_t i;

	CHECK(fstat(fd, &st) == 0);
	md->ops = &mbox_ops;
	md->fd = fd;
	md->path = small_path;
	md->id.dev = st.st_dev;
	md->id.ino = st.st_ino;
	io_init(&io, -1, out_fd, 5);
	for (i = 0; i < md->count && i < SEND_MAX; i++) {
		const struct ref *r = &refs.m[i];
		long long tops[] = { -1, 0, 1 + (long long)(i % 3), LLONG_MAX };
		size_t t;

		/* Nothing changed the file: every message can be sent. */
		CHECK(maildrop_check(md, i, -1) == MD_OK);
		for (t = 0; t < sizeof(tops) / sizeof(tops[0]); t++) {
			ref_send(&expect, p, r, tops[t]);
			CHECK(maildrop_send(md, &io, i, tops[t]) == MD_OK);
			take_output(&got);
			same_output(&got, &expect);
			write_pieces(p, r, tops[t], i + t);
			take_output(&got);
			same_output(&got, &expect);
		}
	}
	md->ops = NULL;
	md->fd = -1;
	md->path = NULL;
}

/*
 * Scans fd, whose n bytes are p, and compares with the reference.  send:
 * also checks RETR and TOP.
 */
static void
scan_and_check(int fd, const unsigned char *p, size_t n, int send)
{
	struct maildrop md;
	int want, r;
	size_t i, j;
	uint32_t shared;

	memset(&md, 0, sizeof(md));
	md.fd = -1;
	md.lockfd = -1;
	want = ref_scan(p, n, &refs);
	errno = 0;
	r = mbox_scan(&md, fd, n);
	if (want == -1) {
		CHECK(r == -1 && errno == EINVAL);
	} else {
		CHECK(r == 0);
		CHECK(md.end == n);
		CHECK(md.count == refs.n);
		for (i = 0; i < md.count; i++) {
			const struct mbox_msg *m = &md.loc.mbox[i];
			const struct ref *x = &refs.m[i];

			CHECK(m->off == x->off);
			CHECK(m->data == x->data);
			CHECK(m->len == x->len);
			CHECK(m->hdrlen == x->hdrlen);
			CHECK(md.msgs[i].size == x->size);
			CHECK(memcmp(m->uid, x->uid, 16) == 0);
			CHECK(md.msgs[i].dup == x->dup);
			/* MSG_SHARED: exactly the messages with a copy. */
			shared = 0;
			for (j = 0; j < refs.n; j++)
				if (j != i && memcmp(refs.m[j].uid, x->uid,
				    16) == 0)
					shared = MSG_SHARED;
			CHECK(md.msgs[i].flags == shared);
		}
		md.ops = &mbox_ops;
		check_uidls(&md);
		md.ops = NULL;
		if (send)
			check_sends(&md, fd, p);
	}
	maildrop_free_table(&md);
}

/*
 * Puts sep and tail (n bytes) at offset at of the filler file big_fd, and
 * 'x' back where the last tail was, writing only what changed: big and
 * the file stay the same bytes.  The file is then big_len long.
 */
static void
big_set(size_t at, const char *sep, const uint8_t *tail, size_t n)
{
	size_t seplen = strlen(sep), from, to;

	if (big_dirty_from != SIZE_MAX)
		memset(big + big_dirty_from, 'x', big_dirty_to -
		    big_dirty_from);
	memcpy(big + at, sep, seplen);
	if (n > 0)
		memcpy(big + at + seplen, tail, n);
	big_len = at + seplen + n;
	from = big_dirty_from < at ? big_dirty_from : at;
	to = big_dirty_to > big_len ? big_dirty_to : big_len;
	if (to > big_len)
		to = big_len;
	CHECK(ftruncate(big_fd, (off_t)big_len) == 0);
	CHECK(pwrite(big_fd, big + from, to - from, (off_t)from) ==
	    (ssize_t)(to - from));
	big_dirty_from = at;
	big_dirty_to = big_len;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_report_init();
	log_init(1);
	fuzz_tmpdir(dir, sizeof(dir));
	CHECK((size_t)snprintf(small_path, sizeof(small_path), "%s/mbox",
	    dir) < sizeof(small_path));
	small_fd = open(small_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
	    0600);
	big_fd = memfd_create("fuzz-mbox-big", MFD_CLOEXEC);
	out_fd = memfd_create("fuzz-out", MFD_CLOEXEC);
	big = malloc(SCAN_SIZE + sizeof(head) + BIG_MAX + 8);
	CHECK(small_fd != -1 && big_fd != -1 && out_fd != -1 && big != NULL);
	memcpy(big, head, sizeof(head) - 1);
	memset(big + sizeof(head) - 1, 'x', SCAN_SIZE + 1);
	big_len = sizeof(head) - 1 + SCAN_SIZE + 1;
	CHECK(pwrite(big_fd, big, big_len, 0) == (ssize_t)big_len);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t hlen = sizeof(head) - 1, k;
	const uint8_t *lf;

	/* The input alone. */
	set_small(data, size);
	scan_and_check(small_fd, data, size, 1);
	if (size > BIG_MAX)
		return 0;
	/*
	 * Behind a filler, one way per input (a 1 MB scan is slow under
	 * ASan), chosen by the size so that the fuzzer can reach each.
	 */
	lf = size > 0 ? memchr(data, '\n', size) : NULL;
	k = lf != NULL ? (size_t)(lf - data) : size;
	switch (size % 3) {
	case 1:
		if (k > 0)
			k--;
		/* FALLTHROUGH */
	case 0:
		/*
		 * A filler line that ends in the input: the scanner's buffer
		 * ends k bytes into the input, just before its first LF (or
		 * one byte earlier), so that the LF (or a CR before it)
		 * arrives in a piece of its own.
		 */
		big_set(hlen + SCAN_SIZE - k, "", data, size);
		break;
	default:
		/*
		 * A filler message: the first buffer ends in the middle of
		 * the input, so that the line there is read again from its
		 * start.
		 */
		k = size / 2;
		big_set(SCAN_SIZE - k - 2, "\n\n", data, size);
		break;
	}
	scan_and_check(big_fd, big, big_len, 0);
	return 0;
}
