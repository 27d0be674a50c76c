#!/usr/bin/python3
"""Hostile and odd maildrops: served correctly or refused clearly, never a
crash or a hang, and mail is never lost.

  - refused with -ERR [SYS/PERM] and left untouched: files that are not an
    mbox, a symlink (O_NOFOLLOW), a directory that is not a Maildir, an
    unreadable or read-only file, a FIFO and a device node;
  - served byte-exact (LIST sizes = the octets RETR sends): an empty or
    missing mbox, CRLF line ends, NUL and 8-bit bytes, bare CRs, 10 MB
    lines (envelope, header, body), lines across the scanner's 1 MiB and
    the writer's 64 KiB buffer boundaries, messages with no body, no bytes
    at all, or no final newline; 200,000 tiny messages; an mbox over 4 GiB
    (sparse) with messages behind the 4 GiB mark;
  - UIDL across sessions: stable under appends, deletions of others, the
    headers mail readers add; identical copies get distinct, stable ids;
  - foreign rewrites during a session (a mail reader expunged or rewrote
    the mbox): RETR/TOP and UPDATE answer -ERR [SYS/TEMP] and write nothing;
    a rewrite while RETR sends ends the connection before the final ".".

Run: /usr/bin/python3 tests/integration/test_hostile.py [test_name ...]
"""
import os
import random
import re
import shutil
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deliver  # noqa: E402
from pop3test import (IS_ROOT, MAIL_GID, MAIL_UID, READ_TIMEOUT, SLOW,  # noqa
                      Env, Skip, TestFailure, check, envelope, eq, fail,
                      main, mbox_bytes, message, pairs, parse_list,
                      parse_stat, parse_uidl, short, split_lines, stuffed,
                      test, top_stuffed, wire, read_multi,
                      leave_mid_response, rchar)

USER, PW = "u", "pw"


def mailbuf():
    """POP3D_MAILBUF from pop3d.h: the mbox scanner's and RETR's read size,
    read from the source so that the boundary tests below stay on the
    boundaries when it changes."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                       "pop3d.h")
    with open(src) as f:
        m = re.search(r"#define\s+POP3D_MAILBUF\s+\((\d+) \* (\d+)\)",
                      f.read())
    if m is None:
        raise SystemExit("test_hostile: no POP3D_MAILBUF in pop3d.h")
    return int(m.group(1)) * int(m.group(2))


SCAN_BUF = COPY_BUF = mailbuf()


# ---------------------------------------------------------------- helpers

def new_env(msgs=None, raw=None):
    env = Env()
    env.add_user(USER, PW)
    if msgs is not None or raw is not None:
        env.write_mbox(USER, msgs or [], raw=raw)
    return env


def retr(p, n, timeout=None):
    """RETR n: what follows +OK, terminator included."""
    r = p.ok("RETR %d" % n, timeout)
    return r, read_multi(p, timeout) + b".\r\n"


def unstuff(raw):
    """The octets of a RETR body before stuffing (CRLF line ends)."""
    body = raw[:-3]
    return b"".join((l[1:] if l.startswith(b".") else l) + b"\r\n"
                    for l in body.split(b"\r\n")[:-1])


def multi_lines(p, command, timeout=None):
    p.ok(command, timeout)
    body = read_multi(p, timeout)
    return [l.decode("latin-1") for l in body.split(b"\r\n")[:-1]]


def uidl_list(p, timeout=None):
    return [u for _, u in parse_uidl(multi_lines(p, "UIDL", timeout))]


def serve_exact(p, msgs, top=True):
    """STAT, LIST, UIDL, RETR and TOP of every message, byte-exact."""
    ms = [m for _, m in pairs(msgs)]
    n, octets = parse_stat(p.ok("STAT"))
    eq(n, len(ms), "STAT count")
    eq(octets, sum(len(wire(m)) for m in ms), "STAT octets")
    eq(parse_list(multi_lines(p, "LIST")),
       [(i + 1, len(wire(m))) for i, m in enumerate(ms)], "LIST")
    uids = uidl_list(p)
    eq(len(uids), n, "UIDL lines")
    eq(len(set(uids)), n, "distinct UIDLs")
    for i, m in enumerate(ms):
        r, raw = retr(p, i + 1)
        eq(r.split()[:2], ["+OK", str(len(wire(m)))], "RETR %d answer"
           % (i + 1))
        eq(raw, stuffed(m), "RETR %d" % (i + 1))
        if top:
            for k in (0, 1):
                p.ok("TOP %d %d" % (i + 1, k))
                eq(read_multi(p) + b".\r\n", top_stuffed(m, k),
                   "TOP %d %d" % (i + 1, k))
    return uids


def refused(env, code="SYS/PERM", user=USER, log=None):
    """Login; PASS must answer -ERR [code], then the connection closes.
    log: what the log must say about it."""
    p = env.start()
    p.ok("USER " + user)
    r = p.cmd("PASS " + PW, timeout=20 * SLOW)
    check(r.startswith("-ERR [%s]" % code), "PASS answered %r, expected "
          "-ERR [%s]" % (r, code))
    p.expect_eof()
    p.close_input()
    eq(p.wait(), 2, "exit status after a refused maildrop")
    if log is not None:
        check(log in p.stderr(), "the log does not say %r: %r"
              % (log, p.stderr()[-300:]))
    return r


def snapshot(path):
    """What must stay as it was: bytes (or link target), type, mode, owner,
    times, inode."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        content = os.readlink(path)
    elif stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            content = f.read()
    elif stat.S_ISDIR(st.st_mode):
        content = sorted(os.listdir(path))
    else:
        content = None
    return (content, st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns,
            st.st_ino, st.st_size)


def dir_files(env):
    """The mail directory's files, but for the index that a session may
    leave for the next (test_index.py)."""
    return sorted(f for f in os.listdir(env.maildir)
                  if not f.endswith(".pop3d-index"))


def vm_hwm_kb(p):
    """Peak RSS of the pop3d process serving the session, in kB."""
    with open("/proc/%d/status" % p.proc.pid) as f:
        for l in f:
            if l.startswith("VmHWM:"):
                return int(l.split()[1])
    return 0


def sanitized(p):
    """Built with ASan: RSS says nothing about pop3d's own buffers."""
    try:
        with open("/proc/%d/maps" % p.proc.pid) as f:
            return "libasan" in f.read()
    except OSError:
        return True


