/*
 * pop3d.h: the types, limits and prototypes that the modules share.
 *
 * Every limit below carries the reason for its value; pop3d.8 lists them
 * for the administrator.  A prototype states its contract: what it returns,
 * who frees, and what errno says on failure.
 */
#ifndef POP3D_H
#define POP3D_H

#include <sys/types.h>
#include <sys/stat.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define POP3D_VERSION		"0.1"

/*
 * RFC 2449 §4: a command line is at most 255 octets including CRLF.  The
 * buffer holds the line without CRLF plus a NUL.
 */
#define POP3D_MAX_LINE		255
/*
 * A login name: at most 128 characters.  RFC 1939 §3 allowed arguments of
 * 40; RFC 2449 §4 lifted that limit with the line's, and virtual users
 * named by their e-mail address are often longer than 40.  Not more than
 * 128, because the name is often the mbox's file name, and its companions
 * ("NAME.lock.PID.HOST", ".NAME.pop3d-journal") must stay within NAME_MAX
 * (255): a 248-character name, the most a USER line carries, made each
 * login fail with ENAMETOOLONG.
 */
#define POP3D_MAX_USER		128
/* -n: greeting "+OK HOST POP3 server ready <pid.time.hex@HOST>" <= 512. */
#define POP3D_MAX_HOST		200
/*
 * RFC 1939 §3 says ten minutes at least: the default is exactly that.
 * Shorter values are accepted for tests and for hosts that want them.
 */
#define POP3D_TIMEOUT		600
/* Failed logins before the connection is closed. */
#define POP3D_MAX_AUTH_FAILS	3
/* Seconds before a failed login is answered (slows password guessing). */
#define POP3D_AUTH_DELAY	2
/*
 * The message table covers at most this many messages (an mbox's 64 bytes
 * each, so 64 MB; a Maildir's 20 plus its name).  Mail beyond the cap is not shown and is kept untouched by
 * UPDATE, exactly like mail that arrives during the session.
 */
#define POP3D_MAX_MSGS		1000000
/* Seconds to wait for a delivery agent's lock before giving up. */
#define POP3D_LOCK_WAIT		30
/* Output buffer: one write per response where the response fits. */
#define POP3D_OUTBUF		(128 * 1024)
/*
 * The one buffer that mail passes through on its way in: the mbox scan,
 * RETR and TOP of both stores, Maildir's size count and the journal take
 * it in turn (none of them nests in another), so a session holds one.
 */
#define POP3D_MAILBUF		(64 * 1024)
/* Input buffer: room for many pipelined commands per read. */
#define POP3D_INBUF		(16 * 1024)
/*
 * A SASL line (RFC 5034 §4 lets it exceed the command limit): room for
 * base64 of two 128-octet names (authzid, authcid) and a 255-octet
 * password (513 octets, of the 768 that 1024 base64 characters carry).
 */
#define POP3D_MAX_SASL		1024
/* A password (PASS takes the rest of a 255-octet line; SASL the same). */
#define POP3D_MAX_SECRET	255
/* Lowest uid a system user may have to log in (-U). */
#define POP3D_MIN_UID		1000
/* Length of a UIDL as sent: hex of a 128-bit digest, plus a suffix. */
#define POP3D_UIDL_HEX		32
#define POP3D_UIDL_MAX		70	/* RFC 1939 §7 */

/* Exit statuses, documented in pop3d.8. */
#define POP3D_EXIT_OK		0	/* session ended with QUIT */
#define POP3D_EXIT_CLIENT	1	/* client vanished, timed out, gave up */
#define POP3D_EXIT_SYS		2	/* system failure (maildrop, update) */
#define POP3D_EXIT_USAGE	64	/* bad flags (EX_USAGE) */
#define POP3D_EXIT_CONFIG	78	/* bad configuration (EX_CONFIG) */

