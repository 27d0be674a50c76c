/*
 * bench/readfiles: the floor of reading a Maildir, for bench/run's RETR
 * table.  Reads every file named in a NUL-separated list (paths relative
 * to DIR) the way pop3d reads a message, openat + pread into a 64 KiB
 * buffer until the size fstat gave at open... without the fstat: pop3d
 * knows sizes from its scan, so here the reads stop at a short read or
 * EOF.  Nothing is written.  Usage: readfiles DIR LIST
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
	static char buf[64 * 1024];
	char *list, *p, *end;
	long long total = 0;
	FILE *f;
	long n;
	int dfd;

	if (argc != 3 || (dfd = open(argv[1], O_RDONLY | O_DIRECTORY)) == -1 ||
	    (f = fopen(argv[2], "rb")) == NULL)
		return 2;
	if (fseek(f, 0, SEEK_END) == -1 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) == -1 || (list = malloc((size_t)n + 1)) ==
	    NULL || fread(list, 1, (size_t)n, f) != (size_t)n)
		return 2;
	list[n] = '\0';
	end = list + n;
	for (p = list; p < end; p += strlen(p) + 1) {
		off_t off = 0;
		ssize_t r;
		int fd;

		fd = openat(dfd, p, O_RDONLY | O_NOFOLLOW | O_NOCTTY |
		    O_NONBLOCK | O_NOATIME | O_CLOEXEC);
		if (fd == -1)
			return 1;
		while ((r = pread(fd, buf, sizeof(buf), off)) > 0) {
			off += r;
			total += r;
			if ((size_t)r < sizeof(buf))
				break;
		}
		(void)close(fd);
	}
	printf("%lld\n", total);
	return 0;
}
