/*
 * test_mbox.c: the mbox scanner, the UIDL digest and RETR/TOP of an mbox
 * (mbox.c, maildrop.c).
 *
 * Every expected field comes from the mbox builder in unit.h, which knows
 * where it put each message, and from reference functions written from
 * the rules, never from the library.
 */
#include "unit.h"

TestSuite(reference, .fini = unit_cleanup);
TestSuite(scan, .fini = unit_cleanup);
TestSuite(uidl, .fini = unit_cleanup);
TestSuite(send, .fini = unit_cleanup);
TestSuite(open, .fini = unit_cleanup);

/* Scans bytes into a zeroed maildrop; the result of mbox_scan. */
static int
scan(const void *p, size_t n, struct maildrop *md, int *err)
{
	int fd = tmpfd(), r;

	write_all(fd, p, n);
	memset(md, 0, sizeof(*md));
	errno = 0;
	r = mbox_scan(md, fd, n);
	if (err != NULL)
		*err = errno;
	close(fd);
	md->fd = -1;
	md->lockfd = -1;	/* as maildrop_open leaves it */
	md->ops = &mbox_ops;
	return r;
}

static void
release(struct maildrop *md)
{
	md->fd = -1;
	maildrop_close(md);
}

static void
check_uidl_format(const struct maildrop *md, size_t i)
{
	char uid[POP3D_UIDL_MAX + 1 + 16];
	size_t j, n;

	memset(uid, 'Q', sizeof(uid));
	maildrop_uidl(md, i, uid);
	n = strnlen(uid, POP3D_UIDL_MAX + 1);
	cr_assert(n >= 1 && n <= POP3D_UIDL_MAX, "msg %zu: UIDL of %zu chars",
	    i + 1, n);
	for (j = 0; j < n; j++)
		cr_assert((unsigned char)uid[j] >= 0x21 &&
		    (unsigned char)uid[j] <= 0x7e,
		    "msg %zu: UIDL byte 0x%02x", i + 1, (unsigned char)uid[j]);
}

/* The table matches the builder, field by field. */
static void
check_table(const struct maildrop *md, const struct ref_mbox *b)
{
	size_t i, n;
	uint64_t total = 0, octets;

	cr_assert_eq(md->count, b->n, "%zu messages, expected %zu", md->count,
	    b->n);
	for (i = 0; i < b->n; i++) {
		const struct mbox_msg *m = &md->loc.mbox[i];
		const struct ref_msg *r = &b->m[i];

		cr_assert_eq(m->off, r->off, "msg %zu: off %llu, expected %llu",
		    i + 1, (unsigned long long)m->off,
		    (unsigned long long)r->off);
		cr_assert_eq(m->data, r->data, "msg %zu: data %llu, expected "
		    "%llu", i + 1, (unsigned long long)m->data,
		    (unsigned long long)r->data);
		cr_assert_eq(m->len, r->len, "msg %zu: len %llu, expected %llu",
		    i + 1, (unsigned long long)m->len,
		    (unsigned long long)r->len);
		cr_assert_eq(m->hdrlen, r->hdrlen, "msg %zu: hdrlen %llu, "
		    "expected %llu", i + 1, (unsigned long long)m->hdrlen,
		    (unsigned long long)r->hdrlen);
		cr_assert_eq(md->msgs[i].size, r->size, "msg %zu: size %llu, "
		    "expected %llu", i + 1,
		    (unsigned long long)md->msgs[i].size,
		    (unsigned long long)r->size);
		check_uidl_format(md, i);
		total += r->size;
	}
	maildrop_stat(md, &n, &octets);
	cr_assert_eq(n, b->n);
	cr_assert_eq(octets, total, "STAT octets %llu, expected %llu",
	    (unsigned long long)octets, (unsigned long long)total);
}

static void
scan_check(const struct ref_mbox *b)
{
	struct maildrop md;

	cr_assert_eq(scan(b->file.p, b->file.len, &md, NULL), 0,
	    "mbox_scan failed: %s", strerror(errno));
	check_table(&md, b);
	release(&md);
}

/* The reference itself, on the examples of the rules. */
Test(reference, octets)
{
	cr_assert_eq(ref_octets((const unsigned char *)"a\nb\n", 4), 6);
	cr_assert_eq(ref_octets((const unsigned char *)"a\r\nb\r\n", 6), 6);
	cr_assert_eq(ref_octets((const unsigned char *)"a\nb", 3), 6);
	cr_assert_eq(ref_octets((const unsigned char *)"a\nb\r", 4), 6);
	cr_assert_eq(ref_octets((const unsigned char *)"a\rb\n", 4), 5);
	cr_assert_eq(ref_octets((const unsigned char *)"", 0), 0);
	cr_assert_eq(ref_hdrlen((const unsigned char *)"A: b\n\nc\n", 8), 6);
	cr_assert_eq(ref_hdrlen((const unsigned char *)"A: b\r\n\r\nc", 9), 8);
	cr_assert_eq(ref_hdrlen((const unsigned char *)"A: b\nc\n", 7), 7);
}

/* Boundaries */

