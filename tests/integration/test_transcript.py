#!/usr/bin/env python3
"""The seed transcript in doc/ is what pop3d says today, byte for byte."""
import os
import subprocess
import sys

import pop3test as T
from pop3test import test, eq


@test
def seed_transcript_matches_a_real_session():
    doc = os.path.join(T.REPO, "doc", "seed-session.txt")
    p = subprocess.run([sys.executable, os.path.join(T.REPO, "contrib",
                                                     "transcript.py"), T.BIN],
                       capture_output=True, text=True, timeout=120)
    eq(p.returncode, 0, "transcript.py exit status (%s)" % p.stderr[-300:])
    with open(doc) as f:
        want = f.read()
    if p.stdout != want:
        import difflib
        T.fail("doc/seed-session.txt drifted from pop3d; regenerate it with "
               "contrib/transcript.py:\n" + "".join(difflib.unified_diff(
                   want.splitlines(True), p.stdout.splitlines(True),
                   "doc", "pop3d", n=1))[:3000])
    # The scenario itself: one mistyped password, 8 messages, 3 new, the
    # two oldest deleted.
    eq(want.count("-ERR [AUTH]"), 1, "failed logins in the transcript")
    T.check("messages 6, 7, 8" in want, "the new messages are not 6-8")
    T.check("Afterwards the maildrop holds 6 messages." in want,
            "the two oldest were not deleted")


if __name__ == "__main__":
    T.main()
