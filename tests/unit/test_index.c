/*
 * test_index.c: the mbox index (mboxindex.c, mbox_open's build_table).
 *
 * The rule under test: whatever the index says, the table a session gets
 * is the one a scan of the whole file gives, byte for byte (offsets,
 * sizes, digests, dup numbers), and an index that does not describe the
 * file exactly can never steer UPDATE.  Each test also checks how the
 * table was built (md.source), so that a build that always scans, or
 * never does, fails.
 *
 * mbox_settle is lowered to -1 so that files written by the test count as
 * settled and get indexed at once; tick() then waits for the coarse
 * file-system clock to move before the test writes the file again, as
 * the settle second does in production.
 */
#include <dirent.h>

/*
 * GCC 12 inlines gen_mbox() here and then sees a memcpy of SIZE_MAX bytes
 * (its copy of the previous message) on a path that cannot run: false
 * -Wstringop-overflow and -Wrestrict.  test_update.c calls the same code
 * without them.
 */
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#pragma GCC diagnostic ignored "-Wrestrict"
#include "unit.h"

static void
index_init(void)
{
	mbox_settle = -1;
}

TestSuite(index, .init = index_init, .fini = unit_cleanup);

struct fx {
	char	*dir;
	char	 path[512];	/* the mbox */
	char	 ix[512];	/* its index */
};

static void
fx_init(struct fx *f)
{
	f->dir = tmpdir_make();
	snprintf(f->path, sizeof(f->path), "%s/mbox", f->dir);
	snprintf(f->ix, sizeof(f->ix), "%s/.mbox.pop3d-index", f->dir);
}

/* Lets the file-system clock (a jiffy or so) move on. */
static void
tick(void)
{
	usleep(30 * 1000);
}

static int
exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* The table that a scan of the whole file gives. */
static void
scan_file(const char *path, struct maildrop *ref)
{
	struct stat st;
	int fd = open(path, O_RDONLY);

	cr_assert(fd != -1);
	cr_assert(fstat(fd, &st) == 0);
	memset(ref, 0, sizeof(*ref));
	ref->fd = -1;
	cr_assert_eq(mbox_scan(ref, fd, (uint64_t)st.st_size), 0);
	close(fd);
}

/* Opens the mbox: the table must be the scan's; returns md.source. */
static const char *
open_check(const char *path, struct maildrop *md)
{
	struct maildrop ref;
	size_t i;

	cr_assert_eq(maildrop_open(md, path), MD_OK);
	scan_file(path, &ref);
	cr_assert_eq(md->count, ref.count, "%zu messages, a scan finds %zu "
	    "(table from %s)", md->count, ref.count, md->source);
	cr_assert_eq(md->end, ref.end);
	for (i = 0; i < ref.count; i++)
		cr_assert(memcmp(&md->msgs[i], &ref.msgs[i],
		    sizeof(ref.msgs[i])) == 0 && memcmp(&md->loc.mbox[i],
		    &ref.loc.mbox[i], sizeof(ref.loc.mbox[i])) == 0,
		    "message %zu differs from a scan's (table from %s): "
		    "off %llu/%llu size %llu/%llu dup %u/%u", i + 1,
		    md->source, (unsigned long long)md->loc.mbox[i].off,
		    (unsigned long long)ref.loc.mbox[i].off,
		    (unsigned long long)md->msgs[i].size,
		    (unsigned long long)ref.msgs[i].size, md->msgs[i].dup,
		    ref.msgs[i].dup);
	maildrop_free_table(&ref);
	cr_assert_not_null(md->source);
	return md->source;
}

/* One whole session: open, check, close; returns how the table was made. */
static const char *
session(const char *path)
{
	struct maildrop md;
	const char *src;

	src = open_check(path, &md);
	maildrop_close(&md);
	return src;
}

static void
expect_source(const char *path, const char *want, const char *what)
{
	const char *got = session(path);

	cr_assert_str_eq(got, want, "%s: table from %s, expected %s", what,
	    got, want);
}

