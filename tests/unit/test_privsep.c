/*
 * test_privsep.c: the framed messages between the pre-login process and
 * the root parent.  The parent must refuse every frame that is not exactly
 * what it waits for: another type, a wrong or oversized length, a frame
 * cut short.
 */
#include <criterion/criterion.h>

#include <sys/resource.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pop3d.h"

static int fds[2];

static void
open_pipe(void)
{
	cr_assert_eq(pipe(fds), 0);
}

static void
close_pipe(void)
{
	(void)close(fds[0]);
	if (fds[1] != -1)
		(void)close(fds[1]);
}

/* Writes a raw frame header (type, len) and body, as a hostile end could. */
static void
raw_frame(uint32_t type, uint32_t len, const void *body, size_t n)
{
	uint32_t h[2] = { type, len };

	cr_assert_eq(write(fds[1], h, sizeof(h)), (ssize_t)sizeof(h));
	if (n > 0)
		cr_assert_eq(write(fds[1], body, n), (ssize_t)n);
}

TestSuite(privsep, .init = open_pipe, .fini = close_pipe);

Test(privsep, credential_round_trip)
{
	struct cred in, out;

	memset(&in, 0, sizeof(in));
	in.method = CRED_PLAIN;
	strcpy(in.user, "alice");
	strcpy(in.secret, "s3cret");
	cr_assert_eq(privsep_send(fds[1], PRIV_CRED, &in, sizeof(in)), 0);
	cr_assert_eq(privsep_recv(fds[0], PRIV_CRED, &out, sizeof(out), NULL),
	    0);
	cr_assert_eq(memcmp(&in, &out, sizeof(in)), 0);
}

Test(privsep, wrong_type_is_refused)
{
	uint32_t v = AUTH_OK;
	struct cred c;

	cr_assert_eq(privsep_send(fds[1], PRIV_VERDICT, &v, sizeof(v)), 0);
	cr_assert_eq(privsep_recv(fds[0], PRIV_CRED, &c, sizeof(c), NULL), -1);
}

Test(privsep, short_and_long_fixed_frames_are_refused)
{
	unsigned char junk[sizeof(struct cred) + 1];
	struct cred c;

	memset(junk, 'x', sizeof(junk));
	raw_frame(PRIV_CRED, sizeof(c) - 1, junk, sizeof(c) - 1);
	cr_assert_eq(privsep_recv(fds[0], PRIV_CRED, &c, sizeof(c), NULL), -1);
	close_pipe();
	open_pipe();
	raw_frame(PRIV_CRED, sizeof(c) + 1, junk, sizeof(c) + 1);
	cr_assert_eq(privsep_recv(fds[0], PRIV_CRED, &c, sizeof(c), NULL), -1);
}

Test(privsep, oversized_handoff_is_refused_and_bounded_one_taken)
{
	unsigned char buf[64], junk[65];
	size_t got = 0;

	memset(junk, 'p', sizeof(junk));
	raw_frame(PRIV_HANDOFF, UINT32_MAX, junk, 8);
	cr_assert_eq(privsep_recv(fds[0], PRIV_HANDOFF, buf, sizeof(buf),
	    &got), -1);
	close_pipe();
	open_pipe();
	raw_frame(PRIV_HANDOFF, 65, junk, 65);
	cr_assert_eq(privsep_recv(fds[0], PRIV_HANDOFF, buf, sizeof(buf),
	    &got), -1);
	close_pipe();
	open_pipe();
	raw_frame(PRIV_HANDOFF, 64, junk, 64);
	cr_assert_eq(privsep_recv(fds[0], PRIV_HANDOFF, buf, sizeof(buf),
	    &got), 0);
	cr_assert_eq(got, 64);
	raw_frame(PRIV_HANDOFF, 0, NULL, 0);
	cr_assert_eq(privsep_recv(fds[0], PRIV_HANDOFF, buf, sizeof(buf),
	    &got), 0);
	cr_assert_eq(got, 0);
}

Test(privsep, frame_cut_short_is_refused)
{
	struct cred c;
	unsigned char half[10] = { 0 };

	raw_frame(PRIV_CRED, sizeof(c), half, sizeof(half));
	(void)close(fds[1]);
	fds[1] = -1;
	cr_assert_eq(privsep_recv(fds[0], PRIV_CRED, &c, sizeof(c), NULL), -1);
}

Test(privsep, header_cut_short_is_refused)
{
	uint32_t v;

	cr_assert_eq(write(fds[1], "ab", 2), 2);
	(void)close(fds[1]);
	fds[1] = -1;
	cr_assert_eq(privsep_recv(fds[0], PRIV_VERDICT, &v, sizeof(v), NULL),
	    -1);
}

/* A write error ends the send (EBADF here), it is not retried forever. */
Test(privsep, write_error_is_returned, .timeout = 10)
{
	uint32_t v = AUTH_OK;

	cr_assert_eq(privsep_send(fds[0], PRIV_VERDICT, &v, sizeof(v)), -1);
	cr_assert_eq(errno, EBADF);
	cr_assert_eq(fd_write_all(fds[0], &v, sizeof(v)), -1);
}