struct config {
	const char	*users_file;	/* -f: flat users file, or NULL */
	const char	*maildrop;	/* -m: maildrop template */
	const char	*hostname;	/* -n: name in the greeting */
	const char	*prelogin_user;	/* -u: user of the pre-login process */
	const char	*empty_dir;	/* -E: its chroot */
	const char	*mail_root;	/* -r: chroot of the mail session */
	int		 timeout;	/* -t: idle seconds */
	int		 auth_delay;	/* -D: seconds before a failed login */
	int		 max_fails;	/* -a: failures before disconnect */
	int		 log_stderr;	/* -e */
	int		 apop;		/* -A: offer APOP */
	unsigned long	 min_uid;	/* -U: lowest uid of a system user */
	/* RFC 1939 §7: the greeting's timestamp when APOP is offered. */
	char		 stamp[POP3D_MAX_HOST + 64];
};

/* log.c */
void	log_init(int to_stderr);
/* syslog(3)-style: prio is LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO. */
void	log_msg(int prio, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
/*
 * A value for a key=value field: as it is when it is printable ASCII
 * without space, '"', '\\' or '=', else in double quotes with those and
 * other bytes escaped, so a log parser cannot take part of a user name
 * for another field.  Cut (ending in "...") to fit size.
 */
const char *log_value(char *buf, size_t size, const char *s);
#define LOG_VALUE_MAX(n)	(4 * (n) + 6)

/* io.c: the connection. */
struct io {
	int		 in, out;
	int		 timeout_ms;	/* idle deadline for io_readline, and
					   for a write that makes no progress */
	int		 outwait;	/* how a write is bounded (io_init) */
	size_t		 inoff, inlen;	/* unread input is in[inoff..inlen) */
	size_t		 outlen;
	int		 err;		/* sticky: a write failed */
	/* streaming writer state (io_body_*) */
	int		 bol;		/* at the start of a line */
	int		 cr;		/* the last byte sent was a stored CR */
	unsigned char	 inbuf[POP3D_INBUF];
	unsigned char	 outbuf[POP3D_OUTBUF];
};

enum io_line {
	IO_LINE,		/* a line is in the caller's buffer */
	IO_TOOLONG,		/* over POP3D_MAX_LINE; discarded up to LF */
	IO_BADBYTE,		/* NUL or bare CR; discarded up to LF */
	IO_EOF,			/* the client closed (a partial line dropped) */
	IO_TIMEOUT,		/* no complete line within the deadline */
	IO_ERROR		/* read or flush failed; errno set (io.err
				   too when it was the flush) */
};

/* Sets up buffers on two fds; sets TCP_NODELAY where out is a socket. */
void	io_init(struct io *, int in, int out, int timeout_secs);
/*
 * Reads one command line without its CRLF (a bare LF ends a line too)
 * into line, which has room for POP3D_MAX_LINE bytes plus NUL.  Flushes
 * pending output before it blocks.  *len gets the length.
 */
enum io_line io_readline(struct io *, char *line, size_t *len);
/* True when a complete line or more is already buffered (pipelining). */
int	io_pending(const struct io *);
/* Appends a formatted response line; CRLF is added.  Never fails: a
 * write error is sticky and reported by io_flush. */
void	io_reply(struct io *, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
/* Appends raw bytes. */
void	io_put(struct io *, const void *, size_t);
/*
 * io_readline with a larger bound (max octets with CRLF, line of max + 1
 * bytes): for SASL lines.
 */
enum io_line io_readline_max(struct io *, char *line, size_t max,
	    size_t *len);
/*
 * Puts bytes already read from the client (by the pre-login process) in
 * front of the input.  -1 when they do not fit.
 */
int	io_preload(struct io *, const void *, size_t);
/* Writes everything buffered.  0, or -1 with errno after a failed write. */
int	io_flush(struct io *);
int64_t	mono_ms(void);		/* CLOCK_MONOTONIC, in milliseconds */
/*
 * The streaming writer for a stored message.  io_body_begin resets the line
 * state; io_body_write converts a chunk of stored bytes: LF and CRLF become
 * CRLF, a line starting with '.' is stuffed.  lines is NULL for a whole
 * message (RETR: only then does the SSE2 block path run); when *lines is
 * not negative it counts down completed lines and the writer stops once it
 * reaches 0, returning the number of input bytes consumed (else all n).
 * io_body_end closes a last line that had no newline with CRLF and sends
 * the terminating ".".  The octets this sends (before stuffing) are what
 * mbox_octets counts.
 */
void	io_body_begin(struct io *);
size_t	io_body_write(struct io *, const unsigned char *, size_t,
	    long long *lines);
void	io_body_end(struct io *);

/* maildrop.c: the maildrop interface. */
/*
 * What the session knows of a message, whatever the store: md->msgs[i].
 * Where the message lies is the store's, in md->loc beside it.
 */
struct msg {
	uint64_t	 size;		/* octets as sent, CRLF, unstuffed */
	uint32_t	 dup;		/* nth identical copy, 0 for the first */
	uint32_t	 flags;
#define MSG_DELETED	0x01
#define MSG_RETRIEVED	0x02
#define MSG_SHARED	0x04	/* another message has the same key (dedup) */
};

/* Where mbox message i lies in the file: md->loc.mbox[i]. */
struct mbox_msg {
	uint64_t	 off;		/* offset of the "From " line */
	uint64_t	 data;		/* offset of the first header byte */
	uint64_t	 len;		/* stored bytes of the message */
	uint64_t	 hdrlen;	/* stored bytes of header + empty line */
	unsigned char	 uid[16];	/* digest behind the UIDL */
};

enum md_status {
	MD_OK,
	MD_INUSE,		/* another session holds it: [IN-USE] */
	MD_TEMP,		/* try later: [SYS/TEMP] */
	MD_PERM			/* will not work without the admin: [SYS/PERM] */
};

struct maildrop;

struct maildrop_ops {
	const char	*name;
	/* Opens and locks md->path, fills the table. */
	enum md_status	(*open)(struct maildrop *);
	/* Streams message i (whole when lines < 0, else header + lines). */
	enum md_status	(*send)(struct maildrop *, struct io *, size_t i,
			    long long lines);
	/* Applies the deletions (RFC 1939 §6, UPDATE). */
	enum md_status	(*update)(struct maildrop *);
	void		(*close)(struct maildrop *);
	/*
	 * Before RETR/TOP of message i (lines as for send): MD_OK, or MD_TEMP
	 * when the store changed under the session so that i cannot be sent.
	 * May be NULL.
	 */
	enum md_status	(*check)(struct maildrop *, size_t i, long long lines);
	/* The UIDL of message i. */
	void		(*uidl)(const struct maildrop *, size_t i, char *buf);
};

struct maildrop {
	const struct maildrop_ops *ops;
	char		*path;
	int		 fd;		/* the mbox or Maildir directory, or -1 */
	int		 lockfd;	/* Maildir: the session lock, or -1 */
	/* Maildir: the file check opened for send: message held - 1 (none
	 * when 0, so that a zeroed maildrop holds nothing), its descriptor
	 * and size, and how many of its first bytes are in the mail buffer
	 * (RETR). */
	size_t		 held;
	int		 heldfd;
	uint64_t	 heldsize;
	size_t		 heldgot;
	int		 dotlock;	/* mbox: we hold <path>.lock */
	struct stat	 dotlock_id;	/* mbox: that file, as we made it */
	time_t		 dotlock_touched; /* mbox: when (monotonic s) */
	struct {			/* mbox: the file as scanned */
		uint64_t	 size;
		struct timespec	 mtime, ctime;
		int		 settled;	/* last written > 1 s before */
		int		 indexed;	/* the table came from an index */
	}		 seen;
	struct {			/* mbox: the file as RETR/TOP's check
					 * found it, for a look after sending */
		uint64_t	 size;
		struct timespec	 mtime, ctime;
		int		 settled;
	}		 checked;
	const char	*source;	/* mbox: how the table was built (log) */
	char		*names;		/* Maildir: names, each behind a mark */
	size_t		 names_len, names_cap;
	struct msg	*msgs;
	/*
	 * Parallel to msgs, what only the store knows.  maildrop_append
	 * grows it with msgs when loc_size, the size of an entry, is set
	 * (mbox: 48 bytes).  Maildir fills it itself during its scan, 4
	 * bytes a message: its names cost memory of their own.  cap counts
	 * the entries allocated.
	 */
	union {
		struct mbox_msg	*mbox;
		uint32_t	*name;	/* Maildir: offset of its name in names */
		void		*p;
	}		 loc;
	size_t		 loc_size;
	size_t		 count;		/* messages in the table */
	size_t		 cap;
	uint64_t	 end;		/* mbox: bytes the table covers */
	unsigned char	 tail[16];	/* mbox: the bytes before end, as */
	size_t		 taillen;	/* they were when the table was made */
	struct {
		dev_t	 dev;
		ino_t	 ino;
	}		 id;
	/* counters for the log */
	size_t		 nretr, ndele;
	uint64_t	 bretr, bdele;
};

/*
 * Opens the maildrop at path (a directory with cur/, new/ and tmp/ is a
 * Maildir, anything else an mbox file; a missing file is an empty
 * maildrop), locks it for the session and builds the message table.
 * MD_OK, or a status for the response code; the reason is logged.
 */
enum md_status	maildrop_open(struct maildrop *, const char *path);
/* Counts and octets of the messages not marked deleted. */
void	maildrop_stat(const struct maildrop *, size_t *n, uint64_t *octets);
/* A UIDL from a digest and a dup number, as hex (buf as below). */
void	maildrop_uidl_digest(const unsigned char uid[16], uint32_t dup,
	    char *buf);
/* The printable UIDL of message i into buf (POP3D_UIDL_MAX + 1 bytes). */
void	maildrop_uidl(const struct maildrop *, size_t i, char *buf);
/*
 * Appends a zeroed message to the table (msgs and loc), growing it; NULL
 * (ENOMEM, or EFBIG beyond POP3D_MAX_MSGS) on failure.
 */
struct msg *maildrop_append(struct maildrop *);
/* Frees the table (msgs and loc) and empties it. */
void	maildrop_free_table(struct maildrop *);
/*
 * Gives identical copies distinct dup numbers, in table order, and marks
 * every message of such a group MSG_SHARED (call after the scan); cmp
 * orders messages i and j by what makes them identical.
 */
int	maildrop_dedup(struct maildrop *,
	    int (*cmp)(const struct maildrop *, size_t i, size_t j));
/*
 * The path of a file that pop3d keeps beside an mbox,
 * "<dir>/.<mbox name>.pop3d-<what>", into buf, and its directory into dir.
 * -1 when a path does not fit.
 */
enum md_status	maildrop_flock(struct maildrop *, int fd);
int	maildrop_sidefile(const struct maildrop *, const char *what, char *buf,
	    size_t n, char *dir, size_t dn);
/* The POP3D_MAILBUF bytes that the stores and the journal share. */
unsigned char	*maildrop_buf(void);
/* Whether message i can still be sent (see maildrop_ops.check). */
enum md_status	maildrop_check(struct maildrop *, size_t i, long long lines);
enum md_status	maildrop_send(struct maildrop *, struct io *, size_t i,
	    long long lines);
enum md_status	maildrop_update(struct maildrop *);
/* Releases locks and memory; safe on a zeroed or closed maildrop. */
void	maildrop_close(struct maildrop *);

/*
 * Whether the n bytes at s spell upper (upper case) in any case, ASCII
 * only: POP3 keywords (RFC 1939 §3) and mail header names are
 * case-insensitive.  Not strncasecmp(3): glibc's reads the locale's case
 * tables, the only thing a session would touch in a 64 KiB stretch of
 * libc's read-only data (HACKING.md, "Memory").  A shorter s differs at
 * its NUL.
 */
static inline int
keyword_eq(const char *s, const char *upper, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 'a' && c <= 'z')
			c -= 'a' - 'A';
		if (c != (unsigned char)upper[i])
			return 0;
	}
	return 1;
}

