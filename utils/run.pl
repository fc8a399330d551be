#!/usr/bin/env perl
# utils/run.pl -- run a command (or an array of jobs) on the local machine,
# writing each job's output to a log file.
#
# Usage: run.pl [options] [VAR=a:b] LOGFILE COMMAND...
#
#   VAR=a:b   run the command once for each integer index from a to b;
#             every occurrence of VAR (e.g. JOB, SPLIT) in LOGFILE and in the
#             command is replaced by the index. VAR=n is the same as VAR=n:n.
#   LOGFILE   the log for the job; its directory is created if needed.
#   COMMAND   run with "bash -c". A single argument is used verbatim, so
#             run.pl log 'echo a | wc -c' runs a pipeline. Several arguments
#             are joined with spaces; arguments that contain whitespace or
#             shell special characters are single-quoted, except bare shell
#             operators such as '|', '>', '&&', ';' which stay operators
#             (so "run.pl log prog1 \| prog2" also builds a pipeline).
#
# Options:
#   --max-jobs-run N   run at most N jobs at the same time (default: all)
#   --mem X, --num-threads N, --gpu N, --time X, --config FILE
#                      accepted for compatibility with queue back-ends such as
#                      slurm.pl, and ignored.
#   Options may be written "--opt value" or "--opt=value".
#
# Each log file holds:
#   # COMMAND                       (the command actually run)
#   # Started at DATE
#   ... stdout and stderr of the command ...
#   # Accounting: time=SECONDS threads=1
#   # Ended (code N) at DATE
#
# Exit status: 0 if every job succeeded; otherwise 1, and a line
#   run.pl: K / N failed, log is in LOG_PATTERN
# (with VAR replaced by '*') plus the failed log paths go to stderr.
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Path qw(make_path);
use POSIX qw(WNOHANG);

my $prog = "run.pl";

sub usage {
  my ($msg) = @_;
  print STDERR "$prog: $msg\n" if defined $msg;
  print STDERR "Usage: $prog [options] [JOB=1:N] LOGFILE COMMAND...\n"
    . "  e.g.: $prog JOB=1:4 exp/log/foo.JOB.log echo hello JOB\n"
    . "Options:\n"
    . "  --max-jobs-run N   at most N jobs at once (default: all at once)\n"
    . "  --mem X, --num-threads N, --gpu N, --time X, --config FILE  (ignored)\n";
  exit 1;
}

my %ignored = map { $_ => 1 } qw(mem num-threads gpu time config);
my $max_jobs_run = 0;    # 0 = no limit

while (@ARGV && $ARGV[0] =~ m/^--/) {
  my $arg = shift @ARGV;
  my ($name, $value);
  if ($arg =~ m/^--([^=]+)=(.*)$/s) {
    ($name, $value) = ($1, $2);
  } else {
    $name = substr($arg, 2);
    usage("option --$name needs a value") unless @ARGV;
    $value = shift @ARGV;
  }
  if ($name eq "max-jobs-run") {
    usage("--max-jobs-run expects a positive integer, got '$value'")
      unless $value =~ m/^[1-9]\d*$/;
    $max_jobs_run = $value;
  } elsif ($ignored{$name}) {
    next;
  } else {
    usage("unknown option --$name");
  }
}

my ($jobvar, $first, $last);
if (@ARGV && $ARGV[0] =~ m/^([A-Za-z_]\w*)=(\d+)(?::(\d+))?$/) {
  ($jobvar, $first, $last) = ($1, $2, defined $3 ? $3 : $2);
  shift @ARGV;
  usage("empty job range $jobvar=$first:$last") if $last < $first;
} elsif (@ARGV && $ARGV[0] =~ m/^[A-Za-z_]\w*=[-\w]*:[-\w]*$/) {
  usage("bad job range '$ARGV[0]' (expected e.g. JOB=1:10)");
}

usage() if @ARGV < 2;
my $logfile = shift @ARGV;