/*
 * A body that cannot be written fails the send even when the header went:
 * a file that may hold 8 bytes, the header's size, takes no more.
 */
Test(privsep, body_write_error_is_returned, .timeout = 10)
{
	struct rlimit rl = { sizeof(uint32_t) * 2, sizeof(uint32_t) * 2 };
	char path[] = "/tmp/test_privsep.XXXXXX";
	uint32_t v = AUTH_OK;
	int fd = mkstemp(path);

	cr_assert_neq(fd, -1);
	(void)unlink(path);
	signal(SIGXFSZ, SIG_IGN);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	cr_assert_eq(privsep_send(fd, PRIV_VERDICT, &v, sizeof(v)), -1);
	cr_assert_eq(errno, EFBIG);
	cr_assert_eq(lseek(fd, 0, SEEK_END), (off_t)rl.rlim_cur);
	(void)close(fd);
}

/* The end of the pipe is EPIPE, and a read error is returned as it is. */
Test(privsep, eof_is_epipe_and_read_error_returned, .timeout = 10)
{
	uint32_t v;

	(void)close(fds[1]);
	fds[1] = -1;
	errno = 0;
	cr_assert_eq(fd_read_all(fds[0], &v, sizeof(v)), -1);
	cr_assert_eq(errno, EPIPE);
	cr_assert_eq(fd_read_all(-1, &v, sizeof(v)), -1);
	cr_assert_eq(errno, EBADF);
}

/* A refused frame says why: EPROTO, not whatever errno was before. */
Test(privsep, refused_frame_is_eproto)
{
	uint32_t v = AUTH_OK;
	struct cred c;

	cr_assert_eq(privsep_send(fds[1], PRIV_VERDICT, &v, sizeof(v)), 0);
	errno = 0;
	cr_assert_eq(privsep_recv(fds[0], PRIV_CRED, &c, sizeof(c), NULL), -1);
	cr_assert_eq(errno, EPROTO);
}

static void
on_alarm(int sig)
{
	(void)sig;
}

/* SIGALRM interrupts this process's blocking calls (no SA_RESTART). */
static void
catch_alarm(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	cr_assert_eq(sigaction(SIGALRM, &sa, NULL), 0);
}

/*
 * The child's side: n times a pause, then SIGALRM to the parent, and a
 * pause again, so that the parent sees the signal before the child goes on.
 */
static void
poke_parent(int n)
{
	struct timespec ts = { 0, 100 * 1000 * 1000 };

	(void)nanosleep(&ts, NULL);
	while (n-- > 0) {
		(void)kill(getppid(), SIGALRM);
		(void)nanosleep(&ts, NULL);
	}
}

static unsigned char *
pattern(size_t n)
{
	unsigned char *p = malloc(n);
	size_t i;

	cr_assert(p != NULL);
	for (i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 7 + i / 251);
	return p;
}

static void
reap_ok(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) == -1)
		cr_assert_eq(errno, EINTR);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/*
 * A writer blocked on a full pipe: the first signal cuts the write short
 * (some bytes went), the second fails the next write with EINTR before
 * any went.  The send carries on from where it was, both times, whenever
 * the signals land.
 */
Test(privsep, write_carries_on_after_signals, .timeout = 30)
{
	enum { BIG = 256 << 10 };
	unsigned char *out = pattern(BIG);
	pid_t pid;

	catch_alarm();
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		unsigned char *in = malloc(BIG);
		size_t got = 0;

		(void)close(fds[1]);
		poke_parent(2);
		_exit(in != NULL && privsep_recv(fds[0], PRIV_HANDOFF, in,
		    BIG, &got) == 0 && got == BIG &&
		    memcmp(in, out, BIG) == 0 ? 0 : 1);
	}
	cr_assert_eq(privsep_send(fds[1], PRIV_HANDOFF, out, BIG), 0);
	reap_ok(pid);
	free(out);
}

/*
 * A reader blocked on an empty pipe gets EINTR, then the frame comes in
 * pieces (a pipe read returns at most what the pipe holds).
 */
Test(privsep, read_carries_on_after_signal_and_in_pieces, .timeout = 30)
{
	enum { BIG = 4 << 20 };
	unsigned char *out = pattern(BIG), *in = malloc(BIG);
	size_t got = 0;
	pid_t pid;

	cr_assert(in != NULL);
	catch_alarm();
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		(void)close(fds[0]);
		poke_parent(1);
		_exit(privsep_send(fds[1], PRIV_HANDOFF, out, BIG) == 0 ?
		    0 : 1);
	}
	(void)close(fds[1]);
	fds[1] = -1;
	cr_assert_eq(privsep_recv(fds[0], PRIV_HANDOFF, in, BIG, &got), 0);
	cr_assert_eq(got, (size_t)BIG);
	cr_assert_eq(memcmp(in, out, BIG), 0);
	reap_ok(pid);
	free(in);
	free(out);
}
