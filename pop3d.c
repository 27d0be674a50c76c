/*
 * pop3d.c: main.  Flags, fd hygiene, the switch to the mail user.
 *
 * Runs as root when inetd or systemd starts it that way, and then parses
 * no network input as root: before login session.c runs in a jailed,
 * unprivileged child (prelogin()), and the root parent reads only its
 * fixed-size records (privsep.c); after a login it drops to the uid and
 * gid of the account for good, before the maildrop is opened.  The
 * connection is fds 0 and 1.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <syslog.h>
#include <unistd.h>

#include "pop3d.h"

/*
 * 1 when fd 2 is the connection itself (inetd and xinetd give the socket
 * as fds 0, 1 and 2): a flag error must then not be written there, where
 * the client would read it as the greeting and the admin would never see
 * it.  Set before the flags are parsed.
 */
static int stderr_is_client;

static int
same_socket(int a, int b)
{
	struct stat sa, sb;

	return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 &&
	    S_ISSOCK(sa.st_mode) && sa.st_dev == sb.st_dev &&
	    sa.st_ino == sb.st_ino;
}

/* A bad flag: on stderr, or to syslog (LOG_MAIL) when stderr is the client. */
static void __attribute__((format(printf, 1, 2)))
flag_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (stderr_is_client) {
		openlog("pop3d", LOG_PID, LOG_MAIL);
		vsyslog(LOG_ERR, fmt, ap);
	} else {
		fputs("pop3d: ", stderr);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	}
	va_end(ap);
}

static void
usage(void)
{
	if (stderr_is_client)
		flag_error("bad command-line flags; see pop3d(8)");
	else
		fprintf(stderr, "usage: pop3d [-AeV] [-a failures] [-D delay] "
		    "[-E empty_dir] [-f users_file]\n"
		    "             [-m maildrop] [-n hostname] [-r mail_root] "
		    "[-t timeout]\n"
		    "             [-U min_uid] [-u prelogin_user]\n");
	exit(POP3D_EXIT_USAGE);
}

/* A flag's number: digits only, within [min, max]. */
static int
number(const char *s, int min, int max, const char *what)
{
	uint64_t n;

	if (session_number(s, &n) == -1 || n < (uint64_t)min ||
	    n > (uint64_t)max) {
		flag_error("%s must be a number from %d to %d", what, min,
		    max);
		exit(POP3D_EXIT_USAGE);
	}
	return (int)n;
}

/*
 * Whether s may be the host name of the greeting.  With APOP it ends the
 * timestamp, which RFC 1939 §7 makes a msg-id (RFC 822 §6.1:
 * "<" local-part "@" domain ">"), so it must be a domain: atoms (printable
 * ASCII but the specials ()<>@,;:\".[]) joined by single dots, or one
 * domain literal "[...]".  Clients check: fetchmail refuses to send APOP
 * after a timestamp that is no msg-id ("Invalid APOP timestamp"), which
 * an absolute name's trailing dot was enough to make.  At most
 * POP3D_MAX_HOST octets, so that the greeting, which carries the name
 * twice with APOP, fits RFC 1939's 512 octets.
 */
static int
host_ok(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > POP3D_MAX_HOST)
		return 0;
	if (s[0] == '[') {
		/* dtext, no quoted pairs, and no <> for clients to trip on */
		if (n < 2 || s[n - 1] != ']')
			return 0;
		for (i = 1; i < n - 1; i++)
			if ((unsigned char)s[i] <= 0x20 ||
			    (unsigned char)s[i] >= 0x7f ||
			    strchr("[]\\<>", s[i]) != NULL)
				return 0;
		return 1;
	}
	for (i = 0; i < n; i++) {
		if (s[i] == '.') {
			/* an atom on each side: no leading, trailing or ".." */
			if (i == 0 || i == n - 1 || s[i - 1] == '.')
				return 0;
		} else if ((unsigned char)s[i] <= 0x20 ||
		    (unsigned char)s[i] >= 0x7f ||
		    strchr("()<>@,;:\\\"[]", s[i]) != NULL)
			return 0;
	}
	return 1;
}

