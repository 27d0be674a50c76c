#!/usr/bin/python3
"""End-to-end tests of Maildir maildrops through the real pop3d binary.

The users file names no maildrop, so the template DIR/mail/%u applies, and
DIR/mail/alice is made a Maildir (new/, cur/, tmp/).  Checked: delivery
order, sizes counted and from ,W=, byte-exact RETR and TOP (CRLF files,
dot-stuffing, a last line without newline), UIDLs (the unique part, a
digest for names that are no UIDL, stable across sessions and the move to
cur/), [IN-USE], UPDATE (exactly the deleted files unlinked, the rest moved
from new/ to cur/, flags kept, new mail untouched), a dropped connection,
and files that another client deletes or renames during the session.

Run: /usr/bin/python3 tests/integration/test_maildir.py [test_name ...]
"""
import hashlib
import os
import stat
import sys

sys.dont_write_bytecode = True     # no __pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pop3test import (IS_ROOT, Env, Skip, check, eq, main,  # noqa
                      message, parse_list, parse_stat, parse_uidl,
                      split_lines, stuffed, test, top_stuffed, wire,
                      leave_mid_response, rchar)

PW = "s3cret pass"
SUBS = ("new", "cur", "tmp")


class Maildir:
    """DIR/mail/<user> as a Maildir owned by the mail user."""

    def __init__(self, env, user="alice"):
        self.env = env
        self.root = env.mbox(user)
        os.mkdir(self.root)
        env.own(self.root, 0o700)
        for s in SUBS:
            os.mkdir(self.path(s))
            env.own(self.path(s), 0o700)

    def path(self, rel):
        return os.path.join(self.root, rel)

    def put(self, rel, data):
        """Delivers like an MDA: written in tmp/, renamed into place."""
        tmp = self.path("tmp/.delivering")
        with open(tmp, "wb") as f:
            f.write(data)
        self.env.own(tmp, 0o600)
        os.rename(tmp, self.path(rel))

    def files(self, sub):
        """The regular files of sub/ that are not dot files."""
        return sorted(n for n in os.listdir(self.path(sub))
                      if not n.startswith(".") and
                      stat.S_ISREG(os.lstat(self.path(sub + "/" + n)).st_mode))

    def read(self, rel):
        with open(self.path(rel), "rb") as f:
            return f.read()

    def state(self):
        """Every message file with its content, by directory."""
        return {s: {n: self.read(s + "/" + n) for n in self.files(s)}
                for s in SUBS}


def setup(user="alice"):
    env = Env()
    env.add_user(user, PW)
    return env, Maildir(env, user)


def retr(p, n):
    p.ok("RETR %d" % n)
    return p.multi_raw() + b".\r\n"


def uidls(p):
    return [u for _, u in parse_uidl(p.ok_multi("UIDL"))]


def md5hex(b):
    return hashlib.md5(b).hexdigest()


# ------------------------------------------------------------- listing

@test
def delivery_order_not_readdir_order():
    # Created newest first, scattered over new/ and cur/, with times of
    # different lengths (999 < 1000 as numbers, not as strings).
    times = [1700000300, 999, 1700000100, 1000, 1700000200, 5, 1700000000,
             1700000100]
    names = []
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        for i, t in enumerate(times):
            base = "%d.M%dP%d.host" % (t, i, 100 + i)
            rel = ("new/" + base) if i % 2 else ("cur/" + base + ":2,S")
            md.put(rel, message(i))
            names.append((t, base, i))
        names.sort()
        p = env.session("alice", PW)
        eq(parse_stat(p.ok("STAT"))[0], len(times), "STAT count")
        for n, (_, base, i) in enumerate(names, 1):
            eq(retr(p, n), stuffed(message(i)), "RETR %d" % n)
        eq(uidls(p), [b for _, b, _ in names], "UIDL order")
        p.quit()


