/*
 * session.c: the POP3 dialogue (RFC 1939, RFC 2449).
 *
 * Every line from the client is hostile: it arrives bounded and NUL-free
 * from io.c, and here its keyword is looked up in one table that says in
 * which states the command is valid and how its arguments are parsed,
 * before any handler sees it.  Credentials go to a verify callback (the
 * seam for privilege separation); the maildrop is reached only through the
 * maildrop interface.  Runs as an unprivileged user: before login, the
 * pre-login user (-u) in its jail, or the user pop3d started as when that
 * is not root; afterwards, the mail user.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "pop3d.h"

enum outcome {
	OUT_CONTINUE,		/* read the next command */
	OUT_LOGIN,		/* credentials accepted */
	OUT_QUIT,		/* the session is over, cleanly */
	OUT_FAIL		/* the session is over, badly */
};

/* How a command's arguments are checked before its handler runs. */
enum argrule {
	ARG_NONE,		/* no argument */
	ARG_NAME,		/* one word (USER) */
	ARG_REST,		/* the rest of the line, may hold spaces (PASS) */
	ARG_MSG,		/* one message number */
	ARG_OPTMSG,		/* an optional message number */
	ARG_MSG_LINES,		/* a message number and a line count (TOP) */
	ARG_TWO			/* two words (APOP) */
};

struct cmd {
	const char	*name;
	unsigned	 states;
	enum argrule	 rule;
	enum outcome	(*fn)(struct session *, const char *arg,
			    uint64_t n, uint64_t k);
};

#define ERR_NOSUCH	"-ERR no such message"
#define ERR_DELETED	"-ERR message %llu already deleted"

static enum outcome cmd_capa(struct session *, const char *, uint64_t,
    uint64_t);
static enum outcome cmd_user(struct session *, const char *, uint64_t,
    uint64_t);
static enum outcome cmd_pass(struct session *, const char *, uint64_t,
    uint64_t);
static enum outcome cmd_quit(struct session *, const char *, uint64_t,
    uint64_t);
static enum outcome cmd_apop(struct session *, const char *, uint64_t,
    uint64_t);
static enum outcome cmd_auth(struct session *, const char *, uint64_t,
    uint64_t);
static enum outcome cmd_stat(struct session *, const char *, uint64_t,
    uint64_t);
static enum outcome cmd_list(struct session *, const char *, uint64_t,
    uint64_t);
static enum outcome cmd_retr(struct session *, const char *, uint64_t,
    uint64_t);
static enum outcome cmd_dele(struct session *, const char *, uint64_t,
    uint64_t);
static enum outcome cmd_noop(struct session *, const char *, uint64_t,
    uint64_t);
static enum outcome cmd_rset(struct session *, const char *, uint64_t,
    uint64_t);
static enum outcome cmd_top(struct session *, const char *, uint64_t,
    uint64_t);
static enum outcome cmd_uidl(struct session *, const char *, uint64_t,
    uint64_t);

static const struct cmd cmds[] = {
	{ "CAPA", ST_AUTH | ST_TRANS,	ARG_NONE,	cmd_capa },
	{ "USER", ST_AUTH,		ARG_NAME,	cmd_user },
	{ "PASS", ST_AUTH,		ARG_REST,	cmd_pass },
	{ "APOP", ST_AUTH,		ARG_TWO,	cmd_apop },
	{ "AUTH", ST_AUTH,		ARG_REST,	cmd_auth },
	{ "QUIT", ST_AUTH | ST_TRANS,	ARG_NONE,	cmd_quit },
	{ "STAT", ST_TRANS,		ARG_NONE,	cmd_stat },
	{ "LIST", ST_TRANS,		ARG_OPTMSG,	cmd_list },
	{ "RETR", ST_TRANS,		ARG_MSG,	cmd_retr },
	{ "DELE", ST_TRANS,		ARG_MSG,	cmd_dele },
	{ "NOOP", ST_TRANS,		ARG_NONE,	cmd_noop },
	{ "RSET", ST_TRANS,		ARG_NONE,	cmd_rset },
	{ "TOP",  ST_TRANS,		ARG_MSG_LINES,	cmd_top },
	{ "UIDL", ST_TRANS,		ARG_OPTMSG,	cmd_uidl },
};

