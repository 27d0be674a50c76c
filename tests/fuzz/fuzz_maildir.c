/*
 * fuzz_maildir.c: libFuzzer target for the Maildir store (maildir.c)
 * through the maildrop interface, as the session drives it: maildrop_open,
 * maildrop_uidl, maildrop_check and maildrop_send for RETR and TOP (into
 * io's streaming writer), DELE marks and maildrop_update.
 *
 * The input is decoded into a small Maildir: up to ENT_MAX entries in
 * new/, cur/ or tmp/, each a file with hostile name and bytes (any bytes
 * but '/' and NUL in the name: ",S=" and ",W=" fields, ":2,FLAGS" info,
 * dot files, shared unique parts, names too long for ":2,"), a hard link
 * to an earlier file, or something that is no message (a directory, a
 * symlink, a FIFO).  What the store shows is compared with a reference
 * written from the rules in maildir.c's comments and HACKING.md
 * ("Maildir"), sharing no code with it but MD5 (libmd): which entries are
 * messages and in what order, each size (",W=" when well-formed, else the
 * bytes counted as sent), the copy numbers and MSG_SHARED of files that
 * share a unique part, and each UIDL, which must also be distinct and
 * 1..70 printable characters (RFC 1939 §7).  RETR and TOP of every
 * message must send exactly the file's bytes as the rules convert them
 * (LF to CRLF, dot-stuffing, ".\r\n"; RFC 1939 §3): the whole file even
 * when ",W=" disagrees with it, since ",W=" is trusted for LIST and the
 * file is read to its end.  After UPDATE the directories must hold
 * exactly what the rules leave: the deleted files gone, shown files of
 * new/ moved to cur/ (":2," added where the name has no info) unless that
 * name is taken or too long, every other entry untouched, byte for byte.
 * The input may also have another client (an IMAP server) rename or
 * remove one message's file before the RETRs or after them: a file
 * renamed alone is followed by its unique part, one whose unique part is
 * shared is not (RETR gets MD_TEMP and nothing is sent, DELE leaves it),
 * nor is a removed one.  No descriptor may be left open after the
 * session.  Runs as whoever runs the fuzzer; the Maildir lives in a
 * private directory (fuzz_tmpdir) and is removed after each input.
 *
 * Run with -close_fd_mask=2: the store logs (failed moves) to stderr.
 */
#include <sys/mman.h>
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

/* Entries a Maildir is made of, at most. */
#define ENT_MAX		16
/* A file's content repeated to this many more bytes, at most (3 reads). */
#define FILL_MAX	(2 * POP3D_MAILBUF + 1023)

static const char *const subs[] = { "new", "cur", "tmp" };

enum kind {
	K_FILE,			/* a regular file of its own */
	K_LINK,			/* a hard link to an earlier K_FILE */
	K_DIR,			/* an empty directory */
	K_SYMLINK,		/* a symlink to "x" */
	K_DEVLINK,		/* a symlink to /dev/zero */
	K_FIFO
};

/* One entry of the Maildir, and what the reference says of it. */
struct ent {
	int		 sub;		/* index in subs */
	enum kind	 kind;
	char		 name[NAME_MAX + 1];
	unsigned char	*own;		/* K_FILE: the content, malloc'd */
	const unsigned char *body;	/* K_FILE, K_LINK: the content */
	size_t		 len;
	int		 del;		/* DELE it, when it is a message */
	int		 msg;		/* the store must show it */
	uint64_t	 ino;
	/* The reference, for messages. */
	uint64_t	 size;
	uint32_t	 dup;
	uint32_t	 flags;		/* MSG_SHARED or 0 */
	char		 uidl[POP3D_UIDL_MAX + 1];
};

/* What a directory entry must be after UPDATE. */
struct node {
	int		 sub;
	char		 name[NAME_MAX + 4];	/* room for ":2," */
	enum kind	 kind;
	const unsigned char *body;
	size_t		 len;
	int		 seen;
};

static char	 dir[128], mdpath[256];
static int	 out_fd = -1;
static struct io io;
static struct buf expect, got, file;
static struct ent ents[ENT_MAX];
static size_t	 nents;
static size_t	 order[ENT_MAX], nmsgs;	/* messages in table order */
static struct node nodes[ENT_MAX];
static size_t	 nnodes;

