#!/usr/bin/env perl
# utils/filter_scp.pl -- keep (or drop) lines whose key is in an id list.
#
# Usage: filter_scp.pl [--exclude] [-f N] IDLIST [IN] > OUT
#
# Prints the lines of IN (or stdin) whose field N (1-based; default 1;
# negative counts from the end, -1 = last field) is one of the ids in the first
# column of IDLIST. With --exclude, prints the lines whose field N is NOT in
# IDLIST. Line order of IN is kept. Blank lines in IDLIST are ignored; a line
# of IN without field N is an error.
use strict;
use warnings;

my $prog = "filter_scp.pl";
my $exclude = 0;
my $field = 1;

sub usage {
  my ($msg) = @_;
  print STDERR "$prog: $msg\n" if defined $msg;
  print STDERR "Usage: $prog [--exclude] [-f N] IDLIST [IN] > OUT\n";
  exit 1;
}

while (@ARGV && $ARGV[0] =~ m/^-./) {
  my $o = shift @ARGV;
  if ($o eq "--exclude") {
    $exclude = 1;
  } elsif ($o eq "-f" || $o eq "--field") {
    usage("$o needs a value") unless @ARGV;
    $field = shift @ARGV;
  } elsif ($o =~ m/^(?:-f|--field=)(-?\d+)$/) {
    $field = $1;
  } elsif ($o eq "--") {
    last;
  } else {
    usage("unknown option $o");
  }
}
usage("-f expects a non-zero integer, got '$field'") unless $field =~ m/^-?[1-9]\d*$/;
usage() if @ARGV < 1 || @ARGV > 2;

my $idlist = shift @ARGV;
open(my $ids, "<", $idlist) or do { print STDERR "$prog: cannot open $idlist: $!\n"; exit 1; };
my %keep;
while (<$ids>) {
  my @f = split;
  $keep{ $f[0] } = 1 if @f;
}
close($ids);

my $in;
if (@ARGV) {
  open($in, "<", $ARGV[0]) or do { print STDERR "$prog: cannot open $ARGV[0]: $!\n"; exit 1; };
} else {
  $in = \*STDIN;
}
my $idx = $field > 0 ? $field - 1 : $field;
while (my $line = <$in>) {
  my @f = split(' ', $line);
  if ($field > 0 ? @f < $field : @f < -$field) {
    chomp $line;
    print STDERR "$prog: line $. has no field $field: '$line'\n";
    exit 1;
  }
  my $key = $f[$idx];
  next unless ($keep{$key} ? 1 : 0) != $exclude;
  $line .= "\n" unless $line =~ m/\n$/;
  print $line;
}
