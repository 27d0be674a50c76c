#!/usr/bin/env python3
"""Mail is never lost: fault injection into UPDATE (QUIT) of an mbox.

For every mutating step of UPDATE (write, fsync, ftruncate, rename,
unlink, close), the fault-injection build (obj-fi/pop3d, -DPOP3D_FAULTS)
fails that step with EIO or ENOSPC, or is killed right there.  Then a new
session opens the maildrop (replaying or discarding the journal) and the
mbox must be exactly one of two things: the original with the mail that was
delivered during the session behind it (nothing deleted), or the same with
exactly the deleted messages gone.  Plus random SIGKILLs during QUIT of a
large mbox, a full disk through RLIMIT_FSIZE and a real small tmpfs, and a
spool without room for a journal.  Stopped before each step (of UPDATE
and of a journal replay), the session must hold all its locks.  A
dotlock that link(2) cannot make is done without.  And a Maildir move to
cur/ where RENAME_NOREPLACE is unknown must not replace, and a file that
another client moves to cur/ while the login reads is shown once.
Traced with strace(1), each step of UPDATE (mbox and Maildir) is synced
before the next one starts: no fault shows a missing fsync.
"""
import os
import random
import re
import fcntl
import resource
import shutil
import signal
import socket
import struct
import subprocess
import time

import pop3test as T
from pop3test import test, check, eq, fail

FI_BIN = os.environ.get("POP3D_FI_BIN") or os.path.join(T.REPO, "obj-fi",
                                                        "pop3d")


def msgs(n, big=()):
    """n distinct messages; those numbered in big get ~150 KB bodies, so
    that they take several journal buffers, with dot and From lines."""
    out = []
    for i in range(1, n + 1):
        if i in big:
            body = b"".join(b"line %d of a big one\n.dot\n>From x\n" % k
                            for k in range(4000))
            out.append(T.message(i, body=body))
        else:
            out.append(T.message(i))
    return out


def expected(msgs_, deleted, tail=b""):
    keep = [(T.envelope(i + 1), m) for i, m in enumerate(msgs_)
            if i + 1 not in deleted]
    return (T.mbox_bytes(keep) if keep else b"") + tail


def run(env, binary, script, fault=None, limit_fsize=None, append=None,
        user="u", errors=None):
    """One session: login, the script, QUIT.  append (bytes) is delivered
    to the mbox after login, as mail arriving during the session.  errors:
    a list that gets pop3d's stderr lines.  Returns (output, returncode)."""
    e = dict(os.environ)
    e.pop("POP3D_FAULT", None)
    if fault:
        e["POP3D_FAULT"] = fault

    def pre():
        if limit_fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE,
                               (limit_fsize, limit_fsize))

    errf = os.path.join(env.dir, "crash.stderr")
    with open(errf, "wb") as ef:
        p = subprocess.Popen([binary] + env.argv(), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=ef,
                             env=e, preexec_fn=pre)
    first = "USER %s\r\nPASS pw\r\n" % user
    p.stdin.write(first.encode())
    p.stdin.flush()
    # Wait for the login's answer before delivering, so the scan is done.
    got = b""
    while got.count(b"\r\n") < 3:
        b = p.stdout.read1(4096)
        if not b:
            break
        got += b
    if append is not None:
        with open(env.mbox(user), "ab") as f:
            f.write(append)
    try:
        p.stdin.write((script + "QUIT\r\n").encode())
        p.stdin.close()
    except BrokenPipeError:
        pass
    out = p.stdout.read()
    p.stdout.close()
    p.wait(timeout=60)
    if errors is not None:
        with open(errf, "rb") as ef:
            errors.extend(ef.read().decode("latin-1").splitlines())
    return (got + out).decode("latin-1"), p.returncode


def recover(env, user="u"):
    """A normal session that only logs in and quits: it replays or
    discards a journal.  Returns the mbox bytes after it."""
    out, rc = run(env, T.BIN, "", user=user)
    check("+OK" in out.split("\r\n")[2] if len(out.split("\r\n")) > 2
          else False, "recovery login failed: %r" % out[-300:])
    eq(rc, 0, "recovery session exit status")
    leftovers = [f for f in os.listdir(env.maildir)
                 if "journal" in f or f.endswith(".lock")]
    eq(leftovers, [], "journal or dotlock files left after recovery")
    return env.read_mbox(user)


def setup(env, ms):
    env.add_user("u", "pw")
    env.write_mbox("u", ms)


def fault_steps(env, script="", append=None):
    """How many mutating steps a session with this script takes, on the
    spool as it is (a login alone: those of a replay)."""
    errors = []
    run(env, FI_BIN, script, fault="count", append=append, errors=errors)
    for l in errors:
        if l.startswith("pop3d-fault-steps "):
            return int(l.split()[1])
    fail("fault build printed no step count: %r" % errors[-5:])


def count_steps(env, ms, script, append=None):
    """How many mutating steps UPDATE takes for this session."""
    env.write_mbox("u", ms)
    return fault_steps(env, script, append)


def fi_login(env, **environ):
    """The fault build with these environment variables, greeted, USER u
    and PASS pw sent: the caller waits for it to stop or answer."""
    e = dict(os.environ, **environ)
    for k in ("POP3D_FAULT", "POP3D_PAUSE", "POP3D_FAIL"):
        if k not in environ:
            e.pop(k, None)
    p = T.Pop3([FI_BIN] + env.argv(), os.path.join(env.dir, "fi.stderr"),
               env=e)
    env.procs.append(p)
    p.expect_ok("greeting")
    p.ok("USER u")
    p.send("PASS pw\r\n")
    return p


NEW = T.mbox_bytes([(T.envelope(900), T.message(900)),
                    (T.envelope(901), T.message(901))])


def every_step(deleted, n=12, big=(3, 7), with_tail=True):
    script = "".join("DELE %d\r\n" % d for d in deleted)
    tail = NEW if with_tail else b""
    with T.Env() as env:
        ms = msgs(n, big)
        setup(env, ms)
        steps = count_steps(env, ms, script, tail if with_tail else None)
        check(steps >= 8, "UPDATE took only %d mutating steps" % steps)
        before = expected(ms, set(), tail)
        after = expected(ms, set(deleted), tail)
        tried = 0
        for step in range(1, steps + 1):
            for action in ("eio", "enospc", "kill"):
                env.write_mbox("u", ms)
                out, rc = run(env, FI_BIN, script,
                              fault="%d:%s" % (step, action),
                              append=tail if with_tail else None)
                last = out.rstrip("\r\n").split("\r\n")[-1]
                if action == "kill":
                    check(rc == -signal.SIGKILL,
                          "step %d kill: exit %r" % (step, rc))
                else:
                    check(last.startswith("-ERR [SYS/TEMP]") or
                          last.startswith("-ERR [SYS/PERM]"),
                          "step %d %s: QUIT answered %r" % (step, action,
                                                            last))
                got = recover(env)
                check(got in (before, after),
                      "step %d %s: mbox is neither untouched nor "
                      "complete (%d bytes; expected %d or %d)"
                      % (step, action, len(got), len(before), len(after)))
                tried += 1
        print("# %d steps x 3 faults, every one recovered" % steps)
        check(tried == steps * 3, "not every step tried")


@test
def fault_every_step_middle_deletions_with_new_mail():
    every_step([2, 5, 6, 11])


@test
def fault_every_step_first_message_deleted():
    every_step([1], with_tail=False)


@test
def fault_every_step_delete_all_but_new_mail():
    every_step(list(range(1, 7)), n=6, big=(2,))