/* -n: a host name for the greeting (host_ok), or exit 64. */
static const char *
host_name(const char *s)
{
	if (!host_ok(s)) {
		flag_error("-n must be a domain of 1 to %d characters: RFC 822 "
		    "atoms joined by single dots, or one [literal]",
		    POP3D_MAX_HOST);
		exit(POP3D_EXIT_USAGE);
	}
	return s;
}

/* Makes sure fds 0-2 exist, and that stray writes to 2 reach no client. */
static void
fd_hygiene(int keep_stderr)
{
	int fd, p[2];

	closefrom(3);
	/* Under inetd fd 2 is the connection: never write there. */
	if (keep_stderr && fcntl(STDERR_FILENO, F_GETFD) != -1)
		return;
	if ((fd = open("/dev/null", O_RDWR)) == -1) {
		/*
		 * No /dev/null (a bare chroot or container).  Fd 2 must still
		 * be taken: left free, the next open got it, the mbox say,
		 * and -e's log lines (or libc's last words) were written
		 * into the mail (found in review).  A pipe whose read end is
		 * closed fails every write with EPIPE (SIGPIPE is ignored
		 * before anything is logged).
		 */
		if (pipe(p) == -1) {
			(void)close(STDERR_FILENO);
			return;
		}
		if (p[1] != STDERR_FILENO) {
			(void)dup2(p[1], STDERR_FILENO);	/* may drop p[0] */
			(void)close(p[1]);
		}
		if (p[0] != STDERR_FILENO)
			(void)close(p[0]);
		return;
	}
	(void)dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		(void)close(fd);
}

static void
log_peer(void)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "local";
	int port = 0;

	if (getpeername(STDIN_FILENO, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

			inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
			port = ntohs(sin->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

			/*
			 * A dual-stack listener (pop3d.socket's
			 * ListenStream=110) sees IPv4 peers as
			 * ::ffff:a.b.c.d: logged as the IPv4 address they
			 * are.
			 */
			if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
				inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12],
				    host, sizeof(host));
			else
				inet_ntop(AF_INET6, &s6->sin6_addr, host,
				    sizeof(host));
			port = ntohs(s6->sin6_port);
		}
	}
	else if (getenv("TCPREMOTEIP") != NULL) {
		/* tcpserver (UCSPI) says who it is when fd 0 cannot. */
		const char *p = getenv("TCPREMOTEPORT");

		strlcpy(host, getenv("TCPREMOTEIP"), sizeof(host));
		port = p != NULL ? atoi(p) : 0;
	}
	log_msg(LOG_INFO, "connect from %s port %d", host, port);
}

/*
 * 1 when every component of the absolute path dir is owned by root, looked
 * at with lstat (a symbolic link as its own owner's): then no user chose
 * where the path leads.  A path through a user's own directory (%h/...)
 * could lead anywhere at the user's choosing, to a directory of a group
 * the user is not in.
 */
static int
root_path(const char *dir)
{
	char p[PATH_MAX];
	struct stat st;
	size_t i, n = strlen(dir);

	if (dir[0] != '/' || n >= sizeof(p))
		return 0;
	memcpy(p, dir, n + 1);
	for (i = 1; i <= n; i++) {
		char c = p[i];

		if (c != '/' && c != '\0')
			continue;
		p[i] = '\0';
		if (lstat(p, &st) == -1 || st.st_uid != 0)
			return 0;
		p[i] = c;
	}
	return 1;
}

/*
 * Becomes the account's uid and gid for good, then proves that root
 * cannot come back.  Nothing to do when pop3d does not run as root (then
 * auth.c only accepted accounts of pop3d's own uid).
 */