/* mbox.c */
extern const struct maildrop_ops mbox_ops;
/* maildir.c */
extern const struct maildrop_ops maildir_ops;
/*
 * Whether the names pool is allocated at the size of new/ and cur/ (a
 * hint, see maildir_pool_reserve).  1; unit tests turn it off to run the
 * pool's growth.
 */
extern int maildir_pool_hint;
/*
 * Scans fd from offset 0 to size and appends its messages to md.
 * 0, or -1 with errno (EINVAL: not an mbox; EIO: read failed).
 */
int	mbox_scan(struct maildrop *, int fd, uint64_t size);
/*
 * How the mbox's bytes before off end: 2 with an empty line ("\n\n" or
 * "\n\r\n") or at the start of the file, 1 with a newline, 0 otherwise.
 */
int	mbox_line_end(struct maildrop *, uint64_t off);
/*
 * Mail appended at src (len bytes) by an agent that writes the empty line
 * before a message rather than after: how many bytes ("\n" or "\r\n")
 * to leave behind when it moves down behind an empty line of its own.
 */
size_t	mbox_sep_skip(struct maildrop *, uint64_t src, uint64_t len);
/* During long work under the delivery locks: keeps the dotlock fresh. */
void	mbox_lock_fresh(struct maildrop *);
/*
 * A file unwritten for more than this many seconds when scanned is
 * settled: any later write shows as a new mtime and ctime even on coarse
 * file-system clocks, so RETR may skip re-reading (changed()) and the
 * table may be indexed.  1; unit tests lower it.
 */
