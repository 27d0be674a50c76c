#!/usr/bin/env python3
"""make install / uninstall, the installed tree and binary, the units and
the man pages, and the fields of the log lines of a session."""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pop3test as T
from pop3test import test, check, eq, fail

EXPECTED = [
    "usr/lib/systemd/system/pop3d.socket",
    "usr/lib/systemd/system/pop3d@.service",
    "usr/lib/tmpfiles.d/pop3d.conf",
    "usr/sbin/pop3d",
    "usr/share/doc/pop3d/examples/README.md",
    "usr/share/doc/pop3d/examples/inetd.conf.example",
    "usr/share/doc/pop3d/examples/tcpserver.sh",
    "usr/share/doc/pop3d/examples/xinetd.pop3d",
    "usr/share/man/man5/pop3d.users.5",
    "usr/share/man/man8/pop3d.8",
]


def make(*args):
    p = subprocess.run(["make", "-s", "-C", T.REPO] + list(args),
                       capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, "make %s failed: %s" % (" ".join(args),
                                                     p.stderr[-500:]))


def tree(root):
    out = []
    for d, _, files in os.walk(root):
        for f in files:
            out.append(os.path.relpath(os.path.join(d, f), root))
    return sorted(out)


@test
def install_into_destdir_and_run_the_installed_binary():
    d = tempfile.mkdtemp(prefix="pop3d-destdir-")
    try:
        make("install", "DESTDIR=" + d, "PREFIX=/usr")
        eq(tree(d), EXPECTED, "installed files")
        sbin = os.path.join(d, "usr/sbin/pop3d")
        check(os.stat(sbin).st_mode & 0o777 == 0o755, "binary mode")
        unit = open(os.path.join(d, "usr/lib/systemd/system/"
                                 "pop3d@.service")).read()
        check("ExecStart=/usr/sbin/pop3d " in unit,
              "unit names the installed binary: %r"
              % re.findall(r"ExecStart=.*", unit))
        # Every installed example and page names the installed binary: a
        # line copied from them into inetd.conf must find it.
        for f in EXPECTED:
            path = os.path.join(d, f)
            if f.endswith("sbin/pop3d"):
                continue
            check(os.stat(path).st_mode & 0o777 == 0o644, "mode of " + f)
            text = open(path, errors="replace").read()
            check("/usr/local/sbin" not in text,
                  "%s names /usr/local/sbin after PREFIX=/usr" % f)
        v = subprocess.run([sbin, "-V"], capture_output=True, text=True)
        check(v.returncode == 0 and v.stdout.startswith("pop3d "),
              "pop3d -V: %r" % v.stdout)
        # The installed binary serves a session.
        with T.Env() as env:
            env.add_user("u", "pw")
            ms = [T.message(1), T.message(2)]
            env.write_mbox("u", ms)
            p = subprocess.run([sbin] + env.argv(), input=b"USER u\r\n"
                               b"PASS pw\r\nRETR 2\r\nQUIT\r\n",
                               capture_output=True, timeout=30)
            check(T.stuffed(ms[1]) in p.stdout,
                  "installed binary's RETR: %r" % p.stdout[-200:])
            eq(p.returncode, 0, "exit status")
        make("uninstall", "DESTDIR=" + d, "PREFIX=/usr")
        eq(tree(d), [], "files left after uninstall")
    finally:
        shutil.rmtree(d, ignore_errors=True)


