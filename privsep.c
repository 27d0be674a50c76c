/*
 * privsep.c: the pipe between the pre-login process and its root parent.
 *
 * The parent reads only these framed, size-checked messages, never the
 * network: a frame is a type and a length, and each type has a fixed size
 * or a stated bound.  Runs on both ends: as root in the parent, as the
 * unprivileged pre-login user in the child.  It trusts neither end's
 * lengths.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "pop3d.h"

struct frame {
	uint32_t	type;
	uint32_t	len;
};

int
fd_write_all(int fd, const void *p, size_t n)
{
	const unsigned char *s = p;

	while (n > 0) {
		ssize_t w = write(fd, s, n);

		if (w == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

int
fd_read_all(int fd, void *p, size_t n)
{
	unsigned char *d = p;

	while (n > 0) {
		ssize_t r = read(fd, d, n);

		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EPIPE;
			return -1;
		}
		d += r;
		n -= (size_t)r;
	}
	return 0;
}

int
privsep_send(int fd, uint32_t type, const void *p, size_t n)
{
	struct frame f = { type, (uint32_t)n };

	if (n > UINT32_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	if (fd_write_all(fd, &f, sizeof(f)) == -1 ||
	    fd_write_all(fd, p, n) == -1)
		return -1;
	return 0;
}

int
privsep_recv(int fd, uint32_t type, void *p, size_t len, size_t *got)
{
	struct frame f;

	if (fd_read_all(fd, &f, sizeof(f)) == -1)
		return -1;
	if (f.type != type || f.len > len ||
	    (type != PRIV_HANDOFF && f.len != len)) {
		errno = EPROTO;
		return -1;
	}
	if (fd_read_all(fd, p, f.len) == -1)
		return -1;
	if (got != NULL)
		*got = f.len;
	return 0;
}