extern int mbox_settle;

/*
 * mboxindex.c: the message table of an mbox kept for the next session
 * (".<mbox>.pop3d-index").  mbox_index_load fills md's empty table from
 * the index of the opened file (md->id), and ix with the file's state when
 * the index was written; -1 when there is none it can trust as well formed
 * (then md's table is still empty).  Whether the file is still in that
 * state is the caller's to judge.  mbox_index_save writes md's table, the
 * file being in state st, whole when the table is a scan of all of it (not
 * an older index's table with only the appended part scanned, whose front
 * nobody checked against the file); quietly nothing when the directory
 * does not allow it.  mbox_index_drop removes it.
 */
struct stat;
struct mbox_index {
	uint64_t	 size;
	struct timespec	 mtime, ctime;
	int		 whole;		/* as saved */
};
int	mbox_index_load(struct maildrop *, struct mbox_index *);
void	mbox_index_save(const struct maildrop *, const struct stat *,
	    int whole);
void	mbox_index_drop(const struct maildrop *);

/*
 * uidhash.c: the digest behind an mbox UIDL, SipHash-2-4 with 128-bit
 * output, fed incrementally in pieces of any length.  uidhash_init uses
 * the fixed public key of the UIDL; uidhash_init_key any key (the test
 * vectors).  After uidhash_final the state must be initialized again.
 */
