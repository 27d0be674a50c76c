#!/usr/bin/python3
"""Mail is never lost: delivery into an mbox while sessions retrieve and
delete.

A delivery agent (deliver.py, run as the mail user) appends uniquely
numbered messages with random small delays, taking the locks Debian's
agents take (fcntl + <mbox>.lock, by O_EXCL or by dotlockfile(1)) and, in
turn, only one of them.  Meanwhile sessions, sequential and a few in
parallel (those get [IN-USE]), retrieve everything, delete a random subset
and QUIT, or vanish, or RSET.  A message counts as taken only when its DELE
was followed by a QUIT answered +OK.  At the end: every delivered message
was taken exactly once or is still in the maildrop (not both), nothing else
is there, every retrieved copy is byte-exact, and each message kept one
UIDL for its whole life.

Run: /usr/bin/python3 tests/integration/test_delivery.py [test_name ...]
"""
import fcntl
import os
import random
import select
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deliver  # noqa: E402
from pop3test import (IS_ROOT, MAIL_GID, MAIL_UID, READ_TIMEOUT, SLOW,  # noqa
                      Env, TestFailure, check, eq, fail, main, parse_list,
                      parse_stat, parse_uidl, short, stuffed, test, wire,
                      read_multi, message, mbox_bytes)

PW = "s3cret pass"
FIVE = [message(i) for i in range(1, 6)]

HERE = os.path.dirname(os.path.abspath(__file__))
DELIVER = os.path.join(HERE, "deliver.py")


def parse_mbox(data):
    """(envelope, message) pairs of an mbox, by the format's rule: a
    message starts at a "From " line at the start or after an empty line;
    the empty line before it (or at the end) is the format's."""
    out = []
    cur = None
    prev_empty = True
    pos = 0
    while pos < len(data):
        j = data.find(b"\n", pos)
        j = len(data) if j < 0 else j + 1
        line = data[pos:j]
        pos = j
        if prev_empty and line.startswith(b"From "):
            if cur is not None:
                out.append(cur)
            cur = [line.rstrip(b"\n"), []]
        elif cur is None:
            fail("mbox does not start with a From line: %s" % short(data))
        else:
            cur[1].append(line)
        prev_empty = line in (b"\n", b"\r\n")
    if cur is not None:
        out.append(cur)
    msgs = []
    for env, lines in out:
        if lines and lines[-1] in (b"\n", b"\r\n"):
            lines = lines[:-1]
        msgs.append((env, b"".join(lines)))
    return msgs


class Run:
    """The shared record of one concurrent run."""

    def __init__(self, env, user, password):
        self.env = env
        self.user = user
        self.password = password
        self.lock = threading.Lock()
        self.taken = {}           # n -> session that took it
        self.uidl = {}            # n -> its UIDL, once seen
        self.errors = []
        self.stop = threading.Event()
        self.sessions = 0         # sessions that got the maildrop
        self.ids = 0              # every session started
        self.counts = {"quit": 0, "inuse": 0, "vanished": 0, "rset": 0,
                       "retrieved": 0}

    def error(self, msg):
        with self.lock:
            self.errors.append(msg)
        self.stop.set()

    def spawn(self):
        with self.lock:     # Env numbers stderr files without a lock
            return self.env.spawn(self.env.argv())