/*
 * What another client (an IMAP server on the same Maildir) does to one
 * message during the session: before the RETRs or after them.
 */
enum act {
	A_NONE,
	A_FLAGS,		/* renames it in its directory: new flags */
	A_MOVE,			/* renames it into the other directory */
	A_UNLINK		/* removes it */
};
static enum act	 act;
static int	 act_after;	/* after the RETRs, just before QUIT */
static size_t	 act_msg;	/* its table index */
static int	 act_sub;	/* A_FLAGS, A_MOVE: where it went */
static char	 act_name[NAME_MAX + 1];

static void	ent_path(char *, size_t, int, const char *);

/* ---- The reference, from the rules. ---- */

/* The unique part: the name up to its first ':' (maildir.c). */
static size_t
ref_base_len(const char *name)
{
	const char *colon = strchr(name, ':');

	return colon != NULL ? (size_t)(colon - name) : strlen(name);
}

/*
 * The leading decimal time of a name; none is 0, and a number too large
 * for 64 bits saturates.
 */
static uint64_t
ref_time(const char *name)
{
	uint64_t t = 0;

	for (; *name >= '0' && *name <= '9'; name++) {
		unsigned d = (unsigned)(*name - '0');

		if (t > (UINT64_MAX - d) / 10)
			return UINT64_MAX;
		t = t * 10 + d;
	}
	return t;
}

/*
 * Delivery order: the leading time, then the name, then the directory
 * (its mark: 'c' for cur/ sorts before 'n' for new/).
 */
static int
ref_order(const void *a, const void *b)
{
	const struct ent *x = &ents[*(const size_t *)a];
	const struct ent *y = &ents[*(const size_t *)b];
	uint64_t tx = ref_time(x->name), ty = ref_time(y->name);
	int c;

	if (tx != ty)
		return tx < ty ? -1 : 1;
	if ((c = strcmp(x->name, y->name)) != 0)
		return c;
	return (x->sub == 0) - (y->sub == 0);
}

/*
 * The first well-formed ",W=" of the unique part: one or more digits that
 * end the unique part or meet a ',', and fit 64 bits.  1 and *w, or 0.
 */
static int
ref_vsize(const char *name, uint64_t *w)
{
	size_t len = ref_base_len(name), i, j;

	for (i = 0; i + 3 < len; i++) {
		uint64_t v = 0;
		int over = 0;

		if (memcmp(name + i, ",W=", 3) != 0)
			continue;
		for (j = i + 3; j < len && name[j] >= '0' && name[j] <= '9';
		    j++) {
			unsigned d = (unsigned)(name[j] - '0');

			if (v > (UINT64_MAX - d) / 10)
				over = 1;
			else
				v = v * 10 + d;
		}
		if (!over && j > i + 3 && (j == len || name[j] == ',')) {
			*w = v;
			return 1;
		}
	}
	return 0;
}

