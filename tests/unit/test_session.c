/*
 * test_session.c: the command parser helpers and the POP3 state machine
 * (session.c, auth.c's name and template helpers).
 *
 * session_number, auth_valid_name and auth_expand on their bounds; then
 * whole dialogues over a socketpair: AUTHORIZATION (RFC 1939 §4, §7) with
 * a verify stub, and TRANSACTION and UPDATE (§5, §6) on a real mbox.
 */
#include "unit.h"

TestSuite(number, .fini = unit_cleanup);
TestSuite(names, .fini = unit_cleanup);
TestSuite(expand, .fini = unit_cleanup);
TestSuite(authorize, .fini = unit_cleanup);
TestSuite(transaction, .fini = unit_cleanup);

/* session_number */

static void
number_ok(const char *s, uint64_t exp)
{
	uint64_t n = 12345;

	cr_assert_eq(session_number(s, &n), 0, "\"%s\" refused", s);
	cr_assert_eq(n, exp, "\"%s\" gave %llu", s, (unsigned long long)n);
}

static void
number_bad(const char *s)
{
	uint64_t n = 0;

	cr_assert_eq(session_number(s, &n), -1, "\"%s\" accepted as %llu", s,
	    (unsigned long long)n);
}

Test(number, digits)
{
	number_ok("1", 1);
	number_ok("42", 42);
	number_ok("0", 0);
	number_ok("007", 7);
	number_ok("18446744073709551615", UINT64_MAX);
}

Test(number, refused)
{
	number_bad("");
	number_bad("-1");
	number_bad("+1");
	number_bad(" 1");
	number_bad("1 ");
	number_bad("1a");
	number_bad("a1");
	number_bad("0x10");
	number_bad("1.5");
	number_bad("18446744073709551616");	/* UINT64_MAX + 1 */
	number_bad("100000000000000000000");	/* 21 digits */
	number_bad("999999999999999999999");
}

/* auth_valid_name */

Test(names, accepted)
{
	char forty[41];

	memset(forty, 'n', 40);
	forty[40] = '\0';
	cr_assert(auth_valid_name("alice"));
	cr_assert(auth_valid_name("a.b-c_d"));
	cr_assert(auth_valid_name("a"));
	cr_assert(auth_valid_name(forty));
}

Test(names, refused)
{
	char longest[POP3D_MAX_USER + 2];

	memset(longest, 'n', POP3D_MAX_USER + 1);
	longest[POP3D_MAX_USER] = '\0';
	cr_assert(auth_valid_name(longest));
	longest[POP3D_MAX_USER] = 'n';
	longest[POP3D_MAX_USER + 1] = '\0';
	cr_assert_not(auth_valid_name(""));
	cr_assert_not(auth_valid_name(longest));
	cr_assert_not(auth_valid_name("a/b"));
	cr_assert_not(auth_valid_name("/"));
	cr_assert_not(auth_valid_name(".hidden"));
	cr_assert_not(auth_valid_name(".."));
	cr_assert_not(auth_valid_name("."));
	cr_assert_not(auth_valid_name("a b"));
	cr_assert_not(auth_valid_name(" a"));
	cr_assert_not(auth_valid_name("a\tb"));
	cr_assert_not(auth_valid_name("a\nb"));
	cr_assert_not(auth_valid_name("a\rb"));
	cr_assert_not(auth_valid_name("a\x01"));
	cr_assert_not(auth_valid_name("a\x1b[0m"));
	cr_assert_not(auth_valid_name("a\x7f"));
	cr_assert_not(auth_valid_name("a:b"));
}

/* log_value: a user name or path as one key=value field of a log line */

static void
value_is(const char *in, size_t size, const char *exp)
{
	char buf[64];

	cr_assert_leq(size, sizeof(buf));
	cr_assert_str_eq(log_value(buf, size, in), exp, "\"%s\" in %zu bytes",
	    in, size);
}

