/*
 * mboxindex.c: an mbox's message table, kept beside it for the next
 * session.
 *
 * Opening an mbox means reading every byte of it, and a client that polls
 * every few minutes makes pop3d read the same gigabyte again each time.
 * The table that the scan built is written to ".<mbox>.pop3d-index" with
 * the identity and state of the file it describes (device, inode, size,
 * mtime and ctime to the nanosecond).  The next session takes it as it is
 * when the file is still in that state, or scans only what was appended;
 * mbox.c decides which (mbox_open) and checks what it takes.
 *
 * The index is a cache, never the only copy of anything: one that is
 * missing, torn by a crash, of another format or another file, or not
 * above suspicion (not a plain file of the mail user's own, writable by
 * others, linked twice) is ignored and the mbox scanned.  It is written
 * to a new name and renamed over the old, with a SipHash checksum over
 * all of it; no fsync, since losing it costs only one scan.  Runs as the
 * mail user, with the session's flock on the mbox held, so no two
 * sessions write it at once.
 */
#include <sys/stat.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pop3d.h"

/*
 * Change the magic whenever what a scan puts in the table changes (the
 * digest, how sizes or offsets are counted), not only its layout: an
 * index of the old rules would otherwise pass for a fresh one.  IX1 had
 * one 64-byte struct per message; IX2 has md->msgs, then md->loc.mbox.
 * IX3 has the same layout and a flags word (INDEX_WHOLE) where IX2 had
 * padding: IX2 was written after index+scan sessions too, so none of
 * them is known to be whole, and loaded as "not whole" it would keep
 * every RETR re-checking until an UPDATE.  Refused, it costs one scan.
 */
#define INDEX_MAGIC	"pop3dIX3"
#define INDEX_ORDER	0x01020304u

/* Host byte order and layout: the index never leaves this machine. */
struct index_head {
	char		 magic[8];
	uint32_t	 order;		/* INDEX_ORDER as written */
	uint32_t	 msgsize;	/* sizeof(struct msg) */
	uint32_t	 locsize;	/* sizeof(struct mbox_msg) */
	uint32_t	 flags;
#define INDEX_WHOLE	0x01	/* the table is a scan of all the file */
	uint64_t	 dev, ino;
	uint64_t	 size;		/* bytes of the mbox, all in the table */
	int64_t		 mtime[2], ctime[2];	/* seconds, nanoseconds */
	uint64_t	 count;
	unsigned char	 sum[16];	/* of this head (sum zero) and tables */
};

/* Not the UIDL's key: an index checksum is not a message digest. */
static const unsigned char sum_key[16] = "pop3d index v1..";

static void
checksum(const struct index_head *h, const struct msg *m,
    const struct mbox_msg *at, size_t n, unsigned char out[16])
{
	struct index_head tmp = *h;
	struct uidhash u;

	memset(tmp.sum, 0, sizeof(tmp.sum));
	uidhash_init_key(&u, sum_key);
	uidhash_update(&u, &tmp, sizeof(tmp));
	uidhash_update(&u, m, n * sizeof(*m));
	uidhash_update(&u, at, n * sizeof(*at));
	uidhash_final(&u, out);
}

static int
index_path(const struct maildrop *md, char *path, size_t n)
{
	char dir[1024];

	return maildrop_sidefile(md, "index", path, n, dir, sizeof(dir));
}

/*
 * Offsets that an mbox scan can give: in file order, each message's
 * envelope, header and body inside the file and before the next one
 * (off < data <= next message's off, so the offsets ascend).  A
 * checksum only proves that pop3d wrote the index; this proves that what
 * it wrote can steer no read or write outside the file.
 */
static int
plausible(const struct msg *m, const struct mbox_msg *at, size_t n,
    uint64_t size)
{
	size_t i;

	if (n == 0 || at[0].off != 0)
		return 0;
	for (i = 0; i < n; i++) {
		uint64_t next = i + 1 < n ? at[i + 1].off : size;

		if (at[i].data <= at[i].off || at[i].data > next ||
		    at[i].len > next - at[i].data ||
		    at[i].hdrlen > at[i].len || m[i].size < at[i].len ||
		    (m[i].flags & ~(uint32_t)MSG_SHARED) != 0)
			return 0;
	}
	return 1;
}

