/*
 * io.c: the connection, buffered both ways.
 *
 * The line reader distrusts every byte: lines are bounded (RFC 2449 §4),
 * NUL and bare CR are refused, and a read waits at most the idle timeout
 * (RFC 1939 §3) through poll(2).  Output collects in one buffer and leaves
 * when the buffer fills or when the reader is about to wait, so that a run
 * of pipelined commands is answered in few writes (RFC 2449 §6.6) and a
 * whole RETR leaves in buffer-sized writes.  Runs as whatever user the
 * process is at the moment: before login that may be root or an
 * unprivileged user, afterwards the mail user.
 */
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pop3d.h"

void
io_init(struct io *io, int in, int out, int timeout_secs)
{
	int one = 1;

	io->in = in;
	io->out = out;
	io->timeout_ms = timeout_secs > 0 && timeout_secs < 86400 * 24 ?
	    timeout_secs * 1000 : POP3D_TIMEOUT * 1000;
	io->inoff = io->inlen = io->outlen = 0;
	io->err = 0;
	io->bol = 1;
	io->cr = 0;
	/*
	 * Nagle's algorithm would hold back the small last segment of a
	 * response until the client ACKs, which a client with delayed ACKs
	 * does 40 ms later: one stall per RETR.  We already coalesce output,
	 * so Nagle has nothing to add.  Errors mean "not a TCP socket".
	 */
	(void)setsockopt(out, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/*
	 * Keepalives let a vanished client release the maildrop lock long
	 * before the idle timeout (DESIGN.md).
	 */
	if (setsockopt(out, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) == 0) {
		int idle = 60, intvl = 15, cnt = 4;

		(void)setsockopt(out, IPPROTO_TCP, TCP_KEEPIDLE, &idle,
		    sizeof(idle));
		(void)setsockopt(out, IPPROTO_TCP, TCP_KEEPINTVL, &intvl,
		    sizeof(intvl));
		(void)setsockopt(out, IPPROTO_TCP, TCP_KEEPCNT, &cnt,
		    sizeof(cnt));
	}
}

int
io_flush(struct io *io)
{
	size_t off = 0;

	while (!io->err && off < io->outlen) {
		ssize_t n = write(io->out, io->outbuf + off, io->outlen - off);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			io->err = errno;
			break;
		}
		off += (size_t)n;
	}
	io->outlen = 0;
	if (io->err) {
		errno = io->err;
		return -1;
	}
	return 0;
}

void
io_put(struct io *io, const void *p, size_t n)
{
	const unsigned char *s = p;

	while (n > 0) {
		size_t room = sizeof(io->outbuf) - io->outlen;

		if (room == 0) {
			(void)io_flush(io);
			continue;
		}
		if (room > n)
			room = n;
		memcpy(io->outbuf + io->outlen, s, room);
		io->outlen += room;
		s += room;
		n -= room;
	}
}

void
io_reply(struct io *io, const char *fmt, ...)
{
	/* RFC 1939 §3: a response line is at most 512 octets with CRLF. */
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(buf) - 3)
		n = sizeof(buf) - 3;
	buf[n++] = '\r';
	buf[n++] = '\n';
	io_put(io, buf, (size_t)n);
}

static const unsigned char *
find_lf(const struct io *io)
{
	return memchr(io->inbuf + io->inoff, '\n', io->inlen - io->inoff);
}