/* The header: through the first empty line (LF or CRLF), or all. */
static size_t
ref_hdrlen(const unsigned char *p, size_t n)
{
	size_t pos = 0;

	while (pos < n) {
		size_t end = line_end(p, n, pos), len = end - pos;

		if ((len == 1 && p[pos] == '\n') ||
		    (len == 2 && p[pos] == '\r' && p[pos + 1] == '\n'))
			return end;
		pos = end;
	}
	return n;
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

/* RETR (lines < 0) or TOP of a file as it must go out. */
static void
ref_send(struct buf *out, const struct ent *e, long long lines)
{
	size_t hdr = ref_hdrlen(e->body, e->len);

	out->len = 0;
	if (lines < 0)
		ref_send_lines(out, e->body, e->len, -1);
	else {
		ref_send_lines(out, e->body, hdr, -1);
		ref_send_lines(out, e->body + hdr, e->len - hdr, lines);
	}
	buf_add(out, ".\r\n", 3);
}

static int
same_base(const struct ent *a, const struct ent *b)
{
	size_t la = ref_base_len(a->name), lb = ref_base_len(b->name);

	return la == lb && memcmp(a->name, b->name, la) == 0;
}

/*
 * Messages in table order, with sizes, copy numbers and UIDLs.  Files
 * sharing a unique part are all MSG_SHARED and numbered 0, 1, ... in the
 * order of their inode numbers, then of the table; the UIDL is the unique
 * part when it is 1..70 characters of 0x21..0x7E, the copy is number 0
 * and it does not look like a hashed id (32 lowercase hex digits, maybe
 * '-' and digits), else the MD5 hex of the unique part, "-N" behind it
 * for copy N.
 */
static void
ref_table(void)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, j, k, len;

	for (i = nmsgs = 0; i < nents; i++)
		if (ents[i].msg)
			order[nmsgs++] = i;
	qsort(order, nmsgs, sizeof(order[0]), ref_order);
	for (i = 0; i < nmsgs; i++) {
		struct ent *e = &ents[order[i]];

		if (!ref_vsize(e->name, &e->size))
			e->size = ref_octets(e->body, e->len);
		e->dup = 0;
		e->flags = 0;
		for (j = 0; j < nmsgs; j++) {
			const struct ent *o = &ents[order[j]];

			if (j == i || !same_base(e, o))
				continue;
			e->flags = MSG_SHARED;
			if (o->ino < e->ino || (o->ino == e->ino && j < i))
				e->dup++;
		}
	}
	for (i = 0; i < nmsgs; i++) {
		struct ent *e = &ents[order[i]];
		unsigned char d[16];
		MD5_CTX ctx;
		int ok;

		len = ref_base_len(e->name);
		ok = e->dup == 0 && len >= 1 && len <= POP3D_UIDL_MAX;
		for (k = 0; ok && k < len; k++)
			ok = (unsigned char)e->name[k] >= 0x21 &&
			    (unsigned char)e->name[k] <= 0x7e;
		if (ok && len >= 32) {
			int shaped = len == 32 || (len > 33 &&
			    e->name[32] == '-');

			for (k = 0; shaped && k < 32; k++)
				shaped = strchr("0123456789abcdef",
				    e->name[k]) != NULL;
			for (k = 33; shaped && k < len; k++)
				shaped = e->name[k] >= '0' && e->name[k] <= '9';
			ok = !shaped;
		}
		if (ok) {
			memcpy(e->uidl, e->name, len);
			e->uidl[len] = '\0';
			continue;
		}
		MD5Init(&ctx);
		MD5Update(&ctx, (const uint8_t *)e->name, len);
		MD5Final(d, &ctx);
		for (k = 0; k < 16; k++) {
			e->uidl[2 * k] = hex[d[k] >> 4];
			e->uidl[2 * k + 1] = hex[d[k] & 0xf];
		}
		e->uidl[32] = '\0';
		if (e->dup > 0)
			snprintf(e->uidl + 32, sizeof(e->uidl) - 32, "-%u",
			    (unsigned)e->dup);
	}
}

static struct node *
node_find(int sub, const char *name)
{
	size_t i;

	for (i = 0; i < nnodes; i++)
		if (nodes[i].sub == sub && strcmp(nodes[i].name, name) == 0)
			return &nodes[i];
	return NULL;
}

/*
 * Whether RETR and TOP of message i must work: not when another client
 * removed its file first, nor when it renamed a file whose unique part
 * another message shares (such a file is never followed: the one found
 * might be the other's).  A file renamed alone is found again.
 */
static int
ref_sendable(size_t i)
{
	return act == A_NONE || act_after || i != act_msg ||
	    (act != A_UNLINK && !(ents[order[i]].flags & MSG_SHARED));
}

/*
 * The directories after UPDATE: every entry as made, moved or removed by
 * the other client, but the deleted messages (a renamed one is followed
 * when its unique part is its own); then, in table order, each kept
 * message that the table has in new/ goes to cur/ under its name (":2,"
 * behind it when it has no ':'), unless that name is taken in cur/ or
 * longer than NAME_MAX: then it stays.  The table has the name found at
 * a RETR; one renamed after it, or not followed, is not moved (its
 * old name is gone).
 */
