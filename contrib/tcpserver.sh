#!/bin/sh
# pop3d under tcpserver (package ucspi-tcp): one process per connection
# on port 110, at most 256 at once; -R and -H skip the ident and DNS
# look-ups.  pop3d logs the peer from getpeername(2).  See pop3d(8).
exec tcpserver -R -H -c 256 0 110 /usr/local/sbin/pop3d -f /etc/pop3d/users