Test(index, unchanged_file_reads_the_index)
{
	uint64_t seed;

	for (seed = 1; seed <= 20; seed++) {
		struct fx f;
		struct ref_mbox b = { 0 };

		fx_init(&f);
		gen_mbox(seed * 7919, 1 + seed % 40, &b);
		file_write(f.path, b.file.p, b.file.len, 0600);
		expect_source(f.path, "scan", "first session");
		cr_assert(exists(f.ix), "no index written");
		expect_source(f.path, "index", "second session");
		expect_source(f.path, "index", "third session");
		ref_mbox_free(&b);
	}
}

/*
 * Mail appended after the index was written: only the new part is
 * scanned when the old part ended with an empty line (the separator a
 * delivery agent writes), else all of it; the table is a full scan's
 * either way, dup numbers of new identical copies included.
 */
Test(index, appended_mail_scans_only_the_rest, .timeout = 120)
{
	static const char *const seps[] = { "", "\n", "\r\n" };
	uint64_t seed;
	int appended = 0, rescanned = 0;

	for (seed = 1; seed <= 80; seed++) {
		struct fx f;
		struct ref_mbox a = { 0 }, b = { 0 };
		uint64_t s = seed * 104729;
		const char *sep = seps[rnd_upto(&s, 3)];
		int expect;

		size_t na = 1 + rnd_upto(&s, 30);

		fx_init(&f);
		gen_mbox(seed, na, &a);
		if (rnd_upto(&s, 4) == 0)
			/* new copies of old messages: dup numbers go on */
			gen_mbox(seed, na, &b);
		else
			gen_mbox(s, 1 + rnd_upto(&s, 10), &b);
		file_write(f.path, a.file.p, a.file.len, 0600);
		expect_source(f.path, "scan", "first session");
		file_append(f.path, sep, strlen(sep));
		file_append(f.path, b.file.p, b.file.len);
		/* The first new "From " line starts a message right after
		 * the old part's own empty line or right after one that the
		 * append wrote; an empty line more joins the old message. */
		expect = a.file.p[a.file.len - 1] == '\n' &&
		    ends_with_empty_line(&a.file) == (sep[0] == '\0');
		expect_source(f.path, expect ? "index+scan" : "scan",
		    "after an append");
		if (expect)
			appended++;
		else
			rescanned++;
		/* And the session after that has the whole file indexed. */
		expect_source(f.path, "index", "the session after");
		ref_mbox_free(&a);
		ref_mbox_free(&b);
	}
	cr_assert(appended > 10 && rescanned > 10, "cases: %d appended, %d "
	    "rescanned", appended, rescanned);
}