Test(names, log_value)
{
	char buf[LOG_VALUE_MAX(POP3D_MAX_USER)], worst[POP3D_MAX_USER + 1];

	value_is("alice", 64, "alice");
	value_is("a.b-c_d@example.org", 64, "a.b-c_d@example.org");
	value_is("", 64, "\"\"");
	value_is("x\"reason=\"ok", 64, "\"x\\\"reason=\\\"ok\"");
	value_is("a=b", 64, "\"a=b\"");
	value_is("a\\b", 64, "\"a\\\\b\"");
	value_is("/var/mail/a b", 64, "\"/var/mail/a b\"");
	value_is("a\nb\x7f", 64, "\"a\\x0ab\\x7f\"");
	/* Cut to fit, the quotes kept. */
	value_is("abcdefghij=", 12, "\"abcdef...\"");
	value_is("abcdefghij=", 13, "\"abcdefg...\"");
	value_is("abcdef=", 10, "\"abcdef=\"");
	value_is("a=", 2, "\"\"");
	/* The bound the callers size for: every byte escaped. */
	memset(worst, '\x01', POP3D_MAX_USER);
	worst[POP3D_MAX_USER] = '\0';
	cr_assert_eq(strlen(log_value(buf, sizeof(buf), worst)),
	    (size_t)4 * POP3D_MAX_USER + 2);
}

/* auth_expand */

static void
account(struct account *a, const char *name, const char *home)
{
	memset(a, 0, sizeof(*a));
	strlcpy(a->name, name, sizeof(a->name));
	strlcpy(a->home, home, sizeof(a->home));
}

