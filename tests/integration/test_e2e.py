#!/usr/bin/python3
"""End-to-end tests of pop3d over pipes: every command in every state, every
-ERR path, every bound at N and N+1, pipelining, byte-exact RETR and TOP,
the users file, locking, timeouts, UPDATE and the seed scenario.

Run: /usr/bin/python3 tests/integration/test_e2e.py [test_name ...]
"""
import base64
import fcntl
import hashlib
import os
import re
import resource
import select
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True     # no __pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pop3test import (BIN, IS_ROOT, MAIL_GID, MAIL_UID, READ_TIMEOUT,  # noqa
                      SLOW, VALGRIND, VALGRIND_CMD, Env, Skip, check,
                      dead_pid, eq, fail, main, make_hash, mbox_bytes,
                      message, envelope, parse_list, parse_stat,
                      parse_uidl, short, split_lines, stuffed, test,
                      top_stuffed, wire)

PW = "s3cret pass"


def env_with(msgs=None, user="alice", password=PW, method="yescrypt"):
    env = Env()
    env.add_user(user, password, method=method)
    if msgs is not None:
        env.write_mbox(user, msgs)
    return env


def five():
    return [message(i) for i in range(1, 6)]


def uidl_map(p):
    return dict(parse_uidl(p.ok_multi("UIDL")))


def retr(p, n):
    p.ok("RETR %d" % n)
    return p.multi_raw() + b".\r\n"


# ============================================================ greeting, CAPA

# The brief asked for exactly these and no SASL; pop3d.8 (commit e8a90ea)
# adds "SASL PLAIN", in both states as RFC 2449 §5 requires of what works
# before login.  Never STLS (no TLS yet) and nothing about APOP (it has no
# capability).
CAPS = {"TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING",
        "SASL PLAIN"}
CAPS_AUTH = CAPS


def check_capa(lines, state):
    impl = [l for l in lines if l.upper().startswith("IMPLEMENTATION ")]
    eq(len(impl), 1, "CAPA (%s): IMPLEMENTATION lines" % state)
    rest = [l for l in lines if l not in impl]
    eq(sorted(rest), sorted(CAPS_AUTH if state == "AUTHORIZATION" else CAPS),
       "CAPA (%s) capabilities" % state)
    check(len(impl[0]) > len("IMPLEMENTATION "),
          "CAPA: IMPLEMENTATION without a value")


@test
def greeting_and_capa_in_both_states():
    with env_with(five()) as env:
        p = env.start()
        check(p.greeting.startswith("+OK"), "greeting %r" % p.greeting)
        check_capa(p.ok_multi("CAPA"), "AUTHORIZATION")
        p.login("alice", PW)
        check_capa(p.ok_multi("CAPA"), "TRANSACTION")
        p.err("CAPA x")
        p.ok("NOOP")
        p.quit()


@test
def keywords_are_case_insensitive():
    with env_with(five()) as env:
        p = env.start()
        p.ok("capa")
        p.multi()
        p.ok("uSeR alice")
        p.ok("pass " + PW)
        parse_stat(p.ok("stat"))
        p.ok("List")
        eq(len(p.multi()), 5, "list lines")
        p.ok("list 2")
        p.ok("uidl")
        p.multi()
        p.ok("Uidl 1")
        p.ok("retr 1")
        p.multi()
        p.ok("tOp 1 0")
        p.multi()
        p.ok("dele 5")
        p.ok("rset")
        p.ok("noop")
        p.ok("qUiT")
        p.expect_eof()
        eq(p.wait(), 0, "exit status")


# ========================================================= AUTHORIZATION

@test
def authorization_rejects_transaction_commands():
    with env_with(five()) as env:
        p = env.start()
        for c in ["STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "NOOP",
                  "RSET", "TOP 1 0", "UIDL", "UIDL 1"]:
            p.err(c)
        # Still in AUTHORIZATION, and a login still works.
        p.login("alice", PW)
        eq(parse_stat(p.ok("STAT"))[0], 5, "STAT count")
        p.quit()
    # Nothing above deleted anything.
    with env_with(five()) as env:
        p = env.start()
        p.err("DELE 1")
        p.ok("QUIT")
        p.expect_eof()
        eq(env.read_mbox("alice"), mbox_bytes(five()), "mbox")


@test
def unknown_and_unoffered_commands():
    with env_with(five()) as env:
        p = env.start()
        # APOP is offered only with -A; AUTH: see auth_plain_*.
        for c in ["FOO", "XYZZY 1", "", " ", "APOP alice "
                  "c4c9334bac560ecc979e58001b3e22fb", "AUTH CRAM-MD5",
                  "AUTH LOGIN", "AUTH GSSAPI", "AUTH XOAUTH2 abcd",
                  "STLS", "UTF8", "LANG", "USERX alice", "STATS", "NOOPS",
                  "QUI", "LIS T"]:
            p.err(c)
        p.login("alice", PW)
        for c in ["FOO", "", "APOP alice c4c9334bac560ecc979e58001b3e22fb",
                  "AUTH PLAIN", "STLS", "USER alice", "PASS " + PW,
                  "PASS x", "RETRX 1", "TOPS 1 1"]:
            p.err(c)
        p.ok("NOOP")
        eq(parse_stat(p.ok("STAT"))[0], 5, "STAT count")
        p.quit()


@test
def user_argument_rules():
    with env_with(five()) as env:
        p = env.start()
        p.err("USER")
        p.err("USER ")
        p.err("USER alice bob")
        # Bad USER leaves no user behind: PASS has nothing to go with.
        p.err("PASS " + PW)
        p.err("STAT")
        p.login("alice", PW)
        p.quit()


@test
def long_user_names():
    # RFC 2449 §4 lifts RFC 1939's 40 characters per argument with the
    # line limit, and CAPA is offered: a login name may have 128
    # characters (pop3d.8 Limits).  Virtual users are often named by their
    # address, and addresses exceed 40.  The bound keeps an mbox named by
    # the user, with its dotlock and journal, within NAME_MAX.
    addr = "scan-to-mail.3rd-floor-copier@branch-office.example.org"
    check(len(addr) > 40, "test address too short")
    longest = "l" * 127 + "8"
    h = make_hash(PW)
    u, g = MAIL_UID, MAIL_GID
    with Env() as env:
        env.write_users(["%s:%s:%d:%d::tanstaaf" % (addr, h, u, g),
                         "%s:%s:%d:%d:" % (longest, h, u, g),
                         "%s:%s:%d:%d:" % (longest + "9", h, u, g)])
        env.write_mbox(addr, five())
        env.write_mbox(longest, five()[:3])
        env.write_mbox(longest + "9", five()[:2])
        # USER/PASS, APOP and AUTH PLAIN each log the address in.
        p = env.start(extra=["-A"])
        p.ok("USER " + addr)
        p.ok("PASS " + PW)
        eq(parse_stat(p.ok("STAT"))[0], 5, "STAT of %d-character user"
           % len(addr))
        p.quit()
        p = env.start(extra=["-A"])
        stamp = apop_stamp(p.greeting)
        p.ok("APOP %s %s" % (addr, hashlib.md5(
            (stamp + "tanstaaf").encode()).hexdigest()))
        eq(parse_stat(p.ok("STAT"))[0], 5, "STAT after APOP")
        p.quit()
        p = env.start()
        p.ok("AUTH PLAIN " + plain(addr, addr, PW))
        eq(parse_stat(p.ok("STAT"))[0], 5, "STAT after AUTH PLAIN")
        p.quit()
        # 128 characters, its mbox named by it: the session deletes (a
        # journal and the dotlock beside it), and PLAIN takes the name
        # with an authzid as long and the longest password.
        p = env.start()
        p.ok("USER " + longest)
        p.ok("PASS " + PW)
        eq(parse_stat(p.ok("STAT"))[0], 3, "STAT of the 128-character user")
        p.ok("DELE 1")
        p.quit()
        eq(env.read_mbox(longest), mbox_bytes(
            [(envelope(i + 1), m) for i, m in enumerate(five()[:3])][1:]),
           "mbox after deleting message 1")
        env.add_user(longest[:-1] + "7", "p" * 255)
        env.write_mbox(longest[:-1] + "7", five()[:1])
        p = env.start()
        p.send(b"AUTH PLAIN\r\n")
        check(p.line().startswith("+"), "AUTH PLAIN challenge")
        p.send(plain(longest[:-1] + "7", longest[:-1] + "7",
                     "p" * 255).encode() + b"\r\n")
        p.expect_ok("AUTH PLAIN of 128 + 128 + 255 octets")
        eq(parse_stat(p.ok("STAT"))[0], 1, "STAT after the longest PLAIN")
        p.quit()
        # 129 characters is no name, even with a users-file line: USER
        # refuses it, and PLAIN with it is a failed login.
        p = env.start()
        p.err("USER " + longest + "9")
        p.err("PASS " + PW)
        r = p.err("AUTH PLAIN " + plain("", longest + "9", PW))
        check(r.startswith("-ERR [AUTH]"), "129-character PLAIN: %r" % r)
        p.finish()


@test
def pass_must_directly_follow_user():
    with env_with(five()) as env:
        p = env.start()
        p.err("PASS " + PW)                      # no USER at all
        p.ok("USER alice")
        p.ok("CAPA")
        p.multi()
        p.err("PASS " + PW)                      # CAPA came between
        p.err("STAT")
        p.ok("USER alice")
        p.err("NOOP")                            # wrong-state command
        p.err("PASS " + PW)
        p.ok("USER alice")
        p.err("FOO")                             # unknown command
        p.err("PASS " + PW)
        p.ok("USER alice")
        r = p.err("PASS wrong")
        check(r.startswith("-ERR [AUTH]"), "wrong password: %r" % r)
        p.err("PASS " + PW)                      # USER is used up
        p.err("STAT")
        p.ok("USER bob")
        p.ok("USER alice")                       # the last USER counts
        p.ok("PASS " + PW)
        p.ok("STAT")
        p.quit()


@test
def pass_argument_rules_and_spaces():
    pw = "correct horse battery staple"
    with env_with(five(), password=pw) as env:
        p = env.start()
        p.ok("USER alice")
        p.err("PASS")
        p.ok("USER alice")
        # A space and no password is no argument either, not an empty
        # password to check (a failed login).
        r = p.err("PASS ")
        check(not r.startswith("-ERR [AUTH]"), "PASS and a space: %r" % r)
        p.ok("USER alice")
        r = p.err("PASS correct")                # only the first word
        check(r.startswith("-ERR [AUTH]"), "partial password: %r" % r)
        p.ok("USER alice")
        p.ok("PASS " + pw)
        p.quit()


