/*
 * test_update.c: UPDATE on an mbox through the public interface
 * (maildrop_open, maildrop_update, maildrop_close; RFC 1939 §6).
 *
 * After an update the file holds exactly the kept messages, byte for byte
 * with their envelope and separator lines, followed by whatever was
 * appended during the session; it is the same inode with the same owner
 * and mode.  Also the session lock ([IN-USE]) and the missing mbox.
 */
#include <dirent.h>

#include "unit.h"

TestSuite(update, .fini = unit_cleanup);
TestSuite(lock, .fini = unit_cleanup);

struct upd {
	char		*dir;
	char		 path[512];
	struct ref_mbox	 b;
};

static void
upd_init(struct upd *u)
{
	memset(u, 0, sizeof(*u));
	u->dir = tmpdir_make();
	snprintf(u->path, sizeof(u->path), "%s/mbox", u->dir);
}

static void
upd_free(struct upd *u)
{
	ref_mbox_free(&u->b);
}

static void
same_file(const struct stat *a, const struct stat *b)
{
	cr_assert_eq(a->st_dev, b->st_dev, "device changed");
	cr_assert_eq(a->st_ino, b->st_ino, "inode changed: %llu -> %llu",
	    (unsigned long long)a->st_ino, (unsigned long long)b->st_ino);
	cr_assert_eq(a->st_uid, b->st_uid, "owner changed");
	cr_assert_eq(a->st_gid, b->st_gid, "group changed");
	cr_assert_eq(a->st_mode, b->st_mode, "mode changed: %o -> %o",
	    (unsigned)a->st_mode, (unsigned)b->st_mode);
	cr_assert_eq(b->st_nlink, 1, "link count %lu",
	    (unsigned long)b->st_nlink);
}

/*
 * Writes u->b to the mbox (mode), opens it, appends tail (a delivery
 * during the session), marks the messages whose del[i] is set, runs
 * UPDATE and checks the file.
 */
static void
run(struct upd *u, mode_t mode, const int *del, const void *tail,
    size_t tlen)
{
	struct maildrop md;
	struct stat before, after;
	struct buf got = { 0 }, exp = { 0 };
	size_t i;

	file_write(u->path, u->b.file.p, u->b.file.len, mode);
	cr_assert(stat(u->path, &before) == 0);
	cr_assert_eq(maildrop_open(&md, u->path), MD_OK);
	cr_assert_eq(md.count, u->b.n, "%zu messages, expected %zu",
	    md.count, u->b.n);
	for (i = 0; i < u->b.n; i++)
		cr_assert_eq(md.loc.mbox[i].off, u->b.m[i].off);
	if (tlen > 0)
		file_append(u->path, tail, tlen);
	for (i = 0; i < u->b.n; i++) {
		buf_add(&exp, "", 0);
		if (del[i])
			md.msgs[i].flags |= MSG_DELETED;
		else
			buf_add(&exp, u->b.file.p + u->b.m[i].off,
			    u->b.m[i].chunk_end - u->b.m[i].off);
	}
	buf_add(&exp, tail, tlen);
	cr_assert_eq(maildrop_update(&md), MD_OK);
	maildrop_close(&md);
	cr_assert(stat(u->path, &after) == 0);
	same_file(&before, &after);
	file_read(u->path, &got);
	cr_assert_eq((uint64_t)after.st_size, got.len);
	assert_bytes(got.p, got.len, exp.p, exp.len, "mbox after UPDATE");
	buf_free(&got);
	buf_free(&exp);
}

static void
five(struct upd *u)
{
	ref_mbox_adds(&u->b, ENV, "Subject: one\n\nbody 1\n", "\n");
	ref_mbox_adds(&u->b, ENV2, "Subject: two\n\n>From x\nbody 2\n\n",
	    "\n");
	ref_mbox_adds(&u->b, ENV, "Subject: three\nStatus: RO\n", "\n");
	ref_mbox_adds(&u->b, ENV2, "Subject: four\n\n.\nbody 4\n", "\n");
	ref_mbox_adds(&u->b, ENV, "Subject: five\n\nbody 5\n", "\n");
}

Test(update, nothing_deleted_leaves_file_identical)
{
	static const int del[5] = { 0 };
	struct upd u;

	upd_init(&u);
	five(&u);
	run(&u, 0600, del, NULL, 0);
	upd_free(&u);
}

Test(update, everything_deleted_leaves_empty_file)
{
	static const int del[5] = { 1, 1, 1, 1, 1 };
	struct upd u;
	struct stat st;

	upd_init(&u);
	five(&u);
	run(&u, 0600, del, NULL, 0);
	cr_assert(stat(u.path, &st) == 0);
	cr_assert_eq(st.st_size, 0);
	upd_free(&u);
}