Test(expand, user_and_home)
{
	struct account a;
	char buf[256];

	account(&a, "bob", "/home/bob");
	cr_assert_eq(auth_expand("/var/mail/%u", &a, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "/var/mail/bob");
	cr_assert_eq(auth_expand("%h/Maildir", &a, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "/home/bob/Maildir");
	cr_assert_eq(auth_expand("/srv/%u/%u%%x", &a, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "/srv/bob/bob%x");
	cr_assert_eq(auth_expand("%%", &a, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "%");
	cr_assert_eq(auth_expand("/plain/path", &a, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "/plain/path");
}

Test(expand, refused)
{
	struct account a;
	char buf[256];

	account(&a, "bob", "/home/bob");
	cr_assert_eq(auth_expand("/var/mail/%x", &a, buf, sizeof(buf)), -1);
	cr_assert_eq(auth_expand("/var/mail/%", &a, buf, sizeof(buf)), -1);
	cr_assert_eq(auth_expand("%U", &a, buf, sizeof(buf)), -1);
	account(&a, "bob", "");
	cr_assert_eq(auth_expand("%h/Maildir", &a, buf, sizeof(buf)), -1);
	cr_assert_eq(auth_expand("/var/mail/%u", &a, buf, sizeof(buf)), 0);
}

/* "/var/mail/bob" is 13 characters: it needs 14 bytes with the NUL. */
Test(expand, truncation)
{
	struct account a;
	char buf[64];

	account(&a, "bob", "/home/bob");
	memset(buf, 'Z', sizeof(buf));
	cr_assert_eq(auth_expand("/var/mail/%u", &a, buf, 14), 0);
	cr_assert_str_eq(buf, "/var/mail/bob");
	cr_assert_eq(auth_expand("/var/mail/%u", &a, buf, 13), -1);
	cr_assert_eq(auth_expand("/var/mail/%u", &a, buf, 5), -1);
	cr_assert_eq(auth_expand("%h/Maildir", &a, buf, 18), 0);
	cr_assert_eq(auth_expand("%h/Maildir", &a, buf, 17), -1);
}

/* Whole dialogues */

struct verify_ctx {
	int		 calls;
	uint32_t	 method;
	char		 user[256];
	char		 pass[512];
};

/* Accepts user "u" with password "p" (USER/PASS) only. */
static enum auth_result
verify_stub(void *ctx, const struct cred *c, struct account *acct)
{
	struct verify_ctx *v = ctx;

	v->calls++;
	v->method = c->method;
	strlcpy(v->user, c->user, sizeof(v->user));
	strlcpy(v->pass, c->secret, sizeof(v->pass));
	if (c->method != CRED_USER || strcmp(c->user, "u") != 0 ||
	    strcmp(c->secret, "p") != 0)
		return AUTH_FAIL;
	memset(acct, 0, sizeof(*acct));
	strlcpy(acct->name, c->user, sizeof(acct->name));
	return AUTH_OK;
}

struct dialog {
	int			 sv[2];	/* sv[0]: the server's */
	struct io		*io;
	struct config		 cfg;
	struct session		 s;
	struct verify_ctx	 v;
	struct buf		 out;	/* what the server said */
	size_t			 pos;	/* parsed so far */
};

static void
dialog_free(void *p)
{
	struct dialog *d = p;

	buf_free(&d->out);
	free(d);
}

/* A session over a socketpair; freed by unit_cleanup. */
static struct dialog *
dialog_new(int timeout)
{
	struct dialog *d = calloc(1, sizeof(*d));

	cr_assert_not_null(d);
	unit_defer(dialog_free, d);
	cr_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, d->sv) == 0);
	d->cfg.hostname = "test.example";
	d->cfg.maildrop = "/nonexistent/%u";
	d->cfg.timeout = timeout;
	d->cfg.auth_delay = 0;
	d->cfg.max_fails = 3;
	d->io = io_auto(d->sv[0], d->sv[0], timeout);
	session_init(&d->s, d->io, &d->cfg, verify_stub, &d->v);
	return d;
}

static void
client(struct dialog *d, const char *s)
{
	write_all(d->sv[1], s, strlen(s));
}

static void
client_eof(struct dialog *d)
{
	cr_assert(shutdown(d->sv[1], SHUT_WR) == 0);
}

/* Ends the server side and collects everything it sent. */
static void
dialog_collect(struct dialog *d)
{
	cr_assert_eq(io_flush(d->io), 0);
	close(d->sv[0]);
	read_all(d->sv[1], &d->out);
	close(d->sv[1]);
}

/* The next response line, without its CRLF, into a static buffer. */
static const char *
reply(struct dialog *d)
{
	static char line[8192];
	const unsigned char *p = d->out.p + d->pos;
	size_t left = d->out.len - d->pos;
	const unsigned char *lf = memchr(p, '\n', left);
	size_t n;

	cr_assert_not_null(lf, "no more responses (expected one); "
	    "all output:\n%s", (const char *)d->out.p);
	n = (size_t)(lf - p);
	cr_assert(n >= 1 && p[n - 1] == '\r', "response line without CRLF");
	n--;
	cr_assert(n < sizeof(line));
	memcpy(line, p, n);
	line[n] = '\0';
	d->pos += n + 2;
	return line;
}

static void
expect_ok(struct dialog *d, const char *what)
{
	const char *l = reply(d);

	cr_assert(strncmp(l, "+OK", 3) == 0 && (l[3] == '\0' || l[3] == ' '),
	    "%s: expected +OK, got \"%s\"", what, l);
}

static void
expect_err(struct dialog *d, const char *what)
{
	const char *l = reply(d);

	cr_assert(strncmp(l, "-ERR", 4) == 0 && (l[4] == '\0' ||
	    l[4] == ' '), "%s: expected -ERR, got \"%s\"", what, l);
}

static void
expect_exact(struct dialog *d, const char *exp)
{
	const char *l = reply(d);

	cr_assert_str_eq(l, exp);
}

/* A multi-line body up to ".", unstuffed, with CRLF line ends. */
static void
multiline(struct dialog *d, struct buf *body)
{
	const unsigned char *p = d->out.p + d->pos;
	size_t left = d->out.len - d->pos, i;

	/* Find the terminator line: ".\r\n" at a line start. */
	for (i = 0; i + 3 <= left; ) {
		const unsigned char *lf;

		if (memcmp(p + i, ".\r\n", 3) == 0) {
			cr_assert_eq(unstuff(p, i + 3, body), 0,
			    "malformed multi-line response");
			d->pos += i + 3;
			return;
		}
		lf = memchr(p + i, '\n', left - i);
		cr_assert_not_null(lf, "multi-line response not terminated");
		i = (size_t)(lf - p) + 1;
	}
	cr_assert_fail("multi-line response not terminated");
}

static void
expect_end(struct dialog *d)
{
	cr_assert_eq(d->pos, d->out.len, "unexpected extra output: \"%s\"",
	    (const char *)d->out.p + d->pos);
}

Test(authorize, login, .timeout = 20)
{
	struct dialog *d;

	d = dialog_new(5);
	session_greet(&d->s);
	client(d, "USER u\r\nPASS p\r\n");
	cr_assert_eq(session_authorize(&d->s), SESSION_LOGIN);
	cr_assert_str_eq(d->s.acct.name, "u");
	cr_assert_eq(d->v.calls, 1);
	cr_assert_eq(d->v.method, CRED_USER);
	cr_assert_str_eq(d->v.user, "u");
	cr_assert_str_eq(d->v.pass, "p");
	dialog_collect(d);
	expect_ok(d, "greeting");
	expect_ok(d, "USER");
	/* The caller answers PASS once the maildrop is open. */
	expect_end(d);
}

Test(authorize, keywords_case_insensitive, .timeout = 20)
{
	struct dialog *d;

	d = dialog_new(5);
	session_greet(&d->s);
	client(d, "user u\r\npAsS p\r\n");
	cr_assert_eq(session_authorize(&d->s), SESSION_LOGIN);
	dialog_collect(d);
	expect_ok(d, "greeting");
	expect_ok(d, "user");
	expect_end(d);
}

Test(authorize, bare_lf_commands, .timeout = 20)
{
	struct dialog *d;

	d = dialog_new(5);
	session_greet(&d->s);
	client(d, "USER u\nPASS p\n");
	cr_assert_eq(session_authorize(&d->s), SESSION_LOGIN);
}

Test(authorize, quit, .timeout = 20)
{
	struct dialog *d;

	d = dialog_new(5);
	session_greet(&d->s);
	client(d, "QUIT\r\n");
	cr_assert_eq(session_authorize(&d->s), SESSION_QUIT);
	dialog_collect(d);
	expect_ok(d, "greeting");
	expect_ok(d, "QUIT");
	expect_end(d);
	cr_assert_eq(d->v.calls, 0);
}

Test(authorize, quit_lower_case_after_user, .timeout = 20)
{
	struct dialog *d;

	d = dialog_new(5);
	session_greet(&d->s);
	client(d, "USER u\r\nquit\r\n");
	cr_assert_eq(session_authorize(&d->s), SESSION_QUIT);
	cr_assert_eq(d->v.calls, 0);
}

Test(authorize, eof, .timeout = 20)
{
	struct dialog *d;

	d = dialog_new(5);
	session_greet(&d->s);
	client(d, "USER u\r\n");
	client_eof(d);
	cr_assert_eq(session_authorize(&d->s), SESSION_GONE);
	cr_assert_eq(d->v.calls, 0);
}

Test(authorize, eof_mid_line, .timeout = 20)
{
	struct dialog *d;

	d = dialog_new(5);
	session_greet(&d->s);
	client(d, "USER u\r\nPASS p");
	client_eof(d);
	cr_assert_eq(session_authorize(&d->s), SESSION_GONE);
	cr_assert_eq(d->v.calls, 0, "a partial line was executed");
}

Test(authorize, timeout, .timeout = 20)
{
	struct dialog *d;

	d = dialog_new(1);
	session_greet(&d->s);
	client(d, "USER u\r\n");
	cr_assert_eq(session_authorize(&d->s), SESSION_GONE);
}

Test(authorize, wrong_state_commands, .timeout = 20)
{
	static const char *const cmds[] = {
		"STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "UIDL", "UIDL 1",
		"TOP 1 0", "RSET", "NOOP"
	};
	struct dialog *d;
	size_t i;

	d = dialog_new(5);
	session_greet(&d->s);
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		client(d, cmds[i]);
		client(d, "\r\n");
	}
	client(d, "QUIT\r\n");
	cr_assert_eq(session_authorize(&d->s), SESSION_QUIT);
	dialog_collect(d);
	expect_ok(d, "greeting");
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		expect_err(d, cmds[i]);
	expect_ok(d, "QUIT");
	expect_end(d);
}

Test(authorize, unknown_and_malformed_commands, .timeout = 20)
{
	static const char *const cmds[] = {
		"XYZZY", "", " USER u", "USERu", "USER", "USER u v", "PASS",
		"QUIT now", "USE u", "USERS u"
	};
	struct dialog *d;
	size_t i;

	d = dialog_new(5);
	session_greet(&d->s);
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		client(d, cmds[i]);
		client(d, "\r\n");
	}
	client(d, "USER u\r\nPASS p\r\n");
	cr_assert_eq(session_authorize(&d->s), SESSION_LOGIN);
	dialog_collect(d);
	expect_ok(d, "greeting");
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		expect_err(d, cmds[i]);
	expect_ok(d, "USER");
	expect_end(d);
	cr_assert_eq(d->v.calls, 1);
}

Test(authorize, too_many_failures, .timeout = 20)
{
	struct dialog *d;

	d = dialog_new(5);
	session_greet(&d->s);
	client(d, "USER u\r\nPASS x\r\nUSER u\r\nPASS y\r\nUSER v\r\nPASS p\r\n"
	    "USER u\r\nPASS p\r\n");
	cr_assert_eq(session_authorize(&d->s), SESSION_FAILED);
	cr_assert_eq(d->v.calls, 3, "verify called %d times", d->v.calls);
	dialog_collect(d);
	expect_ok(d, "greeting");
	expect_ok(d, "USER");
	expect_err(d, "PASS 1");
	expect_ok(d, "USER");
	expect_err(d, "PASS 2");
	expect_ok(d, "USER");
	expect_err(d, "PASS 3");
	expect_end(d);
}

Test(authorize, max_fails_one, .timeout = 20)
{
	struct dialog *d;

	d = dialog_new(5);
	d->cfg.max_fails = 1;
	session_greet(&d->s);
	client(d, "USER u\r\nPASS x\r\nUSER u\r\nPASS p\r\n");
	cr_assert_eq(session_authorize(&d->s), SESSION_FAILED);
	cr_assert_eq(d->v.calls, 1);
}

Test(authorize, failures_below_the_limit, .timeout = 20)
{
	struct dialog *d;

	d = dialog_new(5);
	session_greet(&d->s);
	client(d, "USER u\r\nPASS x\r\nUSER u\r\nPASS y\r\n"
	    "USER u\r\nPASS p\r\n");
	cr_assert_eq(session_authorize(&d->s), SESSION_LOGIN);
	cr_assert_eq(d->v.calls, 3);
}

Test(authorize, pass_without_user, .timeout = 20)
{
	struct dialog *d;

	d = dialog_new(5);
	session_greet(&d->s);
	client(d, "PASS p\r\nUSER u\r\nPASS p\r\n");
	cr_assert_eq(session_authorize(&d->s), SESSION_LOGIN);
	cr_assert_eq(d->v.calls, 1);
	dialog_collect(d);
	expect_ok(d, "greeting");
	expect_err(d, "PASS first");
	expect_ok(d, "USER");
	expect_end(d);
}

/* RFC 1939 §7: PASS only immediately after a successful USER. */
Test(authorize, pass_not_right_after_user, .timeout = 20)
{
	struct dialog *d;

	d = dialog_new(5);
	session_greet(&d->s);
	client(d, "USER u\r\nSTAT\r\nPASS p\r\nQUIT\r\n");
	cr_assert_eq(session_authorize(&d->s), SESSION_QUIT);
	cr_assert_eq(d->v.calls, 0);
	dialog_collect(d);
	expect_ok(d, "greeting");
	expect_ok(d, "USER");
	expect_err(d, "STAT");
	expect_err(d, "PASS");
	expect_ok(d, "QUIT");
	expect_end(d);
}

/* A refused line (too long, NUL, bare CR) is a line too: no PASS after. */
Test(authorize, refused_lines_cancel_the_user, .timeout = 20)
{
	char line[300];
	struct dialog *d;
	int i;

	for (i = 0; i < 3; i++) {
		d = dialog_new(5);
		session_greet(&d->s);
		client(d, "USER u\r\n");
		if (i == 0)
			write_all(d->sv[1], "NO\0OP", 5);
		else if (i == 1)
			client(d, "NOOP\rX");
		else {
			memset(line, 'X', sizeof(line));
			write_all(d->sv[1], line, sizeof(line));
		}
		client(d, "\r\nPASS p\r\nQUIT\r\n");
		cr_assert_eq(session_authorize(&d->s), SESSION_QUIT, "%d", i);
		cr_assert_eq(d->v.calls, 0, "%d: PASS verified", i);
		dialog_collect(d);
		expect_ok(d, "greeting");
		expect_ok(d, "USER");
		expect_err(d, "the refused line");
		expect_err(d, "PASS");
		expect_ok(d, "QUIT");
		expect_end(d);
	}
}

Test(authorize, invalid_user_names_never_verified, .timeout = 20)
{
	struct dialog *d;

	d = dialog_new(5);
	session_greet(&d->s);
	client(d, "USER ../etc\r\nPASS p\r\nUSER .u\r\nPASS p\r\n");
	client(d, "USER a:b\r\nPASS p\r\nQUIT\r\n");
	cr_assert_eq(session_authorize(&d->s), SESSION_QUIT);
	cr_assert_eq(d->v.calls, 0, "verify saw \"%s\"", d->v.user);
	dialog_collect(d);
	expect_ok(d, "greeting");
	expect_err(d, "USER ../etc");
	expect_err(d, "PASS");
	expect_err(d, "USER .u");
	expect_err(d, "PASS");
	expect_err(d, "USER a:b");
	expect_err(d, "PASS");
	expect_ok(d, "QUIT");
	expect_end(d);
}

/*
 * RFC 2449 §4 lifts RFC 1939's 40 characters per argument with the line
 * limit: a name of POP3D_MAX_USER characters reaches the verifier whole,
 * one more is refused at USER and never verified.
 */
Test(authorize, longest_user_name_is_verified, .timeout = 20)
{
	char l[POP3D_MAX_USER + 16];
	struct dialog *d;

	d = dialog_new(5);
	session_greet(&d->s);
	memset(l, 'a', POP3D_MAX_USER + 1);
	memcpy(l + POP3D_MAX_USER + 1, "\r\nPASS p\r\n", 11);
	client(d, "USER ");
	client(d, l);
	memcpy(l + POP3D_MAX_USER, "\r\nPASS p\r\n", 11);
	client(d, "USER ");
	client(d, l);
	client(d, "QUIT\r\n");
	cr_assert_eq(session_authorize(&d->s), SESSION_QUIT);
	cr_assert_eq(d->v.calls, 1);
	cr_assert_eq(strlen(d->v.user), POP3D_MAX_USER);
	cr_assert_eq(strspn(d->v.user, "a"), POP3D_MAX_USER);
	dialog_collect(d);
	expect_ok(d, "greeting");
	expect_err(d, "USER of POP3D_MAX_USER + 1 characters");
	expect_err(d, "PASS without USER");
	expect_ok(d, "USER of POP3D_MAX_USER characters");
	expect_err(d, "PASS (the stub knows only u)");
	expect_ok(d, "QUIT");
	expect_end(d);
}

/* The tail of an over-long line is never run as a command. */
Test(authorize, too_long_line, .timeout = 20)
{
	char l[512];
	struct dialog *d;

	d = dialog_new(5);
	session_greet(&d->s);
	memset(l, 'X', 255);
	l[255] = '\0';
	client(d, l);
	client(d, "QUIT\r\nUSER u\r\nPASS p\r\n");
	cr_assert_eq(session_authorize(&d->s), SESSION_LOGIN);
	dialog_collect(d);
	expect_ok(d, "greeting");
	expect_err(d, "long line");
	expect_ok(d, "USER");
	expect_end(d);
}

Test(authorize, line_of_255_octets_is_a_command, .timeout = 20)
{
	char l[300];
	struct dialog *d;

	/* "PASS " and 248 characters and CRLF: 255 octets. */
	d = dialog_new(5);
	session_greet(&d->s);
	memcpy(l, "PASS ", 5);
	memset(l + 5, 'w', 248);
	memcpy(l + 253, "\r\n", 3);
	client(d, "USER u\r\n");
	client(d, l);
	client(d, "QUIT\r\n");
	cr_assert_eq(session_authorize(&d->s), SESSION_QUIT);
	cr_assert_eq(d->v.calls, 1);
	cr_assert_eq(strlen(d->v.pass), 248);
}

Test(authorize, nul_in_command, .timeout = 20)
{
	static const char in[] = "QU\0IT\r\nUSER u\r\nPASS p\r\n";
	struct dialog *d;

	d = dialog_new(5);
	session_greet(&d->s);
	write_all(d->sv[1], in, sizeof(in) - 1);
	cr_assert_eq(session_authorize(&d->s), SESSION_LOGIN);
	dialog_collect(d);
	expect_ok(d, "greeting");
	expect_err(d, "NUL");
	expect_ok(d, "USER");
	expect_end(d);
}

Test(authorize, capa, .timeout = 20)
{
	struct dialog *d;
	struct buf body = { 0 };

	d = dialog_new(5);
	session_greet(&d->s);
	client(d, "CAPA\r\nQUIT\r\n");
	cr_assert_eq(session_authorize(&d->s), SESSION_QUIT);
	dialog_collect(d);
	expect_ok(d, "greeting");
	expect_ok(d, "CAPA");
	multiline(d, &body);
	cr_assert_not_null(strstr((const char *)body.p, "USER\r\n"));
	cr_assert_not_null(strstr((const char *)body.p, "UIDL\r\n"));
	cr_assert_not_null(strstr((const char *)body.p, "TOP\r\n"));
	expect_ok(d, "QUIT");
	expect_end(d);
	buf_free(&body);
}

/* TRANSACTION and UPDATE on a real mbox */

static const char *const tmsgs[] = {
	"From: a@example.org\nSubject: one\n\nfirst body\n.dot line\n",
	"From: b@example.org\r\nSubject: two\r\n\r\nline 1\r\nline 2\r\n"
	    "line 3\r\n",
	"From: c@example.org\nSubject: three\n\n\n.\n..\nFrom here\n",
};

struct txn {
	char		*dir;
	char		 path[512];
	struct ref_mbox	 mb;
	struct maildrop	 md;
	struct dialog	*d;
};

static void
txn_free(void *p)
{
	struct txn *t = p;

	maildrop_close(&t->md);
	ref_mbox_free(&t->mb);
	free(t);
}

/* Three messages in an mbox, opened, and a dialog; freed at cleanup. */
static struct txn *
txn_new(void)
{
	struct txn *t = calloc(1, sizeof(*t));
	size_t i;

	cr_assert_not_null(t);
	t->dir = tmpdir_make();
	unit_defer(txn_free, t);
	snprintf(t->path, sizeof(t->path), "%s/mbox", t->dir);
	for (i = 0; i < 3; i++)
		ref_mbox_adds(&t->mb, i == 1 ? ENV2 : ENV, tmsgs[i], "\n");
	file_write(t->path, t->mb.file.p, t->mb.file.len, 0600);
	cr_assert_eq(maildrop_open(&t->md, t->path), MD_OK);
	cr_assert_eq(t->md.count, 3);
	t->d = dialog_new(5);
	return t;
}

static void
expect_message(struct dialog *d, const char *msg, size_t len, uint64_t size)
{
	struct buf body = { 0 }, exp = { 0 };

	multiline(d, &body);
	ref_crlf((const unsigned char *)msg, len, &exp);
	assert_bytes(body.p, body.len, exp.p, exp.len, "RETR");
	cr_assert_eq(body.len, size, "sent %zu octets, LIST says %llu",
	    body.len, (unsigned long long)size);
	buf_free(&body);
	buf_free(&exp);
}

Test(transaction, commands, .timeout = 30)
{
	struct txn *t;
	struct dialog *d;
	char exp[256], uid[POP3D_UIDL_MAX + 1];
	uint64_t s1, s2, s3;
	size_t i;

	t = txn_new();
	d = t->d;
	s1 = t->mb.m[0].size;
	s2 = t->mb.m[1].size;
	s3 = t->mb.m[2].size;
	client(d, "STAT\r\nLIST\r\nLIST 2\r\nLIST 4\r\nLIST 0\r\n"
	    "RETR 1\r\nretr 3\r\nTOP 2 0\r\nTOP 2 1\r\nUIDL\r\nUIDL 3\r\n"
	    "DELE 2\r\nDELE 2\r\nRETR 2\r\nLIST 2\r\nSTAT\r\nLIST\r\n"
	    "RSET\r\nSTAT\r\nNOOP\r\nUSER u\r\nPASS p\r\nQUIT\r\n");
	cr_assert_eq(session_transaction(&d->s, &t->md), SESSION_QUIT);
	dialog_collect(d);

	snprintf(exp, sizeof(exp), "+OK 3 %llu",
	    (unsigned long long)(s1 + s2 + s3));
	expect_exact(d, exp);				/* STAT */
	expect_ok(d, "LIST");
	{
		struct buf body = { 0 };
		char l[256];

		multiline(d, &body);
		snprintf(l, sizeof(l), "1 %llu\r\n2 %llu\r\n3 %llu\r\n",
		    (unsigned long long)s1, (unsigned long long)s2,
		    (unsigned long long)s3);
		assert_buf_str(&body, l, "LIST");
		buf_free(&body);
	}
	snprintf(exp, sizeof(exp), "+OK 2 %llu", (unsigned long long)s2);
	expect_exact(d, exp);				/* LIST 2 */
	expect_err(d, "LIST 4");
	expect_err(d, "LIST 0");
	expect_ok(d, "RETR 1");
	expect_message(d, tmsgs[0], strlen(tmsgs[0]), s1);
	expect_ok(d, "retr 3");
	expect_message(d, tmsgs[2], strlen(tmsgs[2]), s3);
	expect_ok(d, "TOP 2 0");
	expect_message(d, tmsgs[1], (size_t)t->mb.m[1].hdrlen,
	    ref_octets((const unsigned char *)tmsgs[1],
	    (size_t)t->mb.m[1].hdrlen));
	expect_ok(d, "TOP 2 1");
	expect_message(d, tmsgs[1], (size_t)t->mb.m[1].hdrlen + 8,
	    ref_octets((const unsigned char *)tmsgs[1],
	    (size_t)t->mb.m[1].hdrlen + 8));
	expect_ok(d, "UIDL");
	{
		struct buf body = { 0 }, l = { 0 };

		multiline(d, &body);
		for (i = 0; i < 3; i++) {
			maildrop_uidl(&t->md, i, uid);
			snprintf(exp, sizeof(exp), "%zu %s\r\n", i + 1, uid);
			buf_adds(&l, exp);
		}
		assert_bytes(body.p, body.len, l.p, l.len, "UIDL");
		buf_free(&body);
		buf_free(&l);
	}
	maildrop_uidl(&t->md, 2, uid);
	snprintf(exp, sizeof(exp), "+OK 3 %s", uid);
	expect_exact(d, exp);				/* UIDL 3 */
	expect_ok(d, "DELE 2");
	expect_err(d, "DELE 2 again");
	expect_err(d, "RETR 2 deleted");
	expect_err(d, "LIST 2 deleted");
	snprintf(exp, sizeof(exp), "+OK 2 %llu",
	    (unsigned long long)(s1 + s3));
	expect_exact(d, exp);				/* STAT */
	expect_ok(d, "LIST");
	{
		struct buf body = { 0 };
		char l[256];

		multiline(d, &body);
		snprintf(l, sizeof(l), "1 %llu\r\n3 %llu\r\n",
		    (unsigned long long)s1, (unsigned long long)s3);
		assert_buf_str(&body, l, "LIST after DELE");
		buf_free(&body);
	}
	expect_ok(d, "RSET");
	snprintf(exp, sizeof(exp), "+OK 3 %llu",
	    (unsigned long long)(s1 + s2 + s3));
	expect_exact(d, exp);			/* STAT after RSET */
	expect_ok(d, "NOOP");
	expect_err(d, "USER in TRANSACTION");
	expect_err(d, "PASS in TRANSACTION");
	expect_ok(d, "QUIT");
	expect_end(d);
}

Test(transaction, quit_applies_deletions, .timeout = 30)
{
	struct txn *t;
	struct buf file = { 0 }, exp = { 0 };

	t = txn_new();
	client(t->d, "DELE 1\r\nDELE 3\r\nQUIT\r\n");
	cr_assert_eq(session_transaction(&t->d->s, &t->md), SESSION_QUIT);
	maildrop_close(&t->md);
	dialog_collect(t->d);
	expect_ok(t->d, "DELE 1");
	expect_ok(t->d, "DELE 3");
	expect_ok(t->d, "QUIT");
	expect_end(t->d);
	file_read(t->path, &file);
	buf_add(&exp, t->mb.file.p + t->mb.m[1].off,
	    t->mb.m[1].chunk_end - t->mb.m[1].off);
	assert_bytes(file.p, file.len, exp.p, exp.len, "mbox after QUIT");
	buf_free(&file);
	buf_free(&exp);
}

/* RFC 1939 §6: without QUIT there is no UPDATE. */
Test(transaction, eof_applies_nothing, .timeout = 30)
{
	struct txn *t;
	struct buf file = { 0 };

	t = txn_new();
	client(t->d, "DELE 1\r\nDELE 2\r\n");
	client_eof(t->d);
	cr_assert_eq(session_transaction(&t->d->s, &t->md), SESSION_GONE);
	maildrop_close(&t->md);
	file_read(t->path, &file);
	assert_bytes(file.p, file.len, t->mb.file.p, t->mb.file.len,
	    "mbox after EOF");
	buf_free(&file);
}

Test(transaction, timeout_applies_nothing, .timeout = 30)
{
	struct txn *t;
	struct buf file = { 0 };

	t = txn_new();
	io_init(t->d->io, t->d->sv[0], t->d->sv[0], 1);
	client(t->d, "DELE 1\r\n");
	cr_assert_eq(session_transaction(&t->d->s, &t->md), SESSION_GONE);
	maildrop_close(&t->md);
	file_read(t->path, &file);
	assert_bytes(file.p, file.len, t->mb.file.p, t->mb.file.len,
	    "mbox after timeout");
	buf_free(&file);
}

Test(transaction, bad_numbers, .timeout = 30)
{
	static const char *const cmds[] = {
		"RETR 0", "RETR 4", "RETR", "RETR x", "RETR -1", "RETR +1",
		"RETR 1 2", "RETR 18446744073709551617", "DELE 0", "DELE 4",
		"LIST 99999999999999999999", "TOP 1", "TOP 1 -1", "TOP 0 1",
		"TOP 1 x", "UIDL 4", "STAT 1", "NOOP 1"
	};
	struct txn *t;
	size_t i;

	t = txn_new();
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		client(t->d, cmds[i]);
		client(t->d, "\r\n");
	}
	client(t->d, "QUIT\r\n");
	cr_assert_eq(session_transaction(&t->d->s, &t->md), SESSION_QUIT);
	dialog_collect(t->d);
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		expect_err(t->d, cmds[i]);
	expect_ok(t->d, "QUIT");
	expect_end(t->d);
}
