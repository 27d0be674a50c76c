/*
 * auth.c: credentials, and the only code that touches password hashes.
 *
 * The flat users file is the administrator's, but it is parsed strictly:
 * a malformed line is logged with its number and its user cannot log in,
 * while everyone else still can.  Passwords are the client's and are never
 * logged or kept.  Runs as the user pop3d starts as (root under inetd or
 * systemd), before any privilege is dropped.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <crypt.h>
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <md5.h>
#include <pwd.h>
#include <shadow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "pop3d.h"

/* Fields of a users-file line: name:hash:uid:gid:maildrop:apop-secret. */
enum { F_NAME, F_HASH, F_UID, F_GID, F_MAILDROP, F_APOP, F_COUNT };

int
auth_valid_name(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > POP3D_MAX_USER || s[0] == '.')
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		/* Printable ASCII; '/' would leave the spool, ':' the file. */
		if (c <= 0x20 || c >= 0x7f || c == '/' || c == ':')
			return 0;
	}
	return 1;
}

int
auth_expand(const char *tmpl, const struct account *a, char *buf, size_t n)
{
	size_t len = 0;
	const char *p;

	for (p = tmpl; *p != '\0'; p++) {
		const char *add;
		char one[2] = { *p, '\0' };

		if (*p != '%')
			add = one;
		else {
			switch (*++p) {
			case 'u':
				add = a->name;
				break;
			case 'h':
				if (a->home[0] == '\0')
					return -1;
				add = a->home;
				break;
			case '%':
				add = "%";
				break;
			default:
				return -1;
			}
		}
		size_t alen = strlen(add);

		if (len + alen >= n)
			return -1;
		memcpy(buf + len, add, alen);
		len += alen;
	}
	if (len == 0 || n == 0)
		return -1;
	buf[len] = '\0';
	return 0;
}

int
auth_base64(const char *in, size_t len, unsigned char *out, size_t n)
{
	uint32_t acc = 0;
	size_t i, o = 0, pad = 0;

	if (len % 4 != 0)
		return -1;
	for (i = 0; i < len; i++) {
		int v;
		char ch = in[i];

		if (ch >= 'A' && ch <= 'Z')
			v = ch - 'A';
		else if (ch >= 'a' && ch <= 'z')
			v = ch - 'a' + 26;
		else if (ch >= '0' && ch <= '9')
			v = ch - '0' + 52;
		else if (ch == '+')
			v = 62;
		else if (ch == '/')
			v = 63;
		else if (ch == '=' && i >= len - 2) {
			v = 0;
			pad++;
		} else
			return -1;
		if (pad > 0 && ch != '=')
			return -1;	/* data after padding */
		acc = acc << 6 | (uint32_t)v;
		if (i % 4 == 3) {
			unsigned char b[3] = { acc >> 16, acc >> 8, acc };
			size_t k, take = 3 - (i == len - 1 ? pad : 0);

			if (o + take > n)
				return -1;
			for (k = 0; k < take; k++)
				out[o++] = b[k];
			acc = 0;
		}
	}
	if (o > INT32_MAX)
		return -1;
	return (int)o;
}

/* Parses a uid or gid: digits only, no overflow. */
static int
parse_id(const char *s, unsigned long *v)
{
	uint64_t n;

	if (session_number(s, &n) == -1 || n >= (uint64_t)UINT32_MAX)
		return -1;
	*v = (unsigned long)n;
	return 0;
}

/*
 * libxcrypt is loaded here, in the credential check child (check_apart()
 * in pop3d.c), not linked: linked, it is mapped in the serving process too,
 * ~80 KiB resident for the whole session in a process that never hashes
 * (HACKING.md, "Memory").  The types still come from crypt.h, so the
 * compiler checks every call.
 */
static __typeof__(&crypt_rn) xcrypt_rn;
static __typeof__(&crypt_gensalt_rn) xcrypt_gensalt_rn;