/* The index's size and times no longer match: a scan, never the index. */
Test(index, rewritten_or_replaced_file_is_scanned)
{
	struct fx f;
	struct ref_mbox b = { 0 };
	struct maildrop md;
	char u1[POP3D_UIDL_MAX + 1], u2[POP3D_UIDL_MAX + 1];
	char tmp[600];
	unsigned char *p;
	int fd;

	fx_init(&f);
	ref_mbox_adds(&b, ENV, "Subject: one\n\nbody 1\n", "\n");
	ref_mbox_adds(&b, ENV2, "Subject: two\n\nbody 2\n", "\n");
	ref_mbox_adds(&b, ENV, "Subject: six\n\nbody 3\n", "\n");
	file_write(f.path, b.file.p, b.file.len, 0600);
	expect_source(f.path, "scan", "first");
	cr_assert_str_eq(open_check(f.path, &md), "index");
	maildrop_uidl(&md, 1, u1);
	maildrop_close(&md);

	/* In place, same size: "two" becomes "owt". */
	tick();
	p = (unsigned char *)b.file.p + b.m[1].data + 9;
	memcpy(p, "owt", 3);
	cr_assert((fd = open(f.path, O_WRONLY)) != -1);
	cr_assert(pwrite(fd, p, 3, (off_t)(b.m[1].data + 9)) == 3);
	close(fd);
	cr_assert_str_eq(open_check(f.path, &md), "scan");
	maildrop_uidl(&md, 1, u2);
	cr_assert_str_neq(u1, u2, "UIDL of the rewritten message unchanged");
	maildrop_close(&md);

	/* Again, and the writer sets the mtime back: only the ctime says. */
	{
		struct stat st;
		struct timespec ts[2];

		cr_assert(stat(f.path, &st) == 0);
		tick();
		memcpy(p, "two", 3);
		cr_assert((fd = open(f.path, O_WRONLY)) != -1);
		cr_assert(pwrite(fd, p, 3, (off_t)(b.m[1].data + 9)) == 3);
		ts[0] = st.st_atim;
		ts[1] = st.st_mtim;
		cr_assert(futimens(fd, ts) == 0);
		close(fd);
		cr_assert_str_eq(open_check(f.path, &md), "scan");
		maildrop_uidl(&md, 1, u2);
		cr_assert_str_eq(u1, u2, "UIDL after the second rewrite");
		maildrop_close(&md);
	}

	/* Replaced by another file of the same size (rename over it). */
	tick();
	memcpy(p, "two", 3);
	snprintf(tmp, sizeof(tmp), "%s/new", f.dir);
	file_write(tmp, b.file.p, b.file.len, 0600);
	cr_assert(rename(tmp, f.path) == 0);
	cr_assert_str_eq(open_check(f.path, &md), "scan");
	maildrop_uidl(&md, 1, u2);
	cr_assert_str_eq(u1, u2);
	maildrop_close(&md);

	/* Shrunk (a reader expunged the last message). */
	tick();
	cr_assert(truncate(f.path, (off_t)b.m[2].off) == 0);
	expect_source(f.path, "scan", "after a truncation");
	ref_mbox_free(&b);
}

static void
copy_file(const char *from, const char *to)
{
	struct buf b = { 0 };

	file_read(from, &b);
	file_write(to, b.p, b.len, 0600);
	buf_free(&b);
}

/* A copy of md with its own copy of the table, for forging an index. */
static struct maildrop
forgery(const struct maildrop *md)
{
	struct maildrop fake = *md;

	fake.msgs = calloc(md->count, sizeof(*md->msgs));
	fake.loc.mbox = calloc(md->count, sizeof(*md->loc.mbox));
	cr_assert_not_null(fake.msgs);
	cr_assert_not_null(fake.loc.mbox);
	memcpy(fake.msgs, md->msgs, md->count * sizeof(*md->msgs));
	memcpy(fake.loc.mbox, md->loc.mbox, md->count *
	    sizeof(*md->loc.mbox));
	return fake;
}

static void
flip(const char *path, off_t at)
{
	unsigned char c;
	int fd = open(path, O_RDWR);

	cr_assert(fd != -1);
	cr_assert(pread(fd, &c, 1, at) == 1);
	c ^= 0x10;
	cr_assert(pwrite(fd, &c, 1, at) == 1);
	close(fd);
}

/*
 * Indexes that must not be believed: damaged (flipped bytes, cut short,
 * longer, empty, garbage), of another file, or not
 * above suspicion as a file.  Each case starts from a good index (the
 * session before the damage must read it) and must end in a scan.
 */