static void
ref_update(void)
{
	size_t i;

	nnodes = 0;
	for (i = 0; i < nents; i++) {
		const struct ent *e = &ents[i];
		int affected = act != A_NONE && e->msg &&
		    i == order[act_msg];
		struct node *nd;

		if (affected && act == A_UNLINK)
			continue;
		if (e->msg && e->del && !(affected &&
		    (ents[i].flags & MSG_SHARED)))
			continue;
		nd = &nodes[nnodes++];
		nd->sub = affected ? act_sub : e->sub;
		snprintf(nd->name, sizeof(nd->name), "%s", affected ?
		    act_name : e->name);
		nd->kind = e->kind;
		nd->body = e->body;
		nd->len = e->len;
		nd->seen = 0;
	}
	for (i = 0; i < nmsgs; i++) {
		const struct ent *e = &ents[order[i]];
		const char *name = e->name;
		char to[NAME_MAX + 4];
		struct node *nd;
		int sub = e->sub;

		if (act != A_NONE && i == act_msg) {
			if (act_after || act == A_UNLINK ||
			    (e->flags & MSG_SHARED))
				continue;
			sub = act_sub;
			name = act_name;
		}
		if (e->del || sub != 0)
			continue;
		snprintf(to, sizeof(to), "%s%s", name,
		    strchr(name, ':') != NULL ? "" : ":2,");
		if (strlen(to) > NAME_MAX || node_find(1, to) != NULL)
			continue;
		nd = node_find(0, name);
		CHECK(nd != NULL);
		nd->sub = 1;
		snprintf(nd->name, sizeof(nd->name), "%s", to);
	}
}

/*
 * Chooses what the other client does (opts bits 2-3 what, bit 4 when,
 * bits 5-7 which message), and where a renamed file goes: its unique part
 * with new flags.  Nothing when that name is taken or too long.
 */
static void
act_choose(int opts)
{
	char path[PATH_MAX];
	const struct ent *e;
	struct stat st;
	size_t base;

	act = (enum act)((opts >> 2) & 3);
	act_after = (opts >> 4) & 1;
	if (nmsgs == 0) {
		act = A_NONE;
		return;
	}
	act_msg = (size_t)(opts >> 5) % nmsgs;
	e = &ents[order[act_msg]];
	base = ref_base_len(e->name);
	act_sub = act == A_MOVE ? 1 - e->sub : e->sub;
	if (act == A_UNLINK || act == A_NONE)
		return;
	if ((size_t)snprintf(act_name, sizeof(act_name), "%.*s%s",
	    (int)base, e->name, strcmp(e->name + base, ":2,FS") == 0 ?
	    ":2,T" : ":2,FS") >= sizeof(act_name)) {
		act = A_NONE;
		return;
	}
	ent_path(path, sizeof(path), act_sub, act_name);
	if (lstat(path, &st) == 0)
		act = A_NONE;
}

/* The other client's doing, at the time chosen. */
static void
act_do(int after)
{
	const struct ent *e;
	char from[PATH_MAX], to[PATH_MAX];

	if (act == A_NONE || after != act_after)
		return;
	e = &ents[order[act_msg]];
	ent_path(from, sizeof(from), e->sub, e->name);
	if (act == A_UNLINK) {
		CHECK(unlink(from) == 0);
		return;
	}
	ent_path(to, sizeof(to), act_sub, act_name);
	CHECK(rename(from, to) == 0);
}

/* ---- Building the Maildir from the input. ---- */

static int
ent_exists(int sub, const char *name, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (ents[i].sub == sub && strcmp(ents[i].name, name) == 0)
			return 1;
	return 0;
}

/*
 * The input: an options byte (bits 0-1 for check_sends, 2-7 for
 * act_choose), then entries, each a control byte, a name
 * up to NUL ('/' read as '\\', cut at NAME_MAX) and what the kind needs.
 * Control byte: bits 0-1 the directory (new, cur, tmp, new), bits 2-3 the
 * kind (a file, a file, something else, a hard link), bit 4 DELE, bit 5
 * repeat the content to make a bigger file; bits 6-7 which something else
 * (a directory, a symlink, a symlink to a device, a FIFO), for a repeated
 * file bit 6 adds 64 KiB.  A file: a 16-bit little-endian length and its
 * bytes, then when repeated a 16-bit count of bytes to add.  A hard link:
 * one byte, which earlier file.  Entries that cannot be made (an empty
 * name, ".", "..", a name taken) are left out.
 */
