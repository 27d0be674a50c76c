#!/usr/bin/python3
"""Interoperability: six real POP3 clients against pop3d started by three
real super-servers on 127.0.0.1.

Super-servers (each starts one pop3d per connection, the connection on its
fd 0 and 1, as in production):
  inetd      openbsd-inetd in the foreground (-d -i -E) with a test
             inetd.conf of one line naming 127.0.0.1:PORT, as in
             inetd.conf.example (no -e: under inetd fd 2 is the connection
             too, so any stray diagnostic would corrupt the session).  As
             root it runs in a private mount namespace with a private /run,
             so that its pid file never touches the system's /run/inetd.pid
             (where the host allows no namespace, it runs only if there is
             no /run/inetd.pid, and removes its own); it never reads
             /etc/inetd.conf.
  activate   systemd-socket-activate --accept --inetd -l 127.0.0.1:PORT
             (what pop3d.socket with Accept=yes does); pop3d -e, its stderr
             is the activator's log.
  tcpserver  tcpserver -v -R -H -l 0 127.0.0.1 PORT (ucspi-tcp); pop3d -e.
Each super-server is ready once a probe session has had the greeting and
the answer to a QUIT sent before any login.  Every later pop3d must exit
with status 0 (every client ends with QUIT); the probe's status and what
followed its +OK are checked by quit_before_login_every_super_server.  No
log may carry a sanitizer report (under inetd, ASan and UBSan write to
files through log_path, since fd 2 is the client).

Clients, what each test does, and the conventions undone before comparing.
W(m) is the stored message as sent: every line end CRLF, a final one added
where the store had none.  E(m) is the same with LF line ends: every client
here but curl and poplib writes Unix files.
  curl       tcpserver.  LIST, UIDL, then RETR of every message in one
             invocation (curl reuses the connection: one login, which is
             AUTH PLAIN once pop3d offers SASL PLAIN), then DELE of the
             first and the last in one invocation.  curl writes a message
             as sent, dots un-stuffed, without the terminator: W(m).
  fetchmail  inetd.  A private rcfile holds only the account and its
             password; --mda into files (tests/interop/mda-save), --uidl,
             --sslproto '' (no STLS attempt), private --idfile/--pidfile.
             With --keep: all, then a second run that fetches nothing (exit
             1), then new mail that a third run fetches alone.  With
             --nokeep --fetchlimit 3 (exit 13): the maildrop holds exactly
             the other five; a second run takes them.  fetchmail reads with
             "TOP n 99999999" in both modes and prepends one Received
             header of three lines ("Received: from 127.0.0.1 [127.0.0.1]",
             "<TAB>by HOST with POP3 (fetchmail-VERSION)", "<TAB>for
             <USER@localhost> (single-drop); DATE"); stripped exactly, the
             rest must be E(m).
  mpop       activate.  tls off, auth user, a private uidls_file.  delivery
             mbox + keep on: all, then nothing new, then only the new mail.
             delivery maildir + keep off + skipsize 100k: the maildrop holds
             exactly the big message (same UIDL); --skipsize=off takes it.
             mpop prepends a Received header of three lines ("Received:
             from 127.0.0.1 (localhost [127.0.0.1])", "<TAB>by HOST
             (mpop-VERSION) with POP3", "<TAB>for <USER>; DATE"); its mbox
             is mboxrd: a "From MAILER-DAEMON DATE" line before and an
             empty line after each message, one '>' more on every line
             matching ^>*From .  All of that is undone exactly; the rest
             must be E(m).
  getmail6   tcpserver.  SimplePOP3Retriever, a private --getmaildir (its
             oldmail file holds the UIDLs), the destination's user "nobody"
             when root (getmail refuses to deliver as root).  Maildir with
             read_all false: all, then "0 messages retrieved, 8 skipped",
             then the new mail.  Mboxrd with delete and
             max_messages_per_session 5: the maildrop holds exactly the
             last three; a second run takes them.  getmail prepends
             "Return-Path: <unknown>", "Delivered-To: unknown" and a
             Received header of two lines ("Received: from 127.0.0.1
             (127.0.0.1:PORT) by HOST with POP3 getmail6", "  msgid:UIDL;
             DATE", its UIDL checked against the server's); Mboxrd adds the
             mboxrd framing of mpop with "From unknown DATE".  Stripped
             exactly, the rest must be E(m).
  poplib     inetd, then under each super-server.  CAPA, STAT, LIST, UIDL,
             RETR of every message (octets in the answer; the lines joined
             with CRLF must be W(m)), DELE of some, QUIT; the maildrop holds
             exactly the rest, their UIDLs unchanged.
  Net::POP3  activate (tests/interop/netpop3.pl).  CAPA, USER/PASS, LIST,
             UIDL, RETR of every message through get() (Net::Cmd writes
             "\n" for CRLF: E(m)), DELE of three, QUIT; the maildrop holds
             exactly the rest, and a second session reads them with the
             same UIDLs.
A Maildir as the maildrop: fetchmail
--keep under tcpserver (UIDL = the name up to ':', stable after a session
that read everything; nothing new on the second run; a new file in new/
alone on the third), mpop keep off + skipsize under inetd (exactly the big
file left, then none).

The stored messages exercise: lines starting with '.', lines that are just
'.', '..' and '...', '>From ' and '>>From ' lines and a 'From ' line not
after an empty line, an empty body, 8-bit bytes in header and body, a
message stored with CRLF line ends, a 250 KB message with a 998-byte line
(RFC 5322's longest: fetchmail splits longer lines, poplib refuses lines
over 2048 bytes), and a last message whose last line, '.', has no newline.

Run: /usr/bin/python3 tests/integration/test_interop.py [test_name ...]
(POP3D_BIN: the binary; CI installs the clients from tests/packages.)
"""
import ctypes
import os
import poplib
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pop3test import (BIN, IS_ROOT, MAIL_GID, MAIL_UID, REPO, SLOW,  # noqa
                      Env, Skip, check, envelope, eq, fail,
                      main, mbox_bytes, message, short, split_lines, test)