@test
def units_verify_and_man_pages_lint_clean():
    if shutil.which("systemd-analyze") is None:
        raise T.Skip("no systemd-analyze")
    d = tempfile.mkdtemp(prefix="pop3d-prefix-")
    try:
        make("install", "PREFIX=" + d)
        units = [os.path.join(d, "lib/systemd/system", u)
                 for u in ("pop3d.socket", "pop3d@.service")]
        p = subprocess.run(["systemd-analyze", "verify", "--man=no"] + units,
                           capture_output=True, text=True, timeout=60)
        eq((p.returncode, p.stdout + p.stderr), (0, ""),
           "systemd-analyze verify")
        if shutil.which("mandoc"):
            pages = [os.path.join(d, "share/man/man8/pop3d.8"),
                     os.path.join(d, "share/man/man5/pop3d.users.5")]
            p = subprocess.run(["mandoc", "-Tlint", "-W", "warning"] + pages,
                               capture_output=True, text=True)
            eq((p.returncode, p.stdout + p.stderr), (0, ""), "mandoc -Tlint")
        make("uninstall", "PREFIX=" + d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@test
def man_page_documents_every_flag():
    src = open(os.path.join(T.REPO, "pop3d.c")).read()
    flags = re.search(r'getopt\(argc, argv, "([^"]+)"\)', src).group(1)
    page = open(os.path.join(T.REPO, "man", "pop3d.8")).read()
    for f in flags.replace(":", ""):
        check(re.search(r"^\.It Fl %s\b" % f, page, re.M),
              "pop3d.8 does not document -%s" % f)
        check(re.search(r"`-%s\b" % f, open(os.path.join(
            T.REPO, "README.md")).read()), "README does not list -%s" % f)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@test
def log_lines_carry_their_fields():
    if shutil.which("systemd-socket-activate") is None:
        raise T.Skip("no systemd-socket-activate")
    with T.Env() as env:
        env.add_user("u", "Sup3r-Secret-PW")
        ms = [T.message(i) for i in range(1, 5)]
        env.write_mbox("u", ms)
        port = free_port()
        logf = os.path.join(env.dir, "log")
        with open(logf, "wb") as lf:
            srv = subprocess.Popen(
                ["systemd-socket-activate", "--accept", "--inetd", "-l",
                 "127.0.0.1:%d" % port, T.BIN] + env.argv(),
                stdout=subprocess.DEVNULL, stderr=lf)
        try:
            for _ in range(100):
                try:
                    c = socket.create_connection(("127.0.0.1", port), 1)
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                fail("no listener")
            c.settimeout(10)
            f = c.makefile("rb")
            f.readline()
            local = c.getsockname()[1]
            for cmd in (b"USER u", b"PASS Wr0ng-Guess-99", b"USER u",
                        b"PASS Sup3r-Secret-PW",
                        b"RETR 1", b"RETR 2", b"DELE 3", b"QUIT"):
                c.sendall(cmd + b"\r\n")
                line = f.readline()
                if cmd.startswith(b"RETR") and line.startswith(b"+OK"):
                    while f.readline() != b".\r\n":
                        pass
            c.close()
            time.sleep(0.5)
        finally:
            srv.terminate()
            srv.wait(10)
        log = open(logf).read()
        for secret in ("Sup3r-Secret-PW", "Wr0ng-Guess-99"):
            check(secret not in log, "a password was logged:\n" + log)
        check(re.search(r"connect from 127\.0\.0\.1 port %d\b" % local, log),
              "no connect line with the peer's address and port:\n" + log)
        check(re.search(r'login failed: user=u method=USER reason="[^"]+" '
                        r'failures=1', log), "no failed-login line:\n" + log)
        check(re.search(r"login: user=u method=USER", log),
              "no login line:\n" + log)
        sizes = [len(T.wire(m)) for m in ms]
        want = (r"quit: user=u retrieved=2/%d deleted=1/%d kept=3/%d"
                % (sizes[0] + sizes[1], sizes[2], sizes[0] + sizes[1] +
                   sizes[3]))
        check(re.search(want, log), "no quit line %r:\n%s" % (want, log))


@test
def ipv6_peer_is_logged():
    if shutil.which("systemd-socket-activate") is None:
        raise T.Skip("no systemd-socket-activate")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
        probe.close()
    except OSError:
        raise T.Skip("no IPv6 loopback here")
    with T.Env() as env:
        env.add_user("u", "pw")
        env.write_mbox("u", [T.message(1)])
        logf = os.path.join(env.dir, "log")
        with open(logf, "wb") as lf:
            srv = subprocess.Popen(
                ["systemd-socket-activate", "--accept", "--inetd", "-l",
                 "[::1]:%d" % port, T.BIN] + env.argv(),
                stdout=subprocess.DEVNULL, stderr=lf)
        try:
            for _ in range(100):
                try:
                    c = socket.create_connection(("::1", port), 1)
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                fail("no IPv6 listener")
            c.settimeout(10)
            f = c.makefile("rb")
            f.readline()
            local = c.getsockname()[1]
            c.sendall(b"QUIT\r\n")
            f.readline()
            c.close()
            time.sleep(0.3)
        finally:
            srv.terminate()
            srv.wait(10)
        log = open(logf).read()
        check(re.search(r"connect from ::1 port %d\b" % local, log),
              "no connect line with the IPv6 peer:\n" + log)


@test
def peer_from_tcpserver_environment():
    # Where fd 0 is no socket, the UCSPI variables name the peer.
    with T.Env() as env:
        env.add_user("u", "pw")
        e = dict(os.environ, TCPREMOTEIP="192.0.2.7", TCPREMOTEPORT="4711")
        p = subprocess.run([T.BIN] + env.argv(), input=b"QUIT\r\n",
                           capture_output=True, env=e, timeout=30)
        check(b"connect from 192.0.2.7 port 4711" in p.stderr,
              "peer from the environment: %r" % p.stderr[-300:])


@test
def users_file_writable_by_others_is_refused():
    with T.Env() as env:
        env.add_user("u", "pw")
        env.write_mbox("u", [T.message(1)])
        os.chmod(env.users_path, 0o620)
        p = subprocess.run([T.BIN] + env.argv(), input=b"QUIT\r\n",
                           capture_output=True, timeout=30)
        eq(p.returncode, 78, "exit status with a group-writable users file")
        check(b"writable by others" in p.stderr, "no log line: %r"
              % p.stderr[-300:])
        os.chmod(env.users_path, 0o644)
        p = subprocess.run([T.BIN] + env.argv(), input=b"USER u\r\n"
                           b"PASS pw\r\nQUIT\r\n", capture_output=True,
                           timeout=30)
        eq(p.returncode, 0, "exit status with a world-readable users file")
        check(b"readable by everyone" in p.stderr, "no warning: %r"
              % p.stderr[-300:])


@test
def release_binary_is_hardened():
    # STYLE.md's flags, read back from the ELF file.
    b = os.path.join(T.REPO, "obj", "pop3d")
    if shutil.which("readelf") is None:
        raise T.Skip("no readelf")

    def readelf(*a):
        return subprocess.run(["readelf"] + list(a) + [b],
                              capture_output=True, text=True).stdout

    check("DYN (Position-Independent Executable" in readelf("-h"),
          "not a PIE")
    prog = readelf("-lW")
    check("GNU_RELRO" in prog, "no RELRO segment")
    stack = [l for l in prog.splitlines() if "GNU_STACK" in l]
    check(stack and "RWE" not in stack[0], "executable stack: %r" % stack)
    dyn = readelf("-d")
    check("BIND_NOW" in dyn or "NOW" in dyn, "not bound now (full RELRO)")
    syms = readelf("--dyn-syms", "-W")
    check("__stack_chk_fail" in syms, "no stack protector")
    check(re.search(r"__\w+_chk\b", syms.replace("__stack_chk_fail", "")),
          "no FORTIFY_SOURCE checked functions")


def syscall_set(groups):
    """The syscalls a SystemCallFilter= allow list of groups and names
    lets through, nested groups expanded as systemd does."""
    out, seen, todo = set(), set(), list(groups)
    while todo:
        g = todo.pop()
        if not g.startswith("@"):
            out.add(g)
            continue
        if g in seen:
            continue
        seen.add(g)
        p = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager",
                            g], capture_output=True, text=True, timeout=60)
        check(p.returncode == 0, "systemd-analyze syscall-filter %s: %s"
              % (g, p.stderr))
        for line in p.stdout.splitlines()[1:]:
            w = line.strip().split()
            if w and not w[0].startswith("#"):
                todo.append(w[0])
    return out