Test(index, untrustworthy_index_is_ignored)
{
	struct fx f;
	struct ref_mbox b = { 0 };
	struct stat st;
	char other[600], otherix[600], good[600];
	off_t flips[16];
	size_t nflips = 0;
	int kase;

	fx_init(&f);
	gen_mbox(42, 25, &b);
	file_write(f.path, b.file.p, b.file.len, 0600);
	expect_source(f.path, "scan", "first");
	cr_assert(stat(f.ix, &st) == 0);
	snprintf(good, sizeof(good), "%s/good", f.dir);
	copy_file(f.ix, good);
	/* magic, order, msg size, loc size, padding, dev, ino, size, mtime,
	 * ctime, count, checksum, tables (struct index_head, mboxindex.c) */
	flips[nflips++] = 0;
	flips[nflips++] = 9;
	flips[nflips++] = 13;
	flips[nflips++] = 17;
	flips[nflips++] = 21;
	flips[nflips++] = 25;
	flips[nflips++] = 33;
	flips[nflips++] = 41;
	flips[nflips++] = 49;
	flips[nflips++] = 65;
	flips[nflips++] = 81;
	flips[nflips++] = 90;
	flips[nflips++] = st.st_size / 2;
	flips[nflips++] = st.st_size - 1;

	snprintf(other, sizeof(other), "%s/other", f.dir);
	snprintf(otherix, sizeof(otherix), "%s/.other.pop3d-index", f.dir);
	file_write(other, b.file.p, b.file.len, 0600);
	expect_source(other, "scan", "the other mbox");
	cr_assert(exists(otherix));

	for (kase = 0; kase < (int)nflips + 9; kase++) {
		copy_file(good, f.ix);
		expect_source(f.path, "index", "the good index");
		if (kase < (int)nflips)
			flip(f.ix, flips[kase]);
		else switch (kase - (int)nflips) {
		case 0:		/* writable by the group */
			cr_assert(chmod(f.ix, 0620) == 0);
			break;
		case 1:		/* a symlink to a good index */
			cr_assert(rename(f.ix, good) == 0);
			cr_assert(symlink(good, f.ix) == 0);
			break;
		case 2:		/* a second name */
			unlink(good);
			cr_assert(link(f.ix, good) == 0);
			break;
		case 3:		/* cut short */
			cr_assert(truncate(f.ix, st.st_size - 1) == 0);
			break;
		case 4:		/* longer */
			cr_assert(truncate(f.ix, st.st_size + 64) == 0);
			break;
		case 5:		/* the index of another file, same bytes */
			copy_file(otherix, f.ix);
			break;
		case 6:		/* someone else's */
			if (geteuid() != 0)
				continue;
			cr_assert(chown(f.ix, 65534, 65534) == 0);
			break;
		case 7:		/* empty */
			cr_assert(truncate(f.ix, 0) == 0);
			break;
		case 8:		/* garbage of the right size, NULs and all */
			{
				unsigned char *g = malloc((size_t)st.st_size);
				uint64_t s = 4242;
				off_t k;

				cr_assert_not_null(g);
				for (k = 0; k < st.st_size; k++)
					g[k] = (unsigned char)rnd(&s);
				g[0] = '\0';
				file_write(f.ix, g, (size_t)st.st_size, 0600);
				free(g);
			}
			break;
		}
		{
			char what[64];

			snprintf(what, sizeof(what), "damage case %d", kase);
			expect_source(f.path, "scan", what);
		}
		if (kase == 1 || kase == 2) {
			/* restore a plain good copy for the next case */
			unlink(f.ix);
			unlink(good);
			expect_source(f.path, "scan", "rebuild");
			copy_file(f.ix, good);
		}
	}
	ref_mbox_free(&b);
}

/*
 * An index that pop3d itself would write (checksum right) but whose
 * offsets no scan could give: refused, so that no read or write can be
 * sent outside the file by a table that did not come from a scan.  The
 * same for one whose only fault is the file it names (device, inode) or
 * its size.
 */