@test
def unknown_user_and_wrong_password_answer_alike():
    with env_with(five()) as env:
        answers = []
        for user, pw in [("alice", "wrong"), ("nosuchuser", "wrong"),
                         ("nosuchuser", PW)]:
            p = env.start()
            u = p.ok("USER " + user)
            r = p.err("PASS " + pw)
            check(r.startswith("-ERR [AUTH]"),
                  "PASS for %s/%s: %r" % (user, pw, r))
            answers.append((u.replace(user, "NAME"), r.replace(user, "NAME")))
            p.ok("QUIT")
            p.expect_eof()
        eq(answers[1], answers[0], "unknown user vs wrong password answers")
        eq(answers[2], answers[0], "unknown user vs wrong password answers")


@test
def dangerous_user_names_never_log_in():
    with env_with(five()) as env:
        p = env.start()
        for name in ["../alice", "alice/../alice", "/etc/passwd", ".alice",
                     "..", "."]:
            r = p.cmd("USER " + name)
            if r.startswith("+OK"):
                r = p.err("PASS " + PW)
            check(r.startswith("-ERR"), "USER %s: %r" % (name, r))
        p.login("alice", PW)
        p.quit()


@test
def quit_in_authorization():
    with env_with(five()) as env:
        p = env.start()
        p.ok("USER alice")
        p.err("QUIT now")
        p.ok("QUIT")
        eq(p.expect_eof(), b"", "bytes after QUIT's answer")
        eq(p.wait(), 0, "exit status after QUIT")
        eq(env.read_mbox("alice"), mbox_bytes(five()), "mbox")


@test
def failed_login_delay():
    with env_with(five()) as env:
        p = env.start(D=1)
        p.ok("USER alice")
        t0 = time.monotonic()
        r = p.err("PASS wrong")
        dt = time.monotonic() - t0
        check(r.startswith("-ERR [AUTH]"), "answer %r" % r)
        check(dt >= 0.95, "-D 1: wrong password answered after %.3fs" % dt)
        p.ok("USER alice")
        p.ok("PASS " + PW)
        p.quit()
        # -D 0: no delay asserted, only recorded.
        p = env.start(D=0)
        p.ok("USER alice")
        t0 = time.monotonic()
        p.err("PASS wrong")
        print("# -D 0: wrong password answered in %.3fs"
              % (time.monotonic() - t0))
        p.ok("QUIT")


@test
def max_failures_closes_connection():
    with env_with(five()) as env:
        # -a 2
        p = env.start(a=2)
        p.ok("USER alice")
        p.err("PASS wrong")
        p.ok("CAPA")                 # still open after one failure
        p.multi()
        p.ok("USER nosuchuser")
        r = p.err("PASS wrong")
        check(r.startswith("-ERR [AUTH]"), "2nd failure: %r" % r)
        p.expect_eof()
        check(p.wait() != 0, "exit status after too many failures is 0")
        # default: 3
        p = env.start()
        for i in range(2):
            p.ok("USER alice")
            p.err("PASS wrong%d" % i)
        p.ok("USER alice")            # still open after two
        p.err("PASS wrong3")
        p.expect_eof()
        # the maildrop was never touched
        eq(env.read_mbox("alice"), mbox_bytes(five()), "mbox")


# ======================================================= AUTH PLAIN, APOP

def plain(authz, user, pw):
    raw = authz.encode() + b"\0" + user.encode() + b"\0" + pw.encode()
    return base64.b64encode(raw).decode()


@test
def auth_plain_logins():
    with env_with(five()) as env:
        # RFC 5034: with an initial response; authzid empty or the user.
        for authz in ["", "alice"]:
            p = env.start()
            p.ok("AUTH PLAIN " + plain(authz, "alice", PW))
            eq(parse_stat(p.ok("STAT"))[0], 5, "STAT after AUTH PLAIN")
            check_capa(p.ok_multi("CAPA"), "TRANSACTION")
            p.quit()
        # Without one: an empty challenge "+ ", then the response.
        p = env.start()
        r = p.cmd("auth plain")
        check(r.startswith("+"), "AUTH PLAIN without initial response: %r"
              % r)
        p.ok(plain("", "alice", PW))
        p.ok("DELE 1")
        p.quit()
        eq(env.read_mbox("alice"),
           mbox_bytes([(envelope(i), five()[i - 1]) for i in range(2, 6)]),
           "mbox after a session opened with AUTH PLAIN")


@test
def auth_plain_failures():
    with env_with(five()) as env:
        p = env.start(a=50)
        for resp in [plain("", "alice", "wrong"),
                     plain("", "nosuchuser", PW),
                     plain("bob", "alice", PW),          # proxy login
                     plain("", "alice", PW + "x"),
                     plain("", "alice", PW)[:-4],        # truncated
                     base64.b64encode(b"alice").decode(),   # no NULs
                     base64.b64encode(b"\0alice\0" + PW.encode() +
                                      b"\0x").decode(),
                     base64.b64encode(b"\0../alice\0" +
                                      PW.encode()).decode(),
                     "!!!!", "YWxpY2U", "="]:
            r = p.err("AUTH PLAIN " + resp)
            p.err("STAT")                       # not logged in
        r = p.err("AUTH PLAIN " + plain("", "alice", "wrong"))
        check(r.startswith("-ERR [AUTH]"), "wrong password: %r" % r)
        # Continuation forms: "*" cancels (RFC 5034 §4), bad base64.
        for resp in ["*", "not base64!", plain("", "alice", "wrong"), ""]:
            r = p.cmd("AUTH PLAIN")
            check(r.startswith("+"), "AUTH PLAIN: %r" % r)
            p.err(resp)
            p.err("STAT")
        p.err("AUTH PLAIN a b")                 # two words
        p.err("AUTH")                           # no mechanism
        p.ok("USER alice")
        p.ok("PASS " + PW)
        p.quit()


@test
def auth_plain_response_bounds():
    # SASL responses may be longer than a command line (pop3d.8: 1024
    # octets): a 40-character user with a 255-character password logs in.
    user, pw = "v" * 40, "w" * 100 + " " + "x" * 154
    with Env() as env:
        env.add_user(user, pw)
        env.write_mbox(user, five()[:2])
        resp = plain(user, user, pw).encode()
        check(len(resp) > 255, "test response too short")
        p = env.start()
        p.send(b"AUTH PLAIN\r\n")
        check(p.line().startswith("+"), "AUTH PLAIN challenge")
        p.send(resp + b"\r\n")
        p.expect_ok("a %d-octet SASL response" % (len(resp) + 2))
        eq(parse_stat(p.ok("STAT"))[0], 2, "STAT")
        p.quit()
        # Over the bound: one -ERR each, the tail never runs.
        p = env.start()
        for n in [1025, 1026, 1100, 70000]:
            p.send(b"AUTH PLAIN\r\n")
            check(p.line().startswith("+"), "AUTH PLAIN challenge")
            p.send(b"A" * (n - 6) + b"QUIT\r\nNOOP\r\n")
            p.expect_err("a %d-octet SASL response" % n)
            p.expect_err("NOOP in AUTHORIZATION after it")
        # At the bound, by the answer: 1024 octets are read as a response
        # (base64 of 1022 characters is never valid), 1025 are too long;
        # a bare LF counts as two octets.
        for line, answer in [
                (b"A" * 1022 + b"\r\n", "-ERR invalid base64 in SASL response"),
                (b"A" * 1022 + b"\n", "-ERR invalid base64 in SASL response"),
                (b"A" * 1023 + b"\r\n", "-ERR SASL response too long"),
                (b"A" * 1023 + b"\n", "-ERR SASL response too long")]:
            p.send(b"AUTH PLAIN\r\n")
            check(p.line().startswith("+"), "AUTH PLAIN challenge")
            p.send(line)
            eq(p.line(), answer, "a SASL line of %d characters and %r"
               % (len(line.rstrip(b"\r\n")), line[1022:].lstrip(b"A")))
        p.send(b"AUTH PLAIN\r\n")
        check(p.line().startswith("+"), "AUTH PLAIN challenge")
        p.send(b"AAAA\x00AAAA\r\n")
        p.expect_err("a SASL response with a NUL")
        p.send(b"AUTH PLAIN\r\n")
        check(p.line().startswith("+"), "AUTH PLAIN challenge")
        p.send(resp + b"\r\n")
        p.expect_ok("the long SASL response after the refused ones")
        p.quit()


@test
def failures_of_every_method_add_up():
    with Env() as env:
        env.write_users(["alice:%s:%d:%d::tanstaaf"
                         % (make_hash(PW), MAIL_UID, MAIL_GID)])
        env.write_mbox("alice", five())
        p = env.start(a=3, extra=["-A"])
        p.ok("USER alice")
        p.err("PASS wrong")
        p.err("AUTH PLAIN " + plain("", "alice", "wrong"))
        p.ok("CAPA")                                # two failures: open
        p.multi()
        r = p.err("APOP alice " + hashlib.md5(b"wrong").hexdigest())
        check(r.startswith("-ERR [AUTH]"), "third failure: %r" % r)
        p.expect_eof()
        eq(env.read_mbox("alice"), mbox_bytes(five()), "mbox")


def apop_stamp(greeting):
    import re
    m = re.search(r"<[^<>@ ]+@[^<> ]+>", greeting)
    check(m is not None, "no APOP timestamp in the greeting %r" % greeting)
    return m.group(0)


@test
def apop():
    h = make_hash(PW)
    u, g = MAIL_UID, MAIL_GID
    with Env() as env:
        env.write_users(["alice:%s:%d:%d::tanstaaf" % (h, u, g),
                         "nosecret:%s:%d:%d:" % (h, u, g)])
        env.write_mbox("alice", five())
        env.write_mbox("nosecret", five())
        # Without -A: no APOP.
        p = env.start()
        p.err("APOP alice " + "0" * 32)
        p.finish()
        # With -A.
        p = env.start(extra=["-A"])
        stamp = apop_stamp(p.greeting)
        good = hashlib.md5((stamp + "tanstaaf").encode()).hexdigest()
        r = p.err("APOP alice " + hashlib.md5(b"x").hexdigest())
        check(r.startswith("-ERR [AUTH]"), "APOP with a wrong digest: %r" % r)
        p.err("APOP alice")
        p.err("APOP nosecret " + hashlib.md5(
            (stamp + PW).encode()).hexdigest())
        p.ok("APOP alice " + good)
        eq(parse_stat(p.ok("STAT"))[0], 5, "STAT after APOP")
        p.quit()
        # Each greeting has its own timestamp; an old digest is refused.
        p = env.start(extra=["-A"])
        check(apop_stamp(p.greeting) != stamp, "APOP timestamp reused")
        p.err("APOP alice " + good)
        # USER/PASS still works for an APOP user.
        p.login("alice", PW)
        p.quit()


# ============================================================ users file

