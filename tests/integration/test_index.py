#!/usr/bin/python3
"""End-to-end tests of the mbox index (".<mbox>.pop3d-index", mboxindex.c)
through the real pop3d binary, as the mail user after privileges drop.

The index is written only for an mbox unwritten for over a second (the
settle time), so each test writes its mboxes first and waits once.  The
log line after login says how the table was built ("table=scan",
"table=index", "table=index+scan"); every test checks it as well as what
the client sees, which must be what a scan of the file gives.
Unit tests (tests/unit/test_index.c) cover damaged, forged and stale
indexes; these check the real process: the file's owner and mode, the
spool directory's rules, appends by a delivery agent, UPDATE.

Run: /usr/bin/python3 tests/integration/test_index.py [test_name ...]
"""
import os
import re
import stat
import sys
import time

sys.dont_write_bytecode = True     # no __pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pop3test import (IS_ROOT, MAIL_UID, Env, check, envelope,  # noqa
                      eq, main, mbox_bytes, message, parse_list,
                      parse_stat, parse_uidl, stuffed, test)

PW = "index pw"
SETTLE = 2.2    # seconds: over pop3d's one settle second, with margin


def index_path(env, user):
    return os.path.join(env.maildir, ".%s.pop3d-index" % user)


def table_source(p):
    """How the table of p's session was built, from its log line."""
    m = re.findall(r"maildrop=\S+ messages=\d+ octets=\d+ table=(\S+)",
                   p.stderr())
    check(len(m) == 1, "no (or more than one) table= in the log: %r"
          % p.stderr()[-500:])
    return m[0]


def view(env, user):
    """One session that lists everything and quits: (source, STAT, LIST,
    UIDL)."""
    p = env.session(user, PW)
    st = parse_stat(p.ok("STAT"))
    ls = parse_list(p.ok_multi("LIST"))
    us = parse_uidl(p.ok_multi("UIDL"))
    p.quit()
    return table_source(p), st, ls, us


def retr(p, n):
    p.ok("RETR %d" % n)
    return p.multi_raw() + b".\r\n"


@test
def index_written_for_the_next_session_and_used():
    ms = [message(i) for i in range(1, 9)]
    with Env() as env:
        env.add_user("alice", PW)
        env.write_mbox("alice", ms)
        time.sleep(SETTLE)
        src1, st1, ls1, us1 = view(env, "alice")
        eq(src1, "scan", "first session")
        ix = os.lstat(index_path(env, "alice"))
        check(stat.S_ISREG(ix.st_mode), "index is not a plain file")
        eq(stat.S_IMODE(ix.st_mode), 0o600, "index mode")
        eq(ix.st_uid, MAIL_UID, "index owner (the mail user)")
        src2, st2, ls2, us2 = view(env, "alice")
        eq(src2, "index", "second session")
        eq((st2, ls2, us2), (st1, ls1, us1), "what the client sees")
        # And the bytes RETR sends come from the right offsets.
        p = env.session("alice", PW)
        for n in (1, 4, 8):
            eq(retr(p, n), stuffed(ms[n - 1]), "RETR %d" % n)
        p.quit()
        eq(table_source(p), "index", "third session")


@test
def appended_mail_is_scanned_alone_and_listed():
    ms = [message(i) for i in range(1, 6)]
    new = [message(i) for i in range(20, 23)]
    with Env() as env:
        env.add_user("bob", PW)
        env.write_mbox("bob", ms)
        time.sleep(SETTLE)
        src, _, ls1, us1 = view(env, "bob")
        eq(src, "scan", "first session")
        env.append_mbox("bob", new)        # a delivery agent's append
        src, st, ls, us = view(env, "bob")
        eq(src, "index+scan", "after new mail")
        eq(st[0], 8, "messages after new mail")
        eq(us[:5], us1, "UIDLs of the old messages")
        eq(ls[:5], ls1, "sizes of the old messages")
        p = env.session("bob", PW)
        for n in (5, 6, 8):
            want = ms[n - 1] if n <= 5 else new[n - 6]
            eq(retr(p, n), stuffed(want), "RETR %d" % n)
        # Deleting old and new mail works from such a table.
        p.ok("DELE 2")
        p.ok("DELE 7")
        p.quit()
        kept = ([(envelope(i), ms[i - 1]) for i in (1, 3, 4, 5)] +
                [(envelope(100 + i), new[i]) for i in (0, 2)])
        eq(env.read_mbox("bob"), mbox_bytes(kept), "the mbox after UPDATE")
        check(not os.path.exists(index_path(env, "bob")),
              "the index outlived the UPDATE that made it stale")
        src, st, _, _ = view(env, "bob")
        eq(src, "scan", "after UPDATE")
        eq(st[0], len(kept), "messages after UPDATE")