@test
def service_unit_lets_pop3d_chroot_and_collects_failed_sessions():
    # pop3d chroots in every session (the pre-login jail, and -r): a
    # SystemCallFilter= that leaves chroot(2) out kills the pre-login
    # process with SIGSYS and each connection exits 2 with no greeting.
    # systemd-analyze verify does not see it.
    if shutil.which("systemd-analyze") is None:
        raise T.Skip("no systemd-analyze")
    src = open(os.path.join(T.REPO, "pop3d.c")).read()
    check("chroot(" in src, "pop3d.c no longer calls chroot")
    unit = open(os.path.join(T.REPO, "systemd", "pop3d@.service")).read()
    filters = [l.split("=", 1)[1].split() for l in unit.splitlines()
               if l.startswith("SystemCallFilter=")]
    if filters:
        check(not any(f and f[0].startswith("~") for f in filters),
              "deny-list filters: check them by hand")
        allowed = syscall_set([g for f in filters for g in f])
        check("chroot" in allowed, "SystemCallFilter= %r does not allow "
              "chroot" % filters)
    # Exit 1 (no QUIT, failed logins) is routine for a per-connection
    # instance; without this each such connection stays a failed unit.
    check(re.search(r"^CollectMode=inactive-or-failed$", unit, re.M),
          "pop3d@.service has no CollectMode=inactive-or-failed")