@test
def mail_delivered_after_a_crash_is_kept():
    # Killed at every step of UPDATE, then a delivery agent appends before
    # anyone logs in again: the recovery must keep that mail, whether the
    # journal was incomplete (discarded), complete (replayed, the new mail
    # moved down under a journal of its own) or already applied.
    late = T.mbox_bytes([(T.envelope(950), T.message(950))])
    script = "DELE 2\r\nDELE 5\r\n"
    with T.Env() as env:
        ms = msgs(10, big=(3, 8))
        setup(env, ms)
        steps = count_steps(env, ms, script, NEW)
        before = expected(ms, set(), NEW) + late
        after = expected(ms, {2, 5}, NEW) + late
        fates = {"untouched": 0, "complete": 0}
        for step in range(1, steps + 1):
            env.write_mbox("u", ms)
            run(env, FI_BIN, script, fault="%d:kill" % step, append=NEW)
            with open(env.mbox("u"), "ab") as f:
                f.write(late)
            got = recover(env)
            check(got in (before, after),
                  "kill at step %d, mail delivered after: mbox is neither "
                  "untouched nor complete (%d bytes; expected %d or %d)"
                  % (step, len(got), len(before), len(after)))
            fates["untouched" if got == before else "complete"] += 1
        print("# %d kills then a delivery: %s" % (steps, fates))
        check(fates["untouched"] and fates["complete"],
              "both fates should occur: %r" % fates)


