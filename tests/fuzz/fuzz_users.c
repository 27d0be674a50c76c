/*
 * fuzz_users.c: libFuzzer target for the users-file parser
 * (auth_parse_line, with the maildrop template expansion behind it).
 *
 * The input is a users file.  It is cut into lines as file_lookup cuts
 * it (a CR before the LF dropped; comments, empty lines and lines with
 * NUL skipped) and each line is
 * parsed on a heap copy of its exact size, once for the syntax only and
 * once as a login would, with one of two maildrop templates.  A parsed
 * line must give an account that is safe to use: a valid name, neither
 * uid nor gid 0, a bounded maildrop path.  Runs as whoever runs the
 * fuzzer (as root, lines without a uid are refused, as pop3d refuses
 * them).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pop3d.h"
#include "fuzz.h"

static const struct config cfg_mail = { .maildrop = "/var/mail/%u" };
static const struct config cfg_home = { .maildrop = "%h/Maildir/%%%u" };

static int
inside(const char *p, const char *buf, size_t n)
{
	return p >= buf && p <= buf + n;
}

/* Parses a fresh copy of line (n bytes, no NUL); the result. */
static int
parse(const struct config *cfg, const char *line, size_t n, int fill)
{
	struct account acct;
	const char *hash = NULL, *apop = NULL, *why = NULL;
	const char *colon = memchr(line, ':', n), *ctl = NULL;
	char *copy = malloc(n + 1);
	size_t i;
	int r;

	CHECK(copy != NULL);
	memcpy(copy, line, n);
	copy[n] = '\0';
	memset(&acct, 0xa5, sizeof(acct));
	r = auth_parse_line(cfg, copy, fill ? &acct : NULL, &hash, &apop,
	    &why);
	CHECK(r == 0 || r == -1);
	for (i = 0; i < n && ctl == NULL; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			ctl = line + i;
	/* A control character anywhere makes the line malformed. */
	CHECK(ctl == NULL || r == -1);
	/*
	 * The line is cut in place: what is left at its start is the name,
	 * unless a control character before the first ':' ended the parse.
	 */
	if (ctl != NULL && (colon == NULL || ctl < colon))
		CHECK(strlen(copy) == n);
	else
		CHECK(strlen(copy) == (colon != NULL ?
		    (size_t)(colon - line) : n));
	if (r == -1) {
		CHECK(why != NULL && why[0] != '\0');
	} else {
		CHECK(auth_valid_name(copy));
		/* A field the line does not reach is "". */
		CHECK(inside(hash, copy, n) || *hash == '\0');
		CHECK(inside(apop, copy, n) || *apop == '\0');
		CHECK(strchr(hash, ':') == NULL && strchr(apop, ':') == NULL);
	}
	if (r == 0 && fill) {
		CHECK(memchr(acct.name, '\0', sizeof(acct.name)) != NULL);
		CHECK(strcmp(acct.name, copy) == 0);
		CHECK(acct.uid != 0 && acct.gid != 0);
		CHECK(memchr(acct.home, '\0', sizeof(acct.home)) != NULL);
		CHECK(memchr(acct.maildrop, '\0', sizeof(acct.maildrop)) !=
		    NULL);
		CHECK(acct.maildrop[0] != '\0');
	}
	free(copy);
	return r;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	size_t lineno = 0;

	while (p < end) {
		const char *lf = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((lf != NULL ? lf : end) - p), m = n;

		/* file_lookup drops a CR before the LF (CRLF files)... */
		if (m > 0 && p[m - 1] == '\r')
			m--;
		/* ...and skips these before parsing. */
		if (m > 0 && p[0] != '#' && memchr(p, '\0', m) == NULL) {
			/* getpwuid is slow: one template per line, in turn. */
			int syntax = parse(&cfg_mail, p, m, 0);
			int full = parse(lineno % 2 ? &cfg_home : &cfg_mail, p,
			    m, 1);

			/* A full parse is the syntax check and more. */
			CHECK(syntax == 0 || full == -1);
		}
		p += n + 1;
		lineno++;
	}
	return 0;
}
