/*
 * test_io.c: the connection I/O (io.c).
 *
 * The line reader: bounds (RFC 2449 §4: 255 octets with CRLF), NUL and
 * bare CR, EOF, the idle deadline, pipelining.  The response buffer.  The
 * streaming writer: CRLF, dot-stuffing (RFC 1939 §3), the terminator, the
 * line limit for TOP, and output independent of how the input is cut.
 */
#include <signal.h>

#include "unit.h"

TestSuite(readline, .fini = unit_cleanup);
TestSuite(output, .fini = unit_cleanup);
TestSuite(body, .fini = unit_cleanup);
TestSuite(lines, .fini = unit_cleanup);

/* A pipe for the io's input and one for its output. */
struct rig {
	struct io	*io;
	int		 in_w;		/* the test writes commands */
	int		 in_r;
	int		 out_r;		/* the test reads responses */
	int		 out_w;
};

static void
rig_open(struct rig *r, int timeout)
{
	int a[2], b[2];

	cr_assert(pipe(a) == 0 && pipe(b) == 0);
	r->in_r = a[0];
	r->in_w = a[1];
	r->out_r = b[0];
	r->out_w = b[1];
	r->io = io_auto(r->in_r, r->out_w, timeout);
}

static void
send_str(struct rig *r, const char *s)
{
	write_all(r->in_w, s, strlen(s));
}

static void
send_eof(struct rig *r)
{
	close(r->in_w);
	r->in_w = -1;
}

static void
expect_line(struct rig *r, const char *exp)
{
	char line[POP3D_MAX_LINE + 1];
	size_t len = 12345;
	enum io_line st = io_readline(r->io, line, &len);

	cr_assert_eq(st, IO_LINE, "expected IO_LINE \"%s\", got %d", exp, st);
	cr_assert_eq(len, strlen(exp), "length %zu, expected %zu", len,
	    strlen(exp));
	cr_assert_str_eq(line, exp);
}

static void
expect_status(struct rig *r, enum io_line exp)
{
	char line[POP3D_MAX_LINE + 1];
	size_t len;
	enum io_line st = io_readline(r->io, line, &len);

	cr_assert_eq(st, exp, "io_readline gave %d, expected %d", st, exp);
}

/* A writer in a child, so that input can exceed a pipe's capacity or
 * arrive in separate reads. */
static pid_t
send_async(struct rig *r, const void *a, size_t alen, const void *b,
    size_t blen)
{
	pid_t pid = fork();

	cr_assert(pid != -1);
	if (pid == 0) {
		/* Only the write end: the reader's death must be an EPIPE. */
		close(r->in_r);
		close(r->out_r);
		close(r->out_w);
		alarm(30);
		write_all(r->in_w, a, alen);
		if (b != NULL) {
			/* Let the reader see the first part alone. */
			usleep(100000);
			write_all(r->in_w, b, blen);
		}
		_exit(0);
	}
	return pid;
}