Test(update, last_deleted_truncates)
{
	static const int del1[5] = { 0, 0, 0, 0, 1 };
	static const int del2[5] = { 0, 0, 1, 1, 1 };
	struct upd u;

	upd_init(&u);
	five(&u);
	run(&u, 0600, del1, NULL, 0);
	run(&u, 0600, del2, NULL, 0);
	upd_free(&u);
}

Test(update, first_deleted_compacts)
{
	static const int del1[5] = { 1, 0, 0, 0, 0 };
	static const int del2[5] = { 1, 1, 0, 0, 0 };
	struct upd u;

	upd_init(&u);
	five(&u);
	run(&u, 0600, del1, NULL, 0);
	run(&u, 0600, del2, NULL, 0);
	upd_free(&u);
}

Test(update, middle_deleted_compacts)
{
	static const int del1[5] = { 0, 0, 1, 0, 0 };
	static const int del2[5] = { 0, 1, 0, 1, 0 };
	static const int del3[5] = { 1, 0, 1, 0, 1 };
	struct upd u;

	upd_init(&u);
	five(&u);
	run(&u, 0600, del1, NULL, 0);
	run(&u, 0600, del2, NULL, 0);
	run(&u, 0600, del3, NULL, 0);
	upd_free(&u);
}

/* Every subset of five messages, plain and with a delivery behind. */
Test(update, every_subset, .timeout = 120)
{
	static const char tail[] = "From new@example.org Wed Jan  3 00:00:00 "
	    "2024\nSubject: arrived during the session\n\nnew\n\n";
	struct upd u;
	unsigned mask;
	int del[5], i;

	upd_init(&u);
	five(&u);
	for (mask = 0; mask < 32; mask++) {
		for (i = 0; i < 5; i++)
			del[i] = (mask >> i) & 1;
		run(&u, 0600, del, NULL, 0);
		run(&u, 0600, del, tail, sizeof(tail) - 1);
	}
	upd_free(&u);
}

Test(update, delivery_during_session_kept)
{
	static const int none[5] = { 0 };
	static const int first[5] = { 1, 0, 0, 0, 0 };
	static const int all[5] = { 1, 1, 1, 1, 1 };
	static const int last[5] = { 0, 0, 0, 0, 1 };
	static const char tail[] = "From new@example.org Wed Jan  3 00:00:00 "
	    "2024\nSubject: new\n\nnew body\n\n"
	    "From new2@example.org Wed Jan  3 00:00:01 2024\nSubject: new2\n"
	    "\nnew body 2\n";
	struct upd u;
	struct stat st;

	upd_init(&u);
	five(&u);
	run(&u, 0600, none, tail, sizeof(tail) - 1);
	run(&u, 0600, first, tail, sizeof(tail) - 1);
	run(&u, 0600, last, tail, sizeof(tail) - 1);
	run(&u, 0600, all, tail, sizeof(tail) - 1);
	cr_assert(stat(u.path, &st) == 0);
	cr_assert_eq((size_t)st.st_size, sizeof(tail) - 1);
	upd_free(&u);
}

Test(update, mode_and_owner_kept)
{
	static const int del[5] = { 1, 0, 1, 0, 0 };
	struct upd u;

	upd_init(&u);
	five(&u);
	run(&u, 0640, del, NULL, 0);
	run(&u, 0660, del, NULL, 0);
	if (geteuid() == 0) {
		/* Owned by someone else, as /var/mail files are. */
		struct maildrop md;
		struct stat before, after;

		file_write(u.path, u.b.file.p, u.b.file.len, 0600);
		cr_assert(chown(u.path, 4321, 8765) == 0);
		cr_assert(stat(u.path, &before) == 0);
		cr_assert_eq(maildrop_open(&md, u.path), MD_OK);
		md.msgs[0].flags |= MSG_DELETED;
		cr_assert_eq(maildrop_update(&md), MD_OK);
		maildrop_close(&md);
		cr_assert(stat(u.path, &after) == 0);
		same_file(&before, &after);
		cr_assert_eq(after.st_uid, 4321);
		cr_assert_eq(after.st_gid, 8765);
	}
	upd_free(&u);
}

