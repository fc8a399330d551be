#!/usr/bin/env perl
# utils/split_scp.pl -- split a list (scp, text, ...) into contiguous parts.
#
# Usage: split_scp.pl [--utt2spk UTT2SPK] IN OUT1 OUT2 ... OUTn
#
# Writes the lines of IN (use - for stdin) to n output files as contiguous,
# near-equal chunks: the chunk sizes differ by at most one line, the earlier
# chunks getting the extra lines. It is an error to ask for more outputs than
# IN has lines.
#
# --utt2spk UTT2SPK   never split a speaker: all lines whose first field
#                     maps to the same speaker go to the same output. Speakers
#                     are taken in order of first appearance and assigned to
#                     outputs contiguously, balancing the number of lines as
#                     well as whole speakers allow. Needs at least n speakers.
#                     Each output keeps the input line order.
use strict;
use warnings;

my $prog = "split_scp.pl";
my $utt2spk_file;

sub usage {
  my ($msg) = @_;
  print STDERR "$prog: $msg\n" if defined $msg;
  print STDERR "Usage: $prog [--utt2spk UTT2SPK] IN OUT1 OUT2 ... OUTn\n";
  exit 1;
}

while (@ARGV && $ARGV[0] =~ m/^--./) {
  my $o = shift @ARGV;
  if ($o eq "--utt2spk") {
    usage("--utt2spk needs a file") unless @ARGV;
    $utt2spk_file = shift @ARGV;
  } elsif ($o =~ m/^--utt2spk=(.+)$/) {
    $utt2spk_file = $1;
  } else {
    usage("unknown option $o");
  }
}
usage() if @ARGV < 2;
my ($in_file, @outs) = @ARGV;
my $n = scalar @outs;

my $in;
if ($in_file eq "-") {
  $in = \*STDIN;
} else {
  open($in, "<", $in_file) or do { print STDERR "$prog: cannot open $in_file: $!\n"; exit 1; };
}
my @lines = <$in>;
close($in);
foreach (@lines) { $_ .= "\n" unless m/\n$/; }
my $nlines = scalar @lines;

my @chunks;    # list of arrays of line indices
if (!defined $utt2spk_file) {
  if ($n > $nlines) {
    print STDERR "$prog: cannot split $nlines lines of $in_file into $n parts\n";
    exit 1;
  }
  my $base = int($nlines / $n);
  my $extra = $nlines % $n;
  my $pos = 0;
  for my $c (0 .. $n - 1) {
    my $size = $base + ($c < $extra ? 1 : 0);
    push @chunks, [$pos .. $pos + $size - 1];
    $pos += $size;
  }
} else {
  open(my $u, "<", $utt2spk_file) or do { print STDERR "$prog: cannot open $utt2spk_file: $!\n"; exit 1; };
  my %spk_of;
  while (<$u>) {
    my @f = split;
    next unless @f;
    if (@f != 2) {
      print STDERR "$prog: bad line $. in $utt2spk_file: $_";
      exit 1;
    }
    $spk_of{ $f[0] } = $f[1];
  }
  close($u);
  my (@spk_order, %lines_of);
  for my $i (0 .. $#lines) {
    my ($utt) = split(' ', $lines[$i]);
    if (!defined $utt) {
      print STDERR "$prog: line " . ($i + 1) . " of $in_file is empty\n";
      exit 1;
    }
    my $spk = $spk_of{$utt};
    if (!defined $spk) {
      print STDERR "$prog: utterance '$utt' is not in $utt2spk_file\n";
      exit 1;
    }
    push @spk_order, $spk unless exists $lines_of{$spk};
    push @{ $lines_of{$spk} }, $i;
  }
  my $nspk = scalar @spk_order;
  if ($n > $nspk) {
    print STDERR "$prog: cannot split $nspk speakers of $in_file into $n parts\n";
    exit 1;
  }
  my $g = 0;    # next speaker group
  my $left = $nlines;
  for my $c (0 .. $n - 1) {
    my $parts_left = $n - $c;
    my @members;
    if ($parts_left == 1) {
      @members = @spk_order[$g .. $nspk - 1];
      $g = $nspk;
    } else {
      my $target = $left / $parts_left;
      my $size = 0;
      # keep adding speakers while that brings the chunk closer to the target,
      # leaving at least one speaker for every later chunk.
      while ($g < $nspk - ($parts_left - 1)) {
        my $add = scalar @{ $lines_of{ $spk_order[$g] } };
        last if @members && abs($size + $add - $target) > abs($size - $target);
        push @members, $spk_order[$g];
        $size += $add;
        $g++;
      }
      $left -= $size;
    }
    push @chunks, [sort { $a <=> $b } map { @{ $lines_of{$_} } } @members];
  }
}

for my $c (0 .. $n - 1) {
  open(my $fh, ">", $outs[$c]) or do { print STDERR "$prog: cannot write $outs[$c]: $!\n"; exit 1; };
  print $fh @lines[@{ $chunks[$c] }];
  close($fh) or do { print STDERR "$prog: error writing $outs[$c]: $!\n"; exit 1; };
}