def check_rss(p, limit_mb, what):
    if sanitized(p):
        return
    kb = vm_hwm_kb(p)
    check(kb < limit_mb * 1024, "%s: pop3d's peak RSS is %d kB (limit %d "
          "MB): is the mail held in memory?" % (what, kb, limit_mb))


def slow_login(env, timeout=180):
    """Login to a maildrop whose scan takes a while."""
    p = env.start()
    p.ok("USER " + USER)
    p.ok("PASS " + PW, timeout=timeout * SLOW)
    return p


def quit_ok(p):
    r = p.cmd("QUIT", timeout=60 * SLOW)
    check(r.startswith("+OK"), "QUIT answered %r" % r)
    p.expect_eof()
    p.close_input()
    eq(p.wait(timeout=60 * SLOW), 0, "exit status after QUIT")


def quit_temp(p):
    """QUIT must refuse UPDATE with -ERR [SYS/TEMP]."""
    r = p.cmd("QUIT", timeout=60 * SLOW)
    check(r.startswith("-ERR [SYS/TEMP]"), "QUIT answered %r, expected "
          "-ERR [SYS/TEMP]" % r)
    p.expect_eof()
    p.close_input()
    eq(p.wait(), 2, "exit status after a refused UPDATE")


def no_leftovers(env, keep=(USER,)):
    eq([f for f in dir_files(env) if f not in keep], [],
       "files left in the mail directory (dotlock, journal)")


# ============================================================ refusals

NOT_MBOXES = [
    ("text", b"This is not an mbox.\nFrom nowhere\n\nFrom a Thu Jan  4 "
             b"10:00:00 2024\nSubject: x\n\nbody\n"),
    ("leading empty line", b"\n" + mbox_bytes([message(1)])),
    ("lower-case from", b"from a@b Thu Jan  4 10:00:00 2024\nSubject: x\n"
                        b"\nbody\n"),
    ("From without a space", b"From\nSubject: x\n\nbody\n"),
    ("From-colon header", b"From: a@b\nSubject: x\n\nbody\n"),
    ("quoted >From", b">From a@b Thu Jan  4 10:00:00 2024\nSubject: x\n"),
    ("NUL bytes", b"\0" * 4096),
    ("a NUL before From", b"\0From a@b Thu Jan  4 10:00:00 2024\n\nx\n"),
    ("CR before From", b"\rFrom a@b Thu Jan  4 10:00:00 2024\n\nx\n"),
    ("space before From", b" From a@b Thu Jan  4 10:00:00 2024\n\nx\n"),
    ("binary", bytes(random.Random(7).randrange(256) for _ in range(70000))),
    ("a 3 MB first line", b"X" * (3 * SCAN_BUF) + b"\nFrom a b\n\nx\n"),
    ("Fro", b"Fro"),
]


@test
def not_an_mbox_is_refused_untouched():
    for name, raw in NOT_MBOXES:
        with new_env(raw=raw) as env:
            path = env.mbox(USER)
            os.utime(path, ns=(1000000000 * 10**9, 1000000000 * 10**9))
            before = snapshot(path)
            try:
                refused(env)
            except AssertionError as e:
                fail("%s: %s" % (name, e))
            eq(snapshot(path), before, "%s: maildrop after the refusal"
               % name)
            no_leftovers(env)


@test
def whitespace_only_file_is_empty_or_refused_untouched():
    # Not a single "From " line: either no messages or not an mbox, but
    # a clear answer and the file as it was.
    for raw in (b"\n", b"\n\n\n", b"\r\n"):
        with new_env(raw=raw) as env:
            path = env.mbox(USER)
            before = snapshot(path)
            p = env.start()
            p.ok("USER " + USER)
            r = p.cmd("PASS " + PW)
            if r.startswith("+OK"):
                eq(parse_stat(p.ok("STAT")), (0, 0), "STAT of %r" % raw)
                quit_ok(p)
            else:
                check(r.startswith("-ERR [SYS/PERM]"), "PASS on %r: %r"
                      % (raw, r))
                p.expect_eof()
            eq(snapshot(path), before, "file %r after the session" % raw)
            no_leftovers(env)


@test
def symlink_maildrop_is_refused():
    with new_env() as env:
        other = os.path.join(env.dir, "elsewhere")
        os.mkdir(other)
        env.own(other, 0o755)
        target = os.path.join(other, "mbox")
        with open(target, "wb") as f:
            f.write(mbox_bytes([message(1), message(2)]))
        env.own(target, 0o600)
        md = os.path.join(other, "Maildir")
        for d in ("", "/cur", "/new", "/tmp"):
            os.mkdir(md + d)
            env.own(md + d, 0o700)
        link = env.mbox(USER)
        for to in (target, md, other, os.path.join(other, "missing"),
                   "/dev/null", "/etc/passwd", link):
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(to, link)
            before_t = snapshot(target)
            try:
                refused(env)
            except AssertionError as e:
                fail("symlink to %s: %s" % (to, e))
            eq(os.readlink(link), to, "the symlink")
            eq(snapshot(target), before_t, "the symlink's target (to %s)"
               % to)
            check(not os.path.exists(os.path.join(other, "missing")),
                  "a file was created through a dangling symlink")
            no_leftovers(env)
            eq(sorted(os.listdir(other)), ["Maildir", "mbox"],
               "files beside the symlink's target")


@test
def directory_that_is_not_a_maildir_is_refused():
    with new_env() as env:
        path = env.mbox(USER)
        for subdirs in ((), ("cur", "new"), ("cur", "new", "tmpx"),
                        ("new", "tmp")):
            shutil.rmtree(path, ignore_errors=True)
            os.mkdir(path)
            env.own(path, 0o700)
            for s in subdirs:
                os.mkdir(os.path.join(path, s))
                env.own(os.path.join(path, s), 0o700)
            before = snapshot(path)
            try:
                refused(env, log="a directory, but no Maildir")
            except AssertionError as e:
                fail("directory with %r: %s" % (subdirs, e))
            eq(snapshot(path), before, "directory %r" % (subdirs,))
            no_leftovers(env)