/* 0 when libcrypt is loaded; -1 (logged) when it cannot be. */
static int
crypt_load(void)
{
	void *h;

	if (xcrypt_rn != NULL)
		return 0;
	if ((h = dlopen(POP3D_LIBCRYPT, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		log_msg(LOG_ERR, "cannot load %s: %s", POP3D_LIBCRYPT,
		    dlerror());
		return -1;
	}
	/* POSIX: dlsym's result converts to a function pointer. */
	xcrypt_gensalt_rn = (__typeof__(xcrypt_gensalt_rn))dlsym(h,
	    "crypt_gensalt_rn");
	xcrypt_rn = (__typeof__(xcrypt_rn))dlsym(h, "crypt_rn");
	if (xcrypt_rn == NULL || xcrypt_gensalt_rn == NULL) {
		log_msg(LOG_ERR, "%s has no crypt_rn or crypt_gensalt_rn",
		    POP3D_LIBCRYPT);
		xcrypt_rn = NULL;
		(void)dlclose(h);
		return -1;
	}
	return 0;
}

/*
 * A hash to check unknown users against, so that they cost one crypt as a
 * known user does: a salt of the system's default method.
 */
static const char *
dummy_hash(void)
{
	static char salt[CRYPT_GENSALT_OUTPUT_SIZE];

	if (salt[0] == '\0' &&
	    xcrypt_gensalt_rn(NULL, 0, NULL, 0, salt, sizeof(salt)) == NULL)
		strlcpy(salt, "$6$pop3d.dummy.salt$", sizeof(salt));
	return salt;
}

/* Compares without an early exit, so timing says nothing of where. */
static int
same(const char *a, const char *b, size_t n)
{
	unsigned char d = 0;
	size_t i;

	for (i = 0; i < n; i++)
		d |= (unsigned char)a[i] ^ (unsigned char)b[i];
	return d == 0;
}

/*
 * The hash an unknown user is checked against.  It must cost what a known
 * user's does, so it takes its method and cost from a real hash in the
 * same database (the first one there): a users file of sha512crypt hashes
 * gets a sha512crypt dummy, not the default yescrypt one, which is ten
 * times slower and would tell an unknown user from a wrong password.
 * file_lookup() leaves the users file's first hash in buf as it reads;
 * for system users the shadow file is scanned here.
 */
static const char *
dummy_for(const struct config *cfg, char *buf, size_t n)
{
	const struct spwd *sp;

	if (buf[0] == '\0' && cfg->users_file == NULL) {
		setspent();
		while (buf[0] == '\0' && (sp = getspent()) != NULL)
			if (sp->sp_pwdp[0] == '$' &&
			    strlcpy(buf, sp->sp_pwdp, n) >= n)
				buf[0] = '\0';
		endspent();
	}
	return buf[0] != '\0' ? buf : dummy_hash();
}

/*
 * 1 when pass matches hash; crypt_rn's work is done either way.  Only after
 * crypt_load().
 */
static int
check_hash(const char *pass, const char *hash)
{
	struct crypt_data *cd;
	const char *out;
	int ok = 0;

	if ((cd = calloc(1, sizeof(*cd))) == NULL)
		return 0;
	out = xcrypt_rn(pass, hash, cd, (int)sizeof(*cd));
	if (out != NULL && out[0] != '*' && strlen(out) == strlen(hash))
		ok = same(out, hash, strlen(hash));
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ok;
}

/*
 * Splits a users-file line into fields.  -1 with *why set when the line
 * is malformed; *why is then about the line, not the password.
 */
static int
split(char *line, char *f[F_COUNT], const char **why)
{
	int i = 0;

	for (i = 0; i < F_COUNT; i++)
		f[i] = "";
	i = 0;
	f[i++] = line;
	for (char *p = line; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			*why = "control character";
			return -1;
		}
		if (*p == ':') {
			if (i == F_COUNT) {
				*why = "too many fields";
				return -1;
			}
			*p = '\0';
			f[i++] = p + 1;
		}
	}
	if (!auth_valid_name(f[F_NAME])) {
		*why = "invalid user name";
		return -1;
	}
	if (i < 2) {
		*why = "no password hash";
		return -1;
	}
	unsigned long id;

	if ((f[F_UID][0] != '\0' && parse_id(f[F_UID], &id) == -1) ||
	    (f[F_GID][0] != '\0' && parse_id(f[F_GID], &id) == -1)) {
		*why = "uid and gid must be decimal numbers";
		return -1;
	}
	return 0;
}

/* Fills acct from the fields of the user's line; -1 with *why on error. */
static int
fill_account(const struct config *cfg, char *f[F_COUNT], struct account *a,
    const char **why)
{
	unsigned long uid, gid;
	const struct passwd *pw;
	int root = geteuid() == 0;

	memset(a, 0, sizeof(*a));
	strlcpy(a->name, f[F_NAME], sizeof(a->name));
	if (f[F_UID][0] == '\0') {
		if (root) {
			*why = "no uid (required when pop3d runs as root)";
			return -1;
		}
		uid = getuid();
	} else if (parse_id(f[F_UID], &uid) == -1) {
		*why = "bad uid";
		return -1;
	}
	if (f[F_GID][0] == '\0')
		gid = root ? uid : getgid();
	else if (parse_id(f[F_GID], &gid) == -1) {
		*why = "bad gid";
		return -1;
	}
	if (uid == 0 || gid == 0) {
		*why = "uid or gid 0 is never served";
		return -1;
	}
	if (!root && uid != getuid()) {
		*why = "uid differs from pop3d's own and pop3d is not root";
		return -1;
	}
	a->uid = (uid_t)uid;
	a->gid = (gid_t)gid;
	if ((pw = getpwuid(a->uid)) != NULL)
		strlcpy(a->home, pw->pw_dir, sizeof(a->home));
	if (auth_expand(f[F_MAILDROP][0] != '\0' ? f[F_MAILDROP] :
	    cfg->maildrop, a, a->maildrop, sizeof(a->maildrop)) == -1) {
		*why = "maildrop path does not expand (unknown %-escape, no "
		    "home for %h, or too long)";
		return -1;
	}
	return 0;
}

int
auth_parse_line(const struct config *cfg, char *line, struct account *acct,
    const char **hash, const char **apop, const char **why)
{
	char *f[F_COUNT];

	if (split(line, f, why) == -1)
		return -1;
	if (acct != NULL && fill_account(cfg, f, acct, why) == -1)
		return -1;
	*hash = f[F_HASH];
	*apop = f[F_APOP];
	return 0;
}

/* RFC 1939 §7: MD5 of the greeting's timestamp and the shared secret. */
static int
apop_ok(const struct config *cfg, const char *secret, const char *digest)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char sum[16];
	char want[33];
	MD5_CTX ctx;
	size_t i;
	int ok;

	MD5Init(&ctx);
	MD5Update(&ctx, (const unsigned char *)cfg->stamp, strlen(cfg->stamp));
	MD5Update(&ctx, (const unsigned char *)secret, strlen(secret));
	MD5Final(sum, &ctx);
	for (i = 0; i < 16; i++) {
		want[2 * i] = hex[sum[i] >> 4];
		want[2 * i + 1] = hex[sum[i] & 0xf];
	}
	want[32] = '\0';
	ok = strlen(digest) == 32 && same(want, digest, 32);
	explicit_bzero(want, sizeof(want));
	explicit_bzero(sum, sizeof(sum));
	return ok;
}