Test(scan, three_messages)
{
	struct ref_mbox b = { 0 };

	ref_mbox_adds(&b, ENV, "From: a@x\nSubject: one\n\nbody one\n", "\n");
	ref_mbox_adds(&b, ENV2, "Subject: two\n\nline\nline\n", "\n");
	ref_mbox_adds(&b, ENV, "Subject: three\n\nlast\n", "\n");
	scan_check(&b);
	/* Spelled out once, so that the builder is checked too. */
	cr_assert_eq(b.m[0].off, 0);
	cr_assert_eq(b.m[0].data, strlen(ENV));
	cr_assert_eq(b.m[0].len, 33);
	cr_assert_eq(b.m[0].hdrlen, 24);
	cr_assert_eq(b.m[0].size, 37);
	cr_assert_eq(b.m[1].off, strlen(ENV) + 33 + 1);
	ref_mbox_free(&b);
}

Test(scan, no_trailing_empty_line)
{
	struct ref_mbox b = { 0 };

	ref_mbox_adds(&b, ENV, "Subject: one\n\nbody one\n", "\n");
	ref_mbox_adds(&b, ENV2, "Subject: two\n\nbody two\n", "");
	scan_check(&b);
	ref_mbox_free(&b);
}

Test(scan, crlf_mbox)
{
	struct ref_mbox b = { 0 };

	ref_mbox_adds(&b, "From a@x Mon Jan  1 00:00:00 2024\r\n",
	    "Subject: one\r\n\r\nbody\r\n.\r\n", "\r\n");
	ref_mbox_adds(&b, "From b@x Mon Jan  1 00:00:00 2024\r\n",
	    "Subject: two\r\n\r\nx\r\n", "\r\n");
	ref_mbox_adds(&b, "From c@x Mon Jan  1 00:00:00 2024\r\n",
	    "Subject: three\r\n\r\ny\r\n", "");
	scan_check(&b);
	cr_assert_eq(b.m[0].size, b.m[0].len);
	ref_mbox_free(&b);
}

Test(scan, crlf_separator_in_lf_mbox)
{
	struct ref_mbox b = { 0 };

	ref_mbox_adds(&b, ENV, "Subject: one\n\nbody\n", "\r\n");
	ref_mbox_adds(&b, ENV2, "Subject: two\n\nbody\n", "\r\n");
	scan_check(&b);
	ref_mbox_free(&b);
}

Test(scan, from_not_after_empty_line_is_text)
{
	struct ref_mbox b = { 0 };

	ref_mbox_adds(&b, ENV, "Subject: x\n\nhello\nFrom me to you\nbye\n",
	    "\n");
	ref_mbox_adds(&b, ENV, "Subject: y\n\nhi\nFrom here\nFrom there\n",
	    "\n");
	scan_check(&b);
	ref_mbox_free(&b);
}

Test(scan, from_line_right_after_envelope_is_text)
{
	struct ref_mbox b = { 0 };

	ref_mbox_adds(&b, ENV, "From someone else\nSubject: x\n\nbody\n",
	    "\n");
	scan_check(&b);
	ref_mbox_free(&b);
}

Test(scan, quoted_and_lookalike_from_lines_are_text)
{
	struct ref_mbox b = { 0 };

	ref_mbox_adds(&b, ENV, "Subject: x\n\npara\n\n>From here\n\n"
	    ">>From there\n\nFrom: a header lookalike\n\nfrom lower case\n\n"
	    "From\n\n From indented\n", "\n");
	ref_mbox_adds(&b, ENV2, "Subject: y\n\nz\n", "\n");
	scan_check(&b);
	ref_mbox_free(&b);
}

/* A "From " line after any empty line starts a message, even the header
 * separator. */
Test(scan, boundary_after_any_empty_line)
{
	struct ref_mbox b = { 0 };

	ref_mbox_adds(&b, ENV, "Subject: x\n", "\n");
	ref_mbox_adds(&b, "From y\n", "T: z\n", "");
	scan_check(&b);
	cr_assert_eq(b.m[0].hdrlen, b.m[0].len);
	ref_mbox_free(&b);
}

Test(scan, empty_lines_at_message_end_are_kept_but_one)
{
	struct ref_mbox b = { 0 };

	ref_mbox_adds(&b, ENV, "Subject: x\n\nbody\n\n\n", "\n");
	ref_mbox_adds(&b, ENV, "Subject: y\n\nbody\r\n\r\n", "\r\n");
	ref_mbox_adds(&b, ENV, "Subject: z\n\nbody\n\n", "\n");
	scan_check(&b);
	ref_mbox_free(&b);
}

Test(scan, empty_message)
{
	struct ref_mbox b = { 0 };

	ref_mbox_adds(&b, ENV, "", "\n");
	ref_mbox_adds(&b, ENV2, "Subject: x\n\nb\n", "");
	scan_check(&b);
	cr_assert_eq(b.m[0].len, 0);
	cr_assert_eq(b.m[0].size, 0);
	ref_mbox_free(&b);
}

Test(scan, message_without_body)
{
	struct ref_mbox b = { 0 };

	ref_mbox_adds(&b, ENV, "Subject: x\nTo: y\n", "\n");
	ref_mbox_adds(&b, ENV, "Subject: y\r\nTo: z\r\n", "\r\n");
	ref_mbox_adds(&b, ENV, "Subject: z\nTo: w\n", "");
	scan_check(&b);
	cr_assert_eq(b.m[0].hdrlen, b.m[0].len);
	cr_assert_eq(b.m[2].hdrlen, b.m[2].len);
	ref_mbox_free(&b);
}