Test(update, crlf_and_unterminated_last_message)
{
	static const int del1[3] = { 0, 1, 0 };
	static const int del2[3] = { 1, 0, 0 };
	static const int del3[3] = { 0, 0, 1 };
	struct upd u;

	upd_init(&u);
	ref_mbox_adds(&u.b, "From a@x Mon Jan  1 00:00:00 2024\r\n",
	    "Subject: one\r\n\r\nx\r\n", "\r\n");
	ref_mbox_adds(&u.b, "From b@x Mon Jan  1 00:00:00 2024\r\n",
	    "Subject: two\r\n\r\ny\r\n", "\r\n");
	ref_mbox_adds(&u.b, "From c@x Mon Jan  1 00:00:00 2024\r\n",
	    "Subject: three\r\n\r\nno newline", "");
	run(&u, 0600, del1, NULL, 0);
	run(&u, 0600, del2, NULL, 0);
	run(&u, 0600, del3, NULL, 0);
	upd_free(&u);
}

/* Messages larger than any copy buffer move intact. */
Test(update, large_messages, .timeout = 120)
{
	static const int del1[4] = { 1, 0, 1, 0 };
	static const int del2[4] = { 1, 1, 0, 0 };
	struct upd u;
	struct buf m = { 0 }, tail = { 0 };
	uint64_t seed = 99;
	size_t i;

	upd_init(&u);
	ref_mbox_adds(&u.b, ENV, "Subject: small\n\nx\n", "\n");
	for (i = 0; i < 2; i++) {
		m.len = 0;
		buf_adds(&m, "Subject: big\n\n");
		while (m.len < (i + 1) * 3 * 1024 * 1024 + 12345) {
			buf_addc(&m, (unsigned char)('a' + rnd_upto(&seed, 26)),
			    1 + rnd_upto(&seed, 5000));
			buf_adds(&m, "\n");
		}
		ref_mbox_add(&u.b, i ? ENV2 : ENV, m.p, m.len, "\n");
	}
	ref_mbox_adds(&u.b, ENV, "Subject: small too\n\ny\n", "\n");
	buf_adds(&tail, ENV2 "Subject: new\n\n");
	buf_addc(&tail, 'n', 2 * 1024 * 1024);
	buf_adds(&tail, "\n\n");
	run(&u, 0600, del1, tail.p, tail.len);
	run(&u, 0600, del2, tail.p, tail.len);
	run(&u, 0600, del1, NULL, 0);
	buf_free(&m);
	buf_free(&tail);
	upd_free(&u);
}

Test(update, random_mboxes, .timeout = 300)
{
	static const char tail[] = ENV "S: t\n\nt\n";
	uint64_t seed;

	for (seed = 1; seed <= 6; seed++) {
		struct upd u;
		int *del;
		size_t i;
		uint64_t s = seed * 31337;

		upd_init(&u);
		gen_mbox(s, 80, &u.b);
		del = calloc(u.b.n, sizeof(*del));
		cr_assert_not_null(del);
		for (i = 0; i < u.b.n; i++)
			del[i] = rnd_upto(&s, 3) == 0;
		/* An unterminated last message would swallow the delivery. */
		if (u.b.file.p[u.b.file.len - 1] == '\n')
			run(&u, 0600, del, tail, sizeof(tail) - 1);
		else
			run(&u, 0600, del, NULL, 0);
		free(del);
		upd_free(&u);
	}
}

/* Kept messages keep their UIDLs after the file is rewritten. */
Test(update, uidls_survive)
{
	struct upd u;
	struct maildrop md;
	char before[5][POP3D_UIDL_MAX + 1], now[POP3D_UIDL_MAX + 1];
	size_t i, j;

	upd_init(&u);
	five(&u);
	file_write(u.path, u.b.file.p, u.b.file.len, 0600);
	cr_assert_eq(maildrop_open(&md, u.path), MD_OK);
	for (i = 0; i < 5; i++)
		maildrop_uidl(&md, i, before[i]);
	md.msgs[0].flags |= MSG_DELETED;
	md.msgs[3].flags |= MSG_DELETED;
	cr_assert_eq(maildrop_update(&md), MD_OK);
	maildrop_close(&md);
	cr_assert_eq(maildrop_open(&md, u.path), MD_OK);
	cr_assert_eq(md.count, 3);
	for (i = 0, j = 0; i < 5; i++) {
		if (i == 0 || i == 3)
			continue;
		maildrop_uidl(&md, j++, now);
		cr_assert_str_eq(now, before[i], "msg %zu's UIDL changed",
		    i + 1);
	}
	maildrop_close(&md);
	upd_free(&u);
}

/*
 * A mail reader added a header to a kept message during the session: the
 * deleted message is still itself at its offset, but every message behind
 * the changed one moved.  UPDATE checks only the deleted messages'
 * digests, so what must stop it is the "From " line of each kept message,
 * which is no longer at its offset; else it would compact by stale
 * offsets and cut messages apart.
 */