int
mbox_index_load(struct maildrop *md, struct mbox_index *ix)
{
	struct index_head h;
	struct stat st;
	struct msg *m = NULL;
	struct mbox_msg *at = NULL;
	unsigned char sum[16];
	char path[1100];
	int fd;

	if (index_path(md, path, sizeof(path)) == -1 ||
	    (fd = open(path, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC |
	    O_NONBLOCK)) == -1)
		return -1;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH)) ||
	    st.st_nlink != 1 || (uint64_t)st.st_size < sizeof(h) ||
	    fd_read_all(fd, &h, sizeof(h)) == -1)
		goto bad;
	if (memcmp(h.magic, INDEX_MAGIC, sizeof(h.magic)) != 0 ||
	    h.order != INDEX_ORDER || h.msgsize != sizeof(*m) ||
	    h.locsize != sizeof(*at) ||
	    h.dev != (uint64_t)md->id.dev || h.ino != (uint64_t)md->id.ino ||
	    (h.flags & ~(uint32_t)INDEX_WHOLE) != 0 ||
	    h.count == 0 || h.count > POP3D_MAX_MSGS ||
	    (uint64_t)st.st_size != sizeof(h) + h.count * (sizeof(*m) +
	    sizeof(*at)))
		goto bad;
	if ((m = reallocarray(NULL, (size_t)h.count, sizeof(*m))) == NULL ||
	    (at = reallocarray(NULL, (size_t)h.count, sizeof(*at))) == NULL ||
	    fd_read_all(fd, m, (size_t)h.count * sizeof(*m)) == -1 ||
	    fd_read_all(fd, at, (size_t)h.count * sizeof(*at)) == -1)
		goto bad;
	checksum(&h, m, at, (size_t)h.count, sum);
	if (memcmp(sum, h.sum, sizeof(sum)) != 0 ||
	    !plausible(m, at, (size_t)h.count, h.size))
		goto bad;
	(void)close(fd);
	md->msgs = m;
	md->loc.mbox = at;
	md->loc_size = sizeof(*at);
	md->count = md->cap = (size_t)h.count;
	md->end = h.size;
	ix->size = h.size;
	ix->mtime.tv_sec = (time_t)h.mtime[0];
	ix->mtime.tv_nsec = (long)h.mtime[1];
	ix->ctime.tv_sec = (time_t)h.ctime[0];
	ix->ctime.tv_nsec = (long)h.ctime[1];
	ix->whole = (h.flags & INDEX_WHOLE) != 0;
	return 0;
bad:
	free(m);
	free(at);
	(void)close(fd);
	return -1;
}

void
mbox_index_save(const struct maildrop *md, const struct stat *st, int whole)
{
	struct index_head h;
	char path[1100], tmp[1110];
	int fd;

	if (md->count == 0 || md->end != (uint64_t)st->st_size ||
	    index_path(md, path, sizeof(path)) == -1 ||
	    (size_t)snprintf(tmp, sizeof(tmp), "%s.new", path) >= sizeof(tmp))
		return;
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, INDEX_MAGIC, sizeof(h.magic));
	h.order = INDEX_ORDER;
	h.msgsize = sizeof(struct msg);
	h.locsize = sizeof(struct mbox_msg);
	h.flags = whole ? INDEX_WHOLE : 0;
	h.dev = (uint64_t)md->id.dev;
	h.ino = (uint64_t)md->id.ino;
	h.size = md->end;
	h.mtime[0] = st->st_mtim.tv_sec;
	h.mtime[1] = st->st_mtim.tv_nsec;
	h.ctime[0] = st->st_ctim.tv_sec;
	h.ctime[1] = st->st_ctim.tv_nsec;
	h.count = md->count;
	checksum(&h, md->msgs, md->loc.mbox, md->count, h.sum);
	/* A ".new" left by a crash is ours to replace. */
	(void)unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY |
	    O_CLOEXEC, 0600);
	if (fd == -1)
		return;		/* no writable place: no index, no harm */
	if (fd_write_all(fd, &h, sizeof(h)) == -1 ||
	    fd_write_all(fd, md->msgs, md->count * sizeof(*md->msgs)) == -1 ||
	    fd_write_all(fd, md->loc.mbox, md->count *
	    sizeof(*md->loc.mbox)) == -1) {
		(void)close(fd);
		(void)unlink(tmp);
	} else if (close(fd) == -1 || rename(tmp, path) == -1)
		(void)unlink(tmp);
}

void
mbox_index_drop(const struct maildrop *md)
{
	char path[1100];

	if (index_path(md, path, sizeof(path)) == 0)
		(void)unlink(path);
}