Test(scan, last_line_without_newline)
{
	struct ref_mbox b = { 0 };

	ref_mbox_adds(&b, ENV, "Subject: x\n\nbody\n", "\n");
	ref_mbox_adds(&b, ENV, "Subject: y\n\nlast", "");
	scan_check(&b);
	cr_assert_eq(b.m[1].size, 12 + 2 + 6);
	ref_mbox_free(&b);
}

Test(scan, last_line_ends_in_cr)
{
	struct ref_mbox b = { 0 };

	ref_mbox_adds(&b, ENV, "Subject: y\r\n\r\nlast\r", "");
	scan_check(&b);
	cr_assert_eq(b.m[0].size, 12 + 2 + 6);
	ref_mbox_free(&b);
}

Test(scan, header_only_last_line_without_newline)
{
	struct ref_mbox b = { 0 };

	ref_mbox_adds(&b, ENV, "Subject: y\nTo: z", "");
	scan_check(&b);
	ref_mbox_free(&b);
}

Test(scan, nul_and_8bit_bytes)
{
	static const char m1[] = "Subject: \xe9t\xe9\n\nab\0cd\n\x80\xff\n\0\n"
	    "\r\0\r\n";
	static const char m2[] = "S: \0\n\n\xff";
	struct ref_mbox b = { 0 };

	ref_mbox_add(&b, ENV, m1, sizeof(m1) - 1, "\n");
	ref_mbox_add(&b, ENV, m2, sizeof(m2) - 1, "");
	scan_check(&b);
	ref_mbox_free(&b);
}

Test(scan, bare_cr_in_lines)
{
	struct ref_mbox b = { 0 };

	ref_mbox_adds(&b, ENV, "Subject: a\rb\n\nx\ry\r\r\n\r\n\r\r\n", "\n");
	ref_mbox_adds(&b, ENV, "Subject: c\n\n\r\n", "\n");
	scan_check(&b);
	ref_mbox_free(&b);
}

/* Lines longer than any buffer the scanner may use. */
Test(scan, very_long_lines, .timeout = 60)
{
	struct ref_mbox b = { 0 };
	struct buf m = { 0 };

	buf_adds(&m, "Subject: big\n\n");
	buf_addc(&m, 'y', 3 * 1024 * 1024 + 17);
	buf_adds(&m, "\nend\n");
	ref_mbox_add(&b, ENV, m.p, m.len, "\n");
	m.len = 0;
	/* A header line of 2.5 MB, no body. */
	buf_adds(&m, "X-Long: ");
	buf_addc(&m, 'h', 5 * 512 * 1024);
	buf_adds(&m, "\r\n");
	ref_mbox_add(&b, ENV2, m.p, m.len, "\n");
	m.len = 0;
	buf_adds(&m, "Subject: tail\n\n");
	buf_addc(&m, '.', 2 * 1024 * 1024 + 1);
	buf_adds(&m, "\r");
	ref_mbox_add(&b, ENV, m.p, m.len, "");
	scan_check(&b);
	buf_free(&m);
	ref_mbox_free(&b);
}

Test(scan, zero_length_file)
{
	struct maildrop md;

	cr_assert_eq(scan("", 0, &md, NULL), 0);
	cr_assert_eq(md.count, 0);
	release(&md);
}

static void
not_mbox(const char *s)
{
	struct maildrop md;
	int err = 0;

	cr_assert_eq(scan(s, strlen(s), &md, &err), -1, "\"%s\" accepted", s);
	cr_assert_eq(err, EINVAL, "errno %d for \"%s\"", err, s);
	release(&md);
}

Test(scan, not_an_mbox)
{
	not_mbox("Subject: x\n\nhi\n");
	not_mbox("From:x@y\n\nhi\n");
	not_mbox("from x@y\n\nhi\n");
	not_mbox(">From x@y\n\nhi\n");
	not_mbox(" From x@y\n\nhi\n");
	not_mbox("\nFrom x@y\n\nhi\n");
	not_mbox("x");
}

Test(scan, stat_skips_deleted)
{
	struct ref_mbox b = { 0 };
	struct maildrop md;
	size_t n;
	uint64_t octets;

	ref_mbox_adds(&b, ENV, "S: 1\n\na\n", "\n");
	ref_mbox_adds(&b, ENV, "S: 22\n\nbb\n", "\n");
	ref_mbox_adds(&b, ENV, "S: 333\n\nccc\n", "\n");
	cr_assert_eq(scan(b.file.p, b.file.len, &md, NULL), 0);
	md.msgs[1].flags |= MSG_DELETED;
	maildrop_stat(&md, &n, &octets);
	cr_assert_eq(n, 2);
	cr_assert_eq(octets, b.m[0].size + b.m[2].size);
	release(&md);
	ref_mbox_free(&b);
}

static int
str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* All UIDLs of a maildrop are distinct. */
static void
check_uidls_unique(const struct maildrop *md)
{
	char **ids = calloc(md->count + 1, sizeof(*ids));
	size_t i;

	cr_assert_not_null(ids);
	for (i = 0; i < md->count; i++) {
		ids[i] = malloc(POP3D_UIDL_MAX + 1);
		cr_assert_not_null(ids[i]);
		maildrop_uidl(md, i, ids[i]);
	}
	qsort(ids, md->count, sizeof(*ids), str_cmp);
	for (i = 1; i < md->count; i++)
		cr_assert(strcmp(ids[i - 1], ids[i]) != 0,
		    "UIDL %s appears twice", ids[i]);
	for (i = 0; i < md->count; i++)
		free(ids[i]);
	free(ids);
}