int
session_number(const char *s, uint64_t *n)
{
	uint64_t v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*n = v;
	return 0;
}

void
session_init(struct session *s, struct io *io, const struct config *cfg,
    session_verify_fn verify, void *ctx)
{
	memset(s, 0, sizeof(*s));
	s->io = io;
	s->cfg = cfg;
	s->state = ST_AUTH;
	s->verify = verify;
	s->verify_ctx = ctx;
}

void
session_greet(struct session *s)
{
	io_reply(s->io, "+OK %s POP3 server ready%s%s",
	    s->cfg->hostname != NULL ? s->cfg->hostname : "pop3d",
	    s->cfg->apop ? " " : "", s->cfg->apop ? s->cfg->stamp : "");
}

/*
 * Looks a message number up: 1..count and not deleted.  Answers the
 * client itself when the number does not name a message.
 */
static struct msg *
lookup(struct session *s, uint64_t n)
{
	struct maildrop *md = s->md;

	if (n < 1 || n > md->count) {
		io_reply(s->io, ERR_NOSUCH);
		return NULL;
	}
	if (md->msgs[n - 1].flags & MSG_DELETED) {
		io_reply(s->io, ERR_DELETED, (unsigned long long)n);
		return NULL;
	}
	return &md->msgs[n - 1];
}

static enum outcome
cmd_capa(struct session *s, const char *arg, uint64_t n, uint64_t k)
{
	(void)arg, (void)n, (void)k;
	/*
	 * RFC 2449 §5: advertise exactly what works, and what works before
	 * login in both states (so SASL too, though AUTH is refused after).
	 */
	io_reply(s->io, "+OK Capability list follows");
	io_reply(s->io, "TOP");
	io_reply(s->io, "UIDL");
	io_reply(s->io, "USER");
	io_reply(s->io, "RESP-CODES");
	io_reply(s->io, "AUTH-RESP-CODE");
	io_reply(s->io, "PIPELINING");
	io_reply(s->io, "SASL PLAIN");	/* RFC 5034 §5 */
	io_reply(s->io, "IMPLEMENTATION pop3d-%s", POP3D_VERSION);
	io_reply(s->io, ".");
	return OUT_CONTINUE;
}

static enum outcome
cmd_user(struct session *s, const char *arg, uint64_t n, uint64_t k)
{
	(void)n, (void)k;
	/*
	 * The answer is the same whether or not the user exists: the
	 * verdict comes at PASS, so USER never reveals an account.
	 */
	if (!auth_valid_name(arg)) {
		io_reply(s->io, "-ERR [AUTH] invalid user name");
		return OUT_CONTINUE;
	}
	strlcpy(s->user, arg, sizeof(s->user));
	io_reply(s->io, "+OK send PASS");
	return OUT_CONTINUE;
}

/*
 * A failed login: logged with its reason (never the secret), answered
 * after the delay with [AUTH] (RFC 3206 §4), and the connection closed
 * after too many.
 */
static enum outcome
failed(struct session *s, const char *user, const char *method,
    const char *why)
{
	char q[LOG_VALUE_MAX(POP3D_MAX_USER)];

	s->fails++;
	log_msg(LOG_NOTICE, "login failed: user=%s method=%s reason=\"%s\" "
	    "failures=%d", log_value(q, sizeof(q), user), method, why,
	    s->fails);
	/*
	 * The delay comes before the answer so that a client cannot
	 * pipeline its guesses past it.  It runs to a deadline counted from
	 * the command's arrival, not from the end of the check: every
	 * failure is answered at the same moment, whatever crypt cost (a
	 * database that mixes yescrypt and sha512crypt hashes cannot make an
	 * unknown user cost exactly what each known one does).
	 */
	if (s->cfg->auth_delay > 0) {
		struct timespec now, left;
		int64_t ns;

		(void)io_flush(s->io);
		clock_gettime(CLOCK_MONOTONIC, &now);
		ns = (int64_t)s->cfg->auth_delay * 1000000000 -
		    ((int64_t)(now.tv_sec - s->cmd_start.tv_sec) * 1000000000 +
		    (now.tv_nsec - s->cmd_start.tv_nsec));
		if (ns > 0) {
			left.tv_sec = (time_t)(ns / 1000000000);
			left.tv_nsec = (long)(ns % 1000000000);
			while (nanosleep(&left, &left) == -1 && errno == EINTR)
				;
		}
	}
	if (s->fails >= s->cfg->max_fails) {
		io_reply(s->io, "-ERR [AUTH] too many failures, goodbye");
		log_msg(LOG_NOTICE, "too many failed logins, disconnecting");
		return OUT_FAIL;
	}
	io_reply(s->io, "-ERR [AUTH] invalid user name or password");
	return OUT_CONTINUE;
}

