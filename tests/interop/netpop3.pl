#!/usr/bin/perl
# netpop3.pl HOST PORT USER PASSWORD OUTDIR [DELE-NUMBER...]
#
# A POP3 session with Perl's Net::POP3 (libnet, in perl core) for the
# interoperability tests (tests/integration/test_interop.py):
#   login (USER/PASS), CAPA, LIST, UIDL, RETR of every message into
#   OUTDIR/<n> (through Net::POP3->get($n, $fh): Net::Cmd un-stuffs the
#   dots and turns each CRLF into "\n"), DELE of the numbers given, QUIT.
# It writes OUTDIR/capa, OUTDIR/list ("n size" lines), OUTDIR/uidl
# ("n uid" lines) and OUTDIR/count, and prints the protocol transcript
# (Debug) on stderr.  Exit status 0 only when every step succeeded.
use strict;
use warnings;
use Net::POP3;

@ARGV >= 5 or die "usage: $0 HOST PORT USER PASSWORD OUTDIR [DELE...]\n";
my ($host, $port, $user, $pass, $out, @dele) = @ARGV;

sub put {
	my ($name, $text) = @_;
	open(my $fh, '>:raw', "$out/$name") or die "$out/$name: $!\n";
	print $fh $text;
	close($fh) or die "$out/$name: $!\n";
}

my $pop = Net::POP3->new($host, Port => $port, Timeout => 30, Debug => 1)
    or die "connect to $host:$port: $@\n";
my $capa = $pop->capa or die "CAPA failed: " . $pop->message;
put('capa', join('', map { "$_\n" } sort keys %$capa));

my $n = $pop->login($user, $pass);
defined $n or die "login failed: " . $pop->message;
$n = 0 if $n eq '0E0';
put('count', "$n\n");

my $list = $pop->list or die "LIST failed: " . $pop->message;
put('list', join('', map { "$_ $list->{$_}\n" } sort { $a <=> $b } keys %$list));
my $uidl = $pop->uidl or die "UIDL failed: " . $pop->message;
put('uidl', join('', map { "$_ $uidl->{$_}\n" } sort { $a <=> $b } keys %$uidl));

for my $i (1 .. $n) {
	open(my $fh, '>:raw', "$out/$i") or die "$out/$i: $!\n";
	$pop->get($i, $fh) or die "RETR $i failed: " . $pop->message;
	close($fh) or die "$out/$i: $!\n";
}
for my $i (@dele) {
	$pop->delete($i) or die "DELE $i failed: " . $pop->message;
}
$pop->quit or die "QUIT failed: " . $pop->message;
exit 0;
