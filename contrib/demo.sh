#!/usr/bin/env bash
# Serves a demo maildrop on 127.0.0.1 under systemd-socket-activate, the
# way a pop3d.socket unit with Accept=yes would: the seed scenario of the
# project, server "kilroy", user "pluto", eight messages of which the last
# three are new (the first five carry the "Status: RO" a mail reader adds).
#   PORT=1110 contrib/demo.sh      (Ctrl-C stops it)
set -eu
cd "$(dirname "$0")/.."
port=${PORT:-1110}
bin=$PWD/obj/pop3d
[ -x "$bin" ] || { echo "build first: make" >&2; exit 1; }
command -v systemd-socket-activate >/dev/null ||
	{ echo "needs systemd-socket-activate (package systemd)" >&2; exit 1; }
command -v mkpasswd >/dev/null ||
	{ echo "needs mkpasswd (package whois)" >&2; exit 1; }

dir=$(mktemp -d /tmp/pop3d-demo.XXXXXX)
chmod 755 "$dir"
if [ "$(id -u)" = 0 ]; then ids=65534:65534; else ids=$(id -u):$(id -g); fi
printf 'pluto:%s:%s:%s/%%u.mbox\n' "$(mkpasswd -m yescrypt secret)" \
    "$ids" "$dir" >"$dir/users"
chmod 600 "$dir/users"

mbox=$dir/pluto.mbox
subjects=("Lunch on Friday?" "Minutes of the Monday meeting" "Your invoice 2026-117"
	"Re: printer on 3rd floor" "Holiday schedule" "Scan from DP-3530"
	"New build is out" "Re: Lunch on Friday?")
for i in "${!subjects[@]}"; do
	n=$((i + 1))
	printf 'From sender%d@example.org Mon Nov 23 0%d:00:00 2026\n' "$n" "$n"
	printf 'From: Sender %d <sender%d@example.org>\n' "$n" "$n"
	printf 'To: pluto@kilroy.example\n'
	printf 'Subject: %s\n' "${subjects[$i]}"
	printf 'Date: Mon, 23 Nov 2026 0%d:00:00 +0000\n' "$n"
	printf 'Message-ID: <demo-%d@example.org>\n' "$n"
	[ "$n" -le 5 ] && printf 'Status: RO\n'
	printf '\nHello pluto,\n\nthis is message %d.\n.A line that starts with a dot.\n' "$n"
	printf '>From here on, a quoted From.\n\n-- \nsender %d\n\n' "$n"
done >"$mbox"
chmod 600 "$mbox"
[ "$(id -u)" = 0 ] && chown 65534:65534 "$mbox"

cat <<MSG
pop3d demo: maildrop $mbox (8 messages, 3 new), users file $dir/users
Listening on 127.0.0.1:$port.  In another terminal:
  curl -u pluto:secret pop3://127.0.0.1:$port/          # LIST
  curl -u pluto:secret pop3://127.0.0.1:$port/1         # RETR 1
  curl -u pluto:secret -X UIDL pop3://127.0.0.1:$port/  # UIDL
Ctrl-C stops the demo.
MSG
exec systemd-socket-activate --accept --inetd -l "127.0.0.1:$port" \
    "$bin" -e -n kilroy -f "$dir/users"