static int
become(const struct account *a)
{
	gid_t groups[2];
	int ngroups = 1;
	struct stat st;
	char dir[sizeof(a->maildrop)], *slash;

	if (geteuid() != 0)
		return 0;
	if (a->uid == 0 || a->gid == 0) {
		log_msg(LOG_ERR, "refusing to serve %s as root", a->name);
		return -1;
	}
	groups[0] = a->gid;
	/*
	 * Debian's spool is root:mail 2775 and delivery agents make their
	 * dotlocks there through group mail; keeping that group (never root's)
	 * lets the session make its dotlock and journal beside the mbox too,
	 * as Dovecot's mail_privileged_group does.
	 */
	strlcpy(dir, a->maildrop, sizeof(dir));
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (root_path(dir) && stat(dir, &st) == 0 &&
		    S_ISDIR(st.st_mode) &&
		    (st.st_mode & S_IWGRP) && st.st_gid != 0 &&
		    st.st_gid != a->gid)
			groups[ngroups++] = st.st_gid;
	}
	if (setgroups((size_t)ngroups, groups) == -1 ||
	    setresgid(a->gid, a->gid, a->gid) == -1 ||
	    setresuid(a->uid, a->uid, a->uid) == -1) {
		log_msg(LOG_ERR, "switching to uid %lu gid %lu: %s",
		    (unsigned long)a->uid, (unsigned long)a->gid,
		    strerror(errno));
		return -1;
	}
	if (setuid(0) != -1 || geteuid() == 0 || getegid() == 0) {
		log_msg(LOG_ERR, "privileges could be regained; giving up");
		return -1;
	}
	return 0;
}

/*
 * The pre-login child's verifier: the credential goes up the pipe as one
 * fixed-size record, the verdict comes back.  The parent is gone if either
 * fails, and then so is this session.
 */
struct pipes {
	int	up;		/* child to parent */
	int	down;		/* parent to child */
};

static enum auth_result
verify_remote(void *ctx, const struct cred *c, struct account *acct)
{
	const struct pipes *p = ctx;
	uint32_t verdict;

	(void)acct;	/* the parent keeps the account */
	if (privsep_send(p->up, PRIV_CRED, c, sizeof(*c)) == -1 ||
	    privsep_recv(p->down, PRIV_VERDICT, &verdict, sizeof(verdict),
	    NULL) == -1) {
		log_msg(LOG_ERR, "pre-login: pipe to parent: %s",
		    strerror(errno));
		_exit(POP3D_EXIT_SYS);
	}
	return verdict == AUTH_OK ? AUTH_OK : verdict == AUTH_TEMP ?
	    AUTH_TEMP : AUTH_FAIL;
}

/*
 * The unprivileged user of the pre-login process.  Looked up in that
 * process, never in the parent: the name service modules getpwnam(3)
 * loads (libnss_systemd and what it pulls in, some 650 KiB) would
 * otherwise stay resident in the serving process for the whole session.
 */
static const struct passwd *
prelogin_user(const struct config *cfg)
{
	const struct passwd *p;

	if (cfg->prelogin_user != NULL)
		p = getpwnam(cfg->prelogin_user);
	else if ((p = getpwnam("pop3d")) == NULL)
		p = getpwnam("nobody");
	if (p == NULL || p->pw_uid == 0) {
		log_msg(LOG_ERR, "no unprivileged user %s for the pre-login "
		    "process", cfg->prelogin_user != NULL ?
		    cfg->prelogin_user : "pop3d or nobody");
		_exit(POP3D_EXIT_CONFIG);
	}
	return p;
}

/*
 * The pre-login process: jailed in an empty directory as an unprivileged
 * user (when pop3d runs as root), it speaks the AUTHORIZATION state with
 * the client and hands the parent one credential record at a time.  After
 * a login it passes on the bytes it read but did not use (pipelined
 * commands) and exits.
 */
static void
prelogin(const struct config *cfg, int jail, struct pipes *p)
{
	static struct io io;
	struct session s;
	enum session_end e;

	if (jail) {
		const struct passwd *pw = prelogin_user(cfg);
		gid_t g = pw->pw_gid;

		if (chroot(cfg->empty_dir) == -1 || chdir("/") == -1 ||
		    setgroups(1, &g) == -1 ||
		    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) == -1 ||
		    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1 ||
		    setuid(0) != -1 || geteuid() == 0) {
			log_msg(LOG_ERR, "pre-login: jail in %s as %s: %s",
			    cfg->empty_dir, pw->pw_name, strerror(errno));
			_exit(POP3D_EXIT_SYS);
		}
	}
	io_init(&io, STDIN_FILENO, STDOUT_FILENO, cfg->timeout);
	session_init(&s, &io, cfg, verify_remote, p);
	session_greet(&s);
	e = session_authorize(&s);
	if (e == SESSION_LOGIN) {
		(void)io_flush(&io);
		if (privsep_send(p->up, PRIV_HANDOFF, io.inbuf + io.inoff,
		    io.inlen - io.inoff) == -1) {
			log_msg(LOG_ERR, "pre-login: handoff: %s",
			    strerror(errno));
			_exit(POP3D_EXIT_SYS);
		}
		_exit(POP3D_EXIT_OK);
	}
	_exit(e == SESSION_QUIT ? POP3D_EXIT_OK : POP3D_EXIT_CLIENT);
}