static int
decode(const uint8_t *p, size_t n)
{
	size_t pos = 0, nl, i, k, files;
	int opts;

	nents = 0;
	if (n == 0)
		return 0;
	opts = p[pos++];
	while (pos < n && nents < ENT_MAX) {
		unsigned c = p[pos++];
		struct ent *e = &ents[nents];

		memset(e, 0, sizeof(*e));
		e->sub = (c & 3) == 3 ? 0 : (int)(c & 3);
		for (nl = 0; pos < n && p[pos] != '\0'; pos++)
			if (nl < NAME_MAX)
				e->name[nl++] = p[pos] == '/' ? '\\' :
				    (char)p[pos];
		if (pos < n)
			pos++;
		e->name[nl] = '\0';
		e->del = (c >> 4) & 1;
		switch ((c >> 2) & 3) {
		case 0:
		case 1: {
			size_t len = 0, fill = 0;

			e->kind = K_FILE;
			if (pos < n)
				len = p[pos++];
			if (pos < n)
				len |= (size_t)p[pos++] << 8;
			if (len > n - pos)
				len = n - pos;
			if (c & 0x20) {
				if (pos + len < n)
					fill = p[pos + len];
				if (pos + len + 1 < n)
					fill |= (size_t)p[pos + len + 1] << 8;
				fill |= (size_t)((c >> 6) & 1) << 16;
				if (fill > FILL_MAX)
					fill = FILL_MAX;
			}
			e->len = len + fill;
			e->own = malloc(e->len + 1);
			CHECK(e->own != NULL);
			for (i = 0; i < e->len; i++)
				e->own[i] = len > 0 ? p[pos + i % len] : 'x';
			e->body = e->own;
			pos += len;
			if (c & 0x20)
				pos = pos + 2 < n ? pos + 2 : n;
			break;
		}
		case 2:
			e->kind = (enum kind[]){ K_DIR, K_SYMLINK, K_DEVLINK,
			    K_FIFO }[(c >> 6) & 3];
			break;
		default:
			e->kind = K_LINK;
			k = pos < n ? p[pos++] : 0;
			for (i = files = 0; i < nents; i++)
				files += ents[i].kind == K_FILE;
			if (files == 0) {
				e->name[0] = '\0';	/* left out */
				break;
			}
			k %= files;
			for (i = 0; ents[i].kind != K_FILE || k-- > 0; i++)
				;
			e->body = ents[i].body;
			e->len = ents[i].len;
			e->ino = i;	/* the target, until made */
			break;
		}
		if (e->name[0] == '\0' || strcmp(e->name, ".") == 0 ||
		    strcmp(e->name, "..") == 0 ||
		    ent_exists(e->sub, e->name, nents)) {
			free(e->own);
			e->own = NULL;
			continue;
		}
		e->msg = (e->kind == K_FILE || e->kind == K_LINK) &&
		    e->sub != 2 && e->name[0] != '.';
		nents++;
	}
	return opts;
}

static void
ent_path(char *buf, size_t n, int sub, const char *name)
{
	CHECK((size_t)snprintf(buf, n, "%s/%s/%s", mdpath, subs[sub], name) <
	    n);
}

static void
make_maildir(void)
{
	char path[PATH_MAX], target[PATH_MAX];
	struct stat st;
	size_t i;
	int fd;

	CHECK(mkdir(mdpath, 0700) == 0);
	for (i = 0; i < 3; i++) {
		ent_path(path, sizeof(path), (int)i, "");
		CHECK(mkdir(path, 0700) == 0);
	}
	for (i = 0; i < nents; i++) {
		struct ent *e = &ents[i];

		ent_path(path, sizeof(path), e->sub, e->name);
		switch (e->kind) {
		case K_FILE:
			fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			    0600);
			CHECK(fd != -1);
			CHECK(e->len == 0 ||
			    write(fd, e->body, e->len) == (ssize_t)e->len);
			CHECK(close(fd) == 0);
			break;
		case K_LINK:
			ent_path(target, sizeof(target), ents[e->ino].sub,
			    ents[e->ino].name);
			CHECK(link(target, path) == 0);
			break;
		case K_DIR:
			CHECK(mkdir(path, 0700) == 0);
			break;
		case K_SYMLINK:
			CHECK(symlink("x", path) == 0);
			break;
		case K_DEVLINK:
			CHECK(symlink("/dev/zero", path) == 0);
			break;
		case K_FIFO:
			CHECK(mkfifo(path, 0600) == 0);
			break;
		}
		CHECK(lstat(path, &st) == 0);
		e->ino = (uint64_t)st.st_ino;
	}
}