static const char *
method_name(uint32_t m)
{
	return m == CRED_APOP ? "APOP" : m == CRED_PLAIN ? "AUTH-PLAIN" :
	    "USER";
}

/*
 * Hands a credential to the verifier and answers a failure.  The record
 * is wiped here, whatever the outcome.
 */
static enum outcome
login(struct session *s, struct cred *c)
{
	enum auth_result r;
	char q[LOG_VALUE_MAX(POP3D_MAX_USER)];

	/*
	 * The answers to commands pipelined before this one leave now, not
	 * after the check: held until then, "+OK send PASS" arrived exactly
	 * when crypt was done, and a failure's delay hid nothing (found in
	 * review).
	 */
	(void)io_flush(s->io);
	r = s->verify(s->verify_ctx, c, &s->acct);
	explicit_bzero(c->secret, sizeof(c->secret));
	if (r == AUTH_OK) {
		log_msg(LOG_INFO, "login: user=%s method=%s",
		    log_value(q, sizeof(q), c->user), method_name(c->method));
		return OUT_LOGIN;
	}
	if (r == AUTH_TEMP) {
		log_msg(LOG_WARNING, "login: user=%s method=%s: user database "
		    "unavailable", log_value(q, sizeof(q), c->user),
		    method_name(c->method));
		io_reply(s->io, "-ERR [SYS/TEMP] cannot check credentials now");
		return OUT_CONTINUE;
	}
	return failed(s, c->user, method_name(c->method), "bad credentials");
}

static enum outcome
cmd_pass(struct session *s, const char *arg, uint64_t n, uint64_t k)
{
	struct cred c;

	(void)n, (void)k;
	if (s->user[0] == '\0') {
		/* RFC 1939 §7: PASS only right after a successful USER. */
		io_reply(s->io, "-ERR send USER first");
		return OUT_CONTINUE;
	}
	memset(&c, 0, sizeof(c));
	c.method = CRED_USER;
	strlcpy(c.user, s->user, sizeof(c.user));
	s->user[0] = '\0';
	/* A command line cannot carry more than the record holds. */
	_Static_assert(POP3D_MAX_LINE <= POP3D_MAX_SECRET + 1,
	    "a PASS argument always fits struct cred");
	strlcpy(c.secret, arg, sizeof(c.secret));
	return login(s, &c);
}

/* RFC 1939 §7: APOP name digest, only when the greeting offered it. */
static enum outcome
cmd_apop(struct session *s, const char *arg, uint64_t n, uint64_t k)
{
	struct cred c;
	const char *digest = arg + strlen(arg) + 1;	/* dispatch split it */
	size_t i;

	(void)n, (void)k;
	if (!s->cfg->apop) {
		io_reply(s->io, "-ERR APOP is not offered here");
		return OUT_CONTINUE;
	}
	if (!auth_valid_name(arg))
		return failed(s, "-", "APOP", "invalid user name");
	for (i = 0; digest[i] != '\0'; i++)
		if (!((digest[i] >= '0' && digest[i] <= '9') ||
		    (digest[i] >= 'a' && digest[i] <= 'f')))
			break;
	if (i != 32 || digest[i] != '\0') {
		io_reply(s->io, "-ERR the digest is 32 lowercase hex digits");
		return OUT_CONTINUE;
	}
	memset(&c, 0, sizeof(c));
	c.method = CRED_APOP;
	strlcpy(c.user, arg, sizeof(c.user));
	strlcpy(c.secret, digest, sizeof(c.secret));
	return login(s, &c);
}

/*
 * RFC 1939 §3: the idle timer ran out; the session ends with no UPDATE,
 * and "the server should close the TCP connection without removing any
 * messages or sending any response to the client": a line sent now would
 * be read as the answer to a command the client may be sending at this
 * very moment (RFC 2449 §6.6 has it match answers to commands in order).
 * Nothing is queued: the reader flushed before it waited.
 */