def one_session(run, rnd, sid):
    """One session; returns what it took (a set, maybe empty), or None
    when the maildrop was in use."""
    p = run.spawn()
    try:
        g = p.line()
        check(g.startswith("+OK"), "greeting %r" % g)
        p.ok("USER " + run.user)
        r = p.cmd("PASS " + run.password, timeout=60 * SLOW)
        if r.startswith("-ERR [IN-USE]"):
            p.expect_eof()
            p.close_input()
            eq(p.wait(), 2, "exit status after [IN-USE]")
            with run.lock:
                run.counts["inuse"] += 1
            return None
        check(r.startswith("+OK"), "session %d: login answered %r"
              % (sid, r))
        n, octets = parse_stat(p.ok("STAT"))
        sizes = dict(parse_list(p.ok_multi("LIST")))
        uids = dict(parse_uidl(p.ok_multi("UIDL")))
        eq(sorted(sizes), list(range(1, n + 1)), "LIST numbers")
        eq(sorted(uids), list(range(1, n + 1)), "UIDL numbers")
        eq(sum(sizes.values()), octets, "STAT octets against LIST")
        eq(len(set(uids.values())), n, "distinct UIDLs")
        seen = {}
        for i in range(1, n + 1):
            r = p.cmd("RETR %d" % i, timeout=30 * SLOW)
            check(r.startswith("+OK"), "session %d: RETR %d answered %r "
                  "(appends are not rewrites)" % (sid, i, r))
            body = read_multi(p, timeout=30 * SLOW)
            raw = b"".join((l[1:] if l.startswith(b".") else l) + b"\n"
                           for l in body.split(b"\r\n")[:-1])
            num = deliver.delivery_number(raw)
            check(num is not None, "session %d: message %d is not one of "
                  "ours: %s" % (sid, i, short(raw)))
            if num in seen:
                fail("session %d: delivery %d is message %d and %d"
                     % (sid, num, seen[num], i))
            seen[num] = i
            want = deliver.delivery_message(num)
            check(body + b".\r\n" == stuffed(want), "session %d: RETR %d "
                  "(delivery %d) is not byte-exact: %s"
                  % (sid, i, num, short(body)))
            eq(sizes[i], len(wire(want)), "LIST size of delivery %d" % num)
            with run.lock:
                old = run.uidl.setdefault(num, uids[i])
                run.counts["retrieved"] += 1
            check(old == uids[i], "delivery %d changed its UIDL from %s to "
                  "%s" % (num, old, uids[i]))
        dele = {num for num in seen if rnd.random() < 0.5}
        for num in sorted(dele):
            p.ok("DELE %d" % seen[num])
        how = rnd.random()
        if how < 0.1:
            # The client vanishes: nothing is deleted.
            p.close_input()
            p.expect_eof()
            eq(p.wait(), 1, "exit status of a session without QUIT")
            with run.lock:
                run.counts["vanished"] += 1
            return set()
        if how < 0.2:
            p.ok("RSET")
            dele = set()
            with run.lock:
                run.counts["rset"] += 1
        r = p.cmd("QUIT", timeout=60 * SLOW)
        check(r.startswith("+OK"), "session %d: QUIT answered %r (appends "
              "are not rewrites)" % (sid, r))
        p.expect_eof()
        p.close_input()
        eq(p.wait(), 0, "exit status after QUIT")
        with run.lock:
            run.counts["quit"] += 1
        return dele
    finally:
        p.finish()


def worker(run, seed, max_sessions, min_sessions, delivery_done, deadline,
           pause):
    rnd = random.Random(seed)
    while not run.stop.is_set():
        with run.lock:
            total = run.sessions
            if total >= max_sessions or time.monotonic() > deadline or \
                    (delivery_done.is_set() and total >= min_sessions):
                return
            run.sessions += 1
            run.ids += 1
            sid = run.ids
        try:
            took = one_session(run, rnd, sid)
        except TestFailure as e:
            run.error(str(e))
            return
        except Exception as e:
            run.error("session %d: %s: %s" % (sid, type(e).__name__, e))
            return
        if took is None:
            # [IN-USE] does not count as a session; back off a little.
            with run.lock:
                run.sessions -= 1
            time.sleep(rnd.uniform(0.01, 0.05))
            continue
        with run.lock:
            for num in took:
                if num in run.taken:
                    run.errors.append("delivery %d taken twice (sessions "
                                      "%d and %d)" % (num, run.taken[num],
                                                      sid))
                    run.stop.set()
                run.taken.setdefault(num, sid)
        if pause:
            time.sleep(rnd.uniform(0, pause))


def deliverer(env, mbox, count, seed, maxdelay_ms):
    kw = {}
    if IS_ROOT:
        kw = {"user": MAIL_UID, "group": MAIL_GID, "extra_groups": []}
    errpath = os.path.join(env.dir, "deliver.stderr")
    with open(errpath, "wb") as err:
        proc = subprocess.Popen(
            ["/usr/bin/python3", DELIVER, mbox, str(count), str(seed),
             str(maxdelay_ms)], stdout=subprocess.PIPE, stderr=err,
            cwd=env.dir, **kw)
    return proc, errpath


