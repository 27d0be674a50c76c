/*
 * io.c: the connection, buffered both ways.
 *
 * The line reader distrusts every byte: lines are bounded (RFC 2449 §4),
 * NUL and bare CR are refused, and a read waits at most the idle timeout
 * (RFC 1939 §3) through poll(2).  A write that makes no progress for as
 * long fails with ETIMEDOUT, so that a client that stops reading cannot
 * hold the session, and its maildrop lock, forever (on a socket through
 * SO_SNDTIMEO, elsewhere through poll).  Output collects in one buffer
 * and leaves when the buffer fills or when the reader is about to wait,
 * so that a run of pipelined commands is answered in few writes (RFC 2449
 * §6.6) and a whole RETR leaves in buffer-sized writes.  Runs as whatever
 * user the process is at the moment: before login that may be root or an
 * unprivileged user, afterwards the mail user.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/*
 * SSE2 is in every x86-64 CPU.  POP3D_NO_SSE2 builds the portable path
 * instead, so that its tests run on x86 too (test_io_portable).
 */
#if defined(__SSE2__) && !defined(POP3D_NO_SSE2)
#define IO_SSE2		1
#include <emmintrin.h>
#endif

#include "pop3d.h"

/* How io_flush bounds a write (io->outwait). */
enum {
	OUT_SOCKET,		/* SO_SNDTIMEO: a send gives up by itself */
	OUT_POLL,		/* a pipe or a terminal: poll, then at most
				   PIPE_BUF, which a writable pipe takes whole */
	OUT_FILE		/* a regular file (tests, fuzzing): never waits */
};

