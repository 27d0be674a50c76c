/*
 * fuzz_session.c: libFuzzer target for the command reader (io.c) and the
 * POP3 dialogue (session.c), from the greeting through AUTHORIZATION and
 * TRANSACTION to UPDATE on a real mbox.
 *
 * The input is everything a client sends, pipelined: commands, SASL
 * responses, junk.  It arrives in packets of varying size, so that lines
 * and CRLFs are split across reads as TCP may split them.  It runs as
 * pop3d runs it (pop3d.c): the pre-login
 * session with a verifier, then the bytes it read ahead handed to a fresh
 * connection (io_preload) and a new session on the opened maildrop.  The
 * verifier accepts user "u" with password "p" (USER/PASS, AUTH PLAIN) or
 * RFC 1939 §7's example digest (APOP), and says "try later" for user
 * "tempfail".  Checked every run: what goes out is CRLF lines of at most
 * 512 octets (RFC 1939 §3) after the right greeting; a credential reaches
 * the verifier only with a valid name; the session ends only as it may;
 * the mbox holds after QUIT exactly the messages not deleted, and is
 * untouched otherwise; no lock or journal is left behind.  Runs as
 * whoever runs the fuzzer, in a directory of its own under /dev/shm.
 */
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pop3d.h"
#include "fuzz.h"

/*
 * Inputs are capped: a longer one only repeats what a shorter one does,
 * and all of it must fit in the socket before the session reads.
 */
#define IN_MAX		(32 * 1024)
/* The input is cut into this many small packets, then larger ones. */
#define IN_SMALL	64
#define IN_LARGE	4096

/* RFC 1939 §7's example: MD5 of this stamp and "tanstaaf". */
#define STAMP		"<1896.697170952@dbc.mtview.ca.us>"
#define APOP_DIGEST	"c4c9334bac560ecc979e58001b3e22fb"
#define GREETING	"+OK fuzz POP3 server ready " STAMP "\r\n"

/*
 * The maildrop: LF and CRLF messages, dot-stuffing, headers left out of
 * the UIDL, an identical copy (UIDL suffix), an empty one, and a last
 * line without a newline.
 */
#define MSG_A \
	"From alice@example.org Mon Jan  1 00:00:00 2024\n" \
	"Status: RO\n" \
	"Subject: one\n" \
	"X-Keywords: a\n" \
	"\tb\n" \
	"\n" \
	"Body line one.\n" \
	".leading dot\n" \
	".\n" \
	"..two dots\n" \
	"\n"
static const char fixture[] =
	MSG_A
	"From bob@example.org Tue Jan  2 10:11:12 2024\r\n"
	"Subject: crlf\r\n"
	"\r\n"
	"CRLF body\r\n"
	"From not an envelope\r\n"
	"\r\n"
	MSG_A
	"From carol@example.org Wed Jan  3 00:00:00 2024\n"
	"\n"
	"From dave@example.org Thu Jan  4 00:00:00 2024\n"
	"Subject: no final newline\n"
	"\n"
	">From quoted\n"
	"last line without newline";
#define FIXTURE_MSGS	5

static struct config cfg;
static struct io io;
static unsigned char pending[POP3D_INBUF];
static char dir[128], mbox_path[256];
static int in_fd = -1, out_fd = -1;

static struct buf out, expect, file;

static enum auth_result
verify(void *ctx, const struct cred *c, struct account *a)
{
	const char *want;

	(void)ctx;
	CHECK(memchr(c->user, '\0', sizeof(c->user)) != NULL);
	CHECK(memchr(c->secret, '\0', sizeof(c->secret)) != NULL);
	CHECK(auth_valid_name(c->user));
	CHECK(c->method == CRED_USER || c->method == CRED_APOP ||
	    c->method == CRED_PLAIN);
	if (strcmp(c->user, "tempfail") == 0)
		return AUTH_TEMP;
	want = c->method == CRED_APOP ? APOP_DIGEST : "p";
	if (strcmp(c->user, "u") != 0 || strcmp(c->secret, want) != 0)
		return AUTH_FAIL;
	memset(a, 0, sizeof(*a));
	strlcpy(a->name, c->user, sizeof(a->name));
	a->uid = getuid();
	a->gid = getgid();
	CHECK(strlcpy(a->maildrop, mbox_path, sizeof(a->maildrop)) <
	    sizeof(a->maildrop));
	return AUTH_OK;
}

static void
read_fd(int fd, struct buf *b)
{
	struct stat st;

	CHECK(fstat(fd, &st) == 0);
	b->len = 0;
	buf_add(b, NULL, (size_t)st.st_size);
	CHECK(pread(fd, b->p, b->len, 0) == (ssize_t)b->len);
}

static void
write_mbox(void)
{
	int fd = open(mbox_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600);

	CHECK(fd != -1);
	CHECK(write(fd, fixture, sizeof(fixture) - 1) ==
	    (ssize_t)(sizeof(fixture) - 1));
	CHECK(close(fd) == 0);
}

/* What the client got: the greeting, then CRLF lines of 512 at most. */
static void
check_output(void)
{
	size_t i, start = 0;

	read_fd(out_fd, &out);
	CHECK(out.len >= strlen(GREETING));
	CHECK(memcmp(out.p, GREETING, strlen(GREETING)) == 0);
	for (i = 0; i < out.len; i++) {
		CHECK(out.p[i] != '\0');
		if (out.p[i] == '\r')
			CHECK(i + 1 < out.len && out.p[i + 1] == '\n');
		if (out.p[i] == '\n') {
			CHECK(i > start && out.p[i - 1] == '\r');
			CHECK(i + 1 - start <= 512);
			start = i + 1;
		}
	}
	CHECK(start == out.len);
}