Test(index, implausible_offsets_are_refused)
{
	struct fx f;
	struct ref_mbox b = { 0 };
	struct maildrop md, fake;
	struct stat st;
	int kase;

	fx_init(&f);
	ref_mbox_adds(&b, ENV, "Subject: 1\n\none\n", "\n");
	ref_mbox_adds(&b, ENV2, "Subject: 2\n\ntwo\n", "\n");
	ref_mbox_adds(&b, ENV, "Subject: 3\n\nthree\n", "\n");
	ref_mbox_adds(&b, ENV2, "Subject: 4\n\nfour\n", "\n");
	ref_mbox_adds(&b, ENV, "Subject: 5\n\nfive\n", "\n");
	ref_mbox_adds(&b, ENV2, "Subject: 6\n\nsix\n", "\n");
	file_write(f.path, b.file.p, b.file.len, 0600);
	expect_source(f.path, "scan", "first");
	for (kase = 0; kase < 11; kase++) {
		cr_assert_str_eq(open_check(f.path, &md), "index");
		cr_assert(fstat(md.fd, &st) == 0);
		fake = forgery(&md);
		switch (kase) {
		case 0: fake.loc.mbox[0].off = 1; break;
		case 1: fake.loc.mbox[2].data = fake.loc.mbox[2].off; break;
		case 2: fake.loc.mbox[2].len = fake.loc.mbox[3].off; break;
		case 3:
			fake.loc.mbox[2].hdrlen = fake.loc.mbox[2].len + 1;
			break;
		case 4: fake.msgs[2].size = fake.loc.mbox[2].len - 1; break;
		case 5: fake.msgs[2].flags = MSG_DELETED; break;
		case 6: fake.loc.mbox[3].off = fake.loc.mbox[2].off; break;
		case 7: fake.loc.mbox[5].len = st.st_size; break;
		/* right offsets, but of another file or state */
		case 8: fake.id.ino++; break;
		case 9: fake.id.dev++; break;
		case 10:	/* a longer file with the same times */
			st.st_size += 100;
			fake.end += 100;
			break;
		}
		mbox_index_save(&fake, &st, 1);
		maildrop_free_table(&fake);
		maildrop_close(&md);
		{
			char what[64];

			snprintf(what, sizeof(what), "implausible case %d", kase);
			expect_source(f.path, "scan", what);
		}
	}
	ref_mbox_free(&b);
}

/*
 * The worst stale index: a reader swapped message 2 for another of the
 * same size, then mail was appended, so the last indexed message is still
 * where it was and the same, and the append check passes.  The table then
 * names message 2 by the old digest; RETR of it and UPDATE deleting it
 * must refuse ([SYS/TEMP]), write nothing, and drop the index.
 */
Test(index, stale_index_never_steers_update)
{
	int with_retr;

	for (with_retr = 0; with_retr < 2; with_retr++) {
		struct fx f;
		struct ref_mbox b = { 0 }, x = { 0 };
		struct maildrop md;
		struct buf now = { 0 }, after = { 0 };
		static const char tail[] = ENV2 "Subject: new\n\nnew mail\n\n";

		fx_init(&f);
		ref_mbox_adds(&b, ENV, "Subject: A\n\naaaa\n", "\n");
		ref_mbox_adds(&b, ENV, "Subject: B\n\nbbbb\n", "\n");
		ref_mbox_adds(&b, ENV, "Subject: C\n\ncccc\n", "\n");
		ref_mbox_adds(&b, ENV, "Subject: D\n\ndddd\n", "\n");
		ref_mbox_adds(&x, ENV, "Subject: A\n\naaaa\n", "\n");
		ref_mbox_adds(&x, ENV, "Subject: X\n\nxxxx\n", "\n");
		ref_mbox_adds(&x, ENV, "Subject: C\n\ncccc\n", "\n");
		ref_mbox_adds(&x, ENV, "Subject: D\n\ndddd\n", "\n");
		cr_assert_eq(b.file.len, x.file.len);
		file_write(f.path, b.file.p, b.file.len, 0600);
		expect_source(f.path, "scan", "first");
		tick();
		file_write(f.path, x.file.p, x.file.len, 0600);
		file_append(f.path, tail, sizeof(tail) - 1);
		file_read(f.path, &now);

		cr_assert_eq(maildrop_open(&md, f.path), MD_OK);
		cr_assert_str_eq(md.source, "index+scan",
		    "the append check should pass here (else this test "
		    "proves nothing)");
		cr_assert_eq(md.count, 5);
		if (with_retr)
			cr_assert_eq(maildrop_check(&md, 1, -1), MD_TEMP,
			    "RETR of a message that is not there any more");
		md.msgs[1].flags |= MSG_DELETED;
		cr_assert_eq(maildrop_update(&md), MD_TEMP,
		    "UPDATE deleted a message by a stale index");
		maildrop_close(&md);
		file_read(f.path, &after);
		assert_bytes(after.p, after.len, now.p, now.len,
		    "the mbox after the refused UPDATE");
		cr_assert(!exists(f.ix), "the stale index was kept");

		/* The next session scans and sees X. */
		cr_assert_str_eq(open_check(f.path, &md), "scan");
		cr_assert_eq(md.count, 5);
		maildrop_close(&md);
		buf_free(&now);
		buf_free(&after);
		ref_mbox_free(&b);
		ref_mbox_free(&x);
	}
}