@test
def tmp_dot_files_and_non_files_never_shown():
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        md.put("tmp/1700000000.half.host", message(1))
        md.put("new/.1700000001.hidden", message(2))
        md.put("cur/1700000002.shown.host:2,S", message(3))
        os.mkdir(md.path("new/1700000003.dir"))
        os.symlink("../cur/1700000002.shown.host:2,S",
                   md.path("new/1700000004.link"))
        before = md.state()
        p = env.session("alice", PW)
        eq(parse_stat(p.ok("STAT")), (1, len(wire(message(3)))), "STAT")
        eq(uidls(p), ["1700000002.shown.host"], "UIDL")
        p.ok("DELE 1")
        p.quit()
        after = md.state()
        eq(after["tmp"], before["tmp"], "tmp/ untouched")
        eq(after["new"], before["new"], "hidden file untouched")
        eq(after["cur"], {}, "cur/ after DELE")
        check(os.path.isdir(md.path("new/1700000003.dir")), "dir kept")
        check(os.path.islink(md.path("new/1700000004.link")), "link kept")


@test
def log_octet_counts_saturate():
    # ,W= is trusted up to UINT64_MAX and STAT's total saturates; the
    # retrieved and deleted octets in the session's last log line must
    # not wrap either (they said retrieved=2/0 deleted=2/0).
    top = 2 ** 64 - 1
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        md.put("cur/1700000000.M1P1.host,W=%d:2,S" % 2 ** 63, message(1))
        md.put("cur/1700000001.M2P1.host,W=%d:2,S" % 2 ** 63, message(2))
        p = env.session("alice", PW)
        eq(parse_stat(p.ok("STAT")), (2, top), "STAT")
        eq(retr(p, 1), stuffed(message(1)), "RETR 1")
        eq(retr(p, 2), stuffed(message(2)), "RETR 2")
        p.ok("DELE 1")
        p.ok("DELE 2")
        p.quit()
        check("quit: user=alice retrieved=2/%d deleted=2/%d kept=0/0"
              % (top, top) in p.stderr(), "log: %s" % p.stderr())


@test
def empty_maildir():
    with Env() as env:
        env.add_user("alice", PW)
        Maildir(env)
        p = env.session("alice", PW)
        eq(parse_stat(p.ok("STAT")), (0, 0), "STAT")
        eq(p.ok_multi("LIST"), [], "LIST")
        p.err("RETR 1")
        p.quit()


# --------------------------------------------------------------- sizes

MSGS = [
    message(1),                                            # LF
    message(2).replace(b"\n", b"\r\n"),                    # CRLF
    b"Subject: no newline\n\nlast line",                   # no final LF
    b"Subject: cr\r\n\r\nends in CR\r",                    # CR before EOF
    b"Subject: mixed\r\n\nbare\rcr\r\r\nand\n.dot\n..\n.\n",
    b"",                                                   # empty file
    b"no header end\nat all\n",
]


@test
def sizes_counted_and_retr_byte_exact():
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        for i, m in enumerate(MSGS):
            md.put("%s/%d.M%d.host%s" % ("new" if i % 2 else "cur",
                                         1700000000 + i, i,
                                         "" if i % 2 else ":2,S"), m)
        p = env.session("alice", PW)
        eq(parse_stat(p.ok("STAT")),
           (len(MSGS), sum(len(wire(m)) for m in MSGS)), "STAT")
        eq(parse_list(p.ok_multi("LIST")),
           [(i + 1, len(wire(m))) for i, m in enumerate(MSGS)], "LIST")
        for i, m in enumerate(MSGS):
            r = p.ok("RETR %d" % (i + 1))
            check(r.startswith("+OK %d " % len(wire(m))) or
                  r == "+OK %d" % len(wire(m)), "RETR %d: %r" % (i + 1, r))
            eq(p.multi_raw() + b".\r\n", stuffed(m), "RETR %d" % (i + 1))
            for k in (0, 1, 3):
                p.ok("TOP %d %d" % (i + 1, k))
                eq(p.multi_raw() + b".\r\n", top_stuffed(m, k),
                   "TOP %d %d" % (i + 1, k))
        p.quit()