@test
def rewritten_mbox_is_scanned_again():
    ms = [message(i) for i in range(1, 6)]
    with Env() as env:
        env.add_user("carol", PW)
        env.write_mbox("carol", ms)
        time.sleep(SETTLE)
        src, _, _, us1 = view(env, "carol")
        eq(src, "scan", "first session")
        # A mail reader expunges message 2 and new mail comes in: the
        # file grew, but not by appending.
        env.write_mbox("carol", [(envelope(i), ms[i - 1])
                                 for i in (1, 3, 4, 5)] +
                       [(envelope(30), message(30)),
                        (envelope(31), message(31))])
        src, st, _, us = view(env, "carol")
        eq(src, "scan", "after a rewrite")
        eq(st[0], 6, "messages")
        eq([u for _, u in us[:4]], [u for _, u in us1[:1] + us1[2:]],
           "UIDLs of the kept messages")


@test
def no_index_where_the_mail_user_cannot_write():
    # The mbox sits in a directory the mail user may not write to (a
    # spool without the group, a read-only home): sessions work, scan
    # each time, and leave nothing behind.
    ms = [message(i) for i in range(1, 4)]
    with Env() as env:
        sub = os.path.join(env.dir, "ro")
        os.mkdir(sub)
        path = os.path.join(sub, "dave")
        with open(path, "wb") as f:
            f.write(mbox_bytes(ms))
        env.own(path, 0o600)
        os.chmod(sub, 0o755)        # root's (or ours, then made 0555)
        if not IS_ROOT:
            os.chmod(sub, 0o555)
        env.add_user("dave", PW, maildrop=path)
        time.sleep(SETTLE)
        for i in range(2):
            p = env.session("dave", PW)
            eq(parse_stat(p.ok("STAT"))[0], 3, "STAT")
            p.quit()
            eq(table_source(p), "scan", "session %d" % (i + 1))
        if not IS_ROOT:
            os.chmod(sub, 0o755)
        eq(sorted(os.listdir(sub)), ["dave"], "files beside the mbox")


@test
def index_saved_after_an_append_is_not_trusted_whole():
    # A reader swaps message 2 for another of the same size in place, then
    # mail is appended: the append check passes (the last message is
    # still where it was), so the front of the table is the old index's.
    # The session that saves that table must not make it a fresh index:
    # the next one would send X's bytes under B's UIDL (RETR skips its
    # re-read on a settled file it thinks it has scanned).
    a, c, d = message(1), message(3), message(4)
    b = message(2, subject=b"message B", body=b"bbbb\n")
    x = message(2, subject=b"message X", body=b"xxxx\n")
    eq(len(b), len(x), "B and X")
    with Env() as env:
        env.add_user("erin", PW)
        env.write_mbox("erin", [a, b, c, d])
        time.sleep(SETTLE)
        src, _, _, us1 = view(env, "erin")
        eq(src, "scan", "first session")
        env.write_mbox("erin", [a, x, c, d])     # in place, same size
        env.append_mbox("erin", [message(9)])
        time.sleep(SETTLE)
        src, _, _, us2 = view(env, "erin")
        eq(src, "index+scan", "after the rewrite and the append (else "
           "this test proves nothing)")
        p = env.session("erin", PW)
        us3 = parse_uidl(p.ok_multi("UIDL"))
        r = p.cmd("RETR 2")
        if r.startswith("+OK"):
            got = p.multi_raw() + b".\r\n"
            check(got != stuffed(x) or us3[1] != us1[1],
                  "RETR 2 sent X under B's UIDL %s" % us1[1][1])
            eq(got, stuffed(x), "RETR 2")
        else:
            check(r.startswith("-ERR [SYS/TEMP]"), "RETR 2: %r" % r)
        eq(retr(p, 4), stuffed(d), "RETR 4 (untouched, as its neighbour)")
        p.quit()
        # Once the file is scanned whole, message 2 is X, under X's UIDL.
        p = env.session("erin", PW)
        us = parse_uidl(p.ok_multi("UIDL"))
        eq(retr(p, 2), stuffed(x), "RETR 2 in the session after")
        p.quit()
        eq(table_source(p), "scan", "the session after")
        check(us[1][1] != us1[1][1], "X kept B's UIDL")
        eq([u for _, u in us[:1] + us[2:]],
           [u for _, u in us2[:1] + us2[2:]], "the other UIDLs")


if __name__ == "__main__":
    main()
