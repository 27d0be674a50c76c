#!/usr/bin/python3
"""Login and privilege tests of pop3d: system users (shadow passwords,
root, low uids, locked and expired accounts), virtual users with their own
ids, the pre-login jail and the session's ids read from /proc, APOP,
AUTH PLAIN, failed logins (delay, limit, identical answers, equal work),
[SYS/TEMP], passwords kept out of the log and out of memory, and every
command-line flag.

Most of it needs root, as CI has: it creates throwaway system users and
groups named pop3dt_<random> (useradd, chpasswd, usermod, chage) with random
passwords, and removes them in `finally` (userdel, groupdel).  Without root
those tests raise Skip; the rest (users file, APOP, AUTH PLAIN, most flags)
run as any user.

Run: /usr/bin/python3 tests/integration/test_auth.py [test_name ...]
"""
import base64
import grp
import hashlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pop3test as T  # noqa: E402
from pop3test import (IS_ROOT, MAIL_GID, MAIL_UID, SLOW, Env, Skip,  # noqa
                      check, eq, fail, main, make_hash, mbox_bytes, message,
                      parse_stat, short, test)

AUTH_FAIL = "-ERR [AUTH] invalid user name or password"
EXIT_CLIENT, EXIT_SYS, EXIT_USAGE, EXIT_CONFIG = 1, 2, 64, 78
CAP_SYS_PTRACE = 19


def need_root():
    if not IS_ROOT:
        raise Skip("needs root (CI runs the suite as root)")


def rand_pw(prefix="pw"):
    """A password that no one could know and that is easy to grep for."""
    return "%s-%s" % (prefix, secrets.token_hex(10))


def msgs(n):
    return [message(i) for i in range(1, n + 1)]


def put_mbox(path, n, uid, gid):
    with open(path, "wb") as f:
        f.write(mbox_bytes(msgs(n)))
    os.chown(path, uid, gid)
    os.chmod(path, 0o600)


def b64(s):
    if isinstance(s, str):
        s = s.encode("latin-1")
    return base64.b64encode(s).decode()


def plain(authcid, password, authzid=""):
    return b64("%s\0%s\0%s" % (authzid, authcid, password))


def apop_digest(stamp, secret):
    return hashlib.md5((stamp + secret).encode("latin-1")).hexdigest()


STAMP_RE = re.compile(r" (<[^<>\s]+@[^<>\s]+>)$")


def stamp_of(greeting):
    m = STAMP_RE.search(greeting)
    if not m:
        fail("greeting carries no <...@host> timestamp: %r" % greeting)
    return m.group(1)


def run(argv, stdin=None):
    r = subprocess.run(argv, input=None if stdin is None else stdin.encode(),
                       capture_output=True, timeout=60)
    if r.returncode != 0:
        fail("%s failed (exit %d): %s"
             % (" ".join(argv), r.returncode,
                r.stderr.decode(errors="replace").strip()))
    return r.stdout.decode(errors="replace")


# ------------------------------------------------------- throwaway accounts

def id_used(n):
    for get in (pwd.getpwuid, grp.getgrgid):
        try:
            get(n)
            return True
        except KeyError:
            pass
    return False


def free_id(lo, hi):
    """An id in [lo, hi) that names neither a user nor a group."""
    start = lo + secrets.randbelow(hi - lo)
    for i in range(hi - lo):
        n = lo + (start - lo + i) % (hi - lo)
        if not id_used(n):
            return n
    fail("no free id in [%d, %d)" % (lo, hi))


class SysUser:
    def __init__(self, name, uid, gid, home, password=None):
        self.name, self.uid, self.gid, self.home = name, uid, gid, home
        self.password = password


class Accounts:
    """Throwaway system users and groups, removed on exit even when the test
    fails.  Enter it before Env, so that Env (which ends the pop3d
    processes) exits first: userdel refuses users with running processes."""

    def __init__(self):
        self.users = []
        self.groups = []

    def __enter__(self):
        need_root()
        return self

    def __exit__(self, et, ev, tb):
        problems = []
        for name in reversed(self.users):
            r = subprocess.run(["userdel", "-f", name], capture_output=True)
            if r.returncode != 0:
                problems.append("userdel %s: %s" % (name, r.stderr.decode()))
        for name in reversed(self.groups):
            r = subprocess.run(["groupdel", name], capture_output=True)
            if r.returncode != 0:
                problems.append("groupdel %s: %s" % (name, r.stderr.decode()))
        if problems and et is None:
            fail("cleanup: " + "; ".join(problems))
        return False

    @staticmethod
    def new_name():
        return "pop3dt_" + secrets.token_hex(4)

    def group(self):
        name = self.new_name()
        gid = free_id(20000, 60000)
        run(["groupadd", "-g", str(gid), name])
        self.groups.append(name)
        return gid

    def user(self, uid=None, gid=None, password="random", method="SHA512",
             home="/nonexistent", dup=False):
        """A user with its own new group (unless gid is given); password
        "random" gets a fresh random one, None leaves useradd's locked "!"."""
        name = self.new_name()
        if gid is None:
            gid = self.group()
        if uid is None:
            uid = free_id(20000, 60000)
        run(["useradd", "-M", "-N", "-g", str(gid), "-u", str(uid),
             "-s", "/usr/sbin/nologin", "-d", home] +
            (["-o"] if dup else []) + [name])
        self.users.append(name)
        u = SysUser(name, uid, gid, home)
        if password == "random":
            password = rand_pw()
        if password is not None:
            self.set_password(u, password, method)
        return u

    @staticmethod
    def set_password(u, password, method="SHA512"):
        run(["chpasswd", "-c", method], "%s:%s\n" % (u.name, password))
        u.password = password


def shadow_field(name, i=1):
    with open("/etc/shadow") as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if fields[0] == name:
                return fields[i]
    fail("%s not in /etc/shadow" % name)


def spool(env, name="spool"):
    """A root-owned spool directory for system users' mboxes."""
    path = os.path.join(env.dir, name)
    os.mkdir(path)
    os.chmod(path, 0o755)
    return path


def sys_args(env, spooldir, extra=(), **kw):
    """pop3d for system users: no -f, maildrops spooldir/%u."""
    return env.argv(users=False, template=os.path.join(spooldir, "%u"),
                    extra=list(extra), **kw)


def sys_start(env, spooldir, extra=(), **kw):
    p = env.spawn(sys_args(env, spooldir, extra, **kw))
    g = p.line()
    if not g.startswith("+OK"):
        fail("greeting: expected +OK, got %r; stderr: %s"
             % (g, p.stderr()[-500:]))
    p.greeting = g
    return p


def attempt(p, user, password):
    """USER and PASS; both answers."""
    return p.cmd("USER " + user), p.cmd("PASS " + password)


def login_answer(env, spooldir, user, password, extra=()):
    """One fresh connection, one USER/PASS attempt; the PASS answer."""
    p = sys_start(env, spooldir, extra)
    u, r = attempt(p, user, password)
    eq(u, "+OK send PASS", "USER %s" % user)
    p.finish()
    return r


class no_leak_check:
    """LeakSanitizer reads /proc/PID/task at exit, which a chroot (-r)
    hides, and then aborts: for a process that ends inside -r, leak
    detection is turned off (the other tests cover leaks)."""

    def __enter__(self):
        self.old = os.environ.get("ASAN_OPTIONS")
        os.environ["ASAN_OPTIONS"] = ((self.old + ":") if self.old else "") \
            + "detect_leaks=0"

    def __exit__(self, *a):
        if self.old is None:
            del os.environ["ASAN_OPTIONS"]
        else:
            os.environ["ASAN_OPTIONS"] = self.old
        return False


# ------------------------------------------------------------------ /proc

def proc_status(pid):
    st = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                st[k] = v.strip()
    except OSError as e:
        fail("cannot read /proc/%d/status: %s" % (pid, e))
    return st


def ids(st, key):
    return [int(x) for x in st[key].split()]


def groups_of(st):
    return sorted(int(x) for x in st.get("Groups", "").split())


def have_cap(n):
    return bool(int(proc_status(os.getpid())["CapEff"], 16) >> n & 1)


def children(pid):
    """Pids whose parent is pid (/proc/PID/task/*/children where the kernel
    has it, and always a scan of /proc/*/stat)."""
    kids = set()
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    kids |= {int(x) for x in f.read().split()}
            except OSError:
                pass
    except OSError:
        pass
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.add(int(d))
    return sorted(kids)


def the_child(pid):
    deadline = time.monotonic() + 5 * SLOW
    while True:
        kids = children(pid)
        if len(kids) == 1:
            return kids[0]
        if time.monotonic() > deadline:
            fail("pop3d (pid %d) has %d children, expected one pre-login "
                 "process: %r" % (pid, len(kids), kids))
        time.sleep(0.02)


def root_of(pid):
    try:
        return os.readlink("/proc/%d/root" % pid)
    except PermissionError:
        if not have_cap(CAP_SYS_PTRACE):
            raise Skip("/proc/PID/root of another user's process needs "
                       "CAP_SYS_PTRACE, which this container lacks")
        raise


def all_ids(st, key, want, what):
    eq(ids(st, key), [want] * 4, "%s: %s (real, effective, saved, fs)"
       % (what, key))


def no_privileges(st, what):
    eq(int(st["CapEff"], 16), 0, what + ": CapEff")
    eq(int(st["CapPrm"], 16), 0, what + ": CapPrm")
    if "NoNewPrivs" in st:
        eq(st["NoNewPrivs"], "1", what + ": NoNewPrivs")


