#!/usr/bin/env perl
# utils/slurm.pl -- run a command (or an array of jobs) through Slurm.
#
# Usage: slurm.pl [options] [VAR=a:b] LOGFILE COMMAND...
#
# The arguments after the options are the same as for utils/run.pl: VAR=a:b
# runs the command for each index a..b with VAR replaced by the index in the
# log path and the command; the command is run with "bash -c" (one argument
# is used verbatim, several are joined with shell quoting).
#
# Submission: every index is submitted as its own batch job, with one
# "sbatch" call per index (no --array), so that each job has its own
# generated script and the command needs no run-time substitution. For a log
# file DIR/NAME.log the files are
#     DIR/q/NAME.sh    the batch script (cd to the current directory, source
#                      ./path.sh if present, run the command, write the log)
#     DIR/q/NAME.out   Slurm's own stdout/stderr for the job
#     DIR/q/NAME.done  written at the end; contains the command's exit code
# slurm.pl then polls for the .done files and exits like run.pl does: 0 if
# all jobs succeeded, otherwise 1 with
#     slurm.pl: K / N failed, log is in LOG_PATTERN
# and the failed log paths on stderr. The log format is the same as run.pl's.
#
# Options ("--opt value" or "--opt=value"):
#   --config FILE      Slurm mapping config (default: conf/slurm.conf if it
#                      exists, otherwise the built-in default shown below)
#   --max-jobs-run N   at most N jobs submitted/running at once; handled by
#                      slurm.pl itself (also mapped if the config has a
#                      max_jobs_run option line)
#   --NAME VALUE       any other option, e.g. --mem 4G, --num-threads 4,
#                      --gpu 1, --time 1:00:00. The name has dashes turned into
#                      underscores and is looked up in the config; an option
#                      the config does not know is an error.
#
# Config file format (one directive per line, '#' starts a comment line):
#   command sbatch --export=PATH          the submit command and fixed args
#   option NAME=* ARGS...                 ARGS for any value, $0 = the value
#   option NAME=VALUE [ARGS...]           ARGS for this exact value (may be
#                                         empty: the option adds nothing)
#   default NAME=VALUE                    value used when --NAME is not given
#
# Environment:
#   SLURM_PL_POLL_INTERVAL    seconds between checks for finished jobs
#                             (default 5; fractions allowed)
#   SLURM_PL_SQUEUE_INTERVAL  seconds between "squeue" checks for jobs that
#                             vanished without finishing (default 60; only if
#                             squeue is on PATH)
#   SLURM_PL_LOST_GRACE       seconds a job may be gone from squeue without a
#                             .done file before it counts as failed (default 120)
use strict;
use warnings;
use Cwd qw(getcwd);
use File::Basename qw(dirname basename);
use File::Path qw(make_path);
use File::Spec;
use Time::HiRes qw(sleep time);

my $prog = "slurm.pl";

my $default_config = <<'EOF';
command sbatch --export=PATH
option mem=* --mem $0
option mem=0
option num_threads=* --cpus-per-task $0
option num_threads=1 --cpus-per-task 1
option gpu=0
option gpu=* --partition gpu --gres=gpu:$0
option time=* --time $0
default gpu=0
EOF

sub usage {
  my ($msg) = @_;
  print STDERR "$prog: $msg\n" if defined $msg;
  print STDERR "Usage: $prog [options] [JOB=1:N] LOGFILE COMMAND...\n"
    . "  e.g.: $prog --mem 4G JOB=1:4 exp/log/foo.JOB.log echo hello JOB\n"
    . "Options:\n"
    . "  --config FILE      option mapping (default: conf/slurm.conf or built-in)\n"
    . "  --max-jobs-run N   at most N jobs at once\n"
    . "  --NAME VALUE       any option defined in the config (--mem, --num-threads,\n"
    . "                     --gpu, --time, ...)\n";
  exit 1;
}

sub env_number {
  my ($name, $default) = @_;
  my $v = $ENV{$name};
  return $default unless defined $v && $v ne "";
  die "$prog: $name must be a non-negative number, got '$v'\n"
    unless $v =~ m/^\d+(?:\.\d+)?$|^\.\d+$/;
  return $v + 0;
}