struct uidhash {
	uint64_t	 v[4];
	uint64_t	 tail;		/* bytes of an incomplete word, LE */
	uint64_t	 len;		/* bytes so far; len % 8 are in tail */
};
void	uidhash_init(struct uidhash *);
void	uidhash_init_key(struct uidhash *, const unsigned char key[16]);
void	uidhash_update(struct uidhash *, const void *, size_t);
void	uidhash_final(struct uidhash *, unsigned char out[16]);

/* journal.c: crash-safe compaction of an mbox. */
struct jrange {
	uint64_t	 dst, src, len;	/* move [src, src+len) to dst */
};
/*
 * Moves the n ranges (dst below src, in ascending order) of the open mbox
 * md->fd, orig bytes long, through a redo journal beside it and truncates
 * it to final.  MD_OK; MD_PERM when no journal can be created (nothing
 * touched); MD_TEMP on any other failure (the mbox is as it was, or as the
 * journal will complete it at the next journal_recover).
 */
enum md_status	journal_compact(struct maildrop *, const struct jrange *,
	    size_t n, uint64_t orig, uint64_t final);
/*
 * Called at open with the mbox write-locked: replays a complete journal
 * left by a crash, or discards an incomplete one.  MD_OK when the mbox is
 * consistent; MD_TEMP when it could not be made so (logged).
 */
