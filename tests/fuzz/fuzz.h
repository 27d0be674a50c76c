/*
 * fuzz.h: what the libFuzzer targets in tests/fuzz/ share: the entry
 * points and CHECK, which reports a broken property and aborts, so that
 * libFuzzer keeps the input as a crash.
 *
 * A target whose library code logs (log_msg to stderr) runs with
 * -close_fd_mask=2; fuzz_report_init, called from LLVMFuzzerInitialize
 * (which runs before libFuzzer closes stderr), keeps CHECK's own copy.
 * fuzz_on_exit registers what removes a target's temporary files, so that
 * it runs at the end and also after a finding.
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sanitizer/common_interface_defs.h>

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int fuzz_report_fd = STDERR_FILENO;
static void (*fuzz_cleanup)(void);

static inline void
fuzz_report_init(void)
{
	int fd = dup(STDERR_FILENO);

	if (fd != -1)
		fuzz_report_fd = fd;
}

static inline void
fuzz_on_exit(void (*fn)(void))
{
	fuzz_cleanup = fn;
	(void)atexit(fn);
	__sanitizer_set_death_callback(fn);
}

static inline void
fuzz_fail(const char *file, int line, const char *what)
{
	dprintf(fuzz_report_fd, "%s:%d: check failed: %s\n", file, line,
	    what);
	if (fuzz_cleanup != NULL)
		fuzz_cleanup();
	abort();
}

/*
 * The references' reading of RFC 1939 §3, shared by fuzz_mbox and
 * fuzz_maildir (never by the server): a line ends just after its LF, or
 * at n; what it sends is its text without LF, a CR before the LF or a
 * final CR, and then CRLF.
 */
static inline size_t
line_end(const unsigned char *p, size_t n, size_t pos)
{
	const unsigned char *lf = memchr(p + pos, '\n', n - pos);

	return lf != NULL ? (size_t)(lf - p) + 1 : n;
}

static inline size_t
line_text(const unsigned char *l, size_t len)
{
	if (len > 0 && l[len - 1] == '\n')
		len--;
	if (len > 0 && l[len - 1] == '\r')
		len--;
	return len;
}

/* Octets as sent, unstuffed: every line's text and a CRLF. */
static inline uint64_t
ref_octets(const unsigned char *p, size_t n)
{
	uint64_t total = 0;
	size_t pos = 0;

	while (pos < n) {
		size_t end = line_end(p, n, pos);

		total += line_text(p + pos, end - pos) + 2;
		pos = end;
	}
	return total;
}

#define CHECK(cond) do {						\
	if (!(cond))							\
		fuzz_fail(__FILE__, __LINE__, #cond);			\
} while (0)

static char *fuzz_dir;

/* Removes the target's directory and whatever a session left in it. */
static void
fuzz_rmdir(void)
{
	struct dirent *de;
	DIR *d;
	char p[512];

	if (fuzz_dir == NULL || fuzz_dir[0] == '\0' ||
	    (d = opendir(fuzz_dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0 &&
		    (size_t)snprintf(p, sizeof(p), "%s/%s", fuzz_dir,
		    de->d_name) < sizeof(p))
			(void)unlink(p);
	(void)closedir(d);
	(void)rmdir(fuzz_dir);
}

/*
 * Makes a private directory (in /dev/shm when it can) into dir, of n
 * bytes, removed with its contents at exit and after a finding.
 */
static inline void
fuzz_tmpdir(char *dir, size_t n)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" :
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";

	CHECK((size_t)snprintf(dir, n, "%s/pop3d-fuzz.XXXXXX", base) < n);
	CHECK(mkdtemp(dir) != NULL);
	fuzz_dir = dir;
	fuzz_on_exit(fuzz_rmdir);
}

/* A growing byte buffer (the targets' inputs and expected outputs). */
struct buf {
	unsigned char	*p;
	size_t		 len, cap;
};

static inline void
buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap > 0 ? b->cap : 4096;

		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		CHECK(b->p != NULL);
		b->cap = cap;
	}
	if (p != NULL && n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

#endif /* FUZZ_H */