Test(scan, random_mboxes, .timeout = 120)
{
	uint64_t seed;

	for (seed = 1; seed <= 6; seed++) {
		struct ref_mbox b = { 0 };
		struct maildrop md;

		gen_mbox(seed * 7919, 300, &b);
		cr_assert_eq(scan(b.file.p, b.file.len, &md, NULL), 0);
		check_table(&md, &b);
		check_uidls_unique(&md);
		release(&md);
		ref_mbox_free(&b);
	}
}

/*
 * Body lines in bulk (bulk_body() in mbox.c, in 64-byte vector blocks
 * where the CPU has them), checked against a model that knows nothing of
 * blocks: any bytes, split into lines, then into messages by the rules.
 */
struct model_msg {
	uint64_t	 off, data, len, hdrlen, size;
};

/*
 * A message starts at a "From " line at the start of the file or after
 * an empty line ("\n" or "\r\n"), which is not part of it; nor is the
 * empty line that ends it before the next one or at the end of the file.
 * Returns the count; the file must start with "From ".
 */
static size_t
model_scan(const unsigned char *p, size_t n, struct model_msg **out)
{
	struct model_msg *m = NULL;
	size_t count = 0, pos = 0, i;
	int prev_empty = 1;

	while (pos < n) {
		const unsigned char *lf = memchr(p + pos, '\n', n - pos);
		size_t end = lf != NULL ? (size_t)(lf - p) + 1 : n;
		size_t len = end - pos;

		if (prev_empty && len >= 5 &&
		    memcmp(p + pos, "From ", 5) == 0) {
			m = realloc(m, (count + 1) * sizeof(*m));
			cr_assert_not_null(m);
			memset(&m[count], 0, sizeof(*m));
			m[count].off = pos;
			m[count++].data = end;
			prev_empty = 0;
		} else {
			cr_assert(count > 0, "model: no \"From \" first");
			prev_empty = lf != NULL && (len == 1 ||
			    (len == 2 && p[pos] == '\r'));
		}
		pos = end;
	}
	for (i = 0; i < count; i++) {
		size_t start = (size_t)m[i].data, stop = i + 1 < count ?
		    (size_t)m[i + 1].off : n, last = start, len;

		/* The last line of the message, complete and empty: gone. */
		for (pos = start; pos < stop; pos++)
			if (p[pos] == '\n' && pos + 1 < stop)
				last = pos + 1;
		len = stop - last;
		if (stop > start && p[stop - 1] == '\n' && (len == 1 ||
		    (len == 2 && p[last] == '\r')))
			stop = last;
		m[i].len = stop - start;
		m[i].hdrlen = ref_hdrlen(p + start, stop - start);
		m[i].size = ref_octets(p + start, stop - start);
	}
	*out = m;
	return count;
}

/* The scanner and the model agree on f; what names the case. */
static void
model_check(const struct buf *f, const char *what)
{
	struct model_msg *exp;
	struct maildrop md;
	size_t n = model_scan(f->p, f->len, &exp), i;

	cr_assert_eq(scan(f->p, f->len, &md, NULL), 0, "%s: mbox_scan: %s",
	    what, strerror(errno));
	cr_assert_eq(md.count, n, "%s: %zu messages, expected %zu", what,
	    md.count, n);
	for (i = 0; i < n; i++) {
		const struct mbox_msg *m = &md.loc.mbox[i];
		const struct model_msg *x = &exp[i];
		uint64_t size = md.msgs[i].size;

		cr_assert(m->off == x->off && m->data == x->data,
		    "%s: msg %zu at %llu/%llu, expected %llu/%llu", what, i + 1,
		    (unsigned long long)m->off, (unsigned long long)m->data,
		    (unsigned long long)x->off, (unsigned long long)x->data);
		cr_assert(m->len == x->len && size == x->size &&
		    m->hdrlen == x->hdrlen, "%s: msg %zu: len %llu size %llu "
		    "hdrlen %llu, expected %llu %llu %llu", what, i + 1,
		    (unsigned long long)m->len, (unsigned long long)size,
		    (unsigned long long)m->hdrlen, (unsigned long long)x->len,
		    (unsigned long long)x->size, (unsigned long long)x->hdrlen);
	}
	release(&md);
	free(exp);
}

/*
 * A message whose body, after one line that piece() takes, is exactly
 * body: bulk_body() starts at its first byte.  Not last: two LFs end it,
 * a separator whatever the body's end.
 */
static void
bulk_msg(struct buf *f, const void *body, size_t n, int last)
{
	buf_adds(f, ENV "S: x\n\nfirst\n");
	buf_add(f, body, n);
	if (!last)
		buf_adds(f, "\n\n");
}

/*
 * n random bytes of LF, CR, "F", "x" and " ": LFs and CRs each from
 * none to dense, so that lines run from empty to far over 64 bytes.
 */