enum md_status	journal_recover(struct maildrop *);

/*
 * Fault injection for tests (built with -DPOP3D_FAULTS only): FAULT(op)
 * before a mutating system call makes it fail, kills the process or stops
 * it, as the environment variable POP3D_FAULT says (journal.c).  PAUSE(point)
 * stops the process (SIGSTOP) when POP3D_PAUSE names that point, so that
 * a test can change the files in a race window and then let it go on.
 * FAIL(point) is true, with errno EIO, when POP3D_FAIL names that point:
 * a read error where one must not be taken for an answer.
 */
#ifdef POP3D_FAULTS
int	fault_check(const char *op);
int	fault_fail(const char *point);
void	fault_pause(const char *point);
#define FAULT(op)	(fault_check(op) == -1)
#define FAIL(point)	fault_fail(point)
#define PAUSE(point)	fault_pause(point)
#else
#define FAULT(op)	0
#define FAIL(point)	0
#define PAUSE(point)	((void)0)
#endif

/* auth.c: credentials. */
/*
 * A credential as the pre-login process hands it to the one that checks
 * it: a fixed-size record, the same in one process and across the pipe.
 */
enum cred_method {
	CRED_USER = 1,		/* USER and PASS: secret is the password */
	CRED_APOP,		/* APOP: secret is the hex digest */
	CRED_PLAIN		/* AUTH PLAIN (RFC 4616): the password */
};

struct cred {
	uint32_t method;
	char	 user[POP3D_MAX_USER + 1];
	char	 secret[POP3D_MAX_SECRET + 1];
};

struct account {
	char	 name[POP3D_MAX_USER + 1];
	uid_t	 uid;
	gid_t	 gid;
	char	 home[1024];
	char	 maildrop[1024];	/* expanded path */
};

enum auth_result {
	AUTH_OK,
	AUTH_FAIL,		/* [AUTH] */
	AUTH_TEMP		/* user database unreadable: [SYS/TEMP] */
};

/*
 * The file auth.c loads libxcrypt from (the Makefile passes the soname of
 * the library it finds: libcrypt.so.2 where the compatibility API is left
 * out, as on Fedora).
 */
#ifndef POP3D_LIBCRYPT
#define POP3D_LIBCRYPT	"libcrypt.so.1"
#endif

/* A user name may be used: 1..POP3D_MAX_USER printable, no '/', no leading '.'. */
int	auth_valid_name(const char *);
/*
 * Checks a credential against the users file (-f) or, without one, the
 * system's users (getpwnam, getspnam; root needed for the shadow file).
 * On AUTH_OK fills acct, with the maildrop template expanded.  An unknown
 * user costs one crypt as a known one does.  Never logs the secret.
 * Loads POP3D_LIBCRYPT into the calling process (AUTH_TEMP when it
 * cannot), which is why pop3d calls it only in a child that exits after
 * the check.
 */
enum auth_result auth_check(const struct config *, const struct cred *,
	    struct account *acct);