void
io_init(struct io *io, int in, int out, int timeout_secs)
{
	struct stat st;
	struct timeval tv;
	int one = 1;

	io->in = in;
	io->out = out;
	io->timeout_ms = timeout_secs > 0 && timeout_secs < 86400 * 24 ?
	    timeout_secs * 1000 : POP3D_TIMEOUT * 1000;
	io->inoff = io->inlen = io->outlen = 0;
	io->err = 0;
	io->bol = 1;
	io->cr = 0;
	tv.tv_sec = io->timeout_ms / 1000;
	tv.tv_usec = (io->timeout_ms % 1000) * 1000;
	if (setsockopt(out, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0)
		io->outwait = OUT_SOCKET;
	else if (fstat(out, &st) == 0 && S_ISREG(st.st_mode))
		io->outwait = OUT_FILE;
	else
		io->outwait = OUT_POLL;
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
		size_t want = io->outlen - off;
		ssize_t n;

		if (io->outwait == OUT_POLL) {
			struct pollfd pfd = { .fd = io->out, .events = POLLOUT };
			int r = poll(&pfd, 1, io->timeout_ms);

			if (r == -1 && errno == EINTR)
				continue;
			if (r <= 0) {
				io->err = r == 0 ? ETIMEDOUT : errno;
				break;
			}
			if (want > PIPE_BUF)
				want = PIPE_BUF;
		}
		n = write(io->out, io->outbuf + off, want);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			/* SO_SNDTIMEO ran out with nothing sent. */
			io->err = errno == EAGAIN || errno == EWOULDBLOCK ?
			    ETIMEDOUT : errno;
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

/* The monotonic clock in milliseconds (io.c's deadlines, mbox locks). */
int64_t
mono_ms(void)
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
		int64_t left = deadline - mono_ms();
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
	int64_t deadline = -1;
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
		/* The client is idle from when it has all our output. */
		if (deadline == -1)
			deadline = mono_ms() + io->timeout_ms;
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
 * The writer converts straight into the output buffer and flushes it
 * first when less than this is left.  Each part of a step checks its own
 * room (a stuffed dot takes 1 byte, a block of body_blocks' stores 64, a
 * line's end 2); the slack only keeps the steps from getting small.
 */
#define IO_BODY_SLACK	96

#ifdef IO_SSE2
#define LOAD16(q)	_mm_loadu_si128((const __m128i *)(const void *)(q))
#define STORE16(q, v)	_mm_storeu_si128((__m128i *)(void *)(q), (v))
#endif

/*
 * Copies the bytes of p (left of them) to o up to the first LF, at most
 * room bytes, and returns how many it copied: p[result] is that LF when
 * result < left and p[result] == '\n'.  With SSE2 (all x86-64) it goes 16
 * bytes at a time, storing each block whole before looking at its LF mask,
 * so it may write up to 15 bytes past the result (never past room);
 * elsewhere memchr and memcpy.
 */
static inline size_t
line_copy(unsigned char *o, const unsigned char *p, size_t left,
    size_t room)
{
	size_t c = 0;
#ifdef IO_SSE2
	const __m128i nl = _mm_set1_epi8('\n');

	while (left - c >= 16 && room - c >= 16) {
		__m128i v = LOAD16(p + c);
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, nl));

		STORE16(o + c, v);
		if (m != 0)
			return c + (size_t)__builtin_ctz(m);
		c += 16;
	}
	/* A chunk's last bytes: fewer than 16. */
	while (c < left && c < room && p[c] != '\n') {
		o[c] = p[c];
		c++;
	}
#else
	const unsigned char *lf;

	c = left < room ? left : room;
	if ((lf = memchr(p, '\n', c)) != NULL)
		c = (size_t)(lf - p);
	memcpy(o, p, c);
#endif
	return c;
}

#ifdef IO_SSE2
/*
 * The bulk of a message, in 32-byte blocks from p + i, for as long as 64
 * bytes of input (the stores read up to p + i + 63) and 64 of output room
 * (they write up to o + 63) are left and a block holds at most one LF, not
 * followed by a dot; anything else goes back to the line by line step.
 * Lines vary in length, so a loop that stops where the LF is mispredicts
 * about once a line; here nothing branches on the LF's place: the block
 * is stored, a CR at the LF's offset j (when the LF has no CR before it),
 * and the block's bytes from the LF on are stored again one further
 * (j = 32 and no CR when there is no LF: the extra stores land where the
 * next block goes).  The dot check looks one byte past each LF, into the
 * next block if need be, so a line starting in a later block has been
 * checked already.  i must be > 0 (p[i - 1] is read) and p + i not at a
 * line start whose dot is unchecked.  Returns the new i; *op moves.
 */
static size_t
body_blocks(const unsigned char *p, size_t i, size_t n, unsigned char **op,
    const unsigned char *end)
{
	const __m128i nl = _mm_set1_epi8('\n');
	unsigned char *o = *op;

	while (n - i >= 64 && end - o >= 64) {
		__m128i v0 = LOAD16(p + i), v1 = LOAD16(p + i + 16);
		uint64_t m = (uint64_t)(unsigned)_mm_movemask_epi8(
		    _mm_cmpeq_epi8(v0, nl)) |
		    (uint64_t)(unsigned)_mm_movemask_epi8(
		    _mm_cmpeq_epi8(v1, nl)) << 16;
		size_t j = (size_t)__builtin_ctzll(m | 1ULL << 32);
		size_t lf = m != 0;
		size_t ins = lf & (p[i + j - 1] != '\r');

		if (((m & (m - 1)) | (lf & (p[i + j + 1] == '.'))) != 0)
			break;
		STORE16(o, v0);
		STORE16(o + 16, v1);
		o[j] = '\r';
		STORE16(o + j + ins, LOAD16(p + i + j));
		STORE16(o + j + ins + 16, LOAD16(p + i + j + 16));
		o += 32 + ins;
		i += 32;
	}
	*op = o;
	return i;
}
#endif

/*
 * The conversion is the one mbox_octets counts: each LF, with one CR just
 * before it dropped, becomes CRLF; other CRs pass through.  A CR is sent
 * as it comes, and the LF after it then adds only the LF (io->cr tells
 * whether the last chunk ended in a CR).  A step is the dot check at a
 * line start, then (whole messages, with SSE2) body_blocks, then one line,
 * or as much of it as fits.  The state lives in locals during the loop:
 * stores into the buffer could alias io's fields, and the compiler would
 * reload them after each one.
 */
size_t
io_body_write(struct io *io, const unsigned char *p, size_t n,
    long long *lines)
{
	unsigned char *const base = io->outbuf;
	unsigned char *const end = base + sizeof(io->outbuf);
	unsigned char *o = base + io->outlen;
	int bol = io->bol;
	size_t i = 0, k;

	if (lines != NULL && *lines == 0)
		return 0;
	while (i < n) {
		if (end - o < IO_BODY_SLACK) {
			io->outlen = (size_t)(o - base);
			(void)io_flush(io);	/* an error is sticky */
			o = base + io->outlen;
		}
		if (bol) {
			*o = '.';		/* RFC 1939 §3 byte-stuffing */
			o += p[i] == '.';
			bol = 0;
		}
#ifdef IO_SSE2
		if (i > 0 && lines == NULL)
			i = body_blocks(p, i, n, &o, end);
#endif
		/* Room for the line, less its CRLF. */
		k = line_copy(o, p + i, n - i, (size_t)(end - o) - 2);
		o += k;
		i += k;
		if (i < n && p[i] == '\n') {
			int cr = i > 0 ? p[i - 1] == '\r' : io->cr;

			/* After a CR that went out already, only the LF. */
			o[0] = cr ? '\n' : '\r';
			o[1] = '\n';
			o += 2 - cr;
			i++;
			bol = 1;
			if (lines != NULL && *lines > 0 && --*lines == 0)
				break;
		}
	}
	io->outlen = (size_t)(o - base);
	io->bol = bol;
	if (i > 0)
		io->cr = p[i - 1] == '\r';
	return i;
}

void
io_body_end(struct io *io)
{
	/* A last line had no newline; a CR ending it is already out. */
	if (!io->bol && io->cr)
		io_put(io, "\n", 1);
	else if (!io->bol)
		io_put(io, "\r\n", 2);
	io->bol = 1;
	io->cr = 0;
	io_put(io, ".\r\n", 3);
}