@test
def size_from_w_field():
    m = message(7, body=b".starts with a dot\nline\n..\nlast")
    w = len(wire(m))
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        md.put("new/1700000000.M1P1.host,S=%d,W=%d" % (len(m), w), m)
        md.put("cur/1700000001.M1P1.host,W=%d:2,S" % w, m)
        # A wrong ,W= is taken at its word (as Dovecot does): it is the
        # delivery agent's record, and reading the file is what it spares.
        md.put("new/1700000002.M1P1.host,W=5", m)
        p = env.session("alice", PW)
        eq(parse_list(p.ok_multi("LIST")), [(1, w), (2, w), (3, 5)], "LIST")
        for n in (1, 2):
            r = p.ok("RETR %d" % n)
            check(r.split()[1] == str(w), "RETR %d: %r" % (n, r))
            body = p.multi_raw()
            eq(body, stuffed(m)[:-3], "RETR %d" % n)
            # Exactly W octets once the stuffing is undone.
            eq(sum(len(l) + 2 for l in split_lines(m)), w, "W")
            eq(len(b"".join(l[1:] if l.startswith(b".") else l
                            for l in body.split(b"\r\n")[:-1])) +
               2 * len(split_lines(m)), w, "octets sent")
            for k in (0, 2, 10):
                p.ok("TOP %d %d" % (n, k))
                eq(p.multi_raw() + b".\r\n", top_stuffed(m, k),
                   "TOP %d %d" % (n, k))
        p.quit()


# ---------------------------------------------------------------- UIDL

@test
def uidl_is_the_unique_part_and_stable():
    bases = ["1700000000.M1P1.host", "1700000001.M2P2.host,S=10,W=12",
             "1700000002.M3P3.host"]
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        md.put("new/" + bases[0], message(1))
        md.put("new/" + bases[1], message(2))
        md.put("cur/" + bases[2] + ":2,RS", message(3))
        for _ in range(2):
            p = env.session("alice", PW)
            eq(uidls(p), bases, "UIDL")
            eq(p.ok("UIDL 2"), "+OK 2 " + bases[1], "UIDL 2")
            p.finish()          # no QUIT: nothing moves
        eq(md.files("new"), sorted(bases[:2]), "new/ after dropped sessions")
        # The move to cur/ keeps the ids; so does a later flag change.
        p = env.session("alice", PW)
        p.ok("DELE 3")
        p.quit()
        eq(md.files("new"), [], "new/ after QUIT")
        eq(md.files("cur"), [bases[0] + ":2,", bases[1] + ":2,"], "cur/")
        os.rename(md.path("cur/" + bases[0] + ":2,"),
                  md.path("cur/" + bases[0] + ":2,S"))
        p = env.session("alice", PW)
        eq(uidls(p), bases[:2], "UIDL after the move")
        p.quit()


@test
def names_that_are_no_uidl_get_a_digest():
    long_base = "1700000000." + "x" * 70             # 81 characters
    seventy = "1700000001." + "y" * 59               # 70 characters
    spaced = "1700000002.with space.host"
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        md.put("new/" + long_base, message(1))
        md.put("cur/" + seventy + ":2,S", message(2))
        md.put("new/" + spaced, message(3))
        p = env.session("alice", PW)
        u = uidls(p)
        eq(u, [md5hex(long_base.encode()), seventy,
               md5hex(spaced.encode())], "UIDL")
        eq(len(set(u)), 3, "distinct")
        p.quit()
        p = env.session("alice", PW)
        eq(uidls(p), u, "UIDL in the next session")
        p.quit()


# ------------------------------------------------------------- locking

@test
def second_session_gets_in_use():
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        md.put("new/1700000000.a.host", message(1))
        a = env.session("alice", PW)
        a.ok("DELE 1")
        b = env.start()
        b.ok("USER alice")
        r = b.err("PASS " + PW)
        check(r.startswith("-ERR [IN-USE]"), "second session: %r" % r)
        b.finish()
        a.quit()
        eq(md.files("new") + md.files("cur"), [], "deleted by the first")
        c = env.session("alice", PW)
        eq(parse_stat(c.ok("STAT")), (0, 0), "STAT")
        c.quit()


# -------------------------------------------------------------- UPDATE

def five(md):
    """Three messages in new/, two in cur/; their names in table order."""
    rels = ["new/1700000001.a.host", "cur/1700000002.b.host:2,S",
            "new/1700000003.c.host", "cur/1700000004.d.host:2,RS",
            "new/1700000005.e.host"]
    for i, rel in enumerate(rels):
        md.put(rel, message(i + 1))
    return rels