/*
 * Decodes base64 (RFC 4648, with padding) of len octets into out of size
 * n.  The number of octets, or -1 on bad input or no room.
 */
int	auth_base64(const char *in, size_t len, unsigned char *out, size_t n);
/*
 * Parses one users-file line (name:hash:uid:gid:maildrop:apop-secret,
 * without its newline) in place; afterwards line is the name, even when
 * the line is malformed.  With acct, also fills it as a login would
 * (maildrop expanded from the line or cfg->maildrop); without, checks only
 * the syntax.  0 with *hash and *apop pointing into line (or at "" when
 * the line ends before them), or -1 with *why saying what is wrong with
 * the line (never the password).
 */
int	auth_parse_line(const struct config *, char *line, struct account *,
	    const char **hash, const char **apop, const char **why);
/*
 * Expands %u (user), %h (home) and %% in tmpl into buf of size n.
 * 0, or -1 on truncation, an unknown escape or a missing home.
 */
int	auth_expand(const char *tmpl, const struct account *, char *buf,
	    size_t n);

/*
 * privsep.c: the pipe between the pre-login process and the parent.
 * Messages are framed (type, length) so that more can be added (a relay
 * for TLS) without changing the existing ones.
 */
enum priv_msg {
	PRIV_CRED = 1,		/* child to parent: struct cred */
	PRIV_VERDICT,		/* parent to child: uint32_t auth_result */
	PRIV_HANDOFF		/* child to parent: bytes read but not used */
};
/*
 * All n bytes to or from fd, retrying after EINTR and short counts: 0, or
 * -1 with errno (EPIPE: end of file before n bytes).  privsep.c's frames
 * and the mbox index (mboxindex.c) go through them.
 */
int	fd_write_all(int fd, const void *, size_t n);
int	fd_read_all(int fd, void *, size_t n);
/* Sends one message; 0 or -1 with errno. */
int	privsep_send(int fd, uint32_t type, const void *, size_t);
/*
 * Receives one message of the given type and exactly len bytes (HANDOFF:
 * at most len, the count in *got).  0, or -1 on EOF, error or a message
 * that does not fit.
 */
int	privsep_recv(int fd, uint32_t type, void *, size_t len, size_t *got);

/* session.c: the POP3 state machine. */
enum state {
	ST_AUTH = 1,
	ST_TRANS = 2
};

struct session;
/* Checks a credential; fills acct on AUTH_OK.  The seam for privsep. */
typedef enum auth_result (*session_verify_fn)(void *ctx,
	    const struct cred *, struct account *acct);

struct session {
	struct io		*io;
	const struct config	*cfg;
	enum state		 state;
	char			 user[POP3D_MAX_USER + 1];	/* after USER */
	int			 fails;
	int			 update_failed;	/* QUIT answered -ERR */
	struct timespec		 cmd_start;	/* when the command (or the
						   SASL response) came */
	struct account		 acct;
	struct maildrop		*md;
	session_verify_fn	 verify;
	void			*verify_ctx;
};

enum session_end {
	SESSION_LOGIN,		/* authenticated: acct is filled */
	SESSION_QUIT,		/* QUIT: deletions applied (or none) */
	SESSION_GONE,		/* EOF, timeout, I/O error: nothing applied */
	SESSION_FAILED		/* too many failures, or UPDATE failed */
};

void	session_init(struct session *, struct io *, const struct config *,
	    session_verify_fn, void *ctx);
/* Sends the greeting. */
void	session_greet(struct session *);
/* Runs AUTHORIZATION until a login, QUIT, failure or end. */
enum session_end session_authorize(struct session *);
/* Runs TRANSACTION on an opened maildrop; QUIT runs UPDATE. */
enum session_end session_transaction(struct session *, struct maildrop *);
/*
 * Parses a message number: digits only, no sign, no overflow.
 * 0 and the number into *n, or -1.
 */
int	session_number(const char *, uint64_t *n);

#endif /* POP3D_H */