@test
def unreadable_or_read_only_maildrop_is_refused():
    cases = [("mode 000, the user's", 0o000, MAIL_UID, MAIL_GID),
             ("mode 400, the user's", 0o400, MAIL_UID, MAIL_GID)]
    if IS_ROOT:
        cases += [("mode 000, root's", 0o000, 0, 0),
                  ("mode 644, root's", 0o644, 0, 0)]
    raw = mbox_bytes([message(1), message(2)])
    for name, mode, uid, gid in cases:
        with new_env(raw=raw) as env:
            path = env.mbox(USER)
            os.chmod(path, mode)
            if IS_ROOT:
                os.chown(path, uid, gid)
            before = snapshot(path)
            try:
                refused(env)
            except AssertionError as e:
                fail("%s: %s" % (name, e))
            eq(snapshot(path), before, "%s: maildrop" % name)
            no_leftovers(env)


@test
def fifo_and_device_maildrops_are_refused_without_hanging():
    with new_env() as env:
        path = env.mbox(USER)
        os.mkfifo(path, 0o600)
        env.own(path, 0o600)
        t0 = time.monotonic()
        refused(env)
        check(time.monotonic() - t0 < 10, "a FIFO took %.1fs"
              % (time.monotonic() - t0))
        check(stat.S_ISFIFO(os.lstat(path).st_mode), "the FIFO is gone")
        os.unlink(path)
        if IS_ROOT:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
            refused(env)
            check(stat.S_ISCHR(os.lstat(path).st_mode), "the device is gone")
            os.unlink(path)
        no_leftovers(env, keep=())


# ====================================================== served byte-exact

@test
def zero_length_and_missing_mbox_are_empty():
    with new_env(raw=b"") as env:
        path = env.mbox(USER)
        before = snapshot(path)
        p = env.session(USER, PW)
        eq(parse_stat(p.ok("STAT")), (0, 0), "STAT")
        eq(multi_lines(p, "LIST"), [], "LIST")
        eq(multi_lines(p, "UIDL"), [], "UIDL")
        for c in ("RETR 1", "TOP 1 0", "DELE 1", "LIST 1", "UIDL 1"):
            p.err(c)
        quit_ok(p)
        eq(snapshot(path)[:4], before[:4], "zero-length mbox")
        eq(os.lstat(path).st_ino, before[5], "inode")
        no_leftovers(env)
    with new_env() as env:
        p = env.session(USER, PW)
        eq(parse_stat(p.ok("STAT")), (0, 0), "STAT without an mbox")
        quit_ok(p)
        eq(dir_files(env), [], "files after a session without an mbox")


def crlf(b):
    return b.replace(b"\n", b"\r\n")


@test
def crlf_mbox():
    ms = [(crlf(envelope(i)), crlf(message(i, body=b".dot\n..two\n>From "
                                           b"x\n\nline %d\n" % i)))
          for i in range(1, 6)]
    # mbox_bytes adds LF separators: build the CRLF file by hand.
    raw = b"".join(e + b"\r\n" + m + b"\r\n" for e, m in ms)
    with new_env(raw=raw) as env:
        p = env.session(USER, PW)
        uids = serve_exact(p, ms)
        p.ok("DELE 2")
        p.ok("DELE 4")
        quit_ok(p)
        keep = [ms[0], ms[2], ms[4]]
        eq(env.read_mbox(USER), b"".join(e + b"\r\n" + m + b"\r\n"
                                         for e, m in keep), "CRLF mbox "
           "after DELE 2, 4")
        p = env.session(USER, PW)
        eq(serve_exact(p, keep), [uids[0], uids[2], uids[4]], "UIDLs")
        quit_ok(p)
        no_leftovers(env)


@test
def mixed_line_ends_and_bare_crs():
    ms = [message(1, body=b"crlf\r\nlf\ncr\rmid\nend\r\n"),
          message(2, body=b"\r\r\n\r\n.\r\r\n\rx\n\r.\n"),
          message(3, extra=b"X-Weird: a\rb\r\n", body=b"\r\n"),
          message(4)]
    with new_env(ms) as env:
        p = env.session(USER, PW)
        serve_exact(p, ms)
        p.ok("DELE 1")
        quit_ok(p)
        eq(env.read_mbox(USER), mbox_bytes(
            [(envelope(i + 1), m) for i, m in enumerate(ms) if i != 0]),
           "mbox after DELE 1")
        no_leftovers(env)


@test
def nul_and_8bit_bytes():
    all_bytes = bytes(b for b in range(256) if b != 10)
    ms = [message(1, body=b"\0\0\0\n\0\n.\0\n\0.\n" + all_bytes + b"\n"),
          message(2, subject=b"\xe9t\xe9 \0 \xff\xfe", extra=b"X-Bin: \x80\x81"
                  b"\0\x9f\n", body=b"\xc3\xa9\xe2\x82\xac\n" * 100),
          message(3, body=b"\0" * 70000 + b"\n" + b"\xff" * 70000 + b"\n"),
          (b"From \0\xff@example.org Thu Jan  4 10:00:00 2024",
           message(4, body=b".\n..\n...\n.\r\n")),
          message(5)]
    with new_env(ms) as env:
        p = env.session(USER, PW)
        uids = serve_exact(p, ms)
        p.ok("DELE 1")
        p.ok("DELE 3")
        quit_ok(p)
        keep = [p_ for i, p_ in enumerate(pairs(ms)) if i not in (0, 2)]
        eq(env.read_mbox(USER), mbox_bytes(keep), "mbox after DELE 1, 3")
        p = env.session(USER, PW)
        eq(serve_exact(p, keep), [uids[1], uids[3], uids[4]], "UIDLs")
        quit_ok(p)