@test
def users_file_yescrypt_and_sha512():
    with Env() as env:
        env.add_user("yes", "pw-yes", method="yescrypt")
        env.add_user("sha", "pw sha 512", method="sha-512")
        check(env.user_lines[0].split(":")[1].startswith("$y$"), "yescrypt")
        check(env.user_lines[1].split(":")[1].startswith("$6$"), "sha-512")
        env.write_mbox("yes", five()[:2])
        env.write_mbox("sha", five()[:3])
        p = env.session("yes", "pw-yes")
        eq(parse_stat(p.ok("STAT"))[0], 2, "yescrypt user's STAT")
        p.quit()
        p = env.session("sha", "pw sha 512")
        eq(parse_stat(p.ok("STAT"))[0], 3, "sha-512 user's STAT")
        p.quit()
        p = env.start()
        p.ok("USER sha")
        p.err("PASS pw-yes")
        p.ok("QUIT")


def try_login(env, user, pw):
    p = env.start()
    p.ok("USER " + user)
    r = p.cmd("PASS " + pw)
    p.finish()
    return r


@test
def users_file_malformed_lines_affect_only_themselves():
    h = make_hash(PW)
    u, g = MAIL_UID, MAIL_GID
    lines = [
        "# users file for the test",
        "",
        "good1:%s:%d:%d:" % (h, u, g),
        "baduid:%s:abc:%d:" % (h, g),
        "badgid:%s:%d:x1:" % (h, u),
        "neguid:%s:-1:%d:" % (h, g),
        "biguid:%s:99999999999999999999:%d:" % (h, g),
        # (uid_t)-1 and (gid_t)-1: to setresuid/setresgid, "unchanged".
        "maxuid:%s:4294967295:%d:" % (h, g),
        "maxgid:%s:%d:4294967295:" % (h, u),
        "spaceuid:%s: %d:%d:" % (h, u, g),
        "extra:%s:%d:%d::secret:more" % (h, u, g),   # 7 fields
        ":%s:%d:%d:" % (h, u, g),
        "nocolon",
        "#commented:%s:%d:%d:" % (h, u, g),
        "",
        "   # indented comment",
        "good2:%s:%d:%d:" % (h, u, g),
    ]
    with Env() as env:
        env.write_users(lines)
        for n in ["good1", "good2", "baduid", "badgid", "neguid", "biguid",
                  "maxuid", "maxgid", "spaceuid", "extra", "commented",
                  "#commented"]:
            env.write_mbox(n if n[0] != "#" else "x", five()[:1])
        for n in ["good1", "good2"]:
            r = try_login(env, n, PW)
            check(r.startswith("+OK"), "user %s on a good line: %r" % (n, r))
        for n in ["baduid", "badgid", "neguid", "biguid", "maxuid",
                  "maxgid", "spaceuid", "extra", "commented", "#commented",
                  "nocolon"]:
            r = try_login(env, n, PW)
            # Refused as a login, not after it as a maildrop error.
            check(r.startswith("-ERR [AUTH]"),
                  "user %s on a malformed or commented line: %r"
                  % (n, r))


@test
def users_file_locked_and_empty_hashes_never_log_in():
    h = make_hash(PW)
    u, g = MAIL_UID, MAIL_GID
    with Env() as env:
        env.write_users([
            "bang:!:%d:%d:" % (u, g),
            "star:*:%d:%d:" % (u, g),
            "empty::%d:%d:" % (u, g),
            "locked:!%s:%d:%d:" % (h, u, g),
            "star2:*%s:%d:%d:" % (h, u, g),
            "ok:%s:%d:%d:" % (h, u, g),
        ])
        for n in ["bang", "star", "empty", "locked", "star2", "ok"]:
            env.write_mbox(n, five()[:1])
        for n, pws in [("bang", ["!", "x", PW]), ("star", ["*", "x", PW]),
                       ("empty", ["x", " ", PW]), ("locked", [PW, "!" + h]),
                       ("star2", [PW])]:
            for pw in pws:
                r = try_login(env, n, pw)
                check(r.startswith("-ERR"),
                      "user %s with password %r logged in: %r" % (n, pw, r))
        r = try_login(env, "ok", PW)
        check(r.startswith("+OK"), "control user: %r" % r)


@test
def users_file_uid_0_refused_as_root():
    if not IS_ROOT:
        raise Skip("not running as root")
    h = make_hash(PW)
    with Env() as env:
        env.write_users(["root0:%s:0:0:" % h,
                         "rootu:%s:0:%d:" % (h, MAIL_GID),
                         "rootg:%s:%d:0:" % (h, MAIL_UID),
                         "noids:%s" % h,
                         "ok:%s:%d:%d:" % (h, MAIL_UID, MAIL_GID)])
        for n in ["root0", "rootu", "rootg", "noids", "ok"]:
            env.write_mbox(n, five()[:1])
        # uid 0 and gid 0 are never served (pop3d.users.5); as root the
        # uid is required.
        for n in ["root0", "rootu", "rootg", "noids"]:
            p = env.start()
            p.ok("USER " + n)
            r = p.cmd("PASS " + PW)
            check(r.startswith("-ERR"), "uid 0 user %s: PASS answered %r"
                  % (n, r))
            if not p.eof:
                p.err("STAT")        # not in TRANSACTION
            p.finish()
            eq(env.read_mbox(n), mbox_bytes(five()[:1]), "mbox of " + n)
        r = try_login(env, "ok", PW)
        check(r.startswith("+OK"), "control user: %r" % r)


@test
def users_file_duplicates_and_reread():
    # pop3d.users.5: the first line of a name counts; the file is read at
    # each login attempt.
    with Env() as env:
        env.add_user("alice", PW)
        env.add_user("alice", "second password")
        env.write_mbox("alice", five())
        p = env.start()
        p.ok("USER alice")
        r = p.err("PASS second password")
        check(r.startswith("-ERR [AUTH]"), "second line's password: %r" % r)
        env.add_user("carol", "carol pw")          # after the greeting
        env.write_mbox("carol", five()[:2])
        p.login("carol", "carol pw")
        eq(parse_stat(p.ok("STAT"))[0], 2, "STAT of the user added late")
        p.quit()
        r = try_login(env, "alice", PW)
        check(r.startswith("+OK"), "first line's password: %r" % r)


@test
def users_file_maildrop_field_and_defaults():
    h = make_hash(PW)
    u, g = MAIL_UID, MAIL_GID
    with Env() as env:
        other = os.path.join(env.dir, "elsewhere")
        os.mkdir(other)
        env.own(other, 0o755)
        explicit = os.path.join(other, "box")
        env.write_users([
            "omitted:%s:%d:%d" % (h, u, g),
            "emptyfield:%s:%d:%d:" % (h, u, g),
            "explicit:%s:%d:%d:%s" % (h, u, g, explicit),
        ])
        env.write_mbox("omitted", five()[:1])
        env.write_mbox("emptyfield", five()[:2])
        env.write_mbox("explicit", five())        # must not be used
        with open(explicit, "wb") as f:
            f.write(mbox_bytes(five()[:3]))
        env.own(explicit, 0o600)
        for n, count in [("omitted", 1), ("emptyfield", 2), ("explicit", 3)]:
            p = env.session(n, PW)
            eq(parse_stat(p.ok("STAT"))[0], count, "STAT of " + n)
            p.ok("DELE 1")
            p.quit()
        with open(explicit, "rb") as f:
            eq(f.read(), mbox_bytes([(envelope(i), five()[i - 1])
                                     for i in (2, 3)]), "explicit maildrop")
        eq(env.read_mbox("explicit"), mbox_bytes(five()), "template mbox")


@test
def users_file_missing():
    with Env() as env:
        env.write_mbox("alice", five())
        args = env.argv()
        args[args.index("-f") + 1] = os.path.join(env.dir, "no-such-file")
        p = env.spawn(args)
        # Either a configuration error before the greeting, or a greeting
        # and -ERR [SYS/TEMP] at PASS.
        try:
            g = p.line()
        except AssertionError:
            rc = p.wait()
            check(rc != 0, "exit status 0 without a users file")
            return
        check(g.startswith("+OK"), "greeting %r" % g)
        p.ok("USER alice")
        r = p.err("PASS " + PW)
        check("[SYS/TEMP]" in r or "[SYS/PERM]" in r,
              "PASS without a readable users file: %r" % r)


@test
def usage_errors():
    with Env() as env:
        for args in [["-Z"], ["-t", "abc"], ["-D", "x"], ["-a", "1x"],
                     ["extra-operand"]]:
            p = env.spawn(env.argv() + args)
            out = p.expect_eof()
            rc = p.wait()
            eq(rc, 64, "exit status for bad flags %r" % args)
            check(not out.startswith(b"+OK"),
                  "greeting despite bad flags %r: %r" % (args, out))


# ============================================================ TRANSACTION

@test
def stat_list_uidl_formats_and_sizes():
    msgs = five()
    with env_with(msgs) as env:
        p = env.session("alice", PW)
        n, octets = parse_stat(p.ok("STAT"))
        eq(n, 5, "STAT count")
        eq(octets, sum(len(wire(m)) for m in msgs), "STAT octets")
        p.err("STAT 1")
        eq(parse_list(p.ok_multi("LIST")),
           [(i + 1, len(wire(m))) for i, m in enumerate(msgs)], "LIST")
        for i, m in enumerate(msgs):
            eq(p.ok("LIST %d" % (i + 1)),
               "+OK %d %d" % (i + 1, len(wire(m))), "LIST %d" % (i + 1))
        u = parse_uidl(p.ok_multi("UIDL"))
        eq([x[0] for x in u], [1, 2, 3, 4, 5], "UIDL numbers")
        eq(len(set(x[1] for x in u)), 5, "UIDLs unique")
        for i, uid in u:
            eq(p.ok("UIDL %d" % i), "+OK %d %s" % (i, uid), "UIDL %d" % i)
        p.quit()
        eq(env.read_mbox("alice"), mbox_bytes(msgs),
           "mbox after QUIT without deletions")


@test
def transaction_argument_errors():
    with env_with(five()) as env:
        p = env.session("alice", PW)
        for c in ["STAT x", "NOOP x", "RSET x", "QUIT x", "CAPA x",
                  "LIST x", "LIST 1 2", "RETR", "RETR x", "RETR 1 2",
                  "DELE", "DELE x", "DELE 1 2", "TOP", "TOP 1", "TOP x 1",
                  "TOP 1 x", "TOP 1 1 1", "TOP 1 -1", "TOP 1 +1", "TOP 1 1x",
                  "TOP 1 99999999999999999999999", "UIDL x", "UIDL 1 2"]:
            p.err(c)
        # None of the above deleted anything or quit.
        eq(parse_stat(p.ok("STAT"))[0], 5, "STAT after bad arguments")
        p.quit()
        eq(env.read_mbox("alice"), mbox_bytes(five()), "mbox")


@test
def message_numbers_strict():
    bad = ["0", "-1", "+1", "1x", "x1", "1.0", "0x1", " 1", "1e0",
           "99999999999999999999999", "18446744073709551616",
           "18446744073709551617", "4294967297", "4294967296"]
    with env_with(five()) as env:
        p = env.session("alice", PW)
        for n in bad:
            for c in ["RETR %s", "LIST %s", "UIDL %s", "TOP %s 0",
                      "DELE %s"]:
                p.err(c % n)
        eq(parse_stat(p.ok("STAT"))[0], 5, "STAT after bad numbers")
        p.quit()
        eq(env.read_mbox("alice"), mbox_bytes(five()), "mbox")