# ---------------------------------------------------------------- options
my $config;
my $max_jobs_run = 0;
my @opt_order;    # option names in the order given
my %opt_value;
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
  usage("invalid option name --$name") unless $name =~ m/^[A-Za-z][\w-]*$/;
  if ($name eq "config") {
    $config = $value;
    next;
  }
  (my $key = $name) =~ s/-/_/g;
  if ($key eq "max_jobs_run") {
    usage("--max-jobs-run expects a positive integer, got '$value'")
      unless $value =~ m/^[1-9]\d*$/;
    $max_jobs_run = $value;
  }
  push @opt_order, $key unless exists $opt_value{$key};
  $opt_value{$key} = $value;
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

sub shell_word {
  my ($w) = @_;
  return $w if $w =~ m/^(?:\||\|\||\|&|&&|&|;|;;|<|>|>>|>&|&>|&>>|<<|<<<|\d?>|\d?>>|\d?>&\d|\d?<|\(|\))$/;
  return $w if $w =~ m/^[A-Za-z0-9_\-+=\/.,:@%^]+$/;
  return sq($w);
}

sub sq {    # single-quote for bash
  my ($w) = @_;
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

# ---------------------------------------------------------------- config
my ($config_text, $config_name);
if (defined $config) {
  open(my $fh, "<", $config) or do {
    print STDERR "$prog: cannot read config file $config: $!\n";
    exit 1;
  };
  local $/;
  $config_text = <$fh>;
  close($fh);
  $config_name = $config;
} elsif (-f "conf/slurm.conf") {
  open(my $fh, "<", "conf/slurm.conf") or die "$prog: cannot read conf/slurm.conf: $!\n";
  local $/;
  $config_text = <$fh>;
  close($fh);
  $config_name = "conf/slurm.conf";
} else {
  $config_text = $default_config;
  $config_name = "(built-in default config)";
}

my @submit_cmd;
my (%wild, %exact, %default, @known_order, %known);
my $lineno = 0;
foreach my $line (split /\n/, $config_text) {
  $lineno++;
  $line =~ s/^\s+|\s+$//g;
  next if $line eq "" || $line =~ m/^#/;
  my ($kind, $rest) = split(/\s+/, $line, 2);
  $rest = "" unless defined $rest;
  if ($kind eq "command") {
    @submit_cmd = split(/\s+/, $rest);
  } elsif ($kind eq "option" || $kind eq "default") {
    my ($spec, $args) = split(/\s+/, $rest, 2);
    $args = "" unless defined $args;
    unless (defined $spec && $spec =~ m/^(\w+)=(.*)$/ && $2 ne "") {
      print STDERR "$prog: bad line $lineno in config $config_name: $line\n";
      exit 1;
    }
    my ($name, $val) = ($1, $2);
    push @known_order, $name unless $known{$name}++;
    if ($kind eq "default") {
      $default{$name} = $val;
    } elsif ($val eq "*") {
      $wild{$name} = $args;
    } else {
      $exact{$name}{$val} = $args;
    }
  } else {
    print STDERR "$prog: bad line $lineno in config $config_name: $line\n";
    exit 1;
  }
}
unless (@submit_cmd) {
  print STDERR "$prog: config $config_name has no 'command' line\n";
  exit 1;
}

# Map options to submit arguments, in the order the config lists them.
foreach my $key (@opt_order) {
  next if $key eq "max_jobs_run" && !$known{$key};
  unless ($known{$key}) {
    (my $opt = $key) =~ s/_/-/g;
    print STDERR "$prog: unknown option --$opt: config $config_name has no "
      . "'option $key=...' line\n";
    exit 1;
  }
}
my @submit_args;
foreach my $key (@known_order) {
  my $value = exists $opt_value{$key} ? $opt_value{$key} : $default{$key};
  next unless defined $value;
  my $args;
  if (exists $exact{$key} && exists $exact{$key}{$value}) {
    $args = $exact{$key}{$value};
  } elsif (exists $wild{$key}) {
    ($args = $wild{$key}) =~ s/\$0/$value/g;
  } else {
    (my $opt = $key) =~ s/_/-/g;
    print STDERR "$prog: value '$value' for option --$opt is not allowed by "
      . "config $config_name\n";
    exit 1;
  }
  push @submit_args, split(/\s+/, $args) if $args =~ m/\S/;
}
my $threads = 1;
if (exists $opt_value{num_threads} && $opt_value{num_threads} =~ m/^\d+$/) {
  $threads = $opt_value{num_threads};
}

# ---------------------------------------------------------------- helpers
my $poll_interval = env_number("SLURM_PL_POLL_INTERVAL", 5);
my $squeue_interval = env_number("SLURM_PL_SQUEUE_INTERVAL", 60);
my $lost_grace = env_number("SLURM_PL_LOST_GRACE", 120);
my $cwd = getcwd();

sub abs_path_of {
  my ($p) = @_;
  return File::Spec->file_name_is_absolute($p) ? $p : File::Spec->catfile($cwd, $p);
}

sub in_path {
  my ($exe) = @_;
  foreach my $d (split /:/, ($ENV{PATH} || "")) {
    return 1 if $d ne "" && -x "$d/$exe" && !-d "$d/$exe";
  }
  return 0;
}

# Run a command (list form, no shell); return (exit code, combined output).
sub capture {
  my @c = @_;
  my $pid = open(my $fh, "-|");
  die "$prog: fork failed: $!\n" unless defined $pid;
  if ($pid == 0) {
    open(STDERR, ">&", \*STDOUT);
    exec { $c[0] } @c or do { print "cannot run $c[0]: $!\n"; exit 127; };
  }
  local $/;
  my $out = <$fh>;
  $out = "" unless defined $out;
  close($fh);
  my $st = $?;
  my $code = ($st & 127) ? 128 + ($st & 127) : ($st >> 8);
  return ($code, $out);
}

my %jobs;         # index key => {log, script, out, marker, jobid, missing_since}
my @pending;      # index keys not yet submitted
my @failed;       # [index, log]
my $finished = 0;

sub cancel_all {
  return unless in_path("scancel");
  my @ids = grep { defined } map { $jobs{$_}{jobid} } grep { !$jobs{$_}{done} } keys %jobs;
  capture("scancel", @ids) if @ids;
}

sub write_script {
  my ($j, $this_cmd) = @_;
  (my $shown = $this_cmd) =~ s/\n/\n# /g;
  my $datefmt = "+%a %b %e %H:%M:%S %Y";
  my $s = "#!/usr/bin/env bash\n"
    . "# Generated by utils/slurm.pl; runs one job and writes its log.\n"
    . "cd " . sq($cwd) . " || exit 1\n"
    . "[ -f ./path.sh ] && . ./path.sh\n"
    . "slurm_pl_log=" . sq(abs_path_of($j->{log})) . "\n"
    . "slurm_pl_done=" . sq(abs_path_of($j->{marker})) . "\n"
    . "slurm_pl_cmd=" . sq($this_cmd) . "\n"
    . "slurm_pl_finish() {\n"
    . "  echo \"# Accounting: time=\$((\$(date +%s) - slurm_pl_start)) threads=$threads\" >> \"\$slurm_pl_log\"\n"
    . "  echo \"# Ended (code \$1) at \$(date '$datefmt')\" >> \"\$slurm_pl_log\"\n"
    . "  echo \"\$1\" > \"\$slurm_pl_done.tmp\" && mv -f \"\$slurm_pl_done.tmp\" \"\$slurm_pl_done\"\n"
    . "  exit \"\$1\"\n"
    . "}\n"
    . "mkdir -p \"\$(dirname \"\$slurm_pl_log\")\"\n"
    . "{\n"
    . "  printf '%s\\n' " . sq("# $shown") . "\n"
    . "  echo \"# Started at \$(date '$datefmt')\"\n"
    . "} > \"\$slurm_pl_log\"\n"
    . "slurm_pl_start=\$(date +%s)\n"
    . "trap 'slurm_pl_finish 143' TERM\n"
    . "trap 'slurm_pl_finish 130' INT\n"
    . "bash -c \"\$slurm_pl_cmd\" >> \"\$slurm_pl_log\" 2>&1\n"
    . "slurm_pl_finish \$?\n";
  open(my $fh, ">", $j->{script}) or die "$prog: cannot write $j->{script}: $!\n";
  print $fh $s;
  close($fh);
  chmod(0755, $j->{script});
}

sub submit {
  my ($key) = @_;
  my $j = $jobs{$key};
  my @c = (@submit_cmd, @submit_args, "--job-name=$j->{name}",
           "--output=" . abs_path_of($j->{out}), abs_path_of($j->{script}));
  my ($code, $out) = capture(@c);
  if ($code != 0) {
    print STDERR "$prog: failed to submit job for $j->{log} (exit code $code): "
      . join(" ", @c) . "\n$out";
    print STDERR "\n" unless $out =~ m/\n$/ || $out eq "";
    cancel_all();
    exit 1;
  }
  $j->{jobid} = $1 if $out =~ m/(\d+)\s*$/;
  $j->{submitted} = 1;
}

sub job_done {
  my ($key, $code) = @_;
  my $j = $jobs{$key};
  $j->{done} = 1;
  $finished++;
  push @failed, [$j->{index}, $j->{log}] if $code != 0;
}

# ---------------------------------------------------------------- jobs
foreach my $idx (@indices) {
  my $key = defined $idx ? $idx : 0;
  my $log = subst($logfile, $idx);
  my $this_cmd = subst($cmd, $idx);
  my $dir = dirname($log);
  my $qdir = File::Spec->catdir($dir, "q");
  eval { make_path($qdir) unless -d $qdir; 1 } or do {
    print STDERR "$prog: cannot create directory $qdir: $@";
    exit 1;
  };
  (my $name = basename($log)) =~ s/\.log$//;
  my $j = {
    index  => $idx,
    name   => $name,
    log    => $log,
    script => "$qdir/$name.sh",
    out    => "$qdir/$name.out",
    marker => "$qdir/$name.done",
  };
  unlink($j->{marker}, $j->{log});
  $jobs{$key} = $j;
  write_script($j, $this_cmd);
  push @pending, $key;
}

$SIG{INT} = $SIG{TERM} = sub {
  print STDERR "$prog: interrupted, cancelling submitted jobs\n";
  cancel_all();
  exit 130;
};

my $have_squeue = in_path("squeue");
my $last_squeue = time();
my $running = 0;
while ($finished < $njobs) {
  while (@pending && ($max_jobs_run == 0 || $running < $max_jobs_run)) {
    submit(shift @pending);
    $running++;
  }
  foreach my $key (keys %jobs) {
    my $j = $jobs{$key};
    next if $j->{done} || !$j->{submitted};
    next unless -f $j->{marker};
    open(my $fh, "<", $j->{marker}) or next;
    my $c = <$fh>;
    close($fh);
    next unless defined $c && $c =~ m/^\s*(\d+)/;
    job_done($key, $1);
    $running--;
  }
  last if $finished >= $njobs;
  if ($have_squeue && time() - $last_squeue >= $squeue_interval) {
    $last_squeue = time();
    my $user = $ENV{USER} || getpwuid($<);
    my ($code, $out) = capture("squeue", "-h", "-o", "%i", "-u", $user);
    if ($code == 0) {
      my %in_queue = map { $_ => 1 } grep { $_ ne "" } map { s/^\s+|\s+$//gr } split /\n/, $out;
      foreach my $key (keys %jobs) {
        my $j = $jobs{$key};
        next if $j->{done} || !$j->{submitted} || !defined $j->{jobid};
        if ($in_queue{$j->{jobid}}) {
          delete $j->{missing_since};
          next;
        }
        $j->{missing_since} = time() unless defined $j->{missing_since};
        next if -f $j->{marker} || time() - $j->{missing_since} < $lost_grace;
        if (open(my $fh, ">>", $j->{log})) {
          print $fh "# slurm.pl: job $j->{jobid} left the queue without finishing; "
            . "see $j->{out}\n";
          close($fh);
        }
        print STDERR "$prog: job $j->{jobid} ($j->{log}) left the queue without "
          . "finishing; see $j->{out}\n";
        job_done($key, 1);
        $running--;
      }
    }
  }
  sleep($poll_interval);
}

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
