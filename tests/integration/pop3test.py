"""pop3test: shared fixtures and a tiny runner for pop3d's integration suites.

Standard library only; run by /usr/bin/python3.

What it offers:
  - Env: a temporary directory holding a users file (-f), a mail directory
    (-m DIR/%u) and mbox files; starts pop3d over pipes; kills what is left
    and checks every exit status at the end.
  - Pop3: a small client over the pipes.  Every read has a deadline, so a
    silent server fails a test instead of hanging the suite.
  - Message helpers: an mbox built from (envelope, message) pairs, the bytes
    a message must have on the wire (CRLF, before and after dot-stuffing),
    the part that TOP must send.
  - A runner: every function decorated with @test runs; each prints
    "PASS name" or "FAIL name: reason"; the last line is exactly
    "N passed, N failed", and the exit status is 1 when anything failed.

Environment:
  POP3D_BIN       the binary (default: obj/pop3d of this checkout)
  POP3D_VALGRIND  1: run pop3d under valgrind; exit status 99 fails the test
  CI runs the tests as root.  pop3d then refuses to serve uid 0, so the
  users-file lines and the mbox files belong to 65534:65534 (nobody:nogroup)
  and the temporary directory is made traversable; otherwise our own ids.
"""

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("POP3D_BIN") or os.path.join(REPO, "obj", "pop3d")
VALGRIND = os.environ.get("POP3D_VALGRIND", "0") == "1"
VALGRIND_CMD = ["valgrind", "--error-exitcode=99", "--leak-check=full", "-q"]
# Multiplier for every deadline: valgrind makes pop3d 20-50 times slower.
SLOW = 15 if VALGRIND else 1
READ_TIMEOUT = 10 * SLOW
IS_ROOT = os.geteuid() == 0
if IS_ROOT:
    MAIL_UID, MAIL_GID = 65534, 65534
else:
    MAIL_UID, MAIL_GID = os.getuid(), os.getgid()


class TestFailure(AssertionError):
    pass


class Skip(Exception):
    """Raised by a test that cannot run here; it counts as passed."""


def fail(msg):
    raise TestFailure(msg)


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def eq(actual, expected, what):
    if actual != expected:
        raise TestFailure("%s: expected %s, got %s"
                          % (what, short(expected), short(actual)))


def short(v, n=300):
    r = repr(v)
    return r if len(r) <= n else r[:n] + "...(%d chars)" % len(r)


# ---------------------------------------------------------------- hashes

_hash_cache = {}


def make_hash(password, method="yescrypt"):
    """A crypt(3) string made by mkpasswd (package whois)."""
    key = (method, password)
    if key not in _hash_cache:
        r = subprocess.run(["mkpasswd", "-m", method, "-s"],
                           input=password.encode(), capture_output=True,
                           timeout=30)
        h = r.stdout.decode().strip()
        if r.returncode != 0 or not h.startswith("$"):
            fail("mkpasswd -m %s failed: %r" % (method, r.stderr))
        _hash_cache[key] = h
    return _hash_cache[key]


# -------------------------------------------------------------- messages

DEFAULT_ENVELOPE = b"From sender@example.org Thu Jan  4 10:00:00 2024"