static void
autologout(void)
{
	log_msg(LOG_INFO, "idle timeout");
}

/*
 * RFC 5034 with RFC 4616 PLAIN: the response is base64 of
 * authzid NUL authcid NUL password; an authzid other than the authcid is
 * refused (no proxy logins).
 */
static enum outcome
cmd_auth(struct session *s, const char *arg, uint64_t n, uint64_t k)
{
	char line[POP3D_MAX_SASL + 1];
	unsigned char raw[POP3D_MAX_SASL];
	const char *resp;
	const unsigned char *authcid, *pass, *end;
	struct cred c;
	size_t len;
	int rawlen, initial = 1, named;

	(void)n, (void)k;
	resp = strchr(arg, ' ');
	len = resp != NULL ? (size_t)(resp - arg) : strlen(arg);
	if (len != 5 || !keyword_eq(arg, "PLAIN", 5)) {
		io_reply(s->io, "-ERR unsupported SASL mechanism (CAPA lists "
		    "them)");
		return OUT_CONTINUE;
	}
	if (resp != NULL) {
		resp++;
		if (*resp == '\0' || strchr(resp, ' ') != NULL) {
			io_reply(s->io, "-ERR bad initial response");
			return OUT_CONTINUE;
		}
	} else {
		/* No initial response: an empty challenge (RFC 5034 §4). */
		io_reply(s->io, "+ ");
		switch (io_readline_max(s->io, line, POP3D_MAX_SASL, &len)) {
		case IO_LINE:
			/*
			 * The credential arrives now, and failed()'s delay
			 * counts from here.  Counted from the AUTH line, a
			 * client that let the delay pass before it answered
			 * the challenge had its failure answered at once,
			 * after exactly the time crypt took: an unknown user
			 * told from a known one (found in review).
			 */
			clock_gettime(CLOCK_MONOTONIC, &s->cmd_start);
			break;
		case IO_TOOLONG:
			io_reply(s->io, "-ERR SASL response too long");
			return OUT_CONTINUE;
		case IO_BADBYTE:
			io_reply(s->io, "-ERR NUL or bare CR in SASL response");
			return OUT_CONTINUE;
		case IO_TIMEOUT:
			autologout();
			return OUT_FAIL;
		case IO_ERROR:
			if (s->io->err == 0)
				log_msg(LOG_INFO, "connection read: %s",
				    strerror(errno));
			return OUT_FAIL;	/* a write error: loop logs it */
		default:
			return OUT_FAIL;
		}
		resp = line;
		initial = 0;
	}
	if (strcmp(resp, "*") == 0) {
		io_reply(s->io, "-ERR authentication cancelled");
		explicit_bzero(line, sizeof(line));
		return OUT_CONTINUE;
	}
	/*
	 * "=" is an empty initial response (RFC 5034 §4); after the
	 * challenge an empty response is an empty line, and "=" is no
	 * base64.
	 */
	rawlen = initial && strcmp(resp, "=") == 0 ? 0 :
	    auth_base64(resp, strlen(resp), raw, sizeof(raw));
	explicit_bzero(line, sizeof(line));
	if (rawlen < 0) {
		io_reply(s->io, "-ERR invalid base64 in SASL response");
		return OUT_CONTINUE;
	}
	end = raw + rawlen;
	authcid = memchr(raw, '\0', (size_t)rawlen);
	pass = authcid != NULL ? memchr(authcid + 1, '\0',
	    (size_t)(end - authcid - 1)) : NULL;
	memset(&c, 0, sizeof(c));
	c.method = CRED_PLAIN;
	if (authcid == NULL || pass == NULL ||
	    memchr(pass + 1, '\0', (size_t)(end - pass - 1)) != NULL ||
	    (size_t)(pass - authcid - 1) >= sizeof(c.user) ||
	    (size_t)(end - pass - 1) >= sizeof(c.secret)) {
		explicit_bzero(raw, sizeof(raw));
		return failed(s, "-", "AUTH-PLAIN", "malformed PLAIN message");
	}
	memcpy(c.user, authcid + 1, (size_t)(pass - authcid - 1));
	memcpy(c.secret, pass + 1, (size_t)(end - pass - 1));
	named = auth_valid_name(c.user);
	if (!named || (authcid != raw &&
	    ((size_t)(authcid - raw) != strlen(c.user) ||
	    memcmp(raw, c.user, strlen(c.user)) != 0))) {
		explicit_bzero(raw, sizeof(raw));
		explicit_bzero(&c, sizeof(c));
		return failed(s, "-", "AUTH-PLAIN", named ?
		    "authorization identity differs from the user" :
		    "invalid user name");
	}
	explicit_bzero(raw, sizeof(raw));
	return login(s, &c);
}