@test
def dele_and_quit_unlink_exactly_those():
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        five(md)
        p = env.session("alice", PW)
        p.ok("DELE 2")
        p.ok("DELE 3")
        r = p.quit()
        check("3 messages left" in r, "QUIT: %r" % r)
        eq(md.files("new"), [], "new/")
        eq(md.files("cur"), ["1700000001.a.host:2,",
                             "1700000004.d.host:2,RS",
                             "1700000005.e.host:2,"], "cur/")
        eq(md.read("cur/1700000005.e.host:2,"), message(5), "content")
        p = env.session("alice", PW)
        eq([retr(p, n) for n in (1, 2, 3)],
           [stuffed(message(i)) for i in (1, 4, 5)], "what is left")
        p.quit()


@test
def quit_without_dele_moves_new_to_cur():
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        five(md)
        p = env.session("alice", PW)
        retr(p, 1)
        p.quit()
        eq(md.files("new"), [], "new/ after QUIT")
        eq(md.files("cur"), ["1700000001.a.host:2,",
                             "1700000002.b.host:2,S",
                             "1700000003.c.host:2,",
                             "1700000004.d.host:2,RS",
                             "1700000005.e.host:2,"], "cur/ after QUIT")


@test
def rset_then_quit_deletes_nothing():
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        five(md)
        p = env.session("alice", PW)
        p.ok("DELE 1")
        p.ok("DELE 4")
        p.ok("RSET")
        p.quit()
        eq(len(md.files("new") + md.files("cur")), 5, "all five kept")


@test
def dropped_connection_changes_nothing():
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        five(md)
        before = md.state()
        p = env.session("alice", PW)
        retr(p, 1)
        p.ok("DELE 1")
        p.ok("DELE 2")
        p.close_input()         # the client vanishes without QUIT
        p.expect_eof()
        rc = p.wait()
        check(rc != 0, "exit status %d without QUIT" % rc)
        eq(md.state(), before, "Maildir after a dropped connection")


@test
def mail_delivered_during_the_session_stays_new():
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        md.put("new/1700000001.a.host", message(1))
        p = env.session("alice", PW)
        md.put("new/1700000000.early.host", message(2))   # older name, late
        md.put("new/1700000009.late.host", message(3))
        eq(parse_stat(p.ok("STAT"))[0], 1, "STAT")
        p.ok("DELE 1")
        p.quit()
        eq(md.files("new"), ["1700000000.early.host",
                             "1700000009.late.host"], "new/")
        eq(md.files("cur"), [], "cur/")


# ----------------------------------------------- other clients meanwhile

@test
def file_deleted_by_another_client_during_the_session():
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        rels = five(md)
        p = env.session("alice", PW)
        os.unlink(md.path(rels[1]))
        os.unlink(md.path(rels[2]))
        # maildrop_check finds out before the +OK: -ERR, and on it goes.
        r = p.cmd("RETR 2")
        check(r.startswith("-ERR [SYS/TEMP]"),
              "RETR of a vanished file: %r" % r)
        r = p.cmd("TOP 3 1")
        check(r.startswith("-ERR"), "TOP of a vanished file: %r" % r)
        eq(retr(p, 1), stuffed(message(1)), "RETR 1 still works")
        p.ok("DELE 1")
        p.ok("DELE 3")          # gone already: DELE still succeeds
        p.quit()
        eq(md.files("new"), [], "new/")
        eq(md.files("cur"), ["1700000004.d.host:2,RS",
                             "1700000005.e.host:2,"], "cur/")


def w_named(md, ms):
    """Puts messages ms into cur/ under names with ,S= and ,W=, so that
    login reads none of them; returns their paths in the Maildir."""
    rels = ["cur/170000000%d.M%dP1.host,S=%d,W=%d:2,S"
            % (i, i, len(m), len(wire(m))) for i, m in enumerate(ms)]
    for rel, m in zip(rels, ms):
        md.put(rel, m)
    return rels