/*
 * Looks the user up in the flat users file.  1 with the hash (and APOP
 * secret) copied out and acct filled, 0 when there is no usable line,
 * -1 when the file cannot be read.  dummy gets the file's first crypt
 * hash (or stays empty).
 */
static int
file_lookup(const struct config *cfg, const char *user, struct account *acct,
    char *hash, size_t hn, char *secret, size_t sn, char *dummy, size_t dn)
{
	FILE *fp;
	struct stat st;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	unsigned lineno = 0, found = 0;
	int fd, r = 0;

	/*
	 * Only a regular file: a FIFO there blocked the open (and with it
	 * the session, QUIT included, for good), a device such as /dev/zero
	 * grew one line without end (found in review).  O_NONBLOCK makes
	 * the open of a FIFO return, to be refused here.
	 */
	if ((fd = open(cfg->users_file, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) ==
	    -1) {
		log_msg(LOG_ERR, "users file %s: %s", cfg->users_file,
		    strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    (fp = fdopen(fd, "r")) == NULL) {
		log_msg(LOG_ERR, "users file %s: not a regular file, or "
		    "unreadable", cfg->users_file);
		(void)close(fd);
		return -1;
	}
	while ((len = getline(&line, &cap, fp)) != -1) {
		const char *why = NULL;

		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		/* CRLF (a file edited on Windows): the CR is no field's. */
		if (len > 0 && line[len - 1] == '\r')
			line[--len] = '\0';
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if (strlen(line) != (size_t)len)
			why = "NUL byte";
		else {
			/*
			 * The name ends at the first ':'.  Only the user's
			 * first line fills acct (and costs a getpwuid).
			 */
			size_t nlen = strcspn(line, ":");
			int mine = nlen == strlen(user) &&
			    strncmp(line, user, nlen) == 0;
			const char *h = NULL, *apop = NULL;
			int bad = auth_parse_line(cfg, line,
			    mine && found == 0 ? acct : NULL, &h, &apop,
			    &why) == -1;

			/* The first real hash, for dummy_for(). */
			if (!bad && dummy[0] == '\0' && h[0] == '$' &&
			    strlcpy(dummy, h, dn) >= dn)
				dummy[0] = '\0';
			if (!mine)
				;
			else if (found != 0)
				why = "duplicate user, the first line counts";
			else {
				found = lineno;
				if (bad)
					;
				else if (strlcpy(hash, h, hn) >= hn ||
				    strlcpy(secret, apop, sn) >= sn)
					why = "hash or APOP secret too long";
				else
					r = 1;
			}
		}
		if (why != NULL)
			log_msg(LOG_ERR, "users file %s, line %u: %s",
			    cfg->users_file, lineno, why);
		explicit_bzero(line, (size_t)len);
	}
	if (ferror(fp)) {
		log_msg(LOG_ERR, "users file %s: %s", cfg->users_file,
		    strerror(errno));
		r = -1;
	}
	fclose(fp);
	free(line);
	return r;
}

/*
 * Looks a system user up (passwd and shadow).  1 with the hash copied out
 * and acct filled, 0 when the account may not log in (reason logged), -1
 * when the databases cannot be read.
 */
static int
system_lookup(const struct config *cfg, const char *user,
    struct account *acct, char *hash, size_t hn)
{
	const struct passwd *pw;
	const struct spwd *sp;
	const char *h;
	long today = (long)(time(NULL) / 86400);

	errno = 0;
	if ((pw = getpwnam(user)) == NULL) {
		if (errno != 0 && errno != ENOENT && errno != ESRCH) {
			log_msg(LOG_ERR, "getpwnam: %s", strerror(errno));
			return -1;
		}
		return 0;
	}
	memset(acct, 0, sizeof(*acct));
	strlcpy(acct->name, pw->pw_name, sizeof(acct->name));
	acct->uid = pw->pw_uid;
	acct->gid = pw->pw_gid;
	strlcpy(acct->home, pw->pw_dir, sizeof(acct->home));
	if (pw->pw_uid == 0 || (unsigned long)pw->pw_uid < cfg->min_uid) {
		log_msg(LOG_NOTICE, "user %s: uid %lu is below %lu (or root)",
		    user, (unsigned long)pw->pw_uid, cfg->min_uid);
		return 0;
	}
	h = pw->pw_passwd;
	if ((sp = getspnam(user)) != NULL) {
		h = sp->sp_pwdp;
		/* -1 is "never"; 0 is expired, as pam_unix has it. */
		if (sp->sp_expire >= 0 && sp->sp_expire <= today) {
			log_msg(LOG_NOTICE, "user %s: account expired", user);
			return 0;
		}
		/*
		 * shadow(5): once the password has expired and the inactivity
		 * period after it has passed, no login is possible (pam_unix:
		 * "account ... has expired (failed to change password)").
		 */
		if (sp->sp_lstchg > 0 && sp->sp_max >= 0 &&
		    sp->sp_inact >= 0 && today >= sp->sp_lstchg &&
		    today - sp->sp_lstchg > sp->sp_max + sp->sp_inact) {
			log_msg(LOG_NOTICE, "user %s: password expired and "
			    "inactive", user);
			return 0;
		}
	} else if (strcmp(h, "x") == 0) {
		/*
		 * glibc leaves errno 0 when the shadow file cannot be read,
		 * so not being root is what tells "unreadable" from "no
		 * entry".
		 */
		int unreadable = geteuid() != 0 || errno == EACCES ||
		    errno == EPERM;

		log_msg(LOG_ERR, "user %s: shadow entry %s", user,
		    unreadable ? "unreadable (pop3d is not root)" : "missing");
		return unreadable ? -1 : 0;
	}
	if (geteuid() != 0 && pw->pw_uid != getuid()) {
		/* pop3d(8): not root, it serves only accounts of its own uid. */
		log_msg(LOG_NOTICE, "user %s: uid %lu is not pop3d's own",
		    user, (unsigned long)pw->pw_uid);
		return 0;
	}
	if (h[0] == '!' || h[0] == '*' || h[0] == '\0') {
		log_msg(LOG_NOTICE, "user %s: account locked", user);
		return 0;
	}
	if (strlcpy(hash, h, hn) >= hn)
		return 0;
	if (auth_expand(cfg->maildrop, acct, acct->maildrop,
	    sizeof(acct->maildrop)) == -1) {
		log_msg(LOG_ERR, "user %s: maildrop template %s does not "
		    "expand", user, cfg->maildrop);
		return 0;
	}
	return 1;
}

enum auth_result
auth_check(const struct config *cfg, const struct cred *c,
    struct account *acct)
{
	char hash[512] = "", secret[256] = "", dummy[512] = "";
	enum auth_result r = AUTH_FAIL;
	int found, locked;

	memset(acct, 0, sizeof(*acct));
	if (crypt_load() == -1)
		return AUTH_TEMP;
	if (cfg->users_file != NULL)
		found = file_lookup(cfg, c->user, acct, hash, sizeof(hash),
		    secret, sizeof(secret), dummy, sizeof(dummy));
	else
		found = system_lookup(cfg, c->user, acct, hash, sizeof(hash));
	locked = hash[0] == '\0' || hash[0] == '!' || hash[0] == '*';
	if (found == -1)
		r = AUTH_TEMP;
	else if (c->method == CRED_APOP) {
		/*
		 * Only users with a shared secret can use APOP, and a locked
		 * hash locks APOP too; the others fail the same way (after
		 * the same work) as a bad digest.
		 */
		(void)check_hash(c->secret, dummy_for(cfg, dummy,
		    sizeof(dummy)));
		if (found == 1 && !locked && cfg->apop && secret[0] != '\0' &&
		    apop_ok(cfg, secret, c->secret))
			r = AUTH_OK;
	} else if (found == 1 && !locked)
		r = check_hash(c->secret, hash) ? AUTH_OK : AUTH_FAIL;
	else {
		/* Unknown or locked: the same crypt work, the same answer. */
		(void)check_hash(c->secret, dummy_for(cfg, dummy,
		    sizeof(dummy)));
		if (found == 1)
			log_msg(LOG_NOTICE, "user %s: account locked", c->user);
	}
	explicit_bzero(hash, sizeof(hash));
	explicit_bzero(secret, sizeof(secret));
	explicit_bzero(dummy, sizeof(dummy));
	if (r != AUTH_OK)
		memset(acct, 0, sizeof(*acct));
	return r;
}