static void
rnd_body(uint64_t *seed, struct buf *b, size_t n)
{
	static const unsigned lfp[] = { 1, 2, 5, 15, 30, 50 };
	static const unsigned crp[] = { 0, 0, 2, 10, 25 };
	static const char other[] = "Fx ";
	unsigned pl = lfp[rnd_upto(seed, 6)], pc = crp[rnd_upto(seed, 5)];
	size_t i;

	for (i = 0; i < n; i++) {
		size_t r = rnd_upto(seed, 100);

		if (r < pl)
			buf_addc(b, '\n', 1);
		else if (r < pl + pc)
			buf_addc(b, '\r', 1);
		else
			buf_addc(b, (unsigned char)other[r % 3], 1);
	}
}

/* Every body length up to past three blocks, random bytes. */
Test(scan, bulk_random_bodies, .timeout = 120)
{
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	struct buf f = { 0 }, body = { 0 };
	char what[64];
	size_t len, k;

	for (len = 0; len <= 200; len++) {
		f.len = 0;
		for (k = 0; k < 8; k++) {
			body.len = 0;
			rnd_body(&seed, &body, len);
			bulk_msg(&f, body.p, body.len, k == 7);
		}
		snprintf(what, sizeof(what), "bodies of %zu bytes", len);
		model_check(&f, what);
	}
	buf_free(&f);
	buf_free(&body);
}

/* Bodies over the scanner's buffers, and a "From " after empty lines. */
Test(scan, bulk_large_bodies, .timeout = 120)
{
	uint64_t seed = 77;
	struct buf f = { 0 }, body = { 0 };
	char what[64];
	size_t k, j;

	for (k = 0; k < 6; k++) {
		f.len = 0;
		body.len = 0;
		for (j = 0; j < 3000; j++) {
			rnd_body(&seed, &body, rnd_upto(&seed, 600));
			if (rnd_upto(&seed, 4) == 0)
				buf_adds(&body, k % 2 ? "\r\n\r\n" : "\n\n");
			if (rnd_upto(&seed, 20) == 0)
				buf_adds(&body, "\nFrom text\n");
		}
		bulk_msg(&f, body.p, body.len, k % 3 == 0);
		bulk_msg(&f, body.p, body.len / 3, 1);
		snprintf(what, sizeof(what), "large bodies, round %zu", k);
		model_check(&f, what);
	}
	buf_free(&f);
	buf_free(&body);
}

/*
 * Complete lines of n bytes in all, none of them empty: of len bytes
 * (the last one takes the rest), fill bytes then eol.  -1 when n bytes
 * cannot be such lines.
 */
static int
fill_lines(struct buf *b, size_t n, size_t len, unsigned char fill,
    const char *eol)
{
	size_t el = strlen(eol);
	/* "\r\n" is empty: a CR fill needs a byte more before an LF. */
	size_t min = el + 1 + (fill == '\r' && el == 1);

	if (n > 0 && n < min)
		return -1;
	while (n > 0) {
		size_t l = len < min ? min : len;

		if (l > n || n - l < min)
			l = n;
		buf_addc(b, fill, l - el);
		buf_adds(b, eol);
		n -= l;
	}
	return 0;
}

/*
 * An empty line starting at each offset from the body's start, so at each
 * place in a block and across blocks: "\n" or "\r\n", after lines ending
 * in LF or CRLF, long or short or of CRs, with the bytes after it short
 * (the scalar tail) or long, and after it a "From " line or text.
 */
Test(scan, bulk_empty_line_everywhere, .timeout = 120)
{
	static const struct {
		size_t		 len;
		unsigned char	 fill;
		const char	*eol;
	} before[] = {
		{ SIZE_MAX, 'x', "\n" }, { SIZE_MAX, 'x', "\r\n" },
		{ 3, 'x', "\n" }, { 4, 'x', "\r\n" }, { 3, '\r', "\n" },
		{ 7, ' ', "\n" },
	};
	static const char *const empties[] = { "\n", "\r\n" };
	static const size_t tails[] = { 0, 1, 30, 200 };
	struct buf f = { 0 }, body = { 0 };
	char what[64];
	size_t at, v, e, t;

	for (at = 0; at <= 130; at++) {
		f.len = 0;
		for (v = 0; v < sizeof(before) / sizeof(before[0]); v++)
			for (e = 0; e < 2; e++)
				for (t = 0; t < 4; t++) {
					body.len = 0;
					if (fill_lines(&body, at,
					    before[v].len, before[v].fill,
					    before[v].eol) == -1)
						continue;
					buf_adds(&body, empties[e]);
					if (t % 2)
						buf_adds(&body, "From here\n");
					buf_addc(&body, 'y', tails[t]);
					buf_adds(&body, "\n");
					buf_addc(&body, 'z', tails[t]);
					bulk_msg(&f, body.p, body.len, 0);
				}
		bulk_msg(&f, "end\n", 4, 1);
		snprintf(what, sizeof(what), "empty line at %zu", at);
		model_check(&f, what);
	}
	buf_free(&f);
	buf_free(&body);
}

/*
 * A CR at each offset, before an LF or not, with a long run behind so
 * that it falls in the blocks: a CRLF counts one octet less than an LF
 * alone, wherever the pair falls.
 */