@test
def message_number_count_and_count_plus_one():
    msgs = five()
    with env_with(msgs) as env:
        p = env.session("alice", PW)
        p.ok("LIST 5")
        p.err("LIST 6")
        p.ok("UIDL 5")
        p.err("UIDL 6")
        eq(retr(p, 5), stuffed(msgs[4]), "RETR 5")
        p.err("RETR 6")
        p.ok("TOP 5 0")
        p.multi()
        p.err("TOP 6 0")
        p.err("DELE 6")
        p.ok("DELE 5")
        p.err("DELE 5")
        p.err("LIST 6")
        p.quit()
        eq(env.read_mbox("alice"), mbox_bytes(msgs[:4]), "mbox")


@test
def deleted_messages():
    msgs = five()
    with env_with(msgs) as env:
        p = env.session("alice", PW)
        uids = uidl_map(p)
        p.ok("DELE 2")
        p.ok("DELE 4")
        for c in ["LIST 2", "RETR 2", "TOP 2 0", "UIDL 2", "DELE 2",
                  "LIST 4", "RETR 4", "TOP 4 1", "UIDL 4", "DELE 4"]:
            p.err(c)
        keep = [1, 3, 5]
        eq(parse_stat(p.ok("STAT")),
           (3, sum(len(wire(msgs[i - 1])) for i in keep)), "STAT")
        eq(parse_list(p.ok_multi("LIST")),
           [(i, len(wire(msgs[i - 1]))) for i in keep], "LIST")
        eq(parse_uidl(p.ok_multi("UIDL")), [(i, uids[i]) for i in keep],
           "UIDL")
        eq(retr(p, 3), stuffed(msgs[2]), "RETR 3 (numbers are stable)")
        # RSET undeletes everything.
        p.ok("RSET")
        eq(parse_stat(p.ok("STAT"))[0], 5, "STAT after RSET")
        eq(p.ok("LIST 2"), "+OK 2 %d" % len(wire(msgs[1])), "LIST 2")
        eq(retr(p, 4), stuffed(msgs[3]), "RETR 4 after RSET")
        p.ok("DELE 1")
        p.ok("DELE 3")
        p.quit()
        eq(env.read_mbox("alice"), mbox_bytes([(envelope(i), msgs[i - 1])
                                                for i in [2, 4, 5]]),
           "mbox after QUIT")


@test
def rset_then_quit_keeps_everything():
    with env_with(five()) as env:
        p = env.session("alice", PW)
        for i in range(1, 6):
            p.ok("DELE %d" % i)
        eq(parse_stat(p.ok("STAT")), (0, 0), "STAT all deleted")
        eq(p.ok_multi("LIST"), [], "LIST all deleted")
        eq(p.ok_multi("UIDL"), [], "UIDL all deleted")
        p.ok("RSET")
        p.ok("NOOP")
        p.quit()
        eq(env.read_mbox("alice"), mbox_bytes(five()), "mbox")


@test
def quit_deletes_all():
    with env_with(five()) as env:
        p = env.session("alice", PW)
        for i in range(1, 6):
            p.ok("DELE %d" % i)
        p.quit()
        check(env.read_mbox("alice") in (b"", None),
              "mbox after deleting all: %s" % short(env.read_mbox("alice")))
        p = env.session("alice", PW)
        eq(parse_stat(p.ok("STAT")), (0, 0), "STAT of the emptied maildrop")
        p.quit()


@test
def eof_applies_nothing():
    with env_with(five()) as env:
        p = env.session("alice", PW)
        p.ok("DELE 1")
        p.ok("DELE 5")
        p.close_input()
        p.expect_eof()
        p.wait()
        eq(env.read_mbox("alice"), mbox_bytes(five()), "mbox after EOF")
        # Also with a partial command line pending.
        p = env.session("alice", PW)
        p.ok("DELE 2")
        p.send(b"QUI")
        p.close_input()
        p.expect_eof()
        p.wait()
        eq(env.read_mbox("alice"), mbox_bytes(five()),
           "mbox after EOF in mid-line")


@test
def idle_timeout():
    with env_with(five()) as env:
        # AUTHORIZATION
        p = env.start(t=1)
        p.ok("USER alice")
        t0 = time.monotonic()
        p.expect_eof(timeout=10 * SLOW)
        print("# -t 1: closed after %.2fs idle in AUTHORIZATION"
              % (time.monotonic() - t0))
        # TRANSACTION: deletions are not applied
        p = env.session("alice", PW, t=1)
        p.ok("DELE 1")
        p.ok("DELE 2")
        t0 = time.monotonic()
        p.expect_eof(timeout=10 * SLOW)
        print("# -t 1: closed after %.2fs idle in TRANSACTION"
              % (time.monotonic() - t0))
        check(p.wait() != 0, "exit status 0 after a timeout")
        eq(env.read_mbox("alice"), mbox_bytes(five()), "mbox after timeout")
        # A partial line does not count as activity.
        p = env.session("alice", PW, t=1)
        p.ok("DELE 1")
        p.send(b"QUI")
        p.expect_eof(timeout=10 * SLOW)
        eq(env.read_mbox("alice"), mbox_bytes(five()), "mbox after timeout")


@test
def idle_timeout_closes_without_a_response():
    # RFC 1939 §3: "When the timer expires, the session does NOT enter the
    # UPDATE state--the server should close the TCP connection without
    # removing any messages or sending any response to the client."  An
    # unsolicited line would be taken for the answer to whatever command
    # the client sends at that moment.  In AUTHORIZATION, at an AUTH PLAIN
    # challenge, and in TRANSACTION after answers the client had read.
    with env_with(five()) as env:
        p = env.start(t=1)
        eq(p.expect_eof(timeout=10 * SLOW), b"", "sent on AUTHORIZATION's "
           "autologout")
        check(p.wait() != 0, "exit status 0 after a timeout")
        p = env.start(t=1)
        eq(p.cmd("AUTH PLAIN"), "+ ", "AUTH PLAIN challenge")
        eq(p.expect_eof(timeout=10 * SLOW), b"", "sent on the autologout "
           "at a SASL challenge")
        p = env.session("alice", PW, t=1)
        p.ok("DELE 1")
        p.ok_multi("LIST")
        eq(p.expect_eof(timeout=10 * SLOW), b"", "sent on TRANSACTION's "
           "autologout")
        check(p.wait() != 0, "exit status 0 after a timeout")
        eq(env.read_mbox("alice"), mbox_bytes(five()), "mbox after timeout")


def big_and_small():
    """A ~1.5 MB message and two small ones."""
    return [message(1, body=(b"y" * 76 + b"\n") * 20000), message(2),
            message(3)]


@test
def client_that_reads_nothing_is_dropped():
    # RFC 1939 §3's autologout also when pop3d waits to write: a client
    # that pipelines RETRs and then reads nothing, over a pipe (poll) and
    # over a socket (SO_SNDTIMEO), is dropped after the idle timeout,
    # with no UPDATE, and the maildrop is free again.  Before login too:
    # the pre-login process, asked for ~800 KB of CAPA answers.
    for transport, login in (("pipe", 1), ("socket", 1), ("pipe", 0),
                             ("socket", 0)):
        if not login:
            transport += " before login"
        with env_with(big_and_small()) as env:
            before = env.read_mbox("alice")
            errpath = os.path.join(env.dir, "stall.stderr")
            cmd = ([BIN] if not VALGRIND else VALGRIND_CMD + [BIN])
            cmd += env.argv(t=1)
            batch = b"USER alice\r\nPASS " + PW.encode() + \
                b"\r\nDELE 2\r\n" + b"RETR 1\r\n" * 10 if login else \
                b"CAPA\r\n" * 6000
            with open(errpath, "wb") as err:
                if transport.startswith("pipe"):
                    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE,
                                            stderr=err)
                    proc.stdin.write(batch)
                    proc.stdin.flush()
                    ours = None
                else:
                    ours, theirs = socket.socketpair()
                    proc = subprocess.Popen(cmd, stdin=theirs,
                                            stdout=theirs, stderr=err)
                    theirs.close()
                    ours.sendall(batch)
            try:
                t0 = time.monotonic()
                try:
                    rc = proc.wait(timeout=10 * SLOW)
                except subprocess.TimeoutExpired:
                    fail("%s: pop3d -t 1 still waits to write after %ds"
                         % (transport, 10 * SLOW))
                took = time.monotonic() - t0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                if ours is not None:
                    ours.close()
                else:
                    proc.stdin.close()
                    proc.stdout.close()
            print("# %s: dropped %.2fs after the batch (-t 1)"
                  % (transport, took))
            check(rc not in (0, 99) and rc > 0,
                  "%s: exit status %r" % (transport, rc))
            with open(errpath, "rb") as f:
                log = f.read().decode("latin-1")
            check("idle timeout: the client reads nothing" in log,
                  "%s: not logged as an idle timeout: %r"
                  % (transport, log[-400:]))
            eq(env.read_mbox("alice"), before,
               "%s: mbox (DELE 2 must not be applied)" % transport)
            q = env.session("alice", PW)
            q.quit()


@test
def tcp_options_bound_a_vanished_or_stalled_client():
    # pop3d.8 Limits: on TCP, keepalives after 60 s, every 15 s, 4 probes;
    # a send gives up after the idle timeout (SO_SNDTIMEO, -t); no Nagle.
    # Read back through a descriptor of the test's own for the very
    # socket pop3d serves, before and after login.
    import struct
    with env_with(five()) as env:
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        c = socket.create_connection(ls.getsockname())
        s, _ = ls.accept()
        ls.close()
        cmd = ([BIN] if not VALGRIND else VALGRIND_CMD + [BIN])
        errpath = os.path.join(env.dir, "tcp.stderr")
        with open(errpath, "wb") as err:
            proc = subprocess.Popen(cmd + env.argv(t=7), stdin=s, stdout=s,
                                    stderr=err)
        try:
            f = c.makefile("rb")
            for when, send in (("before login", None),
                               ("after login", b"USER alice\r\nPASS " +
                                PW.encode() + b"\r\n")):
                if send is None:
                    check(f.readline().startswith(b"+OK"), "greeting")
                else:
                    c.sendall(send)
                    check(f.readline().startswith(b"+OK"), "USER")
                    check(f.readline().startswith(b"+OK"), "PASS")
                got = (s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                       s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                       s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                       s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                       s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
                       struct.unpack("ll", s.getsockopt(
                           socket.SOL_SOCKET, socket.SO_SNDTIMEO, 16)))
                eq(got, (1, 60, 15, 4, 1, (7, 0)), "keepalive, idle, "
                   "interval, count, nodelay, send timeout " + when)
            c.sendall(b"QUIT\r\n")
            check(f.readline().startswith(b"+OK"), "QUIT")
            eq(proc.wait(10 * SLOW), 0, "exit status")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            s.close()
            c.close()