@test
def quit_writes_less_than_twice_what_it_moves():
    # The journal carries only source bytes below the final size; the
    # rest stays in the mbox until the truncate.
    with T.Env() as env:
        ms = msgs(12, big=(3, 7, 11))
        setup(env, ms)
        env.write_mbox("u", ms)
        deleted = {3}               # ~150 KB, with 9 messages behind it
        whole = len(T.mbox_bytes(ms))
        front = len(T.mbox_bytes(ms[:3]))
        moved = whole - front
        gap = front - len(T.mbox_bytes(ms[:2]))
        p = subprocess.Popen([T.BIN] + env.argv(), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        p.stdin.write(b"USER u\r\nPASS pw\r\nDELE 3\r\n")
        p.stdin.flush()
        got = b""
        while got.count(b"\r\n") < 4:
            got += p.stdout.read1(4096)

        def wchar():
            with open("/proc/%d/io" % p.pid) as f:
                return int(dict(l.split(": ") for l in
                                f.read().splitlines())["wchar"])
        w0 = wchar()
        p.stdin.write(b"QUIT\r\n")
        p.stdin.flush()
        p.stdout.readline()
        w1 = wchar()
        p.stdin.close()
        p.wait(30)
        written = w1 - w0
        eq(env.read_mbox("u"), expected(ms, deleted), "mbox after QUIT")
        print("# moved %d bytes, QUIT wrote %d (%.3fx)"
              % (moved, written, written / moved))
        # The bytes that came from behind the new end are not journaled.
        check(written < 2 * moved - gap // 2,
              "QUIT wrote %d bytes for %d moved (gap %d)"
              % (written, moved, gap))


def journal_bytes(st, orig, final, stale, recs, data):
    """A journal as journal.c writes it (host order): header, records
    (dst, src, len), the carried bytes, MD5 trailer."""
    import hashlib
    import struct
    body = (b"POP3DJ01" + struct.pack("=5Q", st.st_dev, st.st_ino, orig,
                                      final, len(recs)) + stale +
            b"".join(struct.pack("=3Q", *r) for r in recs) + data)
    return body + hashlib.md5(body).digest() + b"POP3DEND"


@test
def forged_and_garbage_journals_are_discarded():
    # The journal is read back at every login that finds one: garbage,
    # and well-checksummed journals whose records point where no move can
    # go, must be discarded with the mbox untouched.  A well-formed one
    # (delete message 1) is replayed, which shows the forgeries speak the
    # format.
    import hashlib
    import random as rnd
    with T.Env() as env:
        ms = msgs(4)
        setup(env, ms)
        path = env.write_mbox("u", ms)
        raw = T.mbox_bytes(ms)
        cut = len(T.mbox_bytes(ms[:1]))
        orig, final = len(raw), len(raw) - cut
        jpath = os.path.join(env.maildir, ".u.pop3d-journal")
        st = os.stat(path)
        stale = hashlib.md5(raw[final:]).digest()

        def carried(src, ln):
            return raw[src:src + min(ln, max(0, final - src))]

        good = [(0, cut, orig - cut)]
        forged = {
            "garbage": bytes(rnd.Random(7).randrange(256)
                             for _ in range(500)),
            "empty": b"",
            "src not above dst": journal_bytes(
                st, orig, final, stale, [(10, 10, 100)], carried(10, 100)),
            "dst past final": journal_bytes(
                st, orig, final, stale, [(final, cut, 10)], b""),
            "src past orig": journal_bytes(
                st, orig, final, stale, [(0, orig - 5, 10)], b""),
            "final above orig": journal_bytes(
                st, orig, orig + 1, stale, [], b""),
            "other inode": journal_bytes(
                os.stat(env.users_path), orig, final, stale, good,
                carried(cut, orig - cut)),
            "bad checksum": journal_bytes(
                st, orig, final, stale, good, carried(cut, orig - cut))[:-9]
                + b"XPOP3DEND",
            "carried bytes short": journal_bytes(
                st, orig, final, stale, good, carried(cut, orig - cut)[:-1]),
            # Two ranges that each carry 2^63 bytes: their sum wraps to
            # 0, the size of this journal's (empty) data.
            "carried sum wrapping": journal_bytes(
                st, 2 ** 64 - 1, 2 ** 64 - 1, stale,
                [(0, 1, 2 ** 63), (0, 1, 2 ** 63)], b""),
        }
        for what, j in forged.items():
            env.write_mbox("u", ms)
            with open(jpath, "wb") as f:
                f.write(j)
            env.own(jpath, 0o600)
            eq(recover(env), raw, "mbox after a journal with %s" % what)
        env.write_mbox("u", ms)
        st = os.stat(path)
        with open(jpath, "wb") as f:
            f.write(journal_bytes(st, orig, final, stale, good,
                                  carried(cut, orig - cut)))
        env.own(jpath, 0o600)
        eq(recover(env), expected(ms, {1}), "mbox after a good journal")


@test
def journal_that_is_no_file_of_ours_refuses_the_login():
    # Where the journal goes there may be something pop3d never wrote: a
    # FIFO (reading it would block the login, with the locks held and
    # deliveries waiting), a directory, a file of another user (a forgery
    # in a shared spool) or one others may write.  The login is refused
    # at once with [SYS/TEMP], the reason logged, the mbox and the file
    # left alone.
    with T.Env() as env:
        ms = msgs(3)
        setup(env, ms)
        raw = T.mbox_bytes(ms)
        jpath = os.path.join(env.maildir, ".u.pop3d-journal")
        st = os.stat(env.write_mbox("u", ms))
        cut = len(T.mbox_bytes(ms[:1]))
        import hashlib
        good = journal_bytes(st, len(raw), len(raw) - cut,
                             hashlib.md5(raw[len(raw) - cut:]).digest(),
                             [(0, cut, len(raw) - cut)], raw[cut:len(raw) - cut])

        def fifo():
            os.mkfifo(jpath, 0o600)
            env.own(jpath, 0o600)

        def directory():
            os.mkdir(jpath, 0o700)
            env.own(jpath, 0o700)

        def journal(mode, uid=None):
            def make():
                with open(jpath, "wb") as f:
                    f.write(good)
                env.own(jpath, mode)
                if uid is not None:
                    os.chown(jpath, uid, T.MAIL_GID)
            return make
        cases = [("a FIFO", fifo), ("a directory", directory),
                 ("a group-writable journal", journal(0o620))]
        if T.IS_ROOT:
            # Readable, so that its owner is what refuses it.
            cases.append(("another user's journal",
                          journal(0o644, T.MAIL_UID - 1)))
        for what, make in cases:
            env.write_mbox("u", ms)
            make()
            p = env.start()
            p.ok("USER u")
            t0 = time.monotonic()
            r = p.cmd("PASS pw", timeout=10)
            check(r.startswith("-ERR [SYS/TEMP]"), "%s: PASS %r" % (what, r))
            check(time.monotonic() - t0 < 5, "%s: %.1f s" % (
                what, time.monotonic() - t0))
            p.finish()
            check("left for the administrator" in p.stderr(),
                  "%s: log %r" % (what, p.stderr()[-300:]))
            eq(env.read_mbox("u"), raw, "%s: the mbox" % what)
            check(os.path.lexists(jpath), "%s: removed" % what)
            if os.path.isdir(jpath):
                os.rmdir(jpath)
            else:
                os.unlink(jpath)
        # The same journal, this user's and private, is replayed.
        journal(0o600)()
        eq(recover(env), expected(ms, {1}), "the journal of this user")


@test
def trailing_deletions_are_one_truncate():
    # No mail behind: deleting the last messages takes ftruncate + fsync.
    with T.Env() as env:
        ms = msgs(6)
        setup(env, ms)
        eq(count_steps(env, ms, "DELE 5\r\nDELE 6\r\n"), 2,
           "mutating steps for deleting the last two")
        eq(count_steps(env, ms, "".join("DELE %d\r\n" % i
                                        for i in range(1, 7))), 2,
           "mutating steps for deleting everything")
        env.write_mbox("u", ms)
        out, rc = run(env, T.BIN, "DELE 5\r\nDELE 6\r\n")
        eq(rc, 0, "exit status")
        eq(env.read_mbox("u"), expected(ms, {5, 6}), "mbox after QUIT")


@test
def random_kills_during_quit_of_a_large_mbox():
    rnd = random.Random(1939)
    with T.Env() as env:
        ms = msgs(60, big=set(range(2, 60, 2)))   # ~4.5 MB
        setup(env, ms)
        before = expected(ms, set())
        deleted = {1, 9, 30}
        after = expected(ms, deleted)
        script = "".join("DELE %d\r\n" % d for d in sorted(deleted))
        # How long does a whole QUIT take here?
        env.write_mbox("u", ms)
        t0 = time.monotonic()
        run(env, T.BIN, script)
        span = max(time.monotonic() - t0, 0.02)
        seen = {"untouched": 0, "complete": 0}
        for i in range(25):
            env.write_mbox("u", ms)
            p = subprocess.Popen([T.BIN] + env.argv(), stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL)
            p.stdin.write(("USER u\r\nPASS pw\r\n" + script).encode())
            p.stdin.flush()
            got = b""
            while got.count(b"\r\n") < 3 + len(deleted):
                b = p.stdout.read1(4096)
                if not b:
                    break
                got += b
            p.stdin.write(b"QUIT\r\n")
            p.stdin.flush()
            time.sleep(rnd.uniform(0, span))
            p.kill()
            p.communicate()
            got = recover(env)
            if got == before:
                seen["untouched"] += 1
            elif got == after:
                seen["complete"] += 1
            else:
                fail("kill %d: mbox neither untouched nor complete" % i)
        print("# 25 random kills: %(untouched)d untouched, "
              "%(complete)d complete" % seen)


@test
def full_disk_by_rlimit_fsize():
    with T.Env() as env:
        ms = msgs(12, big=(3, 7))
        setup(env, ms)
        size = len(T.mbox_bytes(ms))
        out, rc = run(env, T.BIN, "DELE 1\r\n", limit_fsize=size // 2)
        last = out.rstrip("\r\n").split("\r\n")[-1]
        check(last.startswith("-ERR [SYS/TEMP]"),
              "QUIT on a full disk answered %r" % last)
        eq(recover(env), T.mbox_bytes(ms), "mbox after a failed QUIT")


@test
def full_disk_on_a_real_tmpfs():
    mnt = os.path.join(T.tempfile.mkdtemp(prefix="pop3d-tmpfs-"))
    if not T.IS_ROOT or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", mnt],
            capture_output=True).returncode != 0:
        os.rmdir(mnt)
        raise T.Skip("cannot mount a tmpfs here")
    try:
        with T.Env() as env:
            env.maildir = mnt
            env.own(mnt, 0o755)
            ms = msgs(8, big=(2,))           # ~150 KB: the journal won't fit twice
            setup(env, ms)
            # Fill the rest of the filesystem.
            fd = os.open(os.path.join(mnt, "filler"),
                         os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while os.write(fd, b"x" * 4096) > 0:
                    pass
            except OSError:
                pass
            os.close(fd)
            out, rc = run(env, T.BIN, "DELE 1\r\n")
            last = out.rstrip("\r\n").split("\r\n")[-1]
            check(last.startswith("-ERR [SYS/TEMP]"),
                  "QUIT on a full tmpfs answered %r" % last)
            os.unlink(os.path.join(mnt, "filler"))
            eq(recover(env), T.mbox_bytes(ms), "mbox after a failed QUIT")
    finally:
        subprocess.run(["umount", mnt])
        os.rmdir(mnt)


@test
def no_room_for_a_journal_is_sys_perm():
    with T.Env() as env:
        ms = msgs(5)
        setup(env, ms)
        if T.IS_ROOT:
            os.chown(env.maildir, 0, 0)       # the user cannot write here
        os.chmod(env.maildir, 0o755)
        if not T.IS_ROOT:
            os.chmod(env.maildir, 0o555)
        errors = []
        try:
            out, rc = run(env, T.BIN, "DELE 2\r\n", errors=errors)
        finally:
            os.chmod(env.maildir, 0o755)
        last = out.rstrip("\r\n").split("\r\n")[-1]
        check(last.startswith("-ERR [SYS/PERM]"),
              "QUIT without room for a journal answered %r" % last)
        eq(env.read_mbox("u"), T.mbox_bytes(ms), "mbox untouched")
        # The log says the deletion asked for is not confirmed.
        check(any("quit failed, deletions not confirmed: user=u "
                  "retrieved=0/0 deleted=1/" in l and " kept=4/" in l
                  for l in errors), "log: %r" % errors[-3:])


@test
def incomplete_journal_is_discarded_and_complete_one_replayed():
    # Kill right after the journal is written but before the mbox is
    # touched: the journal is complete, the replay deletes.  Kill before
    # its rename: the half journal is discarded, nothing is deleted.
    with T.Env() as env:
        ms = msgs(6, big=(2,))
        setup(env, ms)
        steps = count_steps(env, ms, "DELE 1\r\n")
        states = []
        for step in range(1, steps + 1):
            env.write_mbox("u", ms)
            run(env, FI_BIN, "DELE 1\r\n", fault="%d:kill" % step)
            names = sorted(os.listdir(env.maildir))
            got = recover(env)
            states.append((step, [n for n in names if "journal" in n],
                           got == expected(ms, {1})))
        # Some kill left only a ".new" (discarded: nothing deleted) and
        # some left a complete journal (replayed: deleted).
        check(any(j and j[0].endswith(".new") and not done
                  for _, j, done in states),
              "no step left an incomplete journal that was discarded: %r"
              % states)
        check(any(j and not j[0].endswith(".new") and done
                  for _, j, done in states),
              "no step left a complete journal that was replayed: %r"
              % states)


def stopped(pid, timeout=10):
    """Waits until the process is stopped (state T in /proc)."""
    deadline = time.monotonic() + timeout * T.SLOW
    while time.monotonic() < deadline:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state in ("T", "t"):
            return
        time.sleep(0.01)
    fail("pop3d did not stop at its pause point")


@test
def dotlock_made_anew_while_judged_stale_is_kept():
    # pop3d judges the dotlock stale (its pid is gone) and stops right
    # there (POP3D_PAUSE).  Meanwhile another agent breaks it too and
    # makes its own: a new file over the name, or one that reuses the
    # inode (same number, new ctime).  pop3d must not remove that lock:
    # it waits, and logs in once the agent is done.
    for how in ("new inode", "reused inode"):
        with T.Env() as env:
            ms = msgs(5)
            setup(env, ms)
            lock = env.mbox("u") + ".lock"
            with open(lock, "wb") as f:
                f.write(b"%d\n" % T.dead_pid())
            p = fi_login(env, POP3D_PAUSE="dotlock-stale")
            stopped(p.proc.pid)
            ours = b"%d\n" % os.getpid()
            if how == "new inode":
                with open(lock + ".new", "wb") as f:
                    f.write(ours)
                os.rename(lock + ".new", lock)
            else:
                time.sleep(0.02)      # past a coarse clock's tick
                with open(lock, "r+b") as f:
                    f.write(ours)
                    f.truncate()
            ino = os.stat(lock).st_ino
            os.kill(p.proc.pid, signal.SIGCONT)
            try:
                p.expect_silence(1.0)
                eq(os.stat(lock).st_ino, ino, "%s: our lock" % how)
                with open(lock, "rb") as f:
                    eq(f.read(), ours, "%s: our lock's content" % how)
            finally:
                os.unlink(lock)
            p.expect_ok("PASS after our lock went away (%s)" % how)
            p.ok("DELE 1")
            p.quit()
            eq(env.read_mbox("u"), expected(ms, {1}), "mbox after QUIT")


@test
def dotlock_taken_from_us_during_update_is_left_to_its_owner():
    # Another agent breaks pop3d's dotlock while pop3d rewrites the mbox
    # (judged stale after its own time limit, or pop3d's pid unseen from
    # another pid namespace) and makes its own.  pop3d finishes under its
    # fcntl lock, but must not remove the other agent's dotlock, which
    # guards that agent's writing once pop3d is done.
    with T.Env() as env:
        ms = msgs(6)
        setup(env, ms)
        lock = env.mbox("u") + ".lock"
        p = stop_at(env, 1, "DELE 2\r\n")
        try:
            check(os.path.exists(lock), "no dotlock while stopped in UPDATE")
            theirs = b"%d\n" % os.getpid()
            with open(lock + ".new", "wb") as f:
                f.write(theirs)
            os.rename(lock + ".new", lock)
            ino = os.stat(lock).st_ino
        finally:
            os.kill(p.proc.pid, signal.SIGCONT)
        p.expect_ok("QUIT")
        p.expect_eof()
        eq(p.wait(), 0, "exit status")
        try:
            eq(os.stat(lock).st_ino, ino, "the other agent's dotlock")
            with open(lock, "rb") as f:
                eq(f.read(), theirs, "the other agent's dotlock content")
        except FileNotFoundError:
            fail("pop3d removed the other agent's dotlock")
        os.unlink(lock)
        check("was taken from us" in p.stderr(),
              "no log line of the lock taken: %r" % p.stderr())
        eq(env.read_mbox("u"), expected(ms, {2}), "mbox after QUIT")


def held_locks(env, pid, what):
    """Checks that process pid holds every lock on u's mbox: the session
    flock, the fcntl write lock and the dotlock.  A second descriptor of
    the mbox that pop3d opened and closed would have dropped its fcntl
    lock (POSIX drops all of a process's fcntl locks on a file when it
    closes any descriptor of it), so this also checks that it never
    did."""
    path = env.mbox("u")
    fd = os.open(path, os.O_RDWR)
    try:
        want = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        got = struct.unpack("hhqqi4x", fcntl.fcntl(fd, fcntl.F_GETLK,
                                                   want))
        eq((got[0], got[4]), (fcntl.F_WRLCK, pid),
           "%s: fcntl lock on the mbox (type, holder)" % what)
        check(not try_flock(path), "%s: the session flock is not held"
              % what)
    finally:
        os.close(fd)
    try:
        with open(path + ".lock", "rb") as f:
            eq(f.read().strip(), b"%d" % pid, "%s: the dotlock's pid" % what)
    except FileNotFoundError:
        fail("%s: no dotlock" % what)


def stop_at(env, step, script, append=None):
    """A session stopped at the given mutating step of its QUIT: returns
    the Pop3, with QUIT sent."""
    p = fi_login(env, POP3D_FAULT="%d:stop" % step)
    p.expect_ok("PASS")
    if append is not None:
        with open(env.mbox("u"), "ab") as f:
            f.write(append)
    for l in script.splitlines():
        p.ok(l)
    p.send("QUIT\r\n")
    stopped(p.proc.pid)
    return p


@test
def every_lock_is_held_at_every_step_of_update():
    # Stopped before each mutating step of QUIT in turn (the journalled
    # compaction, and the single truncate), the session holds all three
    # locks on the mbox; continued, it finishes the QUIT as usual.
    cases = (("DELE 2\r\nDELE 5\r\nDELE 6\r\nDELE 11\r\n", NEW),
             ("DELE 11\r\nDELE 12\r\n", None))
    for script, tail in cases:
        with T.Env() as env:
            ms = msgs(12, big=(3, 7))
            setup(env, ms)
            steps = count_steps(env, ms, script, tail)
            check(steps >= 2, "UPDATE took only %d mutating steps" % steps)
            deleted = {int(l.split()[1]) for l in script.splitlines()}
            for step in range(1, steps + 1):
                env.write_mbox("u", ms)
                p = stop_at(env, step, script, tail)
                try:
                    held_locks(env, p.proc.pid, "step %d of %d" % (step,
                                                                   steps))
                finally:
                    os.kill(p.proc.pid, signal.SIGCONT)
                p.expect_ok("QUIT after step %d" % step)
                p.expect_eof()
                eq(p.wait(), 0, "exit status")
                eq(env.read_mbox("u"), expected(ms, deleted, tail or b""),
                   "mbox after QUIT stopped at step %d" % step)
            print("# %s: %d steps, all locks held at each"
                  % ("compaction" if tail else "truncate", steps))


@test
def every_lock_is_held_at_every_step_of_a_replay():
    # A kill after the journal is complete leaves a crash for the next
    # session to replay.  Stopped before each mutating step of that
    # replay, the session holds all three locks; continued, it logs in
    # on the completed mbox.
    with T.Env() as env:
        ms = msgs(12, big=(3, 7))
        setup(env, ms)
        want = expected(ms, {2, 5})
        # The first kill that leaves a complete journal: the mbox is
        # untouched yet, so the replay does all the moving.
        _, restore = crash_with_journal(env, ms, "DELE 2\r\nDELE 5\r\n")
        restore()
        n = fault_steps(env)
        check(n >= 2, "replay took %d mutating steps" % n)
        eq(env.read_mbox("u"), want, "mbox after the counted replay")
        for step in range(1, n + 1):
            restore()
            p = fi_login(env, POP3D_FAULT="%d:stop" % step)
            stopped(p.proc.pid)
            try:
                held_locks(env, p.proc.pid, "replay step %d of %d"
                           % (step, n))
            finally:
                os.kill(p.proc.pid, signal.SIGCONT)
            p.expect_ok("PASS after the replay")
            p.quit()
            eq(env.read_mbox("u"), want, "mbox after the replay")
        print("# replay: %d steps, all locks held at each" % n)


def crash_with_journal(env, ms, script, moved=False, tail=None, raw=None):
    """Kills UPDATE at the first step that leaves a complete journal (with
    moved set: with the mbox's bytes moved already, not yet truncated),
    appends tail as mail delivered after the crash, and returns the step
    and a function that puts that spool back (the mbox in place: a
    journal names its inode)."""
    orig = raw or T.mbox_bytes([(T.envelope(i + 1), m)
                                for i, m in enumerate(ms)])
    env.write_mbox("u", None, raw=orig)
    steps = fault_steps(env, script)
    for step in range(1, steps + 1):
        env.write_mbox("u", None, raw=orig)
        run(env, FI_BIN, script, fault="%d:kill" % step)
        now = env.read_mbox("u")
        if any(n.endswith("pop3d-journal")
               for n in os.listdir(env.maildir)) and (
                not moved or (len(now) == len(orig) and now != orig)):
            break
    else:
        fail("no kill left a complete journal")
    if tail:
        with open(env.mbox("u"), "ab") as f:
            f.write(tail)
    snap = {}
    for n in os.listdir(env.maildir):
        with open(os.path.join(env.maildir, n), "rb") as f:
            snap[n] = f.read()

    def restore():
        for n in os.listdir(env.maildir):
            if n not in snap:
                os.unlink(os.path.join(env.maildir, n))
        for n, data in snap.items():
            f = os.path.join(env.maildir, n)
            with open(f, "r+b" if n == "u" else "wb") as fh:
                fh.write(data)
                fh.truncate()
            env.own(f, 0o600)
    return step, restore


@test
def faults_at_every_step_of_a_replay():
    # A crash leaves a complete journal, and mail arrives before the next
    # login, so that the replay moves it down under a journal of its own
    # that replaces the first.  Each mutating step of that replay fails
    # (EIO, ENOSPC) or is killed in turn, and more mail may arrive after;
    # then a normal login must find the mbox exactly deleted or exactly
    # untouched, new mail kept.  (Found in review: a failed directory
    # sync after the second journal's rename unlinked it, and with it the
    # only journal left: the next login served the half-done mbox.)
    script = "DELE 2\r\nDELE 5\r\n"
    late = T.mbox_bytes([(T.envelope(950), T.message(950))])
    later = T.mbox_bytes([(T.envelope(960), T.message(960))])
    with T.Env() as env:
        ms = msgs(10, big=(3, 8))
        setup(env, ms)
        _, restore = crash_with_journal(env, ms, script, tail=late)
        restore()
        n = fault_steps(env)
        check(n >= 8, "the replay took %d mutating steps" % n)
        tried = 0
        for extra in (b"", later):
            before = expected(ms, set()) + late + extra
            after = expected(ms, {2, 5}) + late + extra
            for step in range(1, n + 1):
                for action in ("eio", "enospc", "kill"):
                    restore()
                    run(env, FI_BIN, "", fault="%d:%s" % (step, action))
                    if extra:
                        with open(env.mbox("u"), "ab") as f:
                            f.write(extra)
                    got = recover(env)
                    check(got in (before, after),
                          "replay step %d %s%s: mbox is neither untouched "
                          "nor complete (%d bytes; expected %d or %d)"
                          % (step, action, ", more mail" if extra else "",
                             len(got), len(before), len(after)))
                    tried += 1
        print("# replay: %d steps x 3 faults x 2, every one recovered"
              % n)
        eq(tried, n * 6, "cases tried")


@test
def replay_moves_new_mail_without_its_leading_empty_line():
    # The mbox's last message ends without an empty line; QUIT deletes
    # message 2 and the last, and is killed once its journal is complete;
    # then an agent appends new mail with the empty line before it.  The
    # replay moves that mail down behind message 9's own empty line: its
    # leading one must stay behind, or message 9 gains an empty line.
    ms = msgs(10, big=(3,))
    raw = T.mbox_bytes([(T.envelope(i + 1), m)
                        for i, m in enumerate(ms)])[:-1]
    late = b"\n" + T.envelope(950) + b"\n" + T.message(950)
    with T.Env() as env:
        setup(env, ms)
        _, restore = crash_with_journal(env, ms, "DELE 2\r\nDELE 10\r\n",
                                        tail=late, raw=raw)
        restore()
        want = expected(ms, {2, 10}) + T.envelope(950) + b"\n" + \
            T.message(950)
        eq(recover(env), want, "mbox after the replay")


@test
def read_error_while_judging_a_journal_keeps_it():
    # Whether a journal was applied yet is read from the mbox's bytes
    # that the moves leave alone.  A read error there is no answer: the
    # login fails with [SYS/TEMP] and the journal stays.  (Found in
    # review: it was taken for "applied", the journal removed, and a
    # half-moved mbox served.)
    script = "DELE 2\r\nDELE 5\r\n"
    with T.Env() as env:
        ms = msgs(10, big=(3, 8))
        setup(env, ms)
        # A kill after some moves, before the truncate.
        step, restore = crash_with_journal(env, ms, script, moved=True)
        restore()
        crashed = env.read_mbox("u")
        journal = [n for n in os.listdir(env.maildir)
                   if n.endswith("pop3d-journal")]
        p = fi_login(env, POP3D_FAIL="digest")
        r = p.line()
        check(r.startswith("-ERR [SYS/TEMP]"),
              "login with a read error on the mbox: %r" % r)
        p.expect_eof()
        p.wait()
        check("the journal is kept" in p.stderr(),
              "not logged: %r" % p.stderr()[-300:])
        eq(env.read_mbox("u"), crashed, "mbox after the failed login")
        eq([n for n in os.listdir(env.maildir)
            if n.endswith("pop3d-journal")], journal, "the journal")
        eq(recover(env), expected(ms, {2, 5}), "mbox after the next login")


@test
def mbox_shorter_than_its_journal_allows_keeps_the_journal():
    # A crash leaves a journal, and then something else cuts the mbox
    # below the size the journal would leave it at: neither applied nor
    # to be replayed, so the journal (which may hold the only copy of the
    # bytes it moves) stays for the administrator, the mbox is not
    # touched, and the login fails with [SYS/TEMP].
    script = "DELE 2\r\nDELE 5\r\n"
    with T.Env() as env:
        ms = msgs(10, big=(3, 8))
        setup(env, ms)
        step, restore = crash_with_journal(env, ms, script, moved=True)
        restore()
        journal = {n: open(os.path.join(env.maildir, n), "rb").read()
                   for n in os.listdir(env.maildir)
                   if n.endswith("pop3d-journal")}
        check(journal, "no journal after the crash at step %d" % step)
        with open(env.mbox("u"), "r+b") as f:
            f.truncate(len(expected(ms, {2, 5})) // 2)
        cut = env.read_mbox("u")
        p = env.start()
        p.ok("USER u")
        r = p.cmd("PASS pw")
        check(r.startswith("-ERR [SYS/TEMP]"),
              "login with an mbox shorter than its journal allows: %r" % r)
        p.finish()
        check("left for the administrator" in p.stderr(),
              "not logged: %r" % p.stderr()[-300:])
        eq(env.read_mbox("u"), cut, "mbox after the refused login")
        eq({n: open(os.path.join(env.maildir, n), "rb").read()
            for n in os.listdir(env.maildir)
            if n.endswith("pop3d-journal")}, journal, "the journal")


@test
def dotlock_taken_over_a_leftover_of_our_pid():
    # The dotlock is made as <mbox>.lock.PID.HOST and linked.  A file of
    # that name left by an earlier process with the same pid (killed
    # between the two) must not keep pop3d from its dotlock: it is
    # removed and made anew.  pop3d stops right before making it
    # (POP3D_PAUSE), so that the test knows the pid.
    with T.Env() as env:
        ms = msgs(3)
        setup(env, ms)
        p = fi_login(env, POP3D_PAUSE="dotlock-take")
        stopped(p.proc.pid)
        left = "%s.lock.%d.%s" % (env.mbox("u"), p.proc.pid,
                                  socket.gethostname()[:63])
        with open(left, "wb") as f:
            f.write(b"%d\n" % p.proc.pid)
        os.kill(p.proc.pid, signal.SIGCONT)
        p.expect_ok("PASS")
        check(not os.path.exists(left), "the leftover is still there")
        check("no dotlock" not in p.stderr(),
              "went on without a dotlock: %r" % p.stderr()[-300:])
        p.quit()
        eq(env.read_mbox("u"), expected(ms, set()), "mbox")


@test
def dotlock_on_a_file_system_without_hard_links():
    # The dotlock is made by link(2).  Where the file system makes no hard
    # links (some FUSE and SMB mounts: EPERM), that failure was taken for
    # a lock held by someone else: every login waited POP3D_LOCK_WAIT
    # (30 s) and failed, and so did every QUIT (found in review).  Like
    # any other failure to make a dotlock, it means going on without one
    # (the fcntl lock stays), logged.  strace makes link(2) fail.
    strace = shutil.which("strace")
    if strace is None or subprocess.run(
            [strace, "-qq", "-o", os.devnull, "true"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ).returncode != 0:
        raise T.Skip("needs a working strace(1)")
    e = dict(os.environ)
    # LeakSanitizer cannot run under ptrace (the sanitizers pass).
    e["ASAN_OPTIONS"] = e.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    with T.Env() as env:
        ms = msgs(3)
        setup(env, ms)
        p = T.Pop3([strace, "-f", "-qq", "-o", os.devnull,
                    "-e", "trace=link,linkat",
                    "-e", "inject=link,linkat:error=EPERM", T.BIN] +
                   env.argv(), os.path.join(env.dir, "strace.stderr"),
                   env=e)
        env.procs.append(p)
        p.expect_ok("greeting")
        p.ok("USER u")
        p.ok("PASS pw")
        p.ok("DELE 2")
        p.quit()
        eq(env.read_mbox("u"), expected(ms, {2}), "mbox after QUIT")
        check("no dotlock" in p.stderr(), "going on without a dotlock is "
              "not logged: %r" % p.stderr()[-300:])
        eq(sorted(os.listdir(env.maildir)), ["u"], "files beside the mbox")


@test
def delivery_lock_wait_is_bounded_by_the_clock():
    # The wait for a delivery agent's lock (POP3D_LOCK_WAIT, 30 s) is
    # wall time, not a count of attempts: each attempt may itself be slow
    # (an NFS server), and 300 slow attempts would have been many minutes.
    # Another agent holds the dotlock; every attempt of pop3d's stops at
    # dotlock-take and the test lets it go on after 0.5 s, so that an
    # attempt costs 0.6 s.  The fault build's POP3D_LOCK_WAIT_SECS makes
    # the bound 3 s: the answer must come after 3 s but well before the
    # 30 attempts x 0.6 s a count would take.
    with T.Env() as env:
        ms = msgs(3)
        setup(env, ms)
        lock = env.mbox("u") + ".lock"
        with open(lock, "wb") as f:
            f.write(b"%d\n" % os.getpid())   # alive: not stale
        p = fi_login(env, POP3D_PAUSE="dotlock-take",
                     POP3D_LOCK_WAIT_SECS="3")
        t0 = time.monotonic()
        attempts = 0
        while True:
            try:
                stopped(p.proc.pid, timeout=2)
            except T.TestFailure:
                break       # no longer stopping: it answered
            attempts += 1
            check(attempts < 20, "still trying after %d attempts (%.1f s)"
                  % (attempts, time.monotonic() - t0))
            time.sleep(0.5)
            os.kill(p.proc.pid, signal.SIGCONT)
        r = p.line(timeout=10 * T.SLOW)
        dt = time.monotonic() - t0
        eq(r, "-ERR [SYS/TEMP] cannot open the maildrop, try later",
           "PASS while another agent holds the dotlock")
        # (Whole seconds of the clock would have cut up to one off it.)
        check(dt >= 2.95, "gave up after %.2f s, before the bound" % dt)
        check(attempts <= 8, "%d attempts of 0.6 s for a 3 s bound"
              % attempts)
        p.expect_eof()
        eq(open(lock, "rb").read(), b"%d\n" % os.getpid(),
           "the other agent's dotlock")
        os.unlink(lock)
        eq(env.read_mbox("u"), expected(ms, set()), "mbox")


def fresh_session(env, ms, pause="dotlock-fresh"):
    """A session of the fault build that deletes message 1 of ms (the
    rest moves through the journal) and touches its dotlock at every
    chunk of that work (POP3D_DOTLOCK_REFRESH_SECS=0), stopping after
    each touch: returns the Pop3 stopped at the first one, QUIT sent."""
    p = fi_login(env, POP3D_PAUSE=pause, POP3D_DOTLOCK_REFRESH_SECS="0")
    p.expect_ok("PASS")
    p.ok("DELE 1")
    p.send("QUIT\r\n")
    stopped(p.proc.pid)
    return p


def run_on(p):
    """Lets a session that stops at its pause point run to its end;
    returns how many more times it stopped."""
    n = 0
    while True:
        os.kill(p.proc.pid, signal.SIGCONT)
        try:
            stopped(p.proc.pid, timeout=2)
        except T.TestFailure:
            return n
        n += 1


@test
def dotlock_is_kept_fresh_during_a_long_update():
    # An agent takes a dotlock older than its stale limit (liblockfile:
    # 5 minutes) for a crash's and breaks it; a compaction of a large
    # mbox on a slow disk can take that long.  pop3d touches its dotlock
    # every DOTLOCK_REFRESH seconds of such work (liblockfile's
    # lockfile_touch); the fault build makes it every chunk.  Stopped
    # after a touch, 1.5 s pass; the next touch must move the mtime on,
    # the lock must stay pop3d's file, and at the end pop3d must still
    # know it for its own and remove it (the touch changed its ctime).
    with T.Env() as env:
        ms = msgs(4, big=(2, 3))
        setup(env, ms)
        lock = env.mbox("u") + ".lock"
        p = fresh_session(env, ms)
        st0 = os.stat(lock)
        eq(open(lock, "rb").read(), b"%d\n" % p.proc.pid, "the dotlock")
        time.sleep(1.5)
        os.kill(p.proc.pid, signal.SIGCONT)
        stopped(p.proc.pid)
        st1 = os.stat(lock)
        eq(st1.st_ino, st0.st_ino, "the dotlock's inode")
        check(st1.st_mtime >= st0.st_mtime + 1.4,
              "not touched: mtime %.2f, then %.2f" % (st0.st_mtime,
                                                      st1.st_mtime))
        more = run_on(p)
        check(more >= 3, "touched only %d times more" % more)
        p.expect_ok("QUIT")
        p.expect_eof()
        eq(p.wait(), 0, "exit status")
        check(not os.path.exists(lock), "pop3d left its dotlock behind")
        check("taken from us" not in p.stderr(),
              "pop3d took its touched lock for another's: %r"
              % p.stderr()[-300:])
        eq(env.read_mbox("u"), expected(ms, {1}), "mbox after QUIT")


@test
def dotlock_taken_from_us_is_not_touched():
    # While pop3d is in UPDATE another agent breaks its dotlock and makes
    # its own (dated 100 s back here, to see a touch).  pop3d's touches
    # must stop: they would keep the other agent's lock alive (and its
    # owner may be gone), and pop3d must leave it in place at the end.
    with T.Env() as env:
        ms = msgs(4, big=(2, 3))
        setup(env, ms)
        lock = env.mbox("u") + ".lock"
        p = fresh_session(env, ms)
        try:
            with open(lock + ".new", "wb") as f:
                f.write(b"%d\n" % os.getpid())
            # An agent of the mail user's: pop3d could touch its file.
            mb = os.stat(env.mbox("u"))
            os.chown(lock + ".new", mb.st_uid, mb.st_gid)
            old = time.time() - 100
            os.utime(lock + ".new", (old, old))
            os.rename(lock + ".new", lock)
        finally:
            more = run_on(p)
        eq(more, 0, "touches of the other agent's dotlock")
        p.expect_ok("QUIT")
        p.expect_eof()
        st = os.stat(lock)
        check(abs(st.st_mtime - old) < 1, "the other agent's dotlock was "
              "touched: mtime %.1f s after it was set" % (st.st_mtime - old))
        os.unlink(lock)
        eq(env.read_mbox("u"), expected(ms, {1}), "mbox after QUIT")


def try_flock(path):
    """Whether an exclusive flock of path can be had now (then released)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


@test
def mbox_session_lock_on_nfs_is_a_file_of_its_own():
    # On Linux NFS, flock(2) is sent to the server as a lock of the whole
    # file, which conflicts there with every fcntl lock of another owner:
    # a session flock of the mbox would conflict with pop3d's own fcntl
    # lock at the scan (every login would wait 30 s and fail [SYS/TEMP])
    # and hold every delivery agent off for the whole session.  There the
    # session lock is a flock of .NAME.pop3d-session beside the mbox.  The
    # fault build takes POP3D_FS_NFS for such a mount (no NFS here): the
    # test shows that path keeps [IN-USE] and leaves the mbox unlocked.
    with T.Env() as env:
        ms = msgs(4)
        setup(env, ms)
        side = os.path.join(env.maildir, ".u.pop3d-session")
        p = fi_login(env, POP3D_FS_NFS="1")
        p.expect_ok("PASS")
        check(os.path.isfile(side), "no %s" % side)
        check(not try_flock(side), "the session file is not locked")
        check(try_flock(env.mbox("u")),
              "the mbox itself is flocked (a byte-range lock on NFS)")
        # A delivery agent's lock is free during the session.
        with open(env.mbox("u"), "r+b") as f:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.lockf(f, fcntl.LOCK_UN)
        q = fi_login(env, POP3D_FS_NFS="1")
        r = q.line()
        check(r.startswith("-ERR [IN-USE]"), "second session: %r" % r)
        q.expect_eof()
        p.ok("DELE 1")
        p.quit()
        eq(p.wait(), 0, "exit status")
        eq(env.read_mbox("u"), expected(ms, {1}), "mbox after QUIT")
        check(try_flock(side), "the session file is still locked")
        q = fi_login(env, POP3D_FS_NFS="1")
        q.expect_ok("PASS after the first session ended")
        q.quit()
        # Without the NFS knob the session flock is the mbox's again.
        q = fi_login(env)
        q.expect_ok("PASS")
        check(not try_flock(env.mbox("u")), "local: the mbox is not "
              "flocked during the session")
        q.quit()


@test
def mbox_on_nfs_without_a_place_for_the_session_lock():
    # The session file cannot be made (the directory is not the user's to
    # write): the session goes on without a session lock, logged, rather
    # than refusing the user.
    with T.Env() as env:
        ms = msgs(3)
        setup(env, ms)
        os.chown(env.maildir, 0, 0)
        os.chmod(env.maildir, 0o755)
        p = fi_login(env, POP3D_FS_NFS="1")
        p.expect_ok("PASS")
        eq(T.parse_stat(p.ok("STAT")), (3, sum(len(T.wire(m)) for m in ms)),
           "STAT")
        p.quit()
        check("no session lock file" in p.stderr(),
              "not logged: %r" % p.stderr()[-300:])
        check(not os.path.exists(
            os.path.join(env.maildir, ".u.pop3d-session")),
            "a session file was made")
        eq(env.read_mbox("u"), expected(ms, set()), "mbox")


@test
def mbox_on_nfs_session_file_of_another_user_is_not_used():
    # In a shared spool another user can make .u.pop3d-session first,
    # writable by all, and hold its lock: u would get [IN-USE] for good.
    # A session file that is not the mail user's own is not used (logged;
    # the session goes on without a session lock).
    with T.Env() as env:
        ms = msgs(3)
        setup(env, ms)
        side = os.path.join(env.maildir, ".u.pop3d-session")
        with open(side, "wb"):
            pass
        os.chmod(side, 0o666)           # root's, writable by all
        fd = os.open(side, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            p = fi_login(env, POP3D_FS_NFS="1")
            p.expect_ok("PASS while another user holds the session file")
            p.ok("DELE 2")
            p.quit()
        finally:
            os.close(fd)
        check("no file of ours" in p.stderr(),
              "not logged: %r" % p.stderr()[-300:])
        eq(env.read_mbox("u"), expected(ms, {2}), "mbox after QUIT")


@test
def maildir_move_without_rename_flags_never_replaces():
    # Where renameat2(RENAME_NOREPLACE) is not known (NFS: EINVAL), the
    # move of a shown message from new/ to cur/ must still not replace a
    # file already there under the target name.  new/B and cur/B:2, (a
    # different message with B's unique part) exist; each move in turn
    # fails with EINVAL and takes the fallback, also where link(2) fails
    # with EPERM.
    a = T.message(1, body=b"A\n")
    b = T.message(2, body=b"B\n")
    c = T.message(3, body=b"C, already in cur/\n")

    def maildir(env):
        root = env.mbox("u")
        if os.path.isdir(root):
            shutil.rmtree(root)
        os.mkdir(root)
        env.own(root, 0o700)
        for sub in ("new", "cur", "tmp"):
            os.mkdir(os.path.join(root, sub))
            env.own(os.path.join(root, sub), 0o700)
        for rel, data in (("new/1700000001.a.host", a),
                          ("new/1700000002.b.host", b),
                          ("cur/1700000002.b.host:2,", c)):
            with open(os.path.join(root, rel), "wb") as f:
                f.write(data)
            env.own(os.path.join(root, rel), 0o600)

    def state(env):
        root = env.mbox("u")
        out = {}
        for sub in ("new", "cur", "tmp"):
            for n in sorted(os.listdir(os.path.join(root, sub))):
                with open(os.path.join(root, sub, n), "rb") as f:
                    out[sub + "/" + n] = f.read()
        return out

    want = {"cur/1700000001.a.host:2,": a, "new/1700000002.b.host": b,
            "cur/1700000002.b.host:2,": c}
    with T.Env() as env:
        env.add_user("u", "pw")
        maildir(env)
        eq(fault_steps(env), 2, "moves to cur/ (one per shown new/ message)")
        eq(state(env), want, "after a QUIT with rename flags")
        for step in (1, 2):
            maildir(env)
            errors = []
            out, rc = run(env, FI_BIN, "", fault="%d:einval" % step,
                          errors=errors)
            eq(rc, 0, "step %d: exit status" % step)
            eq(state(env), want, "step %d: the Maildir after QUIT" % step)
            check(any("moving" in l and "File exists" in l
                      for l in errors),
                  "step %d: the refused move is not logged: %r"
                  % (step, errors[-3:]))
        # A file system without hard links either (link: EPERM, as some
        # FUSE and SMB mounts): a move to a free name is a plain rename,
        # and one to a name in use is still refused.
        strace = shutil.which("strace")
        if strace is None or subprocess.run(
                [strace, "-qq", "-o", os.devnull, "true"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ).returncode != 0:
            raise T.Skip("needs a working strace(1) for link: EPERM")
        nolink = os.path.join(env.dir, "nolink")
        with open(nolink, "w") as f:
            f.write('#!/bin/sh\nexec %s -f -qq -o /dev/null -e '
                    'inject=linkat:error=EPERM %s "$@"\n' % (strace, FI_BIN))
        os.chmod(nolink, 0o755)
        for step in (1, 2):
            maildir(env)
            errors = []
            out, rc = run(env, nolink, "", fault="%d:einval" % step,
                          errors=errors)
            eq(rc, 0, "no hard links, step %d: exit status" % step)
            eq(state(env), want, "no hard links, step %d: the Maildir after "
               "QUIT" % step)


@test
def maildir_file_moved_to_cur_while_the_login_reads_is_shown_once():
    # An IMAP server moves new mail to cur/ (Dovecot does on SELECT) after
    # pop3d read new/ and before it reads cur/ (POP3D_PAUSE): the file is
    # in both listings.  Shown twice, the copy in cur/ got the UIDL of a
    # second copy (digest-1) and RETR of the other failed; the next
    # session gives it its own UIDL, and a client that leaves mail on the
    # server downloaded it twice (found in review).  Names with ,W= as
    # Dovecot's delivery makes them: no file is opened at login.
    ms = [T.message(1), T.message(2)]
    names = ["17000000%02d.M%dP%d.host,S=%d,W=%d" % (i, i, i, len(m),
                                                     len(T.wire(m)))
             for i, m in enumerate(ms, 1)]
    with T.Env() as env:
        env.add_user("u", "pw")
        root = env.mbox("u")
        os.mkdir(root)
        env.own(root, 0o700)
        for sub in ("new", "cur", "tmp"):
            os.mkdir(os.path.join(root, sub))
            env.own(os.path.join(root, sub), 0o700)
        for name, m in zip(names, ms):
            with open(os.path.join(root, "new", name), "wb") as f:
                f.write(m)
            env.own(os.path.join(root, "new", name), 0o600)
        p = fi_login(env, POP3D_PAUSE="maildir-scan")
        stopped(p.proc.pid)
        os.rename(os.path.join(root, "new", names[0]),
                  os.path.join(root, "cur", names[0] + ":2,S"))
        os.kill(p.proc.pid, signal.SIGCONT)
        p.expect_ok("PASS")
        eq(T.parse_stat(p.ok("STAT")), (2, sum(len(T.wire(m)) for m in ms)),
           "STAT")
        uidl = [u for _, u in T.parse_uidl(p.ok_multi("UIDL"))]
        eq(uidl, names, "UIDLs")
        for i, m in enumerate(ms, 1):
            p.ok("RETR %d" % i)
            eq(p.multi_raw() + b".\r\n", T.stuffed(m), "RETR %d" % i)
        p.quit()


# ------------------------------------------------ the order of the syncs

TRACED = ("write,pwrite64,fsync,fdatasync,rename,renameat,renameat2,"
          "ftruncate,unlink,unlinkat,openat,linkat")


def traced(env, script, user="u"):
    """One session (login, the script, QUIT) of the release build under
    strace -f -y.  Returns its calls on files under env.maildir, in order,
    as (name, path, args, paths): path is the file a descriptor argument
    names (-y), or the first path argument; paths all of them; failed
    calls are left out."""
    strace = shutil.which("strace")
    if strace is None or subprocess.run(
            [strace, "-qq", "-o", os.devnull, "true"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ).returncode != 0:
        raise T.Skip("needs a working strace(1)")
    out = os.path.join(env.dir, "strace.out")
    e = dict(os.environ)
    # LeakSanitizer cannot run under ptrace (the sanitizers pass).
    e["ASAN_OPTIONS"] = e.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    p = subprocess.run([strace, "-f", "-qq", "-y", "-s", "0", "-o", out,
                        "-e", "trace=" + TRACED, T.BIN] + env.argv(),
                       input=("USER %s\r\nPASS pw\r\n%sQUIT\r\n"
                              % (user, script)).encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=e, timeout=60 * T.SLOW)
    check(b"+OK bye" in p.stdout, "QUIT under strace: %r"
          % p.stdout[-300:])
    calls = []
    # -y names files by their real paths.
    real = os.path.realpath(env.maildir)
    call = re.compile(r"^\d+\s+(\w+)\((.*)\)\s+= (-?\d+)")
    for line in open(out, encoding="latin-1"):
        m = call.match(line)
        if m is None or int(m.group(3)) < 0:
            continue
        name, args = m.group(1), m.group(2)
        fd = re.match(r"-?\w+<([^>]*)>", args)
        paths = [os.path.join(base, rel) for base, rel in re.findall(
            r'(?:^|, )(?:AT_FDCWD<[^>]*>, |\d+<([^>]*)>, )?"([^"]*)"', args)]
        if name in ("openat", "unlink", "unlinkat", "rename", "renameat",
                    "renameat2", "linkat"):
            if not paths:
                continue
            where = paths[0]
        elif fd is not None:
            where = fd.group(1)
            paths = [where]
        else:
            continue
        paths = [env.maildir + q[len(real):] if q.startswith(real) else q
                 for q in paths]
        where = paths[0]
        if where.startswith(env.maildir):
            calls.append((name, where, args, paths))
    return calls


def first(calls, pred, after=-1, what=""):
    """The index of the first call after index after that pred accepts."""
    for i in range(after + 1, len(calls)):
        if pred(calls[i]):
            return i
    fail("no %s after call %d; calls:\n%s" % (what, after, "\n".join(
        "%d %s %s" % (i, c[0], c[2][:100]) for i, c in enumerate(calls))))


def last(calls, pred):
    found = [i for i, c in enumerate(calls) if pred(c)]
    return found[-1] if found else -1


@test
def update_syncs_each_step_before_the_next():
    # A crash (or a power cut) at any point must find on the disk what
    # recovery needs, so each step of UPDATE is durable before the next
    # one starts: the journal's bytes before its rename into place, the
    # rename (the directory) before the mbox is touched, the moves before
    # the truncate, the truncate before the journal goes, and the unlink.
    # Only the order of the system calls tells a missing fsync apart:
    # nothing short of a power cut shows it in the files.
    with T.Env() as env:
        setup(env, msgs(8, big=(5,)))
        calls = traced(env, "DELE 2\r\nDELE 6\r\n")
        mbox, d = env.mbox("u"), env.maildir
        jnew = os.path.join(d, ".u.pop3d-journal.new")
        journal = os.path.join(d, ".u.pop3d-journal")
        wrote = last(calls, lambda c: c[0] == "write" and c[1] == jnew)
        check(wrote >= 0, "no journal written: %r" % calls)
        synced = first(calls, lambda c: c[0] in ("fsync", "fdatasync") and
                       c[1] == jnew, wrote, "fsync of the journal")
        renamed = first(calls, lambda c: c[0].startswith("rename") and
                        c[1] == jnew, synced, "rename of the journal")
        dsync = first(calls, lambda c: c[0] == "fsync" and c[1] == d,
                      renamed, "fsync of the directory after the rename")
        moved = first(calls, lambda c: c[0] == "pwrite64" and c[1] == mbox,
                      -1, "move in the mbox")
        check(moved > dsync, "the mbox is written (call %d) before the "
              "journal is durable (call %d)" % (moved, dsync))
        moved = last(calls, lambda c: c[0] == "pwrite64" and c[1] == mbox)
        msync = first(calls, lambda c: c[0] == "fsync" and c[1] == mbox,
                      moved, "fsync of the mbox after the moves")
        cut = first(calls, lambda c: c[0].startswith("ftruncate") and
                    c[1] == mbox, -1, "truncate of the mbox")
        check(cut > msync, "the mbox is truncated (call %d) before its "
              "moves are synced (call %d)" % (cut, msync))
        csync = first(calls, lambda c: c[0] == "fsync" and c[1] == mbox,
                      cut, "fsync of the mbox after the truncate")
        gone = first(calls, lambda c: c[0].startswith("unlink") and
                     c[1] == journal, -1, "unlink of the journal")
        check(gone > csync, "the journal is removed (call %d) before the "
              "truncate is synced (call %d)" % (gone, csync))
        first(calls, lambda c: c[0] == "fsync" and c[1] == d, gone,
              "fsync of the directory after the journal's unlink")
        eq(env.read_mbox("u"), expected(msgs(8, big=(5,)), {2, 6}),
           "the mbox after QUIT")


@test
def trailing_deletions_sync_the_truncate():
    with T.Env() as env:
        setup(env, msgs(5))
        calls = traced(env, "DELE 4\r\nDELE 5\r\n")
        mbox = env.mbox("u")
        cut = first(calls, lambda c: c[0].startswith("ftruncate") and
                    c[1] == mbox, -1, "truncate of the mbox")
        first(calls, lambda c: c[0] == "fsync" and c[1] == mbox, cut,
              "fsync of the mbox after the truncate")
        eq(env.read_mbox("u"), expected(msgs(5), {4, 5}),
           "the mbox after QUIT")


@test
def maildir_update_syncs_the_directories_it_changed():
    # Unlinks in cur/ are made durable by a sync of cur/, those in new/
    # by one of new/, and a move from new/ to cur/ by both.
    def maildir(env, files):
        root = env.mbox("u")
        if os.path.isdir(root):
            shutil.rmtree(root)
        os.mkdir(root)
        env.own(root, 0o700)
        for sub in ("new", "cur", "tmp"):
            os.mkdir(os.path.join(root, sub))
            env.own(os.path.join(root, sub), 0o700)
        for i, rel in enumerate(files):
            with open(os.path.join(root, rel), "wb") as f:
                f.write(T.message(i + 1))
            env.own(os.path.join(root, rel), 0o600)
        return root

    cases = (
        # (files, script, directories that must be synced after the
        # last change in them)
        (("cur/1700000001.a.host:2,S", "cur/1700000002.b.host:2,S"),
         "DELE 1\r\n", ("cur",)),
        (("new/1700000001.a.host", "new/1700000002.b.host"),
         "DELE 1\r\n", ("new", "cur")),
        (("cur/1700000001.a.host:2,S", "new/1700000002.b.host"),
         "DELE 1\r\nDELE 2\r\n", ("new", "cur")),
    )
    with T.Env() as env:
        env.add_user("u", "pw")
        for files, script, dirs in cases:
            root = maildir(env, files)
            calls = traced(env, script)
            for sub in dirs:
                dpath = os.path.join(root, sub)
                changed = last(calls, lambda c: (
                    c[0].startswith("unlink") or c[0].startswith("rename")
                    or c[0] == "linkat") and
                    any(os.path.dirname(q) == dpath for q in c[3]))
                check(changed >= 0, "%s: no change in %s/ traced"
                      % (files, sub))
                first(calls, lambda c: c[0] == "fsync" and c[1] == dpath,
                      changed, "%s: fsync of %s/ after its last change"
                      % (files, sub))


if __name__ == "__main__":
    T.main()