Test(update, kept_messages_moved_by_another_program_refuse)
{
	struct upd u;
	struct ref_mbox x = { 0 };
	struct maildrop md;
	struct buf got = { 0 };

	upd_init(&u);
	ref_mbox_adds(&u.b, ENV, "Subject: 1\n\none\n", "\n");
	ref_mbox_adds(&u.b, ENV2, "Subject: 2\n\ntwo\n", "\n");
	ref_mbox_adds(&u.b, ENV, "Subject: 3\n\nthree\n", "\n");
	ref_mbox_adds(&x, ENV, "Subject: 1\n\none\n", "\n");
	ref_mbox_adds(&x, ENV2, "Subject: 2\nX-Label: read\n\ntwo\n",
	    "\n");
	ref_mbox_adds(&x, ENV, "Subject: 3\n\nthree\n", "\n");
	file_write(u.path, u.b.file.p, u.b.file.len, 0600);
	cr_assert_eq(maildrop_open(&md, u.path), MD_OK);
	file_write(u.path, x.file.p, x.file.len, 0600);
	md.msgs[0].flags |= MSG_DELETED;
	cr_assert_eq(maildrop_update(&md), MD_TEMP,
	    "UPDATE went ahead by offsets that moved");
	maildrop_close(&md);
	file_read(u.path, &got);
	assert_bytes(got.p, got.len, x.file.p, x.file.len,
	    "the mbox after the refused UPDATE");
	buf_free(&got);
	ref_mbox_free(&x);
	upd_free(&u);
}

/* Neither a journal nor a lock file is left beside the mbox. */
Test(update, no_files_left_behind)
{
	struct upd u;
	struct maildrop md;
	DIR *d;
	struct dirent *e;

	upd_init(&u);
	five(&u);
	file_write(u.path, u.b.file.p, u.b.file.len, 0600);
	cr_assert_eq(maildrop_open(&md, u.path), MD_OK);
	md.msgs[1].flags |= MSG_DELETED;
	cr_assert_eq(maildrop_update(&md), MD_OK);
	maildrop_close(&md);
	cr_assert_not_null(d = opendir(u.dir));
	while ((e = readdir(d)) != NULL)
		cr_assert(strcmp(e->d_name, ".") == 0 ||
		    strcmp(e->d_name, "..") == 0 ||
		    strcmp(e->d_name, "mbox") == 0,
		    "left behind: %s", e->d_name);
	closedir(d);
	upd_free(&u);
}

/* The session lock */

Test(lock, second_open_in_use, .timeout = 60)
{
	struct upd u;
	struct maildrop a, b;

	upd_init(&u);
	five(&u);
	file_write(u.path, u.b.file.p, u.b.file.len, 0600);
	cr_assert_eq(maildrop_open(&a, u.path), MD_OK);
	cr_assert_eq(maildrop_open(&b, u.path), MD_INUSE);
	maildrop_close(&b);
	/* The first session is unharmed by the refused one. */
	cr_assert_eq(a.count, 5);
	a.msgs[0].flags |= MSG_DELETED;
	cr_assert_eq(maildrop_update(&a), MD_OK);
	maildrop_close(&a);
	/* Released at close. */
	cr_assert_eq(maildrop_open(&b, u.path), MD_OK);
	cr_assert_eq(b.count, 4);
	maildrop_close(&b);
	upd_free(&u);
}

Test(lock, missing_mbox_is_empty)
{
	struct upd u;
	struct maildrop md;
	size_t n;
	uint64_t octets;

	upd_init(&u);
	cr_assert_eq(maildrop_open(&md, u.path), MD_OK);
	cr_assert_eq(md.count, 0);
	maildrop_stat(&md, &n, &octets);
	cr_assert_eq(n, 0);
	cr_assert_eq(octets, 0);
	cr_assert_eq(maildrop_update(&md), MD_OK);
	maildrop_close(&md);
	upd_free(&u);
}

Test(lock, empty_mbox)
{
	static const int del[1] = { 0 };
	struct upd u;
	struct maildrop md;

	upd_init(&u);
	file_write(u.path, "", 0, 0600);
	cr_assert_eq(maildrop_open(&md, u.path), MD_OK);
	cr_assert_eq(md.count, 0);
	maildrop_close(&md);
	run(&u, 0600, del, NULL, 0);
	upd_free(&u);
}

/* maildrop_close is safe on a zeroed and on a closed maildrop. */
Test(lock, close_is_idempotent)
{
	struct upd u;
	struct maildrop md;

	memset(&md, 0, sizeof(md));
	maildrop_close(&md);
	upd_init(&u);
	five(&u);
	file_write(u.path, u.b.file.p, u.b.file.len, 0600);
	cr_assert_eq(maildrop_open(&md, u.path), MD_OK);
	maildrop_close(&md);
	maildrop_close(&md);
	upd_free(&u);
}