Test(scan, bulk_crlf_everywhere, .timeout = 120)
{
	struct buf f = { 0 }, body = { 0 };
	char what[64];
	size_t at, v;

	for (at = 0; at <= 130; at++) {
		f.len = 0;
		for (v = 0; v < 4; v++) {
			body.len = 0;
			buf_addc(&body, 'x', at);
			buf_adds(&body, v == 0 ? "\r\n" : v == 1 ? "\rx\n" :
			    v == 2 ? "\r\r\n" : "\r\n\r");
			buf_addc(&body, 'y', 150);
			buf_adds(&body, "\r\n");
			buf_addc(&body, 'z', 100);
			buf_adds(&body, "\n");
			bulk_msg(&f, body.p, body.len, v == 3);
		}
		snprintf(what, sizeof(what), "CR at %zu", at);
		model_check(&f, what);
	}
	buf_free(&f);
	buf_free(&body);
}

/*
 * Lines of 16 bytes or a divisor put up to four LFs a block in one byte
 * counter, for hundreds of blocks: the counters must not wrap.
 */
Test(scan, bulk_lf_counters)
{
	static const size_t lens[] = { 2, 4, 8, 16, 32, 64 };
	struct buf f = { 0 }, body = { 0 };
	size_t i, j;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		body.len = 0;
		for (j = 0; j < 20000 / lens[i]; j++) {
			buf_addc(&body, 'x', lens[i] - 1 - (j % 2 && i > 0));
			buf_adds(&body, j % 2 && i > 0 ? "\r\n" : "\n");
		}
		bulk_msg(&f, body.p, body.len, 0);
		body.len = 0;
		for (j = 0; j < 20000 / lens[i]; j++) {
			buf_addc(&body, 'x', lens[i] - 1);
			buf_adds(&body, "\n");
		}
		bulk_msg(&f, body.p, body.len, i + 1 == sizeof(lens) /
		    sizeof(lens[0]));
	}
	model_check(&f, "lines of 2 to 64 bytes");
	buf_free(&f);
	buf_free(&body);
}

/* UIDL */

/* The UIDL of message i of an mbox given as text. */
static void
uidl(const char *file, size_t i, char *out)
{
	struct maildrop md;

	cr_assert_eq(scan(file, strlen(file), &md, NULL), 0);
	cr_assert(i < md.count);
	maildrop_uidl(&md, i, out);
	release(&md);
}

#define HDR_A	"From: a@example.org\nTo: b@example.org\n"
#define HDR_B	"Subject: hello\nMessage-ID: <1@example.org>\n"

static const char *const base_msg = ENV HDR_A HDR_B "\nbody\n";

static void
same_uidl(const char *variant)
{
	char a[POP3D_UIDL_MAX + 1], b[POP3D_UIDL_MAX + 1];

	uidl(base_msg, 0, a);
	uidl(variant, 0, b);
	cr_assert_str_eq(a, b, "UIDL changed for:\n%s", variant);
}

static void
other_uidl(const char *variant)
{
	char a[POP3D_UIDL_MAX + 1], b[POP3D_UIDL_MAX + 1];

	uidl(base_msg, 0, a);
	uidl(variant, 0, b);
	cr_assert_str_neq(a, b, "UIDL unchanged for:\n%s", variant);
}

Test(uidl, stable_across_scans)
{
	same_uidl(base_msg);
}

Test(uidl, status_headers_left_out)
{
	same_uidl(ENV HDR_A HDR_B "Status: RO\n\nbody\n");
	same_uidl(ENV "Status: O\n" HDR_A HDR_B "\nbody\n");
	same_uidl(ENV HDR_A "Status: RO\nX-Status: A\n" HDR_B "\nbody\n");
	same_uidl(ENV HDR_A HDR_B "status: RO\n\nbody\n");
	same_uidl(ENV HDR_A HDR_B "STATUS:RO\n\nbody\n");
}

Test(uidl, reader_headers_left_out)
{
	same_uidl(ENV HDR_A HDR_B "X-Keywords: $Label1\n\nbody\n");
	same_uidl(ENV HDR_A HDR_B "X-UID: 17\n\nbody\n");
	same_uidl(ENV "X-IMAP: 1234567890 0000000017\n" HDR_A HDR_B
	    "\nbody\n");
	same_uidl(ENV "X-IMAPbase: 1234567890 17\n" HDR_A HDR_B "\nbody\n");
	same_uidl(ENV HDR_A HDR_B "Content-Length: 5\nLines: 1\n\nbody\n");
	same_uidl(ENV HDR_A HDR_B "content-length: 99\nLINES: 3\n"
	    "x-uid: 1\nx-imapBASE: 1 2\nx-status: F\nx-keywords: a\n\nbody\n");
}

Test(uidl, folded_continuations_left_out)
{
	same_uidl(ENV HDR_A "X-Keywords: $Label1\n $Label2\n\t$Label3\n"
	    HDR_B "\nbody\n");
	same_uidl(ENV HDR_A HDR_B "X-Keywords: a,\n b\n\nbody\n");
	same_uidl(ENV HDR_A "Status: RO\n  still status\n" HDR_B "\nbody\n");
}

