#!/usr/bin/python3
"""Real clients against pop3d on TCP: curl and Python's poplib.

pop3d runs under `systemd-socket-activate --inetd -a -l 127.0.0.1:PORT`,
which accepts each connection and starts one pop3d on it (fd 0/1), as
inetd or a systemd socket unit with Accept=yes would.

Run: /usr/bin/python3 tests/integration/test_clients.py [test_name ...]
"""
import os
import poplib
import re
import shutil
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True     # no __pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pop3test import (BIN, SLOW, VALGRIND, VALGRIND_CMD,  # noqa
                      Env, check, eq, fail, main, mbox_bytes, message,
                      envelope, split_lines, test, wire)

PW = "s3cret pass"
TCP_TIMEOUT = 10 * SLOW


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """systemd-socket-activate serving pop3d on a free local port."""

    def __init__(self, env, **kw):
        self.env = env
        if not os.path.exists(BIN):
            fail("pop3d binary not found at %s (run make)" % BIN)
        act = shutil.which("systemd-socket-activate")
        if act is None:
            fail("systemd-socket-activate not installed (package systemd)")
        cmd = [BIN]
        if VALGRIND:
            cmd = [shutil.which("valgrind")] + VALGRIND_CMD[1:] + [BIN]
        self.log_path = os.path.join(env.dir, "activator.log")
        for attempt in range(5):
            self.port = free_port()
            argv = ([act, "--inetd", "-a", "-l", "127.0.0.1:%d" % self.port]
                    + cmd + env.argv(**kw))
            self.log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=self.log, stderr=self.log,
                                         start_new_session=True)
            if self._wait_ready():
                return
            self._kill()
        fail("systemd-socket-activate never accepted connections; log:\n"
             + self.log_text()[-2000:])

    def _wait_ready(self):
        deadline = time.monotonic() + 10 * SLOW
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False         # port taken meanwhile, or worse
            try:
                s = socket.create_connection(("127.0.0.1", self.port),
                                             timeout=TCP_TIMEOUT)
            except OSError:
                time.sleep(0.05)
                continue
            try:
                g = s.makefile("rb").readline()
            finally:
                s.close()
            if not g.startswith(b"+OK"):
                fail("greeting over TCP: %r" % g)
            return True
        return False

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("latin-1", "replace")
        except OSError:
            return ""

    def url(self, path=""):
        return "pop3://127.0.0.1:%d/%s" % (self.port, path)

    def _kill(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def stop(self):
        """Waits for the sessions to end, stops the activator and checks
        how every pop3d ended."""
        deadline = time.monotonic() + 10 * SLOW
        while time.monotonic() < deadline:
            t = self.log_text()
            if (len(re.findall(r"Spawned ", t)) <=
                    len(re.findall(r"Child \d+ died", t))):
                break
            time.sleep(0.05)
        self._kill()
        t = self.log_text()
        codes = [int(c) for c in re.findall(r"Child \d+ died with code (\d+)",
                                            t)]
        bad = [c for c in codes if c not in (0, 1, 2)]
        if bad:
            fail("pop3d exit codes %s (99: valgrind errors; others: a "
                 "signal); log:\n%s" % (bad, t[-3000:]))
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            if marker in t:
                fail("sanitizer report:\n" + t[-3000:])

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is None:
            self.stop()
        else:
            try:
                self.stop()
            except AssertionError:
                pass
        return False


def curl(*args, check_rc=True):
    r = subprocess.run(["curl", "-s", "--max-time", str(30 * SLOW)]
                       + list(args), capture_output=True,
                       timeout=40 * SLOW)
    if check_rc and r.returncode != 0:
        fail("curl %s: exit %d, stderr %r" % (" ".join(args), r.returncode,
                                              r.stderr))
    return r


def messages():
    big = b"".join((b"." * (i % 3)) + (b"y" * (i * 13 % 211)) + b"\n"
                   for i in range(3000))
    return [
        message(1),
        message(2, subject=b"dots", body=b".\n..\n.x\nmiddle\n.\n"),
        message(3, subject=b"from", body=b">From quoted\nFrom not after "
                b"an empty line\n"),
        message(4, subject=b"empty body", body=b""),
        message(5, subject=b"big", body=big),
        message(6, subject=b"8bit", body=b"caf\xc3\xa9 \xe9\xff\n\ttab\n"),
        message(7, subject=b"no final newline", body=b"a\n.b\nlast"),
    ]


def setup(msgs, user="alice"):
    env = Env()
    env.add_user(user, PW)
    env.write_mbox(user, msgs)
    return env


def kept(msgs, numbers):
    return mbox_bytes([(envelope(i), msgs[i - 1]) for i in numbers])


# ================================================================= curl

@test
def curl_list():
    msgs = messages()
    with setup(msgs) as env:
        with Server(env) as srv:
            r = curl(srv.url(), "-u", "alice:" + PW)
            eq(r.stdout, b"".join(b"%d %d\r\n" % (i + 1, len(wire(m)))
                                  for i, m in enumerate(msgs)), "curl LIST")
        eq(env.read_mbox("alice"), mbox_bytes(msgs), "mbox after curl LIST")


@test
def curl_retr_each_message():
    # curl writes the body as sent (CRLF) with the dots un-stuffed and
    # without the terminating line: exactly the message as sent.
    msgs = messages()
    with setup(msgs) as env:
        with Server(env) as srv:
            for i, m in enumerate(msgs):
                r = curl(srv.url(str(i + 1)), "-u", "alice:" + PW)
                eq(r.stdout, wire(m), "curl RETR %d" % (i + 1))
            r = curl(srv.url(str(len(msgs) + 1)), "-u", "alice:" + PW,
                     check_rc=False)
            check(r.returncode != 0,
                  "curl RETR of a missing message succeeded")
        eq(env.read_mbox("alice"), mbox_bytes(msgs), "mbox after curl RETR")


@test
def curl_uidl_and_top():
    msgs = messages()
    with setup(msgs) as env:
        with Server(env) as srv:
            r = curl(srv.url(), "-X", "UIDL", "-u", "alice:" + PW)
            lines = r.stdout.split(b"\r\n")
            eq(lines[-1], b"", "curl UIDL output ends with CRLF")
            uids = []
            for i, l in enumerate(lines[:-1]):
                m = re.match(rb"^(\d+) ([\x21-\x7e]{1,70})$", l)
                check(m and int(m.group(1)) == i + 1, "UIDL line %r" % l)
                uids.append(m.group(2))
            eq(len(uids), len(msgs), "UIDL count")
            eq(len(set(uids)), len(msgs), "UIDLs distinct")
            r = curl(srv.url(), "-X", "TOP 2 0", "-u", "alice:" + PW)
            lines = split_lines(msgs[1])
            eq(r.stdout, b"".join(l + b"\r\n"
                                  for l in lines[:lines.index(b"") + 1]),
               "curl TOP 2 0")


@test
def curl_dele():
    msgs = messages()
    with setup(msgs) as env:
        with Server(env) as srv:
            # -I: no body expected, so curl sends "DELE 1" alone (no RETR);
            # it sends QUIT when it closes the connection.
            r = curl(srv.url("1"), "-X", "DELE", "-I", "-u", "alice:" + PW)
            eq(env.read_mbox("alice"), kept(msgs, range(2, len(msgs) + 1)),
               "mbox after curl DELE 1")
            # A wrong password deletes nothing.
            r = curl(srv.url("1"), "-X", "DELE", "-I", "-u", "alice:wrong",
                     check_rc=False)
            check(r.returncode != 0, "curl with a wrong password succeeded")
            eq(env.read_mbox("alice"), kept(msgs, range(2, len(msgs) + 1)),
               "mbox after a refused login")
            r = curl(srv.url(), "-u", "alice:" + PW)
            eq(r.stdout.count(b"\r\n"), len(msgs) - 1, "curl LIST after DELE")


# ================================================================ poplib

def pop(srv):
    return poplib.POP3("127.0.0.1", srv.port, timeout=TCP_TIMEOUT)


@test
def poplib_session():
    msgs = messages()
    with setup(msgs) as env:
        with Server(env) as srv:
            p = pop(srv)
            check(p.getwelcome().startswith(b"+OK"), "welcome %r"
                  % p.getwelcome())
            caps = p.capa()
            for c in ["TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE",
                      "PIPELINING", "IMPLEMENTATION"]:
                check(c in caps, "CAPA lacks %s: %r" % (c, caps))
            # pop3d.8: SASL PLAIN before login; no TLS yet.
            eq(caps.get("SASL"), ["PLAIN"], "CAPA SASL before login")
            check("STLS" not in caps, "CAPA offers STLS: %r" % caps)
            p.user("alice")
            p.pass_(PW)
            eq(p.stat(), (len(msgs), sum(len(wire(m)) for m in msgs)), "stat")
            resp, lines, _ = p.list()
            eq(lines, [b"%d %d" % (i + 1, len(wire(m)))
                       for i, m in enumerate(msgs)], "list")
            resp, lines, _ = p.uidl()
            uids = [l.split(b" ", 1)[1] for l in lines]
            eq([l.split(b" ", 1)[0] for l in lines],
               [b"%d" % (i + 1) for i in range(len(msgs))], "uidl numbers")
            eq(len(set(uids)), len(msgs), "uidls distinct")
            eq(p.uidl(3), b"+OK 3 " + uids[2], "uidl 3")
            for i, m in enumerate(msgs):
                resp, lines, _ = p.retr(i + 1)
                check(resp.startswith(b"+OK"), "retr %d: %r" % (i + 1, resp))
                eq(lines, split_lines(m), "retr %d" % (i + 1))
            resp, lines, _ = p.top(2, 1)
            ml = split_lines(msgs[1])
            eq(lines, ml[:ml.index(b"") + 2], "top 2 1")
            p.dele(1)
            p.dele(2)
            eq(p.stat()[0], len(msgs) - 2, "stat after dele")
            check(p.quit().startswith(b"+OK"), "quit")
        eq(env.read_mbox("alice"), kept(msgs, range(3, len(msgs) + 1)),
           "mbox after poplib deleted the first two")


@test
def poplib_wrong_password_and_in_use():
    msgs = messages()[:3]
    with setup(msgs) as env:
        with Server(env) as srv:
            p = pop(srv)
            p.user("alice")
            try:
                p.pass_("wrong")
                fail("wrong password accepted")
            except poplib.error_proto as e:
                check(str(e).startswith("b'-ERR [AUTH]"), "wrong password: %s"
                      % e)
            p.user("alice")
            p.pass_(PW)
            p.dele(1)
            q = pop(srv)
            q.user("alice")
            try:
                q.pass_(PW)
                fail("second session logged in while the first holds the "
                     "maildrop")
            except poplib.error_proto as e:
                check(str(e).startswith("b'-ERR [IN-USE]"),
                      "second session: %s" % e)
            q.close()
            # The first client vanishes without QUIT: nothing is applied and
            # the lock is released.
            p.sock.shutdown(socket.SHUT_RDWR)
            p.close()
            deadline = time.monotonic() + 10 * SLOW
            while True:
                r = pop(srv)
                r.user("alice")
                try:
                    r.pass_(PW)
                    break
                except poplib.error_proto as e:
                    r.close()
                    if "IN-USE" not in str(e) or time.monotonic() > deadline:
                        fail("after the first client vanished: %s" % e)
                    time.sleep(0.05)
            eq(r.stat()[0], 3, "stat after a dropped session")
            r.quit()
        eq(env.read_mbox("alice"), mbox_bytes(msgs), "mbox")


@test
def poplib_sequential_retr_timing():
    # For the record only: a Nagle/delayed-ACK stall costs ~40 ms per RETR
    # and would show as >= 0.8 s for 20 RETRs.  Nothing is asserted.
    msgs = [message(i) for i in range(1, 21)]
    with setup(msgs) as env:
        with Server(env) as srv:
            p = pop(srv)
            p.user("alice")
            p.pass_(PW)
            t0 = time.monotonic()
            for i in range(1, 21):
                resp, lines, _ = p.retr(i)
                eq(lines, split_lines(msgs[i - 1]), "retr %d" % i)
            dt = time.monotonic() - t0
            print("# 20 sequential RETRs over TCP (poplib): %.3fs (%.1f ms "
                  "each)" % (dt, dt * 50))
            t0 = time.monotonic()
            for i in range(1, 21):
                p.noop()
            print("# 20 sequential NOOPs over TCP (poplib): %.3fs"
                  % (time.monotonic() - t0))
            p.quit()


if __name__ == "__main__":
    main()
