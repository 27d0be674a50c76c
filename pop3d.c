/*
 * pop3d.c: main.  Flags, fd hygiene, the switch to the mail user.
 *
 * Runs as root when inetd or systemd starts it that way, and then parses
 * no network input itself beyond what session.c reads before login; after
 * a login it drops to the uid and gid of the account for good, before the
 * maildrop is opened.  The connection is fds 0 and 1.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "pop3d.h"

static void
usage(void)
{
	fprintf(stderr, "usage: pop3d [-eV] [-a failures] [-D delay] "
	    "[-f users_file] [-m maildrop]\n"
	    "             [-n hostname] [-t timeout]\n");
	exit(POP3D_EXIT_USAGE);
}

/* A flag's number: digits only, within [min, max]. */
static int
number(const char *s, int min, int max, const char *what)
{
	uint64_t n;

	if (session_number(s, &n) == -1 || n < (uint64_t)min ||
	    n > (uint64_t)max) {
		fprintf(stderr, "pop3d: %s must be a number from %d to %d\n",
		    what, min, max);
		exit(POP3D_EXIT_USAGE);
	}
	return (int)n;
}

/* Makes sure fds 0-2 exist, and that stray writes to 2 reach no client. */
static void
fd_hygiene(int keep_stderr)
{
	int fd;

	closefrom(3);
	if ((fd = open("/dev/null", O_RDWR)) == -1)
		exit(POP3D_EXIT_SYS);
	/* Under inetd fd 2 is the connection: never write there. */
	if (!keep_stderr || fcntl(STDERR_FILENO, F_GETFD) == -1)
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

			inet_ntop(AF_INET6, &s6->sin6_addr, host,
			    sizeof(host));
			port = ntohs(s6->sin6_port);
		}
	}
	log_msg(LOG_INFO, "connect from %s port %d", host, port);
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
		if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode) &&
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

static enum auth_result
verify(void *ctx, const char *user, const char *pass, struct account *acct)
{
	return auth_check(ctx, user, pass, acct);
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
	};
	struct rlimit nocore = { 0, 0 };
	struct session s;
	struct maildrop md;
	char host[256];
	enum md_status r;
	size_t n, kept;
	uint64_t octets;
	int c, status;

	while ((c = getopt(argc, argv, "a:D:ef:m:n:t:V")) != -1) {
		switch (c) {
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
			cfg.hostname = optarg;
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
	(void)signal(SIGPIPE, SIG_IGN);
	/* Over RLIMIT_FSIZE a write fails with EFBIG, and UPDATE backs out. */
	(void)signal(SIGXFSZ, SIG_IGN);
	(void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (cfg.hostname == NULL) {
		if (gethostname(host, sizeof(host)) == -1)
			strlcpy(host, "localhost", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		cfg.hostname = host;
	}
	log_init(cfg.log_stderr);
	log_peer();

	io_init(&io, STDIN_FILENO, STDOUT_FILENO, cfg.timeout);
	session_init(&s, &io, &cfg, verify, &cfg);
	session_greet(&s);
	switch (session_authorize(&s)) {
	case SESSION_LOGIN:
		break;
	case SESSION_QUIT:
		return POP3D_EXIT_OK;
	default:
		return POP3D_EXIT_CLIENT;
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
	log_msg(LOG_INFO, "user=%s maildrop=%s messages=%zu octets=%llu",
	    s.acct.name, md.path, n, (unsigned long long)octets);
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
	if (status != POP3D_EXIT_OK) {
		md.ndele = 0;
		md.bdele = 0;
	}
	maildrop_stat(&md, &kept, &octets);
	if (status != POP3D_EXIT_OK)
		kept = md.count;
	log_msg(LOG_INFO, "%s: user=%s retrieved=%zu/%llu deleted=%zu/%llu "
	    "kept=%zu", status == POP3D_EXIT_OK ? "quit" :
	    status == POP3D_EXIT_SYS ? "quit failed, nothing deleted" :
	    "ended without QUIT, nothing deleted", s.acct.name, md.nretr,
	    (unsigned long long)md.bretr, md.ndele,
	    (unsigned long long)md.bdele, kept);
	maildrop_close(&md);
	return status;
}