Test(uidl, digest_covers_headers)
{
	other_uidl(ENV HDR_A "Subject: hullo\nMessage-ID: <1@example.org>\n"
	    "\nbody\n");
	other_uidl(ENV HDR_A HDR_B "X-Foo: 1\n\nbody\n");
	other_uidl(ENV HDR_A HDR_B "Received: by x\n\nbody\n");
	/* Only the exact names are left out. */
	other_uidl(ENV HDR_A HDR_B "Statusx: RO\n\nbody\n");
	other_uidl(ENV HDR_A HDR_B "X-Lines: 1\n\nbody\n");
	other_uidl(ENV HDR_A HDR_B "Content: x\n\nbody\n");
	other_uidl(ENV HDR_A HDR_B "Stat: 1\n\nbody\n");
	other_uidl(ENV HDR_A HDR_B "X-UI: 1\n\nbody\n");
	/* A header after a left-out folded one still counts. */
	other_uidl(ENV HDR_A "X-Keywords: a\n b\nSubject: other\n"
	    "Message-ID: <1@example.org>\n\nbody\n");
	/* So does the continuation of a header that counts. */
	other_uidl(ENV HDR_A "Subject: hello\n world\n"
	    "Message-ID: <1@example.org>\n\nbody\n");
}

Test(uidl, digest_covers_envelope)
{
	other_uidl(ENV2 HDR_A HDR_B "\nbody\n");
}

/*
 * The UIDL itself, pinned: SipHash-2-4-128 under the fixed key of the
 * envelope and the kept header lines, as a reference written from the
 * SipHash paper computes it.  A change breaks every client's list of
 * mail it has seen.
 */
Test(uidl, digest_value_pinned)
{
	char a[POP3D_UIDL_MAX + 1];

	uidl(ENV HDR_A "Status: RO\n" HDR_B "X-UID: 3\n\nbody\n", 0, a);
	cr_assert_str_eq(a, "f767e0ff8ae852140a64f58c85d8ec02");
}

Test(uidl, body_not_in_digest)
{
	same_uidl(ENV HDR_A HDR_B "\nanother body\nwith more lines\n");
	same_uidl(ENV HDR_A HDR_B "\n");
}

Test(uidl, identical_copies_distinct)
{
	char alone[POP3D_UIDL_MAX + 1], a[POP3D_UIDL_MAX + 1];
	char b[POP3D_UIDL_MAX + 1], c[POP3D_UIDL_MAX + 1];
	struct maildrop md;
	size_t i;
	const char *two = ENV HDR_A HDR_B "\nbody\n\n" ENV HDR_A HDR_B
	    "\nbody\n";
	const char *three = ENV HDR_A HDR_B "\nbody\n\n" ENV2 "S: x\n\ny\n\n"
	    ENV HDR_A HDR_B "\nbody\n\n" ENV HDR_A HDR_B "\nother body\n";

	uidl(base_msg, 0, alone);
	uidl(two, 0, a);
	uidl(two, 1, b);
	cr_assert_str_neq(a, b);
	cr_assert_str_eq(a, alone);

	cr_assert_eq(scan(three, strlen(three), &md, NULL), 0);
	cr_assert_eq(md.count, 4);
	maildrop_uidl(&md, 0, a);
	maildrop_uidl(&md, 2, b);
	maildrop_uidl(&md, 3, c);
	cr_assert_str_eq(a, alone);
	cr_assert_str_neq(a, b);
	cr_assert_str_neq(a, c);
	cr_assert_str_neq(b, c);
	for (i = 0; i < md.count; i++)
		check_uidl_format(&md, i);
	check_uidls_unique(&md);
	release(&md);
}

/* Stable when other messages go away or new ones arrive behind. */
Test(uidl, stable_across_other_changes)
{
	static const char *const m[] = {
		ENV "Subject: one\n\nbody\n",
		ENV2 "Subject: two\n\nbody\n",
		ENV "Subject: three\nStatus: O\n\nbody\n",
		ENV "Subject: four\n\nbody\n",
		ENV2 "Subject: five\n\nbody\n",
	};
	char full[4][POP3D_UIDL_MAX + 1], got[POP3D_UIDL_MAX + 1];
	struct buf f = { 0 };
	size_t i, k;

	for (i = 0; i < 4; i++) {
		buf_adds(&f, m[i]);
		buf_adds(&f, "\n");
	}
	for (i = 0; i < 4; i++)
		uidl((const char *)f.p, i, full[i]);
	/* Each one removed in turn. */
	for (k = 0; k < 4; k++) {
		size_t j = 0;

		f.len = 0;
		for (i = 0; i < 4; i++)
			if (i != k) {
				buf_adds(&f, m[i]);
				buf_adds(&f, "\n");
			}
		for (i = 0; i < 4; i++) {
			if (i == k)
				continue;
			uidl((const char *)f.p, j++, got);
			cr_assert_str_eq(got, full[i], "msg %zu changed when "
			    "msg %zu was removed", i + 1, k + 1);
		}
	}
	/* A new one appended. */
	f.len = 0;
	for (i = 0; i < 5; i++) {
		buf_adds(&f, m[i]);
		buf_adds(&f, "\n");
	}
	for (i = 0; i < 4; i++) {
		uidl((const char *)f.p, i, got);
		cr_assert_str_eq(got, full[i]);
	}
	buf_free(&f);
}

/* RETR and TOP through maildrop_send, over a socket */

struct drop {
	char		*dir;
	char		 path[512];
	struct maildrop	 md;
};

static void
drop_open(struct drop *d, const struct ref_mbox *b)
{
	d->dir = tmpdir_make();
	snprintf(d->path, sizeof(d->path), "%s/mbox", d->dir);
	file_write(d->path, b->file.p, b->file.len, 0600);
	cr_assert_eq(maildrop_open(&d->md, d->path), MD_OK);
	check_table(&d->md, b);
}

static void
drop_close(struct drop *d)
{
	maildrop_close(&d->md);
}