/* The mbox is as expected and nothing else is left in the directory. */
static void
check_store(void)
{
	struct dirent *de;
	DIR *d;
	int fd, others = 0;

	CHECK((fd = open(mbox_path, O_RDONLY | O_CLOEXEC)) != -1);
	read_fd(fd, &file);
	CHECK(close(fd) == 0);
	CHECK(file.len == expect.len);
	CHECK(memcmp(file.p, expect.p, file.len) == 0);
	CHECK((d = opendir(dir)) != NULL);
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0 &&
		    strcmp(de->d_name, "mbox") != 0)
			others++;
	CHECK(closedir(d) == 0);
	CHECK(others == 0);
}

/* The bytes of the messages not deleted, in order (RFC 1939 §6). */
static void
expect_kept(const struct maildrop *md)
{
	size_t i;

	expect.len = 0;
	for (i = 0; i < md->count; i++) {
		uint64_t end = i + 1 < md->count ? md->loc.mbox[i + 1].off :
		    sizeof(fixture) - 1;

		if (!(md->msgs[i].flags & MSG_DELETED))
			buf_add(&expect, fixture + md->loc.mbox[i].off,
			    (size_t)(end - md->loc.mbox[i].off));
	}
}

/*
 * The client side: a SOCK_SEQPACKET pair, where each read returns one
 * packet, filled with the input and closed.  Packets grow along a cycle
 * (1, 2, 3, 5, 8, ... 377 bytes), so that every split point moves as the
 * fuzzer inserts and removes bytes.  No packet is larger than the room io
 * reads into (its buffer less one partial line), so none is cut short.
 */
static int
client(const uint8_t *data, size_t size)
{
	static const size_t cycle[] = { 1, 2, 3, 5, 8, 13, 21, 34, 55, 89,
	    144, 233, 377 };
	size_t off = 0, k = 0;
	int sv[2];

	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) ==
	    0);
	while (off < size) {
		size_t n = k < IN_SMALL ?
		    cycle[k % (sizeof(cycle) / sizeof(cycle[0]))] : IN_LARGE;

		if (n > size - off)
			n = size - off;
		CHECK(send(sv[1], data + off, n, MSG_DONTWAIT) == (ssize_t)n);
		off += n;
		k++;
	}
	CHECK(close(sv[1]) == 0);
	return sv[0];
}

/* A session that ended on its own read the input to its end. */
static void
check_consumed(void)
{
	char c;

	CHECK(recv(in_fd, &c, 1, MSG_DONTWAIT) == 0);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_report_init();
	log_init(1);
	fuzz_tmpdir(dir, sizeof(dir));
	CHECK((size_t)snprintf(mbox_path, sizeof(mbox_path), "%s/mbox",
	    dir) < sizeof(mbox_path));
	out_fd = memfd_create("fuzz-out", MFD_CLOEXEC);
	CHECK(out_fd != -1);
	cfg.hostname = "fuzz";
	cfg.timeout = 5;
	cfg.auth_delay = 0;
	cfg.max_fails = 3;
	cfg.apop = 1;
	strlcpy(cfg.stamp, STAMP, sizeof(cfg.stamp));
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct session s;
	struct maildrop md;
	struct account acct;
	enum session_end e;

	if (size > IN_MAX)
		return 0;
	write_mbox();
	expect.len = 0;
	buf_add(&expect, fixture, sizeof(fixture) - 1);
	in_fd = client(data, size);
	CHECK(ftruncate(out_fd, 0) == 0);
	CHECK(lseek(out_fd, 0, SEEK_SET) == 0);

	io_init(&io, in_fd, out_fd, cfg.timeout);
	session_init(&s, &io, &cfg, verify, NULL);
	session_greet(&s);
	e = session_authorize(&s);
	CHECK(s.fails <= cfg.max_fails);
	CHECK((e == SESSION_FAILED) == (s.fails >= cfg.max_fails));
	if (e == SESSION_GONE)
		check_consumed();
	if (e == SESSION_LOGIN) {
		/* pop3d.c: the child hands what it read ahead to the parent. */
		size_t n = io.inlen - io.inoff;
		size_t count;
		uint64_t octets;

		CHECK(strcmp(s.acct.name, "u") == 0);
		acct = s.acct;
		memcpy(pending, io.inbuf + io.inoff, n);
		CHECK(io_flush(&io) == 0);
		io_init(&io, in_fd, out_fd, cfg.timeout);
		CHECK(io_preload(&io, pending, n) == 0);
		/* No verifier: TRANSACTION must never ask for one. */
		session_init(&s, &io, &cfg, NULL, NULL);
		s.acct = acct;
		CHECK(maildrop_open(&md, s.acct.maildrop) == MD_OK);
		CHECK(md.count == FIXTURE_MSGS);
		maildrop_stat(&md, &count, &octets);
		io_reply(&io, "+OK %s's maildrop has %zu messages (%llu "
		    "octets)", s.acct.name, count,
		    (unsigned long long)octets);
		e = session_transaction(&s, &md);
		/* UPDATE on a healthy tmpfs never fails. */
		CHECK(e == SESSION_QUIT || e == SESSION_GONE);
		CHECK(!s.update_failed);
		if (e == SESSION_QUIT)
			expect_kept(&md);
		else
			check_consumed();
		maildrop_close(&md);
	}
	CHECK(io_flush(&io) == 0);
	CHECK(close(in_fd) == 0);
	in_fd = -1;
	check_output();
	check_store();
	return 0;
}
