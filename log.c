/*
 * log.c: where diagnostics go.
 *
 * syslog(3) with facility LOG_MAIL by default.  Under inetd or systemd fd 2
 * may be the client's connection, so stderr is used only when asked (-e),
 * for the journal or for tests.  Runs as whatever user the caller is.
 */
#include <stdarg.h>
#include <stdio.h>
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