static void
reap(pid_t pid)
{
	int status;

	cr_assert(waitpid(pid, &status, 0) == pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* io_readline */

Test(readline, crlf_line_without_crlf, .timeout = 10)
{
	struct rig r;

	rig_open(&r, 5);
	send_str(&r, "USER bob\r\nNOOP\r\n");
	expect_line(&r, "USER bob");
	expect_line(&r, "NOOP");
}

Test(readline, bare_lf_ends_a_line, .timeout = 10)
{
	struct rig r;

	rig_open(&r, 5);
	send_str(&r, "USER bob\nPASS x y\n");
	expect_line(&r, "USER bob");
	expect_line(&r, "PASS x y");
}

Test(readline, empty_line, .timeout = 10)
{
	struct rig r;

	rig_open(&r, 5);
	send_str(&r, "\r\n\nNOOP\r\n");
	expect_line(&r, "");
	expect_line(&r, "");
	expect_line(&r, "NOOP");
}

Test(readline, line_of_255_octets_accepted, .timeout = 10)
{
	struct rig r;
	char exp[254];

	memset(exp, 'a', 253);
	exp[253] = '\0';
	rig_open(&r, 5);
	send_str(&r, exp);
	send_str(&r, "\r\nNOOP\r\n");
	expect_line(&r, exp);
	expect_line(&r, "NOOP");
}

Test(readline, line_of_253_chars_and_lf_accepted, .timeout = 10)
{
	struct rig r;
	char exp[254];

	memset(exp, 'b', 253);
	exp[253] = '\0';
	rig_open(&r, 5);
	send_str(&r, exp);
	send_str(&r, "\nNOOP\n");
	expect_line(&r, exp);
	expect_line(&r, "NOOP");
}

Test(readline, line_of_256_octets_too_long, .timeout = 10)
{
	struct rig r;
	char l[255];

	memset(l, 'a', 254);
	l[254] = '\0';
	rig_open(&r, 5);
	send_str(&r, l);
	send_str(&r, "\r\nNOOP\r\n");
	expect_status(&r, IO_TOOLONG);
	expect_line(&r, "NOOP");
}

/* The tail of an over-long line must never come back as a command. */
Test(readline, too_long_tail_discarded, .timeout = 10)
{
	struct rig r;
	char l[300];

	memset(l, 'x', 255);
	l[255] = '\0';
	rig_open(&r, 5);
	send_str(&r, l);
	send_str(&r, "QUIT\r\nNOOP\r\n");
	expect_status(&r, IO_TOOLONG);
	expect_line(&r, "NOOP");
}

Test(readline, too_long_tail_in_later_read, .timeout = 10)
{
	struct rig r;
	char l[400];
	const char *tail = "DELE 1\r\nNOOP\r\n";
	pid_t pid;

	memset(l, 'x', sizeof(l));
	rig_open(&r, 5);
	pid = send_async(&r, l, sizeof(l), tail, strlen(tail));
	expect_status(&r, IO_TOOLONG);
	expect_line(&r, "NOOP");
	reap(pid);
}

/* Longer than the input buffer and than a pipe holds. */
Test(readline, huge_line_discarded, .timeout = 20)
{
	struct rig r;
	size_t n = 200 * 1024;
	char *l = malloc(n + 32);
	pid_t pid;

	cr_assert_not_null(l);
	memset(l, 'y', n);
	memcpy(l + n - 6, "QUIT\r\n", 6);
	memcpy(l + n, "NOOP\r\n", 6);
	rig_open(&r, 5);
	pid = send_async(&r, l, n + 6, NULL, 0);
	expect_status(&r, IO_TOOLONG);
	expect_line(&r, "NOOP");
	reap(pid);
	free(l);
}

Test(readline, nul_refused, .timeout = 10)
{
	struct rig r;
	static const char in[] = "US\0ER a\r\n\0NOOP\r\nNOOP\0\r\nSTAT\r\n";

	rig_open(&r, 5);
	write_all(r.in_w, in, sizeof(in) - 1);
	expect_status(&r, IO_BADBYTE);
	expect_status(&r, IO_BADBYTE);
	expect_status(&r, IO_BADBYTE);
	expect_line(&r, "STAT");
}

Test(readline, bare_cr_refused, .timeout = 10)
{
	struct rig r;

	rig_open(&r, 5);
	send_str(&r, "NO\rOP\r\nNOOP\r\r\n\rNOOP\nSTAT\r\n");
	expect_status(&r, IO_BADBYTE);
	expect_status(&r, IO_BADBYTE);
	expect_status(&r, IO_BADBYTE);
	expect_line(&r, "STAT");
}

Test(readline, eof_with_nothing, .timeout = 10)
{
	struct rig r;

	rig_open(&r, 5);
	send_eof(&r);
	expect_status(&r, IO_EOF);
}

Test(readline, eof_after_partial_line, .timeout = 10)
{
	struct rig r;

	rig_open(&r, 5);
	send_str(&r, "NOOP\r\nQUI");
	send_eof(&r);
	expect_line(&r, "NOOP");
	expect_status(&r, IO_EOF);
}

Test(readline, eof_after_partial_line_ending_in_cr, .timeout = 10)
{
	struct rig r;

	rig_open(&r, 5);
	send_str(&r, "QUIT\r");
	send_eof(&r);
	expect_status(&r, IO_EOF);
}

Test(readline, timeout_without_input, .timeout = 15)
{
	struct rig r;

	rig_open(&r, 1);
	expect_status(&r, IO_TIMEOUT);
}

Test(readline, timeout_with_partial_line, .timeout = 15)
{
	struct rig r;

	rig_open(&r, 1);
	send_str(&r, "NOO");
	expect_status(&r, IO_TIMEOUT);
}

Test(readline, pipelined_lines_one_by_one, .timeout = 10)
{
	struct rig r;

	rig_open(&r, 5);
	cr_assert_not(io_pending(r.io));
	send_str(&r, "USER a\r\nPASS b c\r\nSTAT\nLIST 1\r\n");
	expect_line(&r, "USER a");
	cr_assert(io_pending(r.io));
	expect_line(&r, "PASS b c");
	cr_assert(io_pending(r.io));
	expect_line(&r, "STAT");
	cr_assert(io_pending(r.io));
	expect_line(&r, "LIST 1");
	cr_assert_not(io_pending(r.io));
}

Test(readline, partial_line_is_not_pending, .timeout = 10)
{
	struct rig r;

	rig_open(&r, 5);
	send_str(&r, "STAT\r\nLIS");
	expect_line(&r, "STAT");
	cr_assert_not(io_pending(r.io));
	send_str(&r, "T\r\n");
	expect_line(&r, "LIST");
}

/*
 * A password stays in the input buffer no longer than it takes to return
 * its line: neither the line read nor the copy that fill's move of a
 * partial line leaves behind.
 */
Test(readline, no_copy_of_a_read_line_stays, .timeout = 10)
{
	struct rig r;

	rig_open(&r, 5);
	send_str(&r, "PASS hunter2\r\nUSER al");
	expect_line(&r, "PASS hunter2");
	cr_assert_null(memmem(r.io->inbuf, sizeof(r.io->inbuf), "hunter2", 7));
	send_str(&r, "ice\r\nPASS swordf");
	expect_line(&r, "USER alice");
	send_str(&r, "ish\r\n");
	expect_line(&r, "PASS swordfish");
	cr_assert_null(memmem(r.io->inbuf, sizeof(r.io->inbuf), "swordf", 6));
	cr_assert_null(memmem(r.io->inbuf, sizeof(r.io->inbuf), "alice", 5));
}

/* Output */

static void
expect_output(struct rig *r, const char *exp)
{
	struct buf b = { 0 };

	close(r->out_w);
	r->out_w = -1;
	read_all(r->out_r, &b);
	assert_buf_str(&b, exp, "output");
	buf_free(&b);
}

Test(output, reply_and_flush, .timeout = 10)
{
	struct rig r;

	rig_open(&r, 5);
	io_reply(r.io, "+OK %d %s", 2, "messages");
	io_reply(r.io, "-ERR");
	io_put(r.io, "raw\r\n", 5);
	cr_assert_eq(io_flush(r.io), 0);
	expect_output(&r, "+OK 2 messages\r\n-ERR\r\nraw\r\n");
}

/* A response is buffered until io_flush, not written piecemeal. */
Test(output, buffered_until_flush, .timeout = 10)
{
	struct rig r;
	char c;

	rig_open(&r, 5);
	cr_assert(fcntl(r.out_r, F_SETFL, O_NONBLOCK) == 0);
	io_reply(r.io, "+OK");
	cr_assert_eq(read(r.out_r, &c, 1), -1);
	cr_assert_eq(errno, EAGAIN);
	cr_assert_eq(io_flush(r.io), 0);
	cr_assert(fcntl(r.out_r, F_SETFL, 0) == 0);
	expect_output(&r, "+OK\r\n");
}

/* io_readline flushes pending output before it waits for input. */
Test(output, readline_flushes_before_waiting, .timeout = 15)
{
	struct rig r;

	rig_open(&r, 1);
	io_reply(r.io, "+OK ready");
	expect_status(&r, IO_TIMEOUT);
	expect_output(&r, "+OK ready\r\n");
}

/* A failed flush before the wait ends the read: it does not wait. */
Test(output, readline_reports_flush_error, .timeout = 10)
{
	struct rig r;

	signal(SIGPIPE, SIG_IGN);
	rig_open(&r, 1);
	close(r.out_r);
	io_reply(r.io, "+OK");
	expect_status(&r, IO_ERROR);
}

Test(output, flush_error_is_sticky, .timeout = 10)
{
	struct rig r;

	signal(SIGPIPE, SIG_IGN);
	rig_open(&r, 5);
	close(r.out_r);
	io_reply(r.io, "+OK");
	cr_assert_eq(io_flush(r.io), -1);
	cr_assert_eq(errno, EPIPE);
	io_reply(r.io, "+OK again");
	cr_assert_eq(io_flush(r.io), -1);
	cr_assert_eq(errno, EPIPE);
}

/*
 * A client that stops reading: over a pipe the write waits through poll,
 * at most the idle timeout, and writes no more than PIPE_BUF at a time (a
 * pipe that has room for some takes that much without blocking); then it
 * fails with ETIMEDOUT.  The error is sticky: nothing is written after it.
 */
Test(output, stalled_reader_times_out, .timeout = 15)
{
	static unsigned char big[POP3D_OUTBUF];
	struct rig r;
	char c[4096];

	cr_assert_gt(sizeof(big), 65536);
	memset(big, 'x', sizeof(big));
	rig_open(&r, 1);
	write_all(r.out_w, "x", 1);	/* a pipe neither empty nor full */
	io_put(r.io, big, sizeof(big));
	io_put(r.io, "+OK\r\n", 5);
	cr_assert_eq(io_flush(r.io), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	cr_assert(fcntl(r.out_r, F_SETFL, O_NONBLOCK) == 0);
	while (read(r.out_r, c, sizeof(c)) > 0)
		;
	io_reply(r.io, "+OK again");
	cr_assert_eq(io_flush(r.io), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	cr_assert_eq(read(r.out_r, c, sizeof(c)), -1);
	cr_assert_eq(errno, EAGAIN);
}

/* The streaming writer */

/*
 * Runs the writer over in, chunk bytes at a time (0: in one piece), with
 * the given line limit; returns the output and the bytes consumed.
 */
static size_t
body_run(const void *in, size_t n, size_t chunk, long long lines,
    long long *lines_left, struct buf *out)
{
	const unsigned char *p = in;
	int fd = tmpfd();
	struct io *io = io_auto(-1, fd, 5);
	size_t off = 0;

	if (chunk == 0)
		chunk = n > 0 ? n : 1;
	io_body_begin(io);
	while (off < n) {
		size_t c = n - off < chunk ? n - off : chunk;
		size_t used = io_body_write(io, p + off, c, &lines);

		cr_assert(used <= c, "consumed %zu of a %zu-byte chunk", used,
		    c);
		off += used;
		if (used < c)
			break;		/* the line limit was reached */
		if (lines == 0)
			break;
	}
	io_body_end(io);
	cr_assert_eq(io_flush(io), 0);
	fd_slurp(fd, out);
	close(fd);
	unit_release(io);
	if (lines_left != NULL)
		*lines_left = lines;
	return off;
}

static void
body_expect(const char *in, const char *exp)
{
	struct buf out = { 0 };
	long long left;
	size_t used = body_run(in, strlen(in), 0, -1, &left, &out);

	cr_assert_eq(used, strlen(in), "consumed %zu of %zu", used,
	    strlen(in));
	cr_assert_eq(left, -1);
	assert_buf_str(&out, exp, in);
	buf_free(&out);
}

Test(body, lf_becomes_crlf)
{
	body_expect("a\nb\n", "a\r\nb\r\n.\r\n");
	body_expect("\n", "\r\n.\r\n");
	body_expect("\n\n", "\r\n\r\n.\r\n");
}

Test(body, crlf_stays_crlf)
{
	body_expect("a\r\nb\r\n", "a\r\nb\r\n.\r\n");
	body_expect("a\r\n\r\nb\n", "a\r\n\r\nb\r\n.\r\n");
}

Test(body, dot_stuffing)
{
	body_expect(".x\n", "..x\r\n.\r\n");
	body_expect(".\n", "..\r\n.\r\n");
	body_expect("..\r\n", "...\r\n.\r\n");
	body_expect("a\n.\nb\n", "a\r\n..\r\nb\r\n.\r\n");
	body_expect("x.\n a.\n", "x.\r\n a.\r\n.\r\n");
	body_expect(".", "..\r\n.\r\n");
	body_expect("a\n.", "a\r\n..\r\n.\r\n");
}

Test(body, empty_body)
{
	body_expect("", ".\r\n");
}

Test(body, last_line_without_newline)
{
	body_expect("abc", "abc\r\n.\r\n");
	body_expect("a\nbc", "a\r\nbc\r\n.\r\n");
}

Test(body, bare_cr_passes_through)
{
	body_expect("a\rb\n", "a\rb\r\n.\r\n");
	body_expect("\rb\n", "\rb\r\n.\r\n");
	body_expect("a\r\rb\r\n", "a\r\rb\r\n.\r\n");
	body_expect("a\r\r\n", "a\r\r\n.\r\n");
}

Test(body, final_cr_dropped)
{
	body_expect("abc\r", "abc\r\n.\r\n");
	body_expect("a\n\r", "a\r\n\r\n.\r\n");
}

Test(body, from_lines_as_stored)
{
	body_expect("From x\n>From y\n", "From x\r\n>From y\r\n.\r\n");
}

Test(body, nul_and_8bit_as_stored)
{
	static const char in[] = "a\0b\xff\n\x80\n";
	static const char exp[] = "a\0b\xff\r\n\x80\r\n.\r\n";
	struct buf out = { 0 };

	body_run(in, sizeof(in) - 1, 0, -1, NULL, &out);
	assert_bytes(out.p, out.len, (const unsigned char *)exp,
	    sizeof(exp) - 1, "binary body");
	buf_free(&out);
}

static const char *const samples[] = {
	"a\nb\n",
	"a\r\nb\r\n",
	".x\r\n.\n..\r\nend",
	"ab\r\ncd\r\r\nef\rgh\n\r\n.\r",
	"\r\n\r\n.\r\n.",
	"x\r",
	"\r",
	".\r",
	"line\rwith\rcrs\r\n..\n",
	"",
};

/* The same input cut at every position, and fed a byte at a time. */
Test(body, chunking_does_not_matter)
{
	size_t s;

	for (s = 0; s < sizeof(samples) / sizeof(samples[0]); s++) {
		const char *in = samples[s];
		size_t n = strlen(in), cut, sz;
		struct buf whole = { 0 }, exp = { 0 };

		ref_body((const unsigned char *)in, n, &exp);
		body_run(in, n, 0, -1, NULL, &whole);
		assert_bytes(whole.p, whole.len, exp.p, exp.len, in);
		for (sz = 1; sz <= n; sz++) {
			struct buf out = { 0 };

			body_run(in, n, sz, -1, NULL, &out);
			assert_bytes(out.p, out.len, exp.p, exp.len,
			    "chunked");
			buf_free(&out);
		}
		/* Two pieces, cut at each position. */
		for (cut = 0; cut <= n; cut++) {
			struct buf out = { 0 };
			int fd = tmpfd();
			struct io *io = io_auto(-1, fd, 5);
			long long lines = -1;

			io_body_begin(io);
			cr_assert_eq(io_body_write(io,
			    (const unsigned char *)in, cut, &lines), cut);
			cr_assert_eq(io_body_write(io,
			    (const unsigned char *)in + cut, n - cut, &lines),
			    n - cut);
			io_body_end(io);
			cr_assert_eq(io_flush(io), 0);
			fd_slurp(fd, &out);
			close(fd);
			unit_release(io);
			assert_bytes(out.p, out.len, exp.p, exp.len, "cut");
			buf_free(&out);
		}
		buf_free(&whole);
		buf_free(&exp);
	}
}

Test(body, split_between_cr_and_lf)
{
	struct buf out = { 0 };
	int fd = tmpfd();
	struct io *io = io_auto(-1, fd, 5);
	long long lines = -1;

	io_body_begin(io);
	io_body_write(io, (const unsigned char *)"ab\r", 3, &lines);
	io_body_write(io, (const unsigned char *)"\ncd\r", 4, &lines);
	io_body_write(io, (const unsigned char *)"\n", 1, &lines);
	io_body_end(io);
	cr_assert_eq(io_flush(io), 0);
	fd_slurp(fd, &out);
	assert_buf_str(&out, "ab\r\ncd\r\n.\r\n", "CR|LF split");
	buf_free(&out);
	close(fd);
}

/* io_body_begin resets the state left by an earlier message. */
Test(body, begin_resets_state)
{
	struct buf out = { 0 };
	int fd = tmpfd();
	struct io *io = io_auto(-1, fd, 5);
	long long lines = -1;

	io_body_begin(io);
	io_body_write(io, (const unsigned char *)"x\n", 2, &lines);
	io_body_end(io);
	io_body_begin(io);
	io_body_write(io, (const unsigned char *)".y\n", 3, &lines);
	io_body_end(io);
	cr_assert_eq(io_flush(io), 0);
	fd_slurp(fd, &out);
	assert_buf_str(&out, "x\r\n.\r\n..y\r\n.\r\n", "two bodies");
	buf_free(&out);
	close(fd);
}

/*
 * Model checks against the reference (ref_body in unit.h, which shares no
 * code with io.c).  RETR calls the writer without a line limit, and only
 * then does it take the block path (io.c body_blocks: 32-byte blocks, at
 * least 64 bytes left in the chunk, not at a chunk's first line); these
 * tests put every kind of line end, bare CRs and dots at every offset of
 * such blocks and cut the input at every kind of place.
 */

/*
 * Runs the writer over in as RETR does (lines NULL) or with a line limit
 * that never ends (*lines < 0), cut into pieces of the sizes in cuts,
 * cycled (ncuts 0: one piece).  Each piece is passed in a buffer of its
 * own, as the stores' reads deliver them: the byte before it is a lie (a
 * CR where the text has none and the other way round), and the
 * allocation ends where the piece does (for ASan).  The output must stay
 * in io's buffer (the inputs are far below POP3D_OUTBUF / 2); it is
 * appended to out.
 */
static void
body_cuts(struct io *io, const unsigned char *in, size_t n,
    const size_t *cuts, size_t ncuts, long long *lines, struct buf *out)
{
	size_t off = 0, c = 0;

	io->outlen = 0;
	io_body_begin(io);
	while (off < n) {
		size_t len = ncuts > 0 ? cuts[c++ % ncuts] : n;
		unsigned char *piece;

		if (len > n - off)
			len = n - off;
		cr_assert_not_null(piece = malloc(len + 1));
		piece[0] = off > 0 && in[off - 1] == '\r' ? 'x' : '\r';
		memcpy(piece + 1, in + off, len);
		cr_assert_eq(io_body_write(io, piece + 1, len, lines), len);
		free(piece);
		off += len;
	}
	io_body_end(io);
	cr_assert_eq(io->err, 0, "the writer flushed");
	buf_add(out, io->outbuf, io->outlen);
}

static void
body_check(struct io *io, const unsigned char *in, size_t n,
    const size_t *cuts, size_t ncuts, long long *lines, const char *what)
{
	struct buf got = { 0 }, exp = { 0 };

	ref_body(in, n, &exp);
	body_cuts(io, in, n, cuts, ncuts, lines, &got);
	assert_bytes(got.p, got.len, exp.p, exp.len, what);
	buf_free(&got);
	buf_free(&exp);
}

/*
 * Text to put the special bytes into: one long line, 40-byte LF lines,
 * 50-byte CRLF lines, 90-byte LF lines (longer than two of body_blocks'
 * blocks, as base64 lines are).
 */
static void
body_background(int kind, size_t n, struct buf *b)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)('a' + i % 26);

		if (kind == 1 && i % 40 == 39)
			c = '\n';
		else if (kind == 2 && i % 50 == 48)
			c = '\r';
		else if (kind == 2 && i % 50 == 49)
			c = '\n';
		else if (kind == 3 && i % 90 == 89)
			c = '\n';
		buf_addc(b, c, 1);
	}
}

Test(body, special_bytes_at_every_offset, .timeout = 300)
{
	static const char *const specials[] = {
		"\n", "\r\n", "\r", ".", "\n.", "\r\n.", "\n\n", "\n\r\n",
		"\r\r\n", "\n..", "\n.\n", "\n.\r\n", "\r\n\r\n", "\n\r",
		"\r\n\r", "\n\n\n\n", "x\nx\nx\n",
	};
	/* 0: one piece; the rest cut the blocks at every kind of place. */
	static const size_t cuts[] = { 0, 1, 7, 16, 31, 32, 33, 63, 64, 65,
	    100, 127, 128, 129 };
	struct io *io = io_auto(-1, -1, 5);
	int kind;

	for (kind = 0; kind < 4; kind++) {
		struct buf bg = { 0 };
		size_t s, pos, c;

		body_background(kind, 300, &bg);
		for (s = 0; s < sizeof(specials) / sizeof(specials[0]); s++)
			for (pos = 0; pos <= 200; pos++) {
				struct buf in = { 0 };
				char what[96];

				buf_add(&in, bg.p, pos);
				buf_adds(&in, specials[s]);
				buf_add(&in, bg.p + pos, bg.len - pos);
				for (c = 0; c < sizeof(cuts) / sizeof(cuts[0]);
				    c++) {
					snprintf(what, sizeof(what), "text %d, "
					    "special %zu at %zu, cut %zu", kind,
					    s, pos, cuts[c]);
					body_check(io, in.p, in.len, &cuts[c],
					    cuts[c] > 0, NULL, what);
				}
				buf_free(&in);
			}
		buf_free(&bg);
	}
}

/*
 * Random bytes with LFs as dense as in short lines or as sparse as in long
 * ones, CRs, dots, NULs and 8-bit bytes, cut at random places.  With and
 * without a (never reached) line limit: two paths through the writer.
 */
Test(body, random_against_reference, .timeout = 300)
{
	struct io *io = io_auto(-1, -1, 5);
	uint64_t seed = 0x706f70336452ULL;
	int iter;

	for (iter = 0; iter < 6000; iter++) {
		struct buf in = { 0 };
		size_t len = rnd_upto(&seed, 1500), linelen, i, ncuts;
		size_t cuts[4];
		long long lines = -1;
		char what[64];

		/* Average line length 1..120. */
		linelen = 1 + rnd_upto(&seed, 120);
		for (i = 0; i < len; i++) {
			size_t r = rnd_upto(&seed, 1000);
			unsigned char c;

			if (rnd_upto(&seed, linelen) == 0)
				c = '\n';
			else if (r < 40)
				c = '\r';
			else if (r < 100)
				c = '.';
			else if (r < 110)
				c = r < 105 ? 0 : 0xff;
			else
				c = (unsigned char)('A' + r % 26);
			buf_addc(&in, c, 1);
		}
		ncuts = rnd_upto(&seed, 5);
		for (i = 0; i < ncuts; i++)
			cuts[i] = 1 + rnd_upto(&seed, rnd_upto(&seed, 2) ?
			    8 : 300);
		snprintf(what, sizeof(what), "random input %d", iter);
		body_check(io, in.p, in.len, cuts, ncuts,
		    iter % 2 ? &lines : NULL, what);
		buf_free(&in);
	}
}

/*
 * The output buffer fills at every offset of a body: the writer flushes
 * before a step could overrun it, and the conversion carries on.  Short
 * lines with dots and CRs (the line by line step), and long plain lines
 * (the block path, running across the buffer's end).
 */
static void
body_after_fill(const struct buf *in)
{
	struct buf exp = { 0 };
	size_t fill;

	ref_body(in->p, in->len, &exp);
	for (fill = POP3D_OUTBUF - 2 * in->len; fill <= POP3D_OUTBUF;
	    fill++) {
		struct buf got = { 0 };
		int fd = tmpfd();
		struct io *io = io_auto(-1, fd, 5);
		const unsigned char *q;
		char what[64];

		buf_addc(&got, 'F', fill);
		io_put(io, got.p, fill);
		io_body_begin(io);
		cr_assert_eq(io_body_write(io, in->p, in->len, NULL),
		    in->len);
		io_body_end(io);
		cr_assert_eq(io_flush(io), 0);
		/* What ASan cannot see: the struct's padding (calloc'ed). */
		for (q = io->outbuf + sizeof(io->outbuf);
		    q < (const unsigned char *)io + sizeof(*io); q++)
			cr_assert_eq(*q, 0, "wrote past the output buffer");
		got.len = 0;
		fd_slurp(fd, &got);
		close(fd);
		unit_release(io);
		snprintf(what, sizeof(what), "body after %zu bytes", fill);
		cr_assert_geq(got.len, fill);
		assert_bytes(got.p + fill, got.len - fill, exp.p, exp.len,
		    what);
		buf_free(&got);
	}
	buf_free(&exp);
}

Test(body, output_buffer_full_at_every_offset, .timeout = 120)
{
	struct buf in = { 0 };
	size_t i;

	for (i = 0; i < 12; i++) {
		buf_adds(&in, "A line of text that is long enough to need blocks");
		buf_adds(&in, i % 3 == 0 ? "\r\n" : "\n");
		buf_adds(&in, i % 4 == 1 ? ".dot\n" : "\rcr\n");
	}
	body_after_fill(&in);
	in.len = 0;
	for (i = 0; i < 12; i++) {
		buf_addc(&in, (unsigned char)('a' + i), 70 + i);
		buf_adds(&in, i % 5 == 0 ? "\r\n" : "\n");
	}
	body_after_fill(&in);
	buf_free(&in);
}

/* The line limit (TOP) */

Test(lines, stops_after_k_lines)
{
	static const char in[] = "h1\nh2\r\n\nb1\nb2\nb3";
	long long k;

	for (k = 0; k <= 7; k++) {
		struct buf out = { 0 }, exp = { 0 };
		long long left;
		size_t used = body_run(in, sizeof(in) - 1, 0, k, &left, &out);
		/* Where the kth complete line ends in the input. */
		size_t end = 0, i;
		long long seen = 0;

		for (i = 0; i < sizeof(in) - 1 && seen < k; i++)
			if (in[i] == '\n') {
				seen++;
				end = i + 1;
			}
		if (seen < k)
			end = sizeof(in) - 1;	/* fewer lines than k */
		cr_assert_eq(used, end, "k=%lld: consumed %zu, expected %zu",
		    k, used, end);
		cr_assert_eq(left, k - seen, "k=%lld: lines left %lld", k,
		    left);
		ref_body((const unsigned char *)in, end, &exp);
		assert_bytes(out.p, out.len, exp.p, exp.len, "limited");
		buf_free(&out);
		buf_free(&exp);
	}
}

Test(lines, zero_writes_nothing)
{
	int fd = tmpfd();
	struct io *io = io_auto(-1, fd, 5);
	long long lines = 0;
	struct buf out = { 0 };

	io_body_begin(io);
	cr_assert_eq(io_body_write(io, (const unsigned char *)"a\nb\n", 4,
	    &lines), 0);
	cr_assert_eq(lines, 0);
	cr_assert_eq(io_flush(io), 0);
	fd_slurp(fd, &out);
	cr_assert_eq(out.len, 0, "wrote %zu bytes", out.len);
	buf_free(&out);
	close(fd);
}

Test(lines, limit_reached_mid_chunk_then_nothing_more)
{
	int fd = tmpfd();
	struct io *io = io_auto(-1, fd, 5);
	long long lines = 2;
	struct buf out = { 0 };
	static const char in[] = ".a\r\nb\r\nc\r\nd\r\n";

	io_body_begin(io);
	cr_assert_eq(io_body_write(io, (const unsigned char *)in,
	    sizeof(in) - 1, &lines), 7);
	cr_assert_eq(lines, 0);
	cr_assert_eq(io_body_write(io, (const unsigned char *)in + 7,
	    sizeof(in) - 8, &lines), 0);
	io_body_end(io);
	cr_assert_eq(io_flush(io), 0);
	fd_slurp(fd, &out);
	assert_buf_str(&out, "..a\r\nb\r\n.\r\n", "two lines");
	buf_free(&out);
	close(fd);
}

Test(lines, byte_at_a_time)
{
	static const char in[] = "a\r\n.b\nc\r\nd\r\n";
	struct buf out = { 0 };
	long long left;
	size_t used = body_run(in, sizeof(in) - 1, 1, 3, &left, &out);

	cr_assert_eq(used, 9);
	cr_assert_eq(left, 0);
	assert_buf_str(&out, "a\r\n..b\r\nc\r\n.\r\n", "byte at a time");
	buf_free(&out);
}

/*
 * TOP's line limit over random bodies, cut at random places: the bytes
 * consumed end at the kth LF, and what is sent is the reference of them.
 */
Test(lines, random_against_reference, .timeout = 120)
{
	uint64_t seed = 0x544f50ULL;
	int iter;

	for (iter = 0; iter < 400; iter++) {
		struct buf in = { 0 }, out = { 0 }, exp = { 0 };
		size_t len = rnd_upto(&seed, 600), i, end = 0, used;
		size_t chunk = rnd_upto(&seed, 3) == 0 ? 0 :
		    1 + rnd_upto(&seed, 100);
		long long k = (long long)rnd_upto(&seed, 12), seen = 0, left;
		char what[64];

		for (i = 0; i < len; i++) {
			size_t r = rnd_upto(&seed, 100);

			buf_addc(&in, r < 6 ? '\n' : r < 10 ? '\r' : r < 15 ?
			    '.' : (unsigned char)('a' + r % 26), 1);
		}
		for (i = 0; i < in.len && seen < k; i++)
			if (in.p[i] == '\n') {
				seen++;
				end = i + 1;
			}
		if (seen < k)
			end = in.len;
		used = body_run(in.p, in.len, chunk, k, &left, &out);
		snprintf(what, sizeof(what), "input %d, %lld lines", iter, k);
		cr_assert_eq(used, end, "%s: consumed %zu, expected %zu", what,
		    used, end);
		cr_assert_eq(left, k - seen, "%s: %lld left", what, left);
		ref_body(in.p, end, &exp);
		assert_bytes(out.p, out.len, exp.p, exp.len, what);
		buf_free(&in);
		buf_free(&out);
		buf_free(&exp);
	}
}

/* Large output through a socket, read concurrently. */
Test(body, one_megabyte_through_a_socket, .timeout = 60)
{
	struct buf in = { 0 }, exp = { 0 }, got = { 0 };
	struct capture cap;
	struct io *io;
	uint64_t seed = 42;
	long long lines = -1;
	size_t off;

	/* Lines of all lengths, some stuffed, some CRLF, one of 300 KB. */
	while (in.len < 1024 * 1024) {
		size_t len = rnd_upto(&seed, 200);

		if (rnd_upto(&seed, 5) == 0)
			buf_adds(&in, ".");
		while (len-- > 0)
			buf_addc(&in, (unsigned char)(' ' + rnd_upto(&seed,
			    95)), 1);
		if (in.len > 500000 && in.len < 501000)
			buf_addc(&in, 'Z', 300 * 1024);
		buf_adds(&in, rnd_upto(&seed, 3) == 0 ? "\r\n" : "\n");
	}
	ref_body(in.p, in.len, &exp);
	capture_start(&cap);
	io = io_auto(-1, cap.sock, 5);
	io_body_begin(io);
	for (off = 0; off < in.len; off += 65536) {
		size_t c = in.len - off < 65536 ? in.len - off : 65536;

		cr_assert_eq(io_body_write(io, in.p + off, c, &lines), c);
	}
	io_body_end(io);
	cr_assert_eq(io_flush(io), 0);
	capture_end(&cap, &got);
	assert_bytes(got.p, got.len, exp.p, exp.len, "1 MB body");
	buf_free(&in);
	buf_free(&exp);
	buf_free(&got);
}
