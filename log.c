/*
 * log.c: where diagnostics go.
 *
 * syslog(3) with facility LOG_MAIL by default.  Under inetd or systemd fd 2
 * may be the client's connection, so stderr is used only when asked (-e),
 * for the journal or for tests.  Runs as whatever user the caller is.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "pop3d.h"

static int log_stderr;

void
log_init(int to_stderr)
{
	log_stderr = to_stderr;
	if (!log_stderr)
		openlog("pop3d", LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_msg(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (log_stderr) {
		char buf[1024];

		vsnprintf(buf, sizeof(buf), fmt, ap);
		/* One write per line, so concurrent sessions do not interleave. */
		dprintf(STDERR_FILENO, "pop3d[%ld]: %s\n", (long)getpid(), buf);
	} else
		vsyslog(prio, fmt, ap);
	va_end(ap);
}

const char *
log_value(char *buf, size_t size, const char *s)
{
	const unsigned char *p;
	size_t n = 0;

	for (p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == '"' || *p == '\\' ||
		    *p == '=')
			break;
	if (*p == '\0' && p != (const unsigned char *)s)
		return s;
	if (size < 6)
		return "\"\"";
	buf[n++] = '"';
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		char one[5];
		size_t k;

		if (*p < ' ' || *p >= 0x7f)
			k = (size_t)snprintf(one, sizeof(one), "\\x%02x", *p);
		else if (*p == '"' || *p == '\\')
			k = (size_t)snprintf(one, sizeof(one), "\\%c", *p);
		else {
			one[0] = (char)*p;
			k = 1;
		}
		if (n + k + 2 > size) {		/* room for '"' and NUL */
			while (n + 5 > size)
				n--;
			memcpy(buf + n, "...", 3);
			n += 3;
			break;
		}
		memcpy(buf + n, one, k);
		n += k;
	}
	buf[n++] = '"';
	buf[n] = '\0';
	return buf;
}

