/*
 * maildir.c: Maildir maildrops behind the maildrop interface.
 * (Placeholder until the Maildir store lands: every Maildir is refused.)
 */
#include <syslog.h>

#include "pop3d.h"

static enum md_status
maildir_open(struct maildrop *md)
{
	log_msg(LOG_ERR, "maildrop %s: Maildir is not supported yet", md->path);
	return MD_PERM;
}

static void
maildir_close(struct maildrop *md)
{
	(void)md;
}

const struct maildrop_ops maildir_ops = {
	.name = "maildir",
	.open = maildir_open,
	.close = maildir_close,
};
