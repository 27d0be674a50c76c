/*
 * maildrop.c: the maildrop interface that the session sees.
 *
 * It picks the store behind a path, owns the message table (built once at
 * login, never re-sorted, so message numbers stay fixed for the session,
 * RFC 1939 §5) and hands RETR, TOP and UPDATE to the store.  It trusts no
 * byte of the mail.  Runs as the mail user, after privileges are dropped.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "pop3d.h"

/*
 * A Maildir is a directory with cur/, new/ and tmp/.  Following a symlink
 * here is harmless: the store opens the path itself and refuses links.
 */
static int
is_maildir(const char *path)
{
	static const char *const sub[] = { "cur", "new", "tmp" };
	struct stat st;
	char p[1100];
	size_t i;

	if (stat(path, &st) == -1 || !S_ISDIR(st.st_mode))
		return 0;
	for (i = 0; i < 3; i++)
		if ((size_t)snprintf(p, sizeof(p), "%s/%s", path, sub[i]) >=
		    sizeof(p) || stat(p, &st) == -1 || !S_ISDIR(st.st_mode))
			return 0;
	return 1;
}

int
maildrop_sidefile(const struct maildrop *md, const char *what, char *buf,
    size_t n, char *dir, size_t dn)
{
	char tmp[1024], tmp2[1024];

	if (strlcpy(tmp, md->path, sizeof(tmp)) >= sizeof(tmp) ||
	    strlcpy(tmp2, md->path, sizeof(tmp2)) >= sizeof(tmp2))
		return -1;
	if (strlcpy(dir, dirname(tmp), dn) >= dn)
		return -1;
	if ((size_t)snprintf(buf, n, "%s/.%s.pop3d-%s", dir, basename(tmp2),
	    what) >= n)
		return -1;
	return 0;
}

/*
 * The session lock of either store: an exclusive flock(2) of fd, or
 * [IN-USE] (RFC 2449 §8.1.1) when another session holds it.
 */
enum md_status
maildrop_flock(struct maildrop *md, int fd)
{
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		if (errno == EWOULDBLOCK) {
			log_msg(LOG_NOTICE, "maildrop %s: in use", md->path);
			return MD_INUSE;
		}
		log_msg(LOG_ERR, "maildrop %s: flock: %s", md->path,
		    strerror(errno));
		return MD_TEMP;
	}
	return MD_OK;
}

enum md_status
maildrop_open(struct maildrop *md, const char *path)
{
	enum md_status r;

	memset(md, 0, sizeof(*md));
	md->fd = -1;
	if ((md->path = strdup(path)) == NULL) {
		log_msg(LOG_ERR, "maildrop %s: %s", path, strerror(errno));
		return MD_TEMP;
	}
	md->lockfd = -1;
	md->ops = is_maildir(path) ? &maildir_ops : &mbox_ops;
	r = md->ops->open(md);
	if (r != MD_OK)
		maildrop_close(md);
	return r;
}

void
maildrop_stat(const struct maildrop *md, size_t *n, uint64_t *octets)
{
	size_t i;

	*n = 0;
	*octets = 0;
	for (i = 0; i < md->count; i++)
		if (!(md->msgs[i].flags & MSG_DELETED)) {
			(*n)++;
			/* Sizes from names (,W=) may be huge: no wrap. */
			*octets = md->msgs[i].size > UINT64_MAX - *octets ?
			    UINT64_MAX : *octets + md->msgs[i].size;
		}
}

void
maildrop_uidl_digest(const unsigned char uid[16], uint32_t dup, char *buf)
{
	static const char hex[] = "0123456789abcdef";
	size_t j;

	for (j = 0; j < 16; j++) {
		buf[2 * j] = hex[uid[j] >> 4];
		buf[2 * j + 1] = hex[uid[j] & 0xf];
	}
	buf[2 * j] = '\0';
	/*
	 * Identical copies share a digest; the suffix keeps their ids unique
	 * (RFC 1939 §7).  Hex has no '-', so no suffixed id can equal a
	 * plain one.  (Maildir hashes a unique part of this shape rather than
	 * use it as it is, so no name can take one of these ids either.)
	 */
	if (dup > 0)
		snprintf(buf + 2 * j, POP3D_UIDL_MAX + 1 - 2 * j, "-%u",
		    (unsigned)dup);
}