static enum outcome
cmd_quit(struct session *s, const char *arg, uint64_t n, uint64_t k)
{
	enum md_status r;
	size_t left;
	uint64_t octets;

	(void)arg, (void)n, (void)k;
	if (s->state == ST_AUTH) {
		io_reply(s->io, "+OK bye");
		return OUT_QUIT;
	}
	/* RFC 1939 §6: the UPDATE state. */
	r = maildrop_update(s->md);
	if (r != MD_OK) {
		s->update_failed = 1;
		/*
		 * mbox: nothing changed, or the journal completes it at the
		 * next login; Maildir: some unlinks may be done.  Either way
		 * the client must look again.
		 */
		io_reply(s->io, "-ERR [%s] deletions could not be completed; "
		    "log in again to see the maildrop",
		    r == MD_PERM ? "SYS/PERM" : "SYS/TEMP");
		return OUT_FAIL;
	}
	maildrop_stat(s->md, &left, &octets);
	if (left == 0)
		io_reply(s->io, "+OK bye (maildrop empty)");
	else
		io_reply(s->io, "+OK bye (%zu message%s left)", left,
		    left == 1 ? "" : "s");
	return OUT_QUIT;
}

static enum outcome
cmd_stat(struct session *s, const char *arg, uint64_t n, uint64_t k)
{
	size_t count;
	uint64_t octets;

	(void)arg, (void)n, (void)k;
	maildrop_stat(s->md, &count, &octets);
	/* RFC 1939 §5: exactly "+OK nn mm". */
	io_reply(s->io, "+OK %zu %llu", count, (unsigned long long)octets);
	return OUT_CONTINUE;
}

static enum outcome
cmd_list(struct session *s, const char *arg, uint64_t n, uint64_t k)
{
	const struct msg *m;
	size_t count, i;
	uint64_t octets;

	(void)k;
	if (arg != NULL) {
		if ((m = lookup(s, n)) != NULL)
			io_reply(s->io, "+OK %llu %llu", (unsigned long long)n,
			    (unsigned long long)m->size);
		return OUT_CONTINUE;
	}
	maildrop_stat(s->md, &count, &octets);
	io_reply(s->io, "+OK %zu messages (%llu octets)", count,
	    (unsigned long long)octets);
	for (i = 0; i < s->md->count; i++) {
		m = &s->md->msgs[i];
		if (!(m->flags & MSG_DELETED))
			io_reply(s->io, "%zu %llu", i + 1,
			    (unsigned long long)m->size);
	}
	io_reply(s->io, ".");
	return OUT_CONTINUE;
}

static enum outcome
send_msg(struct session *s, uint64_t n, long long lines)
{
	struct msg *m;

	if ((m = lookup(s, n)) == NULL)
		return OUT_CONTINUE;
	if (maildrop_check(s->md, (size_t)(n - 1), lines) != MD_OK) {
		io_reply(s->io, "-ERR [SYS/TEMP] maildrop changed by another "
		    "program; log in again");
		return OUT_CONTINUE;
	}
	if (lines < 0)
		io_reply(s->io, "+OK %llu octets",
		    (unsigned long long)m->size);
	else
		io_reply(s->io, "+OK top of message follows");
	switch (maildrop_send(s->md, s->io, (size_t)(n - 1), lines)) {
	case MD_OK:
		break;
	default:
		/*
		 * The +OK has gone out and part of the message may have
		 * too: the only honest end is to close the connection
		 * (RFC 1939 gives no way to abort a multi-line response).
		 */
		return OUT_FAIL;
	}
	/* A client gone before the end got no message: not retrieved. */
	if (s->io->err != 0)
		return OUT_FAIL;
	if (lines < 0 && !(m->flags & MSG_RETRIEVED)) {
		m->flags |= MSG_RETRIEVED;
		s->md->nretr++;
		/* Sizes from names (,W=) may be huge: no wrap, as STAT. */
		s->md->bretr = m->size > UINT64_MAX - s->md->bretr ?
		    UINT64_MAX : s->md->bretr + m->size;
	}
	return OUT_CONTINUE;
}

