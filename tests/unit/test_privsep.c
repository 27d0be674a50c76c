/*
 * test_privsep.c: the framed messages between the pre-login process and
 * the root parent.  The parent must refuse every frame that is not exactly
 * what it waits for: another type, a wrong or oversized length, a frame
 * cut short.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>
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