/* The child's exit status, or a system failure. */
static int
reap(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) == -1)
		if (errno != EINTR)
			return POP3D_EXIT_SYS;
	return WIFEXITED(st) ? WEXITSTATUS(st) : POP3D_EXIT_SYS;
}

/*
 * Runs auth_check() in a child that exits right after, so that neither the
 * hashing's memory (16 MiB for yescrypt) nor anything it read (the shadow
 * entry, crypt's state) ever lives in the process that goes on to serve
 * the maildrop.  The verdict and the account come back over a pipe.
 */
static enum auth_result
check_apart(const struct config *cfg, const struct cred *c,
    struct account *acct)
{
	struct {
		uint32_t	verdict;
		struct account	acct;
	} r;
	enum auth_result verdict;
	int fd[2];
	pid_t pid;

	if (pipe2(fd, O_CLOEXEC) == -1 || (pid = fork()) == -1) {
		log_msg(LOG_ERR, "credential check: %s", strerror(errno));
		return AUTH_TEMP;
	}
	if (pid == 0) {
		(void)close(fd[0]);
		memset(&r, 0, sizeof(r));
		r.verdict = auth_check(cfg, c, &r.acct);
		_exit(privsep_send(fd[1], PRIV_VERDICT, &r, sizeof(r)) == -1 ?
		    POP3D_EXIT_SYS : POP3D_EXIT_OK);
	}
	(void)close(fd[1]);
	if (privsep_recv(fd[0], PRIV_VERDICT, &r, sizeof(r), NULL) == -1)
		r.verdict = AUTH_TEMP;
	(void)close(fd[0]);
	if (reap(pid) != POP3D_EXIT_OK)
		r.verdict = AUTH_TEMP;
	verdict = r.verdict == AUTH_OK || r.verdict == AUTH_FAIL ?
	    (enum auth_result)r.verdict : AUTH_TEMP;
	if (verdict == AUTH_OK)
		*acct = r.acct;
	explicit_bzero(&r, sizeof(r));
	return verdict;
}

/*
 * The parent's side of the login: checks each record the child sends
 * (auth.c), answers with a verdict, and after a good one takes over the
 * bytes the child read ahead.  Root reads only these framed records, never
 * the network.  1 after a login, with acct and the pending input in io; 0
 * when the session ended before one, with the exit status in *status.
 */
static int
authorize(const struct config *cfg, int jail,
    struct account *acct, struct io *io, int *status)
{
	struct pipes child, parent;
	int up[2], down[2], fails = 0;
	pid_t pid;