# Join the command arguments into one bash command line.
sub shell_word {
  my ($w) = @_;
  return $w if $w =~ m/^(?:\||\|\||\|&|&&|&|;|;;|<|>|>>|>&|&>|&>>|<<|<<<|\d?>|\d?>>|\d?>&\d|\d?<|\(|\))$/;
  return $w if $w =~ m/^[A-Za-z0-9_\-+=\/.,:@%^]+$/;
  $w =~ s/'/'\\''/g;
  return "'$w'";
}
my $cmd = @ARGV == 1 ? $ARGV[0] : join(" ", map { shell_word($_) } @ARGV);

my @indices = defined $jobvar ? ($first .. $last) : (undef);
my $njobs = scalar @indices;

sub subst {
  my ($s, $idx) = @_;
  return $s unless defined $jobvar;
  my $v = quotemeta($jobvar);
  $s =~ s/$v/$idx/g;
  return $s;
}

if (defined $jobvar && $njobs > 1 && index($logfile, $jobvar) < 0) {
  usage("running $njobs jobs ($jobvar=$first:$last) but the log file '$logfile' "
      . "does not contain $jobvar, so they would all write the same log");
}

my %running;    # pid => [index, logfile, start time]
my @failed;     # log files of failed jobs

sub start_job {
  my ($idx) = @_;
  my $log = subst($logfile, $idx);
  my $this_cmd = subst($cmd, $idx);
  my $dir = dirname($log);
  if (!-d $dir) {
    eval { make_path($dir); 1 } or do {
      print STDERR "$prog: cannot create directory $dir: $@";
      exit 1;
    };
  }
  open(my $fh, ">", $log) or do {
    print STDERR "$prog: cannot write log file $log: $!\n";
    exit 1;
  };
  (my $shown = $this_cmd) =~ s/\n/\n# /g;
  print $fh "# $shown\n";
  print $fh "# Started at " . localtime() . "\n";
  close($fh);
  my $start = time();
  my $pid = fork();
  die "$prog: fork failed: $!\n" unless defined $pid;
  if ($pid == 0) {
    open(STDOUT, ">>", $log) or die "$prog: cannot append to $log: $!\n";
    open(STDERR, ">&", \*STDOUT) or die "$prog: cannot redirect stderr: $!\n";
    exec("bash", "-c", $this_cmd) or do {
      print STDERR "$prog: cannot run bash: $!\n";
      POSIX::_exit(127);
    };
  }
  $running{$pid} = [$idx, $log, $start];
}

sub finish_job {
  my ($pid, $status) = @_;
  my $info = delete $running{$pid};
  return unless $info;
  my ($idx, $log, $start) = @$info;
  my $code = ($status & 127) ? 128 + ($status & 127) : ($status >> 8);
  my $elapsed = time() - $start;
  if (open(my $fh, ">>", $log)) {
    print $fh "# Accounting: time=$elapsed threads=1\n";
    print $fh "# Ended (code $code) at " . localtime() . "\n";
    close($fh);
  } else {
    print STDERR "$prog: cannot append to log file $log: $!\n";
  }
  push @failed, [$idx, $log] if $code != 0;
}

sub wait_one {
  my $pid = waitpid(-1, 0);
  return if $pid <= 0;
  finish_job($pid, $?);
}

foreach my $idx (@indices) {
  while ($max_jobs_run > 0 && scalar(keys %running) >= $max_jobs_run) {
    wait_one();
  }
  start_job($idx);
}
wait_one() while %running;

if (@failed) {
  my $pattern = $logfile;
  if (defined $jobvar) {
    my $v = quotemeta($jobvar);
    $pattern =~ s/$v/*/g;
  }
  my $n = scalar @failed;
  print STDERR "$prog: $n / $njobs failed, log is in $pattern\n";
  foreach my $f (sort { (defined $a->[0] ? $a->[0] : 0) <=> (defined $b->[0] ? $b->[0] : 0) } @failed) {
    print STDERR "$prog: failed log: $f->[1]\n";
  }
  exit 1;
}
exit 0;