def envelope(n):
    """A distinct, well-formed mbox envelope line (without newline)."""
    return ("From sender%d@example.org Thu Jan  4 10:%02d:%02d 2024"
            % (n, (n // 60) % 60, n % 60)).encode()


def message(n, body=None, subject=None, extra=b""):
    """A small distinct RFC 5322 message with LF line ends."""
    if subject is None:
        subject = b"message %d" % n
    if body is None:
        body = b"Hello, this is body %d.\nSecond line.\n" % n
    return (b"From: Sender <sender%d@example.org>\n" % n +
            b"To: user@example.org\n" +
            b"Subject: " + subject + b"\n" +
            b"Date: Thu, 4 Jan 2024 10:00:00 +0000\n" +
            b"Message-ID: <%d.test@example.org>\n" % n + extra +
            b"\n" + body)


def pairs(msgs):
    """Accepts messages or (envelope, message) pairs; returns pairs."""
    out = []
    for i, m in enumerate(msgs):
        if isinstance(m, tuple):
            out.append(m)
        else:
            out.append((envelope(i + 1), m))
    return out


def mbox_bytes(msgs):
    """An mbox: per message the envelope line, the message, an empty line.
    A message without a final newline must be the last one; it gets no
    separator (it could not be told apart from its body otherwise)."""
    ps = pairs(msgs)
    out = []
    for i, (env, msg) in enumerate(ps):
        if not env.startswith(b"From "):
            env = b"From " + env
        out.append(env + b"\n" + msg)
        if msg.endswith(b"\n"):
            out.append(b"\n")
        elif i != len(ps) - 1:
            raise ValueError("only the last message may lack a newline")
    return b"".join(out)


def dead_pid():
    """The pid of a process that has just exited (for dotlocks whose
    owner is gone)."""
    c = subprocess.Popen(["true"])
    c.wait()
    return c.pid


def split_lines(msg):
    """The lines of a stored message (LF or CRLF ends a line)."""
    if msg == b"":
        return []
    lines = msg.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [l[:-1] if l.endswith(b"\r") else l for l in lines]


def wire(msg):
    """The message as sent, before dot-stuffing: its octet count is what
    STAT, LIST report."""
    return b"".join(l + b"\r\n" for l in split_lines(msg))


def stuff(lines):
    return b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n"
                    for l in lines)


def stuffed(msg):
    """What RETR sends after its +OK line, terminator included."""
    return stuff(split_lines(msg)) + b".\r\n"


def top_lines(msg, k):
    """What TOP n k sends: the header, the empty line, k body lines."""
    lines = split_lines(msg)
    try:
        h = lines.index(b"")
    except ValueError:
        return lines
    return lines[:h + 1 + k]


def top_stuffed(msg, k):
    return stuff(top_lines(msg, k)) + b".\r\n"


# ------------------------------------------------------------ the client

class Pop3:
    """One pop3d process over pipes, and a client speaking to it."""

    def __init__(self, argv, stderr_path, env=None, preexec=None):
        self.argv = argv
        self.stderr_path = stderr_path
        self.buf = b""
        self.eof = False
        self.greeting = None
        self.rc = None
        self.killed = False
        self.stdin_closed = False
        with open(stderr_path, "wb") as err:
            try:
                self.proc = subprocess.Popen(
                    argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=err, close_fds=True, env=env,
                    preexec_fn=preexec)
            except OSError as e:
                fail("cannot start %s: %s" % (argv[0], e))
        self.out = self.proc.stdout.fileno()
        self.inp = self.proc.stdin.fileno()
        os.set_blocking(self.out, False)
        os.set_blocking(self.inp, False)

    # -- raw I/O
    def _fill(self, deadline):
        """Reads what is available, waiting until deadline. False on EOF
        or timeout."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left < 0:
            left = 0
        r, _, _ = select.select([self.out], [], [], left)
        if not r:
            return False
        try:
            data = os.read(self.out, 1 << 16)
        except BlockingIOError:
            return True
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def send(self, data, allow_closed=False):
        """Writes all of data, reading responses meanwhile (a big pipelined
        write must not deadlock against a server blocked on its output)."""
        if isinstance(data, str):
            data = data.encode("latin-1")
        deadline = time.monotonic() + READ_TIMEOUT * 3
        off = 0
        while off < len(data):
            left = deadline - time.monotonic()
            if left <= 0:
                fail("timeout: pop3d reads no more input (%d of %d bytes "
                     "written)" % (off, len(data)))
            rl = [] if self.eof else [self.out]
            r, w, _ = select.select(rl, [self.inp], [], left)
            if r:
                self._fill(time.monotonic())
            if w:
                try:
                    off += os.write(self.inp, data[off:off + 65536])
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    if allow_closed:
                        return False
                    fail("pop3d closed its input after %d of %d bytes; "
                         "read so far: %s" % (off, len(data),
                                              short(self.buf)))
        return True

    def readline(self, timeout=None):
        """One raw line with its LF."""
        deadline = time.monotonic() + (timeout or READ_TIMEOUT)
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return line
            if self.eof:
                fail("pop3d closed the connection; pending bytes %s"
                     % short(self.buf))
            if not self._fill(deadline):
                if self.eof:
                    continue
                if time.monotonic() >= deadline:
                    fail("timeout (%ss) waiting for a response line; "
                         "pending bytes %s" % (timeout or READ_TIMEOUT,
                                               short(self.buf)))

    def line(self, timeout=None):
        """One response line without CRLF, checked to end in CRLF."""
        raw = self.readline(timeout)
        if not raw.endswith(b"\r\n") or b"\r" in raw[:-2]:
            fail("response line not ended by CRLF: %s" % short(raw))
        return raw[:-2].decode("latin-1")

    def cmd(self, command, timeout=None):
        """Sends one command line (CRLF added) and returns its answer."""
        if isinstance(command, str):
            command = command.encode("latin-1")
        self.send(command + b"\r\n")
        return self.line(timeout)

    def ok(self, command, timeout=None):
        r = self.cmd(command, timeout)
        if not r.startswith("+OK"):
            fail("%s: expected +OK, got %r" % (short(command, 80), r))
        return r

    def err(self, command, timeout=None):
        r = self.cmd(command, timeout)
        if not r.startswith("-ERR"):
            fail("%s: expected -ERR, got %r" % (short(command, 80), r))
        return r

    def expect_ok(self, what="response"):
        r = self.line()
        if not r.startswith("+OK"):
            fail("%s: expected +OK, got %r" % (what, r))
        return r

    def expect_err(self, what="response"):
        r = self.line()
        if not r.startswith("-ERR"):
            fail("%s: expected -ERR, got %r" % (what, r))
        return r

    def multi_raw(self, timeout=None):
        """The body of a multi-line response as sent (still stuffed, CRLF
        line ends), without the terminating line."""
        out = []
        while True:
            raw = self.readline(timeout)
            if not raw.endswith(b"\r\n"):
                fail("multi-line response line not ended by CRLF: %s"
                     % short(raw))
            if raw == b".\r\n":
                return b"".join(out)
            out.append(raw)

    def multi(self, timeout=None):
        """The un-stuffed lines (str) of a multi-line response body."""
        lines = []
        for raw in self.multi_raw(timeout).split(b"\r\n")[:-1]:
            if raw.startswith(b"."):
                raw = raw[1:]
            lines.append(raw.decode("latin-1"))
        return lines

    def ok_multi(self, command):
        self.ok(command)
        return self.multi()

    def login(self, user, password):
        self.ok("USER " + user)
        return self.ok("PASS " + password)

    def expect_eof(self, timeout=None):
        """Waits for the server to close; returns what it sent before."""
        deadline = time.monotonic() + (timeout or READ_TIMEOUT)
        while not self.eof:
            if not self._fill(deadline) and not self.eof:
                if time.monotonic() >= deadline:
                    fail("pop3d did not close the connection within %ss; "
                         "pending bytes %s" % (timeout or READ_TIMEOUT,
                                               short(self.buf)))
        data, self.buf = self.buf, b""
        return data

    def expect_silence(self, seconds):
        """Asserts that nothing arrives for that long."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._fill(deadline)
            if self.buf or self.eof:
                fail("expected no answer yet, got %s%s"
                     % (short(self.buf), " and EOF" if self.eof else ""))

    def close_input(self):
        if not self.stdin_closed:
            self.stdin_closed = True
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def wait(self, timeout=None):
        """Waits for pop3d to exit and returns its status (checked)."""
        if self.rc is None:
            try:
                self.rc = self.proc.wait(timeout or READ_TIMEOUT)
            except subprocess.TimeoutExpired:
                fail("pop3d did not exit within %ss"
                     % (timeout or READ_TIMEOUT))
            self.check_status()
        return self.rc

    def quit(self):
        """QUIT, +OK, EOF, exit status 0."""
        r = self.ok("QUIT")
        self.expect_eof()
        self.close_input()
        rc = self.wait()
        eq(rc, 0, "exit status after QUIT")
        return r

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("latin-1", "replace")
        except OSError:
            return ""

    def check_status(self):
        if self.killed:
            return
        err = self.stderr()
        if self.rc == 99 and VALGRIND:
            fail("valgrind reported errors (exit 99):\n" + err[-3000:])
        if self.rc is not None and self.rc < 0:
            fail("pop3d died of signal %d; stderr:\n%s"
                 % (-self.rc, err[-2000:]))
        for marker in ("AddressSanitizer", "LeakSanitizer",
                       "runtime error:", "==ERROR"):
            if marker in err:
                fail("sanitizer report on stderr:\n" + err[-3000:])

    def finish(self):
        """Ends the process: EOF first (so valgrind can report), then kill."""
        if self.rc is not None:
            return
        self.close_input()
        try:
            self.rc = self.proc.wait(5 * SLOW)
        except subprocess.TimeoutExpired:
            self.killed = True
            self.proc.kill()
            self.rc = self.proc.wait()
        try:
            self.proc.stdout.close()
        except OSError:
            pass
        self.check_status()


# ------------------------------------------------------------ the fixture

class Env:
    """A temporary directory with a users file and a mail directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pop3d-test-")
        os.chmod(self.dir, 0o755)
        self.maildir = os.path.join(self.dir, "mail")
        os.mkdir(self.maildir)
        self.own(self.maildir, 0o755)
        self.users_path = os.path.join(self.dir, "users")
        self.user_lines = []
        self.write_users()
        self.procs = []
        self.nstderr = 0

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        problems = []
        for p in self.procs:
            try:
                p.finish()
            except TestFailure as e:
                problems.append(str(e))
        shutil.rmtree(self.dir, ignore_errors=True)
        if et is None and problems:
            raise TestFailure(problems[0])
        return False

    def own(self, path, mode):
        os.chmod(path, mode)
        if IS_ROOT:
            os.chown(path, MAIL_UID, MAIL_GID)

    # -- users
    def write_users(self, lines=None):
        if lines is not None:
            self.user_lines = list(lines)
        with open(self.users_path, "w") as f:
            for l in self.user_lines:
                f.write(l + "\n")
        os.chmod(self.users_path, 0o600)

    def user_line(self, name, password, method="yescrypt", uid=None,
                  gid=None, maildrop=None):
        h = password if method is None else make_hash(password, method)
        fields = [name, h, str(MAIL_UID if uid is None else uid),
                  str(MAIL_GID if gid is None else gid)]
        if maildrop is not None:
            fields.append(maildrop)
        return ":".join(fields)

    def add_user(self, name, password, **kw):
        self.user_lines.append(self.user_line(name, password, **kw))
        self.write_users()

    # -- mboxes
    def mbox(self, user):
        return os.path.join(self.maildir, user)

    def write_mbox(self, user, msgs, raw=None):
        path = self.mbox(user)
        with open(path, "wb") as f:
            f.write(mbox_bytes(msgs) if raw is None else raw)
        self.own(path, 0o600)
        return path

    def append_mbox(self, user, msgs, start=100):
        """Appends like a delivery agent (O_APPEND, no lock of ours)."""
        ps = [(envelope(start + i), m) if not isinstance(m, tuple) else m
              for i, m in enumerate(msgs)]
        with open(self.mbox(user), "ab") as f:
            f.write(mbox_bytes(ps))

    def read_mbox(self, user):
        try:
            with open(self.mbox(user), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    # -- pop3d
    def argv(self, D=0, a=None, t=None, n="test.example", users=True,
             template=None, e=True, extra=()):
        args = (["-e"] if e else []) + ["-n", n, "-D", str(D)]
        if users:
            args += ["-f", self.users_path]
        args += ["-m", template or os.path.join(self.maildir, "%u")]
        if a is not None:
            args += ["-a", str(a)]
        if t is not None:
            args += ["-t", str(t)]
        args += list(extra)
        return args

    def spawn(self, args, preexec=None):
        """Starts pop3d with exactly these arguments (no greeting read)."""
        argv = ([BIN] if not VALGRIND else VALGRIND_CMD + [BIN]) + list(args)
        if not os.path.exists(BIN):
            fail("pop3d binary not found at %s (run make)" % BIN)
        self.nstderr += 1
        errpath = os.path.join(self.dir, "stderr.%d" % self.nstderr)
        p = Pop3(argv, errpath, preexec=preexec)
        self.procs.append(p)
        return p

    def start(self, preexec=None, **kw):
        """Starts pop3d and reads its greeting."""
        p = self.spawn(self.argv(**kw), preexec=preexec)
        g = p.line(timeout=READ_TIMEOUT)
        if not g.startswith("+OK"):
            fail("greeting: expected +OK, got %r" % g)
        p.greeting = g
        return p

    def session(self, user, password, **kw):
        """Starts pop3d and logs in."""
        p = self.start(**kw)
        p.login(user, password)
        return p


def rchar(pid):
    """Bytes process pid has read so far (/proc/PID/io; a zombie's too).
    pop3d is not dumpable, so only root may read it."""
    try:
        with open("/proc/%d/io" % pid) as f:
            return int(dict(l.split(": ") for l in f.read().splitlines())
                       ["rchar"])
    except PermissionError:
        raise Skip("/proc/PID/io of pop3d (not dumpable) needs root")


def leave_mid_response(p, after):
    """Reads at least `after` bytes of what pop3d sends, then closes the
    connection and waits for pop3d to exit.  Returns (rchar, stderr): the
    bytes the process had read by its exit (taken from the zombie) and its
    log."""
    got = len(p.buf)
    p.buf = b""
    deadline = time.monotonic() + READ_TIMEOUT
    while got < after:
        if not p._fill(deadline):
            fail("pop3d sent %d bytes, not %d" % (got, after))
        got += len(p.buf)
        p.buf = b""
    os.close(p.out)
    p.close_input()
    os.waitid(os.P_PID, p.proc.pid, os.WEXITED | os.WNOWAIT)
    n = rchar(p.proc.pid)
    p.proc.wait()
    return n, p.stderr()


def read_multi(p, timeout=None):
    """The body of a multi-line response as sent (stuffed, CRLF), without
    its terminating ".\\r\\n"; read in bulk (pop3test's line reader copies
    its buffer once per line, too slow for megabytes)."""
    deadline = time.monotonic() + (timeout or READ_TIMEOUT)
    searched = 0
    while True:
        if p.buf.startswith(b".\r\n"):
            p.buf = p.buf[3:]
            return b""
        i = p.buf.find(b"\r\n.\r\n", max(0, searched - 4))
        if i >= 0:
            body, p.buf = p.buf[:i + 2], p.buf[i + 5:]
            return body
        searched = len(p.buf)
        if not p._fill(deadline):
            if p.eof:
                fail("pop3d closed the connection inside a multi-line "
                     "response (%d bytes read)" % len(p.buf))
            if time.monotonic() >= deadline:
                fail("timeout inside a multi-line response (%d bytes "
                     "read)" % len(p.buf))


# --------------------------------------------------------- POP3 parsing

STAT_RE = re.compile(r"^\+OK (\d+) (\d+)(?: .*)?$")
LISTN_RE = re.compile(r"^\+OK (\d+) (\d+)(?: .*)?$")
UIDLN_RE = re.compile(r"^\+OK (\d+) ([\x21-\x7e]{1,70})(?: .*)?$")


def parse_stat(line):
    m = STAT_RE.match(line)
    if not m:
        fail("STAT answer malformed: %r" % line)
    return int(m.group(1)), int(m.group(2))


def parse_list(lines):
    out = []
    for l in lines:
        m = re.match(r"^(\d+) (\d+)$", l)
        if not m:
            fail("LIST line malformed: %r" % l)
        out.append((int(m.group(1)), int(m.group(2))))
    return out


def parse_uidl(lines):
    out = []
    for l in lines:
        m = re.match(r"^(\d+) ([\x21-\x7e]{1,70})$", l)
        if not m:
            fail("UIDL line malformed: %r" % l)
        out.append((int(m.group(1)), m.group(2)))
    return out


# ------------------------------------------------------------- the runner

_tests = []


def test(fn):
    _tests.append(fn)
    return fn


class _Alarm(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Alarm()


def main():
    """Runs the registered tests (or those named on the command line)."""
    names = sys.argv[1:]
    todo = [t for t in _tests if not names or t.__name__ in names]
    npass = nfail = nskip = 0
    t_start = time.monotonic()
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    for fn in todo:
        name = fn.__name__
        reason = None
        note = ""
        signal.alarm(int(120 * SLOW))
        try:
            fn()
        except Skip as e:
            note = " (skipped: %s)" % e
        except TestFailure as e:
            reason = str(e)
        except _Alarm:
            reason = "test took longer than %ds" % int(120 * SLOW)
        except Exception as e:
            tb = traceback.extract_tb(e.__traceback__)
            where = "%s:%d" % (os.path.basename(tb[-1].filename),
                               tb[-1].lineno) if tb else "?"
            reason = "%s: %s (at %s)" % (type(e).__name__, e, where)
        finally:
            signal.alarm(0)
        if reason is None and note:
            nskip += 1
            print("SKIP %s%s" % (name, note), flush=True)
        elif reason is None:
            npass += 1
            print("PASS %s" % name, flush=True)
        else:
            nfail += 1
            reason = reason.replace("\n", "\n    ")
            print("FAIL %s: %s" % (name, reason), flush=True)
    print("# %s: %.1fs in all" % (os.path.basename(sys.argv[0]),
                                  time.monotonic() - t_start))
    print("%d passed, %d failed, %d skipped" % (npass, nfail, nskip),
          flush=True)
    sys.exit(1 if nfail else 0)