	if (pipe2(up, O_CLOEXEC) == -1 || pipe2(down, O_CLOEXEC) == -1) {
		log_msg(LOG_ERR, "pipe: %s", strerror(errno));
		*status = POP3D_EXIT_SYS;
		return 0;
	}
	if ((pid = fork()) == -1) {
		log_msg(LOG_ERR, "fork: %s", strerror(errno));
		*status = POP3D_EXIT_SYS;
		return 0;
	}
	if (pid == 0) {
		(void)close(up[0]);
		(void)close(down[1]);
		child.up = up[1];
		child.down = down[0];
		prelogin(cfg, jail, &child);
	}
	(void)close(up[1]);
	(void)close(down[0]);
	parent.up = up[0];
	parent.down = down[1];
	for (;;) {
		struct cred c;
		uint32_t verdict;

		if (privsep_recv(parent.up, PRIV_CRED, &c, sizeof(c), NULL) ==
		    -1) {
			(void)close(parent.up);
			(void)close(parent.down);
			*status = reap(pid);	/* QUIT, EOF, timeout, ... */
			return 0;
		}
		/*
		 * The child counts failures too and closes at the -a'th; this
		 * bound holds regardless.  A credential after that one is not
		 * checked at all: counted only once it failed, it was one
		 * guess more than -a allows, and a right one logged in (found
		 * in review).
		 */
		if (fails >= cfg->max_fails) {
			explicit_bzero(&c, sizeof(c));
			log_msg(LOG_ERR, "pre-login process exceeded %d "
			    "failures", cfg->max_fails);
			(void)kill(pid, SIGKILL);
			(void)reap(pid);
			*status = POP3D_EXIT_CLIENT;
			return 0;
		}
		c.user[sizeof(c.user) - 1] = '\0';
		c.secret[sizeof(c.secret) - 1] = '\0';
		if (!auth_valid_name(c.user) || c.method < CRED_USER ||
		    c.method > CRED_PLAIN)
			verdict = AUTH_FAIL;
		else
			verdict = check_apart(cfg, &c, acct);
		explicit_bzero(&c, sizeof(c));
		if (verdict == AUTH_FAIL)
			fails++;
		if (privsep_send(parent.down, PRIV_VERDICT, &verdict,
		    sizeof(verdict)) == -1)
			verdict = AUTH_FAIL;
		if (verdict != AUTH_OK)
			continue;
		/*
		 * Straight into the session's input buffer: a 16 KiB buffer of
		 * its own in this frame (whose pages -fstack-clash-protection
		 * probes) stayed resident for the whole session (HACKING.md,
		 * "Memory").
		 */
		io_init(io, STDIN_FILENO, STDOUT_FILENO, cfg->timeout);
		if (privsep_recv(parent.up, PRIV_HANDOFF, io->inbuf,
		    sizeof(io->inbuf), &io->inlen) == -1) {
			log_msg(LOG_ERR, "handoff from pre-login: %s",
			    strerror(errno));
			(void)reap(pid);
			*status = POP3D_EXIT_SYS;
			return 0;
		}
		(void)close(parent.up);
		(void)close(parent.down);
		if (reap(pid) != POP3D_EXIT_OK) {
			*status = POP3D_EXIT_SYS;
			return 0;
		}
		return 1;
	}
}

/*
 * The users file holds password hashes: one anybody may write is refused
 * (they could add themselves), one anybody may read is logged loudly.
 */
static void
check_users_file(const struct config *cfg)
{
	struct stat st;

	if (cfg->users_file == NULL)
		return;
	if (stat(cfg->users_file, &st) == -1) {
		log_msg(LOG_ERR, "users file %s: %s", cfg->users_file,
		    strerror(errno));
		return;	/* each login then answers [SYS/TEMP] */
	}
	if (!S_ISREG(st.st_mode))
		return;	/* not readable as a file: [SYS/TEMP] at each login */
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) ||
	    (geteuid() == 0 && st.st_uid != 0)) {
		log_msg(LOG_ERR, "users file %s is writable by others (mode "
		    "%03o, owner %lu); refusing to use it", cfg->users_file,
		    (unsigned)(st.st_mode & 0777), (unsigned long)st.st_uid);
		exit(POP3D_EXIT_CONFIG);
	}
	if (st.st_mode & S_IROTH)
		log_msg(LOG_WARNING, "users file %s is readable by everyone "
		    "(mode %03o): its password hashes can be cracked offline; "
		    "chmod 600 it", cfg->users_file,
		    (unsigned)(st.st_mode & 0777));
}

/*
 * The pre-login process's empty jail, checked by the parent (as root) so a
 * bad one stops pop3d before any greeting.  0 when pop3d is not root and
 * jails nothing.
 */
static int
prelogin_jail(const struct config *cfg)
{
	struct stat st;

	if (geteuid() != 0)
		return 0;
	if (mkdir(cfg->empty_dir, 0755) == -1 && errno != EEXIST) {
		log_msg(LOG_ERR, "%s: %s", cfg->empty_dir, strerror(errno));
		exit(POP3D_EXIT_CONFIG);
	}
	/* A jail the jailed user could write to would be no jail. */
	if (lstat(cfg->empty_dir, &st) == -1 || !S_ISDIR(st.st_mode) ||
	    st.st_uid != 0 || (st.st_mode & 022) != 0) {
		log_msg(LOG_ERR, "%s must be a directory owned by root and "
		    "writable by no one else", cfg->empty_dir);
		exit(POP3D_EXIT_CONFIG);
	}
	return 1;
}