/* Removes path and everything under it (the Maildir of one input). */
static void
rm_tree(const char *path)
{
	char sub[PATH_MAX];
	struct dirent *de;
	struct stat st;
	DIR *d;

	if (lstat(path, &st) == -1)
		return;
	if (!S_ISDIR(st.st_mode)) {
		(void)unlink(path);
		return;
	}
	if ((d = opendir(path)) != NULL) {
		while ((de = readdir(d)) != NULL)
			if (strcmp(de->d_name, ".") != 0 &&
			    strcmp(de->d_name, "..") != 0 &&
			    (size_t)snprintf(sub, sizeof(sub), "%s/%s", path,
			    de->d_name) < sizeof(sub))
				rm_tree(sub);
		(void)closedir(d);
	}
	(void)rmdir(path);
}

static void
cleanup(void)
{
	rm_tree(mdpath);
	fuzz_rmdir();
}

/* ---- The checks. ---- */

/*
 * Takes what io has sent, and empties it: from its buffer when it has
 * not had to write yet, else from out_fd.
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

/* The table: names, directories, sizes, copies, UIDLs. */
static void
check_table(const struct maildrop *md)
{
	char ids[ENT_MAX][POP3D_UIDL_MAX + 1];
	size_t i, j, count;
	uint64_t octets, sum = 0;

	CHECK(md->ops == &maildir_ops);
	CHECK(md->count == nmsgs);
	for (i = 0; i < nmsgs; i++) {
		const struct ent *e = &ents[order[i]];
		const char *name = md->names + md->loc.name[i];

		CHECK(name[0] == (e->sub == 0 ? 'n' : 'c'));
		CHECK(strcmp(name + 1, e->name) == 0);
		CHECK(md->msgs[i].size == e->size);
		CHECK(md->msgs[i].dup == e->dup);
		CHECK(md->msgs[i].flags == e->flags);
		/* STAT's total saturates (sizes from ,W= may be huge). */
		sum = e->size > UINT64_MAX - sum ? UINT64_MAX : sum + e->size;
		memset(ids[i], 0x7f, sizeof(ids[i]));
		maildrop_uidl(md, i, ids[i]);
		CHECK(memchr(ids[i], '\0', sizeof(ids[i])) != NULL);
		CHECK(strcmp(ids[i], e->uidl) == 0);
		/* RFC 1939 §7: 1..70 characters of 0x21..0x7E, distinct. */
		CHECK(ids[i][0] != '\0');
		for (j = 0; ids[i][j] != '\0'; j++)
			CHECK(ids[i][j] > 0x20 && ids[i][j] < 0x7f);
		for (j = 0; j < i; j++)
			CHECK(strcmp(ids[j], ids[i]) != 0);
	}
	maildrop_stat(md, &count, &octets);
	CHECK(count == nmsgs && octets == sum);
}

/*
 * RETR and TOP of every message as session.c's send_msg does them:
 * check, then send; a message another client took away gets MD_TEMP
 * and nothing is sent.  opts bit 0: send alone (it opens the file itself)
 * for odd messages; bit 1: a check of another message comes between.
 */
static void
check_sends(struct maildrop *md, int opts)
{
	size_t i, t;

	io_init(&io, -1, out_fd, 5);
	for (i = 0; i < nmsgs; i++) {
		const struct ent *e = &ents[order[i]];
		long long tops[] = { -1, 0, 1 + (long long)(i % 3),
		    LLONG_MAX };

		for (t = 0; t < sizeof(tops) / sizeof(tops[0]); t++) {
			size_t j = (i + 1) % nmsgs;
			enum md_status want = ref_sendable(i) ? MD_OK :
			    MD_TEMP;

			ref_send(&expect, e, tops[t]);
			if (want != MD_OK)
				expect.len = 0;
			if ((opts & 2) && nmsgs > 1)
				CHECK(maildrop_check(md, j, tops[t]) ==
				    (ref_sendable(j) ? MD_OK : MD_TEMP));
			if (!((opts & 1) && (i & 1)))
				CHECK(maildrop_check(md, i, tops[t]) == want);
			CHECK(maildrop_send(md, &io, i, tops[t]) == want);
			take_output(&got);
			same_output(&got, &expect);
		}
		md->msgs[i].flags |= MSG_RETRIEVED;
	}
}