@test
def time_spent_writing_is_not_idle_time():
    # The idle deadline starts when pop3d has written all its output: a
    # client that reads a RETR slowly but steadily, for longer than the
    # timeout, and then sends its next command at once, is not idle.  The
    # message is one 128 KB output buffer and ~90 KB more.  The test reads
    # at once until just before pop3d's first flush returns, then 8 KB
    # every 0.25 s (about 3 s in all, during pop3d's last flush) up to
    # the last pipe's worth and 16 KB, then at once again: pop3d's last
    # write returns only in that fast part, so no data waits in the pipe
    # past the deadline.
    msg = message(1, body=(b"z" * 76 + b"\n") * 2800)
    total = len(stuffed(msg))
    with env_with([msg]) as env:
        p = env.session("alice", PW, t=1)
        pipe = fcntl.fcntl(p.out, 1032)         # F_GETPIPE_SZ
        slow_from = max(0, 128 * 1024 - pipe - 32768)
        slow_until = total - pipe - 16384
        os.write(p.inp, b"RETR 1\r\n")
        got = b""
        t0 = time.monotonic()
        while not got.endswith(b"\r\n.\r\n"):
            if slow_from <= len(got) < slow_until:
                time.sleep(0.25)
                want = 8192
            else:
                select.select([p.out], [], [], 10 * SLOW)
                want = min(1 << 20, max(1, slow_from - len(got))) \
                    if len(got) < slow_from else 1 << 20
            try:
                chunk = os.read(p.out, want)
            except BlockingIOError:
                continue
            if not chunk:
                fail("pop3d closed during the slow read: %r"
                     % p.stderr()[-300:])
            got += chunk
        took = time.monotonic() - t0
        check(took > 1.5, "the slow read took only %.2fs" % took)
        check(got.startswith(b"+OK"), "RETR: %r" % got[:40])
        r = p.cmd("NOOP")
        eq(r, "+OK", "NOOP right after %.1fs of slow reading" % took)
        p.quit()


@test
def idle_timeout_is_per_line_not_per_byte():
    # pop3d.h: IO_TIMEOUT means "no complete line within the deadline": a
    # client trickling one byte every 0.3 s must not hold the lock forever.
    with env_with(five()) as env:
        p = env.session("alice", PW, t=1)
        deadline = time.monotonic() + 8 * SLOW
        closed = False
        while time.monotonic() < deadline:
            if not p.send(b"N", allow_closed=True):
                closed = True
                break
            p._fill(time.monotonic() + 0.3)
            if p.eof:
                closed = True
                break
        check(closed, "-t 1: a line trickled byte by byte kept the session "
              "open for %ds" % (8 * SLOW))
        eq(env.read_mbox("alice"), mbox_bytes(five()), "mbox")


@test
def noop_rset_in_transaction():
    with env_with(five()) as env:
        p = env.session("alice", PW)
        p.ok("NOOP")
        p.ok("RSET")
        p.ok("NOOP")
        p.quit()


# ============================================================ line bounds

@test
def line_255_accepted_256_refused():
    pw248 = "p" * 100 + " " + "q" * 100 + " " + "r" * 46      # 248 chars
    pw249 = pw248 + "s"
    assert len(pw248) == 248
    with Env() as env:
        env.add_user("long", pw248)
        env.add_user("longer", pw249)
        env.write_mbox("long", five())
        env.write_mbox("longer", five())
        # "PASS " + 248 + CRLF = 255 octets: accepted, logs in.
        p = env.start()
        p.ok("USER long")
        line = b"PASS " + pw248.encode() + b"\r\n"
        eq(len(line), 255, "test line length")
        p.send(line)
        p.expect_ok("PASS with a 255-octet line")
        p.ok("STAT")
        p.quit()
        # 256 octets: refused, not logged in, the session goes on.
        p = env.start()
        p.ok("USER longer")
        line = b"PASS " + pw249.encode() + b"\r\n"
        eq(len(line), 256, "test line length")
        p.send(line)
        p.expect_err("PASS with a 256-octet line")
        p.err("STAT")
        p.ok("CAPA")
        p.multi()
        p.login("long", pw248)
        p.quit()


@test
def long_line_tail_never_executed():
    msgs = five()
    with env_with(msgs) as env:
        p = env.session("alice", PW)
        # 255 octets: one answer (unknown command), 256: one answer.
        lines = [b"A" * 253 + b"\r\n", b"A" * 254 + b"\r\n"]
        # Longer lines whose tails would be commands if the reader split
        # the line anywhere from octet 248 to 265.
        # (DELE 1 + CRLF is 8 octets, QUIT + CRLF 6).
        for pad in range(248, 266):
            lines.append(b"X" * pad + b"DELE 1\r\n")
        for pad in range(250, 266, 2):
            lines.append(b"Y" * pad + b"QUIT\r\n")
        lines.append(b"Z" * 5000 + b"DELE 2\r\n")
        lines.append(b"W" * 100000 + b"QUIT\r\n")
        for l in lines[2:]:
            check(len(l) > 255, "test line too short")
        p.send(b"".join(lines) + b"NOOP\r\n")
        for i, l in enumerate(lines):
            r = p.line()
            check(r.startswith("-ERR"), "line %d (%d octets): %r"
                  % (i, len(l), r))
        r = p.line()
        eq(r[:3], "+OK", "NOOP after the long lines (an extra answer means "
           "a tail ran as a command): %r" % r)
        # The same with the line arriving in two writes, so that pop3d
        # has read (and must discard) the head before the tail arrives.
        for head, tail in [(b"X" * 255, b"DELE 1\r\n"),
                           (b"X" * 256, b"DELE 1\r\n"),
                           (b"X" * 300, b"DELE 1\r\n"),
                           (b"X" * 254, b"\r\n"),
                           (b"X" * 20000, b"DELE 1\r\n")]:
            p.send(head)
            time.sleep(0.1)
            p.send(tail + b"NOOP\r\n")
            p.expect_err("%d + %d octets in two writes" % (len(head),
                                                          len(tail)))
            r = p.line()
            eq(r[:3], "+OK", "NOOP after %d + %d octets in two writes "
               "(an extra answer means the tail ran as a command): %r"
               % (len(head), len(tail), r))
        eq(parse_stat(p.ok("STAT"))[0], 5, "STAT")
        p.quit()
        eq(env.read_mbox("alice"), mbox_bytes(msgs), "mbox")


@test
def long_line_in_authorization():
    with env_with(five()) as env:
        p = env.start()
        p.ok("USER alice")
        # A tail "PASS <right password>" must not log in.
        p.send(b"X" * 255 + b"PASS " + PW.encode() + b"\r\n")
        p.expect_err("long line")
        p.err("STAT")
        p.send(b"U" * 70000 + b"\r\n")
        p.expect_err("70000-octet line")
        p.login("alice", PW)
        p.quit()


@test
def nul_and_bare_cr_refused():
    with env_with(five()) as env:
        p = env.start()
        p.err(b"USER alice\x00")
        p.err(b"\x00")
        p.ok("USER alice")
        p.err(b"PASS " + PW.encode() + b"\x00")    # refused, not checked
        p.err("STAT")
        p.ok("USER alice")
        p.err(b"PASS " + PW.encode() + b"\rX")     # bare CR
        p.err("STAT")
        p.login("alice", PW)
        for bad in [b"NOOP\x00", b"\x00NOOP", b"NO\x00OP", b"DELE 1\x00",
                    b"DELE\x001", b"NOOP\rDELE 1", b"\rDELE 2",
                    b"DELE 3\r\r"]:
            p.err(bad)
        p.ok("NOOP")
        eq(parse_stat(p.ok("STAT"))[0], 5, "STAT")
        p.quit()
        eq(env.read_mbox("alice"), mbox_bytes(five()), "mbox")


@test
def bare_lf_and_split_writes():
    with env_with(five()) as env:
        p = env.start()
        p.send(b"USER alice\n")
        p.expect_ok("USER with bare LF")
        p.send(b"PASS " + PW.encode() + b"\n")
        p.expect_ok("PASS with bare LF")
        p.send(b"STAT\n")
        eq(parse_stat(p.expect_ok("STAT"))[0], 5, "STAT")
        # A command arriving one byte at a time, CRLF split too.
        for b in b"LIST 3\r\n":
            p.send(bytes([b]))
            time.sleep(0.01)
        p.expect_ok("LIST 3 sent byte by byte")
        p.send(b"NO")
        time.sleep(0.05)
        p.send(b"OP\r")
        time.sleep(0.05)
        p.send(b"\nNOOP\r\n")
        p.expect_ok("NOOP split")
        p.expect_ok("NOOP")
        p.quit()


# ============================================================ pipelining

@test
def pipelining_1000_commands_in_one_write():
    msgs = five()
    with env_with(msgs) as env:
        p = env.session("alice", PW)
        uid1 = p.ok("UIDL 1").split(" ")[2]
        size1 = len(wire(msgs[0]))
        total = sum(len(wire(m)) for m in msgs)
        cmds, expect = [], []
        for i in range(1000):
            k = i % 4
            if k == 0:
                cmds.append(b"NOOP")
                expect.append(None)
            elif k == 1:
                cmds.append(b"LIST 1")
                expect.append("+OK 1 %d" % size1)
            elif k == 2:
                cmds.append(b"UIDL 1")
                expect.append("+OK 1 %s" % uid1)
            else:
                cmds.append(b"STAT")
                expect.append("+OK 5 %d" % total)
        p.send(b"\r\n".join(cmds) + b"\r\n")
        for i, e in enumerate(expect):
            r = p.line()
            if e is None:
                check(r.startswith("+OK"), "answer %d (NOOP): %r" % (i, r))
            else:
                eq(r, e, "answer %d (%s)" % (i, cmds[i].decode()))
        p.quit()


@test
def pipelining_multiline_and_login():
    msgs = five()
    with env_with(msgs) as env:
        p = env.start()
        # The whole session in one write, a failed login included.
        s = (b"CAPA\r\nUSER alice\r\nPASS wrong\r\nUSER alice\r\nPASS " +
             PW.encode() + b"\r\nSTAT\r\nLIST\r\n" +
             b"".join(b"RETR %d\r\nTOP %d 1\r\n" % (i, i)
                      for i in range(1, 6)) * 20 +
             b"DELE 1\r\nUIDL\r\nQUIT\r\n")
        p.send(s)
        p.expect_ok("CAPA")
        p.multi()
        p.expect_ok("USER")
        p.expect_err("PASS wrong")
        p.expect_ok("USER")
        p.expect_ok("PASS")
        eq(parse_stat(p.expect_ok("STAT"))[0], 5, "STAT")
        p.expect_ok("LIST")
        eq(len(p.multi()), 5, "LIST lines")
        for _ in range(20):
            for i in range(1, 6):
                p.expect_ok("RETR %d" % i)
                eq(p.multi_raw() + b".\r\n", stuffed(msgs[i - 1]),
                   "pipelined RETR %d" % i)
                p.expect_ok("TOP %d 1" % i)
                eq(p.multi_raw() + b".\r\n", top_stuffed(msgs[i - 1], 1),
                   "pipelined TOP %d 1" % i)
        p.expect_ok("DELE 1")
        p.expect_ok("UIDL")
        eq(len(p.multi()), 4, "UIDL lines")
        p.expect_ok("QUIT")
        p.expect_eof()
        eq(p.wait(), 0, "exit status")
        eq(env.read_mbox("alice"),
           mbox_bytes([(envelope(i), msgs[i - 1]) for i in range(2, 6)]),
           "mbox")