def concurrent(count, seed, threads, max_sessions, min_sessions,
               maxdelay_ms, budget, pauses):
    t0 = time.monotonic()
    with Env() as env:
        env.add_user("u", "pw")
        mbox = env.write_mbox("u", [], raw=b"")
        run = Run(env, "u", "pw")
        proc, errpath = deliverer(env, mbox, count, seed, maxdelay_ms)
        delivered = []
        done = threading.Event()

        def reader():
            for line in proc.stdout:
                delivered.append(int(line))
            done.set()

        rt = threading.Thread(target=reader, daemon=True)
        rt.start()
        deadline = t0 + budget
        ws = [threading.Thread(target=worker, daemon=True, args=(
            run, seed * 100 + k, max_sessions, min_sessions, done, deadline,
            pauses[k % len(pauses)])) for k in range(threads)]
        for w in ws:
            w.start()
        try:
            proc.wait(timeout=budget + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            fail("the deliverer did not finish within %ds" % (budget + 30))
        rt.join(10)
        for w in ws:
            w.join(budget + 120)
            check(not w.is_alive(), "a session thread hangs")
        with open(errpath, "rb") as f:
            derr = f.read().decode("latin-1")
        if run.errors:
            fail("%d problem(s); first: %s" % (len(run.errors),
                                               run.errors[0]))
        eq(proc.returncode, 0, "deliverer exit status (stderr: %s)"
           % derr.strip())
        eq(delivered, list(range(1, count + 1)), "messages delivered")

        # What is left, read directly and through a last session.
        data = env.read_mbox("u") or b""
        left = {}
        for envl, msg in parse_mbox(data):
            num = deliver.delivery_number(msg)
            check(num is not None, "a message in the mbox is not ours: %s"
                  % short(msg))
            check(num not in left, "delivery %d is in the mbox twice" % num)
            eq(envl, deliver.delivery_envelope(num), "envelope of delivery "
               "%d in the mbox" % num)
            check(msg == deliver.delivery_message(num), "delivery %d is "
                  "corrupt in the mbox: %s" % (num, short(msg)))
            left[num] = msg
        p = env.session("u", "pw")
        n, _ = parse_stat(p.ok("STAT"))
        eq(n, len(left), "messages a last session sees")
        uids = dict(parse_uidl(p.ok_multi("UIDL")))
        for i in range(1, n + 1):
            p.ok("RETR %d" % i)
            body = read_multi(p)
            raw = b"".join((l[1:] if l.startswith(b".") else l) + b"\n"
                           for l in body.split(b"\r\n")[:-1])
            num = deliver.delivery_number(raw)
            check(num in left, "last session: message %d unknown" % i)
            eq(body + b".\r\n", stuffed(left[num]), "last session: RETR %d"
               % i)
            if num in run.uidl:
                eq(uids[i], run.uidl[num], "UIDL of delivery %d at the end"
                   % num)
        p.quit()
        eq(env.read_mbox("u"), data, "mbox after a session without DELE")

        taken = set(run.taken)
        both = taken & set(left)
        check(not both, "%d deliveries both taken and still there, e.g. %s"
              % (len(both), sorted(both)[:10]))
        lost = set(range(1, count + 1)) - taken - set(left)
        check(not lost, "%d deliveries lost, e.g. %s"
              % (len(lost), sorted(lost)[:10]))
        extra = (taken | set(left)) - set(range(1, count + 1))
        check(not extra, "unknown deliveries %s" % sorted(extra)[:10])
        leftovers = [f for f in os.listdir(env.maildir)
                     if f not in ("u", ".u.pop3d-index")]
        eq(leftovers, [], "files left beside the mbox")
        check(run.sessions >= min(min_sessions, max_sessions),
              "only %d sessions ran" % run.sessions)
        check(run.counts["quit"] >= 5 and run.counts["retrieved"] > 0,
              "too few sessions did work: %r" % run.counts)
        print("# %d delivered, %d taken, %d left; %d sessions (+ [IN-USE]): "
              "%r; %.1fs"
              % (count, len(taken), len(left), run.sessions, run.counts,
                 time.monotonic() - t0), flush=True)


@test
def delivery_lock_wait_gives_up_after_30_seconds():
    # pop3d.8 Limits: 30 seconds of waiting for a delivery agent's lock,
    # then -ERR [SYS/TEMP].  The answer must come while the lock is still
    # held (no endless wait) and not before the 30 seconds (POP3D_LOCK_WAIT,
    # by the monotonic clock).  Here, not in test_e2e.py: that file
    # also runs under valgrind, and this test is 30 s of waiting.
    with Env() as env:
        env.add_user("alice", PW)
        env.write_mbox("alice", FIVE)
        with open(env.mbox("alice"), "r+b") as f:
            fcntl.lockf(f, fcntl.LOCK_EX)
            p = env.start()
            p.ok("USER alice")
            t0 = time.monotonic()
            p.send("PASS " + PW + "\r\n")
            r = p.line(timeout=60 * SLOW)
            dt = time.monotonic() - t0
            eq(r, "-ERR [SYS/TEMP] cannot open the maildrop, try later",
               "PASS while a delivery agent holds the mbox")
            check(dt >= 29.5, "gave up after %.1f s" % dt)
            p.expect_eof()
            eq(p.wait(), 2, "exit status")
        eq(env.read_mbox("alice"), mbox_bytes(FIVE), "mbox")


@test
def concurrent_delivery_retrieve_and_delete():
    # 300 deliveries over ~10 s; 3 session threads with random pauses
    # (they collide and get [IN-USE]); 40 to 80 sessions.
    concurrent(count=300, seed=1, threads=3, max_sessions=80,
               min_sessions=40, maxdelay_ms=60, budget=50 * SLOW,
               pauses=(0.25, 0.6, 0.6))


@test
def delivery_bursts_against_back_to_back_sessions():
    # Deliveries as fast as they go, sessions without pauses: UPDATE and
    # appends contend for the locks all the time.
    concurrent(count=200, seed=2, threads=2, max_sessions=60,
               min_sessions=30, maxdelay_ms=3, budget=40 * SLOW,
               pauses=(0.0, 0.0))


if __name__ == "__main__":
    main()