/* What maildrop_send wrote for message i with a line limit, unstuffed. */
static void
send_msg(struct maildrop *md, size_t i, long long lines, struct buf *out)
{
	struct capture cap;
	struct buf raw = { 0 };
	struct io *io;

	capture_start(&cap);
	io = io_auto(-1, cap.sock, 5);
	cr_assert_eq(maildrop_send(md, io, i, lines), MD_OK);
	cr_assert_eq(io_flush(io), 0);
	capture_end(&cap, &raw);
	unit_release(io);
	cr_assert_eq(unstuff(raw.p, raw.len, out), 0,
	    "msg %zu: malformed multi-line body (%zu bytes)", i + 1, raw.len);
	buf_free(&raw);
}

/* The stored bytes TOP sends: the header, then k body lines. */
static size_t
top_len(const unsigned char *msg, const struct ref_msg *r, long long k)
{
	size_t i = (size_t)r->hdrlen;

	while (k > 0 && i < r->len) {
		const unsigned char *lf = memchr(msg + i, '\n', r->len - i);

		if (lf == NULL)
			return (size_t)r->len;
		i = (size_t)(lf - msg) + 1;
		k--;
	}
	return i;
}

static void
check_send(struct maildrop *md, const struct ref_mbox *b, size_t i)
{
	const struct ref_msg *r = &b->m[i];
	const unsigned char *msg = b->file.p + r->data;
	struct buf got = { 0 }, exp = { 0 };
	long long k;

	send_msg(md, i, -1, &got);
	ref_crlf(msg, (size_t)r->len, &exp);
	assert_bytes(got.p, got.len, exp.p, exp.len, "RETR");
	cr_assert_eq(got.len, md->msgs[i].size, "msg %zu: sent %zu octets, "
	    "size says %llu", i + 1, got.len,
	    (unsigned long long)md->msgs[i].size);
	for (k = 0; k <= 3; k++) {
		got.len = exp.len = 0;
		send_msg(md, i, k, &got);
		ref_crlf(msg, top_len(msg, r, k), &exp);
		assert_bytes(got.p, got.len, exp.p, exp.len, "TOP");
	}
	got.len = exp.len = 0;
	send_msg(md, i, 1000000, &got);
	ref_crlf(msg, (size_t)r->len, &exp);
	assert_bytes(got.p, got.len, exp.p, exp.len, "TOP n 1000000");
	buf_free(&got);
	buf_free(&exp);
}

Test(send, retr_and_top, .timeout = 60)
{
	static const char m1[] = "Subject: one\n\n.first\n..second\n.\nx\n";
	static const char m2[] = "Subject: two\r\n\r\nFrom\r\n>From x\r\n"
	    "a\rb\r\n\r\n";
	static const char m3[] = "Subject: three\nTo: x\n";
	static const char m4[] = "S: \0\xff\n\n\0\n\r\nend\r";
	struct ref_mbox b = { 0 };
	struct drop d;
	size_t i;

	ref_mbox_add(&b, ENV, m1, sizeof(m1) - 1, "\n");
	ref_mbox_add(&b, ENV2, m2, sizeof(m2) - 1, "\r\n");
	ref_mbox_add(&b, ENV, m3, sizeof(m3) - 1, "\n");
	ref_mbox_add(&b, ENV, "", 0, "\n");
	ref_mbox_add(&b, ENV, m4, sizeof(m4) - 1, "");
	drop_open(&d, &b);
	for (i = 0; i < b.n; i++)
		check_send(&d.md, &b, i);
	drop_close(&d);
	ref_mbox_free(&b);
}

Test(send, random_mbox, .timeout = 120)
{
	struct ref_mbox b = { 0 };
	struct drop d;
	size_t i;

	gen_mbox(4242, 60, &b);
	drop_open(&d, &b);
	for (i = 0; i < b.n; i++)
		check_send(&d.md, &b, i);
	drop_close(&d);
	ref_mbox_free(&b);
}

Test(send, very_long_line, .timeout = 60)
{
	struct ref_mbox b = { 0 };
	struct buf m = { 0 }, got = { 0 }, exp = { 0 };
	struct drop d;

	buf_adds(&m, "Subject: big\n\n");
	buf_addc(&m, 'y', 3 * 1024 * 1024 + 5);
	buf_adds(&m, "\r\n.end\n");
	ref_mbox_add(&b, ENV, m.p, m.len, "\n");
	ref_mbox_adds(&b, ENV, "Subject: small\n\nz\n", "");
	drop_open(&d, &b);
	send_msg(&d.md, 0, -1, &got);
	ref_crlf(m.p, m.len, &exp);
	assert_bytes(got.p, got.len, exp.p, exp.len, "RETR 3 MB line");
	cr_assert_eq(got.len, d.md.msgs[0].size);
	check_send(&d.md, &b, 1);
	drop_close(&d);
	buf_free(&m);
	buf_free(&got);
	buf_free(&exp);
	ref_mbox_free(&b);
}

Test(open, not_an_mbox_refused)
{
	char *dir = tmpdir_make();
	char path[512];
	struct maildrop md;

	snprintf(path, sizeof(path), "%s/mbox", dir);
	file_write(path, "Subject: x\n\nhi\n", 15, 0600);
	cr_assert_neq(maildrop_open(&md, path), MD_OK);
	maildrop_close(&md);
}