# ======================================================== byte-exact RETR

def odd_messages():
    big = b"".join((b"." * (i % 5)) + (b"x" * (i * 7 % 301)) + b"\n"
                   for i in range(4000))
    return [
        message(1),
        message(2, subject=b"dots", body=b".\n..\n...\n.foo\n. \n"
                b"middle . dot\n.\nend\n"),
        message(3, subject=b"from lines", body=b">From the start\n"
                b">>From deeper\nFrom here, not after an empty line\n"
                b"text\n>From again\n"),
        message(4, subject=b"empty body", body=b""),
        message(5, subject=b"odd bytes", body=b"tab\there  \n"
                b"latin1 \xe9\xff\x80\n" + b"L" * 10000 + b"\n"
                b"mid\rcr\n\n\ntwo empty lines above\n"),
        b"Subject: header only\n",
        message(7, subject=b"big", body=big),
        message(8, subject=b"no final newline",
                body=b"first\n.dot line\nlast line without newline"),
    ]


@test
def retr_byte_exact():
    msgs = odd_messages()
    with env_with(msgs) as env:
        p = env.session("alice", PW)
        sizes = parse_list(p.ok_multi("LIST"))
        eq(len(sizes), len(msgs), "LIST count")
        for i, m in enumerate(msgs):
            eq(sizes[i], (i + 1, len(wire(m))), "LIST size of message %d"
               % (i + 1))
            got = retr(p, i + 1)
            eq(got, stuffed(m), "RETR %d" % (i + 1))
        eq(parse_stat(p.ok("STAT")),
           (len(msgs), sum(len(wire(m)) for m in msgs)), "STAT")
        p.quit()
        eq(env.read_mbox("alice"), mbox_bytes(msgs), "mbox untouched")


@test
def retr_stored_crlf():
    m = (b"Subject: crlf\r\nFrom: a@example.org\r\n\r\nline one\r\n"
         b".dot\r\nline three\r\n")
    with env_with([message(1), m, message(3)]) as env:
        p = env.session("alice", PW)
        eq(p.ok("LIST 2"), "+OK 2 %d" % len(wire(m)), "LIST 2")
        eq(retr(p, 2), stuffed(m), "RETR of a CRLF-stored message")
        eq(retr(p, 3), stuffed(message(3)), "RETR 3")
        p.ok("TOP 2 1")
        eq(p.multi_raw() + b".\r\n", top_stuffed(m, 1), "TOP 2 1")
        p.quit()


@test
def top_bounds():
    msgs = odd_messages()
    with env_with(msgs) as env:
        p = env.session("alice", PW)
        for i in [1, 2, 3, 5, 7, 8]:
            m = msgs[i - 1]
            nbody = len(split_lines(m)) - split_lines(m).index(b"") - 1
            for k in [0, 1, 2, nbody - 1, nbody, nbody + 1, 1000000]:
                if k < 0:
                    continue
                p.ok("TOP %d %d" % (i, k))
                eq(p.multi_raw() + b".\r\n", top_stuffed(m, k),
                   "TOP %d %d" % (i, k))
        # The empty-body message: header and the empty line, whatever k.
        for k in [0, 5]:
            p.ok("TOP 4 %d" % k)
            eq(p.multi_raw() + b".\r\n", top_stuffed(msgs[3], k),
               "TOP 4 %d (empty body)" % k)
        # TOP does not count as RETR nor change anything.
        p.quit()
        eq(env.read_mbox("alice"), mbox_bytes(msgs), "mbox")


@test
def empty_maildrop():
    with env_with() as env:
        # Missing file.
        p = env.session("alice", PW)
        eq(parse_stat(p.ok("STAT")), (0, 0), "STAT of a missing mbox")
        eq(p.ok_multi("LIST"), [], "LIST")
        eq(p.ok_multi("UIDL"), [], "UIDL")
        for c in ["LIST 1", "RETR 1", "TOP 1 0", "UIDL 1", "DELE 1"]:
            p.err(c)
        p.ok("RSET")
        p.quit()
        check(env.read_mbox("alice") in (None, b""), "missing mbox created "
              "with content %s" % short(env.read_mbox("alice")))
        # Empty file.
        env.write_mbox("alice", [])
        p = env.session("alice", PW)
        eq(parse_stat(p.ok("STAT")), (0, 0), "STAT of an empty mbox")
        p.quit()
        eq(env.read_mbox("alice"), b"", "empty mbox")


@test
def not_an_mbox():
    raw = b"This is not an mbox.\nFrom nowhere\n"
    with env_with() as env:
        env.write_mbox("alice", None, raw=raw)
        p = env.start()
        p.ok("USER alice")
        r = p.err("PASS " + PW)
        check("[SYS/PERM]" in r or "[SYS/TEMP]" in r,
              "PASS on a file that is not an mbox: %r" % r)
        p.finish()
        eq(env.read_mbox("alice"), raw, "file untouched")


@test
def maildrop_unreadable():
    with env_with(five()) as env:
        path = env.mbox("alice")
        if IS_ROOT:
            os.chown(path, 0, 0)
            os.chmod(path, 0o600)
        else:
            os.chmod(path, 0)
        p = env.start()
        p.ok("USER alice")
        r = p.err("PASS " + PW)
        check("[SYS/PERM]" in r or "[SYS/TEMP]" in r,
              "PASS with an unreadable maildrop: %r" % r)
        p.finish()
        os.chmod(path, 0o600)
        eq(env.read_mbox("alice"), mbox_bytes(five()), "mbox")


# ====================================================== locking and UPDATE

@test
def second_session_gets_in_use():
    with env_with(five()) as env:
        a = env.session("alice", PW)
        a.ok("DELE 1")
        b = env.start()
        b.ok("USER alice")
        r = b.err("PASS " + PW)
        check(r.startswith("-ERR [IN-USE]"), "second session: %r" % r)
        b.finish()
        a.ok("STAT")
        a.quit()
        c = env.session("alice", PW)
        eq(parse_stat(c.ok("STAT"))[0], 4, "STAT after the first QUIT")
        c.quit()


@test
def dotlock_and_fcntl_lock_are_waited_for():
    import fcntl
    with env_with(five()) as env:
        # An MDA's dotlock: pop3d waits (POP3D_LOCK_WAIT), then proceeds.
        lock = env.mbox("alice") + ".lock"
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.close(fd)
        p = env.start()
        p.ok("USER alice")
        p.send("PASS " + PW + "\r\n")
        try:
            p.expect_silence(1.0)
        finally:
            os.unlink(lock)
        p.expect_ok("PASS after the dotlock went away")
        p.quit()
        # An MDA's fcntl lock on the mbox.
        with open(env.mbox("alice"), "r+b") as f:
            fcntl.lockf(f, fcntl.LOCK_EX)
            p = env.start()
            p.ok("USER alice")
            p.send("PASS " + PW + "\r\n")
            try:
                p.expect_silence(1.0)
            finally:
                fcntl.lockf(f, fcntl.LOCK_UN)
        p.expect_ok("PASS after the fcntl lock went away")
        p.quit()


@test
def fcntl_lock_is_given_back_while_the_dotlock_is_waited_for():
    # A program that locks the other way round (the dotlock first, then
    # the fcntl lock) must get the fcntl lock while pop3d waits for the
    # dotlock: pop3d gives it back between its tries (every 100 ms), or
    # the two would wait for each other until pop3d gave up (30 s).
    with env_with(five()) as env:
        lock = env.mbox("alice") + ".lock"
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.close(fd)
        p = env.start()
        p.ok("USER alice")
        p.send("PASS " + PW + "\r\n")
        try:
            p.expect_silence(1.0)       # waiting for the dotlock
            with open(env.mbox("alice"), "r+b") as f:
                deadline = time.monotonic() + 10 * SLOW
                while True:
                    try:
                        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except OSError:
                        check(time.monotonic() < deadline,
                              "pop3d held the fcntl lock for 10 s while "
                              "it waited for the dotlock")
                        time.sleep(0.01)
                # Both locks are ours now; the dotlock goes first, as the
                # other program would release them.
                os.unlink(lock)
                p.expect_silence(0.5)
                fcntl.lockf(f, fcntl.LOCK_UN)
        finally:
            if os.path.exists(lock):
                os.unlink(lock)
        p.expect_ok("PASS after both locks went away")
        eq(parse_stat(p.ok("STAT"))[0], 5, "STAT")
        p.quit()


@test
def stale_dotlocks_are_removed_live_ones_waited_for():
    # A dotlock left by a crash (its pid is gone, or it is older than
    # 300 s, readable or not) is removed and the login goes on at once.
    # One whose pid is alive, or that holds no pid (yet) or garbage, or
    # that the session may not read, is waited for.
    with env_with(five()) as env:
        lock = env.mbox("alice") + ".lock"
        live = b"%d\n" % os.getpid()
        for what, content, age in [("dead pid", b"%d\n" % dead_pid(), 0),
                                   ("301 s old", live, 301),
                                   ("unreadable 301 s old", live, 301)]:
            with open(lock, "wb") as f:
                f.write(content)
            if what.startswith("unreadable"):
                os.chmod(lock, 0)
            if age:
                t = time.time() - age
                os.utime(lock, (t, t))
            p = env.start()
            p.ok("USER alice")
            t0 = time.monotonic()
            p.ok("PASS " + PW, timeout=5 * SLOW)
            print("# %s: lock removed, logged in after %.2fs"
                  % (what, time.monotonic() - t0))
            check(not os.path.exists(lock), "%s: a lock is left" % what)
            eq(parse_stat(p.ok("STAT"))[0], 5, "STAT after a %s lock" % what)
            p.quit()
            check("removed stale " + lock in p.stderr(),
                  "%s: no log line; stderr: %r" % (what, p.stderr()))
        for what, content in [("live pid", live), ("no pid", b""),
                              ("garbage", b"x\x00\n"),
                              ("unreadable", b"%d\n" % dead_pid()),
                              # Beyond pid_t: no pid, not -1 or a group.
                              ("2^32 - 1", b"4294967295\n"),
                              ("2^31", b"2147483648\n"),
                              ("40 digits", b"9" * 40 + b"\n"),
                              # pop3d.8: stale only when older than 300 s.
                              ("live pid 290 s old", live)]:
            with open(lock, "wb") as f:
                f.write(content)
            if what == "unreadable":
                os.chmod(lock, 0)       # its pid cannot be known
            if what.endswith(" s old"):
                t = time.time() - 290
                os.utime(lock, (t, t))
            ino = os.stat(lock).st_ino
            p = env.start()
            p.ok("USER alice")
            p.send("PASS " + PW + "\r\n")
            try:
                p.expect_silence(1.0)
                check(os.path.exists(lock), "%s: lock removed" % what)
                eq(os.stat(lock).st_ino, ino, "%s: the lock" % what)
            finally:
                if os.path.exists(lock):
                    os.unlink(lock)
            p.expect_ok("PASS after the %s lock went away" % what)
            p.quit()