@test
def flag_errors_never_reach_the_client_under_inetd():
    # inetd gives the connection as fds 0, 1 and 2: a bad flag in the
    # inetd.conf line must not be written to the client as its greeting.
    for args in (["-t", "0"], ["-n", "bad name"], ["-Z"]):
        a, b = socket.socketpair()
        try:
            p = subprocess.Popen([T.BIN] + args, stdin=b, stdout=b, stderr=b)
            b.close()
            eq(p.wait(30), 64, "exit status of pop3d %s" % " ".join(args))
            a.settimeout(10)
            got = a.recv(4096)
            eq(got, b"", "bytes the client got from pop3d %s"
               % " ".join(args))
        finally:
            a.close()
    # Where stderr is not the connection, the message stays on stderr.
    p = subprocess.run([T.BIN, "-t", "0"], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30)
    eq(p.returncode, 64, "exit status with -t 0")
    check(b"-t must be a number" in p.stderr, "stderr: %r" % p.stderr)


@test
def signals_left_by_the_super_server_are_reset():
    # Ignored signals and the signal mask survive exec.  A super-server
    # that ignores SIGCHLD (to be rid of zombies) made the kernel reap
    # pop3d's children, so that waitpid failed: every login was answered
    # [SYS/TEMP] and a QUIT before login exited 2.  One that blocks
    # SIGTERM left the session deaf to systemctl stop.
    def odd():
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK,
                               {signal.SIGTERM, signal.SIGHUP})

    with T.Env() as env:
        env.add_user("u", "pw")
        ms = [T.message(1), T.message(2)]
        env.write_mbox("u", ms)
        p = subprocess.run([T.BIN] + env.argv(), input=b"QUIT\r\n",
                           capture_output=True, preexec_fn=odd, timeout=30)
        eq(p.returncode, 0, "exit status of QUIT before login")
        p = subprocess.run([T.BIN] + env.argv(), input=b"USER u\r\n"
                           b"PASS pw\r\nRETR 2\r\nDELE 1\r\nQUIT\r\n",
                           capture_output=True, preexec_fn=odd, timeout=30)
        check(T.stuffed(ms[1]) in p.stdout, "login and RETR: %r"
              % p.stdout[-200:])
        eq(p.returncode, 0, "exit status after QUIT")
        eq(env.read_mbox("u"), T.mbox_bytes([(T.envelope(2), ms[1])]),
           "mbox after DELE 1 and QUIT")
        q = subprocess.Popen([T.BIN] + env.argv(), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, preexec_fn=odd)
        try:
            q.stdout.readline()                 # the greeting
            q.send_signal(signal.SIGTERM)
            try:
                rc = q.wait(10)
            except subprocess.TimeoutExpired:
                fail("pop3d ignores SIGTERM (blocked by its parent)")
            eq(rc, -signal.SIGTERM, "exit status after SIGTERM")
        finally:
            if q.poll() is None:
                q.kill()
                q.wait()
            q.stdin.close()
            q.stdout.close()