int
io_pending(const struct io *io)
{
	return find_lf(io) != NULL;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Reads more input, waiting until the deadline.  1 on data, 0 on EOF,
 * -1 on error, -2 on timeout.
 */
static int
fill(struct io *io, int64_t deadline)
{
	ssize_t n;

	if (io->inoff > 0) {
		size_t old = io->inlen;

		memmove(io->inbuf, io->inbuf + io->inoff, io->inlen - io->inoff);
		io->inlen -= io->inoff;
		io->inoff = 0;
		/* No stale copy of a consumed line (a password) stays behind. */
		explicit_bzero(io->inbuf + io->inlen, old - io->inlen);
	}
	for (;;) {
		struct pollfd pfd = { .fd = io->in, .events = POLLIN };
		int64_t left = deadline - now_ms();
		int r;

		if (left <= 0)
			return -2;
		r = poll(&pfd, 1, left > 86400000 ? 86400000 : (int)left);
		if (r == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			continue;	/* the loop rechecks the deadline */
		n = read(io->in, io->inbuf + io->inlen,
		    sizeof(io->inbuf) - io->inlen);
		if (n == -1) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -1;
		}
		if (n == 0)
			return 0;
		io->inlen += (size_t)n;
		return 1;
	}
}

enum io_line
io_readline(struct io *io, char *line, size_t *len)
{
	return io_readline_max(io, line, POP3D_MAX_LINE, len);
}

int
io_preload(struct io *io, const void *p, size_t n)
{
	if (n > sizeof(io->inbuf) - io->inlen)
		return -1;
	memcpy(io->inbuf + io->inlen, p, n);
	io->inlen += n;
	return 0;
}

enum io_line
io_readline_max(struct io *io, char *line, size_t max, size_t *len)
{
	int64_t deadline = now_ms() + io->timeout_ms;
	int toolong = 0;
	const unsigned char *lf;

	*len = 0;
	line[0] = '\0';
	for (;;) {
		int r;

		if ((lf = find_lf(io)) != NULL)
			break;
		if (io->inlen - io->inoff >= max) {
			/*
			 * Too long already: drop what we have and keep
			 * discarding until the LF, whose line is refused.
			 */
			toolong = 1;
			explicit_bzero(io->inbuf + io->inoff,
			    io->inlen - io->inoff);
			io->inoff = io->inlen;
		}
		if (io->outlen > 0 && io_flush(io) == -1)
			return IO_ERROR;
		r = fill(io, deadline);
		if (r == 0)
			return IO_EOF;
		if (r == -1)
			return IO_ERROR;
		if (r == -2)
			return IO_TIMEOUT;
	}

	size_t start = io->inoff;
	size_t end = (size_t)(lf - io->inbuf);	/* index of the LF */
	size_t n = end - start;			/* bytes before the LF */
	enum io_line r = IO_LINE;

	io->inoff = end + 1;
	if (toolong || n + 1 > max ||
	    (n + 2 > max && !(n > 0 && io->inbuf[end - 1] == '\r')))
		/* RFC 2449 §4: 255 octets counting CRLF (a bare LF as 2). */
		r = IO_TOOLONG;
	else {
		if (n > 0 && io->inbuf[end - 1] == '\r')
			n--;
		if (memchr(io->inbuf + start, '\0', n) != NULL ||
		    memchr(io->inbuf + start, '\r', n) != NULL)
			r = IO_BADBYTE;
		else {
			memcpy(line, io->inbuf + start, n);
			line[n] = '\0';
			*len = n;
		}
	}
	/* The caller has its copy; the buffer keeps none (passwords). */
	explicit_bzero(io->inbuf + start, end + 1 - start);
	return r;
}

void
io_body_begin(struct io *io)
{
	io->bol = 1;
	io->cr = 0;
}

/*
 * The conversion is the one mbox_octets counts: each LF, with one CR just
 * before it dropped, becomes CRLF; other CRs pass through.
 */
size_t
io_body_write(struct io *io, const unsigned char *p, size_t n,
    long long *lines)
{
	size_t i = 0;

	if (lines != NULL && *lines == 0)
		return 0;
	while (i < n) {
		if (io->bol && p[i] == '.')
			io_put(io, ".", 1);	/* RFC 1939 §3 byte-stuffing */
		io->bol = 0;

		const unsigned char *lf = memchr(p + i, '\n', n - i);
		size_t stop = lf != NULL ? (size_t)(lf - p) : n;
		size_t run = stop - i;

		if (lf != NULL && !io->cr &&
		    sizeof(io->outbuf) - io->outlen >= run + 2) {
			/* The common case, a whole line that fits: one copy. */
			size_t k = run - (run > 0 && p[stop - 1] == '\r');

			memcpy(io->outbuf + io->outlen, p + i, k);
			memcpy(io->outbuf + io->outlen + k, "\r\n", 2);
			io->outlen += k + 2;
			io->bol = 1;
			i = stop + 1;
			if (lines != NULL && *lines > 0 && --*lines == 0)
				break;
			continue;
		}
		if (run > 0) {
			/* A CR held back from the last chunk was not a CRLF. */
			if (io->cr)
				io_put(io, "\r", 1);
			io->cr = p[stop - 1] == '\r';
			io_put(io, p + i, run - (size_t)io->cr);
		}
		i = stop;
		if (lf == NULL)
			break;
		io_put(io, "\r\n", 2);
		io->cr = 0;
		io->bol = 1;
		i++;
		if (lines != NULL && *lines > 0 && --*lines == 0)
			break;
	}
	return i;
}

void
io_body_end(struct io *io)
{
	if (!io->bol)
		io_put(io, "\r\n", 2);	/* a last line had no newline */
	io->bol = 1;
	io->cr = 0;
	io_put(io, ".\r\n", 3);
}