@test
def quit_waits_for_each_delivery_lock_alone():
    # UPDATE takes the fcntl lock and the dotlock, so an agent that takes
    # only one of them (as some do) never appends while bytes move: QUIT
    # waits for it, and what it appended under its lock is kept.
    import deliver
    msgs = five()
    new = mbox_bytes([(envelope(100), message(100))])
    for mode in ("fcntl-only", "dotlock-only"):
        with env_with(msgs) as env:
            path = env.mbox("alice")
            p = env.session("alice", PW)
            p.ok("DELE 1")
            p.ok("DELE 3")
            # One descriptor only: closing another would drop our fcntl
            # lock (POSIX), as deliver.py's comment says.
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
            try:
                deliver.lock(fd, path, mode)
                try:
                    p.send("QUIT\r\n")
                    p.expect_silence(1.0)
                    eq(os.write(fd, new), len(new), "append under " + mode)
                finally:
                    deliver.unlock(fd, path, mode)
            finally:
                os.close(fd)
            p.expect_ok("QUIT after the %s lock went away" % mode)
            p.expect_eof()
            eq(p.wait(), 0, "exit status after QUIT")
            want = mbox_bytes([(envelope(i), msgs[i - 1]) for i in (2, 4, 5)])
            eq(env.read_mbox("alice"), want + new,
               "mbox after QUIT waited for the %s lock" % mode)


@test
def new_mail_during_session_survives_quit():
    old = [message(i) for i in range(1, 4)]
    new = [message(i) for i in range(11, 13)]
    for dele, keep in [([1], [1, 2]), ([3], [0, 1]), ([2], [0, 2]),
                       ([1, 2, 3], []), ([], [0, 1, 2])]:
        with env_with(old) as env:
            p = env.session("alice", PW)
            env.append_mbox("alice", new)
            eq(parse_stat(p.ok("STAT"))[0], 3, "STAT (new mail not shown)")
            eq(len(p.ok_multi("LIST")), 3, "LIST (new mail not shown)")
            eq(len(p.ok_multi("UIDL")), 3, "UIDL (new mail not shown)")
            p.err("RETR 4")
            p.err("LIST 4")
            for d in dele:
                p.ok("DELE %d" % d)
            p.quit()
            want = ([(envelope(i + 1), old[i]) for i in keep] +
                    [(envelope(100 + i), m) for i, m in enumerate(new)])
            eq(env.read_mbox("alice"), mbox_bytes(want),
               "mbox after DELE %s with new mail behind" % dele)
            p = env.session("alice", PW)
            eq(parse_stat(p.ok("STAT"))[0], len(want), "next session STAT")
            for i, (_, m) in enumerate(want):
                eq(retr(p, i + 1), stuffed(m),
                   "next session RETR %d" % (i + 1))
            p.quit()


@test
def new_mail_with_its_separator_before_it():
    # An mbox whose last message ends without the empty line, and an
    # agent that writes the empty line before the new message instead
    # (as mbox.c's appended() accepts).  Deleting the last message, or
    # all of them, must not leave that empty line behind: the message
    # before would gain an empty line, and with nothing before, the file
    # would start with it and be no mbox at all (found in review).  With
    # the last message kept, the empty line is its separator.
    old = [message(i) for i in range(1, 4)]
    raw = mbox_bytes([(envelope(i + 1), m) for i, m in enumerate(old)])
    raw = raw[:-1]                     # the last message ends "\n" only
    for crlf in (False, True):
        nl = b"\r\n" if crlf else b"\n"
        new = nl + envelope(11) + b"\n" + message(11)
        for dele, keep in (([3], [0, 1]), ([1, 2, 3], []), ([1], [1, 2])):
            with env_with() as env:
                env.write_mbox("alice", None, raw=raw)
                p = env.session("alice", PW)
                before = [retr(p, i + 1) for i in range(3)]
                with open(env.mbox("alice"), "ab") as f:
                    f.write(new)
                for d in dele:
                    p.ok("DELE %d" % d)
                p.quit()
                got = env.read_mbox("alice")
                check(got.startswith(b"From "),
                      "mbox after DELE %s does not start with From: %r"
                      % (dele, got[:20]))
                p = env.session("alice", PW)
                eq(parse_stat(p.ok("STAT"))[0], len(keep) + 1,
                   "STAT after DELE %s%s" % (dele, ", CRLF" if crlf else ""))
                for i, k in enumerate(keep):
                    eq(retr(p, i + 1), before[k],
                       "RETR %d after DELE %s%s: the kept message changed"
                       % (i + 1, dele, ", CRLF" if crlf else ""))
                eq(retr(p, len(keep) + 1), stuffed(message(11)),
                   "the new message after DELE %s" % dele)
                p.quit()
    # What follows the empty line is no "From " line (a truncated or
    # foreign append, or a line just "\nFrom" short of its space): every
    # byte of it stays, behind message 2's own empty line.
    for tail in (b"\nX-Not: a message\n", b"\nFrom", b"\n\0From x\n"):
        with env_with() as env:
            env.write_mbox("alice", None, raw=raw)
            p = env.session("alice", PW)
            with open(env.mbox("alice"), "ab") as f:
                f.write(tail)
            p.ok("DELE 3")
            p.quit()
            eq(env.read_mbox("alice"),
               mbox_bytes([(envelope(i + 1), m)
                           for i, m in enumerate(old[:2])]) + tail,
               "mbox after DELE 3 with %r appended" % tail)


@test
def foreign_rewrite_during_session():
    # A mail reader expunges message 1 in place while pop3d serves the
    # maildrop: the scan's offsets are stale.  pop3d must not send wrong
    # bytes as a message, and QUIT must not apply stale deletions (the
    # commit "foreign-rewrite checks": -ERR [SYS/TEMP], file as the reader
    # left it).
    msgs = five()
    rewritten = mbox_bytes([(envelope(i), msgs[i - 1]) for i in range(2, 6)])
    with env_with(msgs) as env:
        p = env.session("alice", PW)
        with open(env.mbox("alice"), "r+b") as f:
            f.write(rewritten)
            f.truncate()
        p.send(b"RETR 3\r\n")
        r = p.line()
        if r.startswith("+OK"):
            try:
                body = p.multi_raw() + b".\r\n"
            except AssertionError:
                body = None          # closed in mid-message: acceptable
            if body is not None:
                eq(body, stuffed(msgs[2]), "RETR 3 after a foreign rewrite")
        if not p.eof:
            try:
                p.ok("DELE 1")
                r = p.cmd("QUIT")
                check(r.startswith("-ERR [SYS/"),
                      "QUIT with stale offsets: %r" % r)
            except AssertionError:
                if not p.eof:
                    raise            # else the connection ended: acceptable
        p.finish()
        eq(env.read_mbox("alice"), rewritten, "mbox as the reader left it")


@test
def quit_without_a_place_for_the_journal():
    # DESIGN.md: no writable place for the journal means no compaction:
    # QUIT answers -ERR [SYS/PERM] and the maildrop is untouched.  Deleting
    # only the last messages is a single ftruncate and still works.
    with env_with() as env:
        spool = os.path.join(env.dir, "spool")
        os.mkdir(spool)
        os.chmod(spool, 0o755 if IS_ROOT else 0o555)
        path = os.path.join(spool, "alice")
        try:
            if not IS_ROOT:
                os.chmod(spool, 0o755)
            with open(path, "wb") as f:
                f.write(mbox_bytes(five()))
            env.own(path, 0o600)
            if not IS_ROOT:
                os.chmod(spool, 0o555)
            tmpl = os.path.join(spool, "%u")
            p = env.session("alice", PW, template=tmpl)
            p.ok("DELE 2")
            r = p.cmd("QUIT")
            check(r.startswith("-ERR [SYS/PERM]"),
                  "QUIT that needs a journal where none can be written: %r"
                  % r)
            p.expect_eof()
            with open(path, "rb") as f:
                eq(f.read(), mbox_bytes(five()), "mbox after a failed QUIT")
            p = env.session("alice", PW, template=tmpl)
            p.ok("DELE 4")
            p.ok("DELE 5")
            p.quit()
            with open(path, "rb") as f:
                eq(f.read(), mbox_bytes(five()[:3]),
                   "mbox after deleting the last two")
        finally:
            os.chmod(spool, 0o755)