/*
 * The same stale table, but the session that built it (index+scan) used
 * neither RETR nor UPDATE: the index it saved for the next session holds
 * the old digest of message 2.  That index is no scan's: the session that
 * reads it must re-read what RETR sends, as the index+scan session would.
 */
Test(index, index_saved_after_an_append_is_checked_at_retr)
{
	struct fx f;
	struct ref_mbox b = { 0 }, x = { 0 };
	struct maildrop md;
	static const char tail[] = ENV2 "Subject: new\n\nnew mail\n\n";

	fx_init(&f);
	ref_mbox_adds(&b, ENV, "Subject: A\n\naaaa\n", "\n");
	ref_mbox_adds(&b, ENV, "Subject: B\n\nbbbb\n", "\n");
	ref_mbox_adds(&b, ENV, "Subject: C\n\ncccc\n", "\n");
	ref_mbox_adds(&x, ENV, "Subject: A\n\naaaa\n", "\n");
	ref_mbox_adds(&x, ENV, "Subject: X\n\nxxxx\n", "\n");
	ref_mbox_adds(&x, ENV, "Subject: C\n\ncccc\n", "\n");
	cr_assert_eq(b.file.len, x.file.len);
	file_write(f.path, b.file.p, b.file.len, 0600);
	expect_source(f.path, "scan", "first");
	tick();
	file_write(f.path, x.file.p, x.file.len, 0600);
	file_append(f.path, tail, sizeof(tail) - 1);
	cr_assert_eq(maildrop_open(&md, f.path), MD_OK);
	cr_assert_str_eq(md.source, "index+scan");
	maildrop_close(&md);

	cr_assert_eq(maildrop_open(&md, f.path), MD_OK);
	cr_assert_str_eq(md.source, "index");
	cr_assert_eq(maildrop_check(&md, 1, -1), MD_TEMP,
	    "RETR trusted an index whose front nobody checked");
	maildrop_close(&md);
	cr_assert(!exists(f.ix), "the stale index was kept");
	cr_assert_str_eq(open_check(f.path, &md), "scan");
	maildrop_close(&md);
	ref_mbox_free(&b);
	ref_mbox_free(&x);
}

/*
 * The last indexed message swapped for another of the same size, then
 * mail appended: the append check must see that the old part is not what
 * the index says and scan it all.
 */
Test(index, last_message_replaced_then_appended_is_scanned)
{
	struct fx f;
	struct ref_mbox b = { 0 }, x = { 0 };
	static const char tail[] = ENV2 "Subject: new\n\nnew mail\n\n";

	fx_init(&f);
	ref_mbox_adds(&b, ENV, "Subject: A\n\naaaa\n", "\n");
	ref_mbox_adds(&b, ENV, "Subject: B\n\nbbbb\n", "\n");
	ref_mbox_adds(&x, ENV, "Subject: A\n\naaaa\n", "\n");
	ref_mbox_adds(&x, ENV, "Subject: Y\n\nbbbb\n", "\n");
	file_write(f.path, b.file.p, b.file.len, 0600);
	expect_source(f.path, "scan", "first");
	tick();
	file_write(f.path, x.file.p, x.file.len, 0600);
	file_append(f.path, tail, sizeof(tail) - 1);
	expect_source(f.path, "scan", "last message replaced, then appended");
	ref_mbox_free(&b);
	ref_mbox_free(&x);
}