INTEROP = os.path.join(REPO, "tests", "interop")
MDA = os.path.join(INTEROP, "mda-save")
NETPOP3 = os.path.join(INTEROP, "netpop3.pl")
USER = "alice"
PW = "s3cret pass"              # a space: PASS takes the rest of the line
CLIENT_TIMEOUT = 60 * SLOW      # one client run, at most
TCP_TIMEOUT = 20 * SLOW
LOCAL_USER = pwd.getpwuid(os.getuid()).pw_name


# ------------------------------------------------------------- messages

def corpus():
    """The stored messages; the last one has no final newline."""
    big = b"".join(b"." * (i % 4) + (b"line %d " % i) * (i % 17) + b"\n"
                   for i in range(3000))
    # 998: the longest line RFC 5322 allows (fetchmail splits longer ones,
    # poplib refuses lines over 2048 bytes).
    big += b"x" * 998 + b"\n" + b".\n" + big[:big.index(b"\n", 50000) + 1]
    crlf = (b"From: Crlf <crlf@example.org>\r\nTo: user@example.org\r\n"
            b"Subject: stored with CRLF\r\nMessage-ID: <crlf.test@example."
            b"org>\r\n\r\nfirst\r\n.dot\r\n.\r\n\r\nlast\r\n")
    return [
        message(1),
        message(2, subject=b"dots", body=b".\n..\n...\n.x\nmiddle\n.\n"),
        message(3, subject=b"from lines",
                body=b">From quoted\n>>From twice\nFrom not after an empty "
                     b"line\n>From\n"),
        message(4, subject=b"empty body", body=b""),
        message(5, subject=b"big", body=big),
        message(6, subject=b"8-bit caf\xc3\xa9",
                body=b"caf\xc3\xa9 \xe9\xff\x80\n\ttab\n\xc2\xa0\n"),
        crlf,
        message(8, subject=b"no final newline", body=b"a\n.b\n."),
    ]


def newmail():
    return message(100, subject=b"new mail", body=b"arrived later\n.\n")


def wire(m):
    """W(m): the message as sent (CRLF line ends), un-stuffed."""
    return b"".join(l + b"\r\n" for l in split_lines(m))


def unix(m):
    """E(m): the message with LF line ends and a final newline."""
    return b"".join(l + b"\n" for l in split_lines(m))


def mid(data):
    m = re.search(rb"^Message-ID: (<[^>\r\n]+>)\r?$", data, re.M | re.I)
    if not m:
        fail("no Message-ID in %s" % short(data, 200))
    return m.group(1)


def same(actual, expected, what):
    """Byte-for-byte comparison; the first difference in the report."""
    if actual == expected:
        return
    n = 0
    while n < min(len(actual), len(expected)) and actual[n] == expected[n]:
        n += 1
    fail("%s: %d bytes, expected %d; first difference at offset %d: got "
         "%s, expected %s" % (what, len(actual), len(expected), n,
                              short(actual[max(0, n - 40):n + 60]),
                              short(expected[max(0, n - 40):n + 60])))


def strip_head(data, regex, what):
    """Removes what a client added in front of the message, exactly."""
    m = re.match(regex, data)
    if not m:
        fail("%s: expected header not found at the start: %s"
             % (what, short(data[:300])))
    return data[m.end():], m


def parse_mboxrd(data, env_re, what):
    """[(envelope, message)] from an mboxrd file written by a client: each
    message after its envelope, one empty line after it, every body line
    ^>+From  with one '>' too many."""
    if data == b"":
        return []
    check(data.startswith(b"From "), "%s: does not start with From: %s"
          % (what, short(data[:100])))
    check(data.endswith(b"\n"), "%s: no final newline" % what)
    lines = data[:-1].split(b"\n")
    msgs = []
    for l in lines:
        if l.startswith(b"From "):
            msgs.append([l])
        else:
            msgs[-1].append(l)
    out = []
    for ls in msgs:
        check(re.match(env_re, ls[0]), "%s: envelope line %r" % (what, ls[0]))
        check(len(ls) >= 2 and ls[-1] == b"",
              "%s: no empty line after the message of %r" % (what, ls[0]))
        body = [re.sub(rb"^>(>*From )", rb"\1", l) for l in ls[1:-1]]
        out.append((ls[0], b"".join(l + b"\n" for l in body)))
    return out


def kept(msgs, numbers):
    """The mbox that must be left: the stored messages numbered (from 1)."""
    return mbox_bytes([(envelope(i), msgs[i - 1]) for i in numbers])


def add_newmail(env):
    """New mail as a delivery agent appends it.  The last stored message
    has no final newline; the agent ends it first (its wire form, size and
    UIDL stay the same) and leaves the empty line before the envelope."""
    with open(env.mbox(USER), "ab") as f:
        f.write(b"\n\n" + envelope(100) + b"\n" + newmail())


def setup(msgs=None):
    env = Env()
    env.add_user(USER, PW)
    env.write_mbox(USER, corpus() if msgs is None else msgs)
    return env


def mkdir_mail(path, *subs):
    """A directory the mail user (65534 as root) can write."""
    os.makedirs(path)
    for s in subs:
        os.mkdir(os.path.join(path, s))
    for p in [path] + [os.path.join(path, s) for s in subs]:
        os.chmod(p, 0o700)
        if IS_ROOT:
            os.chown(p, MAIL_UID, MAIL_GID)
    return path


def read(path):
    with open(path, "rb") as f:
        return f.read()


def maildir_files(path):
    """{Message-ID: bytes} of a Maildir's new/; cur/ and tmp/ empty."""
    for sub in ("cur", "tmp"):
        eq(sorted(os.listdir(os.path.join(path, sub))), [],
           "files in %s/%s" % (path, sub))
    out = {}
    for name in sorted(os.listdir(os.path.join(path, "new"))):
        data = read(os.path.join(path, "new", name))
        k = mid(data)
        check(k not in out, "message %s delivered twice" % k.decode())
        out[k] = data
    return out


def by_mid(msgs):
    return {mid(m): m for m in msgs}


# --------------------------------------------------------- super-servers

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def need(prog, package):
    path = shutil.which(prog) or (prog if os.path.isabs(prog) and
                                  os.access(prog, os.X_OK) else None)
    if path is None:
        fail("%s not installed (package %s, listed in tests/packages)"
             % (prog, package))
    return path