@test
def ten_megabyte_lines():
    big = b"".join(bytes([32 + (i % 90)]) for i in range(97)) * \
        (10 * 1024 * 1024 // 97)
    ms = [message(1),
          message(2, body=big + b"\n"),                # one line
          message(3, body=b"." + big + b"\r\n"),       # stuffed, CRLF
          message(4, subject=big[:10 * 1024 * 1024]),  # a 10 MB header
          (b"From " + big, message(5)),                # a 10 MB envelope
          message(6, body=b"\0" * (10 * 1024 * 1024) + b"\n"),
          message(7, body=big)]                        # no final LF
    with new_env(ms) as env:
        p = env.session(USER, PW)
        t0 = time.monotonic()
        uids = serve_exact(p, ms, top=False)
        for i, m in enumerate([m for _, m in pairs(ms)]):
            for k in (0, 1):
                p.ok("TOP %d %d" % (i + 1, k))
                eq(read_multi(p) + b".\r\n", top_stuffed(m, k),
                   "TOP %d %d" % (i + 1, k))
        dt = time.monotonic() - t0
        check(dt < 60 * SLOW, "serving 60 MB of long lines took %.1fs" % dt)
        check_rss(p, 48, "10 MB lines")
        p.ok("DELE 1")
        p.ok("DELE 4")
        quit_ok(p)
        keep = [p_ for i, p_ in enumerate(pairs(ms)) if i not in (0, 3)]
        eq(env.read_mbox(USER), mbox_bytes(keep), "mbox after DELE 1, 4")
        p = env.session(USER, PW)
        eq(uidl_list(p), [uids[1], uids[2], uids[4], uids[5], uids[6]],
           "UIDLs after the compaction")
        quit_ok(p)
        no_leftovers(env)


@test
def lines_across_buffer_boundaries():
    # A line's first piece in the scanner is at most SCAN_BUF bytes; RETR
    # reads COPY_BUF at a time from the header's start.  Put CR|LF, a
    # dot-started line and a bare CR right on those boundaries.
    ms = []
    for d in (-2, -1, 0, 1, 2):
        # A body line of SCAN_BUF + d bytes before its CRLF.
        ms.append(message(100 + d, body=b"y" * (SCAN_BUF + d) + b"\r\n.z\n"))
    hdr = len(message(0, body=b""))
    for tail in (b"\r\n.dot\n", b"\n.dot\n", b"\rx\n", b"\r\r\n", b"\n\n"):
        for d in (-1, 0, 1):
            # The boundary COPY_BUF falls between tail's first two bytes
            # (d = 0) or next to them.
            pad = COPY_BUF - hdr - 1 + d
            ms.append(message(0, body=b"p" * pad + tail + b"end\n"))
            eq(len(message(0, body=b"p" * pad)), COPY_BUF - 1 + d, "pad")
    with new_env(ms) as env:
        p = env.session(USER, PW)
        serve_exact(p, ms)
        quit_ok(p)


@test
def envelopes_across_the_scanners_reads():
    # The scanner reads SCAN_BUF bytes at a time from offset 0: put the
    # separator and the next "From " line of message 2 on that boundary,
    # with LF and with CRLF line ends.
    for line_end in (b"\n", b"\r\n"):
        for d in range(-7, 8):
            m1 = message(1, body=b"")
            m3 = message(3)
            e1 = envelope(1) + line_end
            head = e1 + m1.replace(b"\n", line_end)
            pad = SCAN_BUF + d - len(head) - len(line_end) * 2
            m1 = m1.replace(b"\n", line_end) + b"q" * pad + line_end
            raw = (e1 + m1 + line_end + envelope(2) + line_end +
                   m3.replace(b"\n", line_end) + line_end)
            check(raw.index(envelope(2)) == SCAN_BUF + d, "layout")
            ms = [(envelope(1), m1), (envelope(2),
                                      m3.replace(b"\n", line_end))]
            with new_env(raw=raw) as env:
                p = env.session(USER, PW)
                try:
                    serve_exact(p, ms, top=False)
                except AssertionError as e:
                    fail("From at SCAN_BUF%+d, %r line ends: %s"
                         % (d, line_end, e))
                quit_ok(p)


@test
def messages_without_body_or_bytes():
    raw = (envelope(1) + b"\nSubject: header only, no empty line\n\n" +
           envelope(2) + b"\nSubject: header and empty line\n\n\n" +
           envelope(3) + b"\n\n" +                # no bytes at all
           envelope(4) + b"\n\n\n" +              # one empty line
           envelope(5) + b"\n" +                  # no separator either
           envelope(6) + b"\r\n\r\n" +            # CRLF, no bytes
           envelope(7) + b"\nSubject: last\n\nbody\n\n" +
           envelope(8) + b"\n")                   # last, no bytes
    ms = [b"Subject: header only, no empty line\n",
          b"Subject: header and empty line\n\n",
          b"", b"\n",
          None,
          b"", b"Subject: last\n\nbody\n", b""]
    with new_env(raw=raw) as env:
        p = env.session(USER, PW)
        n, _ = parse_stat(p.ok("STAT"))
        # Message 5 has no empty line before 6's "From ": 6 is part of it.
        ms[4] = envelope(6) + b"\r\n"
        del ms[5]
        eq(n, len(ms), "STAT count")
        serve_exact(p, [(envelope(i + 1), m) for i, m in enumerate(ms)])
        for i, m in enumerate(ms):
            if m == b"":
                eq(p.ok("RETR %d" % (i + 1)).split()[:2], ["+OK", "0"],
                   "RETR of an empty message")
                eq(read_multi(p), b"", "empty message")
        p.ok("DELE 3")
        p.ok("DELE 7")
        quit_ok(p)
        want = raw.replace(envelope(3) + b"\n\n", b"")
        want = want[:want.rindex(envelope(8))]
        eq(env.read_mbox(USER), want, "mbox after DELE 3, 7")
        no_leftovers(env)
    # A "From " line with no newline at all ends the file.
    with new_env(raw=mbox_bytes([message(1)]) + envelope(2)) as env:
        p = env.session(USER, PW)
        eq(parse_list(multi_lines(p, "LIST")),
           [(1, len(wire(message(1)))), (2, 0)], "LIST")
        eq(retr(p, 2)[1], b".\r\n", "RETR of an envelope only")
        p.ok("DELE 1")
        quit_ok(p)
        eq(env.read_mbox(USER), envelope(2), "mbox after DELE 1")


@test
def no_final_newline():
    for last in (b"Subject: x\n\nbody without newline",
                 b"Subject: no newline at all",
                 b"Subject: x\n\n.dot without newline",
                 b"Subject: x\n\ncr, no lf\r",
                 b"Subject: x\n\nends in empty line\n\n\n"):
        ms = [message(1), message(2), last]
        with new_env(ms) as env:
            p = env.session(USER, PW)
            sizes = dict(parse_list(multi_lines(p, "LIST")))
            r, raw = retr(p, 3)
            eq(sizes[3], len(unstuff(raw)), "LIST 3 against the octets "
               "RETR sent for %r" % last)
            eq(r.split()[1], str(sizes[3]), "RETR 3 answer")
            check(raw.endswith(b"\r\n.\r\n"), "RETR ends in CRLF.CRLF")
            if not last.endswith(b"\r"):
                eq(raw, stuffed(last), "RETR of %r" % last)
            p.ok("TOP 3 0")
            read_multi(p)
            p.ok("DELE 1")
            quit_ok(p)
            eq(env.read_mbox(USER), mbox_bytes([(envelope(2), message(2)),
                                                (envelope(3), last)]),
               "mbox after DELE 1 (the last message byte-exact)")
            p = env.session(USER, PW)
            r2, raw2 = retr(p, 2)
            eq(raw2, raw, "RETR after the compaction")
            quit_ok(p)


@test
def two_hundred_thousand_tiny_messages():
    n = 200000
    parts = []
    for i in range(1, n + 1):
        if i % 1000 == 0:
            # An identical copy of the message before, envelope and all.
            parts.append(parts[-1])
            continue
        env_ = b"From t%d@x Thu Jan  4 10:00:00 2024\n" % i
        if i % 3 == 0:
            msg = b"Subject: %d\n\n" % i          # no body
        elif i % 3 == 1:
            msg = b"Subject: %d\n\nb\n" % i
        else:
            msg = b"Subject: %d\r\n\r\n.\r\n" % i  # CRLF, a dot line
        parts.append(env_ + msg + b"\n")
    raw = b"".join(parts)

    def msg_of(part):
        return part[part.index(b"\n") + 1:-1]

    sizes = [len(wire(msg_of(x))) for x in parts]
    with new_env(raw=raw) as env:
        t0 = time.monotonic()
        p = env.session(USER, PW)
        t_login = time.monotonic() - t0
        eq(parse_stat(p.ok("STAT")), (n, sum(sizes)), "STAT")
        t0 = time.monotonic()
        got = parse_list(multi_lines(p, "LIST", timeout=60))
        t_list = time.monotonic() - t0
        eq(got, [(i + 1, s) for i, s in enumerate(sizes)], "LIST")
        t0 = time.monotonic()
        uids = uidl_list(p, timeout=60)
        t_uidl = time.monotonic() - t0
        eq(len(uids), n, "UIDL count")
        eq(len(set(uids)), n, "distinct UIDLs (copies included)")
        for i in (1, 2, 3, 999, 1000, 100000, n):
            eq(retr(p, i)[1], stuffed(msg_of(parts[i - 1])), "RETR %d" % i)
            eq(p.ok("UIDL %d" % i).split()[2], uids[i - 1], "UIDL %d" % i)
            eq(p.ok("LIST %d" % i).split()[2], str(sizes[i - 1]),
               "LIST %d" % i)
        check_rss(p, 64, "200,000 messages")
        p.ok("DELE 2")
        p.ok("DELE %d" % n)
        t0 = time.monotonic()
        quit_ok(p)
        t_quit = time.monotonic() - t0
        keep = [x for i, x in enumerate(parts) if i not in (1, n - 1)]
        eq(env.read_mbox(USER), b"".join(keep), "mbox after DELE 2, %d" % n)
        p = env.session(USER, PW)
        eq(uidl_list(p, timeout=60), uids[:1] + uids[2:-1],
           "UIDLs after the compaction")
        quit_ok(p)
        print("# 200,000 messages: login %.2fs, LIST %.2fs, UIDL %.2fs, "
              "QUIT with compaction %.2fs" % (t_login, t_list, t_uidl,
                                                t_quit), flush=True)
        for what, t in (("login", t_login), ("LIST", t_list),
                        ("UIDL", t_uidl), ("QUIT", t_quit)):
            check(t < 10 * SLOW, "%s of 200,000 messages took %.1fs"
                  % (what, t))


@test
def message_cap_keeps_the_rest_unseen():
    # POP3D_MAX_MSGS (1,000,000) messages are shown; what lies behind is
    # kept, unseen, like mail delivered during the session, whatever the
    # first line past the cap is: a whole message, an envelope line with
    # no newline at the end of the file, or one longer than the scan
    # buffer (the last two crashed every login, found in review).
    n = 1000000
    for what, extra in (("a message", b"From b\n\nx\n"),
                        ("an envelope without newline", b"From b"),
                        ("a 70 KB envelope line",
                         b"From " + b"b" * 70000 + b"\n\nx\n")):
        raw = b"From a\n\n" * n + extra
        with new_env(raw=raw) as env:
            p = env.session(USER, PW)
            eq(parse_stat(p.ok("STAT")), (n, 0), "STAT, %s past the cap"
               % what)
            p.ok("DELE 1")
            quit_ok(p)
            eq(env.read_mbox(USER), raw[len(b"From a\n\n"):],
               "mbox after DELE 1, %s past the cap" % what)
            check("over 1000000 messages" in p.stderr() or
                  "not shown" in p.stderr(),
                  "the cap is not logged: %r" % p.stderr()[-300:])


@test
def mbox_over_4_gib():
    hole = int(4.2 * 2**30)
    with new_env() as env:
        free = shutil.disk_usage(env.dir).free
        if free < 10 * 2**30:
            raise Skip("needs 10 GB free in %s, has %.1f GB"
                       % (env.dir, free / 2**30))
        path = env.mbox(USER)
        m1 = message(1)
        head2 = b"Subject: a hole of %d NULs\n\n" % hole
        m3 = message(3, body=b".dot\n>From x\nbeyond 4 GiB\n")
        m4 = message(4, body=b"the last one\n")
        with open(path, "wb") as f:
            f.write(mbox_bytes([m1]) + envelope(2) + b"\n" + head2)
            off_hole = f.tell()
            f.truncate(off_hole + hole)
            f.seek(off_hole + hole)
            f.write(b"\n\n")
            off3 = f.tell()
            f.write(mbox_bytes([(envelope(3), m3)]))
            off4 = f.tell()
            f.write(mbox_bytes([(envelope(4), m4)]))
            size = f.tell()
        env.own(path, 0o600)
        check(off3 > 2**32, "message 3 starts beyond 4 GiB")
        if os.stat(path).st_blocks * 512 > 2**26:
            raise Skip("the file system does not keep holes")
        size2 = len(wire(head2)) + hole + 2
        sizes = [len(wire(m1)), size2, len(wire(m3)), len(wire(m4))]
        t0 = time.monotonic()
        p = slow_login(env)
        t_login = time.monotonic() - t0
        eq(parse_stat(p.ok("STAT")), (4, sum(sizes)), "STAT")
        eq(parse_list(multi_lines(p, "LIST")),
           [(i + 1, s) for i, s in enumerate(sizes)], "LIST")
        eq(p.ok("LIST 2").split()[2], str(size2), "LIST 2")
        uids = uidl_list(p)
        eq(len(set(uids)), 4, "distinct UIDLs")
        eq(retr(p, 3)[1], stuffed(m3), "RETR 3 (beyond 4 GiB)")
        eq(retr(p, 4)[1], stuffed(m4), "RETR 4 (beyond 4 GiB)")
        eq(retr(p, 1)[1], stuffed(m1), "RETR 1")
        p.ok("TOP 2 0")
        eq(read_multi(p) + b".\r\n", stuffed(head2), "TOP 2 0")
        p.ok("TOP 3 1")
        eq(read_multi(p) + b".\r\n", top_stuffed(m3, 1), "TOP 3 1")
        check_rss(p, 48, "4 GiB mbox")
        # The last message: one truncate, nothing written.
        p.ok("DELE 4")
        quit_ok(p)
        eq(os.stat(path).st_size, off4, "size after DELE 4")
        check(os.stat(path).st_blocks * 512 < 2**26, "the hole was filled")
        with open(path, "rb") as f:
            f.seek(off_hole + hole - 10)
            eq(f.read(), b"\0" * 10 + b"\n\n" + mbox_bytes([(envelope(3),
                                                               m3)]),
               "the tail after DELE 4")
        # Message 2 goes: message 3 moves from beyond 4 GiB down to near
        # the start, through the journal (a few hundred bytes written).
        p = slow_login(env)
        eq(uidl_list(p), uids[:3], "UIDLs after DELE 4")
        eq(retr(p, 3)[1], stuffed(m3), "RETR 3 in the second session")
        p.ok("DELE 2")
        t2 = time.monotonic()
        quit_ok(p)
        t2 = time.monotonic() - t2
        eq(env.read_mbox(USER), mbox_bytes([(envelope(1), m1),
                                            (envelope(3), m3)]),
           "mbox after DELE 2")
        p = env.session(USER, PW)
        eq(uidl_list(p), [uids[0], uids[2]], "UIDLs after DELE 2")
        quit_ok(p)
        no_leftovers(env)
        print("# 4.2 GiB sparse mbox: first login (scan) %.1fs, QUIT "
              "after DELE 2 %.1fs, all %.1fs" % (t_login, t2,
                                                 time.monotonic() - t0),
              flush=True)
        check(t_login < 60 * SLOW, "scanning 4.2 GiB took %.1fs" % t_login)


# ================================================================== UIDL

def uidl_session(env):
    p = env.session(USER, PW)
    u = uidl_list(p)
    eq(len(set(u)), len(u), "distinct UIDLs")
    for x in u:
        check(0 < len(x) <= 70 and all(33 <= ord(c) <= 126 for c in x),
              "UIDL %r" % x)
    return p, u


@test
def uidl_stable_across_sessions_appends_and_deletions():
    ms = [message(i) for i in range(1, 7)]
    with new_env(ms) as env:
        p, u1 = uidl_session(env)
        quit_ok(p)
        p, again = uidl_session(env)
        eq(again, u1, "UIDLs in a second session")
        # Mail delivered during the session is not shown; after it, it is.
        deliver.append(env.mbox(USER), envelope(7), message(7))
        eq(uidl_list(p), u1, "UIDLs after an append during the session")
        quit_ok(p)
        env.append_mbox(USER, [message(8), message(9)], start=8)
        p, u2 = uidl_session(env)
        eq(u2[:6], u1, "UIDLs of old messages after appends")
        eq(len(set(u2[6:]) & set(u1)), 0, "new messages reuse old UIDLs")
        p.ok("DELE 2")
        p.ok("DELE 5")
        quit_ok(p)
        p, u3 = uidl_session(env)
        eq(u3, [u2[i] for i in (0, 2, 3, 5, 6, 7, 8)],
           "UIDLs after deleting 2 and 5")
        p.ok("DELE 1")
        deliver.append(env.mbox(USER), envelope(10), message(10))
        quit_ok(p)
        p, u4 = uidl_session(env)
        eq(u4[:-1], u3[1:], "UIDLs after deleting 1 (with new mail "
           "behind)")
        check(u4[-1] not in u3, "new message with an old UIDL")
        quit_ok(p)


READER_HEADERS = [
    b"Status: RO\n",
    b"X-Status: A\n",
    b"X-Keywords: $Label1 Junk\n",
    b"X-Keywords: a,\n\tb,\n c\n",
    b"X-UID: 42\n",
    b"X-IMAP: 1234567890 0000000003\n",
    b"X-IMAPbase: 1234567890 0000000003 $Forwarded\n",
    b"Content-Length: 123\n",
    b"Lines: 7\n",
    b"STATUS: O\n",
    b"status:RO\n",
    b"Status: RO\nX-Status: DF\nX-Keywords:\nX-UID: 7\nLines: 2\n",
]


def add_header(msg, h, where):
    """Inserts header h at the start or at the end of msg's header."""
    i = msg.index(b"\n\n") + 1
    if where == "end":
        return msg[:i] + h + msg[i:]
    return h + msg


@test
def uidl_ignores_headers_mail_readers_write():
    ms = [message(i, body=b"body %d\n" % i) for i in range(1, 5)]
    with new_env(ms) as env:
        p, u1 = uidl_session(env)
        quit_ok(p)
        for h in READER_HEADERS:
            for where in ("start", "end"):
                # A mail reader rewrote the mbox (between sessions).
                env.write_mbox(USER, [add_header(m, h, where) if i % 2 == 0
                                      else m for i, m in enumerate(ms)])
                p, u2 = uidl_session(env)
                eq(u2, u1, "UIDLs after a reader added %r at the %s"
                   % (h, where))
                quit_ok(p)
        # A header that readers do not write changes the id, of that
        # message only.
        env.write_mbox(USER, [add_header(m, b"X-Other: 1\n", "end")
                              if i == 1 else m for i, m in enumerate(ms)])
        p, u3 = uidl_session(env)
        check(u3[1] != u1[1], "UIDL unchanged by a new X-Other header")
        eq([u3[i] for i in (0, 2, 3)], [u1[i] for i in (0, 2, 3)],
           "other UIDLs")
        quit_ok(p)


@test
def uidl_of_identical_copies():
    a = (envelope(1), message(1))
    b = (envelope(2), message(2))
    with new_env([a, a, b, a]) as env:
        p, u1 = uidl_session(env)
        quit_ok(p)
        p, u2 = uidl_session(env)
        eq(u2, u1, "UIDLs of copies in a second session")
        quit_ok(p)
        with open(env.mbox(USER), "ab") as f:
            f.write(mbox_bytes([a, b]))
        p, u3 = uidl_session(env)
        eq(u3[:4], u1, "UIDLs of copies after appending more copies")
        check(u3[4] not in u1 and u3[5] not in u1,
              "appended copies got old UIDLs: %r / %r" % (u3[4:], u1))
        # Deleting the second copy: the ids left are ones that the client
        # has seen for this same content (copies are indistinguishable),
        # and they stay distinct.
        p.ok("DELE 2")
        quit_ok(p)
        p, u4 = uidl_session(env)
        eq(len(u4), 5, "messages after DELE 2")
        eq(u4[1], u1[2], "the other message's UIDL")
        eq(u4[4], u3[5], "the UIDL of the other message's copy")
        check(set(u4) <= set(u3), "after deleting a copy, an id never "
              "seen before: %r vs %r" % (u4, u3))
        a_ids = {u3[i] for i in (0, 1, 3, 4)}
        check({u4[0], u4[2], u4[3]} <= a_ids, "copies of A got ids of "
              "other messages: %r vs %r" % (u4, u3))
        quit_ok(p)


# ======================================================== foreign rewrites

def rewrite(path, new):
    """A local mail reader rewrites the mbox in place (same inode), under
    the delivery agents' locks."""
    fd = os.open(path, os.O_RDWR)
    try:
        deliver.lock(fd, path, "both")
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            off = 0
            while off < len(new):
                off += os.write(fd, new[off:])
            os.ftruncate(fd, len(new))
            os.fsync(fd)
        finally:
            deliver.unlock(fd, path, "both")
    finally:
        os.close(fd)


def refused_after_rewrite(env, p, new, retr_nums, dele_nums, what):
    path = env.mbox(USER)
    ino = os.stat(path).st_ino
    for n in retr_nums:
        r = p.cmd("RETR %d" % n)
        check(r.startswith("-ERR [SYS/TEMP]"), "%s: RETR %d answered %r"
              % (what, n, r))
        r = p.cmd("TOP %d 0" % n)
        check(r.startswith("-ERR [SYS/TEMP]"), "%s: TOP %d 0 answered %r"
              % (what, n, r))
    for n in dele_nums:
        p.ok("DELE %d" % n)
    quit_temp(p)
    eq(env.read_mbox(USER), new, "%s: the mbox after the refused UPDATE "
       "(exactly what the other program wrote)" % what)
    eq(os.stat(path).st_ino, ino, "inode")
    no_leftovers(env)


@test
def foreign_expunge_during_session():
    ms = [message(i) for i in range(1, 6)]
    with new_env(ms) as env:
        p, u1 = uidl_session(env)
        new = mbox_bytes([(envelope(i), ms[i - 1]) for i in range(2, 6)])
        rewrite(env.mbox(USER), new)
        refused_after_rewrite(env, p, new, (1, 2, 5), (3,), "expunge of 1")
        p, u2 = uidl_session(env)
        eq(u2, u1[1:], "UIDLs in the next session")
        quit_ok(p)


@test
def foreign_status_rewrite_during_session():
    ms = [message(i) for i in range(1, 6)]
    with new_env(ms) as env:
        p, u1 = uidl_session(env)
        eq(retr(p, 1)[1], stuffed(ms[0]), "RETR 1 before the rewrite")
        # mutt marks everything read: a Status header in every message.
        new = mbox_bytes([(envelope(i), add_header(ms[i - 1],
                                                   b"Status: RO\n", "end"))
                          for i in range(1, 6)])
        rewrite(env.mbox(USER), new)
        refused_after_rewrite(env, p, new, (2, 3, 5), (1, 4),
                              "Status headers added")
        p, u2 = uidl_session(env)
        eq(u2, u1, "UIDLs after the Status rewrite")
        quit_ok(p)


@test
def foreign_expunge_with_new_mail_behind():
    ms = [message(i) for i in range(1, 6)]
    with new_env(ms) as env:
        p, u1 = uidl_session(env)
        # Message 2 expunged, and more mail than it held delivered: the
        # file is longer than the session's table covers.
        keep = [(envelope(i), ms[i - 1]) for i in (1, 3, 4, 5)]
        new = mbox_bytes(keep + [(envelope(6), message(6, body=b"z" * 5000
                                                        + b"\n"))])
        rewrite(env.mbox(USER), new)
        refused_after_rewrite(env, p, new, (2, 3, 4, 5), (1, 2, 5),
                              "expunge of 2 plus new mail")


@test
def foreign_status_cleared_on_the_last_message_with_new_mail_behind():
    # mutt marks the last message unread again: it rewrites it without its
    # "Status: RO" line, 11 bytes shorter, and every "From " line the
    # session knows stays where it was.  Then an agent delivers.  The
    # table's last message now ends 11 bytes into the new mail: RETR 3
    # sent them, and DELE 3 and QUIT cut them off with it, so that the
    # rest of the new mail became part of message 2's body (found in
    # review, with mutt and procmail).
    ms = [message(1), message(2),
          add_header(message(3), b"Status: RO\n", "end")]
    with new_env(ms) as env:
        path = env.mbox(USER)
        p, u1 = uidl_session(env)
        rewrite(path, mbox_bytes([message(i) for i in (1, 2, 3)]))
        deliver.append(path, envelope(4), message(4))
        new = env.read_mbox(USER)
        refused_after_rewrite(env, p, new, (3,), (3,),
                              "Status cleared in the last message")
        p, u2 = uidl_session(env)
        eq(u2[:3], u1, "UIDLs of the old messages")
        eq(retr(p, 4)[1], stuffed(message(4)), "RETR of the new mail")
        quit_ok(p)


@test
def foreign_expunge_while_a_long_retr_is_sent():
    # RETR holds no delivery lock.  The client reads the +OK of a 4.6 MB
    # message and then nothing, so pop3d is held by the full pipe a few
    # hundred KB into it, and mutt expunges message 1 meanwhile: message
    # 2 moves down.  The rest of RETR came from the old offsets, and the
    # client got a whole-looking response with the wrong bytes, which it
    # keeps under message 2's UIDL (found in review).  Now pop3d looks
    # again before the final "." and closes the connection without it.
    big = message(2, body=b"".join(b"line %07d of a big message\n" % k
                                   for k in range(150000)))
    ms = [message(1), big, message(3)]
    with new_env(ms) as env:
        p, u1 = uidl_session(env)
        p.send(b"RETR 2\r\n")
        r = p.line()
        check(r.startswith("+OK"), "RETR 2 answered %r" % r)
        new = mbox_bytes([(envelope(2), big), (envelope(3), ms[2])])
        rewrite(env.mbox(USER), new)
        try:
            body = read_multi(p, timeout=30 * SLOW)
        except TestFailure:
            body = None         # closed before the final "."
        check(body is None, "RETR 2 across the expunge came whole, %s"
              % ("byte-exact" if body is not None and
                 body + b".\r\n" == stuffed(big) else "of the wrong bytes"))
        check(p.eof, "the connection is still open")
        check(p.wait() != 0, "exit status after a RETR cut short")
        eq(env.read_mbox(USER), new, "the mbox as the reader left it")
        p, u2 = uidl_session(env)
        eq(u2, u1[1:], "UIDLs in the next session")
        eq(retr(p, 1)[1], stuffed(big), "RETR 1 in the next session")
        quit_ok(p)


def same_size_messages(numbers):
    # Equal-length envelopes and messages, as a daily cron job mails.
    return [(b"From root@host Mon Jan  1 06:25:%02d 2024" % n,
             b"From: root@host\nSubject: Cron <root@host> job\n"
             b"Message-ID: <%04d@host>\n\nrun %04d\n" % (n, n))
            for n in numbers]


@test
def foreign_expunge_hidden_by_new_mail_of_the_same_size():
    # Expunging message 2 of equal-sized messages and delivering one more
    # of that size puts a "From " line at every offset the session knows,
    # and the size is as it was.  Message 2 is gone: RETR 2 and UPDATE
    # must not act on what now lies at its offsets (DELE 4 would delete
    # the new message, never retrieved).
    ms = same_size_messages(range(1, 5))
    with new_env(ms) as env:
        p, u1 = uidl_session(env)
        new = mbox_bytes([ms[0], ms[2], ms[3]] + same_size_messages([5]))
        eq(len(new), len(mbox_bytes(ms)), "same size")
        rewrite(env.mbox(USER), new)
        refused_after_rewrite(env, p, new, (2, 3, 4), (1, 2, 3, 4),
                              "expunge of 2 plus same-size new mail")


@test
def foreign_rewrite_that_joins_two_messages():
    # A program overwrites the empty line before message 3 (same size):
    # message 3's "From " line is still at its offset, but in the middle
    # of a line of message 2, so no message starts there any more.
    # Message 2 now runs to the end of the old message 3: RETR 3 must not
    # send the piece, nor UPDATE cut the file there to delete message 2.
    ms = [message(i) for i in range(1, 5)]
    with new_env(ms) as env:
        p, _ = uidl_session(env)
        old = env.read_mbox(USER)
        starts = [m.start() + 2 for m in re.finditer(rb"\n\nFrom ", old)]
        off3 = starts[1]
        eq(old[off3 - 1:off3 + 5], b"\nFrom ", "message 3's start")
        new = old[:off3 - 1] + b"X" + old[off3:]
        rewrite(env.mbox(USER), new)
        refused_after_rewrite(env, p, new, (2, 3), (2,),
                              "message 3 joined to message 2")


@test
def foreign_replacement_by_rename_during_session():
    # Some readers write a new file and rename it over the mbox.  The
    # session's deletions cannot be applied to the new file, and nothing
    # in it may be touched.
    ms = [message(i) for i in range(1, 5)]
    with new_env(ms) as env:
        path = env.mbox(USER)
        p, u1 = uidl_session(env)
        new = mbox_bytes([(envelope(i), ms[i - 1]) for i in (2, 3, 4)] +
                         [(envelope(5), message(5))])
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(new)
        env.own(tmp, 0o600)
        os.rename(tmp, path)
        for n in (1, 2):
            r = p.cmd("RETR %d" % n)
            if r.startswith("+OK"):
                # The old file is still open: its bytes are consistent.
                eq(read_multi(p) + b".\r\n", stuffed(ms[n - 1]),
                   "RETR %d from the replaced file" % n)
            else:
                check(r.startswith("-ERR [SYS/TEMP]"), "RETR %d answered %r"
                      % (n, r))
        for n in (1, 2, 4):
            p.ok("DELE %d" % n)
        quit_temp(p)
        eq(env.read_mbox(USER), new, "the new mbox")
        no_leftovers(env)


@test
def mbox_removed_during_session_and_delivered_again():
    # The reader removed the (expunged) mbox; an agent delivered a new
    # message to a new file.  The session's UPDATE may refuse or act on
    # the old file, but never touch the new one.
    ms = [message(i) for i in range(1, 4)]
    with new_env(ms) as env:
        path = env.mbox(USER)
        p, _ = uidl_session(env)
        os.unlink(path)
        deliver.append(path, envelope(9), message(9))
        env.own(path, 0o600)
        new = env.read_mbox(USER)
        for n in (1, 2, 3):
            p.ok("DELE %d" % n)
        r = p.cmd("QUIT")
        check(r.startswith("+OK") or r.startswith("-ERR [SYS/TEMP]"),
              "QUIT answered %r" % r)
        p.expect_eof()
        eq(env.read_mbox(USER), new, "the new mbox")
        no_leftovers(env)


@test
def client_gone_during_a_long_retr_stops_the_reading():
    # A client that closes the connection a little way into a 24 MB
    # message: pop3d stops reading the mbox at the failed write (it read
    # and converted the rest for nobody before), and the message does not
    # count as retrieved in the log (test_maildir.py has the same).
    big = message(2, body=b"".join(b"line %07d of a long message\n" % i
                                   for i in range(800000)))
    check(len(big) > 20 * 1000 * 1000, "test message too small")
    with new_env([message(1), big]) as env:
        p = env.session(USER, PW)
        before = rchar(p.proc.pid)      # the login's scan read it all
        p.send("RETR 2\r\n")
        n, log = leave_mid_response(p, 200 * 1000)
        check(n - before < 8 * 1000 * 1000, "read %d bytes of a %d-byte "
              "message after the client left" % (n - before, len(big)))
        check("retrieved=0/0" in log, "a message the client never got "
              "counted as retrieved: %r" % log[-300:])
        eq(env.read_mbox(USER), mbox_bytes([message(1), big]), "mbox")

if __name__ == "__main__":
    main()