/* Reads the regular file path whole into b. */
static void
read_file(const char *path, struct buf *b)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	ssize_t n;

	CHECK(fd != -1);
	b->len = 0;
	for (;;) {
		buf_add(b, NULL, 65536);
		b->len -= 65536;
		n = read(fd, b->p + b->len, 65536);
		CHECK(n >= 0);
		if (n == 0)
			break;
		b->len += (size_t)n;
	}
	CHECK(close(fd) == 0);
}

/* The directories hold exactly the nodes, each as it was made. */
static void
check_dirs(void)
{
	static const char *const top[] = { ".pop3d.lock", "new", "cur",
	    "tmp" };
	char path[PATH_MAX], link[16];
	struct dirent *de;
	struct stat st;
	size_t i, n = 0, ntop = 0;
	DIR *d;

	for (i = 0; i < 3; i++) {
		ent_path(path, sizeof(path), (int)i, "");
		CHECK((d = opendir(path)) != NULL);
		while ((de = readdir(d)) != NULL) {
			struct node *nd;

			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			nd = node_find((int)i, de->d_name);
			CHECK(nd != NULL);
			CHECK(!nd->seen);
			nd->seen = 1;
			n++;
			ent_path(path, sizeof(path), (int)i, de->d_name);
			CHECK(lstat(path, &st) == 0);
			switch (nd->kind) {
			case K_FILE:
			case K_LINK:
				CHECK(S_ISREG(st.st_mode));
				read_file(path, &file);
				CHECK(file.len == nd->len);
				CHECK(nd->len == 0 ||
				    memcmp(file.p, nd->body, nd->len) == 0);
				break;
			case K_DIR:
				CHECK(S_ISDIR(st.st_mode));
				break;
			case K_SYMLINK:
			case K_DEVLINK:
				CHECK(S_ISLNK(st.st_mode));
				memset(link, 0, sizeof(link));
				CHECK(readlink(path, link, sizeof(link) - 1) >
				    0);
				CHECK(strcmp(link, nd->kind == K_SYMLINK ?
				    "x" : "/dev/zero") == 0);
				break;
			case K_FIFO:
				CHECK(S_ISFIFO(st.st_mode));
				break;
			}
		}
		CHECK(closedir(d) == 0);
	}
	CHECK(n == nnodes);
	CHECK((d = opendir(mdpath)) != NULL);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		for (i = 0; i < 4 && strcmp(de->d_name, top[i]) != 0; i++)
			;
		CHECK(i < 4);
		ntop++;
	}
	CHECK(closedir(d) == 0);
	CHECK(ntop == 4);
}

/* The lowest free descriptor: the same after a session, or one leaked. */
static int
free_fd(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	CHECK(fd != -1);
	CHECK(close(fd) == 0);
	return fd;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_report_init();
	log_init(1);
	fuzz_tmpdir(dir, sizeof(dir));
	CHECK((size_t)snprintf(mdpath, sizeof(mdpath), "%s/Maildir", dir) <
	    sizeof(mdpath));
	fuzz_on_exit(cleanup);
	out_fd = memfd_create("fuzz-out", MFD_CLOEXEC);
	CHECK(out_fd != -1);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct maildrop md;
	size_t i;
	int opts, fd0 = free_fd();

	opts = decode(data, size);
	make_maildir();
	ref_table();
	CHECK(maildrop_open(&md, mdpath) == MD_OK);
	check_table(&md);
	act_choose(opts);
	act_do(0);
	check_sends(&md, opts);
	act_do(1);
	/* DELE (RFC 1939 §5) of the chosen messages, then QUIT. */
	for (i = 0; i < nmsgs; i++)
		if (ents[order[i]].del)
			md.msgs[i].flags |= MSG_DELETED;
	CHECK(maildrop_update(&md) == MD_OK);
	maildrop_close(&md);
	CHECK(free_fd() == fd0);
	ref_update();
	check_dirs();
	rm_tree(mdpath);
	for (i = 0; i < nents; i++) {
		free(ents[i].own);
		ents[i].own = NULL;
	}
	return 0;
}
