#!/usr/bin/python3
"""deliver: a small mail delivery agent for the tests, locking as Debian's do.

As a module: lock()/unlock() take and release the locks a delivery agent
(or a local mail reader) takes on an mbox: an fcntl(2) write lock on the
whole file (F_SETLKW) and the <mbox>.lock dotlock, created with
O_CREAT|O_EXCL and holding our pid, or by Debian's dotlockfile(1) from
liblockfile-bin; append() delivers one message under them.

As a program (run as the mail user by test_delivery.py):

    deliver.py MBOX COUNT SEED MAXDELAY_MS

delivers COUNT messages, numbered 1..COUNT and built by delivery_message(),
with random delays, rotating through the locking modes below, and prints
"N" on stdout once message N is appended, fsync'ed and unlocked.  Exits 0,
or 1 with a reason on stderr (a lock it could not get within 30 s, or an
mbox that does not end in an empty line when it is about to append).
"""
import errno
import fcntl
import os
import random
import subprocess
import sys
import time

LOCK_WAIT = 30

# Locking modes: what Debian's agents do (postfix, exim, procmail: fcntl +
# dotlock), the same with dotlockfile(1), and the single-lock agents that
# pop3d must also be safe against (it takes both locks itself).
MODES = ("both", "both-dotlockfile", "dotlock-only", "fcntl-only")


def delivery_envelope(n):
    return (b"From deliver%d@example.org Fri Jan  5 11:%02d:%02d 2024"
            % (n, (n // 60) % 60, n % 60))


def delivery_message(n):
    """Message n: deterministic, distinct, of varied size, with lines that
    need dot-stuffing and mbox quoting, CRLF and 8-bit bytes."""
    r = random.Random(n * 7919)
    lines = [b"body of delivery %d" % n]
    for k in range(r.choice((1, 3, 10, 40, 400, 2000))):
        kind = r.randrange(6)
        if kind == 0:
            lines.append(b".leading dot %d" % k)
        elif kind == 1:
            lines.append(b">From quoted line %d" % k)
        elif kind == 2:
            lines.append(b"8-bit \xe9\xe8\xff line %d\r" % k)
        elif kind == 3:
            lines.append(b"")
        else:
            lines.append(b"x" * r.randrange(0, 200))
    lines.append(b"end of delivery %d" % n)
    return (b"From: Deliverer <deliver%d@example.org>\n" % n +
            b"To: user@example.org\n" +
            b"Subject: delivery %d\n" % n +
            b"Message-ID: <%d.deliver@example.org>\n" % n +
            b"\n" + b"\n".join(lines) + b"\n")


def delivery_number(msg):
    """The n of a message made by delivery_message, or None."""
    key = b"Message-ID: <"
    i = msg.find(key)
    if i < 0:
        return None
    j = msg.find(b".deliver@", i)
    try:
        return int(msg[i + len(key):j])
    except ValueError:
        return None


def _dotlock_python(lock, deadline):
    while True:
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise
            if time.monotonic() > deadline:
                raise TimeoutError("dotlock %s busy for %ds"
                                   % (lock, LOCK_WAIT))
            time.sleep(0.005)
            continue
        os.write(fd, b"%d\n" % os.getpid())
        os.close(fd)
        return


def lock(fd, path, mode="both"):
    """Takes the locks of this mode on the open mbox fd (path: its name)."""
    deadline = time.monotonic() + LOCK_WAIT
    if mode in ("both", "both-dotlockfile", "fcntl-only"):
        # Python's lockf is fcntl(F_SETLKW) with a struct flock.
        fcntl.lockf(fd, fcntl.LOCK_EX)
    if mode in ("both", "dotlock-only"):
        _dotlock_python(path + ".lock", deadline)
    elif mode == "both-dotlockfile":
        # -p: our pid in the lock (its liveness tells it is not stale).
        r = subprocess.run(["dotlockfile", "-l", "-p", "-r", str(LOCK_WAIT),
                            "-i", "1", path + ".lock"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise RuntimeError("dotlockfile -l failed (%d): %r"
                               % (r.returncode, r.stderr))


def unlock(fd, path, mode="both"):
    if mode == "both-dotlockfile":
        r = subprocess.run(["dotlockfile", "-u", path + ".lock"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise RuntimeError("dotlockfile -u failed (%d): %r"
                               % (r.returncode, r.stderr))
    elif mode in ("both", "dotlock-only"):
        os.unlink(path + ".lock")
    if mode != "dotlock-only":
        fcntl.lockf(fd, fcntl.LOCK_UN)


def append(path, env, msg, mode="both"):
    """Delivers one message: "From ...\\n", the message, an empty line.
    The mbox must be empty or end in an empty line (checked under the
    locks: anything else means someone left it broken)."""
    # One descriptor for the lock, the check and the append: closing any
    # other descriptor of the file would drop this process's fcntl lock
    # (POSIX), leaving the append unprotected in "fcntl-only" mode.
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        lock(fd, path, mode)
        try:
            size = os.fstat(fd).st_size
            if size > 0:
                tail = os.pread(fd, 2, max(0, size - 2))
                if not (tail == b"\n\n" or (size == 1 and tail == b"\n")):
                    raise RuntimeError("mbox does not end in an empty line "
                                       "before delivery: tail %r (%d bytes)"
                                       % (tail, size))
            data = env + b"\n" + msg + b"\n"
            off = 0
            while off < len(data):
                off += os.write(fd, data[off:])
            os.fsync(fd)
        finally:
            unlock(fd, path, mode)
    finally:
        os.close(fd)


def main(argv):
    path, count, seed, maxdelay = argv[1], int(argv[2]), int(argv[3]), \
        int(argv[4])
    r = random.Random(seed)
    for n in range(1, count + 1):
        time.sleep(r.uniform(0, maxdelay / 1000.0))
        try:
            append(path, delivery_envelope(n), delivery_message(n),
                   MODES[n % len(MODES)])
        except Exception as e:
            sys.stderr.write("deliver: message %d: %s: %s\n"
                             % (n, type(e).__name__, e))
            return 1
        sys.stdout.write("%d\n" % n)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