@test
def no_dev_null_and_no_stderr_keep_log_lines_out_of_the_mail():
    # Without /dev/null, fd 2 was left closed: the next open got it, the
    # mbox, and with -e the log lines ("user=u maildrop=...") were written
    # over its first message.  Here /dev is an empty tmpfs in a mount
    # namespace of the test's own, and pop3d starts with fd 2 closed.
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        raise T.Skip("needs root and unshare(1)")
    if subprocess.run(["unshare", "-m", "--propagation", "private", "sh",
                       "-c", "mount -t tmpfs none /dev"],
                      capture_output=True).returncode != 0:
        raise T.Skip("no mount namespace here")
    with T.Env() as env:
        env.add_user("u", "pw")
        ms = [T.message(1), T.message(2)]
        env.write_mbox("u", ms)
        before = env.read_mbox("u")
        for e in (True, False):
            p = subprocess.run(
                ["unshare", "-m", "--propagation", "private", "sh", "-c",
                 'mount -t tmpfs none /dev && test ! -e /dev/null && '
                 'exec "$0" "$@" 2>&-', T.BIN] + env.argv(e=e),
                input=b"USER u\r\nPASS pw\r\nRETR 1\r\nQUIT\r\n",
                capture_output=True, timeout=30)
            check(T.stuffed(ms[0]) in p.stdout, "-e %s: RETR 1: %r"
                  % (e, p.stdout[-300:]))
            eq(p.returncode, 0, "-e %s: exit status" % e)
            eq(env.read_mbox("u"), before, "-e %s: mbox after the session"
               % e)


@test
def ipv4_peer_of_a_dual_stack_listener_is_logged_as_ipv4():
    # pop3d.socket's ListenStream=110 is a dual-stack IPv6 socket: an IPv4
    # client's address must be logged as a.b.c.d, not ::ffff:a.b.c.d.
    if shutil.which("systemd-socket-activate") is None:
        raise T.Skip("no systemd-socket-activate")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        probe.bind(("::", 0))
        port = probe.getsockname()[1]
        probe.close()
    except OSError:
        raise T.Skip("no dual-stack IPv6 here")
    with T.Env() as env:
        env.add_user("u", "pw")
        logf = os.path.join(env.dir, "log")
        with open(logf, "wb") as lf:
            srv = subprocess.Popen(
                ["systemd-socket-activate", "--accept", "--inetd", "-l",
                 str(port), T.BIN] + env.argv(),
                stdout=subprocess.DEVNULL, stderr=lf)
        try:
            for _ in range(100):
                try:
                    c = socket.create_connection(("127.0.0.1", port), 1)
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                fail("no dual-stack listener")
            c.settimeout(10)
            f = c.makefile("rb")
            f.readline()
            local = c.getsockname()[1]
            c.sendall(b"QUIT\r\n")
            f.readline()
            c.close()
            time.sleep(0.3)
        finally:
            srv.terminate()
            srv.wait(10)
        log = open(logf).read()
        check(re.search(r"connect from 127\.0\.0\.1 port %d\b" % local, log),
              "IPv4 peer not logged as IPv4:\n" + log)


if __name__ == "__main__":
    T.main()