void
maildrop_uidl(const struct maildrop *md, size_t i, char *buf)
{
	md->ops->uidl(md, i, buf);
}

unsigned char *
maildrop_buf(void)
{
	/* Aligned for the directory entries that maildir.c reads into it. */
	static _Alignas(16) unsigned char buf[POP3D_MAILBUF];

	return buf;
}

struct msg *
maildrop_append(struct maildrop *md)
{
	if (md->count == md->cap) {
		size_t cap = md->cap == 0 ? 64 : md->cap * 2;
		struct msg *p;
		void *q;

		if (cap > POP3D_MAX_MSGS)
			cap = POP3D_MAX_MSGS;
		if (md->count >= cap) {
			errno = EFBIG;
			return NULL;
		}
		if ((p = reallocarray(md->msgs, cap, sizeof(*p))) == NULL)
			return NULL;
		md->msgs = p;
		if (md->loc_size > 0) {
			q = reallocarray(md->loc.p, cap, md->loc_size);
			if (q == NULL)
				return NULL;	/* msgs is bigger: harmless */
			md->loc.p = q;
		}
		md->cap = cap;
	}
	if (md->loc_size > 0)
		memset((char *)md->loc.p + md->count * md->loc_size, 0,
		    md->loc_size);
	memset(&md->msgs[md->count], 0, sizeof(md->msgs[0]));
	return &md->msgs[md->count++];
}

/* The table being sorted by dup_cmp, and its order. */
static const struct maildrop *sort_md;
static int (*sort_cmp)(const struct maildrop *, size_t, size_t);

static int
dup_cmp(const void *a, const void *b)
{
	uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
	int c = sort_cmp(sort_md, i, j);

	if (c != 0)
		return c;
	return i < j ? -1 : i > j;
}

int
maildrop_dedup(struct maildrop *md,
    int (*cmp)(const struct maildrop *, size_t, size_t))
{
	uint32_t *idx;
	size_t i;

	if (md->count < 2)
		return 0;
	if ((idx = reallocarray(NULL, md->count, sizeof(*idx))) == NULL)
		return -1;
	for (i = 0; i < md->count; i++)
		idx[i] = (uint32_t)i;
	sort_md = md;
	sort_cmp = cmp;
	qsort(idx, md->count, sizeof(*idx), dup_cmp);
	/* Equal keys sort by position, so copies count in table order. */
	for (i = 1; i < md->count; i++)
		if (cmp(md, idx[i - 1], idx[i]) == 0) {
			md->msgs[idx[i]].dup = md->msgs[idx[i - 1]].dup + 1;
			md->msgs[idx[i - 1]].flags |= MSG_SHARED;
			md->msgs[idx[i]].flags |= MSG_SHARED;
		}
	free(idx);
	return 0;
}

enum md_status
maildrop_check(struct maildrop *md, size_t i, long long lines)
{
	return md->ops->check != NULL ? md->ops->check(md, i, lines) : MD_OK;
}

enum md_status
maildrop_send(struct maildrop *md, struct io *io, size_t i, long long lines)
{
	return md->ops->send(md, io, i, lines);
}

enum md_status
maildrop_update(struct maildrop *md)
{
	size_t i;

	md->ndele = 0;
	md->bdele = 0;
	for (i = 0; i < md->count; i++)
		if (md->msgs[i].flags & MSG_DELETED) {
			md->ndele++;
			/* Sizes from names (,W=) may be huge: no wrap. */
			md->bdele = md->msgs[i].size > UINT64_MAX - md->bdele ?
			    UINT64_MAX : md->bdele + md->msgs[i].size;
		}
	/* The store decides: Maildir moves the shown messages to cur/ even
	 * when nothing was deleted. */
	return md->ops->update != NULL ? md->ops->update(md) : MD_OK;
}

void
maildrop_free_table(struct maildrop *md)
{
	free(md->msgs);
	md->msgs = NULL;
	free(md->loc.p);
	md->loc.p = NULL;
	md->count = md->cap = 0;
}

void
maildrop_close(struct maildrop *md)
{
	/* The store owns the descriptor; a zeroed maildrop has none. */
	if (md->ops != NULL)
		md->ops->close(md);
	md->fd = -1;
	maildrop_free_table(md);
	free(md->path);
	md->path = NULL;
	free(md->names);
	md->names = NULL;
	md->names_len = md->names_cap = 0;
	md->ops = NULL;
}