@test
def update_survives_file_size_limit():
    # STYLE.md: fill the disk (RLIMIT_FSIZE) during UPDATE; every message
    # must survive: afterwards the maildrop holds either all messages or
    # exactly those not deleted, never a mix.  A system failure is answered
    # -ERR [SYS/...] (STYLE.md, Errors): pop3d must not die of SIGXFSZ,
    # which also leaves its dotlock behind and blocks the next session for
    # POP3D_LOCK_WAIT seconds.
    msgs = [message(i, body=(b"line %d of a biggish body\n" % i) * 80)
            for i in range(1, 6)]
    full = mbox_bytes(msgs)
    after = mbox_bytes([(envelope(i), msgs[i - 1]) for i in range(2, 6)])
    outcomes, problems = [], []
    limits = [64, 1500, len(full) // 2, len(full) - 100]
    if VALGRIND:
        # valgrind writes its own files (the guest's cmdline, ~200 bytes)
        # at startup and would die of SIGXFSZ itself.
        limits.remove(64)
    for limit in limits:
        with env_with(msgs) as env:
            def lim(limit=limit):
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            # No -e: log lines to a file would hit the limit themselves.
            p = env.start(preexec=lim, e=False)
            p.login("alice", PW)
            p.ok("DELE 1")
            p.send(b"QUIT\r\n")
            try:
                r = p.line()
            except AssertionError:
                r = "(no answer)"
            p.expect_eof()
            p.close_input()
            try:
                p.proc.wait(READ_TIMEOUT)
            except Exception:
                pass
            p.rc = p.proc.returncode
            p.killed = True      # judged below
            if p.rc is None or p.rc < 0:
                problems.append("limit %d: pop3d died of signal %s at QUIT "
                                "(answer %r)" % (limit, p.rc and -p.rc, r))
            elif not (r.startswith("+OK") or r.startswith("-ERR [SYS/")):
                problems.append("limit %d: QUIT answered %r" % (limit, r))
            lock = env.mbox("alice") + ".lock"
            if os.path.exists(lock):
                problems.append("limit %d: %s left behind" % (limit, lock))
                os.unlink(lock)  # as a stale-lock breaker would, later
            # The next session (no limit) sees a consistent maildrop.
            q = env.session("alice", PW)
            n = parse_stat(q.ok("STAT"))[0]
            check(n in (4, 5), "limit %d: %d messages after a failed "
                  "UPDATE (QUIT answered %r)" % (limit, n, r))
            first = 1 if n == 5 else 2
            for i in range(1, n + 1):
                eq(retr(q, i), stuffed(msgs[first + i - 2]),
                   "limit %d: RETR %d" % (limit, i))
            q.quit()
            eq(env.read_mbox("alice"), full if n == 5 else after,
               "limit %d: mbox" % limit)
            outcomes.append("%d:%s->%d" % (limit, r[:15], n))
    print("# RLIMIT_FSIZE outcomes: " + ", ".join(outcomes))
    check(not problems, "; ".join(problems))


# ============================================================ UIDL

@test
def uidl_stable_when_status_headers_change():
    msgs = five()
    with env_with(msgs) as env:
        p = env.session("alice", PW)
        before = uidl_map(p)
        p.quit()
        # A mail reader marks message 2 as read and tags message 4.
        m2 = msgs[1].replace(b"\n\n", b"\nStatus: RO\n\n", 1)
        m4 = msgs[3].replace(b"\n\n", b"\nStatus: O\nX-Status: A\n"
                             b"X-Keywords: $label1\nX-UID: 17\n"
                             b"Content-Length: 42\nLines: 2\n\n", 1)
        changed = [msgs[0], m2, msgs[2], m4, msgs[4]]
        env.write_mbox("alice", changed)
        p = env.session("alice", PW)
        eq(uidl_map(p), before, "UIDLs after Status/X-Status headers added")
        eq(retr(p, 2), stuffed(m2), "RETR 2 with its Status header")
        p.quit()
        # And the other way round: the reader removes them again.
        env.write_mbox("alice", msgs)
        p = env.session("alice", PW)
        eq(uidl_map(p), before, "UIDLs after the headers went away")
        p.quit()


@test
def uidl_identical_copies_distinct_and_stable():
    a = message(1)
    same_head = message(2, body=b"body one\n")
    same_head2 = message(2, body=b"body two\n")
    env1 = envelope(1)
    msgs = [(env1, a), (env1, a), (env1, a), (envelope(2), message(3)),
            (env1, a), (envelope(3), same_head), (envelope(3), same_head2)]
    with env_with(msgs) as env:
        p = env.session("alice", PW)
        u1 = uidl_map(p)
        eq(len(set(u1.values())), len(msgs), "distinct UIDLs %r" % u1)
        for i in range(1, len(msgs) + 1):
            eq(retr(p, i), stuffed(msgs[i - 1][1]), "RETR %d" % i)
        p.quit()
        p = env.session("alice", PW)
        eq(uidl_map(p), u1, "UIDLs in the next session")
        # Deleting a different message keeps the others' UIDLs.
        p.ok("DELE 4")
        p.quit()
        p = env.session("alice", PW)
        u3 = uidl_map(p)
        eq([u3[i] for i in range(1, 7)],
           [u1[i] for i in [1, 2, 3, 5, 6, 7]], "UIDLs after DELE 4")
        p.quit()


# ======================================================= the seed scenario

@test
def seed_scenario():
    """RFC 1939-style session: 8 messages of which 3 are new; a wrong
    password first; the client lists old and new mail and deletes the two
    oldest."""
    old = [message(i, body=b"Old message %d.\n.\n..leading dot\n"
                   b">From quoted\n" % i) for i in range(1, 6)]
    new = [message(i, body=b"New message %d.\n" % i) for i in range(6, 9)]
    with env_with(old) as env:
        # Session 1: the client records what it has seen.
        p = env.session("alice", PW)
        eq(parse_stat(p.ok("STAT"))[0], 5, "session 1 STAT")
        seen = uidl_map(p)
        eq(sorted(seen), [1, 2, 3, 4, 5], "session 1 UIDL numbers")
        p.quit()
        eq(env.read_mbox("alice"), mbox_bytes(old), "mbox after session 1")
        # Three new messages arrive.
        env.append_mbox("alice", [(envelope(i + 1), m)
                                  for i, m in enumerate(new, 5)])
        stored = old + new
        eq(env.read_mbox("alice"), mbox_bytes(stored), "mbox with new mail")
        # Session 2.
        p = env.start()
        p.ok("USER alice")
        r = p.err("PASS wrong password")
        check(r.startswith("-ERR [AUTH]"), "wrong PASS: %r" % r)
        p.ok("USER alice")
        p.ok("PASS " + PW)
        eq(parse_stat(p.ok("STAT")),
           (8, sum(len(wire(m)) for m in stored)), "session 2 STAT")
        eq(parse_list(p.ok_multi("LIST")),
           [(i + 1, len(wire(m))) for i, m in enumerate(stored)],
           "session 2 LIST")
        uids = uidl_map(p)
        eq(sorted(uids), list(range(1, 9)), "session 2 UIDL numbers")
        eq(len(set(uids.values())), 8, "session 2 UIDLs distinct")
        newnums = sorted(n for n, u in uids.items()
                         if u not in set(seen.values()))
        eq(newnums, [6, 7, 8], "messages whose UIDL session 1 had not seen")
        for n in range(1, 6):
            eq(uids[n], seen[n], "UIDL of old message %d" % n)
        eq(retr(p, 1), stuffed(stored[0]), "RETR 1")
        p.ok("DELE 1")
        eq(retr(p, 2), stuffed(stored[1]), "RETR 2")
        p.ok("DELE 2")
        p.quit()
        # Session 3: exactly the other six, in order, byte-identical.
        p = env.session("alice", PW)
        rest = stored[2:]
        eq(parse_stat(p.ok("STAT")),
           (6, sum(len(wire(m)) for m in rest)), "session 3 STAT")
        eq(parse_list(p.ok_multi("LIST")),
           [(i + 1, len(wire(m))) for i, m in enumerate(rest)],
           "session 3 LIST")
        for i, m in enumerate(rest):
            eq(retr(p, i + 1), stuffed(m), "session 3 RETR %d" % (i + 1))
        u3 = uidl_map(p)
        eq([u3[i] for i in range(1, 7)], [uids[i] for i in range(3, 9)],
           "session 3 UIDLs")
        p.quit()
        eq(env.read_mbox("alice"),
           mbox_bytes([(envelope(i), stored[i - 1]) for i in range(3, 9)]),
           "mbox after session 3")


def outbuf():
    """POP3D_OUTBUF from pop3d.h, read from the source so that the test
    below fills exactly the buffer the binary has."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                       "pop3d.h")
    with open(src) as f:
        m = re.search(r"#define\s+POP3D_OUTBUF\s+\((\d+) \* (\d+)\)",
                      f.read())
    if m is None:
        fail("no POP3D_OUTBUF in pop3d.h")
    return int(m.group(1)) * int(m.group(2))


@test
def quit_stays_a_quit_when_only_its_answer_cannot_go():
    # One pipelined batch fills the output buffer to within a few bytes,
    # and the client has stopped reading: the first flush, and so the
    # first write error, comes inside QUIT's answer, after UPDATE.  The
    # deletion is made, so exit status and log must say QUIT (pop3d.8:
    # 0, "quit: ... deleted=1/N"), not "ended without QUIT, nothing
    # deleted" with exit status 1.
    size = outbuf()
    msg = message(1, body=b"".join(b"%099d\n" % i
                                   for i in range(size // 100 - 40)))
    octets = len(wire(msg))
    used = (len(b"+OK %d octets\r\n" % octets) + len(stuffed(msg)) +
            len(b"+OK message 1 deleted\r\n"))
    check(used < size - 100, "RETR must not fill the buffer by itself")
    k = (size - used) // len(b"+OK\r\n")     # 0..4 bytes of room left
    batch = b"RETR 1\r\nDELE 1\r\n" + b"NOOP\r\n" * k + b"QUIT\r\n"
    check(len(batch) <= select.PIPE_BUF, "the batch is one atomic write")
    with env_with([msg]) as env:
        p = env.session("alice", PW)
        p.proc.stdout.close()       # the client reads no more
        p.eof = True
        os.write(p.inp, batch)
        p.close_input()
        eq(p.wait(), 0, "exit status after QUIT whose answer failed")
        eq(env.read_mbox("alice"), b"", "mbox after QUIT")
        err = p.stderr()
        check("quit: user=alice retrieved=1/%d deleted=1/%d kept=0/0"
              % (octets, octets) in err, "log: %s" % err)
        check("ended without QUIT" not in err, "log: %s" % err)


@test
def exit_statuses():
    # pop3d.h: 0 after QUIT; 1 when the client vanished or timed out.
    with env_with(five()) as env:
        p = env.start()
        p.ok("QUIT")
        p.expect_eof()
        eq(p.wait(), 0, "QUIT in AUTHORIZATION")
        p = env.session("alice", PW)
        p.quit()
        p = env.session("alice", PW)
        p.close_input()
        p.expect_eof()
        eq(p.wait(), 1, "EOF in TRANSACTION")
        p = env.start()
        p.close_input()
        p.expect_eof()
        eq(p.wait(), 1, "EOF in AUTHORIZATION")
        p = env.start(t=1)
        p.expect_eof(timeout=10 * SLOW)
        eq(p.wait(), 1, "idle timeout")


@test
def quit_log_counts_each_retrieved_message_once():
    # The quit line's retrieved=N/OCTETS counts messages, not RETR
    # commands: a message fetched again (a client that lost the first
    # copy) is one message retrieved, and TOP retrieves none, whatever
    # its line count.
    msgs = five()
    with env_with(msgs) as env:
        p = env.session("alice", PW)
        eq(retr(p, 2), stuffed(msgs[1]), "RETR 2")
        eq(retr(p, 2), stuffed(msgs[1]), "RETR 2 again")
        p.ok("TOP 3 0")
        p.multi_raw()
        # Nor does one with a line count beyond a long long (2^64 - 1,
        # 2^63), which sends the whole message but is still TOP.
        for k in ["18446744073709551615", "9223372036854775808"]:
            p.ok("TOP 5 " + k)
            eq(p.multi_raw() + b".\r\n", top_stuffed(msgs[4], 10 ** 6),
               "TOP 5 " + k)
        eq(retr(p, 4), stuffed(msgs[3]), "RETR 4")
        p.quit()
        err = p.stderr()
        check("quit: user=alice retrieved=2/%d deleted=0/0 kept=5/"
              % (len(wire(msgs[1])) + len(wire(msgs[3]))) in err,
              "log: %s" % err)


if __name__ == "__main__":
    main()