/*
 * An index that passes every check (pop3d's own format and checksum, the
 * file's identity and state, plausible offsets) but names messages by the
 * wrong digests, as a bug or a forger could make it: UPDATE still checks
 * each message it deletes against the file and refuses.
 */
Test(index, update_checks_even_a_fresh_index)
{
	struct fx f;
	struct ref_mbox b = { 0 };
	struct maildrop md, fake;
	struct stat st;
	struct buf before = { 0 }, after = { 0 };
	unsigned char u[16];

	fx_init(&f);
	ref_mbox_adds(&b, ENV, "Subject: A\n\naaaa\n", "\n");
	ref_mbox_adds(&b, ENV, "Subject: B\n\nbbbb\n", "\n");
	ref_mbox_adds(&b, ENV, "Subject: C\n\ncccc\n", "\n");
	ref_mbox_adds(&b, ENV, "Subject: D\n\ndddd\n", "\n");
	file_write(f.path, b.file.p, b.file.len, 0600);
	expect_source(f.path, "scan", "first");
	cr_assert_str_eq(open_check(f.path, &md), "index");
	cr_assert(fstat(md.fd, &st) == 0);
	fake = forgery(&md);
	memcpy(u, fake.loc.mbox[1].uid, 16);
	memcpy(fake.loc.mbox[1].uid, fake.loc.mbox[2].uid, 16);
	memcpy(fake.loc.mbox[2].uid, u, 16);
	mbox_index_save(&fake, &st, 1);
	maildrop_free_table(&fake);
	maildrop_close(&md);

	file_read(f.path, &before);
	cr_assert_eq(maildrop_open(&md, f.path), MD_OK);
	cr_assert_str_eq(md.source, "index");
	cr_assert(memcmp(md.loc.mbox[1].uid, u, 16) != 0,
	    "forgery not loaded");
	md.msgs[1].flags |= MSG_DELETED;
	cr_assert_eq(maildrop_update(&md), MD_TEMP,
	    "UPDATE trusted an index over the file");
	maildrop_close(&md);
	file_read(f.path, &after);
	assert_bytes(after.p, after.len, before.p, before.len,
	    "the mbox after the refused UPDATE");
	cr_assert(!exists(f.ix), "the index was kept");
	expect_source(f.path, "scan", "the next session");
	buf_free(&before);
	buf_free(&after);
	ref_mbox_free(&b);
}

/* A successful UPDATE changes the file: the index goes with it. */
Test(index, update_drops_the_index)
{
	struct fx f;
	struct ref_mbox b = { 0 };
	struct maildrop md;

	fx_init(&f);
	gen_mbox(99, 12, &b);
	file_write(f.path, b.file.p, b.file.len, 0600);
	expect_source(f.path, "scan", "first");
	cr_assert_str_eq(open_check(f.path, &md), "index");
	md.msgs[3].flags |= MSG_DELETED;
	cr_assert_eq(maildrop_update(&md), MD_OK);
	maildrop_close(&md);
	cr_assert(!exists(f.ix));
	expect_source(f.path, "scan", "after UPDATE");
	expect_source(f.path, "index", "the session after");
	ref_mbox_free(&b);
}

/* A file written less than mbox_settle seconds ago is not indexed. */
Test(index, unsettled_file_is_not_indexed)
{
	struct fx f;
	struct ref_mbox b = { 0 };

	fx_init(&f);
	mbox_settle = 1;
	gen_mbox(5, 10, &b);
	file_write(f.path, b.file.p, b.file.len, 0600);
	expect_source(f.path, "scan", "first");
	cr_assert(!exists(f.ix), "an index of a file written just now");
	expect_source(f.path, "scan", "second");
	ref_mbox_free(&b);
}
