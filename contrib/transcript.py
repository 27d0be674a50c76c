#!/usr/bin/env python3
"""Writes the seed scenario's transcript from a real session with pop3d.

The scenario of the project's seed documents: server "kilroy", client
"pluto"; the maildrop holds 8 messages, of which the last 3 arrived since
the client last looked (it knows the UIDLs of the first 5); the user
mistypes the password once; the client lists old and new messages, fetches
the new ones, and the user deletes the two oldest.

    contrib/transcript.py [POP3D_BINARY] > doc/seed-session.txt

tests/integration/test_transcript.py runs it and compares the result with
doc/seed-session.txt, so the documentation cannot drift from pop3d.
"""
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "obj", "pop3d")
SUBJECTS = ["Lunch on Friday?", "Minutes of the Monday meeting",
            "Your invoice 2026-117", "Re: printer on 3rd floor",
            "Holiday schedule", "Scan from DP-3530", "New build is out",
            "Re: Lunch on Friday?"]


def message(n):
    return ("From: Sender %d <sender%d@example.org>\n"
            "To: pluto@kilroy.example\n"
            "Subject: %s\n"
            "Date: Mon, 23 Nov 2026 0%d:00:00 +0000\n"
            "Message-ID: <seed-%d@example.org>\n"
            "\n"
            "Hello pluto, this is message %d.\n"
            ".A line that starts with a dot.\n" % (n, n, SUBJECTS[n - 1], n,
                                                   n, n)).encode()


class Session:
    """One pop3d process over pipes, driven a command at a time; every
    line both ways goes into the transcript."""

    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        self.t = [("S", self.line())]

    def line(self):
        return self.p.stdout.readline().decode().rstrip("\r\n")

    def cmd(self, cmd):
        self.p.stdin.write(cmd.encode() + b"\r\n")
        self.p.stdin.flush()
        self.t.append(("C", cmd))
        first = self.line()
        self.t.append(("S", first))
        kw = cmd.split()[0].upper()
        out = []
        if first.startswith("+OK") and (
                kw in ("RETR", "TOP", "CAPA") or
                (kw in ("LIST", "UIDL") and len(cmd.split()) == 1)):
            while True:
                l = self.line()
                self.t.append(("S", l))
                if l == ".":
                    break
                out.append(l)
        return first, out

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


def main():
    d = tempfile.mkdtemp(prefix="pop3d-seed-")
    os.chmod(d, 0o755)
    ids = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    h = subprocess.run(["mkpasswd", "-m", "sha-512", "-S", "kilroysalt",
                        "tanstaaf"], capture_output=True, text=True,
                       check=True).stdout.strip()
    with open(os.path.join(d, "users"), "w") as f:
        f.write("pluto:%s:%d:%d:%s/%%u\n" % (h, ids[0], ids[1], d))
    mbox = os.path.join(d, "pluto")

    def deliver(numbers):
        with open(mbox, "ab") as f:
            for n in numbers:
                f.write(b"From sender%d@example.org Mon Nov 23 0%d:00:00 "
                        b"2026\n" % (n, n) + message(n) + b"\n")

    deliver(range(1, 6))
    os.chmod(mbox, 0o600)
    if os.geteuid() == 0:
        os.chown(d, *ids)
        os.chown(mbox, *ids)
    argv = [BIN, "-n", "kilroy", "-D", "0", "-f", os.path.join(d, "users")]
    # What the client saw last time: the UIDLs of the first five.
    s = Session(argv)
    s.cmd("USER pluto")
    s.cmd("PASS tanstaaf")
    known = {l.split()[1] for l in s.cmd("UIDL")[1]}
    s.cmd("QUIT")
    s.close()
    deliver(range(6, 9))        # three new messages since
    # This time: a mistyped password, then the session of the scenario.
    s = Session(argv)
    s.cmd("USER pluto")
    s.cmd("PASS tansstaf")
    s.cmd("USER pluto")
    s.cmd("PASS tanstaaf")
    s.cmd("STAT")
    s.cmd("LIST")
    new = [l.split()[0] for l in s.cmd("UIDL")[1]
           if l.split()[1] not in known]
    for n in new:
        s.cmd("RETR " + n)
    s.cmd("DELE 1")
    s.cmd("DELE 2")
    s.cmd("QUIT")
    s.close()
    t = s.t
    print("The seed scenario, from a real session with pop3d "
          "(contrib/transcript.py).")
    print("S: is the server kilroy, C: the client pluto. The maildrop holds "
          "8 messages;")
    print("pluto last looked when there were 5 (it kept their UIDLs), so "
          "messages %s" % ", ".join(new))
    print("are the new ones.")
    print("The password is mistyped once. pluto lists the maildrop, fetches "
          "the new")
    print("messages, and the user deletes the two oldest.")
    print()
    for w, l in t:
        print("%s: %s" % (w, l))
    with open(mbox, "rb") as f:
        left = f.read().count(b"\nFrom ") + 1
    print()
    print("Afterwards the maildrop holds %d messages." % left)
    subprocess.run(["rm", "-rf", d])


if __name__ == "__main__":
    main()