@test
def file_replaced_or_unreadable_during_the_session():
    """A message file that became a FIFO, or unreadable, after login gets
    -ERR [SYS/TEMP] before any +OK (RETR and TOP), and the session goes on.
    The sizes come from ,W=, so pop3d never read these files at login:
    the open before the +OK is the first to find out."""
    ms = [message(i + 1) for i in range(3)]
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        rels = w_named(md, ms)
        p = env.session("alice", PW)
        os.unlink(md.path(rels[0]))
        os.mkfifo(md.path(rels[0]), 0o600)
        env.own(md.path(rels[0]), 0o600)
        os.chmod(md.path(rels[1]), 0)
        for cmd in ("RETR 1", "TOP 1 0", "RETR 2", "TOP 2 1"):
            r = p.cmd(cmd)
            check(r.startswith("-ERR [SYS/TEMP]"), "%s: %r" % (cmd, r))
        p.ok("NOOP")
        eq(retr(p, 3), stuffed(ms[2]), "RETR 3 after the refusals")
        p.quit()
        eq(md.read(rels[2]), ms[2], "message 3 kept")
        eq(os.stat(md.path(rels[1])).st_size, len(ms[1]), "message 2 kept")


@test
def retr_leaves_atime_alone_and_reads_files_of_another_owner():
    """RETR opens a message file with O_NOATIME, so a download does not
    write the inode's atime (relatime would: the file is newer than its
    atime).  A file the mail user does not own refuses the flag (EPERM):
    it is opened without it and sent all the same.  Sizes from ,W=, so
    login reads none of the files."""
    if not IS_ROOT:
        raise Skip("a file of another owner needs root to make")
    ms = [message(i + 1) for i in range(3)]
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        rels = w_named(md, ms)
        old = 946684800                         # 2000-01-01
        st = os.stat(md.path(rels[1]))
        os.utime(md.path(rels[1]), ns=(old * 10**9, st.st_mtime_ns))
        os.chown(md.path(rels[0]), 0, 0)        # root's, readable by all
        os.chmod(md.path(rels[0]), 0o644)
        p = env.session("alice", PW)
        eq(retr(p, 2), stuffed(ms[1]), "RETR 2")
        eq(int(os.stat(md.path(rels[1])).st_atime), old, "atime of 2")
        eq(retr(p, 1), stuffed(ms[0]), "RETR 1 (root's file)")
        eq(retr(p, 3), stuffed(ms[2]), "RETR 3 after the EPERM")
        p.ok("TOP 1 0")
        p.multi_raw()
        p.quit()


@test
def quit_succeeds_when_a_deleted_file_vanished():
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        rels = five(md)
        p = env.session("alice", PW)
        p.ok("DELE 2")
        p.ok("DELE 4")
        os.unlink(md.path(rels[1]))     # another client was first
        os.unlink(md.path(rels[4]))     # and removed a kept one too
        p.quit()
        eq(md.files("new"), [], "new/")
        eq(md.files("cur"), ["1700000001.a.host:2,",
                             "1700000003.c.host:2,"], "cur/")


@test
def files_renamed_by_another_client_are_followed():
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        rels = five(md)
        p = env.session("alice", PW)
        u = uidls(p)
        # An IMAP server: new/ to cur/, and flag changes in cur/.
        os.rename(md.path(rels[0]), md.path("cur/1700000001.a.host:2,S"))
        os.rename(md.path(rels[1]), md.path("cur/1700000002.b.host:2,ST"))
        os.rename(md.path(rels[2]), md.path("cur/1700000003.c.host:2,"))
        eq(retr(p, 1), stuffed(message(1)), "RETR 1")
        p.ok("TOP 2 1")
        eq(p.multi_raw() + b".\r\n", top_stuffed(message(2), 1), "TOP 2 1")
        eq(uidls(p), u, "UIDL")
        p.ok("DELE 1")
        p.ok("DELE 2")
        p.ok("DELE 3")
        p.quit()
        eq(md.files("new"), [], "new/")
        eq(md.files("cur"), ["1700000004.d.host:2,RS",
                             "1700000005.e.host:2,"], "cur/")


