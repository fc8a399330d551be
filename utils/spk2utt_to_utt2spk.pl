#!/usr/bin/env perl
# utils/spk2utt_to_utt2spk.pl -- turn a spk2utt map into an utt2spk map.
#
# Usage: spk2utt_to_utt2spk.pl [spk2utt] > utt2spk
#
# Reads "SPK UTT1 UTT2 ..." lines from the file (or stdin) and prints
# "UTT SPK" for every utterance, in input order. Blank lines are skipped.
use strict;
use warnings;

if (@ARGV > 1 || (@ARGV && $ARGV[0] =~ m/^-./)) {
  print STDERR "Usage: spk2utt_to_utt2spk.pl [spk2utt] > utt2spk\n";
  exit 1;
}

while (my $line = <>) {
  chomp $line;
  $line =~ s/\r$//;
  next if $line =~ m/^\s*$/;
  my ($spk, @utts) = split(' ', $line);
  if (!@utts) {
    print STDERR "spk2utt_to_utt2spk.pl: line $.: speaker '$spk' has no utterances\n";
    exit 1;
  }
  print "$_ $spk\n" foreach @utts;
}