def find_in_memory(pid, needles):
    """{needle: [where, ...]} for each needle found in the writable memory
    of the process (heap, stack, data; huge sanitizer shadow maps are
    skipped)."""
    found = {}
    try:
        maps = open("/proc/%d/maps" % pid).read().splitlines()
        mem = open("/proc/%d/mem" % pid, "rb", 0)
    except PermissionError:
        if not have_cap(CAP_SYS_PTRACE):
            raise Skip("reading another user's memory needs CAP_SYS_PTRACE")
        raise
    with mem:
        for line in maps:
            parts = line.split(None, 5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            where = parts[5].strip() if len(parts) > 5 else "[anon]"
            if where == os.path.realpath(T.BIN):
                where = "pop3d's static data"
            if "r" not in parts[1] or "w" not in parts[1] or \
                    hi - lo > 64 << 20 or where in ("[vvar]", "[vsyscall]"):
                continue
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                continue
            for n in needles:
                k = data.count(n)
                if k:
                    found.setdefault(n, []).append(
                        "%d x in %s at %x" % (k, where, lo))
    return found


# ======================================================== system users

@test
def system_user_sha512_and_yescrypt_passwords():
    """A system user logs in with its shadow password, whichever of
    sha512crypt and yescrypt made the hash, by USER/PASS and AUTH PLAIN;
    wrong and old passwords are refused."""
    with Accounts() as acc, Env() as env:
        sp = spool(env)
        u = acc.user(method="SHA512")
        check(shadow_field(u.name).startswith("$6$"),
              "chpasswd -c SHA512 made %r" % shadow_field(u.name)[:4])
        put_mbox(os.path.join(sp, u.name), 2, u.uid, u.gid)
        p = sys_start(env, sp)
        eq(attempt(p, u.name, "wrong" + u.password)[1], AUTH_FAIL,
           "wrong password")
        p.ok("USER " + u.name)
        r = p.cmd("PASS " + u.password)
        check(r.startswith("+OK"), "sha512crypt user: PASS answered %r; "
              "log: %s" % (r, p.stderr()[-600:]))
        eq(parse_stat(p.ok("STAT")), (2, len(b"".join(
            [m.replace(b"\n", b"\r\n") for m in msgs(2)]))), "STAT")
        p.quit()

        old = u.password
        acc.set_password(u, rand_pw("y pw"), "YESCRYPT")
        check(shadow_field(u.name).startswith("$y$"),
              "chpasswd -c YESCRYPT made %r" % shadow_field(u.name)[:4])
        p = sys_start(env, sp)
        eq(attempt(p, u.name, old)[1], AUTH_FAIL, "the old password")
        p.ok("USER " + u.name)
        r = p.cmd("PASS " + u.password)
        check(r.startswith("+OK"), "yescrypt user (password with a space): "
              "PASS answered %r" % r)
        eq(parse_stat(p.ok("STAT"))[0], 2, "STAT")
        p.quit()

        p = sys_start(env, sp)
        r = p.cmd("AUTH PLAIN " + plain(u.name, u.password))
        check(r.startswith("+OK"), "AUTH PLAIN of a system user: %r" % r)
        eq(parse_stat(p.ok("STAT"))[0], 2, "STAT after AUTH PLAIN")
        p.quit()


@test
def name_service_modules_stay_out_of_the_session():
    """getpwnam(3) for the pre-login user may load NSS modules
    (libnss_systemd and the libraries it pulls in, some 650 KiB resident):
    that happens in the pre-login process, never in the process that goes
    on to serve the mail."""
    def nss(pid):
        with open("/proc/%d/maps" % pid) as f:
            return sorted({l.split()[-1] for l in f if "libnss_" in l})
    with Accounts() as acc, Env() as env:
        sp = spool(env)
        u = acc.user(method="SHA512")
        put_mbox(os.path.join(sp, u.name), 1, u.uid, u.gid)
        p = sys_start(env, sp)
        p.ok("USER " + u.name)
        child = the_child(p.proc.pid)
        if not nss(child):
            p.quit()
            raise Skip("this machine's nsswitch.conf loads no NSS module "
                       "for passwd lookups")
        eq(nss(p.proc.pid), [], "NSS modules in the parent before PASS")
        r = p.cmd("PASS " + u.password)
        check(r.startswith("+OK"), "PASS: %r" % r)
        eq(nss(p.proc.pid), [], "NSS modules in the session process")
        p.quit()


@test
def crypt_library_stays_out_of_the_session():
    """libcrypt is loaded (dlopen) only in the short-lived credential check
    child: the serving process never hashes, and a libcrypt mapped in it
    would stay resident for the whole session (~80 KiB)."""
    def crypt_maps(pid):
        with open("/proc/%d/maps" % pid) as f:
            return sorted({l.split()[-1] for l in f if "libcrypt" in l})
    with Env() as env:
        env.add_user("alice", "pw-alice")
        env.write_mbox("alice", msgs(1))
        p = env.start()
        eq(crypt_maps(p.proc.pid), [], "libcrypt in the parent before PASS")
        p.login("alice", "pw-alice")
        eq(crypt_maps(p.proc.pid), [], "libcrypt in the session process")
        eq(parse_stat(p.ok("STAT"))[0], 1, "STAT")
        p.quit()


@test
def prelogin_child_jailed_while_waiting_for_pass():
    """While it waits for PASS, the pre-login process runs as the -u user
    (all four uids and gids, that one group, no capabilities) chrooted to
    the -E directory; the parent stays root.  Without -u and -E: user pop3d
    (or nobody) in /var/empty.  After the login the child is gone."""
    with Accounts() as acc, Env() as env:
        sp = spool(env)
        jailer = acc.user(password=None)
        u = acc.user()
        put_mbox(os.path.join(sp, u.name), 1, u.uid, u.gid)
        empty = os.path.join(env.dir, "empty")
        os.mkdir(empty, 0o755)
        p = sys_start(env, sp, ["-E", empty, "-u", jailer.name])
        p.ok("USER " + u.name)
        child = the_child(p.proc.pid)
        st = proc_status(child)
        what = "pre-login process (-u %s, uid %d gid %d)" % (
            jailer.name, jailer.uid, jailer.gid)
        all_ids(st, "Uid", jailer.uid, what)
        all_ids(st, "Gid", jailer.gid, what)
        eq(groups_of(st), [jailer.gid], what + ": Groups")
        no_privileges(st, what)
        eq(root_of(child), os.path.realpath(empty), what + ": root directory")
        eq(ids(proc_status(p.proc.pid), "Uid")[1], 0,
           "the parent's euid before login")
        r = p.cmd("PASS " + u.password)
        check(r.startswith("+OK"), "PASS after the /proc checks: %r" % r)
        eq(children(p.proc.pid), [], "children of the session process")
        p.quit()

        # The defaults: user pop3d if it exists, else nobody; /var/empty.
        try:
            dflt = pwd.getpwnam("pop3d")
        except KeyError:
            dflt = pwd.getpwnam("nobody")
        p = sys_start(env, sp)
        p.ok("USER " + u.name)
        child = the_child(p.proc.pid)
        st = proc_status(child)
        what = "pre-login process with the default -u (%s)" % dflt.pw_name
        all_ids(st, "Uid", dflt.pw_uid, what)
        all_ids(st, "Gid", dflt.pw_gid, what)
        eq(groups_of(st), [dflt.pw_gid], what + ": Groups")
        no_privileges(st, what)
        eq(root_of(child), os.path.realpath("/var/empty"),
           what + ": root directory (default -E)")
        p.ok("QUIT")
        p.expect_eof()


@test
def processes_are_not_dumpable():
    """pop3d makes itself not dumpable at start (PR_SET_DUMPABLE): no
    core file through a core_pattern pipe, which ignores RLIMIT_CORE, of
    a process holding hashes or passwords, and no ptrace or /proc/PID/mem
    by other processes of its uid.  The kernel shows it in the owner of
    /proc/PID's files, root for a process that is not dumpable; so pop3d
    is started as uid 65534 here, where the owner tells."""
    if not IS_ROOT:
        raise Skip("needs root to start pop3d as uid %d" % T.MAIL_UID)
    with Env() as env:
        def as_nobody():
            os.setgroups([])
            os.setgid(T.MAIL_GID)
            os.setuid(T.MAIL_UID)
        p = env.spawn(env.argv(users=False), preexec=as_nobody)
        p.expect_ok("greeting")
        eq(ids(proc_status(p.proc.pid), "Uid")[1], T.MAIL_UID,
           "pop3d's euid")
        eq(os.stat("/proc/%d/environ" % p.proc.pid).st_uid, 0,
           "owner of /proc/PID/environ of pop3d (uid %d): root when not "
           "dumpable" % T.MAIL_UID)
        p.ok("QUIT")
        p.expect_eof()


@test
def session_process_ids_after_login():
    """After the login the session runs in the parent process with the
    mail user's uid and gid everywhere, no capabilities, no group 0; it
    keeps the spool directory's group when that group may write there (and
    only a group other than 0)."""
    with Accounts() as acc, Env() as env:
        sp = spool(env)
        u = acc.user()
        put_mbox(os.path.join(sp, u.name), 3, u.uid, u.gid)
        p = sys_start(env, sp)
        p.login(u.name, u.password)
        st = proc_status(p.proc.pid)
        what = "session process of %s (uid %d gid %d)" % (u.name, u.uid,
                                                           u.gid)
        all_ids(st, "Uid", u.uid, what)
        all_ids(st, "Gid", u.gid, what)
        eq(groups_of(st), [u.gid], what + ": Groups")
        no_privileges(st, what)
        eq(children(p.proc.pid), [], what + ": children")
        eq(parse_stat(p.ok("STAT"))[0], 3, "STAT")
        p.quit()

        # A spool like Debian's /var/mail (group-writable, setgid, group
        # mail): that group is kept, and it alone.
        mailgrp = acc.group()
        sp2 = spool(env, "spool2")
        os.chown(sp2, 0, mailgrp)
        os.chmod(sp2, 0o2775)
        put_mbox(os.path.join(sp2, u.name), 1, u.uid, u.gid)
        p = sys_start(env, sp2)
        p.login(u.name, u.password)
        st = proc_status(p.proc.pid)
        all_ids(st, "Uid", u.uid, what)
        all_ids(st, "Gid", u.gid, what)
        eq(groups_of(st), sorted([u.gid, mailgrp]),
           what + " with a spool of group %d mode 2775: Groups" % mailgrp)
        p.quit()

        # A group-writable spool of group 0: group 0 is never kept.
        sp3 = spool(env, "spool3")
        os.chmod(sp3, 0o775)
        put_mbox(os.path.join(sp3, u.name), 1, u.uid, u.gid)
        p = sys_start(env, sp3)
        p.login(u.name, u.password)
        st = proc_status(p.proc.pid)
        eq(groups_of(st), [u.gid],
           what + " with a spool root:root mode 775: Groups")
        p.quit()


@test
def spool_group_not_taken_through_a_users_own_directory():
    """The spool group is kept only for a directory that root chose: with
    -m %h/Maildir/ a user who points her ~/Maildir (hers to replace) at a
    Maildir of a group she is not in must not get that group, nor read
    that Maildir."""
    with Accounts() as acc, Env() as env:
        home = os.path.join(env.dir, "home")
        os.mkdir(home)
        u = acc.user(home=home)
        os.chown(home, u.uid, u.gid)
        os.chmod(home, 0o755)
        team = acc.group()                  # a group u is not in
        shared = os.path.join(env.dir, "team")
        for d in ("", "/Maildir", "/Maildir/cur", "/Maildir/new",
                  "/Maildir/tmp"):
            os.mkdir(shared + d)
            os.chown(shared + d, 0, team)
            os.chmod(shared + d, 0o2770)
        m = shared + "/Maildir/new/1700000000.1.host"
        with open(m, "wb") as f:
            f.write(message(1, subject=b"team only"))
        os.chown(m, 0, team)
        os.chmod(m, 0o660)
        # What u may do as herself: replace her own ~/Maildir by a link.
        os.symlink(shared + "/Maildir", os.path.join(home, "Maildir"))
        os.lchown(os.path.join(home, "Maildir"), u.uid, u.gid)
        p = env.spawn(env.argv(users=False, template="%h/Maildir/"))
        p.expect_ok("greeting")
        p.ok("USER " + u.name)
        r = p.cmd("PASS " + u.password)
        if r.startswith("+OK"):
            groups = groups_of(proc_status(p.proc.pid))
            fail("%s logged in to the Maildir of group %d through her own "
                 "symlink: %r; session groups %r" % (u.name, team, r, groups))
        p.finish()


@test
def expired_and_inactive_passwords_refused():
    """shadow(5): once a password has expired (-M) and the inactivity
    period after it (-I) has passed, no login is possible, as pam_unix
    has it; within the inactivity period, its last day too, the login
    still works."""
    with Accounts() as acc, Env() as env:
        sp = spool(env)
        u = acc.user()
        put_mbox(os.path.join(sp, u.name), 1, u.uid, u.gid)
        today = int(time.time() // 86400)
        run(["chage", "-d", str(today - 100), "-M", "30", "-I", "10",
             u.name])
        eq(login_answer(env, sp, u.name, u.password), AUTH_FAIL,
           "password changed 100 days ago, -M 30 -I 10 (shadow %r)"
           % shadow_field(u.name, 2))
        run(["chage", "-d", str(today - 35), u.name])
        r = login_answer(env, sp, u.name, u.password)
        check(r.startswith("+OK"), "within the inactivity period: %r" % r)
        # The last day of it (-M + -I days after the change) still logs
        # in: pam_unix refuses only after more days than that.  Checked
        # again when a midnight passed in between.
        for _ in range(2):
            today = int(time.time() // 86400)
            run(["chage", "-d", str(today - 40), u.name])
            r = login_answer(env, sp, u.name, u.password)
            if int(time.time() // 86400) == today:
                break
        check(r.startswith("+OK"), "on the last day of the inactivity "
              "period (shadow %r): %r" % (shadow_field(u.name, 2), r))


@test
def users_file_crlf_and_control_characters():
    """A users file with CRLF line ends (edited on Windows) means what it
    says: the CR belongs to no field, so the maildrop is the one named and
    the APOP secret works.  Another control character in a line makes the
    line malformed (logged with its number), never part of a path."""
    with Env() as env:
        env.write_mbox("alice", msgs(2))
        env.write_mbox("bob", msgs(3))
        h = make_hash("pw1", "sha-512")
        with open(env.users_path, "wb") as f:
            f.write(("alice:%s:%d:%d:%s:sekrit\r\n"
                     % (h, MAIL_UID, MAIL_GID, env.mbox("alice"))).encode())
            f.write(("bob:%s:%d:%d:%s\r\n"
                     % (h, MAIL_UID, MAIL_GID, env.mbox("bob"))).encode())
            f.write(("tab:%s:%d:%d:%s\t\n"
                     % (h, MAIL_UID, MAIL_GID, env.mbox("alice"))).encode())
        os.chmod(env.users_path, 0o600)
        p = env.start()
        p.ok("USER alice")
        r = p.ok("PASS pw1")
        eq(parse_stat(p.ok("STAT"))[0], 2,
           "STAT of alice's maildrop from a CRLF line (PASS said %r)" % r)
        p.quit()
        p = env.start()
        p.ok("USER bob")
        r = p.ok("PASS pw1")
        eq(parse_stat(p.ok("STAT"))[0], 3, "STAT of bob's maildrop, the "
           "last field of a CRLF line (PASS said %r)" % r)
        p.quit()
        p = env.start(extra=["-A"])
        eq(p.cmd("APOP alice " + apop_digest(stamp_of(p.greeting),
                                             "sekrit"))[:3], "+OK",
           "APOP with the secret of a CRLF line")
        p.quit()
        p = env.start()
        eq(attempt(p, "tab", "pw1")[1], AUTH_FAIL, "a line with a TAB")
        p.ok("QUIT")
        p.expect_eof()
        p.wait()
        check("line 3:" in p.stderr(),
              "the line with a TAB is logged: %r" % p.stderr()[-500:])


@test
def not_root_serves_only_its_own_uid():
    """pop3d(8): started as another user, pop3d serves only accounts of its
    own uid; also system users, when it can read the shadow file (a
    service user in group shadow)."""
    with Accounts() as acc, Env() as env:
        try:
            shadow_gid = grp.getgrnam("shadow").gr_gid
        except KeyError:
            raise Skip("no group shadow")
        svc = acc.user()
        other = acc.user()
        box = os.path.join(env.dir, "svcmail")
        os.mkdir(box)
        os.chown(box, svc.uid, svc.gid)
        for x in (svc, other):
            put_mbox(os.path.join(box, x.name), 1, svc.uid, svc.gid)

        def as_svc():
            os.setgroups([shadow_gid])
            os.setgid(svc.gid)
            os.setuid(svc.uid)

        def answer(user, pw):
            p = env.spawn(env.argv(users=False,
                                   template=os.path.join(box, "%u")),
                          preexec=as_svc)
            p.expect_ok("greeting")
            r = attempt(p, user, pw)[1]
            p.finish()
            return r

        r = answer(svc.name, svc.password)
        check(r.startswith("+OK"), "its own uid's account: %r" % r)
        eq(answer(other.name, other.password), AUTH_FAIL,
           "uid %d's account, right password, pop3d running as uid %d"
           % (other.uid, svc.uid))


@test
def users_file_overlong_secret_is_logged():
    """A users-file line whose APOP secret does not fit is malformed:
    logged with its line number, not a silent refusal.  The bounds
    (pop3d.users(5)): an APOP secret of 255 characters works, 256 do not;
    a hash of 511 characters is read (and matches nothing), 512 are too
    long."""
    with Env() as env:
        env.write_mbox("long", msgs(1))
        env.write_users([env.user_line("long", "pw", method="sha-512") +
                         ":" + env.mbox("long") + ":" + "s" * 300])
        p = env.start()
        eq(attempt(p, "long", "pw")[1], AUTH_FAIL, "PASS")
        p.ok("QUIT")
        p.expect_eof()
        p.wait()
        check("line 1:" in p.stderr(),
              "the line is logged: %r" % p.stderr()[-500:])
        line = env.user_line("long", "pw", method="sha-512") + ":" + \
            env.mbox("long") + ":"
        for n in (255, 256):
            env.write_users([line + "s" * n])
            p = env.start(extra=["-A"])
            r = p.cmd("APOP long " + apop_digest(stamp_of(p.greeting),
                                                 "s" * n))
            if n == 255:
                check(r.startswith("+OK"), "APOP with a secret of 255: %r"
                      % r)
            else:
                eq(r, AUTH_FAIL, "APOP with a secret of 256")
            p.ok("QUIT")
            p.expect_eof()
            p.wait()
            eq("too long" in p.stderr(), n == 256, "secret of %d logged "
               "as too long: %r" % (n, p.stderr()[-300:]))
        for n in (511, 512):
            env.write_users(["long:$6$" + "h" * (n - 3) + ":%d:%d:%s"
                             % (MAIL_UID, MAIL_GID, env.mbox("long"))])
            p = env.start()
            eq(attempt(p, "long", "pw")[1], AUTH_FAIL, "PASS, hash of %d" % n)
            p.ok("QUIT")
            p.expect_eof()
            p.wait()
            eq("too long" in p.stderr(), n == 512, "hash of %d logged as "
               "too long: %r" % (n, p.stderr()[-300:]))


@test
def virtual_users_own_ids_and_maildrop():
    """A users-file line's uid, gid and maildrop are the session's, even
    for ids that no system user has; with -f, system users cannot log in."""
    need_root()
    with Accounts() as acc, Env() as env:
        vuid = free_id(20000, 60000)
        vgid = free_id(20000, 60000)
        while vgid == vuid:
            vgid = free_id(20000, 60000)
        box = os.path.join(env.dir, "vbox")
        os.mkdir(box, 0o755)
        os.chown(box, vuid, vgid)
        drop = os.path.join(box, "inbox")
        put_mbox(drop, 4, vuid, vgid)
        put_mbox(env.mbox("virt"), 1, vuid, vgid)      # the template's
        pw = rand_pw()
        env.add_user("virt", pw, uid=vuid, gid=vgid, maildrop=drop)
        p = env.session("virt", pw)
        st = proc_status(p.proc.pid)
        what = "session of virtual user virt (uid %d gid %d)" % (vuid, vgid)
        all_ids(st, "Uid", vuid, what)
        all_ids(st, "Gid", vgid, what)
        eq(groups_of(st), [vgid], what + ": Groups")
        no_privileges(st, what)
        eq(parse_stat(p.ok("STAT"))[0], 4, "STAT (the line's maildrop)")
        p.quit()

        u = acc.user()
        put_mbox(env.mbox(u.name), 1, u.uid, u.gid)
        p = env.start()
        eq(attempt(p, u.name, u.password)[1], AUTH_FAIL,
           "a system user's login with -f")
        p.ok("QUIT")


@test
def root_and_uid_0_accounts_refused():
    """root, and another account of uid 0 whose password is right, are
    refused by USER/PASS and AUTH PLAIN with the answer a wrong password
    gets."""
    with Accounts() as acc, Env() as env:
        sp = spool(env)
        ok = acc.user()
        zero = acc.user(uid=0, gid=acc.group(), dup=True)
        for n in ("root", zero.name):
            with open(os.path.join(sp, n), "wb") as f:
                f.write(mbox_bytes(msgs(1)))
        p = sys_start(env, sp, a=100)
        wrong = attempt(p, ok.name, "wrong")
        eq(wrong, ("+OK send PASS", AUTH_FAIL), "wrong password")
        eq(attempt(p, "root", rand_pw()), wrong, "root (random password)")
        eq(attempt(p, zero.name, zero.password), wrong,
           "uid 0 account %s with its right password" % zero.name)
        eq(p.cmd("AUTH PLAIN " + plain(zero.name, zero.password)), AUTH_FAIL,
           "uid 0 account by AUTH PLAIN")
        p.err("STAT")
        p.ok("QUIT")
        p.expect_eof()


@test
def min_uid_flag_U():
    """-U: a system user below the lowest uid (default 1000) is refused with
    the right password; at exactly -U it logs in and the session has that
    uid; with -U one above it is refused again."""
    with Accounts() as acc, Env() as env:
        sp = spool(env)
        low = acc.user(uid=free_id(900, 990))
        put_mbox(os.path.join(sp, low.name), 1, low.uid, low.gid)
        eq(login_answer(env, sp, low.name, low.password), AUTH_FAIL,
           "uid %d with the default -U 1000" % low.uid)
        eq(login_answer(env, sp, low.name, low.password,
                        ["-U", str(low.uid + 1)]), AUTH_FAIL,
           "uid %d with -U %d" % (low.uid, low.uid + 1))
        p = sys_start(env, sp, ["-U", str(low.uid)])
        p.login(low.name, low.password)
        all_ids(proc_status(p.proc.pid), "Uid", low.uid,
                "session with -U %d" % low.uid)
        p.quit()


@test
def locked_accounts_refused():
    """Accounts without a usable hash are refused whatever is sent:
    useradd's "!", usermod -L, "*", an empty password field; usermod -U
    unlocks."""
    with Accounts() as acc, Env() as env:
        sp = spool(env)
        fresh = acc.user(password=None)
        u = acc.user()
        for x in (fresh, u):
            put_mbox(os.path.join(sp, x.name), 1, x.uid, x.gid)

        def refused(user, pw, what):
            p = sys_start(env, sp, a=100)
            eq(attempt(p, user, pw)[1], AUTH_FAIL, what + " by PASS")
            eq(p.cmd("AUTH PLAIN " + plain(user, pw)), AUTH_FAIL,
               what + " by AUTH PLAIN")
            p.ok("QUIT")

        for pw in ("!", "x", "*"):
            refused(fresh.name, pw, "never-set password (%r), tried %r"
                    % (shadow_field(fresh.name)[:1], pw))
        run(["usermod", "-L", u.name])
        check(shadow_field(u.name).startswith("!"), "usermod -L")
        refused(u.name, u.password, "usermod -L, right password")
        refused(u.name, "!" + u.password, "usermod -L, '!' + password")
        run(["usermod", "-U", u.name])
        r = login_answer(env, sp, u.name, u.password)
        check(r.startswith("+OK"), "after usermod -U: %r" % r)
        run(["usermod", "-p", "*", u.name])
        refused(u.name, "*", "password field '*'")
        refused(u.name, u.password, "password field '*', old password")
        run(["passwd", "-d", u.name])
        eq(shadow_field(u.name), "", "passwd -d")
        refused(u.name, "x", "empty password field")
        p = sys_start(env, sp)
        eq(p.cmd("AUTH PLAIN " + b64("\0%s\0" % u.name)), AUTH_FAIL,
           "empty password field, empty password by AUTH PLAIN")
        p.ok("QUIT")


@test
def expired_accounts_refused():
    """An account whose expiry date has come is refused with the right
    password: chage -E yesterday, today, chage -E 0 (PAM's "expired"),
    usermod -e 1;
    a date in the future and no date log in."""
    with Accounts() as acc, Env() as env:
        sp = spool(env)
        u = acc.user()
        put_mbox(os.path.join(sp, u.name), 1, u.uid, u.gid)
        today = int(time.time() // 86400)
        problems = []
        for argv, what in [(["chage", "-E", str(today - 1)], "expired "
                            "yesterday (chage -E %d)" % (today - 1)),
                           # The day itself counts (pam_unix: expired
                           # once today >= the date); still so after a
                           # midnight during the check.
                           (["chage", "-E", str(today)], "expires today "
                            "(chage -E %d)" % today),
                           (["chage", "-E", "0"], "chage -E 0"),
                           (["usermod", "-e", "1"], "usermod -e 1")]:
            run(argv + [u.name])
            r = login_answer(env, sp, u.name, u.password)
            if r != AUTH_FAIL:
                problems.append("%s (shadow expire field %r): PASS with the "
                                "right password answered %r, expected %r"
                                % (what, shadow_field(u.name, 7), r,
                                   AUTH_FAIL))
        for argv, what in [(["chage", "-E", str(today + 2)], "expires in "
                            "two days"), (["chage", "-E", "-1"],
                                          "no expiry (chage -E -1)")]:
            run(argv + [u.name])
            r = login_answer(env, sp, u.name, u.password)
            if not r.startswith("+OK"):
                problems.append("%s: PASS answered %r" % (what, r))
        if problems:
            fail("; ".join(problems))


@test
def refusals_are_indistinguishable():
    """USER says the same for every name, and a refusal says the same
    whatever the reason: unknown user, wrong password, root, uid below -U,
    locked, expired, no password set; by PASS, AUTH PLAIN and APOP."""
    with Accounts() as acc, Env() as env:
        sp = spool(env)
        good = acc.user()
        locked = acc.user()
        run(["usermod", "-L", locked.name])
        expired = acc.user()
        run(["chage", "-E", str(int(time.time() // 86400) - 1),
             expired.name])
        low = acc.user(uid=free_id(900, 990))
        nopw = acc.user(password=None)
        cases = [(good.name, "wrong", "wrong password"),
                 ("pop3dt_nosuch" + secrets.token_hex(3), "x", "unknown"),
                 ("root", "x", "root"),
                 (locked.name, locked.password, "locked"),
                 (expired.name, expired.password, "expired"),
                 (low.name, low.password, "uid %d" % low.uid),
                 (nopw.name, "!", "no password set")]
        p = sys_start(env, sp, ["-A"], a=100)
        stamp = stamp_of(p.greeting)
        answers = {}
        for name, pw, what in cases:
            answers[what] = (p.cmd("USER " + name), p.cmd("PASS " + pw),
                             p.cmd("AUTH PLAIN " + plain(name, pw)),
                             p.cmd("APOP %s %s"
                                   % (name, apop_digest(stamp, pw))))
        want = ("+OK send PASS", AUTH_FAIL, AUTH_FAIL, AUTH_FAIL)
        for what, a in answers.items():
            eq(a, want, "USER, PASS, AUTH PLAIN, APOP answers for the "
               "%s case" % what)
        p.ok("QUIT")


def timing(p, user, users, rounds=9):
    """Median seconds of a wrong-password answer for user and of an
    unknown-user answer, interleaved."""
    t = {"wrong": [], "unknown": []}
    for i in range(rounds):
        for kind, name in (("wrong", user), ("unknown", users[i])):
            p.ok("USER " + name)
            t0 = time.monotonic()
            r = p.cmd("PASS wrong-%d" % i)
            t[kind].append(time.monotonic() - t0)
            eq(r, AUTH_FAIL, "PASS for %s" % name)
    return statistics.median(t["wrong"]), statistics.median(t["unknown"])


@test
def unknown_user_costs_a_wrong_password():
    """An unknown user costs the same work as a wrong password: in a users
    file of one hash method (sha512crypt, yescrypt) the medians of the
    answer times with -D 0 are within 2x or 10 ms; where methods mix (a
    users file, or the machine's shadow file), the -D delay runs to a
    deadline and both answers come at the same moment."""
    problems = []
    unknown = ["nosuch%d" % i for i in range(20)]
    # One hash method a database: the dummy hash must cost what a real one
    # does, even with no delay at all.
    for name, kind in (("sha", "sha-512"), ("yes", "yescrypt")):
        with Env() as env:
            env.add_user("other", "pw2", method=kind)
            env.add_user(name, "pw", method=kind)
            p = env.start(a=100)
            w, u = timing(p, name, unknown)
            p.ok("QUIT")
            print("# users file, %s: wrong password %.1f ms, unknown user "
                  "%.1f ms" % (kind, w * 1e3, u * 1e3))
            # Within 2x or 10 ms: a mismatched dummy (yescrypt against
            # sha512crypt) differs by ~35 ms; scheduling noise by a few.
            if abs(w - u) > max(2 * min(w, u), 0.010):
                problems.append("users file, %s user: a wrong password is "
                                "answered in %.1f ms, an unknown user in "
                                "%.1f ms" % (kind, w * 1e3, u * 1e3))
    # Mixed methods cannot all be matched by one dummy: the failure delay
    # runs to a deadline from the command's arrival, so with -D 1 every
    # failure is answered at the same moment.
    with Env() as env:
        env.add_user("sha", "pw", method="sha-512")
        env.add_user("yes", "pw", method="yescrypt")
        for name in ("sha", "yes"):
            p = env.start(a=100, D=1)
            w, u = timing(p, name, unknown, rounds=3)
            p.ok("QUIT")
            print("# mixed users file, -D 1, %s: wrong password %.3f s, "
                  "unknown user %.3f s" % (name, w, u))
            if abs(w - u) > 0.2 * min(w, u):
                problems.append("mixed users file with -D 1, user %s: a wrong "
                                "password is answered in %.3f s, an unknown "
                                "user in %.3f s" % (name, w, u))
    if IS_ROOT:
        with Accounts() as acc, Env() as env:
            sp = spool(env)
            # The shadow file is the machine's: it may mix methods, so
            # here the -D deadline is what must hide the difference.
            for method in ("SHA512", "YESCRYPT"):
                x = acc.user(method=method)
                p = sys_start(env, sp, a=100, D=1)
                w, u = timing(p, x.name, unknown, rounds=3)
                p.ok("QUIT")
                print("# system user, %s, -D 1: wrong password %.3f s, "
                      "unknown user %.3f s" % (method, w, u))
                if abs(w - u) > 0.2 * min(w, u):
                    problems.append("system user, %s hash: a wrong password "
                                    "is answered in %.1f ms, an unknown user "
                                    "in %.1f ms" % (method, w * 1e3, u * 1e3))
    if problems:
        fail("the answer's timing tells whether a user exists (the dummy "
             "hash costs other work than the user's hash): "
             + "; ".join(problems))


@test
def unreadable_shadow_is_sys_temp():
    """When the shadow file cannot be read (pop3d started as nobody, not
    root, without -f), PASS and AUTH PLAIN answer -ERR [SYS/TEMP], which is
    no failure: with -a 1 the connection stays open."""
    with Accounts() as acc, Env() as env:
        sp = spool(env)
        u = acc.user()

        p = env.spawn(sys_args(env, sp, a=1), preexec=as_nobody)
        p.expect_ok("greeting")
        p.ok("USER " + u.name)
        r = p.cmd("PASS " + u.password)
        check(r.startswith("-ERR [SYS/TEMP]"),
              "PASS while /etc/shadow is unreadable: %r; log:\n%s"
              % (r, p.stderr()[-600:]))
        r = p.cmd("AUTH PLAIN " + plain(u.name, u.password))
        check(r.startswith("-ERR [SYS/TEMP]"),
              "AUTH PLAIN while /etc/shadow is unreadable: %r" % r)
        p.ok("QUIT")
        p.expect_eof()


def as_nobody():
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


@test
def quit_before_login_ends_the_session():
    """QUIT in AUTHORIZATION ends everything: after "+OK bye" the client
    gets nothing more, the exit status is 0, and no login is logged.  The
    connection is a socket here (as under inetd), so that anything the
    parent would write after the pre-login process is gone reaches the
    client.  As root, and (in the same way) as an unprivileged user."""
    with Env() as env:
        env.add_user("alice", "pw")
        env.write_mbox("alice", msgs(1))
        modes = [("as root" if IS_ROOT else "unprivileged", None)]
        if IS_ROOT:
            modes.append(("as nobody", as_nobody))
        for what, pre in modes:
            a, b = socket.socketpair()
            errpath = os.path.join(env.dir, "quit-%d.log" % len(env.procs))
            with open(errpath, "wb") as err:
                proc = subprocess.Popen(
                    ([T.BIN] if not T.VALGRIND else T.VALGRIND_CMD + [T.BIN]) +
                    env.argv(), stdin=b, stdout=b, stderr=err,
                    preexec_fn=pre)
            b.close()
            out = b""
            try:
                a.settimeout(10 * SLOW)
                while b"\n" not in out:
                    chunk = a.recv(4096)
                    if not chunk:
                        break
                    out += chunk
                check(out.startswith(b"+OK"), "%s: greeting %r" % (what, out))
                a.sendall(b"QUIT\r\n")
                rest = b""
                deadline = time.monotonic() + 10 * SLOW
                while time.monotonic() < deadline:
                    a.settimeout(max(0.01, deadline - time.monotonic()))
                    try:
                        chunk = a.recv(4096)
                    except socket.timeout:
                        break
                    if not chunk:
                        break
                    rest += chunk
                    if b"\n" in rest:
                        # let a second line arrive if there is one
                        deadline = min(deadline, time.monotonic() + 1)
            finally:
                a.close()
                try:
                    rc = proc.wait(10 * SLOW)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rc = proc.wait()
            with open(errpath, "rb") as f:
                log = f.read().decode("latin-1")
            eq(rest, b"+OK bye\r\n", "%s: everything after QUIT (before "
               "login); log:\n%s" % (what, log))
            eq(rc, 0, "%s: exit status after QUIT before login" % what)
            for s in ("user=", "refusing to serve"):
                check(s not in log, "%s: the log shows the session going on "
                      "after QUIT before login (%r):\n%s" % (what, s, log))


# ============================================================ users file

@test
def unreadable_users_file_is_sys_temp():
    """-f naming a missing file, or one that cannot be read, makes PASS,
    APOP and AUTH PLAIN answer -ERR [SYS/TEMP]; that is not counted as a
    failure (with -a 1 the connection stays open)."""
    with Env() as env:
        env.add_user("alice", "pw")
        bad = [("missing", os.path.join(env.dir, "no-such-file")),
               ("a directory", env.maildir)]
        if not IS_ROOT:
            unreadable = os.path.join(env.dir, "unreadable")
            with open(unreadable, "w") as f:
                f.write(env.user_lines[0] + "\n")
            os.chmod(unreadable, 0)
            bad.append(("mode 000", unreadable))
        for what, path in bad:
            args = env.argv(a=1, extra=["-A"])
            args[args.index("-f") + 1] = path
            p = env.spawn(args)
            stamp = stamp_of(p.expect_ok("greeting (-f %s)" % what))
            p.ok("USER alice")
            for c in ("PASS pw", "AUTH PLAIN " + plain("alice", "pw"),
                      "APOP alice " + apop_digest(stamp, "pw")):
                r = p.cmd(c)
                check(r.startswith("-ERR [SYS/TEMP]"),
                      "-f %s: %s answered %r" % (what, c.split()[0], r))
            p.ok("QUIT")
            p.expect_eof()


@test
def users_file_that_is_a_fifo_is_sys_temp():
    """-f naming a FIFO: each login is -ERR [SYS/TEMP] and the session goes
    on.  The credential check's open used to wait for a writer for good,
    and with it the whole session, QUIT included, past any timeout."""
    with Env() as env:
        env.add_user("alice", "pw")
        fifo = os.path.join(env.dir, "users.fifo")
        os.mkfifo(fifo, 0o600)
        args = env.argv(a=1)
        args[args.index("-f") + 1] = fifo
        p = env.spawn(args)
        try:
            p.expect_ok("greeting")
            p.ok("USER alice")
            r = p.cmd("PASS pw")
            check(r.startswith("-ERR [SYS/TEMP]"), "PASS answered %r" % r)
            p.ok("QUIT")
            p.expect_eof()
            eq(p.wait(), 0, "exit status")
            check("not a regular file" in p.stderr(), "not logged: %r"
                  % p.stderr()[-300:])
        finally:
            # A reader still blocked in open (the bug) is let go.
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass


# ================================================================== APOP

def apop_env(secret="tanstaaf", password="pw"):
    env = Env()
    env.user_lines.append(env.user_line("alice", password, maildrop="") +
                          ":" + secret)
    env.user_lines.append(env.user_line("nosecret", password))
    env.write_users()
    env.write_mbox("alice", msgs(2))
    env.write_mbox("nosecret", msgs(1))
    return env


@test
def apop_login_with_shared_secret():
    """-A: the greeting ends in a <...@host> timestamp, with -n's host; the
    MD5 of timestamp and secret logs in; the user can still use PASS."""
    secret = rand_pw("apop")
    with apop_env(secret) as env:
        p = env.start(extra=["-A"], n="apop.example")
        stamp = stamp_of(p.greeting)
        check(stamp.endswith("@apop.example>"),
              "timestamp %r does not name -n's host" % stamp)
        r = p.cmd("APOP alice " + apop_digest(stamp, secret))
        check(r.startswith("+OK"), "APOP with the right digest: %r" % r)
        eq(parse_stat(p.ok("STAT"))[0], 2, "STAT after APOP")
        p.quit()
        p = env.start(extra=["-A"])
        p.login("alice", "pw")
        p.quit()


@test
def apop_timestamps_differ():
    """Every greeting carries a fresh timestamp."""
    with apop_env() as env:
        stamps = []
        for i in range(8):
            p = env.start(extra=["-A"])
            stamps.append(stamp_of(p.greeting))
            p.ok("QUIT")
        eq(len(set(stamps)), len(stamps), "distinct timestamps among %r"
           % stamps)
        for s in stamps:
            check(len(s) <= 100 and re.match(r"^<[\x21-\x7e]+>$", s),
                  "timestamp %r is not a msg-id of printable characters" % s)


# RFC 822 §6.1 and §3.3, the grammar of a msg-id, as strictly as
# fetchmail's rfc822_valid_msgid() checks an APOP timestamp.
ATOM = r"[!#$%&'*+\-/0-9=?A-Z^_`a-z{|}~]+"
WORD = r'(?:%s|"(?:[^"\\\r\x80-\xff]|\\[\x00-\x7f])*")' % ATOM
SUBDOMAIN = r"(?:%s|\[(?:[^\[\]\\\r\x80-\xff]|\\[\x00-\x7f])*\])" % ATOM
MSG_ID_RE = re.compile(r"^<%s(?:\.%s)*@%s(?:\.%s)*>$"
                       % (WORD, WORD, SUBDOMAIN, SUBDOMAIN))


def libc_unshare_uts():
    """preexec: a UTS namespace of the child's own (root only), so that
    it can be given a host name of its own."""
    import ctypes
    if ctypes.CDLL(None, use_errno=True).unshare(0x04000000) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUTS)")


@test
def apop_timestamp_is_a_msg_id():
    """RFC 1939 §7: the timestamp is a msg-id (RFC 822), which strict
    clients check: fetchmail refuses APOP ("Invalid APOP timestamp") after
    <...@mail.example.org.>.  -n takes only names that keep it one, and a
    system host name that would not is replaced by "localhost"."""
    with apop_env() as env:
        for name in ["mail.example.org.", ".example.org", "a..b", "pop@host",
                     "pop,example", "pop:110", "pop(x)", 'po"p', "po\\p",
                     "[192.0.2.1", "[a]b", "a.[192.0.2.1]", "[a<b]"]:
            q = env.spawn(env.argv(n=name, extra=["-A"]))
            out = q.expect_eof()
            eq(q.wait(), EXIT_USAGE, "exit status with -n %r" % name)
            check(not out.startswith(b"+OK"), "greeting with -n %r" % name)
        for name in ["pop.example.net", "pop-1_x.example", "localhost",
                     "192.0.2.1", "[192.0.2.1]", "[IPv6:2001:db8::1]",
                     "h" * 192 + ".example"]:
            p = env.start(n=name, extra=["-A"])
            stamp = stamp_of(p.greeting)
            check(MSG_ID_RE.match(stamp), "-n %r: timestamp %r is no msg-id"
                  % (name, stamp))
            check(stamp.endswith("@%s>" % name), "-n %r: %r" % (name, stamp))
            p.ok("APOP alice " + apop_digest(stamp, "tanstaaf"))
            p.quit()
        if not IS_ROOT:
            raise Skip("a host name of its own needs root (unshare)")
        args = env.argv(extra=["-A"])
        i = args.index("-n")
        del args[i:i + 2]
        for host, want in [("mail.example.org.", "localhost"),
                           ("pop.example.org", "pop.example.org")]:
            def preexec(host=host):
                libc_unshare_uts()
                socket.sethostname(host)
            p = env.spawn(args, preexec=preexec)
            g = p.expect_ok("greeting")
            check(g.startswith("+OK %s " % want), "host name %r: greeting %r"
                  % (host, g))
            check(MSG_ID_RE.match(stamp_of(g)), "host name %r: timestamp "
                  "%r is no msg-id" % (host, stamp_of(g)))
            p.ok("QUIT")
            p.wait()
            if want != host:
                check("is no domain for the greeting" in p.stderr(),
                      "host name %r replaced without a log line: %r"
                      % (host, p.stderr()[-400:]))


@test
def apop_refusals():
    """APOP refuses: a wrong digest, the digest of the password, a user with
    no secret (digest of an empty secret or of the password), an unknown
    user, a digest made for another greeting (replay): all with the PASS
    failure's answer.  A digest not of 32 lowercase hex digits and missing
    arguments are refused as malformed."""
    secret = rand_pw("apop")
    with apop_env(secret) as env:
        p = env.start(extra=["-A"])
        old = stamp_of(p.greeting)
        p.ok("QUIT")
        p = env.start(extra=["-A"], a=100)
        stamp = stamp_of(p.greeting)
        for user, digest, what in [
                ("alice", apop_digest(stamp, secret + "x"), "wrong secret"),
                ("alice", "0" * 32, "zero digest"),
                ("alice", apop_digest(stamp, "pw"), "digest of the password"),
                ("alice", apop_digest(old, secret),
                 "digest for an earlier greeting"),
                ("nosecret", apop_digest(stamp, ""),
                 "user without a secret, empty secret"),
                ("nosecret", apop_digest(stamp, "pw"),
                 "user without a secret, the password"),
                ("nosuchuser", apop_digest(stamp, secret), "unknown user")]:
            eq(p.cmd("APOP %s %s" % (user, digest)), AUTH_FAIL, what)
        # The right digest with one digit changed: every digit counts,
        # the last one too.
        right = apop_digest(stamp, secret)
        for i in (0, 15, 31):
            digest = right[:i] + ("1" if right[i] == "0" else "0") + \
                right[i + 1:]
            eq(p.cmd("APOP alice " + digest), AUTH_FAIL,
               "the right digest but for digit %d" % (i + 1))
        # Malformed, not a failed login: no [AUTH] (RFC 3206 §4 is for
        # credentials that were checked).  A non-hex character right after
        # 32 good digits is malformed too, not a digest to check.
        for c in ["APOP alice " + apop_digest(stamp, secret).upper(),
                  "APOP alice " + apop_digest(stamp, secret)[:31],
                  "APOP alice " + apop_digest(stamp, secret) + "0",
                  "APOP alice " + apop_digest(stamp, secret) + "g",
                  "APOP alice " + apop_digest(stamp, secret) + "-",
                  "APOP alice", "APOP",
                  "APOP alice %s x" % apop_digest(stamp, secret)]:
            r = p.err(c)
            check(not r.startswith("+OK"), "%s: %r" % (c, r))
            check(not r.startswith("-ERR [AUTH]"),
                  "%s: malformed, answered as a failed login: %r" % (c, r))
        p.err("STAT")
        r = p.cmd("APOP alice " + apop_digest(stamp, secret))
        check(r.startswith("+OK"), "the right digest after the refusals: %r"
              % r)
        p.quit()


@test
def apop_not_offered_without_A():
    """Without -A the greeting has no timestamp and APOP is refused even for
    a user with a secret; that is no failed login (-a 1 stays open)."""
    with apop_env("sec") as env:
        p = env.start(a=1)
        check("<" not in p.greeting, "greeting without -A: %r" % p.greeting)
        p.err("APOP alice " + apop_digest("<1.2@test.example>", "sec"))
        p.err("STAT")
        p.login("alice", "pw")
        p.quit()


@test
def apop_locked_users_file_entry_refused():
    """A users-file entry locked with "!" (or "*") before its hash refuses
    every method, APOP included, though the line still holds a secret."""
    h = make_hash("pw")
    with Env() as env:
        env.write_users([
            "lockd:!%s:%d:%d::sec1" % (h, MAIL_UID, MAIL_GID),
            "starred:*:%d:%d::sec2" % (MAIL_UID, MAIL_GID),
            "control:%s:%d:%d::sec3" % (h, MAIL_UID, MAIL_GID)])
        for n in ("lockd", "starred", "control"):
            env.write_mbox(n, msgs(1))
        problems = []
        for user, secret, field in (("lockd", "sec1", "!" + h[:3] + "..."),
                                    ("starred", "sec2", "*")):
            p = env.start(extra=["-A"])
            r = p.cmd("APOP %s %s" % (user, apop_digest(stamp_of(p.greeting),
                                                        secret)))
            if r != AUTH_FAIL:
                problems.append("APOP of %s (hash field %r) with the right "
                                "secret answered %r, expected %r"
                                % (user, field, r, AUTH_FAIL))
            p.finish()
        check(not problems, "; ".join(problems))
        p = env.start(extra=["-A"])
        r = p.cmd("APOP control " + apop_digest(stamp_of(p.greeting), "sec3"))
        check(r.startswith("+OK"), "control user: %r" % r)
        p.quit()


@test
def apop_system_user_refused():
    """System users have no shared secret: APOP with -A and without -f
    fails however the digest was made."""
    with Accounts() as acc, Env() as env:
        sp = spool(env)
        u = acc.user()
        put_mbox(os.path.join(sp, u.name), 1, u.uid, u.gid)
        p = sys_start(env, sp, ["-A"], a=100)
        stamp = stamp_of(p.greeting)
        for d in (apop_digest(stamp, u.password), apop_digest(stamp, ""),
                  apop_digest(stamp, shadow_field(u.name))):
            eq(p.cmd("APOP %s %s" % (u.name, d)), AUTH_FAIL,
               "APOP of a system user")
        p.login(u.name, u.password)
        p.quit()


# ============================================================ AUTH PLAIN

@test
def capa_lists_sasl_plain_in_both_states():
    # RFC 2449 §5: "Capabilities available in the AUTHORIZATION state MUST
    # be announced in both states."  AUTH itself is refused after login.
    with Env() as env:
        env.add_user("alice", "pw")
        env.write_mbox("alice", msgs(1))
        p = env.start()
        caps = p.ok_multi("CAPA")
        check("SASL PLAIN" in caps, "CAPA before login: %r" % caps)
        p.login("alice", "pw")
        caps = p.ok_multi("CAPA")
        eq([c for c in caps if c.upper().startswith("SASL")],
           ["SASL PLAIN"], "CAPA after login")
        p.err("AUTH PLAIN")
        p.quit()


@test
def auth_plain_logins():
    """AUTH PLAIN with an initial response, without one (empty challenge
    "+ ", then the response), with authzid equal to authcid, with a
    lower-case mechanism, and a 255-octet password (longer than a command
    line allows) through the challenge; that password with one more octet
    is refused."""
    long_pw = ("L0ng pw " * 40)[:255]
    with Env() as env:
        env.add_user("alice", "pw with spaces")
        env.add_user("longpw", long_pw)
        env.write_mbox("alice", msgs(2))
        env.write_mbox("longpw", msgs(1))

        def logged_in(p, what, n=2):
            eq(parse_stat(p.ok("STAT"))[0], n, "STAT after " + what)
            p.quit()

        p = env.start()
        r = p.cmd("AUTH PLAIN " + plain("alice", "pw with spaces"))
        check(r.startswith("+OK"), "initial response: %r" % r)
        logged_in(p, "initial response")

        p = env.start()
        eq(p.cmd("AUTH PLAIN"), "+ ", "the empty challenge")
        r = p.cmd(plain("alice", "pw with spaces"))
        check(r.startswith("+OK"), "response after the challenge: %r" % r)
        logged_in(p, "challenge")

        p = env.start()
        r = p.cmd("AUTH PLAIN " + plain("alice", "pw with spaces", "alice"))
        check(r.startswith("+OK"), "authzid = authcid: %r" % r)
        logged_in(p, "authzid = authcid")

        p = env.start()
        r = p.cmd("auth plain " + plain("alice", "pw with spaces"))
        check(r.startswith("+OK"), "lower-case AUTH PLAIN: %r" % r)
        logged_in(p, "lower-case auth plain")

        p = env.start()
        eq(p.cmd("AUTH PLAIN"), "+ ", "the empty challenge")
        resp = plain("longpw", long_pw)
        check(len(resp) > 255, "test setup: response of %d octets"
              % len(resp))
        r = p.cmd(resp)
        check(r.startswith("+OK"), "255-octet password through the "
              "challenge: %r" % r)
        logged_in(p, "255-octet password", 1)

        # One octet more is another, wrong, password: never cut down to
        # the 255 octets a record holds, which would be the right one.
        p = env.start()
        eq(p.cmd("AUTH PLAIN"), "+ ", "the empty challenge")
        eq(p.cmd(plain("longpw", long_pw + "x")), AUTH_FAIL,
           "the 255-octet password and one octet more")
        p.ok("QUIT")


@test
def auth_plain_refusals():
    """AUTH PLAIN refuses with [AUTH], as a wrong PASS: a wrong password, an
    unknown user, authzid other than authcid, an empty response ("=" as
    initial response, an empty line after the challenge), no NULs, three
    NULs, an empty authcid, a 256-octet password, an authcid that is no
    user name (logged as that, not as an authzid mismatch).  "*" after the
    challenge cancels (no failure: -a 1 stays open); bad base64 ("=" after
    the challenge too, RFC 5034 §4), an unknown mechanism (one that only
    starts with PLAIN too), a space with no initial response, a second word
    after the response and an over-long response are refused and the
    session goes on.  Idle at the challenge is the autologout."""
    with Env() as env:
        env.add_user("alice", "pw")
        env.add_user("bob", "bobpw")
        env.write_mbox("alice", msgs(2))
        p = env.start(a=100)
        for resp, what in [
                (plain("alice", "wrong"), "wrong password"),
                (plain("nosuchuser", "pw"), "unknown user"),
                (plain("alice", "pw", "bob"), "authzid bob, authcid alice"),
                (plain("bob", "bobpw", "alice"),
                 "authzid alice, authcid bob, bob's password"),
                ("=", "'=' (empty response)"),
                (b64("alicepw"), "no NUL"),
                (b64("alice\0pw"), "one NUL"),
                (b64("\0alice\0pw\0"), "three NULs"),
                (b64("\0\0pw"), "empty authcid"),
                (plain("alice", "p" * 256), "256-octet password"),
                (plain("al ice", "pw"), "authcid with a space")]:
            if len("AUTH PLAIN " + resp) + 2 <= 255:
                eq(p.cmd("AUTH PLAIN " + resp), AUTH_FAIL,
                   "initial response, " + what)
            eq(p.cmd("AUTH PLAIN"), "+ ", "challenge")
            eq(p.cmd("" if resp == "=" else resp), AUTH_FAIL,
               "after the challenge, " + what)
        p.ok("QUIT")
        p.wait()
        log = p.stderr()
        check('user=- method=AUTH-PLAIN reason="invalid user name"' in log,
              "an authcid with a space not logged as an invalid name: %r"
              % log[-600:])
        eq(log.count("authorization identity differs"), 4,
           "authzid mismatches logged")

        p = env.start(a=1)
        eq(p.cmd("AUTH PLAIN"), "+ ", "challenge")
        r = p.err("*")
        check("[AUTH]" not in r, "'*' cancels, it is no failed login: %r" % r)
        for c in ["AUTH PLAIN !!!!", "AUTH PLAIN " + plain("alice", "pw")[:-1],
                  "AUTH PLAIN " + plain("alice", "pw") + " extra",
                  "AUTH PLAIN " + plain("alice", "pw") + "=",
                  # Padding only in the last two places of a quantum.
                  "AUTH PLAIN " + plain("alice", "pw") + "A===",
                  "AUTH LOGIN", "AUTH CRAM-MD5 " + b64("x"), "AUTH",
                  # A mechanism that only starts with PLAIN is another.
                  "AUTH PLAINX " + plain("alice", "pw"), "AUTH PLAIN-X",
                  # A space and no initial response: not "=" (empty).
                  "AUTH PLAIN "]:
            r = p.err(c)
            check("[AUTH]" not in r,
                  "%s answered as a failed login: %r" % (short(c, 40), r))
        eq(p.cmd("AUTH PLAIN"), "+ ", "challenge")
        p.err("a=b=")                     # bad base64 after the challenge
        eq(p.cmd("AUTH PLAIN"), "+ ", "challenge")
        r = p.err("=")                    # only an initial response may be
        check("[AUTH]" not in r, "'=' after the challenge: %r" % r)
        eq(p.cmd("AUTH PLAIN"), "+ ", "challenge")
        r = p.err("QUFB" * 300)           # 1200 octets: over the SASL bound
        eq(p.cmd("NOOP"), "-ERR NOOP not valid in this state",
           "the next command after an over-long SASL response")
        p.err("STAT")
        r = p.cmd("AUTH PLAIN " + plain("alice", "pw"))
        check(r.startswith("+OK"), "login after cancel and malformed "
              "responses with -a 1: %r" % r)
        p.quit()

        p = env.start(t=1)
        eq(p.cmd("AUTH PLAIN"), "+ ", "challenge")
        # RFC 1939 §3: closed "without ... sending any response".
        eq(p.expect_eof(timeout=10 * SLOW), b"",
           "-t 1, idle at the challenge: sent before closing")
        eq(p.wait(), EXIT_CLIENT, "exit status after the idle timeout")
        check("idle timeout" in p.stderr(), "idle timeout not logged")


# ========================================================= failed logins

@test
def failed_login_delay():
    """-D 1: PASS, APOP and AUTH PLAIN failures are answered after at least
    a second; two wrong passwords pipelined in one write take two delays;
    without -D the delay is at least 2 seconds."""
    with apop_env("sec") as env:
        p = env.start(D=1, a=100, extra=["-A"])
        stamp = stamp_of(p.greeting)
        p.ok("USER alice")
        for c in ["PASS wrong", "APOP alice " + "0" * 32,
                  "AUTH PLAIN " + plain("alice", "wrong")]:
            t0 = time.monotonic()
            eq(p.cmd(c), AUTH_FAIL, c.split()[0])
            dt = time.monotonic() - t0
            check(dt >= 0.95, "-D 1: %s failure answered after %.3f s"
                  % (c.split()[0], dt))
        t0 = time.monotonic()
        p.send("USER alice\r\nPASS wrong1\r\nUSER alice\r\nPASS wrong2\r\n")
        for i in range(2):
            p.expect_ok("USER")
            eq(p.line(), AUTH_FAIL, "pipelined PASS %d" % (i + 1))
        dt = time.monotonic() - t0
        check(dt >= 1.9, "-D 1: two pipelined failures answered after "
              "%.3f s" % dt)
        r = p.cmd("APOP alice " + apop_digest(stamp, "sec"))
        check(r.startswith("+OK"), "APOP after the failures: %r" % r)
        p.quit()

        args = env.argv()
        i = args.index("-D")
        del args[i:i + 2]
        p = env.spawn(args)
        p.expect_ok("greeting")
        p.ok("USER alice")
        t0 = time.monotonic()
        eq(p.cmd("PASS wrong"), AUTH_FAIL, "PASS")
        dt = time.monotonic() - t0
        check(dt >= 1.95, "default delay: failure answered after %.3f s"
              % dt)
        p.ok("QUIT")


@test
def failed_login_delay_counts_from_the_sasl_response():
    """-D counts from the credential's arrival: for AUTH PLAIN without an
    initial response, from the response to the challenge.  Counted from
    the AUTH line, a client that waited out the delay before it answered
    had its failure answered at once, after exactly the time crypt took:
    a user with a sha512crypt hash answered in 2 ms, an unknown one (the
    dummy is the file's first hash, yescrypt) in 20 (found in review)."""
    with Env() as env:
        env.add_user("alice", "pw")                     # yescrypt
        env.add_user("bob", "pw", method="sha-512")
        env.write_mbox("alice", msgs(1))
        p = env.start(D=1, a=100)
        for user in ("bob", "nosuchuser", "alice"):
            eq(p.cmd("AUTH PLAIN"), "+ ", "challenge")
            time.sleep(1.2)                 # longer than the delay
            t0 = time.monotonic()
            eq(p.cmd(plain(user, "wrong")), AUTH_FAIL, "response for " + user)
            dt = time.monotonic() - t0
            check(dt >= 0.95, "-D 1: AUTH PLAIN failure for %s answered %.3f "
                  "s after the response that came %.1f s after the challenge"
                  % (user, dt, 1.2))
        eq(p.cmd("AUTH PLAIN"), "+ ", "challenge")
        p.ok(plain("alice", "pw"))
        p.quit()


@test
def answers_before_a_credential_do_not_wait_for_its_check():
    """The answer to USER (or any command) pipelined before PASS leaves
    before the credential is checked.  Held until after the check, it
    arrived exactly when crypt was done (2 ms after it for a sha512crypt
    user, 20 for an unknown one checked against a yescrypt dummy), and the
    delay of the failure hid nothing (found in review).  The root parent,
    which does the check, is stopped here: the answer to USER must come
    all the same."""
    with Env() as env:
        env.add_user("alice", "pw")
        env.write_mbox("alice", msgs(1))
        p = env.start(D=0)
        os.kill(p.proc.pid, signal.SIGSTOP)
        try:
            p.send("USER alice\r\nPASS wrong\r\n")
            eq(p.line(), "+OK send PASS", "USER answer while the check waits")
        finally:
            os.kill(p.proc.pid, signal.SIGCONT)
        eq(p.line(), AUTH_FAIL, "PASS")
        os.kill(p.proc.pid, signal.SIGSTOP)
        try:
            p.send("CAPA\r\nUSER alice\r\nPASS pw\r\n")
            p.expect_ok("CAPA")
            p.multi()
            eq(p.line(), "+OK send PASS", "USER answer while the check waits")
        finally:
            os.kill(p.proc.pid, signal.SIGCONT)
        p.expect_ok("PASS")
        p.quit()


@test
def failure_limit_flag_a():
    """-a N closes the connection at the Nth failure, counting PASS, APOP
    and AUTH PLAIN failures together; exit status 1.  -a 1 closes at the
    first; the default is 3."""
    with apop_env("sec") as env:
        p = env.start(a=1)
        eq(attempt(p, "alice", "wrong")[1],
           "-ERR [AUTH] too many failures, goodbye", "-a 1, first failure")
        eq(p.expect_eof(), b"", "bytes after the goodbye")
        eq(p.wait(), EXIT_CLIENT, "exit status after too many failures")

        p = env.start(a=4, extra=["-A"])
        eq(attempt(p, "alice", "wrong")[1], AUTH_FAIL, "1st (PASS)")
        eq(p.cmd("APOP alice " + "0" * 32), AUTH_FAIL, "2nd (APOP)")
        eq(p.cmd("AUTH PLAIN " + plain("alice", "x")), AUTH_FAIL,
           "3rd (AUTH PLAIN)")
        p.ok("CAPA")
        p.multi()
        eq(p.cmd("AUTH PLAIN " + plain("nosuch", "x")),
           "-ERR [AUTH] too many failures, goodbye", "4th with -a 4")
        p.expect_eof()
        eq(p.wait(), EXIT_CLIENT, "exit status")

        p = env.start()
        for i in range(2):
            eq(attempt(p, "alice", "wrong%d" % i)[1], AUTH_FAIL,
               "failure %d of 3" % (i + 1))
        eq(attempt(p, "alice", "wrong")[1],
           "-ERR [AUTH] too many failures, goodbye", "3rd with the default")
        p.expect_eof()
        eq(p.wait(), EXIT_CLIENT, "exit status")

        p = env.start(a=2)
        eq(attempt(p, "alice", "wrong")[1], AUTH_FAIL, "1st of 2")
        p.login("alice", "pw")       # a login before the limit still works
        p.quit()


@test
def parent_bounds_the_failures_of_a_child_that_ignores_them():
    """The root parent counts failed verdicts itself (-a), so that a
    compromised pre-login process cannot use it as a password oracle.
    strace(1) plays that process: it rewrites each verdict the child reads
    to AUTH_TEMP (2), so the child counts no failure and keeps sending
    credentials.  After -a failures the parent checks none: the next one,
    the right password, ends the connection.  The parent used to check it,
    one guess more than -a, and logged it in (found in review)."""
    need_root()
    strace = shutil.which("strace")
    if strace is None or subprocess.run(
            [strace, "-qq", "-o", os.devnull, "true"],
            capture_output=True).returncode != 0:
        raise Skip("needs a working strace(1)")
    with Env() as env:
        env.add_user("alice", "pw")
        env.write_mbox("alice", msgs(1))
        p = env.start(a=2)
        with open("/proc/%d/task/%d/children" % (p.proc.pid, p.proc.pid)) \
                as f:
            child = int(f.read().split()[0])
        # The child's reads, one batch of commands at a time: the batch,
        # the verdict's frame header, the verdict.  The 3rd and the 6th
        # are the verdicts of the two failures.
        tr = subprocess.Popen([strace, "-qq", "-o", os.devnull, "-p",
                               str(child), "-e", "trace=read", "-e",
                               "inject=read:poke_exit=@arg2=02000000:"
                               "when=3..6+3"])
        try:
            deadline = time.monotonic() + 10
            while "TracerPid:\t0\n" in open("/proc/%d/status" % child).read():
                check(time.monotonic() < deadline, "strace did not attach")
                time.sleep(0.05)
            for pw in ("wrong1", "wrong2"):
                p.send("USER alice\r\nPASS %s\r\n" % pw)
                p.expect_ok("USER")
                eq(p.line(), "-ERR [SYS/TEMP] cannot check credentials now",
                   "PASS %s, its verdict rewritten by strace" % pw)
            # The child dies with its answer to USER still buffered.
            p.send("USER alice\r\nPASS pw\r\n")
            got = p.expect_eof()
            check(b"maildrop has" not in got, "the right password after "
                  "-a 2 failures logged in: %r" % got)
            eq(p.wait(), EXIT_CLIENT, "exit status")
            check("pre-login process exceeded 2 failures" in p.stderr(),
                  "not logged: %r" % p.stderr()[-300:])
        finally:
            tr.kill()
            tr.wait()


# ============================================================ passwords

@test
def passwords_never_logged():
    """With -e every login and failure is logged, and no password (PASS,
    AUTH PLAIN with and without challenge, right or wrong), no PLAIN
    response, no APOP secret or digest and no hash appears in the log."""
    good, bad = rand_pw("good"), rand_pw("bad")
    secret = rand_pw("secret")
    with apop_env(secret, good) as env:
        h = env.user_lines[0].split(":")[1]
        needles = {good, bad, secret, h, plain("alice", good),
                   plain("alice", bad), plain("nosuch", good)}
        p = env.start(a=100, extra=["-A"])
        stamp = stamp_of(p.greeting)
        digest = apop_digest(stamp, secret)
        needles.add(digest)
        attempt(p, "alice", bad)
        attempt(p, "nosuch", good)
        p.cmd("AUTH PLAIN " + plain("alice", bad))
        p.cmd("AUTH PLAIN " + plain("nosuch", good))
        p.cmd("AUTH PLAIN")
        p.cmd(plain("alice", bad))
        p.cmd("APOP alice " + apop_digest(stamp, bad))
        p.cmd("APOP alice " + digest)
        p.quit()
        for login in ("PASS " + good, "AUTH PLAIN " + plain("alice", good)):
            p = env.start()
            if login.startswith("PASS"):
                p.ok("USER alice")
            p.ok(login)
            p.quit()
        p = env.start()
        p.cmd("AUTH PLAIN")
        p.ok(plain("alice", good))
        p.quit()
        log = "".join(q.stderr() for q in env.procs)
        for s in ("login: user=alice method=USER",
                  "login: user=alice method=AUTH-PLAIN",
                  "login: user=alice method=APOP", "login failed"):
            check(s in log, "the log lacks %r:\n%s" % (s, log[-1500:]))
        leaked = [n for n in needles if n in log]
        check(not leaked, "the log holds secrets %r:\n%s" % (leaked, log))


LOG_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s"]+)')


def log_fields(line):
    """key=value fields of a log line as a parser would read them, quoted
    values unescaped; a key seen twice is a list."""
    out = {}
    for k, v in LOG_FIELD.findall(line):
        if v.startswith('"'):
            v = re.sub(r'\\(x[0-9a-f]{2}|.)', lambda m: chr(int(
                m.group(1)[1:], 16)) if len(m.group(1)) == 3 else m.group(1),
                v[1:-1])
        out.setdefault(k, []).append(v)
    return out


@test
def user_names_quoted_in_the_log():
    """A user name may hold '"', '=' and '\\' (any printable byte but '/'
    and ':'); in the log's key=value fields it is quoted and escaped, so
    that a parser reads it whole and finds no field it forged.  Plain names
    stay unquoted.  The same for the maildrop path."""
    name = 'x"reason="ok\\=y'
    with Env() as env:
        env.add_user(name, "pw")
        env.add_user("alice", "pw")
        env.write_mbox(name, msgs(2))
        env.write_mbox("alice", msgs(1))
        p = env.start()
        eq(attempt(p, name, "wrong")[1], AUTH_FAIL, "wrong password")
        p.login(name, "pw")
        p.ok_multi("RETR 1")
        p.quit()
        p = env.start()
        p.login("alice", "pw")
        p.quit()
        log = "".join(q.stderr() for q in env.procs)
        lines = [l for l in log.splitlines() if "user=" in l]
        eq(len(lines), 7, "user= lines:\n" + log)
        for l in lines:
            f = log_fields(l.split(": ", 1)[1])
            want = "alice" if "user=alice" in l else name
            eq(f.get("user"), [want], "user field of %r" % l)
            if "reason" in f:
                eq(f["reason"], ["bad credentials"], "reason of %r" % l)
            if "maildrop" in f:
                eq(f["maildrop"], [env.mbox(want)], "maildrop of %r" % l)
        for s in ('login failed: user="x\\"reason=\\"ok\\\\=y" method=USER',
                  'login: user="x\\"reason=\\"ok\\\\=y" method=USER',
                  'quit: user="x\\"reason=\\"ok\\\\=y" retrieved=1/',
                  "login: user=alice method=USER", "quit: user=alice "):
            check(s in log, "the log lacks %r:\n%s" % (s, log))


@test
def passwords_not_left_in_memory():
    """Passwords are wiped after use: the pre-login process, waiting for
    its next command after a failed PASS, and again after a failed AUTH
    PLAIN, holds neither the password nor the PLAIN response (base64 is no
    protection) in its writable memory; nor does the session process after
    a login."""
    need_root()
    good, bad1, bad2 = rand_pw("good"), rand_pw("badpass"), rand_pw("badsasl")
    problems = []

    def scan(pid, what, needles):
        for k, v in find_in_memory(pid, [n.encode() for n in needles]).items():
            problems.append("%s (pid %d) holds %r: %s"
                            % (what, pid, k.decode(), ", ".join(v)))

    with Env() as env:
        env.add_user("alice", good)
        env.write_mbox("alice", msgs(1))
        p = env.start(a=100)
        eq(attempt(p, "alice", bad1)[1], AUTH_FAIL, "PASS " + bad1)
        child = the_child(p.proc.pid)
        scan(child, "pre-login process after a failed PASS", [bad1])
        eq(p.cmd("AUTH PLAIN"), "+ ", "challenge")
        eq(p.cmd(plain("alice", bad2)), AUTH_FAIL, "AUTH PLAIN")
        scan(child, "pre-login process after a failed AUTH PLAIN",
             [bad1, bad2, plain("alice", bad2)])
        p.ok("USER alice")
        p.ok("PASS " + good)
        scan(p.proc.pid, "session process after the login",
             [good, bad1, bad2, plain("alice", bad2)])
        p.quit()
    if problems:
        fail("passwords left in memory after use: " + "; ".join(problems))


# ================================================================ flags

@test
def flag_V():
    with Env() as env:
        p = env.spawn(["-V"])
        out = p.expect_eof()
        eq(p.wait(), 0, "pop3d -V exit status")
        check(re.match(rb"^pop3d [0-9][\x21-\x7e]*\n$", out),
              "pop3d -V printed %r" % out)


@test
def flag_e_logs_to_stderr_and_nothing_without_it():
    with Env() as env:
        env.add_user("alice", "pw")
        env.write_mbox("alice", msgs(1))
        for e in (True, False):
            p = env.start(e=e)
            attempt(p, "alice", "wrong")
            p.login("alice", "pw")
            p.quit()
            log = p.stderr()
            if e:
                for s in ("connect from", "login failed: user=alice",
                          "login: user=alice", "quit: user=alice"):
                    check(s in log, "-e: the log lacks %r:\n%s" % (s, log))
            else:
                eq(log, "", "stderr without -e")


@test
def flag_n_and_default_hostname():
    with apop_env() as env:
        p = env.start(n="pop.example.net", extra=["-A"])
        check(p.greeting.startswith("+OK pop.example.net "),
              "greeting with -n: %r" % p.greeting)
        check(stamp_of(p.greeting).endswith("@pop.example.net>"),
              "timestamp with -n: %r" % p.greeting)
        p.ok("QUIT")
        # The longest name -n takes: the greeting, which carries it
        # twice, still fits RFC 1939's 512 octets with its timestamp.
        name = "h" * 192 + ".example"
        p = env.start(n=name, extra=["-A"])
        check(len(p.greeting) + 2 <= 512, "greeting of %d octets"
              % (len(p.greeting) + 2))
        check(stamp_of(p.greeting).endswith("@%s>" % name),
              "timestamp with a 200-character -n: %r" % p.greeting)
        p.ok("QUIT")
        args = env.argv(extra=["-A"])
        i = args.index("-n")
        del args[i:i + 2]
        p = env.spawn(args)
        g = p.expect_ok("greeting")
        host = socket.gethostname()
        check(g.startswith("+OK %s " % host),
              "greeting without -n: %r (hostname %r)" % (g, host))
        check(stamp_of(g).endswith("@%s>" % host),
              "timestamp without -n: %r" % g)
        p.ok("QUIT")


@test
def flag_t_idle_timeout_before_and_after_login():
    with Env() as env:
        env.add_user("alice", "pw")
        env.write_mbox("alice", msgs(1))
        for logged_in in (False, True):
            p = env.start(t=1)
            if logged_in:
                p.login("alice", "pw")
            t0 = time.monotonic()
            # RFC 1939 §3: closed "without ... sending any response".
            eq(p.expect_eof(timeout=10 * SLOW), b"",
               "-t 1 (%s): sent before closing" % ("TRANSACTION" if
                                                    logged_in else
                                                    "AUTHORIZATION"))
            check(time.monotonic() - t0 >= 0.9, "-t 1: closed too early")
            eq(p.wait(), EXIT_CLIENT, "exit status after the idle timeout")
        eq(env.read_mbox("alice"), mbox_bytes(msgs(1)), "mbox")


@test
def flag_m_maildrop_template():
    """-m: %u, %h (the system user's home) and %% expand; an unknown escape
    lets no one in."""
    with Accounts() as acc, Env() as env:
        home = os.path.join(env.dir, "home")
        os.mkdir(home, 0o755)
        u = acc.user(home=home)
        os.chown(home, u.uid, u.gid)
        put_mbox(os.path.join(home, "mbox"), 3, u.uid, u.gid)
        sp = spool(env)
        put_mbox(os.path.join(sp, "box%" + u.name), 2, u.uid, u.gid)
        put_mbox(os.path.join(sp, u.name), 1, u.uid, u.gid)
        for tmpl, n in (("%h/mbox", 3), (sp + "/box%%%u", 2), (sp + "/%u", 1)):
            args = env.argv(users=False, template=tmpl)
            p = env.spawn(args)
            p.expect_ok("greeting")
            p.login(u.name, u.password)
            eq(parse_stat(p.ok("STAT"))[0], n, "STAT with -m %s" % tmpl)
            p.quit()
        p = env.spawn(env.argv(users=False, template=sp + "/%x%u"))
        p.expect_ok("greeting")
        p.ok("USER " + u.name)
        r = p.cmd("PASS " + u.password)
        check(r.startswith("-ERR"), "-m with %%x: PASS answered %r" % r)
        p.finish()


@test
def flag_E_empty_dir():
    """-E: a missing directory is created (root's, writable by no one
    else) and is the jail; one that is group- or other-writable, not
    root's, a symlink or a file makes pop3d exit 78 before any greeting."""
    need_root()
    with Env() as env:
        env.add_user("alice", "pw")
        new = os.path.join(env.dir, "new-empty")
        p = env.start(extra=["-E", new])
        st = os.lstat(new)
        check(os.path.isdir(new) and st.st_uid == 0 and
              st.st_mode & 0o022 == 0,
              "-E %s created as uid %d mode %o" % (new, st.st_uid,
                                                    st.st_mode & 0o7777))
        p.ok("USER alice")
        eq(root_of(the_child(p.proc.pid)), os.path.realpath(new),
           "the pre-login root directory")
        p.ok("QUIT")

        def bad(path, what):
            q = env.spawn(env.argv(extra=["-E", path]))
            out = q.expect_eof()
            eq(q.wait(), EXIT_CONFIG, "exit status with -E %s" % what)
            eq(out, b"", "output with -E %s" % what)

        for mode in (0o775, 0o757, 0o1777):
            d = os.path.join(env.dir, "mode%o" % mode)
            os.mkdir(d)
            os.chmod(d, mode)
            bad(d, "mode %o" % mode)
        d = os.path.join(env.dir, "notroots")
        os.mkdir(d, 0o755)
        os.chown(d, 65534, 65534)
        bad(d, "owned by uid 65534")
        good = os.path.join(env.dir, "good")
        os.mkdir(good, 0o755)
        link = os.path.join(env.dir, "link")
        os.symlink(good, link)
        bad(link, "a symlink to a good directory")
        f = os.path.join(env.dir, "file")
        open(f, "w").close()
        bad(f, "a regular file")


@test
def flag_u_prelogin_user():
    """-u names the pre-login user (its uid is checked in
    prelogin_child_jailed_while_waiting_for_pass); root, a uid 0 alias and
    an unknown user make pop3d exit 78 before any greeting."""
    with Accounts() as acc, Env() as env:
        env.add_user("alice", "pw")
        zero = acc.user(uid=0, gid=acc.group(), dup=True)
        nosuch = "pop3dt_nosuch" + secrets.token_hex(3)
        for name in ("root", zero.name, nosuch):
            q = env.spawn(env.argv(extra=["-u", name]))
            out = q.expect_eof()
            eq(q.wait(), EXIT_CONFIG, "exit status with -u %s" % name)
            eq(out, b"", "output with -u %s" % name)
        u = acc.user(password=None)
        p = env.start(extra=["-u", u.name])
        p.ok("USER alice")
        all_ids(proc_status(the_child(p.proc.pid)), "Uid", u.uid,
                "pre-login process with -u " + u.name)
        p.ok("QUIT")


@test
def flag_r_mail_root():
    """-r: after the login the session is chrooted there and the maildrop
    path is read inside it; a missing -r directory answers the login with
    -ERR [SYS/TEMP] and exit status 2."""
    need_root()
    with Env() as env:
        root = os.path.join(env.dir, "mailroot")
        os.makedirs(os.path.join(root, "box"))
        os.chmod(root, 0o755)
        os.chmod(os.path.join(root, "box"), 0o755)
        put_mbox(os.path.join(root, "box", "alice"), 3, MAIL_UID, MAIL_GID)
        env.add_user("alice", "pw")
        with no_leak_check():
            p = env.spawn(env.argv(template="/box/%u", extra=["-r", root]))
        p.expect_ok("greeting")
        p.login("alice", "pw")
        eq(root_of(p.proc.pid), os.path.realpath(root),
           "the session's root directory")
        all_ids(proc_status(p.proc.pid), "Uid", MAIL_UID, "session with -r")
        eq(parse_stat(p.ok("STAT"))[0], 3, "STAT of /box/alice inside -r")
        p.quit()

        p = env.spawn(env.argv(extra=["-r", os.path.join(env.dir, "none")]))
        p.expect_ok("greeting")
        p.ok("USER alice")
        r = p.cmd("PASS pw")
        check(r.startswith("-ERR [SYS/TEMP]"), "-r missing: %r" % r)
        p.expect_eof()
        eq(p.wait(), EXIT_SYS, "exit status with a missing -r")


@test
def flag_values_out_of_range():
    """Numeric flags outside their ranges exit 64 before any greeting; the
    ends of the ranges are accepted."""
    with Env() as env:
        env.add_user("alice", "pw")
        for args in [["-a", "0"], ["-a", "101"], ["-a", "x"], ["-D", "61"],
                     ["-D", "-1"], ["-U", "0"], ["-U", "abc"],
                     ["-U", "4294967296"], ["-t", "0"], ["-t", "86401"],
                     ["-A", "x"], ["-a"], ["-n", ""], ["-n", "x" * 201],
                     ["-n", "pop example"], ["-n", "<pop>"],
                     ["-n", "pop\x7f"]]:
            q = env.spawn(env.argv() + args)
            out = q.expect_eof()
            eq(q.wait(), EXIT_USAGE, "exit status with %r" % args)
            check(not out.startswith(b"+OK"), "greeting with %r" % args)
        for args in [["-a", "100"], ["-D", "60"], ["-U", "1"],
                     ["-t", "86400"], ["-a", "1"]]:
            p = env.spawn(env.argv() + args)
            p.expect_ok("greeting with %r" % args)
            p.ok("QUIT")


if __name__ == "__main__":
    main()