static enum outcome
cmd_retr(struct session *s, const char *arg, uint64_t n, uint64_t k)
{
	(void)arg, (void)k;
	return send_msg(s, n, -1);
}

static enum outcome
cmd_top(struct session *s, const char *arg, uint64_t n, uint64_t k)
{
	(void)arg;
	if (k > (uint64_t)LLONG_MAX)
		k = (uint64_t)LLONG_MAX;
	return send_msg(s, n, (long long)k);
}

static enum outcome
cmd_dele(struct session *s, const char *arg, uint64_t n, uint64_t k)
{
	struct msg *m;

	(void)arg, (void)k;
	if ((m = lookup(s, n)) == NULL)
		return OUT_CONTINUE;
	m->flags |= MSG_DELETED;
	io_reply(s->io, "+OK message %llu deleted", (unsigned long long)n);
	return OUT_CONTINUE;
}

static enum outcome
cmd_noop(struct session *s, const char *arg, uint64_t n, uint64_t k)
{
	(void)arg, (void)n, (void)k;
	io_reply(s->io, "+OK");
	return OUT_CONTINUE;
}

static enum outcome
cmd_rset(struct session *s, const char *arg, uint64_t n, uint64_t k)
{
	size_t count, i;
	uint64_t octets;

	(void)arg, (void)n, (void)k;
	for (i = 0; i < s->md->count; i++)
		s->md->msgs[i].flags &= ~(uint32_t)MSG_DELETED;
	maildrop_stat(s->md, &count, &octets);
	io_reply(s->io, "+OK maildrop has %zu messages (%llu octets)", count,
	    (unsigned long long)octets);
	return OUT_CONTINUE;
}

static enum outcome
cmd_uidl(struct session *s, const char *arg, uint64_t n, uint64_t k)
{
	char uid[POP3D_UIDL_MAX + 1];
	size_t i;

	(void)k;
	if (arg != NULL) {
		if (lookup(s, n) != NULL) {
			maildrop_uidl(s->md, (size_t)(n - 1), uid);
			io_reply(s->io, "+OK %llu %s", (unsigned long long)n,
			    uid);
		}
		return OUT_CONTINUE;
	}
	io_reply(s->io, "+OK unique-id listing follows");
	for (i = 0; i < s->md->count; i++) {
		if (s->md->msgs[i].flags & MSG_DELETED)
			continue;
		maildrop_uidl(s->md, i, uid);
		io_reply(s->io, "%zu %s", i + 1, uid);
	}
	io_reply(s->io, ".");
	return OUT_CONTINUE;
}

/*
 * Splits line into keyword and arguments, checks them against the
 * command's rule and runs the handler.  RFC 1939 §3: keywords are
 * case-insensitive, separated from arguments by single spaces.  RFC 1939
 * §3's 40 characters per argument is gone with RFC 2449 §4's longer
 * lines: the line bounds an argument, auth_valid_name a name.
 */
static enum outcome
dispatch(struct session *s, char *line)
{
	const struct cmd *c = NULL;
	char *arg, *arg2 = NULL;
	uint64_t n = 0, k = 0;
	size_t i, len;

	if ((arg = strchr(line, ' ')) != NULL)
		*arg++ = '\0';
	len = strlen(line);
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strlen(cmds[i].name) == len &&
		    keyword_eq(line, cmds[i].name, len)) {
			c = &cmds[i];
			break;
		}
	/* RFC 1939 §7: anything but PASS after USER cancels the USER. */
	if (c == NULL || c->fn != cmd_pass)
		s->user[0] = '\0';
	if (c == NULL) {
		io_reply(s->io, "-ERR unknown command");
		return OUT_CONTINUE;
	}
	if (!(c->states & s->state)) {
		io_reply(s->io, "-ERR %s not valid in this state", c->name);
		return OUT_CONTINUE;
	}
	if (c->rule != ARG_REST && arg != NULL &&
	    (arg2 = strchr(arg, ' ')) != NULL)
		*arg2++ = '\0';
	switch (c->rule) {
	case ARG_NONE:
		if (arg != NULL)
			goto bad;
		break;
	case ARG_NAME:
		if (arg == NULL || *arg == '\0' || arg2 != NULL)
			goto bad;
		break;
	case ARG_REST:
		if (arg == NULL || *arg == '\0')
			goto bad;
		break;
	case ARG_OPTMSG:
		if (arg == NULL)
			break;
		/* FALLTHROUGH */
	case ARG_MSG:
		if (arg == NULL || arg2 != NULL || session_number(arg, &n) == -1)
			goto bad;
		break;
	case ARG_TWO:
		if (arg == NULL || arg2 == NULL || *arg == '\0' ||
		    *arg2 == '\0' || strchr(arg2, ' ') != NULL)
			goto bad;
		break;
	case ARG_MSG_LINES:
		if (arg == NULL || arg2 == NULL || strchr(arg2, ' ') != NULL ||
		    session_number(arg, &n) == -1 ||
		    session_number(arg2, &k) == -1)
			goto bad;
		break;
	}
	return c->fn(s, arg, n, k);
