#!/usr/bin/env perl
# utils/utt2spk_to_spk2utt.pl -- turn an utt2spk map into a spk2utt map.
#
# Usage: utt2spk_to_spk2utt.pl [utt2spk] > spk2utt
#
# Reads "UTT SPK" lines from the file (or stdin) and prints one line
# "SPK UTT1 UTT2 ..." per speaker. Speakers appear in the order in which they
# are first seen; utterances keep their input order. Blank lines are skipped.
use strict;
use warnings;

if (@ARGV > 1 || (@ARGV && $ARGV[0] =~ m/^-./)) {
  print STDERR "Usage: utt2spk_to_spk2utt.pl [utt2spk] > spk2utt\n";
  exit 1;
}

my (@order, %utts);
while (my $line = <>) {
  chomp $line;
  $line =~ s/\r$//;
  next if $line =~ m/^\s*$/;
  my @f = split(' ', $line);
  if (@f != 2) {
    print STDERR "utt2spk_to_spk2utt.pl: line $.: expected 'UTT SPK', got '$line'\n";
    exit 1;
  }
  my ($utt, $spk) = @f;
  push @order, $spk unless exists $utts{$spk};
  push @{ $utts{$spk} }, $utt;
}
foreach my $spk (@order) {
  print join(" ", $spk, @{ $utts{$spk} }), "\n";
}