@test
def copies_of_one_unique_part_are_never_followed():
    # new/X and cur/X:2,S share their unique part: two messages.  When
    # one's file vanishes, the file left under that unique part is the
    # other's: RETR must not send it as the first, nor UPDATE unlink it
    # for the first's DELE.  Renamed away, a copy is not followed either.
    a = message(1, body=b"copy A\n")
    b = message(2, body=b"copy B, must survive\n")
    for how in ("retr", "quit", "both renamed"):
        with Env() as env:
            env.add_user("alice", PW)
            md = Maildir(env)
            md.put("new/1700000000.x.host", a)
            md.put("cur/1700000000.x.host:2,S", b)
            p = env.session("alice", PW)
            eq(parse_stat(p.ok("STAT"))[0], 2, "STAT")
            os.unlink(md.path("new/1700000000.x.host"))  # expunged
            left = {"1700000000.x.host:2,S": b}
            if how == "both renamed":
                os.rename(md.path("cur/1700000000.x.host:2,S"),
                          md.path("cur/1700000000.x.host:2,ST"))
                left = {"1700000000.x.host:2,ST": b}
                r = p.err("RETR 2")
                check("[SYS/TEMP]" in r, "RETR 2: %r" % r)
                p.ok("DELE 2")
            if how != "quit":
                r = p.err("RETR 1")
                check("[SYS/TEMP]" in r, "RETR 1: %r" % r)
            if how == "retr":
                eq(retr(p, 2), stuffed(b), "RETR 2")
            p.ok("DELE 1")
            p.quit()
            eq(md.state()["cur"], left, "%s: cur/ after QUIT" % how)
            eq(md.state()["new"], {}, "%s: new/ after QUIT" % how)


@test
def hostile_names_forge_no_log_lines():
    # A DEL and an 8-bit byte (two in UTF-8) too: each logged as '?'.
    evil = "1700000000.evil\x7f\xe9\npop3d[1] forged line"
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        md.put("new/" + evil, message(1))
        md.put("new/1700000001.ok.host", message(2))
        p = env.session("alice", PW)
        eq(uidls(p), [md5hex(evil.encode()), "1700000001.ok.host"], "UIDL")
        os.unlink(md.path("new/" + evil))
        check(p.cmd("RETR 1").startswith("-ERR"), "RETR of the vanished")
        p.ok("DELE 1")
        p.quit()
        err = p.stderr()
        check("evil????pop3d[1] forged line" in err, "logged: %r" % err)
        check("\npop3d[1] forged" not in err, "forged: %r" % err)


@test
def maildir_without_write_access_is_refused_cleanly():
    with Env() as env:
        env.add_user("alice", PW)
        md = Maildir(env)
        md.put("new/1700000000.a.host", message(1))
        os.chmod(md.root, 0o500)    # no lock file can be created
        try:
            p = env.start()
            p.ok("USER alice")
            r = p.cmd("PASS " + PW)
            check(r.startswith("-ERR [SYS/PERM]"), "PASS: %r" % r)
            p.finish()
        finally:
            os.chmod(md.root, 0o700)
        eq(md.files("new"), ["1700000000.a.host"], "untouched")


@test
def client_gone_during_a_long_retr_stops_the_reading():
    # As test_hostile.py's for mbox: a client that leaves a little way
    # into a 24 MB message leaves pop3d reading no more of it, the message
    # is not counted as retrieved, and nothing moves or goes.
    env, md = setup()
    big = message(2, body=b"".join(b"line %07d of a long message\n" % i
                                   for i in range(800000)))
    with env:
        md.put("cur/1700000001.M1P1.h:2,S", message(1))
        md.put("cur/1700000002.M2P1.h:2,S", big)
        before_state = md.state()
        p = env.session("alice", PW)
        before = rchar(p.proc.pid)
        p.send("RETR 2\r\n")
        n, log = leave_mid_response(p, 200 * 1000)
        check(n - before < 8 * 1000 * 1000, "read %d bytes of a %d-byte "
              "message after the client left" % (n - before, len(big)))
        check("retrieved=0/0" in log, "a message the client never got "
              "counted as retrieved: %r" % log[-300:])
        eq(md.state() == before_state, True, "Maildir untouched")


if __name__ == "__main__":
    main()