bad:
	io_reply(s->io, "-ERR bad arguments: usage is %s%s", c->name,
	    c->rule == ARG_NONE ? "" : c->rule == ARG_NAME ? " name" :
	    c->rule == ARG_REST ? (c->fn == cmd_auth ? " mechanism [response]" :
	    " password") : c->rule == ARG_OPTMSG ? " [msg]" :
	    c->rule == ARG_MSG ? " msg" : c->rule == ARG_TWO ? " name digest" :
	    " msg lines");
	return OUT_CONTINUE;
}

/* Logs why output could not go; the session then ends, with no UPDATE. */
static void
log_write_error(const struct session *s)
{
	if (s->io->err == ETIMEDOUT)
		/* RFC 1939 §3: it took no output for the idle timeout. */
		log_msg(LOG_INFO, "idle timeout: the client reads nothing");
	else
		log_msg(LOG_INFO, "connection write: %s",
		    strerror(s->io->err));
}

/* Reads and runs commands until a handler ends the state. */
static enum outcome
loop(struct session *s)
{
	char line[POP3D_MAX_LINE + 1];
	size_t len;
	enum outcome o;

	for (;;) {
		switch (io_readline(s->io, line, &len)) {
		case IO_LINE:
			break;
		case IO_TOOLONG:
			s->user[0] = '\0';	/* a line, so no PASS: §7 */
			io_reply(s->io, "-ERR line too long");
			continue;
		case IO_BADBYTE:
			s->user[0] = '\0';
			io_reply(s->io, "-ERR NUL or bare CR in command");
			continue;
		case IO_TIMEOUT:
			autologout();
			return OUT_FAIL;
		case IO_EOF:
			return OUT_FAIL;
		case IO_ERROR:
			if (s->io->err != 0)
				log_write_error(s);	/* the flush before */
			else
				log_msg(LOG_INFO, "connection read: %s",
				    strerror(errno));
			return OUT_FAIL;
		}
		clock_gettime(CLOCK_MONOTONIC, &s->cmd_start);
		o = dispatch(s, line);
		explicit_bzero(line, sizeof(line));	/* may hold a password */
		if (s->io->err != 0) {
			log_write_error(s);
			/*
			 * A QUIT whose UPDATE is done stays a QUIT when only
			 * its answer could not go (the flush of a full buffer
			 * fails on it): the deletions are made.
			 */
			return o == OUT_QUIT ? OUT_QUIT : OUT_FAIL;
		}
		if (o != OUT_CONTINUE)
			return o;
	}
}

enum session_end
session_authorize(struct session *s)
{
	enum outcome o;

	s->state = ST_AUTH;
	o = loop(s);
	if (o == OUT_LOGIN)
		return SESSION_LOGIN;
	(void)io_flush(s->io);
	if (o == OUT_QUIT)
		return SESSION_QUIT;
	return s->fails >= s->cfg->max_fails ? SESSION_FAILED : SESSION_GONE;
}

enum session_end
session_transaction(struct session *s, struct maildrop *md)
{
	enum outcome o;

	s->state = ST_TRANS;
	s->md = md;
	o = loop(s);
	(void)io_flush(s->io);
	if (o == OUT_QUIT)
		return SESSION_QUIT;
	return s->update_failed ? SESSION_FAILED : SESSION_GONE;
}