_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def die_with_parent():
    """In the child: SIGTERM when the test process dies, so that no
    super-server outlives a killed suite."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


SAN_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
               "==ERROR")


class Super:
    """A super-server serving pop3d on a free port of 127.0.0.1.

    It is ready once a probe session has had its greeting and the answer
    to a QUIT sent before any login (what a monitoring check does).  That
    first pop3d is the probe: stop() checks the status of every other one
    and keeps the probe's in probe_status (quit_before_login checks it)."""

    name = None
    spawned_re = None       # the pid of each pop3d started
    ended_re = None         # (pid, status) of each pop3d ended
    status_base = 10        # how the log writes a status
    raw_status = True       # the status is a wait(2) status

    def __init__(self, env):
        self.env = env
        if not os.path.exists(BIN):
            fail("pop3d binary not found at %s (run make)" % BIN)
        self.dir = os.path.join(env.dir, self.name)
        os.mkdir(self.dir)
        self.log_path = os.path.join(self.dir, "log")
        self.proc = None
        self.codes = None
        self.probe_status = None
        self.probe_after_quit = None
        for attempt in range(5):
            self.port = free_port()
            self.log = open(self.log_path, "ab")
            self.log_start = self.log.tell()
            try:
                argv, penv = self.command()
                self.proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=self.log,
                    stderr=self.log, env=penv, start_new_session=True,
                    preexec_fn=die_with_parent)
                if self._ready():
                    return
            except BaseException:
                self._kill()
                raise
            self._kill()
        fail("%s never served pop3d on 127.0.0.1; log:\n%s"
             % (self.name, self.log_text()[-2000:]))

    def pop3d_args(self, log_stderr=True):
        return ((["-e"] if log_stderr else []) +
                ["-n", "interop.test", "-D", "0", "-t", str(60 * SLOW),
                 "-f", self.env.users_path,
                 "-m", os.path.join(self.env.maildir, "%u")])

    def _ready(self):
        """The probe session: greeting, QUIT, +OK, end of connection."""
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
                f = s.makefile("rwb")
                g = f.readline()
                if not g.startswith(b"+OK"):
                    fail("%s: greeting %r; log:\n%s"
                         % (self.name, g, self.log_text()[-2000:]))
                f.write(b"QUIT\r\n")
                f.flush()
                r = f.readline()
                if not r.startswith(b"+OK"):
                    fail("%s: QUIT before login answered %r"
                         % (self.name, r))
                # Checked by quit_before_login_every_super_server.
                self.probe_after_quit = f.read()
            finally:
                s.close()
            return True
        return False

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_start)
                return f.read().decode("latin-1", "replace")
        except OSError:
            return ""

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        self.log.close()

    def sessions(self):
        """([pid started], {pid: exit status}) from the log."""
        t = self.log_text()
        started = [int(p) for p in re.findall(self.spawned_re, t)]
        ended = {}
        for pid, st in re.findall(self.ended_re, t):
            st = int(st, self.status_base)
            ended[int(pid)] = (os.waitstatus_to_exitcode(st)
                               if self.raw_status else st)
        return started, ended

    def stop(self, check_codes=True):
        """Waits for the sessions to end, stops the super-server, and
        returns the exit statuses of the pop3d processes after the probe
        (checked unless told not to: all 0, every client quits)."""
        if self.codes is not None:
            return self.codes
        deadline = time.monotonic() + 10 * SLOW
        while time.monotonic() < deadline:
            started, ended = self.sessions()
            if all(p in ended for p in started):
                break
            time.sleep(0.05)
        self._kill()
        t = self.log_text()
        for marker in SAN_MARKERS:
            if marker in t:
                fail("%s: sanitizer report:\n%s" % (self.name, t[-3000:]))
        self.extra_checks()
        started, ended = self.sessions()
        check(started, "%s: no pop3d started; log:\n%s"
              % (self.name, t[-2000:]))
        left = [p for p in started if p not in ended]
        check(not left, "%s: pop3d %s never ended; log:\n%s"
              % (self.name, left, t[-3000:]))
        self.probe_status = ended[started[0]]
        codes = [ended[p] for p in started[1:]]
        bad = [c for c in codes if c != 0]
        if bad and check_codes:
            fail("%s: pop3d exit statuses %s (0 expected: every client "
                 "quits); log:\n%s" % (self.name, codes, t[-3000:]))
        self.codes = codes
        return codes

    def extra_checks(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        try:
            if et is None:
                self.stop()
            else:
                try:
                    self.stop()
                except Exception:
                    pass
        finally:
            self._kill()
        return False


INETD_PID = "/run/inetd.pid"
_private_run = []


def private_run():
    """Whether this host lets root make a private mount namespace."""
    if not _private_run:
        try:
            r = subprocess.run(["unshare", "--mount", "--propagation",
                                "private", "--", "/bin/sh", "-c",
                                "mount -t tmpfs tmpfs /run"],
                               capture_output=True, timeout=10)
            _private_run.append(r.returncode == 0)
        except (OSError, subprocess.TimeoutExpired):
            _private_run.append(False)
    return _private_run[0]


class Inetd(Super):
    name = "inetd"
    own_pidfile = False     # no private /run: the pid file is ours to clean
    san_dir = None
    spawned_re = r"(?m)^(\d+) execv "
    ended_re = r"(?m)^(\d+) reaped, status ([0-9a-f]+)"
    status_base = 16

    def command(self):
        inetd = need("/usr/sbin/inetd", "openbsd-inetd")
        # Sanitizer reports go to files: fd 2 is the client here.
        self.san_dir = os.path.join(self.dir, "san")
        os.makedirs(self.san_dir, exist_ok=True)
        os.chmod(self.san_dir, 0o1777)
        penv = dict(os.environ)
        for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
            opts = [o for o in penv.get(var, "").split(":")
                    if o and not o.startswith("log_path=")]
            opts.append("log_path=" + os.path.join(self.san_dir, "report"))
            penv[var] = ":".join(opts)
        conf = os.path.join(self.dir, "inetd.conf")
        args = self.pop3d_args(log_stderr=False)
        for a in [BIN] + args:
            check(not re.search(r"\s", a), "inetd.conf field with a space: "
                  "%r" % a)
        with open(conf, "w") as f:
            f.write("# pop3d interoperability test (%s)\n" % __file__)
            f.write("127.0.0.1:%d\tstream\ttcp\tnowait\t%s\t%s\tpop3d %s\n"
                    % (self.port, LOCAL_USER, BIN, " ".join(args)))
        argv = [inetd, "-d", "-i", "-E", conf]
        self.own_pidfile = False
        if IS_ROOT and private_run():
            # A private /run: the pid file /run/inetd.pid stays ours.
            argv = [need("unshare", "util-linux"), "--mount",
                    "--propagation", "private", "--", "/bin/sh", "-c",
                    'mount -t tmpfs -o size=1m,mode=755 tmpfs /run && '
                    'exec "$@"', "sh"] + argv
        elif IS_ROOT:
            # No mount namespace here (a container without CAP_SYS_ADMIN):
            # inetd writes /run/inetd.pid, and removes it when it ends.
            if os.path.exists(INETD_PID):
                fail("cannot run a private inetd: no mount namespace, and "
                     "%s belongs to another inetd" % INETD_PID)
            self.own_pidfile = True
        return argv, penv

    def _kill(self):
        pid = self.proc.pid if self.proc is not None else None
        Super._kill(self)
        if self.own_pidfile:
            try:
                if int(read(INETD_PID)) == pid:
                    os.unlink(INETD_PID)
            except (OSError, ValueError):
                pass

    def extra_checks(self):
        reports = os.listdir(self.san_dir) if self.san_dir else []
        if reports:
            fail("inetd: sanitizer report:\n" +
                 read(os.path.join(self.san_dir, reports[0])).decode(
                     "latin-1")[-3000:])


class Activate(Super):
    name = "activate"
    spawned_re = r"Spawned .* as PID (\d+)\."
    ended_re = r"Child (\d+) died with code (\d+)"
    raw_status = False

    def command(self):
        act = need("systemd-socket-activate", "systemd")
        return ([act, "--accept", "--inetd", "-l",
                 "127.0.0.1:%d" % self.port, BIN] + self.pop3d_args(),
                None)


class Tcpserver(Super):
    name = "tcpserver"
    spawned_re = r"(?m)^tcpserver: pid (\d+) from "
    ended_re = r"(?m)^tcpserver: end (\d+) status (\d+)"

    def command(self):
        ts = need("tcpserver", "ucspi-tcp")
        return ([ts, "-v", "-R", "-H", "-l", "0", "127.0.0.1",
                 str(self.port), BIN] + self.pop3d_args(), None)


# ---------------------------------------------------------------- helpers

def run(argv, what, env=None, ok=(0,), cwd=None):
    """Runs a client with a deadline; returns (rc, output)."""
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=env, cwd=cwd, timeout=CLIENT_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        fail("%s: no end after %ds; output:\n%s"
             % (what, CLIENT_TIMEOUT, (e.stdout or b"").decode(
                 "latin-1")[-3000:]))
    out = r.stdout.decode("latin-1", "replace")
    if ok is not None and r.returncode not in ok:
        fail("%s: exit %d (expected %s); output:\n%s"
             % (what, r.returncode, ok, out[-4000:]))
    return r.returncode, out


def client_env(env, **kw):
    e = dict(os.environ)
    e.update(HOME=env.dir, TMPDIR=env.dir, LC_ALL="C")
    e.update(kw)
    return e


def pop_uidls(srv):
    """[uid] of the maildrop now, through poplib."""
    p = poplib.POP3("127.0.0.1", srv.port, timeout=TCP_TIMEOUT)
    p.user(USER)
    p.pass_(PW)
    resp, lines, _ = p.uidl()
    p.quit()
    return [l.split(b" ", 1)[1].decode() for l in lines]


def check_mbox(env, expected, what):
    same(env.read_mbox(USER) or b"", expected, what)


# ================================================================= curl

def curl(srv, *args, ok=(0,)):
    # -q first: no ~/.curlrc.
    return run(["curl", "-q", "-s", "-S", "-v", "--max-time",
                str(CLIENT_TIMEOUT - 10), "-u", "%s:%s" % (USER, PW)]
               + list(args), "curl " + " ".join(args),
               env=client_env(srv.env), ok=ok)


@test
def curl_tcpserver_retr_all_and_dele():
    msgs = corpus()
    need("curl", "curl")
    with setup(msgs) as env, Tcpserver(env) as srv:
        url = "pop3://127.0.0.1:%d/" % srv.port
        out = os.path.join(env.dir, "curl")
        os.mkdir(out)
        lst = os.path.join(out, "list")
        curl(srv, url, "-o", lst)
        same(read(lst), b"".join(b"%d %d\r\n" % (i + 1, len(wire(m)))
                                 for i, m in enumerate(msgs)), "curl LIST")
        uidl = os.path.join(out, "uidl")
        curl(srv, "-X", "UIDL", url, "-o", uidl)
        uids = re.findall(rb"(?m)^(\d+) ([\x21-\x7e]{1,70})\r$", read(uidl))
        eq([int(n) for n, u in uids], list(range(1, len(msgs) + 1)),
           "curl UIDL numbers")
        eq(len(set(u for n, u in uids)), len(msgs), "distinct UIDLs")
        # Every message in one invocation: curl reuses the connection, one
        # session with a RETR per message.
        args = []
        for i in range(len(msgs)):
            args += [url + str(i + 1), "-o", os.path.join(out, str(i + 1))]
        rc, log = curl(srv, *args)
        eq(len(re.findall(r"(?m)^> (?:USER|AUTH) ", log)), 1,
           "curl logins for %d RETRs" % len(msgs))
        for i, m in enumerate(msgs):
            same(read(os.path.join(out, str(i + 1))), wire(m),
                 "curl RETR %d" % (i + 1))
        check_mbox(env, mbox_bytes(msgs), "mbox after curl RETRs")
        # DELE of the first and the last in one session; applied at QUIT.
        n = len(msgs)
        rc, log = curl(srv, "-X", "DELE", "-I", url + "1", url + str(n))
        eq(log.count("> DELE "), 2, "curl DELE commands")
        check_mbox(env, kept(msgs, range(2, n)), "mbox after curl DELE 1, "
                   "DELE %d" % n)
        eq(pop_uidls(srv), [u.decode() for n_, u in uids[1:-1]],
           "UIDLs of the rest")
        srv.stop()


# ============================================================ fetchmail

FM_RECEIVED = (rb"\AReceived: from 127\.0\.0\.1 \[127\.0\.0\.1\]\n"
               rb"\tby [^\s]+ with POP3 \(fetchmail-[0-9][0-9.]*\)\n"
               rb"\tfor <[^>\n]+> \(single-drop\); [^\n]+\n")


class Fetchmail:
    """fetchmail with a private rcfile (only the account and its password,
    which fetchmail reads nowhere else without a terminal), a private UID
    file and pid file; the rest on the command line."""

    def __init__(self, env, srv, name, keep, fetchlimit=None):
        self.env = env
        self.dir = os.path.join(env.dir, name)
        self.out = os.path.join(self.dir, "out")
        os.makedirs(self.out)
        self.rc = os.path.join(self.dir, "fetchmailrc")
        with open(self.rc, "w") as f:
            f.write('poll 127.0.0.1 protocol pop3 service %d\n'
                    '  user "%s" there with password "%s" is "%s" here\n'
                    % (srv.port, USER, PW, LOCAL_USER))
        os.chmod(self.rc, 0o600)
        self.args = ["-v", "--nosyslog", "-f", self.rc,
                     "-i", os.path.join(self.dir, "fetchids"),
                     "--pidfile", os.path.join(self.dir, "pid"),
                     "-t", str(TCP_TIMEOUT),
                     # No STLS attempt: pop3d offers no TLS (yet).
                     "--sslproto", "",
                     "--uidl", "--keep" if keep else "--nokeep",
                     "--mda", "%s %s" % (MDA, self.out)]
        if fetchlimit:
            self.args += ["--fetchlimit", str(fetchlimit)]
        for p in (MDA, self.out):
            check(not re.search(r"[\s\"'\\%]", p), "path for --mda: %r"
                  % p)

    def run(self, ok=(0,)):
        need("fetchmail", "fetchmail")
        return run(["fetchmail"] + self.args, "fetchmail",
                   env=client_env(self.env), ok=ok)

    def delivered(self):
        return [read(os.path.join(self.out, n))
                for n in sorted(os.listdir(self.out))]


def fm_check(files, msgs, what):
    eq(len(files), len(msgs), "%s: messages delivered" % what)
    for i, (data, m) in enumerate(zip(files, msgs)):
        rest, _ = strip_head(data, FM_RECEIVED, "%s #%d" % (what, i + 1))
        same(rest, unix(m), "%s #%d" % (what, i + 1))


@test
def fetchmail_inetd_keep():
    msgs = corpus()
    with setup(msgs) as env, Inetd(env) as srv:
        fm = Fetchmail(env, srv, "fm", keep=True)
        rc, log = fm.run()
        check("TOP 1 99999999" in log or "RETR 1" in log,
              "fetchmail read no message:\n" + log[-2000:])
        fm_check(fm.delivered(), msgs, "fetchmail keep")
        check_mbox(env, mbox_bytes(msgs), "mbox after fetchmail --keep")
        # Second run: everything seen (UIDL): exit 1, "no mail".
        rc, log = fm.run(ok=(1,))
        eq(len(fm.delivered()), len(msgs), "messages after a second run")
        add_newmail(env)
        rc, log = fm.run()
        fm_check(fm.delivered(), msgs + [newmail()], "fetchmail new mail")
        srv.stop()


@test
def fetchmail_inetd_delete():
    msgs = corpus()
    with setup(msgs) as env, Inetd(env) as srv:
        fm = Fetchmail(env, srv, "fm", keep=False, fetchlimit=3)
        rc, log = fm.run(ok=(13,))          # 13: fetchlimit reached
        check("DELE 3" in log, "fetchmail sent no DELE:\n" + log[-2000:])
        fm_check(fm.delivered(), msgs[:3], "fetchmail (fetchlimit 3)")
        check_mbox(env, kept(msgs, range(4, len(msgs) + 1)),
                   "mbox after fetchmail took 3")
        fm2 = Fetchmail(env, srv, "fm2", keep=False)
        rc, log = fm2.run()
        fm_check(fm2.delivered(), msgs[3:], "fetchmail (the rest)")
        check_mbox(env, b"", "mbox after fetchmail took the rest")
        fm2.run(ok=(1,))
        srv.stop()


# ================================================================= mpop

MPOP_RECEIVED = (rb"\AReceived: from 127\.0\.0\.1 \(localhost \[127\.0\.0\.1"
                 rb"\]\)\n\tby [^\s]+ \(mpop-[0-9][0-9.]*\) with POP3\n"
                 rb"\tfor <[^>\n]+>; [^\n]+\n")
MBOX_DATE = rb" [A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \d{4}\Z"


class Mpop:
    def __init__(self, env, srv, name, delivery, keep, extra=""):
        self.env = env
        self.dir = os.path.join(env.dir, name)
        os.makedirs(self.dir)
        self.rc = os.path.join(self.dir, "mpoprc")
        with open(self.rc, "w") as f:
            f.write("defaults\n"
                    "tls off\n"
                    "auth user\n"
                    "timeout %d\n"
                    "account test\n"
                    "host 127.0.0.1\n"
                    "port %d\n"
                    "user %s\n"
                    'password "%s"\n'
                    "delivery %s\n"
                    "keep %s\n"
                    "uidls_file %s\n%s"
                    % (TCP_TIMEOUT, srv.port, USER, PW, delivery,
                       "on" if keep else "off",
                       os.path.join(self.dir, "uidls"), extra))
        os.chmod(self.rc, 0o600)

    def run(self, *args, ok=(0,)):
        need("mpop", "mpop")
        return run(["mpop", "--debug", "-C", self.rc] + list(args)
                   + ["test"], "mpop", env=client_env(self.env), ok=ok)


@test
def mpop_activate_mbox_keep():
    msgs = corpus()
    with setup(msgs) as env, Activate(env) as srv:
        box = os.path.join(env.dir, "mpop.mbox")
        mp = Mpop(env, srv, "mpop", "mbox " + box, keep=True)
        rc, log = mp.run()
        check_mbox(env, mbox_bytes(msgs), "mbox after mpop keep on")

        def got():
            out = []
            for i, (e, m) in enumerate(parse_mboxrd(
                    read(box), rb"\AFrom MAILER-DAEMON" + MBOX_DATE,
                    "mpop mbox")):
                out.append(strip_head(m, MPOP_RECEIVED,
                                      "mpop mbox #%d" % (i + 1))[0])
            return out
        got1 = got()
        eq(len(got1), len(msgs), "messages in mpop's mbox")
        for i, m in enumerate(msgs):
            same(got1[i], unix(m), "mpop mbox #%d" % (i + 1))
        size = len(read(box))
        rc, log = mp.run()
        check(re.search(r"new: no messages", log), "mpop second run:\n"
              + log[-2000:])
        eq(len(read(box)), size, "mpop's mbox after a second run")
        add_newmail(env)
        rc, log = mp.run()
        got2 = got()
        eq(len(got2), len(msgs) + 1, "messages after new mail")
        eq(got2[:-1], got1, "the messages delivered before")
        same(got2[-1], unix(newmail()), "mpop: the new message")
        srv.stop()


@test
def mpop_activate_maildir_delete():
    msgs = corpus()
    big = [i for i, m in enumerate(msgs) if len(wire(m)) > 100000]
    eq(len(big), 1, "one big message in the corpus")
    with setup(msgs) as env, Activate(env) as srv:
        md = mkdir_mail(os.path.join(env.dir, "Maildir"), "cur", "new",
                        "tmp")
        mp = Mpop(env, srv, "mpop", "maildir " + md, keep=False,
                  extra="skipsize 100k\n")
        uids = pop_uidls(srv)
        rc, log = mp.run()
        check("DELE " in log, "mpop sent no DELE:\n" + log[-2000:])
        rest = [m for i, m in enumerate(msgs) if i not in big]
        files = maildir_files(md)
        exp = by_mid(rest)
        eq(sorted(files), sorted(exp), "Message-IDs in mpop's Maildir")
        for k, data in files.items():
            same(strip_head(data, MPOP_RECEIVED, "mpop maildir %s" % k)[0],
                 unix(exp[k]), "mpop maildir %s" % k.decode())
        # The big message was skipped: it is all that is left, same UIDL.
        check_mbox(env, kept(msgs, [big[0] + 1]), "mbox after mpop (keep "
                   "off, skipsize)")
        eq(pop_uidls(srv), [uids[big[0]]], "UIDL of the message left")
        rc, log = mp.run("--skipsize=off")
        files = maildir_files(md)
        eq(len(files), len(msgs), "messages in mpop's Maildir at the end")
        k = mid(msgs[big[0]])
        same(strip_head(files[k], MPOP_RECEIVED, "mpop maildir big")[0],
             unix(msgs[big[0]]), "mpop maildir: the big message")
        check_mbox(env, b"", "mbox after mpop took the rest")
        srv.stop()


# ============================================================== getmail

def gm_received(port):
    return (rb"\AReturn-Path: <unknown>\nDelivered-To: unknown\n"
            rb"Received: from 127\.0\.0\.1 \(127\.0\.0\.1:%d\) by [^\s]+ "
            rb"with POP3 getmail6\n  msgid:([\x21-\x7e]+); [^\n]+\n" % port)


class Getmail:
    def __init__(self, env, srv, name, destination, options):
        self.env = env
        self.dir = os.path.join(env.dir, name)
        os.makedirs(self.dir)
        self.rc = os.path.join(self.dir, "getmailrc")
        with open(self.rc, "w") as f:
            f.write("[retriever]\n"
                    "type = SimplePOP3Retriever\n"
                    "server = 127.0.0.1\n"
                    "port = %d\n"
                    "username = %s\n"
                    "password = %s\n"
                    "timeout = %d\n\n"
                    "[destination]\n%s"
                    # getmail refuses to deliver as root.
                    "%s\n"
                    "[options]\n"
                    "verbose = 2\n%s"
                    % (srv.port, USER, PW, TCP_TIMEOUT, destination,
                       "user = %s\n" % pwd.getpwuid(MAIL_UID).pw_name
                       if IS_ROOT else "", options))

    def run(self, ok=(0,)):
        need("getmail", "getmail6")
        return run(["getmail", "--getmaildir", self.dir, "--rcfile",
                    self.rc], "getmail", env=client_env(self.env), ok=ok)


def gm_check(data, expected, uid, port, what):
    rest, m = strip_head(data, gm_received(port), what)
    eq(m.group(1).decode(), uid, "%s: UIDL in getmail's Received" % what)
    same(rest, unix(expected), what)


@test
def getmail_tcpserver_maildir_keep():
    msgs = corpus()
    with setup(msgs) as env, Tcpserver(env) as srv:
        md = mkdir_mail(os.path.join(env.dir, "Maildir"), "cur", "new",
                        "tmp")
        gm = Getmail(env, srv, "gm", "type = Maildir\npath = %s/\n" % md,
                     "read_all = false\ndelete = false\n")
        uids = pop_uidls(srv)
        rc, log = gm.run()
        files = maildir_files(md)
        exp = by_mid(msgs)
        eq(sorted(files), sorted(exp), "Message-IDs in getmail's Maildir")
        for i, m in enumerate(msgs):
            gm_check(files[mid(m)], m, uids[i], srv.port,
                     "getmail maildir #%d" % (i + 1))
        check_mbox(env, mbox_bytes(msgs), "mbox after getmail (keep)")
        rc, log = gm.run()
        check(re.search(r"0 messages .* retrieved, %d skipped" % len(msgs),
                        log), "getmail second run:\n" + log[-2000:])
        eq(len(maildir_files(md)), len(msgs), "messages after a second run")
        add_newmail(env)
        rc, log = gm.run()
        files = maildir_files(md)
        eq(len(files), len(msgs) + 1, "messages after new mail")
        gm_check(files[mid(newmail())], newmail(), pop_uidls(srv)[-1],
                 srv.port, "getmail: the new message")
        srv.stop()


@test
def getmail_tcpserver_mboxrd_delete():
    msgs = corpus()
    with setup(msgs) as env, Tcpserver(env) as srv:
        box = os.path.join(env.dir, "getmail.mbox")
        with open(box, "wb"):
            pass
        if IS_ROOT:
            os.chown(box, MAIL_UID, MAIL_GID)
        gm = Getmail(env, srv, "gm", "type = Mboxrd\npath = %s\n" % box,
                     "read_all = true\ndelete = true\n"
                     "max_messages_per_session = 5\n")
        uids = pop_uidls(srv)
        rc, log = gm.run()
        check_mbox(env, kept(msgs, range(6, len(msgs) + 1)),
                   "mbox after getmail took 5")
        eq(pop_uidls(srv), uids[5:], "UIDLs of the rest")
        rc, log = gm.run()
        check_mbox(env, b"", "mbox after getmail took the rest")
        got = parse_mboxrd(read(box), rb"\AFrom unknown" + MBOX_DATE,
                           "getmail mbox")
        eq(len(got), len(msgs), "messages in getmail's mbox")
        for i, m in enumerate(msgs):
            gm_check(got[i][1], m, uids[i], srv.port,
                     "getmail mboxrd #%d" % (i + 1))
        srv.stop()


# =============================================================== poplib

def poplib_fetch_all(srv, msgs):
    """CAPA, STAT, LIST, UIDL, RETR of everything; returns (client, uids)."""
    p = poplib.POP3("127.0.0.1", srv.port, timeout=TCP_TIMEOUT)
    check(p.getwelcome().startswith(b"+OK"), "welcome %r" % p.getwelcome())
    caps = p.capa()
    for c in ("TOP", "UIDL", "USER", "PIPELINING"):
        check(c in caps, "CAPA lacks %s: %r" % (c, caps))
    p.user(USER)
    p.pass_(PW)
    eq(p.stat(), (len(msgs), sum(len(wire(m)) for m in msgs)), "STAT")
    resp, lines, _ = p.list()
    eq(lines, [b"%d %d" % (i + 1, len(wire(m))) for i, m in enumerate(msgs)],
       "LIST")
    resp, lines, _ = p.uidl()
    uids = [l.split(b" ", 1)[1].decode() for l in lines]
    eq(len(set(uids)), len(msgs), "distinct UIDLs")
    for i, m in enumerate(msgs):
        resp, lines, octets = p.retr(i + 1)
        m_ = re.match(rb"\+OK (\d+) octets", resp)
        check(m_ and int(m_.group(1)) == len(wire(m)),
              "RETR %d answer %r (%d octets sent)" % (i + 1, resp,
                                                      len(wire(m))))
        same(b"".join(l + b"\r\n" for l in lines), wire(m),
             "poplib RETR %d" % (i + 1))
    return p, uids


@test
def poplib_inetd_retr_all_dele_half():
    msgs = corpus()
    with setup(msgs) as env, Inetd(env) as srv:
        p, uids = poplib_fetch_all(srv, msgs)
        for i in range(1, len(msgs) + 1, 2):
            p.dele(i)
        check(p.quit().startswith(b"+OK"), "QUIT")
        even = list(range(2, len(msgs) + 1, 2))
        check_mbox(env, kept(msgs, even), "mbox after DELE of the odd ones")
        p, uids2 = poplib_fetch_all(srv, [msgs[i - 1] for i in even])
        p.quit()
        eq(uids2, [uids[i - 1] for i in even], "UIDLs after the deletion")
        srv.stop()


@test
def poplib_every_super_server():
    msgs = corpus()
    for cls in (Inetd, Activate, Tcpserver):
        with setup(msgs) as env, cls(env) as srv:
            p, uids = poplib_fetch_all(srv, msgs)
            p.dele(len(msgs))
            p.quit()
            check_mbox(env, kept(msgs, range(1, len(msgs))),
                       "%s: mbox after DELE of the last" % cls.name)
            codes = srv.stop()
            eq(len(codes), 1, "%s: pop3d sessions after the probe"
               % cls.name)


@test
def quit_before_login_every_super_server():
    # The probe of each super-server (greeting, QUIT) and a poplib session
    # that asks CAPA and quits without logging in: pop3d answers +OK and
    # ends with status 0 (pop3d.8: "The session ended with QUIT").
    msgs = corpus()[:3]
    problems = []
    for cls in (Inetd, Activate, Tcpserver):
        with setup(msgs) as env, cls(env) as srv:
            p = poplib.POP3("127.0.0.1", srv.port, timeout=TCP_TIMEOUT)
            check("UIDL" in p.capa(), "CAPA")
            check(p.quit().startswith(b"+OK"), "QUIT before login")
            codes = srv.stop(check_codes=False)
            if srv.probe_after_quit != b"":
                problems.append("%s: probe (greeting, QUIT): bytes after "
                                "QUIT's +OK: %r" % (cls.name,
                                                    srv.probe_after_quit))
            if srv.probe_status != 0:
                problems.append("%s: probe (greeting, QUIT): exit status %s"
                                % (cls.name, srv.probe_status))
            if codes != [0]:
                problems.append("%s: poplib (CAPA, QUIT): exit status %s"
                                % (cls.name, codes))
            check_mbox(env, mbox_bytes(msgs), "mbox")
    if problems:
        fail("QUIT before login:\n" + "\n".join(problems))


# ============================================================ Net::POP3

def netpop3(srv, out, dele=()):
    os.makedirs(out)
    return run(["perl", NETPOP3, "127.0.0.1", str(srv.port), USER, PW, out]
               + [str(d) for d in dele], "Net::POP3")


@test
def netpop3_activate_retr_all_dele():
    msgs = corpus()
    with setup(msgs) as env, Activate(env) as srv:
        out = os.path.join(env.dir, "perl1")
        n = len(msgs)
        netpop3(srv, out, dele=(2, 5, n))
        eq(read(os.path.join(out, "count")), b"%d\n" % n, "message count")
        eq(read(os.path.join(out, "list")),
           b"".join(b"%d %d\n" % (i + 1, len(wire(m)))
                    for i, m in enumerate(msgs)), "Net::POP3 list")
        caps = read(os.path.join(out, "capa")).split()
        for c in (b"TOP", b"UIDL", b"USER"):
            check(c in caps, "Net::POP3 capa lacks %s: %r" % (c, caps))
        uids = [l.split(b" ", 1)[1].decode() for l in
                read(os.path.join(out, "uidl")).splitlines()]
        eq(len(set(uids)), n, "distinct UIDLs")
        for i, m in enumerate(msgs):
            same(read(os.path.join(out, str(i + 1))), unix(m),
                 "Net::POP3 get %d" % (i + 1))
        rest = [i for i in range(1, n + 1) if i not in (2, 5, n)]
        check_mbox(env, kept(msgs, rest), "mbox after Net::POP3 DELE 2 5 %d"
                   % n)
        out2 = os.path.join(env.dir, "perl2")
        netpop3(srv, out2)
        eq([l.split(b" ", 1)[1].decode() for l in
            read(os.path.join(out2, "uidl")).splitlines()],
           [uids[i - 1] for i in rest], "UIDLs of the rest")
        for j, i in enumerate(rest):
            same(read(os.path.join(out2, str(j + 1))), unix(msgs[i - 1]),
                 "Net::POP3 second session, get %d" % (j + 1))
        srv.stop()


# ============================================== a Maildir as the maildrop

def maildir_names(n):
    """Delivery-ordered names: the odd ones in new/, the even ones read by
    a mail reader (cur/, seen)."""
    return [("new/%d.M%dP1.interop" % (1700000000 + i, i)) if i % 2 else
            ("cur/%d.M%dP1.interop:2,S" % (1700000000 + i, i))
            for i in range(1, n + 1)]


def write_maildrop_maildir(env, msgs):
    """The messages as a Maildir at the -m path; returns its path."""
    path = os.path.join(env.maildir, USER)
    mkdir_mail(path, "cur", "new", "tmp")
    for name, m in zip(maildir_names(len(msgs)), msgs):
        deliver_maildir_file(path, name, m)
    return path


def deliver_maildir_file(path, name, m):
    """As a delivery agent does: written in tmp/, renamed into place."""
    tmp = os.path.join(path, "tmp", name.split("/")[1])
    with open(tmp, "wb") as f:
        f.write(m)
    os.chmod(tmp, 0o600)
    if IS_ROOT:
        os.chown(tmp, MAIL_UID, MAIL_GID)
    os.rename(tmp, os.path.join(path, name))


def maildrop_files(path):
    """{unique part of the name (the UIDL): bytes} of new/ and cur/."""
    out = {}
    for sub in ("new", "cur"):
        for name in os.listdir(os.path.join(path, sub)):
            out[name.split(":")[0]] = read(os.path.join(path, sub, name))
    return out


def need_maildir(env):
    """The Maildir maildrop logs in (a plain session, before the client)."""
    r = subprocess.run([BIN] + env.argv(), input=("USER %s\r\nPASS %s\r\n"
                       "QUIT\r\n" % (USER, PW)).encode(),
                       capture_output=True, timeout=30 * SLOW)
    check(b"maildrop has" in r.stdout, "login to the Maildir: %s %s"
          % (short(r.stdout), short(r.stderr)))


@test
def maildir_maildrop_fetchmail_keep_tcpserver():
    # UIDLs of a Maildir are the names up to ':' (DESIGN.md); they stay
    # when a session moves what it read from new/ to cur/, so the second
    # run of fetchmail must find nothing new.
    msgs = corpus()
    env = Env()
    with env:
        env.add_user(USER, PW)
        path = write_maildrop_maildir(env, msgs)
        need_maildir(env)
        with Tcpserver(env) as srv:
            uids = pop_uidls(srv)
            eq(uids, [n.split("/")[1].split(":")[0]
                      for n in maildir_names(len(msgs))], "UIDLs")
            fm = Fetchmail(env, srv, "fm", keep=True)
            fm.run()
            fm_check(fm.delivered(), msgs, "fetchmail from a Maildir")
            files = maildrop_files(path)
            eq(sorted(files), sorted(uids), "the Maildir's messages")
            for u, m in zip(uids, msgs):
                same(files[u], m, "the Maildir's %s" % u)
            # A reader that RETRs everything (pop3d may move new/ to cur/).
            p, uids2 = poplib_fetch_all(srv, msgs)
            p.quit()
            eq(uids2, uids, "UIDLs in a second session")
            eq(pop_uidls(srv), uids, "UIDLs after a session that read all")
            fm.run(ok=(1,))
            eq(len(fm.delivered()), len(msgs), "messages after a second run")
            deliver_maildir_file(path, "new/1800000000.M1P2.interop",
                                 newmail())
            fm.run()
            fm_check(fm.delivered(), msgs + [newmail()],
                     "fetchmail: the new message")
            srv.stop()


@test
def maildir_maildrop_mpop_delete_inetd():
    msgs = corpus()
    big = [i for i, m in enumerate(msgs) if len(wire(m)) > 100000][0]
    env = Env()
    with env:
        env.add_user(USER, PW)
        path = write_maildrop_maildir(env, msgs)
        need_maildir(env)
        with Inetd(env) as srv:
            uids = pop_uidls(srv)
            box = os.path.join(env.dir, "mpop.mbox")
            mp = Mpop(env, srv, "mpop", "mbox " + box, keep=False,
                      extra="skipsize 100k\n")
            mp.run()
            files = maildrop_files(path)
            eq(sorted(files), [uids[big]], "the Maildir after mpop (keep "
               "off, skipsize)")
            same(files[uids[big]], msgs[big], "the message left")
            mp.run("--skipsize=off")
            eq(maildrop_files(path), {}, "the Maildir after mpop took the "
               "rest")
            got = parse_mboxrd(read(box), rb"\AFrom MAILER-DAEMON" +
                               MBOX_DATE, "mpop mbox")
            order = [i for i in range(len(msgs)) if i != big] + [big]
            eq(len(got), len(msgs), "messages in mpop's mbox")
            for (e, data), i in zip(got, order):
                same(strip_head(data, MPOP_RECEIVED, "mpop #%d" % (i + 1))[0],
                     unix(msgs[i]), "mpop from a Maildir #%d" % (i + 1))
            srv.stop()


if __name__ == "__main__":
    main()