/* RFC 1939 §7: a timestamp unique to this greeting, from real randomness. */
static void
make_stamp(struct config *cfg)
{
	unsigned char r[8];
	char hex[17];
	size_t i;

	arc4random_buf(r, sizeof(r));
	for (i = 0; i < sizeof(r); i++)
		snprintf(hex + 2 * i, 3, "%02x", r[i]);
	snprintf(cfg->stamp, sizeof(cfg->stamp), "<%ld.%lld.%s@%s>",
	    (long)getpid(), (long long)time(NULL), hex, cfg->hostname);
}

int
main(int argc, char *argv[])
{
	static struct io io;	/* large buffers: not on the stack */
	struct config cfg = {
		.maildrop = "/var/mail/%u",
		.timeout = POP3D_TIMEOUT,
		.auth_delay = POP3D_AUTH_DELAY,
		.max_fails = POP3D_MAX_AUTH_FAILS,
		.empty_dir = "/var/empty",
		.min_uid = POP3D_MIN_UID,
	};
	int jail;
	struct account acct;
	struct rlimit nocore = { 0, 0 };
	sigset_t nosigs;
	struct session s;
	struct maildrop md;
	char host[256];
	char qname[LOG_VALUE_MAX(POP3D_MAX_USER)], qpath[1024];
	const char *uname;
	enum md_status r;
	size_t n, kept;
	uint64_t octets;
	int c, status;

	stderr_is_client = same_socket(STDIN_FILENO, STDERR_FILENO);
	if (stderr_is_client)
		opterr = 0;	/* getopt's own complaint would go there too */
	while ((c = getopt(argc, argv, "Aa:D:E:ef:m:n:r:t:U:u:V")) != -1) {
		switch (c) {
		case 'A':
			cfg.apop = 1;
			break;
		case 'E':
			cfg.empty_dir = optarg;
			break;
		case 'r':
			cfg.mail_root = optarg;
			break;
		case 'U':
			cfg.min_uid = (unsigned long)number(optarg, 1,
			    INT32_MAX, "-U");
			break;
		case 'u':
			cfg.prelogin_user = optarg;
			break;
		case 'a':
			cfg.max_fails = number(optarg, 1, 100, "-a");
			break;
		case 'D':
			cfg.auth_delay = number(optarg, 0, 60, "-D");
			break;
		case 'e':
			cfg.log_stderr = 1;
			break;
		case 'f':
			cfg.users_file = optarg;
			break;
		case 'm':
			cfg.maildrop = optarg;
			break;
		case 'n':
			cfg.hostname = host_name(optarg);
			break;
		case 't':
			cfg.timeout = number(optarg, 1, 86400, "-t");
			break;
		case 'V':
			printf("pop3d %s\n", POP3D_VERSION);
			return POP3D_EXIT_OK;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	/* Before the first byte is read (STYLE.md, Privilege). */
	umask(077);
	fd_hygiene(cfg.log_stderr);
	(void)setrlimit(RLIMIT_CORE, &nocore);
	/*
	 * Nor a core dump by way of a core_pattern pipe, which ignores
	 * RLIMIT_CORE: the root parent and its password checks hold hashes
	 * and passwords.  Not dumpable also keeps processes of the same uid
	 * from ptrace and /proc/PID/mem.  Children inherit it, and the uid
	 * changes of the jail and the login leave it off.
	 */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	/*
	 * Ignored signals and the signal mask survive exec, so they are the
	 * super-server's until set here.  With SIGCHLD ignored the kernel
	 * reaps our children itself and waitpid() fails: every login was
	 * answered [SYS/TEMP] and a QUIT exited 2 (found in review).  A
	 * blocked SIGTERM would make a session deaf to systemctl stop.
	 */
	(void)signal(SIGCHLD, SIG_DFL);
	(void)sigemptyset(&nosigs);
	(void)sigprocmask(SIG_SETMASK, &nosigs, NULL);
	(void)signal(SIGPIPE, SIG_IGN);
	/* Over RLIMIT_FSIZE a write fails with EFBIG, and UPDATE backs out. */
	(void)signal(SIGXFSZ, SIG_IGN);
	(void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	log_init(cfg.log_stderr);
	log_peer();
	if (cfg.hostname == NULL) {
		if (gethostname(host, sizeof(host)) == -1)
			strlcpy(host, "localhost", sizeof(host));
		host[POP3D_MAX_HOST] = '\0';	/* Linux allows 64 */
		/* The kernel takes any bytes (hostname(1) "mail.example."). */
		if (!host_ok(host)) {
			log_msg(LOG_WARNING, "host name \"%s\" is no domain for "
			    "the greeting; using \"localhost\" (see -n)",
			    log_value(qpath, sizeof(qpath), host));
			strlcpy(host, "localhost", sizeof(host));
		}
		cfg.hostname = host;
	}
	tzset();	/* syslog's clock, before the jail hides the zone file */
	if (cfg.apop)
		make_stamp(&cfg);
	check_users_file(&cfg);
	jail = prelogin_jail(&cfg);

	if (!authorize(&cfg, jail, &acct, &io, &status))
		return status;
	session_init(&s, &io, &cfg, NULL, NULL);
	s.acct = acct;
	explicit_bzero(&acct, sizeof(acct));

	if (cfg.mail_root != NULL && geteuid() == 0 &&
	    (chroot(cfg.mail_root) == -1 || chdir("/") == -1)) {
		log_msg(LOG_ERR, "chroot %s: %s", cfg.mail_root,
		    strerror(errno));
		io_reply(&io, "-ERR [SYS/TEMP] cannot reach the mail store");
		(void)io_flush(&io);
		return POP3D_EXIT_SYS;
	}
	if (become(&s.acct) == -1) {
		io_reply(&io, "-ERR [SYS/TEMP] cannot switch to your user");
		(void)io_flush(&io);
		return POP3D_EXIT_SYS;
	}
	r = maildrop_open(&md, s.acct.maildrop);
	if (r != MD_OK) {
		/* RFC 2449 §8.1.1 and RFC 3206 §4. */
		io_reply(&io, "-ERR %s", r == MD_INUSE ?
		    "[IN-USE] maildrop is locked by another session" :
		    r == MD_PERM ? "[SYS/PERM] cannot open the maildrop" :
		    "[SYS/TEMP] cannot open the maildrop, try later");
		(void)io_flush(&io);
		return POP3D_EXIT_SYS;
	}
	maildrop_stat(&md, &n, &octets);
	uname = log_value(qname, sizeof(qname), s.acct.name);
	log_msg(LOG_INFO, "user=%s maildrop=%s messages=%zu octets=%llu%s%s",
	    uname, log_value(qpath, sizeof(qpath), md.path), n,
	    (unsigned long long)octets,
	    md.source != NULL ? " table=" : "",
	    md.source != NULL ? md.source : "");
	io_reply(&io, "+OK %s's maildrop has %zu message%s (%llu octets)",
	    s.acct.name, n, n == 1 ? "" : "s", (unsigned long long)octets);

	switch (session_transaction(&s, &md)) {
	case SESSION_QUIT:
		status = POP3D_EXIT_OK;
		break;
	case SESSION_FAILED:
		status = POP3D_EXIT_SYS;
		break;
	default:
		status = POP3D_EXIT_CLIENT;
		break;
	}
	/*
	 * Without QUIT nothing was deleted.  A failed UPDATE may have done
	 * part of it (Maildir unlinks) or left it to the journal's replay at
	 * the next login (mbox): the deletions asked for are logged as not
	 * confirmed.
	 */
	if (status == POP3D_EXIT_CLIENT) {
		md.ndele = 0;
		md.bdele = 0;
		for (size_t i = 0; i < md.count; i++)
			md.msgs[i].flags &= ~(uint32_t)MSG_DELETED;
	}
	maildrop_stat(&md, &kept, &octets);
	log_msg(LOG_INFO, "%s: user=%s retrieved=%zu/%llu deleted=%zu/%llu "
	    "kept=%zu/%llu", status == POP3D_EXIT_OK ? "quit" :
	    status == POP3D_EXIT_SYS ? "quit failed, deletions not confirmed" :
	    "ended without QUIT, nothing deleted", uname, md.nretr,
	    (unsigned long long)md.bretr, md.ndele,
	    (unsigned long long)md.bdele, kept, (unsigned long long)octets);
	maildrop_close(&md);
	return status;
}
